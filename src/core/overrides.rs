//! Operator overrides inside the core: admin commands, the timed steps of
//! drains (phase ends, auto-undrain) and keeping the admin state file in
//! step with them. Part of [`Core`]; the pure rules it applies are in
//! [`super::admin`] and [`super::decide`].
//!
//! Saving never runs on the core's task: the core emits
//! [`Effect::SaveAdminState`] and applies the [`super::Input::Saved`] report. At
//! most one save is in flight; admin commands that arrive meanwhile wait
//! in order and are decided when it completes (a command whose requester
//! has given up by then is dropped, never applied late).
//!
//! - An **admin command** is saved *before* it is applied: if the save
//!   fails the change is refused (the API answers 500 with the error) and
//!   memory keeps the state that is on disk.
//! - A **timed step** (next drain phase, end of an undrain ramp, expiry of
//!   a timed drain) cannot be refused — its time has come — so it is
//!   applied at once and saved after. If that save fails, the error is
//!   logged, a `persist` event says which PoPs are in force but not on
//!   disk, those PoPs show `admin_unsaved` in the state, and the save is
//!   retried every [`SAVE_RETRY`] until it succeeds (then another `persist`
//!   event). Until then the file holds an *earlier* point of the same drain
//!   or undrain, so a restart from it resumes that step and walks the same
//!   path again: slower, never a surprise announcement.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use super::admin::{self, AdminCommand, AdminError, DrainMode, Override, Phase};
use super::clock::Now;
use super::effect::Effect;
use super::persist::SaveFailure;
use super::{decide, drain_timings, Core, EventKind};
use crate::model::PopName;

/// How long after a failed save of applied state the save is retried.
pub const SAVE_RETRY: Duration = Duration::from_secs(5);

pub(super) type AdminReply = oneshot::Sender<Result<u64, AdminError>>;

/// One PoP's override changing: what an admin command or timed step does.
struct Change {
    pop: PopName,
    /// The new override (`None`: back in service).
    new: Option<Override>,
    kind: EventKind,
    message: String,
}

enum InFlight {
    /// An admin command waiting for its save before it is applied.
    Admin {
        id: u64,
        change: Change,
        reply: AdminReply,
        content: BTreeMap<PopName, Override>,
    },
    /// A save of what is already in force.
    Sync {
        id: u64,
        content: BTreeMap<PopName, Override>,
    },
}

impl InFlight {
    fn id(&self) -> u64 {
        match self {
            InFlight::Admin { id, .. } | InFlight::Sync { id, .. } => *id,
        }
    }
}

/// The admin state file as the core knows it.
pub(super) struct Saving {
    /// Where the file lives (`None`: overrides are not persisted).
    dir: Option<PathBuf>,
    next_id: u64,
    in_flight: Option<InFlight>,
    queue: VecDeque<(AdminCommand, AdminReply)>,
    /// What the file holds (as persisted: no monotonic deadlines), or
    /// `None` if that is not known (new directory, a save that failed
    /// after replacing the file).
    on_disk: Option<BTreeMap<PopName, Override>>,
    /// The error of the last failed save of applied state, while the file
    /// still differs from memory.
    failure: Option<String>,
    /// When to try that save again.
    retry_at: Option<Instant>,
}

impl Saving {
    /// Bookkeeping for `dir`, whose file holds `loaded`.
    pub(super) fn new(dir: Option<PathBuf>, loaded: &BTreeMap<PopName, Override>) -> Saving {
        Saving {
            dir,
            next_id: 0,
            in_flight: None,
            queue: VecDeque::new(),
            on_disk: Some(
                loaded
                    .iter()
                    .map(|(p, o)| (p.clone(), as_persisted(o)))
                    .collect(),
            ),
            failure: None,
            retry_at: None,
        }
    }

    /// A reload may move the state directory: the new one's file is not
    /// known, so the state in force is written there.
    pub(super) fn set_dir(&mut self, dir: Option<PathBuf>) {
        if dir != self.dir {
            self.dir = dir;
            self.on_disk = None;
            self.failure = None;
            self.retry_at = None;
        }
    }

    /// The retry deadline, if one is waiting.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.retry_at.filter(|_| self.in_flight.is_none())
    }
}

/// An override as the file holds it.
fn as_persisted(o: &Override) -> Override {
    Override {
        phase_ends: None,
        ..o.clone()
    }
}

impl Core {
    /// An operator command: decided now, or after the save in flight.
    pub(super) fn on_admin(&mut self, cmd: AdminCommand, reply: AdminReply, now: Now) {
        if self.saving.in_flight.is_some() {
            self.saving.queue.push_back((cmd, reply));
        } else {
            self.start_admin(cmd, reply, now);
        }
    }

    fn start_admin(&mut self, cmd: AdminCommand, reply: AdminReply, now: Now) {
        if reply.is_closed() {
            info!(pop = %cmd.pop(), "admin command dropped: its requester gave up waiting");
            return;
        }
        let change = match self.admin_change(cmd, now) {
            Ok(c) => c,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        let Some(dir) = self.saving.dir.clone() else {
            self.apply(change, now);
            let _ = reply.send(Ok(self.version));
            return;
        };
        let mut content = self.overrides.clone();
        match &change.new {
            Some(ov) => content.insert(change.pop.clone(), ov.clone()),
            None => content.remove(&change.pop),
        };
        let id = self.save(dir, &content);
        self.saving.in_flight = Some(InFlight::Admin {
            id,
            change,
            reply,
            content,
        });
    }

    /// Decides what `cmd` changes, or why it is refused.
    fn admin_change(&self, cmd: AdminCommand, now: Now) -> Result<Change, AdminError> {
        let pop = cmd.pop().clone();
        if !self.config.pops.contains_key(&pop) {
            return Err(AdminError::UnknownPop(pop.to_string()));
        }
        let t = drain_timings(&self.config, &pop);
        let current = self.overrides.get(&pop);
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
                let mut ov = admin::start_drain(mode, reason, who, now.wall, duration, now.mono, t);
                ov.force = force;
                Some(match current {
                    Some(cur) => admin::redrain(cur, ov),
                    None => ov,
                })
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
                    since: now.wall,
                    until: None,
                    phase_ends: None,
                    force,
                })
            }
            AdminCommand::Undrain { who, mode, .. } => {
                let cur = current.ok_or_else(|| AdminError::NotOverridden(pop.to_string()))?;
                admin::start_undrain(cur, mode, who, now.mono, t)
            }
            AdminCommand::Enable { .. } => {
                if current.is_none() {
                    return Err(AdminError::NotOverridden(pop.to_string()));
                }
                None
            }
        };
        let message = match &new {
            Some(ov) => format!("pop {pop} {} by {}: {}", ov.phase, ov.who, ov.reason),
            None => format!("pop {pop} back in service (admin override removed)"),
        };
        Ok(Change {
            pop,
            new,
            kind: EventKind::Admin,
            message,
        })
    }

    fn is_last(&self, pop: &PopName) -> bool {
        let snap = self.snap_tx.borrow().clone();
        decide::is_last_pop(&self.config.pops, &snap.pops, pop)
    }

    /// Puts a change in force (its event is published with the snapshot).
    /// A drain of an own PoP in a fleet then waits for the other nodes to
    /// confirm its DNS step.
    fn apply(&mut self, c: Change, now: Now) {
        match c.new {
            Some(ov) => self.overrides.insert(c.pop.clone(), ov),
            None => self.overrides.remove(&c.pop),
        };
        self.event(c.kind, Some(c.pop.clone()), None, c.message, now);
        self.recompute(now);
        self.fleet_wait_for_acks(&c.pop, now);
    }

    /// Emits a save of `content`; returns its id.
    fn save(&mut self, dir: PathBuf, content: &BTreeMap<PopName, Override>) -> u64 {
        self.saving.next_id += 1;
        let id = self.saving.next_id;
        self.emit(Effect::SaveAdminState {
            id,
            dir,
            overrides: content.clone(),
        });
        id
    }

    /// The persister's report.
    pub(super) fn on_saved(&mut self, id: u64, result: Result<(), SaveFailure>, now: Now) {
        let Some(flight) = self.saving.in_flight.take_if(|f| f.id() == id) else {
            warn!(
                id,
                "report of an admin state save that is not in flight; ignored"
            );
            return;
        };
        let unsaved_before = self.unsaved_pops();
        match (flight, result) {
            (
                InFlight::Admin {
                    change,
                    reply,
                    content,
                    ..
                },
                Ok(()),
            ) => {
                self.saved(content);
                if reply.is_closed() {
                    info!(pop = %change.pop, "admin change saved and applied after its requester gave up waiting");
                }
                self.apply(change, now);
                let _ = reply.send(Ok(self.version));
            }
            (InFlight::Admin { change, reply, .. }, Err(f)) => {
                warn!(pop = %change.pop, "admin change refused: {}", f.error);
                self.event(
                    EventKind::Persist,
                    Some(change.pop.clone()),
                    None,
                    format!(
                        "admin state could not be saved, change to pop {} refused: {}",
                        change.pop, f.error
                    ),
                    now,
                );
                if f.replaced {
                    self.saving.on_disk = None;
                    self.failed(f.error.clone(), now);
                }
                let _ = reply.send(Err(AdminError::Persist(f.error)));
            }
            (InFlight::Sync { content, .. }, Ok(())) => self.saved(content),
            (InFlight::Sync { .. }, Err(f)) => {
                if f.replaced {
                    self.saving.on_disk = None;
                }
                self.failed(f.error, now);
            }
        }
        self.next_save(now);
        self.clear_failure_if_clean(now);
        if self.unsaved_pops() != unsaved_before || !self.pending.is_empty() {
            self.recompute(now);
        }
    }

    fn saved(&mut self, content: BTreeMap<PopName, Override>) {
        self.saving.on_disk = Some(
            content
                .iter()
                .map(|(p, o)| (p.clone(), as_persisted(o)))
                .collect(),
        );
    }

    /// Ends a reported failure once the file holds what is in force.
    fn clear_failure_if_clean(&mut self, now: Now) {
        if self.saving.failure.is_none() || self.dirty() {
            return;
        }
        self.saving.failure = None;
        self.saving.retry_at = None;
        let msg = format!(
            "admin state saved again: the file matches the state in force ({})",
            self.state_file()
        );
        info!("{msg}");
        self.event(EventKind::Persist, None, None, msg, now);
    }

    /// A save of state already in force failed: report it (once per
    /// distinct error) and retry later.
    fn failed(&mut self, error: String, now: Now) {
        self.saving.retry_at = Some(now.mono + SAVE_RETRY);
        if self.saving.failure.as_deref() == Some(error.as_str()) {
            debug!("admin state still not saved: {error}");
            return;
        }
        let pops: Vec<String> = self
            .config
            .pops
            .keys()
            .filter(|p| self.differs(p))
            .map(|p| format!("{p} ({})", self.describe(p)))
            .collect();
        let msg = format!(
            "admin state not saved, retrying every {}s: {error}; in force but not on disk: {}",
            SAVE_RETRY.as_secs(),
            if pops.is_empty() {
                "unknown (the file may be stale)".to_string()
            } else {
                pops.join(", ")
            }
        );
        error!("{msg}");
        self.saving.failure = Some(error);
        self.event(EventKind::Persist, None, None, msg, now);
    }

    fn describe(&self, pop: &PopName) -> String {
        match self.overrides.get(pop) {
            Some(o) => o.phase.to_string(),
            None => "in service".to_string(),
        }
    }

    /// After a save: decide the next waiting admin command, or save what
    /// is in force if the file differs from it.
    fn next_save(&mut self, now: Now) {
        while self.saving.in_flight.is_none() {
            let Some((cmd, reply)) = self.saving.queue.pop_front() else {
                break;
            };
            self.start_admin(cmd, reply, now);
        }
        self.sync_if_dirty(now);
    }

    /// Saves the state in force if the file differs from it, nothing is in
    /// flight and no retry is waiting.
    pub(super) fn sync_if_dirty(&mut self, now: Now) {
        if self.saving.in_flight.is_some()
            || self.saving.retry_at.is_some_and(|t| t > now.mono)
            || !self.dirty()
        {
            return;
        }
        let Some(dir) = self.saving.dir.clone() else {
            return;
        };
        let content = self.overrides.clone();
        let id = self.save(dir, &content);
        self.saving.in_flight = Some(InFlight::Sync { id, content });
    }

    /// True if the file does not hold what is in force.
    fn dirty(&self) -> bool {
        self.saving.dir.is_some()
            && (self.saving.on_disk.is_none() || self.config.pops.keys().any(|p| self.differs(p)))
    }

    /// True if `pop`'s override in force is not what the file holds.
    fn differs(&self, pop: &PopName) -> bool {
        match &self.saving.on_disk {
            None => self.overrides.contains_key(pop),
            Some(disk) => self.overrides.get(pop).map(as_persisted) != disk.get(pop).cloned(),
        }
    }

    /// PoPs whose override in force is not on disk because saving failed,
    /// with the error (shown as `admin_unsaved`).
    pub(super) fn unsaved_pops(&self) -> BTreeMap<PopName, String> {
        let Some(e) = &self.saving.failure else {
            return BTreeMap::new();
        };
        self.config
            .pops
            .keys()
            .filter(|p| self.differs(p))
            .map(|p| (p.clone(), e.clone()))
            .collect()
    }

    fn state_file(&self) -> String {
        self.saving
            .dir
            .as_deref()
            .map(|d| super::persist::state_path(d).display().to_string())
            .unwrap_or_default()
    }

    /// The earliest drain phase end, auto-undrain, save retry or fleet
    /// deadline (a report going stale, a confirmation wait, the end of a
    /// fail-static window).
    pub(super) fn next_deadline(&self, now: Now) -> Option<Instant> {
        self.overrides
            .iter()
            .flat_map(|(pop, ov)| {
                // A drain held at its DNS step waits for the fleet view,
                // not for a time.
                let held = self.fleet.holds.contains_key(pop);
                [
                    ov.phase_ends.filter(|_| !held),
                    ov.until.map(|u| now.mono_at(u)),
                ]
            })
            .flatten()
            .chain(self.saving.deadline())
            .chain(self.fleet_deadline())
            .min()
    }

    /// Applies every timed step that is due at `now` (drain phases,
    /// auto-undrain, fleet deadlines) and retries a failed save.
    pub(super) fn on_timer(&mut self, now: Now) {
        let mut changes = Vec::new();
        let mut holds = Vec::new();
        for (pop, ov) in &self.overrides {
            let t = drain_timings(&self.config, pop);
            if ov.until.is_some_and(|u| u <= now.wall) {
                // Expiry undrains like an operator would: the graceful ramp
                // (routes first, DNS after the settle time).
                let ramp =
                    admin::start_undrain(ov, DrainMode::Graceful, "expiry".into(), now.mono, t);
                let message = match &ramp {
                    Some(_) => format!("pop {pop} drain expired: restoring"),
                    None => format!("pop {pop} drain expired: back in service"),
                };
                changes.push(Change {
                    pop: pop.clone(),
                    new: ramp,
                    kind: EventKind::Admin,
                    message,
                });
            } else if let Some((new, step)) = admin::advance(ov, now.mono, t) {
                if step.from == Some(Phase::DnsRemoved) {
                    if let Some(why) = self.drain_hold(pop) {
                        holds.push((pop.clone(), why));
                        continue;
                    }
                }
                let name = |p: Option<Phase>| p.map(Phase::as_str).unwrap_or("in_service");
                changes.push(Change {
                    pop: pop.clone(),
                    new,
                    kind: EventKind::DrainStep,
                    message: format!("pop {pop} {} -> {}", name(step.from), name(step.to)),
                });
            }
        }
        let mut held = false;
        for (pop, why) in holds {
            held |= self.hold_drain(pop, why, now);
        }
        if held {
            self.recompute(now);
        }
        let retry = self.saving.deadline().is_some_and(|t| t <= now.mono);
        if self.fleet_deadline().is_some_and(|t| t <= now.mono) {
            self.recompute(now);
        }
        if changes.is_empty() && !retry {
            return;
        }
        if retry {
            self.saving.retry_at = None;
        }
        let unsaved_before = self.unsaved_pops();
        for c in changes {
            match c.new {
                Some(ref ov) => self.overrides.insert(c.pop.clone(), ov.clone()),
                None => self.overrides.remove(&c.pop),
            };
            self.event(c.kind, Some(c.pop), None, c.message, now);
        }
        // Published first, saved after: the step is in force either way.
        if !self.pending.is_empty() || self.unsaved_pops() != unsaved_before {
            self.recompute(now);
        }
        self.sync_if_dirty(now);
    }
}
