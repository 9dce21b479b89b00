//! Retention: by age (`--retention`: rows received before a cutoff) and by size
//! (`--retention-size`: the oldest samples of all nodes once the store file fills its share of
//! the disk), both in bounded steps so the committer is never held for long.
//!
//! Why size is decided as it is ([`SizeRetention`]): redb never gives space back to the file
//! system (a removed row's pages are reused by the next writes; the file does not shrink), and
//! the file's length is not its disk use either (redb extends it sparsely, doubling). So the
//! measure is the file's disk use (allocated blocks), and the trigger is that use still
//! growing near the limit: then the stored samples are held at 90 % of what they were, which
//! leaves a tenth of the written pages free for what comes next, and the file stops growing.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::os::unix::fs::MetadataExt;

use prost::Message;
use redb::{ReadableDatabase, ReadableTable};

use super::{GAPS, NODES, NodeRecord, SAMPLES, Store, decode_node, node_range, row_bytes};
use crate::error::{Error, Result};

/// What one retention step removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExpireOutcome {
    pub batches: u64,
    pub gaps: u64,
    /// `stored_bytes` of the removed sample rows.
    pub bytes: u64,
    /// The budget ran out before everything due was removed: call again.
    pub more: bool,
}

/// How big the store is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreSize {
    /// The sample rows' bytes, summed over the node records (see [`super::row_bytes`]).
    pub stored_bytes: u64,
    /// What the file takes on disk: its allocated blocks.
    pub disk_bytes: u64,
}

/// A sample row as size retention sees it: (seq, receive ms, sample count, stored bytes).
type HeadRow = (u64, i64, u32, u64);

/// Sample rows read ahead per node in one size step: enough to merge nodes by age without
/// holding many rows in memory.
const TRIM_READ_AHEAD: u64 = 256;

impl Store {
    /// Removes batches received before `cutoff_ms`, and gaps recorded before it that no longer
    /// precede a stored batch, oldest first, at most `budget` rows in one transaction (so a long
    /// backlog never holds the writer for long). Sequence numbers grow with time per node, so
    /// each node's expired rows are a prefix of its key range. Rows of a node whose record does
    /// not decode expire too; only its (unreadable) record is left alone.
    ///
    /// One piece: every node's rows are read, removed and its record updated inside one write
    /// transaction, sharing one budget; split, the pieces would pass the open tables around.
    pub fn expire(&mut self, cutoff_ms: i64, budget: u64) -> Result<ExpireOutcome> {
        let txn = self.begin_durable_write()?;
        let mut outcome = ExpireOutcome::default();
        {
            let mut nodes = txn.open_table(NODES)?;
            let mut samples = txn.open_table(SAMPLES)?;
            let mut gaps = txn.open_table(GAPS)?;
            let records = readable_records(&nodes)?;
            let mut ids = node_ids(&samples)?;
            ids.extend(node_ids(&gaps)?);
            ids.sort_unstable();
            ids.dedup();
            for id in ids {
                let remaining = budget.saturating_sub(outcome.batches.saturating_add(outcome.gaps));
                if remaining == 0 {
                    outcome.more = true;
                    break;
                }
                let mut expired_batches = Vec::new();
                let mut expired_samples = 0u64;
                let mut expired_bytes = 0u64;
                let mut first_kept_batch = None;
                for row in samples.range(node_range(id))? {
                    let (key, value) = row?;
                    let (received_ms, sample_count, bytes) = value.value();
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
                    expired_samples = expired_samples.saturating_add(u64::from(sample_count));
                    expired_bytes = expired_bytes.saturating_add(row_bytes(bytes.len()));
                }
                let mut expired_gaps = Vec::new();
                let gap_budget = remaining.saturating_sub(expired_batches.len() as u64);
                for row in gaps.range(node_range(id))? {
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
                let mut highest_removed = 0u64;
                for seq in &expired_batches {
                    samples.remove((id, *seq))?;
                    highest_removed = highest_removed.max(*seq);
                }
                for (first_seq, last_seq) in &expired_gaps {
                    gaps.remove((id, *first_seq))?;
                    highest_removed = highest_removed.max(*last_seq);
                }
                if let Some((name, record)) = records.get(&id) {
                    let mut record = record.clone();
                    record.batches = record.batches.saturating_sub(expired_batches.len() as u64);
                    record.samples = record.samples.saturating_sub(expired_samples);
                    record.stored_bytes = Some(record.stored_bytes.unwrap_or(0).saturating_sub(expired_bytes));
                    record.retained_from_seq = record.retained_from_seq.max(highest_removed.saturating_add(1));
                    nodes.insert(name.as_str(), record.encode_to_vec().as_slice())?;
                }
                outcome.batches = outcome.batches.saturating_add(expired_batches.len() as u64);
                outcome.gaps = outcome.gaps.saturating_add(expired_gaps.len() as u64);
                outcome.bytes = outcome.bytes.saturating_add(expired_bytes);
            }
        }
        txn.commit()?;
        Ok(outcome)
    }

    /// Removes the oldest sample rows of all nodes (by receive time) until their
    /// `stored_bytes` add up to `bytes_to_free`, at most `budget` rows in one transaction.
    /// Gaps are left to age retention: they are a few bytes each, and a gap below a node's
    /// `retained_from_seq` no longer counts anywhere.
    pub fn trim_oldest(&mut self, bytes_to_free: u64, budget: u64) -> Result<ExpireOutcome> {
        let txn = self.begin_durable_write()?;
        let mut outcome = ExpireOutcome::default();
        {
            let mut nodes = txn.open_table(NODES)?;
            let mut samples = txn.open_table(SAMPLES)?;
            let records = readable_records(&nodes)?;
            let read_ahead = budget.clamp(1, TRIM_READ_AHEAD);
            // Each node's oldest rows, and whether it may have more than were read.
            let mut heads: HashMap<u32, (VecDeque<HeadRow>, bool)> = HashMap::new();
            let mut order = BinaryHeap::new();
            for id in records.keys() {
                let mut rows = VecDeque::new();
                for row in samples.range(node_range(*id))?.take(read_ahead as usize) {
                    let (key, value) = row?;
                    let (received_ms, sample_count, bytes) = value.value();
                    rows.push_back((key.value().1, received_ms, sample_count, row_bytes(bytes.len())));
                }
                let maybe_more = rows.len() as u64 == read_ahead;
                if let Some(&(_, received_ms, ..)) = rows.front() {
                    order.push(Reverse((received_ms, *id)));
                }
                heads.insert(*id, (rows, maybe_more));
            }
            let mut removed: HashMap<u32, Vec<(u64, u32, u64)>> = HashMap::new();
            while outcome.bytes < bytes_to_free {
                if outcome.batches >= budget {
                    outcome.more = true;
                    break;
                }
                let Some(Reverse((_, id))) = order.pop() else { break };
                let Some((rows, maybe_more)) = heads.get_mut(&id) else { break };
                let Some((seq, _, sample_count, bytes)) = rows.pop_front() else { break };
                removed.entry(id).or_default().push((seq, sample_count, bytes));
                outcome.batches = outcome.batches.saturating_add(1);
                outcome.bytes = outcome.bytes.saturating_add(bytes);
                match rows.front() {
                    Some(&(_, received_ms, ..)) => order.push(Reverse((received_ms, id))),
                    // This node's next row was not read: the next step reads on.
                    None if *maybe_more => {
                        outcome.more = outcome.bytes < bytes_to_free;
                        break;
                    }
                    None => {}
                }
            }
            for (id, rows) in removed {
                let mut highest_removed = 0u64;
                let (mut sample_count, mut bytes) = (0u64, 0u64);
                for (seq, count, row) in &rows {
                    samples.remove((id, *seq))?;
                    highest_removed = highest_removed.max(*seq);
                    sample_count = sample_count.saturating_add(u64::from(*count));
                    bytes = bytes.saturating_add(*row);
                }
                if let Some((name, record)) = records.get(&id) {
                    let mut record = record.clone();
                    record.batches = record.batches.saturating_sub(rows.len() as u64);
                    record.samples = record.samples.saturating_sub(sample_count);
                    record.stored_bytes = Some(record.stored_bytes.unwrap_or(0).saturating_sub(bytes));
                    record.retained_from_seq = record.retained_from_seq.max(highest_removed.saturating_add(1));
                    nodes.insert(name.as_str(), record.encode_to_vec().as_slice())?;
                }
            }
        }
        txn.commit()?;
        Ok(outcome)
    }

    /// The stored bytes (from the node records) and the file's disk use.
    pub fn size(&mut self) -> Result<StoreSize> {
        let stored_bytes = {
            let txn = self.db()?.begin_read()?;
            let nodes = txn.open_table(NODES)?;
            let mut total = 0u64;
            for row in nodes.iter()? {
                let (_, bytes) = row?;
                if let Ok(record) = decode_node(bytes.value()) {
                    total = total.saturating_add(record.stored_bytes.unwrap_or(0));
                }
            }
            total
        };
        let metadata = std::fs::metadata(&self.path).map_err(|source| Error::Io {
            action: "cannot read the size of",
            path: self.path.clone(),
            source,
        })?;
        // st_blocks is in 512-byte units whatever the file system's block size.
        Ok(StoreSize { stored_bytes, disk_bytes: metadata.blocks().saturating_mul(512) })
    }
}

/// Every node record that decodes, by node id, with its name. One that does not decode was
/// counted when the store loaded; retention leaves it alone.
fn readable_records(
    nodes: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<HashMap<u32, (String, NodeRecord)>> {
    let mut records = HashMap::new();
    for row in nodes.iter()? {
        let (name, bytes) = row?;
        if let Ok(record) = decode_node(bytes.value()) {
            records.insert(record.node_id, (name.value().to_string(), record));
        }
    }
    Ok(records)
}

/// The node ids that have rows in a (node id, seq) table, found by jumping from one node's
/// range to the next (one lookup per node, not a scan).
fn node_ids<V: redb::Value + 'static>(table: &impl ReadableTable<(u32, u64), V>) -> Result<Vec<u32>> {
    let mut ids = Vec::new();
    let mut from = 0u32;
    loop {
        let next = match table.range((from, 0u64)..)?.next() {
            Some(row) => row?.0.value().0,
            None => break,
        };
        ids.push(next);
        match next.checked_add(1) {
            Some(after) => from = after,
            None => break,
        }
    }
    Ok(ids)
}

/// `--retention-size`: decides from the store's size, checked now and then, how many stored
/// bytes to remove. Pure; the committer measures and removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SizeRetention {
    limit_bytes: u64,
    /// The stored bytes are held at or below this once the file filled its share.
    stored_budget: Option<u64>,
    /// The disk use the last decision was measured from.
    reference_disk: Option<u64>,
}

impl SizeRetention {
    pub fn new(limit_bytes: u64) -> Self {
        SizeRetention { limit_bytes, stored_budget: None, reference_disk: None }
    }

    pub fn limit_bytes(&self) -> u64 {
        self.limit_bytes
    }

    /// The budget in force, if the file has reached its share yet.
    pub fn stored_budget(&self) -> Option<u64> {
        self.stored_budget
    }

    /// Given the size measured now, the stored bytes to remove (0: none).
    ///
    /// The file counts as full when its disk use is at 90 % of the limit and grew since the
    /// last decision by more than 2 % of the limit (redb writes a little metadata even when it
    /// reuses pages, which must not count as growth), or is over the limit when first seen (a
    /// limit lowered across a restart). Then the stored bytes are held at 90 % of what they
    /// are, scaled down by how far the file is over the limit. A restart with the file between
    /// 90 % and 100 % removes nothing: the free pages inside it are used first.
    pub fn plan(&mut self, size: StoreSize) -> u64 {
        let limit = self.limit_bytes;
        let near = limit / 10 * 9;
        let disk = size.disk_bytes;
        let full = match self.reference_disk {
            None => disk > limit,
            Some(reference) => {
                disk >= near && (disk > reference.saturating_add(limit / 50) || (disk > limit && disk > reference))
            }
        };
        if full {
            // stored * 0.9 * min(1, limit / disk), in u128 so no product overflows.
            let scaled = u128::from(size.stored_bytes) * 9 / 10 * u128::from(limit.min(disk)) / u128::from(disk.max(1));
            let budget = u64::try_from(scaled).unwrap_or(u64::MAX);
            self.stored_budget = Some(self.stored_budget.map_or(budget, |old| old.min(budget)));
            self.reference_disk = Some(disk);
        } else if self.reference_disk.is_none() || disk < near {
            self.reference_disk = Some(disk);
        }
        match self.stored_budget {
            Some(budget) => size.stored_bytes.saturating_sub(budget),
            None => 0,
        }
    }
}

/// Parses a byte size the way people write one: `2GiB`, `512MiB`, `1.5GB`, `750M`, `4096`
/// (bytes). Binary (KiB, MiB, GiB, TiB) and decimal (kB, MB, GB, TB, or K, M, G, T) units,
/// case-insensitive, an optional space and an optional trailing `B`.
pub fn parse_size(text: &str) -> std::result::Result<u64, String> {
    let trimmed = text.trim();
    let split = trimmed.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    if number.is_empty() {
        return Err(format!("{text:?} is not a size: expected a number and a unit, like 2GiB or 500MB"));
    }
    let unit = unit.trim().to_ascii_lowercase();
    let multiplier: u64 = match unit.as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "t" | "tb" => 1_000_000_000_000,
        "ki" | "kib" => 1 << 10,
        "mi" | "mib" => 1 << 20,
        "gi" | "gib" => 1 << 30,
        "ti" | "tib" => 1 << 40,
        other => return Err(format!("{text:?}: unknown unit {other:?} (use B, KiB, MiB, GiB, TiB, kB, MB, GB or TB)")),
    };
    let bytes = match number.split_once('.') {
        None => number.parse::<u64>().ok().and_then(|n| n.checked_mul(multiplier)),
        Some((whole, fraction)) => {
            let whole: Option<u64> = if whole.is_empty() { Some(0) } else { whole.parse().ok() };
            let digits = fraction.len().min(18);
            let fraction_value: Option<u64> = if !fraction.chars().all(|c| c.is_ascii_digit()) {
                None
            } else if digits == 0 {
                Some(0)
            } else {
                fraction.get(..digits).and_then(|f| f.parse().ok())
            };
            match (whole, fraction_value) {
                (Some(whole), Some(fraction)) => {
                    let multiplier = u128::from(multiplier);
                    let total =
                        u128::from(whole) * multiplier + u128::from(fraction) * multiplier / 10u128.pow(digits as u32);
                    u64::try_from(total).ok()
                }
                _ => None,
            }
        }
    };
    bytes.ok_or_else(|| format!("{text:?} is too large or not a number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn size(stored_bytes: u64, disk_bytes: u64) -> StoreSize {
        StoreSize { stored_bytes, disk_bytes }
    }

    #[test]
    fn sizes_parse_in_binary_and_decimal_units_and_bad_ones_say_why() {
        let cases = [
            ("2GiB", 2 << 30),
            ("2 gib", 2 << 30),
            ("512MiB", 512 << 20),
            ("1.5GiB", 3 << 29),
            ("500MB", 500_000_000),
            ("750M", 750_000_000),
            ("4096", 4096),
            ("4096B", 4096),
            ("1kB", 1000),
            ("0.5KiB", 512),
        ];
        for (text, bytes) in cases {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
        for bad in ["", "GiB", "2 parsecs", "-1GiB", "99999999999TiB", "1.2.3GB"] {
            let error = parse_size(bad).expect_err(bad);
            assert!(error.contains(&format!("{bad:?}")), "the message quotes the input: {error}");
        }
    }

    #[test]
    fn nothing_is_removed_while_the_file_is_below_its_share() {
        let mut retention = SizeRetention::new(100 * MIB);
        for disk in [MIB, 20 * MIB, 60 * MIB, 89 * MIB] {
            assert_eq!(retention.plan(size(disk / 2, disk)), 0, "{disk}");
        }
        assert_eq!(retention.stored_budget(), None);
    }

    #[test]
    fn a_file_still_growing_near_the_limit_holds_the_samples_at_nine_tenths() {
        let mut retention = SizeRetention::new(100 * MIB);
        assert_eq!(retention.plan(size(40 * MIB, 80 * MIB)), 0);
        // grew by 12 MiB, past 90 %: hold the stored bytes at 90 % of 50 MiB
        assert_eq!(retention.plan(size(50 * MIB, 92 * MIB)), 5 * MIB);
        assert_eq!(retention.stored_budget(), Some(45 * MIB));
        // the removal happened; new samples reuse the freed pages: the file holds still
        assert_eq!(retention.plan(size(45 * MIB, 92 * MIB)), 0);
        // what arrives beyond the budget is removed again at the next check
        assert_eq!(retention.plan(size(46 * MIB, 92 * MIB)), MIB);
        // a little metadata growth is not growth
        assert_eq!(retention.plan(size(45 * MIB, 93 * MIB)), 0);
        assert_eq!(retention.stored_budget(), Some(45 * MIB));
        // real growth (fragmentation) lowers the budget once more
        assert_eq!(retention.plan(size(45 * MIB, 95 * MIB)), 45 * MIB / 10);
        assert!(retention.stored_budget().unwrap() < 45 * MIB);
    }

    #[test]
    fn a_restart_near_the_limit_removes_nothing_but_one_over_it_scales_down() {
        let mut restarted = SizeRetention::new(100 * MIB);
        assert_eq!(restarted.plan(size(50 * MIB, 95 * MIB)), 0, "free pages inside the file are used first");
        assert_eq!(restarted.plan(size(52 * MIB, 95 * MIB)), 0);
        // a limit lowered to a quarter of the file: keep 90 % of a quarter
        let mut lowered = SizeRetention::new(100 * MIB);
        let remove = lowered.plan(size(200 * MIB, 400 * MIB));
        assert_eq!(remove, 200 * MIB - 45 * MIB);
    }

    #[test]
    fn any_size_gives_an_answer_within_what_is_stored() {
        // Property: for every sequence of sizes, no overflow, and never more than is stored.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let edges = [0, 1, u64::MAX, u64::MAX / 2, 1 << 40];
        for round in 0..2_000 {
            let pick = |n: u64| if n.is_multiple_of(4) { edges[(n / 4 % edges.len() as u64) as usize] } else { n };
            let mut retention = SizeRetention::new(pick(next()).max(1));
            let mut budget_before = None;
            for _ in 0..8 {
                let measured = size(pick(next()), pick(next()));
                let remove = retention.plan(measured);
                assert!(remove <= measured.stored_bytes, "round {round}: {remove} > {measured:?}");
                if let (Some(before), Some(now)) = (budget_before, retention.stored_budget()) {
                    assert!(now <= before, "the budget only ever goes down within a run");
                }
                budget_before = retention.stored_budget();
            }
        }
    }
}
