//! Identities and roles: a stream writes only the node its credential proves (node tokens, client
//! certificates, Kubernetes service-account tokens reviewed through the API test double), an
//! impostor is refused before it can replace the victim's stream, and each Query method needs its
//! role (read, or control for SetInterval and the windows).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bakery_collector::auth::{Credentials, RefusalCause};
use bakery_collector::kube::KubeMode;
use bakery_collector::{ServeConfig, TlsFiles};
use bakery_proto::v1::agent_message::Kind as AgentKind;
use bakery_proto::v1::collector_message::Kind as CollectorKind;
use bakery_proto::v1::ingest_client::IngestClient;
use bakery_proto::v1::query_client::QueryClient;
use bakery_proto::v1::{
    AgentMessage, AlertsRequest, CollectorMessage, HistoryRequest, LiveRequest, NodesRequest, PodsRequest,
    ReportRequest, SetIntervalRequest, StartWindowRequest, StopWindowRequest, WindowsRequest,
};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic::{Code, Status, Streaming};

use crate::harness::*;

const READ: &str = "read-token-1";
const CONTROL: &str = "control-token-1";
const VICTIM: &str = "victim-token";
const ATTACKER: &str = "attacker-token";

/// Token files in their own directory: node tokens for `victim` and `attacker`, a read and a
/// control token.
struct TokenFiles {
    dir: tempfile::TempDir,
}

impl TokenFiles {
    fn new() -> TokenFiles {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
        write("nodes", &format!("# NODE TOKEN\nvictim {VICTIM}\nattacker {ATTACKER}\n"));
        write("read", &format!("{READ}\n"));
        write("control", &format!("{CONTROL}\n"));
        TokenFiles { dir }
    }

    fn path(&self, name: &str) -> Option<PathBuf> {
        Some(self.dir.path().join(name))
    }

    /// Node, read and control tokens; no shared token.
    fn credentials(&self) -> Credentials {
        Credentials {
            node_token_file: self.path("nodes"),
            read_token_file: self.path("read"),
            control_token_file: self.path("control"),
            agent_service_account: None,
        }
    }
}

fn refusals(collector: &TestCollector, cause: RefusalCause) -> u64 {
    collector.collector.as_ref().unwrap().shared().auth.refusal_counts().get(cause)
}

/// Opens an Ingest stream on `channel` with `token` and says Hello as `node`: the open stream
/// after its Welcome, or the status it was refused with.
async fn open_stream(
    channel: Channel,
    token: Option<&str>,
    node: &str,
) -> Result<(mpsc::Sender<AgentMessage>, Streaming<CollectorMessage>), Status> {
    let (tx, rx) = mpsc::channel(16);
    tx.send(AgentMessage { kind: Some(AgentKind::Hello(hello(node))) }).await.unwrap();
    let mut responses =
        IngestClient::new(channel).stream(authorized(ReceiverStream::new(rx), token)).await?.into_inner();
    match tokio::time::timeout(WAIT, responses.message()).await.expect("an answer in time")? {
        Some(CollectorMessage { kind: Some(CollectorKind::Welcome(_)) }) => Ok((tx, responses)),
        other => panic!("expected a Welcome or a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_node_token_writes_only_its_node_and_an_impostor_cannot_replace_the_victims_stream() {
    let files = TokenFiles::new();
    let collector = TestCollector::start_with(|config| {
        config.token_file = None;
        config.credentials = files.credentials();
    })
    .await;
    let url = collector.url();
    let mut victim = TestAgent::try_connect(&url, Some(VICTIM), hello("victim")).await.expect("the victim streams");
    victim.send(batch(1)).await;
    victim.wait_ack(1).await;

    // The attacker holds its own node's token (or stole another's) and says Hello as the victim:
    // refused, naming the node the credential proves, and the victim's stream is untouched.
    let refused = TestAgent::try_connect(&url, Some(ATTACKER), hello("victim")).await.err().expect("refused");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(refused.message().contains("proves node \"attacker\""), "{}", refused.message());
    assert!(refused.message().contains("as node \"victim\""), "{}", refused.message());
    assert_eq!(refusals(&collector, RefusalCause::WrongNode), 1);
    victim.send(batch(2)).await;
    assert_eq!(victim.wait_ack(2).await, 2, "the victim's stream was not replaced");
    let mut query = QueryClient::new(channel(&url).await);
    let nodes = query.nodes(authorized(NodesRequest {}, Some(READ))).await.unwrap().into_inner().nodes;
    assert!(nodes.iter().any(|n| n.node_name == "victim" && n.connected), "{nodes:?}");
    assert!(!nodes.iter().any(|n| n.node_name == "attacker"), "the refused Hello created no node: {nodes:?}");

    // A read or control token does not stream at all.
    for token in [READ, CONTROL] {
        let refused = TestAgent::try_connect(&url, Some(token), hello("victim")).await.err().expect("refused");
        assert_eq!(refused.code(), Code::PermissionDenied, "{token}");
        assert!(refused.message().contains("Ingest.Stream needs the ingest role"), "{}", refused.message());
    }
    // An unknown token, or none, is not authenticated.
    for token in [Some("made-up"), None] {
        let refused = TestAgent::try_connect(&url, token, hello("victim")).await.err().expect("refused");
        assert_eq!(refused.code(), Code::Unauthenticated, "{token:?}");
    }

    // The attacker's token works for its own node.
    let mut attacker = TestAgent::try_connect(&url, Some(ATTACKER), hello("attacker")).await.expect("its own node");
    attacker.send(batch(1)).await;
    attacker.wait_ack(1).await;
    // The victim's own credential may replace the victim's stream (an agent that reconnects).
    let mut again = TestAgent::try_connect(&url, Some(VICTIM), hello("victim")).await.expect("the victim reconnects");
    assert_eq!(victim.expect_error().await.code(), Code::Aborted, "the old stream is replaced");
    again.send(batch(3)).await;
    again.wait_ack(3).await;
    drop((again, attacker));

    let (_dir, report) = collector.stop_and_inspect().await;
    let stored = node_report(&report, "victim");
    assert_eq!((stored.first_seq, stored.last_seq, stored.samples), (Some(1), Some(3), 3), "{stored:?}");
    assert!(stored.gaps.is_empty(), "{stored:?}");
}

#[tokio::test]
async fn the_shared_token_does_not_bind_identity_and_says_so() {
    // The demo's and quick tests' mode: whoever holds the shared token writes any node.
    let collector = TestCollector::start().await;
    let url = collector.url();
    let _pi1 = TestAgent::try_connect(&url, Some(TOKEN), hello("pi-1")).await.expect("any node");
    let _pi2 = TestAgent::try_connect(&url, Some(TOKEN), hello("pi-2")).await.expect("any node");
    collector.stop().await;
}

/// Query method, request; the role it needs decides who gets it.
async fn call(query: &mut QueryClient<Channel>, method: &str, token: &str) -> Result<(), Status> {
    let t = Some(token);
    match method {
        "Nodes" => query.nodes(authorized(NodesRequest {}, t)).await.map(drop),
        "History" => {
            query.history(authorized(HistoryRequest { node_name: "victim".into(), since_ms: 0 }, t)).await.map(drop)
        }
        "Pods" => query.pods(authorized(PodsRequest {}, t)).await.map(drop),
        "Live" => query.live(authorized(LiveRequest {}, t)).await.map(drop),
        "Alerts" => query.alerts(authorized(AlertsRequest {}, t)).await.map(drop),
        "Windows" => query.windows(authorized(WindowsRequest {}, t)).await.map(drop),
        "Report" => query.report(authorized(ReportRequest { id: String::new() }, t)).await.map(drop),
        "SetInterval" => {
            let request = SetIntervalRequest { node_name: "victim".into(), interval_ms: 500, reason: "test".into() };
            query.set_interval(authorized(request, t)).await.map(drop)
        }
        "StartWindow" => query.start_window(authorized(StartWindowRequest::default(), t)).await.map(drop),
        "StopWindow" => query.stop_window(authorized(StopWindowRequest {}, t)).await.map(drop),
        other => panic!("no method {other}"),
    }
}

/// Refused for lack of a credential or a role (any other answer, such as "no report yet", means
/// the call got through).
fn refused_for_role(result: &Result<(), Status>) -> bool {
    matches!(result, Err(status) if matches!(status.code(), Code::PermissionDenied | Code::Unauthenticated))
}

#[tokio::test]
async fn each_query_method_needs_its_role() {
    let files = TokenFiles::new();
    let collector = TestCollector::start_with(|config| {
        config.token_file = None;
        config.credentials = files.credentials();
        config.diagnosis.automatic_windows = false;
    })
    .await;
    let victim = TestAgent::try_connect(&collector.url(), Some(VICTIM), hello("victim")).await.unwrap();
    let mut query = QueryClient::new(channel(&collector.url()).await);
    // (method, the read token gets it, the control token gets it); an agent's node token never does
    let table = [
        ("Nodes", true, true),
        ("History", true, true),
        ("Pods", true, true),
        ("Live", true, true),
        ("Alerts", true, true),
        ("Windows", true, true),
        ("Report", true, true),
        ("SetInterval", false, true),
        ("StartWindow", false, true),
        ("StopWindow", false, true),
    ];
    for (method, by_read, by_control) in table {
        let read = call(&mut query, method, READ).await;
        assert_eq!(!refused_for_role(&read), by_read, "{method} with the read token: {read:?}");
        let agent = call(&mut query, method, VICTIM).await;
        assert!(refused_for_role(&agent), "{method} with the victim's node token: {agent:?}");
        let control = call(&mut query, method, CONTROL).await;
        assert_eq!(!refused_for_role(&control), by_control, "{method} with the control token: {control:?}");
    }
    drop(victim);
    collector.stop().await;
}

#[tokio::test]
async fn a_read_token_cannot_open_a_window_and_is_told_which_role_it_lacks() {
    let files = TokenFiles::new();
    let collector = TestCollector::start_with(|config| {
        config.token_file = None;
        config.credentials = files.credentials();
        config.diagnosis.automatic_windows = false;
    })
    .await;
    let mut query = QueryClient::new(channel(&collector.url()).await);
    let refused = query.start_window(authorized(StartWindowRequest::default(), Some(READ))).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert!(refused.message().contains("Query.StartWindow needs the control role"), "{}", refused.message());
    assert!(refused.message().contains("a read token"), "{}", refused.message());
    let windows = query.windows(authorized(WindowsRequest {}, Some(READ))).await.unwrap().into_inner().windows;
    assert!(windows.is_empty(), "no window opened: {windows:?}");
    assert_eq!(refusals(&collector, RefusalCause::MissingRole), 1);
    let started = query.start_window(authorized(StartWindowRequest::default(), Some(CONTROL))).await;
    assert!(started.is_ok(), "the control token may: {started:?}");
    collector.stop().await;
}

/// A CA, a server certificate for localhost, and client certificates by Subject CN.
struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
    ca_pem: String,
    server: (String, String),
}

impl Pki {
    fn new() -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "bakery identity test CA");
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let ca_pem = ca.pem();
        let mut pki = Pki { ca, ca_pem, server: (String::new(), String::new()) };
        pki.server = pki.leaf(Some("localhost"), &["localhost", "127.0.0.1"]);
        pki
    }

    /// A certificate with this Subject CN (none: `None`) and DNS names: (cert, key) PEM.
    fn leaf(&self, common_name: Option<&str>, names: &[&str]) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(cn) = common_name {
            params.distinguished_name.push(DnType::CommonName, cn);
        }
        (params.signed_by(&key, &self.ca).unwrap().pem(), key.serialize_pem())
    }

    fn files(&self, dir: &Path) -> TlsFiles {
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        TlsFiles {
            cert: write("server.crt", &self.server.0),
            key: write("server.key", &self.server.1),
            client_ca: Some(write("ca.crt", &self.ca_pem)),
        }
    }

    async fn channel(&self, port: u16, identity: Option<&(String, String)>) -> Channel {
        let mut tls =
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&self.ca_pem)).domain_name("localhost");
        if let Some((cert, key)) = identity {
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        let endpoint = Channel::from_shared(format!("https://127.0.0.1:{port}")).unwrap().tls_config(tls).unwrap();
        endpoint.connect().await.expect("TLS handshake")
    }
}

#[tokio::test]
async fn a_client_certificate_proves_the_node_in_its_common_name_and_grants_ingest_only() {
    let pki = Pki::new();
    let certs = tempfile::tempdir().unwrap();
    let files = TokenFiles::new();
    let tls = pki.files(certs.path());
    let collector = TestCollector::start_with(|config| {
        config.tls = Some(tls);
        config.token_file = None;
        config.credentials = Credentials { read_token_file: files.path("read"), ..Credentials::default() };
    })
    .await;
    let port = collector.addr.port();
    let pi1 = pki.leaf(Some("pi-1"), &["pi-1.nodes.example"]);
    let (tx, mut rx) = open_stream(pki.channel(port, Some(&pi1)).await, None, "pi-1").await.expect("CN pi-1 streams");
    tx.send(batch(1)).await.unwrap();
    let ack = tokio::time::timeout(WAIT, rx.message()).await.unwrap().unwrap();
    assert!(matches!(ack, Some(CollectorMessage { kind: Some(CollectorKind::Ack(_)) })), "{ack:?}");

    // The certificate of pi-1 cannot say Hello as pi-2.
    let refused = open_stream(pki.channel(port, Some(&pi1)).await, None, "pi-2").await.expect_err("refused");
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert!(refused.message().contains("proves node \"pi-1\""), "{}", refused.message());
    // Without a CN, the first DNS name is the node.
    let by_dns = pki.leaf(None, &["pi-3", "pi-4"]);
    assert!(open_stream(pki.channel(port, Some(&by_dns)).await, None, "pi-3").await.is_ok());
    assert!(open_stream(pki.channel(port, Some(&by_dns)).await, None, "pi-4").await.is_err(), "only the first");

    // A certificate grants ingest only; people read with tokens, and need no certificate.
    let mut query = QueryClient::new(pki.channel(port, Some(&pi1)).await);
    let refused = query.nodes(NodesRequest {}).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let mut query = QueryClient::new(pki.channel(port, None).await);
    assert!(query.nodes(authorized(NodesRequest {}, Some(READ))).await.is_ok(), "a read token over plain TLS");
    drop((tx, rx));
    collector.stop().await;
}

/// The Kubernetes API test double (`bakery-fake-apiserver`, built on demand) serving `state`.
struct ApiServer {
    child: Child,
    dir: tempfile::TempDir,
}

impl ApiServer {
    async fn start(state: &Value) -> ApiServer {
        let binary = fake_apiserver_binary();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("state.json"), state.to_string()).unwrap();
        let child = Command::new(binary)
            .args(["--listen", "127.0.0.1:0", "--state"])
            .arg(dir.path().join("state.json"))
            .arg("--kubeconfig-out")
            .arg(dir.path().join("kubeconfig"))
            .arg("--ready-file")
            .arg(dir.path().join("ready"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server = ApiServer { child, dir };
        eventually("the fake API server to listen", || async { server.dir.path().join("ready").exists() }).await;
        server
    }

    fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `target/<profile>/bakery-fake-apiserver`, built from bakery-lab the first time.
fn fake_apiserver_binary() -> PathBuf {
    bakery_lab::binaries::built_binary("bakery-lab", "bakery-fake-apiserver").expect("building the fake API server")
}

const AGENT_ACCOUNT: &str = "system:serviceaccount:bakery:bakery-agent";

/// A token the API double authenticates, with this user, audiences and extra.
fn issued(token: &str, username: &str, audiences: &[&str], extra: &[(&str, &str)]) -> Value {
    let extra: serde_json::Map<String, Value> = extra.iter().map(|(k, v)| (k.to_string(), json!([v]))).collect();
    json!({"token": token, "audiences": audiences,
           "user": {"username": username, "uid": "sa-uid",
                    "groups": ["system:serviceaccounts", "system:serviceaccounts:bakery", "system:authenticated"],
                    "extra": extra}})
}

fn cluster_state() -> Value {
    let pod = |name: &str, uid: &str, node: &str| {
        json!({"metadata": {"name": name, "namespace": "bakery", "uid": uid,
                            "labels": {"app.kubernetes.io/component": "agent"}},
               "spec": {"nodeName": node, "containers": []},
               "status": {"conditions": [{"type": "Ready", "status": "True"}]}})
    };
    let pod_name = "authentication.kubernetes.io/pod-name";
    let pod_uid = "authentication.kubernetes.io/pod-uid";
    let node_name = "authentication.kubernetes.io/node-name";
    json!({
        "nodes": [{"metadata": {"name": "pi-1"}}, {"metadata": {"name": "pi-2"}}],
        "pods": [pod("bakery-agent-aaaaa", "uid-agent-pi-1", "pi-1"), pod("bakery-agent-bbbbb", "uid-agent-pi-2", "pi-2")],
        "tokenreviews": [
            // Kubernetes >= 1.30: the review names the node
            issued("sa-pi-1", AGENT_ACCOUNT, &["bakery"],
                   &[(pod_name, "bakery-agent-aaaaa"), (pod_uid, "uid-agent-pi-1"), (node_name, "pi-1")]),
            // older: only the pod, found in the collector's pod watch
            issued("sa-pi-2", AGENT_ACCOUNT, &["bakery"], &[(pod_name, "bakery-agent-bbbbb"), (pod_uid, "uid-agent-pi-2")]),
            // another service account's token (any pod of the cluster has one)
            issued("sa-default", "system:serviceaccount:bakery:default", &["bakery"], &[(node_name, "pi-1")]),
            // the agent's token for the API server's audience, not bakery's
            issued("sa-api-audience", AGENT_ACCOUNT, &["https://kubernetes.default.svc.cluster.local"], &[(node_name, "pi-1")]),
        ],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_account_tokens_are_reviewed_and_prove_the_node_of_their_pod() {
    let mut api = ApiServer::start(&cluster_state()).await;
    let files = TokenFiles::new();
    let collector = TestCollector::start_with(|config: &mut ServeConfig| {
        config.token_file = None;
        config.credentials = Credentials {
            agent_service_account: Some("bakery/bakery-agent".parse().unwrap()),
            read_token_file: files.path("read"),
            ..Credentials::default()
        };
        config.diagnosis.kube = KubeMode::Kubeconfig(api.kubeconfig());
    })
    .await;
    let url = collector.url();
    let auth = || &collector.collector.as_ref().unwrap().shared().auth;

    // The node from the review's node-name extra.
    let mut pi1 = TestAgent::try_connect(&url, Some("sa-pi-1"), hello("pi-1")).await.expect("pi-1's own token");
    pi1.send(batch(1)).await;
    pi1.wait_ack(1).await;
    let refused = TestAgent::try_connect(&url, Some("sa-pi-1"), hello("pi-2")).await.err().expect("not pi-2");
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert!(refused.message().contains("proves node \"pi-1\""), "{}", refused.message());
    // A reconnecting agent is not reviewed again within the minute.
    let reviews = auth().token_reviews_sent();
    for _ in 0..3 {
        let _ = TestAgent::try_connect(&url, Some("sa-pi-1"), hello("pi-2")).await;
    }
    assert_eq!(auth().token_reviews_sent(), reviews, "cached");

    // Only a pod uid: the node comes from the collector's pod watch (UNAVAILABLE until it listed).
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut pi2 = loop {
        match TestAgent::try_connect(&url, Some("sa-pi-2"), hello("pi-2")).await {
            Ok(agent) => break agent,
            Err(status) if status.code() == Code::Unavailable && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(status) => panic!("sa-pi-2 as pi-2: {status:?}"),
        }
    };
    pi2.send(batch(1)).await;
    pi2.wait_ack(1).await;
    let refused = TestAgent::try_connect(&url, Some("sa-pi-2"), hello("pi-1")).await.err().expect("not pi-1");
    assert_eq!(refused.code(), Code::PermissionDenied);

    // Tokens the review does not accept for the agents: not authenticated, and why.
    // (token, why)
    let table = [
        ("sa-default", "belongs to \"system:serviceaccount:bakery:default\""),
        ("sa-api-audience", "is invalid for the target audiences [\"bakery\"]"),
        ("made-up", "invalid bearer token"),
    ];
    for (token, why) in table {
        let refused = TestAgent::try_connect(&url, Some(token), hello("pi-1")).await.err().expect("refused");
        assert_eq!(refused.code(), Code::Unauthenticated, "{token}: {refused:?}");
        assert!(refused.message().contains(why), "{token}: {}", refused.message());
    }
    assert_eq!(auth().refusal_counts().get(RefusalCause::ServiceAccountRejected), 3);
    // An agent token is not a read token.
    let mut query = QueryClient::new(channel(&url).await);
    let refused = query.nodes(authorized(NodesRequest {}, Some("sa-pi-1"))).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);

    // The API server goes away: a token not reviewed yet is UNAVAILABLE, never accepted.
    api.stop();
    let refused = TestAgent::try_connect(&url, Some("sa-never-seen"), hello("pi-1")).await.err().expect("refused");
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(auth().refusal_counts().get(RefusalCause::TokenReviewUnavailable) >= 1);
    drop((pi1, pi2));
    collector.stop().await;
}
