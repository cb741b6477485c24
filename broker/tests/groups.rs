//! Consumer groups through the wire protocol, against a real broker: FindCoordinator,
//! JoinGroup/SyncGroup/Heartbeat/LeaveGroup of two members (parked requests answered on
//! their own connections), offset commits and fetches, committed offsets across a clean
//! restart and a crash, simple (memberless) commits, session expiry driven by the
//! broker's timer, the log cleaner compacting `__consumer_offsets`, and the internal
//! topic itself (listed as internal, closed to producers).

mod common;

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::{batch, Client, TIMEOUT};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedPartition;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ConsumerProtocolAssignment, ConsumerProtocolSubscription,
    DescribeGroupsRequest, FindCoordinatorRequest, GroupId, HeartbeatRequest,
    IncrementalAlterConfigsRequest, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    ListGroupsRequest, MetadataRequest, OffsetCommitRequest, OffsetFetchRequest,
    OffsetFetchResponse, SyncGroupRequest, SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use sluice_broker::BrokerHandle;

const JOIN_V: i16 = 7;
const SYNC_V: i16 = 5;
const HEARTBEAT_V: i16 = 4;
const COMMIT_V: i16 = 8;
const FETCH_V: i16 = 8;

fn s(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_owned())
}

fn group_id(group: &str) -> GroupId {
    GroupId(s(group))
}

/// Broker settings for these tests: no initial rebalance delay, few offsets partitions.
const FAST: &[(&str, &str)] = &[
    ("group.initial.rebalance.delay.ms", "0"),
    ("offsets.topic.num.partitions", "3"),
];

async fn start(dir: &std::path::Path, extra: &[(&str, &str)]) -> BrokerHandle {
    let mut props = FAST.to_vec();
    props.extend_from_slice(extra);
    common::start(dir, &props).await
}

/// A consumer-protocol subscription (version 0) to `topics`.
fn subscription(topics: &[&str]) -> Bytes {
    let sub =
        ConsumerProtocolSubscription::default().with_topics(topics.iter().map(|t| s(t)).collect());
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&0i16.to_be_bytes());
    sub.encode(&mut buf, 0).unwrap();
    buf.freeze()
}

/// A consumer-protocol assignment (version 0) of `partitions` of `topic`.
fn assignment(topic: &str, partitions: &[i32]) -> Bytes {
    let a = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
        AssignedPartition::default()
            .with_topic(TopicName(s(topic)))
            .with_partitions(partitions.to_vec()),
    ]);
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&0i16.to_be_bytes());
    a.encode(&mut buf, 0).unwrap();
    buf.freeze()
}

fn join_request(group: &str, member_id: &str, session_ms: i32) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(group_id(group))
        .with_session_timeout_ms(session_ms)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(s(member_id))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(s("range"))
            .with_metadata(subscription(&["t"]))])
}

fn sync_request(
    group: &str,
    generation: i32,
    member_id: &str,
    assignments: &[(&str, Bytes)],
) -> SyncGroupRequest {
    SyncGroupRequest::default()
        .with_group_id(group_id(group))
        .with_generation_id(generation)
        .with_member_id(s(member_id))
        .with_protocol_type(Some(s("consumer")))
        .with_protocol_name(Some(s("range")))
        .with_assignments(
            assignments
                .iter()
                .map(|(m, a)| {
                    SyncGroupRequestAssignment::default()
                        .with_member_id(s(m))
                        .with_assignment(a.clone())
                })
                .collect(),
        )
}

fn heartbeat_request(group: &str, generation: i32, member_id: &str) -> HeartbeatRequest {
    HeartbeatRequest::default()
        .with_group_id(group_id(group))
        .with_generation_id(generation)
        .with_member_id(s(member_id))
}

fn commit_request(
    group: &str,
    generation: i32,
    member_id: &str,
    offsets: &[(&str, i32, i64)],
) -> OffsetCommitRequest {
    let mut topics: Vec<OffsetCommitRequestTopic> = Vec::new();
    for &(topic, partition, offset) in offsets {
        let p = OffsetCommitRequestPartition::default()
            .with_partition_index(partition)
            .with_committed_offset(offset)
            .with_committed_metadata(Some(s("meta")));
        match topics.iter_mut().find(|t| t.name.0.as_str() == topic) {
            Some(t) => t.partitions.push(p),
            None => topics.push(
                OffsetCommitRequestTopic::default()
                    .with_name(TopicName(s(topic)))
                    .with_partitions(vec![p]),
            ),
        }
    }
    OffsetCommitRequest::default()
        .with_group_id(group_id(group))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(s(member_id))
        .with_topics(topics)
}

/// Every partition's error code in an OffsetCommit answer.
async fn commit(
    client: &mut Client,
    group: &str,
    generation: i32,
    member_id: &str,
    offsets: &[(&str, i32, i64)],
) -> Vec<i16> {
    let response = client
        .send(
            COMMIT_V,
            &commit_request(group, generation, member_id, offsets),
        )
        .await;
    response
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
        .collect()
}

/// OffsetFetch v8 of `topic`'s partitions for `group`: (group error, [(partition,
/// offset, metadata)]).
async fn fetch_offsets(
    client: &mut Client,
    group: &str,
    topic: &str,
    partitions: &[i32],
) -> (i16, Vec<(i32, i64, String)>) {
    let request =
        OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
            .with_group_id(group_id(group))
            .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                .with_name(TopicName(s(topic)))
                .with_partition_indexes(partitions.to_vec())]))]);
    let response: OffsetFetchResponse = client.send(FETCH_V, &request).await;
    let g = &response.groups[0];
    let rows = g
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| {
                assert_eq!(p.error_code, 0);
                (
                    p.partition_index,
                    p.committed_offset,
                    p.metadata.as_deref().unwrap_or("").to_owned(),
                )
            })
        })
        .collect();
    (g.error_code, rows)
}

/// Waits until the coordinator has loaded `__consumer_offsets` (group APIs answer
/// something else than COORDINATOR_LOAD_IN_PROGRESS).
async fn wait_loaded(client: &mut Client) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let (error, _) = fetch_offsets(client, "probe", "t", &[0]).await;
        if error != ResponseError::CoordinatorLoadInProgress.code() {
            assert_eq!(error, 0);
            return;
        }
        assert!(Instant::now() < deadline, "coordinator never loaded");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// JoinGroup twice as a new member (v4+: the first answer is MEMBER_ID_REQUIRED with the
/// id to use), sending the second one without reading its answer (it may be parked).
/// Returns the member id and the correlation id to read the answer with.
async fn join_new(client: &mut Client, group: &str, session_ms: i32) -> (String, i32) {
    let first: JoinGroupResponse = client
        .send(JOIN_V, &join_request(group, "", session_ms))
        .await;
    assert_eq!(
        first.error_code,
        ResponseError::MemberIdRequired.code(),
        "KIP-394"
    );
    let member_id = first.member_id.as_str().to_owned();
    assert!(member_id.starts_with("sluice-test-"), "{member_id}");
    let (correlation_id, frame) =
        client.encode(JOIN_V, &join_request(group, &member_id, session_ms));
    client.write(&frame).await;
    (member_id, correlation_id)
}

async fn read_join(client: &mut Client, correlation_id: i32) -> JoinGroupResponse {
    let frame = client.read_frame().await.expect("JoinGroup answered");
    Client::decode::<JoinGroupRequest>(JOIN_V, correlation_id, frame)
}

async fn read_sync(client: &mut Client, correlation_id: i32) -> SyncGroupResponse {
    let frame = client.read_frame().await.expect("SyncGroup answered");
    Client::decode::<SyncGroupRequest>(SYNC_V, correlation_id, frame)
}

async fn describe(client: &mut Client, group: &str) -> (String, Vec<(String, Bytes)>) {
    let response = client
        .send(
            5,
            &DescribeGroupsRequest::default().with_groups(vec![group_id(group)]),
        )
        .await;
    let g = &response.groups[0];
    (
        g.group_state.as_str().to_owned(),
        g.members
            .iter()
            .map(|m| (m.member_id.as_str().to_owned(), m.member_assignment.clone()))
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinator_apis_are_advertised_and_find_this_broker() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path(), &[]).await;
    let addr = broker.local_addr();
    let mut client = Client::connect(addr).await;
    let versions = client
        .send(
            3,
            &ApiVersionsRequest::default()
                .with_client_software_name(s("sluice-test"))
                .with_client_software_version(s("1")),
        )
        .await;
    for (api, min, max) in [
        (ApiKey::JoinGroup, 0, 9),
        (ApiKey::OffsetCommit, 2, 9),
        (ApiKey::FindCoordinator, 0, 6),
    ] {
        let listed = versions
            .api_keys
            .iter()
            .find(|k| k.api_key == api as i16)
            .unwrap_or_else(|| panic!("{api:?} advertised"));
        assert_eq!(
            (listed.min_version, listed.max_version),
            (min, max),
            "{api:?}"
        );
    }
    // v3: one key; v4+: a batch of keys.
    let found = client
        .send(3, &FindCoordinatorRequest::default().with_key(s("g")))
        .await;
    assert_eq!(found.error_code, 0);
    assert_eq!(
        (found.host.as_str(), found.port),
        ("127.0.0.1", addr.port() as i32)
    );
    let found = client
        .send(
            4,
            &FindCoordinatorRequest::default().with_coordinator_keys(vec![s("a"), s("b")]),
        )
        .await;
    assert_eq!(found.coordinators.len(), 2);
    assert!(found
        .coordinators
        .iter()
        .all(|c| c.error_code == 0 && c.port == addr.port() as i32));

    // __consumer_offsets exists from the start, with the configured partition count, is
    // listed as internal (as Kafka lists it), and refuses producers as Kafka does.
    let metadata = client
        .send(12, &MetadataRequest::default().with_topics(None))
        .await;
    let internal = metadata
        .topics
        .iter()
        .find(|t| t.name.as_ref().map(|n| n.0.as_str()) == Some("__consumer_offsets"))
        .expect("__consumer_offsets listed");
    assert!(internal.is_internal);
    assert_eq!(internal.partitions.len(), 3);
    let (error, _) = client
        .produce("__consumer_offsets", 0, batch(&[(Some("k"), "v")]))
        .await;
    assert_eq!(error, ResponseError::InvalidTopicException.code());
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_members_join_sync_heartbeat_commit_and_leave() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path(), &[]).await;
    let addr = broker.local_addr();
    let mut a = Client::connect(addr).await;
    let mut b = Client::connect(addr).await;
    a.create_topic("t", 4, &[]).await;
    wait_loaded(&mut a).await;
    let group = "g1";

    // A alone: leader of generation 1.
    let (member_a, cid) = join_new(&mut a, group, 10_000).await;
    let joined = read_join(&mut a, cid).await;
    assert_eq!(joined.error_code, 0);
    assert_eq!(joined.generation_id, 1);
    assert_eq!(joined.leader.as_str(), member_a);
    assert_eq!(joined.protocol_name.as_deref(), Some("range"));
    assert_eq!(joined.members.len(), 1);
    let synced = a
        .send(
            SYNC_V,
            &sync_request(
                group,
                1,
                &member_a,
                &[(&member_a, assignment("t", &[0, 1, 2, 3]))],
            ),
        )
        .await;
    assert_eq!(synced.error_code, 0);
    assert_eq!(synced.assignment, assignment("t", &[0, 1, 2, 3]));
    let hb = a
        .send(HEARTBEAT_V, &heartbeat_request(group, 1, &member_a))
        .await;
    assert_eq!(hb.error_code, 0);
    assert_eq!(describe(&mut a, group).await.0, "Stable");

    // B joins: its JoinGroup is parked until A rejoins, which A learns from a heartbeat.
    // (B's JoinGroup travels on another connection: heartbeat until it has arrived.)
    let (member_b, cid_b) = join_new(&mut b, group, 10_000).await;
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let hb = a
            .send(HEARTBEAT_V, &heartbeat_request(group, 1, &member_a))
            .await;
        if hb.error_code == ResponseError::RebalanceInProgress.code() {
            break;
        }
        assert_eq!(hb.error_code, 0);
        assert!(Instant::now() < deadline, "no rebalance after B joined");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (cid_a, frame) = a.encode(JOIN_V, &join_request(group, &member_a, 10_000));
    a.write(&frame).await;
    let joined_a = read_join(&mut a, cid_a).await;
    let joined_b = read_join(&mut b, cid_b).await;
    assert_eq!((joined_a.error_code, joined_b.error_code), (0, 0));
    assert_eq!(joined_a.generation_id, 2);
    assert_eq!(joined_b.generation_id, 2);
    assert_eq!(
        joined_a.leader.as_str(),
        member_a,
        "the leader stays leader"
    );
    assert_eq!(joined_a.members.len(), 2, "the leader sees every member");
    assert!(joined_b.members.is_empty(), "followers see none");

    // B's SyncGroup is parked until the leader's brings the assignment.
    let (cid_sync_b, frame) = b.encode(SYNC_V, &sync_request(group, 2, &member_b, &[]));
    b.write(&frame).await;
    let synced_a = a
        .send(
            SYNC_V,
            &sync_request(
                group,
                2,
                &member_a,
                &[
                    (&member_a, assignment("t", &[0, 1])),
                    (&member_b, assignment("t", &[2, 3])),
                ],
            ),
        )
        .await;
    assert_eq!(synced_a.error_code, 0);
    assert_eq!(synced_a.assignment, assignment("t", &[0, 1]));
    let synced_b = read_sync(&mut b, cid_sync_b).await;
    assert_eq!(synced_b.error_code, 0);
    assert_eq!(synced_b.assignment, assignment("t", &[2, 3]));
    assert_eq!(synced_b.protocol_name.as_deref(), Some("range"));
    for (client, member) in [(&mut a, &member_a), (&mut b, &member_b)] {
        let hb = client
            .send(HEARTBEAT_V, &heartbeat_request(group, 2, member))
            .await;
        assert_eq!(hb.error_code, 0);
    }
    let (state, members) = describe(&mut a, group).await;
    assert_eq!(state, "Stable");
    let mut ids: Vec<_> = members.iter().map(|(m, _)| m.clone()).collect();
    ids.sort();
    let mut expected = vec![member_a.clone(), member_b.clone()];
    expected.sort();
    assert_eq!(ids, expected);
    let listed = a.send(4, &ListGroupsRequest::default()).await;
    assert!(listed
        .groups
        .iter()
        .any(|g| g.group_id.as_str() == group && g.group_state.as_str() == "Stable"));

    // Members commit; a stale generation is refused; both members read the offsets.
    assert_eq!(
        commit(&mut a, group, 2, &member_a, &[("t", 0, 10), ("t", 1, 11)]).await,
        [0, 0]
    );
    assert_eq!(
        commit(&mut b, group, 2, &member_b, &[("t", 2, 12), ("t", 3, 13)]).await,
        [0, 0]
    );
    assert_eq!(
        commit(&mut b, group, 1, &member_b, &[("t", 2, 99)]).await,
        [ResponseError::IllegalGeneration.code()]
    );
    assert_eq!(
        commit(&mut b, group, 2, &member_b, &[("nope", 0, 1)]).await,
        [ResponseError::UnknownTopicOrPartition.code()]
    );
    let (error, rows) = fetch_offsets(&mut b, group, "t", &[0, 1, 2, 3]).await;
    assert_eq!(error, 0);
    let offsets: Vec<(i32, i64)> = rows.iter().map(|r| (r.0, r.1)).collect();
    assert_eq!(offsets, [(0, 10), (1, 11), (2, 12), (3, 13)]);
    assert!(rows.iter().all(|r| r.2 == "meta"));

    // A leaves: B must rejoin.
    let left = a
        .send(
            5,
            &LeaveGroupRequest::default()
                .with_group_id(group_id(group))
                .with_members(vec![MemberIdentity::default().with_member_id(s(&member_a))]),
        )
        .await;
    assert_eq!(left.error_code, 0);
    assert_eq!(left.members[0].error_code, 0);
    let hb = b
        .send(HEARTBEAT_V, &heartbeat_request(group, 2, &member_b))
        .await;
    assert_eq!(hb.error_code, ResponseError::RebalanceInProgress.code());
    let joined = b
        .send(JOIN_V, &join_request(group, &member_b, 10_000))
        .await;
    assert_eq!(joined.error_code, 0);
    assert_eq!(joined.generation_id, 3);
    assert_eq!(joined.leader.as_str(), member_b);
    broker.shutdown().await.unwrap();
}

/// Commits of a consumer group (with generation) and of a simple group, then a restart.
async fn commit_then_restart(crash: bool, extra: &[(&str, &str)]) {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path(), extra).await;
    let mut client = Client::connect(broker.local_addr()).await;
    client.create_topic("t", 2, &[]).await;
    wait_loaded(&mut client).await;
    let (member, cid) = join_new(&mut client, "members", 10_000).await;
    let joined = read_join(&mut client, cid).await;
    assert_eq!(joined.error_code, 0);
    let synced = client
        .send(
            SYNC_V,
            &sync_request(
                "members",
                1,
                &member,
                &[(&member, assignment("t", &[0, 1]))],
            ),
        )
        .await;
    assert_eq!(synced.error_code, 0);
    for offset in 1..=20 {
        assert_eq!(
            commit(
                &mut client,
                "members",
                1,
                &member,
                &[("t", 0, offset), ("t", 1, 100 + offset)]
            )
            .await,
            [0, 0]
        );
    }
    assert_eq!(
        commit(&mut client, "simple", -1, "", &[("t", 1, 7)]).await,
        [0]
    );
    drop(client);
    if crash {
        broker.kill().await;
    } else {
        broker.shutdown().await.unwrap();
    }

    let broker = start(dir.path(), extra).await;
    let mut client = Client::connect(broker.local_addr()).await;
    wait_loaded(&mut client).await;
    let (_, rows) = fetch_offsets(&mut client, "members", "t", &[0, 1]).await;
    let offsets: Vec<(i32, i64)> = rows.iter().map(|r| (r.0, r.1)).collect();
    assert_eq!(offsets, [(0, 20), (1, 120)], "crash: {crash}");
    let (_, rows) = fetch_offsets(&mut client, "simple", "t", &[0, 1]).await;
    let offsets: Vec<(i32, i64)> = rows.iter().map(|r| (r.0, r.1)).collect();
    assert_eq!(offsets, [(0, -1), (1, 7)]);
    // The member's group was stored Stable with its assignment: after the restart it is
    // loaded as such, and the member (still within its session) keeps heartbeating.
    let (state, members) = describe(&mut client, "members").await;
    assert_eq!(state, "Stable");
    assert_eq!(members, [(member.clone(), assignment("t", &[0, 1]))]);
    let hb = client
        .send(HEARTBEAT_V, &heartbeat_request("members", 1, &member))
        .await;
    assert_eq!(hb.error_code, 0);
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offsets_survive_a_clean_restart() {
    commit_then_restart(false, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offsets_survive_a_crash() {
    commit_then_restart(true, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offsets_survive_a_crash_with_flush_policy_always() {
    // Every answer then waits for its records' fsync (the deferred-answer path).
    commit_then_restart(true, &[("log.flush.policy", "always")]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_group_commits_without_membership() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path(), &[]).await;
    let mut client = Client::connect(broker.local_addr()).await;
    client.create_topic("t", 3, &[]).await;
    wait_loaded(&mut client).await;
    assert_eq!(
        commit(&mut client, "simple", -1, "", &[("t", 0, 5), ("t", 2, 9)]).await,
        [0, 0]
    );
    // OffsetFetch v1 (one group, per-partition answers) and v8 read the same offsets.
    let v1 = client
        .send(
            1,
            &OffsetFetchRequest::default()
                .with_group_id(group_id("simple"))
                .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                    .with_name(TopicName(s("t")))
                    .with_partition_indexes(vec![0, 1, 2])])),
        )
        .await;
    let offsets: Vec<(i32, i64)> = v1.topics[0]
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.committed_offset))
        .collect();
    assert_eq!(offsets, [(0, 5), (1, -1), (2, 9)]);
    let (state, members) = describe(&mut client, "simple").await;
    assert_eq!(state, "Empty");
    assert!(members.is_empty());
    // Lag: high watermark - committed, never negative.
    for i in 0..8 {
        let (error, _) = client
            .produce("t", 0, batch(&[(None, &format!("r{i}"))]))
            .await;
        assert_eq!(error, 0);
    }
    let state = broker.state();
    let lag: Vec<(i32, Option<i64>, Option<i64>)> = state
        .groups
        .group_lag(state, "simple")
        .await
        .expect("group exists")
        .iter()
        .map(|row| (row.partition, row.committed_offset, row.lag))
        .collect();
    assert_eq!(lag, [(0, Some(5), Some(3)), (2, Some(9), Some(0))]);
    assert!(state.groups.group_lag(state, "nobody").await.is_none());
    // A member id on a group nobody joined: refused.
    assert_eq!(
        commit(&mut client, "other", 1, "ghost", &[("t", 0, 1)]).await,
        [ResponseError::IllegalGeneration.code()]
    );
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_member_is_removed_at_its_session_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path(), &[("group.min.session.timeout.ms", "100")]).await;
    let mut client = Client::connect(broker.local_addr()).await;
    client.create_topic("t", 1, &[]).await;
    wait_loaded(&mut client).await;
    let (member, cid) = join_new(&mut client, "g", 300).await;
    assert_eq!(read_join(&mut client, cid).await.error_code, 0);
    let synced = client
        .send(
            SYNC_V,
            &sync_request("g", 1, &member, &[(&member, assignment("t", &[0]))]),
        )
        .await;
    assert_eq!(synced.error_code, 0);
    // Nothing is sent any more: only the broker's timer can notice the expiry.
    let started = Instant::now();
    let deadline = started + TIMEOUT;
    loop {
        let (state, members) = describe(&mut client, "g").await;
        if state == "Empty" {
            assert!(members.is_empty());
            break;
        }
        assert!(Instant::now() < deadline, "session never expired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(started.elapsed() >= Duration::from_millis(200));
    let hb = client
        .send(HEARTBEAT_V, &heartbeat_request("g", 1, &member))
        .await;
    assert_eq!(hb.error_code, ResponseError::UnknownMemberId.code());
    broker.shutdown().await.unwrap();
}

/// Gives `__consumer_offsets` 8 KiB segments and a dirty ratio of 0.1, as an operator
/// would with kafka-configs (a restart keeps them), so the cleaner gets to work within a
/// test.
async fn small_offsets_segments(broker: &BrokerHandle) {
    let mut admin = Client::connect(broker.local_addr()).await;
    let altered = admin
        .send(
            1,
            &IncrementalAlterConfigsRequest::default().with_resources(vec![
                AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(StrBytes::from_static_str("__consumer_offsets"))
                    .with_configs(
                        [
                            ("segment.bytes", "8192"),
                            ("min.cleanable.dirty.ratio", "0.1"),
                        ]
                        .into_iter()
                        .map(|(name, value)| {
                            AlterableConfig::default()
                                .with_name(StrBytes::from_static_str(name))
                                .with_value(Some(StrBytes::from_static_str(value)))
                        })
                        .collect(),
                    ),
            ]),
        )
        .await;
    assert_eq!(altered.responses[0].error_code, 0, "{altered:?}");
    common::wait_until("the new segment.bytes applies", || {
        broker
            .state()
            .topics
            .get("__consumer_offsets")
            .is_some_and(|topic| topic.config().segment_bytes == 8192)
    })
    .await;
}

/// Every record of `__consumer_offsets-0`, decoded, from its log start.
fn offsets_records(broker: &BrokerHandle) -> Vec<sluice_broker::coordinator::Record> {
    use sluice_broker::coordinator::store::decode_batch;
    use sluice_storage::batch::{batches, BatchHeader};
    let partition = broker
        .state()
        .topics
        .get("__consumer_offsets")
        .unwrap()
        .partition(0)
        .unwrap();
    let log = &partition.log;
    let start = log.log_start_offset();
    let mut offset = start;
    let mut out = Vec::new();
    while offset < log.log_end_offset() {
        let read = log
            .read_bounded(offset, usize::MAX, false, sluice_storage::ReadBound::LogEnd)
            .unwrap();
        for batch in batches(&read.records) {
            let batch = batch.unwrap();
            offset = BatchHeader::new(batch).unwrap().next_offset();
            let decoded = decode_batch(0, Bytes::copy_from_slice(batch), start).unwrap();
            out.extend(decoded.into_iter().map(|(_, record)| record));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cleaner_compacts_the_offsets_log_and_it_replays() {
    let dir = tempfile::tempdir().unwrap();
    let settings = [
        ("offsets.topic.num.partitions", "1"),
        ("log.cleaner.backoff.ms", "50"),
    ];
    let broker = start(dir.path(), &settings).await;
    small_offsets_segments(&broker).await;
    let mut client = Client::connect(broker.local_addr()).await;
    client.create_topic("t", 2, &[]).await;
    wait_loaded(&mut client).await;
    for i in 0..1250 {
        assert_eq!(
            commit(&mut client, "busy", -1, "", &[("t", 0, i), ("t", 1, 2 * i)]).await,
            [0, 0]
        );
    }
    let log = broker
        .state()
        .topics
        .get("__consumer_offsets")
        .unwrap()
        .partition(0)
        .unwrap();
    let written = log.log.log_end_offset();
    assert_eq!(written, 2500, "the coordinator deletes nothing itself");
    // 2,500 commit records (about 100 bytes each) come down to the two live ones and the
    // active segment, in a few segments: the cleaner bounds the partition, with no
    // header left behind per commit.
    common::wait_until("the cleaner compacts __consumer_offsets", || {
        log.log.size_bytes() < 3 * 8192
    })
    .await;
    assert_eq!(log.log.log_start_offset(), 0, "nothing is deleted outright");
    drop(client);
    drop(log);
    broker.kill().await;

    let broker = start(dir.path(), &settings).await;
    let config = broker
        .state()
        .topics
        .get("__consumer_offsets")
        .unwrap()
        .config();
    assert_eq!(
        config.segment_bytes, 8192,
        "an operator's segment.bytes is kept"
    );
    let mut client = Client::connect(broker.local_addr()).await;
    wait_loaded(&mut client).await;
    let (_, rows) = fetch_offsets(&mut client, "busy", "t", &[0, 1]).await;
    let offsets: Vec<(i32, i64)> = rows.iter().map(|r| (r.0, r.1)).collect();
    assert_eq!(offsets, [(0, 1249), (1, 2498)]);
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_with_restatements_of_an_earlier_release_loads_and_is_compacted() {
    use sluice_broker::coordinator::store::encode_batches;
    use sluice_broker::coordinator::{OffsetValue, Record};
    let dir = tempfile::tempdir().unwrap();
    let settings = [
        ("offsets.topic.num.partitions", "1"),
        ("log.cleaner.backoff.ms", "50"),
    ];
    let broker = start(dir.path(), &settings).await;
    small_offsets_segments(&broker).await;
    let mut client = Client::connect(broker.local_addr()).await;
    client.create_topic("t", 2, &[]).await;
    wait_loaded(&mut client).await;
    let partition = broker
        .state()
        .topics
        .get("__consumer_offsets")
        .unwrap()
        .partition(0)
        .unwrap();
    // What an earlier release wrote: commits, then a restatement of the live state (a
    // marker and a copy of each live record) and the deletion of what preceded it; later
    // a second restatement whose deletion a crash prevented.
    let restate = |offsets: [(i32, i64); 2], delete: bool| {
        let mut records = vec![Record::Restatement { records: 2 }];
        records.extend(offsets.map(|(p, offset)| Record::Offset {
            group: "old".to_owned(),
            topic: "t".to_owned(),
            partition: p,
            value: Some(OffsetValue {
                offset,
                leader_epoch: -1,
                metadata: String::new(),
                commit_timestamp_ms: 1_700_000_000_000,
                expire_timestamp_ms: None,
            }),
        }));
        let bytes = encode_batches(&records, 1_700_000_000_000, 512 * 1024).unwrap();
        let log = &partition.log;
        let info = log
            .append(&bytes, log.latest_epoch().unwrap_or(0), 1_700_000_000_000)
            .unwrap();
        log.advance_high_watermark(log.log_end_offset());
        if delete {
            log.flush().unwrap();
            log.delete_records_before(info.base_offset).unwrap();
        }
    };
    for i in 0..20 {
        assert_eq!(
            commit(
                &mut client,
                "old",
                -1,
                "",
                &[("t", 0, i), ("t", 1, 100 + i)]
            )
            .await,
            [0, 0]
        );
    }
    restate([(0, 19), (1, 119)], true);
    assert_eq!(
        commit(&mut client, "old", -1, "", &[("t", 0, 42)]).await,
        [0]
    );
    restate([(0, 42), (1, 119)], false);
    assert!(partition.log.log_start_offset() > 0);
    drop(partition);
    drop(client);
    broker.kill().await;

    // This release loads it as it is.
    let broker = start(dir.path(), &settings).await;
    let mut client = Client::connect(broker.local_addr()).await;
    wait_loaded(&mut client).await;
    let (_, rows) = fetch_offsets(&mut client, "old", "t", &[0, 1]).await;
    let offsets: Vec<(i32, i64)> = rows.iter().map(|r| (r.0, r.1)).collect();
    assert_eq!(offsets, [(0, 42), (1, 119)]);
    let markers = |broker: &BrokerHandle| {
        offsets_records(broker)
            .iter()
            .filter(|r| matches!(r, Record::Restatement { .. }))
            .count()
    };
    assert_eq!(markers(&broker), 2);
    // Commits of another group roll segments; the cleaner then compacts the old records:
    // the markers (all of one key) come down to one, and no offset moves.
    for i in 0..300 {
        assert_eq!(
            commit(&mut client, "new", -1, "", &[("t", 0, i)]).await,
            [0]
        );
    }
    common::wait_until("the cleaner drops all markers but the last", || {
        markers(&broker) == 1
    })
    .await;
    let (_, rows) = fetch_offsets(&mut client, "old", "t", &[0, 1]).await;
    let offsets: Vec<(i32, i64)> = rows.iter().map(|r| (r.0, r.1)).collect();
    assert_eq!(offsets, [(0, 42), (1, 119)]);
    drop(client);
    broker.kill().await;
    let broker = start(dir.path(), &settings).await;
    let mut client = Client::connect(broker.local_addr()).await;
    wait_loaded(&mut client).await;
    let (_, rows) = fetch_offsets(&mut client, "old", "t", &[0, 1]).await;
    let offsets: Vec<(i32, i64)> = rows.iter().map(|r| (r.0, r.1)).collect();
    assert_eq!(
        offsets,
        [(0, 42), (1, 119)],
        "and after the cleaned log is replayed"
    );
    let (_, rows) = fetch_offsets(&mut client, "new", "t", &[0]).await;
    assert_eq!(rows[0].1, 299);
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_offsets_topic_gets_the_internal_settings() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path(), &[]).await;
    let topic = broker.state().topics.get("__consumer_offsets").unwrap();
    let config = topic.config();
    assert_eq!(config.cleanup_policy, "compact");
    assert!(
        !config.deletes(),
        "retention never deletes committed offsets"
    );
    assert_eq!(config.segment_bytes, 16 * 1024 * 1024);
    // As if a client had auto-created it before the coordinator existed.
    broker
        .state()
        .topics
        .set_overrides(&topic, Default::default())
        .unwrap();
    assert!(topic.config().deletes());
    drop(topic);
    broker.shutdown().await.unwrap();

    let broker = start(dir.path(), &[("offsets.topic.num.partitions", "7")]).await;
    let topic = broker.state().topics.get("__consumer_offsets").unwrap();
    assert_eq!(topic.config().cleanup_policy, "compact");
    assert_eq!(
        topic.partition_count(),
        3,
        "an existing topic keeps its partition count"
    );
    drop(topic);
    broker.shutdown().await.unwrap();
}

#[test]
fn group_settings_use_kafkas_property_names() {
    let props = |pairs: &[(&str, &str)]| -> std::collections::BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let config = sluice_broker::BrokerConfig::default().group_coordinator;
    assert_eq!(config.group_initial_rebalance_delay_ms, 3000);
    assert_eq!(config.group_min_session_timeout_ms, 6000);
    assert_eq!(config.group_max_session_timeout_ms, 1_800_000);
    assert_eq!(config.offsets_topic_num_partitions, 50);
    let config = sluice_broker::BrokerConfig::from_properties(&props(&[
        ("group.initial.rebalance.delay.ms", "0"),
        ("group.min.session.timeout.ms", "100"),
        ("group.max.session.timeout.ms", "200"),
        ("offsets.topic.num.partitions", "4"),
    ]))
    .unwrap()
    .group_coordinator;
    assert_eq!(
        (
            config.group_initial_rebalance_delay_ms,
            config.group_min_session_timeout_ms,
            config.group_max_session_timeout_ms,
            config.offsets_topic_num_partitions
        ),
        (0, 100, 200, 4)
    );
    for bad in [
        ("offsets.topic.num.partitions", "0"),
        ("group.initial.rebalance.delay.ms", "-1"),
        ("group.max.session.timeout.ms", "10"),
    ] {
        assert!(
            sluice_broker::BrokerConfig::from_properties(&props(&[bad])).is_err(),
            "{bad:?}"
        );
    }
}
