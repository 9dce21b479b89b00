//! Assembles one [`Sample`] from every signal module.
//!
//! A failing signal is listed as unavailable (and logged once per cause); it
//! never aborts the sample. [`Sampler::sample_into`] writes a sample over
//! the last one, keeping its lists and strings (and each signal's own
//! buffers are kept in the sampler), so that sampling the same node again
//! allocates next to nothing.

use std::fmt::Write as _;
use std::sync::Arc;
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
use crate::pods::{Pod, PodTracker, PodsReading, ScanPolicy};
use crate::pressure::{self, Pressure};
use crate::reuse::{Refill, set_str};
use crate::roots::HostRoots;
use crate::signal::{LogOnce, SignalError, SignalResult, Unavailable};
use crate::thermal::{self, ThermalScratch, Thermals};
use crate::throttle::{self, Throttle, ThrottleScratch};

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
    /// Shared, so that a sample borrows it while the sampler changes.
    roots: Arc<HostRoots>,
    node_name: String,
    pods: PodTracker,
    /// The pods' reading, its buffers kept between samples.
    pods_reading: PodsReading,
    node_files: NodeFiles,
    scratch: NodeScratch,
    interface_kinds: InterfaceKinds,
    /// `--node-cgroup`: the node's CPU, memory and pressure come from it.
    node_cgroup: Option<NodeCgroup>,
    failures: Failures,
}

/// What the node signals keep between samples (see each one's reader).
#[derive(Debug, Default)]
struct NodeScratch {
    thermal: ThermalScratch,
    cpus: Vec<(u32, String)>,
    throttle: ThrottleScratch,
    interface_errors: Vec<SignalError>,
}

/// How failures are counted and logged.
#[derive(Debug, Default)]
struct Failures {
    logged: LogOnce,
    parse_errors_total: u64,
    /// The reason of the failure at hand, written into a buffer kept
    /// between samples (a signal missing on this node fails every sample).
    reason: String,
}

impl Sampler {
    pub fn new(roots: HostRoots, node_name: impl Into<String>) -> Self {
        Self {
            roots: Arc::new(roots),
            node_name: node_name.into(),
            pods: PodTracker::new(),
            pods_reading: PodsReading::default(),
            node_files: NodeFiles::new(),
            scratch: NodeScratch::default(),
            interface_kinds: InterfaceKinds::new(ScanPolicy::EXACT.process_rescan),
            node_cgroup: None,
            failures: Failures::default(),
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
        let mut sample = Sample::default();
        self.sample_into(&mut sample, timestamp_ms);
        sample
    }

    /// Takes one sample stamped `timestamp_ms` into `sample`, overwriting
    /// last sample's readings in place: a streaming agent that keeps one
    /// `Sample` allocates nearly nothing per sample once the node's
    /// interfaces, sensors and pods are the same as last time.
    pub fn sample_into(&mut self, sample: &mut Sample, timestamp_ms: i64) {
        self.sample_at(sample, timestamp_ms, Instant::now());
    }

    /// [`Self::sample_into`] at `now`, the time every interval (the `/proc`
    /// walk, the refreshes, the tallies' ages) is counted from.
    pub fn sample_at(&mut self, sample: &mut Sample, timestamp_ms: i64, now: Instant) {
        let roots = Arc::clone(&self.roots);
        set_str(&mut sample.node_name, &self.node_name);
        sample.timestamp_ms = timestamp_ms;
        let mut unavailable = Refill::new(&mut sample.unavailable);
        let failures = &mut self.failures;
        let files = &mut self.node_files;
        files.begin_sample(now);
        sample.node_cgroup = None;
        match self.node_cgroup.as_mut() {
            Some(node_cgroup) => {
                let reading = node_cgroup.read(&roots, files);
                sample.node_cgroup = Some(reading.source);
                sample.cpu = failures.keep("cpu", reading.cpu, &mut unavailable);
                sample.memory = failures.keep("memory", reading.memory, &mut unavailable);
                sample.pressure = failures.keep("pressure", reading.pressure, &mut unavailable).unwrap_or_default();
            }
            None => {
                let mut cpu = sample.cpu.take().unwrap_or_default();
                let read = cpu::read_into(&roots, files, &mut cpu).map(|()| cpu);
                sample.cpu = failures.keep("cpu", read, &mut unavailable);
                sample.memory = failures.keep("memory", memory::read(&roots, files), &mut unavailable);
                let read = pressure::read_into(&roots, files, &mut sample.pressure);
                failures.keep_into("pressure", read, &mut sample.pressure, &mut unavailable);
            }
        }
        let scratch = &mut self.scratch;
        let read = thermal::read_into(&roots, files, &mut scratch.thermal, &mut sample.thermals);
        failures.keep_into("thermal", read, &mut sample.thermals, &mut unavailable);
        let read = cpufreq::read_into(&roots, files, &mut scratch.cpus, &mut sample.cpu_frequencies);
        failures.keep_into("cpufreq", read, &mut sample.cpu_frequencies, &mut unavailable);
        sample.throttle =
            failures.keep("throttle", throttle::read_with(&roots, files, &mut scratch.throttle), &mut unavailable);
        let read = net::read_into(&roots, files, &mut sample.interfaces);
        let interfaces_read = read.is_ok();
        failures.keep_into("network", read, &mut sample.interfaces, &mut unavailable);
        sample.conntrack = failures.keep("conntrack", conntrack::read(&roots, files), &mut unavailable);
        files.end_sample();
        let node_interfaces = interfaces_read.then_some(sample.interfaces.as_slice());
        self.read_pods(&roots, node_interfaces, now, &mut sample.pods, &mut unavailable);
        // After the pods: the link dump their veth mapping makes is where a
        // live node's interface kinds come from.
        let errors = &mut self.scratch.interface_errors;
        errors.clear();
        let links = self.pods.link_kinds();
        self.interface_kinds.apply(&roots, &mut sample.interfaces, links, now, errors);
        for error in errors.iter() {
            self.failures.note("interface kinds", error);
        }
        drop(unavailable);
        sample.parse_errors_total = self.failures.parse_errors_total;
    }

    /// The pods into `pods`, overwritten in place (see
    /// [`PodTracker::read_into`]); none when `/proc` cannot be walked.
    fn read_pods(
        &mut self,
        roots: &HostRoots,
        node_interfaces: Option<&[Interface]>,
        now: Instant,
        pods: &mut Vec<Pod>,
        unavailable: &mut Refill<'_, Unavailable>,
    ) {
        self.pods_reading.pods = std::mem::take(pods);
        let reading = &mut self.pods_reading;
        let read = self.pods.read_into(roots, node_interfaces, now, reading);
        *pods = std::mem::take(&mut reading.pods);
        match self.failures.keep("pods", read, unavailable) {
            Some(()) => {
                for error in &reading.errors {
                    self.failures.note("pods", error);
                }
            }
            None => pods.clear(),
        }
    }
}

impl Failures {
    /// The value of a signal that was read, or `None` after listing why it
    /// could not be in `unavailable`.
    fn keep<T>(
        &mut self,
        signal: &str,
        result: SignalResult<T>,
        unavailable: &mut Refill<'_, Unavailable>,
    ) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                self.note(signal, &error);
                let entry = unavailable.next_slot();
                set_str(&mut entry.signal, signal);
                set_str(&mut entry.reason, &self.reason);
                None
            }
        }
    }

    /// [`Self::keep`] for a reading made in place: emptied when it failed.
    fn keep_into<T: Default>(
        &mut self,
        signal: &str,
        result: SignalResult<()>,
        reading: &mut T,
        unavailable: &mut Refill<'_, Unavailable>,
    ) {
        if self.keep(signal, result, unavailable).is_none() {
            *reading = T::default();
        }
    }

    /// Counts malformed input and logs each distinct cause once; the
    /// reason is left in `self.reason`.
    fn note(&mut self, signal: &str, error: &SignalError) {
        if error.is_malformed() {
            self.parse_errors_total += 1;
        }
        self.reason.clear();
        // Writing to a String cannot fail.
        let _ = write!(self.reason, "{error}");
        let reason = self.reason.as_str();
        if self.logged.first_time(signal, reason) {
            match error {
                SignalError::Absent { .. } => tracing::info!(signal, %reason, "signal unavailable on this node"),
                _ => tracing::warn!(signal, %reason, "signal could not be read; the rest of the sample is kept"),
            }
        }
    }
}
