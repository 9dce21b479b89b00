//! The gRPC `Ingest.Stream` service: one task per agent stream. Converts wire messages to
//! store rows at this edge (pod refs rewritten to the collector's stable pod ids, sequence
//! numbers checked, implied gaps recorded), hands them to the committer in sequence order, and
//! turns committed sequence numbers into acks. See /tmp/stream-contract.md (issue 3) for the
//! promise this keeps: acknowledged means durable; never acknowledged means sent again.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bakery_proto::v1::agent_message::Kind as AgentKind;
use bakery_proto::v1::collector_message::Kind as CollectorKind;
use bakery_proto::v1::ingest_server::Ingest;
use bakery_proto::v1::{Ack, AgentMessage, Batch, CollectorMessage, Gap, Hello, PodIdentity, SetInterval, Welcome};
use prost::Message;
use prost::bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::{Authenticator, Call, Principal};
use crate::commit::QueueItem;
use crate::limits::TokenBucket;
use crate::nodes::{ConnectedStream, Control, HistoryEntry, Node, Registry};
use crate::store::{BatchRow, GapRow, PodRecord, PodRow, StoredBatch};

/// The largest message the collector decodes (issue 3 limits); larger ones end that stream
/// with `RESOURCE_EXHAUSTED`.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// A stream must say hello within this time.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(30);
/// A send to an agent that does not read its responses gives up after this.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// On shutdown, how long a stream waits for its last batches to be committed before it closes.
pub const FINAL_ACK_TIMEOUT: Duration = Duration::from_secs(8);
/// Gap reasons are cut to this many bytes.
pub const MAX_REASON_BYTES: usize = 1024;

/// Reason recorded for a jump forward that no Gap message explained.
pub const REASON_MISSING: &str = "missing, not declared by the agent";
/// Reason recorded when a reconnecting agent's spool starts after the committed sequence.
pub const REASON_LOST_BEFORE_SPOOLING: &str = "lost before spooling (agent restart without disk spool?)";

/// State shared by the ingest and query services.
#[derive(Debug)]
pub struct Shared {
    pub registry: Registry,
    pub auth: Authenticator,
    /// The committer's queue; `None` once the collector is shutting down.
    pub queue: std::sync::Mutex<Option<mpsc::Sender<QueueItem>>>,
    /// Turns true when the collector shuts down.
    pub shutdown: watch::Receiver<bool>,
    generation: AtomicU64,
}

impl Shared {
    pub fn new(
        registry: Registry,
        auth: Authenticator,
        queue: mpsc::Sender<QueueItem>,
        shutdown: watch::Receiver<bool>,
    ) -> Shared {
        Shared { registry, auth, queue: std::sync::Mutex::new(Some(queue)), shutdown, generation: AtomicU64::new(1) }
    }

    fn queue(&self) -> Option<mpsc::Sender<QueueItem>> {
        self.queue.lock().ok()?.clone()
    }

    /// Stops handing out the queue; streams drop their copies as they finish.
    pub fn close_queue(&self) {
        if let Ok(mut queue) = self.queue.lock() {
            queue.take();
        }
    }
}

/// The `Ingest` gRPC service.
#[derive(Debug, Clone)]
pub struct IngestService {
    shared: Arc<Shared>,
}

impl IngestService {
    pub fn new(shared: Arc<Shared>) -> Self {
        IngestService { shared }
    }
}

#[tonic::async_trait]
impl Ingest for IngestService {
    type StreamStream = ReceiverStream<Result<CollectorMessage, Status>>;

    async fn stream(&self, request: Request<Streaming<AgentMessage>>) -> Result<Response<Self::StreamStream>, Status> {
        let peer = request.remote_addr();
        // Who streams: the node they may write is checked against the Hello (`run`).
        let principal = self.shared.auth.authorize(&request, Call::IngestStream).await?;
        let queue = self.shared.queue().ok_or_else(shutting_down)?;
        let (out, responses) = mpsc::channel(16);
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let session = Session::new(shared, out.clone(), peer, principal);
            if let Err(status) = session.run(request.into_inner(), queue).await {
                // The agent may be gone already; nothing else to tell.
                let _ = tokio::time::timeout(SEND_TIMEOUT, out.send(Err(status))).await;
            }
        });
        Ok(Response::new(ReceiverStream::new(responses)))
    }
}

fn shutting_down() -> Status {
    Status::unavailable("the collector is shutting down; reconnect with backoff")
}

/// One agent stream.
struct Session {
    shared: Arc<Shared>,
    out: mpsc::Sender<Result<CollectorMessage, Status>>,
    peer: Option<SocketAddr>,
    /// Who opened the stream: it may write only the node its credential proves.
    principal: Principal,
    generation: u64,
    shutdown: watch::Receiver<bool>,
}

/// What a stream has seen so far.
#[derive(Debug, Default)]
struct StreamState {
    /// The highest sequence number sent on this stream (0 before the first).
    last_seq: u64,
    /// The highest sequence number this stream handed to the committer.
    last_queued: u64,
    oldest_spooled_seq: u64,
    /// Stream-local pod ref -> collector pod id.
    pod_refs: HashMap<u32, u32>,
    last_acked: u64,
}

/// Why the reading loop stopped without an error.
enum Stop {
    /// The agent closed its side of the stream.
    AgentDone,
    /// The collector is shutting down.
    Shutdown,
    /// Invalid input or a broken stream: the stream ends with this status, after the final
    /// ack of what it delivered before (so the agent does not resend valid batches).
    Invalid(Status),
}

impl Session {
    fn new(
        shared: Arc<Shared>,
        out: mpsc::Sender<Result<CollectorMessage, Status>>,
        peer: Option<SocketAddr>,
        principal: Principal,
    ) -> Self {
        let generation = shared.generation.fetch_add(1, Ordering::Relaxed);
        let shutdown = shared.shutdown.clone();
        Session { shared, out, peer, principal, generation, shutdown }
    }

    async fn send(&self, kind: CollectorKind) -> Result<(), Status> {
        match tokio::time::timeout(SEND_TIMEOUT, self.out.send(Ok(CollectorMessage { kind: Some(kind) }))).await {
            Ok(Ok(())) => Ok(()),
            // The response side is gone: the agent disconnected.
            Ok(Err(_)) => Err(Status::cancelled("the agent went away")),
            Err(_) => Err(Status::deadline_exceeded("the agent does not read the collector's messages")),
        }
    }

    async fn run(self, mut inbound: Streaming<AgentMessage>, queue: mpsc::Sender<QueueItem>) -> Result<(), Status> {
        let mut shutdown = self.shutdown.clone();
        let hello = tokio::select! {
            first = tokio::time::timeout(HELLO_TIMEOUT, inbound.next()) => match first {
                Err(_) => return Err(Status::deadline_exceeded("no Hello within 30 s of opening the stream")),
                Ok(None) => return Ok(()),
                Ok(Some(Err(status))) => return Err(inbound_error(status)),
                Ok(Some(Ok(AgentMessage { kind: Some(AgentKind::Hello(hello)) }))) => hello,
                Ok(Some(Ok(_))) => return Err(Status::invalid_argument("the first message on a stream must be a Hello")),
            },
            _ = shut_down(&mut shutdown) => return Err(shutting_down()),
        };
        validate_hello(&hello)?;
        // The Hello check: a stream writes only the node its credential proves (before the node
        // is even created, so an impostor leaves no trace in the registry).
        self.shared.auth.check_stream_node(&self.principal, &hello.node_name, self.peer)?;
        let node = self.shared.registry.get_or_create(&hello.node_name);
        let (replaced_tx, mut replaced) = watch::channel(false);
        let (control_tx, mut control) = mpsc::channel(4);
        let pending_interval = self.connect(&node, &hello, replaced_tx, control_tx)?;
        let _disconnect = DisconnectOnDrop { node: node.clone(), generation: self.generation };
        node.ingest.lock().await.active_stream = self.generation;
        // Record the hello (boot id, version, interval) even before any batch arrives; skipped
        // when the queue is full, the next batch records it anyway.
        let _ = queue.try_send(QueueItem::touch(node.clone()));

        let committed = node.committed_seq();
        let mut state = StreamState {
            oldest_spooled_seq: hello.oldest_spooled_seq,
            last_acked: committed,
            ..StreamState::default()
        };
        tracing::info!(
            node = %node.name,
            stream_id = %hello.stream_id,
            peer = %self.peer.map_or_else(|| "unknown".into(), |p| p.to_string()),
            agent_version = %hello.agent_version,
            interval_ms = hello.interval_ms,
            oldest_spooled_seq = hello.oldest_spooled_seq,
            committed_seq = committed,
            credential = %self.principal.credential.name(),
            "agent connected"
        );
        self.send(CollectorKind::Welcome(Welcome {
            committed_seq: committed,
            collector_version: env!("CARGO_PKG_VERSION").to_string(),
        }))
        .await?;
        let mut interval_ms = node.live().interval_or_default();
        if let Some((requested, reason)) = pending_interval {
            interval_ms = requested;
            self.send(CollectorKind::SetInterval(SetInterval { interval_ms: requested, reason })).await?;
        }

        let mut committed_rx = node.subscribe_committed();
        let mut bucket = TokenBucket::for_interval(interval_ms, Instant::now());
        let mut queue = Some(queue);
        let mut wait_for_token: Option<tokio::time::Instant> = None;
        let stop = loop {
            tokio::select! {
                biased;
                _ = replaced.changed() => return Err(replaced_status()),
                _ = shut_down(&mut shutdown) => break Stop::Shutdown,
                Ok(()) = committed_rx.changed() => {
                    let committed = *committed_rx.borrow_and_update();
                    self.ack(&mut state, committed).await?;
                }
                Some(control) = control.recv() => match control {
                    Control::SetInterval { interval_ms, reason } => {
                        bucket.set_interval(interval_ms, Instant::now());
                        self.send(CollectorKind::SetInterval(SetInterval { interval_ms, reason })).await?;
                    }
                },
                // The token for the next message: reading resumes only once it is taken.
                _ = sleep_until(wait_for_token), if wait_for_token.is_some() => {
                    wait_for_token = bucket.try_take(Instant::now()).err().map(|wait| tokio::time::Instant::now() + wait);
                }
                message = inbound.next(), if wait_for_token.is_none() => {
                    let message = match message {
                        None => break Stop::AgentDone,
                        Some(Err(status)) => break Stop::Invalid(inbound_error(status)),
                        Some(Ok(message)) => message,
                    };
                    let Some(sender) = queue.as_ref() else { break Stop::Shutdown };
                    match self.handle(&node, &mut state, message, sender, &mut replaced).await {
                        Ok(Handled::Queued | Handled::Duplicate) => {}
                        Ok(Handled::Stopped) => break Stop::Shutdown,
                        Err(status) if status.code() == tonic::Code::Aborted => return Err(status),
                        Err(status) => break Stop::Invalid(status),
                    }
                    if let Err(wait) = bucket.try_take(Instant::now()) {
                        wait_for_token = Some(tokio::time::Instant::now() + wait);
                    }
                }
            }
        };
        // Let the committer see the queue close once every stream has stopped reading.
        queue.take();
        self.final_ack(&node, &mut state, &mut committed_rx, &mut replaced).await?;
        match stop {
            Stop::AgentDone => Ok(()),
            Stop::Shutdown => Err(shutting_down()),
            Stop::Invalid(status) => {
                let invalid_input =
                    matches!(status.code(), tonic::Code::InvalidArgument | tonic::Code::ResourceExhausted);
                if invalid_input {
                    tracing::warn!(node = %node.name, code = ?status.code(), error = %status.message(), "closing a stream on invalid input");
                } else {
                    tracing::info!(node = %node.name, code = ?status.code(), error = %status.message(), "stream ended");
                }
                Err(status)
            }
        }
    }

    /// Registers this stream as the node's connected one, telling an older stream to close.
    /// Returns an interval the collector was asked to set and the agent does not use yet.
    fn connect(
        &self,
        node: &Arc<Node>,
        hello: &Hello,
        replaced: watch::Sender<bool>,
        control: mpsc::Sender<Control>,
    ) -> Result<Option<(u32, String)>, Status> {
        let mut live = node.live();
        // The replacement check, under the lock that guards the connected stream: only a
        // principal that may write this node takes over its live stream.
        if live.connected.is_some() {
            self.shared.auth.check_replacement(&self.principal, &node.name, self.peer)?;
        }
        let previous = live.connected.replace(ConnectedStream {
            generation: self.generation,
            stream_id: hello.stream_id.clone(),
            replaced,
            control,
        });
        if let Some(previous) = previous {
            tracing::info!(
                node = %node.name,
                old_stream_id = %previous.stream_id,
                new_stream_id = %hello.stream_id,
                "a newer stream replaces the node's connected stream"
            );
            let _ = previous.replaced.send(true);
        }
        live.last_seen_ms = crate::now_ms();
        live.interval_ms = hello.interval_ms;
        live.boot_id.clone_from(&hello.boot_id);
        live.agent_version.clone_from(&hello.agent_version);
        let pending = live.requested_interval_ms.clone().filter(|(requested, _)| *requested != hello.interval_ms);
        if let Some((requested, _)) = &pending {
            live.interval_ms = *requested;
        }
        Ok(pending)
    }

    async fn ack(&self, state: &mut StreamState, committed: u64) -> Result<(), Status> {
        if committed > state.last_acked {
            state.last_acked = committed;
            self.send(CollectorKind::Ack(Ack { committed_seq: committed })).await?;
        }
        Ok(())
    }

    /// Waits (bounded) until what this stream queued is committed, then acknowledges it.
    async fn final_ack(
        &self,
        node: &Node,
        state: &mut StreamState,
        committed_rx: &mut watch::Receiver<u64>,
        replaced: &mut watch::Receiver<bool>,
    ) -> Result<(), Status> {
        let target = state.last_queued;
        let reached = tokio::select! {
            reached = tokio::time::timeout(FINAL_ACK_TIMEOUT, async { committed_rx.wait_for(|c| *c >= target).await.is_ok() }) => reached.unwrap_or(false),
            _ = replaced.changed() => return Err(replaced_status()),
        };
        if !reached {
            tracing::warn!(node = %node.name, target, committed = node.committed_seq(), "closing a stream before its last batches were committed; the agent will send them again");
        }
        self.ack(state, node.committed_seq()).await
    }

    async fn handle(
        &self,
        node: &Arc<Node>,
        state: &mut StreamState,
        message: AgentMessage,
        queue: &mpsc::Sender<QueueItem>,
        replaced: &mut watch::Receiver<bool>,
    ) -> Result<Handled, Status> {
        let received_ms = crate::now_ms();
        let incoming = match message.kind {
            Some(AgentKind::Batch(batch)) => Incoming::Batch(batch),
            Some(AgentKind::Gap(gap)) => Incoming::Gap(gap),
            Some(AgentKind::Hello(_)) => return Err(Status::invalid_argument("a second Hello on the same stream")),
            None => return Err(Status::invalid_argument("an AgentMessage without a batch, gap or hello")),
        };
        let (first_seq, last_seq) = incoming.seq_range()?;
        if first_seq <= state.last_seq {
            node.live().invalid_seqs += 1;
            return Err(Status::invalid_argument(format!(
                "sequence number {first_seq} after {} on the same stream: sequence numbers must increase",
                state.last_seq
            )));
        }
        let mut ingest = node.ingest.lock().await;
        if ingest.active_stream != self.generation {
            return Err(replaced_status());
        }
        let first_message = state.last_seq == 0;
        state.last_seq = last_seq;
        let accepted = ingest.accepted_seq;

        // Pods: number new identities (applied only once the item is queued).
        let mut next_pod_id = ingest.next_pod_id;
        let mut new_pods: Vec<PodRow> = Vec::new();
        let mut refs: Vec<(u32, u32)> = Vec::new();
        let declared: &[PodIdentity] = match &incoming {
            Incoming::Batch(batch) => &batch.new_pods,
            Incoming::Gap(_) => &[],
        };
        for identity in declared {
            let record = PodRecord {
                uid: identity.uid.clone(),
                qos_class: identity.qos_class.clone(),
                cgroup_path: identity.cgroup_path.clone(),
                host_network: identity.host_network,
            };
            let pod_id = match ingest.pods_by_uid.get(&identity.uid) {
                Some((pod_id, known)) if *known == record => *pod_id,
                // Same pod, changed identity (for example a new cgroup path): keep its id,
                // store the new identity.
                Some((pod_id, _)) => {
                    new_pods.push(PodRow { node_id: node.id, pod_id: *pod_id, pod: record });
                    *pod_id
                }
                None => match new_pods.iter().find(|p| p.pod.uid == identity.uid) {
                    Some(row) => row.pod_id,
                    None => {
                        let pod_id = next_pod_id;
                        next_pod_id += 1;
                        new_pods.push(PodRow { node_id: node.id, pod_id, pod: record });
                        pod_id
                    }
                },
            };
            refs.push((identity.pod_ref, pod_id));
        }
        let lookup = |pod_ref: u32| {
            refs.iter()
                .rev()
                .find(|(r, _)| *r == pod_ref)
                .map(|(_, id)| *id)
                .or_else(|| state.pod_refs.get(&pod_ref).copied())
        };

        let mut item =
            QueueItem { node: node.clone(), pods: Vec::new(), gaps: Vec::new(), batch: None, handled_through: 0 };
        let mut latest_sample_ms = None;
        let mut history = None;
        let duplicate = last_seq <= accepted;
        match incoming {
            Incoming::Batch(mut batch) => {
                // Every reference must resolve, duplicate or not: an undeclared ref is a broken agent.
                for sample in &mut batch.samples {
                    for pod in &mut sample.pods {
                        pod.pod_ref = lookup(pod.pod_ref).ok_or_else(|| {
                            Status::invalid_argument(format!(
                                "batch {}: pod_ref {} was never declared on this stream (declare it in new_pods first)",
                                batch.seq, pod.pod_ref
                            ))
                        })?;
                    }
                }
                if !duplicate {
                    item.gaps = implied_gaps(accepted, batch.seq, first_message, state.oldest_spooled_seq)
                        .into_iter()
                        .map(|(first_seq, last_seq, reason)| GapRow {
                            node_id: node.id,
                            first_seq,
                            last_seq,
                            recorded_ms: received_ms,
                            reason: reason.to_string(),
                        })
                        .collect();
                    latest_sample_ms = batch.samples.iter().map(|s| s.timestamp_ms).next_back();
                    let sample_count = batch.samples.len() as u32;
                    let bytes = Bytes::from(StoredBatch { samples: batch.samples }.encode_to_vec());
                    history = Some(HistoryEntry { seq: batch.seq, received_ms, bytes: bytes.clone() });
                    item.batch = Some(BatchRow { node_id: node.id, seq: batch.seq, received_ms, sample_count, bytes });
                    item.handled_through = batch.seq;
                }
            }
            Incoming::Gap(gap) => {
                if !duplicate {
                    item.gaps = implied_gaps(accepted, gap.first_seq, first_message, state.oldest_spooled_seq)
                        .into_iter()
                        .map(|(first_seq, last_seq, reason)| GapRow {
                            node_id: node.id,
                            first_seq,
                            last_seq,
                            recorded_ms: received_ms,
                            reason: reason.to_string(),
                        })
                        .collect();
                    item.gaps.push(GapRow {
                        node_id: node.id,
                        first_seq: gap.first_seq.max(accepted + 1),
                        last_seq: gap.last_seq,
                        recorded_ms: received_ms,
                        reason: truncate_reason(gap.reason),
                    });
                    item.handled_through = gap.last_seq;
                }
            }
        }
        item.pods = new_pods;

        if duplicate && item.pods.is_empty() {
            drop(ingest);
            self.apply_refs(state, &refs);
            {
                let mut live = node.live();
                live.duplicates_dropped += 1;
                live.last_seen_ms = received_ms;
            }
            self.ack_duplicate(node, state, last_seq).await?;
            return Ok(Handled::Duplicate);
        }

        // Wait for room in the queue (backpressure), but let a replacement or a shutdown
        // interrupt: nothing is queued or changed then, and the agent sends it again later.
        let mut shutdown = self.shutdown.clone();
        let permit = tokio::select! {
            biased;
            _ = replaced.changed() => return Err(replaced_status()),
            _ = shut_down(&mut shutdown) => return Ok(Handled::Stopped),
            permit = queue.reserve() => permit.map_err(|_| shutting_down())?,
        };
        for row in &item.pods {
            ingest.pods_by_uid.insert(row.pod.uid.clone(), (row.pod_id, row.pod.clone()));
        }
        ingest.next_pod_id = next_pod_id;
        if !duplicate {
            ingest.accepted_seq = last_seq;
            state.last_queued = last_seq;
        }
        let pods_for_query: Vec<(u32, PodRecord)> = item.pods.iter().map(|r| (r.pod_id, r.pod.clone())).collect();
        permit.send(item);
        drop(ingest);
        self.apply_refs(state, &refs);

        {
            let mut live = node.live();
            live.last_seen_ms = received_ms;
            for (pod_id, pod) in pods_for_query {
                live.pods.insert(pod_id, pod);
            }
            if duplicate {
                live.duplicates_dropped += 1;
            }
            if let Some(sample_ms) = latest_sample_ms {
                live.last_sample_ms = sample_ms;
                live.skew.observe(received_ms, sample_ms);
            }
            if let Some(entry) = history {
                live.push_history(entry, received_ms);
            }
        }
        if duplicate {
            self.ack_duplicate(node, state, last_seq).await?;
            return Ok(Handled::Duplicate);
        }
        Ok(Handled::Queued)
    }

    /// "The collector still acks" a duplicate (contract 6): a resend of something already
    /// durable learns so at once; a resend of something still being committed is acknowledged
    /// when that commit lands.
    async fn ack_duplicate(&self, node: &Node, state: &mut StreamState, last_seq: u64) -> Result<(), Status> {
        let committed = node.committed_seq();
        if last_seq <= committed {
            state.last_acked = state.last_acked.max(committed);
            self.send(CollectorKind::Ack(Ack { committed_seq: state.last_acked })).await?;
        }
        Ok(())
    }

    fn apply_refs(&self, state: &mut StreamState, refs: &[(u32, u32)]) {
        for (pod_ref, pod_id) in refs {
            state.pod_refs.insert(*pod_ref, *pod_id);
        }
    }
}

enum Handled {
    Queued,
    Duplicate,
    /// The collector began shutting down while waiting for queue room; nothing was queued.
    Stopped,
}

enum Incoming {
    Batch(Batch),
    Gap(Gap),
}

impl Incoming {
    /// The inclusive range of sequence numbers the message handles.
    fn seq_range(&self) -> Result<(u64, u64), Status> {
        match self {
            Incoming::Batch(batch) if batch.seq == 0 => {
                Err(Status::invalid_argument("batch sequence numbers start at 1"))
            }
            Incoming::Batch(batch) => Ok((batch.seq, batch.seq)),
            Incoming::Gap(gap) if gap.first_seq == 0 || gap.last_seq < gap.first_seq => Err(Status::invalid_argument(
                format!("gap {}..={} is not a range of sequence numbers >= 1", gap.first_seq, gap.last_seq),
            )),
            Incoming::Gap(gap) => Ok((gap.first_seq, gap.last_seq)),
        }
    }
}

/// Clears the node's connected stream when this stream ends (unless a newer one took over).
struct DisconnectOnDrop {
    node: Arc<Node>,
    generation: u64,
}

impl Drop for DisconnectOnDrop {
    fn drop(&mut self) {
        let mut live = self.node.live();
        if live.connected.as_ref().is_some_and(|c| c.generation == self.generation) {
            live.connected = None;
            tracing::info!(node = %self.node.name, "agent disconnected");
        }
    }
}

/// Gaps implied when a message starting at `next_seq` arrives while everything through
/// `accepted` is handled: none when it follows on directly. On the first message of a stream
/// whose agent said its spool starts at `oldest_spooled` (0 = empty), the seqs before the spool
/// were lost before spooling; any other hole was never declared by the agent.
pub fn implied_gaps(
    accepted: u64,
    next_seq: u64,
    first_message: bool,
    oldest_spooled: u64,
) -> Vec<(u64, u64, &'static str)> {
    let mut gaps = Vec::new();
    let mut from = accepted + 1;
    if next_seq <= from {
        return gaps;
    }
    if first_message && oldest_spooled > from {
        let through = oldest_spooled.min(next_seq) - 1;
        gaps.push((from, through, REASON_LOST_BEFORE_SPOOLING));
        from = through + 1;
    }
    if next_seq > from {
        gaps.push((from, next_seq - 1, REASON_MISSING));
    }
    gaps
}

fn truncate_reason(mut reason: String) -> String {
    if reason.len() > MAX_REASON_BYTES {
        let mut end = MAX_REASON_BYTES;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
    }
    if reason.is_empty() { "no reason given by the agent".to_string() } else { reason }
}

fn validate_hello(hello: &Hello) -> Result<(), Status> {
    let name = &hello.node_name;
    // Kubernetes node names are DNS subdomains: at most 253 characters.
    if name.is_empty() || name.len() > 253 || name.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(Status::invalid_argument(format!(
            "Hello.node_name {name:?} is not a node name (1 to 253 characters, no spaces or control characters)"
        )));
    }
    Ok(())
}

fn replaced_status() -> Status {
    Status::aborted("a newer stream for this node replaced this one")
}

/// The status to end a stream with when reading from it failed. tonic reports a message over
/// the decoding limit as OUT_OF_RANGE; the contract promises RESOURCE_EXHAUSTED for it.
fn inbound_error(status: Status) -> Status {
    match status.code() {
        tonic::Code::OutOfRange => Status::resource_exhausted(format!(
            "message larger than the collector's limit of {MAX_MESSAGE_BYTES} bytes: {}",
            status.message()
        )),
        tonic::Code::Internal if status.message().contains("decode") => {
            Status::invalid_argument(format!("a message does not decode as an AgentMessage: {}", status.message()))
        }
        _ => status,
    }
}

/// Resolves once the collector is shutting down.
pub async fn shut_down(shutdown: &mut watch::Receiver<bool>) {
    // An error means the sender is gone, which only happens when the collector is gone.
    let _ = shutdown.wait_for(|down| *down).await;
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_implied_by_a_jump() {
        // follows on directly, or a duplicate: nothing
        assert!(implied_gaps(10, 11, false, 0).is_empty());
        assert!(implied_gaps(10, 5, false, 0).is_empty());
        // a jump on an established stream
        assert_eq!(implied_gaps(10, 15, false, 0), vec![(11, 14, REASON_MISSING)]);
        // first message after Welcome, the agent's spool starts later: lost before spooling
        assert_eq!(implied_gaps(10, 20, true, 20), vec![(11, 19, REASON_LOST_BEFORE_SPOOLING)]);
        // ... and a further hole between the spool start and the message
        assert_eq!(
            implied_gaps(10, 25, true, 20),
            vec![(11, 19, REASON_LOST_BEFORE_SPOOLING), (20, 24, REASON_MISSING)]
        );
        // the spool covers everything after committed: only what the agent skipped is missing
        assert_eq!(implied_gaps(10, 15, true, 11), vec![(11, 14, REASON_MISSING)]);
        assert_eq!(implied_gaps(10, 15, true, 0), vec![(11, 14, REASON_MISSING)]);
        // the spool claims to start beyond the first message: only up to the message
        assert_eq!(implied_gaps(10, 15, true, 30), vec![(11, 14, REASON_LOST_BEFORE_SPOOLING)]);
    }

    #[test]
    fn reasons_are_bounded_and_never_empty() {
        assert_eq!(truncate_reason(String::new()), "no reason given by the agent");
        assert_eq!(truncate_reason("x".repeat(5000)).len(), MAX_REASON_BYTES);
        // a multi-byte character across the limit is not split
        let reason = format!("{}é", "x".repeat(MAX_REASON_BYTES - 1));
        assert_eq!(truncate_reason(reason).len(), MAX_REASON_BYTES - 1);
    }

    #[test]
    fn hello_node_names() {
        let hello = |name: &str| Hello { node_name: name.into(), ..Hello::default() };
        assert!(validate_hello(&hello("master-02")).is_ok());
        assert!(validate_hello(&hello("")).is_err());
        assert!(validate_hello(&hello("a b")).is_err());
        assert!(validate_hello(&hello(&"a".repeat(254))).is_err());
    }
}
