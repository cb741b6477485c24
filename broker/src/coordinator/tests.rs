//! Wire-level tests of the handlers: every supported version of every group API encodes,
//! and the version-specific rules hold; and a cluster broker's partition ownership (load,
//! COORDINATOR_LOAD_IN_PROGRESS meanwhile, unload, NOT_COORDINATOR after) seen through them.

use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use super::handlers::{self, ClientInfo, CompletedResponse, CoordinatorNode};
use super::*;

const CLIENT: ClientInfo<'static> = ClientInfo {
    client_id: "client",
    client_host: "/127.0.0.1",
};

fn s(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_owned())
}

fn config() -> CoordinatorConfig {
    CoordinatorConfig {
        group_initial_rebalance_delay_ms: 0,
        ..CoordinatorConfig::default()
    }
}

/// Encodes `message` at `version` and decodes it back.
fn round_trip<M: Encodable + Decodable>(message: &M, version: i16) -> M {
    let mut buf = BytesMut::new();
    message
        .encode(&mut buf, version)
        .unwrap_or_else(|e| panic!("encoding v{version}: {e}"));
    let mut bytes = buf.freeze();
    let decoded = M::decode(&mut bytes, version).unwrap();
    assert!(bytes.is_empty());
    decoded
}

fn versions(key: ApiKey) -> std::ops::RangeInclusive<i16> {
    let (_, min, max) = handlers::SUPPORTED
        .iter()
        .find(|(k, _, _)| *k == key)
        .copied()
        .unwrap();
    min..=max
}

fn join_request(member_id: &str, version: i16) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(if version >= 1 { 20_000 } else { -1 })
        .with_member_id(s(member_id))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(s("range"))
            .with_metadata(Bytes::from_static(b"meta"))])
}

/// A group `g` with one Stable member; returns (member id, generation).
fn stable_group(coordinator: &mut GroupCoordinator) -> (String, i32) {
    let out = handlers::join_group(coordinator, &join_request("", 3), 3, CLIENT, 0);
    let joined = out.reply.now().unwrap();
    let member = joined.member_id.as_str().to_owned();
    let sync = SyncGroupRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_generation_id(joined.generation_id)
        .with_member_id(s(&member))
        .with_assignments(vec![SyncGroupRequestAssignment::default()
            .with_member_id(s(&member))
            .with_assignment(Bytes::from_static(b"assigned"))]);
    let out = handlers::sync_group(coordinator, &sync, 3, 0);
    assert_eq!(out.reply.now().unwrap().error_code, 0);
    (member, joined.generation_id)
}

#[test]
fn supported_ranges_are_within_the_codecs() {
    use kafka_protocol::protocol::Message;
    let codec = |key: ApiKey| match key {
        ApiKey::OffsetCommit => OffsetCommitRequest::VERSIONS,
        ApiKey::OffsetFetch => OffsetFetchRequest::VERSIONS,
        ApiKey::FindCoordinator => FindCoordinatorRequest::VERSIONS,
        ApiKey::JoinGroup => JoinGroupRequest::VERSIONS,
        ApiKey::Heartbeat => HeartbeatRequest::VERSIONS,
        ApiKey::LeaveGroup => LeaveGroupRequest::VERSIONS,
        ApiKey::SyncGroup => SyncGroupRequest::VERSIONS,
        ApiKey::DescribeGroups => DescribeGroupsRequest::VERSIONS,
        ApiKey::ListGroups => ListGroupsRequest::VERSIONS,
        ApiKey::DeleteGroups => DeleteGroupsRequest::VERSIONS,
        ApiKey::OffsetDelete => OffsetDeleteRequest::VERSIONS,
        other => panic!("unexpected {other:?}"),
    };
    for &(key, min, max) in handlers::SUPPORTED {
        let range = codec(key);
        assert!(range.min <= min && max <= range.max, "{key:?}");
    }
}

#[test]
fn join_group_answers_encode_at_every_version() {
    for version in versions(ApiKey::JoinGroup) {
        let mut coordinator = GroupCoordinator::new(config());
        let out = handlers::join_group(
            &mut coordinator,
            &join_request("", version),
            version,
            CLIENT,
            0,
        );
        let reply = match out.reply {
            Reply::Now(r) => r,
            Reply::Pending(_) => panic!("v{version} parked"),
        };
        let back = round_trip(&reply, version);
        if version >= 4 {
            // KIP-394: first a member id.
            assert_eq!(back.error_code, ResponseError::MemberIdRequired.code());
            assert!(back.member_id.as_str().starts_with("client-"));
            let again = join_request(back.member_id.as_str(), version);
            let out = handlers::join_group(&mut coordinator, &again, version, CLIENT, 0);
            let reply = out.reply.now().unwrap();
            let back = round_trip(&reply, version);
            assert_eq!(back.error_code, 0);
            assert_eq!(back.generation_id, 1);
            assert_eq!(back.members.len(), 1);
        } else {
            assert_eq!(back.error_code, 0, "v{version}");
            assert_eq!(
                back.protocol_name.as_ref().map(|p| p.as_str()),
                Some("range")
            );
        }
        // v0 has no rebalance timeout: the session timeout stands in.
        let member = coordinator
            .groups()
            .next()
            .unwrap()
            .members()
            .next()
            .unwrap();
        let expected = if version == 0 { 10_000 } else { 20_000 };
        assert_eq!(member.rebalance_timeout_ms(), expected);
        assert_eq!(member.client_host(), "/127.0.0.1");
    }
}

#[test]
fn join_error_answers_name_the_protocol_as_each_version_expects() {
    let error = JoinResponse::error("m", ResponseError::UnknownMemberId);
    for version in versions(ApiKey::JoinGroup) {
        let wire = handlers::join_response(&error, version);
        let back = round_trip(&wire, version);
        assert_eq!(back.generation_id, -1);
        if version < 7 {
            assert_eq!(
                back.protocol_name.map(|p| p.as_str().to_owned()),
                Some(String::new())
            );
        } else {
            assert_eq!(back.protocol_name, None);
        }
    }
    let mut skip = JoinResponse::error("m", ResponseError::UnknownMemberId);
    skip.error = None;
    skip.skip_assignment = true;
    skip.members = vec![JoinMember {
        member_id: "m".to_owned(),
        group_instance_id: Some("i".to_owned()),
        metadata: Bytes::new(),
    }];
    for version in versions(ApiKey::JoinGroup) {
        let back = round_trip(&handlers::join_response(&skip, version), version);
        assert_eq!(back.skip_assignment, version >= 9);
        assert_eq!(back.members[0].group_instance_id.is_some(), version >= 5);
    }
}

#[test]
fn parked_join_and_sync_complete_with_the_parked_version() {
    for version in versions(ApiKey::SyncGroup) {
        let mut coordinator = GroupCoordinator::new(CoordinatorConfig {
            group_initial_rebalance_delay_ms: 10,
            ..config()
        });
        let out = handlers::join_group(&mut coordinator, &join_request("", 3), 3, CLIENT, 0);
        let ticket = out.reply.ticket().expect("parked during the initial delay");
        let out = coordinator.tick(10);
        assert_eq!(out.completions.len(), 1);
        assert_eq!(out.completions[0].ticket(), ticket);
        let joined = match handlers::completion_response(&out.completions[0], 3) {
            CompletedResponse::Join(r) => round_trip(&r, 3),
            other => panic!("{other:?}"),
        };
        assert_eq!(joined.generation_id, 1);
        let sync = SyncGroupRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_generation_id(1)
            .with_member_id(joined.member_id.clone())
            .with_protocol_type(if version >= 5 {
                Some(s("consumer"))
            } else {
                None
            })
            .with_protocol_name(if version >= 5 { Some(s("range")) } else { None })
            .with_assignments(vec![SyncGroupRequestAssignment::default()
                .with_member_id(joined.member_id.clone())
                .with_assignment(Bytes::from_static(b"a"))]);
        let out = handlers::sync_group(&mut coordinator, &sync, version, 10);
        let reply = out.reply.now().unwrap();
        let back = round_trip(&reply, version);
        assert_eq!(back.error_code, 0);
        assert_eq!(back.assignment, Bytes::from_static(b"a"));
        assert_eq!(back.protocol_name.is_some(), version >= 5);
        assert_eq!(out.writes.len(), 1, "the assignment is written");
        let done = Completion::Sync {
            ticket,
            response: SyncResponse::error(ResponseError::RebalanceInProgress),
        };
        match handlers::completion_response(&done, version) {
            CompletedResponse::Sync(r) => {
                assert_eq!(round_trip(&r, version).error_code, 27);
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn sync_group_v5_requires_protocol_type_and_name() {
    let mut coordinator = GroupCoordinator::new(config());
    let (member, generation) = stable_group(&mut coordinator);
    let sync = SyncGroupRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_generation_id(generation)
        .with_member_id(s(&member))
        .with_protocol_type(Some(s("consumer")));
    let out = handlers::sync_group(&mut coordinator, &sync, 5, 0);
    assert_eq!(
        out.reply.now().unwrap().error_code,
        ResponseError::InconsistentGroupProtocol.code()
    );
    let out = handlers::sync_group(&mut coordinator, &sync, 4, 0);
    assert_eq!(out.reply.now().unwrap().error_code, 0);
}

#[test]
fn heartbeat_encodes_at_every_version() {
    for version in versions(ApiKey::Heartbeat) {
        let mut coordinator = GroupCoordinator::new(config());
        let (member, generation) = stable_group(&mut coordinator);
        let req = HeartbeatRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_generation_id(generation)
            .with_member_id(s(&member));
        let out = handlers::heartbeat(&mut coordinator, &req, version, 1_000);
        assert_eq!(round_trip(&out.reply, version).error_code, 0);
        let stale = req.clone().with_generation_id(generation + 5);
        let out = handlers::heartbeat(&mut coordinator, &stale, version, 1_000);
        assert_eq!(
            round_trip(&out.reply, version).error_code,
            ResponseError::IllegalGeneration.code()
        );
        let out = handlers::heartbeat(
            &mut coordinator,
            &req.clone().with_group_id(GroupId(s(""))),
            version,
            1_000,
        );
        assert_eq!(out.reply.error_code, ResponseError::InvalidGroupId.code());
    }
}

#[test]
fn leave_group_reports_errors_as_each_version_expects() {
    for version in versions(ApiKey::LeaveGroup) {
        let mut coordinator = GroupCoordinator::new(config());
        let (member, _) = stable_group(&mut coordinator);
        let req = if version >= 3 {
            LeaveGroupRequest::default()
                .with_group_id(GroupId(s("g")))
                .with_members(vec![
                    MemberIdentity::default().with_member_id(s("stranger")),
                    MemberIdentity::default()
                        .with_member_id(s(&member))
                        .with_reason(if version >= 5 { Some(s("done")) } else { None }),
                ])
        } else {
            LeaveGroupRequest::default()
                .with_group_id(GroupId(s("g")))
                .with_member_id(s("stranger"))
        };
        let out = handlers::leave_group(&mut coordinator, &req, version, 0);
        let back = round_trip(&out.reply, version);
        if version >= 3 {
            assert_eq!(back.error_code, 0);
            assert_eq!(back.members.len(), 2);
            assert_eq!(
                back.members[0].error_code,
                ResponseError::UnknownMemberId.code()
            );
            assert_eq!(back.members[1].error_code, 0);
            assert_eq!(coordinator.group("g").unwrap().state(), GroupState::Empty);
        } else {
            // One member, its error at the top level.
            assert_eq!(back.error_code, ResponseError::UnknownMemberId.code());
            let ok = req.clone().with_member_id(s(&member));
            let out = handlers::leave_group(&mut coordinator, &ok, version, 0);
            assert_eq!(round_trip(&out.reply, version).error_code, 0);
        }
    }
}

fn commit_request(version: i16, partitions: &[i32]) -> OffsetCommitRequest {
    OffsetCommitRequest::default()
        .with_group_id(GroupId(s("simple")))
        .with_generation_id_or_member_epoch(-1)
        .with_retention_time_ms(if (2..=4).contains(&version) {
            60_000
        } else {
            -1
        })
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(s("t")))
            .with_partitions(
                partitions
                    .iter()
                    .map(|&p| {
                        OffsetCommitRequestPartition::default()
                            .with_partition_index(p)
                            .with_committed_offset(100 + i64::from(p))
                            .with_committed_leader_epoch(if version >= 6 { 3 } else { -1 })
                            .with_committed_metadata(Some(s("meta")))
                    })
                    .collect(),
            )])
}

#[test]
fn offset_commit_and_fetch_at_every_version() {
    let exists = |topic: &str, partition: i32| topic == "t" && partition < 2;
    for version in versions(ApiKey::OffsetCommit) {
        let mut coordinator = GroupCoordinator::new(config());
        let out = handlers::offset_commit(
            &mut coordinator,
            &commit_request(version, &[0, 1, 7]),
            version,
            exists,
            5,
        );
        assert_eq!(out.writes.len(), 1);
        let back = round_trip(&out.reply, version);
        let errors: Vec<(i32, i16)> = back.topics[0]
            .partitions
            .iter()
            .map(|p| (p.partition_index, p.error_code))
            .collect();
        assert_eq!(
            errors,
            [
                (7, ResponseError::UnknownTopicOrPartition.code()),
                (0, 0),
                (1, 0)
            ]
        );
        let stored =
            &coordinator.group("simple").unwrap().committed_offsets()[&("t".to_owned(), 0)];
        assert_eq!(stored.metadata, "meta");
        assert_eq!(stored.leader_epoch, if version >= 6 { 3 } else { -1 });
        // Retention time exists in v2-v4 only.
        assert_eq!(stored.expire_timestamp_ms, (version <= 4).then_some(60_005));

        // Only unknown partitions: nothing reaches the coordinator, no group is made.
        let out = handlers::offset_commit(
            &mut coordinator,
            &commit_request(version, &[9]).with_group_id(GroupId(s("other"))),
            version,
            exists,
            5,
        );
        assert!(out.writes.is_empty());
        assert!(coordinator.group("other").is_none());
    }

    let mut coordinator = GroupCoordinator::new(config());
    let _ = handlers::offset_commit(&mut coordinator, &commit_request(7, &[0, 1]), 7, exists, 5);
    for version in versions(ApiKey::OffsetFetch) {
        let request = if version >= 8 {
            OffsetFetchRequest::default().with_groups(vec![
                OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(s("simple")))
                    .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                        .with_name(TopicName(s("t")))
                        .with_partition_indexes(vec![0, 5])])),
                OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(s("simple")))
                    .with_topics(None),
            ])
        } else {
            OffsetFetchRequest::default()
                .with_group_id(GroupId(s("simple")))
                .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                    .with_name(TopicName(s("t")))
                    .with_partition_indexes(vec![0, 5])]))
        };
        let reply = handlers::offset_fetch(&coordinator, &request, version);
        let back = round_trip(&reply, version);
        if version >= 8 {
            assert_eq!(back.groups.len(), 2);
            let asked = &back.groups[0].topics[0].partitions;
            assert_eq!(
                (asked[0].committed_offset, asked[0].committed_leader_epoch),
                (100, 3)
            );
            assert_eq!(asked[0].metadata.as_ref().map(|m| m.as_str()), Some("meta"));
            assert_eq!(asked[1].committed_offset, -1);
            assert_eq!(back.groups[1].topics[0].partitions.len(), 2);
        } else {
            let asked = &back.topics[0].partitions;
            assert_eq!(asked[0].committed_offset, 100);
            assert_eq!(
                asked[0].committed_leader_epoch,
                if version >= 5 { 3 } else { -1 }
            );
            assert_eq!(asked[1].committed_offset, -1);
        }
    }
    // All topics (null) from v2.
    let all = OffsetFetchRequest::default()
        .with_group_id(GroupId(s("simple")))
        .with_topics(None);
    let back = round_trip(&handlers::offset_fetch(&coordinator, &all, 2), 2);
    assert_eq!(back.topics[0].partitions.len(), 2);
}

#[test]
fn offset_fetch_group_errors_by_version() {
    let coordinator = GroupCoordinator::new_loading(config());
    let request = OffsetFetchRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(TopicName(s("t")))
            .with_partition_indexes(vec![0])]));
    let loading = ResponseError::CoordinatorLoadInProgress.code();
    // v1: no top-level error field; the partitions carry it.
    let v1 = round_trip(&handlers::offset_fetch(&coordinator, &request, 1), 1);
    assert_eq!(v1.topics[0].partitions[0].error_code, loading);
    assert_eq!(v1.topics[0].partitions[0].committed_offset, -1);
    let v2 = round_trip(&handlers::offset_fetch(&coordinator, &request, 2), 2);
    assert_eq!(v2.error_code, loading);
    assert!(v2.topics.is_empty());
    let batched =
        OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(s("g")))
            .with_topics(None)]);
    let v8 = round_trip(&handlers::offset_fetch(&coordinator, &batched, 8), 8);
    assert_eq!(v8.groups[0].error_code, loading);
}

#[test]
fn offset_delete_skips_unknown_partitions() {
    let mut coordinator = GroupCoordinator::new(config());
    let exists = |topic: &str, _: i32| topic == "t";
    let _ = handlers::offset_commit(&mut coordinator, &commit_request(8, &[0, 1]), 8, exists, 5);
    let req = OffsetDeleteRequest::default()
        .with_group_id(GroupId(s("simple")))
        .with_topics(vec![
            OffsetDeleteRequestTopic::default()
                .with_name(TopicName(s("t")))
                .with_partitions(vec![
                    OffsetDeleteRequestPartition::default().with_partition_index(0)
                ]),
            OffsetDeleteRequestTopic::default()
                .with_name(TopicName(s("gone")))
                .with_partitions(vec![
                    OffsetDeleteRequestPartition::default().with_partition_index(0)
                ]),
        ]);
    let out = handlers::offset_delete(&mut coordinator, &req, exists, 6);
    assert_eq!(out.writes.len(), 1);
    let back = round_trip(&out.reply, 0);
    assert_eq!(back.error_code, 0);
    let errors: Vec<(&str, i16)> = back
        .topics
        .iter()
        .map(|t| (t.name.0.as_str(), t.partitions[0].error_code))
        .collect();
    assert_eq!(
        errors,
        [
            ("gone", ResponseError::UnknownTopicOrPartition.code()),
            ("t", 0)
        ]
    );
    assert_eq!(
        coordinator
            .group("simple")
            .unwrap()
            .committed_offsets()
            .len(),
        1
    );
    let ghost = req.clone().with_group_id(GroupId(s("ghost")));
    let out = handlers::offset_delete(&mut coordinator, &ghost, exists, 6);
    assert_eq!(
        round_trip(&out.reply, 0).error_code,
        ResponseError::GroupIdNotFound.code()
    );
}

#[test]
fn a_deleted_topics_offsets_are_forgotten() {
    let mut coordinator = GroupCoordinator::new(config());
    let exists = |_: &str, _: i32| true;
    let _ = handlers::offset_commit(&mut coordinator, &commit_request(8, &[0, 1]), 8, exists, 5);
    let out = coordinator.forget_topics(&["other".to_owned()], 6);
    assert!(
        out.writes.is_empty(),
        "nothing of a topic the group never read"
    );
    let out = coordinator.forget_topics(&["t".to_owned()], 7);
    assert_eq!(out.writes.len(), 1, "the tombstones, in one write");
    // (An empty group left without offsets may go with them.)
    assert!(coordinator
        .group("simple")
        .is_none_or(|g| g.committed_offsets().is_empty()));
}

#[test]
fn list_describe_delete_groups_at_every_version() {
    let mut coordinator = GroupCoordinator::new(config());
    let (member, _) = stable_group(&mut coordinator);
    for version in versions(ApiKey::ListGroups) {
        let req = ListGroupsRequest::default()
            .with_states_filter(if version >= 4 {
                vec![s("Stable")]
            } else {
                vec![]
            })
            .with_types_filter(if version >= 5 {
                vec![s("classic")]
            } else {
                vec![]
            });
        let back = round_trip(&handlers::list_groups(&coordinator, &req, version), version);
        assert_eq!(back.groups.len(), 1);
        assert_eq!(back.groups[0].protocol_type.as_str(), "consumer");
        assert_eq!(
            back.groups[0].group_state.as_str(),
            if version >= 4 { "Stable" } else { "" }
        );
        assert_eq!(
            back.groups[0].group_type.as_str(),
            if version >= 5 { "classic" } else { "" }
        );
    }
    for version in versions(ApiKey::DescribeGroups) {
        let req = DescribeGroupsRequest::default()
            .with_groups(vec![GroupId(s("g")), GroupId(s("ghost"))])
            .with_include_authorized_operations(version >= 3);
        let back = round_trip(
            &handlers::describe_groups(&coordinator, &req, version),
            version,
        );
        let g = &back.groups[0];
        assert_eq!(g.error_code, 0);
        assert_eq!(g.group_state.as_str(), "Stable");
        assert_eq!(g.protocol_data.as_str(), "range");
        assert_eq!(g.members[0].member_id.as_str(), member);
        assert_eq!(g.members[0].client_host.as_str(), "/127.0.0.1");
        assert_eq!(
            g.members[0].member_assignment,
            Bytes::from_static(b"assigned")
        );
        assert_eq!(g.members[0].member_metadata, Bytes::from_static(b"meta"));
        if version >= 3 {
            assert_eq!(
                g.authorized_operations,
                handlers::GROUP_AUTHORIZED_OPERATIONS
            );
        }
        let ghost = &back.groups[1];
        assert_eq!(ghost.group_state.as_str(), "Dead");
        if version >= 6 {
            assert_eq!(ghost.error_code, ResponseError::GroupIdNotFound.code());
            assert_eq!(
                ghost.error_message.as_ref().map(|m| m.as_str()),
                Some("Group ghost not found.")
            );
        } else {
            assert_eq!(ghost.error_code, 0);
        }
    }
    for version in versions(ApiKey::DeleteGroups) {
        let req = DeleteGroupsRequest::default()
            .with_groups_names(vec![GroupId(s("g")), GroupId(s("ghost"))]);
        let out = handlers::delete_groups(&mut coordinator, &req, 0);
        let back = round_trip(&out.reply, version);
        assert_eq!(
            back.results[0].error_code,
            ResponseError::NonEmptyGroup.code()
        );
        assert_eq!(
            back.results[1].error_code,
            ResponseError::GroupIdNotFound.code()
        );
    }
}

#[test]
fn find_coordinator_at_every_version() {
    let node = CoordinatorNode {
        node_id: 1,
        host: "localhost".to_owned(),
        port: 9092,
    };
    for version in versions(ApiKey::FindCoordinator) {
        let req = if version >= 4 {
            FindCoordinatorRequest::default()
                .with_key_type(0)
                .with_coordinator_keys(vec![s("g1"), s("g2")])
        } else {
            FindCoordinatorRequest::default().with_key(s("g1"))
        };
        let back = round_trip(
            &handlers::find_coordinator(&req, version, |_| Some(node.clone())),
            version,
        );
        if version >= 4 {
            assert_eq!(back.coordinators.len(), 2);
            for c in &back.coordinators {
                assert_eq!((c.error_code, c.node_id.0, c.port), (0, 1, 9092));
                assert_eq!(c.host.as_str(), "localhost");
            }
        } else {
            assert_eq!((back.error_code, back.node_id.0, back.port), (0, 1, 9092));
            assert_eq!(back.host.as_str(), "localhost");
        }
        // Not ready yet: COORDINATOR_NOT_AVAILABLE.
        let back = round_trip(
            &handlers::find_coordinator(&req, version, |_| None),
            version,
        );
        let code = if version >= 4 {
            back.coordinators[0].error_code
        } else {
            back.error_code
        };
        assert_eq!(code, ResponseError::CoordinatorNotAvailable.code());
        if version >= 1 {
            // Share-group keys are not served.
            let share = req.clone().with_key_type(handlers::KEY_TYPE_SHARE);
            let back = round_trip(
                &handlers::find_coordinator(&share, version, |_| Some(node.clone())),
                version,
            );
            let code = if version >= 4 {
                back.coordinators[0].error_code
            } else {
                back.error_code
            };
            assert_eq!(code, ResponseError::InvalidRequest.code());
        }
    }
}

#[test]
fn consumer_protocol_payloads_decode() {
    // An assignment of version 1 (user data) decodes; garbage does not.
    use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
    let assignment = ConsumerProtocolAssignment::default()
        .with_assigned_partitions(vec![TopicPartition::default()
            .with_topic(TopicName(s("t")))
            .with_partitions(vec![0, 2])])
        .with_user_data(Some(Bytes::from_static(b"u")));
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&1i16.to_be_bytes());
    assignment.encode(&mut buf, 1).unwrap();
    assert_eq!(
        decode_assignment(&buf.freeze()),
        Some(vec![("t".to_owned(), vec![0, 2])])
    );
    assert_eq!(decode_assignment(&Bytes::from_static(b"\x00")), None);
    assert_eq!(decode_assignment(&Bytes::from_static(b"\xff\xff")), None);

    let subscription = ConsumerProtocolSubscription::default()
        .with_topics(vec![s("a"), s("b")])
        .with_generation_id(4);
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&3i16.to_be_bytes());
    subscription.encode(&mut buf, 3).unwrap();
    assert_eq!(
        group::decode_subscription_topics(&buf.freeze()),
        Some(vec!["a".to_owned(), "b".to_owned()])
    );
    assert_eq!(
        group::decode_subscription_topics(&Bytes::from_static(b"\x00\x00\xff")),
        None
    );
}

#[test]
fn a_failed_wire_output_carries_the_coordinator_error() {
    let mut coordinator = GroupCoordinator::new(config());
    let exists = |_: &str, _: i32| true;
    let mut out = handlers::offset_commit(&mut coordinator, &commit_request(8, &[0]), 8, exists, 5);
    out.fail(ResponseError::KafkaStorageError);
    assert_eq!(
        out.reply.topics[0].partitions[0].error_code,
        ResponseError::NotCoordinator.code()
    );
    assert!(out.writes.is_empty());
}

// ---- partition ownership (a cluster broker: load on election, unload on resignation) ---

fn commit_code(out: &Output<OffsetCommitResponse>) -> i16 {
    out.reply.topics[0].partitions[0].error_code
}

/// OffsetFetch v2 of group "simple", partitions t-0 and t-1: (error, offsets).
fn fetch_simple(coordinator: &GroupCoordinator) -> (i16, Vec<i64>) {
    let request = OffsetFetchRequest::default()
        .with_group_id(GroupId(s("simple")))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(TopicName(s("t")))
            .with_partition_indexes(vec![0, 1])]));
    let response = handlers::offset_fetch(coordinator, &request, 2);
    let offsets = response
        .topics
        .first()
        .map(|t| t.partitions.iter().map(|p| p.committed_offset).collect())
        .unwrap_or_default();
    (response.error_code, offsets)
}

fn heartbeat_request(group: &str) -> HeartbeatRequest {
    HeartbeatRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id(1)
        .with_member_id(s("m"))
}

/// What an earlier coordinator of group "simple"'s partition wrote: t-0 at 100, t-1 at
/// 101 (three times over), and that partition.
fn simple_group_records() -> (i32, Vec<LogWrite>) {
    let mut before = GroupCoordinator::new(config());
    let home = before.partition_for("simple");
    let mut written = Vec::new();
    for now in 0..3 {
        let out = handlers::offset_commit(
            &mut before,
            &commit_request(8, &[0, 1]),
            8,
            |_, _| true,
            now,
        );
        written.extend(out.writes);
    }
    assert!(written.iter().all(|w| w.partition == home));
    (home, written)
}

#[test]
fn a_partition_is_served_once_loaded_and_loading_answers_load_in_progress() {
    let exists = |_: &str, _: i32| true;
    let (home, written) = simple_group_records();
    let not_coordinator = ResponseError::NotCoordinator.code();
    let loading = ResponseError::CoordinatorLoadInProgress.code();
    let mut coordinator = GroupCoordinator::new_unowned(config());
    assert_ne!(
        coordinator.partition_for("g"),
        home,
        "the test needs two partitions"
    );

    // Not taken: NOT_COORDINATOR, nothing written; ListGroups lists nothing, no error.
    let out = handlers::offset_commit(&mut coordinator, &commit_request(8, &[0]), 8, exists, 5);
    assert_eq!(commit_code(&out), not_coordinator);
    assert!(out.writes.is_empty());
    assert_eq!(fetch_simple(&coordinator).0, not_coordinator);
    let listed = handlers::list_groups(&coordinator, &ListGroupsRequest::default(), 4);
    assert_eq!((listed.error_code, listed.groups.len()), (0, 0));
    let heartbeat = handlers::heartbeat(&mut coordinator, &heartbeat_request("simple"), 4, 5);
    assert_eq!(heartbeat.reply.error_code, not_coordinator);

    // Taken: COORDINATOR_LOAD_IN_PROGRESS until the replay is finished.
    let out = coordinator.load_partition(home);
    assert!(out.completions.is_empty() && out.writes.is_empty());
    assert_eq!(coordinator.ownership(home), Some(Ownership::Loading));
    let out = handlers::offset_commit(&mut coordinator, &commit_request(8, &[0]), 8, exists, 6);
    assert_eq!(commit_code(&out), loading);
    assert!(out.writes.is_empty());
    assert_eq!(fetch_simple(&coordinator).0, loading);
    let listed = handlers::list_groups(&coordinator, &ListGroupsRequest::default(), 4);
    assert_eq!(listed.error_code, loading);
    // Heartbeats are answered blindly while loading, as Kafka does; a group of another
    // partition is still not coordinated here.
    let heartbeat = handlers::heartbeat(&mut coordinator, &heartbeat_request("simple"), 4, 6);
    assert_eq!(heartbeat.reply.error_code, 0);
    let heartbeat = handlers::heartbeat(&mut coordinator, &heartbeat_request("g"), 4, 6);
    assert_eq!(heartbeat.reply.error_code, not_coordinator);
    for write in &written {
        coordinator
            .replay_batch(home, write.records.clone(), 0)
            .unwrap();
    }
    assert_eq!(fetch_simple(&coordinator).0, loading);
    let out = coordinator.finish_partition_load(home, 7);
    assert!(out.completions.is_empty() && out.writes.is_empty());

    // Loaded: the committed offsets are back; other partitions are still not taken.
    assert_eq!(coordinator.partitions_in(Ownership::Loaded), vec![home]);
    assert_eq!(fetch_simple(&coordinator), (0, vec![100, 101]));
    let listed = handlers::list_groups(&coordinator, &ListGroupsRequest::default(), 4);
    assert_eq!(listed.error_code, 0);
    let names: Vec<&str> = listed.groups.iter().map(|g| g.group_id.as_str()).collect();
    assert_eq!(names, vec!["simple"]);
    let out = handlers::join_group(&mut coordinator, &join_request("", 3), 3, CLIENT, 8);
    assert_eq!(out.reply.now().unwrap().error_code, not_coordinator);
    let out = handlers::offset_commit(&mut coordinator, &commit_request(8, &[1]), 8, exists, 9);
    assert_eq!(commit_code(&out), 0);
    let partitions: Vec<i32> = out.writes.iter().map(|w| w.partition).collect();
    assert_eq!(partitions, vec![home]);
}

#[test]
fn an_unloaded_partition_answers_not_coordinator_and_so_do_its_parked_requests() {
    let mut coordinator = GroupCoordinator::new_unowned(config());
    let home = coordinator.partition_for("g");
    let _ = coordinator.load_partition(home);
    let out = coordinator.adopt_partition(home, GroupCoordinator::new_loading(config()), 0);
    assert!(out.writes.is_empty());
    stable_group(&mut coordinator);
    // A second member's JoinGroup parks while the group rebalances.
    let out = handlers::join_group(&mut coordinator, &join_request("", 3), 3, CLIENT, 1);
    let ticket = out.reply.ticket().expect("parked during the rebalance");
    assert!(coordinator.next_deadline().is_some());

    let out = coordinator.unload_partition(home);
    assert!(
        out.writes.is_empty(),
        "giving a partition up writes nothing"
    );
    assert_eq!(out.completions.len(), 1);
    assert_eq!(out.completions[0].ticket(), ticket);
    match handlers::completion_response(&out.completions[0], 3) {
        CompletedResponse::Join(r) => {
            assert_eq!(r.error_code, ResponseError::NotCoordinator.code())
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(coordinator.ownership(home), Some(Ownership::NotOwned));
    assert!(coordinator.group("g").is_none());
    // Its timers fire nothing any more (no session expiry written for a group gone).
    let out = coordinator.tick(i64::MAX / 2);
    assert!(out.completions.is_empty() && out.writes.is_empty());
    let out = handlers::join_group(&mut coordinator, &join_request("", 3), 3, CLIENT, 2);
    assert_eq!(
        out.reply.now().unwrap().error_code,
        ResponseError::NotCoordinator.code()
    );
    let described = handlers::describe_groups(
        &coordinator,
        &DescribeGroupsRequest::default().with_groups(vec![GroupId(s("g"))]),
        5,
    );
    assert_eq!(
        described.groups[0].error_code,
        ResponseError::NotCoordinator.code()
    );
    let deleted = handlers::delete_groups(
        &mut coordinator,
        &DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s("g"))]),
        3,
    );
    assert_eq!(
        deleted.reply.results[0].error_code,
        ResponseError::NotCoordinator.code()
    );
}

#[test]
fn an_adopted_replay_is_served_unless_the_partition_was_given_up_meanwhile() {
    let (home, written) = simple_group_records();
    let replayed = || {
        let mut scratch = GroupCoordinator::new_loading(config());
        for write in &written {
            scratch
                .replay_batch(home, write.records.clone(), 0)
                .unwrap();
        }
        scratch
    };
    let mut coordinator = GroupCoordinator::new_unowned(config());
    let _ = coordinator.load_partition(home);
    let _ = coordinator.unload_partition(home);
    let _ = coordinator.adopt_partition(home, replayed(), 5);
    assert_eq!(coordinator.ownership(home), Some(Ownership::NotOwned));
    assert!(coordinator.group("simple").is_none());

    let _ = coordinator.load_partition(home);
    let _ = coordinator.adopt_partition(home, replayed(), 5);
    assert_eq!(fetch_simple(&coordinator), (0, vec![100, 101]));
    // Loading it again (a new leader epoch) starts from nothing, then the replay.
    let _ = coordinator.load_partition(home);
    assert!(coordinator.group("simple").is_none());
    let _ = coordinator.adopt_partition(home, replayed(), 6);
    assert_eq!(fetch_simple(&coordinator), (0, vec![100, 101]));
}

#[test]
fn loading_writes_nothing_and_cleanup_touches_only_the_partition_loaded() {
    let (home, written) = simple_group_records();
    let mut coordinator = GroupCoordinator::new_unowned(config());
    let _ = coordinator.load_partition(home);
    let mut scratch = GroupCoordinator::new_loading(config());
    for write in &written {
        scratch
            .replay_batch(home, write.records.clone(), 0)
            .unwrap();
    }
    // Six records replayed for two live ones: the cleaner, not the coordinator, drops
    // the superseded ones, so loading writes nothing.
    let out = coordinator.adopt_partition(home, scratch, 5);
    assert!(out.writes.is_empty());
    assert_eq!(fetch_simple(&coordinator), (0, vec![100, 101]));
    // The periodic cleanup of a coordinator serving one partition (here: the simple
    // group's offsets expire) writes tombstones to it alone, since the other
    // partitions' groups are not here.
    let out = coordinator.tick(i64::MAX / 2);
    assert!(!out.writes.is_empty(), "expired offsets are tombstoned");
    assert!(out.writes.iter().all(|w| w.partition == home));
}
