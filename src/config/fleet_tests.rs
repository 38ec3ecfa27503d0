//! `fleet` and `pops[].owners`: defaults, ownership, vantage of checks and
//! every error with its path.

use std::time::Duration;

use super::tests::{assert_error, assert_errors, errors, valid};
use crate::model::*;

/// Three PoPs a, b, c, each with a loopback http check, a service check on
/// its address and a maintenance file; this node `a` owns PoP `a`; `fleet`
/// is appended as given (YAML indented under `fleet:`).
fn three(fleet: &str) -> String {
    let mut pops = String::new();
    for (p, ip) in [("a", "192.0.2.1"), ("b", "192.0.2.2"), ("c", "192.0.2.3")] {
        pops.push_str(&format!(
            "  - name: {p}
    addresses: [{ip}]
    checks:
      - {{name: local, type: http, url: \"http://127.0.0.1:8000/\"}}
      - {{name: web, type: tcp, target: \"{ip}:80\"}}
      - {{name: maintenance, type: file, path: /etc/anypop/maintenance}}
"
        ));
    }
    format!("node: {{name: a, pop: a}}\npops:\n{pops}fleet:\n{fleet}")
}

const PEERS: &str = "  peers:
    - {name: b, pop: b, url: \"http://192.0.2.2:8080\", token_file: /etc/anypop/b.token}
    - {name: c, pop: c, url: \"https://anypop-c.example.net:8443/anypop/\"}
";

fn pop(c: &Config, n: &str) -> PopName {
    c.pops
        .keys()
        .find(|p| p.as_str() == n)
        .expect("pop")
        .clone()
}

fn node(n: &str) -> NodeName {
    Name::parse(n).expect("node name")
}

#[test]
fn without_fleet_every_check_runs_here() {
    let c = valid("node: {name: a, pop: a}\npops:\n  - name: a\n    checks:\n      - {name: web, type: tcp, target: \"192.0.2.1:80\", vantage: outside}\n");
    assert!(c.fleet.is_none());
    let a = pop(&c, "a");
    assert_eq!(c.role(&a), Role::Local);
    assert!(c.pops[&a].checks.iter().all(|ch| c.runs_here(&a, ch)));
}

#[test]
fn fleet_gets_defaults_and_owners() {
    let c = valid(&three(PEERS));
    let f = c.fleet.as_ref().expect("fleet");
    assert_eq!(f.me, node("a"));
    assert_eq!(f.pull_interval, DEFAULT_PULL_INTERVAL);
    assert_eq!(f.stale_after, Duration::from_secs(5));
    assert_eq!(f.timeout, Duration::from_secs(2));
    assert!(f.stream && f.forward_admin);
    assert_eq!(f.unreachable_quorum, 2);
    assert_eq!(f.drain_ack_timeout, Duration::from_secs(10));
    assert_eq!(f.fail_static, Some(DEFAULT_FAIL_STATIC));
    let b = &f.peers[&node("b")];
    assert_eq!(b.url.to_string(), "http://192.0.2.2:8080");
    assert_eq!(
        b.url.join("/v1/fleet/report"),
        "http://192.0.2.2:8080/v1/fleet/report"
    );
    let pc = &f.peers[&node("c")];
    assert!(pc.url.tls);
    assert_eq!(
        pc.url.to_string(),
        "https://anypop-c.example.net:8443/anypop"
    );
    assert_eq!(f.owners[&pop(&c, "a")], vec![node("a")]);
    assert_eq!(f.owners[&pop(&c, "c")], vec![node("c")]);
    assert_eq!(f.nodes(), vec![node("a"), node("b"), node("c")]);
    assert_eq!(
        f.owned_by(&node("b")).collect::<Vec<_>>(),
        vec![&pop(&c, "b")]
    );
}

#[test]
fn which_checks_run_where() {
    let c = valid(&three(PEERS));
    let (a, b) = (pop(&c, "a"), pop(&c, "b"));
    assert_eq!(c.role(&a), Role::Own);
    assert_eq!(c.role(&b), Role::Peer);
    let vantage = |p: &PopName| -> Vec<(&str, Vantage)> {
        c.pops[p]
            .checks
            .iter()
            .map(|ch| (ch.name.as_str(), ch.vantage))
            .collect()
    };
    // Loopback targets and files are inside, the service address both.
    assert_eq!(
        vantage(&a),
        vec![
            ("local", Vantage::Inside),
            ("web", Vantage::Both),
            ("maintenance", Vantage::Inside)
        ]
    );
    let here = |p: &PopName| -> Vec<&str> {
        c.pops[p]
            .checks
            .iter()
            .filter(|ch| c.runs_here(p, ch))
            .map(|ch| ch.name.as_str())
            .collect()
    };
    assert_eq!(here(&a), vec!["local", "web", "maintenance"]);
    assert_eq!(here(&b), vec!["web"]);
}

#[test]
fn explicit_vantage_and_settings() {
    let yaml = three(
        "  peers:
    - {name: b, pop: b, url: \"http://192.0.2.2:8080\"}
  pull_interval: 500ms
  stale_after: 3s
  timeout: 1s
  stream: false
  unreachable_quorum: 3
  forward_admin: false
  drain_ack_timeout: 0s
  fail_static: {fraction: 1, min_pops: 3, window: 0s}
",
    )
    .replace(
        "{name: web, type: tcp, target: \"192.0.2.1:80\"}",
        "{name: web, type: tcp, target: \"192.0.2.1:80\", vantage: outside}",
    );
    let c = valid(&yaml);
    let f = c.fleet.as_ref().expect("fleet");
    assert_eq!(f.pull_interval, Duration::from_millis(500));
    assert!(!f.stream && !f.forward_admin);
    assert_eq!(f.unreachable_quorum, 3);
    assert_eq!(f.drain_ack_timeout, Duration::ZERO);
    assert_eq!(
        f.fail_static,
        Some(FailStatic {
            fraction: 1.0,
            min_pops: 3,
            window: Duration::ZERO
        })
    );
    let a = pop(&c, "a");
    let web = &c.pops[&a].checks[1];
    assert_eq!(web.vantage, Vantage::Outside);
    assert!(
        !c.runs_here(&a, web),
        "the owner does not run outside checks"
    );
    // PoP c is owned by nobody: all its checks run here.
    let pc = pop(&c, "c");
    assert_eq!(c.role(&pc), Role::Local);
    assert!(c.pops[&pc].checks.iter().all(|ch| c.runs_here(&pc, ch)));
    let off = valid(&three("  peers: []\n  fail_static: off\n"));
    assert_eq!(off.fleet.expect("fleet").fail_static, None);
}

#[test]
fn several_owners_need_owners_list() {
    let two = "  peers:
    - {name: b, pop: a, url: \"http://192.0.2.2:8080\"}
";
    let errs = errors(&three(two));
    assert_error(
        &errs,
        "fleet.peers[0].pop",
        "PoP \"a\" is already owned by node \"a\" (node.pop); list both in pops[0].owners",
    );
    let listed = three(two).replace(
        "  - name: a\n    addresses",
        "  - name: a\n    owners: [b, a]\n    addresses",
    );
    let c = valid(&listed);
    let f = c.fleet.expect("fleet");
    assert_eq!(f.owners[&pop_of(&f, "a")], vec![node("a"), node("b")]);
}

fn pop_of(f: &FleetConfig, n: &str) -> PopName {
    f.owners
        .keys()
        .find(|p| p.as_str() == n)
        .expect("owned")
        .clone()
}

#[test]
fn ownership_errors_name_their_path() {
    let yaml = three(
        "  peers:
    - {name: b, pop: b, url: \"http://192.0.2.2:8080\"}
    - {name: c, pop: c, url: \"http://192.0.2.3:8080\"}
",
    )
    .replace(
        "  - name: b\n    addresses",
        "  - name: b\n    owners: [z, c, b, b]\n    addresses",
    );
    let errs = errors(&yaml);
    assert_errors(
        &errs,
        "",
        &[
            (
                "pops[1].owners[0]",
                "unknown node \"z\" (fleet nodes: a, b, c)",
            ),
            (
                "pops[1].owners[1]",
                "node \"c\" does not own PoP \"b\": its pop is \"c\" (fleet.peers[1].pop)",
            ),
            ("pops[1].owners[3]", "node \"b\" is listed twice"),
        ],
    );
    let errs = errors("node: {name: a}\npops:\n  - {name: a, owners: [a]}\n");
    assert_error(&errs, "pops[0].owners", "only used with a fleet");
    // A node that claims a PoP whose list leaves it out.
    let yaml = three("  peers:\n    - {name: b, pop: a, url: \"http://192.0.2.2:8080\"}\n")
        .replace(
            "  - name: a\n    addresses",
            "  - name: a\n    owners: [a]\n    addresses",
        );
    assert_error(
        &errors(&yaml),
        "fleet.peers[0].pop",
        "node \"b\" claims PoP \"a\", but pops[0].owners does not list it",
    );
}

#[test]
fn peer_errors_name_their_path() {
    let errs = errors(&three(
        "  peers:
    - {name: b, pop: x, url: \"ftp://192.0.2.2\"}
    - {name: b, url: \"http://192.0.2.2:8080\", ca_file: /etc/ca.pem}
    - {name: a, url: \"http://192.0.2.9\"}
    - {name: \"bad name\", url: \"http://192.0.2.2/?x=1\"}
    - {name: d, url: \"http://user@192.0.2.2/\", token_file: \"\"}
",
    ));
    assert_errors(
        &errs,
        "",
        &[
            (
                "fleet.peers[0].pop",
                "unknown PoP \"x\" (known PoPs: a, b, c)",
            ),
            ("fleet.peers[0].url", "not an http:// or https:// URL"),
            (
                "fleet.peers[1].name",
                "duplicate node \"b\" (first defined at fleet.peers[0])",
            ),
            ("fleet.peers[1].ca_file", "the url is http://"),
            ("fleet.peers[2].name", "this node's own name"),
            ("fleet.peers[3].name", "not a valid name"),
            ("fleet.peers[3].url", "without query or fragment"),
            ("fleet.peers[4].url", "user information"),
            ("fleet.peers[4].token_file", "expected a file path"),
        ],
    );
    let errs = errors("node: {name: \"a b\"}\nfleet: {peers: []}\n");
    assert_error(&errs, "node.name", "a fleet node's name");
}

#[test]
fn timing_and_rule_errors_name_their_path() {
    let errs = errors(&three(
        "  peers: []
  pull_interval: 2s
  stale_after: 3s
  timeout: 10s
  unreachable_quorum: 1
  drain_ack_timeout: 1h
  fail_static: {fraction: 0, min_pops: 1, window: 2m}
",
    ));
    assert_errors(
        &errs,
        "",
        &[
            ("fleet.stale_after", "at least twice pull_interval (2s)"),
            ("fleet.timeout", "shorter than stale_after (3s)"),
            (
                "fleet.unreachable_quorum",
                "one vantage point must never steer a PoP out",
            ),
            ("fleet.drain_ack_timeout", "out of range"),
            ("fleet.fail_static.fraction", "out of range"),
            (
                "fleet.fail_static.min_pops",
                "one PoP's own failure is never held",
            ),
            ("fleet.fail_static.window", "out of range"),
        ],
    );
    let errs = errors(&three("  peers: []\n  pull_interval: 10ms\n"));
    assert_error(
        &errs,
        "fleet.pull_interval",
        "out of range: expected 100ms to 1h",
    );
    let errs = errors(&three("  peers: []\n  fail_static: sometimes\n"));
    assert!(
        errs.iter()
            .any(|e| e.contains("fleet.fail_static") && e.contains("expected `off`")),
        "{errs:?}"
    );
}

#[test]
fn vantage_errors_name_their_path() {
    let errs = errors(
        &three("  peers: []\n")
            .replace(
                "{name: maintenance, type: file, path: /etc/anypop/maintenance}",
                "{name: maintenance, type: file, path: /etc/anypop/maintenance, vantage: both}",
            )
            .replace(
                "{name: local, type: http, url: \"http://127.0.0.1:8000/\"}",
                "{name: local, type: http, url: \"http://localhost:8000/\", vantage: outside}",
            ),
    );
    assert_errors(&errs, "", &[("pops[0].checks[2].vantage", "a file check runs on the PoP's own host only; expected inside"), ("pops[0].checks[0].vantage", "target localhost:8000 is a loopback address: other nodes would probe themselves; expected inside"),]);
}

/// Two self-signed CA certificates (test data, no key kept).
const CA_1: &str = include_str!("testdata/ca-1.pem");
const CA_2: &str = include_str!("testdata/ca-2.pem");

#[test]
fn ca_file_is_read_with_the_config_and_a_bad_one_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("fleet-ca.pem");
    let with_ca = three(&format!(
        "  peers:\n    - {{name: c, pop: c, url: \"https://anypop-c.example.net:8443\", ca_file: {}}}\n",
        ca.display()
    ));
    let peer_ca = |yaml: &str| {
        let cfg = valid(yaml);
        let fleet = cfg.fleet.expect("fleet");
        let c = fleet.peers.values().next().expect("peer c").clone();
        c.ca_file.expect("ca_file")
    };

    // Missing: an error naming the path and the file.
    assert_errors(
        &errors(&with_ca),
        "",
        &[
            ("fleet.peers[0].ca_file", "cannot read"),
            ("fleet.peers[0].ca_file", &ca.display().to_string()),
        ],
    );
    // A directory or a device is never read.
    for path in [dir.path().to_path_buf(), "/dev/zero".into()] {
        let yaml = with_ca.replace(&ca.display().to_string(), &path.display().to_string());
        assert_error(
            &errors(&yaml),
            "fleet.peers[0].ca_file",
            "is not a regular file",
        );
    }
    // No certificate at all, one that is not X.509, malformed PEM.
    for (content, error) in [
        ("hello\n", "no certificate in"),
        (
            "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n",
            "none of the 1 certificate(s)",
        ),
        (
            "-----BEGIN CERTIFICATE-----\nnot base64 !!\n-----END CERTIFICATE-----\n",
            "is not a valid PEM file",
        ),
    ] {
        std::fs::write(&ca, content).expect("write");
        assert_error(&errors(&with_ca), "fleet.peers[0].ca_file", error);
    }

    // A CA: its certificates are in the config; a bundle keeps every one.
    std::fs::write(&ca, CA_1).expect("write");
    let first = peer_ca(&with_ca);
    assert_eq!(first.path, ca);
    assert_eq!(first.certs.len(), 1);
    assert_eq!(peer_ca(&with_ca), first, "same file, same config");
    std::fs::write(&ca, format!("{CA_1}{CA_2}")).expect("write");
    assert_eq!(peer_ca(&with_ca).certs.len(), 2);
    // Replaced under the same name: a different peer entry (what makes a
    // reload rebuild the peer's client).
    std::fs::write(&ca, CA_2).expect("write");
    let second = peer_ca(&with_ca);
    assert_eq!(second.path, first.path);
    assert_ne!(second, first);
}
