//! bakery-demo: the mini-bakery, a cluster of 1 to 12 nodes (five in most scenarios) made of kernel
//! namespaces on one machine, with real processes, real packets, kube-proxy-style iptables load
//! balancing, a real nginx and real oha, and bakery (one agent per node, the collector, bakery-top)
//! finding the node that takes more than its share.
//!
//! # The cluster
//!
//! ```text
//!  client (oha) ──┐                       bkd-lan: bridge br0, 198.18.0.0/24
//!  proxy (nginx) ─┼── br0 ──┬── master-01 (.11)   pods 198.19.1.0/24
//!  control ───────┘         ├── master-02 (.12)   pods 198.19.2.0/24   LoadBalancer IP .100 (L2)
//!  (collector, API double)  ├── master-03 (.13)   ...
//!                           ├── worker-01 (.14)   (node k in scenario order: .11 + k,
//!                           └── worker-02 (.15)    pods 198.19.(k + 1).0/24; up to 12 nodes)
//! ```
//!
//! * **A node** is a network namespace (`bkd-n-<node>`) with a veth `eth0` on the LAN bridge, IP
//!   forwarding, routes to every other node's pod CIDR (flannel host-gw style), and kube-proxy's
//!   iptables rules ([`kube_proxy`]). Its processes run in a PID namespace of its own, with its own
//!   `/proc` (see [`launch`]): the node's agent, started with `--proc-root /proc` in the node's
//!   network namespace, sees exactly that node's processes and NIC, as a hostPID and hostNetwork
//!   agent does on a real node. The processes of a node that are not pods (its agent, the extras)
//!   run in the cgroup `bakery-demo/<node>/system`.
//! * **A pod** is a network namespace (`bkd-p-<workload>-<n>`) joined to its node by a veth
//!   (`eth0` in the pod, `veth<8 hex>` on the node, Calico style: a /32 and a route each way), its
//!   process in the node's PID namespace and in a kubepods cgroup under the node's own subtree,
//!   `bakery-demo/<node>/kubepods/besteffort/pod<uid>/<container>`, which the agent recognises
//!   because it finds the kubepods level anywhere in a cgroup path. A node may run several replicas
//!   of a workload. The WordPress stand-in burns real CPU per request, queries the MySQL stand-in
//!   through its ClusterIP, and returns a ~50 KB page ([`stand_ins`]). A proxy workload (as Nginx
//!   Proxy Manager runs in the reference cluster) is Debian's nginx in its pod, relaying every
//!   request to its upstream web workload's ClusterIP ([`nginx`]).
//! * **The Services**: a ClusterIP Service per workload, and `[service]` as the LoadBalancer
//!   Service of the web workload or of the in-cluster proxy in front of it, with kube-proxy's DNAT
//!   chains on every node (random per connection, `-m recent` for ClientIP affinity, Local or
//!   Cluster external traffic policy with masquerade, the node port). MetalLB L2 is the
//!   LoadBalancer IP as a secondary address of the named announcer's `eth0` (it answers ARP);
//!   MetalLB BGP is an ECMP route in the proxy's and client's namespaces over the entry nodes,
//!   hashing the 5-tuple, so each connection picks a node.
//! * **The outside proxy**: Debian's nginx in `bkd-proxy`, configured in the run directory
//!   ([`nginx`]), without upstream keep-alive unless the scenario asks; or none, and oha goes
//!   straight at the LoadBalancer IP.
//! * **Control**: the collector and the Kubernetes API double in `bkd-control`, on the LAN only;
//!   the double serves the cluster exactly as the API would ([`kube_state`]): Nodes, Pods,
//!   ReplicaSets, EndpointSlices, the Services with every field the API server sets, and MetalLB's
//!   objects (address pool, advertisement, and the status objects naming the nodes that announce
//!   the IP) unless the scenario says MetalLB is not installed. The demo talks to the collector from
//!   a thread inside that namespace ([`control`]), so nothing listens on or is added to the root
//!   namespace.
//! * **Per-node extras**: CPU burned (from the load's start, or from boot) and memory held (from
//!   boot) by processes outside every pod (in the node's `system` cgroup), and a sysfs overlay
//!   ([`sysfs`]) with a hot, throttled Pi 5's thermal zone, frequencies and `get_throttled` for
//!   that node's agent (`--sys-root`). A scenario may switch a hog on mid-run instead ([`onset`]): a
//!   burner starts, the overlay turns from a cool board to the hot one, or the L2 announcer moves
//!   to another node.
//! * **Node memory**: a node's `memory_mib` is the memory limit of its cgroup `bakery-demo/<node>`.
//!
//! Every address is in 198.18.0.0/15 and lives only in namespaces the demo made; every name starts
//! with `bkd-` (cgroups live under `bakery-demo/`), which is how a killed run's leftovers are found
//! and removed at the next start (`bakery_lab::cleanup::remove_demo_leftovers`, under the run lock
//! of [`lock`]). Each namespace's processes die with the demo even on SIGKILL ([`launch`]). The
//! kernel objects and processes are made with `bakery_lab`.
//!
//! # A run
//!
//! [`run::Demo::start`] builds the cluster ([`cluster`]), starts bakery and lets it watch the idle
//! cluster for [`run::warm_up`] (the diagnosis learns each node's own baseline outside windows, as a
//! collector in a real cluster has long done). [`run::Demo::run_load`] opens a load-test window on
//! the collector without naming a workload (the collector chooses the workload under test, as for a
//! user's `bakery-top loadtest`), starts the burners that wait for the load and runs oha from the
//! client namespace; then the report the collector stored for the window names the workload, the
//! nodes and the causes ([`diagnose`]). [`run::Demo::finish`] stops bakery, checks what the
//! collector stored (`inspect`) and removes everything. The run matches the scenario ([`scenario`],
//! [`report`]) when the collector chose the Service's web workload, the verdicts active for 3 s
//! or more of the window are exactly the expected set (shorter ones are listed apart and do not
//! count), the first expected verdict was raised within the scenario's `verdict_within_s` of the
//! hog's onset (the load's start for a hog on from the start), and none before a mid-run onset.
//! That decides the exit code.
//! With `--otlp-endpoint` the collector also exports over OTLP, through a relay out of the control
//! namespace ([`otlp`]).
//!
//! [`campaign`] (`bakery-demo campaign`) generates random valid scenarios from a seed, runs each
//! this way, and checks bakery's verdicts against the generator's own ground truth.
//!
//! # Node CPU and memory: the node's cgroup
//!
//! `/proc/stat`, `/proc/meminfo` and `/proc/pressure` are not namespaced: in every node's PID
//! namespace they show the whole machine, as they do inside a kind, k3d or LXC node. So each
//! node's agent runs with `--node-cgroup bakery-demo/<node>` (bakery-agent's `node_cgroup`
//! module): node CPU user and system time, memory usage and the memory limit come from the node's
//! cgroup subtree, which holds its pods and its other processes (agent, extras). A scenario node's
//! `memory_mib` is set as that cgroup's memory limit, and so becomes the node's memory. The burn
//! extra then shows as unattributed CPU on its node only (scenario `nfs-neighbour`) and the memory
//! hog as that node's memory pressure (`memory-squeeze`).
//!
//! # What the namespaces cannot simulate
//!
//! What the agent keeps from the machine even with `--node-cgroup`: the CPU time base (wall time x
//! the machine's cores, the same on every node), iowait, irq and softirq (packet forwarding and NAT
//! land there, so every node shows the whole machine's), steal, swap, and per-core CPU figures (left
//! out: a cgroup has no per-core split). Pressure stall information is per node only on cgroup v2
//! (`cpu.pressure`, ... in the node's cgroup); on a machine whose cpuacct and memory controllers are
//! on cgroup v1 (as on the hybrid layout the demo was built on) every node reports the machine's,
//! so memory pressure comes from a node's available memory there, not from stalls. NICs,
//! connections, pod accounting and thermals (the overlay) are per node.
#![forbid(unsafe_code)]

use std::path::PathBuf;

pub mod bench;
pub mod binaries;
pub mod campaign;
pub mod cli;
pub mod cluster;
pub mod control;
pub mod diagnose;
pub mod interrupt;
pub mod kube_proxy;
pub mod kube_state;
pub mod launch;
pub mod lock;
pub mod nginx;
pub mod oha;
pub mod onset;
pub mod otlp;
pub mod plan;
pub mod preflight;
pub mod report;
pub mod run;
pub mod scenario;
pub mod stand_ins;
pub mod sysfs;

/// What can go wrong in the demo's library. A variant that wraps another error keeps it as its
/// source: print a whole chain with `bakery_lab::chain`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A scenario that does not hold together; the message says where.
    #[error("invalid scenario: {0}")]
    Scenario(String),
    /// A scenario that is not TOML of a scenario (an unknown key, a wrong type).
    #[error("invalid scenario")]
    ScenarioSyntax {
        #[source]
        source: toml::de::Error,
    },
    /// A generated scenario that cannot be written as TOML.
    #[error("writing scenario {name} as TOML")]
    ScenarioText {
        name: String,
        #[source]
        source: toml::ser::Error,
    },
    /// A kernel object, a process or a wait of the cluster (`bakery_lab`).
    #[error(transparent)]
    Lab(#[from] bakery_lab::Error),
    /// A file or directory of the run.
    #[error("{action} {}", path.display())]
    File {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A thread, an async runtime or a signal handler the demo needs did not start.
    #[error("starting {what}")]
    Start {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// A thread of the demo entered a namespace (`setns`) and failed.
    #[error("entering the {what} namespace")]
    Enter {
        what: &'static str,
        #[source]
        source: nix::Error,
    },
    /// A JSON document the demo reads (a report, oha's summary, `inspect --json`) or writes.
    #[error("{what}")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    /// The collector's Query service cannot be reached.
    #[error("connecting to the collector at {url}")]
    Connect {
        url: String,
        #[source]
        source: tonic::transport::Error,
    },
    /// The collector's URL is not one (a plan that names a bad address).
    #[error("the collector's URL {url}")]
    Url {
        url: String,
        #[source]
        source: tonic::codegen::http::uri::InvalidUri,
    },
    /// The collector answered a Query call with an error.
    #[error("the collector answered {call}")]
    Collector {
        call: &'static str,
        #[source]
        source: Box<tonic::Status>,
    },
    /// The thread that talks to the collector has gone.
    #[error("the control link {0}")]
    ControlLink(&'static str),
    /// A program or a binary the demo runs is not on this machine; says how to get it.
    #[error("{what} is missing: {how}")]
    Missing { what: String, how: String },
    /// An OTLP endpoint the demo cannot relay; says what to give instead.
    #[error("OTLP endpoint {endpoint:?}: {why}")]
    OtlpEndpoint { endpoint: String, why: &'static str },
    /// The cluster did not get where it should in time (a sample, a probe, a start); the message
    /// says what, and where the logs are.
    #[error("{0}")]
    Stalled(String),
    /// Another demo holds the run lock (its pid).
    #[error("another bakery-demo is running (pid {0}); only one cluster fits on a machine")]
    Busy(String),
    /// The machine is not ready for the demo (not root, a tool missing); says what to do.
    #[error("{0}")]
    Preflight(String),
    /// The user asked the demo to stop (Ctrl-C, SIGTERM, SIGHUP).
    #[error("{0}: cleaning up")]
    Interrupted(&'static str),
    /// A command line of `bakery-demo enter` that cannot be done.
    #[error("{0}")]
    Usage(&'static str),
    /// The plan names something it does not hold (a bug in the plan, not in the machine).
    #[error("the plan is inconsistent: {0}")]
    Plan(String),
    /// A process of the cluster failed; the last lines of its log usually say why.
    #[error("{name} failed{}", log_tail(tail))]
    Process {
        name: String,
        tail: String,
        #[source]
        source: Box<Error>,
    },
    /// Taking the cluster down left something behind; each problem keeps its source.
    #[error("cleanup incomplete: {}", problems.iter().map(|p| bakery_lab::chain(p)).collect::<Vec<_>>().join("; "))]
    Cleanup { problems: Vec<Error> },
}

fn log_tail(tail: &str) -> String {
    if tail.is_empty() { String::new() } else { format!(" (the last lines of its log:\n{tail}\n)") }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
