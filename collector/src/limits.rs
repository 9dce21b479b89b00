//! The collector's bounds on what agents send: the caps ([`IngestLimits`], one flag each) and the
//! per-stream rate limit, a token bucket sized from the interval the agent declared.
//!
//! The rate limit: a stream may send [`RATE_MULTIPLIER`] times the
//! message rate its interval implies (20 batches/s at 1 s), with a burst of
//! [`BURST_SECONDS`] seconds of that rate but at least [`MIN_BURST`] messages (so a spool of a
//! few minutes drains at once). The interval is clamped to what an agent can sample at
//! ([`effective_interval_ms`]: 50 ms to 1 h), so the most any stream may send is 400 messages/s
//! (burst 2,000), whatever its Hello declares. Beyond that, messages are still accepted, but the
//! collector reads the next one only when a token is available; the agent is slowed by HTTP/2
//! flow control, never disconnected, and other streams are not affected.
//!
//! Replayed backlog (`Replay` messages, bakery.proto, contract point 8) is not counted there
//! but by the stream's replay budget ([`REPLAY_BYTES_PER_SECOND`], burst
//! [`REPLAY_BURST_BYTES`]), in bytes, each sample also costing [`REPLAY_SAMPLE_COST_BYTES`]: a
//! peer that calls everything replay gets no more than that through. [`StreamMeter`] holds
//! both for one stream.

use std::time::{Duration, Instant};

use crate::liveness::effective_interval_ms;

/// The caps on what the collector keeps from agents (`bakery-collector --help`, "Limits").
/// Each bounds memory against a misbehaving or hostile client; the defaults fit a small
/// cluster with room to spare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestLimits {
    /// Distinct node names kept in memory (`--max-nodes`). A Hello for one more is refused
    /// (RESOURCE_EXHAUSTED), unless the name is a node Kubernetes lists.
    pub max_nodes: usize,
    /// Pods one sample may hold and pod identities a node keeps (`--max-pods-per-node`).
    pub max_pods_per_node: usize,
    /// Entries kept per repeated field of a sample (cores, interfaces, temperatures, pressure,
    /// ...) and samples per batch (`--max-sample-entries`).
    pub max_sample_entries: usize,
    /// Bytes kept of a name or path an agent sends: interface, sensor and cgroup names, pressure
    /// and unavailable entries, the Hello's boot id and version (`--max-string-bytes`).
    pub max_string_bytes: usize,
    /// Bytes of batches handed to the committer and not committed yet (`--max-queue-bytes`).
    pub max_queue_bytes: usize,
    /// Bytes of recent batches kept in memory for all nodes together (`--max-history-bytes`).
    pub max_history_bytes: usize,
    /// Bytes of the largest agent message a stream reads and keeps its buffer for
    /// (`--max-message-bytes`): a larger one is handled and acknowledged, then its stream
    /// closed to free the buffer. Also bounds each Replay message the agent is told to send.
    pub max_message_bytes: usize,
    /// A node that is not connected, not listed by Kubernetes and silent this long is forgotten
    /// from memory (its rows stay in the store) (`--forget-nodes-after`).
    pub forget_nodes_after: Duration,
}

impl Default for IngestLimits {
    fn default() -> Self {
        IngestLimits {
            max_nodes: 256,
            max_pods_per_node: 512,
            max_sample_entries: 1024,
            max_string_bytes: 256,
            max_queue_bytes: 32 << 20,
            max_history_bytes: 16 << 20,
            max_message_bytes: 192 << 10,
            forget_nodes_after: Duration::from_secs(600),
        }
    }
}

/// How many times its declared rate a stream may send.
pub const RATE_MULTIPLIER: f64 = 20.0;
/// The burst, in seconds of the allowed rate.
pub const BURST_SECONDS: f64 = 5.0;
/// The smallest burst, in messages.
pub const MIN_BURST: f64 = 100.0;

/// The replay budget of a stream, bytes per second: a 64 MiB spool (the agent's default) drains
/// in about 15 s, and the collector's commits keep up with several streams at this rate.
pub const REPLAY_BYTES_PER_SECOND: f64 = 4.0 * 1024.0 * 1024.0;
/// Its burst, bytes: a backlog of this size is read at once (5 minutes of a 30-pod node at 4 Hz
/// is about 3.4 MB).
pub const REPLAY_BURST_BYTES: f64 = 8.0 * 1024.0 * 1024.0;
/// What each replayed sample costs besides its bytes (it becomes a row of the store), so that
/// empty samples cannot pass for free.
pub const REPLAY_SAMPLE_COST_BYTES: usize = 256;

/// What a replayed message of `message_bytes` holding `samples` costs in the replay budget.
pub fn replay_cost(message_bytes: usize, samples: usize) -> f64 {
    message_bytes.saturating_add(samples.saturating_mul(REPLAY_SAMPLE_COST_BYTES)) as f64
}

/// A token bucket: `rate` tokens per second, at most `burst` saved up.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate_per_s: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate_per_s: f64, burst: f64, now: Instant) -> Self {
        TokenBucket { rate_per_s, burst, tokens: burst, last: now }
    }

    /// The bucket for a stream whose agent samples every `interval_ms`.
    pub fn for_interval(interval_ms: u32, now: Instant) -> Self {
        let (rate, burst) = stream_limits(interval_ms);
        TokenBucket::new(rate, burst, now)
    }

    /// Changes the rate (the collector told the agent another interval); saved tokens stay.
    pub fn set_interval(&mut self, interval_ms: u32, now: Instant) {
        self.refill(now);
        let (rate, burst) = stream_limits(interval_ms);
        self.rate_per_s = rate;
        self.burst = burst;
        self.tokens = self.tokens.min(burst);
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate_per_s).min(self.burst);
        self.last = now;
    }

    /// Takes a token, or says how long until one is available.
    pub fn try_take(&mut self, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate_per_s))
        }
    }

    /// Takes `amount` tokens, into debt when short (what was read costs what it costs), and says
    /// how long until the debt is paid back.
    pub fn charge(&mut self, amount: f64, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        self.tokens -= amount;
        self.settled(now)
    }

    /// `Ok` once the bucket is out of debt, else how long until it is.
    pub fn settled(&mut self, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens >= 0.0 { Ok(()) } else { Err(Duration::from_secs_f64(-self.tokens / self.rate_per_s)) }
    }
}

/// How a message read from a stream is metered.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Metered {
    /// A live batch or gap: one token of the flood limit.
    Live,
    /// Replayed backlog: its [`replay_cost`] from the replay budget.
    Replay { cost: f64 },
}

/// One stream's meters: the flood limit for live messages and the replay budget for replayed
/// ones. After each message the stream reads the next only once the meter that message drew
/// on allows it.
#[derive(Debug, Clone)]
pub struct StreamMeter {
    live: TokenBucket,
    replay: TokenBucket,
    /// The meter the stream waits on, if it does.
    waiting_on_replay: bool,
}

impl StreamMeter {
    /// Full meters for a stream whose agent samples every `interval_ms`.
    pub fn new(interval_ms: u32, now: Instant) -> Self {
        StreamMeter {
            live: TokenBucket::for_interval(interval_ms, now),
            replay: TokenBucket::new(REPLAY_BYTES_PER_SECOND, REPLAY_BURST_BYTES, now),
            waiting_on_replay: false,
        }
    }

    /// The collector told the agent another interval.
    pub fn set_interval(&mut self, interval_ms: u32, now: Instant) {
        self.live.set_interval(interval_ms, now);
    }

    /// After a message: `None` to read the next at once, else how long to wait first.
    pub fn after(&mut self, metered: Metered, now: Instant) -> Option<Duration> {
        let result = match metered {
            Metered::Live => self.live.try_take(now),
            Metered::Replay { cost } => self.replay.charge(cost, now),
        };
        self.waiting_on_replay = matches!(metered, Metered::Replay { .. });
        result.err()
    }

    /// The wait is over: `None` to read on, else how much longer (the meter waited on is still
    /// short; the flood limit takes its token now).
    pub fn resume(&mut self, now: Instant) -> Option<Duration> {
        if self.waiting_on_replay { self.replay.settled(now).err() } else { self.live.try_take(now).err() }
    }
}

/// (messages per second, burst) allowed for a stream sampling every `interval_ms` (clamped to
/// what an agent can sample at).
pub fn stream_limits(interval_ms: u32) -> (f64, f64) {
    let interval = effective_interval_ms(interval_ms);
    let rate = RATE_MULTIPLIER * 1000.0 / f64::from(interval);
    (rate, (rate * BURST_SECONDS).max(MIN_BURST))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_scale_with_the_declared_interval() {
        assert_eq!(stream_limits(1000), (20.0, 100.0));
        assert_eq!(stream_limits(0), (20.0, 100.0));
        assert_eq!(stream_limits(100), (200.0, 1000.0));
        assert_eq!(stream_limits(10_000), (2.0, 100.0));
    }

    #[test]
    fn a_declared_interval_outside_what_an_agent_can_sample_at_is_clamped() {
        // 1 ms would be 20,000 messages/s; it counts as 50 ms: 400/s, burst 2,000
        assert_eq!(stream_limits(1), (400.0, 2000.0));
        assert_eq!(stream_limits(49), stream_limits(50));
        // a day counts as an hour (and the burst floor still lets a spool drain)
        assert_eq!(stream_limits(86_400_000), stream_limits(3_600_000));
        assert_eq!(stream_limits(u32::MAX).1, MIN_BURST);
    }

    #[test]
    fn a_flood_gets_the_burst_then_the_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::for_interval(1000, start);
        let taken = (0..1000).filter(|_| bucket.try_take(start).is_ok()).count();
        assert_eq!(taken, 100, "the burst");
        let wait = bucket.try_take(start).expect_err("empty");
        assert!((wait.as_secs_f64() - 0.05).abs() < 1e-9, "one token every 50 ms, got {wait:?}");
        // one second later: 20 more
        let later = start + Duration::from_secs(1);
        let taken = (0..1000).filter(|_| bucket.try_take(later).is_ok()).count();
        assert_eq!(taken, 20);
    }

    #[test]
    fn replay_is_metered_in_bytes_by_its_own_budget_and_leaves_the_flood_limit_alone() {
        let start = Instant::now();
        let mut meter = StreamMeter::new(1000, start);
        // 100 live messages: the flood limit's burst; after the next one the stream waits.
        for _ in 0..100 {
            assert_eq!(meter.after(Metered::Live, start), None);
        }
        assert!(meter.after(Metered::Live, start).is_some(), "the burst is spent");
        // Replay draws on its own budget: the burst in bytes, however many messages.
        let message = REPLAY_BURST_BYTES / 8.0;
        for _ in 0..8 {
            assert_eq!(meter.after(Metered::Replay { cost: message }, start), None);
        }
        // Beyond it the stream waits until the debt is paid back at the replay rate.
        let wait = meter.after(Metered::Replay { cost: message }, start).expect("in debt");
        assert!((wait.as_secs_f64() - message / REPLAY_BYTES_PER_SECOND).abs() < 1e-9, "{wait:?}");
        assert!(meter.resume(start + wait / 2).is_some(), "half paid back");
        assert_eq!(meter.resume(start + wait), None);
        // Empty samples are not free: each costs a row's worth.
        assert_eq!(replay_cost(10, 4), (10 + 4 * REPLAY_SAMPLE_COST_BYTES) as f64);
    }

    #[test]
    fn a_faster_interval_raises_the_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::for_interval(1000, start);
        while bucket.try_take(start).is_ok() {}
        bucket.set_interval(100, start);
        let later = start + Duration::from_millis(100);
        let taken = (0..1000).filter(|_| bucket.try_take(later).is_ok()).count();
        assert_eq!(taken, 20, "200/s for 100 ms");
    }
}
