//! Damaged disks (issue 14, section 4): recovery never deletes intact data. Damage in a
//! sealed segment, below the recovery point, or a segment file missing between two
//! others is kept and reported as a `DamagedRange`; reads inside it are refused, and the
//! whole batches before and after it stay readable, across restarts.
//!
//! Each case damages the files of a real log on disk the way the probes did, and
//! is run after a clean shutdown (trusted indexes: damage found by the load or by the
//! first read that meets it) and after an unclean one with no recovery point (every
//! segment rescanned: damage found by recovery).

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;
use sluice_storage::batch::{self, BatchHeader};
use sluice_storage::{DamagedRange, LogConfig, PartitionLog, StorageError};

/// A closed log of `batches` batches over several small segments; returns the batches as
/// stored.
fn closed_log(dir: &Path, config: &LogConfig, batches: usize) -> Vec<Vec<u8>> {
    let (log, _) = open(dir, config.clone(), true);
    for i in 0..batches {
        log.append(&make_batch(1 + i % 4, 40 + i % 7, 1000 + i as i64), 0, 0)
            .unwrap();
    }
    let stored = read_all(&log, 0);
    log.close().unwrap();
    stored
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut logs: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs
}

fn base_of(path: &Path) -> i64 {
    path.file_stem().unwrap().to_str().unwrap().parse().unwrap()
}

/// (position, base offset, next offset) of every batch in a segment file's bytes.
fn batch_layout(bytes: &[u8]) -> Vec<(usize, i64, i64)> {
    let mut layout = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let size = batch::check_framing(&bytes[at..], usize::MAX).unwrap();
        let header = BatchHeader::new(&bytes[at..]).unwrap();
        layout.push((at, header.base_offset(), header.next_offset()));
        at += size;
    }
    layout
}

/// Reopens as after a clean shutdown, or as after a crash with every segment rescanned.
fn reopen(dir: &Path, config: &LogConfig, clean: bool) -> (PartitionLog, Vec<DamagedRange>) {
    if !clean {
        let _ = fs::remove_file(dir.join("recovery-point"));
    }
    let (log, report) = open(dir, config.clone(), clean);
    assert_eq!(report.bytes_truncated, 0, "nothing may be cut");
    (log, report.damaged)
}

/// Reads the whole log as a consumer that seeks past damage would: from the log start,
/// and on `Damaged` on to the range's end. Returns the batches and the ranges met.
fn read_around(log: &PartitionLog) -> (Vec<Vec<u8>>, Vec<DamagedRange>) {
    let mut batches = Vec::new();
    let mut met = Vec::new();
    let mut offset = log.log_start_offset();
    for _ in 0..100_000 {
        if offset >= log.log_end_offset() {
            return (batches, met);
        }
        match read_to_end(log, offset, usize::MAX, false) {
            Ok(read) => {
                let chunk = split(&read.records);
                assert!(!chunk.is_empty(), "read at {offset} returned nothing");
                assert_eq!(base_offset(&chunk[0]), offset, "a read skipped offsets");
                for b in chunk {
                    offset = BatchHeader::new(&b).unwrap().next_offset();
                    batches.push(b);
                }
            }
            Err(StorageError::Damaged { range }) => {
                assert!(range.contains_offset(offset), "{range:?} vs {offset}");
                offset = range.end_offset;
                met.push(range);
            }
            Err(e) => panic!("read at {offset}: {e}"),
        }
    }
    panic!("read_around did not finish");
}

/// `stored` without the batches whose offsets lie in `[first, end)`.
fn without(stored: &[Vec<u8>], first: i64, end: i64) -> Vec<Vec<u8>> {
    stored
        .iter()
        .filter(|b| {
            let h = BatchHeader::new(b).unwrap();
            h.next_offset() <= first || h.base_offset() >= end
        })
        .cloned()
        .collect()
}

/// Checks a damaged log: exactly `expected` range, reads around it give every other
/// batch, a read inside it is refused, a read from the segment start stops right before
/// it; appends go on after the log end, and all of it holds again after a restart.
fn check_damaged(
    dir: &Path,
    config: &LogConfig,
    clean: bool,
    stored: &[Vec<u8>],
    expected: (i64, i64),
    segment_start: i64,
) {
    let (log, reported) = reopen(dir, config, clean);
    let (first, end) = expected;
    let end_before = BatchHeader::new(stored.last().unwrap())
        .unwrap()
        .next_offset();
    assert_eq!(log.log_end_offset(), end_before, "the log end did not move");
    // The first read of the damaged segment returns the whole batches before the damage.
    if first > segment_start {
        let read = read_to_end(&log, segment_start, usize::MAX, false).unwrap();
        let chunk = split(&read.records);
        let last = BatchHeader::new(chunk.last().unwrap()).unwrap();
        assert_eq!(
            last.next_offset(),
            first,
            "read stops right before the damage"
        );
    }
    for offset in [first, (first + end) / 2, end - 1] {
        match read_to_end(&log, offset, usize::MAX, true) {
            Err(StorageError::Damaged { range }) => {
                assert_eq!((range.first_offset, range.end_offset), expected)
            }
            other => panic!("read at {offset} in the damage: {other:?}"),
        }
    }
    let read = read_to_end(&log, end, usize::MAX, true).unwrap();
    assert_eq!(base_offset(&split(&read.records)[0]), end);
    let (batches, met) = read_around(&log);
    assert_eq!(met.len(), 1, "{met:?}");
    assert_eq!((met[0].first_offset, met[0].end_offset), expected);
    assert!(
        batches == without(stored, first, end),
        "intact batches differ"
    );
    let ranges = log.damaged_ranges();
    assert_eq!(ranges.len(), 1);
    assert_eq!((ranges[0].first_offset, ranges[0].end_offset), expected);
    if !clean {
        // Recovery scanned everything, so it reported the damage at open.
        assert_eq!(reported, ranges);
    }
    let info = log.append(&make_batch(3, 20, 5000), 0, 0).unwrap();
    assert_eq!(info.base_offset, end_before, "offsets are never reused");
    log.close().unwrap();

    // A restart changes nothing: same damage, same data, nothing cut.
    let (log, _) = reopen(dir, config, true);
    let (again, met) = read_around(&log);
    assert_eq!(met.len(), 1);
    assert_eq!((met[0].first_offset, met[0].end_offset), expected);
    assert_eq!(again.len(), batches.len() + 1);
    assert!(again[..batches.len()] == batches[..]);
    log.close().unwrap();
}

#[test]
fn a_cut_sealed_segment_keeps_every_later_segment_readable() {
    let config = small_segments();
    for clean in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let stored = closed_log(dir.path(), &config, 150);
        let logs = segment_files(dir.path());
        assert!(logs.len() >= 6, "{} segments", logs.len());
        let victim = &logs[1];
        let bytes = fs::read(victim).unwrap();
        let cut_to = bytes.len() - 500;
        let layout = batch_layout(&bytes);
        // Lost: every batch not wholly below the cut.
        let first = layout
            .iter()
            .enumerate()
            .find(|(i, _)| layout.get(i + 1).map_or(bytes.len(), |n| n.0) > cut_to)
            .unwrap()
            .1
             .1;
        let end = base_of(&logs[2]);
        fs::OpenOptions::new()
            .write(true)
            .open(victim)
            .unwrap()
            .set_len(cut_to as u64)
            .unwrap();
        check_damaged(
            dir.path(),
            &config,
            clean,
            &stored,
            (first, end),
            base_of(victim),
        );
        assert_eq!(
            segment_files(dir.path()),
            logs,
            "no segment file was removed"
        );
        assert_eq!(fs::metadata(victim).unwrap().len(), cut_to as u64);
    }
}

#[test]
fn sixteen_flipped_bytes_in_a_sealed_segment_lose_only_their_batches() {
    let config = small_segments();
    for clean in [true, false] {
        // Several positions, so the flip lands in bodies, headers, lengths and offsets.
        for shift in [0usize, 5, 13, 29, 47, 61, 97] {
            let dir = tempfile::tempdir().unwrap();
            let stored = closed_log(dir.path(), &config, 150);
            let logs = segment_files(dir.path());
            let victim = &logs[2];
            let mut bytes = fs::read(victim).unwrap();
            let layout = batch_layout(&bytes);
            let from = bytes.len() / 2 + shift;
            for b in &mut bytes[from..from + 16] {
                *b ^= 0xff;
            }
            fs::write(victim, &bytes).unwrap();
            let hit: Vec<_> = layout
                .iter()
                .enumerate()
                .filter(|(i, (at, _, _))| {
                    let stop = layout.get(i + 1).map_or(bytes.len(), |n| n.0);
                    *at < from + 16 && from < stop
                })
                .map(|(_, l)| *l)
                .collect();
            let expected = (hit[0].1, hit.last().unwrap().2);
            check_damaged(
                dir.path(),
                &config,
                clean,
                &stored,
                expected,
                base_of(victim),
            );
        }
    }
}

#[test]
fn a_missing_middle_segment_is_a_reported_gap_not_a_silent_one() {
    let config = small_segments();
    for clean in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let stored = closed_log(dir.path(), &config, 150);
        let logs = segment_files(dir.path());
        let gone = &logs[2];
        for suffix in ["log", "index", "timeindex"] {
            fs::remove_file(gone.with_extension(suffix)).unwrap();
        }
        let expected = (base_of(gone), base_of(&logs[3]));
        let (log, reported) = reopen(dir.path(), &config, clean);
        assert_eq!(reported.len(), 1, "the gap is reported at open");
        assert_eq!((reported[0].first_offset, reported[0].end_offset), expected);
        assert_eq!(reported[0].file, logs[1]);
        drop(log);
        check_damaged(
            dir.path(),
            &config,
            clean,
            &stored,
            expected,
            base_of(&logs[1]),
        );
    }
}

#[test]
fn a_cut_active_segment_after_a_clean_shutdown_is_not_truncated_below_the_recovery_point() {
    let config = small_segments();
    let dir = tempfile::tempdir().unwrap();
    let stored = closed_log(dir.path(), &config, 150);
    let logs = segment_files(dir.path());
    let active = logs.last().unwrap();
    let bytes = fs::read(active).unwrap();
    let layout = batch_layout(&bytes);
    assert!(layout.len() >= 3);
    // Cut in the middle of the second to last batch: two batches lost.
    let (at, first, _) = layout[layout.len() - 2];
    fs::OpenOptions::new()
        .write(true)
        .open(active)
        .unwrap()
        .set_len(at as u64 + 30)
        .unwrap();
    let end = BatchHeader::new(stored.last().unwrap())
        .unwrap()
        .next_offset();
    // The close wrote the recovery point at the log end: those records were synced, so
    // their loss is damage, and their offsets are not handed out again.
    let (log, reported) = reopen(dir.path(), &config, true);
    assert_eq!(reported.len(), 1);
    assert_eq!(
        (reported[0].first_offset, reported[0].end_offset),
        (first, end)
    );
    assert_eq!(log.log_end_offset(), end);
    let info = log.append(&make_batch(2, 10, 0), 0, 0).unwrap();
    assert_eq!(info.base_offset, end);
    let (batches, met) = read_around(&log);
    assert_eq!(met.len(), 1);
    assert_eq!(batches.len(), stored.len() - 2 + 1);
    assert!(batches[..stored.len() - 2] == stored[..stored.len() - 2]);
}

#[test]
fn an_unreadable_segment_file_fails_the_open_of_that_log_only() {
    let config = small_segments();
    let dir = tempfile::tempdir().unwrap();
    closed_log(dir.path(), &config, 60);
    let logs = segment_files(dir.path());
    // A directory where a segment file should be: the open of the file fails (EISDIR)
    // even for root, who is not stopped by permissions.
    let victim = &logs[1];
    let saved = fs::read(victim).unwrap();
    fs::remove_file(victim).unwrap();
    fs::create_dir(victim).unwrap();
    let err = PartitionLog::open(dir.path(), config.clone(), &flusher(), true)
        .err()
        .expect("open must fail");
    assert!(
        err.to_string().contains(&victim.display().to_string()),
        "{err}"
    );
    // The files are untouched: put the segment back and everything is there again.
    fs::remove_dir(victim).unwrap();
    fs::write(victim, &saved).unwrap();
    let (log, report) = open(dir.path(), config.clone(), true);
    assert!(report.damaged.is_empty());
    assert_eq!(segment_files(dir.path()), logs);
    log.close().unwrap();

    // What the broker keeps in place of such a log refuses every operation.
    let offline = PartitionLog::unavailable(dir.path(), config, &flusher(), err.to_string());
    assert!(offline.is_offline());
    assert!(matches!(
        read_to_end(&offline, 0, 100, true),
        Err(StorageError::Unavailable { .. })
    ));
    assert!(matches!(
        offline.append(&make_batch(1, 1, 0), 0, 0),
        Err(StorageError::Unavailable { .. })
    ));
    assert!(matches!(
        offline.offset_for_timestamp(0),
        Err(StorageError::Unavailable { .. })
    ));
    offline.close().unwrap();
}

#[test]
fn a_segment_file_without_read_permission_fails_the_open() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        eprintln!(
            "skipped: running as root, who reads files whatever their mode; \
             an_unreadable_segment_file_fails_the_open_of_that_log_only covers the same path"
        );
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let config = small_segments();
    let dir = tempfile::tempdir().unwrap();
    closed_log(dir.path(), &config, 60);
    let victim = segment_files(dir.path())[1].clone();
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o000)).unwrap();
    let err = PartitionLog::open(dir.path(), config, &flusher(), true)
        .err()
        .expect("open must fail");
    assert!(
        err.to_string().contains(&victim.display().to_string()),
        "{err}"
    );
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o644)).unwrap();
}

#[test]
fn a_truncation_below_a_gap_forgets_it() {
    let config = small_segments();
    let dir = tempfile::tempdir().unwrap();
    let stored = closed_log(dir.path(), &config, 150);
    let logs = segment_files(dir.path());
    for suffix in ["log", "index", "timeindex"] {
        fs::remove_file(logs[2].with_extension(suffix)).unwrap();
    }
    let (log, _) = reopen(dir.path(), &config, true);
    assert_eq!(log.damaged_ranges().len(), 1);
    // Cut back into the segment before the gap: the offsets of the gap are handed out
    // again and must read back like any others.
    let cut = base_of(&logs[1]) + 1;
    log.truncate_to(cut).unwrap();
    assert!(log.damaged_ranges().is_empty());
    let kept = log.log_end_offset();
    while log.log_end_offset() < base_of(&logs[3]) + 10 {
        log.append(&make_batch(3, 30, 0), 0, 0).unwrap();
    }
    let (batches, met) = read_around(&log);
    assert!(met.is_empty(), "{met:?}");
    assert!(
        batches[..stored.iter().filter(|b| base_offset(b) < kept).count()]
            .iter()
            .zip(stored.iter())
            .all(|(a, b)| a == b)
    );
    log.close().unwrap();
}

#[test]
fn overlapping_segment_files_fail_the_open_and_nothing_is_removed() {
    let config = small_segments();
    let dir = tempfile::tempdir().unwrap();
    closed_log(dir.path(), &config, 150);
    let logs = segment_files(dir.path());
    // Segment 3's files renamed one offset lower: it now claims an offset segment 2 holds.
    let base = base_of(&logs[3]);
    for suffix in ["log", "index", "timeindex"] {
        fs::rename(
            logs[3].with_extension(suffix),
            dir.path().join(format!("{:020}.{suffix}", base - 1)),
        )
        .unwrap();
    }
    let before = segment_files(dir.path());
    let err = PartitionLog::open(dir.path(), config, &flusher(), true)
        .err()
        .expect("open must fail");
    assert!(matches!(err, StorageError::Unavailable { .. }), "{err}");
    assert!(err.to_string().contains("overlapping"), "{err}");
    assert_eq!(
        segment_files(dir.path()),
        before,
        "no segment file was removed"
    );
}

#[test]
fn readers_that_meet_the_same_damage_at_once_all_get_the_batches_before_it() {
    let config = small_segments();
    for round in 0..10 {
        let dir = tempfile::tempdir().unwrap();
        closed_log(dir.path(), &config, 60);
        let victim = &segment_files(dir.path())[1];
        let mut bytes = fs::read(victim).unwrap();
        let layout = batch_layout(&bytes);
        // A record byte of the third batch: found only when served (clean start).
        let (at, first, _) = layout[2];
        bytes[at + 70 + round] ^= 0x40;
        fs::write(victim, &bytes).unwrap();
        let (log, _) = open(dir.path(), config.clone(), true);
        let start = layout[0].1;
        let results: Vec<_> = std::thread::scope(|s| {
            let readers: Vec<_> = (0..4)
                .map(|_| s.spawn(|| read_to_end(&log, start, usize::MAX, false)))
                .collect();
            readers.into_iter().map(|r| r.join().unwrap()).collect()
        });
        for result in results {
            let read = result.expect("a read before the damage succeeds");
            let chunk = split(&read.records);
            assert_eq!(chunk.len(), 2);
            assert_eq!(BatchHeader::new(&chunk[1]).unwrap().next_offset(), first);
        }
        assert_eq!(log.damaged_ranges().len(), 1);
    }
}

/// A log of 1,000 one-record batches in its active segment, all fsynced by `flush`, then
/// abandoned as a crash would leave it. Returns the batches as stored.
fn synced_then_crashed(dir: &Path) -> Vec<Vec<u8>> {
    let (log, _) = open(dir, LogConfig::default(), false);
    for i in 0..1000 {
        log.append(&make_batch(1, 200, 1000 + i as i64), 0, 0)
            .unwrap();
    }
    log.flush().unwrap();
    assert_eq!(log.durable_offset(), 1000);
    let stored = read_all(&log, 0);
    log.abandon();
    stored
}

/// Flips one byte inside the records of the batch holding `offset`; returns that batch's
/// (base offset, next offset).
fn flip_in_batch(segment: &Path, offset: i64) -> (i64, i64) {
    let mut bytes = fs::read(segment).unwrap();
    let (at, base, next) = batch_layout(&bytes)
        .into_iter()
        .find(|&(_, base, next)| base <= offset && offset < next)
        .unwrap();
    bytes[at + batch::HEADER_SIZE + 10] ^= 0xff;
    fs::write(segment, &bytes).unwrap();
    (base, next)
}

#[test]
fn a_flipped_byte_in_synced_records_of_the_active_segment_is_damage_not_a_cut() {
    let dir = tempfile::tempdir().unwrap();
    let stored = synced_then_crashed(dir.path());
    let point = fs::read_to_string(dir.path().join("recovery-point")).unwrap();
    let segment = dir.path().join("00000000000000000000.log");
    let (first, end) = flip_in_batch(&segment, 100);
    let (log, report) = open(dir.path(), LogConfig::default(), false);
    assert_eq!(
        report.bytes_truncated, 0,
        "nothing synced below the point is cut"
    );
    assert_eq!(log.log_end_offset(), 1000);
    // The flush checkpointed the recovery point to the durable offset, inside the active
    // segment (it used to stay at the segment's base until a roll or close).
    assert_eq!(point, "1000");
    assert_eq!(report.damaged.len(), 1, "{:?}", report.damaged);
    assert_eq!(
        (report.damaged[0].first_offset, report.damaged[0].end_offset),
        (first, end)
    );
    let (batches, met) = read_around(&log);
    assert_eq!(met.len(), 1);
    assert!(
        batches == without(&stored, first, end),
        "every batch before and after the damage is readable"
    );
    // Appends go on after the old end, and a clean restart keeps it all.
    let info = log.append(&make_batch(1, 20, 5000), 0, 0).unwrap();
    assert_eq!(info.base_offset, 1000);
    log.close().unwrap();
    let (log, report) = open(dir.path(), LogConfig::default(), true);
    assert_eq!(report.bytes_truncated, 0);
    assert_eq!(log.log_end_offset(), 1001);
    assert_eq!(read_around(&log).0.len(), batches.len() + 1);
    log.close().unwrap();
}

#[test]
fn an_invalid_tail_past_the_checkpointed_recovery_point_is_still_cut() {
    let dir = tempfile::tempdir().unwrap();
    synced_then_crashed(dir.path());
    // Ten more batches, written but never synced (flush policy: the OS), so past the
    // recovery point: a crash may have torn them.
    let (log, _) = open(dir.path(), LogConfig::default(), false);
    for i in 0..10 {
        log.append(&make_batch(1, 200, 3000 + i as i64), 0, 0)
            .unwrap();
    }
    let stored = read_all(&log, 0);
    assert_eq!(stored.len(), 1010);
    log.abandon();
    assert_eq!(
        fs::read_to_string(dir.path().join("recovery-point")).unwrap(),
        "1000"
    );
    let segment = dir.path().join("00000000000000000000.log");
    let (first, _) = flip_in_batch(&segment, 1005);
    assert_eq!(first, 1005);
    let (log, report) = open(dir.path(), LogConfig::default(), false);
    assert!(
        report.bytes_truncated > 0,
        "the invalid tail past the point is cut"
    );
    assert!(report.damaged.is_empty(), "{:?}", report.damaged);
    assert_eq!(log.log_end_offset(), 1005);
    assert!(read_all(&log, 0) == stored[..1005]);
    log.close().unwrap();
}
