//! Child processes: started with their stdout collected as lines (for readiness and results) or
//! written to a log, waited on against a deadline, stopped with SIGTERM then SIGKILL, and killed
//! when dropped, also when a test fails. Also signals and the parent-child relation from `/proc`.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::{Error, Result, wait_for};

/// Where a process's output goes.
#[derive(Debug, Clone, Default)]
pub enum Output {
    /// stdout collected as lines; stderr to this log file, or to this process's stderr.
    Lines { stderr_log: Option<PathBuf> },
    /// stdout and stderr both to this log file (appended).
    Log(PathBuf),
    /// stdout to this file (created anew: what the process prints is its result), stderr nowhere.
    Stdout(PathBuf),
    /// This process's own stdout and stderr (a terminal program).
    #[default]
    Inherit,
    /// Nowhere.
    Null,
}

/// How to start a process: [`Spawn::new`], then the options, then [`Spawn::start`].
#[derive(Debug)]
pub struct Spawn {
    name: String,
    command: Command,
    output: Output,
    keep_stdin: bool,
}

impl Spawn {
    /// `program`, called `name` in errors and logs.
    pub fn new(name: &str, program: impl AsRef<OsStr>) -> Self {
        Self { name: name.to_string(), command: Command::new(program), output: Output::Inherit, keep_stdin: false }
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.command.arg(arg);
        self
    }

    pub fn args<S: AsRef<OsStr>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.command.args(args);
        self
    }

    /// Sets a variable of the inherited environment.
    pub fn env(mut self, variable: &str, value: impl AsRef<OsStr>) -> Self {
        self.command.env(variable, value);
        self
    }

    /// Removes a variable of the inherited environment.
    pub fn env_remove(mut self, variable: &str) -> Self {
        self.command.env_remove(variable);
        self
    }

    pub fn output(mut self, output: Output) -> Self {
        self.output = output;
        self
    }

    /// The child's stdin is a pipe held until [`Process::close_stdin`] or drop (a child that
    /// watches its stdin then knows this process has gone, even after SIGKILL); else it is empty.
    pub fn keep_stdin(mut self) -> Self {
        self.keep_stdin = true;
        self
    }

    /// Puts the child in a process group of its own, so that a Ctrl-C at the terminal reaches
    /// this process only, which then stops its children in order.
    pub fn own_group(mut self) -> Self {
        self.command.process_group(0);
        self
    }

    pub fn start(self) -> Result<Process> {
        let Self { name, mut command, output, keep_stdin } = self;
        command.stdin(if keep_stdin { Stdio::piped() } else { Stdio::null() });
        let open_log = |path: &Path| {
            std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(|source| Error::File {
                action: "opening the log",
                path: path.to_path_buf(),
                source,
            })
        };
        let mut log = None;
        match &output {
            Output::Lines { stderr_log } => {
                command.stdout(Stdio::piped());
                if let Some(path) = stderr_log {
                    command.stderr(open_log(path)?);
                    log = Some(path.clone());
                }
            }
            Output::Log(path) => {
                let file = open_log(path)?;
                let second = file.try_clone().map_err(|source| Error::File {
                    action: "opening the log",
                    path: path.clone(),
                    source,
                })?;
                command.stdout(file).stderr(second);
                log = Some(path.clone());
            }
            Output::Stdout(path) => {
                let file = std::fs::File::create(path).map_err(|source| Error::File {
                    action: "creating",
                    path: path.clone(),
                    source,
                })?;
                command.stdout(file).stderr(Stdio::null());
            }
            Output::Inherit => {}
            Output::Null => {
                command.stdout(Stdio::null()).stderr(Stdio::null());
            }
        }
        let program = command.get_program().to_string_lossy().into_owned();
        let mut child =
            command.spawn().map_err(|source| Error::Spawn { program: format!("{name} ({program})"), source })?;
        let lines = child.stdout.take().map(Lines::collect);
        let stdin = child.stdin.take();
        Ok(Process { name, child, lines, stdin, log })
    }
}

/// A started child; killed and reaped when dropped.
#[derive(Debug)]
pub struct Process {
    name: String,
    child: Child,
    lines: Option<Arc<Lines>>,
    stdin: Option<ChildStdin>,
    log: Option<PathBuf>,
}

impl Process {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The log file its output goes to, if any.
    pub fn log(&self) -> Option<&Path> {
        self.log.as_deref()
    }

    /// Every line it printed so far (none when its stdout is not collected).
    pub fn lines(&self) -> Vec<String> {
        self.lines.as_ref().map(|lines| lines.lock().0.clone()).unwrap_or_default()
    }

    /// Waits until the lines printed so far give a value, at most `timeout`; fails early when the
    /// process closes its stdout (it exited) first.
    pub fn wait_for_lines<T>(
        &self,
        what: &str,
        timeout: Duration,
        check: impl Fn(&[String]) -> Option<T>,
    ) -> Result<T> {
        let lines = self.lines.as_ref().ok_or_else(|| Error::NotCollected { process: self.name.clone() })?;
        lines.wait_for(what, &self.name, timeout, check)
    }

    /// Waits until a printed line satisfies `check`.
    pub fn wait_for_line(&self, what: &str, timeout: Duration, check: impl Fn(&str) -> bool) -> Result<()> {
        self.wait_for_lines(what, timeout, |lines| lines.iter().any(|line| check(line)).then_some(()))
    }

    /// Waits until it has closed its stdout (it exited), at most `timeout`.
    pub fn wait_for_output_end(&self, timeout: Duration) -> Result<()> {
        let lines = self.lines.as_ref().ok_or_else(|| Error::NotCollected { process: self.name.clone() })?;
        match lines.wait_for(&format!("{} to finish", self.name), &self.name, timeout, |_| None::<()>) {
            Err(Error::Exited { .. }) => Ok(()),
            other => other,
        }
    }

    /// Writes `line` to its stdin (started with [`Spawn::keep_stdin`]).
    pub fn send_line(&mut self, line: &str) -> Result<()> {
        let program = self.name.clone();
        let pipe = |source| Error::Pipe { action: "writing to the stdin of", program: program.clone(), source };
        let stdin = self.stdin.as_mut().ok_or_else(|| pipe(std::io::Error::from(std::io::ErrorKind::BrokenPipe)))?;
        writeln!(stdin, "{line}").and_then(|()| stdin.flush()).map_err(pipe)
    }

    /// Closes its stdin (a child that watches it then exits).
    pub fn close_stdin(&mut self) {
        self.stdin.take();
    }

    /// The last `count` lines of its log, which usually say why it failed; empty without a log.
    pub fn log_tail(&self, count: usize) -> String {
        let text = self.log.as_ref().and_then(|log| std::fs::read_to_string(log).ok()).unwrap_or_default();
        let mut tail: Vec<&str> = text.lines().rev().take(count).collect();
        tail.reverse();
        tail.join("\n")
    }

    /// Whether it still runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Its exit status, once it has exited.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits for it to exit, at most `timeout`; `None` while it still runs.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let what = format!("{} to exit", self.name);
        wait_for(&what, timeout, || self.child.try_wait().ok().flatten()).ok()
    }

    /// Sends `signal` to it (nothing when it has gone).
    pub fn signal(&self, signal: Signal) {
        self::signal(self.pid(), signal);
    }

    /// SIGTERM, then SIGKILL after `grace`; true when it exited on its own.
    pub fn stop(&mut self, grace: Duration) -> bool {
        if !self.running() {
            return true;
        }
        self.signal(Signal::SIGTERM);
        if self.wait_exit(grace).is_some() {
            return true;
        }
        self.kill();
        false
    }

    /// SIGKILL, and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.close_stdin();
        if self.running() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// SIGTERM to every process at once, then up to `grace` for all of them to exit; those still
/// running are killed. True when all exited on their own.
pub fn stop_all(processes: &mut [Process], grace: Duration) -> bool {
    for process in processes.iter_mut() {
        if process.running() {
            process.signal(Signal::SIGTERM);
        }
    }
    let clean = wait_all(processes, grace);
    for process in processes.iter_mut() {
        process.stop(Duration::ZERO);
    }
    clean
}

/// Waits up to `timeout` for every process to exit; true when they all did.
pub fn wait_all(processes: &mut [Process], timeout: Duration) -> bool {
    wait_for("every process to exit", timeout, || processes.iter_mut().all(|p| !p.running()).then_some(())).is_ok()
}

/// Lines a process printed, and whether it has closed its stdout.
#[derive(Debug, Default)]
struct Lines {
    state: Mutex<(Vec<String>, bool)>,
    changed: Condvar,
}

impl Lines {
    /// Collects `stdout` on a thread of its own until it closes.
    fn collect(stdout: impl std::io::Read + Send + 'static) -> Arc<Self> {
        let lines = Arc::new(Self::default());
        let writer = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                writer.lock().0.push(line);
                writer.changed.notify_all();
            }
            writer.lock().1 = true;
            writer.changed.notify_all();
        });
        lines
    }

    fn lock(&self) -> MutexGuard<'_, (Vec<String>, bool)> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Woken by every new line, so no polling.
    fn wait_for<T>(
        &self,
        what: &str,
        process: &str,
        timeout: Duration,
        check: impl Fn(&[String]) -> Option<T>,
    ) -> Result<T> {
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        loop {
            if let Some(found) = check(&state.0) {
                return Ok(found);
            }
            if state.1 {
                return Err(Error::Exited {
                    what: what.to_string(),
                    process: process.to_string(),
                    printed: state.0.clone(),
                });
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Timeout { what: what.to_string(), timeout });
            }
            state = self.changed.wait_timeout(state, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
        }
    }
}

/// Sends `signal` to `pid`, ignoring a process that has gone.
pub fn signal(pid: u32, signal: Signal) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(Pid::from_raw(pid), signal);
    }
}

/// The pids whose parent is `parent`, from `/proc/<pid>/stat`.
pub fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()))
        .filter(|pid| parent_of(*pid) == Some(parent))
        .collect()
}

/// The parent pid: the 4th field of `/proc/<pid>/stat`, after the command in parentheses.
pub fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_parent(&stat)
}

fn parse_parent(stat: &str) -> Option<u32> {
    stat_fields(stat)?.nth(1)?.parse().ok()
}

/// The fields of `/proc/<pid>/stat` after the command name (field 3, the state, first): the name
/// may hold spaces and parentheses, so they start after the last ')'.
pub(crate) fn stat_fields(stat: &str) -> Option<std::str::SplitWhitespace<'_>> {
    Some(stat[stat.rfind(')')? + 1..].split_whitespace())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parent_pid_survives_odd_command_names() {
        assert_eq!(parse_parent("42 (bash) S 7 42 42 0 -1"), Some(7));
        assert_eq!(parse_parent("42 (a) b (c) R 9 42"), Some(9));
        assert_eq!(parse_parent("garbage"), None);
    }

    #[test]
    fn this_process_is_a_child_of_its_parent() {
        let me = std::process::id();
        let parent = parent_of(me).unwrap();
        assert!(children_of(parent).contains(&me));
    }

    #[test]
    fn lines_are_collected_and_waited_for_without_polling() {
        let mut echo = Spawn::new("echo", "sh")
            .args(["-c", "read line; echo got $line; echo done"])
            .keep_stdin()
            .output(Output::Lines { stderr_log: None })
            .start()
            .unwrap();
        echo.send_line("flour").unwrap();
        echo.wait_for_line("the reply", Duration::from_secs(10), |line| line == "got flour").unwrap();
        echo.wait_for_output_end(Duration::from_secs(10)).unwrap();
        assert_eq!(echo.lines(), ["got flour", "done"]);
        assert!(echo.wait_exit(Duration::from_secs(10)).unwrap().success());
    }

    #[test]
    fn a_process_that_exits_first_ends_the_wait_with_what_it_printed() {
        let quitter = Spawn::new("quitter", "sh")
            .args(["-c", "echo bye"])
            .output(Output::Lines { stderr_log: None })
            .start()
            .unwrap();
        let error = quitter.wait_for_line("a greeting", Duration::from_secs(10), |line| line == "hello").unwrap_err();
        assert!(matches!(&error, Error::Exited { printed, .. } if printed == &["bye"]), "{error}");
    }

    #[test]
    fn a_dropped_process_is_killed_and_a_log_keeps_its_output() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("sleeper.log");
        let mut sleeper = Spawn::new("sleeper", "sh")
            .args(["-c", "echo started; exec sleep 600"])
            .output(Output::Log(log.clone()))
            .start()
            .unwrap();
        let pid = sleeper.pid();
        crate::wait_until("the log line", Duration::from_secs(10), || sleeper.log_tail(1) == "started").unwrap();
        assert!(sleeper.running());
        drop(sleeper);
        assert!(!Path::new(&format!("/proc/{pid}")).exists(), "killed and reaped");
    }

    #[test]
    fn stop_terminates_and_reports_a_clean_exit() {
        let mut sleeper = Spawn::new("sleeper", "sleep").arg("600").output(Output::Null).start().unwrap();
        assert!(sleeper.stop(Duration::from_secs(10)), "sleep exits on SIGTERM");
        assert!(!sleeper.running());
    }
}
