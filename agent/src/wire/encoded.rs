//! A spooled batch sent as its bytes: the `AgentMessage` written around the payload, without decoding it.
//!
//! The spool keeps each batch encoded, self-contained and numbered 0 (see
//! the module docs of `wire`). Sending it used to mean decoding it into a
//! `pb::Batch` (a string per pod identity, interface and sensor: hundreds of
//! allocations per sample), dropping the identities the stream knows, and
//! letting tonic encode it again. Protobuf allows it to be done on the bytes:
//! a message is its fields in any order, so `AgentMessage.batch` is written
//! as the sequence number followed by the payload's fields, leaving out each
//! `new_pods` entry whose identity this stream was told already. The result
//! decodes to exactly what the decoded path sends
//! (`tests::the_bytes_decode_to_what_the_decoded_path_sends`).
//!
//! Only the top-level fields and the identities' numbers are parsed; the rest
//! of the payload is trusted to be a valid `Batch`: the spool encoded it from
//! one, and the disk spool's CRC-32 checks what it reads back. A payload whose
//! framing does not parse is an error, and the stream sends an unreadable gap
//! in its place.

use prost::DecodeError;
use prost::bytes::BufMut;
use prost::encoding::{
    DecodeContext, WireType, decode_key, decode_varint, encode_key, encode_varint, encoded_len_varint,
};

use super::DeclaredPods;

/// `AgentMessage.batch`, `Batch.seq`, `Batch.new_pods` and `PodIdentity.pod_ref` in
/// `proto/proto/bakery/v1/bakery.proto`.
const AGENT_MESSAGE_BATCH: u32 = 2;
const BATCH_SEQ: u32 = 1;
const BATCH_NEW_PODS: u32 = 2;
const POD_IDENTITY_POD_REF: u32 = 1;

/// One top-level field of an encoded message.
#[derive(Debug, Clone, Copy)]
struct Field<'a> {
    number: u32,
    /// The whole field: key, length and body.
    whole: &'a [u8],
    /// A length-delimited field's body (empty for other wire types).
    body: &'a [u8],
}

/// The top-level fields of `message`, in order.
fn fields(message: &[u8]) -> impl Iterator<Item = Result<Field<'_>, DecodeError>> {
    let mut rest = message;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let start = rest;
        let field = next_field(&mut rest).map(|(number, body)| Field {
            number,
            whole: &start[..start.len() - rest.len()],
            body,
        });
        if field.is_err() {
            rest = &[];
        }
        Some(field)
    })
}

/// Reads one field off `rest`: its number and, when length-delimited, its body.
fn next_field<'a>(rest: &mut &'a [u8]) -> Result<(u32, &'a [u8]), DecodeError> {
    let (number, wire_type) = decode_key(rest)?;
    let mut length = *rest;
    let body_len = match wire_type {
        WireType::LengthDelimited => decode_varint(&mut length)?,
        _ => 0,
    };
    // prost checks the field against what is left (a length past the end is an error) and
    // steps over it.
    prost::encoding::skip_field(wire_type, number, rest, DecodeContext::default())?;
    if wire_type != WireType::LengthDelimited {
        return Ok((number, &[]));
    }
    Ok((number, &length[..body_len as usize]))
}

/// `PodIdentity.pod_ref` of an encoded identity (0, the default, when absent).
fn pod_ref(identity: &[u8]) -> Result<u32, DecodeError> {
    let mut pod_ref = 0;
    let mut rest = identity;
    while !rest.is_empty() {
        let (number, wire_type) = decode_key(&mut rest)?;
        if number == POD_IDENTITY_POD_REF && wire_type == WireType::Varint {
            // A uint32 on the wire: the low 32 bits, as prost reads it.
            pod_ref = decode_varint(&mut rest)? as u32;
        } else {
            prost::encoding::skip_field(wire_type, number, &mut rest, DecodeContext::default())?;
        }
    }
    Ok(pod_ref)
}

/// Whether a field of the payload goes on the wire: not a sequence number (the entry's is
/// written instead), and not an identity the stream was told already.
fn sent(field: &Field<'_>, declared: &DeclaredPods) -> Result<bool, DecodeError> {
    Ok(match field.number {
        BATCH_SEQ => false,
        BATCH_NEW_PODS => !declared.knows_encoded(pod_ref(field.body)?, field.body),
        _ => true,
    })
}

/// Writes into `out` the encoded `AgentMessage` carrying the spooled batch `payload` as batch
/// `seq`, leaving out the identities `declared` knows; then records the identities it sent in
/// `declared` and in `also_told` (what any message told the stream, when live and replayed
/// messages share it). The payload is checked whole before anything is written or recorded: a payload that
/// does not parse is an error and changes nothing.
pub fn write_batch_message(
    seq: u64,
    payload: &[u8],
    declared: &mut DeclaredPods,
    also_told: Option<&mut DeclaredPods>,
    out: &mut Vec<u8>,
) -> Result<(), DecodeError> {
    let seq_len = if seq == 0 { 0 } else { 1 + encoded_len_varint(seq) };
    let mut batch_len = seq_len;
    for field in fields(payload) {
        let field = field?;
        if sent(&field, declared)? {
            batch_len += field.whole.len();
        }
    }
    out.clear();
    out.reserve(1 + encoded_len_varint(batch_len as u64) + batch_len);
    encode_key(AGENT_MESSAGE_BATCH, WireType::LengthDelimited, out);
    encode_varint(batch_len as u64, out);
    if seq != 0 {
        encode_key(BATCH_SEQ, WireType::Varint, out);
        encode_varint(seq, out);
    }
    for field in fields(payload).flatten() {
        // Every field parsed above; the decision is the same, as `declared` is unchanged.
        if sent(&field, declared).unwrap_or(false) {
            out.put_slice(field.whole);
        }
    }
    let mut also_told = also_told;
    for field in fields(payload).flatten().filter(|f| f.number == BATCH_NEW_PODS) {
        let Ok(pod_ref) = pod_ref(field.body) else { continue };
        if !declared.knows_encoded(pod_ref, field.body) {
            declared.record_encoded(pod_ref, field.body);
            if let Some(other) = also_told.as_deref_mut() {
                other.record_encoded(pod_ref, field.body);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use bakery_proto::v1 as pb;
    use prost::Message;

    use super::*;

    fn identity(pod_ref: u32, uid: &str) -> pb::PodIdentity {
        pb::PodIdentity {
            pod_ref,
            uid: uid.into(),
            qos_class: "burstable".into(),
            cgroup_path: format!("/kubepods/pod{uid}"),
            host_network: pod_ref.is_multiple_of(3),
        }
    }

    fn batch(pods: &[(u32, &str)], timestamp_ms: i64) -> pb::Batch {
        let samples = vec![pb::Sample {
            timestamp_ms,
            pods: pods.iter().map(|(pod_ref, _)| pb::PodSample { pod_ref: *pod_ref, ..Default::default() }).collect(),
            ..Default::default()
        }];
        pb::Batch { seq: 0, new_pods: pods.iter().map(|(r, uid)| identity(*r, uid)).collect(), samples }
    }

    /// What the session sent before: decode, strip, number, encode with prost.
    fn decoded_path(seq: u64, payload: &[u8], declared: &mut DeclaredPods) -> pb::AgentMessage {
        let mut batch = pb::Batch::decode(payload).unwrap();
        declared.strip_declared(&mut batch);
        batch.seq = seq;
        pb::AgentMessage { kind: Some(pb::agent_message::Kind::Batch(batch)) }
    }

    #[test]
    fn the_bytes_decode_to_what_the_decoded_path_sends() {
        let batches = [
            batch(&[(0, "a"), (1, "b"), (2, "c")], 1_000),
            batch(&[(0, "a"), (1, "b"), (2, "c")], 1_250),
            // A pod goes, one comes, and number 1 now names a different pod (a restart's renumbering).
            batch(&[(0, "a"), (1, "b2"), (3, "d")], 1_500),
            batch(&[], 1_750),
            batch(&[(7, "h")], 2_000),
        ];
        let (mut by_bytes, mut by_decoding, mut told) = (DeclaredPods::new(), DeclaredPods::new(), DeclaredPods::new());
        let mut out = Vec::new();
        for (i, batch) in batches.iter().enumerate() {
            let payload = batch.encode_to_vec();
            let seq = 100 + i as u64;
            write_batch_message(seq, &payload, &mut by_bytes, Some(&mut told), &mut out).unwrap();
            let expected = decoded_path(seq, &payload, &mut by_decoding);
            assert_eq!(pb::AgentMessage::decode(out.as_slice()).unwrap(), expected, "batch {i}");
        }
        assert_eq!(by_bytes.len(), by_decoding.len());
        assert_eq!(told.len(), by_decoding.len(), "what was sent is recorded in the other set too");
    }

    #[test]
    fn the_first_batch_on_a_stream_declares_every_pod_and_later_ones_none() {
        let payload = batch(&[(0, "a"), (1, "b")], 1_000).encode_to_vec();
        let mut declared = DeclaredPods::new();
        let mut out = Vec::new();
        let sent = |out: &[u8]| match pb::AgentMessage::decode(out).unwrap().kind {
            Some(pb::agent_message::Kind::Batch(batch)) => (batch.seq, batch.new_pods.len(), batch.samples.len()),
            other => panic!("{other:?}"),
        };
        write_batch_message(5, &payload, &mut declared, None, &mut out).unwrap();
        assert_eq!(sent(&out), (5, 2, 1));
        write_batch_message(6, &payload, &mut declared, None, &mut out).unwrap();
        assert_eq!(sent(&out), (6, 0, 1));
    }

    #[test]
    fn a_payload_that_does_not_parse_is_an_error_and_declares_nothing() {
        let mut payload = batch(&[(0, "a"), (1, "b")], 1_000).encode_to_vec();
        payload.truncate(payload.len() - 3);
        let mut declared = DeclaredPods::new();
        let mut out = Vec::new();
        assert!(write_batch_message(1, &payload, &mut declared, None, &mut out).is_err());
        assert!(declared.is_empty(), "nothing is recorded as told");
    }

    #[test]
    fn a_sequence_number_left_in_a_payload_gives_way_to_the_entrys() {
        let payload = pb::Batch { seq: 9, ..batch(&[(0, "a")], 1_000) }.encode_to_vec();
        let mut out = Vec::new();
        write_batch_message(42, &payload, &mut DeclaredPods::new(), None, &mut out).unwrap();
        let Some(pb::agent_message::Kind::Batch(sent)) = pb::AgentMessage::decode(out.as_slice()).unwrap().kind else {
            panic!("a batch")
        };
        assert_eq!(sent.seq, 42);
    }
}
