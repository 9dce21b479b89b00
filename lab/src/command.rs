//! Running the programs kernel objects are made with (`ip`, `iptables-restore`, `sysctl`, or any
//! other) to completion: stdin fed, stdout collected, and a failure an error that carries the
//! command line and its stderr.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::{Error, Result};

/// Runs `program args`, feeding `stdin` if given; its stdout, or an error with its stderr.
pub fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String> {
    let mut command = Command::new(program);
    command.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    command.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = command.spawn().map_err(|source| Error::Spawn { program: program.to_string(), source })?;
    let pipe = child.stdin.take();
    // Fed from another thread while this one collects the output, so a program that prints
    // before it has read all its input cannot block both sides.
    let (fed, output) = std::thread::scope(|scope| {
        let feeder = scope.spawn(move || match (stdin, pipe) {
            (Some(text), Some(mut pipe)) => pipe.write_all(text.as_bytes()),
            _ => Ok(()),
        });
        let output = child.wait_with_output();
        (feeder.join(), output)
    });
    let output =
        output.map_err(|source| Error::Pipe { action: "waiting for", program: program.to_string(), source })?;
    let failed_stdin = match fed {
        Ok(Ok(())) => None,
        Ok(Err(source)) => Some(source),
        Err(_) => Some(std::io::Error::other("the thread feeding stdin panicked")),
    };
    if !output.status.success() {
        return Err(Error::Failed {
            command: format!("{program} {}", args.join(" ")),
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    if let Some(source) = failed_stdin {
        return Err(Error::Pipe { action: "writing to the stdin of", program: program.to_string(), source });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// `ip <args>`.
pub fn ip(args: &[&str]) -> Result<String> {
    run("ip", args, None)
}

/// Runs a program inside network namespace `netns` (`ip netns exec`).
pub fn in_netns(netns: &str, program: &str, args: &[&str], stdin: Option<&str>) -> Result<String> {
    let mut full = vec!["netns", "exec", netns, program];
    full.extend_from_slice(args);
    run("ip", &full, stdin)
}

/// Sets a sysctl inside a network namespace (the `net.*` ones are per namespace).
pub fn sysctl(netns: &str, key: &str, value: &str) -> Result<()> {
    in_netns(netns, "sysctl", &["-qw", &format!("{key}={value}")], None).map(drop)
}

/// Replaces the iptables rules of network namespace `netns` with `rules` (`iptables-save` format).
pub fn iptables_restore(netns: &str, rules: &str) -> Result<()> {
    in_netns(netns, "iptables-restore", &[], Some(rules)).map(drop)
}

/// A program on PATH or in root's sbin folders (which a user's PATH often lacks).
pub fn find_command(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .filter(|dir| !dir.is_empty())
        .map(|dir| Path::new(dir).join(name))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdout_is_collected_and_stdin_fed() {
        assert_eq!(run("cat", &[], Some("fresh bread\n")).unwrap(), "fresh bread\n");
    }

    #[test]
    fn a_failure_carries_the_command_line_and_its_stderr() {
        let error = run("sh", &["-c", "echo no such bakery >&2; exit 3"], None).unwrap_err();
        let text = error.to_string();
        assert!(text.starts_with("`sh -c echo no such bakery >&2; exit 3` failed ("), "{text}");
        assert!(text.ends_with("): no such bakery"), "{text}");
    }

    #[test]
    fn a_missing_program_keeps_the_os_error() {
        let error = run("bakery-no-such-program", &[], None).unwrap_err();
        assert!(matches!(&error, Error::Spawn { source, .. } if source.kind() == std::io::ErrorKind::NotFound));
    }

    #[test]
    fn commands_are_found_in_sbin_too() {
        assert!(find_command("sh").is_some());
        assert!(find_command("bakery-no-such-program").is_none());
    }
}
