//! The active controller's decisions: requests in, records to commit out.
//!
//! # Contract
//! - **In**: the latest applied [`MetadataImage`], a request, and for anything about
//!   broker liveness the current time in milliseconds (`now_ms`, from any monotonic clock;
//!   nothing here reads a clock).
//! - **Out**: the records to commit as one batch, and per-item results (Kafka's admin
//!   requests carry many topics, each with its own error). Nothing here changes the image:
//!   it changes only when the committed batch is applied. An empty record list means
//!   "nothing to commit".
//! - **State kept here, not in the image**: the heartbeat times of brokers
//!   ([`BrokerLiveness`], as Kafka's `BrokerHeartbeatManager`: liveness is soft state that a
//!   new active controller rebuilds by giving every broker a full session) and the
//!   placement random generator.
//! - **One decision at a time**: a decision assumes that the records of the previous one
//!   are applied, as Kafka's single-threaded controller does. The caller proposes a
//!   batch and waits for it to be applied before deciding the next one (or applies the
//!   pending batches to a clone of the image and decides on that). Were two decisions
//!   made on the same image, the second batch may be rejected by `apply` (a topic that
//!   already exists, a producer-id block that overlaps): never an inconsistent image, but
//!   an error to retry.
//!
//! Files: this one holds the decisions; `controller/requests.rs` the request and decision
//! types; `controller/leadership.rs` Kafka's who-leads rules (who takes over when a broker
//! is fenced, shuts down or comes back, and when the epochs bump).
//! [`Controller::elect_preferred_leaders`] moves leadership back to preferred replicas
//! (Kafka's `auto.leader.rebalance.enable`; the caller decides when to run it).
//! `controller/reassignment.rs` moves replicas between brokers (AlterPartitionReassignments).

use std::collections::{BTreeMap, BTreeSet};

use tracing::{debug, info, warn};
use uuid::Uuid;

use crate::error::{MetadataError, Result};
use crate::image::MetadataImage;
use crate::placement::{PlacementBroker, ReplicaPlacer};
use crate::records::*;

mod leadership;
mod reassignment;
mod requests;

use leadership::{
    change, elect_offline_leaders, fence_brokers, leave_partitions, leave_partitions_for_storage,
    take_offline_partitions,
};
pub use leadership::{unclean_election_enabled, UNCLEAN_LEADER_ELECTION_ENABLE};
pub use requests::*;

/// Kafka's `broker.session.timeout.ms` default.
pub const DEFAULT_SESSION_TIMEOUT_MS: u64 = 9_000;
/// Ids per producer-id block (Kafka's `ProducerIdsBlock.PRODUCER_ID_BLOCK_SIZE`).
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1_000;
/// The most records one operation may commit (Kafka's `MAX_RECORDS_PER_USER_OP`): bounds
/// the batch size and the memory a single request can make the controller use.
pub const MAX_RECORDS_PER_OPERATION: usize = 10_000;
/// Kafka's longest topic name.
pub const MAX_TOPIC_NAME_LEN: usize = 249;

/// Kafka's topic name rule: 1 to 249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<()> {
    let invalid = |m: String| Err(MetadataError::InvalidTopic(m));
    if name.is_empty() {
        return invalid("Topic name is illegal, it can't be empty".into());
    }
    if name == "." || name == ".." {
        return invalid("Topic name cannot be \".\" or \"..\"".into());
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return invalid(format!(
            "Topic name is illegal, it can't be longer than {MAX_TOPIC_NAME_LEN} characters, topic name: {name}"
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return invalid(format!(
            "Topic name \"{name}\" is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'"
        ));
    }
    Ok(())
}

/// Kafka's collision rule: `.` and `_` clash in metric names, so `a.b` and `a_b` cannot
/// both exist.
fn collision_key(name: &str) -> String {
    name.replace('.', "_")
}

/// Settings of the controller's decisions, with Kafka's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerConfig {
    /// `broker.session.timeout.ms`: a broker without a heartbeat for this long is fenced.
    pub session_timeout_ms: u64,
    /// `num.partitions`: partitions of a topic created with `num_partitions = -1`.
    pub default_num_partitions: i32,
    /// `default.replication.factor`: for `replication_factor = -1`.
    pub default_replication_factor: i16,
    /// Ids per producer-id block.
    pub producer_id_block_size: i64,
    /// `unclean.leader.election.enable`: the default for topics without an override
    /// (and without a cluster-wide default in the image). Kafka's default: false.
    pub unclean_leader_election_enable: bool,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            session_timeout_ms: DEFAULT_SESSION_TIMEOUT_MS,
            default_num_partitions: 1,
            default_replication_factor: 1,
            producer_id_block_size: PRODUCER_ID_BLOCK_SIZE,
            unclean_leader_election_enable: false,
        }
    }
}

/// The last heartbeat of each broker, kept by the active controller only.
#[derive(Debug, Clone, Default)]
pub struct BrokerLiveness {
    sessions: BTreeMap<BrokerId, Session>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Session {
    last_heartbeat_ms: u64,
    /// When a fence for an expired session was decided, so it is not decided again
    /// while its batch commits (again only after another session timeout).
    fence_decided_ms: Option<u64>,
    /// The highest metadata offset the broker said (in a heartbeat) it has applied.
    metadata_offset: Option<i64>,
    /// A metadata offset at or after the batch that put the broker in controlled shutdown
    /// (Kafka's `controlledShutdownOffset`): it may stop once every active broker has
    /// applied this far, so the new leaders know they lead before it goes.
    controlled_shutdown_offset: Option<i64>,
}

impl BrokerLiveness {
    /// The time of a broker's last heartbeat (or registration), if any was seen.
    pub fn last_heartbeat_ms(&self, broker: BrokerId) -> Option<u64> {
        self.sessions.get(&broker).map(|s| s.last_heartbeat_ms)
    }

    /// A heartbeat (or registration) at `now_ms`; the time never goes back (a heartbeat's
    /// time is when it arrived, and one may be decided after a later one was).
    fn touch(&mut self, broker: BrokerId, now_ms: u64) {
        let session = self.sessions.entry(broker).or_default();
        session.last_heartbeat_ms = session.last_heartbeat_ms.max(now_ms);
        session.fence_decided_ms = None;
    }

    /// A new registration of `broker`: what the controller knew of the old one's metadata
    /// offset and shutdown does not apply to it.
    fn forget_progress(&mut self, broker: BrokerId) {
        if let Some(session) = self.sessions.get_mut(&broker) {
            session.metadata_offset = None;
            session.controlled_shutdown_offset = None;
        }
    }

    /// The highest metadata offset `broker` reported in a heartbeat, if any.
    pub fn metadata_offset(&self, broker: BrokerId) -> Option<i64> {
        self.sessions.get(&broker).and_then(|s| s.metadata_offset)
    }
}

/// The active controller's decision logic. See the module docs.
#[derive(Debug, Clone)]
pub struct Controller {
    config: ControllerConfig,
    liveness: BrokerLiveness,
    placer: ReplicaPlacer,
}

impl Controller {
    /// A controller with `config`; `seed` drives replica placement (see
    /// [`crate::placement`]): random in production, fixed in tests.
    pub fn new(config: ControllerConfig, seed: u64) -> Self {
        Self {
            config,
            liveness: BrokerLiveness::default(),
            placer: ReplicaPlacer::new(seed),
        }
    }

    /// The settings.
    pub fn config(&self) -> &ControllerConfig {
        &self.config
    }

    /// The heartbeat times seen.
    pub fn liveness(&self) -> &BrokerLiveness {
        &self.liveness
    }

    /// The records that start a new cluster: its id and its `metadata.version` (this
    /// build's [`LATEST_METADATA_VERSION`]), each only if the image has none yet. A log
    /// written before the feature level existed gets it on the next activation, at level
    /// 1, what such a log holds: its other nodes may still run a build that reads no more.
    pub fn bootstrap(image: &MetadataImage, cluster_id: &str) -> Vec<MetadataRecord> {
        let mut records = Vec::new();
        let new_cluster = image.cluster_id().is_none();
        if new_cluster {
            records.push(MetadataRecord::ClusterId(ClusterIdRecord {
                cluster_id: cluster_id.to_owned(),
            }));
        }
        if image.feature_level(METADATA_VERSION).is_none() {
            records.push(MetadataRecord::FeatureLevel(FeatureLevelRecord {
                name: METADATA_VERSION.into(),
                feature_level: if new_cluster {
                    LATEST_METADATA_VERSION
                } else {
                    1
                },
            }));
        }
        records
    }

    // ----- brokers -----

    /// A broker registers. A new incarnation of a registered broker replaces the old one
    /// only once the old one is fenced or its session has expired (Kafka's rule): while
    /// the old one is alive, the new one is refused with
    /// [`MetadataError::DuplicateBrokerRegistration`], so two processes started with the
    /// same `node.id` cannot keep fencing each other. A controller that never saw the old
    /// one's heartbeats (it just became active) gives it a full session from `now_ms`.
    /// On takeover the old one's leaderships and ISR places are given up (it may have
    /// lost data), and the new registration starts fenced, like every registration, until
    /// a heartbeat shows it caught up. A retry from the same incarnation with the same
    /// endpoints commits nothing and keeps the epoch.
    pub fn register_broker(
        &mut self,
        image: &MetadataImage,
        now_ms: u64,
        request: &BrokerRegistrationRequest,
    ) -> Result<RegistrationDecision> {
        if let Some(expected) = image.cluster_id() {
            if expected != request.cluster_id {
                return Err(MetadataError::InconsistentClusterId {
                    expected: expected.to_owned(),
                    got: request.cluster_id.clone(),
                });
            }
        }
        if request.broker_id < 0 {
            return Err(MetadataError::InvalidRequest(format!(
                "invalid broker id {}",
                request.broker_id
            )));
        }
        let mut listeners = BTreeSet::new();
        if let Some(e) = request
            .endpoints
            .iter()
            .find(|e| !listeners.insert(e.listener.as_str()))
        {
            return Err(MetadataError::InvalidRequest(format!(
                "listener {} is listed twice",
                e.listener
            )));
        }
        let mut records = Vec::new();
        if let Some(existing) = image.broker(request.broker_id) {
            // A restart of the same data directory (the new process names the old one as
            // its predecessor) replaces it at once: the old process has exited. Anything
            // else is another process with the same node.id while the first may be alive.
            let restarted = request.previous_incarnation_id == Some(existing.incarnation_id);
            if existing.incarnation_id != request.incarnation_id
                && !existing.fenced
                && !restarted
                && self.has_valid_session(request.broker_id, now_ms)
            {
                debug!(
                    broker = request.broker_id,
                    "registration of a second incarnation refused: the first is alive"
                );
                return Err(MetadataError::DuplicateBrokerRegistration {
                    broker_id: request.broker_id,
                    registered: existing.incarnation_id,
                });
            }
            if existing.incarnation_id == request.incarnation_id
                && existing.endpoints == request.endpoints
                && existing.rack == request.rack
            {
                self.liveness.touch(request.broker_id, now_ms);
                return Ok(RegistrationDecision {
                    records,
                    existing_epoch: Some(existing.epoch),
                });
            }
            info!(
                broker = request.broker_id,
                old_epoch = existing.epoch,
                "broker re-registers with a new incarnation; its old registration is fenced"
            );
            records = leave_partitions(image, &self.config, request.broker_id);
        }
        records.push(MetadataRecord::RegisterBroker(RegisterBrokerRecord {
            broker_id: request.broker_id,
            incarnation_id: request.incarnation_id,
            endpoints: request.endpoints.clone(),
            rack: request.rack.clone(),
            fenced: true,
        }));
        self.liveness.forget_progress(request.broker_id);
        self.liveness.touch(request.broker_id, now_ms);
        Ok(RegistrationDecision {
            records,
            existing_epoch: None,
        })
    }

    /// Whether a broker's session is still valid at `now_ms`: its last heartbeat is less
    /// than a session timeout old. A broker this controller never heard from gets a full
    /// session from `now_ms` (as [`Controller::fence_expired_brokers`] gives it).
    fn has_valid_session(&mut self, broker: BrokerId, now_ms: u64) -> bool {
        let session = self.liveness.sessions.entry(broker).or_insert(Session {
            last_heartbeat_ms: now_ms,
            ..Session::default()
        });
        now_ms.saturating_sub(session.last_heartbeat_ms) < self.config.session_timeout_ms
    }

    /// A broker heartbeats: its session is renewed (and its metadata offset noted), and it
    /// may be unfenced (caught up and not asking to stay fenced), fenced on request, or
    /// moved through a controlled shutdown (Kafka's rules): the first heartbeat that asks
    /// to shut down moves its leaderships to other usable ISR members (none: no leader, or
    /// an unclean election where enabled) and takes it out of every ISR where it is not
    /// the last member; later heartbeats answer `should_shut_down` (and fence it) only
    /// once it leads nothing and every active broker has reported a metadata offset at or
    /// after the batch that moved them.
    pub fn heartbeat(
        &mut self,
        image: &MetadataImage,
        now_ms: u64,
        request: &BrokerHeartbeatRequest,
    ) -> Result<HeartbeatDecision> {
        let broker = current_broker(image, request.broker_id, request.broker_epoch)?;
        self.liveness.touch(request.broker_id, now_ms);
        if let Some(session) = self.liveness.sessions.get_mut(&request.broker_id) {
            let reported = request.current_metadata_offset;
            session.metadata_offset = Some(
                session
                    .metadata_offset
                    .map_or(reported, |o| o.max(reported)),
            );
        }
        let id = broker.id;
        let change = |fenced: Option<bool>, in_controlled_shutdown: Option<bool>| {
            MetadataRecord::BrokerRegistrationChange(BrokerRegistrationChangeRecord {
                broker_id: id,
                broker_epoch: broker.epoch,
                fenced,
                in_controlled_shutdown,
                storage_unavailable: None,
            })
        };
        let storage_change = |unavailable: bool| {
            MetadataRecord::BrokerRegistrationChange(BrokerRegistrationChangeRecord {
                broker_id: id,
                broker_epoch: broker.epoch,
                fenced: None,
                in_controlled_shutdown: None,
                storage_unavailable: Some(unavailable),
            })
        };
        let is_caught_up = request.current_metadata_offset >= broker.epoch;
        let mut decision = HeartbeatDecision {
            records: Vec::new(),
            is_caught_up,
            is_fenced: broker.fenced,
            in_controlled_shutdown: broker.in_controlled_shutdown,
            should_shut_down: false,
        };
        if broker.fenced {
            if request.want_shut_down || broker.in_controlled_shutdown {
                // A fenced broker leads nothing: it may stop at once. One fenced at the
                // end of a controlled shutdown is not unfenced: it stops, and comes back
                // with a new registration.
                decision.should_shut_down = true;
            } else if !request.want_fence && is_caught_up {
                info!(broker = id, "unfencing broker: caught up with the metadata");
                decision.records.push(change(Some(false), None));
                decision
                    .records
                    .extend(take_offline_partitions(image, &self.config, id));
                decision.is_fenced = false;
            }
        } else if !broker.in_controlled_shutdown && request.want_shut_down {
            info!(broker = id, "broker starts a controlled shutdown");
            decision.records.push(change(None, Some(true)));
            decision
                .records
                .extend(leave_partitions(image, &self.config, id));
            decision.in_controlled_shutdown = true;
        } else if broker.in_controlled_shutdown {
            // The batch that started the shutdown is applied (the image shows it); the
            // current offset is at or after it.
            let shutdown_offset = *self
                .liveness
                .sessions
                .entry(id)
                .or_default()
                .controlled_shutdown_offset
                .get_or_insert(image.metadata_offset());
            let still_leads = !image.partitions_led_by(id).is_empty();
            let lowest_active = self.lowest_active_offset(image, id);
            if still_leads {
                // Only a decision made on an older image could have given it one; move
                // it again.
                decision
                    .records
                    .extend(leave_partitions(image, &self.config, id));
            } else if lowest_active >= shutdown_offset {
                // Kafka's rule: it leads nothing, and every active broker has applied the
                // leadership moves, so its partitions' new leaders serve. Fence it, and
                // tell it to stop.
                info!(
                    broker = id,
                    "controlled shutdown granted: the broker leads nothing"
                );
                decision.records.push(change(Some(true), None));
                decision.is_fenced = true;
                decision.should_shut_down = true;
            } else {
                debug!(
                    broker = id,
                    shutdown_offset,
                    lowest_active,
                    "controlled shutdown waits for the active brokers to apply the leadership moves"
                );
            }
        } else if request.want_fence {
            info!(broker = id, "fencing broker at its request");
            decision
                .records
                .extend(leave_partitions(image, &self.config, id));
            decision.records.push(change(Some(true), None));
            decision.is_fenced = true;
        } else if request.storage_unavailable && !broker.storage_unavailable {
            warn!(
                broker = id,
                "broker reports its storage unavailable (free space below \
                 log.dir.min.free.bytes): moving its leaderships to other in-sync replicas"
            );
            decision.records.push(storage_change(true));
            decision
                .records
                .extend(leave_partitions_for_storage(image, id));
        } else if !request.storage_unavailable && broker.storage_unavailable {
            info!(broker = id, "broker reports its storage available again");
            decision.records.push(storage_change(false));
            // As an unfencing: the leaderless partitions it is in sync for are its.
            decision
                .records
                .extend(take_offline_partitions(image, &self.config, id));
        }
        Ok(decision)
    }

    /// The lowest metadata offset the active brokers (unfenced, not shutting down) other
    /// than `except` reported; one that has not reported since this controller became
    /// active counts as -1. `i64::MAX` with no active broker.
    fn lowest_active_offset(&self, image: &MetadataImage, except: BrokerId) -> i64 {
        image
            .usable_brokers()
            .filter(|b| b.id != except)
            .map(|b| self.liveness.metadata_offset(b.id).unwrap_or(-1))
            .min()
            .unwrap_or(i64::MAX)
    }

    /// Fences every unfenced broker whose session has expired (no heartbeat for
    /// `session_timeout_ms`), moving its leaderships away. A broker never seen by this
    /// controller (it just became active) gets a full session from `now_ms`.
    pub fn fence_expired_brokers(
        &mut self,
        image: &MetadataImage,
        now_ms: u64,
    ) -> Vec<MetadataRecord> {
        let timeout = self.config.session_timeout_ms;
        let mut expired = Vec::new();
        for broker in image.live_brokers() {
            let session = self.liveness.sessions.entry(broker.id).or_insert(Session {
                last_heartbeat_ms: now_ms,
                ..Session::default()
            });
            let silent_for = now_ms.saturating_sub(session.last_heartbeat_ms);
            let decided_recently = session
                .fence_decided_ms
                .is_some_and(|at| now_ms.saturating_sub(at) < timeout);
            if silent_for >= timeout && !decided_recently {
                info!(
                    broker = broker.id,
                    silent_for_ms = silent_for,
                    "fencing broker: session expired"
                );
                session.fence_decided_ms = Some(now_ms);
                expired.push(broker.id);
            }
        }
        fence_brokers(image, &self.config, &expired)
    }

    /// Renews a broker's session as of `now_ms` without deciding anything (a heartbeat that
    /// arrived but is not handled, because its caller gave up while it waited). Ignored
    /// for a broker that is not registered at `broker_epoch`.
    pub fn renew_session(
        &mut self,
        image: &MetadataImage,
        broker_id: BrokerId,
        broker_epoch: i64,
        now_ms: u64,
    ) {
        if current_broker(image, broker_id, broker_epoch).is_ok() {
            self.liveness.touch(broker_id, now_ms);
        }
    }

    /// The fences in `records` (from [`Self::fence_expired_brokers`]) were not committed:
    /// they may be decided again at the next check instead of a session later. (If the
    /// batch's outcome is unknown, the caller decides only once it has seen the outcome:
    /// a broker it did fence is not live any more.)
    pub fn fences_not_committed(&mut self, records: &[MetadataRecord]) {
        for record in records {
            if let MetadataRecord::BrokerRegistrationChange(c) = record {
                if c.fenced == Some(true) {
                    if let Some(session) = self.liveness.sessions.get_mut(&c.broker_id) {
                        session.fence_decided_ms = None;
                    }
                }
            }
        }
    }

    /// Gives every broker a full session from `now_ms`, as a newly active controller does:
    /// for the caller whose own loop stalled (it could not take heartbeats in time, so a
    /// silence says nothing about the brokers).
    pub fn renew_all_sessions(&mut self, now_ms: u64) {
        for session in self.liveness.sessions.values_mut() {
            session.last_heartbeat_ms = session.last_heartbeat_ms.max(now_ms);
            session.fence_decided_ms = None;
        }
    }

    /// When [`Self::fence_expired_brokers`] should run next: the earliest session end of a
    /// live broker, if any (for the caller's timer).
    pub fn next_session_deadline_ms(&self, image: &MetadataImage) -> Option<u64> {
        image
            .live_brokers()
            .filter_map(|b| self.liveness.sessions.get(&b.id))
            .map(|s| {
                let base = s.fence_decided_ms.unwrap_or(s.last_heartbeat_ms);
                base.saturating_add(self.config.session_timeout_ms)
            })
            .min()
    }

    /// A broker leaves the cluster for good (Kafka's UnregisterBroker): its leaderships
    /// and ISR places are given up, then its registration is removed.
    pub fn unregister_broker(
        &mut self,
        image: &MetadataImage,
        broker_id: BrokerId,
    ) -> Result<Vec<MetadataRecord>> {
        let broker = image
            .broker(broker_id)
            .ok_or(MetadataError::BrokerIdNotRegistered(broker_id))?;
        let mut records = leave_partitions(image, &self.config, broker_id);
        records.push(MetadataRecord::UnregisterBroker(UnregisterBrokerRecord {
            broker_id,
            broker_epoch: broker.epoch,
        }));
        self.liveness.sessions.remove(&broker_id);
        Ok(records)
    }

    // ----- topics -----

    /// CreateTopics, with Kafka's validation and errors. All created topics commit in one
    /// batch; a request whose records would exceed [`MAX_RECORDS_PER_OPERATION`] fails
    /// whole, every topic with `POLICY_VIOLATION`, as in Kafka.
    pub fn create_topics(
        &mut self,
        image: &MetadataImage,
        topics: &[CreateTopic],
    ) -> Outcome<CreatedTopic> {
        let duplicate_names = duplicates(topics.iter().map(|t| t.name.as_str()));
        let duplicate_ids = duplicates(topics.iter().filter_map(|t| t.topic_id));
        let mut taken: BTreeMap<String, String> = image
            .topics()
            .map(|t| (collision_key(&t.name), t.name.clone()))
            .collect();
        let usable = usable_brokers(image);
        let mut records = Vec::new();
        let results = topics
            .iter()
            .map(|topic| {
                if duplicate_names.contains(topic.name.as_str()) {
                    return Err(MetadataError::InvalidRequest(
                        "Duplicate topic name.".into(),
                    ));
                }
                if let Some(id) = topic.topic_id.filter(|id| duplicate_ids.contains(id)) {
                    return Err(MetadataError::InvalidRequest(format!(
                        "Duplicate topic id {id}."
                    )));
                }
                let (created, topic_records) =
                    self.create_topic(image, &usable, &taken, topic, records.len())?;
                taken.insert(collision_key(&topic.name), topic.name.clone());
                records.extend(topic_records);
                Ok(created)
            })
            .collect();
        Outcome::all_or_too_large(records, results)
    }

    fn create_topic(
        &mut self,
        image: &MetadataImage,
        usable: &[PlacementBroker],
        taken: &BTreeMap<String, String>,
        topic: &CreateTopic,
        records_so_far: usize,
    ) -> Result<(CreatedTopic, Vec<MetadataRecord>)> {
        validate_topic_name(&topic.name)?;
        if image.topic(&topic.name).is_some() {
            return Err(MetadataError::TopicAlreadyExists(topic.name.clone()));
        }
        if let Some(existing) = taken.get(&collision_key(&topic.name)) {
            return Err(MetadataError::InvalidTopic(format!(
                "Topic '{}' collides with existing topic: {existing}",
                topic.name
            )));
        }
        if let Some(id) = topic.topic_id {
            check_requested_topic_id(image, &topic.name, id)?;
        }
        let replica_lists = if topic.assignments.is_empty() {
            let partitions = match topic.num_partitions {
                -1 => self.config.default_num_partitions,
                n => n,
            };
            let rf = match topic.replication_factor {
                -1 => self.config.default_replication_factor,
                rf => rf,
            };
            check_record_budget(records_so_far, partitions, topic.configs.len())?;
            self.placer.place(usable, partitions, rf)?
        } else {
            if topic.num_partitions != -1 || topic.replication_factor != -1 {
                return Err(MetadataError::InvalidRequest(
                    "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.".into(),
                ));
            }
            let count = i32::try_from(topic.assignments.len()).unwrap_or(i32::MAX);
            check_record_budget(records_so_far, count, topic.configs.len())?;
            let mut by_index = BTreeMap::new();
            for a in &topic.assignments {
                by_index.insert(a.partition, a.replicas.clone());
            }
            if by_index.len() != topic.assignments.len()
                || by_index
                    .keys()
                    .enumerate()
                    .any(|(i, &p)| i as i64 != p as i64)
            {
                return Err(MetadataError::InvalidReplicaAssignment(
                    "Partitions should be a consecutive 0-based integer sequence.".into(),
                ));
            }
            let lists: Vec<Vec<BrokerId>> = by_index.into_values().collect();
            let rf = lists[0].len();
            for (p, replicas) in lists.iter().enumerate() {
                check_manual_assignment(image, p as i32, replicas, Some(rf))?;
            }
            lists
        };
        let topic_id = topic.topic_id.unwrap_or_else(|| new_topic_id(image));
        let mut records = vec![MetadataRecord::Topic(TopicRecord {
            name: topic.name.clone(),
            topic_id,
        })];
        for (p, replicas) in replica_lists.iter().enumerate() {
            records.push(new_partition(image, topic_id, p as i32, replicas)?);
        }
        for (name, value) in &topic.configs {
            if name.is_empty() {
                return Err(MetadataError::InvalidConfig("empty config name".into()));
            }
            records.push(MetadataRecord::Config(ConfigRecord {
                resource: ConfigResource::Topic(topic.name.clone()),
                name: name.clone(),
                value: Some(value.clone()),
            }));
        }
        debug!(topic = %topic.name, %topic_id, partitions = replica_lists.len(), "create topic decided");
        Ok((
            CreatedTopic {
                topic_id,
                num_partitions: replica_lists.len() as i32,
                replication_factor: replica_lists[0].len() as i16,
            },
            records,
        ))
    }

    /// DeleteTopics: one [`RemoveTopicRecord`] per topic (which also drops its configs).
    pub fn delete_topics(
        &self,
        image: &MetadataImage,
        topics: &[TopicRef],
    ) -> Outcome<DeletedTopic> {
        let mut ids = Vec::new();
        let mut records = Vec::new();
        let mut results: Vec<Result<DeletedTopic>> = topics
            .iter()
            .map(|t| {
                let topic = match t {
                    TopicRef::Name(name) => image
                        .topic(name)
                        .ok_or_else(|| MetadataError::UnknownTopicOrPartition(name.clone()))?,
                    TopicRef::Id(id) => image
                        .topic_by_id(*id)
                        .ok_or(MetadataError::UnknownTopicId(*id))?,
                };
                ids.push(topic.id);
                Ok(DeletedTopic {
                    topic_id: topic.id,
                    name: topic.name.clone(),
                })
            })
            .collect();
        // The same topic twice (by name, by id, or both) is an invalid request for each.
        let repeated: BTreeSet<Uuid> = duplicates(ids.iter().copied());
        for result in &mut results {
            if let Ok(d) = result {
                if repeated.contains(&d.topic_id) {
                    *result = Err(MetadataError::InvalidRequest(
                        "Duplicate topic name.".into(),
                    ));
                } else {
                    records.push(MetadataRecord::RemoveTopic(RemoveTopicRecord {
                        topic_id: d.topic_id,
                    }));
                }
            }
        }
        Outcome { records, results }
    }

    /// CreatePartitions: grows topics to a new partition count (never shrinks), with the
    /// replication factor of the topic's partition 0.
    pub fn create_partitions(
        &mut self,
        image: &MetadataImage,
        requests: &[CreatePartitions],
    ) -> Outcome<()> {
        let duplicates = duplicates(requests.iter().map(|r| r.name.as_str()));
        let usable = usable_brokers(image);
        let mut records = Vec::new();
        let results = requests
            .iter()
            .map(|r| {
                if duplicates.contains(r.name.as_str()) {
                    return Err(MetadataError::InvalidRequest(
                        "Duplicate topic name.".into(),
                    ));
                }
                let more = self.add_partitions(image, &usable, r, records.len())?;
                records.extend(more);
                Ok(())
            })
            .collect();
        Outcome::all_or_too_large(records, results)
    }

    fn add_partitions(
        &mut self,
        image: &MetadataImage,
        usable: &[PlacementBroker],
        request: &CreatePartitions,
        records_so_far: usize,
    ) -> Result<Vec<MetadataRecord>> {
        let topic = image
            .topic(&request.name)
            .ok_or_else(|| MetadataError::UnknownTopicOrPartition(request.name.clone()))?;
        let current = topic.partitions.len() as i32;
        if request.count < current {
            return Err(MetadataError::InvalidPartitions(format!(
                "The topic {} currently has {current} partition(s); {} would not be an increase.",
                request.name, request.count
            )));
        }
        if request.count == current {
            return Err(MetadataError::InvalidPartitions(format!(
                "Topic already has {current} partition(s)."
            )));
        }
        let added = request.count - current;
        check_record_budget(records_so_far, added, 0)?;
        let rf = topic.partitions.first().map_or(1, |p| p.replicas.len());
        let lists = match &request.assignments {
            Some(lists) => {
                if lists.len() != added as usize {
                    return Err(MetadataError::InvalidReplicaAssignment(format!(
                        "Attempted to add {added} additional partition(s), but only {} assignment(s) were specified.",
                        lists.len()
                    )));
                }
                for (i, replicas) in lists.iter().enumerate() {
                    check_manual_assignment(image, current + i as i32, replicas, Some(rf))?;
                }
                lists.clone()
            }
            None => self.placer.place(usable, added, rf as i16)?,
        };
        lists
            .iter()
            .enumerate()
            .map(|(i, replicas)| new_partition(image, topic.id, current + i as i32, replicas))
            .collect()
    }

    // ----- configs -----

    /// IncrementalAlterConfigs (SET and DELETE): one [`ConfigRecord`] per actual change
    /// (setting the current value or deleting an absent key commits nothing).
    pub fn alter_configs(&self, image: &MetadataImage, resources: &[AlterConfigs]) -> Outcome<()> {
        let mut records = Vec::new();
        let results = resources
            .iter()
            .map(|r| {
                match &r.resource {
                    ConfigResource::Topic(name) if image.topic(name).is_none() => {
                        return Err(MetadataError::UnknownTopicOrPartition(name.clone()))
                    }
                    ConfigResource::Broker(id) if *id < 0 => {
                        return Err(MetadataError::InvalidRequest(format!(
                            "Invalid broker id {id}"
                        )))
                    }
                    ConfigResource::Group(id) if id.is_empty() => {
                        return Err(MetadataError::InvalidRequest(
                            "Invalid group id: empty".into(),
                        ))
                    }
                    // A cluster started by an earlier build: its older nodes could not
                    // read group configs.
                    ConfigResource::Group(_) if image.metadata_version() < 2 => {
                        return Err(MetadataError::MetadataVersionTooLow {
                            needed: 2,
                            level: image.metadata_version(),
                        })
                    }
                    _ => {}
                }
                let mut keys = BTreeSet::new();
                for (key, _) in &r.changes {
                    if key.is_empty() {
                        return Err(MetadataError::InvalidConfig("empty config name".into()));
                    }
                    if !keys.insert(key) {
                        return Err(MetadataError::InvalidRequest(format!(
                            "Error due to duplicate config keys: {key}"
                        )));
                    }
                }
                if records.len() + r.changes.len() > MAX_RECORDS_PER_OPERATION {
                    return Err(too_large());
                }
                for (key, value) in &r.changes {
                    if image.config(&r.resource, key) != value.as_deref() {
                        records.push(MetadataRecord::Config(ConfigRecord {
                            resource: r.resource.clone(),
                            name: key.clone(),
                            value: value.clone(),
                        }));
                    }
                }
                Ok(())
            })
            .collect();
        Outcome::all_or_too_large(records, results)
    }

    // ----- producer ids -----

    /// AllocateProducerIds: the next block of ids for a broker, never overlapping any
    /// block given before, cluster-wide.
    pub fn allocate_producer_ids(
        &self,
        image: &MetadataImage,
        broker_id: BrokerId,
        broker_epoch: i64,
    ) -> Result<(ProducerIdBlock, Vec<MetadataRecord>)> {
        self.allocate_producer_ids_at_least(image, broker_id, broker_epoch, 0)
    }

    /// AllocateProducerIds whose block starts at `at_least` or above: the block starts at
    /// the larger of the next free id and `at_least`, and the ids skipped are never
    /// given out. A broker upgrading a single-node data directory asks for one such block
    /// above the ids the single node handed out (its partitions still hold producer state
    /// for them), so that every later block, of any broker, is above them too.
    pub fn allocate_producer_ids_at_least(
        &self,
        image: &MetadataImage,
        broker_id: BrokerId,
        broker_epoch: i64,
        at_least: i64,
    ) -> Result<(ProducerIdBlock, Vec<MetadataRecord>)> {
        current_broker(image, broker_id, broker_epoch)?;
        if at_least < 0 {
            return Err(MetadataError::InvalidRequest(format!(
                "a producer id block cannot start at {at_least}"
            )));
        }
        let first_id = image.next_producer_id().max(at_least);
        let size = self.config.producer_id_block_size;
        if size <= 0 || first_id.checked_add(size).is_none() {
            return Err(MetadataError::ProducerIdsExhausted);
        }
        let block = ProducerIdBlock {
            broker_id,
            first_id,
            size,
        };
        let record = MetadataRecord::ProducerIds(ProducerIdsRecord {
            broker_id,
            broker_epoch,
            first_producer_id: first_id,
            size,
        });
        Ok((block, vec![record]))
    }

    // ----- partitions -----

    /// Moves leadership back to each partition's preferred replica (its first) where that
    /// replica is in the ISR and usable (Kafka's preferred leader election, run by the
    /// active controller every `leader.imbalance.check.interval.seconds` while
    /// `auto.leader.rebalance.enable`). A partition whose preferred replica is out of the
    /// ISR keeps its leader: the preferred replica first catches up and the leader adds it
    /// (AlterPartition). At most [`MAX_RECORDS_PER_OPERATION`] moves per call; the next
    /// call does the rest.
    pub fn elect_preferred_leaders(&self, image: &MetadataImage) -> Vec<MetadataRecord> {
        image
            .all_partitions()
            .filter_map(|p| {
                let preferred = p.registration.preferred_leader();
                let eligible = preferred != p.registration.leader
                    && p.registration.isr.contains(&preferred)
                    && image.broker(preferred).is_some_and(|b| b.is_usable());
                eligible.then(|| change(&p, Some(preferred), None))
            })
            .take(MAX_RECORDS_PER_OPERATION)
            .collect()
    }

    /// Leaders for leaderless partitions that can have one now (see
    /// `leadership::elect_offline_leaders`): where unclean leader election was enabled
    /// after the partition went offline, the first usable replica leads alone. The active
    /// controller runs it at every liveness check; it finds nothing in a healthy cluster.
    pub fn elect_offline_leaders(&self, image: &MetadataImage) -> Vec<MetadataRecord> {
        elect_offline_leaders(image, &self.config, MAX_RECORDS_PER_OPERATION)
    }

    /// AlterPartition: the leader changes the ISR of a partition it leads, if the
    /// partition epoch it read is still current (compare-and-set). Kafka's checks
    /// (`ReplicationControlManager.alterPartition`), in its order:
    /// - the sender is registered at `broker_epoch`, else `STALE_BROKER_EPOCH`;
    /// - the topic and partition exist (`UNKNOWN_TOPIC_ID`, `UNKNOWN_TOPIC_OR_PARTITION`);
    /// - a leader or partition epoch above the image's: this controller is behind,
    ///   `NOT_CONTROLLER`;
    /// - a leader epoch below the partition's: the sender was deposed,
    ///   `FENCED_LEADER_EPOCH`;
    /// - the sender is not the leader (at the current leader epoch): `INVALID_REQUEST`;
    /// - a partition epoch below the partition's: the change was based on an older
    ///   state, `INVALID_UPDATE_VERSION`;
    /// - a new ISR that is not a set of the replicas, or lacks the leader:
    ///   `INVALID_REQUEST`;
    /// - a member that is not registered, is fenced or shutting down, or whose broker
    ///   epoch is not the one the leader gives for it (KIP-903; -1 skips that check, as
    ///   in Kafka), or a new member whose storage is unavailable: `INELIGIBLE_REPLICA`.
    ///
    /// The same ISR again commits nothing; the caller answers with the partition as it
    /// then is.
    pub fn alter_partition(
        &self,
        image: &MetadataImage,
        request: &AlterPartitionRequest,
    ) -> Result<Vec<MetadataRecord>> {
        let sender = request.broker_id;
        match image.broker(sender) {
            Some(b) if b.epoch == request.broker_epoch => {}
            registered => {
                return Err(MetadataError::StaleBrokerEpoch {
                    broker_id: sender,
                    got: request.broker_epoch,
                    current: registered.map_or(-1, |b| b.epoch),
                })
            }
        }
        let topic = image
            .topic_by_id(request.topic_id)
            .ok_or(MetadataError::UnknownTopicId(request.topic_id))?;
        let name = format!("{}-{}", topic.name, request.partition);
        let current = topic
            .partition(request.partition)
            .ok_or_else(|| MetadataError::UnknownTopicOrPartition(name.clone()))?;
        let refuse = |why: String| {
            debug!(broker = sender, partition = %name, "AlterPartition refused: {why}");
            why
        };
        if request.leader_epoch > current.leader_epoch
            || request.partition_epoch > current.partition_epoch
        {
            return Err(MetadataError::ControllerBehind(refuse(format!(
                "Rejecting AlterPartition request from node {sender} for {name} because its leader epoch {} / partition epoch {} is newer than this controller's {} / {}.",
                request.leader_epoch, request.partition_epoch, current.leader_epoch, current.partition_epoch
            ))));
        }
        if request.leader_epoch < current.leader_epoch {
            refuse(format!(
                "leader epoch {} < {}",
                request.leader_epoch, current.leader_epoch
            ));
            return Err(MetadataError::NotLeader {
                broker_id: sender,
                leader_epoch: request.leader_epoch,
            });
        }
        if current.leader != sender {
            return Err(MetadataError::InvalidRequest(refuse(format!(
                "Rejecting AlterPartition request from node {sender} for {name} because the current leader is {}.",
                current.leader
            ))));
        }
        if request.partition_epoch < current.partition_epoch {
            refuse(format!(
                "partition epoch {} < {}",
                request.partition_epoch, current.partition_epoch
            ));
            return Err(MetadataError::InvalidUpdateVersion {
                got: request.partition_epoch,
                current: current.partition_epoch,
            });
        }
        let new_isr: Vec<BrokerId> = request.new_isr.iter().map(|m| m.broker_id).collect();
        let distinct = new_isr.iter().collect::<BTreeSet<_>>().len() == new_isr.len();
        if new_isr.is_empty() || !distinct || new_isr.iter().any(|r| !current.replicas.contains(r))
        {
            return Err(MetadataError::InvalidRequest(refuse(format!(
                "Rejecting AlterPartition request from node {sender} for {name} because it specified an invalid ISR {new_isr:?}."
            ))));
        }
        if !new_isr.contains(&sender) {
            return Err(MetadataError::InvalidRequest(refuse(format!(
                "Rejecting AlterPartition request from node {sender} for {name} because it specified an invalid ISR {new_isr:?} that doesn't include itself."
            ))));
        }
        let ineligible: Vec<String> = request
            .new_isr
            .iter()
            .filter_map(|m| {
                let why = match image.broker(m.broker_id) {
                    None => "not registered".to_owned(),
                    Some(b) if b.in_controlled_shutdown => "shutting down".to_owned(),
                    Some(b) if b.fenced => "fenced".to_owned(),
                    // One already in the ISR may stay (it can be the last member).
                    Some(b) if b.storage_unavailable && !current.isr.contains(&m.broker_id) => {
                        "storage unavailable".to_owned()
                    }
                    Some(b) if m.broker_epoch != -1 && b.epoch != m.broker_epoch => format!(
                        "broker epoch mismatch: requested={} VS expected={}",
                        m.broker_epoch, b.epoch
                    ),
                    Some(_) => return None,
                };
                Some(format!("{} ({why})", m.broker_id))
            })
            .collect();
        if !ineligible.is_empty() {
            return Err(MetadataError::IneligibleReplica(refuse(format!(
                "Rejecting AlterPartition request from node {sender} for {name} because it specified ineligible replicas [{}] in the new ISR {new_isr:?}.",
                ineligible.join(", ")
            ))));
        }
        if new_isr == current.isr {
            return Ok(Vec::new());
        }
        info!(partition = %name, leader = sender, old_isr = ?current.isr, new_isr = ?new_isr, "ISR change");
        // The change that brings the last adding replica into the ISR completes the
        // reassignment in the same record.
        if let Some(done) = reassignment::completion(image, current, &new_isr) {
            info!(partition = %name, replicas = ?done.replicas, "reassignment completed");
            return Ok(vec![done.into_record(
                request.topic_id,
                request.partition,
                current,
            )]);
        }
        Ok(vec![MetadataRecord::PartitionChange(
            PartitionChangeRecord {
                topic_id: request.topic_id,
                partition_id: request.partition,
                leader: None,
                isr: Some(new_isr),
                replicas: None,
                expected_partition_epoch: Some(current.partition_epoch),
                adding_replicas: None,
                removing_replicas: None,
            },
        )])
    }
}

// ----- helpers -----

fn current_broker(
    image: &MetadataImage,
    id: BrokerId,
    epoch: i64,
) -> Result<&crate::image::BrokerRegistration> {
    let broker = image
        .broker(id)
        .ok_or(MetadataError::BrokerIdNotRegistered(id))?;
    if broker.epoch != epoch {
        return Err(MetadataError::StaleBrokerEpoch {
            broker_id: id,
            got: epoch,
            current: broker.epoch,
        });
    }
    Ok(broker)
}

fn usable_brokers(image: &MetadataImage) -> Vec<PlacementBroker> {
    image
        .usable_brokers()
        .map(|b| PlacementBroker {
            id: b.id,
            rack: b.rack.clone(),
        })
        .collect()
}

fn duplicates<T: Ord + Copy>(items: impl Iterator<Item = T>) -> BTreeSet<T> {
    let mut seen = BTreeSet::new();
    items.filter(|i| !seen.insert(*i)).collect()
}

impl<T> Outcome<T> {
    /// Kafka fails a whole operation whose batch would be too large (its
    /// `BoundedListTooLongException` escapes the request): every item gets
    /// `POLICY_VIOLATION` and nothing is committed.
    fn all_or_too_large(records: Vec<MetadataRecord>, results: Vec<Result<T>>) -> Self {
        if results
            .iter()
            .any(|r| matches!(r, Err(MetadataError::PolicyViolation(_))))
        {
            return Outcome {
                records: Vec::new(),
                results: results.iter().map(|_| Err(too_large())).collect(),
            };
        }
        Outcome { records, results }
    }
}

fn too_large() -> MetadataError {
    MetadataError::PolicyViolation("Unable to perform excessively large batch operation.".into())
}

/// Refuses an operation whose records would exceed [`MAX_RECORDS_PER_OPERATION`], before
/// anything of that size is allocated.
fn check_record_budget(so_far: usize, partitions: i32, configs: usize) -> Result<()> {
    let partitions = usize::try_from(partitions).unwrap_or(0);
    if so_far + 1 + partitions + configs > MAX_RECORDS_PER_OPERATION {
        return Err(too_large());
    }
    Ok(())
}

fn check_manual_assignment(
    image: &MetadataImage,
    partition: i32,
    replicas: &[BrokerId],
    rf: Option<usize>,
) -> Result<()> {
    let bad = |m: String| Err(MetadataError::InvalidReplicaAssignment(m));
    if replicas.is_empty() {
        return bad(format!(
            "The manual partition assignment includes an empty replica list for partition {partition}."
        ));
    }
    if duplicates(replicas.iter().copied()).first().is_some() {
        return bad(format!(
            "The manual partition assignment includes the broker {:?} more than once for partition {partition}.",
            duplicates(replicas.iter().copied())
        ));
    }
    if let Some(b) = replicas.iter().find(|&&b| image.broker(b).is_none()) {
        return bad(format!(
            "The manual partition assignment includes broker {b}, but no such broker is registered."
        ));
    }
    if let Some(rf) = rf {
        if replicas.len() != rf {
            return bad(format!(
                "The manual partition assignment includes the partition {partition} with replication factor {}, but {rf} is required.",
                replicas.len()
            ));
        }
    }
    if !replicas
        .iter()
        .any(|&b| image.broker(b).is_some_and(|b| b.is_usable()))
    {
        return bad(format!(
            "All brokers specified in the manual partition assignment for partition {partition} are fenced or in controlled shutdown."
        ));
    }
    Ok(())
}

/// A new partition's record: ISR = the usable replicas, leader = the first of them.
fn new_partition(
    image: &MetadataImage,
    topic_id: Uuid,
    partition: i32,
    replicas: &[BrokerId],
) -> Result<MetadataRecord> {
    let isr: Vec<BrokerId> = replicas
        .iter()
        .copied()
        .filter(|&b| image.broker(b).is_some_and(|b| b.is_usable()))
        .collect();
    let Some(&leader) = isr.first() else {
        return Err(MetadataError::InvalidReplicaAssignment(format!(
            "All brokers specified in the manual partition assignment for partition {partition} are fenced or in controlled shutdown."
        )));
    };
    Ok(MetadataRecord::Partition(PartitionRecord {
        topic_id,
        partition_id: partition,
        replicas: replicas.to_vec(),
        isr,
        leader,
        leader_epoch: 0,
        partition_epoch: 0,
    }))
}

/// Topic ids no topic may have, as in Kafka (`Uuid.RESERVED`): the nil id, which Kafka
/// requests use for "no id", and `AAAAAAAAAAAAAAAAAAAAAQ`, the id of the metadata topic.
pub const RESERVED_TOPIC_IDS: [Uuid; 2] = [Uuid::nil(), Uuid::from_u128(1)];

/// Whether a topic id a CreateTopics request asks for may be given to topic `name`.
fn check_requested_topic_id(image: &MetadataImage, name: &str, id: Uuid) -> Result<()> {
    if RESERVED_TOPIC_IDS.contains(&id) {
        return Err(MetadataError::InvalidRequest(format!(
            "Topic id {id} is reserved and cannot be given to topic '{name}'."
        )));
    }
    if let Some(other) = image.topic_by_id(id) {
        return Err(MetadataError::InvalidRequest(format!(
            "Topic id {id} is already the id of topic '{}'; it cannot be given to topic '{name}'.",
            other.name
        )));
    }
    Ok(())
}

/// A fresh topic id: random (never reused across deletes, unlike a seeded sequence), not
/// nil and not in use.
fn new_topic_id(image: &MetadataImage) -> Uuid {
    loop {
        let id = Uuid::new_v4();
        if !RESERVED_TOPIC_IDS.contains(&id) && image.topic_by_id(id).is_none() {
            return id;
        }
    }
}

#[cfg(test)]
mod tests;
