//! The gRPC `Ingest.Stream` service: one task per agent stream. Converts wire messages to
//! store rows at this edge (pod refs rewritten to the collector's stable pod ids, sequence
//! numbers checked, implied gaps recorded), hands them to the committer in sequence order, and
//! turns committed sequence numbers into acks. Acknowledged means durable; never acknowledged
//! means sent again.
//!
//! A message goes through these stages ([`handle`]): its kind and sequence range on
//! the stream; its content within the caps ([`bounds`]: cut and counted, or refused); its
//! sequence number within what the agent could have produced ([`seq`]); its pods numbered
//! within the node's cap ([`pods`]); room in the commit queue, in messages and in bytes
//! (`--max-queue-bytes`); then the node's live state. Every refusal and cut is counted per cause
//! and logged at a limited rate ([`refusals`]). A refused message is never queued, so it never
//! moves the committed sequence number and is never acknowledged.
//!
//! [`session`] holds a stream from its Hello to its end (admission, acks, the flood limit and
//! the replay budget, the final ack); [`handle`] takes one message through the stages;
//! [`lanes`] keeps a stream's live and replayed messages each in order, the live ones going
//! ahead of an unfinished replay.

pub mod bounds;
mod handle;
pub mod lanes;
pub mod pods;
pub mod refusals;
pub mod seq;
mod session;
mod wire;

use std::sync::Arc;
use std::time::Duration;

use bakery_proto::codec::Received;
use bakery_proto::received::ingest_server::Ingest;
use bakery_proto::v1::{AgentMessage, CollectorMessage};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::Call;
use crate::state::Shared;
pub use refusals::{IngestRefusal, IngestRefusalCounts, IngestRefusals};
pub use seq::{REASON_LOST_BEFORE_SPOOLING, REASON_MISSING, implied_gaps};
use session::Session;

/// The largest message the collector decodes; larger ones end that stream with
/// `RESOURCE_EXHAUSTED`.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// A stream must say hello within this time.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(30);
/// A send to an agent that does not read its responses gives up after this.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// On shutdown, how long a stream waits for its last batches to be committed before it closes.
pub const FINAL_ACK_TIMEOUT: Duration = Duration::from_secs(8);
/// Gap reasons are cut to this many bytes.
pub const MAX_REASON_BYTES: usize = 1024;
/// What a queued item costs besides its batch, pod and gap bytes.
const ITEM_OVERHEAD_BYTES: usize = 64;
/// Pod refs one stream may map, per `--max-pods-per-node`, before it must start over.
const STREAM_REFS_PER_POD: usize = 4;
/// The largest Hello taken (an agent's is under 1 KiB).
pub const MAX_HELLO_BYTES: usize = 64 * 1024;

/// The `Ingest` gRPC service.
#[derive(Debug, Clone)]
pub struct IngestService {
    shared: Arc<Shared>,
}

impl IngestService {
    pub fn new(shared: Arc<Shared>) -> Self {
        IngestService { shared }
    }
}

#[tonic::async_trait]
impl Ingest for IngestService {
    type StreamStream = ReceiverStream<Result<CollectorMessage, Status>>;

    async fn stream(
        &self,
        request: Request<Streaming<Received<AgentMessage>>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let peer = request.remote_addr();
        // Who streams: the node they may write is checked against the Hello (`run`).
        let principal = self.shared.auth.authorize(&request, Call::IngestStream).await?;
        let queue = self.shared.queue().ok_or_else(shutting_down)?;
        let (out, responses) = mpsc::channel(16);
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let session = Session::new(shared, out.clone(), peer, principal);
            if let Err(status) = session.run(request.into_inner(), queue).await {
                // The agent may be gone already; nothing else to tell.
                let _ = tokio::time::timeout(SEND_TIMEOUT, out.send(Err(status))).await;
            }
        });
        Ok(Response::new(ReceiverStream::new(responses)))
    }
}

fn shutting_down() -> Status {
    Status::unavailable("the collector is shutting down; reconnect with backoff")
}

fn replaced_status() -> Status {
    Status::aborted("a newer stream for this node replaced this one")
}

/// Resolves once the collector is shutting down.
pub async fn shut_down(shutdown: &mut watch::Receiver<bool>) {
    // An error means the sender is gone, which only happens when the collector is gone.
    let _ = shutdown.wait_for(|down| *down).await;
}
