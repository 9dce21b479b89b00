//! The replay lane of a stream: the backlog sent as `Replay` messages beside the live samples, within the collector's limits and a window of unacknowledged bytes.
//!
//! After a Welcome with `ReplayLimits` (bakery.proto, contract point 8), what the spool held
//! then, through its last held number, goes as `Replay` messages of several samples each. The
//! lane keeps at most [`REPLAY_WINDOW_BYTES`] of them unacknowledged: the collector commits a
//! backlog as fast as it acknowledges it, and its commit queue never holds so much of the
//! backlog that a live sample queued behind it waits long.

use std::collections::VecDeque;

use bakery_proto::v1 as pb;
use pb::agent_message::Kind;
use prost::Message;

use crate::spool::{ReplayBudget, Spool};

/// Bytes of `Replay` messages a stream keeps unacknowledged at most: with acks every commit
/// (200 ms by default), a backlog drains at about 2.5 MiB/s per agent.
pub const REPLAY_WINDOW_BYTES: usize = 512 * 1024;

/// Bytes of one `Replay` at most, whatever larger size the collector allows: a live sample
/// waits behind at most one of them on the wire.
pub const REPLAY_MESSAGE_BYTES: usize = 64 * 1024;

/// Bytes of an `AgentMessage` around its `Replay`'s batch: tags, lengths and `through_seq`.
const REPLAY_FRAMING_BYTES: usize = 32;

/// One stream's replay lane, from the Welcome until the backlog is sent.
#[derive(Debug)]
pub(super) struct ReplayLane {
    /// The last number of the backlog.
    pub(super) through: u64,
    /// Everything up to it was sent on this stream (or acknowledged).
    pub(super) sent: u64,
    budget: ReplayBudget,
    /// (last number, bytes) of each `Replay` not acknowledged yet, in order.
    in_flight: VecDeque<(u64, usize)>,
    in_flight_bytes: usize,
    /// The first `Replay` went out: live messages may follow it.
    pub(super) started: bool,
}

impl ReplayLane {
    /// The lane for a backlog `committed + 1..=through`, within the collector's `limits`.
    pub(super) fn new(limits: &pb::ReplayLimits, committed: u64, through: u64) -> Self {
        let max_message = (limits.max_message_bytes as usize).min(REPLAY_MESSAGE_BYTES);
        let budget = ReplayBudget {
            max_bytes: max_message.saturating_sub(REPLAY_FRAMING_BYTES),
            max_samples: (limits.max_samples as usize).max(1),
            max_pods: limits.max_pods as usize,
        };
        Self { through, sent: committed, budget, in_flight: VecDeque::new(), in_flight_bytes: 0, started: false }
    }

    /// Everything of the backlog was sent (or acknowledged).
    pub(super) fn done(&self) -> bool {
        self.sent >= self.through
    }

    /// More of the backlog to send, and room for it in the window.
    pub(super) fn due(&self) -> bool {
        !self.done() && (self.in_flight.is_empty() || self.in_flight_bytes < REPLAY_WINDOW_BYTES)
    }

    /// The collector acknowledged everything up to `committed`.
    pub(super) fn acked(&mut self, committed: u64) {
        while let Some(&(_, bytes)) = self.in_flight.front().filter(|(last, _)| *last <= committed) {
            self.in_flight.pop_front();
            self.in_flight_bytes -= bytes;
        }
        self.sent = self.sent.max(committed);
    }

    /// The next part of the backlog from `spool`, or `None` when nothing of it is left (the lane
    /// is then done).
    pub(super) fn take(&mut self, spool: &mut Spool) -> Option<Kind> {
        let next = spool.replay_after(self.sent, self.through, &self.budget);
        if next.is_none() {
            self.sent = self.through;
        }
        next
    }

    /// `kind` (from [`ReplayLane::take`], its pods stripped) as the `Replay` to send, counted
    /// as sent and unacknowledged.
    pub(super) fn wrap(&mut self, kind: Kind) -> pb::AgentMessage {
        let (last, inner) = match kind {
            Kind::Batch(batch) => (batch.seq + (batch.samples.len().max(1) as u64) - 1, pb::replay::Kind::Batch(batch)),
            Kind::Gap(gap) => (gap.last_seq, pb::replay::Kind::Gap(gap)),
            // Never produced by the spool.
            Kind::Hello(_) | Kind::Replay(_) => (self.sent, pb::replay::Kind::Gap(pb::Gap::default())),
        };
        let replay = pb::Replay { through_seq: self.through, kind: Some(inner) };
        let message = pb::AgentMessage { kind: Some(Kind::Replay(replay)) };
        let bytes = message.encoded_len();
        self.in_flight.push_back((last, bytes));
        self.in_flight_bytes += bytes;
        self.sent = self.sent.max(last);
        self.started = true;
        message
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> pb::ReplayLimits {
        pb::ReplayLimits { max_message_bytes: 4 << 20, max_samples: 1024, max_pods: 512 }
    }

    fn sample_batch(seq: u64, samples: usize, bytes: usize) -> Kind {
        let sample = pb::Sample {
            unavailable: vec![pb::Unavailable { signal: "x".repeat(bytes), reason: String::new() }],
            ..pb::Sample::default()
        };
        Kind::Batch(pb::Batch { seq, new_pods: vec![], samples: vec![sample; samples] })
    }

    #[test]
    fn the_window_holds_the_lane_until_acks_free_it() {
        let mut lane = ReplayLane::new(&limits(), 10, 1_000);
        assert!(lane.due() && !lane.started);
        // 8 replays of about 64 KiB fill the window
        let mut seq = 11;
        let mut sent = 0;
        while lane.due() {
            let message = lane.wrap(sample_batch(seq, 10, 6_500));
            assert!(message.encoded_len() < REPLAY_MESSAGE_BYTES);
            seq += 10;
            sent += 1;
        }
        assert!(lane.started);
        assert_eq!((sent, lane.sent), (9, 100), "the window is 512 KiB: the 9th message crossed it");
        lane.acked(30);
        assert!(lane.due(), "an ack makes room");
        lane.acked(1_000);
        assert!(lane.done() && !lane.due());
    }

    #[test]
    fn the_collectors_limits_bound_each_replay_and_the_agents_own_cap_applies_too() {
        let small = pb::ReplayLimits { max_message_bytes: 1_000, max_samples: 0, max_pods: 3 };
        let lane = ReplayLane::new(&small, 0, 5);
        assert_eq!(lane.budget, ReplayBudget { max_bytes: 1_000 - REPLAY_FRAMING_BYTES, max_samples: 1, max_pods: 3 });
        let lane = ReplayLane::new(&limits(), 0, 5);
        assert_eq!(lane.budget.max_bytes, REPLAY_MESSAGE_BYTES - REPLAY_FRAMING_BYTES);
    }
}
