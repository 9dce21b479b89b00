//! What each of the node's interfaces is (a NIC, a bond, a bridge, a pod's veth, ...).
//!
//! So that a receiver can count the node's own wire once.
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
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use netlink_packet_route::link::{LinkAttribute, LinkInfo, LinkMessage};
use serde::Serialize;

use crate::dir_entries;
use crate::kept_files::read_whole;
use crate::net::{Interface, InterfaceNames};
use crate::reuse::{PathBuffer, set_option_str};
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

/// Classified interfaces by name (looked up for every interface every sample).
pub type LinkKinds = foldhash::HashMap<String, Classified>;

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
    let mut kinds = LinkKinds::with_capacity_and_hasher(links.len(), Default::default());
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
    uevent_devtype(text).map(|devtype| devtype.map(str::to_string))
}

/// [`parse_uevent_devtype`], lent from `text`.
fn uevent_devtype(text: &str) -> Result<Option<&str>, ParseError> {
    let mut devtype = None;
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        let (key, value) =
            line.split_once('=').ok_or_else(|| ParseError::new(format!("a line without '=': {line:?}")))?;
        if key == "DEVTYPE" {
            devtype = Some(value);
        }
    }
    Ok(devtype)
}

/// Reads `<sys-root>/class/net/<name>/`. Absent when the directory or its `type` is; malformed
/// when `type` or `uevent` does not parse.
pub fn read_sysfs_link(roots: &HostRoots, name: &str) -> SignalResult<SysfsLink> {
    let mut link = SysfsLink::default();
    SysfsScratch::default().read(&roots.sys, name, &mut link)?;
    Ok(link)
}

/// The buffers [`read_sysfs_link`] reads into, kept between interfaces and refreshes.
#[derive(Debug, Default)]
struct SysfsScratch {
    path: PathBuffer,
    entries: Vec<u8>,
    buffer: Vec<u8>,
}

impl SysfsScratch {
    /// Reads `<sys>/class/net/<name>/` into `link`, overwriting it in place (its strings kept).
    fn read(&mut self, sys: &Path, name: &str, link: &mut SysfsLink) -> SignalResult<()> {
        let dir = || sys.join("class/net").join(name);
        let why = "the interface is gone, or this sysfs shows another network namespace";
        let (mut bonding, mut bridge, mut tun_flags, mut device, mut lower) = (false, false, false, false, false);
        let listed =
            dir_entries::for_each_name(self.path.build(sys, &["class/net", name]), &mut self.entries, |entry| {
                match entry {
                    b"bonding" => bonding = true,
                    b"bridge" => bridge = true,
                    b"tun_flags" => tun_flags = true,
                    b"device" => device = true,
                    other if other.starts_with(b"lower_") => lower = true,
                    _ => {}
                }
            });
        listed.map_err(|e| SignalError::from_io(dir(), e, why))?;
        (link.bonding, link.bridge, link.tun_flags, link.device, link.lower) =
            (bonding, bridge, tun_flags, device, lower);
        let type_path = || dir().join("type");
        self.read_file(sys, &["class/net", name, "type"])
            .map_err(|e| SignalError::from_io(type_path(), e, "every interface in sysfs has it"))?;
        let link_type = parse_u64(&String::from_utf8_lossy(&self.buffer)).map_err(|e| e.at(&type_path()))?;
        link.link_type =
            u16::try_from(link_type).map_err(|_| SignalError::malformed(type_path(), "a link type past 65535"))?;
        let uevent = match self.read_file(sys, &["class/net", name, "uevent"]) {
            Ok(()) => Some(String::from_utf8_lossy(&self.buffer)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(source) => return Err(SignalError::Io { path: dir().join("uevent"), source }),
        };
        let devtype = uevent.as_deref().map(uevent_devtype).transpose().map_err(|e| e.at(&dir().join("uevent")))?;
        set_option_str(&mut link.devtype, devtype.flatten());
        let mut target = [0u8; 256];
        let master_link = self.path.build(sys, &["class/net", name, "master"]);
        let master = match rustix::fs::readlinkat_raw(rustix::fs::CWD, master_link, &mut target[..]) {
            Ok(length) => Path::new(std::ffi::OsStr::from_bytes(target.get(..length).unwrap_or_default())).file_name(),
            Err(e) if e == rustix::io::Errno::NOENT => None,
            Err(e) => return Err(SignalError::Io { path: dir().join("master"), source: e.into() }),
        };
        set_option_str(&mut link.master, master.map(|name| name.to_string_lossy()).as_deref());
        Ok(())
    }

    /// The whole file `<sys>/<parts>` into `self.buffer`.
    fn read_file(&mut self, sys: &Path, parts: &[&str]) -> io::Result<()> {
        let file = File::open(self.path.build(sys, parts))?;
        read_whole(&file, &mut self.buffer).map(|_| ())
    }
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
    /// Each interface's sysfs entries as last read, and in which refresh.
    links: foldhash::HashMap<String, (SysfsLink, u64)>,
    /// Bond and bridge names, shared by the interfaces enslaved to them.
    masters: foldhash::HashMap<String, Arc<str>>,
    refreshes: u64,
    scratch: SysfsScratch,
}

impl InterfaceKinds {
    /// Reads sysfs again after `refresh` (zero: every sample) or when an interface comes or goes.
    pub fn new(refresh: Duration) -> Self {
        Self {
            live: None,
            from_sysfs: LinkKinds::default(),
            sysfs_names: InterfaceNames::default(),
            sysfs_read_at: None,
            refresh,
            links: foldhash::HashMap::default(),
            masters: foldhash::HashMap::default(),
            refreshes: 0,
            scratch: SysfsScratch::default(),
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

    /// Reads every interface's sysfs entries again when they are `refresh` old or an interface
    /// came or went, updating what it knows in place: the same interfaces as last time cost no
    /// allocation.
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
        self.refreshes += 1;
        let refresh = self.refreshes;
        if !self.scratch.path.build(&roots.sys, &["class/net"]).is_dir() {
            let why = "no class/net in the sys root: is --sys-root a sysfs mount?";
            errors.push(SignalError::Absent { path: roots.sys("class/net"), why: why.into() });
            self.from_sysfs.clear();
            return;
        }
        for interface in interfaces {
            let name = interface.name.as_str();
            if !self.links.contains_key(name) {
                // Marked as read in no refresh until it is read.
                self.links.insert(name.to_string(), (SysfsLink::default(), 0));
            }
            let Some((link, read_in)) = self.links.get_mut(name) else { continue };
            if let Err(error) = self.scratch.read(&roots.sys, name, link) {
                errors.push(error);
                continue;
            }
            *read_in = refresh;
            let master = link.master.as_deref().map(|master| match self.masters.get(master) {
                Some(shared) => Arc::clone(shared),
                None => Arc::clone(self.masters.entry(master.to_string()).or_insert_with(|| Arc::from(master))),
            });
            let classified = Classified { kind: classify(&link.facts()), master };
            match self.from_sysfs.get_mut(name) {
                Some(known) => *known = classified,
                None => {
                    self.from_sysfs.insert(name.to_string(), classified);
                }
            }
        }
        // An interface gone, or whose entries could not be read this time, is no longer known.
        self.links.retain(|_, (_, read_in)| *read_in == refresh);
        let links = &self.links;
        self.from_sysfs.retain(|name, _| links.contains_key(name));
        if self.masters.len() > MAX_MASTERS {
            self.masters.clear();
        }
    }
}

/// Past this many bond and bridge names the shared names are made afresh: they are few on a
/// node, but must not grow for months with churn.
const MAX_MASTERS: usize = 256;

#[cfg(test)]
mod tests;
