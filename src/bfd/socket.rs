//! UDP sockets for single-hop BFD (RFC 5881), Linux only: the receive
//! socket on port 3784 per address family that reports each packet's TTL /
//! hop limit (`IP_RECVTTL`, `IPV6_RECVHOPLIMIT`) so GTSM can be enforced
//! (RFC 5881 §5: anything but 255 is dropped), and one send socket per
//! session bound to a source port in 49152–65535 with TTL 255 (§4).
//!
//! It must not interpret packets; [`super::service`] does.

use std::io;
use std::mem::size_of;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::Interest;
use tokio::net::UdpSocket;

use super::packet::{PORT, SOURCE_PORTS};
use crate::bgp::sockopt::setsockopt;

/// TTL / hop limit every single-hop packet is sent with and must arrive with.
pub const GTSM_TTL: u8 = 255;
/// DSCP CS6 (network control), as routers send BFD.
pub const NETWORK_CONTROL_TOS: libc::c_int = 0xc0;

/// Opens the receive socket of one family on port 3784 (all addresses).
pub fn open_rx(v6: bool) -> io::Result<UdpSocket> {
    let (domain, addr) = if v6 {
        (
            Domain::IPV6,
            SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), PORT),
        )
    } else {
        (
            Domain::IPV4,
            SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), PORT),
        )
    };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    let on: libc::c_int = 1;
    if v6 {
        s.set_only_v6(true)?;
        setsockopt(&s, libc::IPPROTO_IPV6, libc::IPV6_RECVHOPLIMIT, &on)?;
    } else {
        setsockopt(&s, libc::IPPROTO_IP, libc::IP_RECVTTL, &on)?;
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into()).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("bind UDP {addr} for BFD: {e} (is another BFD daemon running on this host?)"),
        )
    })?;
    UdpSocket::from_std(s.into())
}

/// Opens the send socket of one session: bound to `local` (or any address
/// of the family) and a free source port from 49152–65535 picked from
/// `seed`, sending with TTL / hop limit 255 and DSCP CS6.
pub fn open_tx(peer: IpAddr, local: Option<IpAddr>, seed: u64) -> io::Result<UdpSocket> {
    let v6 = peer.is_ipv6();
    let (domain, any) = if v6 {
        (Domain::IPV6, IpAddr::V6(Ipv6Addr::UNSPECIFIED))
    } else {
        (Domain::IPV4, IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    let tos: libc::c_int = NETWORK_CONTROL_TOS;
    if v6 {
        s.set_only_v6(true)?;
        s.set_unicast_hops_v6(GTSM_TTL.into())?;
        setsockopt(&s, libc::IPPROTO_IPV6, libc::IPV6_TCLASS, &tos)?;
    } else {
        s.set_ttl_v4(GTSM_TTL.into())?;
        setsockopt(&s, libc::IPPROTO_IP, libc::IP_TOS, &tos)?;
    }
    s.set_nonblocking(true)?;
    let ip = local.unwrap_or(any);
    let span = u64::from(SOURCE_PORTS.end() - SOURCE_PORTS.start()) + 1;
    let mut last = None;
    for i in 0..64u64 {
        let x = seed
            .wrapping_add(i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
            .rotate_left(17);
        let port = SOURCE_PORTS.start() + (x % span) as u16;
        match s.bind(&SocketAddr::new(ip, port).into()) {
            Ok(()) => return UdpSocket::from_std(s.into()),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => last = Some(e),
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("bind UDP {ip} for BFD to {peer}: {e}"),
                ))
            }
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no free BFD source port")))
}

/// One received datagram.
#[derive(Debug)]
pub struct Datagram {
    pub len: usize,
    pub from: SocketAddr,
    /// TTL (IPv4) or hop limit (IPv6) it arrived with, if the kernel said.
    pub ttl: Option<u8>,
}

/// Receives one datagram with its TTL / hop limit.
pub async fn recv(sock: &UdpSocket, buf: &mut [u8]) -> io::Result<Datagram> {
    sock.async_io(Interest::READABLE, || recvmsg(sock, buf))
        .await
}

fn recvmsg(sock: &UdpSocket, buf: &mut [u8]) -> io::Result<Datagram> {
    // u64 elements keep the control buffer aligned for cmsghdr.
    let mut control = [0u64; 16];
    // SAFETY: all-zero is a valid sockaddr_storage and msghdr.
    let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: as above.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut addr as *mut libc::sockaddr_storage).cast();
    msg.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of::<[u64; 16]>() as _;
    // SAFETY: every pointer in `msg` refers to a live buffer of the stated
    // length for the duration of the call.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let from = socket_addr(&addr)
        .ok_or_else(|| io::Error::other("datagram without an IP source address"))?;
    let clen = (msg.msg_controllen as usize).min(size_of::<[u64; 16]>());
    let bytes: Vec<u8> = control.iter().flat_map(|w| w.to_ne_bytes()).collect();
    Ok(Datagram {
        len: n as usize,
        from,
        ttl: ttl_from_cmsgs(&bytes[..clen]),
    })
}

fn socket_addr(a: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match libc::c_int::from(a.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in, and
            // sockaddr_storage is large and aligned enough for it.
            let sin = unsafe { &*(a as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some(SocketAddr::new(ip.into(), u16::from_be(sin.sin_port)))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 =
                unsafe { &*(a as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(SocketAddr::new(ip.into(), u16::from_be(sin6.sin6_port)))
        }
        _ => None,
    }
}

/// Finds an `IP_TTL` or `IPV6_HOPLIMIT` control message in a `recvmsg`
/// control buffer (Linux `cmsghdr` layout, native endian).
pub fn ttl_from_cmsgs(c: &[u8]) -> Option<u8> {
    let word = size_of::<usize>();
    let align = |n: usize| n.div_ceil(word) * word;
    let hdr = align(size_of::<usize>() + 2 * size_of::<libc::c_int>());
    let int = |at: usize| -> Option<libc::c_int> {
        let b = c.get(at..at + size_of::<libc::c_int>())?;
        Some(libc::c_int::from_ne_bytes(b.try_into().ok()?))
    };
    let mut at = 0;
    while at + hdr <= c.len() {
        let len = usize::from_ne_bytes(c.get(at..at + word)?.try_into().ok()?);
        if len < hdr {
            return None;
        }
        let level = int(at + word)?;
        let kind = int(at + word + size_of::<libc::c_int>())?;
        let is_ttl = (level == libc::IPPROTO_IP && kind == libc::IP_TTL)
            || (level == libc::IPPROTO_IPV6 && kind == libc::IPV6_HOPLIMIT);
        if is_ttl {
            return int(at + hdr).and_then(|v| u8::try_from(v).ok());
        }
        at += align(len);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmsg(level: libc::c_int, kind: libc::c_int, value: libc::c_int) -> Vec<u8> {
        let mut v = Vec::new();
        let hdr = size_of::<libc::cmsghdr>();
        v.extend_from_slice(&(hdr + 4).to_ne_bytes());
        v.extend_from_slice(&level.to_ne_bytes());
        v.extend_from_slice(&kind.to_ne_bytes());
        v.extend_from_slice(&value.to_ne_bytes());
        while v.len() % size_of::<usize>() != 0 {
            v.push(0);
        }
        v
    }

    #[test]
    fn finds_the_ttl_among_control_messages() {
        let mut c = cmsg(libc::IPPROTO_IP, libc::IP_TOS, 7);
        c.extend(cmsg(libc::IPPROTO_IP, libc::IP_TTL, 255));
        assert_eq!(ttl_from_cmsgs(&c), Some(255));
        assert_eq!(
            ttl_from_cmsgs(&cmsg(libc::IPPROTO_IPV6, libc::IPV6_HOPLIMIT, 254)),
            Some(254)
        );
        assert_eq!(ttl_from_cmsgs(&[]), None);
        assert_eq!(ttl_from_cmsgs(&c[..10]), None);
        // A corrupt length never loops or panics.
        let mut bad = cmsg(libc::IPPROTO_IP, libc::IP_TOS, 7);
        bad[..size_of::<usize>()].copy_from_slice(&0usize.to_ne_bytes());
        assert_eq!(ttl_from_cmsgs(&bad), None);
    }

    /// Loopback round trip: the receive path reports TTL 255 for a packet
    /// sent by a session socket (the kernel's view, not ours).
    #[tokio::test]
    async fn loopback_packets_carry_ttl_255_and_a_source_port_from_the_range() {
        let rx = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
        let on: libc::c_int = 1;
        setsockopt(&rx, libc::IPPROTO_IP, libc::IP_RECVTTL, &on).unwrap();
        rx.set_nonblocking(true).unwrap();
        rx.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .unwrap();
        let rx = UdpSocket::from_std(rx.into()).unwrap();
        let to = rx.local_addr().unwrap();
        let tx = open_tx(to.ip(), Some(to.ip()), 12345).unwrap();
        let port = tx.local_addr().unwrap().port();
        assert!(SOURCE_PORTS.contains(&port), "{port}");
        tx.send_to(b"hello", to).await.unwrap();
        let mut buf = [0u8; 64];
        let d = recv(&rx, &mut buf).await.unwrap();
        assert_eq!((d.len, d.from.port(), d.ttl), (5, port, Some(255)));
    }
}
