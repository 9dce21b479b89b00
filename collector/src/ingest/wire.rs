//! A batch's stored form from its samples' wire bytes, with only each pod's `pod_ref` written anew.
//!
//! Encoding every sample again with prost was the largest cost of ingest (12 % of its CPU):
//! prost computes a nested message's length once per level it is nested in. The bytes as
//! received already hold everything but the collector's pod ids, so the stored form copies them
//! and writes only the pod references. It is taken only when each pod's `pod_ref` is its first
//! field and comes once (as prost writes it), and the result is exactly as long as prost's
//! encoding of the decoded, checked sample: a peer's unknown fields, padding or repeated fields
//! are then never stored (bakery.proto has no repeated scalars, so prost's encoding is the
//! shortest of a sample's values), and for what the agent sends the bytes are prost's own.
//! Otherwise, and whenever the caps cut something, the caller encodes the decoded samples as
//! before. Tests: `ingest::wire::tests`.

use std::ops::Range;

use bakery_proto::v1::Sample;
use prost::Message;
use prost::bytes::Bytes;
// prost's wire primitives, which its derived code calls: they move only with prost's minor
// version, which the workspace pins.
use prost::encoding::{WireType, decode_varint, encode_key, encode_varint, encoded_len_varint};

/// `AgentMessage.batch`, `AgentMessage.replay`, `Replay.batch`, `Replay.gap`, `Batch.samples`,
/// `Sample.pods`, `PodSample.pod_ref` and `StoredBatch.samples` (bakery.proto, store/records.rs).
const AGENT_BATCH: u32 = 2;
const AGENT_REPLAY: u32 = 4;
const REPLAY_BATCH: u32 = 2;
const REPLAY_GAP: u32 = 3;
const BATCH_SAMPLES: u32 = 3;
const SAMPLE_PODS: u32 = 12;
const POD_REF: u32 = 1;
const STORED_SAMPLES: u32 = 1;

/// One field of a message: where its key starts, and its value (a length-delimited field's
/// payload, without the length).
#[derive(Debug, Clone)]
struct Field {
    tag: u32,
    start: usize,
    value: Range<usize>,
}

/// The fields of a message in order. Stops at a field it cannot read, and says so in `broken`.
struct Fields<'a> {
    message: &'a [u8],
    at: usize,
    broken: bool,
}

impl<'a> Fields<'a> {
    fn new(message: &'a [u8]) -> Self {
        Fields { message, at: 0, broken: false }
    }
}

impl Iterator for Fields<'_> {
    type Item = Field;

    fn next(&mut self) -> Option<Field> {
        if self.at >= self.message.len() {
            return None;
        }
        let field = read_field(self.message, self.at);
        match &field {
            Some(field) => self.at = field.value.end,
            None => (self.broken, self.at) = (true, self.message.len()),
        }
        field
    }
}

fn read_field(message: &[u8], start: usize) -> Option<Field> {
    let (key, from) = read_varint(message, start)?;
    let tag = u32::try_from(key >> 3).ok().filter(|tag| *tag > 0)?;
    let value = match WireType::try_from(key & 7).ok()? {
        WireType::Varint => from..varint_end(message, from)?,
        WireType::SixtyFourBit => from..from + 8,
        WireType::ThirtyTwoBit => from..from + 4,
        WireType::LengthDelimited => {
            let (len, from) = read_varint(message, from)?;
            from..from.checked_add(usize::try_from(len).ok()?)?
        }
        WireType::StartGroup | WireType::EndGroup => return None,
    };
    (value.end <= message.len()).then_some(Field { tag, start, value })
}

/// Where the varint at `at` ends, without decoding it: after its first byte below 0x80, within
/// the 10 bytes a varint may take.
fn varint_end(message: &[u8], at: usize) -> Option<usize> {
    let bytes = message.get(at..)?;
    bytes.iter().take(10).position(|byte| *byte < 0x80).map(|last| at + last + 1)
}

/// The varint at `at` and where it ends. Keys and most values are one byte, read here; the
/// rest goes through prost.
fn read_varint(message: &[u8], at: usize) -> Option<(u64, usize)> {
    match message.get(at) {
        Some(&byte) if byte < 0x80 => Some((u64::from(byte), at + 1)),
        Some(_) => {
            let mut rest = &message[at..];
            let value = decode_varint(&mut rest).ok()?;
            Some((value, message.len() - rest.len()))
        }
        None => None,
    }
}

/// The wire bytes of each sample of the batch `message` (an encoded `AgentMessage`) carries,
/// directly or in a `Replay`, as views of `message`. `None` when it carries no batch, or when
/// decoding merges its batch from several pieces (then these bytes are not its samples).
pub fn sample_bytes(message: &Bytes) -> Option<Vec<Bytes>> {
    let batch = only_field(message, &[AGENT_BATCH, AGENT_REPLAY])?;
    let batch = match batch.tag {
        AGENT_BATCH => batch.value,
        _ => {
            let replay = &message[batch.value.clone()];
            let inner = only_field(replay, &[REPLAY_BATCH, REPLAY_GAP]).filter(|f| f.tag == REPLAY_BATCH)?;
            batch.value.start + inner.value.start..batch.value.start + inner.value.end
        }
    };
    let mut fields = Fields::new(&message[batch.clone()]);
    let samples = fields
        .by_ref()
        .filter(|field| field.tag == BATCH_SAMPLES)
        .map(|field| message.slice(batch.start + field.value.start..batch.start + field.value.end))
        .collect();
    (!fields.broken).then_some(samples)
}

/// The one field of `message` whose tag is in `tags`: `None` when there are none, several, or
/// the message does not read.
fn only_field(message: &[u8], tags: &[u32]) -> Option<Field> {
    let mut fields = Fields::new(message);
    let mut found = None;
    for field in fields.by_ref().filter(|field| tags.contains(&field.tag)) {
        if found.replace(field).is_some() {
            return None;
        }
    }
    if fields.broken { None } else { found }
}

/// The encoded `StoredBatch` of `samples` (decoded, checked and with collector pod ids), made
/// from `wire`, their bytes as received. `None` when that is not exactly prost's encoding of
/// `samples` in length: the caller encodes them then.
pub fn stored_batch(samples: &[Sample], wire: &[Bytes]) -> Option<Vec<u8>> {
    if samples.len() != wire.len() {
        return None;
    }
    // Exactly the bytes prost's encoding takes, so that the history and the commit queue hold
    // no spare capacity (the collector's pod ids may take more bytes than the agent's refs).
    let lens: Vec<usize> = samples.iter().map(Message::encoded_len).collect();
    let mut out = Vec::with_capacity(lens.iter().map(|len| 1 + encoded_len_varint(*len as u64) + len).sum());
    for ((sample, wire), &len) in samples.iter().zip(wire).zip(&lens) {
        encode_key(STORED_SAMPLES, WireType::LengthDelimited, &mut out);
        encode_varint(len as u64, &mut out);
        let start = out.len();
        with_pod_refs(wire, sample, &mut out)?;
        if out.len() - start != len {
            return None;
        }
    }
    Some(out)
}

/// Appends `wire` (one sample) to `out` with its n-th pod's `pod_ref` set to `sample`'s n-th.
fn with_pod_refs(wire: &[u8], sample: &Sample, out: &mut Vec<u8>) -> Option<()> {
    let mut pods = sample.pods.iter();
    let mut copied = 0;
    let mut fields = Fields::new(wire);
    for field in fields.by_ref().filter(|field| field.tag == SAMPLE_PODS) {
        out.extend_from_slice(&wire[copied..field.start]);
        pod_with_ref(&wire[field.value.clone()], pods.next()?.pod_ref, out)?;
        copied = field.value.end;
    }
    if fields.broken || pods.next().is_some() {
        return None;
    }
    out.extend_from_slice(&wire[copied..]);
    Some(())
}

/// Appends one `Sample.pods` field to `out`: `pod` (a `PodSample`) with its `pod_ref`, which
/// must be its first field and come once (as prost writes it), set to `pod_ref` (left out when
/// 0, as prost does).
fn pod_with_ref(pod: &[u8], pod_ref: u32, out: &mut Vec<u8>) -> Option<()> {
    let mut fields = Fields::new(pod);
    let first = fields.next().filter(|field| field.tag == POD_REF)?;
    if fields.any(|field| field.tag == POD_REF) || fields.broken {
        return None;
    }
    let rest = &pod[first.value.end..];
    let ref_len = if pod_ref == 0 { 0 } else { 1 + encoded_len_varint(u64::from(pod_ref)) };
    encode_key(SAMPLE_PODS, WireType::LengthDelimited, out);
    encode_varint((ref_len + rest.len()) as u64, out);
    if pod_ref != 0 {
        encode_key(POD_REF, WireType::Varint, out);
        encode_varint(u64::from(pod_ref), out);
    }
    out.extend_from_slice(rest);
    Some(())
}

#[cfg(test)]
mod tests {
    use bakery_proto::v1::agent_message::Kind;
    use bakery_proto::v1::{
        AgentMessage, Batch, Memory, NetCounters, NetInterface, PodSample, Pressure, Replay, TcpConnections, replay,
    };
    use proptest::prelude::*;

    use super::*;
    use crate::store::StoredBatch;

    fn pod(pod_ref: u32, n: u64) -> PodSample {
        PodSample {
            pod_ref,
            network: (!n.is_multiple_of(3)).then(|| NetCounters {
                rx_bytes: n * 1500,
                tx_packets: n,
                ..Default::default()
            }),
            tcp: n.is_multiple_of(2).then(|| TcpConnections { established_inbound: n as u32, ..Default::default() }),
            cpu_usage_us: n * 1_000_003,
            memory_working_set_bytes: n << 20,
            process_count: (n % 5) as u32,
        }
    }

    fn sample(timestamp_ms: i64, pods: Vec<PodSample>) -> Sample {
        Sample {
            timestamp_ms,
            memory: Some(Memory { total_bytes: 8 << 30, available_bytes: 5 << 30, ..Default::default() }),
            pressure: vec![Pressure {
                resource: "cpu".into(),
                kind: "some".into(),
                avg10: 1.5,
                total_us: 7,
                ..Default::default()
            }],
            interfaces: vec![NetInterface {
                name: "eth0".into(),
                counters: Some(NetCounters::default()),
                ..Default::default()
            }],
            pods,
            ..Default::default()
        }
    }

    fn live(samples: Vec<Sample>) -> AgentMessage {
        AgentMessage { kind: Some(Kind::Batch(Batch { seq: 7, new_pods: Vec::new(), samples })) }
    }

    /// What the collector stores without the fast path: prost's encoding of the samples with
    /// their pod refs mapped by `map`.
    fn encoded(mut samples: Vec<Sample>, map: impl Fn(u32) -> u32) -> (Vec<Sample>, Vec<u8>) {
        samples.iter_mut().flat_map(|s| &mut s.pods).for_each(|pod| pod.pod_ref = map(pod.pod_ref));
        let bytes = StoredBatch { samples: samples.clone() }.encode_to_vec();
        (samples, bytes)
    }

    fn from_wire(message: &AgentMessage, samples: &[Sample]) -> Option<Vec<u8>> {
        let wire = sample_bytes(&Bytes::from(message.encode_to_vec()))?;
        stored_batch(samples, &wire)
    }

    #[test]
    fn an_agents_batch_is_stored_as_prost_encodes_it_with_the_collectors_pod_ids() {
        // Refs grow and shrink across varint sizes (1 byte <-> 2 and 3 bytes), and id 0, which
        // prost leaves out.
        let pods = vec![pod(1, 1), pod(2, 2), pod(130, 3), pod(7, 4)];
        let message = live(vec![sample(1_000, pods)]);
        let Some(Kind::Batch(batch)) = message.kind.clone() else { unreachable!() };
        let (mapped, expected) = encoded(batch.samples, |r| match r {
            1 => 300,
            2 => 70_000,
            130 => 5,
            7 => 0,
            other => other,
        });
        let stored = from_wire(&message, &mapped).expect("the agent's bytes are prost's encoding");
        assert_eq!(stored, expected);
        // The history and the commit queue keep these bytes: no spare capacity.
        assert_eq!(stored.capacity(), stored.len());
    }

    #[test]
    fn a_replayed_batch_of_several_samples_is_stored_from_its_wire_bytes() {
        let samples = vec![sample(1, vec![pod(1, 1)]), sample(2, vec![]), sample(3, vec![pod(1, 5), pod(2, 6)])];
        let message = AgentMessage {
            kind: Some(Kind::Replay(Replay {
                through_seq: 9,
                kind: Some(replay::Kind::Batch(Batch { seq: 4, new_pods: Vec::new(), samples: samples.clone() })),
            })),
        };
        let wire = sample_bytes(&Bytes::from(message.encode_to_vec())).expect("a replayed batch's samples");
        assert_eq!(wire.len(), 3);
        let (mapped, expected) = encoded(samples, |r| r + 1000);
        assert_eq!(stored_batch(&mapped, &wire), Some(expected));
    }

    #[test]
    fn a_message_without_a_batch_has_no_sample_bytes() {
        let gap = AgentMessage {
            kind: Some(Kind::Gap(bakery_proto::v1::Gap { first_seq: 1, last_seq: 2, reason: "x".into() })),
        };
        assert_eq!(sample_bytes(&Bytes::from(gap.encode_to_vec())), None);
        let replayed_gap = AgentMessage {
            kind: Some(Kind::Replay(Replay { through_seq: 3, kind: Some(replay::Kind::Gap(Default::default())) })),
        };
        assert_eq!(sample_bytes(&Bytes::from(replayed_gap.encode_to_vec())), None);
        assert_eq!(sample_bytes(&Bytes::from_static(&[0x12, 0x05, 0x01])), None, "a length past the end");
    }

    /// Bytes that decode to the same samples but are not prost's encoding of them are never
    /// stored as they came: the collector encodes the decoded samples instead.
    #[test]
    fn bytes_that_are_not_prosts_encoding_are_not_stored() {
        let message = live(vec![sample(1, vec![pod(1, 1), pod(2, 2)])]);
        let decoded = |bytes: &[u8]| match AgentMessage::decode(bytes).unwrap().kind {
            Some(Kind::Batch(batch)) => batch.samples,
            _ => unreachable!(),
        };
        let stored = |bytes: Vec<u8>| {
            let (mapped, _) = encoded(decoded(&bytes), |r| r + 10);
            sample_bytes(&Bytes::from(bytes)).and_then(|wire| stored_batch(&mapped, &wire))
        };
        // Re-frames the first sample of `message` with `extra` appended inside it.
        let sample_with = |extra: &[u8]| {
            let Some(Kind::Batch(batch)) = message.kind.clone() else { unreachable!() };
            let mut inner = batch.samples[0].encode_to_vec();
            inner.extend_from_slice(extra);
            let mut batch_bytes = Vec::new();
            encode_key(BATCH_SAMPLES, WireType::LengthDelimited, &mut batch_bytes);
            encode_varint(inner.len() as u64, &mut batch_bytes);
            batch_bytes.extend_from_slice(&inner);
            let mut bytes = Vec::new();
            encode_key(AGENT_BATCH, WireType::LengthDelimited, &mut bytes);
            encode_varint(batch_bytes.len() as u64, &mut bytes);
            bytes.extend_from_slice(&batch_bytes);
            bytes
        };
        assert!(stored(sample_with(&[])).is_some(), "the re-framing alone is prost's encoding");
        // An unknown field (tag 99, varint 1).
        assert_eq!(stored(sample_with(&[0x98, 0x06, 0x01])), None);
        // timestamp_ms again, with an overlong varint: decodes to 1, as before.
        assert_eq!(decoded(&sample_with(&[0x08, 0x81, 0x80, 0x00]))[0].timestamp_ms, 1);
        assert_eq!(stored(sample_with(&[0x08, 0x81, 0x80, 0x00])), None);
        // A pod whose pod_ref comes twice (decoding keeps the last).
        let twice = [0x62, 0x04, 0x08, 0x01, 0x08, 0x02];
        assert_eq!(decoded(&sample_with(&twice))[0].pods[2].pod_ref, 2);
        assert_eq!(stored(sample_with(&twice)), None);
        // A pod whose pod_ref is not its first field (prost writes it first).
        let late = [0x62, 0x04, 0x20, 0x05, 0x08, 0x01];
        assert_eq!(decoded(&sample_with(&late))[0].pods[2].pod_ref, 1);
        assert_eq!(stored(sample_with(&late)), None);
        // Two batch fields, which decoding merges into one batch.
        let mut merged = message.encode_to_vec();
        merged.extend_from_slice(&message.encode_to_vec());
        assert_eq!(decoded(&merged).len(), 2);
        assert_eq!(stored(merged), None);
    }

    #[test]
    fn a_count_of_samples_or_pods_other_than_the_decoded_ones_is_refused() {
        let message = live(vec![sample(1, vec![pod(1, 1)])]);
        let wire = sample_bytes(&Bytes::from(message.encode_to_vec())).unwrap();
        assert_eq!(stored_batch(&[], &wire), None);
        assert_eq!(stored_batch(&[sample(1, vec![pod(1, 1), pod(2, 2)])], &wire), None);
        assert_eq!(stored_batch(&[sample(1, vec![])], &wire), None);
    }

    fn any_pod() -> impl Strategy<Value = PodSample> {
        (1u32..200_000, 0u64..1 << 40).prop_map(|(pod_ref, n)| pod(pod_ref, n))
    }

    fn any_sample() -> impl Strategy<Value = Sample> {
        (any::<i64>(), prop::collection::vec(any_pod(), 0..40), "[a-z0-9]{0,12}").prop_map(|(t, pods, name)| {
            let mut sample = sample(t, pods);
            sample.interfaces[0].name = name;
            sample
        })
    }

    proptest! {
        /// For any samples an agent's prost encodes and any mapping of pod refs to ids, the
        /// stored bytes are prost's encoding.
        #[test]
        fn stored_bytes_are_prosts_encoding_for_any_samples_and_ids(
            samples in prop::collection::vec(any_sample(), 1..4),
            offset in 0u32..1 << 31,
        ) {
            let message = live(samples.clone());
            let (mapped, expected) = encoded(samples, |r| r.wrapping_mul(2_654_435_761).wrapping_add(offset) % (1 << 30));
            prop_assert_eq!(from_wire(&message, &mapped), Some(expected));
        }
    }
}
