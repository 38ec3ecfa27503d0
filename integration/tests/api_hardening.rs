//! The API against hostile clients, with the real binary over real HTTP:
//! what a web page in a browser on the same host can send without a CORS
//! preflight (a `text/plain` POST, a foreign `Origin`, a rebound `Host`)
//! is refused while `anypop ctl` keeps working; made-up methods add no
//! metric series; a slow-loris client is closed and the connection cap
//! holds; off loopback, reads need the token.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anypop_integration::{
    ctl, free_port, http, http_client, metric, test_zone, wait_until, write_file, Anypop,
};
use serde_json::Value;

const T: Duration = Duration::from_secs(20);
const TOKEN: &str = "hardening-token-81d0";

struct Lab {
    _dir: tempfile::TempDir,
    config: PathBuf,
    token: PathBuf,
    /// Where clients connect (always loopback).
    api: String,
}

impl Lab {
    /// A two-PoP config whose `api` section is `listen` plus `extra` lines.
    fn new(listen_ip: &str, extra: &str) -> Lab {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let dns = free_port();
        let token = write_file(dir.path(), "token", &format!("{TOKEN}\n"));
        let cfg = format!(
            r#"
node:
  name: hardening
  pop: ams
  router_id: 192.0.2.1
  asn: 64512
  state_dir: {state}
api:
  listen: "{listen_ip}:{port}"
{extra}
pops:
  - name: ams
    prefixes: [203.0.113.0/24]
    addresses: [192.0.2.10]
  - name: fra
    prefixes: [203.0.113.0/24]
    addresses: [198.51.100.10]
{zone}"#,
            zone = test_zone(&format!("127.0.0.1:{dns}"), ""),
            state = dir.path().join("state").display(),
            extra = extra.replace("TOKEN_FILE", &token.display().to_string()),
        );
        let config = write_file(dir.path(), "anypop.yaml", &cfg);
        Lab {
            _dir: dir,
            config,
            token,
            api: format!("127.0.0.1:{port}"),
        }
    }

    fn start(&self) -> Anypop {
        Anypop::start_ready(&self.config, &self.api, "/healthz", T)
    }

    fn ctl(&self, api: &str, args: &[&str]) -> (i32, String, String) {
        ctl(api, &self.token, args)
    }
}

/// One request with the given header lines (`Name: value`; `Host: addr`
/// unless one is given); (status, body), or (0, "") if the server closed the
/// connection without an answer.
fn request(addr: &str, method: &str, path: &str, headers: &[&str], body: &str) -> (u16, String) {
    let headers: Vec<(&str, &str)> = headers.iter().filter_map(|h| h.split_once(": ")).collect();
    match http_client::request(addr, method, path, &headers, body.as_bytes()) {
        Ok(r) => (r.status, r.text()),
        Err(_) => (0, String::new()),
    }
}

fn fra_admin(api: &str) -> Value {
    let (st, body) = http(api, "GET", "/v1/pops/fra", None).expect("GET fra");
    assert_eq!(st, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("JSON");
    v["admin"].clone()
}

#[test]
fn browser_style_requests_are_refused_and_ctl_still_works() {
    let lab = Lab::new("127.0.0.1", "");
    let p = lab.start();
    let host = format!("Host: {}", lab.api);

    // The reproduction from the report: a text/plain POST (no preflight).
    let (st, body) = request(
        &lab.api,
        "POST",
        "/v1/pops/fra/disable",
        &[&host, "Content-Type: text/plain"],
        r#"{"reason":"x"}"#,
    );
    assert_eq!(st, 415, "{body}");
    assert!(body.contains("application/json"), "{body}");
    // A form, and a POST without any body or type.
    let (st, _) = request(
        &lab.api,
        "POST",
        "/v1/pops/fra/disable",
        &[&host, "Content-Type: application/x-www-form-urlencoded"],
        "reason=x",
    );
    assert_eq!(st, 415);
    // A body without a type.
    let (st, body) = request(
        &lab.api,
        "POST",
        "/v1/pops/fra/disable",
        &[&host],
        r#"{"reason":"x"}"#,
    );
    assert_eq!(st, 415, "{body}");
    assert!(body.contains("no body and no Content-Type"), "{body}");
    // JSON from a page of another site.
    let (st, body) = request(
        &lab.api,
        "POST",
        "/v1/pops/fra/disable",
        &[
            &host,
            "Content-Type: application/json",
            "Origin: http://evil.example",
        ],
        "{}",
    );
    assert_eq!(st, 403, "{body}");
    // DNS rebinding: the attacker's name in Host, for reads and writes.
    let rebound = format!(
        "Host: rebind.attacker.test:{}",
        lab.api.rsplit(':').next().unwrap_or("")
    );
    let (st, body) = request(&lab.api, "GET", "/v1/state", &[&rebound], "");
    assert_eq!(st, 403, "{body}");
    assert!(body.contains("api.allowed_hosts"), "{body}");
    let (st, _) = request(
        &lab.api,
        "POST",
        "/v1/pops/fra/disable",
        &[&rebound, "Content-Type: application/json"],
        "{}",
    );
    assert_eq!(st, 403);
    assert!(fra_admin(&lab.api).is_null(), "nothing was disabled");

    // ctl, by address and by `localhost`, still works.
    let (code, out, err) = lab.ctl(&lab.api, &["disable", "fra", "--reason", "ctl"]);
    assert_eq!(code, 0, "{out}{err}\n{}", p.log());
    assert_eq!(fra_admin(&lab.api)["kind"], "disable");
    let port = lab.api.rsplit(':').next().unwrap_or("");
    let (code, out, err) = lab.ctl(&format!("localhost:{port}"), &["enable", "fra"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(fra_admin(&lab.api).is_null());
    // What `curl -X POST http://node/v1/pops/fra/disable` sends: no body,
    // no Content-Length, no Content-Type. It takes the defaults.
    for (path, kind) in [
        ("/v1/pops/fra/disable", Value::from("disable")),
        ("/v1/pops/fra/enable", Value::Null),
    ] {
        let (st, body) = bare_post(&lab.api, path);
        assert_eq!(st, 200, "{path}: {body}");
        assert_eq!(fra_admin(&lab.api)["kind"], kind, "{path}");
    }
    // A page the API serves itself (same origin) passes.
    let origin = format!("Origin: http://{}", lab.api);
    let (st, body) = request(
        &lab.api,
        "POST",
        "/v1/pops/fra/disable",
        &[&host, "Content-Type: application/json", &origin],
        r#"{"reason":"same origin"}"#,
    );
    assert_eq!(st, 200, "{body}");
}

/// A POST exactly as `curl -X POST http://{api}{path}` sends it (no
/// body, no `Content-Length`, no `Content-Type`).
fn bare_post(api: &str, path: &str) -> (u16, String) {
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {api}\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    let r = http_client::send_raw(api, request.as_bytes(), Duration::from_secs(20)).expect("POST");
    (r.status, r.text())
}

#[test]
fn made_up_methods_and_paths_add_no_metric_series() {
    let lab = Lab::new("127.0.0.1", "");
    let _p = lab.start();
    let host = format!("Host: {}", lab.api);
    for i in 0..10 {
        let _ = request(
            &lab.api,
            &format!("BOGUSMETHODXYZ{i}"),
            "/v1/state",
            &[&host],
            "",
        );
        let _ = request(
            &lab.api,
            "BOGUSMETHODXYZ",
            &format!("/junk/{i}"),
            &[&host],
            "",
        );
    }
    let (st, text) = http(&lab.api, "GET", "/metrics", None).expect("scrape");
    assert_eq!(st, 200);
    assert!(!text.contains("BOGUS") && !text.contains("junk"), "{text}");
    let other = "anypop_api_requests_total{method=\"OTHER\",route=\"unmatched\",status=\"404\"}";
    assert_eq!(metric(&text, other), Some(10.0), "{text}");
    let series = text
        .lines()
        .filter(|l| l.starts_with("anypop_api_requests_total{"))
        .count();
    assert!(series <= 3, "{text}");
}

/// Reads from `s` until EOF or error: true if the server closed it within
/// `within` (false if it still holds it open then).
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).expect("timeout");
    let mut buf = [0u8; 512];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

#[test]
fn slow_loris_is_closed_and_the_connection_cap_holds() {
    let lab = Lab::new(
        "127.0.0.1",
        "  header_read_timeout: 1s\n  max_connections: 8",
    );
    let p = lab.start();
    let host = format!("Host: {}", lab.api);

    // Headers one line every 300 ms, forever: the server hangs up.
    let mut loris = TcpStream::connect(&lab.api).expect("connect");
    loris
        .write_all(format!("GET /v1/state HTTP/1.1\r\n{host}\r\n").as_bytes())
        .expect("write");
    let start = Instant::now();
    let mut closed = false;
    for i in 0..100 {
        if loris
            .write_all(format!("X-Slow-{i}: 1\r\n").as_bytes())
            .is_err()
            || closed_within(&mut loris, Duration::from_millis(300))
        {
            closed = true;
            break;
        }
    }
    assert!(
        closed,
        "a client trickling headers for 30 s is still connected\n{}",
        p.log()
    );
    println!(
        "slow-loris client closed after {:.1} s (header_read_timeout 1s)",
        start.elapsed().as_secs_f64()
    );
    // An idle connection that never sends a request is closed too.
    let mut idle = TcpStream::connect(&lab.api).expect("connect");
    assert!(closed_within(&mut idle, T), "an idle connection is held");

    // Eight event streams fill the cap; a ninth connection is closed
    // without an answer; when one stream ends, requests work again.
    let mut streams = Vec::new();
    for _ in 0..8 {
        let mut s = TcpStream::connect(&lab.api).expect("connect");
        s.write_all(format!("GET /v1/events HTTP/1.1\r\n{host}\r\n\r\n").as_bytes())
            .expect("write");
        s.set_read_timeout(Some(T)).expect("timeout");
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf).expect("stream answers");
        assert!(
            String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&buf[..n])
        );
        streams.push(s);
    }
    let (st, body) = request(&lab.api, "GET", "/v1/state", &[&host], "");
    assert_eq!(
        st, 0,
        "over the cap the connection is closed unanswered: {st} {body}"
    );
    drop(streams.pop());
    let ok = wait_until(T, || {
        request(&lab.api, "GET", "/healthz", &[&host], "").0 == 200
    });
    assert!(ok, "a slot came back when a stream ended\n{}", p.log());
    let (_, text) = request(&lab.api, "GET", "/metrics", &[&host], "");
    assert!(
        metric(&text, "anypop_api_connections_refused_total").is_some_and(|n| n >= 1.0),
        "{text}"
    );
}

#[test]
fn off_loopback_reads_need_the_token_unless_allowed() {
    // A wildcard listener is not loopback; clients still connect over
    // loopback here.
    let lab = Lab::new("0.0.0.0", "  token_file: TOKEN_FILE");
    let _p = lab.start();
    for path in ["/v1/state", "/v1/peers", "/metrics", "/v1/events"] {
        let (st, body) = http(&lab.api, "GET", path, None).expect("GET");
        assert_eq!(st, 401, "{path}: {body}");
    }
    let (st, _) = http(&lab.api, "GET", "/v1/state", Some(TOKEN)).expect("GET");
    assert_eq!(st, 200);
    let (st, _) = http(&lab.api, "GET", "/healthz", None).expect("GET");
    assert_eq!(st, 200);
    let (code, out, err) = lab.ctl(&lab.api, &["status"]);
    assert_eq!(code, 0, "{out}{err}");
    drop(_p);

    let open = Lab::new(
        "0.0.0.0",
        "  token_file: TOKEN_FILE\n  protect_reads: false",
    );
    let _p = open.start();
    let (st, _) = http(&open.api, "GET", "/v1/state", None).expect("GET");
    assert_eq!(st, 200, "protect_reads: false opens reads explicitly");
    let (st, _) = http(&open.api, "POST", "/v1/pops/fra/disable", None).expect("POST");
    assert_eq!(st, 401, "changes still need the token");
}
