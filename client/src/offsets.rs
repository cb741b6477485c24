//! Offset lookups and commits shared by the consumer and the admin API:
//! ListOffsets (earliest / latest / by time, sent to each partition's leader), and
//! OffsetFetch / OffsetCommit (sent to the group's coordinator).
//!
//! Each call retries retriable errors through [`Client::retry`], refreshing metadata or
//! the coordinator when the broker says they moved.

use std::collections::{BTreeMap, HashMap};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::{
    GroupId, ListOffsetsRequest, OffsetCommitRequest, OffsetFetchRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::types::{OffsetSpec, TopicPartition};

/// One ListOffsets answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListedOffset {
    /// The offset; -1 when a timestamp lookup found no record at or after the time.
    pub offset: i64,
    /// The found record's timestamp (-1 for earliest/latest).
    pub timestamp: i64,
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
}

/// Looks up offsets for each partition; see [`OffsetSpec`].
pub async fn list_offsets(
    client: &Client,
    specs: &[(TopicPartition, OffsetSpec)],
) -> Result<HashMap<TopicPartition, ListedOffset>> {
    client
        .retry("list offsets", || list_offsets_once(client, specs))
        .await
}

async fn list_offsets_once(
    client: &Client,
    specs: &[(TopicPartition, OffsetSpec)],
) -> Result<HashMap<TopicPartition, ListedOffset>> {
    let mut by_leader: BTreeMap<i32, Vec<(TopicPartition, OffsetSpec)>> = BTreeMap::new();
    for (tp, spec) in specs {
        let info = client.topic(&tp.topic).await?;
        let partition = info
            .partition(tp.partition)
            .ok_or_else(|| Error::UnknownPartition {
                topic: tp.topic.clone(),
                partition: tp.partition,
                count: info.partitions.len(),
            })?;
        let leader = partition.leader.ok_or_else(|| {
            client.invalidate_topic(&tp.topic);
            Error::broker(
                format!("list offsets of {tp}"),
                ResponseError::LeaderNotAvailable,
                None,
            )
        })?;
        by_leader
            .entry(leader)
            .or_default()
            .push((tp.clone(), *spec));
    }
    let mut out = HashMap::new();
    for (leader, specs) in by_leader {
        let connection = client.broker(leader).await?;
        let version = connection.version::<ListOffsetsRequest>()?;
        let mut topics: Vec<ListOffsetsTopic> = Vec::new();
        for (tp, spec) in &specs {
            let partition = ListOffsetsPartition::default()
                .with_partition_index(tp.partition)
                .with_current_leader_epoch(-1)
                .with_timestamp(spec.list_offsets_timestamp());
            match topics.iter_mut().find(|t| t.name.0.as_str() == tp.topic) {
                Some(topic) => topic.partitions.push(partition),
                None => topics.push(
                    ListOffsetsTopic::default()
                        .with_name(topic_name(&tp.topic))
                        .with_partitions(vec![partition]),
                ),
            }
        }
        let timeout_ms =
            i32::try_from(client.config().request_timeout.as_millis()).unwrap_or(i32::MAX);
        let request = ListOffsetsRequest::default()
            .with_replica_id((-1).into())
            .with_isolation_level(0)
            .with_timeout_ms(timeout_ms)
            .with_topics(topics);
        let response = connection.send(&request, version).await?;
        for (tp, _) in &specs {
            let answer = response
                .topics
                .iter()
                .filter(|t| t.name.0.as_str() == tp.topic)
                .flat_map(|t| t.partitions.iter())
                .find(|p| p.partition_index == tp.partition)
                .ok_or_else(|| {
                    Error::protocol(
                        "ListOffsets",
                        connection.addr(),
                        format!("the answer does not mention {tp}"),
                    )
                })?;
            if let Err(e) =
                Error::check(answer.error_code, || format!("list offsets of {tp}"), None)
            {
                if e.needs_metadata_refresh() {
                    client.invalidate_topic(&tp.topic);
                }
                return Err(e);
            }
            out.insert(
                tp.clone(),
                ListedOffset {
                    offset: answer.offset,
                    timestamp: answer.timestamp,
                },
            );
        }
    }
    Ok(out)
}

/// The committed offsets of `group`: for `partitions`, or for everything the group has
/// committed when `None`. Partitions without a commit map to `None`.
pub async fn fetch_committed(
    client: &Client,
    group: &str,
    partitions: Option<&[TopicPartition]>,
) -> Result<BTreeMap<TopicPartition, Option<i64>>> {
    client
        .retry("fetch committed offsets", || async {
            let result = fetch_committed_once(client, group, partitions).await;
            if let Err(e) = &result {
                invalidate_coordinator_on(client, group, e);
            }
            result
        })
        .await
}

fn invalidate_coordinator_on(client: &Client, group: &str, error: &Error) {
    let moved = matches!(
        error.kafka_error(),
        Some(ResponseError::NotCoordinator | ResponseError::CoordinatorNotAvailable)
    ) || matches!(
        error,
        Error::Io { .. }
            | Error::Disconnected { .. }
            | Error::Connect { .. }
            | Error::Timeout { .. }
    );
    if moved {
        client.invalidate_coordinator(group);
    }
}

fn group_topics(partitions: &[TopicPartition]) -> BTreeMap<&str, Vec<i32>> {
    let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for tp in partitions {
        topics
            .entry(tp.topic.as_str())
            .or_default()
            .push(tp.partition);
    }
    topics
}

async fn fetch_committed_once(
    client: &Client,
    group: &str,
    partitions: Option<&[TopicPartition]>,
) -> Result<BTreeMap<TopicPartition, Option<i64>>> {
    let (_, connection) = client.group_coordinator(group).await?;
    let version = connection.version::<OffsetFetchRequest>()?;
    let group_id = GroupId(StrBytes::from_string(group.to_owned()));
    let context = || format!("fetch committed offsets of group {group:?}");
    let mut request = OffsetFetchRequest::default();
    let topics = partitions.map(group_topics);
    if version >= 8 {
        request.groups = vec![OffsetFetchRequestGroup::default()
            .with_group_id(group_id)
            .with_topics(topics.map(|topics| {
                topics
                    .into_iter()
                    .map(|(name, indexes)| {
                        OffsetFetchRequestTopics::default()
                            .with_name(topic_name(name))
                            .with_partition_indexes(indexes)
                    })
                    .collect()
            }))];
    } else {
        request.group_id = group_id;
        request.topics = topics.map(|topics| {
            topics
                .into_iter()
                .map(|(name, indexes)| {
                    OffsetFetchRequestTopic::default()
                        .with_name(topic_name(name))
                        .with_partition_indexes(indexes)
                })
                .collect()
        });
    }
    let response = connection.send(&request, version).await?;
    let mut out = BTreeMap::new();
    let mut record = |topic: &str, partition: i32, offset: i64, code: i16| -> Result<()> {
        let tp = TopicPartition::new(topic, partition);
        Error::check(
            code,
            || format!("fetch committed offset of {tp} in group {group:?}"),
            None,
        )?;
        out.insert(tp, Some(offset).filter(|&o| o >= 0));
        Ok(())
    };
    if version >= 8 {
        let answer = response.groups.first().ok_or_else(|| {
            Error::protocol(
                "OffsetFetch",
                connection.addr(),
                "the answer lists no group",
            )
        })?;
        Error::check(answer.error_code, context, None)?;
        for topic in &answer.topics {
            for p in &topic.partitions {
                record(
                    topic.name.0.as_str(),
                    p.partition_index,
                    p.committed_offset,
                    p.error_code,
                )?;
            }
        }
    } else {
        Error::check(response.error_code, context, None)?;
        for topic in &response.topics {
            for p in &topic.partitions {
                record(
                    topic.name.0.as_str(),
                    p.partition_index,
                    p.committed_offset,
                    p.error_code,
                )?;
            }
        }
    }
    if let Some(partitions) = partitions {
        for tp in partitions {
            out.entry(tp.clone()).or_insert(None);
        }
    }
    Ok(out)
}

/// Who commits: a group member (generation and member id from the last join), or a
/// tool acting on an empty group (generation -1, no member).
#[derive(Debug, Clone, Default)]
pub struct CommitIdentity {
    pub generation: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

impl CommitIdentity {
    /// The identity used to commit for a group with no active members.
    pub fn outside_group() -> Self {
        CommitIdentity {
            generation: -1,
            member_id: String::new(),
            group_instance_id: None,
        }
    }
}

/// Commits `offsets` (the next offset to read, per partition) for `group`.
pub async fn commit(
    client: &Client,
    group: &str,
    identity: &CommitIdentity,
    offsets: &[(TopicPartition, i64)],
) -> Result<()> {
    if offsets.is_empty() {
        return Ok(());
    }
    client
        .retry("commit offsets", || async {
            let result = commit_once(client, group, identity, offsets).await;
            if let Err(e) = &result {
                invalidate_coordinator_on(client, group, e);
            }
            result
        })
        .await
}

async fn commit_once(
    client: &Client,
    group: &str,
    identity: &CommitIdentity,
    offsets: &[(TopicPartition, i64)],
) -> Result<()> {
    let (_, connection) = client.group_coordinator(group).await?;
    let version = connection.version::<OffsetCommitRequest>()?;
    let mut topics: Vec<OffsetCommitRequestTopic> = Vec::new();
    for (tp, offset) in offsets {
        let partition = OffsetCommitRequestPartition::default()
            .with_partition_index(tp.partition)
            .with_committed_offset(*offset)
            .with_committed_leader_epoch(-1)
            .with_committed_metadata(Some(StrBytes::new()));
        match topics.iter_mut().find(|t| t.name.0.as_str() == tp.topic) {
            Some(topic) => topic.partitions.push(partition),
            None => topics.push(
                OffsetCommitRequestTopic::default()
                    .with_name(topic_name(&tp.topic))
                    .with_partitions(vec![partition]),
            ),
        }
    }
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_owned())))
        .with_generation_id_or_member_epoch(identity.generation)
        .with_member_id(StrBytes::from_string(identity.member_id.clone()))
        .with_group_instance_id(
            identity
                .group_instance_id
                .clone()
                .map(StrBytes::from_string),
        )
        .with_retention_time_ms(-1)
        .with_topics(topics);
    let response = connection.send(&request, version).await?;
    for topic in &response.topics {
        for p in &topic.partitions {
            let Some(error) = ResponseError::try_from_code(p.error_code) else {
                continue;
            };
            if matches!(
                error,
                ResponseError::RebalanceInProgress
                    | ResponseError::IllegalGeneration
                    | ResponseError::UnknownMemberId
                    | ResponseError::FencedInstanceId
            ) && identity.generation >= 0
            {
                return Err(Error::CommitFailed {
                    group: group.to_owned(),
                    error,
                });
            }
            return Err(Error::broker(
                format!(
                    "commit offset of {}-{} for group {group:?}",
                    topic.name.0.as_str(),
                    p.partition_index
                ),
                error,
                None,
            ));
        }
    }
    Ok(())
}
