//! A hog that comes on mid-run: what switches on at the onset, and switching it on in the cluster.
//!
//! Three kinds, as a scenario writes them ([`crate::scenario`]): a CPU burner outside a node's
//! pods starts (`burn_start_s`), a node's thermal overlay turns from a cool board to the hot one
//! (`thermal.start_s`), or the L2 announcer moves to another node (`[service] failover`). The load's
//! loop polls [`Pending`] every 200 ms; when the onset is due it switches every hog on and records
//! when it began, which is what the report's time to the verdict runs from.
//!
//! The failover does what MetalLB does when the speaker holding an address stops: the new node's
//! speaker writes its `ServiceL2Status` (the old one's is gone), takes the address on its `eth0`,
//! and its gratuitous ARP makes the LAN forget the old holder's MAC (here the LAN namespaces'
//! neighbour entries for the address are flushed, to the same effect). Connections open through the
//! old node break, as they do in a real failover: their conntrack state stays behind.

use bakery_lab::command::ip;
use bakery_lab::process::Process;
use bakery_signals::time::now_ms;
use serde::{Deserialize, Serialize};

use crate::cluster::Cluster;
use crate::plan::NODE_NIC;
use crate::scenario::{Scenario, ThermalOverlay};
use crate::{Error, Result, kube_state, sysfs};

/// One hog that comes on mid-run.
#[derive(Debug, Clone, PartialEq)]
pub enum Hog {
    /// A process outside the node's pods starts burning `cores`.
    Burner { node: String, cores: f64 },
    /// The node's board turns hot: its overlay's files become `hot`'s.
    Thermal { node: String, hot: ThermalOverlay },
    /// The L2 announcer moves from `from` to `to`.
    Failover { from: String, to: String },
}

impl Hog {
    /// What switches on, for people.
    pub fn describe(&self) -> String {
        match self {
            Self::Burner { node, cores } => {
                format!(
                    "{node}'s burner starts ({cores} core{} outside its pods)",
                    if *cores == 1.0 { "" } else { "s" }
                )
            }
            Self::Thermal { node, hot } => format!(
                "{node} turns hot ({:.1} C, {} of {} MHz{})",
                hot.temperature_celsius,
                hot.current_mhz,
                hot.max_mhz,
                if hot.throttled.is_empty() { String::new() } else { format!(", throttled {}", hot.throttled) }
            ),
            Self::Failover { from, to } => format!("the L2 announcer moves from {from} to {to}"),
        }
    }
}

/// The scenario's hogs that come on mid-run, and when.
#[derive(Debug, Clone, PartialEq)]
pub struct Onset {
    /// Seconds into the load.
    pub start_s: f64,
    pub hogs: Vec<Hog>,
}

impl Onset {
    /// The mid-run onset `scenario` writes; `None` when every hog is on from the start.
    pub fn of(scenario: &Scenario) -> Option<Self> {
        let start_s = scenario.onset_s()?;
        let mut hogs = Vec::new();
        for node in &scenario.nodes {
            if node.extras.burn_start_s.is_some() {
                hogs.push(Hog::Burner { node: node.name.clone(), cores: node.extras.burn_cores });
            }
            if let Some(hot) = node.extras.thermal.as_ref().filter(|t| t.start_s.is_some()) {
                hogs.push(Hog::Thermal { node: node.name.clone(), hot: hot.clone() });
            }
        }
        if let (Some(failover), Some(from)) = (&scenario.service.failover, scenario.announcer()) {
            hogs.push(Hog::Failover { from: from.to_string(), to: failover.announcer.clone() });
        }
        Some(Self { start_s, hogs })
    }

    /// Every hog, for people.
    pub fn describe(&self) -> String {
        self.hogs.iter().map(Hog::describe).collect::<Vec<_>>().join("; ")
    }
}

/// When the hog came on, as the report gives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OnsetTime {
    /// What came on.
    pub hog: String,
    /// When switching it on began (this machine's clock, which the collector's verdicts use too).
    pub at_ms: i64,
    /// Seconds from the load's start; the scenario's start, late by up to a poll of the load's loop.
    pub into_load_seconds: f64,
    /// How long switching it on took, seconds.
    pub took_seconds: f64,
}

/// An onset waiting for its time during the load.
#[derive(Debug)]
pub struct Pending {
    onset: Onset,
    load_start_ms: i64,
    done: Option<Result<OnsetTime>>,
    started: Vec<Process>,
}

impl Pending {
    /// `onset`, due `start_s` after `load_start_ms`.
    pub fn new(onset: Onset, load_start_ms: i64) -> Self {
        Self { onset, load_start_ms, done: None, started: Vec::new() }
    }

    /// Switches the hogs on once they are due, and once only; returns a line for people then.
    pub fn poll(&mut self, cluster: &Cluster) -> Option<String> {
        let due_ms = self.load_start_ms + (self.onset.start_s * 1000.0).round() as i64;
        if self.done.is_some() || now_ms() < due_ms {
            return None;
        }
        let at_ms = now_ms();
        let result = self.switch_on(cluster).map(|()| OnsetTime {
            hog: self.onset.describe(),
            at_ms,
            into_load_seconds: (at_ms - self.load_start_ms) as f64 / 1000.0,
            took_seconds: (now_ms() - at_ms) as f64 / 1000.0,
        });
        let line = match &result {
            Ok(time) => format!("hog onset {:.1} s into the load: {}", time.into_load_seconds, time.hog),
            Err(error) => format!("hog onset failed: {}", bakery_lab::chain(error)),
        };
        self.done = Some(result);
        Some(line)
    }

    fn switch_on(&mut self, cluster: &Cluster) -> Result<()> {
        for hog in &self.onset.hogs {
            match hog {
                Hog::Burner { node, cores } => self.started.push(start_burner(cluster, node, *cores)?),
                Hog::Thermal { node, hot } => heat(cluster, node, hot)?,
                Hog::Failover { from, to } => move_announcer(cluster, from, to)?,
            }
        }
        Ok(())
    }

    /// When the hog came on, and the processes started for it (to be kept with the cluster's
    /// extras); an error when switching it on failed or the load ended before it was due.
    pub fn finish(self) -> (Result<OnsetTime>, Vec<Process>) {
        let result = self.done.unwrap_or_else(|| {
            Err(Error::Stalled(format!(
                "the load ended before the hog's onset, {} s into it: {}",
                self.onset.start_s,
                self.onset.describe()
            )))
        });
        (result, self.started)
    }
}

fn node_of<'a>(cluster: &'a Cluster, node: &str) -> Result<&'a crate::plan::NodePlan> {
    cluster.plan.node(node).ok_or_else(|| Error::Plan(format!("no node {node} for the hog's onset")))
}

/// Starts `node`'s burner, as one that starts with the load starts.
fn start_burner(cluster: &Cluster, node: &str, cores: f64) -> Result<Process> {
    let node = node_of(cluster, node)?;
    let command = vec![cluster.binaries.demo.display().to_string(), "burn".into(), "--cores".into(), cores.to_string()];
    cluster.launch_extra(node, &format!("burn-{}", node.name), command)
}

/// Rewrites `node`'s overlay with the hot board's files.
fn heat(cluster: &Cluster, node: &str, hot: &ThermalOverlay) -> Result<()> {
    sysfs::rewrite(&cluster.sys_overlay(node), &sysfs::thermal_files(hot, sysfs::cores()))
}

/// Moves the LoadBalancer IP from `from` to `to`: MetalLB's status first (the new speaker writes
/// it as it takes over), then the address, then the LAN's neighbour entries for it.
fn move_announcer(cluster: &Cluster, from: &str, to: &str) -> Result<()> {
    let plan = &cluster.plan;
    let address = format!("{}/32", plan.load_balancer_ip);
    if plan.scenario.service.metallb {
        let mut moved = plan.clone();
        moved.scenario.service.announcer = Some(to.to_string());
        write_state(cluster, &moved)?;
    }
    ip(&["-n", &node_of(cluster, from)?.netns, "addr", "del", &address, "dev", NODE_NIC])?;
    ip(&["-n", &node_of(cluster, to)?.netns, "addr", "add", &address, "dev", NODE_NIC])?;
    let lan = [&plan.control, &plan.proxy, &plan.client].map(|s| s.netns.clone());
    for netns in lan.into_iter().chain(plan.nodes.iter().map(|n| n.netns.clone())) {
        ip(&["-n", &netns, "neigh", "flush", "to", &plan.load_balancer_ip.to_string()])?;
    }
    Ok(())
}

/// Replaces the API double's state file with `plan`'s cluster, whole: it is written aside and
/// renamed over the file, so the double (which reads it every 100 ms) never sees half of it.
fn write_state(cluster: &Cluster, plan: &crate::plan::Plan) -> Result<()> {
    let path = cluster.state_file();
    let state = serde_json::to_string_pretty(&kube_state::state(plan))
        .map_err(|source| Error::Json { what: "the cluster's state after the failover".into(), source })?;
    let aside = path.with_extension("json.new");
    std::fs::write(&aside, state).map_err(|source| Error::File { action: "writing", path: aside.clone(), source })?;
    std::fs::rename(&aside, &path).map_err(|source| Error::File { action: "replacing", path, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_shipped_mid_run_scenario_switches_its_one_hog_on() {
        let onset = |name: &str| Onset::of(&Scenario::shipped(name).unwrap()).unwrap();
        let burner = onset("burner-midrun");
        assert_eq!(burner.hogs, [Hog::Burner { node: "master-02".into(), cores: 1.0 }]);
        assert_eq!(burner.describe(), "master-02's burner starts (1 core outside its pods)");
        let thermal = onset("thermal-midrun");
        assert!(matches!(&thermal.hogs[..], [Hog::Thermal { node, .. }] if node == "worker-01"), "{thermal:?}");
        assert_eq!(thermal.describe(), "worker-01 turns hot (84.0 C, 1500 of 2400 MHz, throttled 0x50005)");
        let failover = onset("l2-failover-midrun");
        assert_eq!(failover.hogs, [Hog::Failover { from: "worker-02".into(), to: "master-02".into() }]);
        for onset in [burner, thermal, failover] {
            assert_eq!(onset.start_s, 6.0);
        }
        assert_eq!(Onset::of(&Scenario::shipped("nfs-neighbour").unwrap()), None, "on from the load's start");
        assert_eq!(Onset::of(&Scenario::shipped("hot-node").unwrap()), None, "hot from boot");
    }
}
