//! The controller's inputs and outputs: requests (Kafka's broker and admin requests,
//! decoded by the broker), decisions and per-item results.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::Result;
use crate::records::{BrokerId, ConfigResource, Endpoint, MetadataRecord};

/// A broker's registration request (Kafka's BrokerRegistration).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistrationRequest {
    /// `node.id`.
    pub broker_id: BrokerId,
    /// The cluster id the broker believes in (from its `meta.properties`).
    pub cluster_id: String,
    /// Random per process start.
    pub incarnation_id: Uuid,
    /// The incarnation that ran on this broker's data directory before this one (read from
    /// the directory, which the broker holds locked, so that process has exited): its
    /// registration may be replaced at once, without waiting for its session to expire.
    #[serde(default)]
    pub previous_incarnation_id: Option<Uuid>,
    /// Advertised listeners.
    pub endpoints: Vec<Endpoint>,
    /// `broker.rack`.
    pub rack: Option<String>,
}

/// What a registration decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationDecision {
    /// Records to commit. The broker's epoch is the offset of the batch that carries them.
    pub records: Vec<MetadataRecord>,
    /// Set when nothing needs committing (a retry of the registration in the image): the
    /// broker's current epoch.
    pub existing_epoch: Option<i64>,
}

/// A broker heartbeat (Kafka's BrokerHeartbeat).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerHeartbeatRequest {
    /// The broker.
    pub broker_id: BrokerId,
    /// Its registration's epoch.
    pub broker_epoch: i64,
    /// The highest metadata offset the broker has applied.
    pub current_metadata_offset: i64,
    /// The broker asks to (stay) fenced, e.g. while it is still loading.
    pub want_fence: bool,
    /// The broker wants to stop: start (or continue) a controlled shutdown.
    pub want_shut_down: bool,
    /// The broker cannot write its data directory now (free space below
    /// `log.dir.min.free.bytes`); see `BrokerRegistration::storage_unavailable`.
    #[serde(default)]
    pub storage_unavailable: bool,
}

/// What a heartbeat decided; the flags describe the state once `records` are applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatDecision {
    /// Records to commit (often none).
    pub records: Vec<MetadataRecord>,
    /// The broker has applied the metadata up to its registration.
    pub is_caught_up: bool,
    /// The broker is (or stays) fenced.
    pub is_fenced: bool,
    /// The broker is in controlled shutdown.
    pub in_controlled_shutdown: bool,
    /// The broker leads nothing any more and may stop now.
    pub should_shut_down: bool,
}

/// An explicit replica list for one partition in a CreateTopics request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaAssignment {
    /// The partition index.
    pub partition: i32,
    /// Its replicas, preferred leader first.
    pub replicas: Vec<BrokerId>,
}

/// One topic of a CreateTopics request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateTopic {
    /// The name.
    pub name: String,
    /// Partition count, or -1 for `num.partitions`; must be -1 with `assignments`.
    pub num_partitions: i32,
    /// Replication factor, or -1 for `default.replication.factor`; -1 with `assignments`.
    pub replication_factor: i16,
    /// Explicit replica lists (none: placed by the controller).
    pub assignments: Vec<ReplicaAssignment>,
    /// Config overrides, already validated by the caller.
    pub configs: BTreeMap<String, String>,
    /// The topic id to give the topic (none: a new random one). Set when a broker brings
    /// a topic it already holds into the cluster (the in-place upgrade of a single-node
    /// data directory), so that its local partitions keep their id. Refused when nil,
    /// reserved or another topic's.
    #[serde(default)]
    pub topic_id: Option<Uuid>,
}

/// A topic CreateTopics will create once the records are applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedTopic {
    /// The topic's id: the one the request asked for, or a new random one.
    pub topic_id: Uuid,
    /// Its partition count.
    pub num_partitions: i32,
    /// Its replication factor.
    pub replication_factor: i16,
}

/// A topic named in a DeleteTopics request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TopicRef {
    /// By name.
    Name(String),
    /// By id (DeleteTopics v6+).
    Id(Uuid),
}

/// A topic DeleteTopics will delete once the records are applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletedTopic {
    /// Its id.
    pub topic_id: Uuid,
    /// Its name.
    pub name: String,
}

/// One topic of a CreatePartitions request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatePartitions {
    /// The topic.
    pub name: String,
    /// The new total partition count.
    pub count: i32,
    /// Replica lists of the new partitions, in order (none: placed by the controller).
    pub assignments: Option<Vec<Vec<BrokerId>>>,
}

/// One partition of an AlterPartitionReassignments request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reassignment {
    /// The topic name.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The replicas wanted, preferred leader first; `None` cancels the reassignment in
    /// progress.
    pub target: Option<Vec<BrokerId>>,
}

/// The config changes of one resource (an IncrementalAlterConfigs entry, with APPEND and
/// SUBTRACT already turned into the full value by the caller).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlterConfigs {
    /// The resource.
    pub resource: ConfigResource,
    /// `(key, Some(value))` sets, `(key, None)` deletes the override.
    pub changes: Vec<(String, Option<String>)>,
}

/// A block of producer ids for one broker: `first_id .. first_id + size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerIdBlock {
    /// The broker.
    pub broker_id: BrokerId,
    /// The first id of the block.
    pub first_id: i64,
    /// The number of ids.
    pub size: i64,
}

/// An ISR change asked for by a partition leader (Kafka's AlterPartition), a
/// compare-and-set on the partition epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlterPartitionRequest {
    /// The leader asking.
    pub broker_id: BrokerId,
    /// Its broker epoch.
    pub broker_epoch: i64,
    /// The topic.
    pub topic_id: Uuid,
    /// The partition.
    pub partition: i32,
    /// The leader epoch the leader is in.
    pub leader_epoch: i32,
    /// The partition epoch the change is based on.
    pub partition_epoch: i32,
    /// The ISR wanted, each member with the broker epoch the leader knows it by (KIP-903:
    /// the epoch a follower sent with its fetches).
    pub new_isr: Vec<IsrMember>,
}

/// One member of the ISR an AlterPartition asks for (Kafka's `NewIsrWithEpochs` entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IsrMember {
    /// The replica.
    pub broker_id: BrokerId,
    /// The broker epoch of the replica's registration, as seen by the leader. A replica
    /// that joins the ISR must have this epoch still: one that restarted since (maybe with
    /// an empty disk) is not the replica that caught up.
    pub broker_epoch: i64,
}

/// Records to commit plus a result per request item, in request order.
#[derive(Debug)]
pub struct Outcome<T> {
    /// The batch to commit (empty: nothing to commit).
    pub records: Vec<MetadataRecord>,
    /// One result per item of the request.
    pub results: Vec<Result<T>>,
}
