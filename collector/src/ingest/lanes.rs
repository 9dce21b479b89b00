//! A stream's two lanes, live and replay: their order, and the live samples handled ahead of an unfinished replay.
//!
//! After a Welcome that offered `ReplayLimits`, an agent sends its backlog as `Replay` messages
//! (each naming the backlog's last number, `through_seq`) and, between them, its live batches
//! and gaps numbered above it (bakery.proto, contract points 3 and 8). Each lane is in order on
//! its own; the first `Replay` comes before any live message. While the replay has not reached
//! `through_seq`, a live message is handled *ahead*: stored and shown at once, but it does not
//! move what the node is handled through (acks stay contiguous, point 4) until the replay
//! reaches `through_seq` and the two join. Pure bookkeeping over numbers, tested with data.

use bakery_proto::v1::agent_message::Kind as AgentKind;
use bakery_proto::v1::{AgentMessage, Batch, PodIdentity, replay};

use crate::limits::{Metered, replay_cost};

/// Which lane a message travels in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// A `Batch` or `Gap`: one sample per batch, as taken.
    Live,
    /// A `Replay`: part of the backlog that ends at `through`.
    Replay { through: u64 },
}

/// A message out of its lane's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LaneError {
    /// `first` is not above `after`, the previous number of its lane (or the backlog's end, for
    /// a live message).
    Regression { first: u64, after: u64 },
    /// A first `Replay` after live messages on the stream.
    ReplayAfterLive,
    /// A `Replay` naming another end of the backlog than the stream's first one did.
    OtherThrough { through: u64, declared: u64 },
    /// A `Replay` reaching beyond the backlog's end it names.
    BeyondThrough { last: u64, through: u64 },
}

impl std::fmt::Display for LaneError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LaneError::Regression { first, after } => {
                write!(f, "sequence number {first} after {after} on the same stream: sequence numbers must increase")
            }
            LaneError::ReplayAfterLive => write!(f, "a Replay after live messages on the same stream"),
            LaneError::OtherThrough { through, declared } => {
                write!(f, "a Replay through {through} on a stream whose backlog ends at {declared}")
            }
            LaneError::BeyondThrough { last, through } => {
                write!(f, "a Replay reaching {last}, beyond the end of its backlog {through}")
            }
        }
    }
}

/// The replay lane of a stream, from its first `Replay` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ReplayLane {
    through: u64,
    /// The last number replayed on the stream (0 before the first).
    last: u64,
    /// The live numbers handled ahead of the replay, while it has not reached `through`.
    ahead: Option<(u64, u64)>,
}

/// Where a stream's lanes stand.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Lanes {
    /// The last live number on the stream (0 before the first).
    live_last: u64,
    replay: Option<ReplayLane>,
    /// Something was sent on the stream.
    any: bool,
}

impl Lanes {
    /// Nothing was sent on the stream yet.
    pub fn first_message(&self) -> bool {
        !self.any
    }

    /// Checks that a message of `lane` covering `first..=last` may come now, and records it.
    pub fn admit(&mut self, lane: Lane, first: u64, last: u64) -> Result<(), LaneError> {
        match lane {
            Lane::Replay { through } => {
                if last > through {
                    return Err(LaneError::BeyondThrough { last, through });
                }
                let replay = match &mut self.replay {
                    Some(replay) if replay.through != through => {
                        return Err(LaneError::OtherThrough { through, declared: replay.through });
                    }
                    Some(replay) => replay,
                    None if self.any => return Err(LaneError::ReplayAfterLive),
                    None => self.replay.insert(ReplayLane { through, last: 0, ahead: None }),
                };
                if first <= replay.last {
                    return Err(LaneError::Regression { first, after: replay.last });
                }
                replay.last = last;
            }
            Lane::Live => {
                let after = self.live_last.max(self.replay.map_or(0, |r| r.through));
                if first <= after {
                    return Err(LaneError::Regression { first, after });
                }
                self.live_last = last;
            }
        }
        self.any = true;
        Ok(())
    }

    /// For a live message while the node is handled through `accepted`: when the replay has not
    /// reached its end yet, the message goes ahead of it, and this is the number the live
    /// numbering continues from (the backlog's end, or the live number before it); else `None`.
    pub fn ahead_of(&self, lane: Lane, accepted: u64) -> Option<u64> {
        let replay = self.replay.filter(|r| lane == Lane::Live && accepted < r.through)?;
        Some(replay.ahead.map_or(replay.through, |(_, last)| last.max(replay.through)))
    }

    /// Records live numbers `first..=last` handled ahead of the replay.
    pub fn went_ahead(&mut self, first: u64, last: u64) {
        if let Some(replay) = &mut self.replay {
            replay.ahead = Some(replay.ahead.map_or((first, last), |(from, _)| (from, last)));
        }
    }

    /// Once the node is handled through `accepted`: when that reaches the backlog's end and live
    /// numbers went ahead, the number the node is now handled through (the last of them).
    pub fn join(&mut self, accepted: u64) -> Option<u64> {
        let replay = self.replay.as_mut().filter(|r| accepted >= r.through)?;
        replay.ahead.take().map(|(_, last)| last.max(accepted))
    }
}

/// The lane of a message and, for a `Replay`, the message inside it.
pub fn unwrap_replay(message: AgentMessage) -> (Option<AgentKind>, Lane) {
    match message.kind {
        Some(AgentKind::Replay(replay)) => {
            let lane = Lane::Replay { through: replay.through_seq };
            let kind = match replay.kind {
                Some(replay::Kind::Batch(batch)) => Some(AgentKind::Batch(batch)),
                Some(replay::Kind::Gap(gap)) => Some(AgentKind::Gap(gap)),
                None => None,
            };
            (kind, lane)
        }
        kind => (kind, Lane::Live),
    }
}

/// How `message` (`message_bytes` on the wire) is metered: a `Replay` by the replay budget.
pub fn metered(message: &AgentMessage, message_bytes: usize) -> Metered {
    match &message.kind {
        Some(AgentKind::Replay(replay)) => {
            let samples = match &replay.kind {
                Some(replay::Kind::Batch(batch)) => batch.samples.len(),
                _ => 0,
            };
            Metered::Replay { cost: replay_cost(message_bytes, samples) }
        }
        _ => Metered::Live,
    }
}

/// A replayed batch as batches of one sample each, numbered from its `seq`: each declares the
/// pods it is the first of them to reference, and identities no sample references go with the
/// first. So each is what a live batch would have been, and takes the same path.
pub fn split(batch: Batch) -> Vec<Batch> {
    if batch.samples.len() <= 1 {
        return vec![batch];
    }
    let Batch { seq, new_pods, samples } = batch;
    let mut undeclared: Vec<Option<PodIdentity>> = new_pods.into_iter().map(Some).collect();
    let mut pieces: Vec<Batch> = Vec::with_capacity(samples.len());
    for (sample, seq) in samples.into_iter().zip(seq..) {
        let mut declared = Vec::new();
        for pod in &sample.pods {
            for slot in &mut undeclared {
                if slot.as_ref().is_some_and(|identity| identity.pod_ref == pod.pod_ref)
                    && let Some(identity) = slot.take()
                {
                    declared.push(identity);
                }
            }
        }
        pieces.push(Batch { seq, new_pods: declared, samples: vec![sample] });
    }
    if let Some(first) = pieces.first_mut() {
        first.new_pods.extend(undeclared.into_iter().flatten());
    }
    pieces
}

#[cfg(test)]
mod tests {
    use bakery_proto::v1::{PodSample, Sample};

    use super::*;

    const REPLAY_TO_20: Lane = Lane::Replay { through: 20 };

    #[test]
    fn each_lane_is_in_order_and_live_numbers_come_above_the_backlog() {
        let mut lanes = Lanes::default();
        assert!(lanes.first_message());
        assert_eq!(lanes.admit(REPLAY_TO_20, 11, 14), Ok(()));
        assert!(!lanes.first_message());
        // live numbers above the backlog, interleaved with the replay
        assert_eq!(lanes.admit(Lane::Live, 15, 15), Err(LaneError::Regression { first: 15, after: 20 }));
        assert_eq!(lanes.admit(Lane::Live, 21, 21), Ok(()));
        assert_eq!(lanes.admit(REPLAY_TO_20, 15, 18), Ok(()));
        assert_eq!(lanes.admit(Lane::Live, 22, 22), Ok(()));
        assert_eq!(lanes.admit(Lane::Live, 22, 22), Err(LaneError::Regression { first: 22, after: 22 }));
        // each lane in order, within its backlog, naming one backlog
        assert_eq!(lanes.admit(REPLAY_TO_20, 18, 19), Err(LaneError::Regression { first: 18, after: 18 }));
        assert_eq!(lanes.admit(REPLAY_TO_20, 19, 21), Err(LaneError::BeyondThrough { last: 21, through: 20 }));
        let other = Lane::Replay { through: 30 };
        assert_eq!(lanes.admit(other, 19, 19), Err(LaneError::OtherThrough { through: 30, declared: 20 }));
        assert_eq!(lanes.admit(REPLAY_TO_20, 19, 20), Ok(()));
    }

    #[test]
    fn a_replay_comes_first_or_not_at_all() {
        let mut lanes = Lanes::default();
        assert_eq!(lanes.admit(Lane::Live, 5, 5), Ok(()));
        assert_eq!(lanes.admit(REPLAY_TO_20, 6, 6), Err(LaneError::ReplayAfterLive));
        // without a replay the live lane is the only one, in order
        assert_eq!(lanes.admit(Lane::Live, 5, 5), Err(LaneError::Regression { first: 5, after: 5 }));
        assert_eq!(lanes.ahead_of(Lane::Live, 0), None);
    }

    #[test]
    fn live_numbers_go_ahead_of_an_unfinished_replay_and_join_it_at_its_end() {
        let mut lanes = Lanes::default();
        lanes.admit(REPLAY_TO_20, 11, 14).unwrap();
        // handled through 14: a live 23 goes ahead, after the backlog's end
        assert_eq!(lanes.ahead_of(Lane::Live, 14), Some(20));
        assert_eq!(lanes.ahead_of(REPLAY_TO_20, 14), None, "the replay itself never goes ahead");
        lanes.went_ahead(23, 23);
        assert_eq!(lanes.ahead_of(Lane::Live, 14), Some(23), "the next live one continues after 23");
        lanes.went_ahead(24, 24);
        assert_eq!(lanes.join(19), None, "the replay is not at its end yet");
        assert_eq!(lanes.join(20), Some(24), "at its end the live ones ahead join it");
        assert_eq!(lanes.join(20), None, "once");
        assert_eq!(lanes.ahead_of(Lane::Live, 24), None, "live numbers then take the usual path");
        // a backlog the node already handled (an older stream delivered it) holds nothing up
        let mut lanes = Lanes::default();
        lanes.admit(REPLAY_TO_20, 11, 20).unwrap();
        assert_eq!(lanes.ahead_of(Lane::Live, 25), None);
        assert_eq!(lanes.join(25), None);
    }

    fn identity(pod_ref: u32) -> PodIdentity {
        PodIdentity { pod_ref, uid: format!("pod-{pod_ref}"), ..PodIdentity::default() }
    }

    fn sample(timestamp_ms: i64, pods: &[u32]) -> Sample {
        let pods = pods.iter().map(|pod_ref| PodSample { pod_ref: *pod_ref, ..PodSample::default() }).collect();
        Sample { timestamp_ms, pods, ..Sample::default() }
    }

    #[test]
    fn a_replayed_batch_splits_into_one_sample_batches_each_declaring_what_it_first_references() {
        let batch = Batch {
            seq: 7,
            new_pods: vec![identity(1), identity(2), identity(3), identity(9)],
            samples: vec![sample(100, &[1]), sample(200, &[1, 2]), sample(300, &[3, 2])],
        };
        let pieces = split(batch);
        let seen: Vec<(u64, Vec<u32>, i64)> = pieces
            .iter()
            .map(|b| (b.seq, b.new_pods.iter().map(|p| p.pod_ref).collect(), b.samples[0].timestamp_ms))
            .collect();
        // pod 9 is declared but never referenced: it goes with the first
        assert_eq!(seen, [(7, vec![1, 9], 100), (8, vec![2], 200), (9, vec![3], 300)]);
        // one sample (or none) stays as it is
        let single = Batch { seq: 4, new_pods: vec![identity(5)], samples: vec![sample(1, &[])] };
        assert_eq!(split(single.clone()), [single]);
    }
}
