//! The free-space floor of the data directory (`log.dir.min.free.bytes`).
//!
//! Produce is refused while the data directory's filesystem has fewer free bytes than
//! the floor, before the disk is actually full: what the broker must still write then
//! (committed offsets in `__consumer_offsets`, recovery points, producer-state
//! snapshots, topic metadata, the clean-shutdown marker) still fits, and no log is taken
//! offline by ENOSPC in the middle of a batch. Only client produces are refused; the
//! broker's own appends (the group coordinator's) go on.
//!
//! The answer is NOT_ENOUGH_REPLICAS with a message naming the cause: Kafka's protocol
//! marks it retriable and clients retry it (the Java producer until
//! `delivery.timeout.ms`), so producers wait for space instead of failing; not every
//! client retries KAFKA_STORAGE_ERROR.
//!
//! Free space is read with `statvfs` at most every [`REFRESH_MS`], by whichever produce
//! finds the reading stale: one system call per interval, not per request. Crossing the
//! floor is logged once each way (a warning when produce starts being refused, info when
//! it is accepted again), so an operator sees why producers stall without a log line per
//! request.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

/// How old a free-space reading may be before a produce reads it again.
pub const REFRESH_MS: i64 = 100;
/// Default floor: this fraction of the filesystem (1/20 = 5%) ...
const DEFAULT_FRACTION: u64 = 20;
/// ... but never more than 1 GiB (Redpanda's storage_min_free_bytes default).
const DEFAULT_CAP: u64 = 1 << 30;

/// See the module docs.
pub struct DiskSpace {
    dir: PathBuf,
    /// `log.dir.min.free.bytes` as configured; `None`: the default rule.
    configured: Option<u64>,
    checked_ms: AtomicI64,
    free: AtomicU64,
    floor: AtomicU64,
    /// Whether the last reading was below the floor: logs only the crossings.
    refusing: AtomicBool,
}

/// Why a produce is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BelowFloor {
    pub free: u64,
    pub floor: u64,
}

impl std::fmt::Display for BelowFloor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the broker's log directory has {} bytes free, below log.dir.min.free.bytes = {}: produce is refused until space is freed",
            self.free, self.floor
        )
    }
}

impl DiskSpace {
    pub fn new(dir: &Path, configured: Option<u64>) -> DiskSpace {
        DiskSpace {
            dir: dir.to_path_buf(),
            configured,
            checked_ms: AtomicI64::new(i64::MIN),
            free: AtomicU64::new(u64::MAX),
            floor: AtomicU64::new(0),
            refusing: AtomicBool::new(false),
        }
    }

    /// `Some` when free space is below the floor (as read at most [`REFRESH_MS`] ago).
    pub fn below_floor(&self, now_ms: i64) -> Option<BelowFloor> {
        if self.configured == Some(0) {
            return None;
        }
        let checked = self.checked_ms.load(Ordering::Acquire);
        if now_ms.saturating_sub(checked) >= REFRESH_MS
            && self
                .checked_ms
                .compare_exchange(checked, now_ms, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.refresh();
        }
        let free = self.free.load(Ordering::Acquire);
        let floor = self.floor.load(Ordering::Acquire);
        (free < floor).then_some(BelowFloor { free, floor })
    }

    /// [`DiskSpace::below_floor`] as of the wall clock now: for the heartbeat, which
    /// tells the controller (see `BrokerRegistration::storage_unavailable`), and the
    /// replica fetchers, which stop copying while below the floor.
    pub fn is_below_floor_now(&self) -> bool {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        self.below_floor(now_ms).is_some()
    }

    fn refresh(&self) {
        match statvfs(&self.dir) {
            Ok((free, total)) => {
                let floor = self
                    .configured
                    .unwrap_or_else(|| (total / DEFAULT_FRACTION).min(DEFAULT_CAP));
                self.floor.store(floor, Ordering::Release);
                self.free.store(free, Ordering::Release);
                self.log_crossing(free, floor);
            }
            // Cannot tell: do not refuse on a guess. A full disk still shows up as a
            // failed append (KAFKA_STORAGE_ERROR).
            Err(e) => {
                tracing::debug!(dir = %self.dir.display(), error = %e, "statvfs failed");
                self.free.store(u64::MAX, Ordering::Release);
                // Accepting again: the next crossing below the floor is logged anew.
                self.refusing.store(false, Ordering::Release);
            }
        }
    }

    fn log_crossing(&self, free: u64, floor: u64) {
        let below = free < floor;
        if self.refusing.swap(below, Ordering::AcqRel) == below {
            return;
        }
        let dir = self.dir.display();
        if below {
            tracing::warn!(%dir, free, floor, "data directory below log.dir.min.free.bytes: refusing produce (NOT_ENOUGH_REPLICAS) until space is freed");
        } else {
            tracing::info!(%dir, free, floor, "data directory back above log.dir.min.free.bytes: accepting produce again");
        }
    }
}

/// (bytes available to unprivileged users, filesystem size) of the filesystem at `path`.
pub(crate) fn statvfs(path: &Path) -> std::io::Result<(u64, u64)> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c_path` is a valid NUL-terminated string and `stat` a valid out pointer.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let fragment = stat.f_frsize as u64;
    Ok((
        (stat.f_bavail as u64).saturating_mul(fragment),
        (stat.f_blocks as u64).saturating_mul(fragment),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_compares_free_space_and_is_off_at_zero() {
        let dir = tempfile::tempdir().unwrap();
        let (free, total) = statvfs(dir.path()).unwrap();
        assert!(total > 0 && free <= total);
        assert_eq!(DiskSpace::new(dir.path(), Some(0)).below_floor(0), None);
        assert_eq!(DiskSpace::new(dir.path(), Some(1)).below_floor(0), None);
        let refused = DiskSpace::new(dir.path(), Some(u64::MAX)).below_floor(0);
        // Free space moves while other tests write and delete files: only check that a
        // real reading (not the "cannot tell" sentinel) was compared with the floor.
        assert!(refused.is_some_and(|r| r.floor == u64::MAX && r.free <= total));
        // Crossings are remembered (each is logged once).
        let crossing = DiskSpace::new(dir.path(), Some(u64::MAX));
        assert!(!crossing.refusing.load(Ordering::Acquire));
        let _ = crossing.below_floor(0);
        assert!(crossing.refusing.load(Ordering::Acquire));
        crossing.log_crossing(1, 0);
        assert!(!crossing.refusing.load(Ordering::Acquire));
        // The default is 5% capped at 1 GiB.
        let default = DiskSpace::new(dir.path(), None);
        let _ = default.below_floor(0);
        assert_eq!(
            default.floor.load(Ordering::Acquire),
            (total / 20).min(1 << 30)
        );
    }
}
