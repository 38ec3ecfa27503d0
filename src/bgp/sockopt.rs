//! Socket options BGP needs that tokio does not expose: TCP MD5 signatures
//! (RFC 2385, `TCP_MD5SIG`) and GTSM (RFC 5082, `IP_MINTTL` /
//! `IPV6_MINHOPCOUNT` 255 with outgoing TTL 255), on connecting, accepted
//! and listening sockets. Linux only.
//!
//! Both must be set before `connect`/`listen`: the kernel signs (and checks)
//! the SYN already.

use std::io;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::path::Path;

/// Longest key the kernel accepts (`TCP_MD5SIG_MAXKEYLEN`).
pub const MD5_MAX_KEY_LEN: usize = 80;

/// `struct tcp_md5sig` from linux/tcp.h.
#[repr(C)]
struct TcpMd5Sig {
    addr: libc::sockaddr_storage,
    flags: u8,
    prefixlen: u8,
    keylen: u16,
    ifindex: libc::c_int,
    key: [u8; MD5_MAX_KEY_LEN],
}

/// A TCP MD5 key as read from its file: compared by content (a rotated
/// key is a changed peer), never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Md5Key(Vec<u8>);

impl Md5Key {
    /// Reads `path` (see [`read_md5_key`]).
    pub fn read(path: &Path) -> io::Result<Md5Key> {
        read_md5_key(path).map(Md5Key)
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Md5Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Md5Key(<{} bytes>)", self.0.len())
    }
}

/// Reads an MD5 password file: the whole file minus trailing newlines.
pub fn read_md5_key(path: &Path) -> io::Result<Vec<u8>> {
    let raw = std::fs::read(path)?;
    let end = raw
        .iter()
        .rposition(|&b| b != b'\n' && b != b'\r')
        .map_or(0, |i| i + 1);
    let key = raw[..end].to_vec();
    if key.is_empty() || key.len() > MD5_MAX_KEY_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{}: MD5 password must be 1 to {MD5_MAX_KEY_LEN} bytes, found {}",
                path.display(),
                key.len()
            ),
        ));
    }
    Ok(key)
}

pub(crate) fn setsockopt<T>(
    fd: &impl AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    // SAFETY: `value` points to a live `T` of the given size for the whole
    // call; the kernel copies it.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Installs (or with an empty key, removes) the MD5 key for `peer` on the
/// socket. On a listening socket this is per peer address.
pub fn set_md5(fd: &impl AsRawFd, peer: IpAddr, key: &[u8]) -> io::Result<()> {
    if key.len() > MD5_MAX_KEY_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "MD5 key too long",
        ));
    }
    // SAFETY: all-zero is a valid bit pattern for this plain C struct.
    let mut sig: TcpMd5Sig = unsafe { std::mem::zeroed() };
    match peer {
        IpAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for
            // sockaddr_in.
            let sin = unsafe {
                &mut *(&mut sig.addr as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>()
            };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_addr = libc::in_addr {
                s_addr: u32::from_ne_bytes(a.octets()),
            };
        }
        IpAddr::V6(a) => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 = unsafe {
                &mut *(&mut sig.addr as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_addr = libc::in6_addr {
                s6_addr: a.octets(),
            };
        }
    }
    sig.keylen = key.len() as u16;
    sig.key[..key.len()].copy_from_slice(key);
    setsockopt(fd, libc::IPPROTO_TCP, libc::TCP_MD5SIG, &sig)
}

/// GTSM for a directly connected peer (one hop, like FRR's `ttl-security
/// hops 1`): send with TTL 255 and drop segments that arrive with less than
/// 255. `v6` selects the IPv6 options.
pub fn set_gtsm(fd: &impl AsRawFd, v6: bool) -> io::Result<()> {
    let ttl: libc::c_int = 255;
    let min: libc::c_int = 255;
    if v6 {
        setsockopt(fd, libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS, &ttl)?;
        setsockopt(fd, libc::IPPROTO_IPV6, libc::IPV6_MINHOPCOUNT, &min)
    } else {
        setsockopt(fd, libc::IPPROTO_IP, libc::IP_TTL, &ttl)?;
        setsockopt(fd, libc::IPPROTO_IP, libc::IP_MINTTL, &min)
    }
}

/// GTSM on a listening socket (`v6`: an IPv6 socket, which also carries
/// IPv4-mapped peers). `send_255`: SYN-ACKs leave with TTL 255, which a
/// GTSM router dialing us requires (it drops anything less). `require_255`:
/// SYNs arriving with a TTL below 255 are dropped before a connection
/// exists; the kernel applies this to every source, so only when every
/// peer that may connect uses GTSM. Either off restores the default.
/// Accepted connections inherit both.
pub fn set_listener_gtsm(
    fd: &impl AsRawFd,
    v6: bool,
    send_255: bool,
    require_255: bool,
) -> io::Result<()> {
    let ttl: libc::c_int = if send_255 { 255 } else { -1 };
    let min: libc::c_int = if require_255 { 255 } else { 0 };
    if v6 {
        setsockopt(fd, libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS, &ttl)?;
        setsockopt(fd, libc::IPPROTO_IPV6, libc::IPV6_MINHOPCOUNT, &min)?;
    }
    setsockopt(fd, libc::IPPROTO_IP, libc::IP_TTL, &ttl)?;
    setsockopt(fd, libc::IPPROTO_IP, libc::IP_MINTTL, &min)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn getsockopt_int(fd: &impl AsRawFd, level: libc::c_int, name: libc::c_int) -> libc::c_int {
        let mut v: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `v` and `len` are live and sized for an int option.
        let rc = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                level,
                name,
                (&mut v as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        assert_eq!(rc, 0, "getsockopt: {}", io::Error::last_os_error());
        v
    }

    #[test]
    fn listener_gtsm_sets_and_clears_min_ttl_and_ttl() {
        let s = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (ip, ttl, min) = (libc::IPPROTO_IP, libc::IP_TTL, libc::IP_MINTTL);
        set_listener_gtsm(&s, false, true, true).unwrap();
        assert_eq!(getsockopt_int(&s, ip, min), 255);
        assert_eq!(getsockopt_int(&s, ip, ttl), 255);
        // Mixed peers: SYN-ACKs still at 255, no minimum.
        set_listener_gtsm(&s, false, true, false).unwrap();
        assert_eq!(getsockopt_int(&s, ip, min), 0);
        assert_eq!(getsockopt_int(&s, ip, ttl), 255);
        set_listener_gtsm(&s, false, false, false).unwrap();
        assert_eq!(getsockopt_int(&s, ip, min), 0);
        assert_ne!(getsockopt_int(&s, ip, ttl), 255);
        let Ok(s6) = std::net::TcpListener::bind("[::1]:0") else {
            return; // no IPv6 on this machine
        };
        set_listener_gtsm(&s6, true, true, true).unwrap();
        let ip6 = libc::IPPROTO_IPV6;
        assert_eq!(getsockopt_int(&s6, ip6, libc::IPV6_MINHOPCOUNT), 255);
        assert_eq!(getsockopt_int(&s6, ip6, libc::IPV6_UNICAST_HOPS), 255);
        assert_eq!(getsockopt_int(&s6, ip, min), 255);
    }

    #[test]
    fn md5_key_file_trims_newline_and_checks_length() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(b"s3cret\n").unwrap();
        assert_eq!(read_md5_key(f.path()).unwrap(), b"s3cret");
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&[b'x'; 81]).unwrap();
        assert!(read_md5_key(f.path()).is_err());
        let f = tempfile::NamedTempFile::new().unwrap();
        assert!(read_md5_key(f.path()).is_err());
    }

    #[test]
    fn md5_and_gtsm_apply_to_a_tcp_socket() {
        // Setting options needs no privileges; this checks the struct
        // layout is accepted by the kernel.
        let s = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        set_md5(&s, "127.0.0.1".parse().unwrap(), b"key").unwrap();
        set_gtsm(&s, false).unwrap();
        let s6 = match std::net::TcpListener::bind("[::1]:0") {
            Ok(s) => s,
            Err(_) => return, // no IPv6 on this machine
        };
        set_md5(&s6, "::1".parse().unwrap(), b"key").unwrap();
        set_gtsm(&s6, true).unwrap();
    }
}
