//! Scripted and random inputs for the peer driver: sessions, collisions,
//! per-family filtering, End-of-RIB hold, stop and shutdown choreography.

use std::net::{IpAddr, Ipv4Addr};

use bytes::BytesMut;
use proptest::prelude::*;

use super::super::codec::{decode, take_frame, UpdateSummary};
use super::*;
use crate::core::AnnounceMode;
use crate::model::{Name, RouteAttrs};

const RID: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const LOCAL4: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
const C0: ConnId = ConnId(0);
const C1: ConnId = ConnId(1);
const C2: ConnId = ConnId(2);

fn cfg(gr: Option<u16>) -> PeerConfig {
    PeerConfig {
        fsm: FsmConfig {
            local_asn: 65001,
            remote_asn: 65000,
            router_id: RID,
            hold_time: 9,
            min_hold_time: 3,
            connect_retry: Duration::from_secs(1),
            passive: false,
            families: vec![Family::Ipv4, Family::Ipv6],
            graceful_restart: gr,
            seed: 7,
        },
        next_hop_v4: None,
        next_hop_v6: None,
    }
}

fn routes(version: u64, prefixes: &[&str], known: bool) -> Routes {
    let attrs = RouteAttrs {
        prepend: 1,
        med: Some(10),
        ..Default::default()
    };
    Routes {
        version,
        announcements: Arc::new(
            prefixes
                .iter()
                .map(|p| {
                    (
                        p.parse().unwrap(),
                        Announcement {
                            pop: Name::parse("pop1").unwrap(),
                            mode: AnnounceMode::Normal,
                            attrs: attrs.clone(),
                        },
                    )
                })
                .collect(),
        ),
        local_health_known: known,
    }
}

fn open(id: Ipv4Addr, n_bit: bool) -> Received {
    Received::Open(crate::testutil::peer_open(
        id,
        9,
        &[Family::Ipv4, Family::Ipv6],
        n_bit,
    ))
}

const PEER_ID: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

/// Counted contents of the UPDATE bytes sent in `outs`.
#[derive(Debug, Default, PartialEq)]
struct Sent {
    announced: u32,
    withdrawn: u32,
    end_of_rib: Vec<Family>,
    messages: usize,
}

fn updates(outs: &[Output]) -> Sent {
    let mut s = Sent::default();
    for o in outs {
        if let Output::Send(_, Message::Updates { bytes, count }) = o {
            let mut buf = BytesMut::from(&bytes[..]);
            let mut n = 0;
            while let Some(f) = take_frame(&mut buf).unwrap() {
                let Received::Update(u) = decode(&f).unwrap() else {
                    panic!("not an UPDATE")
                };
                s.announced += u.announced;
                s.withdrawn += u.withdrawn;
                s.end_of_rib.extend(u.end_of_rib);
                n += 1;
            }
            assert_eq!(n, *count, "count matches the encoded messages");
            s.messages += n;
        }
    }
    s
}

fn notifications(outs: &[Output]) -> Vec<(ConnId, Notification)> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Send(c, Message::Notification(n)) => Some((*c, n.clone())),
            _ => None,
        })
        .collect()
}

fn sent_on(outs: &[Output], conn: ConnId) -> Vec<&Message> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Send(c, m) if *c == conn => Some(m),
            _ => None,
        })
        .collect()
}

fn reports(outs: &[Output]) -> Vec<&Report> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Report(r) => Some(r),
            _ => None,
        })
        .collect()
}

/// The peer's connection `c` was accepted (local address LOCAL4).
fn accept(conn: ConnId) -> Input {
    Input::Accepted {
        conn,
        local: LOCAL4,
    }
}

/// Our dial succeeded with connection `c`.
fn dial_ok(conn: ConnId) -> Input {
    Input::Dialed {
        conn,
        local: LOCAL4,
    }
}

/// SIGTERM in `mode`, lingering 4 s at most.
fn shutdown(mode: ShutdownMode, t: Instant) -> Input {
    Input::Shutdown {
        mode,
        message: "bye".into(),
        deadline: t + Duration::from_secs(4),
    }
}

/// A started peer with no routes that dialed C0: in OpenSent.
fn open_sent(c: PeerConfig, t: Instant) -> Peer {
    let mut p = Peer::new(c);
    p.handle(Input::Routes(routes(1, &[], true)), t);
    dialed(&mut p, t);
    p
}

/// A started peer that dialed and got connection C0 up to OpenSent.
fn dialed(p: &mut Peer, t: Instant) {
    assert_eq!(p.handle(Input::Start, t), vec![Output::Dial]);
    let o = p.handle(dial_ok(C0), t);
    assert!(matches!(
        &o[..],
        [
            Output::Report(Report::Connected(Origin::Outgoing)),
            Output::Send(C0, Message::Open(_))
        ]
    ));
}

/// An established session on C0 with `prefixes` known healthy; returns
/// the outputs of the KEEPALIVE that established it.
fn established(p: &mut Peer, prefixes: &[&str], n_bit: bool, t: Instant) -> Vec<Output> {
    p.handle(Input::Routes(routes(1, prefixes, true)), t);
    dialed(p, t);
    let o = p.handle(Input::Message(C0, open(PEER_ID, n_bit)), t);
    assert_eq!(o, vec![Output::Send(C0, Message::Keepalive)]);
    let o = p.handle(Input::Message(C0, Received::Keepalive), t);
    assert_eq!(p.state(), State::Established);
    o
}

#[test]
fn session_up_sends_routes_then_end_of_rib() {
    let t = Instant::now();
    let mut p = Peer::new(cfg(Some(120)));
    let o = established(&mut p, &["203.0.113.0/24", "2001:db8:1::/48"], true, t);
    let r = reports(&o);
    assert!(
        matches!(r[0], Report::Established { announced, without_next_hop, .. }
        if announced == &vec![Family::Ipv4] && without_next_hop == &vec![Family::Ipv6])
    );
    // IPv6 has no next hop on an IPv4 session: only the IPv4 route goes
    // out; End-of-RIB for both negotiated families.
    assert_eq!(
        updates(&o),
        Sent {
            announced: 1,
            withdrawn: 0,
            end_of_rib: vec![Family::Ipv4, Family::Ipv6],
            messages: 3
        }
    );
    assert!(r.contains(&&Report::EndOfRib { prefixes: 1 }));
    assert_eq!(p.prefixes_advertised(), 1);
    // A change: only the difference.
    let o = p.handle(Input::Routes(routes(2, &["198.51.100.0/24"], true)), t);
    assert_eq!(
        updates(&o),
        Sent {
            announced: 1,
            withdrawn: 1,
            end_of_rib: vec![],
            messages: 2
        }
    );
    // The same announcements again (a snapshot that changed only PoP
    // status shares them): nothing.
    let same = Routes {
        version: 3,
        ..routes(2, &[], true)
    };
    let mut again = same.clone();
    p.handle(Input::Routes(same), t);
    again.version = 4;
    assert_eq!(p.handle(Input::Routes(again), t), vec![]);
}

#[test]
fn explicit_next_hop_announces_ipv6_over_ipv4() {
    let t = Instant::now();
    let mut c = cfg(None);
    c.next_hop_v6 = Some("2001:db8::2".parse().unwrap());
    let mut p = Peer::new(c);
    let o = established(&mut p, &["203.0.113.0/24", "2001:db8:1::/48"], false, t);
    assert_eq!(updates(&o).announced, 2);
}

#[test]
fn next_hops_are_explicit_or_the_local_address_of_the_same_family() {
    let v4: IpAddr = "192.0.2.2".parse().unwrap();
    let v6: IpAddr = "2001:db8::2".parse().unwrap();
    assert_eq!(
        next_hops(None, None, v4),
        (Some(Ipv4Addr::new(192, 0, 2, 2)), None)
    );
    assert_eq!(
        next_hops(None, None, v6),
        (None, Some("2001:db8::2".parse().unwrap()))
    );
    assert_eq!(
        next_hops(None, None, "::".parse().unwrap()),
        (None, None),
        "an unspecified address is no next hop"
    );
    let nh4 = Ipv4Addr::new(198, 51, 100, 1);
    let nh6: Ipv6Addr = "2001:db8::9".parse().unwrap();
    assert_eq!(next_hops(Some(nh4), Some(nh6), v4), (Some(nh4), Some(nh6)));
}

#[test]
fn end_of_rib_waits_for_local_health_or_the_restart_time() {
    let t = Instant::now();
    let mut p = Peer::new(cfg(Some(120)));
    p.handle(Input::Routes(routes(1, &[], false)), t);
    dialed(&mut p, t);
    p.handle(Input::Message(C0, open(PEER_ID, true)), t);
    let o = p.handle(Input::Message(C0, Received::Keepalive), t);
    assert_eq!(
        updates(&o),
        Sent::default(),
        "nothing while health is unknown"
    );
    assert_eq!(
        p.next_deadline().map(|d| d - t),
        Some(Duration::from_secs(3)),
        "the keepalive comes first"
    );
    // Health known: routes, then End-of-RIB.
    let o = p.handle(Input::Routes(routes(2, &["203.0.113.0/24"], true)), t);
    let s = updates(&o);
    assert_eq!((s.announced, s.end_of_rib.len()), (1, 2));
    // Never twice.
    let o = p.handle(Input::Routes(routes(3, &["203.0.113.0/24"], true)), t);
    assert!(updates(&o).end_of_rib.is_empty());

    // Health never known: End-of-RIB at the restart time.
    let mut p = Peer::new(cfg(Some(120)));
    p.handle(Input::Routes(routes(1, &["203.0.113.0/24"], false)), t);
    dialed(&mut p, t);
    p.handle(Input::Message(C0, open(PEER_ID, true)), t);
    let o = p.handle(Input::Message(C0, Received::Keepalive), t);
    assert_eq!(updates(&o).announced, 1, "routes go out at once");
    let mut now = t;
    let mut eor = Vec::new();
    while eor.is_empty() {
        now = p.next_deadline().unwrap();
        assert!(now <= t + Duration::from_secs(120));
        // Keep the session alive.
        p.handle(Input::Message(C0, Received::Keepalive), now);
        eor = updates(&p.handle(Input::Tick, now)).end_of_rib;
    }
    assert_eq!(now, t + Duration::from_secs(120));
}

#[test]
fn route_refresh_resends_the_family_and_malformed_updates_are_reported() {
    let t = Instant::now();
    let mut p = Peer::new(cfg(None));
    established(&mut p, &["203.0.113.0/24", "198.51.100.0/24"], false, t);
    let o = p.handle(
        Input::Message(
            C0,
            Received::RouteRefresh {
                afi: 1,
                safi: 1,
                subtype: 0,
            },
        ),
        t,
    );
    assert_eq!(updates(&o).announced, 2);
    let o = p.handle(
        Input::Message(
            C0,
            Received::Update(UpdateSummary {
                announced: 3,
                malformed: Some("ORIGIN length 2".into()),
                ..Default::default()
            }),
        ),
        t,
    );
    assert_eq!(
        reports(&o),
        vec![
            &Report::TreatAsWithdraw("ORIGIN length 2".into()),
            &Report::UpdateReceived {
                announced: 3,
                withdrawn: 0
            }
        ]
    );
}

#[test]
fn a_failed_connection_goes_down_and_redials() {
    let t = Instant::now();
    let mut p = Peer::new(cfg(None));
    established(&mut p, &["203.0.113.0/24"], false, t);
    let o = p.handle(Input::Closed(C0), t);
    assert!(o.contains(&Output::Close(C0)));
    assert!(reports(&o).iter().any(
        |r| matches!(r, Report::Down { was_established: true, reason } if reason.contains("closed"))
    ));
    assert_eq!(p.prefixes_advertised(), 0);
    let d = p.next_deadline().unwrap();
    assert_eq!(p.handle(Input::Tick, d), vec![Output::Dial]);
    // The next session sends everything again.
    let o = p.handle(dial_ok(C1), d);
    assert!(matches!(&o[..], [_, Output::Send(C1, Message::Open(o))] if !o.restarted));
    p.handle(Input::Message(C1, open(PEER_ID, false)), d);
    let o = p.handle(Input::Message(C1, Received::Keepalive), d);
    assert_eq!(updates(&o).announced, 1);
    // Events of the old connection are stale: ignored.
    assert_eq!(p.handle(Input::Message(C0, Received::Keepalive), d), vec![]);
    assert_eq!(p.handle(Input::Closed(C0), d), vec![]);
    assert_eq!(p.state(), State::Established);
}

#[test]
fn bfd_failure_drops_the_session_and_holds_it_until_bfd_is_up() {
    let t = Instant::now();
    let mut p = Peer::new(cfg(Some(120)));
    established(&mut p, &["203.0.113.0/24"], true, t);
    let bfd = |failures, holds_down| Input::Bfd {
        failures,
        holds_down,
    };
    // BFD status without a failure (e.g. it came Up): nothing happens.
    assert_eq!(p.handle(bfd(0, false), t), vec![]);
    let o = p.handle(bfd(1, true), t);
    let cease = Notification::new(err::CEASE, err::CEASE_BFD_DOWN, []);
    assert_eq!(
        notifications(&o),
        vec![(C0, Notification::hard_reset(&cease))],
        "N bit: the router must flush, not keep stale"
    );
    assert!(o.contains(&Output::Close(C0)));
    assert!(reports(&o).iter().any(
        |r| matches!(r, Report::Down { was_established: true, reason } if reason == "BFD down")
    ));
    assert_eq!(p.prefixes_advertised(), 0);
    // Held: no dial, the router's connection is refused with the reason.
    assert_eq!(p.next_deadline(), None);
    let o = p.handle(accept(C1), t);
    assert_eq!(notifications(&o), vec![(C1, cease.clone())]);
    assert!(o.contains(&Output::Close(C1)));
    // The same status again changes nothing; BFD Up: dial at once.
    assert_eq!(p.handle(bfd(1, true), t), vec![]);
    assert_eq!(p.handle(bfd(1, false), t), vec![Output::Dial]);
    // A failure already healed when seen still resets the session once.
    let o = p.handle(dial_ok(C2), t);
    assert!(matches!(&o[..], [_, Output::Send(C2, Message::Open(_))]));
    p.handle(Input::Message(C2, open(PEER_ID, false)), t);
    p.handle(Input::Message(C2, Received::Keepalive), t);
    assert_eq!(p.state(), State::Established);
    let o = p.handle(bfd(2, false), t);
    assert_eq!(
        notifications(&o),
        vec![(C2, cease)],
        "no N bit: plain Cease"
    );
    assert!(o.contains(&Output::Close(C2)) && o.contains(&Output::Dial));
}

#[test]
fn malformed_input_is_answered_and_the_connection_closed() {
    let t = Instant::now();
    let mut p = Peer::new(cfg(None));
    established(&mut p, &[], false, t);
    let n = Notification::new(err::HEADER, err::CONNECTION_NOT_SYNCHRONIZED, []);
    let o = p.handle(Input::Malformed(C0, n.clone()), t);
    assert_eq!(notifications(&o), vec![(C0, n)]);
    assert!(o.contains(&Output::Close(C0)));
    assert_eq!(p.state(), State::Idle);
}

// ---------------------------------------------------------------- collisions

#[test]
fn accepted_while_dialing_is_adopted_and_the_dial_abandoned() {
    let t = Instant::now();
    let mut p = Peer::new(cfg(None));
    p.handle(Input::Routes(routes(1, &[], true)), t);
    assert_eq!(p.handle(Input::Start, t), vec![Output::Dial]);
    let o = p.handle(accept(C0), t);
    assert_eq!(o[0], Output::AbortDial { timed_out: false });
    assert!(matches!(o.last(), Some(Output::Send(C0, Message::Open(_)))));
    // The dial completed anyway: not used.
    let o = p.handle(dial_ok(C1), t);
    assert_eq!(o, vec![Output::Close(C1)]);
    assert_eq!(p.state(), State::OpenSent);
}

#[test]
fn accepted_while_established_is_rejected() {
    let t = Instant::now();
    let mut p = Peer::new(cfg(None));
    established(&mut p, &[], false, t);
    let o = p.handle(accept(C1), t);
    assert_eq!(
        notifications(&o),
        vec![(C1, Notification::new(6, 7, []))],
        "Cease / connection collision resolution on the new one"
    );
    assert!(o.contains(&Output::Close(C1)));
    assert!(sent_on(&o, C0).is_empty());
    assert_eq!(p.state(), State::Established);
}

#[test]
fn held_connection_wins_with_the_higher_identifier() {
    let t = Instant::now();
    let mut p = Peer::new(cfg(None));
    p.handle(Input::Routes(routes(1, &["203.0.113.0/24"], true)), t);
    dialed(&mut p, t);
    // The peer dials too while our OPEN is out: held.
    let o = p.handle(accept(C1), t);
    assert!(sent_on(&o, C1).is_empty() && !o.contains(&Output::Close(C1)));
    // Its OPEN carries a higher identifier than ours: its connection wins.
    let higher = Ipv4Addr::new(192, 0, 2, 200);
    let o = p.handle(Input::Message(C1, open(higher, false)), t);
    assert_eq!(notifications(&o), vec![(C0, Notification::new(6, 7, []))]);
    assert!(o.contains(&Output::Close(C0)));
    let on_new = sent_on(&o, C1);
    assert!(
        matches!(&on_new[..], [Message::Open(_), Message::Keepalive]),
        "{on_new:?}"
    );
    assert_eq!(p.state(), State::OpenConfirm);
    let o = p.handle(Input::Message(C1, Received::Keepalive), t);
    assert_eq!(updates(&o).announced, 1);
    // Our old connection's leftovers are ignored.
    assert_eq!(p.handle(Input::Closed(C0), t), vec![]);
}

#[test]
fn held_connection_loses_with_the_lower_identifier() {
    let t = Instant::now();
    let mut p = open_sent(cfg(None), t);
    p.handle(accept(C1), t);
    // A second accepted connection replaces the held one.
    let o = p.handle(accept(C2), t);
    assert_eq!(notifications(&o), vec![(C1, Notification::new(6, 7, []))]);
    let lower = Ipv4Addr::new(192, 0, 2, 1);
    let o = p.handle(Input::Message(C2, open(lower, false)), t);
    assert_eq!(notifications(&o), vec![(C2, Notification::new(6, 7, []))]);
    assert!(o.contains(&Output::Close(C2)));
    assert_eq!(p.state(), State::OpenSent, "ours goes on");
    // Established on ours.
    p.handle(Input::Message(C0, open(lower, false)), t);
    p.handle(Input::Message(C0, Received::Keepalive), t);
    assert_eq!(p.state(), State::Established);
}

#[test]
fn held_connection_is_rejected_once_ours_is_established() {
    let t = Instant::now();
    let mut p = open_sent(cfg(None), t);
    p.handle(Input::Message(C0, open(PEER_ID, false)), t);
    assert_eq!(p.state(), State::OpenConfirm);
    // OpenConfirm, we dialed, our identifier is higher: reject at once.
    let o = p.handle(accept(C1), t);
    assert_eq!(notifications(&o), vec![(C1, Notification::new(6, 7, []))]);
    // OpenSent: held, then rejected when ours comes up.
    let mut p = open_sent(cfg(None), t);
    p.handle(accept(C1), t);
    p.handle(Input::Message(C0, open(PEER_ID, false)), t);
    let o = p.handle(Input::Message(C0, Received::Keepalive), t);
    assert_eq!(notifications(&o), vec![(C1, Notification::new(6, 7, []))]);
    assert!(o.contains(&Output::Close(C1)));
}

#[test]
fn held_connection_that_sends_no_open_is_dropped() {
    let t = Instant::now();
    let mut p = open_sent(cfg(None), t);
    p.handle(accept(C1), t);
    assert_eq!(
        p.handle(Input::Message(C1, Received::Keepalive), t),
        vec![Output::Close(C1)]
    );
    assert_eq!(p.state(), State::OpenSent);
}

// ---------------------------------------------------------- stop, shutdown

/// Drives the lingering end: the peer closes, the driver closes and is done.
fn peer_closes(p: &mut Peer, conn: ConnId, t: Instant) {
    assert!(!p.is_done(), "done before the peer closed");
    // While lingering, what the peer still sends is drained.
    assert_eq!(
        p.handle(Input::Message(conn, Received::Keepalive), t),
        vec![]
    );
    let o = p.handle(Input::Closed(conn), t);
    assert_eq!(o, vec![Output::Close(conn), Output::Done]);
    assert!(p.is_done());
    assert_eq!(p.next_deadline(), None);
    assert_eq!(p.handle(Input::Tick, t + Duration::from_secs(999)), vec![]);
}

#[test]
fn withdrawing_shutdown_with_n_bit_sends_a_hard_reset_and_lingers() {
    let t = Instant::now();
    let mut p = Peer::new(cfg(Some(120)));
    established(&mut p, &["203.0.113.0/24", "198.51.100.0/24"], true, t);
    let o = p.handle(shutdown(ShutdownMode::Withdraw, t), t);
    assert_eq!(updates(&o).withdrawn, 2);
    let n = notifications(&o);
    assert_eq!(n.len(), 1);
    // RFC 8538: Cease / Hard Reset around the Cease / Administrative
    // Shutdown with its RFC 8203 text, so the router keeps nothing stale.
    assert_eq!((n[0].1.code, n[0].1.subcode), (6, 9));
    let inner = n[0].1.hard_reset_inner().unwrap();
    assert_eq!((inner.code, inner.subcode), (6, 2));
    assert_eq!(inner.shutdown_message().as_deref(), Some("bye"));
    // Withdrawals, then the NOTIFICATION; no FIN (half-close) and no
    // close until the peer closes: it must process both first.
    let pos = |f: &dyn Fn(&Output) -> bool| o.iter().position(f).unwrap();
    let w = pos(&|x| matches!(x, Output::Send(_, Message::Updates { .. })));
    let nn = pos(&|x| matches!(x, Output::Send(_, Message::Notification(_))));
    assert!(w < nn, "{o:?}");
    assert!(!o.contains(&Output::HalfClose(C0)), "{o:?}");
    assert!(!o.contains(&Output::Close(C0)) && !o.contains(&Output::Done));
    assert_eq!(p.next_deadline(), Some(t + Duration::from_secs(4)));
    peer_closes(&mut p, C0, t);
}

#[test]
fn withdrawing_shutdown_without_n_bit_sends_the_plain_cease() {
    for (gr, n_bit) in [(Some(120), false), (None, true)] {
        // The peer set no N bit, or we advertise no graceful restart.
        let t = Instant::now();
        let mut p = Peer::new(cfg(gr));
        established(&mut p, &["203.0.113.0/24"], n_bit, t);
        let o = p.handle(shutdown(ShutdownMode::Withdraw, t), t);
        assert_eq!(updates(&o).withdrawn, 1);
        let n = notifications(&o);
        assert_eq!((n[0].1.code, n[0].1.subcode), (6, 2));
        assert_eq!(n[0].1.shutdown_message().as_deref(), Some("bye"));
        peer_closes(&mut p, C0, t);
    }
}

#[test]
fn graceful_restart_shutdown_keeps_routes() {
    let t = Instant::now();
    for n_bit in [true, false] {
        let mut p = Peer::new(cfg(Some(120)));
        established(&mut p, &["203.0.113.0/24"], n_bit, t);
        let o = p.handle(shutdown(ShutdownMode::GracefulRestart, t), t);
        assert_eq!(updates(&o), Sent::default(), "nothing withdrawn");
        let n = notifications(&o);
        if n_bit {
            assert_eq!(
                n.iter()
                    .map(|(_, n)| (n.code, n.subcode))
                    .collect::<Vec<_>>(),
                vec![(6, 2)],
                "plain Cease keeps routes stale"
            );
            assert!(!o.contains(&Output::HalfClose(C0)), "{o:?}");
        } else {
            // The close is the message: FIN at once.
            assert!(n.is_empty(), "bare close: {n:?}");
            assert!(o.contains(&Output::HalfClose(C0)));
        }
        peer_closes(&mut p, C0, t);
    }
}

#[test]
fn lingering_ends_at_the_deadline() {
    let t = Instant::now();
    let mut p = Peer::new(cfg(None));
    established(&mut p, &[], false, t);
    let deadline = t + Duration::from_secs(4);
    p.handle(
        Input::Shutdown {
            mode: ShutdownMode::Withdraw,
            message: "bye".into(),
            deadline,
        },
        t,
    );
    assert_eq!(
        p.handle(Input::Tick, deadline - Duration::from_millis(1)),
        vec![]
    );
    assert_eq!(
        p.handle(Input::Tick, deadline),
        vec![Output::Close(C0), Output::Done]
    );
}

#[test]
fn lingering_counts_from_when_the_last_message_was_written() {
    let t = Instant::now();
    let mut p = Peer::new(cfg(Some(120)));
    established(&mut p, &["203.0.113.0/24"], true, t);
    p.handle(shutdown(ShutdownMode::Withdraw, t), t);
    // Writing the withdrawals took 3 s: the peer still gets the full
    // linger after that, past the shutdown's first deadline.
    let written = t + Duration::from_secs(3);
    let linger_until = written + Duration::from_secs(4);
    assert_eq!(p.handle(Input::Written { linger_until }, written), vec![]);
    assert_eq!(p.next_deadline(), Some(linger_until));
    assert_eq!(p.handle(Input::Tick, t + Duration::from_secs(4)), vec![]);
    assert!(!p.is_done());
    assert_eq!(
        p.handle(Input::Tick, linger_until),
        vec![Output::Close(C0), Output::Done]
    );
    // Outside a stop it changes nothing.
    let mut p = Peer::new(cfg(None));
    established(&mut p, &[], false, t);
    p.handle(Input::Written { linger_until }, t);
    let o = p.handle(Input::Tick, linger_until);
    assert!(!o.contains(&Output::Close(C0)) && !o.contains(&Output::Done));
    assert!(!p.is_done());
}

#[test]
fn stop_of_a_removed_peer_hard_resets_where_n_bit() {
    let t = Instant::now();
    let deconfigured = Notification::new(err::CEASE, err::CEASE_PEER_DECONFIGURED, []);
    for (n_bit, want) in [
        (true, Notification::new(6, 9, [6, 3])),
        (false, deconfigured.clone()),
    ] {
        let mut p = Peer::new(cfg(Some(120)));
        established(&mut p, &["203.0.113.0/24"], n_bit, t);
        let o = p.handle(
            Input::Stop {
                notification: deconfigured.clone(),
                deadline: t + Duration::from_secs(4),
            },
            t,
        );
        assert_eq!(notifications(&o), vec![(C0, want)]);
        assert_eq!(updates(&o), Sent::default());
        assert!(!o.contains(&Output::HalfClose(C0)));
        peer_closes(&mut p, C0, t);
    }
    // A changed peer comes back at once: the plain Cease, the router may
    // keep our routes stale meanwhile.
    let mut p = Peer::new(cfg(Some(120)));
    established(&mut p, &[], true, t);
    let changed = Notification::new(err::CEASE, err::CEASE_OTHER_CONFIG_CHANGE, []);
    let o = p.handle(
        Input::Stop {
            notification: changed.clone(),
            deadline: t + Duration::from_secs(4),
        },
        t,
    );
    assert_eq!(notifications(&o), vec![(C0, changed)]);
}

#[test]
fn stop_without_a_session_abandons_the_dial_and_is_done() {
    let t = Instant::now();
    let mut p = Peer::new(cfg(None));
    p.handle(Input::Routes(routes(1, &[], true)), t);
    p.handle(Input::Start, t);
    let o = p.handle(shutdown(ShutdownMode::Withdraw, t), t);
    assert_eq!(
        o,
        vec![Output::AbortDial { timed_out: false }, Output::Done]
    );
}

#[test]
fn stop_in_opensent_sends_the_plain_cease_and_closes_the_held_connection() {
    let t = Instant::now();
    let mut p = open_sent(cfg(Some(120)), t);
    p.handle(accept(C1), t);
    let o = p.handle(shutdown(ShutdownMode::Withdraw, t), t);
    assert_eq!(o[0], Output::Close(C1));
    let n = notifications(&o);
    assert_eq!((n[0].0, n[0].1.code, n[0].1.subcode), (C0, 6, 2));
    // Connections arriving now are refused.
    let o = p.handle(accept(C2), t);
    assert!(o.contains(&Output::Close(C2)));
    peer_closes(&mut p, C0, t);
}

#[test]
fn connect_retry_abandons_a_hanging_dial_as_timed_out() {
    let t = Instant::now();
    let mut p = Peer::new(cfg(None));
    p.handle(Input::Routes(routes(1, &[], true)), t);
    p.handle(Input::Start, t);
    let d = p.next_deadline().unwrap();
    assert_eq!(
        p.handle(Input::Tick, d),
        vec![Output::AbortDial { timed_out: true }, Output::Dial]
    );
}

// ------------------------------------------------------------ property test

#[derive(Debug, Clone)]
enum Step {
    Input(Input),
    /// A connection (dialed or accepted), the peer's OPEN and KEEPALIVE on
    /// it: random order alone rarely gets a session up.
    Handshake(ConnId, bool),
    Wait(Duration),
}

fn arb_input(ids: u64) -> impl Strategy<Value = Step> {
    let conn = (0..ids).prop_map(ConnId);
    let id = prop_oneof![
        Just(PEER_ID),
        Just(RID),
        Just(Ipv4Addr::new(192, 0, 2, 200))
    ];
    let msg = prop_oneof![
        (id, any::<bool>()).prop_map(|(id, n)| open(id, n)),
        Just(Received::Keepalive),
        Just(Received::Update(UpdateSummary::default())),
        Just(Received::Notification(Notification::new(6, 2, []))),
        Just(Received::RouteRefresh {
            afi: 1,
            safi: 1,
            subtype: 0
        }),
    ];
    let prefixes = proptest::sample::subsequence(
        vec!["203.0.113.0/24", "198.51.100.0/24", "2001:db8:1::/48"],
        0..=3,
    );
    prop_oneof![
        1 => Just(Step::Input(Input::Start)),
        3 => conn.clone().prop_map(|conn| Step::Input(Input::Dialed { conn, local: LOCAL4 })),
        1 => Just(Step::Input(Input::DialFailed)),
        3 => conn.clone().prop_map(|conn| Step::Input(Input::Accepted { conn, local: LOCAL4 })),
        10 => (conn.clone(), msg).prop_map(|(c, m)| Step::Input(Input::Message(c, m))),
        1 => conn.clone().prop_map(|c| Step::Input(Input::Malformed(c, Notification::new(1, 1, [])))),
        1 => (0u64..3, any::<bool>()).prop_map(|(failures, holds_down)| Step::Input(Input::Bfd { failures, holds_down })),
        2 => conn.prop_map(|c| Step::Input(Input::Closed(c))),
        2 => (prefixes, any::<bool>()).prop_map(|(p, known)| Step::Input(Input::Routes(routes(1, &p, known)))),
        1 => (0u64..6).prop_map(|s| Step::Input(Input::Stop {
            notification: Notification::new(6, 3, []),
            deadline: Instant::now() + Duration::from_secs(s),
        })),
        1 => any::<bool>().prop_map(|w| Step::Input(Input::Shutdown {
            mode: if w { ShutdownMode::Withdraw } else { ShutdownMode::GracefulRestart },
            message: "bye".into(),
            deadline: Instant::now() + Duration::from_secs(3),
        })),
        1 => (0u64..6).prop_map(|s| Step::Input(Input::Written {
            linger_until: Instant::now() + Duration::from_secs(s),
        })),
        3 => ((0..ids).prop_map(ConnId), any::<bool>()).prop_map(|(c, dial)| Step::Handshake(c, dial)),
        4 => (0u64..5_000).prop_map(|ms| Step::Wait(Duration::from_millis(ms))),
    ]
}

thread_local! {
    /// (cases that reached Established, cases that ended Done, cases).
    static COVERAGE: std::cell::Cell<(u32, u32, u32)> = const { std::cell::Cell::new((0, 0, 0)) };
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Random inputs never panic the driver and keep its [`invariants`]
    /// (connections, the OPEN exchange, the hold timer, `Done`). Run by
    /// [`random_inputs_keep_connections_consistent_and_reach_sessions`].
    fn random_inputs_keep_connections_consistent(
        gr in proptest::option::of(Just(120u16)),
        steps in proptest::collection::vec(arb_input(6), 1..80),
    ) {
        let mut p = Peer::new(cfg(gr));
        let mut now = Instant::now();
        let mut checker = invariants::Checker::new();
        let mut reached_established = false;
        p.handle(Input::Routes(routes(0, &["203.0.113.0/24"], true)), now);
        // The task starts every peer.
        prop_assert_eq!(p.handle(Input::Start, now), vec![Output::Dial]);
        for step in steps {
            let inputs = match step {
                Step::Input(i) => vec![i],
                Step::Handshake(conn, dial) => vec![
                    if dial {
                        Input::Dialed { conn, local: LOCAL4 }
                    } else {
                        Input::Accepted { conn, local: LOCAL4 }
                    },
                    Input::Message(conn, open(PEER_ID, true)),
                    Input::Message(conn, Received::Keepalive),
                ],
                Step::Wait(d) => {
                    now += d;
                    vec![Input::Tick]
                }
            };
            for input in inputs {
                checker.handle(&mut p, input, now).map_err(TestCaseError::fail)?;
                reached_established |= p.state() == State::Established;
            }
        }
        let done = checker.done();
        COVERAGE.with(|c| {
            let (e, d, n) = c.get();
            c.set((e + u32::from(reached_established), d + u32::from(done), n + 1));
        });
    }
}

/// The property test; it must exercise sessions and stops, not only noise.
#[test]
fn random_inputs_keep_connections_consistent_and_reach_sessions() {
    COVERAGE.with(|c| c.set((0, 0, 0)));
    random_inputs_keep_connections_consistent();
    let (established, done, cases) = COVERAGE.with(|c| c.get());
    assert!(
        established >= cases / 5 && done >= cases / 5,
        "{established} of {cases} reached Established, {done} ended Done"
    );
}
