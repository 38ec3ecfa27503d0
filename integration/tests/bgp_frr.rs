//! anypop against FRR 8.4 (zebra + bgpd) in network namespaces, realising
//! topologies/frr-anycast: announce/withdraw of IPv4 and IPv6 prefixes with
//! their attributes (RIB via `vtysh ... json`, kernel FIB via `ip route`),
//! without session resets; graceful shutdown; graceful restart; TCP MD5.
//! And topologies/frr-4byte: iBGP and eBGP with 4-byte private ASNs.

use std::time::Duration;

use anypop_integration::lab::anypop::{with_peer_lines, PopNode};
use anypop_integration::lab::frr::{self, Frr};
use anypop_integration::lab::monitor::RouteMonitor;
use anypop_integration::lab::{lab_available, repo_root, topology_file, Lab, WAIT};
use anypop_integration::wait_until;

const V4: &str = "203.0.113.0/24";
const V6: &str = "2001:db8:100::/48";
const POP1_V4: &str = "192.0.2.2";
const POP1_V6: &str = "2001:db8:0:1::2";
const POP2_V4: &str = "198.51.100.2";
const POP2_V6: &str = "2001:db8:0:2::2";

const PROGRAMS: &[&str] = &["/usr/lib/frr/zebra", "/usr/lib/frr/bgpd", "vtysh"];

fn lab() -> Lab {
    Lab::from_clab(&repo_root().join("topologies/frr-anycast/frr-anycast.clab.yml"))
}

fn r1(lab: &Lab) -> Frr {
    Frr::start(lab, "r1", &topology_file("frr-anycast/frr/r1/frr.conf"))
}

/// FRR prints 65535:0 by its well-known name.
fn is_gshut(c: &str) -> bool {
    c == "65535:0" || c == "graceful-shutdown"
}

fn has(routes: &[String], p: &str) -> bool {
    routes.iter().any(|r| r == p)
}

fn in_fib(lab: &Lab, prefix: &str) -> bool {
    let fam = if prefix.contains(':') { 6 } else { 4 };
    has(&lab.bgp_routes("r1", fam), prefix)
}

/// The attributes pop1.yaml asks for: 2 prepends, MED 50, 64512:100,
/// 64512:1:100.
fn assert_pop1_attrs(p: &serde_json::Value, what: &str) {
    assert_eq!(
        frr::as_path(p),
        vec![65001, 65001, 65001],
        "{what}: AS_PATH in {p}"
    );
    assert_eq!(frr::med(p), Some(50), "{what}: MED in {p}");
    assert_eq!(
        frr::communities(p),
        vec!["64512:100"],
        "{what}: communities in {p}"
    );
    assert_eq!(
        frr::large_communities(p),
        vec!["64512:1:100"],
        "{what}: large communities in {p}"
    );
}

#[test]
fn bgp_frr_announce_withdraw_v4_v6_with_attributes_no_session_reset() {
    if !lab_available(
        "bgp_frr_announce_withdraw_v4_v6_with_attributes_no_session_reset",
        PROGRAMS,
    ) {
        return;
    }
    let lab = lab();
    let r1 = r1(&lab);
    let mut pop1 = PopNode::start(&lab, "pop1", &topology_file("frr-anycast/anypop/pop1.yaml"));
    for peer in [POP1_V4, POP1_V6] {
        assert!(
            r1.wait_established(peer, WAIT),
            "r1 never established with {peer}"
        );
    }
    let p4 = r1
        .wait_path(V4, POP1_V4, WAIT, |_| true)
        .expect("r1 learns the IPv4 prefix");
    assert_pop1_attrs(&p4, "IPv4");
    let p6 = r1
        .wait_path(V6, POP1_V6, WAIT, |_| true)
        .expect("r1 learns the IPv6 prefix");
    assert_pop1_attrs(&p6, "IPv6");
    assert!(
        wait_until(WAIT, || in_fib(&lab, V4) && in_fib(&lab, V6)),
        "prefixes not in r1's kernel FIB: {:?} {:?}",
        lab.bgp_routes("r1", 4),
        lab.bgp_routes("r1", 6)
    );
    // The FIB entries point at pop1.
    let fib4 = lab.kernel_route("r1", V4).unwrap_or_default();
    assert!(fib4.contains("via 192.0.2.2"), "{fib4}");
    let fib6 = lab.kernel_route("r1", V6).unwrap_or_default();
    assert!(fib6.contains("via 2001:db8:0:1::2"), "{fib6}");

    let sessions = [POP1_V4, POP1_V6].map(|p| r1.session_identity(p).expect("established"));

    for round in 0..2 {
        // PoP fails: both prefixes leave r1's RIB and FIB.
        pop1.set_down("pop1", true);
        assert!(
            r1.wait_no_path(V4, POP1_V4, WAIT),
            "round {round}: IPv4 not withdrawn"
        );
        assert!(
            r1.wait_no_path(V6, POP1_V6, WAIT),
            "round {round}: IPv6 not withdrawn"
        );
        assert!(
            wait_until(WAIT, || !in_fib(&lab, V4) && !in_fib(&lab, V6)),
            "round {round}: still in FIB"
        );
        // PoP recovers: they come back with the same attributes.
        pop1.set_down("pop1", false);
        let p4 = r1
            .wait_path(V4, POP1_V4, WAIT, |_| true)
            .expect("IPv4 back");
        assert_pop1_attrs(&p4, "IPv4 after recovery");
        let p6 = r1
            .wait_path(V6, POP1_V6, WAIT, |_| true)
            .expect("IPv6 back");
        assert_pop1_attrs(&p6, "IPv6 after recovery");
        assert!(wait_until(WAIT, || in_fib(&lab, V4) && in_fib(&lab, V6)));
    }
    // No session reset in between.
    let after = [POP1_V4, POP1_V6].map(|p| r1.session_identity(p));
    assert_eq!(after, sessions.map(Some), "a session was reset");
    assert!(pop1.alive(), "anypop exited:\n{}", pop1.proc.log());
    assert!(r1.bgpd_alive());
}

#[test]
fn bgp_frr_graceful_shutdown_moves_traffic_to_other_pop() {
    if !lab_available(
        "bgp_frr_graceful_shutdown_moves_traffic_to_other_pop",
        PROGRAMS,
    ) {
        return;
    }
    let lab = lab();
    let r1 = r1(&lab);
    let _pop1 = PopNode::start(&lab, "pop1", &topology_file("frr-anycast/anypop/pop1.yaml"));
    let pop2 = PopNode::start(&lab, "pop2", &topology_file("frr-anycast/anypop/pop2.yaml"));
    for (prefix, peer) in [(V4, POP1_V4), (V4, POP2_V4), (V6, POP1_V6), (V6, POP2_V6)] {
        assert!(
            r1.wait_path(prefix, peer, WAIT, |_| true).is_some(),
            "r1 has no path for {prefix} from {peer}"
        );
    }
    // pop2 has the shorter AS_PATH (no prepends): it is best while healthy.
    for (prefix, peer) in [(V4, POP2_V4), (V6, POP2_V6)] {
        assert!(
            r1.wait_path(prefix, peer, WAIT, frr::is_best).is_some(),
            "pop2's path for {prefix} should be best while healthy: {:?}",
            r1.paths(prefix)
        );
    }
    // pop2 fails; its policy keeps the prefixes in graceful shutdown.
    pop2.set_down("pop2", true);
    for (prefix, peer) in [(V4, POP2_V4), (V6, POP2_V6)] {
        let p = r1
            .wait_path(prefix, peer, WAIT, |p| {
                frr::communities(p).iter().any(|c| is_gshut(c.as_str()))
            })
            .unwrap_or_else(|| {
                panic!(
                    "no GRACEFUL_SHUTDOWN on {prefix} from pop2: {:?}",
                    r1.paths(prefix)
                )
            });
        // FRR lowers LOCAL_PREF to 0 on eBGP routes with 65535:0 ...
        assert_eq!(p.get("locPrf").and_then(|v| v.as_u64()), Some(0), "{p}");
        // ... and, once it has re-run best-path selection, stops using it.
        assert!(
            r1.wait_path(prefix, peer, WAIT, |p| !frr::is_best(p))
                .is_some(),
            "pop2's graceful-shutdown path stays best: {:?}",
            r1.paths(prefix)
        );
        assert!(
            frr::communities(&p).contains(&"64512:200".to_string()),
            "{p}"
        );
    }
    // ... so pop1's path wins, and the FIB follows it.
    for (prefix, peer) in [(V4, POP1_V4), (V6, POP1_V6)] {
        assert!(
            r1.wait_path(prefix, peer, WAIT, frr::is_best).is_some(),
            "pop1 not preferred for {prefix}"
        );
    }
    assert!(wait_until(WAIT, || lab
        .kernel_route("r1", V4)
        .is_some_and(|r| r.contains("via 192.0.2.2"))));
    assert!(wait_until(WAIT, || lab
        .kernel_route("r1", V6)
        .is_some_and(|r| r.contains("via 2001:db8:0:1::2"))));

    // pop2 recovers: the community goes away and it is best again.
    pop2.set_down("pop2", false);
    for (prefix, peer) in [(V4, POP2_V4), (V6, POP2_V6)] {
        let p = r1
            .wait_path(prefix, peer, WAIT, frr::is_best)
            .unwrap_or_else(|| panic!("pop2 not best again for {prefix}: {:?}", r1.paths(prefix)));
        assert!(
            !frr::communities(&p).iter().any(|c| is_gshut(c.as_str())),
            "{p}"
        );
    }
}

#[test]
fn bgp_frr_graceful_restart_routes_never_leave_fib() {
    if !lab_available("bgp_frr_graceful_restart_routes_never_leave_fib", PROGRAMS) {
        return;
    }
    let lab = lab();
    // Static neighbors (the topology has no `bgp listen range`): FRR 8.4
    // can crash on GR with dynamic neighbors.
    let r1 = r1(&lab);
    let mut pop1 = PopNode::start(&lab, "pop1", &topology_file("frr-anycast/anypop/pop1.yaml"));
    for (prefix, peer) in [(V4, POP1_V4), (V6, POP1_V6)] {
        assert!(
            r1.wait_path(prefix, peer, WAIT, |_| true).is_some(),
            "no {prefix}"
        );
    }
    assert!(wait_until(WAIT, || in_fib(&lab, V4) && in_fib(&lab, V6)));
    // FRR saw the capability: it is a helper for pop1.
    let n = r1.neighbor(POP1_V4).expect("neighbor");
    assert!(
        n.pointer("/neighborCapabilities/gracefulRestart").is_some()
            || n.pointer("/gracefulRestartInfo").is_some(),
        "no graceful-restart capability seen by FRR: {n}"
    );
    let monitor = RouteMonitor::start(&lab, "r1");
    std::thread::sleep(Duration::from_millis(200)); // monitor subscribed

    let before = r1.session_identity(POP1_V4).expect("established");
    pop1.crash_and_restart(Duration::ZERO);
    // The session really restarted (FRR counts a drop / a new up time).
    assert!(
        wait_until(WAIT, || r1
            .session_identity(POP1_V4)
            .is_some_and(|id| id != before)
            && r1.peer_state(POP1_V4).as_deref() == Some("Established")),
        "session to the restarted anypop did not come back"
    );
    // After re-establishment, anypop re-sends its routes and End-of-RIB: the
    // paths are fresh again (not stale) with the same attributes.
    for peer in [POP1_V4, POP1_V6] {
        assert!(r1.wait_established(peer, WAIT), "{peer} not re-established");
    }
    for (prefix, peer) in [(V4, POP1_V4), (V6, POP1_V6)] {
        let p = r1
            .wait_path(prefix, peer, WAIT, |p| !frr::is_stale(p))
            .unwrap_or_else(|| panic!("{prefix} still stale or gone: {:?}", r1.paths(prefix)));
        assert_pop1_attrs(&p, prefix);
    }
    // Give FRR time to act on End-of-RIB / the stale timer, then check that
    // the kernel routes were never deleted.
    std::thread::sleep(Duration::from_secs(3));
    assert!(in_fib(&lab, V4) && in_fib(&lab, V6));
    for prefix in [V4, V6] {
        let del = monitor.deletions_of(prefix);
        assert!(
            del.is_empty(),
            "{prefix} left r1's FIB during the restart: {del:?}"
        );
    }
    assert!(r1.bgpd_alive(), "bgpd crashed");
}

#[test]
fn bgp_frr_graceful_restart_after_kill_shows_stale_routes() {
    if !lab_available(
        "bgp_frr_graceful_restart_after_kill_shows_stale_routes",
        PROGRAMS,
    ) {
        return;
    }
    let lab = lab();
    let r1 = r1(&lab);
    let mut pop1 = PopNode::start(&lab, "pop1", &topology_file("frr-anycast/anypop/pop1.yaml"));
    assert!(r1.wait_path(V4, POP1_V4, WAIT, |_| true).is_some());
    // The route must be in the kernel before the kill, or the check below
    // would race zebra's install rather than test graceful restart.
    assert!(
        wait_until(WAIT, || in_fib(&lab, V4)),
        "route never reached the FIB"
    );
    // kill -9 and stay down: the hold timer (9 s) expires, FRR keeps the
    // routes as stale for the advertised restart time (120 s), in the FIB.
    pop1.kill();
    let p = r1
        .wait_path(V4, POP1_V4, WAIT, frr::is_stale)
        .unwrap_or_else(|| panic!("no stale path after kill -9: {:?}", r1.paths(V4)));
    assert_pop1_attrs(&p, "stale IPv4");
    assert!(in_fib(&lab, V4), "stale route left the FIB");
    assert_ne!(r1.peer_state(POP1_V4).as_deref(), Some("Established"));
}

const MD5_PASSWORD: &str = "lab-md5-s3cret";
const MD5_ROTATED: &str = "lab-md5-rotated";

fn frr_conf_with_md5() -> String {
    topology_file("frr-anycast/frr/r1/frr.conf").replace(
        " neighbor 192.0.2.2 remote-as 65001\n",
        &format!(
            " neighbor 192.0.2.2 remote-as 65001\n neighbor 192.0.2.2 password {MD5_PASSWORD}\n"
        ),
    )
}

fn pop1_with_md5(lab: &Lab, password: &str) -> PopNode {
    let pw = lab.dir().join("md5.pw");
    std::fs::write(&pw, format!("{password}\n")).unwrap();
    let yaml = with_peer_lines(
        &topology_file("frr-anycast/anypop/pop1.yaml"),
        "192.0.2.1",
        &format!("md5_password_file: {}", pw.display()),
    );
    PopNode::start(lab, "pop1", &yaml)
}

#[test]
fn bgp_frr_md5_right_password_establishes_and_follows_a_rotated_key() {
    if !lab_available(
        "bgp_frr_md5_right_password_establishes_and_follows_a_rotated_key",
        PROGRAMS,
    ) {
        return;
    }
    let lab = lab();
    let r1 = Frr::start(&lab, "r1", &frr_conf_with_md5());
    let pop1 = pop1_with_md5(&lab, MD5_PASSWORD);
    assert!(
        r1.wait_established(POP1_V4, WAIT),
        "MD5 session with the right password did not come up"
    );
    assert!(r1.wait_path(V4, POP1_V4, WAIT, |_| true).is_some());

    // Key rotation: FRR gets the new password (it resets the session),
    // anypop's key file gets it too and a reload (same config, new file
    // content) makes anypop dial with it: the session comes back.
    let (ups, _) = r1.session_identity(POP1_V4).expect("neighbor");
    r1.vtysh_lines(&[
        "configure terminal",
        "router bgp 65000",
        &format!("neighbor 192.0.2.2 password {MD5_ROTATED}"),
    ])
    .expect("change FRR's password");
    std::fs::write(lab.dir().join("md5.pw"), format!("{MD5_ROTATED}\n")).unwrap();
    pop1.proc.signal(libc::SIGHUP);
    assert!(
        wait_until(WAIT, || r1
            .session_identity(POP1_V4)
            .is_some_and(|(n, _)| n > ups)
            && r1.peer_state(POP1_V4).as_deref() == Some("Established")),
        "no session with the rotated key: {:?}\nanypop log:\n{}",
        r1.peer_state(POP1_V4),
        pop1.proc.log()
    );
    assert!(r1.wait_path(V4, POP1_V4, WAIT, |_| true).is_some());
}

#[test]
fn bgp_frr_md5_wrong_password_never_establishes() {
    if !lab_available("bgp_frr_md5_wrong_password_never_establishes", PROGRAMS) {
        return;
    }
    let lab = lab();
    let r1 = Frr::start(&lab, "r1", &frr_conf_with_md5());
    let pop1 = pop1_with_md5(&lab, "not-the-password");
    // The unprotected IPv6 session is the control: it comes up.
    assert!(r1.wait_established(POP1_V6, WAIT));
    // Several connect-retry rounds (1 s) pass without the MD5 session.
    let up = wait_until(Duration::from_secs(15), || {
        r1.peer_state(POP1_V4).as_deref() == Some("Established")
    });
    assert!(!up, "session came up with a wrong MD5 password");
    assert!(r1.path_from(V4, POP1_V4).is_none());
    // anypop hints at the cause.
    let log = pop1.proc.log().to_ascii_lowercase();
    assert!(
        log.contains("md5"),
        "no MD5 hint in anypop's log:\n{}",
        pop1.proc.log()
    );
}

#[test]
fn bgp_frr_sigterm_withdraws_then_sends_cease() {
    if !lab_available("bgp_frr_sigterm_withdraws_then_sends_cease", PROGRAMS) {
        return;
    }
    let lab = lab();
    let r1 = r1(&lab);
    // pop1.yaml: `shutdown: withdraw` (the default).
    let mut pop1 = PopNode::start(&lab, "pop1", &topology_file("frr-anycast/anypop/pop1.yaml"));
    assert!(r1.wait_path(V4, POP1_V4, WAIT, |_| true).is_some());
    assert!(wait_until(WAIT, || in_fib(&lab, V4)));
    pop1.proc.signal(libc::SIGTERM);
    assert_eq!(
        pop1.proc.wait_exit(WAIT),
        Some(0),
        "anypop did not exit cleanly"
    );
    assert!(
        r1.wait_no_path(V4, POP1_V4, WAIT),
        "IPv4 not withdrawn on SIGTERM"
    );
    assert!(
        r1.wait_no_path(V6, POP1_V6, WAIT),
        "IPv6 not withdrawn on SIGTERM"
    );
    assert!(wait_until(WAIT, || !in_fib(&lab, V4) && !in_fib(&lab, V6)));
    // FRR received a Cease / administrative shutdown, not a dead TCP session.
    let n = r1.neighbor(POP1_V4).expect("neighbor");
    let text = n.to_string().to_ascii_lowercase();
    assert!(
        text.contains("administrative shutdown") || text.contains("administratively shut"),
        "no Cease/administrative shutdown in FRR's view of the session: {n}"
    );
}

#[test]
fn bgp_frr_sigterm_in_graceful_restart_mode_keeps_routes() {
    if !lab_available(
        "bgp_frr_sigterm_in_graceful_restart_mode_keeps_routes",
        PROGRAMS,
    ) {
        return;
    }
    let lab = lab();
    let r1 = r1(&lab);
    let yaml = topology_file("frr-anycast/anypop/pop1.yaml")
        .replace("  shutdown: withdraw\n", "  shutdown: graceful_restart\n");
    assert!(yaml.contains("shutdown: graceful_restart"));
    let mut pop1 = PopNode::start(&lab, "pop1", &yaml);
    assert!(r1.wait_path(V4, POP1_V4, WAIT, |_| true).is_some());
    assert!(wait_until(WAIT, || in_fib(&lab, V4) && in_fib(&lab, V6)));
    let monitor = RouteMonitor::start(&lab, "r1");
    std::thread::sleep(Duration::from_millis(200));
    pop1.proc.signal(libc::SIGTERM);
    assert_eq!(
        pop1.proc.wait_exit(WAIT),
        Some(0),
        "anypop did not exit cleanly"
    );
    // The session is gone, the routes stay (stale) and in the FIB.
    assert!(wait_until(WAIT, || r1.peer_state(POP1_V4).as_deref()
        != Some("Established")));
    let p = r1
        .wait_path(V4, POP1_V4, WAIT, frr::is_stale)
        .unwrap_or_else(|| panic!("no stale path after SIGTERM: {:?}", r1.paths(V4)));
    assert_pop1_attrs(&p, "stale after SIGTERM");
    std::thread::sleep(Duration::from_secs(2));
    assert!(in_fib(&lab, V4) && in_fib(&lab, V6));
    assert!(
        monitor.deletions_of(V4).is_empty(),
        "{:?}",
        monitor.deletions_of(V4)
    );
    // Restarted, it takes over its routes again without a gap.
    let _pop1 = PopNode::start(&lab, "pop1", &yaml);
    assert!(r1
        .wait_path(V4, POP1_V4, WAIT, |p| !frr::is_stale(p))
        .is_some());
    assert!(
        monitor.deletions_of(V4).is_empty(),
        "{:?}",
        monitor.deletions_of(V4)
    );
}

#[test]
fn bgp_frr_ipv6_over_ipv4_session_with_explicit_next_hop() {
    if !lab_available(
        "bgp_frr_ipv6_over_ipv4_session_with_explicit_next_hop",
        PROGRAMS,
    ) {
        return;
    }
    let lab = lab();
    // r1 also negotiates IPv6 unicast on the IPv4 session to pop1.
    let conf = topology_file("frr-anycast/frr/r1/frr.conf").replace(
        " address-family ipv6 unicast\n",
        " address-family ipv6 unicast\n  neighbor 192.0.2.2 activate\n  neighbor 192.0.2.2 route-map DENY-ALL out\n",
    );
    let r1 = Frr::start(&lab, "r1", &conf);
    // pop1 has only the IPv4 session, carrying both families; the IPv6
    // next hop must be explicit (the session's local address is IPv4).
    let base = topology_file("frr-anycast/anypop/pop1.yaml");
    let start = base
        .find("    - name: r1-v6")
        .expect("r1-v6 peer in pop1.yaml");
    let end = base.find("pops:").expect("pops in pop1.yaml");
    let yaml = format!("{}{}", &base[..start], &base[end..]).replace(
        "      families: [ipv4]\n",
        "      families: [ipv4, ipv6]\n      next_hop_v6: \"2001:db8:0:1::2\"\n",
    );
    let _pop1 = PopNode::start(&lab, "pop1", &yaml);
    let p6 = r1
        .wait_path(V6, POP1_V4, WAIT, |_| true)
        .unwrap_or_else(|| panic!("no IPv6 path over the IPv4 session: {:?}", r1.paths(V6)));
    assert_pop1_attrs(&p6, "IPv6 over IPv4");
    assert!(r1.wait_path(V4, POP1_V4, WAIT, |_| true).is_some());
    assert!(
        wait_until(WAIT, || lab
            .kernel_route("r1", V6)
            .is_some_and(|r| r.contains("via 2001:db8:0:1::2"))),
        "IPv6 route not in the FIB via the explicit next hop: {:?}",
        lab.kernel_route("r1", V6)
    );
    // The native IPv6 neighbor stays down: nothing came from there.
    assert!(r1.path_from(V6, POP1_V6).is_none());
}

// ------------------------------------------------ topologies/frr-4byte

const IBGP_ASN: u32 = 4_200_000_000;
const EBGP_ASN: u32 = 4_200_000_002;
const AS_TRANS: u32 = 23456;

fn lab_4byte() -> Lab {
    Lab::from_clab(&repo_root().join("topologies/frr-4byte/frr-4byte.clab.yml"))
}

fn local_pref(p: &serde_json::Value) -> Option<u64> {
    p.get("locPrf").and_then(|v| v.as_u64())
}

/// iBGP inside a 4-byte private AS: empty AS_PATH, LOCAL_PREF as
/// configured (150), and graceful shutdown = 65535:0 with LOCAL_PREF 0, so
/// r1 moves to the eBGP path of pop2 (4-byte local AS, AS_PATH with the
/// 4-octet number, never AS_TRANS).
#[test]
fn bgp_frr_4byte_ibgp_and_ebgp_paths_and_graceful_shutdown() {
    if !lab_available(
        "bgp_frr_4byte_ibgp_and_ebgp_paths_and_graceful_shutdown",
        PROGRAMS,
    ) {
        return;
    }
    let lab = lab_4byte();
    let r1 = Frr::start(&lab, "r1", &topology_file("frr-4byte/frr/r1/frr.conf"));
    let pop1 = PopNode::start(&lab, "pop1", &topology_file("frr-4byte/anypop/pop1.yaml"));
    let _pop2 = PopNode::start(&lab, "pop2", &topology_file("frr-4byte/anypop/pop2.yaml"));
    for peer in [POP1_V4, POP2_V4] {
        assert!(
            r1.wait_established(peer, WAIT),
            "r1 never established with {peer}"
        );
    }
    // FRR sees pop1 as an internal peer.
    let n = r1.neighbor(POP1_V4).expect("neighbor pop1");
    assert_eq!(
        n.get("remoteAs").and_then(|v| v.as_u64()),
        Some(u64::from(IBGP_ASN)),
        "{n}"
    );
    assert_eq!(
        n.get("nbrInternalLink").and_then(|v| v.as_bool()),
        Some(true),
        "{n}"
    );

    // iBGP path: no AS in the path (no prepends configured), LOCAL_PREF 150.
    let p1 = r1
        .wait_path(V4, POP1_V4, WAIT, |_| true)
        .unwrap_or_else(|| panic!("no iBGP path from pop1: {:?}", r1.paths(V4)));
    assert!(frr::as_path(&p1).is_empty(), "iBGP AS_PATH not empty: {p1}");
    assert_eq!(
        p1.pointer("/aspath/length").and_then(|v| v.as_u64()),
        Some(0),
        "{p1}"
    );
    assert_eq!(local_pref(&p1), Some(150), "LOCAL_PREF: {p1}");
    assert_eq!(frr::communities(&p1), vec!["64512:100"], "{p1}");

    // eBGP path: the 4-byte local AS, prepended once, as 4-octet numbers.
    let p2 = r1
        .wait_path(V4, POP2_V4, WAIT, |_| true)
        .unwrap_or_else(|| panic!("no eBGP path from pop2: {:?}", r1.paths(V4)));
    let path2 = frr::as_path(&p2);
    assert!(!path2.contains(&AS_TRANS), "AS_TRANS in the AS_PATH: {p2}");
    assert_eq!(path2, vec![EBGP_ASN, EBGP_ASN], "eBGP AS_PATH: {p2}");
    let n2 = r1.neighbor(POP2_V4).expect("neighbor pop2");
    assert_eq!(
        n2.get("remoteAs").and_then(|v| v.as_u64()),
        Some(u64::from(EBGP_ASN)),
        "{n2}"
    );
    // LOCAL_PREF 150 beats the eBGP path's default 100.
    assert!(
        r1.wait_path(V4, POP1_V4, WAIT, frr::is_best).is_some(),
        "pop1's iBGP path (LOCAL_PREF 150) not best: {:?}",
        r1.paths(V4)
    );

    // pop1 fails: graceful shutdown over iBGP = 65535:0 and LOCAL_PREF 0.
    pop1.set_down("pop1", true);
    let g = r1
        .wait_path(V4, POP1_V4, WAIT, |p| {
            frr::communities(p).iter().any(|c| is_gshut(c))
        })
        .unwrap_or_else(|| panic!("no GRACEFUL_SHUTDOWN from pop1: {:?}", r1.paths(V4)));
    assert_eq!(
        local_pref(&g),
        Some(0),
        "iBGP graceful-shutdown LOCAL_PREF: {g}"
    );
    assert!(frr::as_path(&g).is_empty(), "{g}");
    assert!(
        frr::communities(&g).contains(&"64512:100".to_string()),
        "{g}"
    );
    assert!(
        r1.wait_path(V4, POP2_V4, WAIT, frr::is_best).is_some(),
        "pop2 not preferred over pop1 in graceful shutdown: {:?}",
        r1.paths(V4)
    );

    // pop1 recovers: LOCAL_PREF 150 again, no 65535:0, best again.
    pop1.set_down("pop1", false);
    let back = r1
        .wait_path(V4, POP1_V4, WAIT, frr::is_best)
        .unwrap_or_else(|| panic!("pop1 not best again: {:?}", r1.paths(V4)));
    assert_eq!(local_pref(&back), Some(150), "{back}");
    assert!(
        !frr::communities(&back).iter().any(|c| is_gshut(c)),
        "{back}"
    );
    assert!(r1.bgpd_alive());
}

/// The iBGP prepends: on iBGP anypop puts only the configured prepends into
/// the AS_PATH (the 4-byte ASN, `prepend` times). The router's own AS is
/// then in the path, so FRR drops the route as a loop unless the neighbor
/// has `allowas-in`.
#[test]
fn bgp_frr_4byte_ibgp_prepends_only() {
    if !lab_available("bgp_frr_4byte_ibgp_prepends_only", PROGRAMS) {
        return;
    }
    let lab = lab_4byte();
    let conf = topology_file("frr-4byte/frr/r1/frr.conf").replace(
        "  neighbor 192.0.2.2 activate\n",
        "  neighbor 192.0.2.2 activate\n  neighbor 192.0.2.2 allowas-in\n",
    );
    assert!(conf.contains("allowas-in"));
    let r1 = Frr::start(&lab, "r1", &conf);
    let yaml = topology_file("frr-4byte/anypop/pop1.yaml").replace(
        "      local_pref: 150\n",
        "      local_pref: 150\n      prepend: 2\n",
    );
    assert!(yaml.contains("prepend: 2"));
    let _pop1 = PopNode::start(&lab, "pop1", &yaml);
    let p = r1
        .wait_path(V4, POP1_V4, WAIT, |_| true)
        .unwrap_or_else(|| panic!("no iBGP path from pop1: {:?}", r1.paths(V4)));
    assert_eq!(frr::as_path(&p), vec![IBGP_ASN, IBGP_ASN], "{p}");
    assert_eq!(local_pref(&p), Some(150), "{p}");
}
