//! Expands a scenario into ticks: places each client connection on an entry node and an endpoint as
//! kube-proxy would, draws the requests each connection sends, and accumulates the counters every
//! node and pod would show.

use std::collections::BTreeMap;

use super::{Connections, Entry, Scenario, SplitMix64, WindowSpec, parse_workload};
use crate::input::{
    Announcement, CpuFrequency, CpuJiffies, NicBytes, NodeMemory, NodeRole, NodeSample, PodSample, PressureTotals,
    ThrottleFlags, Tick, TrafficPolicy, WorkloadRef, WorkloadUnderTest,
};
use crate::{Error, Result};

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
const MIB: f64 = 1024.0 * 1024.0;
/// Without keep-alive a request holds its connection for about this long (a few round trips and the
/// page): the connections a pod shows open at a sample.
const REQUEST_SECONDS: f64 = 0.05;

fn active(from_s: f64, until_s: f64, t: f64) -> bool {
    t >= from_s && t < until_s
}

/// Cumulative counters of one node, in fractional units until emitted.
#[derive(Debug, Clone, Default)]
struct NodeCounters {
    user: f64,
    system: f64,
    idle: f64,
    softirq: f64,
    rx: f64,
    tx: f64,
    cpu_stall_us: f64,
    memory_stall_us: f64,
}

#[derive(Debug, Clone, Default)]
struct PodCounters {
    rx: f64,
    tx: f64,
    cpu_us: f64,
    passive_opens: u64,
}

/// One keep-alive connection: where it entered and the pod it was given (`None`: dropped, as a
/// Local-policy entry without an endpoint drops it).
#[derive(Debug, Clone, Copy)]
struct Connection {
    entry: Option<usize>,
    pod: Option<usize>,
}

/// Where connections enter at one instant.
#[derive(Debug, Clone, PartialEq)]
enum EntryNow {
    /// At the chosen pod's own node.
    Direct,
    /// At one of these nodes, picked at random per connection.
    Over(Vec<usize>),
}

/// An expanded scenario: yields one [`Tick`] per sample.
#[derive(Debug, Clone)]
pub struct ScenarioRun {
    scenario: Scenario,
    workload: Option<WorkloadRef>,
    pod_workloads: Vec<Option<WorkloadRef>>,
    /// Indices of the serving pods (workload under test, in listed order).
    serving: Vec<usize>,
    node_index: BTreeMap<String, usize>,
    pod_node: Vec<usize>,
    backend_pod: Option<usize>,
    affinity_pod: Option<usize>,
    nodes: Vec<NodeCounters>,
    pods: Vec<PodCounters>,
    /// The keep-alive connections and what they were placed for.
    connections: Vec<Connection>,
    placed_for: Option<(Connections, EntryNow)>,
    /// Under session affinity: the endpoint each entry node's kube-proxy pinned the client to.
    pinned: BTreeMap<Option<usize>, Option<usize>>,
    rng: SplitMix64,
    step: i64,
    steps: i64,
}

impl Scenario {
    /// Checks every reference (nodes, pods, connection counts) without expanding the series.
    pub fn validate(&self) -> Result<()> {
        self.clone().run().map(|_| ())
    }

    /// Expands the scenario; fails on references to unknown nodes or pods.
    pub fn run(self) -> Result<ScenarioRun> {
        if self.sample_ms <= 0 || self.duration_s.is_nan() || self.duration_s <= 0.0 {
            return Err(Error::Scenario("sample_ms and duration_s must be positive".into()));
        }
        let node_index: BTreeMap<String, usize> =
            self.nodes.iter().enumerate().map(|(i, n)| (n.name.clone(), i)).collect();
        if node_index.len() != self.nodes.len() {
            return Err(Error::Scenario("duplicate node names".into()));
        }
        let find_node =
            |name: &str| node_index.get(name).copied().ok_or_else(|| Error::Scenario(format!("unknown node {name:?}")));
        let pod_node = self.pods.iter().map(|p| find_node(&p.node)).collect::<Result<Vec<_>>>()?;
        let find_pod = |name: &str| {
            self.pods
                .iter()
                .position(|p| p.name == name)
                .ok_or_else(|| Error::Scenario(format!("unknown pod {name:?}")))
        };
        let workload = self.workload.as_deref().map(parse_workload).transpose()?;
        let pod_workloads = self
            .pods
            .iter()
            .map(|p| p.workload.as_deref().map(parse_workload).transpose())
            .collect::<Result<Vec<_>>>()?;
        let serving: Vec<usize> = (0..self.pods.len())
            .filter(|&i| workload.is_some() && pod_workloads[i] == workload && self.pods[i].ready)
            .collect();
        let check_connections = |c: &Option<Connections>| match c {
            Some(Connections::Placed(c)) if c.len() != serving.len() => {
                Err(Error::Scenario(format!("{} connection counts for {} serving pods", c.len(), serving.len())))
            }
            _ => Ok(()),
        };
        let check_announcement = |a: &Announcement| a.nodes().iter().try_for_each(|n| find_node(n).map(|_| ()));
        let mut backend_pod = None;
        let mut affinity_pod = None;
        if let Some(load) = &self.load {
            check_connections(&load.connections)?;
            if let Some(Entry::Node(n)) = &load.entry {
                find_node(n)?;
            }
            if let Some(b) = &load.backend {
                backend_pod = Some(find_pod(&b.pod)?);
            }
            if let Some(p) = &load.affinity_pod {
                affinity_pod = Some(find_pod(p)?);
            }
        }
        if let Some(service) = &self.service {
            check_announcement(&service.announcement)?;
        }
        for phase in &self.phases {
            check_connections(&phase.connections)?;
            if let Some(Entry::Node(n)) = &phase.entry {
                find_node(n)?;
            }
            if let Some(a) = &phase.announcement {
                check_announcement(a)?;
            }
        }
        for w in &self.host_work {
            find_node(&w.node)?;
        }
        for w in &self.pod_work {
            find_pod(&w.pod)?;
        }
        for e in &self.thermal {
            find_node(&e.node)?;
        }
        for e in &self.memory_pressure {
            find_node(&e.node)?;
        }
        for v in &self.expect.verdicts {
            find_node(&v.node)?;
        }
        let steps = (self.duration_s * 1000.0 / self.sample_ms as f64).floor() as i64;
        let nodes = vec![NodeCounters::default(); self.nodes.len()];
        let pods = vec![PodCounters::default(); self.pods.len()];
        let rng = SplitMix64::new(self.seed);
        Ok(ScenarioRun {
            workload,
            pod_workloads,
            serving,
            node_index,
            pod_node,
            backend_pod,
            affinity_pod,
            nodes,
            pods,
            connections: Vec::new(),
            placed_for: None,
            pinned: BTreeMap::new(),
            rng,
            step: 0,
            steps,
            scenario: self,
        })
    }

    /// The expanded series.
    pub fn ticks(&self) -> Result<Vec<Tick>> {
        Ok(self.clone().run()?.collect())
    }

    /// The window to report on, epoch ms.
    pub fn window(&self) -> crate::report::Window {
        let spec = self.expect.window.unwrap_or(WindowSpec { start_s: 0.0, end_s: self.duration_s });
        crate::report::Window {
            name: self.name.clone(),
            start_ms: self.start_ms + (spec.start_s * 1000.0) as i64,
            end_ms: self.start_ms + (spec.end_s * 1000.0) as i64,
            automatic: false,
            workload: self.workload.as_deref().filter(|_| self.cluster_knowledge).and_then(|w| parse_workload(w).ok()),
        }
    }
}

/// What the load looks like at one instant.
struct LoadNow {
    requests_per_s: f64,
    connections: Option<Connections>,
    entry: EntryNow,
}

/// Requests of one sample interval: per serving pod, and the part of them that entered at another
/// node (forwarded), per entry node and pod.
#[derive(Default)]
struct Requests {
    per_pod: BTreeMap<usize, u64>,
    forwarded: BTreeMap<(usize, usize), u64>,
}

impl Requests {
    fn add(&mut self, entry: Option<usize>, pod: usize, home: usize, count: u64) {
        if count == 0 {
            return;
        }
        *self.per_pod.entry(pod).or_default() += count;
        if let Some(entry) = entry.filter(|&e| e != home) {
            *self.forwarded.entry((entry, pod)).or_default() += count;
        }
    }
}

impl ScenarioRun {
    fn jitter(&mut self) -> f64 {
        1.0 + self.scenario.jitter * (2.0 * self.rng.next_f64() - 1.0)
    }

    fn policy(&self) -> TrafficPolicy {
        self.scenario.service.as_ref().map_or(TrafficPolicy::Cluster, |s| s.external_traffic_policy)
    }

    fn affinity(&self) -> bool {
        self.scenario.service.as_ref().is_some_and(|s| s.session_affinity.is_some())
    }

    /// The node indices an announcement lets connections in at.
    fn entry_of(&self, announcement: Option<&Announcement>) -> EntryNow {
        let all = || (0..self.scenario.nodes.len()).collect();
        match announcement {
            Some(Announcement::L2 { node, .. }) => {
                EntryNow::Over(self.node_index.get(node).copied().into_iter().collect())
            }
            Some(Announcement::Bgp { nodes, .. }) => {
                EntryNow::Over(nodes.iter().filter_map(|n| self.node_index.get(n).copied()).collect())
            }
            _ => EntryNow::Over(all()),
        }
    }

    fn load_at(&self, t: f64) -> Option<LoadNow> {
        let load = self.scenario.load.as_ref()?;
        let mut announcement = self.scenario.service.as_ref().map(|s| &s.announcement);
        let mut entry = load.entry.clone();
        let mut now = LoadNow {
            requests_per_s: load.requests_per_s,
            connections: load.connections.clone(),
            entry: EntryNow::Direct,
        };
        for phase in self.scenario.phases.iter().filter(|p| active(p.from_s, p.until_s, t)) {
            if let Some(r) = phase.requests_per_s {
                now.requests_per_s = r;
            }
            if let Some(c) = &phase.connections {
                now.connections = Some(c.clone());
            }
            if let Some(e) = &phase.entry {
                entry = Some(e.clone());
            }
            if let Some(a) = &phase.announcement {
                announcement = Some(a);
            }
        }
        now.entry = match entry {
            Some(Entry::Direct) => EntryNow::Direct,
            Some(Entry::Spread) => EntryNow::Over((0..self.scenario.nodes.len()).collect()),
            Some(Entry::Node(n)) => EntryNow::Over(self.node_index.get(&n).copied().into_iter().collect()),
            None => self.entry_of(announcement),
        };
        // Under a Local policy MetalLB announces only from nodes with a ready endpoint.
        if self.policy() == TrafficPolicy::Local
            && let EntryNow::Over(nodes) = &mut now.entry
        {
            let with_endpoint: Vec<usize> = self.serving.iter().map(|&p| self.pod_node[p]).collect();
            nodes.retain(|n| with_endpoint.contains(n));
        }
        Some(now)
    }

    /// kube-proxy's choice for a new connection: its entry node and its endpoint.
    fn place(&mut self, entry: &EntryNow) -> Connection {
        if self.serving.is_empty() {
            return Connection { entry: None, pod: None };
        }
        let entry = match entry {
            EntryNow::Direct => None,
            EntryNow::Over(nodes) if nodes.is_empty() => return Connection { entry: None, pod: None },
            EntryNow::Over(nodes) => Some(nodes[self.rng.below(nodes.len() as u64) as usize]),
        };
        let allowed: Vec<usize> = match (self.policy(), entry) {
            (TrafficPolicy::Local, Some(e)) => {
                self.serving.iter().copied().filter(|&p| self.pod_node[p] == e).collect()
            }
            _ => self.serving.clone(),
        };
        if allowed.is_empty() {
            return Connection { entry, pod: None };
        }
        let pod = if self.affinity() {
            if let Some(&pinned) = self.pinned.get(&entry) {
                pinned
            } else {
                let first = self
                    .affinity_pod
                    .filter(|p| allowed.contains(p))
                    .unwrap_or_else(|| allowed[self.rng.below(allowed.len() as u64) as usize]);
                self.pinned.insert(entry, Some(first));
                Some(first)
            }
        } else {
            Some(allowed[self.rng.below(allowed.len() as u64) as usize])
        };
        // A pinned endpoint on another node's local list is not allowed under Local.
        let pod = pod.filter(|p| allowed.contains(p));
        Connection { entry: entry.or_else(|| pod.map(|p| self.pod_node[p])), pod }
    }

    /// (Re)places the keep-alive connections when what they are placed for changed.
    fn place_keepalive(&mut self, connections: &Connections, entry: &EntryNow) {
        if self.placed_for.as_ref().is_some_and(|(c, e)| c == connections && e == entry) {
            return;
        }
        self.connections.clear();
        match connections {
            Connections::Count(c) => {
                for _ in 0..*c {
                    let connection = self.place(entry);
                    self.connections.push(connection);
                }
            }
            Connections::Placed(counts) => {
                for (slot, &count) in counts.iter().enumerate() {
                    let pod = self.serving[slot];
                    for _ in 0..count {
                        let entry = match entry {
                            EntryNow::Direct => Some(self.pod_node[pod]),
                            EntryNow::Over(nodes) if nodes.is_empty() => None,
                            EntryNow::Over(nodes) => Some(nodes[self.rng.below(nodes.len() as u64) as usize]),
                        };
                        self.connections.push(Connection { entry, pod: Some(pod) });
                    }
                }
            }
        }
        for connection in &self.connections {
            if let Some(pod) = connection.pod {
                self.pods[pod].passive_opens += 1;
            }
        }
        self.placed_for = Some((connections.clone(), entry.clone()));
    }

    /// The requests of one interval of `dt` seconds, and the connections each pod holds at its end.
    fn requests(&mut self, now: &LoadNow, dt: f64, held: &mut [u32]) -> Requests {
        let mut requests = Requests::default();
        match &now.connections {
            Some(connections) => {
                self.place_keepalive(connections, &now.entry);
                let count = self.connections.len().max(1) as f64;
                let per_connection = now.requests_per_s / count * dt;
                for i in 0..self.connections.len() {
                    let Connection { entry, pod } = self.connections[i];
                    let Some(pod) = pod else { continue };
                    held[pod] += 1;
                    let n = self.rng.poisson(per_connection);
                    requests.add(entry, pod, self.pod_node[pod], n);
                }
            }
            None => {
                self.placed_for = None;
                let n = self.rng.poisson(now.requests_per_s * dt);
                for _ in 0..n {
                    let Connection { entry, pod } = self.place(&now.entry);
                    let Some(pod) = pod else { continue };
                    self.pods[pod].passive_opens += 1;
                    requests.add(entry, pod, self.pod_node[pod], 1);
                }
                for (&pod, &n) in &requests.per_pod {
                    held[pod] = (n as f64 / dt * REQUEST_SECONDS).ceil() as u32;
                }
            }
        }
        requests
    }

    /// Advances every counter over one interval of `dt` seconds ending at `t`; returns the connections
    /// per pod at `t`.
    fn advance(&mut self, t: f64, dt: f64) -> Vec<u32> {
        let n_nodes = self.scenario.nodes.len();
        let mut process = vec![0.0_f64; n_nodes]; // cores of process-context work outside pods
        let mut softirq = vec![0.01_f64; n_nodes];
        let mut nic_rx = vec![0.0_f64; n_nodes];
        let mut nic_tx = vec![0.0_f64; n_nodes];
        let mut pod_cpu: Vec<f64> = self.scenario.pods.iter().map(|p| p.cpu_cores).collect();
        let mut pod_rx = vec![0.0_f64; self.scenario.pods.len()];
        let mut pod_tx = vec![0.0_f64; self.scenario.pods.len()];
        let mut held = vec![0_u32; self.scenario.pods.len()];

        for (i, node) in self.scenario.nodes.iter().enumerate() {
            let control_plane = node.role == NodeRole::ControlPlane;
            process[i] += node.base_cpu_cores.unwrap_or(if control_plane { 0.35 } else { 0.08 });
            let background = node.background_nic_bps.unwrap_or(if control_plane { 150_000.0 } else { 20_000.0 });
            nic_rx[i] += background / 2.0;
            nic_tx[i] += background / 2.0;
        }
        // Frequency slowdown of each node: the same work takes max/current longer.
        let slowdown: Vec<f64> = self
            .scenario
            .nodes
            .iter()
            .map(|node| {
                self.scenario
                    .thermal
                    .iter()
                    .filter(|e| e.node == node.name && active(e.from_s, e.until_s, t) && e.frequency_khz > 0)
                    .map(|e| node.max_khz as f64 / e.frequency_khz as f64)
                    .fold(1.0, f64::max)
            })
            .collect();

        if let (Some(now), Some(load)) = (self.load_at(t), self.scenario.load.clone()) {
            let requests = self.requests(&now, dt, &mut held);
            // Rates over the interval, per second.
            for (&pod, &n) in &requests.per_pod {
                let rate = n as f64 / dt;
                let home = self.pod_node[pod];
                let (bytes_in, bytes_out) = (rate * load.request_bytes, rate * load.response_bytes);
                pod_rx[pod] += bytes_in;
                pod_tx[pod] += bytes_out;
                pod_cpu[pod] += rate * load.cpu_seconds_per_request * slowdown[home];
                nic_rx[home] += bytes_in;
                nic_tx[home] += bytes_out;
                if let (Some(backend), Some(db)) = (&load.backend, self.backend_pod) {
                    let bytes = rate * backend.bytes_per_request;
                    pod_tx[db] += bytes;
                    pod_rx[pod] += bytes;
                    pod_cpu[db] += rate * backend.cpu_seconds_per_request * slowdown[self.pod_node[db]];
                    let db_home = self.pod_node[db];
                    if db_home != home {
                        nic_tx[db_home] += bytes;
                        nic_rx[home] += bytes;
                    }
                }
            }
            // Client bytes of requests entering elsewhere are forwarded: in and out at the entry.
            for (&(entry, _), &n) in &requests.forwarded {
                let forwarded = n as f64 / dt * (load.request_bytes + load.response_bytes);
                nic_rx[entry] += forwarded;
                nic_tx[entry] += forwarded;
                softirq[entry] += forwarded / 1e6 * load.softirq_seconds_per_forwarded_mb;
            }
        }
        for work in self.scenario.pod_work.iter().filter(|w| active(w.from_s, w.until_s, t)) {
            if let Some(i) = self.scenario.pods.iter().position(|p| p.name == work.pod) {
                pod_cpu[i] += work.cpu_cores;
            }
        }
        for work in self.scenario.host_work.iter().filter(|w| active(w.from_s, w.until_s, t)) {
            let i = self.node_index[&work.node];
            process[i] += work.cpu_cores;
            softirq[i] += work.softirq_cores;
            nic_rx[i] += work.nic_rx_bps;
            nic_tx[i] += work.nic_tx_bps;
        }

        // Accumulate, with noise.
        for (p, cores) in pod_cpu.iter().enumerate() {
            let j = self.jitter();
            let pod = &mut self.pods[p];
            pod.cpu_us += cores * j * dt * 1e6;
            pod.rx += pod_rx[p] * dt;
            pod.tx += pod_tx[p] * dt;
            process[self.pod_node[p]] += cores * j;
        }
        for (i, spec) in self.scenario.nodes.iter().enumerate() {
            let j = 1.0 + self.scenario.jitter * (2.0 * self.rng.next_f64() - 1.0);
            let cores = f64::from(spec.cores);
            let busy_process = (process[i] * j).min(cores);
            let busy_softirq = (softirq[i] * j).min(cores - busy_process);
            let busy = busy_process + busy_softirq;
            let counters = &mut self.nodes[i];
            counters.user += 0.7 * busy_process * dt * 100.0;
            counters.system += 0.3 * busy_process * dt * 100.0;
            counters.softirq += busy_softirq * dt * 100.0;
            counters.idle += (cores - busy).max(0.0) * dt * 100.0;
            counters.rx += nic_rx[i] * j * dt;
            counters.tx += nic_tx[i] * j * dt;
            let load = busy / cores;
            counters.cpu_stall_us += ((load - 0.8) * 2.0).clamp(0.0, 1.0) * dt * 1e6;
            let stall = self
                .scenario
                .memory_pressure
                .iter()
                .filter(|e| e.node == spec.name && active(e.from_s, e.until_s, t))
                .map(|e| e.stall_fraction)
                .fold(0.0, f64::max);
            counters.memory_stall_us += stall * dt * 1e6;
        }
        held
    }

    fn sample(&self, t: f64, timestamp_ms: i64, connections: &[u32]) -> Tick {
        let scenario = &self.scenario;
        let mut nodes: Vec<NodeSample> = scenario
            .nodes
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                let c = &self.nodes[i];
                let total = spec.memory_gib * GIB;
                let base_used = if spec.role == NodeRole::ControlPlane { 1.6 * GIB } else { 0.8 * GIB };
                let pods_used: f64 = scenario
                    .pods
                    .iter()
                    .enumerate()
                    .filter(|(p, _)| self.pod_node[*p] == i)
                    .map(|(_, p)| p.memory_mib * MIB)
                    .sum();
                let mut available = (total - base_used - pods_used).max(0.0);
                let mut temperature = spec.temperature_c;
                let mut frequency = spec.max_khz;
                let mut flags = ThrottleFlags::default();
                for e in
                    scenario.memory_pressure.iter().filter(|e| e.node == spec.name && active(e.from_s, e.until_s, t))
                {
                    available = available.min(e.available_fraction * total);
                }
                for e in scenario.thermal.iter().filter(|e| e.node == spec.name && active(e.from_s, e.until_s, t)) {
                    temperature = temperature.max(e.temperature_c);
                    frequency = frequency.min(e.frequency_khz);
                    flags.throttled |= e.throttled;
                    flags.soft_temperature_limit |= e.soft_temperature_limit;
                    flags.arm_frequency_capped |= e.frequency_khz < spec.max_khz;
                }
                NodeSample {
                    name: spec.name.clone(),
                    role: spec.role,
                    timestamp_ms,
                    clock_ticks_per_second: 100,
                    cpu: CpuJiffies {
                        user: c.user as u64,
                        system: c.system as u64,
                        idle: c.idle as u64,
                        softirq: c.softirq as u64,
                        ..CpuJiffies::default()
                    },
                    nics: vec![NicBytes::new("eth0", c.rx as u64, c.tx as u64)],
                    memory: NodeMemory { total_bytes: total as u64, available_bytes: available as u64 },
                    pressure: Some(PressureTotals {
                        cpu_some_us: c.cpu_stall_us as u64,
                        memory_some_us: c.memory_stall_us as u64,
                        memory_full_us: (c.memory_stall_us / 4.0) as u64,
                        io_some_us: 0,
                    }),
                    temperature_millicelsius: Some((temperature * 1000.0) as i64),
                    cpu_frequency: Some(CpuFrequency { current_khz: frequency, max_khz: spec.max_khz }),
                    throttle: Some(flags),
                    pods: Vec::new(),
                }
            })
            .collect();
        let known = scenario.cluster_knowledge;
        // Under affinity behind one proxy there is one client address; with the Cluster policy each
        // entry node's source NAT makes it that node's address, so a pod sees one address per entry
        // node pinned to it.
        let local = self.policy() == TrafficPolicy::Local;
        for (p, spec) in scenario.pods.iter().enumerate() {
            let counters = &self.pods[p];
            let uid = format!("uid-{}-{}", spec.namespace, spec.name);
            let serving = self.serving.contains(&p);
            nodes[self.pod_node[p]].pods.push(PodSample {
                name: if known { spec.name.clone() } else { uid.clone() },
                namespace: if known { spec.namespace.clone() } else { String::new() },
                workload: if known { self.pod_workloads[p].clone() } else { None },
                uid,
                ready: spec.ready,
                host_network: spec.host_network,
                rx_bytes: counters.rx as u64,
                tx_bytes: counters.tx as u64,
                established_inbound: connections[p],
                passive_opens: counters.passive_opens,
                inbound_peers: (self.affinity() && serving && connections[p] > 0).then(|| {
                    if local { 1 } else { self.pinned.values().filter(|v| **v == Some(p)).count().max(1) as u32 }
                }),
                cpu_usage_us: counters.cpu_us as u64,
                memory_working_set_bytes: (spec.memory_mib * MIB) as u64,
            });
        }
        let workload = self.workload.clone().filter(|_| known).map(|w| {
            let mut under_test = WorkloadUnderTest::from_ready_pods(w, &nodes);
            under_test.service = scenario.service.clone().map(|mut service| {
                if let Some(a) = scenario
                    .phases
                    .iter()
                    .rev()
                    .filter(|p| active(p.from_s, p.until_s, t))
                    .find_map(|p| p.announcement.clone())
                {
                    service.announcement = a;
                }
                service
            });
            under_test
        });
        Tick { timestamp_ms, nodes, workload, window_open: false }
    }
}

impl Iterator for ScenarioRun {
    type Item = Tick;

    fn next(&mut self) -> Option<Tick> {
        if self.step > self.steps {
            return None;
        }
        let sample_ms = self.scenario.sample_ms;
        let t = (self.step * sample_ms) as f64 / 1000.0;
        // The first sample shows counters of a node that has been up for ten minutes.
        let dt = if self.step == 0 { 600.0 } else { sample_ms as f64 / 1000.0 };
        let connections = self.advance(t, dt);
        let tick = self.sample(t, self.scenario.start_ms + self.step * sample_ms, &connections);
        self.step += 1;
        Some(tick)
    }
}
