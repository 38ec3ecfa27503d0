//! Steering policies: which PoPs (and addresses) a steered record answers with.
//!
//! Pure functions of (snapshot, record, address family, now): no I/O, no
//! clock reads, no randomness. The work that depends only on the snapshot is
//! done once in [`Plan::build`] (eligibility, fail-open, TTL, the answer
//! variants); the per-query part, [`Plan::select`], only maps a client to a
//! variant index (a hash for `weighted`, a longest-prefix match for `geo`).
//! The server pre-encodes one response per variant, and [`super::explain`]
//! reports the same plan in words, so answers and explanations never differ.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::Serialize;
use tokio::time::Instant;

use crate::core::{PopState, Snapshot};
use crate::model::{PopName, SteeringPolicy};

/// IPv4 clients are hashed and scoped at most per /24.
pub const CLIENT_PREFIX_V4: u8 = 24;
/// IPv6 clients are hashed and scoped at most per /56.
pub const CLIENT_PREFIX_V6: u8 = 56;

/// Address family of a steered answer (A or AAAA).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Family {
    #[serde(rename = "A")]
    V4,
    #[serde(rename = "AAAA")]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
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
#[derive(Debug, Clone, PartialEq, Serialize)]
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
    /// Longest match first; `default` when nothing matches.
    Geo {
        map: Vec<(IpNet, usize)>,
        default: usize,
    },
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

impl Plan {
    /// Decides everything that does not depend on the client.
    pub fn build(snap: &Snapshot, rec: RecordRef<'_>, family: Family, now: Instant) -> Plan {
        let st = rec.steering;
        let all_pops = st.policy.pops();
        let addrs_of = |pop: &PopName| -> Vec<IpAddr> {
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
        };
        let mut eligible: Vec<PopName> = Vec::new();
        let mut excluded: Vec<(PopName, Exclusion)> = Vec::new();
        for pop in &all_pops {
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
            let why = why.or_else(|| addrs_of(pop).is_empty().then_some(Exclusion::NoAddress));
            match why {
                Some(w) => excluded.push(((*pop).clone(), w)),
                None => eligible.push((*pop).clone()),
            }
        }

        // Dynamic TTL: short while a PoP of the record drains or settles.
        let mut ttl = rec.ttl;
        let mut ttl_reason = "stable".to_string();
        let mut next_change: Option<Instant> = None;
        for pop in &all_pops {
            let Some(s) = snap.pops.get(pop.as_str()) else {
                continue;
            };
            if s.state == PopState::Draining {
                ttl = st.short_ttl;
                ttl_reason = format!("PoP {pop} is draining");
                break;
            }
            let until = s.changed_at + st.settle;
            if until > now {
                if ttl_reason == "stable" {
                    ttl_reason = format!(
                        "PoP {pop} changed state {:.0?} ago (settle {:?})",
                        now.saturating_duration_since(s.changed_at),
                        st.settle
                    );
                }
                ttl = st.short_ttl;
                next_change = Some(next_change.map_or(until, |n| n.max(until)));
            }
        }

        let floor = st.min_healthy_pops.max(1) as usize;
        let fail_open = if eligible.len() < floor {
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
        } else {
            None
        };

        let policy = match &st.policy {
            SteeringPolicy::Failover { .. } => "failover",
            SteeringPolicy::Weighted { .. } => "weighted",
            SteeringPolicy::Geo { .. } => "geo",
            SteeringPolicy::AllHealthy { .. } => "all_healthy",
        };

        let (variants, selector) = if fail_open.is_some() {
            ttl = ttl.min(st.short_ttl);
            ttl_reason = "fail-open: short TTL until PoPs recover".to_string();
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
                // Every PoP of the record an operator did not disable (all of
                // them if that leaves none).
                let not_disabled: Vec<&PopName> = all_pops
                    .iter()
                    .copied()
                    .filter(|p| {
                        snap.pops.get(p.as_str()).map(|s| s.state) != Some(PopState::Disabled)
                    })
                    .collect();
                let chosen = if not_disabled.is_empty() {
                    all_pops.clone()
                } else {
                    not_disabled
                };
                let mut v = Variant {
                    pops: Vec::new(),
                    addrs: Vec::new(),
                };
                for p in chosen {
                    let a = addrs_of(p);
                    if !a.is_empty() {
                        v.pops.push(p.clone());
                        v.addrs.extend(a);
                    }
                }
                v
            };
            (vec![variant], Selector::Fixed(0))
        } else {
            match &st.policy {
                SteeringPolicy::Failover { .. } => {
                    let first = &eligible[0];
                    (
                        vec![Variant {
                            pops: vec![first.clone()],
                            addrs: addrs_of(first),
                        }],
                        Selector::Fixed(0),
                    )
                }
                SteeringPolicy::AllHealthy { max, .. } => {
                    let mut v = Variant {
                        pops: Vec::new(),
                        addrs: Vec::new(),
                    };
                    for p in &eligible {
                        if v.addrs.len() >= *max as usize {
                            break;
                        }
                        let a = addrs_of(p);
                        let room = *max as usize - v.addrs.len();
                        v.pops.push(p.clone());
                        v.addrs.extend(a.into_iter().take(room));
                    }
                    (vec![v], Selector::Fixed(0))
                }
                SteeringPolicy::Weighted { weights } => {
                    let variants: Vec<Variant> = eligible
                        .iter()
                        .map(|p| Variant {
                            pops: vec![p.clone()],
                            addrs: addrs_of(p),
                        })
                        .collect();
                    let pops = eligible
                        .iter()
                        .enumerate()
                        .map(|(i, p)| {
                            let w = weights.get(p).copied().unwrap_or(0) as f64;
                            (hash_bytes(p.as_str().as_bytes()), w, i)
                        })
                        .collect();
                    (
                        variants,
                        Selector::Weighted {
                            name_hash: hash_name(rec.name),
                            pops,
                        },
                    )
                }
                SteeringPolicy::Geo { map, default } => {
                    let variants: Vec<Variant> = eligible
                        .iter()
                        .map(|p| Variant {
                            pops: vec![p.clone()],
                            addrs: addrs_of(p),
                        })
                        .collect();
                    let first_eligible = |list: &[PopName]| -> Option<usize> {
                        list.iter()
                            .find_map(|p| eligible.iter().position(|e| e == p))
                    };
                    // Default: the first eligible of `default`, else of all PoPs.
                    let default_idx = first_eligible(default).unwrap_or(0);
                    let mut m: Vec<(IpNet, usize)> = map
                        .iter()
                        .map(|(net, list)| (*net, first_eligible(list).unwrap_or(default_idx)))
                        .collect();
                    // Longest prefix first; stable for equal lengths (config order).
                    m.sort_by_key(|e| std::cmp::Reverse(e.0.prefix_len()));
                    (
                        variants,
                        Selector::Geo {
                            map: m,
                            default: default_idx,
                        },
                    )
                }
            }
        };

        Plan {
            policy,
            family,
            eligible,
            excluded,
            fail_open,
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
    pub fn select(&self, client: &Client) -> (usize, u8) {
        match &self.selector {
            Selector::Fixed(i) => (*i, 0),
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
                (best.1, prefix)
            }
            Selector::Geo { map, default } => {
                let idx = map
                    .iter()
                    .find(|(net, _)| net.contains(&client.addr))
                    .map_or(*default, |(_, i)| *i);
                (idx, client.prefix)
            }
        }
    }
}

/// Stable 64-bit FNV-1a (stable across builds and platforms, unlike std's hasher).
pub fn hash_bytes(b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &x in b {
        h ^= x as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix(h)
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
            name: name(n),
            prefixes: vec![],
            addresses: addrs.iter().map(|a| a.parse().unwrap()).collect(),
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
            drain_settle: Duration::from_secs(30),
        }
    }

    /// A config with PoPs a (v4+v6), b (v4+v6), c (v4 only) and the given zones.
    pub fn config(zones: Vec<Zone>) -> Config {
        let mut pops = BTreeMap::new();
        for p in [
            pop("a", &["192.0.2.1", "2001:db8::a"]),
            pop("b", &["192.0.2.2", "2001:db8::b"]),
            pop("c", &["192.0.2.3"]),
        ] {
            pops.insert(p.name.clone(), p);
        }
        Config {
            node: Node {
                name: "node1".into(),
                pop: Some(name("a")),
                router_id: Ipv4Addr::new(192, 0, 2, 100),
                asn: 64512,
                state_dir: None,
            },
            bgp: BgpConfig {
                listen: None,
                peers: vec![],
                shutdown: ShutdownMode::Withdraw,
                graceful_restart: None,
            },
            pops,
            dns: DnsConfig {
                listen: vec![],
                identity: DnsIdentity {
                    nsid: Some("node1.a".into()),
                    chaos: Some("node1.a".into()),
                },
                zones,
            },
            api: ApiConfig {
                listen: None,
                token_file: None,
                protect_reads: false,
            },
        }
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
                },
            );
        }
        Snapshot {
            version: 1,
            published: SystemTime::UNIX_EPOCH,
            config: Arc::new(config),
            pops,
            announcements: Default::default(),
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
