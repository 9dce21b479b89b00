//! One sample's batch, written over the last one and encoded into a buffer kept between samples.
//!
//! [`super::batch`] builds a new `pb::Batch` every time: a string per pod
//! identity, interface name and sensor, a few hundred allocations per
//! sample on a node with 30 pods. A streaming agent sends one sample per
//! batch, sample after sample, with the same pods, interfaces and sensors,
//! so [`BatchBuffer`] keeps one batch and overwrites it: lists keep their
//! elements and strings their buffers. What it holds is exactly what
//! [`super::batch`] returns for the same sample (a self-contained batch,
//! sequence number 0).

use bakery_proto::v1 as pb;
use foldhash::{HashSet, HashSetExt};
use prost::Message;

use crate::reuse::Refill;
use crate::sampler::Sample;

use super::{PodRefs, write_pod_identity, write_sample};

/// A batch of one sample, rewritten in place for each sample, and its encoding.
#[derive(Debug, Default)]
pub struct BatchBuffer {
    batch: pb::Batch,
    /// The pods already listed in `new_pods` while filling.
    listed: HashSet<u32>,
    encoded: Vec<u8>,
}

impl BatchBuffer {
    pub fn new() -> Self {
        Self { batch: pb::Batch::default(), listed: HashSet::new(), encoded: Vec::new() }
    }

    /// The batch holding `sample` alone, as [`super::batch`] makes it: every
    /// pod identity it references in `new_pods`, sequence number 0 (the spool
    /// assigns it). Written over the last one.
    pub fn fill(&mut self, sample: &Sample, refs: &mut PodRefs) -> &pb::Batch {
        let pb::Batch { seq, new_pods, samples } = &mut self.batch;
        *seq = 0;
        self.listed.clear();
        {
            let mut identities = Refill::new(new_pods);
            for pod in &sample.pods {
                let pod_ref = refs.pod_ref(&pod.identity.uid, sample.timestamp_ms);
                if self.listed.insert(pod_ref) {
                    write_pod_identity(identities.next_slot(), pod_ref, &pod.identity);
                }
            }
        }
        samples.truncate(1);
        if samples.is_empty() {
            samples.push(pb::Sample::default());
        }
        write_sample(sample, refs, &mut samples[0]);
        refs.maybe_forget_stale(sample.timestamp_ms);
        &self.batch
    }

    /// The batch as last filled.
    pub fn batch(&self) -> &pb::Batch {
        &self.batch
    }

    /// The batch as last filled, protobuf-encoded into a buffer kept
    /// between samples (the bytes the spool holds for it).
    pub fn encode(&mut self) -> &[u8] {
        self.encoded.clear();
        self.encoded.reserve(self.batch.encoded_len());
        // A `Vec` grows as needed: encoding into it cannot fail.
        let _ = self.batch.encode(&mut self.encoded);
        &self.encoded
    }
}
