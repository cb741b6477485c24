//! [`QuorumError`], the one error type of this crate.

use std::io;
use std::path::PathBuf;

/// What a quorum operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum QuorumError {
    /// This node is not the leader; `leader` is the one it knows of, if any. The caller may
    /// retry there (the quorum itself never forwards).
    #[error("not the metadata quorum leader (leader: {leader:?})")]
    NotLeader { leader: Option<u64> },

    /// A file of the quorum's directory could not be read or written.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// A file holds bytes that fail their checksum or cannot be decoded, in a place where
    /// cutting them would lose acknowledged data (the vote, the purge point, a snapshot).
    #[error("corrupt {path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },

    /// A proposal larger than `max_payload_bytes`.
    #[error("payload of {size} bytes exceeds the limit of {max}")]
    PayloadTooLarge { size: usize, max: usize },

    /// The configuration cannot work (e.g. an empty voter set, a zero timeout).
    #[error("invalid quorum config: {0}")]
    Config(String),

    /// The wait ran out before the condition held.
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),

    /// The quorum on this node has stopped (shut down, or stopped by a storage error); it
    /// answers nothing more.
    #[error("quorum stopped: {0}")]
    Stopped(String),

    /// The quorum on this node stopped itself because its storage failed (a log, vote or
    /// snapshot write failed); it answers nothing more. The process should exit (see
    /// [`Quorum::fatal`](crate::Quorum::fatal)): the files on disk are intact up to the
    /// failure, and a restart recovers from them.
    #[error("quorum failed: {0}")]
    Fatal(String),

    /// This node's quorum directory is empty, yet peers of the quorum have state: the node
    /// lost its disk. It refuses to form a new cluster (it may have voted in the current term,
    /// and its new membership could differ); the operator must wipe its directory and re-add
    /// it, see docs/cluster.md, "Recovering a voter that lost its disk".
    #[error("refusing to start: {0}")]
    StateLost(String),

    /// The voters in this node's metadata log differ from the configured ones
    /// (`controller.quorum.voters` changed, or the directory belongs to another cluster).
    /// Starting anyway would hang (a voter the log does not know never gets entries) or,
    /// worse, let two quorums form; voters change only through the quorum itself.
    #[error("refusing to start: {0}")]
    VotersChanged(String),

    /// A ControllerRequest could not reach node `node`: no address is known for it, the
    /// connect failed, or the connection failed before the answer (then the peer may have
    /// executed the request).
    #[error("node {node} unreachable: {reason}")]
    Unreachable { node: u64, reason: String },

    /// Node `node` answered a ControllerRequest with an error (it has no handler, or its
    /// handler could not read the request).
    #[error("node {node} answered: {message}")]
    Remote { node: u64, message: String },

    /// openraft refused the operation for a reason other than leadership (e.g. a membership
    /// change already in progress).
    #[error("raft: {0}")]
    Raft(String),
}

impl QuorumError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        QuorumError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// A `Result` with a [`QuorumError`].
pub type Result<T, E = QuorumError> = std::result::Result<T, E>;
