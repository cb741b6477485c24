//! The crate's one error type, and its mapping to Kafka error names.
//!
//! Three families share the enum:
//! - **request errors** (`InvalidTopic` .. `ProducerIdsExhausted`): the controller refused
//!   an admin or broker request; each names the Kafka error a client should see, with
//!   Kafka's message where Kafka has one.
//! - **apply errors** (`InconsistentRecord`, `OffsetNotIncreasing`): a committed batch does
//!   not fit the image. The image is left exactly as it was (batches are atomic), so every
//!   replica that applies the same log rejects the same batch and stays equal to the others.
//! - **codec errors** (`UnsupportedVersion`, `Decode`, `Encode`): bytes from the Raft log or
//!   a snapshot that are not a record batch or snapshot of a version this build reads.
//!
//! [`MetadataError::kafka_error_name`] is an exhaustive `match` without a wildcard, so a new
//! variant does not compile until it names its Kafka error; the broker turns the name into
//! the numeric code in its one mapping (`broker/src/errors.rs`).

use uuid::Uuid;

/// Everything that can go wrong in this crate. See the module docs for the families.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    /// A topic name breaks Kafka's rules (characters, length, `.`/`..`), or collides with an
    /// existing name once `.` and `_` are treated alike. Kafka: `INVALID_TOPIC_EXCEPTION`.
    #[error("{0}")]
    InvalidTopic(String),
    /// Kafka: `TOPIC_ALREADY_EXISTS`.
    #[error("Topic '{0}' already exists.")]
    TopicAlreadyExists(String),
    /// A topic (or a partition of it) named in a request does not exist.
    /// Kafka: `UNKNOWN_TOPIC_OR_PARTITION`.
    #[error("This server does not host this topic-partition: {0}")]
    UnknownTopicOrPartition(String),
    /// A topic id named in a request does not exist. Kafka: `UNKNOWN_TOPIC_ID`.
    #[error("unknown topic id {0}")]
    UnknownTopicId(Uuid),
    /// A partition count that is not positive or not an increase. Kafka: `INVALID_PARTITIONS`.
    #[error("{0}")]
    InvalidPartitions(String),
    /// A replication factor below 1 or above the number of usable brokers.
    /// Kafka: `INVALID_REPLICATION_FACTOR`.
    #[error("{0}")]
    InvalidReplicationFactor(String),
    /// An explicit replica assignment that is not usable (gaps, duplicates, unknown or
    /// fenced brokers, uneven replication factors). Kafka: `INVALID_REPLICA_ASSIGNMENT`.
    #[error("{0}")]
    InvalidReplicaAssignment(String),
    /// A cancellation of a partition reassignment where none is in progress.
    /// Kafka: `NO_REASSIGNMENT_IN_PROGRESS`.
    #[error("{0}")]
    NoReassignmentInProgress(String),
    /// A request whose fields contradict each other. Kafka: `INVALID_REQUEST`.
    #[error("{0}")]
    InvalidRequest(String),
    /// A config change the controller cannot take (e.g. for a resource name that is not a
    /// broker id). Config values themselves are opaque here; the caller validates them.
    /// Kafka: `INVALID_CONFIG`.
    #[error("{0}")]
    InvalidConfig(String),
    /// One operation would write more records than one batch may hold
    /// (see [`crate::controller::MAX_RECORDS_PER_OPERATION`]). Kafka refuses such requests
    /// with `POLICY_VIOLATION` ("Unable to perform excessively large batch operation.").
    #[error("{0}")]
    PolicyViolation(String),
    /// A broker registers with a cluster id other than the cluster's.
    /// Kafka: `INCONSISTENT_CLUSTER_ID`.
    #[error("the broker's cluster id {got} is not this cluster's ({expected})")]
    InconsistentClusterId {
        /// The cluster's id.
        expected: String,
        /// The id in the request.
        got: String,
    },
    /// A broker registers with a new incarnation while the registered one is unfenced and
    /// its session has not expired: two processes with the same `node.id`.
    /// Kafka: `DUPLICATE_BROKER_REGISTRATION`.
    #[error("Another broker is registered with id {broker_id} (incarnation {registered}) and its session has not expired")]
    DuplicateBrokerRegistration {
        /// The broker id.
        broker_id: i32,
        /// The incarnation registered in the image.
        registered: Uuid,
    },
    /// A broker request names a broker id with no registration. Kafka: `BROKER_ID_NOT_REGISTERED`.
    #[error("broker {0} is not registered")]
    BrokerIdNotRegistered(i32),
    /// A broker request carries a broker epoch other than its current registration's.
    /// Kafka: `STALE_BROKER_EPOCH`.
    #[error("broker {broker_id} sent epoch {got}, but its current epoch is {current}")]
    StaleBrokerEpoch {
        /// The broker.
        broker_id: i32,
        /// The epoch in the request.
        got: i64,
        /// The epoch of the broker's registration in the image.
        current: i64,
    },
    /// An AlterPartition whose partition epoch is not the current one (the compare-and-set
    /// failed). Kafka: `INVALID_UPDATE_VERSION`.
    #[error("partition epoch {got} is not the current epoch {current}")]
    InvalidUpdateVersion {
        /// The epoch in the request.
        got: i32,
        /// The epoch in the image.
        current: i32,
    },
    /// An AlterPartition at a leader epoch older than the partition's: the sender was
    /// deposed. Kafka: `FENCED_LEADER_EPOCH`. (A sender that is not the leader at the
    /// current epoch gets `InvalidRequest`, as in Kafka.)
    #[error("broker {broker_id} is not the leader at leader epoch {leader_epoch}")]
    NotLeader {
        /// The sender.
        broker_id: i32,
        /// The leader epoch in the request.
        leader_epoch: i32,
    },
    /// A proposed ISR names a broker that is not registered, fenced, shutting down, or
    /// registered at another epoch than the one the leader saw. Kafka: `INELIGIBLE_REPLICA`.
    #[error("{0}")]
    IneligibleReplica(String),
    /// An AlterPartition names a leader or partition epoch newer than the controller's
    /// image: this controller is behind (it is probably not the active one any more).
    /// Kafka: `NOT_CONTROLLER`, so the sender looks for the controller again.
    #[error("{0}")]
    ControllerBehind(String),
    /// The producer id space is used up. Kafka answers `UNKNOWN_SERVER_ERROR`
    /// ("Exhausted all producerIds ...").
    #[error("exhausted all producer ids")]
    ProducerIdsExhausted,
    /// A committed record does not fit the image (see the module docs); nothing of its
    /// batch was applied. Internal: `UNKNOWN_SERVER_ERROR` if it ever reaches a client.
    #[error("record {index} of the batch at offset {offset} is inconsistent: {reason}")]
    InconsistentRecord {
        /// Offset of the batch.
        offset: i64,
        /// Index of the record inside the batch.
        index: usize,
        /// What did not fit.
        reason: String,
    },
    /// A batch or skip at an offset not above the last applied one.
    /// Internal: `UNKNOWN_SERVER_ERROR`.
    #[error("offset {offset} is not above the last applied offset {last}")]
    OffsetNotIncreasing {
        /// The offset given.
        offset: i64,
        /// The last applied offset.
        last: i64,
    },
    /// The log sets a `metadata.version` level above the highest this build reads
    /// ([`crate::records::LATEST_METADATA_VERSION`]), in a batch or a snapshot: this
    /// node's code is too old for the log. Not a rejection: the node must stop applying.
    /// Internal: `UNKNOWN_SERVER_ERROR`.
    #[error("the log is at metadata.version {level}, this build reads up to {supported}: upgrade this node")]
    UnsupportedMetadataVersion {
        /// The level in the log.
        level: u16,
        /// The highest level this build reads.
        supported: u16,
    },
    /// A request needs records above the cluster's `metadata.version` (group configs on
    /// a cluster started at level 1), or the controller was about to write one (a bug:
    /// decisions must only produce what the level allows). `UNSUPPORTED_VERSION`.
    #[error("a record needs metadata.version {needed}, the cluster is at {level}")]
    MetadataVersionTooLow {
        /// The level the record needs.
        needed: u16,
        /// The cluster's level.
        level: u16,
    },
    /// Bytes start with a format version this build does not read.
    /// Internal: `UNKNOWN_SERVER_ERROR`.
    #[error("unsupported {what} version {version:?} (None: empty input)")]
    UnsupportedVersion {
        /// "record batch" or "snapshot".
        what: &'static str,
        /// The version byte found (or none for empty input).
        version: Option<u8>,
    },
    /// Bytes with a known version that do not decode, or a snapshot that decodes but breaks
    /// the image's invariants. Internal: `UNKNOWN_SERVER_ERROR`.
    #[error("malformed {what}: {reason}")]
    Decode {
        /// "record batch" or "snapshot".
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// Encoding failed (serde_json refuses nothing this crate builds, so this is a bug).
    /// Internal: `UNKNOWN_SERVER_ERROR`.
    #[error("cannot encode {what}")]
    Encode {
        /// "record batch" or "snapshot".
        what: &'static str,
        /// The encoder's error.
        #[source]
        source: serde_json::Error,
    },
}

impl MetadataError {
    /// The name of the Kafka error (as in Kafka's `Errors` enum) a client should get for
    /// this error. The broker maps the name to its numeric code.
    pub fn kafka_error_name(&self) -> &'static str {
        match self {
            MetadataError::InvalidTopic(_) => "INVALID_TOPIC_EXCEPTION",
            MetadataError::TopicAlreadyExists(_) => "TOPIC_ALREADY_EXISTS",
            MetadataError::UnknownTopicOrPartition(_) => "UNKNOWN_TOPIC_OR_PARTITION",
            MetadataError::UnknownTopicId(_) => "UNKNOWN_TOPIC_ID",
            MetadataError::InvalidPartitions(_) => "INVALID_PARTITIONS",
            MetadataError::InvalidReplicationFactor(_) => "INVALID_REPLICATION_FACTOR",
            MetadataError::InvalidReplicaAssignment(_) => "INVALID_REPLICA_ASSIGNMENT",
            MetadataError::NoReassignmentInProgress(_) => "NO_REASSIGNMENT_IN_PROGRESS",
            MetadataError::InvalidRequest(_) => "INVALID_REQUEST",
            MetadataError::InvalidConfig(_) => "INVALID_CONFIG",
            MetadataError::PolicyViolation(_) => "POLICY_VIOLATION",
            MetadataError::InconsistentClusterId { .. } => "INCONSISTENT_CLUSTER_ID",
            MetadataError::DuplicateBrokerRegistration { .. } => "DUPLICATE_BROKER_REGISTRATION",
            MetadataError::BrokerIdNotRegistered(_) => "BROKER_ID_NOT_REGISTERED",
            MetadataError::StaleBrokerEpoch { .. } => "STALE_BROKER_EPOCH",
            MetadataError::InvalidUpdateVersion { .. } => "INVALID_UPDATE_VERSION",
            // Kafka refuses what the cluster's feature levels do not allow yet likewise.
            MetadataError::MetadataVersionTooLow { .. } => "UNSUPPORTED_VERSION",
            MetadataError::NotLeader { .. } => "FENCED_LEADER_EPOCH",
            MetadataError::IneligibleReplica(_) => "INELIGIBLE_REPLICA",
            MetadataError::ControllerBehind(_) => "NOT_CONTROLLER",
            MetadataError::ProducerIdsExhausted
            | MetadataError::InconsistentRecord { .. }
            | MetadataError::OffsetNotIncreasing { .. }
            | MetadataError::UnsupportedMetadataVersion { .. }
            | MetadataError::UnsupportedVersion { .. }
            | MetadataError::Decode { .. }
            | MetadataError::Encode { .. } => "UNKNOWN_SERVER_ERROR",
        }
    }
}

/// Shorthand used throughout the crate.
pub type Result<T, E = MetadataError> = std::result::Result<T, E>;
