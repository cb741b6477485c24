//! ListOffsets (offsets by time, earliest, latest, max timestamp) and DeleteRecords.
//!
//! ListOffsets reads only in-memory offsets or searches the time indexes; it runs
//! inline. DeleteRecords writes a checkpoint and may delete segments (it fsyncs), so
//! the server runs it on a blocking thread.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{
    DeleteRecordsRequest, DeleteRecordsResponse, ListOffsetsRequest, ListOffsetsResponse,
};
use sluice_storage::{PartitionLog, StorageError};

use crate::cluster::routing::{Router, TopicKey};
use crate::coordinator::store::OFFSETS_TOPIC;
use crate::errors::storage_error_code;
use crate::state::BrokerState;

/// Special timestamps of ListOffsets.
pub const LATEST: i64 = -1;
pub const EARLIEST: i64 = -2;
pub const MAX_TIMESTAMP: i64 = -3;
pub const EARLIEST_LOCAL: i64 = -4;
pub const LATEST_TIERED: i64 = -5;

/// The leader epoch of the record at `offset`: the latest cached epoch starting at or
/// before it (Kafka's `LeaderEpochFileCache.epochForOffset`), -1 if none.
fn epoch_for_offset(log: &PartitionLog, offset: i64) -> i32 {
    log.epoch_entries()
        .iter()
        .take_while(|&&(_, start)| start <= offset)
        .last()
        .map_or(-1, |&(epoch, _)| epoch)
}

/// (timestamp, offset, leader epoch) of a ListOffsets lookup, as Kafka's
/// `Partition.fetchOffsetForTimestamp`: LATEST is the high watermark for consumers (both
/// isolation levels: Sluice has no transactions, so the last stable offset is the high
/// watermark) and the log end for a replica (`replica_id` >= 0), with the current leader
/// epoch; the other lookups give the epoch of the offset found.
fn list_offset(
    log: &PartitionLog,
    timestamp: i64,
    from_replica: bool,
    leader_epoch: i32,
) -> Result<(i64, i64, i32), StorageError> {
    const NONE: (i64, i64, i32) = (-1, -1, -1);
    // A partition that could not be loaded has no offsets to give.
    log.ensure_loaded()?;
    Ok(match timestamp {
        LATEST if from_replica => (-1, log.log_end_offset(), leader_epoch),
        LATEST => (-1, log.high_watermark(), leader_epoch),
        EARLIEST | EARLIEST_LOCAL => {
            let start = log.log_start_offset();
            (-1, start, epoch_for_offset(log, start))
        }
        // No tiered storage: Kafka answers "no offset" for a non-tiered topic.
        LATEST_TIERED => NONE,
        // A record found by time at or above the high watermark is not committed yet: a
        // consumer is not told of it (Kafka drops such an answer for clients).
        MAX_TIMESTAMP => match log
            .max_timestamp_offset()?
            .filter(|f| from_replica || f.offset < log.high_watermark())
        {
            Some(found) => (
                found.timestamp,
                found.offset,
                epoch_for_offset(log, found.offset),
            ),
            None => NONE,
        },
        _ => match log
            .offset_for_timestamp(timestamp)?
            .filter(|f| from_replica || f.offset < log.high_watermark())
        {
            Some(found) => (
                found.timestamp,
                found.offset,
                epoch_for_offset(log, found.offset),
            ),
            None => NONE,
        },
    })
}

/// Answers a ListOffsets request.
pub fn list_offsets(
    state: &BrokerState,
    request: &ListOffsetsRequest,
    version: i16,
) -> ListOffsetsResponse {
    let router = Router::new(state);
    let topics = request
        .topics
        .iter()
        .map(|t| {
            let topic = state.topics.get(&t.name.0);
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let answer = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_timestamp(-1)
                        .with_offset(-1)
                        .with_leader_epoch(-1);
                    let served = match router.check(
                        TopicKey::Name(&t.name.0),
                        p.partition_index,
                        p.current_leader_epoch,
                    ) {
                        Ok(served) => served,
                        Err(misrouted) => return answer.with_error_code(misrouted.code.code()),
                    };
                    let Some(partition) = topic
                        .as_ref()
                        .filter(|t| served.is_topic(t.id))
                        .and_then(|t| t.partition(p.partition_index))
                    else {
                        return answer.with_error_code(missing_code(&router));
                    };
                    match list_offset(
                        &partition.log,
                        p.timestamp,
                        request.replica_id.0 >= 0,
                        served.leader_epoch,
                    ) {
                        Ok((timestamp, offset, epoch)) => answer
                            .with_timestamp(timestamp)
                            .with_offset(offset)
                            // The field exists from v4; encoding refuses it before.
                            .with_leader_epoch(if version >= 4 { epoch } else { -1 }),
                        Err(e @ StorageError::Unavailable { .. }) => {
                            // Logged as an error once, at start.
                            answer.with_error_code(storage_error_code(&e).code())
                        }
                        Err(e) => {
                            tracing::warn!(topic = %partition.topic, partition = partition.index, error = %e, "list offsets failed");
                            answer.with_error_code(storage_error_code(&e).code())
                        }
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(t.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

/// The error for a partition the router let through that has no local log: on a single
/// node it does not exist; in a cluster this broker leads it but has not created its log
/// yet (see `cluster::reconcile`).
pub(crate) fn missing_code(router: &Router) -> i16 {
    if router.is_cluster() {
        ResponseError::NotLeaderOrFollower.code()
    } else {
        ResponseError::UnknownTopicOrPartition.code()
    }
}

/// Answers a DeleteRecords request (blocking).
pub fn delete_records(
    state: &BrokerState,
    request: &DeleteRecordsRequest,
) -> DeleteRecordsResponse {
    let router = Router::new(state);
    let topics = request
        .topics
        .iter()
        .map(|t| {
            let topic = state.topics.get(&t.name.0);
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let answer = DeleteRecordsPartitionResult::default()
                        .with_partition_index(p.partition_index)
                        .with_low_watermark(-1);
                    let served = match router.check(TopicKey::Name(&t.name.0), p.partition_index, -1) {
                        Ok(served) => served,
                        Err(misrouted) => return answer.with_error_code(misrouted.code.code()),
                    };
                    let Some(partition) = topic
                        .as_ref()
                        .filter(|t| served.is_topic(t.id))
                        .and_then(|t| t.partition(p.partition_index))
                    else {
                        return answer.with_error_code(missing_code(&router));
                    };
                    if t.name.0.as_str() == OFFSETS_TOPIC {
                        // Kafka: "Cannot delete records of internal topic". Deleting them
                        // would drop committed offsets at the next replay.
                        return answer.with_error_code(ResponseError::InvalidTopicException.code());
                    }
                    // -1 means "up to the high watermark".
                    let offset = if p.offset == -1 {
                        partition.log.high_watermark()
                    } else {
                        p.offset
                    };
                    match partition.log.delete_records_before(offset) {
                        Ok(low) => {
                            tracing::info!(topic = %partition.topic, partition = partition.index, log_start_offset = low, "deleted records");
                            answer.with_low_watermark(low)
                        }
                        Err(e) => answer.with_error_code(storage_error_code(&e).code()),
                    }
                })
                .collect();
            DeleteRecordsTopicResult::default()
                .with_name(t.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    DeleteRecordsResponse::default().with_topics(topics)
}
