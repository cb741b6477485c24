//! The client's cached view of the cluster: brokers, the controller, and for each topic
//! its id and partitions with their leaders.
//!
//! [`Metadata::apply`] merges one Metadata response into the cache and is pure (no I/O),
//! so it is unit tested directly. The cache is refreshed by [`crate::Client`] when a
//! broker answers NOT_LEADER_OR_FOLLOWER, UNKNOWN_TOPIC_OR_PARTITION and similar errors,
//! when a connection fails, and when entries are older than `metadata_max_age`.
//!
//! Partitions are kept sorted by index; a broker answer that leaves gaps or repeats an
//! index is accepted (lookups search) rather than trusted to be dense.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::MetadataResponse;
use uuid::Uuid;

use crate::error::Error;

/// One broker as the cluster advertises it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    pub id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

impl BrokerInfo {
    /// `host:port`, ready for connecting.
    pub fn addr(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, self.port) // IPv6 literal
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// One partition of a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    pub partition: i32,
    /// The leader's broker id; `None` while there is no leader.
    pub leader: Option<i32>,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub offline: Vec<i32>,
    /// The partition-level error the broker reported, if any (LEADER_NOT_AVAILABLE...).
    pub error: Option<ResponseError>,
}

/// One topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    pub name: String,
    /// The topic id; nil when the broker does not report ids (Metadata < v10).
    pub id: Uuid,
    pub internal: bool,
    /// Sorted by partition index.
    pub partitions: Vec<PartitionInfo>,
}

impl TopicInfo {
    pub fn partition(&self, partition: i32) -> Option<&PartitionInfo> {
        self.partitions
            .binary_search_by_key(&partition, |p| p.partition)
            .ok()
            .and_then(|i| self.partitions.get(i))
    }

    /// Partitions with a leader right now.
    pub fn available_partitions(&self) -> impl Iterator<Item = &PartitionInfo> {
        self.partitions.iter().filter(|p| p.leader.is_some())
    }
}

/// The cluster view; see the module docs.
#[derive(Debug, Clone, Default)]
pub struct Metadata {
    pub cluster_id: Option<String>,
    pub controller_id: Option<i32>,
    pub brokers: BTreeMap<i32, BrokerInfo>,
    pub topics: HashMap<String, TopicInfo>,
    /// When each topic was last refreshed.
    refreshed: HashMap<String, Instant>,
    /// When the broker list was last refreshed.
    pub brokers_refreshed: Option<Instant>,
}

/// A per-topic problem found in a Metadata response.
#[derive(Debug, Clone)]
pub struct TopicProblem {
    pub topic: String,
    pub error: Error,
}

impl Metadata {
    /// Merges `response` into the cache. `requested` is the topic list asked for (`None`
    /// = all topics: topics absent from the answer are then dropped). Returns the topics
    /// the broker reported an error for (unknown topics are also removed from the cache).
    pub fn apply(
        &mut self,
        response: &MetadataResponse,
        requested: Option<&[String]>,
        now: Instant,
    ) -> Vec<TopicProblem> {
        self.cluster_id = response.cluster_id.as_ref().map(|c| c.as_str().to_owned());
        self.controller_id = Some(response.controller_id.0).filter(|&id| id >= 0);
        self.brokers = response
            .brokers
            .iter()
            .map(|b| {
                let info = BrokerInfo {
                    id: b.node_id.0,
                    host: b.host.as_str().to_owned(),
                    port: b.port,
                    rack: b.rack.as_ref().map(|r| r.as_str().to_owned()),
                };
                (info.id, info)
            })
            .collect();
        self.brokers_refreshed = Some(now);
        if requested.is_none() {
            let listed: std::collections::HashSet<&str> = response
                .topics
                .iter()
                .filter_map(|t| t.name.as_ref().map(|n| n.0.as_str()))
                .collect();
            self.topics.retain(|name, _| listed.contains(name.as_str()));
            self.refreshed
                .retain(|name, _| listed.contains(name.as_str()));
        }
        let mut problems = Vec::new();
        for topic in &response.topics {
            let Some(name) = topic.name.as_ref().map(|n| n.0.as_str().to_owned()) else {
                continue; // answers to by-id lookups, which this client does not make
            };
            match ResponseError::try_from_code(topic.error_code) {
                None => {}
                Some(ResponseError::UnknownTopicOrPartition) => {
                    self.topics.remove(&name);
                    self.refreshed.remove(&name);
                    problems.push(TopicProblem {
                        error: Error::UnknownTopic {
                            topic: name.clone(),
                        },
                        topic: name,
                    });
                    continue;
                }
                Some(error) => {
                    // LEADER_NOT_AVAILABLE for a topic being created, authorization
                    // failures...: keep what we knew, report the problem.
                    problems.push(TopicProblem {
                        error: Error::broker(format!("metadata of topic {name:?}"), error, None),
                        topic: name,
                    });
                    continue;
                }
            }
            let mut partitions: Vec<PartitionInfo> = topic
                .partitions
                .iter()
                .map(|p| PartitionInfo {
                    partition: p.partition_index,
                    leader: Some(p.leader_id.0).filter(|&id| id >= 0),
                    leader_epoch: p.leader_epoch,
                    replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                    isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                    offline: p.offline_replicas.iter().map(|b| b.0).collect(),
                    error: ResponseError::try_from_code(p.error_code),
                })
                .collect();
            partitions.sort_by_key(|p| p.partition);
            partitions.dedup_by_key(|p| p.partition);
            let info = TopicInfo {
                name: name.clone(),
                id: topic.topic_id,
                internal: topic.is_internal,
                partitions,
            };
            self.refreshed.insert(name.clone(), now);
            self.topics.insert(name, info);
        }
        problems
    }

    pub fn topic(&self, name: &str) -> Option<&TopicInfo> {
        self.topics.get(name)
    }

    /// The leader's broker id for a partition, if known.
    pub fn leader(&self, topic: &str, partition: i32) -> Option<i32> {
        self.topic(topic)?.partition(partition)?.leader
    }

    /// When `topic` was last refreshed.
    pub fn refreshed_at(&self, topic: &str) -> Option<Instant> {
        self.refreshed.get(topic).copied()
    }

    /// The topic whose id is `id`.
    pub fn topic_by_id(&self, id: Uuid) -> Option<&TopicInfo> {
        if id.is_nil() {
            return None;
        }
        self.topics.values().find(|t| t.id == id)
    }

    /// Forgets a topic so the next lookup refreshes it.
    pub fn invalidate(&mut self, topic: &str) {
        self.refreshed.remove(topic);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::metadata_response::{
        MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
    };
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::protocol::StrBytes;

    fn topic(name: &str, error: i16, partitions: &[(i32, i32)]) -> MetadataResponseTopic {
        MetadataResponseTopic::default()
            .with_name(Some(TopicName(StrBytes::from_string(name.to_owned()))))
            .with_error_code(error)
            .with_topic_id(Uuid::from_u128(7))
            .with_partitions(
                partitions
                    .iter()
                    .map(|&(index, leader)| {
                        MetadataResponsePartition::default()
                            .with_partition_index(index)
                            .with_leader_id(leader.into())
                    })
                    .collect(),
            )
    }

    fn response(topics: Vec<MetadataResponseTopic>) -> MetadataResponse {
        MetadataResponse::default()
            .with_controller_id(1.into())
            .with_brokers(vec![MetadataResponseBroker::default()
                .with_node_id(1.into())
                .with_host(StrBytes::from_static_str("127.0.0.1"))
                .with_port(9092)])
            .with_topics(topics)
    }

    #[test]
    fn apply_merges_topics_and_reports_problems() {
        let now = Instant::now();
        let mut metadata = Metadata::default();
        let problems = metadata.apply(
            &response(vec![
                topic("a", 0, &[(1, 1), (0, 1), (2, -1)]),
                topic("b", 5, &[]),
                topic("gone", 3, &[]),
            ]),
            Some(&["a".into(), "b".into(), "gone".into()]),
            now,
        );
        assert_eq!(metadata.brokers[&1].addr(), "127.0.0.1:9092");
        assert_eq!(metadata.controller_id, Some(1));
        let a = metadata.topic("a").unwrap();
        let indexes: Vec<i32> = a.partitions.iter().map(|p| p.partition).collect();
        assert_eq!(indexes, [0, 1, 2]);
        assert_eq!(metadata.leader("a", 1), Some(1));
        assert_eq!(metadata.leader("a", 2), None);
        assert_eq!(metadata.leader("a", 9), None);
        assert_eq!(a.available_partitions().count(), 2);
        assert_eq!(metadata.topic_by_id(Uuid::from_u128(7)).unwrap().name, "a");
        assert_eq!(problems.len(), 2);
        assert!(matches!(problems[1].error, Error::UnknownTopic { .. }));
        assert!(metadata.topic("gone").is_none());

        // A full refresh drops topics that no longer exist.
        metadata.apply(&response(vec![topic("c", 0, &[(0, 1)])]), None, now);
        assert!(metadata.topic("a").is_none());
        assert!(metadata.topic("c").is_some());
    }

    #[test]
    fn ipv6_hosts_are_bracketed() {
        let broker = BrokerInfo {
            id: 1,
            host: "::1".into(),
            port: 9092,
            rack: None,
        };
        assert_eq!(broker.addr(), "[::1]:9092");
    }
}
