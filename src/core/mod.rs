//! The single-writer controller.
//!
//! One task ([`Core::run`]) owns all mutable state: check states, PoP states,
//! admin overrides (drains, disables). Everything else talks to it through
//! [`Input`] messages and reads the latest [`Snapshot`] from a `watch`
//! channel. Decisions are pure functions in [`decide`]; this module only
//! applies inputs, calls them and publishes the result.

pub mod admin;
pub mod decide;
pub mod snapshot;

pub use snapshot::*;

use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;
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

/// One state change, as shown in logs, `/v1/events` and metrics.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Increases by one per event.
    pub seq: u64,
    #[serde(serialize_with = "snapshot::ser_unix_secs")]
    pub at: SystemTime,
    /// Event kind: `pop_state`, `check`, `drain_step`, `admin`, `reload`.
    pub kind: &'static str,
    pub pop: Option<PopName>,
    pub check: Option<CheckName>,
    pub message: String,
}

/// What other tasks hold to talk to the core.
#[derive(Clone)]
pub struct CoreHandle {
    pub inputs: mpsc::Sender<Input>,
    pub snapshots: watch::Receiver<Arc<Snapshot>>,
}
