//! Golden wire fixtures: the bytes FRR 8.4.4, BIRD 2.0.12 and GoBGP 3.10
//! sent to anypop in the lab (`src/bgp/testdata/`, captured by
//! `integration/src/bin/capture_fixtures.rs`; the README there says how),
//! decoded the way a session decodes them — framing, our decoder, our
//! scanner, the FSM's OPEN negotiation — and, for the attributes, by
//! netgauze's full parser, so every field a router really sends is checked
//! without root or a router.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use bytes::BytesMut;
use ipnet::IpNet;
use netgauze_bgp_pkt::path_attribute::{AsPath, MpReach, MpUnreach, Origin, PathAttributeValue};
use netgauze_bgp_pkt::wire::deserializer::BgpParsingContext;
use netgauze_bgp_pkt::BgpMessage;
use netgauze_parse_utils::reader::SliceReader;
use netgauze_parse_utils::traits::ParseFromWithOneInput;
use tokio::time::Instant;

use super::{decode, take_frame, Family, Notification, PeerOpen, Received, UpdateSummary};
use crate::bgp::fsm::{Action, Event, Fsm, FsmConfig, Negotiated};

/// The bytes of `testdata/<router>/<kind>.hex` (hex, `#` comment lines).
macro_rules! fixture {
    ($router:literal, $kind:literal) => {
        hex(include_str!(concat!(
            "../testdata/",
            $router,
            "/",
            $kind,
            ".hex"
        )))
    };
}

fn hex(text: &str) -> Vec<u8> {
    let digits: String = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .flat_map(|l| l.split_whitespace())
        .collect();
    assert!(digits.len() % 2 == 0, "odd number of hex digits");
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).expect("hex digit"))
        .collect()
}

/// Frames and decodes one fixture exactly as the session's reader does: one
/// whole message, nothing left over.
fn received(bytes: &[u8]) -> Received {
    let mut buf = BytesMut::from(bytes);
    let frame = take_frame(&mut buf)
        .expect("header checks pass")
        .expect("one whole message");
    assert!(buf.is_empty(), "one message per fixture");
    decode(&frame).expect("decodes")
}

fn open(bytes: &[u8]) -> PeerOpen {
    match received(bytes) {
        Received::Open(o) => o,
        m => panic!("not an OPEN: {m:?}"),
    }
}

fn scanned(bytes: &[u8]) -> UpdateSummary {
    match received(bytes) {
        Received::Update(u) => {
            assert_eq!(u.malformed, None, "well-formed");
            u
        }
        m => panic!("not an UPDATE: {m:?}"),
    }
}

fn notification(bytes: &[u8]) -> Notification {
    match received(bytes) {
        Received::Notification(n) => n,
        m => panic!("not a NOTIFICATION: {m:?}"),
    }
}

/// An UPDATE decoded in full by netgauze (4-octet AS negotiated).
#[derive(Debug, Default, PartialEq)]
struct Full {
    announced: Vec<IpNet>,
    withdrawn: Vec<IpNet>,
    origin: Option<Origin>,
    as_path: Vec<u32>,
    next_hop: Option<IpAddr>,
    /// The link-local next hop of an IPv6 MP_REACH, if sent.
    next_hop_local: Option<Ipv6Addr>,
    med: Option<u32>,
    communities: Vec<u32>,
}

fn full(bytes: &[u8]) -> Full {
    let mut ctx = BgpParsingContext::default();
    let BgpMessage::Update(u) =
        BgpMessage::parse(&mut SliceReader::new(bytes), &mut ctx).expect("netgauze parses it")
    else {
        panic!("not an UPDATE")
    };
    let mut f = Full {
        announced: u
            .nlri()
            .iter()
            .map(|n| IpNet::V4(n.network().address()))
            .collect(),
        withdrawn: u
            .withdraw_routes()
            .iter()
            .map(|n| IpNet::V4(n.network().address()))
            .collect(),
        ..Full::default()
    };
    for pa in u.path_attributes() {
        match pa.value() {
            PathAttributeValue::Origin(o) => f.origin = Some(*o),
            PathAttributeValue::AsPath(AsPath::As4PathSegments(s)) => {
                f.as_path = s.iter().flat_map(|s| s.as_numbers()).copied().collect()
            }
            PathAttributeValue::NextHop(n) => f.next_hop = Some(IpAddr::V4(n.next_hop())),
            PathAttributeValue::MultiExitDiscriminator(m) => f.med = Some(m.metric()),
            PathAttributeValue::Communities(c) => {
                f.communities = c.communities().iter().map(|c| c.value()).collect()
            }
            PathAttributeValue::MpReach(MpReach::Ipv6Unicast {
                next_hop_global,
                next_hop_local,
                nlri,
            }) => {
                f.next_hop = Some(IpAddr::V6(*next_hop_global));
                f.next_hop_local = *next_hop_local;
                f.announced
                    .extend(nlri.iter().map(|n| IpNet::V6(n.network().address())));
            }
            PathAttributeValue::MpUnreach(MpUnreach::Ipv6Unicast { nlri }) => f
                .withdrawn
                .extend(nlri.iter().map(|n| IpNet::V6(n.network().address()))),
            v => panic!("unexpected attribute {v:?}"),
        }
    }
    f
}

const ROUTER_ID: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const NH4: IpAddr = IpAddr::V4(ROUTER_ID);
const NH6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 1));
const GSHUT: u32 = 0xffff_0000;

fn net(s: &str) -> IpNet {
    s.parse().expect("prefix")
}

/// Feeds `o` to anypop's FSM as the pop1 of the capture (AS 65001,
/// graceful restart 120 s, both families offered) and returns what it
/// negotiated.
fn negotiate(o: PeerOpen) -> Negotiated {
    let mut f = Fsm::new(FsmConfig {
        local_asn: 65001,
        remote_asn: 65000,
        router_id: Ipv4Addr::new(192, 0, 2, 2),
        hold_time: 9,
        min_hold_time: 3,
        connect_retry: Duration::from_secs(1),
        passive: false,
        families: vec![Family::Ipv4, Family::Ipv6],
        graceful_restart: Some(120),
        seed: 1,
    });
    let t = Instant::now();
    f.handle(Event::Start, t);
    f.handle(Event::TcpConnected, t);
    assert_eq!(
        f.handle(Event::Message(Received::Open(o)), t),
        vec![Action::SendKeepalive],
        "the router's OPEN is accepted"
    );
    f.negotiated().expect("negotiated").clone()
}

/// What every router's OPEN has in common here: AS 65000 in both fields,
/// hold time 9 s, identifier 192.0.2.1, route refresh, graceful restart
/// 120 s, the session's one family; and what anypop's FSM makes of it.
fn check_open(o: &PeerOpen, family: Family) -> Negotiated {
    assert_eq!(o.version, 4);
    assert_eq!((o.my_as, o.asn4), (65000, Some(65000)));
    assert_eq!(o.hold_time, 9);
    assert_eq!(o.bgp_id, ROUTER_ID);
    assert!(o.mp_sent && o.route_refresh);
    assert_eq!(o.families, vec![family]);
    let gr = o.graceful_restart.as_ref().expect("graceful restart");
    assert_eq!(gr.restart_time, 120);
    let n = negotiate(o.clone());
    assert_eq!(n.peer_asn, 65000);
    assert_eq!(n.hold_time, 9);
    assert_eq!(n.keepalive, Duration::from_secs(3));
    assert_eq!(n.families, vec![family]);
    assert!(n.asn4 && n.route_refresh && n.peer_graceful_restart);
    n
}

/// The announcements: 198.51.100.128/25 and 2001:db8:ff00::/40 plain,
/// 198.51.100.64/26 and 2001:db8:fe00::/40 with 65535:0; AS_PATH 65000;
/// the router's address of the session as next hop (IPv6 in MP_REACH).
fn check_updates(
    v4: &[u8],
    v4_gshut: &[u8],
    v6: &[u8],
    v6_gshut: &[u8],
    origin: Origin,
) -> [Full; 4] {
    let cases = [
        (v4, "198.51.100.128/25", NH4, false),
        (v4_gshut, "198.51.100.64/26", NH4, true),
        (v6, "2001:db8:ff00::/40", NH6, false),
        (v6_gshut, "2001:db8:fe00::/40", NH6, true),
    ];
    cases.map(|(bytes, prefix, nh, gshut)| {
        let s = scanned(bytes);
        assert_eq!((s.announced, s.withdrawn, s.end_of_rib), (1, 0, None));
        let f = full(bytes);
        assert_eq!(f.announced, vec![net(prefix)], "{prefix}");
        assert!(f.withdrawn.is_empty());
        assert_eq!(f.origin, Some(origin), "{prefix}");
        assert_eq!(f.as_path, vec![65000], "{prefix}");
        assert_eq!(f.next_hop, Some(nh), "{prefix}");
        assert_eq!(f.communities.contains(&GSHUT), gshut, "{prefix}");
        f
    })
}

fn check_withdrawals(v4: &[u8], v6: &[u8]) {
    for (bytes, prefix) in [(v4, "198.51.100.128/25"), (v6, "2001:db8:ff00::/40")] {
        let s = scanned(bytes);
        assert_eq!((s.announced, s.withdrawn, s.end_of_rib), (0, 1, None));
        let f = full(bytes);
        assert_eq!(f.withdrawn, vec![net(prefix)]);
        assert!(f.announced.is_empty() && f.as_path.is_empty());
    }
}

fn check_end_of_rib_and_keepalives(eor4: &[u8], eor6: &[u8], ka4: &[u8], ka6: &[u8]) {
    assert_eq!(scanned(eor4).end_of_rib, Some(Family::Ipv4));
    assert_eq!(eor4.len(), 23, "IPv4 End-of-RIB is an empty UPDATE");
    assert_eq!(scanned(eor6).end_of_rib, Some(Family::Ipv6));
    for ka in [ka4, ka6] {
        assert_eq!(received(ka), Received::Keepalive);
    }
}

/// The shutdown communication the routers were told to send.
const MESSAGE: &str = "fixture capture";

#[test]
fn frr_8_4() {
    for (bytes, family) in [
        (fixture!("frr", "open-v4"), Family::Ipv4),
        (fixture!("frr", "open-v6"), Family::Ipv6),
    ] {
        let o = open(&bytes);
        let n = check_open(&o, family);
        // FRR starts with the restart-state bit, sets the N bit, and is a
        // helper only (no forwarding state per family).
        let gr = o.graceful_restart.unwrap();
        assert!(gr.restarted && gr.notification && gr.families.is_empty());
        assert!(n.graceful_notification, "RFC 8538 negotiated with FRR");
    }
    let [v4, _, v6, _] = check_updates(
        &fixture!("frr", "update-v4"),
        &fixture!("frr", "update-v4-gshut"),
        &fixture!("frr", "update-v6"),
        &fixture!("frr", "update-v6-gshut"),
        Origin::IGP,
    );
    // FRR sends MED 0 for `network` routes and the link-local next hop too.
    assert_eq!(v4.med, Some(0));
    assert!(v6.next_hop_local.is_some_and(|a| a.is_unicast_link_local()));
    check_withdrawals(
        &fixture!("frr", "withdraw-v4"),
        &fixture!("frr", "withdraw-v6"),
    );
    check_end_of_rib_and_keepalives(
        &fixture!("frr", "eor-v4"),
        &fixture!("frr", "eor-v6"),
        &fixture!("frr", "keepalive-v4"),
        &fixture!("frr", "keepalive-v6"),
    );
    // With the N bit negotiated, FRR's `neighbor shutdown message` is a
    // Hard Reset carrying the Cease / Administrative Shutdown.
    let n = notification(&fixture!("frr", "notification-v4"));
    assert_eq!((n.code, n.subcode), (6, 9));
    let inner = n.hard_reset_inner().expect("inner NOTIFICATION");
    assert_eq!((inner.code, inner.subcode), (6, 2));
    assert_eq!(n.shutdown_message().as_deref(), Some(MESSAGE));
}

#[test]
fn bird_2_0() {
    for (bytes, family) in [
        (fixture!("bird", "open-v4"), Family::Ipv4),
        (fixture!("bird", "open-v6"), Family::Ipv6),
    ] {
        let o = open(&bytes);
        let n = check_open(&o, family);
        // `graceful restart aware`: a helper without the N bit.
        let gr = o.graceful_restart.unwrap();
        assert!(!gr.restarted && !gr.notification && gr.families.is_empty());
        assert!(!n.graceful_notification);
    }
    let [v4, _, v6, _] = check_updates(
        &fixture!("bird", "update-v4"),
        &fixture!("bird", "update-v4-gshut"),
        &fixture!("bird", "update-v6"),
        &fixture!("bird", "update-v6-gshut"),
        Origin::IGP,
    );
    assert_eq!(v4.med, None);
    assert!(v6.next_hop_local.is_some_and(|a| a.is_unicast_link_local()));
    check_withdrawals(
        &fixture!("bird", "withdraw-v4"),
        &fixture!("bird", "withdraw-v6"),
    );
    check_end_of_rib_and_keepalives(
        &fixture!("bird", "eor-v4"),
        &fixture!("bird", "eor-v6"),
        &fixture!("bird", "keepalive-v4"),
        &fixture!("bird", "keepalive-v6"),
    );
    let n = notification(&fixture!("bird", "notification-v4"));
    assert_eq!((n.code, n.subcode), (6, 2));
    assert_eq!(n.shutdown_message().as_deref(), Some(MESSAGE));
}

#[test]
fn gobgp_3_10() {
    for (bytes, family) in [
        (fixture!("gobgp", "open-v4"), Family::Ipv4),
        (fixture!("gobgp", "open-v6"), Family::Ipv6),
    ] {
        let o = open(&bytes);
        let n = check_open(&o, family);
        // Graceful restart with the N bit, per family without forwarding
        // state.
        let gr = o.graceful_restart.unwrap();
        assert!(!gr.restarted && gr.notification);
        assert_eq!(gr.families, vec![(family, false)]);
        assert!(n.graceful_notification);
    }
    // `gobgp global rib add` originates with ORIGIN INCOMPLETE.
    let [v4, _, v6, _] = check_updates(
        &fixture!("gobgp", "update-v4"),
        &fixture!("gobgp", "update-v4-gshut"),
        &fixture!("gobgp", "update-v6"),
        &fixture!("gobgp", "update-v6-gshut"),
        Origin::Incomplete,
    );
    assert_eq!(v4.med, None);
    assert_eq!(
        v6.next_hop_local, None,
        "GoBGP sends the global next hop only"
    );
    check_withdrawals(
        &fixture!("gobgp", "withdraw-v4"),
        &fixture!("gobgp", "withdraw-v6"),
    );
    check_end_of_rib_and_keepalives(
        &fixture!("gobgp", "eor-v4"),
        &fixture!("gobgp", "eor-v6"),
        &fixture!("gobgp", "keepalive-v4"),
        &fixture!("gobgp", "keepalive-v6"),
    );
    let n = notification(&fixture!("gobgp", "notification-v4"));
    assert_eq!((n.code, n.subcode), (6, 2));
    assert_eq!(n.shutdown_message().as_deref(), Some(MESSAGE));
}

/// Every fixture also survives being cut anywhere: the framer asks for
/// more bytes instead of failing or decoding a partial message.
#[test]
fn fixtures_split_anywhere_frame_the_same() {
    let all = [
        fixture!("frr", "open-v4"),
        fixture!("frr", "update-v6-gshut"),
        fixture!("bird", "update-v6"),
        fixture!("gobgp", "open-v4"),
        fixture!("gobgp", "withdraw-v6"),
    ];
    for bytes in all {
        for cut in 1..bytes.len() {
            let mut buf = BytesMut::from(&bytes[..cut]);
            assert_eq!(take_frame(&mut buf), Ok(None), "cut at {cut}");
            buf.extend_from_slice(&bytes[cut..]);
            let frame = take_frame(&mut buf).unwrap().unwrap();
            assert_eq!(&frame[..], &bytes[..]);
        }
    }
}

/// The capture's anypop config stays valid, so the fixtures can be
/// captured again.
#[test]
fn capture_config_is_valid() {
    let c = crate::config::parse(include_str!("../testdata/anypop.yaml"))
        .unwrap_or_else(|e| panic!("src/bgp/testdata/anypop.yaml: {e}"));
    assert_eq!(c.bgp.peers.len(), 2);
    assert_eq!(c.bgp.graceful_restart, Some(Duration::from_secs(120)));
}
