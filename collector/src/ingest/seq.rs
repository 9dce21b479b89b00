//! Sequence sanity: how far beyond what is already handled a message may reach, and the gaps a
//! jump forward implies. Pure functions of numbers and times, tested with data.
//!
//! An agent numbers one sequence number per sample (a dropped sample becomes part of a gap),
//! and samples at most every 50 ms. So since the collector last took a number from a node, the
//! node's agent cannot have produced more than its spool could ever hold plus what it sampled
//! meanwhile: a message beyond that ([`seq_ceiling`]) is refused, not acknowledged and not
//! stored, so it can never push the committed sequence number past the agent's own and make
//! the agent's next batches look like duplicates.

use crate::liveness::MIN_INTERVAL_MS;

/// No agent produces a sequence number this high: 2^40 is 1,700 years of samples every 50 ms.
/// A node the collector knows nothing about yet (its first Hello, a store started afresh) may
/// start anywhere below it; the agent's own `committed + 1` arithmetic never nears overflow.
pub const MAX_PLAUSIBLE_SEQ: u64 = 1 << 40;

/// How far a message may reach beyond what the collector handled, on top of the time allowance.
/// A full agent spool holds fewer records than this: the default 64 MiB spool at the agent's
/// smallest record (17 bytes on disk: length, checksum, kind byte, sequence number; 64 bytes of
/// bookkeeping per entry in memory) is under 4 M records, and 2^22 is 4,194,304.
pub const SEQ_MARGIN: u64 = 1 << 22;

/// Sequence numbers an agent may have produced per second of silence: twice its fastest rate
/// (one per 50 ms), so a replay after an outage of any length is never refused.
pub const SEQS_PER_SECOND: u64 = 2 * (1000 / MIN_INTERVAL_MS as u64);

/// Reason recorded for a jump forward that no Gap message explained.
pub const REASON_MISSING: &str = "missing, not declared by the agent";
/// Reason recorded when a reconnecting agent's spool starts after the committed sequence.
pub const REASON_LOST_BEFORE_SPOOLING: &str = "lost before spooling (agent restart without disk spool?)";

/// The highest sequence number a message may reach for a node whose messages are handled
/// through `accepted`, the last of them taken at collector time `anchor_ms` (`None`: the
/// collector knows no time for the node, as on its first Hello or with a store started afresh),
/// at collector time `now_ms`: [`SEQ_MARGIN`] plus [`SEQS_PER_SECOND`] per second since the
/// anchor, never above [`MAX_PLAUSIBLE_SEQ`]. A node that lost its disk spool starts again at
/// `accepted + 1` (the agent renumbers after the Welcome), well inside.
pub fn seq_ceiling(accepted: u64, anchor_ms: Option<i64>, now_ms: i64) -> u64 {
    let Some(anchor_ms) = anchor_ms else { return MAX_PLAUSIBLE_SEQ.max(accepted) };
    let silent_ms = u64::try_from(now_ms.saturating_sub(anchor_ms)).unwrap_or(0);
    let allowance = SEQ_MARGIN.saturating_add(silent_ms.saturating_mul(SEQS_PER_SECOND) / 1000);
    accepted.saturating_add(allowance).min(MAX_PLAUSIBLE_SEQ.max(accepted))
}

/// Gaps implied when a message starting at `next_seq` arrives while everything through
/// `accepted` is handled: none when it follows on directly. On the first message of a stream
/// whose agent said its spool starts at `oldest_spooled` (0 = empty), the seqs before the spool
/// were lost before spooling; any other hole was never declared by the agent.
pub fn implied_gaps(
    accepted: u64,
    next_seq: u64,
    first_message: bool,
    oldest_spooled: u64,
) -> Vec<(u64, u64, &'static str)> {
    let mut gaps = Vec::new();
    let mut from = accepted.saturating_add(1);
    if next_seq <= from {
        return gaps;
    }
    if first_message && oldest_spooled > from {
        let through = oldest_spooled.min(next_seq) - 1;
        gaps.push((from, through, REASON_LOST_BEFORE_SPOOLING));
        from = through + 1;
    }
    if next_seq > from {
        gaps.push((from, next_seq - 1, REASON_MISSING));
    }
    gaps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_implied_by_a_jump() {
        // follows on directly, or a duplicate: nothing
        assert!(implied_gaps(10, 11, false, 0).is_empty());
        assert!(implied_gaps(10, 5, false, 0).is_empty());
        // a jump on an established stream
        assert_eq!(implied_gaps(10, 15, false, 0), vec![(11, 14, REASON_MISSING)]);
        // first message after Welcome, the agent's spool starts later: lost before spooling
        assert_eq!(implied_gaps(10, 20, true, 20), vec![(11, 19, REASON_LOST_BEFORE_SPOOLING)]);
        // ... and a further hole between the spool start and the message
        assert_eq!(
            implied_gaps(10, 25, true, 20),
            vec![(11, 19, REASON_LOST_BEFORE_SPOOLING), (20, 24, REASON_MISSING)]
        );
        // the spool covers everything after committed: only what the agent skipped is missing
        assert_eq!(implied_gaps(10, 15, true, 11), vec![(11, 14, REASON_MISSING)]);
        assert_eq!(implied_gaps(10, 15, true, 0), vec![(11, 14, REASON_MISSING)]);
        // the spool claims to start beyond the first message: only up to the message
        assert_eq!(implied_gaps(10, 15, true, 30), vec![(11, 14, REASON_LOST_BEFORE_SPOOLING)]);
        // nothing overflows at the top of the range
        assert!(implied_gaps(u64::MAX, u64::MAX, true, u64::MAX).is_empty());
    }

    #[test]
    fn a_seq_beyond_what_the_agent_could_have_produced_is_past_the_ceiling() {
        let now = 1_000_000_000;
        // the poisoning: a node handled through 500, heard from a second ago, sent 2^64 - 1
        let ceiling = seq_ceiling(500, Some(now - 1_000), now);
        assert_eq!(ceiling, 500 + SEQ_MARGIN + SEQS_PER_SECOND);
        assert!(u64::MAX > ceiling);
        // a whole full spool replayed at once (so the next number too) is inside
        assert!(500 + SEQ_MARGIN <= ceiling);
    }

    #[test]
    fn an_outage_of_any_length_leaves_room_for_everything_the_agent_sampled_meanwhile() {
        let now = 10_000_000_000;
        // (silent for, seqs an agent at 50 ms produced meanwhile)
        for silent_ms in [300_000, 3_600_000, 7 * 86_400_000, 365 * 86_400_000] {
            let produced = silent_ms as u64 / u64::from(MIN_INTERVAL_MS);
            let ceiling = seq_ceiling(1_000, Some(now - silent_ms), now);
            assert!(1_000 + produced + SEQ_MARGIN <= ceiling, "silent {silent_ms} ms: ceiling {ceiling}");
        }
        // a collector clock that stepped back gives no time allowance, only the margin
        assert_eq!(seq_ceiling(1_000, Some(now + 60_000), now), 1_000 + SEQ_MARGIN);
    }

    #[test]
    fn a_node_the_collector_knows_no_time_for_may_start_anywhere_plausible() {
        // a first Hello (or a store started afresh) meeting an agent with a year of disk spool
        // numbering: anything below 2^40 is taken, nothing above
        assert_eq!(seq_ceiling(0, None, 5), MAX_PLAUSIBLE_SEQ);
        assert_eq!(seq_ceiling(0, Some(0), i64::MAX), MAX_PLAUSIBLE_SEQ, "capped even after ages");
        // a store that already holds more than the cap is never moved backwards by it
        assert_eq!(seq_ceiling(MAX_PLAUSIBLE_SEQ + 5, None, 5), MAX_PLAUSIBLE_SEQ + 5);
        assert_eq!(seq_ceiling(u64::MAX, Some(0), 1), u64::MAX, "saturates");
    }
}
