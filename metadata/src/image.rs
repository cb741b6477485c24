//! The metadata image: the cluster metadata as of one offset of the metadata log.
//!
//! Kafka calls the broker's view of the committed metadata log the `MetadataImage`; this is
//! the same idea in one struct: cluster id, brokers, topics (by id and by name) with their
//! partitions, the next producer id, dynamic configs, and the position (offset and epoch)
//! of the last entry applied.
//!
//! # Contract
//! - **In**: committed batches, in log order: [`MetadataImage::apply`] for a batch of
//!   records, [`MetadataImage::skip`] for a log entry that carries none (an openraft
//!   membership or blank entry) or whose batch was rejected.
//! - **Deterministic**: the image is a function of the batches applied and their
//!   positions only (ordered maps, no clocks, no randomness), so every node that applied
//!   the same log holds an equal image.
//! - **Atomic per batch**: a record that does not fit (a leader outside its ISR, a topic
//!   that does not exist, a broker epoch that is not current, ...) rejects its whole batch
//!   with [`MetadataError::InconsistentRecord`] and leaves the image exactly as it was, the
//!   last applied position included; the caller then [`skip`](MetadataImage::skip)s that
//!   position, as every replica does for the same batch.
//! - **Snapshots**: [`MetadataImage::to_snapshot_bytes`] / [`MetadataImage::from_snapshot_bytes`],
//!   version byte 1 + JSON (see docs/cluster.md). Loading a snapshot checks every invariant
//!   that `apply` keeps, so a damaged snapshot is an error, not a strange cluster.
//!
//! # Invariants (checked by `apply` for every change and by snapshot loading)
//! - broker ids >= 0; a broker's epoch is the offset of its registration's batch;
//!   listener names are unique per broker.
//! - topic ids are not nil and unique, names are legal Kafka names and unique; partitions
//!   of a topic are numbered 0..n.
//! - per partition: replicas non-empty and distinct (ids >= 0); ISR a non-empty, distinct
//!   subset of the replicas; leader in the ISR or [`NO_LEADER`]; a leader is a registered
//!   broker; epochs >= 0.
//! - config overrides name existing topics; producer ids below `next_producer_id` are
//!   handed out, `next_producer_id` only grows.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::controller::validate_topic_name;
use crate::error::{MetadataError, Result};
use crate::records::*;

/// Where an entry sits in the metadata log: its offset (the Raft log index) and epoch (the
/// Raft term of the leader that wrote it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LogPosition {
    /// The Raft log index.
    pub offset: i64,
    /// The Raft term.
    pub epoch: i64,
}

/// A registered broker (Kafka's `BrokerRegistration`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerRegistration {
    /// `node.id`.
    pub id: BrokerId,
    /// The offset of the registration: requests from this broker carry it, and a request
    /// with another epoch is from an older incarnation.
    pub epoch: i64,
    /// The process start this registration belongs to.
    pub incarnation_id: Uuid,
    /// The advertised listeners.
    pub endpoints: Vec<Endpoint>,
    /// `broker.rack`.
    pub rack: Option<String>,
    /// A fenced broker leads nothing and is not given new replicas.
    pub fenced: bool,
    /// The broker is moving its leaderships away before it stops.
    pub in_controlled_shutdown: bool,
    /// The broker cannot write its data directory (free space below
    /// `log.dir.min.free.bytes`): its leaderships move to other in-sync replicas where
    /// there are some, it leaves the ISRs it shares with others, and it takes no new
    /// leadership or replica until it reports space again. It stays registered and
    /// unfenced, and keeps leading the partitions no other in-sync replica can take, so
    /// their records stay readable.
    #[serde(default)]
    pub storage_unavailable: bool,
}

impl BrokerRegistration {
    /// Unfenced, not shutting down, and able to write: may lead partitions, join ISRs and
    /// take new replicas.
    pub fn is_usable(&self) -> bool {
        !self.fenced && !self.in_controlled_shutdown && !self.storage_unavailable
    }

    /// The endpoint of a listener, by name.
    pub fn endpoint(&self, listener: &str) -> Option<&Endpoint> {
        self.endpoints.iter().find(|e| e.listener == listener)
    }
}

/// One partition's replication state (Kafka's `PartitionRegistration`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionRegistration {
    /// All replicas, preferred leader first.
    pub replicas: Vec<BrokerId>,
    /// The in-sync replicas.
    pub isr: Vec<BrokerId>,
    /// The leader, or [`NO_LEADER`] when offline.
    pub leader: BrokerId,
    /// Bumped whenever the leader changes.
    pub leader_epoch: i32,
    /// Bumped on every change (the compare-and-set version of AlterPartition).
    pub partition_epoch: i32,
    /// Replicas a reassignment in progress adds: in `replicas`, not yet all in the ISR.
    /// Empty (and absent from snapshots) without a reassignment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adding_replicas: Vec<BrokerId>,
    /// Replicas a reassignment in progress removes once the adding ones are in sync: in
    /// `replicas`, disjoint from `adding_replicas`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removing_replicas: Vec<BrokerId>,
}

impl PartitionRegistration {
    /// The preferred leader (the first replica).
    pub fn preferred_leader(&self) -> BrokerId {
        self.replicas.first().copied().unwrap_or(NO_LEADER)
    }

    /// Whether the partition has a leader.
    pub fn has_leader(&self) -> bool {
        self.leader != NO_LEADER
    }

    /// Whether a reassignment of the partition is in progress.
    pub fn is_reassigning(&self) -> bool {
        !self.adding_replicas.is_empty() || !self.removing_replicas.is_empty()
    }

    /// The replicas the partition had before its reassignment started (its replicas when
    /// none is in progress): what a cancellation goes back to.
    pub fn original_replicas(&self) -> Vec<BrokerId> {
        self.replicas
            .iter()
            .copied()
            .filter(|r| !self.adding_replicas.contains(r))
            .collect()
    }

    /// The replicas the partition will have once its reassignment completes (its
    /// replicas when none is in progress).
    pub fn target_replicas(&self) -> Vec<BrokerId> {
        self.replicas
            .iter()
            .copied()
            .filter(|r| !self.removing_replicas.contains(r))
            .collect()
    }
}

/// A topic and its partitions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicImage {
    /// The topic id.
    pub id: Uuid,
    /// The topic name.
    pub name: String,
    /// Partition `i` at index `i`.
    pub partitions: Vec<PartitionRegistration>,
}

impl TopicImage {
    /// A partition by index.
    pub fn partition(&self, partition: i32) -> Option<&PartitionRegistration> {
        usize::try_from(partition)
            .ok()
            .and_then(|p| self.partitions.get(p))
    }
}

/// A partition with the topic it belongs to, as the queries return it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionRef<'a> {
    /// The topic id.
    pub topic_id: Uuid,
    /// The topic name.
    pub topic_name: &'a str,
    /// The partition index.
    pub partition: i32,
    /// Its state.
    pub registration: &'a PartitionRegistration,
}

/// A live broker's address on one listener, for Metadata and FindCoordinator answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokerAddress<'a> {
    /// The broker.
    pub id: BrokerId,
    /// Host on that listener.
    pub host: &'a str,
    /// Port on that listener.
    pub port: u16,
    /// `broker.rack`.
    pub rack: Option<&'a str>,
}

/// The cluster metadata at one log position. See the module docs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetadataImage {
    cluster_id: Option<String>,
    last_applied: Option<LogPosition>,
    brokers: BTreeMap<BrokerId, BrokerRegistration>,
    topics: BTreeMap<Uuid, TopicImage>,
    /// Index of `topics` by name; always rebuilt from `topics`, never stored.
    topic_ids: BTreeMap<String, Uuid>,
    next_producer_id: i64,
    configs: BTreeMap<ConfigResource, BTreeMap<String, String>>,
    /// The `metadata.version` level, once a [`FeatureLevelRecord`] set it.
    metadata_version: Option<u16>,
}

/// What a batch touched, as it was before: restored if a later record of the batch fails.
/// Saving an entry on its first touch keeps a rejected batch O(what it touched).
#[derive(Default)]
struct Undo {
    cluster_id: Option<Option<String>>,
    metadata_version: Option<Option<u16>>,
    next_producer_id: Option<i64>,
    brokers: BTreeMap<BrokerId, Option<BrokerRegistration>>,
    topics: BTreeMap<Uuid, Option<TopicImage>>,
    configs: BTreeMap<ConfigResource, Option<BTreeMap<String, String>>>,
}

const SNAPSHOT: &str = "snapshot";
/// Version byte of [`MetadataImage::to_snapshot_bytes`].
pub const SNAPSHOT_VERSION: u8 = 1;

/// The snapshot's JSON body (version 1): the image's primary data, in id order.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SnapshotV1 {
    cluster_id: Option<String>,
    last_applied: Option<LogPosition>,
    next_producer_id: i64,
    brokers: Vec<BrokerRegistration>,
    topics: Vec<TopicImage>,
    configs: Vec<SnapshotConfig>,
    /// Absent in snapshots written before the feature level existed (read as unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    metadata_version: Option<u16>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SnapshotConfig {
    resource: ConfigResource,
    name: String,
    value: String,
}

impl MetadataImage {
    /// An empty image: no cluster id, nothing applied.
    pub fn new() -> Self {
        Self::default()
    }

    // ----- applying -----

    /// Applies one committed batch at `position` (see the module docs): all of it, or,
    /// with an error, nothing. `position.offset` must be above the last applied offset.
    pub fn apply(&mut self, position: LogPosition, records: &[MetadataRecord]) -> Result<()> {
        self.check_position(position)?;
        // A level this build does not read is not a batch to reject (newer nodes accept
        // it): the caller must stop applying. Checked before anything changes.
        for record in records {
            if let MetadataRecord::FeatureLevel(r) = record {
                if r.name == METADATA_VERSION && r.feature_level > LATEST_METADATA_VERSION {
                    return Err(MetadataError::UnsupportedMetadataVersion {
                        level: r.feature_level,
                        supported: LATEST_METADATA_VERSION,
                    });
                }
            }
        }
        let mut undo = Undo::default();
        for (index, record) in records.iter().enumerate() {
            if let Err(reason) = self.apply_one(position.offset, record, &mut undo) {
                self.roll_back(undo);
                return Err(MetadataError::InconsistentRecord {
                    offset: position.offset,
                    index,
                    reason,
                });
            }
        }
        self.last_applied = Some(position);
        Ok(())
    }

    /// Records that the log entry at `position` was consumed without changing the
    /// metadata: an entry that is not a metadata batch, or a batch `apply` rejected.
    pub fn skip(&mut self, position: LogPosition) -> Result<()> {
        self.check_position(position)?;
        self.last_applied = Some(position);
        Ok(())
    }

    fn check_position(&self, position: LogPosition) -> Result<()> {
        match self.last_applied {
            Some(last) if position.offset <= last.offset => {
                Err(MetadataError::OffsetNotIncreasing {
                    offset: position.offset,
                    last: last.offset,
                })
            }
            _ => Ok(()),
        }
    }

    fn apply_one(
        &mut self,
        offset: i64,
        record: &MetadataRecord,
        undo: &mut Undo,
    ) -> Result<(), String> {
        match record {
            MetadataRecord::ClusterId(r) => {
                if r.cluster_id.is_empty() {
                    return Err("empty cluster id".into());
                }
                match &self.cluster_id {
                    Some(id) if *id == r.cluster_id => {}
                    Some(id) => {
                        return Err(format!(
                            "cluster id is {id}, the record sets {}",
                            r.cluster_id
                        ))
                    }
                    None => {
                        undo.cluster_id.get_or_insert(None);
                        self.cluster_id = Some(r.cluster_id.clone());
                    }
                }
            }
            MetadataRecord::FeatureLevel(r) => {
                if r.name != METADATA_VERSION {
                    return Err(format!("unknown feature {}", r.name));
                }
                if r.feature_level == 0 {
                    return Err("metadata.version level 0".into());
                }
                if let Some(current) = self.metadata_version {
                    if r.feature_level < current {
                        return Err(format!(
                            "metadata.version {} is below the current level {current}: levels never go down",
                            r.feature_level
                        ));
                    }
                }
                undo.metadata_version.get_or_insert(self.metadata_version);
                self.metadata_version = Some(r.feature_level);
            }
            MetadataRecord::RegisterBroker(r) => {
                let registration = BrokerRegistration {
                    id: r.broker_id,
                    epoch: offset,
                    incarnation_id: r.incarnation_id,
                    endpoints: r.endpoints.clone(),
                    rack: r.rack.clone(),
                    fenced: r.fenced,
                    in_controlled_shutdown: false,
                    storage_unavailable: false,
                };
                check_broker(&registration)?;
                self.save_broker(r.broker_id, undo);
                self.brokers.insert(r.broker_id, registration);
            }
            MetadataRecord::BrokerRegistrationChange(r) => {
                self.current_broker(r.broker_id, r.broker_epoch)?;
                self.save_broker(r.broker_id, undo);
                if let Some(broker) = self.brokers.get_mut(&r.broker_id) {
                    if let Some(fenced) = r.fenced {
                        broker.fenced = fenced;
                    }
                    if let Some(shutdown) = r.in_controlled_shutdown {
                        broker.in_controlled_shutdown = shutdown;
                    }
                    if let Some(unavailable) = r.storage_unavailable {
                        broker.storage_unavailable = unavailable;
                    }
                }
            }
            MetadataRecord::UnregisterBroker(r) => {
                self.current_broker(r.broker_id, r.broker_epoch)?;
                if let Some(p) = self.partitions_led_by(r.broker_id).first() {
                    return Err(format!(
                        "broker {} still leads {}-{}",
                        r.broker_id, p.topic_name, p.partition
                    ));
                }
                self.save_broker(r.broker_id, undo);
                self.brokers.remove(&r.broker_id);
            }
            MetadataRecord::Topic(r) => {
                validate_topic_name(&r.name).map_err(|e| e.to_string())?;
                if r.topic_id.is_nil() {
                    return Err("nil topic id".into());
                }
                if self.topics.contains_key(&r.topic_id) {
                    return Err(format!("topic id {} exists", r.topic_id));
                }
                if self.topic_ids.contains_key(&r.name) {
                    return Err(format!("topic {} exists", r.name));
                }
                self.save_topic(r.topic_id, undo);
                self.topic_ids.insert(r.name.clone(), r.topic_id);
                self.topics.insert(
                    r.topic_id,
                    TopicImage {
                        id: r.topic_id,
                        name: r.name.clone(),
                        partitions: Vec::new(),
                    },
                );
            }
            MetadataRecord::Partition(r) => {
                let partition = PartitionRegistration {
                    replicas: r.replicas.clone(),
                    isr: r.isr.clone(),
                    leader: r.leader,
                    leader_epoch: r.leader_epoch,
                    partition_epoch: r.partition_epoch,
                    adding_replicas: Vec::new(),
                    removing_replicas: Vec::new(),
                };
                self.check_partition(&partition)?;
                let topic = self
                    .topics
                    .get(&r.topic_id)
                    .ok_or_else(|| format!("no topic {}", r.topic_id))?;
                if usize::try_from(r.partition_id).ok() != Some(topic.partitions.len()) {
                    return Err(format!(
                        "partition {} of {} is not the next one ({})",
                        r.partition_id,
                        topic.name,
                        topic.partitions.len()
                    ));
                }
                self.save_topic(r.topic_id, undo);
                if let Some(topic) = self.topics.get_mut(&r.topic_id) {
                    topic.partitions.push(partition);
                }
            }
            MetadataRecord::PartitionChange(r) => {
                let current = self
                    .topics
                    .get(&r.topic_id)
                    .and_then(|t| t.partition(r.partition_id))
                    .ok_or_else(|| format!("no partition {}-{}", r.topic_id, r.partition_id))?;
                if let Some(expected) = r.expected_partition_epoch {
                    if expected != current.partition_epoch {
                        return Err(format!(
                            "partition {}-{} is at partition epoch {}, the change was decided at {expected}",
                            r.topic_id, r.partition_id, current.partition_epoch
                        ));
                    }
                }
                let mut next = current.clone();
                // The leader epoch bumps (once) when the leader changes, or when replicas
                // are removed: the new epoch fences the removed replicas' fetches and
                // writes, as in Kafka. `leader: Some(current leader)` is no change
                // (normalized here rather than rejected, so any writer's record means the
                // same on every node).
                let mut new_term = false;
                if let Some(replicas) = &r.replicas {
                    new_term |= current.replicas.iter().any(|old| !replicas.contains(old));
                    next.replicas = replicas.clone();
                }
                if let Some(isr) = &r.isr {
                    next.isr = isr.clone();
                }
                if let Some(adding) = &r.adding_replicas {
                    next.adding_replicas = adding.clone();
                }
                if let Some(removing) = &r.removing_replicas {
                    next.removing_replicas = removing.clone();
                }
                if let Some(leader) = r.leader {
                    new_term |= leader != current.leader;
                    next.leader = leader;
                }
                if new_term {
                    next.leader_epoch = current
                        .leader_epoch
                        .checked_add(1)
                        .ok_or("leader epoch overflow")?;
                }
                next.partition_epoch = current
                    .partition_epoch
                    .checked_add(1)
                    .ok_or("partition epoch overflow")?;
                self.check_partition(&next)?;
                self.save_topic(r.topic_id, undo);
                if let Some(slot) = self
                    .topics
                    .get_mut(&r.topic_id)
                    .and_then(|t| t.partitions.get_mut(r.partition_id as usize))
                {
                    *slot = next;
                }
            }
            MetadataRecord::RemoveTopic(r) => {
                let name = match self.topics.get(&r.topic_id) {
                    Some(topic) => topic.name.clone(),
                    None => return Err(format!("no topic {}", r.topic_id)),
                };
                self.save_topic(r.topic_id, undo);
                self.topics.remove(&r.topic_id);
                self.topic_ids.remove(&name);
                let resource = ConfigResource::Topic(name);
                self.save_config(&resource, undo);
                self.configs.remove(&resource);
            }
            MetadataRecord::ProducerIds(r) => {
                self.current_broker(r.broker_id, r.broker_epoch)?;
                // A block may start past the next free id (ids reserved before the
                // cluster existed, see `Controller::allocate_producer_ids`), never before:
                // blocks stay increasing and never overlap.
                if r.first_producer_id < self.next_producer_id {
                    return Err(format!(
                        "producer id block starts at {}, below the next free id {}",
                        r.first_producer_id, self.next_producer_id
                    ));
                }
                if r.size <= 0 {
                    return Err(format!("producer id block of size {}", r.size));
                }
                let next = r
                    .first_producer_id
                    .checked_add(r.size)
                    .ok_or("producer ids exhausted")?;
                undo.next_producer_id.get_or_insert(self.next_producer_id);
                self.next_producer_id = next;
            }
            MetadataRecord::Config(r) => {
                if r.name.is_empty() {
                    return Err("empty config name".into());
                }
                match &r.resource {
                    ConfigResource::Topic(name) if !self.topic_ids.contains_key(name) => {
                        return Err(format!("config for unknown topic {name}"))
                    }
                    ConfigResource::Broker(id) if *id < 0 => {
                        return Err(format!("config for broker {id}"))
                    }
                    ConfigResource::Group(id) if id.is_empty() => {
                        return Err("config for a group without an id".into())
                    }
                    _ => {}
                }
                self.save_config(&r.resource, undo);
                match &r.value {
                    Some(value) => {
                        self.configs
                            .entry(r.resource.clone())
                            .or_default()
                            .insert(r.name.clone(), value.clone());
                    }
                    None => {
                        if let Some(entries) = self.configs.get_mut(&r.resource) {
                            entries.remove(&r.name);
                            if entries.is_empty() {
                                self.configs.remove(&r.resource);
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The broker's registration, if `epoch` is its current one.
    fn current_broker(&self, id: BrokerId, epoch: i64) -> Result<&BrokerRegistration, String> {
        match self.brokers.get(&id) {
            None => Err(format!("broker {id} is not registered")),
            Some(b) if b.epoch != epoch => Err(format!(
                "broker {id} has epoch {}, the record names {epoch}",
                b.epoch
            )),
            Some(b) => Ok(b),
        }
    }

    fn check_partition(&self, p: &PartitionRegistration) -> Result<(), String> {
        check_partition_shape(p)?;
        if p.leader != NO_LEADER && !self.brokers.contains_key(&p.leader) {
            return Err(format!("leader {} is not a registered broker", p.leader));
        }
        Ok(())
    }

    fn save_broker(&self, id: BrokerId, undo: &mut Undo) {
        undo.brokers
            .entry(id)
            .or_insert_with(|| self.brokers.get(&id).cloned());
    }

    fn save_topic(&self, id: Uuid, undo: &mut Undo) {
        undo.topics
            .entry(id)
            .or_insert_with(|| self.topics.get(&id).cloned());
    }

    fn save_config(&self, resource: &ConfigResource, undo: &mut Undo) {
        if !undo.configs.contains_key(resource) {
            undo.configs
                .insert(resource.clone(), self.configs.get(resource).cloned());
        }
    }

    fn roll_back(&mut self, undo: Undo) {
        if let Some(id) = undo.cluster_id {
            self.cluster_id = id;
        }
        if let Some(level) = undo.metadata_version {
            self.metadata_version = level;
        }
        if let Some(next) = undo.next_producer_id {
            self.next_producer_id = next;
        }
        for (id, saved) in undo.brokers {
            match saved {
                Some(b) => self.brokers.insert(id, b),
                None => self.brokers.remove(&id),
            };
        }
        // Names first out, then back in: a batch may have removed a topic and created
        // another with the same name.
        for id in undo.topics.keys() {
            if let Some(topic) = self.topics.remove(id) {
                self.topic_ids.remove(&topic.name);
            }
        }
        for (id, saved) in undo.topics {
            if let Some(topic) = saved {
                self.topic_ids.insert(topic.name.clone(), id);
                self.topics.insert(id, topic);
            }
        }
        for (resource, saved) in undo.configs {
            match saved {
                Some(c) => self.configs.insert(resource, c),
                None => self.configs.remove(&resource),
            };
        }
    }

    // ----- snapshots -----

    /// Encodes the image as a snapshot: version byte 1, then JSON (see docs/cluster.md).
    pub fn to_snapshot_bytes(&self) -> Result<Vec<u8>> {
        let snapshot = SnapshotV1 {
            cluster_id: self.cluster_id.clone(),
            last_applied: self.last_applied,
            next_producer_id: self.next_producer_id,
            brokers: self.brokers.values().cloned().collect(),
            topics: self.topics.values().cloned().collect(),
            configs: self
                .configs
                .iter()
                .flat_map(|(resource, entries)| {
                    entries.iter().map(|(name, value)| SnapshotConfig {
                        resource: resource.clone(),
                        name: name.clone(),
                        value: value.clone(),
                    })
                })
                .collect(),
            metadata_version: self.metadata_version,
        };
        let mut out = vec![SNAPSHOT_VERSION];
        serde_json::to_writer(&mut out, &snapshot).map_err(|source| MetadataError::Encode {
            what: SNAPSHOT,
            source,
        })?;
        Ok(out)
    }

    /// Decodes a snapshot written by [`Self::to_snapshot_bytes`], checking every invariant
    /// of the image (see the module docs).
    pub fn from_snapshot_bytes(bytes: &[u8]) -> Result<Self> {
        let snapshot: SnapshotV1 = match bytes.split_first() {
            Some((&SNAPSHOT_VERSION, json)) => {
                serde_json::from_slice(json).map_err(|e| MetadataError::Decode {
                    what: SNAPSHOT,
                    reason: e.to_string(),
                })?
            }
            other => {
                return Err(MetadataError::UnsupportedVersion {
                    what: SNAPSHOT,
                    version: other.map(|(v, _)| *v),
                })
            }
        };
        let bad = |reason: String| MetadataError::Decode {
            what: SNAPSHOT,
            reason,
        };
        match snapshot.metadata_version {
            Some(level) if level > LATEST_METADATA_VERSION => {
                return Err(MetadataError::UnsupportedMetadataVersion {
                    level,
                    supported: LATEST_METADATA_VERSION,
                })
            }
            Some(0) => return Err(bad("metadata.version level 0".into())),
            _ => {}
        }
        let mut image = MetadataImage {
            metadata_version: snapshot.metadata_version,
            cluster_id: snapshot.cluster_id,
            last_applied: snapshot.last_applied,
            next_producer_id: snapshot.next_producer_id,
            ..Self::default()
        };
        for broker in snapshot.brokers {
            if image.brokers.insert(broker.id, broker).is_some() {
                return Err(bad("a broker is listed twice".into()));
            }
        }
        for topic in snapshot.topics {
            if image
                .topic_ids
                .insert(topic.name.clone(), topic.id)
                .is_some()
            {
                return Err(bad(format!("topic {} is listed twice", topic.name)));
            }
            if image.topics.insert(topic.id, topic).is_some() {
                return Err(bad("a topic id is listed twice".into()));
            }
        }
        for c in snapshot.configs {
            let entries = image.configs.entry(c.resource).or_default();
            if entries.insert(c.name, c.value).is_some() {
                return Err(bad("a config is listed twice".into()));
            }
        }
        image.check_invariants().map_err(bad)?;
        Ok(image)
    }

    /// Checks every invariant listed in the module docs.
    pub fn check_invariants(&self) -> Result<(), String> {
        if self.cluster_id.as_deref() == Some("") {
            return Err("empty cluster id".into());
        }
        if self.next_producer_id < 0 {
            return Err(format!("next producer id {}", self.next_producer_id));
        }
        for (id, broker) in &self.brokers {
            if *id != broker.id {
                return Err(format!("broker {} filed under {id}", broker.id));
            }
            check_broker(broker)?;
            if let Some(last) = self.last_applied {
                if broker.epoch > last.offset {
                    return Err(format!("broker {id} has an epoch past the last offset"));
                }
            }
        }
        if self.topic_ids.len() != self.topics.len() {
            return Err("topic name index does not match the topics".into());
        }
        for (id, topic) in &self.topics {
            if *id != topic.id || id.is_nil() {
                return Err(format!("topic {} filed under {id}", topic.id));
            }
            validate_topic_name(&topic.name).map_err(|e| e.to_string())?;
            if self.topic_ids.get(&topic.name) != Some(id) {
                return Err(format!("topic {} is not indexed by name", topic.name));
            }
            for (p, partition) in topic.partitions.iter().enumerate() {
                self.check_partition(partition)
                    .map_err(|e| format!("{}-{p}: {e}", topic.name))?;
            }
        }
        for (resource, entries) in &self.configs {
            if entries.is_empty() || entries.keys().any(String::is_empty) {
                return Err(format!("empty config entry for {resource:?}"));
            }
            match resource {
                ConfigResource::Topic(name) if !self.topic_ids.contains_key(name) => {
                    return Err(format!("config for unknown topic {name}"))
                }
                ConfigResource::Broker(id) if *id < 0 => {
                    return Err(format!("config for broker {id}"))
                }
                ConfigResource::Group(id) if id.is_empty() => {
                    return Err("config for a group without an id".into())
                }
                _ => {}
            }
        }
        Ok(())
    }

    // ----- queries -----

    /// The cluster id, once the first batch has set it.
    pub fn cluster_id(&self) -> Option<&str> {
        self.cluster_id.as_deref()
    }

    /// The `metadata.version` level set in the log, if any.
    pub fn feature_level(&self, name: &str) -> Option<u16> {
        self.metadata_version.filter(|_| name == METADATA_VERSION)
    }

    /// The cluster's `metadata.version` level: the one in the log, or 1 for a log that
    /// predates the record (everything it can hold is level 1).
    pub fn metadata_version(&self) -> u16 {
        self.metadata_version.unwrap_or(1)
    }

    /// The position of the last entry applied or skipped.
    pub fn last_applied(&self) -> Option<LogPosition> {
        self.last_applied
    }

    /// The metadata version: the offset of the last entry applied or skipped, -1 before
    /// any. It only grows, so a node can tell which of two images is newer, and brokers
    /// that applied the same offset answer Metadata identically (same leader epochs).
    pub fn metadata_offset(&self) -> i64 {
        self.last_applied.map_or(-1, |p| p.offset)
    }

    /// The first producer id not yet given to any broker.
    pub fn next_producer_id(&self) -> i64 {
        self.next_producer_id
    }

    /// A broker's registration.
    pub fn broker(&self, id: BrokerId) -> Option<&BrokerRegistration> {
        self.brokers.get(&id)
    }

    /// Every registered broker, by id.
    pub fn brokers(&self) -> impl Iterator<Item = &BrokerRegistration> {
        self.brokers.values()
    }

    /// Unfenced brokers (Kafka's "alive" brokers, the ones Metadata lists), by id.
    pub fn live_brokers(&self) -> impl Iterator<Item = &BrokerRegistration> {
        self.brokers.values().filter(|b| !b.fenced)
    }

    /// Brokers that may lead and take new replicas (unfenced, not shutting down), by id.
    pub fn usable_brokers(&self) -> impl Iterator<Item = &BrokerRegistration> {
        self.brokers.values().filter(|b| b.is_usable())
    }

    /// The live brokers that have a listener of this name, with its address, by id: the
    /// broker list of a Metadata answer on that listener.
    pub fn live_broker_addresses(&self, listener: &str) -> Vec<BrokerAddress<'_>> {
        self.live_brokers()
            .filter_map(|b| {
                b.endpoint(listener).map(|e| BrokerAddress {
                    id: b.id,
                    host: &e.host,
                    port: e.port,
                    rack: b.rack.as_deref(),
                })
            })
            .collect()
    }

    /// A topic by name.
    pub fn topic(&self, name: &str) -> Option<&TopicImage> {
        self.topic_ids.get(name).and_then(|id| self.topics.get(id))
    }

    /// A topic by id.
    pub fn topic_by_id(&self, id: Uuid) -> Option<&TopicImage> {
        self.topics.get(&id)
    }

    /// Every topic, in name order.
    pub fn topics(&self) -> impl Iterator<Item = &TopicImage> {
        self.topic_ids.values().filter_map(|id| self.topics.get(id))
    }

    /// A partition by topic id and index.
    pub fn partition(&self, topic_id: Uuid, partition: i32) -> Option<&PartitionRegistration> {
        self.topics.get(&topic_id)?.partition(partition)
    }

    /// A partition by topic name and index.
    pub fn partition_by_name(&self, topic: &str, partition: i32) -> Option<&PartitionRegistration> {
        self.topic(topic)?.partition(partition)
    }

    /// Replicas of a partition whose broker is fenced or not registered: the
    /// `offline_replicas` of a Metadata answer.
    pub fn offline_replicas(&self, partition: &PartitionRegistration) -> Vec<BrokerId> {
        partition
            .replicas
            .iter()
            .copied()
            .filter(|r| self.brokers.get(r).is_none_or(|b| b.fenced))
            .collect()
    }

    /// Every partition, in (topic name, partition) order.
    pub fn all_partitions(&self) -> impl Iterator<Item = PartitionRef<'_>> {
        self.topics().flat_map(|t| {
            t.partitions
                .iter()
                .enumerate()
                .map(move |(p, registration)| PartitionRef {
                    topic_id: t.id,
                    topic_name: &t.name,
                    partition: p as i32,
                    registration,
                })
        })
    }

    /// The partitions a broker leads, in (topic name, partition) order.
    pub fn partitions_led_by(&self, broker: BrokerId) -> Vec<PartitionRef<'_>> {
        self.all_partitions()
            .filter(|p| p.registration.leader == broker)
            .collect()
    }

    /// The partitions with a replica on a broker (the logs it must hold), in
    /// (topic name, partition) order.
    pub fn partitions_on_broker(&self, broker: BrokerId) -> Vec<PartitionRef<'_>> {
        self.all_partitions()
            .filter(|p| p.registration.replicas.contains(&broker))
            .collect()
    }

    /// The config overrides of a resource (`None` if it has none).
    pub fn configs(&self, resource: &ConfigResource) -> Option<&BTreeMap<String, String>> {
        self.configs.get(resource)
    }

    /// One config override.
    pub fn config(&self, resource: &ConfigResource, name: &str) -> Option<&str> {
        self.configs.get(resource)?.get(name).map(String::as_str)
    }

    /// The config overrides of a topic, by name.
    pub fn topic_configs(&self, topic: &str) -> Option<&BTreeMap<String, String>> {
        self.configs.get(&ConfigResource::Topic(topic.to_owned()))
    }
}

fn check_broker(b: &BrokerRegistration) -> Result<(), String> {
    if b.id < 0 {
        return Err(format!("broker id {}", b.id));
    }
    let mut names = BTreeSet::new();
    for e in &b.endpoints {
        if !names.insert(e.listener.as_str()) {
            return Err(format!(
                "broker {} lists listener {} twice",
                b.id, e.listener
            ));
        }
    }
    Ok(())
}

/// The shape rules of a partition that need no other state.
pub(crate) fn check_partition_shape(p: &PartitionRegistration) -> Result<(), String> {
    if p.replicas.is_empty() {
        return Err("no replicas".into());
    }
    if p.replicas.iter().any(|&r| r < 0) {
        return Err(format!("negative replica id in {:?}", p.replicas));
    }
    if !distinct(&p.replicas) {
        return Err(format!("replicas {:?} are not distinct", p.replicas));
    }
    if p.isr.is_empty() {
        return Err("empty ISR".into());
    }
    if !distinct(&p.isr) || p.isr.iter().any(|r| !p.replicas.contains(r)) {
        return Err(format!(
            "ISR {:?} is not a set of replicas {:?}",
            p.isr, p.replicas
        ));
    }
    if p.leader != NO_LEADER && !p.isr.contains(&p.leader) {
        return Err(format!("leader {} is not in ISR {:?}", p.leader, p.isr));
    }
    if p.leader_epoch < 0 || p.partition_epoch < 0 {
        return Err("negative epoch".into());
    }
    if !distinct(&p.adding_replicas)
        || !distinct(&p.removing_replicas)
        || p.adding_replicas
            .iter()
            .any(|r| p.removing_replicas.contains(r))
        || p.adding_replicas
            .iter()
            .chain(&p.removing_replicas)
            .any(|r| !p.replicas.contains(r))
    {
        return Err(format!(
            "adding {:?} and removing {:?} are not disjoint sets of replicas {:?}",
            p.adding_replicas, p.removing_replicas, p.replicas
        ));
    }
    Ok(())
}

fn distinct(ids: &[BrokerId]) -> bool {
    let set: BTreeSet<_> = ids.iter().collect();
    set.len() == ids.len()
}

#[cfg(test)]
mod tests;
