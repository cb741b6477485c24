//! A full disk under the metadata log is waited out: the append that hit ENOSPC is rolled
//! back and retried once space is freed, and the quorum never stops (before, openraft
//! treated the failed write as fatal and the node left the quorum for good). Needs a tmpfs
//! (root); elsewhere the test says why and returns.

mod support;
#[path = "../../storage/tests/support/tmpfs.rs"]
mod tmpfs;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use sluice_quorum::{Quorum, QuorumConfig};
use support::{init_tracing, Probe, Recorder};
use tokio::net::TcpListener;

const WAIT: Duration = Duration::from_secs(15);

/// Starts a one-voter quorum over `dir` and waits until it leads. `segment_bytes` 1 makes
/// every append start a segment, so a full disk refuses it (a small append into the last,
/// partly used page of a segment could still succeed) and a rollback must remove the
/// segment it created.
async fn start_sole_voter(dir: &std::path::Path, segment_bytes: Option<u64>) -> (Quorum, Probe) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let voters = BTreeMap::from([(1, listener.local_addr().unwrap())]);
    let mut config = QuorumConfig::new(1, voters, dir);
    if let Some(bytes) = segment_bytes {
        config.segment_bytes = bytes;
    }
    let (applier, probe): (Recorder, Probe) = Recorder::probed();
    let q = Quorum::start(config, applier).await.unwrap();
    q.serve(listener);
    assert_eq!(q.wait_for_leader(WAIT).await.unwrap(), 1);
    (q, probe)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_waited_out_and_the_append_lands_once_space_is_freed() {
    init_tracing();
    let Some(fs) = tmpfs::Tmpfs::mount(8 << 20) else {
        return;
    };
    let dir = fs.path.join("quorum");
    let (q, probe) = start_sole_voter(&dir, Some(1)).await;
    let q = Arc::new(q);
    q.propose(b"before".to_vec()).await.unwrap();
    let fatal = tokio::spawn(q.fatal());

    let filler = fs.path.join("filler");
    tmpfs::fill(&filler);
    let proposing = {
        let q = q.clone();
        tokio::spawn(async move { q.propose(b"while-full".to_vec()).await })
    };
    // A bounded look: the write waits (several retries), and the quorum has not stopped.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!proposing.is_finished(), "nothing can be written yet");
    assert!(!fatal.is_finished(), "a full disk must not stop the quorum");

    std::fs::remove_file(&filler).unwrap();
    let answer = tokio::time::timeout(WAIT, proposing)
        .await
        .expect("the append lands once space is freed")
        .unwrap();
    assert!(answer.is_ok(), "{answer:?}");
    q.propose(b"after".to_vec()).await.unwrap();
    assert!(!fatal.is_finished());
    support::eventually(WAIT, "every payload applied", || {
        probe.payloads().len() >= 3
    })
    .await;
    let payloads = probe.payloads();
    let tail: Vec<&[u8]> = payloads
        .iter()
        .rev()
        .take(3)
        .rev()
        .map(Vec::as_slice)
        .collect();
    assert_eq!(tail, [&b"before"[..], b"while-full", b"after"]);
    q.shutdown().await.unwrap();
    drop(q);

    // Reopened, the log holds each entry once, in order, with nothing torn.
    let (q, probe) = start_sole_voter(&dir, None).await;
    support::eventually(WAIT, "the log replayed", || probe.payloads().len() >= 3).await;
    let payloads = probe.payloads();
    let mut seen: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
    seen.retain(|p| [&b"before"[..], b"while-full", b"after"].contains(p));
    assert_eq!(seen, [&b"before"[..], b"while-full", b"after"]);
    q.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_does_not_wait_for_space_and_leaves_the_log_intact() {
    init_tracing();
    let Some(fs) = tmpfs::Tmpfs::mount(8 << 20) else {
        return;
    };
    let dir = fs.path.join("quorum");
    let (q, _probe) = start_sole_voter(&dir, Some(1)).await;
    let q = Arc::new(q);
    q.propose(b"before".to_vec()).await.unwrap();

    let filler = fs.path.join("filler");
    tmpfs::fill(&filler);
    let proposing = {
        let q = q.clone();
        tokio::spawn(async move { q.propose(b"while-full".to_vec()).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!proposing.is_finished(), "nothing can be written yet");
    // The wait would last minutes (NO_SPACE_WAIT_MAX); a shutdown ends it.
    tokio::time::timeout(WAIT, q.shutdown())
        .await
        .expect("shutdown ends the wait for space")
        .ok();
    let answer = tokio::time::timeout(WAIT, proposing)
        .await
        .unwrap()
        .unwrap();
    assert!(answer.is_err(), "nothing was written: {answer:?}");
    drop(q);
    std::fs::remove_file(&filler).unwrap();

    // Reopened: the entry before is there, the failed one is not, nothing is torn.
    let (q, probe) = start_sole_voter(&dir, None).await;
    q.propose(b"after".to_vec()).await.unwrap();
    support::eventually(WAIT, "the log replayed", || {
        probe.payloads().iter().any(|p| p == b"after")
    })
    .await;
    let payloads = probe.payloads();
    let seen: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
    assert!(seen.contains(&&b"before"[..]), "{seen:?}");
    assert!(!seen.contains(&&b"while-full"[..]), "{seen:?}");
    q.shutdown().await.unwrap();
}
