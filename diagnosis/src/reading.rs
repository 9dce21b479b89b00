//! The figures behind each verdict, per node and tick, that a window report keeps for its chart's evidence panels.

use serde::{Deserialize, Serialize};

use crate::analysis::{NodeAnalysis, Signal};
use crate::verdict::Cause;

/// One node's figure behind a verdict at one tick, over the detection span that ends there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reading {
    /// The node's share of the serving nodes' NIC bytes ([`Signal::Nic`]): an entry node's NICs
    /// carry everything it takes in and forwards on top of its own pods' traffic.
    NicShare,
    /// NIC bytes forwarded for pods on other nodes, B/s ([`Signal::ForwardedNic`]).
    ForwardedNic,
    /// Established inbound connections to the workload's pods ([`Signal::Connections`]): traffic
    /// pinned at connect time follows them.
    Connections,
    /// Process CPU outside every pod, cores ([`Signal::UnattributedCpu`]).
    UnattributedCpu,
    /// CPU of the node's hottest pod of another workload, cores.
    HottestOtherPodCpu,
    /// Hottest CPU temperature, degrees Celsius ([`Signal::Temperature`]).
    Temperature,
    /// CPU frequency as a fraction of its maximum ([`Signal::Frequency`]).
    Frequency,
    /// Used memory as a fraction of MemTotal ([`Signal::MemoryUsed`]).
    MemoryUsed,
    /// Fraction of the time some task stalled on memory ([`Signal::MemoryPressure`]).
    MemoryPressure,
}

impl Reading {
    pub const ALL: [Reading; 9] = [
        Reading::NicShare,
        Reading::ForwardedNic,
        Reading::Connections,
        Reading::UnattributedCpu,
        Reading::HottestOtherPodCpu,
        Reading::Temperature,
        Reading::Frequency,
        Reading::MemoryUsed,
        Reading::MemoryPressure,
    ];

    /// Its kebab-case name, as in JSON and in the chart's `data-signal`.
    pub fn name(self) -> &'static str {
        match self {
            Self::NicShare => "nic-share",
            Self::ForwardedNic => "forwarded-nic",
            Self::Connections => "connections",
            Self::UnattributedCpu => "unattributed-cpu",
            Self::HottestOtherPodCpu => "hottest-other-pod-cpu",
            Self::Temperature => "temperature",
            Self::Frequency => "frequency",
            Self::MemoryUsed => "memory-used",
            Self::MemoryPressure => "memory-pressure",
        }
    }

    pub fn unit(self) -> &'static str {
        match self {
            Self::NicShare => "share",
            Self::ForwardedNic => "B/s",
            Self::Connections => "conns",
            Self::UnattributedCpu | Self::HottestOtherPodCpu => "cores",
            Self::Temperature => "C",
            Self::Frequency | Self::MemoryUsed | Self::MemoryPressure => "fraction",
        }
    }

    /// The signal it is read from, if it is one.
    fn signal(self) -> Option<Signal> {
        match self {
            Self::NicShare => Some(Signal::Nic),
            Self::ForwardedNic => Some(Signal::ForwardedNic),
            Self::Connections => Some(Signal::Connections),
            Self::UnattributedCpu => Some(Signal::UnattributedCpu),
            Self::HottestOtherPodCpu => None,
            Self::Temperature => Some(Signal::Temperature),
            Self::Frequency => Some(Signal::Frequency),
            Self::MemoryUsed => Some(Signal::MemoryUsed),
            Self::MemoryPressure => Some(Signal::MemoryPressure),
        }
    }

    /// Its value for `node`; `None` when the node has no such figure in the span.
    pub fn of(self, node: &NodeAnalysis) -> Option<f64> {
        let value = match (self, self.signal()) {
            (Self::NicShare, _) => node.share(Signal::Nic),
            (Self::HottestOtherPodCpu, _) => Some(node.hottest_other_pod_cores),
            (_, Some(signal)) => node.value(signal),
            (_, None) => None,
        };
        value.filter(|v| v.is_finite())
    }

    /// The readings `cause`'s evidence rests on, in the order the chart stacks them. The traffic
    /// causes name the connections only: their pod-traffic share is the chart's top panel already.
    pub fn cited_by(cause: Cause) -> &'static [Reading] {
        match cause {
            Cause::IngressConcentration => &[Self::NicShare, Self::ForwardedNic],
            Cause::PodConcentration | Cause::ConnectionPinning => &[Self::Connections],
            Cause::UnattributedCpu => &[Self::UnattributedCpu],
            Cause::ColocatedHotPod => &[Self::HottestOtherPodCpu],
            Cause::ThermalThrottling => &[Self::Temperature, Self::Frequency],
            Cause::MemoryPressure => &[Self::MemoryUsed, Self::MemoryPressure],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_their_json_names() {
        for reading in Reading::ALL {
            assert_eq!(serde_json::to_value(reading).expect("serialises"), reading.name());
        }
    }

    #[test]
    fn every_cause_cites_a_reading() {
        for cause in Cause::ALL {
            assert!(!Reading::cited_by(cause).is_empty(), "{cause}");
        }
    }
}
