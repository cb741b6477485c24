//! Whether this broker serves a partition's data requests (Produce, Fetch, ListOffsets,
//! DeleteRecords), decided on the metadata image as Kafka's `ReplicaManager` does:
//! - the topic or partition is not in the image: UNKNOWN_TOPIC_OR_PARTITION (or
//!   UNKNOWN_TOPIC_ID when named by id);
//! - another broker leads it, or nobody does, or this broker leads it but has not created
//!   its log yet: NOT_LEADER_OR_FOLLOWER, with the leader the image names (KIP-951: the
//!   client may go there without a Metadata round trip);
//! - the client's `current_leader_epoch` (when it sends one, >= 0) is older than the
//!   partition's: FENCED_LEADER_EPOCH; newer (this broker's metadata is behind):
//!   UNKNOWN_LEADER_EPOCH. Both make the client refresh its metadata.

use kafka_protocol::error::ResponseError;
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

/// The leader epoch of a partition this broker leads, or why it does not serve it.
pub fn check_leader(
    node: &ClusterNode,
    image: &MetadataImage,
    topic: TopicKey<'_>,
    partition: i32,
    current_leader_epoch: i32,
) -> Result<i32, Misrouted> {
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
    if current_leader_epoch >= 0 && current_leader_epoch != registration.leader_epoch {
        let code = if current_leader_epoch < registration.leader_epoch {
            ResponseError::FencedLeaderEpoch
        } else {
            ResponseError::UnknownLeaderEpoch
        };
        return Err(Misrouted { code, leader: hint });
    }
    if registration.leader != node.node_id {
        return Err(Misrouted {
            code: ResponseError::NotLeaderOrFollower,
            leader: hint,
        });
    }
    Ok(registration.leader_epoch)
}

/// The routing decisions of one request: the image is read once per request.
pub struct Router {
    cluster: Option<(std::sync::Arc<ClusterNode>, std::sync::Arc<MetadataImage>)>,
}

impl Router {
    /// For a request on `state`'s broker.
    pub fn new(state: &crate::state::BrokerState) -> Router {
        Router {
            cluster: state
                .cluster
                .as_ref()
                .map(|node| (node.clone(), node.image())),
        }
    }

    /// The leader epoch to serve a partition at, or why not (see the module docs). A
    /// single node leads every partition it has at epoch 0.
    pub fn check(
        &self,
        topic: TopicKey<'_>,
        partition: i32,
        current_leader_epoch: i32,
    ) -> Result<i32, Misrouted> {
        match &self.cluster {
            Some((node, image)) => {
                check_leader(node, image, topic, partition, current_leader_epoch)
            }
            // A single node's leader epoch is always 0: a newer one is from the future.
            None if current_leader_epoch > 0 => Err(Misrouted {
                code: ResponseError::UnknownLeaderEpoch,
                leader: None,
            }),
            None => Ok(0),
        }
    }

    /// Whether this broker runs in a cluster.
    pub fn is_cluster(&self) -> bool {
        self.cluster.is_some()
    }

    /// Host and port of a broker on this broker's listener (for KIP-951's node endpoints).
    pub fn endpoint(&self, broker: i32) -> Option<(String, u16, Option<String>)> {
        let (node, image) = self.cluster.as_ref()?;
        let b = image.broker(broker)?;
        let e = b.endpoint(&node.listener_name)?;
        Some((e.host.clone(), e.port, b.rack.clone()))
    }
}
