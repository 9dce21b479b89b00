//! Who may stream and query: bearer tokens from `--token-file` (re-read when the file changes,
//! so tokens rotate without a restart), mutual TLS, or nothing with `--insecure-no-auth`.
//! Refusals are `UNAUTHENTICATED`, logged at most once per 10 s per peer address.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use tonic::Status;
use tonic::metadata::MetadataMap;

use crate::error::{Error, Result};
use crate::ratelog::LogLimiter;

/// How clients prove who they are.
#[derive(Debug)]
pub enum AuthMode {
    /// `authorization: Bearer <token>` with a token listed in the file.
    Tokens(TokenFile),
    /// The TLS handshake verified a client certificate against `--tls-client-ca`.
    MutualTls,
    /// `--insecure-no-auth`: everyone.
    Insecure,
}

/// Checks each call's credentials.
#[derive(Debug)]
pub struct Authenticator {
    mode: AuthMode,
    refusals: Mutex<LogLimiter<Option<IpAddr>>>,
}

/// How often a refusal is logged per peer address.
pub const REFUSAL_LOG_PERIOD: Duration = Duration::from_secs(10);

impl Authenticator {
    pub fn new(mode: AuthMode) -> Self {
        Authenticator { mode, refusals: Mutex::new(LogLimiter::new(REFUSAL_LOG_PERIOD)) }
    }

    /// Ok when the call may proceed; `UNAUTHENTICATED` otherwise (logged at a limited rate).
    pub fn check(&self, metadata: &MetadataMap, peer: Option<SocketAddr>, call: &'static str) -> Result<(), Status> {
        let token_file = match &self.mode {
            AuthMode::Insecure | AuthMode::MutualTls => return Ok(()),
            AuthMode::Tokens(file) => file,
        };
        let presented = metadata.get("authorization").and_then(|v| v.to_str().ok()).and_then(bearer_token);
        let why = match presented {
            None => "no bearer token",
            Some(token) if token_file.accepts(token) => return Ok(()),
            Some(_) => "wrong bearer token",
        };
        let ip = peer.map(|p| p.ip());
        let suppressed = self.refusals.lock().ok().and_then(|mut limiter| limiter.check(&ip, Instant::now()));
        if let Some(suppressed) = suppressed {
            let peer = peer.map_or_else(|| "unknown".to_string(), |p| p.to_string());
            tracing::warn!(%peer, call, reason = why, refusals_not_logged = suppressed, "refused a call without a valid token");
        }
        Err(Status::unauthenticated(format!(
            "{why}: send `authorization: Bearer <token>` with a token from the collector's --token-file"
        )))
    }
}

/// The value of `Bearer <token>` (scheme case-insensitive, RFC 6750 section 2.1).
pub fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Accepted tokens: one per line; blank lines and `#` comments are ignored, so an old and a new
/// token can both be listed during a rotation.
pub fn parse_tokens(text: &str) -> Vec<String> {
    text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_string).collect()
}

/// The token file, re-read whenever its modification time or size changes.
#[derive(Debug)]
pub struct TokenFile {
    path: PathBuf,
    cache: Mutex<TokenCache>,
}

#[derive(Debug)]
struct TokenCache {
    stamp: Option<(SystemTime, u64)>,
    tokens: Vec<String>,
}

impl TokenFile {
    /// Reads the file; it must list at least one token.
    pub fn load(path: &Path) -> Result<TokenFile> {
        let (stamp, tokens) = read_tokens(path)?;
        if tokens.is_empty() {
            return Err(Error::Config(format!(
                "the token file {} lists no token (one per line; # starts a comment)",
                path.display()
            )));
        }
        Ok(TokenFile { path: path.to_path_buf(), cache: Mutex::new(TokenCache { stamp: Some(stamp), tokens }) })
    }

    /// True when `token` is listed in the file as it is now.
    pub fn accepts(&self, token: &str) -> bool {
        let Ok(mut cache) = self.cache.lock() else { return false };
        let current = std::fs::metadata(&self.path).ok().and_then(|m| Some((m.modified().ok()?, m.len())));
        if current != cache.stamp {
            match read_tokens(&self.path) {
                Ok((stamp, tokens)) => {
                    tracing::info!(path = %self.path.display(), tokens = tokens.len(), "token file changed, reloaded");
                    *cache = TokenCache { stamp: Some(stamp), tokens };
                }
                // Keep the tokens we had: a half-written or briefly missing file during a
                // rotation must not lock every agent out.
                Err(error) => tracing::warn!(%error, "cannot re-read the token file, keeping the previous tokens"),
            }
        }
        cache.tokens.iter().any(|t| constant_time_eq(t.as_bytes(), token.as_bytes()))
    }
}

fn read_tokens(path: &Path) -> Result<((SystemTime, u64), Vec<String>)> {
    let io = |source| Error::Io { action: "cannot read the token file", path: path.to_path_buf(), source };
    let metadata = std::fs::metadata(path).map_err(io)?;
    let stamp = (metadata.modified().map_err(io)?, metadata.len());
    let text = std::fs::read_to_string(path).map_err(io)?;
    Ok((stamp, parse_tokens(&text)))
}

/// Compares without an early exit, so the time taken does not tell how much of a guess matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_file_lines() {
        let text = "# rotated 2026-11-01\nold-token\n\n  new-token  \n#disabled\n";
        assert_eq!(parse_tokens(text), vec!["old-token", "new-token"]);
        assert!(parse_tokens("# nothing\n\n").is_empty());
    }

    #[test]
    fn bearer_header() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("abc"), None);
    }

    #[test]
    fn constant_time_comparison() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
    }

    #[test]
    fn a_rotated_token_file_is_picked_up_without_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, "first\n").unwrap();
        let file = TokenFile::load(&path).unwrap();
        assert!(file.accepts("first"));
        assert!(!file.accepts("second"));
        // a different size is enough to notice the change even within the mtime granularity
        std::fs::write(&path, "first\nsecond\n").unwrap();
        assert!(file.accepts("second"));
        assert!(file.accepts("first"));
        std::fs::write(&path, "second\n").unwrap();
        assert!(!file.accepts("first"));
    }

    #[test]
    fn an_empty_token_file_is_refused_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, "# none yet\n").unwrap();
        let error = TokenFile::load(&path).unwrap_err().to_string();
        assert!(error.contains("lists no token"), "{error}");
    }
}
