//! Events: one record per state change, as shown in logs, `/v1/events`
//! (SSE `event:` = [`EventKind`]) and the `anypop_events_total` metric.
//!
//! This module owns the event types only; the core decides when an event
//! happens and stamps it with its injected wall-clock time.

use std::fmt;
use std::time::SystemTime;

use crate::model::{CheckName, PopName};

/// What an event is about. Its text form (`pop_state`, ...) is the SSE
/// event name and the `kind` label of the events metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventKind {
    /// A PoP changed state (or got its first health verdict).
    PopState,
    /// A check's verdict changed after hysteresis.
    Check,
    /// A drain or undrain moved to its next step on its own.
    DrainStep,
    /// An operator action (drain, undrain, disable, enable), a restored or
    /// expired override.
    Admin,
    /// A new configuration was taken.
    Reload,
    /// Saving the admin state file failed, or succeeded again after a
    /// failure.
    Persist,
    /// The fleet: a peer's report became fresh or stale, a PoP's owner and
    /// the outside disagree (or agree again), another node's PoP changed
    /// its admin state, a drain's DNS step was confirmed by the fleet.
    Fleet,
    /// A safety rule acted: fail static started or ended.
    Safety,
}

impl EventKind {
    /// Every kind, in the order above.
    pub const ALL: [EventKind; 8] = [
        EventKind::PopState,
        EventKind::Check,
        EventKind::DrainStep,
        EventKind::Admin,
        EventKind::Reload,
        EventKind::Persist,
        EventKind::Fleet,
        EventKind::Safety,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::PopState => "pop_state",
            EventKind::Check => "check",
            EventKind::DrainStep => "drain_step",
            EventKind::Admin => "admin",
            EventKind::Reload => "reload",
            EventKind::Persist => "persist",
            EventKind::Fleet => "fleet",
            EventKind::Safety => "safety",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One state change.
#[derive(Debug, Clone)]
pub struct Event {
    /// Increases by one per event.
    pub seq: u64,
    /// Wall-clock time the core applied the change (its injected clock).
    pub at: SystemTime,
    pub kind: EventKind,
    pub pop: Option<PopName>,
    pub check: Option<CheckName>,
    pub message: String,
}
