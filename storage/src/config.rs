//! Per-log configuration, named after Kafka's topic configs.

use crate::batch::{TargetCompression, TimestampType};

/// When appended bytes are forced to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushPolicy {
    /// Every append is made durable (fdatasync) before it is reported durable. Appends are
    /// synced in groups by the flusher: one fsync covers every batch appended before it.
    Always,
    /// Flush when this many messages are unflushed, or when this many milliseconds passed
    /// since the last flush, whichever comes first (`log.flush.interval.messages`/`.ms`).
    Interval {
        messages: Option<u64>,
        ms: Option<u64>,
    },
    /// Leave write-back to the operating system (Kafka's default). Data survives a process
    /// crash (it is in the page cache) but not a power loss.
    Os,
}

/// Configuration of one partition log. Defaults are Kafka's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// `segment.bytes`: roll to a new segment when the active one would grow past this.
    pub segment_bytes: u64,
    /// `segment.ms`: roll when the active segment's first batch is older than this.
    pub segment_ms: Option<i64>,
    /// `index.interval.bytes`: bytes of log between two sparse index entries.
    pub index_interval_bytes: u64,
    /// `segment.index.bytes`: maximum size of an index file; the segment rolls when full.
    pub segment_index_bytes: u64,
    /// `retention.ms`: delete segments whose newest record is older (None: keep forever).
    pub retention_ms: Option<i64>,
    /// `retention.bytes`: delete the oldest segments while the log is larger (None: no limit).
    pub retention_bytes: Option<u64>,
    /// `max.message.bytes`: largest record batch accepted.
    pub max_message_bytes: usize,
    /// `message.timestamp.type`: CreateTime keeps the producer's timestamps,
    /// LogAppendTime stamps each batch with the broker's clock.
    pub timestamp_type: TimestampType,
    /// `message.timestamp.before.max.ms`: with CreateTime, a record whose timestamp is
    /// further in the past than this (relative to the append's `now_ms`) is refused.
    pub timestamp_before_max_ms: i64,
    /// `message.timestamp.after.max.ms`: with CreateTime, a record whose timestamp is
    /// further in the future than this is refused.
    pub timestamp_after_max_ms: i64,
    /// Most bytes a produced compressed batch's records may decompress to for their
    /// check (Sluice-specific; the broker's `message.max.decompressed.bytes`).
    pub max_decompressed_bytes: usize,
    /// When appends are fsynced.
    pub flush: FlushPolicy,
    /// `cleanup.policy` includes `compact`: every produced record must have a key.
    pub compact: bool,
    /// `compression.type` naming a codec: produced batches in another codec are
    /// recompressed before they are stored. `None` (`producer`): stored as produced.
    pub compression: Option<TargetCompression>,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: Some(7 * 24 * 60 * 60 * 1000),
            index_interval_bytes: 4096,
            segment_index_bytes: 10 * 1024 * 1024,
            retention_ms: Some(7 * 24 * 60 * 60 * 1000),
            retention_bytes: None,
            max_message_bytes: 1_048_588,
            timestamp_type: TimestampType::CreateTime,
            // Kafka 4.x: no bound in the past, one hour in the future (KIP-937).
            timestamp_before_max_ms: i64::MAX,
            timestamp_after_max_ms: 3_600_000,
            max_decompressed_bytes: crate::batch::records::DEFAULT_DECOMPRESSION_LIMIT,
            flush: FlushPolicy::Os,
            compact: false,
            compression: None,
        }
    }
}
