//! The partition leader's side of replication (see the module docs of `replication`):
//! Kafka's `Partition` leader half, `ReplicaManager`'s ISR maintenance and
//! `DelayedProduce`.
//!
//! - [`Leadership`] (one per local partition, `topics::Partition::leadership`): the
//!   [`LeaderState`] while this broker leads the partition (behind a mutex held only for
//!   in-memory bookkeeping and the high watermark update), and a watch of what acks=all
//!   produce waits need ([`LeaderView`]: leader epoch, high watermark, ISR size).
//! - [`run`]: the task that follows the metadata image: for every local partition this
//!   broker leads it becomes leader ([`lead`]: a new epoch is recorded in the log's
//!   epoch cache at the log end, followers start unknown, the high watermark is kept),
//!   takes ISR and partition epoch changes, and resigns the others (waiting acks=all
//!   produces then answer NOT_LEADER_OR_FOLLOWER). On every pass (after each applied
//!   metadata change and every [`TICK`]) it asks the controller for ISR changes
//!   (AlterPartition, one in flight per partition; see [`isr`] for the rules).
//! - The high watermark ([`settle`]) is the smallest log end offset of the ISR (pending
//!   additions included), raised only while the ISR has `min.insync.replicas` members;
//!   updated after every local append ([`after_append`]) and every follower fetch
//!   ([`record_follower_fetch`]). Its moves wake long-polling fetches. The partitions of
//!   a single node of an earlier release (no metadata, `Leadership::sole_replica`) keep
//!   it at the log end.
//! - acks=all: [`wait_replicated`] is a future on the watch, no task per request.

pub mod isr;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use sluice_metadata::controller::{AlterPartitionRequest, IsrMember};
use sluice_metadata::image::PartitionRegistration;
use sluice_metadata::MetadataImage;
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

pub use isr::{FollowerState, LeaderState, PendingIsr};

use crate::cluster::ClusterNode;
use crate::state::BrokerState;
use crate::topics::{Partition, Topic};

/// How often the leader task looks at its partitions without a metadata change (ISR
/// shrinks are due by the clock alone).
pub const TICK: Duration = Duration::from_millis(200);

/// Least time between passes woken by followers ready to join an ISR.
const MIN_WAKE_INTERVAL: Duration = Duration::from_millis(20);

/// What acks=all waits watch (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaderView {
    /// The epoch this broker leads the partition at; `None` when it does not lead it.
    pub leader_epoch: Option<i32>,
    pub high_watermark: i64,
    /// The size of the committed ISR.
    pub isr_size: usize,
}

/// See the module docs.
pub struct Leadership {
    state: Mutex<Option<LeaderState>>,
    view: watch::Sender<LeaderView>,
    sole_replica: bool,
    /// The registry's wake-up of the leader task (`TopicRegistry::isr_check`).
    isr_check: Arc<tokio::sync::Notify>,
}

impl Leadership {
    /// `sole_replica`: a partition of a single node of an earlier release (see the module
    /// docs); it always leads at epoch 0 with an ISR of one.
    pub fn new(sole_replica: bool, isr_check: Arc<tokio::sync::Notify>) -> Leadership {
        let view = LeaderView {
            leader_epoch: sole_replica.then_some(0),
            high_watermark: 0,
            isr_size: usize::from(sole_replica),
        };
        Leadership {
            state: Mutex::new(None),
            view: watch::channel(view).0,
            sole_replica,
            isr_check,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<LeaderState>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A copy of the leader state, `None` when not leading.
    pub fn snapshot(&self) -> Option<LeaderState> {
        self.lock().clone()
    }

    /// The epoch this broker leads at (0 for a sole replica), `None` when not leading.
    pub fn leader_epoch(&self) -> Option<i32> {
        match &*self.lock() {
            Some(s) => Some(s.leader_epoch),
            None => self.sole_replica.then_some(0),
        }
    }

    /// The committed ISR's size (1 for a sole replica), `None` when not leading.
    pub fn isr_size(&self) -> Option<usize> {
        match &*self.lock() {
            Some(s) => Some(s.isr.len()),
            None => self.sole_replica.then_some(1),
        }
    }

    /// The replicas of the partition as this leader knows them, `None` when not leading.
    pub fn replicas(&self) -> Option<Vec<i32>> {
        self.lock().as_ref().map(|s| s.replicas.clone())
    }
}

/// `min.insync.replicas` of a topic as a count (at least 1).
pub fn min_insync(topic: &Topic) -> usize {
    usize::try_from(topic.config().min_insync_replicas)
        .unwrap_or(1)
        .max(1)
}

/// Raises the high watermark as far as `state` allows (see the module docs), publishes
/// the view, and wakes fetches if it moved. Called with the leadership lock held, so
/// views are published in the order of the state changes. Returns the high watermark.
fn settle(partition: &Partition, state: Option<&LeaderState>, min_insync: usize) -> i64 {
    let log = &partition.log;
    let leadership = &partition.leadership;
    let before = log.high_watermark();
    let hw = match state {
        Some(s) => match s.high_watermark(log.log_end_offset(), min_insync) {
            Some(candidate) if candidate > before => log.advance_high_watermark(candidate),
            _ => before,
        },
        None if leadership.sole_replica => log.advance_high_watermark(log.log_end_offset()),
        None => before,
    };
    let view = LeaderView {
        leader_epoch: match state {
            Some(s) => Some(s.leader_epoch),
            None => leadership.sole_replica.then_some(0),
        },
        high_watermark: hw,
        isr_size: state.map_or(usize::from(leadership.sole_replica), |s| s.isr.len()),
    };
    leadership.view.send_if_modified(|v| {
        let changed = *v != view;
        *v = view;
        changed
    });
    if hw > before {
        // Consumers see records at the high watermark's advance, not at the append.
        partition.notify_appended();
    }
    hw
}

/// After a local append on the leader (Produce, the group coordinator's writes): moves
/// the high watermark (an ISR of one: to the log end).
pub fn after_append(partition: &Partition, min_insync: usize) -> i64 {
    let guard = partition.leadership.lock();
    settle(partition, guard.as_ref(), min_insync)
}

/// Becomes leader of `partition` as `registration` says (this broker is its leader), or
/// takes a new registration at the current epoch (ISR, replicas, partition epoch).
/// Kafka's `makeLeader`: a new epoch starts at the log end; the high watermark is kept.
/// A registration older than the current epoch is ignored.
pub fn lead(
    partition: &Partition,
    me: i32,
    topic_id: Uuid,
    registration: &PartitionRegistration,
    min_insync: usize,
    now_ms: i64,
) {
    let mut guard = partition.leadership.lock();
    match guard.as_mut() {
        Some(s) if s.topic_id == topic_id && s.leader_epoch == registration.leader_epoch => {
            s.apply_registration(registration, now_ms);
        }
        Some(s) if s.topic_id == topic_id && s.leader_epoch > registration.leader_epoch => {
            return;
        }
        _ => {
            // Appends at this epoch would record its start too; recording it now lets
            // followers and OffsetForLeaderEpoch see the epoch before any append. The log
            // end is read under the append lock, so a late replicated batch of the old
            // leader cannot slip in between.
            let end = match partition
                .log
                .assign_epoch_at_log_end(registration.leader_epoch)
            {
                Ok(end) => end,
                Err(e) => {
                    tracing::warn!(topic = %partition.topic, partition = partition.index, error = %e,
                        "cannot record the new leader epoch in the epoch cache");
                    partition.log.log_end_offset()
                }
            };
            // Per partition at debug: `cluster::reconcile` logs the count at info.
            tracing::debug!(
                topic = %partition.topic,
                partition = partition.index,
                leader_epoch = registration.leader_epoch,
                isr = ?registration.isr,
                log_end_offset = end,
                high_watermark = partition.log.high_watermark(),
                "leading the partition"
            );
            *guard = Some(LeaderState::new(me, topic_id, registration, end, now_ms));
        }
    }
    settle(partition, guard.as_ref(), min_insync);
}

/// Stops leading `partition` (another broker leads it, or nobody): waiting acks=all
/// produces answer NOT_LEADER_OR_FOLLOWER.
pub fn resign(partition: &Partition, min_insync: usize) {
    let mut guard = partition.leadership.lock();
    if let Some(old) = guard.take() {
        tracing::debug!(topic = %partition.topic, partition = partition.index,
            leader_epoch = old.leader_epoch, "no longer leading the partition");
        settle(partition, None, min_insync);
    }
}

/// A follower fetched at `fetch_offset` (already checked to be within the leader's log):
/// records it as the follower's log end, which may advance the high watermark and
/// complete acks=all waits. NOT_LEADER_OR_FOLLOWER if this broker does not lead the
/// partition or `follower` is no replica of it.
pub fn record_follower_fetch(
    partition: &Partition,
    follower: i32,
    fetch_offset: i64,
    broker_epoch: i64,
    min_insync: usize,
    now_ms: i64,
) -> Result<(), ResponseError> {
    let mut guard = partition.leadership.lock();
    let Some(state) = guard.as_mut() else {
        return Err(ResponseError::NotLeaderOrFollower);
    };
    let end = partition.log.log_end_offset();
    if !state.record_fetch(follower, fetch_offset, broker_epoch, end, now_ms) {
        return Err(ResponseError::NotLeaderOrFollower);
    }
    let hw = settle(partition, guard.as_ref(), min_insync);
    if let Some(state) = guard.as_ref() {
        if state.pending.is_none() && state.ready_to_join(hw).contains(&follower) {
            partition.leadership.isr_check.notify_one();
        }
    }
    Ok(())
}

/// An acks=all wait: completes when the high watermark passes the records.
pub type ReplicationWait = Pin<Box<dyn Future<Output = Result<(), ResponseError>> + Send>>;

/// Waits until the high watermark reaches `end_offset` (the offset after the records) while
/// this broker leads at `leader_epoch`. Fails NOT_LEADER_OR_FOLLOWER when it stops
/// leading (or leads at another epoch), NOT_ENOUGH_REPLICAS_AFTER_APPEND when the ISR
/// falls below `min_insync` first, REQUEST_TIMED_OUT at `deadline`.
pub fn wait_replicated(
    partition: &Partition,
    leader_epoch: i32,
    end_offset: i64,
    min_insync: usize,
    deadline: tokio::time::Instant,
) -> ReplicationWait {
    let mut view = partition.leadership.view.subscribe();
    Box::pin(async move {
        let done = |v: &LeaderView| {
            v.leader_epoch != Some(leader_epoch)
                || v.high_watermark >= end_offset
                || v.isr_size < min_insync
        };
        let outcome = match tokio::time::timeout_at(deadline, view.wait_for(done)).await {
            Err(_) => return Err(ResponseError::RequestTimedOut),
            // The partition is gone (deleted, closed).
            Ok(Err(_)) => return Err(ResponseError::NotLeaderOrFollower),
            Ok(Ok(v)) => *v,
        };
        if outcome.leader_epoch != Some(leader_epoch) {
            Err(ResponseError::NotLeaderOrFollower)
        } else if outcome.high_watermark >= end_offset {
            Ok(())
        } else {
            Err(ResponseError::NotEnoughReplicasAfterAppend)
        }
    })
}

/// Makes this broker lead the partitions the image says it leads (see [`lead`]) if it
/// does not yet at that epoch: the request paths call it so that a request arriving
/// between the image and the leader task's next pass is served at once.
pub fn ensure_leading(
    partition: &Partition,
    me: i32,
    topic_id: Uuid,
    image: &MetadataImage,
    min_insync: usize,
) {
    let Some(registration) = image
        .topic_by_id(topic_id)
        .and_then(|t| t.partition(partition.index))
    else {
        return;
    };
    if registration.leader != me
        || partition.leadership.leader_epoch() == Some(registration.leader_epoch)
    {
        return;
    }
    lead(
        partition,
        me,
        topic_id,
        registration,
        min_insync,
        sluice_storage::now_ms(),
    );
}

/// The leader task (see the module docs). Runs until shutdown.
pub async fn run(
    state: Arc<BrokerState>,
    node: Arc<ClusterNode>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut offsets = node.service.subscribe();
    // Answered AlterPartitions wake a pass (the next change may be due at once).
    let (answered_tx, mut answered_rx) = mpsc::unbounded_channel::<()>();
    let tick = TICK.min(Duration::from_millis(
        (state.config.replica_lag_time_max_ms / 2).max(1),
    ));
    let mut woken_by_follower = false;
    loop {
        let image = node.image();
        // On a blocking thread: becoming leader writes each partition's epoch checkpoint
        // (many at once after a failover).
        let (pass_state, pass_node, pass_answered) =
            (state.clone(), node.clone(), answered_tx.clone());
        let passed = tokio::task::spawn_blocking(move || {
            pass(
                &pass_state,
                &pass_node,
                &image,
                sluice_storage::now_ms(),
                &pass_answered,
            )
        })
        .await;
        if let Err(e) = passed {
            tracing::error!(error = %e, "a leadership pass failed");
        }
        tokio::select! {
            changed = offsets.changed() => if changed.is_err() { return },
            () = tokio::time::sleep(tick) => {}
            Some(()) = answered_rx.recv() => {}
            () = state.topics.isr_check().notified() => woken_by_follower = true,
            _ = shutdown.wait_for(|s| *s) => return,
        }
        if std::mem::take(&mut woken_by_follower) {
            // A follower that keeps looking ready but is refused (KIP-903) must not make
            // every fetch cost a pass.
            tokio::time::sleep(MIN_WAKE_INTERVAL).await;
        }
    }
}

/// One pass over the local partitions.
fn pass(
    state: &BrokerState,
    node: &Arc<ClusterNode>,
    image: &MetadataImage,
    now_ms: i64,
    answered: &mpsc::UnboundedSender<()>,
) {
    let me = node.node_id;
    let max_lag_ms = i64::try_from(state.config.replica_lag_time_max_ms).unwrap_or(i64::MAX);
    for topic in state.topics.list() {
        let topic_image = image.topic_by_id(topic.id);
        let min_insync = min_insync(&topic);
        for partition in topic.partitions().iter() {
            let registration = topic_image.and_then(|t| t.partition(partition.index));
            match registration {
                Some(r) if r.leader == me => {
                    lead(partition, me, topic.id, r, min_insync, now_ms);
                    let proposed = propose_isr(
                        partition,
                        (me, node.broker_epoch()),
                        image,
                        min_insync,
                        max_lag_ms,
                        now_ms,
                    );
                    if let Some(request) = proposed {
                        send_alter_partition(
                            partition.clone(),
                            node.clone(),
                            request,
                            min_insync,
                            answered.clone(),
                        );
                    }
                }
                _ => resign(partition, min_insync),
            }
        }
    }
}

/// The AlterPartition to send for `partition`, if its ISR should change (marked pending).
/// `me`: this broker's id and broker epoch.
fn propose_isr(
    partition: &Partition,
    me: (i32, i64),
    image: &MetadataImage,
    min_insync: usize,
    max_lag_ms: i64,
    now_ms: i64,
) -> Option<AlterPartitionRequest> {
    let mut guard = partition.leadership.lock();
    let state = guard.as_mut()?;
    if let Some(pending) = state
        .pending
        .as_mut()
        .filter(|p| p.retry_at_ms.is_some_and(|at| now_ms >= at))
    {
        // The last answer left its outcome unknown: ask for the same ISR again.
        pending.retry_at_ms = None;
        pending.sent_ms = now_ms;
        let isr = pending.isr.clone();
        let request = alter_partition_request(state, partition.index, me, &isr, image);
        tracing::info!(topic = %partition.topic, partition = partition.index,
            new_isr = ?isr, "asking the controller again to change the ISR");
        return Some(request);
    }
    let end = partition.log.log_end_offset();
    let hw = partition.log.high_watermark();
    // KIP-903: a joining replica must be usable and still the registration that fetched.
    let eligible = |id: i32| {
        image.broker(id).is_some_and(|b| {
            b.is_usable()
                && state
                    .followers
                    .get(&id)
                    .is_none_or(|f| f.broker_epoch < 0 || f.broker_epoch == b.epoch)
        })
    };
    let new_isr = state.next_isr(end, hw, now_ms, max_lag_ms, eligible)?;
    tracing::info!(topic = %partition.topic, partition = partition.index,
        isr = ?state.isr, new_isr = ?new_isr, "asking the controller to change the ISR");
    let request = alter_partition_request(state, partition.index, me, &new_isr, image);
    state.pending = Some(PendingIsr {
        isr: new_isr,
        sent_ms: now_ms,
        retry_at_ms: None,
    });
    settle(partition, guard.as_ref(), min_insync);
    Some(request)
}

/// The AlterPartition asking for `new_isr` on `state`'s partition, with the broker epochs
/// the controller checks (KIP-903): the one each follower fetched with, else the image's.
fn alter_partition_request(
    state: &LeaderState,
    partition: i32,
    me: (i32, i64),
    new_isr: &[i32],
    image: &MetadataImage,
) -> AlterPartitionRequest {
    let members = new_isr
        .iter()
        .map(|&id| IsrMember {
            broker_id: id,
            broker_epoch: if id == me.0 {
                me.1
            } else {
                state
                    .followers
                    .get(&id)
                    .map(|f| f.broker_epoch)
                    .filter(|&e| e >= 0)
                    .or_else(|| image.broker(id).map(|b| b.epoch))
                    .unwrap_or(-1)
            },
        })
        .collect();
    AlterPartitionRequest {
        broker_id: me.0,
        broker_epoch: me.1,
        topic_id: state.topic_id,
        partition,
        leader_epoch: state.leader_epoch,
        partition_epoch: state.partition_epoch,
        new_isr: members,
    }
}

/// Wait before an AlterPartition whose outcome is unknown is sent again.
const ALTER_PARTITION_RETRY_MS: i64 = 500;

/// What a failed AlterPartition says about the change (Kafka's
/// `Partition.handleAlterPartitionError`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AlterFailure {
    /// The controller refused it at the partition's current epochs: nothing was
    /// committed, and nothing else was either, so the committed ISR is still current.
    Refused,
    /// This leader's view is older than the controller's (INVALID_UPDATE_VERSION,
    /// FENCED_LEADER_EPOCH, ...): a change it has not seen was committed, maybe its own
    /// (a resend of a committed change is refused so). The pending ISR keeps counting
    /// until the image settles it.
    Outdated,
    /// No answer, the controller moved, or an unexpected refusal: it may have been
    /// committed; sent again shortly.
    Unknown,
}

fn alter_partition_failure(e: &sluice_controller::ControllerError) -> AlterFailure {
    use sluice_controller::ControllerError as E;
    match e {
        E::Request(inner) => match inner.kafka_error_name() {
            // Checked after the epochs: the request was current and is only refused.
            "INELIGIBLE_REPLICA" => AlterFailure::Refused,
            // Dropping the pending ISR on these would let the high watermark count the
            // old ISR while a newer leader (a completed reassignment) may lack its tail.
            "INVALID_UPDATE_VERSION"
            | "FENCED_LEADER_EPOCH"
            | "STALE_BROKER_EPOCH"
            | "UNKNOWN_TOPIC_ID"
            | "UNKNOWN_TOPIC_OR_PARTITION" => AlterFailure::Outdated,
            // NOT_CONTROLLER: nothing was decided. Others (INVALID_REQUEST) are not
            // expected from a current leader: retried, as Kafka does.
            _ => AlterFailure::Unknown,
        },
        _ => AlterFailure::Unknown,
    }
}

/// Sends an AlterPartition and settles the pending change with its answer: the
/// committed registration, or on an error nothing (the next pass decides again).
fn send_alter_partition(
    partition: Arc<Partition>,
    node: Arc<ClusterNode>,
    request: AlterPartitionRequest,
    min_insync: usize,
    answered: mpsc::UnboundedSender<()>,
) {
    tokio::spawn(async move {
        let answer = node.service.alter_partition(request.clone()).await;
        {
            let mut guard = partition.leadership.lock();
            if let Some(state) = guard.as_mut().filter(|s| {
                s.topic_id == request.topic_id && s.leader_epoch == request.leader_epoch
            }) {
                let ours = state.pending.as_ref().is_some_and(|p| {
                    p.isr
                        .iter()
                        .copied()
                        .eq(request.new_isr.iter().map(|m| m.broker_id))
                });
                let now_ms = sluice_storage::now_ms();
                match answer {
                    Ok(committed) => {
                        tracing::info!(topic = %partition.topic, partition = partition.index,
                            isr = ?committed.value.isr, partition_epoch = committed.value.partition_epoch,
                            "ISR changed");
                        if committed.value.leader_epoch == state.leader_epoch {
                            state.apply_registration(&committed.value, now_ms);
                            if ours {
                                state.pending = None;
                            }
                        }
                        // Otherwise the change also ended this leadership (a
                        // reassignment completed and moved the leader away): the pending
                        // ISR keeps counting until the image makes this broker resign.
                        // Dropping it would let the high watermark jump to this log's end
                        // with the old ISR and acknowledge writes the new leader lacks.
                    }
                    Err(e) => match alter_partition_failure(&e) {
                        // Nothing was committed: drop the change; the next pass decides again.
                        AlterFailure::Refused => {
                            tracing::info!(topic = %partition.topic, partition = partition.index,
                                error = %e, "the controller refused the ISR change");
                            if ours {
                                state.pending = None;
                            }
                        }
                        // Committed by a change this leader has not seen yet (or refused
                        // for it): the image brings the newer partition epoch and settles
                        // the pending change.
                        AlterFailure::Outdated => {
                            tracing::info!(topic = %partition.topic, partition = partition.index,
                                error = %e, "the ISR change was decided on an old partition epoch; waiting for the metadata");
                        }
                        // Perhaps committed: keep counting the pending ISR and ask again.
                        AlterFailure::Unknown => {
                            tracing::info!(topic = %partition.topic, partition = partition.index,
                                error = %e, "the ISR change's outcome is unknown; asking again shortly");
                            if let Some(pending) = state.pending.as_mut().filter(|_| ours) {
                                pending.retry_at_ms = Some(now_ms + ALTER_PARTITION_RETRY_MS);
                            }
                        }
                    },
                }
                settle(&partition, guard.as_ref(), min_insync);
            }
        }
        let _ = answered.send(());
    });
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use sluice_metadata::records::{MetadataRecord, PartitionChangeRecord, PartitionRecord};

    use super::*;
    use crate::cluster::test_images::{brokers, image, topic};
    use crate::topic_config::{FlushMode, TopicConfig};
    use crate::topics::{Layout, TopicRegistry};

    const LAG: i64 = 30_000;

    fn registry(dir: &std::path::Path) -> TopicRegistry {
        let flusher = sluice_storage::Flusher::start("test").unwrap();
        TopicRegistry::load(
            dir,
            flusher,
            TopicConfig::default(),
            FlushMode::Os,
            true,
            Layout::Replicas,
        )
        .unwrap()
        .0
    }

    fn partition_record(id: Uuid) -> MetadataRecord {
        MetadataRecord::Partition(PartitionRecord {
            topic_id: id,
            partition_id: 0,
            replicas: vec![1, 2, 3],
            isr: vec![1, 2, 3],
            leader: 1,
            leader_epoch: 4,
            partition_epoch: 0,
        })
    }

    /// The leader task's decisions on one partition, at given clocks: the ISR shrinks
    /// when a follower lags, grows when it caught up, one request at a time, with the
    /// broker epochs the controller checks.
    #[test]
    fn isr_changes_are_proposed_one_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let topics = registry(dir.path());
        let topic_id = Uuid::from_u128(5);
        topics
            .ensure_replica("t", topic_id, 0, &BTreeMap::new())
            .unwrap();
        let p = topics.get_by_id(topic_id).unwrap().partition(0).unwrap();
        let mut records = brokers(3);
        records.push(topic("t", topic_id));
        records.push(partition_record(topic_id));
        let img = image(&records);
        let registration = img.topic_by_id(topic_id).unwrap().partition(0).unwrap();
        let t0 = 1_000_000;
        lead(&p, 1, topic_id, registration, 2, t0);
        // A new leader records its epoch at the log end.
        assert_eq!(p.log.latest_epoch(), Some(4));
        assert_eq!(p.leadership.leader_epoch(), Some(4));
        // Nothing to change yet.
        assert!(propose_isr(&p, (1, 9), &img, 2, LAG, t0).is_none());
        // Follower 2 keeps up (at the log end 0), follower 3 never fetches.
        record_follower_fetch(&p, 2, 0, -1, 2, t0 + LAG).unwrap();
        let request = propose_isr(&p, (1, 9), &img, 2, LAG, t0 + LAG + 1).expect("3 lags");
        assert_eq!(request.broker_id, 1);
        assert_eq!(request.broker_epoch, 9);
        assert_eq!((request.leader_epoch, request.partition_epoch), (4, 0));
        let members: Vec<(i32, i64)> = request
            .new_isr
            .iter()
            .map(|m| (m.broker_id, m.broker_epoch))
            .collect();
        // Follower 2 sent no broker epoch (Fetch < v15): the image's registration's.
        let epoch_2 = img.broker(2).unwrap().epoch;
        assert_eq!(members, vec![(1, 9), (2, epoch_2)]);
        // One request in flight.
        assert!(propose_isr(&p, (1, 9), &img, 2, LAG, t0 + LAG + 2).is_none());
        // Its answer was lost (a timeout): it stays pending, counted by the high
        // watermark, and is asked again once the retry time came, unchanged.
        {
            let mut guard = p.leadership.lock();
            let pending = guard.as_mut().unwrap().pending.as_mut().unwrap();
            pending.retry_at_ms = Some(t0 + LAG + 100);
        }
        assert!(propose_isr(&p, (1, 9), &img, 2, LAG, t0 + LAG + 99).is_none());
        let again = propose_isr(&p, (1, 9), &img, 2, LAG, t0 + LAG + 100).expect("asked again");
        assert_eq!(again, request);
        assert!(p.leadership.snapshot().unwrap().pending.is_some());
        assert!(propose_isr(&p, (1, 9), &img, 2, LAG, t0 + LAG + 101).is_none());
        assert_eq!(
            alter_partition_failure(&sluice_controller::ControllerError::Timeout(
                Duration::from_secs(1)
            )),
            AlterFailure::Unknown
        );
        // A resend refused because a change it has not seen was committed (maybe its own,
        // which also moved the leadership: a completed reassignment) keeps the pending
        // ISR; only a refusal at the current epochs drops it.
        let refused = |e: sluice_metadata::MetadataError| {
            alter_partition_failure(&sluice_controller::ControllerError::Request(e))
        };
        assert_eq!(
            refused(sluice_metadata::MetadataError::NotLeader {
                broker_id: 1,
                leader_epoch: 0
            }),
            AlterFailure::Outdated
        );
        assert_eq!(
            refused(sluice_metadata::MetadataError::InvalidUpdateVersion { got: 0, current: 1 }),
            AlterFailure::Outdated
        );
        assert_eq!(
            refused(sluice_metadata::MetadataError::IneligibleReplica(
                "3".into()
            )),
            AlterFailure::Refused
        );
        // The controller commits it: the image's new registration settles it.
        records.push(MetadataRecord::PartitionChange(PartitionChangeRecord {
            topic_id,
            partition_id: 0,
            leader: None,
            isr: Some(vec![1, 2]),
            replicas: None,
            expected_partition_epoch: Some(0),
            adding_replicas: None,
            removing_replicas: None,
        }));
        let img = image(&records);
        let registration = img.topic_by_id(topic_id).unwrap().partition(0).unwrap();
        lead(&p, 1, topic_id, registration, 2, t0 + LAG + 3);
        let state = p.leadership.snapshot().unwrap();
        assert_eq!(state.isr, vec![1, 2]);
        assert!(state.pending.is_none());
        // Follower 3 catches up to the HW (0) with a fetch from another registration
        // (epoch 77, not the image's): not eligible (KIP-903).
        record_follower_fetch(&p, 3, 0, 77, 2, t0 + LAG + 4).unwrap();
        assert!(propose_isr(&p, (1, 9), &img, 2, LAG, t0 + LAG + 4).is_none());
        // The same registration as in the image: it joins.
        let epoch_3 = img.broker(3).unwrap().epoch;
        record_follower_fetch(&p, 3, 0, epoch_3, 2, t0 + LAG + 5).unwrap();
        let request = propose_isr(&p, (1, 9), &img, 2, LAG, t0 + LAG + 5).expect("3 joins");
        let ids: Vec<i32> = request.new_isr.iter().map(|m| m.broker_id).collect();
        assert_eq!(ids, vec![1, 2, 3]);
        assert_eq!(request.partition_epoch, 1);
        // Another broker leads it now: resigned, nothing proposed.
        resign(&p, 2);
        assert_eq!(p.leadership.leader_epoch(), None);
        assert!(propose_isr(&p, (1, 9), &img, 2, LAG, t0 + LAG + 6).is_none());
    }
}
