//! The controller's decisions, committed through the image as the quorum would.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use super::*;
use crate::image::PartitionRegistration;
use crate::testkit::{endpoint, Harness, CLUSTER_ID};

fn three_brokers() -> Harness {
    let mut h = Harness::new();
    for id in 1..=3 {
        h.add_broker(id, None);
    }
    h
}

fn partitions(h: &Harness, topic: &str) -> Vec<PartitionRegistration> {
    h.image.topic(topic).unwrap().partitions.clone()
}

fn create(name: &str, partitions: i32, rf: i16) -> CreateTopic {
    CreateTopic {
        name: name.into(),
        num_partitions: partitions,
        replication_factor: rf,
        assignments: vec![],
        configs: BTreeMap::new(),
        topic_id: None,
    }
}

/// ISR members with their current broker epochs, as a leader would send them.
fn members(h: &Harness, ids: &[BrokerId]) -> Vec<IsrMember> {
    ids.iter()
        .map(|&broker_id| IsrMember {
            broker_id,
            broker_epoch: h.epoch(broker_id),
        })
        .collect()
}

/// The partition leader's AlterPartition adding `joining` to the current ISR.
fn join_request(
    h: &Harness,
    topic: Uuid,
    partition: i32,
    joining: BrokerId,
) -> AlterPartitionRequest {
    let reg = h.image.partition(topic, partition).unwrap().clone();
    let mut new_isr = reg.isr.clone();
    new_isr.push(joining);
    AlterPartitionRequest {
        broker_id: reg.leader,
        broker_epoch: h.epoch(reg.leader),
        topic_id: topic,
        partition,
        leader_epoch: reg.leader_epoch,
        partition_epoch: reg.partition_epoch,
        new_isr: members(h, &new_isr),
    }
}

fn error_name<T: std::fmt::Debug>(result: &Result<T>) -> &'static str {
    result.as_ref().unwrap_err().kafka_error_name()
}

#[test]
fn twelve_partitions_lead_four_per_broker_and_start_in_sync() {
    let mut h = three_brokers();
    h.create_topic("orders", 12, 1);
    let mut leaders = BTreeMap::new();
    for p in partitions(&h, "orders") {
        assert_eq!(p.isr, p.replicas);
        assert_eq!(p.leader, p.replicas[0]);
        assert_eq!((p.leader_epoch, p.partition_epoch), (0, 0));
        *leaders.entry(p.leader).or_insert(0) += 1;
    }
    assert_eq!(leaders, BTreeMap::from([(1, 4), (2, 4), (3, 4)]));
    for b in 1..=3 {
        assert_eq!(h.image.partitions_led_by(b).len(), 4);
    }
}

#[test]
fn an_expired_session_fences_the_broker_and_moves_its_leaderships_to_in_sync_replicas() {
    let mut h = three_brokers();
    h.create_topic("t", 6, 3);
    let before = partitions(&h, "t");
    let records = h.expire(&[2]);
    assert!(!records.is_empty());
    let b2 = h.image.broker(2).unwrap();
    assert!(b2.fenced);
    assert_eq!(
        h.image.live_brokers().map(|b| b.id).collect::<Vec<_>>(),
        vec![1, 3]
    );
    for (old, new) in before.iter().zip(partitions(&h, "t")) {
        assert!(!new.isr.contains(&2), "{new:?}");
        assert_eq!(new.replicas, old.replicas);
        assert_eq!(new.partition_epoch, old.partition_epoch + 1);
        if old.leader == 2 {
            // The first other replica in replica order that is in sync and unfenced.
            let expected = *old.replicas.iter().find(|&&r| r != 2).unwrap();
            assert_eq!(new.leader, expected);
            assert_eq!(new.leader_epoch, old.leader_epoch + 1);
        } else {
            assert_eq!(new.leader, old.leader);
            assert_eq!(
                new.leader_epoch, old.leader_epoch,
                "no leader change, no bump"
            );
        }
        assert_eq!(h.image.offline_replicas(&new), vec![2]);
    }
    assert!(h.image.partitions_led_by(2).is_empty());
    // Clients on the PLAINTEXT listener see only the live brokers.
    let addresses = h.image.live_broker_addresses("PLAINTEXT");
    assert_eq!(
        addresses.iter().map(|a| a.id).collect::<Vec<_>>(),
        vec![1, 3]
    );
    assert_eq!((addresses[0].host, addresses[0].port), ("127.0.0.1", 9092));
}

#[test]
fn a_partition_with_no_unfenced_in_sync_replica_goes_offline_and_comes_back_on_unfence() {
    let mut h = three_brokers();
    h.create_topic("solo", 3, 1);
    let before = partitions(&h, "solo");
    let on_3: Vec<usize> = (0..3).filter(|&p| before[p].leader == 3).collect();
    assert_eq!(on_3.len(), 1);
    h.expire(&[3]);
    let after = partitions(&h, "solo");
    for p in 0..3 {
        if on_3.contains(&p) {
            assert_eq!(after[p].leader, NO_LEADER);
            assert_eq!(
                after[p].isr,
                vec![3],
                "the last in-sync replica stays in the ISR"
            );
            assert_eq!(after[p].leader_epoch, before[p].leader_epoch + 1);
            assert_eq!(h.image.offline_replicas(&after[p]), vec![3]);
        } else {
            assert_eq!(after[p], before[p], "other partitions untouched");
        }
    }
    // It heartbeats again, caught up: unfenced, and its partition has a leader again.
    let decision = h.heartbeat(3);
    assert!(!decision.is_fenced);
    assert!(!h.image.broker(3).unwrap().fenced);
    let back = partitions(&h, "solo");
    for &p in &on_3 {
        assert_eq!(back[p].leader, 3);
        assert_eq!(back[p].leader_epoch, before[p].leader_epoch + 2);
        assert_eq!(back[p].partition_epoch, before[p].partition_epoch + 2);
    }
}

#[test]
fn a_fenced_broker_stays_fenced_until_it_is_caught_up_and_asks() {
    let mut h = Harness::new();
    let epoch = h.register(1, None);
    assert!(
        h.image.broker(1).unwrap().fenced,
        "registrations start fenced"
    );
    let behind = BrokerHeartbeatRequest {
        broker_id: 1,
        broker_epoch: epoch,
        current_metadata_offset: epoch - 1,
        want_fence: false,
        want_shut_down: false,
        storage_unavailable: false,
    };
    let d = h.controller.heartbeat(&h.image, h.now, &behind).unwrap();
    assert!(d.records.is_empty() && d.is_fenced && !d.is_caught_up);
    let wants_fence = BrokerHeartbeatRequest {
        current_metadata_offset: epoch,
        want_fence: true,
        ..behind
    };
    let d = h
        .controller
        .heartbeat(&h.image, h.now, &wants_fence)
        .unwrap();
    assert!(d.records.is_empty() && d.is_fenced && d.is_caught_up);
    let d = h.heartbeat(1);
    assert!(!d.is_fenced);
    assert!(!h.image.broker(1).unwrap().fenced);
    // An unfenced broker that asks to be fenced is fenced, leaderships moved.
    h.add_broker(2, None);
    h.create_topic("t", 4, 2);
    h.heartbeat_with(1, true, false);
    assert!(h.image.broker(1).unwrap().fenced);
    assert!(h.image.partitions_led_by(1).is_empty());
    assert_eq!(h.image.partitions_led_by(2).len(), 4);
}

#[test]
fn preferred_leaders_come_back_after_unfence() {
    let mut h = three_brokers();
    h.create_topic("t", 6, 3);
    let preferred: Vec<BrokerId> = partitions(&h, "t").iter().map(|p| p.replicas[0]).collect();
    h.expire(&[1]);
    // Broker 1 is back, but out of the ISRs: the leaders' AlterPartition adds it.
    h.heartbeat(1);
    assert!(h.controller.elect_preferred_leaders(&h.image).is_empty());
    let t = h.image.topic("t").unwrap().id;
    for p in 0..6 {
        let request = join_request(&h, t, p, 1);
        let records = h.controller.alter_partition(&h.image, &request).unwrap();
        h.commit(records).unwrap();
    }
    let records = h.controller.elect_preferred_leaders(&h.image);
    assert_eq!(records.len(), 2, "broker 1 preferred for 2 of 6 partitions");
    h.commit(records).unwrap();
    let now: Vec<BrokerId> = partitions(&h, "t").iter().map(|p| p.leader).collect();
    assert_eq!(now, preferred);
    assert!(h.controller.elect_preferred_leaders(&h.image).is_empty());
}

#[test]
fn alter_partition_is_a_compare_and_set_on_the_partition_epoch() {
    let mut h = three_brokers();
    let t = h.create_topic("t", 1, 3);
    let reg = h.image.partition(t, 0).unwrap().clone();
    let follower = reg.replicas[2];
    let shrink = AlterPartitionRequest {
        broker_id: reg.leader,
        broker_epoch: h.epoch(reg.leader),
        topic_id: t,
        partition: 0,
        leader_epoch: reg.leader_epoch,
        partition_epoch: reg.partition_epoch,
        new_isr: members(
            &h,
            &reg.isr
                .iter()
                .copied()
                .filter(|&r| r != follower)
                .collect::<Vec<_>>(),
        ),
    };
    let records = h.controller.alter_partition(&h.image, &shrink).unwrap();
    h.commit(records).unwrap();
    let after = h.image.partition(t, 0).unwrap().clone();
    assert_eq!(after.isr.len(), 2);
    assert_eq!(after.partition_epoch, reg.partition_epoch + 1);
    assert_eq!(
        after.leader_epoch, reg.leader_epoch,
        "ISR changes keep the leader epoch"
    );
    // The same request again is based on an old partition epoch.
    let stale = h.controller.alter_partition(&h.image, &shrink);
    assert_eq!(error_name(&stale), "INVALID_UPDATE_VERSION");
    // Only the leader may change the ISR (Kafka: INVALID_REQUEST at the current epoch).
    let not_leader = AlterPartitionRequest {
        broker_id: follower,
        broker_epoch: h.epoch(follower),
        partition_epoch: after.partition_epoch,
        ..shrink.clone()
    };
    assert_eq!(
        error_name(&h.controller.alter_partition(&h.image, &not_leader)),
        "INVALID_REQUEST"
    );
    // A fenced broker cannot join the ISR.
    h.expire(&[follower]);
    let reg = h.image.partition(t, 0).unwrap().clone();
    let mut new_isr = reg.isr.clone();
    new_isr.push(follower);
    let join = AlterPartitionRequest {
        broker_id: reg.leader,
        broker_epoch: h.epoch(reg.leader),
        leader_epoch: reg.leader_epoch,
        partition_epoch: reg.partition_epoch,
        new_isr: members(&h, &new_isr),
        ..shrink
    };
    assert_eq!(
        error_name(&h.controller.alter_partition(&h.image, &join)),
        "INELIGIBLE_REPLICA"
    );
}

#[test]
fn a_replica_joins_the_isr_only_at_the_broker_epoch_the_leader_saw() {
    // KIP-903: a follower that caught up, then restarted (maybe with an empty disk) and
    // registered again, is not the replica the leader saw in sync.
    let mut h = three_brokers();
    let t = h.create_topic("t", 1, 3);
    let reg = h.image.partition(t, 0).unwrap().clone();
    let follower = reg.replicas[2];
    let seen_epoch = h.epoch(follower);
    let shrink = AlterPartitionRequest {
        broker_id: reg.leader,
        broker_epoch: h.epoch(reg.leader),
        topic_id: t,
        partition: 0,
        leader_epoch: reg.leader_epoch,
        partition_epoch: reg.partition_epoch,
        new_isr: members(
            &h,
            &reg.isr
                .iter()
                .copied()
                .filter(|&r| r != follower)
                .collect::<Vec<_>>(),
        ),
    };
    h.commit(h.controller.alter_partition(&h.image, &shrink).unwrap())
        .unwrap();
    // The follower restarts: fenced, then a new registration (a new epoch), unfenced.
    h.heartbeat_with(follower, true, false);
    h.register(follower, None);
    h.heartbeat(follower);
    assert_ne!(h.epoch(follower), seen_epoch);
    let reg = h.image.partition(t, 0).unwrap().clone();
    let mut join = AlterPartitionRequest {
        leader_epoch: reg.leader_epoch,
        partition_epoch: reg.partition_epoch,
        new_isr: reg
            .isr
            .iter()
            .map(|&broker_id| IsrMember {
                broker_id,
                broker_epoch: h.epoch(broker_id),
            })
            .chain([IsrMember {
                broker_id: follower,
                broker_epoch: seen_epoch,
            }])
            .collect(),
        ..shrink
    };
    let refused = h.controller.alter_partition(&h.image, &join);
    assert_eq!(error_name(&refused), "INELIGIBLE_REPLICA");
    // At its current epoch it joins.
    join.new_isr.last_mut().unwrap().broker_epoch = h.epoch(follower);
    h.commit(h.controller.alter_partition(&h.image, &join).unwrap())
        .unwrap();
    assert!(h.image.partition(t, 0).unwrap().isr.contains(&follower));
}

#[test]
fn re_registration_with_a_new_incarnation_fences_the_old_one() {
    let mut h = three_brokers();
    h.create_topic("t", 6, 1);
    h.create_topic("r", 3, 3);
    let old_epoch = h.epoch(2);
    let led: Vec<i32> = h
        .image
        .partitions_led_by(2)
        .iter()
        .filter(|p| p.topic_name == "t")
        .map(|p| p.partition)
        .collect();
    assert!(!led.is_empty());
    // The old incarnation's session runs out (its fence not decided yet): the new one
    // may take over.
    h.now += h.controller.config().session_timeout_ms;
    let new_epoch = h.register(2, None);
    assert!(new_epoch > old_epoch);
    let b2 = h.image.broker(2).unwrap();
    assert!(b2.fenced, "the new incarnation starts fenced");
    assert_eq!(b2.incarnation_id, h.incarnations[&2]);
    // Its RF1 partitions are offline, its RF3 partitions led by others, and it is out of
    // every ISR where it was not the last member.
    assert!(h.image.partitions_led_by(2).is_empty());
    for p in h.image.all_partitions() {
        let reg = p.registration;
        if reg.replicas == [2] {
            assert_eq!((reg.leader, reg.leader_epoch), (NO_LEADER, 1));
        } else {
            assert!(!reg.isr.contains(&2));
        }
    }
    // Requests from the old incarnation carry a stale epoch.
    let stale = BrokerHeartbeatRequest {
        broker_id: 2,
        broker_epoch: old_epoch,
        current_metadata_offset: h.image.metadata_offset(),
        want_fence: false,
        want_shut_down: false,
        storage_unavailable: false,
    };
    let err = h.controller.heartbeat(&h.image, h.now, &stale);
    assert_eq!(error_name(&err), "STALE_BROKER_EPOCH");
    assert_eq!(
        error_name(&h.controller.allocate_producer_ids(&h.image, 2, old_epoch)),
        "STALE_BROKER_EPOCH"
    );
    // The new incarnation catches up and takes its RF1 partitions back (not those of
    // "r": it is out of their ISRs until their leaders add it).
    h.heartbeat(2);
    let now_led: Vec<i32> = h
        .image
        .partitions_led_by(2)
        .iter()
        .map(|p| p.partition)
        .collect();
    assert_eq!(now_led, led);
    // A retry of the same registration commits nothing and keeps the epoch.
    let retry = BrokerRegistrationRequest {
        broker_id: 2,
        cluster_id: CLUSTER_ID.into(),
        incarnation_id: h.incarnations[&2],
        previous_incarnation_id: None,
        endpoints: endpoint(2),
        rack: None,
    };
    let d = h
        .controller
        .register_broker(&h.image, h.now, &retry)
        .unwrap();
    assert!(d.records.is_empty());
    assert_eq!(d.existing_epoch, Some(new_epoch));
}

#[test]
fn a_second_incarnation_is_refused_while_the_first_has_a_valid_session_unless_it_restarted_it() {
    let mut h = three_brokers();
    h.create_topic("t", 3, 3);
    let epoch = h.epoch(2);
    let timeout = h.controller.config().session_timeout_ms;
    let intruder = BrokerRegistrationRequest {
        broker_id: 2,
        cluster_id: CLUSTER_ID.into(),
        incarnation_id: Uuid::new_v4(),
        previous_incarnation_id: None,
        endpoints: endpoint(2),
        rack: None,
    };
    // Two processes with the same node.id: the second is refused, nothing changes.
    let before = h.image.clone();
    let refused = h
        .controller
        .register_broker(&h.image, h.now + timeout - 1, &intruder);
    assert_eq!(error_name(&refused), "DUPLICATE_BROKER_REGISTRATION");
    assert_eq!(h.image, before);
    // The first keeps heartbeating and stays refused-against.
    h.now += timeout / 2;
    h.heartbeat(2);
    let refused = h
        .controller
        .register_broker(&h.image, h.now + timeout - 1, &intruder);
    assert_eq!(error_name(&refused), "DUPLICATE_BROKER_REGISTRATION");
    // A controller that just became active gives the registered one a full session too.
    let mut fresh = Controller::new(ControllerConfig::default(), 3);
    let refused = fresh.register_broker(&h.image, h.now + 10 * timeout, &intruder);
    assert_eq!(error_name(&refused), "DUPLICATE_BROKER_REGISTRATION");
    // A restart of the same data directory names the registered incarnation as its
    // predecessor: that process has exited, so the new one takes over at once (a broker
    // restarted after kill -9 must not wait out its old session), even on a controller
    // that just became active. Naming another incarnation proves nothing.
    let wrong_predecessor = BrokerRegistrationRequest {
        previous_incarnation_id: Some(Uuid::new_v4()),
        ..intruder.clone()
    };
    let refused = h
        .controller
        .register_broker(&h.image, h.now, &wrong_predecessor);
    assert_eq!(error_name(&refused), "DUPLICATE_BROKER_REGISTRATION");
    let restarted = BrokerRegistrationRequest {
        previous_incarnation_id: Some(h.incarnations[&2]),
        ..intruder.clone()
    };
    let mut fresh = Controller::new(ControllerConfig::default(), 3);
    let d = fresh.register_broker(&h.image, h.now, &restarted).unwrap();
    assert!(!d.records.is_empty());
    let d = h
        .controller
        .register_broker(&h.image, h.now, &restarted)
        .unwrap();
    assert!(!d.records.is_empty());
    // Once its session has expired, the new incarnation takes over.
    let d = h
        .controller
        .register_broker(&h.image, h.now + timeout, &intruder)
        .unwrap();
    assert!(!d.records.is_empty());
    // A fenced registration can be taken over at once.
    h.heartbeat_with(3, true, false);
    assert!(h.image.broker(3).unwrap().fenced);
    let takeover = BrokerRegistrationRequest {
        broker_id: 3,
        incarnation_id: Uuid::new_v4(),
        previous_incarnation_id: None,
        endpoints: endpoint(3),
        ..intruder
    };
    let d = h
        .controller
        .register_broker(&h.image, h.now, &takeover)
        .unwrap();
    h.commit(d.records).unwrap();
    assert_eq!(
        h.image.broker(3).unwrap().incarnation_id,
        takeover.incarnation_id
    );
    assert_eq!(h.epoch(2), epoch);
}

#[test]
fn registration_checks_cluster_id_and_listeners() {
    let mut h = Harness::new();
    let mut request = BrokerRegistrationRequest {
        broker_id: 1,
        cluster_id: "another-cluster".into(),
        incarnation_id: Uuid::new_v4(),
        previous_incarnation_id: None,
        endpoints: endpoint(1),
        rack: None,
    };
    let err = h.controller.register_broker(&h.image, h.now, &request);
    assert_eq!(error_name(&err), "INCONSISTENT_CLUSTER_ID");
    request.cluster_id = CLUSTER_ID.into();
    request.endpoints.push(request.endpoints[0].clone());
    let err = h.controller.register_broker(&h.image, h.now, &request);
    assert_eq!(error_name(&err), "INVALID_REQUEST");
    let unknown = h.controller.heartbeat(
        &h.image,
        h.now,
        &BrokerHeartbeatRequest {
            broker_id: 9,
            broker_epoch: 1,
            current_metadata_offset: 0,
            want_fence: false,
            want_shut_down: false,
            storage_unavailable: false,
        },
    );
    assert_eq!(error_name(&unknown), "BROKER_ID_NOT_REGISTERED");
}

#[test]
fn controlled_shutdown_moves_leaderships_then_lets_the_broker_stop() {
    let mut h = three_brokers();
    h.create_topic("t", 6, 2);
    assert!(!h.image.partitions_led_by(1).is_empty());
    let d = h.heartbeat_with(1, false, true);
    assert!(d.in_controlled_shutdown && !d.should_shut_down);
    let b1 = h.image.broker(1).unwrap();
    assert!(b1.in_controlled_shutdown && !b1.fenced && !b1.is_usable());
    assert!(h.image.partitions_led_by(1).is_empty());
    assert!(h
        .image
        .all_partitions()
        .all(|p| !p.registration.isr.contains(&1)));
    // New partitions avoid it.
    h.create_topic("u", 4, 2);
    assert!(h
        .image
        .partitions_on_broker(1)
        .iter()
        .all(|p| p.topic_name == "t"));
    // Nothing left to move, but brokers 2 and 3 have not said they applied the moves
    // (Kafka's rule: the new leaders must know they lead before the old one stops).
    let d = h.heartbeat_with(1, false, true);
    assert!(d.in_controlled_shutdown && !d.should_shut_down && d.records.is_empty());
    h.heartbeat(2);
    let d = h.heartbeat_with(1, false, true);
    assert!(!d.should_shut_down, "broker 3 has not caught up yet");
    h.heartbeat(3);
    // Now it is fenced and may stop.
    let d = h.heartbeat_with(1, false, true);
    assert!(d.should_shut_down && d.is_fenced);
    assert!(h.image.broker(1).unwrap().fenced);
    // A fenced broker that wants to stop may stop at once.
    let d = h.heartbeat_with(1, false, true);
    assert!(d.should_shut_down && d.records.is_empty());
}

#[test]
fn a_broker_with_a_full_disk_hands_over_what_others_can_lead_and_takes_it_back_later() {
    let mut h = three_brokers();
    let t = h.create_topic("t", 6, 2);
    let solo = h.create_topic("solo", 3, 1);
    let led_before = h.image.partitions_led_by(1).len();
    assert!(led_before >= 2, "broker 1 leads some of t and of solo");
    let on_1 = |h: &Harness, topic: Uuid| -> Vec<i32> {
        (0..h.image.topic_by_id(topic).unwrap().partitions.len() as i32)
            .filter(|&p| h.image.partition(topic, p).unwrap().replicas.contains(&1))
            .collect()
    };
    let solo_on_1 = on_1(&h, solo);
    assert!(!solo_on_1.is_empty());

    let d = h.heartbeat_storage(1, true);
    assert!(!d.records.is_empty() && !d.is_fenced);
    let b1 = h.image.broker(1).unwrap();
    assert!(b1.storage_unavailable && !b1.fenced && !b1.is_usable());
    // Replicated partitions: led elsewhere, and broker 1 is out of their ISRs.
    for p in on_1(&h, t) {
        let reg = h.image.partition(t, p).unwrap();
        assert_ne!(reg.leader, 1, "t-{p}");
        assert!(!reg.isr.contains(&1), "t-{p}: {:?}", reg.isr);
    }
    // Partitions only it holds stay with it (readable), rather than going offline.
    for &p in &solo_on_1 {
        let reg = h.image.partition(solo, p).unwrap();
        assert_eq!((reg.leader, reg.isr.clone()), (1, vec![1]), "solo-{p}");
    }
    // Reported again: nothing more to do.
    assert!(h.heartbeat_storage(1, true).records.is_empty());
    // It takes no new replicas, and cannot rejoin an ISR while its disk is full.
    h.create_topic("u", 4, 2);
    assert!(h
        .image
        .partitions_on_broker(1)
        .iter()
        .all(|p| p.topic_name != "u"));
    let p = on_1(&h, t)[0];
    let join = join_request(&h, t, p, 1);
    assert_eq!(
        error_name(&h.controller.alter_partition(&h.image, &join)),
        "INELIGIBLE_REPLICA"
    );
    // Nor is it given back its partitions as preferred leader.
    assert!(h.controller.elect_preferred_leaders(&h.image).is_empty());

    // Space is freed: usable again, and it rejoins the ISR through its leader.
    let d = h.heartbeat_storage(1, false);
    assert!(!d.records.is_empty());
    assert!(h.image.broker(1).unwrap().is_usable());
    h.commit(h.controller.alter_partition(&h.image, &join).unwrap())
        .unwrap();
    assert!(h.image.partition(t, p).unwrap().isr.contains(&1));
    assert!(h.heartbeat_storage(1, false).records.is_empty());
}

#[test]
fn fencing_decisions_are_not_repeated_while_they_commit_and_a_new_controller_gives_full_sessions() {
    let mut h = three_brokers();
    h.create_topic("t", 3, 1);
    let start = h.now;
    let timeout = h.controller.config().session_timeout_ms;
    assert_eq!(
        h.controller.next_session_deadline_ms(&h.image),
        Some(start + timeout)
    );
    let first = h
        .controller
        .fence_expired_brokers(&h.image, start + timeout);
    assert_eq!(
        first
            .iter()
            .filter(|r| matches!(r, MetadataRecord::BrokerRegistrationChange(_)))
            .count(),
        3
    );
    // Not committed yet: asking again does not decide the same fences twice.
    assert!(h
        .controller
        .fence_expired_brokers(&h.image, start + timeout + 10)
        .is_empty());
    // A controller that just became active gives every broker a full session.
    let mut fresh = Controller::new(ControllerConfig::default(), 1);
    assert!(fresh
        .fence_expired_brokers(&h.image, start + 5 * timeout)
        .is_empty());
    assert!(fresh
        .fence_expired_brokers(&h.image, start + 6 * timeout - 1)
        .is_empty());
    assert!(!fresh
        .fence_expired_brokers(&h.image, start + 6 * timeout)
        .is_empty());
}

#[test]
fn brokers_expiring_together_never_receive_each_others_leaderships() {
    let mut h = Harness::new();
    for id in 1..=4 {
        h.add_broker(id, None);
    }
    h.create_topic("t", 8, 4);
    h.expire(&[1, 2, 3]);
    for p in partitions(&h, "t") {
        assert_eq!(p.leader, 4, "{p:?}");
        assert_eq!(p.isr, vec![4]);
    }
    // Broker 4 goes too: every partition is offline, 4 stays the last in-sync replica.
    h.expire(&[1, 2, 3, 4]);
    for p in partitions(&h, "t") {
        assert_eq!((p.leader, p.isr.as_slice()), (NO_LEADER, &[4][..]));
    }
}

#[test]
fn producer_id_blocks_are_unique_and_increasing() {
    let mut h = three_brokers();
    let mut blocks = Vec::new();
    for round in 0..4 {
        for b in 1..=3 {
            let (block, records) = h
                .controller
                .allocate_producer_ids(&h.image, b, h.epoch(b))
                .unwrap();
            assert_eq!(block.size, PRODUCER_ID_BLOCK_SIZE);
            h.commit(records).unwrap();
            assert_eq!(h.image.next_producer_id(), block.first_id + block.size);
            blocks.push((round, block));
        }
    }
    for pair in blocks.windows(2) {
        assert_eq!(pair[1].1.first_id, pair[0].1.first_id + pair[0].1.size);
    }
    assert_eq!(blocks[0].1.first_id, 0);
    // Two allocations decided on the same image overlap: the second batch is refused
    // when applied, and nothing of it changes the image.
    let (_, a) = h
        .controller
        .allocate_producer_ids(&h.image, 1, h.epoch(1))
        .unwrap();
    let (_, b) = h
        .controller
        .allocate_producer_ids(&h.image, 2, h.epoch(2))
        .unwrap();
    h.commit(a).unwrap();
    let next = h.image.next_producer_id();
    assert!(h.commit(b).is_err());
    assert_eq!(h.image.next_producer_id(), next);
    assert_eq!(
        error_name(&h.controller.allocate_producer_ids(&h.image, 9, 1)),
        "BROKER_ID_NOT_REGISTERED"
    );
}

#[test]
fn a_block_can_start_above_the_next_free_id_and_later_blocks_follow_it() {
    let mut h = three_brokers();
    let (first, records) = h
        .controller
        .allocate_producer_ids(&h.image, 1, h.epoch(1))
        .unwrap();
    h.commit(records).unwrap();
    assert_eq!(first.first_id, 0);
    // Below the next free id: the next free id wins (nothing is given out twice).
    let (low, records) = h
        .controller
        .allocate_producer_ids_at_least(&h.image, 2, h.epoch(2), 10)
        .unwrap();
    h.commit(records).unwrap();
    assert_eq!(low.first_id, PRODUCER_ID_BLOCK_SIZE);
    // Above it: the block starts there, and every later block of any broker after it.
    let floor = 123_456;
    let (high, records) = h
        .controller
        .allocate_producer_ids_at_least(&h.image, 3, h.epoch(3), floor)
        .unwrap();
    h.commit(records).unwrap();
    assert_eq!((high.broker_id, high.first_id), (3, floor));
    assert_eq!(h.image.next_producer_id(), floor + PRODUCER_ID_BLOCK_SIZE);
    let (next, records) = h
        .controller
        .allocate_producer_ids(&h.image, 1, h.epoch(1))
        .unwrap();
    h.commit(records).unwrap();
    assert_eq!(next.first_id, floor + PRODUCER_ID_BLOCK_SIZE);
    // Refused: a negative floor, a floor with no room for a block, a stale epoch.
    assert_eq!(
        error_name(
            &h.controller
                .allocate_producer_ids_at_least(&h.image, 1, h.epoch(1), -1)
        ),
        "INVALID_REQUEST"
    );
    assert_eq!(
        error_name(&h.controller.allocate_producer_ids_at_least(
            &h.image,
            1,
            h.epoch(1),
            i64::MAX - 10
        )),
        "UNKNOWN_SERVER_ERROR"
    );
    assert_eq!(
        error_name(&h.controller.allocate_producer_ids_at_least(
            &h.image,
            1,
            h.epoch(1) - 1,
            floor
        )),
        "STALE_BROKER_EPOCH"
    );
    // A block decided on an older image that now starts below the next free id is
    // refused when applied.
    let (_, stale) = h
        .controller
        .allocate_producer_ids_at_least(&h.image, 1, h.epoch(1), 0)
        .unwrap();
    let (_, records) = h
        .controller
        .allocate_producer_ids_at_least(&h.image, 2, h.epoch(2), 0)
        .unwrap();
    h.commit(records).unwrap();
    let before = h.image.next_producer_id();
    assert!(h.commit(stale).is_err());
    assert_eq!(h.image.next_producer_id(), before);
}

#[test]
fn a_topic_can_be_created_with_the_id_it_asks_for() {
    let mut h = three_brokers();
    let wanted = Uuid::new_v4();
    let outcome = h.controller.create_topics(
        &h.image,
        &[CreateTopic {
            topic_id: Some(wanted),
            ..create("kept", 2, 1)
        }],
    );
    assert_eq!(outcome.results[0].as_ref().unwrap().topic_id, wanted);
    h.commit(outcome.records).unwrap();
    assert_eq!(h.image.topic("kept").unwrap().id, wanted);
    assert_eq!(h.image.topic_by_id(wanted).unwrap().partitions.len(), 2);

    let other = Uuid::new_v4();
    let cases: Vec<(Vec<CreateTopic>, &str, &str)> = vec![
        // The nil id and the metadata topic's id are reserved.
        (
            vec![CreateTopic {
                topic_id: Some(Uuid::nil()),
                ..create("a", 1, 1)
            }],
            "INVALID_REQUEST",
            "reserved",
        ),
        (
            vec![CreateTopic {
                topic_id: Some(Uuid::from_u128(1)),
                ..create("a", 1, 1)
            }],
            "INVALID_REQUEST",
            "reserved",
        ),
        // Another topic's id.
        (
            vec![CreateTopic {
                topic_id: Some(wanted),
                ..create("a", 1, 1)
            }],
            "INVALID_REQUEST",
            "already the id of topic 'kept'",
        ),
        // The same name again, with its own id: the name rule comes first.
        (
            vec![CreateTopic {
                topic_id: Some(wanted),
                ..create("kept", 2, 1)
            }],
            "TOPIC_ALREADY_EXISTS",
            "already exists",
        ),
        // One id twice in one request.
        (
            vec![
                CreateTopic {
                    topic_id: Some(other),
                    ..create("a", 1, 1)
                },
                CreateTopic {
                    topic_id: Some(other),
                    ..create("b", 1, 1)
                },
            ],
            "INVALID_REQUEST",
            "Duplicate topic id",
        ),
    ];
    for (request, expected, message) in cases {
        let outcome = h.controller.create_topics(&h.image, &request);
        assert!(outcome.records.is_empty(), "{request:?}");
        for result in &outcome.results {
            assert_eq!(error_name(result), expected, "{request:?}");
            let text = result.as_ref().unwrap_err().to_string();
            assert!(text.contains(message), "{text}");
        }
    }
    assert_eq!(h.image.topics().count(), 1);
}

#[test]
fn create_delete_and_recreate_gives_a_new_topic_id_and_drops_configs() {
    let mut h = three_brokers();
    let outcome = h.controller.create_topics(
        &h.image,
        &[CreateTopic {
            configs: BTreeMap::from([("retention.ms".to_owned(), "1000".to_owned())]),
            ..create("events", 3, 2)
        }],
    );
    let created = outcome.results[0].as_ref().unwrap().clone();
    assert_eq!((created.num_partitions, created.replication_factor), (3, 2));
    h.commit(outcome.records).unwrap();
    assert_eq!(
        h.image
            .config(&ConfigResource::Topic("events".into()), "retention.ms"),
        Some("1000")
    );
    let again = h
        .controller
        .create_topics(&h.image, &[create("events", 1, 1)]);
    assert_eq!(error_name(&again.results[0]), "TOPIC_ALREADY_EXISTS");
    assert!(again.records.is_empty());

    let deleted = h
        .controller
        .delete_topics(&h.image, &[TopicRef::Name("events".into())]);
    assert_eq!(
        deleted.results[0].as_ref().unwrap().topic_id,
        created.topic_id
    );
    h.commit(deleted.records).unwrap();
    assert!(h.image.topic("events").is_none());
    assert!(h.image.topic_by_id(created.topic_id).is_none());
    assert!(h.image.topic_configs("events").is_none());
    assert!(h.image.partitions_on_broker(1).is_empty());

    let id = h.create_topic("events", 2, 1);
    assert_ne!(id, created.topic_id);
    assert!(h.image.topic_configs("events").is_none());

    let unknown = h.controller.delete_topics(
        &h.image,
        &[
            TopicRef::Name("nope".into()),
            TopicRef::Id(Uuid::from_u128(5)),
            TopicRef::Name("events".into()),
            TopicRef::Id(id),
        ],
    );
    assert_eq!(
        error_name(&unknown.results[0]),
        "UNKNOWN_TOPIC_OR_PARTITION"
    );
    assert_eq!(error_name(&unknown.results[1]), "UNKNOWN_TOPIC_ID");
    assert_eq!(error_name(&unknown.results[2]), "INVALID_REQUEST");
    assert_eq!(error_name(&unknown.results[3]), "INVALID_REQUEST");
    assert!(unknown.records.is_empty());
}

#[test]
fn create_topics_validates_like_kafka() {
    let mut h = three_brokers();
    h.create_topic("a.b", 1, 1);
    let long = "x".repeat(250);
    let max = "y".repeat(249);
    let requests = vec![
        create("", 1, 1),
        create("..", 1, 1),
        create("bad/name", 1, 1),
        create(&long, 1, 1),
        create("a_b", 1, 1),
        create("a.b", 1, 1),
        create("zero", 0, 1),
        create("rf0", 1, 0),
        create("rf4", 1, 4),
        create("dup", 1, 1),
        create("dup", 1, 1),
        create(&max, 1, 1),
        create("defaults", -1, -1),
        create("c.d", 1, 1),
        create("c_d", 1, 1),
    ];
    let outcome = h.controller.create_topics(&h.image, &requests);
    let names: Vec<&str> = outcome
        .results
        .iter()
        .map(|r| r.as_ref().map_or_else(|e| e.kafka_error_name(), |_| "NONE"))
        .collect();
    assert_eq!(
        names,
        vec![
            "INVALID_TOPIC_EXCEPTION",
            "INVALID_TOPIC_EXCEPTION",
            "INVALID_TOPIC_EXCEPTION",
            "INVALID_TOPIC_EXCEPTION",
            "INVALID_TOPIC_EXCEPTION", // collides with a.b
            "TOPIC_ALREADY_EXISTS",
            "INVALID_PARTITIONS",
            "INVALID_REPLICATION_FACTOR",
            "INVALID_REPLICATION_FACTOR",
            "INVALID_REQUEST",
            "INVALID_REQUEST",
            "NONE",
            "NONE",
            "NONE",
            "INVALID_TOPIC_EXCEPTION", // collides with c.d of the same request
        ]
    );
    let rf4 = outcome.results[8].as_ref().unwrap_err().to_string();
    assert!(rf4.contains("only 3 broker(s)"), "{rf4}");
    h.commit(outcome.records).unwrap();
    assert_eq!(h.image.topics().count(), 4);
    let defaults = h.image.topic("defaults").unwrap();
    assert_eq!(defaults.partitions.len(), 1);
    assert_eq!(defaults.partitions[0].replicas.len(), 1);
}

#[test]
fn an_operation_over_the_record_limit_fails_whole_like_kafka() {
    let mut h = three_brokers();
    // Refused before anything of that size is allocated.
    let outcome = h
        .controller
        .create_topics(&h.image, &[create("ok", 1, 1), create("huge", i32::MAX, 1)]);
    assert!(outcome.records.is_empty());
    for r in &outcome.results {
        assert_eq!(error_name(r), "POLICY_VIOLATION");
    }
    // Many topics adding up past the limit fail together too.
    let many: Vec<CreateTopic> = (0..3).map(|i| create(&format!("m{i}"), 4000, 1)).collect();
    let outcome = h.controller.create_topics(&h.image, &many);
    assert!(outcome.records.is_empty());
    assert!(outcome
        .results
        .iter()
        .all(|r| error_name(r) == "POLICY_VIOLATION"));
    // At the limit it works: 1 topic record + 9,999 partition records.
    let outcome = h
        .controller
        .create_topics(&h.image, &[create("big", 9_999, 1)]);
    assert_eq!(outcome.records.len(), MAX_RECORDS_PER_OPERATION);
    h.commit(outcome.records).unwrap();
    let grow = CreatePartitions {
        name: "big".into(),
        count: 9_999 + 10_000,
        assignments: None,
    };
    let outcome = h.controller.create_partitions(&h.image, &[grow]);
    assert_eq!(error_name(&outcome.results[0]), "POLICY_VIOLATION");
}

#[test]
fn explicit_replica_assignments_are_checked() {
    let mut h = three_brokers();
    h.expire(&[3]);
    let assign = |lists: &[(i32, &[BrokerId])]| CreateTopic {
        name: "m".into(),
        num_partitions: -1,
        replication_factor: -1,
        assignments: lists
            .iter()
            .map(|(p, r)| ReplicaAssignment {
                partition: *p,
                replicas: r.to_vec(),
            })
            .collect(),
        configs: BTreeMap::new(),
        topic_id: None,
    };
    let cases: Vec<(CreateTopic, &str)> = vec![
        (
            assign(&[(0, &[1]), (2, &[2])]),
            "INVALID_REPLICA_ASSIGNMENT",
        ),
        (assign(&[(0, &[1, 1])]), "INVALID_REPLICA_ASSIGNMENT"),
        (assign(&[(0, &[1, 9])]), "INVALID_REPLICA_ASSIGNMENT"),
        (assign(&[(0, &[])]), "INVALID_REPLICA_ASSIGNMENT"),
        (
            assign(&[(0, &[1, 2]), (1, &[2])]),
            "INVALID_REPLICA_ASSIGNMENT",
        ),
        (assign(&[(0, &[3])]), "INVALID_REPLICA_ASSIGNMENT"),
        (
            CreateTopic {
                num_partitions: 1,
                ..assign(&[(0, &[1])])
            },
            "INVALID_REQUEST",
        ),
    ];
    for (request, expected) in cases {
        let outcome = h
            .controller
            .create_topics(&h.image, std::slice::from_ref(&request));
        assert_eq!(error_name(&outcome.results[0]), expected, "{request:?}");
    }
    // A fenced broker may hold a replica, but is neither leader nor in the ISR.
    let outcome = h
        .controller
        .create_topics(&h.image, &[assign(&[(1, &[3, 2]), (0, &[1, 3])])]);
    outcome.results[0].as_ref().unwrap();
    h.commit(outcome.records).unwrap();
    let m = partitions(&h, "m");
    assert_eq!((m[0].leader, m[0].isr.as_slice()), (1, &[1][..]));
    assert_eq!((m[1].leader, m[1].isr.as_slice()), (2, &[2][..]));
    assert_eq!(m[1].replicas, vec![3, 2]);
}

#[test]
fn create_partitions_only_grows() {
    let mut h = three_brokers();
    let t = h.create_topic("t", 2, 2);
    let requests = [CreatePartitions {
        name: "t".into(),
        count: 5,
        assignments: None,
    }];
    let outcome = h.controller.create_partitions(&h.image, &requests);
    outcome.results[0].as_ref().unwrap();
    h.commit(outcome.records).unwrap();
    let parts = partitions(&h, "t");
    assert_eq!(parts.len(), 5);
    assert!(parts.iter().all(|p| p.replicas.len() == 2));
    assert_eq!(h.image.topic("t").unwrap().id, t);
    let grow = |count, assignments| CreatePartitions {
        name: "t".into(),
        count,
        assignments,
    };
    let bad = [
        grow(5, None),
        grow(3, None),
        grow(7, Some(vec![vec![1, 2]])),
        grow(6, Some(vec![vec![1]])),
        grow(6, Some(vec![vec![1, 9]])),
        CreatePartitions {
            name: "missing".into(),
            count: 2,
            assignments: None,
        },
    ];
    let names: Vec<_> = bad
        .iter()
        .map(|r| {
            let outcome = h
                .controller
                .create_partitions(&h.image, std::slice::from_ref(r));
            assert!(outcome.records.is_empty());
            error_name(&outcome.results[0])
        })
        .collect();
    assert_eq!(
        names,
        vec![
            "INVALID_PARTITIONS",
            "INVALID_PARTITIONS",
            "INVALID_REPLICA_ASSIGNMENT",
            "INVALID_REPLICA_ASSIGNMENT",
            "INVALID_REPLICA_ASSIGNMENT",
            "UNKNOWN_TOPIC_OR_PARTITION",
        ]
    );
    // The same topic twice in one request is refused for both.
    let twice = h
        .controller
        .create_partitions(&h.image, &[grow(6, None), grow(7, None)]);
    assert_eq!(
        twice.results.iter().map(error_name).collect::<Vec<_>>(),
        vec!["INVALID_REQUEST"; 2]
    );
    let outcome = h
        .controller
        .create_partitions(&h.image, &[grow(6, Some(vec![vec![3, 1]]))]);
    outcome.results[0].as_ref().unwrap();
    h.commit(outcome.records).unwrap();
    let p5 = &partitions(&h, "t")[5];
    assert_eq!((p5.replicas.as_slice(), p5.leader), (&[3, 1][..], 3));
}

#[test]
fn alter_configs_writes_only_changes() {
    let mut h = three_brokers();
    h.create_topic("t", 1, 1);
    let topic = ConfigResource::Topic("t".into());
    let set = |resource: &ConfigResource, changes: &[(&str, Option<&str>)]| AlterConfigs {
        resource: resource.clone(),
        changes: changes
            .iter()
            .map(|(k, v)| (k.to_string(), v.map(str::to_owned)))
            .collect(),
    };
    let outcome = h.controller.alter_configs(
        &h.image,
        &[
            set(
                &topic,
                &[
                    ("retention.ms", Some("10")),
                    ("cleanup.policy", Some("compact")),
                ],
            ),
            set(
                &ConfigResource::Broker(2),
                &[("log.retention.ms", Some("5"))],
            ),
            set(
                &ConfigResource::ClusterDefault,
                &[("num.partitions", Some("3"))],
            ),
            set(
                &ConfigResource::Topic("missing".into()),
                &[("a", Some("b"))],
            ),
            set(&ConfigResource::Broker(-3), &[("a", Some("b"))]),
            set(&topic, &[("a", Some("b")), ("a", None)]),
        ],
    );
    let names: Vec<_> = outcome
        .results
        .iter()
        .map(|r| r.as_ref().map_or_else(|e| e.kafka_error_name(), |_| "NONE"))
        .collect();
    assert_eq!(
        names,
        vec![
            "NONE",
            "NONE",
            "NONE",
            "UNKNOWN_TOPIC_OR_PARTITION",
            "INVALID_REQUEST",
            "INVALID_REQUEST"
        ]
    );
    assert_eq!(outcome.records.len(), 4);
    h.commit(outcome.records).unwrap();
    assert_eq!(h.image.config(&topic, "cleanup.policy"), Some("compact"));
    assert_eq!(
        h.image
            .config(&ConfigResource::ClusterDefault, "num.partitions"),
        Some("3")
    );
    let outcome = h.controller.alter_configs(
        &h.image,
        &[set(
            &topic,
            &[
                ("retention.ms", Some("10")),
                ("cleanup.policy", None),
                ("gone", None),
            ],
        )],
    );
    assert_eq!(
        outcome.records.len(),
        1,
        "only the delete of cleanup.policy changes anything"
    );
    h.commit(outcome.records).unwrap();
    assert_eq!(
        h.image.topic_configs("t"),
        Some(&BTreeMap::from([("retention.ms".into(), "10".into())]))
    );
}

#[test]
fn unregister_gives_up_leaderships_then_removes_the_broker() {
    let mut h = three_brokers();
    h.create_topic("t", 3, 2);
    let records = h.controller.unregister_broker(&h.image, 1).unwrap();
    h.commit(records).unwrap();
    assert!(h.image.broker(1).is_none());
    assert!(h.image.partitions_led_by(1).is_empty());
    let err = h.controller.unregister_broker(&h.image, 1);
    assert_eq!(error_name(&err), "BROKER_ID_NOT_REGISTERED");
}

#[test]
fn racks_are_respected_through_the_controller() {
    let mut h = Harness::new();
    for (id, rack) in [(1, "a"), (2, "a"), (3, "b"), (4, "b"), (5, "c"), (6, "c")] {
        h.add_broker(id, Some(rack));
    }
    h.create_topic("t", 12, 3);
    for p in partitions(&h, "t") {
        let racks: BTreeSet<_> = p
            .replicas
            .iter()
            .map(|&b| h.image.broker(b).unwrap().rack.clone())
            .collect();
        assert_eq!(racks.len(), 3, "{p:?}");
    }
}

/// Two decisions made on the same image both change one partition: the first to commit
/// wins, the second is rejected when applied (on every node alike), so it cannot undo the
/// first (here: put back in the ISR the replica the leader had just removed).
#[test]
fn a_partition_change_decided_on_an_old_image_is_rejected() {
    let mut h = Harness::new();
    h.add_broker(1, None);
    h.add_broker(2, None);
    let outcome = h.controller.create_topics(
        &h.image,
        &[CreateTopic {
            assignments: vec![ReplicaAssignment {
                partition: 0,
                replicas: vec![1, 2],
            }],
            ..create("t", -1, -1)
        }],
    );
    h.commit(outcome.records).unwrap();
    let t = h.image.topic("t").unwrap().id;
    let old = h.image.clone();
    let reg = old.partition(t, 0).unwrap().clone();
    assert_eq!((reg.leader, reg.isr.clone()), (1, vec![1, 2]));
    let shrink = h
        .controller
        .alter_partition(
            &old,
            &AlterPartitionRequest {
                broker_id: 1,
                broker_epoch: h.epoch(1),
                topic_id: t,
                partition: 0,
                leader_epoch: reg.leader_epoch,
                partition_epoch: reg.partition_epoch,
                new_isr: members(&h, &[1]),
            },
        )
        .unwrap();
    // Broker 1's session expires; the fence is decided on the image without the shrink.
    let late = h.now + h.controller.config().session_timeout_ms;
    let fence = h.controller.fence_expired_brokers(&old, late);
    assert!(!fence.is_empty());
    h.commit(shrink).unwrap();
    let err = h.commit(fence).unwrap_err();
    assert!(err.to_string().contains("partition epoch"), "{err}");
    let now = h.image.partition(t, 0).unwrap();
    assert_eq!((now.leader, now.isr.clone()), (1, vec![1]));
    assert!(
        !h.image.broker(1).unwrap().fenced,
        "the whole batch is rejected"
    );
}

#[test]
fn renewed_sessions_start_again_and_heartbeat_times_never_go_back() {
    let mut h = three_brokers();
    let start = h.now;
    let timeout = h.controller.config().session_timeout_ms;
    // A heartbeat decided late, with the earlier time it arrived, keeps the later one.
    h.now = start + 500;
    h.heartbeat(1);
    h.now = start + 100;
    h.heartbeat(1);
    assert_eq!(
        h.controller.liveness().last_heartbeat_ms(1),
        Some(start + 500)
    );
    // The caller's loop stalled past every session: renewing gives each a full one again.
    let late = start + 3 * timeout;
    h.controller.renew_all_sessions(late);
    assert!(h
        .controller
        .fence_expired_brokers(&h.image, late + timeout - 1)
        .is_empty());
    assert!(!h
        .controller
        .fence_expired_brokers(&h.image, late + timeout)
        .is_empty());
}

#[test]
fn fences_that_did_not_commit_are_decided_again_at_once() {
    let mut h = three_brokers();
    let expired = h.now + h.controller.config().session_timeout_ms;
    let fences = h.controller.fence_expired_brokers(&h.image, expired);
    assert!(!fences.is_empty());
    assert!(h
        .controller
        .fence_expired_brokers(&h.image, expired + 10)
        .is_empty());
    h.controller.fences_not_committed(&fences);
    assert_eq!(
        h.controller.fence_expired_brokers(&h.image, expired + 20),
        fences
    );
}

// ----- unclean leader election -----

/// A harness whose controller has `unclean.leader.election.enable` = `unclean_default`,
/// with brokers 1..=3.
fn three_brokers_with_unclean_default(unclean_default: bool) -> Harness {
    let mut h = Harness::new();
    h.controller = Controller::new(
        ControllerConfig {
            unclean_leader_election_enable: unclean_default,
            ..ControllerConfig::default()
        },
        7,
    );
    for id in 1..=3 {
        h.add_broker(id, None);
    }
    h
}

/// The leader of `topic`-0 shrinks its ISR to itself (its followers fell behind).
fn shrink_to_leader(h: &mut Harness, topic: Uuid) -> PartitionRegistration {
    let reg = h.image.partition(topic, 0).unwrap().clone();
    let request = AlterPartitionRequest {
        broker_id: reg.leader,
        broker_epoch: h.epoch(reg.leader),
        topic_id: topic,
        partition: 0,
        leader_epoch: reg.leader_epoch,
        partition_epoch: reg.partition_epoch,
        new_isr: members(h, &[reg.leader]),
    };
    let records = h.controller.alter_partition(&h.image, &request).unwrap();
    h.commit(records).unwrap();
    let reg = h.image.partition(topic, 0).unwrap().clone();
    assert_eq!(reg.isr.len(), 1);
    reg
}

fn create_with_configs(h: &mut Harness, name: &str, rf: i16, configs: &[(&str, &str)]) -> Uuid {
    let mut topic = create(name, 1, rf);
    topic.configs = configs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let outcome = h.controller.create_topics(&h.image, &[topic]);
    let created = outcome.results[0].as_ref().unwrap().topic_id;
    h.commit(outcome.records).unwrap();
    created
}

#[test]
fn without_unclean_election_a_partition_stays_offline_until_an_isr_member_returns() {
    let mut h = three_brokers_with_unclean_default(false);
    let t = h.create_topic("t", 1, 3);
    let before = shrink_to_leader(&mut h, t);
    let leader = before.leader;
    h.expire(&[leader]);
    let offline = h.image.partition(t, 0).unwrap().clone();
    assert_eq!(
        offline.leader, NO_LEADER,
        "out-of-sync replicas are not elected"
    );
    assert_eq!(
        offline.isr,
        vec![leader],
        "the last in-sync replica stays known"
    );
    // The out-of-sync replicas keep heartbeating: nothing changes.
    for b in before.replicas.iter().filter(|&&b| b != leader) {
        let d = h.heartbeat(*b);
        assert!(d.records.is_empty());
    }
    assert_eq!(h.image.partition(t, 0).unwrap(), &offline);
    // The in-sync replica comes back: it leads again, with its records.
    h.heartbeat(leader);
    let back = h.image.partition(t, 0).unwrap();
    assert_eq!((back.leader, back.isr.as_slice()), (leader, &[leader][..]));
    assert_eq!(back.leader_epoch, before.leader_epoch + 2);
}

#[test]
fn with_unclean_election_the_first_usable_replica_leads_alone_when_the_isr_is_gone() {
    // Enabled by the topic's override (the controller's default is off).
    let mut h = three_brokers_with_unclean_default(false);
    let t = create_with_configs(&mut h, "t", 3, &[(UNCLEAN_LEADER_ELECTION_ENABLE, "true")]);
    let before = shrink_to_leader(&mut h, t);
    let leader = before.leader;
    h.expire(&[leader]);
    let after = h.image.partition(t, 0).unwrap();
    let expected = *before.replicas.iter().find(|&&b| b != leader).unwrap();
    assert_eq!(
        after.leader, expected,
        "the first other replica in replica order"
    );
    assert_eq!(after.isr, vec![expected]);
    assert_eq!(after.leader_epoch, before.leader_epoch + 1);
    assert_eq!(after.replicas, before.replicas);

    // Enabled by the controller's default; a topic override of false wins over it.
    let mut h = three_brokers_with_unclean_default(true);
    let on = h.create_topic("on", 1, 3);
    let off = create_with_configs(
        &mut h,
        "off",
        3,
        &[(UNCLEAN_LEADER_ELECTION_ENABLE, "false")],
    );
    let on_before = shrink_to_leader(&mut h, on);
    let off_before = shrink_to_leader(&mut h, off);
    // Fence every leader of the two (they may be the same broker).
    let leaders: BTreeSet<BrokerId> = [on_before.leader, off_before.leader].into();
    h.expire(&leaders.iter().copied().collect::<Vec<_>>());
    let on_after = h.image.partition(on, 0).unwrap();
    assert!(on_after.leader != NO_LEADER && !leaders.contains(&on_after.leader));
    assert_eq!(on_after.isr, vec![on_after.leader]);
    let off_after = h.image.partition(off, 0).unwrap();
    assert_eq!(
        (off_after.leader, off_after.isr.as_slice()),
        (NO_LEADER, &[off_before.leader][..])
    );
    // The setting as the controller resolves it: the override, else its default.
    assert!(!unclean_election_enabled(
        &h.image,
        h.controller.config(),
        "off"
    ));
    assert!(unclean_election_enabled(
        &h.image,
        h.controller.config(),
        "on"
    ));
}

#[test]
fn with_unclean_election_a_returning_out_of_sync_replica_takes_a_leaderless_partition() {
    let mut h = three_brokers_with_unclean_default(false);
    // Two topics on brokers 1 (leader) and 2; unclean election enabled on "u" only.
    let on_1_and_2 = |name: &str, configs: &[(&str, &str)]| CreateTopic {
        assignments: vec![ReplicaAssignment {
            partition: 0,
            replicas: vec![1, 2],
        }],
        configs: configs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..create(name, -1, -1)
    };
    let outcome = h.controller.create_topics(
        &h.image,
        &[
            on_1_and_2("t", &[]),
            on_1_and_2("u", &[(UNCLEAN_LEADER_ELECTION_ENABLE, "true")]),
        ],
    );
    let ids: Vec<Uuid> = outcome
        .results
        .iter()
        .map(|r| r.as_ref().unwrap().topic_id)
        .collect();
    h.commit(outcome.records).unwrap();
    let (t, u) = (ids[0], ids[1]);
    shrink_to_leader(&mut h, t);
    shrink_to_leader(&mut h, u);
    // Both replicas go: both partitions offline, broker 1 the last in-sync replica.
    h.expire(&[1, 2]);
    for id in [t, u] {
        let p = h.image.partition(id, 0).unwrap();
        assert_eq!((p.leader, p.isr.as_slice()), (NO_LEADER, &[1][..]));
    }
    let t_offline = h.image.partition(t, 0).unwrap().clone();
    let u_offline = h.image.partition(u, 0).unwrap().clone();
    // Broker 2 comes back: it takes "u" (unclean election, ISR = [2]), not "t".
    h.heartbeat(2);
    assert!(!h.image.broker(2).unwrap().fenced);
    let u_now = h.image.partition(u, 0).unwrap();
    assert_eq!((u_now.leader, u_now.isr.as_slice()), (2, &[2][..]));
    assert_eq!(u_now.leader_epoch, u_offline.leader_epoch + 1);
    assert_eq!(h.image.partition(t, 0).unwrap(), &t_offline);
    assert!(h.controller.elect_offline_leaders(&h.image).is_empty());
    // Unclean election enabled on "t" later: the controller's periodic check elects 2.
    let outcome = h.controller.alter_configs(
        &h.image,
        &[AlterConfigs {
            resource: ConfigResource::Topic("t".into()),
            changes: vec![(UNCLEAN_LEADER_ELECTION_ENABLE.into(), Some("true".into()))],
        }],
    );
    h.commit(outcome.records).unwrap();
    let records = h.controller.elect_offline_leaders(&h.image);
    assert_eq!(records.len(), 1);
    h.commit(records).unwrap();
    let t_now = h.image.partition(t, 0).unwrap();
    assert_eq!((t_now.leader, t_now.isr.as_slice()), (2, &[2][..]));
    assert!(h.controller.elect_offline_leaders(&h.image).is_empty());
    // The old leader returns: it follows, out of the ISR until the new leader adds it.
    h.heartbeat(1);
    for id in [t, u] {
        let p = h.image.partition(id, 0).unwrap();
        assert_eq!((p.leader, p.isr.as_slice()), (2, &[2][..]));
    }
}

// ----- AlterPartition, check by check (Kafka's ReplicationControlManager) -----

#[test]
fn alter_partition_refuses_like_kafka() {
    let mut h = Harness::new();
    for id in 1..=4 {
        h.add_broker(id, None);
    }
    // Partition 0 of "t" on brokers 1, 2, 3 (1 leads); broker 4 holds no replica.
    let outcome = h.controller.create_topics(
        &h.image,
        &[CreateTopic {
            assignments: vec![ReplicaAssignment {
                partition: 0,
                replicas: vec![1, 2, 3],
            }],
            ..create("t", -1, -1)
        }],
    );
    let t = outcome.results[0].as_ref().unwrap().topic_id;
    h.commit(outcome.records).unwrap();
    let reg = h.image.partition(t, 0).unwrap().clone();
    assert_eq!((reg.leader, reg.isr.as_slice()), (1, &[1, 2, 3][..]));
    let base = AlterPartitionRequest {
        broker_id: 1,
        broker_epoch: h.epoch(1),
        topic_id: t,
        partition: 0,
        leader_epoch: reg.leader_epoch,
        partition_epoch: reg.partition_epoch,
        new_isr: members(&h, &[1, 2]),
    };
    let refused = |h: &Harness, request: AlterPartitionRequest| {
        let result = h.controller.alter_partition(&h.image, &request);
        result.as_ref().unwrap_err().kafka_error_name()
    };
    // The sender's broker epoch is stale, or it is not registered at all.
    let stale = AlterPartitionRequest {
        broker_epoch: h.epoch(1) - 1,
        ..base.clone()
    };
    assert_eq!(refused(&h, stale), "STALE_BROKER_EPOCH");
    let unknown = AlterPartitionRequest {
        broker_id: 9,
        ..base.clone()
    };
    assert_eq!(refused(&h, unknown), "STALE_BROKER_EPOCH");
    // Unknown topic id, unknown partition.
    let no_topic = AlterPartitionRequest {
        topic_id: Uuid::from_u128(99),
        ..base.clone()
    };
    assert_eq!(refused(&h, no_topic), "UNKNOWN_TOPIC_ID");
    let no_partition = AlterPartitionRequest {
        partition: 1,
        ..base.clone()
    };
    assert_eq!(refused(&h, no_partition), "UNKNOWN_TOPIC_OR_PARTITION");
    // Epochs newer than the controller's: it is behind.
    for (leader_epoch, partition_epoch) in [
        (reg.leader_epoch + 1, reg.partition_epoch),
        (reg.leader_epoch, reg.partition_epoch + 1),
    ] {
        let ahead = AlterPartitionRequest {
            leader_epoch,
            partition_epoch,
            ..base.clone()
        };
        assert_eq!(refused(&h, ahead), "NOT_CONTROLLER");
    }
    // Not the leader, at the current epoch.
    let follower = AlterPartitionRequest {
        broker_id: 2,
        broker_epoch: h.epoch(2),
        new_isr: members(&h, &[2, 3]),
        ..base.clone()
    };
    assert_eq!(refused(&h, follower), "INVALID_REQUEST");
    // ISRs that are not sets of the replicas, or lack the leader.
    for isr in [vec![], vec![1, 1, 2], vec![1, 4], vec![2, 3]] {
        let bad = AlterPartitionRequest {
            new_isr: members(&h, &isr),
            ..base.clone()
        };
        assert_eq!(refused(&h, bad), "INVALID_REQUEST", "{isr:?}");
    }
    // A member at another broker epoch than its registration's (KIP-903); -1 skips the
    // check, as in Kafka.
    let mut epoch_mismatch = AlterPartitionRequest {
        new_isr: members(&h, &[1, 2, 3]),
        ..base.clone()
    };
    epoch_mismatch.new_isr[1].broker_epoch = h.epoch(2) + 1;
    assert_eq!(refused(&h, epoch_mismatch.clone()), "INELIGIBLE_REPLICA");
    epoch_mismatch.new_isr[1].broker_epoch = -1;
    assert!(
        h.controller
            .alter_partition(&h.image, &epoch_mismatch)
            .unwrap()
            .is_empty(),
        "the same ISR commits nothing"
    );
    // A member in controlled shutdown (it also left the ISR: the epochs moved on).
    h.heartbeat_with(3, false, true);
    let reg = h.image.partition(t, 0).unwrap().clone();
    assert_eq!(reg.isr, vec![1, 2]);
    let base = AlterPartitionRequest {
        leader_epoch: reg.leader_epoch,
        partition_epoch: reg.partition_epoch,
        ..base
    };
    let shutting_down = AlterPartitionRequest {
        new_isr: members(&h, &[1, 2, 3]),
        ..base.clone()
    };
    assert_eq!(refused(&h, shutting_down), "INELIGIBLE_REPLICA");
    // A fenced member.
    h.heartbeat_with(2, true, false);
    let reg = h.image.partition(t, 0).unwrap().clone();
    assert_eq!(reg.isr, vec![1]);
    let base = AlterPartitionRequest {
        leader_epoch: reg.leader_epoch,
        partition_epoch: reg.partition_epoch,
        ..base
    };
    let fenced = AlterPartitionRequest {
        new_isr: members(&h, &[1, 2]),
        ..base.clone()
    };
    assert_eq!(refused(&h, fenced), "INELIGIBLE_REPLICA");
    // Not registered any more.
    h.heartbeat_with(3, false, true);
    let records = h.controller.unregister_broker(&h.image, 3).unwrap();
    h.commit(records).unwrap();
    let reg = h.image.partition(t, 0).unwrap().clone();
    let base = AlterPartitionRequest {
        leader_epoch: reg.leader_epoch,
        partition_epoch: reg.partition_epoch,
        ..base
    };
    let unregistered = AlterPartitionRequest {
        new_isr: vec![
            IsrMember {
                broker_id: 1,
                broker_epoch: h.epoch(1),
            },
            IsrMember {
                broker_id: 3,
                broker_epoch: -1,
            },
        ],
        ..base.clone()
    };
    assert_eq!(refused(&h, unregistered), "INELIGIBLE_REPLICA");
    // A deposed leader: a request at an older leader epoch (broker 1 is fenced, then
    // unfenced: each bumps the leader epoch).
    h.heartbeat(2);
    let before = h.image.partition(t, 0).unwrap().clone();
    h.heartbeat_with(1, true, false);
    h.heartbeat(1);
    let after = h.image.partition(t, 0).unwrap().clone();
    assert!(
        after.leader_epoch > before.leader_epoch,
        "{before:?} {after:?}"
    );
    let deposed = AlterPartitionRequest {
        broker_epoch: h.epoch(1),
        leader_epoch: before.leader_epoch,
        partition_epoch: after.partition_epoch,
        new_isr: members(&h, &[1]),
        ..base
    };
    assert_eq!(refused(&h, deposed), "FENCED_LEADER_EPOCH");
}

#[test]
fn group_configs_need_metadata_version_2() {
    let group = AlterConfigs {
        resource: ConfigResource::Group("g".into()),
        changes: vec![("consumer.session.timeout.ms".into(), Some("45000".into()))],
    };
    // A new cluster starts at this build's level, which has them.
    let h = Harness::new();
    assert_eq!(h.image.metadata_version(), LATEST_METADATA_VERSION);
    let outcome = h
        .controller
        .alter_configs(&h.image, std::slice::from_ref(&group));
    outcome.results[0].as_ref().unwrap();
    check_metadata_version(&outcome.records, 2).unwrap();
    // A cluster an earlier build started at level 1 refuses them (its older nodes could
    // not read them), in Kafka's words for a feature the cluster does not have yet.
    let old = crate::testkit::image_at_metadata_version(1);
    assert_eq!(old.metadata_version(), 1);
    let outcome = h.controller.alter_configs(&old, &[group]);
    assert_eq!(error_name(&outcome.results[0]), "UNSUPPORTED_VERSION");
    assert!(outcome.records.is_empty());
    let record = MetadataRecord::Config(ConfigRecord {
        resource: ConfigResource::Group("g".into()),
        name: "consumer.session.timeout.ms".into(),
        value: Some("45000".into()),
    });
    assert!(check_metadata_version(&[record], 1).is_err());
}
