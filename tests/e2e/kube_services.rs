//! How the collector reads each Service's entry from the cluster, against the Kubernetes API
//! double: a MetalLB ServiceL2Status names the node that answers for the address (and a
//! failover to another node is followed), ServiceBGPStatus objects name every announcing node,
//! and without MetalLB's CRDs (404) the entry is unknown with the reason, said once in the log,
//! while pods and Services keep working and MetalLB installed later is found.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::Duration;

use bakery_collector::kube::services::NOT_INSTALLED_NOTE;
use bakery_collector::kube::{ClusterView, KubeMode, KubeWatch, WatchOptions};
use bakery_diagnosis::{Announcement, ServiceEntry, ServiceType, SessionAffinity, TrafficPolicy, WorkloadRef};
use bakery_lab::binaries::built_binary;
use bakery_lab::kube_double::{ClusterState, Kind, KubeDouble, METALLB_API};
use serde_json::{Value, json};

use crate::kube::{WAIT, state, until};

/// `shop/web`: a LoadBalancer Service with externalTrafficPolicy Local and ClientIP affinity,
/// whose address MetalLB allocated from the pool `lan`.
pub(crate) fn web_service() -> Value {
    json!({
        "metadata": {"name": "web", "namespace": "shop", "uid": "0d2b6c4e-51f8-4c1e-9a57-3f1f0c2d9e11",
                     "annotations": {"metallb.io/ip-allocated-from-pool": "lan"}},
        "spec": {"type": "LoadBalancer", "clusterIP": "10.43.0.10", "selector": {"app": "web"},
                 "ports": [{"port": 80, "targetPort": 80, "nodePort": 30080, "protocol": "TCP"}],
                 "externalTrafficPolicy": "Local", "internalTrafficPolicy": "Cluster",
                 "sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 600}}},
        "status": {"loadBalancer": {"ingress": [{"ip": "192.168.1.240", "ipMode": "VIP"}]}}
    })
}

/// A ServiceL2Status as MetalLB's speaker on `node` writes it for `shop/web` (it names these
/// objects `l2-` + a generated suffix, in its own namespace).
pub(crate) fn l2_status(name: &str, node: &str) -> Value {
    json!({
        "metadata": {"name": name, "namespace": "metallb-system",
                     "labels": {"metallb.io/node": node, "metallb.io/service-name": "web",
                                "metallb.io/service-namespace": "shop"}},
        "status": {"node": node, "serviceName": "web", "serviceNamespace": "shop", "interfaces": [{"name": "eth0"}]}
    })
}

fn bgp_status(name: &str, node: &str, service: &str) -> Value {
    json!({
        "metadata": {"name": name, "namespace": "metallb-system"},
        "status": {"node": node, "serviceName": service, "serviceNamespace": "shop", "peers": ["router"]}
    })
}

/// An advertisement of the pool `lan` from the nodes named.
fn advertisement(nodes: &[&str]) -> Value {
    json!({
        "metadata": {"name": "lan", "namespace": "metallb-system"},
        "spec": {"ipAddressPools": ["lan"],
                 "nodeSelectors": [{"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": nodes}]}]}
    })
}

/// The web pods (uid, node), the web Service, MetalLB installed with these ServiceL2Status
/// objects and an L2Advertisement of the pool from pi-2 and pi-3.
pub(crate) fn metallb_state(pods: &[(&str, &str)], l2_statuses: Vec<Value>) -> ClusterState {
    ClusterState {
        apis: vec![METALLB_API.into()],
        services: vec![web_service()],
        servicel2statuses: l2_statuses,
        l2advertisements: vec![advertisement(&["pi-2", "pi-3"])],
        ..state(pods)
    }
}

fn web() -> WorkloadRef {
    WorkloadRef::new("Deployment", "shop", "web")
}

fn web_entry(view: &ClusterView) -> Option<&ServiceEntry> {
    view.entry_service(&web())
}

fn announcement(view: &ClusterView) -> Option<&Announcement> {
    web_entry(view).map(|e| &e.announcement)
}

async fn watch(double: &KubeDouble, dir: &std::path::Path, options: WatchOptions) -> KubeWatch {
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(&kubeconfig, double.kubeconfig()).unwrap();
    KubeWatch::start_with(&KubeMode::Kubeconfig(kubeconfig), options).await.unwrap().expect("a cluster to watch")
}

fn nodes(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| n.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_l2_status_names_the_entry_node_and_a_failover_is_followed() {
    let double = KubeDouble::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let pods = [("a", "pi-1"), ("b", "pi-2")];
    double.set_state(&metallb_state(&pods, vec![l2_status("l2-x7k2p", "pi-2")]));
    let dir = tempfile::tempdir().unwrap();
    let watch = watch(&double, dir.path(), WatchOptions::default()).await;

    let on = |node: &str, object: &str| Announcement::L2 {
        node: node.into(),
        source: format!("ServiceL2Status metallb-system/{object}"),
    };
    until(&watch, "the L2 announcement on pi-2", |v| announcement(v) == Some(&on("pi-2", "l2-x7k2p"))).await;
    let view = watch.view();
    let entry = web_entry(&view).unwrap();
    assert_eq!(entry.service, "shop/web");
    assert_eq!(entry.service_type, ServiceType::LoadBalancer);
    assert_eq!(
        (entry.external_traffic_policy, entry.internal_traffic_policy),
        (TrafficPolicy::Local, TrafficPolicy::Cluster)
    );
    assert_eq!(entry.session_affinity, Some(SessionAffinity { timeout_seconds: 600 }));
    assert_eq!(entry.load_balancer_ips, ["192.168.1.240"]);
    assert_eq!(entry.eligible_nodes, Some(nodes(&["pi-2", "pi-3"])), "the L2Advertisement's node selector");
    assert!(view.notes.is_empty(), "{:?}", view.notes);

    // pi-2's speaker goes away: pi-3's speaker announces and writes its own status (a status's
    // node cannot change: MetalLB's CRD declares it immutable), and the old one is deleted.
    double.set_state(&metallb_state(&pods, vec![l2_status("l2-m4q8z", "pi-3")]));
    until(&watch, "the failover to pi-3", |v| announcement(v) == Some(&on("pi-3", "l2-m4q8z"))).await;

    // Every status gone (MetalLB releasing the address): the entry says why it is unknown.
    double.set_state(&metallb_state(&pods, vec![]));
    let unknown =
        Announcement::Unknown { reason: "no ServiceL2Status or ServiceBGPStatus names the Service yet".into() };
    until(&watch, "no status", |v| announcement(v) == Some(&unknown)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_bgp_statuses_name_every_announcing_node() {
    let double = KubeDouble::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let pods = [("a", "pi-1"), ("b", "pi-2")];
    let cluster = |statuses: Vec<Value>| ClusterState {
        servicebgpstatuses: statuses,
        bgpadvertisements: vec![advertisement(&["pi-1", "pi-3"])],
        ..metallb_state(&pods, vec![])
    };
    double.set_state(&cluster(vec![
        bgp_status("bgp-7hx2k", "pi-1", "web"),
        bgp_status("bgp-q9w4e", "pi-3", "web"),
        bgp_status("bgp-z1z1z", "pi-2", "api"),
    ]));
    let dir = tempfile::tempdir().unwrap();
    let watch = watch(&double, dir.path(), WatchOptions::default()).await;

    let both = Announcement::Bgp {
        nodes: nodes(&["pi-1", "pi-3"]),
        source: "ServiceBGPStatus metallb-system/bgp-7hx2k, metallb-system/bgp-q9w4e".into(),
    };
    until(&watch, "two BGP announcers", |v| announcement(v) == Some(&both)).await;
    assert_eq!(web_entry(&watch.view()).unwrap().eligible_nodes, Some(nodes(&["pi-1", "pi-3"])));

    // pi-1 stops announcing (its session went down and its speaker withdrew the route).
    double.set_state(&cluster(vec![bgp_status("bgp-q9w4e", "pi-3", "web"), bgp_status("bgp-z1z1z", "pi-2", "api")]));
    let one = Announcement::Bgp { nodes: nodes(&["pi-3"]), source: "ServiceBGPStatus metallb-system/bgp-q9w4e".into() };
    until(&watch, "one BGP announcer", |v| announcement(v) == Some(&one)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_metallb_the_entry_is_unknown_with_the_reason_and_metallb_installed_later_is_found() {
    let double = KubeDouble::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let pods = [("a", "pi-1"), ("b", "pi-2")];
    let mut without = metallb_state(&pods, vec![l2_status("l2-x7k2p", "pi-2")]);
    without.apis.clear();
    double.set_state(&without);
    let dir = tempfile::tempdir().unwrap();
    let options = WatchOptions { metallb_probe_every: Duration::from_millis(300) };
    let watch = watch(&double, dir.path(), options).await;

    let not_installed =
        Announcement::Unknown { reason: "MetalLB is not installed and no K3s ServiceLB pods hold the address".into() };
    until(&watch, "the not-installed reason", |v| announcement(v) == Some(&not_installed)).await;
    let view = watch.view();
    assert_eq!(view.notes, [NOT_INSTALLED_NOTE]);
    // Pods, endpoints and the Service itself are read as usual.
    assert_eq!(view.pods_by_uid.len(), 2);
    assert_eq!(view.endpoints[&web()].values().sum::<u32>(), 2);
    let entry = web_entry(&view).unwrap();
    assert_eq!((entry.service_type, entry.external_traffic_policy), (ServiceType::LoadBalancer, TrafficPolicy::Local));

    // MetalLB is installed later: found at the next look.
    double.set_state(&metallb_state(&pods, vec![l2_status("l2-x7k2p", "pi-2")]));
    let on_pi2 = Announcement::L2 { node: "pi-2".into(), source: "ServiceL2Status metallb-system/l2-x7k2p".into() };
    until(&watch, "MetalLB installed later", |v| announcement(v) == Some(&on_pi2) && v.notes.is_empty()).await;

    // And uninstalled again: the watches end with 404 and the collector goes back to looking.
    double.set_state(&without);
    until(&watch, "MetalLB removed", |v| announcement(v) == Some(&not_installed) && v.notes == [NOT_INSTALLED_NOTE])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metallb_without_service_bgp_status_is_watched_for_the_kinds_it_has() {
    // MetalLB 0.14.4 to 0.14.x: ServiceL2Status exists, ServiceBGPStatus (0.15.0) does not.
    let double = KubeDouble::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let pods = [("a", "pi-1"), ("b", "pi-2")];
    let older = |statuses: Vec<Value>| ClusterState {
        apis: ["servicel2statuses", "l2advertisements", "bgpadvertisements", "ipaddresspools"]
            .iter()
            .map(|plural| format!("{plural}.metallb.io"))
            .collect(),
        ..metallb_state(&pods, statuses)
    };
    double.set_state(&older(vec![l2_status("l2-x7k2p", "pi-2")]));
    let dir = tempfile::tempdir().unwrap();
    let options = WatchOptions { metallb_probe_every: Duration::from_millis(200) };
    let watch = watch(&double, dir.path(), options).await;

    let on = |node: &str, object: &str| Announcement::L2 {
        node: node.into(),
        source: format!("ServiceL2Status metallb-system/{object}"),
    };
    until(&watch, "the L2 announcement and a note on the missing kind", |v| {
        announcement(v) == Some(&on("pi-2", "l2-x7k2p"))
            && v.notes.len() == 1
            && v.notes[0].contains("servicebgpstatuses.metallb.io")
    })
    .await;
    // The missing kind is probed every 200 ms; the kinds that exist keep their one watch (a
    // watch restarted on each 404 of another kind would list again and again).
    let lists = double.lists_served(Kind::ServiceL2Status);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(double.lists_served(Kind::ServiceL2Status), lists, "the ServiceL2Status watch kept going");
    double.set_state(&older(vec![l2_status("l2-m4q8z", "pi-3")]));
    until(&watch, "the failover to pi-3", |v| announcement(v) == Some(&on("pi-3", "l2-m4q8z"))).await;
}

/// Stops the collector process when dropped.
struct Collector(std::process::Child);

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_collector_says_once_that_metallb_is_not_installed_and_keeps_reading_the_cluster() {
    use bakery_proto::v1::PodsRequest;
    use bakery_proto::v1::query_client::QueryClient;

    let binary = built_binary("bakery-collector", "bakery-collector").unwrap();
    let double = KubeDouble::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let mut without = metallb_state(&[("a", "pi-1"), ("b", "pi-2")], vec![]);
    without.apis.clear();
    double.set_state(&without);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, double.kubeconfig()).unwrap();
    let (ready, log) = (dir.path().join("ready"), dir.path().join("collector.log"));
    let _collector = Collector(
        Command::new(binary)
            .args(["serve", "--insecure-no-auth", "--no-auto-windows"])
            .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--ready-file")
            .arg(&ready)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .env("BAKERY_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let deadline = tokio::time::Instant::now() + WAIT;
    let addr = loop {
        if let Some(addr) = std::fs::read_to_string(&ready).ok().filter(|a| a.ends_with('\n')) {
            break addr.trim().to_string();
        }
        assert!(tokio::time::Instant::now() < deadline, "the collector never listened; its log:\n{}", read_log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    // The pods are read from the cluster (named, with their workload).
    let mut query = QueryClient::connect(format!("http://{addr}")).await.unwrap();
    loop {
        let pods = query.pods(PodsRequest {}).await.unwrap().into_inner();
        let named =
            pods.pods.iter().filter(|p| p.workload_name == "web" && p.name.starts_with("web-6b7c9d8f5-")).count();
        if pods.kubernetes && named == 2 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the collector never read the pods: {pods:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    loop {
        if read_log().contains(NOT_INSTALLED_NOTE) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the collector never said MetalLB is missing; its log:\n{}",
            read_log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A watcher left failing on the 404 would warn again within seconds (its backoff starts
    // under a second): watch the log for a while.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let text = read_log();
    let said: Vec<&str> = text.lines().filter(|l| l.contains(NOT_INSTALLED_NOTE)).collect();
    assert_eq!(said.len(), 1, "said once; the log:\n{text}");
    assert!(said[0].contains(" INFO "), "at info level: {}", said[0]);
    let kube_warnings: Vec<&str> = text
        .lines()
        .filter(|l| (l.contains(" WARN ") || l.contains(" ERROR ")) && l.contains("bakery_collector::kube"))
        .collect();
    assert!(kube_warnings.is_empty(), "no warning from the cluster watches: {kube_warnings:#?}");
    assert_eq!(text.matches("servicel2statuses").count(), 1, "no other line about the missing kind; the log:\n{text}");
}
