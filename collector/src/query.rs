//! The gRPC `Query` service: every node's status and latest sample, a node's recent history,
//! and telling a node's agent to sample at another interval. Reads the in-memory node state
//! only, never the store (the committer owns it). Each method first authorizes its caller for
//! its role ([`Call::role`]): reads need read, SetInterval and the window calls need control.

use std::collections::BTreeSet;
use std::sync::Arc;

use bakery_proto::v1::query_server::Query;
use bakery_proto::v1::{
    AlertsRequest, AlertsResponse, HistoryBatch, HistoryRequest, HistoryResponse, LiveRequest, LiveResponse, NodeShare,
    NodeStatus, NodesRequest, NodesResponse, PodIdentity, PodInfo, PodsRequest, PodsResponse, ReportRequest,
    ReportResponse, Sample, SetIntervalRequest, SetIntervalResponse, StartWindowRequest, StartWindowResponse,
    StopWindowRequest, StopWindowResponse, Verdict as WireVerdict, Window as WireWindow, WindowsRequest,
    WindowsResponse,
};
use prost::Message;
use tonic::{Request, Response, Status};

use crate::auth::Call;
use crate::kube::ClusterView;
use crate::live::Diagnosis;
use crate::liveness::is_stale;
use crate::nodes::{Control, LiveState, Node};
use crate::state::Shared;
use crate::store::StoredBatch;

/// Intervals an agent may be told to use: what it samples at (bakery-agent refuses `--interval`
/// outside these and clamps a SetInterval into them).
pub use crate::liveness::{MAX_INTERVAL_MS, MIN_INTERVAL_MS};

/// The `Query` gRPC service.
#[derive(Debug, Clone)]
pub struct QueryService {
    shared: Arc<Shared>,
    /// The live analysis behind the diagnosis RPCs; `None` answers them with `unavailable`.
    diagnosis: Option<Arc<Diagnosis>>,
}

impl QueryService {
    pub fn new(shared: Arc<Shared>) -> Self {
        QueryService { shared, diagnosis: None }
    }

    /// With the live analysis behind `Pods`, `Live`, `Alerts`, windows and reports.
    pub fn with_diagnosis(shared: Arc<Shared>, diagnosis: Arc<Diagnosis>) -> Self {
        QueryService { shared, diagnosis: Some(diagnosis) }
    }

    fn diagnosis(&self) -> Result<&Arc<Diagnosis>, Status> {
        self.diagnosis.as_ref().ok_or_else(|| Status::unavailable("this collector runs without the live analysis"))
    }

    fn node(&self, name: &str) -> Result<Arc<Node>, Status> {
        self.shared
            .registry
            .get(name)
            .ok_or_else(|| Status::not_found(format!("no node called {name:?} has connected")))
    }
}

#[tonic::async_trait]
impl Query for QueryService {
    async fn nodes(&self, request: Request<NodesRequest>) -> Result<Response<NodesResponse>, Status> {
        self.shared.auth.authorize(&request, Call::Nodes).await?;
        let now_ms = crate::now_ms();
        let mut nodes: Vec<NodeStatus> =
            self.shared.registry.all().iter().map(|node| node_status(node, now_ms)).collect();
        if let Some(diagnosis) = &self.diagnosis {
            let cluster = diagnosis.cluster();
            for node in &mut nodes {
                node.role = role_name(&cluster, &node.node_name);
            }
        }
        Ok(Response::new(NodesResponse { nodes }))
    }

    async fn set_interval(
        &self,
        request: Request<SetIntervalRequest>,
    ) -> Result<Response<SetIntervalResponse>, Status> {
        self.shared.auth.authorize(&request, Call::SetInterval).await?;
        let request = request.into_inner();
        if !(MIN_INTERVAL_MS..=MAX_INTERVAL_MS).contains(&request.interval_ms) {
            return Err(Status::invalid_argument(format!(
                "interval_ms {} is outside {MIN_INTERVAL_MS}..={MAX_INTERVAL_MS}: an agent samples at most every \
                 {MIN_INTERVAL_MS} ms and at least every hour",
                request.interval_ms
            )));
        }
        let node = self.node(&request.node_name)?;
        let mut live = node.live();
        live.requested_interval_ms = Some((request.interval_ms, request.reason.clone()));
        live.interval_ms = request.interval_ms;
        let delivered = live.connected.as_ref().is_some_and(|stream| {
            stream
                .control
                .try_send(Control::SetInterval { interval_ms: request.interval_ms, reason: request.reason.clone() })
                .is_ok()
        });
        tracing::info!(node = %node.name, interval_ms = request.interval_ms, reason = %request.reason, delivered, "sampling interval requested");
        Ok(Response::new(SetIntervalResponse { delivered }))
    }

    async fn history(&self, request: Request<HistoryRequest>) -> Result<Response<HistoryResponse>, Status> {
        self.shared.auth.authorize(&request, Call::History).await?;
        let request = request.into_inner();
        let node = self.node(&request.node_name)?;
        let (entries, live_pods) = {
            let live = node.live();
            let entries: Vec<_> = live.history.iter().filter(|e| e.received_ms >= request.since_ms).cloned().collect();
            (entries, live.pods.clone())
        };
        let mut batches = Vec::with_capacity(entries.len());
        let mut referenced = BTreeSet::new();
        for entry in entries {
            let samples = decode_samples(&entry.bytes)?;
            referenced.extend(samples.iter().flat_map(|s| s.pods.iter().map(|p| p.pod_ref)));
            batches.push(HistoryBatch { seq: entry.seq, received_ms: entry.received_ms, samples });
        }
        let pods =
            referenced.into_iter().filter_map(|id| live_pods.get(&id).map(|pod| pod_identity(id, pod))).collect();
        Ok(Response::new(HistoryResponse { batches, pods }))
    }

    async fn pods(&self, request: Request<PodsRequest>) -> Result<Response<PodsResponse>, Status> {
        self.shared.auth.authorize(&request, Call::Pods).await?;
        let diagnosis = self.diagnosis()?;
        let cluster = diagnosis.cluster();
        Ok(Response::new(PodsResponse {
            pods: pod_infos(&self.shared, &cluster),
            kubernetes: diagnosis.has_kubernetes(),
        }))
    }

    async fn live(&self, request: Request<LiveRequest>) -> Result<Response<LiveResponse>, Status> {
        self.shared.auth.authorize(&request, Call::Live).await?;
        let diagnosis = self.diagnosis()?;
        let live = diagnosis.live().await;
        let Some(evaluation) = &live.evaluation else { return Ok(Response::new(LiveResponse::default())) };
        let notes = live_notes(&evaluation.detection, &diagnosis.cluster().notes);
        let shares = evaluation
            .live
            .nodes
            .iter()
            .map(|node| {
                let signal = if evaluation.live.workload.is_some() {
                    bakery_diagnosis::Signal::PodTraffic
                } else {
                    bakery_diagnosis::Signal::Cpu
                };
                NodeShare {
                    node_name: node.node.clone(),
                    observed: node.share(signal),
                    expected: node.expected_share,
                    role: role_text(node.role),
                }
            })
            .collect();
        Ok(Response::new(LiveResponse {
            workload: evaluation.live.workload.as_ref().map(ToString::to_string).unwrap_or_default(),
            shares,
            verdicts: evaluation.verdicts.iter().map(wire_verdict).collect(),
            evaluated_ms: evaluation.timestamp_ms,
            notes,
        }))
    }

    async fn alerts(&self, request: Request<AlertsRequest>) -> Result<Response<AlertsResponse>, Status> {
        self.shared.auth.authorize(&request, Call::Alerts).await?;
        let live = self.diagnosis()?.live().await;
        let (verdicts, evaluated_ms) = live
            .evaluation
            .as_ref()
            .map(|e| (e.verdicts.iter().map(wire_verdict).collect(), e.timestamp_ms))
            .unwrap_or_default();
        Ok(Response::new(AlertsResponse { verdicts, evaluated_ms }))
    }

    async fn start_window(
        &self,
        request: Request<StartWindowRequest>,
    ) -> Result<Response<StartWindowResponse>, Status> {
        self.shared.auth.authorize(&request, Call::StartWindow).await?;
        let request = request.into_inner();
        let name = Some(request.name).filter(|n| !n.is_empty());
        let window = self
            .diagnosis()?
            .start_window(name, Some(request.workload.as_str()))
            .await
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        Ok(Response::new(StartWindowResponse {
            window: Some(WireWindow {
                id: window.id,
                name: window.name,
                workload: window.workload.map(|w| w.to_string()).unwrap_or_default(),
                automatic: window.automatic,
                start_ms: window.start_ms,
                end_ms: 0,
                verdicts: Vec::new(),
            }),
        }))
    }

    async fn stop_window(&self, request: Request<StopWindowRequest>) -> Result<Response<StopWindowResponse>, Status> {
        self.shared.auth.authorize(&request, Call::StopWindow).await?;
        let stored = self.diagnosis()?.stop_window().await.map_err(|e| Status::internal(e.to_string()))?;
        let stored = stored.ok_or_else(|| Status::failed_precondition("no window is open"))?;
        Ok(Response::new(StopWindowResponse { window: Some(wire_window(&stored)) }))
    }

    async fn windows(&self, request: Request<WindowsRequest>) -> Result<Response<WindowsResponse>, Status> {
        self.shared.auth.authorize(&request, Call::Windows).await?;
        let diagnosis = self.diagnosis()?.clone();
        let live = diagnosis.live().await;
        let mut windows = Vec::new();
        if let Some(open) = &live.window {
            windows.push(WireWindow {
                id: open.id.clone(),
                name: open.name.clone(),
                workload: open.workload.as_ref().map(ToString::to_string).unwrap_or_default(),
                automatic: open.automatic,
                start_ms: open.start_ms,
                end_ms: 0,
                verdicts: live.evaluation.iter().flat_map(|e| e.verdicts.iter().map(wire_verdict)).collect(),
            });
        }
        let stored = tokio::task::spawn_blocking(move || diagnosis.reports().summaries())
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::internal(e.to_string()))?;
        windows.extend(stored.iter().map(|summary| WireWindow {
            id: summary.id.clone(),
            name: summary.window.name.clone(),
            workload: summary.window.workload.as_ref().map(ToString::to_string).unwrap_or_default(),
            automatic: summary.window.automatic,
            start_ms: summary.window.start_ms,
            end_ms: summary.window.end_ms,
            verdicts: summary.verdicts.iter().map(wire_verdict).collect(),
        }));
        Ok(Response::new(WindowsResponse { windows }))
    }

    async fn report(&self, request: Request<ReportRequest>) -> Result<Response<ReportResponse>, Status> {
        self.shared.auth.authorize(&request, Call::Report).await?;
        let id = request.into_inner().id;
        let diagnosis = self.diagnosis()?.clone();
        let lookup = id.clone();
        let stored = tokio::task::spawn_blocking(move || {
            if lookup.is_empty() { diagnosis.reports().newest() } else { diagnosis.reports().get(&lookup) }
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(|e| Status::internal(e.to_string()))?;
        let stored = stored.ok_or_else(|| {
            if id.is_empty() {
                Status::not_found("no window report is stored yet")
            } else {
                Status::not_found(format!("no report {id:?}"))
            }
        })?;
        let json = stored.report.to_json().map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(ReportResponse {
            window: Some(wire_window(&stored)),
            json,
            svg: stored.report.to_svg(),
            text: stored.report.to_string(),
        }))
    }
}

/// The status `Query.Nodes` reports for one node at `now_ms`.
pub fn node_status(node: &Node, now_ms: i64) -> NodeStatus {
    let live = node.live();
    let latest = live.latest().and_then(|entry| decode_samples(&entry.bytes).ok()).and_then(|mut s| s.pop());
    let pods = latest.as_ref().map(|sample| referenced_pods(sample, &live)).unwrap_or_default();
    NodeStatus {
        node_name: node.name.clone(),
        connected: live.connected.is_some(),
        stale: is_stale(now_ms, live.last_seen_ms, live.interval_ms),
        committed_seq: node.committed_seq(),
        last_sample_ms: live.last_sample_ms,
        clock_skew_ms: live.clock_skew_ms().unwrap_or_default(),
        latest,
        interval_ms: live.interval_or_default(),
        boot_id: live.boot_id.clone(),
        agent_version: live.agent_version.clone(),
        last_seen_ms: live.last_seen_ms,
        duplicates_dropped: live.duplicates_dropped,
        invalid_seqs: live.invalid_seqs,
        pods,
        role: String::new(),
    }
}

fn referenced_pods(sample: &Sample, live: &LiveState) -> Vec<PodIdentity> {
    let ids: BTreeSet<u32> = sample.pods.iter().map(|p| p.pod_ref).collect();
    ids.into_iter().filter_map(|id| live.pods.get(&id).map(|pod| pod_identity(id, pod))).collect()
}

fn pod_identity(id: u32, pod: &crate::store::PodRecord) -> PodIdentity {
    PodIdentity {
        pod_ref: id,
        uid: pod.uid.clone(),
        qos_class: pod.qos_class.clone(),
        cgroup_path: pod.cgroup_path.clone(),
        host_network: pod.host_network,
    }
}

fn decode_samples(bytes: &[u8]) -> Result<Vec<Sample>, Status> {
    StoredBatch::decode(bytes)
        .map(|batch| batch.samples)
        .map_err(|e| Status::internal(format!("a stored batch does not decode: {e}")))
}

fn role_text(role: bakery_diagnosis::NodeRole) -> String {
    match role {
        bakery_diagnosis::NodeRole::Unknown => String::new(),
        known => known.to_string(),
    }
}

fn role_name(cluster: &ClusterView, node: &str) -> String {
    role_text(cluster.role(node))
}

/// Every pod the cluster knows, plus pods the agents report that the cluster does not (named by
/// UID), each with the collector's pod id where an agent reported it.
fn pod_infos(shared: &Shared, cluster: &ClusterView) -> Vec<PodInfo> {
    let mut refs = std::collections::HashMap::new();
    for node in shared.registry.all() {
        let live = node.live();
        for (id, pod) in &live.pods {
            refs.insert(pod.uid.clone(), (*id, node.name.clone(), pod.host_network));
        }
    }
    let mut pods: Vec<PodInfo> = cluster
        .pods_by_uid
        .values()
        .map(|meta| PodInfo {
            pod_ref: refs.get(&meta.uid).map_or(0, |r| r.0),
            uid: meta.uid.clone(),
            namespace: meta.namespace.clone(),
            name: meta.name.clone(),
            node_name: meta.node_name.clone(),
            ready: meta.ready,
            workload_kind: meta.workload.as_ref().map(|w| w.kind.clone()).unwrap_or_default(),
            workload_name: meta.workload.as_ref().map(|w| w.name.clone()).unwrap_or_default(),
            host_network: meta.host_network,
        })
        .collect();
    for (uid, (pod_ref, node_name, host_network)) in refs {
        if !cluster.pods_by_uid.contains_key(&uid) {
            pods.push(PodInfo {
                pod_ref,
                name: uid.clone(),
                uid,
                node_name,
                ready: true,
                host_network,
                ..PodInfo::default()
            });
        }
    }
    pods.sort_by(|a, b| (&a.namespace, &a.name, &a.uid).cmp(&(&b.namespace, &b.name, &b.uid)));
    pods
}

/// A diagnosis verdict on the wire.
pub fn wire_verdict(verdict: &bakery_diagnosis::Verdict) -> WireVerdict {
    WireVerdict {
        node_name: verdict.node.clone(),
        cause: verdict.cause.name().to_string(),
        evidence: verdict.evidence.iter().map(ToString::to_string).collect(),
        confidence: verdict.confidence,
        next_step: verdict.next_step.clone(),
        since_ms: verdict.since_ms,
        summary: verdict.summary.clone(),
        subject: verdict.subject.clone().unwrap_or_default(),
        remedy: verdict.remedy.action().to_string(),
        read: verdict.read.clone(),
    }
}

/// What the live view cannot judge or could not read, for people.
fn live_notes(analysis: &bakery_diagnosis::Analysis, cluster_notes: &[String]) -> Vec<String> {
    let mut notes: Vec<String> = analysis.unavailable.iter().map(|u| format!("unavailable: {u}")).collect();
    notes.extend(analysis.starved.iter().map(|s| {
        format!(
            "starved: {} on {} carries {:.1} % of the traffic (one endpoint's share: {:.1} %)",
            s.pod,
            s.node,
            s.share * 100.0,
            s.expected * 100.0
        )
    }));
    notes.extend(cluster_notes.iter().cloned());
    notes
}

fn wire_window(stored: &crate::store::window_reports::StoredReport) -> WireWindow {
    let window = &stored.report.window;
    WireWindow {
        id: stored.id.clone(),
        name: window.name.clone(),
        workload: window.workload.as_ref().map(ToString::to_string).unwrap_or_default(),
        automatic: window.automatic,
        start_ms: window.start_ms,
        end_ms: window.end_ms,
        verdicts: stored.report.verdicts.iter().map(|v| wire_verdict(&v.verdict)).collect(),
    }
}
