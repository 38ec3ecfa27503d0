//! Raw config → validated model. Every problem is recorded with its YAML
//! path and what was expected, and validation goes on, so that one run
//! reports all errors of a file. Cross-references (node → PoP, steering →
//! PoPs), duplicates, ranges and per-type record values are checked here;
//! nothing downstream re-checks them.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;

use super::duration::{format_duration, parse_duration};
use super::raw::*;
use super::ConfigError;
use crate::model::*;

/// Default BGP port.
pub const DEFAULT_BGP_PORT: u16 = 179;
/// Default hold time we offer (RFC 4271 suggests 90 s; anycast wants faster
/// detection of a dead speaker).
pub const DEFAULT_HOLD_TIME: Duration = Duration::from_secs(30);
/// Default wait between connection attempts.
pub const DEFAULT_CONNECT_RETRY: Duration = Duration::from_secs(5);
/// Restart time advertised unless `graceful_restart: off`: a controller
/// restart (or crash) must not withdraw a healthy PoP.
pub const DEFAULT_GRACEFUL_RESTART: Duration = Duration::from_secs(120);
/// Extra prepends while degraded when `announce.degraded` is not given.
pub const DEFAULT_DEGRADED_PREPEND: u8 = 3;
/// Largest prepend count accepted (per block).
pub const MAX_PREPEND: u64 = 16;
/// Default DNS listener when a `dns` section has no `listen`.
pub const DEFAULT_DNS_LISTEN: &str = "127.0.0.1:5353";
/// Default TTL of static records.
pub const DEFAULT_ZONE_TTL: u32 = 300;
/// Default TTL of steered records.
pub const DEFAULT_STEERED_TTL: u32 = 30;
/// Default TTL while a steered record's PoPs are changing.
pub const DEFAULT_SHORT_TTL: u32 = 5;
/// Default time the short TTL is used after a change.
pub const DEFAULT_STEER_SETTLE: Duration = Duration::from_secs(60);
/// Default most addresses in an `all_healthy` answer.
pub const DEFAULT_ALL_HEALTHY_MAX: u32 = 8;
/// Largest TTL DNS allows (RFC 2181).
const MAX_TTL: u64 = 2_147_483_647;

#[derive(Default)]
struct Ctx {
    errors: Vec<ConfigError>,
    /// `dns.geoip` is configured (country/continent rules and `nearest` need it).
    geoip: bool,
    /// PoPs with a `location` (what `nearest` can steer to).
    pops_with_location: BTreeSet<String>,
}

impl Ctx {
    fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError {
            path: path.into(),
            message: message.into(),
        });
    }

    /// Records the error of `r` at `path`.
    fn ok<T>(&mut self, path: &str, r: Result<T, String>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.err(path, e);
                None
            }
        }
    }

    fn duration(&mut self, path: &str, raw: Option<&RawDuration>) -> Option<Option<Duration>> {
        match raw {
            None => Some(None),
            Some(r) => self.ok(path, parse_duration(&r.0)).map(Some),
        }
    }

    /// A TTL-like value in whole seconds, 0..=2^31-1.
    fn seconds(&mut self, path: &str, raw: Option<&RawDuration>, default: u32) -> u32 {
        let Some(r) = raw else { return default };
        let Some(d) = self.ok(path, parse_duration(&r.0)) else {
            return default;
        };
        if d.subsec_nanos() != 0 {
            self.err(path, format!("{:?} is not a whole number of seconds", r.0));
            return default;
        }
        if d.as_secs() > MAX_TTL {
            self.err(
                path,
                format!("{:?} is too long (at most {MAX_TTL} seconds)", r.0),
            );
            return default;
        }
        d.as_secs() as u32
    }

    fn name(&mut self, path: &str, s: &str) -> Option<Name> {
        self.ok(path, Name::parse(s))
    }
}

/// Validates a parsed file into the model, or returns every error found.
pub(super) fn validate(raw: RawConfig) -> Result<Config, Vec<ConfigError>> {
    let mut cx = Ctx::default();
    let pop_index: BTreeMap<&str, usize> = {
        let mut m = BTreeMap::new();
        for (i, p) in raw.pops.iter().enumerate() {
            m.entry(p.name.as_str()).or_insert(i);
        }
        m
    };
    let pops_with_addresses: BTreeSet<&str> = raw
        .pops
        .iter()
        .filter(|p| !p.addresses.is_empty())
        .map(|p| p.name.as_str())
        .collect();
    let bgp_used = !raw.bgp.peers.is_empty() || raw.bgp.listen.is_some();
    cx.pops_with_location = raw
        .pops
        .iter()
        .filter(|p| p.location.is_some())
        .map(|p| p.name.clone())
        .collect();

    let node = node(&mut cx, &raw.node, bgp_used, &pop_index);
    let bgp = bgp(&mut cx, &raw.bgp, node.asn);
    let mut pops = BTreeMap::new();
    let mut first_seen: BTreeMap<String, usize> = BTreeMap::new();
    for (i, rp) in raw.pops.iter().enumerate() {
        let path = format!("pops[{i}]");
        if let Some(&j) = first_seen.get(&rp.name) {
            cx.err(
                format!("{path}.name"),
                format!(
                    "duplicate PoP name {:?} (first defined at pops[{j}])",
                    rp.name
                ),
            );
            continue;
        }
        first_seen.insert(rp.name.clone(), i);
        let local = node.pop.as_ref().is_some_and(|p| p.as_str() == rp.name);
        if let Some(pop) = pop(&mut cx, &path, rp, local.then_some(&bgp)) {
            pops.insert(pop.name.clone(), pop);
        }
    }
    let dns = match &raw.dns {
        Some(d) => dns(&mut cx, d, &pop_index, &pops_with_addresses),
        None => DnsConfig {
            listen: Vec::new(),
            identity: DnsIdentity {
                nsid: None,
                chaos: None,
            },
            zones: Vec::new(),
            geoip: None,
            rate_limit: None,
        },
    };
    let api = api(&mut cx, &raw.api);
    if let Some(listen) = api.listen {
        if dns.listen.contains(&listen) {
            cx.err(
                "api.listen",
                format!("{listen} is also a DNS listener (dns.listen); use another port"),
            );
        }
    }
    if cx.errors.is_empty() {
        Ok(Config {
            node,
            bgp,
            pops,
            dns,
            api,
        })
    } else {
        Err(cx.errors)
    }
}

// ---------------------------------------------------------------- node

fn node(cx: &mut Ctx, raw: &RawNode, bgp_used: bool, pops: &BTreeMap<&str, usize>) -> Node {
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

fn unknown_pop(name: &str, pops: &BTreeMap<&str, usize>) -> String {
    if pops.is_empty() {
        format!("unknown PoP {name:?}: no PoPs are defined under `pops`")
    } else {
        let known: Vec<&str> = pops.keys().copied().collect();
        format!("unknown PoP {name:?} (known PoPs: {})", known.join(", "))
    }
}

/// Checks an AS number (4-octet, RFC 6793).
pub(super) fn check_asn(asn: u64) -> Result<u32, String> {
    match asn {
        0 => Err("AS 0 is reserved (RFC 7607): expected 1 to 4294967294".into()),
        23456 => Err("AS 23456 is AS_TRANS (RFC 6793), not a real AS number".into()),
        1..=4_294_967_294 => Ok(asn as u32),
        _ => Err(format!(
            "{asn} is not an AS number: expected 1 to 4294967294"
        )),
    }
}

// ---------------------------------------------------------------- BGP

fn bgp(cx: &mut Ctx, raw: &RawBgp, node_asn: u32) -> BgpConfig {
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
        if let Some(p) = peer(cx, &path, rp, node_asn, listen.is_some()) {
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

fn peer(cx: &mut Ctx, path: &str, raw: &RawPeer, node_asn: u32, listening: bool) -> Option<Peer> {
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
    Some(Peer {
        name: name?,
        address: address?,
        port,
        remote_asn: remote_asn?,
        local_asn: local_asn?,
        local_address,
        passive: raw.passive,
        hold_time,
        connect_retry,
        md5_password_file: raw.md5_password_file.clone(),
        ttl_security: raw.ttl_security,
        ipv4_unicast,
        ipv6_unicast,
        next_hop_v4,
        next_hop_v6,
    })
}

// ---------------------------------------------------------------- PoPs

fn pop(cx: &mut Ctx, path: &str, raw: &RawPop, local_bgp: Option<&BgpConfig>) -> Option<Pop> {
    let name = cx.name(&format!("{path}.name"), &raw.name);
    let mut prefixes: Vec<IpNet> = Vec::new();
    for (k, s) in raw.prefixes.iter().enumerate() {
        let p = format!("{path}.prefixes[{k}]");
        let Some(net) = cx.ok(&p, parse_prefix(s)) else {
            continue;
        };
        if let Some(j) = prefixes.iter().position(|n| *n == net) {
            cx.err(
                p,
                format!("{net} is listed twice (also {path}.prefixes[{j}])"),
            );
            continue;
        }
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
pub(super) fn parse_community(s: &str) -> Result<(u16, u16), String> {
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
pub(super) fn parse_large_community(s: &str) -> Result<(u32, u32, u32), String> {
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

// ---------------------------------------------------------------- checks

const TYPE_KEYS: [&str; 14] = [
    "target",
    "url",
    "host_header",
    "expect_status",
    "body_contains",
    "tls_insecure",
    "server",
    "qname",
    "qtype",
    "expect_rcode",
    "expect_answer",
    "command",
    "path",
    "healthy_when",
];

fn allowed_keys(kind: RawCheckType) -> &'static [&'static str] {
    match kind {
        RawCheckType::Tcp => &["target"],
        RawCheckType::Http => &["url", "host_header", "expect_status", "body_contains"],
        RawCheckType::Https => &[
            "url",
            "host_header",
            "expect_status",
            "body_contains",
            "tls_insecure",
        ],
        RawCheckType::Dns => &["server", "qname", "qtype", "expect_rcode", "expect_answer"],
        RawCheckType::Exec => &["command"],
        RawCheckType::File => &["path", "healthy_when"],
    }
}

fn check(cx: &mut Ctx, path: &str, raw: &RawCheck) -> Option<Check> {
    let name = cx.name(&format!("{path}.name"), &raw.name);
    let kind = raw.kind.as_str();
    let present = [
        raw.target.is_some(),
        raw.url.is_some(),
        raw.host_header.is_some(),
        raw.expect_status.is_some(),
        raw.body_contains.is_some(),
        raw.tls_insecure.is_some(),
        raw.server.is_some(),
        raw.qname.is_some(),
        raw.qtype.is_some(),
        raw.expect_rcode.is_some(),
        raw.expect_answer.is_some(),
        raw.command.is_some(),
        raw.path.is_some(),
        raw.healthy_when.is_some(),
    ];
    let allowed = allowed_keys(raw.kind);
    for (key, present) in TYPE_KEYS.iter().zip(present) {
        if present && !allowed.contains(key) {
            cx.err(
                format!("{path}.{key}"),
                format!(
                    "not used by a {kind} check (a {kind} check takes: {})",
                    allowed.join(", ")
                ),
            );
        }
    }
    let required = |cx: &mut Ctx, key: &str, example: &str| {
        cx.err(
            format!("{path}.{key}"),
            format!("required for a {kind} check ({example})"),
        );
    };
    let probe = match raw.kind {
        RawCheckType::Tcp => match &raw.target {
            None => {
                required(cx, "target", "host:port, e.g. \"127.0.0.1:80\"");
                None
            }
            Some(t) => cx
                .ok(&format!("{path}.target"), parse_host_port(t))
                .map(|target| Probe::Tcp { target }),
        },
        RawCheckType::Http | RawCheckType::Https => {
            let want_tls = raw.kind == RawCheckType::Https;
            let url = match &raw.url {
                None => {
                    required(
                        cx,
                        "url",
                        &format!("e.g. \"{kind}://127.0.0.1:8080/healthz\""),
                    );
                    None
                }
                Some(u) => {
                    let p = format!("{path}.url");
                    match cx.ok(&p, parse_url(u)) {
                        Some((tls, _, _)) if tls != want_tls => {
                            cx.err(
                                p,
                                format!(
                                    "{u:?}: a {kind} check needs a {kind}:// URL (or set type: {})",
                                    if tls { "https" } else { "http" }
                                ),
                            );
                            None
                        }
                        other => other,
                    }
                }
            };
            let mut expect_status = Vec::new();
            match &raw.expect_status {
                None => expect_status.push(200),
                Some(list) if list.is_empty() => cx.err(
                    format!("{path}.expect_status"),
                    "expected at least one status code",
                ),
                Some(list) => {
                    for (k, &s) in list.iter().enumerate() {
                        if (100..=599).contains(&s) {
                            expect_status.push(s as u16);
                        } else {
                            cx.err(
                                format!("{path}.expect_status[{k}]"),
                                format!("{s} is not an HTTP status code: expected 100 to 599"),
                            );
                        }
                    }
                }
            }
            if let Some(h) = &raw.host_header {
                if h.is_empty() || h.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    cx.err(
                        format!("{path}.host_header"),
                        format!("{h:?} is not a valid Host header"),
                    );
                }
            }
            url.map(|(tls, target, url_path)| Probe::Http {
                tls,
                target,
                path: url_path,
                host_header: raw.host_header.clone(),
                expect_status,
                body_contains: raw.body_contains.clone(),
                tls_insecure: raw.tls_insecure.unwrap_or(false),
            })
        }
        RawCheckType::Dns => {
            let server = match &raw.server {
                None => {
                    required(
                        cx,
                        "server",
                        "address of the DNS server, e.g. \"127.0.0.1:53\"",
                    );
                    None
                }
                Some(s) => cx.ok(&format!("{path}.server"), parse_socket_addr(s, 53)),
            };
            let qname = match &raw.qname {
                None => {
                    required(cx, "qname", "the name to query, e.g. \"example.net.\"");
                    None
                }
                Some(q) => cx.ok(&format!("{path}.qname"), parse_domain(q, None)),
            };
            let qtype = match &raw.qtype {
                None => Some(DnsType::A),
                Some(t) => cx.ok(
                    &format!("{path}.qtype"),
                    DnsType::parse(t).ok_or_else(|| {
                        format!("{t:?} is not a supported type: expected one of A, AAAA, CNAME, TXT, MX, SRV, CAA, NS, SOA")
                    }),
                ),
            };
            let expect_rcode = match &raw.expect_rcode {
                None => Some(DnsRcode::NoError),
                Some(r) => cx.ok(&format!("{path}.expect_rcode"), parse_rcode(r)),
            };
            match (server, qname, qtype, expect_rcode) {
                (Some(server), Some(qname), Some(qtype), Some(expect_rcode)) => Some(Probe::Dns {
                    server,
                    qname,
                    qtype,
                    expect_rcode,
                    expect_answer: raw.expect_answer.as_ref().map(|t| t.0.clone()),
                }),
                _ => None,
            }
        }
        RawCheckType::Exec => match &raw.command {
            None => {
                required(
                    cx,
                    "command",
                    "the argv list, e.g. [\"/usr/bin/curl\", \"-f\", \"http://127.0.0.1/\"]",
                );
                None
            }
            Some(cmd) if cmd.first().is_none_or(|c| c.0.trim().is_empty()) => {
                cx.err(
                    format!("{path}.command"),
                    "the command is empty: expected a program and its arguments, e.g. [\"/bin/true\"]",
                );
                None
            }
            Some(cmd) => Some(Probe::Exec {
                command: cmd.iter().map(|t| t.0.clone()).collect(),
            }),
        },
        RawCheckType::File => match &raw.path {
            None => {
                required(cx, "path", "e.g. \"/etc/anypop/maintenance\"");
                None
            }
            Some(p) if !p.is_absolute() => {
                cx.err(
                    format!("{path}.path"),
                    format!("{:?} is not an absolute path", p.display().to_string()),
                );
                None
            }
            Some(p) => Some(Probe::File {
                path: p.clone(),
                healthy_if_present: raw.healthy_when == Some(RawHealthyWhen::Present),
            }),
        },
    };
    let timing = timing(cx, path, raw);
    let (interval, fast_interval, timeout, rise, fall, jitter) = timing?;
    Some(Check {
        name: name?,
        probe: probe?,
        interval,
        fast_interval,
        timeout,
        rise,
        fall,
        jitter,
    })
}

type Timing = (Duration, Duration, Duration, u32, u32, Duration);

fn timing(cx: &mut Ctx, path: &str, raw: &RawCheck) -> Option<Timing> {
    let p = |key: &str| format!("{path}.{key}");
    let mut ok = true;
    let mut positive =
        |cx: &mut Ctx, key: &str, raw: Option<&RawDuration>| match cx.duration(&p(key), raw) {
            None => {
                ok = false;
                None
            }
            Some(Some(d)) if d.is_zero() => {
                cx.err(p(key), "must be longer than 0");
                ok = false;
                None
            }
            Some(d) => d,
        };
    let interval = positive(cx, "interval", raw.interval.as_ref());
    let fast = positive(cx, "fast_interval", raw.fast_interval.as_ref());
    let timeout = positive(cx, "timeout", raw.timeout.as_ref());
    let jitter = match cx.duration(&p("jitter"), raw.jitter.as_ref()) {
        None => {
            ok = false;
            None
        }
        Some(d) => d,
    };
    let interval_v = interval.unwrap_or(DEFAULT_INTERVAL);
    let fast_v = fast.unwrap_or(DEFAULT_FAST_INTERVAL.min(interval_v));
    let timeout_v = timeout.unwrap_or(if DEFAULT_TIMEOUT < interval_v {
        DEFAULT_TIMEOUT
    } else {
        interval_v / 2
    });
    let jitter_v = jitter.unwrap_or(DEFAULT_JITTER.min(fast_v / 2));
    let mut count = |key: &str, v: Option<u64>, default: u32| -> u32 {
        match v {
            None => default,
            Some(n) if (1..=1000).contains(&n) => n as u32,
            Some(n) => {
                cx.err(p(key), format!("{n} is out of range: expected 1 to 1000"));
                default
            }
        }
    };
    let rise = count("rise", raw.rise, DEFAULT_RISE);
    let fall = count("fall", raw.fall, DEFAULT_FALL);
    if ok {
        if timeout_v >= interval_v {
            cx.err(
                p("timeout"),
                format!(
                    "{} must be shorter than the interval ({})",
                    format_duration(timeout_v),
                    format_duration(interval_v)
                ),
            );
        }
        if fast_v > interval_v {
            cx.err(
                p("fast_interval"),
                format!(
                    "{} must not be longer than the interval ({})",
                    format_duration(fast_v),
                    format_duration(interval_v)
                ),
            );
        }
        if jitter_v >= fast_v {
            cx.err(
                p("jitter"),
                format!(
                    "{} must be shorter than the fast_interval ({})",
                    format_duration(jitter_v),
                    format_duration(fast_v)
                ),
            );
        }
    }
    ok.then_some((interval_v, fast_v, timeout_v, rise, fall, jitter_v))
}

fn parse_rcode(s: &str) -> Result<DnsRcode, String> {
    Ok(match s.trim().to_ascii_uppercase().as_str() {
        "NOERROR" => DnsRcode::NoError,
        "NXDOMAIN" => DnsRcode::NxDomain,
        "SERVFAIL" => DnsRcode::ServFail,
        "REFUSED" => DnsRcode::Refused,
        _ => {
            return Err(format!(
                "{s:?} is not a supported rcode: expected NOERROR, NXDOMAIN, SERVFAIL or REFUSED"
            ))
        }
    })
}

// ---------------------------------------------------------------- DNS

fn dns(
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
        let db = cx.ok(p, crate::dns::geoip::GeoDb::open(&g.database))?;
        Some(GeoIp {
            database: g.database.clone(),
            db: std::sync::Arc::new(db),
        })
    });
    cx.geoip = raw.geoip.is_some();
    let rate_limit = raw.rate_limit.as_ref().and_then(|r| rate_limit(cx, r));
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
    }
}

/// Default RRL slip: every 2nd limited response goes out truncated.
pub const DEFAULT_RRL_SLIP: u32 = 2;
/// Default RRL window.
pub const DEFAULT_RRL_WINDOW: Duration = Duration::from_secs(15);

fn rate_limit(cx: &mut Ctx, raw: &RawRateLimit) -> Option<RateLimit> {
    let before = cx.errors.len();
    let p = "dns.rate_limit";
    let rps = raw.responses_per_second;
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

/// What occupies a name in a zone, for conflict checks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Slot {
    Static(DnsType),
    Steered,
}

fn zone(
    cx: &mut Ctx,
    path: &str,
    raw: &RawZone,
    pops: &BTreeMap<&str, usize>,
    with_addresses: &BTreeSet<&str>,
) -> Option<Zone> {
    let origin = cx.ok(&format!("{path}.origin"), parse_domain(&raw.origin, None))?;
    if origin == "." {
        cx.err(format!("{path}.origin"), "the root zone is not supported");
        return None;
    }
    let mut ns = Vec::new();
    if raw.ns.is_empty() {
        cx.err(
            format!("{path}.ns"),
            format!("a zone needs at least one name server, e.g. [\"ns1.{origin}\"]"),
        );
    }
    for (k, s) in raw.ns.iter().enumerate() {
        if let Some(n) = cx.ok(&format!("{path}.ns[{k}]"), parse_domain(s, Some(&origin))) {
            ns.push(n);
        }
    }
    let sp = format!("{path}.soa");
    let mname = match &raw.soa.mname {
        Some(m) => cx
            .ok(&format!("{sp}.mname"), parse_domain(m, Some(&origin)))
            .unwrap_or_default(),
        None => ns
            .first()
            .cloned()
            .unwrap_or_else(|| format!("ns1.{origin}")),
    };
    let rname = match &raw.soa.rname {
        Some(r) => {
            // Accept a mail address: hostmaster@example.net -> hostmaster.example.net.
            let r2 = match r.split_once('@') {
                // The mail domain is always fully qualified.
                Some((user, host)) if !user.contains('.') => {
                    format!("{user}.{}.", host.trim_end_matches('.'))
                }
                _ => r.clone(),
            };
            cx.ok(&format!("{sp}.rname"), parse_domain(&r2, Some(&origin)))
                .unwrap_or_default()
        }
        None => format!("hostmaster.{origin}"),
    };
    let serial = match raw.soa.serial {
        None => 1,
        Some(s) => match u32::try_from(s) {
            Ok(s) => s,
            Err(_) => {
                cx.err(
                    format!("{sp}.serial"),
                    format!("{s} is out of range: expected 0 to 4294967295"),
                );
                1
            }
        },
    };
    let soa = Soa {
        mname,
        rname,
        serial,
        refresh: cx.seconds(&format!("{sp}.refresh"), raw.soa.refresh.as_ref(), 3600),
        retry: cx.seconds(&format!("{sp}.retry"), raw.soa.retry.as_ref(), 600),
        expire: cx.seconds(&format!("{sp}.expire"), raw.soa.expire.as_ref(), 604_800),
        minimum: cx.seconds(&format!("{sp}.minimum"), raw.soa.minimum.as_ref(), 60),
    };
    let ttl = cx.seconds(&format!("{path}.ttl"), raw.ttl.as_ref(), DEFAULT_ZONE_TTL);
    let mut records = Vec::new();
    let mut slots: Vec<(String, Slot, usize)> = Vec::new();
    for (k, rr) in raw.records.iter().enumerate() {
        let p = format!("{path}.records[{k}]");
        let Some(rec) = record(cx, &p, rr, &origin, ttl, pops, with_addresses) else {
            continue;
        };
        let slot = match &rec.data {
            RecordData::Static { rtype, .. } => Slot::Static(*rtype),
            RecordData::Steered(_) => Slot::Steered,
        };
        let is_addr =
            |s: Slot| matches!(s, Slot::Steered | Slot::Static(DnsType::A | DnsType::Aaaa));
        let mut clash = None;
        for (name, other, j) in &slots {
            if *name != rec.name {
                continue;
            }
            let conflict = *other == slot
                || (is_addr(*other)
                    && is_addr(slot)
                    && (*other == Slot::Steered || slot == Slot::Steered))
                || *other == Slot::Static(DnsType::Cname)
                || slot == Slot::Static(DnsType::Cname);
            if conflict {
                clash = Some(*j);
                break;
            }
        }
        if let Some(j) = clash {
            cx.err(
                format!("{p}.name"),
                format!(
                    "{} already has a conflicting record at {path}.records[{j}] (one record per name and type; a steered record owns A and AAAA; CNAME stands alone)",
                    rec.name
                ),
            );
            continue;
        }
        slots.push((rec.name.clone(), slot, k));
        records.push(rec);
    }
    Some(Zone {
        origin,
        soa,
        ns,
        ttl,
        records,
    })
}

fn record(
    cx: &mut Ctx,
    path: &str,
    raw: &RawRecord,
    origin: &str,
    zone_ttl: u32,
    pops: &BTreeMap<&str, usize>,
    with_addresses: &BTreeSet<&str>,
) -> Option<Record> {
    let np = format!("{path}.name");
    let name = cx.ok(&np, parse_domain(&raw.name, Some(origin)));
    let name = match name {
        Some(n) if !in_zone(&n, origin) => {
            cx.err(np, format!("{n} is outside the zone {origin}"));
            None
        }
        other => other,
    };
    match (&raw.steer, &raw.rtype, &raw.values) {
        (Some(steer), rtype, values) => {
            if rtype.is_some() {
                cx.err(
                    format!("{path}.type"),
                    "a steered record has no type: it answers A and AAAA from the PoPs' addresses",
                );
            }
            if values.is_some() {
                cx.err(
                    format!("{path}.values"),
                    "a steered record takes its answers from the PoPs' addresses: remove `values` or `steer`",
                );
            }
            let ttl = cx.seconds(
                &format!("{path}.ttl"),
                raw.ttl.as_ref(),
                DEFAULT_STEERED_TTL,
            );
            let steering = steering(
                cx,
                &format!("{path}.steer"),
                steer,
                ttl,
                pops,
                with_addresses,
            );
            Some(Record {
                name: name?,
                ttl,
                data: RecordData::Steered(steering?),
            })
        }
        (None, None, _) => {
            cx.err(
                path,
                "a record needs either `type` and `values` (static) or `steer` (steered)",
            );
            None
        }
        (None, Some(t), values) => {
            let tp = format!("{path}.type");
            let rtype = cx.ok(
                &tp,
                DnsType::parse(t).ok_or_else(|| {
                    format!("{t:?} is not a supported record type: expected one of A, AAAA, CNAME, TXT, MX, SRV, CAA, NS")
                }),
            );
            let rtype = match rtype {
                Some(DnsType::Soa) => {
                    cx.err(
                        tp,
                        "the SOA comes from the zone's `soa` key, not from a record",
                    );
                    None
                }
                Some(DnsType::Ns) if name.as_deref() == Some(origin) => {
                    cx.err(tp, "the apex NS records come from the zone's `ns` key");
                    None
                }
                Some(DnsType::Cname) if name.as_deref() == Some(origin) => {
                    cx.err(tp, "a CNAME cannot be at the zone apex");
                    None
                }
                other => other,
            };
            let ttl = cx.seconds(&format!("{path}.ttl"), raw.ttl.as_ref(), zone_ttl);
            let vp = format!("{path}.values");
            let mut out = Vec::new();
            match values {
                None => cx.err(vp, "required for a static record: a list of values"),
                Some(v) if v.is_empty() => cx.err(vp, "expected at least one value"),
                Some(v) => {
                    if rtype == Some(DnsType::Cname) && v.len() > 1 {
                        cx.err(vp.clone(), "a CNAME has exactly one value");
                    }
                    for (k, val) in v.iter().enumerate() {
                        let Some(rt) = rtype else { break };
                        let p = format!("{vp}[{k}]");
                        if let Some(norm) = cx.ok(&p, record_value(rt, &val.0, origin)) {
                            if out.contains(&norm) {
                                cx.err(p, format!("{norm:?} is listed twice"));
                            } else {
                                out.push(norm);
                            }
                        }
                    }
                }
            }
            Some(Record {
                name: name?,
                ttl,
                data: RecordData::Static {
                    rtype: rtype?,
                    values: out,
                },
            })
        }
    }
}

fn steering(
    cx: &mut Ctx,
    path: &str,
    raw: &RawSteer,
    ttl: u32,
    pops: &BTreeMap<&str, usize>,
    with_addresses: &BTreeSet<&str>,
) -> Option<Steering> {
    let policy_name = raw.policy.as_str();
    let used: &[&str] = match raw.policy {
        RawPolicy::Failover => &["pops"],
        RawPolicy::Weighted => &["weights"],
        RawPolicy::Geo => &["map", "default"],
        RawPolicy::AllHealthy => &["pops", "max"],
        RawPolicy::Nearest => &["pops", "default"],
    };
    for (key, present) in [
        ("pops", raw.pops.is_some()),
        ("weights", raw.weights.is_some()),
        ("map", raw.map.is_some()),
        ("default", raw.default.is_some()),
        ("max", raw.max.is_some()),
    ] {
        if present && !used.contains(&key) {
            cx.err(
                format!("{path}.{key}"),
                format!(
                    "not used by policy {policy_name} (it takes: {})",
                    used.join(", ")
                ),
            );
        }
    }
    let before = cx.errors.len();
    let refs = PopRefs {
        pops,
        with_addresses,
        policy: policy_name,
    };
    let policy = match raw.policy {
        RawPolicy::Failover => SteeringPolicy::Failover {
            pops: refs.list(cx, &format!("{path}.pops"), raw.pops.as_ref()),
        },
        RawPolicy::AllHealthy => {
            let pops = refs.list(cx, &format!("{path}.pops"), raw.pops.as_ref());
            let max = match raw.max {
                None => DEFAULT_ALL_HEALTHY_MAX,
                Some(m) if (1..=64).contains(&m) => m as u32,
                Some(m) => {
                    cx.err(
                        format!("{path}.max"),
                        format!("{m} is out of range: expected 1 to 64"),
                    );
                    DEFAULT_ALL_HEALTHY_MAX
                }
            };
            SteeringPolicy::AllHealthy { pops, max }
        }
        RawPolicy::Weighted => {
            let p = format!("{path}.weights");
            let mut weights = BTreeMap::new();
            match &raw.weights {
                None => cx.err(
                    p,
                    "required by policy weighted: a map of PoP name to weight, e.g. {fra1: 3, ams1: 1}",
                ),
                Some(w) if w.is_empty() => cx.err(p, "expected at least one PoP"),
                Some(w) => {
                    for (name, &weight) in w {
                        let ep = format!("{p}.{name}");
                        if weight > 1_000_000 {
                            cx.err(
                                ep.clone(),
                                format!("{weight} is out of range: expected 0 to 1000000"),
                            );
                        }
                        if let Some(n) = refs.one(cx, &ep, name) {
                            weights.insert(n, weight.min(1_000_000) as u32);
                        }
                    }
                    if w.values().all(|&v| v == 0) {
                        cx.err(p, "all weights are 0: at least one PoP needs a weight above 0");
                    }
                }
            }
            SteeringPolicy::Weighted { weights }
        }
        RawPolicy::Geo => {
            let mut map = Vec::new();
            let mut countries: Vec<(String, Vec<Name>)> = Vec::new();
            let mut continents: Vec<(String, Vec<Name>)> = Vec::new();
            let mp = format!("{path}.map");
            for (k, e) in raw.map.iter().flatten().enumerate() {
                let ep = format!("{mp}[{k}]");
                let keys = [
                    e.subnet.is_some(),
                    e.country.is_some(),
                    e.continent.is_some(),
                ];
                if keys.iter().filter(|k| **k).count() != 1 {
                    cx.err(
                        ep.clone(),
                        "expected exactly one of `subnet`, `country` or `continent`",
                    );
                }
                let subnet = e
                    .subnet
                    .as_ref()
                    .and_then(|s| cx.ok(&format!("{ep}.subnet"), parse_prefix(s)));
                let mut code_rule = None;
                for (key, v) in [("country", &e.country), ("continent", &e.continent)] {
                    let Some(v) = v else { continue };
                    let kp = format!("{ep}.{key}");
                    if !cx.geoip {
                        cx.err(
                            kp.clone(),
                            format!("a {key} rule needs dns.geoip.database (a MaxMind database to look clients up in)"),
                        );
                    }
                    let code = crate::dns::geoip::Code::parse(v).map(|c| c.to_string());
                    let code = match (key, code) {
                        ("continent", Some(c)) if !CONTINENTS.contains(&c.as_str()) => {
                            cx.err(
                                kp,
                                format!(
                                    "{v:?} is not a continent code: expected one of {}",
                                    CONTINENTS.join(", ")
                                ),
                            );
                            None
                        }
                        (_, Some(c)) => Some(c),
                        (_, None) => {
                            cx.err(
                                kp,
                                format!(
                                    "{v:?} is not a two-letter {key} code (e.g. {})",
                                    if key == "country" { "DE" } else { "EU" }
                                ),
                            );
                            None
                        }
                    };
                    code_rule = code.map(|c| (key, c));
                }
                let mut list = Vec::new();
                if e.pops.is_empty() {
                    cx.err(format!("{ep}.pops"), "expected at least one PoP");
                }
                for (j, name) in e.pops.iter().enumerate() {
                    if let Some(n) = refs.one(cx, &format!("{ep}.pops[{j}]"), name) {
                        list.push(n);
                    }
                }
                if let Some(s) = subnet {
                    if let Some(j) = map.iter().position(|(o, _): &(IpNet, _)| *o == s) {
                        cx.err(
                            format!("{ep}.subnet"),
                            format!("{s} is listed twice (also {mp}[{j}])"),
                        );
                    } else {
                        map.push((s, list));
                    }
                } else if let Some((key, code)) = code_rule {
                    let rules = if key == "country" {
                        &mut countries
                    } else {
                        &mut continents
                    };
                    if rules.iter().any(|(c, _)| *c == code) {
                        cx.err(
                            format!("{ep}.{key}"),
                            format!("{key} {code} is listed twice"),
                        );
                    } else {
                        rules.push((code, list));
                    }
                }
            }
            let default = match &raw.default {
                None => Vec::new(),
                Some(_) => refs.list(cx, &format!("{path}.default"), raw.default.as_ref()),
            };
            if raw.map.as_ref().is_none_or(Vec::is_empty) && default.is_empty() {
                cx.err(
                    format!("{path}.map"),
                    "policy geo needs a `map` of client subnets to PoPs and/or a `default` list",
                );
            }
            SteeringPolicy::Geo {
                map,
                countries,
                continents,
                default,
            }
        }
        RawPolicy::Nearest => {
            if !cx.geoip {
                cx.err(
                    format!("{path}.policy"),
                    "policy nearest needs dns.geoip.database (a MaxMind City database with coordinates)",
                );
            }
            let pp = format!("{path}.pops");
            let pops = refs.list(cx, &pp, raw.pops.as_ref());
            for (k, name) in raw.pops.iter().flatten().enumerate() {
                if pops.iter().any(|p| p.as_str() == name) && !cx.pops_with_location.contains(name)
                {
                    let at = pop_index(refs.pops, name);
                    cx.err(
                        format!("{pp}[{k}]"),
                        format!("PoP {name:?} has no location for policy nearest (set pops[{at}].location: {{lat: .., lon: ..}})"),
                    );
                }
            }
            let default = match &raw.default {
                None => Vec::new(),
                Some(_) => refs.list(cx, &format!("{path}.default"), raw.default.as_ref()),
            };
            SteeringPolicy::Nearest { pops, default }
        }
    };
    let short_ttl = cx.seconds(
        &format!("{path}.short_ttl"),
        raw.short_ttl.as_ref(),
        DEFAULT_SHORT_TTL.min(ttl),
    );
    if short_ttl > ttl {
        cx.err(
            format!("{path}.short_ttl"),
            format!("{short_ttl} is longer than the record's ttl ({ttl})"),
        );
    }
    let settle = cx
        .duration(&format!("{path}.settle"), raw.settle.as_ref())
        .flatten()
        .unwrap_or(DEFAULT_STEER_SETTLE);
    let mut fallback = Vec::new();
    for (k, s) in raw.fallback.iter().flatten().enumerate() {
        let p = format!("{path}.fallback[{k}]");
        if let Some(a) = cx.ok(&p, parse_ip(s)) {
            if fallback.contains(&a) {
                cx.err(p, format!("{a} is listed twice"));
            } else {
                fallback.push(a);
            }
        }
    }
    let n_pops = policy.pops().len() as u64;
    let min_healthy_pops = match raw.min_healthy_pops {
        None => 0,
        Some(m) if m <= n_pops => m as u32,
        Some(m) => {
            cx.err(
                format!("{path}.min_healthy_pops"),
                format!("{m} is more than the {n_pops} PoP(s) this record steers to"),
            );
            0
        }
    };
    (cx.errors.len() == before).then_some(Steering {
        policy,
        short_ttl,
        settle,
        fallback,
        min_healthy_pops,
    })
}

/// Continent codes of MaxMind databases.
const CONTINENTS: [&str; 7] = ["AF", "AN", "AS", "EU", "NA", "OC", "SA"];

fn pop_index(pops: &BTreeMap<&str, usize>, name: &str) -> usize {
    pops.get(name).copied().unwrap_or(0)
}

/// Resolves PoP names used by a steering policy.
struct PopRefs<'a> {
    pops: &'a BTreeMap<&'a str, usize>,
    with_addresses: &'a BTreeSet<&'a str>,
    policy: &'a str,
}

impl PopRefs<'_> {
    fn one(&self, cx: &mut Ctx, path: &str, name: &str) -> Option<Name> {
        let n = cx.name(path, name)?;
        match self.pops.get(name) {
            None => {
                cx.err(path, unknown_pop(name, self.pops));
                None
            }
            Some(i) if !self.with_addresses.contains(name) => {
                cx.err(
                    path,
                    format!(
                        "PoP {name:?} has no addresses to answer with (set pops[{i}].addresses)"
                    ),
                );
                None
            }
            Some(_) => Some(n),
        }
    }

    fn list(&self, cx: &mut Ctx, path: &str, list: Option<&Vec<String>>) -> Vec<Name> {
        let mut out = Vec::new();
        match list {
            None => cx.err(
                path,
                format!("required by policy {}: a list of PoP names", self.policy),
            ),
            Some(l) if l.is_empty() => cx.err(path, "expected at least one PoP"),
            Some(l) => {
                for (k, name) in l.iter().enumerate() {
                    let ep = format!("{path}[{k}]");
                    if let Some(n) = self.one(cx, &ep, name) {
                        if out.contains(&n) {
                            cx.err(ep, format!("PoP {name:?} is listed twice"));
                        } else {
                            out.push(n);
                        }
                    }
                }
            }
        }
        out
    }
}

// ---------------------------------------------------------------- scalars

pub(super) fn parse_ip(s: &str) -> Result<IpAddr, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("{s:?} is not an IP address: expected e.g. 192.0.2.1 or 2001:db8::1"))
}

/// A prefix, refusing host bits and bare addresses with a suggestion.
pub(super) fn parse_prefix(s: &str) -> Result<IpNet, String> {
    let t = s.trim();
    if !t.contains('/') {
        if let Ok(a) = t.parse::<IpAddr>() {
            let len = if a.is_ipv4() { 32 } else { 128 };
            return Err(format!(
                "{s:?} is an address, not a prefix: expected address/length; did you mean {a}/{len}?"
            ));
        }
    }
    let net: IpNet = t.parse().map_err(|_| {
        format!(
            "{s:?} is not a valid prefix: expected address/length, e.g. 203.0.113.0/24 or 2001:db8::/48"
        )
    })?;
    if net.addr() != net.network() {
        return Err(format!(
            "{s:?} has host bits set; did you mean {}?",
            net.trunc()
        ));
    }
    Ok(net)
}

/// `addr:port`, `[v6]:port`, or a bare address with `default_port`.
pub(super) fn parse_socket_addr(s: &str, default_port: u16) -> Result<SocketAddr, String> {
    let t = s.trim();
    if let Ok(a) = t.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Ok(ip) = t
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        return Ok(SocketAddr::new(ip, default_port));
    }
    Err(format!(
        "{s:?} is not a socket address: expected ADDRESS:PORT, e.g. 127.0.0.1:{default_port} or [::1]:{default_port}"
    ))
}

/// `host:port` or `[v6]:port` where host may be a name.
pub(super) fn parse_host_port(s: &str) -> Result<HostPort, String> {
    let t = s.trim();
    let bad = || {
        format!("{s:?} is not HOST:PORT: expected e.g. \"127.0.0.1:80\", \"[::1]:80\" or \"localhost:80\"")
    };
    let (host, port) = if let Some(rest) = t.strip_prefix('[') {
        let (h, p) = rest.split_once("]:").ok_or_else(bad)?;
        h.parse::<Ipv6Addr>().map_err(|_| bad())?;
        (h, p)
    } else {
        let (h, p) = t.rsplit_once(':').ok_or_else(bad)?;
        if h.contains(':') {
            return Err(format!(
                "{s:?}: write an IPv6 address in brackets, e.g. \"[::1]:80\""
            ));
        }
        (h, p)
    };
    let port: u16 = port.parse().map_err(|_| bad())?;
    if port == 0 {
        return Err(format!("{s:?}: port 0 is not valid"));
    }
    if host.is_empty()
        || host
            .chars()
            .any(|c| c.is_whitespace() || c == '/' || c == '@')
    {
        return Err(bad());
    }
    Ok(HostPort {
        host: host.to_string(),
        port,
    })
}

/// `http[s]://host[:port][/path]` → (tls, target, path with query).
pub(super) fn parse_url(s: &str) -> Result<(bool, HostPort, String), String> {
    let t = s.trim();
    let bad = |why: &str| format!("{s:?} is not a valid URL: {why}");
    let (tls, rest) = if let Some(r) = t.strip_prefix("http://") {
        (false, r)
    } else if let Some(r) = t.strip_prefix("https://") {
        (true, r)
    } else {
        return Err(bad(
            "expected http:// or https://, e.g. \"http://127.0.0.1:8080/healthz\"",
        ));
    };
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    if authority.contains('@') {
        return Err(bad("user information in URLs is not supported"));
    }
    if authority.is_empty() {
        return Err(bad("the host is missing"));
    }
    if path.contains(char::is_whitespace) || path.contains('#') {
        return Err(bad("the path contains spaces or a fragment"));
    }
    let default_port = if tls { 443 } else { 80 };
    let hp = if authority.ends_with(']') || !authority.contains(':') {
        let host = authority.trim_start_matches('[').trim_end_matches(']');
        if authority.starts_with('[') && host.parse::<Ipv6Addr>().is_err() {
            return Err(bad("the bracketed host is not an IPv6 address"));
        }
        HostPort {
            host: host.to_string(),
            port: default_port,
        }
    } else {
        parse_host_port(authority).map_err(|_| bad("expected host[:port] after the scheme"))?
    };
    if hp.host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("the host contains spaces"));
    }
    let path = if path.is_empty() {
        "/".to_string()
    } else if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_string()
    };
    Ok((tls, hp, path))
}

/// A domain name, lower case and fully qualified. Relative names (no
/// trailing dot) are completed with `origin` (`@` is the origin itself).
pub(super) fn parse_domain(s: &str, origin: Option<&str>) -> Result<String, String> {
    let t = s.trim().to_ascii_lowercase();
    let full = if t == "@" {
        match origin {
            Some(o) => o.to_string(),
            None => return Err("\"@\" is only allowed inside a zone".into()),
        }
    } else if t.ends_with('.') {
        t
    } else if t.is_empty() {
        return Err("expected a domain name, got an empty string".into());
    } else {
        match origin {
            Some(".") | None => format!("{t}."),
            Some(o) => format!("{t}.{o}"),
        }
    };
    if full == "." {
        return Ok(full);
    }
    if full.len() > 254 {
        return Err(format!(
            "{s:?} is too long for a domain name (at most 253 characters)"
        ));
    }
    let labels: Vec<&str> = full[..full.len() - 1].split('.').collect();
    for (i, label) in labels.iter().enumerate() {
        if label.is_empty() || label.len() > 63 {
            return Err(format!(
                "{s:?} is not a valid domain name: each label must be 1 to 63 characters"
            ));
        }
        if *label == "*" && i == 0 {
            continue;
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(format!(
                "{s:?} is not a valid domain name: character {c:?} is not allowed"
            ));
        }
    }
    Ok(full)
}

fn in_zone(name: &str, origin: &str) -> bool {
    name == origin || name.ends_with(&format!(".{origin}"))
}

/// Checks a static record value for its type; returns it normalized
/// (names fully qualified, lower case). The result also parses with the
/// DNS library's zone-file parser, so the DNS server can load it.
pub(super) fn record_value(rtype: DnsType, v: &str, origin: &str) -> Result<String, String> {
    let norm = record_value_syntax(rtype, v, origin)?;
    let plain_txt = rtype == DnsType::Txt && !norm.trim_start().starts_with('"');
    if !plain_txt {
        use hickory_proto::rr::RData;
        let t = crate::dns::zone::record_type(rtype);
        RData::try_from_str(t, &norm)
            .map_err(|e| format!("{v:?} is not a valid {t} value: {e}"))?;
    }
    Ok(norm)
}

fn record_value_syntax(rtype: DnsType, v: &str, origin: &str) -> Result<String, String> {
    let t = v.trim();
    match rtype {
        DnsType::A => t.parse::<Ipv4Addr>().map(|a| a.to_string()).map_err(|_| {
            format!("{v:?} is not an IPv4 address (an A record needs one like 192.0.2.1)")
        }),
        DnsType::Aaaa => t.parse::<Ipv6Addr>().map(|a| a.to_string()).map_err(|_| {
            format!("{v:?} is not an IPv6 address (an AAAA record needs one like 2001:db8::1)")
        }),
        DnsType::Cname | DnsType::Ns => parse_domain(t, Some(origin)),
        DnsType::Txt => Ok(v.to_string()),
        DnsType::Mx => {
            let bad = || {
                format!("{v:?} is not an MX value: expected \"PREFERENCE HOST\", e.g. \"10 mail.example.net.\"")
            };
            let parts: Vec<&str> = t.split_whitespace().collect();
            let [pref, host] = parts.as_slice() else {
                return Err(bad());
            };
            let pref: u16 = pref.parse().map_err(|_| bad())?;
            Ok(format!("{pref} {}", parse_domain(host, Some(origin))?))
        }
        DnsType::Srv => {
            let bad = || {
                format!("{v:?} is not an SRV value: expected \"PRIORITY WEIGHT PORT TARGET\", e.g. \"10 5 443 edge.example.net.\"")
            };
            let parts: Vec<&str> = t.split_whitespace().collect();
            let [prio, weight, port, target] = parts.as_slice() else {
                return Err(bad());
            };
            let prio: u16 = prio.parse().map_err(|_| bad())?;
            let weight: u16 = weight.parse().map_err(|_| bad())?;
            let port: u16 = port.parse().map_err(|_| bad())?;
            Ok(format!(
                "{prio} {weight} {port} {}",
                parse_domain(target, Some(origin))?
            ))
        }
        DnsType::Caa => {
            let bad = || {
                format!("{v:?} is not a CAA value: expected FLAGS TAG \"VALUE\", e.g. 0 issue \"letsencrypt.org\"")
            };
            let mut it = t.splitn(3, char::is_whitespace);
            let (Some(flags), Some(tag), Some(value)) = (it.next(), it.next(), it.next()) else {
                return Err(bad());
            };
            let flags: u8 = flags.parse().map_err(|_| bad())?;
            let tag = tag.to_ascii_lowercase();
            if tag.is_empty() || !tag.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(bad());
            }
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|x| x.strip_suffix('"'))
                .unwrap_or(value);
            if value.contains('"') {
                return Err(bad());
            }
            Ok(format!("{flags} {tag} \"{value}\""))
        }
        DnsType::Soa => Err("SOA values come from the zone's `soa` key".into()),
    }
}

// ---------------------------------------------------------------- API

fn api(cx: &mut Ctx, raw: &RawApi) -> ApiConfig {
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
