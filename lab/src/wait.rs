//! Waiting on what gives no notification (a process leaving a cgroup, a file appearing, a port
//! answering): a condition polled until it holds or its deadline passes, never a bare sleep that
//! hopes; on the calling thread, or on a tokio runtime without blocking it. Also a free loopback
//! port, and root for the tests that build kernel objects.

use std::future::Future;
use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::{Error, Result};

/// The first poll comes at once, then the gap doubles from this, up to [`LONGEST_GAP`]: a quick
/// condition is seen quickly, a slow one costs little.
const FIRST_GAP: Duration = Duration::from_millis(2);
const LONGEST_GAP: Duration = Duration::from_millis(50);

/// The gaps between the polls of one wait: doubling from [`FIRST_GAP`] to [`LONGEST_GAP`], the
/// last one cut at the deadline, none once it has passed.
struct Gaps {
    what: String,
    timeout: Duration,
    deadline: Instant,
    gap: Duration,
}

impl Gaps {
    fn new(what: &str, timeout: Duration) -> Self {
        Self { what: what.to_string(), timeout, deadline: Instant::now() + timeout, gap: FIRST_GAP }
    }

    /// How long to wait before the next poll, or the timeout once the deadline has passed.
    fn next_gap(&mut self) -> Result<Duration> {
        let now = Instant::now();
        if now >= self.deadline {
            return Err(Error::Timeout { what: std::mem::take(&mut self.what), timeout: self.timeout });
        }
        let gap = self.gap.min(self.deadline - now);
        self.gap = (self.gap * 2).min(LONGEST_GAP);
        Ok(gap)
    }
}

/// Polls `check` until it returns a value, at most `timeout`; `what` names the wait in the error.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Result<T> {
    let mut gaps = Gaps::new(what, timeout);
    loop {
        if let Some(found) = check() {
            return Ok(found);
        }
        pause(gaps.next_gap()?);
    }
}

/// Polls `condition` until it holds, at most `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) -> Result<()> {
    wait_for(what, timeout, || condition().then_some(()))
}

/// [`wait_for`] on a tokio runtime: `check` gives a future (it may ask a server, or read what a
/// task shares), and the gaps between polls are `tokio::time::sleep`s, so the runtime's other
/// tasks (an in-process server the condition waits on) keep running.
pub async fn wait_for_async<T, Check, Checked>(what: &str, timeout: Duration, mut check: Check) -> Result<T>
where
    Check: FnMut() -> Checked,
    Checked: Future<Output = Option<T>>,
{
    let mut gaps = Gaps::new(what, timeout);
    loop {
        if let Some(found) = check().await {
            return Ok(found);
        }
        tokio::time::sleep(gaps.next_gap()?).await;
    }
}

/// [`wait_until`] on a tokio runtime: polls `condition` until it holds, at most `timeout`,
/// sleeping between polls without blocking the runtime.
pub async fn wait_until_async(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) -> Result<()> {
    wait_for_async(what, timeout, || std::future::ready(condition().then_some(()))).await
}

/// Pauses the calling thread, which must run no async runtime: between polls of a condition, or
/// to pace a schedule (kill at 8 s, then at 19 s). Waiting for something to happen goes through
/// [`wait_for`] instead.
#[allow(clippy::disallowed_methods)]
pub fn pause(duration: Duration) {
    std::thread::sleep(duration);
}

/// A loopback port nobody listens on right now; it is free until someone binds it, so bind it
/// soon. Chosen below the kernel's ephemeral range (`ip_local_port_range`), where no outgoing
/// connection and no listener on port 0 takes one: a port from that range could be taken by
/// another test's connection before the process it is meant for binds it (CI failed on that).
/// Successive calls try successive ports, so one test process never gets the same one twice in
/// a row; where the range leaves no room below it, the kernel picks.
pub fn free_port() -> Result<u16> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const SPAN: u32 = 8192;
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u32>().ok())
        .filter(|low| *low > SPAN + 1024);
    if let Some(low) = ephemeral_low {
        let first = std::process::id().wrapping_mul(7919).wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed));
        for i in 0..SPAN {
            let port = low - SPAN + (first.wrapping_add(i) % SPAN);
            if let Ok(port) = u16::try_from(port)
                && TcpListener::bind(("127.0.0.1", port)).is_ok()
            {
                NEXT.fetch_add(i, Ordering::Relaxed);
                return Ok(port);
            }
        }
    }
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

    #[tokio::test]
    async fn the_async_wait_lets_the_runtime_run_what_it_waits_for() {
        // One thread: the task that makes the condition true runs only while the wait sleeps.
        let (tx, rx) = tokio::sync::watch::channel(0);
        let counter = tokio::spawn(async move {
            for n in 1..=3 {
                tokio::time::sleep(Duration::from_millis(5)).await;
                tx.send_replace(n);
            }
        });
        let started = Instant::now();
        let found = wait_for_async("the third tick", Duration::from_secs(5), || {
            let now = *rx.borrow();
            async move { (now == 3).then_some(now) }
        })
        .await;
        assert_eq!(found.unwrap(), 3);
        assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
        counter.await.unwrap();
    }

    #[tokio::test]
    async fn an_async_condition_that_never_holds_times_out_near_its_deadline() {
        let started = Instant::now();
        let mut polls = 0;
        let error = wait_until_async("nothing", Duration::from_millis(120), || {
            polls += 1;
            false
        })
        .await
        .unwrap_err();
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(120) && waited < Duration::from_millis(400), "{waited:?}");
        assert_eq!(error.to_string(), "timed out after 120ms waiting for nothing");
        // Gaps of 2, 4, 8, 16, 32, then 50 ms: a handful of polls, not a busy loop.
        assert!((2..=12).contains(&polls), "{polls} polls");
    }

    #[test]
    fn a_free_port_can_be_bound() {
        let port = free_port().unwrap();
        assert_ne!(port, 0);
        TcpListener::bind(("127.0.0.1", port)).unwrap();
    }
}
