//! A small HTTP service in a lab namespace: `busybox httpd` in the
//! foreground, serving a directory (a topology's `www/<pop>/`), the same
//! command the containerlab nodes run. The process is a child of the test,
//! stopped by pid on drop; [`Httpd::stop`] and [`Httpd::start_again`] fail
//! and heal the service on demand.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::Lab;
use crate::wait_until;

/// `busybox httpd -f -p PORT -h DIR` inside a node's namespace.
pub struct Httpd {
    ns: String,
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Httpd {
    /// Starts the service on `port` (all addresses of the namespace) and
    /// waits until it accepts connections on 127.0.0.1.
    pub fn start(lab: &Lab, node: &str, dir: &Path, port: u16) -> Httpd {
        let mut h = Httpd {
            ns: lab.ns(node).to_string(),
            dir: dir.to_path_buf(),
            port,
            child: None,
        };
        h.start_again();
        h
    }

    /// (Re)starts a stopped service; no-op while it runs.
    pub fn start_again(&mut self) {
        if self.child.is_some() {
            return;
        }
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns, "busybox", "httpd", "-f", "-p"])
            .arg(self.port.to_string())
            .arg("-h")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn busybox httpd in {}: {e}", self.ns));
        self.child = Some(child);
        let (ns, port) = (self.ns.clone(), self.port);
        let up = wait_until(Duration::from_secs(20), || listening(&ns, port));
        assert!(up, "busybox httpd in {ns} never listened on port {port}");
    }

    /// Stops the service (SIGKILL): connections to its port are refused.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let (ns, port) = (self.ns.clone(), self.port);
        wait_until(Duration::from_secs(10), || !listening(&ns, port));
    }

    /// True while the service process runs.
    pub fn running(&self) -> bool {
        self.child
            .as_ref()
            .is_some_and(|c| super::pid_alive(c.id() as i32))
    }
}

impl Drop for Httpd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// True if something listens on TCP `port` in namespace `ns` (`ss -Hltn`).
fn listening(ns: &str, port: u16) -> bool {
    super::sh(Command::new("ip").args(["netns", "exec", ns, "ss", "-Hltn"]))
        .map(|out| {
            out.lines().any(|l| {
                l.split_whitespace()
                    .nth(3)
                    .is_some_and(|local| local.ends_with(&format!(":{port}")))
            })
        })
        .unwrap_or(false)
}
