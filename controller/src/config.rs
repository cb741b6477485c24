//! [`MetadataServiceConfig`]: how a node's metadata layer is set up, with defaults; and
//! [`new_cluster_id`], Kafka's cluster id format.

use std::time::Duration;

use sluice_metadata::ControllerConfig;
use sluice_quorum::QuorumConfig;

use crate::error::{ControllerError, Result};

/// The largest entry the quorum must accept: one controller operation may write 10,000
/// records (Kafka's limit, e.g. a topic of 9,999 partitions), about 1.6 MB as a record batch;
/// the quorum's default of 1 MiB would refuse it. 4 MiB leaves room for long names and
/// replica lists (the quorum's default frame limit, 16 MiB, still fits it).
pub const MIN_PAYLOAD_BYTES: usize = 4 << 20;

/// How [`MetadataService::start`](crate::MetadataService::start) sets up a node.
/// [`MetadataServiceConfig::new`] fills in the defaults documented on each field.
#[derive(Debug, Clone)]
pub struct MetadataServiceConfig {
    /// The quorum: node id, voters, directory, Raft timing (see `sluice_quorum`).
    /// [`MetadataServiceConfig::new`] raises its `max_payload_bytes` to at least
    /// [`MIN_PAYLOAD_BYTES`].
    pub quorum: QuorumConfig,
    /// The controller's decision settings (`broker.session.timeout.ms`, `num.partitions`,
    /// `default.replication.factor`, ...). Default: Kafka's defaults.
    pub controller: ControllerConfig,
    /// The cluster id written into the log when it has none yet (the very first start of a
    /// cluster): for example the id in an existing single-node data dir's `meta.properties`,
    /// so an upgrade keeps it. `None`: a new random id ([`new_cluster_id`]). Ignored once the
    /// log has a cluster id. Default `None`.
    pub cluster_id: Option<String>,
    /// The longest a request may take, from the call to the answer (queueing, deciding,
    /// committing, applying). Default 10 s.
    pub request_timeout: Duration,
    /// How often the active controller looks for brokers whose session expired. Default
    /// 250 ms (a silent broker is fenced within this much after its session timeout).
    pub liveness_check_interval: Duration,
    /// How often the active controller moves leadership back to preferred replicas (Kafka's
    /// `leader.imbalance.check.interval.seconds`, 300 s); `None` never does (Kafka's
    /// `auto.leader.rebalance.enable=false`). Default 300 s.
    pub preferred_leader_check_interval: Option<Duration>,
    /// Requests waiting for the controller task, at most. Default 1024.
    pub request_queue: usize,
    /// The seed of replica placement; `None`: random. Default `None`.
    pub placement_seed: Option<u64>,
    /// Recent metadata batches kept in memory for broker-only nodes that follow the
    /// metadata (`FetchMetadata`); one further behind gets a snapshot of the image. Default
    /// [`DEFAULT_WINDOW_ENTRIES`](crate::state_machine::DEFAULT_WINDOW_ENTRIES) (4096).
    pub fetch_window_entries: usize,
}

impl MetadataServiceConfig {
    /// A config with the defaults documented on each field.
    pub fn new(mut quorum: QuorumConfig) -> MetadataServiceConfig {
        quorum.max_payload_bytes = quorum.max_payload_bytes.max(MIN_PAYLOAD_BYTES);
        MetadataServiceConfig {
            quorum,
            controller: ControllerConfig::default(),
            cluster_id: None,
            request_timeout: Duration::from_secs(10),
            liveness_check_interval: Duration::from_millis(250),
            preferred_leader_check_interval: Some(Duration::from_secs(300)),
            request_queue: 1024,
            placement_seed: None,
            fetch_window_entries: crate::state_machine::DEFAULT_WINDOW_ENTRIES,
        }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(ControllerError::Config(m.into()));
        if self.request_timeout.is_zero() {
            return bad("request_timeout must be positive");
        }
        if self.liveness_check_interval.is_zero() {
            return bad("liveness_check_interval must be positive");
        }
        if self.preferred_leader_check_interval == Some(Duration::ZERO) {
            return bad("preferred_leader_check_interval must be positive");
        }
        if self.request_queue == 0 {
            return bad("request_queue must be positive");
        }
        if self.cluster_id.as_deref() == Some("") {
            return bad("cluster_id must not be empty");
        }
        if self.controller.session_timeout_ms == 0 {
            return bad("session timeout must be positive");
        }
        Ok(())
    }
}

/// A new random cluster id in Kafka's format: a random UUID as 22 characters of URL-safe
/// base64 without padding (what `kafka-storage random-uuid` prints).
pub fn new_cluster_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = uuid::Uuid::new_v4().into_bytes();
    let mut out = String::with_capacity(22);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_ids_are_22_url_safe_characters_and_differ() {
        let a = new_cluster_id();
        let b = new_cluster_id();
        assert_ne!(a, b);
        for id in [&a, &b] {
            assert_eq!(id.len(), 22, "{id}");
            assert!(id
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        }
    }
}
