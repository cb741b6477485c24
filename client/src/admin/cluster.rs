//! The cluster itself: its brokers ([`Admin::describe_cluster`]) and its metadata quorum
//! ([`Admin::describe_quorum`]).
//!
//! - DescribeCluster (API 60) names the cluster, the controller id the broker gives
//!   clients, and the brokers with their endpoints and racks; from v2 it can also list
//!   fenced brokers (`include_fenced_brokers`), marked as such. A broker without
//!   DescribeCluster (Kafka before 2.8, Sluice before its cluster work) is asked with
//!   Metadata instead, which lists the same live brokers, as Kafka's AdminClient does.
//! - DescribeQuorum (API 55) describes the KRaft metadata log, partition 0 of
//!   `__cluster_metadata`: the active controller (the quorum leader), its epoch, the high
//!   watermark, and every voter and observer with how far its copy of the log has got.
//!   A Kafka broker forwards it to the active controller, so any broker can be asked.
//!
//! - DescribeLogDirs (API 35), sent to every live broker, gives each replica's
//!   `offset_lag`: summed over a broker's follower replicas it says how far behind its
//!   copies are ([`Admin::follower_lags`]). A Sluice follower measures it against the
//!   high watermark its leader last reported; a Kafka follower reports 0.
//!
//! The answers are turned into plain values by pure functions ([`cluster_from_response`],
//! [`quorum_from_response`]), unit tested without a broker.
//!
//! In KRaft mode the controller id that DescribeCluster and Metadata report is not the
//! quorum leader: it is a broker the client may send admin requests to (Kafka picks a
//! random live one, KIP-590 forwarding does the rest). The active controller is
//! [`QuorumDescription::leader_id`].

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
use kafka_protocol::messages::{
    DescribeClusterRequest, DescribeClusterResponse, DescribeLogDirsRequest,
    DescribeLogDirsResponse, DescribeQuorumRequest, DescribeQuorumResponse,
};
use uuid::Uuid;

use super::{topic_name, Admin};
use crate::error::{Error, Result};

/// The topic of the KRaft metadata log (one partition, 0).
pub const CLUSTER_METADATA_TOPIC: &str = "__cluster_metadata";

/// DescribeCluster's `endpoint_type` for broker endpoints (2 would be controllers).
const ENDPOINT_TYPE_BROKERS: i8 = 1;

/// One broker in [`ClusterDescription`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerDescription {
    pub id: i32,
    /// The advertised host of the listener the request came in on.
    pub host: String,
    pub port: i32,
    /// `broker.rack`, when set.
    pub rack: Option<String>,
    /// Fenced by the controller: registered, but not (or no longer) heartbeating within
    /// its session, so it leads nothing. Only ever true when
    /// [`ClusterDescription::includes_fenced`] is.
    pub fenced: bool,
}

/// Which request [`Admin::describe_cluster`] got its answer from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterSource {
    /// DescribeCluster at this version.
    DescribeCluster { version: i16 },
    /// Metadata, because the broker does not support DescribeCluster.
    Metadata,
}

/// What [`Admin::describe_cluster`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterDescription {
    /// `None` when the broker does not report one (Metadata before v2).
    pub cluster_id: Option<String>,
    /// The controller id the broker reports (see the module docs: in KRaft mode a broker
    /// to send admin requests to, not necessarily the quorum leader). `None`: unknown.
    pub controller_id: Option<i32>,
    /// Sorted by id.
    pub brokers: Vec<BrokerDescription>,
    /// Whether fenced brokers are listed (DescribeCluster v2+). When false, the list holds
    /// only live, unfenced brokers and fenced ones are missing from it.
    pub includes_fenced: bool,
    pub source: ClusterSource,
}

/// How many partition replicas one broker holds, from Metadata (every topic, internal
/// ones included): see [`Admin::broker_replica_counts`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BrokerReplicaCounts {
    /// Partitions it leads.
    pub leader: usize,
    /// Partitions it holds a follower replica of (a replica, not the leader).
    pub follower: usize,
    /// Of those follower replicas, the ones not in the ISR (behind the leader, or on a
    /// broker that is down).
    pub out_of_sync: usize,
}

/// Counts the replicas of every partition in `topics` per broker.
pub fn replica_counts<'a>(
    topics: impl IntoIterator<Item = &'a crate::metadata::TopicInfo>,
) -> BTreeMap<i32, BrokerReplicaCounts> {
    let mut counts: BTreeMap<i32, BrokerReplicaCounts> = BTreeMap::new();
    for p in topics.into_iter().flat_map(|t| t.partitions.iter()) {
        for &replica in &p.replicas {
            let c = counts.entry(replica).or_default();
            if p.leader == Some(replica) {
                c.leader += 1;
            } else {
                c.follower += 1;
                if !p.isr.contains(&replica) {
                    c.out_of_sync += 1;
                }
            }
        }
    }
    counts
}

/// How far one broker's follower replicas are behind their partitions' high watermarks,
/// in records (DescribeLogDirs' `offset_lag`): see [`Admin::follower_lags`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FollowerLag {
    /// Summed over its follower replicas.
    pub total: i64,
    /// The largest of one replica.
    pub max: i64,
}

/// Adds up the `offset_lag` of the replicas in `followed` (topic, partition) that a
/// broker's DescribeLogDirs answer lists. `None` when the broker refused the request.
pub fn follower_lag_from_response(
    response: &DescribeLogDirsResponse,
    followed: &BTreeSet<(String, i32)>,
) -> Option<FollowerLag> {
    if response.error_code != 0 {
        return None;
    }
    let mut lag = FollowerLag::default();
    // A log dir with an error (offline) lists nothing.
    for dir in response.results.iter().filter(|d| d.error_code == 0) {
        for topic in &dir.topics {
            for p in topic.partitions.iter().filter(|p| !p.is_future_key) {
                if followed.contains(&(topic.name.0.to_string(), p.partition_index)) {
                    let behind = p.offset_lag.max(0);
                    lag.total = lag.total.saturating_add(behind);
                    lag.max = lag.max.max(behind);
                }
            }
        }
    }
    Some(lag)
}

/// One voter or observer of the metadata quorum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumReplica {
    pub id: i32,
    /// The replica's metadata log directory id (KIP-853); `None` when not reported or
    /// zero (static quorums configured with `controller.quorum.voters`).
    pub directory_id: Option<Uuid>,
    /// How far its copy of the metadata log reaches; `None` when the leader does not
    /// know yet (Kafka answers -1).
    pub log_end_offset: Option<i64>,
    /// The leader's log end offset minus this replica's; 0 for the leader itself.
    /// `None` when either is unknown.
    pub lag: Option<i64>,
    /// When the leader last received a fetch from it (ms since the epoch, the leader's
    /// clock); `None` before DescribeQuorum v1 or when unknown.
    pub last_fetch_timestamp: Option<i64>,
    /// When it last had everything the leader had (ms since the epoch); `None` as above.
    pub last_caught_up_timestamp: Option<i64>,
}

/// One listener of a voter (DescribeQuorum v2+).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumEndpoint {
    /// The listener name, e.g. `CONTROLLER`.
    pub listener: String,
    pub host: String,
    pub port: u16,
}

/// What [`Admin::describe_quorum`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumDescription {
    /// The active controller; `None` during an election.
    pub leader_id: Option<i32>,
    pub leader_epoch: i32,
    /// The offset up to which the metadata log is committed.
    pub high_watermark: i64,
    /// Sorted by id.
    pub voters: Vec<QuorumReplica>,
    /// Brokers following the log without a vote; sorted by id.
    pub observers: Vec<QuorumReplica>,
    /// Listeners per voter id, sorted by id (DescribeQuorum v2+; empty before).
    pub endpoints: Vec<(i32, Vec<QuorumEndpoint>)>,
}

impl QuorumDescription {
    /// The largest lag of any voter or observer, if any is known.
    pub fn max_lag(&self) -> Option<i64> {
        self.voters
            .iter()
            .chain(&self.observers)
            .filter_map(|r| r.lag)
            .max()
    }

    /// The listeners of voter `id` (empty when not reported).
    pub fn endpoints_of(&self, id: i32) -> &[QuorumEndpoint] {
        self.endpoints
            .iter()
            .find(|(voter, _)| *voter == id)
            .map_or(&[], |(_, e)| e.as_slice())
    }
}

/// A [`ClusterDescription`] from a DescribeCluster answer received at `version`.
pub fn cluster_from_response(
    response: &DescribeClusterResponse,
    version: i16,
    addr: &str,
) -> Result<ClusterDescription> {
    Error::check(
        response.error_code,
        || format!("describe cluster at {addr}"),
        response.error_message.as_ref(),
    )?;
    let mut brokers: Vec<BrokerDescription> = response
        .brokers
        .iter()
        .map(|b| BrokerDescription {
            id: b.broker_id.0,
            host: b.host.as_str().to_owned(),
            port: b.port,
            rack: b.rack.as_ref().map(|r| r.as_str().to_owned()),
            fenced: version >= 2 && b.is_fenced,
        })
        .collect();
    brokers.sort_by_key(|b| b.id);
    brokers.dedup_by_key(|b| b.id);
    let cluster_id = response.cluster_id.as_str();
    Ok(ClusterDescription {
        cluster_id: (!cluster_id.is_empty()).then(|| cluster_id.to_owned()),
        controller_id: Some(response.controller_id.0).filter(|&id| id >= 0),
        brokers,
        includes_fenced: version >= 2,
        source: ClusterSource::DescribeCluster { version },
    })
}

/// A [`QuorumDescription`] from a DescribeQuorum answer: the entry for partition 0 of
/// `__cluster_metadata`, with the lag of every replica worked out.
pub fn quorum_from_response(
    response: &DescribeQuorumResponse,
    addr: &str,
) -> Result<QuorumDescription> {
    let context = || format!("describe quorum at {addr}");
    Error::check(
        response.error_code,
        context,
        response.error_message.as_ref(),
    )?;
    let partition = response
        .topics
        .iter()
        .filter(|t| t.topic_name.0.as_str() == CLUSTER_METADATA_TOPIC)
        .flat_map(|t| &t.partitions)
        .find(|p| p.partition_index == 0)
        .ok_or_else(|| {
            Error::protocol(
                "DescribeQuorum",
                addr,
                format!("the answer does not describe {CLUSTER_METADATA_TOPIC}-0"),
            )
        })?;
    Error::check(
        partition.error_code,
        context,
        partition.error_message.as_ref(),
    )?;
    let leader_id = Some(partition.leader_id.0).filter(|&id| id >= 0);
    let known = |v: i64| Some(v).filter(|&v| v >= 0);
    // The leader's own log end offset is the reference every lag is measured from.
    let leader_end = leader_id.and_then(|leader| {
        partition
            .current_voters
            .iter()
            .find(|r| r.replica_id.0 == leader)
            .and_then(|r| known(r.log_end_offset))
    });
    let replicas =
        |states: &[kafka_protocol::messages::describe_quorum_response::ReplicaState]| {
            let mut replicas: Vec<QuorumReplica> = states
                .iter()
                .map(|r| {
                    let log_end_offset = known(r.log_end_offset);
                    QuorumReplica {
                        id: r.replica_id.0,
                        directory_id: Some(r.replica_directory_id).filter(|id| !id.is_nil()),
                        log_end_offset,
                        lag: leader_end.zip(log_end_offset).map(|(l, e)| l - e),
                        last_fetch_timestamp: known(r.last_fetch_timestamp),
                        last_caught_up_timestamp: known(r.last_caught_up_timestamp),
                    }
                })
                .collect();
            replicas.sort_by_key(|r| r.id);
            replicas
        };
    let mut endpoints: Vec<(i32, Vec<QuorumEndpoint>)> = response
        .nodes
        .iter()
        .map(|n| {
            let listeners = n
                .listeners
                .iter()
                .map(|l| QuorumEndpoint {
                    listener: l.name.as_str().to_owned(),
                    host: l.host.as_str().to_owned(),
                    port: l.port,
                })
                .collect();
            (n.node_id.0, listeners)
        })
        .collect();
    endpoints.sort_by_key(|(id, _)| *id);
    Ok(QuorumDescription {
        leader_id,
        leader_epoch: partition.leader_epoch,
        high_watermark: partition.high_watermark,
        voters: replicas(&partition.current_voters),
        observers: replicas(&partition.observers),
        endpoints,
    })
}

impl Admin {
    /// The cluster id, the controller id brokers report, and the brokers with their
    /// endpoints, racks and (DescribeCluster v2+) fenced state. Falls back to Metadata
    /// on a broker without DescribeCluster; see [`ClusterDescription::source`].
    pub async fn describe_cluster(&self) -> Result<ClusterDescription> {
        let client = self.client();
        let described = client
            .retry("describe cluster", || async {
                let connection = client.any_broker().await?;
                let Ok(version) = connection.version::<DescribeClusterRequest>() else {
                    return Ok(None);
                };
                let mut request = DescribeClusterRequest::default();
                if version >= 1 {
                    request.endpoint_type = ENDPOINT_TYPE_BROKERS;
                }
                if version >= 2 {
                    request.include_fenced_brokers = true;
                }
                let response = connection.send(&request, version).await?;
                cluster_from_response(&response, version, connection.addr()).map(Some)
            })
            .await?;
        if let Some(description) = described {
            return Ok(description);
        }
        client
            .retry("describe cluster", || {
                client.refresh_metadata(Some(&[]), false)
            })
            .await?;
        Ok(client.with_metadata(|m| ClusterDescription {
            cluster_id: m.cluster_id.clone(),
            controller_id: m.controller_id,
            brokers: m
                .brokers
                .values()
                .map(|b| BrokerDescription {
                    id: b.id,
                    host: b.host.clone(),
                    port: b.port,
                    rack: b.rack.clone(),
                    fenced: false,
                })
                .collect(),
            includes_fenced: false,
            source: ClusterSource::Metadata,
        }))
    }

    /// Per broker, how many partitions it leads and follows (and how many of the
    /// followed ones are out of the ISR), over every topic in a fresh Metadata answer.
    /// Brokers that hold no replica are absent.
    pub async fn broker_replica_counts(&self) -> Result<BTreeMap<i32, BrokerReplicaCounts>> {
        let client = self.client();
        client
            .retry("count replicas", || client.refresh_metadata(None, false))
            .await?;
        Ok(client.with_metadata(|m| replica_counts(m.topics.values())))
    }

    /// Per live broker, how far its follower replicas are behind, from DescribeLogDirs
    /// sent to each (every topic, internal ones included). `None` for a broker that
    /// could not be asked (unreachable, or without DescribeLogDirs).
    pub async fn follower_lags(&self) -> Result<BTreeMap<i32, Option<FollowerLag>>> {
        let client = self.client();
        client
            .retry("describe replicas", || client.refresh_metadata(None, false))
            .await?;
        let (brokers, mut followed) = client.with_metadata(|m| {
            let mut followed: BTreeMap<i32, BTreeSet<(String, i32)>> = BTreeMap::new();
            for t in m.topics.values() {
                for p in &t.partitions {
                    for &r in p.replicas.iter().filter(|&&r| p.leader != Some(r)) {
                        followed
                            .entry(r)
                            .or_default()
                            .insert((t.name.clone(), p.partition));
                    }
                }
            }
            (m.brokers.keys().copied().collect::<Vec<i32>>(), followed)
        });
        let mut lags = BTreeMap::new();
        for id in brokers {
            let followed = followed.remove(&id).unwrap_or_default();
            let lag = if followed.is_empty() {
                Some(FollowerLag::default())
            } else {
                self.follower_lag_of(id, &followed).await
            };
            lags.insert(id, lag);
        }
        Ok(lags)
    }

    async fn follower_lag_of(
        &self,
        broker: i32,
        followed: &BTreeSet<(String, i32)>,
    ) -> Option<FollowerLag> {
        let connection = self.client().broker(broker).await.ok()?;
        let version = connection.version::<DescribeLogDirsRequest>().ok()?;
        let request = DescribeLogDirsRequest::default().with_topics(None);
        let response = connection.send(&request, version).await.ok()?;
        follower_lag_from_response(&response, followed)
    }

    /// The metadata quorum: active controller, epoch, high watermark, voters and
    /// observers with their lag. Fails with [`Error::UnsupportedApi`] (or a broker
    /// error for which [`Error::is_unsupported`] holds) when the cluster cannot answer
    /// DescribeQuorum.
    pub async fn describe_quorum(&self) -> Result<QuorumDescription> {
        let client = self.client();
        client
            .retry("describe quorum", || async {
                let connection = client.any_broker().await?;
                let version = connection.version::<DescribeQuorumRequest>()?;
                let request =
                    DescribeQuorumRequest::default().with_topics(vec![TopicData::default()
                        .with_topic_name(topic_name(CLUSTER_METADATA_TOPIC))
                        .with_partitions(vec![PartitionData::default().with_partition_index(0)])]);
                let response = connection.send(&request, version).await?;
                quorum_from_response(&response, connection.addr())
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::error::ResponseError;
    use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
    use kafka_protocol::messages::describe_quorum_response::{
        Listener, Node, PartitionData as QuorumPartition, ReplicaState, TopicData as QuorumTopic,
    };
    use kafka_protocol::protocol::StrBytes;

    fn broker(id: i32, rack: Option<&str>, fenced: bool) -> DescribeClusterBroker {
        DescribeClusterBroker::default()
            .with_broker_id(id.into())
            .with_host(StrBytes::from_string(format!("127.0.0.{id}")))
            .with_port(9092)
            .with_rack(rack.map(|r| StrBytes::from_string(r.to_owned())))
            .with_is_fenced(fenced)
    }

    #[test]
    fn cluster_answers_become_sorted_brokers_with_fenced_state_from_v2() {
        let response = DescribeClusterResponse::default()
            .with_cluster_id(StrBytes::from_static_str("abc"))
            .with_controller_id(2.into())
            .with_brokers(vec![
                broker(3, None, true),
                broker(1, Some("r1"), false),
                broker(2, None, false),
            ]);
        let v2 = cluster_from_response(&response, 2, "b:1").unwrap();
        assert_eq!(v2.cluster_id.as_deref(), Some("abc"));
        assert_eq!(v2.controller_id, Some(2));
        let ids: Vec<i32> = v2.brokers.iter().map(|b| b.id).collect();
        assert_eq!(ids, [1, 2, 3]);
        assert_eq!(v2.brokers[0].rack.as_deref(), Some("r1"));
        assert!(v2.brokers[2].fenced && !v2.brokers[1].fenced);
        assert!(v2.includes_fenced);
        assert_eq!(v2.source, ClusterSource::DescribeCluster { version: 2 });

        // Before v2 the flag is not on the wire: nothing is fenced, and that is said.
        let v1 = cluster_from_response(&response, 1, "b:1").unwrap();
        assert!(v1.brokers.iter().all(|b| !b.fenced));
        assert!(!v1.includes_fenced);

        let unknown = response.clone().with_controller_id((-1).into());
        assert_eq!(
            cluster_from_response(&unknown, 2, "b:1")
                .unwrap()
                .controller_id,
            None
        );
        let failed = response.with_error_code(ResponseError::ClusterAuthorizationFailed.code());
        let error = cluster_from_response(&failed, 2, "b:1").unwrap_err();
        assert_eq!(
            error.kafka_error(),
            Some(ResponseError::ClusterAuthorizationFailed)
        );
    }

    fn replica(id: i32, end: i64, fetch: i64) -> ReplicaState {
        ReplicaState::default()
            .with_replica_id(id.into())
            .with_log_end_offset(end)
            .with_last_fetch_timestamp(fetch)
            .with_last_caught_up_timestamp(fetch)
    }

    fn quorum(leader: i32, voters: Vec<ReplicaState>) -> DescribeQuorumResponse {
        DescribeQuorumResponse::default().with_topics(vec![
            QuorumTopic::default()
                .with_topic_name(topic_name("other"))
                .with_partitions(vec![QuorumPartition::default().with_leader_id(9.into())]),
            QuorumTopic::default()
                .with_topic_name(topic_name(CLUSTER_METADATA_TOPIC))
                .with_partitions(vec![QuorumPartition::default()
                    .with_partition_index(0)
                    .with_leader_id(leader.into())
                    .with_leader_epoch(4)
                    .with_high_watermark(100)
                    .with_current_voters(voters)
                    .with_observers(vec![replica(7, 90, 5)])]),
        ])
    }

    #[test]
    fn quorum_lag_is_measured_from_the_leaders_log_end() {
        let response = quorum(
            2,
            vec![replica(3, -1, -1), replica(2, 120, 10), replica(1, 117, 9)],
        )
        .with_nodes(vec![Node::default().with_node_id(1.into()).with_listeners(
            vec![Listener::default()
                .with_name(StrBytes::from_static_str("CONTROLLER"))
                .with_host(StrBytes::from_static_str("127.0.0.1"))
                .with_port(9093)],
        )]);
        let q = quorum_from_response(&response, "b:1").unwrap();
        assert_eq!(q.leader_id, Some(2));
        assert_eq!(q.leader_epoch, 4);
        assert_eq!(q.high_watermark, 100);
        let lags: Vec<(i32, Option<i64>)> = q.voters.iter().map(|r| (r.id, r.lag)).collect();
        assert_eq!(lags, [(1, Some(3)), (2, Some(0)), (3, None)]);
        assert_eq!(q.voters[2].last_fetch_timestamp, None);
        assert_eq!(q.voters[0].last_caught_up_timestamp, Some(9));
        assert_eq!(q.observers[0].lag, Some(30));
        assert_eq!(q.max_lag(), Some(30));
        assert_eq!(q.endpoints_of(1)[0].port, 9093);
        assert!(q.endpoints_of(2).is_empty());
    }

    #[test]
    fn quorum_without_a_leader_or_partition_is_not_guessed() {
        let q = quorum_from_response(&quorum(-1, vec![replica(1, 5, 1)]), "b:1").unwrap();
        assert_eq!(q.leader_id, None);
        assert_eq!(q.voters[0].lag, None);

        let empty = DescribeQuorumResponse::default();
        assert!(matches!(
            quorum_from_response(&empty, "b:1"),
            Err(Error::Protocol { .. })
        ));
        let refused = DescribeQuorumResponse::default()
            .with_error_code(ResponseError::UnsupportedVersion.code());
        let error = quorum_from_response(&refused, "b:1").unwrap_err();
        assert!(error.is_unsupported(), "{error}");
        let mut not_leader = quorum(1, vec![]);
        not_leader.topics[1].partitions[0].error_code = ResponseError::NotLeaderOrFollower.code();
        let error = quorum_from_response(&not_leader, "b:1").unwrap_err();
        assert!(error.is_retriable() && !error.is_unsupported(), "{error}");
    }

    #[test]
    fn follower_lag_adds_up_the_followed_replicas_only() {
        use kafka_protocol::messages::describe_log_dirs_response::{
            DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
        };
        let partition = |index: i32, lag: i64, future: bool| {
            DescribeLogDirsPartition::default()
                .with_partition_index(index)
                .with_offset_lag(lag)
                .with_is_future_key(future)
        };
        let topic = |name: &str, partitions| {
            DescribeLogDirsTopic::default()
                .with_name(topic_name(name))
                .with_partitions(partitions)
        };
        let dir = |error_code: i16, topics| {
            DescribeLogDirsResult::default()
                .with_error_code(error_code)
                .with_topics(topics)
        };
        let response = DescribeLogDirsResponse::default().with_results(vec![
            dir(
                0,
                vec![
                    // Partition 0 is led here: its lag does not count.
                    topic(
                        "a",
                        vec![
                            partition(0, 50, false),
                            partition(1, 7, false),
                            partition(2, -1, false),
                        ],
                    ),
                    topic("b", vec![partition(0, 3, false), partition(1, 9, true)]),
                ],
            ),
            dir(
                ResponseError::KafkaStorageError.code(),
                vec![topic("c", vec![partition(0, 100, false)])],
            ),
        ]);
        let followed: BTreeSet<(String, i32)> = [("a", 1), ("a", 2), ("b", 0), ("b", 1), ("c", 0)]
            .iter()
            .map(|(t, p)| ((*t).to_owned(), *p))
            .collect();
        assert_eq!(
            follower_lag_from_response(&response, &followed),
            Some(FollowerLag { total: 10, max: 7 }),
            "a-1 and b-0; not the led a-0, the future b-1, the negative a-2 or the offline dir"
        );
        let refused = DescribeLogDirsResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code());
        assert_eq!(follower_lag_from_response(&refused, &followed), None);
    }
}
