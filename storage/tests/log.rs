//! Partition log behaviour through the public API: append, read, roll, timestamps,
//! truncation, retention, record deletion, close/reopen, durability.

mod common;

use std::sync::Arc;

use common::*;
use sluice_storage::batch::{self, BatchHeader, Records, TimestampType};
use sluice_storage::{now_ms, FlushPolicy, LogConfig, StorageError};

#[test]
fn appended_batches_read_back_byte_identical_with_contiguous_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), LogConfig::default(), true);
    let mut produced = Vec::new();
    for i in 0..10 {
        let batch = make_batch(1 + i, 50, 1_000 + i as i64);
        let info = log.append(&batch, 0, 0).unwrap();
        assert_eq!(info.records, 1 + i as u64);
        assert_eq!(info.last_offset - info.base_offset + 1, 1 + i as i64);
        produced.push((info.base_offset, batch));
    }
    let expected_end: i64 = (1..=10).sum();
    assert_eq!(log.log_end_offset(), expected_end);
    assert_eq!(log.high_watermark(), 0, "nothing is committed yet");
    assert_eq!(log.advance_high_watermark(expected_end), expected_end);
    let read = read_to_end(&log, 0, usize::MAX, false).unwrap();
    let batches = split(&read.records);
    assert_eq!(batches.len(), 10);
    let mut next = 0;
    for (stored, (base, input)) in batches.iter().zip(&produced) {
        assert_eq!(base_offset(stored), *base);
        assert_eq!(*base, next);
        next = BatchHeader::new(stored).unwrap().next_offset();
        assert_eq!(
            &unpatch(stored),
            input,
            "stored batch differs from produced bytes"
        );
        batch::validate_stored_batch(stored).unwrap();
    }
}

#[test]
fn several_batches_in_one_append_get_consecutive_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), LogConfig::default(), true);
    let mut payload = Vec::new();
    payload.extend_from_slice(&make_batch(3, 10, 1));
    payload.extend_from_slice(&make_batch(2, 10, 2));
    let info = log.append(&payload, 7, 0).unwrap();
    assert_eq!(
        (info.base_offset, info.last_offset, info.batches),
        (0, 4, 2)
    );
    let read = read_to_end(&log, 3, usize::MAX, false).unwrap();
    let batches = split(&read.records);
    assert_eq!(
        batches.len(),
        1,
        "the read starts at the batch containing offset 3"
    );
    assert_eq!(base_offset(&batches[0]), 3);
    assert_eq!(
        BatchHeader::new(&batches[0])
            .unwrap()
            .partition_leader_epoch(),
        7
    );
}

#[test]
fn invalid_batches_are_rejected_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), LogConfig::default(), true);
    let good = make_batch(2, 10, 1);
    let mut bad_crc = good.to_vec();
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 0xff;
    let mut bad_magic = good.to_vec();
    bad_magic[16] = 1;
    let mut bad_count = good.to_vec();
    bad_count[57..61].copy_from_slice(&5i32.to_be_bytes());
    let fixed = batch::compute_crc(&bad_count);
    bad_count[17..21].copy_from_slice(&fixed.to_be_bytes());
    let mut bad_length = good.to_vec();
    bad_length[8..12].copy_from_slice(&(good.len() as i32 + 5).to_be_bytes());
    let truncated = good[..good.len() - 3].to_vec();
    let mut good_then_bad = good.to_vec();
    good_then_bad.extend_from_slice(&bad_crc);

    for (name, input) in [
        ("crc", bad_crc),
        ("magic", bad_magic),
        ("count", bad_count),
        ("length", bad_length),
        ("truncated", truncated),
        ("good then bad", good_then_bad),
        ("empty", Vec::new()),
        ("garbage", vec![0xab; 100]),
    ] {
        let err = log.append(&input, 0, 0).unwrap_err();
        assert!(
            matches!(err, StorageError::InvalidBatch(_)),
            "{name}: {err}"
        );
    }
    assert_eq!(log.log_end_offset(), 0);
    assert_eq!(log.size_bytes(), 0, "nothing was written");
    log.append(&good, 0, 0).unwrap();
    assert_eq!(log.log_end_offset(), 2);
}

#[test]
fn batches_above_max_message_bytes_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        max_message_bytes: 1000,
        ..LogConfig::default()
    };
    let (log, _) = open(dir.path(), config, true);
    let big = make_batch(10, 200, 0);
    assert!(matches!(
        log.append(&big, 0, 0),
        Err(StorageError::MessageTooLarge { .. })
    ));
    log.append(&make_batch(1, 100, 0), 0, 0).unwrap();
}

#[test]
fn reads_respect_max_bytes_and_return_one_whole_batch_when_the_first_is_larger() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), LogConfig::default(), true);
    let batch = make_batch(5, 100, 0);
    for _ in 0..4 {
        log.append(&batch, 0, 0).unwrap();
    }
    let size = batch.len();
    let read = read_to_end(&log, 0, size * 2 + 10, false).unwrap();
    assert_eq!(read.records.len(), size * 2);
    let read = read_to_end(&log, 0, 10, true).unwrap();
    assert_eq!(read.records.len(), size, "KIP-74: one whole batch");
    let read = read_to_end(&log, 0, 10, false).unwrap();
    assert!(read.records.is_empty());
    let read = read_to_end(&log, 20, 1000, true).unwrap();
    assert!(
        read.records.is_empty(),
        "reading at the log end returns nothing"
    );
    assert!(matches!(
        read_to_end(&log, 21, 1000, true),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    assert!(matches!(
        read_to_end(&log, -1, 1000, true),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
}

#[test]
fn segments_roll_by_size_and_reads_continue_across_them() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), small_segments(), true);
    for i in 0..100 {
        log.append(&make_batch(3, 60, i), 0, 0).unwrap();
    }
    assert!(log.segment_count() > 5, "{} segments", log.segment_count());
    let mut offset = 0;
    let mut seen = 0;
    while offset < log.log_end_offset() {
        let read = read_to_end(&log, offset, 1 << 20, true).unwrap();
        for b in split(&read.records) {
            let header = BatchHeader::new(&b).unwrap();
            assert_eq!(header.base_offset(), offset);
            offset = header.next_offset();
            seen += 1;
        }
    }
    assert_eq!(seen, 100);
    // Every file is named by its base offset and sealed indexes are trimmed.
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert!(names.contains(&"00000000000000000000.log".to_string()));
    assert!(names.contains(&"00000000000000000000.index".to_string()));
    assert!(names.contains(&"00000000000000000000.timeindex".to_string()));
    let first_index = std::fs::metadata(dir.path().join("00000000000000000000.index")).unwrap();
    assert!(first_index.len() < 1024 && first_index.len() % 8 == 0);
}

#[test]
fn segments_roll_by_time() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_ms: Some(1000),
        ..LogConfig::default()
    };
    let (log, _) = open(dir.path(), config, true);
    log.append(&make_batch(1, 10, 0), 0, 10_000).unwrap();
    log.append(&make_batch(1, 10, 0), 0, 10_500).unwrap();
    assert_eq!(log.segment_count(), 1);
    log.append(&make_batch(1, 10, 0), 0, 11_001).unwrap();
    assert_eq!(log.segment_count(), 2);
    log.roll_if_due(11_500).unwrap();
    assert_eq!(log.segment_count(), 2);
    log.roll_if_due(12_002).unwrap();
    assert_eq!(log.segment_count(), 3);
}

#[test]
fn offsets_for_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), small_segments(), true);
    // Batch i has records with timestamps 1000*i .. 1000*i + 2.
    for i in 1..=50i64 {
        log.append(&make_batch(3, 40, 1000 * i), 0, 0).unwrap();
    }
    let found = log.offset_for_timestamp(0).unwrap().unwrap();
    assert_eq!((found.offset, found.timestamp), (0, 1000));
    let found = log.offset_for_timestamp(10_001).unwrap().unwrap();
    assert_eq!((found.offset, found.timestamp), (28, 10_001));
    let found = log.offset_for_timestamp(10_003).unwrap().unwrap();
    assert_eq!((found.offset, found.timestamp), (30, 11_000));
    assert_eq!(log.offset_for_timestamp(50_003).unwrap(), None);
    let max = log.max_timestamp_offset().unwrap().unwrap();
    assert_eq!((max.offset, max.timestamp), (149, 50_002));
}

#[test]
fn log_append_time_stamps_batches_and_keeps_them_valid() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        timestamp_type: TimestampType::LogAppendTime,
        ..LogConfig::default()
    };
    let (log, _) = open(dir.path(), config, true);
    let info = log.append(&make_batch(3, 10, 5), 0, 777_000).unwrap();
    assert_eq!(info.log_append_time, 777_000);
    let read = read_to_end(&log, 0, usize::MAX, false).unwrap();
    let stored = &split(&read.records)[0];
    let header = batch::validate_stored_batch(stored).unwrap();
    assert_eq!(header.timestamp_type(), TimestampType::LogAppendTime);
    assert_eq!(header.max_timestamp(), 777_000);
    for record in Records::decode(bytes::Bytes::copy_from_slice(stored)).unwrap() {
        assert_eq!(record.unwrap().timestamp, 777_000);
    }
}

#[test]
fn truncate_drops_everything_from_the_batch_containing_the_offset() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), small_segments(), true);
    for i in 0..60 {
        log.append(&make_batch(2, 60, i), 0, 0).unwrap();
    }
    let segments_before = log.segment_count();
    log.truncate_to(51).unwrap();
    assert_eq!(
        log.log_end_offset(),
        50,
        "offset 51 was inside the batch 50..=51"
    );
    log.truncate_to(20).unwrap();
    assert_eq!(log.log_end_offset(), 20);
    assert!(log.segment_count() < segments_before);
    let info = log.append(&make_batch(2, 60, 0), 0, 0).unwrap();
    assert_eq!(info.base_offset, 20);
    let read = read_to_end(&log, 18, usize::MAX, false).unwrap();
    let offsets: Vec<i64> = split(&read.records)
        .iter()
        .map(|b| base_offset(b))
        .collect();
    assert_eq!(offsets, vec![18, 20]);
    // Reopen sees the same log.
    log.close().unwrap();
    let (log, report) = open(dir.path(), small_segments(), true);
    assert_eq!(report.segments_recovered, 0);
    assert_eq!(log.log_end_offset(), 22);
}

#[test]
fn delete_records_advances_the_log_start_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), small_segments(), true);
    for i in 0..60 {
        log.append(&make_batch(2, 60, i), 0, 0).unwrap();
    }
    let segments = log.segment_count();
    assert!(
        log.delete_records_before(51).is_err(),
        "not past the high watermark"
    );
    log.advance_high_watermark(log.log_end_offset());
    assert_eq!(log.delete_records_before(51).unwrap(), 51);
    assert_eq!(log.log_start_offset(), 51);
    assert!(
        log.segment_count() < segments,
        "whole segments below 51 are deleted"
    );
    assert!(matches!(
        read_to_end(&log, 50, 100, true),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    assert!(read_to_end(&log, 51, 100_000, true)
        .unwrap()
        .first_offset
        .is_some());
    assert!(log.delete_records_before(1000).is_err());
    assert_eq!(
        log.delete_records_before(10).unwrap(),
        51,
        "never goes back"
    );
    log.abandon();
    let (log, _) = open(dir.path(), small_segments(), false);
    assert_eq!(log.log_start_offset(), 51);
    assert_eq!(log.log_end_offset(), 120);
}

#[test]
fn retention_by_bytes_and_time_deletes_whole_old_segments() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), small_segments(), true);
    for i in 0..100 {
        log.append(&make_batch(2, 60, 1_000 + i), 0, 0).unwrap();
    }
    let size = log.size_bytes();
    let mut config = small_segments();
    config.retention_bytes = Some(size / 2);
    log.set_config(config.clone());
    let outcome = log.apply_retention(0).unwrap();
    assert!(outcome.segments_deleted > 0);
    assert!(log.size_bytes() >= size / 2 && log.size_bytes() < size);
    let start = log.log_start_offset();
    assert!(start > 0);
    assert_eq!(
        read_to_end(&log, start, 100, true).unwrap().first_offset,
        Some(start),
        "the log starts at a segment boundary"
    );
    // Time: every record is older than 1 s at t = 1_000_000: everything goes, the log
    // keeps its end offset and accepts appends.
    config.retention_bytes = None;
    config.retention_ms = Some(1000);
    log.set_config(config);
    log.apply_retention(1_000_000).unwrap();
    assert_eq!(log.log_start_offset(), 200);
    assert_eq!(log.log_end_offset(), 200);
    assert_eq!(log.size_bytes(), 0);
    assert_eq!(
        log.append(&make_batch(1, 1, 0), 0, 0).unwrap().base_offset,
        200
    );
}

#[test]
fn clean_reopen_does_not_rescan_and_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), small_segments(), true);
    for i in 0..100 {
        log.append(&make_batch(2, 60, 1_000 + i), 0, 0).unwrap();
    }
    let before = read_all(&log, 0);
    let max = log.max_timestamp_offset().unwrap();
    log.close().unwrap();
    assert!(matches!(
        log.append(&make_batch(1, 1, 0), 0, 0),
        Err(StorageError::Closed)
    ));
    let (log, report) = open(dir.path(), small_segments(), true);
    assert_eq!(report.segments_recovered, 0);
    assert_eq!(report.bytes_truncated, 0);
    assert_eq!(log.log_end_offset(), 200);
    assert_eq!(log.max_timestamp_offset().unwrap(), max);
    let after = read_all(&log, 0);
    assert_eq!(after, before);
    assert_eq!(
        log.append(&make_batch(1, 1, 0), 0, 0).unwrap().base_offset,
        200
    );
}

#[test]
fn corruption_inside_a_sealed_segment_is_refused_and_the_batches_before_it_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), small_segments(), true);
    for i in 0..40 {
        log.append(&make_batch(2, 60, i), 0, 0).unwrap();
    }
    log.close().unwrap();
    // Flip one byte of a record in the first (sealed) segment's third batch.
    let path = dir.path().join("00000000000000000000.log");
    let mut bytes = std::fs::read(&path).unwrap();
    let first = batch::check_framing(&bytes, usize::MAX).unwrap();
    let second = batch::check_framing(&bytes[first..], usize::MAX).unwrap();
    bytes[first + second + 80] ^= 0x55;
    std::fs::write(&path, &bytes).unwrap();
    let (log, _) = open(dir.path(), small_segments(), true);
    // A lookup by time that meets the damage first records it and answers with the first
    // record after it: timestamp 3 is in offset 5 (damaged) and offset 6 (batch 3).
    let found = log.offset_for_timestamp(3).unwrap().unwrap();
    assert_eq!((found.offset, found.timestamp), (6, 3));
    // A read from the start gets the two whole batches before the corrupt one, not an
    // error for everything.
    let ok = read_to_end(&log, 0, 1 << 20, false).unwrap();
    assert_eq!(split(&ok.records).len(), 2);
    // Offset 4 (the third batch) is refused, and the range is reported.
    let err = read_to_end(&log, 4, 1 << 20, true).unwrap_err();
    let StorageError::Damaged { range } = err else {
        panic!("{err}")
    };
    assert_eq!((range.first_offset, range.end_offset), (4, 6));
    assert_eq!(log.damaged_ranges(), vec![range]);
    // The batch after it is served.
    let after = read_to_end(&log, 6, 1 << 20, true).unwrap();
    assert_eq!(base_offset(&split(&after.records)[0]), 6);
}

#[test]
fn flush_policy_always_groups_many_appenders_into_few_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        flush: FlushPolicy::Always,
        ..LogConfig::default()
    };
    let (log, _) = open(dir.path(), config, true);
    let batch = make_batch(10, 100, 0);
    let appenders: Vec<_> = (0..8)
        .map(|_| {
            let log = log.clone();
            let batch = batch.clone();
            std::thread::spawn(move || {
                for _ in 0..50 {
                    let info = log.append(&batch, 0, 0).unwrap();
                    log.wait_durable(info.last_offset + 1).wait().unwrap();
                    assert!(log.durable_offset() > info.last_offset);
                }
            })
        })
        .collect();
    for appender in appenders {
        appender.join().unwrap();
    }
    assert_eq!(log.log_end_offset(), 8 * 50 * 10);
    assert_eq!(log.durable_offset(), log.log_end_offset());
}

#[test]
fn interval_and_os_policies_sync_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        flush: FlushPolicy::Interval {
            messages: None,
            ms: Some(20),
        },
        ..LogConfig::default()
    };
    let (log, _) = open(dir.path(), config, true);
    let info = log.append(&make_batch(3, 10, 0), 0, 0).unwrap();
    // The flusher's tick syncs it within the interval; waiting also asks for a sync.
    log.wait_durable(info.last_offset + 1).wait().unwrap();
    assert_eq!(log.durable_offset(), 3);

    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), LogConfig::default(), true);
    let info = log.append(&make_batch(3, 10, 0), 0, 0).unwrap();
    assert_eq!(log.durable_offset(), 0);
    log.wait_durable(info.last_offset + 1).wait().unwrap();
    assert_eq!(log.durable_offset(), 3);
}

#[test]
fn readers_run_concurrently_with_an_appender() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), small_segments(), true);
    let log = Arc::new(log);
    let writer = {
        let log = log.clone();
        std::thread::spawn(move || {
            for i in 0..500 {
                log.append(&make_batch(2, 30, i), 0, 0).unwrap();
            }
        })
    };
    let reader = {
        let log = log.clone();
        std::thread::spawn(move || {
            let mut offset = 0;
            while offset < 1000 {
                let read = read_to_end(&log, offset, 1 << 16, true).unwrap();
                for b in split(&read.records) {
                    let header = batch::validate_stored_batch(&b).unwrap();
                    assert_eq!(header.base_offset(), offset);
                    offset = header.next_offset();
                }
            }
        })
    };
    writer.join().unwrap();
    reader.join().unwrap();
}

#[test]
fn a_closed_log_reports_closed_and_waiters_are_released() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), LogConfig::default(), true);
    log.append(&make_batch(1, 1, 0), 0, 0).unwrap();
    let wait = log.wait_durable(100);
    log.close().unwrap();
    assert!(wait.wait().is_err());
    assert!(matches!(log.flush(), Err(StorageError::Closed)));
}

#[test]
fn a_read_whose_first_batch_does_not_fit_never_skips_to_a_later_batch() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), small_segments(), true);
    log.append(&make_batch(3, 200, 0), 0, 0).unwrap();
    log.roll_if_due(i64::MAX).unwrap_or(());
    let mut config = small_segments();
    config.segment_ms = Some(0);
    log.set_config(config);
    log.roll_if_due(10).unwrap();
    log.set_config(small_segments());
    log.append(&make_batch(1, 10, 0), 0, 0).unwrap();
    assert_eq!(log.segment_count(), 2);
    let read = read_to_end(&log, 1, 100, false).unwrap();
    assert!(read.records.is_empty());
    assert_eq!(read.first_offset, None);
}

#[test]
fn timestamp_search_skips_records_below_the_log_start() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), LogConfig::default(), true);
    for _ in 0..4 {
        log.append(&make_batch(5, 10, 100), 0, 0).unwrap();
    }
    log.advance_high_watermark(log.log_end_offset());
    log.delete_records_before(12).unwrap();
    let found = log.offset_for_timestamp(0).unwrap().unwrap();
    assert_eq!(found.offset, 12);
}

#[test]
fn retention_by_time_uses_the_file_time_for_batches_without_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), small_segments(), true);
    // One record per batch with timestamp -1: batches without timestamps.
    for _ in 0..100 {
        log.append(&make_batch(1, 60, -1), 0, 0).unwrap();
    }
    assert!(log.segment_count() > 1);
    let mut config = small_segments();
    config.retention_ms = Some(60_000);
    log.set_config(config);
    let outcome = log.apply_retention(now_ms()).unwrap();
    assert_eq!(
        outcome.segments_deleted, 0,
        "segments written just now are not expired"
    );
}

#[test]
fn a_missing_index_is_rebuilt_and_a_negative_truncation_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), small_segments(), true);
    for i in 0..60 {
        log.append(&make_batch(2, 60, i), 0, 0).unwrap();
    }
    assert!(matches!(
        log.truncate_to(-5),
        Err(StorageError::InvalidArgument(_))
    ));
    log.close().unwrap();
    let index = dir.path().join("00000000000000000000.index");
    std::fs::remove_file(&index).unwrap();
    let (log, _) = open(dir.path(), small_segments(), true);
    assert!(
        std::fs::metadata(&index).unwrap().len() > 0,
        "index rebuilt"
    );
    assert_eq!(log.log_end_offset(), 120);
    let snapshots = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".snapshot")
        })
        .count();
    assert!(
        snapshots >= 1,
        "the snapshot written at close survives the next open"
    );
}

/// As Kafka's LogValidator: with CreateTime the stored max timestamp is the largest record
/// timestamp, whatever the producer's header said (the time index, retention and
/// ListOffsets trust it), rewritten with a valid CRC; a batch whose header was right is
/// stored untouched.
#[test]
fn create_time_max_timestamp_is_the_records_whatever_the_header_says() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), LogConfig::default(), true);
    let honest = make_batch(3, 10, 5_000);
    let max = BatchHeader::new(&honest).unwrap().max_timestamp();
    // The same records, with a max timestamp far in the future and the LogAppendTime bit.
    let mut lying = honest.to_vec();
    lying[35..43].copy_from_slice(&(max + 1_000_000).to_be_bytes());
    lying[22] |= 0x08;
    let crc = batch::compute_crc(&lying);
    lying[17..21].copy_from_slice(&crc.to_be_bytes());
    log.append(&honest, 0, 10_000).unwrap();
    log.append(&lying, 0, 10_000).unwrap();
    let stored = read_all(&log, 0);
    assert_eq!(unpatch(&stored[0]), honest.to_vec());
    let fixed = batch::validate_stored_batch(&stored[1]).unwrap();
    assert_eq!(fixed.max_timestamp(), max);
    assert_eq!(fixed.timestamp_type(), TimestampType::CreateTime);
    assert_eq!(&stored[1][61..], &honest[61..], "record bytes untouched");
    assert_eq!(log.max_timestamp_offset().unwrap().unwrap().timestamp, max);
}
