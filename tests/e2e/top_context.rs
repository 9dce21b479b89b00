//! `bakery-top --context` from a laptop: the real binary reads a kubeconfig, finds the release's collector Service through the API double, reads the read token and the CA from the release's Secrets, and reaches a live TLS collector through the double's port-forward; where RBAC forbids the Secrets, it says which flag to give.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use bakery_collector::{Collector, ServeConfig, TlsFiles};
use bakery_lab::binaries::built_binary;
use bakery_lab::kube_double::{ClusterState, KubeDouble};
use bakery_proto::v1::agent_message::Kind;
use bakery_proto::v1::ingest_client::IngestClient;
use bakery_proto::v1::{AgentMessage, Batch, Hello, collector_message};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

/// The name the collector's certificate holds, as the chart's does for its Service.
const SERVICE_HOST: &str = "bakery-collector.bakery.svc";
const READ_TOKEN: &str = "read-token-from-the-secret";
const INGEST_TOKEN: &str = "ingest-token";
const NODE: &str = "pi-context";

/// A TLS collector with separate ingest and read tokens, one scripted node, and an API double that
/// lists the release as the chart installs it.
struct Cluster {
    dir: tempfile::TempDir,
    collector: Collector,
    double: KubeDouble,
    ca_pem: String,
    _agent: mpsc::Sender<AgentMessage>,
}

impl Cluster {
    async fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let (ca_pem, cert_pem, key_pem) = certificates();
        let file = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let mut config = ServeConfig::new("127.0.0.1:0".parse().unwrap(), dir.path().join("data"));
        config.token_file = Some(file("ingest-token", INGEST_TOKEN));
        config.credentials.read_token_file = Some(file("read-tokens", READ_TOKEN));
        config.tls =
            Some(TlsFiles { cert: file("tls.crt", &cert_pem), key: file("tls.key", &key_pem), client_ca: None });
        let collector = Collector::start(config).await.unwrap();
        let agent = scripted_agent(collector.local_addr().port(), &ca_pem).await;
        let double = KubeDouble::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
        std::fs::write(dir.path().join("kubeconfig"), double.kubeconfig()).unwrap();
        let cluster = Cluster { dir, collector, double, ca_pem, _agent: agent };
        cluster.install(&[]);
        cluster
    }

    /// The release as the chart makes it: the collector Service with its annotations, a Running and
    /// Ready pod (its IP where the collector listens), the read-token and TLS Secrets. `forbidden`
    /// resources answer 403, as RBAC does.
    fn install(&self, forbidden: &[&str]) {
        let labels = json!({"app.kubernetes.io/name": "bakery", "app.kubernetes.io/instance": "bakery",
                            "app.kubernetes.io/component": "collector"});
        let state = json!({
            "forbidden": forbidden,
            "services": [{
                "metadata": {"name": "bakery-collector", "namespace": "bakery", "labels": labels,
                             "annotations": {"bakery.dev/read-token-secret": "bakery-read-token",
                                             "bakery.dev/tls-secret": "bakery-tls"}},
                "spec": {"selector": {"app.kubernetes.io/instance": "bakery", "app.kubernetes.io/component": "collector"},
                         "ports": [{"name": "grpc", "port": 7431, "targetPort": "grpc"}]}
            }],
            "pods": [{
                "metadata": {"name": "bakery-collector-7c9d5-x2x9q", "namespace": "bakery", "labels": labels},
                "spec": {"nodeName": "pi-1", "containers": [{"name": "collector",
                         "ports": [{"name": "grpc", "containerPort": self.collector.local_addr().port()}]}]},
                "status": {"phase": "Running", "podIP": "127.0.0.1",
                           "conditions": [{"type": "Ready", "status": "True"}]}
            }],
            "secrets": [
                {"metadata": {"name": "bakery-read-token", "namespace": "bakery"}, "stringData": {"token": READ_TOKEN}},
                {"metadata": {"name": "bakery-tls", "namespace": "bakery"}, "stringData": {"ca.crt": self.ca_pem}}
            ]
        });
        let state: ClusterState = serde_json::from_value(state).unwrap();
        let problems = self.double.set_state(&state);
        assert!(problems.is_empty(), "{problems:?}");
    }

    /// Runs the real `bakery-top` with `args`, kept from the caller's environment and config file.
    async fn bakery_top(&self, args: &[&str]) -> Output {
        let home = self.dir.path().to_path_buf();
        let kubeconfig = self.dir.path().join("kubeconfig");
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        tokio::task::spawn_blocking(move || run_top(&home, &kubeconfig, &args)).await.unwrap()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn run_top(home: &Path, kubeconfig: &Path, args: &[String]) -> Output {
    let top = built_binary("bakery-top", "bakery-top").expect("building bakery-top");
    let mut command = std::process::Command::new(top);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("BAKERY_") {
            command.env_remove(name);
        }
    }
    command.env("HOME", home).env("XDG_CONFIG_HOME", home).env("KUBECONFIG", kubeconfig).env_remove("NO_COLOR");
    command.args(args).output().expect("cannot run bakery-top")
}

/// A CA, and a server certificate it signed for the Service's name.
fn certificates() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec![SERVICE_HOST.to_string()]).unwrap().signed_by(&key, &ca).unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

/// An agent that says hello as `NODE` and sends one sample, over TLS with the ingest token.
async fn scripted_agent(port: u16, ca_pem: &str) -> mpsc::Sender<AgentMessage> {
    let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca_pem)).domain_name(SERVICE_HOST);
    let channel = Endpoint::from_shared(format!("https://127.0.0.1:{port}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let bearer: tonic::metadata::MetadataValue<_> = format!("Bearer {INGEST_TOKEN}").parse().unwrap();
    let mut client = IngestClient::with_interceptor(channel, move |mut request: tonic::Request<()>| {
        request.metadata_mut().insert("authorization", bearer.clone());
        Ok(request)
    });
    let (tx, rx) = mpsc::channel(8);
    let hello = Hello {
        node_name: NODE.into(),
        interval_ms: 1000,
        clock_ticks_per_second: 100,
        stream_id: "context".into(),
        ..Default::default()
    };
    tx.send(AgentMessage { kind: Some(Kind::Hello(hello)) }).await.unwrap();
    let now = bakery_collector::now_ms();
    let batch = Batch { seq: 1, new_pods: vec![], samples: vec![crate::top_commands::hot_sample(now)] };
    tx.send(AgentMessage { kind: Some(Kind::Batch(batch)) }).await.unwrap();
    let mut responses = client.stream(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap().into_inner();
    // The collector has the node once it acknowledges the batch.
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(message) = responses.message().await.unwrap() {
            if matches!(message.kind, Some(collector_message::Kind::Ack(_))) {
                break;
            }
        }
    })
    .await
    .expect("no acknowledgement of the scripted batch");
    tokio::spawn(async move { while responses.message().await.ok().flatten().is_some() {} });
    tx
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bakery_top_context_prints_the_live_nodes_through_a_port_forward() {
    let cluster = Cluster::start().await;
    let before = cluster.double.port_forwards_served();
    let output = cluster.bakery_top(&["--context", "bakery-fake", "--once", "--json"]).await;
    assert!(output.status.success(), "bakery-top failed: {}", text(&output.stderr));
    let snapshot: Value = serde_json::from_slice(&output.stdout).unwrap();
    let nodes: Vec<&str> = snapshot["nodes"].as_array().unwrap().iter().filter_map(|n| n["name"].as_str()).collect();
    assert_eq!(nodes, [NODE], "{snapshot}");
    assert!(
        cluster.double.port_forwards_served() > before,
        "bakery-top reached the collector without a port-forward through the API"
    );
    assert!(
        snapshot.to_string().contains("bakery/bakery-collector"),
        "the output names the Service it reached: {snapshot}"
    );

    // The current context, found in KUBECONFIG, when --context has no name.
    let output = cluster.bakery_top(&["--context", "--namespace", "bakery", "--once", "--json"]).await;
    assert!(output.status.success(), "bakery-top --context (current) failed: {}", text(&output.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_rights_to_the_secrets_bakery_top_names_the_flag_to_give() {
    let cluster = Cluster::start().await;
    cluster.install(&["secrets"]);
    let output = cluster.bakery_top(&["--context", "bakery-fake", "--once", "--json"]).await;
    let stderr = text(&output.stderr);
    assert!(!output.status.success(), "{}", text(&output.stdout));
    assert!(stderr.contains("forbidden") && stderr.contains("--token-file"), "{stderr}");
    assert!(stderr.contains("kubectl -n bakery get secret bakery-read-token"), "{stderr}");

    std::fs::write(cluster.path("read-token"), format!("{READ_TOKEN}\n")).unwrap();
    let token = cluster.path("read-token").display().to_string();
    let output = cluster.bakery_top(&["--context", "bakery-fake", "--token-file", &token, "--once"]).await;
    let stderr = text(&output.stderr);
    assert!(!output.status.success() && stderr.contains("--tls-ca"), "the CA is still needed: {stderr}");

    std::fs::write(cluster.path("ca.crt"), &cluster.ca_pem).unwrap();
    let ca = cluster.path("ca.crt").display().to_string();
    let output =
        cluster.bakery_top(&["--context", "bakery-fake", "--token-file", &token, "--tls-ca", &ca, "--once"]).await;
    assert!(output.status.success(), "with both files given: {}", text(&output.stderr));
    assert!(text(&output.stdout).contains(NODE), "{}", text(&output.stdout));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_without_the_release_is_named_in_the_error() {
    let cluster = Cluster::start().await;
    let output = cluster.bakery_top(&["--context", "bakery-fake", "-n", "shop", "--once"]).await;
    let stderr = text(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("no bakery collector Service in the namespace shop"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_config_file_keeps_the_context() {
    let cluster = Cluster::start().await;
    let config = cluster.path("bakery").join("top.toml");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    std::fs::write(&config, "context = \"bakery-fake\"\nnamespace = \"bakery\"\n").unwrap();
    // HOME and XDG_CONFIG_HOME are the test's directory: the file above is the default one.
    let output = cluster.bakery_top(&["--once", "--json"]).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains(NODE));
    let output = cluster.bakery_top(&["--collector", "http://127.0.0.1:9", "--once"]).await;
    assert!(!output.status.success(), "--collector on the command line wins over the file's context");
    assert!(text(&output.stderr).contains("127.0.0.1:9"), "{}", text(&output.stderr));
}
