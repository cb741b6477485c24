//! Three controllers (quorum voters) on 127.0.0.1 with free ports and temp dirs, and three
//! simulated brokers: bootstrap, registration and heartbeats, topic placement, identical
//! images, requests through followers, fencing on a silent broker and back, controller
//! failover (timed), restart of all three from their directories.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use sluice_controller::MetadataServiceConfig;
use sluice_metadata::controller::CreateTopic;
use sluice_metadata::records::NO_LEADER;
use sluice_metadata::MetadataImage;
use support::{content, eventually, Broker, Cluster, WAIT};

const SESSION_MS: u64 = 1_000;
const HEARTBEAT: Duration = Duration::from_millis(100);

fn tune(config: &mut MetadataServiceConfig) {
    config.controller.session_timeout_ms = SESSION_MS;
    config.liveness_check_interval = Duration::from_millis(100);
    // Small, so the restart below goes through a snapshot plus the log after it.
    config.quorum.snapshot_after_entries = 5;
    config.quorum.log_entries_kept_after_snapshot = 2;
}

fn topic(name: &str, partitions: i32) -> CreateTopic {
    CreateTopic {
        topic_id: None,
        name: name.into(),
        num_partitions: partitions,
        replication_factor: 1,
        assignments: Vec::new(),
        configs: BTreeMap::new(),
    }
}

fn leaders(image: &MetadataImage, topic: &str) -> Vec<i32> {
    image
        .topic(topic)
        .unwrap()
        .partitions
        .iter()
        .map(|p| p.leader)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_controllers_fence_fail_over_and_restart() {
    let mut c = Cluster::start(3, tune).await;

    // --- bootstrap: one cluster id, in every image ---
    let leader = c.active().await;
    c.converged(0).await;
    let cluster_id = c.svc(leader).image().cluster_id().unwrap().to_owned();
    assert_eq!(
        cluster_id.len(),
        22,
        "a random Kafka-style id: {cluster_id}"
    );
    for s in c.running() {
        assert_eq!(s.image().cluster_id(), Some(cluster_id.as_str()));
    }

    // --- three brokers register and heartbeat through the active controller ---
    let mut brokers = Vec::new();
    for id in 1..=3 {
        brokers.push(Broker::start(&c.directory, id, HEARTBEAT).await);
    }
    let epochs: BTreeSet<i64> = brokers.iter().map(|b| b.epoch).collect();
    assert_eq!(epochs.len(), 3, "each registration has its own epoch");
    let active = c.svc(leader).clone();
    eventually(WAIT, "brokers unfenced", || {
        let image = active.image();
        image.usable_brokers().count() == 3
    })
    .await;

    // --- a topic of 12 partitions, RF 1: leaders on all three brokers ---
    let created = active
        .create_topics(vec![topic("orders", 12)])
        .await
        .unwrap();
    let orders = created.value[0].as_ref().unwrap().topic_id;
    let image = active.wait_for_offset(created.offset, WAIT).await.unwrap();
    let mut per_broker = BTreeMap::new();
    for l in leaders(&image, "orders") {
        *per_broker.entry(l).or_insert(0) += 1;
    }
    assert_eq!(per_broker, BTreeMap::from([(1, 4), (2, 4), (3, 4)]));
    // The same name again: a per-item error, nothing committed.
    let again = active
        .create_topics(vec![topic("orders", 1)])
        .await
        .unwrap();
    assert_eq!(
        again.value[0].as_ref().unwrap_err().kafka_error_name(),
        "TOPIC_ALREADY_EXISTS"
    );

    // --- every node holds the same image at the same offset ---
    let snapshots = c.converged(created.offset).await;
    let first = snapshots.values().next().unwrap();
    assert!(snapshots.values().all(|s| s == first), "images differ");

    // --- followers forward requests to the active controller (tests/forwarding.rs has more) ---
    for follower in c.running().filter(|s| s.node_id() != leader) {
        assert!(!follower.is_active_controller());
        assert_eq!(follower.active_controller_id(), Some(leader));
        let again = follower
            .create_topics(vec![topic("orders", 1)])
            .await
            .unwrap();
        assert_eq!(
            again.value[0].as_ref().unwrap_err().kafka_error_name(),
            "TOPIC_ALREADY_EXISTS"
        );
    }

    // --- broker 3 goes silent: fenced after its session, its partitions go offline ---
    let before = active.image();
    let led_by_3: Vec<i32> = (0..12)
        .filter(|p| before.partition(orders, *p).unwrap().leader == 3)
        .collect();
    brokers[2].paused.store(true, Ordering::Release);
    let silent_at = Instant::now();
    eventually(WAIT, "broker 3 fenced", || {
        active.image().broker(3).unwrap().fenced
    })
    .await;
    let fenced_after = silent_at.elapsed();
    assert!(
        // Its last heartbeat went out at most about one round before the pause.
        fenced_after >= Duration::from_millis(SESSION_MS) - 2 * HEARTBEAT,
        "fenced too early: {fenced_after:?}"
    );
    println!(
        "broker fenced {fenced_after:?} after its last heartbeat round (session {SESSION_MS} ms)"
    );
    let fenced = active.image();
    for p in 0..12 {
        let (old, new) = (
            before.partition(orders, p).unwrap(),
            fenced.partition(orders, p).unwrap(),
        );
        if led_by_3.contains(&p) {
            assert_eq!(new.leader, NO_LEADER, "partition {p} offline");
            assert_eq!(new.leader_epoch, old.leader_epoch + 1, "partition {p}");
        } else {
            assert_eq!(new, old, "partition {p} untouched");
        }
    }
    assert!(!fenced.broker(1).unwrap().fenced && !fenced.broker(2).unwrap().fenced);

    // --- it heartbeats again: unfenced, and leads its partitions again ---
    brokers[2].paused.store(false, Ordering::Release);
    eventually(WAIT, "broker 3 unfenced", || {
        !active.image().broker(3).unwrap().fenced
    })
    .await;
    let back = active.image();
    for &p in &led_by_3 {
        let part = back.partition(orders, p).unwrap();
        assert_eq!(part.leader, 3, "partition {p} led by 3 again");
        assert_eq!(
            part.leader_epoch,
            before.partition(orders, p).unwrap().leader_epoch + 2
        );
    }
    drop(active);

    // --- the active controller goes away: a new one, and requests work again ---
    let epoch_before = c.svc(leader).image().last_applied().unwrap().epoch;
    assert!(epoch_before >= 1, "the image's epoch is the Raft term");
    let killed_at = Instant::now();
    c.kill(leader);
    let new_leader = c.active().await;
    let failover = killed_at.elapsed();
    assert_ne!(new_leader, leader);
    let active = c.svc(new_leader).clone();
    let deadline = Instant::now() + WAIT;
    let created = loop {
        match active.create_topics(vec![topic("after-failover", 6)]).await {
            Ok(c) => break c,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "create topics after failover: {e}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let working = killed_at.elapsed();
    assert!(created.value[0].is_ok(), "{:?}", created.value);
    let image = active.wait_for_offset(created.offset, WAIT).await.unwrap();
    assert!(
        image.last_applied().unwrap().epoch > epoch_before,
        "a new controller leader writes in a later term"
    );
    println!(
        "controller failover: node {new_leader} active {failover:?} after node {leader} went away; \
         first CreateTopics answered after {working:?}"
    );
    // Liveness was reset, not inherited: no broker is fenced by the new controller, now or
    // during the next two sessions (the brokers keep heartbeating).
    let watch_until = Instant::now() + Duration::from_millis(2 * SESSION_MS);
    while Instant::now() < watch_until {
        let image = active.image();
        let fenced: Vec<i32> = image.brokers().filter(|b| b.fenced).map(|b| b.id).collect();
        assert!(fenced.is_empty(), "fenced after failover: {fenced:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(active.image().cluster_id(), Some(cluster_id.as_str()));
    drop(active);

    // --- restart all three from their directories: the same metadata ---
    let survivors: Vec<u64> = c.running().map(|s| s.node_id()).collect();
    let mut last_images = Vec::new();
    for id in survivors {
        last_images.push(c.svc(id).image());
        c.stop(id).await;
    }
    let reference = last_images
        .iter()
        .max_by_key(|i| i.metadata_offset())
        .unwrap()
        .clone();
    for node in c.nodes.values() {
        assert!(
            node.dir.join("snapshot").exists(),
            "node {} restarts from a snapshot plus the log after it",
            node.id
        );
    }
    for id in 1..=3 {
        c.restart(id).await;
    }
    let leader = c.active().await;
    let snapshots = c.converged(reference.metadata_offset()).await;
    let expected = content(&reference.to_snapshot_bytes().unwrap());
    for (id, snapshot) in &snapshots {
        assert_eq!(content(snapshot), expected, "node {id} after the restart");
    }
    let image = c.svc(leader).image();
    assert_eq!(image.cluster_id(), Some(cluster_id.as_str()));
    assert_eq!(image.topic("orders").unwrap().partitions.len(), 12);
    assert_eq!(image.topic("after-failover").unwrap().partitions.len(), 6);
    drop(brokers);
    for id in 1..=3 {
        c.stop(id).await;
    }
}
