//! Reads the BGP messages out of a classic pcap file written by `tcpdump
//! -w` on an Ethernet (veth) interface.
//!
//! [`read_segments`]: for each TCP segment, its capture time, addresses,
//! and the BGP message types that start in its payload. Used by the
//! benchmark to timestamp UPDATEs on the wire; assumes messages start at
//! segment boundaries (true for the small UPDATEs of a single state change;
//! a continuation segment simply yields no types).
//!
//! [`tcp_streams`] and [`bgp_messages`]: the byte stream of every TCP
//! connection and direction, reassembled by sequence number, cut into whole
//! BGP messages. Used to capture the golden wire fixtures.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use super::Lab;

/// tcpdump writing the BGP traffic (`tcp port 179`) of one interface of a
/// lab node to a pcap file. Stopped (SIGINT, so the file is complete) by
/// [`Tcpdump::stop`] or on drop.
pub struct Tcpdump {
    child: Option<Child>,
    file: PathBuf,
}

impl Tcpdump {
    /// Starts the capture and waits until tcpdump wrote the file header.
    /// `snaplen` 0 keeps whole packets.
    pub fn start(
        lab: &Lab,
        node: &str,
        iface: &str,
        file: &Path,
        snaplen: u32,
    ) -> Result<Tcpdump, String> {
        let child = lab
            .cmd(node, "tcpdump")
            // --immediate-mode: without it libpcap hands packets over in
            // blocks (up to a 1 s buffer timeout), and the packets still in
            // the kernel ring when tcpdump is stopped are lost (the last
            // flips of a benchmark run had no UPDATE in the capture).
            .args(["-i", iface, "--immediate-mode", "-U", "-s"])
            .arg(snaplen.to_string())
            .arg("-w")
            .arg(file)
            .args(["tcp", "port", "179"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("tcpdump: {e}"))?;
        let t = Tcpdump {
            child: Some(child),
            file: file.to_path_buf(),
        };
        let started = crate::wait_until(std::time::Duration::from_secs(10), || {
            std::fs::metadata(file).is_ok_and(|m| m.len() >= 24)
        });
        if started {
            Ok(t)
        } else {
            Err(format!("tcpdump did not start writing {}", file.display()))
        }
    }

    /// The pcap file.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// What was captured so far.
    pub fn read(&self) -> Result<Vec<u8>, String> {
        std::fs::read(&self.file).map_err(|e| format!("read {}: {e}", self.file.display()))
    }

    /// Stops the capture (SIGINT: tcpdump flushes and closes the file).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            super::kill_pid(c.id() as i32, libc::SIGINT);
            let _ = c.wait();
        }
    }
}

impl Drop for Tcpdump {
    fn drop(&mut self) {
        self.stop();
    }
}

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

/// One captured TCP segment, payload included.
#[derive(Debug, Clone, PartialEq)]
pub struct TcpSegment {
    /// Capture time, seconds since the epoch.
    pub ts: f64,
    pub flow: Flow,
    pub seq: u32,
    pub syn: bool,
    pub payload: Vec<u8>,
}

/// One direction of one TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Flow {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
}

/// Parses a pcap file into its TCP segments (with or without payload);
/// errors describe what was wrong.
pub fn read_tcp(data: &[u8]) -> Result<Vec<TcpSegment>, String> {
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

/// Parses a pcap file into the TCP segments that carry data, with the BGP
/// message types starting in each.
pub fn read_segments(data: &[u8]) -> Result<Vec<Segment>, String> {
    Ok(read_tcp(data)?
        .into_iter()
        .filter(|s| !s.payload.is_empty())
        .map(|s| Segment {
            ts: s.ts,
            src: s.flow.src,
            dst: s.flow.dst,
            src_port: s.flow.src_port,
            dst_port: s.flow.dst_port,
            bgp_types: bgp_types(&s.payload),
        })
        .collect())
}

/// Types of the BGP messages that start at the front of `payload` and
/// follow each other in it.
fn bgp_types(payload: &[u8]) -> Vec<u8> {
    let mut types = Vec::new();
    let mut p = payload;
    while p.len() >= 19 && p[..16].iter().all(|b| *b == 0xff) {
        types.push(p[18]);
        let len = usize::from(u16::from_be_bytes([p[16], p[17]]));
        if len < 19 || len > p.len() {
            break;
        }
        p = &p[len..];
    }
    types
}

fn parse_frame(f: &[u8], ts: f64) -> Option<TcpSegment> {
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
    let seq = u32::from_be_bytes(tcp.get(4..8)?.try_into().ok()?);
    let syn = tcp.get(13)? & 0x02 != 0;
    let doff = usize::from(tcp.get(12)? >> 4) * 4;
    let payload = tcp.get(doff..)?.to_vec();
    Some(TcpSegment {
        ts,
        flow: Flow {
            src,
            dst,
            src_port,
            dst_port,
        },
        seq,
        syn,
        payload,
    })
}

/// The byte stream of every flow, reassembled by sequence number from the
/// SYN on (retransmitted bytes are taken once). A flow whose SYN was not
/// captured, or with a hole in its bytes, is an error: the capture must
/// start before the connections.
pub fn tcp_streams(segments: &[TcpSegment]) -> Result<Vec<(Flow, Vec<u8>)>, String> {
    let mut flows: Vec<(Flow, u32, Vec<u8>)> = Vec::new();
    for s in segments {
        if s.syn {
            // A new connection (or a retransmitted SYN) restarts the flow.
            flows.retain(|(f, _, _)| *f != s.flow);
            flows.push((s.flow, s.seq.wrapping_add(1), Vec::new()));
            continue;
        }
        if s.payload.is_empty() {
            continue;
        }
        let Some((_, isn, bytes)) = flows.iter_mut().rev().find(|(f, _, _)| *f == s.flow) else {
            return Err(format!("{:?}: data before the SYN", s.flow));
        };
        let off = s.seq.wrapping_sub(*isn) as usize;
        if off > bytes.len() {
            return Err(format!(
                "{:?}: hole at byte {} (segment at {off})",
                s.flow,
                bytes.len()
            ));
        }
        let end = off + s.payload.len();
        if end > bytes.len() {
            bytes.extend_from_slice(&s.payload[bytes.len() - off..]);
        }
    }
    Ok(flows.into_iter().map(|(f, _, b)| (f, b)).collect())
}

/// Cuts a stream into whole BGP messages (header included); a partial
/// message at the end is left out.
pub fn bgp_messages(stream: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::new();
    let mut p = stream;
    while p.len() >= 19 {
        if p[..16].iter().any(|b| *b != 0xff) {
            return Err(format!("no BGP marker at byte {}", stream.len() - p.len()));
        }
        let len = usize::from(u16::from_be_bytes([p[16], p[17]]));
        if len < 19 {
            return Err(format!("BGP length {len}"));
        }
        if len > p.len() {
            break;
        }
        out.push(p[..len].to_vec());
        p = &p[len..];
    }
    Ok(out)
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

    /// An Ethernet/IPv4/TCP frame 192.0.2.2:40000 -> 192.0.2.1:179.
    fn frame(seq: u32, syn: bool, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x08, 0x00]);
        let total = 20 + 20 + payload.len();
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
        tcp[4..8].copy_from_slice(&seq.to_be_bytes());
        tcp[12] = 5 << 4;
        tcp[13] = if syn { 0x02 } else { 0x18 };
        f.extend(ip);
        f.extend(tcp);
        f.extend_from_slice(payload);
        f
    }

    /// A pcap file of `frames`, 10.5 s after the epoch each.
    fn pcap(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut pcap = Vec::new();
        pcap.extend_from_slice(&0xa1b2c3d4u32.to_le_bytes());
        pcap.extend_from_slice(&[2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0]);
        pcap.extend_from_slice(&1u32.to_le_bytes());
        for f in frames {
            pcap.extend_from_slice(&10u32.to_le_bytes());
            pcap.extend_from_slice(&500_000u32.to_le_bytes());
            pcap.extend_from_slice(&(f.len() as u32).to_le_bytes());
            pcap.extend_from_slice(&(f.len() as u32).to_le_bytes());
            pcap.extend_from_slice(f);
        }
        pcap
    }

    fn keepalive() -> Vec<u8> {
        let mut m = vec![0xff; 16];
        m.extend_from_slice(&[0, 19, 4]);
        m
    }

    #[test]
    fn parses_a_bgp_keepalive_frame() {
        let segs = read_segments(&pcap(&[frame(1, false, &keepalive())])).unwrap();
        assert_eq!(segs.len(), 1);
        assert_eq!(segs[0].bgp_types, vec![4]);
        assert_eq!(segs[0].dst_port, 179);
        assert!((segs[0].ts - 10.5).abs() < 1e-9);
        assert_eq!(segs[0].src.to_string(), "192.0.2.2");
    }

    #[test]
    fn reassembles_streams_and_cuts_messages() {
        let mut two = keepalive();
        two.extend(keepalive());
        // SYN at 99: data from 100. A message split over two segments,
        // the second one retransmitted overlapping the first.
        let data = pcap(&[
            frame(99, true, &[]),
            frame(100, false, &two[..25]),
            frame(100 + 19, false, &two[19..]),
            frame(100 + 25, false, &two[25..]),
        ]);
        let segs = read_tcp(&data).unwrap();
        let streams = tcp_streams(&segs).unwrap();
        assert_eq!(streams.len(), 1);
        assert_eq!(streams[0].1, two);
        assert_eq!(
            bgp_messages(&streams[0].1).unwrap(),
            vec![keepalive(), keepalive()]
        );
        // A hole is an error, so is data without its SYN.
        let holey = pcap(&[frame(99, true, &[]), frame(120, false, &keepalive())]);
        assert!(tcp_streams(&read_tcp(&holey).unwrap()).is_err());
        let no_syn = pcap(&[frame(100, false, &keepalive())]);
        assert!(tcp_streams(&read_tcp(&no_syn).unwrap()).is_err());
        // A partial message at the end is left out; garbage is an error.
        assert_eq!(
            bgp_messages(&keepalive()[..10]).unwrap(),
            Vec::<Vec<u8>>::new()
        );
        assert!(bgp_messages(&[0u8; 19]).is_err());
    }
}
