//! The open-loop send schedule behind `--rate`.
//!
//! A run at `rate` records/s has one global schedule: record `i` (0-based, counted over
//! all producers) is *meant* to be sent at `start + i / rate`. Producer `k` of `n` sends
//! records `k, k + n, k + 2n, ...`, so the producers together follow the one schedule.
//!
//! The schedule never slips: when a producer falls behind (the broker stalls, the
//! producer's buffer is full), the records it sends late keep their intended times, and
//! latency is measured from those. A stall therefore shows up as latency of every record
//! that should have gone out during it, rather than as a pause in sending that the
//! numbers never see (coordinated omission). Nothing here sleeps: [`Schedule`] only does
//! the arithmetic; the producer loop decides how to wait (see `produce.rs`).

use std::time::{Duration, Instant};

/// The intended send times of one producer's share of an open-loop run.
#[derive(Debug, Clone)]
pub struct Schedule {
    start: Instant,
    /// Nanoseconds between two records of the global schedule.
    interval_ns: f64,
    /// This producer's first global index (`k`) and stride (`n`).
    first: u64,
    stride: u64,
}

impl Schedule {
    /// Producer `index` of `producers`, all together sending `rate` records/s from `start`.
    /// `rate` must be positive and finite.
    pub fn new(start: Instant, rate: f64, index: u64, producers: u64) -> Schedule {
        assert!(rate.is_finite() && rate > 0.0, "rate must be positive");
        assert!(index < producers, "producer index out of range");
        Schedule {
            start,
            interval_ns: 1e9 / rate,
            first: index,
            stride: producers,
        }
    }

    /// The global index of this producer's `n`-th record.
    pub fn global_index(&self, n: u64) -> u64 {
        self.first + n * self.stride
    }

    /// When this producer's `n`-th record (0-based) is meant to be sent.
    pub fn intended(&self, n: u64) -> Instant {
        let offset = self.global_index(n) as f64 * self.interval_ns;
        self.start + Duration::from_nanos(offset as u64)
    }

    /// How many of this producer's records are intended strictly before `deadline`: the
    /// producer's share of a `--duration` run.
    pub fn count_before(&self, deadline: Instant) -> u64 {
        let Some(span) = deadline.checked_duration_since(self.start) else {
            return 0;
        };
        // Global records with i * interval < span: ceil(span / interval).
        let global = (span.as_nanos() as f64 / self.interval_ns).ceil() as u64;
        if global <= self.first {
            0
        } else {
            (global - self.first).div_ceil(self.stride)
        }
    }
}

/// Splits `total` records over `parts` workers as evenly as possible (the first ones get
/// one more when it does not divide).
pub fn split(total: u64, parts: usize, index: usize) -> u64 {
    let parts = parts.max(1) as u64;
    let index = index as u64;
    total / parts + u64::from(index < total % parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_producer_follows_the_rate() {
        let start = Instant::now();
        let s = Schedule::new(start, 1000.0, 0, 1);
        assert_eq!(s.intended(0), start);
        assert_eq!(s.intended(1), start + Duration::from_millis(1));
        assert_eq!(s.intended(1500), start + Duration::from_millis(1500));
        assert_eq!(s.count_before(start + Duration::from_micros(1)), 1);
        assert_eq!(s.count_before(start + Duration::from_micros(999)), 1);
        assert_eq!(s.count_before(start + Duration::from_millis(1)), 1);
        assert_eq!(s.count_before(start + Duration::from_micros(1001)), 2);
        assert_eq!(s.count_before(start + Duration::from_secs(1)), 1000);
    }

    #[test]
    fn producers_interleave_on_one_schedule() {
        let start = Instant::now();
        let rate = 300.0;
        let schedules: Vec<Schedule> = (0..3).map(|k| Schedule::new(start, rate, k, 3)).collect();
        // Every global index appears exactly once, at its global time.
        let mut seen = Vec::new();
        for s in &schedules {
            for n in 0..10 {
                let i = s.global_index(n);
                let expected = start + Duration::from_nanos((i as f64 * 1e9 / rate) as u64);
                assert_eq!(s.intended(n), expected);
                seen.push(i);
            }
        }
        seen.sort_unstable();
        assert_eq!(seen, (0..30).collect::<Vec<_>>());
        // Intended before 1 s + 1 ns: global records 0..=300, 101 + 100 + 100.
        let now = start + Duration::from_secs(1) + Duration::from_nanos(1);
        let due: Vec<u64> = schedules.iter().map(|s| s.count_before(now)).collect();
        assert_eq!(due, vec![101, 100, 100]);
    }

    #[test]
    fn a_stall_does_not_move_the_schedule() {
        // The intended time of a record depends only on its index: a producer that
        // could not send for a while finds many records due at once, all with their
        // original (past) intended times.
        let start = Instant::now();
        let s = Schedule::new(start, 10_000.0, 0, 1);
        let after_stall = start + Duration::from_millis(250);
        assert_eq!(s.count_before(after_stall), 2500);
        assert!(s.intended(100) < after_stall);
        assert_eq!(s.intended(100), start + Duration::from_millis(10));
    }

    #[test]
    fn duration_runs_count_records_before_the_deadline() {
        let start = Instant::now();
        let deadline = start + Duration::from_secs(2);
        let one = Schedule::new(start, 1000.0, 0, 1);
        assert_eq!(one.count_before(deadline), 2000);
        let total: u64 = (0..7)
            .map(|k| Schedule::new(start, 1000.0, k, 7).count_before(deadline))
            .sum();
        assert_eq!(total, 2000);
        assert_eq!(one.count_before(start), 0);
    }

    #[test]
    fn before_the_start_nothing_is_due() {
        let start = Instant::now() + Duration::from_secs(5);
        let s = Schedule::new(start, 1.0, 0, 1);
        assert_eq!(s.count_before(Instant::now()), 0);
    }

    #[test]
    fn split_spreads_the_remainder() {
        assert_eq!(
            (0..3).map(|i| split(10, 3, i)).collect::<Vec<_>>(),
            [4, 3, 3]
        );
        assert_eq!((0..4).map(|i| split(2, 4, i)).sum::<u64>(), 2);
        assert_eq!(split(5, 0, 0), 5);
    }
}
