//! `http` / `https` probe: one `GET` over a fresh connection (HTTP/1.1,
//! hyper client), checking the status code and optionally that the first
//! [`BODY_LIMIT`] bytes of the body contain a substring.
//!
//! TLS uses rustls with the ring provider. Verified TLS trusts the system
//! CA bundle (`$SSL_CERT_FILE`, else the first of [`CA_BUNDLES`] that
//! exists), loaded once per process; `tls_insecure` accepts any certificate
//! (the handshake signature is still checked, so the peer holds the key of
//! the certificate it shows). SNI and the certificate name are the `Host`
//! header's host (default: the target host).

use std::fmt;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::header::{CONNECTION, HOST, USER_AGENT};
use hyper::Request;
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_rustls::TlsConnector;

use super::{AbortOnDrop, Probed};
use crate::model::{HostPort, Probe};

/// How much of the body is read to look for `body_contains`.
pub const BODY_LIMIT: usize = 64 * 1024;

/// CA bundles tried in order when `$SSL_CERT_FILE` is not set.
pub const CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

const UA: &str = concat!("anypop/", env!("CARGO_PKG_VERSION"), " health-check");

/// A prepared HTTP(S) check.
pub struct HttpTarget {
    target: HostPort,
    path: String,
    host_header: String,
    expect_status: Vec<u16>,
    body_contains: Option<String>,
    /// `None`: plain HTTP. `Some(Err)`: TLS wanted but cannot be set up.
    tls: Option<Result<(TlsConnector, ServerName<'static>), String>>,
}

impl fmt::Debug for HttpTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpTarget")
            .field("target", &self.target)
            .field("path", &self.path)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl HttpTarget {
    /// Prepares an HTTP check from a [`Probe::Http`]; any other probe kind
    /// gives a target whose every probe fails (a caller bug, not input).
    pub fn new(probe: &Probe) -> HttpTarget {
        Self::with_roots(probe, system_roots)
    }

    /// Like [`HttpTarget::new`], trusting the roots `roots` returns (only
    /// called for verified TLS).
    fn with_roots(
        probe: &Probe,
        roots: impl FnOnce() -> Result<Arc<RootCertStore>, String>,
    ) -> HttpTarget {
        let Probe::Http {
            tls,
            target,
            path,
            host_header,
            expect_status,
            body_contains,
            tls_insecure,
        } = probe
        else {
            return HttpTarget {
                target: HostPort {
                    host: String::new(),
                    port: 0,
                },
                path: String::new(),
                host_header: String::new(),
                expect_status: Vec::new(),
                body_contains: None,
                tls: Some(Err("not an http probe".into())),
            };
        };
        let default_port = if *tls { 443 } else { 80 };
        let host_header = match host_header {
            Some(h) => h.clone(),
            None => {
                let host = if target.host.contains(':') {
                    format!("[{}]", target.host)
                } else {
                    target.host.clone()
                };
                if target.port == default_port {
                    host
                } else {
                    format!("{host}:{}", target.port)
                }
            }
        };
        let tls = tls.then(|| {
            let sni = match host_header.as_str() {
                "" => target.host.as_str(),
                h => strip_port(h),
            };
            let name = ServerName::try_from(sni.to_string())
                .map_err(|e| format!("tls: {sni:?} is not a valid server name: {e}"))?;
            let config = client_config(*tls_insecure, roots)?;
            Ok((TlsConnector::from(config), name))
        });
        HttpTarget {
            target: target.clone(),
            path: if path.starts_with('/') {
                path.clone()
            } else {
                format!("/{path}")
            },
            host_header,
            expect_status: expect_status.clone(),
            body_contains: body_contains.clone(),
            tls,
        }
    }

    /// One GET. Success detail: `status 200` (plus the body match).
    pub async fn probe(&self) -> Probed {
        if let Some(Err(e)) = &self.tls {
            return Err(e.clone());
        }
        let stream = super::tcp::connect(&self.target).await?;
        match &self.tls {
            None => self.exchange(TokioIo::new(stream)).await,
            Some(Err(e)) => Err(e.clone()),
            Some(Ok((connector, name))) => {
                let tls = connector
                    .connect(name.clone(), stream)
                    .await
                    .map_err(|e| format!("tls: {e}"))?;
                self.exchange(TokioIo::new(tls)).await
            }
        }
    }

    async fn exchange<T>(&self, io: T) -> Probed
    where
        T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let (mut sender, conn) = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(io)
            .await
            .map_err(|e| format!("http: {e}"))?;
        let _conn = AbortOnDrop(tokio::spawn(conn));
        let req = Request::get(self.path.as_str())
            .header(HOST, self.host_header.as_str())
            .header(USER_AGENT, UA)
            .header(CONNECTION, "close")
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("bad request ({:?}): {e}", self.path))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("http: {e}"))?;
        let status = resp.status().as_u16();
        if !status_ok(&self.expect_status, status) {
            return Err(format!(
                "status {status} (expected {})",
                expected_text(&self.expect_status)
            ));
        }
        let Some(needle) = &self.body_contains else {
            return Ok(format!("status {status}"));
        };
        let mut body = resp.into_body();
        let mut buf: Vec<u8> = Vec::new();
        while buf.len() < BODY_LIMIT {
            match body.frame().await {
                None => break,
                Some(Err(e)) => return Err(format!("status {status}, reading body: {e}")),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        let room = BODY_LIMIT - buf.len();
                        buf.extend_from_slice(&data[..data.len().min(room)]);
                        if contains(&buf, needle.as_bytes()) {
                            return Ok(format!("status {status}, body contains {needle:?}"));
                        }
                    }
                }
            }
        }
        if contains(&buf, needle.as_bytes()) {
            Ok(format!("status {status}, body contains {needle:?}"))
        } else {
            Err(format!("body does not contain {needle:?}"))
        }
    }
}

/// `host:port` → `host`, `[v6]:port` → `v6`, anything else unchanged.
fn strip_port(h: &str) -> &str {
    if let Some(rest) = h.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match h.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.parse::<u16>().is_ok() => host,
        _ => h,
    }
}

/// Empty `expect` means any 2xx or 3xx.
fn status_ok(expect: &[u16], status: u16) -> bool {
    if expect.is_empty() {
        (200..400).contains(&status)
    } else {
        expect.contains(&status)
    }
}

fn expected_text(expect: &[u16]) -> String {
    if expect.is_empty() {
        "2xx or 3xx".into()
    } else {
        expect
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(" or ")
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn client_config(
    insecure: bool,
    roots: impl FnOnce() -> Result<Arc<RootCertStore>, String>,
) -> Result<Arc<ClientConfig>, String> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?;
    let config = if insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
            .with_no_client_auth()
    } else {
        builder
            .with_root_certificates(roots()?)
            .with_no_client_auth()
    };
    Ok(Arc::new(config))
}

/// The rustls client config of a verified https client: trusting the CA
/// certificates of `ca` (read with the config), or the system CA bundle.
pub(crate) fn tls_config(ca: Option<&crate::model::CaFile>) -> Result<Arc<ClientConfig>, String> {
    client_config(false, || match ca {
        None => system_roots(),
        Some(ca) => {
            let mut store = RootCertStore::empty();
            let (added, _ignored) = store.add_parsable_certificates(ca.certs.iter().cloned());
            if added == 0 {
                return Err(format!(
                    "tls: no usable CA certificates in {}",
                    ca.path.display()
                ));
            }
            Ok(Arc::new(store))
        }
    })
}

/// The system CA bundle, loaded once.
fn system_roots() -> Result<Arc<RootCertStore>, String> {
    static ROOTS: OnceLock<Result<Arc<RootCertStore>, String>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let candidates: Vec<String> = match std::env::var("SSL_CERT_FILE") {
                Ok(f) if !f.is_empty() => vec![f],
                _ => CA_BUNDLES.iter().map(|s| s.to_string()).collect(),
            };
            let Some(path) = candidates.iter().find(|p| std::path::Path::new(p).exists()) else {
                return Err(format!(
                    "tls: no CA bundle found (tried {}); set SSL_CERT_FILE or use tls_insecure",
                    candidates.join(", ")
                ));
            };
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("tls: reading {path}: {e}"))?
                .filter_map(Result::ok);
            let mut store = RootCertStore::empty();
            let (added, _ignored) = store.add_parsable_certificates(certs);
            if added == 0 {
                return Err(format!("tls: no usable CA certificates in {path}"));
            }
            Ok(Arc::new(store))
        })
        .clone()
}

/// `tls_insecure`: accepts any certificate for any name, but still checks
/// that the handshake is signed by the certificate's key.
#[derive(Debug)]
struct AcceptAnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::sync::mpsc;

    use crate::health::Target;

    fn http(port: u16, expect: &[u16], body: Option<&str>, host_header: Option<&str>) -> Target {
        Target::new(&Probe::Http {
            tls: false,
            target: HostPort {
                host: "127.0.0.1".into(),
                port,
            },
            path: "/health".into(),
            host_header: host_header.map(str::to_string),
            expect_status: expect.to_vec(),
            body_contains: body.map(str::to_string),
            tls_insecure: false,
        })
    }

    /// A tiny HTTP server: answers every connection with `response` after
    /// reading the request head, and reports the request head it got.
    async fn serve(response: &'static str) -> (u16, mpsc::UnboundedReceiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                let tx = tx.clone();
                tokio::spawn(async move {
                    let head = read_head(&mut s).await;
                    let _ = tx.send(head);
                    let _ = s.write_all(response.as_bytes()).await;
                    let _ = s.shutdown().await;
                });
            }
        });
        (port, rx)
    }

    async fn read_head<S: AsyncReadExt + Unpin>(s: &mut S) -> String {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        String::from_utf8_lossy(&buf).into_owned()
    }

    const OK_BODY: &str =
        "HTTP/1.1 200 OK\r\nContent-Length: 15\r\nConnection: close\r\n\r\nstatus: ok, fine";
    const UNAVAILABLE: &str =
        "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\nConnection: close\r\n\r\ndown";

    #[tokio::test]
    async fn status_200_with_body() {
        let (port, mut heads) = serve(OK_BODY).await;
        let out = http(port, &[200], Some("ok"), None)
            .run(Duration::from_secs(2))
            .await;
        assert!(out.ok, "{out:?}");
        assert_eq!(out.detail, "status 200, body contains \"ok\"");
        let head = heads.recv().await.unwrap();
        assert!(head.starts_with("GET /health HTTP/1.1\r\n"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains(&format!("host: 127.0.0.1:{port}\r\n")),
            "{head}"
        );

        let out = http(port, &[200], Some("healthy"), None)
            .run(Duration::from_secs(2))
            .await;
        assert!(!out.ok);
        assert_eq!(out.detail, "body does not contain \"healthy\"");
    }

    #[tokio::test]
    async fn host_header_is_sent() {
        let (port, mut heads) = serve(OK_BODY).await;
        let out = http(port, &[200], None, Some("www.example.net"))
            .run(Duration::from_secs(2))
            .await;
        assert!(out.ok, "{out:?}");
        assert_eq!(out.detail, "status 200");
        let head = heads.recv().await.unwrap().to_ascii_lowercase();
        assert!(head.contains("host: www.example.net\r\n"), "{head}");
    }

    #[tokio::test]
    async fn status_503_is_a_failure() {
        let (port, _heads) = serve(UNAVAILABLE).await;
        let out = http(port, &[200], None, None)
            .run(Duration::from_secs(2))
            .await;
        assert!(!out.ok);
        assert_eq!(out.detail, "status 503 (expected 200)");
        // 503 accepted when listed.
        let out = http(port, &[200, 503], None, None)
            .run(Duration::from_secs(2))
            .await;
        assert!(out.ok, "{out:?}");
    }

    #[tokio::test]
    async fn silent_server_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        // Accepts and reads, never answers.
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let out = http(port, &[200], None, None)
            .run(Duration::from_millis(300))
            .await;
        assert!(!out.ok);
        assert_eq!(out.detail, "timeout after 300ms");
    }

    #[tokio::test]
    async fn refused() {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            l.local_addr().unwrap().port()
        };
        let out = http(port, &[200], None, None)
            .run(Duration::from_secs(2))
            .await;
        assert!(!out.ok);
        assert_eq!(out.detail, "connect refused");
    }

    #[tokio::test]
    async fn garbage_reply_is_a_failure_not_a_panic() {
        let (port, _heads) = serve("SSH-2.0-OpenSSH_9.2\r\n\r\n").await;
        let out = http(port, &[200], None, None)
            .run(Duration::from_secs(2))
            .await;
        assert!(!out.ok);
        assert!(out.detail.starts_with("http: "), "{}", out.detail);
    }

    // A self-signed certificate for localhost / 127.0.0.1 (P-256, valid
    // until 2126), made with openssl for these tests only.
    const CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBvzCCAWWgAwIBAgIUZfcsOjoyH9ldLqnvqO2J+LmpyXcwCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJbG9jYWxob3N0MCAXDTI2MTEyMzA5MjIwOVoYDzIxMjYxMDMw
MDkyMjA5WjAUMRIwEAYDVQQDDAlsb2NhbGhvc3QwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAAQvz0p3XkJdhXXX5pL8L7R8tFXkzUn7mOSzBwnIdc1W4/OohtIz3ruB
Z2jUhQBHAYUwr87a2A00gQC83IhlCi8Yo4GSMIGPMB0GA1UdDgQWBBQJFIGHCzTU
f8xFjLoxXFU3WiLM9DAfBgNVHSMEGDAWgBQJFIGHCzTUf8xFjLoxXFU3WiLM9DAa
BgNVHREEEzARgglsb2NhbGhvc3SHBH8AAAEwDAYDVR0TAQH/BAIwADAOBgNVHQ8B
Af8EBAMCB4AwEwYDVR0lBAwwCgYIKwYBBQUHAwEwCgYIKoZIzj0EAwIDSAAwRQIg
GepyIo7Y803gCFVo9qr5entq0ZWTBgnUeobTVtJLA9YCIQCRl3e5oPHoGiSqg7mA
2OPBb/XDR0iDRsdABbGXZbRnww==
-----END CERTIFICATE-----
";
    const KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgkQOA0GQUaVBUu6Lv
3eJPM9765wa8aMc9PPmTYfVdUxWhRANCAAQvz0p3XkJdhXXX5pL8L7R8tFXkzUn7
mOSzBwnIdc1W4/OohtIz3ruBZ2jUhQBHAYUwr87a2A00gQC83IhlCi8Y
-----END PRIVATE KEY-----
";

    /// A tiny HTTPS server with the certificate above, answering `OK_BODY`.
    async fn serve_tls() -> u16 {
        use rustls::pki_types::PrivateKeyDer;
        let cert = CertificateDer::from_pem_slice(CERT.as_bytes()).unwrap();
        let key = PrivateKeyDer::from_pem_slice(KEY.as_bytes()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(s).await else {
                        return;
                    };
                    read_head(&mut tls).await;
                    let _ = tls.write_all(OK_BODY.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        port
    }

    fn https(port: u16, host_header: Option<&str>, insecure: bool) -> Probe {
        Probe::Http {
            tls: true,
            target: HostPort {
                host: "127.0.0.1".into(),
                port,
            },
            path: "/".into(),
            host_header: host_header.map(str::to_string),
            expect_status: vec![200],
            body_contains: Some("ok".into()),
            tls_insecure: insecure,
        }
    }

    fn test_roots() -> Result<Arc<RootCertStore>, String> {
        let mut store = RootCertStore::empty();
        store
            .add(CertificateDer::from_pem_slice(CERT.as_bytes()).unwrap())
            .unwrap();
        Ok(Arc::new(store))
    }

    #[tokio::test]
    async fn https_insecure_accepts_a_self_signed_certificate() {
        let port = serve_tls().await;
        let out = Target::new(&https(port, Some("anything.example"), true))
            .run(Duration::from_secs(2))
            .await;
        assert!(out.ok, "{out:?}");
        assert_eq!(out.detail, "status 200, body contains \"ok\"");
    }

    #[tokio::test]
    async fn https_verified_checks_issuer_and_name() {
        let port = serve_tls().await;
        // Untrusted issuer (system roots): refused.
        let out = Target::new(&https(port, None, false))
            .run(Duration::from_secs(2))
            .await;
        assert!(!out.ok);
        assert!(out.detail.starts_with("tls: "), "{}", out.detail);

        // Trusted, and the certificate names 127.0.0.1 and localhost.
        for host in [None, Some("localhost")] {
            let t = HttpTarget::with_roots(&https(port, host, false), test_roots);
            let out = crate::health::timed(Duration::from_secs(2), t.probe()).await;
            assert!(out.ok, "{host:?}: {out:?}");
        }
        // Trusted issuer but another name: refused.
        let t = HttpTarget::with_roots(&https(port, Some("www.example.net"), false), test_roots);
        let out = crate::health::timed(Duration::from_secs(2), t.probe()).await;
        assert!(!out.ok);
        assert!(
            out.detail.starts_with("tls: invalid peer certificate"),
            "{}",
            out.detail
        );
    }

    #[test]
    fn helpers() {
        assert_eq!(strip_port("example.net:8443"), "example.net");
        assert_eq!(strip_port("example.net"), "example.net");
        assert_eq!(strip_port("[2001:db8::1]:443"), "2001:db8::1");
        assert_eq!(strip_port("2001:db8::1"), "2001:db8::1");
        assert!(status_ok(&[], 301));
        assert!(!status_ok(&[], 404));
        assert!(status_ok(&[204], 204));
        assert_eq!(expected_text(&[200, 204]), "200 or 204");
        assert!(contains(b"abc ok def", b"ok"));
        assert!(!contains(b"abc", b"abcd"));
    }
}
