//! The UDP fast path: responses encoded once per state (per name, type and
//! steering variant) by the general path, replayed per query with only the
//! ID, RD/CD bits and the client's question bytes (0x20 case preserved)
//! patched in, plus an OPT record (with the ECS option and its scope) when
//! the query had EDNS. Negative answers (NXDOMAIN and NODATA with the SOA,
//! REFUSED outside our zones) are written per query by [`super::negative`]
//! from data prepared with the zones.
//!
//! The parser accepts only the plain shape of a standard query: one
//! question, uncompressed name, class IN, no answer/authority records, at
//! most one OPT (version 0) whose options are ECS or ignorable. Anything
//! else, or a response that would not fit, returns `false` and the caller
//! uses the general path. No allocation per query: the output buffer is the
//! caller's.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};

use super::answer::{answer_message, MAX_UDP_PAYLOAD};
use super::fnv::Fnv;
use super::negative::NegativeTable;
use super::policy::{Client, Family};
use super::state::State;
use super::stats::DnsStats;

/// (zone, steered record, family) of a steered answer.
type SteeredKey = (usize, usize, Family);

/// One pre-encoded (name, type).
pub struct FastEntry {
    /// Steered record whose plan selects the variant; `None`: static.
    steered: Option<SteeredKey>,
    /// One complete response per variant (ID 0, lower-case question).
    blobs: Vec<Vec<u8>>,
    /// PoP answer counters per variant.
    counters: Vec<Vec<Arc<AtomicU64>>>,
    policy: Option<&'static str>,
    fail_open: bool,
}

/// Pre-encoded answers keyed by lower-case wire name + big-endian qtype,
/// and what negative answers need.
#[derive(Default)]
pub struct FastTable {
    map: HashMap<Box<[u8]>, Arc<FastEntry>, BuildHasherDefault<Fnv>>,
    negative: Arc<NegativeTable>,
}

/// Encodes a text name (`www.example.net.`) as uncompressed wire labels.
fn wire_name(key: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(key.len() + 1);
    for label in key
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        if label.len() > 63 || label.contains('\\') {
            return None;
        }
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    (out.len() <= 255).then_some(out)
}

impl FastTable {
    /// Encodes the answers of `state`. Static answers and negative-answer
    /// data depend only on the zones, so they are taken over from `prev`
    /// when its zones are the same.
    pub fn build(state: &State, prev: Option<&State>) -> FastTable {
        let reuse = prev.filter(|p| Arc::ptr_eq(&p.zones, &state.zones));
        let mut t = FastTable {
            map: HashMap::default(),
            negative: match reuse {
                Some(p) => p.fast.negative.clone(),
                None => Arc::new(NegativeTable::build(&state.zones)),
            },
        };
        let src = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        for (zi, zone) in state.zones.zones.iter().enumerate() {
            for (key, node) in &zone.nodes {
                let (Ok(name), Some(wire)) = (Name::from_ascii(key), wire_name(key)) else {
                    continue;
                };
                let mut qtypes: Vec<(RecordType, Option<SteeredKey>)> = Vec::new();
                if let Some(ri) = node.steered {
                    qtypes.push((RecordType::A, Some((zi, ri, Family::V4))));
                    qtypes.push((RecordType::AAAA, Some((zi, ri, Family::V6))));
                }
                if node.cname().is_none() {
                    for t in node.rrsets.keys() {
                        let rt = RecordType::from(*t);
                        if !qtypes.iter().any(|(q, _)| *q == rt) {
                            qtypes.push((rt, None));
                        }
                    }
                }
                for (qtype, steered) in qtypes {
                    let mut k = wire.clone();
                    k.extend_from_slice(&u16::from(qtype).to_be_bytes());
                    if steered.is_none() {
                        if let Some(e) = reuse.and_then(|p| p.fast.map.get(k.as_slice())) {
                            t.map.insert(k.into_boxed_slice(), e.clone());
                            continue;
                        }
                    }
                    let plan = steered.and_then(|(z, r, f)| state.plan(z, r, f));
                    let n = plan.map_or(1, |p| p.variants.len().max(1));
                    let mut entry = FastEntry {
                        steered,
                        blobs: Vec::with_capacity(n),
                        counters: Vec::with_capacity(n),
                        policy: plan.map(|p| p.policy),
                        fail_open: plan.is_some_and(|p| p.fail_open.is_some()),
                    };
                    let mut ok = true;
                    for v in 0..n {
                        let mut q = Message::query();
                        q.metadata.id = 0;
                        q.add_query(Query::query(name.clone(), qtype));
                        let (resp, _) = answer_message(state, &q, src, Some(v));
                        match resp.to_vec() {
                            Ok(b) if b.len() <= MAX_UDP_PAYLOAD as usize => entry.blobs.push(b),
                            _ => {
                                ok = false;
                                break;
                            }
                        }
                        let counters = plan
                            .and_then(|p| p.variants.get(v))
                            .map(|var| {
                                var.pops
                                    .iter()
                                    .filter_map(|p| state.pop_counters.get(p).cloned())
                                    .collect()
                            })
                            .unwrap_or_default();
                        entry.counters.push(counters);
                    }
                    if ok {
                        t.map.insert(k.into_boxed_slice(), Arc::new(entry));
                    }
                }
            }
        }
        t
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// The entry for a wire name + qtype key (tests).
    #[cfg(test)]
    pub(crate) fn get(&self, name: &str, qtype: RecordType) -> Option<&Arc<FastEntry>> {
        let mut k = wire_name(name)?;
        k.extend_from_slice(&u16::from(qtype).to_be_bytes());
        self.map.get(k.as_slice())
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// A parsed ECS option: where its bytes are in the query.
struct Ecs {
    family: u16,
    source: u8,
    addr: IpAddr,
    /// Offset and length of the address bytes in the query.
    at: usize,
    len: usize,
}

fn be16(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?]))
}

/// Parses an ECS option body (strictly; anything odd → `None`).
fn parse_ecs(q: &[u8], at: usize, len: usize) -> Option<Ecs> {
    let family = be16(q, at)?;
    let source = *q.get(at + 2)?;
    let scope = *q.get(at + 3)?;
    let max = match family {
        1 => 32,
        2 => 128,
        _ => return None,
    };
    let alen = (source as usize).div_ceil(8);
    if scope != 0 || source > max || len != 4 + alen {
        return None;
    }
    let bytes = q.get(at + 4..at + 4 + alen)?;
    // Bits beyond the source prefix must be zero (RFC 7871 §6).
    if source % 8 != 0 && bytes[alen - 1] & (0xff >> (source % 8)) != 0 {
        return None;
    }
    let addr = if family == 1 {
        let mut o = [0u8; 4];
        o[..alen].copy_from_slice(bytes);
        IpAddr::V4(Ipv4Addr::from(o))
    } else {
        let mut o = [0u8; 16];
        o[..alen].copy_from_slice(bytes);
        IpAddr::V6(Ipv6Addr::from(o))
    };
    Some(Ecs {
        family,
        source,
        addr,
        at: at + 4,
        len: alen,
    })
}

/// Tries to answer a UDP query from pre-encoded bytes into `out`.
/// Returns `false` (with `out` unspecified) to send the query to the
/// general path.
pub fn try_answer(
    state: &State,
    stats: &DnsStats,
    q: &[u8],
    src: IpAddr,
    out: &mut Vec<u8>,
) -> bool {
    if q.len() < 17 || (state.fast.map.is_empty() && state.fast.negative.is_empty()) {
        return false;
    }
    // QR=0, opcode QUERY, TC=0; QDCOUNT=1, ANCOUNT=NSCOUNT=0, ARCOUNT<=1.
    if q[2] & 0xfa != 0 || q[4..10] != [0, 1, 0, 0, 0, 0] || q[10] != 0 || q[11] > 1 {
        return false;
    }
    // The lower-case name, then the qtype, as the table key; where its
    // labels start; whether they are all letters, digits, '-' and '_'.
    let mut key = [0u8; 258];
    let mut starts = [0u8; 128];
    let mut labels = 0;
    let mut ldh = true;
    let mut pos = 12;
    loop {
        let l = q[pos] as usize;
        if l > 63 {
            return false;
        }
        let end = pos + 1 + l;
        if end >= q.len() || end - 12 > 255 {
            return false;
        }
        let k = pos - 12;
        starts[labels] = k as u8;
        labels += 1;
        key[k] = l as u8;
        for (d, s) in key[k + 1..=k + l].iter_mut().zip(&q[pos + 1..end]) {
            ldh &= s.is_ascii_alphanumeric() || *s == b'-' || *s == b'_';
            *d = s.to_ascii_lowercase();
        }
        pos = end;
        if l == 0 {
            break;
        }
    }
    let qname_end = pos;
    let (Some(qtype), Some(qclass)) = (be16(q, pos), be16(q, pos + 2)) else {
        return false;
    };
    if qclass != 1 {
        return false;
    }
    pos += 4;
    let question_end = pos;
    let nlen = qname_end - 12;
    key[nlen..nlen + 2].copy_from_slice(&qtype.to_be_bytes());

    let mut edns_payload: Option<u16> = None;
    let mut ecs: Option<Ecs> = None;
    if q[11] == 1 {
        // OPT: root name, type 41, class = payload, ext-rcode, version, flags, rdlen.
        if q.get(pos) != Some(&0) || be16(q, pos + 1) != Some(41) {
            return false;
        }
        let (Some(payload), Some(rdlen)) = (be16(q, pos + 3), be16(q, pos + 9)) else {
            return false;
        };
        if q.get(pos + 6) != Some(&0) {
            return false; // EDNS version > 0: BADVERS on the general path
        }
        let mut o = pos + 11;
        let end = o + rdlen as usize;
        if end != q.len() {
            return false;
        }
        while o < end {
            let (Some(code), Some(olen)) = (be16(q, o), be16(q, o + 2)) else {
                return false;
            };
            let body = o + 4;
            if body + olen as usize > end {
                return false;
            }
            match code {
                8 if ecs.is_none() => {
                    ecs = Some(match parse_ecs(q, body, olen as usize) {
                        Some(e) => e,
                        None => return false,
                    })
                }
                // NSID and a second ECS need the general path.
                3 | 8 => return false,
                // Other options (cookies, padding, ...) are ignored (RFC 6891 §6.1.2).
                _ => {}
            }
            o = body + olen as usize;
        }
        edns_payload = Some(payload);
    } else if pos != q.len() {
        return false;
    }

    let opt_len = match (&edns_payload, &ecs) {
        (None, _) => 0,
        (Some(_), None) => 11,
        (Some(_), Some(e)) => 11 + 8 + e.len,
    };
    let limit = edns_payload.map_or(512, |p| p.clamp(512, MAX_UDP_PAYLOAD)) as usize;

    let (entry, variant, scope) = match state.fast.map.get(&key[..nlen + 2]) {
        Some(entry) => {
            let (variant, scope) = match entry.steered.and_then(|(z, r, f)| state.plan(z, r, f)) {
                Some(plan) => {
                    let client = match &ecs {
                        Some(e) => Client::from_ecs(e.addr, e.source),
                        None => Client::from_source(src),
                    };
                    plan.select(&client)
                }
                None => (0, 0),
            };
            let Some(blob) = entry.blobs.get(variant) else {
                return false;
            };
            if blob.len() + opt_len > limit || blob.len() < qname_end + 4 {
                return false;
            }
            out.clear();
            out.extend_from_slice(blob);
            out[0] = q[0];
            out[1] = q[1];
            out[2] |= q[2] & 0x01; // RD
            out[3] |= q[3] & 0x10; // CD
            out[12..qname_end].copy_from_slice(&q[12..qname_end]);
            (Some(entry), variant, scope)
        }
        None => {
            if !ldh {
                return false;
            }
            let neg = &state.fast.negative;
            let Some(answer) = neg.classify(&key[..nlen], &starts[..labels], qtype) else {
                return false;
            };
            neg.write(answer, q, question_end, out);
            if out.len() + opt_len > limit {
                return false;
            }
            (None, 0, 0)
        }
    };

    if let Some(_payload) = edns_payload {
        let ar = u16::from_be_bytes([out[10], out[11]]).wrapping_add(1);
        out[10..12].copy_from_slice(&ar.to_be_bytes());
        out.push(0);
        out.extend_from_slice(&41u16.to_be_bytes());
        out.extend_from_slice(&MAX_UDP_PAYLOAD.to_be_bytes());
        out.extend_from_slice(&[0, 0, 0, 0]);
        match &ecs {
            None => out.extend_from_slice(&0u16.to_be_bytes()),
            Some(e) => {
                let olen = 4 + e.len as u16;
                out.extend_from_slice(&(olen + 4).to_be_bytes());
                out.extend_from_slice(&8u16.to_be_bytes());
                out.extend_from_slice(&olen.to_be_bytes());
                out.extend_from_slice(&e.family.to_be_bytes());
                out.push(e.source);
                out.push(scope.min(e.source));
                out.extend_from_slice(&q[e.at..e.at + e.len]);
            }
        }
    }

    stats.fast_path.fetch_add(1, Relaxed);
    stats.count_rcode_byte(out[3] & 0x0f);
    let Some(entry) = entry else {
        return true;
    };
    if let Some(p) = entry.policy {
        stats.count_policy(p);
        if entry.fail_open {
            stats.fail_open_answers.fetch_add(1, Relaxed);
        }
        if let Some(cs) = entry.counters.get(variant) {
            for c in cs {
                c.fetch_add(1, Relaxed);
            }
        }
    }
    true
}
