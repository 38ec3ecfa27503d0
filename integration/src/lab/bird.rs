//! BIRD 2 in a namespace with its own control socket and pid file, run in
//! the foreground as our child (`-f`) so that `log stderr all;` in the
//! topology's bird.conf lands in the lab's log file; queried with `birdc -s`. BIRD has no JSON output: the helpers parse the few
//! lines tests need from `show protocols` and `show route ... all`.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{read_pid, sh, stop_pid, Lab};
use crate::wait_until;

/// A running BIRD. Killed on drop.
pub struct Bird {
    pub node: String,
    dir: PathBuf,
    child: Option<Child>,
}

impl Bird {
    /// Starts bird for `node` with `conf`; waits for the control socket.
    pub fn start(lab: &Lab, node: &str, conf: &str) -> Bird {
        let dir = lab.subdir(&format!("bird-{node}"));
        let conf_path = dir.join("bird.conf");
        std::fs::write(&conf_path, conf).unwrap_or_else(|e| panic!("write: {e}"));
        let log = File::create(dir.join("bird.log")).unwrap_or_else(|e| panic!("log: {e}"));
        let log2 = log.try_clone().unwrap_or_else(|e| panic!("log: {e}"));
        let mut b = Bird {
            node: node.to_string(),
            dir,
            child: None,
        };
        let child = Command::new("ip")
            .args(["netns", "exec", lab.ns(node), "bird", "-f", "-c"])
            .arg(&conf_path)
            .arg("-s")
            .arg(b.sock())
            .arg("-P")
            .arg(b.dir.join("bird.pid"))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn bird: {e}"));
        b.child = Some(child);
        if !wait_until(Duration::from_secs(20), || b.birdc("show status").is_ok()) {
            b.print_logs();
            panic!("bird of {node} did not answer on {}", b.sock().display());
        }
        b
    }

    fn sock(&self) -> PathBuf {
        self.dir.join("bird.ctl")
    }

    /// Pid of bird.
    pub fn pid(&self) -> Option<i32> {
        read_pid(&self.dir.join("bird.pid"))
    }

    /// Runs one birdc command.
    pub fn birdc(&self, cmd: &str) -> Result<String, String> {
        let mut c = Command::new("birdc");
        c.arg("-s").arg(self.sock());
        c.args(cmd.split_whitespace());
        sh(&mut c)
    }

    /// The protocol's BGP state from `show protocols` (`Established`, ...).
    pub fn protocol_state(&self, proto: &str) -> Option<String> {
        let out = self.birdc(&format!("show protocols {proto}")).ok()?;
        // "name proto table state since info": info is "Established" etc.
        out.lines()
            .find(|l| l.split_whitespace().next() == Some(proto))
            .and_then(|l| l.split_whitespace().nth(5).map(str::to_string))
    }

    /// The `since` column of `show protocols` for a protocol (changes when
    /// the session resets).
    pub fn protocol_since(&self, proto: &str) -> Option<String> {
        let out = self.birdc(&format!("show protocols {proto}")).ok()?;
        out.lines()
            .find(|l| l.split_whitespace().next() == Some(proto))
            .map(|l| {
                l.split_whitespace()
                    .skip(4)
                    .take(1)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
    }

    /// Waits for the BGP protocol to reach Established.
    pub fn wait_established(&self, proto: &str, timeout: Duration) -> bool {
        wait_until(timeout, || {
            self.protocol_state(proto).as_deref() == Some("Established")
        })
    }

    /// `show route for|<prefix> all` text for an exact prefix, if BIRD has it.
    pub fn route(&self, prefix: &str) -> Option<String> {
        let out = self.birdc(&format!("show route {prefix} all")).ok()?;
        out.contains(prefix.split('/').next().unwrap_or(prefix))
            .then_some(out)
    }

    /// Number of routes imported by a protocol (`show route protocol P count`).
    pub fn route_count(&self, proto: &str) -> Option<u64> {
        let out = self
            .birdc(&format!("show route protocol {proto} count"))
            .ok()?;
        // "N of M routes for N networks in table master4"
        out.lines()
            .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
            .reduce(|a, b| a + b)
    }

    pub fn print_logs(&self) {
        super::print_log_tail(
            &format!("{} bird log", self.node),
            &self.dir.join("bird.log"),
            60_000,
        );
        if let Ok(s) = self.birdc("show protocols all") {
            eprintln!("---- {} birdc show protocols all ----\n{s}", self.node);
        }
    }

    pub fn stop(&mut self) {
        if let Some(pid) = self.pid() {
            stop_pid(pid, Duration::from_secs(5));
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Bird {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.print_logs();
        }
        self.stop();
    }
}
