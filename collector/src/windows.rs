//! Load-test windows: the open window (explicit from `StartWindow`, or automatic on a traffic
//! surge), which workload is under test (given, or the one behind the entry Service whose traffic
//! rose most, followed through an in-cluster proxy that relays to it), and the
//! faster sampling the agents are asked for while a window is open (restored afterwards).
//! The decisions are pure functions of ticks; [`IntervalOverride`] is the one piece that talks to
//! the agents' streams.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bakery_diagnosis::{Tick, WorkloadRef};
use bakery_signals::counter::increase;

use crate::nodes::{Control, Registry};

/// The sampling interval asked of every agent while a window is open (`--window-interval`).
pub const DEFAULT_WINDOW_INTERVAL_MS: u32 = 250;

/// A window that is open now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenWindow {
    pub id: String,
    pub name: String,
    pub automatic: bool,
    pub start_ms: i64,
    /// Given at start, or inferred once traffic shows which workload rose most.
    pub workload: Option<WorkloadRef>,
    /// The in-cluster proxy in front of it, when the inference followed one.
    pub relay: Option<WorkloadRef>,
    /// The workload was given (never re-inferred).
    pub workload_given: bool,
}

impl OpenWindow {
    pub fn new(name: Option<String>, workload: Option<WorkloadRef>, automatic: bool, start_ms: i64) -> OpenWindow {
        let id = format!("w-{start_ms}");
        let name = name
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| if automatic { format!("auto-{start_ms}") } else { format!("window-{start_ms}") });
        OpenWindow { id, name, automatic, start_ms, workload_given: workload.is_some(), workload, relay: None }
    }
}

/// Pod traffic per workload between two ticks, received and sent, bytes per second.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Traffic {
    pub rx_bps: f64,
    pub tx_bps: f64,
}

impl Traffic {
    pub fn total(self) -> f64 {
        self.rx_bps + self.tx_bps
    }

    fn minus(self, before: Option<&Traffic>) -> Traffic {
        let before = before.copied().unwrap_or_default();
        Traffic { rx_bps: self.rx_bps - before.rx_bps, tx_bps: self.tx_bps - before.tx_bps }
    }
}

/// Pod traffic per workload between two ticks, from the pods present in both (matched by UID; a
/// counter that went down restarted and counts from zero). hostNetwork pods are left out: their
/// counters are the node's.
pub fn traffic_by_workload(earlier: &Tick, later: &Tick) -> BTreeMap<WorkloadRef, Traffic> {
    let seconds = (later.timestamp_ms - earlier.timestamp_ms) as f64 / 1000.0;
    let mut out: BTreeMap<WorkloadRef, Traffic> = BTreeMap::new();
    if seconds <= 0.0 {
        return out;
    }
    let before: HashMap<&str, (u64, u64)> =
        earlier.nodes.iter().flat_map(|n| n.pods.iter()).map(|p| (p.uid.as_str(), (p.rx_bytes, p.tx_bytes))).collect();
    for pod in later.nodes.iter().flat_map(|n| n.pods.iter()) {
        let (Some(workload), false) = (&pod.workload, pod.host_network) else { continue };
        let Some(&(rx, tx)) = before.get(pod.uid.as_str()) else { continue };
        let traffic = out.entry(workload.clone()).or_default();
        traffic.rx_bps += increase(rx, pod.rx_bytes) as f64 / seconds;
        traffic.tx_bps += increase(tx, pod.tx_bytes) as f64 / seconds;
    }
    out
}

/// The workload a load test exercises, and the relay in front of it, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnderTest {
    pub workload: WorkloadRef,
    /// The workload the entry Service selects, when it only relays to `workload` (an in-cluster
    /// reverse proxy such as Nginx Proxy Manager).
    pub relay: Option<WorkloadRef>,
}

/// A relay receives about as much as it sends (requests in and out, responses in and out), and
/// another workload sends about as much as it does (the responses it relays): these are the
/// fractions "about" stands for. A web server receives far less than it sends (small requests,
/// large pages), and its database sends far less than it does.
const RELAY_SYMMETRY: f64 = 0.6;

/// The workload under test from the traffic's rise (`now` minus `before`): among the workloads
/// behind an entry Service (LoadBalancer or NodePort: where a load test comes in) the one whose
/// traffic rose most, else among all of them (DaemonSets aside: their pods run everywhere by
/// construction); then, while that workload only relays to another, the one it relays to.
pub fn workload_under_test(
    before: &BTreeMap<WorkloadRef, Traffic>,
    now: &BTreeMap<WorkloadRef, Traffic>,
    entries: &BTreeSet<WorkloadRef>,
) -> Option<UnderTest> {
    let rises: BTreeMap<&WorkloadRef, Traffic> = now
        .iter()
        .filter(|(w, _)| !w.is_daemon_set())
        .map(|(w, t)| (w, t.minus(before.get(w))))
        .filter(|(_, rise)| rise.total() > 0.0)
        .collect();
    let most = |candidates: &mut dyn Iterator<Item = (&&WorkloadRef, &Traffic)>| {
        candidates
            .max_by(|a, b| a.1.total().total_cmp(&b.1.total()).then_with(|| b.0.cmp(a.0)))
            .map(|(w, _)| (*w).clone())
    };
    let mut chosen =
        most(&mut rises.iter().filter(|(w, _)| entries.contains(**w))).or_else(|| most(&mut rises.iter()))?;
    let mut relay = None;
    // Follow relays a few hops at most (a proxy in front of a proxy); a cycle cannot form.
    for _ in 0..3 {
        let rise = rises[&chosen];
        let symmetric = rise.rx_bps >= RELAY_SYMMETRY * rise.tx_bps && rise.tx_bps > 0.0;
        if !symmetric {
            break;
        }
        let upstream = most(&mut rises.iter().filter(|(w, t)| {
            ***w != chosen && t.tx_bps >= RELAY_SYMMETRY * rise.tx_bps && relay.as_ref() != Some(**w)
        }));
        let Some(upstream) = upstream else { break };
        relay.get_or_insert_with(|| chosen.clone());
        chosen = upstream;
    }
    Some(UnderTest { workload: chosen, relay })
}

/// Total traffic rate of a tick pair: pod traffic when there is any, else the nodes' NIC bytes.
pub fn total_traffic(earlier: &Tick, later: &Tick) -> Option<f64> {
    let seconds = (later.timestamp_ms - earlier.timestamp_ms) as f64 / 1000.0;
    if seconds <= 0.0 {
        return None;
    }
    let pods: f64 = traffic_by_workload(earlier, later).values().map(|t| t.total()).sum();
    if pods > 0.0 {
        return Some(pods);
    }
    let nic = |tick: &Tick, name: &str| {
        tick.nodes.iter().find(|n| n.name == name).map(|n| n.nics.iter().map(|i| i.rx_bytes + i.tx_bytes).sum::<u64>())
    };
    let bytes: u64 =
        later.nodes.iter().filter_map(|n| Some(increase_or_zero(nic(earlier, &n.name)?, nic(later, &n.name)?))).sum();
    Some(bytes as f64 / seconds)
}

/// The increase of a node's NIC bytes between two ticks; 0 across a reset (a restarted counter
/// says nothing about the span's traffic, and counting it whole would look like a surge).
fn increase_or_zero(earlier: u64, later: u64) -> u64 {
    bakery_signals::counter::increase_unless_reset(earlier, later).unwrap_or(0)
}

/// When traffic surges over its baseline: opens an automatic window after the rate has stayed at
/// `factor` x the baseline (and above `floor_bps`) for `enter_ms`, closes it after the rate has
/// stayed under `exit_factor` x the baseline for `exit_ms`. The baseline is an exponential
/// average of the rate outside surges, so a steady high load becomes the new normal only while
/// no window is open.
#[derive(Debug, Clone, PartialEq)]
pub struct SurgeDetector {
    pub factor: f64,
    pub exit_factor: f64,
    pub floor_bps: f64,
    pub enter_ms: i64,
    pub exit_ms: i64,
    /// Weight of a new observation in the baseline.
    pub alpha: f64,
    baseline_bps: Option<f64>,
    above_since: Option<i64>,
    below_since: Option<i64>,
    surging: bool,
}

/// What the surge detector decided at one observation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SurgeEvent {
    Started,
    Ended,
}

impl Default for SurgeDetector {
    fn default() -> Self {
        SurgeDetector {
            factor: 3.0,
            exit_factor: 1.5,
            // 1 MB/s: below this a Pi cluster is idle whatever the ratio says.
            floor_bps: 1_000_000.0,
            enter_ms: 2_000,
            exit_ms: 10_000,
            alpha: 0.05,
            baseline_bps: None,
            above_since: None,
            below_since: None,
            surging: false,
        }
    }
}

impl SurgeDetector {
    pub fn baseline_bps(&self) -> Option<f64> {
        self.baseline_bps
    }

    pub fn is_surging(&self) -> bool {
        self.surging
    }

    /// Feeds the traffic rate seen at `at_ms`.
    pub fn observe(&mut self, at_ms: i64, rate_bps: f64) -> Option<SurgeEvent> {
        let Some(baseline) = self.baseline_bps else {
            self.baseline_bps = Some(rate_bps);
            return None;
        };
        if self.surging {
            if rate_bps <= (baseline * self.exit_factor).max(self.floor_bps) {
                let since = *self.below_since.get_or_insert(at_ms);
                if at_ms - since >= self.exit_ms {
                    self.surging = false;
                    self.below_since = None;
                    return Some(SurgeEvent::Ended);
                }
            } else {
                self.below_since = None;
            }
            return None;
        }
        if rate_bps >= (baseline * self.factor).max(self.floor_bps) {
            let since = *self.above_since.get_or_insert(at_ms);
            if at_ms - since >= self.enter_ms {
                self.surging = true;
                self.above_since = None;
                return Some(SurgeEvent::Started);
            }
        } else {
            self.above_since = None;
            self.baseline_bps = Some(baseline + self.alpha * (rate_bps - baseline));
        }
        None
    }
}

/// The agents' intervals as they were before a window asked them to sample faster.
#[derive(Debug, Default)]
pub struct IntervalOverride {
    /// Node -> (the interval asked for before, the interval in use before).
    saved: BTreeMap<String, (Option<(u32, String)>, u32)>,
}

impl IntervalOverride {
    /// Asks every known node that is not sampling at `interval_ms` for this window yet to do so.
    /// Returns the nodes told now.
    pub fn apply(&mut self, registry: &Registry, interval_ms: u32, reason: &str) -> Vec<String> {
        let mut told = Vec::new();
        for node in registry.all() {
            if self.saved.contains_key(&node.name) {
                continue;
            }
            let mut live = node.live();
            self.saved.insert(node.name.clone(), (live.requested_interval_ms.clone(), live.interval_ms));
            live.requested_interval_ms = Some((interval_ms, reason.to_string()));
            live.interval_ms = interval_ms;
            send(&live, interval_ms, reason);
            told.push(node.name.clone());
        }
        told
    }

    /// Gives every node its earlier interval back.
    pub fn restore(&mut self, registry: &Registry, reason: &str) {
        for (name, (requested, interval_ms)) in std::mem::take(&mut self.saved) {
            let Some(node) = registry.get(&name) else { continue };
            let mut live = node.live();
            live.requested_interval_ms = requested;
            live.interval_ms = interval_ms;
            let interval_ms = live.interval_or_default();
            send(&live, interval_ms, reason);
        }
    }
}

fn send(live: &crate::nodes::LiveState, interval_ms: u32, reason: &str) {
    if let Some(stream) = &live.connected {
        let _ = stream.control.try_send(Control::SetInterval { interval_ms, reason: reason.to_string() });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bakery_diagnosis::{CpuJiffies, NodeMemory, NodeRole, NodeSample, PodSample};

    fn pod(uid: &str, workload: &WorkloadRef, bytes: u64) -> PodSample {
        PodSample {
            uid: uid.into(),
            name: uid.into(),
            namespace: workload.namespace.clone(),
            workload: Some(workload.clone()),
            ready: true,
            host_network: false,
            rx_bytes: bytes,
            tx_bytes: 0,
            established_inbound: 0,
            passive_opens: 0,
            inbound_peers: None,
            cpu_usage_us: 0,
            memory_working_set_bytes: 0,
        }
    }

    fn tick(at_ms: i64, pods: Vec<PodSample>) -> Tick {
        let node = NodeSample {
            name: "pi-1".into(),
            role: NodeRole::Worker,
            timestamp_ms: at_ms,
            clock_ticks_per_second: 100,
            cpu: CpuJiffies::default(),
            nics: Vec::new(),
            memory: NodeMemory::default(),
            pressure: None,
            temperature_millicelsius: None,
            cpu_frequency: None,
            throttle: None,
            pods,
        };
        Tick { timestamp_ms: at_ms, nodes: vec![node], workload: None, window_open: false }
    }

    fn pod_rx_tx(uid: &str, workload: &WorkloadRef, rx: u64, tx: u64) -> PodSample {
        PodSample { tx_bytes: tx, ..pod(uid, workload, rx) }
    }

    fn chosen(choice: Option<UnderTest>) -> (Option<WorkloadRef>, Option<WorkloadRef>) {
        choice.map_or((None, None), |c| (Some(c.workload), c.relay))
    }

    #[test]
    fn the_workload_whose_traffic_rose_most_is_under_test() {
        let web = WorkloadRef::new("Deployment", "shop", "web");
        let db = WorkloadRef::new("StatefulSet", "shop", "db");
        let logs = WorkloadRef::new("DaemonSet", "kube-system", "logs");
        // Before: db busy (5 MB/s), web quiet. During: db still 5 MB/s, web 3 MB/s, logs 9 MB/s.
        let before = traffic_by_workload(
            &tick(0, vec![pod("w", &web, 0), pod("d", &db, 0), pod("l", &logs, 0)]),
            &tick(1000, vec![pod("w", &web, 0), pod("d", &db, 5_000_000), pod("l", &logs, 0)]),
        );
        let during = traffic_by_workload(
            &tick(10_000, vec![pod("w", &web, 0), pod("d", &db, 0), pod("l", &logs, 0)]),
            &tick(12_000, vec![pod("w", &web, 6_000_000), pod("d", &db, 10_000_000), pod("l", &logs, 18_000_000)]),
        );
        assert_eq!(during[&web].total(), 3_000_000.0);
        let none = BTreeSet::new();
        assert_eq!(chosen(workload_under_test(&before, &during, &none)), (Some(web), None));
        assert_eq!(workload_under_test(&during, &during, &none), None, "nothing rose");
    }

    #[test]
    fn an_in_cluster_proxy_in_front_is_followed_to_the_workload_it_relays_to() {
        let proxy = WorkloadRef::new("Deployment", "npm", "nginx-proxy-manager");
        let web = WorkloadRef::new("Deployment", "wordpress", "wordpress");
        let db = WorkloadRef::new("StatefulSet", "wordpress", "mysql");
        // Per second: clients send 60 kB of requests to the proxy and get 3 MB of pages from it;
        // the proxy sends the requests on to WordPress and gets the pages back; WordPress asks the
        // database for 480 kB.
        let quiet = tick(0, vec![pod_rx_tx("p", &proxy, 0, 0), pod_rx_tx("w", &web, 0, 0), pod_rx_tx("d", &db, 0, 0)]);
        let busy = tick(
            1000,
            vec![
                pod_rx_tx("p", &proxy, 60_000 + 3_000_000, 3_000_000 + 60_000),
                pod_rx_tx("w", &web, 60_000 + 480_000, 3_000_000 + 24_000),
                pod_rx_tx("d", &db, 24_000, 480_000),
            ],
        );
        let before = BTreeMap::new();
        let during = traffic_by_workload(&quiet, &busy);
        assert!(during[&proxy].total() > during[&web].total(), "the proxy carries more pod bytes");
        let entries = BTreeSet::from([proxy.clone()]);
        assert_eq!(chosen(workload_under_test(&before, &during, &entries)), (Some(web.clone()), Some(proxy.clone())));
        // Without Services known the proxy still rose most, and is still followed.
        assert_eq!(chosen(workload_under_test(&before, &during, &BTreeSet::new())), (Some(web), Some(proxy)));
    }

    #[test]
    fn the_entry_services_workload_wins_over_a_busier_one_behind_no_entry() {
        let web = WorkloadRef::new("Deployment", "shop", "web");
        let backup = WorkloadRef::new("Deployment", "ops", "backup");
        let quiet = tick(0, vec![pod_rx_tx("w", &web, 0, 0), pod_rx_tx("b", &backup, 0, 0)]);
        let busy = tick(1000, vec![pod_rx_tx("w", &web, 50_000, 2_000_000), pod_rx_tx("b", &backup, 9_000_000, 0)]);
        let during = traffic_by_workload(&quiet, &busy);
        let entries = BTreeSet::from([web.clone()]);
        assert_eq!(chosen(workload_under_test(&BTreeMap::new(), &during, &entries)), (Some(web), None));
    }

    #[test]
    fn a_restarted_pod_counts_from_zero() {
        let web = WorkloadRef::new("Deployment", "shop", "web");
        let rates = traffic_by_workload(&tick(0, vec![pod("w", &web, 9_000)]), &tick(1000, vec![pod("w", &web, 500)]));
        assert_eq!(rates[&web].total(), 500.0);
    }

    #[test]
    fn a_surge_opens_after_it_holds_and_closes_after_it_calms() {
        let mut surge = SurgeDetector::default();
        let mut events = Vec::new();
        // 10 s idle at 200 kB/s, 20 s at 5 MB/s, then idle again; one observation per 250 ms.
        for step in 0..240 {
            let at_ms = step * 250;
            let rate = if (40..120).contains(&step) { 5_000_000.0 } else { 200_000.0 };
            if let Some(event) = surge.observe(at_ms, rate) {
                events.push((event, at_ms));
            }
        }
        assert_eq!(events, [(SurgeEvent::Started, 12_000), (SurgeEvent::Ended, 40_000)]);
        assert!((surge.baseline_bps().unwrap() - 200_000.0).abs() < 1.0, "the surge did not move the baseline");
    }

    #[test]
    fn a_short_spike_or_a_small_rise_opens_nothing() {
        let mut surge = SurgeDetector::default();
        for step in 0..100 {
            let rate = match step {
                20..=24 => 9_000_000.0, // 1.25 s spike
                50..=99 => 800_000.0,   // 4x, but under the 1 MB/s floor
                _ => 200_000.0,
            };
            assert_eq!(surge.observe(step * 250, rate), None, "step {step}");
        }
    }

    #[test]
    fn window_names_default_from_the_start_time() {
        let window = OpenWindow::new(None, None, false, 1_700_000_000_000);
        assert_eq!((window.id.as_str(), window.name.as_str()), ("w-1700000000000", "window-1700000000000"));
        assert_eq!(OpenWindow::new(Some("run 3".into()), None, true, 5).name, "run 3");
        assert_eq!(OpenWindow::new(None, None, true, 5).name, "auto-5");
    }
}
