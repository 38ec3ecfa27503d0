//! Request bodies and response shapes of the API.
//!
//! Bodies are parsed in two steps, like the config: serde into raw structs
//! (`deny_unknown_fields`; a malformed body or a wrong type is a 400 naming
//! the field), then checked values (`duration`, `mode`: a value we cannot
//! accept is a 422 naming the field). Responses borrow from the snapshot and
//! are serialized straight away.

use std::collections::BTreeMap;
use std::time::Duration;

use ipnet::IpNet;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use crate::core::admin::DrainMode;
use crate::core::hysteresis::Verdict;
use crate::core::{Announcement, CheckStatus, PopStatus, ProbeOutcome, Snapshot};
use crate::model::RecordData;

/// Longest accepted `reason` / `who`.
pub const MAX_TEXT: usize = 512;

/// Parses an optional JSON body: empty means all defaults.
pub fn parse_body<T: DeserializeOwned + Default>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::bad_request(
            "invalid request body: expected a JSON object (or no body)",
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let field = if path == "." || path.is_empty() {
            // Unknown fields are reported at the parent; pull the name out.
            unknown_field_name(&inner.to_string())
        } else {
            Some(path)
        };
        let err = ApiError::bad_request(format!("invalid request body: {inner}"));
        match field {
            Some(f) => err.field(f),
            None => err,
        }
    })
}

fn unknown_field_name(msg: &str) -> Option<String> {
    let rest = msg.strip_prefix("unknown field `")?;
    Some(rest.split('`').next()?.to_string())
}

/// A duration field given as text (`30m`) or as whole seconds (`1800`).
fn text_or_seconds<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum TextOrSeconds {
        Text(String),
        Seconds(u64),
    }
    Ok(Option::<TextOrSeconds>::deserialize(d)
        .map_err(|_| {
            serde::de::Error::custom(
                "invalid type: expected a duration like \"30m\" or a number of seconds",
            )
        })?
        .map(|v| match v {
            TextOrSeconds::Text(s) => s,
            TextOrSeconds::Seconds(n) => n.to_string(),
        }))
}

/// Body of `POST /v1/pops/{name}/drain`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrainBody {
    pub reason: Option<String>,
    /// Auto-undrain after this long: `30m`, `1h30m`, `90s`, `2d`, or a
    /// number of seconds (as in the config file).
    #[serde(default, deserialize_with = "text_or_seconds")]
    pub duration: Option<String>,
    /// `graceful` (default) or `immediate`.
    pub mode: Option<String>,
    /// Allow draining the last PoP serving traffic.
    #[serde(default)]
    pub force: bool,
    /// Who asks (shown in state and events); default `api`.
    pub who: Option<String>,
}

/// Body of `POST /v1/pops/{name}/undrain`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UndrainBody {
    pub mode: Option<String>,
    pub who: Option<String>,
}

/// Body of `POST /v1/pops/{name}/disable`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisableBody {
    pub reason: Option<String>,
    #[serde(default)]
    pub force: bool,
    pub who: Option<String>,
}

/// Body of `POST /v1/pops/{name}/enable`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnableBody {
    pub who: Option<String>,
}

/// Checks a free-text field.
pub fn text(field: &str, v: Option<String>, default: &str) -> Result<String, ApiError> {
    let v = v.unwrap_or_else(|| default.to_string());
    if v.len() > MAX_TEXT {
        return Err(ApiError::invalid(
            field,
            format!(
                "{field} is too long ({} bytes, at most {MAX_TEXT})",
                v.len()
            ),
        ));
    }
    if v.chars().any(|c| c.is_control()) {
        return Err(ApiError::invalid(
            field,
            format!("{field} must not contain control characters"),
        ));
    }
    Ok(v)
}

pub fn mode(v: Option<&str>) -> Result<DrainMode, ApiError> {
    match v {
        None | Some("graceful") => Ok(DrainMode::Graceful),
        Some("immediate") => Ok(DrainMode::Immediate),
        Some(other) => Err(ApiError::invalid(
            "mode",
            format!("mode {other:?} is not valid: expected \"graceful\" or \"immediate\""),
        )),
    }
}

pub fn drain_duration(v: Option<&str>) -> Result<Option<Duration>, ApiError> {
    let Some(s) = v else { return Ok(None) };
    match parse_duration(s) {
        Ok(d) if d.is_zero() => Err(ApiError::invalid(
            "duration",
            "duration must be longer than zero",
        )),
        Ok(d) if d > crate::core::admin::MAX_DRAIN => Err(ApiError::invalid(
            "duration",
            "duration must be at most a year",
        )),
        Ok(d) => Ok(Some(d)),
        Err(e) => Err(ApiError::invalid("duration", e)),
    }
}

/// Parses a duration with the config's syntax (`90s`, `30m`, `1h30m`, `2d`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    crate::config::parse_duration(s)
}

/// Query of `GET /v1/explain`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExplainQuery {
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub qtype: Option<String>,
    pub client: Option<String>,
}

/// Query of `GET /v1/events`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// How many past events to replay (default: all kept).
    pub replay: Option<usize>,
}

// ------------------------------------------------------------ responses

/// One prefix of a PoP and how this node announces it.
#[derive(Serialize)]
pub struct PrefixView<'a> {
    pub prefix: IpNet,
    /// True if this node announces it now (the PoP is this node's PoP and
    /// the prefix is not withdrawn).
    pub announced: bool,
    #[serde(skip_serializing_if = "Option::is_none", flatten)]
    pub announcement: Option<&'a Announcement>,
}

/// Where a PoP is (`pops[].location`), for maps.
#[derive(Serialize)]
pub struct LocationView {
    pub lat: f64,
    pub lon: f64,
}

#[derive(Serialize)]
pub struct PopView<'a> {
    pub name: &'a str,
    /// True if this node announces the PoP's prefixes (it is `node.pop`).
    pub local: bool,
    /// `null` when the config gives none.
    pub location: Option<LocationView>,
    #[serde(flatten)]
    pub status: &'a PopStatus,
    pub prefixes: Vec<PrefixView<'a>>,
}

impl<'a> PopView<'a> {
    pub fn new(snap: &'a Snapshot, name: &'a str, status: &'a PopStatus) -> PopView<'a> {
        let pop = snap.config.pops.get(name);
        let location = pop
            .and_then(|p| p.location)
            .map(|(lat, lon)| LocationView { lat, lon });
        let prefixes = pop
            .map(|p| {
                p.prefixes
                    .iter()
                    .map(|pfx| {
                        let a = snap
                            .announcements
                            .get(pfx)
                            .filter(|a| a.pop.as_str() == name);
                        PrefixView {
                            prefix: *pfx,
                            announced: a.is_some(),
                            announcement: a,
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        let local = snap
            .config
            .node
            .pop
            .as_ref()
            .is_some_and(|p| p.as_str() == name);
        PopView {
            name,
            local,
            location,
            status,
            prefixes,
        }
    }
}

#[derive(Serialize)]
pub struct PopsView<'a> {
    pub version: u64,
    pub pops: BTreeMap<&'a str, PopView<'a>>,
}

impl<'a> PopsView<'a> {
    pub fn new(snap: &'a Snapshot) -> PopsView<'a> {
        PopsView {
            version: snap.version,
            pops: snap
                .pops
                .iter()
                .map(|(n, s)| (n.as_str(), PopView::new(snap, n.as_str(), s)))
                .collect(),
        }
    }
}

#[derive(Serialize)]
pub struct CheckView<'a> {
    pub pop: &'a str,
    pub check: &'a str,
    pub verdict: Verdict,
    pub successes: u32,
    pub failures: u32,
    pub rise: u32,
    pub fall: u32,
    pub last: Option<&'a ProbeOutcome>,
}

impl<'a> CheckView<'a> {
    fn new(pop: &'a str, check: &'a str, c: &'a CheckStatus) -> CheckView<'a> {
        CheckView {
            pop,
            check,
            verdict: c.state.verdict,
            successes: c.state.successes,
            failures: c.state.failures,
            rise: c.rise,
            fall: c.fall,
            last: c.last.as_ref(),
        }
    }
}

#[derive(Serialize)]
pub struct ChecksView<'a> {
    pub version: u64,
    pub checks: Vec<CheckView<'a>>,
}

impl<'a> ChecksView<'a> {
    pub fn new(snap: &'a Snapshot) -> ChecksView<'a> {
        let checks = snap
            .pops
            .iter()
            .flat_map(|(p, s)| {
                s.checks
                    .iter()
                    .map(move |(c, st)| CheckView::new(p.as_str(), c.as_str(), st))
            })
            .collect();
        ChecksView {
            version: snap.version,
            checks,
        }
    }
}

#[derive(Serialize)]
pub struct NodeView<'a> {
    pub name: &'a str,
    pub pop: Option<&'a str>,
    pub asn: u32,
    pub router_id: std::net::Ipv4Addr,
}

#[derive(Serialize)]
pub struct RecordView<'a> {
    pub name: &'a str,
    pub ttl: u32,
    /// Record type for static records, `steered` for steered A/AAAA.
    #[serde(rename = "type")]
    pub rtype: String,
    /// Steering policy name (steered records only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<&'static str>,
    /// PoPs the policy can answer with (steered records only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pops: Vec<&'a str>,
}

#[derive(Serialize)]
pub struct ZoneView<'a> {
    pub origin: &'a str,
    pub serial: u32,
    pub records: Vec<RecordView<'a>>,
}

#[derive(Serialize)]
pub struct DnsView<'a> {
    pub listen: &'a [std::net::SocketAddr],
    pub zones: Vec<ZoneView<'a>>,
}

impl<'a> DnsView<'a> {
    pub fn new(snap: &'a Snapshot) -> DnsView<'a> {
        let dns = &snap.config.dns;
        DnsView {
            listen: &dns.listen,
            zones: dns
                .zones
                .iter()
                .map(|z| ZoneView {
                    origin: &z.origin,
                    serial: z.soa.serial,
                    records: z
                        .records
                        .iter()
                        .map(|r| match &r.data {
                            RecordData::Static { rtype, .. } => RecordView {
                                name: &r.name,
                                ttl: r.ttl,
                                rtype: serde_json::to_value(rtype)
                                    .ok()
                                    .and_then(|v| v.as_str().map(str::to_string))
                                    .unwrap_or_default(),
                                policy: None,
                                pops: Vec::new(),
                            },
                            RecordData::Steered(s) => RecordView {
                                name: &r.name,
                                ttl: r.ttl,
                                rtype: "steered".into(),
                                policy: Some(s.policy.name()),
                                pops: s.policy.pops().into_iter().map(|p| p.as_str()).collect(),
                            },
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

#[derive(Serialize)]
pub struct StateView<'a> {
    pub version: u64,
    pub published: f64,
    pub node: NodeView<'a>,
    pub pops: BTreeMap<&'a str, PopView<'a>>,
    pub announcements: &'a BTreeMap<IpNet, Announcement>,
    /// BGP peers by name (empty object when no BGP speaker runs).
    pub peers: serde_json::Value,
    pub dns: DnsView<'a>,
}

impl<'a> StateView<'a> {
    pub fn new(snap: &'a Snapshot, peers: serde_json::Value) -> StateView<'a> {
        let node = &snap.config.node;
        StateView {
            version: snap.version,
            published: crate::unix_time::secs(snap.published),
            node: NodeView {
                name: &node.name,
                pop: node.pop.as_ref().map(|p| p.as_str()),
                asn: node.asn,
                router_id: node.router_id,
            },
            pops: PopsView::new(snap).pops,
            announcements: &snap.announcements,
            peers,
            dns: DnsView::new(snap),
        }
    }
}

/// Answer of a successful admin action.
#[derive(Debug, Serialize, Deserialize)]
pub struct AdminResult {
    /// Snapshot version that includes the change.
    pub version: u64,
    pub pop: String,
    pub state: String,
    pub serves_dns: bool,
    /// The override now in force (`null`: none).
    pub admin: Option<serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        for bad in ["", "m", "30x", "-3s", "h1", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        assert!(drain_duration(Some("0s")).is_err());
        assert!(drain_duration(Some("400d")).is_err());
        assert_eq!(drain_duration(None), Ok(None));
    }

    #[test]
    fn body_errors_name_the_field() {
        let e = parse_body::<DrainBody>(br#"{"reason": 5}"#).expect_err("type");
        assert_eq!(e.field.as_deref(), Some("reason"));
        assert_eq!(e.status.as_u16(), 400);
        let e = parse_body::<DrainBody>(br#"{"reasn": "x"}"#).expect_err("unknown");
        assert_eq!(e.field.as_deref(), Some("reasn"));
        let e = parse_body::<DrainBody>(b"{").expect_err("syntax");
        assert_eq!(e.status.as_u16(), 400);
        let ok = parse_body::<DrainBody>(b"  ").expect("empty is default");
        assert!(ok.reason.is_none() && !ok.force);
        let e = mode(Some("slow")).expect_err("mode");
        assert_eq!((e.status.as_u16(), e.field.as_deref()), (422, Some("mode")));
        assert!(text("reason", Some("a\u{7}".into()), "").is_err());
    }
}
