//! MaxMind-format databases (GeoIP2 / GeoLite2 City or Country `.mmdb`)
//! for `geo` country/continent rules and `nearest` steering.
//!
//! A [`GeoDb`] is opened once per config load (validation fails with the
//! path if the file is not a MaxMind database), held by the validated
//! config and shared through an `Arc` by every steering plan built from it.
//! Lookups are per block (an address and prefix length: the DNS server
//! passes the client address masked to /24 for IPv4 or /56 for IPv6, or the
//! ECS source prefix if shorter) and cached in a small direct-mapped table,
//! so a query costs one hash and one uncontended lock, not a tree walk and
//! a decode. It reads no clock and does no I/O after [`GeoDb::open`].
//!
//! It knows nothing of DNS or steering: config validation and the DNS
//! server both use it, and it uses neither.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ipnet::IpNet;
use serde::Deserialize;

/// Number of cached client blocks (a power of two).
const CACHE_SLOTS: usize = 4096;

/// A two-letter code (country ISO 3166-1 alpha-2, or continent).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Code(pub [u8; 2]);

impl Code {
    /// Parses two ASCII letters (any case) into an upper-case code.
    pub fn parse(s: &str) -> Option<Code> {
        let b = s.as_bytes();
        (b.len() == 2 && b.iter().all(u8::is_ascii_alphabetic))
            .then(|| Code([b[0].to_ascii_uppercase(), b[1].to_ascii_uppercase()]))
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("??")
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

/// What the database says about a client block.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GeoInfo {
    pub country: Option<Code>,
    pub continent: Option<Code>,
    /// (latitude, longitude) in degrees.
    pub coordinates: Option<(f64, f64)>,
    /// Prefix length of the database network the answer holds for (at most
    /// the looked-up block's): the ECS scope of a decision based on it.
    pub prefix: u8,
}

impl GeoInfo {
    fn unknown(prefix: u8) -> GeoInfo {
        GeoInfo {
            country: None,
            continent: None,
            coordinates: None,
            prefix,
        }
    }
}

/// The fields we decode from a City or Country record (others are skipped).
#[derive(Deserialize)]
struct RawRecord<'a> {
    #[serde(borrow, default)]
    country: Option<RawIso<'a>>,
    #[serde(borrow, default)]
    registered_country: Option<RawIso<'a>>,
    #[serde(borrow, default)]
    continent: Option<RawContinent<'a>>,
    #[serde(default)]
    location: Option<RawLocation>,
}

#[derive(Deserialize)]
struct RawIso<'a> {
    #[serde(borrow, default)]
    iso_code: Option<&'a str>,
}

#[derive(Deserialize)]
struct RawContinent<'a> {
    #[serde(borrow, default)]
    code: Option<&'a str>,
}

#[derive(Deserialize)]
struct RawLocation {
    #[serde(default)]
    latitude: Option<f64>,
    #[serde(default)]
    longitude: Option<f64>,
}

#[derive(Clone, Copy)]
struct Slot {
    key: Option<(u128, u8)>,
    info: GeoInfo,
}

/// An opened MaxMind database with its per-block lookup cache.
pub struct GeoDb {
    path: PathBuf,
    reader: maxminddb::Reader<Vec<u8>>,
    cache: Box<[Mutex<Slot>]>,
}

impl fmt::Debug for GeoDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeoDb")
            .field("path", &self.path)
            .field("database_type", &self.reader.metadata().database_type)
            .finish()
    }
}

impl GeoDb {
    /// Reads and checks a database file; the error names the path.
    pub fn open(path: &Path) -> Result<GeoDb, String> {
        let bytes =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        GeoDb::from_bytes(path, bytes)
    }

    /// A database from bytes already read (`path` is for messages).
    pub fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<GeoDb, String> {
        let reader = maxminddb::Reader::from_source(bytes)
            .map_err(|e| format!("{} is not a MaxMind database (.mmdb): {e}", path.display()))?;
        let empty = Slot {
            key: None,
            info: GeoInfo::unknown(0),
        };
        Ok(GeoDb {
            path: path.to_path_buf(),
            reader,
            cache: (0..CACHE_SLOTS).map(|_| Mutex::new(empty)).collect(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The database type from its metadata (`GeoLite2-City`, ...).
    pub fn database_type(&self) -> &str {
        &self.reader.metadata().database_type
    }

    /// What the database says about the block `addr/prefix` (the address
    /// is masked to the prefix; cached per block).
    pub fn lookup(&self, addr: IpAddr, prefix: u8) -> GeoInfo {
        let net = IpNet::new(addr, prefix)
            .map(|n| n.network())
            .unwrap_or(addr);
        let bits = match net {
            IpAddr::V4(a) => u32::from(a) as u128 | (1u128 << 127),
            IpAddr::V6(a) => u128::from(a),
        };
        let key = (bits, prefix);
        let h = ((bits as u64) ^ ((bits >> 64) as u64).rotate_left(29) ^ prefix as u64)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let slot = &self.cache[(h >> 32) as usize & (CACHE_SLOTS - 1)];
        if let Ok(s) = slot.lock() {
            if s.key == Some(key) {
                return s.info;
            }
        }
        let info = self.lookup_uncached(net, prefix);
        if let Ok(mut s) = slot.lock() {
            *s = Slot {
                key: Some(key),
                info,
            };
        }
        info
    }

    /// Looks `addr` (the network address of a block of length `cap`) up
    /// in the database.
    fn lookup_uncached(&self, addr: IpAddr, cap: u8) -> GeoInfo {
        let Ok(found) = self.reader.lookup(addr) else {
            return GeoInfo::unknown(cap);
        };
        let prefix = match found.network() {
            Ok(n) if n.is_ipv4() == addr.is_ipv4() => n.prefix().min(cap),
            _ => cap,
        };
        let mut info = GeoInfo::unknown(prefix);
        let Ok(Some(rec)) = found.decode::<RawRecord<'_>>() else {
            return info;
        };
        info.country = rec
            .country
            .and_then(|c| c.iso_code)
            .or_else(|| rec.registered_country.and_then(|c| c.iso_code))
            .and_then(Code::parse);
        info.continent = rec.continent.and_then(|c| c.code).and_then(Code::parse);
        info.coordinates = rec.location.and_then(|l| match (l.latitude, l.longitude) {
            (Some(lat), Some(lon))
                if lat.is_finite()
                    && lon.is_finite()
                    && (-90.0..=90.0).contains(&lat)
                    && (-180.0..=180.0).contains(&lon) =>
            {
                Some((lat, lon))
            }
            _ => None,
        });
        info
    }
}

/// Mean Earth radius in km.
pub const EARTH_RADIUS_KM: f64 = 6371.0;

/// Great-circle distance in km between two (lat, lon) points (haversine).
pub fn haversine_km(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (la1, lo1) = (a.0.to_radians(), a.1.to_radians());
    let (la2, lo2) = (b.0.to_radians(), b.1.to_radians());
    let h = ((la2 - la1) / 2.0).sin().powi(2)
        + la1.cos() * la2.cos() * ((lo2 - lo1) / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * h.sqrt().min(1.0).asin()
}

/// A point as a unit vector: the nearest point has the largest dot product,
/// which orders like the haversine distance at a fraction of the cost.
pub fn unit_vector(p: (f64, f64)) -> [f64; 3] {
    let (la, lo) = (p.0.to_radians(), p.1.to_radians());
    [la.cos() * lo.cos(), la.cos() * lo.sin(), la.sin()]
}

#[doc(hidden)]
pub mod testdb;

#[cfg(test)]
mod tests {
    use super::testdb;
    use super::*;

    fn block(db: &GeoDb, s: &str, prefix: u8) -> GeoInfo {
        db.lookup(s.parse().unwrap(), prefix)
    }

    #[test]
    fn lookup_country_continent_coordinates_and_prefix() {
        let db = testdb::open_test_db();
        let de = block(&db, "192.0.2.77", 24);
        assert_eq!(de.country, Code::parse("de"));
        assert_eq!(de.continent, Code::parse("EU"));
        assert_eq!(de.coordinates, Some(testdb::FRANKFURT));
        assert_eq!(de.prefix, 24);
        let us = block(&db, "198.51.100.0", 24);
        assert_eq!(us.country.map(|c| c.to_string()).as_deref(), Some("US"));
        assert_eq!(us.continent.map(|c| c.to_string()).as_deref(), Some("NA"));
        let jp = block(&db, "2001:db8:1:ff00::", 56);
        assert_eq!(jp.country.map(|c| c.to_string()).as_deref(), Some("JP"));
        // The database network is a /48: the answer holds for all of it.
        assert_eq!(jp.prefix, 48);
        // A /40 block: the /48 is longer, the answer holds for the /40
        // block we looked up.
        let jp40 = block(&db, "2001:db8::", 40);
        assert_eq!(jp40.prefix, 40);
        // Not in the database: nothing, and the prefix of the empty network.
        let none = block(&db, "10.9.8.0", 24);
        assert_eq!(none.country, None);
        assert_eq!(none.coordinates, None);
        assert!(none.prefix <= 24);
        // Country-only record: no coordinates.
        let fr = block(&db, "203.0.113.128", 24);
        // The address is masked: a host of the /24 gets the /24's answer.
        assert_eq!(fr.prefix, 24);
        assert_eq!(fr.country.map(|c| c.to_string()).as_deref(), Some("FR"));
        assert_eq!(fr.coordinates, None);
    }

    #[test]
    fn cache_gives_the_same_answer_per_block() {
        let db = testdb::open_test_db();
        let a = block(&db, "192.0.2.1", 24);
        let b = block(&db, "192.0.2.254", 24);
        assert_eq!(a, b);
        // Many blocks (more than the cache holds) stay correct.
        for i in 0..10_000u32 {
            let addr = std::net::Ipv4Addr::from(0x0a00_0000 | (i << 8));
            let info = db.lookup(addr.into(), 24);
            assert_eq!(info.country, None);
        }
        assert_eq!(block(&db, "192.0.2.9", 24), a);
    }

    #[test]
    fn open_rejects_missing_and_non_mmdb_files_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.mmdb");
        let e = GeoDb::open(&missing).unwrap_err();
        assert!(e.contains("cannot read") && e.contains("nope.mmdb"), "{e}");
        let junk = dir.path().join("junk.mmdb");
        std::fs::write(&junk, b"this is not a database").unwrap();
        let e = GeoDb::open(&junk).unwrap_err();
        assert!(
            e.contains("junk.mmdb") && e.contains("not a MaxMind"),
            "{e}"
        );
        let good = dir.path().join("good.mmdb");
        std::fs::write(&good, testdb::build(&testdb::doc_entries())).unwrap();
        let db = GeoDb::open(&good).unwrap();
        assert_eq!(db.database_type(), "anypop-test");
    }

    #[test]
    fn haversine_known_distances() {
        // Frankfurt – New York ≈ 6200 km; zero to itself.
        let d = haversine_km(testdb::FRANKFURT, testdb::NEW_YORK);
        assert!((6150.0..6250.0).contains(&d), "{d}");
        assert_eq!(haversine_km(testdb::TOKYO, testdb::TOKYO), 0.0);
        // The unit-vector order agrees with the distance order.
        let c = unit_vector((50.0, 5.0));
        let dot = |p| {
            let v = unit_vector(p);
            c[0] * v[0] + c[1] * v[1] + c[2] * v[2]
        };
        assert!(dot(testdb::FRANKFURT) > dot(testdb::NEW_YORK));
        assert!(
            haversine_km((50.0, 5.0), testdb::FRANKFURT)
                < haversine_km((50.0, 5.0), testdb::NEW_YORK)
        );
    }
}
