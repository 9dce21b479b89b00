//! Talking to the collector from the demo process, which lives in the root network namespace while
//! the collector listens on the control station's LAN address (198.18.0.2), reachable only from
//! inside the simulated LAN. A dedicated thread enters the control network namespace (`setns` with
//! `CLONE_NEWNET` changes only the calling thread) and runs a single-threaded tokio runtime; every
//! socket it opens is in that namespace, and nothing is added to the root namespace.

use std::sync::mpsc;
use std::time::Duration;

use bakery_lab::netns::Handle;
use bakery_proto::v1::query_client::QueryClient;
use bakery_proto::v1::{
    LiveRequest, LiveResponse, NodeStatus, NodesRequest, PodsRequest, PodsResponse, ReportRequest, ReportResponse,
    StartWindowRequest, StopWindowRequest, Window,
};
use tonic::transport::Channel;

use crate::{Error, Result};

/// How long one call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

type Job = Box<dyn FnOnce(&tokio::runtime::Runtime, &mut Option<QueryClient<Channel>>) + Send>;

/// A connection to the collector's Query service from inside the control namespace.
#[derive(Debug)]
pub struct ControlLink {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
    url: String,
}

impl ControlLink {
    /// Starts the link's thread in network namespace `netns` (e.g. `bkd-control`).
    pub fn new(netns: &str, url: &str) -> Result<Self> {
        let namespace = Handle::open(netns)?;
        let (ready_tx, ready_rx) = mpsc::channel::<Result<()>>();
        let (jobs_tx, jobs_rx) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("control-link".into())
            .spawn(move || {
                let started = namespace.enter().map_err(Error::from).and_then(|()| {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|source| Error::Start { what: "the control link's runtime", source })
                });
                let runtime = match started {
                    Ok(runtime) => {
                        let _ = ready_tx.send(Ok(()));
                        runtime
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let mut client = None;
                for job in jobs_rx {
                    job(&runtime, &mut client);
                }
            })
            .map_err(|source| Error::Start { what: "the control link's thread", source })?;
        ready_rx.recv().map_err(|_| Error::ControlLink("died"))??;
        Ok(Self { jobs: Some(jobs_tx), thread: Some(thread), url: url.to_string() })
    }

    /// Runs `call` with a connected client on the link's thread.
    fn call<T: Send + 'static>(
        &self,
        name: &'static str,
        call: impl AsyncFnOnce(&mut QueryClient<Channel>) -> Result<T, tonic::Status> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = mpsc::channel();
        let url = self.url.clone();
        let job: Job = Box::new(move |runtime, client| {
            let result = runtime.block_on(async {
                if client.is_none() {
                    let endpoint = Channel::from_shared(url.clone())
                        .map_err(|source| Error::Url { url: url.clone(), source })?
                        .connect_timeout(Duration::from_secs(3))
                        .timeout(CALL_TIMEOUT);
                    let channel =
                        endpoint.connect().await.map_err(|source| Error::Connect { url: url.clone(), source })?;
                    *client = Some(QueryClient::new(channel).max_decoding_message_size(64 << 20));
                }
                let Some(connected) = client.as_mut() else { return Err(Error::ControlLink("has no client")) };
                let answer = call(connected).await;
                if answer.is_err() {
                    // Reconnect next time: the collector may have restarted.
                    *client = None;
                }
                answer.map_err(|status| Error::Collector { call: name, source: Box::new(status) })
            });
            let _ = tx.send(result);
        });
        self.jobs.as_ref().ok_or(Error::ControlLink("is closed"))?.send(job).map_err(|_| Error::ControlLink("died"))?;
        rx.recv().map_err(|_| Error::ControlLink("died"))?
    }

    /// Closes the connection for good: the thread ends and its runtime with it, which closes the
    /// socket (the collector's graceful shutdown waits for open connections).
    pub fn disconnect(&mut self) {
        self.jobs.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    /// Every node the collector knows, with its latest sample.
    pub fn nodes(&self) -> Result<Vec<NodeStatus>> {
        self.call("Nodes", async |client| Ok(client.nodes(NodesRequest {}).await?.into_inner().nodes))
    }

    /// The collector's live view: the workload's shares per node and the verdicts in force.
    pub fn live(&self) -> Result<LiveResponse> {
        self.call("Live", async |client| Ok(client.live(LiveRequest {}).await?.into_inner()))
    }

    /// Every pod the collector knows, and whether it knows them from Kubernetes.
    pub fn pods(&self) -> Result<PodsResponse> {
        self.call("Pods", async |client| Ok(client.pods(PodsRequest {}).await?.into_inner()))
    }

    /// Opens a load-test window on the collector; `workload` is `namespace/name`, or empty to let the
    /// collector choose the workload under test.
    pub fn start_window(&self, name: &str, workload: &str) -> Result<Window> {
        let request = StartWindowRequest { name: name.to_string(), workload: workload.to_string() };
        self.call("StartWindow", async move |client| {
            client
                .start_window(request)
                .await?
                .into_inner()
                .window
                .ok_or_else(|| tonic::Status::internal("no window in the answer"))
        })
    }

    /// Closes the open window; the collector stores its report.
    pub fn stop_window(&self) -> Result<Window> {
        self.call("StopWindow", async |client| {
            client
                .stop_window(StopWindowRequest {})
                .await?
                .into_inner()
                .window
                .ok_or_else(|| tonic::Status::internal("no window in the answer"))
        })
    }

    /// A stored window report.
    pub fn report(&self, id: &str) -> Result<ReportResponse> {
        let id = id.to_string();
        self.call("Report", async move |client| Ok(client.report(ReportRequest { id }).await?.into_inner()))
    }
}

impl Drop for ControlLink {
    fn drop(&mut self) {
        self.disconnect();
    }
}
