//! A small anypop deployment on loopback, for process tests that look at a
//! whole node (web view, metrics, dashboards, systemd notifications): node
//! `ams1` of PoP `ams` with the API, DNS and three PoPs (`ams`, `fra`,
//! `lon`, each with a maintenance-file check and a location), peering over
//! BGP with a second anypop `r1` that stands in for the router (passive, on
//! its own port). Both are real processes, killed on drop with their temp
//! directory; no root needed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::http;
use crate::{anypop_bin, free_port, test_zone, wait_for, write_file, Anypop};

/// How long the demo waits for anything (start, BGP, a state change).
pub const WAIT: Duration = Duration::from_secs(30);

/// How the demo node is set up.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Bearer token for the API (`api.token_file`); `None`: open API.
    pub token: Option<String>,
    /// `api.protect_reads` (needs a token).
    pub protect_reads: bool,
    /// Extra environment for the node process (`NOTIFY_SOCKET`, ...).
    pub env: Vec<(String, String)>,
}

/// The PoPs of the demo node, with their locations (lat, lon).
pub const POPS: [(&str, f64, f64); 3] = [
    ("ams", 52.37, 4.90),
    ("fra", 50.11, 8.68),
    ("lon", 51.51, -0.13),
];

pub struct Demo {
    dir: tempfile::TempDir,
    /// `127.0.0.1:PORT` of the node's API.
    pub api: String,
    /// UDP/TCP port of the node's DNS server.
    pub dns: u16,
    config: PathBuf,
    token: Option<String>,
    /// The router stand-in (started first, so the session comes up fast).
    pub router: Anypop,
    /// The node under test.
    pub node: Anypop,
}

impl Demo {
    /// Writes both configs, starts the router stand-in and the node, and
    /// waits until the node's API answers.
    pub fn start(opts: Options) -> Demo {
        let dir = tempfile::tempdir().expect("tempdir");
        let api_port = free_port();
        let dns = free_port();
        let bgp = free_port();
        let router_cfg = format!(
            "node: {{name: r1, router_id: 192.0.2.254, asn: 64500}}\n\
             bgp:\n  listen: 127.0.0.1:{bgp}\n  peers:\n    \
             - {{name: ams1, address: 127.0.0.1, remote_asn: 64512, passive: true, hold_time: 9s, families: [ipv4, ipv6], next_hop_v6: 2001:db8::fe}}\n\
             pops: []\napi: {{listen: off}}\ndns: {{listen: []}}\n"
        );
        let router_path = write_file(dir.path(), "r1.yaml", &router_cfg);
        let router = Anypop::run_config(&router_path);

        let token_lines = match &opts.token {
            Some(t) => {
                let f = write_file(dir.path(), "token", &format!("{t}\n"));
                format!(
                    "  token_file: {}\n  protect_reads: {}\n",
                    f.display(),
                    opts.protect_reads
                )
            }
            None => String::new(),
        };
        let mut pops = String::new();
        for (i, (name, lat, lon)) in POPS.iter().enumerate() {
            let maint = dir.path().join(format!("{name}.maintenance"));
            pops.push_str(&format!(
                "  - name: {name}\n    prefixes: [203.0.113.0/24, \"2001:db8:100::/48\"]\n    \
                 addresses: [192.0.2.{n}, \"2001:db8::{n}\"]\n    location: {{lat: {lat}, lon: {lon}}}\n    \
                 checks:\n      - {{name: maintenance, type: file, path: {maint}, healthy_when: absent, rise: 1, fall: 1}}\n    \
                 drain: {{dns_wait: 2s, settle: 2s}}\n",
                n = 10 + i,
                maint = maint.display(),
            ));
        }
        let cfg = format!(
            r#"node:
  name: ams1
  pop: ams
  router_id: 192.0.2.1
  asn: 64512
  state_dir: {state}
bgp:
  peers:
    - {{name: r1, address: 127.0.0.1, port: {bgp}, remote_asn: 64500, hold_time: 9s, connect_retry: 1s, families: [ipv4, ipv6], next_hop_v6: "2001:db8::1"}}
pops:
{pops}{zone}api:
  listen: 127.0.0.1:{api_port}
{token_lines}"#,
            state = dir.path().join("state").display(),
            zone = test_zone(
                &format!("127.0.0.1:{dns}"),
                "        - name: www
          ttl: 30
          steer: {policy: failover, pops: [ams, fra, lon]}
        - name: api
          ttl: 30
          steer: {policy: weighted, weights: {ams: 2, fra: 1, lon: 1}}
",
            ),
        );
        let config = write_file(dir.path(), "ams1.yaml", &cfg);
        let mut cmd = Command::new(anypop_bin());
        cmd.args(["run", "--config", &path_str(&config)]);
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        let node = Anypop::start_cmd(&mut cmd);
        let demo = Demo {
            dir,
            api: format!("127.0.0.1:{api_port}"),
            dns,
            config,
            token: opts.token,
            router,
            node,
        };
        demo.node.wait_http_ok(&demo.api, "/healthz", WAIT);
        demo
    }

    /// The node's config file.
    pub fn config(&self) -> &Path {
        &self.config
    }

    /// The demo's temp directory (configs, token, maintenance files, state).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Puts `pop` into maintenance (its check fails) or takes it out.
    pub fn set_maintenance(&self, pop: &str, on: bool) {
        let f = self.dir.path().join(format!("{pop}.maintenance"));
        if on {
            std::fs::write(&f, "maintenance\n")
                .unwrap_or_else(|e| panic!("write {}: {e}", f.display()));
        } else {
            let _ = std::fs::remove_file(&f);
        }
    }

    /// `GET path` on the API (with the token, if any) as JSON.
    pub fn get(&self, path: &str) -> Value {
        let (status, body) = http(&self.api, "GET", path, self.token.as_deref())
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }

    /// Waits until `GET /v1/state` satisfies `f`; returns that state.
    pub fn wait_state(&self, what: &str, f: impl Fn(&Value) -> bool) -> Value {
        let mut last = Value::Null;
        let found = wait_for(WAIT, || {
            last = self.get("/v1/state");
            f(&last).then(|| last.clone())
        });
        found.unwrap_or_else(|| {
            panic!(
                "state never became {what}: {last:#}\nnode log:\n{}",
                self.node.log()
            )
        })
    }

    /// Waits until every PoP is up and the BGP session with r1 is
    /// Established.
    pub fn wait_settled(&self) -> Value {
        self.wait_state("all PoPs up and r1 Established", |s| {
            POPS.iter().all(|(p, _, _)| s["pops"][p]["state"] == "up")
                && s["peers"]["r1"]["state"] == "established"
        })
    }

    /// The node's `/metrics` text.
    pub fn metrics(&self) -> String {
        let (status, body) = http(&self.api, "GET", "/metrics", self.token.as_deref())
            .unwrap_or_else(|e| panic!("GET /metrics: {e}"));
        assert_eq!(status, 200, "{body}");
        body
    }
}

fn path_str(p: &Path) -> String {
    p.to_str().expect("temp paths are UTF-8").to_string()
}
