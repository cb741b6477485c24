//! `sluice-storage`: the partitioned log under Sluice, plain synchronous Rust over files.
//!
//! - [`batch`]: Kafka RecordBatch v2 byte for byte: header view, CRC-32C validation,
//!   in-place patches, record decoding for every codec, a batch builder.
//! - [`log`]: [`PartitionLog`], one `<topic>-<partition>/` directory: append, read by
//!   offset or time, roll, truncate, retention, recovery; for replication the follower
//!   append, the high watermark and [`truncation_offset`] (KIP-101/KIP-279).
//! - `epoch_cache`: the leader-epoch cache and its `leader-epoch-checkpoint` file
//!   (Kafka's LeaderEpochFileCache), behind [`PartitionLog::end_offset_for_epoch`].
//! - `damage`: [`DamagedRange`], offsets recovery keeps but cannot serve, and how reads
//!   find the next good batch after them.
//! - [`cleaner`]: log compaction (Kafka's log cleaner): [`PartitionLog::clean`] keeps each
//!   key's latest record in the sealed segments and swaps them in crash-safely.
//! - [`check`]: read-only verification of a partition directory (`sluice-broker check`).
//! - `segment`, `offset_index`, `time_index`, `index_file`: one segment's three files.
//! - [`flusher`]: the per-data-directory thread that fsyncs logs (group commit).
//! - [`stats`]: sync latency, group-commit sizes and rolls, as lock-free counters and
//!   fixed-bucket histograms for the broker's metrics.
//! - [`producer_state`]: idempotent-producer sequence tracking and its snapshots.
//! - [`watermark`]: the durable-offset watermark appenders wait on.
//! - [`faults`]: the fault-injection seam every fallible file operation goes through
//!   (tests fail the nth write, sync, set_len or rename; one atomic load otherwise).
//! - [`fsutil`]: atomic metadata writes, directory fsync, the clean-shutdown marker.
//! - [`config`]: per-log settings named after Kafka's topic configs.
//! - [`error`]: [`BatchError`] (bad batch bytes) and [`StorageError`] (every log operation).
//!
//! No tokio and no networking here: the broker drives this crate from its own threads,
//! and waits for durability through [`DurableWait`], a runtime-agnostic future.

pub mod batch;
pub mod check;
pub mod cleaner;
pub mod config;
mod damage;
mod epoch_cache;
pub mod error;
pub mod faults;
pub mod flusher;
pub mod fsutil;
mod index_file;
pub mod log;
mod offset_index;
pub mod producer_state;
mod segment;
pub mod stats;

mod time_index;
pub mod watermark;

pub use cleaner::{CleanOptions, CleanOutcome, Cleanable};
pub use config::{FlushPolicy, LogConfig};
pub use damage::DamagedRange;
pub use epoch_cache::EpochEndOffset;
pub use error::{BatchError, Result, StorageError};
pub use flusher::Flusher;
pub use log::{
    now_ms, truncation_offset, AppendInfo, OpenReport, PartitionLog, ReadBound, ReadResult,
    RetentionOutcome, TimestampOffset,
};
pub use watermark::DurableWait;
