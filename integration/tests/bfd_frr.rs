//! BFD between anypop and FRR 8.4 bfdd (topologies/frr-bfd): r1 and pop1
//! hang off a bridge, so cutting pop1's port leaves r1's carrier up and only
//! BFD (3 × 100 ms) can tell r1 that pop1 is gone; BGP hold time is 30 s.
//!
//! Shown here: BFD comes Up over IPv4 and IPv6; a cut link and a frozen
//! anypop (SIGSTOP) make r1 drop both sessions and the routes (flushed, not
//! kept stale by graceful restart) because of BFD, long before the hold
//! time, and everything returns when the link does; repeated failures are
//! held down with a growing delay; `kill -9` of anypop (control plane only)
//! and SIGTERM with `shutdown: graceful_restart` still leave the routes
//! stale for graceful restart, and SIGTERM with `shutdown: withdraw` ends
//! BFD with AdminDown. Durations are printed, never asserted beyond
//! generous bounds.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant, SystemTime};

use anypop_integration::lab::anypop::PopNode;
use anypop_integration::lab::frr::{self, Frr};
use anypop_integration::lab::{lab_available, repo_root, topology_file, Lab, WAIT};
use anypop_integration::{wait_for, wait_until};
use serde_json::Value;

const V4: &str = "203.0.113.0/24";
const V6: &str = "2001:db8:100::/48";
const POP1_V4: &str = "192.0.2.2";
const POP1_V6: &str = "2001:db8:0:1::2";
/// The BGP hold time of both sessions: a drop well before it is BFD's.
const HOLD: Duration = Duration::from_secs(30);
/// Generous bound for "fast": half the hold time (BFD needs 0.3 s).
const FAST: Duration = Duration::from_secs(15);

const PROGRAMS: &[&str] = &[
    "/usr/lib/frr/zebra",
    "/usr/lib/frr/bgpd",
    "/usr/lib/frr/bfdd",
    "vtysh",
];

struct Setup {
    // Field order is drop order: anypop and FRR before the lab.
    pop1: PopNode,
    r1: Frr,
    lab: Lab,
}

/// The lab with r1 (bgpd + bfdd) and pop1, both sessions Established, BFD
/// Up on both, and both prefixes in r1's FIB.
fn setup(test: &str) -> Option<Setup> {
    if !lab_available(test, PROGRAMS) {
        return None;
    }
    let lab = Lab::from_clab(&repo_root().join("topologies/frr-bfd/frr-bfd.clab.yml"));
    let r1 = Frr::start(&lab, "r1", &topology_file("frr-bfd/frr/r1/frr.conf"));
    let pop1 = PopNode::start(&lab, "pop1", &topology_file("frr-bfd/anypop/pop1.yaml"));
    let s = Setup { pop1, r1, lab };
    s.wait_all_up("start");
    Some(s)
}

impl Setup {
    fn wait_all_up(&self, what: &str) {
        let t0 = Instant::now();
        for peer in [POP1_V4, POP1_V6] {
            assert!(
                self.r1.wait_established(peer, WAIT),
                "{what}: r1 never established with {peer}"
            );
            assert!(
                wait_until(WAIT, || self.r1.bfd_status(peer).as_deref() == Some("up")),
                "{what}: BFD to {peer} not up on r1: {:?}",
                self.r1.bfd_peer(peer)
            );
            println!(
                "{what}: {peer} established and BFD up after {:.1} s",
                t0.elapsed().as_secs_f64()
            );
        }
        assert!(
            wait_until(WAIT, || self.in_fib(V4) && self.in_fib(V6)),
            "{what}: prefixes not in r1's FIB"
        );
    }

    fn in_fib(&self, prefix: &str) -> bool {
        let fam = if prefix.contains(':') { 6 } else { 4 };
        self.lab.bgp_routes("r1", fam).iter().any(|r| r == prefix)
    }

    /// Cuts (or restores) pop1's port on the switch: pop1 loses carrier,
    /// r1 does not.
    fn link(&self, up: bool) {
        let state = if up { "up" } else { "down" };
        self.lab
            .exec_must("sw", "ip", &["link", "set", "eth2", state]);
    }

    /// Runs `cut`, then measures until both prefixes left r1's FIB. Asserts
    /// that happened within [`FAST`], that r1 reset both sessions because
    /// of BFD and kept no stale route.
    fn assert_fast_withdrawal(&self, what: &str, cut: impl FnOnce()) -> Duration {
        let t0 = Instant::now();
        cut();
        let gone = wait_until(FAST, || !self.in_fib(V4) && !self.in_fib(V6));
        let took = t0.elapsed();
        assert!(
            gone,
            "{what}: prefixes still in r1's FIB after {FAST:?} (hold time {HOLD:?})"
        );
        for peer in [POP1_V4, POP1_V6] {
            let n = self.r1.neighbor(peer).unwrap_or_default();
            assert_ne!(
                n.get("bgpState").and_then(Value::as_str),
                Some("Established"),
                "{what}: {peer} still established"
            );
            // FRR 8.4 drops the session with NOTIFICATION Cease/BFD down
            // (6/10; inside a Hard Reset when the N bit was negotiated),
            // which it then reports as "BGP Notification send".
            let field = |k: &str| n.get(k).and_then(Value::as_str).unwrap_or("");
            let bfd = field("lastResetDueTo").contains("BFD")
                || (field("lastResetDueTo") == "BGP Notification send"
                    && field("lastErrorCodeSubcode") == "060A");
            assert!(bfd, "{what}: r1 did not reset {peer} because of BFD: {n}");
        }
        assert!(
            self.r1.paths(V4).is_empty() && self.r1.paths(V6).is_empty(),
            "{what}: r1 kept paths (stale?): {:?} {:?}",
            self.r1.paths(V4),
            self.r1.paths(V6)
        );
        println!(
            "{what}: both prefixes left r1's FIB {:.0} ms after the failure (BFD 3 x 100 ms, hold time {} s)",
            took.as_secs_f64() * 1000.0,
            HOLD.as_secs()
        );
        took
    }

    /// anypop's view of its BFD session to r1 over IPv4 (`GET /v1/peers`).
    fn anypop_bfd(&self) -> Option<Value> {
        let body = self
            .lab
            .in_ns("pop1", || {
                let mut s = TcpStream::connect("127.0.0.1:8080").ok()?;
                s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
                s.write_all(
                    b"GET /v1/peers HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nConnection: close\r\n\r\n",
                )
                .ok()?;
                let mut out = String::new();
                s.read_to_string(&mut out).ok()?;
                Some(out)
            })
            .ok()??;
        let json: Value = serde_json::from_str(body.split_once("\r\n\r\n")?.1).ok()?;
        json.pointer("/peers/r1-v4/bfd").cloned()
    }
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[test]
fn bfd_frr_comes_up_for_ipv4_and_ipv6() {
    let Some(s) = setup("bfd_frr_comes_up_for_ipv4_and_ipv6") else {
        return;
    };
    for peer in [POP1_V4, POP1_V6] {
        let b = s.r1.bfd_peer(peer).expect("r1 has the BFD session");
        // r1 sees anypop's timers: 100 ms both ways, multiplier 3.
        assert_eq!(
            (
                b.get("remote-receive-interval").and_then(Value::as_u64),
                b.get("remote-transmit-interval").and_then(Value::as_u64),
                b.get("remote-detect-multiplier").and_then(Value::as_u64),
            ),
            (Some(100), Some(100), Some(3)),
            "{peer}: {b}"
        );
        assert_eq!(b.get("diagnostic").and_then(Value::as_str), Some("ok"));
        println!("r1 BFD session to {peer}: {b}");
    }
    let mine = wait_for(WAIT, || {
        s.anypop_bfd()
            .filter(|b| b.get("state").and_then(Value::as_str) == Some("up"))
    })
    .expect("anypop reports its BFD session to r1 up");
    assert_eq!(mine.get("holds_bgp_down"), Some(&Value::Bool(false)));
    assert_eq!(
        mine.get("detection_time_ms").and_then(Value::as_u64),
        Some(300),
        "3 x max(100 ms, 100 ms): {mine}"
    );
    assert_eq!(mine.get("ttl_dropped").and_then(Value::as_u64), Some(0));
}

#[test]
fn bfd_frr_link_cut_drops_session_and_routes_fast_then_recovers() {
    let Some(s) = setup("bfd_frr_link_cut_drops_session_and_routes_fast_then_recovers") else {
        return;
    };
    s.assert_fast_withdrawal("link cut", || s.link(false));
    // r1's carrier never went down: this was BFD, not the interface.
    let carrier = s.lab.exec_must("r1", "ip", &["-o", "link", "show", "eth1"]);
    assert!(!carrier.contains("NO-CARRIER"), "{carrier}");
    s.link(true);
    let t0 = Instant::now();
    s.wait_all_up("link back");
    println!(
        "link back: sessions and routes back in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}

#[test]
fn bfd_frr_frozen_anypop_drops_session_and_routes_fast() {
    let Some(mut s) = setup("bfd_frr_frozen_anypop_drops_session_and_routes_fast") else {
        return;
    };
    let pid = s.pop1.proc.pid() as i32;
    // SAFETY: signals to the anypop process this test started.
    s.assert_fast_withdrawal("anypop frozen (SIGSTOP)", || unsafe {
        libc::kill(pid, libc::SIGSTOP);
    });
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    assert!(s.pop1.alive());
    let t0 = Instant::now();
    s.wait_all_up("after SIGCONT");
    println!(
        "after SIGCONT: sessions and routes back in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}

#[test]
fn bfd_frr_flaps_are_held_down_longer_each_time() {
    let Some(s) = setup("bfd_frr_flaps_are_held_down_longer_each_time") else {
        return;
    };
    // FRR's bfdd sometimes signals Down right after a session first came
    // up (seen under load: remote diagnostic "neighbor signaled session
    // down" 20 ms after Up, Up again a second later). anypop counts that
    // as a failure too, so the flaps below are counted from what it had
    // counted before, and each hold is the one for anypop's damping count.
    let count = |b: &Value, key: &str| b.get(key).and_then(Value::as_u64).unwrap_or(0);
    let start = s.anypop_bfd().expect("anypop's BFD status");
    let failures0 = count(&start, "failures");
    let mut damped_before = count(&start, "flaps");
    if failures0 > 0 {
        println!("start: anypop already counted {failures0} failure(s): {start}");
    }
    for flap in 1..=3u64 {
        s.assert_fast_withdrawal(&format!("flap {flap}"), || s.link(false));
        // anypop noticed too (its side of the link is down).
        let down = wait_for(WAIT, || {
            s.anypop_bfd()
                .filter(|b| count(b, "failures") >= failures0 + flap)
        })
        .unwrap_or_else(|| panic!("flap {flap}: anypop never counted the failure"));
        let damped = count(&down, "flaps");
        assert!(
            damped > damped_before,
            "flap {flap}: not counted by the damping: {down}"
        );
        damped_before = damped;
        let held_until = down.get("held_until").and_then(Value::as_f64);
        s.link(true);
        let t0 = Instant::now();
        // While held, anypop keeps its side Down: r1's BFD cannot be Up.
        let mut samples = 0;
        while held_until.is_some_and(|h| unix(SystemTime::now()) < h - 0.5) {
            for peer in [POP1_V4, POP1_V6] {
                assert_ne!(
                    s.r1.bfd_status(peer).as_deref(),
                    Some("up"),
                    "flap {flap}: BFD to {peer} up during the hold-down"
                );
            }
            samples += 1;
            std::thread::sleep(Duration::from_millis(100));
        }
        s.wait_all_up(&format!("flap {flap}: link back"));
        let back = SystemTime::now();
        println!(
            "flap {flap}: held down {:.1} s ({samples} samples of r1 during it), back {:.1} s after the link",
            held_until.map_or(0.0, |h| h - unix(down_time(&down))),
            t0.elapsed().as_secs_f64()
        );
        if damped == 1 {
            assert_eq!(held_until, None, "the first failure is not held: {down}");
        } else {
            let h = held_until.unwrap_or_else(|| panic!("flap {flap} not held: {down}"));
            // 2 s after the second failure, 4 s after the third, 8 s after
            // the fourth.
            let hold = h - unix(down_time(&down));
            let want = 2.0 * f64::from(1u32 << (damped - 2));
            assert!(
                (hold - want).abs() < 0.5,
                "flap {flap}: hold {hold:.3} s, expected {want} s: {down}"
            );
            assert!(
                unix(back) >= h,
                "flap {flap}: sessions back before the hold-down ended"
            );
        }
    }
    let last = s.anypop_bfd().expect("status");
    assert_eq!(count(&last, "flaps"), damped_before, "{last}");
}

/// When anypop's last state change happened (from its status).
fn down_time(b: &Value) -> SystemTime {
    let secs = b.get("since").and_then(Value::as_f64).unwrap_or(0.0);
    SystemTime::UNIX_EPOCH + Duration::from_secs_f64(secs)
}

#[test]
fn bfd_frr_kill_9_keeps_graceful_restart_routes() {
    let Some(mut s) = setup("bfd_frr_kill_9_keeps_graceful_restart_routes") else {
        return;
    };
    s.pop1.kill();
    // BFD notices the silence within 300 ms; the routes must stay anyway:
    // the TCP session closed first, r1 entered graceful restart, and a BFD
    // down of a session that is no longer established does not flush them.
    for peer in [POP1_V4, POP1_V6] {
        assert!(
            wait_until(WAIT, || s.r1.bfd_status(peer).as_deref() == Some("down")),
            "BFD to {peer} never went down on r1"
        );
    }
    std::thread::sleep(Duration::from_secs(2));
    for (prefix, peer) in [(V4, POP1_V4), (V6, POP1_V6)] {
        let p =
            s.r1.path_from(prefix, peer)
                .unwrap_or_else(|| panic!("{prefix}: path from {peer} gone after kill -9"));
        assert!(frr::is_stale(&p), "{prefix} not stale: {p}");
        assert!(s.in_fib(prefix), "{prefix} left the FIB");
    }
    println!("kill -9: routes kept stale with BFD down (graceful restart)");
    // anypop back: BFD and BGP up, the routes refreshed (no longer stale).
    s.pop1.crash_and_restart(Duration::ZERO);
    s.wait_all_up("restart after kill -9");
    for (prefix, peer) in [(V4, POP1_V4), (V6, POP1_V6)] {
        assert!(
            s.r1.wait_path(prefix, peer, WAIT, |p| !frr::is_stale(p))
                .is_some(),
            "{prefix} still stale after the restart"
        );
    }
}

/// The lab with pop1 configured for `shutdown: mode`.
fn setup_shutdown(test: &str, mode: &str) -> Option<Setup> {
    if !lab_available(test, PROGRAMS) {
        return None;
    }
    let lab = Lab::from_clab(&repo_root().join("topologies/frr-bfd/frr-bfd.clab.yml"));
    let r1 = Frr::start(&lab, "r1", &topology_file("frr-bfd/frr/r1/frr.conf"));
    let yaml = topology_file("frr-bfd/anypop/pop1.yaml")
        .replace("shutdown: withdraw", &format!("shutdown: {mode}"));
    let pop1 = PopNode::start(&lab, "pop1", &yaml);
    let s = Setup { pop1, r1, lab };
    s.wait_all_up("start");
    Some(s)
}

#[test]
fn bfd_frr_sigterm_graceful_restart_keeps_routes_withdraw_sends_admin_down() {
    let test = "bfd_frr_sigterm_graceful_restart_keeps_routes_withdraw_sends_admin_down";
    // Graceful restart: the Cease reaches r1 before BFD falls silent, so
    // BFD going down afterwards does not flush the routes.
    let Some(mut s) = setup_shutdown(test, "graceful_restart") else {
        return;
    };
    s.pop1.proc.signal(libc::SIGTERM);
    assert!(s.pop1.proc.wait_exit(WAIT).is_some(), "anypop did not exit");
    for peer in [POP1_V4, POP1_V6] {
        assert!(
            wait_until(WAIT, || s.r1.bfd_status(peer).as_deref() == Some("down")),
            "BFD to {peer} never went down on r1"
        );
    }
    std::thread::sleep(Duration::from_secs(2));
    for (prefix, peer) in [(V4, POP1_V4), (V6, POP1_V6)] {
        let p =
            s.r1.path_from(prefix, peer)
                .unwrap_or_else(|| panic!("{prefix}: gone after a graceful-restart SIGTERM"));
        assert!(frr::is_stale(&p), "{prefix} not stale: {p}");
        assert!(s.in_fib(prefix), "{prefix} left the FIB");
    }
    drop(s);
    // Withdraw: routes withdrawn, then BFD AdminDown (r1 learns at once
    // that this was no failure of the path).
    let Some(mut s) = setup_shutdown(test, "withdraw") else {
        return;
    };
    s.pop1.proc.signal(libc::SIGTERM);
    assert!(s.pop1.proc.wait_exit(WAIT).is_some(), "anypop did not exit");
    assert!(wait_until(WAIT, || !s.in_fib(V4) && !s.in_fib(V6)));
    for peer in [POP1_V4, POP1_V6] {
        let b = wait_for(WAIT, || {
            s.r1.bfd_peer(peer)
                .filter(|b| b.get("status").and_then(Value::as_str) == Some("down"))
        })
        .unwrap_or_else(|| panic!("BFD to {peer} never went down on r1"));
        println!("r1 BFD session to {peer} after SIGTERM (withdraw): {b}");
        assert_eq!(
            b.get("remote-diagnostic").and_then(Value::as_str),
            Some("administratively down"),
            "{peer}: {b}"
        );
    }
}
