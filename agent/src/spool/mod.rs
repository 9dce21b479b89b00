//! The spool of unacknowledged batches: every sample waits here until the collector acknowledges it.
//!
//! Each batch waits under its sequence number until an `Ack` says it is
//! durable at the collector (bakery.proto, contract point 4: every batch and
//! gap up to `Ack.committed_seq` is committed); a `Welcome` says where a new
//! stream resumes (point 1), and loss the agent could not avoid is sent as a
//! `Gap` in sequence order (point 6). In memory by
//! default; with `--spool-dir` also on disk, so that it survives an agent
//! restart, `kill -9` included.
//!
//! Pure data structure plus file IO; no sockets and no async runtime. This
//! file is the [`Spool`] facade and what its parts share; `memory` holds
//! the entries by sequence number, `disk` the segment log and `record`
//! the format of its records; `backlog` reads the backlog back for
//! `Replay` messages, several samples to a batch.
//!
//! # Limits and loss
//!
//! The spool holds at most `max_bytes` (`--spool-max-bytes`, default
//! [`DEFAULT_MAX_BYTES`] = 64 MiB: at 2-5 KB per sample and 1 Hz that is 4 to
//! 9 hours of collector outage, and a small share of a Pi 5's 8 GiB). Past the
//! limit the oldest batches go and the dropped range becomes a gap entry, in
//! sequence order, with the reason "spool overflow: N samples dropped, limit
//! X bytes". The collector records it, so loss is never silent. Each spooled
//! batch holds one sample, so a range of N sequence numbers is N samples.
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
//! One sequence number per sample (bakery.proto, contract point 2). The disk
//! spool persists the next sequence number, so numbering continues
//! after a restart. Numbers handed out by this process before its first
//! Welcome are provisional: if the collector already committed them (a
//! memory spool after a restart, a wiped spool directory, a torn last
//! record), they are shifted to start at `committed + 1`, so new samples are
//! never mistaken for duplicates.

mod backlog;
mod disk;
mod memory;
mod record;

#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bakery_proto::v1 as pb;
use prost::Message;

use disk::{DiskLog, Replay};
use memory::{Entries, Entry, EntryKind, Held};
use record::{BATCH_PAYLOAD_OFFSET, OwnedRecord, Record};

pub use backlog::ReplayBudget;

/// Default `--spool-max-bytes`: 64 MiB (see the module docs).
pub const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// Default bound on how often the disk spool calls `fdatasync`.
pub const DEFAULT_FSYNC_INTERVAL: Duration = Duration::from_secs(5);

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

/// The spool. Sequence numbers start at 1 and only grow.
#[derive(Debug)]
pub struct Spool {
    max_bytes: u64,
    entries: Entries,
    next_seq: u64,
    acked: u64,
    /// First number handed out by this process; `None` once a Welcome
    /// confirmed the numbering.
    provisional_from: Option<u64>,
    overflow_dropped: u64,
    disk: Option<DiskLog>,
    replayed_pods: Vec<pb::PodIdentity>,
    /// A disk spool's last batch, encoded, while it is still held: the stream
    /// usually sends exactly it next, which then needs no read from the disk.
    /// Its buffer is kept from batch to batch.
    fresh: Option<(u64, Vec<u8>)>,
}

/// What the spool holds next for a stream: a gap, or a batch as its encoded payload (sequence
/// number 0 inside; the entry's number is `seq`).
#[derive(Debug, Clone, PartialEq)]
pub enum Pending<'a> {
    Gap(pb::Gap),
    Batch { seq: u64, payload: Cow<'a, [u8]> },
}

impl Spool {
    /// An in-memory spool.
    pub fn in_memory(max_bytes: u64) -> Self {
        Self {
            max_bytes,
            entries: Entries::default(),
            next_seq: 1,
            acked: 0,
            provisional_from: Some(1),
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
        // The number lives in the entry, not in the payload, so that a
        // renumbering never has to rewrite a payload.
        batch.seq = 0;
        self.push_encoded(&batch.encode_to_vec())
    }

    /// Adds a batch encoded with sequence number 0 (as `BatchBuffer::encode` makes it) and
    /// returns the sequence number it got. One copy of the bytes is kept: in memory for a memory
    /// spool, in the page cache and a reused buffer for a disk spool.
    pub fn push_encoded(&mut self, payload: &[u8]) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.note_seqs();
        let held = match &mut self.disk {
            Some(disk) => match disk.append(&Record::Batch { seq, payload }) {
                Ok((segment, body_offset)) => {
                    // The payload follows the kind byte and the sequence number.
                    let offset = body_offset + BATCH_PAYLOAD_OFFSET;
                    let mut fresh = self.fresh.take().map(|(_, bytes)| bytes).unwrap_or_default();
                    fresh.clear();
                    fresh.extend_from_slice(payload);
                    self.fresh = Some((seq, fresh));
                    Held::Disk { segment, offset, len: payload.len() as u32 }
                }
                Err(error) => {
                    disk.warn_write_failed(&error);
                    Held::Memory(payload.to_vec())
                }
            },
            None => Held::Memory(payload.to_vec()),
        };
        self.insert(seq, Entry { last: seq, kind: EntryKind::Batch, held });
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
        for entry in self.entries.remove_through(committed) {
            self.release(&entry.held);
        }
        if let Some(disk) = &mut self.disk {
            disk.append_checkpoint();
            disk.delete_dead_segments();
            disk.maybe_sync();
        }
    }

    /// The next message to send after `sent_through`: the entry covering
    /// `sent_through + 1` or the first one after it. A gap is cut to start
    /// there (the collector already has what came before). A batch comes as its
    /// encoded payload, borrowed when it is in memory; a batch the disk cannot
    /// give back becomes an unreadable gap.
    pub fn pending_after(&mut self, sent_through: u64) -> Option<Pending<'_>> {
        let start = sent_through.checked_add(1)?;
        let key = loop {
            let key = self.entries.covering_or_after(start)?;
            let entry = self.entries.get(key)?;
            if let EntryKind::Gap(cause) = entry.kind {
                let first = key.max(start);
                let reason = cause.reason(entry.last - first + 1);
                return Some(Pending::Gap(pb::Gap { first_seq: first, last_seq: entry.last, reason }));
            }
            let Held::Disk { segment, offset, len } = entry.held else { break key };
            if self.fresh.as_ref().is_some_and(|(seq, _)| *seq == key) {
                break key;
            }
            let read = match self.disk.as_mut() {
                Some(disk) => disk.read(segment, offset, len),
                None => Err(io::Error::other("no disk spool")),
            };
            match read {
                Ok(payload) => return Some(Pending::Batch { seq: key, payload: Cow::Owned(payload) }),
                Err(error) => self.unreadable(key, &error),
            }
        };
        let payload = match (&self.fresh, &self.entries.get(key)?.held) {
            (Some((seq, fresh)), _) if *seq == key => fresh.as_slice(),
            (_, Held::Memory(payload)) => payload.as_slice(),
            (_, Held::Disk { .. }) => return None,
        };
        Some(Pending::Batch { seq: key, payload: Cow::Borrowed(payload) })
    }

    /// [`Spool::pending_after`], a batch decoded (for replay, which merges batches).
    pub fn next_after(&mut self, sent_through: u64) -> Option<pb::agent_message::Kind> {
        loop {
            let (seq, decoded) = match self.pending_after(sent_through)? {
                Pending::Gap(gap) => return Some(pb::agent_message::Kind::Gap(gap)),
                Pending::Batch { seq, payload } => (seq, pb::Batch::decode(payload.as_ref())),
            };
            match decoded {
                Ok(mut batch) => {
                    batch.seq = seq;
                    return Some(pb::agent_message::Kind::Batch(batch));
                }
                Err(error) => self.unreadable(seq, &error),
            }
        }
    }

    /// A held batch that cannot be read back or parsed: it is sent as an unreadable gap, so the
    /// loss is recorded at the collector rather than retried forever.
    pub fn unreadable(&mut self, seq: u64, error: &dyn std::fmt::Display) {
        tracing::warn!(seq, %error, "a spooled batch cannot be read back; it is sent as a gap");
        self.replace_with_unreadable_gap(seq);
    }

    /// The first sequence number still held (the next one when empty), for
    /// the Hello.
    pub fn oldest_seq(&self) -> u64 {
        self.entries.first_seq().unwrap_or(self.next_seq)
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
        self.entries.memory_bytes() + self.disk.as_ref().map_or(0, DiskLog::total_bytes)
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

    /// Adds an entry; the entries count its bytes held in memory, the disk
    /// log the entries each segment holds.
    fn insert(&mut self, first: u64, entry: Entry) {
        if let (Some(segment), Some(disk)) = (entry.held.segment(), &mut self.disk) {
            disk.hold(segment);
        }
        if let Some(old) = self.entries.insert(first, entry) {
            self.release(&old.held);
        }
    }

    /// Tells the disk log that an entry removed from the entries no longer
    /// holds its segment.
    fn release(&mut self, held: &Held) {
        if let (Some(segment), Some(disk)) = (held.segment(), &mut self.disk) {
            disk.release(segment);
        }
    }

    fn replace_with_unreadable_gap(&mut self, seq: u64) {
        if let Some(entry) = self.entries.remove(seq) {
            self.release(&entry.held);
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
        self.entries.shift_from(from, delta);
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
            let Some((oldest, oldest_entry)) = self.entries.first_batch() else {
                break;
            };
            let drop_through = match oldest_entry.held.segment() {
                None => oldest,
                Some(segment) => {
                    if let Some(disk) = &mut self.disk
                        && disk.active_id == segment
                    {
                        disk.rotate();
                    }
                    // Everything the oldest segment holds goes at once: only
                    // a whole segment gives disk space back.
                    self.entries.last_in_segment(segment).unwrap_or(oldest)
                }
            };
            let removed = self.entries.remove_range(oldest..=drop_through);
            let dropped = removed.iter().map(|(first, e)| e.last - first + 1).sum::<u64>();
            for (_, entry) in removed {
                self.release(&entry.held);
            }
            // Merge with an overflow gap right before the dropped range.
            let mut first = oldest;
            if let Some(start) = self.entries.overflow_gap_before(oldest)
                && let Some(entry) = self.entries.remove(start)
            {
                first = start;
                self.release(&entry.held);
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
    /// Nothing is held yet: [`Self::start_segment_after_replay`] counts the
    /// entries each segment holds once they are all known.
    fn apply_replay(&mut self, replay: Replay) {
        for (segment, offset, record) in replay.records {
            match record {
                OwnedRecord::Batch { seq, payload_len, pods: _ } => {
                    let held = Held::Disk { segment, offset: offset + BATCH_PAYLOAD_OFFSET, len: payload_len };
                    self.entries.insert(seq, Entry { last: seq, kind: EntryKind::Batch, held });
                    self.next_seq = self.next_seq.max(seq + 1);
                }
                OwnedRecord::Gap { first, last, cause } => {
                    self.entries.remove_overlapping(first, last);
                    let held = Held::Disk { segment, offset, len: 0 };
                    self.entries.insert(first, Entry { last, kind: EntryKind::Gap(cause), held });
                    self.next_seq = self.next_seq.max(last + 1);
                }
                OwnedRecord::Checkpoint { next_seq, acked } => {
                    self.next_seq = self.next_seq.max(next_seq);
                    if acked > self.acked {
                        self.acked = acked;
                        self.entries.remove_through(acked);
                    }
                }
                OwnedRecord::Renumber { from, to } => {
                    self.entries.shift_from(from, to.saturating_sub(from));
                    self.next_seq = self.next_seq.max(to);
                }
            }
        }
        self.next_seq = self.next_seq.max(self.acked + 1);
        // Entries of segments a torn record cut short leave holes: declare them.
        for (first, last) in self.entries.holes_after(self.acked) {
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
        for (_, entry) in self.entries.iter() {
            if let Some(segment) = entry.held.segment() {
                disk.hold(segment);
            }
        }
        disk.checkpoint = (self.next_seq, self.acked);
        disk.rotate();
        let unreadable: Vec<(u64, u64)> = self
            .entries
            .iter()
            .filter(|(_, e)| e.kind == EntryKind::Gap(GapCause::Unreadable) && matches!(e.held, Held::Memory(_)))
            .map(|(k, e)| (k, e.last))
            .collect();
        for (first, last) in unreadable {
            let held = self.write_gap(first, last, GapCause::Unreadable);
            if let Some(entry) = self.entries.remove(first) {
                self.release(&entry.held);
            }
            self.insert(first, Entry { last, kind: EntryKind::Gap(GapCause::Unreadable), held });
        }
        if let Some(disk) = &mut self.disk {
            disk.delete_dead_segments();
            disk.maybe_sync();
        }
    }
}
