//! Whether this broker serves a partition's data requests (Produce, Fetch, ListOffsets,
//! DeleteRecords), decided on the metadata image as Kafka's `ReplicaManager` does:
//! - the topic or partition is not in the image: UNKNOWN_TOPIC_OR_PARTITION (or
//!   UNKNOWN_TOPIC_ID when named by id);
//! - another broker leads it, or nobody does, or this broker leads it but has not created
//!   its log yet: NOT_LEADER_OR_FOLLOWER, with the leader the image names (KIP-951: the
//!   client may go there without a Metadata round trip);
//! - the client's `current_leader_epoch` (when it sends one, >= 0) is older than the
//!   partition's: FENCED_LEADER_EPOCH; newer (this broker's metadata is behind):
//!   UNKNOWN_LEADER_EPOCH. Both make the client refresh its metadata;
//! - this broker leads it in its image but [steps aside](steps_aside) (a full voter whose
//!   image has stopped): NOT_LEADER_OR_FOLLOWER without a hint.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::BrokerId;
use kafka_protocol::protocol::StrBytes;
use sluice_metadata::image::PartitionRegistration;
use sluice_metadata::MetadataImage;
use uuid::Uuid;

use super::ClusterNode;

/// How a request names a topic.
#[derive(Debug, Clone, Copy)]
pub enum TopicKey<'a> {
    Name(&'a str),
    Id(Uuid),
}

/// Why this broker does not serve a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Misrouted {
    pub code: ResponseError,
    /// The current leader and its epoch, when known (the KIP-951 hint).
    pub leader: Option<(i32, i32)>,
}

/// A partition this broker leads: the epoch to stamp batches with, and the topic id the
/// local log must have (`None` on a single node, which has no metadata image).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Served {
    pub leader_epoch: i32,
    pub topic_id: Option<Uuid>,
}

impl Served {
    /// Whether a local topic is the one the metadata routes to: a replica of a deleted
    /// topic of the same name may still be here until the reconciler removes it.
    pub fn is_topic(&self, local_id: Uuid) -> bool {
        self.topic_id.is_none_or(|id| id == local_id)
    }
}

/// Whether this broker's disk is below the free-space floor while its metadata log waits
/// for space (so its image has stopped): see [`steps_aside`]. Read once per request.
pub fn full_and_stale(state: &crate::state::BrokerState, node: &ClusterNode) -> bool {
    node.service.image_is_stale() && state.disk.is_below_floor_now()
}

/// Whether this broker steps aside as the leader of a partition its image says it leads,
/// when [`full_and_stale`]: Metadata then answers no leader and data requests
/// NOT_LEADER_OR_FOLLOWER, so clients ask another broker where the partition went. Its
/// heartbeats have reported the full disk to the controller (they reach a new controller
/// while its own Raft is stuck, see the controller's `forward.rs`), which moves every
/// partition with another in-sync replica that can write; this broker cannot learn where
/// until its metadata log takes writes again, and without this its clients would retry
/// the refused produces here (NOT_ENOUGH_REPLICAS does not make them refresh metadata)
/// until space is freed. A partition whose ISR is this broker alone stays led here, as
/// the controller leaves it, and so does one whose other in-sync replicas this broker's
/// image shows unusable (fenced, stopping, or full themselves: the controller moves a
/// partition only to a replica that can take it).
pub fn steps_aside(
    me: i32,
    image: &MetadataImage,
    registration: &PartitionRegistration,
    full_and_stale: bool,
) -> bool {
    full_and_stale
        && registration.leader == me
        && registration
            .isr
            .iter()
            .any(|&b| b != me && image.broker(b).is_some_and(|r| r.is_usable()))
}

/// The partition as this broker leads it, or why it does not serve it. The checks run in
/// Kafka's order: a broker that holds no replica answers NOT_LEADER_OR_FOLLOWER whatever
/// the epoch; a replica compares the client's epoch first.
pub fn check_leader(
    me: i32,
    image: &MetadataImage,
    topic: TopicKey<'_>,
    partition: i32,
    current_leader_epoch: i32,
    full_and_stale: bool,
) -> Result<Served, Misrouted> {
    let (topic_image, unknown) = match topic {
        TopicKey::Name(name) => (image.topic(name), ResponseError::UnknownTopicOrPartition),
        TopicKey::Id(id) => (image.topic_by_id(id), ResponseError::UnknownTopicId),
    };
    let Some(topic_image) = topic_image else {
        return Err(Misrouted {
            code: unknown,
            leader: None,
        });
    };
    let Some(registration) = topic_image.partition(partition) else {
        return Err(Misrouted {
            code: ResponseError::UnknownTopicOrPartition,
            leader: None,
        });
    };
    let hint = registration
        .has_leader()
        .then_some((registration.leader, registration.leader_epoch));
    let not_leader = Misrouted {
        code: ResponseError::NotLeaderOrFollower,
        leader: hint,
    };
    if !registration.replicas.contains(&me) {
        return Err(not_leader);
    }
    if current_leader_epoch >= 0 && current_leader_epoch != registration.leader_epoch {
        return Err(if current_leader_epoch < registration.leader_epoch {
            Misrouted {
                code: ResponseError::FencedLeaderEpoch,
                leader: hint,
            }
        } else {
            // This broker's metadata is behind the client's: no hint to give.
            Misrouted {
                code: ResponseError::UnknownLeaderEpoch,
                leader: None,
            }
        });
    }
    if registration.leader != me {
        return Err(not_leader);
    }
    if steps_aside(me, image, registration, full_and_stale) {
        return Err(Misrouted {
            code: ResponseError::NotLeaderOrFollower,
            leader: None,
        });
    }
    Ok(Served {
        leader_epoch: registration.leader_epoch,
        topic_id: Some(topic_image.id),
    })
}

/// The routing decisions of one request: the image is read once per request.
pub struct Router<'a> {
    state: &'a crate::state::BrokerState,
    cluster: Option<(std::sync::Arc<ClusterNode>, std::sync::Arc<MetadataImage>)>,
    /// See [`full_and_stale`].
    full_and_stale: bool,
}

impl<'a> Router<'a> {
    /// For a request on `state`'s broker.
    pub fn new(state: &'a crate::state::BrokerState) -> Router<'a> {
        Router {
            state,
            cluster: state
                .cluster
                .as_ref()
                .map(|node| (node.clone(), node.image())),
            full_and_stale: state
                .cluster
                .as_ref()
                .is_some_and(|node| full_and_stale(state, node)),
        }
    }

    /// The leader epoch to serve a partition at, or why not (see the module docs). A
    /// single node leads every partition it has at epoch 0.
    pub fn check(
        &self,
        topic: TopicKey<'_>,
        partition: i32,
        current_leader_epoch: i32,
    ) -> Result<Served, Misrouted> {
        self.check_as(topic, partition, current_leader_epoch, false)
    }

    /// [`Router::check`] for a follower's fetch, which a leader that
    /// [steps aside](steps_aside) still serves: the follower keeps its copy current (and
    /// its place in the ISR) until the controller's move reaches it.
    pub fn check_follower(
        &self,
        topic: TopicKey<'_>,
        partition: i32,
        current_leader_epoch: i32,
    ) -> Result<Served, Misrouted> {
        self.check_as(topic, partition, current_leader_epoch, true)
    }

    fn check_as(
        &self,
        topic: TopicKey<'_>,
        partition: i32,
        current_leader_epoch: i32,
        follower: bool,
    ) -> Result<Served, Misrouted> {
        match &self.cluster {
            Some((node, image)) => check_leader(
                node.node_id,
                image,
                topic,
                partition,
                current_leader_epoch,
                self.full_and_stale && !follower,
            ),
            // A single node's leader epoch is always 0: a newer one is from the future.
            // Checked only for a partition it has (an unknown one gets its own error from
            // the handler, first, as before).
            None if current_leader_epoch > 0 && self.has_local(topic, partition) => {
                Err(Misrouted {
                    code: ResponseError::UnknownLeaderEpoch,
                    leader: None,
                })
            }
            None => Ok(Served {
                leader_epoch: 0,
                topic_id: None,
            }),
        }
    }

    fn has_local(&self, topic: TopicKey<'_>, partition: i32) -> bool {
        let topic = match topic {
            TopicKey::Name(name) => self.state.topics.get(name),
            TopicKey::Id(id) => self.state.topics.get_by_id(id),
        };
        topic.is_some_and(|t| t.partition(partition).is_some())
    }

    /// Whether this broker runs in a cluster.
    pub fn is_cluster(&self) -> bool {
        self.cluster.is_some()
    }

    /// This broker's cluster node and the image the request is routed on (`None` on a
    /// single node of an earlier release).
    pub fn cluster(&self) -> Option<(&ClusterNode, &MetadataImage)> {
        self.cluster
            .as_ref()
            .map(|(node, image)| (&**node, &**image))
    }

    /// KIP-951's node endpoints of `brokers` on this broker's listener, built by `make`
    /// (node id, host, port, rack) as the response type wants them (Produce and Fetch each
    /// have their own). Brokers without an endpoint are left out.
    pub fn endpoints<T>(
        &self,
        brokers: impl IntoIterator<Item = i32>,
        make: impl Fn(BrokerId, StrBytes, i32, Option<StrBytes>) -> T,
    ) -> Vec<T> {
        let Some((node, image)) = self.cluster.as_ref() else {
            return Vec::new();
        };
        brokers
            .into_iter()
            .filter_map(|id| {
                let b = image.broker(id)?;
                let e = b.endpoint(&node.client_listener_name())?;
                Some(make(
                    BrokerId(id),
                    StrBytes::from_string(e.host.clone()),
                    i32::from(e.port),
                    b.rack.clone().map(StrBytes::from_string),
                ))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::test_images::{brokers, image as image_of, partition, topic};

    const T: Uuid = Uuid::from_u128(0x1234);

    /// Brokers 1-3; topic "t": p0 led by 1 at epoch 3, p1 led by 2, p2 on 1 and 2 led by
    /// 2 at epoch 5, p3 on 1 with no leader.
    fn image() -> MetadataImage {
        let mut records = brokers(3);
        records.push(topic("t", T));
        records.push(partition(T, 0, &[1], &[1], 1, 3));
        records.push(partition(T, 1, &[2], &[2], 2, 0));
        records.push(partition(T, 2, &[1, 2], &[1, 2], 2, 5));
        records.push(partition(T, 3, &[1], &[1], -1, 1));
        image_of(&records)
    }
    type Outcome = Result<i32, (ResponseError, Option<(i32, i32)>)>;

    fn code(r: Result<Served, Misrouted>) -> Outcome {
        r.map(|s| s.leader_epoch).map_err(|m| (m.code, m.leader))
    }

    #[test]
    fn decisions_follow_kafkas_order() {
        use ResponseError as E;
        let image = image();
        let name = TopicKey::Name("t");
        let check = |me, key, p, epoch| code(check_leader(me, &image, key, p, epoch, false));
        // The leader, with no epoch, the current one, an older and a newer one.
        assert_eq!(check(1, name, 0, -1), Ok(3));
        assert_eq!(check(1, name, 0, 3), Ok(3));
        assert_eq!(
            check(1, name, 0, 2),
            Err((E::FencedLeaderEpoch, Some((1, 3))))
        );
        assert_eq!(check(1, name, 0, 4), Err((E::UnknownLeaderEpoch, None)));
        // Not a replica: NOT_LEADER_OR_FOLLOWER with the hint, whatever the epoch.
        for epoch in [-1, 0, 7] {
            assert_eq!(
                check(3, name, 1, epoch),
                Err((E::NotLeaderOrFollower, Some((2, 0))))
            );
        }
        // A follower: epochs are checked, then NOT_LEADER_OR_FOLLOWER.
        assert_eq!(
            check(1, name, 2, 5),
            Err((E::NotLeaderOrFollower, Some((2, 5))))
        );
        assert_eq!(
            check(1, name, 2, 4),
            Err((E::FencedLeaderEpoch, Some((2, 5))))
        );
        // No leader: no hint.
        assert_eq!(check(1, name, 3, -1), Err((E::NotLeaderOrFollower, None)));
        // Unknown partition, name and id.
        assert_eq!(
            check(1, name, 9, -1),
            Err((E::UnknownTopicOrPartition, None))
        );
        assert_eq!(
            check(1, TopicKey::Name("other"), 0, -1),
            Err((E::UnknownTopicOrPartition, None))
        );
        assert_eq!(
            check(1, TopicKey::Id(Uuid::from_u128(9)), 0, -1),
            Err((E::UnknownTopicId, None))
        );
        // Served by id, with the topic id the local log must have.
        let served = check_leader(1, &image, TopicKey::Id(T), 0, -1, false).unwrap();
        assert!(served.is_topic(T));
        assert!(!served.is_topic(Uuid::from_u128(7)));
    }

    #[test]
    fn a_full_voter_whose_image_stopped_steps_aside_where_another_replica_is_in_sync() {
        use ResponseError as E;
        let mut records = brokers(3);
        records.push(topic("t", T));
        // p0 led by 1 with 2 in sync; p1 led by 1 alone; p2 led by 2.
        records.push(partition(T, 0, &[1, 2], &[1, 2], 1, 3));
        records.push(partition(T, 1, &[1, 2], &[1], 1, 4));
        records.push(partition(T, 2, &[1, 2], &[1, 2], 2, 5));
        let image = image_of(&records);
        let name = TopicKey::Name("t");
        let check = |p, aside| code(check_leader(1, &image, name, p, -1, aside));
        // Not full, or its image not stopped: served as before.
        assert_eq!(check(0, false), Ok(3));
        assert_eq!(check(1, false), Ok(4));
        // Full and stale: the controller moves p0 to broker 2, which this broker cannot
        // see; no hint (its image's leader is itself).
        assert_eq!(check(0, true), Err((E::NotLeaderOrFollower, None)));
        // Nobody else in sync: the controller leaves it here, and so does this broker.
        assert_eq!(check(1, true), Ok(4));
        // Led elsewhere: unchanged.
        assert_eq!(check(2, true), Err((E::NotLeaderOrFollower, Some((2, 5)))));
        let p0 = image.topic("t").unwrap().partition(0).unwrap();
        assert!(steps_aside(1, &image, p0, true));
        assert!(!steps_aside(2, &image, p0, true));
        assert!(!steps_aside(1, &image, p0, false));
        // The other in-sync replica is fenced in this broker's image: the controller
        // cannot move the partition there, so it stays led here.
        let mut fenced = records.clone();
        match &mut fenced[1] {
            sluice_metadata::records::MetadataRecord::RegisterBroker(b) => b.fenced = true,
            other => panic!("broker 2's registration expected, not {other:?}"),
        }
        let fenced = image_of(&fenced);
        let p0 = fenced.topic("t").unwrap().partition(0).unwrap();
        assert!(!steps_aside(1, &fenced, p0, true));
    }
}
