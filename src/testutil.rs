//! Builders shared by the unit tests of several modules and by the fuzz
//! targets (test and `cfg(fuzzing)` builds only).

use std::net::Ipv4Addr;

use crate::model::{
    AnnouncePolicy, ApiConfig, BgpConfig, Combine, Config, DnsConfig, DnsIdentity, FailAction,
    Name, Node, Pop, RouteAttrs, ShutdownMode, DEFAULT_DRAIN_SETTLE,
};

/// A node named `name` in PoP `pop`, with no state directory (so nothing
/// to do on a corrupt state file).
pub fn node(name: &str, pop: Option<&str>, router_id: Ipv4Addr, asn: u32) -> Node {
    Node {
        name: name.into(),
        pop: pop.map(|p| Name::parse(p).expect("valid PoP name")),
        router_id,
        asn,
        state_dir: None,
        start_on_corrupt_state: false,
    }
}

/// A PoP named `name` with nothing in it: no prefixes, addresses,
/// location or checks; `combine: all`; default route attributes, withdrawn
/// when down or drained; no DNS wait and the default settle time on drain.
/// Tests set the parts they exercise on the result.
pub fn pop(name: &str) -> Pop {
    Pop {
        name: Name::parse(name).expect("valid PoP name"),
        prefixes: vec![],
        addresses: vec![],
        location: None,
        checks: vec![],
        combine: Combine::All,
        announce: AnnouncePolicy {
            normal: RouteAttrs::default(),
            degraded: RouteAttrs::default(),
            on_down: FailAction::Withdraw,
            on_drain: FailAction::Withdraw,
        },
        drain_dns_wait: None,
        drain_settle: DEFAULT_DRAIN_SETTLE,
    }
}

/// A config of `node` and `pops` with everything else off: no BGP listener
/// or peers (shutdown withdraws, no graceful restart), no DNS listener,
/// identity, zones, geoip or rate limit, no API listener or token. Tests
/// set the parts they exercise on the result.
pub fn config(node: Node, pops: impl IntoIterator<Item = Pop>) -> Config {
    Config {
        node,
        bgp: BgpConfig {
            listen: None,
            peers: vec![],
            shutdown: ShutdownMode::Withdraw,
            graceful_restart: None,
        },
        pops: pops.into_iter().map(|p| (p.name.clone(), p)).collect(),
        dns: DnsConfig {
            listen: vec![],
            identity: DnsIdentity {
                nsid: None,
                chaos: None,
            },
            zones: vec![],
            geoip: None,
            rate_limit: None,
            udp_workers: None,
        },
        api: ApiConfig {
            listen: None,
            token_file: None,
            protect_reads: false,
            allowed_hosts: Vec::new(),
            header_read_timeout: crate::model::DEFAULT_API_HEADER_READ_TIMEOUT,
            max_connections: crate::model::DEFAULT_API_MAX_CONNECTIONS,
        },
        fleet: None,
    }
}

/// A PoP status in `state` with health `healthy`, no checks, no admin
/// state, changed now.
pub fn pop_status(state: crate::core::PopState, healthy: Option<bool>) -> crate::core::PopStatus {
    crate::core::PopStatus {
        state,
        healthy,
        serves_dns: state == crate::core::PopState::Up,
        reason: String::new(),
        since: std::time::SystemTime::now(),
        changed_at: tokio::time::Instant::now(),
        checks: std::collections::BTreeMap::new(),
        admin: None,
        admin_unsaved: None,
        fail_static: None,
    }
}

/// A peer's OPEN from AS 65000 with identifier `bgp_id` and `hold_time`,
/// offering `families` with route refresh and graceful restart (120 s,
/// forwarding state kept for every family; the RFC 8538 N bit if `n_bit`).
pub fn peer_open(
    bgp_id: Ipv4Addr,
    hold_time: u16,
    families: &[crate::bgp::Family],
    n_bit: bool,
) -> crate::bgp::codec::PeerOpen {
    crate::bgp::codec::PeerOpen {
        version: 4,
        my_as: 65000,
        asn4: Some(65000),
        hold_time,
        bgp_id,
        families: families.to_vec(),
        mp_sent: true,
        route_refresh: true,
        graceful_restart: Some(crate::bgp::codec::PeerGracefulRestart {
            restart_time: 120,
            restarted: false,
            notification: n_bit,
            families: families.iter().map(|f| (*f, true)).collect(),
        }),
    }
}
