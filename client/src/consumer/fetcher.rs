//! Fetching records for the consumer's assigned partitions, with pipelining.
//!
//! State per partition: the *position* (next offset handed to the application), the
//! records fetched but not yet handed out (a queue of decoded chunks, each remembering
//! the offset after it), a seek epoch, and flags (paused, fetch in flight, backoff).
//!
//! Pipelining: at most one Fetch request is in flight per broker (as in Kafka's
//! consumer), and it covers every partition of that broker that has at most one chunk
//! buffered. The next fetch offset is the end of the last buffered chunk, so the next
//! response is on its way while the application works through the current one.
//!
//! Each request runs in its own task, which also prepares the record batches (checking
//! framing and CRCs, decompressing any codec, skipping control batches), so that work
//! runs in parallel with the application. The records themselves are decoded lazily, as
//! [`Fetcher::take`] hands them out (as Kafka's Java consumer does): each becomes a
//! [`ConsumerRecord`] on the application's thread, right before it is used, with its key
//! and value as slices of the response buffer and the topic name shared by all records
//! of the partition. A record that fails to decode ends the partition's buffered data:
//! the records before it are returned, then the error (and the partition is fetched again
//! from the failing record, as after any failed fetch). A seek bumps the partition's
//! epoch: answers to fetches sent before it are dropped.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use sluice_storage::batch::{batches, validate_stored_batch, BatchHeader, Records, TimestampType};
use sluice_storage::BatchError;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::ConsumerRecord;
use crate::client::Client;
use crate::error::{Error, Result};
use crate::types::{OffsetSpec, TopicPartition};

/// Fetch settings (a subset of [`super::ConsumerConfig`]).
#[derive(Debug, Clone)]
pub(crate) struct FetchConfig {
    pub min_bytes: i32,
    pub max_bytes: i32,
    pub partition_max_bytes: i32,
    pub max_wait: Duration,
    pub check_crcs: bool,
    pub isolation_level: super::IsolationLevel,
}

/// The records of one batch, decoded as they are taken.
#[derive(Debug)]
struct BatchRecords {
    records: Records,
    timestamp_type: TimestampType,
}

/// One partition's part of a fetch response: its data batches, checked (framing, CRC)
/// and decompressed, with records not yet decoded.
#[derive(Debug)]
struct Chunk {
    batches: VecDeque<BatchRecords>,
    /// The fetch offset: records before it (in the first batch) are skipped.
    skip_before: i64,
    /// The offset after the last batch in the chunk (control batches included).
    next_offset: i64,
    /// Records not yet taken, as the batch headers announce them (for reserving space).
    remaining: usize,
}

impl Chunk {
    /// A chunk of no batches, for a fetch at `offset`.
    fn empty(offset: i64) -> Chunk {
        Chunk {
            batches: VecDeque::new(),
            skip_before: offset,
            next_offset: offset,
            remaining: 0,
        }
    }
}

/// One partition's fetch state; see the module docs.
#[derive(Debug)]
pub(crate) struct PartitionState {
    /// The topic name every record of this partition carries.
    topic: Arc<str>,
    /// Next offset to hand to the application. `None` until known.
    pub position: Option<i64>,
    /// A pending lookup (seek to earliest / latest / time) that sets the position.
    pub reset: Option<OffsetSpec>,
    pub paused: bool,
    /// Last high watermark and log start offset seen in a fetch answer.
    pub high_watermark: Option<i64>,
    pub log_start_offset: Option<i64>,
    epoch: u64,
    in_flight: bool,
    buffer: VecDeque<Chunk>,
    retry_after: Option<Instant>,
    /// Since when fetches of this partition have failed with retriable errors, and the
    /// latest error; `None` once a fetch succeeds.
    pub failing: Option<(Instant, Error)>,
}

impl PartitionState {
    /// A partition of `tp`'s topic with no position yet, its fetches numbered by `epoch`.
    fn new(tp: &TopicPartition, epoch: u64) -> PartitionState {
        PartitionState {
            topic: Arc::from(tp.topic.as_str()),
            position: None,
            reset: None,
            paused: false,
            high_watermark: None,
            log_start_offset: None,
            epoch,
            in_flight: false,
            buffer: VecDeque::new(),
            retry_after: None,
            failing: None,
        }
    }

    fn fetch_offset(&self) -> Option<i64> {
        self.buffer.back().map(|c| c.next_offset).or(self.position)
    }

    fn clear(&mut self, epoch: u64) {
        self.buffer.clear();
        self.epoch = epoch;
        self.retry_after = None;
        self.failing = None;
    }

    /// Records buffered and not yet taken (as announced by the batch headers).
    fn buffered(&self) -> usize {
        self.buffer.iter().map(|c| c.remaining).sum()
    }

    /// Decodes and appends buffered records to `out` until it holds `max`, moving the
    /// position past them; chunks used up (also by an earlier call) move the position to
    /// their end. Fails on the first record that does not decode: `out` keeps the
    /// records before it, the position stays at it.
    fn take_into(
        &mut self,
        tp: &TopicPartition,
        out: &mut Vec<ConsumerRecord>,
        max: usize,
    ) -> Result<()> {
        loop {
            let Some(chunk) = self.buffer.front_mut() else {
                return Ok(());
            };
            let Some(batch) = chunk.batches.front_mut() else {
                self.position = Some(chunk.next_offset);
                self.buffer.pop_front();
                continue;
            };
            let left = batch.records.remaining();
            if left == 0 {
                // Past the last record: this only checks that nothing follows it.
                match batch.records.next() {
                    Some(Err(e)) => return Err(corrupt(tp, self.position, e)),
                    Some(Ok(_)) | None => {
                        chunk.batches.pop_front();
                        continue;
                    }
                }
            }
            let room = max.saturating_sub(out.len());
            if room == 0 {
                return Ok(());
            }
            let timestamp_type = batch.timestamp_type;
            let skip_before = chunk.skip_before;
            let mut last = None;
            let mut failed = None;
            let mut used = 0;
            while used < left && out.len() < max {
                used += 1;
                match batch.records.next() {
                    Some(Ok(record)) => {
                        if record.offset < skip_before {
                            continue;
                        }
                        last = Some(record.offset);
                        out.push(ConsumerRecord {
                            topic: self.topic.clone(),
                            partition: tp.partition,
                            offset: record.offset,
                            timestamp: record.timestamp,
                            timestamp_type,
                            key: record.key,
                            value: record.value,
                            headers: record.headers,
                        });
                    }
                    Some(Err(e)) => {
                        failed = Some(e);
                        break;
                    }
                    None => break,
                }
            }
            chunk.remaining = chunk.remaining.saturating_sub(used);
            if let Some(offset) = last {
                self.position = Some(offset.saturating_add(1));
            }
            if let Some(e) = failed {
                return Err(corrupt(tp, self.position, e));
            }
        }
    }
}

/// [`PartitionState::take_into`] over `states` (skipping paused ones) until `out` holds
/// `max` records; stops at the first error, returning it with its partition.
fn take_from<'a>(
    states: impl Iterator<Item = (&'a TopicPartition, &'a mut PartitionState)>,
    out: &mut Vec<ConsumerRecord>,
    max: usize,
) -> Option<(TopicPartition, Error)> {
    for (tp, state) in states {
        if out.len() >= max {
            break;
        }
        if state.paused {
            continue;
        }
        if let Err(error) = state.take_into(tp, out, max) {
            return Some((tp.clone(), error));
        }
    }
    None
}

/// The error for a record batch that cannot be decoded.
fn corrupt(tp: &TopicPartition, offset: Option<i64>, e: BatchError) -> Error {
    let at = offset.map_or_else(String::new, |o| format!(" at or after offset {o}"));
    Error::Protocol {
        api: "Fetch",
        addr: format!("partition {tp}"),
        reason: format!("record batch{at} is invalid: {e}"),
    }
}

/// How one partition's fetch ended.
#[derive(Debug)]
enum PartitionOutcome {
    Data {
        chunk: Chunk,
        high_watermark: i64,
        log_start_offset: i64,
    },
    OutOfRange,
    Failed(Error),
}

#[derive(Debug)]
struct PartitionResult {
    tp: TopicPartition,
    epoch: u64,
    outcome: PartitionOutcome,
}

/// The answer to one Fetch request.
#[derive(Debug)]
pub(crate) struct FetchResult {
    broker: i32,
    partitions: Vec<PartitionResult>,
}

/// The consumer's fetch machinery; see the module docs.
pub(crate) struct Fetcher {
    client: Client,
    config: FetchConfig,
    partitions: BTreeMap<TopicPartition, PartitionState>,
    in_flight_brokers: HashSet<i32>,
    results_tx: mpsc::UnboundedSender<FetchResult>,
    results_rx: mpsc::UnboundedReceiver<FetchResult>,
    next_epoch: u64,
    /// Where the next `take` starts, for fairness across partitions.
    rotation: usize,
    /// A decoding error found by a `take` that had records to return first, and its
    /// partition (a seek there, or giving the partition up, forgets it).
    deferred_error: Option<(TopicPartition, Error)>,
    refreshing: Option<tokio::task::JoinHandle<()>>,
    refresh_attempt: u32,
    /// Private connections: a long-poll Fetch holds its connection up to `max_wait`.
    channel: String,
}

impl Drop for Fetcher {
    fn drop(&mut self) {
        self.client.close_channel(&self.channel);
    }
}

impl Fetcher {
    pub fn new(client: Client, config: FetchConfig) -> Fetcher {
        let (results_tx, results_rx) = mpsc::unbounded_channel();
        Fetcher {
            channel: client.new_channel("fetch"),
            client,
            config,
            partitions: BTreeMap::new(),
            in_flight_brokers: HashSet::new(),
            results_tx,
            results_rx,
            next_epoch: 1,
            rotation: 0,
            deferred_error: None,
            refreshing: None,
            refresh_attempt: 0,
        }
    }

    fn epoch(&mut self) -> u64 {
        self.next_epoch += 1;
        self.next_epoch
    }

    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.partitions.keys().cloned().collect()
    }

    pub fn state(&self, tp: &TopicPartition) -> Option<&PartitionState> {
        self.partitions.get(tp)
    }

    pub fn state_mut(&mut self, tp: &TopicPartition) -> Option<&mut PartitionState> {
        self.partitions.get_mut(tp)
    }

    /// Adds partitions (no position yet); already assigned ones are kept as they are.
    pub fn add(&mut self, tps: &[TopicPartition]) {
        for tp in tps {
            if !self.partitions.contains_key(tp) {
                let state = PartitionState::new(tp, self.epoch());
                self.partitions.insert(tp.clone(), state);
            }
        }
    }

    pub fn remove(&mut self, tps: &[TopicPartition]) {
        for tp in tps {
            self.partitions.remove(tp);
            self.forget_error(tp);
        }
    }

    pub fn clear(&mut self) {
        self.partitions.clear();
        self.deferred_error = None;
    }

    fn forget_error(&mut self, tp: &TopicPartition) {
        if self.deferred_error.as_ref().is_some_and(|(t, _)| t == tp) {
            self.deferred_error = None;
        }
    }

    /// Sets the position; buffered records and fetches in flight are dropped.
    pub fn seek(&mut self, tp: &TopicPartition, offset: i64) -> bool {
        self.forget_error(tp);
        let epoch = self.epoch();
        let Some(state) = self.partitions.get_mut(tp) else {
            return false;
        };
        state.clear(epoch);
        state.position = Some(offset);
        state.reset = None;
        true
    }

    /// Asks for the position to be looked up with `spec` before the next fetch.
    pub fn seek_to(&mut self, tp: &TopicPartition, spec: OffsetSpec) -> bool {
        self.forget_error(tp);
        let epoch = self.epoch();
        let Some(state) = self.partitions.get_mut(tp) else {
            return false;
        };
        state.clear(epoch);
        state.position = None;
        state.reset = Some(spec);
        true
    }

    /// Partitions with neither a position nor a pending lookup.
    pub fn without_position(&self) -> Vec<TopicPartition> {
        self.partitions
            .iter()
            .filter(|(_, s)| s.position.is_none() && s.reset.is_none())
            .map(|(tp, _)| tp.clone())
            .collect()
    }

    /// Partitions waiting for an offset lookup.
    pub fn pending_resets(&self) -> Vec<(TopicPartition, OffsetSpec)> {
        self.partitions
            .iter()
            .filter_map(|(tp, s)| s.reset.map(|spec| (tp.clone(), spec)))
            .collect()
    }

    /// Positions of all partitions that have one.
    pub fn positions(&self) -> Vec<(TopicPartition, i64)> {
        self.partitions
            .iter()
            .filter_map(|(tp, s)| s.position.map(|p| (tp.clone(), p)))
            .collect()
    }

    /// Hands out up to `max` buffered records of partitions that are not paused, taking
    /// from partitions in rotation. Positions move past what is handed out.
    ///
    /// A record that cannot be decoded fails the call if no record came before it;
    /// otherwise those records are returned and the error is the next call's answer
    /// (unless the partition is sought or given up first). Either way the partition's
    /// buffered data is dropped, so it is fetched again from the failing record.
    pub fn take(&mut self, max: usize) -> Result<Vec<ConsumerRecord>> {
        if let Some((_, error)) = self.deferred_error.take() {
            return Err(error);
        }
        let count = self.partitions.len();
        if count == 0 {
            return Ok(Vec::new());
        }
        self.rotation = (self.rotation + 1) % count;
        let buffered: usize = self
            .partitions
            .values()
            .filter(|s| !s.paused)
            .map(PartitionState::buffered)
            .sum();
        let mut out = Vec::with_capacity(buffered.min(max));
        if buffered == 0 && self.partitions.values().all(|s| s.buffer.is_empty()) {
            return Ok(out);
        }
        let rotation = self.rotation;
        let mut failed = take_from(self.partitions.iter_mut().skip(rotation), &mut out, max);
        if failed.is_none() {
            failed = take_from(self.partitions.iter_mut().take(rotation), &mut out, max);
        }
        if let Some((tp, error)) = failed {
            let epoch = self.epoch();
            if let Some(state) = self.partitions.get_mut(&tp) {
                state.clear(epoch);
            }
            if out.is_empty() {
                return Err(error);
            }
            self.deferred_error = Some((tp, error));
        }
        Ok(out)
    }

    /// Sends a Fetch to every broker that has fetchable partitions and no fetch in
    /// flight. Partitions without a known leader trigger a metadata refresh. Returns
    /// whether a fetch was started.
    ///
    /// Each fetch runs in a task of its own, which the caller should let run soon (see
    /// [`super::Consumer::poll`]).
    pub fn send_fetches(&mut self) -> bool {
        let now = Instant::now();
        let fetchable = |state: &PartitionState| {
            !(state.in_flight
                || state.paused
                || state.buffer.len() > 1
                || state.retry_after.is_some_and(|t| t > now))
        };
        // Called on every poll: most calls find nothing to do, and return early.
        if !self.partitions.values().any(fetchable) {
            return false;
        }
        let mut by_broker: BTreeMap<i32, Vec<(TopicPartition, i64, u64)>> = BTreeMap::new();
        let mut missing: Vec<String> = Vec::new();
        let ids: HashMap<String, Uuid> = self.client.with_metadata(|m| {
            for (tp, state) in &self.partitions {
                if !fetchable(state) {
                    continue;
                }
                let Some(offset) = state.fetch_offset() else {
                    continue;
                };
                match m.leader(&tp.topic, tp.partition) {
                    Some(leader) if !self.in_flight_brokers.contains(&leader) => {
                        by_broker.entry(leader).or_default().push((
                            tp.clone(),
                            offset,
                            state.epoch,
                        ));
                    }
                    Some(_) => {}
                    None => missing.push(tp.topic.clone()),
                }
            }
            self.partitions
                .keys()
                .map(|tp| {
                    let id = m.topic(&tp.topic).map_or(Uuid::nil(), |t| t.id);
                    (tp.topic.clone(), id)
                })
                .collect()
        });
        if !missing.is_empty() {
            self.refresh(missing);
        }
        let sent = !by_broker.is_empty();
        for (broker, parts) in by_broker {
            for (tp, _, _) in &parts {
                if let Some(state) = self.partitions.get_mut(tp) {
                    state.in_flight = true;
                }
            }
            self.in_flight_brokers.insert(broker);
            tokio::spawn(fetch(
                self.client.clone(),
                self.channel.clone(),
                self.config.clone(),
                broker,
                parts,
                ids.clone(),
                self.results_tx.clone(),
            ));
        }
        sent
    }

    fn refresh(&mut self, mut topics: Vec<String>) {
        if self.refreshing.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        topics.sort();
        topics.dedup();
        let client = self.client.clone();
        let pause = if self.refresh_attempt == 0 {
            Duration::ZERO
        } else {
            client.backoff(self.refresh_attempt - 1)
        };
        self.refresh_attempt = self.refresh_attempt.saturating_add(1);
        self.refreshing = Some(tokio::spawn(async move {
            tokio::time::sleep(pause).await;
            if let Err(e) = client.refresh_metadata(Some(&topics), false).await {
                tracing::debug!(error = %e, "consumer metadata refresh failed");
            }
        }));
    }

    /// Waits until a fetch answer arrives or `deadline` passes, and applies what came
    /// (see [`Fetcher::apply`]). Returns whether an answer arrived.
    pub async fn wait(&mut self, deadline: Instant, reset: Option<OffsetSpec>) -> Result<bool> {
        if self.in_flight_brokers.is_empty() {
            // Nothing to wait for but a metadata refresh or a backoff: sleep a little.
            let until = deadline.min(Instant::now() + Duration::from_millis(50));
            tokio::time::sleep_until(until.into()).await;
            return Ok(false);
        }
        let result = tokio::select! {
            result = self.results_rx.recv() => result,
            _ = tokio::time::sleep_until(deadline.into()) => None,
        };
        let Some(result) = result else {
            return Ok(false);
        };
        self.apply(result, reset)?;
        // Take whatever else has arrived meanwhile.
        self.apply_arrived(reset)?;
        Ok(true)
    }

    /// Applies the fetch answers that have arrived, without waiting.
    pub fn apply_arrived(&mut self, reset: Option<OffsetSpec>) -> Result<()> {
        while let Ok(result) = self.results_rx.try_recv() {
            self.apply(result, reset)?;
        }
        Ok(())
    }

    /// Applies one fetch answer: buffers records, schedules offset resets (with
    /// `reset`, the `auto_offset_reset` policy) and retries. Fails on errors the
    /// application must see (out of range without a reset policy, corrupt data,
    /// authorization...).
    fn apply(&mut self, result: FetchResult, reset: Option<OffsetSpec>) -> Result<()> {
        self.in_flight_brokers.remove(&result.broker);
        let mut first_error = None;
        let mut refresh = Vec::new();
        let now = Instant::now();
        for part in result.partitions {
            let Some(state) = self.partitions.get_mut(&part.tp) else {
                continue; // no longer assigned
            };
            state.in_flight = false;
            if part.epoch != state.epoch {
                continue; // answer to a fetch from before a seek
            }
            match part.outcome {
                PartitionOutcome::Data {
                    chunk,
                    high_watermark,
                    log_start_offset,
                } => {
                    self.refresh_attempt = 0;
                    state.failing = None;
                    state.high_watermark = Some(high_watermark);
                    state.log_start_offset = Some(log_start_offset).filter(|&o| o >= 0);
                    let fetched_from = state.fetch_offset().unwrap_or(chunk.next_offset);
                    if !chunk.batches.is_empty() || chunk.next_offset > fetched_from {
                        state.buffer.push_back(chunk);
                    }
                }
                PartitionOutcome::OutOfRange => {
                    state.failing = None;
                    let offset = state.fetch_offset().unwrap_or(-1);
                    match reset {
                        Some(spec) => {
                            tracing::debug!(tp = %part.tp, offset, "offset out of range; resetting");
                            state.buffer.clear();
                            state.position = None;
                            state.reset = Some(spec);
                        }
                        None => {
                            first_error.get_or_insert(Error::OffsetOutOfRange {
                                topic: part.tp.topic.clone(),
                                partition: part.tp.partition,
                                offset,
                            });
                        }
                    }
                }
                PartitionOutcome::Failed(error) => {
                    if error.is_retriable() || error.needs_metadata_refresh() {
                        tracing::debug!(tp = %part.tp, error = %error, "fetch failed; retrying");
                        state.retry_after = Some(now + self.client.backoff(0));
                        let since = state.failing.as_ref().map_or(now, |(since, _)| *since);
                        state.failing = Some((since, error.clone()));
                        if error.needs_metadata_refresh() {
                            refresh.push(part.tp.topic.clone());
                        }
                    } else {
                        first_error.get_or_insert(error);
                    }
                }
            }
        }
        if !refresh.is_empty() {
            for topic in &refresh {
                self.client.invalidate_topic(topic);
            }
            self.refresh(refresh);
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

/// One Fetch request to `broker` for `parts` (partition, fetch offset, epoch), decoded
/// into a [`FetchResult`] and sent back on `results`.
async fn fetch(
    client: Client,
    channel: String,
    config: FetchConfig,
    broker: i32,
    parts: Vec<(TopicPartition, i64, u64)>,
    ids: HashMap<String, Uuid>,
    results: mpsc::UnboundedSender<FetchResult>,
) {
    let outcome = fetch_once(&client, &channel, &config, broker, &parts, &ids).await;
    let partitions = match outcome {
        Ok(partitions) => partitions,
        Err(error) => parts
            .iter()
            .map(|(tp, _, epoch)| PartitionResult {
                tp: tp.clone(),
                epoch: *epoch,
                outcome: PartitionOutcome::Failed(error.clone()),
            })
            .collect(),
    };
    let _ = results.send(FetchResult { broker, partitions }); // the consumer may be gone
}

async fn fetch_once(
    client: &Client,
    channel: &str,
    config: &FetchConfig,
    broker: i32,
    parts: &[(TopicPartition, i64, u64)],
    ids: &HashMap<String, Uuid>,
) -> Result<Vec<PartitionResult>> {
    let connection = client.broker_on(broker, channel).await?;
    let id_of = |topic: &str| ids.get(topic).copied().unwrap_or_default();
    // Fetch v13+ names topics by id; without an id for every topic, stay at v12.
    let cap = if parts.iter().any(|(tp, _, _)| id_of(&tp.topic).is_nil()) {
        12
    } else {
        i16::MAX
    };
    let version = connection.version_capped::<FetchRequest>(cap)?;
    let mut topics: Vec<FetchTopic> = Vec::new();
    for (tp, offset, _) in parts {
        let partition = FetchPartition::default()
            .with_partition(tp.partition)
            .with_fetch_offset(*offset)
            .with_current_leader_epoch(-1)
            .with_log_start_offset(-1)
            .with_partition_max_bytes(config.partition_max_bytes);
        match topics.iter_mut().find(|t| t.topic.0.as_str() == tp.topic) {
            Some(topic) => topic.partitions.push(partition),
            None => topics.push(
                FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(tp.topic.clone())))
                    .with_topic_id(id_of(&tp.topic))
                    .with_partitions(vec![partition]),
            ),
        }
    }
    let max_wait = i32::try_from(config.max_wait.as_millis()).unwrap_or(i32::MAX);
    let request = FetchRequest::default()
        .with_replica_id((-1).into())
        .with_max_wait_ms(max_wait)
        .with_min_bytes(config.min_bytes)
        .with_max_bytes(config.max_bytes)
        .with_isolation_level(config.isolation_level.wire())
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(topics);
    let timeout = client.config().request_timeout + config.max_wait;
    let response = connection
        .send_with_timeout(&request, version, timeout)
        .await?;
    if let Some(error) = ResponseError::try_from_code(response.error_code) {
        return Err(Error::broker(
            format!("fetch from {}", connection.addr()),
            error,
            None,
        ));
    }
    let names: HashMap<Uuid, &str> = ids.iter().map(|(name, id)| (*id, name.as_str())).collect();
    let mut out = Vec::with_capacity(parts.len());
    for (tp, offset, epoch) in parts {
        let answer = response
            .responses
            .iter()
            .filter(|t| {
                if version >= 13 {
                    names.get(&t.topic_id) == Some(&tp.topic.as_str())
                } else {
                    t.topic.0.as_str() == tp.topic
                }
            })
            .flat_map(|t| t.partitions.iter())
            .find(|p| p.partition_index == tp.partition);
        let outcome = match answer {
            // A broker may leave partitions out (e.g. when the response is full).
            None => PartitionOutcome::Data {
                chunk: Chunk::empty(*offset),
                high_watermark: -1,
                log_start_offset: -1,
            },
            Some(p) => match ResponseError::try_from_code(p.error_code) {
                None => match decode(tp, *offset, p.records.clone(), config.check_crcs) {
                    Ok(chunk) => PartitionOutcome::Data {
                        chunk,
                        high_watermark: p.high_watermark,
                        log_start_offset: p.log_start_offset,
                    },
                    Err(e) => PartitionOutcome::Failed(e),
                },
                Some(ResponseError::OffsetOutOfRange) => PartitionOutcome::OutOfRange,
                Some(error) => {
                    PartitionOutcome::Failed(Error::broker(format!("fetch {tp}"), error, None))
                }
            },
        };
        out.push(PartitionResult {
            tp: tp.clone(),
            epoch: *epoch,
            outcome,
        });
    }
    Ok(out)
}

/// Prepares a partition's record batches from `offset` on: checks their framing and
/// (with `check_crcs`) CRCs, decompresses them and skips control batches and batches
/// before `offset`; the records are decoded later ([`PartitionState::take_into`]). A
/// trailing partial batch (Kafka cuts responses at the size limit) is ignored; a first
/// batch that is incomplete is an error. The chunk ends after the last complete batch.
fn decode(
    tp: &TopicPartition,
    offset: i64,
    records: Option<Bytes>,
    check_crcs: bool,
) -> Result<Chunk> {
    let mut chunk = Chunk::empty(offset);
    let Some(bytes) = records else {
        return Ok(chunk);
    };
    let corrupt = |e: BatchError| corrupt(tp, Some(offset), e);
    for (index, batch) in batches(&bytes).enumerate() {
        let batch = match batch {
            Ok(batch) => batch,
            Err(BatchError::Truncated { .. }) if index > 0 => break,
            Err(e) => return Err(corrupt(e)),
        };
        let header = BatchHeader::new(batch).map_err(corrupt)?;
        let last_offset = header.last_offset();
        if last_offset < offset {
            continue; // an older batch the broker included whole
        }
        if check_crcs {
            validate_stored_batch(batch).map_err(corrupt)?;
        }
        chunk.next_offset = chunk.next_offset.max(last_offset.saturating_add(1));
        if header.is_control() {
            continue; // transaction markers are not application records
        }
        let timestamp_type = header.timestamp_type();
        let records = Records::decode(bytes.slice_ref(batch)).map_err(corrupt)?;
        chunk.remaining = chunk.remaining.saturating_add(records.remaining());
        chunk.batches.push_back(BatchRecords {
            records,
            timestamp_type,
        });
    }
    Ok(chunk)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use super::*;
    use crate::consumer::{AutoOffsetReset, Consumer, ConsumerConfig};
    use crate::test_support::{self, encode, FakeBroker, Received};
    use crate::ClientConfig;
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::list_offsets_response::{
        ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
    };
    use kafka_protocol::messages::{
        ApiKey, FetchResponse, ListOffsetsRequest, ListOffsetsResponse,
    };
    use sluice_storage::batch::{patch_base_offset, BatchBuilder, Compression};

    /// A fake partition `t-0` holding offsets 0..5 ("v0".."v4", one batch each), that
    /// answers a fetch at offset 100 with OFFSET_OUT_OF_RANGE and, while `corrupt` is
    /// set, serves a batch with a broken CRC.
    async fn fake_partition(corrupt: Arc<AtomicBool>) -> FakeBroker {
        let handler = move |received: &Received, _: &[ApiKey]| match received.api {
            ApiKey::ListOffsets => {
                let request: ListOffsetsRequest = test_support::decode(received);
                let spec = request.topics[0].partitions[0].timestamp;
                let offset = if spec == -2 { 0 } else { 5 };
                let answer = ListOffsetsResponse::default().with_topics(vec![
                    ListOffsetsTopicResponse::default()
                        .with_name(request.topics[0].name.clone())
                        .with_partitions(vec![ListOffsetsPartitionResponse::default()
                            .with_partition_index(0)
                            .with_offset(offset)
                            .with_timestamp(-1)]),
                ]);
                encode(&answer, received.version)
            }
            ApiKey::Fetch => {
                let request: FetchRequest = test_support::decode(received);
                let topic = &request.topics[0];
                let offset = topic.partitions[0].fetch_offset;
                let mut data = PartitionData::default()
                    .with_partition_index(0)
                    .with_high_watermark(5)
                    .with_log_start_offset(0);
                if offset == 100 {
                    data.error_code = ResponseError::OffsetOutOfRange.code();
                } else {
                    let mut bytes = Vec::new();
                    for o in offset.max(0)..5 {
                        bytes.extend(batch(o, &[&format!("v{o}")], Compression::None));
                    }
                    if corrupt.load(Ordering::SeqCst) && !bytes.is_empty() {
                        let last = bytes.len() - 1;
                        bytes[last] ^= 0x55;
                    }
                    data.records = Some(Bytes::from(bytes));
                }
                fetch_answer(topic, data, received.version)
            }
            other => panic!("unexpected {other:?}"),
        };
        FakeBroker::start(&[("t", 1)], Arc::new(handler)).await
    }

    #[tokio::test]
    async fn out_of_range_resets_and_corruption_is_reported() {
        let corrupt = Arc::new(AtomicBool::new(false));
        let broker = fake_partition(corrupt.clone()).await;
        let client = Client::connect(ClientConfig::new(&broker.addr))
            .await
            .unwrap();
        let config = ConsumerConfig {
            auto_offset_reset: AutoOffsetReset::Earliest,
            fetch_max_wait: Duration::from_millis(10),
            ..ConsumerConfig::default()
        };
        let mut consumer = Consumer::new(client.clone(), config).unwrap();
        let tp = TopicPartition::new("t", 0);
        consumer.assign(vec![tp.clone()]).await.unwrap();
        consumer.seek(&tp, 100).unwrap();
        let mut values = Vec::new();
        while values.len() < 5 {
            for r in consumer.poll(Duration::from_secs(5)).await.unwrap() {
                values.push(String::from_utf8(r.value.unwrap().to_vec()).unwrap());
            }
        }
        assert_eq!(values, ["v0", "v1", "v2", "v3", "v4"]);
        assert_eq!(consumer.position(&tp), Some(5));
        assert_eq!(consumer.high_watermark(&tp), Some(5));

        // Without a reset policy, out of range is the application's problem.
        let config = ConsumerConfig {
            auto_offset_reset: AutoOffsetReset::None,
            fetch_max_wait: Duration::from_millis(10),
            ..ConsumerConfig::default()
        };
        let mut strict = Consumer::new(client.clone(), config).unwrap();
        strict.assign(vec![tp.clone()]).await.unwrap();
        let err = strict.poll(Duration::from_secs(1)).await.unwrap_err();
        assert!(matches!(err, Error::NoOffset { .. }), "{err:?}");
        strict.seek(&tp, 100).unwrap();
        let err = strict.poll(Duration::from_secs(5)).await.unwrap_err();
        assert!(
            matches!(err, Error::OffsetOutOfRange { offset: 100, .. }),
            "{err:?}"
        );

        // A corrupt batch is an error, not garbage records.
        corrupt.store(true, Ordering::SeqCst);
        consumer.seek(&tp, 3).unwrap();
        let err = consumer.poll(Duration::from_secs(5)).await.unwrap_err();
        assert!(matches!(err, Error::Protocol { .. }), "{err:?}");
    }

    /// The next fetch must go out while the application is still busy with the records
    /// of the last one, even if it never yields to the runtime in between (a tokio task
    /// spawned by a busy worker cannot be run by an idle one until the spawner yields).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_next_fetch_goes_out_while_the_application_works() {
        let fetches = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = fetches.clone();
        let handler = move |received: &Received, _: &[ApiKey]| match received.api {
            ApiKey::Fetch => {
                counter.fetch_add(1, Ordering::SeqCst);
                let request: FetchRequest = test_support::decode(received);
                let topic = &request.topics[0];
                let offset = topic.partitions[0].fetch_offset;
                let data = PartitionData::default()
                    .with_partition_index(0)
                    .with_high_watermark(i64::MAX / 2)
                    .with_log_start_offset(0)
                    .with_records(Some(Bytes::from(batch(
                        offset,
                        &["a"; 10],
                        Compression::None,
                    ))));
                fetch_answer(topic, data, received.version)
            }
            other => panic!("unexpected {other:?}"),
        };
        let broker = FakeBroker::start(&[("t", 1)], Arc::new(handler)).await;
        let client = Client::connect(ClientConfig::new(&broker.addr))
            .await
            .unwrap();
        let config = ConsumerConfig {
            max_poll_records: 5,
            ..ConsumerConfig::default()
        };
        let mut consumer = Consumer::new(client, config).unwrap();
        let tp = TopicPartition::new("t", 0);
        consumer.assign(vec![tp.clone()]).await.unwrap();
        consumer.seek(&tp, 0).unwrap();
        // On a worker thread, as an application's task would be (the test's own future
        // is not run by a worker).
        let seen = tokio::spawn(async move {
            let mut first = Vec::new();
            while first.is_empty() {
                first = consumer.poll(Duration::from_secs(5)).await.unwrap();
            }
            // The records of the first fetch are buffered and the second fetch went out
            // with this poll. Work without yielding (blocking this worker), then look.
            let deadline = Instant::now() + Duration::from_secs(2);
            while fetches.load(Ordering::SeqCst) < 2 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            fetches.load(Ordering::SeqCst)
        })
        .await
        .unwrap();
        assert_eq!(seen, 2);
    }

    /// A Fetch answer with one partition's `data` for the request's `topic`.
    fn fetch_answer(
        topic: &FetchTopic,
        data: PartitionData,
        version: i16,
    ) -> Option<bytes::BytesMut> {
        let answer =
            FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
                .with_topic(topic.topic.clone())
                .with_partitions(vec![data])]);
        encode(&answer, version)
    }

    fn batch(base: i64, values: &[&str], codec: Compression) -> Vec<u8> {
        let mut builder = BatchBuilder::new(codec);
        for (i, v) in values.iter().enumerate() {
            builder.push(1000 + i as i64, Some(b"k"), Some(v.as_bytes()), &[]);
        }
        let mut bytes = builder.build().unwrap().to_vec();
        patch_base_offset(&mut bytes, base);
        bytes
    }

    /// A partition state for `tp`, positioned at the start of `chunk`, holding it.
    fn holding(tp: &TopicPartition, chunk: Chunk) -> PartitionState {
        let mut state = PartitionState::new(tp, 1);
        state.position = Some(chunk.skip_before);
        state.buffer.push_back(chunk);
        state
    }

    /// Prepares and decodes everything: the records and the offset after the chunk.
    fn decode_all(
        tp: &TopicPartition,
        offset: i64,
        records: Option<Bytes>,
        check_crcs: bool,
    ) -> Result<(Vec<ConsumerRecord>, i64)> {
        let chunk = decode(tp, offset, records, check_crcs)?;
        let next = chunk.next_offset;
        let mut state = holding(tp, chunk);
        let mut out = Vec::new();
        state.take_into(tp, &mut out, usize::MAX)?;
        assert!(state.buffer.is_empty());
        assert_eq!(state.position, Some(next));
        Ok((out, next))
    }

    #[test]
    fn decode_skips_earlier_records_and_ignores_a_cut_tail() {
        let tp = TopicPartition::new("t", 0);
        let mut bytes = batch(10, &["a", "b", "c"], Compression::Gzip);
        bytes.extend(batch(13, &["d", "e"], Compression::Zstd));
        let full = bytes.len();
        bytes.extend(batch(15, &["f"], Compression::Lz4));
        bytes.truncate(full + 20); // partial third batch
        let (records, next) = decode_all(&tp, 11, Some(Bytes::from(bytes)), true).unwrap();
        let values: Vec<&[u8]> = records
            .iter()
            .map(|r| r.value.as_deref().unwrap())
            .collect();
        assert_eq!(values, [&b"b"[..], b"c", b"d", b"e"]);
        assert_eq!(records[0].offset, 11);
        assert_eq!(records[0].timestamp, 1001);
        assert_eq!(&*records[0].topic, "t");
        assert_eq!(next, 15);
    }

    #[test]
    fn take_stops_at_max_and_moves_the_position() {
        let tp = TopicPartition::new("t", 3);
        let mut bytes = batch(0, &["a", "b", "c"], Compression::None);
        bytes.extend(batch(3, &["d", "e"], Compression::Lz4));
        let chunk = decode(&tp, 1, Some(Bytes::from(bytes)), true).unwrap();
        assert_eq!(chunk.remaining, 5);
        let mut state = holding(&tp, chunk);
        let mut out = Vec::new();
        state.take_into(&tp, &mut out, 2).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(state.position, Some(3));
        assert_eq!(out[1].partition, 3);
        // The first batch is used up: the next take starts in the second.
        state.take_into(&tp, &mut out, 3).unwrap();
        assert_eq!(out.len(), 3);
        assert_eq!(out[2].offset, 3);
        assert_eq!(state.position, Some(4));
        // Taking the last record drops the chunk.
        state.take_into(&tp, &mut out, 10).unwrap();
        let offsets: Vec<i64> = out.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, [1, 2, 3, 4]);
        assert_eq!(state.position, Some(5));
        assert!(state.buffer.is_empty());
    }

    #[test]
    fn a_record_that_does_not_decode_comes_after_the_records_before_it() {
        let tp = TopicPartition::new("t", 0);
        let mut bytes = batch(0, &["a", "b", "c"], Compression::None);
        // Break the last record's header count (its last byte) without fixing the CRC:
        // only a decoder that does not check CRCs gets this far.
        let last = bytes.len() - 1;
        bytes[last] = 0x07;
        let bytes = Bytes::from(bytes);
        assert!(decode(&tp, 0, Some(bytes.clone()), true).is_err());
        let chunk = decode(&tp, 0, Some(bytes), false).unwrap();
        let mut state = holding(&tp, chunk);
        let mut out = Vec::new();
        let err = state.take_into(&tp, &mut out, 100).unwrap_err();
        assert!(matches!(err, Error::Protocol { .. }), "{err:?}");
        assert_eq!(out.len(), 2);
        assert_eq!(state.position, Some(2));
    }

    /// Small fetches with a short wait, no CRC checks.
    fn test_config() -> FetchConfig {
        FetchConfig {
            min_bytes: 1,
            max_bytes: 1 << 20,
            partition_max_bytes: 1 << 20,
            max_wait: Duration::from_millis(10),
            check_crcs: false,
            isolation_level: super::super::IsolationLevel::ReadUncommitted,
        }
    }

    #[tokio::test]
    async fn a_decoding_error_after_records_is_the_next_takes_answer() {
        let broker = fake_partition(Arc::new(AtomicBool::new(false))).await;
        let client = Client::connect(ClientConfig::new(&broker.addr))
            .await
            .unwrap();
        let mut fetcher = Fetcher::new(client, test_config());
        let tp = TopicPartition::new("t", 0);
        fetcher.add(std::slice::from_ref(&tp));
        // "a", "b", then a record whose header count is negative.
        let mut bytes = batch(0, &["a", "b", "c"], Compression::None);
        let last = bytes.len() - 1;
        bytes[last] = 0x07;
        let bytes = Bytes::from(bytes);
        let buffer = |fetcher: &mut Fetcher| {
            let chunk = decode(&tp, 0, Some(bytes.clone()), false).unwrap();
            let state = fetcher.partitions.get_mut(&tp).unwrap();
            state.buffer.push_back(chunk);
        };

        fetcher.seek(&tp, 0);
        buffer(&mut fetcher);
        assert_eq!(fetcher.take(100).unwrap().len(), 2);
        let err = fetcher.take(100).unwrap_err();
        assert!(matches!(err, Error::Protocol { .. }), "{err:?}");
        // The bad data is dropped; the partition is read again from the failing record.
        assert_eq!(fetcher.state(&tp).unwrap().position, Some(2));
        assert!(fetcher.state(&tp).unwrap().buffer.is_empty());
        assert!(fetcher.take(100).unwrap().is_empty());

        // A seek past the failing record forgets the error.
        fetcher.seek(&tp, 0);
        buffer(&mut fetcher);
        assert_eq!(fetcher.take(100).unwrap().len(), 2);
        fetcher.seek(&tp, 3);
        assert!(fetcher.take(100).unwrap().is_empty());
    }

    #[tokio::test]
    async fn failing_fetches_are_remembered_until_data_or_a_seek() {
        let client = Client::new(ClientConfig::new("127.0.0.1:9")).unwrap();
        let mut fetcher = Fetcher::new(client, test_config());
        let tp = TopicPartition::new("t", 0);
        fetcher.add(std::slice::from_ref(&tp));
        fetcher.seek(&tp, 0);
        let answer = |fetcher: &Fetcher, outcome: PartitionOutcome| FetchResult {
            broker: 1,
            partitions: vec![PartitionResult {
                tp: tp.clone(),
                epoch: fetcher.state(&tp).unwrap().epoch,
                outcome,
            }],
        };
        let lost = |addr: &str| {
            PartitionOutcome::Failed(Error::Disconnected {
                addr: addr.to_owned(),
            })
        };
        let failing = |fetcher: &Fetcher| fetcher.state(&tp).unwrap().failing.clone();

        fetcher.apply(answer(&fetcher, lost("a")), None).unwrap();
        let (since, _) = failing(&fetcher).expect("a retriable failure is remembered");
        fetcher.apply(answer(&fetcher, lost("b")), None).unwrap();
        let (still_since, latest) = failing(&fetcher).unwrap();
        assert_eq!(still_since, since, "failing since the first failure");
        assert!(matches!(latest, Error::Disconnected { addr } if addr == "b"));

        let data = PartitionOutcome::Data {
            chunk: Chunk::empty(0),
            high_watermark: 0,
            log_start_offset: 0,
        };
        fetcher.apply(answer(&fetcher, data), None).unwrap();
        assert!(
            failing(&fetcher).is_none(),
            "cleared by a fetch that worked"
        );

        fetcher.apply(answer(&fetcher, lost("a")), None).unwrap();
        assert!(failing(&fetcher).is_some());
        fetcher.seek(&tp, 0);
        assert!(failing(&fetcher).is_none(), "cleared by a seek");
    }

    #[test]
    fn decode_rejects_corruption_without_panicking() {
        let tp = TopicPartition::new("t", 0);
        let mut bytes = batch(0, &["a"], Compression::Snappy);
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        assert!(matches!(
            decode(&tp, 0, Some(Bytes::from(bytes.clone())), true),
            Err(Error::Protocol { .. })
        ));
        // Without the CRC check, the broken codec data is still an error.
        assert!(decode_all(&tp, 0, Some(Bytes::from(bytes.clone())), false).is_err());
        // A lone partial batch cannot make progress: an error, not an endless loop.
        let short = Bytes::from(bytes[..30].to_vec());
        assert!(decode(&tp, 0, Some(short), true).is_err());
        // Garbage of every length is an error or skipped, never a panic.
        for len in 0..80 {
            for check_crcs in [true, false] {
                let garbage = Bytes::from(vec![0x5a; len]);
                let _ = decode_all(&tp, 0, Some(garbage), check_crcs);
            }
        }
        let (records, next) = decode_all(&tp, 7, None, true).unwrap();
        assert!(records.is_empty());
        assert_eq!(next, 7);
    }
}
