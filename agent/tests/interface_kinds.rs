//! Interface kinds on real kernel objects (root only), from rtnetlink and from sysfs.
//!
//! A node that is a network namespace, as the demo's are, with an uplink veth to a LAN namespace
//! and a pod's veth on a bridge, read by the agent binary inside it.
//!
//! Everything is made inside namespaces this test creates (`bka<pid>-*`) and a cgroup named
//! after its own pid; the root namespace is never configured. All of it is removed on drop,
//! also when the test fails.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use bakery_lab::require_root;

/// What the kernel objects of one test are, to remove them.
struct Made {
    namespaces: Vec<String>,
    cgroups: Vec<PathBuf>,
    pod_process: Option<Child>,
}

impl Drop for Made {
    fn drop(&mut self) {
        if let Some(mut process) = self.pod_process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
        for dir in self.cgroups.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
        for namespace in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", namespace]).status();
        }
    }
}

fn ip(args: &[&str]) {
    let output = Command::new("ip").args(args).output().expect("ip (iproute2)");
    assert!(output.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr));
}

/// Where a pod cgroup can be made here: a v1 hierarchy the agent does not read figures from
/// (pids), or the v2 root.
fn cgroup_hierarchy() -> PathBuf {
    let v1 = Path::new("/sys/fs/cgroup/pids");
    if v1.join("cgroup.procs").is_file() { v1.to_path_buf() } else { PathBuf::from("/sys/fs/cgroup") }
}

/// Interfaces by name: (kind, master), as `--once --json` spells them.
type Kinds = BTreeMap<String, (String, Option<String>)>;

/// `bakery-agent --once --json` run in network namespace `netns`; the interfaces it reports
/// and the pod UIDs it found.
fn agent_in(netns: &str, extra: &[&str]) -> (Kinds, Vec<String>) {
    let output = Command::new("ip")
        .args(["netns", "exec", netns, env!("CARGO_BIN_EXE_bakery-agent"), "--once", "--json", "--node-name", "n"])
        .args(extra)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let interfaces = json["sample"]["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let master = i["master"].as_str().map(str::to_string);
            (i["name"].as_str().unwrap().to_string(), (i["kind"].as_str().unwrap().to_string(), master))
        })
        .collect();
    let pods = json["sample"]["pods"].as_array().unwrap().iter().map(|p| p["identity"]["uid"].to_string()).collect();
    (interfaces, pods)
}

#[test]
fn root_a_namespace_node_tells_its_uplink_from_its_pods_veth_and_sysfs_agrees_where_it_can() {
    require_root("root_a_namespace_node_tells_its_uplink_from_its_pods_veth_and_sysfs_agrees_where_it_can");
    let pid = std::process::id();
    let [lan, node, pod] = ["lan", "node", "pod"].map(|name| format!("bka{pid}-{name}"));
    let mut made = Made { namespaces: Vec::new(), cgroups: Vec::new(), pod_process: None };
    for namespace in [&lan, &node, &pod] {
        ip(&["netns", "add", namespace]);
        made.namespaces.push(namespace.clone());
    }
    // The node's uplink: eth0, whose peer is in the LAN namespace (no pod's).
    ip(&["-n", &node, "link", "add", "eth0", "type", "veth", "peer", "name", "uplink", "netns", &lan]);
    // The pod's eth0, whose node end is on a bridge, as flannel's cni0.
    ip(&["-n", &node, "link", "add", "cni0", "type", "bridge"]);
    ip(&["-n", &node, "link", "add", "vethpod", "type", "veth", "peer", "name", "eth0", "netns", &pod]);
    ip(&["-n", &node, "link", "set", "vethpod", "master", "cni0"]);
    ip(&["-n", &node, "link", "add", "ifb9", "type", "ifb"]);

    // The pod: a process in its namespace and in a kubepods-style cgroup.
    let uid = format!("{pid:08x}-0bac-4a6e-8d1a-000000000001");
    let hierarchy = cgroup_hierarchy();
    let mut dir = hierarchy.clone();
    for level in ["kubepods".to_string(), "besteffort".into(), format!("pod{uid}"), "c1".into()] {
        dir.push(level);
        if !dir.exists() {
            std::fs::create_dir(&dir).unwrap();
            made.cgroups.push(dir.clone());
        }
    }
    // It says its pid once it runs in the namespace (`ip netns exec` mounts another sysfs, so it
    // cannot join the cgroup itself).
    let mut process = Command::new("ip")
        .args(["netns", "exec", &pod, "sh", "-c", "echo $$ && exec sleep 600"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = process.stdout.take().unwrap();
    made.pod_process = Some(process);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    std::fs::write(dir.join("cgroup.procs"), line.trim()).unwrap();

    let kind = |kind: &str, master: Option<&str>| (kind.to_string(), master.map(str::to_string));
    let (live, pods) = agent_in(&node, &[]);
    assert!(pods.iter().any(|found| found.contains(&uid)), "the pod is found: {pods:?}");
    let expected = BTreeMap::from([
        ("lo".to_string(), kind("loopback", None)),
        ("eth0".to_string(), kind("veth", None)),
        ("cni0".to_string(), kind("bridge", None)),
        ("vethpod".to_string(), kind("pod_veth", Some("cni0"))),
        ("ifb9".to_string(), kind("virtual", None)),
    ]);
    assert_eq!(live, expected, "from rtnetlink");

    // `ip netns exec` mounts a sysfs of the node's namespace; a proc root whose `self` is not
    // this namespace's (it has none) makes the agent read it. sysfs cannot say where a veth
    // leads, nor tell it from an ifb (eth0's index, 2, is its peer's too), and says everything
    // else alike.
    let tree = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("/proc/self/net", tree.path().join("net")).unwrap();
    let (from_sysfs, _) = agent_in(&node, &["--proc-root", tree.path().to_str().unwrap()]);
    let mut expected_from_sysfs = expected.clone();
    for unknown in ["eth0", "vethpod", "ifb9"] {
        expected_from_sysfs.get_mut(unknown).unwrap().0 = "unspecified".into();
    }
    assert_eq!(from_sysfs, expected_from_sysfs, "from sysfs");
}
