//! Request-path tests: encoded queries in, decoded responses checked, the
//! fast path compared with the general path, garbage fed without panics,
//! and the server driven over loopback sockets.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption, NSIDPayload};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};
use proptest::prelude::*;
use tokio::time::Instant;

use super::answer::{respond, Transport};
use super::fast::try_answer;
use super::policy::tests::{config, name, snapshot, steering};
use super::state::State;
use super::stats::DnsStats;
use super::zone::Zones;
use crate::core::{PopState, Snapshot};
use crate::model::*;

pub(super) fn st(name: &str, ttl: u32, rtype: DnsType, values: &[&str]) -> Record {
    Record {
        name: name.into(),
        ttl,
        data: RecordData::Static {
            rtype,
            values: values.iter().map(|s| s.to_string()).collect(),
        },
    }
}

pub(super) fn steered(name: &str, policy: SteeringPolicy) -> Record {
    Record {
        name: name.into(),
        ttl: 30,
        data: RecordData::Steered(steering(policy)),
    }
}

pub(super) fn zone() -> Zone {
    let mut w = BTreeMap::new();
    w.insert(name("a"), 1);
    w.insert(name("b"), 1);
    w.insert(name("c"), 0);
    let big: Vec<String> = (0..12)
        .map(|i| format!("\"{}{}\"", i, "x".repeat(60)))
        .collect();
    Zone {
        origin: "example.net.".into(),
        soa: Soa {
            mname: "ns1.example.net.".into(),
            rname: "hostmaster.example.net.".into(),
            serial: 2026112301,
            refresh: 3600,
            retry: 600,
            expire: 86400,
            minimum: 60,
        },
        ns: vec!["ns1.example.net.".into()],
        ttl: 300,
        records: vec![
            steered(
                "www.example.net.",
                SteeringPolicy::Failover {
                    pops: vec![name("a"), name("b"), name("c")],
                },
            ),
            steered("w.example.net.", SteeringPolicy::Weighted { weights: w }),
            steered(
                "geo.example.net.",
                SteeringPolicy::Geo {
                    map: vec![("198.51.100.0/24".parse().unwrap(), vec![name("c")])],
                    countries: vec![],
                    continents: vec![],
                    default: vec![name("a")],
                },
            ),
            steered(
                "all.example.net.",
                SteeringPolicy::AllHealthy {
                    pops: vec![name("a"), name("b"), name("c")],
                    max: 8,
                },
            ),
            st("ns1.example.net.", 300, DnsType::A, &["192.0.2.53"]),
            st("mail.example.net.", 300, DnsType::A, &["192.0.2.25"]),
            st("example.net.", 300, DnsType::Mx, &["10 mail"]),
            st("example.net.", 300, DnsType::Txt, &["\"v=spf1 -all\""]),
            st(
                "example.net.",
                300,
                DnsType::Caa,
                &["0 issue \"letsencrypt.org\""],
            ),
            st("alias.example.net.", 300, DnsType::Cname, &["www"]),
            st(
                "out.example.net.",
                300,
                DnsType::Cname,
                &["www.example.org."],
            ),
            st(
                "_sip._udp.example.net.",
                300,
                DnsType::Srv,
                &["10 5 5060 sip.example.net."],
            ),
            st(
                "deep.sub.example.net.",
                300,
                DnsType::Aaaa,
                &["2001:db8::53"],
            ),
            st("big.example.net.", 300, DnsType::Txt, &[&big.join(" ")]),
            st("plain.example.net.", 300, DnsType::Txt, &["hello world"]),
        ],
    }
}

pub(super) fn snap(states: &[(&str, PopState)]) -> Snapshot {
    snapshot(config(vec![zone()]), states, Instant::now())
}

pub(super) fn up() -> Snapshot {
    snap(&[
        ("a", PopState::Up),
        ("b", PopState::Up),
        ("c", PopState::Up),
    ])
}

pub(super) fn state_of(s: &Snapshot, stats: &DnsStats) -> State {
    let zones = Arc::new(Zones::compile(&s.config).unwrap());
    State::build(s, zones, Instant::now(), Some(stats), None)
}

pub(super) fn query(qname: &str, qtype: RecordType, edns: Option<Edns>) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = 0x1234;
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(qname).unwrap(), qtype));
    if let Some(e) = edns {
        m.set_edns(e);
    }
    m.to_vec().unwrap()
}

pub(super) fn edns(payload: u16, opts: Vec<EdnsOption>) -> Edns {
    let mut e = Edns::new();
    e.set_max_payload(payload);
    for o in opts {
        e.options_mut().insert(o);
    }
    e
}

pub(super) fn ecs(addr: &str, prefix: u8) -> EdnsOption {
    EdnsOption::Subnet(ClientSubnet::new(addr.parse().unwrap(), prefix, 0))
}

pub(super) const SRC: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));

/// The general path's answer.
pub(super) fn general(state: &State, q: &[u8]) -> Message {
    let stats = DnsStats::default();
    Message::from_vec(&respond(state, &stats, q, SRC, Transport::Udp).unwrap()).unwrap()
}

/// The fast path's answer, if it takes the query.
pub(super) fn fast(state: &State, q: &[u8]) -> Option<Message> {
    let stats = DnsStats::default();
    let mut out = Vec::new();
    try_answer(state, &stats, q, SRC, &mut out).then(|| Message::from_vec(&out).unwrap())
}

pub(super) fn addrs(m: &Message) -> Vec<String> {
    let mut v: Vec<String> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            RData::AAAA(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

fn scope(m: &Message) -> Option<u8> {
    match m.edns.as_ref()?.option(EdnsCode::Subnet)? {
        EdnsOption::Subnet(cs) => Some(cs.scope_prefix()),
        _ => None,
    }
}

#[test]
fn static_records_are_authoritative() {
    let stats = DnsStats::default();
    let s = state_of(&up(), &stats);
    let m = general(&s, &query("mail.example.net.", RecordType::A, None));
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.metadata.authoritative);
    assert!(m.metadata.recursion_desired);
    assert!(!m.metadata.recursion_available);
    assert_eq!(addrs(&m), vec!["192.0.2.25"]);
    for (qt, want) in [
        (RecordType::MX, "10 mail.example.net."),
        (RecordType::CAA, "letsencrypt.org"),
        (RecordType::TXT, "v=spf1 -all"),
        (RecordType::SOA, "hostmaster.example.net."),
        (RecordType::NS, "ns1.example.net."),
    ] {
        let m = general(&s, &query("example.net.", qt, None));
        assert_eq!(m.answers.len(), 1, "{qt}");
        assert!(
            m.answers[0].to_string().contains(want),
            "{qt}: {}",
            m.answers[0]
        );
    }
    let m = general(&s, &query("plain.example.net.", RecordType::TXT, None));
    match &m.answers[0].data {
        RData::TXT(t) => assert_eq!(t.txt_data.len(), 1, "one string: {t}"),
        other => panic!("not TXT: {other:?}"),
    }
    let m = general(&s, &query("_sip._udp.example.net.", RecordType::SRV, None));
    assert!(m.answers[0].to_string().contains("5060 sip.example.net."));
}

#[test]
fn nxdomain_and_nodata_carry_the_soa() {
    let stats = DnsStats::default();
    let s = state_of(&up(), &stats);
    let m = general(&s, &query("nope.example.net.", RecordType::A, None));
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert!(m.metadata.authoritative);
    assert!(m.answers.is_empty());
    assert_eq!(m.authorities.len(), 1);
    assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
    assert_eq!(m.authorities[0].ttl, 60);
    // NODATA: existing name, other type.
    let m = general(&s, &query("www.example.net.", RecordType::TXT, None));
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
    // Empty non-terminal: NODATA, not NXDOMAIN.
    let m = general(&s, &query("sub.example.net.", RecordType::A, None));
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
}

#[test]
fn refused_outside_zones_and_for_transfers() {
    let stats = DnsStats::default();
    let s = state_of(&up(), &stats);
    let m = general(&s, &query("www.example.org.", RecordType::A, None));
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    assert!(!m.metadata.authoritative);
    let m = general(&s, &query("example.net.", RecordType::AXFR, None));
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
}

#[test]
fn cname_chain_within_zone_and_out() {
    let stats = DnsStats::default();
    let s = state_of(&up(), &stats);
    let m = general(&s, &query("alias.example.net.", RecordType::A, None));
    assert_eq!(m.answers.len(), 2);
    assert_eq!(m.answers[0].record_type(), RecordType::CNAME);
    assert_eq!(addrs(&m), vec!["192.0.2.1"]);
    let m = general(&s, &query("out.example.net.", RecordType::A, None));
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(m.answers.len(), 1);
    let m = general(&s, &query("alias.example.net.", RecordType::CNAME, None));
    assert_eq!(m.answers.len(), 1);
}

#[test]
fn any_is_answered_minimally() {
    let stats = DnsStats::default();
    let s = state_of(&up(), &stats);
    let m = general(&s, &query("example.net.", RecordType::ANY, None));
    let types: std::collections::BTreeSet<_> = m.answers.iter().map(|r| r.record_type()).collect();
    assert_eq!(types.len(), 1, "{:?}", m.answers);
    let m = general(&s, &query("www.example.net.", RecordType::ANY, None));
    assert_eq!(addrs(&m), vec!["192.0.2.1"]);
}

#[test]
fn case_is_preserved_and_ignored() {
    let stats = DnsStats::default();
    let s = state_of(&up(), &stats);
    for qt in [RecordType::A, RecordType::MX] {
        let name = if qt == RecordType::A {
            "WwW.ExAmPlE.nEt."
        } else {
            "ExAmple.NET."
        };
        let q = query(name, qt, None);
        let g = general(&s, &q);
        assert_eq!(g.queries[0].name().to_ascii(), name);
        assert_eq!(g.answers.len(), 1);
        let f = fast(&s, &q).expect("fast path takes a plain query");
        assert_eq!(f.queries[0].name().to_ascii(), name);
        assert_eq!(f.answers, g.answers);
    }
}

#[test]
fn truncation_honours_the_buffer_size() {
    let stats = DnsStats::default();
    let s = state_of(&up(), &stats);
    let m = general(&s, &query("big.example.net.", RecordType::TXT, None));
    assert!(m.metadata.truncation);
    assert!(m.answers.is_empty());
    assert!(fast(&s, &query("big.example.net.", RecordType::TXT, None)).is_none());
    let m = general(
        &s,
        &query("big.example.net.", RecordType::TXT, Some(edns(512, vec![]))),
    );
    assert!(m.metadata.truncation);
    assert!(m.edns.is_some());
    let q = query(
        "big.example.net.",
        RecordType::TXT,
        Some(edns(1232, vec![])),
    );
    let m = general(&s, &q);
    assert!(!m.metadata.truncation);
    assert_eq!(m.answers.len(), 1);
    assert_eq!(fast(&s, &q).unwrap().answers, m.answers);
    // Over TCP: never truncated.
    let q = query("big.example.net.", RecordType::TXT, None);
    let r = respond(&s, &stats, &q, SRC, Transport::Tcp).unwrap();
    assert!(!Message::from_vec(&r).unwrap().metadata.truncation);
}

#[test]
fn nsid_and_chaos_identity() {
    let stats = DnsStats::default();
    let s = state_of(&up(), &stats);
    let nsid = EdnsOption::NSID(NSIDPayload::new(Vec::new()).unwrap());
    let q = query(
        "www.example.net.",
        RecordType::A,
        Some(edns(1232, vec![nsid])),
    );
    assert!(fast(&s, &q).is_none());
    let m = general(&s, &q);
    match m.edns.as_ref().and_then(|e| e.option(EdnsCode::NSID)) {
        Some(EdnsOption::NSID(p)) => assert_eq!(p.as_ref(), b"node1.a"),
        other => panic!("no NSID: {other:?}"),
    }
    for n in ["id.server.", "HOSTNAME.bind."] {
        let mut msg = Message::query();
        let mut qq = Query::query(Name::from_ascii(n).unwrap(), RecordType::TXT);
        qq.set_query_class(DNSClass::CH);
        msg.add_query(qq);
        let m = general(&s, &msg.to_vec().unwrap());
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(
            m.answers[0].to_string().contains("node1.a"),
            "{}",
            m.answers[0]
        );
    }
}

#[test]
fn ecs_scope_follows_the_policy() {
    let stats = DnsStats::default();
    let s = state_of(&up(), &stats);
    for (qname, want_scope) in [
        ("www.example.net.", 0),
        ("all.example.net.", 0),
        ("w.example.net.", 24),
        ("geo.example.net.", 24),
        ("mail.example.net.", 0),
    ] {
        let q = query(
            qname,
            RecordType::A,
            Some(edns(1232, vec![ecs("198.51.100.0", 24)])),
        );
        let g = general(&s, &q);
        assert_eq!(scope(&g), Some(want_scope), "{qname}");
        let f = fast(&s, &q).expect("fast path takes ECS queries");
        assert_eq!(scope(&f), Some(want_scope), "{qname}");
        assert_eq!(addrs(&f), addrs(&g), "{qname}");
    }
    let q = query(
        "geo.example.net.",
        RecordType::A,
        Some(edns(1232, vec![ecs("198.51.100.0", 24)])),
    );
    assert_eq!(addrs(&general(&s, &q)), vec!["192.0.2.3"]);
    let q = query(
        "geo.example.net.",
        RecordType::A,
        Some(edns(1232, vec![ecs("192.0.2.0", 24)])),
    );
    assert_eq!(addrs(&general(&s, &q)), vec!["192.0.2.1"]);
    // Without ECS the source address steers (203.0.113.7: default PoP a).
    let q = query("geo.example.net.", RecordType::A, None);
    assert_eq!(addrs(&fast(&s, &q).unwrap()), vec!["192.0.2.1"]);
    // A query scope other than 0 is a FORMERR (RFC 7871 §7.1.1).
    let bad = EdnsOption::Subnet(ClientSubnet::new("198.51.100.0".parse().unwrap(), 24, 8));
    let q = query(
        "www.example.net.",
        RecordType::A,
        Some(edns(1232, vec![bad])),
    );
    assert_eq!(
        general(&s, &q).metadata.response_code,
        ResponseCode::FormErr
    );
}

#[test]
fn fast_and_general_paths_agree() {
    let stats = DnsStats::default();
    for snapshot in [
        up(),
        snap(&[
            ("a", PopState::Down),
            ("b", PopState::Up),
            ("c", PopState::Draining),
        ]),
    ] {
        let s = state_of(&snapshot, &stats);
        for qname in ["www", "w", "geo", "all", "mail", "example.net.", "ns1"] {
            let qname = if qname.ends_with('.') {
                qname.to_string()
            } else {
                format!("{qname}.example.net.")
            };
            for qt in [RecordType::A, RecordType::AAAA, RecordType::MX] {
                for e in [
                    None,
                    Some(edns(1232, vec![])),
                    Some(edns(4096, vec![ecs("198.51.100.0", 24)])),
                    Some(edns(1232, vec![ecs("2001:db8:77::", 48)])),
                    Some(edns(1232, vec![ecs("10.1.2.0", 23)])),
                ] {
                    let q = query(&qname, qt, e);
                    let g = general(&s, &q);
                    if let Some(f) = fast(&s, &q) {
                        assert_eq!(f.metadata, g.metadata, "{qname} {qt}");
                        assert_eq!(f.queries, g.queries);
                        assert_eq!(f.answers, g.answers, "{qname} {qt}");
                        assert_eq!(f.authorities, g.authorities);
                        assert_eq!(f.edns, g.edns, "{qname} {qt}");
                    }
                }
            }
        }
    }
}

#[test]
fn rebuild_keeps_static_answers_and_redoes_steered_ones() {
    let stats = DnsStats::default();
    let s1 = up();
    let zones = Arc::new(Zones::compile(&s1.config).unwrap());
    let a = State::build(&s1, zones.clone(), Instant::now(), Some(&stats), None);
    let s2 = snap(&[
        ("a", PopState::Down),
        ("b", PopState::Up),
        ("c", PopState::Up),
    ]);
    let b = State::build(&s2, zones.clone(), Instant::now(), Some(&stats), Some(&a));
    let get = |s: &State, n: &str, t| s.fast.get(n, t).unwrap().clone();
    assert!(Arc::ptr_eq(
        &get(&a, "mail.example.net.", RecordType::A),
        &get(&b, "mail.example.net.", RecordType::A)
    ));
    assert!(!Arc::ptr_eq(
        &get(&a, "www.example.net.", RecordType::A),
        &get(&b, "www.example.net.", RecordType::A)
    ));
    let q = query("www.example.net.", RecordType::A, None);
    assert_eq!(addrs(&fast(&b, &q).unwrap()), vec!["192.0.2.2"]);
    // New zones (a reload): nothing is reused.
    let c = State::build(
        &s2,
        Arc::new(Zones::compile(&s2.config).unwrap()),
        Instant::now(),
        Some(&stats),
        Some(&b),
    );
    assert!(!Arc::ptr_eq(
        &get(&b, "mail.example.net.", RecordType::A),
        &get(&c, "mail.example.net.", RecordType::A)
    ));
}

#[test]
fn badvers_and_notimp() {
    let stats = DnsStats::default();
    let s = state_of(&up(), &stats);
    let mut e = edns(1232, vec![]);
    e.set_version(1);
    let q = query("www.example.net.", RecordType::A, Some(e));
    assert!(fast(&s, &q).is_none());
    let m = general(&s, &q);
    // BADVERS and BADSIG share code 16; hickory decodes it as BADSIG.
    let rc = m.metadata.response_code;
    assert_eq!((rc.high(), rc.low()), (1, 0), "{rc:?}");
    assert!(m.answers.is_empty());
    let mut m = Message::from_vec(&query("www.example.net.", RecordType::A, None)).unwrap();
    m.metadata.op_code = hickory_proto::op::OpCode::Notify;
    let q = m.to_vec().unwrap();
    assert!(fast(&s, &q).is_none());
    assert_eq!(general(&s, &q).metadata.response_code, ResponseCode::NotImp);
}

#[test]
fn malformed_queries_get_formerr_or_are_dropped() {
    let stats = DnsStats::default();
    let s = state_of(&up(), &stats);
    let q = query("www.example.net.", RecordType::A, None);
    // Cut inside the question: FORMERR with the same ID.
    let r = respond(&s, &stats, &q[..20], SRC, Transport::Udp).unwrap();
    let m = Message::from_vec(&r).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    assert_eq!(m.metadata.id, 0x1234);
    // Shorter than a header, or a response: dropped.
    assert!(respond(&s, &stats, &q[..5], SRC, Transport::Udp).is_none());
    let mut resp = q.clone();
    resp[2] |= 0x80;
    assert!(respond(&s, &stats, &resp, SRC, Transport::Udp).is_none());
}

#[tokio::test]
async fn hickory_server_handler_answers_like_the_general_path() {
    use super::handler::{GeneralHandler, Outcome};
    use hickory_proto::op::OpCode;
    let stats = DnsStats::default();
    let state = Arc::new(state_of(&up(), &stats));
    let (_tx, rx) = tokio::sync::watch::channel(state.clone());
    let handler = GeneralHandler::new(rx, DnsStats::new());
    let src = std::net::SocketAddr::new(SRC, 5353);
    let mut bad_version = edns(4096, vec![]);
    bad_version.set_version(1);
    let mut notify = Message::new(7, hickory_proto::op::MessageType::Query, OpCode::Notify);
    notify.add_query(Query::query(
        Name::from_ascii("example.net.").unwrap(),
        RecordType::SOA,
    ));
    let mut two = Message::query();
    two.add_query(Query::query(
        Name::from_ascii("www.example.net.").unwrap(),
        RecordType::A,
    ));
    two.add_query(Query::query(
        Name::from_ascii("mail.example.net.").unwrap(),
        RecordType::A,
    ));
    let mut chaos = Message::query();
    let mut cq = Query::query(Name::from_ascii("id.server.").unwrap(), RecordType::TXT);
    cq.set_query_class(DNSClass::CH);
    chaos.add_query(cq);
    let cases = vec![
        query("www.example.net.", RecordType::A, None),
        query("WwW.ExAmple.NET.", RecordType::AAAA, None),
        query(
            "w.example.net.",
            RecordType::A,
            Some(edns(1232, vec![ecs("198.51.100.0", 24)])),
        ),
        query(
            "geo.example.net.",
            RecordType::A,
            Some(edns(4096, vec![ecs("198.51.100.7", 32)])),
        ),
        query("alias.example.net.", RecordType::A, None),
        query("big.example.net.", RecordType::TXT, Some(edns(512, vec![]))),
        query("nope.example.net.", RecordType::A, None),
        query("mail.example.net.", RecordType::AAAA, None),
        query("example.org.", RecordType::A, None),
        query("example.net.", RecordType::AXFR, None),
        query("example.net.", RecordType::ANY, None),
        query(
            "www.example.net.",
            RecordType::A,
            Some(edns(
                4096,
                vec![EdnsOption::NSID(NSIDPayload::new(Vec::new()).unwrap())],
            )),
        ),
        query("www.example.net.", RecordType::A, Some(bad_version)),
        notify.to_vec().unwrap(),
        two.to_vec().unwrap(),
        chaos.to_vec().unwrap(),
    ];
    for q in cases {
        let want =
            Message::from_vec(&respond(&state, &stats, &q, SRC, Transport::Tcp).unwrap()).unwrap();
        let Outcome::Answer(got) = handler.answer_bytes(q.clone(), src).await else {
            panic!("no answer for {:?}", Message::from_vec(&q).unwrap().queries);
        };
        let got = Message::from_vec(&got).unwrap();
        assert_eq!(
            got,
            want,
            "query {:?}",
            Message::from_vec(&q).unwrap().queries
        );
    }
    // Question names with compression pointers, one into the header (found
    // by the dns fuzz target): the answer echoes the question as decoded,
    // not the raw bytes, whose pointer would name part of the response's
    // header.
    let into_header: Vec<u8> = vec![
        3, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 250, 1, 0, 0, 0, 0, 0, 1, 3, 93, 85, 0, 0, 0,
        242, 86, 78, 192, 0, 0, 25, 46, 1, 0, 0, 0, 0, 16,
    ];
    let mut www_twice = query("www.example.net.", RecordType::A, None);
    www_twice[5] = 2;
    www_twice.extend_from_slice(&[0xc0, 12, 0, 28, 0, 1]);
    let mut only_pointer = vec![0x12, 0x34, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    only_pointer.extend_from_slice(&[0xc0, 4, 0, 1, 0, 1]);
    for q in [into_header, www_twice, only_pointer] {
        assert!(super::handler::question_has_pointer(&q));
        let sent = Message::from_vec(&q).unwrap();
        let want =
            Message::from_vec(&respond(&state, &stats, &q, SRC, Transport::Tcp).unwrap()).unwrap();
        let Outcome::Answer(got) = handler.answer_bytes(q.clone(), src).await else {
            panic!("no answer for {:?}", sent.queries);
        };
        let got = Message::from_vec(&got).unwrap();
        assert_eq!(got.queries, sent.queries);
        assert_eq!(got, want);
    }
    assert!(!super::handler::question_has_pointer(&query(
        "www.example.net.",
        RecordType::A,
        None
    )));
    // A response is dropped; bytes it cannot decode are left to FORMERR.
    let mut resp = query("www.example.net.", RecordType::A, None);
    resp[2] |= 0x80;
    assert!(matches!(
        handler.answer_bytes(resp, src).await,
        Outcome::Drop
    ));
    let q = query("www.example.net.", RecordType::A, None);
    assert!(matches!(
        handler.answer_bytes(q[..20].to_vec(), src).await,
        Outcome::Undecodable
    ));
}

fn check_no_panic(bytes: &[u8]) {
    let stats = DnsStats::default();
    thread_local! {
        static STATE: State = {
            let stats = DnsStats::default();
            state_of(&up(), &stats)
        };
    }
    STATE.with(|s| {
        let mut out = Vec::new();
        let _ = try_answer(s, &stats, bytes, SRC, &mut out);
        let _ = respond(s, &stats, bytes, SRC, Transport::Udp);
        let _ = respond(s, &stats, bytes, SRC, Transport::Tcp);
    });
    // The TCP path: hickory-server's decoding and the handler.
    thread_local! {
        static TCP: (tokio::runtime::Runtime, super::handler::GeneralHandler) = {
            let stats = DnsStats::default();
            // The receiver keeps the last state after the sender is gone.
            let rx = tokio::sync::watch::channel(Arc::new(state_of(&up(), &stats))).1;
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            (rt, super::handler::GeneralHandler::new(rx, DnsStats::new()))
        };
    }
    TCP.with(|(rt, h)| {
        let _ = rt.block_on(h.answer_bytes(bytes.to_vec(), std::net::SocketAddr::new(SRC, 53)));
    });
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        check_no_panic(&bytes);
    }

    #[test]
    fn mutated_queries_never_panic(
        edits in proptest::collection::vec((0usize..80, any::<u8>()), 1..6),
        cut in 0usize..100,
        with_ecs in any::<bool>(),
    ) {
        let e = with_ecs.then(|| edns(1232, vec![ecs("198.51.100.0", 24)]));
        let mut q = query("w.example.net.", RecordType::A, e);
        for (i, b) in edits {
            if let Some(x) = q.get_mut(i) { *x = b; }
        }
        q.truncate(cut.max(12).min(q.len()));
        check_no_panic(&q);
    }
}

/// Sends a UDP query to `addr` and decodes the answer.
pub(super) async fn udp_ask(addr: std::net::SocketAddr, q: &[u8]) -> Message {
    let local = if addr.is_ipv6() {
        "[::1]:0"
    } else {
        "127.0.0.1:0"
    };
    let sock = tokio::net::UdpSocket::bind(local).await.unwrap();
    sock.send_to(q, addr).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), sock.recv(&mut buf))
        .await
        .unwrap()
        .unwrap();
    Message::from_vec(&buf[..n]).unwrap()
}

/// A running test server and what drives it.
pub(super) struct TestServer {
    pub server: super::DnsServer,
    pub stats: Arc<DnsStats>,
    /// The snapshot it started from (every PoP up).
    pub s0: Snapshot,
    /// Sends the next snapshots; the server stops following when dropped.
    pub tx: tokio::sync::watch::Sender<Arc<Snapshot>>,
}

/// Starts a server on 127.0.0.1 (port 0) for the test zone with every PoP
/// up; `edit` adjusts the config first.
pub(super) async fn start_server(
    edit: impl FnOnce(&mut Config),
    limits: super::server::TcpLimits,
) -> TestServer {
    let mut cfg = config(vec![zone()]);
    cfg.dns.listen = vec!["127.0.0.1:0".parse().unwrap()];
    edit(&mut cfg);
    let cfg = Arc::new(cfg);
    let mut s0 = up();
    s0.config = cfg.clone();
    let (tx, rx) = tokio::sync::watch::channel(Arc::new(s0.clone()));
    let stats = DnsStats::new();
    let server = super::server::serve_with(cfg, rx, stats.clone(), limits)
        .await
        .unwrap();
    TestServer {
        server,
        stats,
        s0,
        tx,
    }
}

/// The next snapshot: PoP `pop` down (not serving DNS).
fn with_pop_down(s: &Snapshot, pop: &str) -> Snapshot {
    let mut n = s.clone();
    n.version += 1;
    let p = n.pops.get_mut(pop).unwrap();
    p.state = PopState::Down;
    p.serves_dns = false;
    n
}

/// The next snapshot, as after a reload: a config with a static A record
/// `name` → `addr` added to the first zone.
fn with_new_record(s: &Snapshot, name: &str, addr: &str) -> Snapshot {
    let mut cfg = (*s.config).clone();
    cfg.dns.zones[0]
        .records
        .push(st(name, 60, DnsType::A, &[addr]));
    let mut n = s.clone();
    n.version += 1;
    n.config = Arc::new(cfg);
    n
}

/// Asks until the answer's addresses are `want` (for up to 2 s, the
/// state is rebuilt off the query path) and asserts they are.
async fn ask_until(udp: std::net::SocketAddr, q: &[u8], want: &[&str]) {
    let mut got = Vec::new();
    for _ in 0..100 {
        got = addrs(&udp_ask(udp, q).await);
        if got == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(got, want);
}

#[tokio::test]
async fn server_answers_over_udp_and_tcp_and_follows_snapshots() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let TestServer {
        server,
        stats,
        s0,
        tx,
    } = start_server(|_| {}, Default::default()).await;
    let udp = server.udp_addrs()[0];
    let tcp = server.tcp_addrs()[0];
    assert_eq!(udp.port(), tcp.port());

    let q = query("www.example.net.", RecordType::A, None);
    assert_eq!(addrs(&udp_ask(udp, &q).await), vec!["192.0.2.1"]);

    let mut conn = tokio::net::TcpStream::connect(tcp).await.unwrap();
    let big = query("big.example.net.", RecordType::TXT, None);
    conn.write_all(&(big.len() as u16).to_be_bytes())
        .await
        .unwrap();
    conn.write_all(&big).await.unwrap();
    let len = conn.read_u16().await.unwrap() as usize;
    let mut buf = vec![0u8; len];
    conn.read_exact(&mut buf).await.unwrap();
    let m = Message::from_vec(&buf).unwrap();
    assert!(!m.metadata.truncation);
    assert_eq!(m.answers.len(), 1);

    // PoP a goes down: the next answer is b's.
    let s1 = with_pop_down(&s0, "a");
    tx.send(Arc::new(s1.clone())).unwrap();
    ask_until(udp, &q, &["192.0.2.2"]).await;
    let samples = stats.samples();
    let failover = samples
        .iter()
        .find(|s| s.name == "anypop_dns_steered_answers_total" && s.labels[0].1 == "failover")
        .unwrap();
    assert!(failover.value >= 2);
    assert!(stats.fast_path.load(std::sync::atomic::Ordering::Relaxed) >= 2);

    // A reload arrives as a snapshot with a new config: new records answer.
    let s2 = with_new_record(&s1, "new.example.net.", "192.0.2.99");
    tx.send(Arc::new(s2)).unwrap();
    let q = query("new.example.net.", RecordType::A, None);
    ask_until(udp, &q, &["192.0.2.99"]).await;
    server.shutdown();
}

/// Asks `n` times, each from a new socket (a new source port, so the
/// kernel spreads the queries over the UDP workers); every answer must be
/// `want`, and every worker must have received some of them.
async fn every_worker_answers(
    stats: &DnsStats,
    udp: std::net::SocketAddr,
    q: &[u8],
    n: usize,
    want: &[&str],
) {
    let counts = || -> Vec<u64> { stats.udp_worker_counts().iter().map(|c| c.2).collect() };
    let before = counts();
    for i in 0..n {
        assert_eq!(addrs(&udp_ask(udp, q).await), want, "query {i}");
    }
    let after = counts();
    assert_eq!(after.len(), 2, "{after:?}");
    for (w, (b, a)) in before.iter().zip(&after).enumerate() {
        assert!(a > b, "worker {w} got none of {n}: {before:?} -> {after:?}");
    }
}

#[tokio::test]
async fn two_udp_workers_answer_alike_and_follow_snapshots_and_reloads() {
    let TestServer {
        server,
        stats,
        s0,
        tx,
    } = start_server(|c| c.dns.udp_workers = Some(2), Default::default()).await;
    let udp = server.udp_addrs()[0];
    let q = query("www.example.net.", RecordType::A, None);
    // 64 source ports: the chance that one worker gets none is 2 × 2^-64.
    every_worker_answers(&stats, udp, &q, 64, &["192.0.2.1"]).await;

    // A snapshot change (a down) reaches both workers.
    let s1 = with_pop_down(&s0, "a");
    tx.send(Arc::new(s1.clone())).unwrap();
    ask_until(udp, &q, &["192.0.2.2"]).await;
    every_worker_answers(&stats, udp, &q, 64, &["192.0.2.2"]).await;

    // A reload (a new config in the snapshot) too.
    tx.send(Arc::new(with_new_record(
        &s1,
        "new.example.net.",
        "192.0.2.99",
    )))
    .unwrap();
    let q = query("new.example.net.", RecordType::A, None);
    ask_until(udp, &q, &["192.0.2.99"]).await;
    every_worker_answers(&stats, udp, &q, 64, &["192.0.2.99"]).await;
    server.shutdown();
}

#[tokio::test]
async fn server_listens_on_ipv4_and_ipv6() {
    if std::net::UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("skipping: no IPv6 loopback");
        return;
    }
    let mut cfg = config(vec![zone()]);
    cfg.dns.listen = vec!["127.0.0.1:0".parse().unwrap(), "[::1]:0".parse().unwrap()];
    let cfg = Arc::new(cfg);
    let mut s0 = up();
    s0.config = cfg.clone();
    let (_tx, rx) = tokio::sync::watch::channel(Arc::new(s0));
    let server = super::serve(cfg, rx, DnsStats::new()).await.unwrap();
    assert_eq!(server.udp_addrs().len(), 2);
    let v6 = server.udp_addrs()[1];
    assert!(v6.is_ipv6());
    let aaaa = query("www.example.net.", RecordType::AAAA, None);
    assert_eq!(addrs(&udp_ask(v6, &aaaa).await), vec!["2001:db8::a"]);
    // A second server on the same address: a clear bind error (TCP is bound
    // first, before UDP sockets could join the first server's SO_REUSEPORT
    // group), and the first server keeps every datagram.
    let mut cfg2 = config(vec![zone()]);
    cfg2.dns.listen = vec![v6];
    let mut s1 = up();
    s1.config = Arc::new(cfg2.clone());
    let (_tx1, rx1) = tokio::sync::watch::channel(Arc::new(s1));
    let err = super::serve(Arc::new(cfg2), rx1, DnsStats::new())
        .await
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("cannot listen on tcp [::1]"),
        "{err}"
    );
    for _ in 0..8 {
        assert_eq!(addrs(&udp_ask(v6, &aaaa).await), vec!["2001:db8::a"]);
    }
    server.shutdown();
}

#[test]
fn explain_reports_policy_and_exclusions() {
    let s = snap(&[
        ("a", PopState::Down),
        ("b", PopState::Up),
        ("c", PopState::Disabled),
    ]);
    let client = super::Client::from_ecs("198.51.100.0".parse().unwrap(), 24);
    let e = super::explain(&s, Instant::now(), "alias.example.net", "a", client).unwrap();
    assert_eq!(e.rcode, "NOERROR");
    let st = e.steering.unwrap();
    assert_eq!(st.record, "www.example.net.");
    assert_eq!(st.policy, "failover");
    assert_eq!(st.chosen, vec![name("b")]);
    assert_eq!(st.excluded.len(), 2);
    assert!(!st.fail_open);
    assert_eq!(st.excluded[0].reason, super::policy::Exclusion::Down);
    assert_eq!(st.excluded[1].reason, super::policy::Exclusion::Disabled);
    let e = super::explain(&s, Instant::now(), "nope.example.net", "AAAA", client).unwrap();
    assert_eq!(e.rcode, "NXDOMAIN");
    assert!(super::explain(&s, Instant::now(), "x.example.net", "BOGUS", client).is_err());
}

#[test]
fn tcp_pool_caps_per_client_and_evicts_the_longest_idle() {
    use super::server::{Rejected, TcpLimits, TcpPool};
    let pool = TcpPool::new(TcpLimits {
        max_connections: 3,
        max_per_client: 2,
        ..TcpLimits::default()
    });
    let a: IpAddr = "192.0.2.1".parse().unwrap();
    let b: IpAddr = "192.0.2.2".parse().unwrap();
    let c: IpAddr = "192.0.2.3".parse().unwrap();
    let a1 = pool.admit(a).unwrap();
    let a2 = pool.admit(a).unwrap();
    assert_eq!(pool.admit(a).err(), Some(Rejected::PerClient));
    // IPv6 clients are counted per /64.
    let v6a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
    let v6b: IpAddr = "2001:db8:1:2::ffff".parse().unwrap();
    let v6 = TcpPool::new(TcpLimits {
        max_connections: 10,
        max_per_client: 1,
        ..TcpLimits::default()
    });
    let _x = v6.admit(v6a).unwrap();
    assert_eq!(v6.admit(v6b).err(), Some(Rejected::PerClient));
    assert!(v6.admit("2001:db8:1:3::1".parse().unwrap()).is_ok());

    std::thread::sleep(Duration::from_millis(5));
    a1.touch(); // a2 is now the longest idle
    let b1 = pool.admit(b).unwrap();
    assert_eq!(pool.len(), 3);
    // Full: the newcomer gets in, a2 (idle longest) is told to close.
    let c1 = pool.admit(c).unwrap();
    assert_eq!(pool.len(), 3);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let notified = |t: &super::server::PoolTicket| {
        rt.block_on(async {
            tokio::time::timeout(Duration::from_millis(50), t.close.notified())
                .await
                .is_ok()
        })
    };
    assert!(notified(&a2));
    assert!(!notified(&a1));
    assert!(!notified(&b1));
    assert!(!notified(&c1));
    // a's count went down with the eviction: a may connect again.
    drop(a2);
    let _a3 = pool.admit(a).unwrap();
    drop(b1);
    drop(c1);
    drop(a1);
    assert_eq!(pool.len(), 1);
}

/// Sends one query over an open TCP connection and reads the answer.
pub(super) async fn tcp_ask(
    conn: &mut tokio::net::TcpStream,
    q: &[u8],
) -> std::io::Result<Message> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut framed = (q.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(q);
    conn.write_all(&framed).await?;
    let len = conn.read_u16().await? as usize;
    let mut buf = vec![0u8; len];
    conn.read_exact(&mut buf).await?;
    Message::from_vec(&buf).map_err(|e| std::io::Error::other(e.to_string()))
}

pub(super) async fn tcp_from(
    src: &str,
    to: std::net::SocketAddr,
) -> std::io::Result<tokio::net::TcpStream> {
    let sock = tokio::net::TcpSocket::new_v4()?;
    sock.bind(format!("{src}:0").parse().map_err(std::io::Error::other)?)?;
    sock.connect(to).await
}

#[tokio::test]
async fn tcp_idle_connections_of_one_client_cannot_starve_others() {
    use super::server::{TCP_MAX_CONNECTIONS, TCP_MAX_PER_CLIENT};
    use tokio::io::AsyncReadExt;
    let TestServer { server, .. } = start_server(|_| {}, Default::default()).await;
    let tcp = server.tcp_addrs()[0];
    let q = query("www.example.net.", RecordType::A, None);

    // 300 idle connections from 127.0.0.1: only TCP_MAX_PER_CLIENT stay.
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(tcp_from("127.0.0.1", tcp).await.unwrap());
    }
    let mut other = tcp_from("127.0.0.2", tcp).await.unwrap();
    let m = tokio::time::timeout(Duration::from_secs(5), tcp_ask(&mut other, &q))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(addrs(&m), vec!["192.0.2.1"]);
    let mut open = 0;
    for c in &mut idle {
        let mut b = [0u8; 1];
        match tokio::time::timeout(Duration::from_millis(20), c.read(&mut b)).await {
            Err(_) => open += 1,     // still open, nothing to read
            Ok(Ok(0) | Err(_)) => {} // closed by the server
            Ok(Ok(_)) => panic!("unexpected data"),
        }
    }
    assert_eq!(open, TCP_MAX_PER_CLIENT);
    drop(idle);

    // Fill the listener from many clients: the newest connections keep
    // working, a newcomer is served, and the oldest idle ones are closed.
    let clients = TCP_MAX_CONNECTIONS / TCP_MAX_PER_CLIENT + 1;
    let mut conns = Vec::new();
    for i in 0..clients {
        for _ in 0..TCP_MAX_PER_CLIENT {
            conns.push(tcp_from(&format!("127.0.1.{}", i + 1), tcp).await.unwrap());
        }
    }
    assert!(conns.len() > TCP_MAX_CONNECTIONS);
    let mut newcomer = tcp_from("127.0.2.1", tcp).await.unwrap();
    let m = tokio::time::timeout(Duration::from_secs(5), tcp_ask(&mut newcomer, &q))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(addrs(&m), vec!["192.0.2.1"]);
    let last = conns.last_mut().unwrap();
    assert_eq!(addrs(&tcp_ask(last, &q).await.unwrap()), vec!["192.0.2.1"]);
    let mut b = [0u8; 1];
    let first = tokio::time::timeout(Duration::from_secs(5), conns[0].read(&mut b))
        .await
        .expect("the oldest idle connection is closed");
    assert!(matches!(first, Ok(0) | Err(_)));
    server.shutdown();
}

#[test]
fn record_without_ipv6_is_nodata_not_fail_open() {
    let mut z = zone();
    z.records.push(steered(
        "v4only.example.net.",
        SteeringPolicy::Failover {
            pops: vec![name("c")],
        },
    ));
    let s = snapshot(config(vec![z]), &[("c", PopState::Up)], Instant::now());
    let stats = DnsStats::default();
    let state = state_of(&s, &stats);
    let q = query("v4only.example.net.", RecordType::AAAA, None);
    for m in [
        general(&state, &q),
        fast(&state, &q).unwrap_or_else(|| general(&state, &q)),
    ] {
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.answers.is_empty());
        assert_eq!(m.authorities.len(), 1);
        assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
    }
    // Answering AAAA counts no fail-open answer.
    let counted = DnsStats::default();
    respond(&state, &counted, &q, SRC, Transport::Udp).unwrap();
    assert_eq!(
        counted
            .fail_open_answers
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    let client = super::Client::from_source(SRC);
    let e = super::explain(&s, Instant::now(), "v4only.example.net", "AAAA", client).unwrap();
    let st = e.steering.unwrap();
    assert!(!st.fail_open);
    assert_eq!(
        st.decision,
        "no PoP of the record has an IPv6 address: NODATA"
    );
}

/// A zone with a country/continent `geo` record and a `nearest` record,
/// in the test config with the test database (a Frankfurt, b New York,
/// c Tokyo).
fn geo_snapshot(states: &[(&str, PopState)]) -> Snapshot {
    let mut z = zone();
    z.records = vec![
        steered(
            "cc.example.net.",
            SteeringPolicy::Geo {
                map: vec![("198.51.100.128/25".parse().unwrap(), vec![name("c")])],
                countries: vec![("DE".into(), vec![name("b")])],
                continents: vec![("EU".into(), vec![name("c")])],
                default: vec![name("a")],
            },
        ),
        steered(
            "near.example.net.",
            SteeringPolicy::Nearest {
                pops: vec![name("a"), name("b"), name("c")],
                default: vec![name("b")],
            },
        ),
    ];
    let mut cfg = super::policy::tests::geo_config();
    cfg.dns.zones = vec![z];
    snapshot(cfg, states, Instant::now())
}

#[test]
fn geo_country_and_nearest_on_fast_and_general_paths() {
    let stats = DnsStats::default();
    let s = state_of(
        &geo_snapshot(&[
            ("a", PopState::Up),
            ("b", PopState::Up),
            ("c", PopState::Up),
        ]),
        &stats,
    );
    // (record, ECS client, expected address, expected scope)
    let cases = [
        ("cc", "192.0.2.0", 24, "192.0.2.2", 24),      // DE → b
        ("cc", "203.0.113.0", 24, "192.0.2.3", 24),    // FR → EU → c
        ("cc", "198.51.100.0", 24, "192.0.2.1", 24),   // US → default a
        ("cc", "198.51.100.128", 25, "192.0.2.3", 25), // subnet rule → c
        ("near", "192.0.2.0", 24, "192.0.2.1", 24),    // Frankfurt → a
        ("near", "198.51.100.0", 24, "192.0.2.2", 24), // New York → b
        ("near", "203.0.113.0", 24, "192.0.2.2", 24),  // no coordinates → b
        ("near", "2001:db8:2::", 48, "192.0.2.3", 48), // Sydney → Tokyo c
    ];
    for (rec, addr, prefix, want, want_scope) in cases {
        let q = query(
            &format!("{rec}.example.net."),
            RecordType::A,
            Some(edns(1232, vec![ecs(addr, prefix)])),
        );
        let g = general(&s, &q);
        assert_eq!(addrs(&g), vec![want], "{rec} {addr}/{prefix}");
        assert_eq!(scope(&g), Some(want_scope), "{rec} {addr}/{prefix}");
        let f = fast(&s, &q).expect("the fast path takes geo and nearest answers");
        assert_eq!(f.answers, g.answers, "{rec} {addr}/{prefix}");
        assert_eq!(f.edns, g.edns, "{rec} {addr}/{prefix}");
    }
    // Without ECS the source address (203.0.113.7, FR) decides.
    let q = query("near.example.net.", RecordType::A, None);
    assert_eq!(addrs(&fast(&s, &q).unwrap()), vec!["192.0.2.2"]);
    // AAAA: c has no IPv6 address; a Tokyo client gets Frankfurt.
    let q = query(
        "near.example.net.",
        RecordType::AAAA,
        Some(edns(1232, vec![ecs("2001:db8:1::", 48)])),
    );
    assert_eq!(addrs(&general(&s, &q)), vec!["2001:db8::a"]);
}

#[test]
fn explain_nearest_names_the_pop_and_distances() {
    let s = geo_snapshot(&[
        ("a", PopState::Up),
        ("b", PopState::Up),
        ("c", PopState::Down),
    ]);
    let client = super::Client::from_ecs("2001:db8:2::".parse().unwrap(), 48);
    let e = super::explain(&s, Instant::now(), "near.example.net", "A", client).unwrap();
    let st = e.steering.unwrap();
    assert_eq!(st.policy, "nearest");
    // Sydney: c (Tokyo) is down, so Frankfurt (16 500 km) loses to New
    // York (16 000 km).
    assert_eq!(st.chosen, vec![name("b")]);
    assert_eq!(st.distances.len(), 2);
    assert_eq!(st.distances[0].pop, name("b"));
    assert!(
        (15_900.0..16_100.0).contains(&st.distances[0].km),
        "{:?}",
        st.distances
    );
    assert_eq!(st.distances[1].pop, name("a"));
    assert!(st.distances[1].km > st.distances[0].km);
    assert!(st.decision.starts_with("nearest PoP b"), "{}", st.decision);
    assert!(st.decision.contains("country AU"), "{}", st.decision);
    let km = |i: usize| format!("{} {:.0} km", st.distances[i].pop, st.distances[i].km);
    assert!(
        st.decision
            .contains(&format!("distances: {}, {}", km(0), km(1))),
        "{}",
        st.decision
    );
    assert_eq!(e.ecs_scope, 48);
    assert_eq!(st.rule, super::policy::Rule::Nearest);
    assert_eq!(
        st.geo
            .and_then(|g| g.country)
            .map(|c| c.as_str().to_string()),
        Some("AU".to_string())
    );

    // Country rule: the explanation says which rule and what the database said.
    let client = super::Client::from_ecs("192.0.2.0".parse().unwrap(), 24);
    let e = super::explain(&s, Instant::now(), "cc.example.net", "A", client).unwrap();
    let st = e.steering.unwrap();
    assert_eq!(st.chosen, vec![name("b")]);
    assert!(
        st.decision.starts_with("country rule DE: b"),
        "{}",
        st.decision
    );
    assert!(st.distances.is_empty());
}

#[tokio::test]
async fn server_rate_limits_udp_per_block_with_slip() {
    let rate_limit = RateLimit {
        responses_per_second: 5,
        slip: 2,
        window: Duration::from_secs(60),
    };
    let TestServer { server, stats, .. } =
        start_server(|c| c.dns.rate_limit = Some(rate_limit), Default::default()).await;
    let udp = server.udp_addrs()[0];
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let q = query("www.example.net.", RecordType::A, None);
    for _ in 0..30 {
        sock.send_to(&q, udp).await.unwrap();
    }
    let (mut full, mut tc) = (0, 0);
    let mut buf = vec![0u8; 4096];
    while let Ok(Ok(n)) =
        tokio::time::timeout(Duration::from_millis(500), sock.recv(&mut buf)).await
    {
        let m = Message::from_vec(&buf[..n]).unwrap();
        if m.metadata.truncation {
            assert!(m.answers.is_empty());
            assert_eq!(m.queries.len(), 1);
            tc += 1;
        } else {
            assert_eq!(addrs(&m), vec!["192.0.2.1"]);
            full += 1;
        }
    }
    use std::sync::atomic::Ordering::Relaxed;
    // 5 answered (the burst; 30 queries take well under the second it
    // would take to earn a 6th, give or take one), the rest limited, every
    // 2nd of those slipped.
    assert!((5..=6).contains(&full), "full {full} tc {tc}");
    let limited = 30 - full;
    assert_eq!(tc, limited / 2, "full {full} tc {tc}");
    assert_eq!(stats.rate_limit_slips.load(Relaxed), tc as u64);
    assert_eq!(stats.rate_limited.load(Relaxed), (limited - tc) as u64);
    // TCP is never limited.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(server.tcp_addrs()[0])
        .await
        .unwrap();
    for _ in 0..10 {
        conn.write_all(&(q.len() as u16).to_be_bytes())
            .await
            .unwrap();
        conn.write_all(&q).await.unwrap();
        let len = conn.read_u16().await.unwrap() as usize;
        let mut b = vec![0u8; len];
        conn.read_exact(&mut b).await.unwrap();
        assert_eq!(addrs(&Message::from_vec(&b).unwrap()), vec!["192.0.2.1"]);
    }
    server.shutdown();
}
