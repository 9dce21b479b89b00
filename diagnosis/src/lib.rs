//! bakery-diagnosis: names the node that takes more than its share of a workload's traffic during a
//! load test, says why, and shows the numbers behind it.
//!
//! This crate is pure: no sockets, no files, no clocks. The collector converts what the agents stream
//! into [`Tick`]s (raw cumulative counters, sample timestamps, the workload under test with its ready
//! endpoints, and the Service it is reached through as the cluster declares it) and feeds them to a
//! [`Detector`]; each tick returns an [`Evaluation`] with the live shares and the raised verdicts. A
//! finished window is replayed into a [`WindowReport`] (JSON, text, and an SVG chart through [`svg`] that
//! shows each node's share and, per cause raised, the [`Reading`]s its evidence cites).
//! The same ticks always give the same verdicts, bit for bit.
//!
//! # Pipeline
//!
//! 1. `history`: per-node ring of reset-corrected counters (each NIC on its own), pods sorted by UID
//!    (the increase of any counter over any span is one subtraction; two points join in one pass).
//! 2. [`analysis`]: over a span, every node's signals (pod rx/tx bytes, established inbound
//!    connections, connections accepted, NIC rx/tx, NIC bytes forwarded for pods elsewhere, CPU incl.
//!    softirq, unattributed CPU, memory growth, PSI, temperature, frequency, throttling), each with
//!    its share, its share normalised by the expected share `q = e / E` (the node's share of ready
//!    endpoints), and per signal max/mean and Jain's index; the balancing decisions behind the spread,
//!    the starved endpoints, what cannot be judged, and the [`entry`] model.
//! 3. [`entry`]: from the Service (type, policies, affinity, the MetalLB announcer), which nodes may
//!    take client connections in (the fair split a node is judged against) and which the cluster says
//!    do (the declared split that explains a verdict and picks its next step).
//! 4. [`noise`]: the enter threshold of a skew from the binomial spread of `d` balancing decisions,
//!    framed by a materiality floor (1.25x) and ceiling (2x).
//! 5. `classify`: per node and family of causes, the enter/exit conditions and the cause that explains
//!    the evidence; `explain`: evidence, confidence, summary, next step and remedy of a raised verdict.
//! 6. [`detector`]: hysteresis per (node, family): raised after 3 consecutive evaluations above the
//!    enter threshold, cleared after 8 below a lower exit threshold; each node's own baseline of work
//!    outside pods.
//!
//! Detection runs on a 2 s span at every tick, so that a hog is flagged within 3 s of its start at
//! 250 ms sampling (a 10 s average would need most of 10 s to cross a threshold); the live view and
//! its statistics use 10 s. [`config::Config`] holds every threshold and its reason.
//!
//! # Peers, and why an idle node changes nothing
//!
//! Nodes with ready endpoints of the workload are the serving nodes. Every reference a node is
//! compared with (sums for shares, means for levels, medians for unattributed CPU and DaemonSet pods)
//! is taken over serving nodes only; a node without endpoints is measured against those references
//! but never contributes to them. Adding, removing or renaming such a node therefore cannot change
//! another node's figures (unless the Service lets it announce: then it is an entry node, and the fair
//! split of the entries changes with it), and sums over nodes are added in ascending order (or as
//! integers) so that the order the nodes arrive in cannot change a bit. Without a workload under test
//! (no cluster knowledge) every node is a serving node with one endpoint and only node-level causes
//! apply.
//!
//! # Noise, pinning and placement
//!
//! kube-proxy picks an endpoint per connection, so the unit of balancing is the connection: the
//! connections the pods accepted in the span when connections are short-lived (a proxy without
//! upstream keep-alive opens one per request), or those held when keep-alive connections carry the
//! load. With `d` such decisions a node's count is `Binomial(d, q)`; the bound of ordinary spread is
//! its exact upper quantile at a family-wise 1e-5 per evaluation ([`noise`]). The enter threshold is
//! that bound, clamped between a floor of 1.25x and a ceiling of 2x (or halfway to "takes
//! everything" for a node that cannot reach 2x). The bound also names the cause: a skew that the
//! decisions explain and chance could have produced is `connection-pinning` (4 keep-alive
//! connections, 3 on one pod); decisions beyond chance mean placement was decided:
//! `pod-concentration`, explained by the Service when it declares `sessionAffinity: ClientIP` or
//! `externalTrafficPolicy: Local`. The same band judges entry: each client connection picks an entry
//! node (the router's ECMP hash), and a node is an ingress hog only when its entry part exceeds its
//! fair part beyond chance, or because the cluster declares it the sole entry (the layer-2
//! announcer).
//!
//! # Causes
//!
//! | cause | raised when (enter; exit) |
//! |---|---|
//! | `connection-pinning` | pod-traffic share >= T(d, q); traffic follows the decisions, count within chance |
//! | `pod-concentration` | pod-traffic share >= T(d, q); decisions beyond chance, declared affinity, or not explaining it |
//! | `ingress-concentration` | entry part (from forwarded NIC bytes) >= T x its fair part and forwarded >= 0.5x the workload's traffic, declared or beyond chance; without a Service read, forwarded >= 0.5x and >= 2x any other node's |
//! | `unattributed-cpu` | process CPU outside pods >= 0.5 cores above the serving peers' median and above the node's own baseline, and >= 2x the median (0.3 cores) |
//! | `colocated-hot-pod` | a pod of another workload >= 0.5 cores (0.35) |
//! | `thermal-throttling` | soft-limit bit, or >= 80 C and frequency capped (< 77 C, no soft limit) |
//! | `memory-pressure` | PSI memory some >= 10 % or MemAvailable <= 10 % (< 5 % and > 15 %) |
//!
//! Traffic and ingress need the workload to carry at least 25 kB/s and a full detection span of
//! history; a workload on hostNetwork makes them unavailable (the pods' bytes are the node's), which
//! the analysis says. Confidence is `level x fingerprint` (see `explain`).
//!
//! [`fixture`] turns a diagnosis fixture (a data-file description of a cluster under load) into
//! ticks, simulating each connection's placement and requests: for this crate's tests, properties,
//! benchmark and `replay` example.
#![forbid(unsafe_code)]

pub mod analysis;
pub mod classify;
pub mod config;
pub mod detector;
pub mod entry;
pub(crate) mod explain;
pub mod fixture;
pub(crate) mod history;
pub mod input;
pub mod noise;
pub mod reading;
pub mod report;
pub mod stats;
pub mod svg;
pub mod verdict;

pub use analysis::{Analysis, NodeAnalysis, Signal, SignalKind, SignalSummary, SignalValue};
pub use config::Config;
pub use detector::{Detector, Evaluation};
pub use input::{
    Announcement, CpuFrequency, CpuJiffies, NicBytes, NodeMemory, NodeRole, NodeSample, PodSample, PressureTotals,
    Relay, ServiceEntry, ServiceType, SessionAffinity, ThrottleFlags, Tick, TrafficPolicy, WorkloadRef,
    WorkloadUnderTest,
};
pub use reading::Reading;
pub use report::{Window, WindowReport};
pub use verdict::{Cause, ChangeKind, Evidence, Remedy, Verdict, VerdictChange};

/// What can go wrong when feeding the diagnosis.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("tick at {now_ms} ms is older than the previous tick at {previous_ms} ms")]
    TimeWentBackwards { previous_ms: i64, now_ms: i64 },
    #[error("node {0} appears twice in one tick")]
    DuplicateNode(String),
    #[error("pod {uid} appears twice on node {node}")]
    DuplicatePod { node: String, uid: String },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("invalid fixture: {0}")]
    Fixture(String),
    #[error("the window ends ({end_ms} ms) before it starts ({start_ms} ms)")]
    EmptyWindow { start_ms: i64, end_ms: i64 },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
