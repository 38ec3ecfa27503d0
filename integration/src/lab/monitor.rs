//! `ip monitor route` in a node's namespace, running in the background
//! into a file: proves a route never left the FIB, where polling could miss
//! a short gap. Killed on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use super::Lab;

/// A running `ip -n NS monitor route`.
pub struct RouteMonitor {
    child: Child,
    out: PathBuf,
}

impl RouteMonitor {
    /// Starts monitoring `node`'s routes. Give it ~200 ms to subscribe
    /// before the change it must see.
    pub fn start(lab: &Lab, node: &str) -> RouteMonitor {
        let out = lab.dir().join(format!("monitor-{node}.log"));
        let file =
            std::fs::File::create(&out).unwrap_or_else(|e| panic!("create {}: {e}", out.display()));
        let child = Command::new("ip")
            .args(["-n", lab.ns(node), "monitor", "route"])
            .stdout(file)
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn ip monitor: {e}"));
        RouteMonitor { child, out }
    }

    /// The `Deleted ...` lines seen so far that contain `needle` (a prefix,
    /// or `proto bgp` for every BGP route).
    pub fn deletions_of(&self, needle: &str) -> Vec<String> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("Deleted") && l.contains(needle))
            .map(str::to_string)
            .collect()
    }
}

impl Drop for RouteMonitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
