//! The durable store: one redb file in the data dir, written only by the committer, read by
//! `inspect` when the collector is stopped. Pure of tonic and sockets; tested with data.
//!
//! Tables (keys sort by node, then sequence number, so a node's rows are one key range):
//! - `nodes`:   node name -> [`NodeRecord`] (committed seq, counters, skew, last seen);
//! - `samples`: (node id, seq) -> (receive ms, sample count, [`StoredBatch`] bytes);
//! - `gaps`:    (node id, first seq) -> (last seq, recorded ms, reason);
//! - `pods`:    (node id, collector pod id) -> [`PodRecord`].
//!
//! Every write is one transaction with `Durability::Immediate` (fsync before `commit` returns)
//! and quick-repair (the allocator state is saved with each commit, so opening after a crash or
//! `kill -9` does not walk the whole file, and a read-only `inspect` can open it).
//!
//! Faults (see [`recovery`]): a file redb cannot open (not a redb file, a damaged header, cut
//! short) is moved aside and a fresh store started; a row that does not decode is skipped and
//! counted, at start, in commits, in retention and in `inspect`, and never stops any of them.
//! Numbers that came from agents (sequence numbers, sample counts, byte totals) only ever meet
//! saturating arithmetic here.

pub mod records;
pub mod recovery;
pub mod retention;
pub mod summary;
pub mod window_reports;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use prost::Message;
use prost::bytes::Bytes;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

pub use records::{NodeRecord, PodRecord, StoredBatch};
pub use recovery::{MovedAside, Opened};
pub use retention::{ExpireOutcome, SizeRetention, StoreSize};
pub use summary::{GapReport, NodeReport, SeqRange, StoreReport};

use crate::error::{Error, Result};

/// The store's file name inside `--data-dir`.
pub const STORE_FILE: &str = "bakery.redb";

/// redb caches pages in memory; its default (1 GiB) would dwarf the collector's memory budget
/// (a goal of 50 MiB for 100 nodes). Writes go straight through; reads at start and by retention are
/// sequential, so a small cache costs little. What a commit rewrites is each node's newest leaf
/// and the branches above it (100 nodes: well under 1 MiB); at 16 MiB the cache held 16 MiB of
/// pages written once and never read again, with no measurable gain in CPU or bytes written.
/// At 100 nodes × 30 pods, 3 MiB against 4 MiB saved 1.2–1.8 MiB of RSS at the same CPU per
/// value within this machine's noise; 1 MiB cost 12 % of ingest CPU (BENCHMARKS.md).
const CACHE_BYTES: usize = 3 * 1024 * 1024;

/// What a sample row costs besides its batch bytes: the key (node id, seq) and the value's
/// receive time, sample count and length prefix. An estimate: `--retention-size` compares the
/// store with itself, so only its consistency matters.
pub const ROW_OVERHEAD_BYTES: u64 = 32;

const NODES: TableDefinition<&str, &[u8]> = TableDefinition::new("nodes");
const SAMPLES: TableDefinition<(u32, u64), (i64, u32, &[u8])> = TableDefinition::new("samples");
const GAPS: TableDefinition<(u32, u64), (u64, i64, &str)> = TableDefinition::new("gaps");
const PODS: TableDefinition<(u32, u32), &[u8]> = TableDefinition::new("pods");

/// What one commit writes: everything the committer gathered during one commit interval.
#[derive(Debug, Default, Clone)]
pub struct CommitSet {
    /// One entry per node touched by this commit (also nodes that only said hello).
    pub nodes: Vec<NodeUpdate>,
    pub pods: Vec<PodRow>,
    pub batches: Vec<BatchRow>,
    pub gaps: Vec<GapRow>,
}

impl CommitSet {
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty() && self.pods.is_empty() && self.batches.is_empty() && self.gaps.is_empty()
    }
}

/// A node's state as of this commit.
#[derive(Debug, Clone)]
pub struct NodeUpdate {
    pub name: String,
    pub node_id: u32,
    /// The highest sequence number handled (stored or recorded as gap) in this commit or before;
    /// 0 when the commit carries no sequence numbers for the node.
    pub handled_through: u64,
    pub live: NodeLive,
}

/// The node fields that come from the live streams rather than from the stored rows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeLive {
    pub last_seen_ms: i64,
    pub last_sample_ms: i64,
    pub clock_skew_ms: Option<i64>,
    pub duplicates_dropped: u64,
    pub invalid_seqs: u64,
    pub interval_ms: u32,
    pub boot_id: String,
    pub agent_version: String,
}

/// One batch, already in its stream-independent stored form.
#[derive(Debug, Clone)]
pub struct BatchRow {
    pub node_id: u32,
    pub seq: u64,
    pub received_ms: i64,
    pub sample_count: u32,
    /// A prost-encoded [`StoredBatch`].
    pub bytes: Bytes,
}

/// An inclusive range of sequence numbers that will never arrive, with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GapRow {
    pub node_id: u32,
    pub first_seq: u64,
    pub last_seq: u64,
    pub recorded_ms: i64,
    pub reason: String,
}

/// A pod identity the collector numbered for a node.
#[derive(Debug, Clone)]
pub struct PodRow {
    pub node_id: u32,
    pub pod_id: u32,
    pub pod: PodRecord,
}

/// A node as found in the store when the collector starts.
#[derive(Debug, Clone)]
pub struct LoadedNode {
    pub name: String,
    pub record: NodeRecord,
    pub pods: Vec<(u32, PodRecord)>,
    /// The newest stored batch that decodes, so `Query.Nodes` has a latest sample right after
    /// a restart.
    pub latest: Option<LatestBatch>,
    /// Loaded in full (pods and newest batch); `false` for the nodes beyond
    /// [`LoadLimits::full_nodes`], of which only the record was read.
    pub full: bool,
    /// The number after the highest pod id stored for the node (1 when none), so that ids
    /// handed out later never reuse a stored one.
    pub next_pod_id: u32,
}

/// How much of the store the collector reads into memory at start: a store that holds many
/// nodes (or junk ones) costs one record per node, not their pods and newest batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadLimits {
    /// Nodes loaded in full: the most recently seen ones.
    pub full_nodes: usize,
    /// Pod identities read per node: the newest (highest) ids.
    pub pods_per_node: usize,
    /// A newest batch larger than this is left on disk (the node has no latest sample until
    /// it sends again).
    pub latest_batch_bytes: usize,
}

impl LoadLimits {
    /// Everything (tools and tests).
    pub const UNBOUNDED: LoadLimits =
        LoadLimits { full_nodes: usize::MAX, pods_per_node: usize::MAX, latest_batch_bytes: usize::MAX };
}

/// The newest stored batch of a node.
#[derive(Debug, Clone)]
pub struct LatestBatch {
    pub seq: u64,
    pub received_ms: i64,
    pub bytes: Bytes,
}

/// The bytes a sample row with `value_len` batch bytes counts for in `stored_bytes`.
pub fn row_bytes(value_len: usize) -> u64 {
    u64::try_from(value_len).unwrap_or(u64::MAX).saturating_add(ROW_OVERHEAD_BYTES)
}

/// How many of the newest batches `load` tries, newest first, before giving a node no latest
/// sample: each one that does not decode is skipped and counted.
const LATEST_TRIES: usize = 8;

/// The writable store. Only the committer holds one.
pub struct Store {
    path: PathBuf,
    /// `None` after a failed reopen: the next operation tries to open again.
    db: Option<Database>,
    /// Rows that did not decode and were skipped since the store was opened.
    corrupt_rows: u64,
}

impl Store {
    /// Opens (or creates) the store in `data_dir`, creating the directory if needed. Fails when
    /// the file cannot be opened; [`Store::open_or_move_aside`] is what the collector uses.
    pub fn open(data_dir: &Path) -> Result<Store> {
        std::fs::create_dir_all(data_dir).map_err(|source| Error::Io {
            action: "cannot create the data dir",
            path: data_dir.to_path_buf(),
            source,
        })?;
        Store::open_file(&data_dir.join(STORE_FILE))
    }

    /// Opens (or creates) the store file at `path`.
    pub fn open_file(path: &Path) -> Result<Store> {
        let db = open_database(path)?;
        let mut store = Store { path: path.to_path_buf(), db: Some(db), corrupt_rows: 0 };
        store.create_tables()?;
        store.count_stored_bytes()?;
        Ok(store)
    }

    /// The store file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the database is open (it is not after a reopen failed, until one succeeds).
    pub fn is_open(&self) -> bool {
        self.db.is_some()
    }

    /// Rows skipped because they did not decode, since the store was opened.
    pub fn corrupt_rows(&self) -> u64 {
        self.corrupt_rows
    }

    fn db(&mut self) -> Result<&Database> {
        if self.db.is_none() {
            self.db = Some(open_database(&self.path)?);
        }
        self.db.as_ref().ok_or_else(|| Error::Config("the store is closed".into()))
    }

    /// Closes and opens the file again. redb refuses every write after an I/O error in a commit
    /// (for example a full disk) until it is reopened; reopening recovers the last durable commit.
    pub fn reopen(&mut self) -> Result<()> {
        if let Some(db) = self.db.take() {
            // The close error is the same I/O problem that brought us here; the open below
            // reports whether the file is usable.
            let _ = db.close();
        }
        self.db = Some(open_database(&self.path)?);
        Ok(())
    }

    /// Flushes and closes the file; dropping the store does the same but ignores errors.
    pub fn close(mut self) -> Result<()> {
        if let Some(db) = self.db.take() {
            db.close().map_err(|source| Error::OpenStore { path: self.path.clone(), source })?;
        }
        Ok(())
    }

    fn create_tables(&mut self) -> Result<()> {
        let txn = self.db()?.begin_write()?;
        txn.open_table(NODES)?;
        txn.open_table(SAMPLES)?;
        txn.open_table(GAPS)?;
        txn.open_table(PODS)?;
        txn.commit()?;
        Ok(())
    }

    /// Gives every node record written before `stored_bytes` existed its count, once: a read
    /// of that node's rows, then one write.
    fn count_stored_bytes(&mut self) -> Result<()> {
        let missing: Vec<(String, NodeRecord)> = {
            let txn = self.db()?.begin_read()?;
            let nodes = txn.open_table(NODES)?;
            let mut missing = Vec::new();
            for row in nodes.iter()? {
                let (name, bytes) = row?;
                // A record that does not decode is dealt with by `load`.
                if let Ok(record) = decode_node(bytes.value())
                    && record.stored_bytes.is_none()
                {
                    missing.push((name.value().to_string(), record));
                }
            }
            missing
        };
        if missing.is_empty() {
            return Ok(());
        }
        let txn = self.begin_durable_write()?;
        {
            let samples = txn.open_table(SAMPLES)?;
            let mut nodes = txn.open_table(NODES)?;
            for (name, mut record) in missing {
                let mut total = 0u64;
                for row in samples.range(node_range(record.node_id))? {
                    total = total.saturating_add(row_bytes(row?.1.value().2.len()));
                }
                record.stored_bytes = Some(total);
                nodes.insert(name.as_str(), record.encode_to_vec().as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    fn begin_durable_write(&mut self) -> Result<redb::WriteTransaction> {
        let mut txn = self.db()?.begin_write()?;
        txn.set_durability(Durability::Immediate).map_err(redb::Error::from)?;
        txn.set_quick_repair(true);
        Ok(txn)
    }

    /// Writes `set` in one durable transaction: when this returns `Ok`, every row is on disk and
    /// each node's `committed_seq` covers its `handled_through`. A node record that does not
    /// decode is counted and rebuilt from the node's rows, so it never stops a commit.
    pub fn commit(&mut self, set: &CommitSet) -> Result<()> {
        let txn = self.begin_durable_write()?;
        let mut corrupt = 0u64;
        {
            // (batches, samples, bytes) added per node id: a row already present (a retry after
            // an ambiguous failure) is overwritten with identical bytes and not counted twice.
            let mut added: HashMap<u32, (u64, u64, u64)> = HashMap::new();
            let mut samples = txn.open_table(SAMPLES)?;
            for batch in &set.batches {
                let previous = samples.insert(
                    (batch.node_id, batch.seq),
                    (batch.received_ms, batch.sample_count, batch.bytes.as_ref()),
                )?;
                if previous.is_none() {
                    let entry = added.entry(batch.node_id).or_default();
                    entry.0 = entry.0.saturating_add(1);
                    entry.1 = entry.1.saturating_add(u64::from(batch.sample_count));
                    entry.2 = entry.2.saturating_add(row_bytes(batch.bytes.len()));
                }
            }
            let mut gaps = txn.open_table(GAPS)?;
            for gap in &set.gaps {
                gaps.insert((gap.node_id, gap.first_seq), (gap.last_seq, gap.recorded_ms, gap.reason.as_str()))?;
            }
            let mut pods = txn.open_table(PODS)?;
            for pod in &set.pods {
                pods.insert((pod.node_id, pod.pod_id), pod.pod.encode_to_vec().as_slice())?;
            }
            let mut nodes = txn.open_table(NODES)?;
            for update in &set.nodes {
                let existing = nodes.get(update.name.as_str())?.map(|bytes| decode_node(bytes.value()));
                let mut record = match existing {
                    Some(Ok(record)) => {
                        let mut record = record;
                        if let Some((batches, sample_count, bytes)) = added.get(&update.node_id) {
                            record.batches = record.batches.saturating_add(*batches);
                            record.samples = record.samples.saturating_add(*sample_count);
                            record.stored_bytes = Some(record.stored_bytes.unwrap_or(0).saturating_add(*bytes));
                        }
                        record
                    }
                    Some(Err(error)) => {
                        corrupt += 1;
                        tracing::error!(
                            node = %update.name,
                            %error,
                            "a stored node record does not decode; rebuilding it from the node's rows"
                        );
                        // The rows of this commit are in the tables already: the rebuild counts them.
                        recovery::rebuild_record(&samples, &gaps, update.node_id, update.handled_through)?
                    }
                    None => {
                        let (batches, sample_count, bytes) = added.get(&update.node_id).copied().unwrap_or_default();
                        NodeRecord {
                            node_id: update.node_id,
                            retained_from_seq: 1,
                            batches,
                            samples: sample_count,
                            stored_bytes: Some(bytes),
                            ..NodeRecord::default()
                        }
                    }
                };
                record.committed_seq = record.committed_seq.max(update.handled_through);
                apply_live(&mut record, &update.live);
                nodes.insert(update.name.as_str(), record.encode_to_vec().as_slice())?;
            }
        }
        txn.commit()?;
        self.corrupt_rows = self.corrupt_rows.saturating_add(corrupt);
        Ok(())
    }

    /// Everything the collector needs at start: every node with its pods and newest batch.
    ///
    /// A row that does not decode is skipped, counted and logged: a pod record (the pod is
    /// numbered again when its agent declares it), the newest batch (the one before it is the
    /// latest sample), or a node record. A node whose record does not decode comes back under
    /// a number no stored row uses, so its next rows cannot mix with the unreadable ones; its
    /// agent is welcomed at sequence 0 and sends its spool again.
    pub fn load(&mut self) -> Result<Vec<LoadedNode>> {
        self.load_with(&LoadLimits::UNBOUNDED)
    }

    /// [`Store::load`] within `limits`: every node record is read, but pods and the newest
    /// batch only of the [`LoadLimits::full_nodes`] most recently seen nodes.
    ///
    /// One piece: every table is read in one read transaction, node by node, with the
    /// corrupt-row accounting of each kind of row next to its read.
    pub fn load_with(&mut self, limits: &LoadLimits) -> Result<Vec<LoadedNode>> {
        let txn = self.db()?.begin_read()?;
        let nodes = txn.open_table(NODES)?;
        let samples = txn.open_table(SAMPLES)?;
        let gaps = txn.open_table(GAPS)?;
        let pods = txn.open_table(PODS)?;
        let mut loaded = Vec::new();
        let mut unreadable = Vec::new();
        let mut corrupt = 0u64;
        let mut records = Vec::new();
        for row in nodes.iter()? {
            let (name, bytes) = row?;
            let name = name.value().to_string();
            match decode_node(bytes.value()) {
                Ok(record) => records.push((name, record)),
                Err(error) => {
                    corrupt += 1;
                    tracing::error!(node = %name, %error, "skipping a node record that does not decode");
                    unreadable.push(name);
                }
            }
        }
        // The most recently seen nodes are read in full; the others only by their record.
        let mut by_recency: Vec<usize> = (0..records.len()).collect();
        by_recency.sort_by_key(|&i| std::cmp::Reverse(records[i].1.last_seen_ms));
        let mut full = vec![false; records.len()];
        for &i in by_recency.iter().take(limits.full_nodes) {
            full[i] = true;
        }
        for ((name, record), full) in records.into_iter().zip(full) {
            let id = record.node_id;
            let next_pod_id = pods
                .range((id, 0u32)..=(id, u32::MAX))?
                .next_back()
                .transpose()?
                .map_or(1, |(key, _)| key.value().1.saturating_add(1));
            let mut node_pods = Vec::new();
            let mut latest = None;
            if full {
                for row in pods.range((id, 0u32)..=(id, u32::MAX))?.rev().take(limits.pods_per_node) {
                    let (key, bytes) = row?;
                    match PodRecord::decode(bytes.value()) {
                        Ok(pod) => node_pods.push((key.value().1, pod)),
                        Err(error) => {
                            corrupt += 1;
                            tracing::error!(node = %name, pod_id = key.value().1, %error, "skipping a pod record that does not decode");
                        }
                    }
                }
                node_pods.reverse();
                for row in samples.range(node_range(id))?.rev().take(LATEST_TRIES) {
                    let (key, value) = row?;
                    let (received_ms, _, bytes) = value.value();
                    if bytes.len() > limits.latest_batch_bytes {
                        break;
                    }
                    if let Err(error) = StoredBatch::decode(bytes) {
                        corrupt += 1;
                        tracing::error!(node = %name, seq = key.value().1, %error, "skipping a stored batch that does not decode");
                        continue;
                    }
                    latest =
                        Some(LatestBatch { seq: key.value().1, received_ms, bytes: Bytes::copy_from_slice(bytes) });
                    break;
                }
            }
            loaded.push(LoadedNode { name, record, pods: node_pods, latest, full, next_pod_id });
        }
        if !unreadable.is_empty() {
            let mut next_id = recovery::highest_node_id(&samples, &gaps, &pods)?
                .max(loaded.iter().map(|n| n.record.node_id).max().unwrap_or(0));
            for name in unreadable {
                next_id = next_id.saturating_add(1);
                tracing::warn!(
                    node = %name,
                    node_id = next_id,
                    "the node's unreadable record is replaced when it next connects; its old rows stay in the \
                     store (inspect does not list them) until retention removes them"
                );
                let record = NodeRecord { node_id: next_id, retained_from_seq: 1, ..NodeRecord::default() };
                loaded.push(LoadedNode { name, record, pods: Vec::new(), latest: None, full: true, next_pod_id: 1 });
            }
        }
        self.corrupt_rows = self.corrupt_rows.saturating_add(corrupt);
        Ok(loaded)
    }

    /// The per-node report `inspect` prints; `verify` also scans every key for unaccounted
    /// sequence numbers.
    pub fn report(&mut self, now_ms: i64, verify: bool) -> Result<StoreReport> {
        summary::build(self.db()?, now_ms, verify, &mut |_, _| {})
    }

    /// A node's stored batches with `seq` in `range`, oldest first, as (seq, receive ms, bytes).
    pub fn batches(&mut self, node_id: u32, range: std::ops::RangeInclusive<u64>) -> Result<Vec<(u64, i64, Bytes)>> {
        let txn = self.db()?.begin_read()?;
        let samples = txn.open_table(SAMPLES)?;
        let mut out = Vec::new();
        for row in samples.range((node_id, *range.start())..=(node_id, *range.end()))? {
            let (key, value) = row?;
            let (received_ms, _, bytes) = value.value();
            out.push((key.value().1, received_ms, Bytes::copy_from_slice(bytes)));
        }
        Ok(out)
    }
}

/// Builds the `inspect` report of the store in `data_dir` without changing it when it can.
/// `progress` hears (nodes done, nodes in the store) after each node.
pub fn inspect(data_dir: &Path, now_ms: i64, verify: bool, progress: Progress<'_>) -> Result<StoreReport> {
    inspect_file(&data_dir.join(STORE_FILE), now_ms, verify, progress)
}

/// Told (nodes done, nodes in the store) as a report is built: `--verify` reads every key.
pub type Progress<'a> = &'a mut dyn FnMut(u64, u64);

/// Builds the `inspect` report of the store file at `path` (also one the collector moved
/// aside): a store closed cleanly or by a crash after a quick-repair commit opens read-only;
/// one that needs a full repair is opened writable once (the repair writes), then reported.
pub fn inspect_file(path: &Path, now_ms: i64, verify: bool, progress: Progress<'_>) -> Result<StoreReport> {
    if !path.exists() {
        return Err(Error::Io {
            action: "no bakery store at",
            path: path.to_path_buf(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
    }
    match redb::Builder::new().set_cache_size(CACHE_BYTES).open_read_only(path) {
        Ok(db) => summary::build(&db, now_ms, verify, progress),
        Err(redb::DatabaseError::RepairAborted) => {
            let mut store = Store::open_file(path)?;
            summary::build(store.db()?, now_ms, verify, progress)
        }
        Err(redb::DatabaseError::DatabaseAlreadyOpen) => Err(Error::StoreInUse { path: path.to_path_buf() }),
        Err(source) => Err(Error::OpenStore { path: path.to_path_buf(), source }),
    }
}

fn open_database(path: &Path) -> Result<Database> {
    redb::Builder::new().set_cache_size(CACHE_BYTES).create(path).map_err(|source| match source {
        redb::DatabaseError::DatabaseAlreadyOpen => Error::StoreInUse { path: path.to_path_buf() },
        source => Error::OpenStore { path: path.to_path_buf(), source },
    })
}

/// Every key of node `id` in a (node id, seq) table.
fn node_range(id: u32) -> std::ops::RangeInclusive<(u32, u64)> {
    (id, 0u64)..=(id, u64::MAX)
}

fn decode_node(bytes: &[u8]) -> Result<NodeRecord> {
    NodeRecord::decode(bytes).map_err(|source| Error::CorruptRecord { what: "node", source })
}

fn apply_live(record: &mut NodeRecord, live: &NodeLive) {
    record.last_seen_ms = record.last_seen_ms.max(live.last_seen_ms);
    record.last_sample_ms = live.last_sample_ms;
    if live.clock_skew_ms.is_some() {
        record.clock_skew_ms = live.clock_skew_ms;
    }
    record.duplicates_dropped = record.duplicates_dropped.max(live.duplicates_dropped);
    record.invalid_seqs = record.invalid_seqs.max(live.invalid_seqs);
    record.interval_ms = live.interval_ms;
    record.boot_id.clone_from(&live.boot_id);
    record.agent_version.clone_from(&live.agent_version);
}

#[cfg(test)]
mod tests;
