//! Cluster knowledge: the collector's one watch per kind (Pods, Nodes, EndpointSlices, Services,
//! and MetalLB's status and advertisement kinds when installed) for the whole cluster, so agents
//! stay free of Kubernetes and the Pi control plane serves one client. [`mapping`] turns objects
//! into pod identities, roles and ready endpoints, [`services`] into each Service's declared entry
//! (both pure); [`watch`] runs the `kube` watchers into reflector stores; [`ClusterView`] is one
//! consistent look at them. [`tokenreview`] reviews the agents' service-account tokens with the
//! same client.

pub mod mapping;
pub mod services;
pub mod tokenreview;
pub mod watch;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use bakery_diagnosis::{NodeRole, ServiceEntry, WorkloadRef};

pub use mapping::PodMeta;
pub use watch::{KubeWatch, WatchOptions};

/// Where the cluster's API server is found (`--kubeconfig`, `--no-kubernetes`, or inferred).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KubeMode {
    /// No cluster: pods are named by UID, workloads unknown; node-level diagnosis still works.
    Disabled,
    /// This kubeconfig file (its current context).
    Kubeconfig(PathBuf),
    /// `kube::Config::infer`: `$KUBECONFIG` / `~/.kube/config`, else the in-cluster service
    /// account. When neither exists the collector runs as with [`KubeMode::Disabled`].
    Infer,
}

/// One look at everything the watches hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterView {
    pub pods_by_uid: HashMap<String, PodMeta>,
    /// Node name -> role.
    pub roles: BTreeMap<String, NodeRole>,
    /// Workload -> node -> ready endpoints.
    pub endpoints: BTreeMap<WorkloadRef, BTreeMap<String, u32>>,
    /// Workload -> the Services that select it (through their EndpointSlices), each with how the
    /// cluster declares its entry (type, policies, affinity, MetalLB announcement).
    pub services: BTreeMap<WorkloadRef, Vec<ServiceEntry>>,
    /// What the collector could not read and why (for example "MetalLB is not installed"), for
    /// reports: each says what the diagnosis assumes instead.
    pub notes: Vec<String>,
}

impl ClusterView {
    pub fn role(&self, node: &str) -> NodeRole {
        self.roles.get(node).copied().unwrap_or_default()
    }

    /// The Service client traffic enters `workload` through: a LoadBalancer Service first, then a
    /// NodePort one, then any (by name, so the choice is stable).
    pub fn entry_service(&self, workload: &WorkloadRef) -> Option<&ServiceEntry> {
        let services = self.services.get(workload)?;
        let rank = |s: &ServiceEntry| match s.service_type {
            bakery_diagnosis::ServiceType::LoadBalancer => 0,
            bakery_diagnosis::ServiceType::NodePort => 1,
            _ => 2,
        };
        services.iter().min_by(|a, b| rank(a).cmp(&rank(b)).then_with(|| a.service.cmp(&b.service)))
    }

    /// The workload called `namespace/name` (any kind), if a pod of it is known.
    pub fn find_workload(&self, namespace: &str, name: &str) -> Option<WorkloadRef> {
        let mut matches: Vec<&WorkloadRef> = self
            .pods_by_uid
            .values()
            .filter_map(|p| p.workload.as_ref())
            .filter(|w| w.namespace == namespace && w.name == name)
            .collect();
        matches.sort();
        matches.first().map(|w| (*w).clone())
    }
}
