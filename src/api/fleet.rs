//! The fleet endpoints: `GET /v1/fleet/report` (this node's report, with
//! long-poll), `GET /v1/fleet` (the merged view and where each part comes
//! from), and the forwarding of admin calls for a PoP another node owns
//! to that node (docs/fleet.md).
//!
//! Reads the snapshot's fleet part, which the core builds; decides nothing
//! about verdicts. Forwarding only relays: the owner applies its own
//! guards.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::dto::fleet::{FleetDto, ReportQuery};
use super::dto::ErrorBody;
use super::error::ApiError;
use super::handlers::READ_401;
use super::AppState;
use crate::core::snapshot::{AdminKind, AdminStatus};
use crate::fleet::client::{client_for, CallError};
use crate::fleet::wire::ReportV1;
use crate::model::{PopName, Role};

/// Header of an admin call forwarded by another node (its name).
pub const FORWARDED_BY: &str = "x-anypop-forwarded-by";

/// Longest long-poll wait a peer may ask for.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

fn no_fleet() -> ApiError {
    ApiError::not_found("this node has no fleet: section in its config")
}

/// `GET /v1/fleet/report`.
#[utoipa::path(get, path = "/v1/fleet/report", tag = "read",
    summary = "This node's fleet report (format 1), read by its peers; long-poll with wait/after/instance.",
    security((), ("bearer" = [])),
    params(ReportQuery),
    responses(
        (status = 200, description = "The report (format 1; docs/fleet.md).", body = ReportV1),
        (status = 400, description = "Unknown query parameter or a malformed value.", body = ErrorBody),
        (status = 401, description = READ_401, body = ErrorBody),
        (status = 404, description = "This node has no fleet: section.", body = ErrorBody),
        (status = 422, description = "wait is not a duration or longer than 60s.", body = ErrorBody),
    ))]
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
            return Ok(Json(ReportV1::from(&*report)).into_response());
        }
        tokio::select! {
            r = snaps.changed() => if r.is_err() { return Ok(Json(ReportV1::from(&*report)).into_response()) },
            _ = tokio::time::sleep_until(deadline) => {}
            _ = stop.changed() => {}
        }
    }
}

// ---------------------------------------------------------------- view

/// `GET /v1/fleet`.
#[utoipa::path(get, path = "/v1/fleet", tag = "read",
    summary = "The fleet view: peers, and per PoP the owner's verdict, each vantage point's, the admin state and the fleet verdict (docs/fleet.md).",
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The fleet view (`enabled: false` without `fleet:`).", body = FleetDto),
        (status = 401, description = READ_401, body = ErrorBody),
    ))]
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
