//! `node`: name, own PoP, router ID and ASN, state directory.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use super::common::*;
use crate::config::raw::*;
use crate::model::*;

pub(super) fn node(
    cx: &mut Ctx,
    raw: &RawNode,
    bgp_used: bool,
    pops: &BTreeMap<&str, usize>,
) -> Node {
    let name = raw.name.trim();
    if name.is_empty()
        || name.len() > 253
        || name.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        cx.err(
            "node.name",
            format!(
                "{:?} is not a valid node name: expected 1 to 253 characters without spaces",
                raw.name
            ),
        );
    }
    let pop = raw.pop.as_deref().and_then(|p| {
        let n = cx.name("node.pop", p)?;
        if !pops.contains_key(p) {
            cx.err("node.pop", unknown_pop(p, pops));
            return None;
        }
        Some(n)
    });
    let router_id = match raw.router_id.as_deref() {
        Some(s) => match s.trim().parse::<Ipv4Addr>() {
            Ok(a) if a.is_unspecified() => {
                cx.err("node.router_id", "0.0.0.0 is not a valid router id");
                Ipv4Addr::UNSPECIFIED
            }
            Ok(a) => a,
            Err(_) => {
                cx.err(
                    "node.router_id",
                    format!("{s:?} is not a router id: expected an IPv4 address like 192.0.2.1"),
                );
                Ipv4Addr::UNSPECIFIED
            }
        },
        None => {
            if bgp_used {
                cx.err(
                    "node.router_id",
                    "required when BGP is configured: an IPv4 address like 192.0.2.1",
                );
            }
            Ipv4Addr::UNSPECIFIED
        }
    };
    let asn = match raw.asn {
        Some(a) => cx.ok("node.asn", check_asn(a)).unwrap_or(0),
        None => {
            if bgp_used {
                cx.err(
                    "node.asn",
                    "required when BGP is configured: an AS number like 64512",
                );
            }
            0
        }
    };
    Node {
        name: name.to_string(),
        pop,
        router_id,
        asn,
        state_dir: raw.state_dir.clone(),
        start_on_corrupt_state: matches!(raw.on_corrupt_state, RawCorruptState::StartEmpty),
    }
}
