//! `--context`: finds the release's collector Service through a kubeconfig context, reaches it by port-forward, and reads the read token and CA from the release's Secrets.

pub mod pick;
mod tunnel;

use std::path::PathBuf;

use k8s_openapi::api::core::v1::{Secret, Service};
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::source::GrpcConfig;
use crate::source::grpc::InlineToken;
pub use tunnel::Tunnel;

/// Which cluster and release to look in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterArgs {
    /// The kubeconfig file; `None`: `KUBECONFIG`, then `~/.kube/config`, as kubectl reads them.
    pub kubeconfig: Option<PathBuf>,
    /// The context; empty: the kubeconfig's current context.
    pub context: String,
    /// Look only in this namespace; `None`: every namespace, or the context's when listing every
    /// namespace is not allowed.
    pub namespace: Option<String>,
    /// The Helm release; `None`: the only one.
    pub release: Option<String>,
}

/// Why the collector could not be reached through the cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot use the kubeconfig: {0}")]
    Kubeconfig(String),
    #[error("cannot {what}: {reason}")]
    Api { what: String, reason: String },
    #[error(transparent)]
    Pick(#[from] pick::PickError),
    #[error(
        "cannot read the Secret {namespace}/{name} ({reason}); give {flag} FILE instead, for example:\n  \
         kubectl -n {namespace} get secret {name} -o jsonpath='{{.data.{key_path}}}' | base64 -d > {file}\n  \
         bakery-top --context ... {flag} {file}"
    )]
    Secret { namespace: String, name: String, key_path: String, reason: String, flag: &'static str, file: &'static str },
    #[error("the Secret {namespace}/{name} has no key {key:?} (or it is empty)")]
    SecretKey { namespace: String, name: String, key: String },
}

impl ClusterError {
    fn api(what: String, error: &kube::Error) -> ClusterError {
        ClusterError::Api { what, reason: api_reason(error) }
    }
}

/// The API's own message for a refused request ("secrets \"x\" is forbidden: ..."), else the chain.
fn api_reason(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) if !status.message.is_empty() => format!("{} ({})", status.message, status.code),
        other => bakery_cli::error_chain(other),
    }
}

fn is_forbidden(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 403)
}

/// A collector config that reaches the release's collector through the cluster: `given`'s token
/// and CA files win over the Secrets'.
pub async fn reach(args: &ClusterArgs, given: &GrpcConfig) -> Result<GrpcConfig, ClusterError> {
    let kubeconfig = match &args.kubeconfig {
        Some(path) => Kubeconfig::read_from(path),
        None => Kubeconfig::read(),
    }
    .map_err(|e| ClusterError::Kubeconfig(bakery_cli::error_chain(&e)))?;
    let context = match args.context.as_str() {
        "" => kubeconfig.current_context.clone().unwrap_or_default(),
        name => name.to_string(),
    };
    let options = KubeConfigOptions { context: Some(context.clone()).filter(|c| !c.is_empty()), ..Default::default() };
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|e| ClusterError::Kubeconfig(bakery_cli::error_chain(&e)))?;
    let default_namespace = config.default_namespace.clone();
    let client = kube::Client::try_from(config).map_err(|e| ClusterError::Kubeconfig(bakery_cli::error_chain(&e)))?;
    let service = find_service(&client, args, &default_namespace).await?;
    let namespace = service.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let name = service.metadata.name.clone().unwrap_or_default();
    let annotations = service.metadata.annotations.clone().unwrap_or_default();
    let port = pick::grpc_port(&service)?.port;
    let tunnel = Tunnel::new(client.clone(), service, format!("{context}: {namespace}/{name} (port-forward)")).await?;
    let secrets: Api<Secret> = Api::namespaced(client, &namespace);
    let mut reached = GrpcConfig { tunnel: Some(tunnel), ..given.clone() };
    if given.token_file.is_none()
        && let Some(secret) = annotations.get(pick::READ_TOKEN_SECRET_ANNOTATION)
    {
        let bytes = secret_value(&secrets, &namespace, secret, "token", "--token-file", "read-token").await?;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let token = bakery_signals::token::client_token(&text).map_err(|_| ClusterError::SecretKey {
            namespace: namespace.clone(),
            name: secret.clone(),
            key: "token".into(),
        })?;
        reached.token = Some(InlineToken::new(token.to_string()));
    }
    let tls = annotations.get(pick::TLS_SECRET_ANNOTATION);
    if let Some(secret) = tls
        && given.tls_ca.is_none()
    {
        reached.tls_ca_pem = Some(secret_value(&secrets, &namespace, secret, "ca.crt", "--tls-ca", "ca.crt").await?);
    }
    // The certificate names the Service in this form; the connection itself goes through the tunnel.
    let scheme = if tls.is_some() { "https" } else { "http" };
    reached.url = format!("{scheme}://{name}.{namespace}.svc:{port}");
    Ok(reached)
}

async fn find_service(
    client: &kube::Client,
    args: &ClusterArgs,
    default_namespace: &str,
) -> Result<Service, ClusterError> {
    let selector = pick::collector_selector(args.release.as_deref());
    if let Some(namespace) = &args.namespace {
        return services_in(client, namespace, &selector).await;
    }
    let everywhere: Api<Service> = Api::all(client.clone());
    match everywhere.list(&ListParams::default().labels(&selector)).await {
        Ok(listed) => Ok(pick::one_service(listed.items, "in any namespace", &selector)?),
        // Users allowed only their namespace still find a release there.
        Err(error) if is_forbidden(&error) => services_in(client, default_namespace, &selector).await,
        Err(error) => Err(ClusterError::api("list the Services in every namespace".into(), &error)),
    }
}

async fn services_in(client: &kube::Client, namespace: &str, selector: &str) -> Result<Service, ClusterError> {
    let api: Api<Service> = Api::namespaced(client.clone(), namespace);
    let listed = api
        .list(&ListParams::default().labels(selector))
        .await
        .map_err(|e| ClusterError::api(format!("list the Services in the namespace {namespace}"), &e))?;
    Ok(pick::one_service(listed.items, &format!("in the namespace {namespace}"), selector)?)
}

async fn secret_value(
    secrets: &Api<Secret>,
    namespace: &str,
    name: &str,
    key: &str,
    flag: &'static str,
    file: &'static str,
) -> Result<Vec<u8>, ClusterError> {
    let secret = secrets.get(name).await.map_err(|error| ClusterError::Secret {
        namespace: namespace.into(),
        name: name.into(),
        key_path: key.replace('.', "\\."),
        reason: api_reason(&error),
        flag,
        file,
    })?;
    let value = secret.data.and_then(|mut data| data.remove(key)).map(|bytes| bytes.0).unwrap_or_default();
    if value.is_empty() {
        return Err(ClusterError::SecretKey { namespace: namespace.into(), name: name.into(), key: key.into() });
    }
    Ok(value)
}
