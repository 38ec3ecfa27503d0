//! Malformed input: a test peer written here (raw TCP, hand-encoded
//! messages) completes the OPEN handshake with anypop and then sends a
//! truncated UPDATE, a bad marker, an unrecognized well-known attribute,
//! and attributes with wrong lengths.
//! anypop must answer per RFC 4271 / RFC 7606, keep running, reconnect to
//! the peer, and its session with a real FRR router must not notice.

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::time::Duration;

use anypop_integration::lab::anypop::{with_extra_peers, PopNode};
use anypop_integration::lab::frr::Frr;
use anypop_integration::lab::rawbgp::{self, RawPeer};
use anypop_integration::lab::{lab_available, topology_file, Lab, WAIT};
use anypop_integration::wait_until;

const RAW_AS: u32 = 64600;
const RAW_ADDR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 6);
const POP1_V4: &str = "192.0.2.2";
const V4: &str = "203.0.113.0/24";

/// Waits for anypop to connect to the raw peer's listener.
fn accept(listener: &TcpListener, timeout: Duration) -> TcpStream {
    listener.set_nonblocking(true).unwrap();
    let mut got = None;
    let ok = wait_until(timeout, || match listener.accept() {
        Ok((s, _)) => {
            got = Some(s);
            true
        }
        Err(_) => false,
    });
    assert!(
        ok,
        "anypop did not (re)connect to the raw peer within {timeout:?}"
    );
    let s = got.unwrap();
    s.set_nonblocking(false).unwrap();
    s
}

enum Expect {
    /// A NOTIFICATION with this (code, one of these subcodes).
    Notification(u8, &'static [u8]),
    /// RFC 7606 treat-as-withdraw: no NOTIFICATION, the session stays up.
    SessionStays,
}

#[test]
fn bgp_malformed_input_gets_rfc_answers_and_isolation() {
    if !lab_available(
        "bgp_malformed_input_gets_rfc_answers_and_isolation",
        &["/usr/lib/frr/bgpd", "vtysh"],
    ) {
        return;
    }
    // frr-anycast's r1 <-> pop1 link, plus a link from pop1 to the raw peer.
    let lab = Lab::new(&["r1", "pop1", "raw"]);
    lab.link("r1", "eth1", "pop1", "eth1");
    lab.addr("r1", "eth1", &["192.0.2.1/30", "2001:db8:0:1::1/64"]);
    lab.addr("pop1", "eth1", &["192.0.2.2/30", "2001:db8:0:1::2/64"]);
    lab.link("pop1", "eth2", "raw", "eth1");
    lab.addr("pop1", "eth2", &["198.51.100.5/30"]);
    lab.addr("raw", "eth1", &["198.51.100.6/30"]);

    let listener = lab
        .in_ns("raw", || TcpListener::bind((RAW_ADDR, 179)))
        .unwrap()
        .expect("bind the raw peer's port 179");
    let r1 = Frr::start(&lab, "r1", &topology_file("frr-anycast/frr/r1/frr.conf"));
    let yaml = with_extra_peers(
        &topology_file("frr-anycast/anypop/pop1.yaml"),
        &format!(
            "    - name: raw\n      address: {RAW_ADDR}\n      remote_asn: {RAW_AS}\n      \
             hold_time: 9s\n      connect_retry: 1s\n      families: [ipv4]\n"
        ),
    );
    let mut pop1 = PopNode::start(&lab, "pop1", &yaml);
    assert!(
        r1.wait_path(V4, POP1_V4, WAIT, |_| true).is_some(),
        "FRR session is the control"
    );
    let frr_session = r1.session_identity(POP1_V4).expect("established");

    let nh = Ipv4Addr::new(198, 51, 100, 6);
    let cases: Vec<(&str, Vec<u8>, Expect)> = vec![
        // RFC 4271 6.3: attribute length + 23 > message length.
        (
            "truncated UPDATE",
            rawbgp::truncated_update(),
            Expect::Notification(3, &[1]),
        ),
        // RFC 4271 6.1: marker not all ones.
        (
            "bad marker",
            rawbgp::bad_marker(),
            Expect::Notification(1, &[1]),
        ),
        // RFC 4271 6.3: an unrecognized well-known attribute (type 99,
        // optional bit clear); RFC 7606 does not change it.
        (
            "unrecognized well-known attribute",
            rawbgp::unrecognized_well_known(RAW_AS, nh, Ipv4Addr::new(198, 51, 100, 128), 25),
            Expect::Notification(3, &[2]),
        ),
        // RFC 7606 7.4: MED with a wrong length is treat-as-withdraw.
        (
            "MED with length 3",
            rawbgp::med_wrong_length(RAW_AS, nh, Ipv4Addr::new(198, 51, 100, 128), 25),
            Expect::SessionStays,
        ),
        // An attribute overrunning the attribute list while the NLRI field
        // can still be located: RFC 7606 4 treat-as-withdraw (a router
        // applying RFC 4271 alone would send 3/1 or 3/5 instead).
        (
            "NEXT_HOP overrunning the attribute list",
            rawbgp::attr_length_overrun(RAW_AS, nh),
            Expect::SessionStays,
        ),
    ];

    for (what, bytes, expect) in cases {
        let stream = accept(&listener, Duration::from_secs(90));
        let mut peer = RawPeer::new(stream);
        peer.handshake(RAW_AS, RAW_ADDR, WAIT)
            .unwrap_or_else(|e| panic!("{what}: handshake with anypop failed: {e}"));
        // A valid UPDATE first: received routes are counted, not a problem.
        peer.send(&rawbgp::update_v4(
            RAW_AS,
            nh,
            Ipv4Addr::new(198, 51, 100, 0),
            25,
        ))
        .unwrap();
        peer.send(&bytes).unwrap();
        match expect {
            Expect::Notification(code, subcodes) => {
                let n = peer
                    .wait_notification(Duration::from_secs(20))
                    .unwrap_or_else(|e| panic!("{what}: no NOTIFICATION: {e}"))
                    .unwrap_or_else(|| panic!("{what}: connection closed without NOTIFICATION"));
                let (c, s) = n.notification().unwrap_or((0, 0));
                assert!(
                    c == code && subcodes.contains(&s),
                    "{what}: NOTIFICATION {c}/{s}, expected {code}/{subcodes:?}"
                );
                // anypop closes the connection after the NOTIFICATION.
                assert!(
                    matches!(peer.recv(Duration::from_secs(10)), Ok(None) | Err(_)),
                    "{what}: connection still open after NOTIFICATION"
                );
            }
            Expect::SessionStays => {
                // Two keepalive intervals (hold 9 s -> keepalive 3 s) pass
                // with KEEPALIVEs and no NOTIFICATION.
                for _ in 0..2 {
                    let m = peer
                        .expect(rawbgp::KEEPALIVE, Duration::from_secs(10))
                        .unwrap_or_else(|e| panic!("{what}: session did not stay up: {e}"));
                    assert_eq!(m.kind, rawbgp::KEEPALIVE);
                    peer.send(&rawbgp::keepalive()).unwrap();
                }
                // End the session ourselves so the next case gets a fresh one.
                peer.send(&rawbgp::message(rawbgp::NOTIFICATION, &[6, 2]))
                    .unwrap();
            }
        }
        drop(peer);
        assert!(pop1.alive(), "{what}: anypop died:\n{}", pop1.proc.log());
        assert_eq!(
            r1.session_identity(POP1_V4),
            Some(frr_session),
            "{what}: the FRR session was disturbed"
        );
        assert!(
            r1.path_from(V4, POP1_V4).is_some(),
            "{what}: FRR lost the route"
        );
    }
    // anypop still talks to the raw peer after all that (retried with backoff).
    let mut peer = RawPeer::new(accept(&listener, Duration::from_secs(90)));
    peer.handshake(RAW_AS, RAW_ADDR, WAIT)
        .expect("a clean session after the malformed ones");
    // And it announces its PoP to the raw peer too (an UPDATE arrives).
    peer.expect(rawbgp::UPDATE, WAIT)
        .expect("UPDATE from anypop");
    let log = pop1.proc.log();
    assert!(!log.contains("panicked"), "anypop panicked:\n{log}");
}
