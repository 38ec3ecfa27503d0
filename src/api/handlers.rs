//! Request handlers. Reads serialize the current snapshot; admin actions go
//! to the core and answer with the snapshot that includes them.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use tokio::sync::oneshot;

use super::dto::{self, AdminResult, ChecksView, PopView, PopsView, StateView};
use super::error::ApiError;
use super::fleet::{self, Action};
use super::{AppState, CORE_TIMEOUT};
use crate::core::admin::{AdminCommand, AdminError};
use crate::core::{Input, Snapshot};
use crate::dns::{Client, ExplainError};
use crate::model::{Name, PopName};

pub async fn state(State(s): State<AppState>) -> Response {
    let snap = s.snapshot();
    Json(StateView::new(&snap, s.peers_json())).into_response()
}

pub async fn pops(State(s): State<AppState>) -> Response {
    let snap = s.snapshot();
    Json(PopsView::new(&snap)).into_response()
}

pub async fn pop(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let snap = s.snapshot();
    let (key, status) = snap
        .pops
        .get_key_value(name.as_str())
        .ok_or_else(|| ApiError::unknown_pop(&name))?;
    Ok(Json(PopView::new(&snap, key.as_str(), status)).into_response())
}

pub async fn peers(State(s): State<AppState>) -> Response {
    Json(json!({ "peers": s.peers_json() })).into_response()
}

pub async fn checks(State(s): State<AppState>) -> Response {
    let snap = s.snapshot();
    Json(ChecksView::new(&snap)).into_response()
}

pub async fn explain(
    State(s): State<AppState>,
    q: Result<Query<dto::ExplainQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(query_error)?;
    let name = q
        .name
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| ApiError::invalid("name", "name is required: the DNS name to explain"))?;
    let qtype = q.qtype.unwrap_or_else(|| "A".to_string());
    let client = match q.client.as_deref() {
        None => Client::from_ecs(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        Some(c) => parse_client(c)?,
    };
    let snap = s.snapshot();
    match crate::dns::explain(&snap, tokio::time::Instant::now(), &name, &qtype, client) {
        Ok(e) => Ok(Json(e).into_response()),
        Err(e @ ExplainError::Name(_)) => Err(ApiError::invalid("name", e.to_string())),
        Err(e @ ExplainError::Type(_)) => Err(ApiError::invalid("type", e.to_string())),
        Err(e @ ExplainError::Zone(_)) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            e.to_string(),
        )),
    }
}

/// `192.0.2.1` (a resolver or client address) or `192.0.2.0/24` (an EDNS
/// Client Subnet).
fn parse_client(c: &str) -> Result<Client, ApiError> {
    let bad = || {
        ApiError::invalid(
            "client",
            format!(
                "client {c:?} is not an IP address or subnet (e.g. 192.0.2.1, 198.51.100.0/24)"
            ),
        )
    };
    match c.split_once('/') {
        None => c
            .parse::<IpAddr>()
            .map(Client::from_source)
            .map_err(|_| bad()),
        Some((addr, len)) => {
            let addr: IpAddr = addr.parse().map_err(|_| bad())?;
            let len: u8 = len.parse().map_err(|_| bad())?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            if len > max {
                return Err(bad());
            }
            Ok(Client::from_ecs(addr, len))
        }
    }
}

fn query_error(e: QueryRejection) -> ApiError {
    let msg = e.body_text();
    let field = msg
        .split("unknown field `")
        .nth(1)
        .and_then(|r| r.split('`').next())
        .map(str::to_string);
    let err = ApiError::bad_request(msg);
    match field {
        Some(f) => err.field(f),
        None => err,
    }
}

pub async fn metrics(State(s): State<AppState>) -> Response {
    let snap = s.snapshot();
    let text = s.metrics.render(&snap);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

pub async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

pub async fn readyz(State(s): State<AppState>) -> Response {
    let waiting = s.readiness.waiting();
    let status = if waiting.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({"ready": waiting.is_empty(), "waiting": waiting})),
    )
        .into_response()
}

pub async fn openapi() -> Response {
    Json(super::openapi::document()).into_response()
}

pub async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint (see /v1/openapi.json)")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed on this endpoint",
    )
}

pub async fn reload(State(s): State<AppState>) -> Result<Response, ApiError> {
    let Some(f) = &s.reload else {
        return Err(ApiError::not_implemented(
            "config reload is not available in this process",
        ));
    };
    match tokio::time::timeout(CORE_TIMEOUT, f()).await {
        Err(_) => Err(ApiError::unavailable("config reload timed out")),
        Ok(Ok(version)) => Ok(Json(json!({"version": version, "reloaded": true})).into_response()),
        Ok(Err(errors)) => {
            let mut e = ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "config not reloaded: {} error(s); the running config is unchanged",
                    errors.len()
                ),
            );
            e.errors = errors;
            Err(e)
        }
    }
}

// ---------------------------------------------------------------- admin

/// The PoP a command is for.
fn pop_of(cmd: &AdminCommand) -> PopName {
    cmd.pop().clone()
}

/// The PoP and body of an admin request, with extractor failures as JSON
/// errors (bad percent-encoding, body too large).
fn admin_input(
    s: &AppState,
    name: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(PopName, Bytes), ApiError> {
    let Path(name) = name.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    let pop = pop_name(s, &name)?;
    let body = body.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    Ok((pop, body))
}

/// Resolves a PoP name from the path against the current config.
fn pop_name(s: &AppState, name: &str) -> Result<PopName, ApiError> {
    let snap = s.snapshot();
    match Name::parse(name) {
        Ok(n) if snap.config.pops.contains_key(&n) => Ok(n),
        _ => Err(ApiError::unknown_pop(name)),
    }
}

/// Sends `cmd` to the core and answers with the PoP as of the snapshot
/// that includes the change.
async fn run_admin(s: &AppState, cmd: AdminCommand) -> Result<Response, ApiError> {
    let pop = cmd.pop().clone();
    let (reply, rx) = oneshot::channel();
    s.core
        .inputs
        .send_timeout(Input::Admin { cmd, reply }, CORE_TIMEOUT)
        .await
        .map_err(|_| ApiError::from(AdminError::Unavailable))?;
    let version = match tokio::time::timeout(CORE_TIMEOUT, rx).await {
        Err(_) => {
            return Err(ApiError::unavailable(
                "the controller did not answer in time",
            ))
        }
        Ok(Err(_)) => return Err(AdminError::Unavailable.into()),
        Ok(Ok(r)) => r?,
    };
    let mut snaps = s.core.snapshots.clone();
    let snap: Arc<Snapshot> =
        match tokio::time::timeout(CORE_TIMEOUT, snaps.wait_for(|x| x.version >= version)).await {
            Ok(Ok(r)) => r.clone(),
            _ => s.snapshot(),
        };
    let status = snap.pops.get(&pop);
    let body = AdminResult {
        version,
        pop: pop.to_string(),
        state: status.map(|p| p.state.to_string()).unwrap_or_default(),
        serves_dns: status.is_some_and(|p| p.serves_dns),
        admin: status
            .and_then(|p| p.admin.as_ref())
            .and_then(|a| serde_json::to_value(a).ok()),
    };
    Ok(Json(body).into_response())
}

pub async fn drain(
    State(s): State<AppState>,
    headers: HeaderMap,
    name: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (pop, body) = admin_input(&s, name, body)?;
    let b: dto::DrainBody = dto::parse_body(&body)?;
    let cmd = AdminCommand::Drain {
        pop,
        reason: dto::text("reason", b.reason, "drained via API")?,
        who: dto::text("who", b.who, "api")?,
        duration: dto::drain_duration(b.duration.as_deref())?,
        mode: dto::mode(b.mode.as_deref())?,
        force: b.force,
    };
    if let Some(r) = fleet::forward(&s, &pop_of(&cmd), Action::Drain, &headers, &body).await {
        return r;
    }
    run_admin(&s, cmd).await
}

pub async fn undrain(
    State(s): State<AppState>,
    headers: HeaderMap,
    name: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (pop, body) = admin_input(&s, name, body)?;
    let b: dto::UndrainBody = dto::parse_body(&body)?;
    let cmd = AdminCommand::Undrain {
        pop,
        who: dto::text("who", b.who, "api")?,
        mode: dto::mode(b.mode.as_deref())?,
    };
    if let Some(r) = fleet::forward(&s, &pop_of(&cmd), Action::Undrain, &headers, &body).await {
        return r;
    }
    run_admin(&s, cmd).await
}

pub async fn disable(
    State(s): State<AppState>,
    headers: HeaderMap,
    name: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (pop, body) = admin_input(&s, name, body)?;
    let b: dto::DisableBody = dto::parse_body(&body)?;
    let cmd = AdminCommand::Disable {
        pop,
        reason: dto::text("reason", b.reason, "disabled via API")?,
        who: dto::text("who", b.who, "api")?,
        force: b.force,
    };
    if let Some(r) = fleet::forward(&s, &pop_of(&cmd), Action::Disable, &headers, &body).await {
        return r;
    }
    run_admin(&s, cmd).await
}

pub async fn enable(
    State(s): State<AppState>,
    headers: HeaderMap,
    name: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (pop, body) = admin_input(&s, name, body)?;
    let b: dto::EnableBody = dto::parse_body(&body)?;
    let cmd = AdminCommand::Enable {
        pop,
        who: dto::text("who", b.who, "api")?,
    };
    if let Some(r) = fleet::forward(&s, &pop_of(&cmd), Action::Enable, &headers, &body).await {
        return r;
    }
    run_admin(&s, cmd).await
}
