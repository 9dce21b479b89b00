//! The gRPC call as the agent makes it: what it sends is a message, or a batch the spool already encoded.
//!
//! The generated `IngestClient` takes `pb::AgentMessage` values, which would mean decoding each
//! spooled batch only to have it encoded again (`wire/encoded.rs` says why that is avoided).
//! This codec encodes an [`Outgoing`] either way; what the collector receives is the same
//! `AgentMessage` (`tests::an_encoded_batch_and_the_message_are_the_same_bytes`). The replies
//! are decoded by tonic's prost decoder, as the generated client does.

use bakery_proto::v1 as pb;
use prost::Message;
use prost::bytes::BufMut;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::{GrpcMethod, Status};
use tonic_prost::ProstDecoder;

/// One `AgentMessage` on the request stream.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Outgoing {
    Message(pb::AgentMessage),
    /// An `AgentMessage` already encoded (a live batch written from its spooled bytes).
    Encoded(Vec<u8>),
}

impl From<pb::AgentMessage> for Outgoing {
    fn from(message: pb::AgentMessage) -> Self {
        Self::Message(message)
    }
}

/// Encodes [`Outgoing`], decodes `pb::CollectorMessage`.
#[derive(Debug, Default)]
struct IngestCodec;

#[derive(Debug, Default)]
struct OutgoingEncoder;

impl Encoder for OutgoingEncoder {
    type Item = Outgoing;
    type Error = Status;

    fn encode(&mut self, item: Outgoing, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.write(dst);
        Ok(())
    }
}

impl Outgoing {
    /// The `AgentMessage`'s bytes, appended to `dst`.
    fn write(&self, dst: &mut impl BufMut) {
        match self {
            // tonic's buffer grows as needed: encoding into it cannot fail.
            Outgoing::Message(message) => {
                let _ = message.encode(dst);
            }
            Outgoing::Encoded(bytes) => dst.put_slice(bytes),
        }
    }
}

struct CollectorDecoder(ProstDecoder<pb::CollectorMessage>);

impl Decoder for CollectorDecoder {
    type Item = pb::CollectorMessage;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<pb::CollectorMessage>, Status> {
        self.0.decode(src)
    }
}

impl Codec for IngestCodec {
    type Encode = Outgoing;
    type Decode = pb::CollectorMessage;
    type Encoder = OutgoingEncoder;
    type Decoder = CollectorDecoder;

    fn encoder(&mut self) -> OutgoingEncoder {
        OutgoingEncoder
    }

    fn decoder(&mut self) -> CollectorDecoder {
        CollectorDecoder(ProstDecoder::default())
    }
}

/// Opens `bakery.v1.Ingest/Stream` on `channel` with `request` as the agent's side.
pub(super) async fn open_stream<S>(
    channel: Channel,
    request: tonic::Request<S>,
) -> Result<tonic::Response<tonic::codec::Streaming<pb::CollectorMessage>>, Status>
where
    S: tokio_stream::Stream<Item = Outgoing> + Send + 'static,
{
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.map_err(|e| Status::unknown(format!("the channel is not ready: {e}")))?;
    let service = bakery_proto::v1::ingest_server::SERVICE_NAME;
    let path = PathAndQuery::try_from(format!("/{service}/Stream")).map_err(|e| Status::internal(e.to_string()))?;
    let mut request = request;
    request.extensions_mut().insert(GrpcMethod::new(service, "Stream"));
    grpc.streaming(request, path, IngestCodec).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{DeclaredPods, write_batch_message};

    fn encoded(item: Outgoing) -> Vec<u8> {
        let mut buf = Vec::new();
        item.write(&mut buf);
        buf
    }

    #[test]
    fn an_encoded_batch_and_the_message_are_the_same_bytes() {
        let identity = pb::PodIdentity { pod_ref: 3, uid: "u".into(), ..Default::default() };
        let batch = pb::Batch {
            seq: 0,
            new_pods: vec![identity],
            samples: vec![pb::Sample { timestamp_ms: 7, ..Default::default() }],
        };
        let mut bytes = Vec::new();
        write_batch_message(12, &batch.encode_to_vec(), &mut DeclaredPods::new(), None, &mut bytes).unwrap();
        let message = pb::AgentMessage { kind: Some(pb::agent_message::Kind::Batch(pb::Batch { seq: 12, ..batch })) };
        assert_eq!(encoded(Outgoing::Encoded(bytes)), encoded(Outgoing::Message(message)));
    }
}
