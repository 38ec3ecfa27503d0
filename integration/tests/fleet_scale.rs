//! The fleet paths at the scale the docs claim: 100,000 prefixes against
//! FRR 8.4 (topologies/bench), with a second real anypop node.
//!
//! Node pop1 (the bench's pop1, in its namespace) announces the 100,000
//! benchmark prefixes to r1. Node pop2 runs beside it in the same
//! namespace (API and DNS on 127.0.0.2, no BGP) and owns PoP pop2, which
//! has the same anycast prefixes. Each node pulls the other's report over
//! real HTTP (long-poll). What FRR holds is read from FRR itself: its
//! table, its kernel FIB, the UPDATE messages it received, and `ip monitor`
//! for FIB deletions.
//!
//! - Fail static: pop2's `service` check fails, then pop1's: the shared
//!   failure holds pop1's 100,000 routes (no UPDATE reaches FRR); pop1's
//!   check recovers first, then pop2's: nothing moves.
//! - Announce again: pop1's check fails alone (withdrawn: FRR empty), then
//!   pop2's: fail static announces all 100,000 again; the recoveries move
//!   nothing.
//! - A drain of PoP pop1 made through node pop2's API: forwarded to pop1,
//!   node pop2's DNS stops answering with pop1, pop1's DNS step waits for
//!   pop2's confirmation, then GRACEFUL_SHUTDOWN and the withdrawal of all
//!   100,000 reach FRR; an undrain through pop2 brings them all back.
//!
//! The times measured are printed (`--nocapture`); the bounds are generous
//! timeouts, not benchmarks.

use std::time::{Duration, Instant};

use anypop_integration::dns::{dig_with, short_lines};
use anypop_integration::lab::anypop::{api_request, PopNode};
use anypop_integration::lab::bench::{
    self, counts, gshut, secs, updates_received, wait_counts, wait_empty, Counts, LOAD, N, POLL,
    POP1, PROGRAMS,
};
use anypop_integration::lab::frr::Frr;
use anypop_integration::lab::monitor::RouteMonitor;
use anypop_integration::lab::{lab_available, Lab, WAIT};
use anypop_integration::{anypop_bin, http_request, test_zone, wait_until, wait_until_every};
use serde_json::Value;

const TOKEN: &str = "fleet-scale-token-4e1b";
/// The fail-static window: long enough that a loaded machine cannot miss
/// it where the test relies on it, short enough to wait out.
const WINDOW: Duration = Duration::from_secs(5);
/// The drain's settle time: GRACEFUL_SHUTDOWN of all 100,000 routes must
/// reach FRR (seconds on a loaded machine) before the withdrawal.
const SETTLE: &str = "20s";

/// One of the two anypop nodes, both in pop1's namespace.
struct Node {
    name: &'static str,
    ip: &'static str,
    proc: PopNode,
}

impl Node {
    fn api_addr(&self) -> String {
        format!("{}:8080", self.ip)
    }

    /// A request to this node's API: (status, JSON body).
    fn call(&self, lab: &Lab, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        api_request(lab, "pop1", &self.api_addr(), TOKEN, method, path, body)
    }

    /// PoP `pop` in this node's `GET /v1/state` (`None` while it does
    /// not answer).
    fn state(&self, lab: &Lab, pop: &str) -> Option<StatePop> {
        let addr = self.api_addr();
        let (status, text) = lab
            .in_ns("pop1", move || {
                let long = Duration::from_secs(120);
                http_request(&addr, "GET", "/v1/state", Some(TOKEN), None, long)
            })
            .ok()?
            .ok()?;
        let state: State = (status == 200).then(|| serde_json::from_str(&text).ok())??;
        state
            .pops
            .into_iter()
            .find(|(p, _)| p == pop)
            .map(|(_, v)| v)
    }

    /// PoP `pop` in this node's `GET /v1/fleet`.
    fn fleet(&self, lab: &Lab, pop: &str) -> Value {
        match self.call(lab, "GET", "/v1/fleet", None) {
            (200, v) => v["pops"][pop].clone(),
            _ => Value::Null,
        }
    }

    /// `dig +short www.example.test A` against this node's DNS.
    fn www(&self, lab: &Lab) -> Vec<String> {
        let out = dig_with(
            lab.cmd("pop1", "dig"),
            self.ip,
            5300,
            &["+short", "www.example.test", "A"],
        );
        let mut v = short_lines(&out);
        v.sort();
        v
    }

    /// Fails (`true`) or heals the `service` check of its own PoP.
    fn set_down(&self, down: bool) {
        self.proc.set_down(self.name, down);
    }
}

/// What the test reads of `GET /v1/state`: its PoPs, without building
/// their `prefixes` lists (100,000 entries each; skipped while parsing).
#[derive(serde::Deserialize)]
struct State {
    pops: std::collections::BTreeMap<String, StatePop>,
}

#[derive(Debug, serde::Deserialize)]
struct StatePop {
    state: String,
    serves_dns: bool,
    fail_static: Option<String>,
}

/// The PoPs both nodes share: pop1 (pop1.yaml's block, with a service
/// address and drain timings) and pop2, the same with pop2's check file.
fn pops(topology: &str) -> String {
    let block = topology
        .split_once("pops:\n")
        .and_then(|(_, rest)| rest.split_once("api:\n"))
        .map(|(b, _)| b)
        .expect("pops: then api: in pop1.yaml");
    let announce = "    announce:\n";
    assert!(block.contains(announce), "topology config changed");
    let pop = |name: &str, addr: &str| {
        block.replace("pop1", name).replace(
            announce,
            &format!("    addresses: [{addr}]\n    drain: {{dns_wait: 1s, settle: {SETTLE}}}\n{announce}"),
        )
    };
    format!(
        "pops:\n{}{}",
        pop("pop1", "192.0.2.1"),
        pop("pop2", "192.0.2.2")
    )
}

/// The sections both nodes share after their own ones: API, fleet (the
/// other node as peer), DNS.
fn common(ip: &str, peer: &str, peer_ip: &str) -> String {
    let zone = test_zone(
        &format!("{ip}:5300"),
        "        - name: www\n          ttl: 5\n          steer: {policy: failover, pops: [pop1, pop2]}\n",
    );
    format!(
        "api:
  listen: {ip}:8080
  token_file: /etc/anypop/token
fleet:
  peers:
    - {{name: {peer}, pop: {peer}, url: \"http://{peer_ip}:8080\", token_file: /etc/anypop/token}}
  pull_interval: 500ms
  stale_after: 10s
  timeout: 2s
  drain_ack_timeout: 30s
  fail_static: {{fraction: 0.5, min_pops: 2, window: {w}s}}
{zone}",
        w = WINDOW.as_secs(),
    )
}

/// Node pop1: the bench's pop1 (BGP to r1, 100,000 prefixes) in the
/// fleet; node pop2: the same PoPs, no BGP.
fn configs() -> (String, String) {
    let topology = bench::pop1_yaml(N as u32);
    let (head, _) = topology.split_once("pops:\n").expect("pops:");
    let a = format!(
        "{head}{}{}",
        pops(&topology),
        common("127.0.0.1", "pop2", "127.0.0.2")
    );
    let b = format!(
        "node:
  name: pop2
  pop: pop2
  router_id: 192.0.2.3
  asn: 65001
  state_dir: /var/lib/anypop
{}{}",
        pops(&topology),
        common("127.0.0.2", "pop1", "127.0.0.1")
    );
    (a, b)
}

/// Waits until `node`'s `/v1/fleet` shows PoP `pop` as `f` wants;
/// panics with what it shows otherwise. (`/v1/fleet`, not `/v1/state`:
/// the state lists every prefix of every PoP, 200,000 here.)
fn wait_fleet(lab: &Lab, node: &Node, pop: &str, what: &str, f: impl Fn(&Value) -> bool) {
    let ok = wait_until(WAIT, || f(&node.fleet(lab, pop)));
    assert!(
        ok,
        "node {}, pop {pop}: not {what}: {:#}\n{}",
        node.name,
        node.fleet(lab, pop),
        node.proc.proc.log()
    );
}

fn fail_static_on(v: &Value) -> bool {
    v["fail_static"]
        .as_str()
        .is_some_and(|w| w.contains("check service fails on 2 of 2 PoPs (pop1, pop2)"))
        && v["verdict"] == "up"
}

fn up_without_fail_static(v: &Value) -> bool {
    v.is_object() && v["fail_static"].is_null() && v["verdict"] == "up"
}

/// The check of `pop` as `node` sees it in its fleet view: the owner's
/// verdict.
fn owner_says(lab: &Lab, node: &Node, pop: &str) -> String {
    node.fleet(lab, pop)["owner"]["verdict"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// Heals pop1's check, then pop2's (each seen by node pop1 before the
/// next), and checks that FRR saw no UPDATE and no FIB deletion since
/// `updates` was read and `monitor` started.
fn recover_without_flap(
    lab: &Lab,
    r1: &Frr,
    nodes: &[Node; 2],
    updates: u64,
    monitor: &RouteMonitor,
) {
    let [a, b] = nodes;
    a.set_down(false);
    wait_fleet(
        lab,
        a,
        "pop1",
        "up without fail static",
        up_without_fail_static,
    );
    b.set_down(false);
    let ok = wait_until(WAIT, || owner_says(lab, a, "pop2") == "up");
    assert!(ok, "node pop1: pop2 {:#}", a.fleet(lab, "pop2"));
    // Nothing is pending: a withdrawal would follow at once.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(counts(lab, r1), Counts::loaded(N));
    assert_eq!(updates_received(r1), updates, "UPDATEs sent on recovery");
    monitor.assert_none_deleted("proto bgp", "of r1 on recovery");
}

/// Waits until FRR holds none of pop1's routes, none ever stale; when
/// its table and its FIB were first empty (since `t0`). Panics with
/// `logs()` otherwise.
fn withdrawn(
    lab: &Lab,
    r1: &Frr,
    t0: Instant,
    logs: &dyn Fn() -> String,
) -> (Option<Duration>, Option<Duration>) {
    let e = wait_empty(lab, r1, t0, LOAD);
    assert!(
        e.emptied,
        "not withdrawn: {:?}\n{}",
        counts(lab, r1),
        logs()
    );
    assert_eq!(e.max_stale, 0, "routes went stale");
    (e.table_empty, e.fib_empty)
}

#[test]
fn fleet_scale_fail_static_and_forwarded_drain_with_100k_prefixes() {
    if !lab_available(
        "fleet_scale_fail_static_and_forwarded_drain_with_100k_prefixes",
        &[PROGRAMS, &["dig"]].concat(),
    ) {
        return;
    }
    let lab = bench::lab();
    let r1 = bench::r1(&lab);
    let (ya, yb) = configs();
    // The first call builds the binary: not part of the time.
    anypop_bin();
    let t0 = Instant::now();
    let files = [("token", TOKEN)];
    let nodes = [
        Node {
            name: "pop1",
            ip: "127.0.0.1",
            proc: PopNode::start_named(&lab, "pop1", "pop1", &ya, &files),
        },
        Node {
            name: "pop2",
            ip: "127.0.0.2",
            proc: PopNode::start_named(&lab, "pop1", "pop2", &yb, &files),
        },
    ];
    let [a, b] = &nodes;
    let logs = || format!("pop1:\n{}\npop2:\n{}", a.proc.proc.log(), b.proc.proc.log());
    let loaded = wait_counts(&lab, &r1, Counts::loaded(N), LOAD);
    assert!(
        loaded,
        "FRR did not load: {:?}\n{}",
        counts(&lab, &r1),
        logs()
    );
    let load = t0.elapsed();
    for (n, p) in [(a, "pop2"), (b, "pop1")] {
        let ok = wait_until(WAIT, || {
            let v = n.fleet(&lab, p);
            v["verdict"] == "up" && v["owner"]["verdict"] == "up"
        });
        assert!(
            ok,
            "node {}: {p} {:#}\n{}",
            n.name,
            n.fleet(&lab, p),
            logs()
        );
    }
    std::thread::sleep(Duration::from_secs(2));
    let session = r1.session_identity(POP1).expect("established");

    // (1) Fail static: pop2's check fails first (1 of 2 PoPs: no rule),
    // then pop1's: 2 of 2, pop1 stays announced.
    let updates = updates_received(&r1);
    let monitor = RouteMonitor::start(&lab, "r1");
    std::thread::sleep(Duration::from_millis(200));
    b.set_down(true);
    let ok = wait_until(WAIT, || owner_says(&lab, a, "pop2") == "down");
    assert!(ok, "node pop1: pop2 {:#}", a.fleet(&lab, "pop2"));
    assert!(a.fleet(&lab, "pop2")["fail_static"].is_null());
    a.set_down(true);
    let t1 = Instant::now();
    wait_fleet(&lab, a, "pop1", "held by fail static", fail_static_on);
    let held_at = t1.elapsed();
    wait_fleet(&lab, b, "pop1", "held by fail static", fail_static_on);
    a.proc.proc.wait_for_log("pop pop1 fail static: ", WAIT);
    // Past the window: the withdrawal would have been sent by now.
    std::thread::sleep(WINDOW + Duration::from_secs(2));
    assert_eq!(counts(&lab, &r1), Counts::loaded(N), "routes withdrawn");
    assert_eq!(updates_received(&r1), updates, "UPDATEs sent while held");
    // /v1/state says so too. It lists all 200,000 prefixes: two readers
    // at once (two browsers on the web view) must not stall the node's
    // BGP session (checked at the end) or its fleet pulls.
    let t = Instant::now();
    let (st, _) = std::thread::scope(|sc| {
        let other = sc.spawn(|| a.state(&lab, "pop2"));
        (a.state(&lab, "pop1"), other.join())
    });
    let st = st.expect("GET /v1/state");
    let state_took = t.elapsed();
    assert!(
        st.fail_static
            .as_deref()
            .is_some_and(|w| w.contains("2 of 2 PoPs"))
            && st.state == "up"
            && st.serves_dns,
        "{st:?}"
    );
    assert_eq!(a.www(&lab), ["192.0.2.1"], "pop1 held is in DNS");
    recover_without_flap(&lab, &r1, &nodes, updates, &monitor);
    drop(monitor);

    // (2) Announce again: pop1's check fails alone: withdrawn after the
    // window; then pop2's fails too: fail static announces all again.
    let t2 = Instant::now();
    a.set_down(true);
    let (table_empty, fib_empty) = withdrawn(&lab, &r1, t2, &logs);
    assert!(a.fleet(&lab, "pop1")["fail_static"].is_null());
    let t3 = Instant::now();
    b.set_down(true);
    let back = wait_counts(&lab, &r1, Counts::loaded(N), LOAD);
    let back_at = t3.elapsed();
    assert!(
        back,
        "not announced again: {:?}\n{}",
        counts(&lab, &r1),
        logs()
    );
    wait_fleet(&lab, a, "pop1", "held by fail static", fail_static_on);
    std::thread::sleep(Duration::from_secs(2));
    let updates = updates_received(&r1);
    let monitor = RouteMonitor::start(&lab, "r1");
    std::thread::sleep(Duration::from_millis(200));
    recover_without_flap(&lab, &r1, &nodes, updates, &monitor);
    drop(monitor);

    // (3) Drain PoP pop1 through node pop2's API: forwarded to pop1.
    assert_eq!(b.www(&lab), ["192.0.2.1"]);
    let t4 = Instant::now();
    let (st, v) = b.call(
        &lab,
        "POST",
        "/v1/pops/pop1/drain",
        Some(r#"{"reason": "scale", "who": "test"}"#),
    );
    let answered = t4.elapsed();
    assert_eq!(st, 200, "{v}\n{}", logs());
    assert_eq!(v["forwarded_to"]["node"], "pop1", "{v}");
    let ok = wait_until(WAIT, || b.www(&lab) == ["192.0.2.2"]);
    assert!(ok, "node pop2 still answers {:?}", b.www(&lab));
    let acked = "pop pop1 out of DNS on every node (pop2 confirmed)";
    let gshut_all = wait_until_every(LOAD, POLL, || gshut(&r1, 0) && gshut(&r1, N as u32 - 1));
    let gshut_at = t4.elapsed();
    assert!(
        gshut_all,
        "no GRACEFUL_SHUTDOWN: {:?}\n{}",
        counts(&lab, &r1),
        logs()
    );
    // The shutdown step came after pop2's confirmation.
    let log = a.proc.proc.log();
    let at = |needle: &str| {
        log.find(needle)
            .unwrap_or_else(|| panic!("{needle:?} not in node pop1's log:\n{log}"))
    };
    assert!(at(acked) < at("pop pop1 dns_removed -> shutdown"), "{log}");
    assert_eq!(counts(&lab, &r1), Counts::loaded(N), "lost before settle");
    let (drained_table, drained_fib) = withdrawn(&lab, &r1, t4, &logs);
    a.proc
        .proc
        .wait_for_log("pop pop1 shutdown -> drained", WAIT);
    assert_eq!(b.fleet(&lab, "pop1")["verdict"], "draining");

    // Undrain through node pop2: all back, without GRACEFUL_SHUTDOWN.
    let t5 = Instant::now();
    let (st, v) = b.call(
        &lab,
        "POST",
        "/v1/pops/pop1/undrain",
        Some(r#"{"mode": "immediate"}"#),
    );
    assert_eq!(st, 200, "{v}\n{}", logs());
    assert_eq!(v["forwarded_to"]["node"], "pop1", "{v}");
    let restored = wait_counts(&lab, &r1, Counts::loaded(N), LOAD);
    let restored_at = t5.elapsed();
    assert!(restored, "not back: {:?}\n{}", counts(&lab, &r1), logs());
    assert!(!gshut(&r1, 0) && !gshut(&r1, N as u32 - 1));
    let ok = wait_until(WAIT, || b.www(&lab) == ["192.0.2.1"]);
    assert!(ok, "node pop2 answers {:?}", b.www(&lab));
    assert_eq!(
        r1.session_identity(POP1),
        Some(session),
        "the BGP session was reset\n{}",
        logs()
    );
    println!(
        "fleet, {N} prefixes: FRR loaded in {:.1} s; fail static held pop1 {:.2} s after its \
         check file appeared (no UPDATE; two GET /v1/state at once {:.2} s); alone, withdrawn: FRR's table empty {:.1} s, FIB \
         {:.1} s after the failure (window {} s); announced again: all back {:.1} s after \
         pop2 failed; drain via pop2: answered in {:.2} s, GRACEFUL_SHUTDOWN on FRR by \
         {:.1} s, table empty {:.1} s, FIB {:.1} s (settle {SETTLE}); undrain via pop2: \
         all back by {:.1} s; whole test {:.0} s",
        load.as_secs_f64(),
        held_at.as_secs_f64(),
        state_took.as_secs_f64(),
        secs(table_empty),
        secs(fib_empty),
        WINDOW.as_secs(),
        back_at.as_secs_f64(),
        answered.as_secs_f64(),
        gshut_at.as_secs_f64(),
        secs(drained_table),
        secs(drained_fib),
        restored_at.as_secs_f64(),
        t0.elapsed().as_secs_f64(),
    );
}
