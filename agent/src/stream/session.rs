//! One stream to the collector, from connecting to its end, and the loop that opens the next.
//!
//! A session connects, says Hello and waits for the Welcome ([`open`]), then
//! sends what the spool holds after `Welcome.committed_seq` while it handles
//! acks and SetInterval ([`serve`]): the backlog as `Replay` messages when the
//! collector takes them, each lane in sequence order, live samples first. It
//! ends when the stream breaks, when the collector stops acknowledging
//! ([`AckWatch`]), or once a shutdown has flushed the spool;
//! [`connection_loop`] then waits its [`Backoff`](crate::stream::Backoff)
//! delay and opens the next.

use std::time::Duration;

use bakery_proto::v1 as pb;
use pb::agent_message::Kind;
use pb::collector_message::Kind as CollectorKind;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_stream::StreamExt;
use tonic::codec::Streaming;

use crate::spool::Pending;
use crate::stream::codec::{self, Outgoing};
use crate::stream::connect::{self, describe_status, stream_id};
use crate::stream::outbox::{self, Outbox};
use crate::stream::replay::ReplayLane;
use crate::stream::timing::AckWatch;
use crate::stream::{MAX_INTERVAL, MIN_INTERVAL, Shared, StreamConfig};
use crate::wire::{DeclaredPods, write_batch_message};

/// A backlog at least this long (in samples) is logged when delivered.
const BACKLOG_WORTH_LOGGING: u64 = 10;

/// How a stream ended.
enum SessionEnd {
    /// Shutdown was asked for and the flush is over.
    Shutdown,
    /// The stream broke (or never opened).
    Lost {
        reason: String,
        /// When a Welcome arrived on it, if one did: the outage begins with its loss.
        welcomed_at: Option<Instant>,
        /// An ack arrived on it: the collector was working.
        acked: bool,
    },
}

/// Streams until shutdown: a session at a time, with backoff between them.
pub(super) async fn connection_loop(
    config: &StreamConfig,
    shared: &Shared,
    interval_tx: &watch::Sender<Duration>,
    mut stop_rx: watch::Receiver<bool>,
) {
    let mut rng = StdRng::from_os_rng();
    let mut attempt: u32 = 0;
    let mut acks = AckWatch::new(config.ack_timeout);
    // The agent starting counts as the start of an outage: the collector may
    // be starting too.
    let mut outage_since = Instant::now();
    loop {
        if *stop_rx.borrow() {
            return;
        }
        let reason = match session(config, shared, interval_tx, &mut acks, stop_rx.clone()).await {
            SessionEnd::Shutdown => return,
            SessionEnd::Lost { reason, welcomed_at, acked } => {
                if let Some(welcomed_at) = welcomed_at {
                    let now = Instant::now();
                    let up_for = now.saturating_duration_since(welcomed_at);
                    if acked || up_for >= config.backoff.healthy_after {
                        attempt = 0;
                    }
                    outage_since = now;
                    tracing::warn!(
                        collector = %config.collector,
                        up_for_ms = up_for.as_millis() as u64,
                        %reason,
                        "lost the stream to the collector; reconnecting (samples stay in the spool)"
                    );
                }
                reason
            }
        };
        let outage = outage_since.elapsed();
        let delay = config.backoff.delay(attempt, outage, &mut rng);
        attempt = attempt.saturating_add(1);
        // A long outage logs its first attempts and then every tenth, not
        // one line per retry for hours.
        if attempt <= 3 || attempt.is_multiple_of(10) {
            tracing::warn!(
                collector = %config.collector,
                retry_in_ms = delay.as_millis() as u64,
                attempt,
                outage_ms = outage.as_millis() as u64,
                %reason,
                "no stream to the collector; samples stay in the spool"
            );
        } else {
            tracing::debug!(retry_in_ms = delay.as_millis() as u64, attempt, %reason, "reconnect failed");
        }
        shared.status.send_modify(|s| {
            s.connected = false;
            s.last_error = Some(reason);
            s.reconnects += 1;
            s.last_retry_delay = Some(delay);
        });
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop_rx.wait_for(|stop| *stop) => return,
        }
    }
}

/// One stream, from connecting to its end.
async fn session(
    config: &StreamConfig,
    shared: &Shared,
    interval_tx: &watch::Sender<Duration>,
    acks: &mut AckWatch,
    mut stop_rx: watch::Receiver<bool>,
) -> SessionEnd {
    let open = match open(config, shared, interval_tx, &mut stop_rx).await {
        Ok(open) => open,
        Err(end) => return end,
    };
    serve(config, shared, interval_tx, acks, stop_rx, open).await
}

/// A stream the collector welcomed.
struct Open {
    outbox: Outbox,
    inbound: Streaming<pb::CollectorMessage>,
    welcomed_at: Instant,
    /// `Welcome.committed_seq`: the collector has everything up to it.
    committed: u64,
    /// The last number spooled when the Welcome arrived.
    last_seq: u64,
    /// The backlog as `Replay` messages, when the collector takes them and there is one.
    replay: Option<ReplayLane>,
}

/// Connects, says Hello and waits for the Welcome, which tells the spool
/// what the collector already committed.
async fn open(
    config: &StreamConfig,
    shared: &Shared,
    interval_tx: &watch::Sender<Duration>,
    stop_rx: &mut watch::Receiver<bool>,
) -> Result<Open, SessionEnd> {
    let lost = |reason: String| SessionEnd::Lost { reason, welcomed_at: None, acked: false };
    let request_metadata = connect::request_metadata(&config.auth).map_err(lost)?;
    let channel = tokio::select! {
        channel = connect::connect(config) => channel.map_err(lost)?,
        _ = stop_rx.wait_for(|stop| *stop) => return Err(SessionEnd::Shutdown),
    };
    let (outbox, requests) = outbox::outbox();
    let hello = pb::Hello {
        node_name: config.node_name.clone(),
        boot_id: config.boot_id.clone(),
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        capabilities: config.capabilities.clone(),
        interval_ms: u32::try_from(interval_tx.borrow().as_millis()).unwrap_or(u32::MAX),
        clock_ticks_per_second: config.clock_ticks_per_second,
        oldest_spooled_seq: shared.lock_spool().oldest_seq(),
        stream_id: stream_id(&mut rand::rng()),
    };
    // The outbox is empty, so this cannot wait.
    if outbox.live.send(pb::AgentMessage { kind: Some(Kind::Hello(hello)) }.into()).await.is_err() {
        return Err(lost("the request stream closed before the Hello".to_string()));
    }
    let mut request = tonic::Request::new(requests);
    *request.metadata_mut() = request_metadata;

    let welcome = async {
        let mut inbound = codec::open_stream(channel, request).await.map_err(|s| describe_status(&s))?.into_inner();
        match inbound.next().await {
            Some(Ok(pb::CollectorMessage { kind: Some(CollectorKind::Welcome(welcome)) })) => Ok((inbound, welcome)),
            Some(Ok(other)) => Err(format!("protocol error: expected a Welcome first, got {other:?}")),
            Some(Err(status)) => Err(describe_status(&status)),
            None => Err("the collector closed the stream before its Welcome".to_string()),
        }
    };
    let (inbound, welcome) = tokio::select! {
        result = tokio::time::timeout(config.connect_timeout, welcome) => match result {
            Ok(Ok(pair)) => pair,
            Ok(Err(reason)) => return Err(lost(reason)),
            Err(_) => return Err(lost(format!("no Welcome within {:?}", config.connect_timeout))),
        },
        _ = stop_rx.wait_for(|stop| *stop) => return Err(SessionEnd::Shutdown),
    };
    let welcomed_at = Instant::now();
    let committed = welcome.committed_seq;
    let (stats, held) = {
        let mut spool = shared.lock_spool();
        spool.welcome(committed);
        (spool.stats(), spool.last_held_seq())
    };
    // The backlog ends at the last number held: newer ones go live.
    let backlog = held.filter(|through| *through > committed);
    let replay =
        welcome.replay.as_ref().zip(backlog).map(|(limits, through)| ReplayLane::new(limits, committed, through));
    tracing::info!(
        collector = %config.collector,
        committed_seq = committed,
        resend_from = committed + 1,
        last_seq = stats.next_seq - 1,
        replay_through = replay.as_ref().map_or(0, |lane| lane.through),
        collector_version = %welcome.collector_version,
        "stream open"
    );
    shared.status.send_modify(|s| {
        s.connected = true;
        s.welcomes += 1;
        s.last_welcome_at = Some(welcomed_at);
        s.replay_through = replay.as_ref().map_or(0, |lane| lane.through);
        s.spool = stats;
    });
    Ok(Open { outbox, inbound, welcomed_at, committed, last_seq: stats.next_seq - 1, replay })
}

/// Sends what the spool holds past what the collector has and handles the
/// collector's messages, until the stream breaks, the collector stops
/// acknowledging, or a shutdown has flushed the spool (or given up on it).
/// Live messages go first; the backlog, when it goes as `Replay` messages,
/// takes the room they leave (its first message before any live one).
async fn serve(
    config: &StreamConfig,
    shared: &Shared,
    interval_tx: &watch::Sender<Duration>,
    acks: &mut AckWatch,
    mut stop_rx: watch::Receiver<bool>,
    open: Open,
) -> SessionEnd {
    let Open { outbox, mut inbound, welcomed_at, committed, last_seq, replay } = open;
    let mut stream = Serving::new(shared, interval_tx, welcomed_at, committed, last_seq, replay);
    let mut new_data = shared.last_seq.subscribe();
    let mut flush_deadline: Option<Instant> = None;
    acks.new_stream();
    loop {
        new_data.borrow_and_update();
        let due = stream.due();
        if flush_deadline.is_some() && due.drained {
            tracing::info!("every sample was acknowledged; closing the stream");
            close_gracefully(outbox, inbound, shared, interval_tx).await;
            return SessionEnd::Shutdown;
        }
        let stopping = flush_deadline.is_some();
        tokio::select! {
            biased;
            message = inbound.next() => match message {
                Some(Ok(message)) => stream.received(message, acks),
                Some(Err(status)) => return stream.ended(describe_status(&status)),
                None => return stream.ended("the collector closed the stream".to_string()),
            },
            permit = outbox.live.reserve(), if due.live || due.first_replay => match permit {
                Ok(permit) if due.first_replay => stream.send_replay(permit, acks),
                Ok(permit) => stream.send_next(permit, acks),
                Err(_) => return stream.ended("the request stream closed".to_string()),
            },
            permit = outbox.replay.reserve(), if due.replay => match permit {
                Ok(permit) => stream.send_replay(permit, acks),
                Err(_) => return stream.ended("the request stream closed".to_string()),
            },
            // Also while a Replay waits for room: a new sample must not wait with it.
            changed = new_data.changed() => {
                if changed.is_err() {
                    return SessionEnd::Shutdown;
                }
            },
            _ = stop_rx.wait_for(|stop| *stop), if !stopping => {
                flush_deadline = Some(Instant::now() + config.flush_timeout);
            },
            _ = sleep_until_or_never(flush_deadline) => {
                let left = shared.lock_spool().stats().entries;
                tracing::warn!(unacknowledged = left, "flush timed out; closing the stream");
                return SessionEnd::Shutdown;
            },
            _ = sleep_until_or_never(acks.deadline()), if !stopping => return stream.ack_timed_out(acks),
        }
    }
}

/// What a stream has to send now.
#[derive(Debug, Clone, Copy)]
struct Due {
    /// A live batch or gap.
    live: bool,
    /// The first `Replay`, which goes in the live queue so that no live message overtakes it.
    first_replay: bool,
    /// A further `Replay`, with room for it in the window.
    replay: bool,
    /// The spool is empty: everything was acknowledged.
    drained: bool,
}

/// What one welcomed stream keeps while it runs.
struct Serving<'a> {
    shared: &'a Shared,
    interval_tx: &'a watch::Sender<Duration>,
    welcomed_at: Instant,
    /// Everything up to this number was sent on this stream (or
    /// acknowledged, so it need not be), or belongs to the replayed backlog.
    sent_through: u64,
    /// The highest number a live message carried on this stream.
    live_sent: u64,
    /// The pod identities live messages told this stream about.
    declared: DeclaredPods,
    /// The pod identities any message told this stream about: a `Replay`
    /// relies on these, since it never overtakes a live message, while a live
    /// message may overtake a `Replay` still queued.
    declared_any: DeclaredPods,
    /// An ack arrived on this stream: the collector was working.
    acked: bool,
    /// What was spooled before this stream, while it is not acknowledged yet.
    backlog: Option<Backlog>,
    /// The backlog as `Replay` messages, when the collector takes them.
    replay: Option<ReplayLane>,
}

/// A backlog worth mentioning (after an outage) is logged when delivered,
/// so that an operator can see the catch-up end (and
/// `tests/e2e/streaming.rs` waits for that line).
#[derive(Debug, Clone, Copy)]
struct Backlog {
    samples: u64,
    through: u64,
}

impl<'a> Serving<'a> {
    fn new(
        shared: &'a Shared,
        interval_tx: &'a watch::Sender<Duration>,
        welcomed_at: Instant,
        committed: u64,
        last_seq: u64,
        replay: Option<ReplayLane>,
    ) -> Self {
        let samples = last_seq.saturating_sub(committed);
        let backlog = (samples >= BACKLOG_WORTH_LOGGING).then_some(Backlog { samples, through: last_seq });
        Self {
            shared,
            interval_tx,
            welcomed_at,
            // Live messages start after the replayed backlog.
            sent_through: replay.as_ref().map_or(committed, |lane| lane.through),
            live_sent: 0,
            declared: DeclaredPods::new(),
            declared_any: DeclaredPods::new(),
            acked: false,
            backlog,
            replay,
        }
    }

    /// What there is to send now.
    fn due(&self) -> Due {
        let spool = self.shared.lock_spool();
        let live_may_go = self.replay.as_ref().is_none_or(|lane| lane.started || lane.done());
        let replay_due = self.replay.as_ref().is_some_and(ReplayLane::due);
        let started = self.replay.as_ref().is_some_and(|lane| lane.started);
        Due {
            live: live_may_go && spool.last_seq() > self.sent_through,
            first_replay: replay_due && !started,
            replay: replay_due && started,
            drained: spool.is_empty(),
        }
    }

    /// The highest number sent on this stream and not necessarily acknowledged.
    fn sent(&self) -> u64 {
        match &self.replay {
            Some(lane) => lane.sent.min(lane.through).max(self.live_sent),
            None => self.sent_through,
        }
    }

    /// A message from the collector.
    fn received(&mut self, message: pb::CollectorMessage, acks: &mut AckWatch) {
        let is_ack = matches!(message.kind, Some(CollectorKind::Ack(_)));
        handle_collector_message(message, self.shared, self.interval_tx, &mut self.sent_through);
        if is_ack {
            self.acked = true;
            let acked_seq = self.shared.lock_spool().acked_seq();
            if let Some(lane) = &mut self.replay {
                lane.acked(acked_seq);
            }
            acks.acked(Instant::now(), acked_seq < self.sent());
        }
        if let Some(backlog) = self.backlog
            && self.shared.lock_spool().acked_seq() >= backlog.through
        {
            self.backlog = None;
            tracing::info!(
                samples = backlog.samples,
                through_seq = backlog.through,
                seconds = self.welcomed_at.elapsed().as_secs_f64(),
                "backlog delivered: the collector acknowledged everything spooled before this stream"
            );
        }
    }

    /// Sends the next batch or gap after what was sent, with the pod
    /// identities this stream was not told about yet. A batch goes as its
    /// spooled bytes (`wire::write_batch_message`); one that does not parse is
    /// sent as an unreadable gap instead.
    fn send_next(&mut self, permit: mpsc::Permit<'_, Outgoing>, acks: &mut AckWatch) {
        let mut spool = self.shared.lock_spool();
        let message = loop {
            let (seq, error) = match spool.pending_after(self.sent_through) {
                None => {
                    // Nothing is held past `sent_through` (acknowledged
                    // meanwhile): there is nothing to send up to the last number.
                    self.sent_through = spool.last_seq();
                    return;
                }
                Some(Pending::Gap(gap)) => {
                    self.sent_through = gap.last_seq;
                    break Outgoing::Message(pb::AgentMessage { kind: Some(Kind::Gap(gap)) });
                }
                Some(Pending::Batch { seq, payload }) => {
                    let mut bytes = Vec::new();
                    let (declared, any) = (&mut self.declared, Some(&mut self.declared_any));
                    match write_batch_message(seq, &payload, declared, any, &mut bytes) {
                        Ok(()) => {
                            self.sent_through = seq;
                            break Outgoing::Encoded(bytes);
                        }
                        Err(error) => (seq, error),
                    }
                }
            };
            spool.unreadable(seq, &error);
        };
        drop(spool);
        self.live_sent = self.sent_through;
        permit.send(message);
        acks.sent(Instant::now());
    }

    /// Sends the next part of the backlog as a `Replay`, with the pod
    /// identities no message told this stream about yet.
    fn send_replay(&mut self, permit: mpsc::Permit<'_, Outgoing>, acks: &mut AckWatch) {
        let Some(lane) = &mut self.replay else { return };
        let next = lane.take(&mut self.shared.lock_spool());
        let Some(mut kind) = next else { return };
        if let Kind::Batch(batch) = &mut kind {
            self.declared_any.strip_declared(batch);
        }
        permit.send(lane.wrap(kind).into());
        acks.sent(Instant::now());
    }

    /// No ack came in time: the collector is treated as dead.
    fn ack_timed_out(&self, acks: &mut AckWatch) -> SessionEnd {
        let waited = acks.timeout();
        acks.expired();
        let outstanding = self.sent().saturating_sub(self.shared.lock_spool().acked_seq());
        self.ended(format!(
            "no ack for {} ms while {outstanding} sequence numbers were outstanding: \
             treating the collector as dead (next wait {} ms)",
            waited.as_millis(),
            acks.timeout().as_millis()
        ))
    }

    fn ended(&self, reason: String) -> SessionEnd {
        SessionEnd::Lost { reason, welcomed_at: Some(self.welcomed_at), acked: self.acked }
    }
}

/// Half-closes the request stream and lets the collector end its side, so
/// that it sees a clean end of stream rather than a reset connection.
async fn close_gracefully(
    outbox: Outbox,
    mut inbound: Streaming<pb::CollectorMessage>,
    shared: &Shared,
    interval_tx: &watch::Sender<Duration>,
) {
    drop(outbox);
    let mut sent_through = 0;
    let drain = async {
        while let Some(Ok(message)) = inbound.next().await {
            handle_collector_message(message, shared, interval_tx, &mut sent_through);
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
}

async fn sleep_until_or_never(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Applies a collector message: an Ack trims the spool, a SetInterval changes the interval.
fn handle_collector_message(
    message: pb::CollectorMessage,
    shared: &Shared,
    interval_tx: &watch::Sender<Duration>,
    sent_through: &mut u64,
) {
    match message.kind {
        Some(CollectorKind::Ack(ack)) => {
            let stats = {
                let mut spool = shared.lock_spool();
                spool.ack(ack.committed_seq);
                spool.stats()
            };
            // An ack past what this stream sent (an older stream of this node
            // delivered it): no need to send those again.
            *sent_through = (*sent_through).max(ack.committed_seq);
            shared.publish_spool(stats);
        }
        Some(CollectorKind::SetInterval(set)) => {
            let asked = Duration::from_millis(u64::from(set.interval_ms));
            let interval = asked.clamp(MIN_INTERVAL, MAX_INTERVAL);
            tracing::info!(
                interval_ms = interval.as_millis() as u64,
                asked_ms = set.interval_ms,
                reason = %set.reason,
                "the collector changed the sampling interval"
            );
            interval_tx.send_replace(interval);
            shared.status.send_modify(|s| s.interval = interval);
        }
        Some(CollectorKind::Welcome(_)) => tracing::warn!("ignoring a second Welcome on the same stream"),
        None => tracing::warn!("ignoring an empty message from the collector"),
    }
}
