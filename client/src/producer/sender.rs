//! The producer's background task: drains ready batches, sends Produce requests, and
//! turns the answers into completed or retried batches.
//!
//! All accumulator state changes happen in this one task (plus appends from `send`), so
//! ordering decisions are made in one place. Each request is awaited in its own small
//! task, which reports back through a channel; the loop then sleeps until a batch may be
//! ready (a wake-up from `send`, a completion, or the next linger/backoff deadline).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::accumulator::ProducerBatch;
use super::{Acks, BatchAck, ProducerShared};
use crate::error::{Error, Result};

/// What one Produce request came back with.
struct Outcome {
    batches: Vec<ProducerBatch>,
    /// `None`: acks=0, nothing to wait for.
    result: Result<Option<ProduceResponse>>,
    version: i16,
}

pub(crate) async fn run(shared: Arc<ProducerShared>) {
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Outcome>();
    let mut in_flight_requests = 0usize;
    let mut refreshing: Option<tokio::task::JoinHandle<()>> = None;
    let mut refresh_attempt = 0u32;
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
                in_flight_requests += 1;
                tokio::spawn(send_request(
                    shared.clone(),
                    broker,
                    request,
                    done_tx.clone(),
                ));
            }
        }
        if sent_something {
            // More batches of the same partitions may be ready (up to max_in_flight).
            continue;
        }
        {
            let mut accumulator = shared.lock();
            if accumulator.closed && accumulator.is_idle() && in_flight_requests == 0 {
                return;
            }
            accumulator.prune();
        }
        let sleep_until = drained
            .next_ready
            .unwrap_or_else(|| now + Duration::from_secs(3600));
        tokio::select! {
            _ = shared.wake.notified() => {}
            outcome = done_rx.recv() => {
                if let Some(outcome) = outcome {
                    in_flight_requests -= 1;
                    handle_outcome(&shared, outcome, &mut stale);
                }
            }
            _ = tokio::time::sleep_until(sleep_until.into()) => {}
        }
        while let Ok(outcome) = done_rx.try_recv() {
            in_flight_requests -= 1;
            handle_outcome(&shared, outcome, &mut stale);
        }
    }
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

async fn send_request(
    shared: Arc<ProducerShared>,
    broker: i32,
    mut batches: Vec<ProducerBatch>,
    done: mpsc::UnboundedSender<Outcome>,
) {
    let mut version = 0;
    let result = async {
        let connection = shared.client.broker(broker).await?;
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
        let response = connection
            .send_with_timeout(&request, version, timeout + Duration::from_secs(5))
            .await?;
        Ok(Some(response))
    }
    .await;
    let _ = done.send(Outcome {
        batches,
        result,
        version,
    }); // the sender loop is gone only when the producer is finished
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
                retry_or_fail(shared, batch, error.clone());
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
        match ResponseError::try_from_code(answer.error_code) {
            None => {
                let ack = BatchAck {
                    base_offset: answer.base_offset,
                    log_append_time: answer.log_append_time_ms,
                };
                complete(shared, batch, Ok(ack), true);
            }
            Some(code) => {
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
                if error.needs_metadata_refresh() {
                    shared.client.invalidate_topic(&batch.tp.topic);
                    stale.insert(batch.tp.topic.clone());
                }
                retry_or_fail(shared, batch, error);
            }
        }
    }
}

/// Re-queues a failed batch if the error is retriable and the batch has attempts and
/// time left; otherwise fails it.
fn retry_or_fail(shared: &ProducerShared, batch: ProducerBatch, error: Error) {
    let config = &shared.config;
    let pause = shared.client.backoff(batch.attempts.saturating_sub(1));
    let now = Instant::now();
    let in_time = now + pause < batch.created + config.delivery_timeout;
    let attempts_left = batch.attempts <= config.retries;
    if error.is_retriable() && in_time && attempts_left {
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
