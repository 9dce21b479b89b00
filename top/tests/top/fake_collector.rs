//! A stand-in collector for tests: the real `Query` gRPC service on 127.0.0.1 (port chosen by the
//! OS), answering with one node whose cumulative counters grow at known rates, so every rate
//! bakery-top computes has an exact expected value.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use bakery_proto::v1;
use bakery_proto::v1::query_server::{Query, QueryServer};
use bakery_proto::v1::{
    CpuTimes, HistoryBatch, HistoryRequest, HistoryResponse, NetCounters, NetInterface, NodeStatus, NodesRequest,
    NodesResponse, PodIdentity, PodSample, Sample, SetIntervalRequest, SetIntervalResponse, TcpConnections,
};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::{Request, Response, Status};

pub const NODE: &str = "pi-1";

/// Per second of sample time: 40 user + 10 softirq + 50 idle jiffies (50 % busy, 10 % softirq),
/// 1 MB received and 0.5 MB sent on eth0, and 100 kB received by the pod.
pub fn sample_at(second: i64) -> Sample {
    let s = second as u64;
    let counters = |rx: u64, tx: u64| NetCounters { rx_bytes: rx, tx_bytes: tx, ..NetCounters::default() };
    Sample {
        timestamp_ms: 1_790_000_000_000 + second * 1000,
        cpu_total: Some(CpuTimes { cpu: -1, user: 40 * s, softirq: 10 * s, idle: 50 * s, ..CpuTimes::default() }),
        interfaces: vec![
            NetInterface {
                name: "eth0".into(),
                counters: Some(counters(1_000_000 * s, 500_000 * s)),
                ..NetInterface::default()
            },
            NetInterface {
                name: "veth0a".into(),
                counters: Some(counters(9_000_000 * s, 9_000_000 * s)),
                ..NetInterface::default()
            },
        ],
        pods: vec![PodSample {
            pod_ref: 7,
            network: Some(counters(100_000 * s, 0)),
            tcp: Some(TcpConnections { established_inbound: 12, ..TcpConnections::default() }),
            cpu_usage_us: 250_000 * s,
            memory_working_set_bytes: 64 << 20,
            process_count: 2,
        }],
        ..Sample::default()
    }
}

#[derive(Debug, Clone)]
struct FakeQuery {
    token: Option<String>,
    /// The sample second the next `Nodes` answers with.
    second: Arc<AtomicI64>,
}

impl FakeQuery {
    fn check<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let Some(token) = &self.token else { return Ok(()) };
        let presented = request.metadata().get("authorization").and_then(|v| v.to_str().ok());
        if presented == Some(format!("Bearer {token}").as_str()) {
            Ok(())
        } else {
            Err(Status::unauthenticated("no bearer token"))
        }
    }
}

#[tonic::async_trait]
impl Query for FakeQuery {
    async fn nodes(&self, request: Request<NodesRequest>) -> Result<Response<NodesResponse>, Status> {
        self.check(&request)?;
        let second = self.second.fetch_add(1, Ordering::SeqCst);
        let latest = sample_at(second);
        Ok(Response::new(NodesResponse {
            nodes: vec![NodeStatus {
                node_name: NODE.into(),
                connected: true,
                last_sample_ms: latest.timestamp_ms,
                last_seen_ms: latest.timestamp_ms,
                interval_ms: 1000,
                pods: vec![PodIdentity { pod_ref: 7, uid: "uid-7".into(), ..PodIdentity::default() }],
                latest: Some(latest),
                ..NodeStatus::default()
            }],
        }))
    }

    async fn set_interval(&self, _: Request<SetIntervalRequest>) -> Result<Response<SetIntervalResponse>, Status> {
        Err(Status::unimplemented("not in this fake"))
    }

    async fn history(&self, request: Request<HistoryRequest>) -> Result<Response<HistoryResponse>, Status> {
        self.check(&request)?;
        // Everything before the sample `Nodes` last answered with.
        let latest = self.second.load(Ordering::SeqCst) - 1;
        let batches = (latest - 3..latest)
            .map(|second| HistoryBatch {
                seq: second as u64,
                received_ms: sample_at(second).timestamp_ms,
                samples: vec![sample_at(second)],
            })
            .collect();
        Ok(Response::new(HistoryResponse { batches, pods: Vec::new() }))
    }

    // The diagnosis RPCs (pods, alerts, windows) are not part of this fake.
    async fn pods(&self, _: Request<v1::PodsRequest>) -> Result<Response<v1::PodsResponse>, Status> {
        Err(Status::unimplemented("not in this fake"))
    }

    async fn live(&self, _: Request<v1::LiveRequest>) -> Result<Response<v1::LiveResponse>, Status> {
        Err(Status::unimplemented("not in this fake"))
    }

    async fn alerts(&self, _: Request<v1::AlertsRequest>) -> Result<Response<v1::AlertsResponse>, Status> {
        Err(Status::unimplemented("not in this fake"))
    }

    async fn start_window(
        &self,
        _: Request<v1::StartWindowRequest>,
    ) -> Result<Response<v1::StartWindowResponse>, Status> {
        Err(Status::unimplemented("not in this fake"))
    }

    async fn stop_window(&self, _: Request<v1::StopWindowRequest>) -> Result<Response<v1::StopWindowResponse>, Status> {
        Err(Status::unimplemented("not in this fake"))
    }

    async fn windows(&self, _: Request<v1::WindowsRequest>) -> Result<Response<v1::WindowsResponse>, Status> {
        Err(Status::unimplemented("not in this fake"))
    }

    async fn report(&self, _: Request<v1::ReportRequest>) -> Result<Response<v1::ReportResponse>, Status> {
        Err(Status::unimplemented("not in this fake"))
    }
}

/// A running fake collector; stopped on [`FakeCollector::stop`] or when dropped.
pub struct FakeCollector {
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl FakeCollector {
    /// Serves on a port the OS picks.
    pub async fn start(token: Option<&str>) -> FakeCollector {
        FakeCollector::start_on("127.0.0.1:0".parse().unwrap(), token).await
    }

    /// Serves on `addr` (to come back on the same port after [`FakeCollector::stop`]).
    pub async fn start_on(addr: SocketAddr, token: Option<&str>) -> FakeCollector {
        FakeCollector::serve(addr, token, None).await
    }

    /// Serves TLS with this certificate and key (PEM) on a port the OS picks.
    pub async fn start_tls(cert_pem: &str, key_pem: &str) -> FakeCollector {
        let identity = tonic::transport::Identity::from_pem(cert_pem, key_pem);
        FakeCollector::serve("127.0.0.1:0".parse().unwrap(), None, Some(identity)).await
    }

    async fn serve(addr: SocketAddr, token: Option<&str>, tls: Option<tonic::transport::Identity>) -> FakeCollector {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let service = FakeQuery { token: token.map(str::to_string), second: Arc::new(AtomicI64::new(10)) };
        let mut server = tonic::transport::Server::builder();
        if let Some(identity) = tls {
            server = server.tls_config(tonic::transport::ServerTlsConfig::new().identity(identity)).unwrap();
        }
        let (shutdown, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .add_service(QueryServer::new(service))
                .serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(listener), async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        FakeCollector { addr, shutdown: Some(shutdown), task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops serving and waits until the port is closed.
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        let task = std::mem::replace(&mut self.task, tokio::spawn(async {}));
        // Graceful shutdown waits for open connections; don't let a client keep it alive.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), task).await;
    }
}

impl Drop for FakeCollector {
    fn drop(&mut self) {
        self.task.abort();
    }
}
