//! Crash recovery: a log left without `close` (as after kill -9) whose active segment is
//! then cut, zero-filled or overwritten with garbage must reopen with every whole batch
//! before the damage, nothing after it, and appends continuing at the right offset.

mod common;

use std::fs;
use std::path::Path;

use common::*;
use rand::{Rng, SeedableRng};
use sluice_storage::batch::{self, BatchHeader};
use sluice_storage::LogConfig;

/// Writes `batches` batches into a fresh log in `dir` and drops it without closing.
/// Returns the batches as stored.
fn crashed_log(dir: &Path, config: &LogConfig, batches: usize) -> Vec<Vec<u8>> {
    let (log, _) = open(dir, config.clone(), true);
    for i in 0..batches {
        log.append(&make_batch(1 + i % 4, 40 + i % 7, 1000 + i as i64), 0, 0)
            .unwrap();
    }
    let stored = read_all(&log, 0);
    log.abandon();
    // These tests model a crash before the tail was synced. The flusher runs in the
    // background and may have checkpointed a recovery point into the active segment
    // (which would turn a cut into a damaged range): remove it, so that every segment is
    // rescanned and the tail is cut as the tests expect, whatever the flusher managed.
    let _ = fs::remove_file(dir.join("recovery-point"));
    stored
}

fn active_segment(dir: &Path) -> std::path::PathBuf {
    let mut logs: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs.pop().unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// Reopens uncleanly and checks that exactly `expected` survived and appends continue.
fn check_recovered(dir: &Path, config: &LogConfig, expected: &[Vec<u8>]) {
    let (log, report) = open(dir, config.clone(), false);
    assert!(report.segments_recovered >= 1);
    let end = expected
        .last()
        .map_or(0, |b| BatchHeader::new(b).unwrap().next_offset());
    assert_eq!(log.log_end_offset(), end);
    let survived = read_all(&log, 0);
    assert_eq!(survived.len(), expected.len());
    assert!(survived == expected, "surviving batches differ");
    let info = log.append(&make_batch(2, 10, 0), 0, 0).unwrap();
    assert_eq!(info.base_offset, end);
    log.close().unwrap();
    let (log, report) = open(dir, config.clone(), true);
    assert_eq!(report.segments_recovered, 0);
    assert_eq!(log.log_end_offset(), end + 2);
    for b in read_all(&log, 0) {
        batch::validate_stored_batch(&b).unwrap();
    }
}

#[test]
fn cut_at_every_byte_of_the_last_batch() {
    let config = small_segments();
    let origin = tempfile::tempdir().unwrap();
    let stored = crashed_log(origin.path(), &config, 30);
    let segment = active_segment(origin.path());
    let len = fs::metadata(&segment).unwrap().len() as usize;
    let last_size = stored.last().unwrap().len();
    let (whole, _) = stored.split_at(stored.len() - 1);
    for cut in (len - last_size)..len {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(origin.path(), dir.path());
        let file = fs::OpenOptions::new()
            .write(true)
            .open(active_segment(dir.path()))
            .unwrap();
        file.set_len(cut as u64).unwrap();
        check_recovered(dir.path(), &config, whole);
    }
}

#[test]
fn zero_filled_tail_is_cut() {
    let config = small_segments();
    let dir = tempfile::tempdir().unwrap();
    let stored = crashed_log(dir.path(), &config, 30);
    let segment = active_segment(dir.path());
    let valid = fs::metadata(&segment).unwrap().len();
    let mut bytes = fs::read(&segment).unwrap();
    bytes.extend(std::iter::repeat_n(0u8, 3000));
    fs::write(&segment, bytes).unwrap();
    check_recovered(dir.path(), &config, &stored);
    let _ = valid;
}

#[test]
fn garbage_tail_is_cut_whatever_the_garbage() {
    let config = small_segments();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for round in 0..50 {
        let dir = tempfile::tempdir().unwrap();
        let stored = crashed_log(dir.path(), &config, 20);
        let segment = active_segment(dir.path());
        let mut bytes = fs::read(&segment).unwrap();
        let garbage_len = rng.gen_range(1..600);
        let mut garbage: Vec<u8> = (0..garbage_len).map(|_| rng.gen()).collect();
        if round % 5 == 0 && garbage.len() >= 17 {
            // Garbage that starts like a plausible header: small length, magic 2.
            garbage[8..12].copy_from_slice(&100i32.to_be_bytes());
            garbage[16] = 2;
        }
        bytes.extend_from_slice(&garbage);
        fs::write(&segment, bytes).unwrap();
        check_recovered(dir.path(), &config, &stored);
    }
}

#[test]
fn a_flipped_byte_inside_the_tail_cuts_from_that_batch_on() {
    let config = small_segments();
    let origin = tempfile::tempdir().unwrap();
    let stored = crashed_log(origin.path(), &config, 30);
    let segment = active_segment(origin.path());
    let bytes = fs::read(&segment).unwrap();
    // Batches in the active segment, by position.
    let mut positions = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        positions.push(at);
        at += batch::check_framing(&bytes[at..], usize::MAX).unwrap();
    }
    let in_active = positions.len();
    for (k, &position) in positions.iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(origin.path(), dir.path());
        let mut damaged = bytes.clone();
        damaged[position + 30] ^= 0x01;
        fs::write(active_segment(dir.path()), damaged).unwrap();
        let keep = stored.len() - in_active + k;
        check_recovered(dir.path(), &config, &stored[..keep]);
    }
}

#[test]
fn damage_in_an_unsynced_sealed_segment_keeps_every_later_segment() {
    let config = small_segments();
    let dir = tempfile::tempdir().unwrap();
    let stored = crashed_log(dir.path(), &config, 80);
    let mut logs: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    assert!(logs.len() >= 3);
    let second = &logs[1];
    let len = fs::metadata(second).unwrap().len();
    let file = fs::OpenOptions::new().write(true).open(second).unwrap();
    file.set_len(len - 5).unwrap();
    // Only the torn last batch of the second segment is lost; it becomes a damaged
    // range, and every later segment is kept (recovery cuts only the active segment).
    let third_base: i64 = logs[2]
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let torn = stored
        .iter()
        .map(|b| BatchHeader::new(b).unwrap())
        .find(|h| h.next_offset() == third_base)
        .unwrap()
        .base_offset();
    let (log, report) = open(dir.path(), config.clone(), false);
    assert_eq!(report.bytes_truncated, 0);
    assert_eq!(report.damaged.len(), 1);
    assert_eq!(
        (report.damaged[0].first_offset, report.damaged[0].end_offset),
        (torn, third_base)
    );
    let end = BatchHeader::new(stored.last().unwrap())
        .unwrap()
        .next_offset();
    assert_eq!(log.log_end_offset(), end);
    let before: Vec<Vec<u8>> = stored
        .iter()
        .filter(|b| BatchHeader::new(b).unwrap().next_offset() <= torn)
        .cloned()
        .collect();
    let after: Vec<Vec<u8>> = stored
        .iter()
        .filter(|b| BatchHeader::new(b).unwrap().base_offset() >= third_base)
        .cloned()
        .collect();
    assert!(read_all_until(&log, 0, torn) == before);
    assert!(read_all(&log, third_base) == after);
    assert!(read_to_end(&log, torn, 1 << 20, true).is_err());
    let remaining = fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "log")
        })
        .count();
    assert_eq!(remaining, logs.len(), "no segment is deleted");
}

/// Every batch from `from` up to `until`.
fn read_all_until(log: &sluice_storage::PartitionLog, from: i64, until: i64) -> Vec<Vec<u8>> {
    let mut batches = Vec::new();
    let mut offset = from;
    while offset < until {
        let read = read_to_end(log, offset, usize::MAX, false).expect("read");
        let chunk = split(&read.records);
        assert!(!chunk.is_empty());
        for b in chunk {
            offset = BatchHeader::new(&b).unwrap().next_offset();
            batches.push(b);
        }
    }
    batches
}

#[test]
fn a_torn_segment_followed_only_by_an_empty_one_is_the_tail_and_is_cut() {
    // A crash right after a roll: the new segment holds nothing yet, and the sealed one
    // before it lost its unsynced end. That segment is the tail in all but name: it is
    // cut like an active segment and the empty one after it goes, so no damaged range
    // blocks consumers for records that were never synced.
    let config = small_segments();
    let dir = tempfile::tempdir().unwrap();
    let stored = crashed_log(dir.path(), &config, 80);
    let mut logs: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    let last = logs.pop().unwrap();
    let torn = logs.last().unwrap();
    let last_base: i64 = last.file_stem().unwrap().to_str().unwrap().parse().unwrap();
    fs::OpenOptions::new()
        .write(true)
        .open(&last)
        .unwrap()
        .set_len(0)
        .unwrap();
    let len = fs::metadata(torn).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(torn)
        .unwrap()
        .set_len(len - 5)
        .unwrap();
    let expected: Vec<Vec<u8>> = stored
        .iter()
        .filter(|b| BatchHeader::new(b).unwrap().next_offset() < last_base)
        .cloned()
        .collect();
    check_recovered(dir.path(), &config, &expected);
    assert!(!last.exists(), "the empty segment after the cut is removed");
}

#[test]
fn missing_or_garbage_indexes_are_rebuilt() {
    let config = small_segments();
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), config.clone(), true);
    for i in 0..60 {
        log.append(&make_batch(2, 50, i), 0, 0).unwrap();
    }
    let stored = read_all(&log, 0);
    log.close().unwrap();
    fs::remove_file(dir.path().join("00000000000000000000.index")).unwrap();
    let mut garbage = vec![0xffu8; 64];
    garbage[..8].copy_from_slice(&[0, 0, 0, 9, 0, 0, 0, 1]);
    let second = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "index"))
        .min()
        .unwrap();
    fs::write(&second, garbage).unwrap();
    let (log, _) = open(dir.path(), config, true);
    assert_eq!(read_all(&log, 0), stored);
    for offset in [0, 7, 33, 64, 119] {
        let read = read_to_end(&log, offset, 1, true).unwrap();
        let header = BatchHeader::new(&read.records).unwrap();
        assert!(header.base_offset() <= offset && header.last_offset() >= offset);
    }
}
