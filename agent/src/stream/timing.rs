//! When to give up on a collector and when to try again: the reconnect backoff and the ack watch.
//!
//! Both are pure over the instants and the random numbers they are given, so
//! the timing rules are tested without a network.

use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

/// Reconnect timing: exponential backoff with full jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Upper bound of the first delay.
    pub base: Duration,
    /// The delay never exceeds this: however long the outage, an agent tries
    /// again within it, so a collector that comes back has every agent's
    /// backlog within seconds (replaying it takes well under a second).
    pub cap: Duration,
    /// A stream that stayed up this long resets the backoff (so does one that
    /// got an ack: the collector was working).
    pub healthy_after: Duration,
    /// During the first `outage_cap_for` of an outage the delay never exceeds
    /// this: a collector restarting (a crash, an upgrade) is back within
    /// seconds, and every agent should be streaming again within 2 s of it.
    pub outage_cap: Duration,
    pub outage_cap_for: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(250),
            cap: Duration::from_secs(5),
            healthy_after: Duration::from_secs(30),
            outage_cap: Duration::from_secs(2),
            outage_cap_for: Duration::from_secs(60),
        }
    }
}

impl Backoff {
    /// The delay before reconnect attempt `attempt` (0 for the first after a
    /// loss) in an outage that began `outage_age` ago: uniform in
    /// `[0, ceiling]` ("full jitter"). Drawing from the whole range spreads 200 agents
    /// that lost the same collector over the window instead of having them
    /// return in lockstep.
    pub fn delay(&self, attempt: u32, outage_age: Duration, rng: &mut impl Rng) -> Duration {
        let ceiling = self.ceiling(attempt, outage_age);
        Duration::from_nanos(rng.random_range(0..=ceiling.as_nanos().min(u64::MAX as u128) as u64))
    }

    /// `min(cap, base * 2^attempt)`, and at most `outage_cap` during the
    /// first `outage_cap_for` of the outage.
    pub fn ceiling(&self, attempt: u32, outage_age: Duration) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        let cap = if outage_age < self.outage_cap_for { self.cap.min(self.outage_cap) } else { self.cap };
        self.base.saturating_mul(factor).min(cap)
    }
}

/// Watches for acks while batches are outstanding: a collector that takes
/// batches and stops acknowledging them (a hung committer, a stuck disk) is
/// treated as dead and the stream reconnected, instead of waiting on it for
/// ever. Pure over the instants it is given.
///
/// The timeout is the longer of the configured floor and 4x the slowest
/// recent wait for an ack, which follows the collector's commit interval (an
/// ack comes after each commit): 2 s for the default 200 ms, 20 s for a
/// collector committing every 5 s. Until a first ack has shown how fast the
/// collector commits, it is at least 10 s. While a collector takes batches
/// and never acks (a full disk: it keeps serving but commits nothing), each
/// stream that ends this way doubles the timeout, up to 10 minutes, so
/// reconnecting does not become a loop; an ack resets it.
#[derive(Debug, Clone)]
pub struct AckWatch {
    floor: Duration,
    /// The slowest recent wait for an ack, decaying by a tenth per ack; none
    /// before the first ack.
    slowest: Option<Duration>,
    /// Since when an ack is awaited: the first send after the last ack.
    waiting_since: Option<Instant>,
    /// Streams in a row that ended on this timeout without an ack.
    strikes: u32,
}

/// The [`AckWatch`] timeout before any ack was seen.
const UNLEARNED_ACK_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest [`AckWatch`] timeout.
const ACK_TIMEOUT_CEILING: Duration = Duration::from_secs(600);

impl AckWatch {
    pub fn new(floor: Duration) -> Self {
        Self { floor, slowest: None, waiting_since: None, strikes: 0 }
    }

    /// A new stream: nothing sent on it yet.
    pub fn new_stream(&mut self) {
        self.waiting_since = None;
    }

    /// A batch or gap went out at `now`.
    pub fn sent(&mut self, now: Instant) {
        self.waiting_since.get_or_insert(now);
    }

    /// An ack arrived at `now`; `outstanding` says whether sent batches are
    /// still unacknowledged.
    pub fn acked(&mut self, now: Instant, outstanding: bool) {
        if let Some(since) = self.waiting_since {
            let waited = now.saturating_duration_since(since);
            self.slowest = Some(waited.max(self.slowest.unwrap_or_default().mul_f64(0.9)));
        }
        self.waiting_since = outstanding.then_some(now);
        self.strikes = 0;
    }

    /// How long to wait for an ack now.
    pub fn timeout(&self) -> Duration {
        let base = match self.slowest {
            Some(slowest) => self.floor.max(slowest.saturating_mul(4)),
            None => self.floor.max(UNLEARNED_ACK_TIMEOUT),
        };
        base.saturating_mul(1u32.checked_shl(self.strikes.min(16)).unwrap_or(u32::MAX))
            .min(ACK_TIMEOUT_CEILING.max(self.floor))
    }

    /// When the collector counts as dead if no ack comes (none while nothing
    /// is outstanding).
    pub fn deadline(&self) -> Option<Instant> {
        self.waiting_since.map(|since| since + self.timeout())
    }

    /// The deadline passed: the stream is given up.
    pub fn expired(&mut self) {
        self.strikes = self.strikes.saturating_add(1);
        self.waiting_since = None;
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    /// A "random" source that always returns the same bits, to pin the ends
    /// of the range.
    struct Constant(u64);

    impl rand::RngCore for Constant {
        fn next_u32(&mut self) -> u32 {
            self.0 as u32
        }
        fn next_u64(&mut self) -> u64 {
            self.0
        }
        fn fill_bytes(&mut self, dst: &mut [u8]) {
            dst.fill(self.0 as u8);
        }
    }

    /// An outage older than the first minute: the plain exponential cap.
    const LONG_OUTAGE: Duration = Duration::from_secs(120);

    #[test]
    fn backoff_stays_within_the_doubling_ceiling_and_the_cap() {
        let backoff = Backoff::default();
        let mut rng = StdRng::seed_from_u64(7);
        for attempt in 0..40 {
            let ceiling = backoff.ceiling(attempt, LONG_OUTAGE);
            assert!(ceiling <= backoff.cap);
            for _ in 0..200 {
                assert!(backoff.delay(attempt, LONG_OUTAGE, &mut rng) <= ceiling, "attempt {attempt}");
            }
        }
        assert_eq!(backoff.ceiling(0, LONG_OUTAGE), Duration::from_millis(250));
        assert_eq!(backoff.ceiling(3, LONG_OUTAGE), Duration::from_secs(2));
        assert_eq!(backoff.ceiling(5, LONG_OUTAGE), Duration::from_secs(5), "250 ms * 32 = 8 s, capped");
        assert_eq!(backoff.ceiling(u32::MAX, LONG_OUTAGE), Duration::from_secs(5));
    }

    #[test]
    fn during_the_first_minute_of_an_outage_no_delay_exceeds_2_s() {
        let backoff = Backoff::default();
        let mut rng = StdRng::seed_from_u64(11);
        for attempt in 0..40 {
            for age_s in [0, 1, 30, 59] {
                let age = Duration::from_secs(age_s);
                assert!(backoff.ceiling(attempt, age) <= Duration::from_secs(2), "attempt {attempt} at {age_s} s");
                assert!(backoff.delay(attempt, age, &mut rng) <= Duration::from_secs(2));
            }
        }
        assert_eq!(
            backoff.ceiling(2, Duration::ZERO),
            Duration::from_secs(1),
            "the doubling still applies below the cap"
        );
        // then the usual cap
        assert_eq!(backoff.ceiling(10, Duration::from_secs(60)), Duration::from_secs(5));
    }

    #[test]
    fn backoff_uses_the_whole_range_down_to_zero() {
        let backoff = Backoff::default();
        assert_eq!(backoff.delay(5, LONG_OUTAGE, &mut Constant(0)), Duration::ZERO);
        assert_eq!(backoff.delay(5, LONG_OUTAGE, &mut Constant(u64::MAX)), backoff.ceiling(5, LONG_OUTAGE));
        // Full jitter: 1000 draws at attempt 4 (ceiling 4 s) cover the range evenly.
        let mut rng = StdRng::seed_from_u64(1);
        let draws: Vec<Duration> = (0..1000).map(|_| backoff.delay(4, LONG_OUTAGE, &mut rng)).collect();
        let below_half = draws.iter().filter(|d| **d < Duration::from_secs(2)).count();
        assert!((400..600).contains(&below_half), "{below_half} of 1000 below half the ceiling");
        assert!(draws.iter().any(|d| *d < Duration::from_millis(200)));
        assert!(draws.iter().any(|d| *d > Duration::from_millis(3800)));
    }

    #[test]
    fn the_ack_watch_waits_only_while_batches_are_outstanding() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut watch = AckWatch::new(Duration::from_secs(2));
        assert_eq!(watch.deadline(), None, "nothing sent, nothing awaited");
        watch.sent(ms(0));
        watch.sent(ms(100)); // a second batch does not move the deadline
        assert_eq!(watch.deadline(), Some(ms(10_000)), "10 s until an ack shows how fast the collector commits");
        // an ack for everything: nothing outstanding
        watch.acked(ms(200), false);
        assert_eq!(watch.deadline(), None);
        // an ack for part: the wait starts again from it
        watch.sent(ms(300));
        watch.acked(ms(500), true);
        assert_eq!(watch.deadline(), Some(ms(2_500)));
    }

    #[test]
    fn the_ack_timeout_follows_a_slow_collector_and_backs_off_on_one_that_never_acks() {
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        let mut watch = AckWatch::new(Duration::from_secs(2));
        // a collector that commits every 5 s: acks come 5 s after a send
        for n in 0..3 {
            watch.sent(s(10 * n));
            watch.acked(s(10 * n + 5), false);
        }
        assert_eq!(watch.timeout(), Duration::from_secs(20), "4x the slowest wait for an ack");
        // a collector that takes batches and never acks: each stream ending on the
        // timeout doubles the next one, up to 10 minutes
        let mut timeouts = Vec::new();
        for _ in 0..7 {
            watch.new_stream();
            watch.sent(s(100));
            timeouts.push(watch.deadline().unwrap().duration_since(s(100)).as_secs());
            watch.expired();
        }
        assert_eq!(timeouts, [20, 40, 80, 160, 320, 600, 600]);
        // one ack and it is back to normal
        watch.sent(s(200));
        watch.acked(s(201), false);
        assert!(watch.timeout() <= Duration::from_secs(20));
        // the slow waits are forgotten as fast acks come in
        for n in 0..60 {
            watch.sent(s(300 + n));
            watch.acked(s(300 + n) + Duration::from_millis(200), false);
        }
        assert_eq!(watch.timeout(), Duration::from_secs(2), "back to the floor");
    }
}
