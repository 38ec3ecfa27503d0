//! The single-writer controller.
//!
//! One task ([`Core::run`]) owns all mutable state: check states (their
//! rise/fall [`hysteresis`]), PoP states, admin overrides (drains,
//! disables) and what the admin state file holds. Everything else talks to
//! it through [`Input`] messages and reads the latest [`Snapshot`] from a
//! `watch` channel. Decisions are pure functions in [`decide`], [`admin`]
//! and [`hysteresis`]; this module applies inputs, calls them and
//! publishes the result.
//!
//! - Inputs: raw probe results ([`Input::Probe`], from the health
//!   scheduler), admin commands (API), a new config (reload), event
//!   subscriptions (API), save reports ([`Input::Saved`], from the effect
//!   runner).
//! - Outputs: the [`Snapshot`] — PoP and check states, announcements and
//!   the config in force, which the health checks, the BGP speaker and DNS
//!   each follow on their own — the [`Event`]s (broadcast, with a replay
//!   of the last [`EVENT_REPLAY`]), and [`Effect`]s.
//!
//! The core does no I/O and reads no clock. Each input is applied with a
//! [`Now`] from the injected [`Clock`]; work that touches the outside world
//! (saving the admin state file) is emitted as an [`Effect`] that
//! [`effect::run`] carries out, and its result comes back as an input.
//! A new source of state (another input kind) is an [`Input`] variant and
//! a handler; a new kind of outside work is an [`Effect`] variant.
//!
//! Tests: `tests.rs` drives the core input by input; `golden.rs` replays
//! the scenarios of `testdata/` (see its README) against [`Core::run`].

pub mod admin;
pub mod clock;
pub mod decide;
pub mod effect;
pub mod event;
pub mod fleet;
#[cfg(test)]
mod golden;
pub mod hysteresis;
mod overrides;
pub mod persist;
pub mod snapshot;
mod watchdog;

pub use clock::{Clock, Now, SystemClock, TokioClock};
pub use effect::Effect;
pub use event::{Event, EventKind};
pub use overrides::SAVE_RETRY;
pub use snapshot::*;
pub use watchdog::Watchdog;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::model::{CheckName, Config, PopName, Role};
use admin::{DrainTimings, Override, Phase};
use hysteresis::Verdict;
use persist::SaveFailure;

/// One raw probe result, sent by the health scheduler. The core applies
/// the check's rise/fall hysteresis to it.
#[derive(Debug, Clone)]
pub struct ProbeReport {
    pub pop: PopName,
    pub check: CheckName,
    /// Increases with every report the process sends (across all checks
    /// and check restarts); the snapshot's [`CheckStatus::seq`] says which
    /// report it includes.
    pub seq: u64,
    pub outcome: ProbeOutcome,
}

/// Messages the core accepts.
#[derive(Debug)]
pub enum Input {
    /// A probe result of a configured check.
    Probe(ProbeReport),
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
    /// The result of an [`Effect::SaveAdminState`] with the same `id`.
    Saved {
        id: u64,
        result: Result<(), SaveFailure>,
    },
    /// A peer's report, or a failed pull of it.
    Fleet(fleet::FleetInput),
}

/// What other tasks hold to talk to the core.
#[derive(Clone)]
pub struct CoreHandle {
    pub inputs: mpsc::Sender<Input>,
    pub snapshots: watch::Receiver<Arc<Snapshot>>,
}

/// The core's end of its channels, from [`Core::new`]: inputs to pass to
/// [`Core::run`] and effects to pass to [`effect::run`] (or, in tests, to
/// carry out by hand).
pub struct CoreIo {
    pub inputs: mpsc::Receiver<Input>,
    pub effects: mpsc::UnboundedReceiver<Effect>,
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

/// How many past events `/v1/events` replays.
pub const EVENT_REPLAY: usize = 256;
/// Depth of the core's input queue.
pub const INPUT_QUEUE: usize = 4096;

/// Mutable runtime state of one PoP, owned by the core.
struct PopRuntime {
    /// The checks this node runs for the PoP.
    checks: BTreeMap<CheckName, CheckStatus>,
    /// This node's own verdict from those checks.
    healthy: Option<bool>,
    /// When `healthy` last changed.
    healthy_since: SystemTime,
    /// The state DNS and the API follow (the fleet verdict with a fleet).
    state: PopState,
    /// Its health (the fleet's health verdict with a fleet).
    shown_healthy: Option<bool>,
    reason: String,
    since: SystemTime,
    changed_at: Instant,
}

/// The controller: owns state, applies inputs, publishes snapshots.
pub struct Core {
    config: Arc<Config>,
    pops: BTreeMap<PopName, PopRuntime>,
    overrides: BTreeMap<PopName, Override>,
    /// The admin state file: saves in flight, what it holds, failures.
    saving: overrides::Saving,
    effects: mpsc::UnboundedSender<Effect>,
    version: u64,
    snap_tx: watch::Sender<Arc<Snapshot>>,
    events_tx: broadcast::Sender<Event>,
    recent: VecDeque<Event>,
    event_seq: u64,
    /// Events of the change being applied, emitted once the snapshot that
    /// includes the change is published (so a reader reacting to an event
    /// always sees it in the state).
    pending: Vec<Event>,
    /// Pinged from [`Core::run`] when the service manager watches us.
    watchdog: Option<Watchdog>,
    /// Peers' reports, this node's report and the fleet view.
    fleet: fleet::FleetState,
    /// The config and local announcement the published announcements were
    /// built from (see [`Core::recompute`]).
    announced: Option<(Arc<Config>, Option<Announcement>)>,
}

impl Core {
    /// Builds the core at `now` with `overrides` loaded from the state
    /// file (if any) and publishes the first snapshot. Returns the core,
    /// the handle other tasks use, and the core's end of its channels.
    pub fn new(
        config: Arc<Config>,
        overrides: BTreeMap<PopName, Override>,
        now: Now,
    ) -> (Core, CoreHandle, CoreIo) {
        // What the file holds, for the PoPs that still exist.
        let loaded: BTreeMap<PopName, Override> = overrides
            .into_iter()
            .filter(|(p, _)| config.pops.contains_key(p))
            .collect();
        let mut clamped = Vec::new();
        let overrides: BTreeMap<PopName, Override> = loaded
            .iter()
            .map(|(p, ov)| {
                let mut ov = admin::resume(ov.clone(), now.mono, drain_timings(&config, p));
                if admin::clamp_expiry(&mut ov) {
                    clamped.push(p.clone());
                }
                (p.clone(), ov)
            })
            .collect();
        let empty = Snapshot {
            version: 0,
            published: now.wall,
            config: config.clone(),
            pops: BTreeMap::new(),
            announcements: Arc::new(BTreeMap::new()),
            fleet: None,
        };
        let (snap_tx, snapshots) = watch::channel(Arc::new(empty));
        let (events_tx, _) = broadcast::channel(EVENT_REPLAY * 4);
        let (tx, rx) = mpsc::channel(INPUT_QUEUE);
        let (effects_tx, effects) = mpsc::unbounded_channel();
        let mut core = Core {
            config: config.clone(),
            pops: BTreeMap::new(),
            saving: overrides::Saving::new(config.node.state_dir.clone(), &loaded),
            overrides,
            effects: effects_tx,
            version: 0,
            snap_tx,
            events_tx,
            recent: VecDeque::with_capacity(EVENT_REPLAY),
            event_seq: 0,
            pending: Vec::new(),
            watchdog: None,
            fleet: fleet::FleetState::new(now),
            announced: None,
        };
        core.install_config(config, now);
        for (pop, ov) in core.overrides.clone() {
            core.event(
                EventKind::Admin,
                Some(pop.clone()),
                None,
                format!(
                    "pop {pop} restored from state file: {} by {} ({})",
                    ov.phase, ov.who, ov.reason
                ),
                now,
            );
        }
        for pop in clamped {
            let msg = format!(
                "pop {pop}: the auto-undrain time in the state file is more than {days} days after the drain started; clamped to {days} days after it",
                days = admin::MAX_DRAIN.as_secs() / 86_400
            );
            warn!("{msg}");
            core.event(EventKind::Admin, Some(pop), None, msg, now);
        }
        core.recompute(now);
        // A clamped expiry is written back.
        core.sync_if_dirty(now);
        let restored: Vec<PopName> = core.overrides.keys().cloned().collect();
        for pop in restored {
            core.fleet_wait_for_acks(&pop, now);
        }
        let handle = CoreHandle {
            inputs: tx,
            snapshots,
        };
        (
            core,
            handle,
            CoreIo {
                inputs: rx,
                effects,
            },
        )
    }

    /// Builds the core on `clock` and spawns it with the effect runner
    /// ([`effect::run`]): the way a process runs it. The core ends when
    /// every [`CoreHandle`] is dropped.
    pub fn spawn(
        config: Arc<Config>,
        overrides: BTreeMap<PopName, Override>,
        clock: impl Clock,
    ) -> (CoreHandle, JoinHandle<()>) {
        Core::spawn_watched(config, overrides, clock, None)
    }

    /// [`Core::spawn`], with the service manager's watchdog (if any) fed
    /// from the core loop.
    pub fn spawn_watched(
        config: Arc<Config>,
        overrides: BTreeMap<PopName, Override>,
        clock: impl Clock,
        watchdog: Option<Watchdog>,
    ) -> (CoreHandle, JoinHandle<()>) {
        let (mut core, handle, io) = Core::new(config, overrides, clock.now());
        core.watchdog = watchdog;
        tokio::spawn(effect::run(io.effects, handle.inputs.downgrade()));
        let task = tokio::spawn(core.run(io.inputs, clock));
        (handle, task)
    }

    /// The latest published snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snap_tx.borrow().clone()
    }

    /// Applies inputs and timed steps until every input sender is gone.
    /// Effects go to the receiver returned by [`Core::new`]. A watchdog
    /// given with [`Core::with_watchdog`] is fed from this loop.
    pub async fn run(mut self, mut rx: mpsc::Receiver<Input>, clock: impl Clock) {
        let mut watchdog = self.watchdog.take();
        loop {
            let deadline = self.next_deadline(clock.now());
            let deadline = match (deadline, watchdog.as_ref().map(Watchdog::next)) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let input = match deadline {
                Some(at) => tokio::select! {
                    i = rx.recv() => i.map(Some),
                    _ = tokio::time::sleep_until(at) => Some(None),
                },
                None => rx.recv().await.map(Some),
            };
            let Some(input) = input else { return };
            let now = clock.now();
            match input {
                Some(i) => self.handle(i, now),
                None => self.on_timer(now),
            }
            if let Some(w) = watchdog.as_mut() {
                w.tick(now.mono);
            }
        }
    }

    /// Feeds `watchdog` from the loop of [`Core::run`].
    pub fn with_watchdog(mut self, watchdog: Watchdog) -> Core {
        self.watchdog = Some(watchdog);
        self
    }

    /// Applies one input at `now` (public for tests that drive the core
    /// directly; they also call [`Core::tick`] for timed steps).
    pub fn handle(&mut self, input: Input, now: Now) {
        match input {
            Input::Probe(r) => self.on_probe(r, now),
            Input::Admin { cmd, reply } => self.on_admin(cmd, reply, now),
            Input::Reload { config, reply } => {
                self.install_config(config, now);
                self.event(
                    EventKind::Reload,
                    None,
                    None,
                    "configuration reloaded".into(),
                    now,
                );
                self.recompute(now);
                let _ = reply.send(self.version);
            }
            Input::Subscribe { reply } => {
                let rx = self.events_tx.subscribe();
                let _ = reply.send((self.recent.iter().cloned().collect(), rx));
            }
            Input::Saved { id, result } => self.on_saved(id, result, now),
            Input::Fleet(f) => self.on_fleet(f, now),
        }
    }

    /// Applies the timed steps due at `now` (what [`Core::run`] does when
    /// [`Core::deadline`] passes).
    pub fn tick(&mut self, now: Now) {
        self.on_timer(now);
    }

    /// When the next timed step is due, if any.
    pub fn deadline(&self, now: Now) -> Option<Instant> {
        self.next_deadline(now)
    }

    fn emit(&mut self, effect: Effect) {
        if self.effects.send(effect).is_err() {
            warn!("effect dropped: nothing carries out the core's effects");
        }
    }

    fn install_config(&mut self, config: Arc<Config>, now: Now) {
        let mut pops = BTreeMap::new();
        for (name, pop) in &config.pops {
            let old = self.pops.remove(name);
            let mut checks = BTreeMap::new();
            for c in pop.checks.iter().filter(|c| config.runs_here(name, c)) {
                let prev = old.as_ref().and_then(|o| o.checks.get(&c.name));
                checks.insert(
                    c.name.clone(),
                    CheckStatus {
                        state: prev.map(|p| p.state).unwrap_or_default(),
                        rise: c.rise,
                        fall: c.fall,
                        last: prev.and_then(|p| p.last.clone()),
                        seq: prev.map_or(0, |p| p.seq),
                    },
                );
            }
            let rt = match old {
                Some(o) => PopRuntime { checks, ..o },
                None => PopRuntime {
                    checks,
                    healthy: None,
                    healthy_since: now.wall,
                    shown_healthy: None,
                    state: PopState::Down,
                    reason: "waiting for first check results".into(),
                    since: now.wall,
                    changed_at: now.mono,
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
            if let Some(ov) = self.overrides.remove(&p) {
                let msg = format!(
                    "pop {p} is no longer configured: its override ({} by {}) is dropped",
                    ov.phase, ov.who
                );
                self.event(EventKind::Admin, Some(p), None, msg, now);
            }
        }
        self.saving.set_dir(config.node.state_dir.clone());
        self.pops = pops;
        self.config = config;
        self.fleet_config();
    }

    /// Applies a probe result: the check's hysteresis, then the PoP's
    /// state. Results of checks no longer configured are dropped.
    fn on_probe(&mut self, r: ProbeReport, now: Now) {
        let Some(st) = self
            .pops
            .get_mut(&r.pop)
            .and_then(|rt| rt.checks.get_mut(&r.check))
        else {
            return;
        };
        let before = st.state.verdict;
        st.state = st.state.step(r.outcome.ok, st.rise, st.fall);
        st.seq = st.seq.max(r.seq);
        let after = st.state.verdict;
        st.last = Some(r.outcome);
        if before != after && after != Verdict::Unknown {
            let word = if after == Verdict::Up { "up" } else { "down" };
            let detail = st.last.as_ref().map_or("", |o| o.detail.as_str());
            let msg = format!("check {}/{} {word}: {detail}", r.pop, r.check);
            self.event(EventKind::Check, Some(r.pop), Some(r.check), msg, now);
        }
        self.recompute(now);
    }

    /// Recomputes PoP states and announcements and publishes a snapshot.
    fn recompute(&mut self, now: Now) {
        self.fleet_acks(now);
        // This node's own verdict of every PoP.
        let mut local: BTreeMap<PopName, fleet::Local> = BTreeMap::new();
        let mut local_reason: BTreeMap<PopName, String> = BTreeMap::new();
        for (name, rt) in self.pops.iter_mut() {
            let Some(pop) = self.config.pops.get(name) else {
                continue;
            };
            let health = decide::pop_health(pop.combine, &rt.checks, rt.healthy);
            if health.healthy != rt.healthy {
                rt.healthy_since = now.wall;
            }
            rt.healthy = health.healthy;
            let own_admin = match self.config.role(name) {
                Role::Peer => None,
                Role::Own | Role::Local => self.overrides.get(name),
            };
            local_reason.insert(
                name.clone(),
                decide::pop_reason(pop.combine, &rt.checks, health, own_admin),
            );
            local.insert(
                name.clone(),
                fleet::Local {
                    health: health.healthy,
                    since: rt.healthy_since,
                    reason: decide::pop_reason(pop.combine, &rt.checks, health, None),
                    checks: rt
                        .checks
                        .iter()
                        .map(|(c, s)| (c.clone(), s.state.verdict))
                        .collect(),
                    admin: own_admin.map(|ov| admin_status(ov, self.fleet.holds.get(name), now)),
                },
            );
        }
        let fleet = self.merge_fleet(&local, now);
        self.release_drains(now);
        // What DNS and the API follow: the fleet verdict, or this node's.
        let mut state_events = Vec::new();
        let mut shown: BTreeMap<PopName, fleet::Decided> = BTreeMap::new();
        for (name, rt) in self.pops.iter_mut() {
            let decided = match fleet.as_ref().and_then(|f| Core::fleet_pop(&f.view, name)) {
                Some(d) => d,
                None => {
                    let admin = self.overrides.get(name);
                    fleet::Decided {
                        state: decide::pop_state(rt.healthy, admin.map(|o| o.phase)),
                        healthy: rt.healthy,
                        reason: local_reason.remove(name).unwrap_or_default(),
                        admin: admin.map(|ov| admin_status(ov, self.fleet.holds.get(name), now)),
                        fail_static: None,
                    }
                }
            };
            // The first verdict is news even when the state stays `down`.
            let first_verdict = rt.shown_healthy.is_none() && decided.healthy.is_some();
            rt.shown_healthy = decided.healthy;
            if decided.state != rt.state || first_verdict {
                state_events.push((
                    name.clone(),
                    format!("pop {name} {}: {}", decided.state, decided.reason),
                ));
            }
            if decided.state != rt.state {
                rt.state = decided.state;
                rt.since = now.wall;
                rt.changed_at = now.mono;
            }
            rt.reason = decided.reason.clone();
            shown.insert(name.clone(), decided);
        }
        for (pop, msg) in state_events {
            self.event(EventKind::PopState, Some(pop), None, msg, now);
        }
        let mut unsaved = self.unsaved_pops();
        let pops: BTreeMap<PopName, PopStatus> = self
            .pops
            .iter()
            .map(|(name, rt)| {
                let d = shown.remove(name);
                let status = PopStatus {
                    state: rt.state,
                    healthy: rt.shown_healthy,
                    serves_dns: rt.state == PopState::Up,
                    reason: rt.reason.clone(),
                    since: rt.since,
                    changed_at: rt.changed_at,
                    checks: rt.checks.clone(),
                    admin: d.as_ref().and_then(|d| d.admin.clone()),
                    admin_unsaved: unsaved.remove(name),
                    fail_static: d.and_then(|d| d.fail_static),
                };
                (name.clone(), status)
            })
            .collect();
        let own = self.config.node.pop.clone();
        let inside = own
            .as_ref()
            .and_then(|p| self.pops.get(p))
            .and_then(|rt| rt.healthy);
        let healthy = self.announce_health(inside, now);
        let phase = own
            .as_ref()
            .and_then(|p| self.overrides.get(p))
            .map(|o| o.phase);
        let local = decide::local_announcement(&self.config, healthy, phase);
        let prev = self.snap_tx.borrow().clone();
        // The map (one entry per prefix, 100,000 at the scale the docs
        // claim) is rebuilt only when the config or the local PoP's
        // announcement changed; a probe or an event that changes neither
        // publishes the same map.
        let unchanged = self
            .announced
            .as_ref()
            .is_some_and(|(cfg, a)| Arc::ptr_eq(cfg, &self.config) && *a == local);
        let announcements = if unchanged {
            prev.announcements.clone()
        } else {
            let desired = decide::announcements_of(&self.config, local.as_ref());
            self.announced = Some((self.config.clone(), local));
            decide::reuse_if_equal(&prev.announcements, desired)
        };
        self.version += 1;
        let snap = Snapshot {
            version: self.version,
            published: now.wall,
            config: self.config.clone(),
            pops,
            announcements,
            fleet: fleet.map(Arc::new),
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
        now: Now,
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
            at: now.wall,
            kind,
            pop,
            check,
            message,
        });
    }
}

/// The admin state of an override as the snapshot shows it; `held`: why
/// its drain holds at the end of its DNS step (no next step then).
fn admin_status(ov: &Override, held: Option<&String>, now: Now) -> AdminStatus {
    AdminStatus {
        kind: if ov.phase == Phase::Disabled {
            AdminKind::Disable
        } else {
            AdminKind::Drain
        },
        reason: ov.reason.clone(),
        who: ov.who.clone(),
        step: ov.phase,
        since: ov.since,
        next_at: [
            ov.phase_ends
                .filter(|_| held.is_none())
                .map(|e| now.wall_at(e)),
            ov.until,
        ]
        .into_iter()
        .flatten()
        .min(),
        until: ov.until,
        force: ov.force,
        held: held.cloned(),
    }
}

/// The waits of a graceful drain of `pop`: its configured DNS wait (or the
/// longest TTL among steered records that can answer with it), settle,
/// and in a fleet with peers, for a PoP this node owns, the longest wait
/// for the peers to confirm the DNS step.
pub fn drain_timings(config: &Config, pop: &PopName) -> DrainTimings {
    let Some(p) = config.pops.get(pop) else {
        return DrainTimings {
            dns_wait: std::time::Duration::ZERO,
            settle: std::time::Duration::ZERO,
            ack: std::time::Duration::ZERO,
        };
    };
    let ack = match &config.fleet {
        Some(f) if config.role(pop) == Role::Own && !f.peers.is_empty() => f.drain_ack_timeout,
        _ => std::time::Duration::ZERO,
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
        ack,
    }
}

#[cfg(test)]
mod tests;
