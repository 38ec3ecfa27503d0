//! A minimal MaxMind DB (`.mmdb`) writer for tests: an IPv6 search tree
//! with 32-bit records (IPv4 networks under `::/96`, as MaxMind does), a
//! data section of City-shaped records (country, continent, location) and
//! the metadata map. Used by unit tests and the integration test to make
//! small databases of documentation prefixes; not for production data.

use std::net::IpAddr;

use ipnet::IpNet;

/// Frankfurt (lat, lon).
pub const FRANKFURT: (f64, f64) = (50.11, 8.68);
/// New York (lat, lon).
pub const NEW_YORK: (f64, f64) = (40.71, -74.01);
/// Tokyo (lat, lon).
pub const TOKYO: (f64, f64) = (35.68, 139.69);
/// Sydney (lat, lon).
pub const SYDNEY: (f64, f64) = (-33.87, 151.21);

/// One network of a test database.
#[derive(Debug, Clone, Default)]
pub struct Entry {
    pub net: Option<IpNet>,
    pub country: Option<String>,
    pub continent: Option<String>,
    pub location: Option<(f64, f64)>,
}

impl Entry {
    pub fn new(net: &str, country: &str, continent: &str, location: Option<(f64, f64)>) -> Entry {
        Entry {
            net: net.parse().ok(),
            country: Some(country.to_string()),
            continent: Some(continent.to_string()),
            location,
        }
    }
}

/// The standard test set over documentation prefixes:
/// 192.0.2.0/24 DE/EU Frankfurt, 198.51.100.0/24 US/NA New York,
/// 203.0.113.0/24 FR/EU without coordinates, 2001:db8:1::/48 JP/AS Tokyo,
/// 2001:db8:2::/48 AU/OC Sydney.
pub fn doc_entries() -> Vec<Entry> {
    vec![
        Entry::new("192.0.2.0/24", "DE", "EU", Some(FRANKFURT)),
        Entry::new("198.51.100.0/24", "US", "NA", Some(NEW_YORK)),
        Entry::new("203.0.113.0/24", "FR", "EU", None),
        Entry::new("2001:db8:1::/48", "JP", "AS", Some(TOKYO)),
        Entry::new("2001:db8:2::/48", "AU", "OC", Some(SYDNEY)),
    ]
}

/// The standard test set, opened.
pub fn open_test_db() -> super::GeoDb {
    match super::GeoDb::from_bytes(std::path::Path::new("test.mmdb"), build(&doc_entries())) {
        Ok(db) => db,
        Err(e) => panic!("test database: {e}"),
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Rec {
    Empty,
    Node(u32),
    Data(u32),
}

/// Encodes a database holding `entries` (later entries inside earlier
/// ones override them; entries without `net` are skipped).
pub fn build(entries: &[Entry]) -> Vec<u8> {
    let mut nodes: Vec<[Rec; 2]> = vec![[Rec::Empty; 2]];
    let mut data: Vec<u8> = Vec::new();
    for e in entries {
        let Some(net) = e.net else { continue };
        let (bits, len): (u128, u8) = match net.network() {
            IpAddr::V4(a) => (u32::from(a) as u128, 96 + net.prefix_len()),
            IpAddr::V6(a) => (u128::from(a), net.prefix_len()),
        };
        if len == 0 {
            continue;
        }
        let off = data.len() as u32;
        encode_record(&mut data, e);
        let mut node = 0usize;
        for depth in 0..len {
            let bit = ((bits >> (127 - depth)) & 1) as usize;
            if depth == len - 1 {
                nodes[node][bit] = Rec::Data(off);
                break;
            }
            node = match nodes[node][bit] {
                Rec::Node(n) => n as usize,
                other => {
                    // Split an empty or shorter network into a new node.
                    nodes.push([other; 2]);
                    let n = nodes.len() - 1;
                    nodes[node][bit] = Rec::Node(n as u32);
                    n
                }
            };
        }
    }
    let count = nodes.len() as u32;
    let mut out = Vec::new();
    for n in &nodes {
        for r in n {
            let v = match *r {
                Rec::Empty => count,
                Rec::Node(i) => i,
                Rec::Data(off) => count + 16 + off,
            };
            out.extend_from_slice(&v.to_be_bytes());
        }
    }
    out.extend_from_slice(&[0u8; 16]);
    out.extend_from_slice(&data);
    out.extend_from_slice(b"\xab\xcd\xefMaxMind.com");
    let mut meta = Vec::new();
    map_header(&mut meta, 9);
    string(&mut meta, "binary_format_major_version");
    uint(&mut meta, 5, 2);
    string(&mut meta, "binary_format_minor_version");
    uint(&mut meta, 5, 0);
    string(&mut meta, "build_epoch");
    uint(&mut meta, 9, 1_700_000_000);
    string(&mut meta, "database_type");
    string(&mut meta, "anypop-test");
    string(&mut meta, "description");
    map_header(&mut meta, 1);
    string(&mut meta, "en");
    string(&mut meta, "anypop test database (documentation prefixes)");
    string(&mut meta, "ip_version");
    uint(&mut meta, 5, 6);
    string(&mut meta, "languages");
    header(&mut meta, 11, 1);
    string(&mut meta, "en");
    string(&mut meta, "node_count");
    uint(&mut meta, 6, count as u64);
    string(&mut meta, "record_size");
    uint(&mut meta, 5, 32);
    out.extend_from_slice(&meta);
    out
}

fn encode_record(out: &mut Vec<u8>, e: &Entry) {
    let n = e.country.is_some() as usize
        + e.continent.is_some() as usize
        + e.location.is_some() as usize;
    map_header(out, n);
    if let Some(c) = &e.country {
        string(out, "country");
        map_header(out, 1);
        string(out, "iso_code");
        string(out, c);
    }
    if let Some(c) = &e.continent {
        string(out, "continent");
        map_header(out, 1);
        string(out, "code");
        string(out, c);
    }
    if let Some((lat, lon)) = e.location {
        string(out, "location");
        map_header(out, 2);
        string(out, "latitude");
        double(out, lat);
        string(out, "longitude");
        double(out, lon);
    }
}

/// A control byte (and size bytes) for data type `t` of `size`.
fn header(out: &mut Vec<u8>, t: u8, size: usize) {
    let (small, extra): (u8, Vec<u8>) = if size < 29 {
        (size as u8, vec![])
    } else if size < 285 {
        (29, vec![(size - 29) as u8])
    } else {
        let s = size - 285;
        (30, vec![(s >> 8) as u8, s as u8])
    };
    if t <= 7 {
        out.push((t << 5) | small);
    } else {
        out.push(small);
        out.push(t - 7);
    }
    out.extend_from_slice(&extra);
}

fn map_header(out: &mut Vec<u8>, pairs: usize) {
    header(out, 7, pairs);
}

fn string(out: &mut Vec<u8>, s: &str) {
    header(out, 2, s.len());
    out.extend_from_slice(s.as_bytes());
}

fn double(out: &mut Vec<u8>, v: f64) {
    header(out, 3, 8);
    out.extend_from_slice(&v.to_be_bytes());
}

/// An unsigned integer of type `t` (5 uint16, 6 uint32, 9 uint64), minimal bytes.
fn uint(out: &mut Vec<u8>, t: u8, v: u64) {
    let bytes = v.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    header(out, t, 8 - skip);
    out.extend_from_slice(&bytes[skip..]);
}
