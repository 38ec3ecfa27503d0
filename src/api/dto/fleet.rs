//! The fleet's DTOs: the merged view of `GET /v1/fleet` ([`FleetDto`]),
//! built from the snapshot's fleet part. Converts only; the core decides
//! the verdicts. (The peers' report of `GET /v1/fleet/report` is the
//! fleet's own wire format, `fleet::wire`.)

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use utoipa::{IntoParams, ToSchema};

use super::view::AdminKind;
use crate::core::fleet::{self as cf, FleetSnapshot};
use crate::core::{self, Snapshot};
use crate::unix_time;

/// The query of `GET /v1/fleet/report`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReportQuery {
    /// Hold the request up to this long (`1s`, `500ms`) while the report
    /// is still revision `after` of `instance`.
    pub wait: Option<String>,
    /// The revision the caller has.
    pub after: Option<u64>,
    /// The instance the caller's revision belongs to.
    pub instance: Option<String>,
}

/// `GET /v1/fleet`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FleetDto {
    pub enabled: bool,
    pub node: String,
    pub pop: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<SettingsDto>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
    pub peers: BTreeMap<String, PeerDto>,
    pub pops: BTreeMap<String, FleetPopDto>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FailStaticDto {
    pub fraction: f64,
    pub min_pops: u32,
    pub window: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SettingsDto {
    pub pull_interval: f64,
    pub stale_after: f64,
    pub timeout: f64,
    pub stream: bool,
    pub unreachable_quorum: u32,
    pub forward_admin: bool,
    pub drain_ack_timeout: f64,
    pub fail_static: Option<FailStaticDto>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PeerDto {
    pub pop: Option<String>,
    pub url: String,
    /// `fresh`, `stale` or `never`.
    pub status: String,
    pub age: Option<f64>,
    pub instance: Option<String>,
    pub revision: Option<u64>,
    pub errors: u32,
    pub last_error: Option<String>,
    pub pulls: u64,
    pub pull_errors: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OwnerDto {
    /// What the merge used (`unknown` when stale).
    pub verdict: String,
    /// What the owner's last report said.
    pub reported: Option<String>,
    pub age: Option<f64>,
    pub fresh: bool,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FleetAdminDto {
    pub kind: AdminKind,
    pub reason: String,
    pub who: String,
    pub step: String,
    pub next_at: Option<f64>,
    pub until: Option<f64>,
    pub from: String,
    pub age: Option<f64>,
    /// Present only while the owner holds the drain at the end of its DNS
    /// step (last-PoP guard): why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VantageDto {
    /// `up`, `down`, `unknown` or `not_probed`.
    pub verdict: String,
    pub age: Option<f64>,
    pub fresh: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FleetPopDto {
    pub owners: Vec<String>,
    pub owner: OwnerDto,
    pub admin: Option<FleetAdminDto>,
    pub vantage: BTreeMap<String, VantageDto>,
    /// `reachable`, `unreachable` or `unknown`.
    pub reachability: String,
    pub reachable: u32,
    pub unreachable: u32,
    pub fail_static: Option<String>,
    /// `up`, `down`, `draining`, `disabled` or `unknown`.
    pub verdict: String,
    pub serves_dns: bool,
    pub why: String,
}

fn age(received: Option<Instant>, now: Instant) -> Option<f64> {
    received.map(|r| (now.saturating_duration_since(r).as_secs_f64() * 1000.0).round() / 1000.0)
}

fn verdict_str(v: core::hysteresis::Verdict) -> String {
    use core::hysteresis::Verdict as V;
    match v {
        V::Unknown => "unknown",
        V::Up => "up",
        V::Down => "down",
    }
    .to_string()
}

fn admin_dto(a: &cf::AdminView, now: Instant) -> FleetAdminDto {
    let s: &core::AdminStatus = &a.status;
    FleetAdminDto {
        kind: match s.kind {
            core::AdminKind::Drain => AdminKind::Drain,
            core::AdminKind::Disable => AdminKind::Disable,
        },
        reason: s.reason.clone(),
        who: s.who.clone(),
        step: s.step.to_string(),
        next_at: s.next_at.map(unix_time::secs),
        until: s.until.map(unix_time::secs),
        from: a.from.to_string(),
        age: Some(age(a.received, now).unwrap_or(0.0)),
        held: s.held.clone(),
    }
}

impl FleetDto {
    pub fn new(snap: &Snapshot, now: Instant) -> FleetDto {
        let config = &snap.config;
        let base = FleetDto {
            enabled: false,
            node: config.node.name.clone(),
            pop: config.node.pop.as_ref().map(|p| p.to_string()),
            settings: None,
            instance: None,
            revision: None,
            peers: BTreeMap::new(),
            pops: BTreeMap::new(),
        };
        let (Some(f), Some(fs)) = (config.fleet.as_ref(), snap.fleet.as_deref()) else {
            return base;
        };
        let FleetSnapshot {
            report,
            view,
            peers,
        } = fs;
        let peers = peers
            .iter()
            .map(|(name, p)| {
                let status = match (p.received, p.fresh) {
                    (None, _) => "never",
                    (Some(_), true) => "fresh",
                    (Some(_), false) => "stale",
                };
                (
                    name.to_string(),
                    PeerDto {
                        pop: p.pop.as_ref().map(|x| x.to_string()),
                        url: p.url.to_string(),
                        status: status.to_string(),
                        age: age(p.received, now),
                        instance: p.instance.clone(),
                        revision: p.revision,
                        errors: p.errors,
                        last_error: p.last_error.clone(),
                        pulls: p.pulls,
                        pull_errors: p.pull_errors,
                    },
                )
            })
            .collect();
        let pops = view
            .pops
            .iter()
            .map(|(name, v)| {
                let serves = snap.pops.get(name).is_some_and(|p| p.serves_dns);
                let verdict = crate::api::metrics::fleet_verdict(v);
                let dto = FleetPopDto {
                    owners: v.owners.iter().map(|o| o.to_string()).collect(),
                    owner: OwnerDto {
                        verdict: verdict_str(v.owner.verdict),
                        reported: v.owner.reported.map(verdict_str),
                        age: if v.owner.received.is_none() && v.owner.reported.is_some() {
                            Some(0.0)
                        } else {
                            age(v.owner.received, now)
                        },
                        fresh: v.owner.fresh,
                        reason: v.owner.reason.clone(),
                    },
                    admin: v.admin.as_ref().map(|a| admin_dto(a, now)),
                    vantage: v
                        .vantage
                        .iter()
                        .map(|(n, x)| {
                            (
                                n.to_string(),
                                VantageDto {
                                    verdict: x.verdict.as_str().to_string(),
                                    age: if x.received.is_none() && x.fresh {
                                        Some(0.0)
                                    } else {
                                        age(x.received, now)
                                    },
                                    fresh: x.fresh,
                                },
                            )
                        })
                        .collect(),
                    reachability: v.reachability.as_str().to_string(),
                    reachable: v.reachable,
                    unreachable: v.unreachable,
                    fail_static: v.fail_static.clone(),
                    verdict: verdict.to_string(),
                    serves_dns: serves,
                    why: v.why.clone(),
                };
                (name.to_string(), dto)
            })
            .collect();
        FleetDto {
            enabled: true,
            settings: Some(SettingsDto {
                pull_interval: f.pull_interval.as_secs_f64(),
                stale_after: f.stale_after.as_secs_f64(),
                timeout: f.timeout.as_secs_f64(),
                stream: f.stream,
                unreachable_quorum: f.unreachable_quorum,
                forward_admin: f.forward_admin,
                drain_ack_timeout: f.drain_ack_timeout.as_secs_f64(),
                fail_static: f.fail_static.map(|r| FailStaticDto {
                    fraction: r.fraction,
                    min_pops: r.min_pops,
                    window: r.window.as_secs_f64(),
                }),
            }),
            instance: Some(report.instance.clone()),
            revision: Some(report.revision),
            peers,
            pops,
            ..base
        }
    }
}
