//! Waiting on what gives no notification (a process leaving a cgroup, a file appearing, a port
//! answering): a condition polled until it holds or its deadline passes, never a bare sleep that
//! hopes. Also a free loopback port, and root for the tests that build kernel objects.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use crate::{Error, Result};

/// The first poll comes at once, then the gap doubles from this, up to [`LONGEST_GAP`]: a quick
/// condition is seen quickly, a slow one costs little.
const FIRST_GAP: Duration = Duration::from_millis(2);
const LONGEST_GAP: Duration = Duration::from_millis(50);

/// Polls `check` until it returns a value, at most `timeout`; `what` names the wait in the error.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Result<T> {
    let deadline = Instant::now() + timeout;
    let mut gap = FIRST_GAP;
    loop {
        if let Some(found) = check() {
            return Ok(found);
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(Error::Timeout { what: what.to_string(), timeout });
        }
        pause(gap.min(deadline - now));
        gap = (gap * 2).min(LONGEST_GAP);
    }
}

/// Polls `condition` until it holds, at most `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) -> Result<()> {
    wait_for(what, timeout, || condition().then_some(()))
}

/// Pauses the calling thread, which must run no async runtime: between polls of a condition, or
/// to pace a schedule (kill at 8 s, then at 19 s). Waiting for something to happen goes through
/// [`wait_for`] instead.
#[allow(clippy::disallowed_methods)]
pub fn pause(duration: Duration) {
    std::thread::sleep(duration);
}

/// A loopback port nobody listens on right now (the OS picks it; it is free until someone binds
/// it, so bind it soon).
pub fn free_port() -> Result<u16> {
    let bound = |source| Error::Socket { action: "binding a loopback port", source };
    let listener = TcpListener::bind("127.0.0.1:0").map_err(bound)?;
    Ok(listener.local_addr().map_err(|source| Error::Socket { action: "reading a bound port", source })?.port())
}

/// True when the effective user is root (the third field of `Uid:` in `/proc/self/status`).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let uids = status.lines().find(|line| line.starts_with("Uid:"))?;
            uids.split_whitespace().nth(2).map(|uid| uid == "0")
        })
        .unwrap_or(false)
}

/// Fails the calling test with a clear message when not run as root. Tests that need root are
/// named `root_*`, so `cargo test -- --skip root_` leaves them out on a developer's machine; CI
/// runs as root and runs them.
pub fn require_root(test: &str) {
    assert!(
        is_root(),
        "{test} needs root (network namespaces, veth, cgroups): run it as root, or skip it with `cargo test -- --skip root_`"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_condition_that_comes_true_ends_the_wait_with_its_value() {
        let started = Instant::now();
        let mut polls = 0;
        let found = wait_for("the third poll", Duration::from_secs(5), || {
            polls += 1;
            (polls == 3).then_some(polls)
        });
        assert_eq!(found.unwrap(), 3);
        assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
    }

    #[test]
    fn a_condition_that_never_holds_times_out_near_its_deadline() {
        let started = Instant::now();
        let error = wait_until("nothing", Duration::from_millis(120), || false).unwrap_err();
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(120) && waited < Duration::from_millis(400), "{waited:?}");
        assert_eq!(error.to_string(), "timed out after 120ms waiting for nothing");
    }

    #[test]
    fn a_free_port_can_be_bound() {
        let port = free_port().unwrap();
        assert_ne!(port, 0);
        TcpListener::bind(("127.0.0.1", port)).unwrap();
    }
}
