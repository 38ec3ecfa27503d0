//! rtnetlink, just enough for the `interface` and `address` checks: ask the
//! kernel for one link or for every address of a family, and listen to the
//! link and address notifications of this network namespace.
//!
//! The wire part ([`parse`], [`link_request`], [`addr_dump_request`]) is
//! pure: bytes in, typed messages out, no socket. [`Socket`] is the thin
//! non-blocking `AF_NETLINK` socket around it (direct libc, no netlink
//! crate). This module knows nothing about checks or verdicts: it reports
//! what the kernel says.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

// Stable kernel ABI values (linux/netlink.h, linux/rtnetlink.h,
// linux/if_link.h, linux/if_addr.h, linux/if.h).
const NLMSG_HDRLEN: usize = 16;
const NLMSG_NOOP: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_OVERRUN: u16 = 4;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const RTM_GETADDR: u16 = 22;
const IFINFOMSG_LEN: usize = 16;
const IFADDRMSG_LEN: usize = 8;
const RTA_HDRLEN: usize = 4;
const IFLA_IFNAME: u16 = 3;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_FLAGS: u16 = 8;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// Multicast groups: link changes, IPv4 and IPv6 address changes.
pub const GROUP_LINK: u32 = 0x1;
pub const GROUP_IPV4_ADDR: u32 = 0x10;
pub const GROUP_IPV6_ADDR: u32 = 0x100;

/// `IFF_UP`: administratively up.
pub const IFF_UP: u32 = 0x1;
/// `IFF_RUNNING`: operationally up (carrier, lower layer up).
pub const IFF_RUNNING: u32 = 0x40;
/// `IFA_F_DADFAILED`: IPv6 duplicate address detection failed.
pub const IFA_F_DADFAILED: u32 = 0x08;
/// `IFA_F_TENTATIVE`: IPv6 duplicate address detection still running.
pub const IFA_F_TENTATIVE: u32 = 0x40;

/// A link as the kernel describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: Option<String>,
    /// `IFF_*` flags.
    pub flags: u32,
}

/// An interface address as the kernel describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addr {
    /// Index of the interface the address is on.
    pub index: u32,
    /// The local address (`IFA_LOCAL`, else `IFA_ADDRESS`).
    pub addr: IpAddr,
    pub prefix_len: u8,
    /// `IFA_F_*` flags (the 32-bit `IFA_FLAGS` attribute when present).
    pub flags: u32,
}

/// One netlink message, as far as this module cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    NewLink(Link),
    DelLink(Link),
    NewAddr(Addr),
    DelAddr(Addr),
    /// The end of a dump.
    Done,
    /// An error answer (`errno`, positive) or an acknowledgement (0).
    Error(i32),
    /// The kernel dropped notifications.
    Overrun,
    /// Any other type, or an address family other than IPv4/IPv6.
    Other(u16),
}

/// A message and the sequence number it answers (0 for notifications).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub seq: u32,
    pub msg: Msg,
}

/// Why a buffer is not a sequence of netlink messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed netlink message at byte {at}: {why}")]
pub struct ParseError {
    pub at: usize,
    pub why: &'static str,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Parses every message in one datagram from the kernel.
pub fn parse(buf: &[u8]) -> Result<Vec<Received>, ParseError> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + NLMSG_HDRLEN <= buf.len() {
        let err = |why| ParseError { at, why };
        let len = u32_at(buf, at).ok_or(err("short header"))? as usize;
        let kind = u16_at(buf, at + 4).ok_or(err("short header"))?;
        let seq = u32_at(buf, at + 8).ok_or(err("short header"))?;
        if len < NLMSG_HDRLEN || at + len > buf.len() {
            return Err(err("length out of bounds"));
        }
        let body = &buf[at + NLMSG_HDRLEN..at + len];
        let msg = match kind {
            NLMSG_NOOP => None,
            NLMSG_DONE => Some(Msg::Done),
            NLMSG_OVERRUN => Some(Msg::Overrun),
            NLMSG_ERROR => {
                let code = u32_at(body, 0).ok_or(err("short error message"))? as i32;
                Some(Msg::Error(-code))
            }
            RTM_NEWLINK | RTM_DELLINK => {
                let link = parse_link(body).ok_or(err("short ifinfomsg"))?;
                Some(if kind == RTM_NEWLINK {
                    Msg::NewLink(link)
                } else {
                    Msg::DelLink(link)
                })
            }
            RTM_NEWADDR | RTM_DELADDR => Some(match parse_addr(body) {
                Err(()) => return Err(err("short ifaddrmsg")),
                Ok(None) => Msg::Other(kind),
                Ok(Some(a)) if kind == RTM_NEWADDR => Msg::NewAddr(a),
                Ok(Some(a)) => Msg::DelAddr(a),
            }),
            other => Some(Msg::Other(other)),
        };
        if let Some(msg) = msg {
            out.push(Received { seq, msg });
        }
        at += align4(len);
    }
    Ok(out)
}

/// Route attributes after a fixed header: (type, payload).
fn attrs(b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut at = 0;
    std::iter::from_fn(move || {
        let len = u16_at(b, at)? as usize;
        let kind = u16_at(b, at + 2)? & 0x3fff; // without NLA_F_NESTED/NET_BYTEORDER
        if len < RTA_HDRLEN || at + len > b.len() {
            return None;
        }
        let payload = &b[at + RTA_HDRLEN..at + len];
        at += align4(len);
        Some((kind, payload))
    })
}

fn parse_link(body: &[u8]) -> Option<Link> {
    if body.len() < IFINFOMSG_LEN {
        return None;
    }
    let index = u32_at(body, 4)?;
    let flags = u32_at(body, 8)?;
    let name = attrs(&body[IFINFOMSG_LEN..])
        .find(|(k, _)| *k == IFLA_IFNAME)
        .map(|(_, v)| {
            let v = v.split(|&c| c == 0).next().unwrap_or(&[]);
            String::from_utf8_lossy(v).into_owned()
        });
    Some(Link { index, name, flags })
}

/// `Err` for a short message, `Ok(None)` for a family other than IPv4/6.
fn parse_addr(body: &[u8]) -> Result<Option<Addr>, ()> {
    if body.len() < IFADDRMSG_LEN {
        return Err(());
    }
    let family = body[0];
    let prefix_len = body[1];
    let mut flags = u32::from(body[2]);
    let index = u32_at(body, 4).ok_or(())?;
    let ip = |v: &[u8]| -> Option<IpAddr> {
        match family {
            AF_INET => Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(v).ok()?))),
            AF_INET6 => Some(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(v).ok()?))),
            _ => None,
        }
    };
    let (mut local, mut address) = (None, None);
    for (kind, v) in attrs(&body[IFADDRMSG_LEN..]) {
        match kind {
            IFA_LOCAL => local = ip(v),
            IFA_ADDRESS => address = ip(v),
            IFA_FLAGS => flags = u32_at(v, 0).unwrap_or(flags),
            _ => {}
        }
    }
    Ok(local.or(address).map(|addr| Addr {
        index,
        addr,
        prefix_len,
        flags,
    }))
}

fn header(buf: &mut Vec<u8>, kind: u16, flags: u16, seq: u32) {
    buf.extend_from_slice(&0u32.to_ne_bytes()); // length, set by finish()
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel's
}

fn finish(mut buf: Vec<u8>) -> Vec<u8> {
    let len = u32::try_from(buf.len()).unwrap_or(u32::MAX);
    buf[..4].copy_from_slice(&len.to_ne_bytes());
    buf
}

/// `RTM_GETLINK` for the link named `name` (the kernel answers one
/// `RTM_NEWLINK`, or an error: `ENODEV` when there is no such link).
pub fn link_request(seq: u32, name: &str) -> Vec<u8> {
    let mut b = Vec::with_capacity(64);
    header(&mut b, RTM_GETLINK, 0, seq);
    b.extend_from_slice(&[0u8; IFINFOMSG_LEN]);
    let name = name.as_bytes();
    let attr_len = RTA_HDRLEN + name.len() + 1;
    b.extend_from_slice(&(attr_len as u16).to_ne_bytes());
    b.extend_from_slice(&IFLA_IFNAME.to_ne_bytes());
    b.extend_from_slice(name);
    b.push(0);
    b.resize(align4(b.len()), 0);
    finish(b)
}

/// `RTM_GETADDR` dump of every address of `v6`'s family.
pub fn addr_dump_request(seq: u32, v6: bool) -> Vec<u8> {
    let mut b = Vec::with_capacity(NLMSG_HDRLEN + IFADDRMSG_LEN);
    header(&mut b, RTM_GETADDR, NLM_F_DUMP, seq);
    let mut ifa = [0u8; IFADDRMSG_LEN];
    ifa[0] = if v6 { AF_INET6 } else { AF_INET };
    b.extend_from_slice(&ifa);
    finish(b)
}

/// A non-blocking `NETLINK_ROUTE` socket on the tokio reactor.
pub struct Socket {
    fd: AsyncFd<OwnedFd>,
}

/// The largest datagram read at once; dumps arrive in pieces of at most a
/// page or so, notifications are small.
const RECV_BUF: usize = 64 * 1024;

impl Socket {
    /// Opens a socket joined to the multicast `groups` (0 for requests
    /// only). Must be called inside a tokio runtime.
    pub fn open(groups: u32) -> io::Result<Socket> {
        // SAFETY: plain socket(2); the result is checked before use and
        // owned by the OwnedFd from then on.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: an all-zero sockaddr_nl is valid; the fields are set below.
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        sa.nl_groups = groups;
        // SAFETY: `sa` is a valid sockaddr_nl and its size is passed.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                std::ptr::addr_of!(sa).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the AsyncFd owns the descriptor from here on and nothing
        // else closes or replaces it while registered.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE)? };
        Ok(Socket { fd })
    }

    /// Sends one request to the kernel. Requests are small: the socket's
    /// send buffer never fills, so this does not wait.
    pub fn send(&self, req: &[u8]) -> io::Result<()> {
        // SAFETY: an all-zero sockaddr_nl addresses the kernel (port 0).
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: `req` is a valid buffer of its length; `sa` a valid
        // address of the given size.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                req.as_ptr().cast(),
                req.len(),
                0,
                std::ptr::addr_of!(sa).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Receives one datagram and parses it. `ENOBUFS` (the kernel dropped
    /// notifications because we were slow) is reported as [`Msg::Overrun`].
    pub async fn recv(&self) -> io::Result<Vec<Received>> {
        let mut buf = vec![0u8; RECV_BUF];
        loop {
            let mut guard = self.fd.readable().await?;
            let res = guard.try_io(|fd| {
                // SAFETY: `buf` is valid for writes of its length.
                let n =
                    unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match res {
                Err(_would_block) => continue,
                Ok(Err(e)) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    return Ok(vec![Received {
                        seq: 0,
                        msg: Msg::Overrun,
                    }])
                }
                Ok(Err(e)) => return Err(e),
                Ok(Ok(n)) => {
                    return parse(&buf[..n])
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
                }
            }
        }
    }
}

/// Sequence numbers for requests (unique per process; answers are matched
/// on them).
fn next_seq() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static SEQ: AtomicU32 = AtomicU32::new(1);
    SEQ.fetch_add(1, Ordering::Relaxed)
}

/// The link named `name`, or `None` if there is none.
pub async fn get_link(name: &str) -> io::Result<Option<Link>> {
    let sock = Socket::open(0)?;
    let seq = next_seq();
    sock.send(&link_request(seq, name))?;
    loop {
        for r in sock.recv().await? {
            if r.seq != seq {
                continue;
            }
            match r.msg {
                Msg::NewLink(l) => return Ok(Some(l)),
                Msg::Error(e) if e == libc::ENODEV => return Ok(None),
                Msg::Error(e) => return Err(io::Error::from_raw_os_error(e)),
                _ => {}
            }
        }
    }
}

/// Every IPv4 (or, with `v6`, IPv6) address of the namespace.
pub async fn dump_addrs(v6: bool) -> io::Result<Vec<Addr>> {
    let sock = Socket::open(0)?;
    let seq = next_seq();
    sock.send(&addr_dump_request(seq, v6))?;
    let mut out = Vec::new();
    loop {
        for r in sock.recv().await? {
            if r.seq != seq {
                continue;
            }
            match r.msg {
                Msg::NewAddr(a) => out.push(a),
                Msg::Done => return Ok(out),
                Msg::Error(0) => {}
                Msg::Error(e) => return Err(io::Error::from_raw_os_error(e)),
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message as the kernel would send it.
    fn msg(kind: u16, seq: u32, body: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        header(&mut b, kind, 0, seq);
        b.extend_from_slice(body);
        b.resize(align4(b.len()), 0);
        finish(b)
    }

    fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&((RTA_HDRLEN + payload.len()) as u16).to_ne_bytes());
        b.extend_from_slice(&kind.to_ne_bytes());
        b.extend_from_slice(payload);
        b.resize(align4(b.len()), 0);
        b
    }

    fn ifinfo(index: u32, flags: u32, name: &str) -> Vec<u8> {
        let mut b = vec![0u8; IFINFOMSG_LEN];
        b[4..8].copy_from_slice(&index.to_ne_bytes());
        b[8..12].copy_from_slice(&flags.to_ne_bytes());
        let mut n = name.as_bytes().to_vec();
        n.push(0);
        b.extend(attr(IFLA_IFNAME, &n));
        b
    }

    fn ifaddr(family: u8, index: u32, attrs: &[Vec<u8>]) -> Vec<u8> {
        let mut b = vec![family, 32, 0, 0];
        b.extend_from_slice(&index.to_ne_bytes());
        for a in attrs {
            b.extend_from_slice(a);
        }
        b
    }

    #[test]
    fn link_messages_carry_index_flags_and_name() {
        let mut buf = msg(RTM_NEWLINK, 7, &ifinfo(3, IFF_UP | IFF_RUNNING, "eth0"));
        buf.extend(msg(RTM_DELLINK, 0, &ifinfo(4, 0, "veth-a")));
        let got = parse(&buf).unwrap();
        assert_eq!(
            got,
            vec![
                Received {
                    seq: 7,
                    msg: Msg::NewLink(Link {
                        index: 3,
                        name: Some("eth0".into()),
                        flags: IFF_UP | IFF_RUNNING
                    })
                },
                Received {
                    seq: 0,
                    msg: Msg::DelLink(Link {
                        index: 4,
                        name: Some("veth-a".into()),
                        flags: 0
                    })
                },
            ]
        );
    }

    #[test]
    fn address_messages_prefer_local_and_read_32bit_flags() {
        let v4 = ifaddr(
            AF_INET,
            2,
            &[
                attr(IFA_ADDRESS, &[198, 51, 100, 1]),
                attr(IFA_LOCAL, &[203, 0, 113, 10]),
            ],
        );
        let v6addr: Ipv6Addr = "2001:db8::10".parse().unwrap();
        let v6 = ifaddr(
            AF_INET6,
            1,
            &[
                attr(IFA_ADDRESS, &v6addr.octets()),
                attr(IFA_FLAGS, &(IFA_F_TENTATIVE | 0x200).to_ne_bytes()),
            ],
        );
        let mut buf = msg(RTM_NEWADDR, 0, &v4);
        buf.extend(msg(RTM_DELADDR, 0, &v6));
        buf.extend(msg(NLMSG_DONE, 9, &0u32.to_ne_bytes()));
        let got: Vec<Msg> = parse(&buf).unwrap().into_iter().map(|r| r.msg).collect();
        assert_eq!(
            got,
            vec![
                Msg::NewAddr(Addr {
                    index: 2,
                    addr: "203.0.113.10".parse().unwrap(),
                    prefix_len: 32,
                    flags: 0
                }),
                Msg::DelAddr(Addr {
                    index: 1,
                    addr: v6addr.into(),
                    prefix_len: 32,
                    flags: IFA_F_TENTATIVE | 0x200
                }),
                Msg::Done,
            ]
        );
    }

    #[test]
    fn errors_overruns_and_unknown_types() {
        let mut buf = msg(NLMSG_ERROR, 5, &(-libc::ENODEV).to_ne_bytes());
        buf.extend(msg(NLMSG_OVERRUN, 0, &[]));
        buf.extend(msg(NLMSG_NOOP, 0, &[]));
        buf.extend(msg(24, 0, &[0; 12])); // RTM_NEWROUTE
                                          // An address of another family (AF_PACKET = 17) is not an Addr.
        buf.extend(msg(
            RTM_NEWADDR,
            0,
            &ifaddr(17, 1, &[attr(IFA_ADDRESS, &[1; 6])]),
        ));
        let got: Vec<Msg> = parse(&buf).unwrap().into_iter().map(|r| r.msg).collect();
        assert_eq!(
            got,
            vec![
                Msg::Error(libc::ENODEV),
                Msg::Overrun,
                Msg::Other(24),
                Msg::Other(RTM_NEWADDR)
            ]
        );
    }

    #[test]
    fn malformed_input_is_an_error_never_a_panic() {
        let good = msg(RTM_NEWLINK, 1, &ifinfo(3, 0, "eth0"));
        // Length beyond the buffer.
        let mut bad = good.clone();
        bad[..4].copy_from_slice(&1000u32.to_ne_bytes());
        assert!(parse(&bad).is_err());
        // Length shorter than a header.
        bad[..4].copy_from_slice(&4u32.to_ne_bytes());
        assert!(parse(&bad).is_err());
        // Body too short for an ifinfomsg.
        assert!(parse(&msg(RTM_NEWLINK, 1, &[0; 4])).is_err());
        assert!(parse(&msg(RTM_NEWADDR, 1, &[0; 4])).is_err());
        // A trailing fragment shorter than a header is ignored.
        let mut tail = good.clone();
        tail.extend_from_slice(&[1, 2, 3]);
        assert_eq!(parse(&tail).unwrap().len(), 1);
        // An attribute whose length runs past the message is skipped.
        let mut body = vec![0u8; IFINFOMSG_LEN];
        body.extend_from_slice(&200u16.to_ne_bytes());
        body.extend_from_slice(&IFLA_IFNAME.to_ne_bytes());
        let got = parse(&msg(RTM_NEWLINK, 1, &body)).unwrap();
        assert!(matches!(&got[0].msg, Msg::NewLink(Link { name: None, .. })));
        // Every truncation of a valid buffer parses or errors cleanly.
        let mut all = good;
        all.extend(msg(
            RTM_NEWADDR,
            0,
            &ifaddr(AF_INET, 2, &[attr(IFA_LOCAL, &[192, 0, 2, 1])]),
        ));
        for n in 0..all.len() {
            let _ = parse(&all[..n]);
        }
    }

    #[test]
    fn requests_are_well_formed() {
        let req = link_request(42, "eth0");
        assert_eq!(req.len() % 4, 0);
        assert_eq!(u32_at(&req, 0).unwrap() as usize, req.len());
        assert_eq!(u16_at(&req, 4), Some(RTM_GETLINK));
        assert_eq!(u16_at(&req, 6), Some(NLM_F_REQUEST));
        assert_eq!(u32_at(&req, 8), Some(42));
        let (kind, name) = attrs(&req[NLMSG_HDRLEN + IFINFOMSG_LEN..]).next().unwrap();
        assert_eq!(kind, IFLA_IFNAME);
        assert_eq!(name, b"eth0\0");

        let req = addr_dump_request(43, true);
        assert_eq!(req.len(), NLMSG_HDRLEN + IFADDRMSG_LEN);
        assert_eq!(u16_at(&req, 4), Some(RTM_GETADDR));
        assert_eq!(u16_at(&req, 6), Some(NLM_F_REQUEST | NLM_F_DUMP));
        assert_eq!(req[NLMSG_HDRLEN], AF_INET6);
    }

    /// The real kernel: `lo` exists in every namespace, with 127.0.0.1.
    #[tokio::test]
    async fn kernel_answers_for_loopback() {
        let lo = get_link("lo").await.unwrap().expect("lo exists");
        assert_eq!(lo.name.as_deref(), Some("lo"));
        assert!(lo.index > 0);
        assert!(get_link("apnone0").await.unwrap().is_none());
        if lo.flags & IFF_UP != 0 {
            let addrs = dump_addrs(false).await.unwrap();
            assert!(
                addrs
                    .iter()
                    .any(|a| a.index == lo.index && a.addr == Ipv4Addr::LOCALHOST),
                "{addrs:?}"
            );
        }
    }
}
