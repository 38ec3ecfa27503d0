//! `/v1/explain`: why a DNS query gets the answer it gets, as the API shows
//! it. Built from the DNS engine's [`crate::dns::Explanation`].

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::dns::explain as dns;
use crate::dns::policy;

/// The client the answer is computed for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Client {
    /// Address with the bits beyond `prefix` cleared.
    #[schema(value_type = String)]
    pub addr: std::net::IpAddr,
    /// Source prefix length (0: no client information).
    pub prefix: u8,
    /// True if given as an EDNS Client Subnet.
    pub from_ecs: bool,
}

/// The answer to (name, type, client) and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Explanation {
    pub name: String,
    pub qtype: String,
    pub client: Client,
    pub snapshot_version: u64,
    /// `NOERROR`, `NXDOMAIN`, `REFUSED`, ...
    pub rcode: String,
    pub authoritative: bool,
    /// The zone the name falls in, if any.
    #[schema(required)]
    pub zone: Option<String>,
    /// Answer records in zone-file text form.
    pub answers: Vec<String>,
    /// Authority records (the SOA of negative answers).
    pub authority: Vec<String>,
    /// The ECS scope prefix length the answer would carry.
    pub ecs_scope: u8,
    /// Present when a steered record decided the answer.
    #[schema(required)]
    pub steering: Option<Steering>,
}

/// How a steered record chose the answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Steering {
    /// The steered record (after following CNAMEs).
    pub record: String,
    pub policy: String,
    /// `A` or `AAAA`.
    pub family: String,
    /// PoPs whose addresses are in the answer.
    pub chosen: Vec<String>,
    #[schema(value_type = Vec<String>)]
    pub addresses: Vec<std::net::IpAddr>,
    /// PoPs that could be answered with, in policy order.
    pub eligible: Vec<String>,
    pub excluded: Vec<Excluded>,
    /// True if no (or too few) PoPs are healthy and the answer fails open.
    pub fail_open: bool,
    #[schema(required)]
    pub fail_open_reason: Option<String>,
    /// Whether the answer depends on the client (ECS scope above 0).
    pub client_dependent: bool,
    pub ttl: u32,
    pub ttl_reason: String,
    /// The rule that picked the answer for this client.
    pub rule: Rule,
    /// What the MaxMind database says about the client's block, when the
    /// policy consults it.
    #[schema(required)]
    pub geo: Option<Geo>,
    /// `nearest`: distance from the client to every eligible PoP with a
    /// location, nearest first.
    pub distances: Vec<Distance>,
    /// The decision in words.
    pub decision: String,
}

/// A PoP that cannot be answered with, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Excluded {
    pub pop: String,
    /// `down`, `draining`, `disabled`, `not_serving`, `undecided`,
    /// `unknown`, `zero_weight` or `no_address`.
    pub reason: String,
}

/// A rule of a plan: `fixed`, `hashed`, `default`, `nearest`, or
/// `subnet`, `country`, `continent` with the matching `value`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Rule {
    pub rule: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// What the database says about a client block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Geo {
    #[schema(required)]
    pub country: Option<String>,
    #[schema(required)]
    pub continent: Option<String>,
    /// `[latitude, longitude]` in degrees.
    #[schema(required)]
    pub coordinates: Option<(f64, f64)>,
    /// Prefix length of the database network the answer holds for.
    pub prefix: u8,
}

/// Great-circle distance from the client to a PoP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Distance {
    pub pop: String,
    pub km: f64,
}

fn family(f: policy::Family) -> String {
    match f {
        policy::Family::V4 => "A",
        policy::Family::V6 => "AAAA",
    }
    .to_string()
}

fn exclusion(e: policy::Exclusion) -> String {
    use policy::Exclusion as E;
    match e {
        E::Down => "down",
        E::Draining => "draining",
        E::Disabled => "disabled",
        E::NotServing => "not_serving",
        E::Undecided => "undecided",
        E::Unknown => "unknown",
        E::ZeroWeight => "zero_weight",
        E::NoAddress => "no_address",
    }
    .to_string()
}

impl From<policy::Rule> for Rule {
    fn from(r: policy::Rule) -> Rule {
        use policy::Rule as R;
        let (rule, value) = match r {
            R::Fixed => ("fixed", None),
            R::Hashed => ("hashed", None),
            R::Subnet(n) => ("subnet", Some(n.to_string())),
            R::Country(c) => ("country", Some(c.to_string())),
            R::Continent(c) => ("continent", Some(c.to_string())),
            R::Default => ("default", None),
            R::Nearest => ("nearest", None),
        };
        Rule {
            rule: rule.to_string(),
            value,
        }
    }
}

impl From<dns::SteeringExplanation> for Steering {
    fn from(s: dns::SteeringExplanation) -> Steering {
        Steering {
            record: s.record,
            policy: s.policy.to_string(),
            family: family(s.family),
            chosen: s.chosen.iter().map(|p| p.to_string()).collect(),
            addresses: s.addresses,
            eligible: s.eligible.iter().map(|p| p.to_string()).collect(),
            excluded: s
                .excluded
                .into_iter()
                .map(|e| Excluded {
                    pop: e.pop.to_string(),
                    reason: exclusion(e.reason),
                })
                .collect(),
            fail_open: s.fail_open,
            fail_open_reason: s.fail_open_reason,
            client_dependent: s.client_dependent,
            ttl: s.ttl,
            ttl_reason: s.ttl_reason,
            rule: s.rule.into(),
            geo: s.geo.map(|g| Geo {
                country: g.country.map(|c| c.to_string()),
                continent: g.continent.map(|c| c.to_string()),
                coordinates: g.coordinates,
                prefix: g.prefix,
            }),
            distances: s
                .distances
                .into_iter()
                .map(|d| Distance {
                    pop: d.pop.to_string(),
                    km: d.km,
                })
                .collect(),
            decision: s.decision,
        }
    }
}

impl From<dns::Explanation> for Explanation {
    fn from(e: dns::Explanation) -> Explanation {
        Explanation {
            name: e.name,
            qtype: e.qtype,
            client: Client {
                addr: e.client.addr,
                prefix: e.client.prefix,
                from_ecs: e.client.from_ecs,
            },
            snapshot_version: e.snapshot_version,
            rcode: e.rcode,
            authoritative: e.authoritative,
            zone: e.zone,
            answers: e.answers,
            authority: e.authority,
            ecs_scope: e.ecs_scope,
            steering: e.steering.map(Steering::from),
        }
    }
}
