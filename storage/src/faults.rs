//! Fault injection for the file operations that can fail under a log: the segment's
//! vectored write, `fdatasync`/`fsync`, `set_len`, the rename of an atomic write, and the
//! renames and removals of the cleaner's segment swap.
//!
//! Every such call in this crate goes through [`check`] first. With no fault armed (the
//! only state outside tests) that is one relaxed atomic load, so the seam costs nothing
//! measurable next to the system call it guards. Tests arm a [`Fault`] for the files
//! under one directory (their own temp dir, so parallel tests do not see each other's
//! faults): "let `skip` calls of this kind pass, then fail the next `times` with this
//! errno", the way redb's fuzz target fails I/O after a countdown.
//!
//! A failed segment write can be made torn ([`Fault::torn`]): part of the bytes reach the
//! file before the error, as a short write followed by ENOSPC does on a full disk.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// A file operation that can be made to fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// The vectored write of batches to a segment's `.log` file.
    Write,
    /// `fdatasync`/`fsync` of a segment, an index, a metadata file or a directory.
    Sync,
    /// `set_len` of a segment or index file (create, preallocate, trim, truncate).
    SetLen,
    /// The rename that publishes an atomically written metadata file, or a cleaned
    /// segment's file (see `cleaner::swap`).
    Rename,
    /// The removal of a segment file a cleaned segment replaces (see `cleaner::swap`).
    Remove,
}

/// One armed fault.
#[derive(Debug, Clone)]
pub struct Fault {
    /// Only operations on paths under this directory fail.
    pub under: PathBuf,
    pub op: Op,
    /// Matching calls that succeed before the first failure.
    pub skip: u64,
    /// Matching calls that then fail (`u64::MAX`: until cleared).
    pub times: u64,
    /// The `errno` the failing calls return (e.g. `libc::ENOSPC`, `libc::EIO`).
    pub errno: i32,
    /// For [`Op::Write`]: the bytes written before the failure (a torn write).
    pub torn: usize,
    /// Only calls made on this thread match (`None`: any thread). Lets a test say what
    /// one caller does without racing the flusher's thread for the same files.
    pub thread: Option<std::thread::ThreadId>,
}

impl Fault {
    /// Fails every `op` under `under` with `errno` until cleared.
    pub fn always(under: impl Into<PathBuf>, op: Op, errno: i32) -> Fault {
        Fault {
            under: under.into(),
            op,
            skip: 0,
            times: u64::MAX,
            errno,
            torn: 0,
            thread: None,
        }
    }

    /// The same fault, matching only calls made on the calling thread.
    pub fn on_this_thread(self) -> Fault {
        Fault {
            thread: Some(std::thread::current().id()),
            ..self
        }
    }
}

struct Armed {
    id: u64,
    fault: Fault,
    /// Matching calls seen so far.
    calls: u64,
}

/// Number of armed faults: the fast path reads only this.
static ARMED_COUNT: AtomicUsize = AtomicUsize::new(0);
static ARMED: Mutex<Vec<Armed>> = Mutex::new(Vec::new());
static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn armed() -> std::sync::MutexGuard<'static, Vec<Armed>> {
    // Every update is a single push, retain or counter bump: poison leaves it consistent.
    ARMED.lock().unwrap_or_else(|p| p.into_inner())
}

/// Arms a fault; it stays armed until the returned guard is dropped (or [`FaultGuard::clear`]).
pub fn arm(fault: Fault) -> FaultGuard {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let mut list = armed();
    list.push(Armed {
        id,
        fault,
        calls: 0,
    });
    ARMED_COUNT.store(list.len(), Ordering::Release);
    FaultGuard { id }
}

/// Disarms its fault when dropped.
#[must_use = "the fault is disarmed when the guard is dropped"]
pub struct FaultGuard {
    id: u64,
}

impl FaultGuard {
    /// Disarms the fault now.
    pub fn clear(self) {}

    /// How many matching calls the fault has seen (passed or failed).
    pub fn calls(&self) -> u64 {
        armed()
            .iter()
            .find(|a| a.id == self.id)
            .map_or(0, |a| a.calls)
    }
}

impl Drop for FaultGuard {
    fn drop(&mut self) {
        let mut list = armed();
        list.retain(|a| a.id != self.id);
        ARMED_COUNT.store(list.len(), Ordering::Release);
    }
}

/// What a guarded call must do instead of (or before) its real work.
pub(crate) struct Injected {
    pub error: io::Error,
    /// Bytes a torn write lets through before failing.
    pub torn: usize,
}

/// Called before every guarded file operation on `path`: `Some` means fail it.
#[inline]
pub(crate) fn check(op: Op, path: &Path) -> Option<Injected> {
    if ARMED_COUNT.load(Ordering::Relaxed) == 0 {
        return None;
    }
    check_slow(op, path)
}

#[cold]
fn check_slow(op: Op, path: &Path) -> Option<Injected> {
    let mut list = armed();
    for armed in list.iter_mut() {
        if armed.fault.op != op
            || !path.starts_with(&armed.fault.under)
            || armed
                .fault
                .thread
                .is_some_and(|t| t != std::thread::current().id())
        {
            continue;
        }
        armed.calls += 1;
        let failing =
            armed.calls > armed.fault.skip && armed.calls - armed.fault.skip <= armed.fault.times;
        if failing {
            tracing::debug!(?op, path = %path.display(), errno = armed.fault.errno, "injected I/O failure");
            return Some(Injected {
                error: io::Error::from_raw_os_error(armed.fault.errno),
                torn: armed.fault.torn,
            });
        }
    }
    None
}

/// Runs `f` unless a fault is armed for `op` on `path`.
#[inline]
pub(crate) fn guard<T>(op: Op, path: &Path, f: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    match check(op, path) {
        Some(injected) => Err(injected.error),
        None => f(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_fails_the_nth_matching_call_under_its_directory_only() {
        let dir = PathBuf::from("/faults-test/a");
        let fault = arm(Fault {
            skip: 1,
            times: 2,
            ..Fault::always(&dir, Op::Sync, libc::EIO)
        });
        let ok = || Ok(());
        assert!(guard(Op::Sync, Path::new("/faults-test/b/x"), ok).is_ok());
        assert!(guard(Op::Write, &dir.join("x"), ok).is_ok());
        assert!(guard(Op::Sync, &dir.join("x"), ok).is_ok(), "skipped");
        let err = guard(Op::Sync, &dir.join("x"), ok).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EIO));
        assert!(guard(Op::Sync, &dir.join("y"), ok).is_err());
        assert!(guard(Op::Sync, &dir.join("x"), ok).is_ok(), "times used up");
        assert_eq!(fault.calls(), 4);
        fault.clear();
        assert!(guard(Op::Sync, &dir.join("x"), ok).is_ok());
    }

    #[test]
    fn a_fault_on_one_thread_leaves_other_threads_alone() {
        let dir = PathBuf::from("/faults-test/thread");
        let _fault = arm(Fault::always(&dir, Op::Sync, libc::EIO).on_this_thread());
        let ok = || Ok(());
        let other = std::thread::spawn({
            let dir = dir.clone();
            move || guard(Op::Sync, &dir.join("x"), ok).is_ok()
        });
        assert!(other.join().unwrap(), "another thread's call passes");
        assert!(guard(Op::Sync, &dir.join("x"), ok).is_err());
    }
}
