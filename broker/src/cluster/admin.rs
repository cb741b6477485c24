//! CreateTopics, DeleteTopics, CreatePartitions and IncrementalAlterConfigs of topics in a
//! cluster: checked here as far as this broker can (request shape, config values), then
//! decided by the active controller wherever it runs (the metadata service forwards, as
//! Kafka's KIP-590), and answered once this broker's own image has applied the change, so
//! the client's next Metadata request here sees it.
//!
//! `validate_only` requests are checked here and against this broker's image, never sent
//! to the controller (which has no dry run): a name taken meanwhile by another broker's
//! request can still make the real request fail.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use sluice_controller::ControllerError;
use sluice_metadata::controller::{
    AlterConfigs, CreatePartitions, CreateTopic, ReplicaAssignment, TopicRef,
};
use sluice_metadata::records::ConfigResource;
use sluice_metadata::MetadataError;
use uuid::Uuid;

use super::ClusterNode;
use crate::coordinator::store::OFFSETS_TOPIC;
use crate::handlers::admin::configs;
use crate::handlers::admin::topics::{self, duplicates};
use crate::state::BrokerState;
use crate::topics::AdminError;

/// The Kafka error for a controller's per-item refusal.
pub fn metadata_error(e: &MetadataError) -> AdminError {
    AdminError::new(error_by_name(e.kafka_error_name()), e.to_string())
}

/// The Kafka error for a failed controller call as a whole.
pub fn controller_error(e: &ControllerError) -> AdminError {
    let code = match e {
        ControllerError::Request(inner) => error_by_name(inner.kafka_error_name()),
        // The client retries these: the controller is moving or busy.
        ControllerError::NotController { .. } | ControllerError::Stopped => {
            ResponseError::NotController
        }
        ControllerError::Timeout(_) => ResponseError::RequestTimedOut,
        _ => error_by_name(e.kafka_error_name()),
    };
    AdminError::new(code, e.to_string())
}

/// Kafka's error for one of its names (the names `sluice-metadata` and
/// `sluice-controller` use).
pub fn error_by_name(name: &str) -> ResponseError {
    use ResponseError as E;
    match name {
        "INVALID_TOPIC_EXCEPTION" => E::InvalidTopicException,
        "TOPIC_ALREADY_EXISTS" => E::TopicAlreadyExists,
        "UNKNOWN_TOPIC_OR_PARTITION" => E::UnknownTopicOrPartition,
        "UNKNOWN_TOPIC_ID" => E::UnknownTopicId,
        "INVALID_PARTITIONS" => E::InvalidPartitions,
        "INVALID_REPLICATION_FACTOR" => E::InvalidReplicationFactor,
        "INVALID_REPLICA_ASSIGNMENT" => E::InvalidReplicaAssignment,
        "NO_REASSIGNMENT_IN_PROGRESS" => E::NoReassignmentInProgress,
        "INVALID_REQUEST" => E::InvalidRequest,
        "INVALID_CONFIG" => E::InvalidConfig,
        "POLICY_VIOLATION" => E::PolicyViolation,
        "INCONSISTENT_CLUSTER_ID" => E::InconsistentClusterId,
        "DUPLICATE_BROKER_REGISTRATION" => E::DuplicateBrokerRegistration,
        "BROKER_ID_NOT_REGISTERED" => E::BrokerIdNotRegistered,
        "STALE_BROKER_EPOCH" => E::StaleBrokerEpoch,
        "INVALID_UPDATE_VERSION" => E::InvalidUpdateVersion,
        "FENCED_LEADER_EPOCH" => E::FencedLeaderEpoch,
        "INELIGIBLE_REPLICA" => E::IneligibleReplica,
        "NOT_CONTROLLER" => E::NotController,
        "REQUEST_TIMED_OUT" => E::RequestTimedOut,
        "UNSUPPORTED_VERSION" => E::UnsupportedVersion,
        _ => E::UnknownServerError,
    }
}

/// Sends the request's checked entries to the active controller in one call, waits until
/// this broker's image has applied the change, and gives every entry its outcome in
/// request order: an entry refused here keeps its error; the others get the controller's
/// per-item answer, or the whole call's error.
pub(crate) async fn decide<T, A, F>(
    node: &ClusterNode,
    checked: Vec<Result<T, AdminError>>,
    call: impl FnOnce(Vec<T>) -> F,
) -> Vec<Result<A, AdminError>>
where
    F: std::future::Future<
        Output = Result<
            sluice_controller::Committed<Vec<Result<A, MetadataError>>>,
            ControllerError,
        >,
    >,
{
    let mut entries = Vec::with_capacity(checked.len());
    let mut to_send = Vec::new();
    for entry in checked {
        entries.push(match entry {
            Ok(item) => {
                to_send.push(item);
                Ok(())
            }
            Err(e) => Err(e),
        });
    }
    let answers = if to_send.is_empty() {
        Ok(Vec::new())
    } else {
        match call(to_send).await {
            Ok(committed) => {
                if let Err(e) = node.wait_applied(committed.offset).await {
                    tracing::debug!(error = %e, "the change is not applied here in time");
                }
                Ok(committed.value)
            }
            Err(e) => Err(controller_error(&e)),
        }
    };
    let mut answers = answers.map(|a| a.into_iter());
    entries
        .into_iter()
        .map(|entry| match (entry, &mut answers) {
            (Err(e), _) => Err(e),
            (Ok(()), Err(e)) => Err(e.clone()),
            (Ok(()), Ok(answers)) => match answers.next() {
                Some(answer) => answer.map_err(|e| metadata_error(&e)),
                None => Err(AdminError::new(
                    ResponseError::UnknownServerError,
                    "the controller answered fewer items than were sent",
                )),
            },
        })
        .collect()
}

fn text(message: String) -> Option<StrBytes> {
    Some(StrBytes::from_string(message))
}

/// Answers CreateTopics in a cluster.
pub async fn create_topics(
    state: &BrokerState,
    node: &ClusterNode,
    request: &CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    let dups = duplicates(request.topics.iter().map(|t| t.name.0.as_str()));
    // Per request entry: the checked topic, or its error.
    let mut checked: Vec<Result<CreateTopic, AdminError>> = Vec::new();
    for topic in &request.topics {
        let name = topic.name.0.to_string();
        let entry = if dups.contains_key(name.as_str()) {
            Err(AdminError::new(
                ResponseError::InvalidRequest,
                "Found multiple entries for this topic.",
            ))
        } else if name == OFFSETS_TOPIC {
            Err(AdminError::new(
                ResponseError::InvalidRequest,
                format!(
                    "{OFFSETS_TOPIC} is created by the group coordinator, with its own settings."
                ),
            ))
        } else if let Err(e) =
            check_local_limit(state, node, &name, adding_partitions(state, topic))
        {
            Err(e)
        } else {
            check_creatable(state, topic).map(|configs| CreateTopic {
                name,
                num_partitions: topic.num_partitions,
                replication_factor: topic.replication_factor,
                assignments: topic
                    .assignments
                    .iter()
                    .map(|a| ReplicaAssignment {
                        partition: a.partition_index,
                        replicas: a.broker_ids.iter().map(|b| b.0).collect(),
                    })
                    .collect(),
                configs,
                topic_id: None,
            })
        };
        checked.push(entry);
    }
    // What goes to the controller, and where each answer belongs.
    let mut outcomes: Vec<Result<(Uuid, i32, i16), AdminError>> = Vec::new();
    if request.validate_only {
        let image = node.image();
        let usable = image.usable_brokers().count();
        for entry in checked {
            outcomes.push(entry.and_then(|t| {
                if image.topic(&t.name).is_some() {
                    return Err(AdminError::new(
                        ResponseError::TopicAlreadyExists,
                        format!("Topic '{}' already exists.", t.name),
                    ));
                }
                let rf = match t.replication_factor {
                    -1 if t.assignments.is_empty() => state.config.default_replication_factor,
                    -1 => t.assignments.first().map_or(1, |a| a.replicas.len() as i16),
                    rf => rf,
                };
                check_replication_factor(rf, usable)?;
                Ok((Uuid::nil(), t.num_partitions, rf))
            }));
        }
    } else {
        let decided = decide(node, checked, |topics| node.service.create_topics(topics)).await;
        for outcome in decided {
            let outcome = match outcome {
                Ok(created) => undo_if_not_created_here(state, node, created.topic_id)
                    .await
                    .map(|()| {
                        (
                            created.topic_id,
                            created.num_partitions,
                            created.replication_factor,
                        )
                    }),
                Err(e) => Err(e),
            };
            outcomes.push(outcome);
        }
    }
    let results = request
        .topics
        .iter()
        .zip(outcomes)
        .map(|(topic, outcome)| {
            let answer = CreatableTopicResult::default().with_name(topic.name.clone());
            match outcome {
                Ok((id, partitions, replication_factor)) => {
                    let partitions = if partitions == -1 {
                        state.config.num_partitions
                    } else {
                        partitions
                    };
                    let mut answer = answer
                        .with_topic_id(id)
                        .with_num_partitions(partitions)
                        .with_replication_factor(replication_factor.max(1));
                    if version >= 5 {
                        let overrides = overrides_of(topic);
                        let config = state
                            .topics
                            .defaults()
                            .with_overrides(&overrides)
                            .unwrap_or_else(|_| (*state.topics.defaults()).clone());
                        answer.configs =
                            Some(configs::creatable_configs(state, &config, &overrides));
                    }
                    answer
                }
                Err(e) => {
                    tracing::debug!(topic = %topic.name.0, error = %e.message, "create topic refused");
                    answer
                        .with_error_code(e.code.code())
                        .with_error_message(text(e.message))
                        .with_num_partitions(-1)
                        .with_replication_factor(-1)
                        .with_configs(None)
                }
            }
        })
        .collect();
    CreateTopicsResponse::default().with_topics(results)
}

/// The controller's placement rule, for `validate_only` requests that never reach it: a
/// replication factor above the usable brokers is refused with Kafka's message.
fn check_replication_factor(rf: i16, usable_brokers: usize) -> Result<(), AdminError> {
    if rf < 1 {
        return Err(AdminError::new(
            ResponseError::InvalidReplicationFactor,
            "Replication factor must be larger than 0, or -1 to use the default value.",
        ));
    }
    if rf as usize > usable_brokers {
        return Err(AdminError::new(
            ResponseError::InvalidReplicationFactor,
            format!(
                "Unable to replicate the partition {rf} time(s): The target replication factor of {rf} cannot be reached because only {usable_brokers} broker(s) are registered."
            ),
        ));
    }
    Ok(())
}

/// How many partitions a CreateTopics entry adds.
fn adding_partitions(
    state: &BrokerState,
    topic: &kafka_protocol::messages::create_topics_request::CreatableTopic,
) -> usize {
    if !topic.assignments.is_empty() {
        topic.assignments.len()
    } else if topic.num_partitions == -1 {
        state.config.num_partitions.max(0) as usize
    } else {
        topic.num_partitions.max(0) as usize
    }
}

/// Whether this broker is the only live one, so every new replica lands here.
fn sole_live_broker(node: &ClusterNode) -> bool {
    let image = node.image();
    let mut live = image.live_brokers().map(|b| b.id);
    live.next() == Some(node.node_id) && live.next().is_none()
}

/// This broker's partition limit (`max.broker.partitions`, or what its open-file limit
/// holds), checked when every new replica would land here: a single node refuses, before
/// anything is decided, a topic it could not open (POLICY_VIOLATION). With several live
/// brokers the controller places replicas and a broker past its limit cannot open them;
/// the controller does not know brokers' limits yet.
pub(super) fn check_local_limit(
    state: &BrokerState,
    node: &ClusterNode,
    topic: &str,
    adding: usize,
) -> Result<(), AdminError> {
    if adding == 0 || !sole_live_broker(node) {
        return Ok(());
    }
    state.topics.check_partition_limit(topic, adding)
}

/// After a topic was created and this broker's reconciler ran: if creating a replica
/// assigned here failed (e.g. the process ran out of file descriptors part-way) and this
/// is the only live broker, the topic could never serve, so it is deleted again and the
/// client gets the error, with nothing left behind, as before the cluster. (With other
/// live brokers, the topic stays: the reconciler retries every second and logs why.)
async fn undo_if_not_created_here(
    state: &BrokerState,
    node: &ClusterNode,
    id: Uuid,
) -> Result<(), AdminError> {
    let image = node.image();
    let Some(topic) = image.topic_by_id(id) else {
        return Ok(());
    };
    let local = state.topics.get_by_id(id);
    // Only replicas whose creation failed: one the reconciler has not reached yet (busy
    // deleting another topic's hundreds of replicas) is created once it gets there, so
    // the topic stays, as Kafka answers before its replicas exist.
    let failed: Vec<(i32, AdminError)> = topic
        .partitions
        .iter()
        .enumerate()
        .filter(|(_, p)| p.replicas.contains(&node.node_id))
        .map(|(index, _)| index as i32)
        .filter(|&index| local.as_ref().and_then(|t| t.partition(index)).is_none())
        .filter_map(|index| Some((index, node.replica_error(id, index)?)))
        .collect();
    let Some((_, error)) = failed.first().cloned() else {
        return Ok(());
    };
    if !sole_live_broker(node) {
        return Ok(());
    }
    let missing: Vec<i32> = failed.iter().map(|(index, _)| *index).collect();
    tracing::warn!(topic = %topic.name, partitions = ?missing, error = %error.message, "deleting a topic this broker could not create");
    match node.service.delete_topics(vec![TopicRef::Id(id)]).await {
        Ok(committed) => {
            if let Err(e) = node.wait_applied(committed.offset).await {
                tracing::debug!(error = %e, "the undone topic is not removed here in time");
            }
        }
        Err(e) => tracing::warn!(topic = %topic.name, error = %e, "cannot delete the topic again"),
    }
    Err(error)
}

fn overrides_of(
    topic: &kafka_protocol::messages::create_topics_request::CreatableTopic,
) -> BTreeMap<String, String> {
    topic
        .configs
        .iter()
        .filter_map(|c| Some((c.name.to_string(), c.value.as_ref()?.to_string())))
        .collect()
}

/// What this broker checks before the controller decides: config values it can validate
/// (the controller stores them as given).
fn check_creatable(
    state: &BrokerState,
    topic: &kafka_protocol::messages::create_topics_request::CreatableTopic,
) -> Result<BTreeMap<String, String>, AdminError> {
    if let Some(config) = topic.configs.iter().find(|c| c.value.is_none()) {
        return Err(AdminError::new(
            ResponseError::InvalidConfig,
            format!(
                "Null value not supported for topic configs: {}",
                config.name
            ),
        ));
    }
    let overrides = overrides_of(topic);
    state
        .topics
        .defaults()
        .with_overrides(&overrides)
        .map_err(|m| AdminError::new(ResponseError::InvalidConfig, m))?;
    Ok(overrides)
}

/// Answers DeleteTopics in a cluster.
pub async fn delete_topics(
    node: &ClusterNode,
    request: &DeleteTopicsRequest,
    version: i16,
) -> DeleteTopicsResponse {
    let image = node.image();
    let offsets_topic_id = image.topic(OFFSETS_TOPIC).map(|t| t.id);
    let offsets_refused = || {
        Err(AdminError::new(
            ResponseError::InvalidRequest,
            format!("{OFFSETS_TOPIC} is owned by the group coordinator and cannot be deleted."),
        ))
    };
    let wanted = topics::requested_topics(request, version);
    let checked: Vec<Result<TopicRef, AdminError>> = wanted
        .iter()
        .map(|(name, id)| match (name, id.is_nil()) {
            (Some(_), false) => Err(AdminError::new(
                ResponseError::InvalidRequest,
                "Topic name and topic id cannot both be set.",
            )),
            (Some(n), true) if n.0.as_str() == OFFSETS_TOPIC => offsets_refused(),
            (Some(n), true) => Ok(TopicRef::Name(n.0.to_string())),
            (None, false) if Some(*id) == offsets_topic_id => offsets_refused(),
            (None, false) => Ok(TopicRef::Id(*id)),
            (None, true) => Err(AdminError::new(
                ResponseError::InvalidRequest,
                "Neither topic name nor id were specified.",
            )),
        })
        .collect();
    let outcomes = decide(node, checked, |topics| node.service.delete_topics(topics)).await;
    let responses = wanted
        .into_iter()
        .zip(outcomes)
        .map(|((name, id), outcome)| {
            let answer = DeletableTopicResult::default()
                .with_name(name)
                .with_topic_id(id);
            match outcome {
                Ok(deleted) => answer
                    .with_name(Some(TopicName(StrBytes::from_string(deleted.name))))
                    .with_topic_id(deleted.topic_id),
                Err(e) => answer
                    .with_error_code(e.code.code())
                    .with_error_message(text(e.message)),
            }
        })
        .collect();
    DeleteTopicsResponse::default().with_responses(responses)
}

/// Answers CreatePartitions in a cluster.
pub async fn create_partitions(
    state: &BrokerState,
    node: &ClusterNode,
    request: &CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let dups = duplicates(request.topics.iter().map(|t| t.name.0.as_str()));
    let image = node.image();
    let checked: Vec<Result<CreatePartitions, AdminError>> = request
        .topics
        .iter()
        .map(|t| {
            if dups.contains_key(t.name.0.as_str()) {
                return Err(AdminError::new(ResponseError::InvalidRequest, "Duplicate topic in request."));
            }
            if t.name.0.as_str() == OFFSETS_TOPIC {
                return Err(AdminError::new(
                    ResponseError::InvalidRequest,
                    format!("{OFFSETS_TOPIC} is owned by the group coordinator and cannot be given more partitions."),
                ));
            }
            if let Some(topic) = image.topic(&t.name.0) {
                let adding = (t.count as usize).saturating_sub(topic.partitions.len());
                check_local_limit(state, node, &t.name.0, adding)?;
            }
            if request.validate_only {
                match image.topic(&t.name.0) {
                    None => return Err(AdminError::new(
                        ResponseError::UnknownTopicOrPartition,
                        "This server does not host this topic-partition.",
                    )),
                    Some(topic) if t.count <= topic.partitions.len() as i32 => return Err(AdminError::new(
                        ResponseError::InvalidPartitions,
                        format!(
                            "Topic currently has {} partitions, which is higher than or equal to the requested {}.",
                            topic.partitions.len(),
                            t.count
                        ),
                    )),
                    Some(_) => {}
                }
            }
            Ok(CreatePartitions {
                name: t.name.0.to_string(),
                count: t.count,
                assignments: t.assignments.as_ref().map(|a| {
                    a.iter()
                        .map(|a| a.broker_ids.iter().map(|b| b.0).collect())
                        .collect()
                }),
            })
        })
        .collect();
    let outcomes: Vec<Result<(), AdminError>> = if request.validate_only {
        checked.into_iter().map(|c| c.map(|_| ())).collect()
    } else {
        decide(node, checked, |topics| {
            node.service.create_partitions(topics)
        })
        .await
    };
    let results = request
        .topics
        .iter()
        .zip(outcomes)
        .map(|(t, outcome)| {
            let answer = CreatePartitionsTopicResult::default().with_name(t.name.clone());
            match outcome {
                Ok(()) => answer,
                Err(e) => answer
                    .with_error_code(e.code.code())
                    .with_error_message(text(e.message)),
            }
        })
        .collect();
    CreatePartitionsResponse::default().with_results(results)
}

/// Answers IncrementalAlterConfigs in a cluster: topic configs are changed through the
/// controller (broker configs stay read-only, as on a single node).
pub async fn incremental_alter_configs(
    state: &BrokerState,
    node: &ClusterNode,
    request: &IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut counts: BTreeMap<(i8, &str), usize> = BTreeMap::new();
    for r in &request.resources {
        *counts
            .entry((r.resource_type, r.resource_name.as_str()))
            .or_default() += 1;
    }
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in &request.resources {
        let name = resource.resource_name.as_str();
        let result = if counts
            .get(&(resource.resource_type, name))
            .copied()
            .unwrap_or(0)
            > 1
        {
            Err(AdminError::new(
                ResponseError::InvalidRequest,
                "Duplicate resource in request.",
            ))
        } else if resource.resource_type == configs::RESOURCE_BROKER {
            alter_broker_configs(state, node, name, &resource.configs, request.validate_only).await
        } else if resource.resource_type == configs::RESOURCE_BROKER_LOGGER {
            configs::alter_loggers(state, name, &resource.configs, request.validate_only)
        } else if resource.resource_type == configs::RESOURCE_GROUP {
            alter_group_configs(node, state, name, &resource.configs, request.validate_only).await
        } else if resource.resource_type != configs::RESOURCE_TOPIC {
            Err(AdminError::new(
                ResponseError::InvalidRequest,
                format!("Unsupported resource type {}", resource.resource_type),
            ))
        } else {
            alter_topic_configs(state, node, name, &resource.configs, request.validate_only).await
        };
        let answer = AlterConfigsResourceResponse::default()
            .with_resource_type(resource.resource_type)
            .with_resource_name(resource.resource_name.clone());
        responses.push(match result {
            Ok(()) => answer,
            Err(e) => answer
                .with_error_code(e.code.code())
                .with_error_message(text(e.message)),
        });
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

/// IncrementalAlterConfigs of a BROKER resource: the cluster default or this broker's
/// level, validated here and committed by the controller as `ConfigRecord`s (Kafka keeps
/// them in the metadata log too); every broker applies them from its image (see
/// `reconcile`), this one before answering.
async fn alter_broker_configs(
    state: &BrokerState,
    node: &ClusterNode,
    name: &str,
    changes: &[AlterableConfig],
    validate_only: bool,
) -> Result<(), AdminError> {
    use crate::dynamic_config::{self, Level};
    let level = Level::of(name, state.node_id)?;
    let current = configs::current_layers(state);
    let altered = dynamic_config::altered(&state.config, &current, level, changes)?;
    if validate_only {
        return Ok(());
    }
    let resource = match level {
        Level::ClusterDefault => ConfigResource::ClusterDefault,
        Level::Broker => ConfigResource::Broker(state.node_id),
    };
    commit_config_diff(node, resource, current.level(level), altered.level(level)).await
}

/// IncrementalAlterConfigs of a GROUP resource, committed by the controller (the group
/// need not exist, as in Kafka).
async fn alter_group_configs(
    node: &ClusterNode,
    state: &BrokerState,
    group: &str,
    changes: &[AlterableConfig],
    validate_only: bool,
) -> Result<(), AdminError> {
    let current = configs::group_overrides(state, group);
    let altered = crate::group_configs::altered(&current, changes)?;
    if validate_only {
        return Ok(());
    }
    commit_config_diff(
        node,
        ConfigResource::Group(group.to_owned()),
        &current,
        &altered,
    )
    .await
}

/// Commits the difference between two override maps of one resource through the
/// controller and waits until this broker applied it.
async fn commit_config_diff(
    node: &ClusterNode,
    resource: ConfigResource,
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
) -> Result<(), AdminError> {
    let mut diff: Vec<(String, Option<String>)> = after
        .iter()
        .filter(|(k, v)| before.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), Some(v.clone())))
        .collect();
    diff.extend(
        before
            .keys()
            .filter(|k| !after.contains_key(*k))
            .map(|k| (k.clone(), None)),
    );
    if diff.is_empty() {
        return Ok(());
    }
    let committed = node
        .service
        .alter_configs(vec![AlterConfigs {
            resource,
            changes: diff,
        }])
        .await
        .map_err(|e| controller_error(&e))?;
    if let Err(e) = node.wait_applied(committed.offset).await {
        tracing::debug!(error = %e, "altered configs not applied here in time");
    }
    match committed.value.into_iter().next() {
        Some(Ok(())) => Ok(()),
        Some(Err(e)) => Err(metadata_error(&e)),
        None => Err(AdminError::new(
            ResponseError::UnknownServerError,
            "the controller answered no resource",
        )),
    }
}

async fn alter_topic_configs(
    state: &BrokerState,
    node: &ClusterNode,
    name: &str,
    changes: &[AlterableConfig],
    validate_only: bool,
) -> Result<(), AdminError> {
    let Some(current) = configs::topic_overrides(state, name) else {
        return Err(AdminError::new(
            ResponseError::UnknownTopicOrPartition,
            format!("Topic {name} does not exist."),
        ));
    };
    let altered = configs::altered_overrides(state, &current, changes)?;
    if validate_only {
        return Ok(());
    }
    commit_config_diff(
        node,
        ConfigResource::Topic(name.to_owned()),
        &current,
        &altered,
    )
    .await
}
