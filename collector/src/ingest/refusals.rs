//! What ingest refuses or cuts, counted per cause ([`IngestRefusalCounts`], exported as
//! `bakery.collector.ingest.refusals`) and logged at most once per [`REFUSAL_LOG_PERIOD`] per
//! cause and peer address, with the number not logged since, so a client that keeps sending bad
//! input cannot flood the log.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub use crate::auth::REFUSAL_LOG_PERIOD;
use crate::ratelog::LogLimiter;

/// Why ingest refused a stream or a message, or cut part of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IngestRefusal {
    /// A Hello whose node name is not a node name.
    InvalidHello,
    /// A new node name beyond `--max-nodes` (or beyond the names the collector remembers).
    NodeCap,
    /// A batch or gap whose sequence number is beyond what the agent could have produced.
    SeqBeyondBound,
    /// A sequence number that went backwards on its stream.
    SeqRegression,
    /// A sample with more pods than `--max-pods-per-node`, or pod identities a node cannot keep.
    PodCap,
    /// A batch with more samples than `--max-sample-entries`.
    SampleCap,
    /// A message the protocol does not allow (no Hello first, an undeclared pod, a bad range).
    InvalidMessage,
    /// A message over the 4 MiB limit.
    MessageTooLarge,
    /// Strings cut to their cap (counted per string; the message is kept).
    StringTruncated,
    /// Repeated entries of a sample beyond `--max-sample-entries`, dropped (counted per entry).
    EntriesDropped,
    /// A batch larger than its node's share of `--max-history-bytes`: stored, not kept in memory.
    BatchNotKept,
    /// A message over that share: stored and acknowledged, then its stream closed so that the
    /// stream's read buffer (as large as its largest message) is freed.
    LargeMessage,
    /// A sample whose own clock is outside the analysis' skew budget: the live analysis used it
    /// re-stamped with its node's measured skew (counted per sample).
    ClockSkew,
}

impl IngestRefusal {
    pub const ALL: [IngestRefusal; 13] = [
        IngestRefusal::InvalidHello,
        IngestRefusal::NodeCap,
        IngestRefusal::SeqBeyondBound,
        IngestRefusal::SeqRegression,
        IngestRefusal::PodCap,
        IngestRefusal::SampleCap,
        IngestRefusal::InvalidMessage,
        IngestRefusal::MessageTooLarge,
        IngestRefusal::StringTruncated,
        IngestRefusal::EntriesDropped,
        IngestRefusal::BatchNotKept,
        IngestRefusal::LargeMessage,
        IngestRefusal::ClockSkew,
    ];

    /// The `cause` attribute of `bakery.collector.ingest.refusals`.
    pub fn name(self) -> &'static str {
        match self {
            IngestRefusal::InvalidHello => "invalid_hello",
            IngestRefusal::NodeCap => "node_cap",
            IngestRefusal::SeqBeyondBound => "seq_beyond_bound",
            IngestRefusal::SeqRegression => "seq_regression",
            IngestRefusal::PodCap => "pod_cap",
            IngestRefusal::SampleCap => "sample_cap",
            IngestRefusal::InvalidMessage => "invalid_message",
            IngestRefusal::MessageTooLarge => "message_too_large",
            IngestRefusal::StringTruncated => "string_truncated",
            IngestRefusal::EntriesDropped => "entries_dropped",
            IngestRefusal::BatchNotKept => "batch_not_kept",
            IngestRefusal::LargeMessage => "large_message",
            IngestRefusal::ClockSkew => "clock_skew",
        }
    }

    fn index(self) -> usize {
        IngestRefusal::ALL.iter().position(|c| *c == self).unwrap_or_default()
    }
}

/// Refusals since the start, per cause; the export reads it.
#[derive(Debug, Default)]
pub struct IngestRefusalCounts {
    counts: [AtomicU64; IngestRefusal::ALL.len()],
}

impl IngestRefusalCounts {
    pub fn get(&self, cause: IngestRefusal) -> u64 {
        self.counts[cause.index()].load(Ordering::Relaxed)
    }

    /// Every cause with its count (zeros included, so a rate starts at the first scrape).
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        IngestRefusal::ALL.iter().map(|cause| (cause.name(), self.get(*cause))).collect()
    }

    fn add(&self, cause: IngestRefusal, n: u64) {
        self.counts[cause.index()].fetch_add(n, Ordering::Relaxed);
    }
}

/// Counts every refusal and logs some.
#[derive(Debug)]
pub struct IngestRefusals {
    counts: Arc<IngestRefusalCounts>,
    limiter: Mutex<LogLimiter<(IngestRefusal, Option<IpAddr>)>>,
}

impl Default for IngestRefusals {
    fn default() -> Self {
        IngestRefusals { counts: Arc::default(), limiter: Mutex::new(LogLimiter::new(REFUSAL_LOG_PERIOD)) }
    }
}

impl IngestRefusals {
    pub fn counts(&self) -> &Arc<IngestRefusalCounts> {
        &self.counts
    }

    /// Counts `n` refusals of `cause` from `peer` streaming as `node`, and logs them unless this
    /// cause was logged for this peer recently.
    pub fn record(&self, cause: IngestRefusal, n: u64, peer: Option<SocketAddr>, node: &str, detail: &str) {
        if n == 0 {
            return;
        }
        self.counts.add(cause, n);
        let ip = peer.map(|p| p.ip());
        let suppressed = self.limiter.lock().ok().and_then(|mut limiter| limiter.check(&(cause, ip), Instant::now()));
        if let Some(suppressed) = suppressed {
            let peer = peer.map_or_else(|| "unknown".to_string(), |p| p.to_string());
            tracing::warn!(
                %peer,
                node,
                cause = cause.name(),
                count = n,
                reason = detail,
                not_logged_since = suppressed,
                "ingest refused or cut input"
            );
        }
    }

    /// Counts `n` of `cause` without logging (the live analysis' clock skew, per sample).
    pub fn count(&self, cause: IngestRefusal, n: u64) {
        self.counts.add(cause, n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_is_counted_under_its_cause_even_when_not_logged() {
        let refusals = IngestRefusals::default();
        let peer = Some("10.0.0.9:5000".parse().unwrap());
        for _ in 0..3 {
            refusals.record(IngestRefusal::SeqBeyondBound, 1, peer, "victim", "seq 18446744073709551615");
        }
        refusals.record(IngestRefusal::StringTruncated, 7, peer, "victim", "7 strings");
        refusals.record(IngestRefusal::EntriesDropped, 0, peer, "victim", "nothing");
        refusals.count(IngestRefusal::ClockSkew, 2);
        let counts = refusals.counts();
        assert_eq!(counts.get(IngestRefusal::SeqBeyondBound), 3);
        assert_eq!(counts.get(IngestRefusal::StringTruncated), 7);
        assert_eq!(counts.get(IngestRefusal::ClockSkew), 2);
        assert_eq!(counts.get(IngestRefusal::EntriesDropped), 0);
        let snapshot = counts.snapshot();
        assert_eq!(snapshot.len(), IngestRefusal::ALL.len(), "zeros included");
        assert!(snapshot.contains(&("seq_beyond_bound", 3)));
        let mut names: Vec<&str> = snapshot.iter().map(|(name, _)| *name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), IngestRefusal::ALL.len(), "every cause has its own name");
    }
}
