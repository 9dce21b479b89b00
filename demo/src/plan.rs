//! The cluster a scenario describes, laid out: every namespace name, interface name, address, pod
//! name, UID and cgroup path. Pure: the same scenario and run id give the same plan, and everything
//! the builder creates is named here, with the [`PREFIX`] that leftover cleanup looks for.
//!
//! Addresses (all in 198.18.0.0/15, the benchmarking range, and configured only inside namespaces
//! the demo creates):
//!
//! | what | address |
//! |---|---|
//! | the LAN (a bridge in the `bkd-lan` namespace) | 198.18.0.0/24 |
//! | control (collector, API double), proxy (nginx), client (oha) | .2, .3, .4 |
//! | node k (0-based, scenario order) | .(11 + k) |
//! | the Service's LoadBalancer IP | .100 |
//! | ClusterIPs, one per workload | 198.18.1.(10 + w) |
//! | pods of node k (its pod CIDR, as flannel's host-gw or Calico give each node one) | 198.19.(k + 1).0/24, gateway .1, pods from .10 |
//!
//! With at most [`MAX_NODES`](crate::scenario::MAX_NODES) nodes and 40 pods none of these ranges
//! meet: nodes end at .22, pods of one node at .49.

use std::net::Ipv4Addr;

use crate::scenario::{App, Role, Scenario, TrafficPolicy, WorkloadKind};

/// Every namespace, cgroup and leftover the demo makes starts with this (the lab knows the demo's
/// names, to clean up after a killed run).
pub const PREFIX: &str = bakery_lab::cleanup::DEMO_PREFIX;
/// The cgroup directory (in each controller hierarchy) that holds every node's subtree.
pub const CGROUP_DIR: &str = bakery_lab::cleanup::DEMO_CGROUP;
/// The collector's gRPC port, in the control namespace.
pub const COLLECTOR_PORT: u16 = 7431;
/// The Kubernetes API double's port, in the control namespace.
pub const APISERVER_PORT: u16 = 6443;
pub const LAN_PREFIX_LEN: u8 = 24;
pub const LAN_NETNS: &str = "bkd-lan";
pub const LAN_BRIDGE: &str = "br0";
/// The node's NIC, as on a Pi (`eth0`): the agent's physical-interface filter counts it.
pub const NODE_NIC: &str = "eth0";

/// A namespace on the LAN that is not a node: control, proxy or client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Station {
    pub netns: String,
    pub address: Ipv4Addr,
    /// The LAN-side end of its veth, in the LAN namespace.
    pub lan_peer: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePlan {
    pub name: String,
    pub role: Role,
    pub index: usize,
    pub netns: String,
    pub address: Ipv4Addr,
    pub lan_peer: String,
    /// The node's pod CIDR, /24.
    pub pod_cidr: Ipv4Addr,
    /// The pods' default gateway: the address every host-side pod veth carries (a /32).
    pub pod_gateway: Ipv4Addr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodPlan {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub workload: String,
    pub kind: WorkloadKind,
    pub app: App,
    /// The ReplicaSet of a Deployment's pod (its owner), as Kubernetes names it.
    pub replica_set: Option<String>,
    pub node: String,
    pub node_index: usize,
    pub netns: String,
    pub address: Ipv4Addr,
    pub port: u16,
    /// The host-side end of the pod's veth, in the node's namespace (`veth` and 8 hex digits, as
    /// CNI plugins name them).
    pub host_veth: String,
    pub container_id: String,
}

impl PodPlan {
    /// The pod-level cgroup below a hierarchy's root, in the kubelet's cgroupfs layout
    /// (`.../kubepods/besteffort/pod<uid>`), under the node's own subtree so that each node has its
    /// own kubepods tree. The agent finds the kubepods level anywhere in the path.
    pub fn cgroup(&self) -> String {
        format!("{CGROUP_DIR}/{}/kubepods/besteffort/pod{}", self.node, self.uid)
    }

    /// The container's cgroup below the pod's: where its processes run.
    pub fn container_cgroup(&self) -> String {
        format!("{}/{}", self.cgroup(), self.container_id)
    }
}

/// The Service in front of a workload: a ClusterIP one, or the scenario's LoadBalancer Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePlan {
    pub workload: String,
    pub namespace: String,
    pub cluster_ip: Ipv4Addr,
    pub port: u16,
    /// `type: LoadBalancer`: the Service the scenario's `[service]` describes.
    pub load_balancer: bool,
    /// The node port the API server allocates to a LoadBalancer Service's port (in 30000-32767),
    /// which kube-proxy opens on every node.
    pub node_port: Option<u16>,
    /// `healthCheckNodePort`, allocated for a LoadBalancer Service with `externalTrafficPolicy:
    /// Local` (where kube-proxy answers whether the node has a local endpoint).
    pub health_check_node_port: Option<u16>,
}

/// The API server's default node port range, `--service-node-port-range` 30000-32767.
const NODE_PORT_FIRST: u16 = 30_000;
const NODE_PORTS: u64 = 2_768;

/// Everything the builder makes for one run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub scenario: Scenario,
    /// Distinguishes this run's UIDs from an earlier run's.
    pub run_id: u32,
    pub nodes: Vec<NodePlan>,
    pub pods: Vec<PodPlan>,
    pub services: Vec<ServicePlan>,
    pub control: Station,
    pub proxy: Station,
    pub client: Station,
    /// The LoadBalancer IP of the web Service.
    pub load_balancer_ip: Ipv4Addr,
}

/// The cgroup of a node's processes outside pods (its init, agent, extras).
pub fn node_system_cgroup(node: &str) -> String {
    format!("{CGROUP_DIR}/{node}/system")
}

/// The cgroup subtree of a node.
pub fn node_cgroup(node: &str) -> String {
    format!("{CGROUP_DIR}/{node}")
}

fn lan(host: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, host)
}

fn station(name: &str, host: u8) -> Station {
    Station { netns: format!("{PREFIX}{name}"), address: lan(host), lan_peer: format!("l-{name}") }
}

/// A small deterministic mixer (SplitMix64), so names and UIDs follow from the run id.
pub(crate) fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The alphabet of Kubernetes generated name suffixes (no vowels, no confusable characters;
/// `k8s.io/apimachinery/pkg/util/rand`).
const NAME_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// `len` characters of a generated name suffix, from `seed`.
pub(crate) fn suffix(seed: u64, len: usize) -> String {
    let mut value = mix(seed);
    (0..len)
        .map(|_| {
            let c = NAME_ALPHABET[(value % NAME_ALPHABET.len() as u64) as usize] as char;
            value /= NAME_ALPHABET.len() as u64;
            c
        })
        .collect()
}

impl Plan {
    pub fn new(scenario: Scenario, run_id: u32) -> Self {
        // One piece: nodes, then each workload's pods, node ports and Service, numbered in one pass over the scenario
        // so that every index and seeded name agrees.
        let nodes: Vec<NodePlan> = scenario
            .nodes
            .iter()
            .enumerate()
            .map(|(index, node)| {
                let third = u8::try_from(index + 1).unwrap_or(u8::MAX);
                NodePlan {
                    name: node.name.clone(),
                    role: node.role,
                    index,
                    netns: format!("{PREFIX}n-{}", node.name),
                    address: lan(u8::try_from(11 + index).unwrap_or(u8::MAX)),
                    lan_peer: format!("l-{}", node.name),
                    pod_cidr: Ipv4Addr::new(198, 19, third, 0),
                    pod_gateway: Ipv4Addr::new(198, 19, third, 1),
                }
            })
            .collect();
        let mut pods = Vec::new();
        let mut per_node = vec![0u8; nodes.len()];
        let mut services = Vec::new();
        for (w, workload) in scenario.workloads.iter().enumerate() {
            let seed = (u64::from(run_id) << 16) ^ (w as u64);
            let replica_set = match workload.kind {
                WorkloadKind::Deployment => {
                    // ReplicaSet names end in the pod-template hash (10 characters of the alphabet).
                    Some(format!("{}-{}", workload.name, suffix(seed, 10)))
                }
                WorkloadKind::StatefulSet => None,
            };
            let load_balancer = workload.name == scenario.service.workload;
            // Two ports of the range, as the API server allocates them at random: the health check
            // port is a non-zero step from the service's node port, so the two never meet.
            let offset = mix(seed ^ 0x90de) % NODE_PORTS;
            let health_offset = (offset + 1 + mix(seed ^ 0x4ea1) % (NODE_PORTS - 1)) % NODE_PORTS;
            let node_port = |offset: u64| NODE_PORT_FIRST + u16::try_from(offset).unwrap_or(0);
            services.push(ServicePlan {
                workload: workload.name.clone(),
                namespace: workload.namespace.clone(),
                cluster_ip: Ipv4Addr::new(198, 18, 1, u8::try_from(10 + w).unwrap_or(u8::MAX)),
                port: workload.port(),
                load_balancer,
                node_port: load_balancer.then(|| node_port(offset)),
                health_check_node_port: (load_balancer
                    && scenario.service.external_traffic_policy == TrafficPolicy::Local)
                    .then(|| node_port(health_offset)),
            });
            for (replica, node_name) in workload.placement.iter().enumerate() {
                let node = nodes.iter().find(|n| &n.name == node_name).unwrap_or(&nodes[0]);
                let slot = per_node[node.index];
                per_node[node.index] = slot.saturating_add(1);
                let pod_seed = mix(seed ^ ((replica as u64) << 32));
                let name = match &replica_set {
                    Some(rs) => format!("{rs}-{}", suffix(pod_seed, 5)),
                    None => format!("{}-{replica}", workload.name),
                };
                let uid = format!(
                    "{run_id:08x}-bd00-4{:03x}-8{:03x}-{:012x}",
                    w & 0xfff,
                    replica & 0xfff,
                    pod_seed & 0xffff_ffff_ffff
                );
                let container_id = format!(
                    "{:016x}{:016x}{:016x}{:016x}",
                    mix(pod_seed),
                    mix(pod_seed + 1),
                    mix(pod_seed + 2),
                    mix(pod_seed + 3)
                );
                pods.push(PodPlan {
                    name: name.clone(),
                    namespace: workload.namespace.clone(),
                    uid,
                    workload: workload.name.clone(),
                    kind: workload.kind,
                    app: workload.app,
                    replica_set: replica_set.clone(),
                    node: node.name.clone(),
                    node_index: node.index,
                    netns: format!("{PREFIX}p-{}-{replica}", workload.name),
                    address: Ipv4Addr::new(198, 19, node.pod_cidr.octets()[2], 10u8.saturating_add(slot)),
                    port: workload.port(),
                    host_veth: format!("veth{:08x}", mix(pod_seed ^ 0x5eed) & 0xffff_ffff),
                    container_id,
                });
            }
        }
        Self {
            scenario,
            run_id,
            nodes,
            pods,
            services,
            control: station("control", 2),
            proxy: station("proxy", 3),
            client: station("client", 4),
            load_balancer_ip: lan(100),
        }
    }

    pub fn node(&self, name: &str) -> Option<&NodePlan> {
        self.nodes.iter().find(|n| n.name == name)
    }

    pub fn service(&self, workload: &str) -> Option<&ServicePlan> {
        self.services.iter().find(|s| s.workload == workload)
    }

    /// The pods of a workload, in replica order.
    pub fn pods_of<'a>(&'a self, workload: &'a str) -> impl Iterator<Item = &'a PodPlan> + 'a {
        self.pods.iter().filter(move |p| p.workload == workload)
    }

    /// The pods of the web workload under test (behind the Service, directly or through the
    /// in-cluster proxy): the endpoints the load is shared over.
    pub fn endpoints(&self) -> Vec<&PodPlan> {
        self.pods_of(&self.scenario.served().name).collect()
    }

    /// The LoadBalancer Service's endpoints: the web pods, or the in-cluster proxy's.
    pub fn entry_endpoints(&self) -> Vec<&PodPlan> {
        self.pods_of(&self.scenario.service.workload).collect()
    }

    /// The LoadBalancer Service.
    pub fn load_balancer(&self) -> Option<&ServicePlan> {
        self.services.iter().find(|s| s.load_balancer)
    }

    /// The nodes client traffic enters through.
    pub fn entry_nodes(&self) -> Vec<&NodePlan> {
        let names = self.scenario.entry_nodes();
        self.nodes.iter().filter(|n| names.contains(&n.name.as_str())).collect()
    }

    /// Every network namespace the plan creates, in creation order.
    pub fn all_netns(&self) -> Vec<String> {
        let mut all = vec![LAN_NETNS.to_string()];
        all.extend([&self.control, &self.proxy, &self.client].iter().map(|s| s.netns.clone()));
        all.extend(self.nodes.iter().map(|n| n.netns.clone()));
        all.extend(self.pods.iter().map(|p| p.netns.clone()));
        all
    }

    /// The collector's address as the agents dial it.
    pub fn collector_url(&self) -> String {
        format!("http://{}:{COLLECTOR_PORT}", self.control.address)
    }
}

/// `role` as the `node-role.kubernetes.io/<role>` label and the diagnosis name it.
pub fn role_label(role: Role) -> &'static str {
    match role {
        Role::ControlPlane => "control-plane",
        Role::Worker => "worker",
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn plan(name: &str) -> Plan {
        Plan::new(Scenario::shipped(name).unwrap(), 0x1234)
    }

    #[test]
    fn the_default_cluster_is_laid_out_as_documented() {
        let plan = plan("l2-ingress");
        let names: Vec<&str> = plan.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["master-01", "master-02", "master-03", "worker-01", "worker-02"]);
        assert_eq!(plan.nodes[1].address, Ipv4Addr::new(198, 18, 0, 12));
        assert_eq!(plan.nodes[1].netns, "bkd-n-master-02");
        assert_eq!(plan.nodes[4].pod_cidr, Ipv4Addr::new(198, 19, 5, 0));
        assert_eq!(plan.load_balancer_ip, Ipv4Addr::new(198, 18, 0, 100));
        assert_eq!(plan.control.address, Ipv4Addr::new(198, 18, 0, 2));
        assert_eq!(plan.collector_url(), "http://198.18.0.2:7431");
        assert_eq!(plan.entry_nodes().iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["master-02"]);
        let web: Vec<&str> = plan.endpoints().iter().map(|p| p.node.as_str()).collect();
        assert_eq!(web, ["master-02", "worker-01", "worker-02"]);
    }

    #[test]
    fn every_name_and_address_is_unique_and_carries_the_prefix() {
        for (name, _) in crate::scenario::SHIPPED {
            let plan = plan(name);
            let netns = plan.all_netns();
            assert!(netns.iter().all(|n| n.starts_with(PREFIX)), "{netns:?}");
            assert_eq!(netns.iter().collect::<BTreeSet<_>>().len(), netns.len(), "{name}: {netns:?}");
            let addresses: BTreeSet<Ipv4Addr> = plan.pods.iter().map(|p| p.address).collect();
            assert_eq!(addresses.len(), plan.pods.len(), "{name}");
            let uids: BTreeSet<&str> = plan.pods.iter().map(|p| p.uid.as_str()).collect();
            assert_eq!(uids.len(), plan.pods.len(), "{name}");
            let veths: BTreeSet<&str> = plan.pods.iter().map(|p| p.host_veth.as_str()).collect();
            assert_eq!(veths.len(), plan.pods.len(), "{name}");
            for pod in &plan.pods {
                assert!(pod.host_veth.len() <= 15, "interface names are at most 15 bytes: {}", pod.host_veth);
                assert_eq!(pod.uid.len(), 36, "{}", pod.uid);
                assert_eq!(pod.container_id.len(), 64);
                let octets = pod.address.octets();
                assert_eq!((octets[0], octets[1], octets[2]), (198, 19, pod.node_index as u8 + 1));
            }
        }
    }

    #[test]
    fn pods_are_named_as_kubernetes_names_them() {
        let plan = plan("l2-ingress");
        let wordpress: Vec<&PodPlan> = plan.pods_of("wordpress").collect();
        let rs = wordpress[0].replica_set.clone().unwrap();
        assert!(rs.starts_with("wordpress-") && rs.len() == "wordpress-".len() + 10, "{rs}");
        for pod in &wordpress {
            assert_eq!(pod.replica_set.as_deref(), Some(rs.as_str()));
            assert!(pod.name.starts_with(&format!("{rs}-")) && pod.name.len() == rs.len() + 6, "{}", pod.name);
        }
        let mysql: Vec<&PodPlan> = plan.pods_of("mysql").collect();
        assert_eq!(mysql[0].name, "mysql-0");
        assert_eq!(mysql[0].replica_set, None);
        assert_eq!(mysql[0].port, 3306);
    }

    #[test]
    fn the_agent_recognises_the_pod_cgroups() {
        let plan = plan("uneven-placement");
        let pod = &plan.pods[0];
        let path = format!("/{}", pod.container_cgroup());
        assert!(path.contains("/kubepods/besteffort/pod"), "{path}");
        assert!(path.starts_with(&format!("/bakery-demo/{}/", pod.node)));
    }

    #[test]
    fn the_same_run_id_gives_the_same_plan_and_another_gives_other_uids() {
        let a = plan("balanced");
        let b = plan("balanced");
        assert_eq!(a.pods, b.pods);
        let c = Plan::new(Scenario::shipped("balanced").unwrap(), 0x9999);
        assert_ne!(a.pods[0].uid, c.pods[0].uid);
    }

    #[test]
    fn two_replicas_on_one_node_get_two_addresses() {
        let plan = plan("uneven-placement");
        let on_worker: Vec<Ipv4Addr> =
            plan.pods_of("wordpress").filter(|p| p.node == "worker-01").map(|p| p.address).collect();
        assert_eq!(on_worker, [Ipv4Addr::new(198, 19, 4, 10), Ipv4Addr::new(198, 19, 4, 11)]);
    }

    #[test]
    fn local_policy_with_every_node_entry_enters_only_where_endpoints_are() {
        let plan = plan("keepalive-pinning");
        let entries: Vec<&str> = plan.entry_nodes().iter().map(|n| n.name.as_str()).collect();
        assert_eq!(entries, ["master-02", "worker-01", "worker-02"]);
        let balanced = self::plan("balanced");
        assert_eq!(balanced.entry_nodes().len(), 5);
    }

    /// A scenario of `n` nodes (`node-01`, ...), web replicas on the first and last node (two on the
    /// last), the database on the first, L2 with the last node announcing.
    fn scenario_of(n: usize) -> Scenario {
        let nodes: String =
            (1..=n).map(|i| format!("[[nodes]]\nname = \"node-{i:02}\"\nrole = \"worker\"\n")).collect();
        Scenario::parse(&format!(
            "name = \"n{n}\"\nexpect = \"none\"\n{nodes}\
             [[workloads]]\nname = \"wordpress\"\nkind = \"Deployment\"\napp = \"web\"\ndatabase = \"mysql\"\n\
             placement = [\"node-01\", \"node-{n:02}\", \"node-{n:02}\"]\n\
             [[workloads]]\nname = \"mysql\"\nkind = \"StatefulSet\"\napp = \"database\"\nplacement = [\"node-01\"]\n\
             [service]\nworkload = \"wordpress\"\nentry = \"l2\"\nannouncer = \"node-{n:02}\"\n"
        ))
        .unwrap_or_else(|e| panic!("{n} nodes: {e}"))
    }

    #[test]
    fn one_and_twelve_nodes_get_distinct_addresses_and_short_interface_names() {
        for n in [1, crate::scenario::MAX_NODES] {
            let plan = Plan::new(scenario_of(n), 0x77);
            assert_eq!(plan.nodes.len(), n);
            let last = &plan.nodes[n - 1];
            assert_eq!(last.address, Ipv4Addr::new(198, 18, 0, 10 + n as u8), "node k is .(11 + k)");
            assert_eq!(last.pod_cidr, Ipv4Addr::new(198, 19, n as u8, 0));
            let mut lan: Vec<Ipv4Addr> = plan.nodes.iter().map(|n| n.address).collect();
            lan.extend([plan.control.address, plan.proxy.address, plan.client.address, plan.load_balancer_ip]);
            lan.extend(plan.services.iter().map(|s| s.cluster_ip));
            assert_eq!(lan.iter().collect::<BTreeSet<_>>().len(), lan.len(), "{n} nodes: {lan:?}");
            let cidrs: BTreeSet<Ipv4Addr> = plan.nodes.iter().map(|n| n.pod_cidr).collect();
            assert_eq!(cidrs.len(), n);
            for node in &plan.nodes {
                assert!(node.lan_peer.len() <= 15 && NODE_NIC.len() <= 15, "{}", node.lan_peer);
                assert!(node.netns.starts_with(PREFIX));
            }
            let pods: BTreeSet<Ipv4Addr> = plan.pods.iter().map(|p| p.address).collect();
            assert_eq!(pods.len(), plan.pods.len());
            for pod in &plan.pods {
                assert_eq!(pod.address.octets()[2], plan.nodes[pod.node_index].pod_cidr.octets()[2], "{pod:?}");
                assert!(pod.host_veth.len() <= 15);
            }
            let netns = plan.all_netns();
            assert_eq!(netns.iter().collect::<BTreeSet<_>>().len(), netns.len());
            let entries: Vec<&str> = plan.entry_nodes().iter().map(|n| n.name.as_str()).collect();
            assert_eq!(entries, [last.name.as_str()]);
            // Two replicas on the last node: two addresses in its pod CIDR.
            let on_last: Vec<Ipv4Addr> =
                plan.pods_of("wordpress").filter(|p| p.node == last.name).map(|p| p.address).collect();
            let third = n as u8;
            let expected: &[Ipv4Addr] = if n == 1 {
                &[Ipv4Addr::new(198, 19, 1, 10), Ipv4Addr::new(198, 19, 1, 11), Ipv4Addr::new(198, 19, 1, 12)]
            } else {
                &[Ipv4Addr::new(198, 19, third, 10), Ipv4Addr::new(198, 19, third, 11)]
            };
            assert_eq!(on_last, expected);
        }
    }

    #[test]
    fn the_load_balancer_service_gets_node_ports_from_the_api_servers_range() {
        for name in ["l2-ingress", "local-policy", "in-cluster-proxy"] {
            let plan = plan(name);
            let lb = plan.load_balancer().unwrap();
            assert_eq!(lb.workload, plan.scenario.service.workload);
            let node_port = lb.node_port.unwrap();
            assert!((30_000..=32_767).contains(&node_port), "{node_port}");
            let local = plan.scenario.service.external_traffic_policy == TrafficPolicy::Local;
            assert_eq!(lb.health_check_node_port.is_some(), local, "{name}");
            if let Some(health) = lb.health_check_node_port {
                assert!((30_000..=32_767).contains(&health) && health != node_port, "{health}");
            }
            for other in plan.services.iter().filter(|s| !s.load_balancer) {
                assert_eq!((other.node_port, other.health_check_node_port), (None, None), "{other:?}");
            }
        }
    }

    #[test]
    fn with_an_in_cluster_proxy_the_endpoints_are_the_web_pods_behind_it() {
        let plan = plan("in-cluster-proxy");
        let relay = plan.scenario.relay().unwrap();
        let entry: Vec<&str> = plan.entry_endpoints().iter().map(|p| p.workload.as_str()).collect();
        assert!(!entry.is_empty() && entry.iter().all(|w| *w == relay.name), "{entry:?}");
        let web: Vec<&str> = plan.endpoints().iter().map(|p| p.workload.as_str()).collect();
        assert!(!web.is_empty() && web.iter().all(|w| *w == "wordpress"), "{web:?}");
        assert_eq!(plan.pods_of(&relay.name).next().unwrap().app, App::Proxy);
    }
}
