//! A host root with 30 pods and 200 other processes, built in a temporary directory from the Pi 5 fixture.
//!
//! The Pi 5 tree gives the node's files (every signal present) and four
//! pods; 26 more pods are added the way the bench node has them: each in
//! its own network namespace behind a veth on `cni0` (listed in the node's
//! `net/dev` and `class/net`), with two processes (pause and the app), a
//! kubepods cgroup, and the WordPress pod's network files (sockets in use,
//! so each namespace's socket tables are read once). The other processes
//! are what a node runs besides its pods (system services, kernel threads):
//! the `/proc` walk lists them all.

use std::fmt::Write as _;
use std::path::Path;

use tempfile::TempDir;

/// Pods in the tree: the Pi 5 fixture's four and the ones added.
pub const PODS: usize = 30;

const FIXTURE_PODS: usize = 4;
const OTHER_PROCESSES: u32 = 200;

/// The WordPress pod of the Pi 5 fixture, the template of the added ones.
const TEMPLATE_PROCESS: &str = "proc/2001";
const TEMPLATE_CGROUP: &str = "sys/fs/cgroup/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod3f6c2a91_8e4b_4d7a_b5c1_9a0e7d2f4b68.slice";
const TEMPLATE_VETH: &str = "sys/class/net/veth3a1f9c2e";

/// The node's own signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sensors {
    /// A Pi 5's: thermal zones, hwmon, cpufreq, the firmware's throttling, conntrack.
    Pi5,
    /// A virtual machine's: none of those (each listed as unavailable every sample).
    None,
}

/// Builds the tree; `proc` and `sys` are below the returned directory.
pub fn build(sensors: Sensors) -> TempDir {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let pi5 = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pi5");
    copy_tree(&pi5.join("proc"), &dir.path().join("proc"));
    copy_tree(&pi5.join("sys"), &dir.path().join("sys"));
    let mut net_dev = read(&dir.path().join("proc/net/dev"));
    for index in 0..PODS - FIXTURE_PODS {
        add_pod(dir.path(), &pi5, index, &mut net_dev);
    }
    write(&dir.path().join("proc/net/dev"), &net_dev);
    for pid in 0..OTHER_PROCESSES {
        let cgroup =
            if pid.is_multiple_of(2) { "0::/\n".to_string() } else { format!("0::/system.slice/unit{pid}.service\n") };
        write(&dir.path().join(format!("proc/{}/cgroup", 5000 + pid)), &cgroup);
    }
    if sensors == Sensors::None {
        for gone in
            ["sys/class/thermal", "sys/class/hwmon", "sys/devices/platform/soc@107c000000", "proc/sys/net/netfilter"]
        {
            std::fs::remove_dir_all(dir.path().join(gone)).expect("a fixture directory");
        }
        for cpu in 0..4 {
            let cpufreq = dir.path().join(format!("sys/devices/system/cpu/cpu{cpu}/cpufreq"));
            std::fs::remove_dir_all(cpufreq).expect("a CPU's cpufreq");
        }
    }
    dir
}

/// Pod `index` of the added ones: its processes, cgroup and node-side veth.
fn add_pod(root: &Path, pi5: &Path, index: usize, net_dev: &mut String) {
    let uid = format!("0c0ffee0-0000-4000-8000-{index:012x}");
    let (qos, slice) = if index.is_multiple_of(2) {
        ("besteffort", "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod")
    } else {
        ("burstable", "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod")
    };
    let pod_slice = format!("{slice}{}.slice", uid.replace('-', "_"));
    copy_tree(&pi5.join(TEMPLATE_CGROUP), &root.join("sys/fs/cgroup").join(&pod_slice));
    let namespace = 4_026_533_000 + index as u64;
    for (offset, container) in [(0, "pause"), (1, "app")] {
        let pid = 3000 + 2 * index + offset;
        let process = root.join(format!("proc/{pid}"));
        copy_tree(&pi5.join(TEMPLATE_PROCESS).join("net"), &process.join("net"));
        write(&process.join("cgroup"), &format!("0::/{pod_slice}/cri-containerd-{container}{index:04}-{qos}.scope\n"));
        std::fs::create_dir_all(process.join("ns")).expect("ns");
        std::os::unix::fs::symlink(format!("net:[{namespace}]"), process.join("ns/net")).expect("ns/net");
    }
    let veth = format!("veth0c0ffe{index:02x}");
    let bytes = 1_000_000 + index as u64;
    writeln!(net_dev, "{veth}: {bytes} 1000 0 0 0 0 0 0 {bytes} 1000 0 0 0 0 0 0").expect("a String");
    copy_tree(&pi5.join(TEMPLATE_VETH), &root.join("sys/class/net").join(&veth));
    let ifindex = 100 + index;
    write(&root.join(format!("sys/class/net/{veth}/ifindex")), &format!("{ifindex}\n"));
    write(&root.join(format!("sys/class/net/{veth}/uevent")), &format!("INTERFACE={veth}\nIFINDEX={ifindex}\n"));
}

/// Copies a directory tree, symbolic links as links.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("a directory");
    for entry in std::fs::read_dir(from).expect("a fixture directory") {
        let entry = entry.expect("an entry");
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type().expect("a file type");
        if kind.is_symlink() {
            let link = std::fs::read_link(&source).expect("a link");
            std::os::unix::fs::symlink(link, &target).expect("a copied link");
        } else if kind.is_dir() {
            copy_tree(&source, &target);
        } else {
            std::fs::copy(&source, &target).expect("a copied file");
        }
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).expect("a fixture file")
}

fn write(path: &Path, content: &str) {
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("a directory");
    std::fs::write(path, content).expect("a written file");
}
