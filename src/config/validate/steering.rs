//! `dns.zones[].records[].steer`: each policy's keys and the PoPs it names.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use ipnet::IpNet;

use super::common::*;
use crate::config::raw::*;
use crate::model::*;

/// Default TTL while a steered record's PoPs are changing.
pub const DEFAULT_SHORT_TTL: u32 = 5;
/// Default time the short TTL is used after a change.
pub const DEFAULT_STEER_SETTLE: Duration = Duration::from_secs(60);
/// Default most addresses in an `all_healthy` answer.
pub const DEFAULT_ALL_HEALTHY_MAX: u32 = 8;

pub(super) fn steering(
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
            let mut countries: Vec<(String, Vec<PopName>)> = Vec::new();
            let mut continents: Vec<(String, Vec<PopName>)> = Vec::new();
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
                    let code = crate::geoip::Code::parse(v).map(|c| c.to_string());
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
    fn one(&self, cx: &mut Ctx, path: &str, name: &str) -> Option<PopName> {
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

    fn list(&self, cx: &mut Ctx, path: &str, list: Option<&Vec<String>>) -> Vec<PopName> {
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
