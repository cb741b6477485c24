//! Counting what a run does: records, bytes, errors and latencies.
//!
//! Every worker (producer, consumer) owns an [`Meter`] and writes to it on its hot path:
//! atomics for the counters and a mutex-guarded HdrHistogram that only the reporter
//! ever contends for, once a second. The [`Collector`] of one *stream* (the produce
//! side or the consume side of a run) sums its meters each tick into an interval
//! ([`Interval`]) and a run-long histogram, and at the end into a [`StreamSummary`].
//!
//! Latencies are recorded in microseconds, 1 µs to 1 hour, 3 significant digits.
//! Records that were meant to go out on an open-loop schedule are measured from their
//! *intended* send time (see `rate.rs`), which is HdrHistogram's coordinated-omission
//! correction done at the source; the histogram is therefore filled with `record`, not
//! `record_correct`, which would count the same stall twice.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency the histograms hold (larger values are clamped to it): one hour.
pub const MAX_LATENCY_US: u64 = 3_600_000_000;

/// An empty latency histogram (µs).
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("static histogram bounds are valid")
}

/// One worker's counters; see the module docs.
#[derive(Debug)]
pub struct Meter {
    records: AtomicU64,
    bytes: AtomicU64,
    errors: AtomicU64,
    latency: Mutex<Histogram<u64>>,
    first_error: Mutex<Option<String>>,
}

impl Default for Meter {
    fn default() -> Self {
        Meter {
            records: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            latency: Mutex::new(new_histogram()),
            first_error: Mutex::new(None),
        }
    }
}

impl Meter {
    /// `records` records of `bytes` payload bytes in total are done.
    pub fn add(&self, records: u64, bytes: u64) {
        self.records.fetch_add(records, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Latency samples, under one lock (each clamped to 1 µs .. [`MAX_LATENCY_US`]).
    pub fn latencies(&self, latencies: impl IntoIterator<Item = Duration>) {
        let mut h = self.histogram();
        for latency in latencies {
            h.saturating_record((latency.as_micros() as u64).clamp(1, MAX_LATENCY_US));
        }
    }

    /// `count` records failed; the first error message of the run is kept.
    pub fn error(&self, count: u64, error: &dyn std::fmt::Display) {
        self.errors.fetch_add(count, Ordering::Relaxed);
        let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
        if first.is_none() {
            *first = Some(error.to_string());
        }
    }

    pub fn records(&self) -> u64 {
        self.records.load(Ordering::Relaxed)
    }

    fn histogram(&self) -> std::sync::MutexGuard<'_, Histogram<u64>> {
        self.latency.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn counters(&self) -> Counters {
        Counters {
            records: self.records.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }
}

/// Running totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    pub records: u64,
    pub bytes: u64,
    pub errors: u64,
}

impl Counters {
    fn plus(self, other: Counters) -> Counters {
        Counters {
            records: self.records + other.records,
            bytes: self.bytes + other.bytes,
            errors: self.errors + other.errors,
        }
    }

    fn minus(self, earlier: Counters) -> Counters {
        Counters {
            records: self.records.saturating_sub(earlier.records),
            bytes: self.bytes.saturating_sub(earlier.bytes),
            errors: self.errors.saturating_sub(earlier.errors),
        }
    }
}

/// Latency percentiles in microseconds (all zero when nothing was recorded).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Latency {
    pub count: u64,
    pub min_us: u64,
    pub mean_us: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

impl Latency {
    pub fn of(histogram: &Histogram<u64>) -> Latency {
        if histogram.is_empty() {
            return Latency::default();
        }
        Latency {
            count: histogram.len(),
            min_us: histogram.min(),
            mean_us: (histogram.mean() * 10.0).round() / 10.0,
            p50_us: histogram.value_at_quantile(0.50),
            p90_us: histogram.value_at_quantile(0.90),
            p99_us: histogram.value_at_quantile(0.99),
            p999_us: histogram.value_at_quantile(0.999),
            max_us: histogram.max(),
        }
    }
}

/// Rates over a span of time.
fn per_second(count: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 {
        0.0
    } else {
        count as f64 / secs
    }
}

/// Bytes per second in MiB/s (2^20 bytes, as Kafka's performance tools print "MB").
pub fn mib_per_second(bytes: u64, elapsed: Duration) -> f64 {
    per_second(bytes, elapsed) / (1024.0 * 1024.0)
}

/// What one stream did during one reporting interval.
#[derive(Debug, Clone, Serialize)]
pub struct Interval {
    /// Seconds since the run started, at the end of the interval.
    pub at_s: f64,
    pub records: u64,
    pub bytes: u64,
    pub errors: u64,
    pub records_per_s: f64,
    pub mib_per_s: f64,
    pub latency: Latency,
}

/// One stream (produce or consume side) over a whole run.
#[derive(Debug, Clone, Serialize)]
pub struct StreamSummary {
    pub name: String,
    /// Seconds the stream's figures are divided by.
    pub elapsed_s: f64,
    pub records: u64,
    pub bytes: u64,
    pub errors: u64,
    pub records_per_s: f64,
    pub mib_per_s: f64,
    pub latency: Latency,
    /// What the latency measures, e.g. "send to ack, from the intended send time".
    pub latency_from: String,
    pub first_error: Option<String>,
    pub intervals: Vec<Interval>,
}

/// Sums a stream's meters; see the module docs.
#[derive(Debug)]
pub struct Collector {
    name: String,
    latency_from: String,
    meters: Vec<Arc<Meter>>,
    last: Counters,
    last_at: Duration,
    interval_histogram: Histogram<u64>,
    total_histogram: Histogram<u64>,
    intervals: Vec<Interval>,
}

impl Collector {
    pub fn new(name: &str, latency_from: &str) -> Collector {
        Collector {
            name: name.to_owned(),
            latency_from: latency_from.to_owned(),
            meters: Vec::new(),
            last: Counters::default(),
            last_at: Duration::ZERO,
            interval_histogram: new_histogram(),
            total_histogram: new_histogram(),
            intervals: Vec::new(),
        }
    }

    /// A new meter for one worker of this stream.
    pub fn meter(&mut self) -> Arc<Meter> {
        let meter = Arc::new(Meter::default());
        self.meters.push(meter.clone());
        meter
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn counters(&self) -> Counters {
        self.meters
            .iter()
            .fold(Counters::default(), |sum, m| sum.plus(m.counters()))
    }

    /// Records done so far, over all workers.
    pub fn records(&self) -> u64 {
        self.meters.iter().map(|m| m.records()).sum()
    }

    /// Closes the interval ending `at` after the start: moves the workers' latency
    /// samples into the interval and run histograms and returns the interval.
    pub fn tick(&mut self, at: Duration) -> Interval {
        self.interval_histogram.reset();
        for meter in &self.meters {
            let mut h = meter.histogram();
            // Same bounds everywhere, so adding cannot fail.
            let _ = self.interval_histogram.add(&*h);
            h.reset();
        }
        let _ = self.total_histogram.add(&self.interval_histogram);
        let now = self.counters();
        let delta = now.minus(self.last);
        let span = at.saturating_sub(self.last_at);
        self.last = now;
        self.last_at = at;
        let interval = Interval {
            at_s: round3(at.as_secs_f64()),
            records: delta.records,
            bytes: delta.bytes,
            errors: delta.errors,
            records_per_s: round1(per_second(delta.records, span)),
            mib_per_s: round3(mib_per_second(delta.bytes, span)),
            latency: Latency::of(&self.interval_histogram),
        };
        self.intervals.push(interval.clone());
        interval
    }

    /// The whole run: rates over `elapsed` (the stream's own measuring span). Call after
    /// a final [`Collector::tick`].
    pub fn summary(&self, elapsed: Duration) -> StreamSummary {
        let totals = self.counters();
        let first_error = self.meters.iter().find_map(|m| {
            m.first_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
        });
        StreamSummary {
            name: self.name.clone(),
            elapsed_s: round3(elapsed.as_secs_f64()),
            records: totals.records,
            bytes: totals.bytes,
            errors: totals.errors,
            records_per_s: round1(per_second(totals.records, elapsed)),
            mib_per_s: round3(mib_per_second(totals.bytes, elapsed)),
            latency: Latency::of(&self.total_histogram),
            latency_from: self.latency_from.clone(),
            first_error,
            intervals: self.intervals.clone(),
        }
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut h = new_histogram();
        for us in 1..=1000 {
            h.record(us).unwrap();
        }
        let l = Latency::of(&h);
        assert_eq!(l.count, 1000);
        assert_eq!(l.min_us, 1);
        assert_eq!(l.p50_us, 500);
        assert_eq!(l.p90_us, 900);
        assert_eq!(l.p99_us, 990);
        assert_eq!(l.p999_us, 999);
        assert_eq!(l.max_us, 1000);
        assert!((l.mean_us - 500.5).abs() < 0.5);
    }

    #[test]
    fn empty_histogram_gives_zeros() {
        assert_eq!(Latency::of(&new_histogram()), Latency::default());
    }

    #[test]
    fn latencies_are_clamped_not_lost() {
        let mut c = Collector::new("x", "test");
        let meter = c.meter();
        meter.latencies([Duration::ZERO]);
        meter.latencies([Duration::from_secs(10 * 3600)]);
        c.tick(Duration::from_secs(1));
        let s = c.summary(Duration::from_secs(1));
        assert_eq!(s.latency.count, 2);
        assert_eq!(s.latency.min_us, 1);
        assert!(s.latency.max_us >= MAX_LATENCY_US * 999 / 1000);
    }

    #[test]
    fn intervals_split_counts_and_latencies_and_the_total_keeps_all() {
        let mut c = Collector::new("produce", "test");
        let a = c.meter();
        let b = c.meter();
        a.add(100, 10_000);
        b.add(50, 5_000);
        a.latencies(std::iter::repeat_n(Duration::from_micros(100), 100));
        b.latencies(std::iter::repeat_n(Duration::from_micros(300), 50));
        let first = c.tick(Duration::from_millis(500));
        assert_eq!(first.records, 150);
        assert_eq!(first.bytes, 15_000);
        assert_eq!(first.records_per_s, 300.0);
        assert_eq!(first.latency.count, 150);
        assert_eq!(first.latency.p50_us, 100);
        assert_eq!(first.latency.max_us, 300);

        b.add(10, 1_000);
        b.error(2, &"boom");
        b.error(1, &"second");
        b.latencies([Duration::from_millis(5)]);
        let second = c.tick(Duration::from_millis(1500));
        assert_eq!(second.records, 10);
        assert_eq!(second.errors, 3);
        assert_eq!(second.records_per_s, 10.0);
        assert_eq!(second.latency.count, 1);
        assert!(second.latency.p50_us >= 4995 && second.latency.p50_us <= 5005);

        let s = c.summary(Duration::from_secs(2));
        assert_eq!(s.records, 160);
        assert_eq!(s.bytes, 16_000);
        assert_eq!(s.errors, 3);
        assert_eq!(s.records_per_s, 80.0);
        assert_eq!(s.latency.count, 151);
        assert_eq!(s.first_error.as_deref(), Some("boom"));
        assert_eq!(s.intervals.len(), 2);
        assert!((s.mib_per_s - 16_000.0 / 2.0 / 1048576.0).abs() < 0.001);
    }

    #[test]
    fn an_empty_interval_after_the_last_one_adds_nothing() {
        let mut c = Collector::new("consume", "test");
        let m = c.meter();
        m.add(1, 10);
        m.latencies([Duration::from_micros(42)]);
        c.tick(Duration::from_secs(1));
        let empty = c.tick(Duration::from_secs(2));
        assert_eq!(empty.records, 0);
        assert_eq!(empty.latency, Latency::default());
        assert_eq!(c.summary(Duration::from_secs(2)).latency.count, 1);
    }
}
