//! The on-disk record format of the spool: framing, CRC, and each record kind's encoding.
//!
//! A record is `[u32 LE body length][u32 LE CRC-32 of body][body]`; the body
//! starts with a kind byte: a batch (its sequence number and the encoded
//! `bakery.v1.Batch`), an overflow or unreadable-range gap, a checkpoint
//! (next sequence number and highest acknowledged one) or a renumbering.
//! Decoding stops at the first torn or corrupt record and says why, so that
//! the replay of a segment ends there.

use bakery_proto::v1 as pb;
use prost::Message;

use crate::spool::GapCause;

/// Bytes of the length and CRC in front of every record body.
pub(super) const RECORD_HEADER_BYTES: usize = 8;

/// A record body larger than this is corruption, not data (the collector
/// refuses messages above 4 MiB anyway).
const MAX_RECORD_BODY_BYTES: u32 = 64 * 1024 * 1024;

const KIND_BATCH: u8 = 1;
const KIND_GAP: u8 = 2;
const KIND_CHECKPOINT: u8 = 3;
const KIND_RENUMBER: u8 = 4;

const CAUSE_OVERFLOW: u8 = 1;
const CAUSE_UNREADABLE: u8 = 2;

/// A batch body is `[kind][u64 seq][payload]`.
pub(super) const BATCH_PAYLOAD_OFFSET: u64 = 1 + 8;

/// One record of the disk log, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Record<'a> {
    Batch { seq: u64, payload: &'a [u8] },
    Gap { first: u64, last: u64, cause: GapCause },
    Checkpoint { next_seq: u64, acked: u64 },
    Renumber { from: u64, to: u64 },
}

/// One record of the disk log, as replayed (a batch's payload stays on disk;
/// only its pod identities are kept).
#[derive(Debug, Clone, PartialEq)]
pub(super) enum OwnedRecord {
    Batch { seq: u64, payload_len: u32, pods: Vec<pb::PodIdentity> },
    Gap { first: u64, last: u64, cause: GapCause },
    Checkpoint { next_seq: u64, acked: u64 },
    Renumber { from: u64, to: u64 },
}

/// Only the pod identities of an encoded `bakery.v1.Batch` (tag 2): prost
/// skips the samples without building them.
#[derive(Clone, PartialEq, prost::Message)]
struct BatchPods {
    #[prost(message, repeated, tag = "2")]
    new_pods: Vec<pb::PodIdentity>,
}

/// `[u32 LE len][u32 LE crc32(body)][body]`.
pub(super) fn encode_record(record: &Record<'_>) -> Vec<u8> {
    let mut body = Vec::with_capacity(32);
    match record {
        Record::Batch { seq, payload } => {
            body.push(KIND_BATCH);
            body.extend_from_slice(&seq.to_le_bytes());
            body.extend_from_slice(payload);
        }
        Record::Gap { first, last, cause } => {
            body.push(KIND_GAP);
            body.extend_from_slice(&first.to_le_bytes());
            body.extend_from_slice(&last.to_le_bytes());
            let (code, limit) = match cause {
                GapCause::Overflow { limit_bytes } => (CAUSE_OVERFLOW, *limit_bytes),
                GapCause::Unreadable => (CAUSE_UNREADABLE, 0),
            };
            body.push(code);
            body.extend_from_slice(&limit.to_le_bytes());
        }
        Record::Checkpoint { next_seq, acked } => {
            body.push(KIND_CHECKPOINT);
            body.extend_from_slice(&next_seq.to_le_bytes());
            body.extend_from_slice(&acked.to_le_bytes());
        }
        Record::Renumber { from, to } => {
            body.push(KIND_RENUMBER);
            body.extend_from_slice(&from.to_le_bytes());
            body.extend_from_slice(&to.to_le_bytes());
        }
    }
    let mut framed = Vec::with_capacity(RECORD_HEADER_BYTES + body.len());
    framed.extend_from_slice(&(body.len() as u32).to_le_bytes());
    framed.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    framed.extend_from_slice(&body);
    framed
}

/// The records of one segment's bytes, each with the offset of its body,
/// and why decoding stopped early (a torn or corrupt record), if it did.
pub(super) fn decode_records(bytes: &[u8]) -> (Vec<(u64, OwnedRecord)>, Option<String>) {
    let mut records = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let rest = &bytes[at..];
        if rest.len() < RECORD_HEADER_BYTES {
            return (records, Some(format!("torn record header at byte {at} ({} bytes left)", rest.len())));
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
        let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        if len > MAX_RECORD_BODY_BYTES {
            return (records, Some(format!("impossible record length {len} at byte {at}")));
        }
        let Some(body) = rest.get(RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + len as usize) else {
            return (
                records,
                Some(format!("torn record at byte {at}: {len} bytes announced, {} present", rest.len() - 8)),
            );
        };
        if crc32fast::hash(body) != crc {
            return (records, Some(format!("checksum mismatch in the record at byte {at}")));
        }
        let body_offset = (at + RECORD_HEADER_BYTES) as u64;
        match decode_body(body) {
            Some(record) => records.push((body_offset, record)),
            None => return (records, Some(format!("unknown record at byte {at}"))),
        }
        at += RECORD_HEADER_BYTES + len as usize;
    }
    (records, None)
}

fn decode_body(body: &[u8]) -> Option<OwnedRecord> {
    let u64_at = |offset: usize| -> Option<u64> {
        body.get(offset..offset + 8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes)
    };
    match *body.first()? {
        KIND_BATCH => {
            let seq = u64_at(1)?;
            let payload = body.get(BATCH_PAYLOAD_OFFSET as usize..)?;
            let pods = BatchPods::decode(payload).ok()?.new_pods;
            Some(OwnedRecord::Batch { seq, payload_len: u32::try_from(payload.len()).ok()?, pods })
        }
        KIND_GAP => {
            let (first, last) = (u64_at(1)?, u64_at(9)?);
            let cause = match *body.get(17)? {
                CAUSE_OVERFLOW => GapCause::Overflow { limit_bytes: u64_at(18)? },
                CAUSE_UNREADABLE => GapCause::Unreadable,
                _ => return None,
            };
            (first <= last).then_some(OwnedRecord::Gap { first, last, cause })
        }
        KIND_CHECKPOINT => Some(OwnedRecord::Checkpoint { next_seq: u64_at(1)?, acked: u64_at(9)? }),
        KIND_RENUMBER => {
            let (from, to) = (u64_at(1)?, u64_at(9)?);
            (to >= from).then_some(OwnedRecord::Renumber { from, to })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::tests::batch;

    #[test]
    fn every_record_kind_round_trips_and_every_truncation_is_detected() {
        let payload = batch(5, 30).encode_to_vec();
        let records = [
            Record::Batch { seq: 5, payload: &payload },
            Record::Gap { first: 1, last: 4, cause: GapCause::Overflow { limit_bytes: 4096 } },
            Record::Gap { first: 6, last: 6, cause: GapCause::Unreadable },
            Record::Checkpoint { next_seq: 7, acked: 3 },
            Record::Renumber { from: 2, to: 9 },
        ];
        let log: Vec<u8> = records.iter().flat_map(encode_record).collect();
        let (decoded, problem) = decode_records(&log);
        assert_eq!(problem, None);
        let kinds: Vec<OwnedRecord> = decoded.into_iter().map(|(_, r)| r).collect();
        assert_eq!(
            kinds,
            [
                OwnedRecord::Batch { seq: 5, payload_len: payload.len() as u32, pods: batch(5, 30).new_pods },
                OwnedRecord::Gap { first: 1, last: 4, cause: GapCause::Overflow { limit_bytes: 4096 } },
                OwnedRecord::Gap { first: 6, last: 6, cause: GapCause::Unreadable },
                OwnedRecord::Checkpoint { next_seq: 7, acked: 3 },
                OwnedRecord::Renumber { from: 2, to: 9 },
            ]
        );
        let ends: Vec<usize> = records
            .iter()
            .scan(0, |end, r| {
                *end += encode_record(r).len();
                Some(*end)
            })
            .collect();
        for cut in 0..log.len() {
            let (prefix, problem) = decode_records(&log[..cut]);
            let whole = ends.iter().filter(|end| **end <= cut).count();
            assert_eq!(prefix.len(), whole, "cut at {cut}");
            assert_eq!(problem.is_some(), !ends.contains(&cut) && cut > 0, "cut at {cut}: {problem:?}");
        }
    }
}
