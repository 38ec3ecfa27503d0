//! The last-PoP guard across the fleet on topologies/three-pop, with real
//! nodes and FRR. PoPs a and b announce each other's unicast prefix too,
//! and PoP c's service is stopped: a and b are the last two PoPs in
//! service for every prefix they announce. Both are drained through their
//! own nodes' APIs while node a is off the fleet network, so neither
//! request's guard sees the other drain (as when two operators drain
//! within one report round trip). The routers send each unicast prefix to
//! its own PoP while that PoP announces it (the other PoP's path is the
//! last resort), so the outside-in probes reach both PoPs: a and b are in
//! service from every vantage point, not held up by fail static, when the
//! drains start. Once the reports flow again, the drain that started
//! later (b's) holds in `dns_removed` with its prefixes still announced,
//! and a's goes on; undraining a lets b's go on.
//!
//! Its own lab (the configs differ from `fleet_three_pop.rs`), stopped
//! when the test ends, passed or not.

use anypop_integration::lab::three_pop::{self, ThreePop, ANYCAST_PREFIX, POPS, PROGRAMS};
use anypop_integration::lab::{lab_available, WAIT};
use anypop_integration::{wait_until, JsonLines};
use serde_json::Value;

/// PoPs a and b announce each other's unicast prefix as well; the drain's
/// DNS wait is long enough for both nodes to see each other's drain before
/// it ends, even on a loaded machine.
fn config(_pop: &str, yaml: String) -> String {
    let a = three_pop::pop("a").unicast_prefix;
    let b = three_pop::pop("b").unicast_prefix;
    let mut yaml = yaml;
    for (own, other) in [(a, b), (b, a)] {
        let from = format!("prefixes: [{ANYCAST_PREFIX}, {own}]");
        assert!(yaml.contains(&from), "topology config changed: {from:?}");
        yaml = yaml.replace(
            &from,
            &format!("prefixes: [{ANYCAST_PREFIX}, {own}, {other}]"),
        );
    }
    let drain = "drain: {dns_wait: 2s, settle: 2s}";
    assert!(yaml.contains(drain), "topology config changed: {drain:?}");
    yaml.replace(drain, "drain: {dns_wait: 8s, settle: 2s}")
}

fn pop_of(lab: &ThreePop, p: &str) -> Value {
    lab.api(p, "GET", &format!("/v1/pops/{p}"), None).1
}

fn step(lab: &ThreePop, p: &str) -> Value {
    pop_of(lab, p)["admin"]["step"].clone()
}

/// Waits until `ev` has a message containing `needle`.
fn wait_event(ev: &JsonLines, needle: &str) {
    let has = || {
        ev.values()
            .iter()
            .any(|v| v["message"].as_str().is_some_and(|m| m.contains(needle)))
    };
    assert!(
        wait_until(WAIT, has),
        "no event {needle:?}: {:#?}",
        ev.values()
    );
}

#[test]
fn fleet_two_drains_of_the_last_two_pops_leave_one_announced() {
    if !lab_available("fleet_two_drains_of_the_last_two_pops", PROGRAMS) {
        return;
    }
    let mut lab = ThreePop::start_with(config);
    let events_b = lab.events("b");

    // c down: a and b are the last two PoPs in service for the anycast
    // prefix (and each other's unicast prefixes), reachable from every
    // vantage point.
    lab.service("c").stop();
    let ok = wait_until(WAIT, || {
        !lab.transit_has_path(ANYCAST_PREFIX, "c")
            && ["a", "b"]
                .iter()
                .all(|s| lab.fleet(s)["pops"]["c"]["verdict"] == "down")
            && POPS
                .iter()
                .all(|s| ["a", "b"].iter().all(|p| lab.settled_on(s, p)))
    });
    assert!(
        ok,
        "c never went down with a and b in service: {:#}\n{}",
        lab.fleet("a")["pops"],
        lab.logs()
    );

    // Both drains, neither node seeing the other's: a's first.
    lab.set_fleet_link("a", false);
    for (p, reason) in [("a", "first"), ("b", "second")] {
        let body = format!(r#"{{"reason": "{reason}"}}"#);
        let path = format!("/v1/pops/{p}/drain");
        let (status, answer) = lab.api(p, "POST", &path, Some(&body));
        assert_eq!(status, 200, "drain {p}: {answer:#}");
    }
    lab.set_fleet_link("a", true);

    // b's drain (the later one) holds at its DNS step, still announced.
    let ok = wait_until(WAIT, || pop_of(&lab, "b")["admin"]["held"].is_string());
    assert!(
        ok,
        "b's drain never held: {:#}\n{}",
        pop_of(&lab, "b"),
        lab.logs()
    );
    let b = pop_of(&lab, "b");
    let held = b["admin"]["held"].as_str().unwrap_or_default().to_string();
    assert!(held.starts_with("last PoP in service for "), "{held}");
    assert!(held.contains("a draining"), "{held}");
    assert_eq!(b["admin"]["step"], "dns_removed", "{b:#}");
    assert_eq!(b["serves_dns"], false, "{b:#}");
    assert!(
        b["reason"].as_str().is_some_and(|r| r.contains(&held)),
        "{b:#}"
    );
    let announced: Vec<&Value> = b["prefixes"]
        .as_array()
        .map(|a| a.iter().map(|p| &p["announced"]).collect())
        .unwrap_or_default();
    assert!(
        announced.len() == 3 && announced.iter().all(|x| **x == true),
        "{b:#}"
    );
    wait_event(&events_b, "pop b drain held: last PoP in service for ");

    // a's drain (the earlier one) goes on and withdraws; b still carries
    // the anycast prefix.
    let ok = wait_until(WAIT, || step(&lab, "a") == "drained");
    assert!(
        ok,
        "a never drained: {:#}\n{}",
        pop_of(&lab, "a"),
        lab.logs()
    );
    let ok = wait_until(WAIT, || !lab.transit_has_path(ANYCAST_PREFIX, "a"));
    assert!(ok, "a never withdrew the anycast prefix");
    assert!(
        lab.transit_has_path(ANYCAST_PREFIX, "b"),
        "no PoP announces {ANYCAST_PREFIX}"
    );
    assert_eq!(step(&lab, "b"), "dns_removed");
    // Every node shows the hold in its fleet view.
    for s in POPS {
        let ok = wait_until(WAIT, || {
            lab.fleet(s)["pops"]["b"]["admin"]["held"]
                .as_str()
                .is_some_and(|h| h.starts_with("last PoP in service for "))
        });
        assert!(ok, "node {s}: {:#}", lab.fleet(s)["pops"]["b"]);
    }

    // a back in service: b's drain goes on.
    let (status, body) = lab.api("a", "POST", "/v1/pops/a/undrain", Some("{}"));
    assert_eq!(status, 200, "undrain a: {body:#}");
    wait_event(&events_b, "pop b drain goes on: ");
    let ok = wait_until(WAIT, || step(&lab, "b") == "drained");
    assert!(ok, "b never drained: {:#}", pop_of(&lab, "b"));
    let ok = wait_until(WAIT, || {
        lab.transit_has_path(ANYCAST_PREFIX, "a") && !lab.transit_has_path(ANYCAST_PREFIX, "b")
    });
    assert!(ok, "the anycast prefix did not move from b to a");
    assert!(pop_of(&lab, "b")["admin"]["held"].is_null());
}
