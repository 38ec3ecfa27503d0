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
//!    report).
//!
//! Each `--reps N` times (default 10), once with the fleet's long-poll
//! (`stream: true`) and once with plain polling (`stream: false`, pull
//! every `pull_interval`, 1s). A UDP socket in client1's namespace asks
//! each node in turn, one query in flight, so the resolution is the time
//! of three queries (well under a millisecond on an idle machine).
//! Each change comes after a pseudo-random pause of 0–1 s, so it falls at
//! a random point of the pull and check intervals. Between repetitions
//! the PoP is restored and the bench waits until every node answers with
//! it again and every node's fleet view has shown it fully up (owner and
//! every vantage point) for 2 s.
//!
//! Usage (as root): `bench_fleet [--reps N] [--skip stream|poll]...`.
//! Prints each repetition's per-node times, then per mode and change
//! min / median / max of: node c's own DNS (the owner: for the failure,
//! its check's detection), the last node's DNS (the figure of the issue)
//! and the last node after c (what the fleet adds). Never asserts.

use std::net::{Ipv4Addr, UdpSocket};
use std::time::{Duration, Instant};

use anypop_integration::lab::three_pop::{self, ThreePop, ALL, POPS};
use anypop_integration::{dns, wait_until};

/// A change that does not reach every node in this long is reported as a
/// timeout instead of a number.
const LONG: Duration = Duration::from_secs(60);

struct Args {
    reps: usize,
    skip: Vec<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        reps: 10,
        skip: Vec::new(),
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
                if s != "stream" && s != "poll" {
                    return Err(format!("--skip {s}: expected stream or poll"));
                }
                a.skip.push(s);
            }
            "-h" | "--help" => {
                println!("usage: bench_fleet [--reps N] [--skip stream|poll]...");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(a)
}

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
    /// PoP `pop`: each node's time; `None` for a node that did not within
    /// [`LONG`].
    fn watch(&mut self, t0: Instant, pop: &str, present: bool) -> Vec<Option<Duration>> {
        let mut seen: Vec<Option<Duration>> = vec![None; POPS.len()];
        while seen.iter().any(Option::is_none) && t0.elapsed() < LONG {
            for (i, s) in POPS.iter().enumerate() {
                if seen[i].is_none() && self.answers_with(s, pop) == Some(present) {
                    seen[i] = Some(t0.elapsed());
                }
            }
        }
        seen
    }
}

/// Runs `trigger` with `prober` watching for PoP c to leave every node's
/// answers; returns each node's time since just before `trigger`.
fn time_change(mut prober: Prober, trigger: impl FnOnce()) -> Vec<Option<Duration>> {
    let t0 = Instant::now();
    let watcher = std::thread::spawn(move || prober.watch(t0, "c", false));
    trigger();
    watcher.join().unwrap_or_default()
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
    if !back.iter().all(Option::is_some) {
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
/// check interval (500 ms) instead of always just after the pull or the
/// check that ended the restore.
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

/// One table row per figure: the owner node c's own DNS, the last node's
/// (the benchmark's figure), and the last node after c (the fleet's
/// propagation from the owner to its peers). Repetitions in which a node
/// never changed are counted apart.
fn print_summary(mode: &str, change: &str, samples: &[Vec<Option<Duration>>]) {
    let complete: Vec<Vec<Duration>> = samples
        .iter()
        .filter_map(|s| s.iter().copied().collect::<Option<Vec<_>>>())
        .collect();
    let timeouts = samples.len() - complete.len();
    let c = POPS.iter().position(|p| *p == "c").unwrap_or(2);
    let last = |s: &Vec<Duration>| s.iter().copied().max().unwrap_or_default();
    let owner: Vec<Duration> = complete.iter().map(|s| s[c]).collect();
    let lasts: Vec<Duration> = complete.iter().map(last).collect();
    let spread: Vec<Duration> = complete
        .iter()
        .map(|s| last(s).saturating_sub(s[c]))
        .collect();
    println!(
        "{mode:6} {change:8} node c (owner) DNS   {}",
        min_med_max(owner)
    );
    println!(
        "{mode:6} {change:8} last node's DNS      {}",
        min_med_max(lasts)
    );
    println!(
        "{mode:6} {change:8} last node after c    {}",
        min_med_max(spread)
    );
    if timeouts > 0 {
        println!(
            "{mode:6} {change:8} {timeouts} repetition(s) without every node changing within {}s",
            LONG.as_secs()
        );
    }
}

/// Prints one repetition's per-node times (a, b, c) as it happens.
fn print_rep(mode: &str, change: &str, i: usize, t: &[Option<Duration>]) {
    let cols: Vec<String> = POPS
        .iter()
        .zip(t)
        .map(|(p, d)| match d {
            Some(d) => format!("{p} {}", ms(*d)),
            None => format!("{p} -"),
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

/// One mode: a lab with `stream` set, then `reps` drains and `reps`
/// service failures of PoP c.
fn run_mode(stream: bool, reps: usize) {
    let mode = if stream { "stream" } else { "poll" };
    let mut lab = ThreePop::start_with(|_, yaml| {
        assert!(yaml.contains("\nfleet:\n"), "topology config has no fleet");
        yaml.replace("\nfleet:\n", &format!("\nfleet:\n  stream: {stream}\n"))
    });
    println!("{mode}: lab converged, load average {}", loadavg());
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        | 1;
    let mut drains = Vec::new();
    for i in 0..reps {
        std::thread::sleep(random_phase(&mut seed));
        let t = time_change(Prober::new(&lab), || {
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
        print_rep(mode, "drain", i, &t);
        drains.push(t);
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
    for i in 0..reps {
        std::thread::sleep(random_phase(&mut seed));
        let prober = Prober::new(&lab);
        let t = time_change(prober, || lab.service("c").stop());
        print_rep(mode, "failure", i, &t);
        failures.push(t);
        lab.service("c").start_again();
        if !wait_restored(&lab) {
            eprintln!("service c back, but c not back in every node's DNS; stopping");
            break;
        }
    }
    println!("{mode}: done, load average {}", loadavg());
    print_summary(mode, "drain", &drains);
    print_summary(mode, "failure", &failures);
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
    for stream in [true, false] {
        let mode = if stream { "stream" } else { "poll" };
        if !args.skip.iter().any(|s| s == mode) {
            run_mode(stream, args.reps);
        }
    }
}
