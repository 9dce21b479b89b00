//! Simulated pods on real kernel objects, for tests that run as root.
//!
//! A [`SimPod`] is what the agent sees of a Kubernetes pod, made without
//! Kubernetes: a network namespace for the pod and one for its client,
//! joined by a veth pair (`eth0` on both sides) with addresses from
//! 198.18.0.0/15 configured only inside those namespaces, never in the root
//! namespace; and a server process (`bakery-test-pod serve`) in the pod's
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
//! Names carry the creating process's pid (`bkt<pid>-<n>-<name>-pod`, and
//! the UID's first group), so parallel tests and parallel test runs never
//! collide, and the first pod a process creates removes what a killed
//! earlier run left behind. Everything is undone on drop, also when the test
//! fails; the pod's processes also exit by themselves when the test process
//! dies (they watch their stdin).

use std::io::{BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, Once};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use bakery_agent::pods::QosClass;

use crate::binaries::built_binary;

/// Network namespace names start with this, then the owner's pid.
const NETNS_PREFIX: &str = "bkt";
/// The middle groups of every UID the harness makes; the first group is the
/// owner's pid in hex.
const UID_MARK: &str = "-0bac-4e57-";
/// How long any one step (a process starting, bytes arriving) may take.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(30);
const CGROUP_ROOT: &str = "/sys/fs/cgroup";
const NETNS_DIR: &str = "/run/netns";

static NEXT_POD: AtomicU32 = AtomicU32::new(0);
static LEFTOVERS_REMOVED: Once = Once::new();

/// What a simulated pod's server has reported so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerState {
    pub listening: bool,
    pub accepted: u64,
    pub closed: u64,
    /// Bytes read from connections that have closed.
    pub bytes_received: u64,
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
                _ => {}
            }
        }
        state
    }
}

/// A pod made of a network namespace, a cgroup and a server process.
#[derive(Debug)]
pub struct SimPod {
    name: String,
    uid: String,
    qos: QosClass,
    port: u16,
    pod_address: Ipv4Addr,
    client_address: Ipv4Addr,
    pod_netns: String,
    client_netns: String,
    /// The client's end of the veth: `eth0` in the pod's own client
    /// namespace, `veth<n>` on a node.
    client_interface: String,
    /// The client namespace is a [`SimNode`]'s, shared and not this pod's.
    on_node: bool,
    container_id: String,
    binary: PathBuf,
    layout: CgroupLayout,
    /// What exists so far, so that drop undoes exactly that (also after a
    /// failed create).
    made_netns: Vec<String>,
    made_cgroups: Vec<PathBuf>,
    server: Option<Watched>,
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
        Self::create_in(name, qos, port, None)
    }

    /// A BestEffort pod on port 80 joined to `node`.
    pub fn create_on(name: &str, node: &SimNode) -> anyhow::Result<Self> {
        Self::create_in(name, QosClass::BestEffort, 80, Some(node))
    }

    fn create_in(name: &str, qos: QosClass, port: u16, node: Option<&SimNode>) -> anyhow::Result<Self> {
        let valid = !name.is_empty()
            && name.len() <= 20
            && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !valid {
            bail!("pod name {name:?}: use 1 to 20 lowercase letters, digits or dashes");
        }
        LEFTOVERS_REMOVED.call_once(remove_leftovers);
        let layout = CgroupLayout::detect()?;
        let binary = built_binary("bakery-tests", "bakery-test-pod")?;
        let owner = std::process::id();
        let n = NEXT_POD.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
        let uid = format!("{owner:08x}{UID_MARK}{:04x}-{:012x}", 0x8000 | (n & 0x0fff), nanos & 0xffff_ffff_ffff);
        // A /30 per pod, so addresses differ even if namespaces are shared later.
        let base = u32::from(Ipv4Addr::new(198, 18, 0, 0)) + 4 * (n % 32_768);
        let mut pod = Self {
            name: name.to_string(),
            uid,
            qos,
            port,
            client_address: Ipv4Addr::from(base + 1),
            pod_address: Ipv4Addr::from(base + 2),
            pod_netns: format!("{NETNS_PREFIX}{owner}-{n}-{name}-pod"),
            client_netns: node
                .map_or_else(|| format!("{NETNS_PREFIX}{owner}-{n}-{name}-cli"), |node| node.netns.clone()),
            client_interface: if node.is_some() { format!("veth{n}") } else { "eth0".to_string() },
            on_node: node.is_some(),
            container_id: format!("{:08x}{:08x}{:048x}", owner, n, nanos),
            binary,
            layout,
            made_netns: Vec::new(),
            made_cgroups: Vec::new(),
            server: None,
        };
        pod.make_network()?;
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
        self.server.as_ref().map(|server| server.child.id())
    }

    /// What the server has reported so far.
    pub fn server_state(&self) -> ServerState {
        self.server.as_ref().map(|server| server.output.with_lines(ServerState::from_lines)).unwrap_or_default()
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
        server.output.wait_for(what, timeout, |lines| {
            let state = ServerState::from_lines(lines);
            condition(&state).then_some(state)
        })
    }

    /// Runs a client in the client namespace: it sends `send_bytes` to the
    /// server on one connection and waits until the server has read them
    /// all, then opens `hold_connections` connections and holds them until
    /// the returned guard is dropped.
    pub fn client(&self, send_bytes: u64, hold_connections: u32) -> anyhow::Result<SimProcess> {
        let target = format!("{}:{}", self.pod_address, self.port);
        let process = Watched::spawn(
            &self.client_netns,
            &self.binary,
            &["client", &target, &send_bytes.to_string(), &hold_connections.to_string()],
        )?;
        let holding = format!("holding {hold_connections}");
        process.output.wait_for(
            &format!("the client to hold {hold_connections} connections"),
            STEP_TIMEOUT,
            |lines| lines.contains(&holding).then_some(()),
        )?;
        Ok(SimProcess { watched: process })
    }

    /// Starts one more process in the pod (its namespace and cgroup); it
    /// lives until the returned guard is dropped.
    pub fn spawn_process(&self) -> anyhow::Result<SimProcess> {
        let process = Watched::spawn(&self.pod_netns, &self.binary, &["idle"])?;
        self.join_cgroups(process.child.id())?;
        // `ready` comes once `ip netns exec` has entered the namespace.
        process.output.wait_for("the extra pod process to start", STEP_TIMEOUT, |lines| {
            lines.iter().any(|line| line == "ready").then_some(())
        })?;
        Ok(SimProcess { watched: process })
    }

    fn pod_cgroup_relative(&self) -> String {
        match self.qos {
            QosClass::Guaranteed => format!("kubepods/pod{}", self.uid),
            QosClass::Burstable => format!("kubepods/burstable/pod{}", self.uid),
            QosClass::BestEffort => format!("kubepods/besteffort/pod{}", self.uid),
        }
    }

    fn make_network(&mut self) -> anyhow::Result<()> {
        let mut made = vec![self.pod_netns.clone()];
        if !self.on_node {
            made.push(self.client_netns.clone());
        }
        for netns in made {
            ip(&["netns", "add", &netns])?;
            self.made_netns.push(netns);
        }
        // Both ends are created straight inside the namespaces: nothing
        // appears in the root namespace, not even for a moment. On a node,
        // the node's end goes when the pod's namespace does.
        ip(&[
            "-n",
            &self.client_netns,
            "link",
            "add",
            &self.client_interface,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &self.pod_netns,
        ])?;
        let ends = [
            (&self.client_netns, self.client_address, &self.client_interface),
            (&self.pod_netns, self.pod_address, &"eth0".to_string()),
        ];
        for (netns, address, interface) in ends {
            ip(&["-n", netns, "addr", "add", &format!("{address}/30"), "dev", interface])?;
            ip(&["-n", netns, "link", "set", "lo", "up"])?;
            ip(&["-n", netns, "link", "set", interface, "up"])?;
        }
        Ok(())
    }

    fn make_cgroups(&mut self) -> anyhow::Result<()> {
        let pod = self.pod_cgroup_relative();
        for hierarchy in self.layout.hierarchies() {
            let pod_dir = hierarchy.join(&pod);
            // `kubepods` and the QoS level are shared with other pods and
            // other tests: made if missing, never removed.
            let parent = pod_dir.parent().context("a pod cgroup has a parent")?;
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
            self.layout.enable_controllers(&hierarchy, parent);
            for dir in [pod_dir.clone(), pod_dir.join(&self.container_id)] {
                std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
                self.made_cgroups.push(dir.clone());
                if dir == pod_dir {
                    self.layout.enable_controllers(&hierarchy, &dir);
                }
            }
        }
        Ok(())
    }

    /// Moves `pid` into the pod's container cgroup in every hierarchy.
    fn join_cgroups(&self, pid: u32) -> anyhow::Result<()> {
        for hierarchy in self.layout.hierarchies() {
            let procs = hierarchy.join(self.pod_cgroup_relative()).join(&self.container_id).join("cgroup.procs");
            std::fs::write(&procs, pid.to_string())
                .with_context(|| format!("moving {pid} into {}", procs.display()))?;
        }
        Ok(())
    }

    fn start_server(&mut self) -> anyhow::Result<()> {
        let server = Watched::spawn(&self.pod_netns, &self.binary, &["serve", &self.port.to_string()])?;
        let pid = server.child.id();
        // Moved before it starts serving, so its CPU and memory are the pod's.
        let joined = self.join_cgroups(pid);
        self.server = Some(server);
        joined?;
        let server = self.server.as_mut().context("the server was just stored")?;
        server.send_line("start")?;
        self.wait_for_server("the server to listen", STEP_TIMEOUT, |state| state.listening)?;
        Ok(())
    }
}

impl Drop for SimPod {
    fn drop(&mut self) {
        drop(self.server.take());
        for netns in self.made_netns.drain(..).rev() {
            if let Err(error) = remove_netns(&netns) {
                eprintln!("bakery-tests: could not remove network namespace {netns}: {error:#}");
            }
        }
        for dir in self.made_cgroups.drain(..).rev() {
            if let Err(error) = remove_cgroup(&dir) {
                eprintln!("bakery-tests: could not remove cgroup {}: {error:#}", dir.display());
            }
        }
    }
}

/// A network namespace standing for a Kubernetes node: pods made on it
/// ([`SimPod::create_on`]) have the node's end of their veth in it, as a CNI
/// leaves it. Removed on drop, after its pods (which borrow it).
#[derive(Debug)]
pub struct SimNode {
    netns: String,
}

impl SimNode {
    pub fn create(name: &str) -> anyhow::Result<Self> {
        LEFTOVERS_REMOVED.call_once(remove_leftovers);
        let n = NEXT_POD.fetch_add(1, Ordering::Relaxed);
        let netns = format!("{NETNS_PREFIX}{}-{n}-{name}-node", std::process::id());
        ip(&["netns", "add", &netns])?;
        let node = Self { netns };
        ip(&["-n", &node.netns, "link", "set", "lo", "up"])?;
        Ok(node)
    }

    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// Moves the calling thread into the node's network namespace, as an
    /// agent with hostNetwork runs; threads and processes it starts
    /// afterwards are there too.
    pub fn enter(&self) -> anyhow::Result<()> {
        let namespace = std::fs::File::open(Path::new(NETNS_DIR).join(&self.netns))
            .with_context(|| format!("opening network namespace {}", self.netns))?;
        nix::sched::setns(namespace, nix::sched::CloneFlags::CLONE_NEWNET)
            .with_context(|| format!("entering network namespace {}", self.netns))
    }
}

impl Drop for SimNode {
    fn drop(&mut self) {
        if let Err(error) = remove_netns(&self.netns) {
            eprintln!("bakery-tests: could not remove network namespace {}: {error:#}", self.netns);
        }
    }
}

/// A process of a simulated pod or its client; killed on drop.
#[derive(Debug)]
pub struct SimProcess {
    watched: Watched,
}

impl SimProcess {
    pub fn pid(&self) -> u32 {
        self.watched.child.id()
    }

    /// Every line the process printed so far.
    pub fn lines(&self) -> Vec<String> {
        self.watched.output.with_lines(<[String]>::to_vec)
    }
}

/// A child run with `ip netns exec` (which execs in place, so the child's
/// pid is the program's), whose stdout lines are collected by a thread.
#[derive(Debug)]
struct Watched {
    child: Child,
    output: Arc<Output>,
}

impl Watched {
    fn spawn(netns: &str, binary: &Path, args: &[&str]) -> anyhow::Result<Self> {
        let mut child = Command::new("ip")
            .args(["netns", "exec", netns])
            .arg(binary)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {} {args:?} in {netns}", binary.display()))?;
        let stdout = child.stdout.take().context("stdout is piped")?;
        Ok(Self { child, output: Output::watch(stdout) })
    }

    fn send_line(&mut self, line: &str) -> anyhow::Result<()> {
        let stdin = self.child.stdin.as_mut().context("stdin is piped")?;
        writeln!(stdin, "{line}").context("writing to the process")?;
        stdin.flush().context("writing to the process")
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Lines a process printed, and whether it has closed its stdout.
#[derive(Debug, Default)]
struct Output {
    state: Mutex<(Vec<String>, bool)>,
    changed: Condvar,
}

impl Output {
    fn watch(stdout: ChildStdout) -> Arc<Self> {
        let output = Arc::new(Self::default());
        let writer = Arc::clone(&output);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                writer.lock().0.push(line);
                writer.changed.notify_all();
            }
            writer.lock().1 = true;
            writer.changed.notify_all();
        });
        output
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Vec<String>, bool)> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn with_lines<T>(&self, f: impl FnOnce(&[String]) -> T) -> T {
        f(&self.lock().0)
    }

    fn wait_for<T>(&self, what: &str, timeout: Duration, check: impl Fn(&[String]) -> Option<T>) -> anyhow::Result<T> {
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        loop {
            if let Some(found) = check(&state.0) {
                return Ok(found);
            }
            let now = Instant::now();
            if state.1 || now >= deadline {
                let why = if state.1 { "the process exited" } else { "timed out" };
                bail!("waiting for {what}: {why} after printing {:?}", state.0);
            }
            state = self.changed.wait_timeout(state, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
        }
    }
}

/// Where pod cgroups go on this machine.
#[derive(Debug, Clone)]
enum CgroupLayout {
    /// The cpuacct and memory controller hierarchies.
    V1 { hierarchies: Vec<PathBuf> },
    /// The unified hierarchy.
    V2 { root: PathBuf },
}

impl CgroupLayout {
    fn detect() -> anyhow::Result<Self> {
        let root = Path::new(CGROUP_ROOT);
        let cpuacct = ["cpuacct", "cpu,cpuacct", "cpuacct,cpu"]
            .iter()
            .map(|name| root.join(name))
            .find(|dir| dir.join("cpuacct.usage").is_file());
        let memory = Some(root.join("memory")).filter(|dir| dir.join("memory.usage_in_bytes").is_file());
        if let (Some(cpuacct), Some(memory)) = (cpuacct, memory) {
            return Ok(Self::V1 { hierarchies: vec![cpuacct, memory] });
        }
        if root.join("cgroup.controllers").is_file() {
            return Ok(Self::V2 { root: root.to_path_buf() });
        }
        bail!("no cgroup v1 cpuacct and memory controllers and no cgroup v2 under {CGROUP_ROOT}")
    }

    fn hierarchies(&self) -> Vec<PathBuf> {
        match self {
            Self::V1 { hierarchies } => hierarchies.clone(),
            Self::V2 { root } => vec![root.clone()],
        }
    }

    /// On v2, lets the children of `dir` (and of each ancestor up to the
    /// root) have the cpu and memory controllers. Best effort: `cpu.stat`
    /// exists without them, only `memory.current` would be missing.
    fn enable_controllers(&self, hierarchy: &Path, dir: &Path) {
        if let Self::V2 { .. } = self {
            let mut levels: Vec<&Path> = dir.ancestors().take_while(|level| level.starts_with(hierarchy)).collect();
            levels.reverse();
            for level in levels {
                let _ = std::fs::write(level.join("cgroup.subtree_control"), "+cpu +memory");
            }
        }
    }
}

/// Runs `ip <args>`, failing with its stderr.
fn ip(args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("ip").args(args).output().context("running ip (iproute2)")?;
    if !output.status.success() {
        bail!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn kill(pid: &str) {
    let _ = Command::new("kill").args(["-KILL", pid]).stderr(Stdio::null()).status();
}

/// Kills whatever still runs in the namespace, then deletes it (its veth
/// end goes with it).
fn remove_netns(netns: &str) -> anyhow::Result<()> {
    if let Ok(pids) = ip(&["netns", "pids", netns]) {
        // A test that entered a node's namespace ([`SimNode::enter`]) is
        // listed too.
        let own = std::process::id().to_string();
        pids.split_whitespace().filter(|pid| *pid != own).for_each(kill);
    }
    ip(&["netns", "del", netns]).map(drop)
}

/// Kills whatever is left in a cgroup, waits for it to be empty, removes it.
fn remove_cgroup(dir: &Path) -> anyhow::Result<()> {
    let procs = dir.join("cgroup.procs");
    let pids = std::fs::read_to_string(&procs).unwrap_or_default();
    pids.split_whitespace().for_each(kill);
    wait_until(&format!("{} to empty", dir.display()), Duration::from_secs(10), || {
        std::fs::read_to_string(&procs).map(|pids| pids.trim().is_empty()).unwrap_or(true)
    })?;
    match std::fs::remove_dir(dir) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            Err(error).with_context(|| format!("rmdir {}", dir.display()))
        }
        _ => Ok(()),
    }
}

/// Polls a kernel state that gives no notification (a killed process
/// leaving its cgroup) until it holds, at most `timeout`.
fn wait_until(what: &str, timeout: Duration, condition: impl Fn() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while !condition() {
        if Instant::now() >= deadline {
            bail!("timed out waiting for {what}");
        }
        // A short poll in a test harness thread, not in an async runtime.
        #[allow(clippy::disallowed_methods)]
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// The pid that made a harness object, if `/proc/<pid>` says it is dead.
fn dead_owner(owner: Option<u32>) -> Option<u32> {
    owner.filter(|pid| *pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists())
}

/// Removes namespaces and cgroups that earlier, killed runs left behind:
/// those whose owner pid is no longer alive.
fn remove_leftovers() {
    if let Ok(entries) = std::fs::read_dir(NETNS_DIR) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let owner = name
                .strip_prefix(NETNS_PREFIX)
                .and_then(|rest| rest.split('-').next())
                .and_then(|pid| pid.parse().ok());
            if dead_owner(owner).is_some()
                && let Err(error) = remove_netns(&name)
            {
                eprintln!("bakery-tests: could not remove leftover namespace {name}: {error:#}");
            }
        }
    }
    let Ok(layout) = CgroupLayout::detect() else { return };
    for hierarchy in layout.hierarchies() {
        for qos_level in ["kubepods", "kubepods/burstable", "kubepods/besteffort"] {
            let Ok(entries) = std::fs::read_dir(hierarchy.join(qos_level)) else { continue };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let Some(uid) = name.strip_prefix("pod").filter(|uid| uid.get(8..19) == Some(UID_MARK)) else {
                    continue;
                };
                if dead_owner(u32::from_str_radix(&uid[..8], 16).ok()).is_none() {
                    continue;
                }
                let pod_dir = entry.path();
                let children = std::fs::read_dir(&pod_dir).into_iter().flatten().flatten();
                for child in children.filter(|child| child.path().is_dir()) {
                    if let Err(error) = remove_cgroup(&child.path()) {
                        eprintln!("bakery-tests: could not remove leftover cgroup: {error:#}");
                    }
                }
                if let Err(error) = remove_cgroup(&pod_dir) {
                    eprintln!("bakery-tests: could not remove leftover cgroup: {error:#}");
                }
            }
        }
    }
}
