//! `dns`: listeners and their UDP workers, identity (NSID, CHAOS), the
//! MaxMind database and response rate limiting; zones and steering are in
//! their own modules.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::common::*;
use super::zones::zone;
use crate::config::duration::format_duration;
use crate::config::raw::*;
use crate::model::*;

/// Default DNS listener when a `dns` section has no `listen`.
pub const DEFAULT_DNS_LISTEN: &str = "127.0.0.1:5353";

pub(super) fn dns(
    cx: &mut Ctx,
    raw: &RawDns,
    pops: &BTreeMap<&str, usize>,
    with_addresses: &BTreeSet<&str>,
) -> DnsConfig {
    let mut listen = Vec::new();
    let default_listen = [DEFAULT_DNS_LISTEN.to_string()];
    let raw_listen = raw.listen.as_deref().unwrap_or(&default_listen);
    for (k, s) in raw_listen.iter().enumerate() {
        let p = format!("dns.listen[{k}]");
        if let Some(a) = cx.ok(&p, parse_socket_addr(s, 53)) {
            if listen.contains(&a) {
                cx.err(p, format!("{a} is listed twice"));
            } else {
                listen.push(a);
            }
        }
    }
    for (key, v) in [("nsid", &raw.nsid), ("chaos", &raw.chaos)] {
        if let Some(t) = v {
            if t.is_empty() || t.len() > 255 {
                cx.err(format!("dns.{key}"), "expected 1 to 255 bytes of text");
            }
        }
    }
    let geoip = raw.geoip.as_ref().and_then(|g| {
        let p = "dns.geoip.database";
        if g.database.as_os_str().is_empty() {
            cx.err(p, "expected the path of a MaxMind database (.mmdb)");
            return None;
        }
        let db = cx.ok(p, crate::geoip::GeoDb::open(&g.database))?;
        Some(GeoIp {
            database: g.database.clone(),
            db: std::sync::Arc::new(db),
        })
    });
    cx.geoip = raw.geoip.is_some();
    let rate_limit = match &raw.rate_limit {
        Some(RawRateLimitSetting::Off) => None,
        Some(RawRateLimitSetting::On(r)) => rate_limit(cx, r),
        // On by default as soon as a listener is reachable from elsewhere.
        None => listen
            .iter()
            .any(|a| !a.ip().is_loopback())
            .then_some(DEFAULT_RATE_LIMIT),
    };
    let udp_workers = raw.udp_workers.and_then(|n| {
        let max = MAX_UDP_WORKERS as u64;
        if (1..=max).contains(&n) {
            Some(n as usize)
        } else {
            cx.err(
                "dns.udp_workers",
                format!("{n} is out of range: expected 1 to {max} (omit it for one per core)"),
            );
            None
        }
    });
    let mut zones: Vec<Zone> = Vec::new();
    for (i, rz) in raw.zones.iter().enumerate() {
        let path = format!("dns.zones[{i}]");
        if let Some(z) = zone(cx, &path, rz, pops, with_addresses) {
            if let Some(j) = zones.iter().position(|o| o.origin == z.origin) {
                cx.err(
                    format!("{path}.origin"),
                    format!("zone {} is defined twice (also dns.zones[{j}])", z.origin),
                );
            } else {
                zones.push(z);
            }
        }
    }
    DnsConfig {
        listen,
        identity: DnsIdentity {
            nsid: raw.nsid.clone(),
            chaos: raw.chaos.clone(),
        },
        zones,
        geoip,
        rate_limit,
        udp_workers,
    }
}

/// Default RRL rate: responses per second per client /24 or /56. Well
/// above what one resolver block asks one server for, low enough to cap a
/// reflection at a few hundred kB/s per victim block and server.
pub const DEFAULT_RRL_RESPONSES_PER_SECOND: u32 = 1000;
/// Default RRL slip: every 2nd limited response goes out truncated.
pub const DEFAULT_RRL_SLIP: u32 = 2;
/// Default RRL window.
pub const DEFAULT_RRL_WINDOW: Duration = Duration::from_secs(15);
/// Rate limiting when `dns.rate_limit` is not set and a listener is not on
/// loopback.
pub const DEFAULT_RATE_LIMIT: RateLimit = RateLimit {
    responses_per_second: DEFAULT_RRL_RESPONSES_PER_SECOND,
    slip: DEFAULT_RRL_SLIP,
    window: DEFAULT_RRL_WINDOW,
};

fn rate_limit(cx: &mut Ctx, raw: &RawRateLimit) -> Option<RateLimit> {
    let before = cx.errors.len();
    let p = "dns.rate_limit";
    let rps = raw
        .responses_per_second
        .unwrap_or(DEFAULT_RRL_RESPONSES_PER_SECOND as u64);
    if !(1..=1_000_000).contains(&rps) {
        cx.err(
            format!("{p}.responses_per_second"),
            format!("{rps} is out of range: expected 1 to 1000000"),
        );
    }
    let slip = raw.slip.unwrap_or(DEFAULT_RRL_SLIP as u64);
    if slip > 10 {
        cx.err(
            format!("{p}.slip"),
            format!("{slip} is out of range: expected 0 (drop all) to 10"),
        );
    }
    let window = cx
        .duration(&format!("{p}.window"), raw.window.as_ref())
        .flatten()
        .unwrap_or(DEFAULT_RRL_WINDOW);
    if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&window) {
        cx.err(
            format!("{p}.window"),
            format!(
                "{} is out of range: expected 1s to 1h",
                format_duration(window)
            ),
        );
    }
    (cx.errors.len() == before).then_some(RateLimit {
        responses_per_second: rps as u32,
        slip: slip as u32,
        window,
    })
}
