//! What keeps the diagnosis from speaking where it cannot know: a trickle of traffic, a hostNetwork
//! workload, a control-plane node that always works outside pods, and the node's own baseline that
//! still lets a real hog through.

use std::collections::BTreeSet;

use bakery_diagnosis::fixture::{Connections, Fixture, HostWork, Phase};
use bakery_diagnosis::{Cause, Config};

use crate::support::{active, describe, load, replay};

fn raised(fixture: &Fixture) -> BTreeSet<(String, Cause)> {
    let ticks = fixture.ticks().expect("valid");
    replay(&ticks, &Config::default()).iter().flat_map(active).collect()
}

#[test]
fn a_trickle_of_traffic_raises_no_traffic_or_ingress_verdict() {
    // The Local-policy fixture sends every connection to worker-01's pod from 12 s; at a request a
    // second of a 3 kB page that is below the floor and says nothing about balancing.
    let mut fixture = load("pod-concentration-local-policy");
    let load = fixture.load.as_mut().expect("a load");
    load.requests_per_s = 1.0;
    load.response_bytes = 3_000.0;
    load.backend = None;
    assert_eq!(raised(&fixture), BTreeSet::new());
    // The same skew at the fixture's own rate is flagged: the floor, not the skew, kept it quiet.
    assert!(
        raised(&self::load("pod-concentration-local-policy")).contains(&("worker-01".into(), Cause::PodConcentration))
    );
}

#[test]
fn a_host_network_workload_says_its_traffic_causes_are_unavailable() {
    let mut fixture = load("pod-concentration-local-policy");
    for pod in fixture.pods.iter_mut().filter(|p| p.workload.as_deref() == Some("Deployment/wordpress/wordpress")) {
        pod.host_network = true;
    }
    let ticks = fixture.ticks().expect("valid");
    let evaluations = replay(&ticks, &Config::default());
    let last = evaluations.last().expect("evaluations");
    assert!(
        last.detection.unavailable.iter().any(|u| u.contains("hostNetwork") && u.contains("pod-concentration")),
        "{:?}",
        last.detection.unavailable
    );
    let traffic: Vec<_> = evaluations
        .iter()
        .flat_map(active)
        .filter(|(_, c)| matches!(c, Cause::PodConcentration | Cause::ConnectionPinning | Cause::IngressConcentration))
        .collect();
    assert!(traffic.is_empty(), "{traffic:?}");
}

/// The balanced fixture with master-02 (a serving control-plane node) idling at `base` cores
/// outside pods, and from 12 s to 26 s `extra` cores more.
fn busy_server(base: f64, extra: f64) -> Fixture {
    let mut fixture = load("balanced-control");
    for node in &mut fixture.nodes {
        node.base_cpu_cores = Some(if node.name == "master-02" { base } else { 0.08 });
    }
    if extra > 0.0 {
        fixture.host_work.push(HostWork {
            node: "master-02".into(),
            cpu_cores: extra,
            softirq_cores: 0.0,
            nic_rx_bps: 0.0,
            nic_tx_bps: 0.0,
            from_s: 12.0,
            until_s: 26.0,
        });
    }
    fixture
}

#[test]
fn a_server_that_always_idles_high_is_not_a_hog_but_a_rise_over_its_own_baseline_is() {
    // A k3s server runs its control plane outside pods: 0.9 cores against the workers' 0.08, all
    // the time. Against the peers alone that is an excess of 0.8 cores; against its own baseline it
    // is nothing.
    let idle = busy_server(0.9, 0.0);
    let ticks = idle.ticks().expect("valid");
    let evaluations = replay(&ticks, &Config::default());
    let raised: Vec<_> = evaluations.iter().flat_map(active).collect();
    assert!(raised.is_empty(), "{}", describe(&evaluations, idle.start_ms));

    // The same server burning 0.8 cores more from 12 s is flagged, with its baseline as evidence.
    let busy = busy_server(0.9, 0.8);
    let ticks = busy.ticks().expect("valid");
    let evaluations = replay(&ticks, &Config::default());
    let verdict = evaluations
        .iter()
        .flat_map(|e| e.verdicts.iter())
        .find(|v| v.node == "master-02" && v.cause == Cause::UnattributedCpu)
        .unwrap_or_else(|| panic!("{}", describe(&evaluations, busy.start_ms)));
    let baseline = verdict.evidence.iter().find(|e| e.name == "own-baseline").expect("baseline evidence");
    assert!((baseline.value - 0.9).abs() < 0.15, "{baseline:?}");
}

#[test]
fn the_baseline_learns_only_outside_windows() {
    // The window opens at 10 s and the server burns 0.8 cores more from 12 s: it is judged against
    // what it did before the window, however long the window lasts.
    let busy = busy_server(0.9, 0.8);
    let start = busy.start_ms;
    let ticks: Vec<_> = busy
        .ticks()
        .expect("valid")
        .into_iter()
        .map(|mut t| {
            t.window_open = t.timestamp_ms >= start + 10_000;
            t
        })
        .collect();
    let evaluations = replay(&ticks, &Config::default());
    let verdict = evaluations
        .iter()
        .flat_map(|e| e.verdicts.iter())
        .find(|v| v.node == "master-02" && v.cause == Cause::UnattributedCpu)
        .unwrap_or_else(|| panic!("{}", describe(&evaluations, start)));
    let baseline = verdict.evidence.iter().find(|e| e.name == "own-baseline").expect("baseline evidence");
    assert!((baseline.value - 0.9).abs() < 0.15, "{baseline:?}");

    // With a window open from the first tick nothing is learnt, and nothing is raised on the peers
    // alone.
    let ticks: Vec<_> = busy
        .ticks()
        .expect("valid")
        .into_iter()
        .map(|mut t| {
            t.window_open = true;
            t
        })
        .collect();
    let raised: BTreeSet<_> = replay(&ticks, &Config::default()).iter().flat_map(active).collect();
    assert!(!raised.contains(&("master-02".into(), Cause::UnattributedCpu)), "{raised:?}");
}

#[test]
fn few_keep_alive_connections_hashed_unevenly_over_entries_are_not_ingress() {
    // Four keep-alive connections over five BGP next hops land two on one node now and then; that
    // is chance, not an entry the cluster concentrates.
    let mut fixture = load("balanced-control");
    fixture.load.as_mut().expect("a load").connections = Some(Connections::Placed(vec![2, 1, 1]));
    fixture.phases.push(Phase {
        from_s: 0.0,
        until_s: f64::INFINITY,
        requests_per_s: None,
        connections: None,
        entry: None,
        announcement: None,
    });
    let raised = raised(&fixture);
    assert!(raised.iter().all(|(_, c)| *c != Cause::IngressConcentration), "{raised:?}");
}
