//! The answer state one snapshot gives: compiled zones, the steering plan of
//! every steered record per address family, the pre-encoded answers and the
//! response rate limiter (kept, with its accounts, while its settings stay).
//! Built off the query path whenever the snapshot (or a settle deadline)
//! changes, then shared read-only by every listener through an `Arc`.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use tokio::time::Instant;

use super::fast::FastTable;
use super::policy::{Family, Plan, RecordRef};
use super::rrl::RateLimiter;
use super::stats::DnsStats;
use super::zone::Zones;
use crate::core::Snapshot;
use crate::model::{Config, PopName};

pub struct State {
    pub version: u64,
    pub config: Arc<Config>,
    pub zones: Arc<Zones>,
    /// `plans[zone][steered record]` = [A plan, AAAA plan].
    pub plans: Vec<Vec<[Plan; 2]>>,
    /// The earliest time a plan changes by itself (settle period ends).
    pub next_change: Option<Instant>,
    pub pop_counters: HashMap<PopName, Arc<AtomicU64>>,
    pub fast: FastTable,
    /// Response rate limiting of UDP answers, shared by every UDP worker.
    pub rrl: Option<Arc<RateLimiter>>,
}

impl State {
    /// Builds the state for `snap` at `now` over already compiled zones.
    /// With `stats` (a serving state), answers are pre-encoded, PoP
    /// counters attached and the rate limiter set up; `prev` (the state
    /// being replaced) lends its unchanged static answers and its rate
    /// limiter if the settings are the same.
    pub fn build(
        snap: &Snapshot,
        zones: Arc<Zones>,
        now: Instant,
        stats: Option<&DnsStats>,
        prev: Option<&State>,
    ) -> State {
        let mut next_change: Option<Instant> = None;
        let plans: Vec<Vec<[Plan; 2]>> = zones
            .zones
            .iter()
            .map(|z| {
                z.steered
                    .iter()
                    .map(|r| {
                        let rec = RecordRef {
                            name: &r.name,
                            ttl: r.ttl,
                            steering: &r.steering,
                        };
                        let p = [
                            Plan::build(snap, rec, Family::V4, now),
                            Plan::build(snap, rec, Family::V6, now),
                        ];
                        for n in p.iter().filter_map(|p| p.next_change) {
                            next_change = Some(next_change.map_or(n, |c| c.min(n)));
                        }
                        p
                    })
                    .collect()
            })
            .collect();
        let pop_counters = match stats {
            Some(s) => snap
                .config
                .pops
                .keys()
                .map(|p| (p.clone(), s.pop_counter(p)))
                .collect(),
            None => HashMap::new(),
        };
        let mut state = State {
            version: snap.version,
            config: snap.config.clone(),
            zones,
            plans,
            next_change,
            pop_counters,
            fast: FastTable::default(),
            rrl: None,
        };
        if stats.is_some() {
            state.fast = FastTable::build(&state, prev);
            let want = snap.config.dns.rate_limit;
            state.rrl = match prev.and_then(|p| p.rrl.as_ref()) {
                Some(r) if Some(*r.config()) == want => Some(r.clone()),
                _ => want.map(|c| Arc::new(RateLimiter::new(c))),
            };
        }
        state
    }

    pub fn plan(&self, zone: usize, rec: usize, family: Family) -> Option<&Plan> {
        self.plans
            .get(zone)
            .and_then(|z| z.get(rec))
            .map(|p| &p[family as usize])
    }
}
