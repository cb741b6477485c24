//! Membership in a consumer group with Kafka's classic protocol: FindCoordinator,
//! JoinGroup, SyncGroup, Heartbeat, LeaveGroup.
//!
//! A rebalance is: join (the coordinator collects every member's subscription and picks
//! a leader and a protocol, i.e. an assignor both sides support), the leader computes
//! the assignment ([`super::assignor`]) and hands it over in SyncGroup, every member
//! receives its share. [`GroupMember::rebalance`] runs that exchange with the retries
//! Kafka's consumer applies (MEMBER_ID_REQUIRED, UNKNOWN_MEMBER_ID, a moved coordinator).
//!
//! Between rebalances a background task heartbeats every `heartbeat_interval`. When the
//! coordinator answers REBALANCE_IN_PROGRESS (another member joined or left) or no
//! longer knows this member, the task raises a flag; the consumer sees it on its next
//! `poll` and rebalances. Heartbeats stop while a rebalance is under way (JoinGroup and
//! SyncGroup keep the session alive themselves).

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    GroupId, HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest, SyncGroupRequest,
};
use kafka_protocol::protocol::StrBytes;
use tokio::task::JoinHandle;

use super::assignor::{decode_assignment, encode_assignment, Assignor, Subscription};
use crate::client::Client;
use crate::error::{Error, Result};
use crate::offsets::CommitIdentity;
use crate::types::TopicPartition;

/// Group settings, named after Kafka's consumer configs.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// `session.timeout.ms`: without a heartbeat for this long, the member is removed.
    pub session_timeout: Duration,
    /// `heartbeat.interval.ms`.
    pub heartbeat_interval: Duration,
    /// `max.poll.interval.ms`: how long the coordinator waits for members to rejoin.
    pub rebalance_timeout: Duration,
    /// `partition.assignment.strategy`, in order of preference.
    pub assignors: Vec<Assignor>,
    /// `group.instance.id`: static membership.
    pub group_instance_id: Option<String>,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            session_timeout: Duration::from_secs(45),
            heartbeat_interval: Duration::from_secs(3),
            rebalance_timeout: Duration::from_secs(300),
            // Kafka 3+/4 default: [RangeAssignor, CooperativeStickyAssignor].
            assignors: vec![Assignor::Range, Assignor::CooperativeSticky],
            group_instance_id: None,
        }
    }
}

/// The result of one rebalance for this member.
#[derive(Debug, Clone, Default)]
pub struct Rebalanced {
    /// The member's whole assignment now.
    pub assigned: Vec<TopicPartition>,
    /// Partitions owned before and not any more (to commit and drop).
    pub revoked: Vec<TopicPartition>,
    /// Partitions new to this member.
    pub added: Vec<TopicPartition>,
}

/// What the heartbeat task and the consumer share.
#[derive(Debug, Default)]
struct Shared {
    rejoin: AtomicBool,
    /// A fatal heartbeat error, surfaced by the next poll.
    error: Mutex<Option<Error>>,
    /// Set when the coordinator forgot this member: the next join starts fresh.
    reset_member: AtomicBool,
}

/// This consumer's membership in one group; see the module docs.
#[derive(Debug)]
pub struct GroupMember {
    client: Client,
    group: String,
    config: GroupConfig,
    member_id: String,
    generation: i32,
    protocol: Option<Assignor>,
    /// Partitions owned now.
    owned: Vec<TopicPartition>,
    shared: Arc<Shared>,
    heartbeat: Option<JoinHandle<()>>,
    /// Private connections: JoinGroup waits on the broker for the whole rebalance.
    channel: String,
}

impl Drop for GroupMember {
    fn drop(&mut self) {
        if let Some(task) = self.heartbeat.take() {
            task.abort();
        }
        self.client.close_channel(&self.channel);
    }
}

impl GroupMember {
    pub fn new(client: Client, group: String, config: GroupConfig) -> Result<GroupMember> {
        if group.is_empty() {
            return Err(Error::InvalidArgument(
                "the group id must not be empty".into(),
            ));
        }
        if config.assignors.is_empty() {
            return Err(Error::InvalidArgument(
                "at least one assignor is needed".into(),
            ));
        }
        let shared = Arc::new(Shared::default());
        shared.rejoin.store(true, Ordering::SeqCst);
        Ok(GroupMember {
            channel: client.new_channel("group"),
            client,
            group,
            config,
            member_id: String::new(),
            generation: -1,
            protocol: None,
            owned: Vec::new(),
            shared,
            heartbeat: None,
        })
    }

    pub fn group(&self) -> &str {
        &self.group
    }

    pub fn member_id(&self) -> &str {
        &self.member_id
    }

    pub fn generation(&self) -> i32 {
        self.generation
    }

    /// The assignor the group chose in the last rebalance.
    pub fn protocol(&self) -> Option<Assignor> {
        self.protocol
    }

    /// Partitions this member owns now.
    pub fn owned(&self) -> &[TopicPartition] {
        &self.owned
    }

    /// Whether a rebalance is due (first join, or the heartbeat task asked for one).
    pub fn needs_rejoin(&self) -> bool {
        self.shared.rejoin.load(Ordering::SeqCst)
    }

    /// Asks for a rebalance on the next poll.
    pub fn request_rejoin(&self) {
        self.shared.rejoin.store(true, Ordering::SeqCst);
    }

    /// A fatal error the heartbeat task met, if any (taken: reported once).
    pub fn take_error(&self) -> Option<Error> {
        self.shared
            .error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Whether the next rebalance revokes everything first (eager protocols, or the
    /// first join, where nothing is owned anyway).
    pub fn is_eager(&self) -> bool {
        !self.protocol.is_some_and(Assignor::is_cooperative)
    }

    /// Forgets owned partitions (eager protocol: revoked before rejoining).
    pub fn revoke_all(&mut self) {
        self.owned.clear();
    }

    /// Identity for offset commits.
    pub fn identity(&self) -> CommitIdentity {
        CommitIdentity {
            generation: self.generation,
            member_id: self.member_id.clone(),
            group_instance_id: self.config.group_instance_id.clone(),
        }
    }

    /// Joins (or rejoins) the group with `topics` as subscription, and returns the new
    /// assignment. Retries until `rebalance_timeout` + `api_timeout` has passed.
    pub async fn rebalance(&mut self, topics: &[String]) -> Result<Rebalanced> {
        if let Some(task) = self.heartbeat.take() {
            task.abort();
        }
        self.shared.rejoin.store(false, Ordering::SeqCst);
        if self.shared.reset_member.swap(false, Ordering::SeqCst) {
            self.member_id.clear();
            self.generation = -1;
        }
        let deadline =
            Instant::now() + self.config.rebalance_timeout + self.client.config().api_timeout;
        let mut attempt = 0;
        let assigned = loop {
            let error = match self.join_and_sync(topics).await {
                Ok(assigned) => break assigned,
                Err(e) => e,
            };
            let retry = match error.kafka_error() {
                Some(ResponseError::MemberIdRequired) => {
                    // The coordinator handed us an id in the error answer: rejoin with it
                    // at once (join_and_sync already stored it).
                    continue;
                }
                Some(ResponseError::UnknownMemberId | ResponseError::FencedInstanceId) => {
                    self.member_id.clear();
                    self.generation = -1;
                    true
                }
                Some(ResponseError::IllegalGeneration | ResponseError::RebalanceInProgress) => true,
                Some(ResponseError::NotCoordinator | ResponseError::CoordinatorNotAvailable) => {
                    self.client.invalidate_coordinator(&self.group);
                    true
                }
                _ => {
                    if matches!(
                        error,
                        Error::Io { .. } | Error::Disconnected { .. } | Error::Timeout { .. }
                    ) {
                        self.client.invalidate_coordinator(&self.group);
                    }
                    error.is_retriable()
                }
            };
            let pause = self.client.backoff(attempt);
            if !retry || Instant::now() + pause >= deadline {
                self.shared.rejoin.store(true, Ordering::SeqCst);
                return Err(error);
            }
            tracing::debug!(group = %self.group, error = %error, "rejoining group");
            tokio::time::sleep(pause).await;
            attempt += 1;
        };
        let before: BTreeSet<TopicPartition> = self.owned.iter().cloned().collect();
        let after: BTreeSet<TopicPartition> = assigned.iter().cloned().collect();
        let outcome = Rebalanced {
            revoked: before.difference(&after).cloned().collect(),
            added: after.difference(&before).cloned().collect(),
            assigned,
        };
        self.owned = outcome.assigned.clone();
        if self.protocol.is_some_and(Assignor::is_cooperative) && !outcome.revoked.is_empty() {
            // KIP-429: having given partitions up, rejoin so they can be handed on.
            self.shared.rejoin.store(true, Ordering::SeqCst);
        }
        self.start_heartbeat();
        Ok(outcome)
    }

    async fn join_and_sync(&mut self, topics: &[String]) -> Result<Vec<TopicPartition>> {
        let (_, connection) = self
            .client
            .group_coordinator_on(&self.group, &self.channel)
            .await?;
        let group_id = GroupId(StrBytes::from_string(self.group.clone()));
        let subscription = Subscription {
            member_id: self.member_id.clone(),
            topics: topics.to_vec(),
            owned: self.owned.clone(),
            generation: self.generation,
        }
        .encode();
        let version = connection.version::<JoinGroupRequest>()?;
        let join = JoinGroupRequest::default()
            .with_group_id(group_id.clone())
            .with_session_timeout_ms(millis(self.config.session_timeout))
            .with_rebalance_timeout_ms(millis(self.config.rebalance_timeout))
            .with_member_id(StrBytes::from_string(self.member_id.clone()))
            .with_group_instance_id(
                self.config
                    .group_instance_id
                    .clone()
                    .map(StrBytes::from_string),
            )
            .with_protocol_type(StrBytes::from_static_str("consumer"))
            .with_protocols(
                self.config
                    .assignors
                    .iter()
                    .map(|a| {
                        JoinGroupRequestProtocol::default()
                            .with_name(StrBytes::from_static_str(a.name()))
                            .with_metadata(subscription.clone())
                    })
                    .collect(),
            )
            .with_reason(Some(StrBytes::from_static_str("joining or rebalancing")));
        // The coordinator holds JoinGroup until every member has rejoined.
        let wait = self.config.rebalance_timeout + Duration::from_secs(5);
        let joined = connection.send_with_timeout(&join, version, wait).await?;
        let group = &self.group;
        if let Some(error) = ResponseError::try_from_code(joined.error_code) {
            if error == ResponseError::MemberIdRequired {
                self.member_id = joined.member_id.as_str().to_owned();
            }
            return Err(Error::broker(format!("join group {group:?}"), error, None));
        }
        self.member_id = joined.member_id.as_str().to_owned();
        self.generation = joined.generation_id;
        let protocol_name = joined.protocol_name.as_ref().map_or("", |p| p.as_str());
        let protocol = Assignor::from_name(protocol_name).ok_or_else(|| {
            Error::protocol(
                "JoinGroup",
                connection.addr(),
                format!("the coordinator chose protocol {protocol_name:?}, which this member did not offer"),
            )
        })?;
        self.protocol = Some(protocol);
        let is_leader = joined.leader.as_str() == self.member_id;
        tracing::debug!(group = %self.group, generation = self.generation, member = %self.member_id,
            leader = is_leader, protocol = protocol.name(), "joined group");

        let assignments = if is_leader && !joined.skip_assignment {
            let members: Vec<Subscription> = joined
                .members
                .iter()
                .filter_map(|m| Subscription::decode(m.member_id.as_str(), m.metadata.clone()))
                .collect();
            let mut counts = HashMap::new();
            let wanted: BTreeSet<&String> = members.iter().flat_map(|m| m.topics.iter()).collect();
            for topic in wanted {
                match self.client.fetch_topic(topic, false).await {
                    Ok(info) => {
                        counts.insert(topic.clone(), info.partitions.len() as i32);
                    }
                    Err(Error::UnknownTopic { .. }) => {} // nothing to assign
                    Err(e) => return Err(e),
                }
            }
            protocol
                .assign(&members, &counts)
                .into_iter()
                .map(|(member, partitions)| {
                    SyncGroupRequestAssignment::default()
                        .with_member_id(StrBytes::from_string(member))
                        .with_assignment(encode_assignment(&partitions))
                })
                .collect()
        } else {
            Vec::new()
        };
        let version = connection.version::<SyncGroupRequest>()?;
        let sync = SyncGroupRequest::default()
            .with_group_id(group_id)
            .with_generation_id(self.generation)
            .with_member_id(StrBytes::from_string(self.member_id.clone()))
            .with_group_instance_id(
                self.config
                    .group_instance_id
                    .clone()
                    .map(StrBytes::from_string),
            )
            .with_protocol_type(Some(StrBytes::from_static_str("consumer")))
            .with_protocol_name(Some(StrBytes::from_static_str(protocol.name())))
            .with_assignments(assignments);
        let synced = connection.send_with_timeout(&sync, version, wait).await?;
        Error::check(synced.error_code, || format!("sync group {group:?}"), None)?;
        decode_assignment(synced.assignment.clone()).ok_or_else(|| {
            Error::protocol(
                "SyncGroup",
                connection.addr(),
                "the assignment cannot be decoded",
            )
        })
    }

    fn start_heartbeat(&mut self) {
        let client = self.client.clone();
        let group = self.group.clone();
        let member_id = self.member_id.clone();
        let generation = self.generation;
        let instance_id = self.config.group_instance_id.clone();
        let interval = self.config.heartbeat_interval;
        let shared = self.shared.clone();
        let channel = self.channel.clone();
        self.heartbeat = Some(tokio::spawn(async move {
            let request = HeartbeatRequest::default()
                .with_group_id(GroupId(StrBytes::from_string(group.clone())))
                .with_generation_id(generation)
                .with_member_id(StrBytes::from_string(member_id))
                .with_group_instance_id(instance_id.map(StrBytes::from_string));
            loop {
                tokio::time::sleep(interval).await;
                let result = async {
                    let (_, connection) = client.group_coordinator_on(&group, &channel).await?;
                    let version = connection.version::<HeartbeatRequest>()?;
                    let response = connection.send(&request, version).await?;
                    Error::check(
                        response.error_code,
                        || format!("heartbeat to group {group:?}"),
                        None,
                    )
                }
                .await;
                let Err(error) = result else {
                    continue;
                };
                match error.kafka_error() {
                    Some(ResponseError::RebalanceInProgress) => {
                        shared.rejoin.store(true, Ordering::SeqCst);
                        return;
                    }
                    Some(
                        ResponseError::UnknownMemberId
                        | ResponseError::IllegalGeneration
                        | ResponseError::FencedInstanceId,
                    ) => {
                        shared.reset_member.store(
                            error.kafka_error() != Some(ResponseError::IllegalGeneration),
                            Ordering::SeqCst,
                        );
                        shared.rejoin.store(true, Ordering::SeqCst);
                        return;
                    }
                    _ if error.is_retriable() || error.needs_metadata_refresh() => {
                        client.invalidate_coordinator(&group);
                        tracing::debug!(group, error = %error, "heartbeat failed; retrying");
                    }
                    _ => {
                        *shared.error.lock().unwrap_or_else(|p| p.into_inner()) = Some(error);
                        return;
                    }
                }
            }
        }));
    }

    /// Leaves the group (best effort: the session timeout removes us anyway).
    pub async fn leave(&mut self) -> Result<()> {
        if let Some(task) = self.heartbeat.take() {
            task.abort();
        }
        if self.member_id.is_empty() {
            return Ok(());
        }
        let (_, connection) = self
            .client
            .group_coordinator_on(&self.group, &self.channel)
            .await?;
        let version = connection.version::<LeaveGroupRequest>()?;
        let mut request = LeaveGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(self.group.clone())));
        if version >= 3 {
            request.members = vec![MemberIdentity::default()
                .with_member_id(StrBytes::from_string(self.member_id.clone()))
                .with_group_instance_id(
                    self.config
                        .group_instance_id
                        .clone()
                        .map(StrBytes::from_string),
                )
                .with_reason(Some(StrBytes::from_static_str("the consumer is closing")))];
        } else {
            request.member_id = StrBytes::from_string(self.member_id.clone());
        }
        let response = connection.send(&request, version).await?;
        let group = &self.group;
        Error::check(
            response.error_code,
            || format!("leave group {group:?}"),
            None,
        )?;
        self.member_id.clear();
        self.generation = -1;
        self.owned.clear();
        Ok(())
    }
}

fn millis(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}
