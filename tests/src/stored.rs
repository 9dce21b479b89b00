//! What a stopped collector stored of a node, sample by sample: its sequence number, when the collector received it and when it was taken.

use std::path::Path;

use anyhow::Context;
use bakery_collector::store::{Store, StoredBatch};
use prost::Message;

/// One stored sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredSample {
    pub seq: u64,
    /// The collector's clock when it took the sample in (what Query showed from then on; its
    /// commit followed within the commit interval), Unix epoch ms.
    pub received_ms: i64,
    /// The agent's clock when it took the sample, Unix epoch ms.
    pub sample_ms: i64,
    /// Bytes of its row (the stored batch).
    pub row_bytes: usize,
}

/// Every stored sample of `node` in the store under `data_dir` (a stopped collector's), by
/// sequence number.
pub fn stored_samples(data_dir: &Path, node: &str) -> anyhow::Result<Vec<StoredSample>> {
    let mut store = Store::open(data_dir).with_context(|| format!("opening the store in {}", data_dir.display()))?;
    let loaded = store.load().context("reading the store's nodes")?;
    let node_id = loaded
        .iter()
        .find(|loaded| loaded.name == node)
        .map(|loaded| loaded.record.node_id)
        .with_context(|| format!("{node} is not in the store"))?;
    let mut samples = Vec::new();
    for (seq, received_ms, bytes) in store.batches(node_id, 1..=u64::MAX).context("reading the samples")? {
        let row_bytes = bytes.len();
        let batch = StoredBatch::decode(bytes).with_context(|| format!("{node}: the row of seq {seq}"))?;
        samples.extend(batch.samples.iter().map(|sample| StoredSample {
            seq,
            received_ms,
            sample_ms: sample.timestamp_ms,
            row_bytes,
        }));
    }
    Ok(samples)
}
