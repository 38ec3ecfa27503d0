//! Network namespaces and veth links, and the [`Lab`] that owns them.
//!
//! A lab is either built by hand ([`Lab::new`] + [`Lab::link`] +
//! [`Lab::addr`]) or realised from a containerlab file ([`Lab::from_clab`]):
//! every node becomes a namespace, every link a veth pair with the endpoint
//! interface names, and the nodes' `exec:` lines that start with `ip ` or
//! `sysctl ` are run inside the node's namespace (that is how the topology
//! files assign addresses and routes and turn on forwarding). Logical node names (`r1`) map to unique namespace names
//! (`ap<pid>x<n>-r1`), so identical topologies run side by side.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use serde::Deserialize;

use super::{ip, must, sh};

/// A veth link between two nodes, by logical node and interface name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub a: (String, String),
    pub b: (String, String),
}

/// Namespaces plus a scratch directory, deleted on drop.
pub struct Lab {
    id: String,
    dir: tempfile::TempDir,
    /// logical name -> namespace name
    namespaces: BTreeMap<String, String>,
    started: SystemTime,
}

impl Lab {
    /// Creates one namespace per node (loopback up) and a scratch directory
    /// readable by the `frr` user.
    pub fn new(nodes: &[&str]) -> Lab {
        let id = super::unique_name("ap");
        let dir = tempfile::Builder::new()
            .prefix(&format!("anypop-lab-{id}-"))
            .tempdir()
            .unwrap_or_else(|e| panic!("create lab dir: {e}"));
        // The daemons drop privileges; they must be able to traverse it.
        let _ = std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755));
        let mut lab = Lab {
            id,
            dir,
            namespaces: BTreeMap::new(),
            started: SystemTime::now(),
        };
        for n in nodes {
            lab.add_ns(n);
        }
        lab
    }

    fn add_ns(&mut self, node: &str) {
        let name = format!("{}-{node}", self.id);
        // A leftover from a killed run with the same pid would make `add` fail.
        let _ = ip(&["netns", "del", &name]);
        must(Command::new("ip").args(["netns", "add", &name]));
        self.namespaces.insert(node.to_string(), name.clone());
        must(Command::new("ip").args(["-n", &name, "link", "set", "lo", "up"]));
        // No duplicate address detection: IPv6 addresses, including the
        // link-local ones FRR needs for IPv6 next hops, are usable at once.
        must(
            Command::new("ip")
                .args(["netns", "exec", &name, "sysctl", "-qw"])
                .args([
                    "net.ipv6.conf.all.accept_dad=0",
                    "net.ipv6.conf.default.accept_dad=0",
                ]),
        );
    }

    /// Realises a containerlab topology file: nodes, links, and the nodes'
    /// `ip ...` and `sysctl ...` exec lines (in file order). Other exec lines
    /// are ignored (they start or configure software in the container
    /// images, which the tests replace with local daemons).
    pub fn from_clab(path: &Path) -> Lab {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let topo = ClabFile::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let nodes: Vec<&str> = topo.nodes.keys().map(String::as_str).collect();
        let lab = Lab::new(&nodes);
        for l in &topo.links {
            lab.link(&l.a.0, &l.a.1, &l.b.0, &l.b.1);
        }
        for (node, cmds) in &topo.nodes {
            for c in cmds {
                let args: Vec<&str> = c.split_whitespace().collect();
                if args.first() == Some(&"sysctl") {
                    lab.exec_must(node, "sysctl", &args[1..]);
                    continue;
                }
                if args.first() != Some(&"ip") {
                    continue;
                }
                let mut args = args[1..].to_vec();
                // Skip DAD so IPv6 addresses are usable at once.
                if args.len() >= 3 && args[0] == "addr" && args[1] == "add" && args[2].contains(':')
                {
                    args.push("nodad");
                }
                lab.exec_must(node, "ip", &args);
            }
        }
        lab
    }

    /// The namespace name of a logical node; panics for an unknown node.
    pub fn ns(&self, node: &str) -> &str {
        self.namespaces
            .get(node)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("no node {node:?} in this lab"))
    }

    /// The lab's scratch directory (mode 0755).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A fresh sub-directory of the scratch directory.
    pub fn subdir(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::create_dir_all(&p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
        let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755));
        p
    }

    /// When the lab was created (crash logs newer than this are printed).
    pub fn started(&self) -> SystemTime {
        self.started
    }

    /// A veth pair `a:a_if <-> b:b_if`, both ends up.
    pub fn link(&self, a: &str, a_if: &str, b: &str, b_if: &str) {
        let (na, nb) = (self.ns(a).to_string(), self.ns(b).to_string());
        must(Command::new("ip").args([
            "link", "add", a_if, "netns", &na, "type", "veth", "peer", "name", b_if, "netns", &nb,
        ]));
        must(Command::new("ip").args(["-n", &na, "link", "set", a_if, "up"]));
        must(Command::new("ip").args(["-n", &nb, "link", "set", b_if, "up"]));
    }

    /// Adds addresses (`192.0.2.1/30`, `2001:db8::1/64`) to an interface;
    /// IPv6 without duplicate address detection.
    pub fn addr(&self, node: &str, ifname: &str, cidrs: &[&str]) {
        let ns = self.ns(node).to_string();
        for c in cidrs {
            let mut args = vec!["-n", &ns, "addr", "add", c, "dev", ifname];
            if c.contains(':') {
                args.push("nodad");
            }
            must(Command::new("ip").args(&args));
        }
    }

    /// A command that runs `prog args` inside the node's namespace.
    pub fn cmd(&self, node: &str, prog: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", self.ns(node), prog]);
        c
    }

    /// Runs `prog args` in the node's namespace; stdout or an error.
    pub fn exec(&self, node: &str, prog: &str, args: &[&str]) -> Result<String, String> {
        sh(self.cmd(node, prog).args(args))
    }

    /// Like [`Lab::exec`], panicking on failure.
    pub fn exec_must(&self, node: &str, prog: &str, args: &[&str]) -> String {
        self.exec(node, prog, args)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Prefixes in the node's kernel FIB installed by BGP (`proto bgp`),
    /// for family 4 or 6, as printed by `ip route` (`203.0.113.0/24`).
    pub fn bgp_routes(&self, node: &str, family: u8) -> Vec<String> {
        self.kernel_routes(node, family, &["proto", "bgp"])
    }

    /// Prefixes of `ip -<family> route show <filter>` in the node's namespace.
    pub fn kernel_routes(&self, node: &str, family: u8, filter: &[&str]) -> Vec<String> {
        let fam = format!("-{family}");
        let mut args = vec![fam.as_str(), "-n", self.ns(node), "route", "show"];
        args.extend_from_slice(filter);
        let out = ip(&args).unwrap_or_default();
        out.lines()
            .filter_map(|l| l.split_whitespace().next())
            .map(|p| {
                // `ip` prints host routes without a length.
                if p.contains('/') {
                    p.to_string()
                } else if p.contains(':') {
                    format!("{p}/128")
                } else {
                    format!("{p}/32")
                }
            })
            .collect()
    }

    /// The full `ip route` line for a prefix in the node's FIB, if present.
    pub fn kernel_route(&self, node: &str, prefix: &str) -> Option<String> {
        let fam = if prefix.contains(':') { "-6" } else { "-4" };
        let out = ip(&[fam, "-n", self.ns(node), "route", "show", "exact", prefix]).ok()?;
        let line = out.lines().next()?.trim().to_string();
        (!line.is_empty()).then_some(line)
    }

    /// Runs `f` on a thread that has entered the node's network namespace:
    /// sockets created there stay in that namespace and can be used from
    /// any thread afterwards (for test peers written in Rust).
    pub fn in_ns<T: Send + 'static>(
        &self,
        node: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, String> {
        let path = format!("/var/run/netns/{}", self.ns(node));
        std::thread::spawn(move || {
            let file = File::open(&path).map_err(|e| format!("open {path}: {e}"))?;
            // SAFETY: setns on a valid namespace fd; affects only this thread.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            if rc != 0 {
                return Err(format!("setns {path}: {}", std::io::Error::last_os_error()));
            }
            Ok(f())
        })
        .join()
        .map_err(|_| "namespace thread panicked".to_string())?
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            super::print_frr_crash_logs(self.started);
        }
        for ns in self.namespaces.values() {
            // Kill anything still running inside (a daemon a test forgot).
            if let Ok(pids) = ip(&["netns", "pids", ns]) {
                for pid in pids
                    .split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok())
                {
                    super::stop_pid(pid, std::time::Duration::from_secs(2));
                }
            }
            if let Err(e) = ip(&["netns", "del", ns]) {
                eprintln!("lab cleanup: {e}");
            }
        }
        if std::env::var("ANYPOP_LAB_KEEP").is_ok_and(|v| v == "1") {
            let p = std::mem::replace(
                &mut self.dir,
                tempfile::TempDir::new().unwrap_or_else(|e| panic!("tempdir: {e}")),
            );
            eprintln!("lab dir kept: {}", p.keep().display());
        }
    }
}

// ------------------------------------------------------------ containerlab file

/// The parts of a `*.clab.yml` the lab realises.
#[derive(Debug, Default)]
pub struct ClabFile {
    pub name: String,
    /// node -> exec lines
    pub nodes: BTreeMap<String, Vec<String>>,
    pub links: Vec<Link>,
}

#[derive(Deserialize)]
struct RawClab {
    name: String,
    topology: RawTopology,
}

#[derive(Deserialize)]
struct RawTopology {
    nodes: BTreeMap<String, RawNode>,
    #[serde(default)]
    links: Vec<RawLink>,
}

#[derive(Deserialize)]
struct RawNode {
    #[serde(default)]
    exec: Vec<String>,
}

#[derive(Deserialize)]
struct RawLink {
    endpoints: [String; 2],
}

impl ClabFile {
    pub fn parse(text: &str) -> Result<ClabFile, String> {
        let raw: RawClab = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
        let mut links = Vec::new();
        for l in raw.topology.links {
            let split = |e: &str| -> Result<(String, String), String> {
                let (n, i) = e
                    .split_once(':')
                    .ok_or_else(|| format!("link endpoint {e:?} is not node:interface"))?;
                if !raw.topology.nodes.contains_key(n) {
                    return Err(format!("link endpoint {e:?} names an unknown node"));
                }
                Ok((n.to_string(), i.to_string()))
            };
            links.push(Link {
                a: split(&l.endpoints[0])?,
                b: split(&l.endpoints[1])?,
            });
        }
        Ok(ClabFile {
            name: raw.name,
            nodes: raw
                .topology
                .nodes
                .into_iter()
                .map(|(k, v)| (k, v.exec))
                .collect(),
            links,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_clab_nodes_links_and_exec() {
        let t = ClabFile::parse(
            "name: t\ntopology:\n  nodes:\n    a:\n      kind: linux\n      exec: [\"ip addr add 192.0.2.1/30 dev eth1\"]\n    b: {kind: linux}\n  links:\n    - endpoints: [\"a:eth1\", \"b:eth1\"]\n",
        )
        .unwrap();
        assert_eq!(t.name, "t");
        assert_eq!(t.nodes["a"], vec!["ip addr add 192.0.2.1/30 dev eth1"]);
        assert!(t.nodes["b"].is_empty());
        assert_eq!(t.links.len(), 1);
        assert_eq!(t.links[0].b, ("b".to_string(), "eth1".to_string()));
    }

    #[test]
    fn rejects_link_to_unknown_node() {
        let e = ClabFile::parse(
            "name: t\ntopology:\n  nodes:\n    a: {}\n  links:\n    - endpoints: [\"a:eth1\", \"c:eth1\"]\n",
        )
        .unwrap_err();
        assert!(e.contains("unknown node"), "{e}");
    }
}
