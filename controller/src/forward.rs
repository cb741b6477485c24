//! Controller requests from any node (Kafka's KIP-590 forwarding): [`Forwarder`] runs a
//! request on this node when it is the active controller and otherwise sends it to the
//! active controller over the controller listener; [`Handler`] is the other end, installed
//! on every node's quorum, which runs a request that arrived from another node.
//!
//! **Where a request goes.** To the quorum leader this node knows of; when it knows none (an
//! election is in progress, or this node is a broker not yet in the quorum), to the leader
//! named by the last `NotController` answer, else to the configured voters in turn (any of
//! them names the leader). A node never forwards what it received from another node: the
//! handler runs it here or answers `NotController { leader }`. A node whose metadata log
//! waits for space on a full disk treats itself as no leader, even the active controller,
//! and does not trust the leader it last knew: its Raft is stuck in the write and the
//! others elect a leader without it, so its requests go to them by hint and in turn. A
//! request it was running here is abandoned and sent there (it may have executed: an entry
//! may have reached followers before the write got stuck). That is how the
//! broker of a full node still reaches the new controller, whose answer to its heartbeat
//! (`storage_unavailable`) moves its leaderships away within seconds, not a session.
//!
//! **Retries.** A request is sent again, after a backoff of 50 ms doubling to 500 ms (cut
//! short when this node learns of a new leader), only when it was certainly not executed or
//! the target could not be reached: a `NotController` answer (from this node's own
//! controller task or a remote one), a node that is stopping, a failed connect, a
//! connection that failed before the answer, no answer yet when this node learns of
//! another leader (the target may hang), or this node's metadata log starting to wait for
//! space while it ran the request itself. These last three may have executed the request:
//! sending it again is harmless for every request here except CreateTopics and
//! CreatePartitions, whose second attempt then answers `TOPIC_ALREADY_EXISTS` /
//! `INVALID_PARTITIONS` for what the first did; AllocateProducerIds may hand out a block
//! that is never used (ids are skipped, never reused). A request the target answered, with
//! success or any other error, is never sent again. When the request timeout runs out the
//! answer is the last failure: `NotController` if that is what the last attempt heard,
//! else `Timeout`.
//!
//! **FetchMetadata** (from broker-only nodes following the metadata) is answered by the
//! handler of whichever voter gets it, from that voter's image, never forwarded.
//!
//! **The answer's offset** is the active controller's metadata offset. The caller that
//! wants its own node's image to show the change waits for it with
//! `MetadataService::wait_for_offset`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use sluice_quorum::{BoxFuture, NodeId, Quorum, QuorumError, ReplicaDescription, RequestHandler};
use tokio::sync::mpsc;

use crate::active::{Op, Request};
use crate::error::{ControllerError, Result};
use crate::rpc::{self, Answered, ControllerAnswer, ControllerRequest, MetadataFetch, WireError};
use crate::service::{call, Committed};
use crate::state_machine::ImageReader;

/// The first wait before a request is sent again.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
/// The longest wait between two attempts.
const BACKOFF_MAX: Duration = Duration::from_millis(500);

/// The most bytes of batches one FetchMetadata answer carries (at least one batch goes,
/// whatever its size); well under the frame limit.
const FETCH_MAX_BYTES: usize = 4 << 20;

/// What runs a request on this node: the controller task's queue, and the quorum for
/// DescribeQuorum.
#[derive(Clone)]
pub(crate) struct Local {
    pub requests: mpsc::Sender<Request>,
    pub images: ImageReader,
    pub node_id: NodeId,
    /// Observers that fetched from this node: id → (the offset they had, when).
    pub observers: Arc<Mutex<BTreeMap<NodeId, (i64, Instant)>>>,
}

/// An observer that has not fetched from this node for this long is no longer listed.
const OBSERVER_SEEN_FOR: Duration = Duration::from_secs(30);

impl Local {
    /// Records an observer's fetch (for DescribeQuorum).
    fn saw_observer(&self, node_id: NodeId, offset: i64) {
        let mut observers = self.observers.lock().unwrap_or_else(|e| e.into_inner());
        observers.retain(|_, (_, at)| at.elapsed() < OBSERVER_SEEN_FOR);
        observers.insert(node_id, (offset, Instant::now()));
    }

    /// The observers that fetched from this node lately, as DescribeQuorum's learners (no
    /// address: an observer listens on no controller port).
    fn recent_observers(&self, last_log_index: Option<u64>) -> Vec<ReplicaDescription> {
        let observers = self.observers.lock().unwrap_or_else(|e| e.into_inner());
        observers
            .iter()
            .filter(|(_, (_, at))| at.elapsed() < OBSERVER_SEEN_FOR)
            .map(|(&node_id, &(offset, _))| {
                let matched_index = u64::try_from(offset).ok();
                ReplicaDescription {
                    node_id,
                    addr: String::new(),
                    matched_index,
                    lag: last_log_index.map(|last| last.saturating_sub(matched_index.unwrap_or(0))),
                }
            })
            .collect()
    }
}

impl Local {
    /// Runs `request` on this node within `timeout`. A node that is not the active
    /// controller answers `NotController` (from the controller task).
    async fn execute(
        &self,
        quorum: &Quorum,
        request: ControllerRequest,
        timeout: Duration,
    ) -> Result<Answered> {
        use ControllerAnswer as A;
        use ControllerRequest as R;
        let requests = &self.requests;
        fn answered<T>(c: Committed<T>, f: impl FnOnce(T) -> ControllerAnswer) -> Answered {
            Answered {
                value: f(c.value),
                offset: c.offset,
            }
        }
        Ok(match request {
            R::RegisterBroker(r) => answered(
                call(requests, timeout, |reply| Op::RegisterBroker(r, reply)).await?,
                A::RegisterBroker,
            ),
            R::BrokerHeartbeat(r) => answered(
                call(requests, timeout, |reply| Op::Heartbeat(r, reply)).await?,
                A::BrokerHeartbeat,
            ),
            R::UnregisterBroker(id) => answered(
                call(requests, timeout, |reply| Op::UnregisterBroker(id, reply)).await?,
                |()| A::UnregisterBroker,
            ),
            R::CreateTopics(t) => answered(
                call(requests, timeout, |reply| Op::CreateTopics(t, reply)).await?,
                |v| A::CreateTopics(rpc::items_to_wire(v)),
            ),
            R::DeleteTopics(t) => answered(
                call(requests, timeout, |reply| Op::DeleteTopics(t, reply)).await?,
                |v| A::DeleteTopics(rpc::items_to_wire(v)),
            ),
            R::CreatePartitions(t) => answered(
                call(requests, timeout, |reply| Op::CreatePartitions(t, reply)).await?,
                |v| A::CreatePartitions(rpc::items_to_wire(v)),
            ),
            R::AlterConfigs(r) => answered(
                call(requests, timeout, |reply| Op::AlterConfigs(r, reply)).await?,
                |v| A::AlterConfigs(rpc::items_to_wire(v)),
            ),
            R::AllocateProducerIds {
                broker_id,
                broker_epoch,
                at_least,
            } => answered(
                call(requests, timeout, |reply| Op::AllocateProducerIds {
                    broker_id,
                    broker_epoch,
                    at_least,
                    reply,
                })
                .await?,
                A::AllocateProducerIds,
            ),
            R::AlterPartition(r) => answered(
                call(requests, timeout, |reply| Op::AlterPartition(r, reply)).await?,
                A::AlterPartition,
            ),
            R::AlterPartitionReassignments {
                items,
                allow_replication_factor_change,
            } => answered(
                call(requests, timeout, |reply| {
                    Op::AlterPartitionReassignments(items, allow_replication_factor_change, reply)
                })
                .await?,
                |v| A::AlterPartitionReassignments(rpc::items_to_wire(v)),
            ),
            R::ElectPreferredLeaders => answered(
                call(requests, timeout, Op::ElectPreferredLeaders).await?,
                |n| A::ElectPreferredLeaders(n as u64),
            ),
            R::DescribeQuorum => {
                // Lags are known on the leader only: describe there.
                if !quorum.is_leader() {
                    return Err(ControllerError::NotController {
                        leader: quorum.leader().filter(|l| *l != self.node_id),
                    });
                }
                let mut description = match tokio::time::timeout(timeout, quorum.describe()).await {
                    Ok(result) => result?,
                    Err(_) => return Err(ControllerError::Timeout(timeout)),
                };
                // Broker-only nodes are observers of the metadata, as in Kafka's answer.
                for observer in self.recent_observers(description.last_log_index) {
                    if !description
                        .learners
                        .iter()
                        .any(|l| l.node_id == observer.node_id)
                    {
                        description.learners.push(observer);
                    }
                }
                Answered {
                    value: A::DescribeQuorum(description),
                    offset: self.images.image().metadata_offset(),
                }
            }
            R::FetchMetadata {
                after_offset,
                max_wait_ms,
                node_id,
            } => {
                if let Some(observer) = node_id {
                    self.saw_observer(observer, after_offset);
                }
                // Any voter answers from its own applied state: only committed entries are
                // ever applied, so what it sends is final wherever it is sent from.
                let wait = timeout.min(Duration::from_millis(max_wait_ms));
                let (content, offset) = self
                    .images
                    .fetch_metadata(after_offset, wait, FETCH_MAX_BYTES)
                    .await;
                Answered {
                    value: A::FetchMetadata(MetadataFetch {
                        // A voter stuck on a full disk knows no current leader.
                        leader: quorum.leader().filter(|_| !quorum.is_waiting_for_space()),
                        content,
                    }),
                    offset,
                }
            }
        })
    }
}

/// Resolves once `flag` says true (never, if its sender is gone).
async fn until_true(flag: &mut tokio::sync::watch::Receiver<bool>) {
    if flag.wait_for(|set| *set).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Answers ControllerRequests from other nodes by running them here (never forwarding).
pub(crate) struct Handler {
    pub local: Local,
    /// Weak: the quorum holds this handler.
    pub quorum: Weak<Quorum>,
    pub request_timeout: Duration,
}

impl RequestHandler for Handler {
    fn handle(&self, body: Vec<u8>) -> BoxFuture<std::result::Result<Vec<u8>, String>> {
        let local = self.local.clone();
        let quorum = self.quorum.clone();
        let own_timeout = self.request_timeout;
        Box::pin(async move {
            // Undecodable bytes get an error answer from the quorum layer; nothing runs.
            let (request, timeout_ms) = rpc::decode_request(&body)?;
            let Some(quorum) = quorum.upgrade() else {
                return rpc::encode_answer(Err(WireError::Unavailable("stopping".into())));
            };
            // No longer than the sender still waits.
            let timeout = own_timeout.min(Duration::from_millis(timeout_ms.max(1)));
            let name = request.name();
            let result = local.execute(&quorum, request, timeout).await;
            tracing::trace!(
                node = local.node_id,
                request = name,
                ok = result.is_ok(),
                "answered a forwarded controller request"
            );
            rpc::encode_answer(result.map_err(WireError::from))
        })
    }
}

/// Runs controller requests from this node, wherever the active controller is.
pub(crate) struct Forwarder {
    pub local: Local,
    pub quorum: Arc<Quorum>,
    pub is_active: Arc<AtomicBool>,
    pub request_timeout: Duration,
}

/// How one attempt ended, when it did not answer.
enum Failure {
    /// Certainly not executed, or the target was not reached: try again.
    Retry(ControllerError),
    /// The answer (an error) stands.
    Final(ControllerError),
}

impl Forwarder {
    /// Runs `request` on the active controller (here or elsewhere), retrying as the module
    /// docs say, within the request timeout.
    pub async fn request(&self, request: ControllerRequest) -> Result<Answered> {
        let deadline = Instant::now() + self.request_timeout;
        let me = self.local.node_id;
        let voters: Vec<NodeId> = self
            .quorum
            .configured_voters()
            .into_iter()
            .filter(|v| *v != me)
            .collect();
        let mut next_voter = 0usize;
        let mut hint: Option<NodeId> = None;
        let mut backoff = BACKOFF_MIN;
        let mut status = self.quorum.subscribe();
        let mut waiting_for_space = self.quorum.waiting_for_space();
        let mut last = ControllerError::NotController { leader: None };
        loop {
            if self.local.requests.is_closed() {
                // This service was shut down: it forwards nothing either.
                return Err(ControllerError::Stopped);
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(match last {
                    ControllerError::NotController { .. } => ControllerError::NotController {
                        leader: self.quorum.leader().filter(|l| *l != me),
                    },
                    _ => ControllerError::Timeout(self.request_timeout),
                });
            }
            // This node's Raft stuck in a write on a full disk takes no part in the
            // quorum: whatever it last knew (even that it leads) is stale, and the others
            // elect a leader without it. Ask them.
            let stuck = *waiting_for_space.borrow_and_update();
            // A stuck node's view of the leader is as old as its last applied entry (that
            // leader may be gone): ask by hint and in turn instead.
            let known_leader = self.quorum.leader().filter(|_| !stuck);
            let outcome = if !stuck && self.is_active.load(Ordering::Acquire) {
                tokio::select! {
                    r = self.run_here(request.clone(), remaining) => r,
                    // Abandoned: it may still take effect (an entry it waits for may
                    // have reached followers before this node's write got stuck, or the
                    // disk may clear before another leader is elected), so sending it
                    // again is the "may have executed" case of the module docs.
                    () = until_true(&mut waiting_for_space) => Err(Failure::Retry(
                        ControllerError::NotController { leader: None },
                    )),
                }
            } else if known_leader == Some(me) {
                // Elected but not active yet (catching up with the log): wait for it.
                Err(Failure::Retry(ControllerError::NotController {
                    leader: None,
                }))
            } else {
                let target = known_leader.or_else(|| hint.take()).or_else(|| {
                    let v = voters.get(next_voter % voters.len().max(1)).copied();
                    next_voter += 1;
                    v
                });
                match target {
                    Some(target) => {
                        // A leader that hangs (rather than fails) would hold the request until
                        // the timeout: give up on it as soon as another leader is known.
                        tokio::select! {
                            r = self.send(target, &request, remaining) => r,
                            l = self.leader_other_than(target, stuck) => Err(Failure::Retry(
                                ControllerError::NotController { leader: Some(l) },
                            )),
                        }
                    }
                    None => Err(Failure::Retry(ControllerError::NotController {
                        leader: None,
                    })),
                }
            };
            match outcome {
                Ok(answer) => return Ok(answer),
                Err(Failure::Final(e)) => return Err(e),
                Err(Failure::Retry(e)) => {
                    tracing::debug!(
                        node = me,
                        request = request.name(),
                        "controller request not answered, retrying: {e}"
                    );
                    if let ControllerError::NotController { leader: Some(l) } = e {
                        hint = Some(l).filter(|l| *l != me);
                    }
                    last = e;
                }
            }
            // Back off, but go at once when this node hears of another leader.
            let leader_before = self.quorum.leader();
            let wait = backoff.min(deadline.saturating_duration_since(Instant::now()));
            let leader_changed = async {
                loop {
                    if status.changed().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                    if status.borrow_and_update().leader != leader_before {
                        return;
                    }
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = leader_changed => {}
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// Resolves once this node knows a quorum leader other than `target`; never if
    /// `stuck` (its Raft waits for space, and its frozen view names the leader it last
    /// knew, which says nothing about `target`).
    async fn leader_other_than(&self, target: NodeId, stuck: bool) -> NodeId {
        if stuck {
            return std::future::pending().await;
        }
        let mut status = self.quorum.subscribe();
        loop {
            if let Some(l) = status.borrow_and_update().leader {
                if l != target {
                    return l;
                }
            }
            if status.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    async fn run_here(
        &self,
        request: ControllerRequest,
        timeout: Duration,
    ) -> std::result::Result<Answered, Failure> {
        match self.local.execute(&self.quorum, request, timeout).await {
            Ok(answer) => Ok(answer),
            // Leadership was lost between the check and the decision: nothing was decided.
            Err(e @ ControllerError::NotController { .. }) => Err(Failure::Retry(e)),
            Err(e) => Err(Failure::Final(e)),
        }
    }

    async fn send(
        &self,
        target: NodeId,
        request: &ControllerRequest,
        timeout: Duration,
    ) -> std::result::Result<Answered, Failure> {
        let body = rpc::encode_request(request, timeout.as_millis() as u64)
            .map_err(|e| Failure::Final(ControllerError::Quorum(QuorumError::Raft(e))))?;
        let bytes = match self.quorum.request(target, &body, timeout).await {
            Ok(bytes) => bytes,
            Err(e @ QuorumError::Unreachable { .. }) => {
                return Err(Failure::Retry(ControllerError::Quorum(e)))
            }
            Err(e) => return Err(Failure::Final(e.into())),
        };
        let answer = rpc::decode_answer(&bytes).map_err(|message| {
            Failure::Final(ControllerError::Quorum(QuorumError::Remote {
                node: target,
                message: format!("undecodable answer: {message}"),
            }))
        })?;
        match answer {
            Ok(answered) => Ok(answered),
            Err(WireError::NotController { leader }) => {
                Err(Failure::Retry(ControllerError::NotController { leader }))
            }
            Err(e @ WireError::Unavailable(_)) => Err(Failure::Retry(e.into_error(target))),
            Err(e) => Err(Failure::Final(e.into_error(target))),
        }
    }
}
