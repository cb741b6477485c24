//! Reassignments decided and committed through the image, step by step.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::super::*;
use crate::image::PartitionRegistration;
use crate::testkit::Harness;

/// Brokers 1..=4 and topic `t` with the given replica lists (the first replica leads).
fn cluster(assignments: &[&[BrokerId]]) -> (Harness, Uuid) {
    let mut h = Harness::new();
    for id in 1..=4 {
        h.add_broker(id, None);
    }
    let outcome = h.controller.create_topics(
        &h.image,
        &[CreateTopic {
            name: "t".into(),
            num_partitions: -1,
            replication_factor: -1,
            assignments: assignments
                .iter()
                .enumerate()
                .map(|(p, r)| ReplicaAssignment {
                    partition: p as i32,
                    replicas: r.to_vec(),
                })
                .collect(),
            configs: BTreeMap::new(),
            topic_id: None,
        }],
    );
    outcome.results[0].as_ref().unwrap();
    h.commit(outcome.records).unwrap();
    let id = h.image.topic("t").unwrap().id;
    (h, id)
}

fn item(partition: i32, target: Option<&[BrokerId]>) -> Reassignment {
    Reassignment {
        topic: "t".into(),
        partition,
        target: target.map(<[BrokerId]>::to_vec),
    }
}

/// Decides and commits; the per-item error names.
fn reassign(h: &mut Harness, items: &[Reassignment]) -> Vec<&'static str> {
    let outcome = h
        .controller
        .alter_partition_reassignments(&h.image, items, true);
    if !outcome.records.is_empty() {
        h.commit(outcome.records).unwrap();
    }
    outcome
        .results
        .iter()
        .map(|r| r.as_ref().map_or_else(|e| e.kafka_error_name(), |()| "OK"))
        .collect()
}

fn partition(h: &Harness, topic: Uuid, p: i32) -> PartitionRegistration {
    h.image.partition(topic, p).unwrap().clone()
}

/// The leader's AlterPartition to `isr`, committed.
fn set_isr(h: &mut Harness, topic: Uuid, p: i32, isr: &[BrokerId]) {
    let reg = partition(h, topic, p);
    let request = AlterPartitionRequest {
        broker_id: reg.leader,
        broker_epoch: h.epoch(reg.leader),
        topic_id: topic,
        partition: p,
        leader_epoch: reg.leader_epoch,
        partition_epoch: reg.partition_epoch,
        new_isr: isr
            .iter()
            .map(|&broker_id| IsrMember {
                broker_id,
                broker_epoch: h.epoch(broker_id),
            })
            .collect(),
    };
    let records = h.controller.alter_partition(&h.image, &request).unwrap();
    h.commit(records).unwrap();
}

#[test]
fn a_moved_replica_completes_when_it_joins_the_isr_and_the_leader_hands_over() {
    let (mut h, t) = cluster(&[&[1, 2]]);
    let before = partition(&h, t, 0);
    assert_eq!((before.leader, before.isr.clone()), (1, vec![1, 2]));

    assert_eq!(reassign(&mut h, &[item(0, Some(&[2, 3]))]), ["OK"]);
    let started = partition(&h, t, 0);
    assert_eq!(
        started.replicas,
        [2, 3, 1],
        "target first, then the leaving"
    );
    assert_eq!(started.adding_replicas, [3]);
    assert_eq!(started.removing_replicas, [1]);
    assert_eq!((started.leader, started.isr.clone()), (1, vec![1, 2]));
    assert_eq!(started.leader_epoch, before.leader_epoch, "no new term yet");
    assert_eq!(started.original_replicas(), [2, 1]);
    assert_eq!(started.target_replicas(), [2, 3]);
    // The same target again changes nothing.
    assert_eq!(reassign(&mut h, &[item(0, Some(&[2, 3]))]), ["OK"]);
    assert_eq!(partition(&h, t, 0), started);

    // Broker 3 caught up: the leader adds it, which completes the reassignment.
    set_isr(&mut h, t, 0, &[1, 2, 3]);
    let done = partition(&h, t, 0);
    assert_eq!(done.replicas, [2, 3]);
    assert_eq!(done.isr, [2, 3]);
    assert_eq!(done.leader, 2, "the first in-sync replica of the target");
    assert!(!done.is_reassigning());
    assert_eq!(
        done.leader_epoch,
        started.leader_epoch + 1,
        "fences broker 1"
    );
    assert!(h.controller.complete_reassignments(&h.image).is_empty());
}

#[test]
fn dropping_or_reordering_replicas_completes_at_once() {
    let (mut h, t) = cluster(&[&[1, 2, 3], &[3, 4, 2]]);
    assert_eq!(
        reassign(&mut h, &[item(0, Some(&[3, 1])), item(1, Some(&[4, 3, 2]))]),
        ["OK", "OK"]
    );
    let p0 = partition(&h, t, 0);
    assert_eq!(
        (p0.replicas.as_slice(), p0.isr.as_slice()),
        (&[3, 1][..], &[1, 3][..])
    );
    assert_eq!(p0.leader, 1, "the leader stays when it stays a replica");
    assert!(!p0.is_reassigning());
    let p1 = partition(&h, t, 1);
    assert_eq!(p1.replicas, [4, 3, 2]);
    assert_eq!(
        p1.leader, 3,
        "a reorder moves no leadership (preferred election may)"
    );
    // Removing the leader: the next in-sync target replica leads.
    assert_eq!(reassign(&mut h, &[item(1, Some(&[4]))]), ["OK"]);
    let p1 = partition(&h, t, 1);
    assert_eq!((p1.replicas.as_slice(), p1.leader), (&[4][..], 4));
}

#[test]
fn cancelling_goes_back_to_the_original_replicas() {
    let (mut h, t) = cluster(&[&[1, 2]]);
    let before = partition(&h, t, 0);
    assert_eq!(
        reassign(&mut h, &[item(0, None)]),
        ["NO_REASSIGNMENT_IN_PROGRESS"]
    );
    assert_eq!(reassign(&mut h, &[item(0, Some(&[3, 4]))]), ["OK"]);
    // Broker 3 caught up, 4 not yet: still in progress.
    set_isr(&mut h, t, 0, &[1, 2, 3]);
    let halfway = partition(&h, t, 0);
    assert_eq!(halfway.replicas, [3, 4, 1, 2]);
    assert_eq!(halfway.adding_replicas, [3, 4]);
    assert_eq!(halfway.isr, [1, 2, 3]);
    assert_eq!(reassign(&mut h, &[item(0, None)]), ["OK"]);
    let back = partition(&h, t, 0);
    assert_eq!(back.replicas, before.replicas);
    assert_eq!(back.isr, [1, 2], "the adding replicas leave the ISR");
    assert_eq!(back.leader, 1);
    assert!(!back.is_reassigning());
    assert!(
        back.leader_epoch > before.leader_epoch,
        "fences brokers 3 and 4"
    );
}

#[test]
fn a_new_target_replaces_the_reassignment_in_progress() {
    let (mut h, t) = cluster(&[&[1, 2]]);
    assert_eq!(reassign(&mut h, &[item(0, Some(&[3, 4]))]), ["OK"]);
    // From replicas [3, 4, 1, 2] to [1, 3]: broker 3 stays an adding replica (it has not
    // caught up), 4 and 2 go once it has.
    assert_eq!(reassign(&mut h, &[item(0, Some(&[1, 3]))]), ["OK"]);
    let p = partition(&h, t, 0);
    assert_eq!(p.replicas, [1, 3, 4, 2]);
    assert_eq!(p.adding_replicas, [3]);
    assert_eq!(p.removing_replicas, [4, 2]);
    assert_eq!(p.isr, [1, 2]);
    set_isr(&mut h, t, 0, &[1, 2, 3]);
    let p = partition(&h, t, 0);
    assert_eq!(
        (p.replicas.as_slice(), p.isr.as_slice()),
        (&[1, 3][..], &[1, 3][..])
    );
    assert!(!p.is_reassigning());
}

#[test]
fn kafkas_refusals() {
    let (mut h, t) = cluster(&[&[1, 2]]);
    let before = partition(&h, t, 0);
    let unknown_topic = Reassignment {
        topic: "nosuch".into(),
        partition: 0,
        target: Some(vec![1]),
    };
    assert_eq!(
        reassign(
            &mut h,
            &[item(0, Some(&[])), item(1, Some(&[1])), unknown_topic,]
        ),
        [
            "INVALID_REPLICA_ASSIGNMENT",
            "UNKNOWN_TOPIC_OR_PARTITION",
            "UNKNOWN_TOPIC_OR_PARTITION"
        ]
    );
    assert_eq!(
        reassign(&mut h, &[item(0, Some(&[1, 1]))]),
        ["INVALID_REPLICA_ASSIGNMENT"]
    );
    assert_eq!(
        reassign(&mut h, &[item(0, Some(&[1, 9]))]),
        ["INVALID_REPLICA_ASSIGNMENT"]
    );
    // A partition named twice: the second entry is refused, the first one done.
    assert_eq!(
        reassign(&mut h, &[item(0, Some(&[2, 1])), item(0, Some(&[1, 2]))]),
        ["OK", "INVALID_REQUEST"]
    );
    assert_eq!(partition(&h, t, 0).replicas, [2, 1]);
    // KIP-860: a changed replication factor when it is not allowed.
    let outcome =
        h.controller
            .alter_partition_reassignments(&h.image, &[item(0, Some(&[1, 2, 3]))], false);
    assert!(outcome.records.is_empty());
    assert_eq!(
        outcome.results[0].as_ref().unwrap_err().kafka_error_name(),
        "INVALID_REPLICATION_FACTOR"
    );
    assert_eq!(
        partition(&h, t, 0).partition_epoch,
        before.partition_epoch + 1
    );
}

#[test]
fn reassignments_need_metadata_version_3() {
    let (h, _) = cluster(&[&[1, 2]]);
    // A cluster an earlier build started at level 2.
    let old = crate::testkit::image_at_metadata_version(2);
    let outcome = h
        .controller
        .alter_partition_reassignments(&old, &[item(0, Some(&[2, 3]))], true);
    assert!(outcome.records.is_empty());
    assert_eq!(
        outcome.results[0].as_ref().unwrap_err().kafka_error_name(),
        "UNSUPPORTED_VERSION"
    );
    let record = |adding: Option<Vec<BrokerId>>| {
        MetadataRecord::PartitionChange(PartitionChangeRecord {
            topic_id: Uuid::nil(),
            partition_id: 0,
            leader: None,
            isr: None,
            replicas: None,
            expected_partition_epoch: None,
            adding_replicas: adding,
            removing_replicas: None,
        })
    };
    assert!(check_metadata_version(&[record(None)], 1).is_ok());
    assert!(check_metadata_version(&[record(Some(vec![]))], 2).is_err());
    assert!(check_metadata_version(&[record(Some(vec![3]))], 3).is_ok());
}

#[test]
fn the_image_refuses_adding_or_removing_replicas_outside_the_replicas() {
    let (mut h, t) = cluster(&[&[1, 2]]);
    let bad = |adding: Vec<BrokerId>, removing: Vec<BrokerId>| {
        vec![MetadataRecord::PartitionChange(PartitionChangeRecord {
            topic_id: t,
            partition_id: 0,
            leader: None,
            isr: None,
            replicas: None,
            expected_partition_epoch: None,
            adding_replicas: Some(adding),
            removing_replicas: Some(removing),
        })]
    };
    let before = partition(&h, t, 0);
    assert!(h.commit(bad(vec![3], vec![])).is_err(), "not a replica");
    assert!(
        h.commit(bad(vec![1], vec![1])).is_err(),
        "both adding and removing"
    );
    assert!(h.commit(bad(vec![2, 2], vec![])).is_err(), "twice");
    assert_eq!(partition(&h, t, 0), before);
}
