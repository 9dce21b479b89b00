//! The committer: the one task that writes the store. Streams hand it validated work through a
//! bounded queue; it commits everything gathered every `--commit-interval` (or sooner when a lot
//! piled up) in ONE durable transaction, then tells each node's streams the new committed
//! sequence number so they can acknowledge.
//!
//! When a commit fails (a full disk, an I/O error) nothing is acknowledged: the work stays
//! pending and is retried with backoff, the error is logged at a limited rate, and the streams
//! keep being served. Once the pending work reaches its bound the committer stops taking more,
//! the queue fills, and the streams stop reading: agents keep their data in their spools.
//! Each attempt is reported to [`Health`] (`/readyz` is not ready while commits fail).
//!
//! Between commits, retention removes rows by age (`--retention`) and, with
//! `--retention-size`, the oldest samples of all nodes once the file fills its share of the
//! disk ([`SizeRetention`]), each in bounded steps.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use crate::error::Result;
use crate::health::Health;
use crate::nodes::Node;
use crate::store::{BatchRow, CommitSet, ExpireOutcome, GapRow, NodeUpdate, PodRow, SizeRetention, Store, StoreSize};

/// What a stream hands to the committer for one message, in the node's sequence order.
#[derive(Debug)]
pub struct QueueItem {
    pub node: Arc<Node>,
    /// Pods first numbered for this message (stored before the batch that references them).
    pub pods: Vec<PodRow>,
    /// Gaps this message implies or declares, in sequence order.
    pub gaps: Vec<GapRow>,
    pub batch: Option<BatchRow>,
    /// The highest sequence number this item handles (0: none, e.g. a hello or new pods only).
    pub handled_through: u64,
}

impl QueueItem {
    /// An item that only records the node's live state (a hello).
    pub fn touch(node: Arc<Node>) -> QueueItem {
        QueueItem { node, pods: Vec::new(), gaps: Vec::new(), batch: None, handled_through: 0 }
    }

    fn bytes(&self) -> usize {
        self.batch.as_ref().map_or(0, |b| b.bytes.len()).saturating_add(64)
    }
}

/// The writes the committer needs; implemented by [`Store`], and by test doubles that fail.
pub trait Durable: Send + 'static {
    fn commit(&mut self, set: &CommitSet) -> Result<()>;
    fn expire(&mut self, cutoff_ms: i64, budget: u64) -> Result<ExpireOutcome>;
    /// Removes the oldest samples of all nodes worth `bytes` of `stored_bytes`, at most
    /// `budget` rows.
    fn trim_oldest(&mut self, bytes: u64, budget: u64) -> Result<ExpireOutcome>;
    fn size(&mut self) -> Result<StoreSize>;
    /// Called after a failed commit; the next commit uses the reopened store.
    fn reopen(&mut self) -> Result<()>;
    /// Whether the store is open (not after a failed reopen).
    fn is_open(&self) -> bool;
    /// Rows skipped so far because they did not decode.
    fn corrupt_rows(&self) -> u64;
}

impl Durable for Store {
    fn commit(&mut self, set: &CommitSet) -> Result<()> {
        Store::commit(self, set)
    }
    fn expire(&mut self, cutoff_ms: i64, budget: u64) -> Result<ExpireOutcome> {
        Store::expire(self, cutoff_ms, budget)
    }
    fn trim_oldest(&mut self, bytes: u64, budget: u64) -> Result<ExpireOutcome> {
        Store::trim_oldest(self, bytes, budget)
    }
    fn size(&mut self) -> Result<StoreSize> {
        Store::size(self)
    }
    fn reopen(&mut self) -> Result<()> {
        Store::reopen(self)
    }
    fn is_open(&self) -> bool {
        Store::is_open(self)
    }
    fn corrupt_rows(&self) -> u64 {
        Store::corrupt_rows(self)
    }
}

/// How the committer batches, bounds and retains.
#[derive(Debug, Clone)]
pub struct CommitConfig {
    /// Commit what piled up this often (`--commit-interval`).
    pub interval: Duration,
    /// Commit at once when this many items or bytes are pending.
    pub commit_now_items: usize,
    pub commit_now_bytes: usize,
    /// Stop taking work from the queue at this many pending items or bytes (while commits fail).
    pub max_pending_items: usize,
    pub max_pending_bytes: usize,
    /// The longest wait between retries of a failing commit.
    pub max_retry_delay: Duration,
    /// Rows older than this are removed (`--retention`).
    pub retention: Duration,
    /// How often to look for expired rows, and how many to remove per transaction.
    pub retention_check: Duration,
    pub retention_budget: u64,
    /// Keep the store file's disk use under this many bytes (`--retention-size`).
    pub retention_size_bytes: Option<u64>,
    /// How often to measure the store for `retention_size_bytes` (a read of the node records
    /// and a `stat`).
    pub size_check: Duration,
    /// On shutdown, how long to keep retrying a failing final commit.
    pub final_flush_timeout: Duration,
    /// Test-only fault (`BAKERY_FAULT=committer-panic-after=N`, refused unless enabled): panic
    /// after this many successful commits, before their acks.
    pub panic_after_commits: Option<u64>,
}

impl Default for CommitConfig {
    fn default() -> Self {
        CommitConfig {
            interval: Duration::from_millis(200),
            commit_now_items: 2048,
            commit_now_bytes: 8 * 1024 * 1024,
            max_pending_items: 16_384,
            max_pending_bytes: 16 * 1024 * 1024,
            max_retry_delay: Duration::from_secs(5),
            retention: Duration::from_secs(7 * 24 * 3600),
            retention_check: Duration::from_secs(60),
            retention_budget: 5_000,
            retention_size_bytes: None,
            size_check: Duration::from_secs(10),
            final_flush_timeout: Duration::from_secs(5),
            panic_after_commits: None,
        }
    }
}

/// Counters the committer keeps (for logs, tests and the benchmark).
#[derive(Debug, Default)]
pub struct CommitStats {
    pub commits: AtomicU64,
    pub failed_commits: AtomicU64,
    pub batches: AtomicU64,
    pub samples: AtomicU64,
    pub bytes: AtomicU64,
    pub expired_batches: AtomicU64,
    /// Batches removed because the store reached `--retention-size`.
    pub trimmed_batches: AtomicU64,
    /// Store rows skipped because they did not decode.
    pub corrupt_rows: AtomicU64,
    /// Store files moved aside at start because they could not be opened.
    pub stores_moved_aside: AtomicU64,
}

/// How the committer ended.
#[derive(Debug)]
pub struct CommitterExit<D> {
    pub store: D,
    /// Items that could not be committed before the final flush gave up (never acknowledged:
    /// the agents still hold them).
    pub uncommitted: usize,
}

/// Runs until the queue is closed (every sender dropped) and everything taken is committed,
/// or until `shutdown` turned true and the final flush timed out.
pub async fn run<D: Durable>(
    store: D,
    mut queue: mpsc::Receiver<QueueItem>,
    config: CommitConfig,
    stats: Arc<CommitStats>,
    health: Arc<Health>,
    mut shutdown: watch::Receiver<bool>,
) -> CommitterExit<D> {
    let mut ticker = tokio::time::interval(config.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let final_flush_timeout = config.final_flush_timeout;
    let mut committer = Committer::new(store, config, stats, health);
    let mut queue_open = true;
    let mut flush_deadline: Option<Instant> = None;
    committer.health.set_committer_running(true);

    loop {
        let room = committer.has_room();
        let mut commit_due = false;
        tokio::select! {
            item = queue.recv(), if queue_open && room => match item {
                Some(item) => commit_due = committer.take(item),
                None => {
                    queue_open = false;
                    commit_due = true;
                }
            },
            _ = ticker.tick() => commit_due = true,
            changed = shutdown.changed(), if flush_deadline.is_none() => {
                if changed.is_err() || *shutdown.borrow() {
                    flush_deadline = Some(Instant::now() + final_flush_timeout);
                }
            }
        }
        if !commit_due {
            continue;
        }
        committer.turn().await;
        if committer.pending.is_empty() && !queue_open {
            break;
        }
        // A stream that never lets go of the queue (or a store that keeps failing) must not
        // hold up the shutdown for ever.
        if flush_deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            break;
        }
        let idle = committer.pending.is_empty() && committer.failures == 0 && flush_deadline.is_none();
        if idle && Instant::now() >= committer.next_retention {
            committer.expire_by_age().await;
        } else if idle && committer.size_retention.is_some() && Instant::now() >= committer.next_size_check {
            committer.trim_to_size().await;
        }
    }
    committer.finish()
}

/// The committer's state from one turn to the next.
struct Committer<D> {
    /// Out only while a blocking call has it.
    store: Option<D>,
    config: CommitConfig,
    stats: Arc<CommitStats>,
    health: Arc<Health>,
    /// Taken from the queue, not yet committed.
    pending: Vec<QueueItem>,
    pending_bytes: usize,
    /// Failed commits in a row.
    failures: u32,
    retry_at: Option<Instant>,
    last_error_log: Option<Instant>,
    errors_not_logged: u64,
    next_retention: Instant,
    size_retention: Option<SizeRetention>,
    next_size_check: Instant,
}

impl<D: Durable> Committer<D> {
    fn new(store: D, config: CommitConfig, stats: Arc<CommitStats>, health: Arc<Health>) -> Committer<D> {
        Committer {
            store: Some(store),
            next_retention: Instant::now() + Duration::from_secs(10).min(config.retention_check),
            size_retention: config.retention_size_bytes.map(SizeRetention::new),
            next_size_check: Instant::now() + config.size_check,
            config,
            stats,
            health,
            pending: Vec::new(),
            pending_bytes: 0,
            failures: 0,
            retry_at: None,
            last_error_log: None,
            errors_not_logged: 0,
        }
    }

    /// Whether more work may be taken: the pending work within its bounds.
    fn has_room(&self) -> bool {
        self.pending.len() < self.config.max_pending_items && self.pending_bytes < self.config.max_pending_bytes
    }

    /// Takes `item`; true when enough piled up to commit now.
    fn take(&mut self, item: QueueItem) -> bool {
        self.pending_bytes = self.pending_bytes.saturating_add(item.bytes());
        self.pending.push(item);
        self.pending.len() >= self.config.commit_now_items || self.pending_bytes >= self.config.commit_now_bytes
    }

    /// One turn: commits the pending work in one transaction, unless a failed commit's backoff
    /// has not run out.
    async fn turn(&mut self) {
        self.health.committer_turned();
        let now = Instant::now();
        if self.pending.is_empty() && self.failures == 0 {
            // Nothing needed committing: as good as a commit for readiness.
            self.health.commit_ok();
        }
        if self.pending.is_empty() || self.retry_at.is_some_and(|at| now < at) {
            return;
        }
        let (set, nodes) = build_commit_set(&self.pending);
        let (returned, result) = blocking(self.store.take(), move |s| s.commit(&set).map(|()| set)).await;
        self.store = returned;
        match result {
            Ok(set) => self.committed(&set, nodes),
            Err(error) => self.failed(error, now).await,
        }
        if let Some(store) = &self.store {
            self.stats.corrupt_rows.store(store.corrupt_rows(), Ordering::Relaxed);
        }
    }

    /// A commit landed: the nodes' committed seqs move (their streams ack) and the work is done.
    fn committed(&mut self, set: &CommitSet, nodes: Vec<(Arc<Node>, u64)>) {
        if self.failures > 0 {
            tracing::info!(failed_attempts = self.failures, "the store writes again; commits resumed");
        }
        self.failures = 0;
        self.retry_at = None;
        record_success(&self.stats, set);
        self.health.commit_ok();
        self.health.set_store_open(true);
        if let Some(after) = self.config.panic_after_commits
            && self.stats.commits.load(Ordering::Relaxed) >= after
        {
            // Committed, never acknowledged: what a crash at the worst moment leaves.
            panic!("injected fault committer-panic-after={after}: the committer dies after commit {after}");
        }
        for (node, handled_through) in nodes {
            node.mark_committed(handled_through);
        }
        self.pending.clear();
        self.pending_bytes = 0;
    }

    /// A commit failed: nothing is acknowledged, the work stays pending for a retry after a
    /// backoff, the error is logged at most every 10 s, and a store that needs it is reopened.
    async fn failed(&mut self, error: crate::Error, now: Instant) {
        self.failures = self.failures.saturating_add(1);
        self.stats.failed_commits.fetch_add(1, Ordering::Relaxed);
        self.health.commit_failed(&error.to_string());
        let delay = retry_delay(self.config.interval, self.failures, self.config.max_retry_delay);
        self.retry_at = Some(now + delay);
        if self.last_error_log.is_none_or(|at| now.duration_since(at) >= Duration::from_secs(10)) {
            let hint = if error.is_disk_full() {
                "the disk is full: free space; nothing is acknowledged meanwhile, agents keep the data in their spools"
            } else {
                "nothing is acknowledged meanwhile; agents keep the data in their spools"
            };
            tracing::error!(
                %error,
                pending_items = self.pending.len(),
                consecutive_failures = self.failures,
                errors_not_logged = self.errors_not_logged,
                retry_in_ms = delay.as_millis() as u64,
                "cannot commit to the store: {hint}"
            );
            self.last_error_log = Some(now);
            self.errors_not_logged = 0;
        } else {
            self.errors_not_logged += 1;
        }
        if error.needs_reopen() {
            let (returned, reopened) = blocking(self.store.take(), |s| s.reopen()).await;
            self.store = returned;
            if let Err(error) = reopened {
                tracing::debug!(%error, "reopening the store failed; retrying with the next commit");
            }
        }
        self.health.set_store_open(self.store.as_ref().is_some_and(|s| s.is_open()));
    }

    /// One bounded step of retention by age (`--retention`); a backlog is removed in such steps
    /// between commits.
    async fn expire_by_age(&mut self) {
        let retention_ms = i64::try_from(self.config.retention.as_millis()).unwrap_or(i64::MAX);
        let cutoff_ms = crate::now_ms().saturating_sub(retention_ms);
        let budget = self.config.retention_budget;
        let (returned, outcome) = blocking(self.store.take(), move |s| s.expire(cutoff_ms, budget)).await;
        self.store = returned;
        match outcome {
            Ok(outcome) => {
                self.stats.expired_batches.fetch_add(outcome.batches, Ordering::Relaxed);
                if outcome.batches + outcome.gaps > 0 {
                    tracing::info!(batches = outcome.batches, gaps = outcome.gaps, "retention removed old rows");
                }
                self.next_retention =
                    if outcome.more { Instant::now() } else { Instant::now() + self.config.retention_check };
            }
            Err(error) => {
                tracing::warn!(%error, "retention step failed; trying again later");
                self.next_retention = Instant::now() + self.config.retention_check;
            }
        }
    }

    /// One bounded step of retention by size (`--retention-size`): measures the store and, over
    /// the plan, removes the oldest samples of all nodes.
    async fn trim_to_size(&mut self) {
        let Some(retention) = self.size_retention.as_mut() else { return };
        self.next_size_check = Instant::now() + self.config.size_check;
        let (returned, size) = blocking(self.store.take(), |s| s.size()).await;
        self.store = returned;
        let excess = match size {
            Ok(size) => retention.plan(size),
            Err(error) => {
                tracing::warn!(%error, "cannot measure the store for --retention-size; trying again later");
                0
            }
        };
        if excess == 0 {
            return;
        }
        let budget = self.config.retention_budget;
        let (returned, outcome) = blocking(self.store.take(), move |s| s.trim_oldest(excess, budget)).await;
        self.store = returned;
        match outcome {
            Ok(outcome) => {
                self.stats.trimmed_batches.fetch_add(outcome.batches, Ordering::Relaxed);
                tracing::info!(
                    batches = outcome.batches,
                    bytes = outcome.bytes,
                    limit_bytes = retention.limit_bytes(),
                    stored_budget_bytes = retention.stored_budget(),
                    "the store reached --retention-size: removed the oldest samples"
                );
                if outcome.more {
                    // The rest at the next idle turn, between commits.
                    self.next_size_check = Instant::now();
                }
            }
            Err(error) => tracing::warn!(%error, "size retention step failed; trying again later"),
        }
    }

    /// The committer's end: what it could not commit is logged (never acknowledged, the agents
    /// send it again) and the store handed back.
    fn finish(self) -> CommitterExit<D> {
        let uncommitted = self.pending.len();
        if uncommitted > 0 {
            tracing::error!(
                uncommitted,
                "shutting down with work the store did not take; it was never acknowledged, agents will send it again"
            );
        }
        self.health.set_committer_running(false);
        CommitterExit { store: self.store.expect("the store is always returned by the blocking call"), uncommitted }
    }
}

/// Runs a blocking store call off the async threads; the store goes in and comes back.
async fn blocking<D: Durable, T: Send + 'static>(
    store: Option<D>,
    call: impl FnOnce(&mut D) -> Result<T> + Send + 'static,
) -> (Option<D>, Result<T>) {
    let mut store = store.expect("the committer always holds its store between calls");
    match tokio::task::spawn_blocking(move || {
        let result = call(&mut store);
        (store, result)
    })
    .await
    {
        Ok((store, result)) => (Some(store), result),
        Err(join) => std::panic::resume_unwind(join.into_panic()),
    }
}

/// Exponential backoff from the commit interval up to `max`.
pub fn retry_delay(interval: Duration, failures: u32, max: Duration) -> Duration {
    interval.saturating_mul(1u32 << failures.min(16)).min(max)
}

/// Gathers pending items into one commit, with one node update per node; also returns each
/// node with the sequence number it is committed through once the commit succeeds.
pub fn build_commit_set(pending: &[QueueItem]) -> (CommitSet, Vec<(Arc<Node>, u64)>) {
    let mut set = CommitSet::default();
    let mut nodes: Vec<(Arc<Node>, u64)> = Vec::new();
    let mut handled: HashMap<u32, (usize, u64)> = HashMap::new();
    for item in pending {
        set.pods.extend(item.pods.iter().cloned());
        set.gaps.extend(item.gaps.iter().cloned());
        set.batches.extend(item.batch.iter().cloned());
        let entry = handled.entry(item.node.id).or_insert_with(|| {
            set.nodes.push(NodeUpdate {
                name: item.node.name.clone(),
                node_id: item.node.id,
                handled_through: 0,
                live: item.node.live_snapshot(),
            });
            nodes.push((item.node.clone(), 0));
            (set.nodes.len() - 1, 0)
        });
        entry.1 = entry.1.max(item.handled_through);
        set.nodes[entry.0].handled_through = entry.1;
        nodes[entry.0].1 = entry.1;
    }
    (set, nodes)
}

fn record_success(stats: &CommitStats, set: &CommitSet) {
    stats.commits.fetch_add(1, Ordering::Relaxed);
    stats.batches.fetch_add(set.batches.len() as u64, Ordering::Relaxed);
    stats.samples.fetch_add(set.batches.iter().map(|b| u64::from(b.sample_count)).sum(), Ordering::Relaxed);
    stats.bytes.fetch_add(set.batches.iter().map(|b| b.bytes.len() as u64).sum(), Ordering::Relaxed);
}

#[cfg(test)]
mod tests;
