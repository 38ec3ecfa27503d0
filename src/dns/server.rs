//! Sockets and tasks of the DNS server.
//!
//! - One builder task turns every new snapshot (and every settle deadline)
//!   into a new [`State`] (plans + pre-encoded answers) and publishes it in a
//!   `watch` channel. Reloaded configs arrive inside the snapshot.
//! - One blocking thread per UDP listener: `recvfrom`, fast path or general
//!   path, `sendto`. It picks up a new state with one atomic load per query
//!   (`has_changed`) and takes no lock otherwise.
//! - One tokio task per TCP listener, one per connection (RFC 7766 framing,
//!   idle timeout, connection caps). Each message is decoded by
//!   hickory-server (`Request`) and answered by the general path through
//!   [`super::handler::GeneralHandler`], hickory-server's `RequestHandler`. A [`TcpPool`] caps
//!   connections per client ([`TCP_MAX_PER_CLIENT`]) and per listener
//!   ([`TCP_MAX_CONNECTIONS`]); when the listener is full, the connection
//!   idle for longest is closed to make room, so idle connections cannot
//!   lock out new clients.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use super::answer::{respond, Transport};
use super::fast;
use super::handler::{GeneralHandler, Outcome};
use super::rrl::{truncated_reply, RateLimiter, Verdict};
use super::state::State;
use super::stats::DnsStats;
use super::zone::{ZoneError, Zones};
use crate::core::Snapshot;
use crate::model::Config;

/// Idle time after which a TCP connection is closed.
pub const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Concurrent TCP connections per listener. When full, a new connection
/// closes the one idle for longest.
pub const TCP_MAX_CONNECTIONS: usize = 256;
/// Concurrent TCP connections per client (IPv4 address or IPv6 /64) and
/// listener; a client's connection beyond it is closed at once.
pub const TCP_MAX_PER_CLIENT: usize = 16;
/// Socket receive buffer asked for on UDP listeners (bursts).
const UDP_RECV_BUFFER: usize = 4 << 20;
/// How often an idle UDP thread checks for shutdown.
const UDP_POLL: Duration = Duration::from_millis(250);

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("dns: cannot listen on {proto} {addr}: {source}")]
    Bind {
        proto: &'static str,
        addr: SocketAddr,
        source: io::Error,
    },
    #[error("dns: {0}")]
    Zone(#[from] ZoneError),
    #[error("dns: {0}")]
    Io(#[from] io::Error),
}

/// A running DNS server. Dropping it stops the listeners.
pub struct DnsServer {
    udp: Vec<SocketAddr>,
    tcp: Vec<SocketAddr>,
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl DnsServer {
    /// Bound UDP addresses (real ports when configured with port 0).
    pub fn udp_addrs(&self) -> &[SocketAddr] {
        &self.udp
    }

    /// Bound TCP addresses.
    pub fn tcp_addrs(&self) -> &[SocketAddr] {
        &self.tcp
    }

    /// Stops the listeners and waits for the UDP threads to exit.
    pub fn shutdown(mut self) {
        self.stop_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }

    fn stop_all(&mut self) {
        self.stop.store(true, Relaxed);
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop_all();
    }
}

fn bind_udp(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    let _ = s.set_recv_buffer_size(UDP_RECV_BUFFER);
    s.bind(&addr.into())?;
    s.set_read_timeout(Some(UDP_POLL))?;
    Ok(s.into())
}

fn bind_tcp(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
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

/// Starts the DNS server: binds every `config.dns.listen` address over UDP
/// and TCP (a port 0 listener gets the same port for both) and answers from
/// the latest snapshot. Zone data comes from `snapshot.config`, so a config
/// reload needs no call here; changed listen addresses need a restart.
/// Must be called inside a tokio runtime.
pub async fn serve(
    config: Arc<Config>,
    mut snapshots: watch::Receiver<Arc<Snapshot>>,
    stats: Arc<DnsStats>,
) -> Result<DnsServer, DnsError> {
    let snap = snapshots.borrow_and_update().clone();
    let zones = Arc::new(Zones::compile(&snap.config)?);
    let state = State::build(&snap, zones.clone(), Instant::now(), Some(&stats), None);
    log_fail_open(None, &state, &stats);
    let (state_tx, state_rx) = watch::channel(Arc::new(state));

    let stop = Arc::new(AtomicBool::new(false));
    let mut server = DnsServer {
        udp: Vec::new(),
        tcp: Vec::new(),
        stop: stop.clone(),
        tasks: Vec::new(),
        threads: Vec::new(),
    };
    for &addr in &config.dns.listen {
        let udp = bind_udp(addr).map_err(|source| DnsError::Bind {
            proto: "udp",
            addr,
            source,
        })?;
        let udp_addr = udp.local_addr()?;
        let tcp_addr = if addr.port() == 0 { udp_addr } else { addr };
        let tcp = bind_tcp(tcp_addr).map_err(|source| DnsError::Bind {
            proto: "tcp",
            addr: tcp_addr,
            source,
        })?;
        let tcp = TcpListener::from_std(tcp)?;
        server.tcp.push(tcp.local_addr()?);
        server.udp.push(udp_addr);
        info!(%udp_addr, "dns listening (udp, tcp)");

        let (rx, st, stp) = (state_rx.clone(), stats.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name(format!("dns-udp-{}", udp_addr.port()))
            .spawn(move || udp_loop(udp, rx, st, stp))?;
        server.threads.push(thread);
        server.tasks.push(tokio::spawn(tcp_accept(
            tcp,
            state_rx.clone(),
            stats.clone(),
        )));
    }

    let listen = config.dns.listen.clone();
    server.tasks.push(tokio::spawn(async move {
        let mut zones = zones;
        let mut config = snap.config.clone();
        loop {
            let deadline = state_tx.borrow().next_change;
            tokio::select! {
                r = snapshots.changed() => if r.is_err() { break },
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {}
            }
            let snap = snapshots.borrow_and_update().clone();
            if !Arc::ptr_eq(&snap.config, &config) {
                config = snap.config.clone();
                match Zones::compile(&config) {
                    Ok(z) => zones = Arc::new(z),
                    Err(e) => error!(error = %e, "dns: new zone data rejected, keeping the old zones"),
                }
                if config.dns.listen != listen {
                    warn!("dns: listen addresses changed; restart anypop to apply");
                }
            }
            let prev = state_tx.borrow().clone();
            let state = State::build(&snap, zones.clone(), Instant::now(), Some(&stats), Some(&prev));
            log_fail_open(Some(&prev), &state, &stats);
            debug!(version = state.version, fast = state.fast.len(), "dns: answers rebuilt");
            if state_tx.send(Arc::new(state)).is_err() {
                break;
            }
        }
    }));
    Ok(server)
}

/// Logs records that enter or leave fail-open, and counts the entries.
fn log_fail_open(old: Option<&State>, new: &State, stats: &DnsStats) {
    for (zi, zone) in new.zones.zones.iter().enumerate() {
        for (ri, rec) in zone.steered.iter().enumerate() {
            for plan in new
                .plans
                .get(zi)
                .and_then(|z| z.get(ri))
                .into_iter()
                .flatten()
            {
                let was = old.and_then(|o| {
                    let (z, r) = find_steered(o, &rec.name)?;
                    Some(o.plan(z, r, plan.family)?.fail_open.is_some())
                });
                match (&plan.fail_open, was) {
                    (Some(reason), None | Some(false)) => {
                        stats.fail_open_events.fetch_add(1, Relaxed);
                        warn!(record = %rec.name, family = ?plan.family, reason = %reason,
                            "dns: steering fails open, answering with all PoPs or the fallback");
                    }
                    (None, Some(true)) => {
                        info!(record = %rec.name, family = ?plan.family, "dns: steering no longer fails open");
                    }
                    _ => {}
                }
            }
        }
    }
}

fn find_steered(state: &State, name: &str) -> Option<(usize, usize)> {
    state.zones.zones.iter().enumerate().find_map(|(zi, z)| {
        z.steered
            .iter()
            .position(|r| r.name == name)
            .map(|ri| (zi, ri))
    })
}

fn udp_loop(
    sock: std::net::UdpSocket,
    mut states: watch::Receiver<Arc<State>>,
    stats: Arc<DnsStats>,
    stop: Arc<AtomicBool>,
) {
    let mut state = states.borrow_and_update().clone();
    let mut rrl = state.config.dns.rate_limit.map(RateLimiter::new);
    let mut buf = vec![0u8; 65_535];
    let mut out: Vec<u8> = Vec::with_capacity(4096);
    while !stop.load(Relaxed) {
        let (n, src) = match sock.recv_from(&mut buf) {
            Ok(x) => x,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(e) => {
                debug!(error = %e, "dns: udp receive error");
                continue;
            }
        };
        stats.queries_udp.fetch_add(1, Relaxed);
        if states.has_changed().unwrap_or(false) {
            state = states.borrow_and_update().clone();
            let want = state.config.dns.rate_limit;
            if rrl.as_ref().map(|r| *r.config()) != want {
                rrl = want.map(RateLimiter::new);
            }
        }
        let q = &buf[..n];
        let ip: IpAddr = src.ip().to_canonical();
        if let Some(limiter) = rrl.as_mut() {
            match limiter.check(ip, std::time::Instant::now()) {
                Verdict::Send => {}
                Verdict::Drop => {
                    stats.rate_limited.fetch_add(1, Relaxed);
                    continue;
                }
                Verdict::Slip => {
                    stats.rate_limit_slips.fetch_add(1, Relaxed);
                    if let Some(tc) = truncated_reply(q) {
                        let _ = sock.send_to(&tc, src);
                    }
                    continue;
                }
            }
        }
        let sent = if fast::try_answer(&state, &stats, q, ip, &mut out) {
            sock.send_to(&out, src)
        } else if let Some(resp) = respond(&state, &stats, q, ip, Transport::Udp) {
            sock.send_to(&resp, src)
        } else {
            continue;
        };
        if let Err(e) = sent {
            debug!(error = %e, %src, "dns: udp send error");
        }
    }
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

async fn tcp_accept(
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
