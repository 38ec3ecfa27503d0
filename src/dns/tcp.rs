//! The TCP listener: one tokio task per listener accepting connections,
//! one per connection (RFC 7766 framing). Each message is decoded by
//! hickory-server (`Request`) and answered by the general path through
//! [`super::handler::GeneralHandler`], hickory-server's `RequestHandler`.
//!
//! Every resource a client can hold is bounded ([`TcpLimits`]):
//! - time: a connection idle for [`TCP_IDLE_TIMEOUT`] is closed, and so is
//!   one whose answer cannot be written within [`TCP_WRITE_TIMEOUT`] (a
//!   client that pipelines queries and reads nothing);
//! - memory: the kernel buffers of each connection are capped
//!   ([`TCP_SEND_BUFFER`], [`TCP_RECV_BUFFER`]), the next query is read only
//!   after the previous answer was written, and a connection closed with
//!   answers still unsent is reset so the kernel drops them at once;
//! - connections: a [`TcpPool`] caps them per client
//!   ([`TCP_MAX_PER_CLIENT`]) and per listener ([`TCP_MAX_CONNECTIONS`]);
//!   when the listener is full, the connection idle for longest is closed
//!   to make room (also while its write is blocked), so neither idle nor
//!   stuck connections can lock out new clients.
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
/// Longest wait for an answer to be handed to the kernel: a client that
/// reads nothing for this long (its answers fill the send buffer) is closed.
pub const TCP_WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Kernel send buffer asked for per connection: bounds the answers queued
/// for a client that does not read (Linux doubles the value for its own
/// bookkeeping). Holds one answer of the largest size (64 KiB).
pub const TCP_SEND_BUFFER: usize = 64 << 10;
/// Kernel receive buffer asked for per connection: bounds the queries a
/// pipelining client can queue ahead of us.
pub const TCP_RECV_BUFFER: usize = 64 << 10;

/// Binds a TCP listener; accepted connections inherit its buffer sizes.
pub(super) fn bind_tcp(addr: SocketAddr, limits: &TcpLimits) -> io::Result<std::net::TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_address(true)?;
    // Before listen(): the receive buffer also sets the window scale.
    s.set_send_buffer_size(limits.send_buffer)?;
    s.set_recv_buffer_size(limits.recv_buffer)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

/// Limits of one TCP listener (defaults: the `TCP_*` constants).
#[derive(Debug, Clone, Copy)]
pub struct TcpLimits {
    pub max_connections: usize,
    pub max_per_client: usize,
    pub idle_timeout: Duration,
    pub write_timeout: Duration,
    /// Kernel send/receive buffer sizes asked for per connection (bytes).
    pub send_buffer: usize,
    pub recv_buffer: usize,
}

impl Default for TcpLimits {
    fn default() -> Self {
        TcpLimits {
            max_connections: TCP_MAX_CONNECTIONS,
            max_per_client: TCP_MAX_PER_CLIENT,
            idle_timeout: TCP_IDLE_TIMEOUT,
            write_timeout: TCP_WRITE_TIMEOUT,
            send_buffer: TCP_SEND_BUFFER,
            recv_buffer: TCP_RECV_BUFFER,
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

    /// Tells every connection to close (the listener stops).
    pub fn close_all(&self) {
        let mut p = self.lock();
        for (_, c) in p.conns.drain() {
            c.close.notify_one();
        }
        p.per_client.clear();
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

/// Closes the listener's connections when its accept task ends (the server
/// stops), so no connection task outlives it.
struct CloseAllOnDrop(Arc<TcpPool>);

impl Drop for CloseAllOnDrop {
    fn drop(&mut self) {
        self.0.close_all();
    }
}

/// Counts a connection task in the `tcp_connections` gauge while it lives.
struct Gauge(Arc<DnsStats>);

impl Gauge {
    fn new(stats: Arc<DnsStats>) -> Gauge {
        stats.tcp_connections.fetch_add(1, Relaxed);
        Gauge(stats)
    }
}

impl Drop for Gauge {
    fn drop(&mut self) {
        self.0.tcp_connections.fetch_sub(1, Relaxed);
    }
}

pub(super) async fn tcp_accept(
    listener: TcpListener,
    states: watch::Receiver<Arc<State>>,
    stats: Arc<DnsStats>,
    limits: TcpLimits,
) {
    let pool = TcpPool::new(limits);
    let _close_all = CloseAllOnDrop(pool.clone());
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
                stats.tcp_closed[3].fetch_add(1, Relaxed);
                debug!(%src, "dns: too many tcp connections from this client, closing");
                continue;
            }
        };
        let (states, stats) = (states.clone(), stats.clone());
        tokio::spawn(async move {
            let _gauge = Gauge::new(stats.clone());
            let end = tcp_conn(conn, src, states, stats.clone(), &ticket, &limits).await;
            let reason = match end {
                End::Idle => Some(0),
                End::WriteTimeout => Some(1),
                End::Evicted => Some(2),
                End::Client | End::Error(_) => None,
            };
            if let Some(i) = reason {
                stats.tcp_closed[i].fetch_add(1, Relaxed);
            }
            match &end {
                End::Error(e) => debug!(%src, error = %e, "dns: tcp connection failed"),
                _ => debug!(%src, ?end, "dns: tcp connection ended"),
            }
            drop(ticket);
        });
    }
}

/// Why a connection task ended.
#[derive(Debug)]
enum End {
    /// The client closed, or sent something that gets no answer.
    Client,
    Idle,
    WriteTimeout,
    /// Closed by the pool to make room (or because the listener stops).
    Evicted,
    Error(io::Error),
}

/// Closes a connection whose answers may be unsent with a reset: the kernel
/// drops its send queue at once instead of keeping it (orphaned, up to the
/// send buffer) while it keeps trying a client that does not read.
fn reset(conn: TcpStream) {
    if let Err(e) = conn.set_zero_linger() {
        debug!(error = %e, "dns: cannot set SO_LINGER 0 on a tcp connection");
    }
    drop(conn);
}

async fn tcp_conn(
    mut conn: TcpStream,
    src: SocketAddr,
    states: watch::Receiver<Arc<State>>,
    stats: Arc<DnsStats>,
    ticket: &PoolTicket,
    limits: &TcpLimits,
) -> End {
    let ip = src.ip().to_canonical();
    let handler = GeneralHandler::new(states.clone(), stats.clone());
    let mut buf = vec![0u8; 65_535];
    let mut framed = Vec::new();
    loop {
        // Every wait also listens for eviction, so a closed connection's
        // task ends whatever it is waiting for.
        let len = tokio::select! {
            r = tokio::time::timeout(limits.idle_timeout, conn.read_u16()) => match r {
                Ok(Ok(l)) => l as usize,
                Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => return End::Client,
                Ok(Err(e)) => return End::Error(e),
                Err(_) => return End::Idle,
            },
            _ = ticket.close.notified() => return End::Evicted,
        };
        ticket.touch();
        tokio::select! {
            r = tokio::time::timeout(limits.idle_timeout, conn.read_exact(&mut buf[..len])) => match r {
                Ok(Ok(_)) => {}
                Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => return End::Client,
                Ok(Err(e)) => return End::Error(e),
                Err(_) => return End::Idle,
            },
            _ = ticket.close.notified() => return End::Evicted,
        }
        stats.queries_tcp.fetch_add(1, Relaxed);
        // hickory-server decodes the request and the general path answers
        // it through its RequestHandler; what it cannot decode gets the
        // general path's own FORMERR-or-drop handling.
        let resp = match handler.answer_bytes(buf[..len].to_vec(), src).await {
            Outcome::Answer(b) => b,
            Outcome::Drop => return End::Client,
            Outcome::Undecodable => {
                let state = states.borrow().clone();
                match respond(&state, &stats, &buf[..len], ip, Transport::Tcp) {
                    Some(r) => r,
                    None => return End::Client,
                }
            }
        };
        framed.clear();
        framed.extend_from_slice(&(resp.len() as u16).to_be_bytes());
        framed.extend_from_slice(&resp);
        // The next query is read only once this answer is with the kernel,
        // so at most one answer per connection waits in our memory.
        let end = tokio::select! {
            r = tokio::time::timeout(limits.write_timeout, conn.write_all(&framed)) => match r {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(End::Error(e)),
                Err(_) => Some(End::WriteTimeout),
            },
            _ = ticket.close.notified() => Some(End::Evicted),
        };
        if let Some(end) = end {
            reset(conn);
            return end;
        }
        ticket.touch();
    }
}
