//! `pops[]`: prefixes, addresses, location, check combination, BGP
//! attributes (`announce`) and drain timing of each PoP.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;

use super::checks::check;
use super::common::*;
use crate::config::raw::*;
use crate::model::*;

/// Extra prepends while degraded when `announce.degraded` is not given.
pub const DEFAULT_DEGRADED_PREPEND: u8 = 3;
/// Largest prepend count accepted (per block).
pub const MAX_PREPEND: u64 = 16;

pub(super) fn pop(
    cx: &mut Ctx,
    path: &str,
    raw: &RawPop,
    local_bgp: Option<&BgpConfig>,
) -> Option<Pop> {
    let name = cx.name(&format!("{path}.name"), &raw.name);
    let mut prefixes: Vec<IpNet> = Vec::new();
    // Where each prefix was first listed: a PoP may list 100,000.
    let mut seen: BTreeMap<IpNet, usize> = BTreeMap::new();
    for (k, s) in raw.prefixes.iter().enumerate() {
        let p = format!("{path}.prefixes[{k}]");
        let Some(net) = cx.ok(&p, parse_prefix(s)) else {
            continue;
        };
        if let Some(j) = seen.get(&net) {
            cx.err(
                p,
                format!("{net} is listed twice (also {path}.prefixes[{j}])"),
            );
            continue;
        }
        seen.insert(net, k);
        // The node's own PoP: a prefix no session can carry is a mistake.
        if let Some(bgp) = local_bgp.filter(|b| !b.peers.is_empty()) {
            let v4 = matches!(net, IpNet::V4(_));
            if !bgp.peers.iter().any(|peer| {
                if v4 {
                    peer.ipv4_unicast
                } else {
                    peer.ipv6_unicast
                }
            }) {
                cx.err(
                    p,
                    format!(
                        "{net} cannot be announced: no BGP peer has family {}",
                        if v4 { "ipv4" } else { "ipv6" }
                    ),
                );
            }
        }
        prefixes.push(net);
    }
    let mut addresses: Vec<IpAddr> = Vec::new();
    for (k, s) in raw.addresses.iter().enumerate() {
        let p = format!("{path}.addresses[{k}]");
        if let Some(a) = cx.ok(&p, parse_ip(s)) {
            if addresses.contains(&a) {
                cx.err(p, format!("{a} is listed twice"));
            } else {
                addresses.push(a);
            }
        }
    }
    let location = raw.location.as_ref().and_then(|l| {
        let mut ok = true;
        if !(l.lat.is_finite() && (-90.0..=90.0).contains(&l.lat)) {
            cx.err(
                format!("{path}.location.lat"),
                format!("{} is out of range: expected -90 to 90", l.lat),
            );
            ok = false;
        }
        if !(l.lon.is_finite() && (-180.0..=180.0).contains(&l.lon)) {
            cx.err(
                format!("{path}.location.lon"),
                format!("{} is out of range: expected -180 to 180", l.lon),
            );
            ok = false;
        }
        ok.then_some((l.lat, l.lon))
    });
    let mut checks: Vec<Check> = Vec::new();
    let mut check_names: BTreeMap<&str, usize> = BTreeMap::new();
    for (k, rc) in raw.checks.iter().enumerate() {
        let p = format!("{path}.checks[{k}]");
        if let Some(j) = check_names.get(rc.name.as_str()) {
            cx.err(
                format!("{p}.name"),
                format!(
                    "duplicate check name {:?} in PoP {:?} (first defined at {path}.checks[{j}])",
                    rc.name, raw.name
                ),
            );
            continue;
        }
        check_names.insert(&rc.name, k);
        if let Some(c) = check(cx, &p, rc) {
            checks.push(c);
        }
    }
    let combine = match raw.combine {
        RawCombine::All => Combine::All,
        RawCombine::Any => Combine::Any,
        RawCombine::AtLeast(n) => {
            let count = raw.checks.len() as u64;
            if n == 0 || n > count {
                cx.err(
                    format!("{path}.combine.at_least"),
                    if count == 0 {
                        format!("{n} is out of range: the PoP has no checks")
                    } else {
                        format!(
                            "{n} is out of range: the PoP has {count} check(s), expected 1 to {count}"
                        )
                    },
                );
            }
            Combine::AtLeast(n.min(u64::from(u32::MAX)) as u32)
        }
    };
    let announce = announce(cx, &format!("{path}.announce"), &raw.announce);
    let dp = format!("{path}.drain");
    let drain_dns_wait = cx
        .duration(&format!("{dp}.dns_wait"), raw.drain.dns_wait.as_ref())
        .flatten();
    let drain_settle = cx
        .duration(&format!("{dp}.settle"), raw.drain.settle.as_ref())
        .flatten()
        .unwrap_or(DEFAULT_DRAIN_SETTLE);
    Some(Pop {
        name: name?,
        prefixes,
        addresses,
        location,
        checks,
        combine,
        announce,
        drain_dns_wait,
        drain_settle,
    })
}

fn announce(cx: &mut Ctx, path: &str, raw: &RawAnnounce) -> AnnouncePolicy {
    let normal = attrs(
        cx,
        path,
        &RawAttrs {
            prepend: raw.prepend,
            med: raw.med,
            local_pref: raw.local_pref,
            communities: raw.communities.clone(),
            large_communities: raw.large_communities.clone(),
        },
    );
    // The model keeps the degraded *changes*; the core applies them on top
    // of `normal` (core::decide::attrs_for).
    let degraded = match &raw.degraded {
        Some(d) => attrs(cx, &format!("{path}.degraded"), d),
        None => RouteAttrs {
            prepend: DEFAULT_DEGRADED_PREPEND,
            ..RouteAttrs::default()
        },
    };
    if u64::from(normal.prepend) + u64::from(degraded.prepend) > MAX_PREPEND {
        cx.err(
            format!("{path}.degraded.prepend"),
            format!(
                "prepend {} plus degraded prepend {} is more than {MAX_PREPEND}",
                normal.prepend, degraded.prepend
            ),
        );
    }
    let action = |a: RawFailAction| match a {
        RawFailAction::Withdraw => FailAction::Withdraw,
        RawFailAction::Degrade => FailAction::Degrade,
        RawFailAction::GracefulShutdown => FailAction::GracefulShutdown,
    };
    AnnouncePolicy {
        normal,
        degraded,
        on_down: action(raw.on_down),
        on_drain: action(raw.on_drain),
    }
}

fn attrs(cx: &mut Ctx, path: &str, raw: &RawAttrs) -> RouteAttrs {
    let mut out = RouteAttrs::default();
    if let Some(p) = raw.prepend {
        if p > MAX_PREPEND {
            cx.err(
                format!("{path}.prepend"),
                format!("{p} is out of range: expected 0 to {MAX_PREPEND}"),
            );
        } else {
            out.prepend = p as u8;
        }
    }
    for (key, value, slot) in [
        ("med", raw.med, &mut out.med),
        ("local_pref", raw.local_pref, &mut out.local_pref),
    ] {
        if let Some(v) = value {
            match u32::try_from(v) {
                Ok(v) => *slot = Some(v),
                Err(_) => cx.err(
                    format!("{path}.{key}"),
                    format!("{v} is out of range: expected 0 to 4294967295"),
                ),
            }
        }
    }
    for (k, s) in raw.communities.iter().enumerate() {
        let p = format!("{path}.communities[{k}]");
        if let Some(c) = cx.ok(&p, parse_community(s)) {
            if out.communities.contains(&c) {
                cx.err(p, format!("{s:?} is listed twice"));
            } else {
                out.communities.push(c);
            }
        }
    }
    for (k, s) in raw.large_communities.iter().enumerate() {
        let p = format!("{path}.large_communities[{k}]");
        if let Some(c) = cx.ok(&p, parse_large_community(s)) {
            if out.large_communities.contains(&c) {
                cx.err(p, format!("{s:?} is listed twice"));
            } else {
                out.large_communities.push(c);
            }
        }
    }
    out
}

/// `65000:100` or a well-known name (`no-export`, `graceful-shutdown`, ...).
fn parse_community(s: &str) -> Result<(u16, u16), String> {
    let t = s.trim().to_ascii_lowercase();
    let known = match t.as_str() {
        "graceful-shutdown" | "graceful_shutdown" => Some(GRACEFUL_SHUTDOWN),
        "blackhole" => Some((65535, 666)),
        "no-export" | "no_export" => Some((65535, 65281)),
        "no-advertise" | "no_advertise" => Some((65535, 65282)),
        "no-export-subconfed" | "no_export_subconfed" | "local-as" => Some((65535, 65283)),
        "no-peer" | "no_peer" => Some((65535, 65284)),
        _ => None,
    };
    if let Some(c) = known {
        return Ok(c);
    }
    let bad = || {
        format!(
            "{s:?} is not a community: expected ASN:VALUE with both 0 to 65535 (e.g. \"65000:100\") or a well-known name like no-export"
        )
    };
    let (a, b) = t.split_once(':').ok_or_else(bad)?;
    Ok((a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?))
}

/// `65000:1:2` (RFC 8092).
fn parse_large_community(s: &str) -> Result<(u32, u32, u32), String> {
    let bad = || {
        format!(
            "{s:?} is not a large community: expected GLOBAL:LOCAL1:LOCAL2 with each 0 to 4294967295 (e.g. \"65000:1:2\")"
        )
    };
    let parts: Vec<&str> = s.trim().split(':').collect();
    let [a, b, c] = parts.as_slice() else {
        return Err(bad());
    };
    Ok((
        a.parse().map_err(|_| bad())?,
        b.parse().map_err(|_| bad())?,
        c.parse().map_err(|_| bad())?,
    ))
}
