//! Simulated pods and nodes on real kernel objects (made with `bakery_lab`), for tests that run
//! as root.
//!
//! A [`SimPod`] is what the agent sees of a Kubernetes pod, made without
//! Kubernetes: a network namespace for the pod and one for its client,
//! joined by a veth pair (`eth0` on both sides) with addresses from
//! 198.18.0.0/15 configured only inside those namespaces, never in the root
//! namespace; and a server process (`bakery-test-pod serve`, or `http` for a
//! pod that carries traffic from [`SimPod::load`]) in the pod's
//! namespace and in a kubepods-style cgroup named after the pod UID, with
//! the cgroupfs driver's layout (`/kubepods/<qos>/pod<uid>/<container-id>`,
//! no QoS level for Guaranteed) in the cpuacct and memory controllers on
//! cgroup v1, or in the unified hierarchy on cgroup v2.
//!
//! A pod made on a [`SimNode`] is joined to that node the way a CNI joins a
//! pod to a Kubernetes node: the veth's other end (`veth<n>`, with the
//! client address) is in the node's network namespace, and the client runs
//! there, as kubelet probes and ingress traffic do on a real node.
//!
//! Names carry the creating process's pid (`bakery_lab::cleanup`), so
//! parallel tests and parallel test runs never collide, and the first pod a
//! process creates removes what a killed earlier run left behind.
//! Everything is undone on drop, also when the test fails; the pod's
//! processes also exit by themselves when the test process dies (they watch
//! their stdin).

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use bakery_agent::pods::QosClass;
use bakery_lab::binaries::built_binary;
use bakery_lab::cgroup::CgroupLayout;
use bakery_lab::cleanup::{remove_test_leftovers, test_netns_name, test_pod_uid};
use bakery_lab::netns::{self, End, Netns};
use bakery_lab::process::{Output, Process, Spawn};

/// How long any one step (a process starting, bytes arriving) may take.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(30);

static NEXT_POD: AtomicU32 = AtomicU32::new(0);
static LEFTOVERS_REMOVED: Once = Once::new();

fn remove_leftovers() {
    LEFTOVERS_REMOVED.call_once(|| {
        if let Err(error) = remove_test_leftovers() {
            eprintln!("bakery-tests: could not remove what earlier runs left: {}", bakery_lab::chain(&error));
        }
    });
}

/// What a simulated pod's server has reported so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerState {
    pub listening: bool,
    pub accepted: u64,
    pub closed: u64,
    /// Bytes read from connections that have closed.
    pub bytes_received: u64,
    /// Requests an HTTP server had answered when it was last asked ([`SimPod::requests_served`]).
    pub requests: u64,
}

impl ServerState {
    pub fn open_connections(&self) -> u64 {
        self.accepted.saturating_sub(self.closed)
    }

    fn from_lines(lines: &[String]) -> Self {
        let mut state = Self::default();
        for line in lines {
            let mut words = line.split_whitespace();
            match (words.next(), words.next()) {
                (Some("listening"), _) => state.listening = true,
                (Some("accepted"), _) => state.accepted += 1,
                (Some("closed"), Some(bytes)) => {
                    state.closed += 1;
                    state.bytes_received += bytes.parse::<u64>().unwrap_or_default();
                }
                (Some("served"), Some(requests)) => state.requests = requests.parse().unwrap_or_default(),
                _ => {}
            }
        }
        state
    }
}

/// What a pod's server process does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    /// Accepts connections and holds them, reading and discarding what comes (`serve`).
    Hold,
    /// Answers HTTP/1.1 requests with a small body (`http`), for [`SimPod::load`].
    Http,
}

/// A bounded HTTP load on one pod, from its client namespace ([`SimPod::load`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodLoad {
    /// Requests a second, those on new connections included.
    pub requests_per_second: u32,
    /// Connections kept open that carry the requests not on new connections.
    pub keep_alive_connections: u32,
    /// New connections a second, one request each, closed by the server.
    pub new_connections_per_second: u32,
    /// After this the load stops by itself (it also stops when this process dies).
    pub duration: Duration,
}

/// A pod made of a network namespace, a cgroup and a server process.
#[derive(Debug)]
pub struct SimPod {
    name: String,
    uid: String,
    qos: QosClass,
    port: u16,
    server_kind: Server,
    pod_address: Ipv4Addr,
    client_address: Ipv4Addr,
    pod_netns: String,
    client_netns: String,
    /// The client's end of the veth: `eth0` in the pod's own client
    /// namespace, `veth<n>` on a node.
    client_interface: String,
    container_id: String,
    binary: PathBuf,
    layout: CgroupLayout,
    /// What exists so far, so that drop undoes exactly that (also after a
    /// failed create): the namespaces this pod owns, and its pod cgroup.
    made_netns: Vec<Netns>,
    made_cgroup: Option<String>,
    server: Option<Process>,
}

impl SimPod {
    /// A BestEffort pod whose server listens on port 80.
    pub fn create(name: &str) -> anyhow::Result<Self> {
        Self::create_with(name, QosClass::BestEffort, 80)
    }

    /// A pod of QoS class `qos` whose server listens on `port`. `name` (a
    /// few lowercase letters, digits or dashes) only helps a person tell
    /// the namespaces apart.
    pub fn create_with(name: &str, qos: QosClass, port: u16) -> anyhow::Result<Self> {
        Self::create_in(name, qos, port, None, Server::Hold)
    }

    /// A BestEffort pod on port 80 joined to `node`.
    pub fn create_on(name: &str, node: &SimNode) -> anyhow::Result<Self> {
        Self::create_in(name, QosClass::BestEffort, 80, Some(node), Server::Hold)
    }

    /// A BestEffort pod on port 80 joined to `node`, whose server is `server`.
    pub fn create_serving_on(name: &str, node: &SimNode, server: Server) -> anyhow::Result<Self> {
        Self::create_in(name, QosClass::BestEffort, 80, Some(node), server)
    }

    fn create_in(
        name: &str,
        qos: QosClass,
        port: u16,
        node: Option<&SimNode>,
        server_kind: Server,
    ) -> anyhow::Result<Self> {
        let valid = !name.is_empty()
            && name.len() <= 20
            && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !valid {
            bail!("pod name {name:?}: use 1 to 20 lowercase letters, digits or dashes");
        }
        remove_leftovers();
        let layout = CgroupLayout::detect()?;
        let binary = built_binary("bakery-tests", "bakery-test-pod")?;
        let n = NEXT_POD.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
        // A /30 per pod, so addresses differ even if namespaces are shared later.
        let base = u32::from(Ipv4Addr::new(198, 18, 0, 0)) + 4 * (n % 32_768);
        let mut pod = Self {
            name: name.to_string(),
            uid: test_pod_uid(n, nanos),
            qos,
            port,
            server_kind,
            client_address: Ipv4Addr::from(base + 1),
            pod_address: Ipv4Addr::from(base + 2),
            pod_netns: test_netns_name(n, name, "pod"),
            client_netns: node.map_or_else(|| test_netns_name(n, name, "cli"), |node| node.netns().to_string()),
            client_interface: if node.is_some() { format!("veth{n}") } else { "eth0".to_string() },
            container_id: format!("{:08x}{:08x}{:048x}", std::process::id(), n, nanos),
            binary,
            layout,
            made_netns: Vec::new(),
            made_cgroup: None,
            server: None,
        };
        pod.make_network(node.is_none())?;
        pod.make_cgroups()?;
        pod.start_server()?;
        Ok(pod)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The pod UID with dashes, as the agent reports it.
    pub fn uid(&self) -> &str {
        &self.uid
    }

    pub fn qos(&self) -> QosClass {
        self.qos
    }

    /// The pod-level cgroup as the agent reports it, e.g.
    /// `/kubepods/besteffort/pod<uid>`.
    pub fn cgroup_path(&self) -> String {
        format!("/{}", self.pod_cgroup_relative())
    }

    pub fn pod_address(&self) -> Ipv4Addr {
        self.pod_address
    }

    pub fn client_address(&self) -> Ipv4Addr {
        self.client_address
    }

    /// The port the server listens on, inside the pod's namespace.
    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn netns(&self) -> &str {
        &self.pod_netns
    }

    pub fn client_netns(&self) -> &str {
        &self.client_netns
    }

    /// The pid of the pod's server process.
    pub fn server_pid(&self) -> Option<u32> {
        self.server.as_ref().map(Process::pid)
    }

    /// What the server has reported so far.
    pub fn server_state(&self) -> ServerState {
        self.server.as_ref().map(|server| ServerState::from_lines(&server.lines())).unwrap_or_default()
    }

    /// Waits until the server's state satisfies `condition`, at most
    /// `timeout`; fails with `what` and the last state otherwise.
    pub fn wait_for_server(
        &self,
        what: &str,
        timeout: Duration,
        condition: impl Fn(&ServerState) -> bool,
    ) -> anyhow::Result<ServerState> {
        let server = self.server.as_ref().context("the pod has no server")?;
        Ok(server.wait_for_lines(what, timeout, |lines| {
            let state = ServerState::from_lines(lines);
            condition(&state).then_some(state)
        })?)
    }

    /// Runs a client in the client namespace: it sends `send_bytes` to the
    /// server on one connection and waits until the server has read them
    /// all, then opens `hold_connections` connections and holds them until
    /// the returned guard is dropped.
    pub fn client(&self, send_bytes: u64, hold_connections: u32) -> anyhow::Result<SimProcess> {
        let target = format!("{}:{}", self.pod_address, self.port);
        let process = self.spawn_in(
            &self.client_netns,
            &["client", &target, &send_bytes.to_string(), &hold_connections.to_string()],
        )?;
        let holding = format!("holding {hold_connections}");
        process.wait_for_line(&format!("the client to hold {hold_connections} connections"), STEP_TIMEOUT, |line| {
            line == holding
        })?;
        Ok(SimProcess { process })
    }

    /// Runs `load` against an [`Server::Http`] pod from its client namespace (the node's, for a
    /// pod on a node), once its keep-alive connections are open; it stops by itself after
    /// `load.duration`, or when the returned guard is dropped.
    pub fn load(&self, load: &PodLoad) -> anyhow::Result<SimProcess> {
        if self.server_kind != Server::Http {
            bail!("pod {}: a load needs a pod whose server answers HTTP", self.name);
        }
        let target = format!("{}:{}", self.pod_address, self.port);
        let numbers = [
            load.requests_per_second,
            load.keep_alive_connections,
            load.new_connections_per_second,
            u32::try_from(load.duration.as_secs().max(1)).unwrap_or(u32::MAX),
        ]
        .map(|n| n.to_string());
        let mut args = vec!["load", target.as_str()];
        args.extend(numbers.iter().map(String::as_str));
        let process = self.spawn_in(&self.client_netns, &args)?;
        let loading = format!("loading {}", load.keep_alive_connections);
        process.wait_for_line("the load to open its connections", STEP_TIMEOUT, |line| line == loading)?;
        Ok(SimProcess { process })
    }

    /// Requests the pod's [`Server::Http`] server has answered so far (it is asked on its stdin).
    pub fn requests_served(&mut self) -> anyhow::Result<u64> {
        if self.server_kind != Server::Http {
            bail!("pod {}: only an HTTP server counts requests", self.name);
        }
        let server = self.server.as_mut().context("the pod has no server")?;
        let answers = |lines: &[String]| lines.iter().filter(|line| line.starts_with("served ")).count();
        let before = answers(&server.lines());
        server.send_line("count")?;
        let state = server.wait_for_lines("the server to count its requests", STEP_TIMEOUT, |lines| {
            (answers(lines) > before).then(|| ServerState::from_lines(lines))
        })?;
        Ok(state.requests)
    }

    /// Starts one more process in the pod (its namespace and cgroup); it
    /// lives until the returned guard is dropped.
    pub fn spawn_process(&self) -> anyhow::Result<SimProcess> {
        let process = self.spawn_in(&self.pod_netns, &["idle"])?;
        self.layout.join(&self.container_cgroup_relative(), process.pid())?;
        // `ready` comes once `ip netns exec` has entered the namespace.
        process.wait_for_line("the extra pod process to start", STEP_TIMEOUT, |line| line == "ready")?;
        Ok(SimProcess { process })
    }

    /// `bakery-test-pod args` in `netns` (`ip netns exec` execs in place, so
    /// the process's pid is the program's), its stdout lines collected, its
    /// stdin held so that it exits when this process does.
    fn spawn_in(&self, netns: &str, args: &[&str]) -> anyhow::Result<Process> {
        let name = format!("bakery-test-pod {} in {netns}", args.first().copied().unwrap_or_default());
        Ok(Spawn::new(&name, "ip")
            .args(["netns", "exec", netns])
            .arg(&self.binary)
            .args(args)
            .keep_stdin()
            .output(Output::Lines { stderr_log: None })
            .start()?)
    }

    fn pod_cgroup_relative(&self) -> String {
        match self.qos {
            QosClass::Guaranteed => format!("kubepods/pod{}", self.uid),
            QosClass::Burstable => format!("kubepods/burstable/pod{}", self.uid),
            QosClass::BestEffort => format!("kubepods/besteffort/pod{}", self.uid),
        }
    }

    fn container_cgroup_relative(&self) -> String {
        format!("{}/{}", self.pod_cgroup_relative(), self.container_id)
    }

    fn make_network(&mut self, own_client_namespace: bool) -> anyhow::Result<()> {
        self.made_netns.push(Netns::create(&self.pod_netns)?);
        if own_client_namespace {
            self.made_netns.push(Netns::create(&self.client_netns)?);
        }
        // On a node, the node's end goes when the pod's namespace does.
        netns::veth(
            End { netns: &self.client_netns, device: &self.client_interface },
            End { netns: &self.pod_netns, device: "eth0" },
        )?;
        let ends = [
            (&self.client_netns, self.client_address, self.client_interface.as_str()),
            (&self.pod_netns, self.pod_address, "eth0"),
        ];
        for (netns, address, interface) in ends {
            netns::add_address(netns, &format!("{address}/30"), interface)?;
            netns::link_up(netns, interface)?;
        }
        Ok(())
    }

    /// The pod and container cgroups; `kubepods` and the QoS level above
    /// them are shared with other pods and other tests: made if missing,
    /// never removed.
    fn make_cgroups(&mut self) -> anyhow::Result<()> {
        self.made_cgroup = Some(self.pod_cgroup_relative());
        self.layout.create(&self.container_cgroup_relative())?;
        Ok(())
    }

    fn start_server(&mut self) -> anyhow::Result<()> {
        let mode = match self.server_kind {
            Server::Hold => "serve",
            Server::Http => "http",
        };
        let server = self.spawn_in(&self.pod_netns, &[mode, &self.port.to_string()])?;
        // Moved before it starts serving, so its CPU and memory are the pod's.
        let joined = self.layout.join(&self.container_cgroup_relative(), server.pid());
        let server = self.server.insert(server);
        joined?;
        server.send_line("start")?;
        self.wait_for_server("the server to listen", STEP_TIMEOUT, |state| state.listening)?;
        Ok(())
    }
}

impl Drop for SimPod {
    fn drop(&mut self) {
        drop(self.server.take());
        for netns in self.made_netns.drain(..).rev() {
            let name = netns.name().to_string();
            if let Err(error) = netns.remove() {
                eprintln!("bakery-tests: could not remove network namespace {name}: {}", bakery_lab::chain(&error));
            }
        }
        if let Some(pod) = self.made_cgroup.take()
            && let Err(error) = self.layout.remove(&pod)
        {
            eprintln!("bakery-tests: could not remove cgroup {pod}: {}", bakery_lab::chain(&error));
        }
    }
}

/// A network namespace standing for a Kubernetes node: pods made on it
/// ([`SimPod::create_on`]) have the node's end of their veth in it, as a CNI
/// leaves it. Removed on drop, after its pods (which borrow it).
#[derive(Debug)]
pub struct SimNode {
    netns: Netns,
}

impl SimNode {
    pub fn create(name: &str) -> anyhow::Result<Self> {
        remove_leftovers();
        let n = NEXT_POD.fetch_add(1, Ordering::Relaxed);
        Ok(Self { netns: Netns::create(&test_netns_name(n, name, "node"))? })
    }

    pub fn netns(&self) -> &str {
        self.netns.name()
    }

    /// Moves the calling thread into the node's network namespace, as an
    /// agent with hostNetwork runs; threads and processes it starts
    /// afterwards are there too.
    pub fn enter(&self) -> anyhow::Result<()> {
        Ok(netns::enter(self.netns.name())?)
    }
}

/// A process of a simulated pod or its client; killed on drop.
#[derive(Debug)]
pub struct SimProcess {
    process: Process,
}

impl SimProcess {
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Every line the process printed so far.
    pub fn lines(&self) -> Vec<String> {
        self.process.lines()
    }
}
