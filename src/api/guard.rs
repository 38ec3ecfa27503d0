//! Request guards that run before authentication and before any handler:
//!
//! - `Host` must name this API: its listen address, `localhost` on a
//!   loopback or wildcard listener, or a name from `api.allowed_hosts`.
//!   A page served from an attacker's name that re-resolves to this host
//!   (DNS rebinding) carries the attacker's name and is refused (403).
//! - `Origin`, when a browser sends one, must be the API's own origin (the
//!   `Host` the request addressed): a page of another site cannot drive
//!   the API from a browser on this host (403). Same-origin requests, such
//!   as a web view served by the API itself, pass; clients that are not
//!   browsers send no `Origin`.
//! - A POST with a body must say `Content-Type: application/json` (415
//!   otherwise): HTML forms and `text/plain` fetches, the requests a
//!   browser sends cross-site without asking, never carry it. A POST with
//!   no body and no `Content-Type` (`curl -X POST .../undrain`) passes: a
//!   browser sends that only from a script, which always sends `Origin`
//!   cross-site. Any other `Content-Type` is refused even with an empty
//!   body (an empty form). The body must arrive within the header-read
//!   timeout (408).
//!
//! The decisions are pure functions over header values; the middleware
//! only reads headers and buffers a POST body. It owns no state.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::{AppState, MAX_BODY};

/// Which `Host` values name this API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPolicy {
    /// The listener's address; `None` until known (then loopback rules).
    listen: Option<SocketAddr>,
    /// Extra names and addresses (lowercase, no port); `*` accepts any.
    names: Vec<String>,
}

impl Default for HostPolicy {
    fn default() -> HostPolicy {
        HostPolicy::new(&[])
    }
}

impl HostPolicy {
    /// The names of `api.allowed_hosts` (already validated and lowercase).
    pub fn new(names: &[String]) -> HostPolicy {
        HostPolicy {
            listen: None,
            names: names.to_vec(),
        }
    }

    /// The same policy for a listener on `addr`.
    pub fn with_listen(mut self, addr: SocketAddr) -> HostPolicy {
        self.listen = Some(addr);
        self
    }

    /// True if a request whose `Host` header is `host` (a name or address,
    /// with or without a port) may be served.
    pub fn allows(&self, host: &str) -> bool {
        let Some(name) = host_part(host) else {
            return false;
        };
        if self.names.iter().any(|n| n == "*" || *n == name) {
            return true;
        }
        let listen = self.listen.map(|a| a.ip());
        let local = listen.is_none_or(|ip| ip.is_loopback() || ip.is_unspecified());
        match name.parse::<IpAddr>() {
            // An address cannot be rebound: it is ours if we listen on it.
            Ok(ip) => match listen {
                None => ip.is_loopback(),
                Some(l) if l.is_unspecified() => true,
                Some(l) => ip == l || (l.is_loopback() && ip.is_loopback()),
            },
            Err(_) => local && name == "localhost",
        }
    }
}

/// The host of a `Host` header or URL authority, lowercase, without port,
/// brackets or trailing dot; `None` if it is malformed.
fn host_part(authority: &str) -> Option<String> {
    let a = authority.trim();
    let host = if let Some(rest) = a.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        if !(after.is_empty() || port_ok(after.strip_prefix(':')?)) {
            return None;
        }
        ip
    } else {
        match a.rsplit_once(':') {
            Some((h, port)) if port_ok(port) => h,
            Some(_) => return None,
            None => a,
        }
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'));
    ok.then_some(host)
}

fn port_ok(p: &str) -> bool {
    !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
}

/// True if `origin` (an `Origin` header: `scheme://host[:port]`) is the
/// origin of a request that addressed `host` (its `Host` header). `null`
/// (sandboxed frames, local files) is never the API's origin.
pub fn same_origin(origin: &str, host: Option<&str>) -> bool {
    let Some(host) = host else {
        return false;
    };
    let Some((scheme, authority)) = origin.trim().split_once("://") else {
        return false;
    };
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => ":80",
        "https" => ":443",
        _ => return false,
    };
    let norm = |a: &str| {
        let a = a.trim().to_ascii_lowercase();
        match a.strip_suffix(default_port) {
            Some(bare) => bare.to_string(),
            None => a,
        }
    };
    !authority.contains('/') && norm(authority) == norm(host)
}

/// True if the `Content-Type` header says JSON (parameters such as
/// `charset` allowed).
pub fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

/// The `Host` a request addressed: the header, or the request target's
/// authority (absolute-form requests).
fn request_host(req: &Request) -> Option<String> {
    match req.headers().get(header::HOST) {
        Some(v) => Some(String::from_utf8_lossy(v.as_bytes()).into_owned()),
        None => req.uri().authority().map(|a| a.to_string()),
    }
}

/// Checks `Host` and `Origin` of every request.
pub(super) async fn check_origin(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let host = request_host(&req);
    if let Some(h) = &host {
        if !s.hosts.allows(h) {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "Host {h:?} does not name this API: use its address, or add the name to api.allowed_hosts"
                ),
            )
            .into_response();
        }
    }
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        let origin = String::from_utf8_lossy(origin.as_bytes()).into_owned();
        if !same_origin(&origin, host.as_deref()) {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                format!("cross-origin request from {origin:?} refused: the API only serves its own origin"),
            )
            .into_response();
        }
    }
    next.run(req).await
}

/// Requires a JSON content type on a POST that has a body (or a content
/// type) and reads its body within the header-read timeout (a client that
/// trickles a body is cut off like one that trickles headers).
pub(super) async fn require_json(State(s): State<AppState>, req: Request, next: Next) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let typed = req.headers().contains_key(header::CONTENT_TYPE);
    if typed && !is_json(req.headers()) {
        return unsupported_type();
    }
    let (parts, body) = req.into_parts();
    match read_body(body, s.limits.header_read_timeout).await {
        Ok(bytes) if !typed && !bytes.is_empty() => unsupported_type(),
        Ok(bytes) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err(e) => e.into_response(),
    }
}

fn unsupported_type() -> Response {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "a POST body must be JSON with \"Content-Type: application/json\"; for the defaults send {} with that type, or no body and no Content-Type",
    )
    .into_response()
}

async fn read_body(body: Body, within: Duration) -> Result<axum::body::Bytes, ApiError> {
    match tokio::time::timeout(within, axum::body::to_bytes(body, MAX_BODY)).await {
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!("the request body did not arrive within {within:?}"),
        )),
        Ok(Err(e)) => {
            let too_big = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            Err(if too_big {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("request body larger than {MAX_BODY} bytes"),
                )
            } else {
                ApiError::bad_request(format!("cannot read the request body: {e}"))
            })
        }
        Ok(Ok(b)) => Ok(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(listen: &str, names: &[&str]) -> HostPolicy {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        HostPolicy::new(&names).with_listen(listen.parse().expect("addr"))
    }

    #[test]
    fn loopback_listener_takes_loopback_addresses_and_localhost() {
        let p = policy("127.0.0.1:8080", &[]);
        for ok in [
            "127.0.0.1:8080",
            "127.0.0.1",
            "localhost:8080",
            "LOCALHOST.",
            "[::1]:8080",
        ] {
            assert!(p.allows(ok), "{ok}");
        }
        for bad in [
            "evil.example:8080",
            "rebind.attacker.test",
            "192.0.2.1:8080",
            "localhost.evil.example",
            "",
            "127.0.0.1:80:80",
            "127.0.0.1:x",
            "[::1",
            "a b",
        ] {
            assert!(!p.allows(bad), "{bad}");
        }
    }

    #[test]
    fn address_listener_takes_its_address_and_configured_names() {
        let p = policy("192.0.2.1:8080", &["anypop.example.net", "198.51.100.9"]);
        assert!(p.allows("192.0.2.1:8080"));
        assert!(p.allows("Anypop.Example.Net:8080"));
        assert!(p.allows("198.51.100.9"));
        assert!(!p.allows("192.0.2.2:8080"));
        assert!(!p.allows("localhost:8080"));
        assert!(!p.allows("127.0.0.1:8080"));
        assert!(!p.allows("other.example.net"));
    }

    #[test]
    fn wildcard_listener_takes_any_address_but_not_foreign_names() {
        let p = policy("[::]:8080", &[]);
        assert!(p.allows("192.0.2.7:8080"));
        assert!(p.allows("[2001:db8::1]:8080"));
        assert!(p.allows("localhost"));
        assert!(!p.allows("attacker.example"));
        assert!(policy("[::]:8080", &["*"]).allows("attacker.example"));
    }

    #[test]
    fn no_listener_yet_means_loopback_rules() {
        let p = HostPolicy::default();
        assert!(p.allows("127.0.0.1:1"));
        assert!(p.allows("localhost"));
        assert!(!p.allows("192.0.2.1"));
    }

    #[test]
    fn origin_must_be_the_addressed_host() {
        let host = Some("127.0.0.1:8080");
        assert!(same_origin("http://127.0.0.1:8080", host));
        assert!(same_origin("HTTP://127.0.0.1:8080", host));
        assert!(same_origin(
            "http://anypop.example.net",
            Some("anypop.example.net")
        ));
        assert!(same_origin(
            "http://anypop.example.net",
            Some("anypop.example.net:80")
        ));
        assert!(same_origin("https://a.example:443", Some("a.example")));
        assert!(!same_origin("http://evil.example", host));
        assert!(!same_origin("http://127.0.0.1:9999", host));
        assert!(!same_origin("null", host));
        assert!(!same_origin("file://", host));
        assert!(!same_origin("http://127.0.0.1:8080/x", host));
        assert!(!same_origin("http://127.0.0.1:8080", None));
    }

    #[test]
    fn json_content_type_with_parameters() {
        let mut h = HeaderMap::new();
        assert!(!is_json(&h));
        for (v, ok) in [
            ("application/json", true),
            ("Application/JSON; charset=utf-8", true),
            ("text/plain", false),
            ("application/x-www-form-urlencoded", false),
            ("multipart/form-data; boundary=x", false),
            ("application/jsonp", false),
        ] {
            h.insert(header::CONTENT_TYPE, v.parse().expect("value"));
            assert_eq!(is_json(&h), ok, "{v}");
        }
    }
}
