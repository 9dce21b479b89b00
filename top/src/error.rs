//! bakery-top's library error: what can go wrong reaching the collector or reading the token.

use std::path::PathBuf;
use std::time::Duration;

/// Errors of the bakery-top library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{url:?} is not a collector URL ({reason}); expected something like http://127.0.0.1:7431")]
    InvalidUrl { url: String, reason: String },

    #[error("cannot connect to the collector at {url}: {reason}")]
    Connect { url: String, reason: String },

    #[error("the collector at {url} did not answer within {}", humantime::format_duration(*.after))]
    Timeout { url: String, after: Duration },

    #[error("the collector answered {code:?}: {message}")]
    Status { code: tonic::Code, message: String },

    #[error("cannot read the token file {}: {source}", path.display())]
    TokenFile { path: PathBuf, source: std::io::Error },

    #[error("the token file {} holds no token (one per line; # starts a comment)", path.display())]
    EmptyTokenFile { path: PathBuf },

    #[error("the token in {} is not a valid header value (printable ASCII only)", path.display())]
    InvalidToken { path: PathBuf },

    #[error("the token read from the cluster is not a valid header value (printable ASCII only)")]
    InvalidInlineToken,

    #[error("cannot read the TLS file {}: {source}", path.display())]
    TlsFile { path: PathBuf, source: std::io::Error },

    #[error("invalid TLS settings: {0}")]
    Tls(String),

    /// A scripted failure of the fake source (tests).
    #[error("{0}")]
    Scripted(String),
}

impl From<tonic::Status> for Error {
    fn from(status: tonic::Status) -> Self {
        Error::Status { code: status.code(), message: status.message().to_string() }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
