//! A group's committed offsets: OffsetCommit validation, OffsetFetch, OffsetDelete and
//! offset expiry, as Kafka's `OffsetMetadataManager` and `ClassicGroup` define them.
//!
//! Every change is a record (see `store.rs`): an offset value per committed partition, a
//! tombstone per deleted or expired one. The in-memory map is the persisted image: it
//! changes exactly when such a record is emitted, so replaying the log rebuilds it.

use kafka_protocol::error::ResponseError;

use super::group::{Group, GroupState};
use super::store::{OffsetValue, Record};
use super::{CoordinatorConfig, Effects};

/// An OffsetCommit request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitRequest {
    pub group_id: String,
    /// -1 for a commit from outside the group protocol (a "simple" commit).
    pub generation_id: i32,
    /// "" for a simple commit.
    pub member_id: String,
    pub group_instance_id: Option<String>,
    /// OffsetCommit v2-v4; -1 means the broker's retention.
    pub retention_time_ms: i64,
    pub topics: Vec<CommitTopic>,
    /// The request's API version (v9+ answers GROUP_ID_NOT_FOUND for an unknown group
    /// where older versions answer ILLEGAL_GENERATION).
    pub api_version: i16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitTopic {
    pub name: String,
    pub partitions: Vec<CommitPartition>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitPartition {
    pub partition: i32,
    pub offset: i64,
    /// -1 when unknown.
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

/// Per-partition errors of one topic (None: success).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicErrors {
    pub name: String,
    pub partitions: Vec<(i32, Option<ResponseError>)>,
}

/// An OffsetCommit answer: one error (or None) per requested partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitResponse {
    pub topics: Vec<TopicErrors>,
}

impl CommitResponse {
    /// Every partition of `req` failing with `error`.
    pub fn error(req: &CommitRequest, error: ResponseError) -> CommitResponse {
        CommitResponse {
            topics: req
                .topics
                .iter()
                .map(|t| TopicErrors {
                    name: t.name.clone(),
                    partitions: t
                        .partitions
                        .iter()
                        .map(|p| (p.partition, Some(error)))
                        .collect(),
                })
                .collect(),
        }
    }
}

/// Partitions asked for in an OffsetFetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchTopic {
    pub name: String,
    pub partitions: Vec<i32>,
}

/// One partition of an OffsetFetch answer (offset -1: nothing committed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedPartition {
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub error: Option<ResponseError>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedTopic {
    pub name: String,
    pub partitions: Vec<FetchedPartition>,
}

/// An OffsetFetch answer for one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchResponse {
    pub error: Option<ResponseError>,
    pub topics: Vec<FetchedTopic>,
}

/// An OffsetDelete answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteOffsetsResponse {
    pub error: Option<ResponseError>,
    pub topics: Vec<TopicErrors>,
}

/// Offset for a partition nothing was committed for.
pub(crate) fn no_offset(partition: i32) -> FetchedPartition {
    FetchedPartition {
        partition,
        offset: -1,
        leader_epoch: -1,
        metadata: String::new(),
        error: None,
    }
}

impl Group {
    /// Kafka's `ClassicGroup.validateOffsetCommit` (non-transactional).
    pub(crate) fn validate_offset_commit(
        &self,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
    ) -> Result<(), ResponseError> {
        if self.state() == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        if generation_id < 0 && self.state() == GroupState::Empty {
            // From the admin client or a consumer assigning partitions itself.
            return Ok(());
        }
        if generation_id >= 0 || !member_id.is_empty() || group_instance_id.is_some() {
            self.validate_member(member_id, group_instance_id)?;
            if generation_id != self.generation_id() {
                return Err(ResponseError::IllegalGeneration);
            }
        } else if self.state() != GroupState::Empty {
            // Without member id and generation, commits are only taken by an Empty group.
            return Err(ResponseError::UnknownMemberId);
        }
        if self.state() == GroupState::CompletingRebalance {
            // The member has this generation's JoinGroup answer but not its assignment.
            return Err(ResponseError::RebalanceInProgress);
        }
        Ok(())
    }

    /// Commits the offsets of a validated request; a member's commit also counts as a
    /// heartbeat while the group is Stable or PreparingRebalance.
    pub(crate) fn commit(
        &mut self,
        req: &CommitRequest,
        cfg: &CoordinatorConfig,
        now_ms: i64,
        fx: &mut Effects,
    ) -> CommitResponse {
        if let Err(error) = self.validate_offset_commit(
            &req.member_id,
            req.group_instance_id.as_deref(),
            req.generation_id,
        ) {
            return CommitResponse::error(req, error);
        }
        if matches!(
            self.state(),
            GroupState::Stable | GroupState::PreparingRebalance
        ) {
            self.keep_alive(&req.member_id, now_ms);
        }
        let expire_timestamp_ms =
            (req.retention_time_ms != -1).then(|| now_ms.saturating_add(req.retention_time_ms));
        let mut topics = Vec::with_capacity(req.topics.len());
        for topic in &req.topics {
            let mut partitions = Vec::with_capacity(topic.partitions.len());
            for p in &topic.partitions {
                let metadata = p.metadata.clone().unwrap_or_default();
                // Java's String.length(): UTF-16 code units.
                if metadata.encode_utf16().count() > cfg.offset_metadata_max_bytes {
                    partitions.push((p.partition, Some(ResponseError::OffsetMetadataTooLarge)));
                    continue;
                }
                self.emit(
                    Record::Offset {
                        group: self.id().to_owned(),
                        topic: topic.name.clone(),
                        partition: p.partition,
                        value: Some(OffsetValue {
                            offset: p.offset,
                            leader_epoch: if p.leader_epoch < 0 {
                                -1
                            } else {
                                p.leader_epoch
                            },
                            metadata,
                            commit_timestamp_ms: now_ms,
                            expire_timestamp_ms,
                        }),
                    },
                    fx,
                );
                partitions.push((p.partition, None));
            }
            topics.push(TopicErrors {
                name: topic.name.clone(),
                partitions,
            });
        }
        CommitResponse { topics }
    }

    /// The committed offsets asked for (all of them when `topics` is None).
    pub(crate) fn fetch(&self, topics: Option<&[FetchTopic]>) -> Vec<FetchedTopic> {
        let fetched =
            |topic: &str, partition: i32| match self.offsets.get(&(topic.to_owned(), partition)) {
                Some(v) => FetchedPartition {
                    partition,
                    offset: v.offset,
                    leader_epoch: v.leader_epoch,
                    metadata: v.metadata.clone(),
                    error: None,
                },
                None => no_offset(partition),
            };
        match topics {
            Some(topics) => topics
                .iter()
                .map(|t| FetchedTopic {
                    name: t.name.clone(),
                    partitions: t.partitions.iter().map(|&p| fetched(&t.name, p)).collect(),
                })
                .collect(),
            None => {
                let mut out: Vec<FetchedTopic> = Vec::new();
                for (topic, partition) in self.offsets.keys() {
                    if out.last().map(|t| &t.name) != Some(topic) {
                        out.push(FetchedTopic {
                            name: topic.clone(),
                            partitions: Vec::new(),
                        });
                    }
                    if let Some(last) = out.last_mut() {
                        last.partitions.push(fetched(topic, *partition));
                    }
                }
                out
            }
        }
    }

    /// Deletes every committed offset of `topic` (a deleted topic: its offsets mean
    /// nothing for a topic created later under the same name). Returns how many.
    pub(crate) fn forget_topic(&mut self, topic: &str, fx: &mut Effects) -> usize {
        let partitions: Vec<i32> = self
            .offsets
            .keys()
            .filter(|(t, _)| t == topic)
            .map(|(_, p)| *p)
            .collect();
        for &partition in &partitions {
            self.emit(
                Record::Offset {
                    group: self.id().to_owned(),
                    topic: topic.to_owned(),
                    partition,
                    value: None,
                },
                fx,
            );
        }
        partitions.len()
    }

    /// Kafka's `ClassicGroup.validateOffsetDelete`.
    pub(crate) fn validate_offset_delete(&self) -> Result<(), ResponseError> {
        match self.state() {
            GroupState::Dead => Err(ResponseError::GroupIdNotFound),
            GroupState::Stable
            | GroupState::PreparingRebalance
            | GroupState::CompletingRebalance
                if !self.uses_consumer_protocol() =>
            {
                Err(ResponseError::NonEmptyGroup)
            }
            _ => Ok(()),
        }
    }

    /// Deletes committed offsets, except of topics the group is subscribed to.
    pub(crate) fn delete_offsets(
        &mut self,
        topics: &[FetchTopic],
        fx: &mut Effects,
    ) -> Vec<TopicErrors> {
        let mut out = Vec::with_capacity(topics.len());
        for topic in topics {
            let subscribed = self.is_subscribed_to_topic(&topic.name);
            let mut partitions = Vec::with_capacity(topic.partitions.len());
            for &p in &topic.partitions {
                if subscribed {
                    partitions.push((p, Some(ResponseError::GroupSubscribedToTopic)));
                    continue;
                }
                if self.offsets.contains_key(&(topic.name.clone(), p)) {
                    self.emit(
                        Record::Offset {
                            group: self.id().to_owned(),
                            topic: topic.name.clone(),
                            partition: p,
                            value: None,
                        },
                        fx,
                    );
                }
                partitions.push((p, None));
            }
            out.push(TopicErrors {
                name: topic.name.clone(),
                partitions,
            });
        }
        out
    }

    /// Tombstones every committed offset (DeleteGroups).
    pub(crate) fn delete_all_offsets(&mut self, fx: &mut Effects) -> usize {
        let keys: Vec<(String, i32)> = self.offsets.keys().cloned().collect();
        for (topic, partition) in &keys {
            self.emit(
                Record::Offset {
                    group: self.id().to_owned(),
                    topic: topic.clone(),
                    partition: *partition,
                    value: None,
                },
                fx,
            );
        }
        keys.len()
    }

    /// The time an offset's retention counts from, if the group's offsets can expire at
    /// all now (Kafka's `ClassicGroup.offsetExpirationCondition`).
    fn expiration_base(&self, value: &OffsetValue) -> Option<i64> {
        match self.protocol_type() {
            // A simple group: retention counts from each commit.
            None => Some(value.commit_timestamp_ms),
            Some(_) if self.state() == GroupState::Empty => Some(self.state_timestamp_ms()),
            Some(_)
                if self.uses_consumer_protocol()
                    && self.subscribed_topics().is_some()
                    && self.state() == GroupState::Stable =>
            {
                Some(value.commit_timestamp_ms)
            }
            Some(_) => None,
        }
    }

    /// Tombstones offsets past their retention (never those of subscribed topics).
    /// Returns whether no offset is left.
    pub(crate) fn expire_offsets(
        &mut self,
        cfg: &CoordinatorConfig,
        now_ms: i64,
        fx: &mut Effects,
    ) -> bool {
        let mut expired = Vec::new();
        let mut all = true;
        for ((topic, partition), value) in &self.offsets {
            if self.is_subscribed_to_topic(topic) {
                all = false;
                continue;
            }
            let Some(base) = self.expiration_base(value) else {
                return false;
            };
            let is_expired = match value.expire_timestamp_ms {
                Some(at) => now_ms >= at,
                None => now_ms.saturating_sub(base) >= cfg.offsets_retention_ms,
            };
            if is_expired {
                expired.push((topic.clone(), *partition));
            } else {
                all = false;
            }
        }
        if !expired.is_empty() {
            tracing::info!(group = %self.id(), offsets = expired.len(), "offsets expired");
        }
        for (topic, partition) in expired {
            self.emit(
                Record::Offset {
                    group: self.id().to_owned(),
                    topic,
                    partition,
                    value: None,
                },
                fx,
            );
        }
        all
    }
}
