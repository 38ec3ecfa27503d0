//! `api`: listener, token file and who may call without a token.

use super::common::*;
use crate::config::raw::*;
use crate::model::*;

pub(super) fn api(cx: &mut Ctx, raw: &RawApi) -> ApiConfig {
    let listen = match raw.listen.as_deref().map(str::trim) {
        None | Some("off") | Some("none") | Some("") => None,
        Some(s) => cx.ok("api.listen", parse_socket_addr(s, 8080)),
    };
    if raw.protect_reads && raw.token_file.is_none() {
        cx.err(
            "api.protect_reads",
            "needs api.token_file: the token that reads would require",
        );
    }
    if let Some(t) = &raw.token_file {
        if t.as_os_str().is_empty() {
            cx.err("api.token_file", "expected a file path");
        }
    }
    // Anyone who can reach an open API can drain every PoP: off loopback
    // a token is required unless the operator says otherwise explicitly.
    if let Some(addr) = listen {
        if !addr.ip().is_loopback() && raw.token_file.is_none() && !raw.allow_unauthenticated {
            cx.err(
                "api.listen",
                format!(
                    "{addr} is reachable from the network but api.token_file is not set: anyone could drain or disable PoPs; set api.token_file (or api.allow_unauthenticated: true if the network is trusted)"
                ),
            );
        }
    }
    ApiConfig {
        listen,
        token_file: raw.token_file.clone(),
        protect_reads: raw.protect_reads,
    }
}
