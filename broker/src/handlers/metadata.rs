//! Metadata: this broker, the cluster id, and topics with their partitions.
//!
//! A single-node cluster: every partition's leader, replica set and ISR is this node, at
//! leader epoch 0, and this node is the controller. Unknown topics are created here when
//! `auto.create.topics.enable` is on and the request allows it (creation writes files,
//! so the server runs this handler on a blocking thread).

use std::collections::BTreeMap;
use std::collections::HashSet;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use crate::state::BrokerState;
use crate::topics::{validate_topic_name, Topic};

/// Kafka's "authorized operations not requested" marker.
pub(crate) const OPERATIONS_NOT_REQUESTED: i32 = i32::MIN;

/// Topic operations a client may perform (no authorizer: all of them). Bits of Kafka's
/// AclOperation codes READ(3) WRITE(4) CREATE(5) DELETE(6) ALTER(7) DESCRIBE(8)
/// DESCRIBE_CONFIGS(10) ALTER_CONFIGS(11).
pub(crate) const ALL_TOPIC_OPERATIONS: i32 =
    (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 10) | (1 << 11);

/// How a Metadata request names one topic.
pub(crate) enum Wanted {
    Name(String),
    Id(Uuid),
    Invalid,
}

impl Wanted {
    /// v10+ may name a topic by id, with a null (or empty) name; a name wins when given.
    pub(crate) fn of(topic: &MetadataRequestTopic) -> Wanted {
        match (&topic.name, topic.topic_id) {
            (Some(name), _) if !name.0.is_empty() => Wanted::Name(name.0.to_string()),
            (_, id) if !id.is_nil() => Wanted::Id(id),
            (Some(name), _) => Wanted::Name(name.0.to_string()),
            (None, _) => Wanted::Invalid,
        }
    }
}

/// Answers a Metadata request (may create topics: blocking).
pub fn handle(state: &BrokerState, request: &MetadataRequest, version: i16) -> MetadataResponse {
    let node = BrokerId(state.node_id);
    let (host, port) = state.advertised();
    let broker = MetadataResponseBroker::default()
        .with_node_id(node)
        .with_host(StrBytes::from_string(host))
        .with_port(port);
    let include_ops = version >= 8 && request.include_topic_authorized_operations;

    let mut topics = Vec::new();
    let all = match &request.topics {
        None => true,
        // In v0 an empty list means every topic (there is no null).
        Some(list) => version == 0 && list.is_empty(),
    };
    if all {
        for topic in state.topics.list() {
            topics.push(describe_topic(state, &topic, include_ops));
        }
    } else {
        let auto_create = state.config.auto_create_topics && request.allow_auto_topic_creation;
        let mut seen = HashSet::new();
        for wanted in request.topics.iter().flatten() {
            let entry = match Wanted::of(wanted) {
                Wanted::Name(name) => {
                    if !seen.insert(name.clone()) {
                        continue;
                    }
                    lookup_or_create(state, &name, auto_create, include_ops)
                }
                Wanted::Id(id) => match state.topics.get_by_id(id) {
                    Some(topic) => describe_topic(state, &topic, include_ops),
                    None => MetadataResponseTopic::default()
                        .with_error_code(ResponseError::UnknownTopicId.code())
                        .with_topic_id(id)
                        .with_topic_authorized_operations(OPERATIONS_NOT_REQUESTED),
                },
                Wanted::Invalid => MetadataResponseTopic::default()
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_topic_authorized_operations(OPERATIONS_NOT_REQUESTED),
            };
            topics.push(entry);
        }
    }

    MetadataResponse::default()
        .with_brokers(vec![broker])
        .with_cluster_id(Some(StrBytes::from_string(state.cluster_id.clone())))
        .with_controller_id(node)
        .with_topics(topics)
        .with_cluster_authorized_operations(OPERATIONS_NOT_REQUESTED)
}

fn lookup_or_create(
    state: &BrokerState,
    name: &str,
    auto_create: bool,
    include_ops: bool,
) -> MetadataResponseTopic {
    if let Some(topic) = state.topics.get(name) {
        return describe_topic(state, &topic, include_ops);
    }
    let error = |code: ResponseError| {
        MetadataResponseTopic::default()
            .with_error_code(code.code())
            .with_name(Some(TopicName(StrBytes::from_string(name.to_owned()))))
            .with_topic_authorized_operations(OPERATIONS_NOT_REQUESTED)
    };
    if !auto_create {
        return error(ResponseError::UnknownTopicOrPartition);
    }
    if validate_topic_name(name).is_err() {
        return error(ResponseError::InvalidTopicException);
    }
    match state
        .topics
        .create(name, state.config.num_partitions, BTreeMap::new())
    {
        Ok(topic) => describe_topic(state, &topic, include_ops),
        // Another connection created it between the lookup and the create.
        Err(e) if e.code == ResponseError::TopicAlreadyExists => match state.topics.get(name) {
            Some(topic) => describe_topic(state, &topic, include_ops),
            None => error(ResponseError::LeaderNotAvailable),
        },
        Err(e) => {
            tracing::warn!(topic = name, error = %e.message, "auto-creating topic failed");
            error(e.code)
        }
    }
}

fn describe_topic(state: &BrokerState, topic: &Topic, include_ops: bool) -> MetadataResponseTopic {
    let node = BrokerId(state.node_id);
    let partitions = topic
        .partitions()
        .iter()
        .map(|p| {
            let offline = p.log.is_offline();
            MetadataResponsePartition::default()
                .with_error_code(if offline {
                    ResponseError::KafkaStorageError.code()
                } else {
                    0
                })
                .with_partition_index(p.index)
                .with_leader_id(node)
                .with_leader_epoch(0)
                .with_replica_nodes(vec![node])
                .with_isr_nodes(if offline { vec![] } else { vec![node] })
                .with_offline_replicas(if offline { vec![node] } else { vec![] })
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(
            topic.name.to_string(),
        ))))
        .with_topic_id(topic.id)
        .with_is_internal(topic.is_internal())
        .with_partitions(partitions)
        .with_topic_authorized_operations(if include_ops {
            ALL_TOPIC_OPERATIONS
        } else {
            OPERATIONS_NOT_REQUESTED
        })
}
