//! The spool of unacknowledged batches: every sample waits here, under its
//! sequence number, until the collector acknowledges it (stream contract
//! points 2, 3 and 5). In memory by default; with `--spool-dir` also on disk,
//! so that it survives an agent restart, `kill -9` included.
//!
//! Pure data structure plus file IO; no sockets and no async runtime.
//!
//! # Limits and loss
//!
//! The spool holds at most `max_bytes` (`--spool-max-bytes`, default
//! [`DEFAULT_MAX_BYTES`] = 64 MiB: at 2-5 KB per sample and 1 Hz that is 4 to
//! 9 hours of collector outage, and a small share of a Pi 5's 8 GiB). Past the
//! limit the oldest batches go and the dropped range becomes a gap entry, in
//! sequence order, with the reason "spool overflow: N samples dropped, limit
//! X bytes". The collector records it, so loss is never silent. Each batch
//! holds one sample, so a range of N sequence numbers is N samples.
//!
//! # The disk format
//!
//! An append-only log of segment files `<dir>/<id>.seg` (ids grow). A record
//! is `[u32 LE body length][u32 LE CRC-32 of body][body]`; the body starts
//! with a kind byte: a batch (its sequence number and the encoded
//! `bakery.v1.Batch`), an overflow or unreadable-range gap, a checkpoint
//! (next sequence number and highest acknowledged one; every segment starts
//! with one) or a renumbering. Replaying the segments in order rebuilds the
//! spool; a torn or corrupt record ends the replay of its segment (what
//! follows it in that segment is skipped and reported as an unreadable gap
//! when it leaves a hole). A segment is deleted as a whole once nothing in it
//! is still unacknowledged; on overflow the oldest segment's batches are
//! dropped together, so the disk spool never rewrites a file.
//!
//! # SD-card wear and durability
//!
//! Records are appended with one `write` each (no user-space buffer), so an
//! agent crash (`kill -9`, OOM kill, panic) loses nothing: the data is in the
//! kernel's page cache. `fdatasync` runs at most once per `fsync_interval`
//! (default [`DEFAULT_FSYNC_INTERVAL`] = 5 s) and only after new writes, so a
//! power loss can lose the samples of the last 5 s that the collector had
//! not yet acknowledged, in exchange for one flash write per 5 s instead of
//! one per sample. The samples lost that way leave a hole the collector
//! records as a gap ("missing, not declared by the agent").
//!
//! # Sequence numbers across restarts
//!
//! The disk spool persists the next sequence number, so numbering continues
//! after a restart. Numbers handed out by this process before its first
//! Welcome are provisional: if the collector already committed them (a
//! memory spool after a restart, a wiped spool directory, a torn last
//! record), they are shifted to start at `committed + 1`, so new samples are
//! never mistaken for duplicates.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bakery_proto::v1 as pb;
use prost::Message;

/// Default `--spool-max-bytes`: 64 MiB (see the module docs).
pub const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// Default bound on how often the disk spool calls `fdatasync`.
pub const DEFAULT_FSYNC_INTERVAL: Duration = Duration::from_secs(5);

/// What an in-memory entry costs besides its payload (map node, bookkeeping),
/// counted against the limit so that many tiny entries cannot exceed it.
const ENTRY_OVERHEAD_BYTES: u64 = 64;

/// Bytes of the length and CRC in front of every record body.
const RECORD_HEADER_BYTES: usize = 8;

/// A record body larger than this is corruption, not data (the collector
/// refuses messages above 4 MiB anyway).
const MAX_RECORD_BODY_BYTES: u32 = 64 * 1024 * 1024;

/// How often a repeated disk problem is logged.
const WARN_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool directory {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "spool directory {0} is in use by another bakery-agent (two agents must not share a spool; give each its own --spool-dir)"
    )]
    InUse(PathBuf),
}

impl SpoolError {
    fn io(path: &Path, source: io::Error) -> Self {
        Self::Io { path: path.to_path_buf(), source }
    }
}

/// How the spool is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolConfig {
    /// With a directory the spool is on disk and survives restarts.
    pub dir: Option<PathBuf>,
    /// Limit of the spool: on disk the segment files, in memory the entries.
    pub max_bytes: u64,
    /// The disk spool calls `fdatasync` at most this often.
    pub fsync_interval: Duration,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        Self { dir: None, max_bytes: DEFAULT_MAX_BYTES, fsync_interval: DEFAULT_FSYNC_INTERVAL }
    }
}

impl SpoolConfig {
    /// Size at which the active segment is closed and a new one started: a
    /// sixteenth of the limit, so an overflow drops about 1/16 of the spool at
    /// once, within 4 KiB..4 MiB.
    pub fn segment_bytes(&self) -> u64 {
        (self.max_bytes / 16).clamp(4 * 1024, 4 * 1024 * 1024)
    }
}

/// Why a range of sequence numbers will never arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GapCause {
    /// Dropped because the spool was full.
    Overflow { limit_bytes: u64 },
    /// The disk spool could not read it back (a torn or corrupt record).
    Unreadable,
}

impl GapCause {
    /// The reason sent to the collector for `samples` lost this way.
    pub fn reason(&self, samples: u64) -> String {
        match self {
            Self::Overflow { limit_bytes } => {
                format!("spool overflow: {samples} samples dropped, limit {limit_bytes} bytes")
            }
            Self::Unreadable => {
                format!(
                    "spool unreadable: {samples} samples lost to a torn or corrupt record in the agent's disk spool"
                )
            }
        }
    }
}

/// Counts that show how the spool is doing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpoolStats {
    /// Batches and gaps waiting for an acknowledgement.
    pub entries: usize,
    /// Bytes counted against the limit.
    pub bytes: u64,
    /// Highest sequence number the collector acknowledged.
    pub acked_seq: u64,
    /// The number the next batch gets.
    pub next_seq: u64,
    /// Samples dropped by overflow since this spool was opened.
    pub overflow_dropped: u64,
}

#[derive(Debug)]
struct Entry {
    last: u64,
    kind: EntryKind,
    held: Held,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EntryKind {
    Batch,
    Gap(GapCause),
}

/// Where an entry's bytes are.
#[derive(Debug)]
enum Held {
    /// The encoded batch (empty for a gap) in memory: the memory spool, or a
    /// disk spool whose write failed.
    Memory(Vec<u8>),
    /// The record in a segment file; a batch's payload is at `offset..offset+len`.
    Disk { segment: u64, offset: u64, len: u32 },
}

/// The spool. Sequence numbers start at 1 and only grow.
#[derive(Debug)]
pub struct Spool {
    max_bytes: u64,
    /// Keyed by the first sequence number an entry covers.
    entries: BTreeMap<u64, Entry>,
    next_seq: u64,
    acked: u64,
    /// First number handed out by this process; `None` once a Welcome
    /// confirmed the numbering.
    provisional_from: Option<u64>,
    memory_bytes: u64,
    overflow_dropped: u64,
    disk: Option<DiskLog>,
    replayed_pods: Vec<pb::PodIdentity>,
    /// The batch pushed last, while it is still held: the stream usually
    /// sends exactly it next, which then needs no decoding of its payload.
    fresh: Option<(u64, pb::Batch)>,
}

impl Spool {
    /// An in-memory spool.
    pub fn in_memory(max_bytes: u64) -> Self {
        Self {
            max_bytes,
            entries: BTreeMap::new(),
            next_seq: 1,
            acked: 0,
            provisional_from: Some(1),
            memory_bytes: 0,
            overflow_dropped: 0,
            disk: None,
            replayed_pods: Vec::new(),
            fresh: None,
        }
    }

    /// Opens the spool `config` describes, replaying a disk spool left by an
    /// earlier run.
    pub fn open(config: &SpoolConfig) -> Result<Self, SpoolError> {
        let mut spool = Self::in_memory(config.max_bytes);
        if let Some(dir) = &config.dir {
            let (disk, replay) = DiskLog::open(dir, config)?;
            spool.apply_replay(replay);
            spool.disk = Some(disk);
            spool.start_segment_after_replay();
            spool.enforce_limit();
        }
        spool.provisional_from = Some(spool.next_seq);
        Ok(spool)
    }

    /// Adds a batch (its `seq` is ignored) and returns the sequence number it got.
    pub fn push(&mut self, mut batch: pb::Batch) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.note_seqs();
        // The number lives in the entry, not in the payload, so that a
        // renumbering never has to rewrite a payload.
        batch.seq = 0;
        let payload = batch.encode_to_vec();
        let held = match &mut self.disk {
            Some(disk) => match disk.append(&Record::Batch { seq, payload: &payload }) {
                Ok((segment, body_offset)) => {
                    // The payload follows the kind byte and the sequence number.
                    let offset = body_offset + BATCH_PAYLOAD_OFFSET;
                    Held::Disk { segment, offset, len: payload.len() as u32 }
                }
                Err(error) => {
                    disk.warn_write_failed(&error);
                    Held::Memory(payload)
                }
            },
            None => Held::Memory(payload),
        };
        self.insert(seq, Entry { last: seq, kind: EntryKind::Batch, held });
        self.fresh = Some((seq, batch));
        self.enforce_limit();
        if let Some(disk) = &mut self.disk {
            disk.maybe_sync();
        }
        seq
    }

    /// The collector's Welcome: confirms (or shifts) the provisional numbers
    /// of this process and forgets what the collector already committed.
    pub fn welcome(&mut self, committed: u64) {
        if let Some(from) = self.provisional_from.take()
            && committed >= from
        {
            self.renumber(from, committed + 1);
        }
        if committed >= self.next_seq {
            tracing::warn!(
                committed,
                next_seq = self.next_seq,
                "the collector has committed sequence numbers this agent never sent: \
                 is another agent running with the same node name?"
            );
            self.next_seq = committed + 1;
        }
        self.ack(committed);
        self.note_seqs();
        if let Some(disk) = &mut self.disk {
            // Persist the (possibly moved) next number even without an ack.
            disk.append_checkpoint();
        }
    }

    /// The collector's Ack: everything up to `committed` is durable there.
    pub fn ack(&mut self, committed: u64) {
        if committed <= self.acked {
            return;
        }
        self.acked = committed;
        self.note_seqs();
        while let Some(entry) = self.entries.first_entry() {
            let first = *entry.key();
            if first > committed {
                break;
            }
            let entry = entry.remove();
            if entry.last > committed {
                // A gap partly acknowledged: keep the rest (the disk record
                // still covers the whole range; the checkpoint trims it on replay).
                self.entries.insert(committed + 1, entry);
                break;
            }
            self.release(entry.held);
        }
        if let Some(disk) = &mut self.disk {
            disk.append_checkpoint();
            disk.delete_dead_segments();
            disk.maybe_sync();
        }
    }

    /// The next message to send after `sent_through`: the entry covering
    /// `sent_through + 1` or the first one after it. A gap is cut to start
    /// there (the collector already has what came before).
    pub fn next_after(&mut self, sent_through: u64) -> Option<pb::agent_message::Kind> {
        let start = sent_through.checked_add(1)?;
        let covering = self.entries.range(..=start).next_back().filter(|(_, e)| e.last >= start).map(|(k, _)| *k);
        let key = covering.or_else(|| self.entries.range(start..).next().map(|(k, _)| *k))?;
        let entry = self.entries.get(&key)?;
        match entry.kind {
            EntryKind::Gap(cause) => {
                let first = key.max(start);
                Some(pb::agent_message::Kind::Gap(pb::Gap {
                    first_seq: first,
                    last_seq: entry.last,
                    reason: cause.reason(entry.last - first + 1),
                }))
            }
            EntryKind::Batch if self.fresh.as_ref().is_some_and(|(seq, _)| *seq == key) => {
                let (_, mut batch) = self.fresh.take()?;
                batch.seq = key;
                Some(pb::agent_message::Kind::Batch(batch))
            }
            EntryKind::Batch => match read_batch(key, &entry.held, self.disk.as_mut()) {
                Ok(mut batch) => {
                    batch.seq = key;
                    Some(pb::agent_message::Kind::Batch(batch))
                }
                Err(error) => {
                    tracing::warn!(seq = key, %error, "a spooled batch cannot be read back; it is sent as a gap");
                    self.replace_with_unreadable_gap(key);
                    self.next_after(sent_through)
                }
            },
        }
    }

    /// The first sequence number still held (the next one when empty), for
    /// the Hello.
    pub fn oldest_seq(&self) -> u64 {
        self.entries.keys().next().copied().unwrap_or(self.next_seq)
    }

    /// The last number handed out (0 before the first).
    pub fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    pub fn acked_seq(&self) -> u64 {
        self.acked
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes counted against the limit.
    pub fn bytes(&self) -> u64 {
        self.memory_bytes + self.disk.as_ref().map_or(0, DiskLog::total_bytes)
    }

    pub fn stats(&self) -> SpoolStats {
        SpoolStats {
            entries: self.entries.len(),
            bytes: self.bytes(),
            acked_seq: self.acked,
            next_seq: self.next_seq,
            overflow_dropped: self.overflow_dropped,
        }
    }

    pub fn is_on_disk(&self) -> bool {
        self.disk.is_some()
    }

    /// The pod identities found in replayed batches, so the agent keeps
    /// their numbers (see [`crate::wire::PodRefs::adopt`]). Empties the list.
    pub fn take_replayed_pods(&mut self) -> Vec<pb::PodIdentity> {
        std::mem::take(&mut self.replayed_pods)
    }

    /// Forces what was written to stable storage (shutdown).
    pub fn sync(&mut self) -> io::Result<()> {
        match &mut self.disk {
            Some(disk) => disk.sync(),
            None => Ok(()),
        }
    }

    /// Tells the disk log the numbers every new segment's checkpoint records.
    fn note_seqs(&mut self) {
        if let Some(disk) = &mut self.disk {
            disk.checkpoint = (self.next_seq, self.acked);
        }
    }

    fn insert(&mut self, first: u64, entry: Entry) {
        self.hold(&entry.held);
        if let Some(old) = self.entries.insert(first, entry) {
            self.release(old.held);
        }
    }

    fn hold(&mut self, held: &Held) {
        match held {
            Held::Memory(payload) => self.memory_bytes += payload.len() as u64 + ENTRY_OVERHEAD_BYTES,
            Held::Disk { segment, .. } => {
                if let Some(disk) = &mut self.disk {
                    disk.hold(*segment);
                }
            }
        }
    }

    fn release(&mut self, held: Held) {
        match held {
            Held::Memory(payload) => {
                self.memory_bytes = self.memory_bytes.saturating_sub(payload.len() as u64 + ENTRY_OVERHEAD_BYTES)
            }
            Held::Disk { segment, .. } => {
                if let Some(disk) = &mut self.disk {
                    disk.release(segment);
                }
            }
        }
    }

    fn replace_with_unreadable_gap(&mut self, seq: u64) {
        if let Some(entry) = self.entries.remove(&seq) {
            self.release(entry.held);
        }
        let held = self.write_gap(seq, seq, GapCause::Unreadable);
        self.insert(seq, Entry { last: seq, kind: EntryKind::Gap(GapCause::Unreadable), held });
    }

    fn write_gap(&mut self, first: u64, last: u64, cause: GapCause) -> Held {
        match &mut self.disk {
            Some(disk) => match disk.append(&Record::Gap { first, last, cause }) {
                Ok((segment, offset)) => Held::Disk { segment, offset, len: 0 },
                Err(error) => {
                    disk.warn_write_failed(&error);
                    Held::Memory(Vec::new())
                }
            },
            None => Held::Memory(Vec::new()),
        }
    }

    /// Shifts every entry numbered `from` or later to start at `to`.
    fn renumber(&mut self, from: u64, to: u64) {
        self.fresh = None;
        tracing::info!(
            from,
            to,
            "the collector already has this node's numbers from an earlier run; renumbering the new samples after them"
        );
        let delta = to - from;
        let moved = self.entries.split_off(&from);
        for (first, mut entry) in moved {
            entry.last += delta;
            self.entries.insert(first + delta, entry);
        }
        self.next_seq += delta;
        self.note_seqs();
        if let Some(disk) = &mut self.disk
            && let Err(error) = disk.append(&Record::Renumber { from, to })
        {
            disk.warn_write_failed(&error);
        }
    }

    /// Drops the oldest batches until the spool fits its limit again, and
    /// records what went as one overflow gap.
    fn enforce_limit(&mut self) {
        while self.bytes() > self.max_bytes {
            let Some((&oldest, oldest_entry)) = self.entries.iter().find(|(_, e)| e.kind == EntryKind::Batch) else {
                break;
            };
            let drop_through = match &oldest_entry.held {
                Held::Memory(_) => oldest,
                Held::Disk { segment, .. } => {
                    let segment = *segment;
                    if let Some(disk) = &mut self.disk
                        && disk.active_id == segment
                    {
                        disk.rotate();
                    }
                    // Everything the oldest segment holds goes at once: only
                    // a whole segment gives disk space back.
                    self.entries
                        .iter()
                        .filter(|(_, e)| matches!(e.held, Held::Disk { segment: s, .. } if s == segment))
                        .map(|(_, e)| e.last)
                        .max()
                        .unwrap_or(oldest)
                }
            };
            let dropped = self.entries.range(oldest..=drop_through).map(|(first, e)| e.last - first + 1).sum::<u64>();
            let after = self.entries.split_off(&(drop_through + 1));
            let mut kept_before = std::mem::replace(&mut self.entries, after);
            let removed = kept_before.split_off(&oldest);
            for (_, entry) in removed {
                self.release(entry.held);
            }
            // Merge with an overflow gap right before the dropped range.
            let mut first = oldest;
            if let Some(previous) = kept_before.last_entry()
                && previous.get().last + 1 == oldest
                && matches!(previous.get().kind, EntryKind::Gap(GapCause::Overflow { .. }))
            {
                let (start, entry) = previous.remove_entry();
                first = start;
                self.release(entry.held);
            }
            for (key, entry) in kept_before {
                self.entries.insert(key, entry);
            }
            self.overflow_dropped += dropped;
            let cause = GapCause::Overflow { limit_bytes: self.max_bytes };
            tracing::warn!(
                first_seq = first,
                last_seq = drop_through,
                dropped,
                limit_bytes = self.max_bytes,
                "spool full: the oldest samples were dropped; the collector will record the range as a gap"
            );
            let held = self.write_gap(first, drop_through, cause);
            self.insert(first, Entry { last: drop_through, kind: EntryKind::Gap(cause), held });
            if let Some(disk) = &mut self.disk {
                disk.delete_dead_segments();
            }
        }
    }

    /// Rebuilds the entries from the records of the disk spool, in order.
    fn apply_replay(&mut self, replay: Replay) {
        for (segment, offset, record) in replay.records {
            match record {
                OwnedRecord::Batch { seq, payload_len, pods: _ } => {
                    let held = Held::Disk { segment, offset: offset + BATCH_PAYLOAD_OFFSET, len: payload_len };
                    self.entries.insert(seq, Entry { last: seq, kind: EntryKind::Batch, held });
                    self.next_seq = self.next_seq.max(seq + 1);
                }
                OwnedRecord::Gap { first, last, cause } => {
                    let overlapping: Vec<u64> = self
                        .entries
                        .range(..=last)
                        .filter(|(k, e)| e.last >= first && **k <= last)
                        .map(|(k, _)| *k)
                        .collect();
                    for key in overlapping {
                        self.entries.remove(&key);
                    }
                    let held = Held::Disk { segment, offset, len: 0 };
                    self.entries.insert(first, Entry { last, kind: EntryKind::Gap(cause), held });
                    self.next_seq = self.next_seq.max(last + 1);
                }
                OwnedRecord::Checkpoint { next_seq, acked } => {
                    self.next_seq = self.next_seq.max(next_seq);
                    if acked > self.acked {
                        self.acked = acked;
                        let later = self.entries.split_off(&(acked + 1));
                        let straddling = self.entries.pop_last().filter(|(_, e)| e.last > acked);
                        self.entries = later;
                        if let Some((_, entry)) = straddling {
                            self.entries.insert(acked + 1, entry);
                        }
                    }
                }
                OwnedRecord::Renumber { from, to } => {
                    let delta = to.saturating_sub(from);
                    let moved = self.entries.split_off(&from);
                    for (first, mut entry) in moved {
                        entry.last += delta;
                        self.entries.insert(first + delta, entry);
                    }
                    self.next_seq = self.next_seq.max(to);
                }
            }
        }
        self.next_seq = self.next_seq.max(self.acked + 1);
        // Entries of segments a torn record cut short leave holes: declare them.
        let mut expected = self.acked + 1;
        let mut holes = Vec::new();
        for (first, entry) in &self.entries {
            if *first > expected {
                holes.push((expected, first - 1));
            }
            expected = expected.max(entry.last + 1);
        }
        for (first, last) in holes {
            tracing::warn!(first_seq = first, last_seq = last, "samples in the disk spool could not be read back");
            let held = Held::Memory(Vec::new());
            self.entries.insert(first, Entry { last, kind: EntryKind::Gap(GapCause::Unreadable), held });
        }
        for problem in &replay.problems {
            tracing::warn!(%problem, "disk spool: replay stopped early in a segment");
        }
        self.replayed_pods = replay.pods.into_values().collect();
    }

    /// After a replay: count what each segment holds, persist the
    /// unreadable gaps, open a fresh active segment and delete the dead ones.
    fn start_segment_after_replay(&mut self) {
        let Some(disk) = &mut self.disk else { return };
        for entry in self.entries.values() {
            match &entry.held {
                Held::Disk { segment, .. } => disk.hold(*segment),
                Held::Memory(payload) => self.memory_bytes += payload.len() as u64 + ENTRY_OVERHEAD_BYTES,
            }
        }
        disk.checkpoint = (self.next_seq, self.acked);
        disk.rotate();
        let unreadable: Vec<(u64, u64)> = self
            .entries
            .iter()
            .filter(|(_, e)| e.kind == EntryKind::Gap(GapCause::Unreadable) && matches!(e.held, Held::Memory(_)))
            .map(|(k, e)| (*k, e.last))
            .collect();
        for (first, last) in unreadable {
            let held = self.write_gap(first, last, GapCause::Unreadable);
            if let Some(entry) = self.entries.remove(&first) {
                self.release(entry.held);
            }
            self.insert(first, Entry { last, kind: EntryKind::Gap(GapCause::Unreadable), held });
        }
        if let Some(disk) = &mut self.disk {
            disk.delete_dead_segments();
            disk.maybe_sync();
        }
    }
}

fn read_batch(seq: u64, held: &Held, disk: Option<&mut DiskLog>) -> io::Result<pb::Batch> {
    let decode = |bytes: &[u8]| {
        pb::Batch::decode(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("seq {seq}: {e}")))
    };
    match held {
        Held::Memory(payload) => decode(payload),
        Held::Disk { segment, offset, len } => {
            let disk = disk.ok_or_else(|| io::Error::other("no disk spool"))?;
            decode(&disk.read(*segment, *offset, *len)?)
        }
    }
}

// ------------------------------------------------------------------ records

const KIND_BATCH: u8 = 1;
const KIND_GAP: u8 = 2;
const KIND_CHECKPOINT: u8 = 3;
const KIND_RENUMBER: u8 = 4;

const CAUSE_OVERFLOW: u8 = 1;
const CAUSE_UNREADABLE: u8 = 2;

/// A batch body is `[kind][u64 seq][payload]`.
const BATCH_PAYLOAD_OFFSET: u64 = 1 + 8;

/// One record of the disk log, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Record<'a> {
    Batch { seq: u64, payload: &'a [u8] },
    Gap { first: u64, last: u64, cause: GapCause },
    Checkpoint { next_seq: u64, acked: u64 },
    Renumber { from: u64, to: u64 },
}

/// One record of the disk log, as replayed (a batch's payload stays on disk;
/// only its pod identities are kept).
#[derive(Debug, Clone, PartialEq)]
enum OwnedRecord {
    Batch { seq: u64, payload_len: u32, pods: Vec<pb::PodIdentity> },
    Gap { first: u64, last: u64, cause: GapCause },
    Checkpoint { next_seq: u64, acked: u64 },
    Renumber { from: u64, to: u64 },
}

/// Only the pod identities of an encoded `bakery.v1.Batch` (tag 2): prost
/// skips the samples without building them.
#[derive(Clone, PartialEq, prost::Message)]
struct BatchPods {
    #[prost(message, repeated, tag = "2")]
    new_pods: Vec<pb::PodIdentity>,
}

/// `[u32 LE len][u32 LE crc32(body)][body]`.
fn encode_record(record: &Record<'_>) -> Vec<u8> {
    let mut body = Vec::with_capacity(32);
    match record {
        Record::Batch { seq, payload } => {
            body.push(KIND_BATCH);
            body.extend_from_slice(&seq.to_le_bytes());
            body.extend_from_slice(payload);
        }
        Record::Gap { first, last, cause } => {
            body.push(KIND_GAP);
            body.extend_from_slice(&first.to_le_bytes());
            body.extend_from_slice(&last.to_le_bytes());
            let (code, limit) = match cause {
                GapCause::Overflow { limit_bytes } => (CAUSE_OVERFLOW, *limit_bytes),
                GapCause::Unreadable => (CAUSE_UNREADABLE, 0),
            };
            body.push(code);
            body.extend_from_slice(&limit.to_le_bytes());
        }
        Record::Checkpoint { next_seq, acked } => {
            body.push(KIND_CHECKPOINT);
            body.extend_from_slice(&next_seq.to_le_bytes());
            body.extend_from_slice(&acked.to_le_bytes());
        }
        Record::Renumber { from, to } => {
            body.push(KIND_RENUMBER);
            body.extend_from_slice(&from.to_le_bytes());
            body.extend_from_slice(&to.to_le_bytes());
        }
    }
    let mut framed = Vec::with_capacity(RECORD_HEADER_BYTES + body.len());
    framed.extend_from_slice(&(body.len() as u32).to_le_bytes());
    framed.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    framed.extend_from_slice(&body);
    framed
}

/// The records of one segment's bytes, each with the offset of its body,
/// and why decoding stopped early (a torn or corrupt record), if it did.
fn decode_records(bytes: &[u8]) -> (Vec<(u64, OwnedRecord)>, Option<String>) {
    let mut records = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let rest = &bytes[at..];
        if rest.len() < RECORD_HEADER_BYTES {
            return (records, Some(format!("torn record header at byte {at} ({} bytes left)", rest.len())));
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
        let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        if len > MAX_RECORD_BODY_BYTES {
            return (records, Some(format!("impossible record length {len} at byte {at}")));
        }
        let Some(body) = rest.get(RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + len as usize) else {
            return (
                records,
                Some(format!("torn record at byte {at}: {len} bytes announced, {} present", rest.len() - 8)),
            );
        };
        if crc32fast::hash(body) != crc {
            return (records, Some(format!("checksum mismatch in the record at byte {at}")));
        }
        let body_offset = (at + RECORD_HEADER_BYTES) as u64;
        match decode_body(body) {
            Some(record) => records.push((body_offset, record)),
            None => return (records, Some(format!("unknown record at byte {at}"))),
        }
        at += RECORD_HEADER_BYTES + len as usize;
    }
    (records, None)
}

fn decode_body(body: &[u8]) -> Option<OwnedRecord> {
    let u64_at = |offset: usize| -> Option<u64> {
        body.get(offset..offset + 8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes)
    };
    match *body.first()? {
        KIND_BATCH => {
            let seq = u64_at(1)?;
            let payload = body.get(BATCH_PAYLOAD_OFFSET as usize..)?;
            let pods = BatchPods::decode(payload).ok()?.new_pods;
            Some(OwnedRecord::Batch { seq, payload_len: u32::try_from(payload.len()).ok()?, pods })
        }
        KIND_GAP => {
            let (first, last) = (u64_at(1)?, u64_at(9)?);
            let cause = match *body.get(17)? {
                CAUSE_OVERFLOW => GapCause::Overflow { limit_bytes: u64_at(18)? },
                CAUSE_UNREADABLE => GapCause::Unreadable,
                _ => return None,
            };
            (first <= last).then_some(OwnedRecord::Gap { first, last, cause })
        }
        KIND_CHECKPOINT => Some(OwnedRecord::Checkpoint { next_seq: u64_at(1)?, acked: u64_at(9)? }),
        KIND_RENUMBER => {
            let (from, to) = (u64_at(1)?, u64_at(9)?);
            (to >= from).then_some(OwnedRecord::Renumber { from, to })
        }
        _ => None,
    }
}

// ------------------------------------------------------------------ disk log

#[derive(Debug, Default)]
struct Replay {
    /// (segment, body offset, record) in log order; batches without their pods.
    records: Vec<(u64, u64, OwnedRecord)>,
    problems: Vec<String>,
    /// The latest identity of every pod the replayed batches mention, by
    /// UID: one copy each, however many batches repeat it.
    pods: HashMap<String, pb::PodIdentity>,
}

#[derive(Debug, Clone, Copy, Default)]
struct SegmentInfo {
    bytes: u64,
    /// Entries of the spool held in this segment.
    live: usize,
}

/// The segment files of a disk spool.
#[derive(Debug)]
struct DiskLog {
    dir: PathBuf,
    /// Held for the spool's lifetime: an advisory lock against a second agent.
    _lock: File,
    active_id: u64,
    active: Option<File>,
    segments: BTreeMap<u64, SegmentInfo>,
    segment_bytes: u64,
    fsync_interval: Duration,
    last_sync: Instant,
    dirty: bool,
    reader: Option<(u64, File)>,
    last_warning: Option<Instant>,
    /// The spool's (next sequence number, acknowledged one). Every segment
    /// starts with them, so that deleting older segments never loses them.
    checkpoint: (u64, u64),
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:016}.seg"))
}

impl DiskLog {
    fn open(dir: &Path, config: &SpoolConfig) -> Result<(Self, Replay), SpoolError> {
        std::fs::create_dir_all(dir).map_err(|e| SpoolError::io(dir, e))?;
        let lock_path = dir.join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| SpoolError::io(&lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(SpoolError::InUse(dir.to_path_buf())),
            Err(std::fs::TryLockError::Error(e)) => return Err(SpoolError::io(&lock_path, e)),
        }
        let mut ids = Vec::new();
        for item in std::fs::read_dir(dir).map_err(|e| SpoolError::io(dir, e))? {
            let item = item.map_err(|e| SpoolError::io(dir, e))?;
            let name = item.file_name();
            let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".seg")).and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            ids.push(id);
        }
        ids.sort_unstable();
        let mut replay = Replay::default();
        let mut segments = BTreeMap::new();
        for id in &ids {
            let path = segment_path(dir, *id);
            let bytes = std::fs::read(&path).map_err(|e| SpoolError::io(&path, e))?;
            let (records, problem) = decode_records(&bytes);
            if let Some(problem) = problem {
                replay.problems.push(format!("{}: {problem}", path.display()));
            }
            for (offset, mut record) in records {
                if let OwnedRecord::Batch { pods, .. } = &mut record {
                    for identity in std::mem::take(pods) {
                        replay.pods.insert(identity.uid.clone(), identity);
                    }
                }
                replay.records.push((*id, offset, record));
            }
            segments.insert(*id, SegmentInfo { bytes: bytes.len() as u64, live: 0 });
        }
        let log = Self {
            dir: dir.to_path_buf(),
            _lock: lock,
            active_id: ids.last().copied().unwrap_or(0),
            active: None,
            segments,
            segment_bytes: config.segment_bytes(),
            fsync_interval: config.fsync_interval,
            last_sync: Instant::now(),
            dirty: false,
            reader: None,
            last_warning: None,
            checkpoint: (1, 0),
        };
        Ok((log, replay))
    }

    fn total_bytes(&self) -> u64 {
        self.segments.values().map(|s| s.bytes).sum()
    }

    fn hold(&mut self, segment: u64) {
        if let Some(info) = self.segments.get_mut(&segment) {
            info.live += 1;
        }
    }

    fn release(&mut self, segment: u64) {
        if let Some(info) = self.segments.get_mut(&segment) {
            info.live = info.live.saturating_sub(1);
        }
    }

    /// Starts a new active segment (the old one is synced first, so a
    /// finished segment is durable as a whole).
    fn rotate(&mut self) {
        if let Some(old) = &self.active
            && self.dirty
            && let Err(error) = old.sync_data()
        {
            self.warn_write_failed(&error);
        }
        let id = self.active_id + 1;
        let path = segment_path(&self.dir, id);
        match OpenOptions::new().create_new(true).append(true).open(&path) {
            Ok(file) => {
                self.active = Some(file);
                self.active_id = id;
                self.segments.insert(id, SegmentInfo::default());
                self.dirty = false;
                // The new file's directory entry must survive a power loss too.
                if let Ok(dir) = File::open(&self.dir) {
                    let _ = dir.sync_all();
                }
                self.append_checkpoint();
            }
            Err(error) => self.warn_write_failed(&error),
        }
    }

    /// Appends one record with a single `write`; returns (segment, body offset).
    fn append(&mut self, record: &Record<'_>) -> io::Result<(u64, u64)> {
        let framed = encode_record(record);
        let active_bytes = self.segments.get(&self.active_id).map_or(0, |s| s.bytes);
        if self.active.is_none() || (active_bytes > 0 && active_bytes + framed.len() as u64 > self.segment_bytes) {
            self.rotate();
        }
        let id = self.active_id;
        let file = self.active.as_mut().ok_or_else(|| io::Error::other("no writable spool segment"))?;
        let start = self.segments.get(&id).map_or(0, |s| s.bytes);
        if let Err(error) = file.write_all(&framed) {
            // Cut a partial write off so that later records stay readable.
            if file.set_len(start).is_err() {
                self.active = None;
            }
            return Err(error);
        }
        self.dirty = true;
        if let Some(info) = self.segments.get_mut(&id) {
            info.bytes += framed.len() as u64;
        }
        Ok((id, start + RECORD_HEADER_BYTES as u64))
    }

    fn append_checkpoint(&mut self) {
        let (next_seq, acked) = self.checkpoint;
        if let Err(error) = self.append(&Record::Checkpoint { next_seq, acked }) {
            self.warn_write_failed(&error);
        }
    }

    fn read(&mut self, segment: u64, offset: u64, len: u32) -> io::Result<Vec<u8>> {
        if self.reader.as_ref().map(|(id, _)| *id) != Some(segment) {
            self.reader = Some((segment, File::open(segment_path(&self.dir, segment))?));
        }
        let (_, file) = self.reader.as_mut().ok_or_else(|| io::Error::other("no reader"))?;
        file.seek(SeekFrom::Start(offset))?;
        let mut payload = vec![0; len as usize];
        file.read_exact(&mut payload)?;
        Ok(payload)
    }

    /// Deletes every segment, except the active one, that holds nothing
    /// unacknowledged any more.
    fn delete_dead_segments(&mut self) {
        let dead: Vec<u64> = self
            .segments
            .iter()
            .filter(|(id, info)| **id != self.active_id && info.live == 0)
            .map(|(id, _)| *id)
            .collect();
        for id in dead {
            let path = segment_path(&self.dir, id);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => {
                    self.warn_write_failed(&error);
                    continue;
                }
            }
            self.segments.remove(&id);
            if self.reader.as_ref().map(|(r, _)| *r) == Some(id) {
                self.reader = None;
            }
        }
    }

    fn maybe_sync(&mut self) {
        if self.dirty
            && self.last_sync.elapsed() >= self.fsync_interval
            && let Err(error) = self.sync()
        {
            self.warn_write_failed(&error);
        }
    }

    fn sync(&mut self) -> io::Result<()> {
        if let Some(file) = &self.active
            && self.dirty
        {
            file.sync_data()?;
        }
        self.dirty = false;
        self.last_sync = Instant::now();
        Ok(())
    }

    fn warn_write_failed(&mut self, error: &io::Error) {
        if self.last_warning.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
            self.last_warning = Some(Instant::now());
            tracing::warn!(
                dir = %self.dir.display(),
                %error,
                "cannot write the disk spool; unacknowledged samples are kept in memory meanwhile"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use pb::agent_message::Kind;

    use super::*;

    /// A batch whose single sample is `size` bytes of pod data, with a
    /// timestamp that identifies it.
    fn batch(stamp: i64, size: usize) -> pb::Batch {
        pb::Batch {
            seq: 0,
            new_pods: vec![pb::PodIdentity { pod_ref: 3, uid: format!("uid-{stamp}"), ..Default::default() }],
            samples: vec![pb::Sample {
                timestamp_ms: stamp,
                unavailable: vec![pb::Unavailable { signal: "x".repeat(size), reason: String::new() }],
                ..Default::default()
            }],
        }
    }

    /// Everything the spool would send after `from`, in order.
    fn drain(spool: &mut Spool, from: u64) -> Vec<Kind> {
        let mut out = Vec::new();
        let mut cursor = from;
        while let Some(kind) = spool.next_after(cursor) {
            cursor = match &kind {
                Kind::Batch(b) => b.seq,
                Kind::Gap(g) => g.last_seq,
                Kind::Hello(_) => unreachable!(),
            };
            out.push(kind);
        }
        out
    }

    /// (seq, timestamp) of batches and (first, last, reason) of gaps, readable in asserts.
    #[derive(Debug, PartialEq)]
    enum Seen {
        B(u64, i64),
        G(u64, u64, String),
    }

    fn seen(kinds: &[Kind]) -> Vec<Seen> {
        kinds
            .iter()
            .map(|k| match k {
                Kind::Batch(b) => Seen::B(b.seq, b.samples[0].timestamp_ms),
                Kind::Gap(g) => Seen::G(g.first_seq, g.last_seq, g.reason.clone()),
                Kind::Hello(_) => unreachable!(),
            })
            .collect()
    }

    /// A disk spool that leaves fsync to rotation: what these tests replay
    /// comes from the page cache, as after `kill -9`.
    fn disk_config(dir: &Path, max_bytes: u64) -> SpoolConfig {
        SpoolConfig { dir: Some(dir.to_path_buf()), max_bytes, fsync_interval: Duration::from_secs(3600) }
    }

    fn segment_files(dir: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "seg"))
            .collect();
        files.sort();
        files
    }

    #[test]
    fn the_batch_pushed_last_is_sent_as_pushed_and_the_others_as_decoded() {
        let mut spool = Spool::in_memory(1 << 20);
        spool.push(batch(1, 10));
        spool.push(batch(2, 10));
        let expected = |stamp, seq| Some(pb::agent_message::Kind::Batch(pb::Batch { seq, ..batch(stamp, 10) }));
        // The second is the fresh one, handed over without decoding, once.
        assert_eq!(spool.next_after(1), expected(2, 2));
        assert_eq!(spool.next_after(1), expected(2, 2), "sent again (a new stream): decoded");
        assert_eq!(spool.next_after(0), expected(1, 1));
    }

    #[test]
    fn batches_get_growing_numbers_and_leave_only_when_acknowledged() {
        let mut spool = Spool::in_memory(DEFAULT_MAX_BYTES);
        for stamp in 1..=4 {
            assert_eq!(spool.push(batch(stamp * 10, 10)), stamp as u64);
        }
        assert_eq!(seen(&drain(&mut spool, 0)), [Seen::B(1, 10), Seen::B(2, 20), Seen::B(3, 30), Seen::B(4, 40)]);
        assert_eq!(seen(&drain(&mut spool, 2)), [Seen::B(3, 30), Seen::B(4, 40)], "resume after what was sent");
        spool.ack(2);
        assert_eq!(spool.oldest_seq(), 3);
        assert_eq!(seen(&drain(&mut spool, 0)), [Seen::B(3, 30), Seen::B(4, 40)], "acknowledged entries are gone");
        spool.ack(1);
        assert_eq!(spool.acked_seq(), 2, "an older ack changes nothing");
        spool.ack(4);
        assert!(spool.is_empty());
        assert_eq!((spool.oldest_seq(), spool.last_seq()), (5, 4));
        assert_eq!(spool.bytes(), 0);
    }

    #[test]
    fn a_batch_keeps_its_pods_and_samples_through_the_spool() {
        let mut spool = Spool::in_memory(DEFAULT_MAX_BYTES);
        let original = batch(7, 100);
        spool.push(pb::Batch { seq: 99, ..original.clone() });
        let Some(Kind::Batch(sent)) = spool.next_after(0) else { panic!("expected a batch") };
        assert_eq!(sent, pb::Batch { seq: 1, ..original }, "the spool's number replaces the caller's");
    }

    #[test]
    fn overflow_drops_the_oldest_and_reports_the_range_as_one_gap_in_order() {
        let per_entry = batch(0, 1000).encoded_len() as u64 + ENTRY_OVERHEAD_BYTES;
        let limit = per_entry * 5 + 10;
        let mut spool = Spool::in_memory(limit);
        for stamp in 1..=8 {
            spool.push(batch(stamp, 1000));
            assert!(spool.bytes() <= limit, "the limit holds after every push");
        }
        // 8 batches, room for 5 minus the gap's own bookkeeping: 1..=4 went.
        let reason = format!("spool overflow: 4 samples dropped, limit {limit} bytes");
        assert_eq!(
            seen(&drain(&mut spool, 0)),
            [Seen::G(1, 4, reason), Seen::B(5, 5), Seen::B(6, 6), Seen::B(7, 7), Seen::B(8, 8)]
        );
        assert_eq!(spool.stats().overflow_dropped, 4);
    }

    #[test]
    fn a_gap_is_cut_to_what_the_collector_does_not_have_yet() {
        let per_entry = batch(0, 1000).encoded_len() as u64 + ENTRY_OVERHEAD_BYTES;
        let limit = per_entry * 3 + 10;
        let mut spool = Spool::in_memory(limit);
        for stamp in 1..=6 {
            spool.push(batch(stamp, 1000));
        }
        let all = seen(&drain(&mut spool, 0));
        let Seen::G(1, last, _) = all[0] else { panic!("expected a leading gap, got {all:?}") };
        // Batches 1 and 2 reached the collector before they were dropped.
        let after_two = seen(&drain(&mut spool, 2));
        let reason = format!("spool overflow: {} samples dropped, limit {limit} bytes", last - 2);
        assert_eq!(after_two[0], Seen::G(3, last, reason));
        spool.ack(2);
        assert!(matches!(&seen(&drain(&mut spool, 0))[0], Seen::G(3, l, _) if *l == last), "ack trims the gap");
    }

    #[test]
    fn consecutive_overflows_merge_into_one_gap() {
        let per_entry = batch(0, 1000).encoded_len() as u64 + ENTRY_OVERHEAD_BYTES;
        let mut spool = Spool::in_memory(per_entry * 2 + 10);
        for stamp in 1..=20 {
            spool.push(batch(stamp, 1000));
        }
        let all = seen(&drain(&mut spool, 0));
        assert_eq!(all.len(), 2, "{all:?}");
        let limit = per_entry * 2 + 10;
        assert_eq!(all[0], Seen::G(1, 19, format!("spool overflow: 19 samples dropped, limit {limit} bytes")));
        assert_eq!(all[1], Seen::B(20, 20));
    }

    #[test]
    fn numbers_handed_out_before_the_first_welcome_move_after_what_the_collector_has() {
        let mut spool = Spool::in_memory(DEFAULT_MAX_BYTES);
        spool.push(batch(1, 10));
        spool.push(batch(2, 10));
        spool.welcome(41);
        assert_eq!(seen(&drain(&mut spool, 41)), [Seen::B(42, 1), Seen::B(43, 2)]);
        assert_eq!(spool.push(batch(3, 10)), 44);
        spool.ack(44);
        spool.welcome(0);
        assert_eq!(spool.push(batch(4, 10)), 45, "after the first welcome numbers never move back");
    }

    #[test]
    fn after_a_restart_committed_entries_of_the_earlier_run_go_and_new_numbers_stay() {
        let dir = tempfile::tempdir().unwrap();
        let config = disk_config(dir.path(), DEFAULT_MAX_BYTES);
        {
            let mut spool = Spool::open(&config).unwrap();
            for stamp in 1..=3 {
                spool.push(batch(stamp, 10));
            }
        }
        let mut spool = Spool::open(&config).unwrap();
        spool.push(batch(4, 10));
        // The earlier run sent 1 and 2 but was killed before their ack arrived.
        spool.welcome(2);
        assert_eq!(seen(&drain(&mut spool, 2)), [Seen::B(3, 3), Seen::B(4, 4)]);
    }

    #[test]
    fn the_disk_spool_survives_a_restart_with_its_numbers_and_payloads() {
        let dir = tempfile::tempdir().unwrap();
        let config = disk_config(dir.path(), DEFAULT_MAX_BYTES);
        {
            let mut spool = Spool::open(&config).unwrap();
            for stamp in 1..=5 {
                spool.push(batch(stamp, 100));
            }
            spool.ack(2);
            // Dropped without sync, as after kill -9: the page cache has it.
        }
        let mut spool = Spool::open(&config).unwrap();
        assert!(spool.is_on_disk());
        assert_eq!(spool.acked_seq(), 2);
        assert_eq!(seen(&drain(&mut spool, 0)), [Seen::B(3, 3), Seen::B(4, 4), Seen::B(5, 5)]);
        assert_eq!(spool.push(batch(6, 100)), 6, "numbering continues after the restart");
        let pods: Vec<String> = spool.take_replayed_pods().into_iter().map(|p| p.uid).collect();
        assert!(pods.contains(&"uid-5".to_string()), "replayed pod identities are offered for adoption: {pods:?}");
    }

    #[test]
    fn the_next_number_survives_even_when_everything_was_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let config = disk_config(dir.path(), 64 * 1024);
        {
            let mut spool = Spool::open(&config).unwrap();
            for stamp in 1..=50 {
                let seq = spool.push(batch(stamp, 500));
                spool.ack(seq);
            }
        }
        assert_eq!(segment_files(dir.path()).len(), 1, "fully acknowledged segments are deleted");
        let mut spool = Spool::open(&config).unwrap();
        assert!(spool.is_empty());
        assert_eq!(spool.push(batch(51, 10)), 51);
    }

    #[test]
    fn acknowledged_segments_are_deleted_whole_and_the_rest_stay() {
        let dir = tempfile::tempdir().unwrap();
        let config = disk_config(dir.path(), 64 * 1024); // 4 KiB segments
        let mut spool = Spool::open(&config).unwrap();
        for stamp in 1..=40 {
            spool.push(batch(stamp, 1000));
        }
        let before = segment_files(dir.path()).len();
        assert!(before >= 8, "about 4 batches per 4 KiB segment: {before}");
        spool.ack(20);
        let after = segment_files(dir.path()).len();
        assert!(after < before && after >= 4, "segments of 1..=20 went, the rest stayed: {before} -> {after}");
        drop(spool);
        let mut spool = Spool::open(&config).unwrap();
        assert_eq!(drain(&mut spool, 0).len(), 20);
        assert_eq!(spool.oldest_seq(), 21);
    }

    #[test]
    fn a_torn_last_record_is_ignored_and_the_rest_replays() {
        let dir = tempfile::tempdir().unwrap();
        let config = disk_config(dir.path(), DEFAULT_MAX_BYTES);
        {
            let mut spool = Spool::open(&config).unwrap();
            for stamp in 1..=3 {
                spool.push(batch(stamp, 100));
            }
        }
        let last = segment_files(dir.path()).pop().unwrap();
        let full = std::fs::read(&last).unwrap();
        let torn_record = encode_record(&Record::Batch { seq: 4, payload: &batch(4, 100).encode_to_vec() });
        for cut in [1, 7, 8, 20, torn_record.len() - 1] {
            let mut bytes = full.clone();
            bytes.extend_from_slice(&torn_record[..cut]);
            std::fs::write(&last, &bytes).unwrap();
            let mut spool = Spool::open(&config).unwrap();
            assert_eq!(seen(&drain(&mut spool, 0)), [Seen::B(1, 1), Seen::B(2, 2), Seen::B(3, 3)], "cut at {cut}");
            assert_eq!(spool.last_seq(), 3);
            drop(spool);
            // Reopening created a new active segment; keep only the torn one for the next cut.
            for file in segment_files(dir.path()) {
                if file != last {
                    std::fs::remove_file(file).unwrap();
                }
            }
        }
    }

    #[test]
    fn a_corrupt_record_in_the_middle_becomes_an_unreadable_gap() {
        let dir = tempfile::tempdir().unwrap();
        let config = disk_config(dir.path(), DEFAULT_MAX_BYTES);
        {
            let mut spool = Spool::open(&config).unwrap();
            for stamp in 1..=3 {
                spool.push(batch(stamp, 100));
            }
            // A later segment holds 4 and 5.
            spool.disk.as_mut().unwrap().rotate();
            spool.push(batch(4, 100));
            spool.push(batch(5, 100));
        }
        let files = segment_files(dir.path());
        let first = &files[0];
        let mut bytes = std::fs::read(first).unwrap();
        let flip = bytes.len() - 150; // inside the record of batch 2
        bytes[flip] ^= 0xff;
        std::fs::write(first, &bytes).unwrap();
        let mut spool = Spool::open(&config).unwrap();
        let all = seen(&drain(&mut spool, 0));
        assert_eq!(all.len(), 4, "{all:?}");
        assert_eq!(all[0], Seen::B(1, 1));
        let Seen::G(2, 3, reason) = &all[1] else { panic!("expected the unreadable range 2..=3: {all:?}") };
        assert!(reason.starts_with("spool unreadable: 2 samples"), "{reason}");
        assert_eq!(&all[2..], [Seen::B(4, 4), Seen::B(5, 5)]);
        drop(spool);
        let mut spool = Spool::open(&config).unwrap();
        assert_eq!(seen(&drain(&mut spool, 0)).len(), 4, "the unreadable gap itself was persisted");
    }

    #[test]
    fn the_disk_spool_stays_within_its_limit_and_its_gap_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let limit = 64 * 1024;
        let config = disk_config(dir.path(), limit);
        {
            let mut spool = Spool::open(&config).unwrap();
            for stamp in 1..=200 {
                spool.push(batch(stamp, 1000));
                let on_disk: u64 = segment_files(dir.path()).iter().map(|f| f.metadata().unwrap().len()).sum();
                assert!(on_disk <= limit, "{on_disk} bytes on disk after push {stamp}");
            }
        }
        let mut spool = Spool::open(&config).unwrap();
        let all = seen(&drain(&mut spool, 0));
        let Seen::G(1, last_dropped, reason) = &all[0] else { panic!("expected a leading gap: {:?}", &all[..2]) };
        assert_eq!(reason, &format!("spool overflow: {last_dropped} samples dropped, limit {limit} bytes"));
        let batches: Vec<u64> = all[1..].iter().map(|s| if let Seen::B(seq, _) = s { *seq } else { 0 }).collect();
        let expected: Vec<u64> = (last_dropped + 1..=200).collect();
        assert_eq!(batches, expected, "everything after the gap is there, in order, exactly once");
        assert!(batches.len() > 40, "most of the limit holds data: {} batches kept", batches.len());
    }

    #[test]
    fn a_renumbering_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let config = disk_config(dir.path(), DEFAULT_MAX_BYTES);
        {
            let mut spool = Spool::open(&config).unwrap();
            spool.push(batch(1, 10));
            spool.push(batch(2, 10));
            spool.welcome(100);
        }
        let mut spool = Spool::open(&config).unwrap();
        assert_eq!(seen(&drain(&mut spool, 0)), [Seen::B(101, 1), Seen::B(102, 2)]);
        assert_eq!(spool.push(batch(3, 10)), 103);
    }

    #[test]
    fn two_agents_cannot_share_a_spool_directory() {
        let dir = tempfile::tempdir().unwrap();
        let config = disk_config(dir.path(), DEFAULT_MAX_BYTES);
        let _first = Spool::open(&config).unwrap();
        assert!(matches!(Spool::open(&config), Err(SpoolError::InUse(_))));
    }

    #[test]
    fn every_record_kind_round_trips_and_every_truncation_is_detected() {
        let payload = batch(5, 30).encode_to_vec();
        let records = [
            Record::Batch { seq: 5, payload: &payload },
            Record::Gap { first: 1, last: 4, cause: GapCause::Overflow { limit_bytes: 4096 } },
            Record::Gap { first: 6, last: 6, cause: GapCause::Unreadable },
            Record::Checkpoint { next_seq: 7, acked: 3 },
            Record::Renumber { from: 2, to: 9 },
        ];
        let log: Vec<u8> = records.iter().flat_map(encode_record).collect();
        let (decoded, problem) = decode_records(&log);
        assert_eq!(problem, None);
        let kinds: Vec<OwnedRecord> = decoded.into_iter().map(|(_, r)| r).collect();
        assert_eq!(
            kinds,
            [
                OwnedRecord::Batch { seq: 5, payload_len: payload.len() as u32, pods: batch(5, 30).new_pods },
                OwnedRecord::Gap { first: 1, last: 4, cause: GapCause::Overflow { limit_bytes: 4096 } },
                OwnedRecord::Gap { first: 6, last: 6, cause: GapCause::Unreadable },
                OwnedRecord::Checkpoint { next_seq: 7, acked: 3 },
                OwnedRecord::Renumber { from: 2, to: 9 },
            ]
        );
        let ends: Vec<usize> = records
            .iter()
            .scan(0, |end, r| {
                *end += encode_record(r).len();
                Some(*end)
            })
            .collect();
        for cut in 0..log.len() {
            let (prefix, problem) = decode_records(&log[..cut]);
            let whole = ends.iter().filter(|end| **end <= cut).count();
            assert_eq!(prefix.len(), whole, "cut at {cut}");
            assert_eq!(problem.is_some(), !ends.contains(&cut) && cut > 0, "cut at {cut}: {problem:?}");
        }
    }

    mod model {
        //! Random pushes, acks, welcomes and restarts against a small disk
        //! spool: every number is accounted for exactly once, in order.
        use proptest::prelude::*;

        use super::*;

        #[derive(Debug, Clone)]
        enum Op {
            Push(usize),
            Ack(u64),
            Restart,
            Welcome(u64),
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                6 => (10usize..3000).prop_map(Op::Push),
                2 => (0u64..8).prop_map(Op::Ack),
                1 => Just(Op::Restart),
                1 => (0u64..4).prop_map(Op::Welcome),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
            #[test]
            fn every_number_is_a_batch_or_in_a_gap_exactly_once(ops in proptest::collection::vec(op(), 1..120)) {
                let dir = tempfile::tempdir().unwrap();
                let limit = 32 * 1024;
                let config = disk_config(dir.path(), limit);
                let mut spool = Spool::open(&config).unwrap();
                // The payload each pushed number carried, by number.
                let mut pushed: BTreeMap<u64, i64> = BTreeMap::new();
                let mut stamp = 0;
                for op in ops {
                    match op {
                        Op::Push(size) => {
                            stamp += 1;
                            let seq = spool.push(batch(stamp, size));
                            pushed.insert(seq, stamp);
                            prop_assert!(spool.bytes() <= limit + 4096, "{} bytes", spool.bytes());
                        }
                        // Acks only come after this run's first Welcome.
                        Op::Ack(_) if spool.provisional_from.is_some() => {}
                        Op::Ack(ahead) => {
                            let target = (spool.acked_seq() + ahead).min(spool.last_seq());
                            spool.ack(target);
                        }
                        Op::Welcome(ahead) => {
                            // The collector committed what was acked, and maybe a little more
                            // that was sent (never numbers this run has not sent yet).
                            let sendable = spool.provisional_from.map_or(spool.last_seq(), |from| from - 1);
                            let target = (spool.acked_seq() + ahead).min(sendable).max(spool.acked_seq());
                            spool.welcome(target);
                        }
                        Op::Restart => {
                            drop(spool);
                            spool = Spool::open(&config).unwrap();
                        }
                    }
                    let acked = spool.acked_seq();
                    let mut expected = acked + 1;
                    for kind in drain(&mut spool, acked) {
                        match kind {
                            Kind::Batch(b) => {
                                prop_assert_eq!(b.seq, expected);
                                prop_assert_eq!(Some(&b.samples[0].timestamp_ms), pushed.get(&b.seq), "payload of {}", b.seq);
                                expected += 1;
                            }
                            Kind::Gap(g) => {
                                prop_assert_eq!(g.first_seq, expected);
                                prop_assert!(g.reason.starts_with("spool overflow"), "{}", g.reason);
                                expected = g.last_seq + 1;
                            }
                            Kind::Hello(_) => unreachable!(),
                        }
                    }
                    prop_assert_eq!(expected, spool.last_seq() + 1, "every number up to the last one is covered");
                }
            }
        }
    }
}
