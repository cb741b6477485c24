//! sluice-controller: the running metadata layer of a Sluice node. It joins the metadata
//! quorum (`sluice-quorum`, Raft on openraft) and the metadata state machine
//! (`sluice-metadata`, records, image and controller decisions) into the service a broker
//! process embeds, on KRaft's shape.
//!
//! ```text
//!   broker request handlers                         other controllers (Raft RPCs)
//!     │ image() / subscribe() / wait_for_offset()        │ serve(listener)
//!     │ create_topics(), broker_heartbeat(), ...         ▼
//!     ▼                                          ┌──────────────┐
//!  MetadataService ── mpsc ──> controller task ──┤    Quorum    │ replicated, durable log
//!     ▲                 (active on the leader:   │  (openraft)  │
//!     │                  Controller decisions,   └──────┬───────┘
//!     │                  propose, wait applied)         │ committed entries, in order
//!     │                                                 ▼
//!     └──── image copies (lazy) + watch<offset> ◄── MetadataStateMachine (Applier)
//! ```
//!
//! - [`state_machine`]: [`MetadataStateMachine`], the quorum's applier: each committed
//!   entry is one record batch applied to the [`MetadataImage`](sluice_metadata::MetadataImage)
//!   (all or nothing; a rejected batch is skipped identically everywhere; an entry this build
//!   cannot read stops applying). Readers ([`ImageReader`]) get the image as an `Arc` copy,
//!   made lazily once per change by the first reader, and never see a half-applied batch; a
//!   watch of the offset wakes them.
//! - [`service`]: [`MetadataService`], one node's handle: starts the quorum node and the
//!   controller task, serves the image, describes the quorum, and offers one async method
//!   per controller request, which works on every node (run here on the active controller,
//!   forwarded to it from anywhere else).
//! - `forward`: that forwarding (Kafka's KIP-590): where a request goes, when it is sent
//!   again (across an election), and the handler that runs requests other nodes forwarded.
//! - [`observer`]: [`MetadataObserver`], a broker-only node's metadata layer: it follows
//!   the metadata by fetching it from the voters (`FetchMetadata`, a long poll answered from
//!   each voter's window of recent batches or with a snapshot of its image), without being
//!   a quorum member, and sends controller requests to the active controller.
//! - [`node`]: [`MetadataNode`], either of the two, the type a broker embeds.
//! - [`rpc`]: the versioned CBOR encoding of forwarded requests and their answers (the body
//!   of the quorum's ControllerRequest frame).
//! - `active`: the controller task. On the quorum leader it is Kafka's active controller:
//!   one task, one decision at a time, each committed and applied before the next; broker
//!   liveness reset (a full session for every broker) whenever this node becomes leader; the
//!   cluster id written once, when the log has none; brokers whose session expired are
//!   fenced on a timer, preferred leaders elected on another.
//! - [`config`]: [`MetadataServiceConfig`] and its defaults; [`new_cluster_id`].
//! - [`error`]: [`ControllerError`], with the Kafka error each case maps to.
//!
//! Every call is bounded by the request timeout; nothing here panics on what comes from the
//! network or the disk. The operator's view (settings, failover, on-disk files) is in
//! docs/cluster.md, "The controller".

mod active;
pub mod config;
pub mod error;
mod forward;
pub mod node;
pub mod observer;
pub mod rpc;
pub mod service;
pub mod state_machine;

pub use config::{new_cluster_id, MetadataServiceConfig, MIN_PAYLOAD_BYTES};
pub use error::{ControllerError, Result};
pub use node::MetadataNode;
pub use observer::{MetadataObserver, ObserverConfig};
pub use service::{Committed, HeartbeatResult, ItemResults, MetadataService};
pub use state_machine::{ImageReader, MetadataStateMachine};
