//! Router-level tests: every endpoint through `tower::ServiceExt::oneshot`,
//! against the real core (driven with check reports) or, for failure paths
//! the real core cannot produce on demand, a fake core task.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc, watch};
use tower::ServiceExt;

use super::metrics::parse::{parse as parse_metrics, Parsed};
use super::openapi::document as openapi_document;
use super::*;
use crate::core::admin::AdminError;
use crate::core::{Core, Event, ProbeOutcome, ProbeReport};
use crate::model::Name;

const TOKEN: &str = "t0k3n-for-tests";

const CONFIG: &str = r#"
node:
  name: test-node
  pop: ams
  router_id: 192.0.2.1
  asn: 64512
pops:
  - name: ams
    prefixes: [203.0.113.0/24]
    addresses: [192.0.2.10]
    location: {lat: 52.37, lon: 4.9}
    checks:
      - {name: http, type: file, path: /nonexistent/anypop-api-test, healthy_when: absent}
    drain: {settle: 300ms, dns_wait: 300ms}
  - name: fra
    prefixes: [203.0.113.0/24]
    addresses: [198.51.100.10]
    checks:
      - {name: http, type: file, path: /nonexistent/anypop-api-test, healthy_when: absent}
  - name: lhr
    prefixes: [198.51.100.0/24]
    addresses: [192.0.2.30]
    checks:
      - {name: tcp, type: tcp, target: "127.0.0.1:9"}
dns:
  listen: []
  zones:
    - origin: example.test.
      ns: [ns1.example.test.]
      soa: {rname: hostmaster@example.test, serial: 7}
      records:
        - name: ns1
          type: A
          values: [192.0.2.53]
        - name: www
          ttl: 30
          steer: {policy: failover, pops: [ams, fra]}
"#;

fn config() -> Arc<crate::model::Config> {
    match crate::config::parse(CONFIG) {
        Ok(c) => Arc::new(c),
        Err(e) => panic!("test config invalid:\n{e}"),
    }
}

/// One raw probe result of `pop`'s `check`.
fn report(pop: &str, check: &str, up: bool) -> Input {
    Input::Probe(ProbeReport {
        pop: Name::parse(pop).expect("name"),
        check: Name::parse(check).expect("name"),
        seq: crate::health::scheduler::next_seq(),
        outcome: ProbeOutcome {
            ok: up,
            detail: if up { "file absent" } else { "connect refused" }.into(),
            took: Duration::from_millis(2),
            at: SystemTime::now(),
        },
    })
}

/// A real core with `up` PoPs healthy and the others down.
async fn real_core(up: &[&str]) -> CoreHandle {
    let (handle, _) = Core::spawn(config(), BTreeMap::new(), crate::core::SystemClock);
    // Rise 3 and fall 2 (the defaults): enough results to decide.
    for (pop, check) in [("ams", "http"), ("fra", "http"), ("lhr", "tcp")] {
        let ok = up.contains(&pop);
        for _ in 0..if ok { 3 } else { 2 } {
            handle
                .inputs
                .send(report(pop, check, ok))
                .await
                .expect("core running");
        }
    }
    let mut snaps = handle.snapshots.clone();
    snaps
        .wait_for(|s| {
            s.pops.values().all(|p| p.healthy.is_some())
                && up.iter().all(|p| {
                    s.pops
                        .get(*p)
                        .is_some_and(|x| x.state == crate::core::PopState::Up)
                })
        })
        .await
        .expect("core publishes");
    handle
}

async fn app(up: &[&str], auth: Auth) -> (Router, AppState) {
    let state = AppState::new(real_core(up).await, auth);
    (router(state.clone()), state)
}

async fn call(
    app: &Router,
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (StatusCode, Value) {
    let (status, _, bytes) = call_raw(app, method, uri, token, body).await;
    let v = serde_json::from_slice(&bytes)
        .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, v)
}

async fn call_raw(
    app: &Router,
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    // As `anypop ctl` does: every POST says JSON, with or without a body.
    if method == "POST" {
        b = b.header(header::CONTENT_TYPE, "application/json");
    }
    let req = b
        .body(Body::from(body.unwrap_or("").to_string()))
        .expect("request");
    let resp = app.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .to_vec();
    (status, headers, bytes)
}

fn assert_error(v: &Value, field: Option<&str>) {
    assert!(
        v["error"].as_str().is_some_and(|e| !e.is_empty()),
        "error message in {v}"
    );
    assert_eq!(
        v.get("field").and_then(Value::as_str),
        field,
        "field in {v}"
    );
}

// ------------------------------------------------------------ reads

#[tokio::test]
async fn state_pops_checks_peers_show_the_snapshot() {
    let (app, _) = app(&["ams", "fra"], Auth::with_token(TOKEN, false)).await;
    let (st, v) = call(&app, "GET", "/v1/state", None, None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["node"]["name"], "test-node");
    assert_eq!(v["node"]["pop"], "ams");
    assert_eq!(v["pops"]["ams"]["state"], "up");
    assert_eq!(v["pops"]["lhr"]["state"], "down");
    assert_eq!(v["pops"]["ams"]["checks"]["http"]["verdict"], "up");
    assert_eq!(v["pops"]["ams"]["checks"]["http"]["rise"], 3);
    assert_eq!(v["pops"]["ams"]["prefixes"][0]["prefix"], "203.0.113.0/24");
    assert_eq!(v["pops"]["ams"]["prefixes"][0]["announced"], true);
    assert_eq!(v["pops"]["ams"]["local"], true);
    assert_eq!(v["announcements"]["203.0.113.0/24"]["pop"], "ams");
    assert_eq!(v["announcements"]["203.0.113.0/24"]["mode"], "normal");
    assert_eq!(v["dns"]["zones"][0]["origin"], "example.test.");
    let www = &v["dns"]["zones"][0]["records"][1];
    assert_eq!(
        (www["type"].as_str(), www["policy"].as_str()),
        (Some("steered"), Some("failover"))
    );
    assert_eq!(v["peers"], json!({}));

    let (st, v) = call(&app, "GET", "/v1/pops", None, None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["pops"].as_object().map(|m| m.len()), Some(3));
    let (st, v) = call(&app, "GET", "/v1/pops/fra", None, None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        (v["name"].as_str(), v["state"].as_str()),
        (Some("fra"), Some("up"))
    );
    assert_eq!(
        v["prefixes"][0]["announced"], false,
        "fra is not this node's PoP"
    );

    let (st, v) = call(&app, "GET", "/v1/checks", None, None).await;
    assert_eq!(st, StatusCode::OK);
    let checks = v["checks"].as_array().expect("list");
    assert_eq!(checks.len(), 3);
    let lhr = checks
        .iter()
        .find(|c| c["pop"] == "lhr")
        .expect("lhr check");
    assert_eq!(lhr["verdict"], "down");
    assert_eq!(lhr["failures"], 2);
    assert_eq!(lhr["last"]["detail"], "connect refused");

    let (st, v) = call(&app, "GET", "/v1/peers", None, None).await;
    assert_eq!((st, v), (StatusCode::OK, json!({"peers": {}})));
}

#[tokio::test]
async fn peers_hook_is_served() {
    let core = real_core(&["ams"]).await;
    let state = AppState::new(core, Auth::open()).with_peers(Arc::new(|| {
        let mut p = test_peer();
        p.established_since = Some(SystemTime::now() - Duration::from_secs(12));
        let p = dto::peers::Peer::new(&p, SystemTime::now());
        BTreeMap::from([("r1".to_string(), p)])
    }));
    let app = router(state);
    let (st, v) = call(&app, "GET", "/v1/peers", None, None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["peers"]["r1"]["state"], "established");
    let (_, v) = call(&app, "GET", "/v1/state", None, None).await;
    assert_eq!(v["peers"]["r1"]["uptime_secs"], 12);
}

#[tokio::test]
async fn unknown_pop_and_unknown_route_are_404_json() {
    let (app, _) = app(&["ams", "fra"], Auth::open()).await;
    for (m, uri) in [
        ("GET", "/v1/pops/nope"),
        ("POST", "/v1/pops/nope/drain"),
        ("POST", "/v1/pops/nope/undrain"),
        ("POST", "/v1/pops/bad%20name/disable"),
        ("POST", "/v1/pops/nope/enable"),
        ("GET", "/v1/nothing-here"),
    ] {
        let (st, v) = call(&app, m, uri, None, None).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{m} {uri}: {v}");
        assert_error(&v, None);
    }
    let (st, v) = call(&app, "DELETE", "/v1/state", None, None).await;
    assert_eq!(st, StatusCode::METHOD_NOT_ALLOWED);
    assert_error(&v, None);
}

// ------------------------------------------------------------ auth

#[tokio::test]
async fn mutations_need_the_token() {
    let (app, _) = app(&["ams", "fra"], Auth::with_token(TOKEN, false)).await;
    for uri in [
        "/v1/pops/ams/drain",
        "/v1/pops/ams/undrain",
        "/v1/pops/ams/disable",
        "/v1/pops/ams/enable",
        "/v1/reload",
    ] {
        let (st, h, body) = call_raw(&app, "POST", uri, None, None).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{uri}");
        assert!(h.get(header::WWW_AUTHENTICATE).is_some());
        let v: Value = serde_json::from_slice(&body).expect("json");
        assert_error(&v, None);
        let (st, _) = call(&app, "POST", uri, Some("wrong"), None).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{uri} wrong token");
    }
    // Unknown PoPs are not revealed to unauthenticated callers.
    let (st, _) = call(&app, "POST", "/v1/pops/nope/drain", None, None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    // Nothing changed.
    let (_, v) = call(&app, "GET", "/v1/pops/ams", None, None).await;
    assert_eq!(v["state"], "up");
    // Reads are open without protect_reads.
    let (st, _) = call(&app, "GET", "/v1/state", None, None).await;
    assert_eq!(st, StatusCode::OK);
    // With the token the drain goes through.
    let (st, v) = call(&app, "POST", "/v1/pops/ams/drain", Some(TOKEN), None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
}

#[tokio::test]
async fn protect_reads_guards_reads_but_not_health() {
    let (app, _) = app(&["ams"], Auth::with_token(TOKEN, true)).await;
    for uri in [
        "/v1/state",
        "/v1/pops",
        "/v1/pops/ams",
        "/v1/peers",
        "/v1/checks",
        "/v1/events",
        "/metrics",
        "/v1/explain?name=www.example.test",
    ] {
        let (st, v) = call(&app, "GET", uri, None, None).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{uri}");
        assert_error(&v, None);
    }
    let (st, _) = call(&app, "GET", "/v1/state", Some(TOKEN), None).await;
    assert_eq!(st, StatusCode::OK);
    for uri in ["/healthz", "/readyz", "/v1/openapi.json"] {
        let (st, _) = call(&app, "GET", uri, None, None).await;
        assert_ne!(st, StatusCode::UNAUTHORIZED, "{uri}");
    }
}

// ------------------------------------------------------------ guards

/// A request with extra headers; (status, JSON body).
async fn call_with(
    app: &Router,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (StatusCode, Value) {
    let mut b = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let req = b.body(Body::from(body.to_string())).expect("request");
    let resp = app.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let v = serde_json::from_slice(&bytes)
        .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, v)
}

/// What a web page can send cross-site without a CORS preflight (a form,
/// a `text/plain` fetch, a body without a type) is refused before it does
/// anything, and the PoP stays enabled. A POST with no body and no type
/// (`curl -X POST`) takes the defaults.
#[tokio::test]
async fn posts_without_json_content_type_are_415() {
    let (app, state) = app(&["ams", "fra"], Auth::open()).await;
    for ct in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        None,
    ] {
        let headers: Vec<(&str, &str)> = ct.iter().map(|c| ("content-type", *c)).collect();
        let bodies: &[&str] = match ct {
            Some(_) => &[r#"{"reason":"x"}"#, ""],
            None => &[r#"{"reason":"x"}"#, "{}"],
        };
        for body in bodies {
            let (st, v) = call_with(&app, "POST", "/v1/pops/fra/disable", &headers, body).await;
            assert_eq!(
                st,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "{ct:?} {body:?}: {v}"
            );
            assert_error(&v, None);
            assert!(
                v["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("\"Content-Type: application/json\"")
                        && e.contains("no body and no Content-Type")),
                "{v}"
            );
        }
        if ct.is_some() {
            let (st, _) = call_with(&app, "POST", "/v1/reload", &headers, "").await;
            assert_eq!(st, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        }
    }
    let snap = state.core.snapshots.borrow().clone();
    assert!(snap.pops["fra"].admin.is_none(), "nothing was disabled");
    let json = [("content-type", "application/json; charset=utf-8")];
    let (st, v) = call_with(&app, "POST", "/v1/pops/fra/disable", &json, "").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // No body, no type: the defaults.
    let (st, v) = call_with(&app, "POST", "/v1/pops/fra/enable", &[], "").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = call_with(&app, "POST", "/v1/pops/ams/drain", &[], "").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let snap = state.core.snapshots.borrow().clone();
    assert!(snap.pops["fra"].admin.is_none(), "fra enabled again");
    assert!(snap.pops["ams"].admin.is_some(), "ams drained");
}

#[tokio::test]
async fn foreign_host_and_origin_are_403_same_origin_passes() {
    let (app, _) = app(&["ams", "fra"], Auth::open()).await;
    let json = ("content-type", "application/json");
    // DNS rebinding: the attacker's name in Host.
    for (method, uri) in [("GET", "/v1/state"), ("POST", "/v1/pops/fra/disable")] {
        let (st, v) = call_with(
            &app,
            method,
            uri,
            &[("host", "rebind.attacker.test:8080"), json],
            "",
        )
        .await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{method} {uri}: {v}");
        assert!(
            v["error"]
                .as_str()
                .is_some_and(|e| e.contains("api.allowed_hosts")),
            "{v}"
        );
    }
    // A page of another site, even with the right Host.
    let (st, v) = call_with(
        &app,
        "POST",
        "/v1/pops/fra/disable",
        &[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://evil.example"),
            json,
        ],
        "",
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("cross-origin")),
        "{v}"
    );
    let (st, _) = call_with(
        &app,
        "GET",
        "/v1/state",
        &[("host", "localhost:8080"), ("origin", "null")],
        "",
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    // The API's own origin (a page it serves) and clients without Origin pass.
    let (st, v) = call_with(
        &app,
        "POST",
        "/v1/pops/fra/disable",
        &[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080"),
            json,
        ],
        "",
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, _) = call_with(&app, "GET", "/v1/state", &[("host", "localhost:8080")], "").await;
    assert_eq!(st, StatusCode::OK);
    // A name from api.allowed_hosts.
    let (app, _) = {
        let core = real_core(&["ams"]).await;
        let mut api = config().api.clone();
        api.allowed_hosts = vec!["anypop-fra1.example.net".into()];
        let state = AppState::new(core, Auth::open()).with_api_config(&api);
        (router(state.clone()), state)
    };
    let (st, _) = call_with(
        &app,
        "GET",
        "/v1/state",
        &[("host", "ANYPOP-fra1.example.net:8080")],
        "",
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = call_with(
        &app,
        "GET",
        "/v1/state",
        &[("host", "other.example.net")],
        "",
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
}

// ------------------------------------------------------------ admin

#[tokio::test]
async fn bad_bodies_name_the_field() {
    let (app, _) = app(&["ams", "fra"], Auth::open()).await;
    let cases: &[(&str, &str, StatusCode, Option<&str>)] = &[
        (
            "/v1/pops/ams/drain",
            r#"{"reason": 5}"#,
            StatusCode::BAD_REQUEST,
            Some("reason"),
        ),
        (
            "/v1/pops/ams/drain",
            r#"{"force": "yes"}"#,
            StatusCode::BAD_REQUEST,
            Some("force"),
        ),
        (
            "/v1/pops/ams/drain",
            r#"{"reasn": "typo"}"#,
            StatusCode::BAD_REQUEST,
            Some("reasn"),
        ),
        (
            "/v1/pops/ams/drain",
            "nonsense",
            StatusCode::BAD_REQUEST,
            None,
        ),
        (
            "/v1/pops/ams/drain",
            r#"[1]"#,
            StatusCode::BAD_REQUEST,
            None,
        ),
        (
            "/v1/pops/ams/drain",
            r#"{"duration": "soon"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("duration"),
        ),
        (
            "/v1/pops/ams/drain",
            r#"{"duration": "0s"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("duration"),
        ),
        (
            "/v1/pops/ams/drain",
            r#"{"duration": 0}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("duration"),
        ),
        (
            "/v1/pops/ams/drain",
            r#"{"duration": true}"#,
            StatusCode::BAD_REQUEST,
            Some("duration"),
        ),
        (
            "/v1/pops/ams/drain",
            r#"{"mode": "slow"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("mode"),
        ),
        (
            "/v1/pops/ams/undrain",
            r#"{"mode": "fast"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("mode"),
        ),
        (
            "/v1/pops/ams/disable",
            r#"{"reason": "\u0007"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("reason"),
        ),
        (
            "/v1/pops/ams/enable",
            r#"{"who": 1}"#,
            StatusCode::BAD_REQUEST,
            Some("who"),
        ),
    ];
    for (uri, body, want, field) in cases {
        let (st, v) = call(&app, "POST", uri, None, Some(body)).await;
        assert_eq!(st, *want, "{uri} {body}: {v}");
        assert_error(&v, *field);
    }
    let huge = format!(r#"{{"reason": "{}"}}"#, "x".repeat(MAX_BODY + 1));
    let (st, v) = call(&app, "POST", "/v1/pops/ams/drain", None, Some(&huge)).await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert_error(&v, None);
    let (st, v) = call(&app, "POST", "/v1/pops/%FF/drain", None, None).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_error(&v, None);
    let long = format!(r#"{{"reason": "{}"}}"#, "x".repeat(600));
    let (st, v) = call(&app, "POST", "/v1/pops/ams/drain", None, Some(&long)).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert_error(&v, Some("reason"));
    // Nothing was applied.
    let (_, v) = call(&app, "GET", "/v1/pops/ams", None, None).await;
    assert_eq!(
        (v["state"].as_str(), v["admin"].is_null()),
        (Some("up"), true)
    );
}

#[tokio::test]
async fn last_pop_guard_and_conflicts_are_409() {
    // Only ams is up: draining or disabling it would leave its prefix unserved.
    let (app, _) = app(&["ams"], Auth::open()).await;
    for uri in ["/v1/pops/ams/drain", "/v1/pops/ams/disable"] {
        let (st, v) = call(&app, "POST", uri, None, None).await;
        assert_eq!(st, StatusCode::CONFLICT, "{uri}: {v}");
        assert_error(&v, Some("force"));
    }
    let (st, v) = call(&app, "POST", "/v1/pops/ams/undrain", None, None).await;
    assert_eq!(st, StatusCode::CONFLICT, "nothing to undrain: {v}");
    let (st, v) = call(&app, "POST", "/v1/pops/ams/enable", None, None).await;
    assert_eq!(st, StatusCode::CONFLICT, "nothing to enable: {v}");
    let (st, v) = call(
        &app,
        "POST",
        "/v1/pops/ams/drain",
        None,
        Some(r#"{"force": true, "mode": "immediate", "reason": "maintenance", "who": "alice"}"#),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["pop"], "ams");
    assert_eq!(v["state"], "draining");
    assert_eq!(v["serves_dns"], false);
    assert_eq!(v["admin"]["step"], "drained");
    assert_eq!(v["admin"]["who"], "alice");
    assert_eq!(v["admin"]["reason"], "maintenance");
    let (_, s) = call(&app, "GET", "/v1/state", None, None).await;
    assert!(
        s["announcements"].get("203.0.113.0/24").is_none(),
        "withdrawn: {s}"
    );
}

#[tokio::test]
async fn disable_and_enable_round_trip() {
    let (app, _) = app(&["ams", "fra"], Auth::open()).await;
    let (st, v) = call(
        &app,
        "POST",
        "/v1/pops/fra/disable",
        None,
        Some(r#"{"reason": "decom"}"#),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        (v["state"].as_str(), v["admin"]["kind"].as_str()),
        (Some("disabled"), Some("disable"))
    );
    let (_, p) = call(&app, "GET", "/v1/pops/fra", None, None).await;
    assert_eq!(p["admin"]["reason"], "decom");
    let (st, v) = call(&app, "POST", "/v1/pops/fra/enable", None, Some("")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "up");
    assert!(v["admin"].is_null());
}

#[tokio::test]
async fn drain_duration_as_seconds_sets_the_expiry() {
    let (app, _) = app(&["ams", "fra"], Auth::open()).await;
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let (st, v) = call(
        &app,
        "POST",
        "/v1/pops/ams/drain",
        None,
        Some(r#"{"duration": 90, "mode": "immediate"}"#),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let until = v["admin"]["until"].as_f64().expect("until shown");
    assert!(
        (until - before - 90.0).abs() < 5.0,
        "until {until} is 90 s after {before}"
    );
}

#[tokio::test]
async fn graceful_drain_steps_are_streamed_in_order() {
    let (app, _) = app(&["ams", "fra"], Auth::open()).await;
    let mut events = open_events(&app, "/v1/events?replay=0", None).await;
    let (st, v) = call(
        &app,
        "POST",
        "/v1/pops/ams/drain",
        None,
        Some(r#"{"reason": "fibre", "duration": "1h"}"#),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["admin"]["step"], "dns_removed");
    assert!(
        v["admin"]["next_at"].as_f64().is_some(),
        "next step time shown: {v}"
    );
    // The announcement stays normal while DNS drains.
    let (_, s) = call(&app, "GET", "/v1/state", None, None).await;
    assert_eq!(s["announcements"]["203.0.113.0/24"]["mode"], "normal");

    let got = events.until(|m| m.contains("shutdown -> drained")).await;
    let steps: Vec<&str> = got
        .iter()
        .filter(|(kind, _)| kind == "admin" || kind == "drain_step")
        .map(|(_, msg)| msg.as_str())
        .collect();
    assert_eq!(steps.len(), 3, "{got:?}");
    assert!(steps[0].contains("dns_removed"), "{steps:?}");
    assert!(steps[1].contains("dns_removed -> shutdown"), "{steps:?}");
    assert!(steps[2].contains("shutdown -> drained"), "{steps:?}");
    assert!(
        got.iter()
            .any(|(k, m)| k == "pop_state" && m.contains("draining")),
        "{got:?}"
    );

    let (st, v) = call(&app, "POST", "/v1/pops/ams/undrain", None, None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["admin"]["step"], "restoring");
    let got = events
        .until(|m| m.contains("restoring -> in_service"))
        .await;
    assert!(got.iter().any(|(k, _)| k == "admin"), "{got:?}");
    let (_, p) = call(&app, "GET", "/v1/pops/ams", None, None).await;
    assert_eq!(
        (p["state"].as_str(), p["admin"].is_null()),
        (Some("up"), true),
        "{p}"
    );
}

#[tokio::test]
async fn events_replay_and_last_event_id() {
    let (app, _) = app(&["ams", "fra"], Auth::open()).await;
    let (st, _) = call(&app, "POST", "/v1/pops/fra/disable", None, None).await;
    assert_eq!(st, StatusCode::OK);
    let mut all = open_events(&app, "/v1/events", None).await;
    let replayed = all.until(|m| m.starts_with("pop fra disabled:")).await;
    assert!(replayed.len() >= 2, "replay has history: {replayed:?}");
    let last_id = all.last_id.clone().expect("ids are sent");
    // Reconnecting with Last-Event-ID gets only what is newer.
    let mut after = open_events(&app, "/v1/events", Some(&last_id)).await;
    let (st, _) = call(&app, "POST", "/v1/pops/fra/enable", None, None).await;
    assert_eq!(st, StatusCode::OK);
    let got = after.until(|m| m.contains("back in service")).await;
    assert!(
        !got.iter().any(|(_, m)| m.contains("fra disabled")),
        "no old events: {got:?}"
    );
    let (st, v) = call(&app, "GET", "/v1/events?replay=x", None, None).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_error(&v, Some("replay"));
}

struct EventReader {
    body: Body,
    parser: crate::ctl::SseParser,
    last_id: Option<String>,
}

impl EventReader {
    /// Reads events until one's message matches; returns (kind, message)
    /// of every event read.
    async fn until(&mut self, done: impl Fn(&str) -> bool) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let frame = tokio::time::timeout_at(deadline, self.body.frame())
                .await
                .unwrap_or_else(|_| panic!("timed out; events so far: {out:?}"));
            let Some(Ok(frame)) = frame else {
                panic!("stream ended; events so far: {out:?}")
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            for m in self.parser.push(&data) {
                let v: Value = serde_json::from_str(&m.data).expect("event JSON");
                assert_eq!(v["seq"].to_string(), m.id.clone().unwrap_or_default());
                let msg = v["message"].as_str().unwrap_or_default().to_string();
                self.last_id = m.id.clone();
                let stop = done(&msg);
                out.push((m.event.unwrap_or_default(), msg));
                if stop {
                    return out;
                }
            }
        }
    }
}

async fn open_events(app: &Router, uri: &str, last_id: Option<&str>) -> EventReader {
    let mut b = Request::builder().uri(uri);
    if let Some(id) = last_id {
        b = b.header("last-event-id", id);
    }
    let resp = app
        .clone()
        .oneshot(b.body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        Some("text/event-stream")
    );
    EventReader {
        body: resp.into_body(),
        parser: crate::ctl::SseParser::default(),
        last_id: None,
    }
}

// ------------------------------------------------------------ fake core

/// A core that answers every admin command with `answer` and serves the
/// given events on subscribe.
fn fake_core(
    answer: Option<Result<u64, AdminError>>,
    events: Vec<Event>,
) -> (CoreHandle, broadcast::Sender<Event>) {
    let real = {
        let (core, handle, _io) = Core::new(
            config(),
            BTreeMap::new(),
            crate::core::Clock::now(&crate::core::SystemClock),
        );
        drop(core);
        let snap = handle.snapshots.borrow().clone();
        snap
    };
    let (_snap_tx, snapshots) = watch::channel(real);
    let (tx, mut rx) = mpsc::channel::<Input>(16);
    let (ev_tx, _) = broadcast::channel(16);
    let ev = ev_tx.clone();
    tokio::spawn(async move {
        let _keep = _snap_tx;
        while let Some(i) = rx.recv().await {
            match i {
                Input::Admin { reply, .. } => {
                    if let Some(a) = answer.clone() {
                        let _ = reply.send(a);
                    } // else: drop the reply, as a dying core would
                }
                Input::Subscribe { reply } => {
                    let _ = reply.send((events.clone(), ev.subscribe()));
                }
                _ => {}
            }
        }
    });
    (
        CoreHandle {
            inputs: tx,
            snapshots,
        },
        ev_tx,
    )
}

#[tokio::test]
async fn core_failures_map_to_500_and_503() {
    let (core, _) = fake_core(Some(Err(AdminError::Persist("disk full".into()))), vec![]);
    let app = router(AppState::new(core, Auth::open()));
    let (st, v) = call(&app, "POST", "/v1/pops/ams/drain", None, None).await;
    assert_eq!(st, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        v["error"].as_str().is_some_and(|e| e.contains("disk full")),
        "{v}"
    );

    let (core, _) = fake_core(None, vec![]);
    let app = router(AppState::new(core, Auth::open()));
    let (st, v) = call(&app, "POST", "/v1/pops/ams/undrain", None, None).await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{v}");

    let (core, _) = fake_core(Some(Err(AdminError::Unavailable)), vec![]);
    let app = router(AppState::new(core, Auth::open()));
    let (st, _) = call(&app, "POST", "/v1/pops/ams/enable", None, None).await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE);

    // A core that is gone: admin and events answer 503, reads still work.
    let (core, _) = fake_core(None, vec![]);
    let snapshots = core.snapshots.clone();
    let (dead_tx, dead_rx) = mpsc::channel(1);
    drop(dead_rx);
    let app = router(AppState::new(
        CoreHandle {
            inputs: dead_tx,
            snapshots,
        },
        Auth::open(),
    ));
    let (st, _) = call(&app, "POST", "/v1/pops/ams/drain", None, None).await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE);
    let (st, _) = call(&app, "GET", "/v1/events", None, None).await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE);
    let (st, _) = call(&app, "GET", "/v1/state", None, None).await;
    assert_eq!(st, StatusCode::OK);
}

#[tokio::test]
async fn event_streams_are_limited_and_released() {
    let core = real_core(&["ams"]).await;
    let app = router(AppState::new(core, Auth::open()).with_max_event_streams(2, 2));
    let a = open_events(&app, "/v1/events", None).await;
    let b = open_events(&app, "/v1/events", None).await;
    let (st, v) = call(&app, "GET", "/v1/events", None, None).await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE);
    assert_error(&v, None);
    drop(a);
    let _c = open_events(&app, "/v1/events", None).await;
    drop(b);
}

#[tokio::test]
async fn slow_consumer_gets_a_lagged_message() {
    let (core, ev_tx) = fake_core(Some(Ok(1)), vec![]);
    let app = router(AppState::new(core, Auth::open()));
    let resp = app
        .clone()
        .oneshot(
            Request::builder()
                .uri("/v1/events")
                .body(Body::empty())
                .expect("req"),
        )
        .await
        .expect("infallible");
    let mut body = resp.into_body();
    for seq in 0..40 {
        let _ = ev_tx.send(Event {
            seq,
            at: SystemTime::now(),
            kind: crate::core::EventKind::Check,
            pop: None,
            check: None,
            message: format!("e{seq}"),
        });
    }
    let mut parser = crate::ctl::SseParser::default();
    let mut kinds = Vec::new();
    while !kinds.iter().any(|k: &String| k == "lagged") {
        let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .expect("frame in time")
            .expect("open")
            .expect("ok");
        if let Ok(d) = frame.into_data() {
            kinds.extend(parser.push(&d).into_iter().filter_map(|m| m.event));
        }
    }
}

// ------------------------------------------------------------ reload

#[tokio::test]
async fn reload_hook_results() {
    let core = real_core(&["ams"]).await;
    let app = router(AppState::new(core.clone(), Auth::open()));
    let (st, v) = call(&app, "POST", "/v1/reload", None, None).await;
    assert_eq!(st, StatusCode::NOT_IMPLEMENTED);
    assert_error(&v, None);

    let bad: ReloadFn = Arc::new(|| {
        Box::pin(async {
            Err(vec![
                "pops[0].name: bad".to_string(),
                "dns.zones: bad".to_string(),
            ])
        })
    });
    let app = router(AppState::new(core.clone(), Auth::open()).with_reload(bad));
    let (st, v) = call(&app, "POST", "/v1/reload", None, None).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["errors"], json!(["pops[0].name: bad", "dns.zones: bad"]));
}

/// `POST /v1/reload` runs the reload production runs (the one SIGHUP
/// takes): an invalid file is reported with every error and changes
/// nothing; a valid one reaches the core, and through its snapshot the
/// check supervisor, which starts the new PoP's check.
#[tokio::test]
async fn reload_takes_the_production_path() {
    let core = real_core(&["ams"]).await;
    let _checks = crate::health::supervise(core.clone());
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("anypop.yaml");
    std::fs::write(
        &path,
        "node: {name: x}\npops: [{name: 'a b'}, {name: b, prefixes: [203.0.113.0/33]}]\n",
    )
    .expect("write");
    let app = router(
        AppState::new(core.clone(), Auth::open())
            .with_reload(crate::daemon::Reloads::new(Some(path.clone()), core.clone()).hook()),
    );
    let before = core.snapshots.borrow().clone();
    let (st, v) = call(&app, "POST", "/v1/reload", None, None).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        v["errors"].as_array().is_some_and(|e| e.len() >= 2),
        "every error is listed: {v}"
    );
    assert!(
        Arc::ptr_eq(&core.snapshots.borrow().config, &before.config),
        "the running config is kept"
    );

    let with_sin = CONFIG.replacen(
        "\ndns:\n",
        "\n  - name: sin\n    prefixes: [192.0.2.128/25]\n    checks:\n      - {name: flag, type: file, path: /nonexistent/anypop-api-reload, healthy_when: absent}\ndns:\n",
        1,
    );
    std::fs::write(&path, with_sin).expect("write");
    let (st, v) = call(&app, "POST", "/v1/reload", None, None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(
        v["version"].as_u64().is_some_and(|n| n > before.version),
        "{v}"
    );
    assert!(core.snapshots.borrow().config.pops.contains_key("sin"));
    let mut snaps = core.snapshots.clone();
    tokio::time::timeout(
        Duration::from_secs(10),
        snaps.wait_for(|s| {
            s.pops
                .get("sin")
                .is_some_and(|p| p.state == crate::core::PopState::Up)
        }),
    )
    .await
    .expect("the new PoP's check runs and decides")
    .expect("core running");
    let mut events = open_events(&app, "/v1/events", None).await;
    let got = events.until(|m| m.starts_with("pop sin up")).await;
    assert!(
        got.iter()
            .any(|(k, m)| k == "reload" && m == "configuration reloaded"),
        "{got:?}"
    );
}

/// A reload that outlives the API's wait still completes: the caller gets
/// 504 saying so, and the new config is taken (reload event, new PoP).
#[tokio::test]
async fn reload_outliving_the_request_still_completes() {
    let core = real_core(&["ams"]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("anypop.yaml");
    let with_sin = CONFIG.replacen(
        "\ndns:\n",
        "\n  - name: sin\n    prefixes: [192.0.2.128/25]\n    checks:\n      - {name: flag, type: file, path: /nonexistent/anypop-api-reload, healthy_when: absent}\ndns:\n",
        1,
    );
    std::fs::write(&path, with_sin).expect("write");
    let inner = crate::daemon::Reloads::new(Some(path), core.clone()).hook();
    // The production reload, after a pause longer than the API waits.
    let slow: ReloadFn = Arc::new(move || {
        let inner = inner.clone();
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            inner().await
        })
    });
    let app = router(
        AppState::new(core.clone(), Auth::open())
            .with_reload(slow)
            .with_reload_timeout(Duration::from_millis(50)),
    );
    let mut events = open_events(&app, "/v1/events", None).await;
    let (st, v) = call(&app, "POST", "/v1/reload", None, None).await;
    assert_eq!(st, StatusCode::GATEWAY_TIMEOUT, "{v}");
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("still running")),
        "{v}"
    );
    let mut snaps = core.snapshots.clone();
    tokio::time::timeout(
        Duration::from_secs(20),
        snaps.wait_for(|s| s.config.pops.contains_key("sin")),
    )
    .await
    .expect("the reload finished after the request gave up")
    .expect("core running");
    let got = events.until(|m| m == "configuration reloaded").await;
    assert!(got.iter().any(|(k, _)| k == "reload"), "{got:?}");
}

// ------------------------------------------------------------ explain

#[tokio::test]
async fn explain_validates_and_answers() {
    let (app, _) = app(&["ams", "fra"], Auth::open()).await;
    for (uri, want, field) in [
        ("/v1/explain", StatusCode::UNPROCESSABLE_ENTITY, "name"),
        (
            "/v1/explain?name=www.example.test&client=not-an-ip",
            StatusCode::UNPROCESSABLE_ENTITY,
            "client",
        ),
        (
            "/v1/explain?name=www.example.test&client=192.0.2.0/33",
            StatusCode::UNPROCESSABLE_ENTITY,
            "client",
        ),
        (
            "/v1/explain?name=www.example.test&type=BOGUS",
            StatusCode::UNPROCESSABLE_ENTITY,
            "type",
        ),
        (
            "/v1/explain?name=www.example.test&colour=red",
            StatusCode::BAD_REQUEST,
            "colour",
        ),
    ] {
        let (st, v) = call(&app, "GET", uri, None, None).await;
        assert_eq!(st, want, "{uri}: {v}");
        assert_error(&v, Some(field));
    }
    let (st, v) = call(
        &app,
        "GET",
        "/v1/explain?name=www.example.test&client=198.51.100.7",
        None,
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["rcode"], "NOERROR");
    assert_eq!(v["steering"]["policy"], "failover");
    assert_eq!(v["steering"]["chosen"], json!(["ams"]), "{v}");

    // Draining ams moves the failover answer to fra at once.
    let (st, _) = call(&app, "POST", "/v1/pops/ams/drain", None, None).await;
    assert_eq!(st, StatusCode::OK);
    let (_, v) = call(
        &app,
        "GET",
        "/v1/explain?name=www.example.test&type=a",
        None,
        None,
    )
    .await;
    assert_eq!(v["steering"]["chosen"], json!(["fra"]), "{v}");
}

// ------------------------------------------------------------ health, metrics

#[tokio::test]
async fn healthz_and_readyz() {
    let (app, state) = app(&["ams"], Auth::open()).await;
    let (st, v) = call(&app, "GET", "/healthz", None, None).await;
    assert_eq!((st, v), (StatusCode::OK, json!({"status": "ok"})));
    let (st, v) = call(&app, "GET", "/readyz", None, None).await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(v["waiting"], json!(["api"]));
    state.readiness.set("api", true);
    state.readiness.set("dns", false);
    let (st, v) = call(&app, "GET", "/readyz", None, None).await;
    assert_eq!(
        (st, v["waiting"].clone()),
        (StatusCode::SERVICE_UNAVAILABLE, json!(["dns"]))
    );
    state.readiness.set("dns", true);
    let (st, v) = call(&app, "GET", "/readyz", None, None).await;
    assert_eq!(
        (st, v),
        (StatusCode::OK, json!({"ready": true, "waiting": []}))
    );
}

/// GET /metrics: status 200, the text format's content type, and a body
/// the strict parser accepts.
async fn scrape(app: &Router) -> Parsed {
    let (st, h, body) = call_raw(app, "GET", "/metrics", None, None).await;
    assert_eq!(st, StatusCode::OK);
    assert!(h
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain; version=0.0.4")));
    let text = String::from_utf8(body).expect("utf8");
    parse_metrics(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

#[tokio::test]
async fn metrics_parse_and_counters_move() {
    let core = real_core(&["ams", "fra"]).await;
    let stats = crate::dns::DnsStats::new();
    let state = AppState::new(core, Auth::open()).with_dns_stats(stats.clone());
    let app = router(state.clone());
    let m1 = scrape(&app).await;
    let version = [("version", env!("CARGO_PKG_VERSION"))];
    assert_eq!(m1.get("anypop_build_info", &version), Some(1.0));
    assert!(m1
        .get("anypop_start_time_seconds", &[])
        .is_some_and(|t| t > 1.7e9));
    assert_eq!(
        m1.get("anypop_pop_state", &[("pop", "ams"), ("state", "up")]),
        Some(1.0)
    );
    assert_eq!(
        m1.get("anypop_pop_state", &[("pop", "lhr"), ("state", "down")]),
        Some(1.0)
    );
    assert_eq!(
        m1.get("anypop_pop_state", &[("pop", "lhr"), ("state", "up")]),
        Some(0.0)
    );
    assert_eq!(
        m1.get("anypop_check_up", &[("pop", "lhr"), ("check", "tcp")]),
        Some(0.0)
    );
    assert_eq!(
        m1.get(
            "anypop_prefixes_announced",
            &[("pop", "ams"), ("mode", "normal")]
        ),
        Some(1.0)
    );
    let udp = [("transport", "udp")];
    assert_eq!(m1.get("anypop_dns_queries_total", &udp), Some(0.0));

    for _ in 0..3 {
        let (st, _) = call(&app, "GET", "/v1/state", None, None).await;
        assert_eq!(st, StatusCode::OK);
    }
    let (st, _) = call(&app, "GET", "/v1/pops/nope", None, None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    stats.queries_udp.fetch_add(5, Ordering::Relaxed);
    stats
        .pop_counter(&Name::parse("ams").expect("name"))
        .fetch_add(4, Ordering::Relaxed);
    state
        .metrics
        .record_check("ams", "http", true, Duration::from_millis(12));
    let (st, _) = call(
        &app,
        "POST",
        "/v1/pops/ams/drain",
        None,
        Some(r#"{"mode": "immediate"}"#),
    )
    .await;
    assert_eq!(st, StatusCode::OK);

    let m2 = scrape(&app).await;
    let state_req = [("method", "GET"), ("route", "/v1/state"), ("status", "200")];
    assert_eq!(m2.get("anypop_api_requests_total", &state_req), Some(3.0));
    let nf = [
        ("method", "GET"),
        ("route", "/v1/pops/{name}"),
        ("status", "404"),
    ];
    assert_eq!(m2.get("anypop_api_requests_total", &nf), Some(1.0));
    assert_eq!(m2.get("anypop_dns_queries_total", &udp), Some(5.0));
    assert_eq!(
        m2.get("anypop_dns_pop_answers_total", &[("pop", "ams")]),
        Some(4.0)
    );
    let ok = [("pop", "ams"), ("check", "http"), ("result", "ok")];
    assert_eq!(m2.get("anypop_check_results_total", &ok), Some(1.0));
    assert_eq!(
        m2.get(
            "anypop_check_duration_seconds_count",
            &[("pop", "ams"), ("check", "http")]
        ),
        Some(1.0)
    );
    assert_eq!(
        m2.get("anypop_pop_state", &[("pop", "ams"), ("state", "draining")]),
        Some(1.0)
    );
    assert_eq!(
        m2.get(
            "anypop_prefixes_announced",
            &[("pop", "ams"), ("mode", "normal")]
        ),
        None
    );
    assert!(m2.get("anypop_snapshot_version", &[]) > m1.get("anypop_snapshot_version", &[]));
}

/// Made-up methods and paths, unauthenticated, add no series: methods
/// outside the standard set count as OTHER, unknown paths as unmatched.
#[tokio::test]
async fn junk_methods_and_paths_add_no_metric_series() {
    let (app, _) = app(&["ams"], Auth::with_token("t0k", true)).await;
    for i in 0..20 {
        let method = format!("BOGUSMETHOD{i}");
        let _ = call_with(&app, &method, &format!("/v1/junk{i}"), &[], "").await;
        let _ = call_with(&app, &method, "/v1/state", &[], "").await;
        let _ = call_with(&app, "GET", &format!("/x/{i}"), &[], "").await;
    }
    let (_, _, bytes) = call_raw(&app, "GET", "/metrics", Some("t0k"), None).await;
    let text = String::from_utf8(bytes).expect("utf8");
    assert!(!text.contains("BOGUS") && !text.contains("junk"), "{text}");
    let m = parse_metrics(&text).expect("parses");
    let series: Vec<_> = m
        .samples
        .iter()
        .filter(|s| s.name == "anypop_api_requests_total")
        .collect();
    assert!(series.len() <= 4, "{series:?}");
    let other = [
        ("method", "OTHER"),
        ("route", "unmatched"),
        ("status", "404"),
    ];
    assert_eq!(m.get("anypop_api_requests_total", &other), Some(20.0));
    let unmatched = [("method", "GET"), ("route", "unmatched"), ("status", "404")];
    assert_eq!(m.get("anypop_api_requests_total", &unmatched), Some(20.0));
}

// ------------------------------------------------------------ OpenAPI

/// Every (method, path) the API serves, in OpenAPI path syntax: the
/// generated document must list exactly these, and the router must serve
/// them.
const ENDPOINTS: &[(&str, &str)] = &[
    ("get", "/v1/state"),
    ("get", "/v1/pops"),
    ("get", "/v1/pops/{name}"),
    ("get", "/v1/peers"),
    ("get", "/v1/checks"),
    ("post", "/v1/pops/{name}/drain"),
    ("post", "/v1/pops/{name}/undrain"),
    ("post", "/v1/pops/{name}/disable"),
    ("post", "/v1/pops/{name}/enable"),
    ("get", "/v1/explain"),
    ("get", "/v1/events"),
    ("post", "/v1/reload"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/v1/openapi.json"),
    ("get", "/v1/fleet"),
    ("get", "/v1/fleet/report"),
];

/// The generated document as JSON.
fn document() -> Value {
    serde_json::to_value(openapi_document()).expect("the document serializes")
}

fn resolve<'a>(doc: &'a Value, r: &str) -> Option<&'a Value> {
    let path = r.strip_prefix("#/")?;
    path.split('/').try_fold(doc, |v, seg| v.get(seg))
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == "$ref" {
                    out.push(x.as_str().unwrap_or_default().to_string());
                } else {
                    collect_refs(x, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_refs(x, out)),
        _ => {}
    }
}

#[test]
fn openapi_document_is_complete_and_consistent() {
    let doc = document();
    let text = serde_json::to_string(&doc).expect("serialize");
    let doc: Value = serde_json::from_str(&text).expect("parses back");
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    let paths = doc["paths"].as_object().expect("paths");
    for (method, path) in ENDPOINTS {
        let op = &paths
            .get(*path)
            .unwrap_or_else(|| panic!("{path} missing from the document"))[*method];
        assert!(op.is_object(), "{method} {path} missing");
        assert!(op["summary"].is_string(), "{method} {path} summary");
        let responses = op["responses"].as_object().expect("responses");
        assert!(
            responses.keys().any(|k| k.starts_with('2')),
            "{method} {path} has a 2xx"
        );
        // Path parameters are declared.
        if path.contains("{name}") {
            let params = op["parameters"].as_array().expect("parameters");
            assert!(params
                .iter()
                .any(|p| p["name"] == "name" && p["in"] == "path"));
        }
    }
    for (path, item) in paths {
        for method in item.as_object().expect("path item").keys() {
            assert!(
                ENDPOINTS.contains(&(method.as_str(), path.as_str())),
                "documented {method} {path} is not routed"
            );
        }
    }
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(refs.len() > 20);
    for r in refs {
        assert!(resolve(&doc, &r).is_some(), "dangling $ref {r}");
    }
}

#[tokio::test]
async fn every_documented_endpoint_is_routed() {
    let (app, _) = app(&["ams", "fra"], Auth::with_token(TOKEN, false)).await;
    for (method, path) in ENDPOINTS {
        if *path == "/v1/events" {
            continue; // streams forever; covered by the SSE tests
        }
        let uri = path.replace("{name}", "fra");
        let uri = if uri == "/v1/explain" {
            "/v1/explain?name=www.example.test".into()
        } else {
            uri
        };
        let (st, v) = call(&app, &method.to_uppercase(), &uri, Some(TOKEN), None).await;
        assert_ne!(st, StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}");
        assert!(
            st != StatusCode::NOT_FOUND
                || v["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("PoP") || e.contains("fleet")),
            "{method} {uri} not routed: {v}"
        );
    }
}

/// A small JSON Schema checker for the subset the document uses: type,
/// required, properties, additionalProperties, items, prefixItems, enum,
/// $ref, allOf, oneOf, anyOf.
fn conforms(doc: &Value, schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let s = resolve(doc, r).ok_or(format!("{at}: dangling {r}"))?;
        return conforms(doc, s, v, at);
    }
    for all in schema
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        conforms(doc, all, v, at)?;
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(alts) = schema.get(key).and_then(Value::as_array) {
            let errors: Vec<String> = alts
                .iter()
                .filter_map(|s| conforms(doc, s, v, at).err())
                .collect();
            if errors.len() == alts.len() {
                return Err(format!("{at}: matches no {key} alternative: {errors:?}"));
            }
        }
    }
    if let Some(t) = schema.get("type") {
        let types: Vec<&str> = match t {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let ok = types.iter().any(|t| match *t {
            "object" => v.is_object(),
            "array" => v.is_array(),
            "string" => v.is_string(),
            "integer" => v.is_i64() || v.is_u64(),
            "number" => v.is_number(),
            "boolean" => v.is_boolean(),
            "null" => v.is_null(),
            _ => false,
        });
        if !ok {
            return Err(format!("{at}: {v} is not {types:?}"));
        }
    }
    if let Some(e) = schema.get("enum").and_then(Value::as_array) {
        if !v.is_null() && !e.contains(v) {
            return Err(format!("{at}: {v} not in {e:?}"));
        }
    }
    if let Value::Object(obj) = v {
        for req in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let k = req.as_str().unwrap_or_default();
            if !obj.contains_key(k) {
                return Err(format!("{at}: missing required {k}"));
            }
        }
        let props = schema.get("properties").and_then(Value::as_object);
        for (k, x) in obj {
            match props.and_then(|p| p.get(k)) {
                Some(s) => conforms(doc, s, x, &format!("{at}.{k}"))?,
                None => match schema.get("additionalProperties") {
                    Some(Value::Bool(false)) => return Err(format!("{at}: unexpected {k}")),
                    Some(s @ Value::Object(_)) => conforms(doc, s, x, &format!("{at}.{k}"))?,
                    _ => {}
                },
            }
        }
    }
    if let (Value::Array(items), Some(s)) = (v, schema.get("items")) {
        for (i, x) in items.iter().enumerate() {
            if s.is_object() {
                conforms(doc, s, x, &format!("{at}[{i}]"))?;
            }
        }
    }
    if let (Value::Array(items), Some(Value::Array(s))) = (v, schema.get("prefixItems")) {
        for (i, (x, s)) in items.iter().zip(s).enumerate() {
            conforms(doc, s, x, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

#[tokio::test]
async fn responses_conform_to_the_documented_schemas() {
    let doc = document();
    let (app, state) = app(&["ams", "fra"], Auth::open()).await;
    state.readiness.set("api", true);
    let check = |path: &str, method: &str, code: &str, v: &Value| {
        let schema =
            &doc["paths"][path][method]["responses"][code]["content"]["application/json"]["schema"];
        assert!(schema.is_object(), "no schema for {method} {path} {code}");
        if let Err(e) = conforms(&doc, schema, v, "$") {
            panic!("{method} {path} {code}: {e}\n{v:#}");
        }
    };
    let (st, v) = call(
        &app,
        "POST",
        "/v1/pops/ams/drain",
        None,
        Some(r#"{"duration": "10m"}"#),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    check("/v1/pops/{name}/drain", "post", "200", &v);
    for (path, uri) in [
        ("/v1/state", "/v1/state"),
        ("/v1/pops", "/v1/pops"),
        ("/v1/pops/{name}", "/v1/pops/ams"),
        ("/v1/checks", "/v1/checks"),
        ("/v1/peers", "/v1/peers"),
        ("/v1/explain", "/v1/explain?name=www.example.test"),
        ("/healthz", "/healthz"),
        ("/readyz", "/readyz"),
    ] {
        let (st, v) = call(&app, "GET", uri, None, None).await;
        assert_eq!(st, StatusCode::OK, "{uri}");
        check(path, "get", "200", &v);
    }
    let (st, v) = call(
        &app,
        "POST",
        "/v1/pops/ams/drain",
        None,
        Some(r#"{"mode": 1}"#),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    check("/v1/pops/{name}/drain", "post", "400", &v);
    let (st, v) = call(&app, "GET", "/v1/pops/nope", None, None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    check("/v1/pops/{name}", "get", "404", &v);
    // The request schemas accept what the server accepts and vice versa.
    let body =
        json!({"reason": "r", "duration": "1h", "mode": "immediate", "force": true, "who": "w"});
    conforms(
        &doc,
        &doc["components"]["schemas"]["DrainRequest"],
        &body,
        "$",
    )
    .expect("valid body");
    assert!(conforms(
        &doc,
        &doc["components"]["schemas"]["DrainRequest"],
        &json!({"x": 1}),
        "$"
    )
    .is_err());
}

/// The fleet report is typed in the document (not a bare object): the
/// recorded report conforms to it, and a report with a misspelt verdict,
/// a missing field or an unknown role does not.
#[test]
fn the_fleet_report_schema_is_typed() {
    let doc = document();
    let schema = &doc["paths"]["/v1/fleet/report"]["get"]["responses"]["200"]["content"]
        ["application/json"]["schema"];
    assert_eq!(schema["$ref"], "#/components/schemas/ReportV1", "{schema}");
    let report = &doc["components"]["schemas"]["ReportV1"];
    let pop = &doc["components"]["schemas"]["PopReportV1"];
    for (s, fields) in [
        (
            report,
            &["format", "node", "instance", "revision", "pops"][..],
        ),
        (pop, &["role", "verdict", "decided_at"][..]),
    ] {
        for f in fields {
            assert!(
                s["required"]
                    .as_array()
                    .is_some_and(|r| r.contains(&json!(f))),
                "{f} required: {s}"
            );
        }
    }
    assert_eq!(
        report["properties"]["pops"]["additionalProperties"]["$ref"],
        "#/components/schemas/PopReportV1"
    );
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/fleet/wire/testdata/report.json"
    );
    let recorded: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("recorded report"))
            .expect("json");
    conforms(&doc, schema, &recorded, "$").expect("the recorded report conforms");
    for (ptr, bad) in [
        ("/pops/a/role", json!("transit")),
        ("/pops/b/checks/web", json!(3)),
        ("/pops/a/admin/step", json!("paused")),
        ("/revision", json!("42")),
    ] {
        let mut v = recorded.clone();
        *v.pointer_mut(ptr).expect(ptr) = bad;
        assert!(conforms(&doc, schema, &v, "$").is_err(), "{ptr} accepted");
    }
    let mut v = recorded.clone();
    v.as_object_mut().map(|o| o.remove("node"));
    assert!(conforms(&doc, schema, &v, "$").is_err(), "no node accepted");
}

fn test_peer() -> crate::bgp::PeerStatus {
    crate::bgp::PeerStatus {
        address: "192.0.2.254".parse().expect("ip"),
        remote_asn: 64500,
        local_asn: 64512,
        state: crate::bgp::SessionState::Established,
        established_since: Some(SystemTime::now() - Duration::from_secs(90)),
        families: Vec::new(),
        prefixes_advertised: 1,
        updates_sent: 4,
        updates_received: 2,
        prefixes_received: 0,
        withdrawals_received: 0,
        flaps: 1,
        end_of_rib_sent: true,
        last_error: None,
        last_error_at: None,
        bfd: None,
    }
}

#[tokio::test]
async fn bgp_status_is_served_and_exported() {
    let core = real_core(&["ams"]).await;
    let peer = test_peer();
    let (tx, rx) = watch::channel(crate::bgp::StatusMap::from([(
        Name::parse("r1").expect("name"),
        peer,
    )]));
    let app = router(AppState::new(core, Auth::open()).with_bgp(rx));
    let (st, v) = call(&app, "GET", "/v1/peers", None, None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["peers"]["r1"]["state"], "established");
    assert!(
        v["peers"]["r1"]["uptime_secs"]
            .as_u64()
            .is_some_and(|u| u >= 90),
        "{v}"
    );
    let m = scrape(&app).await;
    let r1 = [("peer", "r1")];
    assert_eq!(m.get("anypop_bgp_session_up", &r1), Some(1.0));
    assert_eq!(m.get("anypop_bgp_updates_sent_total", &r1), Some(4.0));
    assert_eq!(m.get("anypop_bgp_session_flaps_total", &r1), Some(1.0));
    assert_eq!(
        m.get(
            "anypop_bgp_session_state",
            &[("peer", "r1"), ("state", "idle")]
        ),
        Some(0.0)
    );
    // The status is live: a session drop shows on the next scrape.
    assert_eq!(
        m.get("anypop_bfd_session_up", &r1),
        None,
        "no BFD configured"
    );
    tx.send_modify(|m| {
        if let Some(p) = m.get_mut("r1") {
            p.state = crate::bgp::SessionState::Idle;
            p.flaps = 2;
            p.bfd = Some(crate::bfd::SessionStatus {
                state: crate::bfd::State::Down,
                remote_state: crate::bfd::State::Down,
                local_diag: crate::bfd::packet::Diag::ControlDetectionTimeExpired,
                remote_diag: crate::bfd::packet::Diag::None,
                local_discriminator: 7,
                remote_discriminator: 0,
                holds_bgp_down: true,
                failures: 2,
                flaps: 2,
                held_until: Some(SystemTime::now() + Duration::from_secs(2)),
                since: Some(SystemTime::now()),
                tx_interval_ms: Some(1000),
                detection_time_ms: Some(300),
                remote_control_plane_independent: false,
                discarded: 0,
                ttl_dropped: 0,
                error: None,
            });
        }
    });
    let m = scrape(&app).await;
    assert_eq!(m.get("anypop_bgp_session_up", &r1), Some(0.0));
    assert_eq!(m.get("anypop_bgp_session_flaps_total", &r1), Some(2.0));
    assert_eq!(m.get("anypop_bfd_session_up", &r1), Some(0.0));
    assert_eq!(m.get("anypop_bfd_failures_total", &r1), Some(2.0));
    assert_eq!(m.get("anypop_bfd_holds_bgp_down", &r1), Some(1.0));
    let (_, v) = call(&app, "GET", "/v1/peers", None, None).await;
    let b = &v["peers"]["r1"]["bfd"];
    assert_eq!(
        (&b["state"], &b["local_diag"], &b["holds_bgp_down"]),
        (
            &serde_json::json!("down"),
            &serde_json::json!("control detection time expired"),
            &serde_json::json!(true)
        ),
        "{v}"
    );
}

// ------------------------------------------------------------ serve, ctl

async fn raw_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    out
}

fn ctl_args(addr: &str, token: Option<&str>, cmd: crate::ctl::CtlCommand) -> crate::ctl::CtlArgs {
    crate::ctl::CtlArgs {
        api: Some(addr.to_string()),
        token: token.map(str::to_string),
        token_file: None,
        config: None,
        json: false,
        timeout: Duration::from_secs(5),
        command: cmd,
    }
}

#[tokio::test]
async fn serve_on_a_socket_with_ctl_and_clean_shutdown() {
    use crate::ctl::CtlCommand;
    let core = real_core(&["ams", "fra"]).await;
    let listener = bind("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let taken = bind(addr).await.expect_err("port is taken");
    assert!(taken.to_string().contains(&addr.to_string()), "{taken}");
    assert!(taken.to_string().contains("api.listen"), "{taken}");

    let state = AppState::new(core.clone(), Auth::with_token(TOKEN, false));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_on(listener, state.clone(), async move {
        let _ = stop_rx.await;
    }));
    let a = addr.to_string();
    let code = |args| async move { crate::ctl::run(args).await.expect("ctl runs") };
    assert_eq!(code(ctl_args(&a, None, CtlCommand::Status)).await, 0);
    assert_eq!(code(ctl_args(&a, None, CtlCommand::Pops)).await, 0);
    let drain = || CtlCommand::Drain {
        pop: "fra".into(),
        reason: Some("ctl test".into()),
        duration: None,
        mode: Some(crate::ctl::ModeArg::Immediate),
        force: false,
        wait: false,
    };
    assert_eq!(
        code(ctl_args(&a, None, drain())).await,
        crate::ctl::EXIT_REFUSED
    );
    assert_eq!(code(ctl_args(&a, Some(TOKEN), drain())).await, 0);
    assert_eq!(
        core.snapshots.borrow().pops["fra"]
            .admin
            .as_ref()
            .map(|x| x.who.contains("via ctl")),
        Some(true)
    );
    let bad_pop = CtlCommand::Enable { pop: "nope".into() };
    assert_eq!(
        code(ctl_args(&a, Some(TOKEN), bad_pop)).await,
        crate::ctl::EXIT_REFUSED
    );
    let events = CtlCommand::Events {
        replay: None,
        count: Some(2),
    };
    assert_eq!(
        code(ctl_args(&a, None, events)).await,
        0,
        "reads two replayed events and exits"
    );

    // Probe results reach the metrics without any extra wiring.
    core.inputs
        .send(report("lhr", "tcp", false))
        .await
        .expect("core");
    let ok = async {
        loop {
            let text = raw_get(addr, "/metrics").await;
            if text
                .contains("anypop_check_results_total{pop=\"lhr\",check=\"tcp\",result=\"fail\"}")
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), ok)
        .await
        .expect("check result counted");
    assert!(raw_get(addr, "/readyz").await.starts_with("HTTP/1.1 200"));

    // An open event stream does not hold up shutdown.
    let mut sse = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tokio::io::AsyncWriteExt::write_all(&mut sse, b"GET /v1/events HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = stop_tx.send(());
    let res = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("server stops despite the open stream")
        .expect("join");
    assert!(res.is_ok(), "{res:?}");
    assert_eq!(state.readiness.waiting(), vec!["api".to_string()]);

    // Nothing listens any more: ctl says unreachable.
    assert_eq!(
        code(ctl_args(&a, None, CtlCommand::Status)).await,
        crate::ctl::EXIT_UNREACHABLE
    );
}

mod wire;

// ------------------------------------------------------------ web view

#[tokio::test]
async fn web_view_files_are_served_with_csp_and_no_token() {
    // protect_reads: the data needs the token, the page's files do not.
    let (app, _) = app(&["ams"], Auth::with_token(TOKEN, true)).await;
    let (st, h, _) = call_raw(&app, "GET", "/ui", None, None).await;
    assert_eq!(st, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(h[header::LOCATION], "/ui/");
    for (uri, ctype) in [
        ("/ui/", "text/html; charset=utf-8"),
        ("/ui/app.js", "text/javascript; charset=utf-8"),
        ("/ui/style.css", "text/css; charset=utf-8"),
        ("/ui/world.svg", "image/svg+xml"),
        ("/ui/icon.svg", "image/svg+xml"),
    ] {
        let (st, h, body) = call_raw(&app, "GET", uri, None, None).await;
        assert_eq!(st, StatusCode::OK, "{uri}");
        assert_eq!(h[header::CONTENT_TYPE], ctype, "{uri}");
        assert_eq!(
            h[header::CONTENT_SECURITY_POLICY],
            ui::CONTENT_SECURITY_POLICY,
            "{uri}"
        );
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert!(!body.is_empty(), "{uri}");
    }
    let (st, v) = call(&app, "GET", "/ui/secret.txt", None, None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_error(&v, None);
    let (st, _) = call(&app, "GET", "/ui/../v1/state", None, None).await;
    assert_ne!(st, StatusCode::OK);
    let (st, _) = call(&app, "POST", "/ui/", None, None).await;
    assert_eq!(st, StatusCode::METHOD_NOT_ALLOWED);
    // What the page reads still needs the token.
    let (st, _) = call(&app, "GET", "/v1/state", None, None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn pops_carry_their_location_for_the_map() {
    let (app, _) = app(&["ams"], Auth::open()).await;
    let (st, v) = call(&app, "GET", "/v1/pops/ams", None, None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["location"], json!({"lat": 52.37, "lon": 4.9}));
    let (_, v) = call(&app, "GET", "/v1/pops/fra", None, None).await;
    assert!(v["location"].is_null(), "no location configured: {v}");
}
