//! The fleet endpoints: `GET /v1/fleet/report` (this node's report, with
//! long-poll), `GET /v1/fleet` (the merged view and where each part comes
//! from), and the forwarding of admin calls: for a PoP another node owns
//! to its owners, and for a PoP this node owns with others to the other
//! owners after it applied the call itself (docs/fleet.md).
//!
//! Reads the snapshot's fleet part, which the core builds; decides nothing
//! about verdicts. Forwarding only relays: each owner applies its own
//! guards; a partial outcome goes to the core as an event.

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
use crate::core::fleet::FleetInput;
use crate::core::snapshot::{AdminKind, AdminStatus};
use crate::core::Input;
use crate::fleet::client::{client_for, CallError};
use crate::fleet::wire::ReportV1;
use crate::model::{Config, FleetConfig, NodeName, PopName, Role};

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

/// Where an admin call for a PoP made on this node is carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Here only: no fleet, a PoP no fleet node owns, this node its only
    /// owner, or a call another node forwarded to this owner.
    Here,
    /// Here, then at the PoP's other owners (in name order): this node is
    /// one of several owners.
    HereAndOthers(Vec<NodeName>),
    /// At the PoP's owners: another node's PoP.
    Owners,
}

/// Where a call for `pop` goes; `forwarded`: it carries [`FORWARDED_BY`]
/// (another node sent it, so it is never sent on to other owners).
pub fn route(config: &Config, pop: &PopName, forwarded: bool) -> Route {
    let Some(fleet) = &config.fleet else {
        return Route::Here;
    };
    match config.role(pop) {
        Role::Local => Route::Here,
        Role::Peer => Route::Owners,
        Role::Own => {
            let others: Vec<NodeName> = fleet
                .owners
                .get(pop)
                .into_iter()
                .flatten()
                .filter(|o| **o != fleet.me)
                .cloned()
                .collect();
            if forwarded || others.is_empty() {
                Route::Here
            } else {
                Route::HereAndOthers(others)
            }
        }
    }
}

/// `{"node": .., "url": ..}` of an owner.
fn owner_info(fleet: &FleetConfig, n: &NodeName) -> Value {
    let url = fleet
        .peers
        .get(n)
        .map(|p| p.url.to_string())
        .unwrap_or_default();
    json!({"node": n.as_str(), "url": url})
}

/// The body as an owner gets it: `who` becomes "<who> via <this node>".
fn forwarded_body(body: &Bytes, me: &NodeName) -> Result<Bytes, ApiError> {
    let mut obj = if body.iter().all(u8::is_ascii_whitespace) {
        serde_json::Map::new()
    } else {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(m)) => m,
            _ => {
                return Err(ApiError::bad_request(
                    "invalid request body: expected a JSON object (or no body)",
                ))
            }
        }
    };
    let who = obj
        .get("who")
        .and_then(|w| w.as_str())
        .unwrap_or("api")
        .to_string();
    obj.insert("who".into(), Value::String(format!("{who} via {me}")));
    Ok(Bytes::from(
        serde_json::to_vec(&Value::Object(obj)).unwrap_or_default(),
    ))
}

/// Sends the call (`out`, from [`forwarded_body`]) to owner `o`: its
/// status and JSON answer, or a 502 (nothing was applied) or 504 (maybe
/// applied) saying why it could not be reached. Counted in the metrics.
async fn call_owner(
    s: &AppState,
    fleet: &FleetConfig,
    pop: &PopName,
    action: Action,
    o: &NodeName,
    out: &Bytes,
) -> (StatusCode, Value) {
    let Some(peer) = fleet.peers.get(o) else {
        let error = format!("pop {pop}: owner node {o} is not configured in fleet.peers");
        return (StatusCode::BAD_GATEWAY, json!({ "error": error }));
    };
    let client = client_for(&s.fleet_clients, peer);
    let path = format!("/v1/pops/{pop}/{}", action.as_str());
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
            let status = StatusCode::from_u16(a.status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            s.metrics.fleet_forwarded(
                pop.as_str(),
                if status.is_success() { "ok" } else { "refused" },
            );
            (status, body)
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
                "owner": owner_info(fleet, o),
            });
            (status, body)
        }
    }
}

/// A call for a PoP another node owns: forwarded to every owner, or
/// refused with their addresses (forwarding off, or a call that was
/// already forwarded: never forwarded again).
pub async fn forward(
    s: &AppState,
    pop: &PopName,
    action: Action,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let snap = s.snapshot();
    let Some(fleet) = snap.config.fleet.as_ref() else {
        return Err(no_fleet());
    };
    let owners = fleet.owners.get(pop).cloned().unwrap_or_default();
    let names: Vec<&str> = owners.iter().map(|o| o.as_str()).collect();
    let refuse = |msg: String| {
        let mut b = json!({"error": msg, "owner": owners.first().map(|o| owner_info(fleet, o))});
        if owners.len() > 1 {
            b["owners"] = owners.iter().map(|o| owner_info(fleet, o)).collect();
        }
        Ok((StatusCode::CONFLICT, Json(b)).into_response())
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
    let out = forwarded_body(body, &fleet.me)?;
    let mut results: Vec<(&NodeName, StatusCode, Value)> = Vec::new();
    for o in &owners {
        let (status, body) = call_owner(s, fleet, pop, action, o, &out).await;
        results.push((o, status, body));
    }
    let ok = results.iter().all(|(_, st, _)| st.is_success());
    let Some((first, status, mut body)) = results
        .iter()
        .find(|(_, st, _)| !st.is_success())
        .or(results.first())
        .cloned()
    else {
        return Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            format!("pop {pop}: no owner node is configured as a peer"),
        ));
    };
    if let Some(b) = body.as_object_mut() {
        b.insert("forwarded_to".into(), owner_info(fleet, first));
        if owners.len() > 1 {
            b.insert(
                "owners".into(),
                results
                    .iter()
                    .map(|(n, st, _)| json!({"node": n.as_str(), "status": st.as_u16()}))
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
    Ok((status, Json(body)).into_response())
}

// ---------------------------------------------------------------- several owners

/// What became of an admin call at one owner of a PoP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Applied (its 2xx status).
    Applied(u16),
    /// An undrain or enable where that owner had nothing to undo (409).
    NothingToUndo(String),
    /// Not sent: `forward_admin` is off.
    NotForwarded,
    /// Refused, not reached or not answered in time (its status, why).
    Failed(u16, String),
}

impl Outcome {
    fn word(&self) -> &'static str {
        match self {
            Outcome::Applied(_) => "applied",
            Outcome::NothingToUndo(_) => "nothing_to_undo",
            Outcome::NotForwarded => "not_forwarded",
            Outcome::Failed(..) => "failed",
        }
    }
}

/// The answer to a call made on one owner of a PoP with several
/// (`outcomes`: this node's first, then the others in name order): its
/// status, and unless every owner applied it, why in words.
///
/// - one failed: the first failure's status, naming where it applied and
///   where not (a partial result: the caller must see it);
/// - `forward_admin` off: 200, naming the owners to send it to;
/// - no owner had anything to undo: 409;
/// - else 200.
pub fn summarize(
    pop: &PopName,
    action: Action,
    outcomes: &[(NodeName, Outcome)],
) -> (u16, Option<String>) {
    let names = |f: fn(&Outcome) -> bool| {
        outcomes
            .iter()
            .filter(|(_, o)| f(o))
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let applied = names(|o| matches!(o, Outcome::Applied(_)));
    let applied = if applied.is_empty() {
        "no owner".to_string()
    } else {
        applied
    };
    let act = action.as_str();
    if let Some((_, Outcome::Failed(status, _))) = outcomes
        .iter()
        .find(|(_, o)| matches!(o, Outcome::Failed(..)))
    {
        let failed: Vec<String> = outcomes
            .iter()
            .filter_map(|(n, o)| match o {
                Outcome::Failed(_, why) => Some(format!("{n}: {why}")),
                _ => None,
            })
            .collect();
        return (
            *status,
            Some(format!(
                "pop {pop}: {act} applied on {applied}, not on every owner ({}); to apply it on an owner that missed it alone, send it to that owner's API with the header X-Anypop-Forwarded-By",
                failed.join("; ")
            )),
        );
    }
    let skipped = names(|o| matches!(o, Outcome::NotForwarded));
    if !skipped.is_empty() {
        return (
            200,
            Some(format!(
                "pop {pop}: {act} applied on {applied} only: forward_admin is off, send it to the API of {skipped} too"
            )),
        );
    }
    if outcomes
        .iter()
        .all(|(_, o)| matches!(o, Outcome::NothingToUndo(_)))
    {
        return (
            409,
            Some(format!(
                "pop {pop} is not drained or disabled on any of its owners ({})",
                names(|_| true)
            )),
        );
    }
    (200, None)
}

/// A call made on one owner of a PoP with several: `here` is this node's
/// answer (already applied and saved, or refused); the call then goes to
/// the `others` (in name order) as a forwarded call, or, with
/// `forward_admin` off, their addresses are in the answer. A refusal here
/// stops it (nothing is sent on), except an undrain or enable that had
/// nothing to undo here. When not every owner applied it, a `fleet`
/// event says so.
pub async fn here_and_others(
    s: &AppState,
    pop: &PopName,
    action: Action,
    body: &Bytes,
    here: Result<Value, ApiError>,
    others: &[NodeName],
) -> Result<Response, ApiError> {
    let snap = s.snapshot();
    let Some(fleet) = snap.config.fleet.as_ref() else {
        return Err(no_fleet());
    };
    let undo = matches!(action, Action::Undrain | Action::Enable);
    let (here_outcome, mut answer) = match here {
        Ok(v) => (Outcome::Applied(200), Some(v)),
        Err(e) if undo && e.status == StatusCode::CONFLICT => {
            (Outcome::NothingToUndo(e.message.clone()), None)
        }
        Err(mut e) => {
            let names: Vec<&str> = others.iter().map(|o| o.as_str()).collect();
            e.message = format!(
                "{}; not sent to the other owners of pop {pop} ({}): nothing was applied",
                e.message,
                names.join(", ")
            );
            return Err(e);
        }
    };
    let mut outcomes = vec![(fleet.me.clone(), here_outcome)];
    let mut owners = vec![json!({"node": fleet.me.as_str(), "here": true})];
    let out = forwarded_body(body, &fleet.me)?;
    let mut first_failure = None;
    for o in others {
        let mut entry = owner_info(fleet, o);
        let outcome = if fleet.forward_admin {
            let (status, b) = call_owner(s, fleet, pop, action, o, &out).await;
            entry["status"] = json!(status.as_u16());
            let why = b["error"].as_str().unwrap_or("").to_string();
            if status.is_success() {
                answer.get_or_insert(b);
                Outcome::Applied(status.as_u16())
            } else if undo && status == StatusCode::CONFLICT && b.get("owner").is_none() {
                Outcome::NothingToUndo(why)
            } else {
                first_failure.get_or_insert(b);
                Outcome::Failed(status.as_u16(), why)
            }
        } else {
            Outcome::NotForwarded
        };
        outcomes.push((o.clone(), outcome));
        owners.push(entry);
    }
    for (entry, (_, o)) in owners.iter_mut().zip(&outcomes) {
        entry["result"] = json!(o.word());
        match o {
            Outcome::Failed(_, why) | Outcome::NothingToUndo(why) => entry["error"] = json!(why),
            Outcome::Applied(st) if entry.get("status").is_none() => entry["status"] = json!(st),
            _ => {}
        }
    }
    let (status, summary) = summarize(pop, action, &outcomes);
    let mut body = answer
        .or(first_failure)
        .unwrap_or_else(|| json!({"pop": pop.as_str()}));
    if let Some(b) = body.as_object_mut() {
        b.insert("owners".into(), Value::Array(owners));
        match &summary {
            Some(m) if status >= 300 => {
                b.insert("error".into(), json!(m));
            }
            Some(m) => {
                b.insert("note".into(), json!(m));
            }
            None => {
                b.remove("error");
            }
        }
    }
    if status >= 300
        && outcomes
            .iter()
            .any(|(_, o)| matches!(o, Outcome::Failed(..)))
    {
        if let Some(m) = &summary {
            let input = FleetInput::Partial {
                pop: pop.clone(),
                message: m.clone(),
            };
            let _ = s
                .core
                .inputs
                .send_timeout(Input::Fleet(input), super::CORE_TIMEOUT)
                .await;
        }
    }
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    Ok((status, Json(body)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Name;

    fn n<K>(s: &str) -> Name<K> {
        Name::parse(s).expect("name")
    }

    /// Node `me` of a fleet where a1 and a2 own PoP a, b owns PoP b and
    /// PoP c belongs to nobody in the fleet (`fleet: false`: no fleet).
    fn config(me: &str, fleet: bool) -> Config {
        let mut pops = String::new();
        for (p, ip) in [("a", "192.0.2.1"), ("b", "192.0.2.2"), ("c", "192.0.2.3")] {
            let owners = if p == "a" && fleet {
                "    owners: [a1, a2]\n"
            } else {
                ""
            };
            pops.push_str(&format!("  - name: {p}\n{owners}    addresses: [{ip}]\n"));
        }
        let pop = if me == "b" { "b" } else { "a" };
        let peers: String = [("a1", "a"), ("a2", "a"), ("b", "b")]
            .iter()
            .filter(|(name, _)| *name != me)
            .map(|(name, p)| {
                format!("    - {{name: {name}, pop: {p}, url: \"http://192.0.2.9:8080\"}}\n")
            })
            .collect();
        let fleet = if fleet {
            format!("fleet:\n  peers:\n{peers}")
        } else {
            String::new()
        };
        let yaml = format!("node: {{name: {me}, pop: {pop}}}\npops:\n{pops}{fleet}");
        match crate::config::parse(&yaml) {
            Ok(c) => c,
            Err(e) => panic!("test config: {e}"),
        }
    }

    #[test]
    fn a_call_on_one_of_several_owners_also_goes_to_the_others() {
        let (a, b, c) = (n("a"), n("b"), n("c"));
        let a1 = config("a1", true);
        assert_eq!(route(&a1, &a, false), Route::HereAndOthers(vec![n("a2")]));
        let a2 = config("a2", true);
        assert_eq!(route(&a2, &a, false), Route::HereAndOthers(vec![n("a1")]));
        // Forwarded by another node: applied here only (no loop).
        assert_eq!(route(&a1, &a, true), Route::Here);
        // Another node's PoP: to its owners (a forwarded one is refused
        // there); a PoP nobody in the fleet owns: here.
        assert_eq!(route(&a1, &b, false), Route::Owners);
        assert_eq!(route(&a1, &b, true), Route::Owners);
        assert_eq!(route(&a1, &c, false), Route::Here);
        let b_node = config("b", true);
        assert_eq!(route(&b_node, &a, false), Route::Owners);
        // The only owner, or no fleet: here.
        assert_eq!(route(&b_node, &b, false), Route::Here);
        let alone = config("a1", false);
        assert_eq!(route(&alone, &a, false), Route::Here);
    }

    fn outcomes(list: &[(&str, Outcome)]) -> Vec<(NodeName, Outcome)> {
        list.iter().map(|(name, o)| (n(name), o.clone())).collect()
    }

    #[test]
    fn the_answer_says_where_a_call_applied_and_where_not() {
        let a = n("a");
        let all = outcomes(&[("a1", Outcome::Applied(200)), ("a2", Outcome::Applied(200))]);
        assert_eq!(summarize(&a, Action::Drain, &all), (200, None));

        // One owner not reached: its status, and where it applied.
        let partial = outcomes(&[
            ("a1", Outcome::Applied(200)),
            ("a2", Outcome::Failed(502, "connection refused".into())),
            ("a3", Outcome::Failed(504, "timed out".into())),
        ]);
        let (status, why) = summarize(&a, Action::Drain, &partial);
        assert_eq!(status, 502);
        let why = why.expect("why");
        assert!(
            why.starts_with("pop a: drain applied on a1, not on every owner"),
            "{why}"
        );
        assert!(
            why.contains("a2: connection refused; a3: timed out"),
            "{why}"
        );

        // Refused by the other owner: its status.
        let refused = outcomes(&[
            ("a1", Outcome::Applied(200)),
            ("a2", Outcome::Failed(409, "last PoP".into())),
        ]);
        assert_eq!(summarize(&a, Action::Disable, &refused).0, 409);

        // forward_admin off: applied here, the others named.
        let off = outcomes(&[("a1", Outcome::Applied(200)), ("a2", Outcome::NotForwarded)]);
        let (status, why) = summarize(&a, Action::Drain, &off);
        assert_eq!(status, 200);
        assert!(why
            .expect("why")
            .contains("forward_admin is off, send it to the API of a2"));

        // An undrain: an owner with nothing to undo is no failure, unless
        // no owner had anything to undo.
        let one = outcomes(&[
            ("a1", Outcome::NothingToUndo("not drained".into())),
            ("a2", Outcome::Applied(200)),
        ]);
        assert_eq!(summarize(&a, Action::Undrain, &one), (200, None));
        let none = outcomes(&[
            ("a1", Outcome::NothingToUndo("not drained".into())),
            ("a2", Outcome::NothingToUndo("not drained".into())),
        ]);
        let (status, why) = summarize(&a, Action::Enable, &none);
        assert_eq!(status, 409);
        assert!(why.expect("why").contains("any of its owners (a1, a2)"));
        // Nothing to undo here, and the other owner not reached.
        let unreached = outcomes(&[
            ("a1", Outcome::NothingToUndo("not drained".into())),
            ("a2", Outcome::Failed(502, "refused".into())),
        ]);
        let (status, why) = summarize(&a, Action::Undrain, &unreached);
        assert_eq!(status, 502);
        assert!(why.expect("why").contains("undrain applied on no owner"));
    }
}
