//! sluice-quorum (doc written at the end)
pub mod applier;
pub mod error;
mod files;
pub mod log_store;
mod network;
mod quorum;
mod server;
pub mod state_machine;
pub mod types;
pub mod wire;

pub use applier::Applier;
pub use error::{QuorumError, Result};
pub use quorum::{Quorum, QuorumConfig, QuorumDescription, QuorumStatus, ReplicaDescription};
