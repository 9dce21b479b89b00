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
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use bakery_lab::netns;
use bakery_lab::process::{self, Output, Process, Spawn};
use nix::sched::CloneFlags;
use nix::sys::signal::Signal;

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
            eprintln!("bakery-demo enter: {}", bakery_lab::chain(&error));
            ExitCode::from(125)
        }
    }
}

fn enter_inner(spec: &EnterSpec) -> Result<ExitCode> {
    let (program, args) = spec.command.split_first().ok_or(Error::Usage("no command to run"))?;
    if spec.exec && spec.keeper.is_some() {
        return Err(Error::Usage("--exec cannot enter a PID namespace"));
    }
    let open = |path: PathBuf| File::open(&path).map_err(|source| Error::File { action: "opening", path, source });
    let net = match (&spec.netns, spec.keeper) {
        (Some(name), _) => Some(open(netns::path(name))?),
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
        std::fs::write(&procs, "0").map_err(|source| Error::File { action: "joining", path: procs, source })?;
    }
    let setns = |file: &File, flag: CloneFlags, what: &'static str| {
        nix::sched::setns(file, flag).map_err(|source| Error::Enter { what, source })
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
        let source = command.exec();
        return Err(bakery_lab::Error::Spawn { program: program.clone(), source }.into());
    }
    // Only now may threads start: entering a mount namespace needs a single-threaded process.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| Error::Start { what: "the async runtime", source })?;
    runtime.block_on(supervise(tokio::process::Command::from(command), program))
}

fn waiting(program: &str, source: std::io::Error) -> bakery_lab::Error {
    bakery_lab::Error::Pipe { action: "waiting for", program: program.to_string(), source }
}

/// Runs the child, forwarding termination signals, and returns its exit status.
async fn supervise(mut command: tokio::process::Command, program: &str) -> Result<ExitCode> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut child =
        command.spawn().map_err(|source| bakery_lab::Error::Spawn { program: program.to_string(), source })?;
    let listen = |kind| signal(kind).map_err(|source| Error::Start { what: "listening for signals", source });
    let (mut term, mut int, mut hup) =
        (listen(SignalKind::terminate())?, listen(SignalKind::interrupt())?, listen(SignalKind::hangup())?);
    loop {
        let forward = tokio::select! {
            status = child.wait() => {
                let status = status.map_err(|source| waiting(program, source))?;
                let code = status.code().unwrap_or_else(|| 128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0));
                return Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)));
            }
            _ = term.recv() => Signal::SIGTERM,
            _ = int.recv() => Signal::SIGINT,
            _ = hup.recv() => Signal::SIGHUP,
        };
        if let Some(pid) = child.id() {
            process::signal(pid, forward);
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
                Err(nix::errno::Errno::ECHILD) => bakery_lab::pause(Duration::from_millis(100)),
                Err(_) => bakery_lab::pause(Duration::from_millis(10)),
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

/// Starts `program args` for the cluster: in a process group of its own (a Ctrl-C at the terminal
/// reaches the demo only, which then stops everything in order), with `output`.
pub fn start(name: &str, program: &Path, args: &[String], output: Output) -> Result<Process> {
    Ok(Spawn::new(name, program).args(args).output(output).own_group().start()?)
}

/// `error` as a failure of `process`, with the last lines of its log, which usually say why.
pub fn with_log(process: &Process, error: impl Into<Error>) -> Error {
    Error::Process { name: process.name().to_string(), tail: process.log_tail(8), source: Box::new(error.into()) }
}

/// A keeper: PID 1 of one namespace's PID namespace.
#[derive(Debug)]
pub struct Keeper {
    /// `unshare`, the keeper's parent (killing it kills the keeper: `--kill-child`).
    pub process: Process,
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
        // Its stdin is held: the keeper exits when the demo does, even on SIGKILL.
        let process = Spawn::new(&format!("keeper of {netns}"), demo)
            .args(spec.args())
            .output(Output::Lines { stderr_log: Some(log) })
            .keep_stdin()
            .own_group()
            .start()?;
        process
            .wait_for_line("the keeper to start", Duration::from_secs(10), |l| l == "ready")
            .map_err(|e| with_log(&process, e))?;
        let unshare = process.pid();
        let children = process::children_of(unshare);
        let pid = match children.as_slice() {
            [pid] => *pid,
            other => {
                let why = format!("expected one keeper under unshare {unshare}, found {other:?}");
                return Err(with_log(&process, Error::Stalled(why)));
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
            self.process.kill();
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
