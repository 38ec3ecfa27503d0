//! Shared by every section: the error collector ([`Ctx`]) and parsers of
//! scalar values (addresses, prefixes, socket addresses, URLs, domain
//! names) that several sections use.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;

use crate::config::duration::parse_duration;
use crate::config::raw::*;
use crate::config::ConfigError;
use crate::model::*;

/// Largest TTL DNS allows (RFC 2181).
const MAX_TTL: u64 = 2_147_483_647;

#[derive(Default)]
pub(super) struct Ctx {
    pub(super) errors: Vec<ConfigError>,
    /// `dns.geoip` is configured (country/continent rules and `nearest` need it).
    pub(super) geoip: bool,
    /// PoPs with a `location` (what `nearest` can steer to).
    pub(super) pops_with_location: BTreeSet<String>,
}

impl Ctx {
    pub(super) fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError {
            path: path.into(),
            message: message.into(),
        });
    }

    /// Records the error of `r` at `path`.
    pub(super) fn ok<T>(&mut self, path: &str, r: Result<T, String>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.err(path, e);
                None
            }
        }
    }

    pub(super) fn duration(
        &mut self,
        path: &str,
        raw: Option<&RawDuration>,
    ) -> Option<Option<Duration>> {
        match raw {
            None => Some(None),
            Some(r) => self.ok(path, parse_duration(&r.0)).map(Some),
        }
    }

    /// A TTL-like value in whole seconds, 0..=2^31-1.
    pub(super) fn seconds(&mut self, path: &str, raw: Option<&RawDuration>, default: u32) -> u32 {
        let Some(r) = raw else { return default };
        let Some(d) = self.ok(path, parse_duration(&r.0)) else {
            return default;
        };
        if d.subsec_nanos() != 0 {
            self.err(path, format!("{:?} is not a whole number of seconds", r.0));
            return default;
        }
        if d.as_secs() > MAX_TTL {
            self.err(
                path,
                format!("{:?} is too long (at most {MAX_TTL} seconds)", r.0),
            );
            return default;
        }
        d.as_secs() as u32
    }

    pub(super) fn name<K>(&mut self, path: &str, s: &str) -> Option<Name<K>> {
        self.ok(path, Name::parse(s))
    }
}

/// Checks an AS number (4-octet, RFC 6793).
pub(super) fn check_asn(asn: u64) -> Result<u32, String> {
    match asn {
        0 => Err("AS 0 is reserved (RFC 7607): expected 1 to 4294967294".into()),
        23456 => Err("AS 23456 is AS_TRANS (RFC 6793), not a real AS number".into()),
        1..=4_294_967_294 => Ok(asn as u32),
        _ => Err(format!(
            "{asn} is not an AS number: expected 1 to 4294967294"
        )),
    }
}

pub(super) fn unknown_pop(name: &str, pops: &BTreeMap<&str, usize>) -> String {
    if pops.is_empty() {
        format!("unknown PoP {name:?}: no PoPs are defined under `pops`")
    } else {
        let known: Vec<&str> = pops.keys().copied().collect();
        format!("unknown PoP {name:?} (known PoPs: {})", known.join(", "))
    }
}

pub(super) fn parse_ip(s: &str) -> Result<IpAddr, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("{s:?} is not an IP address: expected e.g. 192.0.2.1 or 2001:db8::1"))
}

/// A prefix, refusing host bits and bare addresses with a suggestion.
pub(super) fn parse_prefix(s: &str) -> Result<IpNet, String> {
    let t = s.trim();
    if !t.contains('/') {
        if let Ok(a) = t.parse::<IpAddr>() {
            let len = if a.is_ipv4() { 32 } else { 128 };
            return Err(format!(
                "{s:?} is an address, not a prefix: expected address/length; did you mean {a}/{len}?"
            ));
        }
    }
    let net: IpNet = t.parse().map_err(|_| {
        format!(
            "{s:?} is not a valid prefix: expected address/length, e.g. 203.0.113.0/24 or 2001:db8::/48"
        )
    })?;
    if net.addr() != net.network() {
        return Err(format!(
            "{s:?} has host bits set; did you mean {}?",
            net.trunc()
        ));
    }
    Ok(net)
}

/// `addr:port`, `[v6]:port`, or a bare address with `default_port`.
pub(super) fn parse_socket_addr(s: &str, default_port: u16) -> Result<SocketAddr, String> {
    let t = s.trim();
    if let Ok(a) = t.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Ok(ip) = t
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        return Ok(SocketAddr::new(ip, default_port));
    }
    Err(format!(
        "{s:?} is not a socket address: expected ADDRESS:PORT, e.g. 127.0.0.1:{default_port} or [::1]:{default_port}"
    ))
}

/// A domain name, lower case and fully qualified. Relative names (no
/// trailing dot) are completed with `origin` (`@` is the origin itself).
pub(super) fn parse_domain(s: &str, origin: Option<&str>) -> Result<String, String> {
    let t = s.trim().to_ascii_lowercase();
    let full = if t == "@" {
        match origin {
            Some(o) => o.to_string(),
            None => return Err("\"@\" is only allowed inside a zone".into()),
        }
    } else if t.ends_with('.') {
        t
    } else if t.is_empty() {
        return Err("expected a domain name, got an empty string".into());
    } else {
        match origin {
            Some(".") | None => format!("{t}."),
            Some(o) => format!("{t}.{o}"),
        }
    };
    if full == "." {
        return Ok(full);
    }
    if full.len() > 254 {
        return Err(format!(
            "{s:?} is too long for a domain name (at most 253 characters)"
        ));
    }
    let labels: Vec<&str> = full[..full.len() - 1].split('.').collect();
    for (i, label) in labels.iter().enumerate() {
        if label.is_empty() || label.len() > 63 {
            return Err(format!(
                "{s:?} is not a valid domain name: each label must be 1 to 63 characters"
            ));
        }
        if *label == "*" && i == 0 {
            continue;
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(format!(
                "{s:?} is not a valid domain name: character {c:?} is not allowed"
            ));
        }
    }
    Ok(full)
}
