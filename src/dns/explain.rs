//! Explain a DNS answer: for (name, type, client) what the server answers
//! from a snapshot and why (policy, eligible and excluded PoPs, fail-open,
//! TTL and its reason). Pure: it runs the same lookup and steering code as
//! the server, over the given snapshot and time, without sockets.

use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

use hickory_proto::rr::{Name, RecordType};
use tokio::time::Instant;

use super::answer::resolve;
use super::policy::{Client, Exclusion, Family, Plan, Rule};
use super::state::State;
use super::zone::Zones;
use crate::core::Snapshot;
use crate::geoip::{haversine_km, GeoInfo};
use crate::model::PopName;

#[derive(Debug, Clone)]
pub struct Explanation {
    pub name: String,
    pub qtype: String,
    pub client: Client,
    pub snapshot_version: u64,
    /// `NOERROR`, `NXDOMAIN`, `REFUSED`, ...
    pub rcode: String,
    pub authoritative: bool,
    /// The zone the name falls in, if any.
    pub zone: Option<String>,
    /// Answer records in zone-file text form.
    pub answers: Vec<String>,
    /// Authority records (the SOA of negative answers).
    pub authority: Vec<String>,
    /// The ECS scope prefix length the answer would carry.
    pub ecs_scope: u8,
    /// Present when a steered record decided the answer.
    pub steering: Option<SteeringExplanation>,
}

#[derive(Debug, Clone)]
pub struct SteeringExplanation {
    /// The steered record (after following CNAMEs).
    pub record: String,
    pub policy: &'static str,
    pub family: Family,
    /// PoPs whose addresses are in the answer.
    pub chosen: Vec<PopName>,
    pub addresses: Vec<IpAddr>,
    /// PoPs that could be answered with, in policy order.
    pub eligible: Vec<PopName>,
    pub excluded: Vec<ExcludedPop>,
    /// True if no (or too few) PoPs are healthy and the answer fails open.
    pub fail_open: bool,
    pub fail_open_reason: Option<String>,
    /// Whether the answer depends on the client (ECS scope above 0).
    pub client_dependent: bool,
    pub ttl: u32,
    pub ttl_reason: String,
    /// The rule that picked the answer for this client (`fixed`, `hashed`,
    /// `subnet`, `country`, `continent`, `default`, `nearest`).
    pub rule: Rule,
    /// What the MaxMind database says about the client's block, when the
    /// policy consults it (`geo` with country/continent rules, `nearest`).
    pub geo: Option<GeoInfo>,
    /// `nearest`: great-circle distance from the client to every eligible
    /// PoP with a location, nearest first.
    pub distances: Vec<PopDistance>,
    /// The decision in words.
    pub decision: String,
}

#[derive(Debug, Clone)]
pub struct PopDistance {
    pub pop: PopName,
    pub km: f64,
}

#[derive(Debug, Clone)]
pub struct ExcludedPop {
    pub pop: PopName,
    pub reason: Exclusion,
}

/// Why a question cannot be explained.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error("invalid name {0:?}")]
    Name(String),
    #[error("unknown record type {0:?}")]
    Type(String),
    #[error("zone data: {0}")]
    Zone(String),
}

/// Explains the answer to (`name`, `qtype`) for `client` from `snapshot` at
/// `now` (the time matters for the dynamic TTL).
pub fn explain(
    snapshot: &Snapshot,
    now: Instant,
    name: &str,
    qtype: &str,
    client: Client,
) -> Result<Explanation, ExplainError> {
    let fq = if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    };
    let qname = Name::from_ascii(&fq).map_err(|_| ExplainError::Name(name.to_string()))?;
    let rtype = RecordType::from_str(&qtype.to_ascii_uppercase())
        .map_err(|_| ExplainError::Type(qtype.to_string()))?;
    if let RecordType::Unknown(_) = rtype {
        return Err(ExplainError::Type(qtype.to_string()));
    }
    let zones = Zones::compile(&snapshot.config).map_err(|e| ExplainError::Zone(e.to_string()))?;
    let state = State::build(snapshot, Arc::new(zones), now, None, None);
    let r = resolve(&state, &qname, rtype, &client, None);
    let steering = r.steered.and_then(|s| {
        let plan = state.plan(s.zone, s.rec, s.family)?;
        let rec = state.zones.zones.get(s.zone)?.steered.get(s.rec)?;
        let v = plan.variants.get(s.variant);
        let (_, _, rule) = plan.decide(&client);
        let geo = plan.geo_info(&client);
        let distances = distances(&state, plan, geo.as_ref());
        let chosen = v.map(|v| v.pops.clone()).unwrap_or_default();
        let decision = decision(plan, rule, geo.as_ref(), &distances, &chosen);
        Some(SteeringExplanation {
            record: rec.name.clone(),
            policy: plan.policy,
            family: s.family,
            chosen,
            addresses: v.map(|v| v.addrs.clone()).unwrap_or_default(),
            eligible: plan.eligible.clone(),
            excluded: plan
                .excluded
                .iter()
                .map(|(p, why)| ExcludedPop {
                    pop: p.clone(),
                    reason: *why,
                })
                .collect(),
            fail_open: plan.fail_open.is_some(),
            fail_open_reason: plan.fail_open.clone(),
            client_dependent: plan.client_dependent(),
            ttl: plan.ttl,
            ttl_reason: plan.ttl_reason.clone(),
            rule,
            geo,
            distances,
            decision,
        })
    });
    Ok(Explanation {
        name: fq,
        qtype: rtype.to_string(),
        client,
        snapshot_version: snapshot.version,
        rcode: rcode_name(r.rcode).to_string(),
        authoritative: r.authoritative,
        zone: r
            .zone
            .and_then(|z| state.zones.zones.get(z))
            .map(|z| z.origin_str.clone()),
        answers: r.answers.iter().map(|a| a.to_string()).collect(),
        authority: r.authority.iter().map(|a| a.to_string()).collect(),
        ecs_scope: if client.from_ecs {
            r.scope.min(client.prefix)
        } else {
            0
        },
        steering,
    })
}

/// `nearest`: distances from the client to the eligible PoPs, nearest first.
fn distances(state: &State, plan: &Plan, geo: Option<&GeoInfo>) -> Vec<PopDistance> {
    let Some(from) = geo.and_then(|g| g.coordinates) else {
        return Vec::new();
    };
    if plan.policy != "nearest" {
        return Vec::new();
    }
    let mut out: Vec<PopDistance> = plan
        .eligible
        .iter()
        .filter_map(|p| {
            let loc = state.config.pops.get(p)?.location?;
            Some(PopDistance {
                pop: p.clone(),
                km: (haversine_km(from, loc) * 10.0).round() / 10.0,
            })
        })
        .collect();
    out.sort_by(|a, b| a.km.total_cmp(&b.km));
    out
}

/// One sentence: which rule chose which PoP, and on what data.
fn decision(
    plan: &Plan,
    rule: Rule,
    geo: Option<&GeoInfo>,
    distances: &[PopDistance],
    chosen: &[PopName],
) -> String {
    let chosen = chosen
        .iter()
        .map(|p| p.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let looked_up = match geo {
        None => String::new(),
        Some(g) => {
            let mut parts = Vec::new();
            if let Some(c) = g.country {
                parts.push(format!("country {c}"));
            }
            if let Some(c) = g.continent {
                parts.push(format!("continent {c}"));
            }
            if let Some((lat, lon)) = g.coordinates {
                parts.push(format!("at {lat:.2},{lon:.2}"));
            }
            if parts.is_empty() {
                parts.push("not in the database".into());
            }
            format!(
                " (client block: {}, database network /{})",
                parts.join(", "),
                g.prefix
            )
        }
    };
    if plan.no_address {
        let fam = match plan.family {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        };
        return format!("no PoP of the record has an {fam} address: NODATA");
    }
    if plan.fail_open.is_some() {
        return format!("fail-open: {chosen}");
    }
    match rule {
        Rule::Fixed => format!("{}: {chosen} for every client", plan.policy),
        Rule::Hashed => format!("weighted hash of the client subnet: {chosen}"),
        Rule::Subnet(net) => format!("subnet rule {net}: {chosen}"),
        Rule::Country(c) => format!("country rule {c}: {chosen}{looked_up}"),
        Rule::Continent(c) => format!("continent rule {c}: {chosen}{looked_up}"),
        Rule::Default if plan.policy == "nearest" => {
            format!("client has no coordinates, default: {chosen}{looked_up}")
        }
        Rule::Default => format!("no rule matched, default: {chosen}{looked_up}"),
        Rule::Nearest => {
            let list = distances
                .iter()
                .map(|d| format!("{} {:.0} km", d.pop, d.km))
                .collect::<Vec<_>>()
                .join(", ");
            format!("nearest PoP {chosen}{looked_up}; distances: {list}")
        }
    }
}

/// The mnemonic of a response code (`NOERROR`, `NXDOMAIN`, ...).
pub fn rcode_name(rc: hickory_proto::op::ResponseCode) -> &'static str {
    use hickory_proto::op::ResponseCode as R;
    match rc {
        R::NoError => "NOERROR",
        R::FormErr => "FORMERR",
        R::ServFail => "SERVFAIL",
        R::NXDomain => "NXDOMAIN",
        R::NotImp => "NOTIMP",
        R::Refused => "REFUSED",
        R::BADVERS => "BADVERS",
        _ => "OTHER",
    }
}
