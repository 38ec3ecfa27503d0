//! The immutable, versioned view of all decided state that the core
//! publishes through a `watch` channel. BGP, DNS and the API only ever read
//! snapshots; they never see the core's mutable state.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ipnet::IpNet;
use tokio::time::Instant;

use super::admin::Phase;
use super::hysteresis::CheckState;
use crate::model::{CheckName, Config, PopName, RouteAttrs};

/// One published state. Cheap to clone (`Arc` inside the watch channel).
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Increases by one with every published change.
    pub version: u64,
    /// Wall-clock time of publication (for display only).
    pub published: SystemTime,
    pub config: Arc<Config>,
    pub pops: BTreeMap<PopName, PopStatus>,
    /// The routes BGP must advertise to every peer, by prefix. A prefix that
    /// is absent must be withdrawn.
    /// Shared between snapshots while unchanged: consumers may skip work
    /// when `Arc::ptr_eq` says it is the same set.
    pub announcements: Arc<BTreeMap<IpNet, Announcement>>,
    /// With a fleet: this node's report, the fleet view and the peers.
    pub fleet: Option<Arc<super::fleet::FleetSnapshot>>,
}

impl Snapshot {
    /// True if `pop` may receive DNS traffic (up and not being drained).
    pub fn pop_serves_dns(&self, pop: &str) -> bool {
        self.pops.get(pop).is_some_and(|p| p.serves_dns)
    }

    /// The state of one check, if it is configured.
    pub fn check(&self, pop: &str, check: &str) -> Option<&CheckStatus> {
        self.pops.get(pop).and_then(|p| p.checks.get(check))
    }
}

/// Operational state of a PoP, the result of health and admin state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PopState {
    /// Healthy and in service.
    Up,
    /// Health checks say it is not healthy.
    Down,
    /// An operator is taking it out of service (or has).
    Draining,
    /// An operator disabled it: no traffic, no announcements.
    Disabled,
}

impl std::fmt::Display for PopState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PopState::Up => "up",
            PopState::Down => "down",
            PopState::Draining => "draining",
            PopState::Disabled => "disabled",
        })
    }
}

#[derive(Debug, Clone)]
pub struct PopStatus {
    pub state: PopState,
    /// Health alone (checks combined), ignoring admin state. `None` until
    /// enough probes have run to decide.
    pub healthy: Option<bool>,
    /// Whether DNS may send clients to this PoP.
    pub serves_dns: bool,
    /// Why the PoP is in its state, in words.
    pub reason: String,
    pub since: SystemTime,
    /// Monotonic time of the last state change (dynamic DNS TTLs).
    pub changed_at: Instant,
    pub checks: BTreeMap<CheckName, CheckStatus>,
    /// Admin override, if any (drain, disable): this node's for the PoPs
    /// it decides, the owner's for a PoP another fleet node owns.
    pub admin: Option<AdminStatus>,
    /// Set while this PoP's admin state in force (`admin`) is not what the
    /// state file holds because saving it failed: the error. Absent from
    /// the JSON otherwise.
    pub admin_unsaved: Option<String>,
    /// While the fleet's fail-static rule holds this PoP: why. Absent
    /// from the JSON otherwise.
    pub fail_static: Option<String>,
}

/// A check as the core last decided it.
#[derive(Debug, Clone)]
pub struct CheckStatus {
    /// Hysteresis state after the last probe result.
    pub state: CheckState,
    pub rise: u32,
    pub fall: u32,
    pub last: Option<ProbeOutcome>,
    /// Sequence number of the last probe report applied
    /// ([`super::ProbeReport::seq`]; 0: none yet). The scheduler waits for
    /// its report to show up here before it picks the next wait.
    pub seq: u64,
}

impl CheckStatus {
    /// A change of verdict is pending (or no verdict yet): probe at the
    /// fast interval.
    pub fn change_pending(&self) -> bool {
        self.state.in_transition()
    }
}

/// The result of one probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeOutcome {
    pub ok: bool,
    /// What happened, in words (`connect refused`, `status 503`).
    pub detail: String,
    pub took: Duration,
    pub at: SystemTime,
}

/// Operator overrides visible in the snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminStatus {
    pub kind: AdminKind,
    pub reason: String,
    pub who: String,
    /// Current step of the drain choreography (`dns_removed`, `shutdown`,
    /// `drained`, `restoring`) or `disabled`.
    pub step: Phase,
    /// Wall-clock time the drain or disable was asked for (in fleet
    /// reports; not part of the `/v1/pops` format).
    pub since: SystemTime,
    /// Wall-clock time when the next step or the auto-undrain happens,
    /// whichever comes first.
    pub next_at: Option<SystemTime>,
    /// Wall-clock time of the auto-undrain (`duration` of the drain).
    pub until: Option<SystemTime>,
    /// Taken out past the last-PoP guard (`force`).
    pub force: bool,
    /// Why a graceful drain holds at the end of its DNS step (the fleet's
    /// last-PoP guard), while it does.
    pub held: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminKind {
    Drain,
    Disable,
}

/// How a prefix is announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AnnounceMode {
    Normal,
    Degraded,
    GracefulShutdown,
}

impl AnnounceMode {
    /// The mode in words (`normal`, `degraded`, `graceful_shutdown`).
    pub fn as_str(self) -> &'static str {
        match self {
            AnnounceMode::Normal => "normal",
            AnnounceMode::Degraded => "degraded",
            AnnounceMode::GracefulShutdown => "graceful_shutdown",
        }
    }
}

/// A desired route: the prefix's PoP, mode and exact attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    pub pop: PopName,
    pub mode: AnnounceMode,
    pub attrs: RouteAttrs,
}
