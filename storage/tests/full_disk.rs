//! A full disk, for real: a log on a small tmpfs the test mounts and fills.
//!
//! Sealing the active segment (at close, or at a roll) adds a final time index entry.
//! The index files are sparse, so that entry may land in a page with no disk block yet;
//! written through the mapping on a full disk, that was SIGBUS and killed the process.
//! Now the page is allocated first (fallocate), so the seal fails with ENOSPC: close
//! returns the error, a roll takes the log offline, and nothing stored is lost.
//!
//! A SIGBUS kills the whole test process, so each scenario runs in a child process
//! (this test binary again, selected by an environment variable): a crash there is a
//! failed test here, with the signal named. Mounting needs root (CI runs as root);
//! elsewhere the tests say why and return.

mod common;
#[path = "support/tmpfs.rs"]
mod tmpfs;

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sluice_storage::batch::{BatchBuilder, Compression};
use sluice_storage::{Flusher, LogConfig, PartitionLog};
use tmpfs::Tmpfs;

/// Names the scenario a child process runs; its value is the directory to use.
const SCENARIO_ENV: &str = "SLUICE_FULL_DISK_SCENARIO_DIR";
/// Page size of the index files' allocation (`IndexFile::reserve_next`).
const PAGE: u64 = 4096;
/// Bytes of one time index entry.
const TIME_ENTRY: u64 = 12;

/// Runs the test `name` of this binary in a child process with the scenario variable
/// set to `dir`, and fails (naming the signal) unless it exits with success.
fn run_in_child(name: &str, dir: &Path) {
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new(exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(SCENARIO_ENV, dir)
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the test binary");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("scenario {name} did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    if let Some(signal) = status.signal() {
        panic!(
            "scenario {name} was killed by signal {signal}{}",
            if signal == libc::SIGBUS {
                " (SIGBUS: a store into an index page without disk blocks)"
            } else {
                ""
            }
        );
    }
    assert!(status.success(), "scenario {name} failed: {status}");
}

/// A one-record batch with timestamp `ts`; every batch has the same size.
fn batch(ts: i64) -> Vec<u8> {
    let mut b = BatchBuilder::new(Compression::None);
    b.push(ts, None, Some(&[b'x'; 40]), &[]);
    b.build().expect("batch").to_vec()
}

/// Writes to `path` until the filesystem is full.
fn fill(path: &Path) {
    let mut file = File::create(path).expect("filler");
    let chunk = vec![0x5au8; 64 * 1024];
    // Bounded: far more chunks than the test filesystem holds.
    for _ in 0..10_000 {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling the disk failed: {e}"),
        }
    }
    for size in [4096usize, 512, 1] {
        while let Ok(n) = file.write(&chunk[..size]) {
            if n == 0 {
                break;
            }
        }
    }
}

/// A log whose time index fills exactly its first page, so the entry a seal adds is the
/// first of the second page: an index entry every second batch (the interval is one
/// batch, and an entry is added once more than the interval was written), one time
/// index entry per offset index entry (timestamps increase). Returns the log, its
/// config, the batches appended and the flusher (which heals the log).
fn log_with_full_first_index_page(
    dir: &Path,
    segment_bytes: u64,
) -> (PartitionLog, LogConfig, Vec<Vec<u8>>, Flusher) {
    let now = sluice_storage::log::now_ms();
    let mut config = LogConfig {
        index_interval_bytes: batch(0).len() as u64,
        segment_bytes,
        ..LogConfig::default()
    };
    config.segment_ms = None;
    let flusher = common::flusher();
    let (log, _) = PartitionLog::open(dir, config.clone(), &flusher, false).expect("open log");
    // Entries go in at batches 2, 4, ...: n batches give (n - 1) / 2 entries.
    let entries_in_first_page = PAGE / TIME_ENTRY;
    let n = 2 * entries_in_first_page + 2;
    let mut batches = Vec::new();
    for i in 0..n {
        let b = batch(now - 100_000 + i as i64);
        log.append(&b, 0, now).expect("append");
        batches.push(b);
    }
    log.flush().expect("flush");
    let timeindex = std::fs::metadata(dir.join("00000000000000000000.timeindex")).unwrap();
    assert_eq!(
        timeindex.blocks() * 512,
        PAGE,
        "the scenario needs a time index with exactly its first page allocated"
    );
    (log, config, batches, flusher)
}

/// Every record of the log from offset 0, compared batch by batch with `expected`.
fn assert_holds(log: &PartitionLog, expected: &[Vec<u8>]) {
    let stored = common::read_all(log, 0);
    assert_eq!(stored.len(), expected.len(), "batches kept");
    for (i, (s, e)) in stored.iter().zip(expected).enumerate() {
        assert_eq!(&common::unpatch(s), e, "batch {i}");
    }
}

#[test]
fn closing_on_a_full_disk_fails_cleanly_when_the_seal_needs_a_new_index_page() {
    const NAME: &str = "closing_on_a_full_disk_fails_cleanly_when_the_seal_needs_a_new_index_page";
    if let Some(dir) = std::env::var_os(SCENARIO_ENV) {
        let root = PathBuf::from(dir);
        let dir = root.join("t-0");
        let (log, config, batches, flusher) = log_with_full_first_index_page(&dir, 1 << 30);
        fill(&root.join("filler"));
        let closed = log.close();
        let error = closed.expect_err("close on a full disk must fail (the seal needs a page)");
        assert!(
            error.to_string().contains("allocate index"),
            "unexpected error: {error}"
        );
        drop(log);
        // Nothing was lost: with space again the next (unclean) open has every batch.
        std::fs::remove_file(root.join("filler")).unwrap();
        let (log, _) = PartitionLog::open(&dir, config, &flusher, false).unwrap();
        assert_holds(&log, &batches);
        log.close().expect("close with space");
        return;
    }
    let Some(fs) = Tmpfs::mount(1 << 20) else {
        return;
    };
    run_in_child(NAME, &fs.path);
}

#[test]
fn a_roll_on_a_full_disk_takes_the_log_offline_and_it_heals() {
    const NAME: &str = "a_roll_on_a_full_disk_takes_the_log_offline_and_it_heals";
    if let Some(dir) = std::env::var_os(SCENARIO_ENV) {
        let root = PathBuf::from(dir);
        let dir = root.join("t-0");
        let size = batch(0).len() as u64;
        let entries_in_first_page = PAGE / TIME_ENTRY;
        let n = 2 * entries_in_first_page + 2;
        // The next append does not fit: it rolls, and the roll seals the active segment.
        let (log, _, mut batches, _flusher) = log_with_full_first_index_page(&dir, n * size);
        fill(&root.join("filler"));
        let now = sluice_storage::log::now_ms();
        let next = batch(now);
        assert!(log.append(&next, 0, now).is_err(), "append on a full disk");
        assert!(log.is_offline(), "a failed roll takes the log offline");
        std::fs::remove_file(root.join("filler")).unwrap();
        // The flusher heals it (probe backoff from 100 ms); bounded wait.
        let deadline = Instant::now() + Duration::from_secs(20);
        while log.is_offline() {
            assert!(Instant::now() < deadline, "the log did not heal");
            std::thread::sleep(Duration::from_millis(20));
        }
        log.append(&next, 0, now).expect("append after healing");
        batches.push(next);
        assert_holds(&log, &batches);
        assert_eq!(log.segment_count(), 2, "the roll happened after healing");
        log.close().expect("close");
        return;
    }
    let Some(fs) = Tmpfs::mount(1 << 20) else {
        return;
    };
    run_in_child(NAME, &fs.path);
}
