//! [`MetadataService`]: one node's metadata layer, the handle a broker process embeds. It
//! owns the quorum node, the reader of the metadata image, and the controller task
//! (`active.rs`); its async methods are the controller requests, which work on every node
//! (forwarded to the active controller by `forward.rs`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sluice_metadata::controller::{
    AlterConfigs, AlterPartitionRequest, BrokerHeartbeatRequest, BrokerRegistrationRequest,
    CreatePartitions, CreateTopic, CreatedTopic, DeletedTopic, ProducerIdBlock, Reassignment,
    TopicRef,
};
use sluice_metadata::image::PartitionRegistration;
use sluice_metadata::records::BrokerId;
use sluice_metadata::{MetadataError, MetadataImage};
use sluice_quorum::{NodeId, Quorum, QuorumDescription, QuorumStatus};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::active::{ControllerTask, Op, Reply, Request};
use crate::config::MetadataServiceConfig;
use crate::error::{ControllerError, Result};
use crate::forward::{Forwarder, Handler, Local};
use crate::rpc::{
    items_from_wire, Answered, ControllerAnswer, ControllerAnswer as A, ControllerRequest,
    ControllerRequest as R,
};
use crate::state_machine::{ImageReader, MetadataStateMachine};

/// Takes the expected variant out of an answer, as a [`Committed`]; another variant is an
/// error ([`wrong_kind`]).
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

/// An answer of another request's kind: a bug, or a peer of another build with the same
/// encoding version.
fn wrong_kind(answer: ControllerAnswer) -> ControllerError {
    ControllerError::Quorum(sluice_quorum::QuorumError::Raft(format!(
        "the active controller answered with the wrong kind of answer: {answer:?}"
    )))
}

/// A controller answer: the value, and the metadata offset at which it holds.
///
/// `offset` is the offset of the batch the request committed, or, when it committed nothing,
/// the offset of the image it was decided on. A node that forwarded the request can
/// [`wait_for_offset`](MetadataService::wait_for_offset) on its own image before answering
/// its client, so the client's next Metadata request there sees the change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed<T> {
    pub value: T,
    pub offset: i64,
}

/// One result per item of an admin request, in request order.
pub type ItemResults<T> = Vec<Result<T, MetadataError>>;

/// The answer to a broker heartbeat (Kafka's BrokerHeartbeatResponse), as of once the
/// heartbeat's records are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HeartbeatResult {
    /// The broker has applied the metadata up to its registration.
    pub is_caught_up: bool,
    /// The broker is fenced (leads nothing, gets no new replicas).
    pub is_fenced: bool,
    /// The broker is moving its leaderships away before it stops.
    pub in_controlled_shutdown: bool,
    /// The broker leads nothing any more and may stop now.
    pub should_shut_down: bool,
}

/// One node's metadata layer. See the crate docs.
///
/// Dropping it stops the controller task and the quorum node (in the background);
/// [`MetadataService::shutdown`] stops them and waits.
pub struct MetadataService {
    node_id: NodeId,
    quorum: Arc<Quorum>,
    images: ImageReader,
    is_active: Arc<AtomicBool>,
    forwarder: Forwarder,
    stop: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
    request_timeout: Duration,
}

impl MetadataService {
    /// Starts the quorum node in `config.quorum.dir` (forming the cluster on its first start,
    /// see `sluice_quorum::Quorum::start`) and the controller task. Returns at once; the image
    /// fills in as the log is replayed, and the node becomes the active controller when it is
    /// elected quorum leader. Peers' connections are served only once the caller runs
    /// [`serve`](Self::serve) or [`serve_connection`](Self::serve_connection); a sole voter
    /// needs neither.
    pub async fn start(config: MetadataServiceConfig) -> Result<MetadataService> {
        config.validate()?;
        let (state_machine, images) =
            MetadataStateMachine::with_window(config.fetch_window_entries);
        let quorum = Arc::new(Quorum::start(config.quorum.clone(), state_machine).await?);
        let node_id = quorum.node_id();
        let (requests_tx, requests_rx) = mpsc::channel(config.request_queue);
        let is_active = Arc::new(AtomicBool::new(false));
        let (stop, mut stop_rx) = watch::channel(false);
        let request_timeout = config.request_timeout;
        let task = ControllerTask {
            quorum: quorum.clone(),
            images: images.clone(),
            status: quorum.subscribe(),
            config,
            requests: requests_rx,
            is_active: is_active.clone(),
            clock: Instant::now(),
        };
        let task = tokio::spawn(async move {
            // Stopping drops the task's future wherever it waits (a proposal in flight is
            // abandoned; Raft decides whether it commits).
            tokio::select! {
                () = task.run() => {}
                _ = stop_rx.wait_for(|stop| *stop) => {}
            }
        });
        let local = Local {
            requests: requests_tx,
            images: images.clone(),
            node_id,
            observers: Arc::default(),
        };
        // Requests forwarded by other nodes are answered as soon as peers are served.
        quorum.set_request_handler(Arc::new(Handler {
            local: local.clone(),
            quorum: Arc::downgrade(&quorum),
            request_timeout,
        }));
        let forwarder = Forwarder {
            local,
            quorum: quorum.clone(),
            is_active: is_active.clone(),
            request_timeout,
        };
        Ok(MetadataService {
            node_id,
            quorum,
            images,
            forwarder,
            is_active,
            stop,
            task: Mutex::new(Some(task)),
            request_timeout,
        })
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// Resolves once the quorum on this node has stopped itself after a failed write to
    /// its files (see `sluice_quorum::Quorum::fatal`); never on a normal shutdown.
    pub fn fatal(
        &self,
    ) -> impl std::future::Future<Output = sluice_quorum::QuorumError> + Send + 'static {
        self.quorum.fatal()
    }

    // ----- peers -----

    /// Accepts controller (Raft) connections on `listener` in a background task, until the
    /// service stops.
    pub fn serve(&self, listener: TcpListener) {
        self.quorum.serve(listener);
    }

    /// Serves one accepted controller connection until it closes or the service stops (for
    /// a broker that accepts the controller listener's connections itself).
    pub async fn serve_connection(&self, stream: TcpStream) {
        self.quorum.serve_connection(stream).await;
    }

    /// Adds a learner (a broker-only node following the metadata log) whose controller
    /// listener is `addr`. Active controller only.
    pub async fn add_learner(&self, node_id: NodeId, addr: SocketAddr) -> Result<()> {
        // Asked elsewhere, openraft may refuse for another reason first (its own view of a
        // membership change in progress); the caller needs to know where to go instead.
        if !self.quorum.is_leader() {
            return Err(self.not_controller(ControllerError::NotController {
                leader: self.quorum.leader(),
            }));
        }
        let timeout = self.request_timeout;
        match tokio::time::timeout(timeout, self.quorum.add_learner(node_id, addr)).await {
            Ok(result) => result.map_err(|e| self.not_controller(e.into())),
            Err(_) => Err(ControllerError::Timeout(timeout)),
        }
    }

    // ----- the image -----

    /// The latest applied metadata image. Cheap (an `Arc` clone) and consistent: it never
    /// changes while held.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.images.image()
    }

    /// A watch of the image's metadata offset: it changes with every applied entry; read
    /// the image with [`MetadataService::image`] when it does. A watch keeps only the
    /// latest value, so a slow reader may skip images: it should compare the image it last
    /// handled with the current one (e.g. `sluice_metadata::LocalChanges::between`).
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.images.subscribe()
    }

    /// A cloneable reader of the image, for tasks that need no other part of the service.
    pub fn image_reader(&self) -> ImageReader {
        self.images.clone()
    }

    /// Waits until this node's image has applied `offset` (an offset a [`Committed`] answer
    /// or an image reported), at most `timeout`.
    pub async fn wait_for_offset(
        &self,
        offset: i64,
        timeout: Duration,
    ) -> Result<Arc<MetadataImage>> {
        self.images.wait_for_offset(offset, timeout).await
    }

    // ----- the quorum -----

    /// Whether this node is the active controller now: it leads the quorum and has caught
    /// up with the log of earlier terms.
    pub fn is_active_controller(&self) -> bool {
        self.is_active.load(Ordering::Acquire)
    }

    /// Whether this node's metadata log waits for space on a full disk: its Raft is stuck
    /// in the write, so its image stops at the last entry it applied while the others go
    /// on without it (see `sluice_quorum::Quorum::waiting_for_space`).
    pub fn image_is_stale(&self) -> bool {
        self.quorum.is_waiting_for_space()
    }

    /// The quorum leader this node knows of (the active controller, or about to be).
    pub fn controller_leader(&self) -> Option<NodeId> {
        self.quorum.leader()
    }

    /// The active controller as this node knows it (the quorum leader; `None` during an
    /// election): the `controller_id` of Kafka's Metadata and DescribeCluster responses
    /// (which answer -1 for `None`).
    pub fn active_controller_id(&self) -> Option<NodeId> {
        self.quorum.leader()
    }

    /// A watch of this node's view of the quorum (leader, term, applied index).
    pub fn quorum_status(&self) -> watch::Receiver<QuorumStatus> {
        self.quorum.subscribe()
    }

    /// Voters and learners with their lag, the leader, the term and the high watermark
    /// (Kafka's DescribeQuorum), as the quorum leader sees them (asked there from any node,
    /// like the controller requests below: lags are known on the leader only).
    pub async fn describe_quorum(&self) -> Result<QuorumDescription> {
        let a = self.request(R::DescribeQuorum).await?;
        expect!(a, A::DescribeQuorum(v) => v).map(|c| c.value)
    }

    /// This node's own view of the quorum, without asking the leader (lags unknown unless
    /// this node leads); for when no leader is elected.
    pub async fn describe_quorum_locally(&self) -> Result<QuorumDescription> {
        let timeout = self.request_timeout;
        match tokio::time::timeout(timeout, self.quorum.describe()).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(ControllerError::Timeout(timeout)),
        }
    }

    // ----- controller requests -----
    //
    // Every request works on every node: run here on the active controller, forwarded to it
    // from anywhere else, retried across an election (see `forward.rs`). The answer's
    // `offset` is the active controller's; wait for it with `wait_for_offset` before reading
    // this node's image. The result is the controller's (per-item errors, whole-request
    // errors), or, once the request timeout has run out without an answer, `NotController`
    // or `Timeout`.

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

    /// UnregisterBroker: the broker leaves the cluster for good.
    pub async fn unregister_broker(&self, broker_id: BrokerId) -> Result<Committed<()>> {
        let a = self.request(R::UnregisterBroker(broker_id)).await?;
        expect!(a, A::UnregisterBroker => ())
    }

    /// CreateTopics (config values already validated by the caller). If the connection to
    /// the active controller fails after the request was sent, it is sent again: a topic the
    /// first attempt created then answers `TOPIC_ALREADY_EXISTS`.
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

    /// CreatePartitions (as CreateTopics, a retry after a lost connection may answer
    /// `INVALID_PARTITIONS` for partitions the first attempt created).
    pub async fn create_partitions(
        &self,
        topics: Vec<CreatePartitions>,
    ) -> Result<Committed<ItemResults<()>>> {
        let a = self.request(R::CreatePartitions(topics)).await?;
        expect!(a, A::CreatePartitions(v) => items_from_wire(v))
    }

    /// IncrementalAlterConfigs (values validated, APPEND/SUBTRACT resolved by the caller).
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

    /// AllocateProducerIds for a block starting at `floor` or above: the ids below the
    /// block are never given out, and every later block (of any broker) is above it. A
    /// broker upgrading a single-node data directory reserves the ids its single node
    /// handed out this way.
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

    /// AlterPartition (an ISR change by the partition leader); answers the partition as
    /// committed.
    pub async fn alter_partition(
        &self,
        request: AlterPartitionRequest,
    ) -> Result<Committed<PartitionRegistration>> {
        let a = self.request(R::AlterPartition(request)).await?;
        expect!(a, A::AlterPartition(v) => v)
    }

    /// Moves leadership back to preferred replicas now (as the periodic check does); answers
    /// how many partitions moved.
    pub async fn elect_preferred_leaders(&self) -> Result<Committed<usize>> {
        let a = self.request(R::ElectPreferredLeaders).await?;
        expect!(a, A::ElectPreferredLeaders(v) => usize::try_from(v).unwrap_or(usize::MAX))
    }

    /// Runs a request on the active controller, wherever it is.
    pub(crate) async fn request(&self, request: ControllerRequest) -> Result<Answered> {
        self.forwarder.request(request).await
    }

    /// Keeps `NotController` from naming this node itself.
    fn not_controller(&self, e: ControllerError) -> ControllerError {
        match e {
            ControllerError::NotController { leader } => ControllerError::NotController {
                leader: leader.filter(|l| *l != self.node_id),
            },
            other => other,
        }
    }

    // ----- stopping -----

    /// Stops the controller task and the quorum node, and waits until Raft has finished (at
    /// most the request timeout for each). Requests in flight answer
    /// [`ControllerError::Stopped`]. Calling it again is harmless.
    pub async fn shutdown(&self) -> Result<()> {
        let _ = self.stop.send(true);
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(task) = task {
            // The task ends at the stop signal (its future is dropped), so this is quick.
            if tokio::time::timeout(self.request_timeout, task)
                .await
                .is_err()
            {
                tracing::warn!(node = self.node_id, "controller task did not stop in time");
            }
        }
        self.is_active.store(false, Ordering::Release);
        let timeout = self.request_timeout;
        match tokio::time::timeout(timeout, self.quorum.shutdown()).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(ControllerError::Timeout(timeout)),
        }
    }
}

/// Sends a request to the controller task and waits for its answer, all within `timeout`.
pub(crate) async fn call<T>(
    requests: &mpsc::Sender<Request>,
    timeout: Duration,
    op: impl FnOnce(Reply<T>) -> Op,
) -> Result<Committed<T>> {
    let arrived = Instant::now();
    let (reply, answer) = oneshot::channel();
    let request = Request {
        arrived,
        deadline: arrived + timeout,
        op: op(reply),
    };
    let exchange = async {
        requests
            .send(request)
            .await
            .map_err(|_| ControllerError::Stopped)?;
        answer.await.map_err(|_| ControllerError::Stopped)?
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(result) => result,
        Err(_) => Err(ControllerError::Timeout(timeout)),
    }
}

impl Drop for MetadataService {
    fn drop(&mut self) {
        // The task holds a handle to the quorum; once it has ended, the last handle (ours)
        // is dropped here and the quorum stops itself.
        let _ = self.stop.send(true);
    }
}
