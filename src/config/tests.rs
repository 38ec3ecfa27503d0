//! Config parsing and validation: every class of error names its path.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::*;
use crate::model::*;

/// The errors for `yaml`, displayed (`path: message`); panics if it is valid.
pub(super) fn errors(yaml: &str) -> Vec<String> {
    match parse(yaml) {
        Ok(_) => panic!("expected errors, config was accepted:\n{yaml}"),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

pub(super) fn valid(yaml: &str) -> Config {
    match parse(yaml) {
        Ok(c) => c,
        Err(e) => panic!("expected a valid config, got:\n{e}\n---\n{yaml}"),
    }
}

/// Asserts one error is at exactly `path` and its message contains `fragment`.
#[track_caller]
pub(super) fn assert_error(errs: &[String], path: &str, fragment: &str) {
    let prefix = format!("{path}: ");
    assert!(
        errs.iter()
            .any(|e| e.starts_with(&prefix) && e[prefix.len()..].contains(fragment)),
        "no error at {path:?} containing {fragment:?}; got:\n{}",
        errs.join("\n")
    );
}

/// [`assert_error`] for every `(path, fragment)`, each path after `prefix`
/// (`""`, or a common start such as `dns.zones[0].records`).
#[track_caller]
pub(super) fn assert_errors(errs: &[String], prefix: &str, expected: &[(&str, &str)]) {
    for (path, fragment) in expected {
        assert_error(errs, &format!("{prefix}{path}"), fragment);
    }
}

const NODE: &str = "node: {name: n1, pop: a, router_id: 192.0.2.1, asn: 64512}\n";

/// A config with one PoP `a` whose single check is `check` (flow mapping
/// body, e.g. `type: tcp, target: "127.0.0.1:80"`).
fn with_check(check: &str) -> String {
    format!(
        "{NODE}pops:\n  - name: a\n    prefixes: [203.0.113.0/24]\n    checks:\n      - {{name: c1, {check}}}\n"
    )
}

/// A config with PoPs a, b (with addresses) and c (without), and one zone
/// whose records are `records` (YAML list items indented 8 spaces).
fn with_records(records: &str) -> String {
    format!(
        "{NODE}pops:
  - {{name: a, addresses: [192.0.2.10]}}
  - {{name: b, addresses: [198.51.100.10, \"2001:db8::10\"]}}
  - {{name: c}}
dns:
  zones:
    - origin: example.net
      ns: [ns1]
      records:
{records}"
    )
}

// ---------------------------------------------------------------- valid input

#[test]
fn default_config_is_valid_and_runs_without_root() {
    let c = default_config();
    assert_eq!(c.node.pop.as_ref().map(Name::as_str), Some("local"));
    assert!(c.bgp.peers.is_empty());
    assert!(c.bgp.listen.is_none());
    assert_eq!(
        c.dns.listen,
        vec!["127.0.0.1:5353".parse::<SocketAddr>().unwrap()]
    );
    assert_eq!(c.api.listen, Some("127.0.0.1:8080".parse().unwrap()));
    assert!(c.pops.len() >= 2);
    // Every check targets loopback (or a local file / command).
    for pop in c.pops.values() {
        for ch in &pop.checks {
            if let Probe::Tcp { target } = &ch.probe {
                assert_eq!(target.host, "127.0.0.1", "{}", ch.name);
            }
        }
    }
    let zone = &c.dns.zones[0];
    assert_eq!(zone.origin, "anypop.test.");
    let policies: Vec<&str> = zone
        .records
        .iter()
        .filter_map(|r| match &r.data {
            RecordData::Steered(s) => Some(match s.policy {
                SteeringPolicy::Failover { .. } => "failover",
                SteeringPolicy::Weighted { .. } => "weighted",
                SteeringPolicy::Geo { .. } => "geo",
                SteeringPolicy::AllHealthy { .. } => "all_healthy",
                SteeringPolicy::Nearest { .. } => "nearest",
            }),
            RecordData::Static { .. } => None,
        })
        .collect();
    assert!(policies.contains(&"failover") && policies.contains(&"weighted"));
    let text = summary(&c);
    assert!(text.contains("node anypop-demo in PoP local"), "{text}");
    assert!(text.contains("zone anypop.test."), "{text}");
}

#[test]
fn minimal_config_gets_defaults() {
    let c = valid(&with_check("type: tcp, target: \"127.0.0.1:80\""));
    assert_eq!(c.api.listen, Some("127.0.0.1:8080".parse().unwrap()));
    assert!(c.dns.listen.is_empty() && c.dns.zones.is_empty());
    let pop = &c.pops["a"];
    assert_eq!(pop.combine, Combine::All);
    assert_eq!(pop.drain_settle, DEFAULT_DRAIN_SETTLE);
    assert_eq!(pop.announce.on_down, FailAction::Withdraw);
    assert_eq!(pop.announce.degraded.prepend, DEFAULT_DEGRADED_PREPEND);
    let ch = &pop.checks[0];
    assert_eq!(
        (
            ch.interval,
            ch.fast_interval,
            ch.timeout,
            ch.rise,
            ch.fall,
            ch.jitter
        ),
        (
            DEFAULT_INTERVAL,
            DEFAULT_FAST_INTERVAL,
            DEFAULT_TIMEOUT,
            DEFAULT_RISE,
            DEFAULT_FALL,
            DEFAULT_JITTER
        )
    );
    match &ch.probe {
        Probe::Tcp { target } => assert_eq!(target.to_string(), "127.0.0.1:80"),
        p => panic!("{p:?}"),
    }
}

#[test]
fn node_only_is_enough() {
    let c = valid("node: {name: solo}\n");
    assert!(c.pops.is_empty() && c.node.pop.is_none() && c.node.asn == 0);
}

#[test]
fn short_interval_scales_default_timeout_and_fast_interval() {
    let c = valid(&with_check(
        "type: tcp, target: \"127.0.0.1:80\", interval: 100ms",
    ));
    let ch = &c.pops["a"].checks[0];
    assert_eq!(ch.interval, Duration::from_millis(100));
    assert!(ch.timeout < ch.interval, "{ch:?}");
    assert!(ch.fast_interval <= ch.interval && ch.jitter < ch.fast_interval);
}

#[test]
fn every_check_type_parses() {
    let yaml = format!(
        "{NODE}pops:
  - name: a
    combine: {{at_least: 2}}
    checks:
      - {{name: t, type: tcp, target: \"[::1]:443\"}}
      - {{name: h, type: http, url: \"http://127.0.0.1:8080/healthz?full=1\", host_header: www.example.net, expect_status: [200, 204], body_contains: ok}}
      - {{name: s, type: https, url: \"https://localhost\", tls_insecure: true}}
      - {{name: d, type: dns, server: 127.0.0.1, qname: example.net, qtype: aaaa, expect_rcode: nxdomain, expect_answer: 192.0.2.1}}
      - {{name: e, type: exec, command: [sleep, 0]}}
      - {{name: f, type: file, path: /run/up, healthy_when: present}}
"
    );
    let c = valid(&yaml);
    let pop = &c.pops["a"];
    assert_eq!(pop.combine, Combine::AtLeast(2));
    let p: Vec<&Probe> = pop.checks.iter().map(|c| &c.probe).collect();
    assert!(matches!(p[0], Probe::Tcp { target } if target.host == "::1" && target.port == 443));
    match p[1] {
        Probe::Http {
            tls,
            target,
            path,
            expect_status,
            ..
        } => {
            assert!(!tls);
            assert_eq!(target.to_string(), "127.0.0.1:8080");
            assert_eq!(path, "/healthz?full=1");
            assert_eq!(expect_status, &vec![200, 204]);
        }
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(p[2], Probe::Http { tls: true, target, path, tls_insecure: true, .. } if target.port == 443 && path == "/")
    );
    match p[3] {
        Probe::Dns {
            server,
            qname,
            qtype,
            expect_rcode,
            ..
        } => {
            assert_eq!(server.to_string(), "127.0.0.1:53");
            assert_eq!(qname, "example.net.");
            assert_eq!(*qtype, DnsType::Aaaa);
            assert_eq!(*expect_rcode, DnsRcode::NxDomain);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(p[4], Probe::Exec { command, .. } if command == &["sleep", "0"]));
    assert!(matches!(
        p[5],
        Probe::File {
            healthy_if_present: true,
            ..
        }
    ));
}

#[test]
fn degraded_attributes_add_to_normal_ones() {
    let yaml = format!(
        "{NODE}pops:
  - name: a
    announce:
      prepend: 1
      med: 10
      communities: [\"65000:100\", no-export]
      large_communities: [\"65000:1:2\"]
      degraded: {{prepend: 2, med: 50, communities: [\"65000:666\"]}}
      on_down: degrade
      on_drain: graceful_shutdown
"
    );
    let a = valid(&yaml).pops["a"].announce.clone();
    assert_eq!(a.normal.prepend, 1);
    assert_eq!(a.normal.communities, vec![(65000, 100), (65535, 65281)]);
    // The model keeps the changes; the core combines them with `normal`.
    assert_eq!(a.degraded.prepend, 2);
    let d = crate::core::decide::attrs_for(&a, crate::core::snapshot::AnnounceMode::Degraded);
    assert_eq!(d.prepend, 3);
    assert_eq!(d.med, Some(50));
    assert_eq!(
        d.communities,
        vec![(65000, 100), (65535, 65281), (65000, 666)]
    );
    assert_eq!(d.large_communities, vec![(65000, 1, 2)]);
    assert_eq!(a.on_down, FailAction::Degrade);
    assert_eq!(a.on_drain, FailAction::GracefulShutdown);
}

#[test]
fn zone_names_are_completed_and_normalized() {
    let c = valid(&with_records(
        "        - {name: WWW, type: CNAME, values: [edge]}
        - {name: \"@\", type: MX, values: [\"10 Mail\"]}
        - {name: _sip._tcp, type: SRV, values: [\"10 5 5060 sip.example.org.\"]}
        - {name: \"@\", type: CAA, values: [\"0 issue letsencrypt.org\"]}
        - {name: edge.example.net., steer: {policy: failover, pops: [a, b]}}
",
    ));
    let z = &c.dns.zones[0];
    assert_eq!(z.origin, "example.net.");
    assert_eq!(z.ns, vec!["ns1.example.net."]);
    assert_eq!(z.soa.mname, "ns1.example.net.");
    assert_eq!(z.soa.rname, "hostmaster.example.net.");
    let vals: Vec<(String, Vec<String>)> = z
        .records
        .iter()
        .filter_map(|r| match &r.data {
            RecordData::Static { values, .. } => Some((r.name.clone(), values.clone())),
            RecordData::Steered(_) => None,
        })
        .collect();
    assert_eq!(
        vals[0],
        ("www.example.net.".into(), vec!["edge.example.net.".into()])
    );
    assert_eq!(vals[1].1, vec!["10 mail.example.net."]);
    assert_eq!(vals[2].1, vec!["10 5 5060 sip.example.org."]);
    assert_eq!(vals[3].1, vec!["0 issue \"letsencrypt.org\""]);
    let steered = &z.records[4];
    assert_eq!(steered.ttl, DEFAULT_STEERED_TTL);
    match &steered.data {
        RecordData::Steered(s) => {
            assert_eq!(s.short_ttl, DEFAULT_SHORT_TTL);
            assert_eq!(s.policy.pops().len(), 2);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn geo_and_weighted_policies_parse() {
    let c = valid(&with_records(
        "        - name: geo
          steer:
            policy: geo
            map:
              - {subnet: 198.51.100.0/24, pops: [b]}
              - {subnet: \"2001:db8::/32\", pops: [b, a]}
            default: [a]
            fallback: [192.0.2.99]
        - name: w
          steer: {policy: weighted, weights: {a: 3, b: 0}, min_healthy_pops: 1}
",
    ));
    let recs = &c.dns.zones[0].records;
    match &recs[0].data {
        RecordData::Steered(Steering {
            policy: SteeringPolicy::Geo { map, default, .. },
            fallback,
            ..
        }) => {
            assert_eq!(map.len(), 2);
            assert_eq!(map[1].1.len(), 2);
            assert_eq!(default.len(), 1);
            assert_eq!(fallback, &vec!["192.0.2.99".parse::<IpAddr>().unwrap()]);
        }
        other => panic!("{other:?}"),
    }
    match &recs[1].data {
        RecordData::Steered(Steering {
            policy: SteeringPolicy::Weighted { weights },
            min_healthy_pops: 1,
            ..
        }) => assert_eq!(weights["a"], 3),
        other => panic!("{other:?}"),
    }
}

#[test]
fn bgp_peers_get_defaults() {
    let yaml = format!(
        "{NODE}bgp:
  listen: 0.0.0.0
  peers:
    - {{name: r1, address: 192.0.2.254, remote_asn: 64500}}
    - {{name: r2, address: \"2001:db8::1\", remote_asn: 64512, passive: true, families: [ipv6, ipv4], next_hop_v4: 192.0.2.1}}
pops:
  - {{name: a, prefixes: [203.0.113.0/24, \"2001:db8:100::/48\"]}}
"
    );
    let c = valid(&yaml);
    assert_eq!(c.bgp.listen, Some("0.0.0.0:179".parse().unwrap()));
    let r1 = &c.bgp.peers[0];
    assert_eq!(
        (r1.port, r1.local_asn, r1.hold_time),
        (179, 64512, DEFAULT_HOLD_TIME)
    );
    assert!(r1.ipv4_unicast && !r1.ipv6_unicast && !r1.is_ibgp());
    let r2 = &c.bgp.peers[1];
    assert!(r2.ipv4_unicast && r2.ipv6_unicast && r2.is_ibgp() && r2.passive);
    // Graceful restart is on by default: a controller restart keeps routes.
    assert_eq!(c.bgp.graceful_restart, Some(DEFAULT_GRACEFUL_RESTART));
    let off = valid(&yaml.replace("bgp:\n", "bgp:\n  graceful_restart: off\n"));
    assert!(off.bgp.graceful_restart.is_none());
    let conflict = yaml.replace(
        "bgp:\n",
        "bgp:\n  graceful_restart: off\n  shutdown: graceful_restart\n",
    );
    assert_error(&errors(&conflict), "bgp.graceful_restart", "relies on it");
}

#[test]
fn min_hold_time_global_and_per_peer() {
    let yaml = |bgp: &str, peer: &str| {
        format!(
            "{NODE}bgp:\n{bgp}  peers:\n    - {{name: r1, address: 192.0.2.254, remote_asn: 64500{peer}}}\npops:\n  - {{name: a, prefixes: [203.0.113.0/24]}}\n"
        )
    };
    // Default: 3 s, so a peer offering 0 (no keepalives) is refused.
    let c = valid(&yaml("", ""));
    assert_eq!(c.bgp.peers[0].min_hold_time, DEFAULT_MIN_HOLD_TIME);
    assert_eq!(DEFAULT_MIN_HOLD_TIME, Duration::from_secs(3));
    // Global, and a peer's own value wins.
    let c = valid(&yaml("  min_hold_time: 9s\n", ""));
    assert_eq!(c.bgp.peers[0].min_hold_time, Duration::from_secs(9));
    let c = valid(&yaml("  min_hold_time: 9s\n", ", min_hold_time: 20s"));
    assert_eq!(c.bgp.peers[0].min_hold_time, Duration::from_secs(20));
    // 0 allows sessions without keepalives; our own hold time 0 needs it.
    let c = valid(&yaml("", ", min_hold_time: 0s, hold_time: 0s"));
    assert_eq!(c.bgp.peers[0].min_hold_time, Duration::ZERO);
    assert_error(
        &errors(&yaml("", ", hold_time: 0s")),
        "bgp.peers[0].hold_time",
        "min_hold_time: 0s",
    );
    // Our offer below the minimum cannot work.
    assert_error(
        &errors(&yaml("  min_hold_time: 45s\n", ", hold_time: 30s")),
        "bgp.peers[0].hold_time",
        "30s is below the minimum hold time 45s",
    );
    // Out of range or fractional, at either level.
    for bad in ["1s", "2s", "1500ms", "70000s"] {
        assert_error(
            &errors(&yaml(&format!("  min_hold_time: {bad}\n"), "")),
            "bgp.min_hold_time",
            "0 (allow no keepalives) or 3 to 65535 whole seconds",
        );
        assert_error(
            &errors(&yaml("", &format!(", min_hold_time: {bad}"))),
            "bgp.peers[0].min_hold_time",
            "0 (allow no keepalives) or 3 to 65535 whole seconds",
        );
    }
}

// ---------------------------------------------------------------- serde errors

#[test]
fn wrong_type_names_its_path() {
    let errs = errors(&with_check(
        "type: tcp, target: \"127.0.0.1:80\", rise: three",
    ));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_error(
        &errs,
        "pops[0].checks[0].rise",
        "invalid type: string \"three\", expected a whole number",
    );
    assert!(errs[0].contains("line 6 column"), "{errs:?}");
}

#[test]
fn unknown_keys_are_rejected_with_path() {
    let errs = errors(&with_check(
        "type: tcp, target: \"127.0.0.1:80\", intervall: 1s",
    ));
    assert_error(
        &errs,
        "pops[0].checks[0].intervall",
        "unknown field `intervall`",
    );
    let errs = errors(&format!("{NODE}dns: {{zones: [], listne: []}}\n"));
    assert_error(&errs, "dns.listne", "unknown field");
    let errs = errors(&format!("{NODE}bgpp: {{}}\n"));
    assert_error(&errs, "bgpp", "unknown field");
}

#[test]
fn unknown_enum_values_are_rejected_with_path() {
    let errs = errors(&with_check("type: tcpp, target: \"127.0.0.1:80\""));
    assert_error(&errs, "pops[0].checks[0].type", "unknown variant `tcpp`");
    let errs = errors(&format!("{NODE}pops: [{{name: a, combine: most}}]\n"));
    assert_error(&errs, "pops[0].combine", "`all`, `any` or `{at_least: N}`");
}

#[test]
fn yaml_syntax_errors_have_a_location() {
    let errs = errors("node: {name: n1\n");
    assert_eq!(errs.len(), 1);
    assert!(errs[0].starts_with("line "), "{errs:?}");
    let errs = errors("# only a comment\n");
    assert!(errs[0].contains("empty"), "{errs:?}");
    let errs = errors("node: {name: n}\npops: [{name: a, location: 5}]\n");
    assert_error(
        &errs,
        "pops[0].location",
        "expected a mapping (key: value), not a list or scalar",
    );
    let errs = errors("node: {name: n}\ndns: {listen: 127.0.0.1}\n");
    assert_error(&errs, "dns.listen", "expected a list");
    let errs = errors("pops: []\n");
    assert!(errs[0].contains("missing field `node`"), "{errs:?}");
}

// ---------------------------------------------------------------- validation errors

#[test]
fn bad_prefixes() {
    let yaml = format!(
        "{NODE}pops:\n  - name: a\n    prefixes: [203.0.113.0/24, 203.0.113.5/24, 203.0.113.0/33, 203.0.113.7, \"2001:db8::1/48\", 203.0.113.0/24]\n"
    );
    let errs = errors(&yaml);
    assert_errors(&errs, "", &[("pops[0].prefixes[1]", "\"203.0.113.5/24\" has host bits set; did you mean 203.0.113.0/24?"), ("pops[0].prefixes[2]", "\"203.0.113.0/33\" is not a valid prefix"), ("pops[0].prefixes[3]", "is an address, not a prefix: expected address/length; did you mean 203.0.113.7/32?"), ("pops[0].prefixes[4]", "did you mean 2001:db8::/48?"), ("pops[0].prefixes[5]", "listed twice (also pops[0].prefixes[0])"),]);
    assert_eq!(errs.len(), 5, "{errs:?}");
}

#[test]
fn bad_addresses_and_location() {
    let yaml = format!(
        "{NODE}pops:\n  - name: a\n    addresses: [192.0.2.300, 192.0.2.1]\n    location: {{lat: 91, lon: -181}}\n"
    );
    let errs = errors(&yaml);
    assert_errors(
        &errs,
        "",
        &[
            ("pops[0].addresses[0]", "is not an IP address"),
            ("pops[0].location.lat", "expected -90 to 90"),
            ("pops[0].location.lon", "expected -180 to 180"),
        ],
    );
}

#[test]
fn dangling_references() {
    let errs =
        errors("node: {name: n1, pop: nowhere}\npops: [{name: a, addresses: [192.0.2.1]}]\n");
    assert_error(&errs, "node.pop", "unknown PoP \"nowhere\" (known PoPs: a)");
    let errs = errors(&with_records(
        "        - {name: www, steer: {policy: failover, pops: [a, zz]}}
        - {name: w, steer: {policy: weighted, weights: {a: 1, yy: 2}}}
        - {name: g, steer: {policy: geo, map: [{subnet: 192.0.2.0/24, pops: [xx]}]}}
        - {name: n, steer: {policy: all_healthy, pops: [c]}}
",
    ));
    assert_errors(
        &errs,
        "",
        &[
            (
                "dns.zones[0].records[0].steer.pops[1]",
                "unknown PoP \"zz\"",
            ),
            (
                "dns.zones[0].records[1].steer.weights.yy",
                "unknown PoP \"yy\"",
            ),
            (
                "dns.zones[0].records[2].steer.map[0].pops[0]",
                "unknown PoP \"xx\"",
            ),
            ("dns.zones[0].records[3].steer.pops[0]", "has no addresses"),
        ],
    );
    assert_eq!(errs.len(), 4, "{errs:?}");
}

#[test]
fn duplicate_names() {
    let yaml = format!(
        "{NODE}bgp:
  peers:
    - {{name: r1, address: 192.0.2.254, remote_asn: 64500}}
    - {{name: r1, address: 192.0.2.253, remote_asn: 64500}}
    - {{name: r3, address: 192.0.2.254, remote_asn: 64500}}
pops:
  - name: a
    prefixes: [203.0.113.0/24]
    checks:
      - {{name: c1, type: tcp, target: \"127.0.0.1:80\"}}
      - {{name: c1, type: tcp, target: \"127.0.0.1:81\"}}
  - name: a
"
    );
    let errs = errors(&yaml);
    assert_errors(
        &errs,
        "",
        &[
            (
                "bgp.peers[1].name",
                "duplicate peer name \"r1\" (first defined at bgp.peers[0])",
            ),
            (
                "bgp.peers[2].address",
                "already the address of bgp.peers[0]",
            ),
            (
                "pops[0].checks[1].name",
                "duplicate check name \"c1\" in PoP \"a\"",
            ),
            (
                "pops[1].name",
                "duplicate PoP name \"a\" (first defined at pops[0])",
            ),
        ],
    );
    assert_eq!(errs.len(), 4, "{errs:?}");

    let errs = errors(&with_records(
        "        - {name: www, type: A, values: [192.0.2.1]}
        - {name: www.example.net., type: A, values: [192.0.2.2]}
        - {name: www, steer: {policy: failover, pops: [a]}}
        - {name: txt, type: TXT, values: [x]}
        - {name: txt, type: CNAME, values: [www]}
        - {name: www, type: TXT, values: [fine]}
",
    ));
    assert_errors(
        &errs,
        "",
        &[
            (
                "dns.zones[0].records[1].name",
                "conflicting record at dns.zones[0].records[0]",
            ),
            (
                "dns.zones[0].records[2].name",
                "conflicting record at dns.zones[0].records[0]",
            ),
            (
                "dns.zones[0].records[4].name",
                "conflicting record at dns.zones[0].records[3]",
            ),
        ],
    );
    assert_eq!(errs.len(), 3, "{errs:?}");
}

#[test]
fn rise_and_fall_must_be_at_least_one() {
    let errs = errors(&with_check(
        "type: tcp, target: \"127.0.0.1:80\", rise: 0, fall: 0",
    ));
    assert_errors(
        &errs,
        "",
        &[
            (
                "pops[0].checks[0].rise",
                "0 is out of range: expected 1 to 1000",
            ),
            ("pops[0].checks[0].fall", "0 is out of range"),
        ],
    );
    assert_eq!(errs.len(), 2);
}

#[test]
fn timing_relations() {
    let errs = errors(&with_check(
        "type: tcp, target: \"127.0.0.1:80\", interval: 1s, timeout: 1s",
    ));
    assert_error(
        &errs,
        "pops[0].checks[0].timeout",
        "1s must be shorter than the interval (1s)",
    );
    let errs = errors(&with_check(
        "type: tcp, target: \"127.0.0.1:80\", interval: 1s, fast_interval: 2s, jitter: 0",
    ));
    assert_error(
        &errs,
        "pops[0].checks[0].fast_interval",
        "must not be longer than the interval",
    );
    let errs = errors(&with_check(
        "type: tcp, target: \"127.0.0.1:80\", fast_interval: 100ms, jitter: 100ms",
    ));
    assert_error(
        &errs,
        "pops[0].checks[0].jitter",
        "shorter than the fast_interval",
    );
    let errs = errors(&with_check(
        "type: tcp, target: \"127.0.0.1:80\", interval: 0",
    ));
    assert_error(&errs, "pops[0].checks[0].interval", "longer than 0");
}

#[test]
fn bad_durations() {
    let errs = errors(&with_check(
        "type: tcp, target: \"127.0.0.1:80\", interval: fast, timeout: \"1,5s\", jitter: -1s",
    ));
    assert_errors(
        &errs,
        "",
        &[
            ("pops[0].checks[0].interval", "\"fast\" is not a duration"),
            ("pops[0].checks[0].timeout", "\"1,5s\" is not a duration"),
            ("pops[0].checks[0].jitter", "\"-1s\" is not a duration"),
        ],
    );
    let errs = errors(&format!(
        "{NODE}pops: [{{name: a, drain: {{settle: 30x}}}}]\n"
    ));
    assert_error(&errs, "pops[0].drain.settle", "\"30x\" is not a duration");
}

#[test]
fn bad_record_values() {
    let errs = errors(&with_records(
        "        - {name: v4, type: A, values: [\"2001:db8::1\", 192.0.2.1, 192.0.2.1]}
        - {name: v6, type: AAAA, values: [192.0.2.1]}
        - {name: mx, type: MX, values: [mail.example.net.]}
        - {name: srv, type: SRV, values: [\"10 5 70000 x\"]}
        - {name: c, type: CNAME, values: [a, b]}
        - {name: s, type: SOA, values: [x]}
        - {name: t, type: BOGUS, values: [x]}
        - {name: e, type: TXT, values: []}
        - {name: \"bad name\", type: TXT, values: [x]}
        - {name: q, type: TXT, values: [\"\\\"unterminated\"]}
",
    ));
    let r = "dns.zones[0].records";
    assert_errors(
        &errs,
        r,
        &[
            (
                "[0].values[0]",
                "is not an IPv4 address (an A record needs one",
            ),
            ("[0].values[2]", "listed twice"),
            ("[1].values[0]", "is not an IPv6 address"),
            ("[2].values[0]", "is not an MX value"),
            ("[3].values[0]", "is not an SRV value"),
            ("[4].values", "exactly one value"),
            ("[5].type", "from the zone's `soa` key"),
            ("[6].type", "\"BOGUS\" is not a supported record type"),
            ("[7].values", "at least one value"),
            ("[8].name", "is not a valid domain name"),
            ("[9].values[0]", "is not a valid TXT value"),
        ],
    );
    assert_eq!(errs.len(), 11, "{errs:?}");
}

#[test]
fn records_must_be_inside_their_zone() {
    let errs = errors(&with_records(
        "        - {name: www.example.org., type: A, values: [192.0.2.1]}
        - {name: notexample.net., type: A, values: [192.0.2.1]}
        - {name: deep.www.example.net., type: A, values: [192.0.2.1]}
",
    ));
    assert_errors(
        &errs,
        "",
        &[
            (
                "dns.zones[0].records[0].name",
                "www.example.org. is outside the zone example.net.",
            ),
            ("dns.zones[0].records[1].name", "outside the zone"),
        ],
    );
    assert_eq!(errs.len(), 2, "{errs:?}");
}

#[test]
fn record_shape_errors() {
    let errs = errors(&with_records(
        "        - {name: x}
        - {name: y, type: A, values: [192.0.2.1], steer: {policy: failover, pops: [a]}}
        - {name: z, steer: {policy: failover, weights: {a: 1}}}
        - {name: g, steer: {policy: geo}}
        - {name: s, ttl: 10, steer: {policy: failover, pops: [a], short_ttl: 20}}
",
    ));
    let r = "dns.zones[0].records";
    assert_errors(
        &errs,
        r,
        &[
            ("[0]", "either `type` and `values`"),
            ("[1].type", "a steered record has no type"),
            ("[1].values", "remove `values` or `steer`"),
            ("[2].steer.weights", "not used by policy failover"),
            ("[2].steer.pops", "required by policy failover"),
            ("[3].steer.map", "needs a `map`"),
            ("[4].steer.short_ttl", "longer than the record's ttl"),
        ],
    );
}

#[test]
fn asn_and_router_id_ranges() {
    let yaml = "node: {name: n1, router_id: 0.0.0.0, asn: 4294967295}
bgp:
  peers:
    - {name: r1, address: 192.0.2.254, remote_asn: 0, local_asn: 23456}
";
    let errs = errors(yaml);
    assert_errors(
        &errs,
        "",
        &[
            (
                "node.asn",
                "4294967295 is not an AS number: expected 1 to 4294967294",
            ),
            ("node.router_id", "0.0.0.0 is not a valid router id"),
            ("bgp.peers[0].remote_asn", "AS 0 is reserved"),
            ("bgp.peers[0].local_asn", "AS_TRANS"),
        ],
    );
    let errs = errors(
        "node: {name: n1}\nbgp: {peers: [{name: r1, address: 192.0.2.254, remote_asn: 64500}]}\n",
    );
    assert_errors(
        &errs,
        "",
        &[
            ("node.router_id", "required when BGP is configured"),
            ("node.asn", "required when BGP is configured"),
        ],
    );
}

#[test]
fn peer_errors() {
    let yaml = format!(
        "{NODE}bgp:
  peers:
    - {{name: r1, address: 192.0.2.254, remote_asn: 64500, families: [ipv4, ipv6], hold_time: 2s, passive: true}}
    - {{name: r2, address: \"2001:db8::1\", remote_asn: 64500, local_address: 192.0.2.1, families: []}}
    - {{name: \"bad name\", address: nope, remote_asn: 64500}}
pops: [{{name: a}}]
"
    );
    let errs = errors(&yaml);
    assert_errors(
        &errs,
        "",
        &[
            (
                "bgp.peers[0].next_hop_v6",
                "required to announce ipv6 over an IPv4 session",
            ),
            (
                "bgp.peers[0].hold_time",
                "expected 0 (no keepalives) or 3 to 65535",
            ),
            ("bgp.peers[0].passive", "set bgp.listen"),
            ("bgp.peers[1].local_address", "same address family"),
            ("bgp.peers[1].families", "at least one of ipv4, ipv6"),
            ("bgp.peers[2].name", "is not a valid name"),
            ("bgp.peers[2].address", "\"nope\" is not an IP address"),
        ],
    );
}

#[test]
fn bfd_is_off_unless_configured_and_checked() {
    let yaml = format!(
        "{NODE}bgp:
  peers:
    - {{name: r1, address: 192.0.2.254, remote_asn: 64500}}
    - {{name: r2, address: 192.0.2.253, remote_asn: 64500, bfd: {{}}}}
    - {{name: r3, address: \"2001:db8::1\", remote_asn: 64500, bfd: {{min_tx: 100ms, min_rx: 50ms, multiplier: 5}}}}
pops: [{{name: a}}]
"
    );
    let c = valid(&yaml);
    assert_eq!(c.bgp.peers[0].bfd, None);
    assert_eq!(c.bgp.peers[1].bfd, Some(BfdParams::DEFAULT));
    assert_eq!(
        c.bgp.peers[2].bfd,
        Some(BfdParams {
            min_tx: Duration::from_millis(100),
            min_rx: Duration::from_millis(50),
            multiplier: 5
        })
    );
    let errs = errors(&yaml.replace("bfd: {}", "bfd: {min_tx: 5ms, min_rx: 2m, multiplier: 1}"));
    assert_errors(
        &errs,
        "",
        &[
            (
                "bgp.peers[1].bfd.min_tx",
                "5ms is out of range: expected 10ms to 60s",
            ),
            ("bgp.peers[1].bfd.min_rx", "out of range"),
            (
                "bgp.peers[1].bfd.multiplier",
                "1 is out of range: expected 2 to 255",
            ),
        ],
    );
    let errs = errors(
        &yaml
            .replace("multiplier: 5", "multiplier: 256")
            .replace("min_rx: 50ms", "min_rx: soon"),
    );
    assert_errors(
        &errs,
        "",
        &[
            ("bgp.peers[2].bfd.multiplier", "256 is out of range"),
            ("bgp.peers[2].bfd.min_rx", "is not a duration"),
        ],
    );
    let errs = errors(&yaml.replace("bfd: {}", "bfd: {interval: 1s}"));
    assert_error(
        &errs,
        "bgp.peers[1].bfd.interval",
        "unknown field `interval`",
    );
}

#[test]
fn local_prefix_needs_a_peer_of_its_family() {
    let yaml = format!(
        "{NODE}bgp: {{peers: [{{name: r1, address: 192.0.2.254, remote_asn: 64500}}]}}
pops: [{{name: a, prefixes: [203.0.113.0/24, \"2001:db8:1::/48\"]}}, {{name: b, prefixes: [\"2001:db8:2::/48\"]}}]
"
    );
    let errs = errors(&yaml);
    assert_error(&errs, "pops[0].prefixes[1]", "no BGP peer has family ipv6");
    assert_eq!(errs.len(), 1, "{errs:?}");
}

#[test]
fn check_type_specific_errors() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "type: tcp, target: \"127.0.0.1:80\", url: \"http://x/\"",
            "url",
            "not used by a tcp check (a tcp check takes: target)",
        ),
        ("type: tcp", "target", "required for a tcp check"),
        ("type: tcp, target: 127.0.0.1", "target", "is not HOST:PORT"),
        ("type: tcp, target: \"::1:80\"", "target", "in brackets"),
        (
            "type: http, url: \"ftp://127.0.0.1/\"",
            "url",
            "expected http:// or https://",
        ),
        (
            "type: http, url: \"https://127.0.0.1/\"",
            "url",
            "a http check needs a http:// URL",
        ),
        (
            "type: http, url: \"http://127.0.0.1:99999/\"",
            "url",
            "is not a valid URL",
        ),
        (
            "type: http, url: \"http://127.0.0.1/\", tls_insecure: true",
            "tls_insecure",
            "not used by a http check",
        ),
        (
            "type: http, url: \"http://127.0.0.1/\", expect_status: [200, 700]",
            "expect_status[1]",
            "expected 100 to 599",
        ),
        (
            "type: dns, qname: example.net",
            "server",
            "required for a dns check",
        ),
        (
            "type: dns, server: 127.0.0.1, qname: example.net, qtype: XX",
            "qtype",
            "not a supported type",
        ),
        (
            "type: dns, server: 127.0.0.1, qname: example.net, expect_rcode: FOO",
            "expect_rcode",
            "not a supported rcode",
        ),
        ("type: exec, command: []", "command", "the command is empty"),
        (
            "type: exec, command: [\"\"]",
            "command",
            "the command is empty",
        ),
        ("type: exec", "command", "required for an exec check"),
        (
            "type: exec, command: [\"true\"], pass_env: [HOME, \"1X\"]",
            "pass_env[1]",
            "\"1X\" is not an environment variable name",
        ),
        (
            "type: exec, command: [\"true\"], pass_env: [HOME, HOME]",
            "pass_env[1]",
            "\"HOME\" is listed twice",
        ),
        (
            "type: exec, command: [\"true\"], env: {\"A=B\": x}",
            "env.A=B",
            "is not an environment variable name",
        ),
        (
            "type: tcp, target: \"127.0.0.1:80\", env: {A: b}",
            "env",
            "not used by a tcp check",
        ),
        ("type: process", "", "needs pid_file"),
        (
            "type: process, pid_file: /run/x.pid, unit: x.service",
            "unit",
            "either pid_file or unit, not both",
        ),
        (
            "type: process, pid_file: run/x.pid",
            "pid_file",
            "is not an absolute path",
        ),
        (
            "type: process, unit: nginx",
            "unit",
            "has no unit type: write the full name, e.g. \"nginx.service\"",
        ),
        (
            "type: process, unit: nginx.socket",
            "unit",
            "only a .service has a main process",
        ),
        (
            "type: process, pid_file: /run/x.pid, interface: lo",
            "interface",
            "not used by a process check (a process check takes: pid_file, unit)",
        ),
        ("type: systemd", "unit", "required for a systemd check"),
        (
            "type: systemd, unit: \"a b.service\"",
            "unit",
            "' ' is not allowed",
        ),
        (
            "type: systemd, unit: nginx.servic",
            "unit",
            ".servic is not a unit type",
        ),
        (
            "type: systemd, unit: getty@.service",
            "unit",
            "is a template",
        ),
        (
            "type: systemd, unit: .service",
            "unit",
            "the name before .service is empty",
        ),
        (
            "type: systemd, unit: x.service, pid_file: /x",
            "pid_file",
            "not used by a systemd check",
        ),
        (
            "type: interface",
            "interface",
            "required for an interface check",
        ),
        (
            "type: interface, interface: averyveryverylongname0",
            "interface",
            "expected 1 to 15 bytes",
        ),
        (
            "type: interface, interface: \"eth0:1\"",
            "interface",
            "no /, : or spaces",
        ),
        (
            "type: interface, interface: eth0, address: 192.0.2.1",
            "address",
            "not used by an interface check",
        ),
        ("type: address", "address", "required for an address check"),
        (
            "type: address, address: 203.0.113.10/32",
            "address",
            "without a prefix length",
        ),
        (
            "type: address, address: www",
            "address",
            "is not an IP address",
        ),
        (
            "type: address, address: \"::\"",
            "address",
            "expected a unicast address",
        ),
        (
            "type: address, address: 203.0.113.10, interface: \"a/b\"",
            "interface",
            "no /, : or spaces",
        ),
        (
            "type: file, path: relative/file",
            "path",
            "is not an absolute path",
        ),
        (
            "type: file, path: /x, target: \"127.0.0.1:80\"",
            "target",
            "not used by a file check",
        ),
    ];
    for (check, key, fragment) in cases {
        let errs = errors(&with_check(check));
        let path = match key {
            &"" => "pops[0].checks[0]".to_string(),
            k => format!("pops[0].checks[0].{k}"),
        };
        assert_error(&errs, &path, fragment);
    }
}

#[test]
fn event_driven_check_types_parse_and_fall_at_once() {
    let yaml = format!(
        "{NODE}pops:
  - name: a
    checks:
      - {{name: p, type: process, pid_file: /run/nginx.pid}}
      - {{name: u, type: process, unit: nginx.service}}
      - {{name: s, type: systemd, unit: \"getty@tty1.service\"}}
      - {{name: i, type: interface, interface: eth0}}
      - {{name: v, type: address, address: 203.0.113.10, interface: lo}}
      - {{name: w, type: address, address: \"2001:db8::10\", fall: 3}}
      - {{name: t, type: tcp, target: \"127.0.0.1:80\"}}
"
    );
    let c = valid(&yaml);
    let checks = &c.pops["a"].checks;
    let p: Vec<&Probe> = checks.iter().map(|c| &c.probe).collect();
    assert_eq!(
        p[0],
        &Probe::Process {
            source: PidSource::PidFile("/run/nginx.pid".into())
        }
    );
    assert_eq!(
        p[1],
        &Probe::Process {
            source: PidSource::Unit(UnitName("nginx.service".into()))
        }
    );
    assert_eq!(
        p[2],
        &Probe::Systemd {
            unit: UnitName("getty@tty1.service".into())
        }
    );
    assert_eq!(
        p[3],
        &Probe::Interface {
            name: IfName("eth0".into())
        }
    );
    assert_eq!(
        p[4],
        &Probe::Address {
            addr: "203.0.113.10".parse().unwrap(),
            interface: Some(IfName("lo".into()))
        }
    );
    assert_eq!(
        p[5],
        &Probe::Address {
            addr: "2001:db8::10".parse().unwrap(),
            interface: None
        }
    );
    // The event is the failure: fall 1 unless configured; rise as usual.
    let falls: Vec<u32> = checks.iter().map(|c| c.fall).collect();
    assert_eq!(falls, vec![1, 1, 1, 1, 1, 3, DEFAULT_FALL]);
    assert!(checks.iter().all(|c| c.rise == DEFAULT_RISE));
}

#[test]
fn at_least_must_fit_the_checks() {
    let yaml = format!(
        "{NODE}pops:\n  - name: a\n    combine: {{at_least: 3}}\n    checks:\n      - {{name: c1, type: exec, command: [\"true\"]}}\n"
    );
    let errs = errors(&yaml);
    assert_error(
        &errs,
        "pops[0].combine.at_least",
        "3 is out of range: the PoP has 1 check(s), expected 1 to 1",
    );
    let errs = errors(&format!(
        "{NODE}pops: [{{name: a, combine: {{at_least: 0}}}}]\n"
    ));
    assert_error(&errs, "pops[0].combine.at_least", "the PoP has no checks");
}

#[test]
fn announce_errors() {
    let yaml = format!(
        "{NODE}pops:
  - name: a
    announce:
      prepend: 40
      med: 5000000000
      local_pref: 100
      communities: [\"65000:70000\", \"65000\"]
      large_communities: [\"1:2\"]
      degraded: {{communities: [nope]}}
"
    );
    let errs = errors(&yaml);
    assert_errors(
        &errs,
        "",
        &[
            ("pops[0].announce.prepend", "expected 0 to 16"),
            ("pops[0].announce.med", "out of range"),
            ("pops[0].announce.communities[0]", "is not a community"),
            ("pops[0].announce.communities[1]", "is not a community"),
            (
                "pops[0].announce.large_communities[0]",
                "is not a large community",
            ),
            (
                "pops[0].announce.degraded.communities[0]",
                "is not a community",
            ),
        ],
    );
    assert_eq!(errs.len(), 6, "{errs:?}");
}

#[test]
fn api_and_dns_errors() {
    let errs = errors(&format!(
        "{NODE}pops: [{{name: a}}]\napi: {{listen: \"127.0.0.1:5353\", protect_reads: true}}\ndns: {{listen: [\"127.0.0.1:5353\", nonsense], zones: [{{origin: example.net, ns: []}}]}}\n"
    ));
    assert_errors(
        &errs,
        "",
        &[
            ("api.protect_reads", "needs api.token_file"),
            ("api.listen", "is also a DNS listener"),
            ("dns.listen[1]", "is not a socket address"),
            ("dns.zones[0].ns", "at least one name server"),
        ],
    );
    let c = valid(&format!(
        "{NODE}pops: [{{name: a}}]\napi: {{listen: off}}\n"
    ));
    assert!(c.api.listen.is_none());
    let c = valid(&format!(
        "{NODE}pops: [{{name: a}}]\napi: {{listen: null}}\n"
    ));
    assert!(c.api.listen.is_none());
}

#[test]
fn many_errors_are_all_reported() {
    let yaml = "node: {name: n1, pop: ghost, router_id: 192.0.2.1, asn: 64512}
pops:
  - name: a
    prefixes: [203.0.113.0/33, 203.0.113.5/24]
    addresses: [192.0.2.10]
    checks:
      - {name: c1, type: tcp, target: \"127.0.0.1:80\", rise: 0}
      - {name: c2, type: tcp, target: \"127.0.0.1:80\", interval: 1s, timeout: 2s}
      - {name: c3, type: exec, command: []}
  - name: a
dns:
  zones:
    - origin: example.net.
      ns: [ns1]
      records:
        - {name: www, steer: {policy: failover, pops: [a, missing]}}
        - {name: v4, type: A, values: [not-an-ip]}
";
    let err = parse(yaml).unwrap_err();
    let paths: Vec<&str> = err.0.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        vec![
            "node.pop",
            "pops[0].prefixes[0]",
            "pops[0].prefixes[1]",
            "pops[0].checks[0].rise",
            "pops[0].checks[1].timeout",
            "pops[0].checks[2].command",
            "pops[1].name",
            "dns.zones[0].records[0].steer.pops[1]",
            "dns.zones[0].records[1].values[0]",
        ]
    );
    // Display: one `path: message` per line.
    let text = err.to_string();
    assert_eq!(text.lines().count(), 9, "{text}");
    assert!(text.lines().all(|l| l.contains(": ")), "{text}");
}

#[test]
fn load_reports_unreadable_files() {
    let err = load(std::path::Path::new("/nonexistent/anypop.yaml")).unwrap_err();
    assert_eq!(err.0.len(), 1);
    assert_eq!(err.0[0].path, "/nonexistent/anypop.yaml");
    assert!(err.0[0].message.contains("cannot read"), "{err}");
}

/// The fixtures of integration/tests/check_config.rs: only `valid.yaml`
/// passes, and the broken ones fail for the reasons their names say.
#[test]
fn integration_fixtures_are_rejected_for_their_reasons() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("integration/tests/configs");
    let c = load(&dir.join("valid.yaml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.node.name, "edge-1");
    let expect: &[(&str, &[&str])] = &[
        ("wrong-type.yaml", &["pops[0].checks[0].rise"]),
        ("unknown-key.yaml", &["pops[0].checks[0].intervall"]),
        (
            "bad-prefixes.yaml",
            &[
                "pops[1].prefixes[0]",
                "pops[1].prefixes[1]",
                "pops[1].prefixes[2]",
            ],
        ),
        (
            "dangling.yaml",
            &[
                "node.pop",
                "dns.zones[0].records[0].steer.pops[1]",
                "dns.zones[0].records[1].steer.weights.ams",
            ],
        ),
        (
            "rise-zero.yaml",
            &[
                "pops[0].checks[0].rise",
                "pops[0].checks[0].fall",
                "pops[0].checks[0].timeout",
            ],
        ),
        (
            "many-errors.yaml",
            &[
                "pops[0].prefixes[0]",
                "pops[0].checks[0].rise",
                "pops[0].checks[1].name",
                "pops[0].checks[2].command",
                "pops[1].name",
                "dns.zones[0].records[0].values[0]",
                "dns.zones[0].records[1].name",
                "dns.zones[0].records[2].steer.pops[1]",
            ],
        ),
    ];
    for (file, paths) in expect {
        let err = load(&dir.join(file)).expect_err(file);
        let got: Vec<&str> = err.0.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(&got, paths, "{file}:\n{err}");
    }
}

/// The first YAML block after `heading` in a markdown file.
fn yaml_after<'a>(doc: &'a str, file: &str, heading: &str) -> &'a str {
    let start = doc
        .find(heading)
        .unwrap_or_else(|| panic!("{file} has no {heading:?}"));
    let block = &doc[start..];
    let body_start = block.find("```yaml\n").expect("yaml block") + "```yaml\n".len();
    let body_len = block[body_start..].find("```").expect("closing fence");
    &block[body_start..body_start + body_len]
}

/// The full example of the configuration reference is valid.
#[test]
fn docs_full_example_is_valid() {
    let doc = include_str!("../../docs/configuration.md");
    let c = valid(yaml_after(doc, "configuration.md", "## A full example"));
    assert_eq!(c.node.name, "fra1-a");
    assert_eq!(c.bgp.peers.len(), 2);
    assert_eq!(c.pops["fra1"].checks.len(), 5);
    assert_eq!(c.dns.zones[0].records.len(), 8);
}

/// The README's minimal config is valid and means what the README says.
#[test]
fn readme_minimal_config_is_valid() {
    let readme = include_str!("../../README.md");
    let c = valid(yaml_after(readme, "README.md", "## A minimal config"));
    assert_eq!(c.node.pop.as_ref().map(|p| p.as_str()), Some("fra1"));
    assert_eq!(c.bgp.peers.len(), 1);
    assert_eq!(c.pops.len(), 2);
    assert_eq!(c.pops["fra1"].checks.len(), 1);
    assert_eq!(c.dns.zones[0].records.len(), 2);
}

mod prop {
    use super::super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any text gives a config or errors, never a panic.
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
            let _ = parse(&text);
        }

        /// The default config with one line removed or one character
        /// replaced: a config or errors with non-empty messages, never a panic.
        #[test]
        fn mutated_default_config_never_panics(
            line in 0usize..200,
            pos in 0usize..6000,
            c in prop::sample::select(vec![' ', ':', '-', '[', '{', '0', 'x', '#', '"']),
        ) {
            let lines: Vec<&str> = DEFAULT_CONFIG_YAML.lines().collect();
            let skip = line % lines.len();
            let without: String = lines
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != skip)
                .map(|(_, l)| format!("{l}\n"))
                .collect();
            let mut chars: Vec<char> = DEFAULT_CONFIG_YAML.chars().collect();
            let at = pos % chars.len();
            chars[at] = c;
            let replaced: String = chars.into_iter().collect();
            for text in [without, replaced] {
                if let Err(e) = parse(&text) {
                    prop_assert!(!e.0.is_empty());
                    prop_assert!(e.0.iter().all(|e| !e.message.is_empty()));
                }
            }
        }

        #[test]
        fn durations_round_trip(ms in 0u64..(366 * 86_400_000)) {
            let d = std::time::Duration::from_millis(ms);
            prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
    }
}

/// Every anypop config shipped with the lab topologies validates.
#[test]
fn shipped_topology_configs_are_valid() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("topologies");
    let Ok(topologies) = std::fs::read_dir(&root) else {
        return;
    };
    let mut failures = Vec::new();
    for topo in topologies.flatten() {
        let Ok(files) = std::fs::read_dir(topo.path().join("anypop")) else {
            continue;
        };
        for f in files.flatten() {
            let p = f.path();
            if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                if let Err(e) = load(&p) {
                    failures.push(format!("{}:\n{e}", p.display()));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn total_prepend_is_bounded() {
    let errs = errors(&format!(
        "{NODE}pops: [{{name: a, announce: {{prepend: 10, degraded: {{prepend: 10}}}}}}]\n"
    ));
    assert_error(
        &errs,
        "pops[0].announce.degraded.prepend",
        "prepend 10 plus degraded prepend 10 is more than 16",
    );
}

#[test]
fn yaml_anchors_and_merge_keys_share_check_defaults() {
    let yaml = format!(
        "{NODE}pops:
  - name: a
    checks:
      - &web {{name: web, type: tcp, target: \"127.0.0.1:80\", interval: 2s, rise: 5}}
      - {{<<: *web, name: web2, target: \"127.0.0.1:81\"}}
"
    );
    let c = valid(&yaml);
    let checks = &c.pops["a"].checks;
    assert_eq!(checks[1].name.as_str(), "web2");
    assert_eq!(checks[1].interval, Duration::from_secs(2));
    assert_eq!(checks[1].rise, 5);
    assert!(matches!(&checks[1].probe, Probe::Tcp { target } if target.port == 81));
    // Errors still carry their path.
    let errs = errors(&yaml.replace("rise: 5", "rise: five"));
    assert_error(&errs, "pops[0].checks[0].rise", "expected a whole number");
}

/// A config with PoPs a (Frankfurt), b (New York), c (no location), the
/// `dns` keys `dns_extra` (indented 2) and records (indented 8).
fn with_geo(dns_extra: &str, records: &str) -> String {
    format!(
        "{NODE}pops:
  - {{name: a, addresses: [192.0.2.10], location: {{lat: 50.11, lon: 8.68}}}}
  - {{name: b, addresses: [198.51.100.10], location: {{lat: 40.71, lon: -74.01}}}}
  - {{name: c, addresses: [203.0.113.10]}}
dns:
{dns_extra}
  zones:
    - origin: example.net
      ns: [ns1]
      records:
{records}"
    )
}

#[test]
fn geoip_country_continent_and_nearest_parse() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("test.mmdb");
    std::fs::write(
        &db,
        crate::geoip::testdb::build(&crate::geoip::testdb::doc_entries()),
    )
    .unwrap();
    let c = valid(&with_geo(
        &format!("  geoip: {{database: {}}}", db.display()),
        "        - name: www
          steer:
            policy: geo
            map:
              - {subnet: 198.51.100.0/24, pops: [b]}
              - {country: de, pops: [a, b]}
              - {continent: NA, pops: [b]}
            default: [c]
        - name: near
          steer: {policy: nearest, pops: [a, b], default: [b]}
",
    ));
    let geoip = c.dns.geoip.as_ref().unwrap();
    assert_eq!(geoip.database, db);
    assert_eq!(geoip.db.database_type(), "anypop-test");
    assert_eq!(c.dns.rate_limit, None);
    match &c.dns.zones[0].records[0].data {
        RecordData::Steered(Steering {
            policy:
                SteeringPolicy::Geo {
                    map,
                    countries,
                    continents,
                    default,
                },
            ..
        }) => {
            assert_eq!(map.len(), 1);
            assert_eq!(countries[0].0, "DE");
            assert_eq!(countries[0].1.len(), 2);
            assert_eq!(continents[0].0, "NA");
            assert_eq!(default.len(), 1);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        &c.dns.zones[0].records[1].data,
        RecordData::Steered(Steering {
            policy: SteeringPolicy::Nearest { pops, default },
            ..
        }) if pops.len() == 2 && default.len() == 1
    ));
}

#[test]
fn geoip_and_nearest_errors() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.mmdb");
    std::fs::write(&junk, b"not a database").unwrap();
    let errs = errors(&with_geo(
        &format!("  geoip: {{database: {}}}", junk.display()),
        "        - {name: x, steer: {policy: failover, pops: [a]}}\n",
    ));
    assert_errors(
        &errs,
        "",
        &[
            ("dns.geoip.database", "is not a MaxMind database"),
            ("dns.geoip.database", "junk.mmdb"),
        ],
    );
    let missing = dir.path().join("missing.mmdb");
    let errs = errors(&with_geo(
        &format!("  geoip: {{database: {}}}", missing.display()),
        "        - {name: x, steer: {policy: failover, pops: [a]}}\n",
    ));
    assert_errors(
        &errs,
        "",
        &[
            ("dns.geoip.database", "cannot read"),
            ("dns.geoip.database", "missing.mmdb"),
        ],
    );

    // Without a database: country rules and nearest are errors.
    let errs = errors(&with_geo(
        "",
        "        - name: g
          steer:
            policy: geo
            map:
              - {country: DE, pops: [a]}
              - {continent: XX, pops: [a]}
              - {country: Germany, pops: [a]}
              - {subnet: 192.0.2.0/24, country: DE, pops: [a]}
              - {pops: [a]}
        - name: n
          steer: {policy: nearest, pops: [a, c], max: 2}
",
    ));
    let g = "dns.zones[0].records[0].steer.map";
    assert_errors(
        &errs,
        g,
        &[
            ("[0].country", "needs dns.geoip.database"),
            ("[1].continent", "not a continent code"),
            ("[2].country", "two-letter country code"),
            ("[3]", "exactly one of"),
            ("[4]", "exactly one of"),
        ],
    );
    let n = "dns.zones[0].records[1].steer";
    assert_errors(
        &errs,
        n,
        &[
            (".policy", "needs dns.geoip.database"),
            (".pops[1]", "has no location"),
            (".max", "not used by policy nearest"),
        ],
    );
}

#[test]
fn rate_limit_parses_with_defaults_and_checks_ranges() {
    let c = valid(&with_geo(
        "  rate_limit: {responses_per_second: 20}",
        "        - {name: x, steer: {policy: failover, pops: [a]}}\n",
    ));
    assert_eq!(
        c.dns.rate_limit,
        Some(RateLimit {
            responses_per_second: 20,
            slip: 2,
            window: Duration::from_secs(15),
        })
    );
    let c = valid(&with_geo(
        "  rate_limit: {responses_per_second: 5, slip: 0, window: 1m}",
        "        - {name: x, steer: {policy: failover, pops: [a]}}\n",
    ));
    assert_eq!(c.dns.rate_limit.unwrap().window, Duration::from_secs(60));
    let errs = errors(&with_geo(
        "  rate_limit: {responses_per_second: 0, slip: 11, window: 2h}",
        "        - {name: x, steer: {policy: failover, pops: [a]}}\n",
    ));
    assert_errors(
        &errs,
        "",
        &[
            ("dns.rate_limit.responses_per_second", "out of range"),
            ("dns.rate_limit.slip", "out of range"),
            ("dns.rate_limit.window", "out of range"),
        ],
    );
}

#[test]
fn rate_limit_is_on_by_default_off_loopback_and_can_be_turned_off() {
    use crate::config::DEFAULT_RATE_LIMIT;
    let rec = "        - {name: x, steer: {policy: failover, pops: [a]}}\n";
    let with = |extra: &str| valid(&with_geo(extra, rec)).dns.rate_limit;
    // Loopback only (also the default listener): off.
    assert_eq!(with(""), None);
    assert_eq!(with("  listen: [\"127.0.0.1:53\", \"[::1]:53\"]"), None);
    // Any listener reachable from elsewhere: on, with the defaults.
    for listen in [
        "[\"0.0.0.0:53\"]",
        "[\"[::]:53\"]",
        "[\"127.0.0.1:53\", \"192.0.2.53:53\"]",
    ] {
        assert_eq!(
            with(&format!("  listen: {listen}")),
            Some(DEFAULT_RATE_LIMIT),
            "{listen}"
        );
    }
    assert_eq!(
        DEFAULT_RATE_LIMIT,
        RateLimit {
            responses_per_second: 1000,
            slip: 2,
            window: Duration::from_secs(15),
        }
    );
    // Turned off explicitly, or on with defaults on loopback.
    let public = "  listen: [\"0.0.0.0:53\"]\n";
    assert_eq!(with(&format!("{public}  rate_limit: off")), None);
    assert_eq!(with(&format!("{public}  rate_limit: false")), None);
    assert_eq!(with("  rate_limit: {}"), Some(DEFAULT_RATE_LIMIT));
    assert_eq!(with("  rate_limit: true"), Some(DEFAULT_RATE_LIMIT));
    assert_eq!(
        with(&format!("{public}  rate_limit: {{slip: 1}}")),
        Some(RateLimit {
            slip: 1,
            ..DEFAULT_RATE_LIMIT
        })
    );
    // Anything else names the path.
    let errs = errors(&with_geo("  rate_limit: sometimes", rec));
    assert_error(&errs, "dns.rate_limit", "`off` or");
    let errs = errors(&with_geo("  rate_limit: {rate: 5}", rec));
    assert_error(&errs, "dns.rate_limit.rate", "unknown field `rate`");
}

#[test]
fn udp_workers_default_to_one_per_core_and_are_checked() {
    let rec = "        - {name: x, steer: {policy: failover, pops: [a]}}\n";
    assert_eq!(valid(&with_geo("", rec)).dns.udp_workers, None);
    assert_eq!(
        valid(&with_geo("  udp_workers: 4", rec)).dns.udp_workers,
        Some(4)
    );
    for bad in ["0", "257"] {
        let errs = errors(&with_geo(&format!("  udp_workers: {bad}"), rec));
        assert_error(&errs, "dns.udp_workers", "out of range: expected 1 to 256");
    }
    let errs = errors(&with_geo("  udp_workers: many", rec));
    assert_error(&errs, "dns.udp_workers", "invalid type");
}

#[test]
fn on_corrupt_state_defaults_to_refuse_and_rejects_unknown_values() {
    let c = valid(&with_check("type: tcp, target: \"127.0.0.1:80\""));
    assert!(!c.node.start_on_corrupt_state);
    let yaml = with_check("type: tcp, target: \"127.0.0.1:80\"")
        .replace("asn: 64512}", "asn: 64512, on_corrupt_state: start_empty}");
    assert!(valid(&yaml).node.start_on_corrupt_state);
    let bad = yaml.replace("start_empty", "forget");
    let errs = errors(&bad);
    assert!(
        errs.iter().any(|e| e.contains("node.on_corrupt_state")),
        "{errs:?}"
    );
}

#[test]
fn soa_rname_mail_address_is_fully_qualified() {
    for (rname, want) in [
        ("hostmaster@anypop.test", "hostmaster.anypop.test."),
        ("hostmaster@anypop.test.", "hostmaster.anypop.test."),
        ("hostmaster.example.org.", "hostmaster.example.org."),
        ("hostmaster", "hostmaster.example.net."),
    ] {
        let yaml = with_records("        - {name: www, type: A, values: [192.0.2.1]}\n").replace(
            "      ns: [ns1]\n",
            &format!("      ns: [ns1]\n      soa: {{rname: \"{rname}\"}}\n"),
        );
        let c = valid(&yaml);
        assert_eq!(c.dns.zones[0].soa.rname, want, "rname {rname:?}");
    }
}

#[test]
fn api_off_loopback_needs_a_token_or_an_explicit_opt_out() {
    let base = with_check("type: tcp, target: \"127.0.0.1:80\"");
    let open = format!("{base}api: {{listen: \"0.0.0.0:8080\"}}\n");
    assert_error(&errors(&open), "api.listen", "api.token_file is not set");
    let v6 = format!("{base}api: {{listen: \"[::]:8080\"}}\n");
    assert_error(&errors(&v6), "api.listen", "api.token_file is not set");
    valid(&format!(
        "{base}api: {{listen: \"0.0.0.0:8080\", token_file: /etc/anypop/token}}\n"
    ));
    valid(&format!(
        "{base}api: {{listen: \"0.0.0.0:8080\", allow_unauthenticated: true}}\n"
    ));
    valid(&format!("{base}api: {{listen: \"[::1]:8080\"}}\n"));
}

#[test]
fn exec_checks_get_an_environment_of_their_own() {
    let c = valid(&with_check(
        "type: exec, command: [/usr/local/bin/check-db], pass_env: [LANG, http_proxy], env: {DB: db1, PORT: 5432}",
    ));
    let probe = &c.pops["a"].checks[0].probe;
    let Probe::Exec { command, env } = probe else {
        panic!("not an exec probe: {probe:?}");
    };
    assert_eq!(command, &["/usr/local/bin/check-db"]);
    assert_eq!(env.pass, ["LANG", "http_proxy"]);
    assert_eq!(
        env.set,
        [
            ("DB".to_string(), "db1".to_string()),
            ("PORT".to_string(), "5432".to_string())
        ]
    );
    // Without either key: nothing but PATH (added when the check runs).
    let c = valid(&with_check("type: exec, command: [\"true\"]"));
    assert!(
        matches!(&c.pops["a"].checks[0].probe, Probe::Exec { env, .. } if *env == ExecEnv::default())
    );
}
