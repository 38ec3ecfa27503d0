//! The route notifications of a node's kernel (rtnetlink, IPv4 and IPv6
//! route groups), read in the background: proves a route never left the
//! FIB, where polling could miss a short gap. It owns one netlink socket
//! in the node's namespace and its reader thread; it never changes a route.
//!
//! A 100,000-route change is 100,000 notifications in a few seconds. `ip
//! monitor` can only ask for `net.core.rmem_max` of socket buffer and, when
//! that overflows, prints an error to stderr and carries on: deletions are
//! lost silently. This monitor forces a large buffer (the lab runs as root)
//! and, if notifications are lost anyway, refuses to answer instead of
//! reporting "no deletions".

use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::Lab;

/// Socket buffer asked for with SO_RCVBUFFORCE: room for every
/// notification of a 100,000-route change (about 1 KB of kernel memory
/// each) even if the reader thread is not scheduled for a while.
const RCVBUF: libc::c_int = 256 << 20;
/// RTPROT_BGP: routes zebra installs for bgpd.
const RTPROT_BGP: u8 = 186;

/// What the reader saw so far: one line per route notification
/// (`"Deleted 2001:db8::/56 proto bgp"`, `"2001:db8::/56 proto bgp"` for a
/// new or replaced route) and how many times the socket overflowed.
#[derive(Default)]
struct Seen {
    lines: Vec<String>,
    overflows: u64,
    error: Option<String>,
}

/// A running route monitor of one node.
pub struct RouteMonitor {
    node: String,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
}

impl RouteMonitor {
    /// Starts monitoring `node`'s routes. It is subscribed when this
    /// returns: every later route change is seen.
    pub fn start(lab: &Lab, node: &str) -> RouteMonitor {
        let fd = lab
            .in_ns(node, subscribe)
            .and_then(|r| r)
            .unwrap_or_else(|e| panic!("route monitor in {node}: {e}"));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (seen, stop) = (seen.clone(), stop.clone());
            std::thread::spawn(move || read_loop(&fd, &seen, &stop))
        };
        RouteMonitor {
            node: node.to_string(),
            seen,
            stop,
            reader: Some(reader),
        }
    }

    /// The deletions seen so far whose line has `needle` as a whole word
    /// (a prefix such as `203.0.113.0/24`, or `proto bgp` for every BGP
    /// route). Panics if notifications were lost: then no answer is proof.
    pub fn deletions_of(&self, needle: &str) -> Vec<String> {
        self.matching(needle)
            .into_iter()
            .filter(|l| l.starts_with("Deleted "))
            .collect()
    }

    /// Panics if a route with `needle` left the FIB so far, naming how many
    /// and the first; `during` says when (for the message).
    pub fn assert_none_deleted(&self, needle: &str, during: &str) {
        let deleted = self.deletions_of(needle);
        assert!(
            deleted.is_empty(),
            "{} routes left the FIB {during}, e.g. {:?}",
            deleted.len(),
            deleted.first()
        );
    }

    /// How many routes with `needle` were added or replaced so far (same
    /// matching and the same panic as [`Self::deletions_of`]).
    pub fn additions_of(&self, needle: &str) -> usize {
        self.matching(needle)
            .iter()
            .filter(|l| !l.starts_with("Deleted "))
            .count()
    }

    fn matching(&self, needle: &str) -> Vec<String> {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = &seen.error {
            panic!("route monitor of {} failed: {e}", self.node);
        }
        assert_eq!(
            seen.overflows, 0,
            "route monitor of {} lost notifications (socket buffer overflowed)",
            self.node
        );
        let needle = format!(" {needle} ");
        seen.lines
            .iter()
            .filter(|l| format!(" {l} ").contains(&needle))
            .cloned()
            .collect()
    }
}

impl Drop for RouteMonitor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// Opens an rtnetlink socket subscribed to the IPv4 and IPv6 route groups
/// of the calling thread's namespace, with a large forced buffer and a
/// short receive timeout (so the reader can notice `stop`).
fn subscribe() -> Result<OwnedFd, String> {
    let os_err = |what: &str| format!("{what}: {}", std::io::Error::last_os_error());
    // SAFETY: plain socket(2); the result is checked before use.
    let raw = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if raw < 0 {
        return Err(os_err("netlink socket"));
    }
    // SAFETY: `raw` is a fresh descriptor owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let timeout = libc::timeval {
        tv_sec: 0,
        tv_usec: 100_000,
    };
    set_opt(&fd, libc::SO_RCVBUFFORCE, &RCVBUF).map_err(|_| os_err("SO_RCVBUFFORCE"))?;
    set_opt(&fd, libc::SO_RCVTIMEO, &timeout).map_err(|_| os_err("SO_RCVTIMEO"))?;
    // SAFETY: sockaddr_nl is plain data; all-zero is a valid value.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    addr.nl_groups = (libc::RTMGRP_IPV4_ROUTE | libc::RTMGRP_IPV6_ROUTE) as u32;
    // SAFETY: `addr` is a valid sockaddr_nl of the size passed.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            std::ptr::addr_of!(addr).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(os_err("bind netlink"));
    }
    Ok(fd)
}

fn set_opt<T>(fd: &OwnedFd, opt: libc::c_int, value: &T) -> Result<(), ()> {
    // SAFETY: `value` points to a live T of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            std::ptr::from_ref(value).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(())
    }
}

/// Reads notifications until `stop`, appending each route one to `seen`.
fn read_loop(fd: &OwnedFd, seen: &Mutex<Seen>, stop: &AtomicBool) {
    let mut buf = vec![0u8; 1 << 16];
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: `buf` is writable for its whole length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
            match e.raw_os_error() {
                Some(libc::EAGAIN | libc::EINTR) => {}
                Some(libc::ENOBUFS) => seen.overflows += 1,
                _ => {
                    seen.error = Some(format!("recv: {e}"));
                    return;
                }
            }
            continue;
        }
        let lines = route_lines(&buf[..n as usize]);
        if !lines.is_empty() {
            let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
            seen.lines.extend(lines);
        }
    }
}

/// The route notifications in one netlink datagram, as monitor lines.
fn route_lines(mut data: &[u8]) -> Vec<String> {
    let mut lines = Vec::new();
    // nlmsghdr: len u32, type u16, flags u16, seq u32, pid u32.
    while data.len() >= 16 {
        let len = u32::from_ne_bytes([data[0], data[1], data[2], data[3]]) as usize;
        let kind = u16::from_ne_bytes([data[4], data[5]]);
        if len < 16 || len > data.len() {
            break;
        }
        if kind == libc::RTM_NEWROUTE || kind == libc::RTM_DELROUTE {
            if let Some(route) = route(&data[16..len]) {
                let deleted = if kind == libc::RTM_DELROUTE {
                    "Deleted "
                } else {
                    ""
                };
                lines.push(format!("{deleted}{route}"));
            }
        }
        data = &data[len.next_multiple_of(4).min(data.len())..];
    }
    lines
}

/// `"<prefix> proto <protocol>"` of one rtmsg and its attributes.
fn route(msg: &[u8]) -> Option<String> {
    // rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type
    // (u8 each), flags (u32).
    if msg.len() < 12 {
        return None;
    }
    let (family, dst_len, protocol) = (msg[0], msg[1], msg[5]);
    let mut dst: Vec<u8> = Vec::new();
    let mut attrs = &msg[12..];
    // rtattr: len u16, type u16, then the value, padded to 4 bytes.
    while attrs.len() >= 4 {
        let len = u16::from_ne_bytes([attrs[0], attrs[1]]) as usize;
        let kind = u16::from_ne_bytes([attrs[2], attrs[3]]);
        if len < 4 || len > attrs.len() {
            break;
        }
        if kind == libc::RTA_DST {
            dst = attrs[4..len].to_vec();
        }
        attrs = &attrs[len.next_multiple_of(4).min(attrs.len())..];
    }
    let addr = match (i32::from(family), dst.len()) {
        (libc::AF_INET, 4) => Ipv4Addr::from(<[u8; 4]>::try_from(dst).ok()?).to_string(),
        (libc::AF_INET6, 16) => Ipv6Addr::from(<[u8; 16]>::try_from(dst).ok()?).to_string(),
        (libc::AF_INET, 0) => Ipv4Addr::UNSPECIFIED.to_string(),
        (libc::AF_INET6, 0) => Ipv6Addr::UNSPECIFIED.to_string(),
        _ => return None,
    };
    let proto = match protocol {
        RTPROT_BGP => "bgp".to_string(),
        2 => "kernel".to_string(),
        3 => "boot".to_string(),
        4 => "static".to_string(),
        11 => "zebra".to_string(),
        p => p.to_string(),
    };
    Some(format!("{addr}/{dst_len} proto {proto}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One netlink message: header, rtmsg, then the attributes.
    fn message(kind: u16, family: u8, dst_len: u8, proto: u8, attrs: &[(u16, &[u8])]) -> Vec<u8> {
        let mut body = vec![family, dst_len, 0, 0, 254, proto, 0, 1, 0, 0, 0, 0];
        for (t, v) in attrs {
            body.extend_from_slice(&((4 + v.len()) as u16).to_ne_bytes());
            body.extend_from_slice(&t.to_ne_bytes());
            body.extend_from_slice(v);
            body.resize(body.len().next_multiple_of(4), 0);
        }
        let mut m = Vec::new();
        m.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(&body);
        m
    }

    #[test]
    fn route_lines_name_deletions_replacements_prefix_and_protocol() {
        let v6: Ipv6Addr = "2001:db8:100::".parse().unwrap();
        let oif = 7u32.to_ne_bytes();
        let mut data = message(
            libc::RTM_DELROUTE,
            libc::AF_INET6 as u8,
            48,
            RTPROT_BGP,
            &[(libc::RTA_OIF, &oif), (libc::RTA_DST, &v6.octets())],
        );
        data.extend(message(
            libc::RTM_NEWROUTE,
            libc::AF_INET as u8,
            24,
            11,
            &[(libc::RTA_DST, &[203, 0, 113, 0])],
        ));
        data.extend(message(libc::RTM_NEWLINK, 0, 0, 0, &[]));
        data.extend(message(libc::RTM_NEWROUTE, libc::AF_INET as u8, 0, 4, &[]));
        assert_eq!(
            route_lines(&data),
            [
                "Deleted 2001:db8:100::/48 proto bgp",
                "203.0.113.0/24 proto zebra",
                "0.0.0.0/0 proto static",
            ]
        );
        // A truncated message ends the walk without a panic.
        assert_eq!(route_lines(&data[..20]), Vec::<String>::new());
    }
}
