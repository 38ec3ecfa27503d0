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
//! Between repetitions the PoP is restored and the bench waits until every
//! node answers with it again.
//!
//! Usage (as root): `bench_fleet [--reps N] [--skip stream|poll]...`.
//! Prints min / median / max per mode and change; never asserts.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use anypop_integration::lab::three_pop::{self, ThreePop, ALL, POPS};
use anypop_integration::wait_until;

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

/// A DNS query for `name` A with id `id`, recursion not desired.
fn query(id: u16, name: &str) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// Skips a (possibly compressed) name at `i`; the index after it.
fn skip_name(m: &[u8], mut i: usize) -> Option<usize> {
    loop {
        let len = *m.get(i)? as usize;
        if len == 0 {
            return Some(i + 1);
        }
        if len & 0xc0 == 0xc0 {
            return Some(i + 2);
        }
        i += 1 + len;
    }
}

/// The A records of a NOERROR answer with id `id`; `None` for anything
/// else (another id, an error rcode, a truncated message).
fn a_records(m: &[u8], id: u16) -> Option<Vec<[u8; 4]>> {
    if m.len() < 12 || u16::from_be_bytes([m[0], m[1]]) != id || m[3] & 0x0f != 0 {
        return None;
    }
    let qd = u16::from_be_bytes([m[4], m[5]]);
    let an = u16::from_be_bytes([m[6], m[7]]);
    let mut i = 12;
    for _ in 0..qd {
        i = skip_name(m, i)? + 4;
    }
    let mut out = Vec::new();
    for _ in 0..an {
        i = skip_name(m, i)?;
        let rr = m.get(i..i + 10)?;
        let (rtype, len) = (
            u16::from_be_bytes([rr[0], rr[1]]),
            u16::from_be_bytes([rr[8], rr[9]]) as usize,
        );
        let data = m.get(i + 10..i + 10 + len)?;
        if rtype == 1 && len == 4 {
            out.push([data[0], data[1], data[2], data[3]]);
        }
        i += 10 + len;
    }
    Some(out)
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
        self.sock.send_to(&query(self.id, ALL), &to).ok()?;
        let mut buf = [0u8; 1500];
        loop {
            let n = self.sock.recv(&mut buf).ok()?;
            if let Some(addrs) = a_records(&buf[..n], self.id) {
                let want: std::net::Ipv4Addr = three_pop::pop(pop).service_addr.parse().ok()?;
                return Some(addrs.iter().any(|a| *a == want.octets()));
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

/// Waits until every node answers with PoP c again and c's unicast
/// prefix is in the transit's FIB.
fn wait_restored(lab: &ThreePop) -> bool {
    let mut prober = Prober::new(lab);
    let back = prober.watch(Instant::now(), "c", true);
    back.iter().all(Option::is_some)
        && wait_until(LONG, || {
            lab.transit_next_hop(three_pop::pop("c").unicast_prefix) == Some("c")
        })
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// min / median / max of the last node's times (`n` of them; timeouts
/// are counted apart).
fn summary(samples: &[Vec<Option<Duration>>]) -> String {
    let mut last: Vec<Duration> = samples
        .iter()
        .filter_map(|s| s.iter().copied().collect::<Option<Vec<_>>>())
        .filter_map(|s| s.into_iter().max())
        .collect();
    let timeouts = samples.len() - last.len();
    last.sort();
    if last.is_empty() {
        return format!("no sample ({timeouts} timed out)");
    }
    let mut s = format!(
        "min {}  median {}  max {}  (n={})",
        ms(last[0]),
        ms(last[last.len() / 2]),
        ms(last[last.len() - 1]),
        last.len()
    );
    if timeouts > 0 {
        s.push_str(&format!(", {timeouts} timed out"));
    }
    s
}

/// One mode: a lab with `stream` set, then `reps` drains and `reps`
/// service failures of PoP c.
fn run_mode(stream: bool, reps: usize) {
    let mode = if stream { "stream" } else { "poll" };
    let mut lab = ThreePop::start_with(|_, yaml| {
        assert!(yaml.contains("\nfleet:\n"), "topology config has no fleet");
        yaml.replace("\nfleet:\n", &format!("\nfleet:\n  stream: {stream}\n"))
    });
    let mut drains = Vec::new();
    for _ in 0..reps {
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
    for _ in 0..reps {
        let prober = Prober::new(&lab);
        let t = time_change(prober, || lab.service("c").stop());
        failures.push(t);
        lab.service("c").start_again();
        if !wait_restored(&lab) {
            eprintln!("service c back, but c not back in every node's DNS; stopping");
            break;
        }
    }
    println!(
        "{mode:6}  drain c via node a -> last node's DNS without c:    {}",
        summary(&drains)
    );
    println!(
        "{mode:6}  c's service killed -> last node's DNS without c:    {}",
        summary(&failures)
    );
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
    println!("three-pop fleet, {} repetitions per change", args.reps);
    for stream in [true, false] {
        let mode = if stream { "stream" } else { "poll" };
        if !args.skip.iter().any(|s| s == mode) {
            run_mode(stream, args.reps);
        }
    }
}
