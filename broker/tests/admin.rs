//! Topic and config administration over the wire: Metadata with auto-creation,
//! CreateTopics, DeleteTopics, CreatePartitions, DescribeConfigs, IncrementalAlterConfigs.

mod common;

use common::{batch, name, Client};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableReplicaAssignment, CreatableTopic};
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    BrokerId, CreatePartitionsRequest, CreateTopicsRequest, DeleteRecordsRequest,
    DeleteTopicsRequest, DescribeConfigsRequest, IncrementalAlterConfigsRequest, MetadataRequest,
    MetadataResponse,
};
use kafka_protocol::protocol::StrBytes;

fn metadata_for(topics: &[&str], allow_auto_create: bool) -> MetadataRequest {
    MetadataRequest::default()
        .with_topics(Some(
            topics
                .iter()
                .map(|t| MetadataRequestTopic::default().with_name(Some(name(t))))
                .collect(),
        ))
        .with_allow_auto_topic_creation(allow_auto_create)
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_describes_the_node_and_auto_creates_topics() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::start(dir.path(), &[("num.partitions", "3")]).await;
    let addr = broker.local_addr();
    let mut client = Client::connect(addr).await;
    let m: MetadataResponse = client.send(12, &metadata_for(&["auto"], false)).await;
    assert_eq!(
        m.topics[0].error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );
    assert!(broker.state().topics.get("auto").is_none());

    let m: MetadataResponse = client
        .send(12, &metadata_for(&["auto", "bad/name"], true))
        .await;
    assert_eq!(m.brokers.len(), 1);
    assert_eq!(m.brokers[0].node_id, BrokerId(1));
    assert_eq!(m.brokers[0].host.as_str(), "127.0.0.1");
    assert_eq!(m.brokers[0].port, addr.port() as i32);
    assert_eq!(m.controller_id, BrokerId(1));
    assert!(m.cluster_id.is_some());
    let t = &m.topics[0];
    assert_eq!(t.error_code, 0);
    assert!(!t.topic_id.is_nil());
    assert_eq!(t.partitions.len(), 3);
    for (i, p) in t.partitions.iter().enumerate() {
        assert_eq!(p.partition_index, i as i32);
        assert_eq!(p.leader_id, BrokerId(1));
        assert_eq!(p.leader_epoch, 0);
        assert_eq!(p.replica_nodes, vec![BrokerId(1)]);
        assert_eq!(p.isr_nodes, vec![BrokerId(1)]);
    }
    assert_eq!(
        m.topics[1].error_code,
        ResponseError::InvalidTopicException.code()
    );
    // Every Metadata version answers; v0 with an empty list means every topic.
    for version in 0..=13 {
        let request = if version == 0 {
            MetadataRequest::default().with_topics(Some(vec![]))
        } else {
            MetadataRequest::default().with_topics(None)
        };
        let m = client.send(version, &request).await;
        let names: Vec<_> = m
            .topics
            .iter()
            .filter_map(|t| t.name.as_ref().map(|n| n.0.as_str()))
            .collect();
        // The group coordinator's internal topic exists from the start.
        assert_eq!(names, ["__consumer_offsets", "auto"], "v{version}");
    }
    // By topic id (v12+).
    let id = t.topic_id;
    let by_id = MetadataRequest::default().with_topics(Some(vec![MetadataRequestTopic::default()
        .with_name(None)
        .with_topic_id(id)]));
    let m = client.send(12, &by_id).await;
    assert_eq!(
        m.topics[0].name.as_ref().map(|n| n.0.as_str()),
        Some("auto")
    );
    broker.shutdown().await.unwrap();

    // Disabled by the broker: no auto-creation even when the client allows it.
    let dir = tempfile::tempdir().unwrap();
    let broker = common::start(dir.path(), &[("auto.create.topics.enable", "false")]).await;
    let mut client = Client::connect(broker.local_addr()).await;
    let m = client.send(12, &metadata_for(&["auto"], true)).await;
    assert_eq!(
        m.topics[0].error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_topics_validates_like_kafka() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::start(dir.path(), &[]).await;
    let mut client = Client::connect(broker.local_addr()).await;
    let r = client
        .create_topic(
            "orders",
            6,
            &[("retention.ms", "60000"), ("cleanup.policy", "delete")],
        )
        .await;
    let t = &r.topics[0];
    assert_eq!(t.error_code, 0, "{:?}", t.error_message);
    assert_eq!(t.num_partitions, 6);
    assert_eq!(t.replication_factor, 1);
    assert!(!t.topic_id.is_nil());
    let configs = t.configs.as_ref().unwrap();
    let retention = configs
        .iter()
        .find(|c| c.name.as_str() == "retention.ms")
        .unwrap();
    assert_eq!(retention.value.as_ref().unwrap().as_str(), "60000");
    assert_eq!(retention.config_source, 1, "DYNAMIC_TOPIC_CONFIG");
    for p in 0..6 {
        let d = dir.path().join(format!("orders-{p}"));
        let meta = std::fs::read_to_string(d.join("partition.metadata")).unwrap();
        assert!(meta.starts_with("version: 0\ntopic_id: "), "{meta}");
    }

    let err = |r: &kafka_protocol::messages::CreateTopicsResponse| r.topics[0].error_code;
    assert_eq!(
        err(&client.create_topic("orders", 1, &[]).await),
        ResponseError::TopicAlreadyExists.code()
    );
    for bad in ["", ".", "..", "a b", "x/y", &"z".repeat(250)] {
        assert_eq!(
            err(&client.create_topic(bad, 1, &[]).await),
            ResponseError::InvalidTopicException.code(),
            "{bad:?}"
        );
    }
    assert_eq!(
        err(&client.create_topic("zero", 0, &[]).await),
        ResponseError::InvalidPartitions.code()
    );
    assert_eq!(
        err(&client
            .create_topic("cfg", 1, &[("no.such.config", "1")])
            .await),
        ResponseError::InvalidConfig.code()
    );
    assert_eq!(
        err(&client
            .create_topic("cfg", 1, &[("retention.ms", "soon")])
            .await),
        ResponseError::InvalidConfig.code()
    );

    let topic = |n: &str| {
        CreatableTopic::default()
            .with_name(name(n))
            .with_num_partitions(1)
            .with_replication_factor(3)
    };
    let r = client
        .send(
            7,
            &CreateTopicsRequest::default().with_topics(vec![topic("rf")]),
        )
        .await;
    assert_eq!(
        r.topics[0].error_code,
        ResponseError::InvalidReplicationFactor.code()
    );
    // Kafka's message: a cluster of one cannot keep three replicas.
    assert!(
        r.topics[0]
            .error_message
            .as_deref()
            .is_some_and(|m| m.contains("only 1 broker(s) are registered")),
        "{:?}",
        r.topics[0].error_message
    );
    // Duplicates in one request.
    let one = |n: &str| {
        CreatableTopic::default()
            .with_name(name(n))
            .with_num_partitions(1)
            .with_replication_factor(1)
    };
    let r = client
        .send(
            7,
            &CreateTopicsRequest::default().with_topics(vec![one("dup"), one("dup")]),
        )
        .await;
    assert!(r
        .topics
        .iter()
        .all(|t| t.error_code == ResponseError::InvalidRequest.code()));
    // Manual assignment to this node.
    let assigned = CreatableTopic::default()
        .with_name(name("assigned"))
        .with_num_partitions(-1)
        .with_replication_factor(-1)
        .with_assignments(
            (0..2)
                .map(|p| {
                    CreatableReplicaAssignment::default()
                        .with_partition_index(p)
                        .with_broker_ids(vec![BrokerId(1)])
                })
                .collect(),
        );
    let r = client
        .send(
            7,
            &CreateTopicsRequest::default().with_topics(vec![assigned]),
        )
        .await;
    assert_eq!(r.topics[0].error_code, 0);
    assert_eq!(r.topics[0].num_partitions, 2);
    // validate_only creates nothing.
    let r = client
        .send(
            7,
            &CreateTopicsRequest::default()
                .with_topics(vec![one("dry")])
                .with_validate_only(true),
        )
        .await;
    assert_eq!(r.topics[0].error_code, 0);
    assert!(broker.state().topics.get("dry").is_none());
    // Every version answers.
    for version in 2..=7 {
        let r = client
            .send(
                version,
                &CreateTopicsRequest::default().with_topics(vec![one(&format!("v{version}"))]),
            )
            .await;
        assert_eq!(r.topics[0].error_code, 0, "v{version}");
    }
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_topics_by_name_and_id_removes_files() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::start(dir.path(), &[]).await;
    let mut client = Client::connect(broker.local_addr()).await;
    client
        .create_topic("gone", 2, &[("retention.ms", "1000")])
        .await;
    let id = client.create_topic("gone-by-id", 1, &[]).await.topics[0].topic_id;
    client.produce("gone", 0, batch(&[(None, "x")])).await;
    assert!(dir.path().join("gone-1").exists());

    let r = client
        .send(
            5,
            &DeleteTopicsRequest::default()
                .with_topic_names(vec![name("gone"), name("never")])
                .with_timeout_ms(5000),
        )
        .await;
    assert_eq!(r.responses[0].error_code, 0);
    assert_eq!(
        r.responses[1].error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );
    assert!(!dir.path().join("gone-0").exists());
    assert!(!dir.path().join("gone-1").exists());
    let r = client
        .send(
            6,
            &DeleteTopicsRequest::default().with_topics(vec![
                DeleteTopicState::default().with_topic_id(id),
                DeleteTopicState::default().with_topic_id(uuid::Uuid::new_v4()),
            ]),
        )
        .await;
    assert_eq!(r.responses[0].error_code, 0);
    assert_eq!(
        r.responses[0].name.as_ref().map(|n| n.0.as_str()),
        Some("gone-by-id")
    );
    assert_eq!(
        r.responses[1].error_code,
        ResponseError::UnknownTopicId.code()
    );
    assert!(!dir.path().join("gone-by-id-0").exists());
    // Producing to the deleted topic fails; recreating it starts empty with a new id.
    assert_eq!(
        client.produce("gone", 0, batch(&[(None, "x")])).await.0,
        ResponseError::UnknownTopicOrPartition.code()
    );
    let again = client.create_topic("gone", 1, &[]).await;
    assert_eq!(again.topics[0].error_code, 0);
    assert_eq!(client.fetch("gone", 0, 0).await.high_watermark, 0);
    // The deleted topic's configs are gone with it.
    let configs = client
        .send(
            4,
            &DescribeConfigsRequest::default().with_resources(vec![
                DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s("gone"))
                    .with_configuration_keys(Some(vec![s("retention.ms")])),
            ]),
        )
        .await;
    let retention = &configs.results[0].configs[0];
    assert_eq!(
        retention.value.as_ref().map(|v| v.as_str()),
        Some("604800000")
    );
    assert_eq!(retention.config_source, 5, "the broker default");
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_with_the_longest_legal_name_lives_and_dies() {
    // 249 characters is Kafka's limit; the delete rename used to exceed the 255-byte
    // file name limit (error 56).
    let long = format!("{}-end", "n".repeat(245));
    assert_eq!(long.len(), 249);
    let dir = tempfile::tempdir().unwrap();
    let broker = common::start(dir.path(), &[]).await;
    let mut client = Client::connect(broker.local_addr()).await;
    let created = client.create_topic(&long, 2, &[]).await;
    assert_eq!(created.topics[0].error_code, 0);
    for p in 0..2 {
        assert_eq!(
            client.produce(&long, p, batch(&[(None, "v")])).await,
            (0, 0)
        );
    }
    drop(client);
    broker.shutdown().await.unwrap();

    let broker = common::start(dir.path(), &[]).await;
    let mut client = Client::connect(broker.local_addr()).await;
    assert_eq!(client.fetch(&long, 1, 0).await.high_watermark, 1);
    let r = client
        .send(
            5,
            &DeleteTopicsRequest::default()
                .with_topic_names(vec![name(&long)])
                .with_timeout_ms(5000),
        )
        .await;
    assert_eq!(r.responses[0].error_code, 0, "{:?}", r.responses[0]);
    let left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("nnnn"))
        .collect();
    assert!(left.is_empty(), "nothing of the topic remains: {left:?}");
    drop(client);
    broker.shutdown().await.unwrap();

    let broker = common::start(dir.path(), &[]).await;
    assert!(broker.state().topics.get(&long).is_none());
    let mut client = Client::connect(broker.local_addr()).await;
    let again = client.create_topic(&long, 1, &[]).await;
    assert_eq!(again.topics[0].error_code, 0, "the name can be used again");
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_offsets_topic_cannot_be_deleted_or_resized() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::start(dir.path(), &[]).await;
    let mut client = Client::connect(broker.local_addr()).await;
    let r = client
        .send(
            5,
            &DeleteTopicsRequest::default()
                .with_topic_names(vec![name("__consumer_offsets")])
                .with_timeout_ms(5000),
        )
        .await;
    assert_eq!(
        r.responses[0].error_code,
        ResponseError::InvalidRequest.code()
    );
    let grow =
        CreatePartitionsRequest::default().with_topics(vec![CreatePartitionsTopic::default()
            .with_name(name("__consumer_offsets"))
            .with_count(60)]);
    assert_eq!(
        client.send(3, &grow).await.results[0].error_code,
        ResponseError::InvalidRequest.code()
    );
    assert!(broker.state().topics.get("__consumer_offsets").is_some());
    let delete = DeleteRecordsRequest::default().with_topics(vec![DeleteRecordsTopic::default()
        .with_name(name("__consumer_offsets"))
        .with_partitions(vec![DeleteRecordsPartition::default()
            .with_partition_index(0)
            .with_offset(-1)])]);
    assert_eq!(
        client.send(2, &delete).await.topics[0].partitions[0].error_code,
        ResponseError::InvalidTopicException.code()
    );
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_partitions_grows_topics() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::start(dir.path(), &[]).await;
    let mut client = Client::connect(broker.local_addr()).await;
    client.create_topic("grow", 2, &[]).await;
    let request = |count: i32, validate_only: bool| {
        CreatePartitionsRequest::default()
            .with_topics(vec![CreatePartitionsTopic::default()
                .with_name(name("grow"))
                .with_count(count)
                // Null, not empty: Kafka refuses an empty list for a growing count.
                .with_assignments(None)])
            .with_timeout_ms(5000)
            .with_validate_only(validate_only)
    };
    assert_eq!(
        client.send(3, &request(5, true)).await.results[0].error_code,
        0
    );
    assert_eq!(
        broker.state().topics.get("grow").unwrap().partition_count(),
        2
    );
    assert_eq!(
        client.send(3, &request(5, false)).await.results[0].error_code,
        0
    );
    assert_eq!(
        client.send(0, &request(5, false)).await.results[0].error_code,
        ResponseError::InvalidPartitions.code()
    );
    assert_eq!(
        client.send(1, &request(3, false)).await.results[0].error_code,
        ResponseError::InvalidPartitions.code()
    );
    let m = client.send(12, &metadata_for(&["grow"], false)).await;
    assert_eq!(m.topics[0].partitions.len(), 5);
    assert_eq!(
        client.produce("grow", 4, batch(&[(None, "new")])).await,
        (0, 0)
    );
    let unknown =
        CreatePartitionsRequest::default().with_topics(vec![CreatePartitionsTopic::default()
            .with_name(name("nope"))
            .with_count(3)]);
    assert_eq!(
        client.send(3, &unknown).await.results[0].error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configs_are_described_altered_applied_and_persisted() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::start(dir.path(), &[("log.segment.bytes", "2000000")]).await;
    let mut client = Client::connect(broker.local_addr()).await;
    client
        .create_topic("conf", 1, &[("retention.ms", "5000")])
        .await;

    let describe = |keys: Option<Vec<&str>>| {
        DescribeConfigsRequest::default()
            .with_resources(vec![DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s("conf"))
                .with_configuration_keys(keys.map(|k| k.into_iter().map(s).collect()))])
            .with_include_synonyms(true)
            .with_include_documentation(true)
    };
    let r = client.send(4, &describe(None)).await;
    let configs = &r.results[0].configs;
    let get = |n: &str| {
        configs
            .iter()
            .find(|c| c.name.as_str() == n)
            .unwrap()
            .clone()
    };
    assert_eq!(get("retention.ms").value.unwrap().as_str(), "5000");
    assert_eq!(get("retention.ms").config_source, 1);
    assert_eq!(get("segment.bytes").value.unwrap().as_str(), "2000000");
    assert_eq!(
        get("segment.bytes").config_source,
        4,
        "STATIC_BROKER_CONFIG"
    );
    assert_eq!(get("cleanup.policy").config_source, 5, "DEFAULT_CONFIG");
    assert_eq!(get("retention.ms").synonyms.len(), 2);
    assert!(get("retention.ms").documentation.is_some());
    let r = client
        .send(3, &describe(Some(vec!["cleanup.policy"])))
        .await;
    assert_eq!(r.results[0].configs.len(), 1);

    let alter = |configs: Vec<(&str, i8, Option<&str>)>, validate_only: bool| {
        IncrementalAlterConfigsRequest::default()
            .with_resources(vec![AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s("conf"))
                .with_configs(
                    configs
                        .into_iter()
                        .map(|(n, op, v)| {
                            AlterableConfig::default()
                                .with_name(s(n))
                                .with_config_operation(op)
                                .with_value(v.map(s))
                        })
                        .collect(),
                )])
            .with_validate_only(validate_only)
    };
    let r = client
        .send(
            1,
            &alter(
                vec![
                    ("retention.ms", 1, None),
                    ("max.message.bytes", 0, Some("100")),
                ],
                false,
            ),
        )
        .await;
    assert_eq!(
        r.responses[0].error_code, 0,
        "{:?}",
        r.responses[0].error_message
    );
    let r = client
        .send(
            0,
            &alter(vec![("cleanup.policy", 2, Some("compact"))], false),
        )
        .await;
    assert_eq!(r.responses[0].error_code, 0);
    let r = client
        .send(1, &alter(vec![("nope", 0, Some("1"))], false))
        .await;
    assert_eq!(
        r.responses[0].error_code,
        ResponseError::InvalidConfig.code()
    );
    let r = client
        .send(1, &alter(vec![("segment.ms", 0, Some("-5"))], false))
        .await;
    assert_eq!(
        r.responses[0].error_code,
        ResponseError::InvalidConfig.code()
    );
    let r = client
        .send(1, &alter(vec![("segment.ms", 0, Some("1000"))], true))
        .await;
    assert_eq!(r.responses[0].error_code, 0);

    // Applied to the log: a batch over the new max.message.bytes is refused.
    let big = batch(&[(None, &"x".repeat(200))]);
    assert_eq!(
        client.produce("conf", 0, big).await.0,
        ResponseError::MessageTooLarge.code()
    );
    let r = client.send(4, &describe(None)).await;
    let configs = &r.results[0].configs;
    let get = |n: &str| {
        configs
            .iter()
            .find(|c| c.name.as_str() == n)
            .unwrap()
            .clone()
    };
    assert_eq!(
        get("retention.ms").value.unwrap().as_str(),
        (7 * 24 * 3_600_000i64).to_string()
    );
    assert_eq!(
        get("cleanup.policy").value.unwrap().as_str(),
        "compact,delete"
    );
    assert_eq!(
        get("segment.ms").config_source,
        5,
        "validate_only changed nothing"
    );

    // Broker configs: the dynamic ones writable, the others read-only (see
    // `dynamic_config`; the dynamic path is tested in restart.rs).
    let broker_describe =
        DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(4)
            .with_resource_name(s("1"))
            .with_configuration_keys(None)]);
    let r = client.send(4, &broker_describe).await;
    assert_eq!(r.results[0].error_code, 0);
    let seg = r.results[0]
        .configs
        .iter()
        .find(|c| c.name.as_str() == "log.segment.bytes")
        .unwrap();
    assert_eq!(seg.value.as_ref().unwrap().as_str(), "2000000");
    assert!(
        !seg.read_only,
        "log.segment.bytes is a dynamic broker config"
    );
    let partitions = r.results[0]
        .configs
        .iter()
        .find(|c| c.name.as_str() == "num.partitions")
        .unwrap();
    assert!(partitions.read_only, "num.partitions is not");
    let r = client
        .send(
            1,
            &IncrementalAlterConfigsRequest::default().with_resources(vec![
                AlterConfigsResource::default()
                    .with_resource_type(4)
                    .with_resource_name(s("1"))
                    .with_configs(vec![AlterableConfig::default()
                        .with_name(s("num.partitions"))
                        .with_value(Some(s("5")))]),
            ]),
        )
        .await;
    assert_eq!(
        r.responses[0].error_code,
        ResponseError::InvalidRequest.code()
    );
    assert_eq!(
        r.responses[0].error_message.as_deref(),
        Some("Cannot update these configs dynamically: [num.partitions]")
    );
    broker.shutdown().await.unwrap();

    // Overrides survive a restart.
    let broker = common::start(dir.path(), &[]).await;
    let topic = broker.state().topics.get("conf").unwrap();
    assert_eq!(topic.config().max_message_bytes, 100);
    assert_eq!(topic.config().cleanup_policy, "compact,delete");
    broker.shutdown().await.unwrap();
}

/// `min.insync.replicas` and `unclean.leader.election.enable`: set at create, altered by
/// IncrementalAlterConfigs and described like any topic config, with their defaults
/// (1 and false, Kafka's) from the broker; values Kafka refuses are INVALID_CONFIG.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_configs_are_set_altered_and_described() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::start(dir.path(), &[]).await;
    let mut client = Client::connect(broker.local_addr()).await;
    let created = client
        .create_topic(
            "isr",
            1,
            &[
                ("min.insync.replicas", "1"),
                ("unclean.leader.election.enable", "true"),
            ],
        )
        .await;
    assert_eq!(created.topics[0].error_code, 0, "{:?}", created.topics[0]);
    for (key, bad) in [
        ("min.insync.replicas", "0"),
        ("unclean.leader.election.enable", "maybe"),
    ] {
        let refused = client.create_topic("isr-bad", 1, &[(key, bad)]).await;
        assert_eq!(
            refused.topics[0].error_code,
            ResponseError::InvalidConfig.code(),
            "{key}={bad}"
        );
    }
    assert_eq!(
        client.create_topic("plain", 1, &[]).await.topics[0].error_code,
        0
    );

    let describe = |topic: &str| {
        DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(s(topic))
            .with_configuration_keys(Some(vec![
                s("min.insync.replicas"),
                s("unclean.leader.election.enable"),
            ]))])
    };
    // (value, source) per key: 1 is a topic override, 5 Kafka's default.
    let described = |r: &kafka_protocol::messages::DescribeConfigsResponse| {
        let mut out: Vec<(String, String, i8)> = r.results[0]
            .configs
            .iter()
            .map(|c| {
                (
                    c.name.to_string(),
                    c.value.as_ref().map(|v| v.to_string()).unwrap_or_default(),
                    c.config_source,
                )
            })
            .collect();
        out.sort();
        out
    };
    let r = client.send(4, &describe("isr")).await;
    assert_eq!(
        described(&r),
        vec![
            ("min.insync.replicas".into(), "1".into(), 1),
            ("unclean.leader.election.enable".into(), "true".into(), 1),
        ]
    );
    let r = client.send(4, &describe("plain")).await;
    assert_eq!(
        described(&r),
        vec![
            ("min.insync.replicas".into(), "1".into(), 5),
            ("unclean.leader.election.enable".into(), "false".into(), 5),
        ]
    );

    let alter = |key: &str, value: &str| {
        IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s("isr"))
                .with_configs(vec![AlterableConfig::default()
                    .with_name(s(key))
                    .with_config_operation(0)
                    .with_value(Some(s(value)))]),
        ])
    };
    let r = client.send(1, &alter("min.insync.replicas", "0")).await;
    assert_eq!(
        r.responses[0].error_code,
        ResponseError::InvalidConfig.code()
    );
    let r = client.send(1, &alter("min.insync.replicas", "2")).await;
    assert_eq!(r.responses[0].error_code, 0, "{:?}", r.responses[0]);
    let r = client
        .send(1, &alter("unclean.leader.election.enable", "false"))
        .await;
    assert_eq!(r.responses[0].error_code, 0, "{:?}", r.responses[0]);
    let r = client.send(4, &describe("isr")).await;
    assert_eq!(
        described(&r),
        vec![
            ("min.insync.replicas".into(), "2".into(), 1),
            ("unclean.leader.election.enable".into(), "false".into(), 1),
        ]
    );
    broker.shutdown().await.unwrap();
}

/// DescribeLogDirs: the data directory with the size of every replica held here, or of
/// the partitions asked for (ones not held are left out), and the filesystem's bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_log_dirs_lists_the_replicas_with_their_sizes() {
    use kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
    use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse};
    let dir = tempfile::tempdir().unwrap();
    let broker = common::start(dir.path(), &[]).await;
    let mut client = Client::connect(broker.local_addr()).await;
    assert_eq!(
        client.create_topic("sized", 2, &[]).await.topics[0].error_code,
        0
    );
    let (code, _) = client
        .produce("sized", 1, batch(&[(None, "a record"), (None, "another")]))
        .await;
    assert_eq!(code, 0);

    let all: DescribeLogDirsResponse = client
        .send(4, &DescribeLogDirsRequest::default().with_topics(None))
        .await;
    assert_eq!(all.error_code, 0);
    assert_eq!(all.results.len(), 1, "one data directory");
    let result = &all.results[0];
    assert_eq!(result.error_code, 0);
    assert!(result
        .log_dir
        .as_str()
        .starts_with(&*dir.path().to_string_lossy()));
    assert!(
        result.total_bytes > 0 && result.usable_bytes > 0,
        "{result:?}"
    );
    let sized = result
        .topics
        .iter()
        .find(|t| t.name.0.as_str() == "sized")
        .expect("the topic");
    let sizes: Vec<(i32, i64)> = sized
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.partition_size))
        .collect();
    assert_eq!(sizes.len(), 2, "{sizes:?}");
    assert_eq!((sizes[0].0, sizes[1].0), (0, 1), "{sizes:?}");
    assert!(
        sizes[1].1 > sizes[0].1,
        "records only in partition 1: {sizes:?}"
    );
    assert!(sized
        .partitions
        .iter()
        .all(|p| p.offset_lag == 0 && !p.is_future_key));

    let some: DescribeLogDirsResponse = client
        .send(
            2,
            &DescribeLogDirsRequest::default().with_topics(Some(vec![
                DescribableLogDirTopic::default()
                    .with_topic(name("sized"))
                    .with_partitions(vec![1, 7]),
                DescribableLogDirTopic::default()
                    .with_topic(name("absent"))
                    .with_partitions(vec![0]),
            ])),
        )
        .await;
    let topics = &some.results[0].topics;
    assert_eq!(topics.len(), 1, "{topics:?}");
    let only: Vec<i32> = topics[0]
        .partitions
        .iter()
        .map(|p| p.partition_index)
        .collect();
    assert_eq!(only, vec![1]);
    broker.shutdown().await.unwrap();
}
