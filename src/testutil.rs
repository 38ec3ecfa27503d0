//! Builders shared by the unit tests of several modules (test builds only).

use std::net::Ipv4Addr;

use crate::model::{
    ApiConfig, BgpConfig, Config, DnsConfig, DnsIdentity, Name, Node, Pop, ShutdownMode,
};

/// A node named `name` in PoP `pop`, with no state directory (so nothing
/// to do on a corrupt state file).
pub(crate) fn node(name: &str, pop: Option<&str>, router_id: Ipv4Addr, asn: u32) -> Node {
    Node {
        name: name.into(),
        pop: pop.map(|p| Name::parse(p).expect("valid PoP name")),
        router_id,
        asn,
        state_dir: None,
        start_on_corrupt_state: false,
    }
}

/// A config of `node` and `pops` with everything else off: no BGP listener
/// or peers (shutdown withdraws, no graceful restart), no DNS listener,
/// identity, zones, geoip or rate limit, no API listener or token. Tests
/// set the parts they exercise on the result.
pub(crate) fn config(node: Node, pops: impl IntoIterator<Item = Pop>) -> Config {
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
        },
        api: ApiConfig {
            listen: None,
            token_file: None,
            protect_reads: false,
        },
    }
}
