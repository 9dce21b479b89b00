//! The gRPC source against a stand-in collector: rates on the first snapshot (seeded from
//! history), the bearer token, and reconnecting after the collector comes back.

use std::time::Duration;

use bakery_top::Error;
use bakery_top::source::{GrpcConfig, GrpcSource, Source};

use crate::fake_collector::{FakeCollector, NODE};

#[tokio::test]
async fn the_first_snapshot_already_has_rates() {
    let collector = FakeCollector::start(None).await;
    let mut source = GrpcSource::new(GrpcConfig::plain(collector.url())).unwrap();
    let snapshot = source.snapshot().await.unwrap();
    let node = &snapshot.nodes[0];
    assert_eq!(node.name, NODE);
    let cpu = node.cpu.expect("rates from the history sample");
    assert!((cpu.busy_percent - 50.0).abs() < 1e-9 && (cpu.softirq_percent - 10.0).abs() < 1e-9, "{cpu:?}");
    let nic = node.nic.expect("nic rates");
    assert_eq!(
        (nic.rx_bytes_per_second, nic.tx_bytes_per_second),
        (1_000_000.0, 500_000.0),
        "eth0 only, veth excluded"
    );
    assert_eq!(node.inbound_connections, Some(12));
    let pod = &snapshot.pods[0];
    assert_eq!(pod.uid, "uid-7");
    assert_eq!(pod.cpu_cores, Some(0.25));
    assert_eq!(pod.network.map(|n| n.rx_bytes_per_second), Some(100_000.0));

    // The next poll uses the two latest samples.
    let next = source.snapshot().await.unwrap();
    assert_eq!(next.nodes[0].nic.map(|n| n.rx_bytes_per_second), Some(1_000_000.0));
    collector.stop().await;
}

#[tokio::test]
async fn the_token_is_sent_as_a_bearer_header() {
    let collector = FakeCollector::start(Some("s3cret")).await;
    let mut without = GrpcSource::new(GrpcConfig::plain(collector.url())).unwrap();
    match without.snapshot().await {
        Err(Error::Status { code: tonic::Code::Unauthenticated, .. }) => {}
        other => panic!("expected UNAUTHENTICATED without a token, got {other:?}"),
    }
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "# bakery-top token\n\ns3cret\n").unwrap();
    let mut with =
        GrpcSource::new(GrpcConfig { token_file: Some(token_file), ..GrpcConfig::plain(collector.url()) }).unwrap();
    assert_eq!(with.snapshot().await.unwrap().nodes.len(), 1);
    collector.stop().await;
}

#[tokio::test]
async fn a_collector_that_goes_away_and_comes_back_is_reconnected() {
    let collector = FakeCollector::start(None).await;
    let addr = collector.addr;
    let mut source = GrpcSource::new(GrpcConfig::plain(collector.url())).unwrap();
    source.snapshot().await.unwrap();

    collector.stop().await;
    let error = source.snapshot().await.expect_err("the collector is gone");
    assert!(matches!(error, Error::Connect { .. } | Error::Status { .. } | Error::Timeout { .. }), "{error:?}");

    let collector = FakeCollector::start_on(addr, None).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let snapshot = loop {
        match source.snapshot().await {
            Ok(snapshot) => break snapshot,
            Err(error) if tokio::time::Instant::now() < deadline => {
                let _ = error;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!("no reconnect within 10 s: {error}"),
        }
    };
    assert_eq!(snapshot.nodes[0].name, NODE);
    collector.stop().await;
}

#[tokio::test]
async fn https_with_the_collectors_ca() {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_string()]).unwrap().signed_by(&key, &ca).unwrap();
    let collector = FakeCollector::start_tls(&cert.pem(), &key.serialize_pem()).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.crt");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let url = format!("https://localhost:{}", collector.addr.port());

    let mut source = GrpcSource::new(GrpcConfig { tls_ca: Some(ca_file), ..GrpcConfig::plain(&url) }).unwrap();
    assert_eq!(source.snapshot().await.unwrap().nodes[0].name, NODE);

    // Plaintext to the TLS port gets nothing.
    let mut plain = GrpcSource::new(GrpcConfig::plain(collector.url())).unwrap();
    assert!(plain.snapshot().await.is_err());
    collector.stop().await;
}
