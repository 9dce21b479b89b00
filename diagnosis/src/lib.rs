//! bakery-diagnosis: names the node that takes more than its share of a workload's traffic during a
//! load test, says why, and shows the numbers behind it.
//!
//! This crate is the pure core of issue 4. It does no IO: no sockets, no files, no clocks. The
//! collector converts what the agents stream into [`Tick`]s (raw cumulative counters, sample
//! timestamps, the workload under test and its ready endpoints per node) and feeds them to a
//! [`Detector`]; each tick returns an [`Evaluation`] with the live shares and the raised verdicts. A
//! finished window is replayed into a [`WindowReport`] (JSON, text, and an SVG chart through [`svg`]).
//! The same ticks always give the same verdicts, bit for bit.
//!
//! # Pipeline
//!
//! 1. `history`: per-node ring of reset-corrected counters, pods sorted by UID (the increase of any
//!    counter over any span is one subtraction; two points join in one pass).
//! 2. [`analysis`]: over a span, every node's signals (pod rx/tx bytes, established inbound
//!    connections, NIC rx/tx, NIC bytes its pods do not account for, CPU incl. softirq, unattributed
//!    CPU, memory growth, PSI, temperature, frequency, throttling), each with its share, its share
//!    normalised by the expected share `q = e / E` (the node's share of ready endpoints), and per
//!    signal max/mean and Jain's index `J = (sum x)^2 / (n sum x^2)` over the serving nodes.
//! 3. [`noise`]: the enter threshold of the traffic skew from the binomial spread of `c` keep-alive
//!    connections over the endpoints, framed by a materiality floor (1.25x) and ceiling (2x).
//! 4. [`classify`]: per node and family of causes, the enter/exit conditions and the cause that
//!    explains the evidence; evidence, confidence and next step for raised verdicts.
//! 5. [`detector`]: hysteresis per (node, family): raised after 3 consecutive evaluations above the
//!    enter threshold, cleared after 8 below a lower exit threshold.
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
//! another node's figures, and sums over nodes are added in ascending order (or as integers) so that
//! the order the nodes arrive in cannot change a bit. Without a workload under test (no cluster
//! knowledge) every node is a serving node with one endpoint and only node-level causes apply.
//!
//! # Noise and pinning
//!
//! kube-proxy balances connections, not requests, so with keep-alive the connection is the unit of
//! balancing and a node's connection count is `Binomial(c, q)`. The bound of ordinary spread is the
//! exact binomial upper quantile at a family-wise 1 % ([`noise`]); it gives 1.59x at c = 50 over 3
//! pods (field guide Monte-Carlo p99: 1.56) and is unreachable at c = 4. The enter threshold is that
//! bound, clamped between a floor of 1.25x (smaller skews are not worth a verdict however many
//! connections) and a ceiling of 2x (or halfway to "takes everything" for a node that cannot reach
//! 2x): a skew that large is reported whatever the connection count. The bound then also names the
//! cause: a flagged skew that the connection counts explain and that chance could have produced is
//! `connection-pinning` (4 connections, 3 on one pod: 2.25x, reported as pinning, not suppressed as
//! noise); a connection count beyond the bound means placement was decided, not random
//! (`pod-concentration`: affinity or a Local policy). At c = 50 the ordinary spread (1.21x on average)
//! stays under 1.59x and nothing is flagged.
//!
//! # Causes
//!
//! | cause | raised when (enter; exit) |
//! |---|---|
//! | `connection-pinning` | pod-traffic share >= T(c, q); traffic follows connections, count within chance |
//! | `pod-concentration` | pod-traffic share >= T(c, q); connections beyond chance or not explaining it |
//! | `ingress-concentration` | NIC bytes not accounted for by the node's pods >= 0.5x the workload's traffic and >= 2x any other node's (0.3x, 1.5x) |
//! | `unattributed-cpu` | process CPU outside pods >= 0.5 cores above the serving peers' median and >= 2x it (0.3 cores) |
//! | `colocated-hot-pod` | a pod of another workload >= 0.5 cores (0.35) |
//! | `thermal-throttling` | soft-limit bit, or >= 80 C and frequency capped (< 77 C, no soft limit) |
//! | `memory-pressure` | PSI memory some >= 10 % or MemAvailable <= 10 % (< 5 % and > 15 %) |
//!
//! Confidence is `level x fingerprint`: `level` is 0.3 at the exit threshold, 0.6 at the enter
//! threshold and 0.9 one gap above it; `fingerprint` drops below 1 when a mark of the cause is missing
//! (e.g. pinning with every connection on one node, where affinity cannot be excluded yet).
//!
//! [`scenario`] turns a data-file description of a cluster under load into ticks: the fixtures of the
//! scenario tests, the benchmark, and demos.
#![forbid(unsafe_code)]

pub mod analysis;
pub mod classify;
pub mod config;
pub mod detector;
pub mod entry;
pub(crate) mod explain;
pub(crate) mod history;
pub mod input;
pub mod noise;
pub mod report;
pub mod scenario;
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
    #[error("invalid scenario: {0}")]
    Scenario(String),
    #[error("the window ends ({end_ms} ms) before it starts ({start_ms} ms)")]
    EmptyWindow { start_ms: i64, end_ms: i64 },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
