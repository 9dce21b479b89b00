//! Logging at a limited rate: a repeated event is logged at most once per period per key, with
//! the number of events suppressed since, so a misbehaving client cannot flood the log.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Decides, per key, whether an event is logged now.
#[derive(Debug)]
pub struct LogLimiter<K> {
    period: Duration,
    entries: HashMap<K, Entry>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    last_logged: Instant,
    suppressed: u64,
}

/// Keys kept at most; beyond this, keys quiet for a period are forgotten.
const MAX_KEYS: usize = 4096;

impl<K: Hash + Eq + Clone> LogLimiter<K> {
    pub fn new(period: Duration) -> Self {
        LogLimiter { period, entries: HashMap::new() }
    }

    /// `Some(n)`: log now, mentioning the `n` events suppressed since the last log of `key`.
    /// `None`: stay quiet (the event is counted).
    pub fn check(&mut self, key: &K, now: Instant) -> Option<u64> {
        if let Some(entry) = self.entries.get_mut(key) {
            if now.saturating_duration_since(entry.last_logged) < self.period {
                entry.suppressed += 1;
                return None;
            }
            let suppressed = entry.suppressed;
            *entry = Entry { last_logged: now, suppressed: 0 };
            return Some(suppressed);
        }
        if self.entries.len() >= MAX_KEYS {
            let period = self.period;
            self.entries.retain(|_, e| now.saturating_duration_since(e.last_logged) < period);
        }
        if self.entries.len() < MAX_KEYS {
            self.entries.insert(key.clone(), Entry { last_logged: now, suppressed: 0 });
        }
        Some(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_once_per_period_per_key_and_counts_the_rest() {
        let start = Instant::now();
        let mut limiter = LogLimiter::new(Duration::from_secs(10));
        assert_eq!(limiter.check(&"a", start), Some(0));
        assert_eq!(limiter.check(&"a", start + Duration::from_secs(1)), None);
        assert_eq!(limiter.check(&"a", start + Duration::from_secs(2)), None);
        assert_eq!(limiter.check(&"b", start + Duration::from_secs(2)), Some(0), "keys are independent");
        assert_eq!(limiter.check(&"a", start + Duration::from_secs(10)), Some(2));
        assert_eq!(limiter.check(&"a", start + Duration::from_secs(11)), None);
    }
}
