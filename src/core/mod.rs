//! The single-writer controller.
//!
//! One task ([`Core::run`]) owns all mutable state: check states, PoP states,
//! admin overrides (drains, disables). Everything else talks to it through
//! [`Input`] messages and reads the latest [`Snapshot`] from a `watch`
//! channel. Decisions are pure functions in [`decide`]; this module only
//! applies inputs, calls them and publishes the result.

pub mod admin;
pub mod decide;
pub mod event;
pub mod persist;
pub mod snapshot;

pub use event::{Event, EventKind};
pub use snapshot::*;

use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::health::hysteresis::CheckState;
use crate::model::{CheckName, Config, PopName};

/// A probe result after hysteresis, sent by the health scheduler.
#[derive(Debug, Clone)]
pub struct CheckReport {
    pub pop: PopName,
    pub check: CheckName,
    /// Hysteresis state after this result.
    pub state: CheckState,
    pub outcome: ProbeOutcome,
}

/// Messages the core accepts.
#[derive(Debug)]
pub enum Input {
    Check(CheckReport),
    /// An operator action; the reply carries the snapshot version that
    /// includes it, or why it was refused.
    Admin {
        cmd: admin::AdminCommand,
        reply: oneshot::Sender<Result<u64, admin::AdminError>>,
    },
    /// Swap in a new, already validated config.
    Reload {
        config: Arc<Config>,
        reply: oneshot::Sender<u64>,
    },
    /// Replay of recent events plus a live receiver, taken atomically.
    Subscribe {
        reply: oneshot::Sender<(Vec<Event>, broadcast::Receiver<Event>)>,
    },
}

/// What other tasks hold to talk to the core.
#[derive(Clone)]
pub struct CoreHandle {
    pub inputs: mpsc::Sender<Input>,
    pub snapshots: watch::Receiver<Arc<Snapshot>>,
}

/// The core task has ended (the process is shutting down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the controller is shutting down")]
pub struct CoreGone;

impl CoreHandle {
    /// Swaps in a validated config; returns the snapshot version that has it.
    pub async fn reload(&self, config: Arc<Config>) -> Result<u64, CoreGone> {
        let (reply, rx) = oneshot::channel();
        self.inputs
            .send(Input::Reload { config, reply })
            .await
            .map_err(|_| CoreGone)?;
        rx.await.map_err(|_| CoreGone)
    }
}

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;

use tokio::time::Instant;
use tracing::{info, warn};

use crate::health::hysteresis::Verdict;
use admin::{AdminCommand, AdminError, DrainMode, DrainTimings, Override, Phase};

/// How many past events `/v1/events` replays.
pub const EVENT_REPLAY: usize = 256;
/// Depth of the core's input queue.
pub const INPUT_QUEUE: usize = 4096;

/// Mutable runtime state of one PoP, owned by the core.
struct PopRuntime {
    checks: BTreeMap<CheckName, CheckStatus>,
    healthy: Option<bool>,
    state: PopState,
    reason: String,
    since: SystemTime,
    changed_at: Instant,
}

/// The controller: owns state, applies inputs, publishes snapshots.
pub struct Core {
    config: Arc<Config>,
    pops: BTreeMap<PopName, PopRuntime>,
    overrides: BTreeMap<PopName, Override>,
    /// Where admin overrides are persisted (`None`: not persisted).
    state_dir: Option<PathBuf>,
    version: u64,
    snap_tx: watch::Sender<Arc<Snapshot>>,
    events_tx: broadcast::Sender<Event>,
    recent: VecDeque<Event>,
    event_seq: u64,
    /// Events of the change being applied, emitted once the snapshot that
    /// includes the change is published (so a reader reacting to an event
    /// always sees it in the state).
    pending: Vec<Event>,
}

impl Core {
    /// Builds the core with `overrides` loaded from the state file (if any)
    /// and publishes the first snapshot.
    pub fn new(
        config: Arc<Config>,
        overrides: BTreeMap<PopName, Override>,
    ) -> (Core, CoreHandle, mpsc::Receiver<Input>) {
        let now = Instant::now();
        let wall = SystemTime::now();
        let state_dir = config.node.state_dir.clone();
        let overrides = overrides
            .into_iter()
            .filter(|(p, _)| config.pops.contains_key(p))
            .map(|(p, ov)| {
                let t = drain_timings(&config, &p);
                (p, admin::resume(ov, now, t))
            })
            .collect();
        let empty = Snapshot {
            version: 0,
            published: wall,
            config: config.clone(),
            pops: BTreeMap::new(),
            announcements: Arc::new(BTreeMap::new()),
        };
        let (snap_tx, snapshots) = watch::channel(Arc::new(empty));
        let (events_tx, _) = broadcast::channel(EVENT_REPLAY * 4);
        let (tx, rx) = mpsc::channel(INPUT_QUEUE);
        let mut core = Core {
            config: config.clone(),
            pops: BTreeMap::new(),
            overrides,
            state_dir,
            version: 0,
            snap_tx,
            events_tx,
            recent: VecDeque::with_capacity(EVENT_REPLAY),
            event_seq: 0,
            pending: Vec::new(),
        };
        core.install_config(config, now, wall);
        for (pop, ov) in core.overrides.clone() {
            core.event(
                EventKind::Admin,
                Some(pop.clone()),
                None,
                format!(
                    "pop {pop} restored from state file: {} by {} ({})",
                    ov.phase.as_str(),
                    ov.who,
                    ov.reason
                ),
            );
        }
        core.recompute(now, wall);
        let handle = CoreHandle {
            inputs: tx,
            snapshots,
        };
        (core, handle, rx)
    }

    /// The latest published snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snap_tx.borrow().clone()
    }

    /// Runs until every input sender is gone.
    pub async fn run(mut self, mut rx: mpsc::Receiver<Input>) {
        loop {
            let deadline = self.next_deadline(Instant::now(), SystemTime::now());
            let input = match deadline {
                Some(at) => tokio::select! {
                    i = rx.recv() => i.map(Some),
                    _ = tokio::time::sleep_until(at) => Some(None),
                },
                None => rx.recv().await.map(Some),
            };
            let Some(input) = input else { return };
            let (now, wall) = (Instant::now(), SystemTime::now());
            match input {
                Some(i) => self.handle(i, now, wall),
                None => self.on_timer(now, wall),
            }
        }
    }

    /// Applies one input (public for tests that drive the core directly).
    pub fn handle(&mut self, input: Input, now: Instant, wall: SystemTime) {
        match input {
            Input::Check(r) => self.on_check(r, now, wall),
            Input::Admin { cmd, reply } => {
                let res = self.on_admin(cmd, now, wall);
                let _ = reply.send(res);
            }
            Input::Reload { config, reply } => {
                self.install_config(config, now, wall);
                self.event(
                    EventKind::Reload,
                    None,
                    None,
                    "configuration reloaded".into(),
                );
                self.recompute(now, wall);
                let _ = reply.send(self.version);
            }
            Input::Subscribe { reply } => {
                let rx = self.events_tx.subscribe();
                let _ = reply.send((self.recent.iter().cloned().collect(), rx));
            }
        }
    }

    fn install_config(&mut self, config: Arc<Config>, now: Instant, wall: SystemTime) {
        let mut pops = BTreeMap::new();
        for (name, pop) in &config.pops {
            let old = self.pops.remove(name);
            let mut checks = BTreeMap::new();
            for c in &pop.checks {
                let prev = old.as_ref().and_then(|o| o.checks.get(&c.name));
                checks.insert(
                    c.name.clone(),
                    CheckStatus {
                        state: prev.map(|p| p.state).unwrap_or_default(),
                        rise: c.rise,
                        fall: c.fall,
                        last: prev.and_then(|p| p.last.clone()),
                    },
                );
            }
            let rt = match old {
                Some(o) => PopRuntime { checks, ..o },
                None => PopRuntime {
                    checks,
                    healthy: None,
                    state: PopState::Down,
                    reason: "waiting for first check results".into(),
                    since: wall,
                    changed_at: now,
                },
            };
            pops.insert(name.clone(), rt);
        }
        let dropped: Vec<PopName> = self
            .overrides
            .keys()
            .filter(|p| !config.pops.contains_key(*p))
            .cloned()
            .collect();
        for p in dropped {
            self.overrides.remove(&p);
            warn!(pop = %p, "admin override dropped: PoP no longer in config");
        }
        self.state_dir = config.node.state_dir.clone();
        self.pops = pops;
        self.config = config;
    }

    fn on_check(&mut self, r: CheckReport, now: Instant, wall: SystemTime) {
        let Some(rt) = self.pops.get_mut(&r.pop) else {
            return;
        };
        let Some(st) = rt.checks.get_mut(&r.check) else {
            return;
        };
        let before = st.state.verdict;
        st.state = r.state;
        st.last = Some(r.outcome.clone());
        if before != r.state.verdict && r.state.verdict != Verdict::Unknown {
            let msg = format!(
                "check {}/{} {}: {}",
                r.pop,
                r.check,
                match r.state.verdict {
                    Verdict::Up => "up",
                    _ => "down",
                },
                r.outcome.detail
            );
            self.event(
                EventKind::Check,
                Some(r.pop.clone()),
                Some(r.check.clone()),
                msg,
            );
        }
        self.recompute(now, wall);
    }

    fn on_admin(
        &mut self,
        cmd: AdminCommand,
        now: Instant,
        wall: SystemTime,
    ) -> Result<u64, AdminError> {
        let pop = cmd.pop().clone();
        if !self.config.pops.contains_key(&pop) {
            return Err(AdminError::UnknownPop(pop.to_string()));
        }
        let t = drain_timings(&self.config, &pop);
        let current = self.overrides.get(&pop).cloned();
        let new = match cmd {
            AdminCommand::Drain {
                reason,
                who,
                duration,
                mode,
                force,
                ..
            } => {
                if current.is_none() && !force && self.is_last(&pop) {
                    return Err(AdminError::LastPop(pop.to_string()));
                }
                Some(admin::start_drain(
                    mode, reason, who, wall, duration, now, t,
                ))
            }
            AdminCommand::Disable {
                reason, who, force, ..
            } => {
                if current.is_none() && !force && self.is_last(&pop) {
                    return Err(AdminError::LastPop(pop.to_string()));
                }
                Some(Override {
                    phase: Phase::Disabled,
                    reason,
                    who,
                    since: wall,
                    until: None,
                    phase_ends: None,
                })
            }
            AdminCommand::Undrain { who, mode, .. } => {
                let cur = current
                    .as_ref()
                    .ok_or_else(|| AdminError::NotOverridden(pop.to_string()))?;
                admin::start_undrain(cur, mode, who, now, t)
            }
            AdminCommand::Enable { .. } => {
                if current.is_none() {
                    return Err(AdminError::NotOverridden(pop.to_string()));
                }
                None
            }
        };
        let mut next = self.overrides.clone();
        match &new {
            Some(ov) => next.insert(pop.clone(), ov.clone()),
            None => next.remove(&pop),
        };
        self.persist(&next).map_err(AdminError::Persist)?;
        self.overrides = next;
        let msg = match &new {
            Some(ov) => format!(
                "pop {pop} {} by {}: {}",
                ov.phase.as_str(),
                ov.who,
                ov.reason
            ),
            None => format!("pop {pop} back in service (admin override removed)"),
        };
        self.event(EventKind::Admin, Some(pop), None, msg);
        self.recompute(now, wall);
        Ok(self.version)
    }

    fn is_last(&self, pop: &PopName) -> bool {
        let snap = self.snap_tx.borrow().clone();
        decide::is_last_pop(&self.config.pops, &snap.pops, pop)
    }

    fn persist(&self, overrides: &BTreeMap<PopName, Override>) -> Result<(), String> {
        match &self.state_dir {
            Some(dir) => persist::save(dir, overrides).map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }

    /// The earliest drain phase end or auto-undrain, as a monotonic time.
    fn next_deadline(&self, now: Instant, wall: SystemTime) -> Option<Instant> {
        self.overrides
            .values()
            .flat_map(|ov| {
                let until = ov
                    .until
                    .map(|u| now + u.duration_since(wall).unwrap_or(std::time::Duration::ZERO));
                [ov.phase_ends, until]
            })
            .flatten()
            .min()
    }

    fn on_timer(&mut self, now: Instant, wall: SystemTime) {
        let mut changed = false;
        let current = self.overrides.clone();
        let mut next = current.clone();
        for (pop, ov) in &current {
            let t = drain_timings(&self.config, pop);
            if ov.until.is_some_and(|u| u <= wall) {
                // Expiry undrains like an operator would: the graceful ramp
                // (routes first, DNS after the settle time).
                let ramp = admin::start_undrain(ov, DrainMode::Graceful, "expiry".into(), now, t);
                let msg = match &ramp {
                    Some(_) => format!("pop {pop} drain expired: restoring"),
                    None => format!("pop {pop} drain expired: back in service"),
                };
                match ramp {
                    Some(r) => next.insert(pop.clone(), r),
                    None => next.remove(pop),
                };
                self.event(EventKind::Admin, Some(pop.clone()), None, msg);
                changed = true;
                continue;
            }
            if let Some((new, step)) = admin::advance(ov, now, t) {
                let to = step.to.map(Phase::as_str).unwrap_or("in_service");
                let from = step.from.map(Phase::as_str).unwrap_or("in_service");
                self.event(
                    EventKind::DrainStep,
                    Some(pop.clone()),
                    None,
                    format!("pop {pop} {from} -> {to}"),
                );
                match new {
                    Some(n) => next.insert(pop.clone(), n),
                    None => next.remove(pop),
                };
                changed = true;
            }
        }
        if changed {
            if let Err(e) = self.persist(&next) {
                warn!("admin state could not be saved: {e}");
            }
            self.overrides = next;
            self.recompute(now, wall);
        }
    }

    /// Recomputes PoP states and announcements and publishes a snapshot.
    fn recompute(&mut self, now: Instant, wall: SystemTime) {
        let mut state_events = Vec::new();
        for (name, rt) in self.pops.iter_mut() {
            let Some(pop) = self.config.pops.get(name) else {
                continue;
            };
            let combined =
                decide::combine(pop.combine, rt.checks.values().map(|c| c.state.verdict));
            let healthy = decide::hold_verdict(rt.healthy, combined);
            let phase = self.overrides.get(name).map(|o| o.phase);
            let state = decide::pop_state(healthy, phase);
            // The first verdict is news even when the state stays `down`.
            let first_verdict = rt.healthy.is_none() && healthy.is_some();
            rt.healthy = healthy;
            let reason = match self.overrides.get(name) {
                Some(ov) => format!("{} by {}: {}", ov.phase.as_str(), ov.who, ov.reason),
                None if combined.is_none() && healthy.is_some() => format!(
                    "{} (kept while new checks decide: {})",
                    decide::health_reason(pop.combine, &rt.checks, healthy),
                    rt.checks
                        .iter()
                        .filter(|(_, c)| c.state.verdict == Verdict::Unknown)
                        .map(|(n, _)| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                None => decide::health_reason(pop.combine, &rt.checks, healthy),
            };
            if state != rt.state || first_verdict {
                state_events.push((name.clone(), format!("pop {name} {state}: {reason}")));
            }
            if state != rt.state {
                rt.state = state;
                rt.since = wall;
                rt.changed_at = now;
            }
            rt.reason = reason;
        }
        for (pop, msg) in state_events {
            self.event(EventKind::PopState, Some(pop), None, msg);
        }
        let pops: BTreeMap<PopName, PopStatus> = self
            .pops
            .iter()
            .map(|(name, rt)| {
                let admin = self.overrides.get(name).map(|ov| AdminStatus {
                    kind: if ov.phase == Phase::Disabled {
                        AdminKind::Disable
                    } else {
                        AdminKind::Drain
                    },
                    reason: ov.reason.clone(),
                    who: ov.who.clone(),
                    step: ov.phase,
                    next_at: [
                        ov.phase_ends
                            .map(|e| wall + e.saturating_duration_since(now)),
                        ov.until,
                    ]
                    .into_iter()
                    .flatten()
                    .min(),
                    until: ov.until,
                });
                let status = PopStatus {
                    state: rt.state,
                    healthy: rt.healthy,
                    serves_dns: rt.state == PopState::Up,
                    reason: rt.reason.clone(),
                    since: rt.since,
                    changed_at: rt.changed_at,
                    checks: rt.checks.clone(),
                    admin,
                };
                (name.clone(), status)
            })
            .collect();
        let phases: BTreeMap<PopName, Phase> = self
            .overrides
            .iter()
            .map(|(p, o)| (p.clone(), o.phase))
            .collect();
        let desired = decide::desired_announcements(&self.config, &pops, &phases);
        let prev = self.snap_tx.borrow().clone();
        let announcements = decide::reuse_if_equal(&prev.announcements, desired);
        self.version += 1;
        let snap = Snapshot {
            version: self.version,
            published: wall,
            config: self.config.clone(),
            pops,
            announcements,
        };
        self.snap_tx.send_replace(Arc::new(snap));
        for ev in std::mem::take(&mut self.pending) {
            if self.recent.len() == EVENT_REPLAY {
                self.recent.pop_front();
            }
            self.recent.push_back(ev.clone());
            let _ = self.events_tx.send(ev);
        }
    }

    /// Records an event: logged once now, kept for replay and broadcast
    /// live once the snapshot that includes it is published.
    fn event(
        &mut self,
        kind: EventKind,
        pop: Option<PopName>,
        check: Option<CheckName>,
        message: String,
    ) {
        self.event_seq += 1;
        match kind {
            EventKind::Check => info!(
                pop = pop.as_ref().map(|p| p.as_str()),
                check = check.as_ref().map(|c| c.as_str()),
                "{message}"
            ),
            _ => info!(pop = pop.as_ref().map(|p| p.as_str()), "{message}"),
        }
        self.pending.push(Event {
            seq: self.event_seq,
            at: SystemTime::now(),
            kind,
            pop,
            check,
            message,
        });
    }
}

/// The waits of a graceful drain of `pop`: its configured DNS wait (or the
/// longest TTL among steered records that can answer with it) and settle.
pub fn drain_timings(config: &Config, pop: &PopName) -> DrainTimings {
    let Some(p) = config.pops.get(pop) else {
        return DrainTimings {
            dns_wait: std::time::Duration::ZERO,
            settle: std::time::Duration::ZERO,
        };
    };
    let max_ttl = config
        .dns
        .zones
        .iter()
        .flat_map(|z| z.records.iter())
        .filter_map(|r| match &r.data {
            crate::model::RecordData::Steered(s) if s.policy.pops().contains(&pop) => Some(r.ttl),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    DrainTimings {
        dns_wait: p
            .drain_dns_wait
            .unwrap_or(std::time::Duration::from_secs(u64::from(max_ttl))),
        settle: p.drain_settle,
    }
}

#[cfg(test)]
mod tests;
