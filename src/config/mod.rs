//! Config file format and validation.
//!
//! The YAML file is deserialized into [`raw`] structs (unknown keys are
//! errors), then [`validate`] converts it into [`crate::model::Config`],
//! collecting every problem with its path (`pops[1].prefixes[0]: ...`).
//! This module owns the file format and its defaults; it does no I/O beyond
//! reading the file (and the files it names that must be read at load
//! time: the GeoIP database, fleet peers' CA files), and nothing downstream
//! re-checks what it produced.

mod duration;
mod raw;
mod summary;
mod validate;

use std::fmt;
use std::path::Path;

use crate::model::Config;

pub use duration::{format_duration, parse_duration};
pub use summary::summary;
pub use validate::{
    DEFAULT_ALL_HEALTHY_MAX, DEFAULT_BGP_PORT, DEFAULT_CONNECT_RETRY, DEFAULT_DEGRADED_PREPEND,
    DEFAULT_DNS_LISTEN, DEFAULT_GRACEFUL_RESTART, DEFAULT_HOLD_TIME, DEFAULT_MIN_HOLD_TIME,
    DEFAULT_RATE_LIMIT, DEFAULT_SHORT_TTL, DEFAULT_STEERED_TTL, DEFAULT_STEER_SETTLE,
    DEFAULT_ZONE_TTL,
};

/// Default API listener (used when the `api` section or its `listen` is
/// missing).
pub const DEFAULT_API_LISTEN: &str = raw::DEFAULT_API_LISTEN;

/// The built-in config: runs on any machine without root (DNS on
/// 127.0.0.1:5353, API on 127.0.0.1:8080, no BGP peers). Printed by
/// `anypop print-default-config` as a commented starting point.
pub const DEFAULT_CONFIG_YAML: &str = include_str!("default.yaml");

/// One problem in a config file: where (`pops[0].checks[1].timeout`, or
/// `line 3 column 5` for YAML syntax errors, or the file name for read
/// errors) and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found in a config file, in file order. Displays one error
/// per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    pub fn errors(&self) -> &[ConfigError] {
        &self.0
    }

    fn one(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigErrors(vec![ConfigError {
            path: path.into(),
            message: message.into(),
        }])
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Reads and validates a config file.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigErrors::one(path.display().to_string(), format!("cannot read: {e}")))?;
    parse(&text)
}

/// Parses and validates config text.
pub fn parse(yaml: &str) -> Result<Config, ConfigErrors> {
    if yaml.lines().all(|l| {
        let l = l.trim();
        l.is_empty() || l.starts_with('#') || l == "---"
    }) {
        return Err(ConfigErrors::one(
            "",
            "the config is empty: expected at least a `node:` section (see `anypop print-default-config`)",
        ));
    }
    let to_errors = |e: serde_path_to_error::Error<serde_yaml::Error>| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        ConfigErrors(vec![serde_error(path, &inner)])
    };
    let raw: raw::RawConfig = if yaml.contains("<<") {
        // Merge keys (`<<: *check_defaults`) need a pass over the document
        // tree; errors then have paths but no line numbers.
        let mut value: serde_yaml::Value = serde_yaml::from_str(yaml)
            .map_err(|e| ConfigErrors(vec![serde_error(String::new(), &e)]))?;
        value
            .apply_merge()
            .map_err(|e| ConfigErrors(vec![serde_error(String::new(), &e)]))?;
        serde_path_to_error::deserialize(value).map_err(to_errors)?
    } else {
        serde_path_to_error::deserialize(serde_yaml::Deserializer::from_str(yaml))
            .map_err(to_errors)?
    };
    validate::validate(raw).map_err(ConfigErrors)
}

/// A serde_yaml error as `path: message (line L column C)`, or
/// `line L column C: message` when it has no path (YAML syntax).
fn serde_error(path: String, e: &serde_yaml::Error) -> ConfigError {
    let mut message = e.to_string();
    let at = e
        .location()
        .map(|l| format!("line {} column {}", l.line(), l.column()));
    // serde_yaml puts " at line L column C" after the problem; we show the
    // location separately.
    if let Some(at) = &at {
        message = message.replacen(&format!(" at {at}"), "", 1);
    }
    // ... and prefixes its own path, which we take from serde_path_to_error.
    if let Some((head, tail)) = message.split_once(": ") {
        if !head.contains(' ') && !path.is_empty() && path.starts_with(head.trim_end_matches('?')) {
            message = tail.to_string();
        }
    }
    for (rust, human) in [
        ("expected u64", "expected a whole number"),
        ("expected u32", "expected a whole number"),
        ("expected u16", "expected a whole number from 0 to 65535"),
        ("expected f64", "expected a number"),
    ] {
        message = message.replace(rust, human);
    }
    // Our raw struct names mean nothing to users.
    if let Some(i) = message.find("expected struct Raw") {
        let end = message[i..]
            .find(|c: char| c.is_whitespace())
            .map_or(message.len(), |e| i + e);
        message.replace_range(
            i..end,
            "expected a mapping (key: value), not a list or scalar",
        );
    }
    message = message.replace("expected a sequence", "expected a list");
    // No usable path (YAML syntax errors): the location is the path.
    let pathless = path.is_empty() || path == "." || path.contains('?');
    match (pathless, at) {
        (true, Some(at)) => ConfigError { path: at, message },
        (true, None) => ConfigError {
            path: String::new(),
            message,
        },
        (false, Some(at)) => ConfigError {
            path,
            message: format!("{message} ({at})"),
        },
        (false, None) => ConfigError { path, message },
    }
}

/// The built-in default config, validated.
pub fn default_config() -> Config {
    match parse(DEFAULT_CONFIG_YAML) {
        Ok(c) => c,
        // A unit test keeps the compiled-in config valid.
        Err(e) => panic!("the built-in default config is invalid:\n{e}"),
    }
}

#[cfg(test)]
mod fleet_tests;
#[cfg(test)]
mod tests;
