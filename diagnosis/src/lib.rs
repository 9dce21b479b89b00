//! bakery-diagnosis: names the node that takes more than its share of a workload's traffic during a
//! load test, says why, and shows the numbers behind it.
//!
//! This crate is the pure core of issue 4. It does no IO: no sockets, no files, no clocks. The
//! collector converts what the agents stream into [`Tick`]s (raw cumulative counters, sample
//! timestamps, the workload under test and its ready endpoints per node) and feeds them to a
//! [`Detector`]; each tick returns an [`Evaluation`] with the live shares and the raised verdicts. A
//! finished window is replayed into a [`WindowReport`] (JSON, text, and an SVG chart through [`svg`]).
//!
//! # Pipeline
//!
//! 1. [`history`](crate::history): per-node ring of reset-corrected counters (increase over any span
//!    is one subtraction).
//! 2. [`analysis`]: over a span, every node's signals (pod rx/tx bytes, established inbound
//!    connections, NIC rx/tx, CPU incl. softirq, unattributed CPU, memory growth, PSI, temperature,
//!    frequency, throttling), each with its share, its share normalised by the expected share (the
//!    node's share of ready endpoints), and per signal max/mean and Jain's index
//!    `J = (sum x)^2 / (n sum x^2)` over the serving nodes. Nodes without endpoints never enter a peer
//!    reference, so an idle node changes nothing.
//! 3. [`noise`]: the enter threshold of the traffic skew, from the binomial spread of `c` keep-alive
//!    connections over the endpoints, framed by a materiality floor (1.25x) and ceiling (2x).
//! 4. [`classify`]: per node and family of causes, enter/exit conditions and the cause that explains
//!    the evidence; evidence, confidence and next step for raised verdicts.
//! 5. [`detector`]: hysteresis (enter after 3 evaluations, leave after 8 below a lower threshold).
//!
//! Detection runs on a 2 s span at every tick so that a hog is flagged within 3 s of its start at
//! 250 ms sampling; the live view and the statistics use 10 s. See [`config::Config`] for every
//! threshold and its reason.
//!
//! [`scenario`] turns a data-file description of a cluster under load into ticks: the fixtures of the
//! scenario tests, the benchmark, and demos.
#![forbid(unsafe_code)]

pub mod analysis;
pub mod classify;
pub mod config;
pub mod detector;
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
    CpuFrequency, CpuJiffies, NicBytes, NodeMemory, NodeRole, NodeSample, PodSample, PressureTotals, ThrottleFlags,
    Tick, WorkloadRef, WorkloadUnderTest,
};
pub use report::{Window, WindowReport};
pub use verdict::{Cause, ChangeKind, Evidence, Verdict, VerdictChange};

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
