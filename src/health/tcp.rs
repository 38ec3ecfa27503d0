//! `tcp` probe: a TCP connect to host:port. Also the connect step of the
//! `http` probe. Names are resolved with the system resolver
//! (`tokio::net::lookup_host`); every resolved address is tried in order.

use std::io;
use std::net::SocketAddr;

use tokio::net::TcpStream;

use super::Probed;
use crate::model::HostPort;

/// Connects and closes again. Success detail: `connected to <addr>`.
pub async fn probe(target: &HostPort) -> Probed {
    let stream = connect(target).await?;
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| target.to_string());
    Ok(format!("connected to {peer}"))
}

/// Resolves `target` and connects to the first address that accepts.
pub(crate) async fn connect(target: &HostPort) -> Result<TcpStream, String> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((target.host.as_str(), target.port))
        .await
        .map_err(|e| format!("resolve {}: {e}", target.host))?
        .collect();
    let mut last_err = None;
    for addr in &addrs {
        match TcpStream::connect(addr).await {
            Ok(s) => return Ok(s),
            Err(e) => last_err = Some(e),
        }
    }
    match last_err {
        Some(e) => Err(describe_connect_error(&e)),
        None => Err(format!("resolve {}: no addresses", target.host)),
    }
}

fn describe_connect_error(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connect refused".to_string(),
        io::ErrorKind::TimedOut => "connect timed out".to_string(),
        _ => format!("connect: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use crate::health::Target;
    use crate::model::Probe;

    fn tcp(port: u16) -> Target {
        Target::new(&Probe::Tcp {
            target: HostPort {
                host: "127.0.0.1".into(),
                port,
            },
        })
    }

    #[tokio::test]
    async fn up_and_refused() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let out = tcp(port).run(Duration::from_secs(2)).await;
        assert!(out.ok, "{out:?}");
        assert_eq!(out.detail, format!("connected to 127.0.0.1:{port}"));

        drop(listener);
        let out = tcp(port).run(Duration::from_secs(2)).await;
        assert!(!out.ok);
        assert_eq!(out.detail, "connect refused");
    }

    #[tokio::test]
    async fn names_are_resolved() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let t = Target::new(&Probe::Tcp {
            target: HostPort {
                host: "localhost".into(),
                port,
            },
        });
        // localhost may resolve to ::1 first (refused) and then 127.0.0.1.
        let out = t.run(Duration::from_secs(2)).await;
        assert!(out.ok, "{out:?}");
    }

    #[tokio::test]
    async fn unresolvable_name_fails_with_resolve_detail() {
        let t = Target::new(&Probe::Tcp {
            target: HostPort {
                host: "no-such-host.invalid".into(),
                port: 80,
            },
        });
        let out = t.run(Duration::from_secs(5)).await;
        assert!(!out.ok);
        assert!(
            out.detail.starts_with("resolve no-such-host.invalid")
                || out.detail.starts_with("timeout"),
            "{}",
            out.detail
        );
    }
}
