//! The collector's in-memory view of the nodes: what their streams may enqueue next (the
//! per-node ordering lock), what is committed (a watch the streams turn into acks), and the
//! live state `Query` reads (latest sample, short history, skew, counters, pods), all of it
//! bounded: at most `--max-nodes` nodes in memory, a byte budget for their history, and nodes
//! nobody streams for and Kubernetes does not list forgotten from memory (kept in the store).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use prost::bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, mpsc, watch};

use crate::limits::IngestLimits;
use crate::liveness::{SkewEstimator, effective_interval_ms};
use crate::store::{LoadedNode, NodeLive, PodRecord};

/// How much recent history each node keeps in memory for `Query.History` and the export: its
/// newest [`HISTORY_MAX_BATCHES`] batches within the last [`HISTORY_WINDOW_MS`], never more than
/// [`HISTORY_MAX_BYTES`] of stored-batch bytes (a sample of a node at `--max-pods-per-node`
/// fits), and never more than its share of `--max-history-bytes`
/// ([`RegistryLimits::history_bytes_per_node`]). Its readers need little: the export the newest
/// two batches (rates), bakery-top the sample before the newest; older samples are in the
/// store. It is the collector's largest use of memory for its size (100 nodes at 64 KiB each
/// held 6.4 MiB), so it is kept that short: 8 batches are 2 s at 4 Hz and 8 s at 1 Hz.
pub const HISTORY_WINDOW_MS: i64 = 30_000;
pub const HISTORY_MAX_BATCHES: usize = 8;
pub const HISTORY_MAX_BYTES: usize = 64 * 1024;

/// Names the collector remembers (in memory or forgotten to the store) per `--max-nodes` slot.
/// Beyond `max_nodes` times this, a new name Kubernetes does not list is refused: a client that
/// invents names cannot grow the list of forgotten names without bound.
pub const KNOWN_NAMES_PER_NODE: usize = 64;

/// The registry's bounds, from [`IngestLimits`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistryLimits {
    /// Nodes in memory, besides the ones Kubernetes lists.
    pub max_nodes: usize,
    /// Names known at all (in memory and forgotten) before an unlisted new name is refused.
    pub max_known_names: usize,
    /// Each node's share of `--max-history-bytes` (at most [`HISTORY_MAX_BYTES`]). A batch
    /// larger than this is stored but not kept in memory.
    pub history_bytes_per_node: usize,
    /// A node not connected, not listed and silent this long is forgotten from memory.
    pub forget_after_ms: i64,
}

impl RegistryLimits {
    pub fn from_ingest(limits: &IngestLimits) -> RegistryLimits {
        let max_nodes = limits.max_nodes.max(1);
        RegistryLimits {
            max_nodes,
            max_known_names: max_nodes.saturating_mul(KNOWN_NAMES_PER_NODE),
            history_bytes_per_node: (limits.max_history_bytes / max_nodes).min(HISTORY_MAX_BYTES),
            forget_after_ms: i64::try_from(limits.forget_nodes_after.as_millis()).unwrap_or(i64::MAX),
        }
    }
}

impl Default for RegistryLimits {
    fn default() -> Self {
        RegistryLimits::from_ingest(&IngestLimits::default())
    }
}

/// Why a Hello's node was not admitted into memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotAdmitted {
    /// `max_nodes` nodes are in memory and none of them can be forgotten yet.
    Full { max_nodes: usize, forget_after_ms: i64 },
    /// So many names are known (in memory and forgotten) that no new one is taken.
    TooManyNames { known: usize },
}

impl std::fmt::Display for NotAdmitted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotAdmitted::Full { max_nodes, forget_after_ms } => write!(
                f,
                "the collector keeps at most {max_nodes} nodes in memory (--max-nodes) and all are in use; a node \
                 that is not connected, not listed by Kubernetes and silent for {} s is forgotten, which makes room",
                forget_after_ms / 1000
            ),
            NotAdmitted::TooManyNames { known } => write!(
                f,
                "the collector already knows {known} node names (--max-nodes x {KNOWN_NAMES_PER_NODE}); new names are \
                 taken only when Kubernetes lists them"
            ),
        }
    }
}

/// What a node forgotten from memory needs to come back as itself: its number (the key of its
/// rows), its committed sequence number and where its pod ids continue.
#[derive(Debug, Clone)]
struct Dormant {
    node_id: u32,
    committed_seq: u64,
    next_pod_id: u32,
    live: NodeLive,
}

/// Every node the collector keeps in memory, by name, and the ones it forgot.
#[derive(Debug)]
pub struct Registry {
    nodes: RwLock<HashMap<String, Arc<Node>>>,
    /// Nodes forgotten from memory, or not loaded at start: stored, not served.
    dormant: Mutex<HashMap<String, Dormant>>,
    /// The nodes Kubernetes lists now (empty without a cluster).
    cluster_nodes: RwLock<HashSet<String>>,
    /// The highest node id handed out (ids start at 1).
    last_node_id: AtomicU32,
    limits: RegistryLimits,
}

impl Default for Registry {
    fn default() -> Self {
        Registry::with_limits(RegistryLimits::default())
    }
}

impl Registry {
    pub fn with_limits(limits: RegistryLimits) -> Registry {
        Registry {
            nodes: RwLock::default(),
            dormant: Mutex::default(),
            cluster_nodes: RwLock::default(),
            last_node_id: AtomicU32::new(0),
            limits,
        }
    }

    /// The registry as the store left it: the nodes loaded in full are in memory, the others
    /// dormant until their agent says Hello.
    pub fn from_loaded(loaded: Vec<LoadedNode>, limits: RegistryLimits) -> Registry {
        let registry = Registry::with_limits(limits);
        let mut last_node_id = 0;
        {
            let mut nodes = write(&registry.nodes);
            let mut dormant = lock(&registry.dormant);
            for node in loaded {
                last_node_id = last_node_id.max(node.record.node_id);
                if node.full {
                    let node = Node::from_loaded(node, limits.history_bytes_per_node);
                    nodes.insert(node.name.clone(), Arc::new(node));
                } else {
                    let record = &node.record;
                    let live = NodeLive {
                        last_seen_ms: record.last_seen_ms,
                        last_sample_ms: record.last_sample_ms,
                        clock_skew_ms: record.clock_skew_ms,
                        duplicates_dropped: record.duplicates_dropped,
                        invalid_seqs: record.invalid_seqs,
                        interval_ms: record.interval_ms,
                        boot_id: record.boot_id.clone(),
                        agent_version: record.agent_version.clone(),
                    };
                    let entry = Dormant {
                        node_id: record.node_id,
                        committed_seq: record.committed_seq,
                        next_pod_id: node.next_pod_id,
                        live,
                    };
                    dormant.insert(node.name, entry);
                }
            }
        }
        registry.last_node_id.store(last_node_id, Ordering::Relaxed);
        registry
    }

    pub fn limits(&self) -> &RegistryLimits {
        &self.limits
    }

    pub fn get(&self, name: &str) -> Option<Arc<Node>> {
        read(&self.nodes).get(name).cloned()
    }

    /// The node called `name`, numbered now if it is new, whatever the bounds (tests and tools;
    /// streams go through [`Registry::admit`]).
    pub fn get_or_create(&self, name: &str) -> Arc<Node> {
        if let Some(node) = self.get(name) {
            return node;
        }
        let mut nodes = write(&self.nodes);
        if let Some(node) = nodes.get(name) {
            return node.clone();
        }
        let node = Arc::new(self.create(name));
        nodes.insert(name.to_string(), node.clone());
        node
    }

    /// The node called `name` for a stream that said Hello as it: already in memory, brought
    /// back from the store's numbering if it was forgotten, or numbered now. Kubernetes' nodes
    /// are always admitted; another name only while fewer than `max_nodes` nodes are in memory
    /// (after forgetting one that may be forgotten at `now_ms`) and fewer than
    /// `max_known_names` names are known.
    pub fn admit(&self, name: &str, now_ms: i64) -> Result<Arc<Node>, NotAdmitted> {
        if let Some(node) = self.get(name) {
            return Ok(node);
        }
        let listed = read(&self.cluster_nodes).contains(name);
        let mut nodes = write(&self.nodes);
        if let Some(node) = nodes.get(name) {
            return Ok(node.clone());
        }
        let (known, names_known) = {
            let dormant = lock(&self.dormant);
            (dormant.contains_key(name), nodes.len().saturating_add(dormant.len()))
        };
        if !listed && !known && names_known >= self.limits.max_known_names {
            return Err(NotAdmitted::TooManyNames { known: names_known });
        }
        if !listed && nodes.len() >= self.limits.max_nodes {
            // Make room by forgetting the node silent the longest that may be forgotten.
            let mut candidates: Vec<(i64, String)> = nodes
                .iter()
                .filter(|(_, node)| Arc::strong_count(node) == 1)
                .map(|(name, node)| (node.live().last_seen_ms, name.clone()))
                .collect();
            candidates.sort_unstable();
            let forgotten = candidates.iter().any(|(_, name)| self.forget_locked(&mut nodes, name, now_ms).is_some());
            if !forgotten {
                return Err(NotAdmitted::Full {
                    max_nodes: self.limits.max_nodes,
                    forget_after_ms: self.limits.forget_after_ms,
                });
            }
        }
        let node = Arc::new(self.create(name));
        nodes.insert(name.to_string(), node.clone());
        Ok(node)
    }

    /// A new node for `name`: its dormant self when it has one, else a new number.
    fn create(&self, name: &str) -> Node {
        let history_cap = self.limits.history_bytes_per_node;
        match lock(&self.dormant).remove(name) {
            Some(dormant) => {
                let node =
                    Node::new(name.to_string(), dormant.node_id, dormant.committed_seq, dormant.live, history_cap);
                if let Ok(mut ingest) = node.ingest.try_lock() {
                    ingest.next_pod_id = dormant.next_pod_id;
                }
                node
            }
            None => {
                let id = self.last_node_id.fetch_add(1, Ordering::Relaxed).saturating_add(1);
                Node::new(name.to_string(), id, 0, NodeLive::default(), history_cap)
            }
        }
    }

    /// Moves `name` from memory to the dormant list when nothing holds it (no stream, no
    /// uncommitted work, no reader) and it is not connected, silent for `forget_after_ms`, and
    /// not listed by Kubernetes. Called with the node map locked for writing, so no stream can
    /// pick the node up meanwhile.
    fn forget_locked(&self, nodes: &mut HashMap<String, Arc<Node>>, name: &str, now_ms: i64) -> Option<()> {
        if read(&self.cluster_nodes).contains(name) {
            return None;
        }
        let node = nodes.get(name)?;
        if Arc::strong_count(node) != 1 {
            return None;
        }
        let dormant = node.forgettable(now_ms, self.limits.forget_after_ms)?;
        nodes.remove(name);
        lock(&self.dormant).insert(name.to_string(), dormant);
        tracing::info!(node = %name, "forgot an idle node from memory (it stays in the store; it comes back when its agent connects)");
        Some(())
    }

    /// Forgets every node that may be forgotten at `now_ms`; returns how many.
    pub fn forget_idle(&self, now_ms: i64) -> usize {
        let mut nodes = write(&self.nodes);
        // Only nodes nobody else holds (no stream, no queued work) are candidates.
        let names: Vec<String> =
            nodes.iter().filter(|(_, node)| Arc::strong_count(node) == 1).map(|(name, _)| name.clone()).collect();
        names.iter().filter(|name| self.forget_locked(&mut nodes, name, now_ms).is_some()).count()
    }

    /// The nodes Kubernetes lists now: they are always admitted and never forgotten.
    pub fn set_cluster_nodes<'a>(&self, names: impl IntoIterator<Item = &'a String>) {
        let names: HashSet<String> = names.into_iter().cloned().collect();
        let mut current = write(&self.cluster_nodes);
        if *current != names {
            *current = names;
        }
    }

    /// The nodes Kubernetes lists now, sorted (empty without a cluster).
    pub fn cluster_nodes(&self) -> Vec<String> {
        let mut names: Vec<String> = read(&self.cluster_nodes).iter().cloned().collect();
        names.sort();
        names
    }

    /// Every node in memory, sorted by name.
    pub fn all(&self) -> Vec<Arc<Node>> {
        let mut all: Vec<Arc<Node>> = read(&self.nodes).values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Nodes in memory.
    pub fn len(&self) -> usize {
        read(&self.nodes).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Nodes known only by their number (forgotten, or not loaded at start).
    pub fn dormant_len(&self) -> usize {
        lock(&self.dormant).len()
    }
}

// A panic while holding one of these locks leaves plain data behind; keep serving it.
fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
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
    /// The queue budget (`--max-queue-bytes`) held by this node's uncommitted work, keyed by the
    /// sequence number whose commit releases it.
    queued: Mutex<VecDeque<(u64, OwnedSemaphorePermit)>>,
}

/// Enqueue-side state of a node.
#[derive(Debug)]
pub struct IngestState {
    /// Highest sequence number handed to the committer (stored batch or gap); never below the
    /// committed one. A message at or below it is a duplicate.
    pub accepted_seq: u64,
    /// Collector time `accepted_seq` last moved (from the stored last-seen time after a
    /// restart); `None` while nothing is known. How far the next message may jump ahead grows
    /// with the time since ([`crate::ingest::seq::seq_ceiling`]).
    pub seq_anchor_ms: Option<i64>,
    /// The only stream allowed to enqueue: the newest one.
    pub active_stream: u64,
    /// Pod UID -> collector pod id, for the identities kept in [`LiveState::pods`].
    pub pods_by_uid: HashMap<String, u32>,
    pub next_pod_id: u32,
}

/// What `Query` reads and what each commit records about the node besides its rows.
#[derive(Debug)]
pub struct LiveState {
    pub connected: Option<ConnectedStream>,
    pub last_seen_ms: i64,
    pub last_sample_ms: i64,
    /// The interval the agent declared (or was last asked for); what the collector derives from
    /// it goes through [`LiveState::interval_or_default`].
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
    /// Bytes of history this node may keep (its share of `--max-history-bytes`).
    history_cap_bytes: usize,
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
    fn new(name: String, id: u32, committed_seq: u64, live: NodeLive, history_cap_bytes: usize) -> Node {
        let (committed, _) = watch::channel(committed_seq);
        let seq_anchor_ms = (committed_seq > 0 && live.last_seen_ms > 0).then_some(live.last_seen_ms);
        Node {
            name,
            id,
            ingest: tokio::sync::Mutex::new(IngestState {
                accepted_seq: committed_seq,
                seq_anchor_ms,
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
                history_cap_bytes,
                pods: HashMap::new(),
            }),
            queued: Mutex::new(VecDeque::new()),
        }
    }

    fn from_loaded(loaded: LoadedNode, history_cap_bytes: usize) -> Node {
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
        let node = Node::new(loaded.name, record.node_id, record.committed_seq, live, history_cap_bytes);
        if let Ok(mut ingest) = node.ingest.try_lock() {
            let mut live = node.live();
            ingest.next_pod_id = loaded.next_pod_id.max(1);
            for (pod_id, pod) in loaded.pods {
                ingest.next_pod_id = ingest.next_pod_id.max(pod_id.saturating_add(1));
                ingest.pods_by_uid.insert(pod.uid.clone(), pod_id);
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
        lock(&self.live)
    }

    /// The highest committed sequence number.
    pub fn committed_seq(&self) -> u64 {
        *self.committed.borrow()
    }

    /// A receiver that wakes whenever more is committed.
    pub fn subscribe_committed(&self) -> watch::Receiver<u64> {
        self.committed.subscribe()
    }

    /// Called by the committer after a successful commit that held work of this node: moves the
    /// committed seq forward and gives back the queue budget of everything now committed.
    pub fn mark_committed(&self, seq: u64) {
        self.committed.send_if_modified(|current| {
            let advanced = seq > *current;
            if advanced {
                *current = seq;
            }
            advanced
        });
        let committed = self.committed_seq();
        let mut queued = lock(&self.queued);
        while queued.front().is_some_and(|(key, _)| *key <= committed) {
            queued.pop_front();
        }
    }

    /// Holds `budget` (queue bytes of work just handed to the committer) until `key` is
    /// committed. Called before the work is sent, under the node's ingest lock, so keys arrive
    /// in order and a commit cannot come first.
    pub fn hold_queued(&self, key: u64, budget: OwnedSemaphorePermit) {
        lock(&self.queued).push_back((key, budget));
    }

    /// What the node needs to come back after being forgotten, if it may be forgotten now:
    /// not connected, silent for `forget_after_ms`, nothing uncommitted, no stream inside.
    fn forgettable(&self, now_ms: i64, forget_after_ms: i64) -> Option<Dormant> {
        if !lock(&self.queued).is_empty() {
            return None;
        }
        let ingest = self.ingest.try_lock().ok()?;
        let live = self.live();
        let idle = now_ms.saturating_sub(live.last_seen_ms) >= forget_after_ms;
        if live.connected.is_some() || !idle {
            return None;
        }
        Some(Dormant {
            node_id: self.id,
            committed_seq: self.committed_seq().max(ingest.accepted_seq),
            next_pod_id: ingest.next_pod_id,
            live: live.record(),
        })
    }

    /// What the next commit records about the node besides its rows.
    pub fn live_snapshot(&self) -> NodeLive {
        self.live().record()
    }
}

impl LiveState {
    /// What the store keeps of this state in the node's record.
    fn record(&self) -> NodeLive {
        NodeLive {
            last_seen_ms: self.last_seen_ms,
            last_sample_ms: self.last_sample_ms,
            clock_skew_ms: self.clock_skew_ms(),
            duplicates_dropped: self.duplicates_dropped,
            invalid_seqs: self.invalid_seqs,
            interval_ms: self.interval_ms,
            boot_id: self.boot_id.clone(),
            agent_version: self.agent_version.clone(),
        }
    }

    pub fn clock_skew_ms(&self) -> Option<i64> {
        self.skew.estimate().or(self.stored_skew_ms)
    }

    /// The interval the collector works with: the declared one clamped to what an agent can
    /// sample at (the default when none was declared).
    pub fn interval_or_default(&self) -> u32 {
        effective_interval_ms(self.interval_ms)
    }

    /// Bytes of history this node may keep.
    pub fn history_cap_bytes(&self) -> usize {
        self.history_cap_bytes
    }

    /// Adds a batch to the history, dropping what is older than the window, beyond the newest
    /// [`HISTORY_MAX_BATCHES`] or over the node's byte budget. A batch larger than the whole
    /// budget is not kept (it is stored all the same): the history is emptied, so no older batch
    /// passes for the latest; returns false.
    pub fn push_history(&mut self, entry: HistoryEntry, now_ms: i64) -> bool {
        if entry.bytes.len() > self.history_cap_bytes {
            self.history.clear();
            self.history_bytes = 0;
            return false;
        }
        self.history_bytes = self.history_bytes.saturating_add(entry.bytes.len());
        self.history.push_back(entry);
        while let Some(oldest) = self.history.front() {
            let too_old = now_ms.saturating_sub(oldest.received_ms) > HISTORY_WINDOW_MS;
            let too_big = self.history_bytes > self.history_cap_bytes;
            let too_many = self.history.len() > HISTORY_MAX_BATCHES;
            if !(too_old || too_big || too_many) || self.history.len() == 1 {
                break;
            }
            self.history_bytes = self.history_bytes.saturating_sub(oldest.bytes.len());
            self.history.pop_front();
        }
        true
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

    fn limits(max_nodes: usize, forget_after_ms: i64) -> RegistryLimits {
        RegistryLimits { max_nodes, max_known_names: max_nodes * 4, history_bytes_per_node: 4096, forget_after_ms }
    }

    #[test]
    fn history_keeps_the_window_the_newest_batches_and_the_byte_budget() {
        let node = Node::new("n".into(), 1, 0, NodeLive::default(), HISTORY_MAX_BYTES);
        let mut live = node.live();
        let held = |live: &LiveState| live.history.iter().map(|e| e.seq).collect::<Vec<u64>>();
        // One small batch every 10 s: the 30 s window governs (the batch 30 s old is kept).
        for seq in 1..=10 {
            assert!(live.push_history(entry(seq, seq as i64 * 10_000, 1000), seq as i64 * 10_000));
        }
        assert_eq!(held(&live), [7, 8, 9, 10], "the last 30 s");
        // One small batch a second: the newest 8 stay.
        for seq in 11..=40 {
            assert!(live.push_history(entry(seq, 100_000 + seq as i64 * 1000, 1000), 100_000 + seq as i64 * 1000));
        }
        assert_eq!(held(&live), (33..=40).collect::<Vec<u64>>(), "the newest 8 batches");
        // Batches of 20,000 bytes: three fit in 64 KiB, a fourth does not.
        for seq in 41..=45 {
            assert!(live.push_history(entry(seq, 141_000 + seq as i64, 20_000), 141_000 + seq as i64));
        }
        assert_eq!(held(&live), [43, 44, 45], "within the byte budget");
        for seq in 1..=200 {
            assert!(live.push_history(entry(seq, seq as i64 * 1000, 1000), seq as i64 * 1000));
        }
        assert_eq!(live.latest().map(|e| e.seq), Some(200));
        assert!(live.push_history(entry(201, 201_000, HISTORY_MAX_BYTES), 201_000));
        let seqs: Vec<u64> = live.history.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![201], "a batch of the whole budget pushes everything else out");
        // one byte over the budget: stored elsewhere, never kept here, and no older batch is
        // left to pass for the latest
        assert!(!live.push_history(entry(202, 202_000, HISTORY_MAX_BYTES + 1), 202_000));
        assert!(live.latest().is_none());
        assert!(live.push_history(entry(203, 203_000, 10), 203_000));
        assert_eq!(live.latest().map(|e| e.seq), Some(203));
    }

    #[test]
    fn committed_only_moves_forward_and_gives_back_the_queue_budget_of_what_it_covers() {
        let node = Node::new("n".into(), 1, 5, NodeLive::default(), HISTORY_MAX_BYTES);
        let budget = Arc::new(tokio::sync::Semaphore::new(100));
        for (key, bytes) in [(6, 10), (7, 20), (9, 30)] {
            node.hold_queued(key, budget.clone().try_acquire_many_owned(bytes).unwrap());
        }
        assert_eq!(budget.available_permits(), 40);
        let rx = node.subscribe_committed();
        node.mark_committed(3);
        assert_eq!(node.committed_seq(), 5);
        assert!(!rx.has_changed().unwrap());
        assert_eq!(budget.available_permits(), 40, "nothing queued is committed yet");
        node.mark_committed(7);
        assert_eq!(node.committed_seq(), 7);
        assert!(rx.has_changed().unwrap());
        assert_eq!(budget.available_permits(), 70, "6 and 7 are committed; 9 still holds its bytes");
        node.mark_committed(9);
        assert_eq!(budget.available_permits(), 100);
    }

    #[test]
    fn node_ids_continue_after_the_stored_ones() {
        let record = crate::store::NodeRecord { node_id: 7, committed_seq: 40, ..Default::default() };
        let loaded = LoadedNode { name: "a".into(), record, pods: vec![], latest: None, full: true, next_pod_id: 1 };
        let registry = Registry::from_loaded(vec![loaded], RegistryLimits::default());
        assert_eq!(registry.get("a").unwrap().committed_seq(), 40);
        assert_eq!(registry.get_or_create("b").id, 8);
        assert_eq!(registry.get_or_create("b").id, 8);
        assert_eq!(registry.get_or_create("c").id, 9);
        assert_eq!(Registry::default().get_or_create("first").id, 1);
        assert_eq!(registry.all().iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["a", "b", "c"]);
    }

    #[test]
    fn a_node_not_loaded_at_start_comes_back_with_its_number_seq_and_pod_ids() {
        let record =
            crate::store::NodeRecord { node_id: 3, committed_seq: 90, last_seen_ms: 5_000, ..Default::default() };
        let loaded =
            LoadedNode { name: "old".into(), record, pods: vec![], latest: None, full: false, next_pod_id: 12 };
        let registry = Registry::from_loaded(vec![loaded], limits(4, 60_000));
        assert!(registry.get("old").is_none(), "not in memory");
        assert_eq!((registry.len(), registry.dormant_len()), (0, 1));
        let node = registry.admit("old", 10_000).unwrap();
        assert_eq!((node.id, node.committed_seq()), (3, 90));
        let ingest = node.ingest.try_lock().unwrap();
        assert_eq!((ingest.next_pod_id, ingest.seq_anchor_ms), (12, Some(5_000)));
        assert_eq!(registry.admit("new", 10_000).unwrap().id, 4, "new numbers continue after the dormant ones");
        assert_eq!(registry.dormant_len(), 0);
    }

    #[test]
    fn beyond_max_nodes_a_new_name_is_refused_until_an_idle_node_can_be_forgotten() {
        let registry = Registry::with_limits(limits(2, 60_000));
        for name in ["a", "b"] {
            registry.admit(name, 1_000).unwrap().live().last_seen_ms = 1_000;
        }
        let refused = registry.admit("c", 30_000).unwrap_err();
        assert!(matches!(refused, NotAdmitted::Full { max_nodes: 2, .. }), "{refused:?}");
        assert!(refused.to_string().contains("--max-nodes"), "{refused}");
        assert!(registry.get("c").is_none(), "a refused name leaves no trace");
        // Kubernetes lists it: admitted over the cap
        registry.set_cluster_nodes(&["k".to_string()]);
        assert!(registry.admit("k", 30_000).is_ok());
        // a minute of silence later, the oldest unlisted node makes room; it stays known
        let held = registry.get("b").unwrap();
        let c = registry.admit("c", 61_000).unwrap();
        assert!(registry.get("a").is_none() && registry.dormant_len() == 1, "a was forgotten");
        assert_eq!(c.id, 4);
        // b and c are held by someone (a stream): never forgotten under it
        assert_eq!(registry.forget_idle(1_000_000), 0);
        drop((held, c));
        // k is listed: never forgotten; b and c are
        assert_eq!(registry.forget_idle(1_000_000), 2);
        assert_eq!(registry.all().iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["k"]);
        assert_eq!(registry.admit("a", 1_000_000).unwrap().id, 1, "a comes back as itself");
    }

    #[test]
    fn a_node_with_uncommitted_work_is_not_forgotten() {
        let registry = Registry::with_limits(limits(4, 10));
        let node = registry.admit("a", 0).unwrap();
        let budget = Arc::new(tokio::sync::Semaphore::new(10));
        node.hold_queued(1, budget.clone().try_acquire_owned().unwrap());
        drop(node);
        assert_eq!(registry.forget_idle(1_000), 0, "uncommitted work");
        registry.get("a").unwrap().mark_committed(1);
        assert_eq!(registry.forget_idle(1_000), 1);
    }

    #[test]
    fn the_number_of_names_known_is_bounded_for_names_kubernetes_does_not_list() {
        let registry = Registry::with_limits(limits(1, 0));
        for (i, name) in ["a", "b", "c", "d"].iter().enumerate() {
            registry.admit(name, i as i64 * 10).unwrap();
        }
        assert_eq!((registry.len(), registry.dormant_len()), (1, 3));
        let refused = registry.admit("e", 100).unwrap_err();
        assert_eq!(refused, NotAdmitted::TooManyNames { known: 4 });
        assert!(registry.admit("b", 100).is_ok(), "a known name still comes back");
        registry.set_cluster_nodes(&["e".to_string()]);
        assert!(registry.admit("e", 100).is_ok(), "a listed one is always taken");
    }
}
