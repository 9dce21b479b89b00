//! The collector's cluster knowledge against the Kubernetes API test double: the real `kube`
//! watchers list and watch over HTTP, and the pod -> name/node/workload mapping, node roles and
//! ready endpoints stay right while pods appear, disappear and move, and after a 410 relist. And
//! the double itself against the real `kubectl`: discovery, tables, JSON, jsonpath, a MetalLB
//! custom resource, a watch, and a cluster without MetalLB answer as a real API server would.

use std::collections::BTreeMap;
use std::time::Duration;

use bakery_collector::kube::{ClusterView, KubeMode, KubeWatch};
use bakery_diagnosis::{NodeRole, WorkloadRef};
use bakery_lab::kube_double::{ClusterState, Kind, KubeDouble};
use serde_json::{Value, json};

pub(crate) const WAIT: Duration = Duration::from_secs(15);

pub(crate) fn node(name: &str, control_plane: bool) -> Value {
    let labels = if control_plane {
        json!({"kubernetes.io/hostname": name, "node-role.kubernetes.io/control-plane": ""})
    } else {
        json!({"kubernetes.io/hostname": name})
    };
    json!({"metadata": {"name": name, "labels": labels}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}})
}

pub(crate) fn web_pod(uid: &str, node: &str) -> Value {
    json!({
        "metadata": {"name": format!("web-6b7c9d8f5-{uid}"), "namespace": "shop", "uid": uid,
                     "labels": {"app": "web", "pod-template-hash": "6b7c9d8f5"},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-6b7c9d8f5",
                                          "uid": "rs-web", "controller": true}]},
        "spec": {"nodeName": node, "containers": [{"name": "nginx", "image": "nginx"}]},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]}
    })
}

pub(crate) fn endpoints(pods: &[(&str, &str)]) -> Value {
    let endpoints: Vec<Value> = pods
        .iter()
        .map(|(uid, node)| {
            json!({"addresses": ["10.42.0.1"], "nodeName": node, "conditions": {"ready": true},
                   "targetRef": {"kind": "Pod", "namespace": "shop", "uid": uid}})
        })
        .collect();
    json!({"metadata": {"name": "web-x1", "namespace": "shop", "labels": {"kubernetes.io/service-name": "web"}},
           "addressType": "IPv4", "endpoints": endpoints})
}

/// The state with these web pods (uid, node), all ready endpoints, and nodes pi-1 (control
/// plane), pi-2 and pi-3.
pub(crate) fn state(pods: &[(&str, &str)]) -> ClusterState {
    ClusterState {
        nodes: vec![node("pi-1", true), node("pi-2", false), node("pi-3", false)],
        pods: pods.iter().map(|(uid, node)| web_pod(uid, node)).collect(),
        endpointslices: vec![endpoints(pods)],
        ..ClusterState::default()
    }
}

/// (uid -> node) of every pod the view maps to Deployment shop/web.
fn web_pods(view: &ClusterView) -> BTreeMap<String, String> {
    let web = WorkloadRef::new("Deployment", "shop", "web");
    view.pods_by_uid
        .values()
        .filter(|p| p.workload.as_ref() == Some(&web) && p.ready)
        .map(|p| (p.uid.clone(), p.node_name.clone()))
        .collect()
}

fn web_endpoints(view: &ClusterView) -> BTreeMap<String, u32> {
    view.endpoints.get(&WorkloadRef::new("Deployment", "shop", "web")).cloned().unwrap_or_default()
}

pub(crate) async fn until(watch: &KubeWatch, what: &str, check: impl Fn(&ClusterView) -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let view = watch.view();
        if check(&view) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}; the view is {view:#?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

fn counts(pairs: &[(&str, u32)]) -> BTreeMap<String, u32> {
    pairs.iter().map(|(a, b)| (a.to_string(), *b)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mapping_follows_pods_that_appear_move_and_disappear_and_survives_a_relist() {
    let double = KubeDouble::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    double.set_state(&state(&[("a", "pi-1"), ("b", "pi-2")]));
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, double.kubeconfig()).unwrap();
    let watch = KubeWatch::start(&KubeMode::Kubeconfig(kubeconfig)).await.unwrap().expect("a cluster to watch");

    // Three independent watches: wait until each has listed.
    until(&watch, "the first lists", |v| {
        web_pods(v) == map(&[("a", "pi-1"), ("b", "pi-2")]) && v.roles.len() == 3 && !web_endpoints(v).is_empty()
    })
    .await;
    let view = watch.view();
    assert_eq!(view.role("pi-1"), NodeRole::ControlPlane);
    assert_eq!(view.role("pi-2"), NodeRole::Worker);
    assert_eq!(view.pods_by_uid["a"].name, "web-6b7c9d8f5-a");
    assert_eq!(web_endpoints(&view), counts(&[("pi-1", 1), ("pi-2", 1)]));

    // A pod appears on pi-2.
    double.set_state(&state(&[("a", "pi-1"), ("b", "pi-2"), ("c", "pi-2")]));
    until(&watch, "pod c", |v| web_pods(v).len() == 3 && web_endpoints(v) == counts(&[("pi-1", 1), ("pi-2", 2)])).await;

    // a disappears, b moves to pi-3.
    double.set_state(&state(&[("b", "pi-3"), ("c", "pi-2")]));
    until(&watch, "a gone and b on pi-3", |v| {
        web_pods(v) == map(&[("b", "pi-3"), ("c", "pi-2")]) && web_endpoints(v) == counts(&[("pi-2", 1), ("pi-3", 1)])
    })
    .await;
    assert!(!watch.view().pods_by_uid.contains_key("a"), "a deleted pod leaves the mapping");

    // The history is compacted: every watch ends with 410 Gone. Changes made meanwhile must
    // arrive through the relist.
    let lists_before = double.lists_served(Kind::Pod);
    double.expire_watches();
    double.set_state(&state(&[("c", "pi-1"), ("d", "pi-3")]));
    until(&watch, "the relist after 410", |v| {
        web_pods(v) == map(&[("c", "pi-1"), ("d", "pi-3")]) && web_endpoints(v) == counts(&[("pi-1", 1), ("pi-3", 1)])
    })
    .await;
    assert!(double.lists_served(Kind::Pod) > lists_before, "the pod watcher relisted after 410");

    // And it keeps watching after the relist.
    double.set_state(&state(&[("c", "pi-1"), ("d", "pi-3"), ("e", "pi-2")]));
    until(&watch, "pod e after the relist", |v| web_pods(v).len() == 3).await;
}

/// One scripted agent stream: hello, then batches sent through `tx`.
async fn agent(url: &str, node: &str) -> tokio::sync::mpsc::Sender<bakery_proto::v1::AgentMessage> {
    use bakery_proto::v1::agent_message::Kind;
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let hello = bakery_proto::v1::Hello {
        node_name: node.into(),
        interval_ms: 250,
        clock_ticks_per_second: 100,
        stream_id: format!("{node}-stream"),
        ..Default::default()
    };
    tx.send(bakery_proto::v1::AgentMessage { kind: Some(Kind::Hello(hello)) }).await.unwrap();
    let mut client = bakery_proto::v1::ingest_client::IngestClient::connect(url.to_string()).await.unwrap();
    let responses = client.stream(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap().into_inner();
    // Keep reading acks so the stream stays healthy.
    tokio::spawn(async move {
        let mut responses = responses;
        while let Ok(Some(_)) = responses.message().await {}
    });
    tx
}

/// A batch where every pod in `pods` (pod_ref, uid) has moved `step` x 1 MB.
fn pod_batch(seq: u64, timestamp_ms: i64, pods: &[(u32, &str)], declare: bool) -> bakery_proto::v1::AgentMessage {
    use bakery_proto::v1::{Batch, CpuTimes, NetCounters, PodIdentity, PodSample, Sample, agent_message::Kind};
    let bytes = seq * 1_000_000;
    let sample = Sample {
        timestamp_ms,
        cpu_total: Some(CpuTimes { cpu: -1, user: seq * 10, idle: seq * 90, ..Default::default() }),
        pods: pods
            .iter()
            .map(|(pod_ref, _)| PodSample {
                pod_ref: *pod_ref,
                network: Some(NetCounters { rx_bytes: bytes, tx_bytes: bytes / 2, ..Default::default() }),
                cpu_usage_us: seq * 1000,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let new_pods = if declare {
        pods.iter()
            .map(|(pod_ref, uid)| PodIdentity { pod_ref: *pod_ref, uid: uid.to_string(), ..Default::default() })
            .collect()
    } else {
        Vec::new()
    };
    bakery_proto::v1::AgentMessage { kind: Some(Kind::Batch(Batch { seq, new_pods, samples: vec![sample] })) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_collector_names_agent_pods_and_expects_shares_from_endpoints() {
    use bakery_proto::v1::query_client::QueryClient;
    use bakery_proto::v1::{LiveRequest, NodesRequest, PodsRequest};

    let double = KubeDouble::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    // Uneven placement: two of the three web pods on pi-2. That is the expected share, not a hog.
    double.set_state(&state(&[("a", "pi-1"), ("b", "pi-2"), ("c", "pi-2")]));
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, double.kubeconfig()).unwrap();
    let mut config = bakery_collector::ServeConfig::new("127.0.0.1:0".parse().unwrap(), dir.path().join("data"));
    config.insecure_no_auth = true;
    config.diagnosis.kube = KubeMode::Kubeconfig(kubeconfig);
    config.diagnosis.automatic_windows = false;
    config.diagnosis.tick = Duration::from_millis(50);
    let collector = bakery_collector::Collector::start(config).await.unwrap();
    let url = format!("http://{}", collector.local_addr());
    let deadline = tokio::time::Instant::now() + WAIT;
    let listed = |v: &ClusterView| web_pods(v).len() == 3 && v.roles.len() == 3 && !web_endpoints(v).is_empty();
    while !listed(&collector.diagnosis().cluster()) {
        assert!(tokio::time::Instant::now() < deadline, "the collector never listed the pods");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    let pi1 = agent(&url, "pi-1").await;
    let pi2 = agent(&url, "pi-2").await;
    let t0 = bakery_collector::now_ms();
    let mut query = QueryClient::connect(url.clone()).await.unwrap();
    let mut seq = 0;
    let live = loop {
        seq += 1;
        let at = t0 + seq as i64 * 250;
        pi1.send(pod_batch(seq, at, &[(1, "a")], seq == 1)).await.unwrap();
        pi2.send(pod_batch(seq, at, &[(1, "b"), (2, "c")], seq == 1)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(60)).await;
        let live = query.live(LiveRequest {}).await.unwrap().into_inner();
        let settled = live.workload == "Deployment/shop/web"
            && live.shares.iter().filter(|s| s.observed.is_some()).count() == 2
            && seq >= 16;
        if settled {
            break live;
        }
        assert!(tokio::time::Instant::now() < deadline, "the live view never settled: {live:?}");
    };
    let share = |node: &str| live.shares.iter().find(|s| s.node_name == node).unwrap();
    assert!((share("pi-1").expected - 1.0 / 3.0).abs() < 1e-9, "{live:?}");
    assert!((share("pi-2").expected - 2.0 / 3.0).abs() < 1e-9, "{live:?}");
    assert!((share("pi-2").observed.unwrap() - 2.0 / 3.0).abs() < 0.02, "{live:?}");
    assert_eq!(share("pi-1").role, "control-plane");
    let traffic_causes = ["pod-concentration", "connection-pinning", "ingress-concentration"];
    assert!(
        !live.verdicts.iter().any(|v| traffic_causes.contains(&v.cause.as_str())),
        "2 of 3 replicas on one node is the expected share, not a hog: {:?}",
        live.verdicts
    );

    let pods = query.pods(PodsRequest {}).await.unwrap().into_inner();
    assert!(pods.kubernetes);
    let a = pods.pods.iter().find(|p| p.uid == "a").unwrap();
    assert_eq!((a.name.as_str(), a.namespace.as_str(), a.node_name.as_str()), ("web-6b7c9d8f5-a", "shop", "pi-1"));
    assert_eq!((a.workload_kind.as_str(), a.workload_name.as_str(), a.ready), ("Deployment", "web", true));
    assert_ne!(a.pod_ref, 0, "the agent's pod is matched to the cluster's");
    let nodes = query.nodes(NodesRequest {}).await.unwrap().into_inner().nodes;
    let roles: BTreeMap<&str, &str> = nodes.iter().map(|n| (n.node_name.as_str(), n.role.as_str())).collect();
    assert_eq!(roles, BTreeMap::from([("pi-1", "control-plane"), ("pi-2", "worker")]));

    drop((pi1, pi2));
    collector.stop().await.unwrap();
}

// --- the double against the real kubectl -----------------------------------------------------

/// How long one kubectl command may take before it is killed.
const KUBECTL_DEADLINE: Duration = Duration::from_secs(30);

/// `kubectl` pointed at one double, with a discovery cache of its own.
struct Kubectl {
    kubeconfig: std::path::PathBuf,
    cache: std::path::PathBuf,
}

impl Kubectl {
    fn new(dir: &std::path::Path, double: &KubeDouble) -> Kubectl {
        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(&kubeconfig, double.kubeconfig()).unwrap();
        Kubectl { kubeconfig, cache: dir.join("kube-cache") }
    }

    fn command(&self, args: &[&str]) -> std::process::Command {
        let mut command = std::process::Command::new("kubectl");
        command
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(&self.cache)
            .args(args)
            .env_remove("KUBECONFIG")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        command
    }

    /// Runs one command with `--request-timeout`, killed if it outlives [`KUBECTL_DEADLINE`].
    async fn run(&self, args: &[&str]) -> std::process::Output {
        let mut with_timeout = vec!["--request-timeout=10s"];
        with_timeout.extend_from_slice(args);
        let command = self.command(&with_timeout);
        let what = format!("kubectl {}", args.join(" "));
        tokio::task::spawn_blocking(move || run_bounded(command, &what)).await.unwrap()
    }

    /// Runs one command that must succeed; its stdout.
    async fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "kubectl {} failed: {stderr}", args.join(" "));
        String::from_utf8(output.stdout).unwrap()
    }

    /// `kubectl get pods -A --watch --output-watch-events -o json`, its events parsed as they come.
    fn watch_pods(&self, dir: &std::path::Path) -> KubectlWatch {
        let mut command = self.command(&["get", "pods", "-A", "--watch", "--output-watch-events", "-o", "json"]);
        let stderr_path = dir.join("kubectl-watch.err");
        command.stderr(std::fs::File::create(&stderr_path).unwrap());
        let mut child = command.spawn().unwrap_or_else(|e| panic!("{}", no_kubectl(&e)));
        let stdout = child.stdout.take().unwrap();
        let (tx, events) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for value in serde_json::Deserializer::from_reader(stdout).into_iter::<Value>() {
                let Ok(value) = value else { break };
                if tx.send(value).is_err() {
                    break;
                }
            }
        });
        KubectlWatch { child, events, seen: Vec::new(), stderr_path }
    }
}

fn no_kubectl(error: &std::io::Error) -> String {
    format!(
        "cannot run kubectl ({error}): put one on PATH (`cargo xtask ci` as root installs Debian's kubernetes-client)"
    )
}

fn run_bounded(mut command: std::process::Command, what: &str) -> std::process::Output {
    let child = command.spawn().unwrap_or_else(|e| panic!("{}", no_kubectl(&e)));
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(KUBECTL_DEADLINE) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            panic!("{what} did not finish within {KUBECTL_DEADLINE:?}; killed it");
        }
    }
}

/// A running `kubectl --watch`; killed when dropped.
struct KubectlWatch {
    child: std::process::Child,
    events: std::sync::mpsc::Receiver<Value>,
    seen: Vec<Value>,
    stderr_path: std::path::PathBuf,
}

impl Drop for KubectlWatch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl KubectlWatch {
    /// Waits until the events seen so far satisfy `check`.
    async fn until(&mut self, what: &str, check: impl Fn(&[Value]) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            while let Ok(event) = self.events.try_recv() {
                self.seen.push(event);
            }
            if check(&self.seen) {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                let stderr = std::fs::read_to_string(&self.stderr_path).unwrap_or_default();
                panic!(
                    "kubectl's watch did not show {what} within {WAIT:?}; it showed {:#?}\nstderr: {stderr}",
                    self.seen
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap()
}

/// Whether `events` hold a `change` event of pod `name` on `node`.
fn saw(events: &[Value], change: &str, name: &str, node: &str) -> bool {
    events.iter().any(|e| {
        e["type"] == change && e["object"]["metadata"]["name"] == name && e["object"]["spec"]["nodeName"] == node
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_reads_the_double_as_it_reads_a_real_api_server() {
    use crate::kube_services::{l2_status, metallb_state};

    let double = KubeDouble::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let problems =
        double.set_state(&metallb_state(&[("a", "pi-1"), ("b", "pi-2")], vec![l2_status("l2-x7k2p", "pi-2")]));
    assert!(problems.is_empty(), "{problems:?}");
    let dir = tempfile::tempdir().unwrap();
    let kubectl = Kubectl::new(dir.path(), &double);

    // A server-side Table with the node printer's columns.
    let nodes = kubectl.ok(&["get", "nodes"]).await;
    let rows: Vec<Vec<&str>> = nodes.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows[0][..4], ["NAME", "STATUS", "ROLES", "AGE"], "{nodes}");
    assert_eq!(rows.len(), 4, "three nodes: {nodes}");
    assert_eq!(rows[1][..3], ["pi-1", "Ready", "control-plane"], "{nodes}");

    // Plain JSON, as `kubectl get -o json` builds it from the list.
    let pods: Value = serde_json::from_str(&kubectl.ok(&["get", "pods", "-A", "-o", "json"]).await).unwrap();
    let placed: BTreeMap<&str, (&str, &str)> = pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (text(&p["metadata"]["name"]), (text(&p["metadata"]["namespace"]), text(&p["spec"]["nodeName"]))))
        .collect();
    assert_eq!(placed, BTreeMap::from([("web-6b7c9d8f5-a", ("shop", "pi-1")), ("web-6b7c9d8f5-b", ("shop", "pi-2"))]));

    // One object by its short name, read with jsonpath.
    let jsonpath = "jsonpath={.spec.type},{.spec.externalTrafficPolicy},{.spec.sessionAffinity},\
                    {.spec.sessionAffinityConfig.clientIP.timeoutSeconds},{.status.loadBalancer.ingress[0].ip}";
    let fields = kubectl.ok(&["get", "svc", "-n", "shop", "web", "-o", jsonpath]).await;
    assert_eq!(fields, "LoadBalancer,Local,ClientIP,600,192.168.1.240");
    let missing = kubectl.run(&["get", "svc", "-n", "shop", "nope"]).await;
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(!missing.status.success() && stderr.contains(r#"services "nope" not found"#), "{stderr}");

    // MetalLB's custom resource, with the printer columns of its CRD.
    let statuses = kubectl.ok(&["get", "servicel2statuses", "-n", "metallb-system"]).await;
    let rows: Vec<Vec<&str>> = statuses.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows[0], ["NAME", "ALLOCATED", "NODE", "SERVICE", "NAME", "SERVICE", "NAMESPACE"], "{statuses}");
    assert_eq!(rows[1..], [vec!["l2-x7k2p", "pi-2", "web", "shop"]], "{statuses}");

    // A watch sees what changes after it started: a pod added, a pod moved.
    let mut watch = kubectl.watch_pods(dir.path());
    watch
        .until("the current pods", |e| {
            saw(e, "ADDED", "web-6b7c9d8f5-a", "pi-1") && saw(e, "ADDED", "web-6b7c9d8f5-b", "pi-2")
        })
        .await;
    double
        .set_state(&metallb_state(&[("a", "pi-3"), ("b", "pi-2"), ("c", "pi-2")], vec![l2_status("l2-x7k2p", "pi-2")]));
    watch
        .until("pod c added and pod a moved", |e| {
            saw(e, "ADDED", "web-6b7c9d8f5-c", "pi-2") && saw(e, "MODIFIED", "web-6b7c9d8f5-a", "pi-3")
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_finds_no_metallb_kinds_on_a_cluster_without_them_and_the_rest_still_works() {
    use crate::kube_services::{l2_status, metallb_state};

    let double = KubeDouble::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let mut cluster = metallb_state(&[("a", "pi-1"), ("b", "pi-2")], vec![l2_status("l2-x7k2p", "pi-2")]);
    cluster.apis.clear();
    let problems = double.set_state(&cluster);
    assert_eq!(problems.len(), 1, "one line for the ignored MetalLB objects: {problems:?}");
    let dir = tempfile::tempdir().unwrap();
    let kubectl = Kubectl::new(dir.path(), &double);

    let statuses = kubectl.run(&["get", "servicel2statuses", "-A"]).await;
    let stderr = String::from_utf8_lossy(&statuses.stderr);
    assert!(!statuses.status.success(), "{stderr}");
    assert!(stderr.contains(r#"the server doesn't have a resource type "servicel2statuses""#), "{stderr}");

    let services = kubectl.ok(&["get", "svc", "-A"]).await;
    let row = ["shop", "web", "LoadBalancer", "10.43.0.10"];
    assert!(services.lines().any(|l| l.split_whitespace().take(4).eq(row)), "{services}");
    let pods: Value = serde_json::from_str(&kubectl.ok(&["get", "pods", "-n", "shop", "-o", "json"]).await).unwrap();
    assert_eq!(pods["items"].as_array().unwrap().len(), 2);
}
