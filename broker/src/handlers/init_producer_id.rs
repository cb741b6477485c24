//! InitProducerId: producer ids for idempotent producers (v0-5).
//!
//! What Kafka 4.x does (`KafkaApis.handleInitProducerIdRequest`,
//! `TransactionCoordinator.handleInitProducerId`), and Sluice with it:
//! - a producer id without an epoch or an epoch without an id (v3+): INVALID_REQUEST;
//! - no transactional id: a fresh producer id with epoch 0, every time. The id and epoch
//!   a v3+ client sends (KIP-360, after UNKNOWN_PRODUCER_ID or a timed-out batch) are
//!   ignored, as Kafka "blindly accepts" them for non-transactional producers: the client
//!   starts over under the new id, and its old id's state stays in the partitions.
//! - an empty transactional id: INVALID_REQUEST.
//!
//! Transactions are not implemented. A non-empty transactional id gets
//! TRANSACTIONAL_ID_AUTHORIZATION_FAILED: the error Kafka gives a client that may not use
//! that transactional id, and the one both the Java client and librdkafka treat as fatal
//! at once. The retriable errors a Kafka without a transaction coordinator would give
//! (COORDINATOR_NOT_AVAILABLE) make `initTransactions()` retry until `max.block.ms`
//! (60 s by default) and then fail with a timeout that says nothing about the cause.
//!
//! Ids come from [`ProducerIdAllocator`](crate::producer_ids::ProducerIdAllocator), which
//! may write and fsync a file: the dispatcher runs this handler on a blocking thread.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use sluice_storage::batch::{NO_PRODUCER_EPOCH, NO_PRODUCER_ID};

use crate::producer_ids::AllocateError;
use crate::state::BrokerState;

fn error(code: ResponseError) -> InitProducerIdResponse {
    InitProducerIdResponse::default()
        .with_error_code(code.code())
        .with_producer_id(ProducerId(NO_PRODUCER_ID))
        .with_producer_epoch(NO_PRODUCER_EPOCH)
}

/// Answers an InitProducerId request; see the module docs. Blocking.
pub fn handle(state: &BrokerState, request: &InitProducerIdRequest) -> InitProducerIdResponse {
    if let Err(refused) = check(request) {
        return refused;
    }
    answer(request, state.producer_ids.allocate())
}

/// The request's checks before an id is handed out; the refusal to send otherwise.
pub fn check(request: &InitProducerIdRequest) -> Result<(), InitProducerIdResponse> {
    let (id, epoch) = (request.producer_id.0, request.producer_epoch);
    if (id == NO_PRODUCER_ID) != (epoch == NO_PRODUCER_EPOCH) {
        return Err(error(ResponseError::InvalidRequest));
    }
    match request.transactional_id.as_ref().map(|t| t.0.as_str()) {
        None => {}
        Some("") => return Err(error(ResponseError::InvalidRequest)),
        Some(transactional_id) => {
            tracing::info!(
                transactional_id,
                "refusing a transactional producer: transactions are not supported"
            );
            return Err(error(ResponseError::TransactionalIdAuthorizationFailed));
        }
    }
    Ok(())
}

/// The answer for a checked request, given the id allocation's outcome.
pub fn answer(
    request: &InitProducerIdRequest,
    allocated: Result<i64, AllocateError>,
) -> InitProducerIdResponse {
    let (id, epoch) = (request.producer_id.0, request.producer_epoch);
    match allocated {
        Ok(producer_id) => {
            tracing::debug!(
                producer_id,
                previous_id = id,
                previous_epoch = epoch,
                "new producer id"
            );
            InitProducerIdResponse::default()
                .with_producer_id(ProducerId(producer_id))
                .with_producer_epoch(0)
        }
        Err(AllocateError::Exhausted) => {
            tracing::error!("every producer id has been handed out");
            error(ResponseError::UnknownServerError)
        }
        Err(AllocateError::Persist(e)) => {
            // Kafka's answer while no id block is available: retriable, so the producer
            // asks again instead of failing.
            tracing::error!(error = %e, "cannot reserve producer ids");
            error(ResponseError::CoordinatorLoadInProgress)
        }
    }
}
