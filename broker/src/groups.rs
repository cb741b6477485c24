//! The group coordinator's I/O side: drives the sans-IO [`GroupCoordinator`] (see the
//! contract in [`crate::coordinator`]) against the broker's real `__consumer_offsets` log,
//! clock and connections.
//!
//! - At start, [`prepare`] creates `__consumer_offsets` if it is missing, before the
//!   listener accepts anything, so no client can auto-create it with the wrong settings
//!   first. Its partition count is `offsets.topic.num.partitions` when created and the
//!   existing topic's afterwards (a group's home partition must never change).
//! - [`run`] (the groups task) replays every partition into a fresh coordinator on a
//!   blocking thread, swaps it in and calls `finish_load`; until then every group API
//!   answers COORDINATOR_LOAD_IN_PROGRESS (produce and fetch are served meanwhile). It
//!   then is the timer: it sleeps until `next_deadline()` and calls `tick`; every call
//!   that moves the deadline earlier wakes it ([`Notify`]), so nothing polls.
//! - A cluster broker does neither: `cluster::groups` makes its coordinator own no
//!   partition ([`Groups::set_unowned`]), then follows the metadata image:
//!   [`Groups::take_partitions`] gives up the partitions it no longer leads and starts
//!   loading the new ones; each is replayed into a coordinator of its own on a blocking
//!   thread ([`Groups::replay_for_adoption`], no lock held) and handed over with
//!   [`Groups::adopt`], unless the partition was given up or taken at a new leader epoch
//!   meanwhile. The same lock orders these with the requests, so a request sees a
//!   partition not owned, loading, or loaded, never half of one.
//! - Requests go through [`Groups::call`] / [`Groups::call_parking`] (mutating) or
//!   [`Groups::read`].
//!
//! # One lock, not an actor
//!
//! The coordinator sits behind one `tokio::sync::Mutex`. While it is held a call runs the
//! state machine, appends its writes (synchronous page-cache writes, as Produce does
//! inline) and registers a parked JoinGroup/SyncGroup under its ticket; it is never held
//! across an `.await`. The lock is what gives the contract's ordering for free: writes
//! reach each partition in the order the coordinator produced them, and a ticket is
//! registered before any later call can complete it. An actor task with an mpsc would
//! serialize the same way, with a channel hop and a reply channel per request and no
//! gain: the critical section is microseconds, group traffic is light, and the slow part
//! (fsync) happens outside the lock either way. The tokio mutex (rather than `std`'s)
//! keeps a waiting connection from blocking a runtime thread while another call appends.
//!
//! # After the lock: durability, replies, completions
//!
//! A call's answers wait until the high watermark passed its records (every ISR member
//! has them: Kafka's coordinator appends with acks=all, so an acknowledged commit
//! survives the loss of the leader; with an ISR of one that is at once), failing
//! COORDINATOR_NOT_AVAILABLE after `COMMIT_TIMEOUT` or NOT_COORDINATOR when leadership
//! moved; with flush policy `always` also until they are fsynced (`wait_durable`), as an
//! acks=all produce would. Those waits and the delivery of the
//! call's completions (answers to JoinGroup/SyncGroup requests parked by other calls,
//! sent through oneshot channels keyed by ticket) run in a spawned task, never inside a
//! connection's ordered reply queue: a connection whose queue is stuck behind a parked
//! JoinGroup could otherwise never deliver the completion that unparks it. A failed
//! append or fsync turns every answer of that call into the error Kafka gives
//! ([`Output::fail`]).
//!
//! Reads wait too: the coordinator's state changes when a call appends, before the high
//! watermark passes the records, so an OffsetFetch answer is held until it does
//! ([`Groups::fetch_offsets`]); a client never sees an appended commit that a failover
//! could undo. (A commit whose append failed stays in memory until the partition is
//! loaded again; Kafka's coordinator reverts it.)
//! DescribeGroups and ListGroups answer at once (membership is rebuilt by rejoining).
//!
//! `__consumer_offsets` is compacted (`cleanup.policy=compact`): the broker's log cleaner
//! keeps each key's latest record, so nothing here deletes records. The cleaner never
//! drops an older value for a record above the high watermark or not yet fsynced, so a
//! commit lost in a failover or a power cut leaves the one before it, as with Kafka.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use sluice_storage::batch::{batches, BatchHeader};
use sluice_storage::{BatchError, FlushPolicy, ReadBound, StorageError};
use tokio::sync::{oneshot, watch, Mutex, Notify};
use tokio::task::{JoinError, JoinHandle};
use tokio::time::Instant;

use crate::coordinator::handlers::{CoordinatorNode, FetchAsk};
use crate::coordinator::{
    Completion, CoordinatorConfig, Failable, FetchResponse, GroupCoordinator, LogWrite, Output,
    Ownership, PartitionLag, Reply, StoreError, Ticket, OFFSETS_TOPIC,
};
use crate::errors::{storage_error_code, BrokerError};
use crate::replication::leader::{self, ReplicationWait as AppendWait};
use crate::state::BrokerState;
use crate::topics::{Partition, Topic};

/// `segment.bytes` of `__consumer_offsets` when created: the cleaner never cleans the
/// active segment, so smaller segments than Kafka's 100 MiB bound what a partition holds
/// beyond its live state, and what a new coordinator replays.
pub const OFFSETS_SEGMENT_BYTES: i64 = 16 * 1024 * 1024;

/// `max.message.bytes` of `__consumer_offsets`. The coordinator cuts batches at
/// `offsets_batch_bytes` (512 KiB), but one record (a group with many members and large
/// assignments) may be bigger; a whole segment is the limit the log can take anyway.
pub const OFFSETS_MAX_MESSAGE_BYTES: i64 = OFFSETS_SEGMENT_BYTES;

/// How much of a partition one read returns while loading.
const LOAD_READ_BYTES: usize = 4 * 1024 * 1024;

/// How long a coordinator write waits for the high watermark to pass it (Kafka's
/// `offsets.commit.timeout.ms` default); then the request fails COORDINATOR_NOT_AVAILABLE.
const COMMIT_TIMEOUT: Duration = Duration::from_millis(5_000);

/// The longest the timer sleeps in one go (deadlines are far less; this only keeps the
/// instant arithmetic from overflowing).
const MAX_SLEEP: Duration = Duration::from_secs(24 * 60 * 60);

/// The topic configs `__consumer_offsets` is created with: compacted (retention never
/// deletes its segments; the cleaner keeps it small), small segments, large batches.
pub fn offsets_topic_overrides() -> std::collections::BTreeMap<String, String> {
    [
        ("cleanup.policy", "compact".to_owned()),
        ("segment.bytes", OFFSETS_SEGMENT_BYTES.to_string()),
        ("max.message.bytes", OFFSETS_MAX_MESSAGE_BYTES.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Milliseconds on a monotonic clock anchored to the wall clock at start: commit
/// timestamps are persisted and compared across restarts, but a wall-clock step must not
/// expire sessions early or late.
#[derive(Debug, Clone, Copy)]
struct Clock {
    wall_ms: i64,
    at: Instant,
}

impl Clock {
    fn new() -> Clock {
        Clock {
            wall_ms: sluice_storage::now_ms(),
            at: Instant::now(),
        }
    }

    fn now_ms(&self) -> i64 {
        self.wall_ms + self.at.elapsed().as_millis() as i64
    }

    /// The instant at which [`Clock::now_ms`] reaches `ms` (rounded up).
    fn instant_at(&self, ms: i64) -> Instant {
        let delay = Duration::from_millis(ms.saturating_sub(self.wall_ms).max(0) as u64);
        let now = Instant::now();
        let at = self.at.checked_add(delay).unwrap_or(now + MAX_SLEEP);
        at.min(now + MAX_SLEEP)
    }
}

/// Why `__consumer_offsets` could not be loaded. The coordinator then stays unavailable
/// (FindCoordinator answers COORDINATOR_NOT_AVAILABLE) rather than serve offsets that
/// may be missing; produce and fetch are unaffected.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("reading {OFFSETS_TOPIC}-{partition}: {source}")]
    Read {
        partition: i32,
        #[source]
        source: StorageError,
    },
    #[error("reading {OFFSETS_TOPIC}-{partition}: {source}")]
    Batch {
        partition: i32,
        #[source]
        source: BatchError,
    },
    #[error(
        "{OFFSETS_TOPIC}-{partition}: no batch at offset {offset} below the log end {log_end}"
    )]
    Gap {
        partition: i32,
        offset: i64,
        log_end: i64,
    },
    #[error(transparent)]
    Replay(#[from] StoreError),
    #[error("{OFFSETS_TOPIC} does not exist")]
    NoTopic,
    #[error("replaying {OFFSETS_TOPIC}-{partition} panicked: {message}")]
    Panicked { partition: i32, message: String },
}

/// What loading found, for the log line.
#[derive(Debug, Default, Clone, Copy)]
struct LoadReport {
    partitions: usize,
    batches: usize,
    records: usize,
}

/// What the lock guards.
struct Inner {
    coordinator: GroupCoordinator,
    /// Where to send the answer of each parked JoinGroup/SyncGroup.
    parked: HashMap<Ticket, oneshot::Sender<Completion>>,
    /// A cluster broker: the `__consumer_offsets` partitions it took (loading or loaded),
    /// with the leader epoch it took them at (see [`Groups::take_partitions`]).
    taken: BTreeMap<i32, i32>,
}

/// The consumer-group coordinator of this broker with its I/O; see the module docs.
pub struct Groups {
    inner: Mutex<Inner>,
    config: CoordinatorConfig,
    /// `__consumer_offsets`, once [`prepare`] made sure it exists (a cluster broker: once
    /// it holds a replica, see [`Groups::set_topic`]).
    topic: RwLock<Option<Arc<Topic>>>,
    /// Loading failed: the coordinator stays unavailable.
    failed: AtomicBool,
    /// A cluster broker: partitions whose loading failed (they stay unavailable until
    /// this broker gives them up).
    failed_partitions: std::sync::Mutex<BTreeSet<i32>>,
    clock: Clock,
    /// Wakes the timer task when a call moved the next deadline earlier.
    timer: Notify,
    /// The deadline (coordinator ms) the timer task sleeps until; `i64::MAX` for none.
    armed: AtomicI64,
}

/// The answers of one call whose records are appended: ready now, or once they are
/// durable (a spawned task, which also delivers the call's completions).
pub enum Settled<R> {
    Now(R),
    Later(JoinHandle<R>),
}

impl<R> Settled<R> {
    /// The answer, once the call's records are durable.
    pub async fn wait(self) -> Result<R, JoinError> {
        match self {
            Settled::Now(r) => Ok(r),
            Settled::Later(task) => task.await,
        }
    }
}

impl Groups {
    /// A coordinator that answers COORDINATOR_LOAD_IN_PROGRESS until [`run`] has loaded
    /// `__consumer_offsets`.
    pub fn new(config: CoordinatorConfig) -> Groups {
        Groups {
            inner: Mutex::new(Inner {
                coordinator: GroupCoordinator::new_loading(config.clone()),
                parked: HashMap::new(),
                taken: BTreeMap::new(),
            }),
            config,
            topic: RwLock::new(None),
            failed: AtomicBool::new(false),
            failed_partitions: Default::default(),
            clock: Clock::new(),
            timer: Notify::new(),
            armed: AtomicI64::new(i64::MAX),
        }
    }

    /// `offsets.topic.num.partitions`.
    pub fn offsets_topic_partitions(&self) -> i32 {
        self.config.offsets_topic_num_partitions
    }

    /// The coordinator's clock (milliseconds, wall-clock based, monotonic).
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// The node to name in FindCoordinator answers for the group (or transactional id)
    /// `key`. A single node: this broker, once `__consumer_offsets` exists and unless
    /// loading it failed. A cluster: the leader of the key's partition (see
    /// `cluster::groups`). None: COORDINATOR_NOT_AVAILABLE, which clients retry.
    pub fn coordinator_node(&self, state: &BrokerState, key: &str) -> Option<CoordinatorNode> {
        if let Some(node) = &state.cluster {
            // A full voter whose image stopped names no coordinator for the partitions it
            // leads there: clients ask again, and another broker knows where they went.
            let full_and_stale = crate::cluster::routing::full_and_stale(state, node);
            return crate::cluster::groups::coordinator(node, key, full_and_stale, |p| {
                self.partition_failed(p)
            });
        }
        if self.topic().is_none() || self.failed.load(Ordering::Acquire) {
            return None;
        }
        let (host, port) = state.advertised();
        Some(CoordinatorNode {
            node_id: state.node_id,
            host,
            port,
        })
    }

    /// Whether loading `partition` failed here (a cluster broker).
    pub fn partition_failed(&self, partition: i32) -> bool {
        self.failed_partitions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&partition)
    }

    // ---- a cluster broker: partitions taken and given up ----------------------------

    /// Makes this a cluster broker's coordinator that owns no partition (every group
    /// request answers NOT_COORDINATOR) for a `__consumer_offsets` of `partitions`
    /// partitions. Does nothing if it already is one of that size; refused (false, with
    /// the partitions taken kept) if partitions were taken at another size: a group's
    /// partition must not move under it.
    pub async fn set_unowned(&self, partitions: i32) -> bool {
        let partitions = partitions.max(1);
        let mut inner = self.inner.lock().await;
        let current = inner.coordinator.config().offsets_topic_num_partitions;
        if !inner.taken.is_empty() {
            return current == partitions;
        }
        let unowned = inner.coordinator.partitions_in(Ownership::NotOwned).len();
        if current == partitions && unowned == partitions as usize {
            return true;
        }
        if partitions != self.config.offsets_topic_num_partitions {
            tracing::warn!(
                configured = self.config.offsets_topic_num_partitions,
                existing = partitions,
                "offsets.topic.num.partitions differs from the cluster's {OFFSETS_TOPIC}; \
                 using the existing partition count (groups' partitions must not move)"
            );
        }
        inner.coordinator = GroupCoordinator::new_unowned(self.sized(partitions));
        true
    }

    /// The coordinator config for a `__consumer_offsets` of `partitions` partitions.
    fn sized(&self, partitions: i32) -> CoordinatorConfig {
        CoordinatorConfig {
            offsets_topic_num_partitions: partitions,
            ..self.config.clone()
        }
    }

    /// Makes the partitions this broker serves those of `leading` (partition -> leader
    /// epoch; what the metadata image says it leads and holds locally): gives up the
    /// partitions taken that are not in it or were taken at another epoch (their groups'
    /// parked requests answer NOT_COORDINATOR), and starts loading the new ones. Returns
    /// the partitions to load now, with their epoch: replay each with
    /// [`Groups::replay_for_adoption`], then [`Groups::adopt`].
    pub async fn take_partitions(&self, leading: &BTreeMap<i32, i32>) -> Vec<(i32, i32)> {
        let mut inner = self.inner.lock().await;
        let now = self.clock.now_ms();
        let give_up: Vec<i32> = inner
            .taken
            .iter()
            .filter(|(p, epoch)| leading.get(p) != Some(epoch))
            .map(|(p, _)| *p)
            .collect();
        for partition in give_up {
            inner.taken.remove(&partition);
            self.failed_partitions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&partition);
            let output = inner.coordinator.unload_partition(partition);
            let _settled = self.apply(&mut inner, output, now);
        }
        let mut to_load = Vec::new();
        for (&partition, &epoch) in leading {
            if inner.taken.contains_key(&partition)
                || inner.coordinator.ownership(partition).is_none()
            {
                continue;
            }
            inner.taken.insert(partition, epoch);
            let output = inner.coordinator.load_partition(partition);
            let _settled = self.apply(&mut inner, output, now);
            to_load.push((partition, epoch));
        }
        self.rearm(&inner);
        to_load
    }

    /// Replays `__consumer_offsets-{partition}` into a coordinator of its own (blocking),
    /// for [`Groups::adopt`].
    pub fn replay_for_adoption(
        &self,
        partition: &Partition,
        partitions: i32,
    ) -> Result<GroupCoordinator, LoadError> {
        let mut coordinator = GroupCoordinator::new_loading(self.sized(partitions));
        let mut report = LoadReport::default();
        replay_partition(&mut coordinator, partition, &mut report)?;
        Ok(coordinator)
    }

    /// Serves `partition` with the state `loaded` replayed from it, unless it was given
    /// up or taken again at another epoch meanwhile (then the replay is dropped). A failed
    /// replay leaves the partition unavailable (COORDINATOR_NOT_AVAILABLE) until it is
    /// given up.
    pub async fn adopt(
        &self,
        partition: i32,
        epoch: i32,
        loaded: Result<GroupCoordinator, LoadError>,
    ) {
        let mut inner = self.inner.lock().await;
        if inner.taken.get(&partition) != Some(&epoch) {
            return;
        }
        match loaded {
            Ok(loaded) => {
                let now = self.clock.now_ms();
                let output = inner.coordinator.adopt_partition(partition, loaded, now);
                let _settled = self.apply(&mut inner, output, now);
                self.rearm(&inner);
            }
            Err(e) => {
                tracing::error!(partition, error = %e, "cannot load {OFFSETS_TOPIC}-{partition}: its groups are unavailable");
                self.failed_partitions
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(partition);
            }
        }
    }

    /// The partitions this coordinator serves (loaded), for tests and logs.
    pub async fn loaded_partitions(&self) -> Vec<i32> {
        self.inner
            .lock()
            .await
            .coordinator
            .partitions_in(Ownership::Loaded)
    }

    /// Makes `topic` the local `__consumer_offsets` appends go to (a cluster broker, once
    /// it holds a replica of it).
    pub fn set_topic(&self, topic: Arc<Topic>) {
        let mut slot = self.topic.write().unwrap_or_else(|p| p.into_inner());
        if !slot.as_ref().is_some_and(|t| Arc::ptr_eq(t, &topic)) {
            *slot = Some(topic);
        }
    }

    fn topic(&self) -> Option<Arc<Topic>> {
        self.topic.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether `__consumer_offsets` has been replayed and group APIs are served.
    pub async fn is_loaded(&self) -> bool {
        !self.inner.lock().await.coordinator.is_loading()
    }

    /// Runs a mutating coordinator call (`f` gets the coordinator and the time), appends
    /// its writes and returns its answer, settled per the module docs.
    pub async fn call<R, F>(&self, f: F) -> Settled<R>
    where
        R: Failable + Send + 'static,
        F: FnOnce(&mut GroupCoordinator, i64) -> Output<R>,
    {
        self.call_inner(f, |_| None).await.0
    }

    /// [`Groups::call`] for JoinGroup and SyncGroup: a [`Reply::Pending`] answer comes
    /// with the receiver its completion will be sent to.
    pub async fn call_parking<T, F>(
        &self,
        f: F,
    ) -> (Settled<Reply<T>>, Option<oneshot::Receiver<Completion>>)
    where
        T: Failable + Send + 'static,
        F: FnOnce(&mut GroupCoordinator, i64) -> Output<Reply<T>>,
    {
        self.call_inner(f, Reply::ticket).await
    }

    async fn call_inner<R, F>(
        &self,
        f: F,
        ticket: impl FnOnce(&R) -> Option<Ticket>,
    ) -> (Settled<R>, Option<oneshot::Receiver<Completion>>)
    where
        R: Failable + Send + 'static,
        F: FnOnce(&mut GroupCoordinator, i64) -> Output<R>,
    {
        let mut inner = self.inner.lock().await;
        let now = self.clock.now_ms();
        let output = f(&mut inner.coordinator, now);
        // Registered under the lock, so no later call can complete the ticket first.
        let parked = ticket(&output.reply).map(|ticket| {
            let (tx, rx) = oneshot::channel();
            inner.parked.insert(ticket, tx);
            rx
        });
        let settled = self.apply(&mut inner, output, now);
        self.rearm(&inner);
        (settled, parked)
    }

    /// Runs a read-only coordinator call (OffsetFetch, ListGroups, DescribeGroups).
    pub async fn read<T>(&self, f: impl FnOnce(&GroupCoordinator) -> T) -> T {
        let inner = self.inner.lock().await;
        f(&inner.coordinator)
    }

    /// OffsetFetch: each group's committed offsets, answered (`answer`) only once the
    /// records they come from are replicated, so a client never sees a commit that a
    /// failover could still undo. The coordinator applies a commit when it appends the
    /// record, before the high watermark passes it; this answer waits until the high
    /// watermark reaches the log end the state was read at (at once when nothing is in
    /// flight, as on a single node), as Kafka's coordinator answers a stable OffsetFetch
    /// (`require_stable`, which the Java consumer and librdkafka set). A group whose
    /// partition cannot get there (leadership moved, the ISR fell below
    /// `min.insync.replicas`, `COMMIT_TIMEOUT`) gets NOT_COORDINATOR or
    /// COORDINATOR_NOT_AVAILABLE instead, so the client asks again.
    pub async fn fetch_offsets<R, F>(&self, asks: Vec<FetchAsk>, answer: F) -> Settled<R>
    where
        R: Send + 'static,
        F: FnOnce(&[FetchAsk], Vec<FetchResponse>) -> R + Send + 'static,
    {
        let inner = self.inner.lock().await;
        let mut fetched = Vec::with_capacity(asks.len());
        let mut partitions = Vec::with_capacity(asks.len());
        let mut waits: BTreeMap<i32, AppendWait> = BTreeMap::new();
        for ask in &asks {
            let offsets = inner
                .coordinator
                .fetch_offsets(&ask.group_id, ask.topics.as_deref());
            let partition = inner.coordinator.partition_for(&ask.group_id);
            if offsets.error.is_none() && !waits.contains_key(&partition) {
                if let Some(wait) = self.replicated_barrier(partition, &inner.taken) {
                    waits.insert(partition, wait);
                }
            }
            fetched.push(offsets);
            partitions.push(partition);
        }
        drop(inner);
        if waits.is_empty() {
            return Settled::Now(answer(&asks, fetched));
        }
        Settled::Later(tokio::spawn(async move {
            let mut failed = BTreeMap::new();
            for (partition, wait) in waits {
                if let Err(code) = wait.await {
                    failed.insert(partition, crate::coordinator::append_error(code));
                }
            }
            for (offsets, partition) in fetched.iter_mut().zip(&partitions) {
                if let Some(&error) = failed.get(partition) {
                    *offsets = FetchResponse {
                        error: Some(error),
                        topics: Vec::new(),
                    };
                }
            }
            answer(&asks, fetched)
        }))
    }

    /// A wait until the high watermark of `__consumer_offsets-{partition}` reaches its
    /// log end as of now; None if it already has (or there is no such partition here).
    /// Called with the lock held, so the log end covers every record the coordinator's
    /// state reflects.
    fn replicated_barrier(&self, partition: i32, taken: &BTreeMap<i32, i32>) -> Option<AppendWait> {
        let topic = self.topic()?;
        let log_partition = topic.partition(partition)?;
        let end = log_partition.log.log_end_offset();
        if log_partition.log.high_watermark() >= end {
            return None;
        }
        let leader_epoch = taken.get(&partition).copied().unwrap_or(0);
        Some(leader::wait_replicated(
            &log_partition,
            leader_epoch,
            end,
            leader::min_insync(&topic),
            tokio::time::Instant::now() + COMMIT_TIMEOUT,
        ))
    }

    /// Consumer lag of `group` per partition (log end = the partition's high watermark);
    /// None if the group does not exist.
    pub async fn group_lag(&self, state: &BrokerState, group: &str) -> Option<Vec<PartitionLag>> {
        self.read(|c| {
            c.group_lag(group, |topic, partition| {
                let topic = state.topics.get(topic)?;
                Some(topic.partition(partition)?.log.high_watermark())
            })
        })
        .await
    }

    /// Appends `output`'s writes (under the lock), then settles its answers: sends the
    /// completions and returns the reply now, or in a task once the records are durable
    /// and replicated (the high watermark passed them: Kafka's coordinator appends with
    /// acks=all, so an acknowledged commit survives the loss of the leader).
    fn apply<R: Failable + Send + 'static>(
        &self,
        inner: &mut Inner,
        mut output: Output<R>,
        now: i64,
    ) -> Settled<R> {
        let writes = std::mem::take(&mut output.writes);
        let waits = match self.append(writes, now, &inner.taken) {
            Ok(waits) => waits,
            Err(error) => {
                output.fail(error);
                Vec::new()
            }
        };
        let senders: Vec<(Ticket, oneshot::Sender<Completion>)> = output
            .completions
            .iter()
            .filter_map(|c| {
                let ticket = c.ticket();
                inner.parked.remove(&ticket).map(|tx| (ticket, tx))
            })
            .collect();
        if waits.is_empty() {
            deliver(std::mem::take(&mut output.completions), senders);
            return Settled::Now(output.reply);
        }
        Settled::Later(tokio::spawn(async move {
            for wait in waits {
                if let Err(code) = wait.await {
                    output.fail(code);
                    break;
                }
            }
            deliver(std::mem::take(&mut output.completions), senders);
            output.reply
        }))
    }

    /// Appends writes to their `__consumer_offsets` partitions in order, stamped with the
    /// leader epoch each partition was taken at (`taken`; 0 on a single node, as Produce
    /// stamps its batches); returns the durability waits (flush policy `always`), or the
    /// Kafka code of the first failure (nothing after it is appended).
    fn append(
        &self,
        writes: Vec<LogWrite>,
        now: i64,
        taken: &BTreeMap<i32, i32>,
    ) -> Result<Vec<AppendWait>, ResponseError> {
        let mut waits: Vec<AppendWait> = Vec::new();
        // Kafka's `offsets.commit.timeout.ms` default.
        let deadline = tokio::time::Instant::now() + COMMIT_TIMEOUT;
        if writes.is_empty() {
            return Ok(waits);
        }
        let Some(topic) = self.topic() else {
            tracing::error!("group coordinator records to write but no {OFFSETS_TOPIC}");
            return Err(ResponseError::UnknownTopicOrPartition);
        };
        for write in writes {
            let Some(partition) = topic.partition(write.partition) else {
                tracing::error!(
                    partition = write.partition,
                    "{OFFSETS_TOPIC} has no such partition"
                );
                return Err(ResponseError::UnknownTopicOrPartition);
            };
            let leader_epoch = taken.get(&write.partition).copied().unwrap_or(0);
            let info = partition
                .log
                .append(&write.records, leader_epoch, now)
                .map_err(|e| {
                    tracing::error!(partition = write.partition, error = %e, "cannot append to {OFFSETS_TOPIC}");
                    storage_error_code(&e)
                })?;
            partition.notify_appended();
            // The coordinator writes as the partition's leader: its records count toward
            // the high watermark like a produce's.
            let min_insync = leader::min_insync(&topic);
            let high_watermark = leader::after_append(&partition, min_insync);
            let end = info.last_offset + 1;
            if partition.log.config().flush == FlushPolicy::Always {
                let durable = partition.log.wait_durable(end);
                waits.push(Box::pin(async move {
                    durable.await.map_err(|e| {
                        tracing::error!(error = %e, "group coordinator records appended but not made durable");
                        storage_error_code(&e)
                    })
                }));
            }
            if high_watermark < end {
                waits.push(leader::wait_replicated(
                    &partition,
                    leader_epoch,
                    end,
                    min_insync,
                    deadline,
                ));
            }
        }
        Ok(waits)
    }

    /// Wakes the timer task if the coordinator's next deadline is now earlier than the
    /// one it sleeps until. Called with the lock held, as the timer task stores `armed`.
    fn rearm(&self, inner: &Inner) {
        if let Some(deadline) = inner.coordinator.next_deadline() {
            if deadline < self.armed.load(Ordering::Acquire) {
                self.armed.store(deadline, Ordering::Release);
                self.timer.notify_one();
            }
        }
    }

    /// Replays every partition of `__consumer_offsets` into a new coordinator (blocking).
    fn load_blocking(&self) -> Result<(GroupCoordinator, LoadReport), LoadError> {
        let topic = self.topic().ok_or(LoadError::NoTopic)?;
        let partitions = topic.partitions();
        let mut config = self.config.clone();
        let count = partitions.len() as i32;
        if count != config.offsets_topic_num_partitions {
            tracing::warn!(
                configured = config.offsets_topic_num_partitions,
                existing = count,
                "offsets.topic.num.partitions differs from the existing {OFFSETS_TOPIC}; \
                 keeping the existing partition count (groups' partitions must not move)"
            );
        }
        config.offsets_topic_num_partitions = count;
        let mut coordinator = GroupCoordinator::new_loading(config);
        let mut report = LoadReport::default();
        for partition in partitions.iter() {
            replay_partition(&mut coordinator, partition, &mut report)?;
            report.partitions += 1;
        }
        Ok((coordinator, report))
    }

    /// Swaps the loaded coordinator in and ends loading.
    async fn install(&self, mut loaded: GroupCoordinator) {
        let mut inner = self.inner.lock().await;
        let now = self.clock.now_ms();
        let output = loaded.finish_load(now);
        // The placeholder answered everything with COORDINATOR_LOAD_IN_PROGRESS, so it
        // parked nothing and holds no state worth keeping.
        inner.coordinator = loaded;
        let _settled = self.apply(&mut inner, output, now);
        self.rearm(&inner);
    }

    /// Calls `tick` whenever the coordinator's next deadline passes, until shutdown.
    pub(crate) async fn timer_loop(&self, shutdown: &mut watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            let deadline = {
                let inner = self.inner.lock().await;
                let deadline = inner.coordinator.next_deadline();
                self.armed
                    .store(deadline.unwrap_or(i64::MAX), Ordering::Release);
                deadline
            };
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(self.clock.instant_at(at)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = sleep => {
                    let mut inner = self.inner.lock().await;
                    let now = self.clock.now_ms();
                    let output = inner.coordinator.tick(now);
                    // Answers for connections that went away need not be kept.
                    inner.parked.retain(|_, tx| !tx.is_closed());
                    let _settled = self.apply(&mut inner, output, now);
                }
                () = self.timer.notified() => {}
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// Sends each completion to the parked request it answers (a request whose connection
/// went away has no receiver any more: its answer is dropped).
fn deliver(completions: Vec<Completion>, mut senders: Vec<(Ticket, oneshot::Sender<Completion>)>) {
    for completion in completions {
        let ticket = completion.ticket();
        if let Some(i) = senders.iter().position(|(t, _)| *t == ticket) {
            let (_, tx) = senders.swap_remove(i);
            let _receiver_gone = tx.send(completion);
        }
    }
}

/// Feeds every batch of one partition, from its log start offset, to the coordinator.
fn replay_partition(
    coordinator: &mut GroupCoordinator,
    partition: &Partition,
    report: &mut LoadReport,
) -> Result<(), LoadError> {
    let index = partition.index;
    let log = &partition.log;
    let start = log.log_start_offset();
    let end = log.log_end_offset();
    let mut offset = start;
    while offset < end {
        // Up to the log end, not the high watermark: the coordinator owns the log, and a
        // new leader's records past the high watermark are its own (Kafka loads to the log
        // end as well).
        let read = match log.read_bounded(offset, LOAD_READ_BYTES, true, ReadBound::LogEnd) {
            Ok(read) => read,
            // Offsets lost to disk damage (reported as an error when found): the commits
            // in them are gone, the ones after them still count.
            Err(StorageError::Damaged { range }) => {
                tracing::error!(partition = index, first_offset = range.first_offset, end_offset = range.end_offset,
                    "skipping a damaged range of {OFFSETS_TOPIC} during replay; offsets committed in it are lost");
                offset = range.end_offset.max(offset + 1);
                continue;
            }
            Err(source) => {
                return Err(LoadError::Read {
                    partition: index,
                    source,
                })
            }
        };
        let before = offset;
        for batch in batches(&read.records) {
            let batch = batch.map_err(|source| LoadError::Batch {
                partition: index,
                source,
            })?;
            let next = BatchHeader::new(batch)
                .map_err(|source| LoadError::Batch {
                    partition: index,
                    source,
                })?
                .next_offset();
            // Records below the log start (a batch cut by DeleteRecords) are skipped by
            // the coordinator itself.
            report.records +=
                coordinator.replay_batch(index, read.records.slice_ref(batch), start)?;
            report.batches += 1;
            offset = offset.max(next);
        }
        if offset == before {
            return Err(LoadError::Gap {
                partition: index,
                offset,
                log_end: end,
            });
        }
    }
    Ok(())
}

/// Makes sure `__consumer_offsets` exists with [`offsets_topic_overrides`] (creating it
/// with `offsets.topic.num.partitions` partitions). Called by `Broker::start` before
/// connections are accepted.
pub async fn prepare(state: &Arc<BrokerState>) -> Result<(), BrokerError> {
    let blocking_state = state.clone();
    let topic = tokio::task::spawn_blocking(move || {
        let state = blocking_state;
        let failed = |e: crate::topics::AdminError| {
            BrokerError::io(
                format!("prepare {OFFSETS_TOPIC}"),
                std::io::Error::other(e.message),
            )
        };
        if let Some(topic) = state.topics.get(OFFSETS_TOPIC) {
            // A topic made by other means (a client's auto-creating Metadata request
            // before this broker had a coordinator) would have retention deleting
            // committed offsets: give it the internal topic's settings. An operator may
            // have changed them since (kafka-configs); only a cleanup policy without
            // `compact` is put back, since `delete` alone would lose committed offsets.
            let mut overrides = topic.overrides();
            let before = overrides.clone();
            for (key, value) in offsets_topic_overrides() {
                let compacted = |policy: &String| policy.split(',').any(|p| p.trim() == "compact");
                match overrides.get(&key) {
                    Some(policy) if key == "cleanup.policy" && !compacted(policy) => {
                        overrides.insert(key, value);
                    }
                    Some(_) => {}
                    None => {
                        overrides.insert(key, value);
                    }
                }
            }
            if overrides != before {
                tracing::warn!(
                    "{OFFSETS_TOPIC} lacked the internal topic's settings; setting them"
                );
                state
                    .topics
                    .set_overrides(&topic, overrides)
                    .map_err(failed)?;
            }
            return Ok(topic);
        }
        state
            .topics
            .create(
                OFFSETS_TOPIC,
                state.groups.config.offsets_topic_num_partitions,
                offsets_topic_overrides(),
            )
            .map_err(failed)
    })
    .await
    .map_err(|e| BrokerError::io(format!("create {OFFSETS_TOPIC}"), std::io::Error::other(e)))??;
    // A second `prepare` finds the same topic.
    state.groups.set_topic(topic);
    Ok(())
}

/// The groups task: loads `__consumer_offsets`, then runs the coordinator's timers until
/// shutdown. Does nothing if [`prepare`] was not called.
pub async fn run(state: Arc<BrokerState>, mut shutdown: watch::Receiver<bool>) {
    // A cluster broker loads partitions as it gains their leadership (`cluster::groups`).
    if state.cluster.is_some() || state.groups.topic().is_none() {
        return;
    }
    let started = std::time::Instant::now();
    let loading_state = state.clone();
    let load = tokio::task::spawn_blocking(move || loading_state.groups.load_blocking());
    let loaded = tokio::select! {
        loaded = load => loaded,
        // The blocking load finishes on its own; its result is not needed any more.
        _ = shutdown.wait_for(|stop| *stop) => return,
    };
    let groups = &state.groups;
    match loaded {
        Ok(Ok((coordinator, report))) => {
            groups.install(coordinator).await;
            let loaded_groups = groups.read(|c| c.groups().count()).await;
            tracing::info!(
                partitions = report.partitions,
                batches = report.batches,
                records = report.records,
                groups = loaded_groups,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "loaded {OFFSETS_TOPIC}"
            );
        }
        Ok(Err(e)) => {
            groups.failed.store(true, Ordering::Release);
            tracing::error!(error = %e, "cannot load {OFFSETS_TOPIC}: consumer groups are unavailable until it is repaired");
        }
        Err(e) => {
            groups.failed.store(true, Ordering::Release);
            tracing::error!(error = %e, "loading {OFFSETS_TOPIC} panicked: consumer groups are unavailable");
        }
    }
    groups.timer_loop(&mut shutdown).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kafka's coordinator appends with acks=all: a commit to a partition with a follower
    /// in the ISR is answered once the follower has fetched past it.
    #[tokio::test]
    async fn a_commit_is_answered_once_the_high_watermark_passed_it() {
        let (_dir, groups, partition) = leading_an_offsets_partition_with_a_follower().await;
        let answer = commit_offset(&groups, 100).await;
        let end = partition.log.log_end_offset();
        assert!(end > 0, "the commit was appended");
        assert_eq!(partition.log.high_watermark(), 0);
        assert!(!answer.is_finished());
        // The follower fetches past the commit: the high watermark passes it.
        leader::record_follower_fetch(&partition, 2, end, -1, 1, sluice_storage::now_ms()).unwrap();
        assert_eq!(partition.log.high_watermark(), end);
        let response = tokio::time::timeout(Duration::from_secs(10), answer)
            .await
            .expect("answered once replicated")
            .unwrap();
        assert_eq!(response.topics[0].partitions[0].error_code, 0);
    }

    #[tokio::test]
    async fn offset_fetch_shows_a_commit_only_once_it_is_replicated() {
        let (_dir, groups, partition) = leading_an_offsets_partition_with_a_follower().await;
        let _commit = commit_offset(&groups, 100).await;
        let end = partition.log.log_end_offset();
        let fetch = fetch_offset(&groups).await;
        let Settled::Later(fetch) = fetch else {
            panic!("the commit is not replicated: the answer must wait");
        };
        // Long enough for an answer that does not wait to have come.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!fetch.is_finished());
        leader::record_follower_fetch(&partition, 2, end, -1, 1, sluice_storage::now_ms()).unwrap();
        let fetched = tokio::time::timeout(Duration::from_secs(10), fetch)
            .await
            .expect("answered once replicated")
            .unwrap();
        assert_eq!(fetched, (None, Some(100)));
        // Nothing in flight: answered at once.
        let Settled::Now(again) = fetch_offset(&groups).await else {
            panic!("nothing to wait for");
        };
        assert_eq!(again, (None, Some(100)));
    }

    #[tokio::test]
    async fn offset_fetch_of_an_unreplicated_commit_fails_when_leadership_moves() {
        let (_dir, groups, partition) = leading_an_offsets_partition_with_a_follower().await;
        let _commit = commit_offset(&groups, 100).await;
        let Settled::Later(fetch) = fetch_offset(&groups).await else {
            panic!("the commit is not replicated: the answer must wait");
        };
        // Another broker takes over before the follower copied the commit: the value
        // may be lost, so the client must ask the new coordinator.
        leader::resign(&partition, 1);
        let fetched = tokio::time::timeout(Duration::from_secs(10), fetch)
            .await
            .expect("answered when leadership moved")
            .unwrap();
        assert_eq!(fetched, (Some(ResponseError::NotCoordinator), None));
    }

    /// A cluster broker's coordinator leading `__consumer_offsets-0` at epoch 2 with
    /// replicas [1, 2], where follower 2 has copied nothing yet.
    async fn leading_an_offsets_partition_with_a_follower(
    ) -> (tempfile::TempDir, Groups, Arc<Partition>) {
        use sluice_metadata::image::PartitionRegistration;

        let dir = tempfile::tempdir().unwrap();
        let (topics, _) = crate::topics::TopicRegistry::load(
            dir.path(),
            sluice_storage::Flusher::start("test").unwrap(),
            crate::topic_config::TopicConfig::default(),
            crate::topic_config::FlushMode::Os,
            true,
            crate::topics::Layout::Replicas,
        )
        .unwrap();
        let id = uuid::Uuid::from_u128(3);
        topics
            .ensure_replica(OFFSETS_TOPIC, id, 0, &offsets_topic_overrides())
            .unwrap();
        let topic = topics.get_by_id(id).unwrap();
        let partition = topic.partition(0).unwrap();
        let registration = PartitionRegistration {
            replicas: vec![1, 2],
            isr: vec![1, 2],
            leader: 1,
            leader_epoch: 2,
            partition_epoch: 0,
            adding_replicas: Vec::new(),
            removing_replicas: Vec::new(),
        };
        leader::lead(
            &partition,
            1,
            id,
            &registration,
            1,
            sluice_storage::now_ms(),
        );

        let groups = Groups::new(CoordinatorConfig::default());
        groups.set_topic(topic.clone());
        assert!(groups.set_unowned(1).await);
        assert_eq!(
            groups.take_partitions(&BTreeMap::from([(0, 2)])).await,
            vec![(0, 2)]
        );
        let replayed = groups.replay_for_adoption(&partition, 1);
        groups.adopt(0, 2, replayed).await;
        (dir, groups, partition)
    }

    /// Commits `offset` for group "simple", topic "t" partition 0: the answer, which
    /// waits for the follower.
    async fn commit_offset(
        groups: &Groups,
        offset: i64,
    ) -> JoinHandle<kafka_protocol::messages::OffsetCommitResponse> {
        use kafka_protocol::messages::offset_commit_request::{
            OffsetCommitRequestPartition, OffsetCommitRequestTopic,
        };
        use kafka_protocol::messages::{GroupId, OffsetCommitRequest, TopicName};
        use kafka_protocol::protocol::StrBytes;

        let request = OffsetCommitRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("simple")))
            .with_generation_id_or_member_epoch(-1)
            .with_retention_time_ms(-1)
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("t")))
                .with_partitions(vec![OffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(offset)])]);
        let settled = groups
            .call(|c, now| {
                crate::coordinator::handlers::offset_commit(c, &request, 8, |_, _| true, now)
            })
            .await;
        let Settled::Later(answer) = settled else {
            panic!("a commit waits for the follower");
        };
        answer
    }

    /// OffsetFetch of group "simple", topic "t" partition 0: (group error, offset).
    async fn fetch_offset(groups: &Groups) -> Settled<(Option<ResponseError>, Option<i64>)> {
        let ask = FetchAsk {
            group_id: "simple".to_owned(),
            topics: Some(vec![crate::coordinator::FetchTopic {
                name: "t".to_owned(),
                partitions: vec![0],
            }]),
        };
        groups
            .fetch_offsets(vec![ask], |_, fetched| {
                let group = &fetched[0];
                let offset = group
                    .topics
                    .first()
                    .and_then(|t| t.partitions.first())
                    .map(|p| p.offset);
                (group.error, offset)
            })
            .await
    }

    #[test]
    fn clock_deadlines_are_reached_not_undershot() {
        let clock = Clock::new();
        let target = clock.now_ms() + 5;
        let at = clock.instant_at(target);
        std::thread::sleep(at.saturating_duration_since(Instant::now()));
        assert!(clock.now_ms() >= target);
        // Far deadlines are capped instead of overflowing the instant arithmetic.
        let far = clock.instant_at(i64::MAX);
        assert!(far <= Instant::now() + MAX_SLEEP);
    }

    #[tokio::test]
    async fn a_cluster_broker_adopts_a_replay_only_for_the_epoch_it_took_the_partition_at() {
        let groups = Groups::new(CoordinatorConfig::default());
        assert!(groups.set_unowned(4).await);
        let leading = |led: &[(i32, i32)]| led.iter().copied().collect::<BTreeMap<i32, i32>>();
        assert_eq!(
            groups.take_partitions(&leading(&[(1, 3), (2, 0)])).await,
            vec![(1, 3), (2, 0)]
        );
        // Led at the same epochs: nothing new to load.
        assert!(groups
            .take_partitions(&leading(&[(1, 3), (2, 0)]))
            .await
            .is_empty());
        // Partition 1 at a new epoch (another leader may have written): taken again.
        assert_eq!(
            groups.take_partitions(&leading(&[(1, 4), (2, 0)])).await,
            vec![(1, 4)]
        );
        let replayed = || Ok(GroupCoordinator::new_loading(groups.sized(4)));
        groups.adopt(1, 3, replayed()).await;
        assert!(
            groups.loaded_partitions().await.is_empty(),
            "a replay for an old epoch is dropped"
        );
        groups.adopt(1, 4, replayed()).await;
        groups.adopt(2, 0, Err(LoadError::NoTopic)).await;
        assert_eq!(groups.loaded_partitions().await, vec![1]);
        assert!(groups.partition_failed(2) && !groups.partition_failed(1));
        // The partition count cannot change under partitions taken.
        assert!(!groups.set_unowned(8).await);
        // Everything given up (fenced): nothing loaded, nothing failed any more.
        assert!(groups.take_partitions(&BTreeMap::new()).await.is_empty());
        assert!(groups.loaded_partitions().await.is_empty());
        assert!(!groups.partition_failed(2));
        assert!(groups.set_unowned(8).await);
    }

    #[test]
    fn settled_answers_deliver_completions_to_their_tickets() {
        let (tx1, mut rx1) = oneshot::channel();
        let (tx2, rx2) = oneshot::channel();
        drop(rx2);
        let completion = |t| Completion::Sync {
            ticket: Ticket(t),
            response: crate::coordinator::SyncResponse::error(ResponseError::NotCoordinator),
        };
        deliver(
            vec![completion(2), completion(1), completion(3)],
            vec![(Ticket(1), tx1), (Ticket(2), tx2)],
        );
        assert_eq!(rx1.try_recv().unwrap().ticket(), Ticket(1));
    }
}
