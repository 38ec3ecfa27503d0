//! Negative answers on the fast path: for names that do not exist, names
//! without data of the asked type, empty non-terminals and names outside our
//! zones, the fast path must answer, and byte for byte like the general
//! path (same query in, same bytes out: ID, the client's case, header
//! flags, name compression, SOA, OPT and ECS).

use hickory_proto::op::{Edns, Message, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::{Name, RecordType};
use proptest::prelude::*;

use super::answer::{respond, Transport};
use super::fast::try_answer;
use super::policy::tests::{config, snapshot};
use super::state::State;
use super::stats::DnsStats;
use super::tests::{ecs, edns, query, st, state_of, zone, SRC};
use crate::core::PopState;
use crate::model::{DnsType, Soa, Zone};

/// The test zone plus a child zone whose SOA names lie outside it.
fn zones() -> Vec<Zone> {
    let child = Zone {
        origin: "child.example.net.".into(),
        soa: Soa {
            mname: "ns.provider.example.org.".into(),
            rname: "dns-admin.hostmaster.child.example.net.".into(),
            serial: 7,
            refresh: 3600,
            retry: 600,
            expire: 86400,
            minimum: 30,
        },
        ns: vec!["ns.provider.example.org.".into()],
        ttl: 120,
        records: vec![st(
            "host.child.example.net.",
            60,
            DnsType::A,
            &["192.0.2.77"],
        )],
    };
    vec![zone(), child]
}

fn state() -> State {
    let s = snapshot(
        config(zones()),
        &[
            ("a", PopState::Up),
            ("b", PopState::Up),
            ("c", PopState::Up),
        ],
        tokio::time::Instant::now(),
    );
    state_of(&s, &DnsStats::default())
}

/// The general path's bytes, the fast path's bytes (if it takes the query)
/// and the fast path's counters.
fn both(state: &State, q: &[u8]) -> (Vec<u8>, Option<Vec<u8>>, DnsStats) {
    let general = respond(state, &DnsStats::default(), q, SRC, Transport::Udp).unwrap();
    let stats = DnsStats::default();
    let mut out = Vec::new();
    let fast = try_answer(state, &stats, q, SRC, &mut out).then_some(out);
    (general, fast, stats)
}

/// A negative answer: NXDOMAIN, or NOERROR without answers, or REFUSED.
fn is_negative(m: &Message) -> bool {
    match m.metadata.response_code {
        ResponseCode::NXDomain | ResponseCode::Refused => true,
        ResponseCode::NoError => m.answers.is_empty(),
        _ => false,
    }
}

/// Checks one query: a negative general answer must come from the fast
/// path too, identical; returns whether it was negative.
fn check(state: &State, q: &[u8]) -> bool {
    let (general, fast, stats) = both(state, q);
    let g = Message::from_vec(&general).unwrap();
    if !is_negative(&g) {
        return false;
    }
    let f = fast.unwrap_or_else(|| panic!("fast path declined a negative answer: {g}"));
    assert_eq!(f, general, "fast {:?}\ngeneral {g}", Message::from_vec(&f));
    let m = Message::from_vec(&f).expect("hickory-proto parses the fast answer");
    assert_eq!(m.metadata.id, 0x1234);
    if m.metadata.response_code == ResponseCode::Refused {
        assert!(!m.metadata.authoritative);
        assert!(m.authorities.is_empty());
    } else {
        assert!(m.metadata.authoritative);
        assert_eq!(m.authorities.len(), 1);
        assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
    }
    let counted = stats.rcodes[match m.metadata.response_code {
        ResponseCode::NoError => 0,
        ResponseCode::NXDomain => 3,
        _ => 5,
    }]
    .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(counted, 1, "rcode counted");
    true
}

/// A query for a name given as raw labels (any bytes, as on the wire).
fn raw_query(labels: &[&[u8]], qtype: RecordType, edns: Option<Edns>) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = 0x1234;
    m.metadata.recursion_desired = true;
    let name = Name::from_labels(labels.iter().copied()).unwrap();
    m.add_query(Query::query(name, qtype));
    if let Some(e) = edns {
        m.set_edns(e);
    }
    m.to_vec().unwrap()
}

const TYPES: [u16; 15] = [
    1, 28, 15, 16, 2, 6, 33, 257, 12, 43, 64, 65, 99, 1000, 65280,
];

#[test]
fn negative_answers_come_from_the_fast_path_identical_to_the_general_path() {
    let state = state();
    let long = format!("{}example.net.", "a.".repeat(100));
    let names = [
        "nope.example.net.",
        "NoPe.ExAmPlE.NeT.",
        "a.b-c.d_e.example.net.",
        "sub.example.net.",  // empty non-terminal
        "SUB.Example.net.",  // the same, 0x20
        "_udp.example.net.", // empty non-terminal
        "mail.example.net.",
        "www.example.net.", // steered: NODATA for other types
        "WwW.eXaMpLe.NeT.",
        "example.net.",
        "EXAMPLE.NET.",
        "_sip._udp.example.net.",
        "ns1.example.net.",
        "alias.example.net.", // CNAME: never negative
        "child.example.net.",
        "nope.child.example.net.",
        "Nope.CHILD.example.NET.",
        "host.child.example.net.",
        "x.host.child.example.net.",
        "example.org.",
        "www.example.com.",
        "net.",
        ".",
        &long,
    ];
    let ednses = [
        None,
        Some(edns(1232, vec![])),
        Some(edns(4096, vec![ecs("198.51.100.0", 24)])),
        Some(edns(512, vec![ecs("2001:db8:77::", 56)])),
        Some(edns(
            1232,
            vec![EdnsOption::Unknown(EdnsCode::Cookie.into(), vec![7; 8])],
        )),
    ];
    let mut negative = 0;
    for name in names {
        for t in TYPES {
            for e in &ednses {
                let q = query(name, RecordType::from(t), e.clone());
                if check(&state, &q) {
                    negative += 1;
                }
            }
        }
    }
    // Most of the 24 × 15 × 5 questions are negative.
    assert!(negative > 1200, "{negative}");
}

#[test]
fn other_questions_are_left_to_the_general_path() {
    let state = state();
    for (name, t) in [
        ("nope.example.net.", RecordType::ANY),
        ("nope.example.net.", RecordType::AXFR),
        ("nope.example.net.", RecordType::IXFR),
        ("nope.example.net.", RecordType::OPT),
        ("alias.example.net.", RecordType::MX),
        ("example.org.", RecordType::ANY),
    ] {
        let q = query(name, t, None);
        let (_, fast, _) = both(&state, &q);
        assert!(fast.is_none(), "{name} {t}");
    }
    // Labels with other bytes than letters, digits, '-' and '_' (their text
    // form needs escapes): the general path.
    for label in [
        &b"no*pe"[..],
        b"no.pe",
        b"n\\o",
        b"caf\xc3\xa9",
        b"a b",
        b"\x00",
    ] {
        let q = raw_query(&[label, b"example", b"net"], RecordType::A, None);
        assert!(both(&state, &q).1.is_none(), "{label:?}");
    }
    // NSID needs the general path even for a negative answer.
    let q = query(
        "nope.example.net.",
        RecordType::A,
        Some(edns(
            1232,
            vec![EdnsOption::NSID(
                hickory_proto::rr::rdata::opt::NSIDPayload::new(Vec::<u8>::new()).unwrap(),
            )],
        )),
    );
    assert!(both(&state, &q).1.is_none());
}

/// The state of [`zones`], built once for the property test.
static STATE: std::sync::LazyLock<State> = std::sync::LazyLock::new(state);

/// A label of letters (either case), digits, '-' and '_'.
fn label() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[a-zA-Z0-9_-]{1,12}").unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn random_negative_questions_match_the_general_path(
        labels in proptest::collection::vec(label(), 0..6),
        suffix in prop_oneof![
            Just(vec!["example", "net"]),
            Just(vec!["EXAMPLE", "net"]),
            Just(vec!["child", "example", "net"]),
            Just(vec!["sub", "example", "net"]),
            Just(vec!["example", "org"]),
            Just(vec![]),
        ],
        t in proptest::sample::select(TYPES.to_vec()),
        with_edns in any::<bool>(),
    ) {
        let all: Vec<&[u8]> = labels
            .iter()
            .map(|l| l.as_bytes())
            .chain(suffix.iter().map(|l| l.as_bytes()))
            .collect();
        let e = with_edns.then(|| edns(1232, vec![ecs("192.0.2.0", 24)]));
        check(&STATE, &raw_query(&all, RecordType::from(t), e));
    }
}
