//! `api`: listener, token file, who may call without a token, the names
//! clients may address it by and the connection limits.

use std::time::Duration;

use super::common::*;
use crate::config::raw::*;
use crate::model::*;

pub(super) fn api(cx: &mut Ctx, raw: &RawApi) -> ApiConfig {
    let listen = match raw.listen.as_deref().map(str::trim) {
        None | Some("off") | Some("none") | Some("") => None,
        Some(s) => cx.ok("api.listen", parse_socket_addr(s, 8080)),
    };
    if raw.protect_reads == Some(true) && raw.token_file.is_none() {
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
    // Off loopback, reads (peer addresses, ASNs, check output) need the
    // token too unless the config says otherwise.
    let off_loopback = listen.is_some_and(|a| !a.ip().is_loopback());
    let protect_reads = raw
        .protect_reads
        .unwrap_or(off_loopback && raw.token_file.is_some());
    let mut allowed_hosts = Vec::new();
    for (i, h) in raw.allowed_hosts.iter().enumerate() {
        match host_name(h) {
            Ok(h) => allowed_hosts.push(h),
            Err(e) => cx.err(format!("api.allowed_hosts[{i}]"), e),
        }
    }
    let header_read_timeout = cx
        .duration("api.header_read_timeout", raw.header_read_timeout.as_ref())
        .flatten()
        .unwrap_or(DEFAULT_API_HEADER_READ_TIMEOUT);
    if header_read_timeout < Duration::from_millis(100)
        || header_read_timeout > Duration::from_secs(300)
    {
        cx.err("api.header_read_timeout", "must be between 100ms and 5m");
    }
    let max_connections = match raw.max_connections {
        None => DEFAULT_API_MAX_CONNECTIONS,
        Some(n) if (1..=MAX_API_CONNECTIONS as u64).contains(&n) => n as usize,
        Some(n) => {
            cx.err(
                "api.max_connections",
                format!("{n} is out of range (1 to {MAX_API_CONNECTIONS})"),
            );
            DEFAULT_API_MAX_CONNECTIONS
        }
    };
    ApiConfig {
        listen,
        token_file: raw.token_file.clone(),
        protect_reads,
        allowed_hosts,
        header_read_timeout,
        max_connections,
    }
}

/// An `allowed_hosts` entry: `*`, an IP address or a DNS name, without a
/// port; returned lowercase (IPv6 without brackets).
fn host_name(s: &str) -> Result<String, String> {
    let h = s.trim().trim_end_matches('.').to_ascii_lowercase();
    if h == "*" {
        return Ok(h);
    }
    let bare = h
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(&h);
    if let Ok(ip) = bare.parse::<std::net::IpAddr>() {
        return Ok(ip.to_string());
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if h.is_empty() || h.len() > 253 || !h.split('.').all(label_ok) {
        return Err(format!(
            "{s:?} is not a host name or IP address (no port, no scheme: e.g. anypop.example.net)"
        ));
    }
    Ok(h)
}
