//! Broker-only nodes following the metadata with FetchMetadata (`MetadataObserver`), against
//! three real controllers on 127.0.0.1 whose window of recent batches is small (8 entries):
//! the observer's image equals the controllers' through more batches than the window holds,
//! a new observer (which has nothing) starts from a snapshot, controller requests made through an observer reach the active
//! controller, and after the active controller is killed the observer follows the new one.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sluice_controller::{MetadataNode, MetadataObserver, ObserverConfig};
use support::{registration, Cluster, WAIT};

fn observer(c: &Cluster, id: u64) -> MetadataNode {
    let voters: BTreeMap<u64, String> = c
        .voters
        .iter()
        .map(|(id, addr)| (*id, addr.to_string()))
        .collect();
    let mut config = ObserverConfig::new(id, voters);
    config.fetch_max_wait = Duration::from_millis(200);
    MetadataNode::Observer(MetadataObserver::start(config).expect("an observer starts"))
}

/// Waits until `node`'s image is at the leader's offset (at least `offset`), then checks the
/// two images are the same.
async fn same_image(c: &Cluster, leader: u64, node: &MetadataNode, offset: i64) {
    node.wait_for_offset(offset, WAIT)
        .await
        .expect("the observer reaches the offset");
    let deadline = Instant::now() + WAIT;
    loop {
        let mine = node.image();
        let theirs = c.svc(leader).image();
        if mine.metadata_offset() == theirs.metadata_offset() {
            assert_eq!(
                mine.to_snapshot_bytes().unwrap(),
                theirs.to_snapshot_bytes().unwrap()
            );
            return;
        }
        assert!(Instant::now() < deadline, "the images never met");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn observers_follow_the_controllers_and_their_requests_reach_the_active_one() {
    let mut c = Cluster::start(3, |config| config.fetch_window_entries = 8).await;
    let leader = c.active().await;
    let start = c.converged(0).await;
    assert!(!start.is_empty());
    let cluster_id = c
        .svc(leader)
        .image()
        .cluster_id()
        .expect("a cluster id")
        .to_owned();

    let first = observer(&c, 9);
    assert!(first.is_observer());
    // A request through the observer: it reaches the active controller.
    let registered = first
        .register_broker(registration(9, &cluster_id))
        .await
        .expect("registered through the observer");
    same_image(&c, leader, &first, registered.offset).await;
    assert_eq!(first.controller_leader(), Some(leader));
    assert!(first.image().broker(9).is_some());

    // Many more batches than the window holds: the running observer follows them.
    let mut last = registered.offset;
    for id in 10..30 {
        last = c
            .svc(leader)
            .register_broker(registration(id, &cluster_id))
            .await
            .expect("registered")
            .offset;
    }
    same_image(&c, leader, &first, last).await;

    // A new observer has nothing: it starts from a snapshot (the window no longer has the
    // first batches either), then follows.
    let second = observer(&c, 8);
    same_image(&c, leader, &second, last).await;
    let more = c
        .svc(leader)
        .register_broker(registration(30, &cluster_id))
        .await
        .unwrap();
    same_image(&c, leader, &second, more.offset).await;

    // The active controller dies: the observers follow the new one, and their requests go
    // there.
    c.kill(leader);
    let new_leader = c.active().await;
    assert_ne!(new_leader, leader);
    let deadline = Instant::now() + WAIT;
    while first.controller_leader() != Some(new_leader) {
        assert!(
            Instant::now() < deadline,
            "the observer never named the new leader"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let after = first
        .register_broker(registration(31, &cluster_id))
        .await
        .expect("registered through the observer after the failover");
    same_image(&c, new_leader, &first, after.offset).await;
    same_image(&c, new_leader, &second, after.offset).await;
    // DescribeQuorum (asked through an observer) lists the observers that fetch from the
    // leader, with no address and their offset.
    let deadline = Instant::now() + WAIT;
    loop {
        let quorum = second.describe_quorum().await.expect("DescribeQuorum");
        assert_eq!(quorum.leader, Some(new_leader));
        let mut observers: Vec<u64> = quorum.learners.iter().map(|l| l.node_id).collect();
        observers.sort_unstable();
        if observers == [8, 9] {
            assert!(quorum.learners.iter().all(|l| l.addr.is_empty()));
            assert!(quorum.learners.iter().all(|l| l.matched_index.is_some()));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "observers in DescribeQuorum: {observers:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    first.shutdown().await.unwrap();
    second.shutdown().await.unwrap();
}
