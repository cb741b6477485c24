//! The follower's side of replication (Kafka's `ReplicaFetcherManager`,
//! `AbstractFetcherThread` and `ReplicaFetcherThread`): this broker copies the partitions
//! it follows from their leaders by fetching, as Kafka's followers do.
//!
//! **Which partitions.** [`run`] (the manager) follows the metadata image: after every
//! applied change, every reconciler pass that followed one, and every [`POLL`], the
//! followed partitions are those whose `replicas` list this broker, whose leader is
//! another broker, and whose local replica exists (the reconciler creates it,
//! `cluster::reconcile`, just after the change: the pass it ends wakes the manager, so a
//! new replica starts fetching at once rather than at the next poll). They are grouped by leader broker, and
//! within a leader by `hash(partition) % num.replica.fetchers`: one fetcher task per group,
//! each with one TCP connection to the leader's endpoint on this broker's listener
//! (`ClusterNode::listener_name`, from the leader's registration), one request in flight,
//! all its partitions multiplexed into each Fetch. A partition whose leader changes moves
//! to the new leader's fetcher; one whose leader epoch changes (or whose local log was
//! replaced) starts over in the same fetcher; both with a fresh state. A partition no
//! longer followed (this broker became its leader, or left its replicas) is removed at
//! once: removal takes the fetcher's partition lock, which the fetcher holds while it
//! applies a response, so once the manager's pass has removed a partition no record from
//! the old leader is appended to it any more. Each append also checks that the image still
//! names the same leader and epoch, which closes most of the window before the pass runs.
//!
//! **The request** (see [`connection`] for versions): Fetch v17 (v13 at least, for topic
//! ids), `replica_state` = {this node id, this broker's registration epoch} (v15+; before
//! v15 `replica_id`), `max_wait_ms` = `replica.fetch.wait.max.ms`, `min_bytes` =
//! `replica.fetch.min.bytes`, `max_bytes` = `replica.fetch.response.max.bytes`,
//! `isolation_level` 0, no fetch session (`session_id` 0, `session_epoch` -1: every
//! request names all its partitions), and per partition `current_leader_epoch` (the
//! image's), `fetch_offset` (the local log end), `last_fetched_epoch` (the local log's
//! latest epoch, -1 if none), `log_start_offset` (the local one) and
//! `partition_max_bytes` = `replica.fetch.max.bytes`. The leader takes our `fetch_offset`
//! as our log end offset (it moves the high watermark and the ISR).
//!
//! **The answer**, per partition: see [`partition`] (append byte for byte at the same
//! offsets, follow the leader's high watermark and log start, truncate on a diverging
//! epoch, reset on OFFSET_OUT_OF_RANGE with ListOffsets, pause on metadata errors, back off
//! on storage errors). A failed connection, a timeout (`replica.fetch.wait.max.ms` + 30 s)
//! or a frame that does not decode drops the connection (with one log line) and the
//! fetcher reconnects after `replica.fetch.backoff.ms`; an idle fetcher (every partition
//! paused) sleeps until the earliest pause ends or the manager changes its partitions.
//! Nothing loops without waiting.
//!
//! **Durability with `log.flush.policy=always`** (or a topic's `flush.messages=1`): before
//! a fetch reports a partition's new log end to the leader, the fetcher waits until the
//! local log is fsynced up to it (`PartitionLog::wait_durable`); the append itself already
//! asked the flusher for the sync. Since the leader takes a follower's `fetch_offset` as
//! its log end, and answers an acks=all produce only when every ISR member's log end has
//! passed the batch, such an ack means every ISR member (and the leader, whose own
//! acks=all wait includes its fsync) has the batch on disk, not just in its page cache.
//! With the other policies a follower reports what it appended, as in Kafka.

pub mod connection;
pub mod partition;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ReplicaState};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{
    BrokerId, FetchRequest, FetchResponse, ListOffsetsRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use sluice_metadata::MetadataImage;
use tokio::sync::{watch, Mutex, Notify};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::cluster::ClusterNode;
use crate::config::ReplicaFetchConfig;
use crate::state::BrokerState;
use crate::topics::Partition;
use connection::{ConnectionError, LeaderConnection};
use partition::{FollowedPartition, PartitionKey};

/// How often the manager checks the image without a change (a local replica created
/// after the image that placed it).
pub const POLL: Duration = Duration::from_millis(200);

/// Added to `replica.fetch.wait.max.ms` for a fetch's read timeout (Kafka's
/// `replica.socket.timeout.ms` default).
const READ_TIMEOUT_MARGIN: Duration = Duration::from_secs(30);

/// Connecting to a leader gives up after this long (Kafka's
/// `socket.connection.setup.timeout.ms` default).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Response frames above this are corrupt whatever the fetch asked: a fetch returns at most
/// `replica.fetch.response.max.bytes`, or one whole batch more (KIP-74).
const MIN_FRAME_LIMIT: usize = 128 * 1024 * 1024;

/// Which fetcher a partition belongs to: its leader and `hash % num.replica.fetchers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FetcherKey {
    pub leader: i32,
    pub index: u32,
}

/// A partition the image says this broker follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted<T> {
    pub topic: Arc<str>,
    pub leader_epoch: i32,
    /// The local replica.
    pub replica: T,
}

/// One fetcher's share of the plan: the leader's address and its partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetcherPlan<T> {
    pub addr: String,
    pub partitions: BTreeMap<PartitionKey, Wanted<T>>,
}

/// The fetchers this broker should run and their partitions (see the module docs).
/// `local` finds the local replica of a partition; partitions without one, or whose leader
/// has no endpoint on `listener`, are not followed (yet).
pub fn plan<T>(
    image: &MetadataImage,
    me: i32,
    listener: &str,
    num_fetchers: u32,
    local: impl Fn(Uuid, i32) -> Option<T>,
) -> BTreeMap<FetcherKey, FetcherPlan<T>> {
    let mut out: BTreeMap<FetcherKey, FetcherPlan<T>> = BTreeMap::new();
    for p in image.partitions_on_broker(me) {
        let reg = p.registration;
        if !reg.has_leader() || reg.leader == me || !reg.replicas.contains(&me) {
            continue;
        }
        let Some(endpoint) = image.broker(reg.leader).and_then(|b| b.endpoint(listener)) else {
            continue;
        };
        let Some(replica) = local(p.topic_id, p.partition) else {
            continue;
        };
        let key = FetcherKey {
            leader: reg.leader,
            index: fetcher_index(p.topic_id, p.partition, num_fetchers),
        };
        let addr = if endpoint.host.contains(':') {
            format!("[{}]:{}", endpoint.host, endpoint.port)
        } else {
            format!("{}:{}", endpoint.host, endpoint.port)
        };
        out.entry(key)
            .or_insert_with(|| FetcherPlan {
                addr,
                partitions: BTreeMap::new(),
            })
            .partitions
            .insert(
                PartitionKey {
                    topic_id: p.topic_id,
                    partition: p.partition,
                },
                Wanted {
                    topic: Arc::from(p.topic_name),
                    leader_epoch: reg.leader_epoch,
                    replica,
                },
            );
    }
    out
}

/// A stable spread of partitions over `num_fetchers` (Kafka hashes topic and partition).
fn fetcher_index(topic_id: Uuid, partition: i32, num_fetchers: u32) -> u32 {
    if num_fetchers <= 1 {
        return 0;
    }
    let (high, low) = topic_id.as_u64_pair();
    let mixed = (high ^ low.rotate_left(17))
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(partition as u32 as u64)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    ((mixed >> 32) % u64::from(num_fetchers)) as u32
}

/// What a fetcher task and the manager share.
struct Shared {
    /// Held by the fetcher while it applies a response (and by the manager while it
    /// changes the partitions), so removal waits for an append in progress.
    partitions: Mutex<BTreeMap<PartitionKey, FollowedPartition>>,
    /// The manager changed the partitions (wakes an idle fetcher).
    changed: Notify,
    /// Set when the fetcher must stop: nothing is appended any more.
    stopped: AtomicBool,
}

struct FetcherHandle {
    addr: String,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for FetcherHandle {
    /// A manager that ends (or is aborted, as in a simulated crash) takes its fetchers
    /// with it.
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::Release);
        self.task.abort();
    }
}

/// What every fetcher task needs.
#[derive(Clone)]
struct Context {
    /// For the free-space floor: a follower whose disk is below it fetches nothing.
    state: Arc<BrokerState>,
    node: Arc<ClusterNode>,
    config: ReplicaFetchConfig,
    client_id: String,
}

/// The manager: runs until shutdown (see the module docs).
pub async fn run(
    state: Arc<BrokerState>,
    node: Arc<ClusterNode>,
    mut shutdown: watch::Receiver<bool>,
) {
    let context = Context {
        state: state.clone(),
        node: node.clone(),
        config: state.config.replica_fetch.clone(),
        client_id: format!("broker-{}-fetcher", node.node_id),
    };
    let mut changes = node.service.subscribe();
    let mut reconciled = node.subscribe_reconciled();
    let mut fetchers: BTreeMap<FetcherKey, FetcherHandle> = BTreeMap::new();
    let mut generation: u64 = 0;
    loop {
        let image = node.image();
        let wanted = plan(
            &image,
            node.node_id,
            &node.listener_name,
            context.config.num_fetchers,
            |id, p| state.topics.get_by_id(id).and_then(|t| t.partition(p)),
        );
        apply_plan(&mut fetchers, wanted, &context, &mut generation).await;
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { break },
            changed = reconciled.changed() => if changed.is_err() { break },
            () = tokio::time::sleep(POLL) => {}
            _ = shutdown.wait_for(|s| *s) => break,
        }
    }
    for (_, fetcher) in std::mem::take(&mut fetchers) {
        stop_fetcher(fetcher).await;
    }
}

/// Stops a fetcher: its partitions are dropped under the lock (waiting for a response
/// being applied), then the task ends.
async fn stop_fetcher(fetcher: FetcherHandle) {
    fetcher.shared.stopped.store(true, Ordering::Release);
    fetcher.shared.partitions.lock().await.clear();
    fetcher.task.abort();
}

/// Makes the running fetchers and their partitions match `wanted`: removals first (so a
/// partition moving between leaders never sits in two fetchers), then additions.
async fn apply_plan(
    fetchers: &mut BTreeMap<FetcherKey, FetcherHandle>,
    mut wanted: BTreeMap<FetcherKey, FetcherPlan<Arc<Partition>>>,
    context: &Context,
    generation: &mut u64,
) {
    let keys: Vec<FetcherKey> = fetchers.keys().copied().collect();
    for key in keys {
        let keep = match (fetchers.get(&key), wanted.get(&key)) {
            (Some(f), Some(w)) => f.addr == w.addr && !f.task.is_finished(),
            _ => false,
        };
        if !keep {
            if let Some(fetcher) = fetchers.remove(&key) {
                let count = fetcher.shared.partitions.lock().await.len();
                tracing::info!(
                    leader = key.leader,
                    addr = %fetcher.addr,
                    partitions = count,
                    "replica fetcher stopped (its partitions changed leader, or the leader moved)"
                );
                stop_fetcher(fetcher).await;
            }
            continue;
        }
        let (Some(fetcher), Some(plan)) = (fetchers.get(&key), wanted.get(&key)) else {
            continue;
        };
        let mut partitions = fetcher.shared.partitions.lock().await;
        partitions.retain(|k, p| {
            plan.partitions.get(k).is_some_and(|w| {
                w.leader_epoch == p.leader_epoch && Arc::ptr_eq(&w.replica, &p.replica)
            })
        });
    }
    for (key, plan) in std::mem::take(&mut wanted) {
        let fetcher = fetchers.entry(key).or_insert_with(|| {
            tracing::info!(
                leader = key.leader,
                addr = %plan.addr,
                fetcher = key.index,
                "replica fetcher started"
            );
            spawn_fetcher(key, plan.addr.clone(), context.clone())
        });
        let mut partitions = fetcher.shared.partitions.lock().await;
        let mut added = 0usize;
        for (k, w) in plan.partitions {
            if partitions.contains_key(&k) {
                continue;
            }
            *generation += 1;
            partitions.insert(
                k,
                FollowedPartition {
                    key: k,
                    topic: w.topic,
                    leader: key.leader,
                    leader_epoch: w.leader_epoch,
                    replica: w.replica,
                    generation: *generation,
                    delayed_until: None,
                    needs_reset: false,
                },
            );
            added += 1;
        }
        if added > 0 {
            tracing::debug!(
                leader = key.leader,
                added,
                partitions = partitions.len(),
                "partitions added to a replica fetcher"
            );
            drop(partitions);
            fetcher.shared.changed.notify_one();
        }
    }
}

fn spawn_fetcher(key: FetcherKey, addr: String, context: Context) -> FetcherHandle {
    let shared = Arc::new(Shared {
        partitions: Mutex::new(BTreeMap::new()),
        changed: Notify::new(),
        stopped: AtomicBool::new(false),
    });
    let task = tokio::spawn(fetcher_loop(key, addr.clone(), shared.clone(), context));
    FetcherHandle { addr, shared, task }
}

/// A partition as it went into a request.
struct Requested {
    generation: u64,
    fetch_offset: i64,
}

/// A partition waiting for the leader's log start and end.
struct ResetRequest {
    key: PartitionKey,
    generation: u64,
    topic: Arc<str>,
    leader_epoch: i32,
}

/// What the next round does.
enum Round {
    /// Fetch these.
    Fetch {
        request: Box<FetchRequest>,
        requested: HashMap<PartitionKey, Requested>,
    },
    /// Nothing to fetch before this instant (or a change of partitions).
    Idle(Instant),
}

/// One fetcher: connects, resets, fetches and applies, until aborted.
async fn fetcher_loop(key: FetcherKey, addr: String, shared: Arc<Shared>, context: Context) {
    let backoff = Duration::from_millis(context.config.backoff_ms);
    let max_frame = usize::try_from(context.config.response_max_bytes)
        .unwrap_or(usize::MAX)
        .saturating_mul(2)
        .max(MIN_FRAME_LIMIT);
    let read_timeout =
        Duration::from_millis(context.config.wait_max_ms as u64) + READ_TIMEOUT_MARGIN;
    let mut connection: Option<LeaderConnection> = None;
    // Logs the first connect failure of a streak as a warning, the rest at debug.
    let mut failing = false;
    while !shared.stopped.load(Ordering::Acquire) {
        let Some(conn) = connection.as_mut() else {
            match LeaderConnection::connect(
                &addr,
                context.client_id.clone(),
                CONNECT_TIMEOUT,
                max_frame,
            )
            .await
            {
                Ok(c) => {
                    tracing::info!(
                        leader = key.leader,
                        addr = %addr,
                        fetch_version = c.fetch_version,
                        "replica fetcher connected to the leader"
                    );
                    failing = false;
                    connection = Some(c);
                }
                Err(e) if !failing => {
                    tracing::warn!(leader = key.leader, addr = %addr, error = %e, "replica fetcher cannot connect to the leader; retrying every {backoff:?}");
                    failing = true;
                    tokio::time::sleep(backoff).await;
                }
                Err(e) => {
                    tracing::debug!(leader = key.leader, addr = %addr, error = %e, "replica fetcher still cannot connect to the leader");
                    tokio::time::sleep(backoff).await;
                }
            }
            continue;
        };
        let result = async {
            reset_offsets(conn, &shared, &context, backoff, read_timeout).await?;
            let version = conn.fetch_version;
            match build_round(&shared, &context, version, backoff).await {
                Round::Idle(until) => {
                    tokio::select! {
                        () = shared.changed.notified() => {}
                        () = tokio::time::sleep_until(until.into()) => {}
                    }
                    Ok(())
                }
                Round::Fetch { request, requested } => {
                    let response = conn.fetch(&request, read_timeout).await?;
                    if response.error_code != 0 {
                        tracing::warn!(
                            leader = key.leader,
                            error_code = response.error_code,
                            "the leader refused the whole fetch; retrying after the backoff"
                        );
                        tokio::time::sleep(backoff).await;
                        return Ok(());
                    }
                    apply_response(&shared, &context, response, requested, backoff).await;
                    Ok(())
                }
            }
        }
        .await;
        if let Err(e) = result {
            let e: ConnectionError = e;
            tracing::info!(
                leader = key.leader,
                addr = %addr,
                error = %e,
                "replica fetcher lost its connection to the leader; reconnecting after {backoff:?}"
            );
            connection = None;
            tokio::time::sleep(backoff).await;
        }
    }
}

/// The next fetch: every ready partition at its log end (waiting first for the logs that
/// must be durable before their end is reported), or how long to idle.
async fn build_round(shared: &Shared, context: &Context, version: i16, backoff: Duration) -> Round {
    let now = Instant::now();
    let mut requested = HashMap::new();
    let mut topics: BTreeMap<Uuid, Vec<FetchPartition>> = BTreeMap::new();
    let mut durable_waits = Vec::new();
    let mut idle_until = now + backoff;
    // Below `log.dir.min.free.bytes` the space left is the broker's own reserve (see
    // `disk_space`): copying the leaders' records would eat it. The controller has taken
    // this broker out of the ISRs meanwhile (it reports its storage unavailable), so
    // nothing waits for these fetches; they resume, and the copies catch up, once space
    // is freed.
    if context.state.disk.is_below_floor_now() {
        tracing::debug!("below the free-space floor: not fetching");
        return Round::Idle(idle_until);
    }
    {
        let mut partitions = shared.partitions.lock().await;
        for p in partitions.values_mut() {
            if !p.is_ready(now) {
                if let Some(until) = p.delayed_until {
                    idle_until = idle_until.min(until.max(now));
                }
                continue;
            }
            let log = &p.replica.log;
            if log.is_offline() {
                p.delayed_until = Some(now + backoff);
                continue;
            }
            let fetch_offset = log.log_end_offset();
            if p.needs_durable_end() && log.durable_offset() < fetch_offset {
                durable_waits.push((p.key, log.wait_durable(fetch_offset)));
            }
            requested.insert(
                p.key,
                Requested {
                    generation: p.generation,
                    fetch_offset,
                },
            );
            topics.entry(p.key.topic_id).or_default().push(
                FetchPartition::default()
                    .with_partition(p.key.partition)
                    .with_current_leader_epoch(p.leader_epoch)
                    .with_fetch_offset(fetch_offset)
                    .with_last_fetched_epoch(log.latest_epoch().unwrap_or(-1))
                    .with_log_start_offset(log.log_start_offset())
                    .with_partition_max_bytes(context.config.max_bytes),
            );
        }
    }
    // Outside the lock: the manager may change partitions meanwhile (the answers are
    // checked against the generation).
    for (key, wait) in durable_waits {
        if let Err(e) = wait.await {
            tracing::debug!(partition = key.partition, error = %e, "a follower log did not become durable; not fetching it this time");
            requested.remove(&key);
            if let Some(ps) = topics.get_mut(&key.topic_id) {
                ps.retain(|p| p.partition != key.partition);
            }
        }
    }
    topics.retain(|_, ps| !ps.is_empty());
    if requested.is_empty() {
        return Round::Idle(idle_until);
    }
    let request = fetch_request(
        &context.config,
        (context.node.node_id, context.node.broker_epoch()),
        version,
        topics,
    );
    Round::Fetch {
        request: Box::new(request),
        requested,
    }
}

/// A follower's Fetch at `version` (see the module docs) from `replica` (node id, broker
/// epoch) for `topics`.
fn fetch_request(
    config: &ReplicaFetchConfig,
    replica: (i32, i64),
    version: i16,
    topics: BTreeMap<Uuid, Vec<FetchPartition>>,
) -> FetchRequest {
    let mut request = FetchRequest::default()
        .with_max_wait_ms(config.wait_max_ms)
        .with_min_bytes(config.min_bytes)
        .with_max_bytes(config.response_max_bytes)
        .with_isolation_level(0)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(
            topics
                .into_iter()
                .map(|(topic_id, partitions)| {
                    FetchTopic::default()
                        .with_topic_id(topic_id)
                        .with_partitions(partitions)
                })
                .collect(),
        );
    if version >= 15 {
        request.replica_state = ReplicaState::default()
            .with_replica_id(BrokerId(replica.0))
            .with_replica_epoch(replica.1);
    } else {
        request.replica_id = BrokerId(replica.0);
    }
    request
}

/// Applies a Fetch response on a blocking thread, under the partition lock.
async fn apply_response(
    shared: &Arc<Shared>,
    context: &Context,
    response: FetchResponse,
    requested: HashMap<PartitionKey, Requested>,
    backoff: Duration,
) {
    let shared = shared.clone();
    let node = context.node.clone();
    let applied = tokio::task::spawn_blocking(move || {
        let mut partitions = shared.partitions.blocking_lock();
        let now = Instant::now();
        let mut answered = std::collections::HashSet::new();
        for topic in response.responses {
            for data in topic.partitions {
                if shared.stopped.load(Ordering::Acquire) {
                    return;
                }
                let key = PartitionKey {
                    topic_id: topic.topic_id,
                    partition: data.partition_index,
                };
                answered.insert(key);
                let (Some(asked), Some(p)) = (requested.get(&key), partitions.get_mut(&key)) else {
                    continue;
                };
                // The newest image, read right before this partition's append: once it
                // names another leader (this broker, say), nothing more is appended.
                if asked.generation != p.generation
                    || !still_following(&node.image(), key, p.leader, p.leader_epoch)
                {
                    continue;
                }
                p.handle(&data, asked.fetch_offset, now, backoff, now_ms());
            }
        }
        // A partition the leader left out of its answer would otherwise be asked for
        // again at once, forever: it waits the backoff.
        for (key, asked) in &requested {
            if answered.contains(key) {
                continue;
            }
            if let Some(p) = partitions.get_mut(key) {
                if p.generation == asked.generation {
                    p.delayed_until = Some(now + backoff);
                }
            }
        }
    })
    .await;
    if let Err(e) = applied {
        tracing::error!(error = %e, "applying a fetch response failed");
    }
}

/// Whether the image still names `leader` at `leader_epoch` for the partition.
fn still_following(
    image: &MetadataImage,
    key: PartitionKey,
    leader: i32,
    leader_epoch: i32,
) -> bool {
    image
        .partition(key.topic_id, key.partition)
        .is_some_and(|r| r.leader == leader && r.leader_epoch == leader_epoch)
}

/// A leader's (log start, log end) as ListOffsets answered them.
type LeaderRange = (Option<i64>, Option<i64>);

/// For the partitions that got OFFSET_OUT_OF_RANGE: asks the leader's log end and log
/// start (ListOffsets latest and earliest, as a replica) and resets them.
async fn reset_offsets(
    conn: &mut LeaderConnection,
    shared: &Arc<Shared>,
    context: &Context,
    backoff: Duration,
    timeout: Duration,
) -> Result<(), ConnectionError> {
    let now = Instant::now();
    let resets: Vec<ResetRequest> = {
        let partitions = shared.partitions.lock().await;
        partitions
            .values()
            .filter(|p| p.needs_reset && p.delayed_until.is_none_or(|t| t <= now))
            .map(|p| ResetRequest {
                key: p.key,
                generation: p.generation,
                topic: p.topic.clone(),
                leader_epoch: p.leader_epoch,
            })
            .collect()
    };
    if resets.is_empty() {
        return Ok(());
    }
    let me = context.node.node_id;
    let wanted: Vec<(Arc<str>, i32, i32)> = resets
        .iter()
        .map(|r| (r.topic.clone(), r.key.partition, r.leader_epoch))
        .collect();
    let request = |timestamp: i64| list_offsets_request(me, &wanted, timestamp);
    let mut answers: HashMap<(Arc<str>, i32), LeaderRange> = HashMap::new();
    // -1: the latest offset (a replica's ListOffsets gets the log end), -2: the earliest.
    for (timestamp, latest) in [(-1i64, true), (-2i64, false)] {
        let Some(response) = conn.list_offsets(&request(timestamp), timeout).await else {
            break;
        };
        for topic in response?.topics {
            let name: Arc<str> = Arc::from(topic.name.0.as_str());
            for p in topic.partitions {
                if p.error_code != 0 || p.offset < 0 {
                    continue;
                }
                let entry = answers
                    .entry((name.clone(), p.partition_index))
                    .or_default();
                if latest {
                    entry.1 = Some(p.offset);
                } else {
                    entry.0 = Some(p.offset);
                }
            }
        }
    }
    let shared = shared.clone();
    let applied = tokio::task::spawn_blocking(move || {
        let mut partitions = shared.partitions.blocking_lock();
        let now = Instant::now();
        for r in resets {
            if shared.stopped.load(Ordering::Acquire) {
                return;
            }
            let Some(p) = partitions.get_mut(&r.key) else {
                continue;
            };
            if p.generation != r.generation || !p.needs_reset {
                continue;
            }
            match answers.get(&(r.topic.clone(), r.key.partition)) {
                Some(&(Some(start), Some(end))) => {
                    let outcome = p.reset_offset(start, end, now, backoff);
                    tracing::debug!(topic = %r.topic, partition = r.key.partition, leader_start = start, leader_end = end, ?outcome, "offset reset after OFFSET_OUT_OF_RANGE");
                }
                _ => {
                    tracing::debug!(topic = %r.topic, partition = r.key.partition, "the leader did not give its log start and end; retrying after the backoff");
                    p.delayed_until = Some(now + backoff);
                }
            }
        }
    })
    .await;
    if let Err(e) = applied {
        tracing::error!(error = %e, "resetting follower offsets failed");
    }
    Ok(())
}

/// A replica's ListOffsets for `partitions` (topic, partition, leader epoch) at
/// `timestamp` (-1 latest: a replica gets the log end; -2 earliest).
fn list_offsets_request(
    me: i32,
    partitions: &[(Arc<str>, i32, i32)],
    timestamp: i64,
) -> ListOffsetsRequest {
    let mut by_topic: BTreeMap<Arc<str>, Vec<ListOffsetsPartition>> = BTreeMap::new();
    for (topic, partition, leader_epoch) in partitions {
        by_topic.entry(topic.clone()).or_default().push(
            ListOffsetsPartition::default()
                .with_partition_index(*partition)
                .with_current_leader_epoch(*leader_epoch)
                .with_timestamp(timestamp),
        );
    }
    ListOffsetsRequest::default()
        .with_replica_id(BrokerId(me))
        .with_isolation_level(0)
        .with_topics(
            by_topic
                .into_iter()
                .map(|(name, partitions)| {
                    ListOffsetsTopic::default()
                        .with_name(TopicName(StrBytes::from_string(name.to_string())))
                        .with_partitions(partitions)
                })
                .collect(),
        )
}

/// Wall-clock milliseconds (the append time of replicated batches' index entries).
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::test_images::{brokers, image, partition, topic};

    const ME: i32 = 2;

    #[test]
    fn a_broker_follows_the_partitions_it_replicates_and_another_leads() {
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        // a-0 as given, the rest fixed.
        let with_a0 = |isr: &[i32], leader: i32, epoch: i32| {
            let mut records = brokers(3);
            records.push(topic("a", a));
            records.push(topic("b", b));
            records.push(partition(a, 0, &[1, 2, 3], isr, leader, epoch));
            records.push(partition(a, 1, &[2, 3, 1], &[2, 3, 1], 2, 0)); // led here
            records.push(partition(a, 2, &[3, 1, 2], &[3, 1, 2], 3, 7)); // followed from 3
            records.push(partition(b, 0, &[1, 3], &[1, 3], 1, 0)); // not a replica here
            records.push(partition(b, 1, &[1, 2], &[2], -1, 2)); // offline: no leader
            records.push(partition(b, 2, &[3, 2], &[3, 2], 3, 1)); // no local replica yet
            records
        };
        let records = with_a0(&[1, 2, 3], 1, 4); // a-0 followed from 1
        let img = image(&records);
        let local = |id: Uuid, p: i32| (!(id == b && p == 2)).then_some(());
        let planned = plan(&img, ME, "PLAINTEXT", 1, local);
        /// (leader, its address, (topic, partition, leader epoch) of each partition).
        type Summary = Vec<(i32, String, Vec<(Uuid, i32, i32)>)>;
        let by_leader: Summary = planned
            .iter()
            .map(|(k, f)| {
                (
                    k.leader,
                    f.addr.clone(),
                    f.partitions
                        .iter()
                        .map(|(pk, w)| (pk.topic_id, pk.partition, w.leader_epoch))
                        .collect(),
                )
            })
            .collect();
        assert_eq!(
            by_leader,
            vec![
                (1, "127.0.0.1:9092".to_owned(), vec![(a, 0, 4)]),
                (3, "127.0.0.3:9092".to_owned(), vec![(a, 2, 7)]),
            ]
        );
        // Another listener name: the leaders have no endpoint there, nothing is followed.
        assert!(plan(&img, ME, "INTERNAL", 1, local).is_empty());
        // The leader of a-0 moves to 3 at a new epoch: a-0 moves to 3's fetcher.
        let planned = plan(&image(&with_a0(&[2, 3], 3, 5)), ME, "PLAINTEXT", 1, local);
        assert_eq!(
            planned.keys().map(|k| k.leader).collect::<Vec<_>>(),
            vec![3]
        );
        assert_eq!(
            planned[&FetcherKey {
                leader: 3,
                index: 0
            }]
                .partitions
                .len(),
            2
        );
        // This broker becomes a-0's leader: it no longer follows it.
        let planned = plan(&image(&with_a0(&[2, 3], ME, 5)), ME, "PLAINTEXT", 1, local);
        assert!(planned.values().all(|f| f
            .partitions
            .keys()
            .all(|k| !(k.topic_id == a && k.partition == 0))));
    }

    #[test]
    fn partitions_spread_over_the_fetchers_of_a_leader_stably() {
        let ids: Vec<Uuid> = (1..=20u128).map(Uuid::from_u128).collect();
        let mut used = std::collections::BTreeSet::new();
        for &id in &ids {
            for p in 0..4 {
                let i = fetcher_index(id, p, 3);
                assert!(i < 3);
                assert_eq!(i, fetcher_index(id, p, 3), "stable");
                assert_eq!(fetcher_index(id, p, 1), 0);
                used.insert(i);
            }
        }
        assert_eq!(used.len(), 3, "every fetcher gets partitions");
    }

    #[test]
    fn requests_encode_at_every_version_used() {
        use kafka_protocol::protocol::{Decodable, Encodable};
        let topics = BTreeMap::from([(
            Uuid::from_u128(5),
            vec![FetchPartition::default()
                .with_partition(3)
                .with_current_leader_epoch(7)
                .with_fetch_offset(100)
                .with_last_fetched_epoch(6)
                .with_log_start_offset(10)
                .with_partition_max_bytes(1 << 20)],
        )]);
        let config = ReplicaFetchConfig::default();
        for version in connection::FETCH_VERSIONS.0..=connection::FETCH_VERSIONS.1 {
            let request = fetch_request(&config, (2, 42), version, topics.clone());
            let mut buf = bytes::BytesMut::new();
            request.encode(&mut buf, version).expect("encodes");
            let back = FetchRequest::decode(&mut buf.freeze(), version).expect("decodes");
            let replica = if version >= 15 {
                (
                    back.replica_state.replica_id.0,
                    back.replica_state.replica_epoch,
                )
            } else {
                (back.replica_id.0, -1)
            };
            assert_eq!(
                replica,
                (2, if version >= 15 { 42 } else { -1 }),
                "v{version}"
            );
            assert_eq!((back.session_id, back.session_epoch), (0, -1));
            assert_eq!(back.max_wait_ms, 500);
            let p = &back.topics[0].partitions[0];
            assert_eq!(back.topics[0].topic_id, Uuid::from_u128(5));
            assert_eq!(
                (
                    p.current_leader_epoch,
                    p.fetch_offset,
                    p.last_fetched_epoch,
                    p.log_start_offset
                ),
                (7, 100, 6, 10)
            );
        }
        let wanted = vec![(Arc::from("t"), 0, 3), (Arc::from("t"), 1, 3)];
        for version in connection::LIST_OFFSETS_VERSIONS.0..=connection::LIST_OFFSETS_VERSIONS.1 {
            let request = list_offsets_request(2, &wanted, -2);
            let mut buf = bytes::BytesMut::new();
            request.encode(&mut buf, version).expect("encodes");
            let back = ListOffsetsRequest::decode(&mut buf.freeze(), version).expect("decodes");
            assert_eq!(back.replica_id.0, 2);
            assert_eq!(back.topics.len(), 1);
            assert_eq!(back.topics[0].partitions.len(), 2);
        }
    }
}
