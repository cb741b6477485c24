//! Fetch: read record batches, with long polls, for consumers and followers.
//!
//! Consumers (replica id -1) read below the high watermark; followers (replica id >= 0:
//! `replica_id` before v15, `replica_state` from v15) read up to the log end, must be
//! replicas of a partition this broker leads, and their fetch offset is recorded as
//! their log end offset (`replication::leader::record_follower_fetch`: the high
//! watermark, the ISR and acks=all waits follow). A fetch naming its last fetched epoch
//! (v12+) is checked against the epoch cache and answered `diverging_epoch` where the
//! fetcher's log left the leader's (Kafka's `validateFetchOffsetAndMaybeGetDivergingEpoch`).
//!
//! Reads are storage's `read_bounded(offset, max_bytes, min_one, bound)`: whole batches
//! as `Bytes` that borrow the mapped segment. The response carries those `Bytes` untouched; the server
//! hands them to the socket as separate I/O slices (see `server::wire`), so no record
//! byte is copied in the process.
//!
//! Limits follow Kafka (KIP-74): `partition_max_bytes` per partition and `max_bytes` for
//! the whole response, except that the first batch of the first partition with data is
//! returned whole even when larger, so a consumer can always make progress.
//!
//! Long polls are sans-IO: [`handle`] answers [`FetchOutcome::Wait`] with the partitions
//! to watch when fewer than `min_bytes` are available and `max_wait_ms` allows waiting.
//! The connection task waits for an append notification on any of them (or the deadline)
//! and calls [`handle`] again; the last call passes `final_attempt` and always answers.
//!
//! Fetch sessions (KIP-227) are not this module's: `fetch_session` turns an incremental
//! request into the full one it stands for before [`handle`] sees it, and cuts the
//! answer back afterwards.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_request::FetchPartition;
use kafka_protocol::messages::fetch_response::{
    EpochEndOffset, FetchableTopicResponse, LeaderIdAndEpoch, NodeEndpoint, PartitionData,
};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse};

use sluice_storage::{ReadBound, StorageError};

use crate::cluster::routing::{Router, TopicKey};
use crate::errors::storage_error_code;
use crate::replication::leader;
use crate::state::BrokerState;
use crate::topics::Partition;

/// `isolation_level` READ_COMMITTED.
const READ_COMMITTED: i8 = 1;

/// What a fetch attempt produced.
pub enum FetchOutcome {
    Ready(FetchResponse),
    /// Not enough data yet: wait for an append to any of these partitions (or the
    /// deadline), then call [`handle`] again.
    Wait(Vec<Arc<Partition>>),
}

fn error_partition(index: i32, code: ResponseError) -> PartitionData {
    PartitionData::default()
        .with_partition_index(index)
        .with_error_code(code.code())
        .with_high_watermark(-1)
        .with_last_stable_offset(-1)
        .with_log_start_offset(-1)
        .with_preferred_read_replica(BrokerId(-1))
        .with_records(Some(Bytes::new()))
}

/// One fetch attempt; see the module docs.
pub fn handle(
    state: &BrokerState,
    request: &FetchRequest,
    version: i16,
    final_attempt: bool,
) -> FetchOutcome {
    // A follower's fetch (replica id >= 0): (its broker id, its broker epoch or -1).
    let follower = if version >= 15 {
        let state = &request.replica_state;
        (state.replica_id.0 >= 0).then_some((state.replica_id.0, state.replica_epoch))
    } else {
        (request.replica_id.0 >= 0).then_some((request.replica_id.0, -1))
    };
    let now_ms = sluice_storage::now_ms();
    let mut remaining = usize::try_from(request.max_bytes).unwrap_or(0);
    let mut total_bytes = 0usize;
    // Something to answer at once (an error, a divergence, news of the high watermark).
    let mut answer_now = false;
    let mut watched = Vec::new();
    let router = Router::new(state);
    // Leaders named in NOT_LEADER_OR_FOLLOWER answers (KIP-951).
    let mut hinted = std::collections::BTreeSet::new();
    let mut topics = Vec::with_capacity(request.topics.len());
    // What this attempt read, per partition (bytes, offsets): counted only if it is the
    // answer (a long poll's earlier attempts are read again).
    let mut tally: Vec<(Arc<Partition>, usize, u64)> = Vec::new();
    for fetch_topic in &request.topics {
        let (topic, unknown) = if version >= 13 {
            (
                state.topics.get_by_id(fetch_topic.topic_id),
                ResponseError::UnknownTopicId,
            )
        } else {
            (
                state.topics.get(&fetch_topic.topic.0),
                ResponseError::UnknownTopicOrPartition,
            )
        };
        let mut partitions = Vec::with_capacity(fetch_topic.partitions.len());
        let key = if version >= 13 {
            TopicKey::Id(fetch_topic.topic_id)
        } else {
            TopicKey::Name(&fetch_topic.topic.0)
        };
        for fetch in &fetch_topic.partitions {
            let routed = if follower.is_some() {
                router.check_follower(key, fetch.partition, fetch.current_leader_epoch)
            } else {
                router.check(key, fetch.partition, fetch.current_leader_epoch)
            };
            let served = match routed {
                Ok(served) => served,
                Err(misrouted) => {
                    answer_now = true;
                    let mut answer = error_partition(fetch.partition, misrouted.code);
                    if let Some((leader, leader_epoch)) = misrouted.leader {
                        answer.current_leader = LeaderIdAndEpoch::default()
                            .with_leader_id(BrokerId(leader))
                            .with_leader_epoch(leader_epoch);
                        hinted.insert(leader);
                    }
                    partitions.push(answer);
                    continue;
                }
            };
            let partition = match &topic {
                Some(t) if served.is_topic(t.id) => t.partition(fetch.partition),
                _ => None,
            };
            let Some(partition) = partition else {
                answer_now = true;
                let code = if router.is_cluster() {
                    // Led here, but the log is not created yet (see `cluster::reconcile`).
                    ResponseError::NotLeaderOrFollower
                } else if topic.is_none() {
                    unknown
                } else {
                    ResponseError::UnknownTopicOrPartition
                };
                partitions.push(error_partition(fetch.partition, code));
                continue;
            };
            let _span = tracing::debug_span!("partition", topic = %partition.topic, partition = partition.index).entered();
            let min_insync = topic.as_deref().map_or(1, leader::min_insync);
            if follower.is_some() {
                if let (Some((node, image)), Some(t)) = (router.cluster(), topic.as_ref()) {
                    leader::ensure_leading(&partition, node.node_id, t.id, image, min_insync);
                }
            }
            match check_follower_and_epoch(&partition, fetch, follower, version) {
                Ok(None) => {}
                Ok(Some(diverging)) => {
                    // Kafka answers a diverging follower at once, with no records.
                    answer_now = true;
                    partitions.push(
                        PartitionData::default()
                            .with_partition_index(fetch.partition)
                            .with_high_watermark(partition.log.high_watermark())
                            .with_last_stable_offset(partition.log.high_watermark())
                            .with_log_start_offset(partition.log.log_start_offset())
                            .with_diverging_epoch(diverging)
                            .with_preferred_read_replica(BrokerId(-1))
                            .with_records(Some(Bytes::new())),
                    );
                    continue;
                }
                Err(code) => {
                    answer_now = true;
                    tracing::debug!(error = ?code, replica = ?follower, "fetch refused");
                    partitions.push(error_partition(fetch.partition, code));
                    continue;
                }
            }
            let limit = usize::try_from(fetch.partition_max_bytes)
                .unwrap_or(0)
                .min(remaining);
            let min_one = total_bytes == 0;
            // Followers read up to the log end, consumers below the high watermark.
            let bound = if follower.is_some() {
                ReadBound::LogEnd
            } else {
                ReadBound::HighWatermark
            };
            match partition
                .log
                .read_bounded(fetch.fetch_offset, limit, min_one, bound)
            {
                Ok(read) => {
                    let mut high_watermark = read.high_watermark;
                    if let Some((replica_id, replica_epoch)) = follower {
                        // Kafka records the follower's progress once its read succeeded.
                        if let Err(code) = leader::record_follower_fetch(
                            &partition,
                            replica_id,
                            fetch.fetch_offset,
                            replica_epoch,
                            min_insync,
                            now_ms,
                        ) {
                            answer_now = true;
                            partitions.push(error_partition(fetch.partition, code));
                            continue;
                        }
                        // The fetch may have moved it: the follower learns the newest.
                        high_watermark = partition.log.high_watermark();
                        // KIP-1166 (v18): a follower behind on the high watermark is
                        // answered at once, so it learns it without waiting for data.
                        if version >= 18 && fetch.high_watermark < high_watermark {
                            answer_now = true;
                        }
                    }
                    let len = read.records.len();
                    if len > 0 {
                        let offsets = offsets_spanned(&read.records, fetch.fetch_offset);
                        tally.push((partition.clone(), len, offsets));
                    }
                    total_bytes += len;
                    remaining = remaining.saturating_sub(len);
                    let mut data = PartitionData::default()
                        .with_partition_index(fetch.partition)
                        .with_high_watermark(high_watermark)
                        .with_last_stable_offset(high_watermark)
                        .with_log_start_offset(read.log_start_offset)
                        .with_preferred_read_replica(BrokerId(-1))
                        .with_records(Some(read.records));
                    if request.isolation_level == READ_COMMITTED {
                        data.aborted_transactions = Some(Vec::new());
                    }
                    partitions.push(data);
                    watched.push(partition);
                }
                Err(e) => {
                    answer_now = true;
                    let code = storage_error_code(&e);
                    if code == ResponseError::OffsetOutOfRange
                        || matches!(
                            e,
                            StorageError::Damaged { .. } | StorageError::Unavailable { .. }
                        )
                    {
                        // Damage and offline partitions were logged as errors when found;
                        // a consumer retrying must not flood the log.
                        tracing::debug!(error = %e, "fetch refused");
                    } else {
                        tracing::warn!(error = %e, "fetch read failed");
                    }
                    partitions.push(error_partition(fetch.partition, code));
                }
            }
        }
        topics.push(
            FetchableTopicResponse::default()
                .with_topic(fetch_topic.topic.clone())
                .with_topic_id(fetch_topic.topic_id)
                .with_partitions(partitions),
        );
    }
    let enough = total_bytes >= usize::try_from(request.min_bytes).unwrap_or(0);
    if final_attempt || request.max_wait_ms <= 0 || enough || answer_now || watched.is_empty() {
        let mut response = FetchResponse::default()
            .with_session_id(0)
            .with_responses(topics);
        // KIP-951 (v16+): the new leaders' endpoints.
        if version >= 16 {
            response.node_endpoints = router.endpoints(hinted, |id, host, port, rack| {
                NodeEndpoint::default()
                    .with_node_id(id)
                    .with_host(host)
                    .with_port(port)
                    .with_rack(rack)
            });
        }
        for (partition, bytes, offsets) in tally {
            if follower.is_some() {
                partition
                    .traffic
                    .replication_bytes_out
                    .fetch_add(bytes as u64, std::sync::atomic::Ordering::Relaxed);
            } else {
                partition.traffic.read(bytes, offsets);
            }
        }
        return FetchOutcome::Ready(response);
    }
    FetchOutcome::Wait(watched)
}

/// The offsets from `from` to the end of the last batch in `records` (whole batches
/// as stored: base offset at byte 0, length at 8, last offset delta at 23), i.e. the
/// records a consumer fetching at `from` gets; 0 if the bytes do not parse.
fn offsets_spanned(records: &[u8], from: i64) -> u64 {
    const HEADER: usize = 61;
    let mut position = 0usize;
    let mut end = None;
    while position + HEADER <= records.len() {
        let at = |offset: usize, n: usize| &records[position + offset..position + offset + n];
        let base = i64::from_be_bytes(at(0, 8).try_into().unwrap_or_default());
        let length = i32::from_be_bytes(at(8, 4).try_into().unwrap_or_default());
        let last_delta = i32::from_be_bytes(at(23, 4).try_into().unwrap_or_default());
        let Ok(length) = usize::try_from(length) else {
            break;
        };
        let next = position.saturating_add(12).saturating_add(length);
        if next > records.len() {
            // A batch cut short: its records are not all there.
            break;
        }
        end = Some(base.saturating_add(i64::from(last_delta)).saturating_add(1));
        position = next;
    }
    end.map_or(0, |end| {
        u64::try_from(end.saturating_sub(from)).unwrap_or(0)
    })
}

/// A follower must be a replica of the partition this broker leads (else
/// NOT_LEADER_OR_FOLLOWER); every fetcher that names its last fetched epoch (v12+) is
/// checked against the epoch cache as Kafka's `validateFetchOffsetAndMaybeGetDivergingEpoch`
/// does: an epoch the leader cannot place, or a fetch offset below the log start, is
/// OFFSET_OUT_OF_RANGE; an epoch that ended earlier (or a smaller epoch in its place)
/// is a divergence, answered with where the leader's epoch ends (`Ok(Some)`).
fn check_follower_and_epoch(
    partition: &Partition,
    fetch: &FetchPartition,
    follower: Option<(i32, i64)>,
    version: i16,
) -> Result<Option<EpochEndOffset>, ResponseError> {
    if let Some((replica_id, _)) = follower {
        match partition.leadership.replicas() {
            Some(replicas) if replicas.contains(&replica_id) => {}
            _ => return Err(ResponseError::NotLeaderOrFollower),
        }
    }
    if version < 12 || fetch.last_fetched_epoch < 0 {
        return Ok(None);
    }
    let Some(end) = partition.log.end_offset_for_epoch(fetch.last_fetched_epoch) else {
        return Err(ResponseError::OffsetOutOfRange);
    };
    if end.leader_epoch < 0
        || end.end_offset < 0
        || fetch.fetch_offset < partition.log.log_start_offset()
    {
        return Err(ResponseError::OffsetOutOfRange);
    }
    if end.leader_epoch < fetch.last_fetched_epoch || end.end_offset < fetch.fetch_offset {
        return Ok(Some(
            EpochEndOffset::default()
                .with_epoch(end.leader_epoch)
                .with_end_offset(end.end_offset),
        ));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::offsets_spanned;

    fn batch(base: i64, last_delta: i32, len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        b[0..8].copy_from_slice(&base.to_be_bytes());
        b[8..12].copy_from_slice(&((len - 12) as i32).to_be_bytes());
        b[23..27].copy_from_slice(&last_delta.to_be_bytes());
        b
    }

    #[test]
    fn offsets_run_from_the_fetch_offset_to_the_end_of_the_last_batch() {
        let mut records = batch(100, 9, 80);
        records.extend(batch(110, 4, 70));
        assert_eq!(offsets_spanned(&records, 100), 15);
        // Fetched from inside the first batch: the records before it are skipped.
        assert_eq!(offsets_spanned(&records, 105), 10);
        // A partial last batch (cut by max_bytes) does not count, whole ones do.
        records.extend(batch(115, 9, 90)[..70].iter());
        assert_eq!(offsets_spanned(&records, 100), 15);
        assert_eq!(offsets_spanned(&records, i64::MIN), u64::MAX >> 1);
        assert_eq!(offsets_spanned(&[], 0), 0);
        assert_eq!(offsets_spanned(&[1, 2, 3], 0), 0);
    }
}
