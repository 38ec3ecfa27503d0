//! The UDP listener: one blocking thread per listen address running
//! `recvfrom`, response rate limiting, the fast path or the general path,
//! and `sendto`. It picks up a new [`State`] with one atomic load per query
//! (`has_changed`) and takes no lock otherwise.
//!
//! It owns the UDP sockets and their loop; it must not decide answers
//! (that is [`super::fast`] and [`super::answer`]).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::watch;
use tracing::debug;

use super::answer::{respond, Transport};
use super::fast;
use super::rrl::{truncated_reply, Verdict};
use super::state::State;
use super::stats::DnsStats;

/// Socket receive buffer asked for on UDP listeners (bursts).
const UDP_RECV_BUFFER: usize = 4 << 20;
/// How often an idle UDP thread checks for shutdown.
const UDP_POLL: Duration = Duration::from_millis(250);

pub(super) fn bind_udp(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    let _ = s.set_recv_buffer_size(UDP_RECV_BUFFER);
    s.bind(&addr.into())?;
    s.set_read_timeout(Some(UDP_POLL))?;
    Ok(s.into())
}

pub(super) fn udp_loop(
    sock: std::net::UdpSocket,
    mut states: watch::Receiver<Arc<State>>,
    stats: Arc<DnsStats>,
    stop: Arc<AtomicBool>,
) {
    let mut state = states.borrow_and_update().clone();
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
        }
        let q = &buf[..n];
        let ip: IpAddr = src.ip().to_canonical();
        if let Some(limiter) = state.rrl.as_deref() {
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
