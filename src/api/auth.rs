//! Bearer-token authentication.
//!
//! The token is read once, at start, from the file named by
//! `api.token_file` (surrounding whitespace ignored). Mutating endpoints
//! always require it when a token is configured; read endpoints require it
//! only with `api.protect_reads`. Without a token file the API is open,
//! which is only sensible on a loopback listener (the default). Tokens are
//! compared in constant time.

use std::path::{Path, PathBuf};

use axum::http::{header, HeaderMap};

use super::error::ApiError;
use crate::model::ApiConfig;

/// Who may call what.
#[derive(Clone)]
pub struct Auth {
    token: Option<Vec<u8>>,
    protect_reads: bool,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("protect_reads", &self.protect_reads)
            .finish()
    }
}

/// The token file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read API token file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("API token file {path} is empty")]
    Empty { path: PathBuf },
}

impl Auth {
    /// No authentication at all.
    pub fn open() -> Auth {
        Auth {
            token: None,
            protect_reads: false,
        }
    }

    /// Requires `token` for mutations, and for reads if `protect_reads`.
    pub fn with_token(token: &str, protect_reads: bool) -> Auth {
        Auth {
            token: Some(token.trim().as_bytes().to_vec()),
            protect_reads,
        }
    }

    /// Builds the policy from the `api` config section, reading the token file.
    pub fn from_config(api: &ApiConfig) -> Result<Auth, AuthError> {
        match &api.token_file {
            None => Ok(Auth::open()),
            Some(path) => Ok(Auth::with_token(&read_token_file(path)?, api.protect_reads)),
        }
    }

    /// True if a token is configured.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// Checks the `Authorization` header for a request that mutates
    /// (`write`) or only reads.
    pub fn check(&self, headers: &HeaderMap, write: bool) -> Result<(), ApiError> {
        let Some(want) = &self.token else {
            return Ok(());
        };
        if !write && !self.protect_reads {
            return Ok(());
        }
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Err(ApiError::unauthorized(
                "missing bearer token: send \"Authorization: Bearer <token>\"",
            ));
        };
        let got = value
            .to_str()
            .ok()
            .and_then(|v| {
                let (scheme, rest) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            })
            .ok_or_else(|| {
                ApiError::unauthorized(
                    "malformed Authorization header: expected \"Bearer <token>\"",
                )
            })?;
        if constant_time_eq(got.as_bytes(), want) {
            Ok(())
        } else {
            Err(ApiError::unauthorized("invalid bearer token"))
        }
    }
}

/// Reads and trims a token file; an empty file is an error.
pub fn read_token_file(path: &Path) -> Result<String, AuthError> {
    let text = std::fs::read_to_string(path).map_err(|source| AuthError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(AuthError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(token.to_string())
}

/// Compares two byte strings in time that depends only on their lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    // Fold over the longer input so a short guess costs as much as a long one.
    let n = a.len().max(b.len());
    let mut diff = (a.len() ^ b.len()) as u64;
    for i in 0..n {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= u64::from(x ^ y);
    }
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(auth).expect("header"),
        );
        h
    }

    #[test]
    fn constant_time_eq_matches_eq() {
        for (a, b) in [
            ("", ""),
            ("a", ""),
            ("abc", "abc"),
            ("abc", "abd"),
            ("abc", "abcd"),
        ] {
            assert_eq!(
                constant_time_eq(a.as_bytes(), b.as_bytes()),
                a == b,
                "{a:?} {b:?}"
            );
        }
    }

    #[test]
    fn token_policy() {
        let auth = Auth::with_token("s3cret\n", false);
        assert!(
            auth.check(&HeaderMap::new(), false).is_ok(),
            "reads are open"
        );
        assert!(auth.check(&HeaderMap::new(), true).is_err());
        assert!(auth.check(&headers("Bearer s3cret"), true).is_ok());
        assert!(auth.check(&headers("bearer  s3cret "), true).is_ok());
        assert!(auth.check(&headers("Bearer s3cre"), true).is_err());
        assert!(auth.check(&headers("Basic s3cret"), true).is_err());
        let protected = Auth::with_token("s3cret", true);
        assert!(protected.check(&HeaderMap::new(), false).is_err());
        assert!(protected.check(&headers("Bearer s3cret"), false).is_ok());
        assert!(Auth::open().check(&HeaderMap::new(), true).is_ok());
    }

    #[test]
    fn token_file_errors_name_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("token");
        let e = read_token_file(&p).expect_err("missing");
        assert!(e.to_string().contains("token"), "{e}");
        std::fs::write(&p, "  \n").expect("write");
        assert!(matches!(read_token_file(&p), Err(AuthError::Empty { .. })));
        std::fs::write(&p, "abc\n").expect("write");
        assert_eq!(read_token_file(&p).expect("read"), "abc");
    }
}
