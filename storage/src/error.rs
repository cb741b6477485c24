//! Errors of the storage crate.
//!
//! Two enums: [`BatchError`] says why a record batch's bytes are not a valid Kafka
//! RecordBatch v2 (it carries no I/O and is cheap to build on the produce path), and
//! [`StorageError`] is what every log operation returns. The broker maps each variant
//! to a Kafka error code in one exhaustive `match`, so a new variant must get a code
//! before the workspace compiles again.

use std::io;
use std::path::PathBuf;

/// Why a byte range is not a valid record batch (magic 2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Fewer bytes than the fixed 61-byte header, or than the length field promises.
    #[error("record batch truncated: need {needed} bytes, have {available}")]
    Truncated { needed: usize, available: usize },
    /// The length field is below the header size or above the allowed maximum.
    #[error("record batch length field {length} is invalid")]
    InvalidLength { length: i64 },
    /// Only RecordBatch v2 (magic 2) is stored.
    #[error("unsupported record batch magic {magic} (only magic 2 is supported)")]
    UnsupportedMagic { magic: i8 },
    /// The CRC-32C stored in the header does not match the bytes it covers.
    #[error("record batch CRC mismatch: header says {stored:#010x}, bytes give {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    /// The record count, the last offset delta and the records present disagree.
    #[error("record batch count mismatch: {reason}")]
    CountMismatch { reason: String },
    /// A record inside the batch could not be decoded.
    #[error("invalid record in batch: {reason}")]
    InvalidRecord { reason: String },
    /// Well-formed records refused for what they hold (a timestamp out of the topic's
    /// KIP-937 bounds, no key on a compacted topic), each named by its index in the
    /// batch: Kafka's `RecordValidationException`, answered with `record_errors`
    /// (KIP-467). The whole batch is refused; the client fails only the records named.
    #[error("{total} record(s) refused, the first: {}", named.first().map(ToString::to_string).unwrap_or_default())]
    RejectedRecords {
        /// The first refused records (at most `batch::validate::MAX_NAMED_REJECTIONS`).
        named: Vec<crate::batch::RecordRejection>,
        /// How many records were refused in all.
        total: usize,
    },
    /// The compression codec id in the attributes is not one Kafka defines.
    #[error("unknown compression codec id {codec}")]
    UnknownCompression { codec: u8 },
    /// The compressed records could not be decompressed.
    #[error("cannot decompress {codec} records: {reason}")]
    Decompression { codec: &'static str, reason: String },
    /// Compressing records failed (only the builder compresses).
    #[error("cannot compress records with {codec}: {reason}")]
    Compression { codec: &'static str, reason: String },
}

/// Everything a log operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// An I/O call failed; `context` says which call on which file.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    /// A produced batch was rejected before anything was written.
    #[error(transparent)]
    InvalidBatch(#[from] BatchError),
    /// Stored bytes failed validation when read: the segment is corrupt there.
    #[error("corrupt data in {path} at byte {position}: {source}")]
    CorruptSegment {
        path: PathBuf,
        position: u64,
        #[source]
        source: BatchError,
    },
    /// The offset lies in a range of the log that recovery or an earlier read found
    /// damaged (see `DamagedRange`); reads before and after it still work.
    #[error(
        "offsets {}..{} of {} are damaged (byte {}, {} bytes: {}); reads from offset {} on work",
        range.first_offset, range.end_offset, range.file.display(), range.position, range.len,
        range.reason, range.end_offset
    )]
    Damaged { range: crate::damage::DamagedRange },
    /// The partition's files could not be opened (an unreadable or misplaced file, or
    /// segments that overlap): the log is offline until an operator repairs it and the
    /// broker restarts. Nothing was changed on disk.
    #[error("log at {path} could not be loaded and is offline: {reason}")]
    Unavailable { path: PathBuf, reason: String },
    /// A batch (or a whole append) is larger than the log accepts.
    #[error("record batch of {size} bytes exceeds the maximum of {max} bytes")]
    MessageTooLarge { size: usize, max: usize },
    /// The requested offset is outside `[log start offset, log end offset]`.
    #[error("offset {offset} is out of range [{log_start}, {log_end}]")]
    OffsetOutOfRange {
        offset: i64,
        log_start: i64,
        log_end: i64,
    },
    /// An argument that cannot be honoured (e.g. delete records beyond the high watermark).
    #[error("invalid request: {0}")]
    InvalidArgument(String),
    /// An idempotent producer's batch does not continue its sequence (a gap, or a new
    /// epoch not starting at 0). Kafka: OUT_OF_ORDER_SEQUENCE_NUMBER.
    #[error("producer {producer_id}: out of order sequence number {found}, expected {expected}")]
    OutOfOrderSequence {
        producer_id: i64,
        expected: i32,
        found: i32,
    },
    /// A batch from an older epoch of a producer that has since been re-initialised.
    /// Kafka: INVALID_PRODUCER_EPOCH.
    #[error("producer {producer_id}: epoch {epoch} is older than the current epoch {current}")]
    InvalidProducerEpoch {
        producer_id: i64,
        epoch: i16,
        current: i16,
    },
    /// An earlier write or fsync failed; the log refuses further work until reopened,
    /// because what is on disk after a failed write is unknown.
    #[error("log at {path} is offline after an earlier I/O failure")]
    Offline { path: PathBuf },
    /// A lock was poisoned by a panic in another thread; the log's state is suspect.
    #[error("internal lock poisoned by an earlier panic")]
    Poisoned,
    /// A durable wait was for an offset that a truncation removed.
    #[error("offset {offset} was truncated before it became durable")]
    Truncated { offset: i64 },
    /// A leader append stamped with a leader epoch older than the newest epoch in the
    /// log's leader-epoch cache: a deposed leader must not write behind its successor.
    /// Kafka: FENCED_LEADER_EPOCH.
    #[error("leader epoch {epoch} is older than the log's latest leader epoch {latest}")]
    StaleLeaderEpoch { epoch: i32, latest: i32 },
    /// A replicated append does not continue the log: its first batch (or a later one)
    /// does not start at the expected offset. Nothing was written.
    #[error("replicated batch starts at offset {got}, expected {expected}")]
    OffsetMismatch { expected: i64, got: i64 },
    /// The log was closed (or deleted) while the operation was in progress.
    #[error("log is closed")]
    Closed,
}

impl StorageError {
    /// Wraps an `io::Error` with a description of the operation that failed.
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        StorageError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Result alias for the storage crate.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;
