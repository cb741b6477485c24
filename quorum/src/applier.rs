//! [`Applier`]: the state machine the quorum drives. The metadata crate implements it; this
//! crate never looks inside the bytes.

/// The state machine fed by the replicated log.
///
/// Contract:
/// - [`apply`](Applier::apply) is called once per committed entry carrying a payload, in log
///   order, with strictly increasing `index` (and the entry's term), on every node (leader, followers, learners). It
///   must be deterministic: the same entries in the same order give the same state and the
///   same response everywhere. Raft's own entries (a new leader's blank entry, membership
///   changes) are not passed in, so indexes may skip.
/// - [`snapshot`](Applier::snapshot) returns the whole state as bytes, including everything
///   applied so far. The quorum stores it with the last applied log id; after it, the log
///   before that id may be deleted.
/// - [`install_snapshot`](Applier::install_snapshot) replaces the whole state with one that a
///   `snapshot()` call produced (here or on another node), covering the log up to and
///   including `last_index`. It is called at start (from the snapshot on disk) and when a
///   lagging node receives the leader's snapshot. An `Err` stops the quorum on this node:
///   return it only for bytes that cannot be decoded.
/// - The applier is in memory: the quorum rebuilds it at start from the last snapshot plus
///   the committed log after it, so `apply` need not persist anything.
///
/// All calls run under one lock, never concurrently, and are expected to be quick (no I/O,
/// no blocking on the network).
pub trait Applier: Send + Sync + 'static {
    /// Applies the committed entry at log `index`, written by the leader of Raft `term`;
    /// returns the response for the proposer (returned by
    /// [`Quorum::propose`](crate::Quorum::propose) on the leader, dropped elsewhere). Terms
    /// never decrease along the log: they are the metadata's epochs (Kafka's leader epoch of
    /// `__cluster_metadata`).
    fn apply(&mut self, index: u64, term: u64, payload: &[u8]) -> Vec<u8>;

    /// The whole state, as bytes `install_snapshot` accepts.
    fn snapshot(&self) -> Vec<u8>;

    /// Replaces the state with a snapshot covering the log up to `last_index` inclusive.
    fn install_snapshot(&mut self, last_index: u64, bytes: &[u8]) -> Result<(), String>;
}
