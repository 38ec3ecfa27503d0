//! Steering policies: which PoPs (and addresses) a steered record answers with.
//!
//! Pure functions of (snapshot, record, address family, now): no I/O, no
//! clock reads, no randomness. The work that depends only on the snapshot is
//! done once in [`Plan::build`] (eligibility, fail-open, TTL, the answer
//! variants); the per-query part, [`Plan::select`], only maps a client to a
//! variant index (a hash for `weighted`, a longest-prefix match for `geo`).
//! The server pre-encodes one response per variant, and [`super::explain`]
//! reports the same plan in words, so answers and explanations never differ.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use tokio::time::Instant;

use crate::core::{PopState, Snapshot};
use crate::geoip::{unit_vector, Code, GeoDb, GeoInfo};
use crate::model::{PopName, Steering, SteeringPolicy};

/// IPv4 clients are hashed and scoped at most per /24.
pub const CLIENT_PREFIX_V4: u8 = 24;
/// IPv6 clients are hashed and scoped at most per /56.
pub const CLIENT_PREFIX_V6: u8 = 56;

/// Address family of a steered answer (A or AAAA).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn matches(self, addr: &IpAddr) -> bool {
        matches!(
            (self, addr),
            (Family::V4, IpAddr::V4(_)) | (Family::V6, IpAddr::V6(_))
        )
    }
}

/// The client a query is steered for: the EDNS Client Subnet (RFC 7871) if
/// the query carried one, else the source address (as a full-length prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client {
    /// Address with the bits beyond `prefix` cleared.
    pub addr: IpAddr,
    /// Source prefix length.
    pub prefix: u8,
    /// True if taken from an ECS option.
    pub from_ecs: bool,
}

impl Client {
    /// A client from a source address.
    pub fn from_source(addr: IpAddr) -> Client {
        let prefix = if addr.is_ipv4() { 32 } else { 128 };
        Client {
            addr,
            prefix,
            from_ecs: false,
        }
    }

    /// A client from an ECS option (the address is masked to `prefix`).
    pub fn from_ecs(addr: IpAddr, prefix: u8) -> Client {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.min(max);
        Client {
            addr: mask(addr, prefix),
            prefix,
            from_ecs: true,
        }
    }

    /// The client subnet used for hashing: at most /24 (IPv4) or /56 (IPv6).
    pub fn hash_prefix(&self) -> u8 {
        let cap = if self.addr.is_ipv4() {
            CLIENT_PREFIX_V4
        } else {
            CLIENT_PREFIX_V6
        };
        self.prefix.min(cap)
    }
}

/// Clears the bits of `addr` beyond `prefix`.
pub fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    IpNet::new(addr, prefix)
        .map(|n| n.network())
        .unwrap_or(addr)
}

/// Why a PoP of a record cannot be answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exclusion {
    Down,
    Draining,
    Disabled,
    /// Up but not serving DNS.
    NotServing,
    /// No health verdict yet (too few probes since start).
    Undecided,
    /// Not known to the snapshot.
    Unknown,
    ZeroWeight,
    /// The PoP has no address of the queried family.
    NoAddress,
}

/// One possible answer of a plan: the PoPs and their addresses.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    pub pops: Vec<PopName>,
    pub addrs: Vec<IpAddr>,
}

/// How a client is mapped to a variant.
#[derive(Debug, Clone)]
enum Selector {
    /// Same answer for every client.
    Fixed(usize),
    /// Weighted rendezvous hashing over (client subnet, record name, PoP).
    Weighted {
        name_hash: u64,
        /// (PoP seed, weight, variant)
        pops: Vec<(u64, f64, usize)>,
    },
    /// Longest subnet match first, then country, then continent (from the
    /// database, only when there are such rules), then `default`. Rules
    /// without an eligible PoP are left out, so clients fall through.
    Geo {
        map: Vec<(IpNet, usize)>,
        countries: Vec<(Code, usize)>,
        continents: Vec<(Code, usize)>,
        db: Option<Arc<GeoDb>>,
        default: usize,
    },
    /// The eligible PoP nearest to the client's coordinates.
    Nearest {
        db: Arc<GeoDb>,
        /// (PoP location as a unit vector, variant).
        pops: Vec<([f64; 3], usize)>,
        default: usize,
    },
}

/// Which rule of a plan decided a client's variant (for explain).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rule {
    /// The same answer for every client.
    Fixed,
    /// Weighted hash of the client subnet.
    Hashed,
    Subnet(IpNet),
    Country(Code),
    Continent(Code),
    /// No rule matched (or the client has no coordinates): `default`.
    Default,
    /// The nearest PoP by distance.
    Nearest,
}

/// The snapshot-dependent part of steering one record for one family.
#[derive(Debug, Clone)]
pub struct Plan {
    pub policy: &'static str,
    pub family: Family,
    /// PoPs that may be answered with, in policy order.
    pub eligible: Vec<PopName>,
    pub excluded: Vec<(PopName, Exclusion)>,
    /// Why the plan fails open (no or too few healthy PoPs), if it does.
    pub fail_open: Option<String>,
    /// True if no PoP of the record has an address of this family at all
    /// (e.g. an IPv4-only record asked for AAAA): the answer is NODATA by
    /// design, which is not a failure and never fails open.
    pub no_address: bool,
    pub ttl: u32,
    pub ttl_reason: String,
    /// When the TTL decision changes by itself (end of a settle period).
    pub next_change: Option<Instant>,
    pub variants: Vec<Variant>,
    selector: Selector,
}

/// The inputs of a plan that come from a configured record.
#[derive(Debug, Clone, Copy)]
pub struct RecordRef<'a> {
    pub name: &'a str,
    pub ttl: u32,
    pub steering: &'a crate::model::Steering,
}

/// The answers of a plan and how a client picks one of them.
type Answers = (Vec<Variant>, Selector);

/// The TTL decision of a plan.
struct TtlDecision {
    ttl: u32,
    reason: String,
    /// When the decision changes by itself (end of a settle period).
    next_change: Option<Instant>,
}

impl Plan {
    /// Decides everything that does not depend on the client: which PoPs
    /// are eligible, the TTL, whether the record fails open, and the
    /// answers of its policy.
    pub fn build(snap: &Snapshot, rec: RecordRef<'_>, family: Family, now: Instant) -> Plan {
        let st = rec.steering;
        let all_pops = st.policy.pops();
        let (eligible, excluded) = eligibility(snap, st, &all_pops, family);
        let TtlDecision {
            mut ttl,
            reason: mut ttl_reason,
            next_change,
        } = dynamic_ttl(snap, rec.ttl, st, &all_pops, now);

        // A record none of whose PoPs has an address of this family has
        // nothing to steer: NODATA, not a fail-open.
        let no_address = all_pops
            .iter()
            .all(|p| addrs_of(snap, family, p).is_empty());
        let fail_open = if no_address {
            None
        } else {
            fail_open_reason(st, &eligible, &excluded)
        };

        let db = snap.config.dns.geoip.as_ref().map(|g| g.db.clone());
        let (variants, selector) = if no_address {
            nodata()
        } else if fail_open.is_some() {
            ttl = ttl.min(st.short_ttl);
            ttl_reason = "fail-open: short TTL until PoPs recover".to_string();
            fail_open_answers(snap, st, &all_pops, family)
        } else {
            match &st.policy {
                SteeringPolicy::Failover { .. } => failover(snap, family, &eligible),
                SteeringPolicy::AllHealthy { max, .. } => {
                    all_healthy(snap, family, &eligible, *max as usize)
                }
                SteeringPolicy::Weighted { weights } => {
                    weighted(snap, family, &eligible, weights, rec.name)
                }
                SteeringPolicy::Geo {
                    map,
                    countries,
                    continents,
                    default,
                } => geo(
                    snap,
                    family,
                    &eligible,
                    GeoRules {
                        map,
                        countries,
                        continents,
                        default,
                    },
                    db,
                ),
                SteeringPolicy::Nearest { default, .. } => {
                    nearest(snap, family, &eligible, default, db)
                }
            }
        };

        Plan {
            policy: st.policy.name(),
            family,
            eligible,
            excluded,
            fail_open,
            no_address,
            ttl,
            ttl_reason,
            next_change,
            variants,
            selector,
        }
    }

    /// True if the answer depends on the client (ECS scope > 0).
    pub fn client_dependent(&self) -> bool {
        !matches!(self.selector, Selector::Fixed(_))
    }

    /// The variant index for a client, and the ECS scope prefix length the
    /// answer is valid for.
    #[inline]
    pub fn select(&self, client: &Client) -> (usize, u8) {
        let (i, scope, _) = self.decide(client);
        (i, scope)
    }

    /// What the database says about the client, if this plan asks it.
    pub fn geo_info(&self, client: &Client) -> Option<GeoInfo> {
        match &self.selector {
            Selector::Geo { db: Some(db), .. } | Selector::Nearest { db, .. } => {
                Some(db.lookup(client.addr, client.hash_prefix()))
            }
            _ => None,
        }
    }

    /// [`Plan::select`] plus the rule that decided.
    pub fn decide(&self, client: &Client) -> (usize, u8, Rule) {
        match &self.selector {
            Selector::Fixed(i) => (*i, 0, Rule::Fixed),
            Selector::Weighted { name_hash, pops } => {
                let prefix = client.hash_prefix();
                let key = mix(*name_hash ^ hash_client(client.addr, prefix));
                let mut best = (f64::INFINITY, 0usize);
                for (seed, w, idx) in pops {
                    // Weighted rendezvous hashing: score = -ln(u) / w, lowest
                    // wins; removing one PoP only moves that PoP's clients.
                    let u = unit(mix(key ^ seed));
                    let score = -u.ln() / w;
                    if score < best.0 {
                        best = (score, *idx);
                    }
                }
                (best.1, prefix, Rule::Hashed)
            }
            Selector::Geo {
                map,
                countries,
                continents,
                db,
                default,
            } => {
                // The scope must be long enough to leave out every subnet
                // rule that does not contain the client: one bit past the
                // bits they share.
                let mut inner = 0u8;
                for (net, i) in map {
                    if net.contains(&client.addr) {
                        return (*i, client.prefix, Rule::Subnet(*net));
                    }
                    if let Some(common) = common_bits(net.network(), client.addr) {
                        inner = inner.max(common.min(net.prefix_len()) + 1);
                    }
                }
                let Some(db) = db else {
                    return (*default, client.prefix, Rule::Default);
                };
                let info = db.lookup(client.addr, client.hash_prefix());
                let scope = info.prefix.max(inner).min(client.prefix);
                if let Some(c) = info.country {
                    if let Some((_, i)) = countries.iter().find(|(k, _)| *k == c) {
                        return (*i, scope, Rule::Country(c));
                    }
                }
                if let Some(c) = info.continent {
                    if let Some((_, i)) = continents.iter().find(|(k, _)| *k == c) {
                        return (*i, scope, Rule::Continent(c));
                    }
                }
                (*default, scope, Rule::Default)
            }
            Selector::Nearest { db, pops, default } => {
                let info = db.lookup(client.addr, client.hash_prefix());
                let scope = info.prefix.min(client.prefix);
                let Some(coords) = info.coordinates else {
                    return (*default, scope, Rule::Default);
                };
                let c = unit_vector(coords);
                let mut best = (f64::NEG_INFINITY, *default);
                for (v, i) in pops {
                    let dot = c[0] * v[0] + c[1] * v[1] + c[2] * v[2];
                    if dot > best.0 {
                        best = (dot, *i);
                    }
                }
                (best.1, scope, Rule::Nearest)
            }
        }
    }
}

/// The record's PoP's addresses of `family` (none for an unknown PoP).
fn addrs_of(snap: &Snapshot, family: Family, pop: &PopName) -> Vec<IpAddr> {
    snap.config
        .pops
        .get(pop)
        .map(|p| {
            p.addresses
                .iter()
                .copied()
                .filter(|a| family.matches(a))
                .collect()
        })
        .unwrap_or_default()
}

/// Splits the record's PoPs into those that may be answered with (in
/// policy order) and those that may not, with the reason.
fn eligibility(
    snap: &Snapshot,
    st: &Steering,
    all_pops: &[&PopName],
    family: Family,
) -> (Vec<PopName>, Vec<(PopName, Exclusion)>) {
    let mut eligible: Vec<PopName> = Vec::new();
    let mut excluded: Vec<(PopName, Exclusion)> = Vec::new();
    for pop in all_pops {
        let why = match snap.pops.get(pop.as_str()) {
            None => Some(Exclusion::Unknown),
            Some(s)
                if !s.serves_dns
                    && s.healthy.is_none()
                    && matches!(s.state, PopState::Up | PopState::Down) =>
            {
                Some(Exclusion::Undecided)
            }
            Some(s) if !s.serves_dns => Some(match s.state {
                PopState::Down => Exclusion::Down,
                PopState::Draining => Exclusion::Draining,
                PopState::Disabled => Exclusion::Disabled,
                PopState::Up => Exclusion::NotServing,
            }),
            Some(_) => None,
        };
        let why = why.or_else(|| match &st.policy {
            SteeringPolicy::Weighted { weights } if weights.get(*pop) == Some(&0) => {
                Some(Exclusion::ZeroWeight)
            }
            _ => None,
        });
        let why = why.or_else(|| {
            addrs_of(snap, family, pop)
                .is_empty()
                .then_some(Exclusion::NoAddress)
        });
        match why {
            Some(w) => excluded.push(((*pop).clone(), w)),
            None => eligible.push((*pop).clone()),
        }
    }
    (eligible, excluded)
}

/// Dynamic TTL: short while a PoP of the record drains or settles.
fn dynamic_ttl(
    snap: &Snapshot,
    record_ttl: u32,
    st: &Steering,
    all_pops: &[&PopName],
    now: Instant,
) -> TtlDecision {
    let mut ttl = record_ttl;
    let mut reason = "stable".to_string();
    let mut next_change: Option<Instant> = None;
    for pop in all_pops {
        let Some(s) = snap.pops.get(pop.as_str()) else {
            continue;
        };
        if s.state == PopState::Draining {
            ttl = st.short_ttl;
            reason = format!("PoP {pop} is draining");
            break;
        }
        let until = s.changed_at + st.settle;
        if until > now {
            if reason == "stable" {
                reason = format!(
                    "PoP {pop} changed state {:.0?} ago (settle {:?})",
                    now.saturating_duration_since(s.changed_at),
                    st.settle
                );
            }
            ttl = st.short_ttl;
            next_change = Some(next_change.map_or(until, |n| n.max(until)));
        }
    }
    TtlDecision {
        ttl,
        reason,
        next_change,
    }
}

/// Why the record fails open (fewer eligible PoPs than its floor), if it does.
fn fail_open_reason(
    st: &Steering,
    eligible: &[PopName],
    excluded: &[(PopName, Exclusion)],
) -> Option<String> {
    let floor = st.min_healthy_pops.max(1) as usize;
    if eligible.len() >= floor {
        return None;
    }
    Some(if eligible.is_empty() {
        if excluded
            .iter()
            .all(|(_, w)| matches!(w, Exclusion::Undecided | Exclusion::Unknown))
        {
            "no PoP of the record has a health verdict yet".to_string()
        } else {
            "no PoP of the record is healthy".to_string()
        }
    } else {
        format!(
            "only {} healthy PoP(s), below min_healthy_pops {}",
            eligible.len(),
            st.min_healthy_pops
        )
    })
}

/// No PoP of the record has an address of the family: one empty answer.
fn nodata() -> Answers {
    (
        vec![Variant {
            pops: Vec::new(),
            addrs: Vec::new(),
        }],
        Selector::Fixed(0),
    )
}

/// Fail-open: the `fallback` addresses of the family, else every PoP of the
/// record an operator did not disable (all of them if that leaves none).
fn fail_open_answers(
    snap: &Snapshot,
    st: &Steering,
    all_pops: &[&PopName],
    family: Family,
) -> Answers {
    let fallback: Vec<IpAddr> = st
        .fallback
        .iter()
        .copied()
        .filter(|a| family.matches(a))
        .collect();
    let variant = if !fallback.is_empty() {
        Variant {
            pops: Vec::new(),
            addrs: fallback,
        }
    } else {
        let not_disabled: Vec<&PopName> = all_pops
            .iter()
            .copied()
            .filter(|p| snap.pops.get(p.as_str()).map(|s| s.state) != Some(PopState::Disabled))
            .collect();
        let chosen = if not_disabled.is_empty() {
            all_pops.to_vec()
        } else {
            not_disabled
        };
        let mut v = Variant {
            pops: Vec::new(),
            addrs: Vec::new(),
        };
        for p in chosen {
            let a = addrs_of(snap, family, p);
            if !a.is_empty() {
                v.pops.push(p.clone());
                v.addrs.extend(a);
            }
        }
        v
    };
    (vec![variant], Selector::Fixed(0))
}

/// One answer per eligible PoP, in order.
fn per_pop(snap: &Snapshot, family: Family, eligible: &[PopName]) -> Vec<Variant> {
    eligible
        .iter()
        .map(|p| Variant {
            pops: vec![p.clone()],
            addrs: addrs_of(snap, family, p),
        })
        .collect()
}

/// The index in `eligible` of the first PoP of `list` that is eligible.
fn first_eligible(eligible: &[PopName], list: &[PopName]) -> Option<usize> {
    list.iter()
        .find_map(|p| eligible.iter().position(|e| e == p))
}

/// `failover`: the first eligible PoP, for every client.
fn failover(snap: &Snapshot, family: Family, eligible: &[PopName]) -> Answers {
    let first = &eligible[0];
    (
        vec![Variant {
            pops: vec![first.clone()],
            addrs: addrs_of(snap, family, first),
        }],
        Selector::Fixed(0),
    )
}

/// `all_healthy`: every eligible PoP's addresses, at most `max`.
fn all_healthy(snap: &Snapshot, family: Family, eligible: &[PopName], max: usize) -> Answers {
    let mut v = Variant {
        pops: Vec::new(),
        addrs: Vec::new(),
    };
    for p in eligible {
        if v.addrs.len() >= max {
            break;
        }
        let a = addrs_of(snap, family, p);
        let room = max - v.addrs.len();
        v.pops.push(p.clone());
        v.addrs.extend(a.into_iter().take(room));
    }
    (vec![v], Selector::Fixed(0))
}

/// `weighted`: one answer per eligible PoP, picked per client subnet by
/// weighted rendezvous hashing.
fn weighted(
    snap: &Snapshot,
    family: Family,
    eligible: &[PopName],
    weights: &BTreeMap<PopName, u32>,
    record_name: &str,
) -> Answers {
    let pops = eligible
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let w = weights.get(p).copied().unwrap_or(0) as f64;
            (hash_bytes(p.as_str().as_bytes()), w, i)
        })
        .collect();
    (
        per_pop(snap, family, eligible),
        Selector::Weighted {
            name_hash: hash_name(record_name),
            pops,
        },
    )
}

/// The rules of a `geo` policy.
struct GeoRules<'a> {
    map: &'a [(IpNet, Vec<PopName>)],
    countries: &'a [(String, Vec<PopName>)],
    continents: &'a [(String, Vec<PopName>)],
    default: &'a [PopName],
}

/// `geo`: one answer per eligible PoP; each rule points at the first
/// eligible PoP of its list (rules with none are left out, so clients fall
/// through), and the database is consulted only when there are country or
/// continent rules.
fn geo(
    snap: &Snapshot,
    family: Family,
    eligible: &[PopName],
    rules: GeoRules<'_>,
    db: Option<Arc<GeoDb>>,
) -> Answers {
    // Default: the first eligible of `default`, else of all PoPs.
    let default_idx = first_eligible(eligible, rules.default).unwrap_or(0);
    let mut m: Vec<(IpNet, usize)> = rules
        .map
        .iter()
        .filter_map(|(net, list)| Some((*net, first_eligible(eligible, list)?)))
        .collect();
    // Longest prefix first; stable for equal lengths (config order).
    m.sort_by_key(|e| std::cmp::Reverse(e.0.prefix_len()));
    let codes = |rules: &[(String, Vec<PopName>)]| -> Vec<(Code, usize)> {
        rules
            .iter()
            .filter_map(|(c, list)| Some((Code::parse(c)?, first_eligible(eligible, list)?)))
            .collect()
    };
    let (countries, continents) = (codes(rules.countries), codes(rules.continents));
    let db = db.filter(|_| !countries.is_empty() || !continents.is_empty());
    (
        per_pop(snap, family, eligible),
        Selector::Geo {
            map: m,
            countries,
            continents,
            db,
            default: default_idx,
        },
    )
}

/// `nearest`: one answer per eligible PoP, the one nearest the client's
/// coordinates; without a database or located PoPs, `default` for all.
fn nearest(
    snap: &Snapshot,
    family: Family,
    eligible: &[PopName],
    default: &[PopName],
    db: Option<Arc<GeoDb>>,
) -> Answers {
    let default_idx = first_eligible(eligible, default).unwrap_or(0);
    let located: Vec<([f64; 3], usize)> = eligible
        .iter()
        .enumerate()
        .filter_map(|(i, p)| {
            let loc = snap.config.pops.get(p)?.location?;
            Some((unit_vector(loc), i))
        })
        .collect();
    let selector = match db {
        Some(db) if !located.is_empty() => Selector::Nearest {
            db,
            pops: located,
            default: default_idx,
        },
        _ => Selector::Fixed(default_idx),
    };
    (per_pop(snap, family, eligible), selector)
}

/// How many leading bits two addresses of the same family share.
fn common_bits(a: IpAddr, b: IpAddr) -> Option<u8> {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => Some((u32::from(a) ^ u32::from(b)).leading_zeros() as u8),
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            Some((u128::from(a) ^ u128::from(b)).leading_zeros() as u8)
        }
        _ => None,
    }
}

/// Stable 64-bit FNV-1a (stable across builds and platforms, unlike std's hasher).
pub fn hash_bytes(b: &[u8]) -> u64 {
    mix(super::fnv::hash(b))
}

/// Hash of a record name, case-insensitive, with or without the final dot.
pub fn hash_name(name: &str) -> u64 {
    let n = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    hash_bytes(n.as_bytes())
}

fn hash_client(addr: IpAddr, prefix: u8) -> u64 {
    let bits: u128 = match mask(addr, prefix) {
        IpAddr::V4(a) => u32::from(a) as u128 | (1u128 << 64),
        IpAddr::V6(a) => u128::from(a),
    };
    mix((bits as u64) ^ mix((bits >> 64) as u64) ^ ((prefix as u64) << 56))
}

/// splitmix64 finalizer.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A hash as a number in (0, 1].
fn unit(h: u64) -> f64 {
    ((h >> 11) as f64 + 1.0) / (1u64 << 53) as f64
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::core::PopStatus;
    use crate::model::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    pub fn name(s: &str) -> PopName {
        Name::parse(s).unwrap()
    }

    fn pop(n: &str, addrs: &[&str]) -> Pop {
        Pop {
            addresses: addrs.iter().map(|a| a.parse().unwrap()).collect(),
            ..crate::testutil::pop(n)
        }
    }

    /// A config with PoPs a (v4+v6), b (v4+v6), c (v4 only) and the given zones.
    pub fn config(zones: Vec<Zone>) -> Config {
        let mut c = crate::testutil::config(
            crate::testutil::node("node1", Some("a"), Ipv4Addr::new(192, 0, 2, 100), 64512),
            [
                pop("a", &["192.0.2.1", "2001:db8::a"]),
                pop("b", &["192.0.2.2", "2001:db8::b"]),
                pop("c", &["192.0.2.3"]),
            ],
        );
        c.dns.identity = DnsIdentity {
            nsid: Some("node1.a".into()),
            chaos: Some("node1.a".into()),
        };
        c.dns.zones = zones;
        c
    }

    /// A snapshot with every PoP in `states` (others absent), changed long ago.
    pub fn snapshot(config: Config, states: &[(&str, PopState)], now: Instant) -> Snapshot {
        let mut pops = BTreeMap::new();
        for (n, s) in states {
            pops.insert(
                name(n),
                PopStatus {
                    state: *s,
                    healthy: Some(*s != PopState::Down),
                    serves_dns: *s == PopState::Up,
                    reason: String::new(),
                    since: SystemTime::UNIX_EPOCH,
                    changed_at: now.checked_sub(Duration::from_secs(3600)).unwrap_or(now),
                    checks: BTreeMap::new(),
                    admin: None,
                    admin_unsaved: None,
                    fail_static: None,
                },
            );
        }
        Snapshot {
            version: 1,
            published: SystemTime::UNIX_EPOCH,
            config: Arc::new(config),
            pops,
            announcements: Default::default(),
            fleet: None,
        }
    }

    pub fn steering(policy: SteeringPolicy) -> Steering {
        Steering {
            policy,
            short_ttl: 5,
            settle: Duration::from_secs(60),
            fallback: vec![],
            min_healthy_pops: 0,
        }
    }

    fn rec(st: &Steering) -> RecordRef<'_> {
        RecordRef {
            name: "www.example.net.",
            ttl: 30,
            steering: st,
        }
    }

    fn failover() -> Steering {
        steering(SteeringPolicy::Failover {
            pops: vec![name("a"), name("b"), name("c")],
        })
    }

    fn weighted(wa: u32, wb: u32, wc: u32) -> Steering {
        let mut w = BTreeMap::new();
        w.insert(name("a"), wa);
        w.insert(name("b"), wb);
        w.insert(name("c"), wc);
        steering(SteeringPolicy::Weighted { weights: w })
    }

    fn v4(s: &str) -> Client {
        Client::from_source(s.parse().unwrap())
    }

    fn pick(plan: &Plan, c: &Client) -> Vec<PopName> {
        plan.variants[plan.select(c).0].pops.clone()
    }

    use PopState::*;

    #[test]
    fn failover_takes_first_healthy_in_order() {
        let now = Instant::now();
        let st = failover();
        let snap = snapshot(config(vec![]), &[("a", Down), ("b", Up), ("c", Up)], now);
        let plan = Plan::build(&snap, rec(&st), Family::V4, now);
        assert_eq!(pick(&plan, &v4("198.51.100.1")), vec![name("b")]);
        assert_eq!(
            plan.variants[0].addrs,
            vec!["192.0.2.2".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(plan.excluded, vec![(name("a"), Exclusion::Down)]);
        assert_eq!(plan.fail_open, None);
        assert!(!plan.client_dependent());
        assert_eq!(plan.select(&v4("198.51.100.1")).1, 0);
        assert_eq!(plan.ttl, 30);
    }

    #[test]
    fn failover_skips_pops_without_address_of_family() {
        let now = Instant::now();
        let st = steering(SteeringPolicy::Failover {
            pops: vec![name("c"), name("b")],
        });
        let snap = snapshot(config(vec![]), &[("b", Up), ("c", Up)], now);
        let plan = Plan::build(&snap, rec(&st), Family::V6, now);
        assert_eq!(plan.variants[0].pops, vec![name("b")]);
        assert_eq!(plan.excluded, vec![(name("c"), Exclusion::NoAddress)]);
        let plan4 = Plan::build(&snap, rec(&st), Family::V4, now);
        assert_eq!(plan4.variants[0].pops, vec![name("c")]);
    }

    #[test]
    fn fail_open_answers_all_pops_and_flags() {
        let now = Instant::now();
        let st = failover();
        let snap = snapshot(
            config(vec![]),
            &[("a", Down), ("b", Draining), ("c", Disabled)],
            now,
        );
        let plan = Plan::build(&snap, rec(&st), Family::V4, now);
        assert!(plan.fail_open.is_some());
        // Disabled PoPs are left out of fail-open answers.
        assert_eq!(plan.variants[0].pops, vec![name("a"), name("b")]);
        assert_eq!(plan.ttl, 5);
        assert_eq!(
            plan.excluded,
            vec![
                (name("a"), Exclusion::Down),
                (name("b"), Exclusion::Draining),
                (name("c"), Exclusion::Disabled)
            ]
        );
    }

    #[test]
    fn no_address_of_family_is_nodata_not_fail_open() {
        let now = Instant::now();
        // "c" has only IPv4; a record over "c" alone has no IPv6 at all.
        let st = steering(SteeringPolicy::Failover {
            pops: vec![name("c")],
        });
        let snap = snapshot(config(vec![]), &[("c", Up)], now);
        let plan6 = Plan::build(&snap, rec(&st), Family::V6, now);
        assert_eq!(plan6.fail_open, None);
        assert!(plan6.no_address);
        assert_eq!(plan6.variants.len(), 1);
        assert!(plan6.variants[0].addrs.is_empty());
        assert_eq!(plan6.excluded, vec![(name("c"), Exclusion::NoAddress)]);
        // Still no fail-open when the PoP is down: nothing to fail over to.
        let snap = snapshot(config(vec![]), &[("c", Down)], now);
        let plan6 = Plan::build(&snap, rec(&st), Family::V6, now);
        assert_eq!(plan6.fail_open, None);
        assert!(plan6.variants[0].addrs.is_empty());
        // The IPv4 side of the same record does fail open when it is down.
        let plan4 = Plan::build(&snap, rec(&st), Family::V4, now);
        assert!(!plan4.no_address);
        assert!(plan4.fail_open.is_some());
    }

    #[test]
    fn fail_open_uses_fallback_of_family() {
        let now = Instant::now();
        let mut st = failover();
        st.fallback = vec![
            "203.0.113.9".parse().unwrap(),
            "2001:db8::99".parse().unwrap(),
        ];
        let snap = snapshot(
            config(vec![]),
            &[("a", Down), ("b", Down), ("c", Down)],
            now,
        );
        let plan = Plan::build(&snap, rec(&st), Family::V4, now);
        assert_eq!(
            plan.variants[0].addrs,
            vec!["203.0.113.9".parse::<IpAddr>().unwrap()]
        );
        let plan6 = Plan::build(&snap, rec(&st), Family::V6, now);
        assert_eq!(
            plan6.variants[0].addrs,
            vec!["2001:db8::99".parse::<IpAddr>().unwrap()]
        );
    }

    #[test]
    fn min_healthy_floor_fails_open() {
        let now = Instant::now();
        let mut st = failover();
        st.min_healthy_pops = 2;
        let snap = snapshot(config(vec![]), &[("a", Up), ("b", Down), ("c", Down)], now);
        let plan = Plan::build(&snap, rec(&st), Family::V4, now);
        assert!(plan
            .fail_open
            .as_deref()
            .unwrap()
            .contains("min_healthy_pops"));
        assert_eq!(plan.variants[0].pops.len(), 3);
        let snap = snapshot(config(vec![]), &[("a", Up), ("b", Up), ("c", Down)], now);
        let plan = Plan::build(&snap, rec(&st), Family::V4, now);
        assert!(plan.fail_open.is_none());
    }

    #[test]
    fn all_healthy_caps_addresses() {
        let now = Instant::now();
        let st = steering(SteeringPolicy::AllHealthy {
            pops: vec![name("a"), name("b"), name("c")],
            max: 2,
        });
        let snap = snapshot(config(vec![]), &[("a", Up), ("b", Up), ("c", Up)], now);
        let plan = Plan::build(&snap, rec(&st), Family::V4, now);
        assert_eq!(plan.variants[0].addrs.len(), 2);
        assert_eq!(plan.variants[0].pops, vec![name("a"), name("b")]);
        let snap = snapshot(config(vec![]), &[("a", Down), ("b", Up), ("c", Up)], now);
        let plan = Plan::build(&snap, rec(&st), Family::V4, now);
        assert_eq!(plan.variants[0].pops, vec![name("b"), name("c")]);
    }

    #[test]
    fn dynamic_ttl_short_while_settling_or_draining() {
        let now = Instant::now();
        let st = failover();
        let mut snap = snapshot(config(vec![]), &[("a", Up), ("b", Up), ("c", Up)], now);
        snap.pops.get_mut("b").unwrap().changed_at = now - Duration::from_secs(10);
        let plan = Plan::build(&snap, rec(&st), Family::V4, now);
        assert_eq!(plan.ttl, 5);
        assert_eq!(plan.next_change, Some(now + Duration::from_secs(50)));
        let later = now + Duration::from_secs(51);
        let plan = Plan::build(&snap, rec(&st), Family::V4, later);
        assert_eq!(plan.ttl, 30);
        assert_eq!(plan.next_change, None);
        let snap = snapshot(
            config(vec![]),
            &[("a", Up), ("b", Draining), ("c", Up)],
            now,
        );
        let plan = Plan::build(&snap, rec(&st), Family::V4, now);
        assert_eq!(plan.ttl, 5);
        assert!(plan.ttl_reason.contains("draining"));
    }

    #[test]
    fn weighted_zero_weight_never_and_scope() {
        let now = Instant::now();
        let st = weighted(1, 0, 1);
        let snap = snapshot(config(vec![]), &[("a", Up), ("b", Up), ("c", Up)], now);
        let plan = Plan::build(&snap, rec(&st), Family::V4, now);
        assert!(plan.excluded.contains(&(name("b"), Exclusion::ZeroWeight)));
        for i in 0..=255u8 {
            let c = Client::from_ecs(IpAddr::V4(Ipv4Addr::new(198, 51, i, 0)), 24);
            let (idx, scope) = plan.select(&c);
            assert_ne!(plan.variants[idx].pops, vec![name("b")]);
            assert_eq!(scope, 24);
        }
        // A /32 source is hashed and scoped per /24.
        assert_eq!(plan.select(&v4("198.51.100.7")).1, 24);
        assert_eq!(
            pick(&plan, &v4("198.51.100.7")),
            pick(&plan, &v4("198.51.100.200"))
        );
    }

    #[test]
    fn weighted_failure_moves_only_the_failed_pops_clients() {
        let now = Instant::now();
        let st = weighted(1, 1, 1);
        let all = snapshot(config(vec![]), &[("a", Up), ("b", Up), ("c", Up)], now);
        let no_b = snapshot(config(vec![]), &[("a", Up), ("b", Down), ("c", Up)], now);
        let p1 = Plan::build(&all, rec(&st), Family::V4, now);
        let p2 = Plan::build(&no_b, rec(&st), Family::V4, now);
        for i in 0..=255u8 {
            let c = Client::from_ecs(IpAddr::V4(Ipv4Addr::new(10, i, 7, 0)), 24);
            let before = pick(&p1, &c);
            if before != vec![name("b")] {
                assert_eq!(pick(&p2, &c), before);
            }
        }
    }

    #[test]
    fn geo_longest_match_then_default() {
        let now = Instant::now();
        let st = steering(SteeringPolicy::Geo {
            map: vec![
                ("198.51.0.0/16".parse().unwrap(), vec![name("b")]),
                (
                    "198.51.100.0/24".parse().unwrap(),
                    vec![name("c"), name("b")],
                ),
                ("2001:db8:1::/48".parse().unwrap(), vec![name("b")]),
            ],
            countries: vec![],
            continents: vec![],
            default: vec![name("a")],
        });
        let snap = snapshot(config(vec![]), &[("a", Up), ("b", Up), ("c", Up)], now);
        let plan = Plan::build(&snap, rec(&st), Family::V4, now);
        assert_eq!(pick(&plan, &v4("198.51.100.9")), vec![name("c")]);
        assert_eq!(pick(&plan, &v4("198.51.7.9")), vec![name("b")]);
        assert_eq!(pick(&plan, &v4("203.0.113.1")), vec![name("a")]);
        let c6 = Client::from_ecs("2001:db8:1:2::".parse().unwrap(), 56);
        assert_eq!(pick(&plan, &c6), vec![name("b")]);
        assert_eq!(plan.select(&c6).1, 56);
        // c down: its clients go to the next preference, b.
        let snap = snapshot(config(vec![]), &[("a", Up), ("b", Up), ("c", Down)], now);
        let plan = Plan::build(&snap, rec(&st), Family::V4, now);
        assert_eq!(pick(&plan, &v4("198.51.100.9")), vec![name("b")]);
        // For AAAA, c has no address: b.
        let snap = snapshot(config(vec![]), &[("a", Up), ("b", Up), ("c", Up)], now);
        let plan = Plan::build(&snap, rec(&st), Family::V6, now);
        assert_eq!(pick(&plan, &v4("198.51.100.9")), vec![name("b")]);
        // Default down: first eligible PoP.
        let snap = snapshot(config(vec![]), &[("a", Down), ("b", Up), ("c", Up)], now);
        let plan = Plan::build(&snap, rec(&st), Family::V4, now);
        assert_eq!(pick(&plan, &v4("203.0.113.1")), vec![name("b")]);
    }

    /// The test config with the test database and PoP locations: a in
    /// Frankfurt, b in New York, c in Tokyo.
    pub fn geo_config() -> Config {
        use crate::geoip::testdb;
        let mut c = config(vec![]);
        for (p, loc) in [
            ("a", testdb::FRANKFURT),
            ("b", testdb::NEW_YORK),
            ("c", testdb::TOKYO),
        ] {
            c.pops.get_mut(p).unwrap().location = Some(loc);
        }
        c.dns.geoip = Some(GeoIp {
            database: "test.mmdb".into(),
            db: Arc::new(testdb::open_test_db()),
        });
        c
    }

    fn ecs(s: &str, prefix: u8) -> Client {
        Client::from_ecs(s.parse().unwrap(), prefix)
    }

    fn codes(list: &[(&str, &str)]) -> Vec<(String, Vec<PopName>)> {
        list.iter()
            .map(|(c, p)| (c.to_string(), vec![name(p)]))
            .collect()
    }

    #[test]
    fn geo_subnet_then_country_then_continent_then_default() {
        let now = Instant::now();
        let st = steering(SteeringPolicy::Geo {
            map: vec![("198.51.100.128/25".parse().unwrap(), vec![name("c")])],
            countries: codes(&[("DE", "b")]),
            continents: codes(&[("EU", "c"), ("NA", "a")]),
            default: vec![name("a")],
        });
        let all_up = [("a", Up), ("b", Up), ("c", Up)];
        let snap = snapshot(geo_config(), &all_up, now);
        let plan = Plan::build(&snap, rec(&st), Family::V4, now);
        assert!(plan.client_dependent());
        let d = |c: &Client| {
            let (i, scope, rule) = plan.decide(c);
            (plan.variants[i].pops[0].to_string(), scope, rule)
        };
        let code = |s| Code::parse(s).unwrap();
        // DE (192.0.2.0/24) → country rule → b, scope = the database's /24.
        assert_eq!(
            d(&v4("192.0.2.10")),
            ("b".into(), 24, Rule::Country(code("DE")))
        );
        // FR has no country rule: continent EU → c (looked up per /24).
        assert_eq!(
            d(&ecs("203.0.113.128", 25)),
            ("c".into(), 24, Rule::Continent(code("EU")))
        );
        // A subnet rule wins over the database.
        assert_eq!(
            d(&v4("198.51.100.200")),
            (
                "c".into(),
                32,
                Rule::Subnet("198.51.100.128/25".parse().unwrap())
            )
        );
        // Same /24 outside the subnet rule: US/NA → a; the scope leaves
        // the /25 rule out (/25, not the database's /24).
        assert_eq!(
            d(&v4("198.51.100.7")),
            ("a".into(), 25, Rule::Continent(code("NA")))
        );
        // An ECS /24 client cannot be told apart further: scope /24.
        assert_eq!(d(&ecs("198.51.100.0", 24)).1, 24);
        // Not in the database: default; scope the empty network's prefix.
        let (pop, scope, rule) = d(&ecs("10.1.2.0", 24));
        assert_eq!((pop.as_str(), rule), ("a", Rule::Default));
        assert!(scope <= 24);
        // JP/AS has no rule: default.
        let plan6 = Plan::build(&snap, rec(&st), Family::V6, now);
        let (i, scope) = plan6.select(&ecs("2001:db8:1:200::", 56));
        assert_eq!(plan6.variants[i].pops, vec![name("a")]);
        assert_eq!(scope, 48);
        // b down: the DE rule has no eligible PoP, DE falls through to EU → c.
        let snap = snapshot(geo_config(), &[("a", Up), ("b", Down), ("c", Up)], now);
        let plan = Plan::build(&snap, rec(&st), Family::V4, now);
        let (i, _, rule) = plan.decide(&v4("192.0.2.10"));
        assert_eq!(plan.variants[i].pops, vec![name("c")]);
        assert_eq!(rule, Rule::Continent(code("EU")));
    }

    #[test]
    fn geo_without_database_rules_keeps_subnet_behaviour() {
        let now = Instant::now();
        let st = steering(SteeringPolicy::Geo {
            map: vec![("198.51.100.0/24".parse().unwrap(), vec![name("b")])],
            countries: vec![],
            continents: vec![],
            default: vec![name("a")],
        });
        // The database is configured but no rule needs it: not consulted.
        let snap = snapshot(geo_config(), &[("a", Up), ("b", Up), ("c", Up)], now);
        let plan = Plan::build(&snap, rec(&st), Family::V4, now);
        assert_eq!(plan.geo_info(&v4("192.0.2.1")), None);
        assert_eq!(plan.decide(&v4("192.0.2.1")).2, Rule::Default);
    }

    fn nearest(default: &[&str]) -> Steering {
        steering(SteeringPolicy::Nearest {
            pops: vec![name("a"), name("b"), name("c")],
            default: default.iter().map(|p| name(p)).collect(),
        })
    }

    #[test]
    fn nearest_picks_the_closest_healthy_pop() {
        let now = Instant::now();
        let st = nearest(&["b"]);
        let snap = snapshot(geo_config(), &[("a", Up), ("b", Up), ("c", Up)], now);
        let plan = Plan::build(&snap, rec(&st), Family::V4, now);
        assert_eq!(plan.policy, "nearest");
        assert!(plan.client_dependent());
        let d = |plan: &Plan, c: &Client| {
            let (i, scope, rule) = plan.decide(c);
            (plan.variants[i].pops[0].to_string(), scope, rule)
        };
        // Frankfurt client → a (Frankfurt), scope the database's /24.
        assert_eq!(d(&plan, &v4("192.0.2.7")), ("a".into(), 24, Rule::Nearest));
        // New York → b.
        assert_eq!(
            d(&plan, &ecs("198.51.100.0", 24)),
            ("b".into(), 24, Rule::Nearest)
        );
        // Sydney → Tokyo (c) is nearer than Frankfurt or New York.
        assert_eq!(
            d(&plan, &ecs("2001:db8:2::", 48)),
            ("c".into(), 48, Rule::Nearest)
        );
        // A /16 ECS client: the scope is the /16 block that was looked up.
        assert_eq!(d(&plan, &ecs("192.0.0.0", 16)).1, 16);
        // No coordinates (FR has none; 10/8 is not in the database): default b.
        assert_eq!(
            d(&plan, &ecs("203.0.113.128", 25)),
            ("b".into(), 24, Rule::Default)
        );
        assert_eq!(d(&plan, &ecs("10.0.0.0", 24)).2, Rule::Default);
        // AAAA: c has no IPv6 address, a Tokyo client gets Frankfurt
        // (9 300 km) rather than New York (10 800 km).
        let plan6 = Plan::build(&snap, rec(&st), Family::V6, now);
        assert_eq!(d(&plan6, &ecs("2001:db8:1::", 48)).0, "a");
        // a down: Frankfurt clients go to New York (6 200 km) before Tokyo.
        let snap = snapshot(geo_config(), &[("a", Down), ("b", Up), ("c", Up)], now);
        let plan = Plan::build(&snap, rec(&st), Family::V4, now);
        assert_eq!(d(&plan, &v4("192.0.2.7")).0, "b");
        // b (the default) down too: clients without coordinates get the
        // first healthy PoP.
        let snap = snapshot(geo_config(), &[("a", Down), ("b", Down), ("c", Up)], now);
        let plan = Plan::build(&snap, rec(&st), Family::V4, now);
        assert_eq!(d(&plan, &ecs("10.0.0.0", 24)).0, "c");
    }

    #[test]
    fn nearest_without_database_answers_the_default() {
        let now = Instant::now();
        let st = nearest(&["c"]);
        let mut cfg = geo_config();
        cfg.dns.geoip = None;
        let snap = snapshot(cfg, &[("a", Up), ("b", Up), ("c", Up)], now);
        let plan = Plan::build(&snap, rec(&st), Family::V4, now);
        assert!(!plan.client_dependent());
        assert_eq!(pick(&plan, &v4("192.0.2.7")), vec![name("c")]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn weighted_converges_to_weights(wa in 1u32..10, wb in 0u32..10, wc in 1u32..10, seed in any::<u32>()) {
            let now = Instant::now();
            let st = weighted(wa, wb, wc);
            let snap = snapshot(config(vec![]), &[("a", Up), ("b", Up), ("c", Up)], now);
            let plan = Plan::build(&snap, rec(&st), Family::V4, now);
            let n = 20_000u32;
            let mut counts: BTreeMap<PopName, u32> = BTreeMap::new();
            for i in 0..n {
                let net = (seed.wrapping_add(i.wrapping_mul(2_654_435_761))) & 0xffff_ff00;
                let c = Client::from_ecs(IpAddr::V4(Ipv4Addr::from(net)), 24);
                let got = pick(&plan, &c);
                // Same subnet, same answer (also for another host in it).
                let c2 = Client::from_source(IpAddr::V4(Ipv4Addr::from(net | 0x42)));
                prop_assert_eq!(&pick(&plan, &c2), &got);
                *counts.entry(got[0].clone()).or_default() += 1;
            }
            let total = (wa + wb + wc) as f64;
            for (p, w) in [("a", wa), ("b", wb), ("c", wc)] {
                let share = *counts.get(p).unwrap_or(&0) as f64 / n as f64;
                let want = w as f64 / total;
                prop_assert!((share - want).abs() < 0.03, "{p}: share {share} want {want}");
            }
        }

        #[test]
        fn same_v6_subnet_same_answer(hi in any::<u64>(), lo in any::<u64>(), lo2 in any::<u64>()) {
            let now = Instant::now();
            let st = weighted(3, 2, 5);
            let snap = snapshot(config(vec![]), &[("a", Up), ("b", Up), ("c", Up)], now);
            let plan = Plan::build(&snap, rec(&st), Family::V6, now);
            let base = ((hi as u128) << 64) & !((1u128 << 72) - 1);
            let a1 = Ipv6Addr::from(base | lo as u128);
            let a2 = Ipv6Addr::from(base | lo2 as u128);
            prop_assert_eq!(pick(&plan, &Client::from_source(a1.into())), pick(&plan, &Client::from_source(a2.into())));
        }
    }
}
