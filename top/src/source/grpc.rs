//! The collector as a [`Source`]: `Query.Nodes` over gRPC, with a bearer token, a deadline on
//! every call, and a reconnect on the next call after any failure. Keeps each node's two latest
//! samples (rates need two cumulative readings) and seeds the earlier one from `Query.History` the
//! first time it sees a node, so even `--once` shows rates.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use bakery_proto::v1::query_client::QueryClient;
use bakery_proto::v1::{
    HistoryRequest, LiveRequest, LiveResponse, NodeStatus, NodesRequest, PodsRequest, PodsResponse, Sample,
    WindowsRequest, WindowsResponse,
};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::cluster::Tunnel;
use crate::error::{Error, Result};
use crate::model::Snapshot;
use crate::source::Source;
use crate::source::derive::{self, SamplePair};

/// How long a call may take before the collector counts as gone.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// How far back `Query.History` is asked for an earlier sample: a few intervals, at least this.
const MIN_HISTORY_LOOKBACK_MS: i64 = 5_000;

/// A `Query` client with the bearer token interceptor.
pub type Client = QueryClient<InterceptedService<Channel, BearerToken>>;

/// Adds `authorization: Bearer <token>` to every call when a token is configured.
#[derive(Debug, Clone)]
pub struct BearerToken(Option<MetadataValue<Ascii>>);

impl tonic::service::Interceptor for BearerToken {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// Reads the bearer header value from `path`: the file's first token (`bakery_signals::token`).
pub fn read_bearer(path: &PathBuf) -> Result<MetadataValue<Ascii>> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::TokenFile { path: path.clone(), source })?;
    let token = bakery_signals::token::client_token(&text).map_err(|_| Error::EmptyTokenFile { path: path.clone() })?;
    format!("Bearer {token}").parse().map_err(|_| Error::InvalidToken { path: path.clone() })
}

/// How to reach the collector: its URL, a bearer token file, and TLS files for `https://`; or,
/// with `--context`, a tunnel through the Kubernetes API and the token and CA from Secrets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrpcConfig {
    /// `http://host:port` or `https://host:port`. With a tunnel, the host is only the name the
    /// collector's certificate is checked against.
    pub url: String,
    pub token_file: Option<PathBuf>,
    /// The token itself, read from the release's Secret (`--context`); a token file wins.
    pub token: Option<InlineToken>,
    /// The CA that signed the collector's certificate; `https://` needs it or `tls_ca_pem`.
    pub tls_ca: Option<PathBuf>,
    /// The CA's PEM itself, read from the release's Secret (`--context`).
    pub tls_ca_pem: Option<Vec<u8>>,
    /// Certificate and key to present when the collector wants mutual TLS.
    pub tls_identity: Option<(PathBuf, PathBuf)>,
    /// Connections go through Kubernetes port-forwards instead of to the URL's address.
    pub tunnel: Option<Tunnel>,
}

/// A bearer token held in memory; `Debug` does not print it.
#[derive(Clone, PartialEq, Eq)]
pub struct InlineToken(String);

impl InlineToken {
    pub fn new(token: String) -> InlineToken {
        InlineToken(token)
    }

    fn header(&self) -> Result<MetadataValue<Ascii>> {
        format!("Bearer {}", self.0).parse().map_err(|_| Error::InvalidInlineToken)
    }
}

impl std::fmt::Debug for InlineToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InlineToken(<redacted>)")
    }
}

impl GrpcConfig {
    /// A plaintext collector without a token (tests, a trusted network).
    pub fn plain(url: impl Into<String>) -> GrpcConfig {
        GrpcConfig { url: url.into(), ..GrpcConfig::default() }
    }
}

/// `Query` on a collector.
#[derive(Debug)]
pub struct GrpcSource {
    /// The URL, or the context and Service reached through a tunnel.
    url: String,
    endpoint: Endpoint,
    token_file: Option<PathBuf>,
    token: Option<InlineToken>,
    tunnel: Option<Tunnel>,
    client: Option<Client>,
    pairs: BTreeMap<String, SamplePair>,
    /// Nodes whose earlier sample was already looked up in history (once is enough).
    seeded: BTreeSet<String>,
    timeout: Duration,
}

impl GrpcSource {
    /// Checks the URL and reads the TLS files now; connects lazily on the first
    /// [`Source::snapshot`].
    pub fn new(config: GrpcConfig) -> Result<GrpcSource> {
        let url = config.url.as_str();
        let invalid = |reason: &str| Error::InvalidUrl { url: url.to_string(), reason: reason.to_string() };
        let https = match url.split_once("://").map(|(scheme, _)| scheme) {
            Some("http") if config.tls_ca.is_some() || config.tls_identity.is_some() => {
                return Err(invalid("TLS files were given but the URL is http://; use https://"));
            }
            Some("http") => false,
            Some("https") if config.tls_ca.is_none() && config.tls_ca_pem.is_none() => {
                return Err(invalid("https needs --tls-ca (the CA that signed the collector's certificate)"));
            }
            Some("https") => true,
            _ => return Err(invalid("it must start with http:// or https://")),
        };
        let mut endpoint = Endpoint::from_shared(url.to_string())
            .map_err(|e| invalid(&e.to_string()))?
            .connect_timeout(CALL_TIMEOUT)
            .timeout(CALL_TIMEOUT);
        if https {
            endpoint =
                endpoint.tls_config(tls_config(&config)?).map_err(|e| Error::Tls(bakery_cli::error_chain(&e)))?;
        }
        Ok(GrpcSource {
            url: config.tunnel.as_ref().map_or_else(|| config.url.clone(), |t| t.describe().to_string()),
            endpoint,
            token_file: config.token_file,
            token: config.token,
            tunnel: config.tunnel,
            client: None,
            pairs: BTreeMap::new(),
            seeded: BTreeSet::new(),
            timeout: CALL_TIMEOUT,
        })
    }

    /// The connected client (connecting now if needed), for one-shot commands.
    pub async fn query_client(&mut self) -> Result<Client> {
        self.client().await
    }

    /// How long one call may take.
    pub fn call_timeout(&self) -> Duration {
        self.timeout
    }

    async fn client(&mut self) -> Result<Client> {
        if let Some(client) = &self.client {
            return Ok(client.clone());
        }
        // Read the token at every (re)connect, so a rotated token is picked up.
        let token = match (&self.token_file, &self.token) {
            (Some(path), _) => Some(read_bearer(path)?),
            (None, Some(token)) => Some(token.header()?),
            (None, None) => None,
        };
        let connecting = async {
            match &self.tunnel {
                Some(tunnel) => self.endpoint.connect_with_connector(tunnel.connector()).await,
                None => self.endpoint.connect().await,
            }
        };
        let channel = tokio::time::timeout(self.timeout, connecting)
            .await
            .map_err(|_| Error::Timeout { url: self.url.clone(), after: self.timeout })?
            .map_err(|e| {
                self.with_forward_failure(Error::Connect { url: self.url.clone(), reason: bakery_cli::error_chain(&e) })
            })?;
        let client = QueryClient::with_interceptor(channel, BearerToken(token));
        self.client = Some(client.clone());
        Ok(client)
    }

    /// `error` with why the port-forward failed, when it did: a forward that opened and then could
    /// not reach the pod's port ends the connection, and only its error channel says why.
    fn with_forward_failure(&self, error: Error) -> Error {
        match self.tunnel.as_ref().and_then(Tunnel::last_error) {
            Some(forward) => Error::Connect { url: self.url.clone(), reason: format!("{error}; {forward}") },
            None => error,
        }
    }

    async fn nodes(&mut self) -> Result<Vec<NodeStatus>> {
        let mut client = self.client().await?;
        let answer = tokio::time::timeout(self.timeout, client.nodes(NodesRequest {})).await;
        match answer {
            Ok(Ok(response)) => Ok(response.into_inner().nodes),
            Ok(Err(status)) => {
                // A fresh connection next time: the old one may be half-dead.
                self.client = None;
                Err(self.with_forward_failure(status.into()))
            }
            Err(_) => {
                self.client = None;
                Err(Error::Timeout { url: self.url.clone(), after: self.timeout })
            }
        }
    }

    /// The diagnosis views, each best effort: a collector without them (an older build, or one
    /// running without the live analysis) leaves the snapshot as `Query.Nodes` made it.
    async fn diagnosis(&mut self) -> (Option<PodsResponse>, Option<LiveResponse>, Option<WindowsResponse>) {
        let Ok(mut client) = self.client().await else { return (None, None, None) };
        let timeout = self.timeout;
        let pods = tokio::time::timeout(timeout, client.pods(PodsRequest {})).await.ok().and_then(Result::ok);
        let live = tokio::time::timeout(timeout, client.live(LiveRequest {})).await.ok().and_then(Result::ok);
        let windows = tokio::time::timeout(timeout, client.windows(WindowsRequest {})).await.ok().and_then(Result::ok);
        (pods.map(|r| r.into_inner()), live.map(|r| r.into_inner()), windows.map(|r| r.into_inner()))
    }

    /// The newest sample of `status`'s node older than its latest, from the collector's history.
    /// Best effort: an older collector or an empty history leaves the node without rates until
    /// the next poll.
    async fn earlier_sample(&mut self, status: &NodeStatus) -> Option<Sample> {
        let latest_ms = status.latest.as_ref()?.timestamp_ms;
        let lookback = (i64::from(status.interval_ms) * 3).max(MIN_HISTORY_LOOKBACK_MS);
        let request = HistoryRequest {
            node_name: status.node_name.clone(),
            since_ms: status.last_seen_ms.saturating_sub(lookback).max(1),
        };
        let mut client = self.client().await.ok()?;
        let response = tokio::time::timeout(self.timeout, client.history(request)).await.ok()?.ok()?;
        response
            .into_inner()
            .batches
            .into_iter()
            .flat_map(|batch| batch.samples)
            .filter(|sample| sample.timestamp_ms < latest_ms)
            .max_by_key(|sample| sample.timestamp_ms)
    }
}

impl Source for GrpcSource {
    fn describe(&self) -> String {
        self.url.clone()
    }

    async fn snapshot(&mut self) -> Result<Snapshot> {
        let statuses = self.nodes().await?;
        let listed: BTreeSet<&str> = statuses.iter().map(|s| s.node_name.as_str()).collect();
        self.pairs.retain(|name, _| listed.contains(name.as_str()));
        for status in &statuses {
            let Some(latest) = &status.latest else { continue };
            self.pairs.entry(status.node_name.clone()).or_default().push(latest.clone());
            let needs_history = self.pairs.get(&status.node_name).is_some_and(|p| p.previous.is_none());
            if needs_history
                && self.seeded.insert(status.node_name.clone())
                && let Some(earlier) = self.earlier_sample(status).await
            {
                self.pairs.entry(status.node_name.clone()).or_default().seed_previous(earlier);
            }
        }
        let mut snapshot = derive::snapshot(&statuses, &self.pairs, crate::now_ms());
        let (pods, live, windows) = self.diagnosis().await;
        derive::apply_diagnosis(&mut snapshot, pods.as_ref(), live.as_ref(), windows.as_ref());
        Ok(snapshot)
    }
}

fn tls_config(config: &GrpcConfig) -> Result<ClientTlsConfig> {
    let read = |path: &PathBuf| std::fs::read(path).map_err(|source| Error::TlsFile { path: path.clone(), source });
    let mut tls = ClientTlsConfig::new();
    if let Some(ca) = &config.tls_ca {
        tls = tls.ca_certificate(Certificate::from_pem(read(ca)?));
    } else if let Some(pem) = &config.tls_ca_pem {
        tls = tls.ca_certificate(Certificate::from_pem(pem));
    }
    if let Some((cert, key)) = &config.tls_identity {
        tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
    }
    Ok(tls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_token_skips_comments_and_blank_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "# rotated 2026-11\n\n  s3cret  \nold\n").unwrap();
        assert_eq!(read_bearer(&path).unwrap(), "Bearer s3cret");
        std::fs::write(&path, "# nothing\n\n").unwrap();
        assert!(matches!(read_bearer(&path), Err(Error::EmptyTokenFile { .. })));
    }

    #[test]
    fn a_url_without_a_scheme_is_refused_with_an_example() {
        let error = GrpcSource::new(GrpcConfig::plain("127.0.0.1:7431")).unwrap_err();
        assert!(error.to_string().contains("http://127.0.0.1:7431"), "{error}");
    }

    #[test]
    fn https_needs_a_ca_and_tls_files_need_https() {
        let error = GrpcSource::new(GrpcConfig::plain("https://collector:7431")).unwrap_err();
        assert!(error.to_string().contains("https needs --tls-ca"), "{error}");
        let config = GrpcConfig { tls_ca: Some("ca.pem".into()), ..GrpcConfig::plain("http://collector:7431") };
        let error = GrpcSource::new(config).unwrap_err();
        assert!(error.to_string().contains("use https://"), "{error}");
        let config = GrpcConfig { tls_ca: Some("/nonexistent/ca.pem".into()), ..GrpcConfig::plain("https://c:7431") };
        assert!(matches!(GrpcSource::new(config), Err(Error::TlsFile { .. })));
    }
}
