//! The leader's side of replication through the handlers: replica fetches, acks=all
//! waits, OffsetForLeaderEpoch. The partition's leadership is set directly from a
//! registration (as the leader task does from the metadata image), on a state without
//! sockets; followers are simulated by their Fetch requests.

use std::sync::Arc;
use std::task::{Context, Poll};

use kafka_protocol::messages::fetch_request::ReplicaState;
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use sluice_metadata::image::PartitionRegistration;

use super::*;
use crate::handlers::offset_for_leader_epoch;
use crate::replication::leader;
use crate::topics::Partition;

const ME: i32 = 1;

thread_local! {
    /// The id of topic "t" in the current test (set by `led`/`lead`).
    static TOPIC_ID: std::cell::Cell<uuid::Uuid> = const { std::cell::Cell::new(uuid::Uuid::nil()) };
}

/// Topic "t" (one partition) led by this broker (1) at `epoch` with `replicas` and `isr`.
fn led(
    state: &BrokerState,
    min_insync: &str,
    replicas: &[i32],
    isr: &[i32],
    epoch: i32,
) -> Arc<Partition> {
    let overrides = [("min.insync.replicas".to_owned(), min_insync.to_owned())].into();
    let topic = state.topics.create("t", 1, overrides).unwrap();
    let partition = topic.partition(0).unwrap();
    lead(state, &partition, replicas, isr, epoch);
    partition
}

fn lead(state: &BrokerState, partition: &Partition, replicas: &[i32], isr: &[i32], epoch: i32) {
    let topic = state.topics.get("t").unwrap();
    TOPIC_ID.with(|id| id.set(topic.id));
    let registration = PartitionRegistration {
        replicas: replicas.to_vec(),
        isr: isr.to_vec(),
        leader: ME,
        leader_epoch: epoch,
        partition_epoch: 0,
        adding_replicas: Vec::new(),
        removing_replicas: Vec::new(),
    };
    leader::lead(
        partition,
        ME,
        topic.id,
        &registration,
        leader::min_insync(&topic),
        sluice_storage::now_ms(),
    );
}

/// A follower's fetch: replica id in `replica_id` before v15, in `replica_state` from v15.
fn replica_fetch(replica: i32, offset: i64, last_fetched_epoch: i32, version: i16) -> FetchRequest {
    let mut request = fetch_request("t", offset, 0);
    request.topics[0].partitions[0].last_fetched_epoch = last_fetched_epoch;
    // From v13 topics are named by id; the state's topic "t" has a random one.
    request.topics[0].topic_id = TOPIC_ID.with(|id| id.get());
    if version >= 15 {
        request.replica_state = ReplicaState::default()
            .with_replica_id(BrokerId(replica))
            .with_replica_epoch(42);
    } else {
        request.replica_id = BrokerId(replica);
    }
    request
}

fn fetched(
    state: &BrokerState,
    request: &FetchRequest,
    version: i16,
) -> fetch_response::PartitionData {
    let FetchOutcome::Ready(response) = fetch::handle(state, request, version, true) else {
        panic!("a final attempt answers");
    };
    encodes(&response, version);
    response.responses[0].partitions[0].clone()
}

fn produced_code(response: &ProduceResponse) -> i16 {
    response.responses[0].partition_responses[0].error_code
}

/// Polls once, in the current runtime (the waits use its timer).
fn poll_once<F: std::future::Future + Unpin>(future: &mut F) -> Poll<F::Output> {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    std::pin::Pin::new(future).poll(&mut cx)
}

#[test]
fn replica_fetches_read_past_the_high_watermark_and_move_it() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path(), &[]);
    let partition = led(&state, "1", &[1, 2, 3], &[1, 2], 0);
    let outcome = produce::handle(&state, &produce_request("t", 1, records(&["a", "b"])), 9, 5);
    assert!(!outcome.failed);
    // Follower 2 has not fetched: nothing is visible to consumers yet.
    assert_eq!(partition.log.log_end_offset(), 2);
    assert_eq!(partition.log.high_watermark(), 0);
    let consumer = fetched(&state, &fetch_request("t", 0, 0), 12);
    assert_eq!(consumer.error_code, 0);
    assert!(consumer.records.as_ref().unwrap().is_empty());
    assert_eq!(consumer.high_watermark, 0);

    for version in [12, 15] {
        // The follower reads up to the log end; its fetch offset (0) is its log end.
        let data = fetched(&state, &replica_fetch(2, 0, -1, version), version);
        assert_eq!(data.error_code, 0);
        assert!(!data.records.as_ref().unwrap().is_empty());
        assert_eq!(data.high_watermark, 0);
        let follower = partition.leadership.snapshot().unwrap().followers[&2];
        assert_eq!(follower.log_end_offset, 0);
    }
    assert_eq!(
        partition.leadership.snapshot().unwrap().followers[&2].broker_epoch,
        42,
        "v15 carries the follower's broker epoch"
    );
    // Its next fetch at 2 says it has both records: the HW (min over {1, 2}) moves.
    let data = fetched(&state, &replica_fetch(2, 2, 0, 12), 12);
    assert_eq!(data.error_code, 0);
    assert!(data.records.as_ref().unwrap().is_empty());
    assert_eq!(data.high_watermark, 2);
    assert_eq!(partition.log.high_watermark(), 2);
    let consumer = fetched(&state, &fetch_request("t", 0, 0), 12);
    assert!(!consumer.records.as_ref().unwrap().is_empty());
    assert_eq!(
        (consumer.high_watermark, consumer.last_stable_offset),
        (2, 2)
    );
    // A long poll at the log end waits for data, unless the follower says (v18,
    // KIP-1166) that it knows an older high watermark.
    let mut poll = replica_fetch(2, 2, 0, 18);
    poll.max_wait_ms = 500;
    poll.topics[0].partitions[0].high_watermark = 2;
    assert!(matches!(
        fetch::handle(&state, &poll, 18, false),
        FetchOutcome::Wait(_)
    ));
    poll.topics[0].partitions[0].high_watermark = 1;
    let FetchOutcome::Ready(news) = fetch::handle(&state, &poll, 18, false) else {
        panic!("a stale high watermark is answered at once");
    };
    assert_eq!(news.responses[0].partitions[0].high_watermark, 2);
    // Follower 3 is a replica outside the ISR: its progress does not hold the HW back.
    assert_eq!(
        fetched(&state, &replica_fetch(3, 0, -1, 12), 12).error_code,
        0
    );
    assert_eq!(partition.log.high_watermark(), 2);
    // Broker 4 is no replica.
    assert_eq!(
        fetched(&state, &replica_fetch(4, 0, -1, 12), 12).error_code,
        ResponseError::NotLeaderOrFollower.code()
    );
    // Not leading any more: followers are refused.
    leader::resign(&partition, 1);
    assert_eq!(
        fetched(&state, &replica_fetch(2, 2, 0, 12), 12).error_code,
        ResponseError::NotLeaderOrFollower.code()
    );
}

#[test]
fn a_diverging_follower_is_told_where_the_leaders_epoch_ends() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path(), &[]);
    let topic = state.topics.create("t", 1, BTreeMap::new()).unwrap();
    let partition = topic.partition(0).unwrap();
    // Epoch 0: offsets 0-1; epoch 2: offsets 2-3.
    partition.log.append(&records(&["a", "b"]), 0, 5).unwrap();
    partition.log.append(&records(&["c", "d"]), 2, 5).unwrap();
    lead(&state, &partition, &[1, 2], &[1, 2], 2);

    // The follower has epoch 1 up to offset 3, which the leader never had: epoch 0 ends
    // at 2 here.
    let data = fetched(&state, &replica_fetch(2, 3, 1, 12), 12);
    assert_eq!(data.error_code, 0);
    assert_eq!(
        (data.diverging_epoch.epoch, data.diverging_epoch.end_offset),
        (0, 2)
    );
    assert!(data.records.as_ref().unwrap().is_empty());
    // Its progress is not recorded from a diverging fetch.
    assert_eq!(
        partition.leadership.snapshot().unwrap().followers[&2].log_end_offset,
        -1
    );
    // Same epoch, but past where it ended.
    let data = fetched(&state, &replica_fetch(2, 3, 0, 12), 12);
    assert_eq!(
        (data.diverging_epoch.epoch, data.diverging_epoch.end_offset),
        (0, 2)
    );
    // Consistent: records from the fetch offset, and the follower's progress counts.
    let data = fetched(&state, &replica_fetch(2, 2, 0, 12), 12);
    assert_eq!(data.diverging_epoch.epoch, -1);
    assert!(!data.records.as_ref().unwrap().is_empty());
    assert_eq!(
        partition.leadership.snapshot().unwrap().followers[&2].log_end_offset,
        2
    );
    let data = fetched(&state, &replica_fetch(2, 4, 2, 12), 12);
    assert_eq!(data.diverging_epoch.epoch, -1);
    assert_eq!(data.high_watermark, 4);
    // Before v12 there is no last fetched epoch to check.
    let data = fetched(&state, &replica_fetch(2, 3, 1, 11), 11);
    assert_eq!(data.error_code, 0);
}

#[tokio::test]
async fn acks_all_waits_until_the_follower_has_the_records() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path(), &[]);
    let partition = led(&state, "2", &[1, 2], &[1, 2], 0);
    let mut request = produce_request("t", -1, records(&["a"]));
    request.timeout_ms = 30_000;
    let outcome = produce::handle(&state, &request, 9, 5);
    assert!(!outcome.failed);
    assert_eq!(outcome.replicated.len(), 1);
    assert!(!outcome.is_ready());
    let mut answer = Box::pin(produce::finish(outcome));
    assert!(poll_once(&mut answer).is_pending());
    // A second partition-independent request is not held up (no task, no lock).
    let other = produce::handle(&state, &produce_request("t", 1, records(&["b"])), 9, 5);
    assert!(other.is_ready() && !other.failed);
    // The follower fetches past the first record: the HW passes it.
    assert_eq!(
        fetched(&state, &replica_fetch(2, 1, 0, 12), 12).error_code,
        0
    );
    assert_eq!(partition.log.high_watermark(), 1);
    let response = tokio::time::timeout(std::time::Duration::from_secs(10), answer)
        .await
        .expect("completed by the follower's fetch");
    assert_eq!(produced_code(&response), 0);
    assert_eq!(response.responses[0].partition_responses[0].base_offset, 0);

    // The next acks=all append waits too (record "b" at offset 1 is not replicated).
    let outcome = produce::handle(&state, &request, 9, 5);
    assert_eq!(outcome.replicated.len(), 1);
    // This broker leads at a new epoch meanwhile (it was deposed and elected again):
    // the wait fails NOT_LEADER_OR_FOLLOWER, the producer retries.
    let answer = produce::finish(outcome);
    lead(&state, &partition, &[1, 2], &[1, 2], 1);
    let response = tokio::time::timeout(std::time::Duration::from_secs(10), answer)
        .await
        .expect("completed by the epoch change");
    assert_eq!(
        produced_code(&response),
        ResponseError::NotLeaderOrFollower.code()
    );
}

#[tokio::test]
async fn acks_all_times_out_or_fails_when_the_isr_shrinks() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path(), &[]);
    let partition = led(&state, "2", &[1, 2, 3], &[1, 2, 3], 0);
    let mut request = produce_request("t", -1, records(&["a"]));
    request.timeout_ms = 50;
    let outcome = produce::handle(&state, &request, 9, 5);
    assert_eq!(outcome.replicated.len(), 1);
    let response = produce::finish(outcome).await;
    assert_eq!(
        produced_code(&response),
        ResponseError::RequestTimedOut.code()
    );

    // Committed ISR shrinks to {1} below min.insync 2 while a produce waits.
    request.timeout_ms = 30_000;
    let outcome = produce::handle(&state, &request, 9, 5);
    assert_eq!(outcome.replicated.len(), 1);
    let answer = produce::finish(outcome);
    lead(&state, &partition, &[1, 2, 3], &[1], 0);
    let response = tokio::time::timeout(std::time::Duration::from_secs(10), answer)
        .await
        .expect("completed by the ISR change");
    assert_eq!(
        produced_code(&response),
        ResponseError::NotEnoughReplicasAfterAppend.code()
    );
    // The ISR is now below min.insync.replicas: refused before anything is appended,
    // and the high watermark no longer advances (KIP-966), even for acks=1.
    let end = partition.log.log_end_offset();
    let outcome = produce::handle(&state, &request, 9, 5);
    assert_eq!(
        produced_code(&outcome.response),
        ResponseError::NotEnoughReplicas.code()
    );
    assert_eq!(partition.log.log_end_offset(), end);
    let hw = partition.log.high_watermark();
    let outcome = produce::handle(&state, &produce_request("t", 1, records(&["c"])), 9, 5);
    assert!(!outcome.failed);
    assert_eq!(partition.log.high_watermark(), hw);
}

#[test]
fn a_single_replica_keeps_the_high_watermark_at_the_log_end() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path(), &[]);
    // Led in a cluster with an ISR of one.
    let partition = led(&state, "1", &[1], &[1], 0);
    let outcome = produce::handle(&state, &produce_request("t", -1, records(&["a"])), 9, 5);
    assert!(outcome.is_ready() && !outcome.failed);
    assert_eq!(partition.log.high_watermark(), 1);
    // A single node of an earlier release (no leadership): the same.
    leader::resign(&partition, 1);
    let outcome = produce::handle(&state, &produce_request("t", -1, records(&["b"])), 9, 5);
    assert!(outcome.is_ready() && !outcome.failed);
    assert_eq!(partition.log.high_watermark(), 2);
}

fn offset_for_epoch(topic: &str, current: i32, epoch: i32) -> OffsetForLeaderEpochRequest {
    OffsetForLeaderEpochRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![OffsetForLeaderTopic::default()
            .with_topic(name(topic))
            .with_partitions(vec![OffsetForLeaderPartition::default()
                .with_partition(0)
                .with_current_leader_epoch(current)
                .with_leader_epoch(epoch)])])
}

#[test]
fn offset_for_leader_epoch_answers_from_the_epoch_cache() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path(), &[]);
    let topic = state.topics.create("t", 1, BTreeMap::new()).unwrap();
    let partition = topic.partition(0).unwrap();
    partition.log.append(&records(&["a", "b"]), 0, 5).unwrap();
    partition
        .log
        .append(&records(&["c", "d", "e"]), 3, 5)
        .unwrap();
    let answer = |topic: &str, current: i32, epoch: i32| {
        let response =
            offset_for_leader_epoch::handle(&state, &offset_for_epoch(topic, current, epoch));
        for v in 2..=4 {
            encodes(&response, v);
        }
        let p = &response.topics[0].partitions[0];
        (p.error_code, p.leader_epoch, p.end_offset)
    };
    // Epoch 0 ends where epoch 3 starts; 1 and 2 were never used here: epoch 0's end.
    assert_eq!(answer("t", -1, 0), (0, 0, 2));
    assert_eq!(answer("t", -1, 2), (0, 0, 2));
    // The latest epoch ends at the log end (not capped at the high watermark).
    assert_eq!(answer("t", -1, 3), (0, 3, 5));
    assert_eq!(answer("t", 0, 3), (0, 3, 5));
    // A single node is at epoch 0: a newer current epoch is unknown to it.
    assert_eq!(
        answer("t", 1, 3),
        (ResponseError::UnknownLeaderEpoch.code(), -1, -1)
    );
    assert_eq!(
        answer("nope", -1, 0),
        (ResponseError::UnknownTopicOrPartition.code(), -1, -1)
    );
}
