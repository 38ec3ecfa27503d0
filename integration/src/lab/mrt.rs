//! Writes MRT TABLE_DUMP_V2 files (RFC 6396) of IPv6 unicast routes, so
//! GoBGP can inject a large prefix set in one go (`gobgp mrt inject
//! global FILE`) as the reference sender of the BGP benchmark.

use std::net::{Ipv4Addr, Ipv6Addr};

const TABLE_DUMP_V2: u16 = 13;
const PEER_INDEX_TABLE: u16 = 1;
const RIB_IPV6_UNICAST: u16 = 4;

fn record(out: &mut Vec<u8>, subtype: u16, body: &[u8]) {
    out.extend_from_slice(&0u32.to_be_bytes()); // timestamp
    out.extend_from_slice(&TABLE_DUMP_V2.to_be_bytes());
    out.extend_from_slice(&subtype.to_be_bytes());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
}

/// One peer (index 0) and one RIB entry per prefix, all with ORIGIN IGP,
/// the given AS_PATH (4-octet) and an IPv6 next hop. MP_REACH_NLRI is
/// written in its full form (AFI, SAFI, next hop, reserved, NLRI) rather
/// than RFC 6396 4.3.4's abbreviated one: GoBGP 3.10's reader only parses
/// the full form (it reads the abbreviated one as AFI 0x1020).
pub fn table_dump_v2_ipv6(
    peer_id: Ipv4Addr,
    peer_ip: Ipv6Addr,
    peer_as: u32,
    next_hop: Ipv6Addr,
    as_path: &[u32],
    prefixes: impl IntoIterator<Item = (Ipv6Addr, u8)>,
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut pit = Vec::new();
    pit.extend_from_slice(&peer_id.octets()); // collector id
    pit.extend_from_slice(&0u16.to_be_bytes()); // no view name
    pit.extend_from_slice(&1u16.to_be_bytes());
    pit.push(0b11); // IPv6 peer address, 4-octet AS
    pit.extend_from_slice(&peer_id.octets());
    pit.extend_from_slice(&peer_ip.octets());
    pit.extend_from_slice(&peer_as.to_be_bytes());
    record(&mut out, PEER_INDEX_TABLE, &pit);

    let mut attrs = vec![0x40, 1, 1, 0];
    let seg_len = 2 + 4 * as_path.len();
    attrs.extend_from_slice(&[0x40, 2, seg_len as u8, 2, as_path.len() as u8]);
    for a in as_path {
        attrs.extend_from_slice(&a.to_be_bytes());
    }

    for (seq, (addr, len)) in prefixes.into_iter().enumerate() {
        let pbytes = &addr.octets()[..usize::from(len).div_ceil(8)];
        let mut attrs = attrs.clone();
        let mp_len = 2 + 1 + 1 + 16 + 1 + 1 + pbytes.len();
        attrs.extend_from_slice(&[0x80, 14, mp_len as u8, 0, 2, 1, 16]);
        attrs.extend_from_slice(&next_hop.octets());
        attrs.push(0);
        attrs.push(len);
        attrs.extend_from_slice(pbytes);
        let mut b = Vec::with_capacity(64);
        b.extend_from_slice(&(seq as u32).to_be_bytes());
        b.push(len);
        b.extend_from_slice(pbytes);
        b.extend_from_slice(&1u16.to_be_bytes());
        b.extend_from_slice(&0u16.to_be_bytes()); // peer index
        b.extend_from_slice(&0u32.to_be_bytes()); // originated
        b.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        b.extend_from_slice(&attrs);
        record(&mut out, RIB_IPV6_UNICAST, &b);
    }
    out
}

/// The i-th benchmark prefix: `2001:db8:XXXX:YY00::/56` with XXXX = i / 256
/// and YY = i % 256, so up to 2^24 distinct documentation prefixes.
pub fn bench_prefix(i: u32) -> (Ipv6Addr, u8) {
    let hi = ((i >> 8) & 0xffff) as u16;
    let lo = ((i & 0xff) as u16) << 8;
    (Ipv6Addr::new(0x2001, 0x0db8, hi, lo, 0, 0, 0, 0), 56)
}

/// The first `n` benchmark prefixes as a YAML flow list, for a PoP's
/// `prefixes:`.
pub fn bench_prefix_list(n: u32) -> String {
    use std::fmt::Write as _;
    let mut list = String::with_capacity(n as usize * 28 + 2);
    list.push('[');
    for i in 0..n {
        let (a, l) = bench_prefix(i);
        if i > 0 {
            list.push_str(", ");
        }
        let _ = write!(list, "\"{a}/{l}\"");
    }
    list.push(']');
    list
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_prefixes_are_distinct_documentation_prefixes() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..100_000 {
            let (a, l) = bench_prefix(i);
            assert_eq!(l, 56);
            assert_eq!(a.segments()[..2], [0x2001, 0x0db8]);
            assert!(seen.insert(a), "duplicate at {i}");
        }
        assert_eq!(bench_prefix(0x1_23_45).0.to_string(), "2001:db8:123:4500::");
    }

    #[test]
    fn mrt_records_have_consistent_lengths() {
        let m = table_dump_v2_ipv6(
            Ipv4Addr::new(198, 51, 100, 2),
            "2001:db8:0:2::2".parse().unwrap(),
            65003,
            "2001:db8:0:2::2".parse().unwrap(),
            &[65003],
            (0..3).map(bench_prefix),
        );
        let mut off = 0;
        let mut n = 0;
        while off < m.len() {
            assert_eq!(u16::from_be_bytes([m[off + 4], m[off + 5]]), 13);
            let len = u32::from_be_bytes([m[off + 8], m[off + 9], m[off + 10], m[off + 11]]);
            off += 12 + len as usize;
            n += 1;
        }
        assert_eq!(off, m.len());
        assert_eq!(n, 4);
    }
}
