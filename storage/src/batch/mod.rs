//! Kafka RecordBatch v2 (magic 2), byte for byte.
//!
//! - [`header`]: the fixed 61-byte header, its validation (framing, magic, CRC-32C) and
//!   the in-place patches a broker may apply.
//! - [`records`]: decoding the records inside a batch for every codec Kafka defines.
//! - [`builder`]: encoding records into a new batch, with any codec.
//! - [`compression`]: the codec enum and the codecs' (de)compression.
//! - [`convert`]: rewriting a produced batch in the topic's codec (`compression.type`).
//! - [`validate`]: the produce path's check of every record of a batch (all codecs,
//!   decompressing into a reused per-thread buffer, bounded).
//! - [`varint`]: zig-zag varints as the record format uses them.
//!
//! A batch is always handled as the exact bytes a producer sent; nothing here owns or
//! copies record data except the builder, decompression and a conversion to the topic's
//! codec, which produce new bytes.

pub mod builder;
pub mod compression;
pub mod convert;
pub mod header;
pub mod records;
pub mod validate;
pub mod varint;

pub use builder::BatchBuilder;
pub use compression::Compression;
pub use convert::{recompress, TargetCompression};
pub use header::{
    check_framing, compute_crc, patch_base_offset, patch_create_time, patch_leader_epoch,
    patch_log_append_time, validate_produced_batch, validate_produced_batch_with,
    validate_stored_batch, BatchHeader, ProducedBatch, TimestampType, HEADER_SIZE, LOG_OVERHEAD,
    MAGIC_V2, NO_PARTITION_LEADER_EPOCH, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE,
};
pub use records::{Header, Record, Records};
pub use validate::{RecordChecks, RecordRejection, Rejection, TimestampBounds, NO_TIMESTAMP};

/// Iterates over the batches laid end to end in `bytes` (a fetch response's records, or a
/// slice of a segment), yielding each batch's bytes after checking its framing.
///
/// Stops at the end of `bytes`; a trailing partial batch (which Kafka allows in fetch
/// responses) is reported as `Err(BatchError::Truncated)` once and ends the iteration.
pub fn batches(bytes: &[u8]) -> BatchIter<'_> {
    BatchIter { rest: bytes }
}

/// Iterator returned by [`batches`].
pub struct BatchIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for BatchIter<'a> {
    type Item = Result<&'a [u8], crate::BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        match check_framing(self.rest, usize::MAX) {
            Ok(size) => {
                let (batch, rest) = self.rest.split_at(size);
                self.rest = rest;
                Some(Ok(batch))
            }
            Err(e) => {
                self.rest = &[];
                Some(Err(e))
            }
        }
    }
}
