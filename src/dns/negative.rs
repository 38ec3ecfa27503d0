//! Negative answers for the UDP fast path: NXDOMAIN and NODATA (with the
//! zone's SOA in the authority section) for names in our zones, and REFUSED
//! for names outside them, written per query after the client's question.
//!
//! Built once per set of compiled zones: per zone its origin, the SOA
//! record's parts and every name that exists in it (nodes and empty
//! non-terminals, lower-case wire form). A query is classified exactly as
//! the general path ([`super::answer::resolve`]) would classify it; only
//! names made of letters, digits, `-` and `_` are taken (their text and wire
//! forms map one to one), everything else goes to the general path.
//!
//! Names in the answer are compressed the way hickory-proto's encoder
//! compresses them (see [`Compressor`]), so a negative answer from here is
//! byte for byte the general path's answer to the same query.
//!
//! Pure: no I/O, no allocation per query (the output buffer is the
//! caller's).

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use hickory_proto::rr::{Name, RData, RecordType};

use super::fnv::Fnv;
use super::zone::{CompiledZone, Zones};

/// Most compression candidates hickory-proto's encoder keeps per message
/// (its `COMPRESSION_CANDIDATE_LIMIT`).
const MAX_CANDIDATES: usize = 64;
/// Offsets from here on cannot be compression targets (14-bit pointers).
const MAX_POINTER: usize = 0x3FFF;

/// What a name that exists in a zone holds.
#[derive(Debug)]
enum Existing {
    /// An empty non-terminal: NODATA for every type.
    Ent,
    /// A node: NODATA for types it has no data for, unless it is a CNAME.
    Node { cname: bool, types: Box<[u16]> },
}

#[derive(Debug)]
struct NegZone {
    /// Lower-case wire form of the origin, root label included.
    origin: Box<[u8]>,
    /// Wire labels (no root label) of the SOA owner, MNAME and RNAME as
    /// the general path writes them.
    owner: Box<[u8]>,
    mname: Box<[u8]>,
    rname: Box<[u8]>,
    ttl: u32,
    /// SERIAL, REFRESH, RETRY, EXPIRE, MINIMUM.
    numbers: [u8; 20],
    names: HashMap<Box<[u8]>, Existing, BuildHasherDefault<Fnv>>,
}

/// A negative answer the fast path can give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Negative {
    /// The name does not exist in zone `.0`.
    NxDomain(usize),
    /// The name exists in zone `.0` without data of the type.
    NoData(usize),
    /// The name is in none of our zones.
    Refused,
}

impl Negative {
    pub fn rcode(self) -> u8 {
        match self {
            Negative::NxDomain(_) => 3,
            Negative::NoData(_) => 0,
            Negative::Refused => 5,
        }
    }
}

/// The negative-answer data of one set of compiled zones.
#[derive(Debug, Default)]
pub struct NegativeTable {
    zones: Vec<NegZone>,
}

/// Wire labels of a name (no root label), bytes as stored.
fn labels_of(name: &Name) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len() + 1);
    for l in name.iter() {
        out.push(l.len() as u8);
        out.extend_from_slice(l);
    }
    out
}

/// Lower-case wire form of a zone key (`www.example.net.`), root included.
fn wire_key(key: &str) -> Option<Box<[u8]>> {
    let mut w = labels_of(&Name::from_ascii(key).ok()?);
    w.make_ascii_lowercase();
    w.push(0);
    Some(w.into_boxed_slice())
}

impl NegZone {
    fn build(z: &CompiledZone) -> Option<NegZone> {
        let RData::SOA(soa) = &z.soa.data else {
            return None;
        };
        let mut numbers = [0u8; 20];
        numbers[0..4].copy_from_slice(&soa.serial.to_be_bytes());
        numbers[4..8].copy_from_slice(&soa.refresh.to_be_bytes());
        numbers[8..12].copy_from_slice(&soa.retry.to_be_bytes());
        numbers[12..16].copy_from_slice(&soa.expire.to_be_bytes());
        numbers[16..20].copy_from_slice(&soa.minimum.to_be_bytes());
        let mut names = HashMap::default();
        for (key, node) in &z.nodes {
            let mut types: Vec<u16> = node.rrsets.keys().copied().collect();
            if node.steered.is_some() {
                types.extend([u16::from(RecordType::A), u16::from(RecordType::AAAA)]);
            }
            let existing = Existing::Node {
                cname: node.cname().is_some(),
                types: types.into_boxed_slice(),
            };
            names.insert(wire_key(key)?, existing);
        }
        for key in &z.ents {
            names.insert(wire_key(key)?, Existing::Ent);
        }
        Some(NegZone {
            origin: wire_key(&z.origin_str)?,
            owner: labels_of(&z.soa.name).into_boxed_slice(),
            mname: labels_of(&soa.mname).into_boxed_slice(),
            rname: labels_of(&soa.rname).into_boxed_slice(),
            ttl: z.soa.ttl,
            numbers,
            names,
        })
    }
}

/// Whether a query type may get a negative answer here: not the meta and
/// transfer types the general path treats otherwise (or that need a closer
/// look: OPT, TKEY, TSIG, IXFR, AXFR, MAILB, MAILA, ANY).
fn plain_type(qtype: u16) -> bool {
    !matches!(qtype, 0 | 41 | 249..=255)
}

impl NegativeTable {
    /// The table of `zones`; empty (every negative answer goes to the general
    /// path) if a zone cannot be represented.
    pub fn build(zones: &Zones) -> NegativeTable {
        let built: Option<Vec<NegZone>> = zones.zones.iter().map(NegZone::build).collect();
        NegativeTable {
            zones: built.unwrap_or_default(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.zones.is_empty()
    }

    /// Classifies a question the fast path found no positive answer for:
    /// `name` is its lower-case wire name (root label included), `starts`
    /// the offsets of its labels in `name`, and every label is made of
    /// letters, digits, `-` and `_` (the caller checks). `None`: the general
    /// path answers it.
    pub fn classify(&self, name: &[u8], starts: &[u8], qtype: u16) -> Option<Negative> {
        if self.zones.is_empty() || !plain_type(qtype) {
            return None;
        }
        // The most specific zone whose origin ends the name at a label.
        let mut best: Option<usize> = None;
        for (i, z) in self.zones.iter().enumerate() {
            let Some(at) = name.len().checked_sub(z.origin.len()) else {
                continue;
            };
            if name[at..] == *z.origin
                && starts.contains(&(at as u8))
                && best.is_none_or(|b| self.zones[b].origin.len() < z.origin.len())
            {
                best = Some(i);
            }
        }
        let Some(zi) = best else {
            return Some(Negative::Refused);
        };
        match self.zones[zi].names.get(name) {
            None => Some(Negative::NxDomain(zi)),
            Some(Existing::Ent) => Some(Negative::NoData(zi)),
            Some(Existing::Node { cname, types }) => {
                (!*cname && !types.contains(&qtype)).then_some(Negative::NoData(zi))
            }
        }
    }

    /// Writes the answer to query `q` (its question ends at `question_end`,
    /// after QTYPE and QCLASS) into `out`: header, the client's question, and
    /// for NXDOMAIN/NODATA the zone's SOA. No OPT record (the caller adds
    /// it).
    pub fn write(&self, neg: Negative, q: &[u8], question_end: usize, out: &mut Vec<u8>) {
        let zone = match neg {
            Negative::NxDomain(z) | Negative::NoData(z) => self.zones.get(z),
            Negative::Refused => None,
        };
        out.clear();
        out.extend_from_slice(&q[..2]);
        // QR, AA when authoritative, the query's RD; its CD; the rcode.
        let aa = if zone.is_some() { 0x04 } else { 0 };
        out.push(0x80 | aa | (q[2] & 0x01));
        out.push((q[3] & 0x10) | neg.rcode());
        out.extend_from_slice(&[0, 1, 0, 0, 0, u8::from(zone.is_some()), 0, 0]);
        let qname_end = question_end - 4;
        let mut names = Compressor::new();
        // The question as the client wrote it (case included), minus the
        // root label, is the first name written.
        names.write(out, &q[12..qname_end - 1]);
        out.extend_from_slice(&q[qname_end..question_end]);
        let Some(z) = zone else { return };
        names.write(out, &z.owner);
        out.extend_from_slice(&u16::from(RecordType::SOA).to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes()); // IN
        out.extend_from_slice(&z.ttl.to_be_bytes());
        let rdlength_at = out.len();
        out.extend_from_slice(&[0, 0]);
        names.write(out, &z.mname);
        names.write(out, &z.rname);
        out.extend_from_slice(&z.numbers);
        let rdlength = (out.len() - rdlength_at - 2) as u16;
        out[rdlength_at..rdlength_at + 2].copy_from_slice(&rdlength.to_be_bytes());
    }
}

/// hickory-proto's name compression, replayed: a name is written label by
/// label; then, from its first label on, if the rest of the name equals (byte
/// for byte, case included) a suffix registered earlier, the name is cut
/// there and a pointer to that suffix written; otherwise the suffix is
/// registered (at most [`MAX_CANDIDATES`] per message, none past
/// [`MAX_POINTER`]) and the next label tried.
struct Compressor<'a> {
    candidates: [(u16, &'a [u8]); MAX_CANDIDATES],
    len: usize,
}

impl<'a> Compressor<'a> {
    fn new() -> Compressor<'a> {
        Compressor {
            candidates: [(0, &[]); MAX_CANDIDATES],
            len: 0,
        }
    }

    /// Writes wire `labels` (no root label) at the end of `out`.
    fn write(&mut self, out: &mut Vec<u8>, labels: &'a [u8]) {
        let start = out.len();
        let end = start + labels.len();
        let mut l = 0;
        while l < labels.len() {
            let rest = &labels[l..];
            if let Some(&(at, _)) = self.candidates[..self.len].iter().find(|(_, c)| *c == rest) {
                out.extend_from_slice(&labels[..l]);
                out.extend_from_slice(&(0xC000 | at).to_be_bytes());
                return;
            }
            if end < MAX_POINTER && self.len < MAX_CANDIDATES {
                self.candidates[self.len] = ((start + l) as u16, rest);
                self.len += 1;
            }
            l += 1 + labels[l] as usize;
        }
        out.extend_from_slice(labels);
        out.push(0);
    }
}
