//! A pod's traffic from the node's ends of its veth pairs instead of from the pod's `net/dev`.
//!
//! The node's own `/proc/net/dev`, read every sample for the node's NICs,
//! already lists those ends.
//!
//! Most CNIs (flannel, which K3s ships, Calico, Cilium) join a pod to its
//! node with a veth pair. A veth's counters mirror its peer's: what the
//! node's end receives, the pod's end sent (`drivers/net/veth.c`,
//! `veth_get_stats64` reports the peer's transmit counts as its own
//! receive counts). So the pod's eth0 is known exactly without a file read
//! per pod and sample; on a node of mostly idle pods that read was the
//! largest cost of a sample (measured: 13 % of the agent's CPU with 30
//! pods).
//!
//! Which node interface belongs to which pod comes from rtnetlink, at each
//! walk of `/proc`: a dump of the node's links gives each veth's
//! `IFLA_LINK_NETNSID` (the id, in the node's namespace, of the namespace
//! its peer is in), and `RTM_GETNSID` on a pod process's `ns/net` gives
//! that id for the pod. Neither needs a capability; opening `ns/net` needs
//! the same ptrace access as reading its link. The same dump, with the
//! pods' namespace ids, gives the node's interface kinds
//! ([`crate::iface_kind::from_links`]), so it is also made again as soon as
//! an interface comes or goes (a pod's veth comes with its sandbox).
//!
//! A pod is read this way only when its veth peers are all of its
//! interfaces (loopback aside), so a pod with a macvlan, ipvlan or SR-IOV
//! interface, or none the node can see, is read from its own `net/dev`.
//! Loopback traffic inside the pod is not in the node's counters; it never
//! leaves the pod, and pod traffic leaves loopback out anyway.

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use netlink_packet_route::link::{LinkAttribute, LinkMessage};

use crate::iface_kind::{self, LinkKinds, PodNamespaces};
use crate::net::{Interface, InterfaceNames, NetCounters};
use crate::rtnetlink::Rtnetlink;

/// Node interfaces by the namespace id of their peer: the veths (and any
/// other link with a peer in another namespace) of a link dump.
pub fn peers_by_namespace_id(links: &[LinkMessage]) -> HashMap<i32, Vec<String>> {
    let mut peers: HashMap<i32, Vec<String>> = HashMap::new();
    for link in links {
        let mut name = None;
        let mut namespace_id = None;
        for attribute in &link.attributes {
            match attribute {
                LinkAttribute::IfName(ifname) => name = Some(ifname.clone()),
                LinkAttribute::LinkNetNsId(id) => namespace_id = Some(*id),
                _ => {}
            }
        }
        if let (Some(name), Some(id)) = (name, namespace_id) {
            peers.entry(id).or_default().push(name);
        }
    }
    for names in peers.values_mut() {
        names.sort();
    }
    peers
}

/// The pod's counters as its own interfaces would show them, from the
/// node's ends of its veth pairs: receive and transmit swapped. `None` when
/// one of `peers` is not among the node's interfaces (it went away since
/// the walk), so the caller reads the pod's own `net/dev` instead.
///
/// The node's ends are found by a linear search: a node has a few dozen
/// interfaces and a pod one or two peers, which costs less than hashing
/// every name of the node each sample into a map built for it.
pub fn pod_counters(node_interfaces: &[Interface], peers: &[String]) -> Option<NetCounters> {
    let mut sum = NetCounters::default();
    for peer in peers {
        let node_end = node_interfaces.iter().find(|interface| interface.name == *peer)?;
        sum = sum.wrapping_add(&node_end.counters.as_seen_from_the_peer());
    }
    Some(sum)
}

/// Longest a mapping is kept while the set of pod namespaces stays the
/// same. A pod's veth is made with its sandbox and lives as long as it, so a
/// new mapping is needed when a namespace comes or goes; this bounds how
/// long a rarer change (an interface added to a running pod) goes unseen.
/// A veth that disappears is noticed at once: [`pod_counters`] then gives
/// `None` and the pod is read from its own files.
pub const REMAP_INTERVAL: Duration = Duration::from_secs(30);

/// The pods' node-side veth names, by network namespace inode, and the
/// node's interface kinds, as of the last mapping.
#[derive(Debug, Default)]
pub struct VethPeers {
    rtnetlink: Option<Rtnetlink>,
    peers: foldhash::HashMap<u64, Vec<String>>,
    /// The namespaces the last mapping was made for (sorted), and when.
    mapped: Option<(Vec<u64>, Instant)>,
    /// The node's interfaces when the last mapping was tried, whether it
    /// worked or not (so a failing rtnetlink is not tried every sample).
    names: InterfaceNames,
    kinds: Option<LinkKinds>,
}

impl VethPeers {
    /// Finds the veth peers of `namespaces` (inode, and the `ns/net` of a
    /// process in it) and classifies the node's links. Namespaces it cannot
    /// map keep no peers. `every_pod_listed`: `namespaces` holds every pod
    /// not in the node's namespace (none was left out because its `ns/net`
    /// could not be read), so a veth leading elsewhere is no pod's.
    /// `node_interfaces`: the node's `net/dev`, remembered for
    /// [`Self::names_changed`].
    pub fn refresh<'a>(
        &mut self,
        namespaces: impl IntoIterator<Item = (u64, &'a Path)>,
        every_pod_listed: bool,
        node_interfaces: &[Interface],
        now: Instant,
    ) -> io::Result<()> {
        self.forget();
        self.names.set(node_interfaces);
        let rtnetlink = match &mut self.rtnetlink {
            Some(rtnetlink) => rtnetlink,
            None => self.rtnetlink.insert(Rtnetlink::open()?),
        };
        // Dumping the links first gives every peer namespace its id, which
        // the kernel assigns the first time it reports one.
        let links = rtnetlink.links()?;
        let by_id = peers_by_namespace_id(&links);
        let mut pods = PodNamespaces { ids: HashSet::new(), complete: every_pod_listed };
        let mut seen = HashSet::new();
        for (inode, ns_net) in namespaces {
            if !seen.insert(inode) {
                continue;
            }
            match rtnetlink.namespace_id(ns_net) {
                Ok(Some(id)) => {
                    pods.ids.insert(id);
                    if let Some(names) = by_id.get(&id) {
                        self.peers.insert(inode, names.clone());
                    }
                }
                // No id: no link of the node's namespace leads there.
                Ok(None) => {}
                // A process that exited since the walk (its pod is read
                // from `net/dev` until the next one), or one the agent may
                // not look into: a veth may lead to it unseen.
                Err(_) => pods.complete = false,
            }
        }
        self.kinds = Some(iface_kind::from_links(&links, &pods));
        let mut inodes: Vec<u64> = seen.into_iter().collect();
        inodes.sort_unstable();
        self.mapped = Some((inodes, now));
        Ok(())
    }

    /// Whether the last mapping was made for exactly these namespaces
    /// (`inodes` sorted) less than [`REMAP_INTERVAL`] before `now`.
    pub fn is_current_for(&self, inodes: &[u64], now: Instant) -> bool {
        self.mapped
            .as_ref()
            .is_some_and(|(mapped, at)| mapped == inodes && now.saturating_duration_since(*at) < REMAP_INTERVAL)
    }

    /// Whether the node's interfaces are not those of the last mapping
    /// tried: one came or went.
    pub fn names_changed(&self, node_interfaces: &[Interface]) -> bool {
        !self.names.same_as(node_interfaces)
    }

    pub fn forget(&mut self) {
        self.peers.clear();
        self.mapped = None;
        self.kinds = None;
    }

    /// The node's interfaces classified from the last link dump; `None`
    /// before one or when it failed.
    pub fn link_kinds(&self) -> Option<&LinkKinds> {
        self.kinds.as_ref()
    }

    pub fn drop_namespace(&mut self, inode: u64) {
        self.peers.remove(&inode);
    }

    /// The node-side names of namespace `inode`'s veths.
    pub fn of(&self, inode: u64) -> Option<&[String]> {
        self.peers.get(&inode).map(Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(name: &str, peer_namespace: Option<i32>) -> LinkMessage {
        let mut link = LinkMessage::default();
        link.attributes.push(LinkAttribute::IfName(name.into()));
        if let Some(id) = peer_namespace {
            link.attributes.push(LinkAttribute::LinkNetNsId(id));
        }
        link
    }

    #[test]
    fn a_mapping_is_kept_for_the_same_namespaces_until_the_remap_interval() {
        let mut peers = VethPeers::default();
        let now = Instant::now();
        assert!(!peers.is_current_for(&[], now), "never mapped");
        peers.refresh(std::iter::empty(), true, &[], now).expect("a link dump of this namespace over rtnetlink");
        assert!(peers.link_kinds().is_some_and(|kinds| !kinds.is_empty()), "this namespace has at least lo");
        assert!(peers.is_current_for(&[], now + REMAP_INTERVAL - Duration::from_millis(1)));
        assert!(!peers.is_current_for(&[], now + REMAP_INTERVAL), "mapped again every so often");
        assert!(!peers.is_current_for(&[7], now), "a pod namespace came");
        peers.forget();
        assert!(!peers.is_current_for(&[], now), "forgotten");
    }

    #[test]
    fn links_with_a_peer_elsewhere_are_grouped_by_the_peers_namespace() {
        let links = [
            link("lo", None),
            link("eth0", None),
            link("veth2a", Some(3)),
            link("veth1b", Some(0)),
            link("veth1a", Some(0)),
        ];
        let peers = peers_by_namespace_id(&links);
        assert_eq!(peers.len(), 2);
        assert_eq!(peers[&0], ["veth1a", "veth1b"]);
        assert_eq!(peers[&3], ["veth2a"]);
    }

    #[test]
    fn the_pod_received_what_its_peer_sent_and_a_vanished_peer_gives_none() {
        let interface = |name: &str, rx_bytes, tx_bytes| Interface {
            name: name.into(),
            counters: NetCounters { rx_bytes, rx_packets: 1, tx_bytes, tx_packets: 2, ..NetCounters::default() },
            ..Interface::default()
        };
        let node = [interface("eth0", 1, 1), interface("veth1a", 100, 5000), interface("veth1b", 10, 7)];
        let pod = pod_counters(&node, &["veth1a".into(), "veth1b".into()]).expect("both peers listed");
        assert_eq!((pod.rx_bytes, pod.tx_bytes, pod.rx_packets, pod.tx_packets), (5007, 110, 4, 2));
        assert_eq!(pod_counters(&node, &["veth9".into()]), None);
    }
}
