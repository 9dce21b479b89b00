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
            max_history_bytes: 48 << 20,
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
