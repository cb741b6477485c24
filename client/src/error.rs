//! The one error type of the client library.
//!
//! Every fallible call returns [`Error`]. It is `Clone` because a single failure (a broker
//! answering a produce request with an error, a dropped connection) is handed to every
//! record or caller waiting on it; I/O errors are kept behind an `Arc` for that reason.
//!
//! Display texts follow the Rust convention of not repeating the source: print the chain
//! (walk [`std::error::Error::source`], or print with `{:#}` through anyhow) to see the whole story.
//!
//! Answers from the broker never cause a panic: a response that cannot be decoded, or that
//! leaves out something the request asked for, becomes [`Error::Protocol`].

use std::io;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use sluice_storage::BatchError;

/// Shorthand for `Result<T, sluice_client::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything the client library can fail with.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// A TCP connection to a broker could not be opened.
    #[error("cannot connect to {addr}")]
    Connect {
        addr: String,
        #[source]
        source: Arc<io::Error>,
    },
    /// None of the bootstrap or known broker addresses could be reached.
    #[error("cannot reach any broker (tried {tried})")]
    NoBrokerAvailable {
        /// The addresses tried, comma separated.
        tried: String,
        #[source]
        source: Box<Error>,
    },
    /// Reading from or writing to an open connection failed.
    #[error("connection to {addr} failed")]
    Io {
        addr: String,
        #[source]
        source: Arc<io::Error>,
    },
    /// The connection closed (by the broker, or after an earlier failure) while a request
    /// was outstanding or before it could be sent.
    #[error("connection to {addr} closed")]
    Disconnected { addr: String },

    #[error("TLS with {addr} failed: {reason}")]
    Tls { addr: String, reason: String },

    #[error("SASL login at {addr} failed: {reason}")]
    Authentication { addr: String, reason: String },
    /// An operation did not finish in time.
    #[error("{what} timed out after {after:?}")]
    Timeout { what: String, after: Duration },
    /// The broker does not support any version of an API that this client can use.
    #[error("broker {addr} does not support {api} (versions this client can use: {ours})")]
    UnsupportedApi {
        addr: String,
        api: &'static str,
        ours: String,
    },
    /// A request could not be encoded (a field does not fit its wire type).
    #[error("cannot encode {api} request: {reason}")]
    Encode { api: &'static str, reason: String },
    /// The server at `addr` does not speak the Kafka protocol: its first answer is not a
    /// Kafka frame (an HTTP server, a TLS listener, another service on that port).
    #[error("{addr} is not a Kafka broker: {evidence}")]
    NotKafka { addr: String, evidence: String },
    /// The broker sent something this client cannot make sense of.
    #[error("invalid {api} response from {addr}: {reason}")]
    Protocol {
        api: &'static str,
        addr: String,
        reason: String,
    },
    /// The broker answered with a Kafka error code.
    #[error("{context}: {}{}", kafka_error_text(*.error), .message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default())]
    Broker {
        /// What was being done, e.g. `create topic "orders"`.
        context: String,
        error: ResponseError,
        /// The broker's own error message, when it sent one.
        message: Option<String>,
    },
    /// The topic does not exist.
    #[error("unknown topic {topic:?}")]
    UnknownTopic { topic: String },
    /// The topic exists but has no such partition.
    #[error("topic {topic:?} has no partition {partition} (it has {count})")]
    UnknownPartition {
        topic: String,
        partition: i32,
        count: usize,
    },
    /// A record batch could not be built or decoded.
    #[error("record batch error")]
    Batch(#[from] BatchError),
    /// A fetched position is outside the log and no reset policy applies.
    #[error("offset {offset} is out of range for {topic}-{partition}")]
    OffsetOutOfRange {
        topic: String,
        partition: i32,
        offset: i64,
    },
    /// A partition has no committed offset and the consumer has no reset policy.
    #[error("no committed offset for {topic}-{partition} and auto_offset_reset is none")]
    NoOffset { topic: String, partition: i32 },
    /// An offset commit was rejected because the group rebalanced; the partitions may now
    /// belong to another member.
    #[error("offset commit for group {group:?} failed: the group rebalanced ({error})")]
    CommitFailed { group: String, error: ResponseError },
    /// A configuration value or call argument is invalid.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The producer, consumer or client was closed.
    #[error("{0} is closed")]
    Closed(&'static str),
    /// The broker refused the idempotent producer's epoch (INVALID_PRODUCER_EPOCH or
    /// PRODUCER_FENCED): a newer incarnation of the producer id writes to the partition.
    /// The producer cannot go on without risking duplicates or reordering, so every
    /// record it has not yet delivered fails with this error, and so does every later
    /// `send`; create a new producer.
    #[error(
        "producer id {producer_id} (epoch {epoch}) was fenced by {partition}: {}",
        kafka_error_text(*.error)
    )]
    ProducerFenced {
        /// The partition whose broker refused the epoch (`topic-partition`).
        partition: String,
        producer_id: i64,
        epoch: i16,
        error: ResponseError,
    },
}

impl Error {
    /// The Kafka error code, for [`Error::Broker`].
    pub fn kafka_error(&self) -> Option<ResponseError> {
        match self {
            Error::Broker { error, .. }
            | Error::CommitFailed { error, .. }
            | Error::ProducerFenced { error, .. } => Some(*error),
            _ => None,
        }
    }

    /// Whether repeating the operation may succeed: network failures, timeouts and the
    /// broker errors Kafka marks retriable.
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Connect { .. }
            | Error::Io { .. }
            | Error::Disconnected { .. }
            | Error::Timeout { .. } => true,
            // Retriable when what stopped the last attempt is (not a refused login or an
            // untrusted certificate: trying again cannot help).
            Error::NoBrokerAvailable { source, .. } => source.is_retriable(),
            Error::Broker { error, .. } => is_retriable_code(*error),
            _ => false,
        }
    }

    /// Whether the broker does not do this at all (no usable version of the API, or an
    /// UNSUPPORTED_VERSION answer), as opposed to failing at it.
    pub fn is_unsupported(&self) -> bool {
        matches!(self, Error::UnsupportedApi { .. })
            || self.kafka_error() == Some(ResponseError::UnsupportedVersion)
    }

    /// Whether the error means the client's view of the cluster (leaders, topics,
    /// coordinators) is stale and metadata should be refreshed before retrying.
    pub fn needs_metadata_refresh(&self) -> bool {
        match self {
            Error::Connect { .. } | Error::Io { .. } | Error::Disconnected { .. } => true,
            Error::Broker { error, .. } => invalidates_metadata(*error),
            _ => false,
        }
    }

    pub(crate) fn broker(
        context: impl Into<String>,
        error: ResponseError,
        message: Option<&kafka_protocol::protocol::StrBytes>,
    ) -> Error {
        Error::Broker {
            context: context.into(),
            error,
            message: message
                .map(|m| m.as_str().to_owned())
                .filter(|m| !m.is_empty()),
        }
    }

    /// `Ok(())` for error code 0, otherwise [`Error::Broker`].
    pub(crate) fn check(
        code: i16,
        context: impl FnOnce() -> String,
        message: Option<&kafka_protocol::protocol::StrBytes>,
    ) -> Result<()> {
        match ResponseError::try_from_code(code) {
            None => Ok(()),
            Some(error) => Err(Error::broker(context(), error, message)),
        }
    }

    pub(crate) fn protocol(api: &'static str, addr: &str, reason: impl Into<String>) -> Error {
        Error::Protocol {
            api,
            addr: addr.to_owned(),
            reason: reason.into(),
        }
    }
}

/// Kafka's retriable flag, plus the few errors Kafka's clients retry although the
/// protocol table does not mark them (a rebalance in progress, a coordinator loading).
pub(crate) fn is_retriable_code(error: ResponseError) -> bool {
    error.is_retriable()
        || matches!(
            error,
            ResponseError::RebalanceInProgress
                | ResponseError::CoordinatorLoadInProgress
                | ResponseError::UnknownTopicId
                | ResponseError::InconsistentTopicId
                | ResponseError::OffsetNotAvailable
                | ResponseError::ThrottlingQuotaExceeded
        )
}

/// Errors after which the client refreshes metadata (leaders moved, topics changed).
pub(crate) fn invalidates_metadata(error: ResponseError) -> bool {
    matches!(
        error,
        ResponseError::NotLeaderOrFollower
            | ResponseError::LeaderNotAvailable
            | ResponseError::UnknownTopicOrPartition
            | ResponseError::UnknownTopicId
            | ResponseError::InconsistentTopicId
            | ResponseError::FencedLeaderEpoch
            | ResponseError::UnknownLeaderEpoch
            | ResponseError::KafkaStorageError
            | ResponseError::ReplicaNotAvailable
            | ResponseError::NotController
            | ResponseError::NotCoordinator
            | ResponseError::CoordinatorNotAvailable
    )
}

/// Kafka's upper-snake-case error name (as its tools print it) followed by its meaning,
/// e.g. `TOPIC_ALREADY_EXISTS: topic with this name already exists`.
pub fn kafka_error_text(error: ResponseError) -> String {
    let name = format!("{error:?}");
    let name = match error {
        ResponseError::Unknown(code) => format!("UNKNOWN_ERROR_CODE_{code}"),
        _ => upper_snake(&name),
    };
    match description(error) {
        Some(text) => format!("{name}: {text}"),
        None => name,
    }
}

fn upper_snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// Short explanations for the errors a user of the CLI is likely to meet.
fn description(error: ResponseError) -> Option<&'static str> {
    Some(match error {
        ResponseError::UnknownTopicOrPartition => "the topic or partition does not exist",
        ResponseError::TopicAlreadyExists => "a topic with this name already exists",
        ResponseError::InvalidTopicException => "the topic name is invalid",
        ResponseError::InvalidPartitions => "the number of partitions is invalid",
        ResponseError::InvalidReplicationFactor => "the replication factor is invalid",
        ResponseError::InvalidConfig => "the configuration is invalid",
        ResponseError::MessageTooLarge => "the record batch is larger than the broker accepts",
        ResponseError::RecordListTooLarge => "the request is larger than the broker accepts",
        ResponseError::NotLeaderOrFollower => "the broker is not the partition's leader",
        ResponseError::LeaderNotAvailable => "the partition has no leader right now",
        ResponseError::RequestTimedOut => "the broker timed out",
        ResponseError::OffsetOutOfRange => "the offset is outside the partition's log",
        ResponseError::GroupIdNotFound => "the group does not exist",
        ResponseError::NonEmptyGroup => "the group still has active members",
        ResponseError::RebalanceInProgress => "the group is rebalancing",
        ResponseError::CoordinatorNotAvailable => "the group coordinator is not available",
        ResponseError::NotCoordinator => "the broker is not the group's coordinator",
        ResponseError::UnknownMemberId => "the group does not know this member",
        ResponseError::IllegalGeneration => "the group has moved to a new generation",
        ResponseError::UnsupportedVersion => "the broker does not support this request version",
        ResponseError::PolicyViolation => "the request violates a broker policy",
        ResponseError::TopicDeletionDisabled => "topic deletion is disabled on the broker",
        ResponseError::KafkaStorageError => "the broker had a disk error",
        ResponseError::InvalidRequest => "the broker rejected the request as malformed",
        ResponseError::CorruptMessage => "the broker found a corrupt record batch",
        ResponseError::UnknownServerError => "the broker had an unexpected error",
        ResponseError::OutOfOrderSequenceNumber => {
            "the broker expected another sequence number from this idempotent producer"
        }
        ResponseError::InvalidProducerEpoch => {
            "a newer epoch of this idempotent producer has written to the partition"
        }
        ResponseError::ProducerFenced => "a newer producer with the same id fenced this one",
        ResponseError::UnknownProducerId => "the broker has no state for this producer id",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_errors_print_kafka_names() {
        let e = Error::Broker {
            context: "create topic \"t\"".into(),
            error: ResponseError::TopicAlreadyExists,
            message: Some("Topic 't' already exists.".into()),
        };
        assert_eq!(
            e.to_string(),
            "create topic \"t\": TOPIC_ALREADY_EXISTS: a topic with this name already exists \
             (Topic 't' already exists.)"
        );
        assert_eq!(
            kafka_error_text(ResponseError::Unknown(4242)),
            "UNKNOWN_ERROR_CODE_4242"
        );
        assert_eq!(
            kafka_error_text(ResponseError::FencedLeaderEpoch),
            "FENCED_LEADER_EPOCH"
        );
    }

    #[test]
    fn retriable_classification() {
        let not_leader = Error::broker("x", ResponseError::NotLeaderOrFollower, None);
        assert!(not_leader.is_retriable());
        assert!(not_leader.needs_metadata_refresh());
        let too_large = Error::broker("x", ResponseError::MessageTooLarge, None);
        assert!(!too_large.is_retriable());
        assert!(Error::Disconnected { addr: "a".into() }.is_retriable());
        assert!(!Error::InvalidArgument("x".into()).is_retriable());
    }
}
