//! Network interface counters from `/proc/net/dev`, for the node and for a pod's namespace.
//!
//! A pod's network namespace is read through `/proc/<pid>/net/dev`.
//!
//! Hand-written rather than `procfs_core::net::InterfaceDeviceStatus`: that
//! parser splits on whitespace only, so an interface name glued to its first
//! counter (`eth0:4294967296 ...`, as older kernels printed with
//! `"%6s:%8lu"`) is an error there, and it returns a `HashMap` that loses the
//! kernel's interface order.

use std::borrow::Cow;
use std::io::BufRead;
use std::sync::Arc;

use serde::{Serialize, Serializer};

use crate::iface_kind::InterfaceKind;
use crate::node_files::NodeFiles;
use crate::reuse::{Refill, set_str};
use crate::roots::HostRoots;
use crate::signal::{Lines, ParseError, SignalError, SignalResult};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct NetCounters {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

impl NetCounters {
    /// The sum of two sets of counters, wrapping like the kernel's own counters.
    pub fn wrapping_add(&self, other: &NetCounters) -> NetCounters {
        NetCounters {
            rx_bytes: self.rx_bytes.wrapping_add(other.rx_bytes),
            rx_packets: self.rx_packets.wrapping_add(other.rx_packets),
            rx_errors: self.rx_errors.wrapping_add(other.rx_errors),
            rx_dropped: self.rx_dropped.wrapping_add(other.rx_dropped),
            tx_bytes: self.tx_bytes.wrapping_add(other.tx_bytes),
            tx_packets: self.tx_packets.wrapping_add(other.tx_packets),
            tx_errors: self.tx_errors.wrapping_add(other.tx_errors),
            tx_dropped: self.tx_dropped.wrapping_add(other.tx_dropped),
        }
    }

    /// The counters with receive and transmit swapped: what the other end of
    /// a point-to-point link (a veth's peer) counts.
    pub fn as_seen_from_the_peer(&self) -> NetCounters {
        NetCounters {
            rx_bytes: self.tx_bytes,
            rx_packets: self.tx_packets,
            rx_errors: self.tx_errors,
            rx_dropped: self.tx_dropped,
            tx_bytes: self.rx_bytes,
            tx_packets: self.rx_packets,
            tx_errors: self.rx_errors,
            tx_dropped: self.rx_dropped,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Interface {
    pub name: String,
    /// What the interface is; set for the node's interfaces by
    /// [`crate::iface_kind::InterfaceKinds`], unspecified for a pod's.
    pub kind: InterfaceKind,
    /// The bond or bridge it is enslaved to.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "shared_name")]
    pub master: Option<Arc<str>>,
    pub counters: NetCounters,
}

fn shared_name<S: Serializer>(name: &Option<Arc<str>>, serializer: S) -> Result<S::Ok, S::Error> {
    match name {
        Some(name) => serializer.serialize_str(name),
        None => serializer.serialize_none(),
    }
}

/// The names a set of interfaces had, to notice one come or go without
/// allocating every sample.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterfaceNames {
    /// Sorted.
    names: Vec<String>,
}

impl InterfaceNames {
    /// Whether `interfaces` have exactly these names, in any order
    /// (`net/dev` lists each name once).
    pub fn same_as(&self, interfaces: &[Interface]) -> bool {
        interfaces.len() == self.names.len()
            && interfaces.iter().all(|interface| self.names.binary_search(&interface.name).is_ok())
    }

    /// Remembers the names of `interfaces`, overwriting the ones held in
    /// place.
    pub fn set(&mut self, interfaces: &[Interface]) {
        {
            let mut names = Refill::new(&mut self.names);
            for interface in interfaces {
                set_str(names.next_slot(), &interface.name);
            }
        }
        self.names.sort_unstable();
    }
}

/// Counters per interface line: 8 receive (bytes packets errs drop fifo
/// frame compressed multicast) then 8 transmit (bytes packets errs drop fifo
/// colls carrier compressed); net/core/net-procfs.c `dev_seq_printf_stats`.
const COLUMNS: usize = 16;

/// Lines before the first interface: "Inter-|   Receive ..." and " face |bytes ...".
const HEADER_LINES: usize = 2;

/// Parses a `net/dev` file, every interface including `lo`, in the
/// kernel's order.
pub fn parse_net_dev(reader: impl BufRead) -> Result<Vec<Interface>, ParseError> {
    let mut interfaces = Vec::new();
    parse_net_dev_into(reader, &mut interfaces)?;
    Ok(interfaces)
}

/// [`parse_net_dev`] into `interfaces`, overwriting them in place so that
/// the same interfaces as last time cost no allocation; kinds and masters
/// are reset to unknown.
pub fn parse_net_dev_into(reader: impl BufRead, interfaces: &mut Vec<Interface>) -> Result<(), ParseError> {
    let mut interfaces = Refill::new(interfaces);
    let mut lines = Lines::new(reader, 160);
    while let Some((line_number, line)) = lines.next_line()? {
        if line_number <= HEADER_LINES {
            // Checked loosely (both header lines contain '|') so that a file
            // that is not net/dev fails instead of losing two interfaces.
            if !line.contains(&b'|') {
                return Err(ParseError::new(format!("line {line_number}: expected a header line with '|'")));
            }
            continue;
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let (name, counters) =
            parse_interface_line(line).map_err(|e| ParseError::new(format!("line {line_number}: {}", e.0)))?;
        let slot = interfaces.next_slot();
        set_str(&mut slot.name, &name);
        slot.kind = InterfaceKind::Unspecified;
        slot.master = None;
        slot.counters = counters;
    }
    if lines.count() < HEADER_LINES {
        return Err(ParseError::new("the two header lines are missing"));
    }
    Ok(())
}

/// `"  eth0: 82571357 3996 0 ..."`, or with the name glued to the first
/// counter. Splitting at the first ':' is safe because the kernel refuses
/// ':' in interface names (net/core/dev.c `dev_valid_name`). It does allow
/// bytes that are not UTF-8, so the name is decoded lossily rather than
/// failing every interface.
fn parse_interface_line(line: &[u8]) -> Result<(Cow<'_, str>, NetCounters), ParseError> {
    let colon = line.iter().position(|&b| b == b':').ok_or_else(|| {
        ParseError::new(format!("no ':' after the interface name in {:?}", String::from_utf8_lossy(line)))
    })?;
    let (name, counters) = line.split_at(colon);
    let name = String::from_utf8_lossy(name.trim_ascii_start());
    if name.is_empty() || name.contains(|c: char| c.is_whitespace()) {
        return Err(ParseError::new(format!("bad interface name {name:?}")));
    }
    let counters = std::str::from_utf8(&counters[1..])
        .map_err(|_| ParseError::new(format!("{name}: counters that are not UTF-8")))?;
    let mut columns = [0u64; COLUMNS];
    let mut count = 0usize;
    for field in counters.split_ascii_whitespace() {
        let value = field
            .parse()
            .map_err(|_| ParseError::new(format!("{name}: counter {} is not a number: {field:?}", count + 1)))?;
        // Columns a future kernel might append are checked but not kept.
        if let Some(slot) = columns.get_mut(count) {
            *slot = value;
        }
        count += 1;
    }
    if count < COLUMNS {
        return Err(ParseError::new(format!("{name}: {count} counters, {COLUMNS} expected")));
    }
    let [rx_bytes, rx_packets, rx_errors, rx_dropped, _, _, _, _, tx_bytes, tx_packets, tx_errors, tx_dropped, ..] =
        columns;
    let counters =
        NetCounters { rx_bytes, rx_packets, rx_errors, rx_dropped, tx_bytes, tx_packets, tx_errors, tx_dropped };
    Ok((name, counters))
}

/// Reads the node's interfaces from `<proc-root>/net/dev` (the agent's own
/// network namespace, which is the host's under hostNetwork).
pub fn read(roots: &HostRoots, files: &mut NodeFiles) -> SignalResult<Vec<Interface>> {
    let mut interfaces = Vec::new();
    read_into(roots, files, &mut interfaces)?;
    Ok(interfaces)
}

/// [`read`] into `interfaces`, overwriting them in place.
pub fn read_into(roots: &HostRoots, files: &mut NodeFiles, interfaces: &mut Vec<Interface>) -> SignalResult<()> {
    let path = || roots.proc("net/dev");
    let bytes = files
        .read_at(&roots.proc, &["net/dev"])
        .map_err(|e| SignalError::from_io(path(), e, "no net/dev file: is --proc-root a procfs mount?"))?;
    parse_net_dev_into(bytes, interfaces).map_err(|e| e.at(&path()))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::cpu::mutation::mutated;

    const HEADER: &str = "\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
";

    /// Raspberry Pi 5 K3s node, kernel 6.6: names longer than six columns
    /// push the counters right, and big counters fill their columns.
    const PI5_KERNEL_6_6: &str = "\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: 912334871 2210331    0    0    0     0          0         0 912334871 2210331    0    0    0     0       0          0
  eth0: 48211987433 61233419    0  112    0     0          0    331201 97664120937 70120334    0    0    0     0       0          0
flannel.1: 10233411876 9877123    0    0    0     0          0         0 31877602114 14330871    0   21    0     0       0          0
veth3a1f9c2e: 9123987123 11233870    0    0    0     0          0         0 20112334876 12998112    0    0    0     0       0          0
";

    fn counters(rx: [u64; 4], tx: [u64; 4]) -> NetCounters {
        let [rx_bytes, rx_packets, rx_errors, rx_dropped] = rx;
        let [tx_bytes, tx_packets, tx_errors, tx_dropped] = tx;
        NetCounters { rx_bytes, rx_packets, rx_errors, rx_dropped, tx_bytes, tx_packets, tx_errors, tx_dropped }
    }

    fn interface(name: &str, rx: [u64; 4], tx: [u64; 4]) -> Interface {
        Interface { name: name.to_string(), counters: counters(rx, tx), ..Interface::default() }
    }

    #[test]
    fn parses_real_and_old_kernel_outputs() {
        let old_kernel = format!(
            "{HEADER}    lo:    3193      29    0    0    0     0          0         0     3193      29    0    0    0     0       0          0\n  eth0:4294967296 3996    1    2    0     0          0         0 323623    2608    3    4    0     0       0          0\n"
        );
        let cases: Vec<(&str, String, Vec<Interface>)> = vec![
            (
                "Raspberry Pi 5, kernel 6.6, with long names",
                PI5_KERNEL_6_6.to_string(),
                vec![
                    interface("lo", [912334871, 2210331, 0, 0], [912334871, 2210331, 0, 0]),
                    interface("eth0", [48211987433, 61233419, 0, 112], [97664120937, 70120334, 0, 0]),
                    interface("flannel.1", [10233411876, 9877123, 0, 0], [31877602114, 14330871, 0, 21]),
                    interface("veth3a1f9c2e", [9123987123, 11233870, 0, 0], [20112334876, 12998112, 0, 0]),
                ],
            ),
            (
                "x86_64 kernel 6.18: fifo, frame, colls and carrier are not mistaken for errors or drops",
                format!(
                    "{HEADER}  eth0: 82571357    3996    7    8    9    10    11    12   323623    2608   13   14   15    16      17         18\n"
                ),
                vec![interface("eth0", [82571357, 3996, 7, 8], [323623, 2608, 13, 14])],
            ),
            (
                "an old kernel's \"%6s:%8lu\": the name glued to a large first counter",
                old_kernel,
                vec![
                    interface("lo", [3193, 29, 0, 0], [3193, 29, 0, 0]),
                    interface("eth0", [4294967296, 3996, 1, 2], [323623, 2608, 3, 4]),
                ],
            ),
            ("a namespace with no interfaces at all", HEADER.to_string(), vec![]),
            (
                "a blank trailing line and no final newline",
                format!(
                    "{HEADER}  eth0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n\n    lo: 1 1 0 0 0 0 0 0 1 1 0 0 0 0 0 0"
                ),
                vec![interface("eth0", [1, 2, 3, 4], [9, 10, 11, 12]), interface("lo", [1, 1, 0, 0], [1, 1, 0, 0])],
            ),
        ];
        for (name, input, expected) in cases {
            assert_eq!(parse_net_dev(input.as_bytes()), Ok(expected), "{name}");
        }
    }

    #[test]
    fn an_interface_name_that_is_not_utf8_does_not_hide_the_others() {
        let input = [HEADER.as_bytes(), b"wl\xffan: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n"].concat();
        let parsed = parse_net_dev(input.as_slice()).expect("a lossy name");
        assert_eq!(parsed, [interface("wl\u{fffd}an", [1, 2, 3, 4], [9, 10, 11, 12])]);
    }

    #[test]
    fn rejects_malformed_input_with_a_reason() {
        let line = |text: &str| format!("{HEADER}{text}\n");
        let cases: Vec<(&str, String, &str)> = vec![
            ("empty file", String::new(), "the two header lines are missing"),
            ("one header line", "Inter-|   Receive\n".to_string(), "the two header lines are missing"),
            ("not net/dev", "MemTotal: 1 kB\nMemFree: 1 kB\n".to_string(), "line 1: expected a header line"),
            (
                "no colon",
                line("  eth0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16"),
                "line 3: no ':' after the interface name",
            ),
            ("no name", line("  : 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16"), "line 3: bad interface name \"\""),
            (
                "a space in the name",
                line("et h0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16"),
                "bad interface name \"et h0\"",
            ),
            ("too few counters", line("  eth0: 1 2 3 4 5 6 7 8 9 10 11 12"), "eth0: 12 counters, 16 expected"),
            ("a word", line("  eth0: 1 2 3 x 5 6 7 8 9 10 11 12 13 14 15 16"), "eth0: counter 4 is not a number"),
            ("negative", line("  eth0: 1 2 3 4 5 6 7 8 -9 10 11 12 13 14 15 16"), "counter 9 is not a number"),
            ("past u64", line("  eth0: 18446744073709551616 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16"), "counter 1"),
        ];
        for (name, input, message) in cases {
            match parse_net_dev(input.as_bytes()) {
                Err(error) => assert!(error.0.contains(message), "{name}: {:?} does not mention {message:?}", error.0),
                Ok(interfaces) => panic!("{name}: parsed as {interfaces:?}"),
            }
        }
        let not_utf8 = [HEADER.as_bytes(), b"  eth0: 1 2 \xff 4 5 6 7 8 9 10 11 12 13 14 15 16\n"].concat();
        assert_eq!(
            parse_net_dev(not_utf8.as_slice()),
            Err(ParseError::new("line 3: eth0: counters that are not UTF-8"))
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = parse_net_dev(bytes.as_slice());
        }

        #[test]
        fn arbitrary_lines_after_a_valid_header_never_panic(body in proptest::collection::vec(any::<u8>(), 0..1024)) {
            let input = [HEADER.as_bytes(), body.as_slice()].concat();
            let _ = parse_net_dev(input.as_slice());
        }

        #[test]
        fn mutated_real_files_never_panic(bytes in mutated(PI5_KERNEL_6_6.as_bytes())) {
            if let Ok(interfaces) = parse_net_dev(bytes.as_slice()) {
                prop_assert!(interfaces.iter().all(|i| !i.name.is_empty() && !i.name.contains(':')));
            }
        }
    }

    #[test]
    fn interface_names_change_when_one_comes_goes_or_is_renamed_but_not_with_their_order() {
        let named = |names: &[&str]| -> Vec<Interface> {
            names.iter().map(|name| Interface { name: name.to_string(), ..Interface::default() }).collect()
        };
        let mut names = InterfaceNames::default();
        assert!(names.same_as(&[]), "nothing yet");
        assert!(!names.same_as(&named(&["lo"])));
        names.set(&named(&["lo", "eth0", "veth1"]));
        assert!(names.same_as(&named(&["veth1", "lo", "eth0"])));
        assert!(!names.same_as(&named(&["lo", "eth0"])), "one went");
        assert!(!names.same_as(&named(&["lo", "eth0", "veth1", "veth2"])), "one came");
        assert!(!names.same_as(&named(&["lo", "eth0", "veth2"])), "one replaced by another");
    }

    fn fixture(tree: &str) -> HostRoots {
        let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(tree);
        HostRoots::new(base.join("proc"), base.join("sys"))
    }

    #[test]
    fn reads_the_fixture_trees_with_lo() {
        let pi5 = read(&fixture("pi5"), &mut NodeFiles::new()).expect("pi5 net/dev");
        let names: Vec<&str> = pi5.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["lo", "eth0", "wlan0", "flannel.1", "cni0", "veth3a1f9c2e", "vethb71e04d5", "veth0c9d2a61"]);
        assert_eq!(pi5[1], interface("eth0", [48211987433, 61233419, 0, 112], [97664120937, 70120334, 0, 0]));

        let worker = read(&fixture("cgroup-v1"), &mut NodeFiles::new()).expect("x86 net/dev");
        assert_eq!(
            worker.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(),
            ["lo", "ens18", "flannel.1", "cni0", "veth5d2c81aa"]
        );
        assert_eq!(read(&fixture("bare"), &mut NodeFiles::new()).expect("bare net/dev").len(), 2);
    }

    #[test]
    fn a_missing_file_is_absent_and_a_malformed_one_is_malformed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let roots = HostRoots::new(dir.path(), dir.path());
        assert!(matches!(read(&roots, &mut NodeFiles::new()), Err(SignalError::Absent { .. })));

        std::fs::create_dir(dir.path().join("net")).expect("net dir");
        std::fs::write(dir.path().join("net/dev"), format!("{HEADER}  eth0: 1 2 3\n")).expect("write net/dev");
        let error = read(&roots, &mut NodeFiles::new()).expect_err("three counters");
        assert!(error.is_malformed(), "{error}");
        assert!(error.to_string().contains("net/dev is malformed: line 3: eth0: 3 counters"), "{error}");
    }
}
