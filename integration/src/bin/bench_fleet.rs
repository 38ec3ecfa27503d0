//! Fleet benchmark (not a test): realises topologies/three-pop (three
//! anypop nodes as a fleet, real FRR, real HTTP services) and measures how
//! fast a change on one PoP reaches every node's DNS answers:
//!
//! 1. drain: from the moment before `POST /v1/pops/c/drain` (graceful,
//!    `force` because c alone announces its unicast prefix)
//!    is sent to node a until the last of the three nodes answers `all.example.net`
//!    without c (the call is forwarded to c's node, which publishes the
//!    drain; a and b follow its report);
//! 2. failure: from killing PoP c's HTTP service until the last node
//!    answers without c (c's own check fails, the others follow its
//!    report or their own probes of c).
//!
//! Three modes, each `--reps N` times (default 10) per change:
//!
//! - `stream`: the fleet's long-poll (`stream: true`) with the lab's HTTP
//!   checks (interval 500 ms, fall 2);
//! - `poll`: plain polling (`stream: false`, pull every `pull_interval`,
//!   1 s) with the lab's checks;
//! - `fast`: the long-poll with the HTTP checks an operator who wants fast
//!   failover sets (`--fast-check` interval, 100 ms by default; fall 1),
//!   failures only (a drain does not involve the checks).
//!
//! A UDP socket in client1's namespace asks each node in turn, one query
//! in flight, a round of three queries at most every 2 ms (below the
//! nodes' DNS rate limit), so the resolution is about 2 ms; each
//! repetition line shows, per
//! node, how long before its first changed answer it last answered
//! unchanged (the measurement's resolution) and how many queries went
//! unanswered (each costs up to the 200 ms read timeout). After a change
//! the bench reads nodes a's and b's `GET /v1/fleet` at once: the age of
//! the last report they received from c's node dates the report that
//! carried the change, which splits the peers' delay into the pull
//! schedule (report received after c's own DNS) and the merge plus DNS
//! (their DNS after the report).
//!
//! Each change comes after a pseudo-random pause of 0–1 s, so it falls at
//! a random point of the pull and check intervals. Between repetitions
//! the PoP is restored and the bench waits until every node answers with
//! it again and every node's fleet view has shown it fully up (owner and
//! every vantage point) for 2 s.
//!
//! Usage (as root):
//! `bench_fleet [--reps N] [--skip stream|poll|fast]... [--fast-check MS]`.
//! Prints each repetition's per-node times, then per mode and change
//! min / median / max of: node c's own DNS (the owner: for the failure,
//! its check's detection), the last node's DNS (the figure of the issue),
//! the last node after c (what the fleet adds), and for the peers the
//! report's arrival after c's DNS and their DNS after the report. Never
//! asserts.

use std::net::{Ipv4Addr, UdpSocket};
use std::time::{Duration, Instant};

use anypop_integration::lab::three_pop::{self, ThreePop, ALL, POPS};
use anypop_integration::{dns, wait_until};
use serde_json::Value;

const USAGE: &str = "usage: bench_fleet [--reps N] [--skip stream|poll|fast]... [--fast-check MS]";

/// A change that does not reach every node in this long is reported as a
/// timeout instead of a number.
const LONG: Duration = Duration::from_secs(60);

struct Args {
    reps: usize,
    skip: Vec<String>,
    /// The HTTP check interval of the `fast` mode.
    fast_check: Duration,
}

/// The lab's HTTP check timings, the same on every node for every PoP.
const LAB_CHECK: &str = "interval: 500ms, fast_interval: 100ms, timeout: 400ms, rise: 2, fall: 2";

/// The HTTP check timings of the `fast` mode: `interval`, the fast
/// interval at half of it (jitter then defaults to a quarter), the timeout
/// at 80 % of it and `fall: 1` (one refused probe is the failure); `rise`
/// stays at the lab's 2, so coming back is still confirmed.
fn fast_check(interval: Duration) -> String {
    let ms = |d: Duration| format!("{}ms", d.as_millis());
    format!(
        "interval: {}, fast_interval: {}, timeout: {}, rise: 2, fall: 1",
        ms(interval),
        ms(interval / 2),
        ms(interval * 4 / 5)
    )
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        reps: 10,
        skip: Vec::new(),
        fast_check: Duration::from_millis(100),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--reps" => {
                a.reps = val("--reps")?.parse().map_err(|e| format!("--reps: {e}"))?;
                if a.reps == 0 {
                    return Err("--reps: at least 1".into());
                }
            }
            "--skip" => {
                let s = val("--skip")?;
                if !Mode::ALL.iter().any(|m| m.name() == s) {
                    return Err(format!("--skip {s}: expected stream, poll or fast"));
                }
                a.skip.push(s);
            }
            "--fast-check" => {
                let ms: u64 = val("--fast-check")?
                    .parse()
                    .map_err(|e| format!("--fast-check: {e}"))?;
                if ms < 10 {
                    return Err("--fast-check: at least 10 (milliseconds)".into());
                }
                a.fast_check = Duration::from_millis(ms);
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(a)
}

/// The three modes, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Stream,
    Poll,
    Fast,
}

impl Mode {
    const ALL: [Mode; 3] = [Mode::Stream, Mode::Poll, Mode::Fast];

    fn name(self) -> &'static str {
        match self {
            Mode::Stream => "stream",
            Mode::Poll => "poll",
            Mode::Fast => "fast",
        }
    }

    /// The node config of this mode from the topology's.
    fn config(self, yaml: String, fast_interval: Duration) -> String {
        assert!(yaml.contains("\nfleet:\n"), "topology config has no fleet");
        let stream = self != Mode::Poll;
        let yaml = yaml.replace("\nfleet:\n", &format!("\nfleet:\n  stream: {stream}\n"));
        if self != Mode::Fast {
            return yaml;
        }
        assert_eq!(
            yaml.matches(LAB_CHECK).count(),
            POPS.len(),
            "the topology's HTTP check timings changed; update LAB_CHECK"
        );
        yaml.replace(LAB_CHECK, &fast_check(fast_interval))
    }
}

/// One node's view of a change, as the prober saw it.
#[derive(Debug, Clone, Copy, Default)]
struct Seen {
    /// Its first answer with the change.
    at: Option<Duration>,
    /// Its last answer before that one (without the change).
    before: Option<Duration>,
    /// Its queries that got no answer.
    lost: u32,
}

/// The shortest time between two rounds of queries (one to each node):
/// each node gets at most 500 queries a second, half of what its DNS
/// rate limiting (on by default off loopback, 1000 responses per second
/// per client /24) lets through. Faster, its account runs dry, a response
/// is dropped, and the prober loses up to its 200 ms read timeout.
const ROUND: Duration = Duration::from_millis(2);

/// Asks the nodes from client1's namespace.
struct Prober {
    sock: UdpSocket,
    id: u16,
}

impl Prober {
    fn new(lab: &ThreePop) -> Prober {
        // A socket keeps the namespace it was created in.
        let sock = lab
            .lab
            .in_ns("client1", || UdpSocket::bind("0.0.0.0:0"))
            .and_then(|r| r.map_err(|e| e.to_string()))
            .unwrap_or_else(|e| panic!("socket in client1: {e}"));
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap_or_else(|e| panic!("set_read_timeout: {e}"));
        Prober { sock, id: 0 }
    }

    /// Whether node `server` answers `all` with PoP `pop` (`None`: no
    /// usable answer).
    fn answers_with(&mut self, server: &str, pop: &str) -> Option<bool> {
        self.id = self.id.wrapping_add(1);
        let to = format!("{}:53", three_pop::pop(server).host_addr);
        self.sock.send_to(&dns::query_a(self.id, ALL), &to).ok()?;
        let mut buf = [0u8; 1500];
        loop {
            let n = self.sock.recv(&mut buf).ok()?;
            if let Some(addrs) = dns::a_records(&buf[..n], self.id) {
                let want: Ipv4Addr = three_pop::pop(pop).service_addr.parse().ok()?;
                return Some(addrs.contains(&want));
            }
        }
    }

    /// From `t0`, until every node answers with (`present`) or without
    /// PoP `pop`: what each node did; `at` stays `None` for a node that
    /// did not within [`LONG`].
    fn watch(&mut self, t0: Instant, pop: &str, present: bool) -> Vec<Seen> {
        let mut seen = vec![Seen::default(); POPS.len()];
        let mut round = Instant::now();
        while seen.iter().any(|s| s.at.is_none()) && t0.elapsed() < LONG {
            std::thread::sleep(ROUND.saturating_sub(round.elapsed()));
            round = Instant::now();
            for (i, s) in POPS.iter().enumerate() {
                if seen[i].at.is_some() {
                    continue;
                }
                match self.answers_with(s, pop) {
                    Some(p) if p == present => seen[i].at = Some(t0.elapsed()),
                    Some(_) => seen[i].before = Some(t0.elapsed()),
                    None => seen[i].lost += 1,
                }
            }
        }
        seen
    }
}

/// The change being timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Drain,
    Failure,
}

impl Change {
    fn name(self) -> &'static str {
        match self {
            Change::Drain => "drain",
            Change::Failure => "failure",
        }
    }

    /// Whether a node's fleet view of PoP c (`pops.c` of `GET /v1/fleet`)
    /// has the owner's side of this change: the drain, or c's own checks
    /// down (on c itself its verdict, elsewhere what c's report said).
    fn owner_has_it(self, c: &Value) -> bool {
        match self {
            Change::Drain => !c["admin"].is_null(),
            Change::Failure => c["owner"]["verdict"] == "down" || c["owner"]["reported"] == "down",
        }
    }
}

/// What a node's fleet view showed just after a change.
#[derive(Debug, Clone, Copy, Default)]
struct After {
    /// The owner's side of the change had reached the node (see
    /// [`Change::owner_has_it`]). If not, the node changed on the other
    /// vantage points' outside-in verdicts (quorum) alone.
    owner: bool,
    /// Nodes a and b, when the owner's side was there: when the last
    /// report of c's node arrived, as time since `t0` (at most the API
    /// call's latency early; 0 if that puts it before `t0`).
    report: Option<Duration>,
}

/// Every node's `GET /v1/fleet`, read right after the last node changed
/// (within milliseconds: the next report with the long-poll comes with
/// the next revision, with polling a pull interval later, so the last
/// report a node received is usually the one that carried the change;
/// a drain's DNS step confirmed by the peers is a new revision, though).
/// A report arrival is the peer's `age` subtracted from the moment the
/// call was made.
fn after_change(lab: &ThreePop, t0: Instant, change: Change) -> Vec<After> {
    POPS.iter()
        .map(|&node| {
            let asked = Instant::now();
            let view = lab.fleet(node);
            let owner = change.owner_has_it(&view["pops"]["c"]);
            let report = (node != "c" && owner)
                .then(|| {
                    let peer = view["peers"]
                        .as_object()?
                        .values()
                        .find(|p| p["pop"] == "c")?;
                    let age = Duration::try_from_secs_f64(peer["age"].as_f64()?).ok()?;
                    Some(asked.checked_sub(age)?.saturating_duration_since(t0))
                })
                .flatten();
            After { owner, report }
        })
        .collect()
}

/// The pulls nodes a and b have made of c's node so far (`pulls` of the
/// peer in their `GET /v1/fleet`) and the pull errors.
fn pull_counts(lab: &ThreePop) -> Vec<(u64, u64)> {
    POPS.iter()
        .filter(|&&n| n != "c")
        .map(|&node| {
            let view = lab.fleet(node);
            let peer: Option<&Value> = view["peers"]
                .as_object()
                .and_then(|m| m.values().find(|p| p["pop"] == "c"));
            peer.map(|p| {
                (
                    p["pulls"].as_u64().unwrap_or(0),
                    p["pull_errors"].as_u64().unwrap_or(0),
                )
            })
            .unwrap_or_default()
        })
        .collect()
}

/// One timed change: what the prober saw per node and what the nodes'
/// fleet views showed after it.
struct Sample {
    seen: Vec<Seen>,
    after: Vec<After>,
}

impl Sample {
    fn times(&self) -> Option<Vec<Duration>> {
        self.seen.iter().map(|s| s.at).collect()
    }
}

/// Runs `trigger` with `prober` watching for PoP c to leave every node's
/// answers; times since just before `trigger`.
fn time_change(lab: &mut ThreePop, change: Change, trigger: impl FnOnce(&mut ThreePop)) -> Sample {
    let mut prober = Prober::new(lab);
    let t0 = Instant::now();
    let watcher = std::thread::spawn(move || prober.watch(t0, "c", false));
    trigger(lab);
    let seen = watcher.join().unwrap_or_default();
    let after = after_change(lab, t0, change);
    Sample { seen, after }
}

/// How long PoP c must look fully restored in every node's fleet view
/// before the next repetition: longer than a pull interval plus a round
/// trip, so that no report decided during the last change is still on its
/// way.
const SETTLE: Duration = Duration::from_secs(2);

/// Waits until every node answers with PoP c again, c's unicast prefix is
/// in the transit's FIB, and every node's fleet view has shown c fully
/// back for [`SETTLE`] without a break. Without the last part a repetition
/// could start while an outside-in "unreachable" from the last one is
/// still on its way to a node (with polling, up to a pull interval), and
/// that node would steer away from c before the change being timed.
fn wait_restored(lab: &ThreePop) -> bool {
    let mut prober = Prober::new(lab);
    let back = prober.watch(Instant::now(), "c", true);
    if !back.iter().all(|s| s.at.is_some()) {
        return false;
    }
    let fib = wait_until(LONG, || {
        lab.transit_next_hop(three_pop::pop("c").unicast_prefix) == Some("c")
    });
    let deadline = Instant::now() + LONG;
    let mut since: Option<Instant> = None;
    while fib && Instant::now() < deadline {
        if POPS.iter().all(|s| lab.settled_on(s, "c")) {
            let t = *since.get_or_insert_with(Instant::now);
            if t.elapsed() >= SETTLE {
                return true;
            }
        } else {
            since = None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// A pseudo-random pause of 0 to 1 s before each change, so that the
/// change falls at a random point of the pull interval (1 s) and of c's
/// check interval instead of always just after the pull or the check
/// that ended the restore.
fn random_phase(state: &mut u64) -> Duration {
    // xorshift64
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    Duration::from_micros(*state % 1_000_000)
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

/// "min / median / max (n)" of `v` in milliseconds; the median of an even
/// count is the mean of the two middle values.
fn min_med_max(mut v: Vec<Duration>) -> String {
    if v.is_empty() {
        return "-".to_string();
    }
    v.sort();
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2
    };
    format!(
        "{} / {} / {} ms (n={n})",
        ms(v[0]),
        ms(median),
        ms(v[n - 1])
    )
}

/// The index of PoP c in [`POPS`].
fn c_index() -> usize {
    POPS.iter().position(|p| *p == "c").unwrap_or(2)
}

/// The summary rows of one mode and change: the owner node c's own DNS,
/// the last node's (the benchmark's figure), the last node after c (the
/// fleet's share), and for the peers a and b the arrival of c's report
/// after c's DNS (pull schedule) and their DNS after the report (merge,
/// DNS, measurement). Repetitions in which a node never changed are
/// counted apart.
fn print_summary(mode: &str, change: &str, samples: &[Sample]) {
    let complete: Vec<(Vec<Duration>, &Sample)> = samples
        .iter()
        .filter_map(|s| s.times().map(|t| (t, s)))
        .collect();
    let timeouts = samples.len() - complete.len();
    let c = c_index();
    let last = |s: &Vec<Duration>| s.iter().copied().max().unwrap_or_default();
    let owner: Vec<Duration> = complete.iter().map(|(s, _)| s[c]).collect();
    let lasts: Vec<Duration> = complete.iter().map(|(s, _)| last(s)).collect();
    let spread: Vec<Duration> = complete
        .iter()
        .map(|(s, _)| last(s).saturating_sub(s[c]))
        .collect();
    // Peers that changed on c's report: its arrival is known and came
    // before their DNS changed. Those whose view did not have the
    // owner's side yet changed on the outside-in verdicts (their own
    // probe and the other vantage point's); for the rest a later report
    // had come before the read.
    let mut pull = Vec::new();
    let mut publish = Vec::new();
    let (mut outside, mut later) = (0, 0);
    for (s, sample) in &complete {
        for (i, a) in sample.after.iter().enumerate() {
            if i == c {
                continue;
            }
            match a.report.filter(|r| *r <= s[i]) {
                Some(r) => {
                    pull.push(r.saturating_sub(s[c]));
                    publish.push(s[i] - r);
                }
                None if !a.owner => outside += 1,
                None => later += 1,
            }
        }
    }
    let row = |what: &str, v: Vec<Duration>| {
        println!("{mode:6} {change:8} {what:30} {}", min_med_max(v));
    };
    row("node c (owner) DNS", owner);
    row("last node's DNS", lasts);
    row("last node after c", spread);
    row("a/b: c's report after c's DNS", pull);
    row("a/b: own DNS after c's report", publish);
    if outside + later > 0 {
        println!(
            "{mode:6} {change:8} a/b: {outside} change(s) on the outside-in quorum before c's report, {later} with a later report read"
        );
    }
    if timeouts > 0 {
        println!(
            "{mode:6} {change:8} {timeouts} repetition(s) without every node changing within {}s",
            LONG.as_secs()
        );
    }
}

/// Prints one repetition's per-node times (a, b, c) as it happens: the
/// change, `(-x)` how long before it the node last answered unchanged,
/// `lost n` unanswered queries, `rep` when c's report that carried the
/// change reached the node, `quorum` for a node whose fleet view did not
/// have the owner's side yet (it followed the outside-in verdicts).
fn print_rep(mode: &str, change: &str, i: usize, s: &Sample) {
    let cols: Vec<String> = POPS
        .iter()
        .zip(s.seen.iter().zip(&s.after))
        .map(|(p, (seen, after))| {
            let mut col = match seen.at {
                Some(d) => format!("{p} {}", ms(d)),
                None => format!("{p} -"),
            };
            if let (Some(at), Some(before)) = (seen.at, seen.before) {
                col.push_str(&format!(" (-{})", ms(at - before)));
            }
            if seen.lost > 0 {
                col.push_str(&format!(" lost {}", seen.lost));
            }
            if let Some(r) = after.report {
                col.push_str(&format!(" rep {}", ms(r)));
            }
            if !after.owner {
                col.push_str(" quorum");
            }
            col
        })
        .collect();
    println!("{mode:6} {change:8} #{:<2} ms: {}", i + 1, cols.join("  "));
}

/// The load average (1, 5, 15 min) from /proc/loadavg.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".to_string())
}

/// One mode: a lab configured for it, then `reps` drains (not in the
/// fast mode) and `reps` service failures of PoP c.
fn run_mode(mode: Mode, args: &Args) {
    let name = mode.name();
    let mut lab = ThreePop::start_with(|_, yaml| mode.config(yaml, args.fast_check));
    if mode == Mode::Fast {
        println!("{name}: HTTP checks {{{}}}", fast_check(args.fast_check));
    }
    println!("{name}: lab converged, load average {}", loadavg());
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        | 1;
    let started = Instant::now();
    let pulls_before = pull_counts(&lab);
    let mut drains = Vec::new();
    for i in 0..args.reps {
        if mode == Mode::Fast {
            break;
        }
        std::thread::sleep(random_phase(&mut seed));
        let s = time_change(&mut lab, Change::Drain, |lab| {
            let (status, body) = lab.api(
                "a",
                "POST",
                "/v1/pops/c/drain",
                // c alone announces its unicast prefix: past the
                // last-PoP guard.
                Some(r#"{"reason": "bench", "force": true}"#),
            );
            if status != 200 {
                eprintln!("drain: {status} {body}");
            }
        });
        print_rep(name, Change::Drain.name(), i, &s);
        drains.push(s);
        let (status, body) = lab.api(
            "a",
            "POST",
            "/v1/pops/c/undrain",
            Some(r#"{"mode": "immediate"}"#),
        );
        if status != 200 || !wait_restored(&lab) {
            eprintln!("undrain: {status} {body}: c not back; stopping");
            break;
        }
    }
    let mut failures = Vec::new();
    for i in 0..args.reps {
        std::thread::sleep(random_phase(&mut seed));
        let s = time_change(&mut lab, Change::Failure, |lab| lab.service("c").stop());
        print_rep(name, Change::Failure.name(), i, &s);
        failures.push(s);
        lab.service("c").start_again();
        if !wait_restored(&lab) {
            eprintln!("service c back, but c not back in every node's DNS; stopping");
            break;
        }
    }
    let pulls_after = pull_counts(&lab);
    let elapsed = started.elapsed();
    println!("{name}: done, load average {}", loadavg());
    for ((node, (p0, e0)), (p1, e1)) in POPS
        .iter()
        .filter(|&&n| n != "c")
        .zip(&pulls_before)
        .zip(&pulls_after)
    {
        let pulls = p1.saturating_sub(*p0);
        let period = if pulls > 0 {
            ms(elapsed / pulls as u32)
        } else {
            "-".to_string()
        };
        println!(
            "{name}: node {node} pulled c's node {pulls} times in {:.1} s ({} errors), one report every {period} ms on average",
            elapsed.as_secs_f64(),
            e1.saturating_sub(*e0)
        );
    }
    if mode != Mode::Fast {
        print_summary(name, Change::Drain.name(), &drains);
    }
    print_summary(name, Change::Failure.name(), &failures);
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bench_fleet: {e}");
            std::process::exit(2);
        }
    };
    if !anypop_integration::lab::is_root() {
        eprintln!("bench_fleet: run as root (network namespaces)");
        std::process::exit(2);
    }
    println!(
        "three-pop fleet, {} repetitions per change; anypop {}; load average {}",
        args.reps,
        anypop_integration::anypop_bin().display(),
        loadavg()
    );
    for mode in Mode::ALL {
        if !args.skip.iter().any(|s| s == mode.name()) {
            run_mode(mode, &args);
        }
    }
}
