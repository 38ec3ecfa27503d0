//! The fleet endpoints: `GET /v1/fleet/report` (this node's report, with
//! long-poll), `GET /v1/fleet` (the merged view and where each part comes
//! from), and the forwarding of admin calls for a PoP another node owns
//! to that node (docs/fleet.md).
//!
//! Reads the snapshot's fleet part, which the core builds; decides nothing
//! about verdicts. Forwarding only relays: the owner applies its own
//! guards.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::time::Instant;

use super::error::ApiError;
use super::AppState;
use crate::core::fleet::{self as cf, FleetSnapshot};
use crate::core::snapshot::{AdminKind, AdminStatus};
use crate::core::Snapshot;
use crate::fleet::client::{client_for, CallError};
use crate::model::{PopName, Role};
use crate::unix_time;

/// Header of an admin call forwarded by another node (its name).
pub const FORWARDED_BY: &str = "x-anypop-forwarded-by";

/// Longest long-poll wait a peer may ask for.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// The query of `GET /v1/fleet/report`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    /// Hold the request up to this long (`1s`, `500ms`) while the report
    /// is still revision `after` of `instance`.
    pub wait: Option<String>,
    pub after: Option<u64>,
    pub instance: Option<String>,
}

fn no_fleet() -> ApiError {
    ApiError::not_found("this node has no fleet: section in its config")
}

/// `GET /v1/fleet/report`.
pub async fn report(
    State(s): State<AppState>,
    q: Result<Query<ReportQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let wait = match q.wait.as_deref() {
        None => Duration::ZERO,
        Some(w) => crate::config::parse_duration(w)
            .map_err(|e| ApiError::invalid("wait", format!("wait: {e}")))?,
    };
    if wait > MAX_WAIT {
        return Err(ApiError::invalid(
            "wait",
            format!(
                "wait {} is too long: at most {}",
                crate::config::format_duration(wait),
                crate::config::format_duration(MAX_WAIT)
            ),
        ));
    }
    let deadline = Instant::now() + wait;
    let mut snaps = s.core.snapshots.clone();
    let mut stop = s.stop.clone();
    loop {
        let report = {
            let snap = snaps.borrow_and_update();
            snap.fleet.as_ref().map(|f| f.report.clone())
        };
        let report = report.ok_or_else(no_fleet)?;
        let changed = q.instance.as_deref() != Some(report.instance.as_str())
            || q.after != Some(report.revision);
        if changed || Instant::now() >= deadline || *stop.borrow() {
            return Ok(Json(&*report).into_response());
        }
        tokio::select! {
            r = snaps.changed() => if r.is_err() { return Ok(Json(&*report).into_response()) },
            _ = tokio::time::sleep_until(deadline) => {}
            _ = stop.changed() => {}
        }
    }
}

// ---------------------------------------------------------------- view

/// `GET /v1/fleet`.
#[derive(Debug, Clone, Serialize, Deserialize)]
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

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailStaticDto {
    pub fraction: f64,
    pub min_pops: u32,
    pub window: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
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

#[derive(Debug, Clone, Serialize, Deserialize)]
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

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OwnerDto {
    /// What the merge used (`unknown` when stale).
    pub verdict: String,
    /// What the owner's last report said.
    pub reported: Option<String>,
    pub age: Option<f64>,
    pub fresh: bool,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FleetAdminDto {
    pub kind: AdminKind,
    pub reason: String,
    pub who: String,
    pub step: String,
    pub next_at: Option<f64>,
    pub until: Option<f64>,
    pub from: String,
    pub age: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VantageDto {
    /// `up`, `down`, `unknown` or `not_probed`.
    pub verdict: String,
    pub age: Option<f64>,
    pub fresh: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
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

fn verdict_str(v: crate::core::hysteresis::Verdict) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn admin_dto(a: &cf::AdminView, now: Instant) -> FleetAdminDto {
    let s: &AdminStatus = &a.status;
    FleetAdminDto {
        kind: s.kind,
        reason: s.reason.clone(),
        who: s.who.clone(),
        step: s.step.to_string(),
        next_at: s.next_at.map(unix_time::secs),
        until: s.until.map(unix_time::secs),
        from: a.from.to_string(),
        age: Some(age(a.received, now).unwrap_or(0.0)),
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
                let verdict = super::metrics::fleet_verdict(v);
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

/// `GET /v1/fleet`.
pub async fn view(State(s): State<AppState>) -> Response {
    let snap = s.snapshot();
    Json(FleetDto::new(&snap, Instant::now())).into_response()
}

// ---------------------------------------------------------------- forwarding

/// The admin actions that forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Drain,
    Undrain,
    Disable,
    Enable,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Drain => "drain",
            Action::Undrain => "undrain",
            Action::Disable => "disable",
            Action::Enable => "enable",
        }
    }

    /// Whether `admin` (the owner's admin state in this node's view) shows
    /// the action done.
    fn shows(self, admin: Option<&AdminStatus>) -> bool {
        match self {
            Action::Drain => admin.is_some_and(|a| a.kind == AdminKind::Drain),
            Action::Undrain => admin.is_none_or(|a| {
                a.kind == AdminKind::Drain && a.step == crate::core::admin::Phase::Restoring
            }),
            Action::Disable => admin.is_some_and(|a| a.kind == AdminKind::Disable),
            Action::Enable => admin.is_none(),
        }
    }
}

/// `None`: the call is for this node (its own PoP, or one nobody in the
/// fleet owns). Else the answer of the forwarded call, or why it was not
/// forwarded.
pub async fn forward(
    s: &AppState,
    pop: &PopName,
    action: Action,
    headers: &HeaderMap,
    body: &Bytes,
) -> Option<Result<Response, ApiError>> {
    let snap = s.snapshot();
    let fleet = snap.config.fleet.as_ref()?;
    if snap.config.role(pop) != Role::Peer {
        return None;
    }
    let owners = fleet.owners.get(pop).cloned().unwrap_or_default();
    let owner_info = |n: &crate::model::NodeName| {
        let url = fleet
            .peers
            .get(n)
            .map(|p| p.url.to_string())
            .unwrap_or_default();
        json!({"node": n.as_str(), "url": url})
    };
    let names: Vec<&str> = owners.iter().map(|o| o.as_str()).collect();
    let refuse = |msg: String| {
        let mut b = json!({"error": msg, "owner": owners.first().map(owner_info)});
        if owners.len() > 1 {
            b["owners"] = owners.iter().map(owner_info).collect();
        }
        Some(Ok((StatusCode::CONFLICT, Json(b)).into_response()))
    };
    if let Some(by) = headers.get(FORWARDED_BY) {
        let by = by.to_str().unwrap_or("?");
        s.metrics.fleet_forwarded(pop.as_str(), "refused");
        return refuse(format!(
            "pop {pop} is owned by node {}, not this node ({}): the call forwarded by {by} is not forwarded again (do the nodes' configs agree?)",
            names.join(", "),
            fleet.me
        ));
    }
    if !fleet.forward_admin {
        s.metrics.fleet_forwarded(pop.as_str(), "refused");
        return refuse(format!(
            "pop {pop} is owned by node {}: send the request to its API",
            names.join(", ")
        ));
    }
    // The body as the owner gets it: `who` becomes "<who> via <this node>".
    let mut obj = if body.iter().all(u8::is_ascii_whitespace) {
        serde_json::Map::new()
    } else {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(m)) => m,
            _ => {
                return Some(Err(ApiError::bad_request(
                    "invalid request body: expected a JSON object (or no body)",
                )))
            }
        }
    };
    let who = obj
        .get("who")
        .and_then(|w| w.as_str())
        .unwrap_or("api")
        .to_string();
    obj.insert(
        "who".into(),
        Value::String(format!("{who} via {}", fleet.me)),
    );
    let out = Bytes::from(serde_json::to_vec(&Value::Object(obj)).unwrap_or_default());
    let path = format!("/v1/pops/{pop}/{}", action.as_str());
    let mut results: Vec<(String, StatusCode, Value)> = Vec::new();
    for o in &owners {
        let Some(peer) = fleet.peers.get(o) else {
            continue;
        };
        let client = client_for(&s.fleet_clients, peer);
        let answer = client
            .call(
                hyper::Method::POST,
                &path,
                &[(FORWARDED_BY, fleet.me.to_string())],
                Some(out.clone()),
                fleet.timeout,
            )
            .await;
        match answer {
            Ok(a) => {
                let body: Value = serde_json::from_slice(&a.body)
                    .unwrap_or_else(|_| json!({"error": String::from_utf8_lossy(&a.body)}));
                let status =
                    StatusCode::from_u16(a.status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
                s.metrics.fleet_forwarded(
                    pop.as_str(),
                    if status.is_success() { "ok" } else { "refused" },
                );
                results.push((o.to_string(), status, body));
            }
            Err(e) => {
                s.metrics.fleet_forwarded(pop.as_str(), "unreachable");
                let (status, what) = match &e {
                    CallError::Connect(_) => (StatusCode::BAD_GATEWAY, "nothing was applied"),
                    CallError::Timeout | CallError::Exchange(_) => (
                        StatusCode::GATEWAY_TIMEOUT,
                        "the change may or may not have been applied: GET /v1/fleet shows which",
                    ),
                };
                let body = json!({
                    "error": format!("pop {pop} is owned by node {o}, which could not be reached ({e}): {what}"),
                    "owner": owner_info(o),
                });
                results.push((o.to_string(), status, body));
            }
        }
    }
    let ok = results.iter().all(|(_, st, _)| st.is_success());
    let (first, status, mut body) = match results
        .iter()
        .find(|(_, st, _)| !st.is_success())
        .or(results.first())
    {
        Some(r) => r.clone(),
        None => {
            return Some(Err(ApiError::new(
                StatusCode::BAD_GATEWAY,
                format!("pop {pop}: no owner node is configured as a peer"),
            )))
        }
    };
    if let Some(b) = body.as_object_mut() {
        if let Some(n) = owners.iter().find(|n| n.as_str() == first) {
            b.insert("forwarded_to".into(), owner_info(n));
        }
        if owners.len() > 1 {
            b.insert(
                "owners".into(),
                results
                    .iter()
                    .map(|(n, st, _)| json!({"node": n, "status": st.as_u16()}))
                    .collect(),
            );
        }
    }
    if ok {
        // Answer once this node's own view shows the change (the owner's
        // report arrives within one long-poll round trip).
        let mut snaps = s.core.snapshots.clone();
        let seen = tokio::time::timeout(
            fleet.timeout,
            snaps.wait_for(|x| action.shows(x.pops.get(pop).and_then(|p| p.admin.as_ref()))),
        )
        .await
        .is_ok_and(|r| r.is_ok());
        if let Some(b) = body.as_object_mut() {
            b.insert("applied_here".into(), Value::Bool(seen));
        }
    }
    Some(Ok((status, Json(body)).into_response()))
}
