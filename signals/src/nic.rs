//! Which of a node's interfaces are its own wire, each counted once: the physical interfaces, a
//! bond instead of its slaves (its counters are theirs summed). Bridges, VLANs, tunnels and pod
//! veths are left out because their bytes also cross one of those. A node without any physical
//! interface is a container (kind, k3d, LXC, the demo's namespaces): its wire is its veths that
//! lead to no pod. The agent says what each interface is (`InterfaceKind`); for samples of agents
//! that do not, the names decide.

use bakery_proto::v1::{InterfaceKind, NetInterface};

/// Name prefixes of interfaces that are not a node's own wire: loopback, pod veths, bridges and
/// overlays made by container networking (flannel, Calico, Cilium, Weave, Docker, libvirt,
/// kube-router, Tailscale), tun/tap and dummy devices.
const VIRTUAL_PREFIXES: [&str; 18] = [
    "lo",
    "veth",
    "cni",
    "flannel",
    "cali",
    "cilium",
    "lxc",
    "vxlan",
    "tunl",
    "docker",
    "br-",
    "virbr",
    "kube-",
    "weave",
    "genev",
    "tap",
    "dummy",
    "tailscale",
];

/// Whether an interface's name says it is virtual (for agents that do not classify).
pub fn is_virtual_name(name: &str) -> bool {
    VIRTUAL_PREFIXES.iter().any(|prefix| name.starts_with(prefix))
}

fn kind(interface: &NetInterface) -> InterfaceKind {
    InterfaceKind::try_from(interface.kind).unwrap_or(InterfaceKind::Unspecified)
}

/// The node's own wire among `interfaces`.
pub fn node_wire(interfaces: &[NetInterface]) -> Vec<&NetInterface> {
    if interfaces.iter().all(|i| kind(i) == InterfaceKind::Unspecified) {
        return interfaces.iter().filter(|i| !is_virtual_name(&i.name)).collect();
    }
    let bonds: Vec<&str> =
        interfaces.iter().filter(|i| kind(i) == InterfaceKind::Bond).map(|i| i.name.as_str()).collect();
    let physical: Vec<&NetInterface> = interfaces
        .iter()
        .filter(|i| match kind(i) {
            InterfaceKind::Bond => true,
            InterfaceKind::Physical => !bonds.contains(&i.master.as_str()),
            _ => false,
        })
        .collect();
    if !physical.is_empty() {
        return physical;
    }
    interfaces
        .iter()
        .filter(|i| match kind(i) {
            InterfaceKind::Veth => true,
            InterfaceKind::Unspecified => !is_virtual_name(&i.name),
            _ => false,
        })
        .collect()
}

/// Bytes received and sent over the node's own wire, summed (raw cumulative counters; a receiver
/// that keeps history corrects resets per interface before summing).
pub fn wire_bytes(interfaces: &[NetInterface]) -> (u64, u64) {
    node_wire(interfaces)
        .iter()
        .filter_map(|i| i.counters.as_ref())
        .fold((0, 0), |(rx, tx), c| (rx.saturating_add(c.rx_bytes), tx.saturating_add(c.tx_bytes)))
}

#[cfg(test)]
mod tests {
    use bakery_proto::v1::NetCounters;

    use super::*;

    fn nic(name: &str, kind: InterfaceKind, master: &str) -> NetInterface {
        NetInterface {
            name: name.into(),
            counters: Some(NetCounters { rx_bytes: 10, tx_bytes: 1, ..NetCounters::default() }),
            kind: kind as i32,
            master: master.into(),
        }
    }

    fn wire(interfaces: &[NetInterface]) -> Vec<&str> {
        node_wire(interfaces).iter().map(|i| i.name.as_str()).collect()
    }

    #[test]
    fn names_decide_for_agents_that_do_not_classify() {
        use InterfaceKind::Unspecified as U;
        let interfaces = [
            nic("lo", U, ""),
            nic("eth0", U, ""),
            nic("veth1a2b", U, ""),
            nic("cni0", U, ""),
            nic("flannel.1", U, ""),
            nic("tailscale0", U, ""),
            nic("weave", U, ""),
            nic("wlan0", U, ""),
        ];
        assert_eq!(wire(&interfaces), ["eth0", "wlan0"]);
        for name in ["eth0", "end0", "wlan0", "enp3s0", "bond0"] {
            assert!(!is_virtual_name(name), "{name}");
        }
        for name in ["lo", "veth3a1f9c2e", "cni0", "flannel.1", "cali12ab", "vxlan.calico", "docker0", "kube-ipvs0"] {
            assert!(is_virtual_name(name), "{name}");
        }
        // The names the collector's analysis left out before it used this list: still left out.
        for name in ["tunl0", "br-1a2b3c", "cilium_host", "lxc12ab", "virbr0", "tailscale0"] {
            assert!(is_virtual_name(name), "{name}");
        }
    }

    #[test]
    fn kinds_count_each_wire_once() {
        use InterfaceKind as K;
        let cases: Vec<(Vec<NetInterface>, Vec<&str>)> = vec![
            // A Pi: one NIC, the CNI's bridge, overlay and pod veths.
            (
                vec![
                    nic("lo", K::Loopback, ""),
                    nic("eth0", K::Physical, ""),
                    nic("cni0", K::Bridge, ""),
                    nic("flannel.1", K::Tunnel, ""),
                    nic("veth1", K::PodVeth, "cni0"),
                ],
                vec!["eth0"],
            ),
            // A bond: the bond, not its slaves; a VLAN on it is not counted again.
            (
                vec![
                    nic("eth0", K::Physical, "bond0"),
                    nic("eth1", K::Physical, "bond0"),
                    nic("bond0", K::Bond, ""),
                    nic("bond0.20", K::Stacked, ""),
                ],
                vec!["bond0"],
            ),
            // A NIC enslaved to a bridge (the host's address on br0) is still the wire.
            (vec![nic("enp1s0", K::Physical, "br0"), nic("br0", K::Bridge, "")], vec!["enp1s0"]),
            // A node that is a container: its uplink veth, not the pods'.
            (vec![nic("lo", K::Loopback, ""), nic("eth0", K::Veth, ""), nic("veth9", K::PodVeth, "")], vec!["eth0"]),
            // A container node whose agent could not classify its uplink (sysfs of another
            // namespace): the name decides for it.
            (vec![nic("eth0", K::Unspecified, ""), nic("veth9", K::PodVeth, "")], vec!["eth0"]),
        ];
        for (interfaces, expected) in cases {
            assert_eq!(wire(&interfaces), expected, "{interfaces:?}");
        }
    }

    #[test]
    fn wire_bytes_sum_the_wire() {
        use InterfaceKind as K;
        let interfaces =
            [nic("eth0", K::Physical, "bond0"), nic("eth1", K::Physical, "bond0"), nic("bond0", K::Bond, "")];
        assert_eq!(wire_bytes(&interfaces), (10, 1));
    }
}
