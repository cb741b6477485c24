//! Handler unit tests: the handlers called directly on a state over a temp dir, no
//! sockets, and every response encoded at every advertised version.

use std::collections::BTreeMap;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};
use sluice_storage::batch::{BatchBuilder, Compression};
use sluice_storage::Flusher;

use super::admin::{configs, producers, topics};
use super::fetch::FetchOutcome;
use super::{api_versions, fetch, init_producer_id, metadata, offsets, produce};
use crate::config::BrokerConfig;
use crate::state::BrokerState;
use crate::topics::TopicRegistry;

mod replication;

fn state(dir: &std::path::Path, props: &[(&str, &str)]) -> BrokerState {
    let props: BTreeMap<String, String> = props
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let config = BrokerConfig::from_properties(&props).unwrap();
    let flusher = Flusher::start("test").unwrap();
    let (registry, _) = TopicRegistry::load(
        dir,
        flusher,
        config.topic_defaults.clone(),
        config.flush_mode,
        true,
        crate::topics::Layout::WholeTopics,
    )
    .unwrap();
    BrokerState::for_tests(config, registry)
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_owned()))
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

fn records(values: &[&str]) -> Bytes {
    let mut b = BatchBuilder::new(Compression::None);
    for v in values {
        b.push(1_000, None, Some(v.as_bytes()), &[]);
    }
    b.build().unwrap()
}

fn produce_request(topic: &str, acks: i16, data: Bytes) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(acks)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(data))])])
}

fn fetch_request(topic: &str, offset: i64, max_wait_ms: i32) -> FetchRequest {
    FetchRequest::default()
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])])
}

fn encodes<T: Encodable>(response: &T, version: i16) {
    let mut buf = bytes::BytesMut::new();
    if let Err(e) = response.encode(&mut buf, version) {
        panic!("{} v{version}: {e}", std::any::type_name::<T>());
    }
}

#[test]
fn fetch_waits_until_data_or_final_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path(), &[]);
    state.topics.create("t", 1, BTreeMap::new()).unwrap();
    let request = fetch_request("t", 0, 500);
    let FetchOutcome::Wait(watched) = fetch::handle(&state, &request, 12, false) else {
        panic!("no data and max_wait > 0: wait");
    };
    assert_eq!(watched.len(), 1);
    let FetchOutcome::Ready(empty) = fetch::handle(&state, &request, 12, true) else {
        panic!("the final attempt answers");
    };
    assert!(empty.responses[0].partitions[0]
        .records
        .as_ref()
        .unwrap()
        .is_empty());

    let outcome = produce::handle(&state, &produce_request("t", 1, records(&["a"])), 9, 5);
    assert!(!outcome.failed && outcome.durable.is_empty());
    let FetchOutcome::Ready(data) = fetch::handle(&state, &request, 12, false) else {
        panic!("data: answer at once");
    };
    let p = &data.responses[0].partitions[0];
    assert_eq!(p.high_watermark, 1);
    assert!(!p.records.as_ref().unwrap().is_empty());
}

#[test]
fn acks_all_returns_durability_waits_only_with_flush_always() {
    let dir = tempfile::tempdir().unwrap();
    let state_always = state(dir.path(), &[("log.flush.policy", "always")]);
    state_always.topics.create("t", 1, BTreeMap::new()).unwrap();
    let outcome = produce::handle(
        &state_always,
        &produce_request("t", -1, records(&["a"])),
        9,
        5,
    );
    assert_eq!(outcome.durable.len(), 1);
    let response = block_on(produce::finish(outcome));
    assert_eq!(response.responses[0].partition_responses[0].error_code, 0);
    let outcome = produce::handle(
        &state_always,
        &produce_request("t", 1, records(&["b"])),
        9,
        5,
    );
    assert!(outcome.durable.is_empty(), "acks=1 never waits");
    drop(state_always);

    let dir = tempfile::tempdir().unwrap();
    let state_os = state(dir.path(), &[]);
    state_os.topics.create("t", 1, BTreeMap::new()).unwrap();
    let outcome = produce::handle(&state_os, &produce_request("t", -1, records(&["a"])), 9, 5);
    assert!(
        outcome.durable.is_empty(),
        "policy os: acks=all is answered at once"
    );
}

/// Polls a future to completion on this thread (the durable wait is woken by the
/// storage flusher thread, not by a runtime).
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park_timeout(std::time::Duration::from_millis(10));
    }
}

#[test]
fn min_insync_replicas_above_one_refuses_acks_all() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path(), &[]);
    let overrides = [("min.insync.replicas".to_owned(), "2".to_owned())].into();
    state.topics.create("t", 1, overrides).unwrap();
    let outcome = produce::handle(&state, &produce_request("t", -1, records(&["a"])), 9, 5);
    assert_eq!(
        outcome.response.responses[0].partition_responses[0].error_code,
        ResponseError::NotEnoughReplicas.code()
    );
    let outcome = produce::handle(&state, &produce_request("t", 1, records(&["a"])), 9, 5);
    assert!(!outcome.failed);
}

#[test]
fn every_response_encodes_at_every_advertised_version() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path(), &[]);
    state.topics.create("t", 2, BTreeMap::new()).unwrap();
    produce::handle(&state, &produce_request("t", 1, records(&["a", "b"])), 9, 5);
    let range = |key: ApiKey| {
        let (min, max) = api_versions::supported_range(key).unwrap();
        min..=max
    };
    for v in range(ApiKey::ApiVersions) {
        encodes(
            &api_versions::handle(&ApiVersionsRequest::default(), v, true),
            v,
        );
    }
    encodes(&api_versions::unsupported_version(true), 0);
    for v in range(ApiKey::Metadata) {
        let request = MetadataRequest::default()
            .with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(name("t"))),
                MetadataRequestTopic::default().with_name(Some(name("bad name"))),
            ]))
            .with_include_topic_authorized_operations(v >= 8);
        encodes(&metadata::handle(&state, &request, v), v);
    }
    for v in range(ApiKey::Produce) {
        let outcome = produce::handle(&state, &produce_request("t", 1, records(&["x"])), v, 5);
        encodes(&outcome.response, v);
        let outcome = produce::handle(&state, &produce_request("nope", 1, records(&["x"])), v, 5);
        encodes(&outcome.response, v);
    }
    for v in range(ApiKey::Fetch) {
        let FetchOutcome::Ready(r) = fetch::handle(&state, &fetch_request("t", 0, 0), v, true)
        else {
            panic!()
        };
        encodes(&r, v);
        let FetchOutcome::Ready(r) = fetch::handle(&state, &fetch_request("t", 99, 0), v, true)
        else {
            panic!()
        };
        encodes(&r, v);
    }
    for v in range(ApiKey::ListOffsets) {
        for ts in [-1, -2, -3, 0, 99_999] {
            let request = ListOffsetsRequest::default().with_topics(vec![
                kafka_protocol::messages::list_offsets_request::ListOffsetsTopic::default()
                    .with_name(name("t"))
                    .with_partitions(vec![
                        kafka_protocol::messages::list_offsets_request::ListOffsetsPartition::default()
                            .with_timestamp(ts),
                    ]),
            ]);
            encodes(&offsets::list_offsets(&state, &request, v), v);
        }
    }
    for v in range(ApiKey::DescribeConfigs) {
        let request = DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(configs::RESOURCE_TOPIC)
                .with_resource_name(s("t"))
                .with_configuration_keys(None),
            DescribeConfigsResource::default()
                .with_resource_type(configs::RESOURCE_BROKER)
                .with_resource_name(s(""))
                .with_configuration_keys(None),
            DescribeConfigsResource::default()
                .with_resource_type(configs::RESOURCE_TOPIC)
                .with_resource_name(s("missing")),
        ]);
        encodes(&configs::describe_configs(&state, &request), v);
    }
    for v in range(ApiKey::IncrementalAlterConfigs) {
        let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(configs::RESOURCE_TOPIC)
                .with_resource_name(s("t"))
                .with_configs(vec![AlterableConfig::default()
                    .with_name(s("retention.ms"))
                    .with_value(Some(s("1000")))]),
            AlterConfigsResource::default()
                .with_resource_type(configs::RESOURCE_TOPIC)
                .with_resource_name(s("missing")),
        ]);
        encodes(&configs::incremental_alter_configs(&state, &request), v);
    }
    for v in range(ApiKey::DescribeProducers) {
        use kafka_protocol::messages::describe_producers_request::TopicRequest;
        let request =
            kafka_protocol::messages::DescribeProducersRequest::default().with_topics(vec![
                TopicRequest::default()
                    .with_name(name("t"))
                    .with_partition_indexes(vec![0, 5]),
                TopicRequest::default()
                    .with_name(name("missing"))
                    .with_partition_indexes(vec![0]),
            ]);
        let response = producers::describe_producers(&state, &request);
        let codes: Vec<i16> = response
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
            .collect();
        assert_eq!(codes, vec![0, 3, 3], "{response:?}");
        encodes(&response, v);
    }
    for v in range(ApiKey::AlterConfigs) {
        let request = legacy_alter("t", &[("retention.ms", "1000")]);
        let incremental = configs::alter_as_incremental(&state, &request);
        encodes(
            &configs::alter_response(configs::incremental_alter_configs(&state, &incremental)),
            v,
        );
    }
    for v in range(ApiKey::CreateTopics) {
        let topic = |n: &str, p: i32| {
            CreatableTopic::default()
                .with_name(name(n))
                .with_num_partitions(p)
                .with_replication_factor(-1)
        };
        let request = CreateTopicsRequest::default().with_topics(vec![
            topic(&format!("c{v}"), 1),
            topic("t", 1),
            topic("z", 0),
        ]);
        encodes(&topics::create_topics(&state, &request, v), v);
    }
    for v in range(ApiKey::CreatePartitions) {
        let request = CreatePartitionsRequest::default().with_topics(vec![
            CreatePartitionsTopic::default()
                .with_name(name("t"))
                .with_count(3 + i32::from(v)),
            CreatePartitionsTopic::default()
                .with_name(name("missing"))
                .with_count(3),
        ]);
        encodes(&topics::create_partitions(&state, &request), v);
    }
    for v in range(ApiKey::DeleteRecords) {
        let request =
            DeleteRecordsRequest::default().with_topics(vec![DeleteRecordsTopic::default()
                .with_name(name("t"))
                .with_partitions(vec![
                    DeleteRecordsPartition::default().with_offset(1),
                    DeleteRecordsPartition::default()
                        .with_partition_index(9)
                        .with_offset(1),
                ])]);
        encodes(&offsets::delete_records(&state, &request), v);
    }
    for v in range(ApiKey::InitProducerId) {
        let idempotent = InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000);
        encodes(&init_producer_id::handle(&state, &idempotent), v);
        let transactional = idempotent
            .clone()
            .with_transactional_id(Some(TransactionalId(s("tx"))));
        encodes(&init_producer_id::handle(&state, &transactional), v);
    }
    for v in range(ApiKey::DeleteTopics) {
        state
            .topics
            .create(&format!("d{v}"), 1, BTreeMap::new())
            .unwrap();
        let request = if v >= 6 {
            DeleteTopicsRequest::default().with_topics(vec![
                DeleteTopicState::default().with_name(Some(name(&format!("d{v}")))),
                DeleteTopicState::default().with_name(Some(name("missing"))),
            ])
        } else {
            DeleteTopicsRequest::default()
                .with_topic_names(vec![name(&format!("d{v}")), name("missing")])
        };
        let response = topics::delete_topics(&state, &request, v);
        assert_eq!(response.responses[0].error_code, 0, "v{v}");
        encodes(&response, v);
    }
}

fn idempotent_records(producer_id: i64, epoch: i16, sequence: i32, values: &[&str]) -> Bytes {
    let mut b = BatchBuilder::new(Compression::None).producer(producer_id, epoch, sequence);
    for v in values {
        b.push(1_000, None, Some(v.as_bytes()), &[]);
    }
    b.build().unwrap()
}

#[test]
fn init_producer_id_follows_kafka() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path(), &[]);
    // The codec's default transactional id is "", not null.
    let request = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(-1)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let first = init_producer_id::handle(&state, &request);
    assert_eq!((first.error_code, first.producer_epoch), (0, 0));
    // A v3+ client that sends its id and epoch back (KIP-360) still gets a new id.
    let again = init_producer_id::handle(
        &state,
        &request
            .clone()
            .with_producer_id(first.producer_id)
            .with_producer_epoch(0),
    );
    assert_eq!(again.error_code, 0);
    assert_eq!(again.producer_epoch, 0);
    assert!(again.producer_id.0 > first.producer_id.0);

    let half = request.clone().with_producer_id(ProducerId(5));
    let answer = init_producer_id::handle(&state, &half);
    assert_eq!(answer.error_code, ResponseError::InvalidRequest.code());
    assert_eq!((answer.producer_id.0, answer.producer_epoch), (-1, -1));
    let half = request.clone().with_producer_epoch(3);
    assert_eq!(
        init_producer_id::handle(&state, &half).error_code,
        ResponseError::InvalidRequest.code()
    );
    let empty = request
        .clone()
        .with_transactional_id(Some(TransactionalId(s(""))));
    assert_eq!(
        init_producer_id::handle(&state, &empty).error_code,
        ResponseError::InvalidRequest.code()
    );
    let transactional = request.with_transactional_id(Some(TransactionalId(s("tx-1"))));
    assert_eq!(
        init_producer_id::handle(&state, &transactional).error_code,
        ResponseError::TransactionalIdAuthorizationFailed.code(),
        "transactions are refused with an error clients treat as fatal at once"
    );
}

#[test]
fn produce_applies_the_sequence_rules() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path(), &[]);
    state.topics.create("t", 1, BTreeMap::new()).unwrap();
    let produce = |data: Bytes| {
        let outcome = produce::handle(&state, &produce_request("t", -1, data), 9, 5);
        let p = &outcome.response.responses[0].partition_responses[0];
        (p.error_code, p.base_offset)
    };
    assert_eq!(produce(idempotent_records(7, 0, 0, &["a", "b"])), (0, 0));
    assert_eq!(produce(idempotent_records(7, 0, 2, &["c"])), (0, 2));
    // The retry of the first batch: its original offset, nothing appended.
    assert_eq!(produce(idempotent_records(7, 0, 0, &["a", "b"])), (0, 0));
    let topic = state.topics.get("t").unwrap();
    assert_eq!(topic.partition(0).unwrap().log.log_end_offset(), 3);
    assert_eq!(
        produce(idempotent_records(7, 0, 5, &["gap"])),
        (ResponseError::OutOfOrderSequenceNumber.code(), -1)
    );
    assert_eq!(produce(idempotent_records(7, 1, 0, &["bumped"])), (0, 3));
    assert_eq!(
        produce(idempotent_records(7, 0, 3, &["stale"])),
        (ResponseError::InvalidProducerEpoch.code(), -1)
    );
    assert_eq!(topic.partition(0).unwrap().log.log_end_offset(), 4);

    // Transactional batches are refused: there are no transactions to commit them.
    let mut b = BatchBuilder::new(Compression::None)
        .producer(9, 0, 0)
        .transactional(true);
    b.push(1_000, None, Some(b"tx"), &[]);
    assert_eq!(
        produce(b.build().unwrap()),
        (ResponseError::TransactionalIdAuthorizationFailed.code(), -1)
    );
    assert_eq!(topic.partition(0).unwrap().log.log_end_offset(), 4);
}

fn legacy_alter(
    topic: &str,
    configs: &[(&str, &str)],
) -> kafka_protocol::messages::AlterConfigsRequest {
    use kafka_protocol::messages::alter_configs_request::{AlterConfigsResource, AlterableConfig};
    kafka_protocol::messages::AlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(configs::RESOURCE_TOPIC)
            .with_resource_name(s(topic))
            .with_configs(
                configs
                    .iter()
                    .map(|(k, v)| {
                        AlterableConfig::default()
                            .with_name(s(k))
                            .with_value(Some(s(v)))
                    })
                    .collect(),
            ),
    ])
}

#[test]
fn alter_configs_replaces_every_override_of_a_topic() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path(), &[]);
    let overrides: BTreeMap<String, String> =
        [("retention.ms", "1000"), ("max.message.bytes", "2000")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    state.topics.create("r", 1, overrides).unwrap();
    let alter = |configs: &[(&str, &str)]| {
        let incremental = configs::alter_as_incremental(&state, &legacy_alter("r", configs));
        configs::alter_response(configs::incremental_alter_configs(&state, &incremental))
    };
    let answer = alter(&[("segment.bytes", "1048576")]);
    assert_eq!(answer.responses[0].error_code, 0, "{answer:?}");
    let expected: BTreeMap<String, String> =
        [("segment.bytes".to_owned(), "1048576".to_owned())].into();
    assert_eq!(state.topics.get("r").unwrap().overrides(), expected);
    // Refused as a whole: nothing changes.
    let answer = alter(&[("retention.ms", "forever")]);
    assert_eq!(
        answer.responses[0].error_code,
        ResponseError::InvalidConfig.code()
    );
    assert_eq!(state.topics.get("r").unwrap().overrides(), expected);
    // Everything named nothing: back to the defaults.
    assert_eq!(alter(&[]).responses[0].error_code, 0);
    assert!(state.topics.get("r").unwrap().overrides().is_empty());
}

#[test]
fn partition_reassignments_answer_what_a_single_node_can_do() {
    use super::admin::reassignments;
    use kafka_protocol::messages::alter_partition_reassignments_request::{
        ReassignablePartition, ReassignableTopic,
    };
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path(), &[]);
    state.topics.create("moved", 5, BTreeMap::new()).unwrap();
    let target = |partition: i32, replicas: Option<Vec<i32>>| {
        ReassignablePartition::default()
            .with_partition_index(partition)
            .with_replicas(replicas.map(|r| r.into_iter().map(BrokerId).collect()))
    };
    let request = AlterPartitionReassignmentsRequest::default().with_topics(vec![
        ReassignableTopic::default()
            .with_name(name("moved"))
            .with_partitions(vec![
                target(0, Some(vec![state.node_id])),
                target(1, None),
                target(2, Some(vec![state.node_id, state.node_id])),
                target(3, Some(vec![])),
                target(4, Some(vec![state.node_id + 1])),
                target(7, Some(vec![state.node_id])),
                target(0, Some(vec![state.node_id])),
            ]),
        ReassignableTopic::default()
            .with_name(name("nosuch"))
            .with_partitions(vec![target(0, Some(vec![state.node_id]))]),
    ]);
    let response = block_on(reassignments::alter(&state, &request));
    let answers: Vec<(i16, String)> = response
        .responses
        .iter()
        .flat_map(|t| &t.partitions)
        .map(|p| {
            (
                p.error_code,
                p.error_message.as_deref().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let other = state.node_id + 1;
    assert_eq!(
        answers,
        vec![
            (0, String::new()),
            (
                ResponseError::NoReassignmentInProgress.code(),
                "No partition reassignment is in progress.".to_owned()
            ),
            (
                ResponseError::InvalidReplicaAssignment.code(),
                format!(
                    "The manual partition assignment includes the broker {} more than once.",
                    state.node_id
                )
            ),
            (
                ResponseError::InvalidReplicaAssignment.code(),
                "The manual partition assignment includes an empty replica list.".to_owned()
            ),
            (
                ResponseError::InvalidReplicaAssignment.code(),
                format!("The manual partition assignment includes broker {other}, but no such broker is registered.")
            ),
            (
                ResponseError::UnknownTopicOrPartition.code(),
                "Unable to find partition moved:7.".to_owned()
            ),
            (
                ResponseError::InvalidRequest.code(),
                "Partition moved-0 is listed more than once.".to_owned()
            ),
            (
                ResponseError::UnknownTopicOrPartition.code(),
                "Unable to find a topic named nosuch.".to_owned()
            ),
        ]
    );
    for version in 0..=1 {
        encodes(&response, version);
    }
    let list = kafka_protocol::messages::ListPartitionReassignmentsRequest::default();
    assert!(reassignments::list(&state, &list).topics.is_empty());
}
