//! Helpers shared by the storage integration tests: batches built with the crate's own
//! builder, and logs opened in temp directories.

#![allow(dead_code)]

use std::path::Path;

use bytes::Bytes;
use sluice_storage::batch::{self, BatchBuilder, BatchHeader, Compression};
use sluice_storage::{
    Flusher, LogConfig, OpenReport, PartitionLog, ReadBound, ReadResult, StorageError,
};

/// A batch of `records` records with `value_size`-byte values, timestamps from `ts`.
pub fn make_batch(records: usize, value_size: usize, ts: i64) -> Bytes {
    let mut builder = BatchBuilder::new(Compression::None);
    for i in 0..records {
        let key = format!("key-{i}");
        let value = vec![b'a' + (i % 26) as u8; value_size];
        builder.push(
            ts + i as i64,
            Some(key.as_bytes()),
            Some(&value),
            &[("h", Some(b"v"))],
        );
    }
    builder.build().expect("build batch")
}

pub fn flusher() -> Flusher {
    Flusher::start("test").expect("start flusher")
}

pub fn open(dir: &Path, config: LogConfig, clean: bool) -> (PartitionLog, OpenReport) {
    PartitionLog::open(dir, config, &flusher(), clean).expect("open log")
}

/// `stored` with the base offset the log patched in replaced by `input`'s (0), so it can
/// be compared with the batch as produced.
pub fn unpatch(stored: &[u8]) -> Vec<u8> {
    let mut copy = stored.to_vec();
    batch::patch_base_offset(&mut copy, 0);
    batch::patch_leader_epoch(&mut copy, -1);
    copy
}

/// Splits a read's bytes into batches.
pub fn split(records: &[u8]) -> Vec<Vec<u8>> {
    batch::batches(records)
        .map(|b| b.expect("framing").to_vec())
        .collect()
}

pub fn base_offset(batch: &[u8]) -> i64 {
    BatchHeader::new(batch).unwrap().base_offset()
}

pub fn small_segments() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 256,
        segment_index_bytes: 1024,
        retention_ms: None,
        ..LogConfig::default()
    }
}

/// [`PartitionLog::read`] up to the log end rather than the high watermark: what these
/// storage tests check is what the log holds, whoever may see it.
pub fn read_to_end(
    log: &PartitionLog,
    offset: i64,
    max_bytes: usize,
    min_one: bool,
) -> Result<ReadResult, StorageError> {
    log.read_bounded(offset, max_bytes, min_one, ReadBound::LogEnd)
}

/// Every batch from `from` to the log end (not only to the high watermark), following
/// segment boundaries.
pub fn read_all(log: &PartitionLog, from: i64) -> Vec<Vec<u8>> {
    let mut batches = Vec::new();
    let mut offset = from;
    while offset < log.log_end_offset() {
        let read = log
            .read_bounded(offset, usize::MAX, false, ReadBound::LogEnd)
            .expect("read");
        let chunk = split(&read.records);
        assert!(
            !chunk.is_empty(),
            "read at {offset} returned nothing before the log end"
        );
        for b in chunk {
            offset = BatchHeader::new(&b).unwrap().next_offset();
            batches.push(b);
        }
    }
    batches
}
