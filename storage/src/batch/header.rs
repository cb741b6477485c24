//! The fixed 61-byte header of a Kafka RecordBatch v2, read and patched in place.
//!
//! Layout (all integers big-endian, offsets in bytes from the start of the batch):
//!
//! ```text
//!  0  base_offset             i64   patched by the log on append
//!  8  batch_length            i32   bytes that follow this field (total = 12 + batch_length)
//! 12  partition_leader_epoch  i32   patched by the log on append
//! 16  magic                   i8    always 2
//! 17  crc                     u32   CRC-32C (Castagnoli) of bytes 21..end
//! 21  attributes              i16   bits 0-2 codec, 3 timestamp type, 4 transactional,
//!                                   5 control, 6 has delete horizon
//! 23  last_offset_delta       i32
//! 27  base_timestamp          i64
//! 35  max_timestamp           i64   patched for LogAppendTime
//! 43  producer_id             i64
//! 51  producer_epoch          i16
//! 53  base_sequence           i32
//! 57  records_count           i32
//! 61  records ...
//! ```
//!
//! The CRC starts at `attributes`, so the three fields a broker may rewrite (base offset,
//! leader epoch, max timestamp... see below) need no CRC recomputation. The max timestamp
//! *is* covered by the CRC: Kafka only rewrites it together with the timestamp-type bit
//! for LogAppendTime, where clients ignore the record timestamps; [`patch_log_append_time`]
//! recomputes the CRC in that one case, which is what Kafka's broker does as well.

use super::validate::RecordChecks;
use super::Compression;
use crate::error::BatchError;

/// Size of the fixed header, up to and including the record count.
pub const HEADER_SIZE: usize = 61;
/// Bytes before the length field's payload: base offset (8) + length (4).
pub const LOG_OVERHEAD: usize = 12;
/// The only batch format Sluice stores.
pub const MAGIC_V2: i8 = 2;
/// No producer id: the batch is not idempotent.
pub const NO_PRODUCER_ID: i64 = -1;
/// No producer epoch.
pub const NO_PRODUCER_EPOCH: i16 = -1;
/// No sequence number.
pub const NO_SEQUENCE: i32 = -1;
/// No partition leader epoch.
pub const NO_PARTITION_LEADER_EPOCH: i32 = -1;

pub(crate) const BASE_OFFSET_AT: usize = 0;
pub(crate) const LENGTH_AT: usize = 8;
pub(crate) const LEADER_EPOCH_AT: usize = 12;
pub(crate) const MAGIC_AT: usize = 16;
pub(crate) const CRC_AT: usize = 17;
pub(crate) const ATTRIBUTES_AT: usize = 21;
pub(crate) const LAST_OFFSET_DELTA_AT: usize = 23;
pub(crate) const BASE_TIMESTAMP_AT: usize = 27;
pub(crate) const MAX_TIMESTAMP_AT: usize = 35;
pub(crate) const PRODUCER_ID_AT: usize = 43;
pub(crate) const PRODUCER_EPOCH_AT: usize = 51;
pub(crate) const BASE_SEQUENCE_AT: usize = 53;
pub(crate) const RECORDS_COUNT_AT: usize = 57;

pub(crate) const TIMESTAMP_TYPE_BIT: i16 = 0x08;
pub(crate) const TRANSACTIONAL_BIT: i16 = 0x10;
const CONTROL_BIT: i16 = 0x20;
pub(crate) const DELETE_HORIZON_BIT: i16 = 0x40;

/// How a batch's timestamps were assigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    /// Set by the producer.
    CreateTime,
    /// Set by the broker when the batch was appended.
    LogAppendTime,
}

/// A zero-copy view over the header of one record batch.
///
/// Constructing the view checks only that the 61 header bytes exist;
/// [`validate_produced_batch`] checks everything else. Accessors read the bytes on every
/// call, so the view costs nothing to build.
#[derive(Clone, Copy)]
pub struct BatchHeader<'a> {
    bytes: &'a [u8],
}

impl<'a> BatchHeader<'a> {
    /// Views the header at the start of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Result<Self, BatchError> {
        if bytes.len() < HEADER_SIZE {
            return Err(BatchError::Truncated {
                needed: HEADER_SIZE,
                available: bytes.len(),
            });
        }
        Ok(BatchHeader { bytes })
    }

    pub fn base_offset(&self) -> i64 {
        read_i64(self.bytes, BASE_OFFSET_AT)
    }
    /// The length field: bytes after the first 12.
    pub fn batch_length(&self) -> i32 {
        read_i32(self.bytes, LENGTH_AT)
    }
    /// Total size of the batch in bytes, as its length field says (not yet validated).
    pub fn total_size(&self) -> i64 {
        LOG_OVERHEAD as i64 + self.batch_length() as i64
    }
    pub fn partition_leader_epoch(&self) -> i32 {
        read_i32(self.bytes, LEADER_EPOCH_AT)
    }
    pub fn magic(&self) -> i8 {
        self.bytes[MAGIC_AT] as i8
    }
    pub fn crc(&self) -> u32 {
        read_i32(self.bytes, CRC_AT) as u32
    }
    pub fn attributes(&self) -> i16 {
        read_i16(self.bytes, ATTRIBUTES_AT)
    }
    /// The compression codec named by the attributes.
    pub fn compression(&self) -> Result<Compression, BatchError> {
        Compression::from_id((self.attributes() & 0x07) as u8)
    }
    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes() & TIMESTAMP_TYPE_BIT != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }
    pub fn is_transactional(&self) -> bool {
        self.attributes() & TRANSACTIONAL_BIT != 0
    }
    pub fn is_control(&self) -> bool {
        self.attributes() & CONTROL_BIT != 0
    }
    pub fn has_delete_horizon(&self) -> bool {
        self.attributes() & DELETE_HORIZON_BIT != 0
    }
    pub fn last_offset_delta(&self) -> i32 {
        read_i32(self.bytes, LAST_OFFSET_DELTA_AT)
    }
    /// Offset of the last record: base offset + last offset delta.
    pub fn last_offset(&self) -> i64 {
        self.base_offset()
            .wrapping_add(self.last_offset_delta() as i64)
    }
    /// Offset after this batch.
    pub fn next_offset(&self) -> i64 {
        self.last_offset().wrapping_add(1)
    }
    pub fn base_timestamp(&self) -> i64 {
        read_i64(self.bytes, BASE_TIMESTAMP_AT)
    }
    pub fn max_timestamp(&self) -> i64 {
        read_i64(self.bytes, MAX_TIMESTAMP_AT)
    }
    pub fn producer_id(&self) -> i64 {
        read_i64(self.bytes, PRODUCER_ID_AT)
    }
    pub fn producer_epoch(&self) -> i16 {
        read_i16(self.bytes, PRODUCER_EPOCH_AT)
    }
    pub fn base_sequence(&self) -> i32 {
        read_i32(self.bytes, BASE_SEQUENCE_AT)
    }
    /// Sequence number of the last record, wrapping at `i32::MAX` as Kafka does.
    pub fn last_sequence(&self) -> i32 {
        let base = self.base_sequence();
        if base == NO_SEQUENCE {
            return NO_SEQUENCE;
        }
        let last = base as i64 + self.last_offset_delta() as i64;
        if last > i32::MAX as i64 {
            (last - i32::MAX as i64 - 1) as i32
        } else {
            last as i32
        }
    }
    pub fn records_count(&self) -> i32 {
        read_i32(self.bytes, RECORDS_COUNT_AT)
    }
}

impl std::fmt::Debug for BatchHeader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchHeader")
            .field("base_offset", &self.base_offset())
            .field("batch_length", &self.batch_length())
            .field("magic", &self.magic())
            .field("attributes", &self.attributes())
            .field("last_offset_delta", &self.last_offset_delta())
            .field("max_timestamp", &self.max_timestamp())
            .field("producer_id", &self.producer_id())
            .field("base_sequence", &self.base_sequence())
            .field("records_count", &self.records_count())
            .finish()
    }
}

/// The CRC-32C a batch's header should carry: Castagnoli over attributes..end.
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(batch.get(ATTRIBUTES_AT..).unwrap_or(&[]))
}

/// Checks the framing of the batch at the start of `bytes` and returns its total size.
///
/// Checks: 61 header bytes present, length field within `[49, max_size - 12]`, all the
/// bytes it promises present, magic 2. Does not check the CRC ([`validate_stored_batch`]
/// does).
pub fn check_framing(bytes: &[u8], max_size: usize) -> Result<usize, BatchError> {
    let header = BatchHeader::new(bytes)?;
    let size = header.total_size();
    // Not `max_size as i64`: `usize::MAX` (no limit, as `batches()` passes) would become -1.
    let max_size = i64::try_from(max_size).unwrap_or(i64::MAX);
    if size < HEADER_SIZE as i64 || size > max_size {
        return Err(BatchError::InvalidLength {
            length: header.batch_length() as i64,
        });
    }
    let size = size as usize;
    if bytes.len() < size {
        return Err(BatchError::Truncated {
            needed: size,
            available: bytes.len(),
        });
    }
    if header.magic() != MAGIC_V2 {
        return Err(BatchError::UnsupportedMagic {
            magic: header.magic(),
        });
    }
    Ok(size)
}

/// Fully validates one stored batch (exactly `batch.len()` bytes): framing, magic and CRC.
///
/// This is the check applied to every batch read from disk.
pub fn validate_stored_batch(batch: &[u8]) -> Result<BatchHeader<'_>, BatchError> {
    let size = check_framing(batch, batch.len())?;
    if size != batch.len() {
        return Err(BatchError::InvalidLength {
            length: BatchHeader::new(batch)?.batch_length() as i64,
        });
    }
    let header = BatchHeader::new(batch)?;
    let computed = compute_crc(batch);
    if computed != header.crc() {
        return Err(BatchError::CrcMismatch {
            stored: header.crc(),
            computed,
        });
    }
    Ok(header)
}

/// Validates a batch as it arrives from a producer (exactly `batch.len()` bytes), with
/// [`RecordChecks::default`]; see [`validate_produced_batch_with`].
pub fn validate_produced_batch(batch: &[u8]) -> Result<BatchHeader<'_>, BatchError> {
    validate_produced_batch_with(batch, &RecordChecks::default()).map(|checked| checked.header)
}

/// A produced batch that passed [`validate_produced_batch_with`].
#[derive(Debug, Clone, Copy)]
pub struct ProducedBatch<'a> {
    pub header: BatchHeader<'a>,
    /// The largest record timestamp, which is what the batch's max timestamp must say.
    pub max_timestamp: i64,
}

/// Validates a batch as it arrives from a producer (exactly `batch.len()` bytes).
///
/// On top of [`validate_stored_batch`]: the codec is known, the record count is positive
/// and agrees with the last offset delta, no control batch, a sequence for an idempotent
/// producer, and every record decodes and agrees with the header
/// ([`super::validate::check_records`]: lengths, varints, offset deltas, timestamps,
/// headers, the count; compressed records are decompressed for the check, within
/// `checks.max_decompressed_bytes`).
pub fn validate_produced_batch_with<'a>(
    batch: &'a [u8],
    checks: &RecordChecks,
) -> Result<ProducedBatch<'a>, BatchError> {
    let header = validate_stored_batch(batch)?;
    header.compression()?;
    let count = header.records_count();
    if count <= 0 {
        return Err(BatchError::CountMismatch {
            reason: format!("record count {count} must be positive"),
        });
    }
    if header.last_offset_delta() != count - 1 {
        return Err(BatchError::CountMismatch {
            reason: format!(
                "last offset delta {} does not match record count {count}",
                header.last_offset_delta()
            ),
        });
    }
    if header.is_control() {
        // Control batches (transaction markers) are written by the broker, never by clients.
        return Err(BatchError::InvalidRecord {
            reason: "clients cannot produce control batches".into(),
        });
    }
    if header.producer_id() >= 0 && header.base_sequence() < 0 {
        return Err(BatchError::InvalidRecord {
            reason: format!(
                "batch with producer id {} has invalid base sequence {}",
                header.producer_id(),
                header.base_sequence()
            ),
        });
    }
    let max_timestamp = super::validate::check_records(batch, &header, checks)?;
    Ok(ProducedBatch {
        header,
        max_timestamp,
    })
}

/// Writes the base offset into the batch header (not covered by the CRC).
pub fn patch_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[BASE_OFFSET_AT..BASE_OFFSET_AT + 8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Writes the partition leader epoch into the batch header (not covered by the CRC).
pub fn patch_leader_epoch(batch: &mut [u8], epoch: i32) {
    batch[LEADER_EPOCH_AT..LEADER_EPOCH_AT + 4].copy_from_slice(&epoch.to_be_bytes());
}

/// Marks the batch as LogAppendTime with `timestamp` as its max timestamp.
///
/// The attributes and max timestamp are covered by the CRC, so this recomputes it; Kafka's
/// broker does the same (`setMaxTimestamp` rewrites the CRC). Only the 61-byte header
/// changes; record bytes are read, never moved.
pub fn patch_log_append_time(batch: &mut [u8], timestamp: i64) {
    let attributes = read_i16(batch, ATTRIBUTES_AT) | TIMESTAMP_TYPE_BIT;
    batch[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
    batch[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&timestamp.to_be_bytes());
    let crc = compute_crc(batch);
    batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Marks the batch as CreateTime with `max_timestamp`, the largest record timestamp.
///
/// Like [`patch_log_append_time`], only the header changes and the CRC is recomputed
/// over `batch` (callers that patch a copy of the header recompute it themselves).
pub fn patch_create_time(batch: &mut [u8], max_timestamp: i64) {
    let attributes = read_i16(batch, ATTRIBUTES_AT) & !TIMESTAMP_TYPE_BIT;
    batch[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
    batch[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&max_timestamp.to_be_bytes());
    let crc = compute_crc(batch);
    batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
}

pub(crate) fn read_i16(bytes: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([bytes[at], bytes[at + 1]])
}

pub(crate) fn read_i32(bytes: &[u8], at: usize) -> i32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    i32::from_be_bytes(b)
}

pub(crate) fn read_i64(bytes: &[u8], at: usize) -> i64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    i64::from_be_bytes(b)
}
