//! A fake collector for the stream tests: an `Ingest` server in the test process that records every stream.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bakery_proto::v1 as pb;
use bakery_proto::v1::ingest_server::{Ingest, IngestServer};
use pb::agent_message::Kind;
use pb::collector_message::Kind as CollectorKind;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::ServerTlsConfig;
use tonic::{Request, Response, Status, Streaming};

/// How the fake collector behaves; tests change it while it runs.
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// Accepted bearer tokens; `None` accepts any stream.
    pub tokens: Option<Vec<String>>,
    /// False: the store cannot commit (nothing is stored or acknowledged).
    pub commits: bool,
    /// Break a stream once it delivered this many batches or gaps, while
    /// `breaks_left > 0`.
    pub break_after: Option<usize>,
    pub breaks_left: usize,
    /// Whether the messages of a broken stream count as committed (the
    /// collector crashed after committing, before its ack) or are lost.
    pub commit_before_break: bool,
    pub set_interval_ms: Option<u32>,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            tokens: None,
            commits: true,
            break_after: None,
            breaks_left: 0,
            commit_before_break: true,
            set_interval_ms: None,
        }
    }
}

#[derive(Debug)]
pub struct StreamLog {
    pub opened_at: tokio::time::Instant,
    pub authorization: Option<String>,
    pub hello: Option<pb::Hello>,
    pub messages: Vec<Kind>,
}

#[derive(Debug, Default)]
pub struct Store {
    pub behaviour: Behaviour,
    pub streams: Vec<StreamLog>,
    pub refused: usize,
    /// Highest contiguous handled sequence number.
    pub committed: u64,
    /// Sequence number -> timestamp of its one sample, stored once.
    pub samples: BTreeMap<u64, i64>,
    pub gaps: Vec<pb::Gap>,
    pub duplicates: u64,
    /// Breaches of the stream contract seen: no Hello first or a second one (bakery.proto,
    /// contract point 1), a message that does not follow on from what was handled (points 1
    /// and 3), an undeclared pod_ref. The tests expect none.
    pub violations: Vec<String>,
}

#[derive(Clone, Default)]
pub struct FakeCollector {
    pub store: Arc<Mutex<Store>>,
}

impl FakeCollector {
    pub fn with<T>(&self, f: impl FnOnce(&mut Store) -> T) -> T {
        f(&mut self.store.lock().unwrap())
    }
}

pub type Outbound = ReceiverStream<Result<pb::CollectorMessage, Status>>;

#[tonic::async_trait]
impl Ingest for FakeCollector {
    type StreamStream = Outbound;

    async fn stream(&self, request: Request<Streaming<pb::AgentMessage>>) -> Result<Response<Outbound>, Status> {
        let authorization = request.metadata().get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let accepted = self.with(|s| match &s.behaviour.tokens {
            None => true,
            Some(tokens) => tokens.iter().any(|t| authorization.as_deref() == Some(&format!("Bearer {t}"))),
        });
        if !accepted {
            self.with(|s| s.refused += 1);
            return Err(Status::unauthenticated("missing or wrong token"));
        }
        let (tx, rx) = mpsc::channel(256);
        let store = self.clone();
        tokio::spawn(serve_stream(store, authorization, request.into_inner(), tx));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

pub fn message(kind: CollectorKind) -> Result<pb::CollectorMessage, Status> {
    Ok(pb::CollectorMessage { kind: Some(kind) })
}

pub async fn serve_stream(
    store: FakeCollector,
    authorization: Option<String>,
    mut inbound: Streaming<pb::AgentMessage>,
    tx: mpsc::Sender<Result<pb::CollectorMessage, Status>>,
) {
    let index = store.with(|s| {
        s.streams.push(StreamLog {
            opened_at: tokio::time::Instant::now(),
            authorization,
            hello: None,
            messages: Vec::new(),
        });
        s.streams.len() - 1
    });
    let Ok(Some(pb::AgentMessage { kind: Some(Kind::Hello(hello)) })) = inbound.message().await else {
        store.with(|s| s.violations.push("the first message was not a Hello".into()));
        let _ = tx.send(Err(Status::invalid_argument("Hello first"))).await;
        return;
    };
    let (committed, set_interval) = store.with(|s| {
        s.streams[index].hello = Some(hello);
        (s.committed, s.behaviour.set_interval_ms)
    });
    let _ =
        tx.send(message(CollectorKind::Welcome(pb::Welcome { committed_seq: committed, ..Default::default() }))).await;
    if let Some(interval_ms) = set_interval {
        let reason = "load test".to_string();
        let _ = tx.send(message(CollectorKind::SetInterval(pb::SetInterval { interval_ms, reason }))).await;
    }
    let mut declared: HashMap<u32, pb::PodIdentity> = HashMap::new();
    let mut delivered = 0;
    // What arrived while commits were stalled: a stalled committer keeps the stream's messages
    // in order and commits them when it resumes, as the real collector's queue does.
    let mut stalled: Vec<Kind> = Vec::new();
    while let Ok(Some(pb::AgentMessage { kind: Some(kind) })) = inbound.message().await {
        delivered += 1;
        let (ack, breaking) = store.with(|s| {
            let b = &s.behaviour;
            let breaking = b.breaks_left > 0 && b.break_after.is_some_and(|n| delivered >= n);
            s.streams[index].messages.push(kind.clone());
            if breaking && !s.behaviour.commit_before_break {
                return (None, breaking);
            }
            stalled.push(kind);
            if !s.behaviour.commits {
                return (None, breaking);
            }
            for kind in stalled.drain(..) {
                handle(s, &kind, &mut declared);
            }
            (Some(s.committed), breaking)
        });
        if breaking {
            store.with(|s| s.behaviour.breaks_left -= 1);
            let _ = tx.send(Err(Status::unavailable("collector crashed"))).await;
            return;
        }
        if let Some(committed) = ack {
            let _ = tx.send(message(CollectorKind::Ack(pb::Ack { committed_seq: committed }))).await;
        }
    }
}

/// Applies one batch or gap as a collector must by the schema
/// (`proto/proto/bakery/v1/bakery.proto`): batches and gaps in sequence
/// order after `Welcome.committed_seq`, a pod referenced only once declared
/// on the stream, a repeated number dropped and acknowledged.
pub fn handle(s: &mut Store, kind: &Kind, declared: &mut HashMap<u32, pb::PodIdentity>) {
    let (first, last) = match kind {
        Kind::Batch(batch) => {
            for identity in &batch.new_pods {
                declared.insert(identity.pod_ref, identity.clone());
            }
            for sample in &batch.samples {
                for pod in &sample.pods {
                    if !declared.contains_key(&pod.pod_ref) {
                        s.violations.push(format!("seq {}: undeclared pod_ref {}", batch.seq, pod.pod_ref));
                    }
                }
            }
            (batch.seq, batch.seq)
        }
        Kind::Gap(gap) => (gap.first_seq, gap.last_seq),
        Kind::Hello(_) => {
            s.violations.push("a second Hello".into());
            return;
        }
        Kind::Replay(_) => {
            s.violations.push("a Replay, although the Welcome offered no ReplayLimits".into());
            return;
        }
    };
    if last <= s.committed {
        s.duplicates += 1;
        return;
    }
    if first != s.committed + 1 {
        s.violations.push(format!("expected seq {}, got {first}..={last}", s.committed + 1));
    }
    match kind {
        Kind::Batch(batch) => {
            if s.samples.insert(batch.seq, batch.samples[0].timestamp_ms).is_some() {
                s.violations.push(format!("seq {} stored twice", batch.seq));
            }
        }
        Kind::Gap(gap) => s.gaps.push(gap.clone()),
        Kind::Hello(_) | Kind::Replay(_) => {}
    }
    s.committed = last;
}

/// A running fake collector; dropping it stops the server.
pub struct Server {
    pub addr: SocketAddr,
    pub collector: FakeCollector,
    pub stop: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<()>,
}

impl Server {
    pub async fn start(collector: FakeCollector, addr: SocketAddr) -> Self {
        Self::start_with_tls(collector, addr, None).await
    }

    pub async fn start_with_tls(collector: FakeCollector, addr: SocketAddr, tls: Option<ServerTlsConfig>) -> Self {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let service = IngestServer::new(collector.clone());
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = tls {
            builder = builder.tls_config(tls).unwrap();
        }
        let task = tokio::spawn(async move {
            builder
                .add_service(service)
                .serve_with_incoming_shutdown(tonic::transport::server::TcpIncoming::from(listener), async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Self { addr, collector, stop: Some(stop), task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.abort();
    }
}
