//! One agent stream from its Hello to its end: the Hello checked (its node name, its size, the
//! credential's node) and its node admitted within `--max-nodes`, the Welcome (with what a
//! Replay may hold), acks as commits land, the flood limit for live messages and the replay
//! budget for replayed ones, a large message ending the stream once acknowledged, and the final
//! ack on the way out.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bakery_proto::codec::Received;
use bakery_proto::v1::agent_message::Kind as AgentKind;
use bakery_proto::v1::collector_message::Kind as CollectorKind;
use bakery_proto::v1::{Ack, AgentMessage, CollectorMessage, Hello, ReplayLimits, SetInterval, Welcome};
use tokio::sync::{mpsc, watch};
use tokio_stream::StreamExt;
use tonic::{Status, Streaming};

use super::handle::Handled;
use super::lanes::{self, Lanes};
use super::refusals::IngestRefusal;
use super::{
    FINAL_ACK_TIMEOUT, HELLO_TIMEOUT, MAX_HELLO_BYTES, MAX_MESSAGE_BYTES, SEND_TIMEOUT, bounds, replaced_status,
    shut_down, shutting_down,
};
use crate::auth::Principal;
use crate::commit::QueueItem;
use crate::limits::StreamMeter;
use crate::nodes::{ConnectedStream, Control, Node};
use crate::state::Shared;

/// One agent stream.
pub(super) struct Session {
    pub(super) shared: Arc<Shared>,
    pub(super) out: mpsc::Sender<Result<CollectorMessage, Status>>,
    pub(super) peer: Option<SocketAddr>,
    /// Who opened the stream: it may write only the node its credential proves.
    pub(super) principal: Principal,
    pub(super) generation: u64,
    pub(super) shutdown: watch::Receiver<bool>,
}

/// What a stream has seen so far.
#[derive(Debug, Default)]
pub(super) struct StreamState {
    /// Where its live and replayed messages stand.
    pub(super) lanes: Lanes,
    /// The highest sequence number this stream handed to the committer.
    pub(super) last_queued: u64,
    pub(super) oldest_spooled_seq: u64,
    /// Stream-local pod ref -> collector pod id (looked up for every pod of every sample, so
    /// with foldhash rather than the DoS-resistant default: the agent's refs are bounded by
    /// `--max-pods-per-node` and a peer gains nothing from colliding its own stream's map).
    pub(super) pod_refs: foldhash::HashMap<u32, u32>,
    pub(super) last_acked: u64,
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
    pub(super) fn new(
        shared: Arc<Shared>,
        out: mpsc::Sender<Result<CollectorMessage, Status>>,
        peer: Option<SocketAddr>,
        principal: Principal,
    ) -> Self {
        let generation = shared.generation.fetch_add(1, Ordering::Relaxed);
        let shutdown = shared.shutdown.clone();
        Session { shared, out, peer, principal, generation, shutdown }
    }

    pub(super) async fn send(&self, kind: CollectorKind) -> Result<(), Status> {
        match tokio::time::timeout(SEND_TIMEOUT, self.out.send(Ok(CollectorMessage { kind: Some(kind) }))).await {
            Ok(Ok(())) => Ok(()),
            // The response side is gone: the agent disconnected.
            Ok(Err(_)) => Err(Status::cancelled("the agent went away")),
            Err(_) => Err(Status::deadline_exceeded("the agent does not read the collector's messages")),
        }
    }

    /// Counts and logs a refusal (or a cut) of `cause` on `node`; returns `status` to end with.
    pub(super) fn refuse(&self, cause: IngestRefusal, node: &str, status: Status) -> Status {
        self.shared.refusals.record(cause, 1, self.peer, node, status.message());
        status
    }

    /// Holds the stream from its Hello to its end: the Hello read and the node admitted
    /// ([`Session::open`]), then messages read, each only once its meter allows it (the flood
    /// limit, or the replay budget after a Replay), and handed to [`Session::handle`], while
    /// acks follow the commits and the collector's interval changes reach the agent; at the end
    /// the final ack ([`Session::final_ack`]).
    pub(super) async fn run(
        self,
        mut inbound: Streaming<Received<AgentMessage>>,
        queue: mpsc::Sender<QueueItem>,
    ) -> Result<(), Status> {
        let Some(hello) = self.receive_hello(&mut inbound).await? else { return Ok(()) };
        let Opened { node, mut state, mut replaced, mut control, interval_ms, _disconnect } =
            self.open(&hello, &queue).await?;
        let mut shutdown = self.shutdown.clone();
        let mut committed_rx = node.subscribe_committed();
        let mut meter = StreamMeter::new(interval_ms, Instant::now());
        // A stream's read buffer keeps the capacity of the largest message it read, for as
        // long as the stream lives; a message over `--max-message-bytes` ends its stream
        // once handled and acknowledged, so that buffer is freed (the agent reconnects).
        let stream_memory_bytes = self.shared.limits.max_message_bytes;
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
                        meter.set_interval(interval_ms, Instant::now());
                        self.send(CollectorKind::SetInterval(SetInterval { interval_ms, reason })).await?;
                    }
                },
                // The meter's wait: reading resumes once the flood limit's token is taken, or the
                // replay budget is out of debt.
                _ = sleep_until(wait_for_token), if wait_for_token.is_some() => {
                    wait_for_token = meter.resume(Instant::now()).map(|wait| tokio::time::Instant::now() + wait);
                }
                message = inbound.next(), if wait_for_token.is_none() => {
                    let message = match message {
                        None => break Stop::AgentDone,
                        Some(Err(status)) => break Stop::Invalid(self.inbound_error(&node.name, status)),
                        Some(Ok(message)) => message,
                    };
                    let Some(sender) = queue.as_ref() else { break Stop::Shutdown };
                    let message_bytes = message.bytes.len();
                    let metered = lanes::metered(&message.message, message_bytes);
                    match self.handle(&node, &mut state, message, sender, &mut replaced).await {
                        Ok(Handled::Queued | Handled::Duplicate) => {}
                        Ok(Handled::Stopped) => break Stop::Shutdown,
                        Err(status) if status.code() == tonic::Code::Aborted => return Err(status),
                        Err(status) => break Stop::Invalid(status),
                    }
                    if message_bytes > stream_memory_bytes {
                        break Stop::Invalid(self.refuse(
                            IngestRefusal::LargeMessage,
                            &node.name,
                            Status::resource_exhausted(format!(
                                "a message of {message_bytes} bytes, over the {stream_memory_bytes} bytes of memory a \
                                 stream keeps (--max-message-bytes): it is stored and acknowledged, and \
                                 the stream is closed to free its buffer; reconnect"
                            )),
                        ));
                    }
                    wait_for_token = meter.after(metered, Instant::now()).map(|wait| tokio::time::Instant::now() + wait);
                }
            }
        };
        // Let the committer see the queue close once every stream has stopped reading.
        queue.take();
        self.final_ack(&node, &mut state, &mut committed_rx, &mut replaced).await?;
        ended(&node, stop)
    }

    /// The stream's first message, which must be a Hello within [`HELLO_TIMEOUT`]: checked, its
    /// strings cut to the caps. `None` when the agent closed the stream first.
    async fn receive_hello(&self, inbound: &mut Streaming<Received<AgentMessage>>) -> Result<Option<Hello>, Status> {
        let mut shutdown = self.shutdown.clone();
        let (mut hello, hello_bytes) = tokio::select! {
            first = tokio::time::timeout(HELLO_TIMEOUT, inbound.next()) => match first {
                Err(_) => return Err(Status::deadline_exceeded("no Hello within 30 s of opening the stream")),
                Ok(None) => return Ok(None),
                Ok(Some(Err(status))) => return Err(self.inbound_error("", status)),
                Ok(Some(Ok(Received { message: AgentMessage { kind: Some(AgentKind::Hello(hello)) }, bytes }))) => {
                    (hello, bytes.len())
                }
                Ok(Some(Ok(_))) => return Err(self.refuse(
                    IngestRefusal::InvalidMessage,
                    "",
                    Status::invalid_argument("the first message on a stream must be a Hello"),
                )),
            },
            _ = shut_down(&mut shutdown) => return Err(shutting_down()),
        };
        validate_hello(&hello).map_err(|status| self.refuse(IngestRefusal::InvalidHello, "", status))?;
        // The stream's read buffer keeps the size of its largest message: a huge Hello would
        // hold it for the stream's life.
        if hello_bytes > MAX_HELLO_BYTES {
            let status = Status::invalid_argument(format!(
                "a Hello of {hello_bytes} bytes; the collector takes at most {MAX_HELLO_BYTES}"
            ));
            return Err(self.refuse(IngestRefusal::InvalidHello, &hello.node_name, status));
        }
        let cut = bounds::bound_hello(&mut hello, &self.shared.limits);
        self.shared.refusals.record(
            IngestRefusal::StringTruncated,
            cut.strings,
            self.peer,
            &hello.node_name,
            "Hello strings over --max-string-bytes",
        );
        Ok(Some(hello))
    }

    /// Opens the stream for the Hello's node: the credential must prove that node, the node is
    /// admitted within `--max-nodes`, the stream becomes the node's connected one, and the agent
    /// is welcomed (and told an interval the collector was asked to set meanwhile).
    async fn open(&self, hello: &Hello, queue: &mpsc::Sender<QueueItem>) -> Result<Opened, Status> {
        // The Hello check: a stream writes only the node its credential proves (before the node
        // is even created, so an impostor leaves no trace in the registry).
        self.shared.auth.check_stream_node(&self.principal, &hello.node_name, self.peer)?;
        // Admission: at most --max-nodes names in memory (a refused name leaves no trace).
        let node = self.shared.registry.admit(&hello.node_name, crate::now_ms()).map_err(|refused| {
            self.refuse(IngestRefusal::NodeCap, &hello.node_name, Status::resource_exhausted(refused.to_string()))
        })?;
        let (replaced_tx, replaced) = watch::channel(false);
        let (control_tx, control) = mpsc::channel(4);
        let pending_interval = self.connect(&node, hello, replaced_tx, control_tx)?;
        let disconnect = DisconnectOnDrop { node: node.clone(), generation: self.generation };
        node.ingest.lock().await.active_stream = self.generation;
        // Record the hello (boot id, version, interval) even before any batch arrives; skipped
        // when the queue is full, the next batch records it anyway.
        let _ = queue.try_send(QueueItem::touch(node.clone()));

        let committed = node.committed_seq();
        let state = StreamState {
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
            replay: Some(self.replay_limits()),
        }))
        .await?;
        // Clamped to what an agent can sample at: a declared 1 ms is 50 ms for the flood limit.
        let mut interval_ms = node.live().interval_or_default();
        if let Some((requested, reason)) = pending_interval {
            interval_ms = requested;
            self.send(CollectorKind::SetInterval(SetInterval { interval_ms: requested, reason })).await?;
        }
        Ok(Opened { node, state, replaced, control, interval_ms, _disconnect: disconnect })
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

    /// What one Replay may hold (bakery.proto, contract point 8): under the largest message
    /// decoded and the bytes a stream's read buffer may keep (a larger message ends the
    /// stream), at most `--max-sample-entries` samples and `--max-pods-per-node` identities.
    fn replay_limits(&self) -> ReplayLimits {
        let stream_memory_bytes = self.shared.limits.max_message_bytes;
        let clamp = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        ReplayLimits {
            max_message_bytes: clamp(stream_memory_bytes.min(MAX_MESSAGE_BYTES)),
            max_samples: clamp(self.shared.limits.max_sample_entries),
            max_pods: clamp(self.shared.limits.max_pods_per_node),
        }
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
}

/// A stream open for its node: what its reading loop works with.
struct Opened {
    node: Arc<Node>,
    state: StreamState,
    /// Turns true when a newer stream for the node replaces this one.
    replaced: watch::Receiver<bool>,
    /// What the collector asks of the agent (a new interval).
    control: mpsc::Receiver<Control>,
    /// The flood limit's interval (clamped to what an agent can sample at).
    interval_ms: u32,
    /// Marks the node disconnected when the stream ends, however it ends.
    _disconnect: DisconnectOnDrop,
}

/// How a stream that stopped reading ends: `Ok` when the agent closed it, else the status, logged
/// here unless it was refused input (counted and logged where it was refused).
fn ended(node: &Node, stop: Stop) -> Result<(), Status> {
    match stop {
        Stop::AgentDone => Ok(()),
        Stop::Shutdown => Err(shutting_down()),
        Stop::Invalid(status) => {
            let refused = matches!(
                status.code(),
                tonic::Code::InvalidArgument | tonic::Code::ResourceExhausted | tonic::Code::FailedPrecondition
            );
            if refused {
                tracing::debug!(node = %node.name, code = ?status.code(), error = %status.message(), "closing a stream on refused input");
            } else {
                tracing::info!(node = %node.name, code = ?status.code(), error = %status.message(), "stream ended");
            }
            Err(status)
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

fn validate_hello(hello: &Hello) -> Result<(), Status> {
    let name = &hello.node_name;
    // Kubernetes node names are DNS subdomains: at most 253 characters.
    if name.is_empty() || name.len() > 253 || name.chars().any(|c| c.is_control() || c.is_whitespace()) {
        let shown: String = name.chars().take(64).collect();
        return Err(Status::invalid_argument(format!(
            "Hello.node_name {shown:?}{} ({} bytes) is not a node name (1 to 253 characters, no spaces or control \
             characters)",
            if shown.len() < name.len() { "..." } else { "" },
            name.len()
        )));
    }
    Ok(())
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
    fn hello_node_names() {
        let hello = |name: &str| Hello { node_name: name.into(), ..Hello::default() };
        assert!(validate_hello(&hello("master-02")).is_ok());
        assert!(validate_hello(&hello("")).is_err());
        assert!(validate_hello(&hello("a b")).is_err());
        let long = validate_hello(&hello(&"a".repeat(1_000_000))).unwrap_err();
        assert!(long.message().len() < 300, "a huge name is not echoed back: {}", long.message().len());
        assert!(long.message().contains("1000000 bytes"), "{}", long.message());
    }
}
