//! FRR (zebra + bgpd, and bfdd when the config has a `bfd` block) in a
//! namespace, started exactly as ../shared/LAB.md shows: own directory per
//! router owned by frr:frr, zebra first, the others once zebra's socket
//! exists (each reads the same frr.conf), vtysh through the router's own vty
//! socket. zebra runs with `--v6-rr-semantics` (see [`zebra_options`]).
//! Queries return parsed `vtysh ... json`; the kernel FIB is read with
//! [`super::Lab::bgp_routes`].

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::{must, pid_alive, read_pid, sh, stop_pid, Lab};
use crate::{wait_for, wait_until};

/// A running FRR router (zebra + bgpd). Killed on drop.
pub struct Frr {
    pub node: String,
    ns: String,
    dir: PathBuf,
    started: SystemTime,
}

impl Frr {
    /// Starts zebra and bgpd for `node` with `frr_conf` as bgpd's config,
    /// and bfdd with the same file if it has a `bfd` block. Panics (with the
    /// logs) if they do not come up.
    pub fn start(lab: &Lab, node: &str, frr_conf: &str) -> Frr {
        let dir = lab.subdir(&format!("frr-{node}"));
        let run = dir.join("run");
        std::fs::create_dir_all(&run).unwrap_or_else(|e| panic!("mkdir: {e}"));
        std::fs::write(dir.join("frr.conf"), frr_conf).unwrap_or_else(|e| panic!("write: {e}"));
        std::fs::write(dir.join("zebra.conf"), format!("hostname {node}\n"))
            .unwrap_or_else(|e| panic!("write: {e}"));
        let _ = std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o755));
        must(Command::new("chown").args(["-R", "frr:frr"]).arg(&dir));
        let frr = Frr {
            node: node.to_string(),
            ns: lab.ns(node).to_string(),
            dir,
            started: lab.started(),
        };
        frr.start_daemon("zebra", "zebra.conf", "zserv.api");
        if frr_conf.lines().any(|l| l.trim_end() == "bfd") {
            frr.start_daemon("bfdd", "frr.conf", "bfdd.vty");
        }
        frr.start_daemon("bgpd", "frr.conf", "bgpd.vty");
        frr
    }

    /// Starts `daemon` with `conf` and waits until it created `socket` in
    /// run/ (zebra: its zserv socket; the others: their vty socket).
    fn start_daemon(&self, daemon: &str, conf: &str, socket: &str) {
        let run = self.dir.join("run");
        let log = self.dir.join(format!("{daemon}.log"));
        // The log file must be writable by frr after privileges are dropped.
        let _ = std::fs::write(&log, "");
        let _ = sh(Command::new("chown").args(["frr:frr"]).arg(&log));
        let out = sh(Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .args([
                &format!("/usr/lib/frr/{daemon}"),
                "-d",
                "-f",
                &self.dir.join(conf).to_string_lossy(),
                "-i",
                &run.join(format!("{daemon}.pid")).to_string_lossy(),
                "--vty_socket",
                &run.to_string_lossy(),
                "-z",
                &run.join("zserv.api").to_string_lossy(),
                "-A",
                "127.0.0.1",
                "-P",
                "0",
                "--log",
                &format!("file:{}", log.display()),
                "--log-level",
                "debug",
            ])
            .args(zebra_options(daemon)));
        if let Err(e) = out {
            self.print_logs();
            panic!("start {daemon} of {}: {e}", self.node);
        }
        let socket = run.join(socket);
        if !wait_until(Duration::from_secs(20), || socket.exists()) {
            self.print_logs();
            panic!(
                "{daemon} of {} did not create {}",
                self.node,
                socket.display()
            );
        }
    }

    /// The router's directory (configs, logs, run/).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Pid of `zebra`, `bgpd` or `bfdd` from its pid file.
    pub fn pid(&self, daemon: &str) -> Option<i32> {
        read_pid(&self.dir.join("run").join(format!("{daemon}.pid")))
    }

    /// True while bgpd runs (it may crash on bad input: tests check this).
    pub fn bgpd_alive(&self) -> bool {
        self.pid("bgpd").is_some_and(pid_alive)
    }

    /// Runs one vtysh command against this router.
    pub fn vtysh(&self, cmd: &str) -> Result<String, String> {
        sh(Command::new("vtysh")
            .arg("--vty_socket")
            .arg(self.dir.join("run"))
            .args(["-c", cmd]))
    }

    /// Runs several vtysh commands in one session (e.g. `configure
    /// terminal`, then configuration lines).
    pub fn vtysh_lines(&self, cmds: &[&str]) -> Result<String, String> {
        let mut c = Command::new("vtysh");
        c.arg("--vty_socket").arg(self.dir.join("run"));
        for cmd in cmds {
            c.args(["-c", cmd]);
        }
        sh(&mut c)
    }

    /// Runs a `... json` vtysh command and parses the output.
    pub fn json(&self, cmd: &str) -> Result<Value, String> {
        let out = self.vtysh(cmd)?;
        serde_json::from_str(&out).map_err(|e| format!("{cmd}: bad json ({e}): {out}"))
    }

    /// `show bgp neighbors <peer> json` → the neighbor object.
    pub fn neighbor(&self, peer: &str) -> Option<Value> {
        let v = self.json(&format!("show bgp neighbors {peer} json")).ok()?;
        v.get(peer).cloned()
    }

    /// The neighbor's BGP state (`Established`, `Active`, ...).
    pub fn peer_state(&self, peer: &str) -> Option<String> {
        self.neighbor(peer)?
            .get("bgpState")?
            .as_str()
            .map(str::to_string)
    }

    /// Waits for the session to `peer` to be Established.
    pub fn wait_established(&self, peer: &str, timeout: Duration) -> bool {
        wait_until(timeout, || {
            self.peer_state(peer).as_deref() == Some("Established")
        })
    }

    /// How often the session to `peer` has been established and dropped
    /// (`connectionsEstablished`, `connectionsDropped`). A session reset
    /// changes both; `bgpTimerUpEstablishedEpoch` is not used because FRR
    /// derives it from the uptime and it jitters by a second.
    pub fn session_identity(&self, peer: &str) -> Option<(i64, i64)> {
        let n = self.neighbor(peer)?;
        let up = n.get("connectionsEstablished")?.as_i64()?;
        let dropped = n
            .get("connectionsDropped")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        Some((up, dropped))
    }

    /// `show bfd peers json` → the session to `peer` (bfdd running).
    pub fn bfd_peer(&self, peer: &str) -> Option<Value> {
        let v = self.json("show bfd peers json").ok()?;
        v.as_array()?
            .iter()
            .find(|p| p.get("peer").and_then(Value::as_str) == Some(peer))
            .cloned()
    }

    /// The BFD session status to `peer` (`up`, `down`, `init`, ...).
    pub fn bfd_status(&self, peer: &str) -> Option<String> {
        self.bfd_peer(peer)?
            .get("status")?
            .as_str()
            .map(str::to_string)
    }

    /// Prefixes received from `peer` for `afi` ("ipv4" / "ipv6"), from the
    /// summary (`pfxRcd`).
    pub fn pfx_rcd(&self, peer: &str, afi: &str) -> Option<u64> {
        let v = self
            .json(&format!("show bgp {afi} unicast summary json"))
            .ok()?;
        v.get("peers")?.get(peer)?.get("pfxRcd")?.as_u64()
    }

    /// Routes from `peer` in the BGP table and how many of them are stale
    /// (kept for graceful restart): `show bgp <afi> unicast neighbors <peer>
    /// prefix-counts json`. Counts the routes also while the session is
    /// down.
    pub fn prefix_counts(&self, peer: &str, afi: &str) -> Option<(u64, u64)> {
        let v = self
            .json(&format!(
                "show bgp {afi} unicast neighbors {peer} prefix-counts json"
            ))
            .ok()?;
        let c = v.get("ribTableWalkCounters")?;
        Some((c.get("All RIB")?.as_u64()?, c.get("Stale")?.as_u64()?))
    }

    /// `show bgp <afi> unicast <prefix> json`: the route's paths, empty if
    /// FRR has no route for it.
    pub fn paths(&self, prefix: &str) -> Vec<Value> {
        let afi = if prefix.contains(':') { "ipv6" } else { "ipv4" };
        let Ok(v) = self.json(&format!("show bgp {afi} unicast {prefix} json")) else {
            return Vec::new();
        };
        // A lookup of a longer-match prefix also answers; require an exact hit.
        if v.get("prefix").and_then(Value::as_str) != Some(prefix) {
            return Vec::new();
        }
        v.get("paths")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    }

    /// The path for `prefix` learned from `peer` (by `peer.peerId`).
    pub fn path_from(&self, prefix: &str, peer: &str) -> Option<Value> {
        self.paths(prefix)
            .into_iter()
            .find(|p| p.pointer("/peer/peerId").and_then(Value::as_str) == Some(peer))
    }

    /// Waits until FRR has a path for `prefix` from `peer` that satisfies `f`.
    pub fn wait_path(
        &self,
        prefix: &str,
        peer: &str,
        timeout: Duration,
        mut f: impl FnMut(&Value) -> bool,
    ) -> Option<Value> {
        wait_for(timeout, || self.path_from(prefix, peer).filter(|p| f(p)))
    }

    /// Waits until FRR has no path for `prefix` from `peer`.
    pub fn wait_no_path(&self, prefix: &str, peer: &str, timeout: Duration) -> bool {
        wait_until(timeout, || self.path_from(prefix, peer).is_none())
    }

    /// Prints the daemons' logs (used on failure).
    pub fn print_logs(&self) {
        for d in ["bgpd", "bfdd", "zebra"] {
            if !self.dir.join(format!("{d}.log")).exists() {
                continue;
            }
            super::print_log_tail(
                &format!("{} {d} log", self.node),
                &self.dir.join(format!("{d}.log")),
                60_000,
            );
        }
    }

    /// Stops bgpd, bfdd, then zebra (zebra removes its kernel routes on
    /// exit).
    pub fn stop(&mut self) {
        for d in ["bgpd", "bfdd", "zebra"] {
            if let Some(pid) = self.pid(d) {
                stop_pid(pid, Duration::from_secs(5));
            }
        }
    }
}

/// Extra command-line options of `daemon`. zebra gets
/// `--v6-rr-semantics`, as docs/bgp.md recommends for FRR 8.x routers:
/// without it zebra 8.4 changes an installed IPv6 route (new attributes,
/// such as GRACEFUL_SHUTDOWN) by deleting it from the kernel and adding it
/// again, so a route monitor cannot tell a withdrawal from an update.
fn zebra_options(daemon: &str) -> &'static [&'static str] {
    if daemon == "zebra" {
        &["--v6-rr-semantics"]
    } else {
        &[]
    }
}

impl Drop for Frr {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.print_logs();
            if let Ok(s) = self.vtysh("show bgp summary") {
                eprintln!("---- {} show bgp summary ----\n{s}", self.node);
            }
            super::print_frr_crash_logs(self.started);
        }
        self.stop();
    }
}

/// Community strings of a path (`"65000:1 65535:0"` → vec), from
/// `community.string`; empty if none.
pub fn communities(path: &Value) -> Vec<String> {
    words(path.pointer("/community/string"))
}

/// Large community strings of a path (`"64512:1:2"`), from
/// `largeCommunity.string`.
pub fn large_communities(path: &Value) -> Vec<String> {
    words(path.pointer("/largeCommunity/string"))
}

/// The AS_PATH of a path as ASNs, from `aspath.string`.
pub fn as_path(path: &Value) -> Vec<u32> {
    words(path.pointer("/aspath/string"))
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// The MED of a path, if any.
pub fn med(path: &Value) -> Option<u64> {
    path.get("metric").and_then(Value::as_u64)
}

/// True if FRR selected this path as best.
pub fn is_best(path: &Value) -> bool {
    path.pointer("/bestpath/overall").and_then(Value::as_bool) == Some(true)
}

/// True if FRR marks the path stale (graceful restart).
pub fn is_stale(path: &Value) -> bool {
    path.get("stale").and_then(Value::as_bool) == Some(true)
}

fn words(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_str)
        .map(|s| s.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}
