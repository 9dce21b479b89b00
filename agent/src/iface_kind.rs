//! What each of the node's interfaces is (a NIC, a bond, a bridge, a pod's veth, ...), so that a
//! receiver can count the node's own wire once.
//!
//! [`classify`] is pure: it turns what the kernel says about one link ([`LinkFacts`]) into an
//! [`InterfaceKind`]. The facts come from one of two sources:
//!
//! - **rtnetlink**, when the proc root is the live procfs of the agent's own network namespace
//!   ([`proc_root_is_this_namespace`]): the link dump the pods' veth mapping makes anyway
//!   ([`crate::pods::veth`]) gives each link's kind (`IFLA_INFO_KIND`), master (`IFLA_MASTER`),
//!   type and, for a veth, the namespace of its peer, which tells a pod's veth from the uplink of a
//!   node that is itself a container ([`from_links`]).
//! - **sysfs** otherwise (fixture trees, a proc root of another namespace):
//!   `<sys-root>/class/net/<name>/` ([`read_sysfs_link`], [`SysfsLink::facts`]). sysfs shows the
//!   network namespace of whoever mounted it, not the reader's (a process that enters a namespace
//!   keeps the machine's `/sys`, as the demo's node agents do), which is why a live agent does
//!   not trust it. It cannot say where a veth's peer is, nor even tell a veth from a dummy (a
//!   veth's `iflink` is its peer's index, which is often its own: both ends are the second link
//!   of a fresh namespace), so such a link read there is [`InterfaceKind::Unspecified`] and the
//!   receiver decides by its name.
//!
//! Neither source is read every sample: the link dump is made again at a walk of `/proc` when the
//! pods' namespaces changed or the last one is [`crate::pods::veth::REMAP_INTERVAL`] old, and at
//! once when an interface comes or goes; sysfs is read again when an interface comes or goes, or
//! after the refresh interval (the `/proc` walk's). A NIC enslaved to an existing bond, with no
//! interface coming or going, is seen at the next of those.

use std::collections::{HashMap, HashSet};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use netlink_packet_route::link::{LinkAttribute, LinkInfo, LinkMessage};
use serde::Serialize;

use crate::net::{Interface, InterfaceNames};
use crate::roots::HostRoots;
use crate::signal::{ParseError, SignalError, SignalResult, parse_u64};

/// What an interface is, as the wire's `InterfaceKind` documents it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InterfaceKind {
    /// Not known: no source could tell (the receiver then decides by name).
    #[default]
    Unspecified,
    /// A device on a bus: Ethernet, Wi-Fi, USB.
    Physical,
    /// A bonding (or team) master: its counters are the sum of its slaves'.
    Bond,
    Bridge,
    /// Stacked on another interface: VLAN, macvlan, ipvlan.
    Stacked,
    Loopback,
    /// The node's end of a pod's veth pair.
    PodVeth,
    /// Any other veth: the uplink of a node that is itself a container.
    Veth,
    /// Encapsulating tunnels and overlays (vxlan, WireGuard, tun/tap, ipip, gre, geneve).
    Tunnel,
    /// Other virtual interfaces (dummy, ifb, vrf, ...).
    Virtual,
}

impl InterfaceKind {
    /// The name `--once` shows.
    pub fn name(self) -> &'static str {
        match self {
            Self::Unspecified => "unspecified",
            Self::Physical => "physical",
            Self::Bond => "bond",
            Self::Bridge => "bridge",
            Self::Stacked => "stacked",
            Self::Loopback => "loopback",
            Self::PodVeth => "pod veth",
            Self::Veth => "veth",
            Self::Tunnel => "tunnel",
            Self::Virtual => "virtual",
        }
    }
}

/// Where the other end of a link with a peer (a veth) is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// The link has no peer.
    None,
    /// In the network namespace of a pod on this node.
    Pod,
    /// In this namespace, or in one that is no pod's (the host's, for a node that is a
    /// container; a plain container's).
    NotAPod,
    /// Elsewhere, in a namespace the source cannot name.
    Unknown,
}

/// What the kernel says about one link, from either source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkFacts<'a> {
    /// The link type, `ARPHRD_*` (rtnetlink `ifi_type`, sysfs `type`).
    pub link_type: u16,
    /// The link kind as rtnetlink names it (`IFLA_INFO_KIND`: "veth", "bridge", "vxlan", ...);
    /// `None` for a device a hardware driver made. From sysfs: "bond" for a `bonding/`
    /// directory, "bridge" for `bridge/`, "tun" for `tun_flags`, else the uevent `DEVTYPE`.
    pub kind: Option<&'a str>,
    /// The device sits on a bus (sysfs `device`; from rtnetlink, a link without a kind).
    pub on_bus: bool,
    /// Stacked on a lower device without a kind to say so (sysfs `lower_*` of a macvlan or
    /// ipvlan, whose uevent has no `DEVTYPE`).
    pub stacked: bool,
    /// For a veth: where its peer is.
    pub peer: Peer,
}

/// `include/uapi/linux/if_arp.h`: ARPHRD_LOOPBACK = 772.
const ARPHRD_LOOPBACK: u16 = 772;
/// `include/uapi/linux/if_arp.h`: ARPHRD_TUNNEL (ipip) = 768, ARPHRD_TUNNEL6 (ip6tnl) = 769,
/// ARPHRD_SIT = 776, ARPHRD_IPGRE = 778, ARPHRD_IP6GRE = 823.
const TUNNEL_LINK_TYPES: [u16; 5] = [768, 769, 776, 778, 823];

/// The kind of one link.
pub fn classify(facts: &LinkFacts<'_>) -> InterfaceKind {
    if facts.link_type == ARPHRD_LOOPBACK {
        return InterfaceKind::Loopback;
    }
    // Before the kind: sysfs gives a Wi-Fi device (DEVTYPE "wlan") both.
    if facts.on_bus {
        return InterfaceKind::Physical;
    }
    if let Some(kind) = facts.kind {
        return of_link_kind(kind, facts.peer);
    }
    if facts.stacked {
        return InterfaceKind::Stacked;
    }
    if TUNNEL_LINK_TYPES.contains(&facts.link_type) {
        return InterfaceKind::Tunnel;
    }
    // Nothing says what it is (sysfs: a veth, or a dummy).
    InterfaceKind::Unspecified
}

/// The kind of a link of rtnetlink kind `kind` (the `kind` of the driver's `rtnl_link_ops`, as
/// `ip -d link` prints it). A kind not listed is a software device of some other sort.
fn of_link_kind(kind: &str, peer: Peer) -> InterfaceKind {
    match kind {
        "bond" | "team" => InterfaceKind::Bond,
        "bridge" => InterfaceKind::Bridge,
        "vlan" | "macvlan" | "macvtap" | "ipvlan" | "ipvtap" | "macsec" => InterfaceKind::Stacked,
        // netkit is Cilium's replacement for a pod's veth pair.
        "veth" | "netkit" => of_veth(peer),
        "vxlan" | "geneve" | "wireguard" | "tun" | "gre" | "gretap" | "ip6gre" | "ip6gretap" | "erspan"
        | "ip6erspan" | "ipip" | "ip6tnl" | "sit" | "vti" | "vti6" | "xfrm" | "bareudp" | "amt" | "gtp" => {
            InterfaceKind::Tunnel
        }
        _ => InterfaceKind::Virtual,
    }
}

fn of_veth(peer: Peer) -> InterfaceKind {
    match peer {
        Peer::Pod => InterfaceKind::PodVeth,
        Peer::None | Peer::NotAPod => InterfaceKind::Veth,
        Peer::Unknown => InterfaceKind::Unspecified,
    }
}

/// An interface's kind and the bond or bridge it is enslaved to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Classified {
    pub kind: InterfaceKind,
    /// Shared, so that setting it on every sample's interface allocates nothing.
    pub master: Option<Arc<str>>,
}

/// Classified interfaces by name.
pub type LinkKinds = HashMap<String, Classified>;

/// The node's pods' network namespaces, by the ids the node's namespace gives them
/// (`RTM_GETNSID`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodNamespaces {
    pub ids: HashSet<i32>,
    /// False when some pod's namespace could not be looked up (an agent not allowed to open its
    /// `ns/net`): a veth leading to a namespace not in `ids` may then still be a pod's.
    pub complete: bool,
}

/// Every link of an rtnetlink dump, classified. A link without a name is left out (it cannot be
/// matched with `net/dev`), and so is a master index the dump does not list.
pub fn from_links(links: &[LinkMessage], pods: &PodNamespaces) -> LinkKinds {
    let mut names: HashMap<u32, Arc<str>> = HashMap::new();
    for link in links {
        for attribute in &link.attributes {
            if let LinkAttribute::IfName(name) = attribute {
                names.insert(link.header.index, Arc::from(name.as_str()));
            }
        }
    }
    let mut kinds = LinkKinds::with_capacity(links.len());
    for link in links {
        let Some(name) = names.get(&link.header.index) else { continue };
        let mut kind = None;
        let mut master = None;
        let mut peer_namespace = None;
        for attribute in &link.attributes {
            match attribute {
                LinkAttribute::LinkInfo(infos) => {
                    kind = infos.iter().find_map(|info| match info {
                        LinkInfo::Kind(kind) => Some(kind.to_string()),
                        _ => None,
                    });
                }
                LinkAttribute::Controller(index) => master = names.get(index).cloned(),
                LinkAttribute::LinkNetNsId(id) => peer_namespace = Some(*id),
                _ => {}
            }
        }
        // A veth whose peer is in this namespace has no IFLA_LINK_NETNSID.
        let peer = match peer_namespace {
            _ if !matches!(kind.as_deref(), Some("veth" | "netkit")) => Peer::None,
            None => Peer::NotAPod,
            Some(id) if pods.ids.contains(&id) => Peer::Pod,
            Some(_) if pods.complete => Peer::NotAPod,
            Some(_) => Peer::Unknown,
        };
        let facts = LinkFacts {
            link_type: u16::from(link.header.link_layer_type),
            kind: kind.as_deref(),
            on_bus: kind.is_none(),
            stacked: false,
            peer,
        };
        kinds.insert(name.to_string(), Classified { kind: classify(&facts), master });
    }
    kinds
}

/// What `<sys-root>/class/net/<name>/` shows of one interface.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SysfsLink {
    /// `type`, ARPHRD_*.
    pub link_type: u16,
    /// `DEVTYPE` in `uevent`.
    pub devtype: Option<String>,
    /// The entries `bonding/`, `bridge/`, `tun_flags`, `device` and any `lower_*`.
    pub bonding: bool,
    pub bridge: bool,
    pub tun_flags: bool,
    pub device: bool,
    pub lower: bool,
    /// The name `master` links to.
    pub master: Option<String>,
}

impl SysfsLink {
    pub fn facts(&self) -> LinkFacts<'_> {
        let kind = if self.bonding {
            Some("bond")
        } else if self.bridge {
            Some("bridge")
        } else if self.tun_flags {
            Some("tun")
        } else {
            self.devtype.as_deref()
        };
        // sysfs names no veth's peer (see the module's comment).
        LinkFacts { link_type: self.link_type, kind, on_bus: self.device, stacked: self.lower, peer: Peer::Unknown }
    }
}

/// The `DEVTYPE` of a `uevent` file (`KEY=value` lines); `None` when it has none.
pub fn parse_uevent_devtype(text: &str) -> Result<Option<String>, ParseError> {
    let mut devtype = None;
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        let (key, value) =
            line.split_once('=').ok_or_else(|| ParseError::new(format!("a line without '=': {line:?}")))?;
        if key == "DEVTYPE" {
            devtype = Some(value.to_string());
        }
    }
    Ok(devtype)
}

/// Reads `<sys-root>/class/net/<name>/`. Absent when the directory or its `type` is; malformed
/// when `type` or `uevent` does not parse.
pub fn read_sysfs_link(roots: &HostRoots, name: &str) -> SignalResult<SysfsLink> {
    let dir = roots.sys("class/net").join(name);
    let why = "the interface is gone, or this sysfs shows another network namespace";
    let entries = std::fs::read_dir(&dir).map_err(|e| SignalError::from_io(&dir, e, why))?;
    let mut link = SysfsLink::default();
    for entry in entries {
        let entry = entry.map_err(|source| SignalError::Io { path: dir.clone(), source })?;
        match entry.file_name().to_str() {
            Some("bonding") => link.bonding = true,
            Some("bridge") => link.bridge = true,
            Some("tun_flags") => link.tun_flags = true,
            Some("device") => link.device = true,
            Some(other) if other.starts_with("lower_") => link.lower = true,
            _ => {}
        }
    }
    let type_path = dir.join("type");
    let text = crate::signal::read_to_string(&type_path, "every interface in sysfs has it")?;
    let link_type = parse_u64(&text).map_err(|e| e.at(&type_path))?;
    link.link_type =
        u16::try_from(link_type).map_err(|_| SignalError::malformed(&type_path, "a link type past 65535"))?;
    let uevent = dir.join("uevent");
    link.devtype = match std::fs::read(&uevent) {
        Ok(bytes) => parse_uevent_devtype(&String::from_utf8_lossy(&bytes)).map_err(|e| e.at(&uevent))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(source) => return Err(SignalError::Io { path: uevent, source }),
    };
    let master = dir.join("master");
    link.master = match std::fs::read_link(&master) {
        Ok(target) => target.file_name().map(|name| name.to_string_lossy().into_owned()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(source) => return Err(SignalError::Io { path: master, source }),
    };
    Ok(link)
}

/// Whether `<proc-root>` is the live procfs of the network namespace this thread is in, so
/// that its `net/dev` (a link to `self/net/dev`) lists the links an rtnetlink socket opened here
/// dumps: `<proc-root>/self/ns/net` is the same namespace as this thread's own. A fixture tree
/// has no such link, and a procfs whose `self` is in another namespace has another inode.
pub fn proc_root_is_this_namespace(roots: &HostRoots) -> bool {
    let namespace = |path: &Path| std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()));
    namespace(&roots.proc("self/ns/net"))
        .is_some_and(|theirs| namespace(HostRoots::own_network_namespace()) == Some(theirs))
}

/// Sets the kind and master of the node's interfaces every sample, from the latest link dump or
/// from a sysfs reading it keeps.
#[derive(Debug)]
pub struct InterfaceKinds {
    /// Whether the proc root is this thread's namespace, decided at the first sample.
    live: Option<bool>,
    from_sysfs: LinkKinds,
    /// The interfaces `from_sysfs` was read for, and when.
    sysfs_names: InterfaceNames,
    sysfs_read_at: Option<Instant>,
    refresh: Duration,
}

impl InterfaceKinds {
    /// Reads sysfs again after `refresh` (zero: every sample) or when an interface comes or goes.
    pub fn new(refresh: Duration) -> Self {
        Self {
            live: None,
            from_sysfs: LinkKinds::new(),
            sysfs_names: InterfaceNames::default(),
            sysfs_read_at: None,
            refresh,
        }
    }

    /// Sets `kind` and `master` of each of `interfaces` (the node's, from `<proc-root>/net/dev`):
    /// from `links`, the latest link dump's ([`crate::pods::PodTracker::link_kinds`]), when the
    /// proc root is this namespace, else from sysfs. An interface neither knows, or whose sysfs
    /// files are missing or malformed (pushed to `errors`), is left unspecified.
    pub fn apply(
        &mut self,
        roots: &HostRoots,
        interfaces: &mut [Interface],
        links: Option<&LinkKinds>,
        now: Instant,
        errors: &mut Vec<SignalError>,
    ) {
        let live = *self.live.get_or_insert_with(|| proc_root_is_this_namespace(roots));
        let kinds = if live {
            // No dump (rtnetlink failed, and the pods' reading says why): unspecified.
            links
        } else {
            self.refresh_sysfs(roots, interfaces, now, errors);
            Some(&self.from_sysfs)
        };
        for interface in interfaces {
            let classified = kinds.and_then(|kinds| kinds.get(&interface.name));
            interface.kind = classified.map_or(InterfaceKind::Unspecified, |c| c.kind);
            interface.master = classified.and_then(|c| c.master.clone());
        }
    }

    fn refresh_sysfs(
        &mut self,
        roots: &HostRoots,
        interfaces: &[Interface],
        now: Instant,
        errors: &mut Vec<SignalError>,
    ) {
        let fresh = self.sysfs_read_at.is_some_and(|at| now.saturating_duration_since(at) < self.refresh);
        if fresh && self.sysfs_names.same_as(interfaces) {
            return;
        }
        self.sysfs_names.set(interfaces);
        self.sysfs_read_at = Some(now);
        self.from_sysfs.clear();
        let class_net = roots.sys("class/net");
        if !class_net.is_dir() {
            let why = "no class/net in the sys root: is --sys-root a sysfs mount?";
            errors.push(SignalError::Absent { path: class_net, why: why.into() });
            return;
        }
        let mut masters: HashMap<String, Arc<str>> = HashMap::new();
        for interface in interfaces {
            match read_sysfs_link(roots, &interface.name) {
                Ok(link) => {
                    let master = link
                        .master
                        .as_ref()
                        .map(|name| masters.entry(name.clone()).or_insert_with(|| Arc::from(name.as_str())).clone());
                    let classified = Classified { kind: classify(&link.facts()), master };
                    self.from_sysfs.insert(interface.name.clone(), classified);
                }
                Err(error) => errors.push(error),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use netlink_packet_route::link::{InfoKind, LinkLayerType};
    use proptest::prelude::*;

    use super::*;

    const ETHER: u16 = 1;

    fn facts(link_type: u16, kind: Option<&str>, on_bus: bool, stacked: bool, peer: Peer) -> LinkFacts<'_> {
        LinkFacts { link_type, kind, on_bus, stacked, peer }
    }

    #[test]
    fn each_kind_of_link_is_classified_as_the_wire_documents() {
        use InterfaceKind::*;
        let rows: Vec<(&str, LinkFacts<'_>, InterfaceKind)> = vec![
            ("loopback", facts(772, None, false, false, Peer::None), Loopback),
            ("a NIC (rtnetlink: no kind)", facts(ETHER, None, true, false, Peer::None), Physical),
            (
                "Wi-Fi in sysfs: a device with DEVTYPE wlan",
                facts(ETHER, Some("wlan"), true, false, Peer::None),
                Physical,
            ),
            ("bond", facts(ETHER, Some("bond"), false, false, Peer::None), Bond),
            ("team", facts(ETHER, Some("team"), false, false, Peer::None), Bond),
            ("bridge", facts(ETHER, Some("bridge"), false, false, Peer::None), Bridge),
            ("vlan", facts(ETHER, Some("vlan"), false, false, Peer::None), Stacked),
            ("macvlan", facts(ETHER, Some("macvlan"), false, false, Peer::None), Stacked),
            ("ipvlan", facts(ETHER, Some("ipvlan"), false, false, Peer::None), Stacked),
            ("macvlan in sysfs: no DEVTYPE, a lower_ link", facts(ETHER, None, false, true, Peer::None), Stacked),
            ("a pod's veth", facts(ETHER, Some("veth"), false, false, Peer::Pod), PodVeth),
            ("a container node's uplink veth", facts(ETHER, Some("veth"), false, false, Peer::NotAPod), Veth),
            ("a veth with both ends here", facts(ETHER, Some("veth"), false, false, Peer::None), Veth),
            (
                "a veth to a namespace not looked up",
                facts(ETHER, Some("veth"), false, false, Peer::Unknown),
                Unspecified,
            ),
            ("a veth in sysfs", facts(ETHER, None, false, false, Peer::Unknown), Unspecified),
            (
                "a dummy in sysfs, which it cannot tell from a veth",
                facts(ETHER, None, false, false, Peer::Unknown),
                Unspecified,
            ),
            ("Cilium's netkit to a pod", facts(ETHER, Some("netkit"), false, false, Peer::Pod), PodVeth),
            ("flannel's vxlan", facts(ETHER, Some("vxlan"), false, false, Peer::None), Tunnel),
            ("WireGuard", facts(65534, Some("wireguard"), false, false, Peer::None), Tunnel),
            ("tap", facts(ETHER, Some("tun"), false, false, Peer::None), Tunnel),
            ("geneve", facts(ETHER, Some("geneve"), false, false, Peer::None), Tunnel),
            ("gre", facts(778, Some("gre"), false, false, Peer::None), Tunnel),
            ("ipip in sysfs: no DEVTYPE, type 768", facts(768, None, false, false, Peer::None), Tunnel),
            ("sit in sysfs", facts(776, None, false, false, Peer::None), Tunnel),
            ("dummy", facts(ETHER, Some("dummy"), false, false, Peer::None), Virtual),
            ("a kind not known here", facts(ETHER, Some("nlmon"), false, false, Peer::None), Virtual),
        ];
        for (what, facts, expected) in rows {
            assert_eq!(classify(&facts), expected, "{what}");
        }
    }

    fn link(index: u32, name: &str, link_type: LinkLayerType, kind: Option<InfoKind>) -> LinkMessage {
        let mut link = LinkMessage::default();
        link.header.index = index;
        link.header.link_layer_type = link_type;
        link.attributes.push(LinkAttribute::IfName(name.into()));
        if let Some(kind) = kind {
            link.attributes.push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(kind)]));
        }
        link
    }

    fn with(mut link: LinkMessage, attribute: LinkAttribute) -> LinkMessage {
        link.attributes.push(attribute);
        link
    }

    /// A Pi 5 K3s node with its NICs in a bond: what `ip -d link` would show there.
    fn node_links() -> Vec<LinkMessage> {
        use LinkLayerType::{Ether, Loopback};
        vec![
            link(1, "lo", Loopback, None),
            with(link(2, "eth0", Ether, None), LinkAttribute::Controller(4)),
            with(link(3, "wlan0", Ether, None), LinkAttribute::Controller(4)),
            link(4, "bond0", Ether, Some(InfoKind::Bond)),
            link(5, "flannel.1", Ether, Some(InfoKind::Vxlan)),
            link(6, "cni0", Ether, Some(InfoKind::Bridge)),
            with(
                with(link(7, "veth3a1f9c2e", Ether, Some(InfoKind::Veth)), LinkAttribute::Controller(6)),
                LinkAttribute::LinkNetNsId(0),
            ),
            with(link(8, "vethb71e04d5", Ether, Some(InfoKind::Veth)), LinkAttribute::LinkNetNsId(1)),
            // A veth to a container that is no pod, and a pair with both ends here.
            with(link(9, "veth-docker", Ether, Some(InfoKind::Veth)), LinkAttribute::LinkNetNsId(5)),
            link(10, "vpair0", Ether, Some(InfoKind::Veth)),
            link(11, "bond0.20", Ether, Some(InfoKind::Vlan)),
            link(12, "wg0", LinkLayerType::None, Some(InfoKind::Wireguard)),
            link(13, "dummy0", Ether, Some(InfoKind::Dummy)),
        ]
    }

    fn kinds_of(kinds: &LinkKinds) -> Vec<(&str, InterfaceKind, Option<&str>)> {
        let mut rows: Vec<_> = kinds.iter().map(|(name, c)| (name.as_str(), c.kind, c.master.as_deref())).collect();
        rows.sort_unstable_by_key(|(name, ..)| *name);
        rows
    }

    #[test]
    fn a_link_dump_gives_each_link_its_kind_and_master() {
        use InterfaceKind::*;
        let pods = PodNamespaces { ids: HashSet::from([0, 1]), complete: true };
        let kinds = from_links(&node_links(), &pods);
        assert_eq!(
            kinds_of(&kinds),
            [
                ("bond0", Bond, None),
                ("bond0.20", Stacked, None),
                ("cni0", Bridge, None),
                ("dummy0", Virtual, None),
                ("eth0", Physical, Some("bond0")),
                ("flannel.1", Tunnel, None),
                ("lo", Loopback, None),
                ("veth-docker", Veth, None),
                ("veth3a1f9c2e", PodVeth, Some("cni0")),
                ("vethb71e04d5", PodVeth, None),
                ("vpair0", Veth, None),
                ("wg0", Tunnel, None),
                ("wlan0", Physical, Some("bond0")),
            ]
        );
    }

    #[test]
    fn a_veth_to_a_namespace_not_looked_up_is_unspecified_when_some_pod_was_not() {
        let pods = PodNamespaces { ids: HashSet::from([0]), complete: false };
        let kinds = from_links(&node_links(), &pods);
        assert_eq!(kinds["veth3a1f9c2e"].kind, InterfaceKind::PodVeth);
        assert_eq!(kinds["vethb71e04d5"].kind, InterfaceKind::Unspecified, "maybe the pod not looked up");
        assert_eq!(kinds["veth-docker"].kind, InterfaceKind::Unspecified);
        assert_eq!(kinds["vpair0"].kind, InterfaceKind::Veth, "both ends here: no pod's");
    }

    #[test]
    fn a_link_without_a_name_or_with_a_master_not_dumped_loses_only_that() {
        let mut nameless = LinkMessage::default();
        nameless.header.index = 20;
        let links = [
            nameless,
            with(link(2, "eth0", LinkLayerType::Ether, None), LinkAttribute::Controller(99)),
            link(1, "lo", LinkLayerType::Loopback, None),
        ];
        let kinds = from_links(&links, &PodNamespaces::default());
        assert_eq!(kinds_of(&kinds), [("eth0", InterfaceKind::Physical, None), ("lo", InterfaceKind::Loopback, None)]);
    }

    fn sysfs(link_type: u16, devtype: Option<&str>) -> SysfsLink {
        SysfsLink { link_type, devtype: devtype.map(str::to_string), ..SysfsLink::default() }
    }

    #[test]
    fn sysfs_entries_give_the_same_kinds_as_rtnetlink_where_they_can() {
        use InterfaceKind::*;
        let rows: Vec<(&str, SysfsLink, InterfaceKind)> = vec![
            ("lo", sysfs(772, None), Loopback),
            ("a NIC", SysfsLink { device: true, ..sysfs(1, None) }, Physical),
            ("Wi-Fi", SysfsLink { device: true, ..sysfs(1, Some("wlan")) }, Physical),
            ("bond", SysfsLink { bonding: true, lower: true, ..sysfs(1, Some("bond")) }, Bond),
            ("bridge", SysfsLink { bridge: true, lower: true, ..sysfs(1, Some("bridge")) }, Bridge),
            ("vlan", SysfsLink { lower: true, ..sysfs(1, Some("vlan")) }, Stacked),
            ("macvlan: no DEVTYPE", SysfsLink { lower: true, ..sysfs(1, None) }, Stacked),
            ("vxlan", sysfs(1, Some("vxlan")), Tunnel),
            ("wireguard", sysfs(65534, Some("wireguard")), Tunnel),
            ("tap", SysfsLink { tun_flags: true, ..sysfs(1, None) }, Tunnel),
            ("ipip", sysfs(768, None), Tunnel),
            ("a veth, whose peer sysfs does not place", sysfs(1, None), Unspecified),
            ("a veth enslaved to a bridge", SysfsLink { master: Some("cni0".into()), ..sysfs(1, None) }, Unspecified),
        ];
        for (what, link, expected) in rows {
            assert_eq!(classify(&link.facts()), expected, "{what}");
        }
    }

    #[test]
    fn uevent_files_give_their_devtype_and_a_line_without_equals_is_malformed() {
        assert_eq!(parse_uevent_devtype("INTERFACE=eth0\nIFINDEX=2\n"), Ok(None));
        assert_eq!(parse_uevent_devtype("DEVTYPE=vxlan\nINTERFACE=flannel.1\nIFINDEX=5\n"), Ok(Some("vxlan".into())));
        assert_eq!(parse_uevent_devtype(""), Ok(None));
        assert!(parse_uevent_devtype("DEVTYPE vlan\n").unwrap_err().0.contains("without '='"));
    }

    fn fixture(tree: &str) -> HostRoots {
        let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(tree);
        HostRoots::new(base.join("proc"), base.join("sys"))
    }

    fn interfaces(names: &[&str]) -> Vec<Interface> {
        names.iter().map(|name| Interface { name: name.to_string(), ..Interface::default() }).collect()
    }

    fn kinds_in(interfaces: &[Interface]) -> Vec<(&str, InterfaceKind, Option<&str>)> {
        interfaces.iter().map(|i| (i.name.as_str(), i.kind, i.master.as_deref())).collect()
    }

    #[test]
    fn a_fixture_tree_is_read_from_sysfs() {
        use InterfaceKind::*;
        let roots = fixture("pi5");
        assert!(!proc_root_is_this_namespace(&roots));
        let mut pi5 =
            interfaces(&["lo", "eth0", "wlan0", "flannel.1", "cni0", "veth3a1f9c2e", "vethb71e04d5", "veth0c9d2a61"]);
        let mut errors = Vec::new();
        // A link dump (of this machine) is not used for another tree.
        let machine = LinkKinds::from([("eth0".to_string(), Classified { kind: Bond, master: None })]);
        InterfaceKinds::new(Duration::ZERO).apply(&roots, &mut pi5, Some(&machine), Instant::now(), &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            kinds_in(&pi5),
            [
                ("lo", Loopback, None),
                ("eth0", Physical, None),
                ("wlan0", Physical, None),
                ("flannel.1", Tunnel, None),
                ("cni0", Bridge, None),
                ("veth3a1f9c2e", Unspecified, Some("cni0")),
                ("vethb71e04d5", Unspecified, Some("cni0")),
                ("veth0c9d2a61", Unspecified, Some("cni0")),
            ]
        );

        // A container node: its uplink is a veth too, which sysfs cannot tell from a pod's.
        let mut kind = interfaces(&["lo", "eth0", "veth3c9e51d2"]);
        InterfaceKinds::new(Duration::ZERO).apply(&fixture("kind-v1"), &mut kind, None, Instant::now(), &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            kinds_in(&kind),
            [("lo", Loopback, None), ("eth0", Unspecified, None), ("veth3c9e51d2", Unspecified, None)]
        );
    }

    /// Copies `<fixture>/sys/class/net` of pi5 into a temporary sys root.
    fn pi5_sys_copy() -> tempfile::TempDir {
        let copy = tempfile::tempdir().expect("temp dir");
        let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pi5/sys/class/net");
        for interface in std::fs::read_dir(&from).expect("pi5 class/net") {
            let interface = interface.expect("an entry");
            let target = copy.path().join("class/net").join(interface.file_name());
            std::fs::create_dir_all(&target).expect("interface dir");
            for file in std::fs::read_dir(interface.path()).expect("interface files") {
                let file = file.expect("a file");
                let to = target.join(file.file_name());
                if file.file_type().expect("type").is_symlink() {
                    std::os::unix::fs::symlink(std::fs::read_link(file.path()).expect("link"), &to).expect("symlink");
                } else if file.file_type().expect("type").is_file() {
                    std::fs::copy(file.path(), &to).expect("copy");
                }
            }
        }
        copy
    }

    #[test]
    fn a_malformed_or_missing_sysfs_file_leaves_only_that_interface_unspecified() {
        let sys = pi5_sys_copy();
        let roots = HostRoots::new("/nonexistent/bakery/proc", sys.path());
        std::fs::write(sys.path().join("class/net/eth0/type"), "ether\n").expect("write");
        std::fs::write(sys.path().join("class/net/cni0/uevent"), "DEVTYPE bridge\n").expect("write");
        std::fs::remove_file(sys.path().join("class/net/wlan0/type")).expect("remove");
        let mut names = interfaces(&["lo", "eth0", "wlan0", "cni0", "flannel.1", "gone0"]);
        let mut errors = Vec::new();
        InterfaceKinds::new(Duration::ZERO).apply(&roots, &mut names, None, Instant::now(), &mut errors);
        use InterfaceKind::*;
        assert_eq!(
            kinds_in(&names),
            [
                ("lo", Loopback, None),
                ("eth0", Unspecified, None),
                ("wlan0", Unspecified, None),
                ("cni0", Unspecified, None),
                ("flannel.1", Tunnel, None),
                ("gone0", Unspecified, None),
            ]
        );
        let reasons: Vec<(bool, String)> = errors.iter().map(|e| (e.is_malformed(), e.to_string())).collect();
        assert_eq!(reasons.len(), 4, "{reasons:?}");
        let reported = |malformed: bool, text: &str| reasons.iter().any(|(m, r)| *m == malformed && r.contains(text));
        assert!(reported(true, "eth0/type is malformed: expected an unsigned integer"), "{reasons:?}");
        assert!(reported(false, "wlan0/type is absent"), "{reasons:?}");
        assert!(reported(true, "cni0/uevent is malformed: a line without '='"), "{reasons:?}");
        assert!(reported(false, "gone0 is absent: the interface is gone"), "{reasons:?}");
    }

    #[test]
    fn sysfs_is_read_again_when_an_interface_comes_or_after_the_refresh() {
        let sys = pi5_sys_copy();
        let roots = HostRoots::new("/nonexistent/bakery/proc", sys.path());
        let refresh = Duration::from_secs(2);
        let mut kinds = InterfaceKinds::new(refresh);
        let start = Instant::now();
        let mut errors = Vec::new();
        let mut kind_of_first = |names: &[&str], at: Duration| {
            let mut names = interfaces(names);
            kinds.apply(&roots, &mut names, None, start + at, &mut errors);
            names[0].kind
        };
        let uevent = sys.path().join("class/net/flannel.1/uevent");
        assert_eq!(kind_of_first(&["flannel.1", "lo"], Duration::ZERO), InterfaceKind::Tunnel);
        // flannel.1 is now said to be a VLAN: not read again before the refresh...
        std::fs::write(&uevent, "DEVTYPE=vlan\n").expect("write");
        assert_eq!(kind_of_first(&["flannel.1", "lo"], Duration::from_secs(1)), InterfaceKind::Tunnel);
        // ...unless an interface came (or went).
        assert_eq!(kind_of_first(&["flannel.1", "lo", "eth0"], Duration::from_secs(1)), InterfaceKind::Stacked);
        std::fs::write(&uevent, "DEVTYPE=vxlan\n").expect("write");
        assert_eq!(kind_of_first(&["flannel.1", "lo", "eth0"], Duration::from_millis(2999)), InterfaceKind::Stacked);
        assert_eq!(kind_of_first(&["flannel.1", "lo", "eth0"], Duration::from_secs(3)), InterfaceKind::Tunnel);
        assert!(errors.is_empty(), "{errors:?}");
    }

    #[test]
    fn a_missing_class_net_is_one_absent_error() {
        let mut names = interfaces(&["lo", "eth0"]);
        let mut errors = Vec::new();
        InterfaceKinds::new(Duration::ZERO).apply(&fixture("bare"), &mut names, None, Instant::now(), &mut errors);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(matches!(errors[0], SignalError::Absent { .. }));
        assert!(names.iter().all(|i| i.kind == InterfaceKind::Unspecified));
    }

    #[test]
    fn this_machines_proc_is_this_namespace_and_a_tree_linking_to_it_too() {
        assert!(proc_root_is_this_namespace(&HostRoots::host()));
        let tree = tempfile::tempdir().expect("temp dir");
        assert!(!proc_root_is_this_namespace(&HostRoots::new(tree.path(), tree.path())));
        std::os::unix::fs::symlink("/proc/self", tree.path().join("self")).expect("symlink");
        assert!(proc_root_is_this_namespace(&HostRoots::new(tree.path(), tree.path())));
    }

    #[test]
    fn a_live_proc_root_takes_the_link_dumps_kinds_and_without_one_leaves_them_unspecified() {
        let dump = from_links(&node_links(), &PodNamespaces { ids: HashSet::from([0, 1]), complete: true });
        let mut names = interfaces(&["eth0", "veth3a1f9c2e", "not-dumped"]);
        let mut kinds = InterfaceKinds::new(Duration::ZERO);
        let mut errors = Vec::new();
        kinds.apply(&HostRoots::host(), &mut names, Some(&dump), Instant::now(), &mut errors);
        use InterfaceKind::*;
        assert_eq!(
            kinds_in(&names),
            [
                ("eth0", Physical, Some("bond0")),
                ("veth3a1f9c2e", PodVeth, Some("cni0")),
                ("not-dumped", Unspecified, None)
            ]
        );
        kinds.apply(&HostRoots::host(), &mut names, None, Instant::now(), &mut errors);
        assert!(names.iter().all(|i| i.kind == Unspecified && i.master.is_none()));
        assert!(errors.is_empty(), "sysfs is not read for a live proc root: {errors:?}");
    }

    proptest! {
        #[test]
        fn arbitrary_uevent_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_uevent_devtype(&String::from_utf8_lossy(&bytes));
        }

        #[test]
        fn every_fact_gives_one_kind_and_loopback_wins(
            link_type in any::<u16>(),
            kind in proptest::option::of("[a-z0-9]{0,12}"),
            on_bus in any::<bool>(),
            stacked in any::<bool>(),
            peer in prop_oneof![Just(Peer::None), Just(Peer::Pod), Just(Peer::NotAPod), Just(Peer::Unknown)],
        ) {
            let facts = LinkFacts { link_type, kind: kind.as_deref(), on_bus, stacked, peer };
            let classified = classify(&facts);
            prop_assert_eq!(classified == InterfaceKind::Loopback, link_type == ARPHRD_LOOPBACK);
            if link_type != ARPHRD_LOOPBACK && on_bus {
                prop_assert_eq!(classified, InterfaceKind::Physical);
            }
        }
    }
}
