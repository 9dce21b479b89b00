//! The backlog read back for a `Replay`: the samples that follow one another in the spool, merged into one batch within a budget.
//!
//! After a Welcome that offered `ReplayLimits` (bakery.proto, contract point 8), what the spool
//! held then (the backlog) goes as `Replay` messages of several samples each, so that a backlog
//! costs tens of messages instead of one per sample. A batch holds samples numbered without a
//! hole: a gap, a hole or the end of the backlog ends it, and so does the budget (bytes, samples,
//! pod identities); one sample always fits, whatever its size, as it would in a live batch.

use std::collections::HashMap;

use bakery_proto::v1 as pb;
use pb::agent_message::Kind;

use crate::spool::Spool;
use crate::spool::memory::{EntryKind, Held};

/// What the encoded `Batch` of one `Replay` may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayBudget {
    /// Bytes of the encoded batch.
    pub max_bytes: usize,
    pub max_samples: usize,
    /// Pod identities it declares.
    pub max_pods: usize,
}

/// Bytes of a `Batch` besides its spooled payloads: its sequence number's field.
const BATCH_SEQ_BYTES: usize = 11;

impl Spool {
    /// The last number held (a batch's or the end of a gap), if anything is: where a backlog
    /// ends. It can be below [`Spool::last_seq`] when the disk lost the newest records.
    pub fn last_held_seq(&self) -> Option<u64> {
        self.entries.iter().last().map(|(_, entry)| entry.last)
    }

    /// The next message of the backlog `..=through` after `sent`: a gap cut to
    /// `sent + 1..=through`, or a batch of the samples that follow one another from the first
    /// one held after `sent`, within `budget`. `None` when nothing is held in
    /// `sent + 1..=through`.
    pub fn replay_after(&mut self, sent: u64, through: u64, budget: &ReplayBudget) -> Option<Kind> {
        let first = match self.next_after(sent)? {
            Kind::Gap(gap) if gap.first_seq <= through => return Some(Kind::Gap(self.cut_gap(gap, through))),
            Kind::Batch(batch) if batch.seq <= through => batch,
            _ => return None,
        };
        let mut merged = Merged::new(first);
        while merged.batch.samples.len() < budget.max_samples {
            let seq = merged.batch.seq + merged.batch.samples.len() as u64;
            let Some(len) = self.held_batch_len(seq).filter(|_| seq <= through) else { break };
            if merged.bytes + len > budget.max_bytes {
                break;
            }
            let Some(Kind::Batch(next)) = self.next_after(seq - 1) else { break };
            if next.seq != seq || !merged.add(next, len, budget.max_pods) {
                break;
            }
        }
        Some(Kind::Batch(merged.batch))
    }

    /// `gap` ending at `through` at the latest, its reason counting what it then covers.
    fn cut_gap(&self, mut gap: pb::Gap, through: u64) -> pb::Gap {
        if gap.last_seq > through {
            let held = self.entries.covering_or_after(gap.first_seq).and_then(|key| self.entries.get(key));
            if let Some(EntryKind::Gap(cause)) = held.map(|entry| entry.kind) {
                gap.reason = cause.reason(through - gap.first_seq + 1);
            }
            gap.last_seq = through;
        }
        gap
    }

    /// The payload bytes of the batch held at exactly `seq`, if one is.
    fn held_batch_len(&self, seq: u64) -> Option<usize> {
        let entry = self.entries.get(seq).filter(|entry| entry.kind == EntryKind::Batch)?;
        Some(match &entry.held {
            Held::Memory(payload) => payload.len(),
            Held::Disk { len, .. } => *len as usize,
        })
    }
}

/// A replayed batch being built: the samples so far, and the identities they declare by number.
struct Merged {
    batch: pb::Batch,
    /// Bytes it encodes to at most.
    bytes: usize,
    pods: HashMap<u32, pb::PodIdentity>,
}

impl Merged {
    fn new(first: pb::Batch) -> Self {
        let bytes = BATCH_SEQ_BYTES + prost::Message::encoded_len(&first);
        let pods = first.new_pods.iter().map(|identity| (identity.pod_ref, identity.clone())).collect();
        Self { batch: first, bytes, pods }
    }

    /// Adds the next sample's batch (`len` bytes spooled), unless its identities would take the
    /// batch over `max_pods` or contradict one it already declares under the same number.
    fn add(&mut self, next: pb::Batch, len: usize, max_pods: usize) -> bool {
        let mut new = 0;
        for identity in &next.new_pods {
            match self.pods.get(&identity.pod_ref) {
                Some(known) if known != identity => return false,
                Some(_) => {}
                None => new += 1,
            }
        }
        if self.pods.len() + new > max_pods {
            return false;
        }
        for identity in next.new_pods {
            if let std::collections::hash_map::Entry::Vacant(slot) = self.pods.entry(identity.pod_ref) {
                slot.insert(identity.clone());
                self.batch.new_pods.push(identity);
            }
        }
        self.batch.samples.extend(next.samples);
        self.bytes += len;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::tests::batch;

    const ROOMY: ReplayBudget = ReplayBudget { max_bytes: 1 << 20, max_samples: 1024, max_pods: 512 };

    /// A batch of one sample without pods.
    fn plain(stamp: i64, size: usize) -> pb::Batch {
        pb::Batch { new_pods: Vec::new(), ..batch(stamp, size) }
    }

    /// (first seq, timestamps) of batches and (first, last) of gaps.
    fn replay_all(spool: &mut Spool, from: u64, through: u64, budget: &ReplayBudget) -> Vec<(u64, Vec<i64>)> {
        let mut out = Vec::new();
        let mut sent = from;
        while let Some(kind) = spool.replay_after(sent, through, budget) {
            match kind {
                Kind::Batch(b) => {
                    sent = b.seq + b.samples.len() as u64 - 1;
                    out.push((b.seq, b.samples.iter().map(|s| s.timestamp_ms).collect()));
                }
                Kind::Gap(g) => {
                    sent = g.last_seq;
                    out.push((g.first_seq, vec![-(g.last_seq as i64)]));
                }
                Kind::Hello(_) | Kind::Replay(_) => unreachable!(),
            }
        }
        out
    }

    #[test]
    fn the_backlog_goes_in_batches_that_a_gap_or_the_budget_ends() {
        let mut spool = Spool::in_memory(1 << 20);
        for stamp in 1..=10 {
            spool.push(plain(stamp * 100, 100));
        }
        spool.welcome(0);
        assert_eq!(spool.last_held_seq(), Some(10));
        // everything through 8 in one batch; 9 and 10 are after the backlog's end
        assert_eq!(replay_all(&mut spool, 0, 8, &ROOMY), [(1, (1..=8).map(|s| s * 100).collect())]);
        // at most 3 samples a batch
        let three = ReplayBudget { max_samples: 3, ..ROOMY };
        let seqs: Vec<u64> = replay_all(&mut spool, 2, 10, &three).iter().map(|(seq, _)| *seq).collect();
        assert_eq!(seqs, [3, 6, 9]);
        // bytes: each sample is about 110 bytes spooled, so 300 bytes hold 2 (and 1 always fits)
        let small = ReplayBudget { max_bytes: 300, ..ROOMY };
        assert!(replay_all(&mut spool, 0, 10, &small).iter().all(|(_, stamps)| stamps.len() == 2));
        let tiny = ReplayBudget { max_bytes: 1, ..ROOMY };
        assert_eq!(replay_all(&mut spool, 0, 10, &tiny).len(), 10);
        // pods: a sample declaring another identity under a number already declared starts the
        // next batch
        let mut spool = Spool::in_memory(1 << 20);
        let mut with_pod = |stamp: i64, uid: &str| {
            let mut b = batch(stamp, 10);
            b.new_pods[0].uid = uid.to_string();
            spool.push(b);
        };
        with_pod(1, "a");
        with_pod(2, "a");
        with_pod(3, "b");
        assert_eq!(replay_all(&mut spool, 0, 3, &ROOMY), [(1, vec![1, 2]), (3, vec![3])]);
    }

    #[test]
    fn a_gap_in_the_backlog_is_sent_alone_cut_to_the_backlog_and_named_for_its_part() {
        let mut spool = Spool::in_memory(700);
        for stamp in 1..=12 {
            spool.push(plain(stamp, 100));
        }
        spool.welcome(0);
        let kinds = replay_all(&mut spool, 0, 12, &ROOMY);
        let (gap_first, gap_last) = (kinds[0].0, -kinds[0].1[0] as u64);
        assert_eq!(gap_first, 1, "the oldest were dropped: {kinds:?}");
        assert_eq!(kinds[1].0, gap_last + 1, "then the samples held, in one batch: {kinds:?}");
        assert_eq!(kinds.len(), 2);
        // a backlog that ends inside the gap gets the gap up to its end, its reason counting that
        let Some(Kind::Gap(cut)) = spool.replay_after(0, 2, &ROOMY) else { panic!("a gap") };
        assert_eq!((cut.first_seq, cut.last_seq), (1, 2));
        assert!(cut.reason.starts_with("spool overflow: 2 samples dropped"), "{}", cut.reason);
    }
}
