//! Bearer-token authentication.
//!
//! The token comes from the file named by `api.token_file` (surrounding
//! whitespace ignored). It is read at start (a missing or empty file stops
//! the start) and read again whenever the file changes (size or mtime), so
//! rotating the token needs no restart; if the file later becomes
//! unreadable or empty, protected calls fail closed with a 500 naming the
//! file. Mutating endpoints always require the token when one is
//! configured; read endpoints require it only with `api.protect_reads`
//! (which defaults to on for a listener off loopback with a token).
//! Without a token file the API is open, which is only sensible on a
//! loopback listener (the default). Tokens are compared in constant time.

use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::SystemTime;

use axum::http::{header, HeaderMap, StatusCode};

use super::error::ApiError;
use crate::model::ApiConfig;

/// Where the expected token comes from.
enum Token {
    None,
    Fixed(Vec<u8>),
    File {
        path: PathBuf,
        cached: RwLock<Cached>,
    },
}

/// The token file as last read.
struct Cached {
    stamp: Option<(SystemTime, u64)>,
    token: Result<Vec<u8>, String>,
}

/// Who may call what.
pub struct Auth {
    token: Token,
    protect_reads: bool,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let token = match &self.token {
            Token::None => "none".to_string(),
            Token::Fixed(_) => "<redacted>".to_string(),
            Token::File { path, .. } => format!("<from {}>", path.display()),
        };
        f.debug_struct("Auth")
            .field("token", &token)
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

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

impl Auth {
    /// No authentication at all.
    pub fn open() -> Auth {
        Auth {
            token: Token::None,
            protect_reads: false,
        }
    }

    /// Requires `token` for mutations, and for reads if `protect_reads`.
    pub fn with_token(token: &str, protect_reads: bool) -> Auth {
        Auth {
            token: Token::Fixed(token.trim().as_bytes().to_vec()),
            protect_reads,
        }
    }

    /// Requires the token in `path` (read now, and again when it changes).
    pub fn from_file(path: &Path, protect_reads: bool) -> Result<Auth, AuthError> {
        let stamp = stamp(path);
        let token = read_token_file(path)?;
        Ok(Auth {
            token: Token::File {
                path: path.to_path_buf(),
                cached: RwLock::new(Cached {
                    stamp,
                    token: Ok(token.into_bytes()),
                }),
            },
            protect_reads,
        })
    }

    /// Builds the policy from the `api` config section, reading the token file.
    pub fn from_config(api: &ApiConfig) -> Result<Auth, AuthError> {
        match &api.token_file {
            None => Ok(Auth::open()),
            Some(path) => Auth::from_file(path, api.protect_reads),
        }
    }

    /// True if a token is configured.
    pub fn has_token(&self) -> bool {
        !matches!(self.token, Token::None)
    }

    /// The expected token now, re-reading the file if it changed.
    fn expected(&self) -> Result<Option<Vec<u8>>, ApiError> {
        let (path, cached) = match &self.token {
            Token::None => return Ok(None),
            Token::Fixed(t) => return Ok(Some(t.clone())),
            Token::File { path, cached } => (path, cached),
        };
        let now = stamp(path);
        let fresh = cached
            .read()
            .ok()
            .filter(|c| c.stamp.is_some() && c.stamp == now)
            .map(|c| c.token.clone());
        let token = match fresh {
            Some(t) => t,
            None => {
                let t = read_token_file(path)
                    .map(String::into_bytes)
                    .map_err(|e| e.to_string());
                if let Ok(mut c) = cached.write() {
                    *c = Cached {
                        stamp: now,
                        token: t.clone(),
                    };
                }
                t
            }
        };
        token.map(Some).map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("{e}: refusing protected calls until it is fixed"),
            )
        })
    }

    /// Checks the `Authorization` header for a request that mutates
    /// (`write`) or only reads.
    pub fn check(&self, headers: &HeaderMap, write: bool) -> Result<(), ApiError> {
        if !write && !self.protect_reads {
            return Ok(());
        }
        let Some(want) = self.expected()? else {
            return Ok(());
        };
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
        if constant_time_eq(got.as_bytes(), &want) {
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
    fn token_file_rotation_is_picked_up_and_fails_closed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("token");
        std::fs::write(&p, "first\n").expect("write");
        let auth = Auth::from_file(&p, false).expect("auth");
        assert!(auth.check(&headers("Bearer first"), true).is_ok());
        std::fs::write(&p, "second-token\n").expect("write");
        assert!(
            auth.check(&headers("Bearer first"), true).is_err(),
            "old token revoked"
        );
        assert!(auth.check(&headers("Bearer second-token"), true).is_ok());
        std::fs::write(&p, "\n").expect("write");
        let e = auth
            .check(&headers("Bearer second-token"), true)
            .expect_err("empty file");
        assert_eq!(e.status.as_u16(), 500);
        assert!(e.message.contains("token"), "{e}");
        assert!(
            auth.check(&HeaderMap::new(), false).is_ok(),
            "open reads stay open"
        );
        std::fs::remove_file(&p).expect("rm");
        assert_eq!(
            auth.check(&headers("Bearer x"), true)
                .map_err(|e| e.status.as_u16()),
            Err(500)
        );
        std::fs::write(&p, "third\n").expect("write");
        assert!(auth.check(&headers("Bearer third"), true).is_ok());
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
