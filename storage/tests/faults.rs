//! Failed writes and syncs, injected through the `faults` seam: a log that cannot write
//! or sync goes offline, reports nothing durable that was not synced, releases durable
//! waiters with an error, and comes back by itself once the disk works again, with a
//! tail that holds only whole, valid batches.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use sluice_storage::batch::{self, BatchHeader};
use sluice_storage::faults::{self, Fault, Op};
use sluice_storage::{FlushPolicy, LogConfig, PartitionLog, StorageError};

const DEADLINE: Duration = Duration::from_secs(10);

fn always_flush() -> LogConfig {
    LogConfig {
        flush: FlushPolicy::Always,
        retention_ms: None,
        ..LogConfig::default()
    }
}

/// Polls `done` every 10 ms until it holds or the deadline passes.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn segment_file_len(dir: &Path) -> u64 {
    std::fs::metadata(dir.join("00000000000000000000.log"))
        .unwrap()
        .len()
}

/// Every batch of the log is whole and valid, offsets follow each other from 0, and the
/// log holds exactly `expected` records.
fn assert_log_holds(log: &PartitionLog, expected: i64) {
    let mut next = 0;
    for stored in read_all(log, 0) {
        batch::validate_stored_batch(&stored).expect("every stored batch is valid");
        let header = BatchHeader::new(&stored).unwrap();
        assert_eq!(header.base_offset(), next, "offsets follow each other");
        next = header.next_offset();
    }
    assert_eq!(next, expected);
    assert_eq!(log.log_end_offset(), expected);
}

#[test]
fn a_failed_fsync_takes_the_log_offline_and_reports_nothing_durable_until_it_heals() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), always_flush(), true);
    let first = log.append(&make_batch(5, 100, 1_000), 0, 0).unwrap();
    log.wait_durable(first.last_offset + 1).wait().unwrap();
    assert_eq!(log.durable_offset(), 5);

    let fault = faults::arm(Fault::always(dir.path(), Op::Sync, libc::EIO));
    let second = log.append(&make_batch(5, 100, 2_000), 0, 0).unwrap();
    let waited = log.wait_durable(second.last_offset + 1).wait();
    assert!(
        matches!(waited, Err(StorageError::Offline { .. })),
        "an acks=all waiter gets an error, not an acknowledgement: {waited:?}"
    );
    assert!(log.is_offline());
    assert_eq!(log.durable_offset(), 5, "the unsynced batch is not durable");
    assert!(matches!(
        log.append(&make_batch(1, 10, 3_000), 0, 0),
        Err(StorageError::Offline { .. })
    ));
    assert!(matches!(log.flush(), Err(StorageError::Offline { .. })));

    // While syncs still fail, the probes fail and the log stays offline.
    let calls = fault.calls();
    wait_until("a few heal probes", || fault.calls() >= calls + 3);
    assert!(log.is_offline());
    assert_eq!(log.durable_offset(), 5);

    // The rewrite of the suspect range is counted by a fault that never fails.
    let writes = faults::arm(Fault {
        times: 0,
        ..Fault::always(dir.path(), Op::Write, libc::EIO)
    });
    fault.clear();
    wait_until("the log heals", || !log.is_offline());
    assert!(
        writes.calls() >= 1,
        "the range written since the last good sync was written again before its sync"
    );
    assert_eq!(
        log.durable_offset(),
        10,
        "durable once synced after the heal"
    );
    assert_log_holds(&log, 10);
    let third = log.append(&make_batch(3, 10, 4_000), 0, 0).unwrap();
    log.wait_durable(third.last_offset + 1).wait().unwrap();
    assert_log_holds(&log, 13);
    log.close().unwrap();
    let (reopened, report) = open(dir.path(), always_flush(), true);
    assert_eq!(report.bytes_truncated, 0);
    assert_log_holds(&reopened, 13);
}

#[test]
fn a_torn_write_is_cut_before_the_log_takes_appends_again() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), LogConfig::default(), true);
    log.append(&make_batch(4, 100, 1_000), 0, 0).unwrap();
    let published = log.size_bytes();

    // A short write then ENOSPC, as on a full disk: 100 bytes of the batch reach the file.
    let fault = faults::arm(Fault {
        times: 1,
        torn: 100,
        ..Fault::always(dir.path(), Op::Write, libc::ENOSPC)
    });
    let failed = log.append(&make_batch(4, 100, 2_000), 0, 0);
    match failed {
        Err(StorageError::Io { source, .. }) => {
            assert_eq!(source.raw_os_error(), Some(libc::ENOSPC))
        }
        other => panic!("expected the injected ENOSPC, got {other:?}"),
    }
    assert!(log.is_offline());
    assert_eq!(
        segment_file_len(dir.path()),
        published + 100,
        "torn bytes on disk"
    );
    assert_eq!(
        log.log_end_offset(),
        4,
        "nothing of the failed batch is published"
    );

    wait_until("the log heals", || !log.is_offline());
    drop(fault);
    assert_eq!(
        segment_file_len(dir.path()),
        published,
        "the torn bytes were cut"
    );
    log.append(&make_batch(2, 100, 3_000), 0, 0).unwrap();
    assert_log_holds(&log, 6);
    log.close().unwrap();
    // Even a crash-recovery open (every byte rescanned) finds nothing to cut.
    let (reopened, report) = open(dir.path(), LogConfig::default(), false);
    assert_eq!(report.bytes_truncated, 0);
    assert_log_holds(&reopened, 6);
}

#[test]
fn a_log_whose_tail_cannot_be_rewritten_stays_offline() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), always_flush(), true);
    log.append(&make_batch(2, 100, 1_000), 0, 0).unwrap();
    log.flush().unwrap();
    let syncs = faults::arm(Fault::always(dir.path(), Op::Sync, libc::EIO));
    let info = log.append(&make_batch(2, 100, 2_000), 0, 0).unwrap();
    assert!(log.wait_durable(info.last_offset + 1).wait().is_err());
    // Syncs work again, but the rewrite of the suspect range fails: no heal.
    let writes = faults::arm(Fault::always(dir.path(), Op::Write, libc::EIO));
    syncs.clear();
    wait_until("a heal attempt reached the rewrite", || writes.calls() >= 2);
    assert!(log.is_offline());
    assert_eq!(log.durable_offset(), 2);
    writes.clear();
    wait_until("the log heals", || !log.is_offline());
    assert_eq!(log.durable_offset(), 4);
}

#[test]
fn a_failed_write_of_an_offline_log_closes_cleanly_once_the_disk_works() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), LogConfig::default(), true);
    log.append(&make_batch(3, 100, 1_000), 0, 0).unwrap();
    let fault = faults::arm(Fault {
        times: 1,
        torn: 10,
        ..Fault::always(dir.path(), Op::Write, libc::ENOSPC)
    });
    assert!(log.append(&make_batch(3, 100, 2_000), 0, 0).is_err());
    drop(fault);
    // Closed before the flusher's first probe: close heals first.
    log.close()
        .expect("an offline log whose disk works again closes cleanly");
    let (reopened, report) = open(dir.path(), LogConfig::default(), true);
    assert_eq!(report.bytes_truncated, 0);
    assert_log_holds(&reopened, 3);
}

#[test]
fn a_segment_roll_does_not_fsync_on_the_append_path() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        flush: FlushPolicy::Os,
        ..small_segments()
    };
    let (log, _) = open(dir.path(), config, true);
    let batch = make_batch(4, 200, 1_000);
    log.append(&batch, 0, 0).unwrap();
    // Checkpoints the recovery point, so no sync is due until the roll.
    log.flush().unwrap();
    // Every sync made on this thread fails from now on: an append that rolls must still
    // succeed, since the roll leaves the syncs (segment, producer-state snapshot, recovery
    // point) to the flusher. Only this thread's calls: the flusher may still be working
    // off the first append's request, and its syncs are allowed.
    let fault = faults::arm(Fault::always(dir.path(), Op::Sync, libc::EIO).on_this_thread());
    let segments = log.segment_count();
    let mut appended = 0;
    while log.segment_count() == segments {
        log.append(&batch, 0, 0)
            .expect("an append that rolls does not sync");
        appended += 1;
        assert!(appended < 100, "no roll after 100 appends");
    }
    drop(fault);
}

#[test]
fn the_snapshot_of_a_roll_is_written_by_the_flusher() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), small_segments(), true);
    let batch = make_batch(4, 200, 1_000);
    while log.segment_count() < 3 {
        log.append(&batch, 0, 0).unwrap();
    }
    wait_until("snapshots of the rolls", || {
        std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .any(|e| e.file_name().to_string_lossy().ends_with(".snapshot"))
    });
}

#[test]
fn a_failed_roll_heals_and_the_log_rolls_again_later() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), small_segments(), true);
    let batch = make_batch(4, 200, 1_000);
    log.append(&batch, 0, 0).unwrap();
    log.flush().unwrap();
    // The roll's first resize (trimming the sealed segment's index) fails.
    let fault = faults::arm(Fault {
        times: 1,
        ..Fault::always(dir.path(), Op::SetLen, libc::ENOSPC)
    });
    let mut appended = 1;
    let failed = loop {
        match log.append(&batch, 0, 0) {
            Ok(_) => appended += 1,
            Err(e) => break e,
        }
        assert!(appended < 100, "no roll after 100 appends");
    };
    assert!(matches!(failed, StorageError::Io { .. }), "{failed:?}");
    assert_eq!(
        log.segment_count(),
        1,
        "the failed roll published no segment"
    );
    wait_until("the log heals", || !log.is_offline());
    drop(fault);
    // Appends go on, and the next roll works.
    while log.segment_count() < 3 {
        log.append(&batch, 0, 0).unwrap();
        appended += 1;
        assert!(appended < 200, "no roll after the heal");
    }
    assert_log_holds(&log, 4 * appended as i64);
    log.close().unwrap();
    let (reopened, report) = open(dir.path(), small_segments(), false);
    assert_eq!(report.bytes_truncated, 0);
    assert_log_holds(&reopened, 4 * appended as i64);
}

#[test]
fn a_failed_append_leaves_no_max_timestamp_of_its_batch() {
    let dir = tempfile::tempdir().unwrap();
    // An index entry for every batch after the first, so the second append needs the
    // first page of the (sparse) offset index.
    let config = LogConfig {
        index_interval_bytes: 1,
        ..always_flush()
    };
    let (log, _) = open(dir.path(), config.clone(), true);
    log.append(&make_batch(1, 50, 1_000), 0, 0).unwrap();
    // Allocating that page fails (a full disk), after the batch's bytes were written and
    // its timestamp seen: the append fails and is never published.
    let index = dir.path().join("00000000000000000000.index");
    let fault = faults::arm(
        Fault {
            times: 1,
            ..Fault::always(&index, Op::Write, libc::ENOSPC)
        }
        .on_this_thread(),
    );
    let failed = log.append(&make_batch(1, 50, 9_999), 0, 0).unwrap_err();
    assert!(matches!(failed, StorageError::Io { .. }), "{failed:?}");
    assert_eq!(fault.calls(), 1, "the index allocation was what failed");
    drop(fault);
    wait_until("the log heals", || !log.is_offline());
    assert_eq!(log.log_end_offset(), 1);
    let max = log
        .max_timestamp_offset()
        .unwrap()
        .map(|t| (t.offset, t.timestamp));
    assert_eq!(
        max,
        Some((0, 1_000)),
        "the failed batch's timestamp is gone"
    );
    // An older batch at the failed one's offset is not taken for the max either.
    log.append(&make_batch(1, 50, 500), 0, 0).unwrap();
    let max = log
        .max_timestamp_offset()
        .unwrap()
        .map(|t| (t.offset, t.timestamp));
    assert_eq!(max, Some((0, 1_000)));
    // Nor is its timestamp written into the time index when the segment is sealed.
    log.close().unwrap();
    let (log, _) = open(dir.path(), config, true);
    let max = log
        .max_timestamp_offset()
        .unwrap()
        .map(|t| (t.offset, t.timestamp));
    assert_eq!(max, Some((0, 1_000)), "after a clean restart");
    assert_log_holds(&log, 2);
}
