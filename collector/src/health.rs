//! `GET /livez` and `GET /readyz` for the kubelet, on a listener of their own
//! (`--health-listen`, port 9465): no data, no auth, a one-line reason in the body.
//!
//! - Ready (200) when the store is open and the committer's last attempt succeeded, or found
//!   nothing to commit, within [`Health::ready_within`]; not ready (503) while commits fail (a
//!   full disk: nothing is acknowledged then, so agents are better off with their spools), while
//!   the store is not open yet, and once the collector is shutting down.
//! - Live (200) unless the committer loop made no progress for [`Health::live_within`] (a
//!   commit stuck in the kernel), or a task died and the process is on its way out.
//!
//! The committer and the server's supervisor write a [`Health`]; the probes only read it, and
//! so does the export: the wall-clock time of the last commit that succeeded (or found nothing to
//! commit) and the failed commits are `bakery.collector.commit.last_success.timestamp` and
//! `bakery.collector.commit.failures`, which the chart's `BakeryCollectorNotCommitting` alert reads.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::Result;

/// The default `--health-listen`: next to `/metrics` on 9464.
pub const DEFAULT_HEALTH_LISTEN: &str = "0.0.0.0:9465";

/// What the probes report; cheap to update from the committer's loop.
#[derive(Debug)]
pub struct Health {
    started: Instant,
    ready_within: Duration,
    live_within: Duration,
    store_open: AtomicBool,
    committer_running: AtomicBool,
    /// Milliseconds since `started` of the last commit attempt that succeeded or had nothing to do.
    last_ok_ms: AtomicU64,
    /// Milliseconds since `started` of the committer loop's last turn.
    last_turn_ms: AtomicU64,
    /// Unix epoch milliseconds (wall clock) of the last commit attempt that succeeded or had
    /// nothing to do; 0 before the first. For the export only: the probes use `last_ok_ms`.
    last_ok_unix_ms: AtomicI64,
    /// Commit attempts that failed since start.
    failed_commits: AtomicU64,
    /// The error of the last failed commit, while commits fail.
    failing: Mutex<Option<String>>,
    /// Why the collector is going down (a signal, or a task that died).
    stopping: Mutex<Option<String>>,
}

impl Health {
    /// Not ready until the store is open and the committer runs.
    pub fn new(ready_within: Duration, live_within: Duration) -> Health {
        Health {
            started: Instant::now(),
            ready_within,
            live_within,
            store_open: AtomicBool::new(false),
            committer_running: AtomicBool::new(false),
            last_ok_ms: AtomicU64::new(0),
            last_turn_ms: AtomicU64::new(0),
            last_ok_unix_ms: AtomicI64::new(0),
            failed_commits: AtomicU64::new(0),
            failing: Mutex::new(None),
            stopping: Mutex::new(None),
        }
    }

    /// Bounds for a committer that commits every `commit_interval`: ready while a commit
    /// succeeded within 20 intervals (at least 10 s), live while the loop turned within 2 min
    /// (at least 50 intervals).
    pub fn for_commit_interval(commit_interval: Duration) -> Health {
        Health::new(
            commit_interval.saturating_mul(20).max(Duration::from_secs(10)),
            commit_interval.saturating_mul(50).max(Duration::from_secs(120)),
        )
    }

    pub fn ready_within(&self) -> Duration {
        self.ready_within
    }

    pub fn live_within(&self) -> Duration {
        self.live_within
    }

    /// Milliseconds since this was created: a monotonic clock for the probes' deadlines (not the
    /// wall clock, which can jump).
    fn uptime_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub fn set_store_open(&self, open: bool) {
        self.store_open.store(open, Ordering::Relaxed);
    }

    /// The committer started (or ended): from now on its turns count for liveness.
    pub fn set_committer_running(&self, running: bool) {
        self.committer_turned();
        self.committer_running.store(running, Ordering::Relaxed);
    }

    /// One turn of the committer's loop.
    pub fn committer_turned(&self) {
        self.last_turn_ms.store(self.uptime_ms(), Ordering::Relaxed);
    }

    /// A commit succeeded, or there was nothing to commit.
    pub fn commit_ok(&self) {
        let now = self.uptime_ms();
        self.last_ok_ms.store(now, Ordering::Relaxed);
        self.last_turn_ms.store(now, Ordering::Relaxed);
        self.last_ok_unix_ms.store(crate::now_ms(), Ordering::Relaxed);
        if let Ok(mut failing) = self.failing.lock() {
            failing.take();
        }
    }

    /// A commit failed with `error`.
    pub fn commit_failed(&self, error: &str) {
        self.committer_turned();
        self.failed_commits.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut failing) = self.failing.lock() {
            *failing = Some(error.to_string());
        }
    }

    /// When (Unix epoch milliseconds) a commit last succeeded or found nothing to commit; `None`
    /// before the committer's first turn.
    pub fn last_commit_ok_unix_ms(&self) -> Option<i64> {
        Some(self.last_ok_unix_ms.load(Ordering::Relaxed)).filter(|ms| *ms > 0)
    }

    /// Commit attempts that failed since start.
    pub fn failed_commits(&self) -> u64 {
        self.failed_commits.load(Ordering::Relaxed)
    }

    /// The collector is going down, because of `why`.
    pub fn stopping(&self, why: &str) {
        if let Ok(mut stopping) = self.stopping.lock()
            && stopping.is_none()
        {
            *stopping = Some(why.to_string());
        }
    }

    /// `Ok(what)` when ready, `Err(why not)` otherwise.
    pub fn readiness(&self) -> std::result::Result<String, String> {
        self.readiness_at(self.uptime_ms())
    }

    /// `Ok(what)` when live, `Err(why not)` otherwise.
    pub fn liveness(&self) -> std::result::Result<String, String> {
        self.liveness_at(self.uptime_ms())
    }

    /// [`Health::readiness`] at `now_ms` (milliseconds since this was created).
    fn readiness_at(&self, now_ms: u64) -> std::result::Result<String, String> {
        if let Some(why) = self.stopping.lock().ok().and_then(|s| s.clone()) {
            return Err(format!("shutting down: {why}"));
        }
        if !self.store_open.load(Ordering::Relaxed) {
            return Err("the store is not open".into());
        }
        if !self.committer_running.load(Ordering::Relaxed) {
            return Err("the committer is not running".into());
        }
        if let Some(error) = self.failing.lock().ok().and_then(|f| f.clone()) {
            return Err(format!("commits fail (nothing is acknowledged meanwhile): {error}"));
        }
        let since_ok = Duration::from_millis(now_ms.saturating_sub(self.last_ok_ms.load(Ordering::Relaxed)));
        if since_ok > self.ready_within {
            return Err(format!("no commit succeeded for {} s", since_ok.as_secs()));
        }
        Ok("ready: the store is open and commits succeed".into())
    }

    fn liveness_at(&self, now_ms: u64) -> std::result::Result<String, String> {
        if let Some(why) = self.stopping.lock().ok().and_then(|s| s.clone())
            && why.starts_with(FATAL_PREFIX)
        {
            return Err(why);
        }
        if self.committer_running.load(Ordering::Relaxed) {
            let since = Duration::from_millis(now_ms.saturating_sub(self.last_turn_ms.load(Ordering::Relaxed)));
            if since > self.live_within {
                return Err(format!("the committer made no progress for {} s", since.as_secs()));
            }
        }
        Ok("live".into())
    }
}

/// How [`Health::stopping`] reasons that are faults begin, so liveness fails on them too.
pub const FATAL_PREFIX: &str = "fatal: ";

/// Binds `listen` and serves the probes until `shutdown` turns true.
pub async fn serve(
    listen: SocketAddr,
    health: Arc<Health>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(SocketAddr, JoinHandle<()>)> {
    let (listener, local) = crate::server::listen_on(listen, "cannot listen for /livez and /readyz on").await?;
    let router = Router::new().route("/livez", get(livez)).route("/readyz", get(readyz)).with_state(health);
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = shutdown.wait_for(|down| *down).await;
            })
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "the health endpoint stopped");
        }
    });
    Ok((local, task))
}

fn answer(result: std::result::Result<String, String>) -> (StatusCode, String) {
    match result {
        Ok(text) => (StatusCode::OK, format!("{text}\n")),
        Err(text) => (StatusCode::SERVICE_UNAVAILABLE, format!("{text}\n")),
    }
}

async fn livez(State(health): State<Arc<Health>>) -> (StatusCode, String) {
    answer(health.liveness())
}

async fn readyz(State(health): State<Arc<Health>>) -> (StatusCode, String) {
    answer(health.readiness())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running() -> Health {
        let health = Health::new(Duration::from_secs(60), Duration::from_secs(60));
        health.set_store_open(true);
        health.set_committer_running(true);
        health.commit_ok();
        health
    }

    #[test]
    fn ready_only_with_an_open_store_a_running_committer_and_commits_that_succeed() {
        let health = Health::new(Duration::from_secs(60), Duration::from_secs(60));
        assert_eq!(health.readiness(), Err("the store is not open".into()));
        assert!(health.liveness().is_ok(), "starting up is alive");
        health.set_store_open(true);
        assert_eq!(health.readiness(), Err("the committer is not running".into()));
        let health = running();
        assert!(health.readiness().is_ok());
        health.commit_failed("No space left on device");
        let why = health.readiness().unwrap_err();
        assert!(why.contains("No space left on device"), "{why}");
        assert!(health.liveness().is_ok(), "a full disk is not a reason to restart");
        health.commit_ok();
        assert!(health.readiness().is_ok(), "ready again once a commit succeeds");
    }

    #[test]
    fn the_export_sees_the_wall_clock_time_of_the_last_good_commit_and_the_failures() {
        let health = Health::new(Duration::from_secs(60), Duration::from_secs(60));
        assert_eq!(
            (health.last_commit_ok_unix_ms(), health.failed_commits()),
            (None, 0),
            "nothing before the first turn"
        );
        let before = crate::now_ms();
        health.commit_ok();
        let ok = health.last_commit_ok_unix_ms().expect("a good commit");
        assert!(ok >= before && ok <= crate::now_ms(), "{ok} is the wall clock");
        health.commit_failed("No space left on device");
        health.commit_failed("No space left on device");
        assert_eq!(
            (health.last_commit_ok_unix_ms(), health.failed_commits()),
            (Some(ok), 2),
            "failures do not move it"
        );
    }

    #[test]
    fn a_committer_silent_for_too_long_is_neither_ready_nor_live() {
        let health = running();
        let later = health.uptime_ms() + 61_000;
        assert_eq!(health.readiness_at(later), Err("no commit succeeded for 61 s".into()));
        assert_eq!(health.liveness_at(later), Err("the committer made no progress for 61 s".into()));
        // a committer that turns but whose commits fail stays live
        health.committer_turned();
        assert!(health.liveness_at(health.uptime_ms() + 1_000).is_ok());
    }

    #[test]
    fn shutting_down_is_not_ready_and_a_fault_is_not_live() {
        let health = running();
        health.stopping("SIGTERM");
        assert_eq!(health.readiness(), Err("shutting down: SIGTERM".into()));
        assert!(health.liveness().is_ok(), "a graceful shutdown is alive until it exits");
        let health = running();
        health.stopping(&format!("{FATAL_PREFIX}the committer task panicked"));
        assert!(health.readiness().is_err());
        assert_eq!(health.liveness(), Err("fatal: the committer task panicked".into()));
    }
}
