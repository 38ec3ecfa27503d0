//! anypop against GoBGP 3 (topologies/gobgp-pop): the announce/withdraw
//! round trip for IPv4 and IPv6 with attributes as GoBGP decodes them, and
//! no session reset in between.

use anypop_integration::lab::anypop::PopNode;
use anypop_integration::lab::gobgp::{self, Gobgp};
use anypop_integration::lab::{lab_available, repo_root, topology_file, Lab, WAIT};

const V4: &str = "203.0.113.0/24";
const V6: &str = "2001:db8:100::/48";
const POP1_V4: &str = "192.0.2.2";
const POP1_V6: &str = "2001:db8:0:1::2";

fn assert_attrs(p: &serde_json::Value, what: &str) {
    assert_eq!(gobgp::as_path(p), vec![65001, 65001, 65001], "{what}: {p}");
    assert_eq!(gobgp::med(p), Some(50), "{what}: {p}");
    assert_eq!(gobgp::communities(p), vec!["64512:100"], "{what}: {p}");
    assert_eq!(
        gobgp::large_communities(p),
        vec!["64512:1:100"],
        "{what}: {p}"
    );
}

#[test]
fn bgp_gobgp_announce_withdraw_roundtrip() {
    if !lab_available(
        "bgp_gobgp_announce_withdraw_roundtrip",
        &["gobgpd", "gobgp"],
    ) {
        return;
    }
    let lab = Lab::from_clab(&repo_root().join("topologies/gobgp-pop/gobgp-pop.clab.yml"));
    let r3 = Gobgp::start(&lab, "r3", &topology_file("gobgp-pop/gobgp/r3/gobgpd.toml"));
    let mut pop1 = PopNode::start(&lab, "pop1", &topology_file("gobgp-pop/anypop/pop1.yaml"));
    for peer in [POP1_V4, POP1_V6] {
        assert!(
            r3.wait_established(peer, WAIT),
            "r3 never established with {peer}"
        );
    }
    let p4 = r3
        .wait_path(V4, POP1_V4, WAIT, |_| true)
        .expect("IPv4 prefix at r3");
    assert_attrs(&p4, "IPv4");
    let p6 = r3
        .wait_path(V6, POP1_V6, WAIT, |_| true)
        .expect("IPv6 prefix at r3");
    assert_attrs(&p6, "IPv6");
    let since = [POP1_V4, POP1_V6].map(|p| r3.established_since(p));

    for round in 0..2 {
        pop1.set_down("pop1", true);
        assert!(
            anypop_integration::wait_until(WAIT, || r3.path_from(V4, POP1_V4).is_none()
                && r3.path_from(V6, POP1_V6).is_none()),
            "round {round}: not withdrawn at r3"
        );
        pop1.set_down("pop1", false);
        let p4 = r3
            .wait_path(V4, POP1_V4, WAIT, |_| true)
            .expect("IPv4 back");
        assert_attrs(&p4, "IPv4 after recovery");
        assert!(
            r3.wait_path(V6, POP1_V6, WAIT, |_| true).is_some(),
            "IPv6 back"
        );
    }
    for peer in [POP1_V4, POP1_V6] {
        assert_eq!(r3.peer_state(peer).as_deref(), Some("established"));
    }
    assert_eq!(
        [POP1_V4, POP1_V6].map(|p| r3.established_since(p)),
        since,
        "session reset"
    );
    assert!(pop1.alive(), "anypop exited:\n{}", pop1.proc.log());
}
