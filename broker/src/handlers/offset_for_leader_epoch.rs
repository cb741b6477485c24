//! OffsetForLeaderEpoch (API 23, v2-4 as Kafka 4.x): where a leader epoch ends in this
//! leader's log, for followers truncating after a leader change (KIP-101, KIP-279) and
//! consumers validating their position after one (KIP-320).
//!
//! Per partition, as Kafka's `Partition.lastOffsetForLeaderEpoch` with
//! `fetchOnlyFromLeader`: the partition must be led here and the client's
//! `current_leader_epoch` (when >= 0) must be the current one (see `cluster::routing`);
//! then the epoch cache answers the largest epoch <= the one asked and where it ends (the
//! log end for the latest epoch), or (-1, -1) when the asked epoch is older than every
//! cached one. Consumers get the same answer as followers: Kafka does not cap it at the
//! high watermark.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use crate::cluster::routing::{Router, TopicKey};
use crate::errors::storage_error_code;
use crate::state::BrokerState;

/// Kafka's UNDEFINED_EPOCH and UNDEFINED_EPOCH_OFFSET.
const UNDEFINED: (i32, i64) = (-1, -1);

/// Answers an OffsetForLeaderEpoch request (inline: reads only memory).
pub fn handle(
    state: &BrokerState,
    request: &OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let router = Router::new(state);
    let topics = request
        .topics
        .iter()
        .map(|t| {
            let topic = state.topics.get(&t.topic.0);
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let answer = EpochEndOffset::default()
                        .with_partition(p.partition)
                        .with_leader_epoch(UNDEFINED.0)
                        .with_end_offset(UNDEFINED.1);
                    let served = match router.check(
                        TopicKey::Name(&t.topic.0),
                        p.partition,
                        p.current_leader_epoch,
                    ) {
                        Ok(served) => served,
                        Err(misrouted) => return answer.with_error_code(misrouted.code.code()),
                    };
                    let Some(partition) = topic
                        .as_ref()
                        .filter(|t| served.is_topic(t.id))
                        .and_then(|t| t.partition(p.partition))
                    else {
                        let code = if router.is_cluster() {
                            ResponseError::NotLeaderOrFollower
                        } else {
                            ResponseError::UnknownTopicOrPartition
                        };
                        return answer.with_error_code(code.code());
                    };
                    if let Err(e) = partition.log.ensure_loaded() {
                        return answer.with_error_code(storage_error_code(&e).code());
                    }
                    match partition.log.end_offset_for_epoch(p.leader_epoch) {
                        Some(end) => answer
                            .with_leader_epoch(end.leader_epoch)
                            .with_end_offset(end.end_offset),
                        None => answer,
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic.clone())
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
