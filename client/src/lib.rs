//! `sluice-client`: an async Rust client for the Kafka protocol, and the `sluice` CLI.
//!
//! - [`connection`]: one TCP connection to one broker: framing, pipelined requests
//!   matched by correlation id, ApiVersions negotiation, timeouts.
//! - [`client`]: [`Client`], shared by producers, consumers and admins: bootstrap,
//!   a connection per broker, the metadata cache and the retry policy.
//! - [`metadata`]: the cached cluster view (brokers, topics, partition leaders).
//! - [`producer`]: [`Producer`]: per-partition batching (`linger`, `batch_size`),
//!   compression, acks, delivery futures, ordered retries, Kafka's partitioner, and
//!   (on by default) the idempotent producer: producer id, sequence numbers, and what
//!   the broker's sequence errors mean (`producer::idempotence`).
//! - [`consumer`]: [`Consumer`]: assigned partitions or group subscriptions (range and
//!   cooperative-sticky assignors), pipelined fetches, commits, seeks, pause/resume.
//! - [`admin`]: [`Admin`]: topics, partitions, configs, groups, offsets, brokers and the
//!   metadata quorum (`admin::cluster`).
//! - [`offsets`]: ListOffsets, OffsetFetch and OffsetCommit, shared by the consumer and
//!   the admin API.
//! - [`security`] and [`sasl`]: `security.protocol` (TLS with rustls, SASL PLAIN and
//!   SCRAM-SHA-256/512 logins).
//! - [`error`]: [`Error`], the one error type; broker answers never panic.
//!
//! Record batches are built and decoded by `sluice_storage::batch` (the same code the
//! broker stores them with); requests and responses are encoded by `kafka-protocol`.

pub mod admin;
mod buffer_pool;
pub mod client;
pub mod connection;
pub mod consumer;
pub mod error;
pub mod metadata;
pub mod offsets;
pub mod producer;
pub mod properties;
pub mod sasl;
pub mod security;
#[cfg(test)]
mod test_support;
mod types;

pub use admin::Admin;
pub use client::{Client, ClientConfig};
pub use consumer::{Consumer, ConsumerConfig, ConsumerRecord};
pub use error::{Error, Result};
pub use producer::{
    Acks, DeliveryFuture, Producer, ProducerConfig, ProducerRecord, RecordMetadata,
};
pub use security::{SaslMechanism, SecurityConfig, SecurityProtocol};
pub use sluice_storage::batch::Compression;
pub use types::{Header, OffsetSpec, TopicPartition};
