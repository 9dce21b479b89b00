//! Assembles one [`Sample`] from every signal module.
//!
//! A failing signal is listed as unavailable (and logged once per cause); it
//! never aborts the sample.

use std::time::Instant;

use serde::Serialize;

use crate::conntrack::{self, Conntrack};
use crate::cpu::{self, CpuStat};
use crate::cpufreq::{self, CpuFrequency};
use crate::iface_kind::InterfaceKinds;
use crate::memory::{self, Memory};
use crate::net::{self, Interface};
use crate::node_cgroup::{NodeCgroup, NodeCgroupSource};
use crate::node_files::NodeFiles;
use crate::pods::{Pod, PodTracker, ScanPolicy};
use crate::pressure::{self, Pressure};
use crate::roots::HostRoots;
use crate::signal::{LogOnce, SignalError, SignalResult, Unavailable};
use crate::thermal::{self, Thermals};
use crate::throttle::{self, Throttle};

/// One reading of the node. Counters are raw and cumulative.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Sample {
    pub node_name: String,
    /// Unix epoch milliseconds.
    pub timestamp_ms: i64,
    pub cpu: Option<CpuStat>,
    pub memory: Option<Memory>,
    pub pressure: Vec<Pressure>,
    /// Where `cpu`, `memory` and `pressure` came from when they are a
    /// cgroup's (`--node-cgroup`); left out when they are the host's `/proc`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_cgroup: Option<NodeCgroupSource>,
    pub thermals: Thermals,
    pub cpu_frequencies: Vec<CpuFrequency>,
    pub throttle: Option<Throttle>,
    pub interfaces: Vec<Interface>,
    pub conntrack: Option<Conntrack>,
    pub pods: Vec<Pod>,
    pub unavailable: Vec<Unavailable>,
    /// Malformed files met since the agent started.
    pub parse_errors_total: u64,
}

/// The signal names used in [`Unavailable`] and in the hello's capabilities.
pub const SIGNALS: &[&str] =
    &["cpu", "memory", "pressure", "thermal", "cpufreq", "throttle", "network", "conntrack", "pods"];

/// Samples one node through its host root, keeping what persists between
/// samples: the pod cache, the error count and what was already logged.
#[derive(Debug)]
pub struct Sampler {
    roots: HostRoots,
    node_name: String,
    pods: PodTracker,
    node_files: NodeFiles,
    interface_kinds: InterfaceKinds,
    /// `--node-cgroup`: the node's CPU, memory and pressure come from it.
    node_cgroup: Option<NodeCgroup>,
    logged: LogOnce,
    parse_errors_total: u64,
}

impl Sampler {
    pub fn new(roots: HostRoots, node_name: impl Into<String>) -> Self {
        Self {
            roots,
            node_name: node_name.into(),
            pods: PodTracker::new(),
            node_files: NodeFiles::new(),
            interface_kinds: InterfaceKinds::new(ScanPolicy::EXACT.process_rescan),
            node_cgroup: None,
            logged: LogOnce::default(),
            parse_errors_total: 0,
        }
    }

    /// Scans pods with `policy` (see [`ScanPolicy`]); without it, every
    /// scan reads everything afresh ([`ScanPolicy::EXACT`]).
    /// The node's directories (thermal zones, hwmon, CPUs), and the sysfs
    /// entries of its interfaces when their kinds come from there, are then
    /// read again as often as `/proc` is walked for pods.
    pub fn with_scan_policy(mut self, policy: ScanPolicy) -> Self {
        self.pods = PodTracker::with_policy(policy);
        self.node_files = NodeFiles::with_relist(policy.process_rescan);
        self.interface_kinds = InterfaceKinds::new(policy.process_rescan);
        self
    }

    /// Reads the node's CPU, memory and pressure from `cgroup` instead of
    /// the host's `/proc` (see [`crate::node_cgroup`]).
    pub fn with_node_cgroup(mut self, cgroup: NodeCgroup) -> Self {
        self.node_cgroup = Some(cgroup);
        self
    }

    pub fn roots(&self) -> &HostRoots {
        &self.roots
    }

    pub fn node_name(&self) -> &str {
        &self.node_name
    }

    /// Takes one sample stamped `timestamp_ms`.
    pub fn sample(&mut self, timestamp_ms: i64) -> Sample {
        let mut unavailable = Vec::new();
        let roots = self.roots.clone();
        let mut sample = Sample { node_name: self.node_name.clone(), timestamp_ms, ..Sample::default() };
        let files = &mut self.node_files;
        files.begin_sample(Instant::now());
        let (cpu, memory, pressure) = match self.node_cgroup.as_mut() {
            Some(node_cgroup) => {
                let reading = node_cgroup.read(&roots, files);
                sample.node_cgroup = Some(reading.source);
                (reading.cpu, reading.memory, reading.pressure)
            }
            None => (cpu::read(&roots, files), memory::read(&roots, files), pressure::read(&roots, files)),
        };
        let thermals = thermal::read(&roots, files);
        let cpu_frequencies = cpufreq::read(&roots, files);
        let throttle = throttle::read(&roots, files);
        let interfaces = net::read(&roots, files);
        let conntrack = conntrack::read(&roots, files);
        files.end_sample();
        sample.cpu = self.keep("cpu", cpu, &mut unavailable);
        sample.memory = self.keep("memory", memory, &mut unavailable);
        sample.pressure = self.keep("pressure", pressure, &mut unavailable).unwrap_or_default();
        sample.thermals = self.keep("thermal", thermals, &mut unavailable).unwrap_or_default();
        sample.cpu_frequencies = self.keep("cpufreq", cpu_frequencies, &mut unavailable).unwrap_or_default();
        sample.throttle = self.keep("throttle", throttle, &mut unavailable);
        let interfaces_read = interfaces.is_ok();
        sample.interfaces = self.keep("network", interfaces, &mut unavailable).unwrap_or_default();
        sample.conntrack = self.keep("conntrack", conntrack, &mut unavailable);
        let node_interfaces = sample.interfaces.as_slice();
        let now = Instant::now();
        let pods = self.pods.read_with_node(&roots, interfaces_read.then_some(node_interfaces), now);
        if let Some(reading) = self.keep("pods", pods, &mut unavailable) {
            for error in reading.errors {
                self.note_failure("pods", &error);
            }
            sample.pods = reading.pods;
        }
        // After the pods: the link dump their veth mapping makes is where a
        // live node's interface kinds come from.
        let mut errors = Vec::new();
        let links = self.pods.link_kinds();
        self.interface_kinds.apply(&roots, &mut sample.interfaces, links, now, &mut errors);
        for error in errors {
            self.note_failure("interface kinds", &error);
        }
        sample.unavailable = unavailable;
        sample.parse_errors_total = self.parse_errors_total;
        sample
    }

    fn keep<T>(&mut self, signal: &str, result: SignalResult<T>, unavailable: &mut Vec<Unavailable>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                self.note_failure(signal, &error);
                unavailable.push(Unavailable { signal: signal.to_string(), reason: error.to_string() });
                None
            }
        }
    }

    /// Counts malformed input and logs each distinct cause once.
    fn note_failure(&mut self, signal: &str, error: &SignalError) {
        if error.is_malformed() {
            self.parse_errors_total += 1;
        }
        let reason = error.to_string();
        if self.logged.first_time(signal, &reason) {
            match error {
                SignalError::Absent { .. } => tracing::info!(signal, %reason, "signal unavailable on this node"),
                _ => tracing::warn!(signal, %reason, "signal could not be read; the rest of the sample is kept"),
            }
        }
    }
}
