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
    /// Stops every check now (dropping does the same). Afterwards this is
    /// empty; replace it with the result of a new [`spawn_checks`].
    pub fn stop(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
        self.count = 0;
    }

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
        self.stop();
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
    let mut watched = Vec::new();
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
                    watched.push((path.clone(), wake.clone()));
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
    if !watched.is_empty() {
        // One inotify instance for all file checks (instances are a scarce
        // per-user resource: 128 by default).
        let watcher = tokio::spawn(file::watch_all(watched, FILE_WATCH_RETRY));
        checks.tasks.push(watcher.abort_handle());
    }
    checks
}

/// How often a directory that cannot be watched (yet) is retried.
const FILE_WATCH_RETRY: Duration = Duration::from_secs(5);

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;

    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use crate::health::hysteresis::Verdict;
    use crate::health::{timed, Probed};
    use crate::model::Name;

    fn id() -> CheckId {
        CheckId {
            pop: Name::parse("fra1").unwrap(),
            check: Name::parse("web").unwrap(),
        }
    }

    fn outcome(ok: bool) -> ProbeOutcome {
        ProbeOutcome {
            ok,
            detail: if ok { "ok" } else { "connect refused" }.into(),
            took: Duration::ZERO,
            at: SystemTime::now(),
        }
    }

    fn established(verdict: Verdict, t: &Timing) -> CheckState {
        CheckState {
            verdict,
            successes: if verdict == Verdict::Up { t.rise } else { 0 },
            failures: if verdict == Verdict::Down { t.fall } else { 0 },
        }
    }

    fn median(mut v: Vec<Duration>) -> Duration {
        v.sort();
        v[v.len() / 2]
    }

    /// Runs one check that is up until `die_at`, then fails as `probe_after`
    /// says, and returns how long after `die_at` the verdict became Down.
    async fn time_to_down<F>(timing: Timing, die_at: Instant, dead_probe: F) -> Duration
    where
        F: Fn() -> std::pin::Pin<Box<dyn Future<Output = Probed> + Send>> + Send + Sync + 'static,
    {
        let dead_probe = Arc::new(dead_probe);
        let probe = move || {
            let dead_probe = dead_probe.clone();
            async move {
                timed(timing.timeout, async move {
                    if Instant::now() < die_at {
                        Ok("ok".to_string())
                    } else {
                        dead_probe().await
                    }
                })
                .await
            }
        };
        let (tx, mut rx) = mpsc::channel(8);
        let task = AbortOnDrop(tokio::spawn(run_check(
            id(),
            timing,
            established(Verdict::Up, &timing),
            probe,
            None,
            tx,
        )));
        loop {
            let r = rx.recv().await.expect("check task ended");
            let now = Instant::now();
            if now < die_at {
                assert!(r.outcome.ok, "failure before death: {r:?}");
                assert_eq!(r.state.verdict, Verdict::Up);
            }
            if r.state.verdict == Verdict::Down {
                assert!(now >= die_at, "down before the target died");
                drop(task);
                return now - die_at;
            }
        }
    }

    /// `time_to_down` for 200 death instants drawn from 1 s to 6 s by an
    /// RNG seeded with `seed`.
    async fn times_to_down<F>(timing: Timing, seed: u64, dead_probe: F) -> Vec<Duration>
    where
        F: Fn() -> std::pin::Pin<Box<dyn Future<Output = Probed> + Send>>
            + Clone
            + Send
            + Sync
            + 'static,
    {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut out = Vec::new();
        for _ in 0..200 {
            let die_at =
                Instant::now() + Duration::from_micros(rng.random_range(1_000_000..6_000_000));
            out.push(time_to_down(timing, die_at, dead_probe.clone()).await);
        }
        out
    }

    /// Issue acceptance: with the default timings, a target that dies at a
    /// random instant is declared down in at most 1.0 s (median of 200).
    #[tokio::test(start_paused = true)]
    async fn default_timings_detect_a_dead_target_within_one_second() {
        let timing = Timing::default();
        let refused = times_to_down(timing, 0x5eed, || {
            Box::pin(async { Err("connect refused".to_string()) })
        })
        .await;
        let max = *refused.iter().max().unwrap();
        let med = median(refused);
        println!("dead target (connect refused): median time to down {med:?}, max {max:?}");
        assert!(med <= Duration::from_secs(1), "median {med:?}");
        // The next regular probe plus (fall - 1) fast re-probes, at most.
        assert!(max <= timing.interval + timing.fast_interval * (timing.fall - 1));
    }

    /// A black-holed target (probes hang until the timeout) is slower to
    /// detect; it stays bounded by interval + fall × timeout.
    #[tokio::test(start_paused = true)]
    async fn black_holed_target_detection_is_bounded() {
        let timing = Timing::default();
        let hung = times_to_down(timing, 0xb1ac, || Box::pin(std::future::pending())).await;
        let max = *hung.iter().max().unwrap();
        let med = median(hung);
        println!(
            "dead target (black hole, probes time out): median time to down {med:?}, max {max:?}"
        );
        let gap = timing.fast_interval.max(timing.timeout);
        assert!(
            max <= timing.interval + timing.timeout + gap * (timing.fall - 1),
            "max {max:?}"
        );
    }

    /// One lost probe (or one lucky success) never changes an established
    /// verdict, wherever it happens.
    #[tokio::test(start_paused = true)]
    async fn a_single_odd_probe_never_changes_state() {
        let timing = Timing::default();
        let mut rng = StdRng::seed_from_u64(0x1055);
        for trial in 0..200 {
            let verdict = if trial % 2 == 0 {
                Verdict::Up
            } else {
                Verdict::Down
            };
            let healthy = verdict == Verdict::Up;
            let odd_at = Instant::now() + Duration::from_micros(rng.random_range(0..5_000_000));
            let spent = Arc::new(AtomicBool::new(false));
            let probe = {
                let spent = spent.clone();
                move || {
                    let spent = spent.clone();
                    async move {
                        let odd = Instant::now() >= odd_at && !spent.swap(true, Ordering::SeqCst);
                        outcome(healthy != odd)
                    }
                }
            };
            let (tx, mut rx) = mpsc::channel(8);
            let _task = AbortOnDrop(tokio::spawn(run_check(
                id(),
                timing,
                established(verdict, &timing),
                probe,
                None,
                tx,
            )));
            let end = odd_at + Duration::from_secs(5);
            let mut odd_seen = 0;
            while Instant::now() < end {
                let r = rx.recv().await.unwrap();
                assert_eq!(
                    r.state.verdict, verdict,
                    "trial {trial}: state changed: {r:?}"
                );
                if r.outcome.ok != healthy {
                    odd_seen += 1;
                    assert!(r.state.in_transition());
                }
            }
            assert_eq!(
                odd_seen, 1,
                "trial {trial}: the odd probe must have run once"
            );
        }
    }

    /// Probes are spaced by the interval minus jitter while stable, by the
    /// fast interval while in transition, and not in lockstep.
    #[tokio::test(start_paused = true)]
    async fn cadence_follows_interval_fast_interval_and_jitter() {
        let timing = Timing::default();
        let t0 = Instant::now();
        let fail_from = t0 + Duration::from_secs(10);
        let times = Arc::new(Mutex::new(Vec::new()));
        let probe = {
            let times = times.clone();
            move || {
                times.lock().unwrap().push(Instant::now());
                async move { outcome(Instant::now() < fail_from) }
            }
        };
        let (tx, mut rx) = mpsc::channel(8);
        let _task = AbortOnDrop(tokio::spawn(run_check(
            id(),
            timing,
            CheckState::default(),
            probe,
            None,
            tx,
        )));
        let mut reports = Vec::new();
        while Instant::now() < t0 + Duration::from_secs(15) {
            reports.push(rx.recv().await.unwrap());
        }
        let times = times.lock().unwrap().clone();
        assert!(
            times[0] - t0 < timing.jitter,
            "first probe after {:?}",
            times[0] - t0
        );
        let mut distinct = std::collections::BTreeSet::new();
        for (i, w) in times.windows(2).enumerate() {
            let gap = w[1] - w[0];
            let expected = timing.next_wait(&reports[i].state, Duration::ZERO);
            assert!(
                gap <= expected && gap + timing.jitter > expected,
                "probe {i}: gap {gap:?}, expected {expected:?} minus jitter (state {:?})",
                reports[i].state
            );
            distinct.insert(gap);
        }
        // Unknown → Up uses fast re-probes, the stable phase the interval.
        assert_eq!(reports[2].state.verdict, Verdict::Up);
        assert!(times[3] - times[2] > timing.fast_interval);
        assert!(reports.iter().any(|r| r.state.verdict == Verdict::Down));
        assert!(
            distinct.len() > times.len() / 2,
            "jitter: gaps {distinct:?}"
        );
    }

    /// A wake-up (inotify) probes at once, without waiting for the interval.
    #[tokio::test(start_paused = true)]
    async fn wake_probes_immediately() {
        let timing = Timing {
            interval: Duration::from_secs(60),
            ..Timing::default()
        };
        let wake = Arc::new(Notify::new());
        let (tx, mut rx) = mpsc::channel(8);
        let _task = AbortOnDrop(tokio::spawn(run_check(
            id(),
            timing,
            established(Verdict::Up, &timing),
            || async { outcome(true) },
            Some(wake.clone()),
            tx,
        )));
        rx.recv().await.unwrap(); // the first probe
        tokio::time::sleep(Duration::from_secs(5)).await;
        let before = Instant::now();
        wake.notify_one();
        rx.recv().await.unwrap();
        assert_eq!(Instant::now(), before);
    }

    fn check(name: &str, probe: Probe, interval: Duration) -> model::Check {
        model::Check {
            name: Name::parse(name).unwrap(),
            probe,
            interval,
            fast_interval: Duration::from_millis(100),
            timeout: Duration::from_millis(500),
            rise: 2,
            fall: 2,
            jitter: Duration::from_millis(20),
        }
    }

    fn pop(name: &str, checks: Vec<model::Check>) -> model::Pop {
        model::Pop {
            prefixes: vec!["203.0.113.0/24".parse().unwrap()],
            checks,
            drain_settle: Duration::from_secs(1),
            ..crate::testutil::pop(name)
        }
    }

    fn config(pops: Vec<model::Pop>) -> Config {
        let node = crate::testutil::node(
            "test",
            Some(pops[0].name.as_str()),
            std::net::Ipv4Addr::new(192, 0, 2, 1),
            64512,
        );
        crate::testutil::config(node, pops)
    }

    /// Real probes through `spawn_checks`: every PoP's checks run (not only
    /// the local PoP's), states carry over from `initial`, a file check
    /// reacts to its file via inotify long before its 60 s interval, and
    /// dropping `Checks` stops everything.
    #[tokio::test]
    async fn spawn_checks_runs_all_pops_and_stops_on_drop() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let dir = tempfile::tempdir().unwrap();
        let flag = dir.path().join("in-service");
        let cfg = config(vec![
            pop(
                "ams1",
                vec![check(
                    "flag",
                    Probe::File {
                        path: flag.clone(),
                        healthy_if_present: true,
                    },
                    Duration::from_secs(60),
                )],
            ),
            pop(
                "fra1",
                vec![check(
                    "web",
                    Probe::Tcp {
                        target: model::HostPort {
                            host: "127.0.0.1".into(),
                            port,
                        },
                    },
                    Duration::from_millis(200),
                )],
            ),
        ]);
        let mut initial = BTreeMap::new();
        let up = CheckState {
            verdict: crate::health::hysteresis::Verdict::Up,
            successes: 5,
            failures: 0,
        };
        initial.insert(
            (Name::parse("fra1").unwrap(), Name::parse("web").unwrap()),
            up,
        );
        let (tx, mut rx) = mpsc::channel(64);
        let checks = spawn_checks(&cfg, &initial, tx);
        assert_eq!(checks.len(), 2);

        let wait = Duration::from_secs(10);
        async fn next(
            rx: &mut mpsc::Receiver<CheckReport>,
            pop: &str,
        ) -> Result<CheckReport, tokio::time::error::Elapsed> {
            tokio::time::timeout(Duration::from_secs(10), async {
                loop {
                    let r = rx.recv().await.expect("channel open");
                    if r.pop.as_str() == pop {
                        return r;
                    }
                }
            })
            .await
        }

        // The tcp check continues from the state it was given.
        let r = next(&mut rx, "fra1").await.unwrap();
        assert_eq!(r.check.as_str(), "web");
        assert!(r.outcome.ok, "{r:?}");
        assert_eq!(r.state.verdict, crate::health::hysteresis::Verdict::Up);
        assert_eq!(r.state.successes, 6);

        // The file check's first probe: absent, failing.
        let r = next(&mut rx, "ams1").await.unwrap();
        assert!(!r.outcome.ok, "{r:?}");
        // Wait until the watch is armed (its arming wake-up probes once
        // more), then create the flag: only inotify can explain a report
        // before the 60 s interval.
        tokio::time::sleep(Duration::from_millis(300)).await;
        while let Ok(r) = rx.try_recv() {
            assert!(r.pop.as_str() == "fra1" || !r.outcome.ok, "{r:?}");
        }
        let created = std::time::Instant::now();
        std::fs::write(&flag, b"").unwrap();
        let r = next(&mut rx, "ams1")
            .await
            .expect("inotify-triggered probe");
        assert!(r.outcome.ok, "{r:?}");
        println!("file check reacted after {:?}", created.elapsed());
        // Rise 2: the fast re-probe confirms it.
        let r = next(&mut rx, "ams1").await.unwrap();
        assert_eq!(r.state.verdict, crate::health::hysteresis::Verdict::Up);

        let mut checks = checks;
        checks.stop();
        assert!(checks.is_empty());
        // All senders are gone once every task is aborted.
        let closed = tokio::time::timeout(wait, async { while rx.recv().await.is_some() {} }).await;
        assert!(closed.is_ok(), "check tasks still running after drop");
    }
}
