//! The BGP session FSM fed random event sequences: operator start/stop,
//! TCP outcomes, messages (built from fuzzer values or framed and decoded
//! from raw bytes), BFD, and time passing. No panic, and after every event
//! the invariants of anypop's `bgp::fsm::invariants` hold (the same checker
//! as the property test): never Established without an OPEN exchange, hold
//! and keepalive timers armed whenever the negotiated hold time is
//! non-zero, every NOTIFICATION followed by a close, no expired timer left.
#![no_main]

use std::time::Duration;

use anypop::bgp::codec::{Family, Received};
use anypop::bgp::fsm::invariants::Checker;
use anypop::bgp::fsm::{Event, Fsm, FsmConfig};
use anypop_fuzz::{wait, wire, ArbMessage, ArbNotification, LOCAL_ASN, PEER_ASN, RID};
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tokio::time::Instant;

#[derive(Debug, Arbitrary)]
struct Setup {
    passive: bool,
    /// Our hold time (the config allows 0 or 3 and more).
    hold_time: u16,
    /// The shortest hold time we accept (0 accepts 0).
    min_hold_time: u16,
    connect_retry_ms: u16,
    graceful_restart: Option<u16>,
    seed: u64,
    ibgp: bool,
    v6: bool,
}

#[derive(Debug, Arbitrary)]
enum Step {
    Start,
    Stop(Option<ArbNotification>),
    TcpConnected,
    TcpFailed,
    TcpClosed,
    Message(ArbMessage),
    /// Raw bytes from the peer: framed and decoded first.
    Wire(Vec<u8>),
    DecodeError(ArbNotification),
    BfdDown,
    BfdUp,
    /// A connection, a valid OPEN with this hold time and a KEEPALIVE:
    /// random order alone rarely gets a session up.
    Handshake(u16),
    Wait(u16, bool),
}

#[derive(Debug, Arbitrary)]
struct Input {
    setup: Setup,
    steps: Vec<Step>,
}

fuzz_target!(|input: Input| {
    let s = &input.setup;
    let hold_time = match s.hold_time {
        1 | 2 => 3,
        h => h,
    };
    let mut families = vec![Family::Ipv4];
    if s.v6 {
        families.push(Family::Ipv6);
    }
    let cfg = FsmConfig {
        local_asn: if s.ibgp { PEER_ASN } else { LOCAL_ASN },
        remote_asn: PEER_ASN,
        router_id: RID,
        hold_time,
        min_hold_time: s.min_hold_time,
        connect_retry: Duration::from_millis(s.connect_retry_ms.into()),
        passive: s.passive,
        families,
        graceful_restart: s.graceful_restart,
        seed: s.seed,
    };
    let mut f = Fsm::new(cfg);
    let mut checker = Checker::new();
    let mut now = Instant::now();
    for step in input.steps.iter().take(256) {
        let events = match step {
            Step::Start => vec![Event::Start],
            Step::Stop(n) => vec![Event::Stop(n.as_ref().map(ArbNotification::get))],
            Step::TcpConnected => vec![Event::TcpConnected],
            Step::TcpFailed => vec![Event::TcpFailed],
            Step::TcpClosed => vec![Event::TcpClosed],
            Step::Message(m) => vec![Event::Message(m.get())],
            Step::Wire(bytes) => wire(bytes)
                .into_iter()
                .map(|r| match r {
                    Ok(m) => Event::Message(m),
                    Err(n) => Event::DecodeError(n),
                })
                .collect(),
            Step::DecodeError(n) => vec![Event::DecodeError(n.get())],
            Step::BfdDown => vec![Event::BfdDown],
            Step::BfdUp => vec![Event::BfdUp],
            Step::Handshake(hold) => {
                let mut open = anypop_fuzz::valid_open();
                open.hold_time = *hold;
                vec![
                    Event::TcpConnected,
                    Event::Message(Received::Open(open)),
                    Event::Message(Received::Keepalive),
                ]
            }
            Step::Wait(ms, long) => {
                now += wait(*ms, *long);
                vec![Event::Tick]
            }
        };
        for ev in events {
            if let Err(e) = checker.handle(&mut f, ev, now) {
                panic!("{e}");
            }
        }
    }
});
