//! What the demo publishes as the Kubernetes API (`kube_state`) is what the API double serves and
//! what the collector reads: every shipped scenario's state file uses only the double's keys, the
//! double takes every object in it, and the collector's cluster watch finds each scenario's
//! declared entry (the L2 announcer, the BGP nodes, or no MetalLB).

use std::collections::BTreeSet;
use std::time::Duration;

use bakery_collector::kube::{ClusterView, KubeMode, KubeWatch, WatchOptions};
use bakery_demo::plan::Plan;
use bakery_demo::scenario::{SHIPPED, Scenario};
use bakery_diagnosis::Announcement;
use bakery_lab::kube_double::{ClusterState, KubeDouble};

/// How long the collector's watch may take to show a scenario's entry.
const WAIT: Duration = Duration::from_secs(15);

/// What the demo publishes is what the API double serves: every shipped scenario's state file uses
/// only the double's keys, and the double takes every object in it.
#[tokio::test]
async fn demo_state_files_are_served_by_the_api_double_without_a_problem() {
    let double = KubeDouble::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    for (name, _) in SHIPPED {
        let plan = Plan::new(Scenario::shipped(name).unwrap(), 1);
        let text = serde_json::to_string(&bakery_demo::kube_state::state(&plan)).unwrap();
        assert_eq!(ClusterState::unknown_keys(&text), Vec::<String>::new(), "{name}");
        let problems = double.set_state(&ClusterState::parse(&text).unwrap());
        assert_eq!(problems, Vec::<String>::new(), "{name}");
    }
}

#[tokio::test]
async fn every_demo_scenarios_state_file_is_served_whole() {
    let double = KubeDouble::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    for (name, _) in SHIPPED {
        let plan = Plan::new(Scenario::shipped(name).unwrap(), 0xabc);
        let text = serde_json::to_string(&bakery_demo::kube_state::state(&plan)).unwrap();
        assert_eq!(ClusterState::unknown_keys(&text), Vec::<String>::new(), "{name}");
        let problems = double.set_state(&ClusterState::parse(&text).unwrap());
        assert!(problems.is_empty(), "the double skips part of scenario {name}'s state: {problems:#?}");
    }
}

/// The collector's cluster watch on the double, through a kubeconfig in `dir`.
async fn watch(double: &KubeDouble, dir: &std::path::Path) -> KubeWatch {
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(&kubeconfig, double.kubeconfig()).unwrap();
    KubeWatch::start_with(&KubeMode::Kubeconfig(kubeconfig), WatchOptions::default())
        .await
        .unwrap()
        .expect("a cluster to watch")
}

/// Polls the watch's view until `check` holds; the watchers run on the runtime's other worker
/// meanwhile.
fn until(watch: &KubeWatch, what: &str, check: impl Fn(&ClusterView) -> bool) {
    tokio::task::block_in_place(|| bakery_lab::wait_until(what, WAIT, || check(&watch.view())))
        .unwrap_or_else(|e| panic!("{e}; the view is {:#?}", watch.view()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demos_declared_entry_reads_back_in_every_scenario() {
    for (name, _) in SHIPPED {
        let scenario = Scenario::shipped(name).unwrap();
        let plan = Plan::new(scenario.clone(), 0xabc);
        let state = ClusterState::parse(&bakery_demo::kube_state::state(&plan).to_string()).unwrap();
        let double = KubeDouble::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
        double.set_state(&state);
        let dir = tempfile::tempdir().unwrap();
        let watch = watch(&double, dir.path()).await;
        let entry_workload = scenario.entry_workload();
        let expected: BTreeSet<String> = scenario.entry_nodes().iter().map(|n| n.to_string()).collect();
        let what = format!("scenario {name}'s entry on {expected:?}");
        until(&watch, &what, |view| {
            let Some(workload) = view.find_workload(&entry_workload.namespace, &entry_workload.name) else {
                return false;
            };
            let Some(entry) = view.entry_service(&workload) else { return false };
            match (&entry.announcement, scenario.service.metallb) {
                (Announcement::L2 { node, .. }, true) => scenario.announcer() == Some(node.as_str()),
                (Announcement::Bgp { nodes, .. }, true) => nodes == &expected,
                (Announcement::Unknown { .. }, false) => true,
                _ => false,
            }
        });
    }
}
