//! Cluster administration: topics, partitions, configs, consumer groups, offsets, and
//! (in [`cluster`]) the brokers and the metadata quorum.
//!
//! Every method maps to one or a few Kafka admin requests, sent to the broker Kafka
//! routes them to (the controller for topic changes, each partition's leader for
//! offsets and log sizes, the group coordinator for groups) and retried on retriable
//! errors through [`Client::retry`]. Per-item errors in an answer (one topic of several
//! failing) are reported as the first such error, with the item named in the context.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreateTopicsRequest, DeleteGroupsRequest, DeleteTopicsRequest,
    DescribeConfigsRequest, DescribeGroupsRequest, DescribeLogDirsRequest, GroupId,
    IncrementalAlterConfigsRequest, ListGroupsRequest, OffsetDeleteRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

pub mod cluster;
mod security;

pub use security::DEFAULT_ITERATIONS;

pub use cluster::{
    BrokerDescription, BrokerReplicaCounts, ClusterDescription, ClusterSource, FollowerLag,
    QuorumDescription, QuorumEndpoint, QuorumReplica,
};

use crate::client::Client;
use crate::consumer::assignor::decode_assignment;
use crate::error::{Error, Result};
use crate::offsets::{self, CommitIdentity, ListedOffset};
use crate::types::{OffsetSpec, TopicPartition};

/// A topic to create.
#[derive(Debug, Clone)]
pub struct NewTopic {
    pub name: String,
    /// `None`: the broker's `num.partitions`.
    pub partitions: Option<i32>,
    /// `None`: the broker's `default.replication.factor`.
    pub replication_factor: Option<i16>,
    /// Topic-level configs, e.g. `retention.ms`.
    pub configs: Vec<(String, String)>,
}

impl NewTopic {
    pub fn new(name: impl Into<String>) -> Self {
        NewTopic {
            name: name.into(),
            partitions: None,
            replication_factor: None,
            configs: Vec::new(),
        }
    }
}

/// One topic in [`Admin::list_topics`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicListing {
    pub name: String,
    pub id: Uuid,
    pub partitions: usize,
    pub internal: bool,
}

/// One partition in [`Admin::describe_topic`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionDescription {
    pub partition: i32,
    /// The leader's broker id; `None` while the partition has no leader.
    pub leader: Option<i32>,
    /// Bumped by the controller at every leader change; `None` when the broker reports
    /// none (-1, and always before Metadata v7).
    pub leader_epoch: Option<i32>,
    /// Every broker that holds a copy, the preferred leader first.
    pub replicas: Vec<i32>,
    /// The in-sync replicas: those caught up with the leader.
    pub isr: Vec<i32>,
    /// Replicas whose log dir is offline (a failed disk), so they hold nothing readable.
    pub offline_replicas: Vec<i32>,
    /// The log start offset (earliest offset still stored).
    pub start_offset: i64,
    /// The log end offset (high watermark).
    pub end_offset: i64,
    /// Bytes on disk, when the broker answers DescribeLogDirs.
    pub size_bytes: Option<i64>,
}

impl PartitionDescription {
    /// Fewer replicas in sync than there are replicas (kafka-topics.sh's
    /// `--under-replicated-partitions`).
    pub fn is_under_replicated(&self) -> bool {
        self.isr.len() < self.replicas.len()
    }
}

/// What [`Admin::describe_topic`] returns.
#[derive(Debug, Clone)]
pub struct TopicDescription {
    pub name: String,
    pub id: Uuid,
    pub internal: bool,
    pub partitions: Vec<PartitionDescription>,
    pub configs: Vec<ConfigEntry>,
    /// False when the broker does not support DescribeLogDirs (sizes are then `None`).
    pub sizes_known: bool,
}

/// Something that has configs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigResource {
    Topic(String),
    Broker(i32),
}

impl ConfigResource {
    fn wire(&self) -> (i8, String) {
        match self {
            ConfigResource::Topic(name) => (2, name.clone()),
            ConfigResource::Broker(id) => (4, id.to_string()),
        }
    }

    fn describe(&self) -> String {
        match self {
            ConfigResource::Topic(name) => format!("topic {name:?}"),
            ConfigResource::Broker(id) => format!("broker {id}"),
        }
    }
}

/// Where a config value comes from (Kafka's `ConfigSource`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    /// Set on the topic itself.
    Topic,
    DynamicBroker,
    DynamicDefaultBroker,
    /// The broker's configuration file.
    StaticBroker,
    /// Kafka's built-in default.
    Default,
    Other(i8),
}

impl ConfigSource {
    fn from_wire(source: i8) -> ConfigSource {
        match source {
            1 => ConfigSource::Topic,
            2 => ConfigSource::DynamicBroker,
            3 => ConfigSource::DynamicDefaultBroker,
            4 => ConfigSource::StaticBroker,
            5 => ConfigSource::Default,
            other => ConfigSource::Other(other),
        }
    }
}

/// One config value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    pub name: String,
    /// `None` for sensitive values and unset ones.
    pub value: Option<String>,
    pub source: ConfigSource,
    pub read_only: bool,
    pub sensitive: bool,
}

/// One change for [`Admin::alter_configs`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlterConfigOp {
    Set(String, String),
    /// Back to the default.
    Delete(String),
    /// Add to a list-valued config.
    Append(String, String),
    /// Remove from a list-valued config.
    Subtract(String, String),
}

/// One group in [`Admin::list_groups`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    pub group_id: String,
    /// `consumer` for consumer groups.
    pub protocol_type: String,
    /// `Stable`, `Empty`, ... when the broker reports it.
    pub state: Option<String>,
}

/// One member in [`GroupDescription`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub assignment: Vec<TopicPartition>,
}

/// One partition's committed offset and lag in [`GroupDescription`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupOffset {
    pub partition: TopicPartition,
    pub committed: Option<i64>,
    /// The partition's log end offset (high watermark).
    pub end_offset: Option<i64>,
    /// `end_offset - committed`; for a partition with nothing committed, `end_offset -`
    /// its log start (what a consumer starting from the earliest offset has to read).
    pub lag: Option<i64>,
    /// The member the partition is assigned to.
    pub member: Option<String>,
}

/// What [`Admin::describe_group`] returns.
#[derive(Debug, Clone)]
pub struct GroupDescription {
    pub group_id: String,
    /// `Stable`, `PreparingRebalance`, `CompletingRebalance`, `Empty`, `Dead`.
    pub state: String,
    pub protocol_type: String,
    /// The assignor in use (`range`, `cooperative-sticky`).
    pub protocol: String,
    pub members: Vec<MemberDescription>,
    pub offsets: Vec<GroupOffset>,
}

/// Where [`Admin::reset_group_offsets`] moves a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetTo {
    Earliest,
    Latest,
    /// This offset, clamped to the partition's `[start, end]` like Kafka's tool does.
    Offset(i64),
    /// The first offset at or after this time (ms since the epoch); the end if none.
    Timestamp(i64),
}

/// One partition's change in [`Admin::reset_group_offsets`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetReset {
    pub partition: TopicPartition,
    pub previous: Option<i64>,
    pub new: i64,
    /// The partition's log end offset when the plan was made (lag after = end - new).
    pub log_end: i64,
}

/// What [`Admin::plan_group_offset_reset`] would do: [`Admin::apply_group_offset_reset`]
/// commits it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetResetPlan {
    pub group: String,
    /// Whether the group exists now (applying to a new one creates its offsets).
    pub group_exists: bool,
    pub changes: Vec<OffsetReset>,
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
}

fn millis(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}

/// The admin API; see the module docs.
#[derive(Debug, Clone)]
pub struct Admin {
    client: Client,
}

impl Admin {
    pub fn new(client: Client) -> Admin {
        Admin { client }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Creates topics and waits until their metadata is visible.
    pub async fn create_topics(&self, topics: &[NewTopic]) -> Result<()> {
        self.client
            .retry("create topics", || self.create_topics_once(topics))
            .await?;
        for topic in topics {
            let deadline = Instant::now() + self.client.config().api_timeout;
            loop {
                match self.client.fetch_topic(&topic.name, false).await {
                    Ok(info)
                        if info.available_partitions().count() == info.partitions.len()
                            && !info.partitions.is_empty() =>
                    {
                        break
                    }
                    Ok(_) | Err(Error::UnknownTopic { .. }) if Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Ok(_) => break,
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    async fn create_topics_once(&self, topics: &[NewTopic]) -> Result<()> {
        let connection = self.client.controller().await?;
        let version = connection.version::<CreateTopicsRequest>()?;
        let request = CreateTopicsRequest::default()
            .with_timeout_ms(millis(self.client.config().request_timeout))
            .with_topics(
                topics
                    .iter()
                    .map(|t| {
                        CreatableTopic::default()
                            .with_name(topic_name(&t.name))
                            .with_num_partitions(t.partitions.unwrap_or(-1))
                            .with_replication_factor(t.replication_factor.unwrap_or(-1))
                            .with_configs(
                                t.configs
                                    .iter()
                                    .map(|(k, v)| {
                                        CreatableTopicConfig::default()
                                            .with_name(StrBytes::from_string(k.clone()))
                                            .with_value(Some(StrBytes::from_string(v.clone())))
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            );
        let response = connection.send(&request, version).await?;
        for topic in &topics.iter().map(|t| t.name.as_str()).collect::<Vec<_>>() {
            let answer = response
                .topics
                .iter()
                .find(|r| r.name.0.as_str() == *topic)
                .ok_or_else(|| {
                    Error::protocol(
                        "CreateTopics",
                        connection.addr(),
                        format!("the answer does not mention topic {topic:?}"),
                    )
                })?;
            Error::check(
                answer.error_code,
                || format!("create topic {topic:?}"),
                answer.error_message.as_ref(),
            )?;
        }
        Ok(())
    }

    /// Deletes topics.
    pub async fn delete_topics(&self, topics: &[String]) -> Result<()> {
        self.client
            .retry("delete topics", || async {
                let connection = self.client.controller().await?;
                let version = connection.version::<DeleteTopicsRequest>()?;
                let mut request = DeleteTopicsRequest::default()
                    .with_timeout_ms(millis(self.client.config().request_timeout));
                if version >= 6 {
                    request.topics = topics
                        .iter()
                        .map(|t| DeleteTopicState::default().with_name(Some(topic_name(t))))
                        .collect();
                } else {
                    request.topic_names = topics.iter().map(|t| topic_name(t)).collect();
                }
                let response = connection.send(&request, version).await?;
                for topic in topics {
                    let answer = response
                        .responses
                        .iter()
                        .find(|r| r.name.as_ref().is_some_and(|n| n.0.as_str() == topic))
                        .ok_or_else(|| {
                            Error::protocol(
                                "DeleteTopics",
                                connection.addr(),
                                format!("the answer does not mention topic {topic:?}"),
                            )
                        })?;
                    if answer.error_code == ResponseError::UnknownTopicOrPartition.code() {
                        return Err(Error::UnknownTopic {
                            topic: topic.clone(),
                        });
                    }
                    Error::check(
                        answer.error_code,
                        || format!("delete topic {topic:?}"),
                        answer.error_message.as_ref(),
                    )?;
                }
                Ok(())
            })
            .await?;
        for topic in topics {
            self.client.invalidate_topic(topic);
        }
        Ok(())
    }

    /// All topics, sorted by name.
    pub async fn list_topics(&self, include_internal: bool) -> Result<Vec<TopicListing>> {
        self.client
            .retry("list topics", || self.client.refresh_metadata(None, false))
            .await?;
        let mut topics: Vec<TopicListing> = self.client.with_metadata(|m| {
            m.topics
                .values()
                .filter(|t| include_internal || !t.internal)
                .map(|t| TopicListing {
                    name: t.name.clone(),
                    id: t.id,
                    partitions: t.partitions.len(),
                    internal: t.internal,
                })
                .collect()
        });
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(topics)
    }

    /// Partitions with leaders, replicas, ISR, offsets and sizes, and the topic's configs.
    pub async fn describe_topic(&self, topic: &str) -> Result<TopicDescription> {
        let info = self
            .client
            .retry("describe topic", || self.client.fetch_topic(topic, false))
            .await?;
        let tps: Vec<TopicPartition> = info
            .partitions
            .iter()
            .map(|p| TopicPartition::new(topic, p.partition))
            .collect();
        let starts = self.list_offsets(&tps, OffsetSpec::Earliest).await?;
        let ends = self.list_offsets(&tps, OffsetSpec::Latest).await?;
        let configs = self
            .describe_configs(&ConfigResource::Topic(topic.to_owned()))
            .await?;
        let sizes = self.partition_sizes(topic, &info).await?;
        let partitions = info
            .partitions
            .iter()
            .map(|p| {
                let tp = TopicPartition::new(topic, p.partition);
                PartitionDescription {
                    partition: p.partition,
                    leader: p.leader,
                    leader_epoch: Some(p.leader_epoch).filter(|&e| e >= 0),
                    replicas: p.replicas.clone(),
                    isr: p.isr.clone(),
                    offline_replicas: p.offline.clone(),
                    start_offset: starts.get(&tp).map_or(-1, |o| o.offset),
                    end_offset: ends.get(&tp).map_or(-1, |o| o.offset),
                    size_bytes: sizes.as_ref().and_then(|s| s.get(&p.partition).copied()),
                }
            })
            .collect();
        Ok(TopicDescription {
            name: info.name.clone(),
            id: info.id,
            internal: info.internal,
            partitions,
            configs,
            sizes_known: sizes.is_some(),
        })
    }

    /// Partition sizes from DescribeLogDirs on each leader; `None` if a broker does not
    /// support the request. A leader that cannot be reached or refuses leaves its
    /// partitions out.
    async fn partition_sizes(
        &self,
        topic: &str,
        info: &crate::metadata::TopicInfo,
    ) -> Result<Option<HashMap<i32, i64>>> {
        let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        for p in &info.partitions {
            if let Some(leader) = p.leader {
                by_leader.entry(leader).or_default().push(p.partition);
            }
        }
        let mut sizes = HashMap::new();
        for (leader, partitions) in by_leader {
            // A leader that cannot be reached (it just died, the metadata is moving) leaves
            // its partitions' sizes unknown rather than failing the whole description.
            let Ok(connection) = self.client.broker(leader).await else {
                continue;
            };
            let Ok(version) = connection.version::<DescribeLogDirsRequest>() else {
                return Ok(None);
            };
            let request = DescribeLogDirsRequest::default().with_topics(Some(vec![
                DescribableLogDirTopic::default()
                    .with_topic(topic_name(topic))
                    .with_partitions(partitions.clone()),
            ]));
            let Ok(response) = connection.send(&request, version).await else {
                continue;
            };
            if response.error_code != 0 {
                continue;
            }
            for dir in &response.results {
                if dir.error_code != 0 {
                    continue; // an offline log dir holds nothing readable
                }
                for t in dir.topics.iter().filter(|t| t.name.0.as_str() == topic) {
                    for p in t.partitions.iter().filter(|p| !p.is_future_key) {
                        if partitions.contains(&p.partition_index) {
                            *sizes.entry(p.partition_index).or_insert(0) += p.partition_size;
                        }
                    }
                }
            }
        }
        Ok(Some(sizes))
    }

    /// Grows a topic to `total` partitions.
    pub async fn create_partitions(&self, topic: &str, total: i32) -> Result<()> {
        self.client
            .retry("create partitions", || async {
                let connection = self.client.controller().await?;
                let version = connection.version::<CreatePartitionsRequest>()?;
                let request = CreatePartitionsRequest::default()
                    .with_timeout_ms(millis(self.client.config().request_timeout))
                    .with_topics(vec![CreatePartitionsTopic::default()
                        .with_name(topic_name(topic))
                        .with_count(total)
                        .with_assignments(None)]);
                let response = connection.send(&request, version).await?;
                let answer = response.results.first().ok_or_else(|| {
                    Error::protocol("CreatePartitions", connection.addr(), "empty answer")
                })?;
                Error::check(
                    answer.error_code,
                    || format!("create partitions of topic {topic:?}"),
                    answer.error_message.as_ref(),
                )
            })
            .await?;
        self.client.invalidate_topic(topic);
        Ok(())
    }

    /// The configs of a topic or broker, sorted by name.
    pub async fn describe_configs(&self, resource: &ConfigResource) -> Result<Vec<ConfigEntry>> {
        self.client
            .retry("describe configs", || async {
                let connection = match resource {
                    ConfigResource::Broker(id) => self.client.broker(*id).await?,
                    ConfigResource::Topic(_) => self.client.any_broker().await?,
                };
                let version = connection.version::<DescribeConfigsRequest>()?;
                let (kind, name) = resource.wire();
                let request = DescribeConfigsRequest::default().with_resources(vec![
                    DescribeConfigsResource::default()
                        .with_resource_type(kind)
                        .with_resource_name(StrBytes::from_string(name))
                        .with_configuration_keys(None),
                ]);
                let response = connection.send(&request, version).await?;
                let result = response.results.first().ok_or_else(|| {
                    Error::protocol("DescribeConfigs", connection.addr(), "empty answer")
                })?;
                if result.error_code == ResponseError::UnknownTopicOrPartition.code() {
                    if let ConfigResource::Topic(topic) = resource {
                        return Err(Error::UnknownTopic {
                            topic: topic.clone(),
                        });
                    }
                }
                Error::check(
                    result.error_code,
                    || format!("describe configs of {}", resource.describe()),
                    result.error_message.as_ref(),
                )?;
                let mut entries: Vec<ConfigEntry> = result
                    .configs
                    .iter()
                    .map(|c| ConfigEntry {
                        name: c.name.as_str().to_owned(),
                        value: c.value.as_ref().map(|v| v.as_str().to_owned()),
                        source: ConfigSource::from_wire(c.config_source),
                        read_only: c.read_only,
                        sensitive: c.is_sensitive,
                    })
                    .collect();
                entries.sort_by(|a, b| a.name.cmp(&b.name));
                Ok(entries)
            })
            .await
    }

    /// Changes configs with IncrementalAlterConfigs.
    pub async fn alter_configs(
        &self,
        resource: &ConfigResource,
        ops: &[AlterConfigOp],
    ) -> Result<()> {
        self.client
            .retry("alter configs", || async {
                let connection = match resource {
                    ConfigResource::Broker(id) => self.client.broker(*id).await?,
                    ConfigResource::Topic(_) => self.client.controller().await?,
                };
                let version = connection.version::<IncrementalAlterConfigsRequest>()?;
                let (kind, name) = resource.wire();
                let configs = ops
                    .iter()
                    .map(|op| {
                        let (operation, key, value) = match op {
                            AlterConfigOp::Set(k, v) => (0, k, Some(v)),
                            AlterConfigOp::Delete(k) => (1, k, None),
                            AlterConfigOp::Append(k, v) => (2, k, Some(v)),
                            AlterConfigOp::Subtract(k, v) => (3, k, Some(v)),
                        };
                        AlterableConfig::default()
                            .with_name(StrBytes::from_string(key.clone()))
                            .with_config_operation(operation)
                            .with_value(value.map(|v| StrBytes::from_string(v.clone())))
                    })
                    .collect();
                let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
                    AlterConfigsResource::default()
                        .with_resource_type(kind)
                        .with_resource_name(StrBytes::from_string(name))
                        .with_configs(configs),
                ]);
                let response = connection.send(&request, version).await?;
                let result = response.responses.first().ok_or_else(|| {
                    Error::protocol("IncrementalAlterConfigs", connection.addr(), "empty answer")
                })?;
                Error::check(
                    result.error_code,
                    || format!("alter configs of {}", resource.describe()),
                    result.error_message.as_ref(),
                )
            })
            .await
    }

    /// Offsets for partitions: earliest, latest or by time.
    pub async fn list_offsets(
        &self,
        partitions: &[TopicPartition],
        spec: OffsetSpec,
    ) -> Result<HashMap<TopicPartition, ListedOffset>> {
        let specs: Vec<(TopicPartition, OffsetSpec)> =
            partitions.iter().map(|tp| (tp.clone(), spec)).collect();
        offsets::list_offsets(&self.client, &specs).await
    }

    /// Every consumer group known to any broker, sorted by id.
    pub async fn list_groups(&self) -> Result<Vec<GroupListing>> {
        self.client
            .retry("list groups", || {
                self.client.refresh_metadata(Some(&[]), false)
            })
            .await?;
        let brokers: Vec<i32> = self
            .client
            .with_metadata(|m| m.brokers.keys().copied().collect());
        let mut groups: BTreeMap<String, GroupListing> = BTreeMap::new();
        for broker in brokers {
            let listed = self
                .client
                .retry("list groups", || async {
                    let connection = self.client.broker(broker).await?;
                    let version = connection.version::<ListGroupsRequest>()?;
                    let response = connection
                        .send(&ListGroupsRequest::default(), version)
                        .await?;
                    Error::check(response.error_code, || "list groups".to_owned(), None)?;
                    Ok((response, version))
                })
                .await?;
            let (response, version) = listed;
            for g in response.groups {
                let listing = GroupListing {
                    group_id: g.group_id.0.as_str().to_owned(),
                    protocol_type: g.protocol_type.as_str().to_owned(),
                    state: (version >= 4).then(|| g.group_state.as_str().to_owned()),
                };
                groups.insert(listing.group_id.clone(), listing);
            }
        }
        Ok(groups.into_values().collect())
    }

    /// State, members with their assignments, committed offsets and lag of a group.
    pub async fn describe_group(&self, group: &str) -> Result<GroupDescription> {
        let described = self
            .client
            .retry("describe group", || async {
                let result = self.describe_group_once(group).await;
                self.forget_coordinator_on_move(group, &result);
                result
            })
            .await?;
        let (state, protocol_type, protocol, members) = described;
        let committed = offsets::fetch_committed(&self.client, group, None).await?;
        let mut partitions: Vec<TopicPartition> = committed.keys().cloned().collect();
        let owner: HashMap<&TopicPartition, &str> = members
            .iter()
            .flat_map(|m| {
                m.assignment
                    .iter()
                    .map(move |tp| (tp, m.member_id.as_str()))
            })
            .collect();
        for tp in owner.keys() {
            if !committed.contains_key(*tp) {
                partitions.push((*tp).clone());
            }
        }
        // Every partition of the topics the group reads (committed to, or assigned), not
        // only those with a commit: a partition nobody committed to is lag too.
        let topics: std::collections::BTreeSet<String> =
            partitions.iter().map(|tp| tp.topic.clone()).collect();
        for topic in &topics {
            if let Ok(info) = self.client.topic(topic).await {
                for p in &info.partitions {
                    let tp = TopicPartition::new(topic, p.partition);
                    if !partitions.contains(&tp) {
                        partitions.push(tp);
                    }
                }
            }
        }
        partitions.sort();
        // Partitions of deleted topics have no end offset; look up the others.
        let mut live = Vec::new();
        for tp in &partitions {
            if let Ok(info) = self.client.topic(&tp.topic).await {
                if info.partition(tp.partition).is_some() {
                    live.push(tp.clone());
                }
            }
        }
        let ends = self.list_offsets(&live, OffsetSpec::Latest).await?;
        let uncommitted: Vec<TopicPartition> = live
            .iter()
            .filter(|tp| committed.get(*tp).copied().flatten().is_none())
            .cloned()
            .collect();
        let starts = self
            .list_offsets(&uncommitted, OffsetSpec::Earliest)
            .await?;
        let offsets = partitions
            .iter()
            .map(|tp| {
                let committed = committed.get(tp).copied().flatten();
                let end = ends.get(tp).map(|o| o.offset);
                let from = committed.or_else(|| starts.get(tp).map(|o| o.offset));
                GroupOffset {
                    partition: tp.clone(),
                    committed,
                    end_offset: end,
                    lag: from.zip(end).map(|(c, e)| (e - c).max(0)),
                    member: owner.get(tp).map(|m| (*m).to_owned()),
                }
            })
            .collect();
        Ok(GroupDescription {
            group_id: group.to_owned(),
            state,
            protocol_type,
            protocol,
            members,
            offsets,
        })
    }

    async fn describe_group_once(
        &self,
        group: &str,
    ) -> Result<(String, String, String, Vec<MemberDescription>)> {
        let (_, connection) = self.client.group_coordinator(group).await?;
        let version = connection.version::<DescribeGroupsRequest>()?;
        let request = DescribeGroupsRequest::default()
            .with_groups(vec![GroupId(StrBytes::from_string(group.to_owned()))]);
        let response = connection.send(&request, version).await?;
        let g = response.groups.first().ok_or_else(|| {
            Error::protocol(
                "DescribeGroups",
                connection.addr(),
                "the answer lists no group",
            )
        })?;
        Error::check(
            g.error_code,
            || format!("describe group {group:?}"),
            g.error_message.as_ref(),
        )?;
        let consumer = g.protocol_type.as_str() == "consumer";
        let members = g
            .members
            .iter()
            .map(|m| MemberDescription {
                member_id: m.member_id.as_str().to_owned(),
                group_instance_id: m.group_instance_id.as_ref().map(|i| i.as_str().to_owned()),
                client_id: m.client_id.as_str().to_owned(),
                client_host: m.client_host.as_str().to_owned(),
                assignment: if consumer {
                    decode_assignment(m.member_assignment.clone()).unwrap_or_default()
                } else {
                    Vec::new()
                },
            })
            .collect();
        Ok((
            g.group_state.as_str().to_owned(),
            g.protocol_type.as_str().to_owned(),
            g.protocol_data.as_str().to_owned(),
            members,
        ))
    }

    /// Deletes a group and its committed offsets (DeleteGroups). The group must have no
    /// active members (NON_EMPTY_GROUP otherwise); an unknown one is GROUP_ID_NOT_FOUND.
    pub async fn delete_group(&self, group: &str) -> Result<()> {
        self.client
            .retry("delete group", || async {
                let result = async {
                    let (_, connection) = self.client.group_coordinator(group).await?;
                    let version = connection.version::<DeleteGroupsRequest>()?;
                    let request = DeleteGroupsRequest::default()
                        .with_groups_names(vec![GroupId(StrBytes::from_string(group.to_owned()))]);
                    let response = connection.send(&request, version).await?;
                    let answer = response.results.first().ok_or_else(|| {
                        Error::protocol("DeleteGroups", connection.addr(), "empty answer")
                    })?;
                    Error::check(
                        answer.error_code,
                        || format!("delete group {group:?}"),
                        None,
                    )
                }
                .await;
                self.forget_coordinator_on_move(group, &result);
                result
            })
            .await
    }

    /// Deletes a group's committed offsets for every partition of `topic` (OffsetDelete);
    /// refused (GROUP_SUBSCRIBED_TO_TOPIC) while a member is subscribed to the topic.
    pub async fn delete_group_offsets(&self, group: &str, topic: &str) -> Result<usize> {
        let info = self.client.fetch_topic(topic, false).await?;
        let partitions: Vec<i32> = info.partitions.iter().map(|p| p.partition).collect();
        self.client
            .retry("delete group offsets", || async {
                let result = async {
                    let (_, connection) = self.client.group_coordinator(group).await?;
                    let version = connection.version::<OffsetDeleteRequest>()?;
                    let request = OffsetDeleteRequest::default()
                        .with_group_id(GroupId(StrBytes::from_string(group.to_owned())))
                        .with_topics(vec![OffsetDeleteRequestTopic::default()
                            .with_name(topic_name(topic))
                            .with_partitions(
                                partitions
                                    .iter()
                                    .map(|&p| {
                                        OffsetDeleteRequestPartition::default()
                                            .with_partition_index(p)
                                    })
                                    .collect(),
                            )]);
                    let response = connection.send(&request, version).await?;
                    let context = || format!("delete offsets of group {group:?} for {topic:?}");
                    Error::check(response.error_code, context, None)?;
                    for t in &response.topics {
                        for p in &t.partitions {
                            Error::check(p.error_code, context, None)?;
                        }
                    }
                    Ok(partitions.len())
                }
                .await;
                self.forget_coordinator_on_move(group, &result);
                result
            })
            .await
    }

    /// A coordinator that moved or is not ready: look it up again at the next try.
    fn forget_coordinator_on_move<T>(&self, group: &str, result: &Result<T>) {
        if let Err(e) = result {
            if matches!(
                e.kafka_error(),
                Some(ResponseError::NotCoordinator | ResponseError::CoordinatorNotAvailable)
            ) {
                self.client.invalidate_coordinator(group);
            }
        }
    }

    /// Moves the committed offsets of `group` for every partition of `topic`. The group
    /// must have no active members (stop its consumers first), as with Kafka's tool.
    pub async fn reset_group_offsets(
        &self,
        group: &str,
        topic: &str,
        to: ResetTo,
    ) -> Result<Vec<OffsetReset>> {
        let plan = self.plan_group_offset_reset(group, topic, to).await?;
        self.apply_group_offset_reset(&plan).await?;
        Ok(plan.changes)
    }

    /// The changes [`Admin::reset_group_offsets`] would make, without making them (Kafka's
    /// `--dry-run`). Fails if the group has active members.
    pub async fn plan_group_offset_reset(
        &self,
        group: &str,
        topic: &str,
        to: ResetTo,
    ) -> Result<OffsetResetPlan> {
        let group_exists = match self.describe_group_once(group).await {
            Ok((state, _, _, members)) => {
                if !members.is_empty() {
                    return Err(Error::InvalidArgument(format!(
                        "group {group:?} has {} active member(s) (state {state}); stop its \
                         consumers before resetting offsets",
                        members.len()
                    )));
                }
                state != "Dead"
            }
            Err(e) if e.kafka_error() == Some(ResponseError::GroupIdNotFound) => false,
            Err(e) => return Err(e),
        };
        let info = self.client.fetch_topic(topic, false).await?;
        let tps: Vec<TopicPartition> = info
            .partitions
            .iter()
            .map(|p| TopicPartition::new(topic, p.partition))
            .collect();
        let previous = offsets::fetch_committed(&self.client, group, Some(&tps)).await?;
        let starts = self.list_offsets(&tps, OffsetSpec::Earliest).await?;
        let ends = self.list_offsets(&tps, OffsetSpec::Latest).await?;
        let by_time = match to {
            ResetTo::Timestamp(ms) => {
                Some(self.list_offsets(&tps, OffsetSpec::Timestamp(ms)).await?)
            }
            _ => None,
        };
        let mut changes = Vec::new();
        for tp in &tps {
            let start = starts.get(tp).map_or(0, |o| o.offset);
            let end = ends.get(tp).map_or(0, |o| o.offset);
            let new = match to {
                ResetTo::Earliest => start,
                ResetTo::Latest => end,
                ResetTo::Offset(n) => n.clamp(start, end.max(start)),
                ResetTo::Timestamp(_) => by_time
                    .as_ref()
                    .and_then(|m| m.get(tp))
                    .map(|o| o.offset)
                    .filter(|&o| o >= 0)
                    .unwrap_or(end),
            };
            changes.push(OffsetReset {
                partition: tp.clone(),
                previous: previous.get(tp).copied().flatten(),
                new,
                log_end: end,
            });
        }
        Ok(OffsetResetPlan {
            group: group.to_owned(),
            group_exists,
            changes,
        })
    }

    /// Commits a plan of [`Admin::plan_group_offset_reset`] (the group must still have no
    /// active member: the broker refuses the commit otherwise).
    pub async fn apply_group_offset_reset(&self, plan: &OffsetResetPlan) -> Result<()> {
        let commits: Vec<(TopicPartition, i64)> = plan
            .changes
            .iter()
            .map(|c| (c.partition.clone(), c.new))
            .collect();
        offsets::commit(
            &self.client,
            &plan.group,
            &CommitIdentity::outside_group(),
            &commits,
        )
        .await
    }
}
