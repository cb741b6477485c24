//! The log cleaner end to end, on real files: what a clean keeps and drops, that offsets,
//! batch headers and the log end survive it, that indexes serve reads of the cleaned
//! segments, partial cleans with a small offset map, tombstones and their horizon, idempotent
//! producers across a clean and a reopen, readers holding a replaced segment, corrupt input,
//! and a crash at every step of the swap.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use bytes::Bytes;
use common::*;
use sluice_storage::batch::{BatchBuilder, BatchHeader, Compression, Records};
use sluice_storage::faults::{self, Fault, Op};
use sluice_storage::{CleanOptions, LogConfig, PartitionLog, StorageError};

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 2048,
        index_interval_bytes: 200,
        segment_index_bytes: 1024,
        retention_ms: None,
        segment_ms: None,
        compact: true,
        ..LogConfig::default()
    }
}

/// One batch of `records` (key, value) from producer 7 at `seq`, in `codec`.
fn keyed(codec: Compression, seq: i32, ts: i64, records: &[(&str, Option<&str>)]) -> Bytes {
    let mut builder = BatchBuilder::new(codec).producer(7, 0, seq);
    for (key, value) in records {
        builder.push(ts, Some(key.as_bytes()), value.map(str::as_bytes), &[]);
    }
    builder.build().unwrap()
}

/// Every record in the log: offset -> (key, value).
fn contents(log: &PartitionLog) -> BTreeMap<i64, (String, Option<String>)> {
    let mut out = BTreeMap::new();
    for batch in read_all(log, log.log_start_offset()) {
        for record in Records::decode(Bytes::from(batch)).unwrap() {
            let record = record.unwrap();
            let text = |b: &Bytes| String::from_utf8(b.to_vec()).unwrap();
            out.insert(
                record.offset,
                (
                    text(record.key.as_ref().unwrap()),
                    record.value.as_ref().map(text),
                ),
            );
        }
    }
    out
}

fn opts(now_ms: i64) -> CleanOptions {
    CleanOptions {
        now_ms,
        delete_retention_ms: 1000,
        ..CleanOptions::default()
    }
}

/// Appends `rounds` x 10 keys, values "r{round}", one record per batch, rolling often.
fn fill(log: &PartitionLog, rounds: usize, codec: Compression) -> Vec<Bytes> {
    let mut batches = Vec::new();
    let mut seq = 0;
    for round in 0..rounds {
        for k in 0..10 {
            let value = format!("r{round}-{}", "x".repeat(40));
            let batch = keyed(codec, seq, 1000, &[(&format!("k{k}"), Some(&value))]);
            log.append(&batch, 0, 1000).unwrap();
            batches.push(batch);
            seq += 1;
        }
    }
    log.roll_if_due(i64::MAX).ok();
    commit(log);
    batches
}

/// Rolls the active segment and commits everything (a clean stops at the high watermark).
fn roll(log: &PartitionLog) {
    roll_uncommitted(log);
    commit(log);
}

/// Rolls the active segment and makes it durable, leaving the high watermark where it is.
fn roll_uncommitted(log: &PartitionLog) {
    let before = log.config();
    let mut c = before.clone();
    c.segment_ms = Some(0);
    log.set_config(c);
    log.roll_if_due(i64::MAX / 2).unwrap();
    log.set_config(before);
    log.flush().unwrap();
}

/// Makes everything durable and raises the high watermark to the log end, as a leader
/// with every replica caught up (a clean stops at both).
fn commit(log: &PartitionLog) {
    log.flush().unwrap();
    log.advance_high_watermark(log.log_end_offset());
}

/// One batch of one record from producer `pid`.
fn one(codec: Compression, pid: i64, seq: i32, ts: i64, key: &str, value: Option<&str>) -> Bytes {
    let mut builder = BatchBuilder::new(codec).producer(pid, 0, seq);
    builder.push(ts, Some(key.as_bytes()), value.map(str::as_bytes), &[]);
    builder.build().unwrap()
}

fn checkpoint(dir: &Path) -> Option<i64> {
    std::fs::read_to_string(dir.join(sluice_storage::cleaner::CHECKPOINT_FILE))
        .ok()
        .map(|s| s.trim().parse().unwrap())
}

#[test]
fn a_clean_keeps_the_latest_value_of_every_key_and_every_offset() {
    for codec in [Compression::None, Compression::Zstd, Compression::Lz4] {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = open(dir.path(), config(), true);
        let produced = fill(&log, 8, codec);
        roll(&log);
        let end = log.log_end_offset();
        let before_segments = log.segment_count();
        assert!(before_segments > 3);
        let cleanable = log.cleanable(&opts(2000)).unwrap();
        assert_eq!(cleanable.first_dirty_offset, 0);
        assert_eq!(cleanable.end_offset, end);
        assert!((cleanable.dirty_ratio() - 1.0).abs() < 1e-9);

        let outcome = log.clean(&opts(2000)).unwrap();
        assert_eq!(outcome.records_removed, 70, "{codec:?}");
        assert_eq!(outcome.first_dirty_offset, end);
        assert_eq!(outcome.dirty_ratio_before, 1.0);
        assert_eq!(outcome.dirty_ratio_after, 0.0);
        assert!(!outcome.interrupted);
        assert!(outcome.bytes_written < outcome.bytes_read);
        assert_eq!(log.log_end_offset(), end, "the log end never moves");

        let records = contents(&log);
        let expected: BTreeMap<i64, (String, Option<String>)> = (70..80)
            .map(|o| {
                (
                    o,
                    (
                        format!("k{}", o - 70),
                        Some(format!("r7-{}", "x".repeat(40))),
                    ),
                )
            })
            .collect();
        assert_eq!(records, expected, "{codec:?}");

        // Every batch header is still there, emptied or not, at its offsets, with its
        // producer fields; reads at every offset find it through the rebuilt indexes.
        let stored = read_all(&log, 0);
        assert_eq!(stored.len(), produced.len());
        for (i, (stored, produced)) in stored.iter().zip(&produced).enumerate() {
            let (s, p) = (
                BatchHeader::new(stored).unwrap(),
                BatchHeader::new(produced).unwrap(),
            );
            assert_eq!(s.base_offset(), i as i64);
            assert_eq!(s.last_offset_delta(), p.last_offset_delta());
            assert_eq!(s.producer_id(), p.producer_id());
            assert_eq!(s.base_sequence(), p.base_sequence());
            assert_eq!(s.max_timestamp(), p.max_timestamp());
            if i >= 70 {
                assert_eq!(
                    unpatch(stored),
                    produced.to_vec(),
                    "kept batches are byte for byte"
                );
            } else {
                assert_eq!(s.records_count(), 0);
            }
            let read = read_to_end(&log, i as i64, 1, true).unwrap();
            assert_eq!(base_offset(&read.records), i as i64);
        }

        // A second clean finds nothing dirty.
        let again = log.clean(&opts(3000)).unwrap();
        assert_eq!(again.segments_replaced, 0);
        assert_eq!(again.records_removed, 0);

        // Groups are chosen by input size (Kafka's groupSegmentsBySize): the segments the
        // first clean shrank are merged by the next one.
        let segments = log.segment_count();
        assert_eq!(
            segments, before_segments,
            "one output per full input segment"
        );
        log.append(&keyed(codec, 80, 1000, &[("k0", Some("last"))]), 0, 1000)
            .unwrap();
        roll(&log);
        let merged = log.clean(&opts(3000)).unwrap();
        assert!(
            merged.segments_written < merged.segments_replaced,
            "{merged:?}"
        );
        assert!(log.segment_count() < segments + 1, "the roll added one");
        let mut expected = expected;
        expected.remove(&70);
        expected.insert(80, ("k0".into(), Some("last".into())));
        let end = log.log_end_offset();

        // Reopened (clean and unclean), the log is the same.
        log.close().unwrap();
        for clean in [true, false] {
            let (log, report) = open(dir.path(), config(), clean);
            assert!(report.damaged.is_empty(), "{:?}", report.damaged);
            assert_eq!(log.log_end_offset(), end);
            assert_eq!(contents(&log), expected);
            log.abandon();
        }
    }
}

#[test]
fn superseded_plain_batches_leave_one_header_per_run_not_one_per_batch() {
    // As the group coordinator writes __consumer_offsets: one small batch without a
    // producer id per commit, the same few keys again and again.
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), config(), true);
    for i in 0..300 {
        let mut builder = BatchBuilder::new(Compression::None);
        let key = format!("k{}", i % 3);
        builder.push(
            1000,
            Some(key.as_bytes()),
            Some(format!("v{i}").as_bytes()),
            &[],
        );
        log.append(&builder.build().unwrap(), 0, 1000).unwrap();
    }
    roll(&log);
    let end = log.log_end_offset();
    let outcome = log.clean(&opts(2000)).unwrap();
    assert_eq!(outcome.records_removed, 297);
    let expected: BTreeMap<i64, (String, Option<String>)> = (297..300)
        .map(|o| (o, (format!("k{}", o % 3), Some(format!("v{o}")))))
        .collect();
    assert_eq!(contents(&log), expected);
    // The 297 emptied batches became one bare header per cleaned segment (a run stops
    // at a segment boundary only where the writer flushed); offsets stay contiguous.
    let stored = read_all(&log, 0);
    assert!(
        stored.len() <= 3 + log.segment_count() * 2,
        "{} batches",
        stored.len()
    );
    let mut next = 0;
    for batch in &stored {
        let header = BatchHeader::new(batch).unwrap();
        assert_eq!(header.base_offset(), next);
        next = header.next_offset();
    }
    assert_eq!(next, end);
    // A second clean keeps it so, and a reopen (which scans every batch) accepts it.
    let again = log.clean(&opts(3000)).unwrap();
    assert_eq!(again.records_removed, 0);
    assert!(read_all(&log, 0).len() <= stored.len());
    drop(log);
    let (log, _) = open(dir.path(), config(), false);
    assert_eq!(log.log_end_offset(), end);
    assert_eq!(contents(&log), expected);
    // Fetching from any offset of a merged run lands on its header.
    let read = log
        .read_bounded(100, usize::MAX, false, sluice_storage::ReadBound::LogEnd)
        .unwrap();
    let first = BatchHeader::new(&read.records).unwrap();
    assert!(first.base_offset() <= 100 && first.next_offset() > 100);
}

#[test]
fn a_follower_that_ends_inside_a_merged_header_catches_up() {
    // The leader cleans its own copy while a follower (out of the ISR, so not holding the
    // high watermark back) has copied only part of it: the follower's next fetch starts
    // inside a header the leader merged.
    let (leader_dir, follower_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (leader, _) = open(leader_dir.path(), config(), true);
    let (follower, _) = open(follower_dir.path(), config(), true);
    for i in 0..60 {
        let mut builder = BatchBuilder::new(Compression::None);
        builder.push(1000, Some(b"k"), Some(format!("v{i}").as_bytes()), &[]);
        leader.append(&builder.build().unwrap(), 0, 1000).unwrap();
    }
    let copied = read_all(&leader, 0);
    follower
        .append_replicated(&copied[..25].concat(), 1000)
        .unwrap();
    assert_eq!(follower.log_end_offset(), 25);
    roll(&leader);
    leader.clean(&opts(2000)).unwrap();
    let mut landed_inside = false;
    for _ in 0..100 {
        let end = follower.log_end_offset();
        if end == leader.log_end_offset() {
            break;
        }
        // As the replica fetcher does: fetch from the log end, append what came.
        let read = leader
            .read_bounded(end, usize::MAX, false, sluice_storage::ReadBound::LogEnd)
            .unwrap();
        landed_inside |= BatchHeader::new(&read.records).unwrap().base_offset() < end;
        follower.append_replicated(&read.records, 1000).unwrap();
    }
    assert!(landed_inside, "a fetch landed on a merged header");
    assert_eq!(follower.log_end_offset(), leader.log_end_offset());
    commit(&follower);
    assert_eq!(
        contents(&follower)[&59],
        ("k".to_owned(), Some("v59".to_owned()))
    );
    // A batch with records starting below the log end is still refused.
    let mut builder = BatchBuilder::new(Compression::None);
    builder.push(1000, Some(b"k"), Some(b"x"), &[]);
    let mut stale = builder.build().unwrap().to_vec();
    sluice_storage::batch::patch_base_offset(&mut stale, 10);
    assert!(matches!(
        follower.append_replicated(&stale, 1000),
        Err(StorageError::OffsetMismatch { .. })
    ));
    // And the follower's log reopens (a full scan) as it is.
    let end = follower.log_end_offset();
    drop(follower);
    let (follower, _) = open(follower_dir.path(), config(), false);
    assert_eq!(follower.log_end_offset(), end);
}

#[test]
fn only_a_compacted_log_is_cleaned() {
    let dir = tempfile::tempdir().unwrap();
    let plain = LogConfig {
        compact: false,
        ..config()
    };
    let (log, _) = open(dir.path(), plain, true);
    fill(&log, 2, Compression::None);
    roll(&log);
    assert!(matches!(
        log.clean(&opts(2000)),
        Err(StorageError::InvalidArgument(_))
    ));
    assert_eq!(contents(&log).len(), 20);
}

#[test]
fn the_active_segment_the_bound_and_the_compaction_lag_are_respected() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), config(), true);
    fill(&log, 4, Compression::None);
    // Unrolled tail: the active segment holds the last records.
    let active_base = {
        let c = log.cleanable(&opts(0)).unwrap();
        c.end_offset
    };
    assert!(active_base < log.log_end_offset());
    let outcome = log.clean(&opts(5000)).unwrap();
    assert_eq!(outcome.first_dirty_offset, active_base);
    let records = contents(&log);
    for o in active_base..log.log_end_offset() {
        assert!(records.contains_key(&o), "active segment untouched at {o}");
    }

    // A bound below the first segment's end cleans nothing.
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), config(), true);
    fill(&log, 4, Compression::None);
    roll(&log);
    let bound = CleanOptions {
        max_offset: 3,
        ..opts(5000)
    };
    assert_eq!(log.clean(&bound).unwrap().segments_replaced, 0);
    // Records timestamped 1000 are too new for a lag of 10 s at now = 5000.
    let lag = CleanOptions {
        min_compaction_lag_ms: 10_000,
        ..opts(5000)
    };
    assert_eq!(log.clean(&lag).unwrap().segments_replaced, 0);
    assert_eq!(contents(&log).len(), 40);
    let ok = CleanOptions {
        min_compaction_lag_ms: 10_000,
        ..opts(20_000)
    };
    assert!(log.clean(&ok).unwrap().segments_replaced > 0);
    assert_eq!(contents(&log).len(), 10);
}

#[test]
fn a_small_offset_map_cleans_in_several_rounds() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), config(), true);
    fill(&log, 6, Compression::None);
    roll(&log);
    let end = log.log_end_offset();
    // Room for 4 keys (5 slots of 24 bytes at load factor 0.9).
    let small = CleanOptions {
        dedupe_buffer_bytes: 5 * 24,
        ..opts(2000)
    };
    let mut rounds = 0;
    let mut dirty = 0;
    while dirty < end {
        let outcome = log.clean(&small).unwrap();
        assert!(outcome.first_dirty_offset > dirty, "every round progresses");
        dirty = outcome.first_dirty_offset;
        rounds += 1;
        assert!(rounds < 100);
        // Whatever the round, every key's latest value is there.
        let records = contents(&log);
        for k in 0..10 {
            let latest = records
                .values()
                .rev()
                .find(|(key, _)| key == &format!("k{k}"))
                .unwrap();
            assert!(
                latest.1.as_ref().unwrap().starts_with("r5-"),
                "k{k}: {latest:?}"
            );
        }
    }
    assert!(rounds > 1);
    assert_eq!(contents(&log).len(), 10);
}

#[test]
fn tombstones_stay_for_delete_retention_then_go_with_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), config(), true);
    log.append(
        &keyed(
            Compression::None,
            0,
            100,
            &[("a", Some("1")), ("b", Some("1"))],
        ),
        0,
        100,
    )
    .unwrap();
    roll(&log);
    log.append(
        &keyed(Compression::Zstd, 2, 100, &[("a", None), ("c", Some("1"))]),
        0,
        100,
    )
    .unwrap();
    roll(&log);
    let outcome = log
        .clean(&CleanOptions {
            now_ms: 10_000,
            delete_retention_ms: 500,
            ..CleanOptions::default()
        })
        .unwrap();
    assert_eq!(
        outcome.records_removed, 1,
        "a's value goes, its tombstone stays"
    );
    let records = contents(&log);
    assert_eq!(records.get(&2), Some(&("a".to_string(), None)));
    assert!(!records.contains_key(&0));
    // Before the horizon (10_000 + 500) the tombstone stays; a new record makes the log dirty.
    log.append(
        &keyed(Compression::None, 4, 100, &[("d", Some("1"))]),
        0,
        100,
    )
    .unwrap();
    roll(&log);
    log.clean(&CleanOptions {
        now_ms: 10_499,
        delete_retention_ms: 500,
        ..CleanOptions::default()
    })
    .unwrap();
    assert!(contents(&log).contains_key(&2));
    log.append(
        &keyed(Compression::None, 5, 100, &[("e", Some("1"))]),
        0,
        100,
    )
    .unwrap();
    roll(&log);
    let outcome = log
        .clean(&CleanOptions {
            now_ms: 10_500,
            delete_retention_ms: 500,
            ..CleanOptions::default()
        })
        .unwrap();
    assert_eq!(outcome.tombstones_removed, 1);
    let keys: Vec<String> = contents(&log).values().map(|(k, _)| k.clone()).collect();
    assert_eq!(keys, ["b", "c", "d", "e"]);
}

#[test]
fn an_idempotent_retry_of_the_last_batch_is_a_duplicate_after_clean_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), config(), true);
    let produced = fill(&log, 3, Compression::Snappy);
    // The last batch is superseded and emptied.
    let last = produced.last().unwrap().clone();
    let superseding = keyed(Compression::None, 30, 1000, &[("k9", Some("newer"))]);
    let mut other = BatchBuilder::new(Compression::None).producer(8, 0, 0);
    other.push(1000, Some(b"k9"), Some(b"newest"), &[]);
    let other = other.build().unwrap();
    log.append(&superseding, 0, 1000).unwrap();
    log.append(&other, 0, 1000).unwrap();
    roll(&log);
    log.clean(&opts(2000)).unwrap();
    assert_eq!(
        contents(&log).values().filter(|(k, _)| k == "k9").count(),
        1
    );
    // Producer state survives the reopen, rebuilt from the batch headers (the snapshots
    // are removed to force it).
    log.abandon();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "snapshot") {
            std::fs::remove_file(path).unwrap();
        }
    }
    let (log, _) = open(dir.path(), config(), false);
    let retry = log.append(&superseding, 0, 1000).unwrap();
    assert!(retry.duplicate, "retry of producer 7's last batch");
    assert_eq!(retry.base_offset, 30);
    let retry = log.append(&other, 0, 1000).unwrap();
    assert!(retry.duplicate, "retry of producer 8's emptied... batch");
    // Every header is kept, so an older batch among the last five is still known.
    assert!(log.append(&last, 0, 1000).unwrap().duplicate);
}

#[test]
fn a_reader_holding_a_replaced_segment_keeps_reading_it() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), config(), true);
    fill(&log, 4, Compression::None);
    roll(&log);
    let held = read_to_end(&log, 0, usize::MAX, true).unwrap();
    let copy = held.records.to_vec();
    log.clean(&opts(2000)).unwrap();
    assert_eq!(
        held.records.to_vec(),
        copy,
        "the old mapping is still valid"
    );
    assert!(
        held.records.len()
            > read_to_end(&log, 0, usize::MAX, true)
                .unwrap()
                .records
                .len()
    );
}

#[test]
fn a_corrupt_batch_stops_the_clean_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), config(), true);
    fill(&log, 4, Compression::None);
    roll(&log);
    log.close().unwrap();
    // Flip a byte inside a record (CRC-covered) of the second segment, then open as after
    // a clean shutdown (no scan): the clean meets it.
    let mut logs: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    let mut bytes = std::fs::read(&logs[1]).unwrap();
    bytes[70] ^= 0xff;
    std::fs::write(&logs[1], &bytes).unwrap();
    let (log, _) = open(dir.path(), config(), true);
    let files = list(dir.path());
    let err = log.clean(&opts(2000)).unwrap_err();
    assert!(matches!(err, StorageError::CorruptSegment { .. }), "{err}");
    assert_eq!(list(dir.path()), files, "no file added, removed or renamed");
    assert!(!log.is_offline());
}

fn list(dir: &Path) -> Vec<(String, u64)> {
    // A running clean may remove a file between the listing and its metadata.
    let mut files: Vec<(String, u64)> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let e = e.unwrap();
            let len = e.metadata().ok()?.len();
            Some((e.file_name().to_string_lossy().into_owned(), len))
        })
        .collect();
    files.sort();
    files
}

/// A crash at every fallible step of a clean (each write, set_len, sync, rename and
/// removal in turn fails, then the process "dies"): reopened, the log holds either the
/// old or the new segments, every key's latest value, the same log end, no leftover
/// cleaner file, and a later clean finishes the job.
#[test]
fn a_crash_at_any_step_of_a_clean_loses_nothing() {
    for op in [Op::Write, Op::SetLen, Op::Sync, Op::Rename, Op::Remove] {
        for skip in 0.. {
            let dir = tempfile::tempdir().unwrap();
            let (log, _) = open(dir.path(), config(), true);
            fill(&log, 5, Compression::Lz4);
            roll(&log);
            // A first clean shrinks the segments, so the faulty one below merges several
            // into one output (and removes the others when it swaps).
            log.clean(&opts(1500)).unwrap();
            for k in 0..5 {
                let batch = keyed(
                    Compression::None,
                    50 + k,
                    1000,
                    &[(&format!("k{k}"), Some("late"))],
                );
                log.append(&batch, 0, 1000).unwrap();
            }
            roll(&log);
            let end = log.log_end_offset();
            let latest: BTreeMap<String, Option<String>> = contents(&log).into_values().collect();
            let fault = faults::arm(
                Fault {
                    skip,
                    times: 1,
                    ..Fault::always(dir.path(), op, libc_eio())
                }
                .on_this_thread(),
            );
            let result = log.clean(&opts(2000));
            let hit = fault.calls() > skip;
            if let Ok(outcome) = &result {
                assert!(
                    outcome.segments_replaced > outcome.segments_written,
                    "{outcome:?}"
                );
            }
            drop(fault);
            if !hit {
                assert!(result.is_ok());
                assert!(skip > 0, "a clean makes no {op:?} call");
                break;
            }
            assert!(result.is_err(), "{op:?} #{skip}");
            log.abandon();
            let (log, report) = open(dir.path(), config(), false);
            assert!(
                report.damaged.is_empty(),
                "{op:?} #{skip}: {:?}",
                report.damaged
            );
            assert_eq!(log.log_end_offset(), end);
            let after: BTreeMap<String, Option<String>> = contents(&log).into_values().collect();
            assert_eq!(after, latest, "{op:?} #{skip}: latest values");
            assert!(
                list(dir.path())
                    .iter()
                    .all(|(n, _)| !n.ends_with(".cleaned") && !n.ends_with(".swap")),
                "{op:?} #{skip}: {:?}",
                list(dir.path())
            );
            commit(&log);
            log.clean(&opts(2000)).unwrap();
            assert_eq!(contents(&log).len(), 10, "{op:?} #{skip}");
            log.abandon();
        }
    }
}

/// Polls (with a deadline, no fixed sleep) until a clean is writing its output: the
/// first `.cleaned` file exists.
fn wait_until_writing(dir: &Path) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !list(dir).iter().any(|(n, _)| n.ends_with(".log.cleaned")) {
        assert!(
            std::time::Instant::now() < deadline,
            "the clean never started writing"
        );
        // A poll interval, not a wait for the condition: the loop ends as soon as it holds.
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// No cleaner output (`.cleaned`, `.swap`) is left in `dir`.
fn assert_no_cleaner_files(dir: &Path) {
    let files = list(dir);
    assert!(
        files
            .iter()
            .all(|(n, _)| !n.ends_with(".cleaned") && !n.ends_with(".swap")),
        "{files:?}"
    );
}

/// A clean of `fill(4)` (four segments) slow enough (about 4 KB/s) to act during it.
fn slow_clean(
    log: &PartitionLog,
) -> std::thread::JoinHandle<sluice_storage::Result<sluice_storage::CleanOutcome>> {
    let slow = CleanOptions {
        io_max_bytes_per_sec: Some(4000),
        ..opts(2000)
    };
    std::thread::spawn({
        let log = log.clone();
        move || log.clean(&slow)
    })
}

/// Retention and DeleteRecords remove segments a running clean is rewriting: the clean
/// does not swap its output in (the group changed), reports `interrupted`, leaves the
/// checkpoint and no file behind, and the next clean works on what is left.
#[test]
fn retention_or_delete_records_during_a_clean_interrupts_its_swap() {
    for by_retention in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = open(dir.path(), config(), true);
        fill(&log, 4, Compression::None);
        roll(&log);
        let first_end = {
            let mut segments = list(dir.path())
                .into_iter()
                .filter(|(n, _)| n.ends_with(".log"))
                .map(|(n, _)| n[..20].parse::<i64>().unwrap())
                .collect::<Vec<_>>();
            segments.sort();
            segments[1]
        };
        let cleaner = slow_clean(&log);
        wait_until_writing(dir.path());
        if by_retention {
            // Every record is timestamped 1000: all sealed segments have expired.
            log.set_config(LogConfig {
                retention_ms: Some(100),
                ..config()
            });
            assert!(log.apply_retention(5000).unwrap().segments_deleted > 0);
        } else {
            assert_eq!(log.delete_records_before(first_end).unwrap(), first_end);
        }
        let start = log.log_start_offset();
        assert!(start >= first_end);
        let outcome = cleaner.join().unwrap().unwrap();
        assert!(outcome.interrupted, "{outcome:?}");
        assert_eq!(outcome.segments_replaced, 0, "{outcome:?}");
        assert_eq!(checkpoint(dir.path()), None);
        assert_no_cleaner_files(dir.path());
        let left = contents(&log);
        assert!(left.keys().all(|&o| o >= start));
        assert_eq!(left.len() as i64, log.log_end_offset() - start);
        log.set_config(config());
        let again = log.clean(&opts(3000)).unwrap();
        assert!(!again.interrupted);
        assert!(contents(&log).len() <= 10);
        // Reopened, the log is the same.
        let before = contents(&log);
        log.close().unwrap();
        let (log, report) = open(dir.path(), config(), true);
        assert!(report.damaged.is_empty());
        assert_eq!(contents(&log), before);
    }
}

/// `truncate_fully_and_start_at` stops a running clean and waits for it, as a
/// truncation does: when it returns, the clean has removed its output, and it reports
/// `interrupted`.
#[test]
fn truncate_fully_and_start_at_stops_a_running_clean_and_waits_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), config(), true);
    fill(&log, 4, Compression::None);
    roll(&log);
    let cleaner = slow_clean(&log);
    wait_until_writing(dir.path());
    log.truncate_fully_and_start_at(1000).unwrap();
    assert_no_cleaner_files(dir.path());
    let outcome = cleaner.join().unwrap().unwrap();
    assert!(outcome.interrupted, "{outcome:?}");
    assert_eq!(
        (
            log.log_start_offset(),
            log.log_end_offset(),
            log.segment_count()
        ),
        (1000, 1000, 1)
    );
    assert!(checkpoint(dir.path()).is_none_or(|c| c <= 1000));
    // The log goes on from 1000.
    for i in 0..3 {
        log.append(&one(Compression::None, 2, i, 1000, "k", Some("v")), 0, 1000)
            .unwrap();
    }
    roll(&log);
    log.clean(&opts(3000)).unwrap();
    assert_eq!(contents(&log).keys().copied().collect::<Vec<_>>(), [1002]);
}

/// Files of a clean that never committed (`.cleaned` outputs, index `.swap` files without
/// their `.log.swap`) are removed at open; the segments are intact.
#[test]
fn uncommitted_cleaner_files_are_removed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), config(), true);
    fill(&log, 4, Compression::None);
    let before = contents(&log);
    let end = log.log_end_offset();
    log.close().unwrap();
    let files = list(dir.path());
    let first = dir.path().join("00000000000000000000.log");
    let junk = [
        (
            "00000000000000000000.log.cleaned",
            std::fs::read(&first).unwrap(),
        ),
        ("00000000000000000000.index.cleaned", vec![0; 16]),
        ("00000000000000000000.timeindex.cleaned", vec![0; 24]),
        ("00000000000000000000.index.swap", vec![0; 16]),
        ("00000000000000000000.timeindex.swap", vec![0; 24]),
    ];
    for (name, bytes) in &junk {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    for clean in [true, false] {
        let (log, report) = open(dir.path(), config(), clean);
        assert!(report.damaged.is_empty());
        let names =
            |files: Vec<(String, u64)>| files.into_iter().map(|(n, _)| n).collect::<Vec<_>>();
        assert_eq!(
            names(list(dir.path())),
            names(files.clone()),
            "only the leftovers went"
        );
        assert_eq!(
            (log.log_end_offset(), contents(&log)),
            (end, before.clone())
        );
        log.close().unwrap();
    }
}

fn libc_eio() -> i32 {
    5
}

/// A truncation never shrinks a file under a running clean: it stops the clean (which
/// reports `interrupted`, removes its output and leaves the checkpoint) and waits for it.
#[test]
fn a_truncation_stops_a_running_clean_and_waits_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), config(), true);
    fill(&log, 4, Compression::None);
    roll(&log);
    // About 4 KB per second: the clean would take seconds.
    let slow = CleanOptions {
        io_max_bytes_per_sec: Some(4000),
        ..opts(2000)
    };
    let cleaner = std::thread::spawn({
        let log = log.clone();
        move || log.clean(&slow)
    });
    wait_until_writing(dir.path());
    let started = std::time::Instant::now();
    log.truncate_to(25).unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    let outcome = cleaner.join().unwrap().unwrap();
    assert!(outcome.interrupted, "{outcome:?}");
    assert_eq!(outcome.first_dirty_offset, 0);
    assert_eq!(log.log_end_offset(), 25);
    assert_eq!(contents(&log).len(), 25);
    assert!(list(dir.path())
        .iter()
        .all(|(n, _)| !n.ends_with(".cleaned") && !n.ends_with(".swap")));
    // The next clean works on what is left.
    roll(&log);
    log.clean(&opts(3000)).unwrap();
    assert_eq!(contents(&log).len(), 10);
}

#[test]
fn deleting_a_log_stops_a_running_clean_and_waits_for_it() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("t-0");
    let (log, _) = open(&dir, config(), true);
    fill(&log, 4, Compression::None);
    roll(&log);
    let slow = CleanOptions {
        io_max_bytes_per_sec: Some(4000),
        ..opts(2000)
    };
    let cleaner = std::thread::spawn({
        let log = log.clone();
        move || log.clean(&slow)
    });
    wait_until_writing(&dir);
    let started = std::time::Instant::now();
    log.delete().unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    let outcome = cleaner.join().unwrap().unwrap();
    assert!(outcome.interrupted, "{outcome:?}");
    // Nothing of the clean is left behind, and a log created there again is its own.
    assert!(!dir.exists());
    let (again, _) = open(&dir, config(), true);
    assert_eq!(again.log_end_offset(), 0);
    assert!(list(&dir)
        .iter()
        .all(|(n, _)| !n.ends_with(".cleaned") && !n.ends_with(".swap")));
}

/// A truncation lowers the cleaner checkpoint before it cuts any file: when writing the
/// checkpoint fails, nothing is cut, so no checkpoint is ever left above the log end.
/// Had it been (the cut done, the checkpoint not), records appended again below it would
/// pass for cleaned, and a key deleted there would come back once its tombstone goes.
#[test]
fn a_truncation_whose_checkpoint_write_fails_cuts_nothing_and_no_deleted_key_returns() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), config(), true);
    for i in 0..20 {
        log.append(
            &one(Compression::None, 1, i, 1000, &format!("f{i}"), Some("x")),
            0,
            1000,
        )
        .unwrap();
    }
    roll(&log);
    assert_eq!(log.clean(&opts(1000)).unwrap().first_dirty_offset, 20);
    let ckpt = dir.path().join(sluice_storage::cleaner::CHECKPOINT_FILE);
    let fault = faults::arm(
        Fault {
            times: 1,
            ..Fault::always(&ckpt, Op::Rename, libc_eio())
        }
        .on_this_thread(),
    );
    assert!(log.truncate_to(5).is_err());
    drop(fault);
    log.abandon();
    let (log, _) = open(dir.path(), config(), false);
    assert_eq!(log.log_end_offset(), 20, "nothing was cut");
    assert_eq!(checkpoint(dir.path()), Some(20));
    log.truncate_to(5).unwrap();
    assert_eq!(checkpoint(dir.path()), Some(5));
    appended_deleted_key_stays_deleted(&log);
}

/// Appends X, deletes it, appends more past offset 20 and cleans twice, long after the
/// tombstone's horizon: X must not come back.
fn appended_deleted_key_stays_deleted(log: &PartitionLog) {
    let mut seq = 0;
    let mut put = |key: &str, value: Option<&str>| {
        log.append(&one(Compression::None, 2, seq, 1000, key, value), 0, 1000)
            .unwrap();
        seq += 1;
    };
    put("X", Some("secret"));
    put("X", None);
    for i in 0..20 {
        put(&format!("g{i}"), Some("y"));
    }
    roll(log);
    log.clean(&opts(2000)).unwrap();
    put("z", Some("y"));
    roll(log);
    log.clean(&opts(5000)).unwrap();
    let x: Vec<_> = contents(log)
        .into_iter()
        .filter(|(_, (k, _))| k == "X")
        .collect();
    assert!(x.is_empty(), "deleted key X is back: {x:?}");
}

/// A checkpoint above the log end (as a crash between a cut and the checkpoint write
/// left it, before truncations lowered it first) is reset to the log start at open, and
/// `cleanable` ignores one met while the log is open.
#[test]
fn a_checkpoint_above_the_log_end_counts_as_the_log_start() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), config(), true);
    for i in 0..5 {
        log.append(
            &one(Compression::None, 1, i, 1000, &format!("f{i}"), Some("x")),
            0,
            1000,
        )
        .unwrap();
    }
    roll(&log);
    log.close().unwrap();
    let ckpt = dir.path().join(sluice_storage::cleaner::CHECKPOINT_FILE);
    std::fs::write(&ckpt, "20\n").unwrap();
    let (log, _) = open(dir.path(), config(), true);
    assert_eq!(checkpoint(dir.path()), Some(0), "reset at open");
    appended_deleted_key_stays_deleted(&log);
    // Stale while open: `cleanable` and `clean` treat it as the log start.
    let end = log.log_end_offset();
    std::fs::write(&ckpt, format!("{}\n", end + 100)).unwrap();
    assert_eq!(log.cleanable(&opts(6000)).unwrap().first_dirty_offset, 0);
    let outcome = log.clean(&opts(6000)).unwrap();
    assert_eq!(outcome.dirty_ratio_before, 1.0, "{outcome:?}");
    assert_eq!(checkpoint(dir.path()), Some(end));
}

/// Records above the high watermark may still be truncated away (a new leader's log
/// wins): no clean drops an older value for them, even with the default (unbounded)
/// `max_offset`.
#[test]
fn a_clean_never_passes_the_high_watermark() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), config(), true);
    let mut seq = 0;
    let mut put = |key: &str, value: &str| {
        log.append(
            &one(Compression::None, 1, seq, 1000, key, Some(value)),
            0,
            1000,
        )
        .unwrap();
        seq += 1;
    };
    put("a", "1");
    put("a", "2");
    roll(&log);
    put("b", "1");
    put("b", "2");
    roll_uncommitted(&log);
    put("c", "1");
    assert_eq!(log.high_watermark(), 2);
    let unbounded = CleanOptions {
        now_ms: 2000,
        ..CleanOptions::default()
    };
    assert_eq!(log.cleanable(&unbounded).unwrap().end_offset, 2);
    let outcome = log.clean(&unbounded).unwrap();
    assert_eq!(outcome.first_dirty_offset, 2, "{outcome:?}");
    let values: Vec<_> = contents(&log).into_values().collect();
    assert_eq!(
        values,
        [("a", "2"), ("b", "1"), ("b", "2"), ("c", "1")]
            .map(|(k, v)| (k.to_string(), Some(v.to_string())))
    );
}

/// A `.log.swap` whose end offset cannot be trusted (a damaged base offset, which the
/// CRC does not cover; a damaged body; batches that do not follow each other; an end
/// where no segment starts, as if it covered the active segment) makes open refuse the
/// log with `Unavailable` naming the file, and removes nothing: every segment, the active
/// one included, is intact, and the log opens as before once the file is gone.
#[test]
fn a_damaged_swap_file_removes_no_segment() {
    type Damage = fn(&Path, &mut Vec<u8>);
    fn batch_starts(bytes: &[u8]) -> Vec<usize> {
        let mut starts = Vec::new();
        let mut pos = 0;
        while pos < bytes.len() {
            starts.push(pos);
            pos += BatchHeader::new(&bytes[pos..]).unwrap().total_size() as usize;
        }
        starts
    }
    let damages: [(&str, Damage); 4] = [
        ("last base offset far ahead", |_, bytes| {
            let starts = batch_starts(bytes);
            let last = *starts.last().unwrap();
            bytes[last..last + 8].copy_from_slice(&1_000_000i64.to_be_bytes());
        }),
        ("a body byte flipped", |_, bytes| {
            let last = bytes.len() - 1;
            bytes[last] ^= 0x40;
        }),
        ("a batch missing in the middle", |_, bytes| {
            let starts = batch_starts(bytes);
            bytes.drain(starts[1]..starts[2]);
        }),
        ("every segment, the active one too", |dir, bytes| {
            bytes.clear();
            let mut logs: Vec<_> = list(dir)
                .into_iter()
                .filter(|(n, _)| n.ends_with(".log"))
                .collect();
            logs.sort();
            for (name, _) in logs {
                bytes.extend(std::fs::read(dir.join(name)).unwrap());
            }
        }),
    ];
    for (what, damage) in damages {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = open(dir.path(), config(), true);
        for i in 0..100 {
            let value = "x".repeat(40);
            let batch = one(
                Compression::None,
                1,
                i,
                1000,
                &format!("f{i}"),
                Some(&value),
            );
            log.append(&batch, 0, 1000).unwrap();
        }
        let end = log.log_end_offset();
        let segments = log.segment_count();
        assert!(segments > 2);
        log.close().unwrap();
        let before = list(dir.path());
        let mut bytes = std::fs::read(dir.path().join("00000000000000000000.log")).unwrap();
        damage(dir.path(), &mut bytes);
        let swap = dir.path().join("00000000000000000000.log.swap");
        std::fs::write(&swap, &bytes).unwrap();
        match PartitionLog::open(dir.path(), config(), &flusher(), false) {
            Err(StorageError::Unavailable { reason, .. }) => {
                assert!(reason.contains("log.swap"), "{what}: {reason}")
            }
            other => panic!("{what}: {:?}", other.map(|(l, _)| l.segment_count())),
        }
        let after: Vec<_> = list(dir.path())
            .into_iter()
            .filter(|(n, _)| !n.ends_with(".swap"))
            .collect();
        assert_eq!(after, before, "{what}: no file changed");
        std::fs::remove_file(&swap).unwrap();
        let (log, report) = open(dir.path(), config(), false);
        assert!(report.damaged.is_empty(), "{what}");
        assert_eq!((log.segment_count(), log.log_end_offset()), (segments, end));
        assert_eq!(contents(&log).len(), 100, "{what}");
    }
}

/// A compressed batch the cleaner empties is stored as a bare header with codec none
/// (no body to decompress): it passes stored-batch validation, decodes to no record, and
/// a follower accepts it from the leader.
#[test]
fn an_emptied_compressed_batch_has_no_codec_and_replicates() {
    for codec in [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = open(dir.path(), config(), true);
        log.append(&one(codec, 1, 0, 1000, "k", Some("a")), 0, 1000)
            .unwrap();
        log.append(&one(codec, 1, 1, 1000, "k", Some("b")), 0, 1000)
            .unwrap();
        roll(&log);
        log.clean(&opts(2000)).unwrap();
        let batches = read_all(&log, 0);
        let emptied = &batches[0];
        let header = sluice_storage::batch::validate_stored_batch(emptied).unwrap();
        assert_eq!(header.records_count(), 0);
        assert_eq!(
            header.compression().unwrap(),
            Compression::None,
            "{codec:?}"
        );
        assert_eq!(
            Records::decode(Bytes::from(emptied.clone()))
                .unwrap()
                .count(),
            0
        );
        let follower_dir = tempfile::tempdir().unwrap();
        let (follower, _) = open(follower_dir.path(), config(), true);
        follower.append_replicated(&batches.concat(), 1000).unwrap();
        assert_eq!(follower.log_end_offset(), 2);
        assert_eq!(contents(&follower), contents(&log), "{codec:?}");
    }
}

/// A clean that removes the record holding a segment's largest timestamp (a later value
/// of its key has a smaller CreateTime): ListOffsets -3 names the largest timestamp of
/// the records left, whether the batch that held it was rewritten or emptied, and
/// retention.ms goes by the records kept in a rewritten batch.
#[test]
fn after_a_clean_the_max_timestamp_and_retention_go_by_the_records_left() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), config(), true);
    // Emptied: the only record of batch 0 (timestamp 5000) is superseded.
    log.append(&one(Compression::None, 1, 0, 5000, "k", Some("a")), 0, 1000)
        .unwrap();
    log.append(&one(Compression::None, 1, 1, 1000, "k", Some("b")), 0, 1000)
        .unwrap();
    log.append(&one(Compression::None, 1, 2, 900, "j", Some("c")), 0, 1000)
        .unwrap();
    roll(&log);
    let before = log.max_timestamp_offset().unwrap().unwrap();
    assert_eq!((before.timestamp, before.offset), (5000, 0));
    log.clean(&opts(6000)).unwrap();
    let after = log.max_timestamp_offset().unwrap().unwrap();
    assert_eq!((after.timestamp, after.offset), (1000, 1));

    // Rewritten: batch {m@5000, n@100} keeps only n.
    let dir = tempfile::tempdir().unwrap();
    let retention = LogConfig {
        retention_ms: Some(1000),
        ..config()
    };
    let (log, _) = open(dir.path(), retention, true);
    let mut builder = BatchBuilder::new(Compression::Zstd).producer(1, 0, 0);
    builder.push(5000, Some(b"m"), Some(b"1"), &[]);
    builder.push(100, Some(b"n"), Some(b"1"), &[]);
    log.append(&builder.build().unwrap(), 0, 1000).unwrap();
    log.append(&one(Compression::None, 1, 2, 200, "m", Some("2")), 0, 1000)
        .unwrap();
    roll(&log);
    log.append(&one(Compression::None, 1, 3, 9000, "o", Some("1")), 0, 9000)
        .unwrap();
    log.clean(&opts(6000)).unwrap();
    let after = log.max_timestamp_offset().unwrap().unwrap();
    assert_eq!((after.timestamp, after.offset), (9000, 3));
    // The cleaned segment's newest record is 200 old: expired at 1201, not 5001.
    let outcome = log.apply_retention(1300).unwrap();
    assert_eq!(log.log_start_offset(), 3, "{outcome:?}");
}
