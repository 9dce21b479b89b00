//! The collector's in-memory view of every node: what its streams may enqueue next (the
//! per-node ordering lock), what is committed (a watch the streams turn into acks), and the
//! live state `Query` reads (latest sample, short history, skew, counters, pods).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use prost::bytes::Bytes;
use tokio::sync::{mpsc, watch};

use crate::liveness::{DEFAULT_INTERVAL_MS, SkewEstimator};
use crate::store::{LoadedNode, NodeLive, PodRecord};

/// How much recent history each node keeps in memory for `Query.History`: the last
/// [`HISTORY_WINDOW_MS`], but never more than [`HISTORY_MAX_BYTES`] of stored-batch bytes
/// (about 90 one-second samples of a Pi with 30 pods), so 100 nodes stay within ~25 MiB.
pub const HISTORY_WINDOW_MS: i64 = 120_000;
pub const HISTORY_MAX_BYTES: usize = 256 * 1024;

/// Every node the collector knows, by name.
#[derive(Debug, Default)]
pub struct Registry {
    nodes: RwLock<HashMap<String, Arc<Node>>>,
    /// The highest node id handed out (ids start at 1).
    last_node_id: AtomicU32,
}

impl Registry {
    /// The registry as the store left it.
    pub fn from_loaded(loaded: Vec<LoadedNode>) -> Registry {
        let mut nodes = HashMap::new();
        let mut last_node_id = 0;
        for node in loaded {
            last_node_id = last_node_id.max(node.record.node_id);
            let node = Node::from_loaded(node);
            nodes.insert(node.name.clone(), Arc::new(node));
        }
        Registry { nodes: RwLock::new(nodes), last_node_id: AtomicU32::new(last_node_id) }
    }

    pub fn get(&self, name: &str) -> Option<Arc<Node>> {
        self.nodes.read().ok()?.get(name).cloned()
    }

    /// The node called `name`, numbered now if it is new.
    pub fn get_or_create(&self, name: &str) -> Arc<Node> {
        if let Some(node) = self.get(name) {
            return node;
        }
        let mut nodes = self.nodes.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        nodes
            .entry(name.to_string())
            .or_insert_with(|| {
                let id = self.last_node_id.fetch_add(1, Ordering::Relaxed) + 1;
                Arc::new(Node::new(name.to_string(), id, 0, NodeLive::default()))
            })
            .clone()
    }

    /// Every node, sorted by name.
    pub fn all(&self) -> Vec<Arc<Node>> {
        let mut all: Vec<Arc<Node>> = match self.nodes.read() {
            Ok(nodes) => nodes.values().cloned().collect(),
            Err(poisoned) => poisoned.into_inner().values().cloned().collect(),
        };
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }
}

/// One node.
#[derive(Debug)]
pub struct Node {
    pub name: String,
    /// The collector's number for the node, the key prefix of its rows in the store.
    pub id: u32,
    /// What may be enqueued next. Held while a stream validates a message and hands it to the
    /// committer, so one node's messages reach the commit queue in sequence order.
    pub ingest: tokio::sync::Mutex<IngestState>,
    committed: watch::Sender<u64>,
    live: Mutex<LiveState>,
}

/// Enqueue-side state of a node.
#[derive(Debug)]
pub struct IngestState {
    /// Highest sequence number handed to the committer (stored batch or gap); never below the
    /// committed one. A message at or below it is a duplicate.
    pub accepted_seq: u64,
    /// The only stream allowed to enqueue: the newest one.
    pub active_stream: u64,
    /// Pod UID -> (collector pod id, identity).
    pub pods_by_uid: HashMap<String, (u32, PodRecord)>,
    pub next_pod_id: u32,
}

/// What `Query` reads and what each commit records about the node besides its rows.
#[derive(Debug)]
pub struct LiveState {
    pub connected: Option<ConnectedStream>,
    pub last_seen_ms: i64,
    pub last_sample_ms: i64,
    pub interval_ms: u32,
    /// An interval asked for with `Query.SetInterval`, repeated when the agent reconnects with
    /// another one.
    pub requested_interval_ms: Option<(u32, String)>,
    pub boot_id: String,
    pub agent_version: String,
    pub skew: SkewEstimator,
    /// The skew the store had, shown until the first new observation.
    pub stored_skew_ms: Option<i64>,
    pub duplicates_dropped: u64,
    pub invalid_seqs: u64,
    pub history: VecDeque<HistoryEntry>,
    history_bytes: usize,
    /// Collector pod id -> identity.
    pub pods: HashMap<u32, PodRecord>,
}

/// The stream currently serving a node.
#[derive(Debug)]
pub struct ConnectedStream {
    pub generation: u64,
    pub stream_id: String,
    /// Set to true to make that stream close: a newer one replaced it.
    pub replaced: watch::Sender<bool>,
    pub control: mpsc::Sender<Control>,
}

/// Messages to a connected stream's task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    SetInterval { interval_ms: u32, reason: String },
}

/// A recent batch in its stored form.
#[derive(Debug, Clone)]
pub struct HistoryEntry {
    pub seq: u64,
    pub received_ms: i64,
    pub bytes: Bytes,
}

impl Node {
    fn new(name: String, id: u32, committed_seq: u64, live: NodeLive) -> Node {
        let (committed, _) = watch::channel(committed_seq);
        Node {
            name,
            id,
            ingest: tokio::sync::Mutex::new(IngestState {
                accepted_seq: committed_seq,
                active_stream: 0,
                pods_by_uid: HashMap::new(),
                next_pod_id: 1,
            }),
            committed,
            live: Mutex::new(LiveState {
                connected: None,
                last_seen_ms: live.last_seen_ms,
                last_sample_ms: live.last_sample_ms,
                interval_ms: live.interval_ms,
                requested_interval_ms: None,
                boot_id: live.boot_id,
                agent_version: live.agent_version,
                skew: SkewEstimator::default(),
                stored_skew_ms: live.clock_skew_ms,
                duplicates_dropped: live.duplicates_dropped,
                invalid_seqs: live.invalid_seqs,
                history: VecDeque::new(),
                history_bytes: 0,
                pods: HashMap::new(),
            }),
        }
    }

    fn from_loaded(loaded: LoadedNode) -> Node {
        let record = loaded.record;
        let live = NodeLive {
            last_seen_ms: record.last_seen_ms,
            last_sample_ms: record.last_sample_ms,
            clock_skew_ms: record.clock_skew_ms,
            duplicates_dropped: record.duplicates_dropped,
            invalid_seqs: record.invalid_seqs,
            interval_ms: record.interval_ms,
            boot_id: record.boot_id,
            agent_version: record.agent_version,
        };
        let node = Node::new(loaded.name, record.node_id, record.committed_seq, live);
        {
            let mut ingest = node.ingest.try_lock().expect("a node under construction has no other user");
            let mut live = node.live();
            for (pod_id, pod) in loaded.pods {
                ingest.next_pod_id = ingest.next_pod_id.max(pod_id + 1);
                ingest.pods_by_uid.insert(pod.uid.clone(), (pod_id, pod.clone()));
                live.pods.insert(pod_id, pod);
            }
            if let Some(latest) = loaded.latest {
                live.push_history(
                    HistoryEntry { seq: latest.seq, received_ms: latest.received_ms, bytes: latest.bytes },
                    latest.received_ms,
                );
            }
        }
        node
    }

    /// The live state, for a short synchronous look or update.
    pub fn live(&self) -> MutexGuard<'_, LiveState> {
        // A panic while holding this lock leaves plain data behind; keep serving it.
        self.live.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The highest committed sequence number.
    pub fn committed_seq(&self) -> u64 {
        *self.committed.borrow()
    }

    /// A receiver that wakes whenever more is committed.
    pub fn subscribe_committed(&self) -> watch::Receiver<u64> {
        self.committed.subscribe()
    }

    /// Called by the committer after a successful commit.
    pub fn mark_committed(&self, seq: u64) {
        self.committed.send_if_modified(|current| {
            let advanced = seq > *current;
            if advanced {
                *current = seq;
            }
            advanced
        });
    }

    /// What the next commit records about the node besides its rows.
    pub fn live_snapshot(&self) -> NodeLive {
        let live = self.live();
        NodeLive {
            last_seen_ms: live.last_seen_ms,
            last_sample_ms: live.last_sample_ms,
            clock_skew_ms: live.clock_skew_ms(),
            duplicates_dropped: live.duplicates_dropped,
            invalid_seqs: live.invalid_seqs,
            interval_ms: live.interval_ms,
            boot_id: live.boot_id.clone(),
            agent_version: live.agent_version.clone(),
        }
    }
}

impl LiveState {
    pub fn clock_skew_ms(&self) -> Option<i64> {
        self.skew.estimate().or(self.stored_skew_ms)
    }

    pub fn interval_or_default(&self) -> u32 {
        if self.interval_ms == 0 { DEFAULT_INTERVAL_MS } else { self.interval_ms }
    }

    /// Adds a batch to the history, dropping what is older than the window or over the budget.
    pub fn push_history(&mut self, entry: HistoryEntry, now_ms: i64) {
        self.history_bytes += entry.bytes.len();
        self.history.push_back(entry);
        while let Some(oldest) = self.history.front() {
            let too_old = now_ms.saturating_sub(oldest.received_ms) > HISTORY_WINDOW_MS;
            let too_big = self.history_bytes > HISTORY_MAX_BYTES && self.history.len() > 1;
            if !(too_old || too_big) {
                break;
            }
            self.history_bytes -= oldest.bytes.len();
            self.history.pop_front();
        }
    }

    /// The newest batch held.
    pub fn latest(&self) -> Option<&HistoryEntry> {
        self.history.back()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64, received_ms: i64, len: usize) -> HistoryEntry {
        HistoryEntry { seq, received_ms, bytes: Bytes::from(vec![0u8; len]) }
    }

    #[test]
    fn history_keeps_the_window_and_the_byte_budget() {
        let node = Node::new("n".into(), 1, 0, NodeLive::default());
        let mut live = node.live();
        for seq in 1..=200 {
            live.push_history(entry(seq, seq as i64 * 1000, 1000), seq as i64 * 1000);
        }
        let seqs: Vec<u64> = live.history.iter().map(|e| e.seq).collect();
        assert_eq!(seqs.first(), Some(&80), "the last 120 s");
        assert_eq!(live.latest().map(|e| e.seq), Some(200));
        live.push_history(entry(201, 201_000, HISTORY_MAX_BYTES), 201_000);
        let seqs: Vec<u64> = live.history.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![201], "an oversized batch pushes everything else out but stays itself");
    }

    #[test]
    fn committed_only_moves_forward() {
        let node = Node::new("n".into(), 1, 5, NodeLive::default());
        let rx = node.subscribe_committed();
        node.mark_committed(3);
        assert_eq!(node.committed_seq(), 5);
        assert!(!rx.has_changed().unwrap());
        node.mark_committed(9);
        assert_eq!(node.committed_seq(), 9);
        assert!(rx.has_changed().unwrap());
    }

    #[test]
    fn node_ids_continue_after_the_stored_ones() {
        let record = crate::store::NodeRecord { node_id: 7, committed_seq: 40, ..Default::default() };
        let registry = Registry::from_loaded(vec![LoadedNode { name: "a".into(), record, pods: vec![], latest: None }]);
        assert_eq!(registry.get("a").unwrap().committed_seq(), 40);
        assert_eq!(registry.get_or_create("b").id, 8);
        assert_eq!(registry.get_or_create("b").id, 8);
        assert_eq!(registry.get_or_create("c").id, 9);
        assert_eq!(Registry::default().get_or_create("first").id, 1);
        assert_eq!(registry.all().iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["a", "b", "c"]);
    }
}
