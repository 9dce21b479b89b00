//! Starting processes inside the simulated nodes, and getting rid of them.
//!
//! # How a node is a node
//!
//! Every namespace that runs processes (each node, and the control, proxy and client stations) has
//! a *keeper*: `bakery-demo keeper`, started as `unshare --pid --fork --mount-proc --kill-child` in
//! that network namespace, so it is PID 1 of a new PID namespace with its own `/proc` mounted.
//! Everything of the node is then started *into* the keeper's PID and mount namespaces by
//! `bakery-demo enter` (below), so:
//!
//! * the node's agent, reading `/proc` (`--proc-root /proc`), sees that node's processes and no
//!   other, like a hostPID agent on a real node;
//! * it runs in the node's network namespace (hostNetwork), so `/proc/net/dev` is the node's NIC;
//! * when the keeper exits, the kernel kills every process of its PID namespace. The keeper exits
//!   when its stdin closes, which happens when the demo exits for any reason, SIGKILL included: a
//!   killed demo leaves no process behind, only namespaces and cgroups, which the next run removes.
//!
//! # `bakery-demo enter`
//!
//! A small nsenter: it joins cgroups (writing 0 to `cgroup.procs` moves the writer, and children
//! inherit), enters the keeper's PID and mount namespaces and a network namespace (a pod's, or the
//! keeper's), then starts the command as its child, forwards SIGTERM, SIGINT and SIGHUP to it, and
//! exits with its status. The mount namespace is entered last: `/run/netns` bind mounts made after
//! the keeper started are not visible inside it, so every namespace file is opened first.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use nix::sched::CloneFlags;
use nix::sys::signal::Signal;

use crate::host::{self, NETNS_DIR};
use crate::{Error, Result};

/// What `bakery-demo enter` is asked to do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnterSpec {
    /// Enter this process's PID and mount namespaces (and its network namespace unless `netns`).
    pub keeper: Option<u32>,
    /// Enter this named network namespace.
    pub netns: Option<String>,
    /// Cgroup directories to join (one per hierarchy).
    pub cgroups: Vec<PathBuf>,
    /// Replace this process with the command instead of starting it as a child (only without a
    /// keeper: a PID namespace is entered by the children of the process that enters it).
    pub exec: bool,
    pub command: Vec<String>,
}

impl EnterSpec {
    /// The command line of `bakery-demo enter` for this spec.
    pub fn args(&self) -> Vec<String> {
        let mut args = vec!["enter".to_string()];
        if let Some(keeper) = self.keeper {
            args.extend(["--keeper".to_string(), keeper.to_string()]);
        }
        if let Some(netns) = &self.netns {
            args.extend(["--netns".to_string(), netns.clone()]);
        }
        for cgroup in &self.cgroups {
            args.extend(["--cgroup".to_string(), cgroup.display().to_string()]);
        }
        if self.exec {
            args.push("--exec".to_string());
        }
        args.push("--".to_string());
        args.extend(self.command.iter().cloned());
        args
    }
}

/// Runs `bakery-demo enter` in this (single-threaded) process.
pub fn enter(spec: &EnterSpec) -> ExitCode {
    match enter_inner(spec) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("bakery-demo enter: {error}");
            ExitCode::from(125)
        }
    }
}

fn enter_inner(spec: &EnterSpec) -> Result<ExitCode> {
    let (program, args) = spec.command.split_first().ok_or_else(|| Error::Io("no command to run".into()))?;
    if spec.exec && spec.keeper.is_some() {
        return Err(Error::Io("--exec cannot enter a PID namespace".into()));
    }
    let open = |path: PathBuf| File::open(&path).map_err(|e| Error::Io(format!("opening {}: {e}", path.display())));
    let net = match (&spec.netns, spec.keeper) {
        (Some(name), _) => Some(open(Path::new(NETNS_DIR).join(name))?),
        (None, Some(keeper)) => Some(open(PathBuf::from(format!("/proc/{keeper}/ns/net")))?),
        (None, None) => None,
    };
    let (pid, mnt) = match spec.keeper {
        Some(keeper) => (
            Some(open(PathBuf::from(format!("/proc/{keeper}/ns/pid")))?),
            Some(open(PathBuf::from(format!("/proc/{keeper}/ns/mnt")))?),
        ),
        None => (None, None),
    };
    for cgroup in &spec.cgroups {
        let procs = cgroup.join("cgroup.procs");
        std::fs::write(&procs, "0").map_err(|e| Error::Io(format!("joining {}: {e}", procs.display())))?;
    }
    let setns = |file: &File, flag: CloneFlags, what: &str| {
        nix::sched::setns(file, flag).map_err(|e| Error::Io(format!("entering the {what} namespace: {e}")))
    };
    if let Some(net) = &net {
        setns(net, CloneFlags::CLONE_NEWNET, "network")?;
    }
    if let Some(pid) = &pid {
        setns(pid, CloneFlags::CLONE_NEWPID, "PID")?;
    }
    if let Some(mnt) = &mnt {
        setns(mnt, CloneFlags::CLONE_NEWNS, "mount")?;
    }
    let mut command = Command::new(program);
    command.args(args);
    if spec.exec {
        let error = command.exec();
        return Err(Error::Io(format!("cannot run {program}: {error}")));
    }
    // Only now may threads start: entering a mount namespace needs a single-threaded process.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Io(format!("starting the runtime: {e}")))?;
    runtime.block_on(supervise(tokio::process::Command::from(command), program))
}

/// Runs the child, forwarding termination signals, and returns its exit status.
async fn supervise(mut command: tokio::process::Command, program: &str) -> Result<ExitCode> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut child = command.spawn().map_err(|e| Error::Io(format!("cannot run {program}: {e}")))?;
    let listen = |kind| signal(kind).map_err(|e| Error::Io(format!("cannot listen for signals: {e}")));
    let (mut term, mut int, mut hup) =
        (listen(SignalKind::terminate())?, listen(SignalKind::interrupt())?, listen(SignalKind::hangup())?);
    loop {
        let forward = tokio::select! {
            status = child.wait() => {
                let status = status.map_err(|e| Error::Io(format!("waiting for {program}: {e}")))?;
                let code = status.code().unwrap_or_else(|| 128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0));
                return Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)));
            }
            _ = term.recv() => Signal::SIGTERM,
            _ = int.recv() => Signal::SIGINT,
            _ = hup.recv() => Signal::SIGHUP,
        };
        if let Some(pid) = child.id() {
            host::signal(pid, forward);
        }
    }
}

/// Runs `bakery-demo keeper`: PID 1 of a node's PID namespace until its stdin closes.
pub fn keeper() -> ExitCode {
    // PID 1 adopts orphans; reap them so they do not linger as zombies in the node's /proc.
    std::thread::spawn(|| {
        loop {
            match nix::sys::wait::waitpid(None, None) {
                Ok(_) => {}
                Err(nix::errno::Errno::ECHILD) => host::pause(Duration::from_millis(100)),
                Err(_) => host::pause(Duration::from_millis(10)),
            }
        }
    });
    println!("ready");
    let mut stdin = std::io::stdin().lock();
    let mut sink = Vec::new();
    // Returns at end of file: the demo has gone.
    let _ = std::io::Read::read_to_end(&mut stdin, &mut sink);
    ExitCode::SUCCESS
}

/// Lines a child printed, and whether it has closed its stdout.
#[derive(Debug, Default)]
struct Lines {
    state: Mutex<(Vec<String>, bool)>,
    changed: Condvar,
}

impl Lines {
    fn collect(stdout: impl std::io::Read + Send + 'static, echo: Option<String>) -> Arc<Self> {
        let lines = Arc::new(Self::default());
        let writer = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(prefix) = &echo {
                    eprintln!("{prefix}{line}");
                }
                writer.lock().0.push(line);
                writer.changed.notify_all();
            }
            writer.lock().1 = true;
            writer.changed.notify_all();
        });
        lines
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Vec<String>, bool)> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn wait_for(&self, what: &str, timeout: Duration, check: impl Fn(&[String]) -> bool) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        loop {
            if check(&state.0) {
                return Ok(());
            }
            let now = Instant::now();
            if state.1 || now >= deadline {
                let why = if state.1 { "it exited" } else { "timed out" };
                return Err(Error::Io(format!("waiting for {what}: {why}")));
            }
            state = self.changed.wait_timeout(state, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
        }
    }
}

/// A process the demo started; killed when dropped.
#[derive(Debug)]
pub struct Proc {
    pub name: String,
    child: Child,
    lines: Option<Arc<Lines>>,
    stdin: Option<ChildStdin>,
    pub log: Option<PathBuf>,
}

/// Where a process's output goes.
#[derive(Debug, Clone)]
pub enum Output {
    /// stdout collected as lines (for readiness and results), stderr to the log file.
    Lines { log: PathBuf },
    /// Both to the log file.
    Log(PathBuf),
    /// The demo's own terminal (bakery-top).
    Terminal,
}

impl Proc {
    /// Starts `program args` with `output`; with `keep_stdin` the child's stdin is a pipe held
    /// until the `Proc` drops (a keeper watches it), else it is empty. `own_group` puts the child
    /// in a process group of its own, so a Ctrl-C at the terminal reaches the demo only, which
    /// then stops everything in order.
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        output: Output,
        keep_stdin: bool,
        own_group: bool,
    ) -> Result<Self> {
        Self::spawn_with_env(name, program, args, output, keep_stdin, own_group, &[])
    }

    /// [`Proc::spawn`] with changes to the inherited environment: `(name, Some(value))` sets a
    /// variable, `(name, None)` removes it. What `enter` runs inherits them.
    pub fn spawn_with_env(
        name: &str,
        program: &Path,
        args: &[String],
        output: Output,
        keep_stdin: bool,
        own_group: bool,
        env: &[(&str, Option<String>)],
    ) -> Result<Self> {
        let mut command = Command::new(program);
        command.args(args);
        for (variable, value) in env {
            match value {
                Some(value) => command.env(variable, value),
                None => command.env_remove(variable),
            };
        }
        if own_group {
            command.process_group(0);
        }
        command.stdin(if keep_stdin { Stdio::piped() } else { Stdio::null() });
        let open_log = |path: &Path| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| Error::Io(format!("opening {}: {e}", path.display())))
        };
        let mut log_path = None;
        match &output {
            Output::Lines { log } => {
                command.stdout(Stdio::piped()).stderr(open_log(log)?);
                log_path = Some(log.clone());
            }
            Output::Log(log) => {
                let file = open_log(log)?;
                let second = file.try_clone().map_err(|e| Error::Io(format!("opening {}: {e}", log.display())))?;
                command.stdout(file).stderr(second);
                log_path = Some(log.clone());
            }
            Output::Terminal => {}
        }
        let mut child =
            command.spawn().map_err(|e| Error::Io(format!("cannot start {name} ({}): {e}", program.display())))?;
        let lines = child.stdout.take().map(|stdout| Lines::collect(stdout, None));
        let stdin = child.stdin.take();
        Ok(Self { name: name.to_string(), child, lines, stdin, log: log_path })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every line printed so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.as_ref().map(|l| l.lock().0.clone()).unwrap_or_default()
    }

    /// Waits until a printed line satisfies `check`.
    pub fn wait_for_line(&self, what: &str, timeout: Duration, check: impl Fn(&str) -> bool) -> Result<()> {
        let lines = self.lines.as_ref().ok_or_else(|| Error::Io(format!("{}: output is not collected", self.name)))?;
        lines.wait_for(what, timeout, |lines| lines.iter().any(|l| check(l))).map_err(|e| self.with_log(e))
    }

    /// Waits until the process has closed its stdout (it exited), at most `timeout`.
    pub fn wait_for_output_end(&self, timeout: Duration) -> Result<()> {
        let lines = self.lines.as_ref().ok_or_else(|| Error::Io(format!("{}: output is not collected", self.name)))?;
        lines
            .wait_for(&format!("{} to finish", self.name), timeout, |_| false)
            .or_else(|e| if lines.lock().1 { Ok(()) } else { Err(e) })
    }

    /// The error with the last lines of the process's log, which usually say why.
    pub fn with_log(&self, error: Error) -> Error {
        let tail = self
            .log
            .as_ref()
            .and_then(|log| std::fs::read_to_string(log).ok())
            .map(|text| text.lines().rev().take(8).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n"))
            .filter(|t| !t.is_empty())
            .map(|t| format!("\n--- last lines of {} ---\n{t}", self.name))
            .unwrap_or_default();
        Error::Io(format!("{}: {error}{tail}", self.name))
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for it to exit, at most `timeout`; `None` if it still runs.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            host::pause(Duration::from_millis(10));
        }
    }

    /// SIGTERM (forwarded by `enter`), then SIGKILL after `grace`. True when it exited on its own.
    pub fn stop(&mut self, grace: Duration) -> bool {
        if !self.running() {
            return true;
        }
        host::signal(self.pid(), Signal::SIGTERM);
        if self.wait_exit(grace).is_some() {
            return true;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
    }

    /// Closes the child's stdin (a keeper then exits and takes its namespace's processes along).
    pub fn close_stdin(&mut self) {
        self.stdin.take();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.close_stdin();
        if self.running() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// A keeper: PID 1 of one namespace's PID namespace.
#[derive(Debug)]
pub struct Keeper {
    /// `unshare`, the keeper's parent (killing it kills the keeper: `--kill-child`).
    pub process: Proc,
    /// The keeper's pid in the root PID namespace.
    pub pid: u32,
}

impl Keeper {
    /// Starts the keeper of `netns`, in `cgroups`.
    pub fn start(demo: &Path, netns: &str, cgroups: Vec<PathBuf>, log: PathBuf) -> Result<Self> {
        let spec = EnterSpec {
            keeper: None,
            netns: Some(netns.to_string()),
            cgroups,
            exec: true,
            command: ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", "--"]
                .iter()
                .map(|s| s.to_string())
                .chain([demo.display().to_string(), "keeper".to_string()])
                .collect(),
        };
        let process =
            Proc::spawn(&format!("keeper of {netns}"), demo, &spec.args(), Output::Lines { log }, true, true)?;
        process.wait_for_line("the keeper to start", Duration::from_secs(10), |l| l == "ready")?;
        let unshare = process.pid();
        let children = host::children_of(unshare);
        let pid = match children.as_slice() {
            [pid] => *pid,
            other => {
                return Err(process
                    .with_log(Error::Io(format!("expected one keeper under unshare {unshare}, found {other:?}"))));
            }
        };
        Ok(Self { process, pid })
    }

    /// `bakery-demo enter` arguments to run `command` in this keeper's node, optionally in another
    /// network namespace (a pod's) and in `cgroups`.
    pub fn enter_args(&self, netns: Option<&str>, cgroups: Vec<PathBuf>, command: Vec<String>) -> Vec<String> {
        EnterSpec { keeper: Some(self.pid), netns: netns.map(str::to_string), cgroups, exec: false, command }.args()
    }

    /// Ends the keeper and with it every process of its PID namespace.
    pub fn stop(&mut self) {
        self.process.close_stdin();
        if self.process.wait_exit(Duration::from_secs(5)).is_none() {
            let _ = self.process.child.kill();
            let _ = self.process.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enter_arguments_round_trip_the_spec() {
        let spec = EnterSpec {
            keeper: Some(42),
            netns: Some("bkd-p-wordpress-0".into()),
            cgroups: vec!["/sys/fs/cgroup/cpuacct/x".into()],
            exec: false,
            command: vec!["/bin/demo".into(), "web".into(), "--listen".into(), "0.0.0.0:80".into()],
        };
        assert_eq!(
            spec.args(),
            [
                "enter",
                "--keeper",
                "42",
                "--netns",
                "bkd-p-wordpress-0",
                "--cgroup",
                "/sys/fs/cgroup/cpuacct/x",
                "--",
                "/bin/demo",
                "web",
                "--listen",
                "0.0.0.0:80"
            ]
        );
    }
}
