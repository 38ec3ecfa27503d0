//! GoBGP (gobgpd + the gobgp CLI) in a namespace. gobgpd runs in the
//! foreground as our child; its gRPC API listens on 127.0.0.1 inside the
//! namespace, so the CLI runs there too.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::{sh, Lab};
use crate::{wait_for, wait_until};

/// A running gobgpd. Killed on drop.
pub struct Gobgp {
    pub node: String,
    ns: String,
    dir: PathBuf,
    child: Option<Child>,
}

impl Gobgp {
    /// Starts gobgpd for `node` with a TOML config and waits for its API.
    pub fn start(lab: &Lab, node: &str, toml: &str) -> Gobgp {
        let dir = lab.subdir(&format!("gobgp-{node}"));
        let conf = dir.join("gobgpd.toml");
        std::fs::write(&conf, toml).unwrap_or_else(|e| panic!("write: {e}"));
        let log = File::create(dir.join("gobgpd.log")).unwrap_or_else(|e| panic!("log: {e}"));
        let log2 = log.try_clone().unwrap_or_else(|e| panic!("log: {e}"));
        let child = Command::new("ip")
            .args(["netns", "exec", lab.ns(node), "gobgpd", "-f"])
            .arg(&conf)
            .args([
                "-t",
                "toml",
                "-p",
                "--pprof-disable",
                "--api-hosts",
                "127.0.0.1:50051",
            ])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn gobgpd: {e}"));
        let _ = std::fs::write(dir.join("gobgpd.pid"), child.id().to_string());
        let g = Gobgp {
            node: node.to_string(),
            ns: lab.ns(node).to_string(),
            dir,
            child: Some(child),
        };
        if !wait_until(Duration::from_secs(20), || g.cli(&["global"]).is_ok()) {
            g.print_logs();
            panic!("gobgpd of {node} did not answer on its API");
        }
        g
    }

    /// Pid of gobgpd.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Runs `gobgp <args>` inside the namespace.
    pub fn cli(&self, args: &[&str]) -> Result<String, String> {
        sh(Command::new("ip")
            .args(["netns", "exec", &self.ns, "gobgp"])
            .args(args))
    }

    /// Runs `gobgp <args> -j` and parses the JSON.
    pub fn json(&self, args: &[&str]) -> Result<Value, String> {
        let mut a = args.to_vec();
        a.push("-j");
        let out = self.cli(&a)?;
        serde_json::from_str(&out).map_err(|e| format!("gobgp {args:?}: bad json ({e}): {out}"))
    }

    /// The neighbor's session state (`established`, `active`, ...).
    pub fn peer_state(&self, peer: &str) -> Option<String> {
        let v = self.json(&["neighbor", peer]).ok()?;
        v.pointer("/state/session_state")
            .and_then(|s| match s {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(
                    // gobgp's enum: 1 idle .. 6 established
                    match n.as_u64() {
                        Some(6) => "established",
                        Some(1) => "idle",
                        Some(3) => "active",
                        _ => "other",
                    }
                    .to_string(),
                ),
                _ => None,
            })
            .map(|s| s.to_ascii_lowercase())
    }

    /// Waits for the session to `peer` to be established.
    pub fn wait_established(&self, peer: &str, timeout: Duration) -> bool {
        wait_until(timeout, || {
            self.peer_state(peer).as_deref() == Some("established")
        })
    }

    /// The session's uptime marker: `state.uptime`/`timers.state.uptime`
    /// (seconds since epoch when established) as GoBGP reports it.
    pub fn established_since(&self, peer: &str) -> Option<i64> {
        let v = self.json(&["neighbor", peer]).ok()?;
        v.pointer("/timers/state/uptime/seconds")
            .or_else(|| v.pointer("/timers/state/uptime"))
            .and_then(Value::as_i64)
    }

    /// Paths GoBGP has for `prefix` in its global RIB (`family` "ipv4"/"ipv6").
    pub fn rib_paths(&self, prefix: &str) -> Vec<Value> {
        let fam = if prefix.contains(':') { "ipv6" } else { "ipv4" };
        let Ok(v) = self.json(&["global", "rib", "-a", fam, prefix]) else {
            return Vec::new();
        };
        // {"<prefix>": [paths]} (or an array of destinations in some versions)
        match v {
            Value::Object(m) => m
                .get(prefix)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// Number of destinations in the global RIB for a family.
    pub fn rib_count(&self, family: &str) -> Option<u64> {
        let out = self.cli(&["global", "rib", "summary", "-a", family]).ok()?;
        // "Table ipv6-unicast\nDestination: 10000, Path: 10000"
        out.split("Destination:")
            .nth(1)?
            .split(',')
            .next()?
            .trim()
            .parse()
            .ok()
    }

    /// The gobgpd config directory.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    pub fn print_logs(&self) {
        super::print_log_tail(
            &format!("{} gobgpd log", self.node),
            &self.dir.join("gobgpd.log"),
            60_000,
        );
    }

    /// Stops gobgpd.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Gobgp {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.print_logs();
            if let Ok(s) = self.cli(&["neighbor"]) {
                eprintln!("---- {} gobgp neighbor ----\n{s}", self.node);
            }
        }
        self.stop();
    }
}

/// Attribute of a GoBGP path by its `type` code (2 AS_PATH, 4 MED, 8
/// COMMUNITIES, 32 LARGE_COMMUNITY), from `gobgp ... -j` output.
pub fn path_attr(path: &Value, code: u64) -> Option<&Value> {
    path.get("attrs")?
        .as_array()?
        .iter()
        .find(|a| a.get("type").and_then(Value::as_u64) == Some(code))
}

impl Gobgp {
    /// The path for `prefix` learned from neighbor `peer` (`neighbor-ip`).
    pub fn path_from(&self, prefix: &str, peer: &str) -> Option<Value> {
        self.rib_paths(prefix)
            .into_iter()
            .find(|p| p.get("neighbor-ip").and_then(Value::as_str) == Some(peer))
    }

    /// Waits until GoBGP has a path for `prefix` from `peer` matching `f`.
    pub fn wait_path(
        &self,
        prefix: &str,
        peer: &str,
        timeout: Duration,
        mut f: impl FnMut(&Value) -> bool,
    ) -> Option<Value> {
        wait_for(timeout, || self.path_from(prefix, peer).filter(|p| f(p)))
    }
}

/// AS_PATH of a GoBGP path, all segments flattened.
pub fn as_path(path: &Value) -> Vec<u32> {
    path_attr(path, 2)
        .and_then(|a| a.get("as_paths"))
        .and_then(Value::as_array)
        .map(|segs| {
            segs.iter()
                .filter_map(|s| s.get("asns").and_then(Value::as_array))
                .flatten()
                .filter_map(|a| a.as_u64().and_then(|a| u32::try_from(a).ok()))
                .collect()
        })
        .unwrap_or_default()
}

/// MED of a GoBGP path.
pub fn med(path: &Value) -> Option<u64> {
    path_attr(path, 4)?.get("metric")?.as_u64()
}

/// Standard communities of a GoBGP path as `asn:value` strings.
pub fn communities(path: &Value) -> Vec<String> {
    path_attr(path, 8)
        .and_then(|a| a.get("communities"))
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .filter_map(Value::as_u64)
                .map(|c| format!("{}:{}", c >> 16, c & 0xffff))
                .collect()
        })
        .unwrap_or_default()
}

/// Large communities of a GoBGP path as `a:b:c` strings.
pub fn large_communities(path: &Value) -> Vec<String> {
    path_attr(path, 32)
        .and_then(|a| a.get("value"))
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    let f = |k: &str| c.get(k).and_then(Value::as_u64).unwrap_or(0);
                    format!("{}:{}:{}", f("ASN"), f("LocalData1"), f("LocalData2"))
                })
                .collect()
        })
        .unwrap_or_default()
}
