//! The consumer-group coordinator in a cluster: each broker coordinates the groups of the
//! `__consumer_offsets` partitions it leads (Kafka's `GroupCoordinator.onElection` /
//! `onResignation`, driven by metadata image changes).
//!
//! - **The topic.** As in Kafka, `__consumer_offsets` is created when a client first asks
//!   FindCoordinator (or names the topic in Metadata), by the broker it asked, with
//!   `offsets.topic.num.partitions` partitions placed by the controller like any topic's
//!   (leaders spread over the unfenced brokers) and the replication factor
//!   min(`offsets.topic.replication.factor`, live brokers). Creating it only then, and
//!   only once this broker is settled, also leaves time for an upgraded single-node data
//!   directory to bring its own `__consumer_offsets` (every partition on that node,
//!   committed offsets included) into the cluster (see `upgrade`); the controller refuses
//!   a second create as TOPIC_ALREADY_EXISTS. The partition count is the topic's in the
//!   image from then on, whatever `offsets.topic.num.partitions` says.
//! - **FindCoordinator** ([`coordinator`]) on any broker names the leader of the key's
//!   partition, `abs(hash(key)) % partitions` (`coordinator::store::partition_for`, Kafka's
//!   `Utils.abs(groupId.hashCode) % groupMetadataTopicPartitionCount`), or answers
//!   COORDINATOR_NOT_AVAILABLE while it has no leader (no in-sync replica of it is up)
//!   or while this broker failed to load it. With several replicas (the default
//!   `offsets.topic.replication.factor` is 3) the controller moves leadership to another
//!   in-sync replica, and that broker's coordinator takes the partition's groups.
//! - **Ownership** ([`run`]): after every applied metadata change (and every
//!   200 ms), the partitions this broker leads in the image and holds locally are the
//!   ones its coordinator serves. A partition newly led (or led at a new leader epoch,
//!   whose records another leader may have written) is replayed on a blocking thread
//!   while its groups answer COORDINATOR_LOAD_IN_PROGRESS, then adopted; a partition no
//!   longer led is unloaded: its groups' state is dropped, their parked JoinGroup and
//!   SyncGroup requests answer NOT_COORDINATOR, and so do their later requests, so
//!   clients ask FindCoordinator again. A broker that is fenced (or not settled yet)
//!   serves no partition. Requests for groups of partitions never taken answer
//!   NOT_COORDINATOR; ListGroups lists the groups of the loaded partitions only.
//! - Writes (commits, group metadata, tombstones) go only to partitions loaded here, since
//!   only their groups exist here.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use sluice_metadata::controller::CreateTopic;
use sluice_metadata::MetadataImage;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::ClusterNode;
use crate::coordinator::handlers::CoordinatorNode;
use crate::coordinator::store::{partition_for, OFFSETS_TOPIC};
use crate::groups::{self, LoadError};
use crate::state::BrokerState;

/// How often ownership is checked without a metadata change (a local replica created
/// after the image that placed it, a retry after a failed create).
const POLL: Duration = Duration::from_millis(200);

/// The replication factor `__consumer_offsets` is created with: the configured one, but
/// no more than the cluster has brokers (`cluster_size`: the larger of the registered
/// brokers and, on combined broker + controller nodes, the quorum's voters; a single
/// node gets one replica), at least 1.
/// The topic is created only once that many brokers are live ([`create_offsets_topic`]),
/// as Kafka's "internal topic creation will fail until the cluster size meets this
/// replication factor": a FindCoordinator that reaches the first node of a starting
/// 3-node cluster must not leave the groups' offsets on one replica for good.
pub fn offsets_replication_factor(configured: i16, cluster_size: usize) -> i16 {
    let size = i16::try_from(cluster_size).unwrap_or(i16::MAX);
    configured.min(size).max(1)
}

/// The coordinator of the group (or transactional id) `key`: the leader of its
/// `__consumer_offsets` partition, with its endpoint on this listener. None
/// (COORDINATOR_NOT_AVAILABLE) while the topic does not exist (this asks for it), the
/// partition has no leader, or this broker leads it but could not load it (`failed`) or
/// steps aside from it (`routing::steps_aside`, when `full_and_stale`).
pub fn coordinator(
    node: &ClusterNode,
    key: &str,
    full_and_stale: bool,
    failed: impl Fn(i32) -> bool,
) -> Option<CoordinatorNode> {
    let image = node.image();
    let Some(topic) = image.topic(OFFSETS_TOPIC) else {
        // The first FindCoordinator: ask the groups task to create the topic; the client
        // retries (COORDINATOR_NOT_AVAILABLE) meanwhile.
        node.offsets_topic_wanted.store(true, Ordering::Release);
        return None;
    };
    let count = i32::try_from(topic.partitions.len()).ok()?;
    let index = partition_for(key, count);
    let partition = topic.partition(index)?;
    if !partition.has_leader()
        || (partition.leader == node.node_id && failed(index))
        || super::routing::steps_aside(node.node_id, &image, partition, full_and_stale)
    {
        return None;
    }
    let broker = image.broker(partition.leader)?;
    let endpoint = broker.endpoint(&node.client_listener_name())?;
    Some(CoordinatorNode {
        node_id: broker.id,
        host: endpoint.host.clone(),
        port: i32::from(endpoint.port),
    })
}

/// The `__consumer_offsets` partitions `me` leads in `image` (partition -> leader epoch),
/// among those `local` says this broker holds.
pub fn leading(image: &MetadataImage, me: i32, local: impl Fn(i32) -> bool) -> BTreeMap<i32, i32> {
    let Some(topic) = image.topic(OFFSETS_TOPIC) else {
        return BTreeMap::new();
    };
    topic
        .partitions
        .iter()
        .enumerate()
        .filter_map(|(index, p)| {
            let index = i32::try_from(index).ok()?;
            (p.leader == me && local(index)).then_some((index, p.leader_epoch))
        })
        .collect()
}

/// Creates `__consumer_offsets` when a client asked for a coordinator and the cluster has
/// none, and keeps the partitions this broker's coordinator serves those it leads (see
/// the module docs); runs the coordinator's timers. Until shutdown.
pub async fn run(
    state: Arc<BrokerState>,
    node: Arc<ClusterNode>,
    mut shutdown: watch::Receiver<bool>,
) {
    // Until this broker takes a partition, group requests sent here answer
    // NOT_COORDINATOR, so clients ask FindCoordinator again.
    state
        .groups
        .set_unowned(state.groups.offsets_topic_partitions())
        .await;
    let mut changes = node.service.subscribe();
    // Dropped (aborting the loads: none may append after a simulated crash) when this
    // task ends.
    let mut loads: JoinSet<()> = JoinSet::new();
    let mut timer_shutdown = shutdown.clone();
    let ownership = async {
        loop {
            take_partitions(&state, &node, &mut loads).await;
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { return },
                () = tokio::time::sleep(POLL) => {}
                Some(_) = loads.join_next(), if !loads.is_empty() => {}
            }
        }
    };
    tokio::select! {
        () = ownership => {}
        () = state.groups.timer_loop(&mut timer_shutdown) => {}
        _ = shutdown.wait_for(|s| *s) => {}
    }
}

/// One pass: creates the topic if wanted, then takes and gives up partitions as the image
/// says, starting the loads of the partitions taken.
async fn take_partitions(state: &Arc<BrokerState>, node: &ClusterNode, loads: &mut JoinSet<()>) {
    // Settled first, then the image (as `reconcile`): an image read before could lack the
    // adopted topics.
    let settled = node.is_settled();
    let image = node.image();
    let Some(topic) = image.topic(OFFSETS_TOPIC) else {
        if settled && node.offsets_topic_wanted.load(Ordering::Acquire) {
            create_offsets_topic(state, node, &image).await;
        }
        return;
    };
    let count = i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX);
    if !state.groups.set_unowned(count).await {
        tracing::error!(
            partitions = count,
            "{OFFSETS_TOPIC} changed its partition count: groups would move between \
             partitions; keeping the partitions served at the old count"
        );
        return;
    }
    let local = state.topics.get_by_id(topic.id);
    let leading = match (&local, settled) {
        (Some(local), true) => {
            state.groups.set_topic(local.clone());
            leading(&image, node.node_id, |p| local.partition(p).is_some())
        }
        // Fenced, or not settled: this broker serves no partition.
        _ => BTreeMap::new(),
    };
    for (partition, epoch) in state.groups.take_partitions(&leading).await {
        let Some((local, replica)) = local
            .as_ref()
            .and_then(|t| t.partition(partition).map(|p| (t, p)))
        else {
            continue;
        };
        // The coordinator's writes wait for the high watermark, which needs this broker
        // to lead the partition at the epoch taken (the leader task may not have passed yet).
        crate::replication::leader::ensure_leading(
            &replica,
            node.node_id,
            local.id,
            &image,
            crate::replication::leader::min_insync(local),
        );
        tracing::debug!(
            partition,
            leader_epoch = epoch,
            "loading {OFFSETS_TOPIC}-{partition}"
        );
        let state = state.clone();
        loads.spawn(async move {
            let replaying = state.clone();
            let loaded = tokio::task::spawn_blocking(move || {
                replaying.groups.replay_for_adoption(&replica, count)
            })
            .await
            .unwrap_or_else(|e| {
                Err(LoadError::Panicked {
                    partition,
                    message: e.to_string(),
                })
            });
            state.groups.adopt(partition, epoch, loaded).await;
        });
    }
}

async fn create_offsets_topic(state: &BrokerState, node: &ClusterNode, image: &MetadataImage) {
    let partitions = state.groups.offsets_topic_partitions().max(1);
    // The voters count as brokers only where this node is a combined broker + controller
    // (then its peers are too, as deployed here); the controllers of a split deployment
    // hold no replicas.
    let cluster = &state.config.cluster;
    let voter_brokers = if cluster.is_broker() && cluster.is_controller() {
        cluster.voters.len()
    } else {
        0
    };
    let cluster_size = image.brokers().count().max(voter_brokers);
    let replication_factor =
        offsets_replication_factor(state.config.offsets_topic_replication_factor, cluster_size);
    let usable = image.usable_brokers().count();
    if usable < usize::try_from(replication_factor).unwrap_or(usize::MAX) {
        // Asked again at the next FindCoordinator (clients retry COORDINATOR_NOT_AVAILABLE).
        tracing::debug!(
            replication_factor,
            usable,
            "{OFFSETS_TOPIC} waits for as many live brokers as its replication factor"
        );
        return;
    }
    let topic = CreateTopic {
        name: OFFSETS_TOPIC.to_owned(),
        num_partitions: partitions,
        replication_factor,
        // Placed by the controller, as any topic: leaders spread over the brokers.
        assignments: Vec::new(),
        configs: groups::offsets_topic_overrides(),
        topic_id: None,
    };
    match node.service.create_topics(vec![topic]).await {
        Ok(committed) => match committed.value.into_iter().next() {
            Some(Ok(_)) => {
                tracing::info!(partitions, replication_factor, "created {OFFSETS_TOPIC}");
                let _ = node.wait_applied(committed.offset).await;
            }
            Some(Err(e)) => tracing::debug!(error = %e, "{OFFSETS_TOPIC} not created here"),
            None => {}
        },
        Err(e) => tracing::debug!(error = %e, "cannot create {OFFSETS_TOPIC} yet"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::test_images::{brokers, image, partition, topic};
    use uuid::Uuid;

    #[test]
    fn a_broker_serves_the_partitions_it_leads_and_holds() {
        let id = Uuid::from_u128(7);
        let mut records = brokers(3);
        records.push(topic(OFFSETS_TOPIC, id));
        records.push(partition(id, 0, &[1], &[1], 1, 0));
        records.push(partition(id, 1, &[2], &[2], 2, 3));
        records.push(partition(id, 2, &[2], &[2], 2, 1));
        records.push(partition(id, 3, &[3], &[3], -1, 2));
        let image = image(&records);
        assert_eq!(
            leading(&image, 2, |_| true),
            BTreeMap::from([(1, 3), (2, 1)])
        );
        // A partition led here but not created locally yet is not taken.
        assert_eq!(leading(&image, 2, |p| p != 2), BTreeMap::from([(1, 3)]));
        assert_eq!(leading(&image, 1, |_| true), BTreeMap::from([(0, 0)]));
        // Offline (no leader): nobody serves it.
        assert!(leading(&image, 3, |_| true).is_empty());
        assert!(leading(&MetadataImage::new(), 1, |_| true).is_empty());
    }

    #[test]
    fn the_replication_factor_is_capped_by_the_cluster_size() {
        assert_eq!(offsets_replication_factor(3, 1), 1);
        assert_eq!(offsets_replication_factor(3, 2), 2);
        assert_eq!(offsets_replication_factor(3, 5), 3);
        assert_eq!(offsets_replication_factor(1, 3), 1);
        assert_eq!(offsets_replication_factor(3, 0), 1);
    }
}
