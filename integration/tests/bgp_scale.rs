//! anypop with 100,000 prefixes against FRR 8.4 (topologies/bench: one IPv6
//! session, graceful restart 120 s, the N bit negotiated): what a stop, a
//! restart, a reload and a drain do at the scale the docs claim.
//!
//! - SIGTERM with `shutdown: withdraw`: FRR's table and FIB are empty
//!   promptly and no route is ever stale (withdrawals flushed, Hard Reset,
//!   the connection read until FRR closes it).
//! - SIGTERM with `shutdown: graceful_restart`: every route stays, stale, in
//!   the FIB; a restarted anypop takes them over: none left stale, none ever
//!   deleted from the FIB.
//! - SIGHUP with the same config changes nothing on the router; with one
//!   prefix added or removed, exactly that prefix changes.
//! - `anypop ctl drain --force`: the API answers at once (DNS step), every
//!   route gets GRACEFUL_SHUTDOWN and is replaced in the FIB in place (none
//!   ever deleted before the withdrawal), then all are withdrawn after the
//!   settle time; `undrain` brings all back.
//!
//! The times measured are printed (`--nocapture`); the bounds are generous
//! timeouts, not benchmarks.

use std::time::{Duration, Instant};

use anypop_integration::lab::anypop::PopNode;
use anypop_integration::lab::bench::{
    self, counts, gshut, secs, updates_received, wait_counts, wait_empty, Counts, Emptying, LOAD,
    N, POLL, POP1, PROGRAMS,
};
use anypop_integration::lab::frr::Frr;
use anypop_integration::lab::monitor::RouteMonitor;
use anypop_integration::lab::{lab_available, Lab, WAIT};
use anypop_integration::{anypop_bin, wait_until_every};

/// "Promptly": what a stop may take at most here; the real time is printed.
const PROMPT: Duration = Duration::from_secs(30);
/// A prefix outside the benchmark set, for the reload test.
const EXTRA: &str = "2001:db8:ffff::/48";

/// pop1 of topologies/bench, healthy from the start, announcing the
/// 100,000 benchmark prefixes (and `extra`), stopping in `shutdown` mode.
fn pop_yaml(shutdown: &str, extra: Option<&str>) -> String {
    let mut yaml = bench::pop1_yaml(N as u32);
    if let Some(p) = extra {
        yaml = yaml.replacen("\"]\n", &format!("\", \"{p}\"]\n"), 1);
        assert!(yaml.contains(p));
    }
    let yaml = yaml.replace(
        "  shutdown: withdraw\n",
        &format!("  shutdown: {shutdown}\n"),
    );
    assert!(yaml.contains(&format!("shutdown: {shutdown}")));
    yaml
}

/// Starts pop1 and waits until FRR holds all its routes, fresh, in table
/// and FIB; returns how long that took.
fn start_loaded(lab: &Lab, r1: &Frr, yaml: &str, want: u64) -> (PopNode, Duration) {
    // The first call builds the binary: not part of the time.
    anypop_bin();
    let t = Instant::now();
    let pop1 = PopNode::start(lab, "pop1", yaml);
    let loaded = wait_counts(lab, r1, Counts::loaded(want), LOAD);
    assert!(
        loaded,
        "FRR did not load {want} routes: {:?}\nanypop log:\n{}",
        counts(lab, r1),
        pop1.proc.log()
    );
    (pop1, t.elapsed())
}

#[test]
fn bgp_scale_sigterm_withdraw_empties_frr_promptly_without_stale_routes() {
    if !lab_available(
        "bgp_scale_sigterm_withdraw_empties_frr_promptly_without_stale_routes",
        PROGRAMS,
    ) {
        return;
    }
    let lab = bench::lab();
    let r1 = bench::r1(&lab);
    let (mut pop1, load) = start_loaded(&lab, &r1, &pop_yaml("withdraw", None), N);

    let t0 = Instant::now();
    pop1.proc.signal(libc::SIGTERM);
    let Emptying {
        emptied,
        max_stale,
        table_empty,
        fib_empty,
    } = wait_empty(&lab, &r1, t0, PROMPT);
    let exit = pop1.proc.wait_exit(WAIT);
    let exited = t0.elapsed();
    println!(
        "{N} prefixes, shutdown: withdraw: FRR loaded in {:.1} s; after SIGTERM \
         FRR's table empty in {:.2} s, FIB empty in {:.2} s, anypop exited by {:.2} s",
        load.as_secs_f64(),
        secs(table_empty),
        secs(fib_empty),
        exited.as_secs_f64(),
    );
    assert!(
        emptied,
        "FRR still holds routes {PROMPT:?} after SIGTERM: {:?}",
        counts(&lab, &r1)
    );
    assert_eq!(max_stale, 0, "FRR marked routes stale");
    assert_eq!(exit, Some(0), "anypop did not exit cleanly");
    // FRR got the Cease / Administrative Shutdown as a Hard Reset.
    let n = r1.neighbor(POP1).expect("neighbor");
    assert_eq!(
        n.get("lastNotificationHardReset").and_then(|v| v.as_bool()),
        Some(true),
        "no Hard Reset in FRR's view: {n}"
    );
    let reason = n
        .get("lastNotificationReason")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    assert!(reason.contains("Administrative Shutdown"), "{n}");
    // And it stays empty (nothing comes back stale later).
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        counts(&lab, &r1),
        Counts {
            table: 0,
            stale: 0,
            fib: 0
        }
    );
}

#[test]
fn bgp_scale_graceful_restart_stop_keeps_routes_stale_and_restart_takes_them_over() {
    if !lab_available(
        "bgp_scale_graceful_restart_stop_keeps_routes_stale_and_restart_takes_them_over",
        PROGRAMS,
    ) {
        return;
    }
    let lab = bench::lab();
    let r1 = bench::r1(&lab);
    let yaml = pop_yaml("graceful_restart", None);
    let (mut pop1, _) = start_loaded(&lab, &r1, &yaml, N);
    let monitor = RouteMonitor::start(&lab, "r1");
    std::thread::sleep(Duration::from_millis(200));

    let t0 = Instant::now();
    pop1.proc.signal(libc::SIGTERM);
    assert_eq!(
        pop1.proc.wait_exit(WAIT),
        Some(0),
        "anypop did not exit cleanly"
    );
    let stopped = t0.elapsed();
    // Every route stays, stale, and in the FIB.
    assert!(
        wait_until_every(PROMPT, POLL, || counts(&lab, &r1).stale == N),
        "routes not kept stale: {:?}",
        counts(&lab, &r1)
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        counts(&lab, &r1),
        Counts {
            table: N,
            stale: N,
            fib: N
        }
    );
    let n = r1.neighbor(POP1).expect("neighbor");
    assert_eq!(
        n.get("lastNotificationHardReset").and_then(|v| v.as_bool()),
        Some(false),
        "a plain Cease keeps the routes: {n}"
    );

    // Restarted, anypop takes them over: fresh again, none deleted.
    let t1 = Instant::now();
    let (_pop1, _) = start_loaded(&lab, &r1, &yaml, N);
    let taken_over = t1.elapsed();
    println!(
        "{N} prefixes, shutdown: graceful_restart: anypop exited {:.2} s after SIGTERM, \
         FRR kept all {N} stale in its FIB; restarted, anypop refreshed them all \
         (none stale) {:.1} s after its start",
        stopped.as_secs_f64(),
        taken_over.as_secs_f64()
    );
    std::thread::sleep(Duration::from_secs(2));
    monitor.assert_none_deleted("proto bgp", "of r1 during stop and restart");
    assert_eq!(counts(&lab, &r1).stale, 0);
}

#[test]
fn bgp_scale_reload_changes_only_what_changed() {
    if !lab_available("bgp_scale_reload_changes_only_what_changed", PROGRAMS) {
        return;
    }
    let lab = bench::lab();
    let r1 = bench::r1(&lab);
    let (pop1, _) = start_loaded(&lab, &r1, &pop_yaml("withdraw", None), N);
    // Let End-of-RIB and any late update pass.
    std::thread::sleep(Duration::from_secs(2));
    let monitor = RouteMonitor::start(&lab, "r1");
    std::thread::sleep(Duration::from_millis(200));
    let session = r1.session_identity(POP1).expect("established");
    let before = updates_received(&r1);

    // Same config: nothing sent, nothing changes.
    pop1.proc.signal(libc::SIGHUP);
    pop1.proc.wait_for_log("reloaded", Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(5));
    let after = counts(&lab, &r1);
    assert_eq!(
        after,
        Counts {
            table: N,
            stale: 0,
            fib: N
        }
    );
    assert_eq!(
        updates_received(&r1),
        before,
        "UPDATEs sent on a reload that changed nothing"
    );
    assert_eq!(r1.session_identity(POP1), Some(session), "session reset");

    // One prefix more, then one less: one UPDATE each, nothing else moves.
    for (extra, want) in [(Some(EXTRA), N + 1), (None, N)] {
        let before = updates_received(&r1);
        pop1.rewrite_config(&pop_yaml("withdraw", extra));
        pop1.proc.signal(libc::SIGHUP);
        assert!(
            wait_counts(&lab, &r1, Counts::loaded(want), LOAD),
            "after reload: {:?}",
            counts(&lab, &r1)
        );
        std::thread::sleep(Duration::from_secs(2));
        assert_eq!(
            updates_received(&r1),
            before + 1,
            "one UPDATE for one prefix"
        );
        assert_eq!(r1.session_identity(POP1), Some(session), "session reset");
    }
    let deleted = monitor.deletions_of("proto bgp");
    assert!(
        deleted.len() == 1 && deleted[0].contains("2001:db8:ffff::/48"),
        "FIB deletions other than the removed prefix: {} e.g. {:?}",
        deleted.len(),
        deleted.first()
    );
}

/// `anypop ctl` in pop1's namespace, against its API; the exit status,
/// stdout and stderr, and how long the call took.
fn ctl(lab: &Lab, args: &[&str]) -> (bool, String, Duration) {
    let t = Instant::now();
    let out = lab
        .cmd("pop1", &anypop_bin().to_string_lossy())
        .args(["ctl", "--api", "127.0.0.1:8080", "--timeout", "60s"])
        .args(args)
        .output()
        .expect("run anypop ctl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text, t.elapsed())
}

#[test]
fn bgp_scale_drain_gshuts_and_withdraws_everything_and_undrain_restores_it() {
    if !lab_available(
        "bgp_scale_drain_gshuts_and_withdraws_everything_and_undrain_restores_it",
        PROGRAMS,
    ) {
        return;
    }
    let lab = bench::lab();
    let r1 = bench::r1(&lab);
    // A settle long enough to see the GRACEFUL_SHUTDOWN of every route on
    // a loaded machine before the withdrawal.
    let yaml = pop_yaml("withdraw", None).replace(
        "    announce:\n",
        "    drain: {dns_wait: 0s, settle: 60s}\n    announce:\n",
    );
    assert!(yaml.contains("settle: 60s"));
    let (pop1, _) = start_loaded(&lab, &r1, &yaml, N);
    std::thread::sleep(Duration::from_secs(2));
    // Every change of r1's FIB from here on.
    let monitor = RouteMonitor::start(&lab, "r1");

    // The API answers at once: DNS first.
    let t0 = Instant::now();
    let (ok, out, answered) = ctl(&lab, &["drain", "--force", "pop1"]);
    assert!(
        ok && out.contains("draining") && out.contains("dns off"),
        "drain: {out}\nanypop log:\n{}",
        pop1.proc.log()
    );
    // Then GRACEFUL_SHUTDOWN on every route (the first and the last of
    // the 100,000, all fresh and in the FIB), then all withdrawn.
    let gshut_all = wait_until_every(LOAD, POLL, || gshut(&r1, 0) && gshut(&r1, N as u32 - 1));
    let gshut_at = t0.elapsed();
    assert!(
        gshut_all,
        "no GRACEFUL_SHUTDOWN on the first and last prefix: {:?}\nanypop log:\n{}",
        counts(&lab, &r1),
        pop1.proc.log()
    );
    // zebra replaces every route in the kernel with the new attributes;
    // once all N are replaced the FIB is at rest and a dump of it is exact.
    let replaced = wait_until_every(LOAD, POLL, || {
        monitor.additions_of("proto bgp") >= N as usize
    });
    let replaced_at = t0.elapsed();
    assert!(
        replaced,
        "only {} of {N} routes replaced in r1's FIB: {:?}",
        monitor.additions_of("proto bgp"),
        counts(&lab, &r1)
    );
    assert_eq!(
        counts(&lab, &r1),
        Counts {
            table: N,
            stale: 0,
            fib: N
        },
        "routes lost before the settle time"
    );
    let Emptying {
        emptied,
        max_stale,
        table_empty,
        fib_empty,
    } = wait_empty(&lab, &r1, t0, LOAD);
    assert!(
        emptied,
        "not withdrawn after the drain: {:?}\nanypop log:\n{}",
        counts(&lab, &r1),
        pop1.proc.log()
    );
    assert_eq!(max_stale, 0);
    // Each route left the FIB exactly once, at the withdrawal: a route
    // deleted while it got GRACEFUL_SHUTDOWN (and added back) would count
    // twice. (The polls above cannot see such a gap; the monitor does.)
    let deleted = monitor.deletions_of("proto bgp");
    assert_eq!(
        deleted.len() as u64,
        N,
        "FIB deletions during the drain, e.g. {:?}",
        deleted.first()
    );
    drop(monitor);
    // The API still answers while drained.
    let (ok, out, _) = ctl(&lab, &["pops"]);
    assert!(ok && out.contains("drained"), "{out}");

    // Undrain: every route back, without GRACEFUL_SHUTDOWN.
    let t1 = Instant::now();
    let (ok, out, undrain_answered) = ctl(&lab, &["undrain", "--mode", "immediate", "pop1"]);
    assert!(ok, "undrain: {out}\nanypop log:\n{}", pop1.proc.log());
    let back = wait_counts(&lab, &r1, Counts::loaded(N), LOAD);
    let back_at = t1.elapsed();
    assert!(
        back,
        "not back after undrain: {:?}\nanypop log:\n{}",
        counts(&lab, &r1),
        pop1.proc.log()
    );
    assert!(!gshut(&r1, 0) && !gshut(&r1, N as u32 - 1));
    println!(
        "{N} prefixes, drain --force: API answered in {:.2} s, GRACEFUL_SHUTDOWN on FRR \
         by {:.1} s, every route replaced in the FIB (none deleted) by {:.1} s, FRR's \
         table empty by {:.1} s, FIB empty by {:.1} s (settle 60 s); \
         undrain answered in {:.2} s, all back by {:.1} s",
        answered.as_secs_f64(),
        gshut_at.as_secs_f64(),
        replaced_at.as_secs_f64(),
        secs(table_empty),
        secs(fib_empty),
        undrain_answered.as_secs_f64(),
        back_at.as_secs_f64(),
    );
}
