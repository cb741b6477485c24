//! DescribeCluster (AdminClient `describeCluster`) and DescribeQuorum (Kafka's
//! `kafka-metadata-quorum describe`), answered from the metadata image and the quorum.
//!
//! A single node is a cluster of one and answers both like any node. Only the single-node
//! broker of earlier releases, which tests still start, runs no metadata quorum: it does not
//! serve DescribeQuorum at all (`api_versions::CLUSTER_ONLY`).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::describe_quorum_response::{
    Listener, Node, PartitionData, ReplicaState, TopicData,
};
use kafka_protocol::messages::{
    BrokerId, DescribeClusterRequest, DescribeClusterResponse, DescribeQuorumRequest,
    DescribeQuorumResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use sluice_quorum::ReplicaDescription;

use crate::handlers::metadata::OPERATIONS_NOT_REQUESTED;
use crate::state::BrokerState;

/// The metadata log's name and partition, as Kafka names them.
const METADATA_TOPIC: &str = "__cluster_metadata";

/// DescribeCluster's `endpoint_type` for brokers (2 is controllers, KIP-919).
const ENDPOINT_TYPE_BROKERS: i8 = 1;

fn s(text: impl Into<String>) -> StrBytes {
    StrBytes::from_string(text.into())
}

/// Answers DescribeCluster.
pub fn describe_cluster(
    state: &BrokerState,
    request: &DescribeClusterRequest,
    version: i16,
) -> DescribeClusterResponse {
    let response = DescribeClusterResponse::default()
        .with_cluster_authorized_operations(OPERATIONS_NOT_REQUESTED);
    if version >= 1 && request.endpoint_type != ENDPOINT_TYPE_BROKERS {
        return response
            .with_error_code(ResponseError::UnsupportedEndpointType.code())
            .with_error_message(Some(s("Sluice answers DescribeCluster for brokers only.")))
            .with_endpoint_type(request.endpoint_type);
    }
    let Some(node) = &state.cluster else {
        let (host, port) = state.advertised();
        return response
            .with_cluster_id(s(state.cluster_id.clone()))
            .with_controller_id(BrokerId(state.node_id))
            .with_brokers(vec![DescribeClusterBroker::default()
                .with_broker_id(BrokerId(state.node_id))
                .with_host(s(host))
                .with_port(port)]);
    };
    let image = node.image();
    let include_fenced = version >= 2 && request.include_fenced_brokers;
    let brokers = image
        .brokers()
        .filter(|b| include_fenced || !b.fenced)
        .filter_map(|b| {
            let endpoint = b.endpoint(&node.client_listener_name())?;
            Some(
                DescribeClusterBroker::default()
                    .with_broker_id(BrokerId(b.id))
                    .with_host(s(endpoint.host.clone()))
                    .with_port(i32::from(endpoint.port))
                    .with_rack(b.rack.clone().map(s))
                    .with_is_fenced(b.fenced),
            )
        })
        .collect();
    let controller = node.controller_id_for_clients(&image);
    response
        .with_cluster_id(s(image.cluster_id().unwrap_or_default()))
        .with_controller_id(BrokerId(controller))
        .with_brokers(brokers)
}

/// The answer to a principal that may not describe the cluster.
pub fn quorum_refused(error: ResponseError) -> DescribeQuorumResponse {
    DescribeQuorumResponse::default()
        .with_error_code(error.code())
        .with_error_message(Some(s("Cluster authorization failed.")))
}

/// Answers DescribeQuorum for `__cluster_metadata` partition 0.
pub async fn describe_quorum(
    state: &BrokerState,
    request: &DescribeQuorumRequest,
    version: i16,
) -> DescribeQuorumResponse {
    let asks_for_metadata_log = request.topics.iter().all(|t| {
        t.topic_name.0.as_str() == METADATA_TOPIC
            && t.partitions.iter().all(|p| p.partition_index == 0)
    });
    let error = |code: ResponseError, message: String| {
        DescribeQuorumResponse::default()
            .with_error_code(code.code())
            .with_error_message(Some(s(message)))
    };
    if !asks_for_metadata_log {
        return error(
            ResponseError::UnknownTopicOrPartition,
            format!("only {METADATA_TOPIC} partition 0 has a quorum"),
        );
    }
    let Some(node) = &state.cluster else {
        // Not reached: the legacy single node does not serve the API (module docs).
        return error(
            ResponseError::UnsupportedVersion,
            "this broker is a single node without a metadata quorum".to_owned(),
        );
    };
    let described = match node.service.describe_quorum().await {
        Ok(d) => d,
        Err(e) => {
            return error(
                crate::cluster::admin::controller_error(&e).code,
                e.to_string(),
            )
        }
    };
    let replica = |r: &ReplicaDescription, leader: bool| {
        let log_end = if leader {
            described.last_log_index.map_or(0, |i| i as i64 + 1)
        } else {
            r.matched_index.map_or(-1, |i| i as i64 + 1)
        };
        ReplicaState::default()
            .with_replica_id(BrokerId(r.node_id as i32))
            .with_log_end_offset(log_end)
            .with_last_fetch_timestamp(-1)
            .with_last_caught_up_timestamp(-1)
    };
    let leader = described.leader;
    let partition = PartitionData::default()
        .with_partition_index(0)
        .with_leader_id(BrokerId(leader.map_or(-1, |l| l as i32)))
        .with_leader_epoch(described.term as i32)
        .with_high_watermark(described.high_watermark.map_or(-1, |h| h as i64 + 1))
        .with_current_voters(
            described
                .voters
                .iter()
                .map(|r| replica(r, Some(r.node_id) == leader))
                .collect(),
        )
        .with_observers(
            described
                .learners
                .iter()
                .map(|r| replica(r, false))
                .collect(),
        );
    let mut response = DescribeQuorumResponse::default().with_topics(vec![TopicData::default()
        .with_topic_name(TopicName(s(METADATA_TOPIC)))
        .with_partitions(vec![partition])]);
    let listener = state
        .config
        .cluster
        .controller_listener_names
        .first()
        .cloned()
        .unwrap_or_else(|| "CONTROLLER".to_owned());
    if version >= 2 {
        response.nodes = described
            .voters
            .iter()
            .chain(&described.learners)
            .filter_map(|r| {
                let (host, port) = r.addr.rsplit_once(':')?;
                Some(
                    Node::default()
                        .with_node_id(BrokerId(r.node_id as i32))
                        .with_listeners(vec![Listener::default()
                            .with_name(s(listener.clone()))
                            .with_host(s(host))
                            .with_port(port.parse().ok()?)]),
                )
            })
            .collect();
    }
    response
}
