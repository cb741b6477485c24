//! The image: atomic batches, determinism, snapshots.

use std::collections::BTreeMap;

use proptest::prelude::*;
use uuid::Uuid;

use super::*;
use crate::controller::{
    AlterConfigs, BrokerHeartbeatRequest, BrokerRegistrationRequest, CreatePartitions, CreateTopic,
    TopicRef,
};
use crate::records::tests::arb_record;
use crate::testkit::{endpoint, Harness, CLUSTER_ID};

fn pos(offset: i64) -> LogPosition {
    LogPosition { offset, epoch: 1 }
}

fn topic_records(name: &str, id: u128, leader: BrokerId) -> Vec<MetadataRecord> {
    vec![
        MetadataRecord::Topic(TopicRecord {
            name: name.into(),
            topic_id: Uuid::from_u128(id),
        }),
        MetadataRecord::Partition(PartitionRecord {
            topic_id: Uuid::from_u128(id),
            partition_id: 0,
            replicas: vec![leader],
            isr: vec![leader],
            leader,
            leader_epoch: 0,
            partition_epoch: 0,
        }),
    ]
}

fn register(id: BrokerId) -> MetadataRecord {
    MetadataRecord::RegisterBroker(RegisterBrokerRecord {
        broker_id: id,
        incarnation_id: Uuid::from_u128(id as u128 + 100),
        endpoints: endpoint(id),
        rack: None,
        fenced: false,
    })
}

/// An image with a broker 1 (epoch 1) and topic "a" (id 1) with a config.
fn small_image() -> MetadataImage {
    let mut image = MetadataImage::new();
    image
        .apply(
            pos(0),
            &[MetadataRecord::ClusterId(ClusterIdRecord {
                cluster_id: CLUSTER_ID.into(),
            })],
        )
        .unwrap();
    image.apply(pos(1), &[register(1)]).unwrap();
    let mut batch = topic_records("a", 1, 1);
    batch.push(MetadataRecord::Config(ConfigRecord {
        resource: ConfigResource::Topic("a".into()),
        name: "retention.ms".into(),
        value: Some("5".into()),
    }));
    image.apply(pos(2), &batch).unwrap();
    image
}

#[test]
fn a_batch_with_one_bad_record_changes_nothing() {
    let image = small_image();
    // Everything a batch can touch is touched before the bad record: a removed topic and
    // a new one under the same name, a new broker, a config, the producer ids, and a
    // partition change.
    let mut batch = vec![
        MetadataRecord::PartitionChange(PartitionChangeRecord {
            topic_id: Uuid::from_u128(1),
            partition_id: 0,
            leader: Some(NO_LEADER),
            isr: None,
            replicas: None,
            expected_partition_epoch: None,
            adding_replicas: None,
            removing_replicas: None,
        }),
        MetadataRecord::RemoveTopic(RemoveTopicRecord {
            topic_id: Uuid::from_u128(1),
        }),
        register(2),
        MetadataRecord::ProducerIds(ProducerIdsRecord {
            broker_id: 1,
            broker_epoch: 1,
            first_producer_id: 0,
            size: 1000,
        }),
        MetadataRecord::Config(ConfigRecord {
            resource: ConfigResource::ClusterDefault,
            name: "x".into(),
            value: Some("y".into()),
        }),
    ];
    batch.extend(topic_records("a", 2, 2));
    let mut good = image.clone();
    good.apply(pos(3), &batch).unwrap();
    assert_eq!(good.topic("a").unwrap().id, Uuid::from_u128(2));
    assert!(good.topic_configs("a").is_none());
    assert_eq!(good.next_producer_id(), 1000);

    let bad_records = [
        // leader outside the ISR
        MetadataRecord::PartitionChange(PartitionChangeRecord {
            topic_id: Uuid::from_u128(2),
            partition_id: 0,
            leader: Some(1),
            isr: None,
            replicas: None,
            expected_partition_epoch: None,
            adding_replicas: None,
            removing_replicas: None,
        }),
        // a partition that is not the next one
        MetadataRecord::Partition(PartitionRecord {
            topic_id: Uuid::from_u128(2),
            partition_id: 5,
            replicas: vec![2],
            isr: vec![2],
            leader: 2,
            leader_epoch: 0,
            partition_epoch: 0,
        }),
        // an overlapping producer-id block
        MetadataRecord::ProducerIds(ProducerIdsRecord {
            broker_id: 1,
            broker_epoch: 1,
            first_producer_id: 0,
            size: 1000,
        }),
        // a stale broker epoch
        MetadataRecord::BrokerRegistrationChange(BrokerRegistrationChangeRecord {
            broker_id: 2,
            broker_epoch: 1,
            fenced: Some(true),
            in_controlled_shutdown: None,
            storage_unavailable: None,
        }),
        // a broker that still leads
        MetadataRecord::UnregisterBroker(UnregisterBrokerRecord {
            broker_id: 2,
            broker_epoch: 3,
        }),
        // another cluster id
        MetadataRecord::ClusterId(ClusterIdRecord {
            cluster_id: "other".into(),
        }),
        // a config for a topic that is gone
        MetadataRecord::Config(ConfigRecord {
            resource: ConfigResource::Topic("gone".into()),
            name: "x".into(),
            value: None,
        }),
        // an illegal name
        MetadataRecord::Topic(TopicRecord {
            name: "no/slash".into(),
            topic_id: Uuid::from_u128(9),
        }),
    ];
    for bad in bad_records {
        let mut attempt = image.clone();
        let mut records = batch.clone();
        records.push(bad.clone());
        let err = attempt.apply(pos(3), &records).unwrap_err();
        assert!(
            matches!(err, MetadataError::InconsistentRecord { offset: 3, index, .. } if index == batch.len()),
            "{bad:?}: {err}"
        );
        assert_eq!(attempt, image, "{bad:?} left a trace");
        attempt.check_invariants().unwrap();
        // The rejected entry is skipped; the next batch applies at the next offset.
        attempt.skip(pos(3)).unwrap();
        assert_eq!(attempt.metadata_offset(), 3);
        attempt.apply(pos(4), &batch).unwrap();
    }
}

#[test]
fn offsets_only_grow() {
    let mut image = small_image();
    assert_eq!(image.metadata_offset(), 2);
    for offset in [2, 1, -5] {
        let err = image.apply(pos(offset), &[]).unwrap_err();
        assert_eq!(err.kafka_error_name(), "UNKNOWN_SERVER_ERROR");
        assert!(matches!(err, MetadataError::OffsetNotIncreasing { .. }));
        assert!(image.skip(pos(offset)).is_err());
    }
    image
        .skip(LogPosition {
            offset: 10,
            epoch: 4,
        })
        .unwrap();
    assert_eq!(
        image.last_applied(),
        Some(LogPosition {
            offset: 10,
            epoch: 4
        })
    );
    // Broker epochs are the offsets of their registrations.
    image.apply(pos(11), &[register(5)]).unwrap();
    assert_eq!(image.broker(5).unwrap().epoch, 11);
}

#[test]
fn epochs_follow_kafka() {
    let mut image = small_image();
    image.apply(pos(3), &[register(2)]).unwrap();
    let id = Uuid::from_u128(1);
    let change = |leader, isr: Option<Vec<BrokerId>>, replicas: Option<Vec<BrokerId>>| {
        MetadataRecord::PartitionChange(PartitionChangeRecord {
            topic_id: id,
            partition_id: 0,
            leader,
            isr,
            replicas,
            expected_partition_epoch: None,
            adding_replicas: None,
            removing_replicas: None,
        })
    };
    image
        .apply(pos(4), &[change(None, Some(vec![1, 2]), Some(vec![1, 2]))])
        .unwrap();
    let p = image.partition(id, 0).unwrap();
    assert_eq!((p.leader, p.leader_epoch, p.partition_epoch), (1, 0, 1));
    image.apply(pos(5), &[change(Some(2), None, None)]).unwrap();
    let p = image.partition(id, 0).unwrap();
    assert_eq!((p.leader, p.leader_epoch, p.partition_epoch), (2, 1, 2));
    image
        .apply(pos(6), &[change(Some(NO_LEADER), Some(vec![2]), None)])
        .unwrap();
    let p = image.partition_by_name("a", 0).unwrap();
    assert_eq!((p.leader, p.isr.as_slice()), (NO_LEADER, &[2][..]));
    assert_eq!((p.leader_epoch, p.partition_epoch), (2, 3));
    assert_eq!(image.offline_replicas(p), Vec::<BrokerId>::new());
}

#[test]
fn removing_replicas_bumps_the_leader_epoch_and_naming_the_same_leader_does_not() {
    let mut image = small_image();
    image.apply(pos(3), &[register(2)]).unwrap();
    image.apply(pos(4), &[register(3)]).unwrap();
    let id = Uuid::from_u128(1);
    let change = |leader, isr: Option<Vec<BrokerId>>, replicas: Option<Vec<BrokerId>>| {
        MetadataRecord::PartitionChange(PartitionChangeRecord {
            topic_id: id,
            partition_id: 0,
            leader,
            isr,
            replicas,
            expected_partition_epoch: None,
            adding_replicas: None,
            removing_replicas: None,
        })
    };
    let epochs = |image: &MetadataImage| {
        let p = image.partition(id, 0).unwrap();
        (p.leader, p.leader_epoch, p.partition_epoch)
    };
    // Adding replicas: the leader epoch stays.
    image
        .apply(
            pos(5),
            &[change(None, Some(vec![1, 2, 3]), Some(vec![1, 2, 3]))],
        )
        .unwrap();
    assert_eq!(epochs(&image), (1, 0, 1));
    // Naming the current leader is no leader change: the leader epoch stays.
    image.apply(pos(6), &[change(Some(1), None, None)]).unwrap();
    assert_eq!(epochs(&image), (1, 0, 2));
    // Removing a replica fences it out of the partition: the leader epoch bumps, once,
    // even with a leader change in the same record.
    image
        .apply(pos(7), &[change(None, Some(vec![1, 2]), Some(vec![1, 2]))])
        .unwrap();
    assert_eq!(epochs(&image), (1, 1, 3));
    image
        .apply(pos(8), &[change(Some(2), Some(vec![2]), Some(vec![2]))])
        .unwrap();
    assert_eq!(epochs(&image), (2, 2, 4));
    // Reordering the same replicas removes none.
    image
        .apply(pos(9), &[change(None, Some(vec![2, 1]), Some(vec![2, 1]))])
        .unwrap();
    image
        .apply(pos(10), &[change(None, None, Some(vec![1, 2]))])
        .unwrap();
    assert_eq!(epochs(&image), (2, 2, 6));
}

#[test]
fn the_metadata_version_is_set_at_bootstrap_never_goes_down_and_a_newer_one_stops_apply() {
    let mut image = MetadataImage::new();
    let bootstrap = crate::controller::Controller::bootstrap(&image, CLUSTER_ID);
    assert!(
        bootstrap.contains(&MetadataRecord::FeatureLevel(FeatureLevelRecord {
            name: METADATA_VERSION.into(),
            feature_level: LATEST_METADATA_VERSION,
        }))
    );
    image.apply(pos(0), &bootstrap).unwrap();
    assert_eq!(
        image.feature_level(METADATA_VERSION),
        Some(LATEST_METADATA_VERSION)
    );
    assert!(crate::controller::Controller::bootstrap(&image, CLUSTER_ID).is_empty());
    let level = |name: &str, feature_level| {
        MetadataRecord::FeatureLevel(FeatureLevelRecord {
            name: name.into(),
            feature_level,
        })
    };
    // Down, to 0, or an unknown feature: rejected like any inconsistent record.
    for bad in [level(METADATA_VERSION, 0), level("kraft.version", 1)] {
        assert!(matches!(
            image.apply(pos(1), &[bad]),
            Err(MetadataError::InconsistentRecord { .. })
        ));
    }
    // Above what this build reads: not a rejection, an error that stops the node; the
    // image is unchanged (the register before it in the batch is not applied).
    let before = image.clone();
    let err = image
        .apply(
            pos(1),
            &[
                register(1),
                level(METADATA_VERSION, LATEST_METADATA_VERSION + 1),
            ],
        )
        .unwrap_err();
    assert!(
        matches!(err, MetadataError::UnsupportedMetadataVersion { level, .. } if level == LATEST_METADATA_VERSION + 1),
        "{err}"
    );
    assert_eq!(image, before);
    // The level survives a snapshot; a snapshot above this build's level is refused.
    let bytes = image.to_snapshot_bytes().unwrap();
    assert_eq!(MetadataImage::from_snapshot_bytes(&bytes).unwrap(), image);
    let newer = String::from_utf8(bytes[1..].to_vec()).unwrap().replace(
        &format!("\"metadata_version\":{LATEST_METADATA_VERSION}"),
        &format!("\"metadata_version\":{}", LATEST_METADATA_VERSION + 1),
    );
    let mut newer_bytes = vec![SNAPSHOT_VERSION];
    newer_bytes.extend_from_slice(newer.as_bytes());
    assert!(matches!(
        MetadataImage::from_snapshot_bytes(&newer_bytes),
        Err(MetadataError::UnsupportedMetadataVersion { .. })
    ));
    // Every record this build writes is allowed at level 1, and nothing at level 0.
    assert!(check_metadata_version(&bootstrap, 1).is_ok());
    assert!(matches!(
        check_metadata_version(&bootstrap, 0),
        Err(MetadataError::MetadataVersionTooLow {
            needed: 1,
            level: 0
        })
    ));
}

#[test]
fn snapshots_round_trip_and_reject_damage() {
    let mut h = Harness::new();
    for id in 1..=3 {
        h.add_broker(id, Some(["x", "y"][id as usize % 2]));
    }
    h.create_topic("t", 5, 2);
    h.create_topic("u", 1, 3);
    let (_, records) = h
        .controller
        .allocate_producer_ids(&h.image, 1, h.epoch(1))
        .unwrap();
    h.commit(records).unwrap();
    let outcome = h.controller.alter_configs(
        &h.image,
        &[
            AlterConfigs {
                resource: ConfigResource::Topic("t".into()),
                changes: vec![("cleanup.policy".into(), Some("compact".into()))],
            },
            AlterConfigs {
                resource: ConfigResource::Broker(2),
                changes: vec![("log.retention.ms".into(), Some("9".into()))],
            },
        ],
    );
    h.commit(outcome.records).unwrap();
    h.expire(&[3]);

    let bytes = h.image.to_snapshot_bytes().unwrap();
    assert_eq!(bytes[0], SNAPSHOT_VERSION);
    let loaded = MetadataImage::from_snapshot_bytes(&bytes).unwrap();
    assert_eq!(loaded, h.image);
    assert_eq!(
        loaded.to_snapshot_bytes().unwrap(),
        bytes,
        "encoding is canonical"
    );

    // Versions and garbage.
    for version in [0u8, 2, 255] {
        let mut other = bytes.clone();
        other[0] = version;
        assert!(matches!(
            MetadataImage::from_snapshot_bytes(&other),
            Err(MetadataError::UnsupportedVersion { .. })
        ));
    }
    assert!(MetadataImage::from_snapshot_bytes(&[]).is_err());
    for cut in [1, bytes.len() / 2, bytes.len() - 1] {
        assert!(matches!(
            MetadataImage::from_snapshot_bytes(&bytes[..cut]),
            Err(MetadataError::Decode { .. })
        ));
    }
    // JSON that parses but breaks an invariant is refused too.
    let text = String::from_utf8(bytes[1..].to_vec()).unwrap();
    let damaged = [
        text.replacen("\"leader_epoch\":0", "\"leader_epoch\":-1", 1),
        text.replacen("\"name\":\"u\"", "\"name\":\"t\"", 1),
        text.replacen("\"name\":\"u\"", "\"name\":\"u/v\"", 1),
        text.replacen("\"isr\":[", "\"isr\":[77,", 1),
        text.replacen("\"next_producer_id\":1000", "\"next_producer_id\":-1", 1),
        text.replacen(
            "\"type\":\"topic\",\"name\":\"t\"",
            "\"type\":\"topic\",\"name\":\"zz\"",
            1,
        ),
        text.replacen("{\"cluster_id\"", "{\"surprise\":1,\"cluster_id\"", 1),
    ];
    for d in damaged {
        assert_ne!(d, text, "the damage must apply");
        let mut bytes = vec![SNAPSHOT_VERSION];
        bytes.extend(d.as_bytes());
        let err = MetadataImage::from_snapshot_bytes(&bytes).unwrap_err();
        assert!(matches!(err, MetadataError::Decode { .. }), "{err}");
    }
}

/// One step of a random cluster history.
#[derive(Debug, Clone)]
enum Op {
    Register(BrokerId, bool),
    Heartbeat(BrokerId, bool, bool),
    HeartbeatAll,
    Tick(u64),
    Create(u8, i32, i16),
    Delete(u8),
    Grow(u8, i32),
    ProducerIds(BrokerId),
    Config(u8, Option<u8>),
    Unregister(BrokerId),
    PreferredElection,
    Raw(Vec<MetadataRecord>),
}

fn arb_op() -> impl Strategy<Value = Op> {
    let broker = 1..6i32;
    let topic = 0..4u8;
    prop_oneof![
        2 => (broker.clone(), any::<bool>()).prop_map(|(b, racked)| Op::Register(b, racked)),
        4 => (broker.clone(), prop::bool::weighted(0.1), prop::bool::weighted(0.1))
            .prop_map(|(b, f, s)| Op::Heartbeat(b, f, s)),
        4 => Just(Op::HeartbeatAll),
        2 => (1..6_000u64).prop_map(Op::Tick),
        3 => (topic.clone(), 1..6i32, 1..4i16).prop_map(|(t, p, rf)| Op::Create(t, p, rf)),
        1 => topic.clone().prop_map(Op::Delete),
        1 => (topic.clone(), 1..4i32).prop_map(|(t, n)| Op::Grow(t, n)),
        1 => broker.clone().prop_map(Op::ProducerIds),
        1 => (topic, proptest::option::of(0..3u8)).prop_map(|(t, v)| Op::Config(t, v)),
        1 => broker.prop_map(Op::Unregister),
        1 => Just(Op::PreferredElection),
        1 => proptest::collection::vec(arb_record(), 1..3).prop_map(Op::Raw),
    ]
}

/// Runs a history through the controller and a log; errors of requests are ignored
/// (they are part of the history), rejected batches are skipped.
fn run(ops: &[Op]) -> Harness {
    let mut h = Harness::new();
    let name = |t: u8| format!("topic-{t}");
    let mut raw_seen = false;
    for op in ops {
        let records = match op {
            Op::Register(b, racked) => {
                let request = BrokerRegistrationRequest {
                    broker_id: *b,
                    cluster_id: CLUSTER_ID.into(),
                    incarnation_id: Uuid::from_u128(h.now as u128 * 10 + *b as u128),
                    previous_incarnation_id: None,
                    endpoints: endpoint(*b),
                    rack: racked.then(|| format!("rack-{}", b % 2)),
                };
                h.controller
                    .register_broker(&h.image, h.now, &request)
                    .map(|d| d.records)
                    .unwrap_or_default()
            }
            Op::Heartbeat(b, want_fence, want_shut_down) => match h.image.broker(*b) {
                Some(reg) => {
                    let request = BrokerHeartbeatRequest {
                        broker_id: *b,
                        broker_epoch: reg.epoch,
                        current_metadata_offset: h.image.metadata_offset(),
                        want_fence: *want_fence,
                        want_shut_down: *want_shut_down,
                        storage_unavailable: false,
                    };
                    h.controller
                        .heartbeat(&h.image, h.now, &request)
                        .unwrap()
                        .records
                }
                None => Vec::new(),
            },
            Op::HeartbeatAll => {
                // Each broker's heartbeat is its own decision, committed before the next.
                let ids: Vec<BrokerId> = h.image.brokers().map(|b| b.id).collect();
                for id in ids {
                    let epoch = h.epoch(id);
                    let request = BrokerHeartbeatRequest {
                        broker_id: id,
                        broker_epoch: epoch,
                        current_metadata_offset: h.image.metadata_offset(),
                        want_fence: false,
                        want_shut_down: false,
                        storage_unavailable: false,
                    };
                    let records = h
                        .controller
                        .heartbeat(&h.image, h.now, &request)
                        .unwrap()
                        .records;
                    if !records.is_empty() {
                        h.commit(records).unwrap();
                    }
                }
                Vec::new()
            }
            Op::Tick(ms) => {
                h.now += ms;
                h.controller.fence_expired_brokers(&h.image, h.now)
            }
            Op::Create(t, p, rf) => {
                h.controller
                    .create_topics(
                        &h.image,
                        &[CreateTopic {
                            name: name(*t),
                            num_partitions: *p,
                            replication_factor: *rf,
                            assignments: vec![],
                            configs: BTreeMap::from([("k".into(), "v".into())]),
                            topic_id: None,
                        }],
                    )
                    .records
            }
            Op::Delete(t) => {
                h.controller
                    .delete_topics(&h.image, &[TopicRef::Name(name(*t))])
                    .records
            }
            Op::Grow(t, n) => {
                let count = h
                    .image
                    .topic(&name(*t))
                    .map_or(1, |x| x.partitions.len() as i32);
                h.controller
                    .create_partitions(
                        &h.image,
                        &[CreatePartitions {
                            name: name(*t),
                            count: count + n,
                            assignments: None,
                        }],
                    )
                    .records
            }
            Op::ProducerIds(b) => {
                let epoch = h.image.broker(*b).map_or(0, |r| r.epoch);
                h.controller
                    .allocate_producer_ids(&h.image, *b, epoch)
                    .map(|(_, r)| r)
                    .unwrap_or_default()
            }
            Op::Config(t, v) => {
                h.controller
                    .alter_configs(
                        &h.image,
                        &[AlterConfigs {
                            resource: ConfigResource::Topic(name(*t)),
                            changes: vec![("k".into(), v.map(|v| v.to_string()))],
                        }],
                    )
                    .records
            }
            Op::Unregister(b) => h
                .controller
                .unregister_broker(&h.image, *b)
                .unwrap_or_default(),
            Op::PreferredElection => h.controller.elect_preferred_leaders(&h.image),
            Op::Raw(records) => records.clone(),
        };
        if !records.is_empty() {
            commit_checked(&mut h, op, records);
        }
        raw_seen |= matches!(op, Op::Raw(_));
        if raw_seen {
            continue;
        }
        // While only the controller decides: leaders are usable brokers, and a partition
        // has no leader only when no usable broker is in its ISR.
        for p in h.image.all_partitions() {
            let usable = |b: &BrokerId| h.image.broker(*b).is_some_and(|r| r.is_usable());
            let reg = p.registration;
            if reg.leader == NO_LEADER {
                assert!(!reg.isr.iter().any(usable), "{op:?}: {reg:?}");
            } else {
                assert!(usable(&reg.leader), "{op:?}: {reg:?}");
            }
        }
    }
    h
}

fn commit_checked(h: &mut Harness, op: &Op, records: Vec<MetadataRecord>) {
    let before = h.image.clone();
    if let Err(e) = h.commit(records) {
        // The controller's own decisions always fit the image they were made on.
        assert!(matches!(op, Op::Raw(_)), "{op:?} was rejected: {e}");
        let mut expected = before;
        expected.skip(h.image.last_applied().unwrap()).unwrap();
        assert_eq!(h.image, expected, "a rejected batch left a trace");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn apply_is_deterministic_and_snapshots_are_the_image(ops in proptest::collection::vec(arb_op(), 1..100)) {
        let h = run(&ops);
        // Replaying the same log gives the same image.
        let mut replay = MetadataImage::new();
        for (position, records) in &h.log {
            if replay.apply(*position, records).is_err() {
                replay.skip(*position).unwrap();
            }
        }
        prop_assert_eq!(&replay, &h.image);
        // A snapshot loads back to the image; a snapshot taken midway plus the rest of
        // the log gives it too.
        let snapshot = h.image.to_snapshot_bytes().unwrap();
        prop_assert_eq!(&MetadataImage::from_snapshot_bytes(&snapshot).unwrap(), &h.image);
        let half = h.log.len() / 2;
        let mut first = MetadataImage::new();
        for (position, records) in &h.log[..half] {
            if first.apply(*position, records).is_err() {
                first.skip(*position).unwrap();
            }
        }
        let mut resumed = MetadataImage::from_snapshot_bytes(&first.to_snapshot_bytes().unwrap()).unwrap();
        for (position, records) in &h.log[half..] {
            if resumed.apply(*position, records).is_err() {
                resumed.skip(*position).unwrap();
            }
        }
        prop_assert_eq!(&resumed, &h.image);
    }

    #[test]
    fn random_records_never_break_invariants(batches in proptest::collection::vec(proptest::collection::vec(arb_record(), 1..4), 1..30)) {
        let mut image = small_image();
        for (i, batch) in batches.iter().enumerate() {
            let before = image.clone();
            let position = pos(3 + i as i64);
            if image.apply(position, batch).is_err() {
                prop_assert_eq!(&image, &before);
                image.skip(position).unwrap();
            }
            prop_assert!(image.check_invariants().is_ok(), "{:?}", image.check_invariants());
        }
    }
}

#[test]
fn a_partition_change_applies_only_at_its_expected_partition_epoch() {
    let mut image = small_image();
    image.apply(pos(3), &[register(2)]).unwrap();
    let id = Uuid::from_u128(1);
    let change = |expected| {
        MetadataRecord::PartitionChange(PartitionChangeRecord {
            topic_id: id,
            partition_id: 0,
            leader: None,
            isr: Some(vec![1, 2]),
            replicas: Some(vec![1, 2]),
            expected_partition_epoch: expected,
            adding_replicas: None,
            removing_replicas: None,
        })
    };
    let epoch = image.partition(id, 0).unwrap().partition_epoch;
    let before = image.clone();
    for wrong in [epoch - 1, epoch + 1] {
        let err = image.apply(pos(4), &[change(Some(wrong))]).unwrap_err();
        assert!(err.to_string().contains("partition epoch"), "{err}");
        assert_eq!(image.partition(id, 0), before.partition(id, 0));
    }
    image.apply(pos(4), &[change(Some(epoch))]).unwrap();
    assert_eq!(image.partition(id, 0).unwrap().partition_epoch, epoch + 1);
    // A record without the field (written before it existed) is not checked.
    let json = format!(
        r#"[{{"type":"partition_change","topic_id":"{id}","partition_id":0,"leader":null,"isr":[1],"replicas":null}}]"#
    );
    let mut bytes = vec![crate::records::RECORD_BATCH_VERSION];
    bytes.extend_from_slice(json.as_bytes());
    let records = crate::records::decode_batch(&bytes).unwrap();
    assert!(
        matches!(&records[0], MetadataRecord::PartitionChange(c) if c.expected_partition_epoch.is_none())
    );
    image.apply(pos(5), &records).unwrap();
}
