//! BGP benchmark (not a test): realises topologies/bench in network
//! namespaces and measures, against one FRR router in the same run,
//!
//! 1. the time until FRR's BGP table holds N prefixes, and then none,
//!    when anypop announces / withdraws them (a PoP going up / down), and
//!    the same for GoBGP injecting the same set (`gobgp mrt inject`);
//! 2. anypop's RSS with N prefixes announced;
//! 3. anypop's delay from a PoP state change (its log line) to the first
//!    UPDATE on the wire (tcpdump on pop1's veth): p50 / p99 / max.
//!
//! Usage (as root): `bench_bgp [--sizes 10000,100000] [--samples 100]
//! [--skip anypop|gobgp|delay]...`. Prints a table; never asserts.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anypop_integration::lab::anypop::PopNode;
use anypop_integration::lab::frr::Frr;
use anypop_integration::lab::gobgp::Gobgp;
use anypop_integration::lab::{self, mrt, pcap, repo_root, topology_file, Lab};
use anypop_integration::wait_until;

const POP1: &str = "2001:db8:0:1::2";
const G1: &str = "2001:db8:0:2::2";
/// Long enough for 100k prefixes on a slow machine; a run that hits it
/// reports a timeout instead of a number.
const LONG: Duration = Duration::from_secs(600);

struct Args {
    sizes: Vec<u32>,
    samples: usize,
    skip: Vec<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        sizes: vec![10_000, 100_000],
        samples: 100,
        skip: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--sizes" => {
                a.sizes = val("--sizes")?
                    .split(',')
                    .map(|s| {
                        s.trim()
                            .parse::<u32>()
                            .map_err(|e| format!("--sizes {s}: {e}"))
                    })
                    .collect::<Result<_, _>>()?
            }
            "--samples" => {
                a.samples = val("--samples")?
                    .parse()
                    .map_err(|e| format!("--samples: {e}"))?
            }
            "--skip" => a.skip.push(val("--skip")?),
            "-h" | "--help" => {
                println!(
                    "bench_bgp [--sizes 10000,100000] [--samples 100] [--skip anypop|gobgp|delay]..."
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if a.sizes.iter().any(|n| *n == 0 || *n > 1 << 24) {
        return Err("sizes must be 1..=16777216".into());
    }
    Ok(a)
}

/// Waits until FRR reports `want` prefixes from `peer`; returns the time
/// from `t0`, or None on timeout.
fn until_count(r1: &Frr, peer: &str, want: u64, t0: Instant) -> Option<Duration> {
    wait_until(LONG, || r1.pfx_rcd(peer, "ipv6") == Some(want)).then(|| t0.elapsed())
}

fn fmt_dur(ran: bool, d: Option<Duration>) -> String {
    match (ran, d) {
        (false, _) => "skipped".into(),
        (true, Some(d)) => format!("{:.2} s", d.as_secs_f64()),
        (true, None) => "failed".into(),
    }
}

fn ratio(a: Option<Duration>, b: Option<Duration>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if a.as_secs_f64() > 0.0 => {
            format!("{:.1}x", b.as_secs_f64() / a.as_secs_f64())
        }
        _ => "-".into(),
    }
}

fn pop1_config(n: u32) -> String {
    topology_file("bench/anypop/pop1.yaml").replace(
        "    prefixes: [\"2001:db8:100::/48\"]",
        &format!("    prefixes: {}", mrt::bench_prefix_list(n)),
    )
}

#[derive(Default)]
struct Row {
    n: u32,
    any_ran: bool,
    gob_ran: bool,
    any_up: Option<Duration>,
    any_down: Option<Duration>,
    any_rss_kib: Option<u64>,
    gob_up: Option<Duration>,
    gob_down: Option<Duration>,
}

fn bench_anypop(lab: &Lab, r1: &Frr, n: u32, row: &mut Row) {
    row.any_ran = true;
    let pop1 = start_pop(lab, &pop1_config(n));
    if !r1.wait_established(POP1, Duration::from_secs(120)) {
        eprintln!("anypop session did not come up; log:\n{}", pop1.proc.log());
        return;
    }
    // Nothing announced yet (the PoP is down): otherwise the timing is void.
    if !wait_until(Duration::from_secs(10), || {
        r1.pfx_rcd(POP1, "ipv6") == Some(0)
    }) {
        eprintln!(
            "anypop announced before the PoP came up ({:?} prefixes): no timing",
            r1.pfx_rcd(POP1, "ipv6")
        );
        return;
    }
    let mut polls = 0u32;
    let t0 = Instant::now();
    pop1.set_down("pop1", false);
    row.any_up = wait_until(LONG, || {
        polls += 1;
        r1.pfx_rcd(POP1, "ipv6") == Some(u64::from(n))
    })
    .then(|| t0.elapsed());
    println!("    (FRR polled {polls} times until it held all {n})");
    row.any_rss_kib = lab::rss_kib(pop1.proc.pid() as i32);
    let t0 = Instant::now();
    pop1.set_down("pop1", true);
    row.any_down = until_count(r1, POP1, 0, t0);
    drop(pop1);
}

fn start_pop(lab: &Lab, yaml: &str) -> PopNode {
    // The PoP must start failed: create the flag before anypop reads it.
    let dir = lab.dir().join("anypop-pop1").join("run");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join("pop1.down"), "down\n");
    PopNode::start(lab, "pop1", yaml)
}

fn bench_gobgp(lab: &Lab, r1: &Frr, g1: &Gobgp, n: u32, row: &mut Row) {
    row.gob_ran = true;
    let data = mrt::table_dump_v2_ipv6(
        Ipv4Addr::new(198, 51, 100, 2),
        G1.parse().unwrap_or(Ipv6Addr::UNSPECIFIED),
        65003,
        G1.parse().unwrap_or(Ipv6Addr::UNSPECIFIED),
        &[65003],
        (0..n).map(mrt::bench_prefix),
    );
    // `gobgp mrt inject` can exit before gobgpd has taken every route
    // (LAB.md): feed it through a FIFO and keep the FIFO open until GoBGP's
    // RIB holds all N, so the CLI cannot quit early.
    let fifo = lab.dir().join(format!("bench-{n}.fifo"));
    if let Err(e) = lab::sh(std::process::Command::new("mkfifo").arg(&fifo)) {
        eprintln!("{e}");
        return;
    }
    let t0 = Instant::now();
    let mut inject = match lab
        .cmd("g1", "gobgp")
        .args(["mrt", "inject", "global"])
        .arg(&fifo)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gobgp mrt inject: {e}");
            return;
        }
    };
    let writer = std::fs::OpenOptions::new()
        .write(true)
        .open(&fifo)
        .and_then(|mut f| std::io::Write::write_all(&mut f, &data).map(|()| f));
    let writer = match writer {
        Ok(w) => w,
        Err(e) => {
            eprintln!("write {}: {e}", fifo.display());
            let _ = inject.kill();
            let _ = inject.wait();
            return;
        }
    };
    if !wait_until(LONG, || g1.rib_count("ipv6") == Some(u64::from(n))) {
        eprintln!("GoBGP's RIB never held {n} routes");
    }
    drop(writer);
    let _ = inject.wait();
    row.gob_up = until_count(r1, G1, u64::from(n), t0);
    let t0 = Instant::now();
    if let Err(e) = g1.cli(&["global", "rib", "-a", "ipv6", "del", "all"]) {
        eprintln!("gobgp global rib del all: {e}");
        return;
    }
    row.gob_down = until_count(r1, G1, 0, t0);
}

/// p-quantile of sorted values (nearest rank).
fn quantile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Delays in ms: (from the flag-file change the bench makes, from anypop's
/// state-change log line), each to the first UPDATE anypop sends after it.
type Delays = (Vec<f64>, Vec<f64>);

fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// For each reference time, the first UPDATE at or after it (minus a small
/// clock tolerance) and before the next reference, as a delay in ms.
fn pair(refs: &[f64], updates: &[f64]) -> Vec<f64> {
    let mut out = Vec::new();
    for (i, t) in refs.iter().enumerate() {
        let next = refs.get(i + 1).copied().unwrap_or(f64::INFINITY);
        if let Some(u) = updates.iter().find(|u| **u >= *t - 0.000_5 && **u < next) {
            out.push((u - t).max(0.0) * 1000.0);
        }
    }
    out
}

fn bench_delay(lab: &Lab, r1: &Frr, samples: usize) -> Result<Delays, String> {
    let cap = lab.dir().join("delay.pcap");
    let mut tcpdump = pcap::Tcpdump::start(lab, "pop1", "eth1", &cap, 512)?;
    let mut pop1 = start_pop(lab, &topology_file("bench/anypop/pop1.yaml"));
    let mut flips = Vec::with_capacity(samples);
    let result = (|| {
        if !r1.wait_established(POP1, Duration::from_secs(120)) {
            return Err(format!("session did not come up:\n{}", pop1.proc.log()));
        }
        std::thread::sleep(Duration::from_secs(2)); // let End-of-RIB etc. pass
        for i in 0..samples {
            let up = i % 2 == 0;
            flips.push(now_unix());
            pop1.set_down("pop1", !up);
            let want = if up { 1 } else { 0 };
            if !wait_until(Duration::from_secs(30), || {
                r1.pfx_rcd(POP1, "ipv6") == Some(want)
            }) {
                return Err(format!("sample {i}: FRR did not follow"));
            }
            // Decorrelate from the keepalive timer.
            std::thread::sleep(Duration::from_millis(50 + (i as u64 * 37) % 100));
        }
        Ok(())
    })();
    // Stop the capture only once it holds the last flip's UPDATE (or
    // after 10 s), so no sample is lost to capture buffering.
    let pop_ip: IpAddr = POP1.parse().map_err(|e| format!("{e}"))?;
    let last_flip = flips.last().copied().unwrap_or(0.0);
    let captured = wait_until(Duration::from_secs(10), || {
        std::fs::read(&cap)
            .ok()
            .and_then(|d| pcap::read_segments(&d).ok())
            .is_some_and(|segs| {
                segs.iter().any(|s| {
                    s.src == pop_ip && s.bgp_types.contains(&2) && s.ts >= last_flip - 0.000_5
                })
            })
    });
    if !captured && result.is_ok() {
        eprintln!("note: the capture has no UPDATE after the last flip");
    }
    std::thread::sleep(Duration::from_millis(200));
    let log = pop1.proc.log();
    pop1.kill();
    tcpdump.stop();
    result?;
    let data = std::fs::read(&cap).map_err(|e| format!("read pcap: {e}"))?;
    let updates: Vec<f64> = pcap::read_segments(&data)?
        .into_iter()
        .filter(|s| s.src == pop_ip && s.bgp_types.contains(&2))
        .map(|s| s.ts)
        .collect();
    // "pop pop1 up: ..." / "pop pop1 down: ..." lines, first token = time,
    // after the first flip (the startup decision is not a sample).
    let first = flips.first().copied().unwrap_or(0.0);
    let changes: Vec<f64> = log
        .lines()
        .filter(|l| l.contains("pop pop1 up") || l.contains("pop pop1 down"))
        .filter_map(|l| {
            l.split_whitespace()
                .next()
                .and_then(pcap::parse_rfc3339_utc)
        })
        .filter(|t| *t >= first)
        .collect();
    if changes.len() != samples {
        eprintln!(
            "note: {} state-change log lines for {samples} flips",
            changes.len()
        );
    }
    Ok((pair(&flips, &updates), pair(&changes, &updates)))
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bench_bgp: {e}");
            std::process::exit(2);
        }
    };
    if !lab::is_root() {
        eprintln!("bench_bgp: needs root (network namespaces)");
        std::process::exit(2);
    }
    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    println!("anypop BGP benchmark (unix time {started}); receiver: FRR bgpd + zebra");
    let lab = Lab::from_clab(&repo_root().join("topologies/bench/bench.clab.yml"));
    let r1 = Frr::start(&lab, "r1", &topology_file("bench/frr/r1/frr.conf"));
    let g1 = (!args.skip.iter().any(|s| s == "gobgp"))
        .then(|| Gobgp::start(&lab, "g1", &topology_file("bench/gobgp/g1/gobgpd.toml")));
    if g1.is_some() && !r1.wait_established(G1, Duration::from_secs(120)) {
        eprintln!("GoBGP session did not come up");
    }

    let mut rows = Vec::new();
    for &n in &args.sizes {
        let mut row = Row {
            n,
            ..Default::default()
        };
        if !args.skip.iter().any(|s| s == "anypop") {
            println!("  anypop: announcing and withdrawing {n} prefixes ...");
            bench_anypop(&lab, &r1, n, &mut row);
        }
        if let Some(g) = &g1 {
            println!("  gobgp:  injecting and deleting {n} prefixes ...");
            bench_gobgp(&lab, &r1, g, n, &mut row);
        }
        rows.push(row);
    }

    println!();
    println!(
        "{:>8} | {:>12} {:>12} | {:>12} {:>12} | {:>8} {:>8} | {:>10}",
        "N", "anypop up", "anypop down", "gobgp up", "gobgp down", "up x", "down x", "anypop RSS"
    );
    for r in &rows {
        println!(
            "{:>8} | {:>12} {:>12} | {:>12} {:>12} | {:>8} {:>8} | {:>10}",
            r.n,
            fmt_dur(r.any_ran, r.any_up),
            fmt_dur(r.any_ran, r.any_down),
            fmt_dur(r.gob_ran, r.gob_up),
            fmt_dur(r.gob_ran, r.gob_down),
            ratio(r.any_up, r.gob_up),
            ratio(r.any_down, r.gob_down),
            r.any_rss_kib
                .map(|k| format!("{:.1} MiB", k as f64 / 1024.0))
                .unwrap_or_else(|| "-".into()),
        );
    }
    println!("(up/down: until FRR's table holds all / none of the N prefixes; x: gobgp time / anypop time)");

    if !args.skip.iter().any(|s| s == "delay") && args.samples > 0 {
        println!();
        println!(
            "state change -> UPDATE on the wire, {} flips ...",
            args.samples
        );
        match bench_delay(&lab, &r1, args.samples) {
            Ok((from_flip, from_log)) => {
                for (what, mut d) in [
                    ("flag file change -> UPDATE", from_flip),
                    ("state-change log -> UPDATE", from_log),
                ] {
                    if d.is_empty() {
                        println!("{what}: no UPDATE matched");
                        continue;
                    }
                    d.sort_by(|a, b| a.total_cmp(b));
                    println!(
                        "{what:28} ms: n={:>3}/{} min={:.3} p50={:.3} p99={:.3} max={:.3}",
                        d.len(),
                        args.samples,
                        d[0],
                        quantile(&d, 0.5),
                        quantile(&d, 0.99),
                        d[d.len() - 1]
                    );
                }
            }
            Err(e) => println!("delay: {e}"),
        }
    }
    drop(g1);
    drop(r1);
    drop(lab);
}
