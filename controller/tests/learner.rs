//! A broker-only node (not a voter) follows the metadata log as a Raft learner through its
//! own MetadataService: same image as the controllers; its requests are forwarded to the
//! active controller (all but add_learner, which answers NotController).

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_controller::{ControllerError, MetadataService, MetadataServiceConfig};
use sluice_metadata::controller::CreateTopic;
use sluice_quorum::QuorumConfig;
use support::{Cluster, WAIT};
use tokio::net::TcpListener;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_learner_follows_the_log_and_forwards_requests() {
    let c = Cluster::start(3, |_| {}).await;
    let leader = c.active().await;

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let dir = c.tmp.path().join("node-4");
    let config = MetadataServiceConfig::new(QuorumConfig::new(4, c.voters.clone(), &dir));
    let learner = Arc::new(MetadataService::start(config).await.unwrap());
    learner.serve(listener);
    c.svc(leader).add_learner(4, addr).await.unwrap();

    let created = c
        .svc(leader)
        .create_topics(vec![CreateTopic {
            name: "followed".into(),
            num_partitions: 1,
            replication_factor: -1,
            assignments: Vec::new(),
            configs: Default::default(),
            topic_id: None,
        }])
        .await
        .unwrap();
    // No broker is registered: the topic cannot be placed, a per-item error.
    assert_eq!(
        created.value[0].as_ref().unwrap_err().kafka_error_name(),
        "INVALID_REPLICATION_FACTOR"
    );
    let image = learner.wait_for_offset(created.offset, WAIT).await.unwrap();
    assert_eq!(image.cluster_id(), c.svc(leader).image().cluster_id());

    // The learner's image equals the controllers' once all are at the same offset.
    let deadline = Instant::now() + WAIT;
    loop {
        let mine = learner.image();
        let theirs = c.svc(leader).image();
        if mine.metadata_offset() == theirs.metadata_offset() {
            assert_eq!(
                mine.to_snapshot_bytes().unwrap(),
                theirs.to_snapshot_bytes().unwrap()
            );
            break;
        }
        assert!(Instant::now() < deadline, "the learner does not catch up");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let quorum = c.svc(leader).describe_quorum().await.unwrap();
    assert_eq!(quorum.learners.len(), 1);
    assert_eq!(quorum.learners[0].node_id, 4);
    // The learner learns the leader from the leader's appends (its status may trail its
    // image by a moment).
    support::eventually(WAIT, "the learner knows the leader", || {
        learner.controller_leader() == Some(leader)
    })
    .await;
    assert!(!learner.is_active_controller());
    // Forwarded to the active controller.
    assert_eq!(learner.elect_preferred_leaders().await.unwrap().value, 0);
    assert_eq!(learner.describe_quorum().await.unwrap().learners.len(), 1);
    let r = learner.add_learner(5, addr).await;
    assert!(
        matches!(r, Err(ControllerError::NotController { .. })),
        "{r:?}"
    );
    learner.shutdown().await.unwrap();
}
