//! anypop against BIRD 2 (topologies/bird-pop): the announce/withdraw round
//! trip for IPv4 and IPv6, with attributes as BIRD shows them and routes in
//! r2's kernel table, and no session reset in between.

use anypop_integration::lab::anypop::PopNode;
use anypop_integration::lab::bird::Bird;
use anypop_integration::lab::{lab_available, repo_root, topology_file, Lab, WAIT};
use anypop_integration::wait_until;

const V4: &str = "203.0.113.0/24";
const V6: &str = "2001:db8:100::/48";

fn assert_attrs(route: &str, what: &str) {
    for needle in [
        "BGP.as_path: 65001 65001 65001",
        "BGP.med: 50",
        "(64512,100)",
        "(64512, 1, 100)",
    ] {
        assert!(
            route.contains(needle),
            "{what}: {needle:?} missing in\n{route}"
        );
    }
}

fn in_kernel(lab: &Lab, prefix: &str) -> bool {
    let fam = if prefix.contains(':') { 6 } else { 4 };
    lab.kernel_routes("r2", fam, &["proto", "bird"])
        .iter()
        .any(|r| r == prefix)
}

#[test]
fn bgp_bird_announce_withdraw_roundtrip() {
    if !lab_available("bgp_bird_announce_withdraw_roundtrip", &["bird", "birdc"]) {
        return;
    }
    let lab = Lab::from_clab(&repo_root().join("topologies/bird-pop/bird-pop.clab.yml"));
    let r2 = Bird::start(&lab, "r2", &topology_file("bird-pop/bird/r2/bird.conf"));
    let mut pop1 = PopNode::start(&lab, "pop1", &topology_file("bird-pop/anypop/pop1.yaml"));
    for proto in ["pop1_v4", "pop1_v6"] {
        assert!(
            r2.wait_established(proto, WAIT),
            "r2 {proto} never established"
        );
    }
    let mut route = None;
    assert!(wait_until(WAIT, || {
        route = r2.route(V4);
        route.is_some()
    }));
    assert_attrs(route.as_deref().unwrap_or_default(), "IPv4");
    assert!(
        wait_until(WAIT, || r2.route(V6).is_some()),
        "IPv6 prefix at r2"
    );
    assert_attrs(&r2.route(V6).unwrap_or_default(), "IPv6");
    assert!(wait_until(WAIT, || in_kernel(&lab, V4) && in_kernel(&lab, V6)));
    let since = ["pop1_v4", "pop1_v6"].map(|p| r2.protocol_since(p));

    for round in 0..2 {
        pop1.set_down("pop1", true);
        assert!(
            wait_until(WAIT, || r2.route(V4).is_none() && r2.route(V6).is_none()),
            "round {round}: not withdrawn at r2"
        );
        assert!(wait_until(WAIT, || !in_kernel(&lab, V4) && !in_kernel(&lab, V6)));
        pop1.set_down("pop1", false);
        assert!(wait_until(WAIT, || r2.route(V4).is_some() && r2.route(V6).is_some()));
        assert_attrs(&r2.route(V4).unwrap_or_default(), "IPv4 after recovery");
        assert!(wait_until(WAIT, || in_kernel(&lab, V4) && in_kernel(&lab, V6)));
    }
    assert_eq!(
        ["pop1_v4", "pop1_v6"].map(|p| r2.protocol_since(p)),
        since,
        "session reset"
    );
    assert!(pop1.alive(), "anypop exited:\n{}", pop1.proc.log());
}
