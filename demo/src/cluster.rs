//! Building the planned cluster on this machine, and taking it down again: namespaces, the LAN,
//! routes, kube-proxy rules, cgroups, keepers, pods (the stand-ins, and nginx for an in-cluster
//! proxy workload), per-node extras (burners that start with the load wait for
//! [`Cluster::start_load_extras`], hogs that come on mid-run for [`crate::onset`]), the control
//! plane (API double and collector), the agents and the outside proxy.
//!
//! The [`Cluster`] value owns everything it made; dropping it (normal exit, error, Ctrl-C) stops the
//! processes in order (agents and collector with SIGTERM so the last samples are stored), deletes
//! the namespaces (their interfaces, addresses, routes and iptables rules go with them), removes
//! the cgroups and the run directory.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bakery_lab::cgroup::CgroupLayout;
use bakery_lab::command::{ip, iptables_restore, sysctl};
use bakery_lab::netns::{self, End, Netns};
use bakery_lab::process::{Output, Process, Spawn, stop_all, wait_all};
use bakery_lab::{cleanup, wait_until};

use crate::binaries::Binaries;
use crate::launch::{self, Keeper, with_log};
use crate::lock::RunLock;
use crate::plan::{
    APISERVER_PORT, COLLECTOR_PORT, LAN_BRIDGE, LAN_NETNS, LAN_PREFIX_LEN, NODE_NIC, NodePlan, Plan, PodPlan, Station,
    node_cgroup, node_system_cgroup,
};
use crate::scenario::{App, BurnStart, Entry, ProxyKind, WorkloadSpec};
use crate::{Error, Result, kube_proxy, kube_state, nginx, otlp, sysfs};

/// What the cluster runs with.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Start one agent per node (the observer benchmark also runs without).
    pub agents: bool,
    pub agent_interval: Duration,
    /// Export the collector's metrics (verdicts too) to this OTLP receiver, through a relay.
    pub otlp: Option<otlp::Export>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self { agents: true, agent_interval: Duration::from_secs(1), otlp: None }
    }
}

/// The built cluster. Dropping it takes everything down.
#[derive(Debug)]
pub struct Cluster {
    pub plan: Plan,
    pub binaries: Binaries,
    pub layout: CgroupLayout,
    pub run_dir: PathBuf,
    made_netns: Vec<Netns>,
    made_cgroups: bool,
    keepers: BTreeMap<String, Keeper>,
    pods: Vec<Process>,
    extras: Vec<Process>,
    load_extras_started: bool,
    apiserver: Option<Process>,
    collector: Option<Process>,
    /// Carries the collector's OTLP out of the control namespace; outlives the collector, whose
    /// last export happens as it stops.
    otlp_relay: Option<otlp::Relay>,
    agents: BTreeMap<String, Process>,
    proxy: Option<Process>,
    /// The lock is released last.
    _lock: RunLock,
}

/// Prints a progress line (stderr), with the time since the start.
pub type Progress<'a> = &'a dyn Fn(&str);

impl Cluster {
    /// Removes leftovers of an earlier run, then builds `plan`. On failure what was made is removed.
    pub fn build(plan: Plan, binaries: Binaries, options: &ClusterOptions, progress: Progress<'_>) -> Result<Self> {
        let lock = RunLock::acquire()?;
        let layout = CgroupLayout::detect()?;
        let removed = cleanup::remove_demo_leftovers(&layout)?;
        if !removed.is_empty() {
            progress(&format!("removed what an earlier run left behind: {}", removed.join(", ")));
        }
        let run_dir = tempfile::Builder::new()
            .prefix(&cleanup::demo_run_dir_prefix())
            .tempdir()
            .map_err(|source| Error::File {
                action: "creating a run directory in",
                path: std::env::temp_dir(),
                source,
            })?
            .keep();
        let mut cluster = Self {
            plan,
            binaries,
            layout,
            run_dir,
            made_netns: Vec::new(),
            made_cgroups: false,
            keepers: BTreeMap::new(),
            pods: Vec::new(),
            extras: Vec::new(),
            load_extras_started: false,
            apiserver: None,
            collector: None,
            otlp_relay: None,
            agents: BTreeMap::new(),
            proxy: None,
            _lock: lock,
        };
        cluster.build_all(options, progress)?;
        Ok(cluster)
    }

    fn build_all(&mut self, options: &ClusterOptions, progress: Progress<'_>) -> Result<()> {
        for dir in ["logs", "pods", "sys", "nginx", "data"] {
            let path = self.run_dir.join(dir);
            std::fs::create_dir_all(&path).map_err(|source| Error::File { action: "creating", path, source })?;
        }
        progress(&format!(
            "building {} nodes and {} pods in network namespaces ({}*), addresses in 198.18.0.0/15",
            self.plan.nodes.len(),
            self.plan.pods.len(),
            crate::plan::PREFIX
        ));
        self.make_network()?;
        self.make_cgroups()?;
        self.start_keepers()?;
        progress(if self.plan.scenario.relay().is_some() {
            "starting the pods (WordPress and MySQL stand-ins, nginx as the in-cluster proxy)"
        } else {
            "starting the pods (WordPress and MySQL stand-ins)"
        });
        self.start_pods()?;
        self.start_extras(false)?;
        progress("starting the control plane (collector) and one agent per node");
        self.start_control(options.otlp.as_ref())?;
        if options.agents {
            self.start_agents(options.agent_interval)?;
        }
        if self.plan.scenario.proxy.kind == ProxyKind::Nginx {
            progress("starting nginx as the reverse proxy");
            self.start_proxy()?;
        }
        Ok(())
    }

    pub(crate) fn log(&self, name: &str) -> PathBuf {
        self.run_dir.join("logs").join(format!("{name}.log"))
    }

    fn add_netns(&mut self, name: &str) -> Result<()> {
        self.made_netns.push(Netns::create(name)?);
        Ok(())
    }

    /// A veth from `netns` (named `eth0` there) to the LAN bridge, with `address/24`.
    fn plug_into_lan(&self, netns: &str, lan_peer: &str, address: Ipv4Addr) -> Result<()> {
        netns::veth(End { netns, device: NODE_NIC }, End { netns: LAN_NETNS, device: lan_peer })?;
        ip(&["-n", LAN_NETNS, "link", "set", lan_peer, "master", LAN_BRIDGE, "up"])?;
        netns::add_address(netns, &format!("{address}/{LAN_PREFIX_LEN}"), NODE_NIC)?;
        Ok(netns::link_up(netns, NODE_NIC)?)
    }

    fn make_network(&mut self) -> Result<()> {
        let plan = self.plan.clone();
        self.add_netns(LAN_NETNS)?;
        ip(&["-n", LAN_NETNS, "link", "add", LAN_BRIDGE, "type", "bridge"])?;
        ip(&["-n", LAN_NETNS, "link", "set", LAN_BRIDGE, "up"])?;
        for station in [&plan.control, &plan.proxy, &plan.client] {
            self.add_netns(&station.netns)?;
            self.plug_into_lan(&station.netns, &station.lan_peer, station.address)?;
        }
        for node in &plan.nodes {
            self.add_netns(&node.netns)?;
            self.plug_into_lan(&node.netns, &node.lan_peer, node.address)?;
            for (key, value) in [
                ("net.ipv4.ip_forward", "1"),
                ("net.ipv4.conf.all.rp_filter", "0"),
                ("net.ipv4.conf.default.rp_filter", "0"),
                ("net.ipv4.conf.eth0.rp_filter", "0"),
            ] {
                sysctl(&node.netns, key, value)?;
            }
            // flannel host-gw style: every other node's pod CIDR through that node.
            for other in plan.nodes.iter().filter(|o| o.index != node.index) {
                ip(&[
                    "-n",
                    &node.netns,
                    "route",
                    "add",
                    &format!("{}/24", other.pod_cidr),
                    "via",
                    &other.address.to_string(),
                ])?;
            }
        }
        for pod in &plan.pods {
            self.make_pod_network(pod)?;
        }
        // The LoadBalancer IP.
        match plan.scenario.service.entry {
            Entry::L2 => {
                // MetalLB L2: the announcer answers ARP for the IP on the LAN.
                let announcer = plan
                    .entry_nodes()
                    .first()
                    .map(|n| n.netns.clone())
                    .ok_or_else(|| Error::Plan("an L2 entry without an announcer".into()))?;
                ip(&["-n", &announcer, "addr", "add", &format!("{}/32", plan.load_balancer_ip), "dev", NODE_NIC])?;
            }
            Entry::EveryNode => {
                // MetalLB BGP: the router (here the proxy's and the client's own routing table)
                // spreads connections over the entry nodes by a hash of the 5-tuple.
                let hops: Vec<String> = plan.entry_nodes().iter().map(|n| n.address.to_string()).collect();
                for station in [&plan.proxy, &plan.client] {
                    sysctl(&station.netns, "net.ipv4.fib_multipath_hash_policy", "1")?;
                    let mut args = vec![
                        "-n".to_string(),
                        station.netns.clone(),
                        "route".into(),
                        "add".into(),
                        format!("{}/32", plan.load_balancer_ip),
                    ];
                    if let [only] = hops.as_slice() {
                        args.extend(["via".to_string(), only.clone()]);
                    } else {
                        for hop in &hops {
                            args.extend(["nexthop".to_string(), "via".to_string(), hop.clone()]);
                        }
                    }
                    let args: Vec<&str> = args.iter().map(String::as_str).collect();
                    ip(&args)?;
                }
            }
        }
        for node in &plan.nodes {
            let rules = kube_proxy::rules(&plan, node);
            let path = self.run_dir.join(format!("iptables-{}.rules", node.name));
            std::fs::write(&path, &rules).map_err(|source| Error::File { action: "writing", path, source })?;
            iptables_restore(&node.netns, &rules)?;
        }
        Ok(())
    }

    /// Calico style: the pod's `eth0` has its /32 and a default route through the node's gateway
    /// address, which every host-side veth of the node carries; the node routes the pod's /32 to
    /// its veth. Traffic between pods of one node goes through the node's IP stack (and its
    /// iptables), as it does with Calico.
    fn make_pod_network(&mut self, pod: &PodPlan) -> Result<()> {
        let node = self.plan.nodes[pod.node_index].clone();
        self.add_netns(&pod.netns)?;
        netns::veth(End { netns: &node.netns, device: &pod.host_veth }, End { netns: &pod.netns, device: "eth0" })?;
        let gateway = node.pod_gateway.to_string();
        ip(&["-n", &node.netns, "addr", "add", &format!("{gateway}/32"), "dev", &pod.host_veth])?;
        ip(&["-n", &node.netns, "link", "set", &pod.host_veth, "up"])?;
        ip(&["-n", &node.netns, "route", "add", &format!("{}/32", pod.address), "dev", &pod.host_veth])?;
        ip(&["-n", &pod.netns, "addr", "add", &format!("{}/32", pod.address), "dev", "eth0"])?;
        ip(&["-n", &pod.netns, "link", "set", "eth0", "up"])?;
        ip(&["-n", &pod.netns, "route", "add", &gateway, "dev", "eth0", "scope", "link"])?;
        ip(&["-n", &pod.netns, "route", "add", "default", "via", &gateway, "dev", "eth0"])?;
        Ok(())
    }

    fn make_cgroups(&mut self) -> Result<()> {
        self.made_cgroups = true;
        for (node, spec) in self.plan.nodes.iter().zip(&self.plan.scenario.nodes) {
            self.layout.create(&node_system_cgroup(&node.name))?;
            // The node's memory: its agent reads the limit as the node's MemTotal, and the hog and
            // pods below the node cgroup are held to it.
            if let Some(mib) = spec.memory_mib {
                self.layout.set_memory_limit(&node_cgroup(&node.name), mib << 20)?;
            }
        }
        for pod in &self.plan.pods {
            self.layout.create(&pod.container_cgroup())?;
        }
        Ok(())
    }

    fn start_keepers(&mut self) -> Result<()> {
        let plan = self.plan.clone();
        let stations: Vec<&Station> = vec![&plan.control, &plan.proxy, &plan.client];
        for station in stations {
            let keeper = Keeper::start(&self.binaries.demo, &station.netns, Vec::new(), self.log(&station.netns))?;
            self.keepers.insert(station.netns.clone(), keeper);
        }
        for node in &plan.nodes {
            let cgroups = self.layout.dirs(&node_system_cgroup(&node.name));
            let keeper = Keeper::start(&self.binaries.demo, &node.netns, cgroups, self.log(&node.netns))?;
            self.keepers.insert(node.netns.clone(), keeper);
        }
        Ok(())
    }

    pub(crate) fn keeper(&self, netns: &str) -> Result<&Keeper> {
        self.keepers.get(netns).ok_or_else(|| Error::Plan(format!("no keeper for {netns}")))
    }

    /// The stats file of a web pod.
    pub fn stats_file(&self, pod: &PodPlan) -> PathBuf {
        self.run_dir.join("pods").join(format!("{}.json", pod.name))
    }

    fn start_pods(&mut self) -> Result<()> {
        let plan = self.plan.clone();
        let demo = self.binaries.demo.display().to_string();
        // Databases first: web pods query them from their first request; proxies last.
        let mut order: Vec<&PodPlan> = plan.pods.iter().collect();
        order.sort_by_key(|p| match p.app {
            App::Database => 0,
            App::Web => 1,
            App::Proxy => 2,
        });
        for pod in order {
            let Some(spec) = plan.scenario.workload(&pod.workload) else { continue };
            let node = &plan.nodes[pod.node_index];
            let cgroups = self.layout.dirs(&pod.container_cgroup());
            let proc = match pod.app {
                App::Proxy => {
                    // Nginx Proxy Manager's proxy host: nginx in the pod, relaying to the upstream
                    // workload's ClusterIP, so kube-proxy on this pod's node picks a web pod.
                    let upstream = spec
                        .upstream
                        .as_ref()
                        .and_then(|u| plan.service(u))
                        .ok_or_else(|| Error::Plan(format!("{}: no Service for its upstream", pod.name)))?;
                    let dir = self.run_dir.join("nginx").join(&pod.name);
                    let config = nginx::config(
                        &dir,
                        std::net::SocketAddrV4::new(pod.address, pod.port),
                        std::net::SocketAddrV4::new(upstream.cluster_ip, upstream.port),
                        spec.upstream_keepalive,
                    );
                    self.start_nginx(&pod.name, &dir, &config, &node.netns, Some(&pod.netns), cgroups)?
                }
                App::Web | App::Database => {
                    let mut command = vec![demo.clone()];
                    command.extend(self.stand_in_args(pod, spec));
                    let args = self.keeper(&node.netns)?.enter_args(Some(&pod.netns), cgroups, command);
                    let output = Output::Lines { stderr_log: Some(self.log(&pod.name)) };
                    let proc = launch::start(&pod.name, &self.binaries.demo, &args, output)?;
                    proc.wait_for_line(&format!("{} to listen", pod.name), Duration::from_secs(10), |l| {
                        l.starts_with("listening")
                    })
                    .map_err(|e| with_log(&proc, e))?;
                    proc
                }
            };
            self.pods.push(proc);
        }
        Ok(())
    }

    /// The `bakery-demo` subcommand and flags of a web or database pod's stand-in.
    fn stand_in_args(&self, pod: &PodPlan, spec: &WorkloadSpec) -> Vec<String> {
        let listen = format!("0.0.0.0:{}", pod.port);
        let mut args: Vec<String> = Vec::new();
        if pod.app == App::Database {
            args.extend(["database".into(), "--listen".into(), listen]);
            args.extend([
                "--cpu-ms".into(),
                spec.cpu_ms.to_string(),
                "--wait-ms".into(),
                spec.query_wait_ms.to_string(),
            ]);
            args.extend(["--response-bytes".into(), spec.response_bytes.to_string()]);
            return args;
        }
        args.extend(["web".into(), "--listen".into(), listen]);
        args.extend([
            "--cpu-ms".into(),
            spec.cpu_ms.to_string(),
            "--response-bytes".into(),
            spec.response_bytes.to_string(),
        ]);
        args.extend(["--pod-name".into(), pod.name.clone()]);
        args.extend(["--stats".into(), self.stats_file(pod).display().to_string()]);
        if let Some(database) = spec.database.as_ref().and_then(|d| self.plan.service(d)) {
            args.extend(["--database".into(), format!("{}:{}", database.cluster_ip, database.port)]);
            args.extend(["--queries".into(), spec.queries_per_request.to_string()]);
        }
        args
    }

    /// Starts Debian's nginx with `config` (written to `dir`, where it keeps everything) in
    /// `netns`'s keeper (the node's, or the proxy station's), inside `pod_netns` and `cgroups` for a
    /// pod; returns once it has written its pid file, which nginx does after opening its listening
    /// sockets.
    fn start_nginx(
        &self,
        name: &str,
        dir: &Path,
        config: &str,
        netns: &str,
        pod_netns: Option<&str>,
        cgroups: Vec<PathBuf>,
    ) -> Result<Process> {
        let nginx = self
            .binaries
            .nginx
            .clone()
            .ok_or_else(|| Error::Missing { what: "nginx".into(), how: "apt-get install nginx".into() })?;
        std::fs::create_dir_all(dir).map_err(|source| Error::File {
            action: "creating",
            path: dir.to_path_buf(),
            source,
        })?;
        let config_path = dir.join("nginx.conf");
        std::fs::write(&config_path, config).map_err(|source| Error::File {
            action: "writing",
            path: config_path.clone(),
            source,
        })?;
        let command = vec![
            nginx.display().to_string(),
            "-c".into(),
            config_path.display().to_string(),
            "-p".into(),
            format!("{}/", dir.display()),
            "-e".into(),
            dir.join("nginx-error.log").display().to_string(),
        ];
        let args = self.keeper(netns)?.enter_args(pod_netns, cgroups, command);
        let mut proxy = launch::start(name, &self.binaries.demo, &args, Output::Log(self.log(name)))?;
        let pid_file = dir.join("nginx.pid");
        if let Err(error) = wait_for_file(&mut proxy, &pid_file, Duration::from_secs(10)) {
            // nginx says why in its own error log.
            let error_log = std::fs::read_to_string(dir.join("nginx-error.log")).unwrap_or_default();
            let tail = error_log.lines().rev().take(8).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>();
            return Err(Error::Process {
                name: format!("{name} (nginx)"),
                tail: tail.join("\n"),
                source: Box::new(error),
            });
        }
        Ok(proxy)
    }

    /// Starts the burners that wait for the load (`burn_starts = "with-load"`, the default);
    /// returns what it started. Once: a second call starts nothing.
    pub fn start_load_extras(&mut self) -> Result<Vec<String>> {
        if self.load_extras_started {
            return Ok(Vec::new());
        }
        self.load_extras_started = true;
        self.start_extras(true)
    }

    /// Starts the per-node extras that start at boot (`with_load` false) or with the load (true).
    fn start_extras(&mut self, with_load: bool) -> Result<Vec<String>> {
        let plan = self.plan.clone();
        let demo = self.binaries.demo.display().to_string();
        let mut started = Vec::new();
        for (node, spec) in plan.nodes.iter().zip(&plan.scenario.nodes) {
            let mut commands = Vec::new();
            // A burner with a start time waits for its onset instead.
            let burner_now = (spec.extras.burn_starts == BurnStart::WithLoad) == with_load;
            if spec.extras.burn_cores > 0.0 && burner_now && spec.extras.burn_start_s.is_none() {
                commands.push((
                    "burn",
                    vec![demo.clone(), "burn".into(), "--cores".into(), spec.extras.burn_cores.to_string()],
                ));
            }
            if spec.extras.memory_hog_mib > 0 && !with_load {
                commands.push((
                    "hog",
                    vec![demo.clone(), "hog".into(), "--mib".into(), spec.extras.memory_hog_mib.to_string()],
                ));
            }
            for (what, command) in commands {
                let name = format!("{what}-{}", node.name);
                self.extras.push(self.launch_extra(node, &name, command)?);
                started.push(name);
            }
        }
        Ok(started)
    }

    /// Starts an extra (`command`, a burner or a hog) as `name` on `node`, outside its pods;
    /// returns it once it says it runs.
    pub(crate) fn launch_extra(&self, node: &NodePlan, name: &str, command: Vec<String>) -> Result<Process> {
        let cgroups = self.layout.dirs(&node_system_cgroup(&node.name));
        let args = self.keeper(&node.netns)?.enter_args(None, cgroups, command);
        let output = Output::Lines { stderr_log: Some(self.log(name)) };
        let proc = launch::start(name, &self.binaries.demo, &args, output)?;
        proc.wait_for_line(&format!("{name} to start"), Duration::from_secs(30), |l| {
            l.starts_with("burning") || l.starts_with("holding")
        })
        .map_err(|e| with_log(&proc, e))?;
        Ok(proc)
    }

    /// Keeps extras started elsewhere (at a mid-run onset) with the others, to stop them alike.
    pub fn keep_extras(&mut self, extras: Vec<Process>) {
        self.extras.extend(extras);
    }

    /// The sys root of a node's agent: the real `/sys`, or an overlay with the node's thermals
    /// (cool until its onset for a board that turns hot mid-run).
    fn sys_root(&self, node: &str) -> Result<Option<PathBuf>> {
        let Some(thermal) = self.plan.scenario.node(node).and_then(|n| n.extras.thermal.clone()) else {
            return Ok(None);
        };
        let overlay = self.sys_overlay(node);
        let board = if thermal.start_s.is_some() { sysfs::cool(&thermal) } else { thermal };
        sysfs::build(Path::new("/sys"), &overlay, &sysfs::thermal_files(&board, sysfs::cores()))?;
        Ok(Some(overlay))
    }

    /// Where a node's sysfs overlay is.
    pub(crate) fn sys_overlay(&self, node: &str) -> PathBuf {
        self.run_dir.join("sys").join(node)
    }

    /// The state file the API double serves and follows.
    pub(crate) fn state_file(&self) -> PathBuf {
        self.run_dir.join("kube-state.json")
    }

    fn start_control(&mut self, otlp: Option<&otlp::Export>) -> Result<()> {
        let control = self.plan.control.netns.clone();
        let state_file = self.state_file();
        let state = serde_json::to_string_pretty(&kube_state::state(&self.plan))
            .map_err(|source| Error::Json { what: "the cluster's state for the API double".into(), source })?;
        std::fs::write(&state_file, state).map_err(|source| Error::File {
            action: "writing",
            path: state_file.clone(),
            source,
        })?;
        let mut kubeconfig = None;
        if let Some(apiserver) = self.binaries.apiserver.clone() {
            let path = self.run_dir.join("kubeconfig");
            let ready = self.run_dir.join("apiserver.ready");
            let command = vec![
                apiserver.display().to_string(),
                "--listen".into(),
                format!("127.0.0.1:{APISERVER_PORT}"),
                "--state".into(),
                state_file.display().to_string(),
                "--kubeconfig-out".into(),
                path.display().to_string(),
                "--ready-file".into(),
                ready.display().to_string(),
            ];
            let args = self.keeper(&control)?.enter_args(None, Vec::new(), command);
            let mut double =
                launch::start("bakery-fake-apiserver", &self.binaries.demo, &args, Output::Log(self.log("apiserver")))?;
            wait_for_file(&mut double, &ready, Duration::from_secs(10))?;
            self.apiserver = Some(double);
            kubeconfig = Some(path);
        }
        let ready = self.run_dir.join("collector.ready");
        let mut command = vec![
            self.binaries.collector.display().to_string(),
            "serve".into(),
            "--listen".into(),
            format!("{}:{COLLECTOR_PORT}", self.plan.control.address),
            "--data-dir".into(),
            self.data_dir().display().to_string(),
            "--insecure-no-auth".into(),
            "--ready-file".into(),
            ready.display().to_string(),
        ];
        let flags = collector_flags(&self.binaries.collector);
        match kubeconfig {
            Some(kubeconfig) if flags.contains("--kubeconfig") => {
                command.extend(["--kubeconfig".into(), kubeconfig.display().to_string()]);
            }
            // Never a real cluster from ~/.kube/config: the demo's cluster is this one.
            _ if flags.contains("--no-kubernetes") => command.push("--no-kubernetes".into()),
            _ => {}
        }
        if flags.contains("--no-auto-windows") {
            // The demo opens its own window; an automatic one would split the load.
            command.push("--no-auto-windows".into());
        }
        if let Some(export) = otlp {
            self.otlp_relay = Some(otlp::Relay::start(&control, &export.target)?);
        }
        let relay = otlp.zip(self.otlp_relay.as_ref().map(otlp::Relay::address));
        let env = otlp::collector_env(relay, |name| std::env::var(name).ok());
        let args = self.keeper(&control)?.enter_args(None, Vec::new(), command);
        // What `enter` runs inherits these changes to the environment.
        let mut collector = env
            .iter()
            .fold(Spawn::new("bakery-collector", &self.binaries.demo), |spawn, (variable, value)| match value {
                Some(value) => spawn.env(variable, value),
                None => spawn.env_remove(variable),
            })
            .args(&args)
            .output(Output::Log(self.log("collector")))
            .own_group()
            .start()?;
        wait_for_file(&mut collector, &ready, Duration::from_secs(20))?;
        self.collector = Some(collector);
        Ok(())
    }

    /// The collector's store.
    pub fn data_dir(&self) -> PathBuf {
        self.run_dir.join("data")
    }

    /// Starts one agent per node.
    pub fn start_agents(&mut self, interval: Duration) -> Result<()> {
        let plan = self.plan.clone();
        for node in &plan.nodes {
            let mut command = vec![
                self.binaries.agent.display().to_string(),
                "--collector".into(),
                plan.collector_url(),
                "--insecure-no-auth".into(),
                "--interval".into(),
                humantime::format_duration(interval).to_string(),
                "--node-name".into(),
                node.name.clone(),
                // /proc/stat, /proc/meminfo and /proc/pressure are the machine's in every node's
                // PID namespace; the node's own CPU and memory are in its cgroup subtree.
                "--node-cgroup".into(),
                node_cgroup(&node.name),
            ];
            if let Some(sys_root) = self.sys_root(&node.name)? {
                command.extend(["--sys-root".into(), sys_root.display().to_string()]);
            }
            let cgroups = self.layout.dirs(&node_system_cgroup(&node.name));
            let args = self.keeper(&node.netns)?.enter_args(None, cgroups, command);
            let name = format!("agent-{}", node.name);
            let agent = launch::start(&name, &self.binaries.demo, &args, Output::Log(self.log(&name)))?;
            self.agents.insert(node.name.clone(), agent);
        }
        Ok(())
    }

    /// Stops the agents with SIGTERM (they send what they hold first), all at once; true when all
    /// stopped so.
    pub fn stop_agents(&mut self) -> bool {
        let mut agents: Vec<Process> = std::mem::take(&mut self.agents).into_values().collect();
        stop_all(&mut agents, Duration::from_secs(10))
    }

    pub fn agents_running(&self) -> bool {
        !self.agents.is_empty()
    }

    /// The agents' launchers' process ids (each agent is its launcher's child) and the collector's.
    pub fn bakery_pids(&self) -> (Vec<u32>, Option<u32>) {
        (self.agents.values().map(Process::pid).collect(), self.collector.as_ref().map(Process::pid))
    }

    /// Stops the collector with SIGTERM (it commits what it received); true when it stopped so.
    pub fn stop_collector(&mut self) -> bool {
        self.collector.take().is_none_or(|mut collector| collector.stop(Duration::from_secs(15)))
    }

    /// Stops the OTLP relay (after the collector: its last export goes through it) and says what
    /// it relayed; `None` without `--otlp-endpoint`.
    pub fn stop_otlp_relay(&mut self) -> Option<otlp::RelayStats> {
        self.otlp_relay.take().map(|mut relay| relay.stop())
    }

    fn start_proxy(&mut self) -> Result<()> {
        let dir = self.run_dir.join("nginx").join("outside");
        let entry = self.plan.scenario.entry_workload();
        let config = nginx::config(
            &dir,
            std::net::SocketAddrV4::new(self.plan.proxy.address, 80),
            std::net::SocketAddrV4::new(self.plan.load_balancer_ip, entry.port()),
            self.plan.scenario.proxy.upstream_keepalive,
        );
        let netns = self.plan.proxy.netns.clone();
        self.proxy = Some(self.start_nginx("nginx", &dir, &config, &netns, None, Vec::new())?);
        Ok(())
    }

    /// Runs `command` in the client station (the load generator's namespace).
    pub fn spawn_in_client(&self, name: &str, command: Vec<String>) -> Result<Process> {
        let args = self.keeper(&self.plan.client.netns)?.enter_args(None, Vec::new(), command);
        launch::start(name, &self.binaries.demo, &args, Output::Lines { stderr_log: Some(self.log(name)) })
    }

    /// Runs `command` in the control station (where the collector is), on this terminal.
    pub fn spawn_in_control_on_terminal(&self, name: &str, command: Vec<String>) -> Result<Process> {
        let args = self.keeper(&self.plan.control.netns)?.enter_args(None, Vec::new(), command);
        // In the terminal's process group: it reads the keyboard.
        Ok(Spawn::new(name, &self.binaries.demo).args(&args).output(Output::Inherit).start()?)
    }

    /// The URL the load generator targets: the proxy, or the LoadBalancer IP without one.
    pub fn target_url(&self) -> String {
        match self.plan.scenario.proxy.kind {
            ProxyKind::Nginx => format!("http://{}/", self.plan.proxy.address),
            ProxyKind::None => {
                format!("http://{}:{}/", self.plan.load_balancer_ip, self.plan.scenario.entry_workload().port())
            }
        }
    }

    /// Reads the statistics of a pod's host-side veth (in its node's namespace): what the kernel
    /// counted at the node end of the pod's cable, as (rx, tx) from the node's side.
    pub fn host_veth_bytes(&self, pod: &PodPlan) -> Result<(u64, u64)> {
        let node = &self.plan.nodes[pod.node_index];
        let json = ip(&["-n", &node.netns, "-s", "-j", "link", "show", "dev", &pod.host_veth])?;
        let value: serde_json::Value = serde_json::from_str(&json)
            .map_err(|source| Error::Json { what: format!("`ip -s -j link show dev {}`", pod.host_veth), source })?;
        let stats = &value[0]["stats64"];
        let read = |dir: &str| {
            stats[dir]["bytes"]
                .as_u64()
                .ok_or_else(|| Error::Stalled(format!("`ip -s -j` shows no {dir} bytes for {}", pod.host_veth)))
        };
        Ok((read("rx")?, read("tx")?))
    }

    /// Stops everything and removes every namespace, cgroup and the run directory. Idempotent;
    /// returns what could not be removed.
    pub fn teardown(&mut self) -> Vec<Error> {
        let mut problems = Vec::new();
        self.stop_agents();
        self.stop_collector();
        self.stop_otlp_relay();
        // Closing every keeper's stdin ends every node at once: the kernel kills each PID
        // namespace's processes. Their launchers (this process's children) then exit and reap them,
        // so nothing is left for the machine's init to reap.
        for keeper in self.keepers.values_mut() {
            keeper.process.close_stdin();
        }
        let mut launched: Vec<Process> = [self.proxy.take(), self.apiserver.take()].into_iter().flatten().collect();
        launched.append(&mut self.pods);
        launched.append(&mut self.extras);
        wait_all(&mut launched, Duration::from_secs(5));
        let mut keepers: Vec<Keeper> = std::mem::take(&mut self.keepers).into_values().collect();
        for keeper in &mut keepers {
            keeper.stop();
        }
        drop(launched);
        for netns in self.made_netns.drain(..).rev() {
            if let Err(e) = netns.remove() {
                problems.push(e.into());
            }
        }
        if self.made_cgroups {
            if let Err(e) = self.layout.remove(crate::plan::CGROUP_DIR) {
                problems.push(e.into());
            }
            self.made_cgroups = false;
        }
        if self.run_dir.exists()
            && let Err(source) = std::fs::remove_dir_all(&self.run_dir)
        {
            problems.push(Error::File { action: "removing", path: self.run_dir.clone(), source });
        }
        problems
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for problem in self.teardown() {
            eprintln!("bakery-demo: cleanup: {}", bakery_lab::chain(&problem));
        }
    }
}

/// Waits until `process` has written `file` (its ready file), failing if it exits first.
fn wait_for_file(process: &mut Process, file: &Path, timeout: Duration) -> Result<()> {
    let what = format!("{} to write {}", process.name(), file.display());
    let mut exited = false;
    let written = wait_until(&what, timeout, || {
        exited = !process.running();
        exited || file.is_file()
    });
    match written {
        Ok(()) if !exited || file.is_file() => Ok(()),
        Ok(()) => Err(with_log(process, Error::Stalled(format!("{} exited before it was ready", process.name())))),
        Err(timeout) => Err(with_log(process, timeout)),
    }
}

/// The flags this collector build's `serve` accepts (older builds lack the Kubernetes watch and
/// the windows), from its help.
fn collector_flags(collector: &Path) -> String {
    std::process::Command::new(collector)
        .args(["serve", "--help"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Whether any of the demo's namespaces, cgroups or run directories exist (what the root tests
/// check after every run, and `bakery-demo cleanup` reports).
pub fn leftovers() -> Vec<String> {
    cleanup::demo_leftovers()
}

/// The node cgroup of `node` in every hierarchy (tests read its accounting).
pub fn node_cgroup_dirs(layout: &CgroupLayout, node: &str) -> Vec<PathBuf> {
    layout.dirs(&node_cgroup(node))
}
