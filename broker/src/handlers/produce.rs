//! Produce: append record batches, answer with offsets.
//!
//! Every partition is validated as Kafka 4.x validates a produce of version 3+ (exactly
//! one RecordBatch v2 per partition, zstd only from v7) and then handed to
//! `PartitionLog::append`, which checks the batch (framing, CRC, record count) and
//! writes nothing if it is bad. Appends are synchronous page-cache writes done inline;
//! they never fsync.
//!
//! Idempotent producers (batches with a producer id) are checked by the log against the
//! partition's producer state (`sluice_storage::producer_state`), with Kafka's rules and
//! errors: a retry of one of the producer's last five batches is answered NONE with the
//! offsets it was first given and is not appended again; a sequence gap gets
//! OUT_OF_ORDER_SEQUENCE_NUMBER; an epoch older than the producer's current one gets
//! INVALID_PRODUCER_EPOCH (Kafka 4.x answers that at every Produce version since 2.7,
//! KIP-588; PRODUCER_FENCED is only for transactional requests); a producer id the
//! partition has no state for (new, or all its batches removed by retention) is accepted
//! at any sequence, as Kafka does since KIP-360 instead of UNKNOWN_PRODUCER_ID. A request
//! with transactional batches is refused whole with TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
//! as Kafka refuses one whose transactional id may not write: Sluice has no transactions.
//!
//! acks=all (Kafka's `appendRecordsToLeader` and `DelayedProduce`): an ISR smaller than
//! `min.insync.replicas` is refused NOT_ENOUGH_REPLICAS before anything is appended;
//! after the append the answer waits until the high watermark passes the batch (every
//! ISR member fetched past it; see `replication::leader`), or fails
//! NOT_ENOUGH_REPLICAS_AFTER_APPEND / NOT_LEADER_OR_FOLLOWER / REQUEST_TIMED_OUT (the
//! request's `timeout_ms`). On a log whose flush policy is `always` it also waits until
//! the records are on the leader's disk. [`handle`] returns those waits as effects
//! ([`ProduceOutcome`]) and [`finish`] awaits them (futures on the partition's high
//! watermark watch and storage's group-commit flusher), so the connection task never
//! blocks and no task is spawned per request. Every append moves the high watermark
//! (`replication::leader::after_append`): with an ISR of one, to the log end.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse,
    TopicProduceResponse,
};
use kafka_protocol::messages::{BrokerId, ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::StrBytes;
use sluice_storage::batch::{self, BatchHeader, Compression, RecordRejection};
use sluice_storage::{BatchError, DurableWait, FlushPolicy, StorageError};

use crate::cluster::routing::{Router, Served, TopicKey};
use crate::errors::storage_error_code;
use crate::replication::leader::{self, ReplicationWait};
use crate::state::BrokerState;

/// Byte position of the magic byte, the same in every message format version.
const MAGIC_OFFSET: usize = 16;

/// A produce request's answer and what must happen before it is sent.
pub struct ProduceOutcome {
    pub response: ProduceResponse,
    /// Appends that must become durable first: (topic index, partition index) in
    /// `response`, and the wait.
    pub durable: Vec<(usize, usize, DurableWait)>,
    /// acks=all appends the high watermark has not passed yet: (topic index, partition
    /// index) in `response`, and the wait (see `replication::leader::wait_replicated`).
    pub replicated: Vec<(usize, usize, ReplicationWait)>,
    /// Whether some partition failed. With acks=0 there is no response to carry the
    /// error, so Kafka closes the connection instead; so does Sluice.
    pub failed: bool,
}

/// Appends the request's batches; see the module docs.
pub fn handle(
    state: &BrokerState,
    request: &ProduceRequest,
    version: i16,
    now_ms: i64,
) -> ProduceOutcome {
    let acks = request.acks;
    // Kafka refuses a whole request with transactional batches unless its transactional
    // id may write. Sluice has no transactions, so no transactional id may (see
    // `init_producer_id`): appending them would leave transactions never committed or
    // aborted in the log.
    let refused = has_transactional_batches(request)
        .then_some(ResponseError::TransactionalIdAuthorizationFailed);
    let mut outcome = ProduceOutcome {
        response: ProduceResponse::default(),
        durable: Vec::new(),
        replicated: Vec::new(),
        failed: false,
    };
    // Kafka's DelayedProduce timeout: the request's `timeout_ms`.
    let deadline = tokio::time::Instant::now()
        + std::time::Duration::from_millis(u64::try_from(request.timeout_ms).unwrap_or(0));
    let router = Router::new(state);
    // Leaders named in NOT_LEADER_OR_FOLLOWER answers, whose endpoints go in the answer.
    let mut hinted = std::collections::BTreeSet::new();
    let mut responses = Vec::with_capacity(request.topic_data.len());
    for (ti, topic_data) in request.topic_data.iter().enumerate() {
        let topic = if version >= 13 {
            state.topics.get_by_id(topic_data.topic_id)
        } else {
            state.topics.get(&topic_data.name.0)
        };
        let unknown = if version >= 13 {
            ResponseError::UnknownTopicId
        } else {
            ResponseError::UnknownTopicOrPartition
        };
        let mut partitions = Vec::with_capacity(topic_data.partition_data.len());
        for (pi, data) in topic_data.partition_data.iter().enumerate() {
            let mut answer = PartitionProduceResponse::default()
                .with_index(data.index)
                .with_base_offset(-1)
                .with_log_append_time_ms(-1)
                .with_log_start_offset(-1);
            let key = if version >= 13 {
                TopicKey::Id(topic_data.topic_id)
            } else {
                TopicKey::Name(&topic_data.name.0)
            };
            let routed = router.check(key, data.index, -1);
            let result = if let Some(code) = refused {
                Err((code, None))
            } else if !matches!(acks, -1..=1) {
                Err((ResponseError::InvalidRequiredAcks, None))
            } else if let Err(misrouted) = routed {
                if let Some((leader, leader_epoch)) = misrouted.leader {
                    answer.current_leader = LeaderIdAndEpoch::default()
                        .with_leader_id(BrokerId(leader))
                        .with_leader_epoch(leader_epoch);
                    hinted.insert(leader);
                }
                Err((misrouted.code, None))
            } else {
                let served = routed.unwrap_or(Served {
                    leader_epoch: 0,
                    topic_id: None,
                });
                let leader_epoch = served.leader_epoch;
                match topic
                    .as_ref()
                    .filter(|t| served.is_topic(t.id))
                    .and_then(|t| t.partition(data.index).map(|p| (t, p)))
                {
                    // Led here, but the log is not created yet (see `cluster::reconcile`).
                    None if router.is_cluster() => Err((ResponseError::NotLeaderOrFollower, None)),
                    None if topic.is_none() => Err((unknown, None)),
                    None => Err((ResponseError::UnknownTopicOrPartition, None)),
                    // Kafka: "Cannot append to internal topic" (only its coordinators
                    // write there), without an error message in the answer.
                    Some((topic, _)) if topic.is_internal() => {
                        Err((ResponseError::InvalidTopicException, None))
                    }
                    Some((topic, partition)) => {
                        let _span = tracing::debug_span!("partition", topic = %topic.name, partition = data.index).entered();
                        let min_insync = leader::min_insync(topic);
                        if let Some((node, image)) = router.cluster() {
                            leader::ensure_leading(
                                &partition,
                                node.node_id,
                                topic.id,
                                image,
                                min_insync,
                            );
                        }
                        let records = data.records.as_deref().unwrap_or(&[]);
                        check_kafka_rules(records, version).and_then(|()| {
                            // Before the disk is full, so that what the broker itself
                            // must still write fits (see `disk_space`).
                            if let Some(below) = state.disk.below_floor(now_ms) {
                                tracing::debug!(%below, "produce refused: free space below the floor");
                                return Err((ResponseError::NotEnoughReplicas, Some(below.to_string())));
                            }
                            if acks == -1 {
                                // Kafka's appendRecordsToLeader: the committed ISR, before
                                // anything is written.
                                match partition.leadership.isr_size() {
                                    None => return Err((ResponseError::NotLeaderOrFollower, None)),
                                    Some(isr) if isr < min_insync => {
                                        return Err((
                                            ResponseError::NotEnoughReplicas,
                                            Some(format!("The size of the current ISR {isr} is insufficient to satisfy the min.isr requirement of {min_insync} for partition {}-{}", topic.name, data.index)),
                                        ))
                                    }
                                    Some(_) => {}
                                }
                            }
                                                        let bytes = records.len();
                                match partition.log.append(records, leader_epoch, now_ms) {
                                Ok(info) => {
                                    if !info.duplicate {
                                        partition.traffic.appended(bytes, info.records, info.batches);
                                    }
                                    if info.duplicate {
                                        tracing::debug!(
                                            base_offset = info.base_offset,
                                            last_offset = info.last_offset,
                                            "duplicate batch from an idempotent producer: acknowledged with its original offsets, not appended"
                                        );
                                    } else {
                                        // Followers' fetches read up to the log end.
                                        partition.notify_appended();
                                    }
                                    let high_watermark = leader::after_append(&partition, min_insync);
                                    // A duplicate waits too: its first copy may not be on
                                    // disk or replicated yet (the first answer may still be
                                    // pending).
                                    let end = info.last_offset + 1;
                                    if acks == -1 && partition.log.config().flush == FlushPolicy::Always {
                                        outcome.durable.push((ti, pi, partition.log.wait_durable(end)));
                                    }
                                    if acks == -1 && high_watermark < end {
                                        outcome.replicated.push((ti, pi, leader::wait_replicated(&partition, leader_epoch, end, min_insync, deadline)));
                                    }
                                    Ok(info)
                                }
                                Err(e) => {
                                    let code = storage_error_code(&e);
                                    if let StorageError::InvalidBatch(BatchError::RejectedRecords { named: rejected, total }) = &e {
                                        // KIP-467: the client fails only the records named.
                                        let topic_partition = format!("{}-{}", topic.name, data.index);
                                        answer.record_errors = rejected
                                            .iter()
                                            .map(|r| {
                                                BatchIndexAndErrorMessage::default()
                                                    .with_batch_index(i32::try_from(r.batch_index).unwrap_or(i32::MAX))
                                                    .with_batch_index_error_message(Some(StrBytes::from_string(r.kafka_message(&topic_partition))))
                                            })
                                            .collect();
                                        answer.log_start_offset = partition.log.log_start_offset();
                                        tracing::debug!(error = %e, "produce refused");
                                        return Err((code, Some(rejection_summary(code, rejected, *total, &topic_partition))));
                                    }
                                    // A partition that could not be loaded was logged as an
                                    // error once, at start, and an offline log once, when it
                                    // went offline; one line per refused produce would
                                    // flood the log.
                                    if code == ResponseError::KafkaStorageError
                                        && !matches!(
                                            e,
                                            StorageError::Unavailable { .. } | StorageError::Offline { .. }
                                        )
                                    {
                                        tracing::error!(error = %e, "append failed");
                                    } else {
                                        tracing::debug!(error = %e, "produce refused");
                                    }
                                    Err((code, Some(e.to_string())))
                                }
                            }
                        })
                    }
                }
            };
            match result {
                Ok(info) => {
                    answer.base_offset = info.base_offset;
                    answer.log_append_time_ms = info.log_append_time;
                    answer.log_start_offset = info.log_start_offset;
                }
                Err((code, message)) => {
                    outcome.failed = true;
                    answer.error_code = code.code();
                    answer.error_message = message.map(StrBytes::from_string);
                }
            }
            partitions.push(answer);
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(topic_data.name.clone())
                .with_topic_id(topic_data.topic_id)
                .with_partition_responses(partitions),
        );
    }
    outcome.response.responses = responses;
    // KIP-951 (v10+): the new leaders' endpoints, so the client needs no Metadata request.
    if version >= 10 {
        outcome.response.node_endpoints = router.endpoints(hinted, |id, host, port, rack| {
            NodeEndpoint::default()
                .with_node_id(id)
                .with_host(host)
                .with_port(port)
                .with_rack(rack)
        });
    }
    outcome
}

/// Whether any batch of the request has the transactional flag (Kafka's
/// `RequestUtils.hasTransactionalRecords`). Batches that do not parse are left to the
/// per-partition checks.
fn has_transactional_batches(request: &ProduceRequest) -> bool {
    request
        .topic_data
        .iter()
        .flat_map(|t| t.partition_data.iter())
        .filter_map(|p| p.records.as_deref())
        .flat_map(batch::batches)
        .filter_map(Result::ok)
        .any(|b| BatchHeader::new(b).is_ok_and(|h| h.producer_id() >= 0 && h.is_transactional()))
}

/// The partition's `error_message` for refused records, Kafka's words
/// (`LogValidator.processRecordErrors`): for timestamps a fixed sentence, otherwise the
/// count and the first three records' errors as Java prints its `RecordError`s.
fn rejection_summary(
    code: ResponseError,
    rejected: &[RecordRejection],
    total: usize,
    topic_partition: &str,
) -> String {
    if code == ResponseError::InvalidTimestamp {
        return "One or more records have been rejected due to invalid timestamp".to_owned();
    }
    let first: Vec<String> = rejected
        .iter()
        .take(3)
        .map(|r| {
            format!(
                "RecordError(batchIndex={}, message='{}')",
                r.batch_index,
                r.kafka_message(topic_partition)
            )
        })
        .collect();
    format!(
        "One or more records have been rejected due to {} record errors in total, and only \
         showing the first three errors at most: [{}]",
        total,
        first.join(", ")
    )
}

/// Kafka's `ProduceRequest.validateRecords` for version 3+: one v2 batch, zstd from v7.
/// Framing and CRC are the log's to check.
fn check_kafka_rules(records: &[u8], version: i16) -> Result<(), (ResponseError, Option<String>)> {
    let invalid = |m: String| Err((ResponseError::InvalidRecord, Some(m)));
    if records.is_empty() {
        return invalid(format!(
            "Produce requests with version {version} must have at least one record batch per partition"
        ));
    }
    if let Some(&magic) = records.get(MAGIC_OFFSET) {
        if magic != batch::MAGIC_V2 as u8 {
            return invalid(format!(
                "Produce requests with version {version} are only allowed to contain record batches with magic version 2"
            ));
        }
    }
    let mut batches = batch::batches(records);
    let first = match batches.next() {
        Some(Ok(first)) => first,
        // Bad framing: the log reports it as CORRUPT_MESSAGE.
        _ => return Ok(()),
    };
    if batches.next().is_some() {
        return invalid(format!(
            "Produce requests with version {version} are only allowed to contain exactly one record batch per partition"
        ));
    }
    if version < 7 {
        if let Ok(Compression::Zstd) = BatchHeader::new(first).and_then(|h| h.compression()) {
            return Err((
                ResponseError::UnsupportedCompressionType,
                Some(format!(
                    "Produce requests with version {version} are not allowed to use ZStandard compression"
                )),
            ));
        }
    }
    Ok(())
}

impl ProduceOutcome {
    /// Whether the response may be sent now (no durability or replication waits).
    pub fn is_ready(&self) -> bool {
        self.durable.is_empty() && self.replicated.is_empty()
    }
}

/// Awaits the durability and replication waits of `outcome` and returns the response to
/// send; a partition whose records could not be made durable gets the storage error
/// instead, one whose wait for the high watermark failed that error (see
/// `replication::leader::wait_replicated`). The waits of all partitions run against
/// their own watches, so awaiting them in turn costs no more than the longest.
pub async fn finish(outcome: ProduceOutcome) -> ProduceResponse {
    let mut response = outcome.response;
    for (ti, pi, wait) in outcome.replicated {
        if let Err(code) = wait.await {
            tracing::debug!(error = ?code, "acks=all produce not replicated");
            let answer = response
                .responses
                .get_mut(ti)
                .and_then(|t| t.partition_responses.get_mut(pi));
            if let Some(answer) = answer {
                answer.error_code = code.code();
                answer.base_offset = -1;
            }
        }
    }
    for (ti, pi, wait) in outcome.durable {
        if let Err(e) = wait.await {
            tracing::error!(error = %e, "records appended but not made durable");
            let answer = response
                .responses
                .get_mut(ti)
                .and_then(|t| t.partition_responses.get_mut(pi));
            if let Some(answer) = answer {
                answer.error_code = storage_error_code(&e).code();
                answer.base_offset = -1;
                answer.error_message = Some(StrBytes::from_string(e.to_string()));
            }
        }
    }
    response
}
