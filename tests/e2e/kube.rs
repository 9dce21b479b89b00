//! The collector's cluster knowledge against the Kubernetes API test double: the real `kube`
//! watchers list and watch over HTTP, and the pod -> name/node/workload mapping, node roles and
//! ready endpoints stay right while pods appear, disappear and move, and after a 410 relist.

use std::collections::BTreeMap;
use std::time::Duration;

use bakery_collector::kube::{ClusterView, KubeMode, KubeWatch};
use bakery_diagnosis::{NodeRole, WorkloadRef};
use bakery_tests::kube_double::{ClusterState, Kind, KubeDouble};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(15);

fn node(name: &str, control_plane: bool) -> Value {
    let labels = if control_plane {
        json!({"kubernetes.io/hostname": name, "node-role.kubernetes.io/control-plane": ""})
    } else {
        json!({"kubernetes.io/hostname": name})
    };
    json!({"metadata": {"name": name, "labels": labels}})
}

fn web_pod(uid: &str, node: &str) -> Value {
    json!({
        "metadata": {"name": format!("web-6b7c9d8f5-{uid}"), "namespace": "shop", "uid": uid,
                     "labels": {"app": "web", "pod-template-hash": "6b7c9d8f5"},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-6b7c9d8f5",
                                          "uid": "rs-web", "controller": true}]},
        "spec": {"nodeName": node, "containers": [{"name": "nginx", "image": "nginx"}]},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]}
    })
}

fn endpoints(pods: &[(&str, &str)]) -> Value {
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
fn state(pods: &[(&str, &str)]) -> ClusterState {
    ClusterState {
        nodes: vec![node("pi-1", true), node("pi-2", false), node("pi-3", false)],
        pods: pods.iter().map(|(uid, node)| web_pod(uid, node)).collect(),
        endpointslices: vec![endpoints(pods)],
        replicasets: vec![],
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

async fn until(watch: &KubeWatch, what: &str, check: impl Fn(&ClusterView) -> bool) {
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
