//! Reads the collector's in-memory node state into [`NodeSnapshot`]s: the newest two samples
//! and the pod identities, copied under the node's lock and decoded outside it, so an export or
//! a scrape holds the lock ingest uses only for a few clones.

use prost::Message;

use super::model::{DEFAULT_CLOCK_TICKS, NodeSnapshot};
use super::self_metrics::{AgentReporting, reporting_nodes};
use crate::liveness::is_stale;
use crate::nodes::Registry;
use crate::store::StoredBatch;

/// Every node the registry knows, sorted by name. A stale node (silent for 3 intervals) keeps
/// its resource but no samples: its last values are not repeated as if they were current.
pub fn snapshot_nodes(registry: &Registry, now_ms: i64) -> Vec<NodeSnapshot> {
    registry
        .all()
        .iter()
        .map(|node| {
            let (newest, older, pods) = {
                let live = node.live();
                if is_stale(now_ms, live.last_seen_ms, live.interval_ms) {
                    (None, None, Default::default())
                } else {
                    let mut recent = live.history.iter().rev();
                    let newest = recent.next().map(|entry| entry.bytes.clone());
                    let older = recent.next().map(|entry| entry.bytes.clone());
                    (newest, older, live.pods.clone())
                }
            };
            let mut samples: Vec<_> = [older, newest]
                .into_iter()
                .flatten()
                .filter_map(|bytes| StoredBatch::decode(bytes).ok())
                .flat_map(|batch| batch.samples)
                .collect();
            let latest = samples.pop();
            let previous = samples.pop();
            NodeSnapshot {
                name: node.name.clone(),
                latest,
                previous,
                pods,
                // The registry does not keep Hello.clock_ticks_per_second; USER_HZ is 100
                // wherever bakery runs (see DEFAULT_CLOCK_TICKS).
                clock_ticks_per_second: DEFAULT_CLOCK_TICKS,
            }
        })
        .collect()
}

/// Whether each node that should have an agent reports at `now_ms` (not stale: a sample within
/// 3 of its intervals): the nodes Kubernetes lists, or without them every node in memory
/// ([`reporting_nodes`]).
pub fn agents_reporting(registry: &Registry, now_ms: i64) -> Vec<AgentReporting> {
    let in_memory: Vec<(String, bool)> = registry
        .all()
        .iter()
        .map(|node| {
            let live = node.live();
            (node.name.clone(), live.last_seen_ms > 0 && !is_stale(now_ms, live.last_seen_ms, live.interval_ms))
        })
        .collect();
    reporting_nodes(&registry.cluster_nodes(), &in_memory)
}

#[cfg(test)]
mod tests {
    use bakery_proto::v1::Sample;

    use super::*;
    use crate::nodes::HistoryEntry;

    fn entry(seq: u64, received_ms: i64, timestamps: &[i64]) -> HistoryEntry {
        let samples = timestamps.iter().map(|&timestamp_ms| Sample { timestamp_ms, ..Default::default() }).collect();
        HistoryEntry { seq, received_ms, bytes: StoredBatch { samples }.encode_to_vec().into() }
    }

    #[test]
    fn the_newest_two_samples_across_batches_and_nothing_from_a_stale_node() {
        let registry = Registry::default();
        let node = registry.get_or_create("n1");
        {
            let mut live = node.live();
            live.last_seen_ms = 10_000;
            live.interval_ms = 1000;
            live.push_history(entry(1, 9_000, &[1, 2]), 9_000);
            live.push_history(entry(2, 10_000, &[3]), 10_000);
        }
        let nodes = snapshot_nodes(&registry, 10_500);
        let stamps =
            |n: &NodeSnapshot| (n.previous.as_ref().map(|s| s.timestamp_ms), n.latest.as_ref().map(|s| s.timestamp_ms));
        assert_eq!(stamps(&nodes[0]), (Some(2), Some(3)));
        let later = snapshot_nodes(&registry, 13_000);
        assert_eq!((later[0].name.as_str(), stamps(&later[0])), ("n1", (None, None)), "silent for 3 intervals");
    }

    #[test]
    fn an_agent_reports_until_it_is_silent_for_3_intervals_and_a_listed_node_without_one_never_does() {
        let registry = Registry::default();
        {
            let node = registry.get_or_create("n1");
            let mut live = node.live();
            live.last_seen_ms = 10_000;
            live.interval_ms = 1000;
        }
        let table =
            |now_ms| agents_reporting(&registry, now_ms).into_iter().map(|a| (a.node, a.reporting)).collect::<Vec<_>>();
        assert_eq!(table(10_500), [("n1".to_string(), true)], "without Kubernetes: the nodes in memory");
        assert_eq!(table(13_000), [("n1".to_string(), false)], "silent for 3 intervals");
        registry.set_cluster_nodes(&["n1".to_string(), "n2".to_string()]);
        assert_eq!(table(10_500), [("n1".to_string(), true), ("n2".to_string(), false)], "n2 has no agent");
    }
}
