//! `topologies/three-pop` realised in network namespaces: the transit and
//! the three edge routers (FRR), the three PoP hosts with their anypop node
//! and HTTP service (busybox httpd), the two clients and the fleet switch,
//! all from the topology's own files (clab file, frr.conf, anypop YAML,
//! token, www/). [`ThreePop::start`] waits until the lab is converged: BGP
//! up everywhere, the anycast and unicast prefixes in the transit's FIB,
//! every PoP up in every node's fleet view and every node answering with
//! every PoP.
//!
//! The helpers act the way an operator or a client would — `dig` and HTTP
//! from a client namespace, the API and `anypop ctl` from the PoP's own
//! host, nftables in the PoP's namespace, the fleet switch's ports — and
//! never assert test expectations. Dropping a [`ThreePop`] stops anypop,
//! the services and FRR by pid, then deletes the namespaces (fields drop in
//! declaration order, the [`Lab`] last).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::anypop::{api_request, PopNode};
use super::frr::Frr;
use super::httpd::Httpd;
use super::{repo_root, topology_file, Lab, WAIT};
use crate::{anypop_bin, http_request, run, wait_until, JsonLines};

/// How long every node's fleet view must show every PoP settled before the
/// lab counts as converged: more than a pull round trip, so that no report
/// decided while the routes were converging is still on its way.
const SETTLED_FOR: Duration = Duration::from_secs(1);

/// The PoPs, in the transit's order of preference (a is nearest).
pub const POPS: [&str; 3] = ["a", "b", "c"];
/// The client namespaces behind the transit.
pub const CLIENTS: [&str; 2] = ["client1", "client2"];
/// The anycast prefix every healthy PoP announces, and its service address.
pub const ANYCAST_PREFIX: &str = "203.0.113.0/25";
pub const ANYCAST_ADDR: &str = "203.0.113.1";
/// The steering zone's records: `all` lists every PoP a node steers to
/// (`all_healthy`), `www` is the clients' name (`geo`).
pub const ALL: &str = "all.example.net";
pub const WWW: &str = "www.example.net";
/// The programs the lab runs.
pub const PROGRAMS: &[&str] = &[
    "/usr/lib/frr/zebra",
    "/usr/lib/frr/bgpd",
    "vtysh",
    "busybox",
    "dig",
    "nft",
    "ss",
];

/// Addresses and names of one PoP, as in the topology files.
#[derive(Debug, Clone, Copy)]
pub struct Pop {
    pub name: &'static str,
    /// The PoP host's namespace (anypop + service).
    pub host: &'static str,
    /// The PoP's edge router.
    pub edge: &'static str,
    /// The host's address on the edge link: BGP session and DNS listener.
    pub host_addr: &'static str,
    /// The edge router's address on that link.
    pub edge_addr: &'static str,
    /// The edge router's address towards the transit (the transit's
    /// next hop for what this PoP announces).
    pub transit_next_hop: &'static str,
    /// The PoP's unicast service address (the DNS answers) and prefix.
    pub service_addr: &'static str,
    pub unicast_prefix: &'static str,
    /// The host's address on the fleet network (API).
    pub fleet_addr: &'static str,
    /// The fleet switch's port towards this host.
    pub fleet_port: &'static str,
}

const TABLE: [Pop; 3] = [
    Pop {
        name: "a",
        host: "a",
        edge: "ra",
        host_addr: "198.51.100.2",
        edge_addr: "198.51.100.1",
        transit_next_hop: "192.0.2.2",
        service_addr: "203.0.113.129",
        unicast_prefix: "203.0.113.128/28",
        fleet_addr: "192.0.2.241",
        fleet_port: "eth1",
    },
    Pop {
        name: "b",
        host: "b",
        edge: "rb",
        host_addr: "198.51.100.18",
        edge_addr: "198.51.100.17",
        transit_next_hop: "192.0.2.6",
        service_addr: "203.0.113.145",
        unicast_prefix: "203.0.113.144/28",
        fleet_addr: "192.0.2.242",
        fleet_port: "eth2",
    },
    Pop {
        name: "c",
        host: "c",
        edge: "rc",
        host_addr: "198.51.100.34",
        edge_addr: "198.51.100.33",
        transit_next_hop: "192.0.2.10",
        service_addr: "203.0.113.161",
        unicast_prefix: "203.0.113.160/28",
        fleet_addr: "192.0.2.243",
        fleet_port: "eth3",
    },
];

/// The PoP named `name`; panics for an unknown one (a test bug).
pub fn pop(name: &str) -> Pop {
    TABLE
        .iter()
        .find(|p| p.name == name)
        .copied()
        .unwrap_or_else(|| panic!("no PoP {name:?} in three-pop"))
}

/// The PoP whose edge router is the transit's next hop `via`.
pub fn pop_by_next_hop(via: &str) -> Option<&'static str> {
    TABLE
        .iter()
        .find(|p| p.transit_next_hop == via)
        .map(|p| p.name)
}

/// The PoP whose service address is `addr` (a DNS answer).
pub fn pop_by_service_addr(addr: &str) -> Option<&'static str> {
    TABLE
        .iter()
        .find(|p| p.service_addr == addr)
        .map(|p| p.name)
}

/// The topology's anypop config of PoP `name`'s node.
pub fn node_config(name: &str) -> String {
    topology_file(&format!("three-pop/anypop/{name}.yaml"))
}

/// The running lab.
pub struct ThreePop {
    /// anypop nodes by PoP name.
    pub nodes: BTreeMap<String, PopNode>,
    services: BTreeMap<String, Httpd>,
    /// FRR routers by node name (transit, ra, rb, rc).
    pub routers: BTreeMap<String, Frr>,
    pub lab: Lab,
    token: String,
}

impl ThreePop {
    /// Builds the lab from the topology files and starts every daemon with
    /// the topology's anypop configs as they are.
    pub fn start() -> ThreePop {
        Self::start_with(|_, yaml| yaml)
    }

    /// Like [`ThreePop::start`], passing each node's config through
    /// `config(pop, yaml)` first (to shorten timings, say). Waits until the
    /// lab has converged; panics with what is missing otherwise.
    pub fn start_with(config: impl Fn(&str, String) -> String) -> ThreePop {
        let root = repo_root().join("topologies/three-pop");
        let lab = Lab::from_clab(&root.join("three-pop.clab.yml"));
        let mut routers = BTreeMap::new();
        for r in ["transit", "ra", "rb", "rc"] {
            let conf = topology_file(&format!("three-pop/frr/{r}/frr.conf"));
            routers.insert(r.to_string(), Frr::start(&lab, r, &conf));
        }
        let mut services = BTreeMap::new();
        for p in POPS {
            let www = root.join("www").join(p);
            services.insert(p.to_string(), Httpd::start(&lab, pop(p).host, &www, 80));
        }
        let token = topology_file("three-pop/anypop/token");
        let mut nodes = BTreeMap::new();
        for p in POPS {
            let yaml = config(p, node_config(p));
            let node = PopNode::start_with_files(&lab, pop(p).host, &yaml, &[("token", &token)]);
            nodes.insert(p.to_string(), node);
        }
        let lab = ThreePop {
            nodes,
            services,
            routers,
            lab,
            token: token.trim().to_string(),
        };
        lab.wait_converged();
        lab
    }

    /// BGP up, the transit's FIB complete, every node's fleet view
    /// settled, and every node answering with every PoP.
    fn wait_converged(&self) {
        let transit = &self.routers["transit"];
        for p in POPS {
            let p = pop(p);
            assert!(
                transit.wait_established(p.transit_next_hop, WAIT),
                "transit never established with {}",
                p.edge
            );
            assert!(
                self.routers[p.edge].wait_established(p.host_addr, WAIT),
                "{} never established with anypop on {}",
                p.edge,
                p.host
            );
        }
        let fib_ok = wait_until(WAIT, || {
            self.transit_next_hop(ANYCAST_PREFIX).is_some()
                && POPS
                    .iter()
                    .all(|p| self.transit_next_hop(pop(p).unicast_prefix).is_some())
        });
        assert!(
            fib_ok,
            "transit FIB never had the anycast and all unicast prefixes: {:?}",
            self.lab.bgp_routes("transit", 4)
        );
        // A node that has no verdict yet fails open (answers with every
        // PoP), and outside-in probes sent while the routes were still
        // converging may have seen PoPs unreachable (fail static can then
        // hold them up for a while): wait until every node's fleet view has
        // had every PoP settled — up with every fresh vantage point agreeing
        // — for a second without a break.
        self.wait_settled();
        for server in POPS {
            let ok = wait_until(WAIT, || {
                self.fleet(server)["pops"].as_object().is_some_and(|m| {
                    m.len() == POPS.len() && m.values().all(|v| v["verdict"] == "up")
                })
            });
            assert!(
                ok,
                "node {server} never saw every PoP up: {:#}",
                self.fleet(server)["pops"]
            );
            let mut last = Err(String::new());
            let ok = wait_until(WAIT, || {
                last = self.answers("client1", server, ALL);
                last.as_ref().is_ok_and(|a| a.len() == POPS.len())
            });
            assert!(ok, "node {server} never answered with every PoP: {last:?}");
        }
    }

    /// Waits until every node's fleet view has had every PoP settled (see
    /// [`ThreePop::settled_on`]) for [`SETTLED_FOR`] without a break.
    fn wait_settled(&self) {
        let mut since: Option<Instant> = None;
        let settled = wait_until(WAIT, || {
            if POPS
                .iter()
                .all(|s| POPS.iter().all(|p| self.settled_on(s, p)))
            {
                since.get_or_insert_with(Instant::now).elapsed() >= SETTLED_FOR
            } else {
                since = None;
                false
            }
        });
        assert!(
            settled,
            "fleet views never settled: {:#}",
            POPS.iter()
                .map(|s| format!("node {s}: {:#}", self.fleet(s)["pops"]))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    /// Whether node `server`'s fleet view has PoP `p` fully in service:
    /// fleet verdict and owner verdict up, no admin state, and every
    /// vantage point's verdict fresh and up (or not probed).
    pub fn settled_on(&self, server: &str, p: &str) -> bool {
        let v = &self.fleet(server)["pops"][p];
        v["verdict"] == "up"
            && v["owner"]["verdict"] == "up"
            && v["admin"].is_null()
            && v["vantage"].as_object().is_some_and(|m| {
                m.values().all(|x| {
                    x["fresh"] == true && (x["verdict"] == "up" || x["verdict"] == "not_probed")
                })
            })
    }

    /// The anypop node of PoP `name`.
    pub fn node(&self, name: &str) -> &PopNode {
        self.nodes
            .get(name)
            .unwrap_or_else(|| panic!("no node for PoP {name:?}"))
    }

    /// The HTTP service of PoP `name`.
    pub fn service(&mut self, name: &str) -> &mut Httpd {
        self.services
            .get_mut(name)
            .unwrap_or_else(|| panic!("no service for PoP {name:?}"))
    }

    /// `dig @<node of server_pop> name A +short` from `client`: the answer
    /// addresses, sorted; an error if dig got no answer (timeout, refused)
    /// or an rcode other than NOERROR.
    pub fn dig(&self, client: &str, server_pop: &str, name: &str) -> Result<Vec<String>, String> {
        let server = format!("@{}", pop(server_pop).host_addr);
        let out = self.lab.exec(
            client,
            "dig",
            &[
                &server,
                "+norecurse",
                "+time=1",
                "+tries=1",
                "+noall",
                "+comments",
                "+answer",
                name,
                "A",
            ],
        )?;
        if !out.contains("status: NOERROR") {
            return Err(format!("dig {server} {name}: {out}"));
        }
        let mut addrs: Vec<String> = out
            .lines()
            .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() == 5 && f[3] == "A").then(|| f[4].to_string())
            })
            .collect();
        addrs.sort();
        Ok(addrs)
    }

    /// The PoPs node `server_pop` steers `client` to for `name`, sorted.
    pub fn answers(
        &self,
        client: &str,
        server_pop: &str,
        name: &str,
    ) -> Result<Vec<String>, String> {
        let addrs = self.dig(client, server_pop, name)?;
        addrs
            .iter()
            .map(|a| {
                pop_by_service_addr(a)
                    .map(str::to_string)
                    .ok_or_else(|| format!("answer {a} is no PoP's address"))
            })
            .collect()
    }

    /// HTTP GET `http://addr/` from `client`: the body, trimmed (the
    /// service says `pop <name>`), or an error.
    pub fn fetch(&self, client: &str, addr: &str) -> Result<String, String> {
        let target = format!("{addr}:80");
        self.lab
            .in_ns(client, move || {
                http_request(&target, "GET", "/", None, None, Duration::from_secs(2))
            })?
            .map_err(|e| format!("GET http://{addr}/: {e}"))
            .and_then(|(status, body)| match status {
                200 => Ok(body.trim().to_string()),
                s => Err(format!("GET http://{addr}/: status {s}")),
            })
    }

    /// The next hop of `prefix` in the transit's kernel FIB, as the PoP it
    /// leads to; `None` if the prefix is not in the FIB.
    pub fn transit_next_hop(&self, prefix: &str) -> Option<&'static str> {
        let line = self.lab.kernel_route("transit", prefix)?;
        let via = line.split_whitespace().skip_while(|w| *w != "via").nth(1)?;
        pop_by_next_hop(via)
    }

    /// True while the transit has a BGP path for `prefix` that came from
    /// PoP `name`'s edge router.
    pub fn transit_has_path(&self, prefix: &str, name: &str) -> bool {
        self.routers["transit"]
            .path_from(prefix, pop(name).transit_next_hop)
            .is_some()
    }

    /// A request to node `name`'s API, from its own host, with the lab's
    /// token: (status, body as JSON, or `Value::String` if it is not JSON).
    pub fn api(&self, name: &str, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        let addr = format!("{}:8080", pop(name).fleet_addr);
        let res = api_request(
            &self.lab,
            pop(name).host,
            &addr,
            &self.token,
            method,
            path,
            body,
        );
        match res {
            (0, Value::String(e)) => (0, Value::String(format!("{method} {path} on {name}: {e}"))),
            r => r,
        }
    }

    /// `GET /v1/fleet` on node `name`: the node's fleet view
    /// (`Value::Null` when the call failed).
    pub fn fleet(&self, name: &str) -> Value {
        match self.api(name, "GET", "/v1/fleet", None) {
            (200, v) => v,
            _ => Value::Null,
        }
    }

    /// `anypop ctl --config <node config> <args>` on PoP `name`'s host:
    /// (exit code, stdout, stderr).
    pub fn ctl(&self, name: &str, args: &[&str]) -> (i32, String, String) {
        run(self
            .lab
            .cmd(pop(name).host, &anypop_bin().to_string_lossy())
            .arg("ctl")
            .arg("--config")
            .arg(self.node(name).config())
            .args(args)
            .env_remove("ANYPOP_API")
            .env_remove("ANYPOP_TOKEN")
            .env_remove("ANYPOP_TOKEN_FILE")
            .env_remove("ANYPOP_CONFIG"))
    }

    /// `anypop ctl events --json` against node `name`, collecting lines.
    pub fn events(&self, name: &str) -> JsonLines {
        JsonLines::spawn(
            self.lab
                .cmd(pop(name).host, &anypop_bin().to_string_lossy())
                .arg("ctl")
                .arg("--config")
                .arg(self.node(name).config())
                .args(["events", "--json"]),
        )
    }

    /// Drops TCP port 80 on PoP `name`'s host for packets from the hosts of
    /// the PoPs `from` (nftables, table `inet three_pop`), so their probes
    /// of the service fail while everything else still reaches it. An
    /// empty `from` removes the block.
    pub fn block_service(&self, name: &str, from: &[&str]) {
        let host = pop(name).host;
        let _ = self
            .lab
            .exec(host, "nft", &["delete", "table", "inet", "three_pop"]);
        if from.is_empty() {
            return;
        }
        let srcs: Vec<&str> = from.iter().map(|p| pop(p).host_addr).collect();
        let rules = format!(
            "table inet three_pop {{\n  chain input {{\n    type filter hook input priority 0; policy accept;\n    ip saddr {{ {} }} tcp dport 80 drop\n  }}\n}}\n",
            srcs.join(", ")
        );
        let file = self.lab.dir().join(format!("nft-{name}.conf"));
        std::fs::write(&file, rules).unwrap_or_else(|e| panic!("write {}: {e}", file.display()));
        self.lab
            .exec_must(host, "nft", &["-f", &file.to_string_lossy()]);
    }

    /// Takes PoP `name`'s host off the fleet network (its port on the fleet
    /// switch down) or back on. BGP, DNS and the service are not touched.
    pub fn set_fleet_link(&self, name: &str, up: bool) {
        let state = if up { "up" } else { "down" };
        self.lab
            .exec_must("fleet", "ip", &["link", "set", pop(name).fleet_port, state]);
    }

    /// Fails or heals PoP `name`'s maintenance file check on its own host
    /// (`/run/anypop/<name>.down`).
    pub fn set_maintenance(&self, name: &str, on: bool) {
        self.node(name).set_down(name, on);
    }

    /// The nodes' logs, for messages on failure.
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|(p, n)| format!("---- node {p} ----\n{}", n.proc.log()))
            .collect()
    }
}
