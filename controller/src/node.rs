//! [`MetadataNode`]: the metadata layer a broker embeds, whatever its role: a voter's
//! [`MetadataService`] (combined nodes) or a broker-only node's [`MetadataObserver`]. The
//! broker's cluster code uses only this type, so it runs unchanged on both.
//!
//! An enum rather than a trait: the two are known, the methods are async (a trait would
//! box every future), and a match shows at one place what differs (the quorum's local
//! view, which an observer does not have).

use std::sync::Arc;
use std::time::Duration;

use sluice_metadata::controller::{
    AlterConfigs, AlterPartitionRequest, BrokerHeartbeatRequest, BrokerRegistrationRequest,
    CreatePartitions, CreateTopic, CreatedTopic, DeletedTopic, ProducerIdBlock, Reassignment,
    TopicRef,
};
use sluice_metadata::image::PartitionRegistration;
use sluice_metadata::records::BrokerId;
use sluice_metadata::MetadataImage;
use sluice_quorum::{NodeId, QuorumDescription, QuorumError};
use tokio::sync::watch;

use crate::error::{ControllerError, Result};
use crate::observer::MetadataObserver;
use crate::rpc::{
    items_from_wire, Answered, ControllerAnswer, ControllerAnswer as A, ControllerRequest,
    ControllerRequest as R,
};
use crate::service::{Committed, HeartbeatResult, ItemResults, MetadataService};

/// Takes the expected variant out of an answer, as a [`Committed`].
macro_rules! expect {
    ($answer:expr, $pattern:pat => $value:expr) => {{
        let Answered { value, offset } = $answer;
        match value {
            $pattern => Ok(Committed {
                value: $value,
                offset,
            }),
            other => Err(wrong_kind(other)),
        }
    }};
}

fn wrong_kind(answer: ControllerAnswer) -> ControllerError {
    ControllerError::Quorum(QuorumError::Raft(format!(
        "the active controller answered with the wrong kind of answer: {answer:?}"
    )))
}

/// A broker's metadata layer. See the module docs.
pub enum MetadataNode {
    /// A voter of the metadata quorum (and the active controller when elected).
    Voter(MetadataService),
    /// A broker-only node following the metadata.
    Observer(MetadataObserver),
}

impl MetadataNode {
    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        match self {
            MetadataNode::Voter(s) => s.node_id(),
            MetadataNode::Observer(o) => o.node_id(),
        }
    }

    /// Whether this node only follows the metadata (not a voter).
    pub fn is_observer(&self) -> bool {
        matches!(self, MetadataNode::Observer(_))
    }

    /// Whether this node's image is known to have stopped while the cluster goes on: a
    /// voter whose metadata log waits for space ([`MetadataService::image_is_stale`]). An
    /// observer's image lives in memory and never is.
    pub fn image_is_stale(&self) -> bool {
        self.voter().is_some_and(MetadataService::image_is_stale)
    }

    /// The voter's service, on a voter.
    pub fn voter(&self) -> Option<&MetadataService> {
        match self {
            MetadataNode::Voter(s) => Some(s),
            MetadataNode::Observer(_) => None,
        }
    }

    /// The latest applied metadata image.
    pub fn image(&self) -> Arc<MetadataImage> {
        match self {
            MetadataNode::Voter(s) => s.image(),
            MetadataNode::Observer(o) => o.image(),
        }
    }

    /// A watch of the image's metadata offset (see [`MetadataService::subscribe`]).
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        match self {
            MetadataNode::Voter(s) => s.subscribe(),
            MetadataNode::Observer(o) => o.subscribe(),
        }
    }

    /// Waits until this node's image has applied `offset`, at most `timeout`.
    pub async fn wait_for_offset(
        &self,
        offset: i64,
        timeout: Duration,
    ) -> Result<Arc<MetadataImage>> {
        match self {
            MetadataNode::Voter(s) => s.wait_for_offset(offset, timeout).await,
            MetadataNode::Observer(o) => o.wait_for_offset(offset, timeout).await,
        }
    }

    /// The quorum leader (the active controller) this node knows of.
    pub fn controller_leader(&self) -> Option<NodeId> {
        match self {
            MetadataNode::Voter(s) => s.controller_leader(),
            MetadataNode::Observer(o) => o.controller_leader(),
        }
    }

    /// The active controller as this node knows it (`None` during an election, or before
    /// an observer's first answer): the same as [`controller_leader`](Self::controller_leader).
    pub fn active_controller_id(&self) -> Option<NodeId> {
        self.controller_leader()
    }

    /// Whether this node is the active controller now (never an observer).
    pub fn is_active_controller(&self) -> bool {
        match self {
            MetadataNode::Voter(s) => s.is_active_controller(),
            MetadataNode::Observer(_) => false,
        }
    }

    /// Kafka's DescribeQuorum, as the quorum leader sees it (asked there from any node).
    pub async fn describe_quorum(&self) -> Result<QuorumDescription> {
        let a = self.request(R::DescribeQuorum).await?;
        expect!(a, A::DescribeQuorum(v) => v).map(|c| c.value)
    }

    /// BrokerRegistration; answers the broker's epoch.
    pub async fn register_broker(
        &self,
        request: BrokerRegistrationRequest,
    ) -> Result<Committed<i64>> {
        let a = self.request(R::RegisterBroker(request)).await?;
        expect!(a, A::RegisterBroker(v) => v)
    }

    /// BrokerHeartbeat.
    pub async fn broker_heartbeat(
        &self,
        request: BrokerHeartbeatRequest,
    ) -> Result<Committed<HeartbeatResult>> {
        let a = self.request(R::BrokerHeartbeat(request)).await?;
        expect!(a, A::BrokerHeartbeat(v) => v)
    }

    /// UnregisterBroker.
    pub async fn unregister_broker(&self, broker_id: BrokerId) -> Result<Committed<()>> {
        let a = self.request(R::UnregisterBroker(broker_id)).await?;
        expect!(a, A::UnregisterBroker => ())
    }

    /// CreateTopics (see [`MetadataService::create_topics`]).
    pub async fn create_topics(
        &self,
        topics: Vec<CreateTopic>,
    ) -> Result<Committed<ItemResults<CreatedTopic>>> {
        let a = self.request(R::CreateTopics(topics)).await?;
        expect!(a, A::CreateTopics(v) => items_from_wire(v))
    }

    /// DeleteTopics, by name or id.
    pub async fn delete_topics(
        &self,
        topics: Vec<TopicRef>,
    ) -> Result<Committed<ItemResults<DeletedTopic>>> {
        let a = self.request(R::DeleteTopics(topics)).await?;
        expect!(a, A::DeleteTopics(v) => items_from_wire(v))
    }

    /// AlterPartitionReassignments: starts, replaces or cancels partitions' reassignments
    /// (one result per item; see `sluice_metadata::controller::reassignment`).
    pub async fn alter_partition_reassignments(
        &self,
        items: Vec<Reassignment>,
        allow_replication_factor_change: bool,
    ) -> Result<Committed<ItemResults<()>>> {
        let a = self
            .request(R::AlterPartitionReassignments {
                items,
                allow_replication_factor_change,
            })
            .await?;
        expect!(a, A::AlterPartitionReassignments(v) => items_from_wire(v))
    }

    /// CreatePartitions.
    pub async fn create_partitions(
        &self,
        topics: Vec<CreatePartitions>,
    ) -> Result<Committed<ItemResults<()>>> {
        let a = self.request(R::CreatePartitions(topics)).await?;
        expect!(a, A::CreatePartitions(v) => items_from_wire(v))
    }

    /// IncrementalAlterConfigs.
    pub async fn alter_configs(
        &self,
        resources: Vec<AlterConfigs>,
    ) -> Result<Committed<ItemResults<()>>> {
        let a = self.request(R::AlterConfigs(resources)).await?;
        expect!(a, A::AlterConfigs(v) => items_from_wire(v))
    }

    /// AllocateProducerIds: the next cluster-unique block of producer ids for a broker.
    pub async fn allocate_producer_ids(
        &self,
        broker_id: BrokerId,
        broker_epoch: i64,
    ) -> Result<Committed<ProducerIdBlock>> {
        self.reserve_producer_ids_above(broker_id, broker_epoch, 0)
            .await
    }

    /// AllocateProducerIds for a block at `floor` or above (see
    /// [`MetadataService::reserve_producer_ids_above`]).
    pub async fn reserve_producer_ids_above(
        &self,
        broker_id: BrokerId,
        broker_epoch: i64,
        floor: i64,
    ) -> Result<Committed<ProducerIdBlock>> {
        let a = self
            .request(R::AllocateProducerIds {
                broker_id,
                broker_epoch,
                at_least: floor,
            })
            .await?;
        expect!(a, A::AllocateProducerIds(v) => v)
    }

    /// AlterPartition (an ISR change by the partition leader).
    pub async fn alter_partition(
        &self,
        request: AlterPartitionRequest,
    ) -> Result<Committed<PartitionRegistration>> {
        let a = self.request(R::AlterPartition(request)).await?;
        expect!(a, A::AlterPartition(v) => v)
    }

    /// Moves leadership back to preferred replicas now; answers how many moved.
    pub async fn elect_preferred_leaders(&self) -> Result<Committed<usize>> {
        let a = self.request(R::ElectPreferredLeaders).await?;
        expect!(a, A::ElectPreferredLeaders(v) => usize::try_from(v).unwrap_or(usize::MAX))
    }

    /// Stops the layer and waits for it (see [`MetadataService::shutdown`]).
    pub async fn shutdown(&self) -> Result<()> {
        match self {
            MetadataNode::Voter(s) => s.shutdown().await,
            MetadataNode::Observer(o) => o.shutdown().await,
        }
    }

    async fn request(&self, request: ControllerRequest) -> Result<Answered> {
        match self {
            MetadataNode::Voter(s) => s.request(request).await,
            MetadataNode::Observer(o) => o.request(request).await,
        }
    }
}
