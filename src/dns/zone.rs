//! Compiled zones: the configured zones turned once (per config) into
//! lookup tables of hickory records, so answering is map lookups only.
//!
//! Owns name normalisation (lower case, fully qualified), zone-file text
//! parsing of static values and the apex SOA/NS sets. It knows nothing about
//! health: steered records are kept as references into the config and are
//! resolved by [`super::policy`] per snapshot.

use std::collections::{BTreeMap, HashMap, HashSet};

use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::model::{Config, RecordData, Steering};

/// Zone data that cannot be turned into records.
#[derive(Debug, thiserror::Error)]
pub enum ZoneError {
    #[error("zone {zone}: {what}")]
    Invalid { zone: String, what: String },
}

/// A steered record of a zone.
#[derive(Debug, Clone)]
pub struct SteeredRecord {
    /// Lower-case fully-qualified owner name.
    pub name: String,
    pub ttl: u32,
    pub steering: Steering,
}

/// Everything at one owner name.
#[derive(Debug, Default, Clone)]
pub struct Node {
    /// Static record sets by type (CNAME included), in type order.
    pub rrsets: BTreeMap<u16, Vec<Record>>,
    /// Index into [`CompiledZone::steered`].
    pub steered: Option<usize>,
}

impl Node {
    pub fn cname(&self) -> Option<&Record> {
        self.rrsets
            .get(&u16::from(RecordType::CNAME))
            .and_then(|v| v.first())
    }
}

#[derive(Debug, Clone)]
pub struct CompiledZone {
    pub origin: Name,
    /// Lower-case origin in text form (`example.net.`).
    pub origin_str: String,
    /// The SOA record (TTL = SOA minimum, as used for negative answers).
    pub soa: Record,
    pub nodes: HashMap<String, Node>,
    /// Names that exist only because a descendant exists (empty non-terminals).
    pub ents: HashSet<String>,
    pub steered: Vec<SteeredRecord>,
}

/// All configured zones.
#[derive(Debug, Clone, Default)]
pub struct Zones {
    pub zones: Vec<CompiledZone>,
}

/// The key form of a name: lower case, fully qualified, `.`-terminated.
pub fn key_of(name: &Name) -> String {
    let mut s = name.to_lowercase().to_ascii();
    if !s.ends_with('.') {
        s.push('.');
    }
    s
}

fn parse_name(s: &str, zone: &str) -> Result<Name, ZoneError> {
    let fq = qualify(s, zone);
    Name::from_ascii(&fq)
        .map(|n| n.to_lowercase())
        .map_err(|e| ZoneError::Invalid {
            zone: zone.into(),
            what: format!("name {s:?}: {e}"),
        })
}

/// Makes a relative name absolute in `zone` (`@` is the apex).
fn qualify(s: &str, zone: &str) -> String {
    if s == "@" {
        zone.to_string()
    } else if s.ends_with('.') {
        s.to_string()
    } else {
        format!("{s}.{zone}")
    }
}

/// Parses one static value in zone-file form; a relative target name in
/// the last field of CNAME/NS/MX/SRV is made absolute in the zone.
fn parse_rdata(t: RecordType, value: &str, zone: &str) -> Result<RData, ZoneError> {
    let value = match t {
        RecordType::CNAME | RecordType::NS | RecordType::MX | RecordType::SRV => {
            let mut parts: Vec<&str> = value.split_whitespace().collect();
            let q = parts
                .pop()
                .map(|last| qualify(last, zone))
                .unwrap_or_default();
            parts.push(&q);
            parts.join(" ")
        }
        // TXT: one string as written (split into 255-byte chunks), unless
        // it is in zone-file form ("a" "b").
        RecordType::TXT if !value.trim_start().starts_with('"') => {
            let chunks = value
                .as_bytes()
                .chunks(255)
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect();
            return Ok(RData::TXT(hickory_proto::rr::rdata::TXT::new(chunks)));
        }
        _ => value.to_string(),
    };
    RData::try_from_str(t, &value).map_err(|e| ZoneError::Invalid {
        zone: zone.into(),
        what: format!("{t} value {value:?}: {e}"),
    })
}

impl Zones {
    /// Compiles the zones of a config.
    pub fn compile(config: &Config) -> Result<Zones, ZoneError> {
        let mut zones = Vec::new();
        for z in &config.dns.zones {
            let origin = parse_name(&z.origin, &z.origin)?;
            let origin_str = key_of(&origin);
            let err = |what: String| ZoneError::Invalid {
                zone: origin_str.clone(),
                what,
            };
            let soa_rdata = RData::SOA(hickory_proto::rr::rdata::SOA::new(
                parse_name(&z.soa.mname, &origin_str)?,
                parse_name(&z.soa.rname, &origin_str)?,
                z.soa.serial,
                z.soa.refresh as i32,
                z.soa.retry as i32,
                z.soa.expire as i32,
                z.soa.minimum,
            ));
            let soa = Record::from_rdata(origin.clone(), z.soa.minimum.min(z.ttl), soa_rdata);
            let mut nodes: HashMap<String, Node> = HashMap::new();
            let apex = nodes.entry(origin_str.clone()).or_default();
            let mut soa_set = soa.clone();
            soa_set.ttl = z.ttl;
            apex.rrsets.insert(RecordType::SOA.into(), vec![soa_set]);
            let mut ns = Vec::new();
            for n in &z.ns {
                let target = parse_name(n, &origin_str)?;
                ns.push(Record::from_rdata(
                    origin.clone(),
                    z.ttl,
                    RData::NS(hickory_proto::rr::rdata::NS(target)),
                ));
            }
            if !ns.is_empty() {
                apex.rrsets.insert(RecordType::NS.into(), ns);
            }
            let mut steered = Vec::new();
            for r in &z.records {
                let owner = parse_name(&r.name, &origin_str)?;
                let key = key_of(&owner);
                if !origin.zone_of(&owner) {
                    return Err(err(format!("record {key} is outside the zone")));
                }
                let node = nodes.entry(key.clone()).or_default();
                match &r.data {
                    RecordData::Static { rtype, values } => {
                        let t = RecordType::from(*rtype);
                        let set = node.rrsets.entry(t.into()).or_default();
                        for v in values {
                            let rd = parse_rdata(t, v, &origin_str)?;
                            set.push(Record::from_rdata(owner.clone(), r.ttl, rd));
                        }
                    }
                    RecordData::Steered(s) => {
                        if node.steered.is_some() {
                            return Err(err(format!("{key}: two steered records")));
                        }
                        node.steered = Some(steered.len());
                        steered.push(SteeredRecord {
                            name: key.clone(),
                            ttl: r.ttl,
                            steering: s.clone(),
                        });
                    }
                }
                let n = &nodes[&key];
                if n.cname().is_some() && (n.rrsets.len() > 1 || n.steered.is_some()) {
                    return Err(err(format!(
                        "{key}: a CNAME cannot coexist with other data"
                    )));
                }
            }
            let mut ents = HashSet::new();
            for key in nodes.keys() {
                let mut name = match Name::from_ascii(key) {
                    Ok(n) => n,
                    Err(_) => continue,
                };
                while name.num_labels() > origin.num_labels() {
                    name = name.base_name();
                    let k = key_of(&name);
                    if !nodes.contains_key(&k) {
                        ents.insert(k);
                    }
                }
            }
            zones.push(CompiledZone {
                origin,
                origin_str,
                soa,
                nodes,
                ents,
                steered,
            });
        }
        Ok(Zones { zones })
    }

    /// The most specific zone `qname` belongs to (`qname` in key form).
    pub fn find(&self, key: &str) -> Option<usize> {
        let mut best: Option<(usize, usize)> = None;
        for (i, z) in self.zones.iter().enumerate() {
            let o = &z.origin_str;
            let inside = key == o
                || o == "."
                || (key.len() > o.len()
                    && key.ends_with(o.as_str())
                    && key.as_bytes()[key.len() - o.len() - 1] == b'.');
            if inside && best.is_none_or(|(_, l)| o.len() > l) {
                best = Some((i, o.len()));
            }
        }
        best.map(|(i, _)| i)
    }
}
