//! What the broker counts for monitoring, and its export in Prometheus's format.
//!
//! - `requests`: per-API request counts, stage latencies and error codes (process-wide).
//! - `errors`: which error codes each response type carries.
//! - `groups`: consumer-group lag and the estimated delay (lag over consume rate).
//! - `process`: resident memory and open file descriptors, from `/proc/self`.
//! - `export`: the scrape: reads everything below and encodes it with
//!   prometheus-client's text encoder (no hand-written exposition format).
//!
//! Hot paths only bump atomics that live next to what they count: a partition's
//! [`PartitionTraffic`], a listener's [`ListenerStats`], the flusher's
//! `sluice_storage::stats::StorageStats`, [`BrokerMetrics`] here. Nothing is looked up
//! by name or label on a request; labels are attached at scrape time, when the topic
//! registry, the listeners and the group coordinator are walked. A deleted topic's
//! series therefore disappear with it.

pub mod errors;
pub mod export;
pub mod groups;
pub mod process;
pub mod requests;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use sluice_storage::stats::{Histogram, LATENCY_BOUNDS_MICROS};

/// Traffic of one partition on this broker, counted where it happens (produce appends,
/// fetch reads by consumers; follower fetches are replication, counted apart).
#[derive(Debug, Default)]
pub struct PartitionTraffic {
    pub bytes_in: AtomicU64,
    pub records_in: AtomicU64,
    pub batches_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub records_out: AtomicU64,
    pub replication_bytes_out: AtomicU64,
}

impl PartitionTraffic {
    /// Appended batches of `records` records and `bytes` bytes in all.
    pub fn appended(&self, bytes: usize, records: u64, batches: usize) {
        self.bytes_in.fetch_add(bytes as u64, Ordering::Relaxed);
        self.records_in.fetch_add(records, Ordering::Relaxed);
        self.batches_in.fetch_add(batches as u64, Ordering::Relaxed);
    }

    /// Adds `other`'s counts to these (a partition leaving its topic).
    pub fn absorb(&self, other: &PartitionTraffic) {
        for (mine, theirs) in [
            (&self.bytes_in, &other.bytes_in),
            (&self.records_in, &other.records_in),
            (&self.batches_in, &other.batches_in),
            (&self.bytes_out, &other.bytes_out),
            (&self.records_out, &other.records_out),
            (&self.replication_bytes_out, &other.replication_bytes_out),
        ] {
            mine.fetch_add(theirs.load(Ordering::Relaxed), Ordering::Relaxed);
        }
    }

    /// Record bytes handed to a consumer (`records`: the offsets they span).
    pub fn read(&self, bytes: usize, records: u64) {
        self.bytes_out.fetch_add(bytes as u64, Ordering::Relaxed);
        self.records_out.fetch_add(records, Ordering::Relaxed);
    }
}

/// Connections of one client listener.
#[derive(Debug, Default)]
pub struct ListenerStats {
    /// Connections accepted from the socket (served or not).
    pub accepted: AtomicU64,
    /// Closed without being served: refused by `max.connections.per.ip`, or accepted
    /// while the broker was full and shutting down (or the client gave up waiting).
    pub rejected: AtomicU64,
    /// Closed to make room at `max.connections` (the longest idle).
    pub evicted: AtomicU64,
    /// Served connections that have ended, however they ended.
    pub closed: AtomicU64,
    /// Failed TLS handshakes and failed SASL logins.
    pub authentication_failures: AtomicU64,
}

impl ListenerStats {
    /// Connections being served now.
    /// (Ended ones are read first: read the other way round, a connection accepted and
    /// closed in between would make the count dip.)
    pub fn open(&self) -> u64 {
        let closed = self.closed.load(Ordering::Acquire);
        let rejected = self.rejected.load(Ordering::Acquire);
        let accepted = self.accepted.load(Ordering::Acquire);
        accepted.saturating_sub(rejected).saturating_sub(closed)
    }
}

/// How a fetch long poll ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitEnd {
    /// Enough bytes arrived (or a partition changed) before `max_wait_ms`.
    Satisfied,
    /// `max_wait_ms` passed.
    Expired,
    /// Cut short by the broker's shutdown.
    Shutdown,
}

/// The broker's own counters that belong to no partition or listener.
#[derive(Debug)]
pub struct BrokerMetrics {
    pub started: Instant,
    /// Fetch long polls (consumers' fetches that waited for data), how long they waited.
    pub fetch_wait: Histogram,
    pub fetch_waits_satisfied: AtomicU64,
    pub fetch_waits_expired: AtomicU64,
    pub fetch_waits_shutdown: AtomicU64,
    /// Segments and bytes deleted by retention (`retention.ms`, `retention.bytes`).
    pub retention_segments_deleted: AtomicU64,
    pub retention_bytes_deleted: AtomicU64,
    /// Consume rates of the groups this broker coordinates (see `groups`).
    pub consume_rates: groups::ConsumeRates,
}

impl Default for BrokerMetrics {
    fn default() -> Self {
        BrokerMetrics {
            started: Instant::now(),
            fetch_wait: Histogram::new(LATENCY_BOUNDS_MICROS),
            fetch_waits_satisfied: AtomicU64::new(0),
            fetch_waits_expired: AtomicU64::new(0),
            fetch_waits_shutdown: AtomicU64::new(0),
            retention_segments_deleted: AtomicU64::new(0),
            retention_bytes_deleted: AtomicU64::new(0),
            consume_rates: groups::ConsumeRates::default(),
        }
    }
}

impl BrokerMetrics {
    /// A long poll ended after `waited`.
    pub fn fetch_waited(&self, waited: std::time::Duration, end: WaitEnd) {
        self.fetch_wait.record_duration(waited);
        match end {
            WaitEnd::Satisfied => &self.fetch_waits_satisfied,
            WaitEnd::Expired => &self.fetch_waits_expired,
            WaitEnd::Shutdown => &self.fetch_waits_shutdown,
        }
        .fetch_add(1, Ordering::Relaxed);
    }
}
