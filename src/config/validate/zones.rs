//! `dns.zones[]`: origin, NS and SOA, static records with their values
//! checked per type, and which names the records occupy.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, Ipv6Addr};

use super::common::*;
use super::steering::steering;
use crate::config::raw::*;
use crate::model::*;

/// Default TTL of static records.
pub const DEFAULT_ZONE_TTL: u32 = 300;
/// Default TTL of steered records.
pub const DEFAULT_STEERED_TTL: u32 = 30;

/// What occupies a name in a zone, for conflict checks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Slot {
    Static(DnsType),
    Steered,
}

pub(super) fn zone(
    cx: &mut Ctx,
    path: &str,
    raw: &RawZone,
    pops: &BTreeMap<&str, usize>,
    with_addresses: &BTreeSet<&str>,
) -> Option<Zone> {
    let origin = cx.ok(&format!("{path}.origin"), parse_domain(&raw.origin, None))?;
    if origin == "." {
        cx.err(format!("{path}.origin"), "the root zone is not supported");
        return None;
    }
    let mut ns = Vec::new();
    if raw.ns.is_empty() {
        cx.err(
            format!("{path}.ns"),
            format!("a zone needs at least one name server, e.g. [\"ns1.{origin}\"]"),
        );
    }
    for (k, s) in raw.ns.iter().enumerate() {
        if let Some(n) = cx.ok(&format!("{path}.ns[{k}]"), parse_domain(s, Some(&origin))) {
            ns.push(n);
        }
    }
    let sp = format!("{path}.soa");
    let mname = match &raw.soa.mname {
        Some(m) => cx
            .ok(&format!("{sp}.mname"), parse_domain(m, Some(&origin)))
            .unwrap_or_default(),
        None => ns
            .first()
            .cloned()
            .unwrap_or_else(|| format!("ns1.{origin}")),
    };
    let rname = match &raw.soa.rname {
        Some(r) => {
            // Accept a mail address: hostmaster@example.net -> hostmaster.example.net.
            let r2 = match r.split_once('@') {
                // The mail domain is always fully qualified.
                Some((user, host)) if !user.contains('.') => {
                    format!("{user}.{}.", host.trim_end_matches('.'))
                }
                _ => r.clone(),
            };
            cx.ok(&format!("{sp}.rname"), parse_domain(&r2, Some(&origin)))
                .unwrap_or_default()
        }
        None => format!("hostmaster.{origin}"),
    };
    let serial = match raw.soa.serial {
        None => 1,
        Some(s) => match u32::try_from(s) {
            Ok(s) => s,
            Err(_) => {
                cx.err(
                    format!("{sp}.serial"),
                    format!("{s} is out of range: expected 0 to 4294967295"),
                );
                1
            }
        },
    };
    let soa = Soa {
        mname,
        rname,
        serial,
        refresh: cx.seconds(&format!("{sp}.refresh"), raw.soa.refresh.as_ref(), 3600),
        retry: cx.seconds(&format!("{sp}.retry"), raw.soa.retry.as_ref(), 600),
        expire: cx.seconds(&format!("{sp}.expire"), raw.soa.expire.as_ref(), 604_800),
        minimum: cx.seconds(&format!("{sp}.minimum"), raw.soa.minimum.as_ref(), 60),
    };
    let ttl = cx.seconds(&format!("{path}.ttl"), raw.ttl.as_ref(), DEFAULT_ZONE_TTL);
    let mut records = Vec::new();
    let mut slots: Vec<(String, Slot, usize)> = Vec::new();
    for (k, rr) in raw.records.iter().enumerate() {
        let p = format!("{path}.records[{k}]");
        let Some(rec) = record(cx, &p, rr, &origin, ttl, pops, with_addresses) else {
            continue;
        };
        let slot = match &rec.data {
            RecordData::Static { rtype, .. } => Slot::Static(*rtype),
            RecordData::Steered(_) => Slot::Steered,
        };
        let is_addr =
            |s: Slot| matches!(s, Slot::Steered | Slot::Static(DnsType::A | DnsType::Aaaa));
        let mut clash = None;
        for (name, other, j) in &slots {
            if *name != rec.name {
                continue;
            }
            let conflict = *other == slot
                || (is_addr(*other)
                    && is_addr(slot)
                    && (*other == Slot::Steered || slot == Slot::Steered))
                || *other == Slot::Static(DnsType::Cname)
                || slot == Slot::Static(DnsType::Cname);
            if conflict {
                clash = Some(*j);
                break;
            }
        }
        if let Some(j) = clash {
            cx.err(
                format!("{p}.name"),
                format!(
                    "{} already has a conflicting record at {path}.records[{j}] (one record per name and type; a steered record owns A and AAAA; CNAME stands alone)",
                    rec.name
                ),
            );
            continue;
        }
        slots.push((rec.name.clone(), slot, k));
        records.push(rec);
    }
    Some(Zone {
        origin,
        soa,
        ns,
        ttl,
        records,
    })
}

fn record(
    cx: &mut Ctx,
    path: &str,
    raw: &RawRecord,
    origin: &str,
    zone_ttl: u32,
    pops: &BTreeMap<&str, usize>,
    with_addresses: &BTreeSet<&str>,
) -> Option<Record> {
    let np = format!("{path}.name");
    let name = cx.ok(&np, parse_domain(&raw.name, Some(origin)));
    let name = match name {
        Some(n) if !in_zone(&n, origin) => {
            cx.err(np, format!("{n} is outside the zone {origin}"));
            None
        }
        other => other,
    };
    match (&raw.steer, &raw.rtype, &raw.values) {
        (Some(steer), rtype, values) => {
            if rtype.is_some() {
                cx.err(
                    format!("{path}.type"),
                    "a steered record has no type: it answers A and AAAA from the PoPs' addresses",
                );
            }
            if values.is_some() {
                cx.err(
                    format!("{path}.values"),
                    "a steered record takes its answers from the PoPs' addresses: remove `values` or `steer`",
                );
            }
            let ttl = cx.seconds(
                &format!("{path}.ttl"),
                raw.ttl.as_ref(),
                DEFAULT_STEERED_TTL,
            );
            let steering = steering(
                cx,
                &format!("{path}.steer"),
                steer,
                ttl,
                pops,
                with_addresses,
            );
            Some(Record {
                name: name?,
                ttl,
                data: RecordData::Steered(steering?),
            })
        }
        (None, None, _) => {
            cx.err(
                path,
                "a record needs either `type` and `values` (static) or `steer` (steered)",
            );
            None
        }
        (None, Some(t), values) => {
            let tp = format!("{path}.type");
            let rtype = cx.ok(
                &tp,
                DnsType::parse(t).ok_or_else(|| {
                    format!("{t:?} is not a supported record type: expected one of A, AAAA, CNAME, TXT, MX, SRV, CAA, NS")
                }),
            );
            let rtype = match rtype {
                Some(DnsType::Soa) => {
                    cx.err(
                        tp,
                        "the SOA comes from the zone's `soa` key, not from a record",
                    );
                    None
                }
                Some(DnsType::Ns) if name.as_deref() == Some(origin) => {
                    cx.err(tp, "the apex NS records come from the zone's `ns` key");
                    None
                }
                Some(DnsType::Cname) if name.as_deref() == Some(origin) => {
                    cx.err(tp, "a CNAME cannot be at the zone apex");
                    None
                }
                other => other,
            };
            let ttl = cx.seconds(&format!("{path}.ttl"), raw.ttl.as_ref(), zone_ttl);
            let vp = format!("{path}.values");
            let mut out = Vec::new();
            match values {
                None => cx.err(vp, "required for a static record: a list of values"),
                Some(v) if v.is_empty() => cx.err(vp, "expected at least one value"),
                Some(v) => {
                    if rtype == Some(DnsType::Cname) && v.len() > 1 {
                        cx.err(vp.clone(), "a CNAME has exactly one value");
                    }
                    for (k, val) in v.iter().enumerate() {
                        let Some(rt) = rtype else { break };
                        let p = format!("{vp}[{k}]");
                        if let Some(norm) = cx.ok(&p, record_value(rt, &val.0, origin)) {
                            if out.contains(&norm) {
                                cx.err(p, format!("{norm:?} is listed twice"));
                            } else {
                                out.push(norm);
                            }
                        }
                    }
                }
            }
            Some(Record {
                name: name?,
                ttl,
                data: RecordData::Static {
                    rtype: rtype?,
                    values: out,
                },
            })
        }
    }
}

fn in_zone(name: &str, origin: &str) -> bool {
    name == origin || name.ends_with(&format!(".{origin}"))
}

/// Checks a static record value for its type; returns it normalized
/// (names fully qualified, lower case). The result also parses with the
/// DNS library's zone-file parser, so the DNS server can load it.
fn record_value(rtype: DnsType, v: &str, origin: &str) -> Result<String, String> {
    let norm = record_value_syntax(rtype, v, origin)?;
    let plain_txt = rtype == DnsType::Txt && !norm.trim_start().starts_with('"');
    if !plain_txt {
        use hickory_proto::rr::{RData, RecordType};
        let t = RecordType::from(rtype);
        RData::try_from_str(t, &norm)
            .map_err(|e| format!("{v:?} is not a valid {t} value: {e}"))?;
    }
    Ok(norm)
}

fn record_value_syntax(rtype: DnsType, v: &str, origin: &str) -> Result<String, String> {
    let t = v.trim();
    match rtype {
        DnsType::A => t.parse::<Ipv4Addr>().map(|a| a.to_string()).map_err(|_| {
            format!("{v:?} is not an IPv4 address (an A record needs one like 192.0.2.1)")
        }),
        DnsType::Aaaa => t.parse::<Ipv6Addr>().map(|a| a.to_string()).map_err(|_| {
            format!("{v:?} is not an IPv6 address (an AAAA record needs one like 2001:db8::1)")
        }),
        DnsType::Cname | DnsType::Ns => parse_domain(t, Some(origin)),
        DnsType::Txt => Ok(v.to_string()),
        DnsType::Mx => {
            let bad = || {
                format!("{v:?} is not an MX value: expected \"PREFERENCE HOST\", e.g. \"10 mail.example.net.\"")
            };
            let parts: Vec<&str> = t.split_whitespace().collect();
            let [pref, host] = parts.as_slice() else {
                return Err(bad());
            };
            let pref: u16 = pref.parse().map_err(|_| bad())?;
            Ok(format!("{pref} {}", parse_domain(host, Some(origin))?))
        }
        DnsType::Srv => {
            let bad = || {
                format!("{v:?} is not an SRV value: expected \"PRIORITY WEIGHT PORT TARGET\", e.g. \"10 5 443 edge.example.net.\"")
            };
            let parts: Vec<&str> = t.split_whitespace().collect();
            let [prio, weight, port, target] = parts.as_slice() else {
                return Err(bad());
            };
            let prio: u16 = prio.parse().map_err(|_| bad())?;
            let weight: u16 = weight.parse().map_err(|_| bad())?;
            let port: u16 = port.parse().map_err(|_| bad())?;
            Ok(format!(
                "{prio} {weight} {port} {}",
                parse_domain(target, Some(origin))?
            ))
        }
        DnsType::Caa => {
            let bad = || {
                format!("{v:?} is not a CAA value: expected FLAGS TAG \"VALUE\", e.g. 0 issue \"letsencrypt.org\"")
            };
            let mut it = t.splitn(3, char::is_whitespace);
            let (Some(flags), Some(tag), Some(value)) = (it.next(), it.next(), it.next()) else {
                return Err(bad());
            };
            let flags: u8 = flags.parse().map_err(|_| bad())?;
            let tag = tag.to_ascii_lowercase();
            if tag.is_empty() || !tag.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(bad());
            }
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|x| x.strip_suffix('"'))
                .unwrap_or(value);
            if value.contains('"') {
                return Err(bad());
            }
            Ok(format!("{flags} {tag} \"{value}\""))
        }
        DnsType::Soa => Err("SOA values come from the zone's `soa` key".into()),
    }
}
