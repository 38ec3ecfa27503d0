//! Request handlers. Reads convert the current snapshot into the response
//! DTOs; admin actions go to the core and answer with the snapshot that
//! includes them. Each handler carries its OpenAPI description
//! (`#[utoipa::path]`), from which the document is generated.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use tokio::sync::oneshot;

use super::dto::{self, AdminResult, Checks, ErrorBody, Pop, Pops, Ready, ReloadResult};
use super::error::ApiError;
use super::fleet::{self, Action, Route};
use super::{AppState, CORE_TIMEOUT};
use crate::core::admin::{AdminCommand, AdminError};
use crate::core::{Input, Snapshot};
use crate::dns::{Client, ExplainError};
use crate::model::{Name, PopName};

/// Read endpoints are open, or need the token with `api.protect_reads`.
pub(super) const READ_401: &str =
    "Reads are protected (api.protect_reads) and the token is missing or invalid.";

#[utoipa::path(get, path = "/v1/state", tag = "read",
    summary = "Everything: node, PoPs, checks, announcements, BGP peers, DNS zones.",
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The state.", body = dto::State),
        (status = 401, description = READ_401, body = ErrorBody),
    ))]
pub async fn state(State(s): State<AppState>) -> Response {
    let snap = s.snapshot();
    let peers = s.peers();
    json_off_runtime(move || dto::State::from_snapshot(&snap, peers)).await
}

/// Builds and serialises a JSON answer on the blocking pool. The views
/// that list every prefix of every PoP (`/v1/state`, `/v1/pops`,
/// `/v1/pops/{name}`) take seconds with 100,000 prefixes per PoP; on an
/// async worker that long they stall the tasks queued behind them — BGP
/// keepalives (a hold timer expired while `/v1/state` was being
/// answered), fleet long-polls, DNS over TCP.
async fn json_off_runtime<T: serde::Serialize>(
    build: impl FnOnce() -> T + Send + 'static,
) -> Response {
    match tokio::task::spawn_blocking(move || Json(build()).into_response()).await {
        Ok(r) => r,
        Err(e) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("building the answer failed: {e}"),
        )
        .into_response(),
    }
}

#[utoipa::path(get, path = "/v1/pops", tag = "read", summary = "All PoPs.",
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "PoPs by name.", body = Pops),
        (status = 401, description = READ_401, body = ErrorBody),
    ))]
pub async fn pops(State(s): State<AppState>) -> Response {
    let snap = s.snapshot();
    json_off_runtime(move || Pops::from_snapshot(&snap)).await
}

#[utoipa::path(get, path = "/v1/pops/{name}", tag = "read",
    summary = "One PoP: state, reason, checks, admin override, prefixes.",
    security((), ("bearer" = [])),
    params(("name" = String, Path, description = "PoP name")),
    responses(
        (status = 200, description = "The PoP.", body = Pop),
        (status = 401, description = READ_401, body = ErrorBody),
        (status = 404, description = "Unknown PoP.", body = ErrorBody),
    ))]
pub async fn pop(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let snap = s.snapshot();
    let key = match snap.pops.get_key_value(name.as_str()) {
        Some((key, _)) => key.clone(),
        None => return Err(ApiError::unknown_pop(&name)),
    };
    Ok(json_off_runtime(move || {
        let status = &snap.pops[&key];
        Pop::from_snapshot(&snap, key.as_str(), status)
    })
    .await)
}

#[utoipa::path(get, path = "/v1/peers", tag = "read",
    summary = "BGP peers: FSM state, uptime, prefixes advertised, BFD.",
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "Peers by name (empty without BGP).", body = dto::Peers),
        (status = 401, description = READ_401, body = ErrorBody),
    ))]
pub async fn peers(State(s): State<AppState>) -> Response {
    Json(dto::Peers { peers: s.peers() }).into_response()
}

#[utoipa::path(get, path = "/v1/checks", tag = "read",
    summary = "Every check with its last result and rise/fall counters.",
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "Checks.", body = Checks),
        (status = 401, description = READ_401, body = ErrorBody),
    ))]
pub async fn checks(State(s): State<AppState>) -> Response {
    let snap = s.snapshot();
    Json(Checks::from_snapshot(&snap)).into_response()
}

#[utoipa::path(get, path = "/v1/explain", tag = "read",
    summary = "Why a DNS query gets the answer it gets.",
    security((), ("bearer" = [])),
    params(dto::ExplainQuery),
    responses(
        (status = 200, description = "The explanation, from the DNS engine.", body = dto::Explanation),
        (status = 400, description = "Unknown query parameter.", body = ErrorBody),
        (status = 401, description = READ_401, body = ErrorBody),
        (status = 422, description = "Missing name, unknown type, bad client address, or a name outside the zones.", body = ErrorBody),
        (status = 500, description = "The zone data could not be compiled.", body = ErrorBody),
    ))]
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
        Ok(e) => Ok(Json(dto::Explanation::from(e)).into_response()),
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

#[utoipa::path(get, path = "/metrics", tag = "read",
    summary = "Prometheus metrics (text exposition format 0.0.4).",
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "Metrics.", body = String, content_type = "text/plain; version=0.0.4"),
        (status = 401, description = READ_401, body = ErrorBody),
    ))]
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

#[utoipa::path(get, path = "/healthz", tag = "health", summary = "The process is alive.",
    responses((status = 200, description = "Alive.", body = dto::Health)))]
pub async fn healthz() -> Response {
    Json(dto::Health {
        status: "ok".into(),
    })
    .into_response()
}

#[utoipa::path(get, path = "/readyz", tag = "health", summary = "Config loaded and listeners up.",
    responses(
        (status = 200, description = "Ready.", body = Ready),
        (status = 503, description = "Not ready; `waiting` lists what is not up yet.", body = Ready),
    ))]
pub async fn readyz(State(s): State<AppState>) -> Response {
    let waiting = s.readiness.waiting();
    let status = if waiting.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(Ready {
            ready: waiting.is_empty(),
            waiting,
        }),
    )
        .into_response()
}

#[utoipa::path(get, path = "/v1/openapi.json", tag = "health", summary = "This document.",
    responses((status = 200, description = "OpenAPI 3.1 document.", body = Object)))]
pub async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        super::openapi::document_json(),
    )
        .into_response()
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

#[utoipa::path(post, path = "/v1/reload", tag = "admin",
    summary = "Reload the config file (same rules as SIGHUP).",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Reloaded.", body = ReloadResult),
        (status = 401, description = "Missing or invalid bearer token.", body = ErrorBody),
        (status = 422, description = "The new config is invalid; `errors` lists every problem. The running config is unchanged.", body = ErrorBody),
        (status = 501, description = "Reload is not available in this process.", body = ErrorBody),
        (status = 500, description = "The reload task failed.", body = ErrorBody),
        (status = 504, description = "The reload did not finish in time. It still runs to completion; its outcome shows in the events (kind `reload`) and the log.", body = ErrorBody),
    ))]
pub async fn reload(State(s): State<AppState>) -> Result<Response, ApiError> {
    let Some(f) = &s.reload else {
        return Err(ApiError::not_implemented(
            "config reload is not available in this process",
        ));
    };
    // The reload runs on its own task: a caller that times out or hangs up
    // never leaves it half done.
    let task = tokio::spawn(f());
    match tokio::time::timeout(s.reload_timeout, task).await {
        Err(_) => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "config reload still running after {:?}: it will finish on its own; watch the events (kind reload) or the log for its outcome",
                s.reload_timeout
            ),
        )),
        Ok(Err(e)) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("config reload failed: {e}"),
        )),
        Ok(Ok(Ok(version))) => Ok(Json(ReloadResult {
            version,
            reloaded: true,
        })
        .into_response()),
        Ok(Ok(Err(errors))) => {
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

/// The answers of every admin action, for the OpenAPI document.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
enum AdminResponses {
    /// The change is in force; the PoP as of the snapshot that includes it.
    #[response(status = 200)]
    Done(AdminResult),
    /// Malformed body, wrong type or unknown field (`field` names it).
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// Missing or invalid bearer token.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// Unknown PoP.
    #[response(status = 404)]
    UnknownPop(ErrorBody),
    /// Refused: last PoP serving traffic (use force), nothing to undo, or
    /// another node's PoP with forwarding off (or already forwarded).
    #[response(status = 409)]
    Conflict(ErrorBody),
    /// A value is not acceptable (`field` names it).
    #[response(status = 422)]
    Invalid(ErrorBody),
    /// Admin state could not be persisted; nothing changed.
    #[response(status = 500)]
    NotSaved(ErrorBody),
    /// The controller is shutting down or did not answer.
    #[response(status = 503)]
    Unavailable(ErrorBody),
    /// Another node owns the PoP and could not be reached; or, made on
    /// one of several owners, applied here but another owner could not be
    /// reached (`owners` and `error` say where it applied).
    #[response(status = 502)]
    Unreachable(ErrorBody),
    /// Another node owns the PoP and did not answer in time (or, on one of
    /// several owners, another owner did not).
    #[response(status = 504)]
    TimedOut(ErrorBody),
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

/// Carries out an admin call: here, at the PoP's owners, or both (see
/// [`fleet::route`]).
async fn admin(
    s: &AppState,
    cmd: AdminCommand,
    action: Action,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let pop = pop_of(&cmd);
    let forwarded = headers.contains_key(fleet::FORWARDED_BY);
    match fleet::route(&s.snapshot().config, &pop, forwarded) {
        Route::Here => run_admin(s, cmd).await.map(|r| Json(r).into_response()),
        Route::Owners => fleet::forward(s, &pop, action, headers, body).await,
        Route::HereAndOthers(others) => {
            let here = run_admin(s, cmd)
                .await
                .map(|r| serde_json::to_value(r).unwrap_or_default());
            fleet::here_and_others(s, &pop, action, body, here, &others).await
        }
    }
}

/// Sends `cmd` to the core and answers with the PoP as of the snapshot
/// that includes the change.
async fn run_admin(s: &AppState, cmd: AdminCommand) -> Result<AdminResult, ApiError> {
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
    let Some(status) = snap.pops.get(&pop) else {
        return Err(ApiError::unknown_pop(pop.as_str()));
    };
    Ok(AdminResult {
        version,
        pop: pop.to_string(),
        state: status.state.into(),
        serves_dns: status.serves_dns,
        admin: status.admin.as_ref().map(dto::AdminStatus::from),
    })
}

#[utoipa::path(post, path = "/v1/pops/{name}/drain", tag = "admin",
    summary = "Drain a PoP (graceful choreography or immediate).",
    security(("bearer" = [])),
    params(("name" = String, Path, description = "PoP name")),
    request_body(content = Option<dto::DrainRequest>, content_type = "application/json"),
    responses(AdminResponses))]
pub async fn drain(
    State(s): State<AppState>,
    headers: HeaderMap,
    name: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (pop, body) = admin_input(&s, name, body)?;
    let b: dto::DrainRequest = dto::parse_body(&body)?;
    let cmd = AdminCommand::Drain {
        pop,
        reason: dto::text("reason", b.reason, "drained via API")?,
        who: dto::text("who", b.who, "api")?,
        duration: dto::drain_duration(b.duration.as_deref())?,
        mode: dto::mode(b.mode.as_deref())?,
        force: b.force,
    };
    admin(&s, cmd, Action::Drain, &headers, &body).await
}

#[utoipa::path(post, path = "/v1/pops/{name}/undrain", tag = "admin",
    summary = "Undrain a PoP (ramp back, or immediate).",
    security(("bearer" = [])),
    params(("name" = String, Path, description = "PoP name")),
    request_body(content = Option<dto::UndrainRequest>, content_type = "application/json"),
    responses(AdminResponses))]
pub async fn undrain(
    State(s): State<AppState>,
    headers: HeaderMap,
    name: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (pop, body) = admin_input(&s, name, body)?;
    let b: dto::UndrainRequest = dto::parse_body(&body)?;
    let cmd = AdminCommand::Undrain {
        pop,
        who: dto::text("who", b.who, "api")?,
        mode: dto::mode(b.mode.as_deref())?,
    };
    admin(&s, cmd, Action::Undrain, &headers, &body).await
}

#[utoipa::path(post, path = "/v1/pops/{name}/disable", tag = "admin",
    summary = "Disable a PoP: out of DNS, prefixes withdrawn.",
    security(("bearer" = [])),
    params(("name" = String, Path, description = "PoP name")),
    request_body(content = Option<dto::DisableRequest>, content_type = "application/json"),
    responses(AdminResponses))]
pub async fn disable(
    State(s): State<AppState>,
    headers: HeaderMap,
    name: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (pop, body) = admin_input(&s, name, body)?;
    let b: dto::DisableRequest = dto::parse_body(&body)?;
    let cmd = AdminCommand::Disable {
        pop,
        reason: dto::text("reason", b.reason, "disabled via API")?,
        who: dto::text("who", b.who, "api")?,
        force: b.force,
    };
    admin(&s, cmd, Action::Disable, &headers, &body).await
}

#[utoipa::path(post, path = "/v1/pops/{name}/enable", tag = "admin",
    summary = "Remove a PoP's admin override (disable or drain) at once.",
    security(("bearer" = [])),
    params(("name" = String, Path, description = "PoP name")),
    request_body(content = Option<dto::EnableRequest>, content_type = "application/json"),
    responses(AdminResponses))]
pub async fn enable(
    State(s): State<AppState>,
    headers: HeaderMap,
    name: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (pop, body) = admin_input(&s, name, body)?;
    let b: dto::EnableRequest = dto::parse_body(&body)?;
    let cmd = AdminCommand::Enable {
        pop,
        who: dto::text("who", b.who, "api")?,
    };
    admin(&s, cmd, Action::Enable, &headers, &body).await
}
