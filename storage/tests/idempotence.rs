//! Idempotent-producer rules through the log: duplicates acknowledged with their original
//! offsets and not stored twice, gaps and stale epochs rejected, and the state rebuilt
//! after a clean restart, after a crash, and after truncation.

mod common;

use bytes::Bytes;
use common::*;
use sluice_storage::batch::{BatchBuilder, Compression};
use sluice_storage::{LogConfig, StorageError};

fn batch(producer_id: i64, epoch: i16, seq: i32, records: usize) -> Bytes {
    let mut builder = BatchBuilder::new(Compression::None).producer(producer_id, epoch, seq);
    for i in 0..records {
        builder.push(
            1000 + i as i64,
            Some(b"k"),
            Some(format!("{seq}-{i}").as_bytes()),
            &[],
        );
    }
    builder.build().unwrap()
}

#[test]
fn a_retried_batch_is_acknowledged_with_its_original_offsets_and_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), LogConfig::default(), true);
    let first = log.append(&batch(1, 0, 0, 3), 0, 0).unwrap();
    log.append(&batch(2, 0, 0, 1), 0, 0).unwrap();
    let second = log.append(&batch(1, 0, 3, 2), 0, 0).unwrap();
    let retry = log.append(&batch(1, 0, 0, 3), 0, 0).unwrap();
    assert!(retry.duplicate);
    assert_eq!(
        (retry.base_offset, retry.last_offset),
        (first.base_offset, first.last_offset)
    );
    let retry = log.append(&batch(1, 0, 3, 2), 0, 0).unwrap();
    assert_eq!(
        (retry.base_offset, retry.last_offset),
        (second.base_offset, second.last_offset)
    );
    assert_eq!(log.log_end_offset(), 6, "nothing appended twice");
    assert_eq!(log.producer_count(), 2);
}

#[test]
fn gaps_and_stale_epochs_are_rejected_without_writing() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), LogConfig::default(), true);
    log.append(&batch(1, 3, 0, 2), 0, 0).unwrap();
    assert!(matches!(
        log.append(&batch(1, 3, 5, 1), 0, 0),
        Err(StorageError::OutOfOrderSequence {
            expected: 2,
            found: 5,
            ..
        })
    ));
    assert!(matches!(
        log.append(&batch(1, 2, 2, 1), 0, 0),
        Err(StorageError::InvalidProducerEpoch {
            epoch: 2,
            current: 3,
            ..
        })
    ));
    assert!(matches!(
        log.append(&batch(1, 4, 2, 1), 0, 0),
        Err(StorageError::OutOfOrderSequence { expected: 0, .. })
    ));
    assert_eq!(log.log_end_offset(), 2);
    // A bumped epoch starting at 0 is accepted and fences the old one.
    log.append(&batch(1, 4, 0, 1), 0, 0).unwrap();
    assert!(log.append(&batch(1, 3, 2, 1), 0, 0).is_err());
    // Several batches of one producer in one append are checked in order.
    let mut two = batch(9, 0, 0, 2).to_vec();
    two.extend_from_slice(&batch(9, 0, 2, 2));
    assert_eq!(log.append(&two, 0, 0).unwrap().records, 4);
    let mut gap = batch(9, 0, 4, 1).to_vec();
    gap.extend_from_slice(&batch(9, 0, 7, 1));
    assert!(log.append(&gap, 0, 0).is_err());
    assert_eq!(log.log_end_offset(), 7);
    assert!(!log.append(&batch(9, 0, 4, 1), 0, 0).unwrap().duplicate);
}

#[test]
fn state_survives_clean_restart_crash_and_rolls() {
    for clean in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = open(dir.path(), small_segments(), true);
        let mut seq = 0;
        let mut last = None;
        for _ in 0..150 {
            last = Some(log.append(&batch(5, 0, seq, 3), 0, 0).unwrap());
            seq += 3;
        }
        assert!(log.segment_count() > 2, "rolls wrote snapshots");
        if clean {
            log.close().unwrap();
        } else {
            log.abandon();
        }
        let (log, _) = open(dir.path(), small_segments(), clean);
        let last = last.unwrap();
        let retry = log.append(&batch(5, 0, seq - 3, 3), 0, 0).unwrap();
        assert!(retry.duplicate, "clean={clean}");
        assert_eq!(retry.base_offset, last.base_offset);
        assert!(matches!(
            log.append(&batch(5, 0, seq + 1, 1), 0, 0),
            Err(StorageError::OutOfOrderSequence { .. })
        ));
        assert!(!log.append(&batch(5, 0, seq, 1), 0, 0).unwrap().duplicate);
    }
}

#[test]
fn a_damaged_snapshot_is_ignored_and_state_rebuilt_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), small_segments(), true);
    for seq in 0..30 {
        log.append(&batch(5, 0, seq, 1), 0, 0).unwrap();
    }
    log.close().unwrap();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "snapshot") {
            std::fs::write(&path, b"garbage").unwrap();
        }
    }
    let (log, _) = open(dir.path(), small_segments(), true);
    assert!(log.append(&batch(5, 0, 29, 1), 0, 0).unwrap().duplicate);
}

#[test]
fn truncation_forgets_the_cut_batches() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), small_segments(), true);
    for seq in 0..30 {
        log.append(&batch(5, 0, seq, 1), 0, 0).unwrap();
    }
    log.truncate_to(20).unwrap();
    // Sequence 20 is no longer stored: it is a new batch again, not a duplicate.
    let info = log.append(&batch(5, 0, 20, 1), 0, 0).unwrap();
    assert!(!info.duplicate);
    assert_eq!(info.base_offset, 20);
}

#[test]
fn a_retry_on_a_log_append_time_topic_reports_the_original_append_time() {
    use sluice_storage::batch::TimestampType;
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        timestamp_type: TimestampType::LogAppendTime,
        ..LogConfig::default()
    };
    let (log, _) = open(dir.path(), config, true);
    let first = log.append(&batch(1, 0, 0, 2), 0, 5_000).unwrap();
    assert_eq!(first.log_append_time, 5_000);
    let retry = log.append(&batch(1, 0, 0, 2), 0, 9_000).unwrap();
    assert!(retry.duplicate);
    assert_eq!(
        retry.log_append_time, 5_000,
        "the time the records were stamped with, as the first answer said"
    );
    log.close().unwrap();
    let (log, _) = open(dir.path(), LogConfig::default(), true);
    let retry = log.append(&batch(1, 0, 0, 2), 0, 9_000).unwrap();
    assert!(retry.duplicate);
    assert_eq!(
        retry.log_append_time, -1,
        "CreateTime topic: no append time"
    );
}
