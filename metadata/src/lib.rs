//! Sluice's cluster metadata: what the controllers replicate with Raft and every broker
//! applies. Pure logic: no sockets, no threads, no clocks, no Raft; the quorum crate
//! carries the bytes this crate produces and calls [`MetadataImage::apply`] with what was
//! committed.
//!
//! The shape is Kafka's KRaft mode:
//!
//! ```text
//!  request ──> Controller (active controller only)   ──> Vec<MetadataRecord>
//!                 decisions over the image + now_ms        │ encode_batch
//!                                                           ▼
//!                                               Raft log entry (one batch)
//!                                                           │ committed, decode_batch
//!                                                           ▼
//!  every node: MetadataImage::apply(position, &records)  (atomic per batch)
//!                 │ queries: leaders, replicas, ISR, epochs, live brokers, configs
//!                 ▼
//!  broker: Metadata answers, local logs to create/delete, producer-id blocks
//! ```
//!
//! Modules, one job each:
//! - [`records`]: the records (`RegisterBrokerRecord`, `TopicRecord`, `PartitionRecord`,
//!   `PartitionChangeRecord`, ... as Kafka names them) and the versioned batch encoding.
//! - [`image`]: [`MetadataImage`], the state the records build, its snapshot encoding and
//!   the queries brokers need. Deterministic: equal logs give equal images.
//! - [`placement`]: where the replicas of new partitions go (balanced leaders, distinct
//!   brokers, spread over racks), seeded for reproducible tests.
//! - [`controller`]: the active controller's decisions (registration, heartbeats and
//!   fencing, controlled shutdown, topics, partitions, configs, producer-id blocks,
//!   AlterPartition), as functions that return records and never change the image.
//! - [`delta`]: what one broker must do locally (create, delete, lead, follow) when its
//!   image moves forward.
//! - [`error`]: [`MetadataError`], each variant naming the Kafka error a client sees.
//! - [`acl`]: Kafka's ACL model (bindings, filters, wire codes, validation), used by the
//!   broker's authorizer and the client's ACL commands.
//!
//! Why the image only changes through committed records: a controller that loses its
//! leadership between deciding and committing must leave no trace, and a node that
//! restarts must rebuild exactly the same state from the log (or a snapshot plus the log
//! after it). Liveness (heartbeat times) is the one piece of controller state outside the
//! log, as in Kafka: a new active controller starts every broker with a full session.
//!
//! The formats and settings an operator sees are described in docs/cluster.md ("The
//! metadata state machine").

pub mod acl;
pub mod controller;
pub mod delta;
pub mod error;
pub mod image;
pub mod placement;
pub mod records;

pub use controller::{Controller, ControllerConfig};
pub use delta::LocalChanges;
pub use error::{MetadataError, Result};
pub use image::{LogPosition, MetadataImage};
pub use records::{decode_batch, encode_batch, MetadataRecord};

#[cfg(test)]
mod testkit;
