//! The gRPC codec of every generated client and server: prost's, but decoding from a slice.
//!
//! tonic hands a decoder the message as a `DecodeBuf`, a window on its read buffer. Decoding
//! through the `Buf` trait makes every varint (most of a sample's bytes) a `chunk()` and an
//! `advance()` on that buffer; decoding from the slice it wraps is a slice re-borrow each. The
//! read buffer holds a whole message in one piece, so the slice is the message; were it ever
//! split, the message is decoded through `Buf` as before. Every gRPC test decodes through it;
//! a message that does not decode is refused as before
//! (`collector/tests/collector/ingest.rs`, "does not decode").

use std::marker::PhantomData;

use prost::Message;
use prost::bytes::Buf;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::ProstEncoder;

/// [`tonic_prost::ProstCodec`] with [`SliceDecoder`]: encodes `T`, decodes `U`.
#[derive(Debug, Clone)]
pub struct SliceCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for SliceCodec<T, U> {
    fn default() -> Self {
        SliceCodec(PhantomData)
    }
}

impl<T, U> Codec for SliceCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = SliceDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        SliceDecoder(PhantomData)
    }
}

/// Decodes a `U` from the message's bytes as one slice when they are contiguous.
#[derive(Debug, Clone)]
pub struct SliceDecoder<U>(PhantomData<U>);

impl<U: Message + Default> Decoder for SliceDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        let len = buf.remaining();
        let decoded = if buf.chunk().len() == len {
            let decoded = U::decode(buf.chunk());
            buf.advance(len);
            decoded
        } else {
            U::decode(buf)
        };
        // The status prost's codec gives: INTERNAL, with prost's message ("failed to decode
        // Protobuf message: ..."), which the collector tells apart from other errors.
        decoded.map(Some).map_err(|error| Status::internal(error.to_string()))
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}
