//! Proves the lab harness itself with real daemons only (no anypop): the
//! frr-anycast topology is realised in namespaces, GoBGP stands in for pop1
//! and BIRD for pop2, and FRR must learn their routes with the attributes
//! they sent, install them in its kernel FIB, drop them on withdraw, and
//! everything must be gone after the lab is dropped.

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::Duration;

use anypop_integration::lab::frr::{self, Frr};
use anypop_integration::lab::gobgp::{self, Gobgp};
use anypop_integration::lab::{bird::Bird, lab_available, repo_root, topology_file, Lab, WAIT};
use anypop_integration::{lab, wait_until};

/// pop1's gobgpd config: AS 65001, one neighbor r1 (AS 65000) per family.
fn gobgp_as_pop1() -> String {
    let global = r#"
[global.config]
  as = 65001
  router-id = "192.0.2.2"
  port = 179
"#;
    global.to_string()
        + &gobgp_neighbor("192.0.2.1", "ipv4-unicast")
        + &gobgp_neighbor("2001:db8:0:1::1", "ipv6-unicast")
}

/// One `[[neighbors]]` entry towards r1 (AS 65000) at `addr` for `afi_safi`.
fn gobgp_neighbor(addr: &str, afi_safi: &str) -> String {
    format!(
        r#"[[neighbors]]
  [neighbors.config]
    neighbor-address = "{addr}"
    peer-as = 65000
  [neighbors.timers.config]
    connect-retry = 1
    hold-time = 9
    keepalive-interval = 3
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "{afi_safi}"
"#
    )
}

const BIRD_AS_POP2: &str = r#"
log stderr all;
router id 198.51.100.2;
protocol device {}
protocol static s4 { ipv4; route 203.0.113.0/24 unreachable; }
protocol static s6 { ipv6; route 2001:db8:100::/48 unreachable; }
protocol bgp r1_v4 {
  local 198.51.100.2 as 65002;
  neighbor 198.51.100.1 as 65000;
  hold time 9; keepalive time 3; connect retry time 1;
  ipv4 { import all; export where source = RTS_STATIC; };
}
protocol bgp r1_v6 {
  local 2001:db8:0:2::2 as 65002;
  neighbor 2001:db8:0:2::1 as 65000;
  hold time 9; keepalive time 3; connect retry time 1;
  ipv6 { import all; export where source = RTS_STATIC; };
}
"#;

fn clab(name: &str) -> std::path::PathBuf {
    repo_root()
        .join("topologies")
        .join(name)
        .join(format!("{name}.clab.yml"))
}

#[test]
fn bgp_harness_frr_learns_from_gobgp_and_bird_and_cleans_up() {
    if !lab_available(
        "bgp_harness_frr_learns_from_gobgp_and_bird_and_cleans_up",
        &[
            "/usr/lib/frr/bgpd",
            "vtysh",
            "gobgpd",
            "gobgp",
            "bird",
            "birdc",
        ],
    ) {
        return;
    }
    let (namespaces, pids, dir);
    {
        let lab = Lab::from_clab(&clab("frr-anycast"));
        let r1 = Frr::start(&lab, "r1", &topology_file("frr-anycast/frr/r1/frr.conf"));
        let g = Gobgp::start(&lab, "pop1", &gobgp_as_pop1());
        let b = Bird::start(&lab, "pop2", BIRD_AS_POP2);
        for peer in [
            "192.0.2.2",
            "2001:db8:0:1::2",
            "198.51.100.2",
            "2001:db8:0:2::2",
        ] {
            assert!(
                r1.wait_established(peer, WAIT),
                "r1 never established with {peer}"
            );
        }
        assert!(g.wait_established("192.0.2.1", WAIT));
        assert!(b.wait_established("r1_v6", WAIT));

        g.cli(&[
            "global",
            "rib",
            "add",
            "-a",
            "ipv4",
            "203.0.113.0/24",
            "nexthop",
            "192.0.2.2",
            "med",
            "50",
            "community",
            "64512:100",
            "large-community",
            "64512:1:100",
        ])
        .unwrap();
        let p = r1
            .wait_path("203.0.113.0/24", "192.0.2.2", WAIT, |_| true)
            .expect("r1 learned 203.0.113.0/24 from GoBGP");
        assert_eq!(frr::as_path(&p), vec![65001]);
        assert_eq!(frr::med(&p), Some(50));
        assert_eq!(frr::communities(&p), vec!["64512:100"]);
        assert_eq!(frr::large_communities(&p), vec!["64512:1:100"]);

        // BIRD's two static routes arrive over both sessions.
        let p6 = r1
            .wait_path("2001:db8:100::/48", "2001:db8:0:2::2", WAIT, |_| true)
            .expect("r1 learned 2001:db8:100::/48 from BIRD");
        assert_eq!(frr::as_path(&p6), vec![65002]);
        assert!(r1
            .wait_path("203.0.113.0/24", "198.51.100.2", WAIT, |_| true)
            .is_some());
        assert!(
            wait_until(WAIT, || lab
                .bgp_routes("r1", 4)
                .contains(&"203.0.113.0/24".to_string())
                && lab
                    .bgp_routes("r1", 6)
                    .contains(&"2001:db8:100::/48".to_string())),
            "kernel FIB of r1: {:?} {:?}",
            lab.bgp_routes("r1", 4),
            lab.bgp_routes("r1", 6)
        );
        let established = r1.session_identity("192.0.2.2").expect("session identity");

        // Withdraw from GoBGP: only that path goes, BIRD's stays.
        g.cli(&["global", "rib", "del", "-a", "ipv4", "203.0.113.0/24"])
            .unwrap();
        assert!(r1.wait_no_path("203.0.113.0/24", "192.0.2.2", WAIT));
        assert!(r1.path_from("203.0.113.0/24", "198.51.100.2").is_some());
        assert_eq!(r1.session_identity("192.0.2.2"), Some(established));

        // Stop BIRD: its paths go, and with them the FIB entries.
        drop(b);
        assert!(r1.wait_no_path("203.0.113.0/24", "198.51.100.2", WAIT));
        assert!(wait_until(WAIT, || !lab
            .bgp_routes("r1", 4)
            .contains(&"203.0.113.0/24".to_string())));

        namespaces = ["r1", "pop1", "pop2"].map(|n| lab.ns(n).to_string());
        pids = [r1.pid("bgpd"), r1.pid("zebra"), g.pid().map(|p| p as i32)];
        dir = lab.dir().to_path_buf();
    }
    // Everything is gone after the drop.
    let listed = lab::ip(&["netns", "list"]).unwrap_or_default();
    for ns in &namespaces {
        assert!(!listed.contains(ns.as_str()), "namespace {ns} left behind");
    }
    for pid in pids.into_iter().flatten() {
        assert!(!lab::pid_alive(pid), "daemon {pid} left running");
    }
    assert!(
        !Path::new(&dir).exists(),
        "lab dir {} left behind",
        dir.display()
    );
}

#[test]
fn bgp_harness_realises_clab_addresses() {
    if !lab_available("bgp_harness_realises_clab_addresses", &[]) {
        return;
    }
    let lab = Lab::from_clab(&clab("frr-anycast"));
    let out = lab.exec_must("r1", "ip", &["-br", "addr", "show", "eth2"]);
    assert!(out.contains("198.51.100.1/30"), "{out}");
    assert!(out.contains("2001:db8:0:2::1/64"), "{out}");
    // The link works in both families: a listener in r1, a client in pop1.
    for addr in ["192.0.2.1:1790", "[2001:db8:0:1::1]:1790"] {
        let listener = lab
            .in_ns("r1", move || TcpListener::bind(addr))
            .unwrap()
            .unwrap();
        let connected = lab
            .in_ns("pop1", move || {
                TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(5))
            })
            .unwrap();
        assert!(connected.is_ok(), "pop1 -> {addr}: {connected:?}");
        let (_, from) = listener.accept().unwrap();
        assert_eq!(from.ip().to_string().contains(':'), addr.starts_with('['));
    }
    // Namespaces are isolated: pop1 has no route to pop2's link.
    let r = lab
        .in_ns("pop1", || {
            TcpStream::connect_timeout(&"198.51.100.2:179".parse().unwrap(), Duration::from_secs(2))
        })
        .unwrap();
    assert!(r.is_err());
}

/// GoBGP stands in for pop1 in topologies/bird-pop: BIRD r2 (with the
/// topology's bird.conf) must show the attributes the anypop tests check,
/// and install the routes in its kernel table.
#[test]
fn bgp_harness_bird_topology_learns_from_gobgp() {
    if !lab_available(
        "bgp_harness_bird_topology_learns_from_gobgp",
        &["gobgpd", "gobgp", "bird", "birdc"],
    ) {
        return;
    }
    let lab = Lab::from_clab(&clab("bird-pop"));
    let r2 = Bird::start(&lab, "r2", &topology_file("bird-pop/bird/r2/bird.conf"));
    let g = Gobgp::start(&lab, "pop1", &gobgp_as_pop1());
    assert!(r2.wait_established("pop1_v4", WAIT));
    assert!(r2.wait_established("pop1_v6", WAIT));
    for (fam, prefix, nh) in [
        ("ipv4", "203.0.113.0/24", "192.0.2.2"),
        ("ipv6", "2001:db8:100::/48", "2001:db8:0:1::2"),
    ] {
        g.cli(&[
            "global",
            "rib",
            "add",
            "-a",
            fam,
            prefix,
            "nexthop",
            nh,
            "med",
            "50",
            "community",
            "64512:100",
            "large-community",
            "64512:1:100",
            "aspath",
            "65001,65001",
        ])
        .unwrap();
    }
    let mut route = None;
    assert!(wait_until(WAIT, || {
        route = r2.route("203.0.113.0/24");
        route.is_some()
    }));
    let route = route.unwrap_or_default();
    for needle in [
        "BGP.as_path: 65001 65001 65001",
        "BGP.med: 50",
        "(64512,100)",
        "(64512, 1, 100)",
    ] {
        assert!(route.contains(needle), "{needle:?} missing in\n{route}");
    }
    assert!(wait_until(WAIT, || r2.route("2001:db8:100::/48").is_some()));
    assert!(wait_until(WAIT, || lab
        .kernel_routes("r2", 6, &["proto", "bird"])
        .contains(&"2001:db8:100::/48".to_string())));
    let since = r2.protocol_since("pop1_v4");
    assert!(since.is_some());
    g.cli(&["global", "rib", "del", "-a", "ipv4", "203.0.113.0/24"])
        .unwrap();
    assert!(wait_until(WAIT, || r2.route("203.0.113.0/24").is_none()));
    assert!(wait_until(WAIT, || !lab
        .kernel_routes("r2", 4, &["proto", "bird"])
        .contains(&"203.0.113.0/24".to_string())));
    assert_eq!(r2.protocol_since("pop1_v4"), since);
}

/// BIRD stands in for pop1 in topologies/gobgp-pop: GoBGP r3 (with the
/// topology's gobgpd.toml) must decode the attributes the anypop tests check.
#[test]
fn bgp_harness_gobgp_topology_learns_from_bird() {
    if !lab_available(
        "bgp_harness_gobgp_topology_learns_from_bird",
        &["gobgpd", "gobgp", "bird", "birdc"],
    ) {
        return;
    }
    let lab = Lab::from_clab(&clab("gobgp-pop"));
    let r3 = Gobgp::start(&lab, "r3", &topology_file("gobgp-pop/gobgp/r3/gobgpd.toml"));
    let export = "export filter { if source != RTS_STATIC then reject; bgp_med = 50; \
        bgp_community.add((64512,100)); bgp_large_community.add((64512,1,100)); \
        bgp_path.prepend(65001); bgp_path.prepend(65001); accept; };";
    let conf = format!(
        "log stderr all;\nrouter id 192.0.2.2;\nprotocol device {{}}\n\
         protocol static s4 {{ ipv4; route 203.0.113.0/24 unreachable; }}\n\
         protocol static s6 {{ ipv6; route 2001:db8:100::/48 unreachable; }}\n\
         protocol bgp r3_v4 {{ local 192.0.2.2 as 65001; neighbor 192.0.2.1 as 65000; \
         hold time 9; keepalive time 3; connect retry time 1; ipv4 {{ import none; {export} }}; }}\n\
         protocol bgp r3_v6 {{ local 2001:db8:0:1::2 as 65001; neighbor 2001:db8:0:1::1 as 65000; \
         hold time 9; keepalive time 3; connect retry time 1; ipv6 {{ import none; {export} }}; }}\n"
    );
    let b = Bird::start(&lab, "pop1", &conf);
    assert!(r3.wait_established("192.0.2.2", WAIT));
    assert!(r3.wait_established("2001:db8:0:1::2", WAIT));
    let since = r3.established_since("192.0.2.2");
    for (prefix, peer) in [
        ("203.0.113.0/24", "192.0.2.2"),
        ("2001:db8:100::/48", "2001:db8:0:1::2"),
    ] {
        let p = r3
            .wait_path(prefix, peer, WAIT, |_| true)
            .unwrap_or_else(|| panic!("r3 has no {prefix} from {peer}"));
        assert_eq!(gobgp::as_path(&p), vec![65001, 65001, 65001], "{p}");
        assert_eq!(gobgp::med(&p), Some(50), "{p}");
        assert_eq!(gobgp::communities(&p), vec!["64512:100"], "{p}");
        assert_eq!(gobgp::large_communities(&p), vec!["64512:1:100"], "{p}");
    }
    b.birdc("disable s4").unwrap();
    assert!(wait_until(WAIT, || r3
        .path_from("203.0.113.0/24", "192.0.2.2")
        .is_none()));
    assert!(r3
        .path_from("2001:db8:100::/48", "2001:db8:0:1::2")
        .is_some());
    assert_eq!(r3.established_since("192.0.2.2"), since);
    assert_eq!(r3.peer_state("192.0.2.2").as_deref(), Some("established"));
}
