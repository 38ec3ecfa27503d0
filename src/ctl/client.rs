//! The HTTP side of `anypop ctl`: where the API is, the token, one request
//! with a timeout, decoding answers into the API's DTOs, and the
//! Server-Sent Events parser. No rendering.
//!
//! Talks HTTP/1.1 (hyper client, no TLS: the API listens on loopback or a
//! management network). Every POST carries `Content-Type:
//! application/json`, which the API requires.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use tokio::net::TcpStream;

use super::args::CtlArgs;
use crate::api::dto::ErrorBody;

/// Default API address when nothing else says where it is.
pub const DEFAULT_API: &str = "127.0.0.1:8080";

/// Where and how to reach the API.
#[derive(Debug, Clone)]
pub(super) struct Target {
    /// `host:port` to connect to.
    pub(super) authority: String,
    token: Option<String>,
    pub(super) timeout: Duration,
}

/// A non-2xx answer.
#[derive(Debug)]
pub(super) struct Refused {
    pub(super) status: StatusCode,
    pub(super) body: Bytes,
}

impl Refused {
    /// The API's error, if the body is one.
    pub(super) fn error(&self) -> Option<ErrorBody> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The body as JSON (a string if it is not JSON), for `--json`.
    pub(super) fn json(&self) -> Value {
        raw_json(&self.body)
    }
}

/// The body as JSON, or as a JSON string if it is not JSON.
pub(super) fn raw_json(bytes: &[u8]) -> Value {
    serde_json::from_slice::<Value>(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

/// Decodes an answer into its DTO.
pub(super) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> anyhow::Result<T> {
    serde_json::from_slice(bytes).context("the API's answer is not what this anypop ctl expects")
}

impl Target {
    pub(super) fn resolve(args: &CtlArgs) -> anyhow::Result<Target> {
        let cfg = match &args.config {
            Some(p) => Some(
                crate::config::load(p)
                    .map_err(|e| anyhow!("config {} is not usable:\n{e}", p.display()))?,
            ),
            None => None,
        };
        let api = match (&args.api, &cfg) {
            (Some(a), _) => a.clone(),
            (None, Some(c)) => match c.api.listen {
                Some(addr) if addr.ip().is_unspecified() => {
                    let ip = if addr.is_ipv4() { "127.0.0.1" } else { "[::1]" };
                    format!("{ip}:{}", addr.port())
                }
                Some(addr) => addr.to_string(),
                None => bail!("the config has no API listener (api.listen is off)"),
            },
            (None, None) => DEFAULT_API.to_string(),
        };
        let authority = parse_api(&api)?;
        let token_file = args
            .token_file
            .clone()
            .or_else(|| cfg.as_ref().and_then(|c| c.api.token_file.clone()));
        let token = match (&args.token, token_file) {
            (Some(t), _) => Some(t.trim().to_string()),
            (None, Some(f)) => {
                Some(crate::api::auth::read_token_file(&f).map_err(|e| anyhow!("{e}"))?)
            }
            (None, None) => None,
        };
        Ok(Target {
            authority,
            token,
            timeout: args.timeout,
        })
    }
}

/// Accepts `host:port`, `http://host:port[/]`; refuses other schemes.
pub(super) fn parse_api(s: &str) -> anyhow::Result<String> {
    let s = s.trim();
    let rest = if let Some(r) = s.strip_prefix("http://") {
        r
    } else if s.contains("://") {
        bail!("API address {s:?}: only http:// is supported");
    } else {
        s
    };
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() || rest.contains('/') {
        bail!("API address {s:?}: expected host:port or http://host:port");
    }
    if rest
        .rsplit_once(':')
        .is_none_or(|(_, p)| p.parse::<u16>().is_err())
    {
        bail!("API address {s:?}: missing port (e.g. 127.0.0.1:8080)");
    }
    Ok(rest.to_string())
}

async fn connect(
    t: &Target,
) -> anyhow::Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>> {
    let stream = tokio::time::timeout(t.timeout, TcpStream::connect(&t.authority))
        .await
        .map_err(|_| anyhow!("connecting to the API at {} timed out", t.authority))?
        .with_context(|| {
            format!(
                "cannot connect to the API at {} (is anypop running?)",
                t.authority
            )
        })?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("HTTP handshake with the API failed")?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// A request to the API; a POST always carries a JSON body (`{}` if none).
pub(super) fn build(
    t: &Target,
    method: Method,
    path: &str,
    body: Option<&impl Serialize>,
) -> anyhow::Result<Request<Full<Bytes>>> {
    let post = method == Method::POST;
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header(HOST, &t.authority)
        .header(ACCEPT, "application/json");
    if let Some(tok) = &t.token {
        b = b.header(AUTHORIZATION, format!("Bearer {tok}"));
    }
    let body = match body {
        Some(v) => Full::new(Bytes::from(serde_json::to_vec(v)?)),
        None if post => Full::new(Bytes::from_static(b"{}")),
        None => Full::new(Bytes::new()),
    };
    if post {
        b = b.header(CONTENT_TYPE, "application/json");
    }
    Ok(b.body(body)?)
}

/// One request, whole body. `Ok(Err(_))`: the API answered non-2xx.
pub(super) async fn call(
    t: &Target,
    method: Method,
    path: &str,
    body: Option<&impl Serialize>,
) -> anyhow::Result<Result<Bytes, Refused>> {
    let req = build(t, method, path, body)?;
    let fut = async {
        let mut sender = connect(t).await?;
        let resp = sender
            .send_request(req)
            .await
            .context("API request failed")?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .context("reading the API answer failed")?
            .to_bytes();
        anyhow::Ok(if status.is_success() {
            Ok(bytes)
        } else {
            Err(Refused {
                status,
                body: bytes,
            })
        })
    };
    tokio::time::timeout(t.timeout, fut).await.map_err(|_| {
        anyhow!(
            "the API at {} did not answer within {:?}",
            t.authority,
            t.timeout
        )
    })?
}

/// A GET without a body.
pub(super) async fn get(t: &Target, path: &str) -> anyhow::Result<Result<Bytes, Refused>> {
    call(t, Method::GET, path, None::<&()>).await
}

/// Opens `path` as an event stream: the response (any status).
pub(super) async fn open_stream(
    t: &Target,
    path: &str,
) -> anyhow::Result<hyper::Response<hyper::body::Incoming>> {
    let mut req = build(t, Method::GET, path, None::<&()>)?;
    req.headers_mut().insert(
        ACCEPT,
        hyper::header::HeaderValue::from_static("text/event-stream"),
    );
    let resp = async {
        let mut sender = connect(t).await?;
        sender.send_request(req).await.context("API request failed")
    };
    tokio::time::timeout(t.timeout, resp).await.map_err(|_| {
        anyhow!(
            "the API at {} did not answer within {:?}",
            t.authority,
            t.timeout
        )
    })?
}

/// Percent-encodes a path segment or query value.
pub(super) fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// One Server-Sent Events message.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct SseMessage {
    pub(crate) id: Option<String>,
    pub(crate) event: Option<String>,
    pub(crate) data: String,
}

/// Incremental `text/event-stream` parser.
#[derive(Default)]
pub(crate) struct SseParser {
    buf: String,
    cur: SseMessage,
    has_data: bool,
}

impl SseParser {
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Vec<SseMessage> {
        self.buf.push_str(&String::from_utf8_lossy(bytes));
        let mut out = Vec::new();
        while let Some(nl) = self.buf.find('\n') {
            let line: String = self.buf.drain(..=nl).collect();
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if self.has_data {
                    out.push(std::mem::take(&mut self.cur));
                }
                self.cur = SseMessage::default();
                self.has_data = false;
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line, ""),
            };
            match field {
                "id" => self.cur.id = Some(value.to_string()),
                "event" => self.cur.event = Some(value.to_string()),
                "data" => {
                    if self.has_data {
                        self.cur.data.push('\n');
                    }
                    self.cur.data.push_str(value);
                    self.has_data = true;
                }
                _ => {}
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_addresses() {
        assert_eq!(parse_api("127.0.0.1:8080").expect("ok"), "127.0.0.1:8080");
        assert_eq!(parse_api("http://[::1]:9/").expect("ok"), "[::1]:9");
        assert_eq!(
            parse_api("http://localhost:8080").expect("ok"),
            "localhost:8080"
        );
        assert!(parse_api("https://x:1").is_err());
        assert!(parse_api("localhost").is_err());
        assert!(parse_api("http://x:1/v1").is_err());
    }

    #[test]
    fn sse_parser_handles_split_frames_and_comments() {
        let mut p = SseParser::default();
        assert!(p.push(b": keep-alive\n\nid: 3\nevent: drain_st").is_empty());
        let got = p.push(b"ep\ndata: {\"a\":1}\n\nid: 4\ndata: x\ndata: y\n\n");
        assert_eq!(
            got,
            vec![
                SseMessage {
                    id: Some("3".into()),
                    event: Some("drain_step".into()),
                    data: "{\"a\":1}".into()
                },
                SseMessage {
                    id: Some("4".into()),
                    event: None,
                    data: "x\ny".into()
                },
            ]
        );
    }

    #[test]
    fn posts_carry_a_json_body() {
        let t = Target {
            authority: "127.0.0.1:1".into(),
            token: Some("tok".into()),
            timeout: Duration::from_secs(1),
        };
        let r = build(&t, Method::POST, "/v1/reload", None::<&()>).expect("request");
        assert_eq!(r.headers()[CONTENT_TYPE], "application/json");
        assert_eq!(r.headers()[AUTHORIZATION], "Bearer tok");
        let r = build(&t, Method::GET, "/v1/state", None::<&()>).expect("request");
        assert!(r.headers().get(CONTENT_TYPE).is_none());
    }

    #[test]
    fn percent_encoding() {
        assert_eq!(enc("a b/c"), "a%20b%2Fc");
    }
}
