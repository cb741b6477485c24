//! The controller task: the one task per node that makes controller decisions, one at a
//! time, while this node leads the quorum (Kafka's active controller).
//!
//! - **Leadership.** The task follows the quorum's status. When this node becomes leader
//!   (or leads a new term) it first commits an empty batch, a *barrier*: once it is applied
//!   here, every entry of the earlier terms is applied too, so decisions see the whole log.
//!   Then, if the log has no cluster id or no `metadata.version` yet, it commits the
//!   bootstrap batch (the id from the config, else a random one; this build's level).
//!   Every batch it proposes is first checked against the cluster's `metadata.version`. Only then is it active, with a fresh [`Controller`]: broker
//!   liveness is not in the log, so every broker starts with a full session from this moment
//!   (no broker is fenced because the old controller's heartbeats were lost with it). When
//!   the node stops leading, that state is dropped.
//! - **Requests** arrive through one bounded channel, each with its caller's deadline. One
//!   whose caller gave up (deadline passed, or reply channel closed) is answered `Timeout`
//!   and not decided. Each decision is made on the latest
//!   applied image; its records are proposed as one batch, and the answer is sent once the
//!   batch is applied here. The next request is decided only then, as `Controller` requires.
//!   A node that is not active answers `NotController` with the leader it knows.
//! - **Ticks.** While active: fence brokers whose session expired, and give leaders to
//!   offline partitions that may now have one (unclean leader election enabled since
//!   they went offline), every `liveness_check_interval`; elect preferred leaders every
//!   `preferred_leader_check_interval` (Kafka's `leader.imbalance.check.interval.seconds`;
//!   never with `auto.leader.rebalance.enable=false`). Queued requests go first (a biased select), and a
//!   heartbeat counts from when it reached the service, so heartbeats that waited behind a
//!   slow commit are not mistaken for silence; a loop that stalled for more than half a
//!   session gives every broker a fresh session before it fences anyone.
//! - **Uncertain outcomes.** A proposal that timed out (or failed with any error that does
//!   not prove it was left out of the log) may still commit later. Every decision, request
//!   or tick, goes through one function that then first commits a new barrier, so it is
//!   made on an image that contains that proposal if it committed; until the barrier
//!   commits, nothing is decided (requests answer the barrier's error).

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use sluice_metadata::controller::{
    AlterConfigs, AlterPartitionRequest, BrokerHeartbeatRequest, BrokerRegistrationRequest,
    CreatePartitions, CreateTopic, CreatedTopic, DeletedTopic, ProducerIdBlock, Reassignment,
    TopicRef,
};
use sluice_metadata::image::PartitionRegistration;
use sluice_metadata::records::check_metadata_version;
use sluice_metadata::records::BrokerId;
use sluice_metadata::{encode_batch, Controller, MetadataError, MetadataImage, MetadataRecord};
use sluice_quorum::{NodeId, Quorum, QuorumError, QuorumStatus};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::MissedTickBehavior;

use crate::config::{new_cluster_id, MetadataServiceConfig};
use crate::error::{ControllerError, Result};
use crate::service::{Committed, HeartbeatResult, ItemResults};
use crate::state_machine::{ApplyOutcome, ImageReader};

/// Where a request's answer goes.
pub(crate) type Reply<T> = oneshot::Sender<Result<Committed<T>>>;

/// A request for the controller task.
pub(crate) struct Request {
    /// When the service received it: a heartbeat renews the broker's session as of then,
    /// however long it waited in the queue (Kafka's `BrokerHeartbeatManager` does the same).
    pub(crate) arrived: Instant,
    /// When the caller gives up (the request timeout after `arrived`): a request still
    /// queued then is not decided any more.
    pub(crate) deadline: Instant,
    pub(crate) op: Op,
}

/// What a request asks, with where its answer goes.
pub(crate) enum Op {
    RegisterBroker(BrokerRegistrationRequest, Reply<i64>),
    Heartbeat(BrokerHeartbeatRequest, Reply<HeartbeatResult>),
    UnregisterBroker(BrokerId, Reply<()>),
    CreateTopics(Vec<CreateTopic>, Reply<ItemResults<CreatedTopic>>),
    DeleteTopics(Vec<TopicRef>, Reply<ItemResults<DeletedTopic>>),
    CreatePartitions(Vec<CreatePartitions>, Reply<ItemResults<()>>),
    AlterConfigs(Vec<AlterConfigs>, Reply<ItemResults<()>>),
    AllocateProducerIds {
        broker_id: BrokerId,
        broker_epoch: i64,
        at_least: i64,
        reply: Reply<ProducerIdBlock>,
    },
    AlterPartition(AlterPartitionRequest, Reply<PartitionRegistration>),
    ElectPreferredLeaders(Reply<usize>),
    AlterPartitionReassignments(Vec<Reassignment>, bool, Reply<ItemResults<()>>),
}

/// What the controller task decides on.
enum Step {
    Request(Request),
    Tick,
}

/// The state of an active controller (this node leads the quorum in `term`).
struct Active {
    term: u64,
    controller: Controller,
    /// A proposal's outcome is unknown (it timed out, or the quorum failed in a way that
    /// does not say): commit a barrier before the next decision.
    needs_barrier: bool,
    next_preferred_election: Option<Instant>,
    /// When the liveness check last ran (or the controller became active).
    last_tick: Instant,
}

/// The replicated log the controller task proposes to: the quorum in production, a
/// scripted log in this module's tests (to make a proposal's outcome unknown on purpose).
pub(crate) trait Log: Send + Sync + 'static {
    /// This node's id.
    fn node_id(&self) -> NodeId;
    /// Appends one entry; resolves once it is committed and applied here, with its index
    /// and the applier's response (see `Quorum::propose`).
    fn propose(
        &self,
        payload: Vec<u8>,
    ) -> impl Future<Output = Result<(u64, Vec<u8>), QuorumError>> + Send;
}

impl Log for Quorum {
    fn node_id(&self) -> NodeId {
        Quorum::node_id(self)
    }

    async fn propose(&self, payload: Vec<u8>) -> Result<(u64, Vec<u8>), QuorumError> {
        // The entry's term (`Proposed::term`) is not passed on yet.
        Quorum::propose(self, payload)
            .await
            .map(|p| (p.index, p.response))
    }
}

pub(crate) struct ControllerTask<L: Log = Quorum> {
    pub(crate) quorum: Arc<L>,
    pub(crate) images: ImageReader,
    pub(crate) config: MetadataServiceConfig,
    pub(crate) status: watch::Receiver<QuorumStatus>,
    pub(crate) requests: mpsc::Receiver<Request>,
    /// Shared with the service: `is_active_controller()`.
    pub(crate) is_active: Arc<AtomicBool>,
    /// The origin of the controller's millisecond clock (monotonic).
    pub(crate) clock: Instant,
}

impl<L: Log> ControllerTask<L> {
    /// Runs until the request channel closes (the service is gone). The service also stops
    /// it by dropping this future.
    pub(crate) async fn run(mut self) {
        let mut active: Option<Active> = None;
        let mut tick = tokio::time::interval(self.config.liveness_check_interval);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut retry_activation_at = Instant::now();
        loop {
            let status = self.status.borrow_and_update().clone();
            let still_active = active
                .as_ref()
                .is_some_and(|a| status.is_leader && a.term == status.term);
            if !still_active && active.take().is_some() {
                tracing::info!(
                    node = self.quorum.node_id(),
                    "no longer the active controller"
                );
            }
            if status.is_leader && active.is_none() && Instant::now() >= retry_activation_at {
                active = self.activate(status.term).await;
                if active.is_none() {
                    retry_activation_at = Instant::now() + self.config.liveness_check_interval;
                }
            }
            self.is_active.store(active.is_some(), Ordering::Release);

            // Requests before ticks: heartbeats that queued up while the loop was busy renew
            // their sessions before the liveness check looks at them.
            tokio::select! {
                biased;
                changed = self.status.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                request = self.requests.recv() => {
                    let Some(request) = request else { break };
                    match active.as_mut() {
                        Some(a) => {
                            if self.step(a, Step::Request(request)).await.is_err() {
                                active = None;
                            }
                        }
                        None => self.refuse(request),
                    }
                }
                _ = tick.tick() => {
                    if let Some(a) = active.as_mut() {
                        if self.step(a, Step::Tick).await.is_err() {
                            active = None;
                        }
                    }
                }
            }
        }
        self.is_active.store(false, Ordering::Release);
    }

    fn now_ms(&self) -> u64 {
        self.ms_at(Instant::now())
    }

    /// `at` on the controller's millisecond clock.
    fn ms_at(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.clock);
        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
    }

    /// The barrier, then the bootstrap batch if the log has no cluster id; `None` if this
    /// node could not commit them (it lost leadership, or the quorum is slow).
    async fn activate(&mut self, term: u64) -> Option<Active> {
        let node = self.quorum.node_id();
        if let Err(e) = self.propose(Vec::new()).await {
            tracing::debug!(node, term, "controller barrier not committed: {e}");
            return None;
        }
        let image = self.images.image();
        let id = match image.cluster_id() {
            Some(id) => {
                if let Some(configured) = &self.config.cluster_id {
                    if configured != id {
                        tracing::warn!(
                            log = id,
                            configured = %configured,
                            "the metadata log has another cluster id than the configured one; the log's is kept"
                        );
                    }
                }
                id.to_owned()
            }
            None => self
                .config
                .cluster_id
                .clone()
                .unwrap_or_else(new_cluster_id),
        };
        // The cluster id and metadata.version, whichever the log lacks.
        let records = Controller::bootstrap(&image, &id);
        if !records.is_empty() {
            if let Err(e) = self.propose(records).await {
                tracing::warn!(node, term, "bootstrap batch not committed: {e}");
                return None;
            }
            if image.cluster_id().is_none() {
                tracing::info!(cluster_id = %id, "new cluster: cluster id written to the metadata log");
            }
        }
        let seed = self
            .config
            .placement_seed
            .unwrap_or_else(|| uuid::Uuid::new_v4().as_u64_pair().0);
        tracing::info!(
            node,
            term,
            offset = self.images.image().metadata_offset(),
            "active controller"
        );
        Some(Active {
            term,
            controller: Controller::new(self.config.controller.clone(), seed),
            needs_barrier: false,
            last_tick: Instant::now(),
            next_preferred_election: self
                .config
                .preferred_leader_check_interval
                .map(|i| Instant::now() + i),
        })
    }

    /// Answers a request on a node that is not the active controller.
    fn refuse(&self, request: Request) {
        let me = self.quorum.node_id();
        let leader = self.status.borrow().leader.filter(|l| *l != me);
        fail(request, ControllerError::NotController { leader });
    }

    /// The one way to a decision (a request or a tick; activation commits its own barrier
    /// first): when an earlier proposal's outcome is unknown, a barrier is committed first,
    /// so the decision is made on an image that holds that proposal if it committed.
    /// Otherwise a decision on the older image could commit after it and undo it (e.g. put
    /// back in an ISR a replica an AlterPartition had just removed). `Err(())`: this node
    /// lost leadership.
    async fn step(&mut self, a: &mut Active, step: Step) -> Result<(), ()> {
        if a.needs_barrier {
            tracing::debug!("an earlier proposal's outcome is unknown: committing a barrier first");
            match self.propose(Vec::new()).await {
                Ok(_) => a.needs_barrier = false,
                Err(e) => {
                    let lost = lost(&e);
                    if let Step::Request(request) = step {
                        fail(request, e);
                    }
                    return lost;
                }
            }
        }
        match step {
            Step::Request(request) => {
                if request.op.reply_closed() || Instant::now() >= request.deadline {
                    self.skip(a, request);
                    return Ok(());
                }
                self.handle(a, request).await
            }
            Step::Tick => self.tick(a).await,
        }
    }

    /// Answers `Timeout` to a request whose caller gave up while it waited (the caller was
    /// told it timed out: the change must not happen behind its back). A heartbeat still
    /// renews its broker's session: the broker was alive when it sent it.
    fn skip(&self, a: &mut Active, request: Request) {
        tracing::debug!("skipping a request whose caller gave up");
        if let Op::Heartbeat(req, _) = &request.op {
            let image = self.images.image();
            let at = self.ms_at(request.arrived);
            a.controller
                .renew_session(&image, req.broker_id, req.broker_epoch, at);
        }
        fail(
            request,
            ControllerError::Timeout(self.config.request_timeout),
        );
    }

    /// Decides, commits and answers one request (through [`Self::step`] only).
    /// `Err(())`: this node lost leadership.
    async fn handle(&mut self, a: &mut Active, request: Request) -> Result<(), ()> {
        let Request { arrived, op, .. } = request;
        let arrived_ms = self.ms_at(arrived);
        let image = self.images.image();
        let c = &mut a.controller;
        // Each arm: decide (records + the answer), then commit and send.
        let lost = match op {
            Op::RegisterBroker(req, reply) => match c.register_broker(&image, arrived_ms, &req) {
                Err(e) => send(reply, Err(ControllerError::Request(e))),
                Ok(d) => match d.existing_epoch {
                    Some(epoch) => send(reply, Ok(committed(&image, epoch))),
                    None => {
                        let result = self.commit(a, d.records).await.map(|offset| Committed {
                            value: offset,
                            offset,
                        });
                        send(reply, result)
                    }
                },
            },
            Op::Heartbeat(req, reply) => match c.heartbeat(&image, arrived_ms, &req) {
                Err(e) => send(reply, Err(ControllerError::Request(e))),
                Ok(d) => {
                    let value = HeartbeatResult {
                        is_caught_up: d.is_caught_up,
                        is_fenced: d.is_fenced,
                        in_controlled_shutdown: d.in_controlled_shutdown,
                        should_shut_down: d.should_shut_down,
                    };
                    let result = self.commit_if_any(a, &image, d.records, value).await;
                    send(reply, result)
                }
            },
            Op::UnregisterBroker(id, reply) => match c.unregister_broker(&image, id) {
                Err(e) => send(reply, Err(ControllerError::Request(e))),
                Ok(records) => {
                    let result = self.commit_if_any(a, &image, records, ()).await;
                    send(reply, result)
                }
            },
            Op::CreateTopics(topics, reply) => {
                let outcome = c.create_topics(&image, &topics);
                let result = self
                    .commit_if_any(a, &image, outcome.records, outcome.results)
                    .await;
                send(reply, result)
            }
            Op::DeleteTopics(topics, reply) => {
                let outcome = c.delete_topics(&image, &topics);
                let result = self
                    .commit_if_any(a, &image, outcome.records, outcome.results)
                    .await;
                send(reply, result)
            }
            Op::CreatePartitions(topics, reply) => {
                let outcome = c.create_partitions(&image, &topics);
                let result = self
                    .commit_if_any(a, &image, outcome.records, outcome.results)
                    .await;
                send(reply, result)
            }
            Op::AlterConfigs(resources, reply) => {
                let outcome = c.alter_configs(&image, &resources);
                let result = self
                    .commit_if_any(a, &image, outcome.records, outcome.results)
                    .await;
                send(reply, result)
            }
            Op::AllocateProducerIds {
                broker_id,
                broker_epoch,
                at_least,
                reply,
            } => {
                match c.allocate_producer_ids_at_least(&image, broker_id, broker_epoch, at_least) {
                    Err(e) => send(reply, Err(ControllerError::Request(e))),
                    Ok((block, records)) => {
                        let result = self.commit_if_any(a, &image, records, block).await;
                        send(reply, result)
                    }
                }
            }
            Op::AlterPartition(req, reply) => match c.alter_partition(&image, &req) {
                Err(e) => send(reply, Err(ControllerError::Request(e))),
                Ok(records) => {
                    let result = self.commit_if_any(a, &image, records, ()).await.and_then(
                        |Committed { offset, .. }| {
                            // Kafka answers AlterPartition with the partition as committed.
                            let image = self.images.image();
                            let partition = image.partition(req.topic_id, req.partition).ok_or(
                                ControllerError::Request(MetadataError::UnknownTopicId(
                                    req.topic_id,
                                )),
                            )?;
                            Ok(Committed {
                                value: partition.clone(),
                                offset,
                            })
                        },
                    );
                    send(reply, result)
                }
            },
            Op::AlterPartitionReassignments(items, allow_rf_change, reply) => {
                let outcome = c.alter_partition_reassignments(&image, &items, allow_rf_change);
                let result = self
                    .commit_if_any(a, &image, outcome.records, outcome.results)
                    .await;
                send(reply, result)
            }
            Op::ElectPreferredLeaders(reply) => {
                let records = c.elect_preferred_leaders(&image);
                let moved = records.len();
                let result = self.commit_if_any(a, &image, records, moved).await;
                send(reply, result)
            }
        };
        if lost {
            Err(())
        } else {
            Ok(())
        }
    }

    /// Fences brokers whose session expired; now and then, elects preferred leaders
    /// (through [`Self::step`] only). After a failed commit it returns at once: the next
    /// decision waits for the barrier. `Err(())`: this node lost leadership.
    async fn tick(&mut self, a: &mut Active) -> Result<(), ()> {
        let image = self.images.image();
        let now = self.now_ms();
        // The loop (or the whole process) stalled for more than half a session beyond the
        // tick interval: heartbeats may have been delayed by this node, not by the brokers.
        // Every broker gets a fresh session rather than being fenced for it.
        let since_last = a
            .last_tick
            .elapsed()
            .saturating_sub(self.config.liveness_check_interval);
        a.last_tick = Instant::now();
        let session = std::time::Duration::from_millis(self.config.controller.session_timeout_ms);
        if since_last > session / 2 {
            tracing::warn!(
                stalled_ms = since_last.as_millis() as u64,
                "the controller loop stalled: every broker gets a fresh session"
            );
            a.controller.renew_all_sessions(now);
        }
        let fences = a.controller.fence_expired_brokers(&image, now);
        if !fences.is_empty() {
            if let Err(e) = self.commit(a, fences.clone()).await {
                tracing::warn!("fencing expired brokers not committed: {e}");
                // Decided again at the next tick (after the barrier, if the outcome is
                // unknown), not a whole session later.
                a.controller.fences_not_committed(&fences);
                return lost(&e);
            }
        }
        // Leaderless partitions that may have a leader now: those whose topic had unclean
        // leader election enabled since they went offline.
        let image = self.images.image();
        let elections = a.controller.elect_offline_leaders(&image);
        if let Some(stop) = self
            .commit_periodic(a, elections, "leaders elected for offline partitions")
            .await
        {
            return stop;
        }
        // Reassignments ready to complete that the ISR change making them ready could not
        // complete (no usable leader then).
        let image = self.images.image();
        let completions = a.controller.complete_reassignments(&image);
        if let Some(stop) = self
            .commit_periodic(a, completions, "reassignments completed")
            .await
        {
            return stop;
        }
        if a.next_preferred_election
            .is_some_and(|at| Instant::now() >= at)
        {
            a.next_preferred_election = self
                .config
                .preferred_leader_check_interval
                .map(|i| Instant::now() + i);
            let image = self.images.image();
            let records = a.controller.elect_preferred_leaders(&image);
            if let Some(stop) = self
                .commit_periodic(a, records, "preferred leaders elected")
                .await
            {
                return stop;
            }
        }
        Ok(())
    }

    /// Commits the records of one of [`Self::tick`]'s periodic decisions, one per
    /// partition (none: nothing to do), and logs `done` with their count, or the failure.
    /// `Some`: the commit failed and the tick ends with this (see [`lost`]).
    async fn commit_periodic(
        &mut self,
        a: &mut Active,
        records: Vec<MetadataRecord>,
        done: &'static str,
    ) -> Option<Result<(), ()>> {
        if records.is_empty() {
            return None;
        }
        let partitions = records.len();
        match self.commit(a, records).await {
            Ok(offset) => {
                tracing::info!(partitions, offset, "{done}");
                None
            }
            Err(e) => {
                tracing::warn!("not committed ({done}): {e}");
                Some(lost(&e))
            }
        }
    }

    /// Commits `records` unless there are none; answers `value` at the resulting offset.
    async fn commit_if_any<T>(
        &mut self,
        a: &mut Active,
        image: &MetadataImage,
        records: Vec<MetadataRecord>,
        value: T,
    ) -> Result<Committed<T>> {
        if records.is_empty() {
            return Ok(committed(image, value));
        }
        let offset = self.commit(a, records).await?;
        Ok(Committed { value, offset })
    }

    /// Proposes one batch as the active controller; returns its offset once applied here.
    /// Any failure that does not prove the batch was left out of the log, or applied
    /// already, makes the next decision wait for a barrier.
    async fn commit(&mut self, a: &mut Active, records: Vec<MetadataRecord>) -> Result<i64> {
        let result = self.propose(records).await;
        if let Err(e) = &result {
            if outcome_unknown(e) {
                a.needs_barrier = true;
            }
        }
        result
    }

    /// Proposes one batch and waits until it is applied here (bounded by the request
    /// timeout); returns its offset.
    async fn propose(&self, records: Vec<MetadataRecord>) -> Result<i64> {
        let timeout = self.config.request_timeout;
        // Never a record above the cluster's metadata.version: nodes at that level could
        // not read it (see docs/cluster.md, "Upgrades").
        check_metadata_version(&records, self.images.image().metadata_version())
            .map_err(ControllerError::Request)?;
        let payload = encode_batch(&records).map_err(ControllerError::Request)?;
        let proposed = tokio::time::timeout(timeout, self.quorum.propose(payload)).await;
        let (index, response) = match proposed {
            Err(_) => return Err(ControllerError::Timeout(timeout)),
            Ok(Err(QuorumError::PayloadTooLarge { size, max })) => {
                return Err(ControllerError::Request(MetadataError::PolicyViolation(
                    format!("Unable to perform excessively large batch operation ({size} bytes, at most {max})."),
                )))
            }
            Ok(Err(QuorumError::NotLeader { leader })) => {
                let me = self.quorum.node_id();
                return Err(ControllerError::NotController {
                    leader: leader.filter(|l| *l != me),
                });
            }
            Ok(Err(e)) => return Err(e.into()),
            Ok(Ok(x)) => x,
        };
        let offset = i64::try_from(index).map_err(|_| ControllerError::Rejected {
            offset: i64::MAX,
            reason: format!("log index {index} is out of range"),
        })?;
        match ApplyOutcome::decode(&response) {
            ApplyOutcome::Applied => {}
            ApplyOutcome::Rejected(reason) => {
                return Err(ControllerError::Rejected { offset, reason })
            }
        }
        // The quorum answers once the entry is applied here, so this returns at once; it
        // only guards the order of the image publication.
        self.images.wait_for_offset(offset, timeout).await?;
        Ok(offset)
    }
}

impl Op {
    /// Whether the caller stopped waiting for the answer.
    fn reply_closed(&self) -> bool {
        match self {
            Op::RegisterBroker(_, r) => r.is_closed(),
            Op::Heartbeat(_, r) => r.is_closed(),
            Op::UnregisterBroker(_, r) => r.is_closed(),
            Op::CreateTopics(_, r) => r.is_closed(),
            Op::DeleteTopics(_, r) => r.is_closed(),
            Op::CreatePartitions(_, r) => r.is_closed(),
            Op::AlterConfigs(_, r) => r.is_closed(),
            Op::AllocateProducerIds { reply, .. } => reply.is_closed(),
            Op::AlterPartition(_, r) => r.is_closed(),
            Op::ElectPreferredLeaders(r) => r.is_closed(),
            Op::AlterPartitionReassignments(_, _, r) => r.is_closed(),
        }
    }
}

/// Answers a request with an error.
fn fail(request: Request, e: ControllerError) {
    // The caller may have given up (timed out); nothing to do then.
    let _ = match request.op {
        Op::RegisterBroker(_, r) => r.send(Err(e)).is_ok(),
        Op::Heartbeat(_, r) => r.send(Err(e)).is_ok(),
        Op::UnregisterBroker(_, r) => r.send(Err(e)).is_ok(),
        Op::CreateTopics(_, r) => r.send(Err(e)).is_ok(),
        Op::DeleteTopics(_, r) => r.send(Err(e)).is_ok(),
        Op::CreatePartitions(_, r) => r.send(Err(e)).is_ok(),
        Op::AlterConfigs(_, r) => r.send(Err(e)).is_ok(),
        Op::AllocateProducerIds { reply, .. } => reply.send(Err(e)).is_ok(),
        Op::AlterPartition(_, r) => r.send(Err(e)).is_ok(),
        Op::ElectPreferredLeaders(r) => r.send(Err(e)).is_ok(),
        Op::AlterPartitionReassignments(_, _, r) => r.send(Err(e)).is_ok(),
    };
}

fn committed<T>(image: &MetadataImage, value: T) -> Committed<T> {
    Committed {
        value,
        offset: image.metadata_offset(),
    }
}

/// Sends an answer; returns whether the error says this node lost leadership.
fn send<T>(reply: Reply<T>, result: Result<Committed<T>>) -> bool {
    let lost = matches!(result, Err(ControllerError::NotController { .. }));
    // The caller may have given up (timed out); nothing to do then.
    let _ = reply.send(result);
    lost
}

/// Whether a failed proposal may still commit (or may have committed without this node
/// having applied it yet). Only these say it did not or that it is applied: the quorum
/// refused it (not the leader: this controller stops anyway; too large, or not encodable:
/// never appended), or it was applied and rejected (the image holds its outcome: no change).
fn outcome_unknown(e: &ControllerError) -> bool {
    !matches!(
        e,
        ControllerError::NotController { .. }
            | ControllerError::Request(_)
            | ControllerError::Rejected { .. }
    )
}

fn lost(e: &ControllerError) -> Result<(), ()> {
    if matches!(e, ControllerError::NotController { .. }) {
        Err(())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
