//! Every threshold of the diagnosis in one place, with the reason for its default.
//!
//! All fields have defaults (`#[serde(default)]`), so a configuration file only names what it changes.

use serde::{Deserialize, Serialize};

/// Spans, persistence and thresholds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The live view: shares and statistics over the last 10 s.
    pub live_span_ms: i64,
    /// The detection span: flags are evaluated on the last 2 s at every tick. A 10 s average crosses a
    /// threshold only once most of its span holds the hog, which is far too late for "flagged within
    /// 3 s"; 2 s (8 samples at 250 ms) leaves ~1 s of the budget for `enter_after` and still holds a
    /// hundred requests at 60 req/s. Persistence comes from the hysteresis, not from a long average.
    pub detect_span_ms: i64,
    /// Consecutive evaluations above the enter threshold before a verdict is raised ("pending for").
    pub enter_after: u32,
    /// Consecutive evaluations below the exit threshold before a verdict clears ("keep firing for").
    pub exit_after: u32,
    pub traffic: TrafficThresholds,
    pub ingress: IngressThresholds,
    pub unattributed: UnattributedThresholds,
    pub hot_pod: HotPodThresholds,
    pub thermal: ThermalThresholds,
    pub memory: MemoryThresholds,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            live_span_ms: 10_000,
            detect_span_ms: 2_000,
            enter_after: 3,
            exit_after: 8,
            traffic: TrafficThresholds::default(),
            ingress: IngressThresholds::default(),
            unattributed: UnattributedThresholds::default(),
            hot_pod: HotPodThresholds::default(),
            thermal: ThermalThresholds::default(),
            memory: MemoryThresholds::default(),
        }
    }
}

/// The workload-traffic skew (causes `connection-pinning` and `pod-concentration`). See
/// [`crate::noise`] for the formula.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrafficThresholds {
    /// Family-wise false-alarm rate of the spread bound at one evaluation: the chance that ordinary
    /// random spread of the balancing decisions puts any node of a balanced cluster above its bound
    /// (Bonferroni over the nodes compared). 1e-5 rather than the customary 1 %: evaluations repeat
    /// every 250 ms on overlapping spans, so over a 30 s load test a cluster meets about fifteen
    /// independent chances on each node, and a tool that a user runs again and again must not cry
    /// wolf once in a few hundred runs. At 200 decisions over 3 endpoints the bound is then 1.44x; a
    /// real hog sits far above.
    pub alpha: f64,
    /// Materiality floor: a normalised share below this is never reported, however significant.
    pub floor: f64,
    /// Materiality ceiling: a normalised share at or above `min(ceiling, (1 + q) / (2q))` is always
    /// reported, however few connections there are; the connection model then names the cause.
    pub ceiling: f64,
    /// The exit threshold sits this fraction of the way from the enter threshold back to 1 (fair share).
    pub exit_fraction: f64,
    /// Traffic "follows the connections" when the connection excess covers this fraction of the
    /// traffic excess: (k - 1) >= explained * (s - 1).
    pub explained: f64,
    /// "Nearly everything": the node's pods carry at least this share of the workload's traffic.
    pub nearly_all: f64,
    /// The workload's pod traffic (rx + tx) below which no traffic or ingress verdict is raised: a
    /// trickle of requests is spread by chance alone, whatever the statistics say (a page view a
    /// second of a 25 kB page).
    pub min_workload_bps: f64,
    /// A ready endpoint that gets less than this fraction of its expected share while the workload
    /// is busy is reported as starved.
    pub starved_fraction: f64,
}

impl Default for TrafficThresholds {
    fn default() -> Self {
        Self {
            alpha: 1e-5,
            floor: 1.25,
            ceiling: 2.0,
            exit_fraction: 0.5,
            explained: 0.7,
            nearly_all: 0.8,
            min_workload_bps: 25_000.0,
            starved_fraction: 0.1,
        }
    }
}

/// `ingress-concentration`: NIC skew without pod skew, measured as NIC bytes that the node's own pods
/// do not account for ("forwarded" bytes, [`crate::Signal::ForwardedNic`]).
///
/// An entry node that takes a part `e` of the client connections in forwards `e (1 - q)` of the
/// workload's traffic to pods elsewhere, in and out again: forwarded bytes of `2 e (1 - q) x` the
/// workload's traffic (q: its share of the endpoints it may forward to). With a Service read from the
/// cluster, a node is judged by its entry part `e`, estimated from its forwarded bytes, against its
/// fair part (even entry over the nodes that may announce, [`crate::entry`]), with the same noise band
/// as the pod traffic; without one, by today's rule: the node's forwarded bytes against the next
/// node's (`dominance`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngressThresholds {
    /// Forwarded bytes as a fraction of the workload's pod traffic, to enter.
    pub enter_forwarded: f64,
    /// Below this fraction the verdict clears.
    pub exit_forwarded: f64,
    /// Without a Service read: the node's forwarded bytes must be at least this multiple of any other
    /// node's (one entry node).
    pub dominance: f64,
    /// Without a Service read: below this multiple the verdict clears.
    pub exit_dominance: f64,
    /// The workload's pod bytes must be at least this fraction of the serving nodes' NIC bytes, or the
    /// NIC bytes are dominated by other traffic (etcd, NFS) and say nothing about the workload (an idle
    /// cluster's etcd traffic must not look like ingress).
    pub min_workload_fraction: f64,
}

impl Default for IngressThresholds {
    fn default() -> Self {
        Self {
            enter_forwarded: 0.5,
            exit_forwarded: 0.3,
            dominance: 2.0,
            exit_dominance: 1.5,
            min_workload_fraction: 0.2,
        }
    }
}

/// `unattributed-cpu`: CPU in process context outside every pod, compared with the other serving nodes
/// and with the node's own baseline (k3s servers run their control plane outside pods and idle
/// higher than workers: that is their normal, not a hog).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UnattributedThresholds {
    /// Excess over the peers' median, in cores, to enter (half a core: 12.5 % of a Pi 5).
    pub enter_excess_cores: f64,
    /// Excess below which the verdict clears.
    pub exit_excess_cores: f64,
    /// The node's unattributed CPU must also be at least this multiple of the peers' median.
    pub min_ratio: f64,
    /// The node's own baseline is the lowest unattributed CPU it showed over a detection span outside
    /// load-test windows; it follows a lower value at once and a higher one only slowly, with this
    /// time constant, and not while the node has such a verdict pending or active: a node's normal
    /// may change over the day, a hog must not become its own reference.
    pub baseline_rise_time_constant_ms: i64,
    /// How long the baseline must have learnt before the cause can be raised on the node: until then
    /// a server's usual control-plane work would look like a hog next to the workers.
    pub baseline_min_ms: i64,
}

impl Default for UnattributedThresholds {
    fn default() -> Self {
        Self {
            enter_excess_cores: 0.5,
            exit_excess_cores: 0.3,
            min_ratio: 2.0,
            baseline_rise_time_constant_ms: 600_000,
            baseline_min_ms: 4_000,
        }
    }
}

/// `colocated-hot-pod`: a pod of another workload burns CPU on the node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HotPodThresholds {
    /// A pod at or above this many cores is hot (half a core: 12.5 % of a Pi 5).
    pub enter_cores: f64,
    pub exit_cores: f64,
    /// A DaemonSet pod is only hot if it also burns this multiple of its siblings' median on the
    /// serving nodes (a DaemonSet busy everywhere makes no node a hog); without a workload under test,
    /// any pod must burn this multiple of the median of the other nodes' hottest pods.
    pub daemon_set_ratio: f64,
}

impl Default for HotPodThresholds {
    fn default() -> Self {
        Self { enter_cores: 0.5, exit_cores: 0.35, daemon_set_ratio: 2.0 }
    }
}

/// `thermal-throttling`. The Pi 5 firmware starts throttling at 80 C and caps hard at 85 C
/// (raspberrypi/documentation, "Frequency management and thermal control").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ThermalThresholds {
    pub enter_celsius: f64,
    pub exit_celsius: f64,
    /// Current/maximum frequency at or below this counts as capped.
    pub capped_ratio: f64,
}

impl Default for ThermalThresholds {
    fn default() -> Self {
        Self { enter_celsius: 80.0, exit_celsius: 77.0, capped_ratio: 0.9 }
    }
}

/// `memory-pressure`, from PSI (Documentation/accounting/psi.rst) and MemAvailable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MemoryThresholds {
    /// Fraction of the span in which some task stalled on memory, to enter.
    pub enter_stall: f64,
    pub exit_stall: f64,
    /// MemAvailable / MemTotal at or below this enters.
    pub enter_available: f64,
    pub exit_available: f64,
}

impl Default for MemoryThresholds {
    fn default() -> Self {
        Self { enter_stall: 0.10, exit_stall: 0.05, enter_available: 0.10, exit_available: 0.15 }
    }
}
