//! The UDP listener: per listen address a group of worker threads, each
//! with its own socket bound to the address with `SO_REUSEPORT`, so the
//! kernel spreads the datagrams over them (by source address and port) and
//! a node answers with every core. A worker receives up to [`UDP_BATCH`]
//! datagrams with one `recvmmsg`, answers each (response rate limiting, the
//! fast path or the general path) and sends the answers with one
//! `sendmmsg`. It picks up a new [`State`] with one atomic load per batch
//! (`has_changed`) and takes no lock otherwise (the rate limiter's shard
//! lock aside).
//!
//! It owns the UDP sockets and their loop; it must not decide answers
//! (that is [`super::fast`] and [`super::answer`]). The two syscalls and
//! reading a source address out of a `sockaddr_storage` are the only unsafe
//! code of the DNS server: every pointer handed to the kernel points into
//! buffers the worker owns and does not touch during the call.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::watch;
use tracing::debug;

use super::answer::{respond, Transport};
use super::fast;
use super::rrl::{truncated_reply, Verdict};
use super::state::State;
use super::stats::DnsStats;
use crate::model::MAX_UDP_WORKERS;

/// Datagrams received (and answers sent) per system call.
pub const UDP_BATCH: usize = 32;
/// Largest datagram read; a longer one (no DNS query is) is dropped.
const MAX_QUERY: usize = 4096;
/// Socket receive buffer asked for on UDP sockets (bursts).
const UDP_RECV_BUFFER: usize = 4 << 20;
/// How often an idle worker checks for shutdown.
const UDP_POLL: Duration = Duration::from_millis(250);

/// UDP workers per listener when the config does not say: one per core
/// this process may run on.
pub fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(MAX_UDP_WORKERS)
}

fn bind_one(addr: SocketAddr, reuse_port: bool) -> io::Result<std::net::UdpSocket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    if reuse_port {
        s.set_reuse_port(true)?;
    }
    let _ = s.set_recv_buffer_size(UDP_RECV_BUFFER);
    s.bind(&addr.into())?;
    s.set_read_timeout(Some(UDP_POLL))?;
    Ok(s.into())
}

/// Binds `workers` sockets to `addr` (a port 0 address gets one port for
/// all of them). With more than one worker they share the address through
/// `SO_REUSEPORT`.
pub(super) fn bind_udp(addr: SocketAddr, workers: usize) -> io::Result<Vec<std::net::UdpSocket>> {
    let reuse = workers > 1;
    let first = bind_one(addr, reuse)?;
    let bound = first.local_addr()?;
    let mut socks = vec![first];
    for _ in 1..workers {
        socks.push(bind_one(bound, true)?);
    }
    Ok(socks)
}

/// The source address of a received datagram.
fn source(addr: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = len as usize;
    match addr.ss_family as libc::c_int {
        libc::AF_INET if len >= size_of::<libc::sockaddr_in>() => {
            // SAFETY: the kernel wrote a sockaddr_in (family AF_INET, length
            // checked) into storage large and aligned enough for any address.
            let a =
                unsafe { &*(addr as *const libc::sockaddr_storage as *const libc::sockaddr_in) };
            Some(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr))),
                u16::from_be(a.sin_port),
            ))
        }
        libc::AF_INET6 if len >= size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for a sockaddr_in6.
            let a =
                unsafe { &*(addr as *const libc::sockaddr_storage as *const libc::sockaddr_in6) };
            Some(SocketAddr::new(
                IpAddr::V6(Ipv6Addr::from(a.sin6_addr.s6_addr)),
                u16::from_be(a.sin6_port),
            ))
        }
        _ => None,
    }
}

/// Points a message header at one address and one buffer (no control data).
fn point(
    h: &mut libc::mmsghdr,
    addr: &mut libc::sockaddr_storage,
    addr_len: libc::socklen_t,
    iov: &mut libc::iovec,
) {
    h.msg_hdr.msg_name = (addr as *mut libc::sockaddr_storage).cast();
    h.msg_hdr.msg_namelen = addr_len;
    h.msg_hdr.msg_iov = iov;
    h.msg_hdr.msg_iovlen = 1;
    h.msg_hdr.msg_control = std::ptr::null_mut();
    h.msg_hdr.msg_controllen = 0;
    h.msg_hdr.msg_flags = 0;
    h.msg_len = 0;
}

/// The buffers of one worker: received datagrams, their sources, the
/// answers, and the headers the two system calls read.
struct Batch {
    queries: Vec<u8>,
    sources: Vec<libc::sockaddr_storage>,
    recv_iov: Vec<libc::iovec>,
    recv: Vec<libc::mmsghdr>,
    answers: Vec<Vec<u8>>,
    /// Slots with an answer to send, in order.
    ready: Vec<usize>,
    send_iov: Vec<libc::iovec>,
    send: Vec<libc::mmsghdr>,
}

impl Batch {
    fn new() -> Batch {
        // SAFETY: sockaddr_storage, iovec and mmsghdr are plain C structs
        // for which all-zero bytes are a valid value.
        let (addr, iov, hdr) = unsafe {
            (
                zeroed::<libc::sockaddr_storage>(),
                zeroed::<libc::iovec>(),
                zeroed::<libc::mmsghdr>(),
            )
        };
        Batch {
            queries: vec![0; UDP_BATCH * MAX_QUERY],
            sources: vec![addr; UDP_BATCH],
            recv_iov: vec![iov; UDP_BATCH],
            recv: vec![hdr; UDP_BATCH],
            answers: (0..UDP_BATCH).map(|_| Vec::with_capacity(1232)).collect(),
            ready: Vec::with_capacity(UDP_BATCH),
            send_iov: vec![iov; UDP_BATCH],
            send: vec![hdr; UDP_BATCH],
        }
    }

    /// Waits for at least one datagram (up to the socket's read timeout)
    /// and takes all that are queued, up to [`UDP_BATCH`].
    fn receive(&mut self, fd: libc::c_int) -> io::Result<usize> {
        for i in 0..UDP_BATCH {
            self.recv_iov[i] = libc::iovec {
                iov_base: self.queries[i * MAX_QUERY..].as_mut_ptr().cast(),
                iov_len: MAX_QUERY,
            };
            point(
                &mut self.recv[i],
                &mut self.sources[i],
                size_of::<libc::sockaddr_storage>() as libc::socklen_t,
                &mut self.recv_iov[i],
            );
        }
        // SAFETY: every header points into `queries`, `sources` and
        // `recv_iov`, which live in `self` and are not touched until the
        // call returns; the kernel writes at most the lengths given.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.recv.as_mut_ptr(),
                UDP_BATCH as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// Sends the answers of the `ready` slots, each to its query's source.
    /// A datagram the kernel refuses is skipped (logged), not the rest.
    fn send_ready(&mut self, fd: libc::c_int) {
        let m = self.ready.len();
        for (k, &i) in self.ready.iter().enumerate() {
            self.send_iov[k] = libc::iovec {
                iov_base: self.answers[i].as_mut_ptr().cast(),
                iov_len: self.answers[i].len(),
            };
            let namelen = self.recv[i].msg_hdr.msg_namelen;
            point(
                &mut self.send[k],
                &mut self.sources[i],
                namelen,
                &mut self.send_iov[k],
            );
        }
        let mut start = 0;
        while start < m {
            // SAFETY: the headers point into `answers`, `sources` and
            // `send_iov`, owned by `self` and unchanged during the call.
            let r = unsafe {
                libc::sendmmsg(
                    fd,
                    self.send[start..].as_mut_ptr(),
                    (m - start) as libc::c_uint,
                    0,
                )
            };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                let to = source(
                    &self.sources[self.ready[start]],
                    self.send[start].msg_hdr.msg_namelen,
                );
                debug!(error = %e, ?to, "dns: udp send error");
                start += 1;
            } else if r == 0 {
                break;
            } else {
                start += r as usize;
            }
        }
    }
}

/// Decides what to send back for one query into `out`: nothing (`false`),
/// a rate-limited slip, the fast path's or the general path's answer.
fn answer(
    state: &State,
    stats: &DnsStats,
    now: Instant,
    q: &[u8],
    ip: IpAddr,
    out: &mut Vec<u8>,
) -> bool {
    if let Some(limiter) = state.rrl.as_deref() {
        match limiter.check(ip, now) {
            Verdict::Send => {}
            Verdict::Drop => {
                stats.rate_limited.fetch_add(1, Relaxed);
                return false;
            }
            Verdict::Slip => {
                stats.rate_limit_slips.fetch_add(1, Relaxed);
                return match truncated_reply(q) {
                    Some(tc) => {
                        *out = tc;
                        true
                    }
                    None => false,
                };
            }
        }
    }
    if fast::try_answer(state, stats, q, ip, out) {
        return true;
    }
    match respond(state, stats, q, ip, Transport::Udp) {
        Some(resp) => {
            *out = resp;
            true
        }
        None => false,
    }
}

/// One UDP worker: receive a batch, answer it, send the answers, until
/// `stop`. `received` counts the datagrams this worker got.
pub(super) fn udp_worker(
    sock: std::net::UdpSocket,
    mut states: watch::Receiver<Arc<State>>,
    stats: Arc<DnsStats>,
    received: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) {
    let fd = sock.as_raw_fd();
    let mut state = states.borrow_and_update().clone();
    let mut batch = Batch::new();
    while !stop.load(Relaxed) {
        let n = match batch.receive(fd) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(e) => {
                debug!(error = %e, "dns: udp receive error");
                continue;
            }
        };
        stats.queries_udp.fetch_add(n as u64, Relaxed);
        received.fetch_add(n as u64, Relaxed);
        if states.has_changed().unwrap_or(false) {
            state = states.borrow_and_update().clone();
        }
        let now = Instant::now();
        batch.ready.clear();
        let Batch {
            queries,
            sources,
            recv,
            answers,
            ready,
            ..
        } = &mut batch;
        for i in 0..n {
            let h = &recv[i];
            if h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                stats.dropped.fetch_add(1, Relaxed);
                continue;
            }
            let Some(src) = source(&sources[i], h.msg_hdr.msg_namelen) else {
                continue;
            };
            let len = (h.msg_len as usize).min(MAX_QUERY);
            let q = &queries[i * MAX_QUERY..i * MAX_QUERY + len];
            if answer(
                &state,
                &stats,
                now,
                q,
                src.ip().to_canonical(),
                &mut answers[i],
            ) {
                ready.push(i);
            }
        }
        batch.send_ready(fd);
    }
}

#[cfg(test)]
mod tests {
    //! The batch on real loopback sockets: one `recvmmsg` takes every
    //! queued datagram up to [`UDP_BATCH`], one `sendmmsg` sends each
    //! answer back to its own source.

    use super::*;
    use std::net::UdpSocket;

    #[test]
    fn one_batch_takes_the_queued_datagrams_and_answers_each_source() {
        let server = bind_udp("127.0.0.1:0".parse().unwrap(), 1)
            .unwrap()
            .pop()
            .unwrap();
        let to = server.local_addr().unwrap();
        let clients: Vec<UdpSocket> = (0..4)
            .map(|_| {
                let c = UdpSocket::bind("127.0.0.1:0").unwrap();
                c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                c
            })
            .collect();
        // 40 datagrams, queued before the first receive (loopback delivers
        // during sendto): client k sends payloads k, k+4, k+8, ...
        let total = UDP_BATCH + 8;
        for i in 0..total {
            let payload = [i as u8; 12];
            clients[i % 4].send_to(&payload, to).unwrap();
        }
        let fd = server.as_raw_fd();
        let mut batch = Batch::new();
        let mut got = Vec::new();
        for want in [UDP_BATCH, total - UDP_BATCH] {
            let n = batch.receive(fd).unwrap();
            assert_eq!(
                n, want,
                "one recvmmsg takes what is queued, up to the batch"
            );
            batch.ready.clear();
            for i in 0..n {
                let len = batch.recv[i].msg_len as usize;
                let q = batch.queries[i * MAX_QUERY..i * MAX_QUERY + len].to_vec();
                let src = source(&batch.sources[i], batch.recv[i].msg_hdr.msg_namelen).unwrap();
                assert_eq!(q.len(), 12);
                assert_eq!(src, clients[q[0] as usize % 4].local_addr().unwrap());
                got.push(q[0]);
                // The answer: the payload's first byte and a marker.
                batch.answers[i] = vec![q[0], 0xAA];
                batch.ready.push(i);
            }
            batch.send_ready(fd);
        }
        got.sort_unstable();
        assert_eq!(got, (0..total as u8).collect::<Vec<_>>());
        for (k, c) in clients.iter().enumerate() {
            let mut seen = Vec::new();
            for _ in 0..total / 4 {
                let mut buf = [0u8; 16];
                let (len, from) = c.recv_from(&mut buf).unwrap();
                assert_eq!(from, to);
                assert_eq!(&buf[1..len], &[0xAA]);
                seen.push(buf[0]);
            }
            let want: Vec<u8> = (0..total as u8).filter(|i| *i as usize % 4 == k).collect();
            assert_eq!(
                seen, want,
                "client {k} gets exactly its own answers, in order"
            );
        }
    }
}
