//! The TCP listener: one tokio task per listener accepting connections,
//! one per connection (RFC 7766 framing, idle timeout, connection caps).
//! Each message is decoded by hickory-server (`Request`) and answered by
//! the general path through [`super::handler::GeneralHandler`],
//! hickory-server's `RequestHandler`. A [`TcpPool`] caps connections per
//! client ([`TCP_MAX_PER_CLIENT`]) and per listener
//! ([`TCP_MAX_CONNECTIONS`]); when the listener is full, the connection
//! idle for longest is closed to make room, so idle connections cannot
//! lock out new clients.
//!
//! It owns TCP sockets, framing and connection limits; it must not decide
//! answers (that is [`super::answer`]).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tracing::debug;

use super::answer::{respond, Transport};
use super::handler::{GeneralHandler, Outcome};
use super::state::State;
use super::stats::DnsStats;

/// Idle time after which a TCP connection is closed.
pub const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Concurrent TCP connections per listener. When full, a new connection
/// closes the one idle for longest.
pub const TCP_MAX_CONNECTIONS: usize = 256;
/// Concurrent TCP connections per client (IPv4 address or IPv6 /64) and
/// listener; a client's connection beyond it is closed at once.
pub const TCP_MAX_PER_CLIENT: usize = 16;

pub(super) fn bind_tcp(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_address(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

/// Connection limits of one TCP listener.
#[derive(Debug, Clone, Copy)]
pub struct TcpLimits {
    pub max_connections: usize,
    pub max_per_client: usize,
}

impl Default for TcpLimits {
    fn default() -> Self {
        TcpLimits {
            max_connections: TCP_MAX_CONNECTIONS,
            max_per_client: TCP_MAX_PER_CLIENT,
        }
    }
}

/// The key connections are counted under: the IPv4 address, or the IPv6 /64
/// (one host usually owns a whole /64).
fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 => v4,
    }
}

struct PoolConn {
    client: IpAddr,
    last_active: std::time::Instant,
    close: Arc<Notify>,
}

#[derive(Default)]
struct PoolInner {
    next_id: u64,
    conns: HashMap<u64, PoolConn>,
    per_client: HashMap<IpAddr, usize>,
}

impl PoolInner {
    fn remove(&mut self, id: u64) -> Option<PoolConn> {
        let c = self.conns.remove(&id)?;
        if let Some(n) = self.per_client.get_mut(&c.client) {
            *n -= 1;
            if *n == 0 {
                self.per_client.remove(&c.client);
            }
        }
        Some(c)
    }
}

/// The open TCP connections of one listener.
pub struct TcpPool {
    limits: TcpLimits,
    inner: Mutex<PoolInner>,
}

/// Why a new connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// The client already has `max_per_client` connections.
    PerClient,
}

/// A connection's place in the pool; leaving it frees the place.
pub struct PoolTicket {
    pool: Arc<TcpPool>,
    id: u64,
    /// Notified when the pool evicts this connection.
    pub close: Arc<Notify>,
}

impl TcpPool {
    pub fn new(limits: TcpLimits) -> Arc<TcpPool> {
        Arc::new(TcpPool {
            limits,
            inner: Mutex::new(PoolInner::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PoolInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admits a connection from `ip`: refused if the client is at its
    /// limit; if the listener is full, the connection idle for longest is
    /// told to close and removed from the count.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<PoolTicket, Rejected> {
        let client = client_key(ip);
        let mut p = self.lock();
        if p.per_client.get(&client).copied().unwrap_or(0) >= self.limits.max_per_client {
            return Err(Rejected::PerClient);
        }
        while p.conns.len() >= self.limits.max_connections.max(1) {
            let Some(oldest) = p
                .conns
                .iter()
                .min_by_key(|(id, c)| (c.last_active, **id))
                .map(|(id, _)| *id)
            else {
                break;
            };
            if let Some(c) = p.remove(oldest) {
                debug!(client = %c.client, "dns: tcp listener full, closing the longest idle connection");
                c.close.notify_one();
            }
        }
        let id = p.next_id;
        p.next_id += 1;
        let close = Arc::new(Notify::new());
        p.conns.insert(
            id,
            PoolConn {
                client,
                last_active: std::time::Instant::now(),
                close: close.clone(),
            },
        );
        *p.per_client.entry(client).or_insert(0) += 1;
        Ok(PoolTicket {
            pool: self.clone(),
            id,
            close,
        })
    }

    /// Open connections counted.
    pub fn len(&self) -> usize {
        self.lock().conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl PoolTicket {
    /// Marks the connection active now (it is not idle).
    pub fn touch(&self) {
        if let Some(c) = self.pool.lock().conns.get_mut(&self.id) {
            c.last_active = std::time::Instant::now();
        }
    }
}

impl Drop for PoolTicket {
    fn drop(&mut self) {
        self.pool.lock().remove(self.id);
    }
}

pub(super) async fn tcp_accept(
    listener: TcpListener,
    states: watch::Receiver<Arc<State>>,
    stats: Arc<DnsStats>,
) {
    let pool = TcpPool::new(TcpLimits::default());
    loop {
        let (conn, src) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                debug!(error = %e, "dns: tcp accept error");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let ticket = match pool.admit(src.ip()) {
            Ok(t) => t,
            Err(Rejected::PerClient) => {
                debug!(%src, "dns: too many tcp connections from this client, closing");
                continue;
            }
        };
        let (states, stats) = (states.clone(), stats.clone());
        tokio::spawn(async move {
            if let Err(e) = tcp_conn(conn, src, states, stats, &ticket).await {
                debug!(error = %e, %src, "dns: tcp connection ended");
            }
            drop(ticket);
        });
    }
}

async fn tcp_conn(
    mut conn: TcpStream,
    src: SocketAddr,
    states: watch::Receiver<Arc<State>>,
    stats: Arc<DnsStats>,
    ticket: &PoolTicket,
) -> io::Result<()> {
    let ip = src.ip().to_canonical();
    let handler = GeneralHandler::new(states.clone(), stats.clone());
    let mut buf = vec![0u8; 65_535];
    loop {
        let len = tokio::select! {
            r = tokio::time::timeout(TCP_IDLE_TIMEOUT, conn.read_u16()) => match r {
                Ok(Ok(l)) => l as usize,
                Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(()),
            },
            // Evicted for a newcomer while idle (or right after answering).
            _ = ticket.close.notified() => return Ok(()),
        };
        ticket.touch();
        tokio::time::timeout(TCP_IDLE_TIMEOUT, conn.read_exact(&mut buf[..len]))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "tcp read timeout"))??;
        stats.queries_tcp.fetch_add(1, Relaxed);
        // hickory-server decodes the request and the general path answers
        // it through its RequestHandler; what it cannot decode gets the
        // general path's own FORMERR-or-drop handling.
        let resp = match handler.answer_bytes(buf[..len].to_vec(), src).await {
            Outcome::Answer(b) => b,
            Outcome::Drop => return Ok(()),
            Outcome::Undecodable => {
                let state = states.borrow().clone();
                match respond(&state, &stats, &buf[..len], ip, Transport::Tcp) {
                    Some(r) => r,
                    None => return Ok(()),
                }
            }
        };
        let mut framed = Vec::with_capacity(resp.len() + 2);
        framed.extend_from_slice(&(resp.len() as u16).to_be_bytes());
        framed.extend_from_slice(&resp);
        conn.write_all(&framed).await?;
        ticket.touch();
    }
}
