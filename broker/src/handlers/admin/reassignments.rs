//! AlterPartitionReassignments (45) and ListPartitionReassignments (46), as
//! `kafka-reassign-partitions` and the admin clients use them.
//!
//! In a cluster the broker refuses here, in Kafka 4.4's words (asked with its Java admin
//! client), what its image already shows to be wrong (an unknown partition, an empty
//! target, a broker twice, an unregistered broker), sends the rest to the active
//! controller, which moves the replicas (`sluice_metadata::controller::reassignment`), and
//! answers once its own image has applied the change, so a List on this broker right
//! after shows it. The List is answered from the image: every partition whose
//! `adding_replicas` or `removing_replicas` is not empty.
//!
//! On the single node of earlier releases nothing can move: the only registered broker
//! is this one, so the only valid target is the current replicas (done at once), the
//! list is empty and a cancellation gets NO_REASSIGNMENT_IN_PROGRESS.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use sluice_metadata::controller::Reassignment;

use crate::cluster::admin::decide;
use crate::state::BrokerState;
use crate::topics::AdminError;

/// Refuses, in Kafka's words, a partition this broker does not know: from the metadata
/// image in a cluster, from its own topics on the single node of earlier releases.
fn check_partition_exists(
    state: &BrokerState,
    topic: &str,
    partition: i32,
) -> Result<(), AdminError> {
    let unknown_topic = || {
        AdminError::new(
            ResponseError::UnknownTopicOrPartition,
            format!("Unable to find a topic named {topic}."),
        )
    };
    let unknown_partition = || {
        AdminError::new(
            ResponseError::UnknownTopicOrPartition,
            format!("Unable to find partition {topic}:{partition}."),
        )
    };
    match &state.cluster {
        Some(node) => {
            let image = node.image();
            let t = image.topic(topic).ok_or_else(unknown_topic)?;
            t.partition(partition).ok_or_else(unknown_partition)?;
        }
        None => {
            let t = state.topics.get(topic).ok_or_else(unknown_topic)?;
            t.partition(partition).ok_or_else(unknown_partition)?;
        }
    }
    Ok(())
}

/// Whether broker `id` is registered (in a cluster) or is this broker (single node).
fn is_registered(state: &BrokerState, id: i32) -> bool {
    match &state.cluster {
        Some(node) => node.image().broker(id).is_some(),
        None => id == state.node_id,
    }
}

/// What the broker checks of one partition before the controller decides: the item to
/// send, or Kafka's refusal. The controller checks again on its own image.
fn check(
    state: &BrokerState,
    topic: &str,
    partition: i32,
    target: Option<&[BrokerId]>,
) -> Result<Reassignment, AdminError> {
    check_partition_exists(state, topic, partition)?;
    let invalid = |m: String| AdminError::new(ResponseError::InvalidReplicaAssignment, m);
    let item = |target| Reassignment {
        topic: topic.to_owned(),
        partition,
        target,
    };
    let Some(target) = target else {
        return Ok(item(None));
    };
    let target: Vec<i32> = target.iter().map(|b| b.0).collect();
    if target.is_empty() {
        return Err(invalid(
            "The manual partition assignment includes an empty replica list.".to_owned(),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(twice) = target.iter().find(|b| !seen.insert(**b)) {
        return Err(invalid(format!(
            "The manual partition assignment includes the broker {twice} more than once."
        )));
    }
    if let Some(unknown) = target.iter().find(|&&b| !is_registered(state, b)) {
        return Err(invalid(format!(
            "The manual partition assignment includes broker {unknown}, but no such broker is registered."
        )));
    }
    Ok(item(Some(target)))
}

/// The single node's answer to a checked item: its only valid target is its current
/// replica list (this broker), and nothing is ever in progress.
fn single_node(state: &BrokerState, item: Reassignment) -> Result<(), AdminError> {
    match item.target {
        None => Err(AdminError::new(
            ResponseError::NoReassignmentInProgress,
            "No partition reassignment is in progress.",
        )),
        Some(target) if target == [state.node_id] => Ok(()),
        Some(target) => Err(AdminError::new(
            ResponseError::InvalidReplicaAssignment,
            format!(
                "A single node cannot move replicas: {target:?} is not [{}]",
                state.node_id
            ),
        )),
    }
}

/// Answers AlterPartitionReassignments.
pub async fn alter(
    state: &BrokerState,
    request: &AlterPartitionReassignmentsRequest,
) -> AlterPartitionReassignmentsResponse {
    let mut seen = std::collections::HashSet::new();
    let checked: Vec<Result<Reassignment, AdminError>> = request
        .topics
        .iter()
        .flat_map(|topic| topic.partitions.iter().map(move |p| (topic, p)))
        .map(|(topic, p)| {
            // Before any other check, so that a later entry of a partition is never
            // executed when an earlier one was refused here.
            if !seen.insert((topic.name.0.as_str(), p.partition_index)) {
                return Err(AdminError::new(
                    ResponseError::InvalidRequest,
                    format!(
                        "Partition {}-{} is listed more than once.",
                        topic.name.0, p.partition_index
                    ),
                ));
            }
            check(state, &topic.name, p.partition_index, p.replicas.as_deref())
        })
        .collect();
    let mut outcomes = match &state.cluster {
        Some(node) => {
            let allow = request.allow_replication_factor_change;
            decide(node, checked, |items| {
                node.service.alter_partition_reassignments(items, allow)
            })
            .await
        }
        None => checked
            .into_iter()
            .map(|c| c.and_then(|item| single_node(state, item)))
            .collect(),
    }
    .into_iter();
    let responses = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let answer = ReassignablePartitionResponse::default()
                        .with_partition_index(p.partition_index);
                    match outcomes.next() {
                        Some(Ok(())) => answer,
                        Some(Err(e)) => answer
                            .with_error_code(e.code.code())
                            .with_error_message(Some(StrBytes::from_string(e.message))),
                        None => answer.with_error_code(ResponseError::UnknownServerError.code()),
                    }
                })
                .collect();
            ReassignableTopicResponse::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    AlterPartitionReassignmentsResponse::default()
        .with_allow_replication_factor_change(request.allow_replication_factor_change)
        .with_responses(responses)
}

/// The answer when the principal may not alter the cluster: the error on the request and
/// on every partition, as Kafka answers.
pub fn refused_alter(
    request: &AlterPartitionReassignmentsRequest,
) -> AlterPartitionReassignmentsResponse {
    let code = ResponseError::ClusterAuthorizationFailed.code();
    let message = || Some(StrBytes::from_static_str("Cluster authorization failed."));
    let responses = request
        .topics
        .iter()
        .map(|topic| {
            ReassignableTopicResponse::default()
                .with_name(topic.name.clone())
                .with_partitions(
                    topic
                        .partitions
                        .iter()
                        .map(|p| {
                            ReassignablePartitionResponse::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(code)
                                .with_error_message(message())
                        })
                        .collect(),
                )
        })
        .collect();
    AlterPartitionReassignmentsResponse::default()
        .with_allow_replication_factor_change(request.allow_replication_factor_change)
        .with_error_code(code)
        .with_error_message(message())
        .with_responses(responses)
}

/// Answers ListPartitionReassignments from this broker's image: the partitions asked for
/// (all with `topics` null) that are being reassigned; others, and unknown ones, are left
/// out, as Kafka does.
pub fn list(
    state: &BrokerState,
    request: &ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    let Some(node) = &state.cluster else {
        return ListPartitionReassignmentsResponse::default();
    };
    let image = node.image();
    let wanted = |topic: &str, partition: i32| match &request.topics {
        None => true,
        Some(topics) => topics
            .iter()
            .any(|t| t.name.0.as_str() == topic && t.partition_indexes.contains(&partition)),
    };
    let ids = |ids: &[i32]| ids.iter().map(|&b| BrokerId(b)).collect::<Vec<_>>();
    let topics = image
        .topics()
        .filter_map(|t| {
            let partitions: Vec<OngoingPartitionReassignment> = t
                .partitions
                .iter()
                .enumerate()
                .filter(|(i, p)| p.is_reassigning() && wanted(&t.name, *i as i32))
                .map(|(i, p)| {
                    OngoingPartitionReassignment::default()
                        .with_partition_index(i as i32)
                        .with_replicas(ids(&p.replicas))
                        .with_adding_replicas(ids(&p.adding_replicas))
                        .with_removing_replicas(ids(&p.removing_replicas))
                })
                .collect();
            (!partitions.is_empty()).then(|| {
                OngoingTopicReassignment::default()
                    .with_name(TopicName(StrBytes::from_string(t.name.clone())))
                    .with_partitions(partitions)
            })
        })
        .collect();
    ListPartitionReassignmentsResponse::default().with_topics(topics)
}

/// The answer when the principal may not describe the cluster.
pub fn refused_list() -> ListPartitionReassignmentsResponse {
    ListPartitionReassignmentsResponse::default()
        .with_error_code(ResponseError::ClusterAuthorizationFailed.code())
}
