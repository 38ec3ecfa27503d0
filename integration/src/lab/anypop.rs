//! anypop inside a lab namespace: writes a topology's anypop config with its
//! paths moved into the lab directory, starts `ip netns exec NS anypop run
//! --config FILE` through [`crate::Anypop::start_cmd`] (killed on drop, log
//! printed on failure), and flips the PoPs' `file` checks.
//!
//! Topology configs use `/run/anypop/<pop>.down` for their file checks,
//! `/var/lib/anypop` as state dir and `/etc/anypop/` for files bound into
//! the container (tokens); [`localize`] rewrites all three to the node's lab
//! directory so parallel tests never share a path.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::Lab;
use crate::{anypop_bin, http_request, Anypop};

/// Rewrites the container paths of a topology config into `dir`.
pub fn localize(yaml: &str, dir: &Path) -> String {
    let d = dir.display();
    yaml.replace("/run/anypop/", &format!("{d}/run/"))
        .replace("/var/lib/anypop", &format!("{d}/state"))
        .replace("/etc/anypop/", &format!("{d}/etc/"))
}

/// Inserts extra lines into a peer's block (after its `address:` line):
/// `with_peer_lines(yaml, "192.0.2.1", "md5_password_file: /x")`.
pub fn with_peer_lines(yaml: &str, address: &str, lines: &str) -> String {
    let mut out = String::with_capacity(yaml.len() + lines.len());
    let mut done = false;
    for l in yaml.lines() {
        out.push_str(l);
        out.push('\n');
        let t = l.trim();
        let matches = t == format!("address: {address}") || t == format!("address: \"{address}\"");
        if matches && !done {
            let indent: String = l.chars().take_while(|c| c.is_whitespace()).collect();
            for extra in lines.lines() {
                out.push_str(&indent);
                out.push_str(extra);
                out.push('\n');
            }
            done = true;
        }
    }
    assert!(done, "no peer with address {address} in config");
    out
}

/// Appends peers (YAML list items, indented for `bgp.peers`) to the config.
pub fn with_extra_peers(yaml: &str, peers: &str) -> String {
    let (head, tail) = yaml
        .split_once("\npops:\n")
        .unwrap_or_else(|| panic!("config has no top-level pops:"));
    format!("{head}\n{peers}pops:\n{tail}")
}

/// A request to the anypop API at `addr` from inside `node`'s namespace,
/// with `token`: (status, body as JSON, or `Value::String` if it is not
/// JSON); status 0 and the error as the body when the call failed.
pub fn api_request(
    lab: &Lab,
    node: &str,
    addr: &str,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, Value) {
    let (a, m, p, t) = (
        addr.to_string(),
        method.to_string(),
        path.to_string(),
        token.to_string(),
    );
    let b = body.map(str::to_string);
    let res = lab.in_ns(node, move || {
        http_request(&a, &m, &p, Some(&t), b.as_deref(), Duration::from_secs(10))
    });
    match res {
        Ok(Ok((status, text))) => {
            let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
            (status, v)
        }
        Ok(Err(e)) => (0, Value::String(e.to_string())),
        Err(e) => (0, Value::String(e)),
    }
}

/// An anypop process in a lab namespace.
pub struct PopNode {
    pub node: String,
    ns: String,
    dir: PathBuf,
    config: PathBuf,
    pub proc: Anypop,
}

impl PopNode {
    /// Writes `yaml` (localised) and starts anypop in `node`'s namespace.
    pub fn start(lab: &Lab, node: &str, yaml: &str) -> PopNode {
        Self::start_with_files(lab, node, yaml, &[])
    }

    /// Like [`PopNode::start`], first writing `files` (name, contents) into
    /// the directory the topology's `/etc/anypop/` maps to (a token file
    /// the config names, say).
    pub fn start_with_files(lab: &Lab, node: &str, yaml: &str, files: &[(&str, &str)]) -> PopNode {
        Self::start_named(lab, node, node, yaml, files)
    }

    /// Like [`PopNode::start_with_files`] for one of several anypop
    /// processes in `node`'s namespace: `name` (unique in the lab) names
    /// its directory, so each has its own config, state and files.
    pub fn start_named(
        lab: &Lab,
        node: &str,
        name: &str,
        yaml: &str,
        files: &[(&str, &str)],
    ) -> PopNode {
        let dir = lab.subdir(&format!("anypop-{name}"));
        for sub in ["run", "state", "etc"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap_or_else(|e| panic!("mkdir: {e}"));
        }
        for (name, contents) in files {
            let f = dir.join("etc").join(name);
            std::fs::write(&f, contents).unwrap_or_else(|e| panic!("write {}: {e}", f.display()));
        }
        let config = dir.join("anypop.yaml");
        std::fs::write(&config, localize(yaml, &dir)).unwrap_or_else(|e| panic!("write: {e}"));
        let ns = lab.ns(node).to_string();
        let proc = Self::spawn(&ns, &config);
        PopNode {
            node: node.to_string(),
            ns,
            dir,
            config,
            proc,
        }
    }

    fn spawn(ns: &str, config: &Path) -> Anypop {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns])
            .arg(anypop_bin())
            .arg("run")
            .arg("--config")
            .arg(config)
            .env(
                "RUST_LOG",
                std::env::var("ANYPOP_LAB_LOG").unwrap_or_else(|_| "info,anypop=debug".into()),
            );
        Anypop::start_cmd(&mut cmd)
    }

    /// The config file anypop runs with.
    pub fn config(&self) -> &Path {
        &self.config
    }

    /// The directory the topology's `/etc/anypop/` maps to.
    pub fn etc_dir(&self) -> PathBuf {
        self.dir.join("etc")
    }

    /// Replaces the config file with `yaml` (localised); a SIGHUP makes
    /// anypop reload it.
    pub fn rewrite_config(&self, yaml: &str) {
        std::fs::write(&self.config, localize(yaml, &self.dir))
            .unwrap_or_else(|e| panic!("write {}: {e}", self.config.display()));
    }

    /// The directory the topology's `/run/anypop/` maps to.
    pub fn run_dir(&self) -> PathBuf {
        self.dir.join("run")
    }

    /// Fails (`down = true`) or heals a PoP whose check is
    /// `/run/anypop/<pop>.down` with `healthy_when: absent`.
    pub fn set_down(&self, pop: &str, down: bool) {
        let f = self.run_dir().join(format!("{pop}.down"));
        if down {
            std::fs::write(&f, "down\n").unwrap_or_else(|e| panic!("write {}: {e}", f.display()));
        } else {
            let _ = std::fs::remove_file(&f);
        }
    }

    /// True while the anypop process runs.
    pub fn alive(&mut self) -> bool {
        self.proc.wait_exit(Duration::ZERO).is_none() && super::pid_alive(self.proc.pid() as i32)
    }

    /// `kill -9` the process (no NOTIFICATION, no withdraw: routers see the
    /// TCP session die) and start it again with the same config. The old
    /// log is kept in the returned string.
    pub fn crash_and_restart(&mut self, pause: Duration) -> String {
        self.proc.kill();
        let old = self.proc.log();
        std::thread::sleep(pause);
        self.proc = Self::spawn(&self.ns, &self.config);
        old
    }

    /// Kills the process (SIGKILL) without restarting.
    pub fn kill(&mut self) {
        self.proc.kill();
    }
}
