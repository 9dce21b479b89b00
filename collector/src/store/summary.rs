//! The store's summary `inspect` prints, per node: counts, first/last sequence numbers, every gap
//! with its reason, and (with `--verify`) the sequence numbers nothing accounts for. (Window
//! reports, the diagnosis' output, are `window_reports.rs`.)

use prost::Message;
use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata};
use serde::Serialize;

use super::{GAPS, NODES, NodeRecord, PODS, SAMPLES};
use crate::error::Result;

/// Everything `inspect --json` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoreReport {
    pub nodes: Vec<NodeReport>,
    /// Node records that do not decode: skipped, and counted here (absent when none).
    #[serde(skip_serializing_if = "is_zero")]
    pub unreadable_records: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One node in the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeReport {
    pub node: String,
    /// Samples in the stored batches.
    pub samples: u64,
    /// Stored batches, one per sequence number with data.
    pub batches: u64,
    /// Lowest and highest stored sequence number (null without stored batches).
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// Every sequence number up to this one is stored or in `gaps`.
    pub committed_seq: u64,
    /// Retention removed everything below this sequence number (1 = nothing removed).
    pub retained_from_seq: u64,
    pub gaps: Vec<GapReport>,
    pub duplicates_dropped: u64,
    pub invalid_seqs: u64,
    /// Collector receive time minus sample time, ms (null before the first sample).
    pub clock_skew_ms: Option<i64>,
    pub last_sample_ms: i64,
    pub last_seen_ms: i64,
    pub interval_ms: u32,
    /// Silent for 3 intervals or more, as of the time of the report.
    pub stale: bool,
    pub boot_id: String,
    pub agent_version: String,
    /// Pod identities known for the node.
    pub pods: u64,
    /// With `--verify`: ranges in [retained_from_seq, committed_seq] neither stored nor in a gap
    /// (should always be empty), and ranges both stored and in a gap, or stored past
    /// committed_seq (also always empty).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unaccounted: Option<Vec<SeqRange>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub double_accounted: Option<Vec<SeqRange>>,
    /// Stored above the committed number: live samples handled ahead of a replay that had not
    /// reached them when the collector stopped. Not a fault: the agent sends the backlog below
    /// them again, and the committed number passes them when it arrives.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ahead: Option<Vec<SeqRange>>,
}

/// A recorded gap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GapReport {
    pub first_seq: u64,
    pub last_seq: u64,
    pub reason: String,
    pub recorded_ms: i64,
}

/// An inclusive range of sequence numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SeqRange {
    pub first_seq: u64,
    pub last_seq: u64,
}

pub(super) fn build(
    db: &impl ReadableDatabase,
    now_ms: i64,
    verify: bool,
    progress: super::Progress<'_>,
) -> Result<StoreReport> {
    let txn = db.begin_read()?;
    let nodes = txn.open_table(NODES)?;
    let samples = txn.open_table(SAMPLES)?;
    let gaps = txn.open_table(GAPS)?;
    let pods = txn.open_table(PODS)?;
    let mut report = StoreReport { nodes: Vec::new(), unreadable_records: 0 };
    let total = nodes.len()?;
    for (done, row) in nodes.iter()?.enumerate() {
        progress(done as u64, total);
        let (name, bytes) = row?;
        let record = match NodeRecord::decode(bytes.value()) {
            Ok(record) => record,
            Err(error) => {
                tracing::warn!(node = %name.value(), %error, "skipping a node record that does not decode");
                report.unreadable_records += 1;
                continue;
            }
        };
        let id = record.node_id;
        let mut range = samples.range((id, 0u64)..=(id, u64::MAX))?;
        let first_seq = range.next().transpose()?.map(|(key, _)| key.value().1);
        let last_seq = range.next_back().transpose()?.map(|(key, _)| key.value().1).or(first_seq);
        let mut node_gaps = Vec::new();
        for row in gaps.range((id, 0u64)..=(id, u64::MAX))? {
            let (key, value) = row?;
            let (last_seq, recorded_ms, reason) = value.value();
            node_gaps.push(GapReport { first_seq: key.value().1, last_seq, reason: reason.to_string(), recorded_ms });
        }
        let (unaccounted, double_accounted, ahead) = if verify {
            let mut stored = Vec::new();
            for row in samples.range((id, 0u64)..=(id, u64::MAX))? {
                stored.push(row?.0.value().1);
            }
            let gap_ranges: Vec<SeqRange> =
                node_gaps.iter().map(|g| SeqRange { first_seq: g.first_seq, last_seq: g.last_seq }).collect();
            let accounting = account(record.retained_from_seq, record.committed_seq, &stored, &gap_ranges);
            (Some(accounting.unaccounted), Some(accounting.double_accounted), Some(accounting.ahead))
        } else {
            (None, None, None)
        };
        let pod_count = pods.range((id, 0u32)..=(id, u32::MAX))?.count() as u64;
        report.nodes.push(NodeReport {
            node: name.value().to_string(),
            samples: record.samples,
            batches: record.batches,
            first_seq,
            last_seq,
            committed_seq: record.committed_seq,
            retained_from_seq: record.retained_from_seq,
            gaps: node_gaps,
            duplicates_dropped: record.duplicates_dropped,
            invalid_seqs: record.invalid_seqs,
            clock_skew_ms: record.clock_skew_ms,
            last_sample_ms: record.last_sample_ms,
            last_seen_ms: record.last_seen_ms,
            interval_ms: record.interval_ms,
            stale: crate::liveness::is_stale(now_ms, record.last_seen_ms, record.interval_ms),
            boot_id: record.boot_id,
            agent_version: record.agent_version,
            pods: pod_count,
            unaccounted,
            double_accounted,
            ahead,
        });
    }
    Ok(report)
}

/// How a node's sequence numbers are accounted for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Accounting {
    /// In [from, through] but neither stored nor in a gap.
    pub unaccounted: Vec<SeqRange>,
    /// Stored and in a gap, or in two gaps.
    pub double_accounted: Vec<SeqRange>,
    /// Stored or gapped once beyond `through`: live rows ahead of an unfinished replay.
    pub ahead: Vec<SeqRange>,
}

/// Checks that every sequence number in `[from, through]` is accounted for exactly once by
/// `stored` (sorted, unique: they are table keys) and `gaps` (sorted by first seq), and lists
/// what is accounted for once beyond `through`.
pub fn account(from: u64, through: u64, stored: &[u64], gaps: &[SeqRange]) -> Accounting {
    // Every stored seq is a one-seq range; merge both sorted lists into one walk. Sequence
    // numbers come from agents and may be anything up to u64::MAX, so `next` (the lowest seq
    // not yet covered) is None once everything up to u64::MAX is covered.
    let mut ranges: Vec<SeqRange> = stored.iter().map(|&s| SeqRange { first_seq: s, last_seq: s }).collect();
    ranges.extend(gaps.iter().filter(|g| g.first_seq <= g.last_seq));
    ranges.sort_by_key(|r| (r.first_seq, r.last_seq));
    let mut accounting = Accounting::default();
    let mut next = Some(from);
    for range in ranges {
        if range.last_seq < from {
            continue;
        }
        let first = range.first_seq.max(from);
        match next {
            Some(next) if first > next => {
                // first > next >= from, so first - 1 does not underflow.
                accounting.unaccounted.push(SeqRange { first_seq: next, last_seq: (first - 1).min(through) });
            }
            Some(next) if first < next => {
                accounting.double_accounted.push(SeqRange { first_seq: first, last_seq: range.last_seq.min(next - 1) });
            }
            Some(_) => {}
            None => accounting.double_accounted.push(SeqRange { first_seq: first, last_seq: range.last_seq }),
        }
        if range.last_seq > through {
            // through < last_seq <= u64::MAX, so through + 1 does not overflow.
            let beyond = range.first_seq.max(through + 1);
            if let Some(beyond) = next.map(|next| beyond.max(next)).filter(|b| *b <= range.last_seq) {
                accounting.ahead.push(SeqRange { first_seq: beyond, last_seq: range.last_seq });
            }
        }
        next = match (next, range.last_seq.checked_add(1)) {
            (Some(next), Some(after)) => Some(next.max(after)),
            _ => None,
        };
    }
    if let Some(next) = next
        && next <= through
    {
        accounting.unaccounted.push(SeqRange { first_seq: next, last_seq: through });
    }
    accounting.unaccounted.retain(|r| r.first_seq <= r.last_seq && r.first_seq <= through);
    // A seq covered once beyond `through` is ahead; one covered twice is double accounted only.
    accounting.ahead = without(coalesced(std::mem::take(&mut accounting.ahead)), &accounting.double_accounted);
    accounting
}

/// `ranges` with every seq of `remove` cut out.
fn without(ranges: Vec<SeqRange>, remove: &[SeqRange]) -> Vec<SeqRange> {
    let mut kept = ranges;
    for cut in remove {
        kept = kept
            .into_iter()
            .flat_map(|r| {
                let below = (r.first_seq < cut.first_seq)
                    .then(|| SeqRange { first_seq: r.first_seq, last_seq: r.last_seq.min(cut.first_seq - 1) });
                let above = (r.last_seq > cut.last_seq)
                    .then(|| SeqRange { first_seq: r.first_seq.max(cut.last_seq + 1), last_seq: r.last_seq });
                [below, above].into_iter().flatten()
            })
            .collect();
    }
    kept
}

/// Sorted ranges with the ones that touch joined (`8..=8` and `9..=9` read `8..=9`).
fn coalesced(ranges: Vec<SeqRange>) -> Vec<SeqRange> {
    let mut joined: Vec<SeqRange> = Vec::with_capacity(ranges.len());
    for range in ranges {
        match joined.last_mut() {
            Some(last) if last.last_seq.checked_add(1).is_some_and(|after| after >= range.first_seq) => {
                last.last_seq = last.last_seq.max(range.last_seq);
            }
            _ => joined.push(range),
        }
    }
    joined
}
