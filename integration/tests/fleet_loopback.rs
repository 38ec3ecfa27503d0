//! A two-node fleet on loopback with the real binary: node a
//! (127.0.0.1) owns PoP a, node b (127.0.0.2) owns PoP b; each pulls the
//! other's report over real HTTP with a token. A drain of PoP a through
//! node a's API takes a out of node b's DNS (real `dig`) and the drain
//! waits for b's confirmation; an admin call for PoP a made on node b is
//! forwarded to node a; a node that stops leaves its PoP's last verdict in
//! the other's DNS (stale is unknown, never down). No root, no network
//! beyond loopback.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anypop_integration::dns::{dig_with, short_lines};
use anypop_integration::tls::{self, Ca, Stunnel};
use anypop_integration::{
    free_port, http_client, metric, test_zone, tools_available, wait_until, write_file, Anypop,
};
use serde_json::Value;

const T: Duration = Duration::from_secs(30);

struct Node {
    name: &'static str,
    pop: &'static str,
    ip: &'static str,
    api: u16,
    dns: u16,
    token: String,
}

impl Node {
    /// Node `name` owning `pop`, on loopback address `ip`, fresh ports.
    fn new(name: &'static str, pop: &'static str, ip: &'static str, token: &str) -> Node {
        Node {
            name,
            pop,
            ip,
            api: free_port(),
            dns: free_port(),
            token: token.into(),
        }
    }

    fn api(&self) -> String {
        format!("{}:{}", self.ip, self.api)
    }

    /// Where this node saves its admin state (`node.state_dir`).
    fn state_dir(&self, dir: &Path) -> PathBuf {
        dir.join(format!("{}-state", self.name))
    }

    /// The prefixes this node announces (`/v1/state`), with their mode.
    fn announced(&self) -> Vec<String> {
        let state = self.get("/v1/state");
        let Some(a) = state["announcements"].as_object() else {
            return Vec::new();
        };
        a.iter()
            .map(|(p, v)| format!("{p} {}", v["mode"].as_str().unwrap_or("?")))
            .collect()
    }

    /// Waits until this node announces exactly `want`.
    fn wait_announced(&self, want: &[&str]) {
        assert!(
            wait_until(T, || self.announced() == want),
            "node {} announces {:?}, not {want:?}: {}",
            self.name,
            self.announced(),
            self.get("/v1/pops")
        );
    }

    /// Waits until every peer of this node is fresh (`peers` of them) and,
    /// with `pops_up`, PoPs a and b are up in its fleet view.
    fn wait_fleet(&self, peers: usize, pops_up: bool) {
        let ok = wait_until(T, || {
            let (st, f) = self.call("GET", "/v1/fleet", "");
            st == 200
                && f["peers"]
                    .as_object()
                    .is_some_and(|p| p.len() == peers && p.values().all(|x| x["status"] == "fresh"))
                && (!pops_up
                    || f["pops"]["a"]["verdict"] == "up" && f["pops"]["b"]["verdict"] == "up")
        });
        assert!(ok, "node {}: {}", self.name, self.get("/v1/fleet"));
    }

    /// Waits until this node's DNS answers `www` with `want` alone;
    /// panics with its answer and its fleet view otherwise.
    fn wait_www(&self, want: &str) {
        assert!(
            wait_until(T, || self.www() == [want]),
            "node {} answers {:?}, not {want}: {}",
            self.name,
            self.www(),
            self.get("/v1/fleet")["pops"]
        );
    }

    /// `dig +short www.example.test A` against this node's DNS.
    fn www(&self) -> Vec<String> {
        let out = dig_with(
            Command::new("dig"),
            self.ip,
            self.dns,
            &["+short", "www.example.test", "A"],
        );
        let mut v = short_lines(&out);
        v.sort();
        v
    }

    /// One HTTP/1.1 request with a JSON body; (status, JSON answer).
    fn call(&self, method: &str, path: &str, body: &str) -> (u16, Value) {
        self.call_with(method, path, body, &[])
    }

    /// Like [`Node::call`] with extra headers.
    fn call_with(
        &self,
        method: &str,
        path: &str,
        body: &str,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let (status, text) = self.raw(method, path, body, headers);
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// One request; (status, body text). Status 0: not listening.
    fn raw(&self, method: &str, path: &str, body: &str, headers: &[(&str, &str)]) -> (u16, String) {
        let auth = format!("Bearer {}", self.token);
        let mut h = vec![
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/json"),
        ];
        h.extend_from_slice(headers);
        match http_client::request(&self.api(), method, path, &h, body.as_bytes()) {
            Ok(r) => (r.status, r.text()),
            Err(_) => (0, String::new()), // not listening (yet, or any more)
        }
    }

    /// This node's `/metrics`; empty while it does not listen.
    fn metrics(&self) -> String {
        let (status, text) = self.raw("GET", "/metrics", "", &[]);
        assert!(
            status == 200 || status == 0,
            "GET /metrics on node {}: {status} {text}",
            self.name
        );
        text
    }

    /// The value of `series` (exact, with labels) in this node's `/metrics`.
    fn metric(&self, series: &str) -> Option<f64> {
        metric(&self.metrics(), series)
    }

    /// `anypop_fleet_pop_verdict{pop, verdict}` for every verdict: the one
    /// that is 1 (None unless exactly one is 1 and the others 0).
    fn verdict_metric(&self, pop: &str) -> Option<&'static str> {
        let text = self.metrics();
        let mut current = None;
        for v in ["up", "down", "draining", "disabled", "unknown"] {
            let series = format!(r#"anypop_fleet_pop_verdict{{pop="{pop}",verdict="{v}"}}"#);
            match metric(&text, &series) {
                Some(1.0) if current.is_none() => current = Some(v),
                Some(0.0) => {}
                _ => return None,
            }
        }
        current
    }

    fn get(&self, path: &str) -> Value {
        let (status, v) = self.call("GET", path, "");
        assert_eq!(status, 200, "GET {path} on node {}: {v}", self.name);
        v
    }
}

/// One entry of `fleet.peers`.
struct Peer<'a> {
    node: &'a Node,
    /// Its base URL; `None`: `http://` its API address.
    url: Option<String>,
    ca_file: Option<&'a Path>,
}

impl<'a> Peer<'a> {
    fn http(node: &'a Node) -> Peer<'a> {
        Peer {
            node,
            url: None,
            ca_file: None,
        }
    }
}

/// The config of a two-node fleet: `me` and `peer`, each owning its PoP.
fn config(dir: &Path, me: &Node, peer: &Node) -> PathBuf {
    fleet_config(dir, me, &[Peer::http(peer)], &[])
}

/// The config of `me` in a fleet with `peers` (their tokens in
/// `<name>.token` in `dir`); PoPs a and b, `owners` lists a PoP's owners
/// where several nodes own it. Node `n`'s maintenance file of PoP `p` is
/// `<n>-<p>-maint` in `dir`.
fn fleet_config(dir: &Path, me: &Node, peers: &[Peer], owners: &[(&str, &str)]) -> PathBuf {
    let token = write_file(dir, &format!("{}.token", me.name), &me.token);
    let mut pops = String::new();
    for (p, ip) in [("a", "192.0.2.1"), ("b", "192.0.2.2")] {
        let owned = owners
            .iter()
            .find(|(pop, _)| *pop == p)
            .map(|(_, list)| format!("    owners: {list}\n"))
            .unwrap_or_default();
        pops.push_str(&format!(
            "  - name: {p}
{owned}    prefixes: [203.0.113.0/24]
    addresses: [{ip}]
    checks:
      - {{name: maint, type: file, path: {maint}, healthy_when: absent, rise: 1, fall: 1}}
    drain: {{dns_wait: 1s, settle: 1s}}
",
            maint = dir.join(format!("{}-{p}-maint", me.name)).display(),
        ));
    }
    let mut fleet_peers = String::new();
    for peer in peers {
        let n = peer.node;
        let url = peer
            .url
            .clone()
            .unwrap_or_else(|| format!("http://{}", n.api()));
        fleet_peers.push_str(&format!(
            "    - {{name: {}, pop: {}, url: \"{url}\", token_file: {}{}}}\n",
            n.name,
            n.pop,
            dir.join(format!("{}.token", n.name)).display(),
            peer.ca_file
                .map(|c| format!(", ca_file: {}", c.display()))
                .unwrap_or_default(),
        ));
    }
    let cfg = format!(
        r#"node:
  name: {me}
  pop: {pop}
  router_id: {ip}
  asn: 64512
  state_dir: {state}
api:
  listen: {ip}:{api}
  token_file: {token}
fleet:
  peers:
{fleet_peers}  pull_interval: 500ms
  stale_after: 2s
  timeout: 1s
  drain_ack_timeout: 5s
pops:
{pops}{zone}"#,
        zone = test_zone(
            &format!("{}:{}", me.ip, me.dns),
            "        - name: www\n          ttl: 5\n          steer: {policy: failover, pops: [a, b]}\n",
        ),
        me = me.name,
        pop = me.pop,
        ip = me.ip,
        api = me.api,
        token = token.display(),
        state = me.state_dir(dir).display(),
    );
    write_file(dir, &format!("{}.yaml", me.name), &cfg)
}

/// The fleet verdict of `pop` in `node`'s `/v1/fleet`.
fn verdict(node: &Node, pop: &str) -> String {
    node.get("/v1/fleet")["pops"][pop]["verdict"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[test]
fn drain_on_one_node_is_honoured_by_the_other_nodes_dns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = Node::new("a", "a", "127.0.0.1", "fleet-token-a-81f3");
    let b = Node::new("b", "b", "127.0.0.2", "fleet-token-b-2c7d");
    let ca = config(dir.path(), &a, &b);
    let cb = config(dir.path(), &b, &a);
    let pa = Anypop::run_config(&ca);
    let mut pb = Anypop::run_config(&cb);

    // Both nodes see each other fresh and both PoPs up.
    for n in [&a, &b] {
        n.wait_fleet(1, true);
    }
    // The fleet metrics say the same: b fresh, its report younger than
    // stale_after, every PoP up; pulls counted.
    let fresh_b = r#"anypop_fleet_peer_fresh{peer="b"}"#;
    let age_b = r#"anypop_fleet_peer_report_age_seconds{peer="b"}"#;
    let pulls_b = r#"anypop_fleet_peer_pulls_total{peer="b"}"#;
    let errors_b = r#"anypop_fleet_peer_pull_errors_total{peer="b"}"#;
    let young = wait_until(T, || {
        a.metric(fresh_b) == Some(1.0) && a.metric(age_b).is_some_and(|x| (0.0..2.0).contains(&x))
    });
    assert!(
        young,
        "node a: b fresh {:?}, age {:?}",
        a.metric(fresh_b),
        a.metric(age_b)
    );
    assert!(
        a.metric(pulls_b).is_some_and(|n| n >= 1.0),
        "{:?}",
        a.metric(pulls_b)
    );
    for n in [&a, &b] {
        for p in ["a", "b"] {
            assert_eq!(n.verdict_metric(p), Some("up"), "node {}, pop {p}", n.name);
        }
    }
    let f = a.get("/v1/fleet");
    assert_eq!(f["enabled"], true);
    assert_eq!(f["pops"]["b"]["owners"], serde_json::json!(["b"]));
    assert_eq!(f["pops"]["b"]["owner"]["verdict"], "up");
    for n in [&a, &b] {
        n.wait_www("192.0.2.1");
    }
    // The report endpoint: format 1, long-poll answers at once for an
    // older revision.
    let r = b.get("/v1/fleet/report");
    assert_eq!(
        (r["format"].as_u64(), r["node"].as_str()),
        (Some(1), Some("b"))
    );
    assert_eq!(r["pops"]["b"]["role"], "owner");
    let rev = r["revision"].as_u64().expect("revision");
    let inst = r["instance"].as_str().expect("instance");
    let r2 = b.get(&format!(
        "/v1/fleet/report?wait=1s&after={}&instance={inst}",
        rev.saturating_sub(1)
    ));
    assert_eq!(r2["node"], "b");

    // Drain PoP a through node a: node b's DNS stops answering with a,
    // and the DNS step waits for b's confirmation.
    let (st, v) = a.call(
        "POST",
        "/v1/pops/a/drain",
        r#"{"reason": "maintenance", "who": "alice"}"#,
    );
    assert_eq!(st, 200, "{v}");
    assert!(
        wait_until(T, || b.www() == ["192.0.2.2"]),
        "node b still answers {:?}: {}",
        b.www(),
        b.get("/v1/fleet")
    );
    assert_eq!(a.www(), ["192.0.2.2"]);
    assert_eq!(verdict(&b, "a"), "draining");
    assert_eq!(b.verdict_metric("a"), Some("draining"));
    assert_eq!(b.verdict_metric("b"), Some("up"));
    let f = b.get("/v1/fleet");
    assert_eq!(f["pops"]["a"]["admin"]["from"], "a");
    assert_eq!(f["pops"]["a"]["admin"]["who"], "alice");
    pa.wait_for_log("out of DNS on every node (b confirmed)", T);
    // Undrain: back in both nodes' DNS.
    let (st, v) = a.call("POST", "/v1/pops/a/undrain", "{}");
    assert_eq!(st, 200, "{v}");
    for n in [&a, &b] {
        n.wait_www("192.0.2.1");
    }
    assert!(
        wait_until(T, || b.verdict_metric("a") == Some("up")),
        "{:?}",
        b.verdict_metric("a")
    );

    // An admin call for PoP a on node b is forwarded to node a.
    let (st, v) = b.call(
        "POST",
        "/v1/pops/a/disable",
        r#"{"reason": "fibre cut", "who": "bob"}"#,
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["forwarded_to"]["node"], "a", "{v}");
    assert!(v["applied_here"].is_boolean(), "{v}");
    assert!(
        wait_until(T, || verdict(&b, "a") == "disabled"),
        "{}",
        b.get("/v1/fleet")
    );
    assert_eq!(b.verdict_metric("a"), Some("disabled"));
    let p = a.get("/v1/pops/a");
    assert_eq!(p["admin"]["who"], "bob via b", "{p}");
    assert_eq!(p["state"], "disabled");
    for n in [&a, &b] {
        n.wait_www("192.0.2.2");
    }
    // The owner's refusal comes back as is (nothing to enable on b), and
    // a call that was already forwarded is never forwarded again.
    let (st, v) = a.call("POST", "/v1/pops/b/enable", "{}");
    assert_eq!(st, 409, "{v}");
    assert_eq!(v["forwarded_to"]["node"], "b", "{v}");
    let (st, v) = a.call_with(
        "POST",
        "/v1/pops/b/drain",
        "{}",
        &[("X-Anypop-Forwarded-By", "c")],
    );
    assert_eq!(st, 409, "{v}");
    assert_eq!(v["owner"]["node"], "b", "{v}");
    assert_eq!(verdict(&a, "b"), "up");
    let (st, v) = b.call("POST", "/v1/pops/a/enable", "{}");
    assert_eq!(st, 200, "{v}");
    for n in [&a, &b] {
        n.wait_www("192.0.2.1");
    }

    // Node b stops: after stale_after node a counts b's report as stale,
    // PoP b keeps its last verdict (up) and node a keeps answering.
    let errors_before = a.metric(errors_b).expect("pull errors of b");
    pb.kill();
    let stale = wait_until(T, || a.get("/v1/fleet")["peers"]["b"]["status"] == "stale");
    assert!(stale, "{}", a.get("/v1/fleet"));
    // Metrics: b not fresh, its report older than stale_after and
    // ageing, no more reports, failed pulls counted while it is down.
    assert_eq!(a.metric(fresh_b), Some(0.0));
    let age = a.metric(age_b).expect("age of b's last report");
    assert!(age >= 2.0, "stale at {age}s");
    let pulls = a.metric(pulls_b);
    let more_errors = wait_until(T, || {
        a.metric(errors_b).is_some_and(|n| n >= errors_before + 2.0)
    });
    assert!(
        more_errors,
        "pull errors {errors_before} -> {:?}: {}",
        a.metric(errors_b),
        a.get("/v1/fleet")["peers"]["b"]
    );
    assert_eq!(a.metric(pulls_b), pulls, "no report from a stopped node");
    assert!(a.metric(age_b).is_some_and(|x| x > age), "the age grows");
    assert_eq!(a.verdict_metric("b"), Some("up"), "stale is not down");
    let f = a.get("/v1/fleet");
    assert_eq!(f["pops"]["b"]["verdict"], "up", "{f}");
    assert_eq!(f["pops"]["b"]["owner"]["verdict"], "unknown", "{f}");
    pa.wait_for_log("peer b: report stale", T);
    assert_eq!(a.www(), ["192.0.2.1"]);
    // With a drained too, the last PoP guard counts b as serving.
    let (st, v) = a.call("POST", "/v1/pops/a/drain", r#"{"mode": "immediate"}"#);
    assert_eq!(st, 200, "{v}");
    assert!(wait_until(T, || a.www() == ["192.0.2.2"]), "{:?}", a.www());
}

/// Node a pulls node b over https: b's API (plain HTTP on loopback) sits
/// behind stunnel, a real TLS terminator, with a certificate of a private
/// CA made at test time. With another CA, or a certificate for another
/// name, every pull fails with a clear error and b's PoP stays unknown
/// (never down); a `ca_file` replaced by one without a certificate is
/// refused at reload (the old one stays); replaced by the right CA under
/// the same name, a SIGHUP makes reports flow and admin calls are
/// forwarded over https.
#[test]
fn https_peer_behind_a_tls_terminator() {
    if !tools_available(
        "https_peer_behind_a_tls_terminator",
        &tls::TOOLS,
        "apt-get install openssl stunnel4",
    ) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let a = Node::new("a", "a", "127.0.0.1", "fleet-token-a-5d1e");
    let b = Node::new("b", "b", "127.0.0.2", "fleet-token-b-93ac");
    let fleet_ca = Ca::new(d, "fleet-ca");
    let other_ca = Ca::new(d, "other-ca");
    let (cert, key) = fleet_ca.issue("anypop-b", "IP:127.0.0.2");
    let (xcert, xkey) = fleet_ca.issue("anypop-x", "DNS:anypop-x.example.net,IP:127.0.0.9");
    let good = format!("127.0.0.2:{}", free_port());
    let misnamed = format!("127.0.0.2:{}", free_port());
    let _good = Stunnel::start(d, &good, &b.api(), &cert, &key);
    let _misnamed = Stunnel::start(d, &misnamed, &b.api(), &xcert, &xkey);
    // Node a's ca_file: first another CA's certificate, later replaced
    // under the same name.
    let ca_file = d.join("peer-ca.pem");
    let replace_ca = |from: &Path| {
        let pem = std::fs::read(from).expect("read a CA certificate");
        std::fs::write(&ca_file, pem).expect("write ca_file");
    };
    replace_ca(&other_ca.pem());
    let via = |addr: &str| {
        let p = Peer {
            node: &b,
            url: Some(format!("https://{addr}")),
            ca_file: Some(&ca_file),
        };
        fleet_config(d, &a, &[p], &[])
    };
    let _pb = Anypop::run_config(&config(d, &b, &a));
    let pa = Anypop::run_config(&via(&good));
    let peer_b = |what: &str| a.get("/v1/fleet")["peers"]["b"][what].clone();
    let errors_b = r#"anypop_fleet_peer_pull_errors_total{peer="b"}"#;

    // Signed by a CA a does not trust: pull errors, b never fresh, PoP b
    // unknown (not down).
    let failing = wait_until(T, || {
        a.metric(errors_b).is_some_and(|n| n >= 2.0) && peer_b("last_error").is_string()
    });
    assert!(failing, "{}\n{}", a.get("/v1/fleet"), pa.log());
    let error = peer_b("last_error").as_str().unwrap_or("").to_string();
    eprintln!("another CA: {error}");
    assert!(
        error.contains("not signed by a trusted CA")
            && error.contains(&ca_file.display().to_string()),
        "{error}"
    );
    assert_eq!(peer_b("status"), "never");
    let f = a.get("/v1/fleet");
    assert_eq!(f["pops"]["b"]["verdict"], "unknown", "{f}");
    assert_eq!(f["pops"]["b"]["owner"]["verdict"], "unknown", "{f}");
    assert_eq!(a.verdict_metric("b"), Some("unknown"));

    // ca_file replaced by a file without a certificate: the reload is
    // refused with the reason, the running config (the old CA) is kept.
    std::fs::write(&ca_file, "not a certificate\n").expect("write ca_file");
    let (st, v) = a.call("POST", "/v1/reload", "");
    assert_eq!(st, 422, "{v}");
    let errors = v["errors"].to_string();
    eprintln!("invalid ca_file: {errors}");
    assert!(
        errors.contains("fleet.peers[0].ca_file: no certificate in")
            && errors.contains(&ca_file.display().to_string()),
        "{v}"
    );
    let before = a.metric(errors_b).expect("pull errors");
    assert!(
        wait_until(T, || a.metric(errors_b).is_some_and(|n| n > before)),
        "{}",
        a.get("/v1/fleet")
    );
    let error = peer_b("last_error").as_str().unwrap_or("").to_string();
    assert!(error.contains("not signed by a trusted CA"), "{error}");

    // The fleet's CA under the same name, and SIGHUP: reports flow over
    // https.
    replace_ca(&fleet_ca.pem());
    pa.signal(libc::SIGHUP);
    let fresh = wait_until(T, || {
        let f = a.get("/v1/fleet");
        f["peers"]["b"]["status"] == "fresh" && f["pops"]["b"]["verdict"] == "up"
    });
    assert!(fresh, "{}\n{}", a.get("/v1/fleet"), pa.log());
    assert_eq!(a.get("/v1/fleet")["pops"]["b"]["owner"]["verdict"], "up");
    // (b, which pulls a over http, must see a serving: else b is the
    // last PoP and refuses the drain.)
    assert!(
        wait_until(T, || verdict(&b, "a") == "up"),
        "{}",
        b.get("/v1/fleet")
    );
    // An admin call for PoP b on node a is forwarded to b over https, and
    // b's next report (over https) shows it on a.
    let (st, v) = a.call(
        "POST",
        "/v1/pops/b/drain",
        r#"{"mode": "immediate", "who": "tls"}"#,
    );
    assert_eq!(st, 200, "{v}\n{}", b.get("/v1/fleet"));
    assert_eq!(v["forwarded_to"]["url"], format!("https://{good}"), "{v}");
    assert!(
        wait_until(T, || verdict(&a, "b") == "draining"),
        "{}",
        a.get("/v1/fleet")
    );
    assert_eq!(b.get("/v1/pops/b")["admin"]["who"], "tls via a");
    let (st, v) = a.call("POST", "/v1/pops/b/undrain", "{}");
    assert_eq!(st, 200, "{v}");
    assert!(
        wait_until(T, || verdict(&a, "b") == "up"),
        "{}",
        a.get("/v1/fleet")
    );

    // A certificate of the right CA for another name: pull errors that say
    // so; b's report goes stale and PoP b keeps its last verdict.
    let before = a.metric(errors_b).expect("pull errors");
    via(&misnamed);
    let (st, v) = a.call("POST", "/v1/reload", "");
    assert_eq!(st, 200, "{v}");
    let failing = wait_until(T, || {
        a.metric(errors_b).is_some_and(|n| n >= before + 2.0) && peer_b("status") == "stale"
    });
    assert!(failing, "{}\n{}", a.get("/v1/fleet"), pa.log());
    let error = peer_b("last_error").as_str().unwrap_or("").to_string();
    eprintln!("another name: {error}");
    assert!(
        error.contains("not valid for name \"127.0.0.2\""),
        "{error}"
    );
    let f = a.get("/v1/fleet");
    assert_eq!(f["pops"]["b"]["verdict"], "up", "{f}");
    assert_eq!(f["pops"]["b"]["owner"]["verdict"], "unknown", "{f}");
    assert_eq!(a.verdict_metric("b"), Some("up"));
}

/// Two nodes own PoP a (a1 and a2, two anypop hosts in one PoP), b owns
/// PoP b. PoP a stays in every node's DNS while either owner says up
/// (the one that is up keeps announcing it), leaves it when every owner
/// with a fresh report says down, and an owner whose report is stale
/// counts for nothing: neither its last "up" nor its last "down".
/// Two owners of PoP a (a1 on 127.0.0.1, a2 on 127.0.0.3) and node b
/// (127.0.0.2) owning PoP b, each pulling the other two over http; their
/// configs in `dir`.
struct SeveralOwners {
    a1: Node,
    a2: Node,
    b: Node,
    /// The config files of a1, a2 and b.
    configs: [PathBuf; 3],
}

impl SeveralOwners {
    fn new(dir: &Path) -> SeveralOwners {
        let a1 = Node::new("a1", "a", "127.0.0.1", "fleet-token-a1-0c4b");
        let a2 = Node::new("a2", "a", "127.0.0.3", "fleet-token-a2-77e0");
        let b = Node::new("b", "b", "127.0.0.2", "fleet-token-b-19fa");
        let owners = [("a", "[a1, a2]")];
        let cfg = |me: &Node, others: [&Node; 2]| {
            let peers = others.map(Peer::http);
            fleet_config(dir, me, &peers, &owners)
        };
        let configs = [
            cfg(&a1, [&a2, &b]),
            cfg(&a2, [&a1, &b]),
            cfg(&b, [&a1, &a2]),
        ];
        SeveralOwners { a1, a2, b, configs }
    }

    /// Starts the three nodes and waits until each sees the other two
    /// fresh and both PoPs up, and answers with PoP a.
    fn start(&self) -> [Anypop; 3] {
        let procs = self.configs.clone().map(|c| Anypop::run_config(&c));
        for n in self.nodes() {
            n.wait_fleet(2, true);
        }
        for n in self.nodes() {
            n.wait_www("192.0.2.1");
        }
        procs
    }

    fn nodes(&self) -> [&Node; 3] {
        [&self.a1, &self.a2, &self.b]
    }
}

#[test]
fn several_owners_of_one_pop() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let fleet = SeveralOwners::new(d);
    let [mut p1, mut p2, _pb] = fleet.start();
    let (a1, a2, b) = (&fleet.a1, &fleet.a2, &fleet.b);
    let c2 = &fleet.configs[1];
    let nodes = fleet.nodes();
    let all_answer = |nodes: &[&Node], want: &str| {
        for n in nodes {
            n.wait_www(want);
        }
    };
    assert_eq!(
        b.get("/v1/fleet")["pops"]["a"]["owners"],
        serde_json::json!(["a1", "a2"])
    );
    // What a1 says of PoP a in its report (its own inside verdict).
    let says = |n: &Node| n.get("/v1/fleet/report")["pops"]["a"]["verdict"].clone();
    let maint = |n: &Node| d.join(format!("{}-a-maint", n.name));

    // They disagree (a1's service down, a2's up): PoP a stays in DNS on
    // every node.
    write_file(d, "a1-a-maint", "");
    assert!(wait_until(T, || says(a1) == "down"), "{}", says(a1));
    // b received a1's report saying down (owner.reported is the first
    // owner's word) and still counts PoP a up.
    assert!(
        wait_until(T, || b.get("/v1/fleet")["pops"]["a"]["owner"]["reported"]
            == "down"),
        "{}",
        b.get("/v1/fleet")["pops"]["a"]
    );
    for n in nodes {
        let f = n.get("/v1/fleet");
        assert_eq!(f["pops"]["a"]["verdict"], "up", "node {}: {f}", n.name);
        assert_eq!(f["pops"]["a"]["owner"]["verdict"], "up", "node {}", n.name);
    }
    all_answer(&nodes, "192.0.2.1");

    // Both down: out of every node's DNS.
    write_file(d, "a2-a-maint", "");
    all_answer(&nodes, "192.0.2.2");
    assert_eq!(verdict(b, "a"), "down");
    assert_eq!(b.verdict_metric("a"), Some("down"));
    // a1 up again (a2 still down): back everywhere.
    std::fs::remove_file(maint(a1)).expect("rm a1's maintenance file");
    all_answer(&nodes, "192.0.2.1");

    // a2 (down) stops: its stale report counts for nothing, a1 (up)
    // keeps PoP a in DNS.
    p2.kill();
    let stale = |n: &Node, peer: &str| {
        wait_until(T, || n.get("/v1/fleet")["peers"][peer]["status"] == "stale")
    };
    assert!(stale(b, "a2"), "{}", b.get("/v1/fleet"));
    assert_eq!(verdict(b, "a"), "up");
    all_answer(&[a1, b], "192.0.2.1");
    // a2 comes back, still down; then a1 (up) stops: a2's fresh "down"
    // decides, a1's stale "up" does not hold PoP a in DNS.
    let _p2 = Anypop::run_config(c2);
    let fresh = wait_until(T, || {
        let f = b.get("/v1/fleet");
        f["peers"]["a2"]["status"] == "fresh"
    });
    assert!(fresh, "{}", b.get("/v1/fleet"));
    assert_eq!(verdict(b, "a"), "up");
    p1.kill();
    assert!(stale(b, "a1"), "{}", b.get("/v1/fleet"));
    all_answer(&[a2, b], "192.0.2.2");
    let f = b.get("/v1/fleet");
    assert_eq!(f["pops"]["a"]["verdict"], "down", "{f}");
    assert_eq!(f["pops"]["a"]["owner"]["verdict"], "down", "{f}");
}

/// A call on one owner of PoP a is applied there and forwarded to the
/// other owner: a drain on a1 takes PoP a out of BGP on both owners (each
/// one's announcements in `/v1/state`) and out of every node's DNS, an
/// undrain on a1 brings both back. With a2 down the drain applies on a1
/// (saved in its state file) and the answer and a `fleet` event say that
/// a2 did not get it; PoP a stays out of every node's DNS (a1's drain is
/// the PoP's). Once a2 is back, an undrain on a1 (a2 has nothing to undo)
/// restores the PoP.
#[test]
fn a_call_on_one_owner_applies_to_every_owner() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let fleet = SeveralOwners::new(d);
    let [p1, mut p2, _pb] = fleet.start();
    let (a1, a2, b) = (&fleet.a1, &fleet.a2, &fleet.b);
    let owners = [a1, a2];
    let prefix = "203.0.113.0/24";
    let normal = format!("{prefix} normal");
    let all_answer = |want: &str| {
        for n in fleet.nodes() {
            n.wait_www(want);
        }
    };
    for n in owners {
        n.wait_announced(&[&normal]);
    }

    // Drain on a1: applied on a1 and forwarded to a2 with the caller's
    // reason and who.
    let (st, v) = a1.call(
        "POST",
        "/v1/pops/a/drain",
        r#"{"reason": "maintenance", "who": "alice"}"#,
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["owners"][0]["node"], "a1", "{v}");
    assert_eq!(v["owners"][0]["result"], "applied", "{v}");
    assert_eq!(v["owners"][1]["node"], "a2", "{v}");
    assert_eq!(v["owners"][1]["result"], "applied", "{v}");
    assert_eq!(v["owners"][1]["status"], 200, "{v}");
    assert_eq!(v["admin"]["who"], "alice", "{v}");
    // a2's own admin state (its report; `/v1/pops` shows the PoP's).
    let own_admin = |n: &Node| n.get("/v1/fleet/report")["pops"]["a"]["admin"].clone();
    let admin = own_admin(a2);
    assert_eq!(admin["who"], "alice via a1", "{admin}");
    assert_eq!(admin["reason"], "maintenance", "{admin}");
    // Out of every node's DNS, then out of BGP on both owners.
    all_answer("192.0.2.2");
    for n in owners {
        n.wait_announced(&[]);
    }
    p1.wait_for_log("pop a out of DNS on every node", T);
    assert_eq!(verdict(b, "a"), "draining");
    // Undrain on a1: both owners announce again, back in DNS everywhere.
    let (st, v) = a1.call("POST", "/v1/pops/a/undrain", r#"{"who": "alice"}"#);
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["owners"][1]["result"], "applied", "{v}");
    for n in owners {
        n.wait_announced(&[&normal]);
    }
    all_answer("192.0.2.1");
    assert!(
        wait_until(T, || owners.iter().all(|n| own_admin(n).is_null())),
        "{} {}",
        own_admin(a1),
        own_admin(a2)
    );

    // a2 down: the drain applies on a1 (and is saved there), the answer
    // says a2 did not get it, and so does a fleet event.
    p2.kill();
    let (st, v) = a1.call(
        "POST",
        "/v1/pops/a/drain",
        r#"{"mode": "immediate", "reason": "fibre", "who": "bob"}"#,
    );
    assert_eq!(st, 502, "{v}");
    let error = v["error"].as_str().unwrap_or("").to_string();
    eprintln!("one owner down: {error}");
    assert!(
        error.contains("drain applied on a1, not on every owner (a2: ")
            && error.contains("could not be reached")
            && error.contains("nothing was applied"),
        "{v}"
    );
    assert_eq!(v["owners"][0]["result"], "applied", "{v}");
    assert_eq!(v["owners"][1]["result"], "failed", "{v}");
    assert_eq!(v["owners"][1]["status"], 502, "{v}");
    assert_eq!(v["admin"]["who"], "bob", "{v}");
    p1.wait_for_log("drain applied on a1, not on every owner", T);
    let saved = std::fs::read_to_string(a1.state_dir(d).join("admin-state.json"))
        .expect("a1's admin state file");
    assert!(saved.contains("fibre"), "{saved}");
    a1.wait_announced(&[]);
    for n in [a1, b] {
        n.wait_www("192.0.2.2");
    }
    // a2 back (not drained, it never got the call): a1's drain keeps PoP
    // a out of DNS on every node; a2 announces on its own sessions.
    let _p2 = Anypop::run_config(&fleet.configs[1]);
    for n in fleet.nodes() {
        n.wait_fleet(2, false);
    }
    a2.wait_announced(&[&normal]);
    assert!(own_admin(a2).is_null(), "{}", own_admin(a2));
    all_answer("192.0.2.2");
    // Undrain on a1: a2 has nothing to undo, the PoP is back.
    let (st, v) = a1.call("POST", "/v1/pops/a/undrain", "{}");
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["owners"][1]["result"], "nothing_to_undo", "{v}");
    a1.wait_announced(&[&normal]);
    all_answer("192.0.2.1");
}
