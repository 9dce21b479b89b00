//! A pod's traffic read from the node's side of its veth pairs, which the
//! node's own `/proc/net/dev` (read every sample for the node's NICs)
//! already lists, instead of from the pod's `net/dev`.
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
//! the same ptrace access as reading its link.
//!
//! A pod is read this way only when its veth peers are all of its
//! interfaces (loopback aside), so a pod with a macvlan, ipvlan or SR-IOV
//! interface, or none the node can see, is read from its own `net/dev`.
//! Loopback traffic inside the pod is not in the node's counters; it never
//! leaves the pod, and pod traffic leaves loopback out anyway.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

use netlink_packet_core::{NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::nsid::{NsidAttribute, NsidMessage};
use netlink_sys::protocols::NETLINK_ROUTE;
use netlink_sys::{Socket, SocketAddr};

use crate::net::{Interface, NetCounters};

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

/// The node's interfaces by name, for [`pod_counters`].
pub fn by_name(node_interfaces: &[Interface]) -> HashMap<&str, &NetCounters> {
    node_interfaces.iter().map(|interface| (interface.name.as_str(), &interface.counters)).collect()
}

/// The pod's counters as its own interfaces would show them, from the
/// node's ends of its veth pairs: receive and transmit swapped. `None` when
/// one of `peers` is not among the node's interfaces (it went away since
/// the walk), so the caller reads the pod's own `net/dev` instead.
pub fn pod_counters(node_interfaces: &HashMap<&str, &NetCounters>, peers: &[String]) -> Option<NetCounters> {
    let mut sum = NetCounters::default();
    for peer in peers {
        let node_end = *node_interfaces.get(peer.as_str())?;
        sum = NetCounters {
            rx_bytes: sum.rx_bytes.wrapping_add(node_end.tx_bytes),
            rx_packets: sum.rx_packets.wrapping_add(node_end.tx_packets),
            rx_errors: sum.rx_errors.wrapping_add(node_end.tx_errors),
            rx_dropped: sum.rx_dropped.wrapping_add(node_end.tx_dropped),
            tx_bytes: sum.tx_bytes.wrapping_add(node_end.rx_bytes),
            tx_packets: sum.tx_packets.wrapping_add(node_end.rx_packets),
            tx_errors: sum.tx_errors.wrapping_add(node_end.rx_errors),
            tx_dropped: sum.tx_dropped.wrapping_add(node_end.rx_dropped),
        };
    }
    Some(sum)
}

/// An rtnetlink socket in the agent's network namespace.
pub struct Rtnetlink {
    socket: Socket,
    sequence: u32,
    buffer: Vec<u8>,
}

impl std::fmt::Debug for Rtnetlink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rtnetlink").field("sequence", &self.sequence).finish_non_exhaustive()
    }
}

impl Rtnetlink {
    pub fn open() -> io::Result<Self> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        Ok(Self { socket, sequence: 0, buffer: vec![0; 64 * 1024] })
    }

    /// Every link of the namespace.
    pub fn links(&mut self) -> io::Result<Vec<LinkMessage>> {
        let replies = self.request(RouteNetlinkMessage::GetLink(LinkMessage::default()), NLM_F_REQUEST | NLM_F_DUMP)?;
        Ok(replies
            .into_iter()
            .filter_map(|reply| match reply {
                RouteNetlinkMessage::NewLink(link) => Some(link),
                _ => None,
            })
            .collect())
    }

    /// The id the agent's namespace gives the namespace at `ns_net` (a
    /// `/proc/<pid>/ns/net`); `None` when it has none (no link of the
    /// agent's namespace has a peer there).
    pub fn namespace_id(&mut self, ns_net: &Path) -> io::Result<Option<i32>> {
        let namespace = File::open(ns_net)?;
        let fd = u32::try_from(namespace.as_raw_fd()).map_err(|_| io::Error::other("negative file descriptor"))?;
        let mut message = NsidMessage::default();
        message.attributes.push(NsidAttribute::Fd(fd));
        let replies = self.request(RouteNetlinkMessage::GetNsId(message), NLM_F_REQUEST)?;
        for reply in replies {
            if let RouteNetlinkMessage::NewNsId(reply) = reply {
                for attribute in reply.attributes {
                    if let NsidAttribute::Id(id) = attribute {
                        // NETNSA_NSID_NOT_ASSIGNED
                        return Ok((id >= 0).then_some(id));
                    }
                }
            }
        }
        Ok(None)
    }

    /// Sends `message` and collects the replies: one, or a dump's parts up
    /// to its end.
    fn request(&mut self, message: RouteNetlinkMessage, flags: u16) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.sequence = self.sequence.wrapping_add(1);
        let mut packet = NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::from(message));
        packet.header.flags = flags;
        packet.header.sequence_number = self.sequence;
        packet.finalize();
        let mut request = vec![0; packet.buffer_len()];
        packet.serialize(&mut request);
        self.socket.send(&request, 0)?;

        let dump = flags & NLM_F_DUMP != 0;
        let mut replies = Vec::new();
        loop {
            let size = self.socket.recv(&mut &mut self.buffer[..], 0)?;
            let mut offset = 0;
            while offset < size {
                let reply: NetlinkMessage<RouteNetlinkMessage> =
                    NetlinkMessage::deserialize(&self.buffer[offset..size])
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                let length = reply.header.length as usize;
                let ours = reply.header.sequence_number == self.sequence;
                match reply.payload {
                    _ if !ours => {}
                    NetlinkPayload::Done(_) => return Ok(replies),
                    NetlinkPayload::Error(error) => match error.code {
                        None => return Ok(replies),
                        Some(code) => return Err(io::Error::from_raw_os_error(-code.get())),
                    },
                    NetlinkPayload::InnerMessage(inner) => {
                        replies.push(inner);
                        if !dump {
                            return Ok(replies);
                        }
                    }
                    _ => {}
                }
                if length == 0 {
                    break;
                }
                offset += length;
            }
        }
    }
}

/// Longest a mapping is kept while the set of pod namespaces stays the
/// same. A pod's veth is made with its sandbox and lives as long as it, so a
/// new mapping is needed when a namespace comes or goes; this bounds how
/// long a rarer change (an interface added to a running pod) goes unseen.
/// A veth that disappears is noticed at once: [`pod_counters`] then gives
/// `None` and the pod is read from its own files.
pub const REMAP_INTERVAL: Duration = Duration::from_secs(30);

/// The pods' node-side veth names, by network namespace inode, as of the
/// last mapping.
#[derive(Debug, Default)]
pub struct VethPeers {
    rtnetlink: Option<Rtnetlink>,
    peers: HashMap<u64, Vec<String>>,
    /// The namespaces the last mapping was made for (sorted), and when.
    mapped: Option<(Vec<u64>, Instant)>,
}

impl VethPeers {
    /// Finds the veth peers of `namespaces` (inode, and the `ns/net` of a
    /// process in it). Namespaces it cannot map keep no peers.
    pub fn refresh<'a>(
        &mut self,
        namespaces: impl IntoIterator<Item = (u64, &'a Path)>,
        now: Instant,
    ) -> io::Result<()> {
        self.peers.clear();
        self.mapped = None;
        let rtnetlink = match &mut self.rtnetlink {
            Some(rtnetlink) => rtnetlink,
            None => self.rtnetlink.insert(Rtnetlink::open()?),
        };
        // Dumping the links first gives every peer namespace its id, which
        // the kernel assigns the first time it reports one.
        let by_id = peers_by_namespace_id(&rtnetlink.links()?);
        let mut seen = HashSet::new();
        for (inode, ns_net) in namespaces {
            if !seen.insert(inode) {
                continue;
            }
            // A process that exited since the walk: its pod is read from
            // `net/dev` until the next one.
            let Ok(Some(id)) = rtnetlink.namespace_id(ns_net) else { continue };
            if let Some(names) = by_id.get(&id) {
                self.peers.insert(inode, names.clone());
            }
        }
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

    pub fn forget(&mut self) {
        self.peers.clear();
        self.mapped = None;
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
        peers.refresh(std::iter::empty(), now).expect("a link dump of this namespace over rtnetlink");
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
        };
        let node = [interface("eth0", 1, 1), interface("veth1a", 100, 5000), interface("veth1b", 10, 7)];
        let node = by_name(&node);
        let pod = pod_counters(&node, &["veth1a".into(), "veth1b".into()]).expect("both peers listed");
        assert_eq!((pod.rx_bytes, pod.tx_bytes, pod.rx_packets, pod.tx_packets), (5007, 110, 4, 2));
        assert_eq!(pod_counters(&node, &["veth9".into()]), None);
    }
}
