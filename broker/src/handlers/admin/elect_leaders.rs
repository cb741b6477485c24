//! ElectLeaders (API 43): move partitions' leadership back to their preferred replica, as
//! `kafka-leader-election` asks, with Kafka's answers (asked of Kafka 4.4):
//!
//! - a named partition whose leader is already its preferred replica (always so on a
//!   single node), or that has a leader for an unclean election, gets
//!   ELECTION_NOT_NEEDED; asked for every partition (`topic_partitions` null), those are
//!   left out of the answer;
//! - an unknown topic or partition gets UNKNOWN_TOPIC_OR_PARTITION;
//! - preferred election in a cluster: a partition whose preferred replica is in the ISR
//!   and on a usable broker is moved to it through the controller; one whose preferred
//!   replica is not gets PREFERRED_LEADER_NOT_AVAILABLE.
//!
//! Differences: the controller's election moves every partition it finds eligible, not
//! only the ones named (what `auto.leader.rebalance` would do at its next pass anyway).
//! An unclean election of a leaderless partition is not run on request: the answer is
//! ELIGIBLE_LEADERS_NOT_AVAILABLE, and `unclean.leader.election.enable` on the topic is
//! the way to allow one.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use sluice_metadata::image::MetadataImage;

use crate::cluster::ClusterNode;
use crate::state::BrokerState;

const PREFERRED: i8 = 0;
const UNCLEAN: i8 = 1;

/// What one partition's election comes to before anything is asked of the controller.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    /// The controller may move it to its preferred replica.
    Eligible,
    /// The answer: an error code (0: elected) and message.
    Done(i16, Option<String>),
}

/// The partitions named, or every partition this broker knows with `all` set.
fn wanted(
    state: &BrokerState,
    image: Option<&MetadataImage>,
    request: &ElectLeadersRequest,
) -> (Vec<(String, i32)>, bool) {
    match &request.topic_partitions {
        Some(topics) => (
            topics
                .iter()
                .flat_map(|t| {
                    t.partitions
                        .iter()
                        .map(move |&p| (t.topic.0.to_string(), p))
                })
                .collect(),
            false,
        ),
        None => {
            let all = match image {
                Some(image) => image
                    .topics()
                    .flat_map(|t| (0..t.partitions.len() as i32).map(move |p| (t.name.clone(), p)))
                    .collect(),
                None => state
                    .topics
                    .list()
                    .into_iter()
                    .flat_map(|t| {
                        (0..t.partition_count() as i32).map(move |p| (t.name.to_string(), p))
                    })
                    .collect(),
            };
            (all, true)
        }
    }
}

fn verdict(
    image: Option<&MetadataImage>,
    state: &BrokerState,
    election_type: i8,
    topic: &str,
    partition: i32,
) -> Verdict {
    let unknown =
        |what: String| Verdict::Done(ResponseError::UnknownTopicOrPartition.code(), Some(what));
    let not_needed = Verdict::Done(ResponseError::ElectionNotNeeded.code(), None);
    let Some(image) = image else {
        // A single node leads every partition it has, and is each one's only replica.
        return match state.topics.get(topic) {
            None => unknown(format!("No such topic as {topic}")),
            Some(t) if t.partition(partition).is_none() => {
                unknown(format!("No such partition as {topic}-{partition}"))
            }
            Some(_) => not_needed,
        };
    };
    let Some(t) = image.topic(topic) else {
        return unknown(format!("No such topic as {topic}"));
    };
    let Some(p) = t.partition(partition) else {
        return unknown(format!("No such partition as {topic}-{partition}"));
    };
    if election_type == UNCLEAN {
        return if p.has_leader() {
            not_needed
        } else {
            Verdict::Done(ResponseError::EligibleLeadersNotAvailable.code(),
                Some(format!(
                    "Sluice does not run an unclean election on request; set unclean.leader.election.enable on topic {topic} to allow one"
                )),
            )
        };
    }
    let preferred = p.preferred_leader();
    if p.leader == preferred {
        return not_needed;
    }
    if p.isr.contains(&preferred) && image.broker(preferred).is_some_and(|b| b.is_usable()) {
        Verdict::Eligible
    } else {
        Verdict::Done(ResponseError::PreferredLeaderNotAvailable.code(),
            Some(format!("Failed to elect leader for partition {topic}-{partition} under strategy PreferredReplicaPartitionLeaderElectionStrategy")),
        )
    }
}

/// Answers ElectLeaders; see the module docs.
pub async fn elect_leaders(
    state: &BrokerState,
    request: &ElectLeadersRequest,
    version: i16,
) -> ElectLeadersResponse {
    if request.election_type != PREFERRED && request.election_type != UNCLEAN {
        // v0 has no top-level error: only preferred elections exist there.
        let code = if version >= 1 {
            ResponseError::InvalidRequest.code()
        } else {
            0
        };
        return ElectLeadersResponse::default().with_error_code(code);
    }
    let node: Option<&ClusterNode> = state.cluster.as_deref();
    let image = node.map(ClusterNode::image);
    let (partitions, all) = wanted(state, image.as_deref(), request);
    let mut verdicts: Vec<(String, i32, Verdict)> = partitions
        .into_iter()
        .map(|(topic, p)| {
            let v = verdict(image.as_deref(), state, request.election_type, &topic, p);
            (topic, p, v)
        })
        .collect();
    if let Some(node) = node.filter(|_| verdicts.iter().any(|(_, _, v)| *v == Verdict::Eligible)) {
        let outcome = match node.service.elect_preferred_leaders().await {
            Ok(committed) => node
                .wait_applied(committed.offset)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let after = node.image();
        for (topic, partition, v) in &mut verdicts {
            if *v != Verdict::Eligible {
                continue;
            }
            let moved = after
                .topic(topic)
                .and_then(|t| t.partition(*partition))
                .is_some_and(|p| p.leader == p.preferred_leader());
            *v = match (&outcome, moved) {
                (_, true) => Verdict::Done(0, None),
                (Err(e), false) => Verdict::Done(ResponseError::NotController.code(), Some(e.clone())),
                (Ok(()), false) => Verdict::Done(ResponseError::PreferredLeaderNotAvailable.code(),
                    Some(format!("Failed to elect leader for partition {topic}-{partition} under strategy PreferredReplicaPartitionLeaderElectionStrategy")),
                ),
            };
        }
    }
    let mut by_topic: BTreeMap<String, Vec<PartitionResult>> = BTreeMap::new();
    for (topic, partition, v) in verdicts {
        let Verdict::Done(code, message) = v else {
            continue;
        };
        if all && code == ResponseError::ElectionNotNeeded.code() {
            continue;
        }
        by_topic.entry(topic).or_default().push(
            PartitionResult::default()
                .with_partition_id(partition)
                .with_error_code(code)
                .with_error_message(message.map(StrBytes::from_string)),
        );
    }
    ElectLeadersResponse::default().with_replica_election_results(
        by_topic
            .into_iter()
            .map(|(topic, partition_result)| {
                ReplicaElectionResult::default()
                    .with_topic(TopicName(StrBytes::from_string(topic)))
                    .with_partition_result(partition_result)
            })
            .collect(),
    )
}

/// The answer when the caller may not Alter the cluster: every named partition refused
/// (and from v1 the whole request).
pub fn refused(request: &ElectLeadersRequest, version: i16) -> ElectLeadersResponse {
    let code = ResponseError::ClusterAuthorizationFailed.code();
    ElectLeadersResponse::default()
        .with_error_code(if version >= 1 { code } else { 0 })
        .with_replica_election_results(
            request
                .topic_partitions
                .iter()
                .flatten()
                .map(|t| {
                    ReplicaElectionResult::default()
                        .with_topic(t.topic.clone())
                        .with_partition_result(
                            t.partitions
                                .iter()
                                .map(|&p| {
                                    PartitionResult::default()
                                        .with_partition_id(p)
                                        .with_error_code(code)
                                })
                                .collect(),
                        )
                })
                .collect(),
        )
}
