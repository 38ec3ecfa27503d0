//! The general answer path: any query, decoded and encoded with
//! hickory-proto. Authoritative semantics live here (AA, NXDOMAIN vs NODATA
//! with the SOA, REFUSED outside our zones, CNAME chains, minimal ANY,
//! CHAOS identity, NSID, ECS, truncation). The fast path only replays bytes
//! this module produced, so both paths answer alike by construction.

use std::net::IpAddr;
use std::sync::atomic::Ordering::Relaxed;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption, NSIDPayload};
use hickory_proto::rr::rdata::{A, AAAA, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use super::policy::{Client, Family};
use super::state::State;
use super::stats::DnsStats;
use super::zone::key_of;

/// The largest UDP response we send, whatever the client offers
/// (DNS flag day 2020: avoids IP fragmentation).
pub const MAX_UDP_PAYLOAD: u16 = 1232;
/// Maximum CNAME chain length followed inside our zones.
const MAX_CHAIN: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// Which steered record (and variant) an answer used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SteeredUse {
    pub zone: usize,
    pub rec: usize,
    pub family: Family,
    pub variant: usize,
}

/// The outcome of looking a question up in the zones.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub rcode: ResponseCode,
    pub authoritative: bool,
    pub answers: Vec<Record>,
    pub authority: Vec<Record>,
    /// ECS scope prefix length the answer is valid for.
    pub scope: u8,
    pub steered: Option<SteeredUse>,
    /// The zone (index) the question fell in.
    pub zone: Option<usize>,
}

impl Resolved {
    fn refused() -> Resolved {
        Resolved {
            rcode: ResponseCode::Refused,
            authoritative: false,
            answers: Vec::new(),
            authority: Vec::new(),
            scope: 0,
            steered: None,
            zone: None,
        }
    }
}

/// Looks up (qname, qtype) for `client`. `forced` picks a steering variant
/// instead of selecting it from the client (used to pre-encode answers).
pub fn resolve(
    state: &State,
    qname: &Name,
    qtype: RecordType,
    client: &Client,
    forced: Option<usize>,
) -> Resolved {
    let mut out = Resolved::refused();
    let mut cur = qname.clone();
    for step in 0..MAX_CHAIN {
        let key = key_of(&cur);
        let Some(zi) = state.zones.find(&key) else {
            // First name outside our zones: REFUSED; a CNAME target outside
            // them: the chain simply ends here.
            return out;
        };
        let zone = &state.zones.zones[zi];
        if step == 0 {
            out.rcode = ResponseCode::NoError;
            out.authoritative = true;
            out.zone = Some(zi);
        }
        let Some(node) = zone.nodes.get(&key) else {
            if !zone.ents.contains(&key) {
                out.rcode = ResponseCode::NXDomain;
            }
            out.authority.push(zone.soa.clone());
            return out;
        };
        let owned = |rs: &[Record]| -> Vec<Record> {
            rs.iter()
                .map(|r| {
                    let mut r = r.clone();
                    r.name = cur.clone();
                    r
                })
                .collect()
        };
        // Steered A/AAAA (and ANY, answered with one RRset: RFC 8482).
        let steered_family = match (node.steered, qtype) {
            (Some(_), RecordType::A) | (Some(_), RecordType::ANY) => Some(Family::V4),
            (Some(_), RecordType::AAAA) => Some(Family::V6),
            _ => None,
        };
        if let (Some(ri), Some(family)) = (node.steered, steered_family) {
            let Some(plan) = state.plan(zi, ri, family) else {
                out.rcode = ResponseCode::ServFail;
                return out;
            };
            let (variant, scope) = match forced {
                Some(v) => (v, 0),
                None => plan.select(client),
            };
            out.scope = out.scope.max(scope);
            out.steered = Some(SteeredUse {
                zone: zi,
                rec: ri,
                family,
                variant,
            });
            let addrs = plan
                .variants
                .get(variant)
                .map(|v| v.addrs.as_slice())
                .unwrap_or(&[]);
            if addrs.is_empty() {
                out.authority.push(zone.soa.clone());
            }
            for a in addrs {
                let rd = match a {
                    IpAddr::V4(v4) => RData::A(A(*v4)),
                    IpAddr::V6(v6) => RData::AAAA(AAAA(*v6)),
                };
                out.answers
                    .push(Record::from_rdata(cur.clone(), plan.ttl, rd));
            }
            return out;
        }
        if qtype == RecordType::ANY {
            let first = node
                .cname()
                .map(std::slice::from_ref)
                .or_else(|| node.rrsets.values().next().map(|v| v.as_slice()));
            match first {
                Some(rs) => out.answers.extend(owned(rs)),
                None => out.authority.push(zone.soa.clone()),
            }
            return out;
        }
        if let Some(rs) = node.rrsets.get(&u16::from(qtype)) {
            out.answers.extend(owned(rs));
            return out;
        }
        if let Some(c) = node.cname() {
            out.answers.extend(owned(std::slice::from_ref(c)));
            match &c.data {
                RData::CNAME(t) => cur = t.0.clone(),
                _ => return out,
            }
            continue;
        }
        // The name exists without data of this type: NODATA.
        out.authority.push(zone.soa.clone());
        return out;
    }
    out
}

/// The CHAOS identity answer (`id.server.`, `hostname.bind.`), if configured.
fn chaos(state: &State, q: &Query) -> (ResponseCode, Vec<Record>) {
    let key = key_of(q.name());
    let Some(text) = &state.config.dns.identity.chaos else {
        return (ResponseCode::Refused, Vec::new());
    };
    if !(key == "id.server." || key == "hostname.bind.") {
        return (ResponseCode::Refused, Vec::new());
    }
    if !matches!(q.query_type(), RecordType::TXT | RecordType::ANY) {
        return (ResponseCode::NoError, Vec::new());
    }
    let mut r = Record::from_rdata(
        q.name().clone(),
        0,
        RData::TXT(TXT::new(vec![text.clone()])),
    );
    r.dns_class = DNSClass::CH;
    (ResponseCode::NoError, vec![r])
}

/// The client a query is steered for.
pub fn client_of(edns: Option<&Edns>, src: IpAddr) -> Client {
    match edns.and_then(|e| e.option(EdnsCode::Subnet)) {
        Some(EdnsOption::Subnet(cs)) => Client::from_ecs(cs.addr(), cs.source_prefix()),
        _ => Client::from_source(src),
    }
}

/// Answers one DNS message. `None`: drop it (not a query, or too broken to
/// even echo an ID).
pub fn respond(
    state: &State,
    stats: &DnsStats,
    req: &[u8],
    src: IpAddr,
    transport: Transport,
) -> Option<Vec<u8>> {
    let msg = match Message::from_vec(req) {
        Ok(m) => m,
        Err(_) => {
            // Answer FORMERR if the header is a query's; otherwise drop.
            if req.len() >= 12 && req[2] & 0x80 == 0 {
                let id = u16::from_be_bytes([req[0], req[1]]);
                let opcode = OpCode::from_u8((req[2] >> 3) & 0x0f);
                let mut m = Message::error_msg(id, opcode, ResponseCode::FormErr);
                m.metadata.recursion_desired = req[2] & 0x01 != 0;
                stats.count_rcode(ResponseCode::FormErr);
                return m.to_vec().ok();
            }
            stats.dropped.fetch_add(1, Relaxed);
            return None;
        }
    };
    if msg.metadata.message_type != MessageType::Query {
        stats.dropped.fetch_add(1, Relaxed);
        return None;
    }
    let (resp, resolved) = answer_message(state, &msg, src, None);
    if let Some(r) = &resolved {
        count_steered(state, stats, r);
    }
    stats.count_rcode(resp.metadata.response_code);
    let limit = match transport {
        Transport::Tcp => u16::MAX as usize,
        Transport::Udp => match &msg.edns {
            Some(e) => e.max_payload().clamp(512, MAX_UDP_PAYLOAD) as usize,
            None => 512,
        },
    };
    let bytes = resp.to_vec().ok()?;
    if bytes.len() <= limit {
        return Some(bytes);
    }
    stats.truncated.fetch_add(1, Relaxed);
    let mut t = resp.truncate();
    t.metadata.truncation = true;
    t.to_vec().ok()
}

/// Counts a steered answer per policy, PoP and fail-open.
pub(crate) fn count_steered(state: &State, stats: &DnsStats, r: &Resolved) {
    let Some(s) = r.steered else { return };
    let Some(plan) = state.plan(s.zone, s.rec, s.family) else {
        return;
    };
    stats.count_policy(plan.policy);
    if plan.fail_open.is_some() {
        stats.fail_open_answers.fetch_add(1, Relaxed);
    }
    if let Some(v) = plan.variants.get(s.variant) {
        for p in &v.pops {
            if let Some(c) = state.pop_counters.get(p) {
                c.fetch_add(1, Relaxed);
            }
        }
    }
}

/// Builds the response message to a decoded query. Also returns the zone
/// lookup result for IN queries that reached it.
pub fn answer_message(
    state: &State,
    msg: &Message,
    src: IpAddr,
    forced: Option<usize>,
) -> (Message, Option<Resolved>) {
    let mut resp = Message::response(msg.metadata.id, msg.metadata.op_code);
    resp.metadata.recursion_desired = msg.metadata.recursion_desired;
    resp.metadata.checking_disabled = msg.metadata.checking_disabled;
    resp.add_queries(msg.queries.iter().cloned());

    // EDNS: answer with our own OPT when the query had one.
    let mut resp_edns = msg.edns.as_ref().map(|_| {
        let mut e = Edns::new();
        e.set_max_payload(MAX_UDP_PAYLOAD);
        e
    });
    if let (Some(req), Some(e)) = (&msg.edns, resp_edns.as_mut()) {
        if req.option(EdnsCode::NSID).is_some() {
            if let Some(nsid) = &state.config.dns.identity.nsid {
                if let Ok(p) = NSIDPayload::new(nsid.as_bytes()) {
                    e.options_mut().insert(EdnsOption::NSID(p));
                }
            }
        }
    }
    let finish = |mut resp: Message, rcode: ResponseCode, edns: Option<Edns>| {
        resp.metadata.response_code = rcode;
        if let Some(e) = edns {
            resp.set_edns(e);
        }
        resp
    };

    if let Some(req) = &msg.edns {
        if req.version() > 0 {
            return (finish(resp, ResponseCode::BADVERS, resp_edns), None);
        }
    }
    if msg.metadata.op_code != OpCode::Query {
        return (finish(resp, ResponseCode::NotImp, resp_edns), None);
    }
    if msg.queries.len() != 1 || !msg.answers.is_empty() || !msg.authorities.is_empty() {
        return (finish(resp, ResponseCode::FormErr, resp_edns), None);
    }
    let q = &msg.queries[0];
    let ecs = match msg.edns.as_ref().and_then(|e| e.option(EdnsCode::Subnet)) {
        Some(EdnsOption::Subnet(cs)) => {
            let max = if cs.addr().is_ipv4() { 32 } else { 128 };
            if cs.scope_prefix() != 0 || cs.source_prefix() > max {
                return (finish(resp, ResponseCode::FormErr, resp_edns), None);
            }
            Some(*cs)
        }
        _ => None,
    };
    match q.query_class() {
        DNSClass::CH => {
            let (rc, answers) = chaos(state, q);
            resp.metadata.authoritative = rc == ResponseCode::NoError;
            resp.add_answers(answers);
            return (finish(resp, rc, resp_edns), None);
        }
        DNSClass::IN => {}
        _ => return (finish(resp, ResponseCode::Refused, resp_edns), None),
    }
    if matches!(q.query_type(), RecordType::AXFR | RecordType::IXFR) {
        return (finish(resp, ResponseCode::Refused, resp_edns), None);
    }
    let client = client_of(msg.edns.as_ref(), src);
    let r = resolve(state, q.name(), q.query_type(), &client, forced);
    resp.metadata.authoritative = r.authoritative;
    resp.add_answers(r.answers.iter().cloned());
    resp.add_authorities(r.authority.iter().cloned());
    if let (Some(cs), Some(e)) = (ecs, resp_edns.as_mut()) {
        let scope = r.scope.min(cs.source_prefix());
        e.options_mut().insert(EdnsOption::Subnet(ClientSubnet::new(
            cs.addr(),
            cs.source_prefix(),
            scope,
        )));
    }
    let rc = r.rcode;
    (finish(resp, rc, resp_edns), Some(r))
}
