//! Sockets and tasks of the DNS server, wired together.
//!
//! - One builder task turns every new snapshot (and every settle deadline)
//!   into a new [`State`] (plans + pre-encoded answers) and publishes it in a
//!   `watch` channel. Reloaded configs arrive inside the snapshot.
//! - Per listen address: the UDP workers ([`super::udp`], `dns.udp_workers`
//!   sockets sharing the address, one thread each) and the TCP listener
//!   ([`super::tcp`]), all reading that channel.
//!
//! It owns the server's lifetime (start, stop); answers are decided
//! elsewhere.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use super::state::State;
use super::stats::DnsStats;
use super::tcp::{bind_tcp, tcp_accept};
use super::udp;
use super::zone::{ZoneError, Zones};
use crate::core::Snapshot;
use crate::model::Config;

pub use super::tcp::{
    PoolTicket, Rejected, TcpLimits, TcpPool, TCP_IDLE_TIMEOUT, TCP_MAX_CONNECTIONS,
    TCP_MAX_PER_CLIENT, TCP_RECV_BUFFER, TCP_SEND_BUFFER, TCP_WRITE_TIMEOUT,
};

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

/// Starts the DNS server: binds every `config.dns.listen` address over UDP
/// and TCP (a port 0 listener gets the same port for both) and answers from
/// the latest snapshot. Zone data comes from `snapshot.config`, so a config
/// reload needs no call here; changed listen addresses need a restart.
/// Must be called inside a tokio runtime.
pub async fn serve(
    config: Arc<Config>,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    stats: Arc<DnsStats>,
) -> Result<DnsServer, DnsError> {
    serve_with(config, snapshots, stats, TcpLimits::default()).await
}

/// [`serve`] with other TCP limits than the defaults.
pub async fn serve_with(
    config: Arc<Config>,
    mut snapshots: watch::Receiver<Arc<Snapshot>>,
    stats: Arc<DnsStats>,
    tcp_limits: TcpLimits,
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
    let workers = config
        .dns
        .udp_workers
        .unwrap_or_else(udp::default_workers)
        .max(1);
    for &addr in &config.dns.listen {
        let bind_err = |proto, addr| {
            move |source| DnsError::Bind {
                proto,
                addr,
                source,
            }
        };
        // A fixed port: TCP first, so a port taken by another server fails
        // before our UDP sockets join a SO_REUSEPORT group on it. Port 0:
        // UDP first, TCP on the port it got; that port may already be used
        // by a TCP socket (a client's ephemeral port), so a few fresh UDP
        // ports are tried.
        let (udp, tcp) = if addr.port() == 0 {
            let mut attempt = 0;
            loop {
                let udp = udp::bind_udp(addr, workers).map_err(bind_err("udp", addr))?;
                let tcp_addr = udp[0].local_addr()?;
                match bind_tcp(tcp_addr, &tcp_limits) {
                    Ok(tcp) => break (udp, tcp),
                    Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && attempt < 16 => {
                        attempt += 1;
                    }
                    Err(e) => return Err(bind_err("tcp", tcp_addr)(e)),
                }
            }
        } else {
            let tcp = bind_tcp(addr, &tcp_limits).map_err(bind_err("tcp", addr))?;
            let udp = udp::bind_udp(addr, workers).map_err(bind_err("udp", addr))?;
            (udp, tcp)
        };
        let udp_addr = udp[0].local_addr()?;
        let tcp = TcpListener::from_std(tcp)?;
        server.tcp.push(tcp.local_addr()?);
        server.udp.push(udp_addr);
        info!(%udp_addr, udp_workers = udp.len(), "dns listening (udp, tcp)");

        for (i, sock) in udp.into_iter().enumerate() {
            let received = stats.udp_worker_counter(udp_addr, i);
            let (rx, st, stp) = (state_rx.clone(), stats.clone(), stop.clone());
            let thread = std::thread::Builder::new()
                .name(format!("dns-udp-{}-{i}", udp_addr.port()))
                .spawn(move || udp::udp_worker(sock, rx, st, received, stp))?;
            server.threads.push(thread);
        }
        server.tasks.push(tokio::spawn(tcp_accept(
            tcp,
            state_rx.clone(),
            stats.clone(),
            tcp_limits,
        )));
    }

    let (listen, workers) = (config.dns.listen.clone(), config.dns.udp_workers);
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
                if config.dns.udp_workers != workers {
                    warn!("dns: udp_workers changed; restart anypop to apply");
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
