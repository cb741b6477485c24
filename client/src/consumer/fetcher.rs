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
//! Each request runs in its own task, which also decodes the record batches (checking
//! CRCs, decompressing any codec, skipping control batches and records before the fetch
//! offset), so decoding runs in parallel with the application. A seek bumps the
//! partition's epoch: answers to fetches sent before it are dropped.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use sluice_storage::batch::{batches, validate_stored_batch, BatchHeader, Records};
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
}

/// Records decoded from one partition's part of a fetch response.
#[derive(Debug)]
struct Chunk {
    records: VecDeque<ConsumerRecord>,
    /// The offset after the last batch in the chunk (control batches included).
    next_offset: i64,
}

/// One partition's fetch state; see the module docs.
#[derive(Debug, Default)]
pub(crate) struct PartitionState {
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
}

impl PartitionState {
    fn fetch_offset(&self) -> Option<i64> {
        self.buffer.back().map(|c| c.next_offset).or(self.position)
    }

    fn clear(&mut self, epoch: u64) {
        self.buffer.clear();
        self.epoch = epoch;
        self.retry_after = None;
    }
}

/// How one partition's fetch ended.
#[derive(Debug)]
enum PartitionOutcome {
    Data {
        records: VecDeque<ConsumerRecord>,
        next_offset: i64,
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
                let epoch = self.epoch();
                let state = PartitionState {
                    epoch,
                    ..PartitionState::default()
                };
                self.partitions.insert(tp.clone(), state);
            }
        }
    }

    pub fn remove(&mut self, tps: &[TopicPartition]) {
        for tp in tps {
            self.partitions.remove(tp);
        }
    }

    pub fn clear(&mut self) {
        self.partitions.clear();
    }

    /// Sets the position; buffered records and fetches in flight are dropped.
    pub fn seek(&mut self, tp: &TopicPartition, offset: i64) -> bool {
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
    pub fn take(&mut self, max: usize) -> Vec<ConsumerRecord> {
        let mut out = Vec::new();
        let keys: Vec<TopicPartition> = self.partitions.keys().cloned().collect();
        if keys.is_empty() {
            return out;
        }
        self.rotation = (self.rotation + 1) % keys.len();
        for i in 0..keys.len() {
            if out.len() >= max {
                break;
            }
            let tp = &keys[(self.rotation + i) % keys.len()];
            let Some(state) = self.partitions.get_mut(tp) else {
                continue;
            };
            if state.paused {
                continue;
            }
            while out.len() < max {
                let Some(chunk) = state.buffer.front_mut() else {
                    break;
                };
                match chunk.records.pop_front() {
                    Some(record) => {
                        state.position = Some(record.offset + 1);
                        out.push(record);
                    }
                    None => {
                        state.position = Some(chunk.next_offset);
                        state.buffer.pop_front();
                    }
                }
            }
            // A chunk emptied by the last take still moves the position to its end.
            while state.buffer.front().is_some_and(|c| c.records.is_empty()) {
                if let Some(chunk) = state.buffer.pop_front() {
                    state.position = Some(chunk.next_offset);
                }
            }
        }
        out
    }

    /// Sends a Fetch to every broker that has fetchable partitions and no fetch in
    /// flight. Partitions without a known leader trigger a metadata refresh.
    pub fn send_fetches(&mut self) {
        let now = Instant::now();
        let mut by_broker: BTreeMap<i32, Vec<(TopicPartition, i64, u64)>> = BTreeMap::new();
        let mut missing: Vec<String> = Vec::new();
        let ids: HashMap<String, Uuid> = self.client.with_metadata(|m| {
            for (tp, state) in &self.partitions {
                if state.in_flight
                    || state.paused
                    || state.buffer.len() > 1
                    || state.retry_after.is_some_and(|t| t > now)
                {
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
        while let Ok(result) = self.results_rx.try_recv() {
            self.apply(result, reset)?;
        }
        Ok(true)
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
                    records,
                    next_offset,
                    high_watermark,
                    log_start_offset,
                } => {
                    self.refresh_attempt = 0;
                    state.high_watermark = Some(high_watermark);
                    state.log_start_offset = Some(log_start_offset).filter(|&o| o >= 0);
                    let fetched_from = state.fetch_offset().unwrap_or(next_offset);
                    if !records.is_empty() || next_offset > fetched_from {
                        state.buffer.push_back(Chunk {
                            records,
                            next_offset,
                        });
                    }
                }
                PartitionOutcome::OutOfRange => {
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
        .with_isolation_level(0)
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
                records: VecDeque::new(),
                next_offset: *offset,
                high_watermark: -1,
                log_start_offset: -1,
            },
            Some(p) => match ResponseError::try_from_code(p.error_code) {
                None => match decode(tp, *offset, p.records.clone(), config.check_crcs) {
                    Ok((records, next_offset)) => PartitionOutcome::Data {
                        records,
                        next_offset,
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

/// Decodes a partition's record batches from `offset` on. Returns the records and the
/// offset after the last complete batch. A trailing partial batch (Kafka cuts responses
/// at the size limit) is ignored; a first batch that is incomplete is an error.
fn decode(
    tp: &TopicPartition,
    offset: i64,
    records: Option<Bytes>,
    check_crcs: bool,
) -> Result<(VecDeque<ConsumerRecord>, i64)> {
    let mut out = VecDeque::new();
    let mut next_offset = offset;
    let Some(bytes) = records else {
        return Ok((out, next_offset));
    };
    let corrupt = |e: BatchError| Error::Protocol {
        api: "Fetch",
        addr: format!("partition {tp}"),
        reason: format!("record batch at or after offset {offset} is invalid: {e}"),
    };
    for (index, batch) in batches(&bytes).enumerate() {
        let batch = match batch {
            Ok(batch) => batch,
            Err(BatchError::Truncated { .. }) if index > 0 => break,
            Err(BatchError::Truncated { needed, available }) => {
                return Err(corrupt(BatchError::Truncated { needed, available }))
            }
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
        next_offset = next_offset.max(last_offset.saturating_add(1));
        if header.is_control() {
            continue; // transaction markers are not application records
        }
        let timestamp_type = header.timestamp_type();
        for record in Records::decode(bytes.slice_ref(batch)).map_err(corrupt)? {
            let record = record.map_err(corrupt)?;
            if record.offset < offset {
                continue;
            }
            out.push_back(ConsumerRecord {
                topic: tp.topic.clone(),
                partition: tp.partition,
                offset: record.offset,
                timestamp: record.timestamp,
                timestamp_type,
                key: record.key,
                value: record.value,
                headers: record.headers,
            });
        }
    }
    Ok((out, next_offset))
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
                let answer =
                    FetchResponse::default()
                        .with_responses(vec![FetchableTopicResponse::default()
                            .with_topic(topic.topic.clone())
                            .with_partitions(vec![data])]);
                encode(&answer, received.version)
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

    fn batch(base: i64, values: &[&str], codec: Compression) -> Vec<u8> {
        let mut builder = BatchBuilder::new(codec);
        for (i, v) in values.iter().enumerate() {
            builder.push(1000 + i as i64, Some(b"k"), Some(v.as_bytes()), &[]);
        }
        let mut bytes = builder.build().unwrap().to_vec();
        patch_base_offset(&mut bytes, base);
        bytes
    }

    #[test]
    fn decode_skips_earlier_records_and_ignores_a_cut_tail() {
        let tp = TopicPartition::new("t", 0);
        let mut bytes = batch(10, &["a", "b", "c"], Compression::Gzip);
        bytes.extend(batch(13, &["d", "e"], Compression::Zstd));
        let full = bytes.len();
        bytes.extend(batch(15, &["f"], Compression::Lz4));
        bytes.truncate(full + 20); // partial third batch
        let (records, next) = decode(&tp, 11, Some(Bytes::from(bytes)), true).unwrap();
        let values: Vec<&[u8]> = records
            .iter()
            .map(|r| r.value.as_deref().unwrap())
            .collect();
        assert_eq!(values, [&b"b"[..], b"c", b"d", b"e"]);
        assert_eq!(records[0].offset, 11);
        assert_eq!(records[0].timestamp, 1001);
        assert_eq!(next, 15);
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
        // A lone partial batch cannot make progress: an error, not an endless loop.
        let short = Bytes::from(bytes[..30].to_vec());
        assert!(decode(&tp, 0, Some(short), true).is_err());
        // Garbage of every length is an error or skipped, never a panic.
        for len in 0..80 {
            let garbage = Bytes::from(vec![0x5a; len]);
            let _ = decode(&tp, 0, Some(garbage), true);
        }
        let (records, next) = decode(&tp, 7, None, true).unwrap();
        assert!(records.is_empty());
        assert_eq!(next, 7);
    }
}
