//! Metadata in a cluster, answered from this broker's metadata image (KRaft's
//! `KRaftMetadataCache`): the live brokers with their endpoints on this listener, the
//! cluster id, the controller, and per partition the leader, leader epoch, replicas, ISR
//! and offline replicas. Every broker that applied the same metadata offset answers the
//! same. Unknown topics are created through the controller when the request allows it,
//! `auto.create.topics.enable` is on and this broker is settled (unfenced, its own data
//! adopted; until then LEADER_NOT_AVAILABLE, which clients retry); the request waits for
//! the creation at most [`AUTO_CREATE_WAIT`]. A full voter whose image has stopped answers
//! no leader for the partitions it [steps aside](super::routing::steps_aside) from.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use sluice_metadata::controller::CreateTopic;
use sluice_metadata::image::TopicImage;
use sluice_metadata::MetadataImage;

use super::ClusterNode;
use crate::coordinator::store::OFFSETS_TOPIC;
use crate::handlers::metadata::{Wanted, ALL_TOPIC_OPERATIONS, OPERATIONS_NOT_REQUESTED};
use crate::state::BrokerState;
use crate::topics::{is_internal, validate_topic_name};

/// Answers a Metadata request in a cluster.
pub async fn handle(
    state: &BrokerState,
    node: &Arc<ClusterNode>,
    request: &MetadataRequest,
    version: i16,
) -> MetadataResponse {
    let include_ops = version >= 8 && request.include_topic_authorized_operations;
    let all = match &request.topics {
        None => true,
        Some(list) => version == 0 && list.is_empty(),
    };
    let mut wanted = Vec::new();
    if !all {
        let mut seen = HashSet::new();
        for topic in request.topics.iter().flatten() {
            let entry = Wanted::of(topic);
            if let Wanted::Name(name) = &entry {
                if !seen.insert(name.clone()) {
                    continue;
                }
            }
            wanted.push(entry);
        }
    }
    let mut image = node.image();
    // Not before this broker is settled: while an upgraded single-node data directory's
    // topics are being adopted (see `upgrade`), creating one here would shadow it.
    let wants_create = state.config.auto_create_topics && request.allow_auto_topic_creation;
    let auto_create = wants_create && node.is_settled();
    // Names this broker refuses to auto-create (past its partition limit, see
    // `admin::check_local_limit`), with the error their answer carries.
    let mut refused: std::collections::HashMap<String, ResponseError> = Default::default();
    if auto_create {
        let missing: Vec<CreateTopic> = wanted
            .iter()
            .filter_map(|w| match w {
                // Made by the group coordinator's broker, with its own settings (see
                // `cluster::groups`); asking for it is asking for a coordinator.
                Wanted::Name(name) if name == OFFSETS_TOPIC => {
                    node.offsets_topic_wanted
                        .store(true, std::sync::atomic::Ordering::Release);
                    None
                }
                Wanted::Name(name)
                    if image.topic(name).is_none() && validate_topic_name(name).is_ok() =>
                {
                    let adding = state.config.num_partitions.max(0) as usize;
                    if let Err(e) = super::admin::check_local_limit(state, node, name, adding) {
                        tracing::debug!(topic = %name, error = %e.message, "not auto-created");
                        refused.insert(name.clone(), e.code);
                        return None;
                    }
                    Some(CreateTopic {
                        name: name.clone(),
                        num_partitions: -1,
                        replication_factor: -1,
                        assignments: Vec::new(),
                        configs: Default::default(),
                        topic_id: None,
                    })
                }
                _ => None,
            })
            .collect();
        if let Some(offset) = auto_create_topics(node, missing).await {
            match node.wait_applied(offset).await {
                Ok(applied) => image = applied,
                Err(e) => {
                    tracing::debug!(error = %e, "auto-created topics not applied here in time")
                }
            }
        }
    }
    let topic_answer = |topic: &TopicImage| describe_topic(state, node, &image, topic, include_ops);
    let topics: Vec<MetadataResponseTopic> = if all {
        image.topics().map(topic_answer).collect()
    } else {
        wanted
            .iter()
            .map(|w| match w {
                Wanted::Name(name) => match image.topic(name) {
                    Some(topic) => topic_answer(topic),
                    None => {
                        let code = if validate_topic_name(name).is_err() {
                            ResponseError::InvalidTopicException
                        } else if let Some(&code) = refused.get(name) {
                            code
                        } else if wants_create {
                            // Being created (or the create failed, or this broker is not
                            // settled yet): the client retries.
                            ResponseError::LeaderNotAvailable
                        } else {
                            ResponseError::UnknownTopicOrPartition
                        };
                        MetadataResponseTopic::default()
                            .with_error_code(code.code())
                            .with_name(Some(TopicName(StrBytes::from_string(name.clone()))))
                            .with_topic_authorized_operations(OPERATIONS_NOT_REQUESTED)
                    }
                },
                Wanted::Id(id) => match image.topic_by_id(*id) {
                    Some(topic) => topic_answer(topic),
                    None => MetadataResponseTopic::default()
                        .with_error_code(ResponseError::UnknownTopicId.code())
                        .with_topic_id(*id)
                        .with_topic_authorized_operations(OPERATIONS_NOT_REQUESTED),
                },
                Wanted::Invalid => MetadataResponseTopic::default()
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_topic_authorized_operations(OPERATIONS_NOT_REQUESTED),
            })
            .collect()
    };
    let brokers = image
        .live_broker_addresses(&node.client_listener_name())
        .into_iter()
        .map(|b| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(b.id))
                .with_host(StrBytes::from_string(b.host.to_owned()))
                .with_port(i32::from(b.port))
                .with_rack(b.rack.map(|r| StrBytes::from_string(r.to_owned())))
        })
        .collect();
    let controller = node.controller_id_for_clients(&image);
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(
            image
                .cluster_id()
                .map(|id| StrBytes::from_string(id.to_owned())),
        )
        .with_controller_id(BrokerId(controller))
        .with_topics(topics)
        .with_cluster_authorized_operations(OPERATIONS_NOT_REQUESTED)
}

/// How long a Metadata request waits for the topics it auto-creates; past this it answers
/// LEADER_NOT_AVAILABLE (clients retry) while the creation goes on. Kafka creates them in
/// the background and never waits.
const AUTO_CREATE_WAIT: Duration = Duration::from_millis(500);

/// Creates `missing` through the controller in a task of its own (each name at most once
/// at a time, so clients retrying Metadata during an election do not queue one creation
/// per retry); the metadata offset to wait for if it committed within [`AUTO_CREATE_WAIT`].
async fn auto_create_topics(node: &Arc<ClusterNode>, missing: Vec<CreateTopic>) -> Option<i64> {
    let missing: Vec<CreateTopic> = {
        let mut creating = node.auto_creating.lock().unwrap_or_else(|p| p.into_inner());
        missing
            .into_iter()
            .filter(|t| creating.insert(t.name.clone()))
            .collect()
    };
    if missing.is_empty() {
        return None;
    }
    let task_node = node.clone();
    let task = tokio::spawn(async move {
        let names: Vec<String> = missing.iter().map(|t| t.name.clone()).collect();
        let outcome = task_node.service.create_topics(missing).await;
        let mut creating = task_node
            .auto_creating
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for name in &names {
            creating.remove(name);
        }
        match outcome {
            Ok(committed) => Some(committed.offset),
            Err(e) => {
                tracing::debug!(error = %e, topics = ?names, "auto-creating topics failed");
                None
            }
        }
    });
    match tokio::time::timeout(AUTO_CREATE_WAIT, task).await {
        Ok(Ok(offset)) => offset,
        _ => None,
    }
}

/// One topic of the answer, from the image; a local replica whose log went offline (a
/// damaged or unreadable disk) is shown offline, and a partition led here then answers
/// KAFKA_STORAGE_ERROR, as Kafka's broker does for a failed log directory. (Other brokers
/// learn of it only once replicas report log-directory failures to the controller.)
fn describe_topic(
    state: &BrokerState,
    node: &ClusterNode,
    image: &MetadataImage,
    topic: &TopicImage,
    include_ops: bool,
) -> MetadataResponseTopic {
    let local = state.topics.get(&topic.name).filter(|t| t.id == topic.id);
    let full_and_stale = super::routing::full_and_stale(state, node);
    let partitions = topic
        .partitions
        .iter()
        .enumerate()
        .map(|(index, p)| {
            let ids = |v: &[i32]| v.iter().map(|&b| BrokerId(b)).collect::<Vec<_>>();
            let offline_here = p.replicas.contains(&node.node_id)
                && local
                    .as_ref()
                    .and_then(|t| t.partition(index as i32))
                    .is_some_and(|local| local.log.is_offline());
            let mut offline = image.offline_replicas(p);
            let mut isr = p.isr.clone();
            if offline_here {
                isr.retain(|&b| b != node.node_id);
                if !offline.contains(&node.node_id) {
                    offline.push(node.node_id);
                }
            }
            let aside = super::routing::steps_aside(node.node_id, image, p, full_and_stale);
            let error = if offline_here && p.leader == node.node_id {
                ResponseError::KafkaStorageError.code()
            } else if p.has_leader() && !aside {
                0
            } else {
                ResponseError::LeaderNotAvailable.code()
            };
            MetadataResponsePartition::default()
                .with_error_code(error)
                .with_partition_index(index as i32)
                .with_leader_id(BrokerId(if aside { -1 } else { p.leader }))
                .with_leader_epoch(p.leader_epoch)
                .with_replica_nodes(ids(&p.replicas))
                .with_isr_nodes(ids(&isr))
                .with_offline_replicas(ids(&offline))
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(topic.name.clone()))))
        .with_topic_id(topic.id)
        .with_is_internal(is_internal(&topic.name))
        .with_partitions(partitions)
        .with_topic_authorized_operations(if include_ops {
            ALL_TOPIC_OPERATIONS
        } else {
            OPERATIONS_NOT_REQUESTED
        })
}
