//! The idempotent producer: producer id, epoch and sequence numbers, and what the
//! broker's sequence errors mean.
//!
//! With idempotence on (the default, see [`ProducerConfig::enable_idempotence`]) every
//! batch carries the producer's id and epoch and the sequence number of its first record.
//! A partition's broker keeps, per producer id, the epoch and the sequence ranges of the
//! last five batches (`sluice_storage::producer_state`, Kafka's `ProducerStateManager`):
//! a batch that repeats one of them is a retry and is answered with its original offsets
//! without being written again; a batch that does not continue the last sequence gets
//! OUT_OF_ORDER_SEQUENCE_NUMBER; an epoch older than the partition has seen gets
//! INVALID_PRODUCER_EPOCH. So a batch retried with the sequence it was first sent with is
//! written exactly once, and never ahead of a batch before it.
//!
//! The client's side, as the Java client (`TransactionManager`, `RecordAccumulator`)
//! does it:
//! - **Producer id.** Before its first batch goes out, the producer asks any broker for
//!   an id with InitProducerId (no transactional id). Retriable failures are retried with
//!   backoff while batches wait; any other failure is fatal (see below).
//! - **Sequences.** A batch gets its sequence when it is first drained for sending: the
//!   partition's next sequence, which then grows by the batch's record count (wrapping
//!   at `i32::MAX` as Kafka does). A retried batch keeps its id, epoch and sequence: its
//!   bytes are sent again unchanged. At most 5 batches per partition are in flight
//!   (`max_in_flight`, Kafka's limit, and the number of batches a broker remembers), all
//!   with consecutive sequences.
//! - **Retries in order.** When a batch fails with a retriable error, the batches sent
//!   after it fail too, with OUT_OF_ORDER_SEQUENCE_NUMBER (the broker expected the failed
//!   one's sequence first). That error is retried like any retriable one when the batch
//!   is not the partition's first unresolved batch (some batch before it is still in
//!   flight or waiting to be retried): nothing more is sent for the partition until
//!   every batch in flight is back, and then the failed batches go out again, in
//!   sequence order.
//! - **Broken sequences.** OUT_OF_ORDER_SEQUENCE_NUMBER or UNKNOWN_PRODUCER_ID for the
//!   partition's *first* unresolved batch means the broker's state and the producer's
//!   disagree for good: the batch before it was acknowledged but the broker lost it, or
//!   it failed for good (delivery timeout, a non-retriable error) and was not written,
//!   or the broker forgot the producer. Because a broker accepts only consecutive
//!   sequences, that batch and every later one of the partition were not written. The
//!   producer then does what the Java idempotent producer does (KIP-360): once nothing of
//!   the partition is in flight, it bumps its epoch locally (`epoch + 1`, the same
//!   producer id; a new InitProducerId only when the epoch would pass `i16::MAX`) and
//!   renumbers the partition's queued batches from sequence 0 under the new epoch. A
//!   broker accepts a newer epoch starting at 0. Other partitions keep their current
//!   epoch for the batches they have already numbered, and move to the new epoch at
//!   sequence 0 once none of those is left, so no partition ever sees an older epoch
//!   after a newer one. (Sluice's broker accepts a producer id it has no state for at any
//!   sequence, and never answers UNKNOWN_PRODUCER_ID; Kafka brokers before 2.5 do.)
//!   A batch that failed for good does not by itself renumber anything: whether it was
//!   written is unknown, and the next batch's answer tells (accepted: it was;
//!   OUT_OF_ORDER_SEQUENCE_NUMBER as first unresolved: it was not).
//! - **Fenced.** INVALID_PRODUCER_EPOCH or PRODUCER_FENCED means another incarnation of
//!   the producer id wrote with a newer epoch. That is fatal, as in Kafka: every record
//!   not yet delivered fails with [`Error::ProducerFenced`], and so does every later
//!   `send`. A record already acknowledged stays acknowledged.
//! - DUPLICATE_SEQUENCE_NUMBER (from old Kafka brokers) acknowledges the batch without
//!   offsets (-1), as the Java client does.
//!
//! This module holds the value types, the byte patch for renumbered batches and the
//! InitProducerId call; the per-partition state lives in the accumulator's queues.
//!
//! [`ProducerConfig::enable_idempotence`]: super::ProducerConfig::enable_idempotence

use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, ProducerId as WireProducerId};
use sluice_storage::batch::{compute_crc, BatchHeader};

use crate::client::Client;
use crate::error::{Error, Result};

/// Byte positions in a RecordBatch v2 header (`sluice_storage::batch::header`).
const CRC_AT: usize = 17;
const PRODUCER_ID_AT: usize = 43;
const PRODUCER_EPOCH_AT: usize = 51;
const BASE_SEQUENCE_AT: usize = 53;

/// An idempotent producer's identity: the id a broker handed out and the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProducerId {
    pub id: i64,
    pub epoch: i16,
}

impl ProducerId {
    /// The same id with the next epoch; `None` when the epoch is exhausted (a new id
    /// is needed then).
    pub fn bumped(self) -> Option<ProducerId> {
        Some(ProducerId {
            id: self.id,
            epoch: self.epoch.checked_add(1)?,
        })
    }
}

/// Where a batch sits in its partition's sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sequence {
    pub producer: ProducerId,
    /// Sequence number of the batch's first record.
    pub base: i32,
}

/// The sequence after `count` records from `sequence`, wrapping from `i32::MAX` to 0
/// (Kafka's `DefaultRecordBatch.incrementSequence`).
pub fn increment_sequence(sequence: i32, count: usize) -> i32 {
    let count = i64::try_from(count).unwrap_or(i64::MAX) % (i64::from(i32::MAX) + 1);
    let next = i64::from(sequence) + count;
    if next > i64::from(i32::MAX) {
        (next - i64::from(i32::MAX) - 1) as i32
    } else {
        next as i32
    }
}

/// The broker errors that mean something particular for an idempotent batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SequenceAnswer {
    /// OUT_OF_ORDER_SEQUENCE_NUMBER or UNKNOWN_PRODUCER_ID: retriable, and maybe a
    /// broken sequence (see the module docs).
    OutOfSequence,
    /// INVALID_PRODUCER_EPOCH or PRODUCER_FENCED: fatal.
    Fenced,
    /// DUPLICATE_SEQUENCE_NUMBER: already written, offsets unknown.
    Duplicate,
}

pub(crate) fn sequence_answer(error: ResponseError) -> Option<SequenceAnswer> {
    match error {
        ResponseError::OutOfOrderSequenceNumber | ResponseError::UnknownProducerId => {
            Some(SequenceAnswer::OutOfSequence)
        }
        ResponseError::InvalidProducerEpoch | ResponseError::ProducerFenced => {
            Some(SequenceAnswer::Fenced)
        }
        ResponseError::DuplicateSequenceNumber => Some(SequenceAnswer::Duplicate),
        _ => None,
    }
}

/// `batch` (a whole RecordBatch v2) with producer id, epoch and base sequence replaced
/// and the CRC recomputed. For batches renumbered after a broken sequence; a batch is
/// otherwise built with its sequence in place.
pub(crate) fn renumber(batch: &Bytes, sequence: Sequence) -> Result<Bytes> {
    BatchHeader::new(batch)?;
    let mut bytes = BytesMut::from(&batch[..]);
    bytes[PRODUCER_ID_AT..PRODUCER_ID_AT + 8].copy_from_slice(&sequence.producer.id.to_be_bytes());
    bytes[PRODUCER_EPOCH_AT..PRODUCER_EPOCH_AT + 2]
        .copy_from_slice(&sequence.producer.epoch.to_be_bytes());
    bytes[BASE_SEQUENCE_AT..BASE_SEQUENCE_AT + 4].copy_from_slice(&sequence.base.to_be_bytes());
    let crc = compute_crc(&bytes);
    bytes[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(bytes.freeze())
}

/// Asks some broker for a producer id (InitProducerId without a transactional id).
pub(crate) async fn init_producer_id(client: &Client) -> Result<ProducerId> {
    let connection = client.any_broker().await?;
    let version = connection.version::<InitProducerIdRequest>()?;
    let request = InitProducerIdRequest::default()
        .with_transactional_id(None)
        // What the Java client sends for an idempotent producer; brokers ignore it.
        .with_transaction_timeout_ms(i32::MAX)
        .with_producer_id(WireProducerId(-1))
        .with_producer_epoch(-1);
    let response = connection.send(&request, version).await?;
    Error::check(
        response.error_code,
        || format!("InitProducerId from {}", connection.addr()),
        None,
    )?;
    let (id, epoch) = (response.producer_id.0, response.producer_epoch);
    if id < 0 || epoch < 0 {
        return Err(Error::protocol(
            "InitProducerId",
            connection.addr(),
            format!("answer has producer id {id} and epoch {epoch}"),
        ));
    }
    Ok(ProducerId { id, epoch })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_storage::batch::{validate_stored_batch, BatchBuilder, Compression, Records};

    #[test]
    fn sequences_wrap_like_kafka() {
        assert_eq!(increment_sequence(0, 5), 5);
        assert_eq!(increment_sequence(i32::MAX - 2, 2), i32::MAX);
        assert_eq!(increment_sequence(i32::MAX - 2, 3), 0);
        assert_eq!(increment_sequence(i32::MAX, 1), 0);
        assert_eq!(increment_sequence(i32::MAX, 4), 3);
    }

    #[test]
    fn epochs_bump_until_exhausted() {
        let p = ProducerId { id: 7, epoch: 3 };
        assert_eq!(p.bumped(), Some(ProducerId { id: 7, epoch: 4 }));
        assert_eq!(
            ProducerId {
                id: 7,
                epoch: i16::MAX
            }
            .bumped(),
            None
        );
    }

    #[test]
    fn renumbered_batches_keep_their_records_and_a_valid_crc() {
        for compression in [Compression::None, Compression::Zstd] {
            let mut builder = BatchBuilder::new(compression).producer(5, 0, 40);
            for i in 0..3 {
                builder.push(i, Some(b"k"), Some(format!("v{i}").as_bytes()), &[]);
            }
            let original = builder.build().unwrap();
            let sequence = Sequence {
                producer: ProducerId { id: 5, epoch: 1 },
                base: 0,
            };
            let renumbered = renumber(&original, sequence).unwrap();
            let header = validate_stored_batch(&renumbered).unwrap();
            assert_eq!(
                (
                    header.producer_id(),
                    header.producer_epoch(),
                    header.base_sequence(),
                    header.last_sequence()
                ),
                (5, 1, 0, 2)
            );
            let values: Vec<Bytes> = Records::decode(renumbered)
                .unwrap()
                .map(|r| r.unwrap().value.unwrap())
                .collect();
            assert_eq!(values, [&b"v0"[..], b"v1", b"v2"]);
        }
        assert!(renumber(
            &Bytes::from_static(b"short"),
            Sequence {
                producer: ProducerId { id: 1, epoch: 0 },
                base: 0
            }
        )
        .is_err());
    }
}
