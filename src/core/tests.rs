//! Core tests: the controller driven through its inputs, on paused time.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::clock::TokioClock;

use super::admin::{AdminCommand, AdminError, DrainMode, Phase};
use super::*;
use crate::model::*;

fn name<K>(s: &str) -> Name<K> {
    Name::parse(s).expect("valid name")
}

fn pop(n: &str, prefixes: &[&str]) -> Pop {
    let mut p = crate::testutil::pop(n);
    p.prefixes = prefixes
        .iter()
        .map(|p| p.parse().expect("prefix"))
        .collect();
    p.checks = vec![Check {
        name: name("edge"),
        probe: Probe::Tcp {
            target: HostPort {
                host: "127.0.0.1".into(),
                port: 9,
            },
        },
        interval: DEFAULT_INTERVAL,
        fast_interval: DEFAULT_FAST_INTERVAL,
        timeout: DEFAULT_TIMEOUT,
        rise: 3,
        fall: 2,
        jitter: DEFAULT_JITTER,
        vantage: Vantage::Both,
    }];
    p.announce.normal.med = Some(10);
    p.drain_dns_wait = Some(Duration::from_secs(30));
    p.drain_settle = Duration::from_secs(10);
    p
}

pub(crate) fn test_config(state_dir: Option<std::path::PathBuf>) -> Config {
    crate::testutil::config(
        Node {
            state_dir,
            ..crate::testutil::node("fra1-a", Some("fra1"), Ipv4Addr::new(192, 0, 2, 1), 65001)
        },
        [
            pop("fra1", &["203.0.113.0/24", "2001:db8:1::/48"]),
            pop("ams1", &["203.0.113.0/24", "2001:db8:1::/48"]),
        ],
    )
}

/// A raw probe result of `pop`'s `check`.
fn probe(pop: &str, check: &str, ok: bool, detail: &str) -> Input {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    Input::Probe(ProbeReport {
        pop: name(pop),
        check: name(check),
        seq: SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        outcome: ProbeOutcome {
            ok,
            detail: detail.into(),
            took: Duration::from_millis(1),
            at: SystemTime::UNIX_EPOCH,
        },
    })
}

/// A core driven by hand on paused time: inputs applied at once, effects
/// (saves) carried out synchronously with their result fed back.
struct Driven {
    core: Core,
    handle: CoreHandle,
    io: CoreIo,
    clock: TokioClock,
}

impl Driven {
    fn new(config: Config, overrides: BTreeMap<PopName, Override>) -> Driven {
        let clock =
            TokioClock::starting_at(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        let (core, handle, io) = Core::new(Arc::new(config), overrides, clock.now());
        Driven {
            core,
            handle,
            io,
            clock,
        }
    }

    fn now(&self) -> Now {
        self.clock.now()
    }

    /// Applies `input`, then every effect it caused (and theirs).
    fn input(&mut self, input: Input) {
        let now = self.now();
        self.core.handle(input, now);
        self.run_effects();
    }

    fn run_effects(&mut self) {
        while let Ok(e) = self.io.effects.try_recv() {
            match e {
                Effect::SaveAdminState { id, dir, overrides } => {
                    let result = persist::save(&dir, &overrides).map_err(|e| (&e).into());
                    let now = self.now();
                    self.core.handle(Input::Saved { id, result }, now);
                }
            }
        }
    }

    /// Applies the timed steps due now.
    fn tick(&mut self) {
        let now = self.now();
        self.core.tick(now);
        self.run_effects();
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        self.core.snapshot()
    }
}

/// A core saving into `dir` with fra1 and ams1 up.
fn both_up(dir: &std::path::Path) -> Driven {
    let mut core = Driven::new(test_config(Some(dir.to_path_buf())), BTreeMap::new());
    feed(&mut core, "fra1", true, 3);
    feed(&mut core, "ams1", true, 3);
    core
}

/// Feeds `n` identical results of `pop`'s `edge` check through the core
/// (rise 3, fall 2).
fn feed(core: &mut Driven, pop: &str, ok: bool, n: usize) {
    let detail = if ok { "connected" } else { "connect refused" };
    for _ in 0..n {
        core.input(probe(pop, "edge", ok, detail));
    }
}

fn admin(core: &mut Driven, cmd: AdminCommand) -> Result<u64, AdminError> {
    let (tx, mut rx) = oneshot::channel();
    core.input(Input::Admin { cmd, reply: tx });
    rx.try_recv().expect("core replies once the save is done")
}

fn drain(pop: &str, mode: DrainMode, force: bool) -> AdminCommand {
    AdminCommand::Drain {
        pop: name(pop),
        reason: "maintenance".into(),
        who: "test".into(),
        duration: None,
        mode,
        force,
    }
}

/// A drain with an auto-undrain after `secs` and its own reason.
fn timed_drain(pop: &str, reason: &str, secs: u64, mode: DrainMode, force: bool) -> AdminCommand {
    AdminCommand::Drain {
        pop: name(pop),
        reason: reason.into(),
        who: "test".into(),
        duration: Some(Duration::from_secs(secs)),
        mode,
        force,
    }
}

#[tokio::test(start_paused = true)]
async fn health_drives_state_and_announcements() {
    let mut core = Driven::new(test_config(None), BTreeMap::new());
    assert!(
        core.snapshot().announcements.is_empty(),
        "nothing before health is known"
    );
    feed(&mut core, "fra1", true, 2);
    assert_eq!(core.snapshot().pops["fra1"].state, PopState::Down);
    assert!(core.snapshot().announcements.is_empty());
    feed(&mut core, "fra1", true, 1);
    let snap = core.handle.snapshots.borrow().clone();
    assert_eq!(snap.pops["fra1"].state, PopState::Up);
    assert!(snap.pops["fra1"].serves_dns);
    assert_eq!(snap.announcements.len(), 2);
    let a = &snap.announcements[&"203.0.113.0/24".parse().expect("prefix")];
    assert_eq!((a.mode, a.attrs.med), (AnnounceMode::Normal, Some(10)));
    // One lost probe changes nothing, not even the announcement set's Arc.
    feed(&mut core, "fra1", false, 1);
    let after = core.snapshot();
    assert_eq!(after.pops["fra1"].state, PopState::Up);
    assert!(Arc::ptr_eq(&after.announcements, &snap.announcements));
    feed(&mut core, "fra1", false, 1);
    let down = core.snapshot();
    assert_eq!(down.pops["fra1"].state, PopState::Down);
    assert!(down.announcements.is_empty());
    assert!(
        down.pops["fra1"]
            .reason
            .contains("check edge failed 2/2: connect refused"),
        "{}",
        down.pops["fra1"].reason
    );
    assert!(down.version > snap.version);
    // Only the local PoP is announced.
    feed(&mut core, "ams1", true, 3);
    assert!(core.snapshot().announcements.is_empty());
}

#[tokio::test(start_paused = true)]
async fn graceful_drain_choreography_and_guard() {
    let mut core = Driven::new(test_config(None), BTreeMap::new());
    feed(&mut core, "fra1", true, 3);
    // ams1 is down: fra1 is the last PoP for 203.0.113.0/24.
    feed(&mut core, "ams1", false, 2);
    assert_eq!(
        admin(&mut core, drain("fra1", DrainMode::Graceful, false)),
        Err(AdminError::LastPop("fra1".into()))
    );
    assert_eq!(core.snapshot().pops["fra1"].state, PopState::Up);
    assert_eq!(
        admin(&mut core, drain("nope", DrainMode::Graceful, false)),
        Err(AdminError::UnknownPop("nope".into()))
    );
    feed(&mut core, "ams1", true, 3);
    admin(&mut core, drain("fra1", DrainMode::Graceful, false)).expect("drain accepted");
    let s = core.snapshot();
    assert_eq!(s.pops["fra1"].state, PopState::Draining);
    assert!(!s.pops["fra1"].serves_dns, "step 1: out of DNS");
    assert!(
        s.announcements
            .values()
            .all(|a| a.mode == AnnounceMode::Normal),
        "step 1: BGP untouched"
    );
    assert_eq!(
        s.pops["fra1"].admin.as_ref().map(|a| a.step),
        Some(Phase::DnsRemoved)
    );
    // Step 2 after the DNS wait (30 s).
    let deadline = core.core.deadline(core.now()).expect("deadline");
    assert_eq!(deadline - Instant::now(), Duration::from_secs(30));
    tokio::time::advance(Duration::from_secs(30)).await;
    core.tick();
    let s = core.snapshot();
    assert!(s
        .announcements
        .values()
        .all(|a| a.mode == AnnounceMode::GracefulShutdown));
    assert!(s
        .announcements
        .values()
        .all(|a| a.attrs.communities.contains(&GRACEFUL_SHUTDOWN)));
    // Step 3 after settle (10 s): withdrawn.
    tokio::time::advance(Duration::from_secs(10)).await;
    core.tick();
    let s = core.snapshot();
    assert!(s.announcements.is_empty());
    assert_eq!(
        s.pops["fra1"].admin.as_ref().map(|a| a.step),
        Some(Phase::Drained)
    );
    // Undrain (graceful): announced again, DNS after the ramp.
    admin(
        &mut core,
        AdminCommand::Undrain {
            pop: name("fra1"),
            who: "test".into(),
            mode: DrainMode::Graceful,
        },
    )
    .expect("undrain");
    let s = core.snapshot();
    assert_eq!(s.announcements.len(), 2);
    assert!(!s.pops["fra1"].serves_dns);
    tokio::time::advance(Duration::from_secs(10)).await;
    core.tick();
    let s = core.snapshot();
    assert_eq!(s.pops["fra1"].state, PopState::Up);
    assert!(s.pops["fra1"].serves_dns);
    // Every step was an event, in order.
    let (tx, mut rx) = oneshot::channel();
    core.input(Input::Subscribe { reply: tx });
    let (events, _live) = rx.try_recv().expect("subscribe reply");
    let steps: Vec<&str> = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::DrainStep | EventKind::Admin))
        .map(|e| e.message.as_str())
        .collect();
    assert_eq!(
        steps,
        vec![
            "pop fra1 dns_removed by test: maintenance",
            "pop fra1 dns_removed -> shutdown",
            "pop fra1 shutdown -> drained",
            "pop fra1 restoring by test: undrain",
            "pop fra1 restoring -> in_service",
        ]
    );
}

/// A drain asked again (a script that drains idempotently, a longer
/// duration, a call completed on every owner) never announces a drained
/// or disabled PoP's prefixes again, and a drain in progress keeps its
/// step and its wait.
#[tokio::test(start_paused = true)]
async fn a_drain_asked_again_never_steps_back_toward_service() {
    let mut core = Driven::new(test_config(None), BTreeMap::new());
    feed(&mut core, "fra1", true, 3);
    feed(&mut core, "ams1", true, 3);
    admin(&mut core, drain("fra1", DrainMode::Graceful, false)).expect("drain");
    tokio::time::advance(Duration::from_secs(20)).await;
    core.tick();
    // Asked again 20 s into the 30 s DNS wait: the wait is not restarted.
    admin(&mut core, drain("fra1", DrainMode::Graceful, false)).expect("again");
    let deadline = core.core.deadline(core.now()).expect("deadline");
    assert_eq!(deadline - Instant::now(), Duration::from_secs(10));
    tokio::time::advance(Duration::from_secs(10)).await;
    core.tick();
    let s = core.snapshot();
    assert!(s
        .announcements
        .values()
        .all(|a| a.mode == AnnounceMode::GracefulShutdown));
    admin(&mut core, drain("fra1", DrainMode::Graceful, false)).expect("again");
    assert!(core
        .snapshot()
        .announcements
        .values()
        .all(|a| a.mode == AnnounceMode::GracefulShutdown));
    tokio::time::advance(Duration::from_secs(10)).await;
    core.tick();
    assert!(core.snapshot().announcements.is_empty());
    let version = core.snapshot().version;
    // Drained: asked again with a new reason and a duration, it stays
    // withdrawn and takes both.
    let again = timed_drain("fra1", "longer", 3600, DrainMode::Graceful, false);
    admin(&mut core, again).expect("again");
    let s = core.snapshot();
    assert!(s.version > version);
    assert!(s.announcements.is_empty(), "a drained PoP stays withdrawn");
    let a = s.pops["fra1"].admin.as_ref().expect("admin");
    assert_eq!((a.step, a.reason.as_str()), (Phase::Drained, "longer"));
    assert!(a.until.is_some());
    // Disabled, then drained: still withdrawn throughout.
    admin(
        &mut core,
        AdminCommand::Disable {
            pop: name("fra1"),
            reason: "x".into(),
            who: "t".into(),
            force: false,
        },
    )
    .expect("disable");
    admin(&mut core, drain("fra1", DrainMode::Graceful, false)).expect("drain");
    let s = core.snapshot();
    assert!(s.announcements.is_empty());
    assert_eq!(
        s.pops["fra1"].admin.as_ref().map(|a| a.step),
        Some(Phase::Drained)
    );
}

#[tokio::test(start_paused = true)]
async fn admin_state_survives_restart_and_reload() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = test_config(Some(dir.path().to_path_buf()));
    let mut core = Driven::new(cfg.clone(), BTreeMap::new());
    feed(&mut core, "fra1", true, 3);
    admin(&mut core, drain("fra1", DrainMode::Immediate, true)).expect("drain");
    assert!(core.snapshot().announcements.is_empty());
    drop(core);
    // "Restart": a new core loads the state file.
    let loaded = persist::load(dir.path()).expect("load state");
    assert_eq!(loaded.len(), 1);
    let mut core = Driven::new(cfg.clone(), loaded);
    feed(&mut core, "fra1", true, 3);
    let s = core.snapshot();
    assert_eq!(s.pops["fra1"].state, PopState::Draining);
    assert!(s.announcements.is_empty());
    // A reload keeps overrides and check states.
    let (tx, _rx2) = oneshot::channel();
    core.input(Input::Reload {
        config: Arc::new(cfg),
        reply: tx,
    });
    let s = core.snapshot();
    assert_eq!(s.pops["fra1"].state, PopState::Draining);
    assert_eq!(s.pops["fra1"].healthy, Some(true));
    // Enable brings it back at once and is persisted.
    admin(
        &mut core,
        AdminCommand::Enable {
            pop: name("fra1"),
            who: "t".into(),
        },
    )
    .expect("enable");
    assert_eq!(core.snapshot().announcements.len(), 2);
    assert!(persist::load(dir.path()).expect("load").is_empty());
}

#[tokio::test(start_paused = true)]
async fn timed_drain_expires() {
    let mut core = Driven::new(test_config(None), BTreeMap::new());
    feed(&mut core, "fra1", true, 3);
    let cmd = timed_drain("fra1", "short", 5, DrainMode::Immediate, true);
    admin(&mut core, cmd).expect("drain");
    assert!(core.snapshot().announcements.is_empty());
    // The expiry is wall-clock (the injected clock's).
    tokio::time::advance(Duration::from_secs(6)).await;
    core.tick();
    // Expiry ramps back: routes at once, DNS after the settle time (10 s).
    let s = core.snapshot();
    assert_eq!(s.announcements.len(), 2);
    assert!(!s.pops["fra1"].serves_dns);
    assert_eq!(
        s.pops["fra1"].admin.as_ref().map(|a| a.step),
        Some(Phase::Restoring)
    );
    tokio::time::advance(Duration::from_secs(10)).await;
    core.tick();
    let s = core.snapshot();
    assert_eq!(s.pops["fra1"].state, PopState::Up);
    assert!(s.pops["fra1"].serves_dns);
    assert!(s.pops["fra1"].admin.is_none());
}

/// A reload that adds a check to a healthy PoP must not withdraw it while
/// the new check is undecided; the new check's verdict then counts.
#[tokio::test(start_paused = true)]
async fn reload_with_new_check_keeps_verdict_until_it_decides() {
    let mut core = Driven::new(test_config(None), BTreeMap::new());
    feed(&mut core, "fra1", true, 3);
    let before = core.snapshot();
    assert_eq!(before.announcements.len(), 2);

    let mut cfg = test_config(None);
    let fra1 = cfg.pops.get_mut("fra1").expect("fra1");
    let mut extra = fra1.checks[0].clone();
    extra.name = name("new-http");
    fra1.checks.push(extra);
    let (tx, _rx2) = oneshot::channel();
    core.input(Input::Reload {
        config: Arc::new(cfg),
        reply: tx,
    });
    let s = core.snapshot();
    assert_eq!(s.pops["fra1"].state, PopState::Up);
    assert!(s.pops["fra1"].serves_dns);
    assert!(
        Arc::ptr_eq(&s.announcements, &before.announcements),
        "no announcement change on reload"
    );
    assert!(
        s.pops["fra1"]
            .reason
            .contains("kept while new checks decide: new-http"),
        "{}",
        s.pops["fra1"].reason
    );

    // The new check fails twice (fall 2): now the PoP is down.
    for _ in 0..2 {
        core.input(probe("fra1", "new-http", false, "status 503"));
    }
    let s = core.snapshot();
    assert_eq!(s.pops["fra1"].state, PopState::Down);
    assert!(s.announcements.is_empty());
}

#[tokio::test(start_paused = true)]
async fn timed_drain_shows_expiry_as_next_event() {
    let mut core = Driven::new(test_config(None), BTreeMap::new());
    feed(&mut core, "fra1", true, 3);
    feed(&mut core, "ams1", true, 3);
    let wall = core.now().wall;
    // Expires before the 30 s DNS wait ends.
    let cmd = timed_drain("fra1", "short", 20, DrainMode::Graceful, false);
    admin(&mut core, cmd).expect("drain accepted");
    let admin = core.snapshot().pops["fra1"].admin.clone().expect("admin");
    let until = admin.until.expect("until");
    assert_eq!(until, wall + Duration::from_secs(20));
    assert_eq!(admin.next_at, Some(until), "expiry is the next event");
}

fn events_of(core: &mut Driven, kind: EventKind) -> Vec<String> {
    let (tx, mut rx) = oneshot::channel();
    core.input(Input::Subscribe { reply: tx });
    let (events, _live) = rx.try_recv().expect("subscribe reply");
    events
        .into_iter()
        .filter(|e| e.kind == kind)
        .map(|e| e.message)
        .collect()
}

/// Saving runs outside the core: while one save is in flight, admin
/// commands wait their turn and are decided on the state that save left;
/// a command whose requester gave up meanwhile is never applied.
#[tokio::test(start_paused = true)]
async fn admin_commands_wait_for_the_save_in_flight() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut core = both_up(dir.path());
    let now = core.now();
    let (tx1, mut rx1) = oneshot::channel();
    core.core.handle(
        Input::Admin {
            cmd: drain("fra1", DrainMode::Immediate, false),
            reply: tx1,
        },
        now,
    );
    // Nothing is applied before the save is done.
    let Ok(Effect::SaveAdminState {
        id,
        dir: d,
        overrides,
    }) = core.io.effects.try_recv()
    else {
        panic!("a save is emitted")
    };
    assert_eq!(overrides.len(), 1);
    assert_eq!(core.snapshot().pops["fra1"].state, PopState::Up);
    // Meanwhile: draining ams1 too (refused once fra1 is out: last PoP),
    // and a disable whose requester stops waiting.
    let (tx2, mut rx2) = oneshot::channel();
    core.core.handle(
        Input::Admin {
            cmd: drain("ams1", DrainMode::Immediate, false),
            reply: tx2,
        },
        now,
    );
    let (tx3, rx3) = oneshot::channel();
    core.core.handle(
        Input::Admin {
            cmd: AdminCommand::Disable {
                pop: name("ams1"),
                reason: "x".into(),
                who: "t".into(),
                force: true,
            },
            reply: tx3,
        },
        now,
    );
    drop(rx3);
    assert!(core.io.effects.try_recv().is_err(), "one save at a time");
    assert!(rx1.try_recv().is_err() && rx2.try_recv().is_err());
    let result = persist::save(&d, &overrides).map_err(|e| (&e).into());
    core.input(Input::Saved { id, result });
    assert!(rx1.try_recv().expect("reply").is_ok());
    assert_eq!(
        rx2.try_recv().expect("reply"),
        Err(AdminError::LastPop("ams1".into()))
    );
    let s = core.snapshot();
    assert_eq!(s.pops["fra1"].state, PopState::Draining);
    assert_eq!(s.pops["ams1"].state, PopState::Up, "dropped, not applied");
    assert_eq!(persist::load(dir.path()).expect("load").len(), 1);
}

/// An admin change whose save fails is refused and leaves no trace but
/// the error (event, log, the reply).
#[tokio::test(start_paused = true)]
async fn failed_save_refuses_the_admin_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let blocked = dir.path().join("state");
    std::fs::write(&blocked, "a file where the directory should be").expect("write");
    let mut core = Driven::new(test_config(Some(blocked.clone())), BTreeMap::new());
    feed(&mut core, "fra1", true, 3);
    feed(&mut core, "ams1", true, 3);
    let before = core.snapshot();
    let err = admin(&mut core, drain("fra1", DrainMode::Immediate, false)).expect_err("refused");
    assert!(
        matches!(&err, AdminError::Persist(e) if e.contains("state")),
        "{err:?}"
    );
    let s = core.snapshot();
    assert_eq!(s.pops["fra1"].state, PopState::Up);
    assert!(Arc::ptr_eq(&s.announcements, &before.announcements));
    assert!(s.pops["fra1"].admin_unsaved.is_none(), "nothing unsaved");
    assert_eq!(core.core.deadline(core.now()), None, "nothing to retry");
    let persist_events = events_of(&mut core, EventKind::Persist);
    assert_eq!(persist_events.len(), 1, "{persist_events:?}");
    assert!(persist_events[0].contains("change to pop fra1 refused"));
}

/// A timed drain step is applied even when it cannot be saved; the PoP
/// shows the error, an event says so, the save is retried until the disk
/// takes it, and then state and file agree again.
#[tokio::test(start_paused = true)]
async fn failed_save_after_a_timed_step_is_visible_and_retried() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let mut core = Driven::new(test_config(Some(state.clone())), BTreeMap::new());
    feed(&mut core, "fra1", true, 3);
    feed(&mut core, "ams1", true, 3);
    admin(&mut core, drain("fra1", DrainMode::Graceful, false)).expect("drain");
    // The disk goes bad.
    std::fs::remove_dir_all(&state).expect("rm");
    std::fs::write(&state, "not a directory").expect("write");
    tokio::time::advance(Duration::from_secs(30)).await;
    core.tick();
    let s = core.snapshot();
    assert_eq!(
        s.pops["fra1"].admin.as_ref().map(|a| a.step),
        Some(Phase::Shutdown),
        "the step is in force"
    );
    let unsaved = s.pops["fra1"].admin_unsaved.clone().expect("visible");
    assert!(unsaved.contains("state"), "{unsaved}");
    assert!(s.pops["ams1"].admin_unsaved.is_none());
    let ev = events_of(&mut core, EventKind::Persist);
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert!(
        ev[0].contains("in force but not on disk: fra1 (shutdown)"),
        "{ev:?}"
    );
    // Retried after SAVE_RETRY; the same error is not reported again.
    assert_eq!(
        core.core.deadline(core.now()),
        Some(Instant::now() + SAVE_RETRY)
    );
    tokio::time::advance(SAVE_RETRY).await;
    core.tick();
    assert_eq!(events_of(&mut core, EventKind::Persist).len(), 1);
    assert!(core.snapshot().pops["fra1"].admin_unsaved.is_some());
    // The disk is repaired; at the end of the settle time (10 s after the
    // step) the drain completes and the retry saves it.
    std::fs::remove_file(&state).expect("rm");
    tokio::time::advance(Duration::from_secs(5)).await;
    core.tick();
    let s = core.snapshot();
    assert_eq!(
        s.pops["fra1"].admin.as_ref().map(|a| a.step),
        Some(Phase::Drained)
    );
    assert!(s.pops["fra1"].admin_unsaved.is_none(), "saved again");
    let ev = events_of(&mut core, EventKind::Persist);
    assert_eq!(ev.len(), 2, "{ev:?}");
    assert!(ev[1].contains("saved again"), "{ev:?}");
    let on_disk = persist::load(&state).expect("load");
    assert_eq!(on_disk["fra1"].phase, Phase::Drained);
    assert_eq!(core.core.deadline(core.now()), None, "nothing left to do");
}

/// A hand-edited state file whose auto-undrain is as far away as the
/// file format allows (year ~292 billion), read while the host's clock
/// still says 1970 (no battery-backed clock, NTP not synced yet): this
/// overflowed the deadline arithmetic and panicked the core. Now the
/// expiry is clamped on load to a year after the drain's start, an
/// `admin` event says so, and the clamped file is written back; a file
/// with sane times is loaded as it is.
#[tokio::test(start_paused = true)]
async fn an_absurd_expiry_in_the_state_file_is_clamped_on_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    let since = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    std::fs::write(
        persist::state_path(dir.path()),
        r#"{"version": 1, "overrides": {"fra1": {"phase": "drained", "reason": "by hand",
            "who": "ops", "since": {"secs_since_epoch": 1700000000, "nanos_since_epoch": 0},
            "until": {"secs_since_epoch": 9223372036854775807, "nanos_since_epoch": 0}}}}"#,
    )
    .expect("write");
    let loaded = persist::load(dir.path()).expect("the file is valid");
    let clock = TokioClock::starting_at(SystemTime::UNIX_EPOCH + Duration::from_secs(60));
    let config = Arc::new(test_config(Some(dir.path().to_path_buf())));
    let (core, handle, io) = Core::new(config, loaded, clock.now());
    let mut core = Driven {
        core,
        handle,
        io,
        clock,
    };
    let now = core.now();
    let limit = since + admin::MAX_DRAIN;
    let status = core.snapshot().pops["fra1"]
        .admin
        .clone()
        .expect("restored");
    assert_eq!(status.step, Phase::Drained);
    assert_eq!(status.until, Some(limit));
    let ahead = limit.duration_since(now.wall).expect("ahead");
    assert_eq!(core.core.deadline(now), Some(now.mono + ahead));
    let ev = events_of(&mut core, EventKind::Admin);
    assert!(
        ev.contains(&"pop fra1: the auto-undrain time in the state file is more than 365 days after the drain started; clamped to 365 days after it".to_string()),
        "{ev:?}"
    );
    // events_of ran the save the load asked for.
    let on_disk = persist::load(dir.path()).expect("load");
    assert_eq!(on_disk["fra1"].until, Some(limit));
    // Loaded again (now sane): as it is, nothing to write.
    let mut again = Driven::new(test_config(Some(dir.path().to_path_buf())), on_disk);
    let status = again.snapshot().pops["fra1"]
        .admin
        .clone()
        .expect("restored");
    assert_eq!(status.until, Some(limit));
    assert!(again.io.effects.try_recv().is_err(), "nothing to save");
    // A start time so far away that a year after it cannot be represented
    // either: nothing to clamp to, and still no overflow.
    let mut ov = persist::load(dir.path()).expect("load");
    let max = SystemTime::UNIX_EPOCH + Duration::from_secs(i64::MAX as u64);
    let fra1 = ov.get_mut("fra1").expect("fra1");
    (fra1.since, fra1.until) = (max, Some(max));
    let early = TokioClock::starting_at(SystemTime::UNIX_EPOCH);
    let (core, _handle, _io) = Core::new(Arc::new(test_config(None)), ov, early.now());
    assert_eq!(
        core.deadline(early.now()),
        Some(early.now().mono + clock::FAR_FUTURE)
    );
}

/// Far-away times never overflow the clock arithmetic.
#[tokio::test(start_paused = true)]
async fn mono_at_of_a_far_away_time_does_not_overflow() {
    let clock = TokioClock::starting_at(SystemTime::UNIX_EPOCH);
    let now = clock.now();
    let far = SystemTime::UNIX_EPOCH + Duration::from_secs(i64::MAX as u64);
    assert_eq!(now.mono_at(far), now.mono + clock::FAR_FUTURE);
    assert_eq!(
        now.mono_at(now.wall + Duration::from_secs(5)),
        now.mono + Duration::from_secs(5)
    );
    assert_eq!(now.mono_at(SystemTime::UNIX_EPOCH), now.mono);
}

/// A timed step whose save failed after the file was replaced (the
/// directory could not be flushed: what is on disk is unknown) is not a
/// silent disagreement either: the PoP shows the error and the save is
/// retried until it succeeds, then file and memory agree.
#[tokio::test(start_paused = true)]
async fn a_timed_step_whose_save_was_not_durable_is_shown_and_retried() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut core = both_up(dir.path());
    admin(&mut core, drain("fra1", DrainMode::Graceful, false)).expect("drain");
    tokio::time::advance(Duration::from_secs(30)).await;
    let now = core.now();
    core.core.tick(now);
    let Ok(Effect::SaveAdminState { id, .. }) = core.io.effects.try_recv() else {
        panic!("the step is saved")
    };
    let error = "cannot fsync directory /x after replacing /x/admin-state.json: Input/output error";
    core.core.handle(
        Input::Saved {
            id,
            result: Err(persist::SaveFailure {
                error: error.into(),
                replaced: true,
            }),
        },
        now,
    );
    let s = core.snapshot();
    let fra1 = &s.pops["fra1"];
    assert_eq!(fra1.admin.as_ref().map(|a| a.step), Some(Phase::Shutdown));
    assert_eq!(fra1.admin_unsaved.as_deref(), Some(error));
    let ev = events_of(&mut core, EventKind::Persist);
    assert!(
        ev.len() == 1 && ev[0].contains("in force but not on disk: fra1 (shutdown)"),
        "{ev:?}"
    );
    assert_eq!(core.core.deadline(core.now()), Some(now.mono + SAVE_RETRY));
    tokio::time::advance(SAVE_RETRY).await;
    core.tick();
    assert!(core.snapshot().pops["fra1"].admin_unsaved.is_none());
    assert_eq!(
        persist::load(dir.path()).expect("load")["fra1"].phase,
        Phase::Shutdown
    );
}

async fn send(handle: &CoreHandle, input: Input) {
    handle.inputs.send(input).await.expect("the core runs");
}

/// The save never runs on the core's task: with a save that does not
/// come back (a hung disk), the core goes on applying probe results and
/// timed drain steps and publishing them; the file catches up once the
/// disk answers.
#[tokio::test(start_paused = true)]
async fn the_core_runs_on_while_the_disk_hangs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock =
        TokioClock::starting_at(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000));
    let config = Arc::new(test_config(Some(dir.path().to_path_buf())));
    let (core, handle, io) = Core::new(config, BTreeMap::new(), clock.now());
    let mut effects = io.effects;
    tokio::spawn(core.run(io.inputs, clock));
    let mut snaps = handle.snapshots.clone();
    for pop in ["fra1", "ams1"] {
        for _ in 0..3 {
            send(&handle, probe(pop, "edge", true, "ok")).await;
        }
    }
    snaps
        .wait_for(|s| s.pops.values().all(|p| p.state == PopState::Up))
        .await
        .expect("core");
    // Carries out one save as the effect runner does, on a blocking thread.
    async fn save_one(
        effects: &mut tokio::sync::mpsc::UnboundedReceiver<Effect>,
        handle: &CoreHandle,
    ) -> Phase {
        let Some(Effect::SaveAdminState { id, dir, overrides }) = effects.recv().await else {
            panic!("a save")
        };
        let phase = overrides["fra1"].phase;
        let result = tokio::task::spawn_blocking(move || {
            persist::save(&dir, &overrides).map_err(|e| persist::SaveFailure::from(&e))
        })
        .await
        .expect("save task");
        send(handle, Input::Saved { id, result }).await;
        phase
    }
    let fra1_at = |p: Phase| {
        move |s: &Arc<Snapshot>| s.pops["fra1"].admin.as_ref().is_some_and(|a| a.step == p)
    };
    let (reply, answer) = oneshot::channel();
    let cmd = drain("fra1", DrainMode::Graceful, false);
    send(&handle, Input::Admin { cmd, reply }).await;
    assert_eq!(save_one(&mut effects, &handle).await, Phase::DnsRemoved);
    answer.await.expect("reply").expect("drained");
    // 30 s later the next step is applied; its save hangs.
    snaps
        .wait_for(fra1_at(Phase::Shutdown))
        .await
        .expect("core");
    let Some(hung) = effects.recv().await else {
        panic!("the step's save")
    };
    // Meanwhile probes are applied and the drain completes on time.
    let Input::Probe(report) = probe("ams1", "edge", false, "refused") else {
        unreachable!()
    };
    let seq = report.seq;
    send(&handle, Input::Probe(report)).await;
    snaps
        .wait_for(|s| s.check("ams1", "edge").is_some_and(|c| c.seq == seq))
        .await
        .expect("core");
    snaps.wait_for(fra1_at(Phase::Drained)).await.expect("core");
    assert!(effects.try_recv().is_err(), "one save at a time");
    assert_eq!(
        persist::load(dir.path()).expect("load")["fra1"].phase,
        Phase::DnsRemoved
    );
    // The disk answers: the hung save lands, then the latest state follows.
    let Effect::SaveAdminState {
        id,
        dir: d,
        overrides,
    } = hung;
    assert_eq!(overrides["fra1"].phase, Phase::Shutdown);
    let result = persist::save(&d, &overrides).map_err(|e| persist::SaveFailure::from(&e));
    send(&handle, Input::Saved { id, result }).await;
    assert_eq!(save_one(&mut effects, &handle).await, Phase::Drained);
    assert_eq!(
        persist::load(dir.path()).expect("load")["fra1"].phase,
        Phase::Drained
    );
}

/// An auto-undrain time that passed while anypop was stopped starts the
/// undrain as soon as the core runs.
#[tokio::test(start_paused = true)]
async fn an_expiry_that_passed_while_stopped_undrains_at_start() {
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let ov = Override {
        phase: Phase::Drained,
        reason: "x".into(),
        who: "ops".into(),
        since: start - Duration::from_secs(7200),
        until: Some(start - Duration::from_secs(3600)),
        phase_ends: None,
        force: false,
    };
    let mut core = Driven::new(test_config(None), BTreeMap::from([(name("fra1"), ov)]));
    assert_eq!(core.core.deadline(core.now()), Some(Instant::now()));
    core.tick();
    let ev = events_of(&mut core, EventKind::Admin);
    assert!(
        ev.iter().any(|m| m == "pop fra1 drain expired: restoring"),
        "{ev:?}"
    );
}

/// Node `a` of a fleet a, b: PoP a is its own, PoP b node b's; each PoP
/// has one tcp check `edge` (both vantages: node a runs it for both) and
/// an inside-only maintenance file check (node a runs b's never).
fn fleet_config() -> Config {
    let yaml = r#"
node: {name: a, pop: a, router_id: 192.0.2.1, asn: 65001}
pops:
  - name: a
    prefixes: [203.0.113.0/24]
    addresses: [192.0.2.10]
    drain: {dns_wait: 30s, settle: 10s}
    checks:
      - {name: edge, type: tcp, target: "192.0.2.10:80", rise: 1, fall: 1}
      - {name: maint, type: file, path: /nonexistent/a, healthy_when: absent, rise: 1, fall: 1}
  - name: b
    prefixes: [203.0.113.0/24]
    addresses: [192.0.2.20]
    checks:
      - {name: edge, type: tcp, target: "192.0.2.20:80", rise: 1, fall: 1}
      - {name: maint, type: file, path: /nonexistent/b, healthy_when: absent, rise: 1, fall: 1}
fleet:
  peers:
    - {name: b, pop: b, url: "http://192.0.2.2:8080"}
  stale_after: 5s
  drain_ack_timeout: 10s
"#;
    crate::config::parse(yaml).expect("fleet config")
}

/// Node b's report: PoP b from the inside (`up`, admin `phase`), PoP a
/// from the outside, and which report of node a it acts on.
fn b_report(revision: u64, phase: Option<Phase>, applied: Option<(&str, u64)>) -> Input {
    b_report_edge(revision, Verdict::Up, phase, applied)
}

/// [`b_report`] with PoP b's `edge` check (and so its inside verdict)
/// saying `edge`.
fn b_report_edge(
    revision: u64,
    edge: Verdict,
    phase: Option<Phase>,
    applied: Option<(&str, u64)>,
) -> Input {
    let admin = phase.map(|step| b_admin(step, 1.0, false));
    b_report_with(revision, edge, admin, applied)
}

/// PoP b's drain as node b publishes it: at `step`, started at `since`
/// (Unix seconds), forced past the guard or not.
fn b_admin(step: Phase, since: f64, force: bool) -> super::fleet::ReportAdmin {
    super::fleet::ReportAdmin {
        kind: crate::core::snapshot::AdminKind::Drain,
        step,
        reason: "maintenance".into(),
        who: "alice via a".into(),
        since,
        next_at: None,
        until: None,
        force,
        held: None,
    }
}

/// Node b's report with PoP b's `edge` check saying `edge` and its admin
/// state `admin`.
fn b_report_with(
    revision: u64,
    edge: Verdict,
    admin: Option<super::fleet::ReportAdmin>,
    applied: Option<(&str, u64)>,
) -> Input {
    use super::fleet::{Applied, PopReport, Report, ReportRole};
    let pop = |role, admin, verdict| PopReport {
        role,
        verdict,
        decided_at: 1.0,
        reason: format!("check edge {verdict:?}"),
        checks: [(name("edge"), verdict)].into_iter().collect(),
        admin,
    };
    let admin_revision = 1 + u64::from(admin.is_some());
    Input::Fleet(super::fleet::FleetInput::Report {
        peer: name("b"),
        report: Box::new(Report {
            node: name("b"),
            pop: Some(name("b")),
            instance: "b-1".into(),
            revision,
            admin_revision,
            generated_at: 1.0,
            pops: [
                (name("b"), pop(ReportRole::Owner, admin, edge)),
                (name("a"), pop(ReportRole::Vantage, None, Verdict::Up)),
            ]
            .into_iter()
            .collect(),
            applied: applied
                .map(|(i, r)| {
                    (
                        name("a"),
                        Applied {
                            instance: i.into(),
                            admin_revision: r,
                        },
                    )
                })
                .into_iter()
                .collect(),
        }),
    })
}

fn fleet_events(core: &mut Driven) -> Vec<String> {
    let (tx, mut rx) = oneshot::channel();
    core.input(Input::Subscribe { reply: tx });
    let (events, _live) = rx.try_recv().expect("subscribe reply");
    events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Fleet | EventKind::Safety))
        .map(|e| e.message.clone())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn fleet_view_follows_peer_reports_and_the_drain_waits_for_them() {
    let mut core = Driven::new(fleet_config(), BTreeMap::new());
    // Only its own PoP's file check runs here; both tcp checks do.
    let s = core.snapshot();
    let checks = |p: &str| {
        s.pops[p]
            .checks
            .keys()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(checks("a"), ["edge", "maint"]);
    assert_eq!(checks("b"), ["edge"]);
    for (p, c) in [("a", "edge"), ("a", "maint"), ("b", "edge")] {
        core.input(probe(p, c, true, "ok"));
    }
    let s = core.snapshot();
    assert_eq!(s.pops["a"].state, PopState::Up);
    // Nothing from b yet and its only vantage point (this node) reaches it.
    assert_eq!(s.pops["b"].state, PopState::Up, "{}", s.pops["b"].reason);
    let fleet = s.fleet.as_ref().expect("fleet snapshot");
    assert_eq!(
        fleet.report.pops[&name("a")].role,
        super::fleet::ReportRole::Owner
    );
    assert_eq!(s.announcements.len(), 1);

    // b drains its PoP: this node's DNS stops answering with it at once.
    core.input(b_report(1, None, None));
    core.input(b_report(2, Some(Phase::DnsRemoved), None));
    let s = core.snapshot();
    assert_eq!(s.pops["b"].state, PopState::Draining);
    assert!(!s.pops["b"].serves_dns);
    assert_eq!(
        s.pops["b"].admin.as_ref().map(|a| a.who.as_str()),
        Some("alice via a")
    );
    let fleet = s.fleet.as_ref().expect("fleet snapshot");
    let applied = &fleet.report.applied[&name("b")];
    assert_eq!(
        (applied.instance.as_str(), applied.admin_revision),
        ("b-1", 2)
    );
    // The drain of b leaves a as the last PoP of the prefix: guarded.
    assert_eq!(
        admin(&mut core, drain("a", DrainMode::Graceful, false)),
        Err(AdminError::LastPop("a".into()))
    );
    core.input(b_report(3, None, None));
    assert_eq!(core.snapshot().pops["b"].state, PopState::Up);

    // Draining its own PoP: the DNS wait starts when b confirms.
    admin(&mut core, drain("a", DrainMode::Graceful, false)).expect("drain");
    let s = core.snapshot();
    let report = &s.fleet.as_ref().expect("fleet").report;
    let (instance, admin_revision) = (report.instance.clone(), report.admin_revision);
    assert_eq!(admin_revision, 2);
    tokio::time::advance(Duration::from_secs(4)).await;
    core.input(b_report(4, None, Some((&instance, admin_revision))));
    let events = fleet_events(&mut core);
    assert!(
        events
            .iter()
            .any(|e| e == "pop a out of DNS on every node (b confirmed): waiting 30s for caches"),
        "{events:?}"
    );
    // 30 s after the confirmation (not after the drain): shutdown.
    tokio::time::advance(Duration::from_secs(29)).await;
    core.tick();
    assert_eq!(
        core.snapshot().pops["a"].admin.as_ref().map(|a| a.step),
        Some(Phase::DnsRemoved)
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    core.input(b_report(4, None, Some((&instance, admin_revision))));
    core.tick();
    assert_eq!(
        core.snapshot().pops["a"].admin.as_ref().map(|a| a.step),
        Some(Phase::Shutdown)
    );

    // b goes silent: after stale_after its report is stale; its PoP keeps
    // its verdict (this node still reaches it) and nothing is withdrawn.
    tokio::time::advance(Duration::from_secs(6)).await;
    core.tick();
    let s = core.snapshot();
    let fleet = s.fleet.as_ref().expect("fleet");
    assert!(!fleet.peers[&name("b")].fresh);
    assert_eq!(s.pops["b"].state, PopState::Up, "{}", s.pops["b"].reason);
    assert!(fleet_events(&mut core)
        .iter()
        .any(|e| e.starts_with("peer b: report stale")));
}

/// Node a of [`fleet_config`] with every check up and node b's first
/// report (b up) in.
fn fleet_core_up() -> Driven {
    let mut core = Driven::new(fleet_config(), BTreeMap::new());
    for (p, c) in [("a", "edge"), ("a", "maint"), ("b", "edge")] {
        core.input(probe(p, c, true, "ok"));
    }
    core.input(b_report(1, None, None));
    core
}

#[tokio::test(start_paused = true)]
async fn drain_goes_on_when_a_fresh_peer_does_not_confirm() {
    let mut core = fleet_core_up();
    admin(&mut core, drain("a", DrainMode::Graceful, false)).expect("drain");
    // b stays fresh but never confirms: after drain_ack_timeout (10 s)
    // the DNS wait (30 s) starts.
    for _ in 0..5 {
        tokio::time::advance(Duration::from_secs(2)).await;
        core.input(b_report(1, None, None));
        core.tick();
    }
    let events = fleet_events(&mut core);
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("pop a: b did not confirm the DNS step within 10s")),
        "{events:?}"
    );
    tokio::time::advance(Duration::from_secs(30)).await;
    core.tick();
    assert_eq!(
        core.snapshot().pops["a"].admin.as_ref().map(|a| a.step),
        Some(Phase::Shutdown)
    );
}

/// Fail static on the owner's BGP side. PoP a's `edge` fails first and,
/// after the 2 s window, is withdrawn; then b reports the same check down
/// (2 of 2 PoPs): the rule holds both, a is announced again and in DNS,
/// the state and a `safety` event say why. b recovers first: the rule
/// lets go, a (still failing) stays announced for another window, then is
/// withdrawn; its own recovery announces it again.
#[tokio::test(start_paused = true)]
async fn fail_static_announces_again_a_pop_withdrawn_before_it_applied() {
    let mut core = fleet_core_up();
    assert_eq!(core.snapshot().announcements.len(), 1);

    core.input(probe("a", "edge", false, "connect refused"));
    let s = core.snapshot();
    assert_eq!(s.pops["a"].state, PopState::Down, "{}", s.pops["a"].reason);
    assert_eq!(s.announcements.len(), 1, "withdrawn inside the window");
    tokio::time::advance(Duration::from_secs(2)).await;
    core.tick();
    let s = core.snapshot();
    assert!(s.announcements.is_empty(), "not withdrawn after the window");
    assert_eq!(s.pops["a"].fail_static, None);

    // The same check fails on b: shared by 2 of 2 PoPs.
    tokio::time::advance(Duration::from_secs(5)).await;
    core.input(b_report_edge(2, Verdict::Down, None, None));
    let s = core.snapshot();
    for p in ["a", "b"] {
        assert_eq!(s.pops[p].state, PopState::Up, "{p}: {}", s.pops[p].reason);
        let why = s.pops[p].fail_static.as_deref().unwrap_or_default();
        assert!(
            why.contains("check edge fails on 2 of 2 PoPs (a, b)"),
            "{p}: {why}"
        );
        assert!(
            s.pops[p].reason.starts_with("fail static: "),
            "{}",
            s.pops[p].reason
        );
    }
    assert_eq!(s.announcements.len(), 1, "a not announced again");
    let events = fleet_events(&mut core);
    for p in ["a", "b"] {
        let start = format!("pop {p} fail static: check edge fails on 2 of 2 PoPs (a, b)");
        assert!(events.iter().any(|e| e.starts_with(&start)), "{events:?}");
    }
    // Held as long as it lasts.
    tokio::time::advance(Duration::from_secs(60)).await;
    core.input(b_report_edge(3, Verdict::Down, None, None));
    core.tick();
    assert_eq!(core.snapshot().announcements.len(), 1);

    // b recovers first: the rule ends; a still fails and gets a new window.
    core.input(b_report_edge(4, Verdict::Up, None, None));
    let s = core.snapshot();
    for p in ["a", "b"] {
        assert_eq!(s.pops[p].fail_static, None, "{p}");
    }
    assert_eq!(s.pops["a"].state, PopState::Down, "{}", s.pops["a"].reason);
    assert_eq!(
        s.announcements.len(),
        1,
        "withdrawn the instant the rule ended"
    );
    let events = fleet_events(&mut core);
    for p in ["a", "b"] {
        let over = format!("pop {p} fail static over: ");
        assert!(events.iter().any(|e| e.starts_with(&over)), "{events:?}");
    }
    tokio::time::advance(Duration::from_secs(2)).await;
    core.tick();
    assert!(core.snapshot().announcements.is_empty(), "a still fails");

    core.input(probe("a", "edge", true, "ok"));
    let s = core.snapshot();
    assert_eq!(s.pops["a"].state, PopState::Up, "{}", s.pops["a"].reason);
    assert_eq!(s.announcements.len(), 1);
}

/// Node a of [`fleet_config`] drains its PoP (b is up: the guard lets it)
/// and node b's reports then show b drained too, its drain started at
/// `b_since` (Unix seconds), forced or not; then 44 s pass (a's DNS step:
/// 10 s waiting for b's confirmation, 30 s DNS wait) with b's report fresh.
async fn drain_both(a_force: bool, b_since: f64, b_force: bool) -> Driven {
    let mut core = fleet_core_up();
    admin(&mut core, drain("a", DrainMode::Graceful, a_force)).expect("drain");
    let b = b_admin(Phase::DnsRemoved, b_since, b_force);
    for _ in 0..22 {
        core.input(b_report_with(2, Verdict::Up, Some(b.clone()), None));
        core.tick();
        tokio::time::advance(Duration::from_secs(2)).await;
    }
    core.input(b_report_with(2, Verdict::Up, Some(b), None));
    core.tick();
    core
}

fn step_of(core: &Driven, pop: &str) -> Option<Phase> {
    core.snapshot().pops[pop].admin.as_ref().map(|a| a.step)
}

/// The last-PoP guard checked again at the end of a graceful drain's DNS
/// step. a and b serve the prefix and are drained within one report round
/// trip (each request saw the other PoP up). When b's drain started first,
/// a's holds in `dns_removed` — still announced, out of DNS, the reason in
/// the state and a `safety` event — until b is back in service; then it
/// goes on at once. When b's started later (or at the same time: the name
/// decides), a's goes on and b's is the one to hold. A forced drain of a
/// never holds; a forced drain of b does not count as one that will.
#[tokio::test(start_paused = true)]
async fn of_two_drains_of_the_last_two_pops_the_later_one_holds_at_the_dns_step() {
    let t0 = 1_700_000_000.0;
    // b's drain started first: a holds.
    let mut core = drain_both(false, t0 - 0.5, false).await;
    let s = core.snapshot();
    assert_eq!(step_of(&core, "a"), Some(Phase::DnsRemoved));
    assert_eq!(s.announcements.len(), 1, "a withdrew the prefix");
    assert!(!s.pops["a"].serves_dns);
    let admin_a = s.pops["a"].admin.clone().expect("admin");
    let held = admin_a.held.clone().unwrap_or_default();
    assert_eq!(
        held,
        "last PoP in service for 203.0.113.0/24 (b draining, its drain started first): held in dns_removed until another PoP of it is back in service"
    );
    assert_eq!(admin_a.next_at, None, "no next step while held");
    assert!(s.pops["a"].reason.contains(&held), "{}", s.pops["a"].reason);
    let report = &s.fleet.as_ref().expect("fleet").report;
    let published = report.pops[&name("a")].admin.as_ref().expect("admin");
    assert_eq!(published.held.as_deref(), Some(held.as_str()));
    let events = fleet_events(&mut core);
    let start = format!("pop a drain held: {held}");
    assert_eq!(
        events.iter().filter(|e| **e == start).count(),
        1,
        "{events:?}"
    );
    // Held, not busy: no deadline is due.
    let now = core.now();
    assert!(core.core.deadline(now).is_none_or(|d| d > now.mono));
    // b is back in service: a's drain goes on at once.
    core.input(b_report_with(3, Verdict::Up, None, None));
    core.tick();
    assert_eq!(step_of(&core, "a"), Some(Phase::Shutdown));
    assert!(core.snapshot().pops["a"]
        .admin
        .as_ref()
        .is_some_and(|a| a.held.is_none()));
    let events = fleet_events(&mut core);
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("pop a drain goes on: ")),
        "{events:?}"
    );

    // b's drain started later, or at the same time (a's name sorts
    // first): a goes on.
    for b_since in [t0 + 0.5, t0] {
        let core = drain_both(false, b_since, false).await;
        assert_eq!(
            step_of(&core, "a"),
            Some(Phase::Shutdown),
            "b since {b_since}"
        );
    }
    // b's later drain was forced: it will not hold, so a does.
    let core = drain_both(false, t0 + 0.5, true).await;
    assert_eq!(step_of(&core, "a"), Some(Phase::DnsRemoved));
    let held = core.snapshot().pops["a"].admin.clone().and_then(|a| a.held);
    assert!(held.is_some_and(|h| h.contains("b draining, forced")));
    // a's own drain was forced: never held.
    let core = drain_both(true, t0 - 0.5, false).await;
    assert_eq!(step_of(&core, "a"), Some(Phase::Shutdown));
}

/// At the scale the docs claim (100,000 prefixes): probes that change
/// nothing publish the same announcement map (not a rebuilt copy), a
/// drain and an undrain change every prefix, a reload with the same
/// content keeps the map and one with a prefix more adds exactly it.
#[tokio::test(start_paused = true)]
async fn announcements_at_100k_prefixes_follow_drain_and_reload() {
    const N: u32 = 100_000;
    let prefixes: Vec<String> = (0..N)
        .map(|i| format!("2001:db8:{:x}:{:x}00::/56", 0x100 + i / 256, i % 256))
        .collect();
    let refs: Vec<&str> = prefixes.iter().map(String::as_str).collect();
    let config = |extra: Option<&str>| {
        let mut c = test_config(None);
        let mut p = pop("fra1", &refs);
        p.prefixes
            .extend(extra.map(|e| e.parse::<ipnet::IpNet>().expect("prefix")));
        c.pops.insert(name("fra1"), p);
        c
    };
    let mut core = Driven::new(config(None), BTreeMap::new());
    feed(&mut core, "fra1", true, 3);
    feed(&mut core, "ams1", true, 3);
    let up = core.snapshot();
    assert_eq!(up.announcements.len(), N as usize);
    assert!(up
        .announcements
        .values()
        .all(|a| a.mode == AnnounceMode::Normal));
    feed(&mut core, "fra1", true, 50);
    assert!(Arc::ptr_eq(
        &core.snapshot().announcements,
        &up.announcements
    ));

    // Graceful drain: DNS first (routes unchanged), then every route GSHUT.
    admin(&mut core, drain("fra1", DrainMode::Graceful, true)).expect("drain");
    assert!(Arc::ptr_eq(
        &core.snapshot().announcements,
        &up.announcements
    ));
    tokio::time::advance(Duration::from_secs(30)).await;
    core.tick();
    let gshut = core.snapshot();
    assert_eq!(gshut.announcements.len(), N as usize);
    assert!(gshut
        .announcements
        .values()
        .all(|a| a.mode == AnnounceMode::GracefulShutdown && a.attrs.local_pref == Some(0)));
    feed(&mut core, "fra1", true, 10);
    assert!(Arc::ptr_eq(
        &core.snapshot().announcements,
        &gshut.announcements
    ));

    let undrain = AdminCommand::Undrain {
        pop: name("fra1"),
        who: "test".into(),
        mode: DrainMode::Immediate,
    };
    admin(&mut core, undrain).expect("undrain");
    let back = core.snapshot();
    assert_eq!(*back.announcements, *up.announcements);

    // A reload with the same content keeps the map; a prefix more adds it.
    let reload = |core: &mut Driven, c: Config| {
        let (reply, _rx) = oneshot::channel();
        core.input(Input::Reload {
            config: Arc::new(c),
            reply,
        });
    };
    reload(&mut core, config(None));
    assert!(Arc::ptr_eq(
        &core.snapshot().announcements,
        &back.announcements
    ));
    reload(&mut core, config(Some("2001:db8:ffff::/48")));
    let more = core.snapshot();
    assert_eq!(more.announcements.len(), N as usize + 1);
    assert!(more
        .announcements
        .contains_key(&"2001:db8:ffff::/48".parse().expect("prefix")));
}
