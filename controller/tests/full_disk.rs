//! The active controller's disk fills: its Raft is stuck in the write, the other voters
//! elect a controller without it, and the node's own controller requests (its broker's
//! heartbeats, which report the full disk so its leaderships move away) reach the new
//! controller within seconds instead of hanging until they time out. Needs tmpfs mounts
//! (root); elsewhere the test says why and returns.

mod support;
#[path = "../../storage/tests/support/tmpfs.rs"]
mod tmpfs;

use std::time::{Duration, Instant};

use support::{registration, Cluster};

/// Far longer than the answer may take: a request stuck on the full node's own Raft would
/// take all of it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_active_controller_sends_its_requests_to_the_new_one() {
    let mut mounts = Vec::new();
    for _ in 0..3 {
        match tmpfs::Tmpfs::mount(32 << 20) {
            Some(m) => mounts.push(m),
            None => return,
        }
    }
    let roots: Vec<std::path::PathBuf> = mounts.iter().map(|m| m.path.clone()).collect();
    let c = Cluster::start_with_dirs(
        3,
        |config| {
            config.request_timeout = REQUEST_TIMEOUT;
            // Every append starts a segment: a full disk refuses it (a small append into
            // the last, partly used page of a segment could still fit).
            config.quorum.segment_bytes = 1;
        },
        |_, id| roots[id as usize - 1].join(format!("node-{id}")),
    )
    .await;
    let leader = c.active().await;
    let full = c.svc(leader).clone();
    let cluster_id = full.image().cluster_id().unwrap().to_owned();
    let broker_id = leader as i32;
    let epoch = full
        .register_broker(registration(broker_id, &cluster_id))
        .await
        .expect("registered")
        .value;

    let filler = roots[leader as usize - 1].join("filler");
    tmpfs::fill(&filler);
    // A request that must write a record: the full node's Raft gets stuck in its append.
    let started = Instant::now();
    let block = tokio::time::timeout(
        REQUEST_TIMEOUT,
        full.allocate_producer_ids(broker_id, epoch),
    )
    .await
    .expect("answered before the request timeout")
    .expect("allocated by the new controller");
    let took = started.elapsed();
    assert!(
        full.image_is_stale(),
        "the full node's metadata log still waits for space"
    );
    assert!(
        took < Duration::from_secs(15),
        "took {took:?}: the request waited on the stuck node instead of the new controller"
    );
    let others: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    let new_leader = c.svc(others[0]).controller_leader();
    assert!(
        new_leader.is_some_and(|l| l != leader),
        "another voter leads: {new_leader:?}"
    );
    assert!(block.value.first_id >= 0 && block.value.broker_id == broker_id);

    // Space again: the full node's write lands and it follows the new controller.
    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while c.svc(leader).controller_leader() == Some(leader) {
        assert!(Instant::now() < deadline, "the full node never rejoined");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.converged(block.offset).await;
    assert!(!full.image_is_stale());
}
