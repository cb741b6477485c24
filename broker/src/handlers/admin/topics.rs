//! CreateTopics, DeleteTopics and CreatePartitions, with Kafka's validation and errors.

use std::collections::{BTreeMap, HashMap};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    BrokerId, CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest,
    CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::configs;
use crate::coordinator::store::OFFSETS_TOPIC;
use crate::state::BrokerState;
use crate::topics::AdminError;

/// The names that appear more than once, with their counts.
pub(crate) fn duplicates<'a>(names: impl Iterator<Item = &'a str>) -> HashMap<&'a str, usize> {
    let mut counts = HashMap::new();
    for name in names {
        *counts.entry(name).or_insert(0) += 1;
    }
    counts.retain(|_, n| *n > 1);
    counts
}

/// Checks a CreateTopics entry; returns its partition count and config overrides.
fn validate_creatable(
    state: &BrokerState,
    topic: &CreatableTopic,
) -> Result<(i32, BTreeMap<String, String>), AdminError> {
    let invalid_request = |m: &str| AdminError::new(ResponseError::InvalidRequest, m);
    let partitions = if topic.assignments.is_empty() {
        match topic.replication_factor {
            -1 | 1 => {}
            rf if rf < 1 => {
                return Err(AdminError::new(
                    ResponseError::InvalidReplicationFactor,
                    "Replication factor must be larger than 0, or -1 to use the default value.",
                ))
            }
            rf => {
                return Err(AdminError::new(
                    ResponseError::InvalidReplicationFactor,
                    format!("Unable to replicate the partition {rf} time(s): The target replication factor of {rf} cannot be reached because only 1 broker(s) are registered."),
                ))
            }
        }
        match topic.num_partitions {
            -1 => state.config.num_partitions,
            n if n < 1 => {
                return Err(AdminError::new(
                    ResponseError::InvalidPartitions,
                    "Number of partitions was set to an invalid non-positive value.",
                ))
            }
            n => n,
        }
    } else {
        if topic.num_partitions != -1 || topic.replication_factor != -1 {
            return Err(invalid_request(
                "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.",
            ));
        }
        let mut indexes: Vec<i32> = topic
            .assignments
            .iter()
            .map(|a| a.partition_index)
            .collect();
        indexes.sort_unstable();
        if indexes
            .iter()
            .enumerate()
            .any(|(i, &p)| i as i64 != p as i64)
        {
            return Err(AdminError::new(
                ResponseError::InvalidReplicaAssignment,
                "Partitions should be a consecutive 0-based integer sequence.",
            ));
        }
        let node = BrokerId(state.node_id);
        if topic.assignments.iter().any(|a| a.broker_ids != [node]) {
            return Err(AdminError::new(
                ResponseError::InvalidReplicaAssignment,
                format!(
                    "Every partition must be assigned to exactly this broker ({}).",
                    state.node_id
                ),
            ));
        }
        i32::try_from(topic.assignments.len()).unwrap_or(i32::MAX)
    };
    let mut overrides = BTreeMap::new();
    for config in &topic.configs {
        let Some(value) = &config.value else {
            return Err(AdminError::new(
                ResponseError::InvalidConfig,
                format!(
                    "Null value not supported for topic configs: {}",
                    config.name
                ),
            ));
        };
        overrides.insert(config.name.to_string(), value.to_string());
    }
    Ok((partitions, overrides))
}

/// Answers CreateTopics (blocking).
pub fn create_topics(
    state: &BrokerState,
    request: &CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    let dups = duplicates(request.topics.iter().map(|t| t.name.0.as_str()));
    let results = request
        .topics
        .iter()
        .map(|topic| {
            let name = topic.name.0.as_str();
            let result = if dups.contains_key(name) {
                Err(AdminError::new(
                    ResponseError::InvalidRequest,
                    "Found multiple entries for this topic.",
                ))
            } else {
                validate_creatable(state, topic).and_then(|(partitions, overrides)| {
                    if request.validate_only {
                        state
                            .topics
                            .validate_new(name, partitions, &overrides)
                            .map(|config| (partitions, overrides, config, Uuid::nil()))
                    } else {
                        state
                            .topics
                            .create(name, partitions, overrides.clone())
                            .map(|t| (partitions, overrides, t.config(), t.id))
                    }
                })
            };
            let answer = CreatableTopicResult::default().with_name(topic.name.clone());
            match result {
                Ok((partitions, overrides, config, id)) => {
                    let mut answer = answer
                        .with_topic_id(id)
                        .with_num_partitions(partitions)
                        .with_replication_factor(1);
                    if version >= 5 {
                        answer.configs =
                            Some(configs::creatable_configs(state, &config, &overrides));
                    }
                    answer
                }
                Err(e) => {
                    tracing::debug!(topic = name, error = %e.message, "create topic refused");
                    answer
                        .with_error_code(e.code.code())
                        .with_error_message(Some(StrBytes::from_string(e.message)))
                        .with_num_partitions(-1)
                        .with_replication_factor(-1)
                        .with_configs(None)
                }
            }
        })
        .collect();
    CreateTopicsResponse::default().with_topics(results)
}

/// The group coordinator maps groups to `__consumer_offsets` partitions by count and
/// holds the topic open: deleting or resizing it under a running broker would lose or
/// misplace every committed offset. Kafka allows both; Sluice refuses them.
fn internal_topic_refused(what: &str) -> AdminError {
    AdminError::new(
        ResponseError::InvalidRequest,
        format!("{OFFSETS_TOPIC} is owned by the group coordinator and cannot be {what}."),
    )
}

/// The topics a DeleteTopics request names: by name (all versions) or id (v6+).
pub(crate) fn requested_topics(
    request: &DeleteTopicsRequest,
    version: i16,
) -> Vec<(Option<TopicName>, Uuid)> {
    if version >= 6 {
        request
            .topics
            .iter()
            .map(|t| (t.name.clone(), t.topic_id))
            .collect()
    } else {
        request
            .topic_names
            .iter()
            .map(|n| (Some(n.clone()), Uuid::nil()))
            .collect()
    }
}

/// Answers DeleteTopics, by name (all versions) or by id (v6+) (blocking).
pub fn delete_topics(
    state: &BrokerState,
    request: &DeleteTopicsRequest,
    version: i16,
) -> DeleteTopicsResponse {
    let wanted = requested_topics(request, version);
    let responses = wanted
        .into_iter()
        .map(|(name, id)| {
            let answer = DeletableTopicResult::default()
                .with_name(name.clone())
                .with_topic_id(id);
            let result = match (&name, id.is_nil()) {
                (Some(_), false) => Err(AdminError::new(
                    ResponseError::InvalidRequest,
                    "Topic name and topic id cannot both be set.",
                )),
                (Some(n), true) => match state.topics.get(&n.0) {
                    Some(topic) if &*topic.name == OFFSETS_TOPIC => {
                        Err(internal_topic_refused("deleted"))
                    }
                    Some(topic) => state.topics.delete(&topic).map(|()| topic),
                    None => Err(AdminError::new(
                        ResponseError::UnknownTopicOrPartition,
                        "This server does not host this topic-partition.",
                    )),
                },
                (None, false) => match state.topics.get_by_id(id) {
                    Some(topic) if &*topic.name == OFFSETS_TOPIC => {
                        Err(internal_topic_refused("deleted"))
                    }
                    Some(topic) => state.topics.delete(&topic).map(|()| topic),
                    None => Err(AdminError::new(
                        ResponseError::UnknownTopicId,
                        "This server does not host this topic ID.",
                    )),
                },
                (None, true) => Err(AdminError::new(
                    ResponseError::InvalidRequest,
                    "Neither topic name nor id were specified.",
                )),
            };
            match result {
                Ok(topic) => answer
                    .with_name(Some(TopicName(StrBytes::from_string(
                        topic.name.to_string(),
                    ))))
                    .with_topic_id(topic.id),
                Err(e) => answer
                    .with_error_code(e.code.code())
                    .with_error_message(Some(StrBytes::from_string(e.message))),
            }
        })
        .collect();
    DeleteTopicsResponse::default().with_responses(responses)
}

/// Answers CreatePartitions (blocking).
pub fn create_partitions(
    state: &BrokerState,
    request: &CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let dups = duplicates(request.topics.iter().map(|t| t.name.0.as_str()));
    let node = BrokerId(state.node_id);
    let results = request
        .topics
        .iter()
        .map(|t| {
            let result = if dups.contains_key(t.name.0.as_str()) {
                Err(AdminError::new(
                    ResponseError::InvalidRequest,
                    "Duplicate topic in request.",
                ))
            } else if t.name.0.as_str() == OFFSETS_TOPIC {
                Err(internal_topic_refused("given more partitions"))
            } else if t
                .assignments
                .iter()
                .flatten()
                .any(|a| a.broker_ids != [node])
            {
                Err(AdminError::new(
                    ResponseError::InvalidReplicaAssignment,
                    format!(
                        "Every partition must be assigned to exactly this broker ({}).",
                        state.node_id
                    ),
                ))
            } else {
                match state.topics.get(&t.name.0) {
                    None => Err(AdminError::new(
                        ResponseError::UnknownTopicOrPartition,
                        "This server does not host this topic-partition.",
                    )),
                    Some(topic) => {
                        state
                            .topics
                            .add_partitions(&topic, t.count, request.validate_only)
                    }
                }
            };
            let answer = CreatePartitionsTopicResult::default().with_name(t.name.clone());
            match result {
                Ok(()) => answer,
                Err(e) => answer
                    .with_error_code(e.code.code())
                    .with_error_message(Some(StrBytes::from_string(e.message))),
            }
        })
        .collect();
    CreatePartitionsResponse::default().with_results(results)
}
