//! [`ControllerError`], the one error type of this crate, and its Kafka error names.

use std::time::Duration;

use sluice_metadata::MetadataError;
use sluice_quorum::{NodeId, QuorumError};

/// Why a call on the [`MetadataService`](crate::MetadataService) failed as a whole.
///
/// Admin requests with many items (CreateTopics, ...) answer per item with a
/// [`MetadataError`]; this type is for failures of the whole call.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// This node is not the active controller. `leader` is the quorum leader it knows of
    /// (never this node itself), where the caller may forward the request. Kafka:
    /// `NOT_CONTROLLER`.
    #[error("not the active controller (leader: {leader:?})")]
    NotController { leader: Option<NodeId> },

    /// The controller refused the request as a whole (an unknown broker, a stale broker
    /// epoch, a batch too large to commit, ...). The variant names the Kafka error.
    #[error(transparent)]
    Request(MetadataError),

    /// The records were committed but the metadata image rejected them when applying (a
    /// race between two decisions, or a bug): nothing changed. Kafka:
    /// `UNKNOWN_SERVER_ERROR`; the request may be retried.
    #[error("the batch at offset {offset} was rejected when applied: {reason}")]
    Rejected { offset: i64, reason: String },

    /// The call did not finish within its time. The change may still be committed later;
    /// the caller cannot tell. Kafka: `REQUEST_TIMED_OUT`.
    #[error("timed out after {0:?}")]
    Timeout(Duration),

    /// The quorum failed (stopped by a storage error, refused by Raft, ...).
    #[error("metadata quorum: {0}")]
    Quorum(#[source] QuorumError),

    /// The service was shut down (or its task ended); it answers nothing more.
    #[error("the metadata service is stopped")]
    Stopped,
    /// This node stopped applying the metadata log at an entry its build cannot read (a
    /// newer batch format, record type or `metadata.version`): it must be upgraded.
    #[error("metadata apply stopped on this node: {0}")]
    Halted(String),

    /// The configuration cannot work.
    #[error("invalid metadata service config: {0}")]
    Config(String),
}

impl ControllerError {
    /// The name of the Kafka error a client should see (as in Kafka's `Errors` enum); the
    /// broker maps it to the numeric code.
    pub fn kafka_error_name(&self) -> &'static str {
        match self {
            ControllerError::NotController { .. } => "NOT_CONTROLLER",
            ControllerError::Request(e) => e.kafka_error_name(),
            ControllerError::Timeout(_) => "REQUEST_TIMED_OUT",
            ControllerError::Rejected { .. }
            | ControllerError::Quorum(_)
            | ControllerError::Stopped
            | ControllerError::Halted(_)
            | ControllerError::Config(_) => "UNKNOWN_SERVER_ERROR",
        }
    }
}

impl From<QuorumError> for ControllerError {
    fn from(e: QuorumError) -> Self {
        match e {
            QuorumError::NotLeader { leader } => ControllerError::NotController { leader },
            QuorumError::Timeout(d) => ControllerError::Timeout(d),
            other => ControllerError::Quorum(other),
        }
    }
}

/// A `Result` with a [`ControllerError`].
pub type Result<T, E = ControllerError> = std::result::Result<T, E>;
