//! One classic consumer group: membership, generations and the rebalance state machine.
//!
//! The rules are Kafka's (`ClassicGroup` and the classic parts of `GroupMetadataManager`
//! in Apache Kafka's group-coordinator module), restated as a deterministic state
//! machine: every operation takes the current time in milliseconds, nothing reads a clock,
//! and a request that Kafka parks (JoinGroup until the rebalance completes, SyncGroup until
//! the leader sends the assignment) is parked under a [`Ticket`] and answered later as a
//! [`Completion`].
//!
//! ```text
//!            join (new member / changed metadata / leader rejoin), leave, session expiry
//!   Empty ───────────────────────────────────► PreparingRebalance ◄────────────────┐
//!     ▲                                          │  all members rejoined, or       │
//!     │ nobody rejoined                          │  rebalance timeout              │
//!     └──────────────────────────────────────────┤                                 │
//!                                                ▼                                 │
//!                                      CompletingRebalance ── join/leave/expiry ───┤
//!                                                │ leader's SyncGroup              │
//!                                                ▼                                 │
//!                                             Stable ──────── join/leave/expiry ───┘
//! ```
//!
//! Timers (all deadlines in ms, fired in deadline order by `Group::run_due`):
//! - per member: the heartbeat deadline (session timeout after the last heartbeat; the
//!   new-member join timeout for a member whose first JoinGroup is parked). At expiry the
//!   member is removed unless it is parked in a JoinGroup or SyncGroup (Kafka's
//!   "satisfied heartbeat"), in which case the rebalance timeouts bound it instead;
//! - per pending (KIP-394) member id: its session timeout;
//! - the join timer: the initial rebalance delay of an Empty group (extended while new
//!   members keep arriving, up to the rebalance timeout) or the rebalance timeout;
//! - the sync timer: members that got a JoinGroup response but never sent SyncGroup are
//!   removed after the rebalance timeout.
//!
//! Offsets committed for the group live here too (see `offsets.rs`), with the persisted
//! image of the group ([`GroupValue`]), the last state written to `__consumer_offsets`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::ConsumerProtocolSubscription;
use kafka_protocol::protocol::Decodable;

use super::store::{GroupValue, MemberValue, OffsetValue, Record};
use super::{Completion, CoordinatorConfig, Effects, Ticket};

/// The protocol type of Kafka consumers.
pub const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

/// A classic group's state, named as Kafka names them on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// The name Kafka uses in ListGroups and DescribeGroups.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }

    /// Parses a state name case-insensitively, ignoring surrounding spaces (as Kafka's
    /// ListGroups states filter does).
    pub fn parse(name: &str) -> Option<GroupState> {
        let name = name.trim();
        [
            GroupState::Empty,
            GroupState::PreparingRebalance,
            GroupState::CompletingRebalance,
            GroupState::Stable,
            GroupState::Dead,
        ]
        .into_iter()
        .find(|s| s.as_str().eq_ignore_ascii_case(name))
    }

    fn valid_previous(self) -> &'static [GroupState] {
        use GroupState::*;
        match self {
            Empty => &[PreparingRebalance],
            PreparingRebalance => &[Stable, CompletingRebalance, Empty],
            CompletingRebalance => &[PreparingRebalance],
            Stable => &[CompletingRebalance],
            Dead => &[Stable, PreparingRebalance, CompletingRebalance, Empty, Dead],
        }
    }
}

impl std::fmt::Display for GroupState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One (protocol name, member metadata) pair of a JoinGroup request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protocol {
    pub name: String,
    pub metadata: Bytes,
}

impl Protocol {
    pub fn new(name: impl Into<String>, metadata: impl Into<Bytes>) -> Protocol {
        Protocol {
            name: name.into(),
            metadata: metadata.into(),
        }
    }
}

/// A JoinGroup request, decoded and normalised (v0's rebalance timeout is its session
/// timeout).
#[derive(Debug, Clone, PartialEq)]
pub struct JoinRequest {
    pub group_id: String,
    /// "" for a member that has no id yet.
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    /// Kafka shows the client's address as `/ip`.
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<Protocol>,
    /// JoinGroup v4+: an unknown member gets MEMBER_ID_REQUIRED and a member id (KIP-394).
    pub require_known_member_id: bool,
    /// JoinGroup v9+: a static leader rejoining a Stable group may skip the assignment.
    pub supports_skip_assignment: bool,
    pub reason: Option<String>,
}

/// One member as the leader sees it in its JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub metadata: Bytes,
}

/// A JoinGroup answer.
#[derive(Debug, Clone, PartialEq)]
pub struct JoinResponse {
    pub error: Option<ResponseError>,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub skip_assignment: bool,
    pub member_id: String,
    /// Only the leader gets the members (with their metadata for the chosen protocol).
    pub members: Vec<JoinMember>,
}

impl JoinResponse {
    /// An error answer, with Kafka's defaults for the other fields.
    pub fn error(member_id: &str, error: ResponseError) -> JoinResponse {
        JoinResponse {
            error: Some(error),
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            skip_assignment: false,
            member_id: member_id.to_owned(),
            members: Vec::new(),
        }
    }
}

/// A SyncGroup request.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncRequest {
    pub group_id: String,
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    /// v5+ (checked against the group's when present).
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    /// The leader's assignment: (member id, assignment).
    pub assignments: Vec<(String, Bytes)>,
}

/// A SyncGroup answer.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncResponse {
    pub error: Option<ResponseError>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncResponse {
    pub fn error(error: ResponseError) -> SyncResponse {
        SyncResponse {
            error: Some(error),
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }
    }
}

/// A Heartbeat request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberHeartbeat {
    pub group_id: String,
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

/// One member leaving (LeaveGroup v3+ batches them; v0-v2 send one member id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveMember {
    /// "" to remove a static member by its instance id alone (admin removal).
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub reason: Option<String>,
}

/// The answer for one leaving member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveMemberResponse {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub error: Option<ResponseError>,
}

/// A LeaveGroup answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveResponse {
    /// Whole-request error (the members then carry none).
    pub error: Option<ResponseError>,
    pub members: Vec<LeaveMemberResponse>,
}

/// One member of a group.
#[derive(Debug, Clone)]
pub struct Member {
    member_id: String,
    group_instance_id: Option<String>,
    client_id: String,
    client_host: String,
    rebalance_timeout_ms: i32,
    session_timeout_ms: i32,
    protocol_type: String,
    protocols: Vec<Protocol>,
    assignment: Bytes,
    /// The parked JoinGroup, if any.
    awaiting_join: Option<Ticket>,
    /// The parked SyncGroup, if any.
    awaiting_sync: Option<Ticket>,
    /// Joined in the current rebalance: may expire while its JoinGroup is parked.
    is_new: bool,
    heartbeat_deadline_ms: Option<i64>,
}

impl Member {
    pub fn member_id(&self) -> &str {
        &self.member_id
    }

    pub fn group_instance_id(&self) -> Option<&str> {
        self.group_instance_id.as_deref()
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    pub fn client_host(&self) -> &str {
        &self.client_host
    }

    pub fn session_timeout_ms(&self) -> i32 {
        self.session_timeout_ms
    }

    pub fn rebalance_timeout_ms(&self) -> i32 {
        self.rebalance_timeout_ms
    }

    pub fn protocols(&self) -> &[Protocol] {
        &self.protocols
    }

    pub fn assignment(&self) -> &Bytes {
        &self.assignment
    }

    pub fn is_awaiting_join(&self) -> bool {
        self.awaiting_join.is_some()
    }

    pub fn is_awaiting_sync(&self) -> bool {
        self.awaiting_sync.is_some()
    }

    pub fn heartbeat_deadline_ms(&self) -> Option<i64> {
        self.heartbeat_deadline_ms
    }

    /// The member's metadata for `protocol` (empty if it does not support it).
    pub fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|p| p.name == protocol)
            .map(|p| p.metadata.clone())
            .unwrap_or_default()
    }

    fn matches(&self, protocols: &[Protocol]) -> bool {
        self.protocols == protocols
    }

    /// The member's first protocol (in its order of preference) among `candidates`.
    fn vote<'a>(&'a self, candidates: &BTreeSet<&str>) -> Option<&'a str> {
        self.protocols
            .iter()
            .map(|p| p.name.as_str())
            .find(|name| candidates.contains(name))
    }

    /// Kafka's rule: a member parked in JoinGroup or SyncGroup needs no heartbeat, except a
    /// brand-new member (whose parked join is bounded by the new-member join timeout).
    fn has_satisfied_heartbeat(&self) -> bool {
        !self.is_new && (self.awaiting_join.is_some() || self.awaiting_sync.is_some())
    }

    fn to_value(&self) -> MemberValue {
        MemberValue {
            member_id: self.member_id.clone(),
            group_instance_id: self.group_instance_id.clone(),
            client_id: self.client_id.clone(),
            client_host: self.client_host.clone(),
            rebalance_timeout_ms: self.rebalance_timeout_ms,
            session_timeout_ms: self.session_timeout_ms,
            protocols: self
                .protocols
                .iter()
                .map(|p| (p.name.clone(), p.metadata.clone()))
                .collect(),
            assignment: self.assignment.clone(),
        }
    }

    fn from_value(value: &MemberValue, protocol_type: &str) -> Member {
        Member {
            member_id: value.member_id.clone(),
            group_instance_id: value.group_instance_id.clone(),
            client_id: value.client_id.clone(),
            client_host: value.client_host.clone(),
            rebalance_timeout_ms: value.rebalance_timeout_ms,
            session_timeout_ms: value.session_timeout_ms,
            protocol_type: protocol_type.to_owned(),
            protocols: value
                .protocols
                .iter()
                .map(|(name, metadata)| Protocol::new(name.clone(), metadata.clone()))
                .collect(),
            assignment: value.assignment.clone(),
            awaiting_join: None,
            awaiting_sync: None,
            is_new: false,
            heartbeat_deadline_ms: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JoinTimerKind {
    /// Kafka's InitialDelayedJoin: wait `delay_ms`; if members keep arriving, wait again
    /// while `remaining_ms` (of the rebalance timeout) lasts.
    Initial { delay_ms: i64, remaining_ms: i64 },
    /// The rebalance timeout: complete the join phase with whoever rejoined.
    Complete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct JoinTimer {
    at_ms: i64,
    kind: JoinTimerKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SyncTimer {
    at_ms: i64,
    generation_id: i32,
}

/// One classic group; see the module docs.
#[derive(Debug, Clone)]
pub struct Group {
    id: String,
    /// Its `__consumer_offsets` partition.
    partition: i32,
    state: GroupState,
    previous_state: GroupState,
    state_timestamp_ms: i64,
    protocol_type: Option<String>,
    protocol_name: Option<String>,
    generation_id: i32,
    leader_id: Option<String>,
    members: BTreeMap<String, Member>,
    /// group instance id -> member id.
    static_members: HashMap<String, String>,
    /// KIP-394 member ids handed out with MEMBER_ID_REQUIRED -> expiry deadline.
    pending_members: BTreeMap<String, i64>,
    /// Members of this generation that have not sent SyncGroup yet.
    pending_sync: BTreeSet<String>,
    /// protocol name -> members supporting it.
    supported_protocols: HashMap<String, usize>,
    /// Topics the consumer-protocol members subscribe to, when known.
    subscribed_topics: Option<BTreeSet<String>>,
    new_member_added: bool,
    join_timer: Option<JoinTimer>,
    sync_timer: Option<SyncTimer>,
    /// Committed offsets by (topic, partition).
    pub(crate) offsets: BTreeMap<(String, i32), OffsetValue>,
    /// The last group state written to (or replayed from) `__consumer_offsets`.
    persisted: Option<GroupValue>,
    /// Earliest deadline the coordinator's timer queue holds for this group.
    pub(crate) scheduled_at: Option<i64>,
}

impl Group {
    /// A new Empty group with no protocol (Kafka's "simple" group until someone joins).
    pub(crate) fn new(id: String, partition: i32, now_ms: i64) -> Group {
        Group {
            id,
            partition,
            state: GroupState::Empty,
            previous_state: GroupState::Dead,
            state_timestamp_ms: now_ms,
            protocol_type: None,
            protocol_name: None,
            generation_id: 0,
            leader_id: None,
            members: BTreeMap::new(),
            static_members: HashMap::new(),
            pending_members: BTreeMap::new(),
            pending_sync: BTreeSet::new(),
            supported_protocols: HashMap::new(),
            subscribed_topics: None,
            new_member_added: false,
            join_timer: None,
            sync_timer: None,
            offsets: BTreeMap::new(),
            persisted: None,
            scheduled_at: None,
        }
    }

    // ---- getters -----------------------------------------------------------------------

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn partition(&self) -> i32 {
        self.partition
    }

    pub fn state(&self) -> GroupState {
        self.state
    }

    pub fn generation_id(&self) -> i32 {
        self.generation_id
    }

    pub fn protocol_type(&self) -> Option<&str> {
        self.protocol_type.as_deref()
    }

    pub fn protocol_name(&self) -> Option<&str> {
        self.protocol_name.as_deref()
    }

    pub fn leader(&self) -> Option<&str> {
        self.leader_id.as_deref()
    }

    pub fn state_timestamp_ms(&self) -> i64 {
        self.state_timestamp_ms
    }

    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    pub fn member(&self, member_id: &str) -> Option<&Member> {
        self.members.get(member_id)
    }

    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    /// Member ids handed out with MEMBER_ID_REQUIRED that have not joined yet.
    pub fn pending_member_ids(&self) -> impl Iterator<Item = &str> {
        self.pending_members.keys().map(String::as_str)
    }

    /// The member id currently holding `group_instance_id`.
    pub fn static_member_id(&self, group_instance_id: &str) -> Option<&str> {
        self.static_members
            .get(group_instance_id)
            .map(String::as_str)
    }

    pub fn subscribed_topics(&self) -> Option<&BTreeSet<String>> {
        self.subscribed_topics.as_ref()
    }

    pub fn committed_offsets(&self) -> &BTreeMap<(String, i32), OffsetValue> {
        &self.offsets
    }

    /// The state last written to `__consumer_offsets` for this group.
    pub fn persisted(&self) -> Option<&GroupValue> {
        self.persisted.as_ref()
    }

    fn is_leader(&self, member_id: &str) -> bool {
        self.leader_id.as_deref() == Some(member_id)
    }

    /// The group's rebalance timeout: the largest of its members'.
    pub fn rebalance_timeout_ms(&self) -> i32 {
        self.members
            .values()
            .map(|m| m.rebalance_timeout_ms)
            .max()
            .unwrap_or(0)
    }

    pub fn uses_consumer_protocol(&self) -> bool {
        self.protocol_type.as_deref() == Some(CONSUMER_PROTOCOL_TYPE)
    }

    /// Whether the group actively subscribes to `topic`: known from the consumer protocol
    /// subscriptions; when unknown, a consumer-protocol group counts as subscribed.
    pub fn is_subscribed_to_topic(&self, topic: &str) -> bool {
        match &self.subscribed_topics {
            Some(topics) => topics.contains(topic),
            None => self.uses_consumer_protocol(),
        }
    }

    /// Nothing left worth keeping: no members, nothing persisted, no offsets.
    pub(crate) fn is_removable(&self) -> bool {
        self.state == GroupState::Empty
            && self.members.is_empty()
            && self.pending_members.is_empty()
            && self.offsets.is_empty()
            && self.persisted.is_none()
    }

    // ---- persistence -------------------------------------------------------------------

    /// Applies a record to the persisted image (offsets, persisted group state). Used both
    /// for records this group emits and for replay.
    pub(crate) fn apply_persisted(&mut self, record: &Record) {
        match record {
            Record::Offset {
                topic,
                partition,
                value,
                ..
            } => {
                let key = (topic.clone(), *partition);
                match value {
                    Some(v) => {
                        self.offsets.insert(key, v.clone());
                    }
                    None => {
                        self.offsets.remove(&key);
                    }
                }
            }
            Record::Group { value, .. } => self.persisted = value.clone(),
            Record::Restatement { .. } => {}
        }
    }

    /// Applies `record` to the persisted image and queues it for the log.
    pub(crate) fn emit(&mut self, record: Record, fx: &mut Effects) {
        self.apply_persisted(&record);
        fx.records.push(record);
    }

    /// The group as a GroupMetadata value.
    fn to_value(&self) -> GroupValue {
        GroupValue {
            protocol_type: self.protocol_type.clone(),
            generation_id: self.generation_id,
            protocol_name: self.protocol_name.clone(),
            leader: self.leader_id.clone(),
            state_timestamp_ms: self.state_timestamp_ms,
            members: self.members.values().map(Member::to_value).collect(),
        }
    }

    fn persist_metadata(&mut self, fx: &mut Effects) {
        let record = Record::Group {
            group: self.id.clone(),
            value: Some(self.to_value()),
        };
        self.emit(record, fx);
    }

    /// Replay: rebuild the membership from a persisted group value. The group is Stable
    /// with its members (who must heartbeat within their session timeouts, scheduled by
    /// `Group::schedule_loaded_heartbeats`) or Empty.
    pub(crate) fn load_membership(&mut self, value: &GroupValue) {
        let keep_offsets = std::mem::take(&mut self.offsets);
        let persisted = self.persisted.take();
        *self = Group::new(self.id.clone(), self.partition, value.state_timestamp_ms);
        self.offsets = keep_offsets;
        self.persisted = persisted;
        self.protocol_type = value.protocol_type.clone();
        self.protocol_name = value.protocol_name.clone();
        self.generation_id = value.generation_id;
        let protocol_type = value.protocol_type.clone().unwrap_or_default();
        for m in &value.members {
            let member = Member::from_value(m, &protocol_type);
            if let Some(instance) = &member.group_instance_id {
                self.static_members
                    .insert(instance.clone(), member.member_id.clone());
            }
            self.increment_supported(&member.protocols);
            self.members.insert(member.member_id.clone(), member);
        }
        self.leader_id = value
            .leader
            .clone()
            .filter(|l| self.members.contains_key(l))
            .or_else(|| self.members.keys().next().cloned());
        self.state = if self.members.is_empty() {
            GroupState::Empty
        } else {
            GroupState::Stable
        };
        self.subscribed_topics = self.compute_subscribed_topics();
    }

    /// Replay of a group tombstone: forget the membership (offsets stay until their own
    /// tombstones).
    pub(crate) fn clear_membership(&mut self) {
        let keep_offsets = std::mem::take(&mut self.offsets);
        *self = Group::new(self.id.clone(), self.partition, self.state_timestamp_ms);
        self.offsets = keep_offsets;
    }

    /// After loading: every member must heartbeat within its session timeout from now.
    pub(crate) fn schedule_loaded_heartbeats(&mut self, now_ms: i64) {
        for m in self.members.values_mut() {
            m.heartbeat_deadline_ms = Some(now_ms + i64::from(m.session_timeout_ms));
        }
    }

    // ---- timers ------------------------------------------------------------------------

    /// The earliest deadline of any of this group's timers.
    pub fn next_deadline(&self) -> Option<i64> {
        let members = self
            .members
            .values()
            .filter_map(|m| m.heartbeat_deadline_ms);
        let pending = self.pending_members.values().copied();
        let join = self.join_timer.map(|t| t.at_ms);
        let sync = self.sync_timer.map(|t| t.at_ms);
        members.chain(pending).chain(join).chain(sync).min()
    }

    /// Fires every timer due at `now_ms`, earliest first.
    pub(crate) fn run_due(&mut self, cfg: &CoordinatorConfig, now_ms: i64, fx: &mut Effects) {
        // Each firing clears or moves its own timer past `now_ms` (a zero initial delay
        // re-arms at `now_ms` at most once, having cleared `new_member_added`), so this
        // terminates; the bound is a guard against a bug turning into a hang.
        for _ in 0..100_000 {
            let Some(at) = self.next_deadline() else {
                return;
            };
            if at > now_ms {
                return;
            }
            self.fire_one(at, cfg, now_ms, fx);
        }
        tracing::error!(group = %self.id, "group timers did not settle");
    }

    fn fire_one(&mut self, at: i64, cfg: &CoordinatorConfig, now_ms: i64, fx: &mut Effects) {
        if let Some(timer) = self.join_timer.filter(|t| t.at_ms == at) {
            self.join_timer = None;
            match timer.kind {
                JoinTimerKind::Complete => self.complete_join(now_ms, fx),
                JoinTimerKind::Initial {
                    delay_ms,
                    remaining_ms,
                } => self.initial_delay_elapsed(delay_ms, remaining_ms, cfg, now_ms, fx),
            }
            return;
        }
        if let Some(timer) = self.sync_timer.filter(|t| t.at_ms == at) {
            self.sync_timer = None;
            self.expire_pending_sync(timer.generation_id, cfg, now_ms, fx);
            return;
        }
        let pending = self
            .pending_members
            .iter()
            .find(|(_, d)| **d == at)
            .map(|(id, _)| id.clone());
        if let Some(member_id) = pending {
            tracing::info!(group = %self.id, member = %member_id,
                "pending member expired before joining");
            self.pending_members.remove(&member_id);
            if self.state == GroupState::PreparingRebalance && self.has_all_members_joined() {
                self.complete_join(now_ms, fx);
            }
            return;
        }
        let expired = self
            .members
            .values()
            .find(|m| m.heartbeat_deadline_ms == Some(at))
            .map(|m| m.member_id.clone());
        if let Some(member_id) = expired {
            self.expire_heartbeat(&member_id, cfg, now_ms, fx);
        }
    }

    /// Kafka's expireClassicGroupMemberHeartbeat.
    fn expire_heartbeat(
        &mut self,
        member_id: &str,
        cfg: &CoordinatorConfig,
        now_ms: i64,
        fx: &mut Effects,
    ) {
        let Some(member) = self.members.get_mut(member_id) else {
            return;
        };
        member.heartbeat_deadline_ms = None;
        if member.has_satisfied_heartbeat() {
            return;
        }
        tracing::info!(group = %self.id, member = %member_id,
            "member failed to heartbeat within its session timeout; removing it");
        self.remove_member(member_id, fx);
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.maybe_prepare_rebalance_or_complete_join(cfg, now_ms, fx)
            }
            GroupState::PreparingRebalance if self.has_all_members_joined() => {
                self.complete_join(now_ms, fx)
            }
            _ => {}
        }
    }

    fn reschedule_heartbeat(&mut self, member_id: &str, timeout_ms: i64, now_ms: i64) {
        if let Some(m) = self.members.get_mut(member_id) {
            m.heartbeat_deadline_ms = Some(now_ms + timeout_ms);
        }
    }

    /// Restarts the member's session timer (a heartbeat, or an offset commit).
    pub(crate) fn keep_alive(&mut self, member_id: &str, now_ms: i64) {
        self.reschedule_session(member_id, now_ms);
    }

    fn reschedule_session(&mut self, member_id: &str, now_ms: i64) {
        if let Some(timeout) = self.members.get(member_id).map(|m| m.session_timeout_ms) {
            self.reschedule_heartbeat(member_id, i64::from(timeout), now_ms);
        }
    }

    // ---- membership bookkeeping --------------------------------------------------------

    fn transition(&mut self, to: GroupState, now_ms: i64) {
        debug_assert!(
            to.valid_previous().contains(&self.state),
            "group {}: invalid transition {} -> {}",
            self.id,
            self.state,
            to
        );
        self.previous_state = self.state;
        self.state = to;
        self.state_timestamp_ms = now_ms;
    }

    fn increment_supported(&mut self, protocols: &[Protocol]) {
        for p in protocols {
            *self.supported_protocols.entry(p.name.clone()).or_insert(0) += 1;
        }
    }

    fn decrement_supported(&mut self, protocols: &[Protocol]) {
        for p in protocols {
            if let Some(count) = self.supported_protocols.get_mut(&p.name) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    self.supported_protocols.remove(&p.name);
                }
            }
        }
    }

    fn supports(&self, protocol: &str) -> bool {
        self.supported_protocols.get(protocol).copied().unwrap_or(0) == self.members.len()
    }

    /// Kafka's supportsProtocols: an Empty group takes any non-empty protocol type and
    /// list; otherwise the type must match and one of the protocols must be supported by
    /// every member.
    fn supports_protocols(&self, protocol_type: &str, protocols: &[Protocol]) -> bool {
        if self.state == GroupState::Empty {
            !protocol_type.is_empty() && !protocols.is_empty()
        } else {
            self.protocol_type.as_deref() == Some(protocol_type)
                && protocols.iter().any(|p| self.supports(&p.name))
        }
    }

    /// Every member votes for its most preferred protocol among those all members
    /// support; the most votes wins. Ties go to the protocol the leader prefers most
    /// (Kafka breaks them arbitrarily).
    pub fn select_protocol(&self) -> Option<String> {
        let candidates: BTreeSet<&str> = self
            .supported_protocols
            .keys()
            .filter(|name| self.supports(name))
            .map(String::as_str)
            .collect();
        let mut votes: HashMap<&str, usize> = HashMap::new();
        for m in self.members.values() {
            if let Some(name) = m.vote(&candidates) {
                *votes.entry(name).or_insert(0) += 1;
            }
        }
        let max = votes.values().copied().max()?;
        let leader_order = self
            .leader_id
            .as_ref()
            .and_then(|l| self.members.get(l))
            .into_iter()
            .chain(self.members.values())
            .flat_map(|m| m.protocols.iter().map(|p| p.name.as_str()));
        for name in leader_order {
            if votes.get(name) == Some(&max) {
                return Some(name.to_owned());
            }
        }
        None
    }

    fn compute_subscribed_topics(&self) -> Option<BTreeSet<String>> {
        if !self.uses_consumer_protocol() {
            return None;
        }
        if self.members.is_empty() {
            return Some(BTreeSet::new());
        }
        let protocol = self.protocol_name.as_deref()?;
        let mut topics = BTreeSet::new();
        for m in self.members.values() {
            topics.extend(decode_subscription_topics(&m.metadata(protocol))?);
        }
        Some(topics)
    }

    fn has_all_members_joined(&self) -> bool {
        self.pending_members.is_empty() && self.members.values().all(|m| m.is_awaiting_join())
    }

    fn awaiting_join_count(&self) -> usize {
        self.members
            .values()
            .filter(|m| m.is_awaiting_join())
            .count()
    }

    fn add_member(&mut self, mut member: Member, ticket: Option<Ticket>) {
        if let Some(instance) = &member.group_instance_id {
            self.static_members
                .insert(instance.clone(), member.member_id.clone());
        }
        if self.members.is_empty() {
            self.protocol_type = Some(member.protocol_type.clone());
        }
        if self.leader_id.is_none() {
            self.leader_id = Some(member.member_id.clone());
        }
        self.increment_supported(&member.protocols);
        member.awaiting_join = ticket;
        self.pending_members.remove(&member.member_id);
        self.members.insert(member.member_id.clone(), member);
    }

    /// Answers every parked JoinGroup and SyncGroup of the group with `error`: the
    /// coordinator is unloading it (Kafka's `onResignation` answers NOT_COORDINATOR, so
    /// the members look for the new coordinator).
    pub(crate) fn abandon_parked(&mut self, error: ResponseError, fx: &mut Effects) {
        for m in self.members.values_mut() {
            if let Some(ticket) = m.awaiting_join.take() {
                fx.completions.push(Completion::Join {
                    ticket,
                    response: JoinResponse::error(&m.member_id, error),
                });
            }
            if let Some(ticket) = m.awaiting_sync.take() {
                fx.completions.push(Completion::Sync {
                    ticket,
                    response: SyncResponse::error(error),
                });
            }
        }
    }

    /// Removes a member, answering its parked requests with UNKNOWN_MEMBER_ID (it may
    /// still be alive and will rejoin), and hands the leadership on if needed.
    fn remove_member(&mut self, member_id: &str, fx: &mut Effects) {
        if let Some(mut m) = self.members.remove(member_id) {
            self.decrement_supported(&m.protocols);
            if let Some(ticket) = m.awaiting_join.take() {
                fx.completions.push(Completion::Join {
                    ticket,
                    response: JoinResponse::error("", ResponseError::UnknownMemberId),
                });
            }
            if let Some(ticket) = m.awaiting_sync.take() {
                fx.completions.push(Completion::Sync {
                    ticket,
                    response: SyncResponse::error(ResponseError::UnknownMemberId),
                });
            }
            if let Some(instance) = &m.group_instance_id {
                if self.static_members.get(instance).map(String::as_str) == Some(member_id) {
                    self.static_members.remove(instance);
                }
            }
        }
        if self.is_leader(member_id) {
            self.leader_id = self.members.keys().next().cloned();
        }
        self.pending_members.remove(member_id);
        self.pending_sync.remove(member_id);
    }

    fn complete_join_ticket(&mut self, member_id: &str, response: JoinResponse, fx: &mut Effects) {
        if let Some(ticket) = self
            .members
            .get_mut(member_id)
            .and_then(|m| m.awaiting_join.take())
        {
            fx.completions.push(Completion::Join { ticket, response });
        }
    }

    fn complete_sync_ticket(
        &mut self,
        member_id: &str,
        response: SyncResponse,
        fx: &mut Effects,
    ) -> bool {
        match self
            .members
            .get_mut(member_id)
            .and_then(|m| m.awaiting_sync.take())
        {
            Some(ticket) => {
                fx.completions.push(Completion::Sync { ticket, response });
                true
            }
            None => false,
        }
    }

    /// Parks `ticket` as the member's JoinGroup. A JoinGroup already parked for it is
    /// superseded (Kafka drops its future; we answer it so no ticket is left dangling).
    fn park_join(&mut self, member_id: &str, ticket: Ticket, fx: &mut Effects) {
        if let Some(m) = self.members.get_mut(member_id) {
            if let Some(old) = m.awaiting_join.replace(ticket) {
                fx.completions.push(Completion::Join {
                    ticket: old,
                    response: JoinResponse::error(member_id, ResponseError::RebalanceInProgress),
                });
            }
        }
    }

    fn park_sync(&mut self, member_id: &str, ticket: Ticket, fx: &mut Effects) {
        if let Some(m) = self.members.get_mut(member_id) {
            if let Some(old) = m.awaiting_sync.replace(ticket) {
                fx.completions.push(Completion::Sync {
                    ticket: old,
                    response: SyncResponse::error(ResponseError::RebalanceInProgress),
                });
            }
        }
    }

    /// Kafka's updateMember: new protocols and timeouts, and the member is now parked in
    /// JoinGroup under `ticket`.
    fn update_member(
        &mut self,
        member_id: &str,
        req: &JoinRequest,
        ticket: Ticket,
        fx: &mut Effects,
    ) {
        let Some(old) = self.members.get(member_id).map(|m| m.protocols.clone()) else {
            return;
        };
        self.decrement_supported(&old);
        self.increment_supported(&req.protocols);
        if let Some(m) = self.members.get_mut(member_id) {
            m.protocols = req.protocols.clone();
            m.rebalance_timeout_ms = req.rebalance_timeout_ms;
            m.session_timeout_ms = req.session_timeout_ms;
        }
        self.park_join(member_id, ticket, fx);
    }

    /// Kafka's validateMember: the instance id (if any) must map to this member id, and
    /// the member must exist.
    pub(crate) fn validate_member(
        &self,
        member_id: &str,
        group_instance_id: Option<&str>,
    ) -> Result<(), ResponseError> {
        if let Some(instance) = group_instance_id {
            match self.static_members.get(instance) {
                None => return Err(ResponseError::UnknownMemberId),
                Some(existing) if existing != member_id => {
                    tracing::info!(group = %self.id, member = %member_id, instance,
                        existing = %existing, "fenced static member");
                    return Err(ResponseError::FencedInstanceId);
                }
                Some(_) => {}
            }
        }
        if self.members.contains_key(member_id) {
            Ok(())
        } else {
            Err(ResponseError::UnknownMemberId)
        }
    }

    fn current_members(&self) -> Vec<JoinMember> {
        let protocol = self.protocol_name.as_deref().unwrap_or("");
        self.members
            .values()
            .map(|m| JoinMember {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                metadata: m.metadata(protocol),
            })
            .collect()
    }

    /// The JoinGroup answer for the current generation.
    fn current_generation_response(&self, member_id: &str, with_members: bool) -> JoinResponse {
        JoinResponse {
            error: None,
            generation_id: self.generation_id,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: self.leader_id.clone().unwrap_or_default(),
            skip_assignment: false,
            member_id: member_id.to_owned(),
            members: if with_members {
                self.current_members()
            } else {
                Vec::new()
            },
        }
    }

    // ---- JoinGroup ---------------------------------------------------------------------

    /// Handles a JoinGroup for this group. Returns the answer if there is one now;
    /// otherwise the request is parked under `ticket` and answered by a completion (which
    /// may already be in `fx` when the join phase completed during this call).
    pub(crate) fn join(
        &mut self,
        req: &JoinRequest,
        ticket: Ticket,
        cfg: &CoordinatorConfig,
        now_ms: i64,
        fx: &mut Effects,
    ) -> Option<JoinResponse> {
        tracing::debug!(group = %self.id, member = %req.member_id, state = %self.state,
            reason = req.reason.as_deref().unwrap_or("not provided"), "JoinGroup");
        if !self.accept_joining_member(&req.member_id, cfg) {
            self.remove_member(&req.member_id, fx);
            return Some(JoinResponse::error("", ResponseError::GroupMaxSizeReached));
        }
        if req.member_id.is_empty() {
            self.join_new_member(req, ticket, cfg, now_ms, fx)
        } else {
            self.join_existing_member(req, ticket, cfg, now_ms, fx)
        }
    }

    fn accept_joining_member(&self, member_id: &str, cfg: &CoordinatorConfig) -> bool {
        match self.state {
            GroupState::Empty | GroupState::Dead => true,
            GroupState::PreparingRebalance => {
                self.members
                    .get(member_id)
                    .is_some_and(Member::is_awaiting_join)
                    || self.awaiting_join_count() < cfg.group_max_size
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.members.contains_key(member_id) || self.members.len() < cfg.group_max_size
            }
        }
    }

    fn join_new_member(
        &mut self,
        req: &JoinRequest,
        ticket: Ticket,
        cfg: &CoordinatorConfig,
        now_ms: i64,
        fx: &mut Effects,
    ) -> Option<JoinResponse> {
        if self.state == GroupState::Dead {
            return Some(JoinResponse::error(
                "",
                ResponseError::CoordinatorNotAvailable,
            ));
        }
        if !self.supports_protocols(&req.protocol_type, &req.protocols) {
            return Some(JoinResponse::error(
                "",
                ResponseError::InconsistentGroupProtocol,
            ));
        }
        let prefix = req.group_instance_id.as_deref().unwrap_or(&req.client_id);
        let new_member_id = format!("{prefix}-{}", uuid::Uuid::new_v4());
        if let Some(instance) = &req.group_instance_id {
            if let Some(existing) = self.static_members.get(instance).cloned() {
                tracing::info!(group = %self.id, instance = %instance, old = %existing,
                    new = %new_member_id, "static member rejoined with a new member id");
                return self.replace_static_member_and_join(
                    req,
                    &existing,
                    new_member_id,
                    ticket,
                    cfg,
                    now_ms,
                    fx,
                );
            }
            self.add_member_and_rebalance(req, new_member_id, ticket, cfg, now_ms, fx);
            None
        } else if req.require_known_member_id {
            self.pending_members.insert(
                new_member_id.clone(),
                now_ms + i64::from(req.session_timeout_ms),
            );
            Some(JoinResponse::error(
                &new_member_id,
                ResponseError::MemberIdRequired,
            ))
        } else {
            self.add_member_and_rebalance(req, new_member_id, ticket, cfg, now_ms, fx);
            None
        }
    }

    fn join_existing_member(
        &mut self,
        req: &JoinRequest,
        ticket: Ticket,
        cfg: &CoordinatorConfig,
        now_ms: i64,
        fx: &mut Effects,
    ) -> Option<JoinResponse> {
        let member_id = req.member_id.as_str();
        if self.state == GroupState::Dead {
            return Some(JoinResponse::error(
                member_id,
                ResponseError::CoordinatorNotAvailable,
            ));
        }
        if !self.supports_protocols(&req.protocol_type, &req.protocols) {
            return Some(JoinResponse::error(
                member_id,
                ResponseError::InconsistentGroupProtocol,
            ));
        }
        if self.pending_members.contains_key(member_id) {
            if req.group_instance_id.is_some() {
                // Kafka throws an IllegalStateException here (a pending member id is never
                // static), which reaches the client as UNKNOWN_SERVER_ERROR.
                return Some(JoinResponse::error(
                    member_id,
                    ResponseError::UnknownServerError,
                ));
            }
            self.add_member_and_rebalance(req, member_id.to_owned(), ticket, cfg, now_ms, fx);
            return None;
        }
        if let Err(error) = self.validate_member(member_id, req.group_instance_id.as_deref()) {
            return Some(JoinResponse::error(member_id, error));
        }
        let Some(matches) = self
            .members
            .get(member_id)
            .map(|m| m.matches(&req.protocols))
        else {
            return Some(JoinResponse::error(
                member_id,
                ResponseError::UnknownMemberId,
            ));
        };
        match self.state {
            GroupState::PreparingRebalance => {
                self.update_member_and_rebalance(member_id, req, ticket, cfg, now_ms, fx);
                None
            }
            GroupState::CompletingRebalance => {
                if matches {
                    // It probably lost the JoinGroup answer: give it again.
                    let leader = self.is_leader(member_id);
                    Some(self.current_generation_response(member_id, leader))
                } else {
                    self.update_member_and_rebalance(member_id, req, ticket, cfg, now_ms, fx);
                    None
                }
            }
            GroupState::Stable => {
                if self.is_leader(member_id) || !matches {
                    // The leader may rejoin to trigger a rebalance for changes the member
                    // metadata does not show (such as new partitions).
                    self.update_member_and_rebalance(member_id, req, ticket, cfg, now_ms, fx);
                    None
                } else {
                    Some(self.current_generation_response(member_id, false))
                }
            }
            GroupState::Empty | GroupState::Dead => Some(JoinResponse::error(
                member_id,
                ResponseError::UnknownMemberId,
            )),
        }
    }

    fn add_member_and_rebalance(
        &mut self,
        req: &JoinRequest,
        member_id: String,
        ticket: Ticket,
        cfg: &CoordinatorConfig,
        now_ms: i64,
        fx: &mut Effects,
    ) {
        let member = Member {
            member_id: member_id.clone(),
            group_instance_id: req.group_instance_id.clone(),
            client_id: req.client_id.clone(),
            client_host: req.client_host.clone(),
            rebalance_timeout_ms: req.rebalance_timeout_ms,
            session_timeout_ms: req.session_timeout_ms,
            protocol_type: req.protocol_type.clone(),
            protocols: req.protocols.clone(),
            assignment: Bytes::new(),
            awaiting_join: None,
            awaiting_sync: None,
            is_new: true,
            heartbeat_deadline_ms: None,
        };
        if self.state == GroupState::PreparingRebalance && self.previous_state == GroupState::Empty
        {
            self.new_member_added = true;
        }
        self.add_member(member, Some(ticket));
        // A new member cannot heartbeat while its JoinGroup is parked; bound the wait so
        // that members whose clients gave up do not pile up.
        self.reschedule_heartbeat(&member_id, cfg.new_member_join_timeout_ms, now_ms);
        tracing::debug!(group = %self.id, member = %member_id, "member added");
        self.maybe_prepare_rebalance_or_complete_join(cfg, now_ms, fx);
    }

    fn update_member_and_rebalance(
        &mut self,
        member_id: &str,
        req: &JoinRequest,
        ticket: Ticket,
        cfg: &CoordinatorConfig,
        now_ms: i64,
        fx: &mut Effects,
    ) {
        self.update_member(member_id, req, ticket, fx);
        self.maybe_prepare_rebalance_or_complete_join(cfg, now_ms, fx);
    }

    /// A static member came back with a new member id: the old id is fenced and the new
    /// one takes its place (and assignment).
    #[allow(clippy::too_many_arguments)]
    fn replace_static_member_and_join(
        &mut self,
        req: &JoinRequest,
        old_member_id: &str,
        new_member_id: String,
        ticket: Ticket,
        cfg: &CoordinatorConfig,
        now_ms: i64,
        fx: &mut Effects,
    ) -> Option<JoinResponse> {
        let old_leader = self.leader_id.clone().unwrap_or_default();
        let Some(mut old) = self.members.remove(old_member_id) else {
            return Some(JoinResponse::error("", ResponseError::UnknownServerError));
        };
        // Fence whoever still waits under the old id.
        if let Some(t) = old.awaiting_join.take() {
            fx.completions.push(Completion::Join {
                ticket: t,
                response: JoinResponse::error(old_member_id, ResponseError::FencedInstanceId),
            });
        }
        if let Some(t) = old.awaiting_sync.take() {
            fx.completions.push(Completion::Sync {
                ticket: t,
                response: SyncResponse::error(ResponseError::FencedInstanceId),
            });
        }
        old.member_id = new_member_id.clone();
        old.is_new = false;
        self.members.insert(new_member_id.clone(), old);
        if self.is_leader(old_member_id) {
            self.leader_id = Some(new_member_id.clone());
        }
        if self.pending_sync.remove(old_member_id) {
            self.pending_sync.insert(new_member_id.clone());
        }
        if let Some(instance) = &req.group_instance_id {
            self.static_members
                .insert(instance.clone(), new_member_id.clone());
        }
        self.reschedule_session(&new_member_id, now_ms);
        self.update_member(&new_member_id, req, ticket, fx);

        match self.state {
            GroupState::Stable => {
                let unchanged = self.select_protocol().as_deref() == self.protocol_name.as_deref();
                if unchanged {
                    tracing::info!(group = %self.id, member = %new_member_id,
                        "static member rejoined a Stable group; no rebalance");
                    self.persist_metadata(fx);
                    let is_leader = self.is_leader(&new_member_id);
                    let response = if req.supports_skip_assignment {
                        let mut r = self.current_generation_response(&new_member_id, is_leader);
                        r.skip_assignment = is_leader;
                        r
                    } else {
                        // Before v9 the old leader id is returned, so a rejoining static
                        // leader acts as a follower and does not reassign.
                        let mut r = self.current_generation_response(&new_member_id, false);
                        r.leader = old_leader;
                        r
                    };
                    self.complete_join_ticket(&new_member_id, response, fx);
                } else {
                    self.maybe_prepare_rebalance_or_complete_join(cfg, now_ms, fx);
                }
            }
            GroupState::CompletingRebalance => {
                // The leader may already be computing an assignment naming the old id.
                self.prepare_rebalance(cfg, now_ms, fx);
            }
            GroupState::PreparingRebalance => self.maybe_complete_join_phase(now_ms, fx),
            GroupState::Empty | GroupState::Dead => {}
        }
        None
    }

    // ---- rebalancing -------------------------------------------------------------------

    fn can_rebalance(&self) -> bool {
        GroupState::PreparingRebalance
            .valid_previous()
            .contains(&self.state)
    }

    fn maybe_prepare_rebalance_or_complete_join(
        &mut self,
        cfg: &CoordinatorConfig,
        now_ms: i64,
        fx: &mut Effects,
    ) {
        if self.can_rebalance() {
            self.prepare_rebalance(cfg, now_ms, fx);
        } else {
            self.maybe_complete_join_phase(now_ms, fx);
        }
    }

    fn prepare_rebalance(&mut self, cfg: &CoordinatorConfig, now_ms: i64, fx: &mut Effects) {
        if self.state == GroupState::CompletingRebalance {
            // Members parked in SyncGroup must rejoin.
            self.reset_and_propagate_assignment(ResponseError::RebalanceInProgress, now_ms, fx);
        }
        self.pending_sync.clear();
        self.sync_timer = None;

        let initial = self.state == GroupState::Empty;
        if initial {
            let delay = i64::from(cfg.group_initial_rebalance_delay_ms);
            let remaining = (i64::from(self.rebalance_timeout_ms()) - delay).max(0);
            self.join_timer = Some(JoinTimer {
                at_ms: now_ms + delay,
                kind: JoinTimerKind::Initial {
                    delay_ms: delay,
                    remaining_ms: remaining,
                },
            });
        }
        tracing::info!(group = %self.id, from = %self.state, generation = self.generation_id,
            "preparing to rebalance");
        self.transition(GroupState::PreparingRebalance, now_ms);
        if !initial {
            if self.has_all_members_joined() {
                self.complete_join(now_ms, fx);
            } else {
                self.join_timer = Some(JoinTimer {
                    at_ms: now_ms + i64::from(self.rebalance_timeout_ms()),
                    kind: JoinTimerKind::Complete,
                });
            }
        }
    }

    fn initial_delay_elapsed(
        &mut self,
        delay_ms: i64,
        remaining_ms: i64,
        cfg: &CoordinatorConfig,
        now_ms: i64,
        fx: &mut Effects,
    ) {
        if self.new_member_added && remaining_ms != 0 {
            self.new_member_added = false;
            let new_delay = i64::from(cfg.group_initial_rebalance_delay_ms).min(remaining_ms);
            let new_remaining = (remaining_ms - delay_ms).max(0);
            self.join_timer = Some(JoinTimer {
                at_ms: now_ms + new_delay,
                kind: JoinTimerKind::Initial {
                    delay_ms: new_delay,
                    remaining_ms: new_remaining,
                },
            });
        } else {
            self.complete_join(now_ms, fx);
        }
    }

    /// Completes the join phase now if every member has rejoined (not during the initial
    /// delay of a group that was Empty).
    fn maybe_complete_join_phase(&mut self, now_ms: i64, fx: &mut Effects) {
        if self.state == GroupState::PreparingRebalance
            && self.previous_state != GroupState::Empty
            && self.has_all_members_joined()
        {
            self.complete_join(now_ms, fx);
        }
    }

    /// Kafka's completeClassicGroupJoin: drop dynamic members that did not rejoin, start
    /// the next generation and answer every parked JoinGroup.
    fn complete_join(&mut self, now_ms: i64, fx: &mut Effects) {
        self.join_timer = None;
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        let not_rejoined: Vec<String> = self
            .members
            .values()
            .filter(|m| !m.is_awaiting_join() && m.group_instance_id.is_none())
            .map(|m| m.member_id.clone())
            .collect();
        for member_id in &not_rejoined {
            self.remove_member(member_id, fx);
        }
        if !not_rejoined.is_empty() {
            tracing::info!(group = %self.id, members = ?not_rejoined,
                "removed members that did not rejoin in time");
        }

        if !self.maybe_elect_new_joined_leader() && !self.members.is_empty() {
            // Only static members that have not rejoined are left: wait for them (their
            // sessions will expire otherwise).
            self.join_timer = Some(JoinTimer {
                at_ms: now_ms + i64::from(self.rebalance_timeout_ms()),
                kind: JoinTimerKind::Complete,
            });
            return;
        }

        self.init_next_generation(now_ms);
        if self.state == GroupState::Empty {
            tracing::info!(group = %self.id, generation = self.generation_id, "group is now empty");
            self.persist_metadata(fx);
            return;
        }
        tracing::info!(group = %self.id, generation = self.generation_id,
            members = self.members.len(), protocol = ?self.protocol_name, "generation started");
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for member_id in ids {
            let leader = self.is_leader(&member_id);
            let response = self.current_generation_response(&member_id, leader);
            self.complete_join_ticket(&member_id, response, fx);
            self.reschedule_session(&member_id, now_ms);
            if let Some(m) = self.members.get_mut(&member_id) {
                m.is_new = false;
            }
            self.pending_sync.insert(member_id);
        }
        self.sync_timer = Some(SyncTimer {
            at_ms: now_ms + i64::from(self.rebalance_timeout_ms()),
            generation_id: self.generation_id,
        });
    }

    /// Keeps the leader if it rejoined, else picks a member that did. False if nobody
    /// rejoined (or the group has no leader because it has no members).
    fn maybe_elect_new_joined_leader(&mut self) -> bool {
        let Some(leader) = self.leader_id.clone() else {
            return false;
        };
        if self
            .members
            .get(&leader)
            .is_some_and(Member::is_awaiting_join)
        {
            return true;
        }
        match self.members.values().find(|m| m.is_awaiting_join()) {
            Some(m) => {
                tracing::info!(group = %self.id, old = %leader, new = %m.member_id,
                    "leader did not rejoin in time; elected a new leader");
                self.leader_id = Some(m.member_id.clone());
                true
            }
            None => false,
        }
    }

    fn init_next_generation(&mut self, now_ms: i64) {
        self.generation_id += 1;
        if self.members.is_empty() {
            self.protocol_name = None;
            self.subscribed_topics = self.compute_subscribed_topics();
            self.transition(GroupState::Empty, now_ms);
        } else {
            self.protocol_name = self.select_protocol();
            self.subscribed_topics = self.compute_subscribed_topics();
            self.transition(GroupState::CompletingRebalance, now_ms);
        }
        self.pending_sync.clear();
    }

    /// Clears every assignment and answers parked SyncGroups with `error`.
    fn reset_and_propagate_assignment(
        &mut self,
        error: ResponseError,
        now_ms: i64,
        fx: &mut Effects,
    ) {
        for m in self.members.values_mut() {
            m.assignment = Bytes::new();
        }
        self.propagate_assignment(Some(error), now_ms, fx);
    }

    /// Answers every parked SyncGroup with the member's assignment (or `error`), and
    /// restarts the session timer of each member answered.
    fn propagate_assignment(
        &mut self,
        error: Option<ResponseError>,
        now_ms: i64,
        fx: &mut Effects,
    ) {
        let (protocol_type, protocol_name) = if error.is_none() {
            (self.protocol_type.clone(), self.protocol_name.clone())
        } else {
            (None, None)
        };
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for member_id in ids {
            let assignment = self.members[&member_id].assignment.clone();
            let response = SyncResponse {
                error,
                protocol_type: protocol_type.clone(),
                protocol_name: protocol_name.clone(),
                assignment,
            };
            if self.complete_sync_ticket(&member_id, response, fx) {
                self.reschedule_session(&member_id, now_ms);
            }
        }
    }

    fn remove_pending_sync(&mut self, member_id: &str) {
        self.pending_sync.remove(member_id);
        let cancel = match self.state {
            GroupState::CompletingRebalance | GroupState::Stable => self.pending_sync.is_empty(),
            _ => true,
        };
        if cancel {
            self.sync_timer = None;
        }
    }

    /// Members that got this generation's JoinGroup answer but never sent SyncGroup are
    /// removed, and the group rebalances without them.
    fn expire_pending_sync(
        &mut self,
        generation_id: i32,
        cfg: &CoordinatorConfig,
        now_ms: i64,
        fx: &mut Effects,
    ) {
        if generation_id != self.generation_id
            || !matches!(
                self.state,
                GroupState::CompletingRebalance | GroupState::Stable
            )
            || self.pending_sync.is_empty()
        {
            return;
        }
        let laggards: Vec<String> = self.pending_sync.iter().cloned().collect();
        tracing::info!(group = %self.id, members = ?laggards,
            "removing members that did not send SyncGroup in time");
        for member_id in &laggards {
            self.remove_member(member_id, fx);
        }
        self.prepare_rebalance(cfg, now_ms, fx);
    }

    // ---- SyncGroup ---------------------------------------------------------------------

    fn validate_sync(&self, req: &SyncRequest) -> Result<(), ResponseError> {
        if self.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        self.validate_member(&req.member_id, req.group_instance_id.as_deref())?;
        if req.generation_id != self.generation_id {
            return Err(ResponseError::IllegalGeneration);
        }
        let inconsistent = |asked: &Option<String>, ours: &Option<String>| match (asked, ours) {
            (Some(a), Some(o)) => a != o,
            _ => false,
        };
        if inconsistent(&req.protocol_type, &self.protocol_type)
            || inconsistent(&req.protocol_name, &self.protocol_name)
        {
            return Err(ResponseError::InconsistentGroupProtocol);
        }
        Ok(())
    }

    /// Handles a SyncGroup. Returns the answer if there is one now; otherwise the request
    /// is parked under `ticket` (the leader's SyncGroup answers everyone, itself included,
    /// through completions in `fx`).
    pub(crate) fn sync(
        &mut self,
        req: &SyncRequest,
        ticket: Ticket,
        now_ms: i64,
        fx: &mut Effects,
    ) -> Option<SyncResponse> {
        if self.state == GroupState::Empty {
            return Some(SyncResponse::error(ResponseError::UnknownMemberId));
        }
        if let Err(error) = self.validate_sync(req) {
            return Some(SyncResponse::error(error));
        }
        match self.state {
            GroupState::PreparingRebalance => {
                Some(SyncResponse::error(ResponseError::RebalanceInProgress))
            }
            GroupState::CompletingRebalance => {
                self.park_sync(&req.member_id, ticket, fx);
                self.remove_pending_sync(&req.member_id);
                if self.is_leader(&req.member_id) {
                    let mut assignment: HashMap<&str, &Bytes> = HashMap::new();
                    for (member_id, bytes) in &req.assignments {
                        assignment.insert(member_id, bytes);
                    }
                    let missing: Vec<&str> = self
                        .members
                        .keys()
                        .filter(|id| !assignment.contains_key(id.as_str()))
                        .map(String::as_str)
                        .collect();
                    if !missing.is_empty() {
                        tracing::warn!(group = %self.id, generation = self.generation_id,
                            members = ?missing, "no assignment from the leader: empty ones given");
                    }
                    let ids: Vec<String> = self.members.keys().cloned().collect();
                    for id in ids {
                        let bytes = assignment.get(id.as_str()).map(|b| (*b).clone());
                        if let Some(m) = self.members.get_mut(&id) {
                            m.assignment = bytes.unwrap_or_default();
                        }
                    }
                    // Kafka answers after the group record is written; here the record
                    // is in `fx` and the I/O layer appends it before sending any answer.
                    self.propagate_assignment(None, now_ms, fx);
                    self.transition(GroupState::Stable, now_ms);
                    self.persist_metadata(fx);
                    tracing::info!(group = %self.id, generation = self.generation_id,
                        "assignment received from the leader; group is stable");
                }
                None
            }
            GroupState::Stable => {
                self.remove_pending_sync(&req.member_id);
                let assignment = self.members[&req.member_id].assignment.clone();
                Some(SyncResponse {
                    error: None,
                    protocol_type: self.protocol_type.clone(),
                    protocol_name: self.protocol_name.clone(),
                    assignment,
                })
            }
            GroupState::Empty | GroupState::Dead => {
                Some(SyncResponse::error(ResponseError::UnknownMemberId))
            }
        }
    }

    // ---- Heartbeat ---------------------------------------------------------------------

    /// Handles a Heartbeat: None when the member is fine.
    pub(crate) fn heartbeat(
        &mut self,
        req: &MemberHeartbeat,
        now_ms: i64,
    ) -> Option<ResponseError> {
        if self.state == GroupState::Dead {
            return Some(ResponseError::CoordinatorNotAvailable);
        }
        if let Err(error) = self.validate_member(&req.member_id, req.group_instance_id.as_deref()) {
            return Some(error);
        }
        if req.generation_id != self.generation_id {
            return Some(ResponseError::IllegalGeneration);
        }
        match self.state {
            GroupState::Empty | GroupState::Dead => Some(ResponseError::UnknownMemberId),
            GroupState::PreparingRebalance => {
                self.reschedule_session(&req.member_id, now_ms);
                Some(ResponseError::RebalanceInProgress)
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.reschedule_session(&req.member_id, now_ms);
                None
            }
        }
    }

    // ---- LeaveGroup --------------------------------------------------------------------

    /// Handles a LeaveGroup for one or more members.
    pub(crate) fn leave(
        &mut self,
        members: &[LeaveMember],
        cfg: &CoordinatorConfig,
        now_ms: i64,
        fx: &mut Effects,
    ) -> LeaveResponse {
        if self.state == GroupState::Dead {
            return LeaveResponse {
                error: Some(ResponseError::CoordinatorNotAvailable),
                members: Vec::new(),
            };
        }
        let mut responses = Vec::with_capacity(members.len());
        for leaving in members {
            let error = if leaving.member_id.is_empty() {
                // Removal of a static member by instance id (the admin client does this).
                match leaving
                    .group_instance_id
                    .as_deref()
                    .and_then(|i| self.static_members.get(i).cloned())
                {
                    Some(member_id) => {
                        self.remove_leaving_member(&member_id, leaving, fx);
                        None
                    }
                    None => Some(ResponseError::UnknownMemberId),
                }
            } else if self.pending_members.remove(&leaving.member_id).is_some() {
                tracing::info!(group = %self.id, member = %leaving.member_id,
                    "pending member left");
                None
            } else {
                match self.validate_member(&leaving.member_id, leaving.group_instance_id.as_deref())
                {
                    Ok(()) => {
                        self.remove_leaving_member(&leaving.member_id, leaving, fx);
                        None
                    }
                    Err(error) => Some(error),
                }
            };
            responses.push(LeaveMemberResponse {
                member_id: leaving.member_id.clone(),
                group_instance_id: leaving.group_instance_id.clone(),
                error,
            });
        }
        if responses.iter().any(|r| r.error.is_none()) {
            match self.state {
                GroupState::Stable | GroupState::CompletingRebalance => {
                    self.maybe_prepare_rebalance_or_complete_join(cfg, now_ms, fx)
                }
                GroupState::PreparingRebalance => self.maybe_complete_join_phase(now_ms, fx),
                GroupState::Empty | GroupState::Dead => {}
            }
        }
        LeaveResponse {
            error: None,
            members: responses,
        }
    }

    fn remove_leaving_member(&mut self, member_id: &str, leaving: &LeaveMember, fx: &mut Effects) {
        tracing::info!(group = %self.id, member = %member_id,
            reason = leaving.reason.as_deref().unwrap_or("not provided"), "member left");
        self.remove_member(member_id, fx);
    }
}

/// The topics of a consumer-protocol subscription (`ConsumerProtocolSubscription`,
/// prefixed by its version). Decoded as version 0, the prefix of every version, as Kafka
/// does. None if the bytes do not parse.
pub fn decode_subscription_topics(metadata: &Bytes) -> Option<Vec<String>> {
    let mut buf = metadata.clone();
    if buf.len() < 2 {
        return None;
    }
    let version = i16::from_be_bytes([buf[0], buf[1]]);
    if version < 0 {
        return None;
    }
    bytes::Buf::advance(&mut buf, 2);
    let subscription = ConsumerProtocolSubscription::decode(&mut buf, 0).ok()?;
    Some(
        subscription
            .topics
            .into_iter()
            .map(|t| t.as_str().to_owned())
            .collect(),
    )
}
