//! The config file as written: serde structs that mirror the YAML, with
//! `deny_unknown_fields` everywhere so a typo is an error, not a silently
//! ignored key. Values that need checking (addresses, prefixes, durations,
//! names) stay strings here; `validate` turns them into model types and
//! collects every error with its path. Nothing outside `config` sees these.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub node: RawNode,
    #[serde(default)]
    pub bgp: RawBgp,
    #[serde(default)]
    pub pops: Vec<RawPop>,
    #[serde(default)]
    pub dns: Option<RawDns>,
    #[serde(default)]
    pub api: RawApi,
    pub fleet: Option<RawFleet>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNode {
    pub name: String,
    pub pop: Option<String>,
    pub router_id: Option<String>,
    pub asn: Option<u64>,
    pub state_dir: Option<PathBuf>,
    /// `refuse` (default) or `start_empty`.
    #[serde(default)]
    pub on_corrupt_state: RawCorruptState,
}

/// What to do when the admin state file cannot be read.
#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawCorruptState {
    /// Refuse to start and say why: a drain is never silently forgotten.
    #[default]
    Refuse,
    /// Move the file aside, log an error and start with no overrides.
    StartEmpty,
}

// ---------------------------------------------------------------- BGP

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBgp {
    pub listen: Option<String>,
    #[serde(default)]
    pub shutdown: RawShutdown,
    pub graceful_restart: Option<RawDuration>,
    pub min_hold_time: Option<RawDuration>,
    #[serde(default)]
    pub peers: Vec<RawPeer>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawShutdown {
    #[default]
    Withdraw,
    GracefulRestart,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPeer {
    pub name: String,
    pub address: String,
    pub port: Option<u16>,
    pub remote_asn: u64,
    pub local_asn: Option<u64>,
    pub local_address: Option<String>,
    #[serde(default)]
    pub passive: bool,
    pub hold_time: Option<RawDuration>,
    pub min_hold_time: Option<RawDuration>,
    pub connect_retry: Option<RawDuration>,
    pub md5_password_file: Option<PathBuf>,
    #[serde(default)]
    pub ttl_security: bool,
    pub families: Option<Vec<RawFamily>>,
    pub next_hop_v4: Option<String>,
    pub next_hop_v6: Option<String>,
    pub bfd: Option<RawBfd>,
}

/// `bfd: {min_tx, min_rx, multiplier}` of a peer; `bfd: {}` for defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBfd {
    pub min_tx: Option<RawDuration>,
    pub min_rx: Option<RawDuration>,
    pub multiplier: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawFamily {
    Ipv4,
    Ipv6,
}

// ---------------------------------------------------------------- PoPs

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPop {
    pub name: String,
    #[serde(default)]
    pub prefixes: Vec<String>,
    #[serde(default)]
    pub addresses: Vec<String>,
    pub location: Option<RawLocation>,
    #[serde(default)]
    pub checks: Vec<RawCheck>,
    #[serde(default)]
    pub combine: RawCombine,
    #[serde(default)]
    pub announce: RawAnnounce,
    #[serde(default)]
    pub drain: RawDrain,
    pub owners: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLocation {
    pub lat: f64,
    pub lon: f64,
}

/// `all`, `any` or `{at_least: N}`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum RawCombine {
    #[default]
    All,
    Any,
    AtLeast(u64),
}

impl<'de> Deserialize<'de> for RawCombine {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawCombine;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("`all`, `any` or `{at_least: N}`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawCombine, E> {
                match v {
                    "all" => Ok(RawCombine::All),
                    "any" => Ok(RawCombine::Any),
                    _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawCombine, A::Error> {
                let mut n = None;
                while let Some(key) = map.next_key::<String>()? {
                    if key != "at_least" || n.is_some() {
                        return Err(de::Error::unknown_field(&key, &["at_least"]));
                    }
                    n = Some(map.next_value::<u64>()?);
                }
                n.map(RawCombine::AtLeast)
                    .ok_or_else(|| de::Error::missing_field("at_least"))
            }
        }
        d.deserialize_any(V)
    }
}

/// Route attributes (the `degraded` block: changes on top of the normal
/// attributes).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAttrs {
    pub prepend: Option<u64>,
    pub med: Option<u64>,
    pub local_pref: Option<u64>,
    #[serde(default)]
    pub communities: Vec<String>,
    #[serde(default)]
    pub large_communities: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAnnounce {
    pub prepend: Option<u64>,
    pub med: Option<u64>,
    pub local_pref: Option<u64>,
    #[serde(default)]
    pub communities: Vec<String>,
    #[serde(default)]
    pub large_communities: Vec<String>,
    pub degraded: Option<RawAttrs>,
    #[serde(default)]
    pub on_down: RawFailAction,
    #[serde(default)]
    pub on_drain: RawFailAction,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawFailAction {
    #[default]
    Withdraw,
    Degrade,
    GracefulShutdown,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDrain {
    pub dns_wait: Option<RawDuration>,
    pub settle: Option<RawDuration>,
}

// ---------------------------------------------------------------- checks

/// One check. All per-type keys live in one struct so that a key that does
/// not belong to the check's type gets a precise error from `validate`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCheck {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: RawCheckType,
    // tcp
    pub target: Option<String>,
    // http / https
    pub url: Option<String>,
    pub host_header: Option<String>,
    pub expect_status: Option<Vec<u64>>,
    pub body_contains: Option<String>,
    pub tls_insecure: Option<bool>,
    // dns
    pub server: Option<String>,
    pub qname: Option<String>,
    pub qtype: Option<String>,
    pub expect_rcode: Option<String>,
    pub expect_answer: Option<Text>,
    // exec
    pub command: Option<Vec<Text>>,
    pub env: Option<std::collections::BTreeMap<String, Text>>,
    pub pass_env: Option<Vec<String>>,
    // file
    pub path: Option<PathBuf>,
    pub healthy_when: Option<RawHealthyWhen>,
    // process / systemd
    pub pid_file: Option<PathBuf>,
    pub unit: Option<String>,
    // interface / address
    pub interface: Option<String>,
    pub address: Option<String>,
    // timing
    pub interval: Option<RawDuration>,
    pub fast_interval: Option<RawDuration>,
    pub timeout: Option<RawDuration>,
    pub rise: Option<u64>,
    pub fall: Option<u64>,
    pub jitter: Option<RawDuration>,
    // fleet
    pub vantage: Option<RawVantage>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawVantage {
    Inside,
    Outside,
    Both,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawCheckType {
    Tcp,
    Http,
    Https,
    Dns,
    Exec,
    File,
    Process,
    Systemd,
    Interface,
    Address,
}

impl RawCheckType {
    pub fn as_str(self) -> &'static str {
        match self {
            RawCheckType::Tcp => "tcp",
            RawCheckType::Http => "http",
            RawCheckType::Https => "https",
            RawCheckType::Dns => "dns",
            RawCheckType::Exec => "exec",
            RawCheckType::File => "file",
            RawCheckType::Process => "process",
            RawCheckType::Systemd => "systemd",
            RawCheckType::Interface => "interface",
            RawCheckType::Address => "address",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawHealthyWhen {
    Present,
    Absent,
}

// ---------------------------------------------------------------- DNS

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDns {
    pub listen: Option<Vec<String>>,
    pub nsid: Option<String>,
    pub chaos: Option<String>,
    #[serde(default)]
    pub zones: Vec<RawZone>,
    pub geoip: Option<RawGeoIp>,
    pub rate_limit: Option<RawRateLimitSetting>,
    pub udp_workers: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGeoIp {
    pub database: PathBuf,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    pub responses_per_second: Option<u64>,
    pub slip: Option<u64>,
    pub window: Option<RawDuration>,
}

/// `dns.rate_limit`: `off` (or `false`), or the settings (`{}` or `true`:
/// all defaults).
#[derive(Debug)]
pub enum RawRateLimitSetting {
    Off,
    On(RawRateLimit),
}

impl<'de> Deserialize<'de> for RawRateLimitSetting {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawRateLimitSetting;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("`off` or `{responses_per_second: N, slip: N, window: DURATION}`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                match v {
                    "off" => Ok(RawRateLimitSetting::Off),
                    _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
                }
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(match v {
                    false => RawRateLimitSetting::Off,
                    true => RawRateLimitSetting::On(RawRateLimit::default()),
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                RawRateLimit::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(RawRateLimitSetting::On)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawZone {
    pub origin: String,
    #[serde(default)]
    pub soa: RawSoa,
    #[serde(default)]
    pub ns: Vec<String>,
    pub ttl: Option<RawDuration>,
    #[serde(default)]
    pub records: Vec<RawRecord>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSoa {
    pub mname: Option<String>,
    pub rname: Option<String>,
    pub serial: Option<u64>,
    pub refresh: Option<RawDuration>,
    pub retry: Option<RawDuration>,
    pub expire: Option<RawDuration>,
    pub minimum: Option<RawDuration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRecord {
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: Option<String>,
    pub ttl: Option<RawDuration>,
    pub values: Option<Vec<Text>>,
    pub steer: Option<RawSteer>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSteer {
    pub policy: RawPolicy,
    pub pops: Option<Vec<String>>,
    pub weights: Option<BTreeMap<String, u64>>,
    pub map: Option<Vec<RawGeoEntry>>,
    pub default: Option<Vec<String>>,
    pub max: Option<u64>,
    pub short_ttl: Option<RawDuration>,
    pub settle: Option<RawDuration>,
    pub fallback: Option<Vec<String>>,
    pub min_healthy_pops: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawPolicy {
    Failover,
    Weighted,
    Geo,
    AllHealthy,
    Nearest,
}

impl RawPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            RawPolicy::Failover => "failover",
            RawPolicy::Weighted => "weighted",
            RawPolicy::Geo => "geo",
            RawPolicy::AllHealthy => "all_healthy",
            RawPolicy::Nearest => "nearest",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGeoEntry {
    pub subnet: Option<String>,
    pub country: Option<String>,
    pub continent: Option<String>,
    pub pops: Vec<String>,
}

// ---------------------------------------------------------------- API

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApi {
    /// Missing: the default listener; `null` or `off`: no listener.
    #[serde(default = "default_api_listen")]
    pub listen: Option<String>,
    pub token_file: Option<PathBuf>,
    /// Missing: on for a listener off loopback with a token, else off.
    pub protect_reads: Option<bool>,
    /// Allow changes without a token on a non-loopback listener.
    #[serde(default)]
    pub allow_unauthenticated: bool,
    /// Host names (or addresses) clients may use in `Host`, besides the
    /// listen address; `"*"` accepts any.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    pub header_read_timeout: Option<RawDuration>,
    pub max_connections: Option<u64>,
}

/// Default API listener.
pub const DEFAULT_API_LISTEN: &str = "127.0.0.1:8080";

fn default_api_listen() -> Option<String> {
    Some(DEFAULT_API_LISTEN.to_string())
}

impl Default for RawApi {
    fn default() -> Self {
        RawApi {
            listen: default_api_listen(),
            token_file: None,
            protect_reads: None,
            allow_unauthenticated: false,
            allowed_hosts: Vec::new(),
            header_read_timeout: None,
            max_connections: None,
        }
    }
}

// ---------------------------------------------------------------- scalars

/// A duration as written: a string (`"200ms"`) or a number of seconds.
/// Parsed by `validate`, so that every bad duration is reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawDuration(pub String);

impl<'de> Deserialize<'de> for RawDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarText {
            expecting: "a duration like \"200ms\", \"1s\", \"2m\" or a number of seconds",
            bools: false,
            float_suffix: "s",
        })
        .map(RawDuration)
    }
}

/// Free text that YAML may have typed as a number or boolean
/// (`values: [10]`, `command: [sleep, 1]`): kept as the text written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text(pub String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarText {
            expecting: "a string",
            bools: true,
            float_suffix: "",
        })
        .map(Text)
    }
}

/// Reads a YAML scalar (string, integer, float and, if `bools`, boolean)
/// as the text written; a float gets `float_suffix` appended.
struct ScalarText {
    expecting: &'static str,
    bools: bool,
    float_suffix: &'static str,
}

impl<'de> Visitor<'de> for ScalarText {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.expecting)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
        if self.bools {
            Ok(v.to_string())
        } else {
            Err(E::invalid_type(de::Unexpected::Bool(v), &self))
        }
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        Ok(format!("{v}{}", self.float_suffix))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::{RawDuration, Text};

    fn duration(yaml: &str) -> Result<String, String> {
        serde_yaml::from_str::<RawDuration>(yaml)
            .map(|d| d.0)
            .map_err(|e| e.to_string())
    }

    fn text(yaml: &str) -> Result<String, String> {
        serde_yaml::from_str::<Text>(yaml)
            .map(|t| t.0)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn scalars_are_kept_as_written() {
        assert_eq!(duration("200ms").as_deref(), Ok("200ms"));
        assert_eq!(duration("2").as_deref(), Ok("2"));
        assert_eq!(duration("-3").as_deref(), Ok("-3"));
        assert_eq!(duration("1.5").as_deref(), Ok("1.5s"));
        let err = duration("true").expect_err("a boolean is no duration");
        assert!(
            err.contains("invalid type: boolean `true`")
                && err.contains("expected a duration like \"200ms\""),
            "{err}"
        );
        assert!(duration("[1]").is_err());

        assert_eq!(text("sleep").as_deref(), Ok("sleep"));
        assert_eq!(text("10").as_deref(), Ok("10"));
        assert_eq!(text("-1").as_deref(), Ok("-1"));
        assert_eq!(text("1.5").as_deref(), Ok("1.5"));
        assert_eq!(text("true").as_deref(), Ok("true"));
        let err = text("{a: 1}").expect_err("a map is no text");
        assert!(err.contains("expected a string"), "{err}");
    }
}

// ---------------------------------------------------------------- fleet

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFleet {
    #[serde(default)]
    pub peers: Vec<RawFleetPeer>,
    pub pull_interval: Option<RawDuration>,
    pub stale_after: Option<RawDuration>,
    pub timeout: Option<RawDuration>,
    pub stream: Option<bool>,
    pub unreachable_quorum: Option<u64>,
    pub forward_admin: Option<bool>,
    pub drain_ack_timeout: Option<RawDuration>,
    pub fail_static: Option<RawFailStatic>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFleetPeer {
    pub name: String,
    pub pop: Option<String>,
    pub url: String,
    pub token_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
}

/// `fail_static: off` or `{fraction, min_pops, window}`.
#[derive(Debug)]
pub enum RawFailStatic {
    Off,
    On(RawFailStaticRule),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFailStaticRule {
    pub fraction: Option<f64>,
    pub min_pops: Option<u64>,
    pub window: Option<RawDuration>,
}

impl<'de> Deserialize<'de> for RawFailStatic {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Word(String),
            Rule(RawFailStaticRule),
        }
        match Either::deserialize(d)
            .map_err(|_| de::Error::custom("expected `off` or {fraction, min_pops, window}"))?
        {
            Either::Word(w) if w == "off" => Ok(RawFailStatic::Off),
            Either::Word(w) => Err(de::Error::custom(format!(
                "{w:?}: expected `off` or {{fraction, min_pops, window}}"
            ))),
            Either::Rule(r) => Ok(RawFailStatic::On(r)),
        }
    }
}
