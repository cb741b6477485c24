//! The producer's background task: drains ready batches, sends Produce requests, and
//! turns the answers into completed or retried batches.
//!
//! All accumulator state changes happen in this one task (plus appends from `send`), so
//! ordering and sequence decisions are made in one place. Requests go out through one
//! dispatcher task per broker, which writes them to the broker's connection in the order
//! the loop made them (so a partition's batches reach the broker in sequence order, even
//! while a connection is being opened), and hands the answers back in that same order.
//! The loop sleeps until a batch may be ready (a wake-up from `send`, an answer, a
//! producer id, or the next linger/backoff deadline).
//!
//! For the idempotent producer the loop also asks for the producer id (InitProducerId,
//! retried with backoff) before the first batch goes out, and applies the rules of
//! [`super::idempotence`] to sequence errors and fencing.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::accumulator::ProducerBatch;
use super::idempotence::{self, ProducerId, SequenceAnswer};
use super::{Acks, BatchAck, ProducerShared};
use crate::connection::Connection;
use crate::error::{Error, Result};

/// What one Produce request came back with.
struct Outcome {
    batches: Vec<ProducerBatch>,
    /// `None`: acks=0, nothing to wait for.
    result: Result<Option<ProduceResponse>>,
    version: i16,
}

/// What the loop waits for besides wake-ups and deadlines.
enum Event {
    Produced(Outcome),
    ProducerId(Result<ProducerId>),
}

/// A request written to its connection (or failed before), waiting for its answer.
type PendingOutcome = Pin<Box<dyn Future<Output = Outcome> + Send>>;

pub(crate) async fn run(shared: Arc<ProducerShared>) {
    let (events_tx, mut events_rx) = mpsc::unbounded_channel::<Event>();
    let mut dispatchers: HashMap<i32, mpsc::UnboundedSender<Vec<ProducerBatch>>> = HashMap::new();
    let mut in_flight_requests = 0usize;
    let mut refreshing: Option<tokio::task::JoinHandle<()>> = None;
    let mut refresh_attempt = 0u32;
    // InitProducerId under way, and failed attempts in a row (for the backoff).
    let mut init: Option<tokio::task::JoinHandle<()>> = None;
    let mut init_attempt = 0u32;
    // Topics whose leaders are unknown or moved (NOT_LEADER_OR_FOLLOWER...): refreshed
    // by a background Metadata request before their batches are retried.
    let mut stale: BTreeSet<String> = BTreeSet::new();
    loop {
        let now = Instant::now();
        let drained = {
            let client = &shared.client;
            let mut accumulator = shared.lock();
            client.with_metadata(|m| accumulator.drain(now, |tp| m.leader(&tp.topic, tp.partition)))
        };
        let expired_error = |batch: &ProducerBatch| Error::Timeout {
            what: format!(
                "delivering a batch of {} record(s) to {}",
                batch.records, batch.tp
            ),
            after: shared.config.delivery_timeout,
        };
        for batch in drained.expired {
            let error = expired_error(&batch);
            complete(&shared, batch, Err(error), false);
        }
        for (batch, error) in drained.failed {
            complete(&shared, batch, Err(error), false);
        }
        if drained.needs_producer_id && init.is_none() {
            let client = shared.client.clone();
            let events = events_tx.clone();
            let pause = match init_attempt {
                0 => Duration::ZERO,
                n => client.backoff(n - 1),
            };
            init = Some(tokio::spawn(async move {
                tokio::time::sleep(pause).await;
                let result = idempotence::init_producer_id(&client).await;
                let _ = events.send(Event::ProducerId(result)); // the loop may be gone
            }));
        }
        stale.extend(drained.unknown_leaders.iter().map(|tp| tp.topic.clone()));
        if !stale.is_empty() && refreshing.as_ref().is_none_or(|t| t.is_finished()) {
            let topics: Vec<String> = std::mem::take(&mut stale).into_iter().collect();
            let client = shared.client.clone();
            let pause = if refresh_attempt == 0 {
                Duration::ZERO
            } else {
                client.backoff(refresh_attempt - 1)
            };
            refresh_attempt = refresh_attempt.saturating_add(1);
            let wake = shared.clone();
            refreshing = Some(tokio::spawn(async move {
                tokio::time::sleep(pause).await;
                if let Err(e) = client.refresh_metadata(Some(&topics), false).await {
                    tracing::debug!(error = %e, "producer metadata refresh failed");
                }
                wake.wake.notify_one();
            }));
        } else if stale.is_empty() {
            refresh_attempt = 0;
        }
        let sent_something = !drained.by_broker.is_empty();
        for (broker, batches) in drained.by_broker {
            for request in split_requests(batches, shared.config.max_request_size) {
                let dispatcher = dispatchers
                    .entry(broker)
                    .or_insert_with(|| dispatcher(shared.clone(), broker, events_tx.clone()));
                if let Err(mpsc::error::SendError(batches)) = dispatcher.send(request) {
                    // The dispatcher is gone (it panicked): answer for it, start another.
                    dispatchers.remove(&broker);
                    let error = Error::Disconnected {
                        addr: format!("broker {broker}"),
                    };
                    handle_outcome(
                        &shared,
                        Outcome {
                            batches,
                            result: Err(error),
                            version: 0,
                        },
                        &mut stale,
                    );
                    continue;
                }
                in_flight_requests += 1;
            }
        }
        if sent_something {
            // More batches of the same partitions may be ready (up to max_in_flight).
            continue;
        }
        {
            let mut accumulator = shared.lock();
            if accumulator.closed && accumulator.is_idle() && in_flight_requests == 0 {
                if let Some(init) = init {
                    init.abort();
                }
                return;
            }
            accumulator.prune();
        }
        let sleep_until = drained
            .next_ready
            .unwrap_or_else(|| now + Duration::from_secs(3600));
        let mut handle = |event: Event| match event {
            Event::Produced(outcome) => {
                in_flight_requests -= 1;
                handle_outcome(&shared, outcome, &mut stale);
            }
            Event::ProducerId(result) => {
                init = None;
                handle_producer_id(&shared, result, &mut init_attempt);
            }
        };
        tokio::select! {
            _ = shared.wake.notified() => {}
            event = events_rx.recv() => {
                if let Some(event) = event {
                    handle(event);
                }
            }
            _ = tokio::time::sleep_until(sleep_until.into()) => {}
        }
        while let Ok(event) = events_rx.try_recv() {
            handle(event);
        }
    }
}

fn handle_producer_id(shared: &ProducerShared, result: Result<ProducerId>, attempt: &mut u32) {
    match result {
        Ok(producer_id) => {
            tracing::debug!(
                producer_id = producer_id.id,
                epoch = producer_id.epoch,
                "idempotent producer id"
            );
            *attempt = 0;
            shared.lock().set_producer_id(producer_id);
        }
        Err(error) if error.is_retriable() => {
            tracing::debug!(error = %error, attempt = *attempt, "InitProducerId failed, retrying");
            *attempt = attempt.saturating_add(1);
        }
        Err(error) => {
            tracing::warn!(error = %error, "no producer id: the idempotent producer stops");
            shared.lock().fail_fatally(error);
        }
    }
}

/// Starts the dispatcher of one broker: it takes requests in the loop's order, writes
/// each to the broker's connection (opening one if needed), and reports the answers as
/// [`Event::Produced`] in the same order. When the connection cannot be opened, the
/// request and every one already waiting behind it fail with that error (rather than
/// each waiting out its own connect timeout). It ends when the loop drops its sender.
fn dispatcher(
    shared: Arc<ProducerShared>,
    broker: i32,
    events: mpsc::UnboundedSender<Event>,
) -> mpsc::UnboundedSender<Vec<ProducerBatch>> {
    let (requests_tx, mut requests) = mpsc::unbounded_channel::<Vec<ProducerBatch>>();
    let (pending_tx, mut pending) = mpsc::unbounded_channel::<PendingOutcome>();
    tokio::spawn(async move {
        while let Some(batches) = requests.recv().await {
            let outcomes = match shared.client.broker(broker).await {
                Ok(connection) => vec![start_request(&shared, &connection, batches)],
                Err(error) => {
                    let mut failed = vec![batches];
                    while let Ok(batches) = requests.try_recv() {
                        failed.push(batches);
                    }
                    failed
                        .into_iter()
                        .map(|batches| failed_request(batches, error.clone(), 0))
                        .collect()
                }
            };
            for outcome in outcomes {
                if pending_tx.send(outcome).is_err() {
                    return;
                }
            }
        }
    });
    tokio::spawn(async move {
        while let Some(outcome) = pending.recv().await {
            // The loop is gone only when the producer is finished.
            let _ = events.send(Event::Produced(outcome.await));
        }
    });
    requests_tx
}

/// Splits one broker's batches into requests of at most `max_size` bytes (a single batch
/// larger than that still goes alone; the broker judges it).
fn split_requests(batches: Vec<ProducerBatch>, max_size: usize) -> Vec<Vec<ProducerBatch>> {
    let mut requests: Vec<Vec<ProducerBatch>> = Vec::new();
    let mut size = 0;
    for mut batch in batches {
        let len = batch.bytes().map_or(0, |b| b.len());
        match requests.last_mut() {
            Some(current) if size + len <= max_size => {
                size += len;
                current.push(batch);
            }
            _ => {
                size = len;
                requests.push(vec![batch]);
            }
        }
    }
    requests
}

/// Writes one Produce request to `connection` and returns the future of its outcome.
/// The write is queued before this returns, so the dispatcher's requests reach the wire
/// in order.
fn start_request(
    shared: &ProducerShared,
    connection: &Connection,
    mut batches: Vec<ProducerBatch>,
) -> PendingOutcome {
    let mut version = 0;
    let mut started = || {
        let ids: HashMap<String, Uuid> = shared.client.with_metadata(|m| {
            batches
                .iter()
                .map(|b| {
                    let id = m.topic(&b.tp.topic).map_or(Uuid::nil(), |t| t.id);
                    (b.tp.topic.clone(), id)
                })
                .collect()
        });
        // v13 names topics by id; without ids for every topic stay at v12.
        let cap = if ids.values().any(Uuid::is_nil) {
            12
        } else {
            i16::MAX
        };
        version = connection.version_capped::<ProduceRequest>(cap)?;
        let mut topics: Vec<TopicProduceData> = Vec::new();
        for batch in &mut batches {
            let records = batch.bytes()?;
            batch.attempts += 1;
            let data = PartitionProduceData::default()
                .with_index(batch.tp.partition)
                .with_records(Some(records));
            match topics
                .iter_mut()
                .find(|t| t.name.0.as_str() == batch.tp.topic)
            {
                Some(topic) => topic.partition_data.push(data),
                None => topics.push(
                    TopicProduceData::default()
                        .with_name(TopicName(StrBytes::from_string(batch.tp.topic.clone())))
                        .with_topic_id(ids.get(&batch.tp.topic).copied().unwrap_or_default())
                        .with_partition_data(vec![data]),
                ),
            }
        }
        let timeout = shared.client.config().request_timeout;
        let request = ProduceRequest::default()
            .with_acks(shared.config.acks.wire())
            .with_timeout_ms(i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX))
            .with_topic_data(topics);
        if shared.config.acks == Acks::None {
            connection.send_without_response(&request, version)?;
            return Ok(None);
        }
        // The broker may take up to `timeout_ms` to reach acks=all; allow the trip too.
        let answer = connection.queue(&request, version, timeout + Duration::from_secs(5))?;
        Ok(Some(answer))
    };
    match started() {
        Ok(Some(answer)) => Box::pin(async move {
            let result = answer.await.map(Some);
            Outcome {
                batches,
                result,
                version,
            }
        }),
        Ok(None) => Box::pin(std::future::ready(Outcome {
            batches,
            result: Ok(None),
            version,
        })),
        Err(error) => failed_request(batches, error, version),
    }
}

/// The outcome of a request that failed before it was written.
fn failed_request(batches: Vec<ProducerBatch>, error: Error, version: i16) -> PendingOutcome {
    Box::pin(std::future::ready(Outcome {
        batches,
        result: Err(error),
        version,
    }))
}

fn handle_outcome(shared: &ProducerShared, outcome: Outcome, stale: &mut BTreeSet<String>) {
    let Outcome {
        batches,
        result,
        version,
    } = outcome;
    let response = match result {
        Ok(Some(response)) => response,
        Ok(None) => {
            for batch in batches {
                let ack = BatchAck {
                    base_offset: -1,
                    log_append_time: -1,
                };
                complete(shared, batch, Ok(ack), true);
            }
            return;
        }
        Err(error) => {
            if error.needs_metadata_refresh() {
                for batch in &batches {
                    shared.client.invalidate_topic(&batch.tp.topic);
                    stale.insert(batch.tp.topic.clone());
                }
            }
            for batch in batches {
                retry_or_fail(shared, batch, error.clone(), error.is_retriable());
            }
            return;
        }
    };
    let names: HashMap<Uuid, String> = if version >= 13 {
        shared.client.with_metadata(|m| {
            response
                .responses
                .iter()
                .filter_map(|t| {
                    m.topic_by_id(t.topic_id)
                        .map(|i| (t.topic_id, i.name.clone()))
                })
                .collect()
        })
    } else {
        HashMap::new()
    };
    for batch in batches {
        let answer = response.responses.iter().find_map(|topic| {
            let name = if version >= 13 {
                names.get(&topic.topic_id).map(String::as_str)
            } else {
                Some(topic.name.0.as_str())
            };
            if name != Some(batch.tp.topic.as_str()) {
                return None;
            }
            topic
                .partition_responses
                .iter()
                .find(|p| p.index == batch.tp.partition)
        });
        let Some(answer) = answer else {
            let error = Error::protocol(
                "Produce",
                "broker",
                format!("the answer does not mention partition {}", batch.tp),
            );
            complete(shared, batch, Err(error), true);
            continue;
        };
        let Some(code) = ResponseError::try_from_code(answer.error_code) else {
            let ack = BatchAck {
                base_offset: answer.base_offset,
                log_append_time: answer.log_append_time_ms,
            };
            complete(shared, batch, Ok(ack), true);
            continue;
        };
        let mut message = answer.error_message.as_ref().map(|m| m.as_str().to_owned());
        if let Some(first) = answer.record_errors.first() {
            let detail = first
                .batch_index_error_message
                .as_ref()
                .map_or("", |m| m.as_str());
            let text = format!("record {} of the batch: {detail}", first.batch_index);
            message = Some(match message {
                Some(m) if !m.is_empty() => format!("{m}; {text}"),
                _ => text,
            });
        }
        let error = Error::Broker {
            context: format!("produce to {}", batch.tp),
            error: code,
            message: message.filter(|m| !m.is_empty()),
        };
        let mut retriable = error.is_retriable();
        match (batch.sequence, idempotence::sequence_answer(code)) {
            (Some(sequence), Some(SequenceAnswer::Fenced)) => {
                let fenced = Error::ProducerFenced {
                    partition: batch.tp.to_string(),
                    producer_id: sequence.producer.id,
                    epoch: sequence.producer.epoch,
                    error: code,
                };
                tracing::warn!(error = %fenced, "idempotent producer fenced: it stops");
                shared.lock().fail_fatally(fenced.clone());
                complete(shared, batch, Err(fenced), true);
                shared.wake.notify_one();
                continue;
            }
            (Some(_), Some(SequenceAnswer::Duplicate)) => {
                let ack = BatchAck {
                    base_offset: -1,
                    log_append_time: -1,
                };
                complete(shared, batch, Ok(ack), true);
                continue;
            }
            (Some(sequence), Some(SequenceAnswer::OutOfSequence)) => {
                if shared.lock().sequence_error(&batch) {
                    tracing::warn!(
                        tp = %batch.tp,
                        producer_id = sequence.producer.id,
                        epoch = sequence.producer.epoch,
                        sequence = sequence.base,
                        error = %error,
                        "the broker lost this producer's sequence: renumbering under a new epoch"
                    );
                }
                retriable = true;
            }
            _ => {}
        }
        if error.needs_metadata_refresh() {
            shared.client.invalidate_topic(&batch.tp.topic);
            stale.insert(batch.tp.topic.clone());
        }
        retry_or_fail(shared, batch, error, retriable);
    }
}

/// Re-queues a failed batch if the error is `retriable` and the batch has attempts and
/// time left; otherwise fails it.
fn retry_or_fail(shared: &ProducerShared, batch: ProducerBatch, error: Error, retriable: bool) {
    let config = &shared.config;
    let pause = shared.client.backoff(batch.attempts.saturating_sub(1));
    let now = Instant::now();
    let in_time = now + pause < batch.created + config.delivery_timeout;
    let attempts_left = batch.attempts <= config.retries;
    if retriable && in_time && attempts_left {
        tracing::debug!(tp = %batch.tp, attempt = batch.attempts, error = %error, "retrying batch");
        shared.lock().requeue(batch, Some(now + pause));
        shared.wake.notify_one();
    } else {
        complete(shared, batch, Err(error), true);
    }
}

fn complete(shared: &ProducerShared, batch: ProducerBatch, result: Result<BatchAck>, sent: bool) {
    let reserved = shared.lock().complete(batch, result, sent);
    shared.memory.add_permits(reserved);
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use kafka_protocol::messages::produce_response::{
        PartitionProduceResponse, TopicProduceResponse,
    };
    use kafka_protocol::messages::ApiKey;
    use sluice_storage::batch::Records;

    use super::*;
    use crate::test_support::{decode, encode, FakeBroker, Received};
    use crate::{Client, ClientConfig, Producer, ProducerConfig, ProducerRecord};

    /// The broker says NOT_LEADER_OR_FOLLOWER until the producer has refreshed its
    /// metadata; every record must still arrive once, in order.
    #[tokio::test]
    async fn not_leader_refreshes_metadata_and_retries_in_order() {
        let stored: Arc<Mutex<Vec<String>>> = Arc::default();
        let kept = stored.clone();
        let handler = move |received: &Received, seen: &[ApiKey]| {
            assert_eq!(received.api, ApiKey::Produce);
            let request: ProduceRequest = decode(received);
            // Metadata #1: connect; #2: the producer's first lookup; #3: after the error.
            let refreshed = seen.iter().filter(|&&a| a == ApiKey::Metadata).count() >= 3;
            let mut topics = Vec::new();
            for topic in &request.topic_data {
                let mut partitions = Vec::new();
                for data in &topic.partition_data {
                    let mut answer = PartitionProduceResponse::default().with_index(data.index);
                    if refreshed {
                        let mut stored = kept.lock().unwrap();
                        answer.base_offset = stored.len() as i64;
                        let records = Records::decode(data.records.clone().unwrap()).unwrap();
                        for record in records {
                            let value = record.unwrap().value.unwrap();
                            stored.push(String::from_utf8(value.to_vec()).unwrap());
                        }
                    } else {
                        answer.error_code = ResponseError::NotLeaderOrFollower.code();
                    }
                    partitions.push(answer);
                }
                topics.push(
                    TopicProduceResponse::default()
                        .with_name(topic.name.clone())
                        .with_partition_responses(partitions),
                );
            }
            encode(
                &ProduceResponse::default().with_responses(topics),
                received.version,
            )
        };
        let broker = FakeBroker::start(&[("t", 1)], Arc::new(handler)).await;
        let client = Client::connect(ClientConfig {
            retry_backoff: Duration::from_millis(5),
            ..ClientConfig::new(&broker.addr)
        })
        .await
        .unwrap();
        let producer = Producer::new(
            client,
            ProducerConfig {
                acks: Acks::Leader,
                linger: Duration::ZERO,
                ..ProducerConfig::default()
            },
        )
        .unwrap();
        let mut futures = Vec::new();
        for i in 0..20 {
            let record = ProducerRecord::new("t").value(format!("{i}"));
            futures.push(producer.send(record).await.unwrap());
        }
        let mut offsets = Vec::new();
        for future in futures {
            offsets.push(future.await.unwrap().offset);
        }
        producer.close().await.unwrap();
        assert_eq!(offsets, (0..20).collect::<Vec<i64>>());
        let expected: Vec<String> = (0..20).map(|i| i.to_string()).collect();
        assert_eq!(*stored.lock().unwrap(), expected);
        assert!(broker.count(ApiKey::Metadata) >= 3);
    }

    /// Errors that cannot be retried fail the records at once, with the broker's words.
    #[tokio::test]
    async fn non_retriable_errors_fail_the_batch() {
        let handler = |received: &Received, _: &[ApiKey]| {
            let request: ProduceRequest = decode(received);
            let topics = request
                .topic_data
                .iter()
                .map(|t| {
                    TopicProduceResponse::default()
                        .with_name(t.name.clone())
                        .with_partition_responses(vec![PartitionProduceResponse::default()
                            .with_index(0)
                            .with_error_code(ResponseError::MessageTooLarge.code())
                            .with_error_message(Some(StrBytes::from_static_str("too big")))])
                })
                .collect();
            encode(
                &ProduceResponse::default().with_responses(topics),
                received.version,
            )
        };
        let broker = FakeBroker::start(&[("t", 1)], Arc::new(handler)).await;
        let client = Client::connect(ClientConfig::new(&broker.addr))
            .await
            .unwrap();
        let producer = Producer::new(client, ProducerConfig::default()).unwrap();
        let future = producer
            .send(ProducerRecord::new("t").value("x"))
            .await
            .unwrap();
        let error = future.await.unwrap_err();
        assert_eq!(error.kafka_error(), Some(ResponseError::MessageTooLarge));
        assert!(error.to_string().contains("too big"), "{error}");
        assert_eq!(broker.count(ApiKey::Produce), 1);
    }
}

/// The idempotent producer against a fake broker that applies the sequence rules.
#[cfg(test)]
mod idempotence_tests {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use kafka_protocol::error::ResponseError;
    use kafka_protocol::messages::produce_response::{
        PartitionProduceResponse, TopicProduceResponse,
    };
    use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse};
    use sluice_storage::batch::{BatchHeader, Records};

    use crate::test_support::{decode, encode, FakeBroker, Received, FIRST_PRODUCER_ID};
    use crate::{Client, ClientConfig, DeliveryFuture, Error, Producer, ProducerConfig};
    use crate::{ProducerRecord, RecordMetadata};

    /// One batch as the fake broker received it.
    #[derive(Debug, Clone)]
    struct Attempt {
        /// The values of its records.
        values: Vec<String>,
        producer_id: i64,
        epoch: i16,
        sequence: i32,
        /// What the broker answered (`None`: accepted or a duplicate).
        answer: Option<ResponseError>,
    }

    /// A producer's state in the fake log.
    #[derive(Debug, Clone)]
    struct ProducerState {
        epoch: i16,
        next_sequence: i32,
        /// First sequence and base offset of the last five batches.
        recent: Vec<(i32, i64)>,
    }

    /// A one-partition log with Kafka's producer rules (a new producer or epoch starts
    /// at sequence 0; a repeat of one of the last five batches is a duplicate).
    #[derive(Debug, Default)]
    struct Log {
        /// Stored records: value, producer id, epoch, sequence.
        records: Vec<(String, i64, i16, i32)>,
        producers: HashMap<i64, ProducerState>,
        attempts: Vec<Attempt>,
    }

    impl Log {
        fn values(&self) -> Vec<String> {
            self.records.iter().map(|r| r.0.clone()).collect()
        }

        fn count(&self, error: ResponseError) -> usize {
            self.attempts
                .iter()
                .filter(|a| a.answer == Some(error))
                .count()
        }

        /// Applies the rules; returns the error code and base offset to answer.
        fn append(&mut self, attempt: &mut Attempt) -> (Option<ResponseError>, i64) {
            let (pid, epoch, seq) = (attempt.producer_id, attempt.epoch, attempt.sequence);
            let verdict = match self.producers.get(&pid) {
                None if seq != 0 => Err(ResponseError::OutOfOrderSequenceNumber),
                None => Ok(()),
                Some(state) if epoch < state.epoch => Err(ResponseError::InvalidProducerEpoch),
                Some(state) if epoch > state.epoch && seq != 0 => {
                    Err(ResponseError::OutOfOrderSequenceNumber)
                }
                Some(state) if epoch > state.epoch => Ok(()),
                Some(state) => {
                    if let Some(&(_, base)) = state.recent.iter().find(|(s, _)| *s == seq) {
                        return (None, base); // a duplicate: the original offsets
                    }
                    if seq != state.next_sequence {
                        Err(ResponseError::OutOfOrderSequenceNumber)
                    } else {
                        Ok(())
                    }
                }
            };
            if let Err(error) = verdict {
                attempt.answer = Some(error);
                return (Some(error), -1);
            }
            let base = self.records.len() as i64;
            for (i, value) in attempt.values.iter().enumerate() {
                self.records
                    .push((value.clone(), pid, epoch, seq + i as i32));
            }
            let fresh = ProducerState {
                epoch,
                next_sequence: 0,
                recent: Vec::new(),
            };
            let state = self.producers.entry(pid).or_insert_with(|| fresh.clone());
            if state.epoch != epoch {
                *state = fresh;
            }
            state.next_sequence = seq + attempt.values.len() as i32;
            state.recent.push((seq, base));
            if state.recent.len() > 5 {
                state.recent.remove(0);
            }
            (None, base)
        }
    }

    /// What a test's script does with an attempt instead of the usual rules.
    enum Inject {
        /// Refuse it with this error.
        Refuse(ResponseError),
        /// Apply the rules (store it), then answer with this error instead, as a broker
        /// whose answer is lost.
        StoreThenFail(ResponseError),
    }

    /// A fake broker with one topic `t` of one partition stored in a [`Log`];
    /// `inject` may change what happens to an attempt.
    async fn broker(
        inject: impl Fn(&Attempt, &Log) -> Option<Inject> + Send + Sync + 'static,
    ) -> (FakeBroker, Arc<Mutex<Log>>) {
        let log: Arc<Mutex<Log>> = Arc::default();
        let kept = log.clone();
        let handler = move |received: &Received, _: &[ApiKey]| {
            assert_eq!(received.api, ApiKey::Produce);
            let request: ProduceRequest = decode(received);
            let mut topics = Vec::new();
            for topic in &request.topic_data {
                let mut partitions = Vec::new();
                for data in &topic.partition_data {
                    let bytes = data.records.clone().unwrap();
                    let header = BatchHeader::new(&bytes).unwrap();
                    let values = Records::decode(bytes.clone())
                        .unwrap()
                        .map(|r| String::from_utf8(r.unwrap().value.unwrap().to_vec()).unwrap())
                        .collect();
                    let mut attempt = Attempt {
                        values,
                        producer_id: header.producer_id(),
                        epoch: header.producer_epoch(),
                        sequence: header.base_sequence(),
                        answer: None,
                    };
                    let mut log = kept.lock().unwrap();
                    let (error, base_offset) = match inject(&attempt, &log) {
                        Some(Inject::Refuse(error)) => {
                            attempt.answer = Some(error);
                            (Some(error), -1)
                        }
                        Some(Inject::StoreThenFail(error)) => {
                            log.append(&mut attempt);
                            attempt.answer = Some(error);
                            (Some(error), -1)
                        }
                        None => log.append(&mut attempt),
                    };
                    log.attempts.push(attempt);
                    partitions.push(
                        PartitionProduceResponse::default()
                            .with_index(data.index)
                            .with_error_code(error.map_or(0, |e| e.code()))
                            .with_base_offset(base_offset),
                    );
                }
                topics.push(
                    TopicProduceResponse::default()
                        .with_name(topic.name.clone())
                        .with_partition_responses(partitions),
                );
            }
            encode(
                &ProduceResponse::default().with_responses(topics),
                received.version,
            )
        };
        (FakeBroker::start(&[("t", 1)], Arc::new(handler)).await, log)
    }

    /// An idempotent producer (the default) that puts every record in a batch of its own.
    async fn producer(broker: &FakeBroker) -> Producer {
        let client = Client::connect(ClientConfig {
            retry_backoff: Duration::from_millis(5),
            retry_backoff_max: Duration::from_millis(20),
            ..ClientConfig::new(&broker.addr)
        })
        .await
        .unwrap();
        let producer = Producer::new(
            client,
            ProducerConfig {
                batch_size: 1,
                linger: Duration::ZERO,
                delivery_timeout: Duration::from_secs(20),
                ..ProducerConfig::default()
            },
        )
        .unwrap();
        assert!(producer.is_idempotent());
        producer
    }

    /// Sends records `0..count` without waiting in between (a single-threaded runtime
    /// runs none of the sender's work meanwhile, so the batches queue up together).
    async fn send_all(producer: &Producer, count: usize) -> Vec<DeliveryFuture> {
        let mut futures = Vec::new();
        for i in 0..count {
            let record = ProducerRecord::new("t").value(i.to_string());
            futures.push(producer.send(record).await.unwrap());
        }
        futures
    }

    async fn outcomes(futures: Vec<DeliveryFuture>) -> Vec<Result<RecordMetadata, Error>> {
        let mut out = Vec::new();
        for future in futures {
            out.push(future.await);
        }
        out
    }

    fn numbers(count: usize) -> Vec<String> {
        (0..count).map(|i| i.to_string()).collect()
    }

    /// The first batch fails with a retriable error while four more are in flight; those
    /// get OUT_OF_ORDER_SEQUENCE_NUMBER (the broker waits for sequence 0). All five are
    /// sent again with their sequences, in order, and every record is stored once.
    #[tokio::test]
    async fn a_retried_batch_keeps_its_sequence_and_out_of_order_successors_are_retried() {
        let (broker, log) = broker(|attempt, log| {
            let first_try = !log.attempts.iter().any(|a| a.sequence == 0);
            (attempt.sequence == 0 && first_try)
                .then_some(Inject::Refuse(ResponseError::NotEnoughReplicas))
        })
        .await;
        let producer = producer(&broker).await;
        let futures = send_all(&producer, 10).await;
        let offsets: Vec<i64> = outcomes(futures)
            .await
            .into_iter()
            .map(|r| r.unwrap().offset)
            .collect();
        producer.close().await.unwrap();
        assert_eq!(offsets, (0..10).collect::<Vec<i64>>());
        let log = log.lock().unwrap();
        assert_eq!(log.values(), numbers(10), "every record once, in order");
        assert!(
            log.count(ResponseError::OutOfOrderSequenceNumber) >= 1,
            "successors of the failed batch were in flight: {:?}",
            log.attempts
        );
        // Every attempt of a record carried the same identity and sequence: record i
        // is sequence i of producer FIRST_PRODUCER_ID, epoch 0.
        for attempt in &log.attempts {
            let value: i32 = attempt.values[0].parse().unwrap();
            assert_eq!(
                (attempt.producer_id, attempt.epoch, attempt.sequence),
                (FIRST_PRODUCER_ID, 0, value),
                "{attempt:?}"
            );
        }
        let tries_of_0 = log.attempts.iter().filter(|a| a.sequence == 0).count();
        assert_eq!(tries_of_0, 2);
        assert_eq!(broker.count(ApiKey::InitProducerId), 1);
    }

    /// The broker stores a batch but its answer is an error (as when it dies before
    /// answering): the retry, with the same sequence, is recognised as a duplicate and
    /// answered with the original offset; nothing is stored twice.
    #[tokio::test]
    async fn a_retry_of_a_stored_batch_is_deduplicated() {
        let (broker, log) = broker(|attempt, log| {
            let first_try = !log.attempts.iter().any(|a| a.sequence == 2);
            (attempt.sequence == 2 && first_try)
                .then_some(Inject::StoreThenFail(ResponseError::RequestTimedOut))
        })
        .await;
        let producer = producer(&broker).await;
        let futures = send_all(&producer, 6).await;
        let results = outcomes(futures).await;
        producer.close().await.unwrap();
        let offsets: Vec<i64> = results.into_iter().map(|r| r.unwrap().offset).collect();
        assert_eq!(offsets, (0..6).collect::<Vec<i64>>());
        let log = log.lock().unwrap();
        assert_eq!(log.values(), numbers(6));
        let tries_of_2: Vec<Option<ResponseError>> = log
            .attempts
            .iter()
            .filter(|a| a.sequence == 2)
            .map(|a| a.answer)
            .collect();
        assert_eq!(
            tries_of_2,
            [Some(ResponseError::RequestTimedOut), None],
            "one failed answer, then the duplicate's"
        );
    }

    /// The broker lost the sequence (it answers OUT_OF_ORDER_SEQUENCE_NUMBER for the
    /// batch right after acknowledged ones): the producer bumps its epoch and renumbers
    /// the rest from 0; nothing is lost, duplicated or reordered.
    #[tokio::test]
    async fn a_lost_sequence_bumps_the_epoch_and_renumbers_from_zero() {
        let (broker, log) = broker(|attempt, _| {
            (attempt.epoch == 0 && attempt.sequence >= 3)
                .then_some(Inject::Refuse(ResponseError::OutOfOrderSequenceNumber))
        })
        .await;
        let producer = producer(&broker).await;
        let futures = send_all(&producer, 10).await;
        let offsets: Vec<i64> = outcomes(futures)
            .await
            .into_iter()
            .map(|r| r.unwrap().offset)
            .collect();
        assert_eq!(offsets, (0..10).collect::<Vec<i64>>());
        let identity = producer.producer_id().unwrap();
        assert_eq!((identity.id, identity.epoch), (FIRST_PRODUCER_ID, 1));
        producer.close().await.unwrap();
        let log = log.lock().unwrap();
        assert_eq!(log.values(), numbers(10));
        let stored: Vec<(i16, i32)> = log.records.iter().map(|r| (r.2, r.3)).collect();
        let expected: Vec<(i16, i32)> = (0..3)
            .map(|s| (0, s))
            .chain((0..7).map(|s| (1, s)))
            .collect();
        assert_eq!(stored, expected, "records 3.. renumbered under epoch 1");
        assert_eq!(broker.count(ApiKey::InitProducerId), 1, "a local bump");
    }

    /// INVALID_PRODUCER_EPOCH is fatal: the batch and every later one fail with
    /// `ProducerFenced`, earlier acknowledgements stand, and `send` refuses.
    #[tokio::test]
    async fn a_fenced_epoch_is_fatal() {
        let (broker, log) = broker(|attempt, _| {
            (attempt.sequence >= 2).then_some(Inject::Refuse(ResponseError::InvalidProducerEpoch))
        })
        .await;
        let producer = producer(&broker).await;
        let futures = send_all(&producer, 8).await;
        let results = outcomes(futures).await;
        for (i, result) in results.iter().enumerate() {
            match (i, result) {
                (0 | 1, Ok(meta)) => assert_eq!(meta.offset, i as i64),
                (2.., Err(Error::ProducerFenced { error, .. })) => {
                    assert_eq!(*error, ResponseError::InvalidProducerEpoch)
                }
                other => panic!("{other:?}"),
            }
        }
        let error = producer
            .send(ProducerRecord::new("t").value("late"))
            .await
            .unwrap_err();
        assert!(matches!(error, Error::ProducerFenced { .. }), "{error:?}");
        assert_eq!(
            error.kafka_error(),
            Some(ResponseError::InvalidProducerEpoch)
        );
        assert!(!error.is_retriable());
        producer.close().await.unwrap();
        assert_eq!(log.lock().unwrap().values(), numbers(2));
        // Two stored, then at most the five in flight when the first refusal came.
        assert!(
            log.lock().unwrap().attempts.len() <= 7,
            "fenced batches are not retried: {:?}",
            log.lock().unwrap().attempts
        );
    }
}
