//! `bgp`: listener, shutdown and graceful-restart settings, and the peers.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use super::common::*;
use crate::config::duration::format_duration;
use crate::config::raw::*;
use crate::model::*;

/// Default BGP port.
pub const DEFAULT_BGP_PORT: u16 = 179;
/// Default hold time we offer (RFC 4271 suggests 90 s; anycast wants faster
/// detection of a dead speaker).
pub const DEFAULT_HOLD_TIME: Duration = Duration::from_secs(30);
/// Default shortest hold time accepted from a peer: RFC 4271's smallest
/// non-zero one, so only 0 (a session without keepalives, which never
/// notices a dead peer) is refused.
pub const DEFAULT_MIN_HOLD_TIME: Duration = Duration::from_secs(3);
/// Default wait between connection attempts.
pub const DEFAULT_CONNECT_RETRY: Duration = Duration::from_secs(5);
/// Restart time advertised unless `graceful_restart: off`: a controller
/// restart (or crash) must not withdraw a healthy PoP.
pub const DEFAULT_GRACEFUL_RESTART: Duration = Duration::from_secs(120);
/// Shortest and longest BFD interval accepted (FRR's range).
pub const BFD_MIN_INTERVAL: Duration = Duration::from_millis(10);
pub const BFD_MAX_INTERVAL: Duration = Duration::from_secs(60);

pub(super) fn bgp(cx: &mut Ctx, raw: &RawBgp, node_asn: u32) -> BgpConfig {
    let listen = raw
        .listen
        .as_deref()
        .and_then(|s| cx.ok("bgp.listen", parse_socket_addr(s, DEFAULT_BGP_PORT)));
    let shutdown = match raw.shutdown {
        RawShutdown::Withdraw => ShutdownMode::Withdraw,
        RawShutdown::GracefulRestart => ShutdownMode::GracefulRestart,
    };
    let gr_off = raw
        .graceful_restart
        .as_ref()
        .is_some_and(|d| matches!(d.0.trim(), "off" | "none" | "false"));
    if gr_off && shutdown == ShutdownMode::GracefulRestart {
        cx.err(
            "bgp.graceful_restart",
            "is off, but bgp.shutdown is graceful_restart, which relies on it",
        );
    }
    let graceful_restart = match cx.duration(
        "bgp.graceful_restart",
        raw.graceful_restart.as_ref().filter(|_| !gr_off),
    ) {
        Some(Some(d)) => {
            if d.subsec_nanos() != 0 || d.as_secs() == 0 || d.as_secs() > 4095 {
                cx.err(
                    "bgp.graceful_restart",
                    format!(
                        "{} is out of range: the restart time is 1 to 4095 whole seconds",
                        format_duration(d)
                    ),
                );
            }
            Some(d)
        }
        Some(None) if gr_off => None,
        Some(None) => Some(DEFAULT_GRACEFUL_RESTART),
        None => None,
    };
    let min_hold = min_hold_time(cx, "bgp.min_hold_time", raw.min_hold_time.as_ref())
        .unwrap_or(DEFAULT_MIN_HOLD_TIME);
    let mut peers = Vec::new();
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    let mut endpoints: BTreeMap<(IpAddr, u16), usize> = BTreeMap::new();
    for (i, rp) in raw.peers.iter().enumerate() {
        let path = format!("bgp.peers[{i}]");
        if let Some(j) = names.get(rp.name.as_str()) {
            cx.err(
                format!("{path}.name"),
                format!(
                    "duplicate peer name {:?} (first defined at bgp.peers[{j}])",
                    rp.name
                ),
            );
        } else {
            names.insert(&rp.name, i);
        }
        if let Some(p) = peer(cx, &path, rp, node_asn, listen.is_some(), min_hold) {
            match endpoints.get(&(p.address, p.port)) {
                Some(j) => cx.err(
                    format!("{path}.address"),
                    format!("{} is already the address of bgp.peers[{j}]", p.address),
                ),
                None => {
                    endpoints.insert((p.address, p.port), i);
                }
            }
            peers.push(p);
        }
    }
    BgpConfig {
        listen,
        peers,
        shutdown,
        graceful_restart,
    }
}

/// `min_hold_time` (global or a peer's): 0 or 3 to 65535 whole seconds;
/// `None` if absent or invalid (reported).
fn min_hold_time(cx: &mut Ctx, path: &str, raw: Option<&RawDuration>) -> Option<Duration> {
    let d = cx.duration(path, raw)??;
    let s = d.as_secs();
    if d.subsec_nanos() != 0 || s == 1 || s == 2 || s > 65535 {
        cx.err(
            path,
            format!(
                "{} is not a valid minimum hold time: expected 0 (allow no keepalives) or 3 to 65535 whole seconds",
                format_duration(d)
            ),
        );
        return None;
    }
    Some(d)
}

fn peer(
    cx: &mut Ctx,
    path: &str,
    raw: &RawPeer,
    node_asn: u32,
    listening: bool,
    min_hold: Duration,
) -> Option<Peer> {
    let name = cx.name(&format!("{path}.name"), &raw.name);
    let address = cx.ok(&format!("{path}.address"), parse_ip(&raw.address));
    let port = raw.port.unwrap_or(DEFAULT_BGP_PORT);
    if port == 0 {
        cx.err(format!("{path}.port"), "0 is not a valid port");
    }
    let remote_asn = cx.ok(&format!("{path}.remote_asn"), check_asn(raw.remote_asn));
    let local_asn = match raw.local_asn {
        Some(a) => cx.ok(&format!("{path}.local_asn"), check_asn(a)),
        // A missing node.asn is reported there.
        None => Some(node_asn),
    };
    let local_address = raw
        .local_address
        .as_deref()
        .and_then(|s| cx.ok(&format!("{path}.local_address"), parse_ip(s)));
    if let (Some(a), Some(l)) = (address, local_address) {
        if a.is_ipv4() != l.is_ipv4() {
            cx.err(
                format!("{path}.local_address"),
                format!("{l} is not of the same address family as the peer address {a}"),
            );
        }
    }
    if raw.passive && !listening {
        cx.err(
            format!("{path}.passive"),
            "a passive peer only accepts connections: set bgp.listen (e.g. \"0.0.0.0:179\")",
        );
    }
    let hold_time = match cx.duration(&format!("{path}.hold_time"), raw.hold_time.as_ref())? {
        None => DEFAULT_HOLD_TIME,
        Some(d) => {
            let s = d.as_secs();
            if d.subsec_nanos() != 0 || s == 1 || s == 2 || s > 65535 {
                cx.err(
                    format!("{path}.hold_time"),
                    format!(
                        "{} is not a valid hold time: expected 0 (no keepalives) or 3 to 65535 whole seconds",
                        format_duration(d)
                    ),
                );
            }
            d
        }
    };
    let min_hold_time = min_hold_time(
        cx,
        &format!("{path}.min_hold_time"),
        raw.min_hold_time.as_ref(),
    )
    .unwrap_or(min_hold);
    if hold_time.is_zero() && !min_hold_time.is_zero() {
        cx.err(
            format!("{path}.hold_time"),
            format!(
                "0 (no keepalives) is below the minimum hold time {}: set min_hold_time: 0s on this peer to allow sessions without keepalives",
                format_duration(min_hold_time)
            ),
        );
    } else if !hold_time.is_zero() && hold_time < min_hold_time {
        cx.err(
            format!("{path}.hold_time"),
            format!(
                "{} is below the minimum hold time {}: no session could agree on it",
                format_duration(hold_time),
                format_duration(min_hold_time)
            ),
        );
    }
    let connect_retry =
        match cx.duration(&format!("{path}.connect_retry"), raw.connect_retry.as_ref())? {
            None => DEFAULT_CONNECT_RETRY,
            Some(d) if d < Duration::from_millis(100) => {
                cx.err(
                    format!("{path}.connect_retry"),
                    format!(
                        "{} is too short: expected at least 100ms",
                        format_duration(d)
                    ),
                );
                d
            }
            Some(d) => d,
        };
    let mut families = raw.families.clone().unwrap_or_else(|| match address {
        Some(IpAddr::V6(_)) => vec![RawFamily::Ipv6],
        _ => vec![RawFamily::Ipv4],
    });
    if families.is_empty() {
        cx.err(
            format!("{path}.families"),
            "expected at least one of ipv4, ipv6",
        );
    }
    for (k, f) in families.iter().enumerate() {
        if families[..k].contains(f) {
            cx.err(format!("{path}.families[{k}]"), "listed twice");
        }
    }
    families.dedup();
    let ipv4_unicast = families.contains(&RawFamily::Ipv4);
    let ipv6_unicast = families.contains(&RawFamily::Ipv6);
    let next_hop_v4 = raw.next_hop_v4.as_deref().and_then(|s| {
        cx.ok(
            &format!("{path}.next_hop_v4"),
            s.trim()
                .parse::<Ipv4Addr>()
                .map_err(|_| format!("{s:?} is not an IPv4 address")),
        )
    });
    let next_hop_v6 = raw.next_hop_v6.as_deref().and_then(|s| {
        cx.ok(
            &format!("{path}.next_hop_v6"),
            s.trim()
                .parse::<Ipv6Addr>()
                .map_err(|_| format!("{s:?} is not an IPv6 address")),
        )
    });
    if let Some(a) = address {
        if ipv6_unicast && a.is_ipv4() && raw.next_hop_v6.is_none() {
            cx.err(
                format!("{path}.next_hop_v6"),
                "required to announce ipv6 over an IPv4 session (the session has no IPv6 address to use)",
            );
        }
        if ipv4_unicast && a.is_ipv6() && raw.next_hop_v4.is_none() {
            cx.err(
                format!("{path}.next_hop_v4"),
                "required to announce ipv4 over an IPv6 session (the session has no IPv4 address to use)",
            );
        }
    }
    let bfd = match &raw.bfd {
        None => None,
        Some(b) => Some(bfd(cx, &format!("{path}.bfd"), b)?),
    };
    Some(Peer {
        name: name?,
        address: address?,
        port,
        remote_asn: remote_asn?,
        local_asn: local_asn?,
        local_address,
        passive: raw.passive,
        hold_time,
        min_hold_time,
        connect_retry,
        md5_password_file: raw.md5_password_file.clone(),
        ttl_security: raw.ttl_security,
        ipv4_unicast,
        ipv6_unicast,
        next_hop_v4,
        next_hop_v6,
        bfd,
    })
}

/// `bfd:` of a peer: intervals from 10 ms to 60 s, multiplier 2 to 255,
/// FRR's defaults for what is left out.
fn bfd(cx: &mut Ctx, path: &str, raw: &RawBfd) -> Option<BfdParams> {
    let interval = |cx: &mut Ctx, key: &str, v: Option<&RawDuration>, default: Duration| {
        let p = format!("{path}.{key}");
        let d = cx.duration(&p, v)?.unwrap_or(default);
        if !(BFD_MIN_INTERVAL..=BFD_MAX_INTERVAL).contains(&d) {
            cx.err(
                p,
                format!(
                    "{} is out of range: expected 10ms to 60s",
                    format_duration(d)
                ),
            );
            return None;
        }
        Some(d)
    };
    let min_tx = interval(cx, "min_tx", raw.min_tx.as_ref(), BfdParams::DEFAULT.min_tx);
    let min_rx = interval(cx, "min_rx", raw.min_rx.as_ref(), BfdParams::DEFAULT.min_rx);
    let multiplier = match raw.multiplier {
        None => Some(BfdParams::DEFAULT.multiplier),
        Some(m @ 2..=255) => Some(m as u8),
        Some(m) => {
            cx.err(
                format!("{path}.multiplier"),
                format!("{m} is out of range: expected 2 to 255"),
            );
            None
        }
    };
    Some(BfdParams {
        min_tx: min_tx?,
        min_rx: min_rx?,
        multiplier: multiplier?,
    })
}
