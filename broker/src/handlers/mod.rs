//! Request handlers, one module per API family.
//!
//! Each is a plain function of the broker state and a decoded request that returns the
//! response (or, for produce and fetch, an outcome whose waits the connection awaits).
//! No sockets here: tests call the handlers directly. The server decides which handlers
//! run on blocking threads (those that write files).
//!
//! Later API families (consumer groups) slot in as further modules.

pub mod admin;
pub mod api_versions;
pub mod fetch;
pub mod init_producer_id;
pub mod metadata;
pub mod offset_for_leader_epoch;
pub mod offsets;
pub mod produce;
pub mod topic_partitions;

#[cfg(test)]
mod tests;
