//! Kubernetes service-account tokens (`--agent-service-account NAMESPACE/NAME`): a bearer token
//! that no token file lists is sent to the API server in a TokenReview with the audience
//! [`AUDIENCE`]; it is accepted when the review authenticates it, for that service account and
//! that audience, and it proves the node the review names ([`judge`]). Reviews are cached briefly
//! and bounded ([`ReviewCache`]), so a reconnecting fleet does not storm the API server; an API
//! that does not answer is `UNAVAILABLE`, never an accept.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::TokenReviewStatus;
use tokio::sync::Semaphore;

use super::certificate::is_node_name;
use super::token_file::constant_time_eq;
use crate::limits::TokenBucket;

/// The audience the agents' projected tokens are made for (the chart's `serviceAccountToken`
/// volume asks for it), so a token the kubelet made for the API server, or for another service,
/// is refused here.
pub const AUDIENCE: &str = "bakery";

/// The node a pod-bound token was issued on: Kubernetes 1.30 adds
/// `authentication.kubernetes.io/node-name` to a bound token's extra (feature
/// ServiceAccountTokenPodNodeInfo, on by default since 1.30).
pub const NODE_NAME_EXTRA: &str = "authentication.kubernetes.io/node-name";
/// The pod a bound token was issued for (all supported versions).
pub const POD_UID_EXTRA: &str = "authentication.kubernetes.io/pod-uid";
pub const POD_NAME_EXTRA: &str = "authentication.kubernetes.io/pod-name";

/// How long an accepted token's review is reused.
pub const POSITIVE_TTL: Duration = Duration::from_secs(60);
/// How long a refused token's review is reused.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(10);
/// Reviews remembered at most.
pub const CACHE_CAPACITY: usize = 2048;
/// A review that takes longer is `UNAVAILABLE`.
pub const REVIEW_TIMEOUT: Duration = Duration::from_secs(5);
/// Reviews of tokens not in the cache: this many per second, with a burst of
/// [`REVIEW_BURST`], so a flood of made-up tokens does not become a flood of API calls.
pub const REVIEWS_PER_SECOND: f64 = 20.0;
pub const REVIEW_BURST: f64 = 100.0;
/// Reviews in flight at once.
pub const CONCURRENT_REVIEWS: usize = 8;

/// `NAMESPACE/NAME` of the agents' ServiceAccount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccountRef {
    pub namespace: String,
    pub name: String,
}

impl ServiceAccountRef {
    /// The user name Kubernetes gives its tokens.
    pub fn username(&self) -> String {
        format!("system:serviceaccount:{}:{}", self.namespace, self.name)
    }
}

impl std::fmt::Display for ServiceAccountRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl std::str::FromStr for ServiceAccountRef {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let valid = |part: &str| !part.is_empty() && part.len() <= 253 && !part.contains([':', '/', ' ']);
        match text.trim().split_once('/') {
            Some((namespace, name)) if valid(namespace) && valid(name) => {
                Ok(ServiceAccountRef { namespace: namespace.to_string(), name: name.to_string() })
            }
            _ => Err(format!("{text:?} is not NAMESPACE/NAME of a ServiceAccount (e.g. bakery/bakery-agent)")),
        }
    }
}

/// A pod named in a token review's extra.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef<'a> {
    pub namespace: &'a str,
    pub name: Option<&'a str>,
    pub uid: &'a str,
}

/// The decision on one review.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The token is the agents' and proves this node.
    Node(String),
    /// Refused, and why (cached briefly).
    Rejected(String),
    /// Cannot be decided now (the pod is not in the pod watch yet): not cached.
    Undecided(String),
}

/// Decides on a TokenReview's status for the agents' `account`: authenticated, with `audience`
/// among its audiences, that service account's user, and a node from the extra (`node-name`,
/// else the pod `pod-uid` names, whose node `pod_node` finds in the collector's pod watch).
pub fn judge(
    status: &TokenReviewStatus,
    account: &ServiceAccountRef,
    audience: &str,
    pod_node: impl Fn(&PodRef<'_>) -> Option<String>,
) -> Verdict {
    if status.authenticated != Some(true) {
        let why = status.error.as_deref().filter(|e| !e.is_empty()).unwrap_or("not authenticated");
        return Verdict::Rejected(format!("the Kubernetes API did not authenticate the token: {why}"));
    }
    // A server that honours audiences answers the ones it checked; without them the token could
    // be one made for the API server itself.
    if !status.audiences.as_ref().is_some_and(|a| a.iter().any(|a| a == audience)) {
        return Verdict::Rejected(format!(
            "the token is not for the {audience:?} audience (the review answered {:?})",
            status.audiences.as_deref().unwrap_or_default()
        ));
    }
    let user = status.user.clone().unwrap_or_default();
    let username = user.username.unwrap_or_default();
    if username != account.username() {
        return Verdict::Rejected(format!(
            "the token belongs to {username:?}, not to the agents' service account {account}"
        ));
    }
    let extra = user.extra.unwrap_or_default();
    let first = |key: &str| extra.get(key).and_then(|values| values.first()).filter(|v| !v.is_empty()).cloned();
    if let Some(node) = first(NODE_NAME_EXTRA) {
        return if is_node_name(&node) {
            Verdict::Node(node)
        } else {
            Verdict::Rejected(format!("the review names node {node:?}, which is not a node name"))
        };
    }
    let Some(uid) = first(POD_UID_EXTRA) else {
        return Verdict::Rejected(format!(
            "the token is not bound to a pod (no {POD_UID_EXTRA} in the review): mount a projected \
             serviceAccountToken volume with audience {audience:?}, not a long-lived Secret token"
        ));
    };
    let name = first(POD_NAME_EXTRA);
    let pod = PodRef { namespace: &account.namespace, name: name.as_deref(), uid: &uid };
    match pod_node(&pod) {
        Some(node) if is_node_name(&node) => Verdict::Node(node),
        _ => Verdict::Undecided(format!(
            "the token's pod (uid {uid}) is not in the collector's pod watch yet, or not scheduled; retry shortly"
        )),
    }
}

/// What the TokenReview API gives the collector: the review, and the pod watch for tokens whose
/// review names a pod but no node (Kubernetes before 1.30).
#[tonic::async_trait]
pub trait TokenReviewer: Send + Sync + std::fmt::Debug {
    /// POSTs a TokenReview of `token` for `audience`; the status the API server answered, or
    /// why it did not answer.
    async fn review(&self, token: &str, audience: &str) -> Result<TokenReviewStatus, String>;

    /// The node (`spec.nodeName`) of the pod in the pod watch, when it is there with that uid.
    fn pod_node(&self, pod: &PodRef<'_>) -> Option<String>;
}

/// A refusal of a service-account token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// The API server does not accept it for the agents: `UNAUTHENTICATED`.
    Rejected(String),
    /// Undecidable now: `UNAVAILABLE`, and the agent retries.
    Unavailable(String),
}

#[derive(Debug, Clone)]
struct CacheEntry {
    token: String,
    outcome: Result<String, String>,
    until: Instant,
}

/// Recent reviews by token: accepted ones for [`POSITIVE_TTL`], refused ones for
/// [`NEGATIVE_TTL`], at most `capacity` (when full, the expired go first, then the one that
/// expires soonest).
#[derive(Debug)]
pub struct ReviewCache {
    entries: HashMap<u64, CacheEntry>,
    hasher: RandomState,
    capacity: usize,
}

impl ReviewCache {
    pub fn new(capacity: usize) -> ReviewCache {
        ReviewCache { entries: HashMap::new(), hasher: RandomState::new(), capacity }
    }

    /// The cached outcome for `token` (`Ok(node)` or `Err(why)`), unless expired.
    pub fn get(&self, token: &str, now: Instant) -> Option<Result<String, String>> {
        let entry = self.entries.get(&self.hasher.hash_one(token))?;
        // The key is a hash: the token itself must match too (compared in constant time).
        (now < entry.until && constant_time_eq(entry.token.as_bytes(), token.as_bytes())).then(|| entry.outcome.clone())
    }

    pub fn put(&mut self, token: &str, outcome: Result<String, String>, now: Instant) {
        let ttl = if outcome.is_ok() { POSITIVE_TTL } else { NEGATIVE_TTL };
        let key = self.hasher.hash_one(token);
        if !self.entries.contains_key(&key) && self.entries.len() >= self.capacity {
            self.entries.retain(|_, e| e.until > now);
            if self.entries.len() >= self.capacity
                && let Some(soonest) = self.entries.iter().min_by_key(|(_, e)| e.until).map(|(k, _)| *k)
            {
                self.entries.remove(&soonest);
            }
        }
        self.entries.insert(key, CacheEntry { token: token.to_string(), outcome, until: now + ttl });
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Service-account tokens of the agents, reviewed through the Kubernetes API.
#[derive(Debug)]
pub struct ServiceAccountAuth {
    account: ServiceAccountRef,
    reviewer: OnceLock<Arc<dyn TokenReviewer>>,
    cache: Mutex<ReviewCache>,
    budget: Mutex<TokenBucket>,
    in_flight: Semaphore,
    /// Reviews sent to the API server (for tests and logs).
    reviews: std::sync::atomic::AtomicU64,
}

impl ServiceAccountAuth {
    pub fn new(account: ServiceAccountRef) -> ServiceAccountAuth {
        ServiceAccountAuth {
            account,
            reviewer: OnceLock::new(),
            cache: Mutex::new(ReviewCache::new(CACHE_CAPACITY)),
            budget: Mutex::new(TokenBucket::new(REVIEWS_PER_SECOND, REVIEW_BURST, Instant::now())),
            in_flight: Semaphore::new(CONCURRENT_REVIEWS),
            reviews: Default::default(),
        }
    }

    pub fn account(&self) -> &ServiceAccountRef {
        &self.account
    }

    /// Gives it the API to review through (once the cluster connection is up).
    pub fn attach(&self, reviewer: Arc<dyn TokenReviewer>) {
        let _ = self.reviewer.set(reviewer);
    }

    /// True once a reviewer is attached.
    pub fn attached(&self) -> bool {
        self.reviewer.get().is_some()
    }

    /// Reviews sent to the API server so far.
    pub fn reviews_sent(&self) -> u64 {
        self.reviews.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The node `token` proves, from the cache or a TokenReview.
    pub async fn authenticate(&self, token: &str) -> Result<String, Refused> {
        if let Some(cached) = self.cached(token) {
            return cached.map_err(Refused::Rejected);
        }
        let Some(reviewer) = self.reviewer.get() else {
            return Err(Refused::Unavailable("the collector has no connection to the Kubernetes API yet".into()));
        };
        let allowed = self.budget.lock().map(|mut bucket| bucket.try_take(Instant::now()).is_ok()).unwrap_or(false);
        if !allowed {
            return Err(Refused::Unavailable(format!(
                "more than {REVIEWS_PER_SECOND} new tokens per second to review; retry with backoff"
            )));
        }
        let _permit = self
            .in_flight
            .acquire()
            .await
            .map_err(|_| Refused::Unavailable("the collector is shutting down".to_string()))?;
        // Another stream with this token may have finished its review while this one waited.
        if let Some(cached) = self.cached(token) {
            return cached.map_err(Refused::Rejected);
        }
        self.reviews.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let status = match tokio::time::timeout(REVIEW_TIMEOUT, reviewer.review(token, AUDIENCE)).await {
            Ok(Ok(status)) => status,
            Ok(Err(why)) => return Err(Refused::Unavailable(format!("the TokenReview failed: {why}"))),
            Err(_) => {
                return Err(Refused::Unavailable(format!(
                    "the TokenReview took longer than {}s",
                    REVIEW_TIMEOUT.as_secs()
                )));
            }
        };
        let outcome = match judge(&status, &self.account, AUDIENCE, |pod| reviewer.pod_node(pod)) {
            Verdict::Node(node) => Ok(node),
            Verdict::Rejected(why) => Err(why),
            Verdict::Undecided(why) => return Err(Refused::Unavailable(why)),
        };
        if let Ok(mut cache) = self.cache.lock() {
            cache.put(token, outcome.clone(), Instant::now());
        }
        outcome.map_err(Refused::Rejected)
    }

    fn cached(&self, token: &str) -> Option<Result<String, String>> {
        self.cache.lock().ok()?.get(token, Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicU64, Ordering};

    use k8s_openapi::api::authentication::v1::UserInfo;

    use super::*;

    fn account() -> ServiceAccountRef {
        "bakery/bakery-agent".parse().unwrap()
    }

    fn status(username: &str, audiences: &[&str], extra: &[(&str, &str)]) -> TokenReviewStatus {
        let extra: BTreeMap<String, Vec<String>> =
            extra.iter().map(|(k, v)| (k.to_string(), vec![v.to_string()])).collect();
        TokenReviewStatus {
            authenticated: Some(true),
            audiences: Some(audiences.iter().map(|a| a.to_string()).collect()),
            user: Some(UserInfo { username: Some(username.into()), extra: Some(extra), ..UserInfo::default() }),
            error: None,
        }
    }

    #[test]
    fn the_agents_account_is_namespace_slash_name() {
        assert_eq!(account().username(), "system:serviceaccount:bakery:bakery-agent");
        assert_eq!(account().to_string(), "bakery/bakery-agent");
        for bad in ["bakery", "/agent", "bakery/", "a/b/c", "a:b/c", ""] {
            assert!(bad.parse::<ServiceAccountRef>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_review_is_judged_on_authentication_audience_account_and_node() {
        let sa = "system:serviceaccount:bakery:bakery-agent";
        let node = (NODE_NAME_EXTRA, "pi-2");
        let uid = (POD_UID_EXTRA, "uid-on-pi-3");
        let name = (POD_NAME_EXTRA, "bakery-agent-x7k2p");
        let pod_watch =
            |pod: &PodRef<'_>| (pod.namespace == "bakery" && pod.uid == "uid-on-pi-3").then(|| "pi-3".to_string());
        let not_authenticated = TokenReviewStatus {
            authenticated: None,
            error: Some("[invalid bearer token, square/go-jose: error in cryptographic primitive]".into()),
            ..TokenReviewStatus::default()
        };
        // (status, verdict or the start of its reason)
        let table: Vec<(TokenReviewStatus, Result<&str, &str>)> = vec![
            // Kubernetes >= 1.30: the node is in the extra
            (status(sa, &["bakery"], &[node, uid, name]), Ok("pi-2")),
            // older: only the pod, looked up in the pod watch
            (status(sa, &["bakery"], &[uid, name]), Ok("pi-3")),
            (status(sa, &["bakery", "other"], &[node]), Ok("pi-2")),
            (not_authenticated, Err("the Kubernetes API did not authenticate the token: [invalid bearer token")),
            // a token for the API server, or for another service
            (
                status(sa, &["https://kubernetes.default.svc.cluster.local"], &[node]),
                Err("the token is not for the \"bakery\" audience"),
            ),
            (status(sa, &[], &[node]), Err("the token is not for the \"bakery\" audience")),
            // another service account's token, even in the same namespace
            (
                status("system:serviceaccount:bakery:default", &["bakery"], &[node]),
                Err("the token belongs to \"system:serviceaccount:bakery:default\""),
            ),
            (status("system:serviceaccount:other:bakery-agent", &["bakery"], &[node]), Err("the token belongs to")),
            // a long-lived Secret token names no pod
            (status(sa, &["bakery"], &[]), Err("the token is not bound to a pod")),
            (status(sa, &["bakery"], &[(NODE_NAME_EXTRA, "bad name")]), Err("the review names node \"bad name\"")),
        ];
        for (status, expected) in table {
            let verdict = judge(&status, &account(), AUDIENCE, pod_watch);
            match (&verdict, expected) {
                (Verdict::Node(node), Ok(want)) => assert_eq!(node, want, "{status:?}"),
                (Verdict::Rejected(why), Err(start)) => assert!(why.starts_with(start), "{status:?}: {why}"),
                (got, want) => panic!("{status:?}: got {got:?}, expected {want:?}"),
            }
        }
        // a pod the watch does not know yet: decided later, not refused
        let unknown = status(sa, &["bakery"], &[(POD_UID_EXTRA, "uid-new")]);
        assert!(matches!(judge(&unknown, &account(), AUDIENCE, pod_watch), Verdict::Undecided(_)));
    }

    #[test]
    fn the_cache_keeps_accepts_a_minute_refusals_ten_seconds_and_stays_bounded() {
        let t0 = Instant::now();
        let mut cache = ReviewCache::new(3);
        cache.put("good", Ok("pi-1".into()), t0);
        cache.put("bad", Err("nope".into()), t0);
        assert_eq!(cache.get("good", t0 + Duration::from_secs(59)), Some(Ok("pi-1".into())));
        assert_eq!(cache.get("good", t0 + POSITIVE_TTL), None, "an accept is reviewed again after a minute");
        assert_eq!(cache.get("bad", t0 + Duration::from_secs(9)), Some(Err("nope".into())));
        assert_eq!(cache.get("bad", t0 + NEGATIVE_TTL), None);
        assert_eq!(cache.get("other", t0), None);
        // full: the expired entries go first, then the one expiring soonest
        cache.put("c", Ok("pi-3".into()), t0 + Duration::from_secs(1));
        cache.put("d", Ok("pi-4".into()), t0 + Duration::from_secs(11));
        assert_eq!(cache.len(), 3, "the refusal expired at 10 s and made room");
        cache.put("e", Ok("pi-5".into()), t0 + Duration::from_secs(12));
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.get("good", t0 + Duration::from_secs(12)), None, "the soonest to expire was dropped");
        assert_eq!(cache.get("e", t0 + Duration::from_secs(12)), Some(Ok("pi-5".into())));
    }

    /// A scripted API: answers per token, counts reviews.
    #[derive(Debug, Default)]
    struct FakeApi {
        answers: HashMap<String, Result<TokenReviewStatus, String>>,
        calls: AtomicU64,
    }

    #[tonic::async_trait]
    impl TokenReviewer for FakeApi {
        async fn review(&self, token: &str, audience: &str) -> Result<TokenReviewStatus, String> {
            assert_eq!(audience, AUDIENCE);
            self.calls.fetch_add(1, Ordering::Relaxed);
            self.answers.get(token).cloned().unwrap_or_else(|| {
                Ok(TokenReviewStatus { error: Some("invalid bearer token".into()), ..TokenReviewStatus::default() })
            })
        }

        fn pod_node(&self, _pod: &PodRef<'_>) -> Option<String> {
            None
        }
    }

    #[tokio::test]
    async fn reviews_are_cached_and_an_api_error_is_unavailable_not_an_accept() {
        let sa = "system:serviceaccount:bakery:bakery-agent";
        let mut api = FakeApi::default();
        api.answers.insert("agent-pi-1".into(), Ok(status(sa, &["bakery"], &[(NODE_NAME_EXTRA, "pi-1")])));
        api.answers.insert("api-down".into(), Err("connection refused".into()));
        let api = Arc::new(api);
        let auth = ServiceAccountAuth::new(account());
        assert!(matches!(auth.authenticate("agent-pi-1").await, Err(Refused::Unavailable(_))), "nothing attached yet");
        auth.attach(api.clone());
        for _ in 0..5 {
            assert_eq!(auth.authenticate("agent-pi-1").await, Ok("pi-1".into()));
        }
        assert_eq!(api.calls.load(Ordering::Relaxed), 1, "a reconnecting agent is reviewed once");
        for _ in 0..3 {
            let refused = auth.authenticate("stolen-or-made-up").await.unwrap_err();
            assert!(matches!(&refused, Refused::Rejected(why) if why.contains("invalid bearer token")), "{refused:?}");
        }
        assert_eq!(api.calls.load(Ordering::Relaxed), 2, "a refusal is cached too");
        for _ in 0..2 {
            let refused = auth.authenticate("api-down").await.unwrap_err();
            assert!(matches!(&refused, Refused::Unavailable(why) if why.contains("connection refused")), "{refused:?}");
        }
        assert_eq!(api.calls.load(Ordering::Relaxed), 4, "an API error is not cached: the next try asks again");
        assert_eq!(auth.reviews_sent(), 4);
    }

    #[tokio::test]
    async fn a_flood_of_made_up_tokens_is_held_to_the_review_budget() {
        let api = Arc::new(FakeApi::default());
        let auth = ServiceAccountAuth::new(account());
        auth.attach(api.clone());
        let mut unavailable = 0;
        for i in 0..(REVIEW_BURST as usize + 50) {
            if let Err(Refused::Unavailable(_)) = auth.authenticate(&format!("made-up-{i}")).await {
                unavailable += 1;
            }
        }
        let calls = api.calls.load(Ordering::Relaxed);
        assert!(calls <= REVIEW_BURST as u64 + 5, "{calls} reviews: the burst bounds them");
        assert!(unavailable >= 45, "the rest wait: {unavailable}");
    }
}
