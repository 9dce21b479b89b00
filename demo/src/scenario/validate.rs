//! Checks a scenario before anything is built: names, limits and every cross-reference.

use std::collections::BTreeSet;
use std::time::Duration;

use super::{
    App, BurnStart, Entry, ExpectedNode, MAX_NODES, MIN_NODE_MEMORY_MIB, NODE_MEMORY_RESERVE_MIB, NodeSpec, Scenario,
    TrafficPolicy, WorkloadSpec, parse_hex,
};
use crate::{Error, Result};

impl Scenario {
    /// Checks the scenario in the order a reader meets it in the file: its name, its nodes, its
    /// workloads, the Service, the load, and what it expects. The first mistake is the one reported.
    pub(crate) fn validate(&self) -> Result<()> {
        if !is_dns_label(&self.name) {
            return self.fail("the name must be lowercase letters, digits and dashes".into());
        }
        if self.nodes.is_empty() || self.nodes.len() > MAX_NODES {
            return self.fail(format!("{} nodes; use 1 to {MAX_NODES}", self.nodes.len()));
        }
        let names = self.validate_nodes()?;
        self.validate_workloads(&names)?;
        self.validate_service(&names)?;
        self.validate_load()?;
        self.validate_onset(&names)?;
        self.validate_expect(&names)
    }

    /// A mistake, named with the scenario it is in.
    fn fail<T>(&self, what: String) -> Result<T> {
        Err(Error::Scenario(format!("scenario {:?}: {what}", self.name)))
    }

    /// Each node's name and what runs on it besides pods; returns the node names.
    fn validate_nodes(&self) -> Result<BTreeSet<&str>> {
        let mut names = BTreeSet::new();
        for node in &self.nodes {
            // The node's end of its LAN cable is `l-<node>`: interface names hold 15 bytes.
            if !is_dns_label(&node.name) || node.name.len() > 12 {
                return self
                    .fail(format!("node name {:?}: use up to 12 lowercase letters, digits or dashes", node.name));
            }
            if node.name == "pinned" {
                return self.fail(
                    "a node cannot be called \"pinned\": in expect, that word means the node the connections pinned to"
                        .into(),
                );
            }
            if !names.insert(node.name.as_str()) {
                return self.fail(format!("node {:?} is listed twice", node.name));
            }
            let extras = &node.extras;
            if !(0.0..=8.0).contains(&extras.burn_cores) {
                return self.fail(format!("{}: burn_cores {} is outside 0 to 8", node.name, extras.burn_cores));
            }
            if extras.memory_hog_mib > 16 * 1024 {
                return self.fail(format!("{}: memory_hog_mib above 16384", node.name));
            }
            if let Some(memory) = node.memory_mib {
                if !(MIN_NODE_MEMORY_MIB..=1 << 20).contains(&memory) {
                    return self.fail(format!(
                        "{}: memory_mib {memory} is outside {MIN_NODE_MEMORY_MIB} to 1048576 (1 TiB)",
                        node.name
                    ));
                }
                if extras.memory_hog_mib + NODE_MEMORY_RESERVE_MIB > memory {
                    return self.fail(format!(
                        "{}: memory_hog_mib {} leaves less than {NODE_MEMORY_RESERVE_MIB} MiB of memory_mib {memory} for \
                         the node's agent and pods; the kernel would kill them within the node's memory limit",
                        node.name, extras.memory_hog_mib
                    ));
                }
            }
            if let Some(thermal) = &extras.thermal {
                if !thermal.throttled.is_empty() && parse_hex(&thermal.throttled).is_none() {
                    return self
                        .fail(format!("{}: throttled {:?} is not hex like 0x50005", node.name, thermal.throttled));
                }
                if thermal.current_mhz == 0 || thermal.max_mhz == 0 {
                    return self.fail(format!("{}: frequencies must be positive", node.name));
                }
            }
        }
        Ok(names)
    }

    /// Each workload's names, replicas and costs, then what it links to; at most 40 pods in all.
    fn validate_workloads(&self, names: &BTreeSet<&str>) -> Result<()> {
        let mut workload_names = BTreeSet::new();
        let mut chain_ids = BTreeSet::new();
        let mut pods = 0;
        for workload in &self.workloads {
            if !is_dns_label(&workload.name) || workload.name.len() > 20 || !is_dns_label(&workload.namespace) {
                return self
                    .fail(format!("workload {:?}/{:?}: use lowercase DNS labels", workload.namespace, workload.name));
            }
            if !workload_names.insert(workload.name.as_str()) {
                return self.fail(format!("workload {:?} is listed twice", workload.name));
            }
            if !chain_ids.insert(crate::kube_proxy::chain_id(&workload.name)) {
                return self.fail(format!(
                    "workload {:?}: its first 12 letters and digits are another workload's, and kube-proxy's chains \
                     are named by them",
                    workload.name
                ));
            }
            if workload.placement.is_empty() {
                return self.fail(format!("workload {:?} has no replica", workload.name));
            }
            if let Some(missing) = workload.placement.iter().find(|n| !names.contains(n.as_str())) {
                return self.fail(format!("workload {:?} places a replica on unknown node {missing:?}", workload.name));
            }
            if !(0.0..=1000.0).contains(&workload.cpu_ms) || !(0.0..=10_000.0).contains(&workload.query_wait_ms) {
                return self.fail(format!("workload {:?}: cpu_ms or query_wait_ms out of range", workload.name));
            }
            if workload.response_bytes == 0 || workload.response_bytes > 16 << 20 {
                return self.fail(format!("workload {:?}: response_bytes must be 1 to 16 MiB", workload.name));
            }
            pods += workload.placement.len();
            self.validate_workload_links(workload)?;
        }
        if pods > 40 {
            return self.fail(format!("{pods} pods; at most 40"));
        }
        Ok(())
    }

    /// A workload's links to others: a web workload's database, a proxy's upstream, and the Service in
    /// front of a proxy.
    fn validate_workload_links(&self, workload: &WorkloadSpec) -> Result<()> {
        match (workload.app, &workload.database) {
            (App::Web, Some(database)) => match self.workload(database) {
                Some(db) if db.app == App::Database => {}
                _ => {
                    return self
                        .fail(format!("workload {:?} queries {database:?}, not a database workload", workload.name));
                }
            },
            (App::Database | App::Proxy, Some(_)) => {
                return self.fail(format!("only a web workload queries a database; {:?} cannot", workload.name));
            }
            _ => {}
        }
        match (workload.app, &workload.upstream) {
            (App::Proxy, None) => {
                return self.fail(format!(
                    "proxy workload {:?} needs an upstream: the web workload it relays to",
                    workload.name
                ));
            }
            (App::Proxy, Some(upstream)) => match self.workload(upstream) {
                Some(web) if web.app == App::Web => {}
                _ => {
                    return self.fail(format!(
                        "proxy workload {:?} relays to {upstream:?}, which is not a web workload",
                        workload.name
                    ));
                }
            },
            (_, Some(_)) => {
                return self.fail(format!("only a proxy workload has an upstream; {:?} is not one", workload.name));
            }
            (_, None) if workload.upstream_keepalive => {
                return self.fail(format!("upstream_keepalive is for proxy workloads; {:?} is not one", workload.name));
            }
            _ => {}
        }
        if workload.app == App::Proxy && workload.name != self.service.workload {
            return self.fail(format!(
                "proxy workload {:?} is not behind the Service: set [service] workload = {:?}",
                workload.name, workload.name
            ));
        }
        Ok(())
    }

    /// The Service's workload and its entry: an L2 Service needs an announcer that may take the IP.
    fn validate_service(&self, names: &BTreeSet<&str>) -> Result<()> {
        match self.workload(&self.service.workload) {
            Some(w) if w.app != App::Database => {}
            _ => {
                return self.fail(format!(
                    "the Service's workload {:?} is not a web or proxy workload",
                    self.service.workload
                ));
            }
        }
        match (self.service.entry, &self.service.announcer) {
            (Entry::L2, None) => {
                return self.fail(
                    "entry = \"l2\" needs its announcer: the node whose MetalLB speaker answers ARP for the IP \
                     (announcer = \"NODE\" under [service])"
                        .into(),
                );
            }
            (Entry::L2, Some(announcer)) if !names.contains(announcer.as_str()) => {
                return self.fail(format!("the announcer {announcer:?} is not a node"));
            }
            (Entry::L2, Some(announcer))
                if self.service.external_traffic_policy == TrafficPolicy::Local
                    && !self.entry_workload().placement.contains(announcer) =>
            {
                return self.fail(format!(
                    "with externalTrafficPolicy Local, MetalLB announces the IP only from a node with a ready \
                     endpoint of the Service, and the announcer {announcer:?} has no {:?} pod",
                    self.service.workload
                ));
            }
            (Entry::EveryNode, Some(_)) => {
                return self.fail("an announcer only makes sense with entry = \"l2\"".into());
            }
            _ => {}
        }
        Ok(())
    }

    /// The load generator's settings.
    fn validate_load(&self) -> Result<()> {
        let load = &self.load;
        if load.duration < Duration::from_secs(1) || load.duration > Duration::from_secs(3600) {
            return self.fail("the load duration must be 1 s to 1 h".into());
        }
        if load.connections == 0 || load.connections > 1000 {
            return self.fail("connections must be 1 to 1000".into());
        }
        if load.rate == Some(0) {
            return self.fail("rate must be positive (leave it out for as fast as possible)".into());
        }
        Ok(())
    }

    /// The bound on the time to the verdict, and the hogs that come on mid-run: each belongs to a
    /// hog that is there, all start at one onset inside the load, early enough for the verdict to
    /// be raised within the bound and held long enough to count, and no other hog is on before it.
    fn validate_onset(&self, names: &BTreeSet<&str>) -> Result<()> {
        let within = self.verdict_within_s();
        if !(within > 0.0 && within <= 600.0) {
            return self.fail(format!("verdict_within_s {within} is outside 0 to 600 seconds"));
        }
        self.validate_failover(names)?;
        for node in &self.nodes {
            let extras = &node.extras;
            if extras.burn_start_s.is_some() && extras.burn_cores == 0.0 {
                return self.fail(format!("{}: burn_start_s without burn_cores: no burner to start", node.name));
            }
            if extras.burn_start_s.is_some() && extras.burn_starts == BurnStart::AtBoot {
                return self.fail(format!(
                    "{}: burn_start_s starts the burner mid-run, burn_starts = \"at-boot\" at boot: keep one",
                    node.name
                ));
            }
        }
        let starts = self.mid_run_starts();
        let Some((onset, first)) = starts.first() else { return Ok(()) };
        let load_s = self.load.duration.as_secs_f64();
        for (start, what) in &starts {
            if !(start.is_finite() && *start >= 0.0) {
                return self.fail(format!("{what} starts at {start} s: give seconds into the load, 0 or more"));
            }
            if *start >= load_s {
                return self.fail(format!("{what} starts at {start} s, after the load ends ({load_s} s)"));
            }
            if start != onset {
                return self.fail(format!(
                    "{first} starts at {onset} s and {what} at {start} s: a scenario's hogs come on at one onset"
                ));
            }
        }
        let needed = within + crate::diagnose::MIN_ACTIVE_MS as f64 / 1000.0;
        if onset + needed > load_s {
            return self.fail(format!(
                "{first} starts at {onset} s, {:.1} s before the load ends ({load_s} s): the verdict needs \
                 verdict_within_s ({within} s) to be raised and 3 s more to count",
                load_s - onset
            ));
        }
        if let Some(on) = self.nodes.iter().find_map(on_from_the_start) {
            return self.fail(format!(
                "{on} is on from the start while {first} starts at {onset} s: before a mid-run onset the \
                 cluster is balanced"
            ));
        }
        Ok(())
    }

    /// An L2 failover names another node, one MetalLB may announce from.
    fn validate_failover(&self, names: &BTreeSet<&str>) -> Result<()> {
        let Some(failover) = &self.service.failover else { return Ok(()) };
        let to = failover.announcer.as_str();
        match self.announcer() {
            None => return self.fail("a failover moves an L2 announcer: it needs entry = \"l2\"".into()),
            Some(from) if from == to => {
                return self.fail(format!("the failover's announcer {to:?} is the Service's announcer already"));
            }
            Some(_) => {}
        }
        if !names.contains(to) {
            return self.fail(format!("the failover's announcer {to:?} is not a node"));
        }
        if self.service.external_traffic_policy == TrafficPolicy::Local
            && !self.entry_workload().placement.iter().any(|p| p == to)
        {
            return self.fail(format!(
                "with externalTrafficPolicy Local, MetalLB announces the IP only from a node with a ready \
                 endpoint of the Service, and the failover's announcer {to:?} has no {:?} pod",
                self.service.workload
            ));
        }
        Ok(())
    }

    /// The expected verdicts name existing nodes (or `pinned`), each (node, cause) once.
    fn validate_expect(&self, names: &BTreeSet<&str>) -> Result<()> {
        let mut expected = BTreeSet::new();
        for verdict in &self.expect.verdicts {
            if let ExpectedNode::Named(node) = &verdict.node
                && !names.contains(node.as_str())
            {
                return self.fail(format!("the expected node {node:?} is not a node"));
            }
            let node = match &verdict.node {
                ExpectedNode::Named(node) => node.as_str(),
                ExpectedNode::Pinned(_) => "pinned",
            };
            if !expected.insert((node, verdict.cause)) {
                return self.fail(format!("expect lists {node} {} twice", verdict.cause));
            }
        }
        Ok(())
    }
}

/// A hog on `node` that is on from the start (boot or the load's start), named; `None` without one.
fn on_from_the_start(node: &NodeSpec) -> Option<String> {
    let extras = &node.extras;
    if extras.burn_cores > 0.0 && extras.burn_start_s.is_none() {
        return Some(format!("{}'s burner", node.name));
    }
    if extras.memory_hog_mib > 0 {
        return Some(format!("{}'s memory hog", node.name));
    }
    if extras.thermal.as_ref().is_some_and(|t| t.start_s.is_none()) {
        return Some(format!("{}'s thermal overlay", node.name));
    }
    None
}

/// RFC 1123 label: lowercase letters, digits and dashes, not starting or ending with a dash.
fn is_dns_label(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 63
        && text.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !text.starts_with('-')
        && !text.ends_with('-')
}
