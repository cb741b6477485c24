//! A broker in a cluster: the metadata layer it embeds and what keeps its local state in
//! line with the cluster's metadata (KRaft's `BrokerServer` shape).
//!
//! - [`ClusterNode`] (this file): starts the node's metadata layer ([`MetadataNode`]): on a
//!   voter (`process.roles` with `controller`) the [`MetadataService`] (the metadata quorum
//!   member and, when elected, the active controller) with its directory
//!   `<log.dirs>/__cluster_metadata-0`, serving the controller listener; on a broker-only
//!   node a [`MetadataObserver`], which follows the metadata by fetching it from the voters
//!   and keeps nothing on disk. It holds what the request handlers ask of the cluster: the
//!   metadata image, this broker's epoch and whether it is fenced. A controller-only node
//!   has a `ClusterNode` too, but no client listener and none of the broker tasks below.
//! - [`lifecycle`]: registration with the active controller at start, heartbeats, fencing
//!   and unfencing, and re-registration after the controller forgot this broker.
//! - [`reconcile`]: after each applied metadata change, makes the local replicas match the
//!   image: creates the logs of partitions assigned here, deletes the ones whose topic was
//!   deleted, sets aside strays, applies topic configs.
//! - [`routing`]: for Produce, Fetch, ListOffsets and DeleteRecords, whether this broker
//!   leads a partition, and if not, the leader to name (NOT_LEADER_OR_FOLLOWER with
//!   KIP-951's hints).
//!
//! Every node runs this, the zero-config single node too (a cluster of one). Only tests
//! start the single-node broker of earlier releases without it
//! (`BrokerConfig::legacy_single_node`), to write the data directories `upgrade` adopts.

pub mod admin;
pub mod describe;
pub mod groups;
pub mod lifecycle;
pub mod metadata;
pub mod producer_ids;
pub mod reconcile;
pub mod routing;
#[cfg(test)]
pub(crate) mod test_images;
pub mod upgrade;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sluice_controller::{
    MetadataNode, MetadataObserver, MetadataService, MetadataServiceConfig, ObserverConfig,
};
use sluice_metadata::records::{Endpoint, SecurityProtocol as RecordProtocol};
use sluice_metadata::{ControllerConfig, MetadataImage};
use sluice_quorum::QuorumConfig;
use tokio::net::TcpListener;
use uuid::Uuid;

use crate::config::cluster::{ClusterConfig, SecurityProtocol};
use crate::config::BrokerConfig;
use crate::errors::BrokerError;
use crate::topics::AdminError;

/// The directory of the metadata quorum inside the data directory (Kafka's
/// `__cluster_metadata-0`). The topic registry never loads it as a topic.
pub const METADATA_DIR: &str = "__cluster_metadata-0";

/// One broker's membership of the cluster. See the module docs.
pub struct ClusterNode {
    pub service: MetadataNode,
    pub node_id: i32,
    /// Whether this node has the broker role (registers, hosts partitions, serves
    /// clients); `false` on a controller-only node.
    pub is_broker: bool,
    /// The client listener this broker serves, whose endpoints Metadata answers name.
    pub listener_name: String,
    /// This broker's advertised endpoints, as registered.
    pub endpoints: Vec<Endpoint>,
    /// `broker.rack`.
    pub rack: Option<String>,
    /// New at every start: tells the controller a restarted broker from a retry.
    pub incarnation_id: Uuid,
    /// The incarnation that last ran on this data directory (see
    /// `datadir::swap_incarnation`); `None` on a first start.
    pub previous_incarnation_id: Option<Uuid>,
    /// The epoch of this broker's registration; -1 until registered.
    broker_epoch: AtomicI64,
    /// Whether the controller has this broker fenced (true until the first heartbeat
    /// answer says otherwise).
    fenced: AtomicBool,
    /// Set at the first unfencing (see `wait_caught_up`).
    caught_up: tokio::sync::watch::Sender<bool>,
    /// The offset of the last image the reconciler made the local replicas match (see
    /// `wait_applied`).
    reconciled: tokio::sync::watch::Sender<i64>,
    /// Whether this data directory's own topics are part of the cluster (see `upgrade`);
    /// until then nothing local is deleted.
    settled: AtomicBool,
    /// Whether this start upgrades a single-node data directory (see `upgrade`).
    pub upgrading: bool,
    /// An adoption attempt is running (see `lifecycle`).
    pub(crate) adopting: AtomicBool,
    /// `broker.heartbeat.interval.ms`.
    pub heartbeat_interval: Duration,
    /// `broker.session.timeout.ms`.
    pub session_timeout: Duration,
    /// How long a request waits for this broker's image to reach a committed change.
    pub apply_timeout: Duration,
    /// Producer ids for InitProducerId, from the controller's blocks.
    pub producer_ids: producer_ids::ProducerIdBlocks,
    /// A client asked for a group coordinator while the cluster has no
    /// `__consumer_offsets` (see `groups`).
    pub offsets_topic_wanted: AtomicBool,
    /// Topics being auto-created by Metadata requests (see `metadata`).
    pub(crate) auto_creating: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Why the reconciler could not create a local replica, by (topic id, partition),
    /// until it succeeds (see `admin::undo_if_not_created_here`).
    replica_errors: std::sync::Mutex<std::collections::HashMap<(Uuid, i32), AdminError>>,
}

impl ClusterNode {
    /// Starts the metadata layer of this node: on a voter, the quorum member, serving its
    /// peers on `controller_listener` (bound by the caller first, so that a port in use
    /// stops the start before Raft runs); on a broker-only node, the observer.
    /// `cluster_id` is an id to give the cluster if this node writes its first metadata
    /// (`None`: a random one). `listener_name` is the listener other brokers use, and
    /// `listeners` every client listener, each registered with its advertised address
    /// (none on a controller-only node).
    pub async fn start(
        config: &BrokerConfig,
        controller_listener: Option<TcpListener>,
        listener_name: &str,
        listeners: &[std::sync::Arc<crate::security::ClientListener>],
        cluster_id: Option<&str>,
        upgrading: bool,
    ) -> Result<ClusterNode, BrokerError> {
        let cluster = &config.cluster;
        let service = if cluster.is_controller() {
            let voters = resolve_voters(cluster).await?;
            let dir = config.data_dir.join(METADATA_DIR);
            let mut quorum = QuorumConfig::new(cluster.node_id as u64, voters, &dir);
            let timeouts = cluster.raft_timeouts();
            quorum.heartbeat_interval = timeouts.heartbeat_interval;
            quorum.election_timeout_min = timeouts.election_timeout_min;
            quorum.election_timeout_max = timeouts.election_timeout_max;
            let mut service_config = MetadataServiceConfig::new(quorum);
            service_config.controller = ControllerConfig {
                session_timeout_ms: cluster.broker_session_timeout_ms,
                default_num_partitions: config.num_partitions,
                default_replication_factor: config.default_replication_factor,
                unclean_leader_election_enable: config
                    .topic_defaults
                    .unclean_leader_election_enable,
                ..ControllerConfig::default()
            };
            service_config.preferred_leader_check_interval = config
                .auto_leader_rebalance_enable
                .then(|| Duration::from_millis(config.leader_imbalance_check_interval_ms));
            service_config.cluster_id = cluster_id.map(str::to_owned);
            let service = MetadataService::start(service_config)
                .await
                .map_err(|e| BrokerError::Cluster(format!("start the metadata quorum: {e}")))?;
            if let Some(listener) = controller_listener {
                service.serve(listener);
            }
            MetadataNode::Voter(service)
        } else {
            // Validation gave every voter an address (a broker-only node names them all).
            let voters: BTreeMap<u64, String> = cluster
                .voters
                .iter()
                .filter_map(|(&id, addr)| Some((id as u64, addr.as_ref()?.to_string())))
                .collect();
            let observer =
                MetadataObserver::start(ObserverConfig::new(cluster.node_id as u64, voters))
                    .map_err(|e| {
                        BrokerError::Cluster(format!("follow the metadata quorum: {e}"))
                    })?;
            MetadataNode::Observer(observer)
        };
        let endpoints = if cluster.is_broker() {
            listeners
                .iter()
                .map(|l| Endpoint {
                    listener: l.name.clone(),
                    host: l.advertised_host.clone(),
                    port: u16::try_from(l.advertised_port).unwrap_or(0),
                    security_protocol: record_protocol(l.protocol),
                })
                .collect()
        } else {
            Vec::new()
        };
        // The caller holds the data directory's lock (see `datadir::swap_incarnation`).
        let incarnation_id = Uuid::new_v4();
        let previous_incarnation_id = if cluster.is_broker() {
            crate::datadir::swap_incarnation(&config.data_dir, incarnation_id)
        } else {
            None
        };
        Ok(ClusterNode {
            service,
            node_id: cluster.node_id,
            is_broker: cluster.is_broker(),
            listener_name: listener_name.to_owned(),
            endpoints,
            rack: cluster.rack.clone(),
            incarnation_id,
            previous_incarnation_id,
            broker_epoch: AtomicI64::new(-1),
            fenced: AtomicBool::new(true),
            settled: AtomicBool::new(!upgrading),
            caught_up: tokio::sync::watch::channel(false).0,
            reconciled: tokio::sync::watch::channel(-1).0,
            adopting: AtomicBool::new(false),
            upgrading,
            heartbeat_interval: Duration::from_millis(cluster.broker_heartbeat_interval_ms),
            session_timeout: Duration::from_millis(cluster.broker_session_timeout_ms),
            apply_timeout: Duration::from_secs(10),
            producer_ids: producer_ids::ProducerIdBlocks::default(),
            // A single node creates it at start, as before it was a cluster of one;
            // a cluster creates it at the first FindCoordinator, as Kafka.
            offsets_topic_wanted: AtomicBool::new(cluster.single_node()),
            auto_creating: Default::default(),
            replica_errors: Default::default(),
        })
    }

    /// The latest applied metadata image.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.service.image()
    }

    /// The epoch of this broker's registration, -1 before it registered.
    pub fn broker_epoch(&self) -> i64 {
        self.broker_epoch.load(Ordering::Acquire)
    }

    pub(crate) fn set_broker_epoch(&self, epoch: i64) {
        self.broker_epoch.store(epoch, Ordering::Release);
    }

    /// Whether the controller has this broker fenced (it then leads nothing).
    pub fn is_fenced(&self) -> bool {
        self.fenced.load(Ordering::Acquire)
    }

    pub(crate) fn set_fenced(&self, fenced: bool) {
        self.fenced.store(fenced, Ordering::Release);
        if !fenced {
            self.caught_up.send_replace(true);
        }
    }

    /// Waits until this broker has caught up with the metadata once (its first unfencing),
    /// as Kafka's broker does before it serves clients: until then its image may lack
    /// brokers and topics, and a client would take that for the cluster's state. `false`
    /// if the broker began to shut down first.
    pub async fn wait_caught_up(&self, shutdown: &mut tokio::sync::watch::Receiver<bool>) -> bool {
        let mut caught_up = self.caught_up.subscribe();
        tokio::select! {
            ready = caught_up.wait_for(|c| *c) => ready.is_ok(),
            _ = shutdown.wait_for(|s| *s) => false,
        }
    }

    /// Whether this broker is unfenced and its own data is part of the cluster: only then
    /// may local replicas the metadata does not assign be removed, and the group
    /// coordinator start.
    pub fn is_settled(&self) -> bool {
        !self.is_fenced() && self.settled.load(Ordering::Acquire)
    }

    pub(crate) fn set_settled(&self) {
        self.settled.store(true, Ordering::Release);
    }

    /// The listener whose addresses answers on the current connection give: the one the
    /// request came in on (Kafka answers per listener), else the registered inter-broker
    /// listener (requests not on a client connection, and tests).
    pub fn client_listener_name(&self) -> std::borrow::Cow<'_, str> {
        match crate::server::current_listener() {
            Some(l) => std::borrow::Cow::Owned(l.name.clone()),
            None => std::borrow::Cow::Borrowed(self.listener_name.as_str()),
        }
    }

    /// The `controller_id` of Metadata and DescribeCluster answers: a live broker clients
    /// can reach, which forwards admin requests to the active controller (Kafka in KRaft
    /// mode names a random one). The active controller's node when it is a live broker (so
    /// operators and tests see where it is), else this broker once unfenced, else another
    /// live broker; -1 only when no broker is live. Never -1 during an election, which
    /// would hold the Java AdminClient's requests until it ends. A controller-only active
    /// controller is never named: it is no registered broker, so not live.
    pub fn controller_id_for_clients(&self, image: &MetadataImage) -> i32 {
        let live = |id: i32| {
            image
                .broker(id)
                .is_some_and(|b| !b.fenced && b.endpoint(&self.listener_name).is_some())
        };
        if let Some(leader) = self
            .service
            .controller_leader()
            .and_then(|id| i32::try_from(id).ok())
            .filter(|&id| live(id))
        {
            return leader;
        }
        if live(self.node_id) {
            return self.node_id;
        }
        image
            .live_broker_addresses(&self.listener_name)
            .first()
            .map_or(-1, |b| b.id)
    }

    /// Waits until this broker's image has applied `offset` (a change a controller
    /// answer committed) and the reconciler has made the local replicas match it, so that
    /// the client's next request here sees the change: a topic created through this
    /// broker takes produce requests here at once (Kafka's broker answers CreateTopics
    /// before its own replicas exist; clients retry NOT_LEADER_OR_FOLLOWER, but tools that
    /// create and then write at once should not need to).
    pub async fn wait_applied(&self, offset: i64) -> Result<Arc<MetadataImage>, BrokerError> {
        let deadline = tokio::time::Instant::now() + self.apply_timeout;
        let image = self
            .service
            .wait_for_offset(offset, self.apply_timeout)
            .await
            .map_err(|e| BrokerError::Cluster(e.to_string()))?;
        let mut reconciled = self.reconciled.subscribe();
        let waited = tokio::time::timeout_at(deadline, async {
            // The reconciler never stops before the sender (it lives in `self`) is dropped.
            let _ = reconciled.wait_for(|&r| r >= offset).await;
        })
        .await;
        match waited {
            Ok(()) => Ok(image),
            Err(_) => Err(BrokerError::Cluster(format!(
                "the local replicas did not follow metadata offset {offset} within {:?}",
                self.apply_timeout
            ))),
        }
    }

    /// Records why the local replica `partition` of topic `id` could not be created
    /// (`None`: it was, or it is gone).
    pub(crate) fn set_replica_error(&self, id: Uuid, partition: i32, error: Option<AdminError>) {
        let mut errors = self
            .replica_errors
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match error {
            Some(e) => {
                errors.insert((id, partition), e);
            }
            None => {
                errors.remove(&(id, partition));
            }
        }
    }

    /// Why the local replica `partition` of topic `id` could not be created, if it could not.
    pub fn replica_error(&self, id: Uuid, partition: i32) -> Option<AdminError> {
        self.replica_errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(id, partition))
            .cloned()
    }

    /// The metadata offset the local replicas last followed (see [`Self::set_reconciled`]):
    /// changes once the reconciler created or removed the replicas of a change.
    pub(crate) fn subscribe_reconciled(&self) -> tokio::sync::watch::Receiver<i64> {
        self.reconciled.subscribe()
    }

    /// Called by the reconciler after a pass over the image at `offset`.
    pub(crate) fn set_reconciled(&self, offset: i64) {
        self.reconciled.send_if_modified(|r| {
            let newer = offset > *r;
            if newer {
                *r = offset;
            }
            newer
        });
    }
}

/// `controller.quorum.voters` as socket addresses. The sole voter of a single-node quorum
/// may have no address (it never dials anyone).
async fn resolve_voters(cluster: &ClusterConfig) -> Result<BTreeMap<u64, SocketAddr>, BrokerError> {
    let mut voters = BTreeMap::new();
    for (&id, address) in &cluster.voters {
        let addr = match address {
            Some(hp) => tokio::net::lookup_host((hp.host.as_str(), hp.port))
                .await
                .map_err(|e| {
                    BrokerError::Cluster(format!(
                        "controller.quorum.voters: cannot resolve {}:{}: {e}",
                        hp.host, hp.port
                    ))
                })?
                .next()
                .ok_or_else(|| {
                    BrokerError::Cluster(format!(
                        "controller.quorum.voters: {}:{} resolves to no address",
                        hp.host, hp.port
                    ))
                })?,
            None => SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        voters.insert(id as u64, addr);
    }
    Ok(voters)
}

fn record_protocol(protocol: SecurityProtocol) -> RecordProtocol {
    match protocol {
        SecurityProtocol::Plaintext => RecordProtocol::Plaintext,
        SecurityProtocol::Ssl => RecordProtocol::Ssl,
        SecurityProtocol::SaslPlaintext => RecordProtocol::SaslPlaintext,
        SecurityProtocol::SaslSsl => RecordProtocol::SaslSsl,
    }
}

/// Whether a data directory entry is the metadata quorum's (never a topic).
pub fn is_metadata_dir(name: &Path) -> bool {
    name.file_name().is_some_and(|n| n == METADATA_DIR)
}
