//! Golden tests of the core: every scenario in `src/core/testdata/*.txt`
//! (probe results, admin commands, reloads, a disk that fails, the passing
//! of time) is replayed against the real core task ([`Core::run`]) on
//! paused tokio time with a [`TokioClock`], and the transcript of what
//! came out — events, announcements, DNS eligibility, replies, saves — is
//! compared with the scenario's `expect:` section. Any difference fails.
//! The format and how to add a case: `src/core/testdata/README.md`.
//!
//! `ANYPOP_UPDATE_GOLDEN=1 cargo test -p anypop --lib core::golden`
//! rewrites the `expect:` sections from what the core does now; review
//! the diff before committing it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use ipnet::IpNet;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::Instant;

use super::admin::{AdminCommand, DrainMode};
use super::persist::SaveFailure;
use super::{
    Announcement, Clock, Core, Effect, Event, Input, ProbeOutcome, ProbeReport, Snapshot,
    TokioClock,
};
use crate::config::parse_duration;
use crate::model::{Config, PopName};

/// The wall-clock time the replays start at.
const WALL_START: Duration = Duration::from_secs(1_700_000_000);

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src/core/testdata")
}

/// One scenario file, parsed.
struct Scenario {
    config: String,
    steps: Vec<Step>,
    /// The file up to and including the `expect:` line.
    head: String,
    expect: Vec<String>,
}

struct Step {
    /// 1-based line in the file.
    line: usize,
    at: Duration,
    /// The command as written (echoed in the transcript).
    text: String,
    action: Action,
}

enum Action {
    Probe {
        pop: PopName,
        check: String,
        ok: bool,
        detail: String,
    },
    Admin(AdminCommand),
    Reload(String),
    /// The disk fails every save with this error (`None`: saves succeed).
    Disk(Option<String>),
    Tick,
}

/// Lines from `i` on that are blank or indented by two spaces, dedented.
fn block(lines: &[&str], i: &mut usize) -> String {
    let mut out = String::new();
    while *i < lines.len() && (lines[*i].trim().is_empty() || lines[*i].starts_with("  ")) {
        out.push_str(lines[*i].get(2..).unwrap_or(""));
        out.push('\n');
        *i += 1;
    }
    out
}

fn parse(text: &str) -> Result<Scenario, String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut config = None;
    let mut steps = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let n = i + 1;
        i += 1;
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if t == "config:" {
            config = Some(block(&lines, &mut i));
            continue;
        }
        if t == "expect:" {
            let head = lines[..i].join("\n") + "\n";
            let mut expect: Vec<String> = lines[i..]
                .iter()
                .map(|l| l.trim_end().to_string())
                .collect();
            while expect.last().is_some_and(|l| l.is_empty()) {
                expect.pop();
            }
            return Ok(Scenario {
                config: config.ok_or("no config: section before expect:")?,
                steps,
                head,
                expect,
            });
        }
        let rest = t.strip_prefix("at ").ok_or_else(|| {
            format!("line {n}: expected `at <time> <input>`, `config:` or `expect:`")
        })?;
        let (at, cmd) = rest
            .split_once(char::is_whitespace)
            .map(|(a, c)| (a, c.trim()))
            .unwrap_or((rest, ""));
        let at = parse_duration(at).map_err(|e| format!("line {n}: {e}"))?;
        let action = match cmd.split_whitespace().next().unwrap_or("") {
            "reload" => Action::Reload(block(&lines, &mut i)),
            _ => action(cmd).map_err(|e| format!("line {n}: {e}"))?,
        };
        steps.push(Step {
            line: n,
            at,
            text: cmd.to_string(),
            action,
        });
    }
    Err("no expect: section (an empty one is recorded with ANYPOP_UPDATE_GOLDEN=1)".into())
}

fn name(s: &str) -> Result<PopName, String> {
    PopName::parse(s)
}

/// Parses one input command (all but `reload`).
fn action(cmd: &str) -> Result<Action, String> {
    let (verb, rest) = cmd.split_once(' ').unwrap_or((cmd, ""));
    // `reason=` takes the rest of the line, so it comes last.
    let (args, reason) = match rest.split_once("reason=") {
        Some((a, r)) => (a, Some(r.trim().to_string())),
        None => (rest, None),
    };
    let mut words = args.split_whitespace();
    let pop = || -> Result<PopName, String> {
        name(
            args.split_whitespace()
                .next()
                .ok_or("a PoP name is missing")?,
        )
    };
    let flag = |f: &str| args.split_whitespace().skip(1).any(|w| w == f);
    let mode = if flag("immediate") {
        DrainMode::Immediate
    } else {
        DrainMode::Graceful
    };
    let who = "ops".to_string();
    Ok(match verb {
        "probe" => {
            let id = words.next().ok_or("probe needs <pop>/<check>")?;
            let (p, c) = id.split_once('/').ok_or("probe needs <pop>/<check>")?;
            let ok = match words.next() {
                Some("ok") => true,
                Some("fail") => false,
                _ => return Err("probe needs ok or fail".into()),
            };
            let detail = words.collect::<Vec<_>>().join(" ");
            Action::Probe {
                pop: name(p)?,
                check: c.to_string(),
                ok,
                detail,
            }
        }
        "drain" => {
            let duration = args
                .split_whitespace()
                .find_map(|w| w.strip_prefix("for="))
                .map(parse_duration)
                .transpose()?;
            Action::Admin(AdminCommand::Drain {
                pop: pop()?,
                reason: reason.unwrap_or_else(|| "maintenance".into()),
                who,
                duration,
                mode,
                force: flag("force"),
            })
        }
        "undrain" => Action::Admin(AdminCommand::Undrain {
            pop: pop()?,
            who,
            mode,
        }),
        "disable" => Action::Admin(AdminCommand::Disable {
            pop: pop()?,
            reason: reason.unwrap_or_else(|| "maintenance".into()),
            who,
            force: flag("force"),
        }),
        "enable" => Action::Admin(AdminCommand::Enable { pop: pop()?, who }),
        "disk" => match words.next() {
            Some("ok") => Action::Disk(None),
            Some("fail") => Action::Disk(Some(words.collect::<Vec<_>>().join(" "))),
            _ => return Err("disk needs ok or fail <error>".into()),
        },
        "tick" => Action::Tick,
        other => return Err(format!("unknown input {other:?}")),
    })
}

fn config(yaml: &str) -> Result<Arc<Config>, String> {
    crate::config::parse(yaml)
        .map(Arc::new)
        .map_err(|e| format!("invalid config:\n{e}"))
}

/// `12.345  text`: the time since the start of the replay.
fn line(at: Duration, text: impl std::fmt::Display) -> String {
    format!("{:>8.3}  {text}", at.as_secs_f64())
}

fn describe(a: &Announcement) -> String {
    let mut s = format!("{} {}", a.pop, a.mode.as_str());
    let at = &a.attrs;
    if at.prepend > 0 {
        s += &format!(" prepend={}", at.prepend);
    }
    if let Some(m) = at.med {
        s += &format!(" med={m}");
    }
    if let Some(lp) = at.local_pref {
        s += &format!(" local_pref={lp}");
    }
    if !at.communities.is_empty() {
        let c: Vec<String> = at
            .communities
            .iter()
            .map(|(a, b)| format!("{a}:{b}"))
            .collect();
        s += &format!(" communities={}", c.join(","));
    }
    if !at.large_communities.is_empty() {
        let c: Vec<String> = at
            .large_communities
            .iter()
            .map(|(a, b, c)| format!("{a}:{b}:{c}"))
            .collect();
        s += &format!(" large_communities={}", c.join(","));
    }
    s
}

/// Turns what the core publishes into transcript lines.
struct Observer {
    t0: Instant,
    wall0: SystemTime,
    events: broadcast::Receiver<Event>,
    /// Saves as (the snapshot version published when the save was done,
    /// transcript line).
    disk_log: Arc<Mutex<Vec<(u64, String)>>>,
    announced: BTreeMap<IpNet, Announcement>,
    dns: BTreeMap<PopName, bool>,
    states: BTreeMap<PopName, (super::PopState, String)>,
    unsaved: BTreeMap<PopName, String>,
    out: Vec<String>,
}

impl Observer {
    fn now(&self) -> Duration {
        Instant::now() - self.t0
    }

    fn event(&mut self, e: &Event) {
        let at = e.at.duration_since(self.wall0).unwrap_or_default();
        self.out
            .push(line(at, format!("event {} {}", e.kind, e.message)));
    }

    /// Records what changed since the last call, in the order it happened:
    /// saves done before `snap` was published, events, the snapshot's
    /// announcements, DNS eligibility, reasons and unsaved state, then
    /// saves done after.
    fn record(&mut self, snap: &Snapshot) {
        let saves: Vec<(u64, String)> = self.disk_log.lock().expect("log").drain(..).collect();
        let (before, after): (Vec<_>, Vec<_>) =
            saves.into_iter().partition(|(v, _)| *v < snap.version);
        self.out.extend(before.into_iter().map(|(_, l)| l));
        let mut state_events = std::collections::BTreeSet::new();
        while let Ok(e) = self.events.try_recv() {
            if e.kind == super::EventKind::PopState {
                state_events.extend(e.pop.clone());
            }
            self.event(&e);
        }
        let now = self.now();
        let prefixes: std::collections::BTreeSet<IpNet> = self
            .announced
            .keys()
            .chain(snap.announcements.keys())
            .copied()
            .collect();
        for p in prefixes {
            match (self.announced.get(&p), snap.announcements.get(&p)) {
                (Some(_), None) => self.out.push(line(now, format!("withdraw {p}"))),
                (old, Some(a)) if old != Some(a) => self
                    .out
                    .push(line(now, format!("announce {p} {}", describe(a)))),
                _ => {}
            }
        }
        self.announced = (*snap.announcements).clone();
        for (pop, on) in &self.dns {
            if *on && !snap.pops.contains_key(pop) {
                self.out.push(line(now, format!("dns {pop} off (removed)")));
            }
        }
        for (pop, p) in &snap.pops {
            if self.dns.get(pop).copied().unwrap_or(false) != p.serves_dns {
                let word = if p.serves_dns { "on" } else { "off" };
                self.out.push(line(now, format!("dns {pop} {word}")));
            }
            // A new reason without a pop_state event (which says why).
            if let Some((state, reason)) = self.states.get(pop) {
                if *state == p.state && *reason != p.reason && !state_events.contains(pop) {
                    self.out
                        .push(line(now, format!("reason {pop}: {}", p.reason)));
                }
            }
            match (self.unsaved.get(pop), &p.admin_unsaved) {
                (None, Some(e)) => self.out.push(line(now, format!("unsaved {pop}: {e}"))),
                (Some(_), None) => self.out.push(line(now, format!("saved {pop}"))),
                _ => {}
            }
        }
        self.dns = snap
            .pops
            .iter()
            .map(|(n, p)| (n.clone(), p.serves_dns))
            .collect();
        self.states = snap
            .pops
            .iter()
            .map(|(n, p)| (n.clone(), (p.state, p.reason.clone())))
            .collect();
        self.unsaved = snap
            .pops
            .iter()
            .filter_map(|(n, p)| p.admin_unsaved.clone().map(|e| (n.clone(), e)))
            .collect();
        self.out.extend(after.into_iter().map(|(_, l)| l));
    }
}

/// The disk of a replay: saves succeed or fail as the scenario says, and
/// each is written to the transcript.
async fn fake_disk(
    mut effects: mpsc::UnboundedReceiver<Effect>,
    inputs: mpsc::WeakSender<Input>,
    failing: Arc<Mutex<Option<String>>>,
    log: Arc<Mutex<Vec<(u64, String)>>>,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    t0: Instant,
) {
    while let Some(effect) = effects.recv().await {
        // A disk takes a moment: whoever is ready runs first (the
        // transcript sees a published step before its save).
        for _ in 0..8 {
            tokio::task::yield_now().await;
        }
        let Effect::SaveAdminState { id, overrides, .. } = effect;
        let content: Vec<String> = overrides
            .iter()
            .map(|(p, o)| format!("{p}={}", o.phase))
            .collect();
        let content = if content.is_empty() {
            "(no overrides)".to_string()
        } else {
            content.join(" ")
        };
        let failure = failing.lock().expect("disk").clone();
        let result = match &failure {
            None => Ok(()),
            Some(e) => Err(SaveFailure {
                error: e.clone(),
                replaced: false,
            }),
        };
        let outcome = failure.map_or("ok".to_string(), |e| format!("failed: {e}"));
        let version = snapshots.borrow().version;
        let text = line(Instant::now() - t0, format!("save {content}: {outcome}"));
        log.lock().expect("log").push((version, text));
        let Some(tx) = inputs.upgrade() else { return };
        if tx.send(Input::Saved { id, result }).await.is_err() {
            return;
        }
    }
}

/// Lets every task that is ready at this instant run (timer steps due now
/// are applied before an input at the same time), then records.
async fn settle(snaps: &mut watch::Receiver<Arc<Snapshot>>, obs: &mut Observer) {
    for _ in 0..32 {
        tokio::task::yield_now().await;
    }
    let snap = snaps.borrow_and_update().clone();
    obs.record(&snap);
}

/// Replays `sc` and returns the transcript.
async fn replay(sc: &Scenario) -> Result<Vec<String>, String> {
    let wall0 = SystemTime::UNIX_EPOCH + WALL_START;
    let clock = TokioClock::starting_at(wall0);
    let t0 = Instant::now();
    let (mut core, handle, io) = Core::new(config(&sc.config)?, BTreeMap::new(), clock.now());
    let (tx, mut rx) = oneshot::channel();
    core.handle(Input::Subscribe { reply: tx }, clock.now());
    let (replayed, events) = rx.try_recv().map_err(|e| e.to_string())?;
    let failing = Arc::new(Mutex::new(None));
    let disk_log = Arc::new(Mutex::new(Vec::new()));
    tokio::spawn(fake_disk(
        io.effects,
        handle.inputs.downgrade(),
        failing.clone(),
        disk_log.clone(),
        handle.snapshots.clone(),
        t0,
    ));
    tokio::spawn(core.run(io.inputs, clock));
    let mut obs = Observer {
        t0,
        wall0,
        events,
        disk_log,
        announced: BTreeMap::new(),
        dns: BTreeMap::new(),
        states: BTreeMap::new(),
        unsaved: BTreeMap::new(),
        out: Vec::new(),
    };
    for e in &replayed {
        obs.event(e);
    }
    let mut snaps = handle.snapshots.clone();
    settle(&mut snaps, &mut obs).await;
    let mut seq = 0;
    for step in &sc.steps {
        let until = t0 + step.at;
        if until < Instant::now() {
            return Err(format!("line {}: time goes backwards", step.line));
        }
        // Let time pass, recording what the core does on its own.
        loop {
            tokio::select! {
                biased;
                r = snaps.changed() => {
                    r.map_err(|_| "the core ended".to_string())?;
                    let snap = snaps.borrow_and_update().clone();
                    obs.record(&snap);
                }
                _ = tokio::time::sleep_until(until) => break,
            }
        }
        settle(&mut snaps, &mut obs).await;
        obs.out.push(line(obs.now(), format!(">> {}", step.text)));
        let reply = match &step.action {
            Action::Probe {
                pop,
                check,
                ok,
                detail,
            } => {
                seq += 1;
                let known = snaps.borrow().check(pop.as_str(), check).is_some();
                let report = ProbeReport {
                    pop: pop.clone(),
                    check: crate::model::CheckName::parse(check)?,
                    seq,
                    outcome: ProbeOutcome {
                        ok: *ok,
                        detail: detail.clone(),
                        took: Duration::from_millis(1),
                        at: wall0 + step.at,
                    },
                };
                handle
                    .inputs
                    .send(Input::Probe(report))
                    .await
                    .map_err(|e| e.to_string())?;
                if known {
                    let applied = |s: &Arc<Snapshot>| {
                        s.check(pop.as_str(), check).is_some_and(|c| c.seq >= seq)
                    };
                    snaps
                        .wait_for(applied)
                        .await
                        .map_err(|_| "the core ended".to_string())?;
                }
                None
            }
            Action::Admin(cmd) => {
                let (reply, rx) = oneshot::channel();
                handle
                    .inputs
                    .send(Input::Admin {
                        cmd: cmd.clone(),
                        reply,
                    })
                    .await
                    .map_err(|e| e.to_string())?;
                let r = rx.await.map_err(|_| "no reply".to_string())?;
                let verb = step.text.split_whitespace().next().unwrap_or("");
                Some(match r {
                    Ok(_) => format!("reply {verb} {}: ok", cmd.pop()),
                    Err(e) => format!("reply {verb} {}: refused: {e}", cmd.pop()),
                })
            }
            Action::Reload(yaml) => {
                handle
                    .reload(config(yaml).map_err(|e| format!("line {}: {e}", step.line))?)
                    .await
                    .map_err(|e| e.to_string())?;
                Some("reply reload: ok".to_string())
            }
            Action::Disk(f) => {
                *failing.lock().expect("disk") = f.clone();
                None
            }
            Action::Tick => None,
        };
        settle(&mut snaps, &mut obs).await;
        if let Some(r) = reply {
            obs.out.push(line(obs.now(), r));
        }
    }
    Ok(obs.out)
}

/// A line diff of two transcripts (longest common subsequence): `  `
/// same, `- ` only expected, `+ ` only got.
fn diff(want: &[String], got: &[String]) -> String {
    let (n, m) = (want.len(), got.len());
    // lcs[i][j]: the longest common subsequence of want[i..] and got[j..].
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if want[i] == got[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < n || j < m {
        if i < n && j < m && want[i] == got[j] {
            out += &format!("  {}\n", got[j]);
            (i, j) = (i + 1, j + 1);
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out += &format!("- {}\n", want[i]);
            i += 1;
        } else {
            out += &format!("+ {}\n", got[j]);
            j += 1;
        }
    }
    out
}

fn run_file(path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let sc = parse(&text)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .map_err(|e| e.to_string())?;
    let got: Vec<String> = rt
        .block_on(replay(&sc))?
        .into_iter()
        .map(|l| l.trim_end().to_string())
        .collect();
    if got == sc.expect {
        return Ok(());
    }
    if std::env::var_os("ANYPOP_UPDATE_GOLDEN").is_some() {
        let body = got.join("\n");
        std::fs::write(path, format!("{}{body}\n", sc.head)).map_err(|e| e.to_string())?;
        return Ok(());
    }
    let diff = diff(&sc.expect, &got);
    Err(format!(
        "the transcript differs (- expected, + got; ANYPOP_UPDATE_GOLDEN=1 records it):\n{diff}"
    ))
}

#[test]
fn scenarios_replay_as_recorded() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(testdata())
        .expect("src/core/testdata")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no scenarios in {}",
        testdata().display()
    );
    let mut failed = Vec::new();
    for f in &files {
        if let Err(e) = run_file(f) {
            failed.push(format!("{}: {e}", f.display()));
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} scenarios failed:\n\n{}",
        failed.len(),
        files.len(),
        failed.join("\n\n")
    );
}

#[test]
fn the_format_is_parsed_and_errors_name_the_line() {
    let sc = parse(
        "# comment\nconfig:\n  node: {name: x}\n\nat 0s probe a/b ok fine\nat 1.5s drain a immediate force for=5m reason=fibre cut\nat 2s reload\n  node: {name: y}\nat 3s disk fail disk full\nexpect:\n   0.000  >> probe a/b ok fine\n\n",
    )
    .expect("parses");
    assert_eq!(sc.config, "node: {name: x}\n\n");
    assert_eq!(sc.steps.len(), 4);
    assert_eq!(sc.steps[1].at, Duration::from_millis(1500));
    match &sc.steps[1].action {
        Action::Admin(AdminCommand::Drain {
            reason,
            duration,
            mode,
            force,
            ..
        }) => {
            assert_eq!(reason, "fibre cut");
            assert_eq!(*duration, Some(Duration::from_secs(300)));
            assert_eq!(*mode, DrainMode::Immediate);
            assert!(force);
        }
        _ => panic!("a drain"),
    }
    assert!(matches!(&sc.steps[2].action, Action::Reload(y) if y == "node: {name: y}\n"));
    assert!(matches!(&sc.steps[3].action, Action::Disk(Some(e)) if e == "disk full"));
    assert_eq!(sc.expect, vec!["   0.000  >> probe a/b ok fine"]);
    let e = parse("config:\n  x: 1\nat 1s explode\nexpect:\n")
        .err()
        .expect("error");
    assert!(e.contains("line 3") && e.contains("explode"), "{e}");
    let e = parse("config:\n  x: 1\nat soon tick\nexpect:\n")
        .err()
        .expect("error");
    assert!(e.contains("line 3"), "{e}");
    assert!(parse("at 1s tick\n").is_err(), "no expect: section");
}

#[test]
fn the_diff_shows_only_what_changed() {
    let l = |s: &str| s.lines().map(str::to_string).collect::<Vec<_>>();
    let d = diff(&l("a\nb\nc\nd"), &l("a\nx\nc\nd\ne"));
    assert_eq!(d, "  a\n- b\n+ x\n  c\n  d\n+ e\n");
    assert_eq!(diff(&l("a\nb"), &l("b")), "- a\n  b\n");
}
