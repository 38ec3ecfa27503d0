//! The fleet on topologies/three-pop: three real anypop nodes that pull
//! each other's reports over the fleet network, real FRR (transit and the
//! three edges), real HTTP services and `dig` from the clients.
//!
//! The five tests share one lab (starting it is the slow part): each takes
//! the lab's lock for its whole run, so they run one after the other, and
//! first puts the lab back to its converged baseline (whatever an earlier
//! test left behind, also after a failure). The lab is stopped and its
//! namespaces deleted when the test process exits (`atexit`), whether the
//! tests passed or not.

use std::sync::{Mutex, MutexGuard, Once};

use anypop_integration::lab::three_pop::{
    self, ThreePop, ALL, ANYCAST_ADDR, ANYCAST_PREFIX, CLIENTS, POPS, PROGRAMS, WWW,
};
use anypop_integration::lab::{lab_available, WAIT};
use anypop_integration::{wait_until, JsonLines};
use serde_json::Value;

static LAB: Mutex<Option<ThreePop>> = Mutex::new(None);
static AT_EXIT: Once = Once::new();

extern "C" fn stop_lab() {
    let lab = LAB.lock().unwrap_or_else(|e| e.into_inner()).take();
    drop(lab);
}

/// The topology's configs with the drain's DNS wait lengthened (so that
/// "out of every node's DNS" is observed well before the withdrawal) and
/// a fail-static window that a loaded test machine cannot miss.
fn config(_pop: &str, yaml: String) -> String {
    let drain = "drain: {dns_wait: 2s, settle: 2s}";
    assert!(yaml.contains(drain), "topology config changed: {drain:?}");
    let yaml = yaml.replace(drain, "drain: {dns_wait: 6s, settle: 2s}");
    let fleet = "\nfleet:\n";
    assert!(yaml.contains(fleet), "topology config has no fleet section");
    yaml.replace(
        fleet,
        "\nfleet:\n  fail_static: {fraction: 0.5, min_pops: 2, window: 10s}\n",
    )
}

/// The shared lab, started on first use and reset to its baseline; `None`
/// when the machine cannot run it (the test is skipped with a message).
fn lab(test: &str) -> Option<MutexGuard<'static, Option<ThreePop>>> {
    if !lab_available(test, PROGRAMS) {
        return None;
    }
    let mut guard = LAB.lock().unwrap_or_else(|e| e.into_inner());
    AT_EXIT.call_once(|| {
        // SAFETY: registers a plain `extern "C"` function without
        // arguments; it only takes the lab out of its mutex and drops it.
        let rc = unsafe { libc::atexit(stop_lab) };
        assert_eq!(rc, 0, "atexit failed: the lab could not be cleaned up");
    });
    match guard.as_mut() {
        Some(lab) => reset(lab),
        None => *guard = Some(ThreePop::start_with(config)),
    }
    Some(guard)
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Undoes whatever a test may have left: blocks, cut links, maintenance
/// files, stopped services, admin states; then waits for the baseline.
fn reset(lab: &mut ThreePop) {
    for p in POPS {
        lab.block_service(p, &[]);
        lab.set_fleet_link(p, true);
        for q in POPS {
            lab.node(p).set_down(q, false);
        }
        lab.service(p).start_again();
        let (_, v) = lab.api(p, "GET", &format!("/v1/pops/{p}"), None);
        if !v["admin"].is_null() {
            let action = if v["admin"]["kind"] == "disable" {
                "enable"
            } else {
                "undrain"
            };
            let (status, body) = lab.api(p, "POST", &format!("/v1/pops/{p}/{action}"), Some("{}"));
            assert_eq!(status, 200, "reset: {action} {p}: {body:#}");
        }
    }
    wait_baseline(lab);
}

/// Every node answers with every PoP, every PoP's unicast prefix is in the
/// transit's FIB and every node's peers are fresh.
fn wait_baseline(lab: &ThreePop) {
    for p in POPS {
        let prefix = three_pop::pop(p).unicast_prefix;
        assert!(
            wait_until(WAIT, || lab.transit_next_hop(prefix) == Some(p)),
            "baseline: {prefix} not via {p}"
        );
    }
    for s in POPS {
        let mut last = Err(String::new());
        let ok = wait_until(WAIT, || {
            last = lab.answers("client1", s, ALL);
            last == Ok(names(&POPS))
        });
        assert!(ok, "baseline: node {s} answers {last:?}\n{}", lab.logs());
        let ok = wait_until(WAIT, || {
            let f = lab.fleet(s);
            f["peers"]
                .as_object()
                .is_some_and(|m| m.len() == 2 && m.values().all(|x| x["status"] == "fresh"))
        });
        assert!(
            ok,
            "baseline: node {s}'s peers: {:#}",
            lab.fleet(s)["peers"]
        );
    }
}

/// True when node `server` answers `all` without PoP `pop`.
fn leaves_out(lab: &ThreePop, server: &str, pop: &str) -> bool {
    lab.answers("client1", server, ALL)
        .is_ok_and(|a| !a.is_empty() && !a.iter().any(|x| x == pop))
}

/// `ctl events --json` on every node, each live (its replay arrived).
fn watch_events(lab: &ThreePop) -> Vec<(&'static str, JsonLines)> {
    POPS.iter()
        .map(|&p| {
            let ev = lab.events(p);
            assert!(
                wait_until(WAIT, || !ev.values().is_empty()),
                "ctl events on node {p} printed nothing"
            );
            (p, ev)
        })
        .collect()
}

fn messages(ev: &JsonLines) -> Vec<String> {
    ev.values()
        .iter()
        .filter_map(|v| v["message"].as_str().map(str::to_string))
        .collect()
}

/// Waits until node `node`'s events include each of `needles` in this
/// order (each after the previous one).
fn wait_events_in_order(node: &str, ev: &JsonLines, needles: &[&str]) {
    let in_order = |msgs: &[String]| {
        let mut from = 0;
        needles
            .iter()
            .all(|n| match msgs[from..].iter().position(|m| m.contains(n)) {
                Some(i) => {
                    from += i + 1;
                    true
                }
                None => false,
            })
    };
    let ok = wait_until(WAIT, || in_order(&messages(ev)));
    assert!(
        ok,
        "node {node}: events {needles:?} not in this order: {:#?}",
        messages(ev)
    );
}

/// (1) A drain of PoP c sent to node a is carried out by c's node: every
/// node stops answering with c before c's prefixes are withdrawn, every
/// node's events show the steps in order, and an undrain through node a
/// brings c back everywhere.
#[test]
fn fleet_drain_through_another_node_leaves_every_dns_before_the_withdrawal() {
    let Some(mut guard) = lab("fleet_drain_through_another_node") else {
        return;
    };
    let lab = guard.as_mut().expect("lab started");
    let c = three_pop::pop("c");
    let events = watch_events(lab);

    let (status, body) = lab.api(
        "a",
        "POST",
        "/v1/pops/c/drain",
        Some(r#"{"reason": "fleet test", "force": true}"#),
    );
    assert_eq!(status, 200, "{body:#}");
    assert_eq!(body["forwarded_to"]["node"], "c1", "{body:#}");

    // Out of every node's DNS first ...
    let ok = wait_until(WAIT, || POPS.iter().all(|s| leaves_out(lab, s, "c")));
    assert!(ok, "a node still answers with c\n{}", lab.logs());
    // ... while c still announces (the drain's DNS wait has not passed).
    assert!(
        lab.transit_has_path(ANYCAST_PREFIX, "c"),
        "c withdrew the anycast prefix before every node's DNS left it out"
    );
    assert_eq!(lab.transit_next_hop(c.unicast_prefix), Some("c"));

    // Then withdrawn.
    let ok = wait_until(WAIT, || {
        !lab.transit_has_path(ANYCAST_PREFIX, "c")
            && lab.transit_next_hop(c.unicast_prefix).is_none()
    });
    assert!(ok, "c never withdrew\n{}", lab.logs());
    for s in POPS {
        assert_eq!(
            lab.answers("client1", s, ALL),
            Ok(names(&["a", "b"])),
            "node {s}"
        );
        assert_eq!(
            lab.answers("client2", s, WWW),
            Ok(names(&["b"])),
            "node {s}"
        );
        assert_eq!(lab.fleet(s)["pops"]["c"]["verdict"], "draining", "node {s}");
    }

    // The owner ran the choreography for a caller on node a; the others
    // saw every step from its reports.
    for (node, ev) in &events {
        if *node == "c" {
            wait_events_in_order(
                node,
                ev,
                &[
                    "via a1: fleet test",
                    "pop c out of DNS on every node",
                    "pop c dns_removed -> shutdown",
                    "pop c shutdown -> drained",
                ],
            );
        } else {
            wait_events_in_order(
                node,
                ev,
                &[
                    "pop c dns_removed by",
                    "pop c shutdown (owner c1)",
                    "pop c drained (owner c1)",
                ],
            );
        }
    }

    // Undrain through node a: c announces again and is back in every DNS.
    let (status, body) = lab.api("a", "POST", "/v1/pops/c/undrain", Some("{}"));
    assert_eq!(status, 200, "{body:#}");
    let ok = wait_until(WAIT, || {
        lab.transit_has_path(ANYCAST_PREFIX, "c")
            && lab.transit_next_hop(c.unicast_prefix) == Some("c")
    });
    assert!(ok, "c never announced again\n{}", lab.logs());
    for s in POPS {
        let ok = wait_until(WAIT, || lab.answers("client1", s, ALL) == Ok(names(&POPS)));
        assert!(ok, "node {s}: {:?}", lab.answers("client1", s, ALL));
    }
    for (node, ev) in &events {
        if *node != "c" {
            wait_events_in_order(node, ev, &["pop c back in service (owner c1)"]);
        }
    }
}

/// (2) Outside-in needs a quorum: c's service blocked for node a only
/// changes nothing; blocked for a and b (quorum 2) every node steers away
/// from c while c keeps announcing.
#[test]
fn fleet_outside_in_quorum_steers_dns_never_bgp() {
    let Some(mut guard) = lab("fleet_outside_in_quorum") else {
        return;
    };
    let lab = guard.as_mut().expect("lab started");
    let c = three_pop::pop("c");

    // One vantage point: a cannot reach c's service, b still can.
    lab.block_service("c", &["a"]);
    for s in POPS {
        let ok = wait_until(WAIT, || {
            let v = &lab.fleet(s)["pops"]["c"]["vantage"]["a1"];
            v["verdict"] == "down" && v["fresh"] == true
        });
        assert!(
            ok,
            "node {s} never saw a's vantage of c down: {:#}",
            lab.fleet(s)["pops"]["c"]
        );
    }
    for s in POPS {
        let f = lab.fleet(s);
        assert_eq!(
            f["pops"]["c"]["verdict"], "up",
            "node {s}: {:#}",
            f["pops"]["c"]
        );
        assert_eq!(
            f["pops"]["c"]["unreachable"], 1,
            "node {s}: {:#}",
            f["pops"]["c"]
        );
        assert_eq!(lab.answers("client1", s, ALL), Ok(names(&POPS)), "node {s}");
        assert_eq!(
            lab.answers("client2", s, WWW),
            Ok(names(&["c"])),
            "node {s}"
        );
    }
    assert!(lab.transit_has_path(ANYCAST_PREFIX, "c"));

    // Two vantage points: a quorum. Every node steers away from c ...
    lab.block_service("c", &["a", "b"]);
    for s in POPS {
        let ok = wait_until(WAIT, || leaves_out(lab, s, "c"));
        assert!(
            ok,
            "node {s} still answers with c: {:#}",
            lab.fleet(s)["pops"]["c"]
        );
        let f = lab.fleet(s);
        let v = &f["pops"]["c"];
        assert_eq!(v["verdict"], "down", "node {s}: {v:#}");
        assert_eq!(v["reachability"], "unreachable", "node {s}: {v:#}");
        assert_eq!(v["owner"]["verdict"], "up", "node {s}: {v:#}");
        assert_eq!(
            lab.answers("client2", s, WWW),
            Ok(names(&["b"])),
            "node {s}"
        );
    }
    // ... and c keeps announcing: its own checks pass.
    assert!(
        lab.transit_has_path(ANYCAST_PREFIX, "c"),
        "c withdrew the anycast prefix"
    );
    assert_eq!(lab.transit_next_hop(c.unicast_prefix), Some("c"));
    let (_, v) = lab.api("c", "GET", "/v1/pops/c", None);
    let announced: Vec<&Value> = v["prefixes"]
        .as_array()
        .map(|a| a.iter().map(|p| &p["announced"]).collect())
        .unwrap_or_default();
    assert!(
        !announced.is_empty() && announced.iter().all(|a| **a == true),
        "{v:#}"
    );
    // Clients that reach c still get served by it.
    assert_eq!(
        lab.fetch("client2", c.service_addr),
        Ok("pop c".to_string())
    );

    // Unblocked: back in every node's DNS.
    lab.block_service("c", &[]);
    for s in POPS {
        let ok = wait_until(WAIT, || lab.answers("client1", s, ALL) == Ok(names(&POPS)));
        assert!(ok, "node {s}: {:?}", lab.answers("client1", s, ALL));
    }
}

/// (3) Node a cut off from b and c keeps its BGP routes and DNS answers;
/// b and c count a's report as unknown after `stale_after`, not down.
#[test]
fn fleet_partitioned_node_keeps_serving_and_is_unknown_not_down() {
    let Some(mut guard) = lab("fleet_partitioned_node") else {
        return;
    };
    let lab = guard.as_mut().expect("lab started");
    let a = three_pop::pop("a");
    let sessions = lab.routers["ra"].session_identity(a.host_addr);

    lab.set_fleet_link("a", false);
    for s in ["b", "c"] {
        let ok = wait_until(WAIT, || lab.fleet(s)["peers"]["a1"]["status"] == "stale");
        assert!(ok, "node {s}: a1 never stale: {:#}", lab.fleet(s)["peers"]);
        let f = lab.fleet(s);
        let v = &f["pops"]["a"];
        assert_eq!(v["owner"]["verdict"], "unknown", "node {s}: {v:#}");
        assert_eq!(v["owner"]["fresh"], false, "node {s}: {v:#}");
        assert_eq!(v["verdict"], "up", "node {s}: {v:#}");
        assert_eq!(v["serves_dns"], true, "node {s}: {v:#}");
        assert_eq!(lab.answers("client1", s, ALL), Ok(names(&POPS)), "node {s}");
        assert_eq!(
            lab.answers("client1", s, WWW),
            Ok(names(&["a"])),
            "node {s}"
        );
    }
    let ok = wait_until(WAIT, || {
        let p = &lab.fleet("a")["peers"];
        p["b1"]["status"] == "stale" && p["c1"]["status"] == "stale"
    });
    assert!(
        ok,
        "node a: peers never stale: {:#}",
        lab.fleet("a")["peers"]
    );
    for p in POPS {
        let v = &lab.fleet("a")["pops"][p];
        assert_eq!(v["verdict"], "up", "node a, pop {p}: {v:#}");
    }
    assert_eq!(lab.answers("client1", "a", ALL), Ok(names(&POPS)));
    assert_eq!(lab.answers("client2", "a", WWW), Ok(names(&["c"])));
    assert_eq!(lab.transit_next_hop(ANYCAST_PREFIX), Some("a"));
    assert_eq!(lab.transit_next_hop(a.unicast_prefix), Some("a"));
    assert_eq!(lab.fetch("client1", ANYCAST_ADDR), Ok("pop a".to_string()));
    assert_eq!(
        lab.routers["ra"].session_identity(a.host_addr),
        sessions,
        "node a's BGP session was reset"
    );

    lab.set_fleet_link("a", true);
    for s in ["b", "c"] {
        let ok = wait_until(WAIT, || lab.fleet(s)["peers"]["a1"]["status"] == "fresh");
        assert!(
            ok,
            "node {s}: a1 never fresh again: {:#}",
            lab.fleet(s)["peers"]
        );
    }
}

/// The UPDATE messages PoP `p`'s edge router has received from its
/// anypop node.
fn updates_from_node(lab: &ThreePop, p: &str) -> Option<u64> {
    let pop = three_pop::pop(p);
    lab.routers[pop.edge]
        .neighbor(pop.host_addr)?
        .pointer("/messageStats/updatesRecv")?
        .as_u64()
}

/// (4) The same check fails on every PoP at once: fail static holds every
/// announcement (no UPDATE reaches any edge router), the state and a
/// safety event say why, and restoring the services ends it.
#[test]
fn fleet_shared_failure_fails_static() {
    let Some(mut guard) = lab("fleet_shared_failure_fails_static") else {
        return;
    };
    let lab = guard.as_mut().expect("lab started");
    let events = watch_events(lab);
    let before: Vec<Option<u64>> = POPS.iter().map(|p| updates_from_node(lab, p)).collect();
    assert!(before.iter().all(Option::is_some), "{before:?}");

    for p in POPS {
        lab.service(p).stop();
    }
    // The failures are seen at different instants, from the inside (each
    // owner's check) and from the outside (the other nodes' probes): a PoP
    // may leave DNS for a moment. Once every node sees all three services
    // down from both sides, every node names the shared failures on every
    // PoP in its state, and every PoP is up and in DNS.
    let shared_check = "check web fails on 3 of 3 PoPs (a, b, c)";
    let shared_reach = "3 of 3 PoPs unreachable from outside (a, b, c)";
    for s in POPS {
        let ok = wait_until(WAIT, || {
            let (_, st) = lab.api(s, "GET", "/v1/state", None);
            POPS.iter().all(|p| {
                let v = &st["pops"][p];
                v["fail_static"]
                    .as_str()
                    .is_some_and(|why| why.contains(shared_check) && why.contains(shared_reach))
                    && v["state"] == "up"
                    && v["serves_dns"] == true
                    && v["reason"]
                        .as_str()
                        .is_some_and(|r| r.starts_with("fail static: "))
            })
        });
        let (_, st) = lab.api(s, "GET", "/v1/state", None);
        assert!(
            ok,
            "node {s}: not up and fail static on {shared_check:?}, {shared_reach:?}: {:#}\n{}",
            st["pops"],
            lab.logs()
        );
        let f = lab.fleet(s);
        for p in POPS {
            let v = &f["pops"][p];
            assert_eq!(v["verdict"], "up", "node {s}, pop {p}: {v:#}");
            assert!(v["fail_static"].is_string(), "node {s}, pop {p}: {v:#}");
        }
    }
    for (node, ev) in &events {
        for p in POPS {
            wait_events_in_order(node, ev, &[&format!("pop {p} fail static: ")]);
        }
    }
    for s in POPS {
        let ok = wait_until(WAIT, || lab.answers("client1", s, ALL) == Ok(names(&POPS)));
        assert!(ok, "node {s}: {:?}", lab.answers("client1", s, ALL));
    }
    // Held, not withdrawn: every prefix still in the transit's FIB, and no
    // node sent its edge router a single UPDATE since the services died.
    for p in POPS {
        assert_eq!(
            lab.transit_next_hop(three_pop::pop(p).unicast_prefix),
            Some(p)
        );
        assert!(lab.transit_has_path(ANYCAST_PREFIX, p), "{p} withdrew");
        let (_, v) = lab.api(p, "GET", &format!("/v1/pops/{p}"), None);
        assert!(
            v["prefixes"]
                .as_array()
                .is_some_and(|a| a.iter().all(|x| x["announced"] == true)),
            "node {p}: {v:#}"
        );
    }
    let during: Vec<Option<u64>> = POPS.iter().map(|p| updates_from_node(lab, p)).collect();
    assert_eq!(before, during, "UPDATEs sent while fail static held");

    for p in POPS {
        lab.service(p).start_again();
    }
    for s in POPS {
        let ok = wait_until(WAIT, || {
            let (_, st) = lab.api(s, "GET", "/v1/state", None);
            POPS.iter()
                .all(|p| st["pops"][p].is_object() && st["pops"][p].get("fail_static").is_none())
        });
        assert!(ok, "node {s}: fail static never ended");
    }
    for (node, ev) in &events {
        for p in POPS {
            wait_events_in_order(node, ev, &[&format!("pop {p} fail static over")]);
        }
    }
    // Back in every node's DNS (the last PoP to recover may be out of it
    // for a moment: DNS does not wait for the window).
    for s in POPS {
        let ok = wait_until(WAIT, || lab.answers("client1", s, ALL) == Ok(names(&POPS)));
        assert!(ok, "node {s}: {:?}", lab.answers("client1", s, ALL));
    }
    let after: Vec<Option<u64>> = POPS.iter().map(|p| updates_from_node(lab, p)).collect();
    assert_eq!(before, after, "UPDATEs sent when fail static ended");
}

/// (5) A maintenance file on PoP b's own host takes b out of DNS on every
/// node (only b's node runs b's file check: the same file on node a's
/// host changes nothing).
#[test]
fn fleet_maintenance_file_on_owner_takes_pop_out_everywhere() {
    let Some(mut guard) = lab("fleet_maintenance_file") else {
        return;
    };
    let lab = guard.as_mut().expect("lab started");
    let b = three_pop::pop("b");

    // On the wrong host: stays up, because a does not run b's file check.
    lab.node("a").set_down("b", true);
    lab.set_maintenance("b", true);
    for s in POPS {
        let ok = wait_until(WAIT, || leaves_out(lab, s, "b"));
        assert!(ok, "node {s} still answers with b\n{}", lab.logs());
        let f = lab.fleet(s);
        assert_eq!(
            f["pops"]["b"]["owner"]["verdict"], "down",
            "node {s}: {:#}",
            f["pops"]["b"]
        );
        assert_eq!(
            f["pops"]["b"]["verdict"], "down",
            "node {s}: {:#}",
            f["pops"]["b"]
        );
        assert_eq!(
            lab.answers("client1", s, ALL),
            Ok(names(&["a", "c"])),
            "node {s}"
        );
    }
    // b's own node withdraws it (one PoP down: no fail static).
    assert!(
        wait_until(WAIT, || lab.transit_next_hop(b.unicast_prefix).is_none()),
        "b never withdrew"
    );

    lab.set_maintenance("b", false);
    for s in POPS {
        let ok = wait_until(WAIT, || lab.answers("client1", s, ALL) == Ok(names(&POPS)));
        assert!(ok, "node {s}: {:?}", lab.answers("client1", s, ALL));
    }
    assert!(
        wait_until(WAIT, || lab.transit_next_hop(b.unicast_prefix) == Some("b")),
        "b never announced again"
    );
    for client in CLIENTS {
        assert_eq!(lab.fetch(client, b.service_addr), Ok("pop b".to_string()));
    }
}
