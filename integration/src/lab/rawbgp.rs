//! A deliberately small, hand-written BGP peer for tests that must send what
//! no real router sends: truncated UPDATEs, a bad marker, attributes with a
//! wrong length. It encodes OPEN / KEEPALIVE / UPDATE bytes itself (no codec
//! crate, so it cannot share a bug with the code under test) and decodes only
//! message headers, OPEN and NOTIFICATION.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::time::{Duration, Instant};

pub const OPEN: u8 = 1;
pub const UPDATE: u8 = 2;
pub const NOTIFICATION: u8 = 3;
pub const KEEPALIVE: u8 = 4;

/// A whole message with a correct header.
pub fn message(kind: u8, body: &[u8]) -> Vec<u8> {
    let len = 19 + body.len();
    let mut m = vec![0xff; 16];
    m.extend_from_slice(&(len as u16).to_be_bytes());
    m.push(kind);
    m.extend_from_slice(body);
    m
}

pub fn keepalive() -> Vec<u8> {
    message(KEEPALIVE, &[])
}

/// OPEN with multiprotocol IPv4+IPv6 unicast, route refresh and 4-octet AS
/// capabilities.
pub fn open(asn: u32, hold: u16, router_id: Ipv4Addr) -> Vec<u8> {
    let mut caps = Vec::new();
    for (afi, safi) in [(1u16, 1u8), (2, 1)] {
        caps.extend_from_slice(&[1, 4]);
        caps.extend_from_slice(&afi.to_be_bytes());
        caps.extend_from_slice(&[0, safi]);
    }
    caps.extend_from_slice(&[2, 0]); // route refresh
    caps.extend_from_slice(&[65, 4]);
    caps.extend_from_slice(&asn.to_be_bytes());
    let mut body = vec![4];
    let my_as: u16 = if asn > 65535 { 23456 } else { asn as u16 };
    body.extend_from_slice(&my_as.to_be_bytes());
    body.extend_from_slice(&hold.to_be_bytes());
    body.extend_from_slice(&router_id.octets());
    // One optional parameter of type 2 (capabilities) holding all of them.
    body.push((caps.len() + 2) as u8);
    body.push(2);
    body.push(caps.len() as u8);
    body.extend_from_slice(&caps);
    message(OPEN, &body)
}

/// A well-formed IPv4 UPDATE announcing `prefix/len` with ORIGIN IGP, an
/// AS_PATH of `[asn]` and NEXT_HOP `nh`.
pub fn update_v4(asn: u32, nh: Ipv4Addr, prefix: Ipv4Addr, len: u8) -> Vec<u8> {
    update_body(&mandatory_attrs(asn, nh), prefix, len)
}

/// ORIGIN IGP, AS_PATH `[asn]`, NEXT_HOP `nh`.
fn mandatory_attrs(asn: u32, nh: Ipv4Addr) -> Vec<u8> {
    let mut attrs = vec![0x40, 1, 1, 0]; // ORIGIN IGP
    attrs.extend_from_slice(&[0x40, 2, 6, 2, 1]); // AS_PATH: one AS_SEQUENCE of 1
    attrs.extend_from_slice(&asn.to_be_bytes());
    attrs.extend_from_slice(&[0x40, 3, 4]);
    attrs.extend_from_slice(&nh.octets());
    attrs
}

/// A valid UPDATE plus attribute type 99 flagged well-known (0x40): RFC
/// 4271 6.3 Unrecognized Well-known Attribute, 3/2.
pub fn unrecognized_well_known(asn: u32, nh: Ipv4Addr, prefix: Ipv4Addr, len: u8) -> Vec<u8> {
    let mut attrs = mandatory_attrs(asn, nh);
    attrs.extend_from_slice(&[0x40, 99, 2, 0xab, 0xcd]);
    update_body(&attrs, prefix, len)
}

fn update_body(attrs: &[u8], prefix: Ipv4Addr, len: u8) -> Vec<u8> {
    let mut body = vec![0, 0]; // no withdrawn routes
    body.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    body.extend_from_slice(attrs);
    body.push(len);
    body.extend_from_slice(&prefix.octets()[..usize::from(len).div_ceil(8)]);
    message(UPDATE, &body)
}

/// An UPDATE whose Total Path Attribute Length claims more bytes than the
/// message holds (RFC 4271 6.3: Malformed Attribute List, 3/1).
pub fn truncated_update() -> Vec<u8> {
    // withdrawn len 0, attr len 40, but only 4 attribute bytes follow
    message(UPDATE, &[0, 0, 0, 40, 0x40, 1, 1, 0])
}

/// A KEEPALIVE with a corrupted marker (RFC 4271 6.1: Message Header Error /
/// Connection Not Synchronized, 1/1).
pub fn bad_marker() -> Vec<u8> {
    let mut m = keepalive();
    m[3] = 0x00;
    m
}

/// An UPDATE whose last attribute's length runs past the end of the path
/// attributes (RFC 4271 6.3 Attribute Length Error 3/5, or per RFC 7606 a
/// malformed attribute list, 3/1: the session must be reset either way since
/// the NLRI cannot be located).
pub fn attr_length_overrun(asn: u32, nh: Ipv4Addr) -> Vec<u8> {
    let mut attrs = vec![0x40, 1, 1, 0];
    attrs.extend_from_slice(&[0x40, 2, 6, 2, 1]);
    attrs.extend_from_slice(&asn.to_be_bytes());
    attrs.extend_from_slice(&[0x40, 3, 20]); // NEXT_HOP claims 20 bytes, 4 follow
    attrs.extend_from_slice(&nh.octets());
    let mut body = vec![0, 0];
    body.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    body.extend_from_slice(&attrs);
    message(UPDATE, &body)
}

/// An UPDATE with MULTI_EXIT_DISC of length 3 instead of 4, inside an
/// otherwise consistent attribute list. RFC 7606 7.4: treat-as-withdraw
/// (session stays up); RFC 4271 alone: Attribute Length Error 3/5.
pub fn med_wrong_length(asn: u32, nh: Ipv4Addr, prefix: Ipv4Addr, len: u8) -> Vec<u8> {
    let mut attrs = mandatory_attrs(asn, nh);
    attrs.extend_from_slice(&[0x80, 4, 3, 0, 0, 7]);
    update_body(&attrs, prefix, len)
}

/// A received message: type and body (after the 19-byte header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    pub kind: u8,
    pub body: Vec<u8>,
}

impl Msg {
    /// (code, subcode) of a NOTIFICATION.
    pub fn notification(&self) -> Option<(u8, u8)> {
        (self.kind == NOTIFICATION && self.body.len() >= 2).then(|| (self.body[0], self.body[1]))
    }
}

/// A raw BGP session over TCP.
pub struct RawPeer {
    pub stream: TcpStream,
}

impl RawPeer {
    pub fn new(stream: TcpStream) -> RawPeer {
        RawPeer { stream }
    }

    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Reads one message; `Ok(None)` if the peer closed the connection.
    pub fn recv(&mut self, timeout: Duration) -> io::Result<Option<Msg>> {
        self.stream.set_read_timeout(Some(timeout))?;
        let mut hdr = [0u8; 19];
        match self.stream.read_exact(&mut hdr) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(None),
            Err(e) => return Err(e),
        }
        if hdr[..16].iter().any(|b| *b != 0xff) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "bad marker from peer",
            ));
        }
        let len = usize::from(u16::from_be_bytes([hdr[16], hdr[17]]));
        if !(19..=65535).contains(&len) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "bad length from peer",
            ));
        }
        let mut body = vec![0u8; len - 19];
        self.stream.read_exact(&mut body)?;
        Ok(Some(Msg {
            kind: hdr[18],
            body,
        }))
    }

    /// Reads messages until one of `kind` arrives (skipping others); errors
    /// on close or timeout.
    pub fn expect(&mut self, kind: u8, timeout: Duration) -> io::Result<Msg> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no message of type {kind}"),
                ));
            }
            match self.recv(left)? {
                Some(m) if m.kind == kind => return Ok(m),
                Some(m) if m.kind == NOTIFICATION => {
                    return Err(io::Error::other(format!(
                        "NOTIFICATION {:?} while waiting for type {kind}",
                        m.notification()
                    )))
                }
                Some(_) => continue,
                None => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "peer closed")),
            }
        }
    }

    /// OPEN exchange up to Established: send our OPEN, read theirs, confirm
    /// with KEEPALIVE, wait for theirs. Returns the peer's OPEN body.
    pub fn handshake(
        &mut self,
        asn: u32,
        router_id: Ipv4Addr,
        timeout: Duration,
    ) -> io::Result<Vec<u8>> {
        self.send(&open(asn, 9, router_id))?;
        let their_open = self.expect(OPEN, timeout)?;
        self.send(&keepalive())?;
        self.expect(KEEPALIVE, timeout)?;
        Ok(their_open.body)
    }

    /// Waits for a NOTIFICATION (skipping KEEPALIVE/UPDATE). `Ok(None)` if
    /// the peer closed without one.
    pub fn wait_notification(&mut self, timeout: Duration) -> io::Result<Option<Msg>> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "no NOTIFICATION"));
            }
            match self.recv(left)? {
                Some(m) if m.kind == NOTIFICATION => return Ok(Some(m)),
                Some(_) => continue,
                None => return Ok(None),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_has_consistent_lengths() {
        let m = open(64600, 9, Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(usize::from(u16::from_be_bytes([m[16], m[17]])), m.len());
        assert_eq!(m[18], OPEN);
        // version, AS, hold, id, opt len
        assert_eq!(m[19], 4);
        assert_eq!(usize::from(m[28]), m.len() - 29);
    }

    #[test]
    fn malformed_messages_are_malformed_as_described() {
        let t = truncated_update();
        let attr_len = usize::from(u16::from_be_bytes([t[21], t[22]]));
        assert!(23 + attr_len > t.len());
        let b = bad_marker();
        assert!(b[..16].iter().any(|x| *x != 0xff));
        let o = attr_length_overrun(64600, Ipv4Addr::new(192, 0, 2, 1));
        let attr_len = usize::from(u16::from_be_bytes([o[21], o[22]]));
        assert_eq!(
            23 + attr_len,
            o.len(),
            "attribute section itself is consistent"
        );
        let u = update_v4(
            64600,
            Ipv4Addr::new(192, 0, 2, 1),
            Ipv4Addr::new(203, 0, 113, 0),
            24,
        );
        assert_eq!(usize::from(u16::from_be_bytes([u[16], u[17]])), u.len());
        assert_eq!(&u[u.len() - 4..], &[24, 203, 0, 113]);
    }
}
