//! sluice-quorum (doc written at the end)
pub mod applier;
pub mod error;
mod files;
pub mod log_store;
pub mod state_machine;
pub mod types;

pub use applier::Applier;
pub use error::{QuorumError, Result};
