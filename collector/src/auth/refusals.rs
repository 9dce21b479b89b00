//! Refusals: counted per cause ([`RefusalCounts`], exported as `bakery.collector.auth.refusals`)
//! and logged at most once per [`REFUSAL_LOG_PERIOD`] per peer address, with the number not
//! logged since, so a client that keeps trying cannot flood the log.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::ratelog::LogLimiter;

/// How often a refusal is logged per peer address.
pub const REFUSAL_LOG_PERIOD: Duration = Duration::from_secs(10);

/// Why a call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefusalCause {
    /// No bearer token and no client certificate.
    NoCredential,
    /// A bearer token that no token file lists (and, without `--agent-service-account`, nothing
    /// else could check).
    UnknownToken,
    /// The Kubernetes API did not accept a service-account token for the agents: not
    /// authenticated, another service account, another audience, or not bound to a pod.
    ServiceAccountRejected,
    /// The token could not be reviewed now: the API server did not answer, or the pod is not in
    /// the collector's pod watch yet (`UNAVAILABLE`; the agent retries).
    TokenReviewUnavailable,
    /// The credential does not grant the role the call needs.
    MissingRole,
    /// A stream asked to write a node its credential does not prove.
    WrongNode,
}

impl RefusalCause {
    pub const ALL: [RefusalCause; 6] = [
        RefusalCause::NoCredential,
        RefusalCause::UnknownToken,
        RefusalCause::ServiceAccountRejected,
        RefusalCause::TokenReviewUnavailable,
        RefusalCause::MissingRole,
        RefusalCause::WrongNode,
    ];

    /// The `cause` attribute of `bakery.collector.auth.refusals`.
    pub fn name(self) -> &'static str {
        match self {
            RefusalCause::NoCredential => "no_credential",
            RefusalCause::UnknownToken => "unknown_token",
            RefusalCause::ServiceAccountRejected => "service_account_rejected",
            RefusalCause::TokenReviewUnavailable => "token_review_unavailable",
            RefusalCause::MissingRole => "missing_role",
            RefusalCause::WrongNode => "wrong_node",
        }
    }

    fn index(self) -> usize {
        RefusalCause::ALL.iter().position(|c| *c == self).unwrap_or_default()
    }
}

/// Refusals since the start, per cause; the export reads it.
#[derive(Debug, Default)]
pub struct RefusalCounts {
    counts: [AtomicU64; RefusalCause::ALL.len()],
}

impl RefusalCounts {
    pub fn get(&self, cause: RefusalCause) -> u64 {
        self.counts[cause.index()].load(Ordering::Relaxed)
    }

    /// Every cause with its count (zeros included, so a rate starts at the first scrape).
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        RefusalCause::ALL.iter().map(|cause| (cause.name(), self.get(*cause))).collect()
    }

    fn add(&self, cause: RefusalCause) {
        self.counts[cause.index()].fetch_add(1, Ordering::Relaxed);
    }
}

/// Counts every refusal and logs some.
#[derive(Debug)]
pub struct Refusals {
    counts: Arc<RefusalCounts>,
    limiter: Mutex<LogLimiter<Option<IpAddr>>>,
}

impl Default for Refusals {
    fn default() -> Self {
        Refusals { counts: Arc::default(), limiter: Mutex::new(LogLimiter::new(REFUSAL_LOG_PERIOD)) }
    }
}

impl Refusals {
    pub fn counts(&self) -> &Arc<RefusalCounts> {
        &self.counts
    }

    /// Counts a refusal of `call` from `peer` and logs it unless this peer was logged recently.
    pub fn record(&self, cause: RefusalCause, peer: Option<SocketAddr>, call: &str, detail: &str) {
        self.counts.add(cause);
        let ip = peer.map(|p| p.ip());
        let suppressed = self.limiter.lock().ok().and_then(|mut limiter| limiter.check(&ip, Instant::now()));
        if let Some(suppressed) = suppressed {
            let peer = peer.map_or_else(|| "unknown".to_string(), |p| p.to_string());
            tracing::warn!(%peer, call, cause = cause.name(), reason = detail, refusals_not_logged = suppressed, "refused a call");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_is_counted_under_its_cause_even_when_not_logged() {
        let refusals = Refusals::default();
        let peer = Some("10.0.0.9:5000".parse().unwrap());
        for _ in 0..3 {
            refusals.record(RefusalCause::WrongNode, peer, "Ingest.Stream", "proves attacker, asked victim");
        }
        refusals.record(RefusalCause::MissingRole, None, "Query.StartWindow", "read token");
        let counts = refusals.counts();
        assert_eq!(counts.get(RefusalCause::WrongNode), 3);
        assert_eq!(counts.get(RefusalCause::MissingRole), 1);
        assert_eq!(counts.get(RefusalCause::UnknownToken), 0);
        let snapshot = counts.snapshot();
        assert_eq!(snapshot.len(), RefusalCause::ALL.len(), "zeros included");
        assert!(snapshot.contains(&("wrong_node", 3)));
    }
}
