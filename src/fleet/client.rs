//! HTTP/1.1 requests to a peer's API (hyper client over a fresh
//! connection; https via rustls, trusting the certificates of the peer's
//! `ca_file` as the config read them, or the system CA bundle),
//! authenticated with the peer's token (its file read at every request),
//! every request bounded by a timeout. Used by the puller and by
//! forwarded admin calls.
//!
//! Owns no state beyond the TLS setup; it must not interpret answers
//! (the caller decides what a status or a body means).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{ACCEPT, AUTHORIZATION, CONNECTION, CONTENT_TYPE, HOST, USER_AGENT};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

use crate::health::AbortOnDrop;
use crate::model::{FleetPeer, HostPort};

/// Largest answer body read from a peer.
pub const MAX_ANSWER: usize = 4 * 1024 * 1024;

const UA: &str = concat!("anypop/", env!("CARGO_PKG_VERSION"), " fleet");

/// Why a request to a peer failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// No connection (refused, unreachable, TLS handshake, token file):
    /// nothing reached the peer.
    Connect(String),
    /// Connected, but no complete answer within the timeout: the peer may
    /// or may not have acted on the request.
    Timeout,
    /// The exchange failed after the request was sent.
    Exchange(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Connect(e) => write!(f, "{e}"),
            CallError::Timeout => write!(f, "timed out"),
            CallError::Exchange(e) => write!(f, "{e}"),
        }
    }
}

/// A peer's answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
}

/// Requests to one peer.
pub struct PeerClient {
    peer: FleetPeer,
    host_header: String,
    /// `None`: plain http. `Some(Err)`: https that cannot be set up.
    tls: Option<Result<(TlsConnector, ServerName<'static>), String>>,
}

impl std::fmt::Debug for PeerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerClient")
            .field("peer", &self.peer.name.as_str())
            .field("url", &self.peer.url.to_string())
            .finish()
    }
}

impl PeerClient {
    pub fn new(peer: &FleetPeer) -> PeerClient {
        let url = &peer.url;
        let host = if url.host.contains(':') {
            format!("[{}]", url.host)
        } else {
            url.host.clone()
        };
        let default_port = if url.tls { 443 } else { 80 };
        let host_header = if url.port == default_port {
            host
        } else {
            format!("{host}:{}", url.port)
        };
        let tls = url.tls.then(|| {
            let name = ServerName::try_from(url.host.clone())
                .map_err(|e| format!("tls: {:?} is not a valid server name: {e}", url.host))?;
            let config = crate::health::http::tls_config(peer.ca_file.as_ref())?;
            Ok((TlsConnector::from(config), name))
        });
        PeerClient {
            peer: peer.clone(),
            host_header,
            tls,
        }
    }

    pub fn peer(&self) -> &FleetPeer {
        &self.peer
    }

    /// A failed TLS handshake in words: with whom, why, and which CAs
    /// were trusted (what an operator checks first).
    fn tls_error(&self, e: &std::io::Error) -> String {
        let trusted = match &self.peer.ca_file {
            Some(f) => format!("the CAs in ca_file {}", f.path.display()),
            None => "the system CA bundle (no ca_file)".to_string(),
        };
        let unknown_issuer = e
            .get_ref()
            .and_then(|i| i.downcast_ref::<rustls::Error>())
            .is_some_and(|r| {
                matches!(
                    r,
                    rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
                )
            });
        let hint = if unknown_issuer {
            " (the certificate is not signed by a trusted CA)"
        } else {
            ""
        };
        format!(
            "tls handshake with {}:{} failed: {e}{hint}; trusted: {trusted}",
            self.peer.url.host, self.peer.url.port
        )
    }

    /// The peer's token from its `token_file`, read at every request so
    /// that a rotated token is used at once.
    async fn token(&self) -> Result<Option<String>, CallError> {
        let Some(path) = &self.peer.token_file else {
            return Ok(None);
        };
        let text = tokio::fs::read_to_string(path)
            .await
            .map_err(|e| CallError::Connect(format!("token file {}: {e}", path.display())))?;
        let token = text.trim();
        if token.is_empty() {
            return Err(CallError::Connect(format!(
                "token file {} is empty",
                path.display()
            )));
        }
        Ok(Some(token.to_string()))
    }

    /// One request: `method` on `path` (below the peer's base URL, with
    /// its query), with `headers` and a JSON `body`; connecting and the
    /// whole exchange bounded by `timeout`.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: Option<Bytes>,
        timeout: Duration,
    ) -> Result<Answer, CallError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let token = self.token().await?;
        let target = HostPort {
            host: self.peer.url.host.clone(),
            port: self.peer.url.port,
        };
        let stream =
            match tokio::time::timeout_at(deadline, crate::health::tcp::connect(&target)).await {
                Err(_) => return Err(CallError::Connect("connect timed out".into())),
                Ok(Err(e)) => return Err(CallError::Connect(e)),
                Ok(Ok(s)) => s,
            };
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.peer.url.base_path))
            .header(HOST, self.host_header.as_str())
            .header(USER_AGENT, UA)
            .header(ACCEPT, "application/json")
            .header(CONNECTION, "close");
        if let Some(t) = token {
            req = req.header(AUTHORIZATION, format!("Bearer {t}"));
        }
        if body.is_some() {
            req = req.header(CONTENT_TYPE, "application/json");
        }
        for (k, v) in headers {
            req = req.header(*k, v.as_str());
        }
        let req = req
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| CallError::Connect(format!("bad request {path:?}: {e}")))?;
        let fut = async {
            match &self.tls {
                None => exchange(TokioIo::new(stream), req).await,
                Some(Err(e)) => Err(CallError::Connect(e.clone())),
                Some(Ok((connector, name))) => {
                    let tls = connector
                        .connect(name.clone(), stream)
                        .await
                        .map_err(|e| CallError::Connect(self.tls_error(&e)))?;
                    exchange(TokioIo::new(tls), req).await
                }
            }
        };
        match tokio::time::timeout_at(deadline, fut).await {
            Err(_) => Err(CallError::Timeout),
            Ok(r) => r,
        }
    }
}

async fn exchange<T>(io: T, req: Request<Full<Bytes>>) -> Result<Answer, CallError>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake::<_, Full<Bytes>>(io)
        .await
        .map_err(|e| CallError::Connect(format!("http: {e}")))?;
    let _conn = AbortOnDrop(tokio::spawn(conn));
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| CallError::Exchange(format!("http: {e}")))?;
    let status = resp.status();
    let body = Limited::new(resp.into_body(), MAX_ANSWER)
        .collect()
        .await
        .map_err(|e| CallError::Exchange(format!("reading the answer: {e}")))?
        .to_bytes();
    Ok(Answer { status, body })
}

/// Shared clients, one per peer, rebuilt when the peer's entry changes.
pub type Clients = Arc<std::sync::Mutex<std::collections::BTreeMap<String, Arc<PeerClient>>>>;

/// The client for `peer`, from `cache` while its config is unchanged.
pub fn client_for(cache: &Clients, peer: &FleetPeer) -> Arc<PeerClient> {
    let Ok(mut map) = cache.lock() else {
        return Arc::new(PeerClient::new(peer));
    };
    match map.get(peer.name.as_str()) {
        Some(c) if c.peer == *peer => c.clone(),
        _ => {
            let c = Arc::new(PeerClient::new(peer));
            map.insert(peer.name.to_string(), c.clone());
            c
        }
    }
}
