//! The gRPC codec of every generated client and server: prost's, but decoding from a slice.
//!
//! tonic hands a decoder the message as a `DecodeBuf`, a window on its read buffer. Decoding
//! through the `Buf` trait makes every varint (most of a sample's bytes) a `chunk()` and an
//! `advance()` on that buffer; decoding from the slice it wraps is a slice re-borrow each. The
//! read buffer holds a whole message in one piece, so the slice is the message; were it ever
//! split, the message is decoded through `Buf` as before. Every gRPC test decodes through it;
//! a message that does not decode is refused as before
//! (`collector/tests/collector/ingest.rs`, "does not decode").
//!
//! [`ReceivedCodec`] is the collector's ingest server's: each message comes with the bytes it
//! was decoded from, so a batch can be stored without being encoded again.

use std::marker::PhantomData;

use prost::Message;
use prost::bytes::{Buf, Bytes};
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
        decoded.map(Some).map_err(decode_status)
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}

/// A message with the bytes it was decoded from (a view of the read buffer, not a copy).
#[derive(Debug, Clone)]
pub struct Received<U> {
    pub message: U,
    pub bytes: Bytes,
}

/// [`SliceCodec`], but decoding into [`Received`]: encodes `T`, decodes `Received<U>`.
#[derive(Debug, Clone)]
pub struct ReceivedCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for ReceivedCodec<T, U> {
    fn default() -> Self {
        ReceivedCodec(PhantomData)
    }
}

impl<T, U> Codec for ReceivedCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = Received<U>;
    type Encoder = ProstEncoder<T>;
    type Decoder = ReceivedDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ReceivedDecoder(PhantomData)
    }
}

/// Takes the message's bytes out of the read buffer (tonic's buffer is one `BytesMut`, so
/// this splits it rather than copying) and decodes a `U` from them.
#[derive(Debug, Clone)]
pub struct ReceivedDecoder<U>(PhantomData<U>);

impl<U: Message + Default> Decoder for ReceivedDecoder<U> {
    type Item = Received<U>;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Received<U>>, Status> {
        let bytes = buf.copy_to_bytes(buf.remaining());
        let message = U::decode(bytes.as_ref()).map_err(decode_status)?;
        Ok(Some(Received { message, bytes }))
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}

/// The status prost's codec gives: INTERNAL, with prost's message ("failed to decode Protobuf
/// message: ..."), which the collector tells apart from other errors.
fn decode_status(error: prost::DecodeError) -> Status {
    Status::internal(error.to_string())
}
