//! The zero-config single node: node 1 is the sole voter, with no listener at all. Every
//! request kind through the service, the configured cluster id written once, a restart from
//! the directory, and what a stopped service answers.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sluice_controller::{ControllerError, MetadataService, MetadataServiceConfig};
use sluice_metadata::controller::{
    AlterConfigs, AlterPartitionRequest, CreatePartitions, CreateTopic, IsrMember, TopicRef,
};
use sluice_metadata::records::ConfigResource;
use sluice_quorum::QuorumConfig;
use support::{content, heartbeat, init_tracing, registration, WAIT};

/// What an upgraded single-node data dir's `meta.properties` would hold.
const EXISTING_ID: &str = "MkU3OEVBNTcwNTJENDM2Qk";

fn config(dir: &std::path::Path, cluster_id: &str) -> MetadataServiceConfig {
    // The sole voter's address is never dialled (there is no peer); it only shows in
    // DescribeQuorum.
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let quorum = QuorumConfig::new(1, BTreeMap::from([(1, addr)]), dir);
    let mut config = MetadataServiceConfig::new(quorum);
    config.cluster_id = Some(cluster_id.to_owned());
    config
}

async fn active(service: &MetadataService) {
    let deadline = Instant::now() + WAIT;
    while !service.is_active_controller() {
        assert!(
            Instant::now() < deadline,
            "the sole voter never became active"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn topic(name: &str, partitions: i32, rf: i16) -> CreateTopic {
    CreateTopic {
        topic_id: None,
        name: name.into(),
        num_partitions: partitions,
        replication_factor: rf,
        assignments: Vec::new(),
        configs: BTreeMap::from([("cleanup.policy".to_owned(), "compact".to_owned())]),
    }
}

fn kafka_error<T: std::fmt::Debug>(r: &Result<T, sluice_metadata::MetadataError>) -> &'static str {
    r.as_ref().unwrap_err().kafka_error_name()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sole_voter_serves_every_request_without_a_listener() {
    init_tracing();
    let tmp = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let service = MetadataService::start(config(tmp.path(), EXISTING_ID))
        .await
        .unwrap();
    active(&service).await;
    println!("single node active after {:?}", started.elapsed());
    let image = service.image();
    assert_eq!(image.cluster_id(), Some(EXISTING_ID));
    assert_eq!(service.controller_leader(), Some(1));

    // Registration and heartbeats.
    let wrong = service
        .register_broker(registration(1, "another-cluster"))
        .await;
    assert_eq!(
        wrong.unwrap_err().kafka_error_name(),
        "INCONSISTENT_CLUSTER_ID"
    );
    let epoch = service
        .register_broker(registration(1, EXISTING_ID))
        .await
        .unwrap()
        .value;
    let behind = service
        .broker_heartbeat(heartbeat(1, epoch, epoch - 1))
        .await
        .unwrap();
    assert!(!behind.value.is_caught_up && behind.value.is_fenced);
    let offset = service.image().metadata_offset();
    let caught_up = service
        .broker_heartbeat(heartbeat(1, epoch, offset))
        .await
        .unwrap();
    assert!(caught_up.value.is_caught_up && !caught_up.value.is_fenced);
    assert!(!service.image().broker(1).unwrap().fenced);
    let stale = service
        .broker_heartbeat(heartbeat(1, epoch + 1, offset))
        .await;
    assert_eq!(stale.unwrap_err().kafka_error_name(), "STALE_BROKER_EPOCH");

    // CreateTopics: per-item results; the answer's offset is applied when it returns.
    let created = service
        .create_topics(vec![
            topic("a", 3, 1),
            topic("bad name!", 1, 1),
            topic("too-many-replicas", 1, 2),
        ])
        .await
        .unwrap();
    assert!(service.image().metadata_offset() >= created.offset);
    let a = created.value[0].as_ref().unwrap().clone();
    assert_eq!(kafka_error(&created.value[1]), "INVALID_TOPIC_EXCEPTION");
    assert_eq!(kafka_error(&created.value[2]), "INVALID_REPLICATION_FACTOR");
    let image = service.image();
    assert_eq!(image.topic("a").unwrap().partitions.len(), 3);
    assert_eq!(
        image
            .topic_configs("a")
            .unwrap()
            .get("cleanup.policy")
            .map(String::as_str),
        Some("compact")
    );

    // CreatePartitions and IncrementalAlterConfigs.
    let grown = service
        .create_partitions(vec![CreatePartitions {
            name: "a".into(),
            count: 5,
            assignments: None,
        }])
        .await
        .unwrap();
    assert!(grown.value[0].is_ok());
    let altered = service
        .alter_configs(vec![AlterConfigs {
            resource: ConfigResource::Topic("a".into()),
            changes: vec![("retention.ms".into(), Some("1000".into()))],
        }])
        .await
        .unwrap();
    assert!(altered.value[0].is_ok());
    let image = service.image();
    assert_eq!(image.topic("a").unwrap().partitions.len(), 5);
    assert_eq!(
        image.config(&ConfigResource::Topic("a".into()), "retention.ms"),
        Some("1000")
    );

    // Producer-id blocks: consecutive, never overlapping; only for the current epoch.
    let b1 = service.allocate_producer_ids(1, epoch).await.unwrap().value;
    let b2 = service.allocate_producer_ids(1, epoch).await.unwrap().value;
    assert_eq!(b2.first_id, b1.first_id + b1.size);
    let stale = service.allocate_producer_ids(1, epoch - 1).await;
    assert_eq!(stale.unwrap_err().kafka_error_name(), "STALE_BROKER_EPOCH");
    // A reservation above the next free id (the ids of an upgraded single node): the
    // block starts there and the next block follows it.
    let floor = b2.first_id + 50_000;
    let reserved = service
        .reserve_producer_ids_above(1, epoch, floor)
        .await
        .unwrap()
        .value;
    assert_eq!(reserved.first_id, floor);
    let b3 = service.allocate_producer_ids(1, epoch).await.unwrap().value;
    assert_eq!(b3.first_id, floor + reserved.size);

    // AlterPartition: a compare-and-set on the partition epoch.
    let p0 = service.image().partition(a.topic_id, 0).unwrap().clone();
    let request = AlterPartitionRequest {
        broker_id: 1,
        broker_epoch: epoch,
        topic_id: a.topic_id,
        partition: 0,
        leader_epoch: p0.leader_epoch,
        partition_epoch: p0.partition_epoch,
        new_isr: vec![IsrMember {
            broker_id: 1,
            broker_epoch: epoch,
        }],
    };
    let same = service.alter_partition(request.clone()).await.unwrap();
    assert_eq!(same.value, p0);
    // A partition epoch newer than the controller's: Kafka answers NOT_CONTROLLER (this
    // controller must be behind), so the leader looks for the controller again.
    let ahead = AlterPartitionRequest {
        partition_epoch: p0.partition_epoch + 7,
        ..request
    };
    assert_eq!(
        service
            .alter_partition(ahead)
            .await
            .unwrap_err()
            .kafka_error_name(),
        "NOT_CONTROLLER"
    );
    // (An older one, INVALID_UPDATE_VERSION, needs an ISR change: see the metadata
    // crate's controller tests.)

    // Preferred leaders: all are already preferred.
    assert_eq!(service.elect_preferred_leaders().await.unwrap().value, 0);

    // DeleteTopics, by id; an unknown name is a per-item error.
    let deleted = service
        .delete_topics(vec![
            TopicRef::Id(a.topic_id),
            TopicRef::Name("nope".into()),
        ])
        .await
        .unwrap();
    assert_eq!(deleted.value[0].as_ref().unwrap().name, "a");
    assert_eq!(kafka_error(&deleted.value[1]), "UNKNOWN_TOPIC_OR_PARTITION");
    assert!(service.image().topic("a").is_none());

    // A second broker that leaves for good.
    let e2 = service
        .register_broker(registration(2, EXISTING_ID))
        .await
        .unwrap()
        .value;
    assert_eq!(service.image().broker(2).unwrap().epoch, e2);
    service.unregister_broker(2).await.unwrap();
    assert!(service.image().broker(2).is_none());
    service
        .create_topics(vec![topic("kept", 2, 1)])
        .await
        .unwrap();

    // DescribeQuorum: one voter, the leader, no lag.
    let quorum = service.describe_quorum().await.unwrap();
    assert_eq!(quorum.leader, Some(1));
    assert_eq!(quorum.voters.len(), 1);
    assert_eq!(quorum.voters[0].lag, Some(0));
    assert!(quorum.learners.is_empty());

    // Restart from the directory, configured with another id: the log's id is kept.
    let before = service.image();
    service.shutdown().await.unwrap();
    service.shutdown().await.unwrap();
    assert!(!service.is_active_controller());
    assert!(matches!(
        service.create_topics(vec![topic("late", 1, 1)]).await,
        Err(ControllerError::Stopped)
    ));
    drop(service);
    let service = MetadataService::start(config(tmp.path(), "a-new-random-id"))
        .await
        .unwrap();
    active(&service).await;
    let after = service
        .wait_for_offset(before.metadata_offset(), WAIT)
        .await
        .unwrap();
    assert_eq!(after.cluster_id(), Some(EXISTING_ID));
    assert_eq!(
        content(&after.to_snapshot_bytes().unwrap()),
        content(&before.to_snapshot_bytes().unwrap())
    );
    assert_eq!(after.topic("kept").unwrap().partitions.len(), 2);
    service.shutdown().await.unwrap();
}

#[tokio::test]
async fn bad_configs_are_refused_before_anything_starts() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = config(tmp.path(), EXISTING_ID);
    c.request_timeout = Duration::ZERO;
    assert!(matches!(
        MetadataService::start(c).await,
        Err(ControllerError::Config(_))
    ));
    let mut c = config(tmp.path(), "");
    c.cluster_id = Some(String::new());
    assert!(matches!(
        MetadataService::start(c).await,
        Err(ControllerError::Config(_))
    ));
    let mut c = config(tmp.path(), EXISTING_ID);
    c.quorum.voters.clear();
    assert!(matches!(
        MetadataService::start(c).await,
        Err(ControllerError::Quorum(_))
    ));
    assert!(
        std::fs::read_dir(tmp.path()).unwrap().next().is_none(),
        "nothing written"
    );
}

/// Kafka's largest operation (10,000 records: a topic of 9,999 partitions) fits one entry,
/// and is committed and applied in reasonable time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_largest_operation_fits_one_entry() {
    init_tracing();
    let tmp = tempfile::tempdir().unwrap();
    let service = MetadataService::start(config(tmp.path(), EXISTING_ID))
        .await
        .unwrap();
    active(&service).await;
    let epoch = service
        .register_broker(registration(1, EXISTING_ID))
        .await
        .unwrap()
        .value;
    let offset = service.image().metadata_offset();
    service
        .broker_heartbeat(heartbeat(1, epoch, offset))
        .await
        .unwrap();
    let mut big = topic("big", 9_999, 1);
    big.configs.clear();
    let records = 1 + 9_999;
    let started = Instant::now();
    let created = service.create_topics(vec![big]).await.unwrap();
    let elapsed = started.elapsed();
    assert!(created.value[0].is_ok(), "{:?}", created.value);
    assert_eq!(
        service.image().topic("big").unwrap().partitions.len(),
        9_999
    );
    println!("{records} records committed and applied in {elapsed:?}");
    let started = Instant::now();
    let clone = (*service.image()).clone();
    println!(
        "cloning an image of 9,999 partitions: {:?}",
        started.elapsed()
    );
    drop(clone);
    // One more partition than Kafka allows per operation: refused whole.
    let mut too_big = topic("too-big", 10_000, 1);
    too_big.configs.clear();
    let refused = service.create_topics(vec![too_big]).await.unwrap();
    assert_eq!(kafka_error(&refused.value[0]), "POLICY_VIOLATION");
    service.shutdown().await.unwrap();
}
