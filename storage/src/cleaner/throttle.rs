//! The cleaner's I/O throttle (`log.cleaner.io.max.bytes.per.second`), a token bucket
//! over bytes read plus written, refilled continuously, paid by sleeping.
//!
//! Each sleep is capped at [`MAX_SLEEP`], so one huge batch cannot stall the cleaner's
//! thread for long; the debt it leaves is paid by later calls. The bucket holds at most
//! one second of credit, so an idle stretch does not buy an unthrottled burst.

use std::time::{Duration, Instant};

/// Longest single sleep.
pub const MAX_SLEEP: Duration = Duration::from_secs(1);

pub(crate) struct Throttle {
    rate: Option<u64>,
    /// Bytes of credit (negative: debt), as of `at`.
    credit: f64,
    at: Instant,
    slept: Duration,
}

impl Throttle {
    /// `rate` in bytes per second; `None` or 0: no limit.
    pub(crate) fn new(rate: Option<u64>) -> Throttle {
        Throttle {
            rate: rate.filter(|r| *r > 0),
            credit: 0.0,
            at: Instant::now(),
            slept: Duration::ZERO,
        }
    }

    /// Pays for `bytes` of I/O, sleeping (at most [`MAX_SLEEP`]) while in debt.
    pub(crate) fn spend(&mut self, bytes: u64) {
        let Some(rate) = self.rate else { return };
        let rate = rate as f64;
        let now = Instant::now();
        self.credit = (self.credit + now.duration_since(self.at).as_secs_f64() * rate).min(rate);
        self.at = now;
        self.credit -= bytes as f64;
        if self.credit < 0.0 {
            let wait = Duration::from_secs_f64(-self.credit / rate).min(MAX_SLEEP);
            std::thread::sleep(wait);
            self.slept += wait;
        }
    }

    /// Time spent sleeping so far.
    pub(crate) fn slept(&self) -> Duration {
        self.slept
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleeps_to_hold_the_rate_and_never_longer_than_the_cap() {
        let mut unlimited = Throttle::new(None);
        unlimited.spend(u64::MAX);
        assert_eq!(unlimited.slept(), Duration::ZERO);

        let started = Instant::now();
        let mut throttle = Throttle::new(Some(1_000_000));
        for _ in 0..10 {
            throttle.spend(20_000); // 200 KB at 1 MB/s: about 0.2 s
        }
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(150), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");

        let mut huge = Throttle::new(Some(1));
        let started = Instant::now();
        huge.spend(1 << 40);
        assert!(started.elapsed() < MAX_SLEEP + Duration::from_millis(500));
    }
}
