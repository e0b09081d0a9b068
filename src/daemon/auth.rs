//! The API's bearer token: made once per data directory (`api.token`, mode
//! 0600), kept across restarts, checked in constant time on every protected route.

use std::fs::OpenOptions;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, COOKIE};
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::error::ApiError;

/// The cookie the dashboard keeps the token in (`GET /?token=` sets it);
/// accepted on GET and HEAD requests only, so a cross-site form cannot use it.
pub const TOKEN_COOKIE: &str = "stocksync_token";

/// The token file's name in the data directory.
pub const TOKEN_FILE: &str = "api.token";
/// Random bytes in a token (hex-encoded in the file and the header).
const TOKEN_BYTES: usize = 32;

/// Why the token could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Reading or writing the file failed.
    #[error("token file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file does not hold a token of the expected form.
    #[error("token file {0} does not hold {TOKEN_BYTES} hex-encoded bytes; delete it to make a new token")]
    Malformed(String),
    /// No randomness.
    #[error("random source: {0}")]
    Random(String),
}

/// A bearer token.
#[derive(Clone)]
pub struct Token(String);

impl Token {
    /// The token's text, as sent in `Authorization: Bearer <token>`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True when `given` is this token; compares in constant time.
    pub fn matches(&self, given: &str) -> bool {
        self.0.as_bytes().ct_eq(given.as_bytes()).into()
    }
}

/// The token file of data directory `dir`.
pub fn token_path(dir: &Path) -> PathBuf {
    dir.join(TOKEN_FILE)
}

/// Reads the token of `dir`, if it has one.
pub fn read(dir: &Path) -> Result<Option<Token>, TokenError> {
    let path = token_path(dir);
    let io = |source| TokenError::Io {
        path: path.display().to_string(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let t = text.trim();
            let ok = t.len() == TOKEN_BYTES * 2 && t.bytes().all(|b| b.is_ascii_hexdigit());
            if ok {
                Ok(Some(Token(t.to_ascii_lowercase())))
            } else {
                Err(TokenError::Malformed(path.display().to_string()))
            }
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(e)),
    }
}

/// The token of `dir`, made (mode 0600) on first use.
pub fn load_or_create(dir: &Path) -> Result<Token, TokenError> {
    if let Some(t) = read(dir)? {
        return Ok(t);
    }
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| TokenError::Random(e.to_string()))?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let path = token_path(dir);
    let io = |source| TokenError::Io {
        path: path.display().to_string(),
        source,
    };
    // create_new: never replace a token another process wrote meanwhile.
    let mut f = match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            return read(dir)?.ok_or(TokenError::Malformed(path.display().to_string()))
        }
        Err(e) => return Err(io(e)),
    };
    f.write_all(format!("{hex}\n").as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    Ok(Token(hex))
}

/// The token in the request's [`TOKEN_COOKIE`], if any.
fn cookie_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(TOKEN_COOKIE)?.strip_prefix('='))
}

/// Middleware: a request without `Authorization: Bearer <the token>` (or, on
/// GET and HEAD, the [`TOKEN_COOKIE`] holding it) gets 401.
pub async fn require(State(token): State<Token>, req: Request, next: Next) -> Response {
    let read_only = matches!(*req.method(), Method::GET | Method::HEAD);
    let given = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .or_else(|| cookie_token(req.headers()).filter(|_| read_only));
    match given {
        Some(g) if token.matches(g) => next.run(req).await,
        _ => ApiError::unauthorized().into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn made_once_private_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create(dir.path()).unwrap();
        let b = load_or_create(dir.path()).unwrap();
        assert_eq!(a.as_str(), b.as_str());
        assert_eq!(a.as_str().len(), 64);
        let mode = std::fs::metadata(token_path(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(a.matches(b.as_str()));
        assert!(!a.matches(&b.as_str()[..63]));
        assert!(!a.matches(""));
    }

    #[test]
    fn a_malformed_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(token_path(dir.path()), "short\n").unwrap();
        assert!(matches!(
            load_or_create(dir.path()),
            Err(TokenError::Malformed(_))
        ));
    }
}
