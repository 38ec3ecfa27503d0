//! Runs every configured check and reports each raw result to the core.
//!
//! What to probe comes from the snapshot: [`supervise`] watches
//! `snapshot.config` and keeps one task per check of every PoP (all PoPs,
//! not only the local one: DNS steering needs them all). When a reload
//! publishes a new config it reconciles: checks that are unchanged keep
//! running, changed ones restart, removed ones stop, new ones start.
//!
//! When to probe also comes from the snapshot: one task per check
//! ([`run_check`]) waits, probes, sends the outcome to the core as an
//! [`Input::Probe`] at once (no polling delay), waits until the snapshot
//! includes it ([`CheckStatus::seq`]) and asks it whether a change is
//! pending ([`CheckStatus::change_pending`]). The rise/fall hysteresis is
//! the core's alone; this module never decides a verdict. Probes run in
//! their own task, bounded by the check's timeout, so a hung probe never
//! blocks anything but its own check.
//!
//! Timing. Probes start on a cadence measured start to start: `interval`
//! while the check's verdict is stable, `fast_interval` while a change is
//! pending, each wait shortened by a random amount in `[0, jitter)` so
//! checks do not fire in lockstep. A probe that takes longer than the wait
//! is followed immediately by the next. The first probe runs after a random
//! delay in `[0, jitter)`. Event-driven checks additionally probe the
//! moment their event source wakes them ([`Target::watch`]): inotify for a
//! `file` check and a `process` check's pid file, the pidfd of a `process`
//! check's process, D-Bus signals of a `systemd` unit, rtnetlink
//! notifications for `interface` and `address` checks. The interval keeps
//! running underneath, so a missed event cannot hide a failure.
//!
//! With the defaults (interval 1 s, fast 200 ms, fall 2, jitter 100 ms) a
//! target that starts refusing connections is declared down after the next
//! regular probe plus one fast re-probe: ~0.6 s median, at most 1.2 s.
//!
//! [`CheckStatus::seq`]: crate::core::CheckStatus::seq
//! [`CheckStatus::change_pending`]: crate::core::CheckStatus::change_pending

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rand::Rng;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tracing::{debug, info, Instrument};

use super::{file, AbortOnDrop, ProbeOutcome, Target};
use crate::core::{CoreHandle, Input, ProbeReport};
use crate::model::{self, CheckName, Config, PidSource, PopName, Probe};

/// The timing of one check's probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub interval: Duration,
    pub fast_interval: Duration,
    pub timeout: Duration,
    pub jitter: Duration,
}

impl Default for Timing {
    /// The `DEFAULT_*` values of [`crate::model`].
    fn default() -> Self {
        Timing {
            interval: model::DEFAULT_INTERVAL,
            fast_interval: model::DEFAULT_FAST_INTERVAL,
            timeout: model::DEFAULT_TIMEOUT,
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
            jitter: c.jitter,
        }
    }
}

impl Timing {
    /// The wait before the next probe, measured from the start of the last
    /// one: fast while a change is pending, shortened by `jitter_cut`
    /// (clamped to the jitter).
    pub fn next_wait(&self, change_pending: bool, jitter_cut: Duration) -> Duration {
        let base = if change_pending {
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

/// The next [`ProbeReport::seq`]: increasing across every check of the
/// process, so a restarted check task never repeats an older number.
pub fn next_seq() -> u64 {
    static SEQ: AtomicU64 = AtomicU64::new(1);
    SEQ.fetch_add(1, Ordering::Relaxed)
}

/// The running checks. Dropping this (or calling [`Checks::stop`]) stops
/// the supervisor, every check task, its probe in flight and the inotify
/// watch.
pub struct Checks {
    task: Option<AbortOnDrop<()>>,
    running: watch::Receiver<BTreeSet<CheckId>>,
}

impl Checks {
    /// Stops every check now (dropping does the same).
    pub fn stop(&mut self) {
        self.task = None;
    }

    /// The checks running now (updated after each reconcile).
    pub fn running(&self) -> watch::Receiver<BTreeSet<CheckId>> {
        self.running.clone()
    }
}

/// Starts the supervisor: it runs the checks of `snapshot.config` and
/// follows every config the core publishes. Must be called inside a tokio
/// runtime.
pub fn supervise(core: CoreHandle) -> Checks {
    let (tx, running) = watch::channel(BTreeSet::new());
    let task = tokio::spawn(Supervisor::default().run(core, tx));
    Checks {
        task: Some(AbortOnDrop(task)),
        running,
    }
}

/// One running check task.
struct Running {
    spec: model::Check,
    wake: Option<Arc<Notify>>,
    _task: AbortOnDrop<()>,
    _events: Option<AbortOnDrop<()>>,
}

/// The file checks' shared inotify watch.
struct FileWatch {
    files: Vec<(PathBuf, Arc<Notify>)>,
    _task: AbortOnDrop<()>,
}

#[derive(Default)]
struct Supervisor {
    config: Option<Arc<Config>>,
    tasks: BTreeMap<CheckId, Running>,
    watch: Option<FileWatch>,
}

impl Supervisor {
    async fn run(mut self, core: CoreHandle, running: watch::Sender<BTreeSet<CheckId>>) {
        let mut snaps = core.snapshots.clone();
        loop {
            let config = snaps.borrow_and_update().config.clone();
            if !self
                .config
                .as_ref()
                .is_some_and(|c| Arc::ptr_eq(c, &config))
            {
                self.reconcile(&config, &core);
                self.config = Some(config);
                running.send_replace(self.tasks.keys().cloned().collect());
            }
            if snaps.changed().await.is_err() {
                return;
            }
        }
    }

    /// Makes the running checks those of `config` that run on this node
    /// ([`model::Config::runs_here`]: in a fleet, `file` and `exec` checks only on
    /// the owner's node).
    fn reconcile(&mut self, config: &Config, core: &CoreHandle) {
        let wanted: BTreeMap<CheckId, &model::Check> = config
            .pops
            .values()
            .flat_map(|pop| {
                pop.checks
                    .iter()
                    .filter(|c| config.runs_here(&pop.name, c))
                    .map(|c| {
                        let id = CheckId {
                            pop: pop.name.clone(),
                            check: c.name.clone(),
                        };
                        (id, c)
                    })
            })
            .collect();
        let before = self.tasks.len();
        // Dropping a task's handle stops it.
        self.tasks
            .retain(|id, r| wanted.get(id).is_some_and(|c| **c == r.spec));
        let kept = self.tasks.len();
        for (id, check) in wanted {
            if let std::collections::btree_map::Entry::Vacant(e) = self.tasks.entry(id) {
                let running = start(e.key().clone(), check, core.clone());
                e.insert(running);
            }
        }
        if self.config.is_some() {
            info!(
                stopped = before - kept,
                started = self.tasks.len() - kept,
                unchanged = kept,
                "health checks follow the new config"
            );
        }
        self.refresh_watch();
    }

    /// (Re)starts the inotify watch if the set of watched files (file
    /// checks, pid files of process checks) changed.
    fn refresh_watch(&mut self) {
        let files: Vec<(PathBuf, Arc<Notify>)> = self
            .tasks
            .values()
            .filter_map(|r| match (&r.spec.probe, &r.wake) {
                (Probe::File { path, .. }, Some(w)) => Some((path.clone(), w.clone())),
                (
                    Probe::Process {
                        source: PidSource::PidFile(path),
                    },
                    Some(w),
                ) => Some((path.clone(), w.clone())),
                _ => None,
            })
            .collect();
        let same = self.watch.as_ref().is_some_and(|w| {
            w.files.len() == files.len()
                && w.files
                    .iter()
                    .zip(&files)
                    .all(|(a, b)| a.0 == b.0 && Arc::ptr_eq(&a.1, &b.1))
        });
        if same {
            return;
        }
        self.watch = None;
        if !files.is_empty() {
            // One inotify instance for all file checks (instances are a
            // scarce per-user resource: 128 by default).
            let task = tokio::spawn(file::watch_all(files.clone(), FILE_WATCH_RETRY));
            self.watch = Some(FileWatch {
                files,
                _task: AbortOnDrop(task),
            });
        }
    }
}

/// Starts the task of one check.
fn start(id: CheckId, check: &model::Check, core: CoreHandle) -> Running {
    debug!(pop = %id.pop, check = %id.check, "starting check");
    let timing = Timing::from(check);
    let target = Target::new(&check.probe);
    let span = tracing::info_span!("check", pop = %id.pop, check = %id.check);
    let wake = match &check.probe {
        Probe::File { .. } => Some(Arc::new(Notify::new())),
        p if p.is_event_driven() => Some(Arc::new(Notify::new())),
        _ => None,
    };
    // The check's own event source (pidfd, D-Bus subscription, netlink
    // listener), stopped with the check.
    let events = wake
        .clone()
        .and_then(|w| target.watch(w))
        .map(|f| AbortOnDrop(tokio::spawn(f.instrument(span.clone()))));
    let probe = move || {
        let target = target.clone();
        async move { target.run(timing.timeout).await }
    };
    let task = tokio::spawn(run_check(id, timing, probe, wake.clone(), core).instrument(span));
    Running {
        spec: check.clone(),
        wake,
        _task: AbortOnDrop(task),
        _events: events,
    }
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
/// `wake` (event-driven checks) triggers an immediate probe. Returns when the core
/// is gone.
pub async fn run_check<P, F>(
    id: CheckId,
    timing: Timing,
    probe: P,
    wake: Option<Arc<Notify>>,
    core: CoreHandle,
) where
    P: Fn() -> F,
    F: Future<Output = ProbeOutcome> + Send + 'static,
{
    let mut snapshots = core.snapshots.clone();
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
        tracing::trace!(ok = outcome.ok, detail = %outcome.detail, "probe");
        let seq = next_seq();
        let report = ProbeReport {
            pop: id.pop.clone(),
            check: id.check.clone(),
            seq,
            outcome,
        };
        if core.inputs.send(Input::Probe(report)).await.is_err() {
            return;
        }
        // The core applies the result at once; waiting for it is bounded
        // all the same (a check removed by a reload is never applied and
        // is about to be stopped).
        let pending = tokio::time::timeout(
            timing.interval,
            snapshots.wait_for(|s| {
                s.check(id.pop.as_str(), id.check.as_str())
                    .is_some_and(|c| c.seq >= seq)
            }),
        )
        .await
        .ok()
        .and_then(Result::ok)
        .and_then(|s| {
            s.check(id.pop.as_str(), id.check.as_str())
                .map(|c| c.change_pending())
        })
        .unwrap_or(false);
        next = started + timing.next_wait(pending, random_below(timing.jitter));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Mutex;

    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use crate::core::hysteresis::Verdict;
    use crate::core::{CheckStatus, Core, SystemClock, TokioClock};
    use crate::health::{timed, Probed};
    use crate::model::{Name, DEFAULT_FALL, DEFAULT_RISE};

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

    fn median(mut v: Vec<Duration>) -> Duration {
        v.sort();
        v[v.len() / 2]
    }

    fn check(name: &str, probe: Probe, timing: Timing, rise: u32, fall: u32) -> model::Check {
        model::Check {
            name: Name::parse(name).unwrap(),
            probe,
            interval: timing.interval,
            fast_interval: timing.fast_interval,
            timeout: timing.timeout,
            rise,
            fall,
            jitter: timing.jitter,
            vantage: model::Vantage::Both,
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

    /// A real core (on tokio's clock) whose config has the one check
    /// `fra1/web` with `timing` and the default rise/fall.
    fn core_with(timing: Timing) -> CoreHandle {
        let dummy = Probe::Tcp {
            target: model::HostPort {
                host: "127.0.0.1".into(),
                port: 9,
            },
        };
        let web = check("web", dummy, timing, DEFAULT_RISE, DEFAULT_FALL);
        let cfg = config(vec![pop("fra1", vec![web])]);
        let clock = TokioClock::starting_at(SystemTime::UNIX_EPOCH);
        Core::spawn(Arc::new(cfg), BTreeMap::new(), clock).0
    }

    fn status(core: &CoreHandle, id: &CheckId) -> CheckStatus {
        core.snapshots
            .borrow()
            .check(id.pop.as_str(), id.check.as_str())
            .cloned()
            .expect("check configured")
    }

    /// Reports results to the core until `id` has `verdict` with a full
    /// streak (as after `rise` successes or `fall` failures).
    async fn establish(core: &CoreHandle, id: &CheckId, verdict: Verdict) {
        let ok = verdict == Verdict::Up;
        let n = if ok { DEFAULT_RISE } else { DEFAULT_FALL };
        for _ in 0..n {
            let report = ProbeReport {
                pop: id.pop.clone(),
                check: id.check.clone(),
                seq: next_seq(),
                outcome: outcome(ok),
            };
            core.inputs.send(Input::Probe(report)).await.unwrap();
        }
        let mut snaps = core.snapshots.clone();
        snaps
            .wait_for(|s| {
                s.check(id.pop.as_str(), id.check.as_str())
                    .is_some_and(|c| c.state.verdict == verdict && !c.change_pending())
            })
            .await
            .unwrap();
    }

    /// Runs one check, established up, whose target is up until `die_at`
    /// and then fails as `dead_probe` says; returns how long after `die_at`
    /// the core published the check as down.
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
        let core = core_with(timing);
        establish(&core, &id(), Verdict::Up).await;
        let mut snaps = core.snapshots.clone();
        let task = AbortOnDrop(tokio::spawn(run_check(
            id(),
            timing,
            probe,
            None,
            core.clone(),
        )));
        loop {
            snaps.changed().await.expect("core running");
            let now = Instant::now();
            let c = status(&core, &id());
            if now < die_at {
                assert!(
                    c.last.as_ref().is_some_and(|o| o.ok),
                    "failure before death: {c:?}"
                );
                assert_eq!(c.state.verdict, Verdict::Up);
            }
            if c.state.verdict == Verdict::Down {
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
    /// Scheduler and core together: the verdict is the core's.
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
        assert!(max <= timing.interval + timing.fast_interval * (DEFAULT_FALL - 1));
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
            max <= timing.interval + timing.timeout + gap * (DEFAULT_FALL - 1),
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
            let core = core_with(timing);
            establish(&core, &id(), verdict).await;
            let mut snaps = core.snapshots.clone();
            let mut seen = status(&core, &id()).seq;
            let _task = AbortOnDrop(tokio::spawn(run_check(
                id(),
                timing,
                probe,
                None,
                core.clone(),
            )));
            let end = odd_at + Duration::from_secs(5);
            let mut odd_seen = 0;
            while Instant::now() < end {
                snaps.changed().await.unwrap();
                let c = status(&core, &id());
                assert_eq!(
                    c.state.verdict, verdict,
                    "trial {trial}: state changed: {c:?}"
                );
                if c.seq != seen {
                    seen = c.seq;
                    if c.last.as_ref().is_some_and(|o| o.ok != healthy) {
                        odd_seen += 1;
                        assert!(c.change_pending());
                    }
                }
            }
            assert_eq!(
                odd_seen, 1,
                "trial {trial}: the odd probe must have run once"
            );
        }
    }

    /// Probes are spaced by the interval minus jitter while stable, by the
    /// fast interval while a change is pending (as the snapshot says), and
    /// not in lockstep.
    #[tokio::test(start_paused = true)]
    async fn cadence_follows_interval_fast_interval_and_jitter() {
        let timing = Timing::default();
        // The core starts first: its start-up may let paused time advance
        // (blocking work in flight), which is not the scheduler's doing.
        let core = core_with(timing);
        tokio::task::yield_now().await;
        let t0 = Instant::now();
        let fail_from = t0 + Duration::from_secs(10);
        // At each probe start: the time and the check as the snapshot has
        // it then, i.e. after the previous probe's result.
        let starts: Arc<Mutex<Vec<(Instant, CheckStatus)>>> = Arc::new(Mutex::new(Vec::new()));
        let probe = {
            let starts = starts.clone();
            let core = core.clone();
            move || {
                starts
                    .lock()
                    .unwrap()
                    .push((Instant::now(), status(&core, &id())));
                async move { outcome(Instant::now() < fail_from) }
            }
        };
        let _task = AbortOnDrop(tokio::spawn(run_check(
            id(),
            timing,
            probe,
            None,
            core.clone(),
        )));
        tokio::time::sleep_until(t0 + Duration::from_secs(15)).await;
        let starts = starts.lock().unwrap().clone();
        assert!(
            starts[0].0 - t0 <= timing.jitter,
            "first probe after {:?}",
            starts[0].0 - t0
        );
        let mut distinct = std::collections::BTreeSet::new();
        for (i, w) in starts.windows(2).enumerate() {
            let gap = w[1].0 - w[0].0;
            let after = &w[1].1;
            let expected = timing.next_wait(after.change_pending(), Duration::ZERO);
            assert!(
                gap <= expected && gap + timing.jitter > expected,
                "probe {i}: gap {gap:?}, expected {expected:?} minus jitter (state {:?})",
                after.state
            );
            distinct.insert(gap);
        }
        // Unknown → Up uses fast re-probes, the stable phase the interval.
        assert_eq!(starts[3].1.state.verdict, Verdict::Up);
        assert!(starts[1].0 - starts[0].0 <= timing.fast_interval);
        assert!(starts[4].0 - starts[3].0 > timing.fast_interval);
        assert!(starts.iter().any(|(_, c)| c.state.verdict == Verdict::Down));
        assert!(
            distinct.len() > starts.len() / 2,
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
        let core = core_with(timing);
        establish(&core, &id(), Verdict::Up).await;
        let wake = Arc::new(Notify::new());
        let mut snaps = core.snapshots.clone();
        let _task = AbortOnDrop(tokio::spawn(run_check(
            id(),
            timing,
            || async { outcome(true) },
            Some(wake.clone()),
            core.clone(),
        )));
        let first = status(&core, &id()).seq;
        snaps
            .wait_for(|s| s.check("fra1", "web").is_some_and(|c| c.seq > first))
            .await
            .unwrap(); // the first probe
        tokio::time::sleep(Duration::from_secs(5)).await;
        let second = status(&core, &id()).seq;
        let before = Instant::now();
        wake.notify_one();
        snaps
            .wait_for(|s| s.check("fra1", "web").is_some_and(|c| c.seq > second))
            .await
            .unwrap();
        assert_eq!(Instant::now(), before);
    }

    /// Waits (10 s at most) until `f` holds for the published state.
    async fn until(core: &CoreHandle, what: &str, f: impl Fn(&crate::core::Snapshot) -> bool) {
        let mut snaps = core.snapshots.clone();
        tokio::time::timeout(Duration::from_secs(10), snaps.wait_for(|s| f(s)))
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
            .unwrap();
    }

    /// Real probes through `supervise`: every PoP's checks run (not only
    /// the local PoP's), a check continues from the state the core has, a
    /// file check reacts to its file via inotify long before its 60 s
    /// interval, a reloaded config is followed (unchanged checks keep
    /// running, changed ones restart, removed ones stop, new ones start),
    /// and stopping stops everything.
    #[tokio::test]
    async fn supervise_follows_the_snapshot_config() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let dir = tempfile::tempdir().unwrap();
        let flag = dir.path().join("in-service");
        let fast = Timing {
            interval: Duration::from_millis(200),
            fast_interval: Duration::from_millis(100),
            timeout: Duration::from_millis(500),
            jitter: Duration::from_millis(20),
        };
        let slow = Timing {
            interval: Duration::from_secs(60),
            ..fast
        };
        let file_check = check(
            "flag",
            Probe::File {
                path: flag.clone(),
                healthy_if_present: true,
            },
            slow,
            2,
            2,
        );
        let tcp = Probe::Tcp {
            target: model::HostPort {
                host: "127.0.0.1".into(),
                port,
            },
        };
        let web = check("web", tcp.clone(), fast, 2, 2);
        let cfg = config(vec![
            pop("ams1", vec![file_check]),
            pop("fra1", vec![web.clone()]),
        ]);
        let (core, _) = Core::spawn(Arc::new(cfg.clone()), BTreeMap::new(), SystemClock);
        // fra1/web is already up in the core (5 successes).
        for _ in 0..5 {
            let report = ProbeReport {
                pop: id().pop,
                check: id().check,
                seq: next_seq(),
                outcome: outcome(true),
            };
            core.inputs.send(Input::Probe(report)).await.unwrap();
        }
        until(&core, "fra1/web up", |s| {
            s.check("fra1", "web")
                .is_some_and(|c| c.state.successes == 5)
        })
        .await;
        let seeded = status(&core, &id()).seq;

        let mut checks = supervise(core.clone());
        let ids = |pairs: &[(&str, &str)]| -> BTreeSet<CheckId> {
            pairs
                .iter()
                .map(|(p, c)| CheckId {
                    pop: Name::parse(p).unwrap(),
                    check: Name::parse(c).unwrap(),
                })
                .collect()
        };
        let mut running = checks.running();
        running
            .wait_for(|r| *r == ids(&[("ams1", "flag"), ("fra1", "web")]))
            .await
            .unwrap();

        // The tcp check continues from the core's state.
        until(&core, "a probe of fra1/web", |s| {
            s.check("fra1", "web").is_some_and(|c| c.seq > seeded)
        })
        .await;
        let c = status(&core, &id());
        assert!(c.last.as_ref().is_some_and(|o| o.ok), "{c:?}");
        assert_eq!(c.state.verdict, Verdict::Up);
        assert!(c.state.successes >= 6, "{c:?}");

        // The file check's first probe: absent, failing.
        until(&core, "a probe of ams1/flag", |s| {
            s.check("ams1", "flag").is_some_and(|c| c.last.is_some())
        })
        .await;
        assert!(
            !status(&core, &ids(&[("ams1", "flag")]).pop_first().unwrap())
                .last
                .unwrap()
                .ok
        );
        // Wait until the watch is armed (its arming wake-up probes once
        // more), then create the flag: only inotify can explain a success
        // before the 60 s interval.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let created = std::time::Instant::now();
        std::fs::write(&flag, b"").unwrap();
        until(&core, "the inotify-triggered probe", |s| {
            s.check("ams1", "flag")
                .is_some_and(|c| c.last.as_ref().is_some_and(|o| o.ok))
        })
        .await;
        println!("file check reacted after {:?}", created.elapsed());
        // Rise 2: the fast re-probe confirms it.
        until(&core, "ams1/flag up", |s| {
            s.check("ams1", "flag")
                .is_some_and(|c| c.state.verdict == Verdict::Up)
        })
        .await;

        // A reload: ams1 goes, fra1/web changes (restarted), fra1/extra is
        // new. The core keeps fra1/web's state across the restart.
        let mut next = cfg.clone();
        next.pops.remove("ams1");
        let fra1 = next.pops.get_mut("fra1").unwrap();
        fra1.checks[0].interval = Duration::from_millis(300);
        fra1.checks.push(check("extra", tcp, fast, 2, 2));
        core.reload(Arc::new(next)).await.unwrap();
        running
            .wait_for(|r| *r == ids(&[("fra1", "extra"), ("fra1", "web")]))
            .await
            .unwrap();
        until(&core, "fra1/extra up", |s| {
            s.check("fra1", "extra")
                .is_some_and(|c| c.state.verdict == Verdict::Up)
        })
        .await;
        assert_eq!(status(&core, &id()).state.verdict, Verdict::Up);

        // Stopped: no probe is reported any more.
        checks.stop();
        let after_stop = status(&core, &id()).seq;
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(status(&core, &id()).seq, after_stop, "a check still runs");
    }
}
