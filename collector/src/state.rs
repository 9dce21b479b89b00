//! The collector's shared state: the node registry, the authenticator, the committer's queue and
//! its byte budget, the committer's health, the ingest caps and refusal counts, and the shutdown
//! signal. The ingest edge writes it; `Query`, the live analysis and the export read it.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use tokio::sync::{Semaphore, mpsc, watch};

use crate::auth::Authenticator;
use crate::commit::QueueItem;
use crate::health::Health;
use crate::ingest::IngestRefusals;
use crate::limits::IngestLimits;
use crate::nodes::Registry;

/// The collector's shared state: written by the ingest edge, read by `Query`, the live analysis
/// and the export.
#[derive(Debug)]
pub struct Shared {
    pub registry: Registry,
    pub auth: Authenticator,
    /// The committer's queue; `None` once the collector is shutting down.
    pub queue: std::sync::Mutex<Option<mpsc::Sender<QueueItem>>>,
    /// Turns true when the collector shuts down.
    pub shutdown: watch::Receiver<bool>,
    /// What the committer reports (the probes' and the export's view of commits).
    pub health: Arc<Health>,
    /// The caps on what agents send.
    pub limits: IngestLimits,
    /// Refusals and cuts, per cause.
    pub refusals: IngestRefusals,
    /// Bytes of queued, uncommitted work (`--max-queue-bytes`); a node's commits give its
    /// share back ([`crate::nodes::Node::mark_committed`]).
    pub(crate) queue_budget: Arc<Semaphore>,
    /// Numbers the streams, so a node knows which one is its live stream.
    pub(crate) generation: AtomicU64,
}

impl Shared {
    pub fn new(
        registry: Registry,
        auth: Authenticator,
        queue: mpsc::Sender<QueueItem>,
        shutdown: watch::Receiver<bool>,
        health: Arc<Health>,
        limits: IngestLimits,
    ) -> Shared {
        let queue_budget = Arc::new(Semaphore::new(limits.max_queue_bytes.clamp(1, Semaphore::MAX_PERMITS)));
        Shared {
            registry,
            auth,
            queue: std::sync::Mutex::new(Some(queue)),
            shutdown,
            health,
            limits,
            refusals: IngestRefusals::default(),
            queue_budget,
            generation: AtomicU64::new(1),
        }
    }

    pub(crate) fn queue(&self) -> Option<mpsc::Sender<QueueItem>> {
        self.queue.lock().ok()?.clone()
    }

    /// Stops handing out the queue; streams drop their copies as they finish.
    pub fn close_queue(&self) {
        if let Ok(mut queue) = self.queue.lock() {
            queue.take();
        }
    }

    /// Bytes of the queue budget not held by uncommitted work.
    pub fn queue_bytes_free(&self) -> usize {
        self.queue_budget.available_permits()
    }
}
