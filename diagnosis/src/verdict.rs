//! What the diagnosis says: a verdict names a node, a cause from a fixed vocabulary, the numbers behind
//! it, a confidence and a next step in plain words. JSON through serde, text through `Display`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a node takes more than its share. The vocabulary is closed: the
/// collector, bakery-top and the export all speak these names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cause {
    /// NIC skew on one node without pod skew: one entry node, such as the MetalLB L2 announcer.
    IngressConcentration,
    /// One pod (or the pods of one node) takes nearly everything: Local traffic policy or session
    /// affinity.
    PodConcentration,
    /// Pod traffic follows skewed connection counts: keep-alive with connection-level balancing.
    ConnectionPinning,
    /// Work outside pods, such as an NFS server or the control plane.
    UnattributedCpu,
    /// Another workload's pod is hot on the node, such as the database.
    ColocatedHotPod,
    ThermalThrottling,
    MemoryPressure,
}

impl Cause {
    pub const ALL: [Cause; 7] = [
        Cause::IngressConcentration,
        Cause::PodConcentration,
        Cause::ConnectionPinning,
        Cause::UnattributedCpu,
        Cause::ColocatedHotPod,
        Cause::ThermalThrottling,
        Cause::MemoryPressure,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::IngressConcentration => "ingress-concentration",
            Self::PodConcentration => "pod-concentration",
            Self::ConnectionPinning => "connection-pinning",
            Self::UnattributedCpu => "unattributed-cpu",
            Self::ColocatedHotPod => "colocated-hot-pod",
            Self::ThermalThrottling => "thermal-throttling",
            Self::MemoryPressure => "memory-pressure",
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One number behind a verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// Stable kebab-case name, e.g. `pod-traffic-share`.
    pub name: String,
    pub value: f64,
    /// `share`, `x expected`, `cores`, `B/s`, `C`, `conns`, `fraction`, ...
    pub unit: String,
}

impl Evidence {
    pub fn new(name: &str, value: f64, unit: &str) -> Self {
        Self { name: name.to_string(), value, unit: unit.to_string() }
    }
}

impl fmt::Display for Evidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} = {} {}", self.name, format_number(self.value), self.unit)
    }
}

/// Numbers in text forms: three significant digits is what a reader compares.
pub fn format_number(value: f64) -> String {
    if !value.is_finite() {
        return value.to_string();
    }
    let magnitude = value.abs();
    if magnitude >= 1e9 {
        format!("{:.2}G", value / 1e9)
    } else if magnitude >= 1e6 {
        format!("{:.2}M", value / 1e6)
    } else if magnitude >= 1e4 {
        format!("{:.1}k", value / 1e3)
    } else if magnitude >= 100.0 {
        format!("{value:.0}")
    } else if magnitude >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.3}")
    }
}

/// What a verdict's next step asks for, as data: what a tool (or a person following a runbook)
/// changes in the cluster. The prose of the next step says the same for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Remedy {
    /// Let client traffic enter at every node instead of one: announce the Service's address over
    /// BGP so the router spreads connections (ECMP), instead of one layer-2 announcer.
    SpreadEntry { service: String },
    /// `externalTrafficPolicy: Local` on the Service, with a replica on every node that announces it,
    /// so that no entry node forwards.
    LocalPolicyWithReplicas { service: String },
    /// `externalTrafficPolicy: Cluster`, so that every entry node balances over every endpoint.
    ClusterPolicy { service: String },
    /// `sessionAffinity: None` on the Service.
    DropSessionAffinity { service: String },
    /// Balance per request rather than per connection: keep-alive off between the client (or the
    /// proxy) and the Service, or far more connections than endpoints.
    SpreadConnections,
    /// Run a replica of the workload on `node` (or move one there from `from`).
    PlaceReplica { workload: String, node: String, from: Option<String> },
    /// Move a pod of another workload off the node.
    MovePod { pod: String, node: String },
    /// Stop or move the work outside pods on the node (an NFS server, a noisy neighbour).
    StopHostWork { node: String },
    /// Cool the board.
    Cool { node: String },
    /// Free memory on the node or give it more.
    RelieveMemory { node: String },
    /// Nothing specific can be changed from what was read: look at what the text says.
    Investigate,
}

impl Remedy {
    /// The action's kebab-case name (`spread-entry`, ...).
    pub fn action(&self) -> &'static str {
        match self {
            Self::SpreadEntry { .. } => "spread-entry",
            Self::LocalPolicyWithReplicas { .. } => "local-policy-with-replicas",
            Self::ClusterPolicy { .. } => "cluster-policy",
            Self::DropSessionAffinity { .. } => "drop-session-affinity",
            Self::SpreadConnections => "spread-connections",
            Self::PlaceReplica { .. } => "place-replica",
            Self::MovePod { .. } => "move-pod",
            Self::StopHostWork { .. } => "stop-host-work",
            Self::Cool { .. } => "cool",
            Self::RelieveMemory { .. } => "relieve-memory",
            Self::Investigate => "investigate",
        }
    }
}

/// A diagnosis of one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub node: String,
    pub cause: Cause,
    /// In [0, 1]: how far past its threshold the evidence is, times how completely the fingerprint of
    /// the cause matches (see the crate docs).
    pub confidence: f64,
    /// When the verdict was raised (the tick that completed `enter_after`), epoch ms.
    pub since_ms: i64,
    /// When the condition was first seen above its enter threshold (start of the pending run).
    pub first_seen_ms: i64,
    /// What the verdict is about beyond the node, e.g. the hot pod.
    pub subject: Option<String>,
    /// One sentence that ties the numbers to the cause.
    pub summary: String,
    pub evidence: Vec<Evidence>,
    /// What to do or check next, in plain words.
    pub next_step: String,
    /// The next step as data.
    #[serde(default = "investigate")]
    pub remedy: Remedy,
    /// What the explanation and the next step rest on, as read from the cluster (the Service, the
    /// MetalLB status that names the announcer, ...), one line each.
    #[serde(default)]
    pub read: Vec<String>,
}

fn investigate() -> Remedy {
    Remedy::Investigate
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} (confidence {:.2})", self.node, self.cause, self.confidence)?;
        if let Some(subject) = &self.subject {
            write!(f, " [{subject}]")?;
        }
        writeln!(f)?;
        writeln!(f, "  why: {}", self.summary)?;
        let evidence: Vec<String> = self.evidence.iter().map(ToString::to_string).collect();
        writeln!(f, "  evidence: {}", evidence.join("; "))?;
        if !self.read.is_empty() {
            writeln!(f, "  read: {}", self.read.join("; "))?;
        }
        write!(f, "  next step: {}", self.next_step)
    }
}

/// A verdict raised or cleared at one tick.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerdictChange {
    pub node: String,
    pub cause: Cause,
    pub change: ChangeKind,
    pub at_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChangeKind {
    Entered,
    Cleared,
}

impl fmt::Display for VerdictChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = match self.change {
            ChangeKind::Entered => "raised",
            ChangeKind::Cleared => "cleared",
        };
        write!(f, "{} {} on {} at {} ms", verb, self.cause, self.node, self.at_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_serialise_to_the_issue_vocabulary() {
        let names: Vec<String> =
            Cause::ALL.iter().map(|c| serde_json::to_value(c).expect("serialises").to_string()).collect();
        assert_eq!(
            names,
            [
                "\"ingress-concentration\"",
                "\"pod-concentration\"",
                "\"connection-pinning\"",
                "\"unattributed-cpu\"",
                "\"colocated-hot-pod\"",
                "\"thermal-throttling\"",
                "\"memory-pressure\""
            ]
        );
        for cause in Cause::ALL {
            assert_eq!(serde_json::to_value(cause).expect("serialises"), cause.name());
        }
    }

    #[test]
    fn numbers_keep_three_significant_digits() {
        assert_eq!(format_number(2.25), "2.250");
        assert_eq!(format_number(81.96), "82.0");
        assert_eq!(format_number(3_456_789.0), "3.46M");
        assert_eq!(format_number(45_000.0), "45.0k");
    }
}
