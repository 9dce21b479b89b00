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

pub mod records;
pub mod report;
pub mod reports;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use prost::Message;
use prost::bytes::Bytes;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

pub use records::{NodeRecord, PodRecord, StoredBatch};
pub use report::{GapReport, NodeReport, SeqRange, StoreReport};

use crate::error::{Error, Result};

/// The store's file name inside `--data-dir`.
pub const STORE_FILE: &str = "bakery.redb";

/// redb caches pages in memory; its default (1 GiB) would dwarf the collector's memory budget
/// (100 MiB for 100 nodes, issue 3). Writes go straight through; reads at start and by
/// retention are sequential, so a small cache costs little.
const CACHE_BYTES: usize = 16 * 1024 * 1024;

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
    /// The newest stored batch, so `Query.Nodes` has a latest sample right after a restart.
    pub latest: Option<LatestBatch>,
}

/// The newest stored batch of a node.
#[derive(Debug, Clone)]
pub struct LatestBatch {
    pub seq: u64,
    pub received_ms: i64,
    pub bytes: Bytes,
}

/// What one retention step removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExpireOutcome {
    pub batches: u64,
    pub gaps: u64,
    /// The budget ran out before everything expired was removed: call again.
    pub more: bool,
}

/// The writable store. Only the committer holds one.
pub struct Store {
    path: PathBuf,
    /// `None` after a failed reopen: the next operation tries to open again.
    db: Option<Database>,
}

impl Store {
    /// Opens (or creates) the store in `data_dir`, creating the directory if needed.
    pub fn open(data_dir: &Path) -> Result<Store> {
        std::fs::create_dir_all(data_dir).map_err(|source| Error::Io {
            action: "cannot create the data dir",
            path: data_dir.to_path_buf(),
            source,
        })?;
        let path = data_dir.join(STORE_FILE);
        let db = open_database(&path)?;
        let mut store = Store { path, db: Some(db) };
        store.create_tables()?;
        Ok(store)
    }

    /// The store file.
    pub fn path(&self) -> &Path {
        &self.path
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

    fn begin_durable_write(&mut self) -> Result<redb::WriteTransaction> {
        let mut txn = self.db()?.begin_write()?;
        txn.set_durability(Durability::Immediate).map_err(redb::Error::from)?;
        txn.set_quick_repair(true);
        Ok(txn)
    }

    /// Writes `set` in one durable transaction: when this returns `Ok`, every row is on disk and
    /// each node's `committed_seq` covers its `handled_through`.
    pub fn commit(&mut self, set: &CommitSet) -> Result<()> {
        let txn = self.begin_durable_write()?;
        {
            // (batches, samples) added per node id: a row already present (a retry after an
            // ambiguous failure) is overwritten with identical bytes and not counted twice.
            let mut added: HashMap<u32, (u64, u64)> = HashMap::new();
            let mut samples = txn.open_table(SAMPLES)?;
            for batch in &set.batches {
                let previous = samples.insert(
                    (batch.node_id, batch.seq),
                    (batch.received_ms, batch.sample_count, batch.bytes.as_ref()),
                )?;
                if previous.is_none() {
                    let entry = added.entry(batch.node_id).or_default();
                    entry.0 += 1;
                    entry.1 += u64::from(batch.sample_count);
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
                let mut record = match nodes.get(update.name.as_str())? {
                    Some(bytes) => decode_node(bytes.value())?,
                    None => NodeRecord { node_id: update.node_id, retained_from_seq: 1, ..NodeRecord::default() },
                };
                record.committed_seq = record.committed_seq.max(update.handled_through);
                if let Some((batches, sample_count)) = added.get(&update.node_id) {
                    record.batches += batches;
                    record.samples += sample_count;
                }
                apply_live(&mut record, &update.live);
                nodes.insert(update.name.as_str(), record.encode_to_vec().as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Everything the collector needs at start: every node with its pods and newest batch.
    pub fn load(&mut self) -> Result<Vec<LoadedNode>> {
        let txn = self.db()?.begin_read()?;
        let nodes = txn.open_table(NODES)?;
        let samples = txn.open_table(SAMPLES)?;
        let pods = txn.open_table(PODS)?;
        let mut loaded = Vec::new();
        for row in nodes.iter()? {
            let (name, bytes) = row?;
            let record = decode_node(bytes.value())?;
            let id = record.node_id;
            let mut node_pods = Vec::new();
            for row in pods.range((id, 0u32)..=(id, u32::MAX))? {
                let (key, bytes) = row?;
                let pod =
                    PodRecord::decode(bytes.value()).map_err(|source| Error::CorruptRecord { what: "pod", source })?;
                node_pods.push((key.value().1, pod));
            }
            let latest = match samples.range((id, 0u64)..=(id, u64::MAX))?.next_back() {
                Some(row) => {
                    let (key, value) = row?;
                    let (received_ms, _, bytes) = value.value();
                    Some(LatestBatch { seq: key.value().1, received_ms, bytes: Bytes::copy_from_slice(bytes) })
                }
                None => None,
            };
            loaded.push(LoadedNode { name: name.value().to_string(), record, pods: node_pods, latest });
        }
        Ok(loaded)
    }

    /// Removes batches received before `cutoff_ms`, and gaps recorded before it that no longer
    /// precede a stored batch, oldest first, at most `budget` rows in one transaction (so a long
    /// backlog never holds the writer for long). Sequence numbers grow with time per node, so
    /// each node's expired rows are a prefix of its key range.
    pub fn expire(&mut self, cutoff_ms: i64, budget: u64) -> Result<ExpireOutcome> {
        let txn = self.begin_durable_write()?;
        let mut outcome = ExpireOutcome::default();
        {
            let mut nodes = txn.open_table(NODES)?;
            let mut samples = txn.open_table(SAMPLES)?;
            let mut gaps = txn.open_table(GAPS)?;
            let mut records = Vec::new();
            for row in nodes.iter()? {
                let (name, bytes) = row?;
                records.push((name.value().to_string(), decode_node(bytes.value())?));
            }
            for (name, mut record) in records {
                let id = record.node_id;
                let remaining = budget.saturating_sub(outcome.batches + outcome.gaps);
                if remaining == 0 {
                    outcome.more = true;
                    break;
                }
                let mut expired_batches = Vec::new();
                let mut expired_samples = 0u64;
                let mut first_kept_batch = None;
                for row in samples.range((id, 0u64)..=(id, u64::MAX))? {
                    let (key, value) = row?;
                    let (received_ms, sample_count, _) = value.value();
                    if received_ms >= cutoff_ms {
                        first_kept_batch = Some(key.value().1);
                        break;
                    }
                    if expired_batches.len() as u64 == remaining {
                        first_kept_batch = Some(key.value().1);
                        outcome.more = true;
                        break;
                    }
                    expired_batches.push(key.value().1);
                    expired_samples += u64::from(sample_count);
                }
                let mut expired_gaps = Vec::new();
                let gap_budget = remaining - expired_batches.len() as u64;
                for row in gaps.range((id, 0u64)..=(id, u64::MAX))? {
                    let (key, value) = row?;
                    let (last_seq, recorded_ms, _) = value.value();
                    let before_kept = first_kept_batch.is_none_or(|kept| last_seq < kept);
                    if recorded_ms >= cutoff_ms || !before_kept {
                        break;
                    }
                    if expired_gaps.len() as u64 == gap_budget {
                        outcome.more = true;
                        break;
                    }
                    expired_gaps.push((key.value().1, last_seq));
                }
                if expired_batches.is_empty() && expired_gaps.is_empty() {
                    continue;
                }
                let mut highest_removed = 0;
                for seq in &expired_batches {
                    samples.remove((id, *seq))?;
                    highest_removed = highest_removed.max(*seq);
                }
                for (first_seq, last_seq) in &expired_gaps {
                    gaps.remove((id, *first_seq))?;
                    highest_removed = highest_removed.max(*last_seq);
                }
                record.batches = record.batches.saturating_sub(expired_batches.len() as u64);
                record.samples = record.samples.saturating_sub(expired_samples);
                record.retained_from_seq = record.retained_from_seq.max(highest_removed + 1);
                nodes.insert(name.as_str(), record.encode_to_vec().as_slice())?;
                outcome.batches += expired_batches.len() as u64;
                outcome.gaps += expired_gaps.len() as u64;
            }
        }
        txn.commit()?;
        Ok(outcome)
    }

    /// The per-node report `inspect` prints; `verify` also scans every key for unaccounted
    /// sequence numbers.
    pub fn report(&mut self, now_ms: i64, verify: bool) -> Result<StoreReport> {
        report::build(self.db()?, now_ms, verify)
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

/// Builds the `inspect` report of the store in `data_dir` without changing it when it can:
/// a store closed cleanly or by a crash after a quick-repair commit opens read-only; one that
/// needs a full repair is opened writable once (the repair writes), then reported.
pub fn inspect(data_dir: &Path, now_ms: i64, verify: bool) -> Result<StoreReport> {
    let path = data_dir.join(STORE_FILE);
    if !path.exists() {
        return Err(Error::Io {
            action: "no bakery store at",
            path,
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
    }
    match redb::Builder::new().set_cache_size(CACHE_BYTES).open_read_only(&path) {
        Ok(db) => report::build(&db, now_ms, verify),
        Err(redb::DatabaseError::RepairAborted) => Store::open(data_dir)?.report(now_ms, verify),
        Err(redb::DatabaseError::DatabaseAlreadyOpen) => Err(Error::StoreInUse { path }),
        Err(source) => Err(Error::OpenStore { path, source }),
    }
}

fn open_database(path: &Path) -> Result<Database> {
    redb::Builder::new().set_cache_size(CACHE_BYTES).create(path).map_err(|source| match source {
        redb::DatabaseError::DatabaseAlreadyOpen => Error::StoreInUse { path: path.to_path_buf() },
        source => Error::OpenStore { path: path.to_path_buf(), source },
    })
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
