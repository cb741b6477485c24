//! Crash recovery of the log store: a torn or damaged tail is cut at the last valid entry at
//! open, never served; truncation and purge survive a reopen.

use std::fs;
use std::path::{Path, PathBuf};

use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, RaftLogReader, Vote};
use sluice_quorum::log_store::{LogStore, Recovery};
use sluice_quorum::types::{Payload, TypeConfig};

fn entry(term: u64, index: u64) -> Entry<TypeConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
        payload: EntryPayload::Normal(Payload(format!("entry {index}").into_bytes())),
    }
}

async fn write(dir: &Path, segment_bytes: u64, range: std::ops::RangeInclusive<u64>) {
    let (mut log, _) = LogStore::open(dir, segment_bytes).unwrap();
    for i in range {
        log.blocking_append([entry(1, i)]).await.unwrap();
    }
}

async fn indexes(log: &mut LogStore) -> Vec<u64> {
    log.try_get_log_entries(0..u64::MAX)
        .await
        .unwrap()
        .iter()
        .map(|e| e.log_id.index)
        .collect()
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir.join("log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_last_entry_is_cut_at_every_byte() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 1 << 20, 1..=5).await;
    let seg = segments(dir.path()).pop().unwrap();
    let whole = fs::read(&seg).unwrap();
    let (mut log, _) = LogStore::open(dir.path(), 1 << 20).unwrap();
    let all = indexes(&mut log).await;
    drop(log);
    assert_eq!(all, vec![1, 2, 3, 4, 5]);
    // The start of entry 5: the length of the file holding entries 1..=4.
    let four = {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), 1 << 20, 1..=4).await;
        fs::metadata(segments(d.path()).pop().unwrap())
            .unwrap()
            .len() as usize
    };
    for cut in four..whole.len() {
        fs::write(&seg, &whole[..cut]).unwrap();
        let (mut log, recovery) = LogStore::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(
            indexes(&mut log).await,
            vec![1, 2, 3, 4],
            "cut at byte {cut}"
        );
        assert_eq!(recovery.bytes_cut, (cut - four) as u64);
        assert_eq!(
            fs::metadata(&seg).unwrap().len() as usize,
            four,
            "file cut back"
        );
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id.map(|l| l.index), Some(4));
        // The log goes on from there.
        log.blocking_append([entry(2, 5)]).await.unwrap();
        drop(log);
        let (mut log, recovery) = LogStore::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(recovery, Recovery::default());
        assert_eq!(indexes(&mut log).await, vec![1, 2, 3, 4, 5]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_cuts_from_that_entry_and_drops_later_segments() {
    let dir = tempfile::tempdir().unwrap();
    // Tiny segments: a few entries each.
    write(dir.path(), 150, 1..=12).await;
    let segs = segments(dir.path());
    assert!(segs.len() >= 4, "{segs:?}");
    let base = |p: &PathBuf| -> u64 { p.file_stem().unwrap().to_str().unwrap().parse().unwrap() };
    assert!(
        base(&segs[2]) - base(&segs[1]) >= 2,
        "two or more entries in the second segment"
    );
    // Damage the last byte of the second segment's last entry.
    let victim = &segs[1];
    let mut bytes = fs::read(victim).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    fs::write(victim, &bytes).unwrap();

    let (mut log, recovery) = LogStore::open(dir.path(), 150).unwrap();
    // Everything before the damaged entry survives; nothing from it on is served.
    let survivors = base(&segs[2]) - 2;
    assert_eq!(indexes(&mut log).await, (1..=survivors).collect::<Vec<_>>());
    assert!(recovery.bytes_cut > 0);
    assert_eq!(recovery.segments_deleted, segs.len() - 2);
    assert_eq!(segments(dir.path()).len(), 2);
    // Appends continue right after the survivors.
    log.blocking_append([entry(2, survivors + 1)])
        .await
        .unwrap();
    drop(log);
    let (mut log, _) = LogStore::open(dir.path(), 150).unwrap();
    assert_eq!(
        indexes(&mut log).await,
        (1..=survivors + 1).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_after_the_last_entry_and_a_huge_length_are_cut() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 1 << 20, 1..=3).await;
    let seg = segments(dir.path()).pop().unwrap();
    let mut bytes = fs::read(&seg).unwrap();
    let len = bytes.len();
    bytes.extend_from_slice(&[0xff; 4]); // a length of 4 GiB
    bytes.extend_from_slice(b"garbage garbage garbage");
    fs::write(&seg, &bytes).unwrap();
    let (mut log, recovery) = LogStore::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(indexes(&mut log).await, vec![1, 2, 3]);
    assert_eq!(recovery.bytes_cut as usize, bytes.len() - len);

    // Zeros (a preallocated or never-written tail) are cut too.
    drop(log);
    let mut bytes = fs::read(&seg).unwrap();
    bytes.extend_from_slice(&[0; 100]);
    fs::write(&seg, &bytes).unwrap();
    let (mut log, recovery) = LogStore::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(indexes(&mut log).await, vec![1, 2, 3]);
    assert_eq!(recovery.bytes_cut, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncate_purge_and_vote_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 64, 1..=20).await;
    {
        let (mut log, _) = LogStore::open(dir.path(), 64).unwrap();
        log.truncate(LogId::new(CommittedLeaderId::new(1, 1), 15))
            .await
            .unwrap();
        log.purge(LogId::new(CommittedLeaderId::new(1, 1), 6))
            .await
            .unwrap();
        log.blocking_append([entry(3, 15), entry(3, 16)])
            .await
            .unwrap();
        log.save_vote(&Vote::new(3, 2)).await.unwrap();
    }
    let (mut log, recovery) = LogStore::open(dir.path(), 64).unwrap();
    assert_eq!(recovery, Recovery::default());
    assert_eq!(indexes(&mut log).await, (7..=16).collect::<Vec<_>>());
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id.map(|l| l.index), Some(6));
    assert_eq!(
        state.last_log_id,
        Some(LogId::new(CommittedLeaderId::new(3, 1), 16))
    );
    assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(3, 2)));
    // Fully purged segments are gone from disk.
    let first = segments(dir.path())[0].clone();
    let base: u64 = first
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(base > 1 && base <= 7, "first segment starts at {base}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_vote_file_is_an_error_not_a_reset() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut log, _) = LogStore::open(dir.path(), 64).unwrap();
        log.save_vote(&Vote::new(5, 1)).await.unwrap();
    }
    let path = dir.path().join("vote");
    let mut bytes = fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(&path, &bytes).unwrap();
    // Forgetting a vote could let this node vote twice in a term: refuse to start instead.
    match LogStore::open(dir.path(), 64) {
        Err(sluice_quorum::QuorumError::Corrupt { .. }) => {}
        other => panic!("expected Corrupt, got {:?}", other.map(|_| ())),
    }
}

/// The segments after `since` as they are on disk now, to put back later (as a crash after
/// their deletion, before the directory was fsynced, would).
fn segments_from(dir: &Path, since: u64) -> Vec<(PathBuf, Vec<u8>)> {
    segments(dir)
        .into_iter()
        .filter(|p| {
            let base: u64 = p.file_stem().unwrap().to_str().unwrap().parse().unwrap();
            base > since
        })
        .map(|p| {
            let bytes = fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_back_from_before_a_truncate_is_cut_at_open() {
    for (new_entries, label) in [
        (0u64, "nothing appended after"),
        (2, "two entries appended"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 64, 1..=20).await;
        let leftovers = segments_from(dir.path(), 12);
        assert!(leftovers.len() >= 2, "{label}: several later segments");
        {
            let (mut log, _) = LogStore::open(dir.path(), 64).unwrap();
            log.truncate(LogId::new(CommittedLeaderId::new(1, 1), 12))
                .await
                .unwrap();
            let new: Vec<_> = (12..12 + new_entries).map(|i| entry(2, i)).collect();
            if !new.is_empty() {
                log.blocking_append(new).await.unwrap();
            }
        }
        // The deleted segments that start past the new end come back.
        let end = 12 + new_entries;
        let mut back = 0;
        for (path, bytes) in &leftovers {
            let base: u64 = path.file_stem().unwrap().to_str().unwrap().parse().unwrap();
            if base > end && !path.exists() {
                fs::write(path, bytes).unwrap();
                back += 1;
            }
        }
        assert!(back >= 1, "{label}: a segment was put back");

        let (mut log, recovery) = LogStore::open(dir.path(), 64).unwrap();
        assert_eq!(
            indexes(&mut log).await,
            (1..end).collect::<Vec<_>>(),
            "{label}: no hole, no stale entries"
        );
        assert_eq!(recovery.segments_deleted, back, "{label}");
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id.map(|l| l.index), Some(end - 1), "{label}");
        // The leftovers are gone from disk, and the log goes on from its end.
        log.blocking_append([entry(3, end)]).await.unwrap();
        drop(log);
        let (mut log, recovery) = LogStore::open(dir.path(), 64).unwrap();
        assert_eq!(recovery, Recovery::default(), "{label}");
        assert_eq!(indexes(&mut log).await, (1..=end).collect::<Vec<_>>());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_inside_a_segment_cuts_the_log_there() {
    let dir = tempfile::tempdir().unwrap();
    // Entries 1, 2, then 5: written through the store, which checks only the order.
    let (mut log, _) = LogStore::open(dir.path(), 1 << 20).unwrap();
    log.blocking_append([entry(1, 1), entry(1, 2)])
        .await
        .unwrap();
    log.blocking_append([entry(1, 5)]).await.unwrap();
    drop(log);
    let (mut log, recovery) = LogStore::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(indexes(&mut log).await, vec![1, 2]);
    assert!(recovery.bytes_cut > 0);
}
