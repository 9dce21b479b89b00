//! The gRPC `Query` service: every node's status and latest sample, a node's recent history,
//! and telling a node's agent to sample at another interval. Reads the in-memory node state
//! only, never the store (the committer owns it).

use std::collections::BTreeSet;
use std::sync::Arc;

use bakery_proto::v1::query_server::Query;
use bakery_proto::v1::{
    HistoryBatch, HistoryRequest, HistoryResponse, NodeStatus, NodesRequest, NodesResponse, PodIdentity, Sample,
    SetIntervalRequest, SetIntervalResponse,
};
use prost::Message;
use tonic::{Request, Response, Status};

use crate::ingest::Shared;
use crate::liveness::is_stale;
use crate::nodes::{Control, LiveState, Node};
use crate::store::StoredBatch;

/// Intervals an agent may be told to use.
pub const MIN_INTERVAL_MS: u32 = 10;
pub const MAX_INTERVAL_MS: u32 = 3_600_000;

/// The `Query` gRPC service.
#[derive(Debug, Clone)]
pub struct QueryService {
    shared: Arc<Shared>,
}

impl QueryService {
    pub fn new(shared: Arc<Shared>) -> Self {
        QueryService { shared }
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
        self.shared.auth.check(request.metadata(), request.remote_addr(), "Query.Nodes")?;
        let now_ms = crate::now_ms();
        let nodes = self.shared.registry.all().iter().map(|node| node_status(node, now_ms)).collect();
        Ok(Response::new(NodesResponse { nodes }))
    }

    async fn set_interval(
        &self,
        request: Request<SetIntervalRequest>,
    ) -> Result<Response<SetIntervalResponse>, Status> {
        self.shared.auth.check(request.metadata(), request.remote_addr(), "Query.SetInterval")?;
        let request = request.into_inner();
        if !(MIN_INTERVAL_MS..=MAX_INTERVAL_MS).contains(&request.interval_ms) {
            return Err(Status::invalid_argument(format!(
                "interval_ms {} is outside {MIN_INTERVAL_MS}..={MAX_INTERVAL_MS}",
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
        self.shared.auth.check(request.metadata(), request.remote_addr(), "Query.History")?;
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
