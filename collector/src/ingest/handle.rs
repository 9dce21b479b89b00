//! One message through ingest's stages: its kind and order on the stream, its content within
//! the caps, its sequence number within what the agent could have produced, its pods within the
//! node's cap, room in the commit queue (in messages and bytes), then the node's live state.

use std::collections::HashSet;
use std::sync::Arc;

use bakery_proto::codec::Received;
use bakery_proto::v1::agent_message::Kind as AgentKind;
use bakery_proto::v1::collector_message::Kind as CollectorKind;
use bakery_proto::v1::{Ack, AgentMessage, Batch, Gap};
use prost::Message;
use prost::bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, mpsc, watch};
use tonic::Status;

use super::bounds::Cut;
use super::lanes::{self, Lane, LaneError};
use super::pods::Numbering;
use super::refusals::IngestRefusal;
use super::session::{Session, StreamState};
use super::{
    ITEM_OVERHEAD_BYTES, MAX_MESSAGE_BYTES, MAX_REASON_BYTES, STREAM_REFS_PER_POD, bounds, implied_gaps, pods,
    replaced_status, seq, shut_down, shutting_down, wire,
};
use crate::commit::QueueItem;
use crate::nodes::{HistoryEntry, IngestState, Node};
use crate::store::{BatchRow, GapRow, StoredBatch};

/// Where a message stands against what its node has accepted.
#[derive(Debug, Clone, Copy)]
struct Position {
    /// The number the message continues from: the node's accepted sequence number when it
    /// arrived, or for a live message ahead of an unfinished replay the live one before it.
    after: u64,
    /// Everything it carries was accepted before: it is dropped and acknowledged.
    duplicate: bool,
    /// The first message on its stream.
    first_message: bool,
    received_ms: i64,
}

/// How a piece of a message came: its lane, and whether it is the stream's first.
#[derive(Debug, Clone, Copy)]
struct Arrival {
    lane: Lane,
    first_message: bool,
}

/// A message converted to what the committer and the node's live state take.
struct Converted {
    /// The queue item, its pod rows not yet set.
    item: QueueItem,
    /// The newest sample's own timestamp.
    latest_sample_ms: Option<i64>,
    /// The batch as the node's in-memory history keeps it.
    history: Option<HistoryEntry>,
    /// The collector pod ids the batch's samples use, sorted, each once.
    referenced: Vec<u32>,
}

impl Session {
    /// Takes one message through ingest's stages, each a step below: its kind and order in its
    /// lane on the stream, its content within the caps, then for each sample (a replayed batch
    /// is split into batches of one, [`lanes::split`]) the rest in [`Session::take`]. A refused
    /// message is never queued, so it never moves the committed sequence number and is never
    /// acknowledged.
    pub(super) async fn handle(
        &self,
        node: &Arc<Node>,
        state: &mut StreamState,
        received: Received<AgentMessage>,
        queue: &mpsc::Sender<QueueItem>,
        replaced: &mut watch::Receiver<bool>,
    ) -> Result<Handled, Status> {
        let first_message = state.lanes.first_message();
        let (mut incoming, lane) = self.in_order(node, state, received)?;
        self.within_caps(node, &mut incoming)?;
        if let (Incoming::Batch(batch, _), Lane::Replay { .. }) = (&incoming, lane) {
            self.whole_replay(node, state, batch).await?;
        }
        let pieces = match incoming {
            Incoming::Batch(batch, wire) if lane != Lane::Live => {
                // split makes one piece per sample, in order.
                let mut wire = wire.filter(|wire| wire.len() == batch.samples.len()).map(Vec::into_iter);
                let pieces = lanes::split(batch).into_iter();
                pieces
                    .map(|piece| Incoming::Batch(piece, wire.as_mut().and_then(Iterator::next).map(|w| vec![w])))
                    .collect()
            }
            incoming => vec![incoming],
        };
        let mut handled = Handled::Duplicate;
        for (i, piece) in pieces.into_iter().enumerate() {
            let arrival = Arrival { lane, first_message: first_message && i == 0 };
            match self.take(node, state, piece, arrival, queue, replaced).await? {
                Handled::Stopped => return Ok(Handled::Stopped),
                Handled::Queued => handled = Handled::Queued,
                Handled::Duplicate => {}
            }
        }
        Ok(handled)
    }

    /// The stages after the content's: the sequence number within what the agent could have
    /// produced, the pods within the node's cap, room in the commit queue, then the node's live
    /// state. A live message ahead of an unfinished replay ([`lanes::Lanes::ahead_of`]) is queued and
    /// shown but does not move what the node is handled through until the replay joins it.
    async fn take(
        &self,
        node: &Arc<Node>,
        state: &mut StreamState,
        incoming: Incoming,
        arrival: Arrival,
        queue: &mpsc::Sender<QueueItem>,
        replaced: &mut watch::Receiver<bool>,
    ) -> Result<Handled, Status> {
        let received_ms = crate::now_ms();
        let (first_seq, last_seq) = incoming.seq_range(arrival.lane).map_err(|status| self.invalid(node, status))?;
        let mut ingest = node.ingest.lock().await;
        if ingest.active_stream != self.generation {
            return Err(replaced_status());
        }
        let accepted = ingest.accepted_seq;
        let ahead = state.lanes.ahead_of(arrival.lane, accepted);
        let duplicate = ahead.is_none() && last_seq <= accepted;
        if !duplicate {
            self.within_seq_ceiling(node, &ingest, last_seq, received_ms)?;
        }
        let after = ahead.unwrap_or(accepted);
        let at = Position { after, duplicate, first_message: arrival.first_message, received_ms };

        // Stage 4: the pods numbered, the message converted, the pods within the node's cap.
        let numbering = {
            let live = node.live();
            let declared = match &incoming {
                Incoming::Batch(batch, _) => batch.new_pods.as_slice(),
                Incoming::Gap(_) => &[],
            };
            pods::number(node.id, declared, &ingest.pods_by_uid, &live.pods, ingest.next_pod_id)
        };
        let mut converted = self.convert(node, state, incoming, &numbering, at)?;
        let forget = self.pods_within_cap(node, &numbering, &converted.referenced)?;
        converted.item.pods = numbering.rows;

        if duplicate && converted.item.pods.is_empty() {
            drop(ingest);
            self.apply_refs(node, state, &numbering.refs)?;
            {
                let mut live = node.live();
                live.duplicates_dropped += 1;
                live.last_seen_ms = received_ms;
            }
            self.ack_duplicate(node, state, last_seq).await?;
            return Ok(Handled::Duplicate);
        }

        let Some((budget, permit)) = self.queue_room(&converted.item, queue, replaced).await? else {
            return Ok(Handled::Stopped);
        };
        Self::take_pods(node, &mut ingest, &converted.item, &forget, numbering.next_pod_id);
        // The budget is given back when this item's commit lands: keyed by its seq, or by the
        // highest handled one when it moves nothing (its commit comes with or after that one's;
        // a live item ahead of the replay may so give its bytes back a commit early).
        let key = if duplicate || ahead.is_some() { accepted } else { last_seq };
        if !duplicate {
            Self::advance(&mut ingest, state, &mut converted.item, ahead.is_some(), (first_seq, last_seq), received_ms);
        }
        node.hold_queued(key, budget);
        permit.send(converted.item);
        drop(ingest);
        self.apply_refs(node, state, &numbering.refs)?;

        self.update_live(node, at, converted.latest_sample_ms, converted.history);
        if duplicate {
            self.ack_duplicate(node, state, last_seq).await?;
            return Ok(Handled::Duplicate);
        }
        Ok(Handled::Queued)
    }

    /// What a queued item that is not a duplicate moves: what the node is handled through, or
    /// for a live item ahead of the replay only the lanes; the replay reaching its end joins
    /// the live items ahead of it, and its item then carries the node through them.
    fn advance(
        ingest: &mut IngestState,
        state: &mut StreamState,
        item: &mut QueueItem,
        ahead: bool,
        (first_seq, last_seq): (u64, u64),
        received_ms: i64,
    ) {
        if ahead {
            state.lanes.went_ahead(first_seq, last_seq);
            item.handled_through = 0;
            return;
        }
        ingest.accepted_seq = last_seq;
        ingest.seq_anchor_ms = Some(received_ms);
        state.last_queued = last_seq;
        if let Some(through) = state.lanes.join(last_seq) {
            ingest.accepted_seq = through;
            item.handled_through = through;
            state.last_queued = through;
        }
    }

    /// A replayed batch is refused whole or taken whole: its last number within what the agent
    /// could have produced and every pod it references declared, checked before its samples
    /// are taken one by one.
    async fn whole_replay(&self, node: &Node, state: &StreamState, batch: &Batch) -> Result<(), Status> {
        let last_seq = batch.seq.saturating_add(batch.samples.len().saturating_sub(1) as u64);
        {
            let ingest = node.ingest.lock().await;
            if last_seq > ingest.accepted_seq {
                self.within_seq_ceiling(node, &ingest, last_seq, crate::now_ms())?;
            }
        }
        let declared: HashSet<u32> = batch.new_pods.iter().map(|identity| identity.pod_ref).collect();
        let referenced = batch.samples.iter().flat_map(|sample| &sample.pods).map(|pod| pod.pod_ref);
        match referenced.into_iter().find(|r| !declared.contains(r) && !state.pod_refs.contains_key(r)) {
            Some(pod_ref) => Err(self.invalid(
                node,
                Status::invalid_argument(format!(
                    "batch {}: pod_ref {pod_ref} was never declared on this stream (declare it in new_pods first)",
                    batch.seq
                )),
            )),
            None => Ok(()),
        }
    }

    fn invalid(&self, node: &Node, status: Status) -> Status {
        self.refuse(IngestRefusal::InvalidMessage, &node.name, status)
    }

    /// Stage 1: the message's kind and range, in order in its lane on the stream. Returns the
    /// message (a `Replay` unwrapped) and its lane.
    fn in_order(
        &self,
        node: &Node,
        state: &mut StreamState,
        received: Received<AgentMessage>,
    ) -> Result<(Incoming, Lane), Status> {
        let invalid = |status: Status| self.invalid(node, status);
        let (kind, lane) = lanes::unwrap_replay(received.message);
        let incoming = match kind {
            Some(AgentKind::Batch(batch)) => Incoming::Batch(batch, wire::sample_bytes(&received.bytes)),
            Some(AgentKind::Gap(gap)) => Incoming::Gap(gap),
            Some(AgentKind::Hello(_)) => {
                return Err(invalid(Status::invalid_argument("a second Hello on the same stream")));
            }
            Some(AgentKind::Replay(_)) | None => {
                return Err(invalid(Status::invalid_argument("an AgentMessage without a batch, gap or hello")));
            }
        };
        let (first_seq, last_seq) = incoming.seq_range(lane).map_err(invalid)?;
        match state.lanes.admit(lane, first_seq, last_seq) {
            Ok(()) => Ok((incoming, lane)),
            Err(error @ LaneError::Regression { .. }) => {
                node.live().invalid_seqs += 1;
                Err(self.refuse(IngestRefusal::SeqRegression, &node.name, Status::invalid_argument(error.to_string())))
            }
            Err(error) => Err(invalid(Status::invalid_argument(error.to_string()))),
        }
    }

    /// Stage 2: the content within the caps (strings and lists cut and counted, too many
    /// samples or pods refused).
    fn within_caps(&self, node: &Node, incoming: &mut Incoming) -> Result<(), Status> {
        match incoming {
            Incoming::Batch(batch, wire) => {
                let cut = bounds::bound_batch(batch, &self.shared.limits).map_err(|refused| {
                    self.shared.refusals.record(refused.cause, 1, self.peer, &node.name, refused.status.message());
                    refused.status
                })?;
                let refusals = &self.shared.refusals;
                let detail = "over --max-string-bytes (or the pod UID and QoS caps)";
                refusals.record(IngestRefusal::StringTruncated, cut.strings, self.peer, &node.name, detail);
                let detail = "sample entries over --max-sample-entries";
                refusals.record(IngestRefusal::EntriesDropped, cut.entries, self.peer, &node.name, detail);
                if cut != Cut::default() {
                    // The bytes as received hold what was cut.
                    *wire = None;
                }
            }
            Incoming::Gap(gap) => gap.reason = truncate_reason(std::mem::take(&mut gap.reason)),
        }
        Ok(())
    }

    /// Stage 3: the sequence number within what the agent could have produced.
    fn within_seq_ceiling(
        &self,
        node: &Node,
        ingest: &IngestState,
        last_seq: u64,
        received_ms: i64,
    ) -> Result<(), Status> {
        let accepted = ingest.accepted_seq;
        let ceiling = seq::seq_ceiling(accepted, ingest.seq_anchor_ms, received_ms);
        if last_seq <= ceiling {
            return Ok(());
        }
        let silent_s = ingest.seq_anchor_ms.map(|anchor| received_ms.saturating_sub(anchor) / 1000);
        Err(self.refuse(
            IngestRefusal::SeqBeyondBound,
            &node.name,
            Status::failed_precondition(format!(
                "sequence number {last_seq} is beyond what this agent could have produced: node {} is \
                 handled through {accepted} and the limit is {ceiling} (a full spool, {} seqs, plus {} per \
                 second since the collector last took one{}); refused, not stored, not acknowledged",
                node.name,
                seq::SEQ_MARGIN,
                seq::SEQS_PER_SECOND,
                silent_s.map_or_else(String::new, |s| format!(", {s} s ago")),
            )),
        ))
    }

    /// Stage 4, first half: the message as store rows, its pod refs resolved to collector pod
    /// ids (every ref must resolve, duplicate or not: an undeclared ref is a broken agent).
    fn convert(
        &self,
        node: &Arc<Node>,
        state: &StreamState,
        incoming: Incoming,
        numbering: &Numbering,
        at: Position,
    ) -> Result<Converted, Status> {
        let invalid = |status: Status| self.refuse(IngestRefusal::InvalidMessage, &node.name, status);
        let lookup = |pod_ref: u32| {
            numbering
                .refs
                .iter()
                .rev()
                .find(|(r, _)| *r == pod_ref)
                .map(|(_, id)| *id)
                .or_else(|| state.pod_refs.get(&pod_ref).copied())
        };
        let mut converted = Converted {
            item: QueueItem { node: node.clone(), pods: Vec::new(), gaps: Vec::new(), batch: None, handled_through: 0 },
            latest_sample_ms: None,
            history: None,
            referenced: Vec::new(),
        };
        let (item, received_ms) = (&mut converted.item, at.received_ms);
        match incoming {
            Incoming::Batch(mut batch, wire) => {
                for sample in &mut batch.samples {
                    for pod in &mut sample.pods {
                        pod.pod_ref = lookup(pod.pod_ref).ok_or_else(|| {
                            invalid(Status::invalid_argument(format!(
                                "batch {}: pod_ref {} was never declared on this stream (declare it in new_pods first)",
                                batch.seq, pod.pod_ref
                            )))
                        })?;
                        converted.referenced.push(pod.pod_ref);
                    }
                }
                converted.referenced.sort_unstable();
                converted.referenced.dedup();
                if !at.duplicate {
                    item.gaps = self.gap_rows(node, at.after, batch.seq, at.first_message, state, received_ms);
                    converted.latest_sample_ms = batch.samples.iter().map(|s| s.timestamp_ms).next_back();
                    let sample_count = u32::try_from(batch.samples.len()).unwrap_or(u32::MAX);
                    let stored = wire.and_then(|wire| wire::stored_batch(&batch.samples, &wire));
                    let bytes =
                        Bytes::from(stored.unwrap_or_else(|| StoredBatch { samples: batch.samples }.encode_to_vec()));
                    converted.history = Some(HistoryEntry { seq: batch.seq, received_ms, bytes: bytes.clone() });
                    item.batch = Some(BatchRow { node_id: node.id, seq: batch.seq, received_ms, sample_count, bytes });
                    item.handled_through = batch.seq;
                }
            }
            Incoming::Gap(gap) => {
                if !at.duplicate {
                    item.gaps = self.gap_rows(node, at.after, gap.first_seq, at.first_message, state, received_ms);
                    item.gaps.push(GapRow {
                        node_id: node.id,
                        first_seq: gap.first_seq.max(at.after.saturating_add(1)),
                        last_seq: gap.last_seq,
                        recorded_ms: received_ms,
                        reason: gap.reason,
                    });
                    item.handled_through = gap.last_seq;
                }
            }
        }
        Ok(converted)
    }

    /// Stage 4, second half: the node's pods within `--max-pods-per-node`, forgetting first the
    /// identities the batch does not reference. Returns the pod ids to forget.
    fn pods_within_cap(&self, node: &Node, numbering: &Numbering, referenced: &[u32]) -> Result<Vec<u32>, Status> {
        let max_pods = self.shared.limits.max_pods_per_node;
        let forget = {
            let live = node.live();
            pods::to_forget(&live.pods, &numbering.rows, referenced, max_pods)
        };
        forget.ok_or_else(|| {
            self.refuse(
                IngestRefusal::PodCap,
                &node.name,
                Status::resource_exhausted(format!(
                    "node {} would keep more than {max_pods} pods referenced at once (--max-pods-per-node)",
                    node.name
                )),
            )
        })
    }

    /// Stage 5: room in the commit queue, in bytes and in messages (backpressure), but let a
    /// replacement or a shutdown interrupt: nothing is queued or changed then, and the agent
    /// sends it again later. `None` when the collector began shutting down.
    async fn queue_room<'q>(
        &self,
        item: &QueueItem,
        queue: &'q mpsc::Sender<QueueItem>,
        replaced: &mut watch::Receiver<bool>,
    ) -> Result<Option<(OwnedSemaphorePermit, mpsc::Permit<'q, QueueItem>)>, Status> {
        let bytes = item_bytes(item).min(self.shared.limits.max_queue_bytes.max(1));
        let mut shutdown = self.shutdown.clone();
        let budget = self.shared.queue_budget.clone();
        let budget = tokio::select! {
            biased;
            _ = replaced.changed() => return Err(replaced_status()),
            _ = shut_down(&mut shutdown) => return Ok(None),
            permit = budget.acquire_many_owned(u32::try_from(bytes).unwrap_or(u32::MAX)) => permit.map_err(|_| shutting_down())?,
        };
        let permit = tokio::select! {
            biased;
            _ = replaced.changed() => return Err(replaced_status()),
            _ = shut_down(&mut shutdown) => return Ok(None),
            permit = queue.reserve() => permit.map_err(|_| shutting_down())?,
        };
        Ok(Some((budget, permit)))
    }

    /// The node's pods as the queued item leaves them: the forgotten ones gone, the item's
    /// identities kept, the next free pod id moved on.
    fn take_pods(node: &Node, ingest: &mut IngestState, item: &QueueItem, forget: &[u32], next_pod_id: u32) {
        let mut live = node.live();
        for pod_id in forget {
            if let Some(pod) = live.pods.remove(pod_id) {
                ingest.pods_by_uid.remove(&pod.uid);
            }
        }
        for row in &item.pods {
            ingest.pods_by_uid.insert(row.pod.uid.clone(), row.pod_id);
            live.pods.insert(row.pod_id, row.pod.clone());
        }
        ingest.next_pod_id = next_pod_id;
    }

    /// Stage 6: what Query and the analysis read: when the node was last seen, its newest
    /// sample's time and clock skew, and the batch in its history when it fits the node's share.
    /// A replayed batch older than the newest one held (live samples went ahead of the replay)
    /// is stored but neither shown as the latest nor kept in the history, which stays in order.
    fn update_live(&self, node: &Node, at: Position, latest_sample_ms: Option<i64>, history: Option<HistoryEntry>) {
        let received_ms = at.received_ms;
        let kept_in_memory = {
            let mut live = node.live();
            live.last_seen_ms = received_ms;
            if at.duplicate {
                live.duplicates_dropped += 1;
            }
            let newest = history.as_ref().is_some_and(|entry| live.latest().is_none_or(|held| held.seq < entry.seq));
            if let Some(sample_ms) = latest_sample_ms {
                if newest {
                    live.last_sample_ms = sample_ms;
                }
                live.skew.observe(received_ms, sample_ms);
            }
            let history = history.filter(|_| newest);
            history.map(|entry| (entry.bytes.len(), live.push_history(entry, received_ms), live.history_cap_bytes()))
        };
        if let Some((bytes, false, cap)) = kept_in_memory {
            self.shared.refusals.record(
                IngestRefusal::BatchNotKept,
                1,
                self.peer,
                &node.name,
                &format!("a batch of {bytes} bytes is over the node's {cap} bytes of memory (--max-history-bytes / --max-nodes): stored, not kept in memory"),
            );
        }
    }

    /// The gap rows a message starting at `next_seq` implies.
    fn gap_rows(
        &self,
        node: &Node,
        accepted: u64,
        next_seq: u64,
        first_message: bool,
        state: &StreamState,
        received_ms: i64,
    ) -> Vec<GapRow> {
        implied_gaps(accepted, next_seq, first_message, state.oldest_spooled_seq)
            .into_iter()
            .map(|(first_seq, last_seq, reason)| GapRow {
                node_id: node.id,
                first_seq,
                last_seq,
                recorded_ms: received_ms,
                reason: reason.to_string(),
            })
            .collect()
    }

    /// A duplicate is still acknowledged: a resend of something already durable learns so at
    /// once; a resend of something still being committed is acknowledged when that commit lands.
    async fn ack_duplicate(&self, node: &Node, state: &mut StreamState, last_seq: u64) -> Result<(), Status> {
        let committed = node.committed_seq();
        if last_seq <= committed {
            state.last_acked = state.last_acked.max(committed);
            self.send(CollectorKind::Ack(Ack { committed_seq: state.last_acked })).await?;
        }
        Ok(())
    }

    /// Records this batch's declarations on the stream. The stream's map is bounded: past
    /// [`STREAM_REFS_PER_POD`] refs per kept pod, refs to pods the node no longer keeps are
    /// dropped, and a stream that still maps too many must start over (RESOURCE_EXHAUSTED; the
    /// agent reconnects and declares its current pods again, nothing is lost).
    fn apply_refs(&self, node: &Node, state: &mut StreamState, refs: &[(u32, u32)]) -> Result<(), Status> {
        for (pod_ref, pod_id) in refs {
            state.pod_refs.insert(*pod_ref, *pod_id);
        }
        let max_refs = self.shared.limits.max_pods_per_node.saturating_mul(STREAM_REFS_PER_POD);
        if state.pod_refs.len() > max_refs {
            let live = node.live();
            state.pod_refs.retain(|_, pod_id| live.pods.contains_key(pod_id));
        }
        if state.pod_refs.len() > max_refs {
            return Err(self.refuse(
                IngestRefusal::PodCap,
                &node.name,
                Status::resource_exhausted(format!(
                    "this stream maps {} pod refs, more than {max_refs} ({STREAM_REFS_PER_POD} x --max-pods-per-node); \
                     reconnect and declare the current pods",
                    state.pod_refs.len()
                )),
            ));
        }
        Ok(())
    }

    /// The status to end a stream with when reading from it failed, counted when it is the
    /// client's fault. tonic reports a message over the decoding limit as OUT_OF_RANGE;
    /// `bakery.proto` says such a message ends its stream with RESOURCE_EXHAUSTED.
    pub(super) fn inbound_error(&self, node: &str, status: Status) -> Status {
        match status.code() {
            tonic::Code::OutOfRange => self.refuse(
                IngestRefusal::MessageTooLarge,
                node,
                Status::resource_exhausted(format!(
                    "message larger than the collector's limit of {MAX_MESSAGE_BYTES} bytes: {}",
                    status.message()
                )),
            ),
            tonic::Code::Internal if status.message().contains("decode") => self.refuse(
                IngestRefusal::InvalidMessage,
                node,
                Status::invalid_argument(format!("a message does not decode as an AgentMessage: {}", status.message())),
            ),
            _ => status,
        }
    }
}

/// The queue bytes an item holds until committed: its batch, pod identities and gaps.
fn item_bytes(item: &QueueItem) -> usize {
    let batch = item.batch.as_ref().map_or(0, |b| b.bytes.len());
    let pods: usize =
        item.pods.iter().map(|p| p.pod.uid.len() + p.pod.qos_class.len() + p.pod.cgroup_path.len() + 32).sum();
    let gaps: usize = item.gaps.iter().map(|g| g.reason.len() + 32).sum();
    batch.saturating_add(pods).saturating_add(gaps).saturating_add(ITEM_OVERHEAD_BYTES)
}

pub(super) enum Handled {
    Queued,
    Duplicate,
    /// The collector began shutting down while waiting for queue room; nothing was queued.
    Stopped,
}

pub(super) enum Incoming {
    /// A batch, with its samples' bytes as received when the stored form can be made from them
    /// ([`wire`]).
    Batch(Batch, Option<Vec<Bytes>>),
    Gap(Gap),
}

impl Incoming {
    /// The inclusive range of sequence numbers the message handles: a replayed batch one per
    /// sample, a live one its `seq` (an older agent's batch of several samples is one number).
    fn seq_range(&self, lane: Lane) -> Result<(u64, u64), Status> {
        match self {
            Incoming::Batch(batch, _) if batch.seq == 0 => {
                Err(Status::invalid_argument("batch sequence numbers start at 1"))
            }
            Incoming::Batch(batch, _) if lane != Lane::Live && batch.samples.len() > 1 => {
                let last = u64::try_from(batch.samples.len() - 1).ok().and_then(|n| batch.seq.checked_add(n));
                last.map(|last| (batch.seq, last)).ok_or_else(|| {
                    Status::invalid_argument(format!("a replayed batch from {} numbers past 2^64", batch.seq))
                })
            }
            Incoming::Batch(batch, _) => Ok((batch.seq, batch.seq)),
            Incoming::Gap(gap) if gap.first_seq == 0 || gap.last_seq < gap.first_seq => Err(Status::invalid_argument(
                format!("gap {}..={} is not a range of sequence numbers >= 1", gap.first_seq, gap.last_seq),
            )),
            Incoming::Gap(gap) => Ok((gap.first_seq, gap.last_seq)),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_bounded_and_never_empty() {
        assert_eq!(truncate_reason(String::new()), "no reason given by the agent");
        assert_eq!(truncate_reason("x".repeat(5000)).len(), MAX_REASON_BYTES);
        // a multi-byte character across the limit is not split
        let reason = format!("{}é", "x".repeat(MAX_REASON_BYTES - 1));
        assert_eq!(truncate_reason(reason).len(), MAX_REASON_BYTES - 1);
    }
}
