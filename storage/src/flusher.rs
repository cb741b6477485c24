//! The flusher: one thread per data directory that fsyncs logs, so that many appends share
//! one `fdatasync` (group commit).
//!
//! Logs with flush policy `always` ask for a flush after every append; the flusher takes
//! every log that asked, syncs each once, and advances each log's durable watermark to
//! the log end offset it saw before syncing. Appends that arrive while a sync runs are
//! covered by the next one, so under load the number of syncs per second stays bounded by
//! the disk's sync latency while the bytes per sync grow. Logs with an interval policy are
//! checked on a tick; rolled segments are synced and the recovery point checkpointed here
//! too, off the append path, with the producer-state snapshot a roll encoded. The
//! recovery point also follows the durable offset into the active segment, rate-limited
//! (checked after each sync and on the tick). The tick also checkpoints a changed high
//! watermark (at most every 5 s) and retries a leader-epoch checkpoint that failed.
//!
//! The same tick probes logs that a failed write or sync took offline: with backoff
//! (100 ms doubling to 5 s) it checks that the directory takes writes again, re-checks
//! the log's tail and brings it back online (see `PartitionLog`'s healing).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::thread::{self, JoinHandle, ThreadId};
use std::time::Duration;

use crate::log::LogInner;
use crate::stats::StorageStats;

/// How often logs with interval policies are checked.
const TICK: Duration = Duration::from_millis(50);

#[derive(Default)]
struct Queue {
    requested: Vec<Weak<LogInner>>,
    registered: Vec<Weak<LogInner>>,
    shutdown: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        // Queue updates are single pushes/drains; a poisoned lock leaves it consistent.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct Handle {
    shared: Arc<Shared>,
    stats: Arc<StorageStats>,
    thread: Mutex<Option<JoinHandle<()>>>,
    thread_id: ThreadId,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.lock().shutdown = true;
        self.shared.wake.notify_all();
        // The last handle may be dropped by the flusher thread itself (it held the last
        // reference to a log); joining itself would deadlock.
        if thread::current().id() != self.thread_id {
            if let Some(thread) = self.thread.lock().ok().and_then(|mut t| t.take()) {
                let _ = thread.join().map_err(|_| {
                    tracing::error!("flusher thread panicked");
                });
            }
        }
    }
}

/// Handle to a flusher thread; cheap to clone. The thread stops when the last handle
/// (including the ones held by open logs) is dropped.
#[derive(Clone)]
pub struct Flusher {
    handle: Arc<Handle>,
}

impl Flusher {
    /// Starts a flusher thread named `name`.
    pub fn start(name: &str) -> std::io::Result<Flusher> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
        });
        let worker_shared = shared.clone();
        let thread = thread::Builder::new()
            .name(format!("flusher-{name}"))
            .spawn(move || run(worker_shared))?;
        let thread_id = thread.thread().id();
        Ok(Flusher {
            handle: Arc::new(Handle {
                shared,
                stats: Arc::default(),
                thread: Mutex::new(Some(thread)),
                thread_id,
            }),
        })
    }

    /// What the logs of this flusher's data directory did (syncs, rolls), for metrics.
    pub fn stats(&self) -> &Arc<StorageStats> {
        &self.handle.stats
    }

    pub(crate) fn register(&self, log: &Arc<LogInner>) {
        self.handle
            .shared
            .lock()
            .registered
            .push(Arc::downgrade(log));
    }

    /// Asks for `log` to be synced soon. Cheap when a request is already pending.
    pub(crate) fn request(&self, log: &Arc<LogInner>, pending: &AtomicBool) {
        if pending.swap(true, Ordering::AcqRel) {
            return;
        }
        self.handle
            .shared
            .lock()
            .requested
            .push(Arc::downgrade(log));
        self.handle.shared.wake.notify_one();
    }
}

fn run(shared: Arc<Shared>) {
    loop {
        let (requested, registered) = {
            let mut queue = shared.lock();
            if queue.requested.is_empty() && !queue.shutdown {
                queue = shared
                    .wake
                    .wait_timeout(queue, TICK)
                    .map(|(q, _)| q)
                    .unwrap_or_else(|p| p.into_inner().0);
            }
            if queue.shutdown {
                return;
            }
            queue.registered.retain(|log| log.strong_count() > 0);
            (
                std::mem::take(&mut queue.requested),
                queue.registered.clone(),
            )
        };
        for log in requested.iter().filter_map(Weak::upgrade) {
            log.flush_requested();
        }
        let now = crate::log::now_ms();
        for log in registered.iter().filter_map(Weak::upgrade) {
            log.flush_if_due(now);
            log.checkpoint_if_due(now, crate::log::RECOVERY_POINT_CHECKPOINT_MS);
            log.checkpoint_high_watermark_if_due(now, crate::log::HIGH_WATERMARK_CHECKPOINT_MS);
            log.epoch_checkpoint_if_dirty();
            log.heal_if_due(now);
        }
    }
}
