//! Core tests: the controller driven through its inputs, on paused time.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::admin::{AdminCommand, AdminError, DrainMode, Phase};
use super::*;
use crate::health::hysteresis::CheckState;
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

fn report(pop: &str, ok: bool, state: CheckState) -> (Input, CheckState) {
    let next = state.step(ok, 3, 2);
    let r = CheckReport {
        pop: name(pop),
        check: name("edge"),
        state: next,
        outcome: ProbeOutcome {
            ok,
            detail: if ok {
                "connected".into()
            } else {
                "connect refused".into()
            },
            took: Duration::from_millis(1),
            at: SystemTime::now(),
        },
    };
    (Input::Check(r), next)
}

/// Feeds `n` identical results for `pop` through the core.
fn feed(core: &mut Core, pop: &str, ok: bool, n: usize, states: &mut BTreeMap<String, CheckState>) {
    for _ in 0..n {
        let st = states.entry(pop.to_string()).or_default();
        let (input, next) = report(pop, ok, *st);
        *st = next;
        core.handle(input, Instant::now(), SystemTime::now());
    }
}

fn admin(core: &mut Core, cmd: AdminCommand) -> Result<u64, AdminError> {
    let (tx, mut rx) = oneshot::channel();
    core.handle(
        Input::Admin { cmd, reply: tx },
        Instant::now(),
        SystemTime::now(),
    );
    rx.try_recv().expect("core replies synchronously")
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

#[tokio::test(start_paused = true)]
async fn health_drives_state_and_announcements() {
    let (mut core, handle, _rx) = Core::new(Arc::new(test_config(None)), BTreeMap::new());
    let mut st = BTreeMap::new();
    assert!(
        core.snapshot().announcements.is_empty(),
        "nothing before health is known"
    );
    feed(&mut core, "fra1", true, 2, &mut st);
    assert_eq!(core.snapshot().pops["fra1"].state, PopState::Down);
    assert!(core.snapshot().announcements.is_empty());
    feed(&mut core, "fra1", true, 1, &mut st);
    let snap = handle.snapshots.borrow().clone();
    assert_eq!(snap.pops["fra1"].state, PopState::Up);
    assert!(snap.pops["fra1"].serves_dns);
    assert_eq!(snap.announcements.len(), 2);
    let a = &snap.announcements[&"203.0.113.0/24".parse().expect("prefix")];
    assert_eq!((a.mode, a.attrs.med), (AnnounceMode::Normal, Some(10)));
    // One lost probe changes nothing, not even the announcement set's Arc.
    feed(&mut core, "fra1", false, 1, &mut st);
    let after = core.snapshot();
    assert_eq!(after.pops["fra1"].state, PopState::Up);
    assert!(Arc::ptr_eq(&after.announcements, &snap.announcements));
    feed(&mut core, "fra1", false, 1, &mut st);
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
    feed(&mut core, "ams1", true, 3, &mut st);
    assert!(core.snapshot().announcements.is_empty());
}

#[tokio::test(start_paused = true)]
async fn graceful_drain_choreography_and_guard() {
    let (mut core, _handle, _rx) = Core::new(Arc::new(test_config(None)), BTreeMap::new());
    let mut st = BTreeMap::new();
    feed(&mut core, "fra1", true, 3, &mut st);
    // ams1 is down: fra1 is the last PoP for 203.0.113.0/24.
    feed(&mut core, "ams1", false, 2, &mut st);
    assert_eq!(
        admin(&mut core, drain("fra1", DrainMode::Graceful, false)),
        Err(AdminError::LastPop("fra1".into()))
    );
    assert_eq!(core.snapshot().pops["fra1"].state, PopState::Up);
    assert_eq!(
        admin(&mut core, drain("nope", DrainMode::Graceful, false)),
        Err(AdminError::UnknownPop("nope".into()))
    );
    feed(&mut core, "ams1", true, 3, &mut st);
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
    let deadline = core
        .next_deadline(Instant::now(), SystemTime::now())
        .expect("deadline");
    assert_eq!(deadline - Instant::now(), Duration::from_secs(30));
    tokio::time::advance(Duration::from_secs(30)).await;
    core.on_timer(Instant::now(), SystemTime::now());
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
    core.on_timer(Instant::now(), SystemTime::now());
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
    core.on_timer(Instant::now(), SystemTime::now());
    let s = core.snapshot();
    assert_eq!(s.pops["fra1"].state, PopState::Up);
    assert!(s.pops["fra1"].serves_dns);
    // Every step was an event, in order.
    let (tx, mut rx) = oneshot::channel();
    core.handle(
        Input::Subscribe { reply: tx },
        Instant::now(),
        SystemTime::now(),
    );
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

#[tokio::test(start_paused = true)]
async fn admin_state_survives_restart_and_reload() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = Arc::new(test_config(Some(dir.path().to_path_buf())));
    let (mut core, _h, _rx) = Core::new(cfg.clone(), BTreeMap::new());
    let mut st = BTreeMap::new();
    feed(&mut core, "fra1", true, 3, &mut st);
    admin(&mut core, drain("fra1", DrainMode::Immediate, true)).expect("drain");
    assert!(core.snapshot().announcements.is_empty());
    drop(core);
    // "Restart": a new core loads the state file.
    let loaded = persist::load(dir.path()).expect("load state");
    assert_eq!(loaded.len(), 1);
    let (mut core, _h, _rx) = Core::new(cfg.clone(), loaded);
    let mut st = BTreeMap::new();
    feed(&mut core, "fra1", true, 3, &mut st);
    let s = core.snapshot();
    assert_eq!(s.pops["fra1"].state, PopState::Draining);
    assert!(s.announcements.is_empty());
    // A reload keeps overrides and check states.
    let (tx, _rx2) = oneshot::channel();
    core.handle(
        Input::Reload {
            config: cfg,
            reply: tx,
        },
        Instant::now(),
        SystemTime::now(),
    );
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
    let (mut core, _h, _rx) = Core::new(Arc::new(test_config(None)), BTreeMap::new());
    let mut st = BTreeMap::new();
    feed(&mut core, "fra1", true, 3, &mut st);
    let cmd = AdminCommand::Drain {
        pop: name("fra1"),
        reason: "short".into(),
        who: "t".into(),
        duration: Some(Duration::from_secs(5)),
        mode: DrainMode::Immediate,
        force: true,
    };
    admin(&mut core, cmd).expect("drain");
    assert!(core.snapshot().announcements.is_empty());
    // The expiry is wall-clock: pass a wall time past it.
    let later = SystemTime::now() + Duration::from_secs(6);
    core.on_timer(Instant::now(), later);
    // Expiry ramps back: routes at once, DNS after the settle time (10 s).
    let s = core.snapshot();
    assert_eq!(s.announcements.len(), 2);
    assert!(!s.pops["fra1"].serves_dns);
    assert_eq!(
        s.pops["fra1"].admin.as_ref().map(|a| a.step),
        Some(Phase::Restoring)
    );
    tokio::time::advance(Duration::from_secs(10)).await;
    core.on_timer(Instant::now(), later + Duration::from_secs(10));
    let s = core.snapshot();
    assert_eq!(s.pops["fra1"].state, PopState::Up);
    assert!(s.pops["fra1"].serves_dns);
    assert!(s.pops["fra1"].admin.is_none());
}

/// A reload that adds a check to a healthy PoP must not withdraw it while
/// the new check is undecided; the new check's verdict then counts.
#[tokio::test(start_paused = true)]
async fn reload_with_new_check_keeps_verdict_until_it_decides() {
    let (mut core, _h, _rx) = Core::new(Arc::new(test_config(None)), BTreeMap::new());
    let mut st = BTreeMap::new();
    feed(&mut core, "fra1", true, 3, &mut st);
    let before = core.snapshot();
    assert_eq!(before.announcements.len(), 2);

    let mut cfg = test_config(None);
    let fra1 = cfg.pops.get_mut("fra1").expect("fra1");
    let mut extra = fra1.checks[0].clone();
    extra.name = name("new-http");
    fra1.checks.push(extra);
    let (tx, _rx2) = oneshot::channel();
    core.handle(
        Input::Reload {
            config: Arc::new(cfg),
            reply: tx,
        },
        Instant::now(),
        SystemTime::now(),
    );
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
    let mut new_state = CheckState::default();
    for _ in 0..2 {
        new_state = new_state.step(false, 3, 2);
        core.handle(
            Input::Check(CheckReport {
                pop: name("fra1"),
                check: name("new-http"),
                state: new_state,
                outcome: ProbeOutcome {
                    ok: false,
                    detail: "status 503".into(),
                    took: Duration::from_millis(1),
                    at: SystemTime::now(),
                },
            }),
            Instant::now(),
            SystemTime::now(),
        );
    }
    let s = core.snapshot();
    assert_eq!(s.pops["fra1"].state, PopState::Down);
    assert!(s.announcements.is_empty());
}

#[tokio::test(start_paused = true)]
async fn timed_drain_shows_expiry_as_next_event() {
    let (mut core, _h, _rx) = Core::new(Arc::new(test_config(None)), BTreeMap::new());
    let mut st = BTreeMap::new();
    feed(&mut core, "fra1", true, 3, &mut st);
    feed(&mut core, "ams1", true, 3, &mut st);
    let wall = SystemTime::now();
    let cmd = AdminCommand::Drain {
        pop: name("fra1"),
        reason: "short".into(),
        who: "t".into(),
        // Expires before the 30 s DNS wait ends.
        duration: Some(Duration::from_secs(20)),
        mode: DrainMode::Graceful,
        force: false,
    };
    let (tx, mut rx) = oneshot::channel();
    core.handle(Input::Admin { cmd, reply: tx }, Instant::now(), wall);
    rx.try_recv().expect("reply").expect("drain accepted");
    let admin = core.snapshot().pops["fra1"].admin.clone().expect("admin");
    let until = admin.until.expect("until");
    assert_eq!(until, wall + Duration::from_secs(20));
    assert_eq!(admin.next_at, Some(until), "expiry is the next event");
}
