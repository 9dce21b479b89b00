//! TLS and mutual TLS with certificates made for the test (rcgen): an agent that trusts the CA
//! streams; without a client certificate, mTLS refuses the connection.

use std::path::Path;

use bakery_collector::TlsFiles;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use crate::harness::*;

pub(crate) struct Pki {
    pub(crate) ca_pem: String,
    pub(crate) server: (String, String),
    pub(crate) client: (String, String),
}

pub(crate) fn make_pki() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // Distinct subjects: with rcgen's one default name, OpenSSL peers (nginx, curl) take every
    // leaf for a self-signed certificate.
    ca_params.distinguished_name.push(DnType::CommonName, "bakery test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf = |names: Vec<String>| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names.clone()).unwrap();
        params.distinguished_name.push(DnType::CommonName, names[0].as_str());
        let cert = params.signed_by(&key, &ca).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    Pki {
        ca_pem: ca.pem(),
        server: leaf(vec!["localhost".into(), "127.0.0.1".into()]),
        client: leaf(vec!["agent.bakery.test".into()]),
    }
}

pub(crate) fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

async fn tls_channel(
    port: u16,
    ca: &str,
    identity: Option<&(String, String)>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)).domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    Channel::from_shared(format!("https://127.0.0.1:{port}")).unwrap().tls_config(tls)?.connect().await
}

#[tokio::test]
async fn an_agent_streams_over_tls_with_a_token() {
    let pki = make_pki();
    let certs = tempfile::tempdir().unwrap();
    let tls = TlsFiles {
        cert: write(certs.path(), "server.crt", &pki.server.0),
        key: write(certs.path(), "server.key", &pki.server.1),
        client_ca: None,
    };
    let collector = TestCollector::start_with(|config| config.tls = Some(tls)).await;
    let channel = tls_channel(collector.addr.port(), &pki.ca_pem, None).await.expect("TLS handshake");
    let mut client = bakery_proto::v1::query_client::QueryClient::new(channel);
    let nodes = client.nodes(authorized(bakery_proto::v1::NodesRequest {}, Some(TOKEN))).await.expect("query over TLS");
    assert!(nodes.into_inner().nodes.is_empty());
    // plaintext to a TLS port fails
    let plain = Channel::from_shared(collector.url()).unwrap().connect().await;
    if let Ok(plain) = plain {
        let mut client = bakery_proto::v1::query_client::QueryClient::new(plain);
        assert!(client.nodes(authorized(bakery_proto::v1::NodesRequest {}, Some(TOKEN))).await.is_err());
    }
    collector.stop().await;
}

#[tokio::test]
async fn mutual_tls_needs_a_client_certificate_signed_by_the_ca() {
    let pki = make_pki();
    let certs = tempfile::tempdir().unwrap();
    let tls = TlsFiles {
        cert: write(certs.path(), "server.crt", &pki.server.0),
        key: write(certs.path(), "server.key", &pki.server.1),
        client_ca: Some(write(certs.path(), "ca.crt", &pki.ca_pem)),
    };
    // mTLS alone authenticates: no token file
    let collector = TestCollector::start_with(|config| {
        config.tls = Some(tls);
        config.token_file = None;
    })
    .await;
    let port = collector.addr.port();
    let channel = tls_channel(port, &pki.ca_pem, Some(&pki.client)).await.expect("mTLS handshake");
    let mut client = bakery_proto::v1::query_client::QueryClient::new(channel);
    assert!(client.nodes(bakery_proto::v1::NodesRequest {}).await.is_ok(), "a client certificate is enough");

    let refused = match tls_channel(port, &pki.ca_pem, None).await {
        Err(_) => true,
        Ok(channel) => {
            let mut client = bakery_proto::v1::query_client::QueryClient::new(channel);
            client.nodes(bakery_proto::v1::NodesRequest {}).await.is_err()
        }
    };
    assert!(refused, "without a client certificate the collector refuses");
    collector.stop().await;
}
