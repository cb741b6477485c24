//! Errors of the broker library, and the one place storage errors become Kafka error codes.
//!
//! [`storage_error_code`] is an exhaustive `match` over [`StorageError`] and [`BatchError`]
//! without a wildcard arm: a new storage variant does not compile until someone decides
//! which Kafka error a client sees for it.

use std::path::PathBuf;

use kafka_protocol::error::ResponseError;
use sluice_storage::batch::Rejection;
use sluice_storage::{BatchError, StorageError};

use crate::config::ConfigError;

/// What can stop the broker from starting or shutting down cleanly.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Security(#[from] crate::security::SecurityError),
    /// The cluster layer (metadata quorum, controller) failed.
    #[error("cluster: {0}")]
    Cluster(String),
    #[error("data directory {path} is in use by another process (cannot lock {path}/.lock)")]
    DataDirLocked { path: PathBuf },
    #[error("{path}: {reason}")]
    BadMetadata { path: PathBuf, reason: String },
    /// The client quotas file could not be read or is damaged.
    #[error("client quotas: {0}")]
    Quotas(String),
    /// The group configs file could not be read or is damaged.
    #[error("group configs: {0}")]
    GroupConfigs(String),
    /// The dynamic broker configs file could not be read or is damaged.
    #[error("dynamic broker configs: {0}")]
    DynamicConfigs(#[from] crate::dynamic_config::DynamicConfigError),
    /// Loading the data directory ran out of file descriptors: every partition holds one.
    #[error(
        "{source}; the data directory needs one open file per partition: raise the open-file \
         limit (ulimit -n; soft {soft}, hard {hard})"
    )]
    OutOfFiles {
        #[source]
        source: Box<BrokerError>,
        soft: u64,
        hard: u64,
    },
}

/// Whether `e` is the process (EMFILE) or the system (ENFILE) running out of descriptors.
pub fn is_out_of_files(e: &StorageError) -> bool {
    matches!(e, StorageError::Io { source, .. } if is_out_of_files_io(source))
}

fn is_out_of_files_io(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}

impl BrokerError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        BrokerError::Io {
            context: context.into(),
            source,
        }
    }

    /// Says what to do when the error is the process running out of descriptors.
    pub fn explain_out_of_files(self) -> Self {
        let out_of_files = match &self {
            BrokerError::Io { source, .. } => is_out_of_files_io(source),
            BrokerError::Storage(e) => is_out_of_files(e),
            _ => false,
        };
        if !out_of_files {
            return self;
        }
        let (soft, hard) = crate::limits::open_file_limit().unwrap_or((0, 0));
        BrokerError::OutOfFiles {
            source: Box::new(self),
            soft,
            hard,
        }
    }
}

/// The Kafka error a client gets for a failed storage operation.
pub fn storage_error_code(error: &StorageError) -> ResponseError {
    match error {
        StorageError::Io { .. } => ResponseError::KafkaStorageError,
        StorageError::InvalidBatch(batch) => batch_error_code(batch),
        // Kafka answers a read of corrupt stored bytes with CORRUPT_MESSAGE too.
        StorageError::CorruptSegment { .. } => ResponseError::CorruptMessage,
        // A read inside a damaged range: the client learns that these offsets cannot be
        // served (and may seek past them); other offsets still can.
        StorageError::Damaged { .. } => ResponseError::CorruptMessage,
        // The partition's files could not be loaded at start: this partition is offline,
        // as Kafka reports a replica on a failed log dir.
        StorageError::Unavailable { .. } => ResponseError::KafkaStorageError,
        StorageError::MessageTooLarge { .. } => ResponseError::MessageTooLarge,
        StorageError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        StorageError::InvalidArgument(_) => ResponseError::InvalidRequest,
        StorageError::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber,
        StorageError::InvalidProducerEpoch { .. } => ResponseError::InvalidProducerEpoch,
        StorageError::Offline { .. } => ResponseError::KafkaStorageError,
        // A panic elsewhere left the log's state suspect: treat it as a failed disk.
        StorageError::Poisoned => ResponseError::KafkaStorageError,
        // Records an acks=all produce waited for were truncated away (as after a leader
        // change in Kafka): retriable, the producer sends them again.
        StorageError::Truncated { .. } => ResponseError::NotLeaderOrFollower,
        // The log was closed under the request: the partition is going away (topic
        // deleted, broker stopping). A retriable "not here" error makes the client
        // refresh its metadata and retry.
        StorageError::Closed => ResponseError::NotLeaderOrFollower,
        // A deposed leader's append behind its successor's records (Kafka's
        // FencedLeaderEpochException).
        StorageError::StaleLeaderEpoch { .. } => ResponseError::FencedLeaderEpoch,
        // A follower's append that does not continue its log: internal to replication
        // (Kafka's UnexpectedAppendOffsetException), never a client's doing.
        StorageError::OffsetMismatch { .. } => ResponseError::UnknownServerError,
    }
}

/// The Kafka error for a batch the broker refused.
pub fn batch_error_code(error: &BatchError) -> ResponseError {
    match error {
        // The batch's framing or checksum is broken: Kafka's CorruptRecordException.
        BatchError::Truncated { .. }
        | BatchError::InvalidLength { .. }
        | BatchError::CrcMismatch { .. } => ResponseError::CorruptMessage,
        // The bytes arrived intact but the records in them are not valid (Kafka's
        // LogValidator throws InvalidRecordException): INVALID_RECORD, with the reason
        // in the error message.
        BatchError::CountMismatch { .. }
        | BatchError::InvalidRecord { .. }
        | BatchError::UnknownCompression { .. }
        | BatchError::Decompression { .. } => ResponseError::InvalidRecord,
        // Records refused one by one (KIP-467): INVALID_TIMESTAMP when any is for its
        // timestamp (KIP-937 bounds), else INVALID_RECORD, as Kafka's LogValidator.
        BatchError::RejectedRecords { named, .. } => {
            if named
                .iter()
                .any(|r| matches!(r.reason, Rejection::TimestampOutOfRange { .. }))
            {
                ResponseError::InvalidTimestamp
            } else {
                ResponseError::InvalidRecord
            }
        }
        // Kafka 4.x: "Produce requests with version N are only allowed to contain record
        // batches with magic version 2" is an InvalidRecordException -> INVALID_RECORD.
        BatchError::UnsupportedMagic { .. } => ResponseError::InvalidRecord,
        // Only the batch builder compresses; the broker never does.
        BatchError::Compression { .. } => ResponseError::UnknownServerError,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_storage::batch::RecordRejection;

    #[test]
    fn produce_errors_map_as_kafka() {
        let crc = StorageError::InvalidBatch(BatchError::CrcMismatch {
            stored: 1,
            computed: 2,
        });
        assert_eq!(storage_error_code(&crc), ResponseError::CorruptMessage);
        let big = StorageError::MessageTooLarge { size: 10, max: 1 };
        assert_eq!(storage_error_code(&big), ResponseError::MessageTooLarge);
        let offline = StorageError::Offline {
            path: PathBuf::from("x"),
        };
        assert_eq!(
            storage_error_code(&offline),
            ResponseError::KafkaStorageError
        );
        let magic = StorageError::InvalidBatch(BatchError::UnsupportedMagic { magic: 1 });
        assert_eq!(storage_error_code(&magic), ResponseError::InvalidRecord);
        let record = StorageError::InvalidBatch(BatchError::InvalidRecord { reason: "x".into() });
        assert_eq!(storage_error_code(&record), ResponseError::InvalidRecord);
        let count = StorageError::InvalidBatch(BatchError::CountMismatch { reason: "x".into() });
        assert_eq!(storage_error_code(&count), ResponseError::InvalidRecord);
        let rejected = |reasons: &[Rejection]| {
            StorageError::InvalidBatch(BatchError::RejectedRecords {
                named: reasons
                    .iter()
                    .enumerate()
                    .map(|(batch_index, &reason)| RecordRejection {
                        batch_index,
                        reason,
                    })
                    .collect(),
                total: reasons.len(),
            })
        };
        let late = Rejection::TimestampOutOfRange {
            timestamp: 5,
            oldest: 0,
            newest: 1,
        };
        assert_eq!(
            storage_error_code(&rejected(&[Rejection::MissingKey, late])),
            ResponseError::InvalidTimestamp
        );
        assert_eq!(
            storage_error_code(&rejected(&[Rejection::MissingKey])),
            ResponseError::InvalidRecord
        );
    }
}
