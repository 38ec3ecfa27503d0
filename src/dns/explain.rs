//! Explain a DNS answer: for (name, type, client) what the server answers
//! from a snapshot and why (policy, eligible and excluded PoPs, fail-open,
//! TTL and its reason). Pure: it runs the same lookup and steering code as
//! the server, over the given snapshot and time, without sockets.

use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

use hickory_proto::rr::{Name, RecordType};
use serde::Serialize;
use tokio::time::Instant;

use super::answer::resolve;
use super::policy::{Client, Exclusion, Family};
use super::state::State;
use super::zone::Zones;
use crate::core::Snapshot;
use crate::model::PopName;

#[derive(Debug, Clone, Serialize)]
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

#[derive(Debug, Clone, Serialize)]
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
}

#[derive(Debug, Clone, Serialize)]
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
        Some(SteeringExplanation {
            record: rec.name.clone(),
            policy: plan.policy,
            family: s.family,
            chosen: v.map(|v| v.pops.clone()).unwrap_or_default(),
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
