//! topologies/three-pop with real FRR (transit + three edges), three real
//! anypop nodes, real HTTP services (busybox httpd) and `dig` from the
//! client namespaces.

use anypop_integration::lab::three_pop::{
    self, ThreePop, ALL, ANYCAST_ADDR, ANYCAST_PREFIX, CLIENTS, POPS, PROGRAMS, WWW,
};
use anypop_integration::lab::{lab_available, WAIT};
use anypop_integration::wait_until;

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// The lab itself: anycast and unicast routes in the transit's FIB, clients
/// reach the nearest PoP by anycast and by DNS from every node, and when the
/// nearest PoP's service dies the next one takes over in both.
#[test]
fn fleet_lab_nearest_pop_by_anycast_and_dns() {
    if !lab_available("fleet_lab_nearest_pop_by_anycast_and_dns", PROGRAMS) {
        return;
    }
    let mut lab = ThreePop::start();
    assert_eq!(lab.transit_next_hop(ANYCAST_PREFIX), Some("a"));
    for p in POPS {
        assert_eq!(
            lab.transit_next_hop(three_pop::pop(p).unicast_prefix),
            Some(p),
            "unicast prefix of {p}"
        );
        assert!(
            lab.transit_has_path(ANYCAST_PREFIX, p),
            "transit has no anycast path from {p}"
        );
    }
    for client in CLIENTS {
        assert_eq!(
            lab.fetch(client, ANYCAST_ADDR).as_deref(),
            Ok("pop a"),
            "{client}"
        );
        for p in POPS {
            let addr = three_pop::pop(p).service_addr;
            assert_eq!(
                lab.fetch(client, addr),
                Ok(format!("pop {p}")),
                "{client} -> {addr}"
            );
        }
    }
    for server in POPS {
        assert_eq!(lab.answers("client1", server, ALL), Ok(names(&POPS)));
        assert_eq!(lab.answers("client1", server, WWW), Ok(names(&["a"])));
        assert_eq!(lab.answers("client2", server, WWW), Ok(names(&["c"])));
    }

    // PoP a's service dies: node a withdraws, the transit moves the anycast
    // prefix to b (the next nearest), and every node (all of them probe
    // a's service) steers client1 to b.
    lab.service("a").stop();
    assert!(
        wait_until(WAIT, || lab.transit_next_hop(ANYCAST_PREFIX) == Some("b")),
        "anycast never moved to b: {:?}",
        lab.lab.kernel_route("transit", ANYCAST_PREFIX)
    );
    assert!(
        wait_until(WAIT, || lab.transit_next_hop("203.0.113.128/28").is_none()),
        "a's unicast prefix stayed"
    );
    assert_eq!(lab.fetch("client1", ANYCAST_ADDR).as_deref(), Ok("pop b"));
    for server in POPS {
        let ok = wait_until(WAIT, || {
            lab.answers("client1", server, WWW) == Ok(names(&["b"]))
        });
        assert!(
            ok,
            "node {server} still answers {:?}\n{}",
            lab.answers("client1", server, WWW),
            lab.logs()
        );
    }

    // And back.
    lab.service("a").start_again();
    assert!(
        wait_until(WAIT, || lab.transit_next_hop(ANYCAST_PREFIX) == Some("a")),
        "anycast never came back to a"
    );
    for server in POPS {
        let ok = wait_until(WAIT, || {
            lab.answers("client1", server, ALL) == Ok(names(&POPS))
        });
        assert!(
            ok,
            "node {server}: {:?}",
            lab.answers("client1", server, ALL)
        );
    }
    assert_eq!(lab.fetch("client1", ANYCAST_ADDR).as_deref(), Ok("pop a"));
}
