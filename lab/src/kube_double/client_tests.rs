//! The double against the real `kube` client: Secrets, RBAC denials and port-forward.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, ListParams, WatchParams};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{ClusterState, KubeDouble};

/// How long anything a test waits for may take.
const DEADLINE: Duration = Duration::from_secs(10);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, future).await.unwrap_or_else(|_| panic!("{what}: not within {DEADLINE:?}"))
}

/// A started double with `state`, and a client configured from its kubeconfig, as users do.
async fn double_and_client(state: &ClusterState) -> (KubeDouble, kube::Client) {
    let double = KubeDouble::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let problems = double.set_state(state);
    assert!(problems.is_empty(), "{problems:?}");
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&double.kubeconfig()).unwrap();
    let options = kube::config::KubeConfigOptions::default();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options).await.unwrap();
    (double, kube::Client::try_from(config).unwrap())
}

/// The `Status` of an API error; panics on any other outcome.
fn api_error<T>(result: kube::Result<T>) -> Box<kube::core::Status> {
    match result {
        Err(kube::Error::Api(status)) => status,
        Err(other) => panic!("not an API error: {other:?}"),
        Ok(_) => panic!("succeeded"),
    }
}

// ---- Secrets and RBAC denials ----

fn bakery_state() -> ClusterState {
    ClusterState {
        pods: vec![json!({"metadata": {"name": "bakery-agent-x7k2p", "namespace": "bakery"}})],
        secrets: vec![
            json!({"metadata": {"name": "bakery-read-token", "namespace": "bakery"},
                   "type": "kubernetes.io/service-account-token", "stringData": {"token": "s3cr3t"}}),
            json!({"metadata": {"name": "otlp-auth", "namespace": "bakery"}, "data": {"key": "aGVsbG8="}}),
            json!({"metadata": {"name": "db", "namespace": "shop"}, "data": {}}),
        ],
        ..ClusterState::default()
    }
}

#[test]
fn secrets_are_listed_and_got_with_the_kube_client() {
    runtime().block_on(async {
        let (_double, client) = double_and_client(&bakery_state()).await;
        let secrets: Api<Secret> = Api::namespaced(client.clone(), "bakery");
        let list = secrets.list(&ListParams::default()).await.unwrap();
        let names: Vec<String> = list.items.iter().filter_map(|s| s.metadata.name.clone()).collect();
        assert_eq!(names, ["bakery-read-token", "otlp-auth"]);
        let token = secrets.get("bakery-read-token").await.unwrap();
        assert_eq!(token.type_.as_deref(), Some("kubernetes.io/service-account-token"));
        let data = token.data.unwrap();
        assert_eq!(data["token"].0, b"s3cr3t", "stringData is served as data");
        let auth = secrets.get("otlp-auth").await.unwrap();
        assert_eq!((auth.type_.as_deref(), &auth.data.unwrap()["key"].0[..]), (Some("Opaque"), &b"hello"[..]));
        let typed = ListParams::default().fields("type=Opaque");
        let everywhere = Api::<Secret>::all(client).list(&typed).await.unwrap();
        let names: Vec<String> = everywhere.items.iter().filter_map(|s| s.metadata.name.clone()).collect();
        assert_eq!(names, ["otlp-auth", "db"], "namespace bakery, then shop");
        let missing = api_error(secrets.get("nope").await);
        assert_eq!((missing.code, missing.reason.as_str()), (404, "NotFound"));
    });
}

#[test]
fn forbidden_secrets_answer_403_while_pods_still_work() {
    runtime().block_on(async {
        let state = ClusterState { forbidden: vec!["secrets".into()], ..bakery_state() };
        let (_double, client) = double_and_client(&state).await;
        let secrets: Api<Secret> = Api::namespaced(client.clone(), "bakery");
        let denied = api_error(secrets.get("bakery-read-token").await);
        assert_eq!((denied.code, denied.reason.as_str()), (403, "Forbidden"));
        assert_eq!(
            denied.message,
            r#"secrets "bakery-read-token" is forbidden: User "system:anonymous" cannot get resource "secrets" in API group "" in the namespace "bakery""#
        );
        let denied = api_error(secrets.list(&ListParams::default()).await);
        assert_eq!((denied.code, denied.reason.as_str()), (403, "Forbidden"));
        assert_eq!(
            denied.message,
            r#"secrets is forbidden: User "system:anonymous" cannot list resource "secrets" in API group "" in the namespace "bakery""#
        );
        let denied = api_error(Api::<Secret>::all(client.clone()).watch(&WatchParams::default(), "0").await);
        assert!(denied.message.contains(r#"cannot watch resource "secrets" in API group "" at the cluster scope"#));
        assert_eq!(denied.code, 403, "{denied:?}");
        assert_eq!(api_error(secrets.get("nope").await).code, 403, "authorization comes before the lookup");

        let pods: Api<Pod> = Api::namespaced(client, "bakery");
        assert_eq!(pods.list(&ListParams::default()).await.unwrap().items.len(), 1);
        assert!(pods.get("bakery-agent-x7k2p").await.is_ok());
    });
}

// ---- Port-forward ----

/// A process listening in the "pod": answers each read with `reply(bytes)`, and reports on
/// `ended` when a connection to it ends.
struct PodProcess {
    port: u16,
    ended: mpsc::UnboundedReceiver<()>,
    _task: JoinHandle<()>,
}

async fn pod_process(reply: fn(&[u8]) -> Vec<u8>) -> PodProcess {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, ended) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buffer = [0u8; 4096];
                while let Ok(count @ 1..) = stream.read(&mut buffer).await {
                    if stream.write_all(&reply(&buffer[..count])).await.is_err() {
                        break;
                    }
                }
                let _ = tx.send(());
            });
        }
    });
    PodProcess { port, ended, _task: task }
}

fn echo(bytes: &[u8]) -> Vec<u8> {
    bytes.to_vec()
}

fn shout(bytes: &[u8]) -> Vec<u8> {
    bytes.to_ascii_uppercase()
}

fn pod(name: &str, status: Value) -> Value {
    json!({"metadata": {"name": name, "namespace": "shop", "uid": format!("uid-{name}")},
           "spec": {"nodeName": "pi-1", "containers": [{"name": "app"}]}, "status": status})
}

/// A running pod whose IP is the loopback address, so its ports are this machine's.
fn running_pod(name: &str) -> Value {
    pod(name, json!({"phase": "Running", "podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}]}))
}

fn pods_state(pods: Vec<Value>) -> ClusterState {
    ClusterState { pods, ..ClusterState::default() }
}

/// Writes `sent` to `stream` while reading back as many bytes.
async fn round_trip(stream: &mut tokio::io::DuplexStream, sent: &[u8]) -> Vec<u8> {
    let (mut read, mut write) = tokio::io::split(stream);
    let mut received = vec![0u8; sent.len()];
    let (written, read) = tokio::join!(write.write_all(sent), read.read_exact(&mut received));
    written.unwrap();
    read.unwrap();
    received
}

#[test]
fn port_forward_carries_bytes_both_ways_on_each_port_and_counts_connections() {
    runtime().block_on(async {
        let (echoing, shouting) = (pod_process(echo).await, pod_process(shout).await);
        let (double, client) = double_and_client(&pods_state(vec![running_pod("web-1")])).await;
        let pods: Api<Pod> = Api::namespaced(client, "shop");
        let mut forwarder = within("upgrade", pods.portforward("web-1", &[echoing.port, shouting.port])).await.unwrap();
        let mut first = forwarder.take_stream(echoing.port).unwrap();
        let mut second = forwarder.take_stream(shouting.port).unwrap();
        assert_eq!(within("echo", round_trip(&mut first, b"hello")).await, b"hello");
        assert_eq!(within("shout", round_trip(&mut second, b"hello")).await, b"HELLO");
        // More than any one buffer on the way, in both directions at once.
        let large: Vec<u8> = (0..512 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
        assert_eq!(within("large echo", round_trip(&mut first, &large)).await, large);
        assert_eq!(double.port_forwards_served(), 2);
    });
}

#[test]
fn closing_the_forward_closes_the_pod_connection() {
    runtime().block_on(async {
        let mut echoing = pod_process(echo).await;
        let (double, client) = double_and_client(&pods_state(vec![running_pod("web-1")])).await;
        let pods: Api<Pod> = Api::namespaced(client, "shop");
        let mut forwarder = pods.portforward("web-1", &[echoing.port]).await.unwrap();
        let mut stream = forwarder.take_stream(echoing.port).unwrap();
        assert_eq!(within("echo", round_trip(&mut stream, b"ping")).await, b"ping");
        drop(stream);
        within("the pod side sees the end", echoing.ended.recv()).await.unwrap();
        assert_eq!(double.port_forwards_served(), 1);
    });
}

#[test]
fn a_pod_closing_its_side_ends_the_client_stream() {
    runtime().block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let _pod_side = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            stream.write_all(b"bye\n").await.unwrap();
        });
        let (_double, client) = double_and_client(&pods_state(vec![running_pod("web-1")])).await;
        let pods: Api<Pod> = Api::namespaced(client, "shop");
        let mut forwarder = pods.portforward("web-1", &[port]).await.unwrap();
        let mut stream = forwarder.take_stream(port).unwrap();
        let mut received = Vec::new();
        within("the end of the stream", stream.read_to_end(&mut received)).await.unwrap();
        assert_eq!(received, b"bye\n");
        let error = forwarder.take_error(port).unwrap();
        drop(stream);
        assert_eq!(within("the forward's end", error).await, None, "a pod closing its side is no error");
    });
}

#[test]
fn a_refused_port_reports_the_kubelets_error() {
    runtime().block_on(async {
        let port = crate::free_port().unwrap();
        let (double, client) = double_and_client(&pods_state(vec![running_pod("web-1")])).await;
        let pods: Api<Pod> = Api::namespaced(client, "shop");
        let mut forwarder = pods.portforward("web-1", &[port]).await.unwrap();
        let error = within("the error", forwarder.take_error(port).unwrap()).await.expect("an error message");
        assert_eq!(
            error,
            format!(
                "error forwarding port {port} to pod uid-web-1, uid : failed to connect to localhost:{port} inside \
                 namespace \"uid-web-1\": connection refused"
            )
        );
        assert_eq!(double.port_forwards_served(), 0);
    });
}

#[test]
fn port_forward_refusals_are_api_errors() {
    runtime().block_on(async {
        let pending = pod("web-2", json!({"phase": "Pending"}));
        let state = pods_state(vec![running_pod("web-1"), pending]);
        let (double, client) = double_and_client(&state).await;
        let pods: Api<Pod> = Api::namespaced(client.clone(), "shop");
        let missing = api_error(pods.portforward("nope", &[80]).await);
        assert_eq!((missing.code, missing.reason.as_str()), (404, "NotFound"), "{missing:?}");
        assert_eq!(missing.message, r#"pods "nope" not found"#);
        let pending = api_error(pods.portforward("web-2", &[80]).await);
        assert_eq!((pending.code, pending.reason.as_str()), (400, "BadRequest"));
        assert_eq!(pending.message, "unable to forward port because pod is not running. Current status=Pending");
        for (query, message) in [
            ("", r#"query parameter "ports" is required"#),
            ("?ports=web", r#"unable to parse "web" as a port"#),
            ("?ports=0", r#"port "0" must be > 0"#),
        ] {
            let uri = format!("/api/v1/namespaces/shop/pods/web-1/portforward{query}");
            let request = axum::http::Request::get(uri).body(Vec::new()).unwrap();
            let refused = api_error(client.connect(request).await);
            assert_eq!((refused.code, refused.message.as_str()), (400, message), "{query}");
        }
        assert_eq!(double.port_forwards_served(), 0);
    });
}

#[test]
fn a_forbidden_port_forward_is_403_while_the_pod_is_readable() {
    runtime().block_on(async {
        let state = ClusterState { forbidden: vec!["pods/portforward".into()], ..pods_state(vec![running_pod("web-1")]) };
        let (_double, client) = double_and_client(&state).await;
        let pods: Api<Pod> = Api::namespaced(client, "shop");
        let denied = api_error(pods.portforward("web-1", &[80]).await);
        assert_eq!((denied.code, denied.reason.as_str()), (403, "Forbidden"));
        assert_eq!(
            denied.message,
            r#"pods "web-1" is forbidden: User "system:anonymous" cannot get resource "pods/portforward" in API group "" in the namespace "shop""#
        );
        assert!(pods.get("web-1").await.is_ok(), "pods themselves are not forbidden");
    });
}
