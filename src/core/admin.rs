//! Operator overrides and the drain choreography, as a pure state machine.
//!
//! A graceful drain of a PoP walks these phases, each one an event:
//! 1. `dns_removed`: DNS stops sending clients to the PoP; prefixes stay
//!    announced normally while resolvers' caches expire (`dns_wait`).
//! 2. `shutdown`: prefixes move to the PoP's `on_drain` action's attributes
//!    (graceful shutdown or degraded) so routers prefer other PoPs
//!    (`settle`).
//! 3. `drained`: the final `on_drain` action holds (withdrawn, or still
//!    announced as graceful shutdown / degraded if that is the action).
//!
//! An undrain ramps back: `restoring` announces normally again while DNS
//! still avoids the PoP (`settle`), then the override is removed. An
//! immediate drain or undrain skips the waits. No clocks are read here: the
//! caller passes `now` and asks for the next deadline.

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::model::PopName;

/// The longest timed drain: the API refuses a longer `duration`, and a
/// loaded state file's auto-undrain is at most this long after the
/// drain's start ([`clamp_expiry`]).
pub const MAX_DRAIN: Duration = Duration::from_secs(365 * 86_400);

/// How a drain (or undrain) proceeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DrainMode {
    /// DNS first, wait, BGP graceful shutdown, wait, final action.
    #[default]
    Graceful,
    /// Straight to the final state.
    Immediate,
}

/// An operator request, sent to the core.
#[derive(Debug, Clone, PartialEq)]
pub enum AdminCommand {
    Drain {
        pop: PopName,
        reason: String,
        who: String,
        /// Auto-undrain after this long.
        duration: Option<Duration>,
        mode: DrainMode,
        /// Allow draining the last announced PoP of a prefix.
        force: bool,
    },
    Undrain {
        pop: PopName,
        who: String,
        mode: DrainMode,
    },
    Disable {
        pop: PopName,
        reason: String,
        who: String,
        force: bool,
    },
    Enable {
        pop: PopName,
        who: String,
    },
}

impl AdminCommand {
    pub fn pop(&self) -> &PopName {
        match self {
            AdminCommand::Drain { pop, .. }
            | AdminCommand::Undrain { pop, .. }
            | AdminCommand::Disable { pop, .. }
            | AdminCommand::Enable { pop, .. } => pop,
        }
    }
}

/// Why an admin command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    #[error("unknown PoP {0:?}")]
    UnknownPop(String),
    #[error("PoP {0} is the last PoP serving traffic; use force=true to take it out anyway")]
    LastPop(String),
    #[error("PoP {0} is not drained or disabled")]
    NotOverridden(String),
    #[error("admin state could not be saved, change not applied: {0}")]
    Persist(String),
    #[error("the controller is shutting down")]
    Unavailable,
}

/// Phase of an override.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Drain step 1: out of DNS, still announced normally.
    DnsRemoved,
    /// Drain step 2: announced with the drain attributes.
    Shutdown,
    /// Drain complete: the `on_drain` action holds.
    Drained,
    /// Undrain ramp: announced normally, DNS still avoids the PoP.
    Restoring,
    /// Disabled: no DNS, prefixes withdrawn.
    Disabled,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::DnsRemoved => "dns_removed",
            Phase::Shutdown => "shutdown",
            Phase::Drained => "drained",
            Phase::Restoring => "restoring",
            Phase::Disabled => "disabled",
        }
    }
}

/// An operator override of one PoP, as held by the core and persisted.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    pub phase: Phase,
    pub reason: String,
    pub who: String,
    /// Wall-clock start (persisted, shown).
    pub since: SystemTime,
    /// Wall-clock auto-undrain time, if any (persisted).
    pub until: Option<SystemTime>,
    /// Monotonic time the current phase ends (not persisted: recomputed).
    pub phase_ends: Option<Instant>,
    /// Taken out past the last-PoP guard (`force`; persisted): in a fleet,
    /// a graceful drain then never holds at the end of its DNS step.
    pub force: bool,
}

/// Waits of a graceful drain, resolved from the PoP's config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainTimings {
    pub dns_wait: Duration,
    pub settle: Duration,
    /// In a fleet, the longest wait for the other nodes to confirm the DNS
    /// step before `dns_wait` starts ([`confirm_dns`]); zero otherwise.
    pub ack: Duration,
}

/// A phase change to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub from: Option<Phase>,
    /// `None`: the override ended (PoP back in service).
    pub to: Option<Phase>,
}

/// Starts a drain: the new override.
pub fn start_drain(
    mode: DrainMode,
    reason: String,
    who: String,
    since: SystemTime,
    duration: Option<Duration>,
    now: Instant,
    t: DrainTimings,
) -> Override {
    let (phase, phase_ends) = match mode {
        DrainMode::Graceful => (Phase::DnsRemoved, Some(now + t.ack + t.dns_wait)),
        DrainMode::Immediate => (Phase::Drained, None),
    };
    Override {
        phase,
        reason,
        who,
        since,
        until: duration.and_then(|d| since.checked_add(d.min(MAX_DRAIN))),
        phase_ends,
        force: false,
    }
}

/// A drain asked for a PoP that already has an override (`fresh` is what
/// [`start_drain`] made of the call). A drain never steps back toward
/// service: a PoP already as far as or further than the new drain would
/// start (out of DNS, in graceful shutdown, drained, disabled) keeps its
/// phase and the wait of its current step, so its prefixes are not
/// announced normally again; it takes the call's reason, who and
/// auto-undrain time, and a disabled PoP becomes drained (it is already
/// withdrawn). An immediate drain of a graceful one in progress completes
/// it at once; a drain during an undrain (`restoring`) starts afresh.
pub fn redrain(current: &Override, fresh: Override) -> Override {
    fn rank(p: Phase) -> u8 {
        match p {
            Phase::Restoring => 0,
            Phase::DnsRemoved => 1,
            Phase::Shutdown => 2,
            Phase::Drained | Phase::Disabled => 3,
        }
    }
    let force = fresh.force || current.force;
    if current.phase == Phase::Restoring || rank(fresh.phase) > rank(current.phase) {
        return Override { force, ..fresh };
    }
    let (phase, phase_ends) = match current.phase {
        Phase::Disabled => (Phase::Drained, None),
        p => (p, current.phase_ends),
    };
    // The auto-undrain stays within what a drain may last from its start.
    let until = match (fresh.until, current.since.checked_add(MAX_DRAIN)) {
        (Some(u), Some(limit)) => Some(u.min(limit)),
        (u, _) => u,
    };
    Override {
        phase,
        phase_ends,
        since: current.since,
        until,
        force,
        ..fresh
    }
}

/// Starts an undrain of an existing override. Returns `None` when the
/// override ends at once (immediate, or the PoP was only out of DNS).
pub fn start_undrain(
    current: &Override,
    mode: DrainMode,
    who: String,
    now: Instant,
    t: DrainTimings,
) -> Option<Override> {
    match (mode, current.phase) {
        (DrainMode::Immediate, _) | (_, Phase::DnsRemoved) | (_, Phase::Restoring) => None,
        _ => Some(Override {
            phase: Phase::Restoring,
            reason: "undrain".into(),
            who,
            since: current.since,
            until: None,
            phase_ends: Some(now + t.settle),
            force: false,
        }),
    }
}

/// Advances an override whose phase has ended at `now`. Returns the new
/// override (or `None` if it ended) and the step taken, or nothing if no
/// deadline has passed. Auto-undrain (`until`) is the caller's business
/// since it is wall-clock.
pub fn advance(ov: &Override, now: Instant, t: DrainTimings) -> Option<(Option<Override>, Step)> {
    let ends = ov.phase_ends?;
    if now < ends {
        return None;
    }
    let next = match ov.phase {
        Phase::DnsRemoved => Some((Phase::Shutdown, Some(now + t.settle))),
        Phase::Shutdown => Some((Phase::Drained, None)),
        Phase::Restoring => None,
        Phase::Drained | Phase::Disabled => return None,
    };
    let step = Step {
        from: Some(ov.phase),
        to: next.map(|(p, _)| p),
    };
    let new = next.map(|(phase, phase_ends)| Override {
        phase,
        phase_ends,
        ..ov.clone()
    });
    Some((new, step))
}

/// Makes a loaded override's auto-undrain one a drain could have: at most
/// [`MAX_DRAIN`] after its start (`since`). Only a hand-edited file has a
/// later one (a year-300000 expiry). The bound depends on the file alone,
/// not on the clock at load (which may still read 1970 on a host that
/// has not synced yet). Returns whether it was changed.
pub fn clamp_expiry(ov: &mut Override) -> bool {
    let Some(limit) = ov.since.checked_add(MAX_DRAIN) else {
        return false;
    };
    match ov.until {
        Some(u) if u > limit => {
            ov.until = Some(limit);
            true
        }
        _ => false,
    }
}

/// Every node of the fleet has confirmed the DNS step of a drain at `now`
/// (or the wait for them is over): the DNS wait runs from now, so the
/// `dns_removed` phase ends `dns_wait` after the last node stopped
/// answering with the PoP (never later than first planned).
pub fn confirm_dns(ov: &Override, now: Instant, t: DrainTimings) -> Override {
    let mut ov = ov.clone();
    if ov.phase == Phase::DnsRemoved {
        let end = now + t.dns_wait;
        ov.phase_ends = Some(ov.phase_ends.map_or(end, |e| e.min(end)));
    }
    ov
}

/// After a restart, recompute monotonic deadlines of a loaded override: a
/// drain that was in progress resumes its current phase from the start.
pub fn resume(mut ov: Override, now: Instant, t: DrainTimings) -> Override {
    ov.phase_ends = match ov.phase {
        Phase::DnsRemoved => Some(now + t.ack + t.dns_wait),
        Phase::Shutdown | Phase::Restoring => Some(now + t.settle),
        Phase::Drained | Phase::Disabled => None,
    };
    ov
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: DrainTimings = DrainTimings {
        dns_wait: Duration::from_secs(30),
        settle: Duration::from_secs(10),
        ack: Duration::ZERO,
    };

    #[tokio::test(start_paused = true)]
    async fn graceful_drain_walks_every_phase_in_order() {
        let start = Instant::now();
        let mut ov = start_drain(
            DrainMode::Graceful,
            "maint".into(),
            "ops".into(),
            SystemTime::UNIX_EPOCH,
            None,
            start,
            T,
        );
        assert_eq!(ov.phase, Phase::DnsRemoved);
        assert!(advance(&ov, start + Duration::from_secs(29), T).is_none());
        tokio::time::advance(Duration::from_secs(30)).await;
        let (next, step) = advance(&ov, Instant::now(), T).expect("dns wait over");
        assert_eq!(step.to, Some(Phase::Shutdown));
        ov = next.expect("still draining");
        tokio::time::advance(Duration::from_secs(10)).await;
        let (next, step) = advance(&ov, Instant::now(), T).expect("settle over");
        assert_eq!(
            step,
            Step {
                from: Some(Phase::Shutdown),
                to: Some(Phase::Drained)
            }
        );
        ov = next.expect("drained");
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert!(
            advance(&ov, Instant::now(), T).is_none(),
            "drained is final"
        );
    }

    #[test]
    fn redrain_keeps_the_furthest_phase_and_takes_the_new_call() {
        let now = Instant::now();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let later = t0 + Duration::from_secs(600);
        let call = |mode| {
            start_drain(
                mode,
                "new".into(),
                "ops".into(),
                later,
                Some(Duration::from_secs(60)),
                now,
                T,
            )
        };
        let cur = |phase, phase_ends| Override {
            phase,
            reason: "old".into(),
            who: "x".into(),
            since: t0,
            until: None,
            phase_ends,
            force: true,
        };
        let ends = Some(now + Duration::from_secs(5));
        for (phase, phase_ends, mode, want, want_ends) in [
            (
                Phase::DnsRemoved,
                ends,
                DrainMode::Graceful,
                Phase::DnsRemoved,
                ends,
            ),
            (
                Phase::Shutdown,
                ends,
                DrainMode::Graceful,
                Phase::Shutdown,
                ends,
            ),
            (
                Phase::Drained,
                None,
                DrainMode::Graceful,
                Phase::Drained,
                None,
            ),
            (
                Phase::Disabled,
                None,
                DrainMode::Graceful,
                Phase::Drained,
                None,
            ),
            (
                Phase::Drained,
                None,
                DrainMode::Immediate,
                Phase::Drained,
                None,
            ),
        ] {
            let ov = redrain(&cur(phase, phase_ends), call(mode));
            assert_eq!(
                (ov.phase, ov.phase_ends),
                (want, want_ends),
                "{phase} {mode:?}"
            );
            assert_eq!((ov.reason.as_str(), ov.who.as_str()), ("new", "ops"));
            assert_eq!(ov.since, t0, "still drained since the first call");
            assert_eq!(ov.until, Some(later + Duration::from_secs(60)));
            assert!(ov.force, "a forced drain stays forced");
        }
        // Further along than the current phase: the new call wins.
        for phase in [Phase::DnsRemoved, Phase::Shutdown] {
            let ov = redrain(&cur(phase, ends), call(DrainMode::Immediate));
            assert_eq!(
                (ov.phase, ov.phase_ends, ov.since),
                (Phase::Drained, None, later)
            );
        }
        // During an undrain the drain starts afresh.
        let ov = redrain(&cur(Phase::Restoring, ends), call(DrainMode::Graceful));
        assert_eq!(ov.phase, Phase::DnsRemoved);
        assert_eq!(ov.phase_ends, Some(now + T.ack + T.dns_wait));
        // The auto-undrain stays within a drain's longest time from its start.
        let mut far = call(DrainMode::Graceful);
        far.until = Some(t0 + MAX_DRAIN + Duration::from_secs(86_400));
        let ov = redrain(&cur(Phase::Drained, None), far);
        assert_eq!(ov.until, Some(t0 + MAX_DRAIN));
    }

    #[test]
    fn immediate_drain_and_undrain_skip_waits() {
        let now = Instant::now();
        let ov = start_drain(
            DrainMode::Immediate,
            "x".into(),
            "y".into(),
            SystemTime::UNIX_EPOCH,
            None,
            now,
            T,
        );
        assert_eq!(ov.phase, Phase::Drained);
        assert!(start_undrain(&ov, DrainMode::Immediate, "y".into(), now, T).is_none());
        let ramp = start_undrain(&ov, DrainMode::Graceful, "y".into(), now, T).expect("ramp");
        assert_eq!(ramp.phase, Phase::Restoring);
        let (after, step) = advance(&ramp, now + T.settle, T).expect("ramp over");
        assert!(after.is_none());
        assert_eq!(step.to, None);
    }

    /// In a fleet the DNS step first waits for the other nodes (at most
    /// `ack`); their confirmation starts the DNS wait.
    #[test]
    fn dns_wait_starts_when_the_fleet_confirms() {
        let t = DrainTimings {
            ack: Duration::from_secs(10),
            ..T
        };
        let now = Instant::now();
        let ov = start_drain(
            DrainMode::Graceful,
            "x".into(),
            "y".into(),
            SystemTime::UNIX_EPOCH,
            None,
            now,
            t,
        );
        assert_eq!(ov.phase_ends, Some(now + Duration::from_secs(40)));
        let confirmed = confirm_dns(&ov, now + Duration::from_secs(2), t);
        assert_eq!(confirmed.phase_ends, Some(now + Duration::from_secs(32)));
        // Confirmation after the wait ran out never delays the drain.
        let late = confirm_dns(&ov, now + Duration::from_secs(15), t);
        assert_eq!(late.phase_ends, ov.phase_ends);
        // Other phases are left alone.
        let shut = Override {
            phase: Phase::Shutdown,
            ..ov.clone()
        };
        assert_eq!(confirm_dns(&shut, now, t), shut);
        assert_eq!(
            resume(ov, now, t).phase_ends,
            Some(now + Duration::from_secs(40))
        );
    }

    #[test]
    fn resume_restarts_the_current_phase() {
        let now = Instant::now();
        let ov = start_drain(
            DrainMode::Graceful,
            "x".into(),
            "y".into(),
            SystemTime::UNIX_EPOCH,
            Some(Duration::from_secs(60)),
            now,
            T,
        );
        assert_eq!(
            ov.until,
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(60))
        );
        // As loaded from the state file: without the monotonic deadline.
        let back = Override {
            phase_ends: None,
            ..ov
        };
        let later = now + Duration::from_secs(5);
        let resumed = resume(back, later, T);
        assert_eq!(resumed.phase_ends, Some(later + T.dns_wait));
    }
}
