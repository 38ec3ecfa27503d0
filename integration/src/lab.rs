//! Lab harness: network namespaces, veth links and real routing daemons (FRR,
//! BIRD 2, GoBGP) from Debian packages, so integration tests and benchmarks can
//! run anypop against the routers users run, without a container engine.
//!
//! A [`Lab`] owns its namespaces and a temporary directory; every router
//! handle ([`frr::Frr`], [`bird::Bird`], [`gobgp::Gobgp`]) owns its daemon
//! processes. Dropping them (also while a test panics) kills the daemons by
//! pid, deletes the namespaces and removes the files; on a panic the daemon
//! logs and FRR crash logs (/var/tmp/frr) are printed first. Declare the lab
//! before the routers (`let lab = ...; let r1 = lab.frr(...)`), so the routers
//! are dropped first. Namespace names carry the test process id and a counter,
//! so tests run in parallel.
//!
//! The topologies under `topologies/` are the source of truth: tests read the
//! router configs from there ([`topology_file`]). This module never asserts
//! test expectations; it only builds, queries and tears down.

pub mod anypop;
pub mod bench;
pub mod bird;
pub mod frr;
pub mod gobgp;
pub mod httpd;
pub mod monitor;
pub mod mrt;
pub mod netns;
pub mod pcap;
pub mod rawbgp;
pub mod three_pop;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

pub use netns::{Lab, Link};

/// Default time to wait for a BGP session or a route to appear. Generous on
/// purpose: CI machines are slow and FRR delays route processing.
pub const WAIT: Duration = Duration::from_secs(60);

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name unique to this process and call: `<prefix><pid>x<n>`. Used for
/// namespace names so parallel tests (and parallel test binaries) never clash.
pub fn unique_name(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{}x{n}", std::process::id())
}

/// True when running as root (the lab needs CAP_NET_ADMIN and `ip netns`).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and no side effects.
    unsafe { libc::geteuid() == 0 }
}

/// Returns false (after printing why) when the lab cannot run here: not root,
/// or a needed program is missing. Tests call this first and return early.
/// Set `ANYPOP_LAB_REQUIRED=1` (CI does) to turn a skip into a failure.
pub fn lab_available(test: &str, programs: &[&str]) -> bool {
    let mut missing: Vec<String> = Vec::new();
    if !is_root() {
        missing.push("root privileges (network namespaces)".into());
    }
    for p in programs {
        if !crate::have(p) && !Path::new(p).exists() {
            missing.push(format!("program {p}"));
        }
    }
    if missing.is_empty() {
        return true;
    }
    let msg = format!(
        "SKIPPED {test}: needs {} (install: apt-get install frr bird2 gobgpd tcpdump iproute2; run as root)",
        missing.join(", ")
    );
    if std::env::var("ANYPOP_LAB_REQUIRED").is_ok_and(|v| v == "1") {
        panic!("{msg}, and ANYPOP_LAB_REQUIRED=1");
    }
    eprintln!("{msg}");
    false
}

/// The repository root (parent of `integration/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Reads `topologies/<rel>`; panics with the path if it is missing (a test
/// bug, not input).
pub fn topology_file(rel: &str) -> String {
    let p = repo_root().join("topologies").join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

/// Runs a command, returning stdout on success and a descriptive error with
/// stderr otherwise.
pub fn sh(cmd: &mut Command) -> Result<String, String> {
    let desc = format!("{cmd:?}");
    match cmd.output() {
        Ok(out) if out.status.success() => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
        Ok(out) => Err(format!(
            "{desc} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        )),
        Err(e) => Err(format!("{desc}: {e}")),
    }
}

/// Like [`sh`] but panics on failure: for lab setup steps that must work.
pub fn must(cmd: &mut Command) -> String {
    sh(cmd).unwrap_or_else(|e| panic!("{e}"))
}

/// `ip <args>`.
pub fn ip(args: &[&str]) -> Result<String, String> {
    sh(Command::new("ip").args(args))
}

/// Sends `sig` to `pid`; true if the process existed.
pub fn kill_pid(pid: i32, sig: i32) -> bool {
    if pid <= 1 {
        return false;
    }
    // SAFETY: kill(2) has no memory effects.
    unsafe { libc::kill(pid, sig) == 0 }
}

/// True while `pid` exists and is not a zombie (PID 1 on the test machines
/// does not reap, so killed daemons linger as `<defunct>`).
pub fn pid_alive(pid: i32) -> bool {
    if pid <= 1 || !kill_pid(pid, 0) {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // Field 3 (after the parenthesised command) is the state.
        Ok(s) => s
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X'),
        Err(_) => false,
    }
}

/// Reads a pid file.
pub fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// SIGTERM, wait up to `grace`, then SIGKILL; waits for the process to go.
pub fn stop_pid(pid: i32, grace: Duration) {
    if !pid_alive(pid) {
        return;
    }
    kill_pid(pid, libc::SIGTERM);
    if !crate::wait_until(grace, || !pid_alive(pid)) {
        kill_pid(pid, libc::SIGKILL);
        crate::wait_until(Duration::from_secs(5), || !pid_alive(pid));
    }
    // Reap if it is our child; harmless otherwise.
    // SAFETY: waitpid with WNOHANG on a pid; no memory effects.
    unsafe {
        libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG);
    }
}

/// Resident set size of `pid` in KiB (VmRSS from /proc).
pub fn rss_kib(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Prints FRR crash logs newer than `since`: FRR keeps a log buffer per
/// daemon in /var/tmp/frr/<daemon>.<pid>/ and leaves it (plus a crashlog)
/// behind when the daemon dies abnormally. Buffers of live daemons and empty
/// (all NUL / blank) files are skipped.
pub fn print_frr_crash_logs(since: std::time::SystemTime) {
    let Ok(dir) = std::fs::read_dir("/var/tmp/frr") else {
        return;
    };
    for entry in dir.flatten() {
        let path = entry.path();
        let pid = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.rsplit_once('.'))
            .and_then(|(_, p)| p.parse::<i32>().ok());
        if pid.is_some_and(pid_alive) || !path.is_dir() {
            continue;
        }
        let files: Vec<PathBuf> = std::fs::read_dir(&path)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        for f in files {
            let newer = std::fs::metadata(&f)
                .and_then(|m| m.modified())
                .is_ok_and(|m| m >= since);
            if !newer {
                continue;
            }
            let Ok(bytes) = std::fs::read(&f) else {
                continue;
            };
            let text: String = String::from_utf8_lossy(&bytes)
                .chars()
                .filter(|c| *c != '\0')
                .collect();
            let text = text.trim();
            if !text.is_empty() {
                eprintln!("---- FRR crash log {} ----\n{text}", f.display());
            }
        }
    }
}

/// Prints the tail (last `max` bytes) of a log file, labelled.
pub fn print_log_tail(label: &str, path: &Path, max: usize) {
    match std::fs::read(path) {
        Ok(bytes) => {
            let start = bytes.len().saturating_sub(max);
            eprintln!(
                "---- {label} ({}) ----\n{}\n---- end {label} ----",
                path.display(),
                String::from_utf8_lossy(&bytes[start..])
            );
        }
        Err(e) => eprintln!("---- {label}: cannot read {}: {e}", path.display()),
    }
}
