//! DescribeProducers (API 61): the idempotent producers each partition has state for, as
//! `kafka-transactions describe-producers` shows them. Sent to each partition's leader
//! (others answer NOT_LEADER_OR_FOLLOWER, as for every partition request); no
//! transactions yet, so no coordinator epoch and no open transaction.

use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};

use crate::cluster::routing::{Router, TopicKey};
use crate::errors::storage_error_code;
use crate::handlers::offsets::missing_code;
use crate::state::BrokerState;

/// Answers a DescribeProducers request (its partitions the principal may read).
pub fn describe_producers(
    state: &BrokerState,
    request: &DescribeProducersRequest,
) -> DescribeProducersResponse {
    let router = Router::new(state);
    let topics = request
        .topics
        .iter()
        .map(|t| {
            let topic = state.topics.get(&t.name.0);
            let partitions = t
                .partition_indexes
                .iter()
                .map(|&index| {
                    let answer = PartitionResponse::default().with_partition_index(index);
                    let served = match router.check(TopicKey::Name(&t.name.0), index, -1) {
                        Ok(served) => served,
                        Err(misrouted) => return answer.with_error_code(misrouted.code.code()),
                    };
                    let Some(partition) = topic
                        .as_ref()
                        .filter(|t| served.is_topic(t.id))
                        .and_then(|t| t.partition(index))
                    else {
                        return answer.with_error_code(missing_code(&router));
                    };
                    match partition.log.active_producers() {
                        Ok(active) => answer.with_active_producers(
                            active
                                .into_iter()
                                .map(|p| {
                                    ProducerState::default()
                                        .with_producer_id(ProducerId(p.producer_id))
                                        .with_producer_epoch(i32::from(p.epoch))
                                        .with_last_sequence(p.last_sequence)
                                        .with_last_timestamp(p.last_timestamp)
                                        .with_coordinator_epoch(-1)
                                        .with_current_txn_start_offset(-1)
                                })
                                .collect(),
                        ),
                        Err(e) => answer.with_error_code(storage_error_code(&e).code()),
                    }
                })
                .collect();
            TopicResponse::default()
                .with_name(t.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    DescribeProducersResponse::default().with_topics(topics)
}
