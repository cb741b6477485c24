//! The durable-offset watermark: the offset below which every appended batch has been
//! fsynced, and the waiters that need it to pass a given offset.
//!
//! The flusher thread advances it after each `fdatasync`; appenders wait on it. Waiting
//! works both from plain threads ([`DurableWait::wait`]) and from any async runtime
//! ([`DurableWait`] is a `Future`), so the storage crate stays free of tokio.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Waker};

use crate::error::StorageError;

struct State {
    value: i64,
    /// Set when a sync failed: every waiter gets an error, forever.
    failed: bool,
    /// Bumped by every truncation: a wait for an offset above a truncation fails.
    truncations: u64,
    closed: bool,
    waiters: Vec<(i64, Waker)>,
}

/// A monotonically increasing offset with waiters.
pub struct Watermark {
    state: Mutex<State>,
    changed: Condvar,
}

impl Watermark {
    pub fn new(value: i64) -> Self {
        Watermark {
            state: Mutex::new(State {
                value,
                failed: false,
                truncations: 0,
                closed: false,
                waiters: Vec::new(),
            }),
            changed: Condvar::new(),
        }
    }

    /// The current value.
    pub fn get(&self) -> i64 {
        self.lock().value
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave `State` inconsistent (every update
        // is a single assignment), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Moves the watermark forward (never back) and wakes the waiters it satisfies.
    pub fn advance(&self, value: i64) {
        let mut state = self.lock();
        // After a failed sync nothing more is ever reported durable.
        if state.failed || value <= state.value {
            return;
        }
        state.value = value;
        let mut i = 0;
        while i < state.waiters.len() {
            if state.waiters[i].0 <= value {
                let (_, waker) = state.waiters.swap_remove(i);
                waker.wake();
            } else {
                i += 1;
            }
        }
        drop(state);
        self.changed.notify_all();
    }

    /// Lowers the watermark to `value` after a truncation; waits for offsets above it
    /// fail with `Truncated` (the records they waited for are gone).
    pub fn truncate(&self, value: i64) {
        let mut state = self.lock();
        state.value = state.value.min(value);
        state.truncations += 1;
        for (_, waker) in state.waiters.drain(..) {
            waker.wake();
        }
        drop(state);
        self.changed.notify_all();
    }

    fn truncations(&self) -> u64 {
        self.lock().truncations
    }

    /// Marks the watermark as failed (a sync failed) or closed, releasing every waiter.
    pub fn fail(&self, closed: bool) {
        let mut state = self.lock();
        if closed {
            state.closed = true;
        } else {
            state.failed = true;
        }
        for (_, waker) in state.waiters.drain(..) {
            waker.wake();
        }
        drop(state);
        self.changed.notify_all();
    }

    /// Clears a failure once the log healed (its tail re-validated and synced again):
    /// waits begun from now on can succeed. Waits released by the failure stay failed.
    pub fn resume(&self) {
        self.lock().failed = false;
    }

    fn check(&self, target: i64, since: u64, waker: Option<&Waker>) -> Option<Result<(), Outcome>> {
        let mut state = self.lock();
        if state.value >= target {
            return Some(Ok(()));
        }
        if state.truncations != since {
            return Some(Err(Outcome::Truncated));
        }
        if state.failed {
            return Some(Err(Outcome::Failed));
        }
        if state.closed {
            return Some(Err(Outcome::Closed));
        }
        if let Some(waker) = waker {
            match state.waiters.iter_mut().find(|(_, w)| w.will_wake(waker)) {
                Some(entry) => entry.0 = entry.0.min(target),
                None => state.waiters.push((target, waker.clone())),
            }
        }
        None
    }
}

enum Outcome {
    Failed,
    Closed,
    Truncated,
}

/// Waits until the watermark reaches an offset. A `Future`, or blocking via [`wait`].
///
/// [`wait`]: DurableWait::wait
pub struct DurableWait {
    watermark: Arc<Watermark>,
    target: i64,
    /// The watermark's truncation count when the wait began.
    since: u64,
    path: std::path::PathBuf,
}

impl DurableWait {
    pub(crate) fn new(watermark: Arc<Watermark>, target: i64, path: std::path::PathBuf) -> Self {
        let since = watermark.truncations();
        DurableWait {
            watermark,
            target,
            since,
            path,
        }
    }

    fn error(&self, outcome: Outcome) -> StorageError {
        match outcome {
            Outcome::Failed => StorageError::Offline {
                path: self.path.clone(),
            },
            Outcome::Closed => StorageError::Closed,
            Outcome::Truncated => StorageError::Truncated {
                offset: self.target,
            },
        }
    }

    /// Blocks the calling thread until the offset is durable.
    pub fn wait(self) -> Result<(), StorageError> {
        let mut state = self.watermark.lock();
        loop {
            if state.value >= self.target {
                return Ok(());
            }
            if state.truncations != self.since {
                return Err(self.error(Outcome::Truncated));
            }
            if state.failed {
                return Err(self.error(Outcome::Failed));
            }
            if state.closed {
                return Err(self.error(Outcome::Closed));
            }
            state = self
                .watermark
                .changed
                .wait(state)
                .unwrap_or_else(|p| p.into_inner());
        }
    }
}

impl Future for DurableWait {
    type Output = Result<(), StorageError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self
            .watermark
            .check(self.target, self.since, Some(cx.waker()))
        {
            None => Poll::Pending,
            Some(Ok(())) => Poll::Ready(Ok(())),
            Some(Err(outcome)) => Poll::Ready(Err(self.error(outcome))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocking_wait_is_released_by_advance() {
        let watermark = Arc::new(Watermark::new(0));
        let wait = DurableWait::new(watermark.clone(), 10, "x".into());
        let waiter = std::thread::spawn(move || wait.wait());
        watermark.advance(5);
        watermark.advance(10);
        assert!(waiter.join().unwrap().is_ok());
        assert_eq!(watermark.get(), 10);
        watermark.advance(3);
        assert_eq!(watermark.get(), 10, "never moves back");
    }

    #[test]
    fn failure_releases_waiters_with_an_error() {
        let watermark = Arc::new(Watermark::new(0));
        let wait = DurableWait::new(watermark.clone(), 10, "x".into());
        let waiter = std::thread::spawn(move || wait.wait());
        watermark.fail(false);
        assert!(matches!(
            waiter.join().unwrap(),
            Err(StorageError::Offline { .. })
        ));
    }
}

#[cfg(test)]
mod truncation_tests {
    use super::*;

    #[test]
    fn a_truncation_fails_pending_waits_and_a_failure_stops_advances() {
        let watermark = Arc::new(Watermark::new(10));
        let wait = DurableWait::new(watermark.clone(), 20, "x".into());
        let waiter = std::thread::spawn(move || wait.wait());
        watermark.truncate(5);
        assert!(matches!(
            waiter.join().unwrap(),
            Err(StorageError::Truncated { offset: 20 })
        ));
        assert_eq!(watermark.get(), 5);
        watermark.fail(false);
        watermark.advance(50);
        assert_eq!(watermark.get(), 5, "nothing is durable after a failed sync");
    }
}
