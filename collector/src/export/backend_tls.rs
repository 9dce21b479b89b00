//! TLS from the collector to its OTLP backend: the trust roots and client identity named by the
//! `OTEL_EXPORTER_OTLP_[METRICS_]{CERTIFICATE,CLIENT_CERTIFICATE,CLIENT_KEY}` variables, turned
//! into the two clients' configurations (tonic for gRPC, reqwest on rustls for http/protobuf).
//!
//! Why bakery builds these and not the exporter crate: `opentelemetry-otlp` 0.33 ignores all
//! three variables, and its default reqwest client would bring a second crypto provider
//! (aws-lc) into a binary that already links ring through tonic and kube. Both transports trust
//! the Mozilla roots (`webpki-roots`, so a distroless image needs no CA bundle) plus the
//! certificate file, the way `OTEL_EXPORTER_OTLP_CERTIFICATE` is specified: "trusted certificate
//! to use when verifying a server's TLS credentials".

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{Error, Result};

/// The TLS files the OTEL variables name (all optional).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackendTlsFiles {
    /// Extra trust roots (PEM), from `..._CERTIFICATE`.
    pub certificate: Option<PathBuf>,
    /// Client certificate chain and key (PEM) for mutual TLS, from `..._CLIENT_CERTIFICATE` and
    /// `..._CLIENT_KEY`; always both or neither.
    pub client_identity: Option<(PathBuf, PathBuf)>,
}

impl BackendTlsFiles {
    /// Reads the variables (the `_METRICS_` variant first). One of the client pair without the
    /// other is a configuration error, not a silent plaintext identity.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<BackendTlsFiles> {
        let path = |metrics_var: &str, general_var: &str| {
            env(metrics_var).or_else(|| env(general_var)).filter(|v| !v.trim().is_empty()).map(PathBuf::from)
        };
        let certificate = path("OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE", "OTEL_EXPORTER_OTLP_CERTIFICATE");
        let client_certificate =
            path("OTEL_EXPORTER_OTLP_METRICS_CLIENT_CERTIFICATE", "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE");
        let client_key = path("OTEL_EXPORTER_OTLP_METRICS_CLIENT_KEY", "OTEL_EXPORTER_OTLP_CLIENT_KEY");
        let client_identity = match (client_certificate, client_key) {
            (Some(certificate), Some(key)) => Some((certificate, key)),
            (None, None) => None,
            (Some(_), None) | (None, Some(_)) => {
                return Err(Error::Config(
                    "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and OTEL_EXPORTER_OTLP_CLIENT_KEY go together: set both \
                     for mutual TLS with the OTLP backend, or neither"
                        .into(),
                ));
            }
        };
        Ok(BackendTlsFiles { certificate, client_identity })
    }

    /// The gRPC client's TLS (tonic on rustls with ring).
    pub fn tonic_config(&self) -> Result<tonic::transport::ClientTlsConfig> {
        use tonic::transport::{Certificate, ClientTlsConfig, Identity};
        let mut config = ClientTlsConfig::new().with_webpki_roots();
        if let Some(path) = &self.certificate {
            config = config.ca_certificate(Certificate::from_pem(read(path, Variable::Certificate)?));
        }
        if let Some((certificate, key)) = &self.client_identity {
            config = config.identity(Identity::from_pem(
                read(certificate, Variable::ClientCertificate)?,
                read(key, Variable::ClientKey)?,
            ));
        }
        Ok(config)
    }

    /// The http/protobuf client: reqwest on a rustls config built here with ring. `timeout` is
    /// the per-request `OTEL_EXPORTER_OTLP_[METRICS_]TIMEOUT` (the exporter applies it only to
    /// the client it builds itself).
    pub fn reqwest_client(&self, timeout: Duration) -> Result<reqwest::Client> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
        if let Some(path) = &self.certificate {
            let pem = read(path, Variable::Certificate)?;
            let certificates = pem_certificates(&pem, path)?;
            for certificate in certificates {
                roots.add(certificate).map_err(|e| bad_pem(path, &e.to_string()))?;
            }
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Config(format!("TLS for the OTLP backend: {e}")))?
            .with_root_certificates(roots);
        let config = match &self.client_identity {
            None => builder.with_no_client_auth(),
            Some((certificate_path, key_path)) => {
                let chain = pem_certificates(&read(certificate_path, Variable::ClientCertificate)?, certificate_path)?;
                let key = PrivateKeyDer::from_pem_slice(&read(key_path, Variable::ClientKey)?)
                    .map_err(|e| bad_pem(key_path, &format!("no private key: {e}")))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| Error::Config(format!("the OTLP client certificate and key do not match: {e}")))?
            }
        };
        reqwest::Client::builder()
            .timeout(timeout)
            .tls_backend_preconfigured(config)
            .build()
            .map_err(|e| Error::Config(format!("cannot build the OTLP HTTP client: {e}")))
    }
}

/// `variable` names what the user set, so the error says which one to fix.
fn read(path: &Path, variable: Variable) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Io {
        action: variable.read_failure(),
        path: path.to_path_buf(),
        source,
    })
}

#[derive(Clone, Copy)]
enum Variable {
    Certificate,
    ClientCertificate,
    ClientKey,
}

impl Variable {
    fn read_failure(self) -> &'static str {
        match self {
            Variable::Certificate => "cannot read OTEL_EXPORTER_OTLP_CERTIFICATE",
            Variable::ClientCertificate => "cannot read OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
            Variable::ClientKey => "cannot read OTEL_EXPORTER_OTLP_CLIENT_KEY",
        }
    }
}

fn pem_certificates(pem: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| bad_pem(path, &e.to_string()))?;
    if certificates.is_empty() {
        return Err(bad_pem(path, "no CERTIFICATE block"));
    }
    Ok(certificates)
}

fn bad_pem(path: &Path, why: &str) -> Error {
    Error::Config(format!("{}: not a usable PEM file for the OTLP backend: {why}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
    }

    #[test]
    fn the_metrics_variables_win_and_the_client_pair_must_be_complete() {
        let files = BackendTlsFiles::from_env(&env_of(&[
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/general.pem"),
            ("OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE", "/metrics.pem"),
            ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "/client.pem"),
            ("OTEL_EXPORTER_OTLP_METRICS_CLIENT_KEY", "/client.key"),
        ]))
        .unwrap();
        assert_eq!(files.certificate, Some(PathBuf::from("/metrics.pem")));
        assert_eq!(files.client_identity, Some((PathBuf::from("/client.pem"), PathBuf::from("/client.key"))));
        let half = BackendTlsFiles::from_env(&env_of(&[("OTEL_EXPORTER_OTLP_CLIENT_KEY", "/client.key")]));
        assert!(half.unwrap_err().to_string().contains("go together"));
        assert_eq!(BackendTlsFiles::from_env(&env_of(&[])).unwrap(), BackendTlsFiles::default());
    }

    #[test]
    fn unreadable_or_non_pem_files_are_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = BackendTlsFiles { certificate: Some(dir.path().join("absent.pem")), client_identity: None };
        let error = missing.reqwest_client(Duration::from_secs(1)).unwrap_err().to_string();
        assert!(error.contains("OTEL_EXPORTER_OTLP_CERTIFICATE") && error.contains("absent.pem"), "{error}");
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "this is not PEM").unwrap();
        let files = BackendTlsFiles { certificate: Some(garbage), client_identity: None };
        let error = files.reqwest_client(Duration::from_secs(1)).unwrap_err().to_string();
        assert!(error.contains("garbage.pem") && error.contains("no CERTIFICATE"), "{error}");
    }

    #[test]
    fn without_files_both_clients_build_on_the_public_roots() {
        let files = BackendTlsFiles::default();
        assert!(files.reqwest_client(Duration::from_secs(1)).is_ok());
        assert!(files.tonic_config().is_ok());
    }
}
