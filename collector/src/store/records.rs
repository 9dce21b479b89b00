//! The store's record encodings: small prost messages, so that fields can be added later
//! without a migration (an old reader skips unknown tags, a new reader defaults missing ones).

/// A node's durable record, keyed by node name in the `nodes` table.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NodeRecord {
    /// The collector's number for this node; the key prefix of its samples, gaps and pods.
    #[prost(uint32, tag = "1")]
    pub node_id: u32,
    /// Every sequence number up to this one is stored or recorded as a gap.
    #[prost(uint64, tag = "2")]
    pub committed_seq: u64,
    /// Retention removed everything below this sequence number (1 = nothing removed yet).
    #[prost(uint64, tag = "3")]
    pub retained_from_seq: u64,
    /// Stored batches (sequence numbers with data).
    #[prost(uint64, tag = "4")]
    pub batches: u64,
    /// Stored samples, summed over the stored batches.
    #[prost(uint64, tag = "5")]
    pub samples: u64,
    /// Collector time of the last message, Unix epoch ms.
    #[prost(int64, tag = "6")]
    pub last_seen_ms: i64,
    /// Timestamp of the newest sample, as the agent stamped it.
    #[prost(int64, tag = "7")]
    pub last_sample_ms: i64,
    /// Receive time minus sample time, ms; absent until a sample arrived.
    #[prost(int64, optional, tag = "8")]
    pub clock_skew_ms: Option<i64>,
    #[prost(uint64, tag = "9")]
    pub duplicates_dropped: u64,
    #[prost(uint64, tag = "10")]
    pub invalid_seqs: u64,
    #[prost(uint32, tag = "11")]
    pub interval_ms: u32,
    #[prost(string, tag = "12")]
    pub boot_id: String,
    #[prost(string, tag = "13")]
    pub agent_version: String,
    /// Bytes of this node's stored sample rows (keys and values), for `--retention-size`.
    /// Absent in records written before it existed: the store counts them once when it opens.
    #[prost(uint64, optional, tag = "14")]
    pub stored_bytes: Option<u64>,
}

/// A pod's identity, keyed by (node id, collector pod id) in the `pods` table.
#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct PodRecord {
    #[prost(string, tag = "1")]
    pub uid: String,
    #[prost(string, tag = "2")]
    pub qos_class: String,
    #[prost(string, tag = "3")]
    pub cgroup_path: String,
    #[prost(bool, tag = "4")]
    pub host_network: bool,
}

/// The stored form of one batch: its samples with every `PodSample.pod_ref` rewritten to the
/// collector's stable pod id, so the bytes mean the same whatever stream delivered them.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StoredBatch {
    #[prost(message, repeated, tag = "1")]
    pub samples: Vec<bakery_proto::v1::Sample>,
}
