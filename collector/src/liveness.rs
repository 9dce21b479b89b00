//! Sampling intervals as the collector uses them (clamped to what an agent can sample at), when
//! a node counts as stale, and how its clock skew is estimated: pure functions of times, tested
//! with data.

/// Interval assumed for a node that never declared one (the agent's default, 1 s).
pub const DEFAULT_INTERVAL_MS: u32 = 1000;

/// The shortest interval an agent samples at: bakery-agent refuses `--interval` below it and
/// clamps a SetInterval to it (`bakery_agent::stream::MIN_INTERVAL`; the e2e test
/// `hostile::bounds::the_collectors_interval_bounds_are_the_agents` ties the two).
pub const MIN_INTERVAL_MS: u32 = 50;
/// The longest interval an agent samples at (`bakery_agent::stream::MAX_INTERVAL`).
pub const MAX_INTERVAL_MS: u32 = 3_600_000;

/// A node is stale once it has been silent for this many of its sampling intervals.
pub const STALE_AFTER_INTERVALS: i64 = 3;

/// The interval everything the collector derives from an agent's declared one (the flood limit,
/// staleness, the SetInterval it repeats) is computed with: 0 (undeclared) is the default, and
/// anything outside [`MIN_INTERVAL_MS`]..=[`MAX_INTERVAL_MS`] is clamped into it, so a Hello that
/// declares 1 ms cannot raise its own flood limit nor make its node stale in 3 ms.
pub fn effective_interval_ms(declared_ms: u32) -> u32 {
    if declared_ms == 0 { DEFAULT_INTERVAL_MS } else { declared_ms.clamp(MIN_INTERVAL_MS, MAX_INTERVAL_MS) }
}

/// True when nothing arrived from the node for [`STALE_AFTER_INTERVALS`] intervals or more
/// before `now_ms`. A node never heard from (`last_seen_ms` 0) is stale.
pub fn is_stale(now_ms: i64, last_seen_ms: i64, interval_ms: u32) -> bool {
    if last_seen_ms <= 0 {
        return true;
    }
    let interval = i64::from(effective_interval_ms(interval_ms));
    now_ms.saturating_sub(last_seen_ms) >= STALE_AFTER_INTERVALS * interval
}

/// Estimates a node's clock skew (collector receive time minus sample time) from the batches it
/// sends.
///
/// Each observation is skew plus the delay between sampling and receiving. The delay is never
/// negative and is near zero for live batches, but it is the whole outage for batches replayed
/// from a spool. So the estimate is the minimum observation over the last one to two windows:
/// replayed batches do not inflate it, and a corrected clock shows within two windows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkewEstimator {
    window_ms: i64,
    current_start_ms: i64,
    current_min: Option<i64>,
    previous_min: Option<i64>,
}

impl SkewEstimator {
    pub const DEFAULT_WINDOW_MS: i64 = 60_000;

    pub fn new(window_ms: i64) -> Self {
        SkewEstimator { window_ms, current_start_ms: i64::MIN, current_min: None, previous_min: None }
    }

    /// Records a sample stamped `sample_ms` by the agent that arrived at `received_ms`.
    pub fn observe(&mut self, received_ms: i64, sample_ms: i64) {
        let elapsed = received_ms.saturating_sub(self.current_start_ms);
        if elapsed >= self.window_ms {
            // One window later the current minimum becomes the previous one; after a longer
            // silence nothing recent is left.
            self.previous_min = if elapsed < 2 * self.window_ms { self.current_min } else { None };
            self.current_min = None;
            self.current_start_ms = received_ms;
        }
        let skew = received_ms.saturating_sub(sample_ms);
        self.current_min = Some(self.current_min.map_or(skew, |min| min.min(skew)));
    }

    /// The current estimate, `None` before the first observation.
    pub fn estimate(&self) -> Option<i64> {
        match (self.current_min, self.previous_min) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

impl Default for SkewEstimator {
    fn default() -> Self {
        SkewEstimator::new(Self::DEFAULT_WINDOW_MS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_is_stale_after_three_silent_intervals() {
        let cases = [
            // (now, last_seen, interval, stale)
            (10_000, 9_000, 1000, false),
            (10_000, 7_001, 1000, false),
            (10_000, 7_000, 1000, true),
            (10_000, 1_000, 1000, true),
            (10_000, 9_800, 100, false),
            (10_000, 9_700, 100, true),
            // interval 0 (undeclared) means the default 1 s
            (10_000, 7_500, 0, false),
            (10_000, 7_000, 0, true),
            // a declared 1 ms is 50 ms: stale after 150 ms, not 3 ms
            (10_000, 9_900, 1, false),
            (10_000, 9_850, 1, true),
            // a declared day is an hour
            (20_000_000, 10_000_000, 86_400_000, false),
            (20_000_000, 9_000_000, 86_400_000, true),
            // never heard from
            (10_000, 0, 1000, true),
            // a last_seen in the future (clock stepped back) is not stale
            (10_000, 12_000, 1000, false),
        ];
        for (now, last_seen, interval, stale) in cases {
            assert_eq!(
                is_stale(now, last_seen, interval),
                stale,
                "now {now} last_seen {last_seen} interval {interval}"
            );
        }
    }

    #[test]
    fn declared_intervals_are_clamped_to_what_an_agent_can_sample_at() {
        // (declared, effective)
        let table = [(0, 1000), (1, 50), (49, 50), (50, 50), (250, 250), (3_600_000, 3_600_000), (u32::MAX, 3_600_000)];
        for (declared, effective) in table {
            assert_eq!(effective_interval_ms(declared), effective, "{declared}");
        }
    }

    #[test]
    fn skew_is_the_minimum_observation_so_replayed_batches_do_not_inflate_it() {
        let mut skew = SkewEstimator::new(60_000);
        assert_eq!(skew.estimate(), None);
        // live batches: the agent's clock is 250 ms behind, plus a few ms of delay
        skew.observe(1_000_000, 999_745);
        skew.observe(1_001_000, 1_000_748);
        assert_eq!(skew.estimate(), Some(252));
        // a batch replayed from the spool after a 5 minute outage
        skew.observe(1_002_000, 1_002_000 - 300_000 - 250);
        assert_eq!(skew.estimate(), Some(252));
    }

    #[test]
    fn skew_of_a_clock_ahead_is_negative_and_a_corrected_clock_shows_within_two_windows() {
        let mut skew = SkewEstimator::new(60_000);
        let day = 86_400_000;
        skew.observe(1_000_000, 1_000_000 + day);
        assert_eq!(skew.estimate(), Some(-day));
        // the clock is fixed; the old minimum survives one more window, then goes
        skew.observe(1_030_000, 1_029_990);
        assert_eq!(skew.estimate(), Some(-day));
        skew.observe(1_061_000, 1_060_990);
        assert_eq!(skew.estimate(), Some(-day));
        skew.observe(1_122_000, 1_121_990);
        assert_eq!(skew.estimate(), Some(10));
    }

    #[test]
    fn after_a_long_silence_only_new_observations_count() {
        let mut skew = SkewEstimator::new(60_000);
        skew.observe(1_000_000, 900_000);
        skew.observe(2_000_000, 1_999_000);
        assert_eq!(skew.estimate(), Some(1_000));
    }
}
