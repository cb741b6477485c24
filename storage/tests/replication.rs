//! Replication primitives through the public API, with real logs in temp directories and
//! no sockets: the follower append, the high watermark, the leader-epoch cache and its
//! checkpoint, and the KIP-101 / KIP-279 truncation protocol played between two or three
//! logs with `truncation_offset`, `truncate_to` and `append_replicated`.

mod common;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use sluice_storage::batch::{self, BatchBuilder, Compression};
use sluice_storage::faults::{self, Fault, Op};
use sluice_storage::{
    truncation_offset, BatchError, EpochEndOffset, LogConfig, PartitionLog, ReadBound, StorageError,
};

/// A fixed clock: replicas must write the same bytes whatever the wall clock says.
const NOW: i64 = 1_700_000_000_000;
const EPOCH_FILE: &str = "leader-epoch-checkpoint";
const HW_FILE: &str = "high-watermark";

fn idempotent_batch(producer_id: i64, epoch: i16, seq: i32, records: usize) -> Bytes {
    let mut builder = BatchBuilder::new(Compression::None).producer(producer_id, epoch, seq);
    for i in 0..records {
        builder.push(NOW + i as i64, Some(b"k"), Some(&[b'p'; 40]), &[]);
    }
    builder.build().unwrap()
}

fn eo(leader_epoch: i32, end_offset: i64) -> Option<EpochEndOffset> {
    Some(EpochEndOffset {
        leader_epoch,
        end_offset,
    })
}

/// Copies the leader's batches from the follower's log end to the leader's, as a
/// follower's fetches (from the log end, not the high watermark) would.
fn replicate(leader: &PartitionLog, follower: &PartitionLog, max_bytes: usize) {
    for _ in 0..100_000 {
        let from = follower.log_end_offset();
        if from >= leader.log_end_offset() {
            return;
        }
        let read = leader
            .read_bounded(from, max_bytes, true, ReadBound::LogEnd)
            .unwrap();
        assert!(
            !read.records.is_empty(),
            "leader returned nothing at {from}"
        );
        follower.append_replicated(&read.records, NOW).unwrap();
    }
    panic!("replication did not finish");
}

/// A follower joining `leader`: asks for the end of its latest epoch, truncates where
/// `truncation_offset` says, again until nothing more is cut (KIP-279 may take several
/// rounds), then fetches the rest and takes the leader's high watermark. Returns the
/// offsets it truncated to.
fn follow(leader: &PartitionLog, follower: &PartitionLog) -> Vec<i64> {
    let mut cuts = Vec::new();
    for _ in 0..16 {
        let answer = follower
            .latest_epoch()
            .and_then(|epoch| leader.end_offset_for_epoch(epoch));
        let to = truncation_offset(follower, answer);
        assert!(to <= follower.log_end_offset());
        if to == follower.log_end_offset() {
            replicate(leader, follower, 1 << 20);
            follower.set_high_watermark(leader.high_watermark());
            return cuts;
        }
        follower.truncate_to(to).unwrap();
        cuts.push(to);
    }
    panic!("truncation did not converge: {cuts:?}");
}

/// Every segment file (`.log`, `.index`, `.timeindex`) of the directory, by name.
fn segment_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let segment_file = [".log", ".index", ".timeindex"]
                .iter()
                .any(|suffix| name.ends_with(suffix));
            segment_file.then(|| (name, fs::read(e.path()).unwrap()))
        })
        .collect();
    files.sort();
    files
}

/// The log's bytes, every segment's `.log` file in order.
fn log_bytes(dir: &Path) -> Vec<u8> {
    segment_files(dir)
        .into_iter()
        .filter(|(name, _)| name.ends_with(".log"))
        .flat_map(|(_, bytes)| bytes)
        .collect()
}

fn assert_same_log(a: (&PartitionLog, &Path), b: (&PartitionLog, &Path)) {
    assert_eq!(a.0.log_end_offset(), b.0.log_end_offset(), "log ends");
    assert_eq!(a.0.epoch_entries(), b.0.epoch_entries(), "epoch caches");
    assert!(log_bytes(a.1) == log_bytes(b.1), "log bytes differ");
}

fn big_segments() -> LogConfig {
    LogConfig {
        retention_ms: None,
        ..LogConfig::default()
    }
}

// ---- the leader-epoch cache -------------------------------------------------------

#[test]
fn the_epoch_cache_records_new_epochs_and_answers_end_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), big_segments(), true);
    assert_eq!(log.latest_epoch(), None);
    assert_eq!(log.end_offset_for_epoch(0), None, "empty cache");
    // Epoch 2 takes over an empty log; its appends record nothing new.
    log.assign_epoch(2, 0).unwrap();
    log.append(&make_batch(3, 10, 1), 2, NOW).unwrap();
    log.append(&make_batch(2, 10, 1), 2, NOW).unwrap();
    // Epoch 4 starts by appending (no assign_epoch).
    log.append(&make_batch(5, 10, 1), 4, NOW).unwrap();
    // Epoch 7 is assigned at the log end; an older assignment is a no-op.
    log.assign_epoch(7, log.log_end_offset()).unwrap();
    log.assign_epoch(5, 1).unwrap();
    log.append(&make_batch(1, 10, 1), 7, NOW).unwrap();
    assert_eq!(log.epoch_entries(), vec![(2, 0), (4, 5), (7, 10)]);
    assert_eq!(log.latest_epoch(), Some(7));
    assert_eq!(
        log.end_offset_for_epoch(7),
        eo(7, 11),
        "latest: the log end"
    );
    assert_eq!(
        log.end_offset_for_epoch(4),
        eo(4, 10),
        "older: next epoch's start"
    );
    assert_eq!(
        log.end_offset_for_epoch(5),
        eo(4, 10),
        "between: the floor epoch"
    );
    assert_eq!(log.end_offset_for_epoch(2), eo(2, 5));
    assert_eq!(
        log.end_offset_for_epoch(1),
        eo(1, 0),
        "below the first epoch: it ends where the first cached one starts (Kafka)"
    );
    assert_eq!(log.end_offset_for_epoch(8), None, "above the latest epoch");
    // The batches carry their epochs.
    let epochs: Vec<i32> = read_all(&log, 0)
        .iter()
        .map(|b| batch::BatchHeader::new(b).unwrap().partition_leader_epoch())
        .collect();
    assert_eq!(epochs, vec![2, 2, 4, 7]);
}

#[test]
fn a_stale_leader_epoch_is_refused_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), big_segments(), true);
    log.append(&make_batch(2, 10, 1), 3, NOW).unwrap();
    let (end, size) = (log.log_end_offset(), log.size_bytes());
    match log.append(&make_batch(2, 10, 1), 2, NOW) {
        Err(StorageError::StaleLeaderEpoch {
            epoch: 2,
            latest: 3,
        }) => {}
        other => panic!("expected StaleLeaderEpoch, got {other:?}"),
    }
    // A newer leader took over: the deposed one (epoch 3) may not write behind it.
    log.assign_epoch(5, end).unwrap();
    assert!(matches!(
        log.append(&make_batch(1, 10, 1), 3, NOW),
        Err(StorageError::StaleLeaderEpoch {
            epoch: 3,
            latest: 5
        })
    ));
    assert_eq!((log.log_end_offset(), log.size_bytes()), (end, size));
    assert_eq!(log.epoch_entries(), vec![(3, 0), (5, 2)]);
    log.append(&make_batch(1, 10, 1), 5, NOW).unwrap();
    assert_eq!(log.log_end_offset(), end + 1);
}

#[test]
fn a_replica_that_moved_past_an_epoch_refuses_the_old_leaders_late_batches() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let (old_leader, _) = open(dirs[0].path(), big_segments(), true);
    let (replica, _) = open(dirs[1].path(), big_segments(), true);
    old_leader.append(&make_batch(2, 10, 1), 3, NOW).unwrap();
    replicate(&old_leader, &replica, 1 << 20);
    // One more batch of epoch 3 is on its way when the replica becomes leader at epoch 4.
    old_leader.append(&make_batch(2, 10, 1), 3, NOW).unwrap();
    let late = read_to_end(&old_leader, 2, 1 << 20, true).unwrap().records;
    replica.assign_epoch(4, replica.log_end_offset()).unwrap();
    let (end, size) = (replica.log_end_offset(), replica.size_bytes());
    match replica.append_replicated(&late, NOW) {
        Err(StorageError::StaleLeaderEpoch {
            epoch: 3,
            latest: 4,
        }) => {}
        other => panic!("expected StaleLeaderEpoch, got {other:?}"),
    }
    assert_eq!(
        (replica.log_end_offset(), replica.size_bytes()),
        (end, size)
    );
    assert_eq!(replica.epoch_entries(), vec![(3, 0), (4, 2)]);
}

#[test]
fn the_epoch_cache_is_cut_from_the_end_by_truncation_and_from_the_start_by_deletion() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), small_segments(), true);
    for (epoch, batches) in [(1, 10), (2, 10), (3, 10), (4, 10)] {
        for _ in 0..batches {
            log.append(&make_batch(2, 120, 1), epoch, NOW).unwrap();
        }
    }
    assert_eq!(log.epoch_entries(), vec![(1, 0), (2, 20), (3, 40), (4, 60)]);
    assert!(log.segment_count() > 3);
    // Truncation inside epoch 3 drops epoch 4; at epoch 3's start it drops epoch 3 too.
    log.truncate_to(70).unwrap();
    assert_eq!(log.epoch_entries(), vec![(1, 0), (2, 20), (3, 40), (4, 60)]);
    log.truncate_to(50).unwrap();
    assert_eq!(log.epoch_entries(), vec![(1, 0), (2, 20), (3, 40)]);
    log.truncate_to(40).unwrap();
    assert_eq!(log.epoch_entries(), vec![(1, 0), (2, 20)]);
    assert_eq!(log.end_offset_for_epoch(2), eo(2, 40));
    // DeleteRecords inside epoch 2: epoch 1 goes, epoch 2 starts at the new log start.
    log.advance_high_watermark(40);
    log.delete_records_before(25).unwrap();
    assert_eq!(log.epoch_entries(), vec![(2, 25)]);
    assert_eq!(
        fs::read_to_string(dir.path().join(EPOCH_FILE)).unwrap(),
        "0\n1\n2 25\n"
    );
    // Retention deleting every segment: the cache keeps the epoch, at the new start.
    let mut config = small_segments();
    config.retention_ms = Some(0);
    log.set_config(config);
    log.apply_retention(NOW + 1_000_000).unwrap();
    assert_eq!(log.log_start_offset(), 40);
    assert_eq!(log.epoch_entries(), vec![(2, 40)]);
    // Truncating below the log start empties the log and the cache.
    log.truncate_to(10).unwrap();
    assert_eq!(log.epoch_entries(), vec![]);
    assert_eq!(
        fs::read_to_string(dir.path().join(EPOCH_FILE)).unwrap(),
        "0\n0\n"
    );
}

#[test]
fn the_epoch_checkpoint_is_kafkas_text_and_survives_reopen_and_crash() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), big_segments(), true);
    log.append(&make_batch(3, 10, 1), 0, NOW).unwrap();
    log.assign_epoch(6, 3).unwrap();
    log.append(&make_batch(2, 10, 1), 6, NOW).unwrap();
    assert_eq!(
        fs::read_to_string(dir.path().join(EPOCH_FILE)).unwrap(),
        "0\n2\n0 0\n6 3\n",
        "written at every change"
    );
    log.close().unwrap();
    let (log, _) = open(dir.path(), big_segments(), true);
    assert_eq!(log.epoch_entries(), vec![(0, 0), (6, 3)]);
    log.append(&make_batch(1, 10, 1), 9, NOW).unwrap();
    log.abandon();
    let (log, _) = open(dir.path(), big_segments(), false);
    assert_eq!(log.epoch_entries(), vec![(0, 0), (6, 3), (9, 5)]);
    assert_eq!(log.end_offset_for_epoch(6), eo(6, 5));
}

/// A log with epochs 1, 3 and 4 and the cache they make.
fn log_with_epochs(dir: &Path) -> (PartitionLog, Vec<(i32, i64)>) {
    let (log, _) = open(dir, small_segments(), true);
    for (epoch, batches) in [(1, 12), (3, 15), (4, 3)] {
        for _ in 0..batches {
            log.append(&make_batch(2, 120, 1), epoch, NOW).unwrap();
        }
    }
    let entries = log.epoch_entries();
    assert_eq!(entries, vec![(1, 0), (3, 24), (4, 54)]);
    assert!(log.segment_count() > 2);
    (log, entries)
}

#[test]
fn a_missing_epoch_checkpoint_is_rebuilt_from_the_batches() {
    let dir = tempfile::tempdir().unwrap();
    let (log, entries) = log_with_epochs(dir.path());
    log.close().unwrap();
    fs::remove_file(dir.path().join(EPOCH_FILE)).unwrap();
    let (log, _) = open(dir.path(), small_segments(), true);
    assert_eq!(log.epoch_entries(), entries);
    assert_eq!(
        fs::read_to_string(dir.path().join(EPOCH_FILE)).unwrap(),
        "0\n3\n1 0\n3 24\n4 54\n",
        "written back once rebuilt"
    );
}

#[test]
fn a_damaged_or_stale_epoch_checkpoint_is_rebuilt_from_the_batches() {
    let dir = tempfile::tempdir().unwrap();
    let (log, entries) = log_with_epochs(dir.path());
    log.close().unwrap();
    for damaged in [
        &b"0\n3\n1 0\n3 24\n"[..],
        b"garbage",
        b"7\n0\n",
        b"0\n2\n3 24\n1 0\n",
        b"",
        // Valid, but behind the log (a write lost before a crash): the last batch's
        // epoch 4 is not in it.
        b"0\n2\n1 0\n3 24\n",
    ] {
        fs::write(dir.path().join(EPOCH_FILE), damaged).unwrap();
        let (log, _) = open(dir.path(), small_segments(), true);
        assert_eq!(log.epoch_entries(), entries, "from {damaged:?}");
        log.close().unwrap();
    }
}

#[test]
fn epochs_past_a_tail_cut_by_recovery_leave_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), big_segments(), true);
    for _ in 0..4 {
        log.append(&make_batch(2, 40, 1), 1, NOW).unwrap();
    }
    let cut_at = log.size_bytes();
    log.append(&make_batch(2, 40, 1), 2, NOW).unwrap();
    assert_eq!(log.epoch_entries(), vec![(1, 0), (2, 8)]);
    log.abandon();
    // The crash tore the last batch (epoch 2's only one): recovery cuts it.
    let segment = dir.path().join(format!("{:020}.log", 0));
    let file = fs::OpenOptions::new().write(true).open(&segment).unwrap();
    file.set_len(cut_at + 30).unwrap();
    drop(file);
    // As the crash tests do: no recovery point, so the torn tail is cut, not kept as
    // damage, whatever the flusher managed to checkpoint.
    let _ = fs::remove_file(dir.path().join("recovery-point"));
    let (log, report) = open(dir.path(), big_segments(), false);
    assert!(report.bytes_truncated > 0);
    assert_eq!(log.log_end_offset(), 8);
    assert_eq!(log.epoch_entries(), vec![(1, 0)]);
    assert_eq!(
        fs::read_to_string(dir.path().join(EPOCH_FILE)).unwrap(),
        "0\n1\n1 0\n"
    );
}

// ---- the follower append ------------------------------------------------------------

/// The leader's appends: several epochs, idempotent and plain batches, enough to roll.
fn leader_appends(leader: &PartitionLog, mut after_each: impl FnMut()) {
    let mut seq = 0;
    for (epoch, appends) in [(1, 25), (2, 1), (4, 30)] {
        leader.assign_epoch(epoch, leader.log_end_offset()).unwrap();
        for i in 0..appends {
            let records = 1 + (i % 4);
            let payload = if i % 3 == 0 {
                let b = idempotent_batch(11, 0, seq, records);
                seq += records as i32;
                b
            } else {
                make_batch(records, 60 + i, NOW)
            };
            leader.append(&payload, epoch, NOW).unwrap();
            after_each();
        }
    }
}

#[test]
fn a_follower_stores_the_leaders_segments_byte_for_byte() {
    let leader_dir = tempfile::tempdir().unwrap();
    let follower_dir = tempfile::tempdir().unwrap();
    let chunked_dir = tempfile::tempdir().unwrap();
    let (leader, _) = open(leader_dir.path(), small_segments(), true);
    let (follower, _) = open(follower_dir.path(), small_segments(), true);
    let (chunked, _) = open(chunked_dir.path(), small_segments(), true);
    // One follower copies every leader append as it happens (as a fetch per append).
    leader_appends(&leader, || replicate(&leader, &follower, 1 << 20));
    assert!(leader.segment_count() >= 2, "the appends rolled");
    assert_eq!(follower.segment_count(), leader.segment_count());
    assert!(
        segment_files(leader_dir.path()) == segment_files(follower_dir.path()),
        "segment files differ"
    );
    assert_same_log(
        (&leader, leader_dir.path()),
        (&follower, follower_dir.path()),
    );
    assert_eq!(follower.epoch_entries().len(), 3);
    // Another fetches late, in small chunks: the same log bytes (rolls may differ).
    replicate(&leader, &chunked, 700);
    assert_same_log((&leader, leader_dir.path()), (&chunked, chunked_dir.path()));
    // And all of it survives a reopen, with the epochs the batches carry.
    follower.close().unwrap();
    let (follower, _) = open(follower_dir.path(), small_segments(), true);
    assert_same_log(
        (&leader, leader_dir.path()),
        (&follower, follower_dir.path()),
    );
}

#[test]
fn invalid_replicated_appends_are_refused_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let leader_dir = tempfile::tempdir().unwrap();
    let (leader, _) = open(leader_dir.path(), big_segments(), true);
    let (follower, _) = open(dir.path(), big_segments(), true);
    for epoch in [1, 1, 2] {
        leader.append(&make_batch(2, 20, NOW), epoch, NOW).unwrap();
    }
    let all = leader
        .read_bounded(0, usize::MAX, true, ReadBound::LogEnd)
        .unwrap()
        .records;
    let batches = split(&all);
    follower.append_replicated(&batches[0], NOW).unwrap();
    let before = (
        follower.log_end_offset(),
        follower.size_bytes(),
        follower.epoch_entries(),
    );
    let unchanged = |what: &str| {
        assert_eq!(
            (
                follower.log_end_offset(),
                follower.size_bytes(),
                follower.epoch_entries()
            ),
            before,
            "{what} changed the log"
        );
    };
    // Not at the log end: the first batch again, and the third one.
    match follower.append_replicated(&batches[0], NOW) {
        Err(StorageError::OffsetMismatch {
            expected: 2,
            got: 0,
        }) => {}
        other => panic!("expected OffsetMismatch, got {other:?}"),
    }
    unchanged("a repeated batch");
    assert!(matches!(
        follower.append_replicated(&batches[2], NOW),
        Err(StorageError::OffsetMismatch {
            expected: 2,
            got: 4
        })
    ));
    unchanged("a batch after a gap");
    // A gap after a good first batch: nothing of the call is written.
    let mut gapped = batches[1].clone();
    gapped.extend_from_slice(&batches[0]);
    assert!(matches!(
        follower.append_replicated(&gapped, NOW),
        Err(StorageError::OffsetMismatch { .. })
    ));
    unchanged("a call with a gap in it");
    // A flipped byte in the second batch of a call.
    let mut two = batches[1].clone();
    let mut bad = batches[2].clone();
    let last = bad.len() - 1;
    bad[last] ^= 0x40;
    two.extend_from_slice(&bad);
    assert!(matches!(
        follower.append_replicated(&two, NOW),
        Err(StorageError::InvalidBatch(BatchError::CrcMismatch { .. }))
    ));
    unchanged("a bad CRC");
    // Magic 1 (offset 16 of the header).
    let mut old = batches[1].clone();
    old[16] = 1;
    assert!(matches!(
        follower.append_replicated(&old, NOW),
        Err(StorageError::InvalidBatch(BatchError::UnsupportedMagic {
            magic: 1
        }))
    ));
    unchanged("magic 1");
    // A torn batch.
    assert!(matches!(
        follower.append_replicated(&batches[1][..batches[1].len() - 3], NOW),
        Err(StorageError::InvalidBatch(_))
    ));
    unchanged("a torn batch");
    // The valid rest goes in.
    let mut rest = batches[1].clone();
    rest.extend_from_slice(&batches[2]);
    let info = follower.append_replicated(&rest, NOW).unwrap();
    assert_eq!(
        (info.base_offset, info.last_offset, info.batches),
        (2, 5, 2)
    );
    assert_eq!(follower.epoch_entries(), vec![(1, 0), (2, 4)]);
    assert_eq!(
        follower.high_watermark(),
        0,
        "the follower's HW is the leader's to set"
    );
}

#[test]
fn a_new_leader_answers_a_retry_replicated_before_failover_as_a_duplicate() {
    let leader_dir = tempfile::tempdir().unwrap();
    let follower_dir = tempfile::tempdir().unwrap();
    let (leader, _) = open(leader_dir.path(), small_segments(), true);
    let (follower, _) = open(follower_dir.path(), small_segments(), true);
    leader.assign_epoch(1, 0).unwrap();
    let mut seq = 0;
    let mut last = None;
    for i in 0..40 {
        let batch = idempotent_batch(42, 3, seq, 2);
        seq += 2;
        let info = leader.append(&batch, 1, NOW).unwrap();
        // Other producers' records in between.
        leader.append(&make_batch(1, 20 + i, NOW), 1, NOW).unwrap();
        last = Some((batch, info));
    }
    let (retried, original) = last.unwrap();
    assert!(
        leader.segment_count() > 1,
        "a roll (and its producer snapshot) happened"
    );
    replicate(&leader, &follower, 1 << 20);
    // Failover: the follower becomes leader at epoch 2; the producer never got its
    // answer for the last batch and sends it again.
    follower.assign_epoch(2, follower.log_end_offset()).unwrap();
    let end = follower.log_end_offset();
    let answer = follower.append(&retried, 2, NOW).unwrap();
    assert!(answer.duplicate, "the retry was appended again");
    assert_eq!(
        (answer.base_offset, answer.last_offset),
        (original.base_offset, original.last_offset)
    );
    assert_eq!(follower.log_end_offset(), end);
    // The producer's next batch continues; a gap is refused.
    assert!(matches!(
        follower.append(&idempotent_batch(42, 3, seq + 1, 1), 2, NOW),
        Err(StorageError::OutOfOrderSequence { .. })
    ));
    assert!(
        !follower
            .append(&idempotent_batch(42, 3, seq, 1), 2, NOW)
            .unwrap()
            .duplicate
    );
    // The same holds after the new leader restarts (state rebuilt from its files).
    follower.abandon();
    let (follower, _) = open(follower_dir.path(), small_segments(), false);
    let again = follower
        .append(&idempotent_batch(42, 3, seq, 1), 2, NOW)
        .unwrap();
    assert!(again.duplicate);
}

// ---- the high watermark -------------------------------------------------------------

#[test]
fn consumer_reads_stop_at_the_high_watermark_and_log_end_reads_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), big_segments(), true);
    for _ in 0..5 {
        log.append(&make_batch(2, 20, NOW), 0, NOW).unwrap();
    }
    assert_eq!(log.high_watermark(), 0);
    let read = log.read(0, usize::MAX, true).unwrap();
    assert!(read.records.is_empty());
    assert_eq!((read.high_watermark, read.log_end_offset), (0, 10));
    let read = log
        .read_bounded(0, usize::MAX, true, ReadBound::LogEnd)
        .unwrap();
    assert_eq!(split(&read.records).len(), 5);
    assert_eq!(read.high_watermark, 0);

    assert_eq!(log.advance_high_watermark(6), 6);
    let read = log.read(0, usize::MAX, true).unwrap();
    assert_eq!(
        split(&read.records).len(),
        3,
        "batches below the high watermark"
    );
    // Offsets between the high watermark and the log end read as empty, past it fail.
    assert!(log.read(6, usize::MAX, true).unwrap().records.is_empty());
    assert!(log.read(9, usize::MAX, true).unwrap().records.is_empty());
    assert!(log.read(10, usize::MAX, true).unwrap().records.is_empty());
    assert!(matches!(
        log.read(11, usize::MAX, true),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    // A high watermark inside a batch does not serve that batch.
    log.set_high_watermark(7);
    assert_eq!(
        split(&log.read(0, usize::MAX, true).unwrap().records).len(),
        3
    );
    log.advance_high_watermark(8);
    assert_eq!(
        split(&log.read(6, usize::MAX, true).unwrap().records).len(),
        1
    );
}

#[test]
fn advance_never_lowers_and_set_follows_the_leader_within_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), big_segments(), true);
    for _ in 0..5 {
        log.append(&make_batch(2, 20, NOW), 0, NOW).unwrap();
    }
    assert_eq!(log.advance_high_watermark(4), 4);
    assert_eq!(log.advance_high_watermark(2), 4, "never lowered");
    assert_eq!(log.advance_high_watermark(99), 10, "clamped to the log end");
    assert_eq!(log.set_high_watermark(3), 3, "a follower's may go down");
    assert_eq!(log.set_high_watermark(99), 10);
    assert_eq!(log.set_high_watermark(-5), 0);
    // Truncation lowers it to the new log end; never raises it.
    log.set_high_watermark(8);
    log.truncate_to(6).unwrap();
    assert_eq!(log.high_watermark(), 6);
    log.set_high_watermark(2);
    log.truncate_to(4).unwrap();
    assert_eq!(log.high_watermark(), 2);
    // Deleting records may not pass it, and the log start never passes it.
    assert!(matches!(
        log.delete_records_before(3),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    log.delete_records_before(2).unwrap();
    assert_eq!(log.set_high_watermark(0), 2, "not below the log start");
}

fn wait_for_file(path: &Path, content: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if fs::read_to_string(path).ok().as_deref() == Some(content) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} never became {content:?}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn the_high_watermark_survives_a_clean_reopen_and_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let hw_file = dir.path().join(HW_FILE);
    let (log, _) = open(dir.path(), big_segments(), true);
    assert_eq!(
        fs::read_to_string(&hw_file).unwrap(),
        "0",
        "written at creation"
    );
    for _ in 0..5 {
        log.append(&make_batch(2, 20, NOW), 0, NOW).unwrap();
    }
    log.advance_high_watermark(6);
    log.close().unwrap();
    assert_eq!(fs::read_to_string(&hw_file).unwrap(), "6");
    let (log, _) = open(dir.path(), big_segments(), true);
    assert_eq!(log.high_watermark(), 6);

    // The flusher checkpoints a changed high watermark on its own.
    log.advance_high_watermark(8);
    wait_for_file(&hw_file, "8");
    // A crash: the last raise (rate-limited) may not be in the file; what is there,
    // cut to the log end, is the high watermark after the restart.
    log.advance_high_watermark(10);
    log.abandon();
    let stored: i64 = fs::read_to_string(&hw_file).unwrap().parse().unwrap();
    assert!(stored == 8 || stored == 10, "{stored}");
    let (log, _) = open(dir.path(), big_segments(), false);
    assert_eq!(log.high_watermark(), stored);
    log.close().unwrap();

    // A checkpoint beyond the log end (its tail was lost) is cut to it.
    fs::write(&hw_file, "1000").unwrap();
    let (log, _) = open(dir.path(), big_segments(), false);
    assert_eq!(log.high_watermark(), 10);
    log.close().unwrap();

    // A directory of an earlier release has no file: everything was visible.
    fs::remove_file(&hw_file).unwrap();
    let (log, _) = open(dir.path(), big_segments(), true);
    assert_eq!(log.high_watermark(), 10);
    assert_eq!(fs::read_to_string(&hw_file).unwrap(), "10");
}

// ---- the truncation protocol --------------------------------------------------------

#[test]
fn truncation_offset_follows_kafkas_fetcher() {
    let dir = tempfile::tempdir().unwrap();
    let (follower, _) = open(dir.path(), big_segments(), true);
    for (epoch, batches) in [(1, 3), (3, 2), (5, 2)] {
        for _ in 0..batches {
            follower
                .append(&make_batch(2, 10, NOW), epoch, NOW)
                .unwrap();
        }
    }
    follower.set_high_watermark(4);
    // epochs: (1, 0) (3, 6) (5, 10); log end 14.
    assert_eq!(truncation_offset(&follower, None), 4, "no answer: the HW");
    assert_eq!(truncation_offset(&follower, eo(-1, -1)), 4);
    assert_eq!(
        truncation_offset(&follower, eo(-1, 9)),
        9,
        "epoch-less leader"
    );
    assert_eq!(
        truncation_offset(&follower, eo(5, 20)),
        14,
        "never past the log end"
    );
    assert_eq!(truncation_offset(&follower, eo(5, 12)), 12);
    assert_eq!(
        truncation_offset(&follower, eo(3, 8)),
        8,
        "same epoch, leader shorter"
    );
    assert_eq!(
        truncation_offset(&follower, eo(3, 11)),
        10,
        "same epoch, mine shorter"
    );
    // The leader answered epoch 4, which this follower never saw: cut to where its
    // largest epoch below 4 (3) ended, and ask again.
    assert_eq!(truncation_offset(&follower, eo(4, 12)), 10);
    // The leader's epoch 0 is below this follower's first (1, at offset 0): its records
    // 0..5 were written at epoch 1, which the leader never had, so all of them diverge
    // (Kafka's fetcher: the follower's end for epoch 0 is its first epoch's start).
    assert_eq!(
        truncation_offset(&follower, eo(0, 5)),
        0,
        "below my first epoch"
    );
}

/// KIP-101, "leader change during replication": a follower appended records the old
/// leader never committed; the new leader, elected with a shorter log, writes its own
/// records in a new epoch. The follower must cut exactly its uncommitted tail (not to
/// its high watermark, which would lose committed records, and not keep the tail, which
/// would diverge), and every replica ends with the same bytes.
#[test]
fn kip101_a_follower_cuts_records_the_new_leader_never_had() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let open_replica = |i: usize| open(dirs[i].path(), big_segments(), true).0;
    let (a, b, c) = (open_replica(0), open_replica(1), open_replica(2));
    // A leads epoch 1; B and C replicate 10 committed records.
    a.assign_epoch(1, 0).unwrap();
    for _ in 0..5 {
        a.append(&make_batch(2, 20, NOW), 1, NOW).unwrap();
    }
    replicate(&a, &b, 1 << 20);
    replicate(&a, &c, 1 << 20);
    a.advance_high_watermark(10);
    b.set_high_watermark(a.high_watermark());
    c.set_high_watermark(a.high_watermark());
    // A appends 6 more; B gets all of them, C none, and the HW stays at 10.
    for _ in 0..3 {
        a.append(&make_batch(2, 20, NOW), 1, NOW).unwrap();
    }
    replicate(&a, &b, 1 << 20);
    // A dies; C (the shorter log) becomes leader in epoch 2 and writes.
    c.assign_epoch(2, c.log_end_offset()).unwrap();
    // A, cut off, does not know yet and appends one more in epoch 1.
    a.append(&make_batch(1, 20, NOW), 1, NOW).unwrap();
    for _ in 0..4 {
        c.append(&make_batch(3, 25, NOW), 2, NOW).unwrap();
    }
    c.advance_high_watermark(c.log_end_offset());
    // B had not yet learned the last high watermark: truncating to it (the rule before
    // KIP-101) would cut committed records 6..10 too.
    b.set_high_watermark(6);
    // B follows C: epoch 1 ended at 10 on C, so B cuts its 6 uncommitted records.
    assert_eq!(c.end_offset_for_epoch(1), eo(1, 10));
    assert_eq!(follow(&c, &b), vec![10]);
    // A comes back as a follower of C and cuts its 7 records past 10.
    assert_eq!(follow(&c, &a), vec![10]);
    for (i, replica) in [&a, &b].into_iter().enumerate() {
        assert_same_log((&c, dirs[2].path()), (replica, dirs[i].path()));
        assert_eq!(replica.high_watermark(), c.high_watermark());
    }
    assert_eq!(c.epoch_entries(), vec![(1, 0), (2, 10)]);
    // The committed records were never cut anywhere.
    let committed: Vec<Vec<u8>> = read_all(&c, 0).into_iter().take(5).collect();
    for replica in [&a, &b] {
        assert_eq!(read_all(replica, 0)[..5], committed[..]);
    }
}

/// KIP-279, "fast successive leader changes": leadership moves A -> B -> A before the
/// replicas truncate, leaving each with a tail of an epoch the other never saw. The
/// follower's answer for its latest epoch is an epoch it lacks: it must cut in rounds
/// until its epochs agree with the leader's, and all replicas converge to the final
/// leader's log.
#[test]
fn kip279_fast_successive_leader_changes_converge_to_the_final_leader() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let open_replica = |i: usize| open(dirs[i].path(), small_segments(), true).0;
    let (a, b, c) = (open_replica(0), open_replica(1), open_replica(2));
    // Epoch 1, A leads: 8 records everywhere, then 4 more on A alone.
    a.assign_epoch(1, 0).unwrap();
    for _ in 0..4 {
        a.append(&make_batch(2, 30, NOW), 1, NOW).unwrap();
    }
    replicate(&a, &b, 1 << 20);
    replicate(&a, &c, 1 << 20);
    for _ in 0..2 {
        a.append(&make_batch(2, 30, NOW), 1, NOW).unwrap();
    }
    // Epoch 2, B leads (A is cut off before it truncates): B writes 6, C copies them.
    b.assign_epoch(2, b.log_end_offset()).unwrap();
    for _ in 0..3 {
        b.append(&make_batch(2, 35, NOW), 2, NOW).unwrap();
    }
    replicate(&b, &c, 1 << 20);
    // Epoch 3, A leads again at once, with its own tail of epoch 1, and writes.
    a.assign_epoch(3, a.log_end_offset()).unwrap();
    for _ in 0..30 {
        a.append(&make_batch(3, 40, NOW), 3, NOW).unwrap();
    }
    assert!(a.segment_count() > 1);
    assert_eq!(a.epoch_entries(), vec![(1, 0), (3, 12)]);
    // B asks for epoch 2: A never had it and answers epoch 1 ending at 12. B's epoch 1
    // ended at 8 (where its epoch 2 began): it cuts there, then asks for epoch 1, which
    // ends at 12 on A, past B's log end: done. It then fetches A's epoch-1 tail too.
    assert_eq!(a.end_offset_for_epoch(2), eo(1, 12));
    assert_eq!(follow(&a, &b), vec![8]);
    assert_eq!(follow(&a, &c), vec![8]);
    for (i, replica) in [&b, &c].into_iter().enumerate() {
        assert_same_log((&a, dirs[0].path()), (replica, dirs[i + 1].path()));
    }
    assert_eq!(b.epoch_entries(), vec![(1, 0), (3, 12)]);
    // Converged: asking again cuts nothing.
    assert_eq!(follow(&a, &b), Vec::<i64>::new());
}

/// A follower that is merely behind (a prefix of the leader's log, lagging high
/// watermark) keeps everything: KIP-101's first scenario, where truncating to the high
/// watermark after a restart would lose committed records.
#[test]
fn a_follower_that_is_only_behind_truncates_nothing() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let (leader, _) = open(dirs[0].path(), big_segments(), true);
    let (follower, _) = open(dirs[1].path(), big_segments(), true);
    for epoch in [1, 2] {
        leader.assign_epoch(epoch, leader.log_end_offset()).unwrap();
        for _ in 0..4 {
            leader.append(&make_batch(2, 20, NOW), epoch, NOW).unwrap();
        }
    }
    replicate(&leader, &follower, 1 << 20);
    leader.advance_high_watermark(leader.log_end_offset());
    // The follower restarts before it learned the new high watermark.
    follower.set_high_watermark(6);
    follower.close().unwrap();
    for _ in 0..3 {
        leader.append(&make_batch(2, 20, NOW), 2, NOW).unwrap();
    }
    leader.advance_high_watermark(leader.log_end_offset());
    let (follower, _) = open(dirs[1].path(), big_segments(), true);
    assert_eq!(follower.high_watermark(), 6);
    let end = follower.log_end_offset();
    let answer = leader.end_offset_for_epoch(follower.latest_epoch().unwrap());
    assert_eq!(
        truncation_offset(&follower, answer),
        end,
        "above its high watermark"
    );
    assert_eq!(follow(&leader, &follower), Vec::<i64>::new());
    assert_same_log((&leader, dirs[0].path()), (&follower, dirs[1].path()));
    assert_eq!(follower.high_watermark(), leader.log_end_offset());
}

#[test]
fn a_deposed_leader_that_wrote_nothing_in_its_epoch_follows_the_next_leader() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let (b, _) = open(dirs[0].path(), big_segments(), true);
    let (a, _) = open(dirs[1].path(), big_segments(), true);
    b.assign_epoch(3, 0).unwrap();
    for _ in 0..3 {
        b.append(&make_batch(2, 20, NOW), 3, NOW).unwrap();
    }
    replicate(&b, &a, 1 << 20);
    // B leads at epoch 5 and takes no write; A leads next at epoch 6 and takes some.
    let end = b.log_end_offset();
    assert_eq!(b.assign_epoch_at_log_end(5).unwrap(), end);
    assert_eq!(a.assign_epoch_at_log_end(6).unwrap(), end);
    a.append(&make_batch(2, 20, NOW), 6, NOW).unwrap();
    // B, following A, is told its epoch 5 diverges at its own log end: the truncation
    // cuts no record but must drop epoch 5, or B would name it again forever.
    let answer = a.end_offset_for_epoch(b.latest_epoch().unwrap());
    assert_eq!(answer, eo(3, end));
    let to = truncation_offset(&b, answer);
    assert_eq!(to, end);
    b.truncate_to(to).unwrap();
    assert_eq!(b.latest_epoch(), Some(3));
    assert_eq!(follow(&a, &b), Vec::<i64>::new());
    assert_same_log((&a, dirs[1].path()), (&b, dirs[0].path()));
    assert_eq!(b.epoch_entries(), vec![(3, 0), (6, end)]);
}

#[test]
fn a_follower_behind_the_leaders_log_start_starts_afresh_there_and_follows() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let (leader, _) = open(dirs[0].path(), big_segments(), true);
    let (follower, _) = open(dirs[1].path(), big_segments(), true);
    leader.assign_epoch(1, 0).unwrap();
    for _ in 0..3 {
        leader.append(&make_batch(2, 20, NOW), 1, NOW).unwrap();
    }
    replicate(&leader, &follower, 1 << 20);
    // The follower is away while the leader goes on and deletes what the follower lacks.
    let idempotent = idempotent_batch(7, 0, 0, 2);
    for _ in 0..3 {
        leader.append(&make_batch(2, 20, NOW), 1, NOW).unwrap();
    }
    leader.append(&idempotent, 1, NOW).unwrap();
    leader.advance_high_watermark(leader.log_end_offset());
    let start = leader.delete_records_before(10).unwrap();
    assert_eq!(start, 10);
    assert!(start > follower.log_end_offset());

    follower.truncate_fully_and_start_at(start).unwrap();
    assert_eq!(follower.log_start_offset(), start);
    assert_eq!(follower.log_end_offset(), start);
    assert_eq!(follower.high_watermark(), start);
    assert_eq!(follower.latest_epoch(), None, "no epoch is left");
    assert_eq!(
        follow(&leader, &follower),
        Vec::<i64>::new(),
        "nothing to cut"
    );
    assert_eq!(follower.log_end_offset(), leader.log_end_offset());
    let ours = read_to_end(&follower, start, 1 << 20, true).unwrap();
    let theirs = read_to_end(&leader, start, 1 << 20, true).unwrap();
    assert!(!ours.records.is_empty());
    assert_eq!(
        ours.records, theirs.records,
        "the same batches from the leader's log start"
    );
    // The producer state came with the copied batch: a retry is a duplicate once the
    // follower leads.
    follower.assign_epoch(2, follower.log_end_offset()).unwrap();
    let retry = follower.append(&idempotent, 2, NOW).unwrap();
    assert!(retry.duplicate);
    // And it survives a restart.
    follower.close().unwrap();
    let (follower, _) = open(dirs[1].path(), big_segments(), true);
    assert_eq!(follower.log_start_offset(), start);
    assert_eq!(follower.log_end_offset(), leader.log_end_offset());
}

// ---- failed epoch checkpoints ---------------------------------------------------------

#[test]
fn a_failed_epoch_checkpoint_fails_the_new_epochs_append_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), big_segments(), true);
    log.append(&make_batch(2, 20, NOW), 1, NOW).unwrap();
    let before = (log.log_end_offset(), log.size_bytes(), log.epoch_entries());
    let fault = faults::arm(Fault::always(dir.path(), Op::Rename, libc::EIO).on_this_thread());
    // Same epoch: no checkpoint, no failure.
    log.append(&make_batch(1, 20, NOW), 1, NOW).unwrap();
    let before = (before.0 + 1, log.size_bytes(), before.2);
    assert!(matches!(
        log.append(&make_batch(2, 20, NOW), 2, NOW),
        Err(StorageError::Io { .. })
    ));
    let leader_dir = tempfile::tempdir().unwrap();
    let (leader, _) = open(leader_dir.path(), big_segments(), true);
    leader.append(&make_batch(3, 20, NOW), 1, NOW).unwrap();
    leader.append(&make_batch(2, 20, NOW), 2, NOW).unwrap();
    let epoch_two = split(
        &leader
            .read_bounded(3, usize::MAX, true, ReadBound::LogEnd)
            .unwrap()
            .records,
    );
    assert!(matches!(
        log.append_replicated(&epoch_two[0], NOW),
        Err(StorageError::Io { .. })
    ));
    assert_eq!(
        (log.log_end_offset(), log.size_bytes(), log.epoch_entries()),
        before,
        "nothing written"
    );
    assert!(!log.is_offline(), "the log itself is fine");
    fault.clear();
    log.append(&make_batch(2, 20, NOW), 2, NOW).unwrap();
    assert_eq!(log.epoch_entries(), vec![(1, 0), (2, 3)]);
}

#[test]
fn an_epoch_checkpoint_a_truncation_could_not_write_is_written_by_the_flusher() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), big_segments(), true);
    for epoch in [1, 2, 3] {
        log.append(&make_batch(2, 20, NOW), epoch, NOW).unwrap();
    }
    let path = dir.path().join(EPOCH_FILE);
    assert_eq!(fs::read_to_string(&path).unwrap(), "0\n3\n1 0\n2 2\n3 4\n");
    // Only this thread's renames fail: the truncation's checkpoint, not the flusher's.
    let fault = faults::arm(Fault::always(dir.path(), Op::Rename, libc::EIO).on_this_thread());
    log.truncate_to(4).unwrap();
    assert_eq!(
        log.epoch_entries(),
        vec![(1, 0), (2, 2)],
        "the cache follows the log"
    );
    wait_for_file(&path, "0\n2\n1 0\n2 2\n");
    // The only write this thread tried failed: the file's new content is the flusher's.
    assert!(fault.calls() > 0, "the truncation's write was refused");
}

#[test]
fn a_high_watermark_raised_during_truncations_never_passes_the_log_end() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), big_segments(), true);
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        // A leader thread raising the high watermark as fast as it can.
        // Bounded, so that a failing assertion below cannot leave it spinning forever.
        s.spawn(|| {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !done.load(std::sync::atomic::Ordering::Acquire) && Instant::now() < deadline {
                log.advance_high_watermark(i64::MAX);
            }
        });
        for round in 0..300 {
            for _ in 0..3 {
                log.append(&make_batch(2, 10, NOW), 1, NOW).unwrap();
            }
            // Only this thread moves the log end, so the two loads agree.
            assert!(log.high_watermark() <= log.log_end_offset());
            log.truncate_to(log.log_end_offset() - 3 - round % 2)
                .unwrap();
            assert!(
                log.high_watermark() <= log.log_end_offset(),
                "round {round}: high watermark {} past the log end {}",
                log.high_watermark(),
                log.log_end_offset()
            );
        }
        done.store(true, std::sync::atomic::Ordering::Release);
    });
}
