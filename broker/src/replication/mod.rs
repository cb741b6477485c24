//! Partition replication (Kafka's `ReplicaManager` and `Partition`, issue 17): every
//! partition has `replicas` (from the metadata image); one leads, the others follow by
//! fetching from it with the Kafka Fetch API.
//!
//! - [`leader`]: the leader's side: the followers' progress (from their fetches), the
//!   high watermark, the in-sync replica set and its changes through the controller
//!   (AlterPartition), acks=all produce waits, and the leader's answers to followers
//!   (replica fetches, OffsetForLeaderEpoch).
//! - [`fetcher`]: the follower's side: one fetcher per leader broker, multiplexing all the
//!   partitions this broker follows from it; appends the leader's batches byte for byte,
//!   follows the leader's high watermark and log start, and truncates where its log
//!   diverged from the leader's (KIP-101, KIP-279, KIP-320).
//!
//! Both follow the metadata image: who leads, at which leader epoch, with which ISR.

pub mod fetcher;
pub mod leader;
