//! The producer: records in, acknowledged offsets out.
//!
//! - [`Producer::send`] picks the partition ([`partitioner`]), waits for buffer space
//!   (`buffer_memory`) and appends the record to that partition's open batch in the
//!   [`accumulator`]. It returns a [`DeliveryFuture`] at once; awaiting it gives the
//!   record's offset once the broker has acknowledged it (per `acks`).
//! - The `sender` task drains batches that are full (`batch_size`), old enough
//!   (`linger`) or flushed, builds and compresses them, groups them per leader broker
//!   into Produce requests and handles the answers: success, retry, or failure.
//! - Ordering: batches of one partition leave in order, at most `max_in_flight` at a
//!   time, and requests to one broker are written to its connection in the order they
//!   were made. A batch that fails with a retriable error goes back to the front of its
//!   partition's queue, and nothing newer for that partition is sent until the requests
//!   already in flight have come back; retried batches then go out in their original
//!   order.
//! - Idempotence ([`idempotence`], on by default as in the Java client): batches carry a
//!   producer id, epoch and sequence numbers, so the broker writes a retried batch only
//!   once and refuses one that would overtake a failed batch. That makes retries safe
//!   with up to 5 batches in flight per partition: every record is written exactly once,
//!   in order, across broker restarts. Without it (`enable_idempotence = Some(false)`,
//!   or `acks` other than `All`) a retry may write a batch twice, and strict order under
//!   retries needs `max_in_flight = 1`, as in Kafka.

pub mod accumulator;
pub mod idempotence;
pub mod partitioner;
pub(crate) mod sender;

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_storage::batch::Compression;
use tokio::sync::{Notify, Semaphore, TryAcquireError};
use tokio::task::JoinHandle;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::types::Header;
use accumulator::Accumulator;
use partitioner::{Route, Routes};

/// How many acknowledgements the leader waits for before answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// Fire and forget: the broker does not answer, offsets are unknown (-1).
    None,
    /// The leader has written the batch.
    Leader,
    /// All in-sync replicas have the batch (on a single-node cluster: it is durable as
    /// the broker's flush policy defines).
    All,
}

impl Acks {
    pub(crate) fn wire(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

/// Producer settings, named after Kafka's producer configs.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// `acks` (default all, as in Kafka 3+).
    pub acks: Acks,
    /// `compression.type` (default none).
    pub compression: Compression,
    /// `linger.ms`: how long a batch waits for more records before it is sent (default 5 ms).
    pub linger: Duration,
    /// `batch.size`: a batch is sent once its records reach this many bytes (default 16 KiB).
    pub batch_size: usize,
    /// `max.request.size`: largest Produce request, and so largest record (default 1 MiB).
    pub max_request_size: usize,
    /// `buffer.memory`: bytes of unsent records before `send` waits (default 32 MiB).
    pub buffer_memory: usize,
    /// `retries`: attempts after the first for a failed batch (default unlimited within
    /// `delivery_timeout`).
    pub retries: u32,
    /// `delivery.timeout.ms`: a record not acknowledged this long after `send` fails
    /// (default 120 s).
    pub delivery_timeout: Duration,
    /// `max.in.flight.requests.per.connection`, per partition here (default 5, at most 5).
    pub max_in_flight: usize,
    /// `max.block.ms`: longest wait in `send` for metadata or buffer space (default 60 s).
    pub max_block: Duration,
    /// Ask the broker to create unknown topics (it does if `auto.create.topics.enable`).
    pub allow_auto_create_topics: bool,
    /// `enable.idempotence`: batches carry a producer id and sequence numbers, so that
    /// retries write every record exactly once and in order (see [`idempotence`]).
    ///
    /// - `None` (the default): on, unless `acks` is not `All` or `retries` is 0; then
    ///   off. This is what the Java client (3.2+) does when `enable.idempotence` is not
    ///   set: it defaults to true and gives way to conflicting settings.
    /// - `Some(true)`: on; `acks` other than `All` or `retries = 0` is a configuration
    ///   error ([`Error::InvalidArgument`] from [`Producer::new`]).
    /// - `Some(false)`: off.
    ///
    /// `max_in_flight` is at most 5 in any case. Use [`ProducerConfig::idempotence`] to
    /// see what a configuration comes to.
    pub enable_idempotence: Option<bool>,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            acks: Acks::All,
            compression: Compression::None,
            linger: Duration::from_millis(5),
            batch_size: 16 * 1024,
            max_request_size: 1024 * 1024,
            buffer_memory: 32 * 1024 * 1024,
            retries: u32::MAX,
            delivery_timeout: Duration::from_secs(120),
            max_in_flight: 5,
            max_block: Duration::from_secs(60),
            allow_auto_create_topics: true,
            enable_idempotence: None,
        }
    }
}

impl ProducerConfig {
    /// Whether a producer with this configuration is idempotent (see
    /// [`ProducerConfig::enable_idempotence`]); an error if idempotence is asked for
    /// explicitly together with settings it cannot work with.
    /// Checks the settings (as [`Producer::new`] does, without a client) and says whether
    /// the producer would be idempotent. Messages use Kafka's property names.
    pub fn validate(&self) -> Result<bool> {
        if self.batch_size == 0 || self.max_request_size == 0 || self.buffer_memory == 0 {
            return Err(Error::InvalidArgument(
                "batch.size, max.request.size and buffer.memory must be positive".into(),
            ));
        }
        // Kafka's properties are Java ints: larger is a mistake, and a batch.size of
        // that much would be allocated up front.
        let limit = i32::MAX as usize;
        if self.batch_size > limit || self.max_request_size > limit {
            return Err(Error::InvalidArgument(format!(
                "batch.size and max.request.size must be at most {limit}"
            )));
        }
        if !(1..=5).contains(&self.max_in_flight) {
            return Err(Error::InvalidArgument(format!(
                "max.in.flight.requests.per.connection must be 1 to 5, not {}",
                self.max_in_flight
            )));
        }
        self.idempotence()
    }

    pub fn idempotence(&self) -> Result<bool> {
        let conflict = if self.acks != Acks::All {
            Some(format!(
                "acks={} (the idempotent producer needs acks=all)",
                match self.acks {
                    Acks::None => "0",
                    Acks::Leader => "1",
                    Acks::All => "all",
                }
            ))
        } else if self.retries == 0 {
            Some("retries=0 (the idempotent producer needs retries)".to_owned())
        } else {
            None
        };
        match (self.enable_idempotence, conflict) {
            (Some(false), _) => Ok(false),
            (None, conflict) => Ok(conflict.is_none()),
            (Some(true), None) => Ok(true),
            (Some(true), Some(conflict)) => Err(Error::InvalidArgument(format!(
                "enable.idempotence=true conflicts with {conflict}; leave \
                 enable.idempotence unset, or set it to false"
            ))),
        }
    }
}

/// One record to send.
#[derive(Debug, Clone)]
pub struct ProducerRecord {
    /// Shared, not owned: a producer sending many records to one topic clones an `Arc`
    /// per record, not the name.
    pub topic: Arc<str>,
    /// A fixed partition; `None` lets the partitioner choose (by key, else sticky).
    pub partition: Option<i32>,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
    /// Milliseconds since the Unix epoch; `None` = now.
    pub timestamp: Option<i64>,
}

impl ProducerRecord {
    pub fn new(topic: impl Into<Arc<str>>) -> Self {
        ProducerRecord {
            topic: topic.into(),
            partition: None,
            key: None,
            value: None,
            headers: Vec::new(),
            timestamp: None,
        }
    }

    pub fn value(mut self, value: impl Into<Bytes>) -> Self {
        self.value = Some(value.into());
        self
    }

    pub fn key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    pub fn partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    pub fn header(mut self, key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.headers.push(Header {
            key: key.into(),
            value: Some(value.into()),
        });
        self
    }

    pub fn timestamp(mut self, timestamp_ms: i64) -> Self {
        self.timestamp = Some(timestamp_ms);
        self
    }

    /// Upper bound of the record's encoded size inside a batch: the payload plus the
    /// largest varints for every length and delta.
    pub(crate) fn encoded_size_bound(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|h| 10 + h.key.len() + h.value.as_ref().map_or(0, Bytes::len))
            .sum();
        5 + 1
            + 10
            + 5
            + 5
            + self.key.as_ref().map_or(0, Bytes::len)
            + 5
            + self.value.as_ref().map_or(0, Bytes::len)
            + 5
            + headers
    }
}

/// Where an acknowledged record was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    pub topic: Arc<str>,
    pub partition: i32,
    /// The record's offset; -1 with `acks = none` (the broker does not say).
    pub offset: i64,
    /// The record's timestamp: the broker's append time for topics with
    /// `message.timestamp.type=LogAppendTime`, else the record's own.
    pub timestamp: i64,
}

/// The broker's answer for one batch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchAck {
    pub base_offset: i64,
    /// -1 unless the topic uses LogAppendTime.
    pub log_append_time: i64,
}

/// The shared fate of one batch: every record's [`DeliveryFuture`] waits on it.
#[derive(Debug)]
pub(crate) struct BatchShared {
    pub topic: Arc<str>,
    pub partition: i32,
    result: OnceLock<Result<BatchAck>>,
    done: Notify,
}

impl BatchShared {
    pub(crate) fn new(topic: Arc<str>, partition: i32) -> Arc<Self> {
        Arc::new(BatchShared {
            topic,
            partition,
            result: OnceLock::new(),
            done: Notify::new(),
        })
    }

    /// Sets the outcome (the first one wins) and wakes the waiters.
    pub(crate) fn complete(&self, result: Result<BatchAck>) {
        let _ = self.result.set(result); // a second completion is ignored
        self.done.notify_waiters();
    }

    pub(crate) async fn wait(&self) -> &Result<BatchAck> {
        loop {
            // Created before the check: `notify_waiters` reaches futures that exist.
            let notified = self.done.notified();
            if let Some(result) = self.result.get() {
                return result;
            }
            notified.await;
        }
    }

    fn get(&self) -> Option<&Result<BatchAck>> {
        self.result.get()
    }
}

/// Resolves to the record's [`RecordMetadata`] once the broker acknowledged it, or to the
/// error that made its batch fail. `.await` it, or drop it if the outcome is not needed
/// (the record is still sent).
#[derive(Debug)]
pub struct DeliveryFuture {
    shared: Arc<BatchShared>,
    index: usize,
    timestamp: i64,
}

impl DeliveryFuture {
    fn metadata(&self, result: &Result<BatchAck>) -> Result<RecordMetadata> {
        let ack = result.as_ref().map_err(Clone::clone)?;
        Ok(RecordMetadata {
            topic: self.shared.topic.clone(),
            partition: self.shared.partition,
            offset: if ack.base_offset < 0 {
                -1
            } else {
                ack.base_offset + self.index as i64
            },
            timestamp: if ack.log_append_time >= 0 {
                ack.log_append_time
            } else {
                self.timestamp
            },
        })
    }

    /// The outcome, if already known.
    pub fn try_result(&self) -> Option<Result<RecordMetadata>> {
        self.shared.get().map(|r| self.metadata(r))
    }

    /// The partition the record was appended to.
    pub fn partition(&self) -> i32 {
        self.shared.partition
    }

    /// Waits for the outcome.
    pub async fn wait(self) -> Result<RecordMetadata> {
        let result = self.shared.wait().await;
        self.metadata(result)
    }
}

impl IntoFuture for DeliveryFuture {
    type Output = Result<RecordMetadata>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<RecordMetadata>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.wait())
    }
}

/// State shared by the [`Producer`] handle and its sender task.
pub(crate) struct ProducerShared {
    pub client: Client,
    pub config: ProducerConfig,
    /// `config.idempotence()`, resolved once.
    pub idempotent: bool,
    pub accumulator: Mutex<Accumulator>,
    /// Wakes the sender: a batch may be ready, or the producer closes.
    pub wake: Notify,
    /// `buffer_memory` bytes; a record holds its share until its batch completes.
    pub memory: Semaphore,
    /// Made on a runtime with one worker thread: `send` then spends tokio's cooperative
    /// budget (see [`Producer::send`]).
    pub cooperative: bool,
}

impl ProducerShared {
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Accumulator> {
        self.accumulator.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// An asynchronous producer; see the module docs.
pub struct Producer {
    shared: Arc<ProducerShared>,
    /// Per-topic routing: partition counts and sticky partitions (see [`Routes`]).
    routes: Mutex<Routes>,
    sender: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("config", &self.shared.config)
            .finish()
    }
}

impl Producer {
    /// A producer sending through `client`. Starts the sender task (call inside a
    /// tokio runtime).
    pub fn new(client: Client, config: ProducerConfig) -> Result<Producer> {
        let idempotent = config.validate()?;
        let memory = config.buffer_memory.min(Semaphore::MAX_PERMITS);
        let cooperative =
            tokio::runtime::Handle::try_current().is_ok_and(|h| h.metrics().num_workers() == 1);
        let shared = Arc::new(ProducerShared {
            accumulator: Mutex::new(Accumulator::new(&config, idempotent)),
            client,
            config,
            idempotent,
            wake: Notify::new(),
            memory: Semaphore::new(memory),
            cooperative,
        });
        let sender = tokio::spawn(sender::run(shared.clone()));
        Ok(Producer {
            shared,
            routes: Mutex::new(Routes::default()),
            sender: Mutex::new(Some(sender)),
        })
    }

    pub fn config(&self) -> &ProducerConfig {
        &self.shared.config
    }

    /// Whether the producer is idempotent (see [`ProducerConfig::enable_idempotence`]).
    pub fn is_idempotent(&self) -> bool {
        self.shared.idempotent
    }

    /// The idempotent producer's id and epoch, once a broker has handed them out (before
    /// the first batch is sent). `None` for a producer that is not idempotent.
    pub fn producer_id(&self) -> Option<idempotence::ProducerId> {
        self.shared.lock().producer_id()
    }

    /// Appends `record` to its partition's batch and returns its [`DeliveryFuture`].
    ///
    /// Waits (at most `max_block`) for the topic's metadata and for buffer space. Fails
    /// at once for an unknown topic or partition, a record larger than
    /// `max_request_size`, a closed producer, or one that met a fatal error (such as
    /// [`Error::ProducerFenced`]; that error is returned).
    ///
    /// On a runtime with one worker thread (current-thread, or `worker_threads(1)`),
    /// `send` gives the thread back to the runtime about every 128 calls (tokio's
    /// cooperative budget), so that a loop of sends lets the producer's own sender task
    /// send the batches it fills.
    pub async fn send(&self, record: ProducerRecord) -> Result<DeliveryFuture> {
        // `send` is usually ready at once, so a loop of sends would never give the
        // runtime back. With one worker thread the sender task then cannot run until
        // buffer memory runs out: full batches wait for milliseconds (`sluice-bench
        // --threads 1`: p50 send-to-ack 3.7 ms, against 0.16 ms when the loop yields,
        // and a quarter more records/s). Spending the cooperative budget, as tokio's own
        // channels do, yields every 128 sends. Not with more workers: they run the
        // sender, and the yields cost a single producer a fifth of its throughput.
        if self.shared.cooperative {
            tokio::task::consume_budget().await;
        }
        // The per-record path takes one clock reading, the routes lock, and the
        // accumulator lock; the rest (metadata, waiting for memory) only when needed.
        let now = Instant::now();
        let size = record.encoded_size_bound();
        let limit = self
            .shared
            .config
            .max_request_size
            .min(self.shared.config.buffer_memory);
        if size + sluice_storage::batch::HEADER_SIZE > limit {
            return Err(Error::InvalidArgument(format!(
                "record of about {size} bytes is larger than the producer's limit of {limit} \
                 bytes (max.request.size, or buffer.memory if smaller)"
            )));
        }
        let (partition, seal) = match self.route(&record, size, now) {
            Some(routed) => routed?,
            None => {
                self.check_usable()?;
                self.refresh_route(&record, size).await?
            }
        };
        let permits = u32::try_from(size).unwrap_or(u32::MAX);
        match self.shared.memory.try_acquire_many(permits) {
            Ok(permit) => permit.forget(), // given back when the batch completes
            Err(TryAcquireError::Closed) => return Err(Error::Closed("producer")),
            Err(TryAcquireError::NoPermits) => self.wait_for_memory(permits).await?,
        }
        let appended = {
            let mut accumulator = self.shared.lock();
            match (accumulator.closed, accumulator.fatal()) {
                (true, _) => Err(Error::Closed("producer")),
                (false, Some(fatal)) => Err(fatal.clone()),
                (false, None) => {
                    Ok(accumulator.append(partition, &record, permits as usize, now, seal))
                }
            }
        };
        let (future, wake) = match appended {
            Ok(appended) => appended,
            Err(e) => {
                self.shared.memory.add_permits(permits as usize);
                return Err(e);
            }
        };
        if wake {
            self.shared.wake.notify_one();
        }
        Ok(future)
    }

    /// The record's partition from the cached route of its topic; `None` when there is
    /// no current route (the metadata changed or aged: see [`Routes`]).
    fn route(
        &self,
        record: &ProducerRecord,
        size: usize,
        now: Instant,
    ) -> Option<Result<(i32, bool)>> {
        let client = &self.shared.client;
        let generation = client.metadata_generation();
        let max_age = client.config().metadata_max_age;
        let mut routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        let route = routes.current(&record.topic, generation, now, max_age)?;
        Some(self.choose(route, record, size))
    }

    /// Copies the topic's metadata into its route, fetching it first when the cache has
    /// none or only metadata older than `metadata_max_age`, and routes the record by it.
    async fn refresh_route(&self, record: &ProducerRecord, size: usize) -> Result<(i32, bool)> {
        let topic = &*record.topic;
        let client = &self.shared.client;
        let max_age = client.config().metadata_max_age;
        let copy = || {
            client.with_metadata(|m| {
                let refreshed_at = m.refreshed_at(topic)?;
                let info = m.topic(topic).filter(|t| !t.partitions.is_empty())?;
                (refreshed_at.elapsed() < max_age).then(|| {
                    let generation = client.metadata_generation();
                    (partition_summary(info), refreshed_at, generation)
                })
            })
        };
        let copied = match copy() {
            Some(copied) => copied,
            None => {
                let info = client
                    .wait_for_topic(
                        topic,
                        self.shared.config.allow_auto_create_topics,
                        self.shared.config.max_block,
                    )
                    .await?;
                // Changed again meanwhile: route by what was fetched; the route is
                // stale at once (generation 0 is never current after a fetch), so the
                // next record looks again.
                copy().unwrap_or_else(|| (partition_summary(&info), Instant::now(), 0))
            }
        };
        let ((count, available), refreshed_at, generation) = copied;
        let mut routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        let route = routes.update(topic, count, available, generation, refreshed_at);
        self.choose(route, record, size)
    }

    /// The record's partition, and whether its batch is sealed after it (see
    /// [`Route::partition`]).
    fn choose(
        &self,
        route: &mut Route,
        record: &ProducerRecord,
        size: usize,
    ) -> Result<(i32, bool)> {
        let batch_size = self.shared.config.batch_size;
        route
            .partition(record.partition, record.key.as_deref(), size, batch_size)
            .map_err(|count| Error::UnknownPartition {
                topic: record.topic.to_string(),
                partition: record.partition.unwrap_or(-1),
                count: count as usize,
            })
    }

    /// Waits (at most `max_block`) until `permits` bytes of `buffer_memory` are free.
    async fn wait_for_memory(&self, permits: u32) -> Result<()> {
        self.check_usable()?;
        let max_block = self.shared.config.max_block;
        match tokio::time::timeout(max_block, self.shared.memory.acquire_many(permits)).await {
            Ok(Ok(permit)) => {
                permit.forget(); // given back when the batch completes
                Ok(())
            }
            Ok(Err(_)) => Err(Error::Closed("producer")),
            Err(_) => Err(Error::Timeout {
                what: "waiting for producer buffer space".into(),
                after: max_block,
            }),
        }
    }

    fn check_usable(&self) -> Result<()> {
        let accumulator = self.shared.lock();
        if accumulator.closed {
            return Err(Error::Closed("producer"));
        }
        match accumulator.fatal() {
            Some(fatal) => Err(fatal.clone()),
            None => Ok(()),
        }
    }

    /// Sends everything buffered now, without waiting for `linger`, and waits until all of
    /// it is acknowledged or failed (failures are reported through the delivery futures).
    pub async fn flush(&self) -> Result<()> {
        let pending = {
            let mut accumulator = self.shared.lock();
            accumulator.flushes += 1;
            accumulator.incomplete()
        };
        struct Unflush<'a>(&'a ProducerShared);
        impl Drop for Unflush<'_> {
            fn drop(&mut self) {
                self.0.lock().flushes -= 1;
            }
        }
        let _unflush = Unflush(&self.shared);
        self.shared.wake.notify_one();
        for batch in pending {
            batch.wait().await;
        }
        Ok(())
    }

    /// Flushes, then stops the sender. Later `send` calls fail with [`Error::Closed`].
    pub async fn close(&self) -> Result<()> {
        self.flush().await?;
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
        let sender = self.sender.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(sender) = sender {
            let _ = sender.await; // a panicked sender has already failed its batches
        }
        Ok(())
    }
}

impl Drop for Producer {
    /// Without `close`, buffered records are still sent by the sender task, which stops
    /// once they are done.
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
    }
}

/// The partition count and the partitions that have a leader.
fn partition_summary(topic: &crate::metadata::TopicInfo) -> (i32, Vec<i32>) {
    let count = topic
        .partitions
        .last()
        .map_or(0, |p| p.partition.saturating_add(1))
        .max(topic.partitions.len() as i32);
    let available = topic.available_partitions().map(|p| p.partition).collect();
    (count, available)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotence_is_on_by_default_and_gives_way_unless_asked_for() {
        let config = |acks, retries, enable_idempotence| ProducerConfig {
            acks,
            retries,
            enable_idempotence,
            ..ProducerConfig::default()
        };
        assert!(ProducerConfig::default().idempotence().unwrap());
        // Not set: conflicting settings turn it off (Java's behaviour since 3.2).
        assert!(!config(Acks::Leader, 5, None).idempotence().unwrap());
        assert!(!config(Acks::None, 5, None).idempotence().unwrap());
        assert!(!config(Acks::All, 0, None).idempotence().unwrap());
        // Asked for: conflicts are errors.
        assert!(config(Acks::All, 5, Some(true)).idempotence().unwrap());
        for (acks, retries) in [(Acks::Leader, 5), (Acks::None, 5), (Acks::All, 0)] {
            let error = config(acks, retries, Some(true)).idempotence().unwrap_err();
            assert!(matches!(error, Error::InvalidArgument(_)), "{error:?}");
        }
        assert!(!config(Acks::All, 5, Some(false)).idempotence().unwrap());
    }

    #[tokio::test]
    async fn conflicting_settings_are_refused_by_the_constructor() {
        let client = Client::new(crate::ClientConfig::new("127.0.0.1:9")).unwrap();
        let explicit = ProducerConfig {
            acks: Acks::Leader,
            enable_idempotence: Some(true),
            ..ProducerConfig::default()
        };
        let error = Producer::new(client.clone(), explicit).unwrap_err();
        assert!(error.to_string().contains("acks=1"), "{error}");
        let implicit = ProducerConfig {
            acks: Acks::Leader,
            ..ProducerConfig::default()
        };
        assert!(!Producer::new(client.clone(), implicit)
            .unwrap()
            .is_idempotent());
        let default = Producer::new(client, ProducerConfig::default()).unwrap();
        assert!(default.is_idempotent());
        assert_eq!(
            default.producer_id(),
            None,
            "asked for before the first send"
        );
    }
}
