//! Counters and histograms the storage engine keeps for monitoring: plain atomics,
//! updated on the write and sync paths with one relaxed add each, read by whoever
//! exports them (the broker's `/metrics`) at scrape time.
//!
//! [`Histogram`] has fixed bucket bounds chosen at compile time, so that recording a
//! value is a binary search over a dozen constants and two atomic adds: no lock, no
//! allocation, nothing that contends between threads beyond the cache line.
//! [`StorageStats`] is one per [`crate::Flusher`] (one per data directory), shared by
//! every log that flusher syncs.

use std::sync::atomic::{AtomicU64, Ordering};

/// Latency bounds in microseconds, from 50 µs to 30 s (a local fsync, a request).
pub const LATENCY_BOUNDS_MICROS: &[u64] = &[
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000, 30_000_000,
];

/// Bounds for counts of things per event (records per fsync), 1 to 100,000.
pub const COUNT_BOUNDS: &[u64] = &[
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 100_000,
];

/// A histogram over `u64` values with fixed upper bounds (a value lands in the first
/// bucket whose bound is at least the value, Prometheus's `le`; larger values in the
/// last, unbounded bucket).
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [u64],
    /// One per bound, then the overflow bucket; not cumulative.
    counts: Box<[AtomicU64]>,
    sum: AtomicU64,
}

/// What a histogram held when it was read: cumulative counts per bound, as Prometheus
/// exposes them.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// (upper bound, observations at or below it), ascending.
    pub buckets: Vec<(u64, u64)>,
    pub count: u64,
    pub sum: u64,
}

impl Histogram {
    pub fn new(bounds: &'static [u64]) -> Histogram {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]), "bounds ascend");
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
        }
    }

    pub fn record(&self, value: u64) {
        let bucket = self.bounds.partition_point(|bound| *bound < value);
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(value, Ordering::Relaxed);
    }

    /// Records a duration in microseconds (saturating at `u64::MAX`).
    pub fn record_duration(&self, elapsed: std::time::Duration) {
        self.record(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX));
    }

    /// The counts read one bucket at a time: a record racing with the read may be in
    /// the count and not yet in the sum, which a scrape tolerates.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut running = 0;
        let mut buckets = Vec::with_capacity(self.bounds.len());
        for (bound, count) in self.bounds.iter().zip(self.counts.iter()) {
            running += count.load(Ordering::Relaxed);
            buckets.push((*bound, running));
        }
        let count = running + self.counts[self.bounds.len()].load(Ordering::Relaxed);
        HistogramSnapshot {
            buckets,
            count,
            sum: self.sum.load(Ordering::Relaxed),
        }
    }
}

/// What one data directory's logs did, for monitoring (see the module docs).
#[derive(Debug)]
pub struct StorageStats {
    /// Time each log sync took (`fdatasync` of its dirty segments and directory), µs.
    pub sync_latency: Histogram,
    /// Records each sync made durable: the group-commit batch size.
    pub sync_records: Histogram,
    /// Syncs that failed (each takes its log offline).
    pub sync_failures: AtomicU64,
    /// Active segments rolled into sealed ones.
    pub segment_rolls: AtomicU64,
}

impl Default for StorageStats {
    fn default() -> Self {
        StorageStats {
            sync_latency: Histogram::new(LATENCY_BOUNDS_MICROS),
            sync_records: Histogram::new(COUNT_BOUNDS),
            sync_failures: AtomicU64::new(0),
            segment_rolls: AtomicU64::new(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_land_in_the_first_bucket_at_least_as_large() {
        let h = Histogram::new(&[10, 100, 1000]);
        for v in [0, 10, 11, 100, 5000, 1000] {
            h.record(v);
        }
        let s = h.snapshot();
        assert_eq!(s.buckets, vec![(10, 2), (100, 4), (1000, 5)]);
        assert_eq!(s.count, 6);
        assert_eq!(s.sum, 6121);
    }

    #[test]
    fn concurrent_records_are_all_counted() {
        let h = std::sync::Arc::new(Histogram::new(LATENCY_BOUNDS_MICROS));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let h = h.clone();
                std::thread::spawn(move || {
                    for i in 0..10_000u64 {
                        h.record(i * (t + 1));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(h.snapshot().count, 40_000);
    }
}
