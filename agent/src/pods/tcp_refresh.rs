//! Which namespaces have their TCP socket tables read this sample, and how old each tally is.
//!
//! A tally is a namespace's sockets by state, as its tables last listed them.
//!
//! Reading `net/tcp` walks the kernel's node-wide established hash (1.7 ms
//! per table with 262144 buckets), so a namespace's tables are read only
//! when its counter signature ([`TcpSignature`]) moved since they were last
//! read, and at most a budget of namespaces per sample: those never read
//! first (a new pod gets its first tally as soon as the budget allows),
//! then the stalest, and a namespace already read not again before a
//! minimum age (`--tcp-table-min-age`) nor beyond a node-wide rate of re-reads
//! (`--tcp-table-rereads-per-second`): with many busy pods the rate, not the age, paces them,
//! and each pod's tally is then at most (busy pods / rate) seconds old. Pure bookkeeping: the
//! caller does the reads and passes the time.

use std::hash::Hash;
use std::time::{Duration, Instant};

use foldhash::HashMap;

use crate::pods::tcp::TcpStates;
use crate::pods::tcp_counters::TcpSignature;

#[derive(Debug)]
struct Namespace {
    /// The last tally, with the signature read just before its tables.
    read: Option<(TcpStates, TcpSignature)>,
    /// The last time the tally was known to describe the namespace: when it
    /// was read, or the last sample whose signature still matched.
    current_at: Option<Instant>,
    /// The signature has moved since the tally was read (sticky until the
    /// next read: moving back does not prove nothing happened).
    stale: bool,
    /// The last time its tables were read, or tried and failed: a namespace
    /// whose tables fail to read goes behind the others instead of taking
    /// the budget every sample.
    tried_at: Option<Instant>,
    /// The sample this namespace was first seen in: the oldest unread ones
    /// go first.
    first_seen: u64,
    seen_in_sample: u64,
}

/// Per namespace (keyed by `K`), the tally and when it was last current.
#[derive(Debug)]
pub struct TableRefresh<K> {
    namespaces: HashMap<K, Namespace>,
    sample: u64,
    rereads: RereadRate,
}

impl<K> Default for TableRefresh<K> {
    fn default() -> Self {
        Self { namespaces: HashMap::default(), sample: 0, rereads: RereadRate::new(u32::MAX) }
    }
}

/// Re-reads of tables already read, at most `per_second` on average and one
/// second's worth at once: a token bucket, refilled by the time passed.
#[derive(Debug, Clone, Copy)]
struct RereadRate {
    per_second: u32,
    /// Re-reads still allowed, and when that was counted.
    left: Option<(f64, Instant)>,
}

impl RereadRate {
    fn new(per_second: u32) -> Self {
        Self { per_second, left: None }
    }

    fn burst(&self) -> f64 {
        f64::from(self.per_second.max(1))
    }

    /// Re-reads allowed at `now`.
    fn available(&self, now: Instant) -> f64 {
        match self.left {
            None => self.burst(),
            Some((left, at)) => {
                let refill = now.saturating_duration_since(at).as_secs_f64() * f64::from(self.per_second);
                (left + refill).min(self.burst())
            }
        }
    }

    fn spend(&mut self, now: Instant) {
        if self.per_second != u32::MAX {
            self.left = Some((self.available(now) - 1.0, now));
        }
    }
}

impl<K: Hash + Eq + Ord + Copy> TableRefresh<K> {
    /// A refresh whose re-reads (of namespaces read before) are at most
    /// `per_second` on average; `u32::MAX`: no limit. First reads are not
    /// counted: a new pod's first tally waits only for the per-sample budget.
    pub fn with_rereads_per_second(per_second: u32) -> Self {
        Self { rereads: RereadRate::new(per_second), ..Self::default() }
    }

    /// Starts a sample: namespaces not observed from now until
    /// [`Self::end_sample`] are forgotten then.
    pub fn begin_sample(&mut self) {
        self.sample += 1;
    }

    /// Forgets the namespaces this sample did not observe (their pods are gone).
    pub fn end_sample(&mut self) {
        let sample = self.sample;
        self.namespaces.retain(|_, namespace| namespace.seen_in_sample == sample);
    }

    /// Notes the namespace's counters of this sample, read at `now`.
    pub fn observe(&mut self, key: K, signature: TcpSignature, now: Instant) {
        let sample = self.sample;
        let namespace = self.namespaces.entry(key).or_insert(Namespace {
            read: None,
            current_at: None,
            stale: false,
            tried_at: None,
            first_seen: sample,
            seen_in_sample: sample,
        });
        namespace.seen_in_sample = sample;
        if let Some((_, read_with)) = &namespace.read
            && !namespace.stale
        {
            if *read_with == signature {
                namespace.current_at = Some(now);
            } else {
                namespace.stale = true;
            }
        }
    }

    /// The namespaces observed this sample whose tables are due at `now`,
    /// at most `budget`: never tried ones first (longest waiting first), then
    /// the others by when they were last current or tried, oldest first. A
    /// namespace that has a tally is read again only when its counters moved,
    /// its last read was at least `min_age` ago, and the re-read rate allows
    /// it: a busy pod's counters move every sample, and re-reading its tables
    /// is most of what an agent costs under load.
    pub fn due(&self, budget: u32, now: Instant, min_age: Duration) -> Vec<K> {
        let old_enough =
            |namespace: &Namespace| namespace.tried_at.is_none_or(|at| now.saturating_duration_since(at) >= min_age);
        let mut due: Vec<(&K, &Namespace)> = self
            .namespaces
            .iter()
            .filter(|(_, namespace)| namespace.seen_in_sample == self.sample)
            .filter(|(_, namespace)| namespace.read.is_none() || (namespace.stale && old_enough(namespace)))
            .collect();
        // `None` (never current nor tried) sorts before any time; the key
        // breaks ties so that the order does not depend on the hash map's.
        due.sort_unstable_by_key(|(key, namespace)| {
            (namespace.current_at.max(namespace.tried_at), namespace.first_seen, **key)
        });
        let mut rereads_left = self.rereads.available(now).floor();
        due.into_iter()
            .filter(|(_, namespace)| {
                if namespace.read.is_none() {
                    return true;
                }
                rereads_left -= 1.0;
                rereads_left >= 0.0
            })
            .take(usize::try_from(budget).unwrap_or(usize::MAX))
            .map(|(key, _)| *key)
            .collect()
    }

    /// Notes that the namespace's tables are being read at `now` (call it
    /// also when the read then fails).
    pub fn tried(&mut self, key: K, now: Instant) {
        if let Some(namespace) = self.namespaces.get_mut(&key) {
            namespace.tried_at = Some(now);
            if namespace.read.is_some() {
                self.rereads.spend(now);
            }
        }
    }

    /// Keeps the tally just read at `now`, `signature` being the one read
    /// before its tables (so that a change racing the read shows as a
    /// change next sample instead of being missed).
    pub fn record(&mut self, key: K, signature: TcpSignature, states: TcpStates, now: Instant) {
        if let Some(namespace) = self.namespaces.get_mut(&key) {
            namespace.read = Some((states, signature));
            namespace.current_at = Some(now);
            namespace.stale = false;
        }
    }

    /// The namespace's tally and how long ago (ms, before `now`) it was last
    /// known current; `None` before its tables were first read.
    pub fn tally(&self, key: K, now: Instant) -> Option<(TcpStates, u64)> {
        let namespace = self.namespaces.get(&key)?;
        let (states, _) = namespace.read?;
        let current_at = namespace.current_at?;
        let age_ms = u64::try_from(now.saturating_duration_since(current_at).as_millis()).unwrap_or(u64::MAX);
        Some((states, age_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pods::tcp_counters::TcpCounters;

    fn signature(curr_estab: u64, passive_opens: u64) -> TcpSignature {
        TcpCounters { curr_estab, passive_opens, ..TcpCounters::default() }.signature()
    }

    fn states(established_inbound: u32) -> TcpStates {
        TcpStates { established_inbound, listen: 1, ..TcpStates::default() }
    }

    /// A refresh driven one sample at a time, a second apart.
    struct Run {
        refresh: TableRefresh<u32>,
        start: Instant,
        second: u64,
        min_age: Duration,
    }

    impl Run {
        fn new() -> Self {
            Self { refresh: TableRefresh::default(), start: Instant::now(), second: 0, min_age: Duration::ZERO }
        }

        fn now(&self) -> Instant {
            self.start + Duration::from_secs(self.second)
        }

        /// One sample: observes `namespaces` (key, signature, what its tables
        /// would show), reads the due ones within `budget`, returns what was
        /// read and each namespace's (tally, age).
        fn sample(
            &mut self,
            budget: u32,
            namespaces: &[(u32, TcpSignature, u32)],
        ) -> (Vec<u32>, Vec<Option<(TcpStates, u64)>>) {
            self.second += 1;
            let now = self.now();
            self.refresh.begin_sample();
            for (key, signature, _) in namespaces {
                self.refresh.observe(*key, *signature, now);
            }
            let due = self.refresh.due(budget, now, self.min_age);
            for key in &due {
                self.refresh.tried(*key, now);
                let (_, signature, inbound) = namespaces.iter().find(|(k, ..)| k == key).unwrap();
                self.refresh.record(*key, *signature, states(*inbound), now);
            }
            let tallies = namespaces.iter().map(|(key, ..)| self.refresh.tally(*key, now)).collect();
            self.refresh.end_sample();
            (due, tallies)
        }
    }

    #[test]
    fn quiet_namespaces_are_read_once_and_stay_current() {
        let mut run = Run::new();
        let pods = [(1, signature(7, 7), 7), (2, signature(0, 0), 0)];
        let (read, tallies) = run.sample(4, &pods);
        assert_eq!(read, [1, 2]);
        assert_eq!(tallies, [Some((states(7), 0)), Some((states(0), 0))]);
        for _ in 0..5 {
            let (read, tallies) = run.sample(4, &pods);
            assert!(read.is_empty(), "nothing moved, nothing to read: {read:?}");
            assert_eq!(tallies, [Some((states(7), 0)), Some((states(0), 0))], "unchanged counters: still current");
        }
    }

    #[test]
    fn a_moved_signature_is_read_again_and_its_age_shows_until_then() {
        let mut run = Run::new();
        run.sample(1, &[(1, signature(7, 7), 7)]);
        // One connection closed, one opened: CurrEstab is back at 7, but
        // PassiveOpens moved.
        let (read, tallies) = run.sample(0, &[(1, signature(7, 8), 9)]);
        assert!(read.is_empty());
        assert_eq!(tallies, [Some((states(7), 1000))], "the old tally, known current a second ago");
        // The counters moving back does not make the old tally current again.
        let (_, tallies) = run.sample(0, &[(1, signature(7, 7), 9)]);
        assert_eq!(tallies, [Some((states(7), 2000))]);
        let (read, tallies) = run.sample(1, &[(1, signature(7, 7), 9)]);
        assert_eq!(read, [1]);
        assert_eq!(tallies, [Some((states(9), 0))]);
    }

    #[test]
    fn a_busy_namespace_is_read_again_only_after_the_minimum_age_and_a_new_one_at_once() {
        let mut run = Run { min_age: Duration::from_secs(5), ..Run::new() };
        let busy = |second: u64| (1, signature(7, second), 7 + second as u32);
        let (read, _) = run.sample(4, &[busy(0)]);
        assert_eq!(read, [1]);
        for _ in 0..4 {
            let second = run.second + 1;
            let (read, tallies) = run.sample(4, &[busy(second), (2, signature(2, 2), 2)]);
            let expected_read: &[u32] = if second == 2 { &[2] } else { &[] };
            assert_eq!(read, expected_read, "second {second}: only the new namespace is read");
            let age = tallies[0].expect("the first tally").1;
            assert_eq!(age, (second - 1) * 1000, "second {second}: the tally says how old it is");
        }
        let (read, tallies) = run.sample(4, &[busy(6), (2, signature(2, 2), 2)]);
        assert_eq!(read, [1], "five seconds after its last read");
        assert_eq!(tallies[0], Some((states(13), 0)));
    }

    #[test]
    fn the_budget_goes_to_new_namespaces_first_then_the_stalest() {
        let mut run = Run::new();
        let (read, _) = run.sample(2, &[(1, signature(1, 1), 1), (2, signature(2, 2), 2)]);
        assert_eq!(read, [1, 2]);
        // 1 and 2 both move; 2 goes on moving. A second later, 3 and 4 appear.
        run.sample(0, &[(1, signature(1, 2), 1), (2, signature(2, 3), 2)]);
        let namespaces =
            [(1, signature(1, 2), 1), (2, signature(2, 4), 2), (3, signature(3, 3), 3), (4, signature(4, 4), 4)];
        let (read, tallies) = run.sample(1, &namespaces);
        assert_eq!(read, [3], "a new pod waits no longer than the budget needs");
        assert_eq!(tallies[3], None, "not read yet: no tally rather than a made-up one");
        let (read, _) = run.sample(2, &namespaces);
        assert_eq!(read, [4, 1], "then the other new one, then the stalest (both went stale at the same time: by key)");
        let (read, _) = run.sample(2, &namespaces);
        assert_eq!(read, [2]);
    }

    #[test]
    fn a_namespace_whose_tables_fail_does_not_take_the_budget_every_sample() {
        let mut run = Run::new();
        let broken = |run: &mut Run| {
            // Namespace 1's tables fail to read: tried, never recorded.
            run.second += 1;
            let now = run.now();
            run.refresh.begin_sample();
            for key in [1, 2, 3] {
                run.refresh.observe(key, signature(key.into(), 1), now);
            }
            let due = run.refresh.due(1, now, Duration::ZERO);
            for key in &due {
                run.refresh.tried(*key, now);
                if *key != 1 {
                    run.refresh.record(*key, signature((*key).into(), 1), states(*key), now);
                }
            }
            run.refresh.end_sample();
            due
        };
        assert_eq!(broken(&mut run), [1]);
        assert_eq!(broken(&mut run), [2], "the others get their turn");
        assert_eq!(broken(&mut run), [3]);
        assert_eq!(broken(&mut run), [1], "and the broken one is tried again");
    }

    #[test]
    fn a_namespace_gone_for_a_sample_starts_over() {
        let mut run = Run::new();
        run.sample(1, &[(1, signature(1, 1), 1)]);
        run.sample(1, &[]);
        let (read, tallies) = run.sample(0, &[(1, signature(1, 1), 1)]);
        assert!(read.is_empty());
        assert_eq!(tallies, [None], "a namespace inode reused by a new pod is not given the old pod's tally");
    }

    /// 30 busy pods sampled every 250 ms for a minute, 2 re-reads a second: the rate holds, and
    /// it is shared fairly, so no tally gets older than 30 / 2 = 15 s (plus a sample).
    #[test]
    fn the_reread_rate_holds_node_wide_and_every_busy_tally_stays_within_pods_over_rate() {
        let mut refresh = TableRefresh::with_rereads_per_second(2);
        let start = Instant::now();
        let (mut rereads, mut oldest_ms) = (0, 0);
        for sample in 0..240u32 {
            let now = start + Duration::from_millis(250) * sample;
            refresh.begin_sample();
            for key in 0..30u32 {
                refresh.observe(key, signature(7, u64::from(sample)), now);
            }
            for key in refresh.due(2, now, Duration::from_secs(5)) {
                rereads += u32::from(refresh.namespaces[&key].read.is_some());
                refresh.tried(key, now);
                refresh.record(key, signature(7, u64::from(sample)), states(key), now);
            }
            if sample >= 15 {
                for key in 0..30 {
                    oldest_ms = oldest_ms.max(refresh.tally(key, now).expect("read once").1);
                }
            }
            refresh.end_sample();
        }
        // 60 s at 2 a second, and one second's worth at the start.
        assert!(rereads <= 2 * 60 + 2, "{rereads} re-reads in 60 s");
        assert!(rereads >= 2 * 60 - 30 - 2, "the rate is used: {rereads}");
        assert!(oldest_ms <= 15_250, "a busy pod's tally reached {oldest_ms} ms");
    }

    #[test]
    fn an_unlimited_budget_reads_every_due_namespace() {
        let mut run = Run::new();
        let namespaces: Vec<_> = (0..100).map(|key| (key, signature(1, u64::from(key)), key)).collect();
        let (read, _) = run.sample(u32::MAX, &namespaces);
        assert_eq!(read.len(), 100);
    }
}
