//! The sans-IO peer driver (the FSM plus collisions, Adj-RIB-Out, End-of-RIB
//! hold, stop and shutdown choreography, BFD) fed random inputs the way the
//! socket task feeds it: connections dialed and accepted, messages on them
//! (built from fuzzer values or framed and decoded from raw bytes), route
//! changes, time, stop and shutdown. No panic, and after every input the
//! invariants of anypop's `bgp::peer::invariants` hold (the checker the
//! property test uses): connections used only while open, at most one in use
//! plus one held, never Established without an OPEN exchange on the
//! session's connection, the hold timer armed when the hold time is
//! non-zero, `Done` once and last.
#![no_main]

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use anypop::bgp::codec::{Family, Received};
use anypop::bgp::fsm::FsmConfig;
use anypop::bgp::peer::invariants::Checker;
use anypop::bgp::peer::{ConnId, Input, Peer, PeerConfig, Routes};
use anypop::core::{AnnounceMode, Announcement};
use anypop::model::{Name, RouteAttrs, ShutdownMode};
use anypop_fuzz::{wait, wire, ArbMessage, ArbNotification, LOCAL_ASN, PEER_ASN, RID};
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tokio::time::Instant;

const PREFIXES: [&str; 4] = [
    "203.0.113.0/24",
    "198.51.100.0/24",
    "2001:db8:1::/48",
    "2001:db8:2::/48",
];
const LOCAL4: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
const LOCAL6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2));

#[derive(Debug, Arbitrary)]
struct Setup {
    passive: bool,
    hold_time: u16,
    min_hold_time: u16,
    graceful_restart: Option<u16>,
    seed: u64,
    ibgp: bool,
    next_hop_v6: bool,
}

#[derive(Debug, Arbitrary)]
enum Step {
    Start,
    Dialed(u8, bool),
    DialFailed,
    Accepted(u8, bool),
    Message(u8, ArbMessage),
    /// Raw bytes on a connection: framed and decoded first.
    Wire(u8, Vec<u8>),
    Malformed(u8, ArbNotification),
    Closed(u8),
    /// A subset of the prefixes, with attributes and mode.
    Routes {
        set: u8,
        prepend: u8,
        med: Option<u32>,
        mode: u8,
        known: bool,
    },
    Bfd {
        failures: u8,
        holds_down: bool,
    },
    Stop(ArbNotification, u16),
    Shutdown(bool, String, u16),
    /// A connection, the peer's OPEN and KEEPALIVE on it.
    Handshake(u8, bool),
    Wait(u16, bool),
}

#[derive(Debug, Arbitrary)]
struct Script {
    setup: Setup,
    steps: Vec<Step>,
}

fn routes(version: u64, set: u8, attrs: RouteAttrs, mode: AnnounceMode, known: bool) -> Routes {
    let pop = Name::parse("ams").expect("valid name");
    let announcements = PREFIXES
        .iter()
        .enumerate()
        .filter(|(i, _)| set & (1 << i) != 0)
        .filter_map(|(_, p)| {
            let a = Announcement {
                pop: pop.clone(),
                mode,
                attrs: attrs.clone(),
            };
            Some((p.parse().ok()?, a))
        })
        .collect::<BTreeMap<_, _>>();
    Routes {
        version,
        announcements: Arc::new(announcements),
        local_health_known: known,
    }
}

fn local(v6: bool) -> IpAddr {
    if v6 {
        LOCAL6
    } else {
        LOCAL4
    }
}

fuzz_target!(|script: Script| {
    let s = &script.setup;
    let cfg = PeerConfig {
        fsm: FsmConfig {
            local_asn: if s.ibgp { PEER_ASN } else { LOCAL_ASN },
            remote_asn: PEER_ASN,
            router_id: RID,
            hold_time: match s.hold_time {
                1 | 2 => 3,
                h => h,
            },
            min_hold_time: s.min_hold_time,
            connect_retry: Duration::from_secs(1),
            passive: s.passive,
            families: vec![Family::Ipv4, Family::Ipv6],
            graceful_restart: s.graceful_restart,
            seed: s.seed,
        },
        next_hop_v4: None,
        next_hop_v6: s
            .next_hop_v6
            .then(|| Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x53)),
    };
    let mut p = Peer::new(cfg);
    let mut checker = Checker::new();
    let mut now = Instant::now();
    let mut version = 0;
    // The task's contract: routes first, then start.
    let first = routes(0, 1, RouteAttrs::default(), AnnounceMode::Normal, true);
    let mut inputs = vec![Input::Routes(first), Input::Start];
    let mut steps = script.steps.iter().take(256);
    loop {
        for input in inputs.drain(..) {
            if let Err(e) = checker.handle(&mut p, input, now) {
                panic!("{e}");
            }
        }
        let Some(step) = steps.next() else { break };
        let conn = |c: &u8| ConnId(u64::from(*c % 6));
        match step {
            Step::Start => inputs.push(Input::Start),
            Step::Dialed(c, v6) => inputs.push(Input::Dialed {
                conn: conn(c),
                local: local(*v6),
            }),
            Step::DialFailed => inputs.push(Input::DialFailed),
            Step::Accepted(c, v6) => inputs.push(Input::Accepted {
                conn: conn(c),
                local: local(*v6),
            }),
            Step::Message(c, m) => inputs.push(Input::Message(conn(c), m.get())),
            Step::Wire(c, bytes) => {
                for r in wire(bytes) {
                    inputs.push(match r {
                        Ok(m) => Input::Message(conn(c), m),
                        Err(n) => Input::Malformed(conn(c), n),
                    });
                }
            }
            Step::Malformed(c, n) => inputs.push(Input::Malformed(conn(c), n.get())),
            Step::Closed(c) => inputs.push(Input::Closed(conn(c))),
            Step::Routes {
                set,
                prepend,
                med,
                mode,
                known,
            } => {
                version += 1;
                let attrs = RouteAttrs {
                    prepend: *prepend % 8,
                    med: *med,
                    ..RouteAttrs::default()
                };
                let mode = match mode % 3 {
                    0 => AnnounceMode::Normal,
                    1 => AnnounceMode::Degraded,
                    _ => AnnounceMode::GracefulShutdown,
                };
                inputs.push(Input::Routes(routes(version, *set, attrs, mode, *known)));
            }
            Step::Bfd {
                failures,
                holds_down,
            } => inputs.push(Input::Bfd {
                failures: u64::from(*failures % 4),
                holds_down: *holds_down,
            }),
            Step::Stop(n, secs) => inputs.push(Input::Stop {
                notification: n.get(),
                deadline: now + Duration::from_secs(u64::from(*secs % 10)),
            }),
            Step::Shutdown(withdraw, message, secs) => inputs.push(Input::Shutdown {
                mode: if *withdraw {
                    ShutdownMode::Withdraw
                } else {
                    ShutdownMode::GracefulRestart
                },
                message: message.clone(),
                deadline: now + Duration::from_secs(u64::from(*secs % 10)),
            }),
            Step::Handshake(c, dial) => {
                let local = LOCAL4;
                inputs.push(if *dial {
                    Input::Dialed {
                        conn: conn(c),
                        local,
                    }
                } else {
                    Input::Accepted {
                        conn: conn(c),
                        local,
                    }
                });
                inputs.push(Input::Message(
                    conn(c),
                    Received::Open(anypop_fuzz::valid_open()),
                ));
                inputs.push(Input::Message(conn(c), Received::Keepalive));
            }
            Step::Wait(ms, long) => {
                now += wait(*ms, *long);
                inputs.push(Input::Tick);
            }
        }
    }
});
