//! Pods on the wire: one stable `pod_ref` per pod, and which identities a stream still needs.
//!
//! A pod's identity (UID, QoS class, cgroup path, hostNetwork) is declared
//! once per stream in a `PodIdentity` and referenced by its small number
//! afterwards (the design rules at the top of
//! `proto/proto/bakery/v1/bakery.proto`). [`PodRefs`] hands out the numbers;
//! [`DeclaredPods`] remembers what the current stream was told.

use bakery_proto::v1 as pb;
use foldhash::HashMap;
use prost::Message;

/// A pod not seen for this long is forgotten by [`PodRefs`], so a node with
/// many short-lived pods (CronJobs) does not grow the table forever. Pod UIDs
/// are never reused by Kubernetes, and numbers are never handed out twice, so
/// forgetting cannot make two pods share a number.
pub const FORGET_POD_AFTER_MS: i64 = 60 * 60 * 1000;

/// Numbers pods: one stable `pod_ref` per pod UID for as long as the agent
/// runs and keeps seeing the pod.
#[derive(Debug, Default)]
pub struct PodRefs {
    by_uid: HashMap<String, KnownPod>,
    next_ref: u32,
    batches_since_prune: u32,
}

#[derive(Debug)]
struct KnownPod {
    pod_ref: u32,
    last_seen_ms: i64,
}

impl PodRefs {
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of the pod with this UID, assigning the next free one to a
    /// pod seen for the first time.
    pub fn pod_ref(&mut self, uid: &str, seen_at_ms: i64) -> u32 {
        if let Some(known) = self.by_uid.get_mut(uid) {
            known.last_seen_ms = known.last_seen_ms.max(seen_at_ms);
            return known.pod_ref;
        }
        let pod_ref = self.next_ref;
        self.next_ref = self.next_ref.wrapping_add(1);
        self.by_uid.insert(uid.to_string(), KnownPod { pod_ref, last_seen_ms: seen_at_ms });
        pod_ref
    }

    /// Adopts a numbering found in the disk spool after a restart, so that
    /// replayed batches and new ones agree on every pod's number.
    pub fn adopt(&mut self, identity: &pb::PodIdentity, seen_at_ms: i64) {
        if self.by_uid.contains_key(&identity.uid) {
            return;
        }
        self.next_ref = self.next_ref.max(identity.pod_ref.saturating_add(1));
        self.by_uid.insert(identity.uid.clone(), KnownPod { pod_ref: identity.pod_ref, last_seen_ms: seen_at_ms });
    }

    /// How many pods are currently numbered.
    pub fn len(&self) -> usize {
        self.by_uid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_uid.is_empty()
    }

    /// Forgets pods unseen for [`FORGET_POD_AFTER_MS`] before `now_ms`.
    pub fn forget_stale(&mut self, now_ms: i64) {
        self.by_uid.retain(|_, known| now_ms.saturating_sub(known.last_seen_ms) < FORGET_POD_AFTER_MS);
    }

    /// Checks for stale pods every few hundred batches: cheap enough to call
    /// once per batch.
    pub(super) fn maybe_forget_stale(&mut self, now_ms: i64) {
        self.batches_since_prune += 1;
        if self.batches_since_prune >= 256 {
            self.batches_since_prune = 0;
            self.forget_stale(now_ms);
        }
    }
}

/// The identities one stream has been told about, so each is declared once
/// per stream (`Batch.new_pods` in `proto/proto/bakery/v1/bakery.proto`: the
/// pods first referenced on this stream by this batch). A new stream starts
/// with a new, empty set. Identities are kept encoded: a live batch is sent as
/// its spooled bytes (`encoded.rs`), and an identity's encoding is what it is
/// compared by.
#[derive(Debug, Default)]
pub struct DeclaredPods {
    by_ref: HashMap<u32, Vec<u8>>,
    /// An identity encoded, to compare a decoded one.
    scratch: Vec<u8>,
}

/// Past this many declared pods the set is cleared: redeclaring is allowed
/// and costs only bytes, while the set must not grow for months on a node
/// with pod churn.
const MAX_DECLARED_PODS: usize = 4096;

impl DeclaredPods {
    pub fn new() -> Self {
        Self::default()
    }

    /// Removes from `batch.new_pods` the identities this stream already
    /// knows, and remembers the others as declared. An identity that differs
    /// from the one declared under the same number is kept (and replaces it).
    pub fn strip_declared(&mut self, batch: &mut pb::Batch) {
        batch.new_pods.retain(|identity| {
            self.scratch.clear();
            // A `Vec` grows as needed: encoding into it cannot fail.
            let _ = identity.encode(&mut self.scratch);
            let scratch = std::mem::take(&mut self.scratch);
            let known = self.knows_encoded(identity.pod_ref, &scratch);
            if !known {
                self.record_encoded(identity.pod_ref, &scratch);
            }
            self.scratch = scratch;
            !known
        });
    }

    /// Whether the identity encoded as `identity`, numbered `pod_ref`, was told to this stream.
    pub fn knows_encoded(&self, pod_ref: u32, identity: &[u8]) -> bool {
        self.by_ref.get(&pod_ref).is_some_and(|known| known.as_slice() == identity)
    }

    /// Records the encoded identity as told (replacing another under the same number); no
    /// allocation when it was told already.
    pub fn record_encoded(&mut self, pod_ref: u32, identity: &[u8]) {
        if self.knows_encoded(pod_ref, identity) {
            return;
        }
        if self.by_ref.len() >= MAX_DECLARED_PODS {
            self.by_ref.clear();
        }
        self.by_ref.insert(pod_ref, identity.to_vec());
    }

    pub fn len(&self) -> usize {
        self.by_ref.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_ref.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_different_identity_under_a_declared_number_is_declared_again() {
        let mut declared = DeclaredPods::new();
        let identity = |uid: &str| pb::PodIdentity { pod_ref: 1, uid: uid.into(), ..pb::PodIdentity::default() };
        let mut first = pb::Batch { new_pods: vec![identity("a")], ..pb::Batch::default() };
        declared.strip_declared(&mut first);
        let mut second = pb::Batch { new_pods: vec![identity("b")], ..pb::Batch::default() };
        declared.strip_declared(&mut second);
        assert_eq!(second.new_pods, [identity("b")]);
    }

    #[test]
    fn adopted_numbers_are_kept_and_new_pods_get_higher_ones() {
        let mut refs = PodRefs::new();
        refs.adopt(&pb::PodIdentity { pod_ref: 7, uid: "old".into(), ..pb::PodIdentity::default() }, 0);
        assert_eq!(refs.pod_ref("old", 1), 7);
        assert_eq!(refs.pod_ref("new", 1), 8);
    }

    #[test]
    fn pods_unseen_for_an_hour_are_forgotten_and_never_share_a_number() {
        let mut refs = PodRefs::new();
        let gone = refs.pod_ref("gone", 0);
        let kept = refs.pod_ref("kept", 0);
        refs.pod_ref("kept", FORGET_POD_AFTER_MS);
        refs.forget_stale(FORGET_POD_AFTER_MS + 1);
        assert_eq!(refs.len(), 1);
        assert_eq!(refs.pod_ref("kept", FORGET_POD_AFTER_MS + 2), kept);
        let back = refs.pod_ref("gone", FORGET_POD_AFTER_MS + 2);
        assert!(back != gone && back != kept, "a forgotten pod gets a fresh number");
    }
}
