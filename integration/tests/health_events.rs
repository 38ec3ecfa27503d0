//! Event-driven checks through the real `anypop run` process, each with a
//! 60 s interval so that only the event can explain a reaction within
//! seconds:
//!
//! - `process` (pid file): a killed process is noticed through its pidfd,
//!   a restarted one (new pid written to the file) is picked up through
//!   inotify, and its exit is noticed again;
//! - `interface` and `address`: a veth taken down (here and at the far
//!   end: no carrier), the service address deleted from `lo` (IPv4 and
//!   IPv6), all in a network namespace the test creates, noticed through
//!   rtnetlink notifications;
//! - `systemd` and `process` (unit): a real systemd (`systemd --user`,
//!   see `anypop_integration::systemd`) stops, starts and restarts a unit;
//!   anypop follows its D-Bus signals and the main PID's pidfd.
//!
//! Reaction times are printed; only generous bounds are asserted (well
//! under the 60 s interval).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anypop_integration::lab::anypop::PopNode;
use anypop_integration::lab::{kill_pid, lab_available, Lab};
use anypop_integration::systemd::{UserManager, SYSTEMD};
use anypop_integration::{checks_config, wait_until, write_file, Anypop};

const T: Duration = Duration::from_secs(20);
/// Far below the checks' 60 s interval: a reaction within this came from
/// the event.
const EVENT: Duration = Duration::from_secs(15);

fn config(checks: &str) -> String {
    checks_config("health-events", checks)
}

/// Waits until the log has `n` lines containing `needle`; returns how long
/// that took from `since`.
fn wait_count(p: &Anypop, needle: &str, n: usize, since: Instant) -> Duration {
    let ok = wait_until(T, || p.log().matches(needle).count() >= n);
    assert!(ok, "no {n}× {needle:?} in the log:\n{}", p.log());
    since.elapsed()
}

fn sleeper() -> Child {
    Command::new("sleep")
        .arg("600")
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn sleep")
}

/// Kills and reaps a child (it stays a zombie until reaped: the check
/// must count it as exited before that).
fn kill(child: &mut Child) -> Instant {
    let at = Instant::now();
    child.kill().expect("kill");
    at
}

#[test]
fn process_exit_is_noticed_through_its_pidfd_and_a_restart_is_picked_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pid_file = dir.path().join("web.pid");
    let mut svc = sleeper();
    std::fs::write(&pid_file, format!("{}\n", svc.id())).expect("pid file");
    let cfg = config(&format!(
        "      - {{name: web, type: process, pid_file: {}, interval: 60s}}",
        pid_file.display()
    ));
    let path = write_file(dir.path(), "anypop.yaml", &cfg);
    let p = Anypop::start(&["run", "--config", path.to_str().expect("utf8")]);
    wait_count(&p, "check fra1/web up", 1, Instant::now());

    // Killed, not yet reaped (a zombie): down through the pidfd.
    let killed = kill(&mut svc);
    let took = wait_count(&p, "check fra1/web down", 1, killed);
    println!("process killed → check down in {took:?} (interval 60s, fall 1)");
    assert!(
        took < EVENT,
        "{took:?}: the reaction came from the interval"
    );
    assert!(
        p.log().contains(&format!("pid {} exited", svc.id())),
        "{}",
        p.log()
    );
    let _ = svc.wait();

    // Restarted: a new pid in the file (rewritten in place).
    let mut again = sleeper();
    let written = Instant::now();
    std::fs::write(&pid_file, format!("{}\n", again.id())).expect("pid file");
    let took = wait_count(&p, "check fra1/web up", 2, written);
    println!("new pid written → check up in {took:?} (rise 3 at the fast interval)");
    assert!(
        took < EVENT,
        "{took:?}: the restart was not picked up early"
    );
    assert!(
        p.log().contains(&format!("pid {} running", again.id())),
        "{}",
        p.log()
    );

    // The new process is watched in turn.
    let killed = kill(&mut again);
    let took = wait_count(&p, "check fra1/web down", 2, killed);
    println!("restarted process killed → check down in {took:?}");
    assert!(took < EVENT, "{took:?}");
    let _ = again.wait();
}

#[test]
fn interface_and_address_checks_follow_netlink_notifications() {
    if !lab_available("interface_and_address_checks", &["ip"]) {
        return;
    }
    let lab = Lab::new(&["pop", "peer"]);
    lab.link("pop", "eth1", "peer", "eth1");
    lab.addr("pop", "lo", &["203.0.113.10/32", "2001:db8::10/128"]);
    let cfg = config(
        "      - {name: link, type: interface, interface: eth1, interval: 60s}
      - {name: vip4, type: address, address: 203.0.113.10, interface: lo, interval: 60s}
      - {name: vip6, type: address, address: \"2001:db8::10\", interval: 60s}",
    );
    let node = PopNode::start(&lab, "pop", &cfg);
    let p = &node.proc;
    for c in ["link", "vip4", "vip6"] {
        wait_count(p, &format!("check fra1/{c} up"), 1, Instant::now());
    }
    // Each step: a command in a namespace, then the log line it must cause.
    let steps: [(&str, &[&str], &str, usize, &str); 8] = [
        (
            "pop",
            &["link", "set", "eth1", "down"],
            "check fra1/link down",
            1,
            "eth1 down",
        ),
        (
            "pop",
            &["link", "set", "eth1", "up"],
            "check fra1/link up",
            2,
            "eth1 up",
        ),
        (
            "peer",
            &["link", "set", "eth1", "down"],
            "check fra1/link down",
            2,
            "eth1 up, no carrier",
        ),
        (
            "peer",
            &["link", "set", "eth1", "up"],
            "check fra1/link up",
            3,
            "eth1 up",
        ),
        (
            "pop",
            &["addr", "del", "203.0.113.10/32", "dev", "lo"],
            "check fra1/vip4 down",
            1,
            "203.0.113.10 not on lo",
        ),
        (
            "pop",
            &["addr", "add", "203.0.113.10/32", "dev", "lo"],
            "check fra1/vip4 up",
            2,
            "203.0.113.10 on lo",
        ),
        (
            "pop",
            &["addr", "del", "2001:db8::10/128", "dev", "lo"],
            "check fra1/vip6 down",
            1,
            "2001:db8::10 not configured",
        ),
        (
            "pop",
            &["addr", "add", "2001:db8::10/128", "dev", "lo", "nodad"],
            "check fra1/vip6 up",
            2,
            "2001:db8::10 configured",
        ),
    ];
    for (ns, args, needle, n, detail) in steps {
        let at = Instant::now();
        lab.exec_must(ns, "ip", args);
        let took = wait_count(p, needle, n, at);
        println!("ip {} (in {ns}) → {needle} in {took:?}", args.join(" "));
        assert!(
            took < EVENT,
            "{took:?}: the reaction came from the interval"
        );
        assert!(
            p.log().contains(&format!("{needle}: {detail}")),
            "detail {detail:?} missing:\n{}",
            p.log()
        );
    }
}

#[test]
fn systemd_unit_and_its_main_pid_follow_dbus_and_the_pidfd() {
    if !lab_available(
        "systemd_unit_checks",
        &[SYSTEMD, "dbus-daemon", "unshare", "systemctl"],
    ) {
        return;
    }
    // PID 1 is not systemd on the test machines: a real user manager.
    let mgr = UserManager::start().unwrap_or_else(|e| panic!("{e}"));
    mgr.add_unit(
        "web.service",
        "[Service]\nExecStart=/bin/sleep 600\nRestart=always\nRestartSec=1\n",
    )
    .expect("unit");
    mgr.systemctl(&["start", "web.service"]).expect("start");

    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(
        "      - {name: unit, type: systemd, unit: web.service, interval: 60s}
      - {name: main, type: process, unit: web.service, interval: 60s}",
    );
    let path = write_file(dir.path(), "anypop.yaml", &cfg);
    let p = Anypop::start_cmd(
        Command::new(anypop_integration::anypop_bin())
            .args(["run", "--config", path.to_str().expect("utf8")])
            .env("DBUS_SYSTEM_BUS_ADDRESS", mgr.bus_address()),
    );
    wait_count(&p, "check fra1/unit up", 1, Instant::now());
    wait_count(&p, "check fra1/main up", 1, Instant::now());
    let first = mgr.main_pid("web.service").expect("MainPID");
    assert!(
        p.log()
            .contains(&format!("pid {first} running (main PID of web.service)")),
        "{}",
        p.log()
    );

    // A stop: the unit leaves `active` and its process exits.
    let stopped = Instant::now();
    mgr.systemctl(&["stop", "web.service"]).expect("stop");
    let unit = wait_count(&p, "check fra1/unit down", 1, stopped);
    let main = wait_count(&p, "check fra1/main down", 1, stopped);
    println!("systemctl stop → systemd check down in {unit:?}, process check down in {main:?}");
    assert!(unit < EVENT && main < EVENT, "{unit:?} {main:?}");

    // A start: both up again, on the new main PID.
    let started = Instant::now();
    mgr.systemctl(&["start", "web.service"]).expect("start");
    let unit = wait_count(&p, "check fra1/unit up", 2, started);
    let main = wait_count(&p, "check fra1/main up", 2, started);
    println!("systemctl start → systemd check up in {unit:?}, process check up in {main:?}");
    assert!(unit < EVENT && main < EVENT, "{unit:?} {main:?}");
    let second = mgr.main_pid("web.service").expect("MainPID");
    assert_ne!(first, second);

    // The main process is killed behind systemd's back: the pidfd sees it
    // at once; systemd restarts it after RestartSec=1 and the new main
    // PID is picked up from the unit's signals.
    let killed = Instant::now();
    assert!(kill_pid(second, libc::SIGKILL));
    let main = wait_count(&p, "check fra1/main down", 2, killed);
    println!("main process killed → process check down in {main:?}");
    assert!(main < EVENT, "{main:?}");
    let main = wait_count(&p, "check fra1/main up", 3, killed);
    let third = mgr.main_pid("web.service").expect("MainPID");
    println!("systemd restarted it as pid {third} → process check up {main:?} after the kill");
    assert!(main < EVENT, "{main:?}");
    assert!(
        p.log()
            .contains(&format!("pid {third} running (main PID of web.service)")),
        "{}",
        p.log()
    );
    mgr.systemctl(&["stop", "web.service"]).expect("stop");
}
