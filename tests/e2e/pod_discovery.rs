//! Pod discovery on real kernel objects: a simulated pod (network
//! namespace, veth, kubepods cgroup, server process) is found by the agent
//! by its UID, with its traffic, connections, processes, CPU and memory.

use std::process::Command;

use bakery_agent::pods::{Pod, PodTracker, QosClass};
use bakery_agent::roots::HostRoots;
use bakery_lab::binaries::built_binary;
use bakery_lab::require_root;
use bakery_tests::sim::{STEP_TIMEOUT, SimNode, SimPod};
use serde_json::Value;

const SENT_BYTES: u64 = 5_000_000;
const HELD_CONNECTIONS: u32 = 7;

/// The pods `bakery-agent --once --json` reports for this machine.
fn agent_pods() -> Vec<Value> {
    let agent = built_binary("bakery-agent", "bakery-agent").unwrap();
    let output = Command::new(&agent)
        .args(["--once", "--json", "--rate-window", "20ms", "--node-name", "e2e-node"])
        .env("BAKERY_LOG", "warn")
        .output()
        .unwrap();
    assert!(output.status.success(), "bakery-agent failed: {}", String::from_utf8_lossy(&output.stderr));
    let json: Value = serde_json::from_slice(&output.stdout).unwrap();
    json["sample"]["pods"].as_array().cloned().unwrap_or_default()
}

fn reported<'a>(pods: &'a [Value], uid: &str) -> Option<&'a Value> {
    pods.iter().find(|pod| pod["identity"]["uid"] == uid)
}

#[test]
fn root_agent_reports_a_real_pod() {
    require_root("root_agent_reports_a_real_pod");
    let pod = SimPod::create("discovery").unwrap();

    let pods = agent_pods();
    let before = reported(&pods, pod.uid()).unwrap_or_else(|| panic!("pod {} is not in {pods:#?}", pod.uid()));
    let rx_before = before["network"]["rx_bytes"].as_u64().expect("the pod has its own network counters");

    let _client = pod.client(SENT_BYTES, HELD_CONNECTIONS).unwrap();
    pod.wait_for_server("the bytes and the held connections", STEP_TIMEOUT, |server| {
        server.bytes_received >= SENT_BYTES && server.open_connections() == u64::from(HELD_CONNECTIONS)
    })
    .unwrap();

    let pods = agent_pods();
    let after = reported(&pods, pod.uid()).unwrap_or_else(|| panic!("pod {} is not in {pods:#?}", pod.uid()));
    let identity = &after["identity"];
    assert_eq!(identity["qos_class"], "besteffort");
    assert_eq!(identity["cgroup_path"], pod.cgroup_path());
    assert_eq!(identity["host_network"], false);

    let rx_after = after["network"]["rx_bytes"].as_u64().unwrap();
    assert!(
        rx_after >= rx_before + SENT_BYTES,
        "the pod received {} bytes, at least {SENT_BYTES} were sent into it",
        rx_after - rx_before
    );
    let tcp = &after["tcp"];
    assert_eq!(tcp["established_inbound"], HELD_CONNECTIONS, "{tcp}");
    assert_eq!(tcp["established_outbound"], 0, "{tcp}");
    assert_eq!(tcp["listen"], 1, "{tcp}");
    assert_eq!(after["process_count"], 1);
    // The server was moved into the pod cgroup before it read a byte, so
    // reading 5 MB is accounted there.
    assert!(after["cpu_usage_us"].as_u64().unwrap() > 0, "{after}");
    assert!(after["memory_working_set_bytes"].as_u64().unwrap() > 0, "{after}");
}

fn rows<'a>(pods: &'a [Pod], uid: &str) -> Vec<&'a Pod> {
    pods.iter().filter(|pod| pod.identity.uid == uid).collect()
}

#[test]
fn root_a_pod_is_one_row_however_many_processes_and_goes_when_they_exit() {
    require_root("root_a_pod_is_one_row_however_many_processes_and_goes_when_they_exit");
    // One tracker across readings, as the agent keeps it between samples.
    let roots = HostRoots::host();
    let mut tracker = PodTracker::new();
    let pod = SimPod::create_with("processes", QosClass::Burstable, 8080).unwrap();
    let uid = pod.uid().to_string();

    let reading = tracker.read(&roots).unwrap();
    let found = rows(&reading.pods, &uid);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].process_count, 1);
    assert_eq!(found[0].identity.qos_class, QosClass::Burstable);

    let extra = pod.spawn_process().unwrap();
    let reading = tracker.read(&roots).unwrap();
    let found = rows(&reading.pods, &uid);
    assert_eq!(found.len(), 1, "two processes, one pod: {found:#?}");
    assert_eq!(found[0].process_count, 2);
    assert_eq!(found[0].tcp.map(|tcp| tcp.listen), Some(1), "the pod's own namespace is read");

    drop(extra);
    let reading = tracker.read(&roots).unwrap();
    assert_eq!(rows(&reading.pods, &uid).iter().map(|pod| pod.process_count).collect::<Vec<_>>(), [1]);

    drop(pod);
    let reading = tracker.read(&roots).unwrap();
    assert!(rows(&reading.pods, &uid).is_empty(), "a pod whose processes exited is no longer reported");
}

/// On a node, a pod's traffic is read from the node's end of its veth (no
/// file read per pod), and it is exactly what the pod's own `net/dev` says.
#[test]
fn root_a_pods_traffic_from_its_nodes_veth_end_equals_its_own_counters() {
    require_root("root_a_pods_traffic_from_its_nodes_veth_end_equals_its_own_counters");
    let node = SimNode::create("veth").unwrap();
    let pod = SimPod::create_on("veth", &node).unwrap();
    let _client = pod.client(SENT_BYTES, 2).unwrap();
    pod.wait_for_server("the bytes and the held connections", STEP_TIMEOUT, |server| {
        server.bytes_received >= SENT_BYTES && server.open_connections() == 2
    })
    .unwrap();
    let uid = pod.uid().to_string();
    // The agent runs in the node's namespace, as a hostNetwork pod does;
    // only this thread enters it.
    // Unrelated packets still cross the link now and then (IPv6 neighbour
    // discovery and MLD after it came up): a comparison counts only when the
    // pod's own counters did not move across the veth reading.
    let (from_veth, from_files, veth_pods) = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                node.enter().unwrap();
                let roots = HostRoots::host();
                let network = |reading: &bakery_agent::pods::PodsReading| {
                    rows(&reading.pods, &uid).first().and_then(|pod| pod.network).expect("the pod and its counters")
                };
                let own_files = || network(&PodTracker::new().read(&roots).unwrap());
                let deadline = std::time::Instant::now() + STEP_TIMEOUT;
                loop {
                    let before = own_files();
                    // `/proc/net` is the namespace of the process's main thread;
                    // the agent's is the node's, this thread's too.
                    let node_dev = std::fs::read("/proc/thread-self/net/dev").unwrap();
                    let node_interfaces = bakery_agent::net::parse_net_dev(node_dev.as_slice()).unwrap();
                    let now = std::time::Instant::now();
                    let on_node = PodTracker::new().read_with_node(&roots, Some(&node_interfaces), now).unwrap();
                    let after = own_files();
                    if before == after {
                        break (network(&on_node), after, on_node.network_from_node_veths);
                    }
                    assert!(std::time::Instant::now() < deadline, "the pod's counters never held still");
                }
            })
            .join()
            .unwrap()
    });
    assert!(veth_pods >= 1, "no pod was read from a veth");
    assert!(from_veth.rx_bytes >= SENT_BYTES, "{from_veth:?}");
    // Nothing moved around the veth reading: it must be the pod's own figures.
    assert_eq!(
        (from_veth.rx_bytes, from_veth.rx_packets, from_veth.tx_bytes, from_veth.tx_packets),
        (from_files.rx_bytes, from_files.rx_packets, from_files.tx_bytes, from_files.tx_packets)
    );
}
