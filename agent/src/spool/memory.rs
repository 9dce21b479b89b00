//! The in-memory spool: every unacknowledged batch and gap by sequence number, and what it costs.
//!
//! Without `--spool-dir` this is the whole spool: each entry holds its
//! encoded batch. With one it is the index of the disk log: each entry says
//! where its record is ([`Held::Disk`]), and only an entry whose write failed
//! keeps its bytes here. Either way the bytes held here count against the
//! spool's limit, with [`ENTRY_OVERHEAD_BYTES`] per entry.
//!
//! Entries never overlap: each covers `first..=last`, keyed by `first`.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use crate::spool::GapCause;

/// What an in-memory entry costs besides its payload (map node, bookkeeping),
/// counted against the limit so that many tiny entries cannot exceed it.
pub(super) const ENTRY_OVERHEAD_BYTES: u64 = 64;

#[derive(Debug)]
pub(super) struct Entry {
    pub(super) last: u64,
    pub(super) kind: EntryKind,
    pub(super) held: Held,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum EntryKind {
    Batch,
    Gap(GapCause),
}

/// Where an entry's bytes are.
#[derive(Debug)]
pub(super) enum Held {
    /// The encoded batch (empty for a gap) in memory: the memory spool, or a
    /// disk spool whose write failed.
    Memory(Vec<u8>),
    /// The record in a segment file; a batch's payload is at `offset..offset+len`.
    Disk { segment: u64, offset: u64, len: u32 },
}

impl Held {
    /// The bytes this holds in memory, as counted against the limit.
    fn memory_cost(&self) -> u64 {
        match self {
            Held::Memory(payload) => payload.len() as u64 + ENTRY_OVERHEAD_BYTES,
            Held::Disk { .. } => 0,
        }
    }

    /// The segment file that holds it, if it is on disk.
    pub(super) fn segment(&self) -> Option<u64> {
        match self {
            Held::Memory(_) => None,
            Held::Disk { segment, .. } => Some(*segment),
        }
    }
}

/// The entries by the first sequence number each covers, with the bytes
/// they hold in memory.
#[derive(Debug, Default)]
pub(super) struct Entries {
    by_first: BTreeMap<u64, Entry>,
    memory_bytes: u64,
}

impl Entries {
    /// Bytes held in memory, counted against the limit.
    pub(super) fn memory_bytes(&self) -> u64 {
        self.memory_bytes
    }

    pub(super) fn len(&self) -> usize {
        self.by_first.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.by_first.is_empty()
    }

    /// The first sequence number held.
    pub(super) fn first_seq(&self) -> Option<u64> {
        self.by_first.keys().next().copied()
    }

    pub(super) fn get(&self, first: u64) -> Option<&Entry> {
        self.by_first.get(&first)
    }

    /// Every entry with the first number it covers, in order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (u64, &Entry)> {
        self.by_first.iter().map(|(first, entry)| (*first, entry))
    }

    /// Adds `entry` at `first`; returns the entry it replaced there, whose
    /// disk segment the caller releases.
    pub(super) fn insert(&mut self, first: u64, entry: Entry) -> Option<Entry> {
        self.memory_bytes += entry.held.memory_cost();
        let old = self.by_first.insert(first, entry)?;
        self.memory_bytes = self.memory_bytes.saturating_sub(old.held.memory_cost());
        Some(old)
    }

    /// Removes the entry at `first`; the caller releases its disk segment.
    pub(super) fn remove(&mut self, first: u64) -> Option<Entry> {
        let entry = self.by_first.remove(&first)?;
        self.memory_bytes = self.memory_bytes.saturating_sub(entry.held.memory_cost());
        Some(entry)
    }

    /// The key of the entry covering `seq`, or else of the first one after it.
    pub(super) fn covering_or_after(&self, seq: u64) -> Option<u64> {
        let covering = self.by_first.range(..=seq).next_back().filter(|(_, e)| e.last >= seq).map(|(k, _)| *k);
        covering.or_else(|| self.by_first.range(seq..).next().map(|(k, _)| *k))
    }

    /// Removes every entry that ends at `committed` or before and returns
    /// them. A gap that straddles `committed` keeps its unacknowledged rest,
    /// moved to start at `committed + 1` (its disk record still covers the
    /// whole range; the checkpoint trims it on replay).
    pub(super) fn remove_through(&mut self, committed: u64) -> Vec<Entry> {
        let mut removed = Vec::new();
        while let Some(first) = self.first_seq().filter(|first| *first <= committed) {
            let Some(entry) = self.remove(first) else { break };
            if entry.last > committed {
                self.insert(committed + 1, entry);
                break;
            }
            removed.push(entry);
        }
        removed
    }

    /// Removes every entry that starts within `range`, with their first numbers.
    pub(super) fn remove_range(&mut self, range: RangeInclusive<u64>) -> Vec<(u64, Entry)> {
        let keys: Vec<u64> = self.by_first.range(range).map(|(k, _)| *k).collect();
        keys.into_iter().filter_map(|key| Some((key, self.remove(key)?))).collect()
    }

    /// Removes every entry that overlaps `first..=last`.
    pub(super) fn remove_overlapping(&mut self, first: u64, last: u64) -> Vec<Entry> {
        let keys: Vec<u64> =
            self.by_first.range(..=last).filter(|(k, e)| e.last >= first && **k <= last).map(|(k, _)| *k).collect();
        keys.into_iter().filter_map(|key| self.remove(key)).collect()
    }

    /// Shifts every entry numbered `from` or later by `delta` (a renumbering).
    pub(super) fn shift_from(&mut self, from: u64, delta: u64) {
        let moved = self.by_first.split_off(&from);
        for (first, mut entry) in moved {
            entry.last += delta;
            self.by_first.insert(first + delta, entry);
        }
    }

    /// The first batch (gaps before it are skipped).
    pub(super) fn first_batch(&self) -> Option<(u64, &Entry)> {
        self.iter().find(|(_, e)| e.kind == EntryKind::Batch)
    }

    /// The last number covered by an entry held in disk segment `segment`.
    pub(super) fn last_in_segment(&self, segment: u64) -> Option<u64> {
        self.by_first.values().filter(|e| e.held.segment() == Some(segment)).map(|e| e.last).max()
    }

    /// The overflow gap that ends right before `seq`, by its first number.
    pub(super) fn overflow_gap_before(&self, seq: u64) -> Option<u64> {
        let (first, entry) = self.by_first.range(..seq).next_back()?;
        let adjacent = entry.last + 1 == seq && matches!(entry.kind, EntryKind::Gap(GapCause::Overflow { .. }));
        adjacent.then_some(*first)
    }

    /// The ranges after `acked` that no entry covers (what a torn record
    /// cut short), in order.
    pub(super) fn holes_after(&self, acked: u64) -> Vec<(u64, u64)> {
        let mut expected = acked + 1;
        let mut holes = Vec::new();
        for (first, entry) in &self.by_first {
            if *first > expected {
                holes.push((expected, first - 1));
            }
            expected = expected.max(entry.last + 1);
        }
        holes
    }
}
