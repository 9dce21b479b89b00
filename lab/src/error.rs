//! The lab's one error type: each variant says what was being done, and keeps the error that
//! stopped it as its source, so a caller prints the whole chain ([`chain`]) or matches on it.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

/// What can go wrong while the lab builds, runs, waits or cleans up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A program could not be started.
    #[error("cannot run {program}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    /// Writing to a started program's stdin, or waiting for it, failed.
    #[error("{action} {program}")]
    Pipe {
        action: &'static str,
        program: String,
        #[source]
        source: std::io::Error,
    },
    /// A program ran and failed; its stderr says why.
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed { command: String, status: ExitStatus, stderr: String },
    /// A file or directory could not be read, written, made or removed.
    #[error("{action} {}", path.display())]
    File {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `setns` into a network namespace failed.
    #[error("entering network namespace {netns}")]
    Enter {
        netns: String,
        #[source]
        source: nix::Error,
    },
    /// A loopback socket could not be bound or asked its address.
    #[error("{action}")]
    Socket {
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// An HTTP request could not be sent, or its answer read.
    #[error("{request}")]
    Request {
        request: String,
        #[source]
        source: std::io::Error,
    },
    /// What answered an HTTP request is not HTTP (its first 200 characters).
    #[error("{request}: not an HTTP answer: {answer:?}")]
    Answer { request: String, answer: String },
    /// A condition did not hold within its time.
    #[error("timed out after {timeout:?} waiting for {what}")]
    Timeout { what: String, timeout: Duration },
    /// A process ended before printing what was waited for.
    #[error("waiting for {what}: {process} exited after printing {printed:?}")]
    Exited { what: String, process: String, printed: Vec<String> },
    /// A process's output was not collected, so nothing can be waited for in it.
    #[error("{process}: its output is not collected")]
    NotCollected { process: String },
    /// Neither the cgroup v1 hierarchies that account CPU and memory nor cgroup v2 are mounted.
    #[error("no cgroup v1 cpuacct and memory hierarchies and no cgroup v2 in /proc/self/mountinfo")]
    NoCgroups,
    /// A cgroup lacks a controller's file (the controller is not enabled for it).
    #[error("cgroup {relative} has no {file}: is the memory controller enabled?")]
    NoControllerFile { relative: String, file: &'static str },
    /// A name the caller chose cannot be used.
    #[error("invalid name {name:?}: {why}")]
    Name { name: String, why: &'static str },
    /// `cargo build` of a workspace binary failed.
    #[error("cargo build -p {package} --bin {bin} failed:\n{stderr}")]
    Build { package: String, bin: String, stderr: String },
    /// A tool the lab needs could not be installed.
    #[error("cannot install {what}: {why}")]
    Install { what: String, why: String },
    /// Several steps of a cleanup failed; each keeps its own source.
    #[error("{}", several(problems))]
    Several { problems: Vec<Error> },
}

/// An error and every source below it, `what: why: deeper why` (bakery's one way to print a chain).
pub use bakery_cli::error_chain as chain;

fn several(problems: &[Error]) -> String {
    problems.iter().map(|problem| chain(problem)).collect::<Vec<_>>().join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_names_what_failed_and_why() {
        let error = Error::File {
            action: "creating cgroup",
            path: "/sys/fs/cgroup/memory/x".into(),
            source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        };
        assert_eq!(chain(&error), "creating cgroup /sys/fs/cgroup/memory/x: permission denied");
        let both = Error::Several { problems: vec![error, Error::NoCgroups] };
        assert_eq!(
            both.to_string(),
            "creating cgroup /sys/fs/cgroup/memory/x: permission denied; no cgroup v1 cpuacct and memory \
             hierarchies and no cgroup v2 in /proc/self/mountinfo"
        );
    }
}
