//! The DNS request path on random and mutated queries: the UDP fast path
//! (pre-encoded answers), the general path over hickory-proto (UDP and TCP
//! limits) and the TCP path through hickory-server's request decoding and
//! our handler, answering from fuzz/anypop.yaml with the PoPs in several
//! states. No panic; every answer parses back with hickory-proto, has QR
//! set and echoes the query's ID; an answer to a query hickory-proto can
//! decode echoes its question; the fast path echoes the question bytes as
//! sent (case preserved) and agrees with the general path on the response
//! code. Seeds: dig queries captured on the wire and queries built with
//! hickory-proto.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, OnceLock};

use anypop::core::PopState::{self, Down, Draining, Up};
use anypop::dns::answer::{respond, Transport};
use anypop::dns::fast::try_answer;
use anypop::dns::handler::{GeneralHandler, Outcome};
use anypop::dns::state::State;
use anypop::dns::zone::Zones;
use anypop::dns::DnsStats;
use hickory_proto::op::{Message, MessageType};
use libfuzzer_sys::fuzz_target;
use tokio::time::Instant;

/// PoP states the answers are computed for.
const STATES: [[PopState; 3]; 5] = [
    [Up, Up, Up],
    [Down, Up, Up],
    [Down, Down, Up],
    [Down, Down, Down],
    [Draining, Up, Down],
];
/// Query sources: one outside every geo map, one inside, an IPv6 one.
const SOURCES: [IpAddr; 3] = [
    IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)),
    IpAddr::V4(Ipv4Addr::new(198, 51, 100, 9)),
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 1)),
];

struct Fixture {
    states: Vec<Arc<State>>,
    handlers: Vec<GeneralHandler>,
    rt: tokio::runtime::Runtime,
    stats: Arc<DnsStats>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let config = anypop_fuzz::config();
        let zones = Arc::new(Zones::compile(&config).expect("zones of fuzz/anypop.yaml"));
        let stats = DnsStats::new();
        let now = Instant::now();
        let states: Vec<Arc<State>> = STATES
            .iter()
            .map(|s| {
                let pops = [("ams", s[0]), ("fra", s[1]), ("lon", s[2])];
                let snap = anypop_fuzz::snapshot(config.clone(), &pops, now);
                Arc::new(State::build(&snap, zones.clone(), now, Some(&stats), None))
            })
            .collect();
        // A receiver keeps the last value after its sender is gone.
        let handlers = states
            .iter()
            .map(|s| GeneralHandler::new(tokio::sync::watch::channel(s.clone()).1, stats.clone()))
            .collect();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        Fixture {
            states,
            handlers,
            rt,
            stats,
        }
    })
}

/// End of the question of a query the fast path took (it checked the
/// name's labels and that four bytes of type and class follow).
fn question_end(q: &[u8]) -> usize {
    let mut pos = 12;
    while q[pos] != 0 {
        pos += 1 + q[pos] as usize;
    }
    pos + 1 + 4
}

/// Checks an answer to `q`: parses, is a response, echoes the ID, and
/// echoes the question of `parsed` (the query as hickory-proto decodes it).
fn check(path: &str, q: &[u8], answer: &[u8], parsed: Option<&Message>) -> Message {
    let m = match Message::from_vec(answer) {
        Ok(m) => m,
        Err(e) => panic!("{path}: answer does not parse ({e}): {answer:02x?}"),
    };
    assert_eq!(m.metadata.message_type, MessageType::Response, "{path}: QR");
    assert_eq!(&answer[..2], &q[..2], "{path}: ID");
    if let Some(p) = parsed {
        assert_eq!(m.queries, p.queries, "{path}: question");
    }
    m
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, q)) = data.split_first() else {
        return;
    };
    let f = fixture();
    let i = usize::from(sel & 0x0f) % STATES.len();
    let state = &f.states[i];
    let src = SOURCES[usize::from(sel >> 4) % SOURCES.len()];
    let parsed = Message::from_vec(q)
        .ok()
        .filter(|m| m.metadata.message_type == MessageType::Query);

    let general = respond(state, &f.stats, q, src, Transport::Udp);
    if parsed.is_some() && general.is_none() {
        panic!("general path dropped a query hickory-proto decodes");
    }
    let general = general.map(|a| check("general/udp", q, &a, parsed.as_ref()));
    if let Some(a) = respond(state, &f.stats, q, src, Transport::Tcp) {
        check("general/tcp", q, &a, parsed.as_ref());
    }

    let mut out = Vec::new();
    if try_answer(state, &f.stats, q, src, &mut out) {
        let m = check("fast", q, &out, parsed.as_ref());
        let end = question_end(q);
        assert_eq!(&out[12..end], &q[12..end], "fast: question bytes");
        if let (Some(g), Some(_)) = (&general, &parsed) {
            assert_eq!(
                m.metadata.response_code, g.metadata.response_code,
                "fast and general paths disagree"
            );
        }
    }

    let h = &f.handlers[i];
    let tcp =
        f.rt.block_on(h.answer_bytes(q.to_vec(), SocketAddr::new(src, 53)));
    if let Outcome::Answer(a) = tcp {
        check("hickory-server/tcp", q, &a, parsed.as_ref());
    }
});
