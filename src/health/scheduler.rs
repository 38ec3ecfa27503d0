//! Runs every check of every PoP and reports each result to the core.
//!
//! One task per check ([`run_check`]): wait, probe, apply hysteresis, send
//! the [`CheckReport`] at once (the core sees a verdict with no polling
//! delay). Probes run in their own task, bounded by the check's timeout,
//! so a hung probe never blocks anything but its own check.
//!
//! Timing. Probes start on a cadence measured start to start: `interval`
//! while the check's verdict is stable, `fast_interval` while it is
//! between states ([`CheckState::in_transition`]), each wait shortened by a
//! random amount in `[0, jitter)` so checks do not fire in lockstep. A probe
//! that takes longer than the wait is followed immediately by the next. The
//! first probe runs after a random delay in `[0, jitter)`. A `file` check
//! additionally probes as soon as inotify sees its file change.
//!
//! With the defaults (interval 1 s, fast 200 ms, fall 2, jitter 100 ms) a
//! target that starts refusing connections is declared down after the next
//! regular probe plus one fast re-probe: ~0.6 s median, at most 1.2 s.
//!
//! [`spawn_checks`] starts them all and returns [`Checks`], which stops them
//! when dropped; on a config reload the caller passes the old hysteresis
//! states so verdicts carry over.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rand::Rng;
use tokio::sync::{mpsc, Notify};
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tracing::Instrument;

use super::hysteresis::CheckState;
use super::{file, AbortOnDrop, ProbeOutcome, Target};
use crate::core::CheckReport;
use crate::model::{self, CheckName, Config, PopName, Probe};

/// The timing and hysteresis parameters of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub interval: Duration,
    pub fast_interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
    pub jitter: Duration,
}

impl Default for Timing {
    /// The `DEFAULT_*` values of [`crate::model`].
    fn default() -> Self {
        Timing {
            interval: model::DEFAULT_INTERVAL,
            fast_interval: model::DEFAULT_FAST_INTERVAL,
            timeout: model::DEFAULT_TIMEOUT,
            rise: model::DEFAULT_RISE,
            fall: model::DEFAULT_FALL,
            jitter: model::DEFAULT_JITTER,
        }
    }
}

impl From<&model::Check> for Timing {
    fn from(c: &model::Check) -> Self {
        Timing {
            interval: c.interval,
            fast_interval: c.fast_interval,
            timeout: c.timeout,
            rise: c.rise,
            fall: c.fall,
            jitter: c.jitter,
        }
    }
}

impl Timing {
    /// The wait before the next probe, measured from the start of the last
    /// one: fast while in transition, shortened by `jitter_cut` (clamped
    /// to the jitter).
    pub fn next_wait(&self, state: &CheckState, jitter_cut: Duration) -> Duration {
        let base = if state.in_transition() {
            self.fast_interval
        } else {
            self.interval
        };
        base.saturating_sub(jitter_cut.min(self.jitter))
    }
}

/// Which check of which PoP.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct CheckId {
    pub pop: PopName,
    pub check: CheckName,
}

/// The running checks. Dropping this (or calling [`Checks::stop`]) stops
/// every check task, its probe in flight and its inotify watch.
#[derive(Debug, Default)]
pub struct Checks {
    tasks: Vec<AbortHandle>,
    count: usize,
}

impl Checks {
    /// Stops every check now (same as dropping).
    pub fn stop(self) {}

    /// Number of checks running.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

impl Drop for Checks {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts one task per check of every PoP in `config` (all PoPs, not only
/// the local one: DNS steering needs them all). Each check starts from its
/// state in `initial` (e.g. the states before a config reload), else
/// `Unknown`. Reports go to `tx`; a check stops when `tx` is closed.
///
/// Must be called inside a tokio runtime.
pub fn spawn_checks(
    config: &Config,
    initial: &BTreeMap<(PopName, CheckName), CheckState>,
    tx: mpsc::Sender<CheckReport>,
) -> Checks {
    let mut checks = Checks::default();
    for pop in config.pops.values() {
        for check in &pop.checks {
            let id = CheckId {
                pop: pop.name.clone(),
                check: check.name.clone(),
            };
            let state = initial
                .get(&(id.pop.clone(), id.check.clone()))
                .copied()
                .unwrap_or_default();
            let timing = Timing::from(check);
            let target = Target::new(&check.probe);
            let span = tracing::info_span!("check", pop = %id.pop, check = %id.check);

            let wake = match &check.probe {
                Probe::File { path, .. } => {
                    let wake = Arc::new(Notify::new());
                    let watcher = tokio::spawn(
                        file::watch(
                            path.clone(),
                            wake.clone(),
                            timing.interval.max(Duration::from_secs(1)),
                        )
                        .instrument(span.clone()),
                    );
                    checks.tasks.push(watcher.abort_handle());
                    Some(wake)
                }
                _ => None,
            };
            let probe = move || {
                let target = target.clone();
                async move { target.run(timing.timeout).await }
            };
            let task = tokio::spawn(
                run_check(id, timing, state, probe, wake, tx.clone()).instrument(span),
            );
            checks.tasks.push(task.abort_handle());
            checks.count += 1;
        }
    }
    checks
}

/// A random duration in `[0, max)` (zero if `max` is zero).
fn random_below(max: Duration) -> Duration {
    let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
    if nanos == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos(rand::rng().random_range(0..nanos))
}

/// The loop of one check; generic over the probe so tests can drive it
/// with a fake target on paused time. `probe()` must bound itself (real
/// targets apply the check's timeout); each call runs in its own task.
/// `wake` (file checks) triggers an immediate probe. Returns when `tx` is
/// closed.
pub async fn run_check<P, F>(
    id: CheckId,
    timing: Timing,
    mut state: CheckState,
    probe: P,
    wake: Option<Arc<Notify>>,
    tx: mpsc::Sender<CheckReport>,
) where
    P: Fn() -> F,
    F: Future<Output = ProbeOutcome> + Send + 'static,
{
    let mut next = Instant::now() + random_below(timing.jitter);
    loop {
        match &wake {
            Some(w) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(next) => {}
                    _ = w.notified() => {}
                }
            }
            None => tokio::time::sleep_until(next).await,
        }
        let started = Instant::now();
        let outcome = match AbortOnDrop(tokio::spawn(probe())).await {
            Ok(o) => o,
            Err(e) => ProbeOutcome {
                ok: false,
                detail: format!("probe task failed: {e}"),
                took: started.elapsed(),
                at: SystemTime::now(),
            },
        };
        let before = state.verdict;
        state = state.step(outcome.ok, timing.rise, timing.fall);
        if state.verdict != before {
            tracing::debug!(
                from = ?before, to = ?state.verdict, detail = %outcome.detail,
                "check verdict changed"
            );
        } else {
            tracing::trace!(ok = outcome.ok, detail = %outcome.detail, "probe");
        }
        let report = CheckReport {
            pop: id.pop.clone(),
            check: id.check.clone(),
            state,
            outcome,
        };
        if tx.send(report).await.is_err() {
            return;
        }
        next = started + timing.next_wait(&state, random_below(timing.jitter));
    }
}
