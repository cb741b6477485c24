//! The group coordinator: Kafka's classic consumer-group protocol as a sans-IO state
//! machine, with committed offsets kept as records of `__consumer_offsets`.
//!
//! - [`group`]: one group's membership and rebalance state machine (JoinGroup, SyncGroup,
//!   Heartbeat, LeaveGroup, session and rebalance timeouts, static membership).
//! - [`offsets`]: committed offsets: OffsetCommit validation, OffsetFetch, OffsetDelete,
//!   retention.
//! - [`store`]: the `__consumer_offsets` record format, the group -> partition hash, replay
//!   decoding (the topic is compacted: the log cleaner keeps each key's latest record).
//! - [`handlers`]: the thin mapping between kafka-protocol messages (every version the
//!   codec crate knows) and this module's domain types, and [`handlers::SUPPORTED`].
//!
//! # Driving the coordinator (what the I/O layer does)
//!
//! [`GroupCoordinator`] does no I/O and reads no clock; every call takes `now_ms`
//! (milliseconds; use a monotonic clock anchored to the wall clock, e.g. the wall time at
//! start plus an `Instant`'s elapsed time, since commit timestamps are persisted).
//!
//! Inputs:
//! - at start: [`GroupCoordinator::new_loading`], then for every `__consumer_offsets`
//!   partition read every batch from the log start offset and pass it to
//!   [`GroupCoordinator::replay_batch`], then [`GroupCoordinator::finish_load`]. Requests
//!   before that are answered COORDINATOR_LOAD_IN_PROGRESS.
//! - a cluster broker serves only the partitions it leads ([`Ownership`] per partition):
//!   start from [`GroupCoordinator::new_unowned`] (every group request answers
//!   NOT_COORDINATOR); on election [`GroupCoordinator::load_partition`], then the
//!   partition's batches through `replay_batch` and
//!   [`GroupCoordinator::finish_partition_load`] (or replay them into a separate
//!   coordinator and [`GroupCoordinator::adopt_partition`] its state), with
//!   COORDINATOR_LOAD_IN_PROGRESS meanwhile for that partition's groups; on resignation
//!   [`GroupCoordinator::unload_partition`], whose completions answer the partition's
//!   parked requests NOT_COORDINATOR. Only groups of loaded partitions exist, so timers
//!   and offset retention never touch a partition served elsewhere.
//! - each group request: the matching handler in [`handlers`] (or the domain method).
//! - timers: call [`GroupCoordinator::tick`] when [`GroupCoordinator::next_deadline`] is
//!   reached (re-read it after every call; a deadline may come earlier than needed, never
//!   later). There is no fixed polling.
//!
//! Outputs: every mutating call returns an [`Output`]: its `reply`, `completions` (answers
//! to requests parked earlier under a [`Ticket`]: JoinGroup and SyncGroup) and `writes`
//! (record batches to append to `__consumer_offsets`). The I/O layer must:
//! 1. append every [`LogWrite`] to its partition, in order and before any other call's
//!    writes to that partition (hold the coordinator lock while appending, or feed one
//!    ordered queue per partition);
//! 2. only then send the reply and the completions (Kafka answers after the records are
//!    written; a SyncGroup answer must not precede the stored assignment);
//! 3. if an append fails, call [`Output::fail`] with the storage error's Kafka code and
//!    send the failed answers instead (in-memory state may then be ahead of the log until
//!    a restart replays it, as when Kafka's append fails after a timeline update).
//!
//! A parked request whose connection went away can simply be forgotten by the I/O layer;
//! its completion will arrive later and be dropped.

pub mod group;
pub mod handlers;
pub mod offsets;
pub mod store;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::ConsumerProtocolAssignment;
use kafka_protocol::protocol::Decodable;

pub use group::{
    Group, GroupState, JoinMember, JoinRequest, JoinResponse, LeaveMember, LeaveMemberResponse,
    LeaveResponse, Member, MemberHeartbeat, Protocol, SyncRequest, SyncResponse,
    CONSUMER_PROTOCOL_TYPE,
};
pub use offsets::{
    CommitPartition, CommitRequest, CommitResponse, CommitTopic, DeleteOffsetsResponse,
    FetchResponse, FetchTopic, FetchedPartition, FetchedTopic, TopicErrors,
};
pub use store::{GroupValue, MemberValue, OffsetValue, Record, StoreError, OFFSETS_TOPIC};

/// Coordinator settings, named after Kafka's broker properties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoordinatorConfig {
    /// `group.min.session.timeout.ms`.
    pub group_min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`.
    pub group_max_session_timeout_ms: i32,
    /// `group.initial.rebalance.delay.ms`: how long the first rebalance of an Empty group
    /// waits for more members (extended while they keep coming, up to the rebalance
    /// timeout).
    pub group_initial_rebalance_delay_ms: i32,
    /// `group.max.size`.
    pub group_max_size: usize,
    /// How long a new member's first JoinGroup may stay parked (Kafka: 5 minutes, fixed).
    pub new_member_join_timeout_ms: i64,
    /// `offsets.topic.num.partitions`. Must equal the partition count of the existing
    /// `__consumer_offsets` topic: a group's records live in the partition its id hashes to.
    pub offsets_topic_num_partitions: i32,
    /// `offset.metadata.max.bytes` (compared with the metadata's length in UTF-16 units,
    /// as Java's `String.length()`).
    pub offset_metadata_max_bytes: usize,
    /// `offsets.retention.minutes`, in milliseconds.
    pub offsets_retention_ms: i64,
    /// `offsets.retention.check.interval.ms`: how often expired offsets and empty groups
    /// are cleaned up.
    pub offsets_retention_check_interval_ms: i64,
    /// Batches of `__consumer_offsets` records are cut at about this size (keep it below
    /// the topic's `max.message.bytes`).
    pub offsets_batch_bytes: usize,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        CoordinatorConfig {
            group_min_session_timeout_ms: 6_000,
            group_max_session_timeout_ms: 1_800_000,
            group_initial_rebalance_delay_ms: 3_000,
            group_max_size: i32::MAX as usize,
            new_member_join_timeout_ms: 300_000,
            offsets_topic_num_partitions: 50,
            offset_metadata_max_bytes: 4096,
            offsets_retention_ms: 7 * 24 * 60 * 60 * 1000,
            offsets_retention_check_interval_ms: 600_000,
            offsets_batch_bytes: 512 * 1024,
        }
    }
}

/// Names a parked JoinGroup or SyncGroup; its answer comes back as a [`Completion`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ticket(pub u64);

/// An answer now, or later under a ticket.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply<T> {
    Now(T),
    Pending(Ticket),
}

impl<T> Reply<T> {
    /// The immediate answer, if any.
    pub fn now(self) -> Option<T> {
        match self {
            Reply::Now(t) => Some(t),
            Reply::Pending(_) => None,
        }
    }

    pub fn ticket(&self) -> Option<Ticket> {
        match self {
            Reply::Now(_) => None,
            Reply::Pending(t) => Some(*t),
        }
    }

    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Reply<U> {
        match self {
            Reply::Now(t) => Reply::Now(f(t)),
            Reply::Pending(t) => Reply::Pending(t),
        }
    }
}

/// The answer to a parked request.
#[derive(Debug, Clone, PartialEq)]
pub enum Completion {
    Join {
        ticket: Ticket,
        response: JoinResponse,
    },
    Sync {
        ticket: Ticket,
        response: SyncResponse,
    },
}

impl Completion {
    pub fn ticket(&self) -> Ticket {
        match self {
            Completion::Join { ticket, .. } | Completion::Sync { ticket, .. } => *ticket,
        }
    }
}

/// Record batches to append to `__consumer_offsets-{partition}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogWrite {
    pub partition: i32,
    /// One or more record batches, end to end (append them in one call).
    pub records: Bytes,
}

/// What a call produced; see the module docs for what the I/O layer does with it.
#[must_use = "writes must be appended and completions delivered"]
#[derive(Debug, Clone, PartialEq)]
pub struct Output<R> {
    pub reply: R,
    pub completions: Vec<Completion>,
    pub writes: Vec<LogWrite>,
}

impl<R> Output<R> {
    pub fn map<S>(self, f: impl FnOnce(R) -> S) -> Output<S> {
        Output {
            reply: f(self.reply),
            completions: self.completions,
            writes: self.writes,
        }
    }
}

impl<R: Failable> Output<R> {
    /// The writes could not be appended (`storage_error` is the Kafka code of the storage
    /// failure): every answer carries the error Kafka gives in that case instead (see
    /// [`append_error`]), and the writes are dropped.
    pub fn fail(&mut self, storage_error: ResponseError) {
        let error = append_error(storage_error);
        self.reply.fail(error);
        for c in &mut self.completions {
            c.fail(error);
        }
        self.writes.clear();
    }
}

/// The error a client gets when the coordinator's records could not be written (Kafka's
/// `CoordinatorOperationExceptionHelper`): storage and leadership errors send the client
/// looking for the coordinator again.
pub fn append_error(storage_error: ResponseError) -> ResponseError {
    use ResponseError::*;
    match storage_error {
        UnknownTopicOrPartition
        | NotEnoughReplicas
        | NotEnoughReplicasAfterAppend
        | RequestTimedOut => CoordinatorNotAvailable,
        NotLeaderOrFollower | KafkaStorageError => NotCoordinator,
        MessageTooLarge | RecordListTooLarge | InvalidFetchSize => UnknownServerError,
        other => other,
    }
}

/// An answer that can be turned into an error answer.
pub trait Failable {
    fn fail(&mut self, error: ResponseError);
}

impl Failable for () {
    fn fail(&mut self, _error: ResponseError) {}
}

impl<T: Failable> Failable for Reply<T> {
    fn fail(&mut self, error: ResponseError) {
        if let Reply::Now(t) = self {
            t.fail(error);
        }
    }
}

impl Failable for Completion {
    fn fail(&mut self, error: ResponseError) {
        match self {
            Completion::Join { response, .. } => response.fail(error),
            Completion::Sync { response, .. } => response.fail(error),
        }
    }
}

impl Failable for JoinResponse {
    fn fail(&mut self, error: ResponseError) {
        *self = JoinResponse::error(&self.member_id, error);
    }
}

impl Failable for SyncResponse {
    fn fail(&mut self, error: ResponseError) {
        *self = SyncResponse::error(error);
    }
}

impl Failable for HeartbeatResult {
    fn fail(&mut self, error: ResponseError) {
        self.error = Some(error);
    }
}

impl Failable for LeaveResponse {
    fn fail(&mut self, error: ResponseError) {
        self.error = Some(error);
        self.members.clear();
    }
}

impl Failable for CommitResponse {
    fn fail(&mut self, error: ResponseError) {
        for t in &mut self.topics {
            for p in &mut t.partitions {
                p.1 = Some(error);
            }
        }
    }
}

impl Failable for DeleteOffsetsResponse {
    fn fail(&mut self, error: ResponseError) {
        self.error = Some(error);
        self.topics.clear();
    }
}

impl Failable for DeleteGroupsResult {
    fn fail(&mut self, error: ResponseError) {
        for r in &mut self.results {
            r.error = Some(error);
        }
    }
}

/// A Heartbeat answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatResult {
    pub error: Option<ResponseError>,
}

/// One group of a ListGroups answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSummary {
    pub group_id: String,
    /// "" for a simple group.
    pub protocol_type: String,
    pub state: GroupState,
}

/// A ListGroups answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    pub error: Option<ResponseError>,
    pub groups: Vec<GroupSummary>,
}

/// One member in a DescribeGroups answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// The member's metadata for the group's protocol (only for a Stable group).
    pub metadata: Bytes,
    pub assignment: Bytes,
}

/// One group of a DescribeGroups answer. An unknown group is Dead with
/// GROUP_ID_NOT_FOUND (DescribeGroups before v6 shows no error for it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub group_id: String,
    pub error: Option<ResponseError>,
    pub state: GroupState,
    pub protocol_type: String,
    /// The selected protocol (only for a Stable group).
    pub protocol_data: String,
    pub members: Vec<MemberDescription>,
}

/// The outcome for one group of a DeleteGroups request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteGroupResult {
    pub group_id: String,
    pub error: Option<ResponseError>,
}

/// A DeleteGroups answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteGroupsResult {
    pub results: Vec<DeleteGroupResult>,
}

/// Consumer lag of one partition of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    /// None if nothing is committed.
    pub committed_offset: Option<i64>,
    /// None if the partition is unknown to the caller.
    pub log_end_offset: Option<i64>,
    /// Log end offset minus committed offset (never negative), when both are known.
    pub lag: Option<i64>,
    /// The member the partition is assigned to (consumer-protocol groups).
    pub member_id: Option<String>,
    pub client_id: Option<String>,
    pub client_host: Option<String>,
}

/// Lag of a partition: log end offset minus committed offset, never negative.
/// (A committed offset is whatever a client sent: saturating, not overflowing.)
pub fn lag(committed_offset: i64, log_end_offset: i64) -> i64 {
    log_end_offset.saturating_sub(committed_offset).max(0)
}

/// The partitions of a consumer-protocol assignment (`ConsumerProtocolAssignment`,
/// prefixed by its version; later versions are read as the newest known, since they
/// extend it). None if the bytes do not parse.
pub fn decode_assignment(assignment: &Bytes) -> Option<Vec<(String, Vec<i32>)>> {
    if assignment.len() < 2 {
        return None;
    }
    let version = i16::from_be_bytes([assignment[0], assignment[1]]);
    if version < 0 {
        return None;
    }
    let mut body = assignment.slice(2..);
    let decoded = ConsumerProtocolAssignment::decode(&mut body, version.min(3)).ok()?;
    Some(
        decoded
            .assigned_partitions
            .into_iter()
            .map(|tp| (tp.topic.0.as_str().to_owned(), tp.partitions))
            .collect(),
    )
}

/// The side effects collected while handling one call.
#[derive(Debug, Default)]
pub(crate) struct Effects {
    pub completions: Vec<Completion>,
    pub records: Vec<Record>,
}

/// A group's persisted image: what replaying `__consumer_offsets` rebuilds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersistedGroup {
    pub metadata: Option<GroupValue>,
    pub offsets: BTreeMap<(String, i32), OffsetValue>,
}

/// All consumer groups of this broker; see the module docs.
#[derive(Debug)]
pub struct GroupCoordinator {
    config: CoordinatorConfig,
    groups: HashMap<String, Group>,
    /// Group ids by `__consumer_offsets` partition.
    by_partition: Vec<BTreeSet<String>>,
    /// (deadline, group id); an entry may be stale (earlier than the group's deadline).
    timers: BinaryHeap<Reverse<(i64, String)>>,
    next_ticket: u64,
    /// Per `__consumer_offsets` partition: whether this coordinator serves its groups.
    ownership: Vec<Ownership>,
    cleanup_at: Option<i64>,
}

/// Whether a coordinator serves the groups of one `__consumer_offsets` partition (Kafka's
/// `onElection` / `onResignation` per partition).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    /// Another broker leads the partition: its groups' requests answer NOT_COORDINATOR,
    /// so clients look for the coordinator again.
    NotOwned,
    /// Being replayed: COORDINATOR_LOAD_IN_PROGRESS, which clients retry here.
    Loading,
    /// Served.
    Loaded,
}

impl GroupCoordinator {
    /// A coordinator with no groups, ready to serve (nothing to load).
    pub fn new(config: CoordinatorConfig) -> GroupCoordinator {
        let partitions = config.offsets_topic_num_partitions.max(1) as usize;
        GroupCoordinator {
            config,
            groups: HashMap::new(),
            by_partition: vec![BTreeSet::new(); partitions],
            timers: BinaryHeap::new(),
            next_ticket: 1,
            ownership: vec![Ownership::Loaded; partitions],
            cleanup_at: None,
        }
    }

    /// A coordinator that answers COORDINATOR_LOAD_IN_PROGRESS until
    /// [`GroupCoordinator::finish_load`]; feed it the log with
    /// [`GroupCoordinator::replay_batch`].
    pub fn new_loading(config: CoordinatorConfig) -> GroupCoordinator {
        let mut coordinator = GroupCoordinator::new(config);
        coordinator.ownership.fill(Ownership::Loading);
        coordinator
    }

    /// A coordinator that owns no partition yet (a cluster broker: it takes the
    /// partitions it leads with [`GroupCoordinator::load_partition`]); every group
    /// request answers NOT_COORDINATOR until then.
    pub fn new_unowned(config: CoordinatorConfig) -> GroupCoordinator {
        let mut coordinator = GroupCoordinator::new(config);
        coordinator.ownership.fill(Ownership::NotOwned);
        coordinator
    }

    pub fn config(&self) -> &CoordinatorConfig {
        &self.config
    }

    /// Whether some partition is being loaded.
    pub fn is_loading(&self) -> bool {
        self.ownership.contains(&Ownership::Loading)
    }

    /// Whether this coordinator serves the groups of `partition` (None: no such
    /// partition).
    pub fn ownership(&self, partition: i32) -> Option<Ownership> {
        usize::try_from(partition)
            .ok()
            .and_then(|p| self.ownership.get(p))
            .copied()
    }

    /// The partitions in `state`.
    pub fn partitions_in(&self, state: Ownership) -> Vec<i32> {
        (0..self.ownership.len() as i32)
            .filter(|&p| self.ownership(p) == Some(state))
            .collect()
    }

    /// What a request for `group_id` gets while its partition is not served here: None
    /// when it is served.
    fn group_error(&self, group_id: &str) -> Option<ResponseError> {
        match self.ownership(self.partition_for(group_id)) {
            Some(Ownership::Loaded) => None,
            Some(Ownership::Loading) => Some(ResponseError::CoordinatorLoadInProgress),
            Some(Ownership::NotOwned) | None => Some(ResponseError::NotCoordinator),
        }
    }

    fn is_loaded(&self, partition: i32) -> bool {
        self.ownership(partition) == Some(Ownership::Loaded)
    }

    /// The `__consumer_offsets` partition of `group_id`.
    pub fn partition_for(&self, group_id: &str) -> i32 {
        store::partition_for(group_id, self.config.offsets_topic_num_partitions)
    }

    pub fn group(&self, group_id: &str) -> Option<&Group> {
        self.groups.get(group_id)
    }

    pub fn groups(&self) -> impl Iterator<Item = &Group> {
        self.groups.values()
    }

    /// When [`GroupCoordinator::tick`] should next be called (None: no timer pending).
    pub fn next_deadline(&self) -> Option<i64> {
        let timer = self.timers.peek().map(|Reverse((at, _))| *at);
        timer.into_iter().chain(self.cleanup_at).min()
    }

    /// Every group's persisted image (what a replay of the log would rebuild).
    pub fn persisted_state(&self) -> BTreeMap<String, PersistedGroup> {
        self.groups
            .values()
            .filter(|g| g.persisted().is_some() || !g.offsets.is_empty())
            .map(|g| {
                (
                    g.id().to_owned(),
                    PersistedGroup {
                        metadata: g.persisted().cloned(),
                        offsets: g.offsets.clone(),
                    },
                )
            })
            .collect()
    }

    // ---- loading -----------------------------------------------------------------------

    /// Replays one record batch of `__consumer_offsets-{partition}`, ignoring records
    /// below `from_offset` (the log start offset). Returns the records applied.
    pub fn replay_batch(
        &mut self,
        partition: i32,
        batch: Bytes,
        from_offset: i64,
    ) -> Result<usize, StoreError> {
        let records = store::decode_batch(partition, batch, from_offset)?;
        let n = records.len();
        for (_, record) in records {
            self.replay_record(partition, record);
        }
        Ok(n)
    }

    /// Applies one record read from `__consumer_offsets-{partition}`.
    pub fn replay_record(&mut self, partition: i32, record: Record) {
        // A restatement marker (written by releases before compaction) has no group.
        let Some(group_id) = record.group_id().map(str::to_owned) else {
            return;
        };
        let home = self.partition_for(&group_id);
        if home != partition {
            tracing::error!(group = %group_id, partition, expected = home,
                "__consumer_offsets record in another partition than its group's \
                 (was offsets.topic.num.partitions changed?)");
        }
        let state_timestamp = match &record {
            Record::Group { value: Some(v), .. } => v.state_timestamp_ms,
            _ => 0,
        };
        let group = self.get_or_create(&group_id, state_timestamp);
        group.apply_persisted(&record);
        match &record {
            Record::Group { value: Some(v), .. } => group.load_membership(v),
            Record::Group { value: None, .. } => group.clear_membership(),
            _ => {}
        }
        if group.is_removable() {
            self.remove_group(&group_id);
        }
    }

    /// Ends loading: members of loaded groups must heartbeat within their session
    /// timeouts from `now_ms`.
    pub fn finish_load(&mut self, now_ms: i64) -> Output<()> {
        let loading = self.partitions_in(Ownership::Loading);
        let output = self.finish_partitions(&loading, now_ms);
        tracing::info!(groups = self.groups.len(), "group coordinator loaded");
        output
    }

    // ---- partition ownership (a cluster) -----------------------------------------------

    /// Takes `partition` (this broker became its leader: Kafka's `onElection`): drops
    /// whatever it held of it and answers its groups' requests COORDINATOR_LOAD_IN_PROGRESS
    /// until [`GroupCoordinator::finish_partition_load`] or
    /// [`GroupCoordinator::adopt_partition`]. Feed the partition's batches in between with
    /// [`GroupCoordinator::replay_batch`], or replay them into another coordinator and
    /// adopt its state. The output answers requests parked on groups it held before.
    pub fn load_partition(&mut self, partition: i32) -> Output<()> {
        let output = self.unload_partition(partition);
        if let Some(o) = usize::try_from(partition)
            .ok()
            .and_then(|p| self.ownership.get_mut(p))
        {
            *o = Ownership::Loading;
        }
        output
    }

    /// Gives `partition` up (another broker leads it now: Kafka's `onResignation`): its
    /// groups' state is dropped, their parked JoinGroup/SyncGroup requests are answered
    /// NOT_COORDINATOR (the output's completions), and their requests answer
    /// NOT_COORDINATOR from now on. Nothing is written.
    pub fn unload_partition(&mut self, partition: i32) -> Output<()> {
        let mut fx = Effects::default();
        let ids: Vec<String> = usize::try_from(partition)
            .ok()
            .and_then(|p| self.by_partition.get(p))
            .map(|ids| ids.iter().cloned().collect())
            .unwrap_or_default();
        for id in &ids {
            if let Some(g) = self.groups.get_mut(id) {
                g.abandon_parked(ResponseError::NotCoordinator, &mut fx);
            }
            self.remove_group(id);
        }
        if let Some(o) = usize::try_from(partition)
            .ok()
            .and_then(|p| self.ownership.get_mut(p))
        {
            if *o != Ownership::NotOwned {
                tracing::info!(
                    partition,
                    groups = ids.len(),
                    "unloaded {OFFSETS_TOPIC} partition"
                );
            }
            *o = Ownership::NotOwned;
        }
        Output {
            reply: (),
            completions: fx.completions,
            writes: Vec::new(),
        }
    }

    /// Ends the loading of `partition` (its batches were replayed into this coordinator):
    /// its groups are served from now on, as [`GroupCoordinator::finish_load`] does for
    /// every partition. Nothing happens if the partition is not loading (it was given up
    /// meanwhile).
    pub fn finish_partition_load(&mut self, partition: i32, now_ms: i64) -> Output<()> {
        if self.ownership(partition) != Some(Ownership::Loading) {
            return Output {
                reply: (),
                completions: Vec::new(),
                writes: Vec::new(),
            };
        }
        let output = self.finish_partitions(&[partition], now_ms);
        let groups = self
            .by_partition
            .get(partition as usize)
            .map_or(0, BTreeSet::len);
        tracing::info!(partition, groups, "loaded {OFFSETS_TOPIC} partition");
        output
    }

    /// [`GroupCoordinator::finish_partition_load`] with the state `loaded` rebuilt by
    /// replaying `partition` (a coordinator with the same partition count, fed only that
    /// partition): lets the I/O layer replay without holding this coordinator. Ignored
    /// (nothing adopted) if the partition is not loading here any more.
    pub fn adopt_partition(
        &mut self,
        partition: i32,
        mut loaded: GroupCoordinator,
        now_ms: i64,
    ) -> Output<()> {
        if self.ownership(partition) == Some(Ownership::Loading)
            && loaded.ownership.len() == self.ownership.len()
        {
            let ids: Vec<String> = loaded
                .by_partition
                .get(partition as usize)
                .map(|ids| ids.iter().cloned().collect())
                .unwrap_or_default();
            for id in ids {
                if let Some(group) = loaded.groups.remove(&id) {
                    self.remove_group(&id);
                    if let Some(set) = self.by_partition.get_mut(partition as usize) {
                        set.insert(id.clone());
                    }
                    self.groups.insert(id, group);
                }
            }
        }
        self.finish_partition_load(partition, now_ms)
    }

    /// Serves the groups of `partitions` (all loading): members must heartbeat within
    /// their session timeouts from `now_ms`.
    fn finish_partitions(&mut self, partitions: &[i32], now_ms: i64) -> Output<()> {
        let mut ids = Vec::new();
        for &partition in partitions {
            if let Some(o) = self.ownership.get_mut(partition as usize) {
                *o = Ownership::Loaded;
            }
            if let Some(set) = self.by_partition.get(partition as usize) {
                ids.extend(set.iter().cloned());
            }
        }
        for id in &ids {
            if let Some(g) = self.groups.get_mut(id) {
                g.schedule_loaded_heartbeats(now_ms);
            }
            self.after_change(id);
        }
        self.schedule_cleanup(now_ms);
        Output {
            reply: (),
            completions: Vec::new(),
            writes: Vec::new(),
        }
    }

    // ---- membership APIs ---------------------------------------------------------------

    /// JoinGroup. The answer is often [`Reply::Pending`]: it comes as a completion when
    /// the rebalance's join phase completes.
    pub fn join_group(&mut self, req: &JoinRequest, now_ms: i64) -> Output<Reply<JoinResponse>> {
        let mut fx = Effects::default();
        let mut reply = self.join_inner(req, now_ms, &mut fx);
        if let Reply::Pending(ticket) = reply {
            if let Some(Completion::Join { response, .. }) = take_completion(&mut fx, ticket) {
                reply = Reply::Now(response);
            }
        }
        self.finish(reply, fx, now_ms)
    }

    fn join_inner(
        &mut self,
        req: &JoinRequest,
        now_ms: i64,
        fx: &mut Effects,
    ) -> Reply<JoinResponse> {
        let refuse = |e| Reply::Now(JoinResponse::error(&req.member_id, e));
        if let Some(error) = self.group_error(&req.group_id) {
            return refuse(error);
        }
        if req.group_id.is_empty() {
            return refuse(ResponseError::InvalidGroupId);
        }
        if req.session_timeout_ms < self.config.group_min_session_timeout_ms
            || req.session_timeout_ms > self.config.group_max_session_timeout_ms
        {
            return refuse(ResponseError::InvalidSessionTimeout);
        }
        if !self.groups.contains_key(&req.group_id) {
            if !req.member_id.is_empty() {
                return refuse(ResponseError::UnknownMemberId);
            }
            self.get_or_create(&req.group_id, now_ms);
        }
        let ticket = self.new_ticket();
        match self.on_group(&req.group_id, now_ms, fx, |g, cfg, fx| {
            g.join(req, ticket, cfg, now_ms, fx)
        }) {
            Some(Some(response)) => Reply::Now(response),
            Some(None) => Reply::Pending(ticket),
            None => refuse(ResponseError::UnknownMemberId),
        }
    }

    /// SyncGroup. Followers' answers are [`Reply::Pending`] until the leader's SyncGroup
    /// brings the assignment.
    pub fn sync_group(&mut self, req: &SyncRequest, now_ms: i64) -> Output<Reply<SyncResponse>> {
        let mut fx = Effects::default();
        let mut reply = if let Some(error) = self.group_error(&req.group_id) {
            Reply::Now(SyncResponse::error(error))
        } else if req.group_id.is_empty() {
            Reply::Now(SyncResponse::error(ResponseError::InvalidGroupId))
        } else {
            let ticket = self.new_ticket();
            match self.on_group(&req.group_id, now_ms, &mut fx, |g, _, fx| {
                g.sync(req, ticket, now_ms, fx)
            }) {
                Some(Some(response)) => Reply::Now(response),
                Some(None) => Reply::Pending(ticket),
                None => Reply::Now(SyncResponse::error(ResponseError::UnknownMemberId)),
            }
        };
        if let Reply::Pending(ticket) = reply {
            if let Some(Completion::Sync { response, .. }) = take_completion(&mut fx, ticket) {
                reply = Reply::Now(response);
            }
        }
        self.finish(reply, fx, now_ms)
    }

    /// Heartbeat.
    pub fn heartbeat(&mut self, req: &MemberHeartbeat, now_ms: i64) -> Output<HeartbeatResult> {
        let mut fx = Effects::default();
        let error = if let Some(error) = self.group_error(&req.group_id) {
            // Kafka answers heartbeats blindly while the group is loading.
            (error != ResponseError::CoordinatorLoadInProgress).then_some(error)
        } else if req.group_id.is_empty() {
            Some(ResponseError::InvalidGroupId)
        } else {
            self.on_group(&req.group_id, now_ms, &mut fx, |g, _, _| {
                g.heartbeat(req, now_ms)
            })
            .unwrap_or(Some(ResponseError::UnknownMemberId))
        };
        self.finish(HeartbeatResult { error }, fx, now_ms)
    }

    /// LeaveGroup for one (v0-v2) or several (v3+) members.
    pub fn leave_group(
        &mut self,
        group_id: &str,
        members: &[LeaveMember],
        now_ms: i64,
    ) -> Output<LeaveResponse> {
        let mut fx = Effects::default();
        let top = |e| LeaveResponse {
            error: Some(e),
            members: Vec::new(),
        };
        let reply = if let Some(error) = self.group_error(group_id) {
            top(error)
        } else if group_id.is_empty() {
            top(ResponseError::InvalidGroupId)
        } else {
            self.on_group(group_id, now_ms, &mut fx, |g, cfg, fx| {
                g.leave(members, cfg, now_ms, fx)
            })
            .unwrap_or_else(|| LeaveResponse {
                error: None,
                members: members
                    .iter()
                    .map(|m| LeaveMemberResponse {
                        member_id: m.member_id.clone(),
                        group_instance_id: m.group_instance_id.clone(),
                        error: Some(ResponseError::UnknownMemberId),
                    })
                    .collect(),
            })
        };
        self.finish(reply, fx, now_ms)
    }

    // ---- offsets APIs ------------------------------------------------------------------

    /// OffsetCommit (for partitions the caller has checked exist).
    pub fn commit_offsets(&mut self, req: &CommitRequest, now_ms: i64) -> Output<CommitResponse> {
        let mut fx = Effects::default();
        let reply = self.commit_inner(req, now_ms, &mut fx);
        self.finish(reply, fx, now_ms)
    }

    fn commit_inner(
        &mut self,
        req: &CommitRequest,
        now_ms: i64,
        fx: &mut Effects,
    ) -> CommitResponse {
        if let Some(error) = self.group_error(&req.group_id) {
            return CommitResponse::error(req, error);
        }
        if !self.groups.contains_key(&req.group_id) {
            if req.generation_id >= 0 {
                let error = if req.api_version >= 9 {
                    ResponseError::GroupIdNotFound
                } else {
                    ResponseError::IllegalGeneration
                };
                return CommitResponse::error(req, error);
            }
            tracing::info!(group = %req.group_id, "simple group created by an offset commit");
            self.get_or_create(&req.group_id, now_ms);
        }
        self.on_group(&req.group_id, now_ms, fx, |g, cfg, fx| {
            g.commit(req, cfg, now_ms, fx)
        })
        .unwrap_or_else(|| CommitResponse::error(req, ResponseError::CoordinatorNotAvailable))
    }

    /// OffsetFetch for one group: the partitions asked for, or all of them (`None`).
    /// A partition with nothing committed gets offset -1.
    pub fn fetch_offsets(&self, group_id: &str, topics: Option<&[FetchTopic]>) -> FetchResponse {
        if let Some(error) = self.group_error(group_id) {
            return FetchResponse {
                error: Some(error),
                topics: Vec::new(),
            };
        }
        let topics = match self.groups.get(group_id) {
            Some(g) if g.state() != GroupState::Dead => g.fetch(topics),
            // An unknown group has no offsets; Kafka answers -1 for what was asked.
            _ => topics
                .unwrap_or_default()
                .iter()
                .map(|t| FetchedTopic {
                    name: t.name.clone(),
                    partitions: t
                        .partitions
                        .iter()
                        .map(|&p| offsets::no_offset(p))
                        .collect(),
                })
                .collect(),
        };
        FetchResponse {
            error: None,
            topics,
        }
    }

    /// OffsetDelete (for partitions the caller has checked exist).
    pub fn delete_offsets(
        &mut self,
        group_id: &str,
        topics: &[FetchTopic],
        now_ms: i64,
    ) -> Output<DeleteOffsetsResponse> {
        let mut fx = Effects::default();
        let top = |e| DeleteOffsetsResponse {
            error: Some(e),
            topics: Vec::new(),
        };
        let reply = if let Some(error) = self.group_error(group_id) {
            top(error)
        } else if group_id.is_empty() {
            top(ResponseError::InvalidGroupId)
        } else {
            self.on_group(group_id, now_ms, &mut fx, |g, _, fx| {
                match g.validate_offset_delete() {
                    Err(e) => top(e),
                    Ok(()) => DeleteOffsetsResponse {
                        error: None,
                        topics: g.delete_offsets(topics, fx),
                    },
                }
            })
            .unwrap_or_else(|| top(ResponseError::GroupIdNotFound))
        };
        self.finish(reply, fx, now_ms)
    }

    /// Deleted topics: every loaded group forgets its committed offsets of them, as
    /// Kafka's coordinator does when partitions are deleted.
    pub fn forget_topics(&mut self, topics: &[String], now_ms: i64) -> Output<()> {
        let mut fx = Effects::default();
        let ids: Vec<String> = self
            .groups
            .values()
            .filter(|g| self.is_loaded(g.partition()))
            .filter(|g| {
                g.committed_offsets()
                    .keys()
                    .any(|(topic, _)| topics.contains(topic))
            })
            .map(|g| g.id().to_owned())
            .collect();
        for id in ids {
            self.on_group(&id, now_ms, &mut fx, |g, _, fx| {
                for topic in topics {
                    let forgotten = g.forget_topic(topic, fx);
                    if forgotten > 0 {
                        tracing::info!(group = %g.id(), %topic, partitions = forgotten,
                            "deleted topic: its committed offsets are removed");
                    }
                }
            });
        }
        self.finish((), fx, now_ms)
    }

    // ---- admin APIs --------------------------------------------------------------------

    /// DeleteGroups: only Empty groups can go; their offsets go with them.
    pub fn delete_groups(
        &mut self,
        group_ids: &[String],
        now_ms: i64,
    ) -> Output<DeleteGroupsResult> {
        let mut fx = Effects::default();
        let mut results = Vec::with_capacity(group_ids.len());
        let mut seen = BTreeSet::new();
        for group_id in group_ids {
            if !seen.insert(group_id.as_str()) {
                continue;
            }
            let error = if let Some(error) = self.group_error(group_id) {
                Some(error)
            } else {
                self.on_group(group_id, now_ms, &mut fx, |g, _, fx| match g.state() {
                    GroupState::Dead => Some(ResponseError::GroupIdNotFound),
                    GroupState::Stable
                    | GroupState::PreparingRebalance
                    | GroupState::CompletingRebalance => Some(ResponseError::NonEmptyGroup),
                    GroupState::Empty => {
                        let offsets = g.delete_all_offsets(fx);
                        g.emit(
                            Record::Group {
                                group: g.id().to_owned(),
                                value: None,
                            },
                            fx,
                        );
                        tracing::info!(group = %g.id(), offsets, "group deleted");
                        None
                    }
                })
                .unwrap_or(Some(ResponseError::GroupIdNotFound))
            };
            if error.is_none() {
                self.remove_group(group_id);
            }
            results.push(DeleteGroupResult {
                group_id: group_id.clone(),
                error,
            });
        }
        self.finish(DeleteGroupsResult { results }, fx, now_ms)
    }

    /// ListGroups, filtered by state names (case-insensitive) and group types ("classic"
    /// is the only type here); empty filters match everything.
    ///
    /// Only the groups of partitions served here are listed (Kafka's per-broker
    /// ListGroups; clients ask every broker); while some partition is loading the answer
    /// is COORDINATOR_LOAD_IN_PROGRESS.
    pub fn list_groups(&self, states: &[String], types: &[String]) -> GroupListing {
        if self.is_loading() {
            return GroupListing {
                error: Some(ResponseError::CoordinatorLoadInProgress),
                groups: Vec::new(),
            };
        }
        let wanted: Vec<Option<GroupState>> = states.iter().map(|s| GroupState::parse(s)).collect();
        let classic = types.is_empty()
            || types
                .iter()
                .any(|t| t.trim().eq_ignore_ascii_case("classic"));
        let mut groups: Vec<GroupSummary> = self
            .groups
            .values()
            .filter(|g| classic && (wanted.is_empty() || wanted.contains(&Some(g.state()))))
            .map(|g| GroupSummary {
                group_id: g.id().to_owned(),
                protocol_type: g.protocol_type().unwrap_or("").to_owned(),
                state: g.state(),
            })
            .collect();
        groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        GroupListing {
            error: None,
            groups,
        }
    }

    /// DescribeGroups.
    pub fn describe_groups(&self, group_ids: &[String]) -> Vec<GroupDescription> {
        group_ids
            .iter()
            .map(|id| {
                let mut described = GroupDescription {
                    group_id: id.clone(),
                    error: None,
                    state: GroupState::Dead,
                    protocol_type: String::new(),
                    protocol_data: String::new(),
                    members: Vec::new(),
                };
                if let Some(error) = self.group_error(id) {
                    described.error = Some(error);
                    described.state = GroupState::Dead;
                    return described;
                }
                let Some(g) = self.groups.get(id) else {
                    described.error = Some(ResponseError::GroupIdNotFound);
                    return described;
                };
                let stable = g.state() == GroupState::Stable;
                let protocol = g.protocol_name().unwrap_or("");
                described.state = g.state();
                described.protocol_type = g.protocol_type().unwrap_or("").to_owned();
                if stable {
                    described.protocol_data = protocol.to_owned();
                }
                described.members = g
                    .members()
                    .map(|m| MemberDescription {
                        member_id: m.member_id().to_owned(),
                        group_instance_id: m.group_instance_id().map(str::to_owned),
                        client_id: m.client_id().to_owned(),
                        client_host: m.client_host().to_owned(),
                        metadata: if stable {
                            m.metadata(protocol)
                        } else {
                            Bytes::new()
                        },
                        assignment: m.assignment().clone(),
                    })
                    .collect();
                described
            })
            .collect()
    }

    /// Consumer lag of a group, per partition: every partition with a committed offset
    /// or assigned to a member. `log_end` gives a partition's log end offset (the high
    /// watermark), None if unknown. None if the group does not exist.
    pub fn group_lag(
        &self,
        group_id: &str,
        log_end: impl Fn(&str, i32) -> Option<i64>,
    ) -> Option<Vec<PartitionLag>> {
        let g = self.groups.get(group_id)?;
        let mut rows: BTreeMap<(String, i32), PartitionLag> = BTreeMap::new();
        let blank = |topic: &str, partition: i32| PartitionLag {
            topic: topic.to_owned(),
            partition,
            committed_offset: None,
            log_end_offset: None,
            lag: None,
            member_id: None,
            client_id: None,
            client_host: None,
        };
        for ((topic, partition), v) in &g.offsets {
            let row = rows
                .entry((topic.clone(), *partition))
                .or_insert_with(|| blank(topic, *partition));
            row.committed_offset = Some(v.offset);
        }
        if g.uses_consumer_protocol() {
            for m in g.members() {
                for (topic, partitions) in decode_assignment(m.assignment()).unwrap_or_default() {
                    for partition in partitions {
                        let row = rows
                            .entry((topic.clone(), partition))
                            .or_insert_with(|| blank(&topic, partition));
                        row.member_id = Some(m.member_id().to_owned());
                        row.client_id = Some(m.client_id().to_owned());
                        row.client_host = Some(m.client_host().to_owned());
                    }
                }
            }
        }
        Some(
            rows.into_values()
                .map(|mut row| {
                    row.log_end_offset = log_end(&row.topic, row.partition);
                    row.lag = match (row.committed_offset, row.log_end_offset) {
                        (Some(c), Some(end)) if c >= 0 => Some(lag(c, end)),
                        _ => None,
                    };
                    row
                })
                .collect(),
        )
    }

    // ---- timers ------------------------------------------------------------------------

    /// Runs every timer due at `now_ms`: session expiries, rebalance and sync timeouts,
    /// the initial rebalance delay, and the periodic offsets cleanup. Only groups of
    /// loaded partitions are touched (a partition being replayed is not served yet).
    pub fn tick(&mut self, now_ms: i64) -> Output<()> {
        let mut fx = Effects::default();
        if self.ownership.contains(&Ownership::Loaded) {
            while let Some(Reverse((at, _))) = self.timers.peek() {
                if *at > now_ms {
                    break;
                }
                let Some(Reverse((at, id))) = self.timers.pop() else {
                    break;
                };
                let loaded = self.is_loaded(self.partition_for(&id));
                if let Some(g) = self.groups.get_mut(&id).filter(|_| loaded) {
                    if g.scheduled_at == Some(at) {
                        g.scheduled_at = None;
                    }
                    self.on_group(&id, now_ms, &mut fx, |_, _, _| ());
                }
            }
            if self.cleanup_at.is_some_and(|at| at <= now_ms) {
                self.cleanup(now_ms, &mut fx);
                self.cleanup_at =
                    Some(now_ms.saturating_add(self.config.offsets_retention_check_interval_ms));
            }
        }
        self.finish((), fx, now_ms)
    }

    /// Kafka's cleanupGroupMetadata: expire offsets; delete Empty groups left without any.
    fn cleanup(&mut self, now_ms: i64, fx: &mut Effects) {
        let ids: Vec<String> = self
            .groups
            .values()
            .filter(|g| self.is_loaded(g.partition()))
            .map(|g| g.id().to_owned())
            .collect();
        let mut deleted = Vec::new();
        for id in ids {
            let delete = self.on_group(&id, now_ms, fx, |g, cfg, fx| {
                let none_left = g.expire_offsets(cfg, now_ms, fx);
                if none_left && g.state() == GroupState::Empty {
                    if g.persisted().is_some() {
                        g.emit(
                            Record::Group {
                                group: g.id().to_owned(),
                                value: None,
                            },
                            fx,
                        );
                    }
                    true
                } else {
                    false
                }
            });
            if delete == Some(true) {
                self.remove_group(&id);
                deleted.push(id);
            }
        }
        if !deleted.is_empty() {
            tracing::info!(groups = ?deleted, "removed empty groups without offsets");
        }
    }

    fn schedule_cleanup(&mut self, now_ms: i64) {
        if self.cleanup_at.is_none() {
            self.cleanup_at =
                Some(now_ms.saturating_add(self.config.offsets_retention_check_interval_ms));
        }
    }

    // ---- plumbing ----------------------------------------------------------------------

    fn new_ticket(&mut self) -> Ticket {
        let ticket = Ticket(self.next_ticket);
        self.next_ticket += 1;
        ticket
    }

    fn get_or_create(&mut self, group_id: &str, now_ms: i64) -> &mut Group {
        let partition = self.partition_for(group_id);
        if !self.groups.contains_key(group_id) {
            if let Some(set) = self.by_partition.get_mut(partition as usize) {
                set.insert(group_id.to_owned());
            }
        }
        self.groups
            .entry(group_id.to_owned())
            .or_insert_with(|| Group::new(group_id.to_owned(), partition, now_ms))
    }

    fn remove_group(&mut self, group_id: &str) {
        if let Some(g) = self.groups.remove(group_id) {
            if let Some(set) = self.by_partition.get_mut(g.partition() as usize) {
                set.remove(group_id);
            }
        }
    }

    /// Runs `f` on a group between two passes over its due timers (timers due before the
    /// request arrived fire first, as they would have on time; zero-delay timers set by
    /// the request fire right after), then reschedules or drops the group.
    fn on_group<R>(
        &mut self,
        group_id: &str,
        now_ms: i64,
        fx: &mut Effects,
        f: impl FnOnce(&mut Group, &CoordinatorConfig, &mut Effects) -> R,
    ) -> Option<R> {
        let config = &self.config;
        let group = self.groups.get_mut(group_id)?;
        group.run_due(config, now_ms, fx);
        let result = f(group, config, fx);
        group.run_due(config, now_ms, fx);
        self.after_change(group_id);
        Some(result)
    }

    fn after_change(&mut self, group_id: &str) {
        let Some(g) = self.groups.get_mut(group_id) else {
            return;
        };
        if g.is_removable() {
            self.remove_group(group_id);
            return;
        }
        if let Some(deadline) = g.next_deadline() {
            if g.scheduled_at.is_none_or(|s| deadline < s) {
                g.scheduled_at = Some(deadline);
                self.timers.push(Reverse((deadline, group_id.to_owned())));
            }
        }
    }

    fn finish<R>(&mut self, reply: R, fx: Effects, now_ms: i64) -> Output<R> {
        self.schedule_cleanup(now_ms);
        let writes = self.writes(fx.records, now_ms);
        Output {
            reply,
            completions: fx.completions,
            writes,
        }
    }

    /// Encodes records into per-partition writes.
    fn writes(&self, records: Vec<Record>, now_ms: i64) -> Vec<LogWrite> {
        let mut by_partition: BTreeMap<i32, Vec<Record>> = BTreeMap::new();
        for record in records {
            let partition = self.partition_for(record.group_id().unwrap_or(""));
            by_partition.entry(partition).or_default().push(record);
        }
        let mut out = Vec::new();
        for (partition, records) in by_partition {
            match store::encode_batches(&records, now_ms, self.config.offsets_batch_bytes) {
                Ok(bytes) => out.push(LogWrite {
                    partition,
                    records: bytes,
                }),
                Err(e) => tracing::error!(partition, error = %e, "cannot encode group records"),
            }
        }
        out
    }
}

fn take_completion(fx: &mut Effects, ticket: Ticket) -> Option<Completion> {
    let position = fx.completions.iter().position(|c| c.ticket() == ticket)?;
    Some(fx.completions.remove(position))
}

#[cfg(test)]
mod tests;
