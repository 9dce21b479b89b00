//! Connecting to the collector: the bearer token, TLS, the endpoint's keep-alive, and what a failure says.
//!
//! Certificates and the token file are read again at every connect, so they
//! can be rotated without restarting the agent.

use std::error::Error;
use std::path::Path;
use std::time::Duration;

use rand::Rng;
use tonic::metadata::MetadataMap;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::stream::{Auth, StreamConfig, StreamError, TlsFiles};

/// Reads the bearer token: the file's first token line (`bakery_signals::token`), so a file that
/// lists a new and an old token during a rotation works for the agent as it does for the
/// collector, and a projected service-account token (one line) is the whole file.
pub fn read_token(path: &Path) -> Result<String, StreamError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| StreamError::ReadFile { path: path.to_path_buf(), source })?;
    let token = bakery_signals::token::client_token(&text)
        .map_err(|reason| StreamError::BadTokenFile { path: path.to_path_buf(), reason })?;
    Ok(token.to_string())
}

fn read_file(path: &Path) -> Result<Vec<u8>, StreamError> {
    std::fs::read(path).map_err(|source| StreamError::ReadFile { path: path.to_path_buf(), source })
}

pub(super) fn tls_config(tls: &TlsFiles) -> Result<ClientTlsConfig, StreamError> {
    let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read_file(&tls.ca)?));
    if let Some((cert, key)) = &tls.client_identity {
        config = config.identity(Identity::from_pem(read_file(cert)?, read_file(key)?));
    }
    Ok(config)
}

/// A fresh connection; certificates are re-read each time, like the token.
pub(super) async fn connect(config: &StreamConfig) -> Result<Channel, String> {
    let mut endpoint = Endpoint::from_shared(config.collector.clone())
        .map_err(|e| e.to_string())?
        .connect_timeout(config.connect_timeout)
        .tcp_keepalive(Some(Duration::from_secs(30)))
        // HTTP/2 pings find a collector that vanished without a FIN (a
        // killed node, power loss, a cable pulled) within a second, even
        // when nothing is sent. hyper pings only after `interval` without a
        // frame from the collector, so a live stream (an ack per commit)
        // costs next to nothing.
        .http2_keep_alive_interval(config.keepalive_interval)
        .keep_alive_timeout(config.keepalive_timeout)
        .keep_alive_while_idle(true);
    if let Some(tls) = &config.tls {
        let tls = tls_config(tls).map_err(|e| e.to_string())?;
        endpoint = endpoint.tls_config(tls).map_err(|e| format!("TLS: {e}"))?;
    }
    endpoint
        .connect()
        .await
        .map_err(|e| format!("cannot connect to {}: {}", config.collector, bakery_cli::error_chain(&e)))
}

/// `text`, then each cause in the chain from `source` that it does not
/// already say: hyper and tonic repeat a cause's text in its wrapper.
fn with_causes(mut text: String, mut source: Option<&dyn Error>) -> String {
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Why the collector ended a call, for the log.
pub(super) fn describe_status(status: &tonic::Status) -> String {
    match status.code() {
        tonic::Code::Unauthenticated => format!(
            "the collector refused the token (UNAUTHENTICATED: {}); check --token-file against the collector's token file",
            status.message()
        ),
        // The transport's cause ("keep-alive timed out", "connection reset") is in the
        // source chain, not in the message.
        code => with_causes(format!("{code:?}: {}", status.message()), Error::source(status)),
    }
}

/// A fresh identity for one stream, so that the collector replaces an older
/// stream of the same node when this one arrives (`Hello.stream_id`).
pub(super) fn stream_id(rng: &mut impl Rng) -> String {
    format!("{:016x}{:016x}", rng.random::<u64>(), rng.random::<u64>())
}

/// The request metadata of a stream: `authorization: Bearer <token>` with
/// the token file read afresh (so that it can be rotated), or nothing.
pub(super) fn request_metadata(auth: &Auth) -> Result<MetadataMap, String> {
    let mut metadata = MetadataMap::new();
    if let Auth::TokenFile(path) = auth {
        let token = read_token(path).map_err(|error| error.to_string())?;
        let value =
            format!("Bearer {token}").parse().map_err(|_| StreamError::InvalidToken(path.clone()).to_string())?;
        metadata.insert("authorization", value);
    }
    Ok(metadata)
}
