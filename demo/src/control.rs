//! Talking to the collector from the demo process, which lives in the root network namespace while
//! the collector listens on the control station's LAN address (198.18.0.2), reachable only from
//! inside the simulated LAN. A dedicated thread enters the control network namespace (`setns` with
//! `CLONE_NEWNET` changes only the calling thread) and runs a single-threaded tokio runtime; every
//! socket it opens is in that namespace, and nothing is added to the root namespace.

use std::fs::File;
use std::sync::mpsc;
use std::time::Duration;

use bakery_proto::v1::query_client::QueryClient;
use bakery_proto::v1::{
    LiveRequest, LiveResponse, NodeStatus, NodesRequest, PodsRequest, PodsResponse, ReportRequest, ReportResponse,
    StartWindowRequest, StopWindowRequest, Window,
};
use nix::sched::CloneFlags;
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
    /// Starts the link's thread in network namespace `netns_path` (e.g. `/run/netns/bkd-control`).
    pub fn new(netns_path: &str, url: &str) -> Result<Self> {
        let file = File::open(netns_path).map_err(|e| Error::Io(format!("opening {netns_path}: {e}")))?;
        let (ready_tx, ready_rx) = mpsc::channel::<Result<()>>();
        let (jobs_tx, jobs_rx) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("control-link".into())
            .spawn(move || {
                let started = nix::sched::setns(&file, CloneFlags::CLONE_NEWNET)
                    .map_err(|e| Error::Io(format!("entering the control namespace: {e}")))
                    .and_then(|()| {
                        tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()
                            .map_err(|e| Error::Io(format!("starting the runtime: {e}")))
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
            .map_err(|e| Error::Io(format!("starting the control link: {e}")))?;
        ready_rx.recv().map_err(|_| Error::Io("the control link died".into()))??;
        Ok(Self { jobs: Some(jobs_tx), thread: Some(thread), url: url.to_string() })
    }

    /// Runs `call` with a connected client on the link's thread.
    fn call<T: Send + 'static>(
        &self,
        call: impl AsyncFnOnce(&mut QueryClient<Channel>) -> Result<T, tonic::Status> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = mpsc::channel();
        let url = self.url.clone();
        let job: Job = Box::new(move |runtime, client| {
            let result = runtime.block_on(async {
                if client.is_none() {
                    let endpoint = Channel::from_shared(url.clone())
                        .map_err(|e| Error::Io(format!("{url}: {e}")))?
                        .connect_timeout(Duration::from_secs(3))
                        .timeout(CALL_TIMEOUT);
                    let channel = endpoint
                        .connect()
                        .await
                        .map_err(|e| Error::Io(format!("connecting to the collector at {url}: {e}")))?;
                    *client = Some(QueryClient::new(channel).max_decoding_message_size(64 << 20));
                }
                let Some(connected) = client.as_mut() else { return Err(Error::Io("no client".into())) };
                let answer = call(connected).await;
                if answer.is_err() {
                    // Reconnect next time: the collector may have restarted.
                    *client = None;
                }
                answer.map_err(|status| Error::Io(format!("the collector answered: {}", status.message())))
            });
            let _ = tx.send(result);
        });
        self.jobs
            .as_ref()
            .ok_or_else(|| Error::Io("the control link is closed".into()))?
            .send(job)
            .map_err(|_| Error::Io("the control link died".into()))?;
        rx.recv().map_err(|_| Error::Io("the control link died".into()))?
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
        self.call(async |client| Ok(client.nodes(NodesRequest {}).await?.into_inner().nodes))
    }

    /// The collector's live view: the workload's shares per node and the verdicts in force.
    pub fn live(&self) -> Result<LiveResponse> {
        self.call(async |client| Ok(client.live(LiveRequest {}).await?.into_inner()))
    }

    /// Every pod the collector knows, and whether it knows them from Kubernetes.
    pub fn pods(&self) -> Result<PodsResponse> {
        self.call(async |client| Ok(client.pods(PodsRequest {}).await?.into_inner()))
    }

    /// Opens a load-test window on the collector; `workload` is `namespace/name`, or empty to let the
    /// collector choose the workload under test.
    pub fn start_window(&self, name: &str, workload: &str) -> Result<Window> {
        let request = StartWindowRequest { name: name.to_string(), workload: workload.to_string() };
        self.call(async move |client| {
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
        self.call(async |client| {
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
        self.call(async move |client| Ok(client.report(ReportRequest { id }).await?.into_inner()))
    }
}

impl Drop for ControlLink {
    fn drop(&mut self) {
        self.disconnect();
    }
}
