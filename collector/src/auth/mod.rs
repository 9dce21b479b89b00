//! Who may do what: each call is made by a [`Principal`], with the roles its credential grants
//! (ingest, read, control) and, for ingest, the node it proves.
//!
//! Credentials, by flag:
//! - `--token-file`: the shared ingest token. It does NOT bind identity: any holder may stream as
//!   any node (the demo, quick tests, clusters without TokenReview).
//! - `--node-token-file`: `NODE TOKEN` lines, each token proving its node.
//! - `--agent-service-account NAMESPACE/NAME`: a bearer token no file lists is checked with a
//!   Kubernetes TokenReview ([`service_account`]); it proves the node the review names.
//! - `--tls-client-ca`: a verified client certificate proves the node in its Subject CN (else its
//!   first DNS SAN) ([`certificate`]); ingest only.
//! - `--read-token-file`, `--control-token-file`: people (bakery-top, scrapers). Control implies
//!   read. Once either is given, roles are separated: agent credentials only ingest. Without
//!   them the shared token and client certificates also read and control, as before roles
//!   existed (logged as a warning at start).
//! - `--insecure-no-auth`: everyone may do everything, as any node.
//!
//! A presented bearer token is what counts; without one, the client certificate. Token files are
//! re-read when they change. Refusals are `UNAUTHENTICATED` (no or unknown credential),
//! `PERMISSION_DENIED` (a role or node the credential does not grant) or `UNAVAILABLE` (a
//! TokenReview that could not be made), counted per cause and logged at a limited rate
//! ([`refusals`]).

pub mod certificate;
pub mod principal;
pub mod refusals;
pub mod service_account;
pub mod token_file;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tonic::{Request, Status};

pub use principal::{Call, CredentialKind, Denied, NodeBinding, Principal, Role, Roles};
pub use refusals::{REFUSAL_LOG_PERIOD, RefusalCause, RefusalCounts};
pub use service_account::{ServiceAccountRef, TokenReviewer};
pub use token_file::{TokenFile, parse_node_tokens, parse_tokens};

use crate::error::{Error, Result};
use refusals::Refusals;
use service_account::{Refused, ServiceAccountAuth};
use token_file::Format;

/// The credential flags besides `--token-file` and `--insecure-no-auth` (which
/// [`crate::ServeConfig`] has on its own).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// `--node-token-file`: `NODE TOKEN` lines.
    pub node_token_file: Option<PathBuf>,
    /// `--read-token-file`: tokens for people who read.
    pub read_token_file: Option<PathBuf>,
    /// `--control-token-file`: tokens for people who also change sampling and windows.
    pub control_token_file: Option<PathBuf>,
    /// `--agent-service-account`: the agents' ServiceAccount, whose tokens are reviewed.
    pub agent_service_account: Option<ServiceAccountRef>,
}

/// Everything the authenticator is built from.
#[derive(Debug, Clone, Default)]
pub struct AuthSettings {
    /// `--token-file`: the shared ingest token(s).
    pub shared_token_file: Option<PathBuf>,
    pub credentials: Credentials,
    /// `--tls-client-ca` was given: verified client certificates reach the calls.
    pub client_certificates: bool,
    pub insecure_no_auth: bool,
}

/// Checks each call's credentials.
#[derive(Debug)]
pub struct Authenticator {
    insecure: bool,
    shared: Option<TokenFile>,
    nodes: Option<TokenFile>,
    read: Option<TokenFile>,
    control: Option<TokenFile>,
    client_certificates: bool,
    service_account: Option<ServiceAccountAuth>,
    /// Read or control tokens exist: agent credentials only ingest.
    roles_separated: bool,
    refusals: Refusals,
}

impl Authenticator {
    /// Loads the token files and checks that the settings make sense.
    pub fn new(settings: &AuthSettings) -> Result<Authenticator> {
        let credentials = &settings.credentials;
        let load = |path: &Option<PathBuf>, flag, format| {
            path.as_deref().map(|p| TokenFile::load(p, flag, format)).transpose()
        };
        let any_credential = settings.shared_token_file.is_some()
            || credentials.node_token_file.is_some()
            || credentials.read_token_file.is_some()
            || credentials.control_token_file.is_some()
            || credentials.agent_service_account.is_some();
        if settings.insecure_no_auth {
            if any_credential {
                return Err(Error::Config(
                    "--insecure-no-auth contradicts the token flags (--token-file, --node-token-file, \
                     --read-token-file, --control-token-file, --agent-service-account): pass one or the other"
                        .into(),
                ));
            }
            tracing::warn!(
                "--insecure-no-auth: accepting everyone without a credential, for every call, as any node \
                 (identity is NOT checked: anyone who reaches the collector can write any node's data, \
                 change sampling and open windows)"
            );
            return Ok(Authenticator::insecure());
        }
        let ingest = settings.shared_token_file.is_some()
            || credentials.node_token_file.is_some()
            || credentials.agent_service_account.is_some()
            || settings.client_certificates;
        if !ingest {
            return Err(Error::Config(
                "refusing to accept agents without authentication: pass --agent-service-account NAMESPACE/NAME \
                 (Kubernetes service-account tokens, checked with a TokenReview), --node-token-file FILE \
                 (`NODE TOKEN` lines), --tls-client-ca FILE (client certificates), --token-file FILE (one shared \
                 token, which does not bind a node), or --insecure-no-auth on a trusted network"
                    .into(),
            ));
        }
        let authenticator = Authenticator {
            insecure: false,
            shared: load(&settings.shared_token_file, "--token-file", Format::Tokens)?,
            nodes: load(&credentials.node_token_file, "--node-token-file", Format::NodeTokens)?,
            read: load(&credentials.read_token_file, "--read-token-file", Format::Tokens)?,
            control: load(&credentials.control_token_file, "--control-token-file", Format::Tokens)?,
            client_certificates: settings.client_certificates,
            service_account: credentials.agent_service_account.clone().map(ServiceAccountAuth::new),
            roles_separated: credentials.read_token_file.is_some() || credentials.control_token_file.is_some(),
            refusals: Refusals::default(),
        };
        authenticator.log_summary();
        Ok(authenticator)
    }

    /// Everyone may do everything (`--insecure-no-auth`).
    pub fn insecure() -> Authenticator {
        Authenticator {
            insecure: true,
            shared: None,
            nodes: None,
            read: None,
            control: None,
            client_certificates: false,
            service_account: None,
            roles_separated: false,
            refusals: Refusals::default(),
        }
    }

    fn log_summary(&self) {
        let mut accepted = Vec::new();
        if let Some(account) = self.service_account.as_ref().map(ServiceAccountAuth::account) {
            accepted.push(format!("service-account tokens of {account} (TokenReview, audience bakery)"));
        }
        if self.nodes.is_some() {
            accepted.push("node tokens".to_string());
        }
        if self.client_certificates {
            accepted.push("client certificates (node = Subject CN, else first DNS SAN)".to_string());
        }
        if self.shared.is_some() {
            accepted.push("the shared token".to_string());
        }
        if self.read.is_some() {
            accepted.push("read tokens".to_string());
        }
        if self.control.is_some() {
            accepted.push("control tokens".to_string());
        }
        tracing::info!(credentials = %accepted.join(", "), roles_separated = self.roles_separated, "authentication");
        if self.shared.is_some() {
            tracing::warn!(
                "--token-file: the shared token does NOT bind identity: any holder may stream as any node \
                 (and replace that node's stream); prefer --agent-service-account or --node-token-file"
            );
        }
        if !self.roles_separated {
            tracing::warn!(
                "no --read-token-file or --control-token-file: roles are not separated, so the shared token and \
                 client certificates may also read, change sampling intervals and open windows"
            );
        }
    }

    /// True when service-account tokens are reviewed: the collector needs a cluster connection
    /// and must [`Authenticator::attach_token_reviewer`] it.
    pub fn reviews_service_account_tokens(&self) -> bool {
        self.service_account.is_some()
    }

    /// Gives the service-account check its TokenReview API. Fails when service-account tokens
    /// are to be reviewed and there is no cluster to review them with.
    pub fn attach_token_reviewer(&self, reviewer: Option<Arc<dyn TokenReviewer>>) -> Result<()> {
        let Some(service_account) = &self.service_account else { return Ok(()) };
        match reviewer {
            Some(reviewer) => {
                service_account.attach(reviewer);
                Ok(())
            }
            None => Err(Error::Config(format!(
                "--agent-service-account {} needs the Kubernetes API to review the agents' tokens, but the collector \
                 has no cluster connection (--no-kubernetes, or no kubeconfig and not in a pod)",
                service_account.account()
            ))),
        }
    }

    /// TokenReviews sent so far (0 without `--agent-service-account`).
    pub fn token_reviews_sent(&self) -> u64 {
        self.service_account.as_ref().map_or(0, ServiceAccountAuth::reviews_sent)
    }

    /// True when callers may come with a bearer token: a TLS client certificate is then
    /// optional at the handshake (people use tokens), else it is required.
    pub fn accepts_bearer_tokens(&self) -> bool {
        self.insecure
            || self.shared.is_some()
            || self.nodes.is_some()
            || self.read.is_some()
            || self.control.is_some()
            || self.service_account.is_some()
    }

    /// True when people's roles are separated from the agents' (read or control tokens exist).
    pub fn roles_separated(&self) -> bool {
        self.roles_separated
    }

    /// Refusals per cause, for the export.
    pub fn refusal_counts(&self) -> &Arc<RefusalCounts> {
        self.refusals.counts()
    }

    /// Who makes `request`, if it may make `call`; the refusal (counted and logged) otherwise.
    pub async fn authorize<T>(&self, request: &Request<T>, call: Call) -> Result<Principal, Status> {
        let peer = request.remote_addr();
        let header = request.metadata().get("authorization").map(|v| v.to_str().unwrap_or_default());
        let certificate = request.peer_certs().and_then(|chain| chain.first().map(|leaf| leaf.to_vec()));
        let principal = self.authenticate(header, certificate.as_deref(), peer, call).await?;
        self.permit(&principal, call, peer)?;
        Ok(principal)
    }

    /// Ok when `principal` may make `call` (counted and logged when not).
    pub fn permit(&self, principal: &Principal, call: Call, peer: Option<SocketAddr>) -> Result<(), Status> {
        principal.authorize(call).map_err(|denied| self.deny(denied, peer, call))
    }

    /// The Hello check: Ok when a stream of `principal` may write `node`, which it named in its
    /// Hello; `PERMISSION_DENIED` saying which node the credential proves otherwise.
    pub fn check_stream_node(&self, principal: &Principal, node: &str, peer: Option<SocketAddr>) -> Result<(), Status> {
        principal.may_write(node).map_err(|denied| self.deny(denied, peer, Call::IngestStream))
    }

    /// The replacement check: Ok when a stream of `principal` may take over the connected
    /// stream of `node`. Only a principal that may write the node may (with node-bound
    /// credentials, only that node's own credential); one that may not is refused before the
    /// old stream is touched.
    pub fn check_replacement(&self, principal: &Principal, node: &str, peer: Option<SocketAddr>) -> Result<(), Status> {
        self.check_stream_node(principal, node, peer)
    }

    /// `GET /metrics` with `--metrics-require-token`: Ok for a read or control token in
    /// `authorization`; the refusal as (HTTP status, message) otherwise.
    pub fn authorize_metrics(&self, header: Option<&str>, peer: Option<SocketAddr>) -> Result<(), (u16, String)> {
        let call = Call::Metrics;
        let token = header.and_then(bearer_token);
        let principal = match token.and_then(|token| self.token_principal(token)) {
            Some(principal) => principal,
            None => {
                let cause = if token.is_some() { RefusalCause::UnknownToken } else { RefusalCause::NoCredential };
                let why = "send `Authorization: Bearer <token>` with a read token (--read-token-file)";
                self.refusals.record(cause, peer, call.name(), why);
                return Err((401, format!("{why}\n")));
            }
        };
        principal.authorize(call).map_err(|denied| {
            self.refusals.record(RefusalCause::MissingRole, peer, call.name(), &denied.to_string());
            (403, format!("{denied}\n"))
        })
    }

    fn deny(&self, denied: Denied, peer: Option<SocketAddr>, call: Call) -> Status {
        let cause = match denied {
            Denied::MissingRole { .. } => RefusalCause::MissingRole,
            Denied::WrongNode { .. } => RefusalCause::WrongNode,
        };
        let message = denied.to_string();
        self.refusals.record(cause, peer, call.name(), &message);
        Status::permission_denied(message)
    }

    async fn authenticate(
        &self,
        header: Option<&str>,
        certificate: Option<&[u8]>,
        peer: Option<SocketAddr>,
        call: Call,
    ) -> Result<Principal, Status> {
        if self.insecure {
            return Ok(Principal::insecure());
        }
        let refuse = |cause: RefusalCause, message: String| {
            self.refusals.record(cause, peer, call.name(), &message);
            match cause {
                RefusalCause::TokenReviewUnavailable => Status::unavailable(message),
                _ => Status::unauthenticated(message),
            }
        };
        if let Some(token) = header.and_then(bearer_token) {
            if let Some(principal) = self.token_principal(token) {
                return Ok(principal);
            }
            if let Some(service_account) = &self.service_account {
                return match service_account.authenticate(token).await {
                    Ok(node) => Ok(Principal {
                        credential: CredentialKind::ServiceAccount,
                        roles: Roles::INGEST,
                        node: NodeBinding::Node(node),
                    }),
                    Err(Refused::Rejected(why)) => Err(refuse(
                        RefusalCause::ServiceAccountRejected,
                        format!("the bearer token is in no token file and {why}"),
                    )),
                    Err(Refused::Unavailable(why)) => Err(refuse(
                        RefusalCause::TokenReviewUnavailable,
                        format!("cannot check the service-account token now: {why}"),
                    )),
                };
            }
            return Err(refuse(
                RefusalCause::UnknownToken,
                format!("wrong bearer token: it is not in the collector's token files; {}", self.accepted()),
            ));
        }
        if self.client_certificates
            && let Some(der) = certificate
        {
            return match certificate::node_of_certificate(der) {
                Ok(node) => Ok(Principal {
                    credential: CredentialKind::ClientCertificate,
                    roles: self.legacy_roles(),
                    node: NodeBinding::Node(node),
                }),
                Err(error) => Err(refuse(RefusalCause::NoCredential, error.to_string())),
            };
        }
        Err(refuse(RefusalCause::NoCredential, format!("no credential: {}", self.accepted())))
    }

    /// The roles of the shared token and of client certificates: ingest, plus read and control
    /// while no people's token separates them.
    fn legacy_roles(&self) -> Roles {
        if self.roles_separated { Roles::INGEST } else { Roles::ALL }
    }

    /// The principal of a token some token file lists (the union when several do).
    fn token_principal(&self, token: &str) -> Option<Principal> {
        let files = [
            (&self.control, CredentialKind::ControlToken, Roles::CONTROL),
            (&self.read, CredentialKind::ReadToken, Roles::READ),
            (&self.nodes, CredentialKind::NodeToken, Roles::INGEST),
            (&self.shared, CredentialKind::SharedToken, self.legacy_roles()),
        ];
        let mut found: Option<Principal> = None;
        // Every file is looked at, so the time taken does not tell which one listed the token.
        for (file, credential, roles) in files {
            let Some(entry) = file.as_ref().and_then(|f| f.find(token)) else { continue };
            let node = match (credential, entry.node) {
                (_, Some(node)) => NodeBinding::Node(node),
                (CredentialKind::SharedToken, None) => NodeBinding::AnyNode,
                _ => NodeBinding::NoNode,
            };
            let principal = Principal { credential, roles, node };
            found = Some(match found {
                Some(earlier) => earlier.merge(principal),
                None => principal,
            });
        }
        found
    }

    /// What this collector accepts, for refusal messages.
    fn accepted(&self) -> String {
        let mut ways = Vec::new();
        if self.service_account.is_some() {
            ways.push("the agents' projected service-account token (audience bakery)");
        }
        if self.nodes.is_some() {
            ways.push("the node's token from --node-token-file");
        }
        if self.shared.is_some() {
            ways.push("a token from --token-file");
        }
        if self.read.is_some() || self.control.is_some() {
            ways.push("a read or control token");
        }
        let mut text = String::new();
        if !ways.is_empty() {
            text = format!("send `authorization: Bearer <token>` with {}", ways.join(", or "));
        }
        if self.client_certificates {
            if !text.is_empty() {
                text.push_str("; or ");
            }
            text.push_str("present a client certificate signed by --tls-client-ca");
        }
        text
    }
}

/// The value of `Bearer <token>` (scheme case-insensitive, RFC 6750 section 2.1).
pub fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_header() {
        let table = [
            ("Bearer abc", Some("abc")),
            ("bearer  abc ", Some("abc")),
            ("BEARER abc", Some("abc")),
            ("Basic abc", None),
            ("Bearer ", None),
            ("abc", None),
            ("", None),
        ];
        for (header, expected) in table {
            assert_eq!(bearer_token(header), expected, "{header:?}");
        }
    }

    struct Files {
        dir: tempfile::TempDir,
    }

    impl Files {
        fn new() -> Files {
            Files { dir: tempfile::tempdir().unwrap() }
        }

        fn write(&self, name: &str, text: &str) -> Option<PathBuf> {
            let path = self.dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            Some(path)
        }
    }

    async fn principal_of(auth: &Authenticator, token: &str) -> Result<Principal, Status> {
        auth.authenticate(Some(&format!("Bearer {token}")), None, None, Call::Nodes).await
    }

    #[tokio::test]
    async fn each_token_file_grants_its_roles_and_node() {
        let files = Files::new();
        let settings = AuthSettings {
            shared_token_file: files.write("shared", "shared-1\n"),
            credentials: Credentials {
                node_token_file: files.write("nodes", "pi-1 node-1\npi-2 node-2\n"),
                read_token_file: files.write("read", "read-1\n"),
                control_token_file: files.write("control", "control-1\n"),
                agent_service_account: None,
            },
            ..AuthSettings::default()
        };
        let auth = Authenticator::new(&settings).unwrap();
        assert!(auth.roles_separated());
        let pi = |n: &str| NodeBinding::Node(n.into());
        // (token, credential, roles, node)
        let table = [
            ("shared-1", CredentialKind::SharedToken, Roles::INGEST, NodeBinding::AnyNode),
            ("node-1", CredentialKind::NodeToken, Roles::INGEST, pi("pi-1")),
            ("node-2", CredentialKind::NodeToken, Roles::INGEST, pi("pi-2")),
            ("read-1", CredentialKind::ReadToken, Roles::READ, NodeBinding::NoNode),
            ("control-1", CredentialKind::ControlToken, Roles::CONTROL, NodeBinding::NoNode),
        ];
        for (token, credential, roles, node) in table {
            assert_eq!(principal_of(&auth, token).await.unwrap(), Principal { credential, roles, node }, "{token}");
        }
        // a wrong token is UNAUTHENTICATED and says what would be accepted
        let refused = principal_of(&auth, "guess").await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unauthenticated);
        assert!(refused.message().contains("wrong bearer token"), "{}", refused.message());
        let none = auth.authenticate(None, None, None, Call::Nodes).await.unwrap_err();
        assert!(none.message().starts_with("no credential"), "{}", none.message());
        assert_eq!(auth.refusal_counts().get(RefusalCause::UnknownToken), 1);
        assert_eq!(auth.refusal_counts().get(RefusalCause::NoCredential), 1);
    }

    #[tokio::test]
    async fn without_people_tokens_the_shared_token_keeps_every_role() {
        let files = Files::new();
        let settings =
            AuthSettings { shared_token_file: files.write("shared", "shared-1\n"), ..AuthSettings::default() };
        let auth = Authenticator::new(&settings).unwrap();
        assert!(!auth.roles_separated());
        let shared = principal_of(&auth, "shared-1").await.unwrap();
        assert_eq!((shared.roles, &shared.node), (Roles::ALL, &NodeBinding::AnyNode));
        assert!(auth.permit(&shared, Call::StartWindow, None).is_ok());
    }

    #[test]
    fn settings_that_cannot_work_are_refused_at_start() {
        let files = Files::new();
        let nothing = Authenticator::new(&AuthSettings::default()).unwrap_err().to_string();
        assert!(nothing.contains("--agent-service-account") && nothing.contains("--insecure-no-auth"), "{nothing}");
        let only_people = AuthSettings {
            credentials: Credentials { read_token_file: files.write("read", "r\n"), ..Credentials::default() },
            ..AuthSettings::default()
        };
        let error = Authenticator::new(&only_people).unwrap_err().to_string();
        assert!(error.contains("refusing to accept agents without authentication"), "{error}");
        let both = AuthSettings {
            shared_token_file: files.write("shared", "s\n"),
            insecure_no_auth: true,
            ..AuthSettings::default()
        };
        assert!(Authenticator::new(&both).unwrap_err().to_string().contains("contradicts"));
        let account = AuthSettings {
            credentials: Credentials {
                agent_service_account: Some("bakery/bakery-agent".parse().unwrap()),
                ..Credentials::default()
            },
            ..AuthSettings::default()
        };
        let auth = Authenticator::new(&account).unwrap();
        let error = auth.attach_token_reviewer(None).unwrap_err().to_string();
        assert!(error.contains("needs the Kubernetes API"), "{error}");
    }

    #[test]
    fn metrics_need_a_read_or_control_token() {
        let files = Files::new();
        let settings = AuthSettings {
            credentials: Credentials {
                node_token_file: files.write("nodes", "pi-1 node-1\n"),
                read_token_file: files.write("read", "read-1\n"),
                control_token_file: files.write("control", "control-1\n"),
                ..Credentials::default()
            },
            ..AuthSettings::default()
        };
        let auth = Authenticator::new(&settings).unwrap();
        // (Authorization header, HTTP status or None for served)
        let table = [
            (Some("Bearer read-1"), None),
            (Some("Bearer control-1"), None),
            (None, Some(401)),
            (Some("Bearer guess"), Some(401)),
            // an agent's token does not read
            (Some("Bearer node-1"), Some(403)),
        ];
        for (header, expected) in table {
            assert_eq!(auth.authorize_metrics(header, None).err().map(|(code, _)| code), expected, "{header:?}");
        }
    }
}
