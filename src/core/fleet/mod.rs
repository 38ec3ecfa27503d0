//! The fleet inside the core: peers' reports as inputs, this node's own
//! report, the merge into the fleet view, the confirmation of a drain's
//! DNS step by the other nodes, and the events of the fleet.
//!
//! Peer reports arrive as [`FleetInput`]s, like probe results: the puller
//! (outside the core) fetches them, the core stamps them with its own
//! clock and keeps the latest per peer. Freshness is this node's clock
//! against `stale_after`; a deadline re-runs the merge when a report goes
//! stale. The decisions are pure: [`report::build`], [`merge::merge`],
//! [`merge::announce_health`]. This module holds the bookkeeping around
//! them. Without `fleet:` in the config none of it runs and the core
//! behaves as before.

pub mod guard;
pub mod merge;
pub mod report;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::time::Instant;

use super::admin::{self, Phase};
use super::hysteresis::Verdict;
use super::snapshot::{AdminStatus, PopState};
use super::{Core, EventKind, Now};
use crate::model::{CheckName, NodeName, PeerUrl, PopName, Role};
pub use merge::{
    AdminView, FleetView, OwnerView, PeerReport, PopView, Reach, VantageVerdict, VantageView,
};
pub use report::{Applied, PopReport, Report, ReportAdmin, ReportRole};

/// This node's own verdict of one PoP, as the merge and the report take
/// it.
#[derive(Debug, Clone, PartialEq)]
pub struct Local {
    /// Checks combined (`None`: undecided).
    pub health: Option<bool>,
    /// When `health` last changed (wall clock).
    pub since: SystemTime,
    /// The health in words (without the admin state).
    pub reason: String,
    /// The verdict of each check this node runs for the PoP.
    pub checks: BTreeMap<CheckName, Verdict>,
    /// This node's admin override of the PoP (own and unowned PoPs).
    pub admin: Option<AdminStatus>,
}

/// A peer's report or a failed pull, sent by the puller.
#[derive(Debug, Clone)]
pub enum FleetInput {
    /// A report that passed [`report::check`].
    Report { peer: NodeName, report: Box<Report> },
    /// The pull failed (connection, status, body, mismatch).
    Failed { peer: NodeName, error: String },
    /// An admin call for `pop` made on this node, one of its several
    /// owners, was applied here but not by every other owner: recorded as
    /// a `fleet` event (`message` says where it applied and where not).
    Partial { pop: PopName, message: String },
}

/// A peer as the snapshot shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerStatus {
    pub pop: Option<PopName>,
    pub url: PeerUrl,
    /// The report is younger than `stale_after`.
    pub fresh: bool,
    /// When the last report arrived (monotonic).
    pub received: Option<Instant>,
    pub instance: Option<String>,
    pub revision: Option<u64>,
    /// Failures in a row, and the last one.
    pub errors: u32,
    pub last_error: Option<String>,
    pub pulls: u64,
    pub pull_errors: u64,
}

impl PeerStatus {
    /// A configured peer before its first pull.
    fn new(cfg: &crate::model::FleetPeer) -> PeerStatus {
        PeerStatus {
            pop: cfg.pop.clone(),
            url: cfg.url.clone(),
            fresh: false,
            received: None,
            instance: None,
            revision: None,
            errors: 0,
            last_error: None,
            pulls: 0,
            pull_errors: 0,
        }
    }
}

/// The fleet part of a snapshot.
#[derive(Debug, Clone)]
pub struct FleetSnapshot {
    /// This node's report (what `GET /v1/fleet/report` serves).
    pub report: Arc<Report>,
    pub view: Arc<FleetView>,
    pub peers: BTreeMap<NodeName, PeerStatus>,
}

/// A drain whose DNS step waits for the other nodes' confirmation.
#[derive(Debug, Clone, PartialEq)]
enum Ack {
    Waiting {
        /// The admin revision that carries the drain.
        admin_revision: u64,
        /// When the wait gives up.
        deadline: Instant,
    },
    Done,
}

/// The core's fleet bookkeeping.
#[derive(Debug, Default)]
pub(super) struct FleetState {
    /// Identifies this process in reports.
    pub(super) instance: String,
    peers: BTreeMap<NodeName, PeerStatus>,
    reports: BTreeMap<NodeName, PeerReport>,
    report: Option<Arc<Report>>,
    view: Option<Arc<FleetView>>,
    acks: BTreeMap<PopName, Ack>,
    /// The health the own PoP's announcement followed last.
    announced: Option<bool>,
    /// While the own PoP's inside verdict is down: when it went down, or
    /// when the fail-static rule last stopped holding it (monotonic), and
    /// the health announced just before it went down.
    down_since: Option<(Instant, Option<bool>)>,
    /// The fail-static rule held the own PoP at the last recompute.
    held: bool,
    /// End of the fail-static window of a held withdrawal.
    window_end: Option<Instant>,
    /// Own PoPs whose graceful drain holds at the end of its DNS step
    /// (the last-PoP guard against the fleet view), and why.
    pub(super) holds: BTreeMap<PopName, String>,
}

impl FleetState {
    /// Bookkeeping for a process that started at `now`.
    pub(super) fn new(now: Now) -> FleetState {
        let nanos = now
            .wall
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        FleetState {
            instance: format!("{:016x}", nanos as u64),
            ..FleetState::default()
        }
    }
}

impl Core {
    /// A report or a failed pull from the puller, or the partial outcome
    /// of an admin call from the API.
    pub(super) fn on_fleet(&mut self, input: FleetInput, now: Now) {
        let Some(fleet) = self.config.fleet.as_ref() else {
            return;
        };
        let (peer, pulled) = match input {
            FleetInput::Report { peer, report } => (peer, Ok(report)),
            FleetInput::Failed { peer, error } => (peer, Err(error)),
            FleetInput::Partial { pop, message } => {
                self.event(EventKind::Fleet, Some(pop), None, message, now);
                self.recompute(now);
                return;
            }
        };
        let Some(cfg) = fleet.peers.get(&peer) else {
            return;
        };
        let st = self
            .fleet
            .peers
            .entry(peer.clone())
            .or_insert_with(|| PeerStatus::new(cfg));
        match pulled {
            Ok(report) => {
                st.pulls += 1;
                st.errors = 0;
                st.last_error = None;
                st.received = Some(now.mono);
                st.instance = Some(report.instance.clone());
                st.revision = Some(report.revision);
                self.fleet.reports.insert(
                    peer,
                    PeerReport {
                        report: Some(Arc::new(*report)),
                        received: Some(now.mono),
                    },
                );
            }
            Err(error) => {
                st.pull_errors += 1;
                st.errors = st.errors.saturating_add(1);
                if st.errors == 1 || st.last_error.as_deref() != Some(error.as_str()) {
                    tracing::warn!(peer = %peer, "fleet: pull failed: {error}");
                }
                st.last_error = Some(error);
            }
        }
        self.recompute(now);
    }

    /// Follows a new config: peers no longer configured are forgotten,
    /// new ones start without a report.
    pub(super) fn fleet_config(&mut self) {
        let Some(fleet) = self.config.fleet.as_ref() else {
            self.fleet.peers.clear();
            self.fleet.reports.clear();
            self.fleet.view = None;
            self.fleet.report = None;
            self.fleet.acks.clear();
            self.fleet.holds.clear();
            return;
        };
        self.fleet.peers.retain(|n, _| fleet.peers.contains_key(n));
        self.fleet
            .reports
            .retain(|n, _| fleet.peers.contains_key(n));
        for (name, p) in &fleet.peers {
            let st = self
                .fleet
                .peers
                .entry(name.clone())
                .or_insert_with(|| PeerStatus::new(p));
            st.pop = p.pop.clone();
            st.url = p.url.clone();
        }
    }

    /// The fleet's timed steps: a report going stale, a confirmation wait
    /// running out, the end of a fail-static window.
    pub(super) fn fleet_deadline(&self) -> Option<Instant> {
        let fleet = self.config.fleet.as_ref()?;
        let stale = self
            .fleet
            .peers
            .values()
            .filter(|p| p.fresh)
            .filter_map(|p| p.received.map(|r| r + fleet.stale_after));
        let acks = self.fleet.acks.values().filter_map(|a| match a {
            Ack::Waiting { deadline, .. } => Some(*deadline),
            Ack::Done => None,
        });
        stale.chain(acks).chain(self.fleet.window_end).min()
    }

    /// Merges this node's view with its peers' reports at `now`: builds
    /// its report, the fleet view, and emits the fleet's events. Returns
    /// the snapshot's fleet part.
    pub(super) fn merge_fleet(
        &mut self,
        local: &BTreeMap<PopName, Local>,
        now: Now,
    ) -> Option<FleetSnapshot> {
        let fleet = self.config.fleet.clone()?;
        // Freshness, with an event when it changes.
        let mut changes = Vec::new();
        for (name, st) in self.fleet.peers.iter_mut() {
            let fresh = st
                .received
                .is_some_and(|r| now.mono < r + fleet.stale_after);
            if fresh != st.fresh {
                changes.push(if fresh {
                    format!("peer {name}: report received, fresh again")
                } else {
                    format!(
                        "peer {name}: report stale (none for {}): its views count as unknown",
                        crate::config::format_duration(fleet.stale_after)
                    )
                });
                st.fresh = fresh;
            }
        }
        for msg in changes {
            self.event(EventKind::Fleet, None, None, msg, now);
        }
        let applied = self
            .fleet
            .reports
            .iter()
            .filter_map(|(n, p)| {
                p.report.as_ref().map(|r| {
                    (
                        n.clone(),
                        Applied {
                            instance: r.instance.clone(),
                            admin_revision: r.admin_revision,
                        },
                    )
                })
            })
            .collect();
        let report = report::build(
            &self.config,
            &self.fleet.instance,
            local,
            applied,
            self.fleet.report.as_deref(),
            now.wall,
        )?;
        let report = match &self.fleet.report {
            Some(prev) if prev.revision == report.revision && prev.instance == report.instance => {
                prev.clone()
            }
            _ => Arc::new(report),
        };
        let view = merge::merge(
            &merge::Sources {
                config: &self.config,
                fleet: &fleet,
                local,
                peers: &self.fleet.reports,
                previous: self.fleet.view.as_deref(),
            },
            now.mono,
        );
        self.fleet_events(&view, now);
        self.fleet.report = Some(report.clone());
        let view = Arc::new(view);
        self.fleet.view = Some(view.clone());
        Some(FleetSnapshot {
            report,
            view,
            peers: self.fleet.peers.clone(),
        })
    }

    /// Events of what changed between the previous view and `view`.
    fn fleet_events(&mut self, view: &FleetView, now: Now) {
        let Some(prev) = self.fleet.view.clone() else {
            return;
        };
        let mut out: Vec<(EventKind, PopName, String)> = Vec::new();
        for (name, v) in &view.pops {
            let Some(p) = prev.pops.get(name) else {
                continue;
            };
            if p.fail_static.is_some() != v.fail_static.is_some() {
                let msg = match &v.fail_static {
                    Some(why) => format!("pop {name} fail static: {why}: not withdrawn"),
                    None => format!(
                        "pop {name} fail static over: {}",
                        p.fail_static.as_deref().unwrap_or("")
                    ),
                };
                out.push((EventKind::Safety, name.clone(), msg));
            }
            if p.disagrees() != v.disagrees() {
                let msg = if v.disagrees() {
                    let down: Vec<&str> = v
                        .vantage
                        .iter()
                        .filter(|(_, x)| x.fresh && x.verdict == VantageVerdict::Down)
                        .map(|(n, _)| n.as_str())
                        .collect();
                    format!(
                        "pop {name}: owner says up, unreachable from {} of {} vantage points ({})",
                        v.unreachable,
                        v.unreachable + v.reachable,
                        down.join(", ")
                    )
                } else {
                    format!("pop {name}: owner and outside agree again ({})", v.why)
                };
                out.push((EventKind::Fleet, name.clone(), msg));
            }
            if self.config.role(name) == Role::Peer {
                let step =
                    |a: &Option<AdminView>| a.as_ref().map(|a| (a.status.kind, a.status.step));
                if step(&p.admin) != step(&v.admin) {
                    let msg = match (&p.admin, &v.admin) {
                        (_, Some(a))
                            if step(&p.admin).is_none() || a.status.step == Phase::Disabled =>
                        {
                            format!(
                                "pop {name} {} by {}: {} (owner {})",
                                a.status.step, a.status.who, a.status.reason, a.from
                            )
                        }
                        (_, Some(a)) => format!("pop {name} {} (owner {})", a.status.step, a.from),
                        (Some(a), None) => {
                            format!("pop {name} back in service (owner {})", a.from)
                        }
                        (None, None) => continue,
                    };
                    out.push((EventKind::Fleet, name.clone(), msg));
                }
            }
        }
        for (kind, pop, msg) in out {
            self.event(kind, Some(pop), None, msg, now);
        }
    }

    /// The health the own PoP's announcement follows now (see
    /// [`merge::announce_health`]), remembering it and the window's end.
    pub(super) fn announce_health(&mut self, inside: Option<bool>, now: Now) -> Option<bool> {
        let Some(fleet) = self.config.fleet.as_ref() else {
            return inside;
        };
        let held = self
            .config
            .node
            .pop
            .as_ref()
            .and_then(|p| self.fleet.view.as_ref()?.pops.get(p))
            .is_some_and(|v| v.inside_held);
        if inside == Some(false) {
            let announced = self.fleet.announced;
            let since = self.fleet.down_since.get_or_insert((now.mono, announced));
            if self.fleet.held && !held {
                // The rule let go while the PoP still fails: the window
                // runs again (recoveries are not seen at one instant either).
                since.0 = now.mono;
            }
        } else {
            self.fleet.down_since = None;
        }
        self.fleet.held = held;
        let (since, before) = self.fleet.down_since.unwrap_or((now.mono, None));
        let (health, end) = merge::announce_health(
            inside,
            held,
            before,
            since,
            fleet.fail_static.map(|f| f.window),
            now.mono,
        );
        if end.is_some() && self.fleet.window_end.is_none() {
            tracing::info!(
                "own PoP failed its checks: withdrawal held for the fail-static window, waiting for the fleet view"
            );
        }
        self.fleet.window_end = end;
        self.fleet.announced = health;
        health
    }

    /// A graceful drain of an own PoP entered its DNS step and the report
    /// that carries it is built: wait for the other nodes to confirm it.
    pub(super) fn fleet_wait_for_acks(&mut self, pop: &PopName, now: Now) {
        let t = super::drain_timings(&self.config, pop);
        let Some(report) = self.fleet.report.as_ref() else {
            return;
        };
        if t.ack.is_zero()
            || self
                .overrides
                .get(pop)
                .is_none_or(|o| o.phase != Phase::DnsRemoved)
        {
            return;
        }
        self.fleet.acks.insert(
            pop.clone(),
            Ack::Waiting {
                admin_revision: report.admin_revision,
                deadline: now.mono + t.ack,
            },
        );
        self.recompute(now);
    }

    /// Ends the confirmation waits that are over: every peer with a fresh
    /// report has confirmed, or the time is up. The DNS wait starts then.
    pub(super) fn fleet_acks(&mut self, now: Now) {
        let Some(fleet) = self.config.fleet.clone() else {
            return;
        };
        let overrides = &self.overrides;
        self.fleet.acks.retain(|p, _| {
            overrides
                .get(p)
                .is_some_and(|o| o.phase == Phase::DnsRemoved)
        });
        let waiting: Vec<(PopName, u64, Instant)> = self
            .fleet
            .acks
            .iter()
            .filter_map(|(p, a)| match a {
                Ack::Waiting {
                    admin_revision,
                    deadline,
                } => Some((p.clone(), *admin_revision, *deadline)),
                Ack::Done => None,
            })
            .collect();
        for (pop, admin_revision, deadline) in waiting {
            let t = super::drain_timings(&self.config, &pop);
            let (mut confirmed, mut missing, mut stale) = (Vec::new(), Vec::new(), Vec::new());
            for name in fleet.peers.keys() {
                let peer = self.fleet.reports.get(name);
                let fresh = peer
                    .and_then(|p| p.received)
                    .is_some_and(|r| now.mono < r + fleet.stale_after);
                if !fresh {
                    stale.push(name.as_str());
                    continue;
                }
                let ok = peer
                    .and_then(|r| r.report.as_ref())
                    .and_then(|r| r.applied.get(&fleet.me))
                    .is_some_and(|a| {
                        a.instance == self.fleet.instance && a.admin_revision >= admin_revision
                    });
                if ok {
                    confirmed.push(name.as_str());
                } else {
                    missing.push(name.as_str());
                }
            }
            let wait = crate::config::format_duration(t.dns_wait);
            let msg = if missing.is_empty() {
                let who = if confirmed.is_empty() {
                    "no peer to ask".to_string()
                } else {
                    format!("{} confirmed", confirmed.join(", "))
                };
                let mut m = format!(
                    "pop {pop} out of DNS on every node ({who}): waiting {wait} for caches"
                );
                if !stale.is_empty() {
                    m.push_str(&format!("; not asked (report stale): {}", stale.join(", ")));
                }
                m
            } else if now.mono >= deadline {
                format!(
                    "pop {pop}: {} did not confirm the DNS step within {}; going on, waiting {wait} for caches",
                    missing.join(", "),
                    crate::config::format_duration(t.ack)
                )
            } else {
                continue;
            };
            self.fleet.acks.insert(pop.clone(), Ack::Done);
            if let Some(ov) = self.overrides.get(&pop) {
                let ov = admin::confirm_dns(ov, now.mono, t);
                self.overrides.insert(pop.clone(), ov);
            }
            self.event(EventKind::Fleet, Some(pop), None, msg, now);
        }
    }

    /// Why the graceful drain of `pop` must hold now that its DNS step is
    /// over ([`guard::drain_hold`] against the current fleet view): only
    /// an own PoP's drain at its DNS step that was not forced, in a fleet.
    pub(super) fn drain_hold(&self, pop: &PopName) -> Option<String> {
        let view = self.fleet.view.as_ref()?;
        let ov = self.overrides.get(pop)?;
        if ov.force || ov.phase != Phase::DnsRemoved || self.config.role(pop) != Role::Own {
            return None;
        }
        let seen = view
            .pops
            .iter()
            .map(|(name, v)| {
                let dns_step = v
                    .admin
                    .as_ref()
                    .filter(|a| a.status.step == Phase::DnsRemoved)
                    .map(|a| (crate::unix_time::secs(a.status.since), a.status.force));
                let s = guard::Seen {
                    state: v.state,
                    dns_step,
                };
                (name.clone(), s)
            })
            .collect();
        guard::drain_hold(
            &self.config.pops,
            &seen,
            pop,
            crate::unix_time::secs(ov.since),
        )
    }

    /// A drain whose DNS step is over holds for `why`: remembered, with a
    /// `safety` event when the hold starts. Returns whether anything
    /// changed (a new hold or a new reason).
    pub(super) fn hold_drain(&mut self, pop: PopName, why: String, now: Now) -> bool {
        match self.fleet.holds.insert(pop.clone(), why.clone()) {
            Some(before) => before != why,
            None => {
                let msg = format!("pop {pop} drain held: {why}");
                self.event(EventKind::Safety, Some(pop), None, msg, now);
                true
            }
        }
    }

    /// Ends the holds that no longer apply: the drain was undone or
    /// changed, or the fleet view now has another PoP of each prefix in
    /// service (its next step is then due at once). Keeps the reasons of
    /// the others current.
    pub(super) fn release_drains(&mut self, now: Now) {
        let held: Vec<PopName> = self.fleet.holds.keys().cloned().collect();
        for pop in held {
            let at_dns_step = self
                .overrides
                .get(&pop)
                .is_some_and(|o| o.phase == Phase::DnsRemoved);
            match self.drain_hold(&pop) {
                Some(why) => {
                    self.fleet.holds.insert(pop, why);
                }
                None => {
                    self.fleet.holds.remove(&pop);
                    if at_dns_step {
                        let msg = format!(
                            "pop {pop} drain goes on: another PoP of each of its prefixes is in service"
                        );
                        self.event(EventKind::Safety, Some(pop), None, msg, now);
                    }
                }
            }
        }
    }

    /// The fleet verdict of `pop` for the snapshot: state, health, whether
    /// it serves DNS, reason, admin state, fail-static reason.
    pub(super) fn fleet_pop(view: &FleetView, pop: &PopName) -> Option<Decided> {
        let v = view.pops.get(pop)?;
        Some(Decided {
            state: v.state,
            healthy: v.health,
            reason: v.why.clone(),
            admin: v.admin.as_ref().map(|a| a.status.clone()),
            fail_static: v.fail_static.clone(),
        })
    }
}

/// What the snapshot shows of a PoP.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Decided {
    pub(super) state: PopState,
    pub(super) healthy: Option<bool>,
    pub(super) reason: String,
    pub(super) admin: Option<AdminStatus>,
    pub(super) fail_static: Option<String>,
}

#[cfg(test)]
mod tests;
