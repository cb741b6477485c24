//! A storage failure stops the quorum on that node, and `Quorum::fatal` reports it (so the
//! broker can exit); a normal shutdown does not.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use sluice_quorum::{Quorum, QuorumConfig, QuorumError};
use support::{init_tracing, Recorder};
use tokio::net::TcpListener;

const WAIT: Duration = Duration::from_secs(15);

/// A one-voter quorum in `dir`, leader of itself, with a new log segment for every entry.
async fn single(dir: &std::path::Path) -> Quorum {
    init_tracing();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let voters = BTreeMap::from([(1, listener.local_addr().unwrap())]);
    let mut config = QuorumConfig::new(1, voters, dir);
    // Every append creates a file, so a missing directory fails the next one.
    config.segment_bytes = 1;
    let (applier, _probe) = Recorder::probed();
    let q = Quorum::start(config, applier).await.unwrap();
    q.serve(listener);
    assert_eq!(q.wait_for_leader(WAIT).await.unwrap(), 1);
    q
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_failure_resolves_fatal() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("quorum");
    let q = single(&dir).await;
    q.propose(b"before".to_vec()).await.unwrap();
    let fatal = tokio::spawn(q.fatal());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !fatal.is_finished(),
        "fatal resolved while the quorum is healthy"
    );

    // The disk goes away under the quorum: the next append cannot create its segment.
    std::fs::remove_dir_all(&dir).unwrap();
    let proposed = tokio::time::timeout(WAIT, q.propose(b"after".to_vec()))
        .await
        .expect("the proposal is answered");
    assert!(proposed.is_err(), "{proposed:?}");

    let e = tokio::time::timeout(WAIT, fatal)
        .await
        .expect("fatal resolves after a storage failure")
        .unwrap();
    assert!(matches!(e, QuorumError::Fatal(_)), "{e:?}");
    println!("fatal: {e}");
    // It stays stopped, and a new call to fatal answers at once.
    assert!(q.propose(b"later".to_vec()).await.is_err());
    let again = tokio::time::timeout(Duration::from_secs(1), q.fatal())
        .await
        .expect("fatal answers at once once failed");
    assert!(matches!(again, QuorumError::Fatal(_)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_normal_shutdown_does_not_resolve_fatal() {
    let tmp = tempfile::tempdir().unwrap();
    let q = single(tmp.path()).await;
    q.propose(b"x".to_vec()).await.unwrap();
    let fatal = tokio::spawn(q.fatal());
    q.shutdown().await.unwrap();
    drop(q);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !fatal.is_finished(),
        "fatal resolved after a normal shutdown"
    );
    fatal.abort();
}
