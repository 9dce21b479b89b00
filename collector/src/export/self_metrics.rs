//! The collector's own series about its agents and its store, on the collector's resource:
//! which nodes' agents report (`bakery.agent.reporting`, one series per node that should have
//! an agent) and whether commits succeed (`bakery.collector.commit.last_success.timestamp`,
//! `bakery.collector.commit.failures`). The chart's alerting rules
//! (charts/bakery/rules/bakery-alerts.yaml) read them: an agent silent or missing on a node
//! Kubernetes lists, and a collector that no longer commits.

use super::model::{
    AttrValue, BAKERY_AGENT_REPORTING, BAKERY_COLLECTOR_COMMIT_FAILURES, BAKERY_COLLECTOR_COMMIT_LAST_SUCCESS, Point,
};

/// Whether one node's agent reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentReporting {
    pub node: String,
    /// A sample arrived within 3 of the agent's intervals.
    pub reporting: bool,
}

/// The nodes that should have an agent, each with whether it reports: every node Kubernetes
/// lists (`listed`; one the collector never heard from does not report), or, while Kubernetes
/// lists none (`--no-kubernetes`, or before the first node list), every node in memory
/// (`in_memory`: name, reporting). A node in memory that Kubernetes does not list is left out:
/// a node removed from the cluster takes its agent with it, and is no agent gone missing.
pub fn reporting_nodes(listed: &[String], in_memory: &[(String, bool)]) -> Vec<AgentReporting> {
    let reporting = |name: &str| in_memory.iter().any(|(node, reporting)| node == name && *reporting);
    let mut nodes: Vec<AgentReporting> = if listed.is_empty() {
        in_memory.iter().map(|(node, reporting)| AgentReporting { node: node.clone(), reporting: *reporting }).collect()
    } else {
        listed.iter().map(|node| AgentReporting { node: node.clone(), reporting: reporting(node) }).collect()
    };
    nodes.sort_by(|a, b| a.node.cmp(&b.node));
    nodes.dedup_by(|a, b| a.node == b.node);
    nodes
}

/// `bakery.agent.reporting{k8s.node.name}`: 1 or 0 per node.
pub fn agent_points(agents: &[AgentReporting]) -> Vec<Point> {
    agents
        .iter()
        .map(|agent| Point {
            metric: &BAKERY_AGENT_REPORTING,
            attributes: vec![("k8s.node.name", AttrValue::Str(agent.node.clone()))],
            value: if agent.reporting { 1.0 } else { 0.0 },
        })
        .collect()
}

/// The last good commit in Unix epoch seconds (none before the committer's first turn) and the
/// failed commits.
pub fn commit_points(last_ok_unix_ms: Option<i64>, failed_commits: u64) -> Vec<Point> {
    let mut points = Vec::with_capacity(2);
    if let Some(ms) = last_ok_unix_ms {
        points.push(Point {
            metric: &BAKERY_COLLECTOR_COMMIT_LAST_SUCCESS,
            attributes: vec![],
            value: ms as f64 / 1e3,
        });
    }
    points.push(Point { metric: &BAKERY_COLLECTOR_COMMIT_FAILURES, attributes: vec![], value: failed_commits as f64 });
    points
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::prometheus::{prometheus_name, render};

    fn names(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    fn held(nodes: &[(&str, bool)]) -> Vec<(String, bool)> {
        nodes.iter().map(|(n, r)| (n.to_string(), *r)).collect()
    }

    fn table(agents: &[AgentReporting]) -> Vec<(&str, bool)> {
        agents.iter().map(|a| (a.node.as_str(), a.reporting)).collect()
    }

    #[test]
    fn every_listed_node_has_a_series_and_one_never_heard_from_does_not_report() {
        let agents = reporting_nodes(
            &names(&["master-01", "master-02", "worker-01"]),
            &held(&[("master-01", true), ("master-02", false), ("removed-node", false)]),
        );
        // worker-01's agent never connected: 0, not absent, so an alert on 0 sees it; the
        // removed node is left out.
        assert_eq!(table(&agents), [("master-01", true), ("master-02", false), ("worker-01", false)]);
    }

    #[test]
    fn without_kubernetes_every_node_in_memory_has_a_series() {
        let agents = reporting_nodes(&[], &held(&[("b", false), ("a", true)]));
        assert_eq!(table(&agents), [("a", true), ("b", false)]);
        assert!(reporting_nodes(&[], &[]).is_empty());
    }

    #[test]
    fn agents_and_commits_render_under_their_prometheus_names() {
        let agents = reporting_nodes(&names(&["n1", "n2"]), &held(&[("n1", true)]));
        let resource = super::super::model::ResourcePoints {
            instance: "bakery-collector".into(),
            resource: vec![("k8s.cluster.name", AttrValue::Str("homelab".into()))],
            points: agent_points(&agents).into_iter().chain(commit_points(Some(1_790_000_000_250), 3)).collect(),
        };
        let text = render(&[resource]);
        for line in [
            "bakery_agent_reporting{k8s_cluster_name=\"homelab\",k8s_node_name=\"n1\"} 1\n",
            "bakery_agent_reporting{k8s_cluster_name=\"homelab\",k8s_node_name=\"n2\"} 0\n",
            "bakery_collector_commit_last_success_timestamp_seconds{k8s_cluster_name=\"homelab\"} 1790000000.25\n",
            "bakery_collector_commit_failures_total{k8s_cluster_name=\"homelab\"} 3\n",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        assert_eq!(prometheus_name(&BAKERY_AGENT_REPORTING), "bakery_agent_reporting");
        assert_eq!(
            commit_points(None, 0).iter().map(|p| p.metric.name).collect::<Vec<_>>(),
            ["bakery.collector.commit.failures"],
            "no time before the first commit"
        );
    }
}
