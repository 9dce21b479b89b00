//! The live diagnosis as the export's [`ExportFeed`]: pod names and workloads from the
//! Kubernetes watch, shares, imbalance, verdicts and the open window from the latest evaluation.
//! The conversions are pure and tested with data.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;

use bakery_diagnosis::{Evaluation, Signal};

use super::hooks::{
    DiagnosisView, ExportFeed, FeedSnapshot, HogView, ImbalanceView, PodMeta, ShareView, WindowView, Workload,
};
use crate::kube::ClusterView;
use crate::live::{AnalysisView, Diagnosis};

impl ExportFeed for Diagnosis {
    fn read(&self) -> Pin<Box<dyn Future<Output = FeedSnapshot> + Send + '_>> {
        Box::pin(async move {
            let live = self.live().await;
            FeedSnapshot { pods: pods_of(&self.cluster()), diagnosis: view_of(&live) }
        })
    }
}

/// Pods by UID, as the export names them.
pub fn pods_of(cluster: &ClusterView) -> HashMap<String, PodMeta> {
    cluster
        .pods_by_uid
        .iter()
        .map(|(uid, pod)| {
            let workload = pod.workload.as_ref().map(|w| Workload { kind: w.kind.clone(), name: w.name.clone() });
            (uid.clone(), PodMeta { name: pod.name.clone(), namespace: pod.namespace.clone(), workload })
        })
        .collect()
}

/// The diagnosis series from the live snapshot.
pub fn view_of(live: &AnalysisView) -> DiagnosisView {
    let mut view = DiagnosisView::default();
    if let Some(window) = &live.window {
        view.open_windows.push(WindowView {
            id: window.id.clone(),
            name: window.name.clone(),
            started_ms: window.start_ms,
        });
    }
    let Some(evaluation) = &live.evaluation else { return view };
    evaluation_into(evaluation, &mut view);
    view
}

fn evaluation_into(evaluation: &Evaluation, view: &mut DiagnosisView) {
    let analysis = &evaluation.live;
    let (namespace, workload) =
        analysis.workload.as_ref().map(|w| (w.namespace.clone(), w.name.clone())).unwrap_or_default();
    if analysis.workload.is_some() {
        for node in &analysis.nodes {
            if let Some(observed) = node.share(Signal::PodTraffic) {
                view.shares.push(ShareView {
                    node: node.node.clone(),
                    namespace: namespace.clone(),
                    workload: workload.clone(),
                    observed,
                    expected: node.expected_share,
                });
            }
        }
        if let Some(score) = analysis.summary.get(&Signal::PodTraffic).and_then(|s| s.max_over_mean) {
            view.imbalance.push(ImbalanceView { namespace: namespace.clone(), workload: workload.clone(), score });
        }
    }
    let mut by_cause: BTreeMap<String, u64> = BTreeMap::new();
    for verdict in &evaluation.verdicts {
        *by_cause.entry(verdict.cause.name().to_string()).or_default() += 1;
        view.active_hogs.push(HogView {
            node: verdict.node.clone(),
            namespace: namespace.clone(),
            workload: workload.clone(),
            cause: verdict.cause.name().to_string(),
        });
    }
    view.verdicts_by_cause = by_cause.into_iter().collect();
}

#[cfg(test)]
mod tests {
    use bakery_diagnosis::{Analysis, Cause, NodeAnalysis, SignalSummary, SignalValue, Verdict, WorkloadRef};

    use super::*;
    use crate::windows::OpenWindow;

    fn node(name: &str, share: f64, expected: f64) -> NodeAnalysis {
        NodeAnalysis {
            node: name.into(),
            role: Default::default(),
            endpoints: 1,
            expected_share: expected,
            span_seconds: 10.0,
            signals: BTreeMap::from([(
                Signal::PodTraffic,
                SignalValue { value: 1000.0, share: Some(share), normalised: Some(share / expected) },
            )]),
            throttle_seen: Default::default(),
            workload_pods: vec![],
            busy_other_pods: vec![],
            hottest_other_pod_cores: 0.0,
            decisions: 0.0,
            accepted: 0.0,
        }
    }

    fn evaluation() -> Evaluation {
        let workload = WorkloadRef { kind: "Deployment".into(), namespace: "blog".into(), name: "wordpress".into() };
        let summary = SignalSummary { total: 3000.0, max_over_mean: Some(1.8), jain: Some(0.7), nodes: 3 };
        let analysis = Analysis {
            from_ms: 0,
            to_ms: 10_000,
            workload: Some(workload),
            total_endpoints: 3,
            serving_nodes: 3,
            connections: 16.0,
            nodes: vec![node("master-01", 0.2, 1.0 / 3.0), node("master-02", 0.6, 1.0 / 3.0)],
            summary: BTreeMap::from([(Signal::PodTraffic, summary)]),
            daemon_set_cpu: BTreeMap::new(),
            decisions: 16.0,
            accepted: 0.0,
            entry_decisions: 16.0,
            entry: None,
            starved: Vec::new(),
            unavailable: Vec::new(),
        };
        let verdict = Verdict {
            node: "master-02".into(),
            cause: Cause::IngressConcentration,
            confidence: 0.9,
            since_ms: 5_000,
            first_seen_ms: 4_000,
            subject: None,
            summary: String::new(),
            evidence: vec![],
            next_step: String::new(),
            remedy: bakery_diagnosis::Remedy::Investigate,
            read: vec![],
        };
        Evaluation {
            timestamp_ms: 10_000,
            live: analysis.clone(),
            detection: analysis,
            verdicts: vec![verdict],
            changes: vec![],
        }
    }

    #[test]
    fn shares_imbalance_verdicts_and_the_window_come_from_the_live_snapshot() {
        let live = AnalysisView {
            evaluation: Some(evaluation()),
            workload: None,
            window: Some(OpenWindow::new(Some("oha run".into()), None, false, 1_000)),
        };
        let view = view_of(&live);
        assert_eq!(view.shares.len(), 2);
        let hot = view.shares.iter().find(|s| s.node == "master-02").expect("master-02's share");
        assert_eq!((hot.observed, hot.namespace.as_str(), hot.workload.as_str()), (0.6, "blog", "wordpress"));
        assert!((hot.expected - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(view.imbalance[0].score, 1.8);
        assert_eq!(view.active_hogs[0].cause, "ingress-concentration");
        assert_eq!(view.verdicts_by_cause, vec![("ingress-concentration".to_string(), 1)]);
        assert_eq!(view.open_windows[0].name, "oha run");
        assert_eq!(view_of(&AnalysisView::default()), DiagnosisView::default(), "nothing before the first tick");
    }
}
