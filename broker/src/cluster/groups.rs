//! The consumer-group coordinator in a cluster.
//!
//! Today every partition of `__consumer_offsets` is placed on one broker: as in Kafka, the
//! topic is created when a client first asks FindCoordinator, by the broker it asked
//! (the controller refuses other brokers' creates as TOPIC_ALREADY_EXISTS). Creating it
//! only then, not at start, also leaves time for an upgraded single-node data directory to
//! bring its own `__consumer_offsets`, committed offsets included, into the cluster (see
//! `upgrade`). That broker coordinates every group with the coordinator of a single node,
//! unchanged. FindCoordinator on any broker names the leader of the
//! group's `__consumer_offsets` partition, which is that broker; while it is down (with
//! replication factor 1 its partitions have no other replica) groups are unavailable
//! (COORDINATOR_NOT_AVAILABLE) and produce and fetch go on. Spreading the partitions over
//! the brokers, with each coordinator loading and unloading partitions as leadership
//! moves, comes with replication.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use sluice_metadata::controller::{CreateTopic, ReplicaAssignment};
use tokio::sync::watch;

use super::ClusterNode;
use crate::coordinator::handlers::CoordinatorNode;
use crate::coordinator::store::OFFSETS_TOPIC;
use crate::groups;
use crate::state::BrokerState;

/// How often the task looks again while waiting for the topic or its replicas.
const POLL: Duration = Duration::from_millis(200);

/// The broker coordinating groups: the leader of `__consumer_offsets` partition 0 (all
/// partitions share one broker, see the module docs), with its endpoint on this listener.
pub fn coordinator(node: &ClusterNode) -> Option<CoordinatorNode> {
    let image = node.image();
    let Some(partition) = image.partition_by_name(OFFSETS_TOPIC, 0) else {
        // The first FindCoordinator: ask the groups task to create the topic; the client
        // retries (COORDINATOR_NOT_AVAILABLE) meanwhile.
        node.offsets_topic_wanted.store(true, Ordering::Release);
        return None;
    };
    if !partition.has_leader() {
        return None;
    }
    let broker = image.broker(partition.leader)?;
    let endpoint = broker.endpoint(&node.listener_name)?;
    Some(CoordinatorNode {
        node_id: broker.id,
        host: endpoint.host.clone(),
        port: i32::from(endpoint.port),
    })
}

/// Creates `__consumer_offsets` if the cluster has none, and runs the coordinator here if
/// this broker leads it. Runs until shutdown.
pub async fn run(
    state: Arc<BrokerState>,
    node: Arc<ClusterNode>,
    mut shutdown: watch::Receiver<bool>,
) {
    // Until this broker turns out to be the coordinator, group requests sent here are
    // answered NOT_COORDINATOR, so clients ask FindCoordinator again.
    state.groups.set_not_coordinator(true).await;
    loop {
        if node.is_settled() {
            let image = node.image();
            match image.topic(OFFSETS_TOPIC) {
                None if node.offsets_topic_wanted.load(Ordering::Acquire) => {
                    create_offsets_topic(&state, &node).await
                }
                None => {}
                Some(topic) => {
                    let here = topic.partitions.iter().all(|p| p.leader == node.node_id);
                    let local = state
                        .topics
                        .get(OFFSETS_TOPIC)
                        .is_some_and(|t| t.partition_count() == topic.partitions.len());
                    if here && local {
                        break;
                    }
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
    state.groups.set_not_coordinator(false).await;
    if let Err(e) = groups::prepare(&state).await {
        tracing::error!(error = %e, "cannot prepare {OFFSETS_TOPIC}: consumer groups are unavailable");
        return;
    }
    tracing::info!("coordinating consumer groups");
    groups::run(state, shutdown).await;
}

async fn create_offsets_topic(state: &BrokerState, node: &ClusterNode) {
    let partitions = state.groups.offsets_topic_partitions().max(1);
    let topic = CreateTopic {
        name: OFFSETS_TOPIC.to_owned(),
        num_partitions: -1,
        replication_factor: -1,
        assignments: (0..partitions)
            .map(|partition| ReplicaAssignment {
                partition,
                replicas: vec![node.node_id],
            })
            .collect(),
        configs: groups::offsets_topic_overrides(),
        topic_id: None,
    };
    match node.service.create_topics(vec![topic]).await {
        Ok(committed) => match committed.value.into_iter().next() {
            Some(Ok(_)) => {
                tracing::info!(partitions, "created {OFFSETS_TOPIC} on this broker");
                let _ = node.wait_applied(committed.offset).await;
            }
            Some(Err(e)) => tracing::debug!(error = %e, "{OFFSETS_TOPIC} not created here"),
            None => {}
        },
        Err(e) => tracing::debug!(error = %e, "cannot create {OFFSETS_TOPIC} yet"),
    }
}
