//! What the collector tests share: an in-process collector on a free loopback port (with its
//! `/livez` and `/readyz` on another), a scripted agent speaking the stream protocol, and
//! message builders.

use std::net::SocketAddr;
use std::time::Duration;

use bakery_collector::commit::CommitConfig;
use bakery_collector::store::{self, StoreReport};
use bakery_collector::{Collector, ServeConfig};
use bakery_proto::v1::agent_message::Kind as AgentKind;
use bakery_proto::v1::collector_message::Kind as CollectorKind;
use bakery_proto::v1::ingest_client::IngestClient;
use bakery_proto::v1::query_client::QueryClient;
use bakery_proto::v1::{
    AgentMessage, Batch, CollectorMessage, CpuTimes, Gap, Hello, NodeStatus, NodesRequest, PodIdentity, PodSample,
    Sample, Welcome,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Request, Status, Streaming};

pub const TOKEN: &str = "test-token-1";
/// Long enough for a loaded CI machine, short enough that a hang fails fast.
pub const WAIT: Duration = Duration::from_secs(10);

/// An in-process collector with its own data dir and token file.
pub struct TestCollector {
    pub collector: Option<Collector>,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
}

impl TestCollector {
    /// Token auth, a 50 ms commit interval (fast acks in tests).
    pub async fn start() -> TestCollector {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut ServeConfig)) -> TestCollector {
        let dir = tempfile::tempdir().expect("temp dir");
        Self::start_in(dir, adjust).await
    }

    /// Starts on an existing data dir (a restart).
    pub async fn start_in(dir: tempfile::TempDir, adjust: impl FnOnce(&mut ServeConfig)) -> TestCollector {
        let token_file = dir.path().join("tokens");
        std::fs::write(&token_file, format!("# test tokens\n{TOKEN}\n")).expect("token file");
        let mut config = ServeConfig::new("127.0.0.1:0".parse().expect("addr"), dir.path().join("data"));
        config.token_file = Some(token_file);
        config.commit = CommitConfig { interval: Duration::from_millis(50), ..CommitConfig::default() };
        config.health_listen = Some("127.0.0.1:0".parse().expect("addr"));
        config.health_listen_required = true;
        adjust(&mut config);
        let collector = Collector::start(config).await.expect("the collector starts");
        let addr = collector.local_addr();
        TestCollector { collector: Some(collector), addr, dir }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `GET path` on the health listener: (status, body).
    pub async fn probe(&self, path: &str) -> (u16, String) {
        let addr = self.collector.as_ref().and_then(|c| c.health_addr()).expect("a health listener");
        let response = bakery_lab::http::get(addr, path, WAIT).await;
        let response = response.unwrap_or_else(|error| panic!("the health endpoint answers: {error}"));
        (response.status, response.body)
    }

    /// Stops gracefully and returns the data dir for inspection or a restart.
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(collector) = self.collector.take() {
            let report = tokio::time::timeout(Duration::from_secs(30), collector.stop())
                .await
                .expect("the collector stops in time")
                .expect("a clean stop");
            assert_eq!(report.uncommitted, 0, "everything received was committed");
        }
        self.dir
    }

    /// Stops, then reports the store as `inspect --verify` would.
    pub async fn stop_and_inspect(self) -> (tempfile::TempDir, StoreReport) {
        let dir = self.stop().await;
        let report = store::inspect(&dir.path().join("data"), bakery_collector::now_ms(), true, &mut |_, _| {})
            .expect("inspect");
        (dir, report)
    }

    pub async fn nodes(&self) -> Vec<NodeStatus> {
        let mut client = QueryClient::new(channel(&self.url()).await);
        client.nodes(authorized(NodesRequest {}, Some(TOKEN))).await.expect("Query.Nodes").into_inner().nodes
    }

    pub async fn node(&self, name: &str) -> NodeStatus {
        self.nodes().await.into_iter().find(|n| n.node_name == name).unwrap_or_else(|| panic!("node {name} known"))
    }
}

pub async fn channel(url: &str) -> Channel {
    Channel::from_shared(url.to_string()).expect("url").connect().await.expect("connect")
}

pub fn authorized<T>(message: T, token: Option<&str>) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(token) = token {
        request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("header"));
    }
    request
}

pub fn hello(node: &str) -> Hello {
    Hello {
        node_name: node.to_string(),
        boot_id: "boot-a".into(),
        agent_version: "test".into(),
        capabilities: vec!["cpu".into()],
        interval_ms: 1000,
        clock_ticks_per_second: 100,
        oldest_spooled_seq: 0,
        stream_id: format!("{node}-{}", bakery_collector::now_ms()),
    }
}

pub fn sample(timestamp_ms: i64) -> Sample {
    Sample {
        timestamp_ms,
        cpu_total: Some(CpuTimes { cpu: -1, user: 100, system: 50, idle: 1000, ..Default::default() }),
        ..Default::default()
    }
}

pub fn batch(seq: u64) -> AgentMessage {
    batch_at(seq, bakery_collector::now_ms())
}

pub fn batch_at(seq: u64, timestamp_ms: i64) -> AgentMessage {
    AgentMessage { kind: Some(AgentKind::Batch(Batch { seq, new_pods: vec![], samples: vec![sample(timestamp_ms)] })) }
}

/// A batch whose sample reports the pods `refs` (declaring `new_pods` first).
pub fn batch_with_pods(seq: u64, new_pods: Vec<PodIdentity>, refs: &[u32]) -> AgentMessage {
    let mut sample = sample(bakery_collector::now_ms());
    sample.pods = refs.iter().map(|&r| PodSample { pod_ref: r, cpu_usage_us: 1000, ..Default::default() }).collect();
    AgentMessage { kind: Some(AgentKind::Batch(Batch { seq, new_pods, samples: vec![sample] })) }
}

pub fn pod(pod_ref: u32, uid: &str) -> PodIdentity {
    PodIdentity {
        pod_ref,
        uid: uid.to_string(),
        qos_class: "burstable".into(),
        cgroup_path: format!("kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid}.slice"),
        host_network: false,
    }
}

pub fn gap(first_seq: u64, last_seq: u64, reason: &str) -> AgentMessage {
    AgentMessage { kind: Some(AgentKind::Gap(Gap { first_seq, last_seq, reason: reason.to_string() })) }
}

/// One scripted agent stream.
pub struct TestAgent {
    tx: mpsc::Sender<AgentMessage>,
    rx: Streaming<CollectorMessage>,
    pub welcome: Welcome,
    /// The highest ack seen so far.
    pub acked: u64,
    /// SetInterval messages seen while waiting for acks.
    pub set_intervals: Vec<u32>,
}

impl TestAgent {
    /// Opens a stream with the test token and says hello.
    pub async fn connect(url: &str, hello: Hello) -> TestAgent {
        Self::try_connect(url, Some(TOKEN), hello).await.expect("the stream opens with a Welcome")
    }

    pub async fn try_connect(url: &str, token: Option<&str>, hello: Hello) -> Result<TestAgent, Status> {
        let mut client = IngestClient::new(channel(url).await);
        let (tx, rx) = mpsc::channel(16);
        tx.send(AgentMessage { kind: Some(AgentKind::Hello(hello)) }).await.expect("queue hello");
        let mut responses = client.stream(authorized(ReceiverStream::new(rx), token)).await?.into_inner();
        let first = tokio::time::timeout(WAIT, responses.message()).await.expect("a Welcome in time")?;
        match first.and_then(|m| m.kind) {
            Some(CollectorKind::Welcome(welcome)) => {
                let acked = welcome.committed_seq;
                Ok(TestAgent { tx, rx: responses, welcome, acked, set_intervals: Vec::new() })
            }
            other => panic!("expected a Welcome first, got {other:?}"),
        }
    }

    pub async fn send(&self, message: AgentMessage) {
        self.tx.send(message).await.expect("the stream takes the message");
    }

    /// Sends, but reports whether the stream still takes messages.
    pub async fn try_send(&self, message: AgentMessage) -> bool {
        self.tx.send(message).await.is_ok()
    }

    /// Closes the agent's side of the stream.
    pub fn close(self) -> Streaming<CollectorMessage> {
        self.rx
    }

    /// The next collector message, an error status, or `Ok(None)` at the end of the stream.
    pub async fn next(&mut self) -> Result<Option<CollectorMessage>, Status> {
        tokio::time::timeout(WAIT, self.rx.message()).await.expect("a collector message in time")
    }

    /// Waits until the collector acknowledges `seq` (or more); returns the acked seq.
    pub async fn wait_ack(&mut self, seq: u64) -> u64 {
        while self.acked < seq {
            match self.next().await {
                Ok(Some(CollectorMessage { kind: Some(CollectorKind::Ack(ack)) })) => {
                    assert!(ack.committed_seq >= self.acked, "acks never go back");
                    self.acked = ack.committed_seq;
                }
                Ok(Some(CollectorMessage { kind: Some(CollectorKind::SetInterval(set)) })) => {
                    self.set_intervals.push(set.interval_ms);
                }
                other => panic!("waiting for ack {seq} (have {}), got {other:?}", self.acked),
            }
        }
        self.acked
    }

    /// Reads until the stream ends with an error status (acks before it are fine).
    pub async fn expect_error(&mut self) -> Status {
        loop {
            match self.next().await {
                Ok(Some(CollectorMessage { kind: Some(CollectorKind::Ack(ack)) })) => self.acked = ack.committed_seq,
                Ok(Some(_)) => {}
                Ok(None) => panic!("the stream ended without an error"),
                Err(status) => return status,
            }
        }
    }
}

/// Polls `check` until it returns true, failing the test after [`WAIT`].
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let checked = bakery_lab::wait_for_async(what, WAIT, || {
        let holds = check();
        async move { holds.await.then_some(()) }
    });
    if let Err(error) = checked.await {
        panic!("{error}");
    }
}

/// The report of one node.
pub fn node_report<'a>(report: &'a StoreReport, node: &str) -> &'a bakery_collector::store::NodeReport {
    report.nodes.iter().find(|n| n.node == node).unwrap_or_else(|| panic!("{node} in the store: {report:?}"))
}

pub use bakery_lab::is_root as running_as_root;
