//! Raw config → validated model. Every problem is recorded with its YAML
//! path and what was expected, and validation goes on, so that one run
//! reports all errors of a file. Cross-references (node → PoP, steering →
//! PoPs), duplicates, ranges and per-type record values are checked here;
//! nothing downstream re-checks them.
//!
//! One file per section of the config file: [`node`], [`bgp`], [`pops`],
//! [`checks`] (`pops[].checks`), [`dns`], [`zones`] (`dns.zones`),
//! [`steering`] (steered records), [`api`] and [`fleet`] (with
//! `pops[].owners`); [`common`] holds what they
//! share (the error collector and scalar parsers). This module only runs
//! the sections in order and checks what spans them. Validation reads no
//! file except the MaxMind database named by `dns.geoip` and the CA files
//! of https fleet peers (`fleet.peers[].ca_file`), so that a reload
//! picks up a replaced file and rejects an unreadable one.

use std::collections::{BTreeMap, BTreeSet};

use super::raw::*;
use super::ConfigError;
use crate::model::*;

mod api;
mod bgp;
mod checks;
mod common;
mod dns;
mod fleet;
mod node;
mod pops;
mod steering;
mod zones;

pub use bgp::{
    DEFAULT_BGP_PORT, DEFAULT_CONNECT_RETRY, DEFAULT_GRACEFUL_RESTART, DEFAULT_HOLD_TIME,
    DEFAULT_MIN_HOLD_TIME,
};
pub use dns::{DEFAULT_DNS_LISTEN, DEFAULT_RATE_LIMIT};
pub use pops::DEFAULT_DEGRADED_PREPEND;
pub use steering::{DEFAULT_ALL_HEALTHY_MAX, DEFAULT_SHORT_TTL, DEFAULT_STEER_SETTLE};
pub use zones::{DEFAULT_STEERED_TTL, DEFAULT_ZONE_TTL};

use self::{api::api, bgp::bgp, common::Ctx, dns::dns, node::node, pops::pop};

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
            udp_workers: None,
        },
    };
    let api = api(&mut cx, &raw.api);
    let fleet = fleet::fleet(&mut cx, &raw, node.pop.as_ref(), &pop_index);
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
            fleet,
        })
    } else {
        Err(cx.errors)
    }
}
