//! Open files of a log: a partition holds one descriptor (its active segment's `.log`)
//! however many segments it has. Sealed segments are read through their mappings and
//! the indexes are mapped, so neither keeps a file open; the rare operations that need
//! a sealed segment's file (truncation into it, recovery) open it for that call only.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use sluice_storage::LogConfig;

/// Files under `dir` that this process has open, from `/proc/self/fd`.
fn open_files_in(dir: &Path) -> Vec<PathBuf> {
    let dir = dir.canonicalize().expect("canonical temp dir");
    fs::read_dir("/proc/self/fd")
        .expect("list /proc/self/fd")
        .filter_map(|entry| fs::read_link(entry.ok()?.path()).ok())
        .filter(|target| target.starts_with(&dir))
        .collect()
}

/// A log of many small segments (each batch ~1 KiB, segments of 4 KiB).
fn many_segments(dir: &Path, config: &LogConfig) -> usize {
    let (log, _) = open(dir, config.clone(), true);
    for i in 0..80 {
        log.append(&make_batch(2, 500, 1_000 + i), 0, 0).unwrap();
    }
    assert!(
        log.segment_count() >= 20,
        "{} segments",
        log.segment_count()
    );
    // Rolled segments give their descriptor up once synced; flush makes that happen now
    // instead of at the flusher's next turn.
    log.flush().unwrap();
    let open = open_files_in(dir);
    assert_eq!(
        open.len(),
        1,
        "only the active segment's .log should be open, found {open:?}"
    );
    let batches = read_all(&log, 0).len();
    assert_eq!(batches, 80, "every batch readable from the mappings");
    log.close().unwrap();
    assert_eq!(
        open_files_in(dir),
        Vec::<PathBuf>::new(),
        "close releases all"
    );
    log.segment_count()
}

#[test]
fn sealed_segments_and_indexes_hold_no_descriptor() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_segments();
    let segments = many_segments(dir.path(), &config);

    // Reopened after a clean shutdown: loaded, not rescanned.
    let (log, report) = open(dir.path(), config.clone(), true);
    assert_eq!(report.segments, segments);
    assert_eq!(open_files_in(dir.path()).len(), 1);
    assert_eq!(read_all(&log, 0).len(), 80);
    log.abandon();

    // After an unclean one with no recovery point: every segment rescanned and its
    // indexes rebuilt.
    fs::remove_file(dir.path().join("recovery-point")).unwrap();
    let (log, report) = open(dir.path(), config.clone(), false);
    assert_eq!(report.segments_recovered, segments);
    assert_eq!(open_files_in(dir.path()).len(), 1);
    assert_eq!(read_all(&log, 0).len(), 80);

    // Truncation into an early sealed segment opens its file for the cut, then keeps
    // it as the new active segment's; appends go on from there.
    log.truncate_to(10).unwrap();
    assert_eq!(log.log_end_offset(), 10);
    assert_eq!(open_files_in(dir.path()).len(), 1);
    let info = log.append(&make_batch(2, 500, 5_000), 0, 0).unwrap();
    assert_eq!(info.base_offset, 10);
    assert_eq!(read_all(&log, 0).len(), 6);
    log.close().unwrap();
    assert!(open_files_in(dir.path()).is_empty());
}

#[test]
fn retention_and_rolls_keep_one_descriptor() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        retention_bytes: Some(8 * 1024),
        ..small_segments()
    };
    let (log, _) = open(dir.path(), config, true);
    for i in 0..60 {
        log.append(&make_batch(2, 500, 1_000 + i), 0, 0).unwrap();
        if i % 10 == 9 {
            log.apply_retention(sluice_storage::now_ms()).unwrap();
            log.flush().unwrap();
            // The flusher thread may be between syncing a rolled segment and closing its
            // descriptor as `flush` returns (it failed CI once with 2): poll, bounded.
            let deadline = Instant::now() + Duration::from_secs(10);
            while open_files_in(dir.path()).len() > 1 {
                assert!(
                    Instant::now() < deadline,
                    "after {} appends: {:?}",
                    i + 1,
                    open_files_in(dir.path())
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    let first = log.log_start_offset();
    assert!(first > 0, "retention deleted old segments");
    let read = read_to_end(&log, first, usize::MAX, false).unwrap();
    assert!(!read.records.is_empty());
    log.close().unwrap();
}

#[test]
fn a_roll_by_time_gives_the_old_descriptor_up_without_another_append() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_ms: Some(0),
        ..small_segments()
    };
    let (log, _) = open(dir.path(), config, true);
    log.append(&make_batch(2, 100, 1_000), 0, 0).unwrap();
    log.flush().unwrap();
    log.roll_if_due(sluice_storage::now_ms() + 1_000).unwrap();
    assert_eq!(log.segment_count(), 2);
    // The flusher syncs the rolled segment on its own; poll for it, bounded.
    let deadline = Instant::now() + Duration::from_secs(10);
    while open_files_in(dir.path()).len() > 1 {
        assert!(
            Instant::now() < deadline,
            "the rolled segment still holds its descriptor: {:?}",
            open_files_in(dir.path())
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    log.close().unwrap();
}
