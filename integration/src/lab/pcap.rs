//! Reads the BGP messages out of a classic pcap file written by `tcpdump
//! -w` on an Ethernet (veth) interface: for each TCP segment, its capture
//! time, addresses, and the BGP message types that start in its payload.
//! Used by the benchmark to timestamp UPDATEs on the wire; assumes
//! messages start at segment boundaries (true for the small UPDATEs of a
//! single state change; a continuation segment simply yields no types).

use std::net::IpAddr;

/// One TCP segment with a payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// Capture time, seconds since the epoch.
    pub ts: f64,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
    /// Types of the BGP messages found (1 OPEN, 2 UPDATE, 3 NOTIFICATION, 4 KEEPALIVE).
    pub bgp_types: Vec<u8>,
}

/// Parses a pcap file; errors describe what was wrong.
pub fn read_segments(data: &[u8]) -> Result<Vec<Segment>, String> {
    if data.len() < 24 {
        return Err("pcap too short".into());
    }
    let magic = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
    let (le, nanos) = match magic {
        0xa1b2c3d4 => (true, false),
        0xa1b23c4d => (true, true),
        0xd4c3b2a1 => (false, false),
        0x4d3cb2a1 => (false, true),
        _ => return Err(format!("not a pcap file (magic {magic:#x})")),
    };
    let u32_at = |b: &[u8], o: usize| -> u32 {
        let a = [b[o], b[o + 1], b[o + 2], b[o + 3]];
        if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    };
    let linktype = u32_at(data, 20);
    if linktype != 1 {
        return Err(format!("link type {linktype} (expected Ethernet)"));
    }
    let mut out = Vec::new();
    let mut off = 24;
    while off + 16 <= data.len() {
        let sec = u32_at(data, off) as f64;
        let frac = u32_at(data, off + 4) as f64;
        let incl = u32_at(data, off + 8) as usize;
        off += 16;
        if off + incl > data.len() {
            break; // truncated last record (capture killed mid-write)
        }
        let ts = sec + frac / if nanos { 1e9 } else { 1e6 };
        if let Some(seg) = parse_frame(&data[off..off + incl], ts) {
            out.push(seg);
        }
        off += incl;
    }
    Ok(out)
}

fn parse_frame(f: &[u8], ts: f64) -> Option<Segment> {
    let ethertype = u16::from_be_bytes([*f.get(12)?, *f.get(13)?]);
    let ip = f.get(14..)?;
    let (src, dst, tcp) = match ethertype {
        0x0800 => {
            let ihl = usize::from(ip.first()? & 0x0f) * 4;
            if *ip.get(9)? != 6 {
                return None;
            }
            let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
            let s: [u8; 4] = ip.get(12..16)?.try_into().ok()?;
            let d: [u8; 4] = ip.get(16..20)?.try_into().ok()?;
            (
                IpAddr::from(s),
                IpAddr::from(d),
                ip.get(ihl..total.min(ip.len()))?,
            )
        }
        0x86dd => {
            if *ip.get(6)? != 6 {
                return None; // extension headers: not produced here
            }
            let plen = usize::from(u16::from_be_bytes([*ip.get(4)?, *ip.get(5)?]));
            let s: [u8; 16] = ip.get(8..24)?.try_into().ok()?;
            let d: [u8; 16] = ip.get(24..40)?.try_into().ok()?;
            (
                IpAddr::from(s),
                IpAddr::from(d),
                ip.get(40..(40 + plen).min(ip.len()))?,
            )
        }
        _ => return None,
    };
    let src_port = u16::from_be_bytes([*tcp.first()?, *tcp.get(1)?]);
    let dst_port = u16::from_be_bytes([*tcp.get(2)?, *tcp.get(3)?]);
    let doff = usize::from(tcp.get(12)? >> 4) * 4;
    let payload = tcp.get(doff..)?;
    if payload.is_empty() {
        return None;
    }
    let mut bgp_types = Vec::new();
    let mut p = payload;
    while p.len() >= 19 && p[..16].iter().all(|b| *b == 0xff) {
        bgp_types.push(p[18]);
        let len = usize::from(u16::from_be_bytes([p[16], p[17]]));
        if len < 19 || len > p.len() {
            break;
        }
        p = &p[len..];
    }
    Some(Segment {
        ts,
        src,
        dst,
        src_port,
        dst_port,
        bgp_types,
    })
}

/// Parses an RFC 3339 UTC timestamp as tracing prints it
/// (`2026-11-23T09:20:41.123456Z`) into seconds since the epoch.
pub fn parse_rfc3339_utc(s: &str) -> Option<f64> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.split(':');
    let (hh, mm) = (
        t.next()?.parse::<i64>().ok()?,
        t.next()?.parse::<i64>().ok()?,
    );
    let ss: f64 = t.next()?.parse().ok()?;
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + hh * 3600 + mm * 60) as f64 + ss)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_matches_known_epochs() {
        assert_eq!(parse_rfc3339_utc("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(
            parse_rfc3339_utc("2000-03-01T00:00:00Z"),
            Some(951_868_800.0)
        );
        let t = parse_rfc3339_utc("2026-11-23T09:20:41.250000Z").unwrap();
        assert!((t - 1_795_425_641.25).abs() < 1e-6, "{t}");
        assert_eq!(parse_rfc3339_utc("garbage"), None);
    }

    #[test]
    fn parses_a_bgp_keepalive_frame() {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x08, 0x00]);
        let tcp_payload = {
            let mut m = vec![0xff; 16];
            m.extend_from_slice(&[0, 19, 4]);
            m
        };
        let total = 20 + 20 + tcp_payload.len();
        let mut ip = vec![
            0x45,
            0,
            (total >> 8) as u8,
            total as u8,
            0,
            0,
            0,
            0,
            64,
            6,
            0,
            0,
        ];
        ip.extend_from_slice(&[192, 0, 2, 2, 192, 0, 2, 1]);
        let mut tcp = vec![0u8; 20];
        tcp[0..2].copy_from_slice(&40000u16.to_be_bytes());
        tcp[2..4].copy_from_slice(&179u16.to_be_bytes());
        tcp[12] = 5 << 4;
        f.extend(ip);
        f.extend(tcp);
        f.extend(tcp_payload);
        let mut pcap = Vec::new();
        pcap.extend_from_slice(&0xa1b2c3d4u32.to_le_bytes());
        pcap.extend_from_slice(&[2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0]);
        pcap.extend_from_slice(&1u32.to_le_bytes());
        pcap.extend_from_slice(&10u32.to_le_bytes());
        pcap.extend_from_slice(&500_000u32.to_le_bytes());
        pcap.extend_from_slice(&(f.len() as u32).to_le_bytes());
        pcap.extend_from_slice(&(f.len() as u32).to_le_bytes());
        pcap.extend(f);
        let segs = read_segments(&pcap).unwrap();
        assert_eq!(segs.len(), 1);
        assert_eq!(segs[0].bgp_types, vec![4]);
        assert_eq!(segs[0].dst_port, 179);
        assert!((segs[0].ts - 10.5).abs() < 1e-9);
        assert_eq!(segs[0].src.to_string(), "192.0.2.2");
    }
}
