//! AlterPartitionReassignments (45) and ListPartitionReassignments (46), as
//! `kafka-reassign-partitions` and the admin clients use them, with Kafka 4.4's answers
//! (asked with its Java admin client) for everything Sluice can do: no reassignment is ever
//! in progress, so the list is empty and a cancellation gets NO_REASSIGNMENT_IN_PROGRESS; a
//! target equal to the current replica list is done at once; a target Kafka would refuse
//! (empty, a broker twice, an unregistered broker, an unknown partition) is refused in
//! Kafka's words.
//!
//! Moving replicas between brokers is not built yet: a valid target that differs from the
//! current replicas gets INVALID_REPLICA_ASSIGNMENT saying so (docs/protocol.md).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
    ListPartitionReassignmentsResponse,
};
use kafka_protocol::protocol::StrBytes;

use crate::state::BrokerState;

/// A partition's replicas as this broker knows them: the metadata's in a cluster, this
/// broker alone on the single node of earlier releases. `Err` is Kafka's refusal.
fn current_replicas(
    state: &BrokerState,
    topic: &str,
    partition: i32,
) -> Result<Vec<i32>, (ResponseError, String)> {
    let unknown_topic = || {
        (
            ResponseError::UnknownTopicOrPartition,
            format!("Unable to find a topic named {topic}."),
        )
    };
    let unknown_partition = || {
        (
            ResponseError::UnknownTopicOrPartition,
            format!("Unable to find partition {topic}:{partition}."),
        )
    };
    match &state.cluster {
        Some(node) => {
            let image = node.image();
            let t = image.topic(topic).ok_or_else(unknown_topic)?;
            let p = t.partition(partition).ok_or_else(unknown_partition)?;
            Ok(p.replicas.clone())
        }
        None => {
            let t = state.topics.get(topic).ok_or_else(unknown_topic)?;
            t.partition(partition).ok_or_else(unknown_partition)?;
            Ok(vec![state.node_id])
        }
    }
}

/// Whether broker `id` is registered (in a cluster) or is this broker (single node).
fn is_registered(state: &BrokerState, id: i32) -> bool {
    match &state.cluster {
        Some(node) => node.image().broker(id).is_some(),
        None => id == state.node_id,
    }
}

/// One partition's answer.
fn reassign(
    state: &BrokerState,
    topic: &str,
    partition: i32,
    target: Option<&[BrokerId]>,
) -> Result<(), (ResponseError, String)> {
    let current = current_replicas(state, topic, partition)?;
    let invalid = |m: String| (ResponseError::InvalidReplicaAssignment, m);
    let Some(target) = target else {
        return Err((
            ResponseError::NoReassignmentInProgress,
            "No partition reassignment is in progress.".to_owned(),
        ));
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
    if target == current {
        return Ok(());
    }
    Err(invalid(format!(
        "Sluice cannot move or reorder replicas yet (partition reassignment is not implemented): \
         the target of {topic}-{partition} must be its current replicas {current:?}"
    )))
}

/// Answers AlterPartitionReassignments.
pub fn alter(
    state: &BrokerState,
    request: &AlterPartitionReassignmentsRequest,
) -> AlterPartitionReassignmentsResponse {
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
                    match reassign(state, &topic.name, p.partition_index, p.replicas.as_deref()) {
                        Ok(()) => answer,
                        Err((code, message)) => answer
                            .with_error_code(code.code())
                            .with_error_message(Some(StrBytes::from_string(message))),
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

/// The answer when the principal may not alter the cluster.
pub fn refused_alter(
    request: &AlterPartitionReassignmentsRequest,
) -> AlterPartitionReassignmentsResponse {
    AlterPartitionReassignmentsResponse::default()
        .with_allow_replication_factor_change(request.allow_replication_factor_change)
        .with_error_code(ResponseError::ClusterAuthorizationFailed.code())
}

/// Answers ListPartitionReassignments: none is ever in progress.
pub fn list() -> ListPartitionReassignmentsResponse {
    ListPartitionReassignmentsResponse::default()
}

/// The answer when the principal may not describe the cluster.
pub fn refused_list() -> ListPartitionReassignmentsResponse {
    ListPartitionReassignmentsResponse::default()
        .with_error_code(ResponseError::ClusterAuthorizationFailed.code())
}
