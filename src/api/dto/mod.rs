//! The API's data transfer objects: every request body, query and
//! response body, and so the wire format. The OpenAPI document is
//! generated from these types (`utoipa::ToSchema`) and the routes, and
//! `anypop ctl` decodes the answers into the same types. The core's types
//! carry no serde attributes for the API: [`view`], [`peers`] and
//! [`explain`] convert them.
//!
//! Bodies are parsed in two steps, like the config: serde into raw structs
//! (`deny_unknown_fields`; a malformed body or a wrong type is a 400 naming
//! the field), then checked values (`duration`, `mode`: a value we cannot
//! accept is a 422 naming the field).

pub mod explain;
pub mod fleet;
pub mod peers;
pub mod view;

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

pub use explain::Explanation;
pub use peers::{Peer, Peers};
pub use view::{
    AdminResult, AdminStatus, Check, CheckStatus, Checks, ErrorBody, Event, Health, Pop, Pops,
    Ready, ReloadResult, State,
};

use super::error::ApiError;
use crate::core::admin::DrainMode;

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

/// A duration: text (`30m`, `1h30m`, `90s`, `2d`) or whole seconds.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
#[serde(untagged)]
pub enum DurationValue {
    Text(String),
    Seconds(u64),
}

/// How a drain or undrain proceeds (default `graceful`).
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// DNS first, wait, BGP graceful shutdown, wait, final action.
    Graceful,
    /// Straight to the final state.
    Immediate,
}

/// Body of `POST /v1/pops/{name}/drain` (every field optional).
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DrainRequest {
    /// Why (shown in state, events and logs); default `drained via API`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 512)]
    pub reason: Option<String>,
    /// Auto-undrain after this long: `30m`, `1h30m`, `90s`, `2d`, or a
    /// number of seconds (as in the config file).
    #[serde(
        default,
        deserialize_with = "text_or_seconds",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<DurationValue>)]
    pub duration: Option<String>,
    /// `graceful` (default) or `immediate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Mode>)]
    pub mode: Option<String>,
    /// Allow draining the last PoP serving traffic.
    #[serde(default)]
    pub force: bool,
    /// Who asks (shown in state and events); default `api`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 512)]
    pub who: Option<String>,
}

/// Body of `POST /v1/pops/{name}/undrain` (every field optional).
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UndrainRequest {
    /// `graceful` (default: ramp back) or `immediate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Mode>)]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 512)]
    pub who: Option<String>,
}

/// Body of `POST /v1/pops/{name}/disable` (every field optional).
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DisableRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 512)]
    pub reason: Option<String>,
    /// Allow disabling the last PoP serving traffic.
    #[serde(default)]
    pub force: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 512)]
    pub who: Option<String>,
}

/// Body of `POST /v1/pops/{name}/enable` (every field optional).
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnableRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 512)]
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
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExplainQuery {
    /// The DNS name to explain (required).
    #[param(required = true)]
    pub name: Option<String>,
    /// Query type (default `A`).
    #[serde(rename = "type")]
    pub qtype: Option<String>,
    /// Client address (`192.0.2.1`) or EDNS Client Subnet
    /// (`198.51.100.0/24`); default: no client information.
    pub client: Option<String>,
}

/// Query of `GET /v1/events`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Replay at most this many past events (default: all kept).
    pub replay: Option<usize>,
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
        let e = parse_body::<DrainRequest>(br#"{"reason": 5}"#).expect_err("type");
        assert_eq!(e.field.as_deref(), Some("reason"));
        assert_eq!(e.status.as_u16(), 400);
        let e = parse_body::<DrainRequest>(br#"{"reasn": "x"}"#).expect_err("unknown");
        assert_eq!(e.field.as_deref(), Some("reasn"));
        let e = parse_body::<DrainRequest>(b"{").expect_err("syntax");
        assert_eq!(e.status.as_u16(), 400);
        let ok = parse_body::<DrainRequest>(b"  ").expect("empty is default");
        assert!(ok.reason.is_none() && !ok.force);
        let e = mode(Some("slow")).expect_err("mode");
        assert_eq!((e.status.as_u16(), e.field.as_deref()), (422, Some("mode")));
        assert!(text("reason", Some("a\u{7}".into()), "").is_err());
    }
}
