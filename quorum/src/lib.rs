//! sluice-quorum: the metadata quorum of a Sluice cluster — a replicated, durable log of
//! opaque entries, driven by [openraft](https://docs.rs/openraft/0.9) (pinned at 0.9.25).
//!
//! Kafka's KRaft keeps cluster metadata in the `__cluster_metadata` log, replicated by the
//! controllers with Raft. This crate is that log for Sluice, without the records: it
//! replicates bytes, and an [`Applier`] written by the metadata crate turns committed entries
//! into state. Consensus is openraft's; this crate supplies its storage, its network, and a
//! small API ([`Quorum`]) so an openraft upgrade stays inside this crate: no openraft type
//! appears in [`Quorum`]'s methods.
//!
//! # Map
//! - [`quorum`](Quorum): start a node, form the cluster on first start, propose, watch
//!   leadership and progress, describe the quorum, add learners, serve peers, shut down.
//! - [`applier`](Applier): the state machine contract the metadata crate implements.
//! - [`log_store`]: the Raft log and vote on disk (openraft's `RaftLogStorage`): segment files
//!   with a CRC-32C per entry, fsync before an append is reported flushed, torn tails and gaps
//!   in the indexes cut at open.
//! - [`state_machine`]: openraft's `RaftStateMachine` over the applier; the snapshot file.
//! - `files`: small state files (vote, purge point, snapshot) written atomically with a
//!   checksum.
//! - [`wire`]: the controller RPC frame (Kafka-like length prefix, versioned header, CBOR
//!   body); `network` (outgoing: one connection per peer and RPC kind, backoff, timeouts) and `server`
//!   (incoming: bad bytes close only that connection; requests from node ids outside the
//!   quorum are dropped and snapshot chunks are checked before openraft sees them; idle
//!   connections time out and their number is capped).
//! - [`requests`]: application requests on the controller listener (kind 5,
//!   ControllerRequest): the [`RequestHandler`] an application installs, and the pooled
//!   client behind [`Quorum::request`] (its own connections, apart from Raft's). Any sender
//!   may send them: the port has no authentication yet.
//! - [`types`]: openraft's type configuration and [`types::Payload`].
//!
//! # Why a log format of its own, not sluice-storage's partition log
//! sluice-storage stores validated Kafka record batches, assigns offsets itself, makes
//! appends durable through a background group-commit flusher, and fences damaged ranges for
//! an operator. A Raft log needs other things: entries named by (term, leader, index) chosen
//! by the leader, truncation of a conflicting suffix at any index, purging below a snapshot,
//! the vote stored beside it, durability before each append's callback, and a torn tail cut
//! silently (it was never acknowledged). Wrapping each entry in a record batch and bending
//! the partition log's recovery to those rules would cost more code than the segment format
//! in [`log_store`] (a length, a CRC and a CBOR entry per record), and would tie
//! sluice-storage to Raft. The metadata log is small (snapshots bound it), so its entries are
//! also kept in memory for replication reads.
//!
//! # Encoding
//! Log entries, snapshot metadata and RPC bodies are CBOR (RFC 8949, via `ciborium`) of
//! openraft's serde types, with payloads and snapshot chunks as CBOR byte strings. CBOR is self-describing (it
//! carries openraft's error types, which need that) and compact for bytes; the RPC frame and
//! every state file carry a version number, so the encoding can change with a new version.
//!
//! # Forming the cluster
//! Every voter is started with the same voter set. On first start, the lowest voter id finds
//! its storage pristine (no vote, no log) and calls openraft's `initialize` with the full
//! set; the others wait and learn the membership from the first leader. A restart finds a
//! vote or log and never initializes; the voter set in the config is then ignored (the
//! membership lives in the log). Should the lowest voter come back with an empty directory
//! (a lost disk) it first asks its peers (a `Probe` RPC): if any has a term or a log, the
//! cluster exists and it refuses to start with [`QuorumError::StateLost`] rather than form a
//! second cluster or vote twice in a term (docs/cluster.md describes the recovery).
//!
//! # Timing
//! openraft 0.9 starts an election after its leader lease (`election_timeout_max`) plus a
//! random election timeout; with the defaults (heartbeat 150 ms, election 400–600 ms) a new
//! leader is in place 1.0–1.5 s after the old one stops (measured ~1.2 s on loopback by the
//! `cluster` test).
//!
//! # Logging
//! Quiet by default: `info` only when this node becomes leader or initializes the cluster;
//! per-connection and per-RPC details at `debug`/`trace`. openraft itself logs an `ERROR`
//! line for each failed RPC to an unreachable peer; a broker may filter `openraft=off` if
//! that is too loud while a node is down (hiding openraft's other diagnostics too).

pub mod applier;
pub mod error;
mod files;
pub mod log_store;
mod network;
mod quorum;
pub mod requests;
mod server;
pub mod state_machine;
pub mod types;
pub mod wire;

pub use applier::Applier;
pub use error::{QuorumError, Result};
pub use quorum::{
    Proposed, Quorum, QuorumConfig, QuorumDescription, QuorumStatus, ReplicaDescription,
};
pub use requests::{BoxFuture, ControllerClient, RequestHandler};
pub use types::NodeId;
