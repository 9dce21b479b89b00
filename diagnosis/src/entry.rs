//! The entry model of the workload's Service: which nodes take client connections in, which part
//! of them each should take, and where each may forward them. Pure: built from what the cluster
//! declares ([`crate::input::ServiceEntry`]) and the ready endpoints.
//!
//! # Two splits
//!
//! * The **fair** split is the reference a node is judged against: client connections entering
//!   evenly over the nodes that *may* take them in: with `externalTrafficPolicy: Cluster` every node
//!   the advertisements allow (every node without node selectors), with `Local` every such node that
//!   has a ready endpoint. An announcement that sends everything through one node makes that node
//!   carry more than its fair part: that is the hog the diagnosis names.
//! * The **declared** split is what the cluster says happens: the MetalLB layer-2 announcer takes
//!   everything, BGP announcers (ECMP at the router) an even part each, NodePort or K3s ServiceLB
//!   every node. It explains a flagged node and picks the next step; it is never the reference, or a
//!   single announcer would always look "as expected".
//!
//! # Forwarding
//!
//! Under `Cluster`, a connection entering at node `i` goes to any ready endpoint with equal chance,
//! so a part `1 - q_i` of what enters at `i` leaves for another node (`q_i`: `i`'s share of the
//! endpoints the Service forwards to: the relay's, when an in-cluster proxy sits between the Service
//! and the workload). Forwarded bytes cross `i`'s NIC twice (in and out), so a node taking a part
//! `e` of the entries forwards `2 e (1 - q)` of the workload's traffic. A node holding every
//! endpoint forwards nothing whatever enters it, so its entry part cannot be read from its NIC.
//! Under `Local` no node forwards: an entry node serves from its own endpoints only.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::input::{Announcement, ServiceEntry, TrafficPolicy, WorkloadRef, WorkloadUnderTest};

/// The entry model over the nodes present in one analysis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntryModel {
    /// The Service read from the cluster; `None` when none is known (no cluster knowledge, or no
    /// Service selects the workload): ingress is then judged against the runner-up node.
    pub service: Option<ServiceEntry>,
    /// The in-cluster proxy between the Service and the workload, if any.
    pub relay: Option<WorkloadRef>,
    /// Fair part of the client connections per node (only nodes that may take them in).
    pub fair: BTreeMap<String, f64>,
    /// Declared part per node; `None` when the cluster does not say who announces.
    pub declared: Option<BTreeMap<String, f64>>,
    /// Ready endpoints per node of the workload the entry nodes forward to.
    pub forward_to: BTreeMap<String, u32>,
}

impl EntryModel {
    /// Builds the model for `workload` over `nodes` (the nodes present now).
    pub fn build(workload: &WorkloadUnderTest, nodes: &BTreeSet<&str>) -> Self {
        let forward_to = workload.relay.as_ref().map_or(&workload.ready_endpoints, |r| &r.ready_endpoints).clone();
        let relay = workload.relay.as_ref().map(|r| r.workload.clone());
        let Some(service) = workload.service.clone() else {
            return Self { service: None, relay, fair: BTreeMap::new(), declared: None, forward_to };
        };
        let eligible = |node: &str| service.eligible_nodes.as_ref().is_none_or(|e| e.contains(node));
        let has_endpoint = |node: &str| forward_to.get(node).copied().unwrap_or(0) > 0;
        let candidates: Vec<&str> = nodes
            .iter()
            .copied()
            .filter(|n| eligible(n))
            .filter(|n| service.external_traffic_policy == TrafficPolicy::Cluster || has_endpoint(n))
            .collect();
        let even = |names: &[&str]| -> BTreeMap<String, f64> {
            let part = 1.0 / names.len().max(1) as f64;
            names.iter().map(|n| (n.to_string(), part)).collect()
        };
        let fair = even(&candidates);
        let declared = match &service.announcement {
            Announcement::L2 { node, .. } => Some(BTreeMap::from([(node.clone(), 1.0)])),
            Announcement::Bgp { nodes: announcers, .. } => {
                let present: Vec<&str> = announcers.iter().map(String::as_str).filter(|n| nodes.contains(n)).collect();
                Some(even(&present))
            }
            Announcement::EveryNode { .. } => Some(fair.clone()),
            Announcement::Unknown { .. } => None,
        };
        Self { service: Some(service), relay, fair, declared, forward_to }
    }

    /// `externalTrafficPolicy` of the Service (Cluster without one).
    pub fn policy(&self) -> TrafficPolicy {
        self.service.as_ref().map_or(TrafficPolicy::Cluster, |s| s.external_traffic_policy)
    }

    /// The node's fair part of the client connections (0 for a node that may not take them in).
    pub fn fair_part(&self, node: &str) -> f64 {
        self.fair.get(node).copied().unwrap_or(0.0)
    }

    /// The node's declared part, when the cluster declares who announces.
    pub fn declared_part(&self, node: &str) -> Option<f64> {
        self.declared.as_ref().map(|d| d.get(node).copied().unwrap_or(0.0))
    }

    /// The nodes that may take client connections in.
    pub fn candidates(&self) -> usize {
        self.fair.len()
    }

    /// The single node the cluster declares takes every client connection in (a layer-2
    /// announcer), if so.
    pub fn sole_entry(&self) -> Option<&str> {
        match self.service.as_ref().map(|s| &s.announcement) {
            Some(Announcement::L2 { node, .. }) => Some(node),
            _ => None,
        }
    }

    /// The part of what enters at `node` that it forwards to pods on other nodes: `1 - q` under the
    /// Cluster policy, 0 under Local. `None` for a node holding every endpoint (it forwards nothing
    /// whatever enters it) or when there is no endpoint at all.
    pub fn forwarded_part(&self, node: &str) -> Option<f64> {
        if self.policy() == TrafficPolicy::Local {
            return Some(0.0);
        }
        let total: u64 = self.forward_to.values().map(|&e| u64::from(e)).sum();
        if total == 0 {
            return None;
        }
        let q = f64::from(self.forward_to.get(node).copied().unwrap_or(0)) / total as f64;
        (q < 1.0).then_some(1.0 - q)
    }

    /// What the model rests on, one line per object read, for evidence and reports.
    pub fn read(&self) -> Vec<String> {
        let Some(service) = &self.service else {
            return vec![
                "no Service selects the workload: entry nodes unknown, ingress judged against the \
                         runner-up node"
                    .to_string(),
            ];
        };
        let mut lines = Vec::new();
        let affinity = match service.session_affinity {
            Some(a) => format!("sessionAffinity ClientIP ({} s)", a.timeout_seconds),
            None => "sessionAffinity None".to_string(),
        };
        let address = if service.load_balancer_ips.is_empty() {
            String::new()
        } else {
            format!(", address {}", service.load_balancer_ips.join(", "))
        };
        lines.push(format!(
            "Service {}: type {:?}, externalTrafficPolicy {:?}, {affinity}{address}",
            service.service, service.service_type, service.external_traffic_policy
        ));
        lines.push(match &service.announcement {
            Announcement::L2 { node, source } => format!("{source}: layer-2 announcer {node}"),
            Announcement::Bgp { nodes, source } => {
                format!("{source}: BGP announcers {}", nodes.iter().map(String::as_str).collect::<Vec<_>>().join(", "))
            }
            Announcement::EveryNode { source } => format!("{source}: every node takes client traffic"),
            Announcement::Unknown { reason } => format!("entry nodes unknown: {reason}"),
        });
        if let Some(eligible) = &service.eligible_nodes {
            lines.push(format!(
                "advertisements allow {} to announce",
                eligible.iter().map(String::as_str).collect::<Vec<_>>().join(", ")
            ));
        }
        if let Some(relay) = &self.relay {
            lines.push(format!("{} relays the Service's traffic to the workload", relay));
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::{Relay, ServiceType, WorkloadRef};

    fn service(announcement: Announcement, policy: TrafficPolicy) -> ServiceEntry {
        ServiceEntry {
            service: "wp/wordpress".into(),
            service_type: ServiceType::LoadBalancer,
            external_traffic_policy: policy,
            internal_traffic_policy: TrafficPolicy::Cluster,
            session_affinity: None,
            load_balancer_ips: vec!["198.18.0.100".into()],
            announcement,
            eligible_nodes: None,
        }
    }

    fn workload(endpoints: &[(&str, u32)], service: Option<ServiceEntry>) -> WorkloadUnderTest {
        WorkloadUnderTest {
            workload: WorkloadRef::new("Deployment", "wp", "wordpress"),
            ready_endpoints: endpoints.iter().map(|(n, e)| (n.to_string(), *e)).collect(),
            service,
            relay: None,
        }
    }

    fn nodes<'a>(names: &[&'a str]) -> BTreeSet<&'a str> {
        names.iter().copied().collect()
    }

    #[test]
    fn a_layer_2_announcer_is_declared_to_take_everything_but_fairly_takes_an_even_part() {
        let l2 = Announcement::L2 { node: "b".into(), source: "ServiceL2Status metallb-system/l2-x".into() };
        let model = EntryModel::build(
            &workload(&[("a", 1), ("c", 1)], Some(service(l2, TrafficPolicy::Cluster))),
            &nodes(&["a", "b", "c"]),
        );
        assert_eq!(model.fair_part("b"), 1.0 / 3.0);
        assert_eq!(model.declared_part("b"), Some(1.0));
        assert_eq!(model.declared_part("a"), Some(0.0));
        assert_eq!(model.sole_entry(), Some("b"));
        assert_eq!(model.forwarded_part("b"), Some(1.0), "b has no endpoint: all it takes in leaves");
        assert_eq!(model.forwarded_part("a"), Some(0.5));
        assert!(model.read().iter().any(|l| l.contains("ServiceL2Status metallb-system/l2-x: layer-2 announcer b")));
    }

    #[test]
    fn local_policy_lets_only_nodes_with_endpoints_in_and_nothing_is_forwarded() {
        let bgp = Announcement::Bgp { nodes: ["a".to_string(), "c".to_string()].into(), source: "s".into() };
        let model = EntryModel::build(
            &workload(&[("a", 2), ("c", 1)], Some(service(bgp, TrafficPolicy::Local))),
            &nodes(&["a", "b", "c"]),
        );
        assert_eq!(model.fair, BTreeMap::from([("a".to_string(), 0.5), ("c".to_string(), 0.5)]));
        assert_eq!(model.forwarded_part("a"), Some(0.0));
        assert_eq!(model.declared_part("c"), Some(0.5));
    }

    #[test]
    fn advertisements_narrow_who_may_announce() {
        let mut entry = service(Announcement::Unknown { reason: "no status yet".into() }, TrafficPolicy::Cluster);
        entry.eligible_nodes = Some(["a".to_string(), "b".to_string()].into());
        let model = EntryModel::build(&workload(&[("a", 1), ("c", 1)], Some(entry)), &nodes(&["a", "b", "c"]));
        assert_eq!(model.fair_part("c"), 0.0);
        assert_eq!(model.fair_part("a"), 0.5);
        assert_eq!(model.declared_part("a"), None, "unknown announcer: nothing declared");
    }

    #[test]
    fn a_relay_is_where_entries_forward_to() {
        let every = Announcement::EveryNode { source: "Service type NodePort".into() };
        let mut w = workload(&[("a", 1), ("b", 1)], Some(service(every, TrafficPolicy::Cluster)));
        w.relay = Some(Relay {
            workload: WorkloadRef::new("Deployment", "npm", "proxy"),
            ready_endpoints: BTreeMap::from([("c".to_string(), 1)]),
        });
        let model = EntryModel::build(&w, &nodes(&["a", "b", "c"]));
        assert_eq!(model.forwarded_part("c"), None, "the proxy's node forwards nothing it takes in");
        assert_eq!(model.forwarded_part("a"), Some(1.0));
        assert!(model.read().iter().any(|l| l.contains("Deployment/npm/proxy relays")));
    }

    #[test]
    fn without_a_service_nothing_is_declared_and_the_read_says_so() {
        let model = EntryModel::build(&workload(&[("a", 1)], None), &nodes(&["a", "b"]));
        assert!(model.fair.is_empty() && model.declared.is_none());
        assert!(model.read()[0].contains("runner-up"));
    }
}
