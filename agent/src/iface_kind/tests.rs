//! Interface kinds from each source: classify, a link dump, sysfs, and the per-sample choice between them.

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
        ("Wi-Fi in sysfs: a device with DEVTYPE wlan", facts(ETHER, Some("wlan"), true, false, Peer::None), Physical),
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
        ("a veth to a namespace not looked up", facts(ETHER, Some("veth"), false, false, Peer::Unknown), Unspecified),
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
    let machine: LinkKinds = [("eth0".to_string(), Classified { kind: Bond, master: None })].into_iter().collect();
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
        [("eth0", Physical, Some("bond0")), ("veth3a1f9c2e", PodVeth, Some("cni0")), ("not-dumped", Unspecified, None)]
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
