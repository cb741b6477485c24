//! A partition log: the ordered segments of one `<topic>-<partition>/` directory.
//!
//! Owns: assigning offsets on append, rolling segments (`segment.bytes`, `segment.ms`,
//! full indexes), reads by offset and by timestamp, the log start / end offsets,
//! truncation, retention and record deletion, flushing by policy, and the open-time
//! choice between a cheap load (clean shutdown) and crash recovery.
//!
//! Files in the directory besides the segments:
//! - `recovery-point`: decimal offset below which every byte of the log is synced, and
//!   every segment wholly below it has its indexes trimmed and synced. After an unclean
//!   shutdown only segments from the one containing it are rescanned (the active segment
//!   always is, when the point lies inside it: its indexes are rebuilt); recovery cuts
//!   a torn tail only at offsets >= the point, and records damage below it as a damaged
//!   range, as in sealed segments. Written atomically when a rolled segment has been
//!   synced, at close, and by the flusher to the durable offset after a successful sync
//!   (at most once per [`RECOVERY_POINT_CHECKPOINT_MS`] per log).
//! - `log-start-offset`: decimal offset, written atomically when records are deleted in
//!   the middle of a segment (DeleteRecords); otherwise the first segment's base offset.
//! - `high-watermark`: decimal offset, the replicated high watermark (what consumers may
//!   read; not the durable offset, which is [`Watermark`]'s). Written atomically by the
//!   flusher when it changed (at most once per [`HIGH_WATERMARK_CHECKPOINT_MS`]) and at
//!   close; at open the high watermark is min(file, log end), and the log end when there
//!   is no file (a directory of a release before replication, where everything appended
//!   was visible), which is then written at once.
//! - `leader-epoch-checkpoint`: the leader-epoch cache (see `epoch_cache`) in Kafka's
//!   text format, written atomically on every change. At open it is cut to the log
//!   start and end (recovery may have cut the tail); missing, damaged or behind the
//!   log's last batch, it is rebuilt from the batches' partition leader epochs.
//!
//! Concurrency: every mutation (append, roll, truncate, retention, close, a change of the
//! leader-epoch cache) holds the append lock. The high watermark is an atomic that a
//! small lock of its own orders against truncation (raising it takes no append lock).
//! Readers take no lock held across I/O: they clone the segment list (an `Arc<Vec<_>>`
//! behind an `RwLock` held for a pointer copy) and read the published end offsets, so
//! readers and the appender never wait on each other.

use std::borrow::Cow;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{
    AtomicBool, AtomicI32, AtomicI64, AtomicU64, AtomicU8, AtomicUsize, Ordering,
};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::batch::{
    self, BatchHeader, RecordChecks, Records, TargetCompression, TimestampBounds, TimestampType,
    HEADER_SIZE,
};
use crate::cleaner::{self, CleanOptions, CleanOutcome, Cleanable};
use crate::config::{FlushPolicy, LogConfig};
use crate::damage::DamagedRange;
use crate::epoch_cache::{self, EpochCache, EpochEndOffset, Loaded};
use crate::error::{BatchError, Result, StorageError};
use crate::flusher::Flusher;
use crate::fsutil::{self, parse_segment_file_name, LOG_SUFFIX};
use crate::producer_state::{self, PendingUpdates, ProducerStates, Verdict};
use crate::segment::{Layout, PreparedBatch, Segment, TailRule, NO_TIMESTAMP};
use crate::watermark::{DurableWait, Watermark};

const RECOVERY_POINT_FILE: &str = "recovery-point";
const HIGH_WATERMARK_FILE: &str = "high-watermark";
/// Least time between two checkpoints of a changed high watermark (Kafka checkpoints
/// every `replica.high.watermark.checkpoint.interval.ms`, 5 s). A stale checkpoint only
/// hides committed records after an unclean stop until the leader raises the high
/// watermark again; it never exposes uncommitted ones, since it is cut to the log end.
pub(crate) const HIGH_WATERMARK_CHECKPOINT_MS: i64 = 5_000;
/// The latest-epoch value of an empty leader-epoch cache.
const NO_EPOCH: i32 = -1;
/// Least time between two checkpoints of the recovery point to the durable offset inside
/// the active segment (Kafka's `log.flush.offset.checkpoint.interval.ms`, 60 s there).
/// Shorter than Kafka's because here the point also bounds what a damaged byte can cost:
/// after an unclean stop, recovery may cut synced records only past the point, so at most
/// this much of the latest acknowledged appends is exposed. Each checkpoint is an atomic
/// file write (two fsyncs), so 10 s keeps it at one per busy partition every 10 s on the
/// flusher thread (100/s for 1,000 busy partitions), small next to the syncs of the
/// appends themselves. A constant, not a setting.
pub(crate) const RECOVERY_POINT_CHECKPOINT_MS: i64 = 10_000;
/// Written, synced and removed by a heal probe to see whether the disk takes writes again.
const PROBE_FILE: &str = "heal-probe";
/// Bytes the heal probe writes: a few pages, so a disk with room for nothing gets no yes.
const PROBE_BYTES: usize = 16 * 1024;
/// First wait before probing an offline log, doubled after each failed probe up to
/// [`HEAL_BACKOFF_MAX_MS`].
const HEAL_BACKOFF_MIN_MS: i64 = 100;
const HEAL_BACKOFF_MAX_MS: i64 = 5_000;

/// Why a log is offline, which decides what healing must redo (`offline_kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Failure {
    /// Online.
    None = 0,
    /// A write or a roll failed: published batches are intact, but bytes of the failed
    /// write may follow them in the file, and index trims may be half done.
    Write = 1,
    /// A sync failed: what reached the disk since the last good sync is unknown (the
    /// kernel may have marked unwritten pages clean), so that range is re-validated and
    /// written again before anything is reported durable.
    Sync = 2,
    /// Not an I/O error of the disk (a poisoned lock, damaged bytes found while
    /// healing, a failed truncation): the log stays offline until the broker restarts
    /// and recovery checks it.
    Fatal = 3,
}

impl Failure {
    fn from_u8(value: u8) -> Failure {
        match value {
            0 => Failure::None,
            1 => Failure::Write,
            2 => Failure::Sync,
            _ => Failure::Fatal,
        }
    }

    /// The failure `error` means when it interrupts an operation of kind `during`.
    fn of(error: &StorageError, during: Failure) -> Failure {
        match error {
            StorageError::Io { .. } => during,
            _ => Failure::Fatal,
        }
    }
}

/// When to probe an offline log next.
struct HealSchedule {
    next_ms: i64,
    backoff_ms: i64,
}
const LOG_START_FILE: &str = "log-start-offset";

/// Milliseconds since the Unix epoch, by the system clock.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset given to the first record.
    pub base_offset: i64,
    /// Offset of the last record.
    pub last_offset: i64,
    /// The broker time stamped on the batches for LogAppendTime, else -1.
    pub log_append_time: i64,
    /// The log start offset after the append.
    pub log_start_offset: i64,
    /// Batches and records appended.
    pub batches: usize,
    pub records: u64,
    /// The batch was a retry of one already stored (idempotent producer): nothing was
    /// appended and the offsets are the original ones.
    pub duplicate: bool,
}

/// What a read returned.
#[derive(Debug, Clone)]
pub struct ReadResult {
    /// Whole record batches, borrowed from the mapped segment (empty if none).
    pub records: Bytes,
    /// Base offset of the first batch in `records`.
    pub first_offset: Option<i64>,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    pub high_watermark: i64,
}

/// Which end bounds a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadBound {
    /// Consumers: only records below the high watermark (Kafka's FetchHighWatermark).
    HighWatermark,
    /// Followers and the log's own owner (coordinator loading): up to the log end
    /// (Kafka's FetchLogEnd).
    LogEnd,
}

/// A record located by timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampOffset {
    pub timestamp: i64,
    pub offset: i64,
}

/// How a log was opened.
#[derive(Debug, Clone, Default)]
pub struct OpenReport {
    /// Segments rescanned because the shutdown was not clean.
    pub segments_recovered: usize,
    /// Bytes cut from a torn tail of the active segment, past the recovery point.
    pub bytes_truncated: u64,
    /// Damage found and kept (never cut): in sealed segments, below the recovery point,
    /// and gaps between segment files. Each was logged as an error.
    pub damaged: Vec<DamagedRange>,
    pub segments: usize,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    pub elapsed: std::time::Duration,
}

/// What a retention pass deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionOutcome {
    pub segments_deleted: usize,
    pub bytes_deleted: u64,
}

/// State guarded by the append lock.
pub(crate) struct AppendState {
    producers: ProducerStates,
}

/// A partition log. Cheap to clone: clones share the same log.
#[derive(Clone)]
pub struct PartitionLog {
    inner: Arc<LogInner>,
}

pub(crate) struct LogInner {
    dir: PathBuf,
    config: RwLock<LogConfig>,
    segments: RwLock<Arc<Vec<Arc<Segment>>>>,
    /// The append lock, with the state only appends touch.
    append_lock: Mutex<AppendState>,
    log_start: AtomicI64,
    log_end: AtomicI64,
    durable: Arc<Watermark>,
    offline: AtomicBool,
    /// A [`Failure`]: what healing must redo.
    offline_kind: AtomicU8,
    heal: Mutex<HealSchedule>,
    /// The producer-state snapshot a roll encoded, for the flusher to write (with its
    /// fsyncs) off the append path.
    pending_snapshot: Mutex<Option<(i64, Vec<u8>)>>,
    closed: AtomicBool,
    flusher: Flusher,
    flush_pending: AtomicBool,
    /// Serializes syncs of this log (the flusher and explicit `flush` calls).
    sync_lock: Mutex<()>,
    unflushed_messages: AtomicU64,
    last_flush_ms: AtomicI64,
    recovery_point: AtomicI64,
    /// Recovery point to persist once the segments below it are synced (set by a roll).
    pending_recovery_point: AtomicI64,
    /// The last pending recovery point made good: every segment below it is synced with
    /// its trimmed indexes. Kept apart from `recovery_point`, which a checkpoint moves
    /// into the active segment: a roll exactly at a checkpointed point still needs the
    /// sealed segment synced, which `pending > recovery_point` would not see.
    sealed_point: AtomicI64,
    /// When the recovery point was last checkpointed to the durable offset (0: never, so
    /// the first sync after open checkpoints at once).
    last_checkpoint_ms: AtomicI64,
    dir_dirty: AtomicBool,
    /// The replicated high watermark, within [log start, log end]. Changed only under
    /// `hw_lock`, which orders a raise against a truncation lowering the log end.
    high_watermark: AtomicI64,
    hw_lock: Mutex<()>,
    /// The high watermark last written to `high-watermark`, and when.
    hw_checkpointed: AtomicI64,
    last_hw_checkpoint_ms: AtomicI64,
    /// The leader-epoch cache; changed only under the append lock (readers take the
    /// read lock for a lookup). `latest_epoch` mirrors its latest epoch (or `NO_EPOCH`)
    /// so that appends compare one atomic.
    epochs: RwLock<EpochCache>,
    latest_epoch: AtomicI32,
    /// The cache changed but its checkpoint could not be written: the flusher retries.
    epochs_dirty: AtomicBool,
    /// Offsets missing between two segment files, found by the continuity check at open.
    /// A truncation below a gap forgets it (the offsets are handed out again).
    gaps: RwLock<Vec<DamagedRange>>,
    has_gaps: AtomicBool,
    /// Why the log could not be opened (see [`PartitionLog::unavailable`]); such a log has
    /// no segments and refuses every operation.
    load_error: Option<String>,
    /// Held for the whole of a clean (see `cleaner`), so two never run on one log, and
    /// by a truncation, which shrinks a file the cleaner may be reading. Always taken
    /// before the append lock.
    clean_lock: Mutex<()>,
    /// Truncations waiting for `clean_lock`: while any waits, a running clean stops at
    /// its next batch (Kafka aborts cleaning before it truncates a log).
    clean_abort: AtomicUsize,
}

impl PartitionLog {
    /// Opens (or creates) the log in `dir`. `clean` says whether the data directory was
    /// shut down cleanly; if not, segments from the recovery point on are rescanned and
    /// truncated at the first invalid batch.
    pub fn open(
        dir: impl Into<PathBuf>,
        config: LogConfig,
        flusher: &Flusher,
        clean: bool,
    ) -> Result<(PartitionLog, OpenReport)> {
        let started = Instant::now();
        let dir = dir.into();
        fs::create_dir_all(&dir)
            .map_err(|e| StorageError::io(format!("create {}", dir.display()), e))?;
        // A clean a crash interrupted: its committed swaps are finished and its
        // uncommitted output removed before the segments are listed.
        cleaner::swap::recover(&dir)?;
        let bases = list_segments(&dir)?;
        let recovery_point = read_offset_file(&dir.join(RECOVERY_POINT_FILE))?;
        let start_checkpoint = read_offset_file(&dir.join(LOG_START_FILE))?;
        let mut report = OpenReport::default();

        let layout = layout_of(&config);
        let mut segments: Vec<Arc<Segment>> = Vec::with_capacity(bases.len().max(1));
        // First segment that must be rescanned after an unclean shutdown.
        let recover_from = match (clean, recovery_point) {
            (true, _) => i64::MAX,
            (false, None) => i64::MIN,
            (false, Some(point)) => bases
                .iter()
                .copied()
                .filter(|b| *b <= point)
                .max()
                .unwrap_or(i64::MIN),
        };
        let mut gaps = Vec::new();
        // The tail: the last segment holding any bytes. Segments after it are empty (a
        // crash right after a roll, before anything was appended to the new segment):
        // the tail is then the active segment in all but name, and when recovery cuts
        // its torn end, the empty segments after it go (they hold nothing).
        let tail = bases
            .iter()
            .rposition(|&b| {
                fs::metadata(fsutil::segment_file(&dir, b, LOG_SUFFIX))
                    .map_or(true, |m| m.len() > 0)
            })
            .unwrap_or(0);
        let mut empty_after_cut = None;
        for (i, &base) in bases.iter().enumerate() {
            let active = i + 1 == bases.len();
            // Recovery may cut only the tail segment, and only from the recovery point
            // on (a torn write); everything else it cannot read is kept as damage.
            let rule = TailRule {
                cut_from: (i >= tail).then(|| recovery_point.unwrap_or(i64::MIN)),
                next_base: bases.get(i + 1).copied(),
            };
            let (segment, cut) = if base >= recover_from {
                report.segments_recovered += 1;
                Segment::open_and_recover(&dir, base, active, &layout, rule)?
            } else {
                Segment::load(&dir, base, active, &layout, rule)?
            };
            // Continuity: each segment starts where the previous one ends.
            if let Some(prev) = segments.last() {
                let expected = prev.next_offset();
                if segment.base_offset() < expected {
                    return Err(StorageError::Unavailable {
                        path: dir.clone(),
                        reason: format!(
                            "segment {} starts at offset {} but {} already holds offsets up to {}: \
                             overlapping segment files; no segment file was removed",
                            segment.log_path().display(),
                            segment.base_offset(),
                            prev.log_path().display(),
                            expected - 1
                        ),
                    });
                }
                if segment.base_offset() > expected {
                    let gap = DamagedRange {
                        file: prev.log_path().to_path_buf(),
                        first_offset: expected,
                        end_offset: segment.base_offset(),
                        position: prev.size(),
                        len: 0,
                        reason: format!(
                            "no segment file holds these offsets (a missing segment?); the next file is {}",
                            segment.log_path().display()
                        ),
                    };
                    gap.log("open");
                    gaps.push(gap);
                }
            }
            report.damaged.extend(segment.damaged_ranges());
            report.bytes_truncated += cut;
            segments.push(Arc::new(segment));
            if cut > 0 && !active {
                empty_after_cut = Some(i + 1);
                break;
            }
        }
        if let Some(first_empty) = empty_after_cut {
            for &base in &bases[first_empty..] {
                tracing::info!(dir = %dir.display(), base_offset = base, "removing an empty segment after the cut tail");
                for suffix in [LOG_SUFFIX, fsutil::INDEX_SUFFIX, fsutil::TIME_INDEX_SUFFIX] {
                    fsutil::remove_if_exists(&fsutil::segment_file(&dir, base, suffix))?;
                }
            }
            // The cut segment now ends the log; it was opened as sealed.
            if let Some(last) = segments.last() {
                last.unseal(config.segment_bytes, config.segment_index_bytes)?;
            }
            fsutil::sync_dir(&dir)?;
        }
        report.damaged.extend(gaps.iter().cloned());
        report.damaged.sort_by_key(|d| d.first_offset);
        if segments.is_empty() {
            let base = start_checkpoint.unwrap_or(0).max(0);
            segments.push(Arc::new(Segment::create(
                &dir,
                base,
                config.segment_bytes,
                config.segment_index_bytes,
            )?));
            fsutil::sync_dir(&dir)?;
        }

        let first_base = segments.first().map_or(0, |s| s.base_offset());
        let log_end = segments.last().map_or(0, |s| s.next_offset());
        let log_start = start_checkpoint
            .unwrap_or(first_base)
            .max(first_base)
            .min(log_end);
        report.segments = segments.len();
        report.log_start_offset = log_start;
        report.log_end_offset = log_end;
        report.elapsed = started.elapsed();
        if report.bytes_truncated > 0 {
            tracing::warn!(dir = %dir.display(), bytes = report.bytes_truncated, log_end, "recovery truncated the log");
        }
        // A cleaner checkpoint above the log end (left by a truncation of an earlier
        // release, which cut files before it lowered the checkpoint) would call offsets
        // appended from here "cleaned": reset to the log start, as Kafka does.
        cleaner::reset_checkpoint_above(&dir, log_start, log_end)?;
        let active_base = segments.last().map_or(0, |s| s.base_offset());
        let producers = rebuild_producer_states(&dir, &segments, log_end)?;
        let epochs = load_epoch_cache(&dir, &segments, log_start, log_end)?;
        let high_watermark = load_high_watermark(&dir, log_start, log_end)?;
        let inner = Arc::new(LogInner {
            dir,
            config: RwLock::new(config),
            segments: RwLock::new(Arc::new(segments)),
            append_lock: Mutex::new(AppendState { producers }),
            log_start: AtomicI64::new(log_start),
            log_end: AtomicI64::new(log_end),
            durable: Arc::new(Watermark::new(log_end)),
            offline: AtomicBool::new(false),
            offline_kind: AtomicU8::new(Failure::None as u8),
            heal: Mutex::new(HealSchedule {
                next_ms: 0,
                backoff_ms: HEAL_BACKOFF_MIN_MS,
            }),
            pending_snapshot: Mutex::new(None),
            closed: AtomicBool::new(false),
            flusher: flusher.clone(),
            flush_pending: AtomicBool::new(false),
            sync_lock: Mutex::new(()),
            unflushed_messages: AtomicU64::new(0),
            last_flush_ms: AtomicI64::new(now_ms()),
            recovery_point: AtomicI64::new(recovery_point.unwrap_or(i64::MIN)),
            pending_recovery_point: AtomicI64::new(active_base),
            sealed_point: AtomicI64::new(recovery_point.unwrap_or(i64::MIN)),
            last_checkpoint_ms: AtomicI64::new(0),
            dir_dirty: AtomicBool::new(false),
            high_watermark: AtomicI64::new(high_watermark),
            hw_lock: Mutex::new(()),
            hw_checkpointed: AtomicI64::new(high_watermark),
            last_hw_checkpoint_ms: AtomicI64::new(0),
            latest_epoch: AtomicI32::new(epochs.latest().map_or(NO_EPOCH, |e| e.epoch)),
            epochs: RwLock::new(epochs),
            epochs_dirty: AtomicBool::new(false),
            has_gaps: AtomicBool::new(!gaps.is_empty()),
            gaps: RwLock::new(gaps),
            load_error: None,
            clean_lock: Mutex::new(()),
            clean_abort: AtomicUsize::new(0),
        });
        flusher.register(&inner);
        Ok((PartitionLog { inner }, report))
    }

    /// A log whose files could not be opened (`open` failed with `reason`): it holds no
    /// segment, touches no file, and answers every read and write with
    /// [`StorageError::Unavailable`], so one bad partition directory takes only that
    /// partition offline. Reopening (a broker restart) after a repair brings it back.
    pub fn unavailable(
        dir: impl Into<PathBuf>,
        config: LogConfig,
        flusher: &Flusher,
        reason: String,
    ) -> PartitionLog {
        let inner = Arc::new(LogInner {
            dir: dir.into(),
            config: RwLock::new(config),
            segments: RwLock::new(Arc::new(Vec::new())),
            append_lock: Mutex::new(AppendState {
                producers: ProducerStates::default(),
            }),
            log_start: AtomicI64::new(0),
            log_end: AtomicI64::new(0),
            durable: Arc::new(Watermark::new(0)),
            offline: AtomicBool::new(true),
            // Never healed: nothing was loaded (and the flusher does not know the log).
            offline_kind: AtomicU8::new(Failure::Fatal as u8),
            heal: Mutex::new(HealSchedule {
                next_ms: i64::MAX,
                backoff_ms: HEAL_BACKOFF_MAX_MS,
            }),
            pending_snapshot: Mutex::new(None),
            closed: AtomicBool::new(false),
            flusher: flusher.clone(),
            flush_pending: AtomicBool::new(false),
            sync_lock: Mutex::new(()),
            unflushed_messages: AtomicU64::new(0),
            last_flush_ms: AtomicI64::new(now_ms()),
            recovery_point: AtomicI64::new(i64::MIN),
            pending_recovery_point: AtomicI64::new(i64::MIN),
            sealed_point: AtomicI64::new(i64::MIN),
            last_checkpoint_ms: AtomicI64::new(0),
            dir_dirty: AtomicBool::new(false),
            high_watermark: AtomicI64::new(0),
            hw_lock: Mutex::new(()),
            hw_checkpointed: AtomicI64::new(0),
            last_hw_checkpoint_ms: AtomicI64::new(0),
            epochs: RwLock::new(EpochCache::default()),
            latest_epoch: AtomicI32::new(NO_EPOCH),
            epochs_dirty: AtomicBool::new(false),
            gaps: RwLock::new(Vec::new()),
            has_gaps: AtomicBool::new(false),
            load_error: Some(reason),
            clean_lock: Mutex::new(()),
            clean_abort: AtomicUsize::new(0),
        });
        PartitionLog { inner }
    }

    /// Fails with [`StorageError::Unavailable`] for a log that could not be loaded.
    pub fn ensure_loaded(&self) -> Result<()> {
        self.inner.check_loaded()
    }

    /// Why the log could not be loaded, for a log made by [`PartitionLog::unavailable`].
    pub fn load_error(&self) -> Option<&str> {
        self.inner.load_error.as_deref()
    }

    /// Every damaged range still in the log (at or after the log start), by offset: what
    /// recovery kept instead of cutting, gaps between segment files, and damage found by
    /// reads since. Empty for a healthy log. Reads inside a range are refused with
    /// [`StorageError::Damaged`].
    pub fn damaged_ranges(&self) -> Vec<DamagedRange> {
        let log_start = self.log_start_offset();
        let mut ranges: Vec<DamagedRange> = self
            .inner
            .snapshot()
            .iter()
            .flat_map(|s| s.damaged_ranges())
            .chain(self.inner.gaps().iter().cloned())
            .filter(|d| d.end_offset > log_start || d.first_offset >= log_start)
            .collect();
        ranges.sort_by_key(|d| (d.first_offset, d.position));
        ranges
    }

    /// The partition directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The log's current configuration.
    pub fn config(&self) -> LogConfig {
        self.inner.config().clone()
    }

    /// Replaces the configuration; it applies from the next append / retention pass.
    pub fn set_config(&self, config: LogConfig) {
        if let Ok(mut current) = self.inner.config.write() {
            *current = config;
        }
    }

    /// First offset that can be read.
    pub fn log_start_offset(&self) -> i64 {
        self.inner.log_start.load(Ordering::Acquire)
    }

    /// Offset the next appended record will get.
    pub fn log_end_offset(&self) -> i64 {
        self.inner.log_end.load(Ordering::Acquire)
    }

    /// The high watermark: offsets below it are committed (replicated to every in-sync
    /// replica) and readable by consumers. Stored, within [log start, log end]; see the
    /// module doc for how it survives a restart.
    pub fn high_watermark(&self) -> i64 {
        self.inner.high_watermark.load(Ordering::Acquire)
    }

    /// Leader: raises the high watermark to `offset`, clamped to the log end; never
    /// lowers it. Returns the high watermark after the call.
    pub fn advance_high_watermark(&self, offset: i64) -> i64 {
        let inner = &self.inner;
        let _hw = inner.lock_hw();
        let current = inner.high_watermark.load(Ordering::Acquire);
        let target = offset.min(inner.log_end.load(Ordering::Acquire));
        if target > current {
            inner.high_watermark.store(target, Ordering::Release);
            target
        } else {
            current
        }
    }

    /// Follower: sets the high watermark to `offset` clamped to [log start, log end],
    /// lower or higher (the leader's word). Returns the high watermark after the call.
    pub fn set_high_watermark(&self, offset: i64) -> i64 {
        let inner = &self.inner;
        let _hw = inner.lock_hw();
        let target = offset
            .min(inner.log_end.load(Ordering::Acquire))
            .max(inner.log_start.load(Ordering::Acquire));
        inner.high_watermark.store(target, Ordering::Release);
        target
    }

    /// The newest epoch in the leader-epoch cache; None when the cache is empty.
    pub fn latest_epoch(&self) -> Option<i32> {
        let latest = self.inner.latest_epoch.load(Ordering::Acquire);
        (latest >= 0).then_some(latest)
    }

    /// Kafka's `endOffsetFor` (answering OffsetsForLeaderEpoch): for the latest epoch,
    /// (latest, log end); for an older epoch e, the largest cached epoch <= e and the
    /// start offset of the next larger epoch; for an epoch below the first cached one, e
    /// and the first one's start (as Kafka: it ended where the cache begins); None
    /// (Kafka's UNDEFINED_EPOCH) when e is above the latest or the cache is empty.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<EpochEndOffset> {
        self.inner
            .read_epochs()
            .end_offset_for(epoch, self.log_end_offset())
    }

    /// Becoming leader at `epoch`: records that `epoch` starts at `start_offset` (the log
    /// end then) and writes the checkpoint. No-op if `epoch` <= the latest epoch.
    pub fn assign_epoch(&self, epoch: i32, start_offset: i64) -> Result<()> {
        let inner = &self.inner;
        if epoch < 0 || start_offset < 0 {
            return Err(StorageError::InvalidArgument(format!(
                "cannot assign leader epoch {epoch} at offset {start_offset}"
            )));
        }
        let _guard = inner.lock_append()?;
        inner.check_writable()?;
        if epoch <= inner.latest_epoch.load(Ordering::Acquire) {
            return Ok(());
        }
        inner.change_epochs_persisted(|cache| cache.assign(epoch, start_offset))
    }

    /// Becoming leader at `epoch`: records that it starts at the log end, read under the
    /// append lock so no append can slip in between. Returns the epoch's start offset (the
    /// one already cached if `epoch` is not newer than the latest).
    pub fn assign_epoch_at_log_end(&self, epoch: i32) -> Result<i64> {
        let inner = &self.inner;
        if epoch < 0 {
            return Err(StorageError::InvalidArgument(format!(
                "cannot assign leader epoch {epoch}"
            )));
        }
        let _guard = inner.lock_append()?;
        inner.check_writable()?;
        let end = inner.log_end.load(Ordering::Acquire);
        if epoch <= inner.latest_epoch.load(Ordering::Acquire) {
            return Ok(end);
        }
        inner.change_epochs_persisted(|cache| cache.assign(epoch, end))?;
        Ok(end)
    }

    /// The leader-epoch cache as (epoch, start offset) entries, oldest first.
    pub fn epoch_entries(&self) -> Vec<(i32, i64)> {
        self.inner
            .read_epochs()
            .entries()
            .iter()
            .map(|e| (e.epoch, e.start_offset))
            .collect()
    }

    /// Offset below which every record has been fsynced.
    pub fn durable_offset(&self) -> i64 {
        self.inner.durable.get()
    }

    /// Total bytes of all segments.
    pub fn size_bytes(&self) -> u64 {
        self.inner.snapshot().iter().map(|s| s.size()).sum()
    }

    /// Number of segments.
    pub fn segment_count(&self) -> usize {
        self.inner.snapshot().len()
    }

    /// Number of idempotent producers with state in this partition.
    pub fn producer_count(&self) -> usize {
        self.inner
            .append_lock
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .producers
            .len()
    }

    /// Whether an earlier I/O failure took the log offline.
    pub fn is_offline(&self) -> bool {
        self.inner.offline.load(Ordering::Acquire)
    }

    /// Validates and appends the record batches in `records` (one or more batches, laid
    /// end to end, as a Produce request carries them), assigning offsets and stamping
    /// `leader_epoch`. Nothing is written unless every batch is valid.
    ///
    /// Refused with [`StorageError::StaleLeaderEpoch`] when `leader_epoch` is older than
    /// the latest epoch in the leader-epoch cache (a deposed leader must not write behind
    /// its successor's records); a newer epoch is recorded as starting at this append.
    pub fn append(&self, records: &[u8], leader_epoch: i32, now_ms: i64) -> Result<AppendInfo> {
        let inner = &self.inner;
        inner.check_writable()?;
        let config = inner.config().clone();
        // A batch must fit in one segment (Kafka: RecordBatchTooLargeException).
        let limit = config
            .max_message_bytes
            .min(config.segment_bytes.min(usize::MAX as u64) as usize);
        let checks = RecordChecks {
            max_decompressed_bytes: config.max_decompressed_bytes,
            timestamps: (config.timestamp_type == TimestampType::CreateTime).then_some(
                TimestampBounds {
                    now_ms,
                    before_max_ms: config.timestamp_before_max_ms,
                    after_max_ms: config.timestamp_after_max_ms,
                },
            ),
            keys_required: config.compact,
        };
        // Every record is checked before the append lock is taken: the check (and any
        // decompression) does not hold up other appenders of this partition.
        let parsed = parse_produced(records, limit, &checks, config.compression)?;

        let mut guard = inner.lock_append()?;
        inner.check_writable()?;
        // Under the append lock, so no epoch can be assigned in between.
        let latest_epoch = inner.latest_epoch.load(Ordering::Acquire);
        if latest_epoch != NO_EPOCH && leader_epoch < latest_epoch {
            return Err(StorageError::StaleLeaderEpoch {
                epoch: leader_epoch,
                latest: latest_epoch,
            });
        }

        let log_append_time = match config.timestamp_type {
            TimestampType::LogAppendTime => now_ms,
            TimestampType::CreateTime => -1,
        };
        let mut next = inner.log_end.load(Ordering::Acquire);
        let base_offset = next;
        let mut records_count = 0u64;
        let mut prepared = Vec::with_capacity(parsed.len());
        let mut producer_updates = PendingUpdates::default();
        for (bytes, records_max_timestamp) in &parsed {
            let (bytes, records_max_timestamp) = (bytes.as_ref(), *records_max_timestamp);
            let header = BatchHeader::new(bytes)?;
            let max_timestamp = if config.timestamp_type == TimestampType::LogAppendTime {
                now_ms
            } else {
                records_max_timestamp
            };
            match guard.producers.check(&producer_updates, &header)? {
                Verdict::Duplicate(original) => {
                    // A retry of a batch already stored: acknowledge it with its original
                    // offsets, append nothing (Kafka does the same for the whole request).
                    // With LogAppendTime the batch's stored max timestamp is the time it
                    // was appended, which is what the first answer said.
                    return Ok(AppendInfo {
                        base_offset: original.first_offset,
                        last_offset: original.last_offset,
                        log_append_time: match config.timestamp_type {
                            TimestampType::LogAppendTime => original.max_timestamp,
                            TimestampType::CreateTime => -1,
                        },
                        log_start_offset: self.log_start_offset(),
                        batches: 0,
                        records: 0,
                        duplicate: true,
                    });
                }
                Verdict::Append => {
                    guard
                        .producers
                        .stage(&mut producer_updates, &header, next, max_timestamp)
                }
            }
            let mut head = [0u8; HEADER_SIZE];
            head.copy_from_slice(&bytes[..HEADER_SIZE]);
            batch::patch_base_offset(&mut head, next);
            batch::patch_leader_epoch(&mut head, leader_epoch);
            let body = &bytes[HEADER_SIZE..];
            if config.timestamp_type == TimestampType::LogAppendTime {
                patch_log_append_time(&mut head, body, now_ms);
            } else if header.max_timestamp() != max_timestamp
                || header.timestamp_type() != TimestampType::CreateTime
            {
                // As Kafka's LogValidator: the stored max timestamp is the records' (the
                // time index and retention trust it), whatever the producer wrote.
                patch_create_time(&mut head, body, max_timestamp);
            }
            let count = header.last_offset_delta() as i64 + 1;
            records_count += count as u64;
            prepared.push(PreparedBatch {
                header: head,
                body,
                base_offset: next,
                next_offset: next + count,
                max_timestamp,
            });
            next += count;
        }
        if leader_epoch > latest_epoch {
            // A new leader's first append (or the first append of a log that had no
            // epoch): recorded, and checkpointed, before the records are written, as
            // Kafka does; a crash in between leaves an entry at or past the log end,
            // which the next open cuts.
            inner.change_epochs_persisted(|cache| cache.assign(leader_epoch, base_offset))?;
        }
        let total: u64 = parsed.iter().map(|(b, _)| b.len() as u64).sum();
        inner.maybe_roll(&guard, &config, total, now_ms)?;
        let active = inner.active();
        if let Err(e) = active.append(&prepared, config.index_interval_bytes) {
            inner.go_offline(&e, Failure::Write);
            return Err(e);
        }
        active.note_append_time(now_ms);
        guard.producers.commit(producer_updates);
        inner.log_end.store(next, Ordering::Release);
        drop(guard);

        inner.after_append(&config, records_count);
        Ok(AppendInfo {
            base_offset,
            last_offset: next - 1,
            log_append_time,
            log_start_offset: self.log_start_offset(),
            batches: prepared.len(),
            records: records_count,
            duplicate: false,
        })
    }

    /// Follower append: stores the leader's batches byte for byte at their own offsets
    /// (Kafka's `appendAsFollower`). Checks each batch's framing, magic 2 and CRC; the
    /// first batch must start at the log end and each next one where the previous one
    /// ended, else [`StorageError::OffsetMismatch`] (except a first bare header without
    /// a producer id that the leader's cleaner merged across this log's end: its tail is
    /// appended). Nothing is written unless every
    /// batch is valid. Updates the producer states as the leader's append did (no
    /// duplicate or sequence verdicts: the leader decided), so that a new leader answers
    /// a producer's retry as a duplicate; records each batch's partition leader epoch
    /// above the latest as that epoch's start; rolls and indexes as an append does.
    pub fn append_replicated(&self, records: &[u8], now_ms: i64) -> Result<AppendInfo> {
        let inner = &self.inner;
        inner.check_writable()?;
        let config = inner.config().clone();
        // A batch must fit in one segment; the leader already applied max.message.bytes
        // (a topic setting that may have changed since).
        let limit = config.segment_bytes.min(usize::MAX as u64) as usize;
        // The first batch re-based to the log end, when it must be (see below).
        let rebased_first: Vec<u8>;
        let mut parsed: Vec<(&[u8], BatchHeader<'_>)> = Vec::new();
        let mut rest = records;
        while !rest.is_empty() {
            let size = batch::check_framing(rest, limit.max(HEADER_SIZE))?;
            let (one, tail) = rest.split_at(size);
            let header = batch::validate_stored_batch(one)?;
            if header.last_offset_delta() < 0 {
                return Err(BatchError::CountMismatch {
                    reason: format!(
                        "last offset delta {} is negative",
                        header.last_offset_delta()
                    ),
                }
                .into());
            }
            parsed.push((one, header));
            rest = tail;
        }

        let mut guard = inner.lock_append()?;
        inner.check_writable()?;
        let base_offset = inner.log_end.load(Ordering::Acquire);
        let Some((_, first)) = parsed.first() else {
            return Ok(AppendInfo {
                base_offset,
                last_offset: base_offset - 1,
                log_append_time: -1,
                log_start_offset: self.log_start_offset(),
                batches: 0,
                records: 0,
                duplicate: false,
            });
        };
        if first.base_offset() != base_offset {
            // A bare header the leader's cleaner merged across this log's end: only its
            // tail is new here (`cleaner::filter::rebase_bare`).
            match cleaner::filter::rebase_bare(parsed[0].0, base_offset) {
                Some(tail) => {
                    rebased_first = tail;
                    parsed[0] = (&rebased_first, BatchHeader::new(&rebased_first)?);
                }
                None => {
                    return Err(StorageError::OffsetMismatch {
                        expected: base_offset,
                        got: first.base_offset(),
                    })
                }
            }
        }
        let mut next = base_offset;
        let mut records_count = 0u64;
        let mut prepared = Vec::with_capacity(parsed.len());
        let mut producer_updates = PendingUpdates::default();
        // The cache is copied only when a batch names another epoch than the latest
        // (a leader change, or a log without epochs yet): the steady state compares
        // one atomic per batch.
        let latest_epoch = inner.latest_epoch.load(Ordering::Acquire);
        // A batch of an epoch older than this log's latest comes from a leader this
        // replica has moved past (it became leader itself, or truncated to a newer
        // leader's log): a late answer of the old leader, refused whole. A follower never
        // needs one: truncation to the divergence point removes every newer epoch first.
        if let Some((_, stale)) = parsed.iter().find(|(_, h)| {
            h.partition_leader_epoch() >= 0 && h.partition_leader_epoch() < latest_epoch
        }) {
            return Err(StorageError::StaleLeaderEpoch {
                epoch: stale.partition_leader_epoch(),
                latest: latest_epoch,
            });
        }
        let other_epoch = parsed.iter().any(|(_, h)| {
            let epoch = h.partition_leader_epoch();
            epoch >= 0 && epoch != latest_epoch
        });
        let mut epochs = other_epoch.then(|| inner.read_epochs().clone());
        let mut epochs_changed = false;
        for (bytes, header) in &parsed {
            if header.base_offset() != next {
                return Err(StorageError::OffsetMismatch {
                    expected: next,
                    got: header.base_offset(),
                });
            }
            guard
                .producers
                .stage(&mut producer_updates, header, next, header.max_timestamp());
            if let Some(epochs) = epochs.as_mut() {
                epochs_changed |= epochs.assign(header.partition_leader_epoch(), next);
            }
            let mut head = [0u8; HEADER_SIZE];
            head.copy_from_slice(&bytes[..HEADER_SIZE]);
            records_count += header.records_count().max(0) as u64;
            prepared.push(PreparedBatch {
                header: head,
                body: &bytes[HEADER_SIZE..],
                base_offset: next,
                next_offset: header.next_offset(),
                max_timestamp: header.max_timestamp(),
            });
            next = header.next_offset();
        }
        if let Some(epochs) = epochs.filter(|_| epochs_changed) {
            // Checkpointed before the records are written, as for a leader's append.
            inner.install_epochs_persisted(epochs)?;
        }
        let total: u64 = parsed.iter().map(|(b, _)| b.len() as u64).sum();
        inner.maybe_roll(&guard, &config, total, now_ms)?;
        let active = inner.active();
        if let Err(e) = active.append(&prepared, config.index_interval_bytes) {
            inner.go_offline(&e, Failure::Write);
            return Err(e);
        }
        active.note_append_time(now_ms);
        guard.producers.commit(producer_updates);
        inner.log_end.store(next, Ordering::Release);
        drop(guard);

        inner.after_append(&config, records_count);
        Ok(AppendInfo {
            base_offset,
            last_offset: next - 1,
            log_append_time: -1,
            log_start_offset: self.log_start_offset(),
            batches: prepared.len(),
            records: records_count,
            duplicate: false,
        })
    }

    /// A future (or blocking wait) that completes once every record below `offset` is
    /// fsynced (pass `last_offset + 1` to wait for an append). Asks the flusher for a sync
    /// if the offset is not durable yet, whatever the policy. With `always` the append
    /// already asked, so this is usually a no-op on the pending flag (at worst one extra
    /// sync with little left to do); but the append may have run under another policy
    /// than the one the caller saw, if the config changed in between, and the wait must
    /// not depend on a later append coming.
    pub fn wait_durable(&self, offset: i64) -> DurableWait {
        if self.inner.durable.get() < offset {
            self.inner
                .flusher
                .request(&self.inner, &self.inner.flush_pending);
        }
        DurableWait::new(self.inner.durable.clone(), offset, self.inner.dir.clone())
    }

    /// Reads whole batches from the batch containing `offset`, up to `max_bytes`; with
    /// `min_one`, the first batch is returned even if larger (KIP-74). Reads stop at the
    /// high watermark (a consumer's read) and never cross a segment boundary; offsets in
    /// [high watermark, log end] read as empty.
    pub fn read(&self, offset: i64, max_bytes: usize, min_one: bool) -> Result<ReadResult> {
        self.read_bounded(offset, max_bytes, min_one, ReadBound::HighWatermark)
    }

    /// [`PartitionLog::read`] with an explicit bound: [`ReadBound::LogEnd`] for followers
    /// and the log's own owner. A batch reaching past the bound is not returned.
    /// `ReadResult.high_watermark` is the high watermark, `log_end_offset` the log end.
    pub fn read_bounded(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
        bound: ReadBound,
    ) -> Result<ReadResult> {
        let inner = &self.inner;
        inner.check_loaded()?;
        let log_start = self.log_start_offset();
        // The high watermark first: it never passes the log end read after it.
        let high_watermark = self.high_watermark();
        let log_end = self.log_end_offset();
        let limit = match bound {
            ReadBound::HighWatermark => high_watermark.min(log_end),
            ReadBound::LogEnd => log_end,
        };
        if offset < log_start || offset > log_end {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start,
                log_end,
            });
        }
        let mut result = ReadResult {
            records: Bytes::new(),
            first_offset: None,
            log_start_offset: log_start,
            log_end_offset: log_end,
            high_watermark,
        };
        if offset >= limit {
            return Ok(result);
        }
        if let Some(range) = inner.gap_at(offset) {
            return Err(StorageError::Damaged { range });
        }
        let segments = inner.snapshot();
        let first = segments
            .partition_point(|s| s.base_offset() <= offset)
            .saturating_sub(1);
        for segment in segments.iter().skip(first) {
            if let Some(read) = segment.read(offset, max_bytes, min_one, limit)? {
                result.records = read.records;
                result.first_offset = read.first_offset;
                break;
            }
        }
        Ok(result)
    }

    /// The first record whose timestamp is >= `timestamp` (Kafka's ListOffsets by time),
    /// or None if every record is older.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<TimestampOffset>> {
        self.inner.check_loaded()?;
        let log_start = self.log_start_offset();
        let log_end = self.log_end_offset();
        let segments = self.inner.snapshot();
        for segment in segments.iter() {
            if segment.next_offset() <= log_start || segment.max_timestamp() < timestamp {
                continue;
            }
            // The first batch reaching the timestamp may hold no record that does (its max
            // came from records before the log start): keep scanning the segment.
            let mut from = log_start;
            while let Some(batch) = segment.find_batch_by_timestamp(timestamp, from)? {
                if let Some(found) =
                    first_record_at_or_after(&batch, timestamp, log_start, log_end)?
                {
                    return Ok(Some(found));
                }
                from = BatchHeader::new(&batch)?.next_offset();
            }
        }
        Ok(None)
    }

    /// The record with the largest timestamp (the first of equals), for ListOffsets -3.
    pub fn max_timestamp_offset(&self) -> Result<Option<TimestampOffset>> {
        self.inner.check_loaded()?;
        let segments = self.inner.snapshot();
        let mut best: Option<&Arc<Segment>> = None;
        for segment in segments.iter() {
            if segment.is_empty() || segment.max_timestamp() == NO_TIMESTAMP {
                continue;
            }
            if best.is_none_or(|b| segment.max_timestamp() > b.max_timestamp()) {
                best = Some(segment);
            }
        }
        let Some(segment) = best else {
            return Ok(None);
        };
        let (log_start, log_end) = (self.log_start_offset(), self.log_end_offset());
        if let Some(batch) = segment.max_timestamp_batch()? {
            let max = BatchHeader::new(&batch)?.max_timestamp();
            let found = first_record_at_or_after(&batch, max, log_start, log_end)?;
            if found.is_some_and(|f| f.timestamp == max) {
                return Ok(found);
            }
        }
        // The batch that set the segment's max timestamp holds no record with it: the
        // cleaner emptied it (an emptied batch keeps its max timestamp, see
        // `cleaner::filter`), or the record lies below the log start. Rare: scan.
        max_record_timestamp(&segments, log_start, log_end)
    }

    /// Removes every record at or after `offset` (the batch containing `offset` goes too).
    ///
    /// No reader may hold bytes of the truncated range (see `segment`); the broker calls
    /// this only before serving a log (or, later, from replication with fencing).
    pub fn truncate_to(&self, offset: i64) -> Result<()> {
        let inner = &self.inner;
        if offset < 0 {
            return Err(StorageError::InvalidArgument(format!(
                "cannot truncate to offset {offset}"
            )));
        }
        // A clean reading a segment the cut shrinks would fault on its mapping: stop it
        // and keep it out until the cut is done.
        inner.clean_abort.fetch_add(1, Ordering::AcqRel);
        let _cleaning = inner.clean_lock.lock().unwrap_or_else(|p| p.into_inner());
        inner.clean_abort.fetch_sub(1, Ordering::AcqRel);
        let mut guard = inner.lock_append()?;
        inner.check_writable()?;
        if offset >= inner.log_end.load(Ordering::Acquire) {
            // No record to cut, but an epoch may start at the log end with nothing written
            // in it (a leader that took no write before it was deposed): the next leader's
            // answer puts the divergence there, and the epoch must go, or the follower
            // keeps naming it and is told to truncate here forever (Kafka's truncateTo
            // cuts the epoch cache in this case too).
            inner.change_epochs(|cache| cache.truncate_from_end(offset));
            return Ok(());
        }
        // No sync may run across a truncation: it would publish the old log end as durable.
        let _sync = inner.sync_lock.lock().unwrap_or_else(|p| p.into_inner());
        let log_start = inner.log_start.load(Ordering::Acquire);
        let result = if offset <= log_start {
            // Nothing below the cut is readable: start the log afresh at `offset`, as
            // Kafka's truncateFullyAndStartAt does.
            inner.restart_at(offset)
        } else {
            inner.truncate_segments(offset).and_then(|new_end| {
                if new_end < log_start {
                    // The batch holding `offset` began before the log start.
                    inner.restart_at(log_start)
                } else {
                    Ok(())
                }
            })
        };
        if let Err(e) = result {
            inner.go_offline(&e, Failure::Fatal);
            return Err(e);
        }
        let new_end = inner.log_end.load(Ordering::Acquire);
        inner.clamp_high_watermark();
        // Epochs that started in the cut range are gone with it (a restart at the log
        // start leaves no record of any epoch, as Kafka's truncateFullyAndStartAt).
        let restarted = new_end == inner.log_start.load(Ordering::Acquire);
        inner.change_epochs(|cache| {
            if restarted {
                let had = !cache.is_empty();
                *cache = EpochCache::default();
                had
            } else {
                cache.truncate_from_end(new_end)
            }
        });
        inner
            .gaps
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|g| g.end_offset <= new_end);
        // Producer state must forget the cut batches: rebuild it from what is left.
        let segments = inner.snapshot();
        match rebuild_producer_states(&inner.dir, &segments, new_end)
            .and_then(|states| fsutil::sync_dir(&inner.dir).map(|()| states))
        {
            Ok(states) => guard.producers = states,
            Err(e) => {
                inner.go_offline(&e, Failure::Fatal);
                return Err(e);
            }
        }
        tracing::info!(dir = %inner.dir.display(), offset, log_end = new_end, "truncated log");
        Ok(())
    }

    /// Empties the log and starts it afresh at `offset`, which may lie above the log end
    /// (Kafka's `truncateFullyAndStartAt`): a follower whose log ended before the leader's
    /// log start (retention ran on the leader while it was away) starts again where the
    /// leader's log starts. The high watermark and the log start become `offset`; the
    /// epoch cache and the producer states are emptied (nothing they described is left).
    pub fn truncate_fully_and_start_at(&self, offset: i64) -> Result<()> {
        let inner = &self.inner;
        if offset < 0 {
            return Err(StorageError::InvalidArgument(format!(
                "cannot start the log at offset {offset}"
            )));
        }
        // Every segment file goes: a running clean is stopped and kept out, as in
        // `truncate_to`.
        inner.clean_abort.fetch_add(1, Ordering::AcqRel);
        let _cleaning = inner.clean_lock.lock().unwrap_or_else(|p| p.into_inner());
        inner.clean_abort.fetch_sub(1, Ordering::AcqRel);
        let mut guard = inner.lock_append()?;
        inner.check_writable()?;
        // No sync may run across the restart: it would publish the old log end as durable.
        let _sync = inner.sync_lock.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = inner.restart_at(offset) {
            inner.go_offline(&e, Failure::Fatal);
            return Err(e);
        }
        {
            let _hw = inner.lock_hw();
            inner.high_watermark.store(offset, Ordering::Release);
        }
        inner.change_epochs(|cache| {
            let had = !cache.is_empty();
            *cache = EpochCache::default();
            had
        });
        inner
            .gaps
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        inner.has_gaps.store(false, Ordering::Release);
        guard.producers = ProducerStates::default();
        tracing::info!(dir = %inner.dir.display(), offset, "log emptied and started afresh");
        Ok(())
    }

    /// Makes `offset` the new log start offset (Kafka's DeleteRecords): records before it
    /// are no longer served, and whole segments below it are deleted. Returns the new log
    /// start offset. `offset` may not pass the high watermark.
    pub fn delete_records_before(&self, offset: i64) -> Result<i64> {
        let inner = &self.inner;
        let guard = inner.lock_append()?;
        inner.check_writable()?;
        let log_end = inner.log_end.load(Ordering::Acquire);
        let log_start = inner.log_start.load(Ordering::Acquire);
        // Kafka: records may be deleted only below the high watermark (committed ones).
        let high_watermark = inner.high_watermark.load(Ordering::Acquire);
        if offset > high_watermark.min(log_end) || offset < 0 {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start,
                log_end: high_watermark.min(log_end),
            });
        }
        if offset <= log_start {
            return Ok(log_start);
        }
        fsutil::write_atomically(
            &inner.dir.join(LOG_START_FILE),
            offset.to_string().as_bytes(),
        )?;
        inner.log_start.store(offset, Ordering::Release);
        inner.after_log_start_moved(offset);
        let segments = inner.snapshot();
        let below = segments
            .iter()
            .take_while(|s| s.next_offset() <= offset)
            .count();
        inner.delete_oldest(&guard, below, now_ms())?;
        Ok(offset)
    }

    /// Deletes whole segments by `retention.ms` (the segment's newest timestamp is older)
    /// and `retention.bytes` (the log is larger), oldest first, advancing the log start.
    pub fn apply_retention(&self, now_ms: i64) -> Result<RetentionOutcome> {
        let inner = &self.inner;
        let guard = inner.lock_append()?;
        inner.check_writable()?;
        let config = inner.config().clone();
        let segments = inner.snapshot();
        let mut by_time = 0;
        if let Some(retention) = config.retention_ms {
            by_time = segments
                .iter()
                .take_while(|s| {
                    !s.is_empty() && now_ms.saturating_sub(s.retention_timestamp()) > retention
                })
                .count();
        }
        let mut by_size = 0;
        if let Some(limit) = config.retention_bytes {
            let total: u64 = segments.iter().map(|s| s.size()).sum();
            let mut excess = total.saturating_sub(limit);
            for segment in segments.iter() {
                if segment.is_empty() || segment.size() > excess {
                    break;
                }
                excess -= segment.size();
                by_size += 1;
            }
        }
        // Segments wholly below the log start (DeleteRecords whose deletions a crash
        // interrupted) go too.
        let log_start = inner.log_start.load(Ordering::Acquire);
        let below_start = segments
            .iter()
            .take_while(|s| s.next_offset() <= log_start)
            .count();
        inner.delete_oldest(&guard, by_time.max(by_size).max(below_start), now_ms)
    }

    /// The idempotent producers this partition has state for (Kafka's DescribeProducers),
    /// copied under the append lock.
    pub fn active_producers(&self) -> Result<Vec<crate::producer_state::ActiveProducer>> {
        let guard = self.inner.lock_append()?;
        self.inner.check_open()?;
        Ok(guard.producers.active())
    }

    /// Compacts the log once (Kafka's log cleaner; see `cleaner`): rewrites the sealed
    /// segments of the cleanable range keeping each key's latest record, swaps them in
    /// crash-safely and moves the cleaner checkpoint. Runs on the caller's thread for as
    /// long as the clean takes (throttled by `opts`); appends and reads go on meanwhile,
    /// the append lock is taken only to swap each output segment in. Two cleans of one
    /// log run one after the other. Never cleans past the high watermark, whatever
    /// `opts.max_offset` says. Refused (`InvalidArgument`) unless the log's config says
    /// `compact`.
    pub fn clean(&self, opts: &CleanOptions) -> Result<CleanOutcome> {
        let inner = &self.inner;
        inner.check_writable()?;
        if !inner.config().compact {
            // Dropping superseded records is data loss on a `delete`-only topic.
            return Err(StorageError::InvalidArgument(format!(
                "log at {} is not compacted (cleanup.policy has no compact)",
                inner.dir.display()
            )));
        }
        let _cleaning = inner.clean_lock.lock().unwrap_or_else(|p| p.into_inner());
        inner.check_writable()?;
        cleaner::run(inner, &self.bounded_by_committed_and_durable(opts))
    }

    /// `opts` with `max_offset` no higher than the high watermark nor the durable offset:
    /// records not yet committed may still be truncated away (a new leader's log wins),
    /// and records not yet fsynced may be lost in a power cut while the cleaned segments
    /// (fsynced before the swap) survive it; either way the key would be left with no
    /// value at all, so no clean may drop an older value for them, whatever the caller
    /// passed.
    fn bounded_by_committed_and_durable(&self, opts: &CleanOptions) -> CleanOptions {
        CleanOptions {
            max_offset: opts
                .max_offset
                .min(self.high_watermark())
                .min(self.durable_offset()),
            ..opts.clone()
        }
    }

    /// What a clean with `opts` would find (segment sizes only, no file read): the broker
    /// compares [`Cleanable::dirty_ratio`] with `min.cleanable.dirty.ratio` to pick the
    /// log to clean next.
    pub fn cleanable(&self, opts: &CleanOptions) -> Result<Cleanable> {
        let inner = &self.inner;
        inner.check_loaded()?;
        let checkpoint = cleaner::read_checkpoint(&inner.dir)?;
        let opts = self.bounded_by_committed_and_durable(opts);
        Ok(cleaner::cleanable(
            &inner.snapshot(),
            self.log_start_offset(),
            checkpoint,
            &opts,
        )
        .0)
    }

    /// Rolls the active segment if `segment.ms` has passed, even with no append coming.
    pub fn roll_if_due(&self, now_ms: i64) -> Result<()> {
        let inner = &self.inner;
        let guard = inner.lock_append()?;
        inner.check_writable()?;
        let config = inner.config().clone();
        inner.maybe_roll(&guard, &config, 0, now_ms)?;
        drop(guard);
        // A rolled segment is synced, and closes its descriptor, and its producer-state
        // snapshot is written, at the flusher's next turn; with no append coming
        // (`after_append` asks then), nothing else asks.
        if inner.pending_recovery_point.load(Ordering::Acquire)
            > inner.sealed_point.load(Ordering::Acquire)
        {
            inner.flusher.request(inner, &inner.flush_pending);
        }
        Ok(())
    }

    /// Syncs every appended byte now, advances the durable offset, and checkpoints the
    /// recovery point to it (an explicit flush is not rate-limited).
    pub fn flush(&self) -> Result<()> {
        self.inner.check_writable()?;
        self.inner.sync_to_end()?;
        self.inner.checkpoint_if_due(now_ms(), 0);
        self.inner.check_writable()
    }

    /// Flushes, seals the active segment's indexes and checkpoints the recovery point,
    /// so that the next open is a clean one. The log refuses further work afterwards.
    pub fn close(&self) -> Result<()> {
        let inner = &self.inner;
        inner.stop_cleaning_for_good();
        let guard = inner.lock_append()?;
        if inner.closed.load(Ordering::Acquire) {
            return Ok(());
        }
        if inner.load_error.is_some() {
            // A log that never loaded has nothing to flush or checkpoint.
            inner.closed.store(true, Ordering::Release);
            return Ok(());
        }
        // A log that went offline and whose disk has room again closes cleanly: one last
        // heal (without waiting for the backoff) before giving up on a clean close.
        if inner.offline.load(Ordering::Acquire) {
            if let Err(e) = inner.heal(&guard) {
                tracing::warn!(dir = %inner.dir.display(), error = %e, "offline log cannot be healed at close");
            }
        }
        if inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        if inner.offline.load(Ordering::Acquire) {
            inner.durable.fail(true);
            return Err(StorageError::Offline {
                path: inner.dir.clone(),
            });
        }
        let result = (|| -> Result<()> {
            inner.sync_to_end()?;
            let active = inner.active();
            active.seal()?;
            active.sync_all()?;
            let end = inner.log_end.load(Ordering::Acquire);
            producer_state::write_snapshot(&inner.dir, end, &guard.producers)?;
            inner.retry_epoch_checkpoint();
            let _sync = inner.sync_lock.lock().unwrap_or_else(|p| p.into_inner());
            let high_watermark = inner.high_watermark.load(Ordering::Acquire);
            if high_watermark != inner.hw_checkpointed.load(Ordering::Acquire) {
                inner.write_high_watermark(high_watermark, now_ms())?;
            }
            inner.write_recovery_point(end)
        })();
        inner.durable.fail(true);
        result
    }

    /// Stops using a log whose files are about to be deleted: like [`PartitionLog::close`]
    /// but nothing is flushed or checkpointed (a crash before the files are gone leaves a
    /// log the caller's metadata says to delete again). Appends and the flusher stop; a
    /// waiter for durability is failed.
    pub fn discard(&self) {
        let inner = &self.inner;
        inner.stop_cleaning_for_good();
        let _guard = inner.lock_append();
        inner.closed.store(true, Ordering::Release);
        let _sync = inner.sync_lock.lock().unwrap_or_else(|p| p.into_inner());
        inner.durable.fail(true);
    }

    /// Stops using the log without closing it, as if the process died at this point:
    /// waits for a sync in progress, then neither this handle nor the flusher writes
    /// anything more, so the next open sees an unclean shutdown. For crash tests.
    pub fn abandon(self) {
        let inner = &self.inner;
        let _guard = inner.lock_append();
        inner.closed.store(true, Ordering::Release);
        let _sync = inner.sync_lock.lock().unwrap_or_else(|p| p.into_inner());
        inner.durable.fail(true);
    }

    /// Closes the log and removes its directory.
    pub fn delete(&self) -> Result<()> {
        if let Err(e) = self.close() {
            // The files are about to go; an offline log is deleted all the same.
            tracing::warn!(dir = %self.inner.dir.display(), error = %e, "closing a log before deleting it failed");
        }
        fs::remove_dir_all(&self.inner.dir)
            .map_err(|e| StorageError::io(format!("remove {}", self.inner.dir.display()), e))?;
        if let Some(parent) = self.inner.dir.parent() {
            fsutil::sync_dir(parent)?;
        }
        Ok(())
    }
}

impl LogInner {
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn config_snapshot(&self) -> LogConfig {
        self.config().clone()
    }

    pub(crate) fn segments_snapshot(&self) -> Arc<Vec<Arc<Segment>>> {
        self.snapshot()
    }

    pub(crate) fn log_start(&self) -> i64 {
        self.log_start.load(Ordering::Acquire)
    }

    /// Whether a truncation waits for the running clean to stop.
    /// Stops a clean in progress and keeps any later one out (the log is being closed or
    /// deleted): a clean left running would go on reading files about to be unlinked,
    /// and write its output next to whatever log is created in this directory next.
    /// Waits for the clean to notice (it checks between batches). The abort stays raised;
    /// a later `clean` fails on the closed log anyway.
    fn stop_cleaning_for_good(&self) {
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        self.clean_abort.fetch_add(1, Ordering::AcqRel);
        drop(self.clean_lock.lock().unwrap_or_else(|p| p.into_inner()));
    }

    pub(crate) fn clean_aborted(&self) -> bool {
        self.clean_abort.load(Ordering::Acquire) > 0
    }

    /// Swaps the cleaned output written for `group` (`<base>.*.cleaned`) in place of
    /// the group's segments (see `cleaner::swap`), under the append lock. Returns false,
    /// changing nothing, when the group is no longer a run of the log's sealed segments
    /// (retention or a truncation changed the log during the clean). A failure after the
    /// swap committed on disk takes the log offline: the next open completes the swap.
    pub(crate) fn swap_cleaned(&self, group: &[Arc<Segment>]) -> Result<bool> {
        let base = group[0].base_offset();
        let _guard = self.lock_append()?;
        if let Err(e) = self.check_writable() {
            cleaner::swap::discard(&self.dir, base);
            return Err(e);
        }
        let segments = self.snapshot();
        let Some(at) = segments.iter().position(|s| Arc::ptr_eq(s, &group[0])) else {
            return Ok(false);
        };
        let unchanged = at + group.len() < segments.len()
            && group
                .iter()
                .zip(&segments[at..])
                .all(|(a, b)| Arc::ptr_eq(a, b));
        if !unchanged {
            return Ok(false);
        }
        let end = group[group.len() - 1].next_offset();
        if let Err(e) = cleaner::swap::commit(&self.dir, base) {
            let swap_log =
                cleaner::swap::file(&self.dir, base, fsutil::LOG_SUFFIX, cleaner::swap::SWAP);
            if swap_log.exists() {
                // The `.log` rename happened, its directory fsync failed: whether the swap
                // is durable is unknown. Offline, nothing can change the log before the
                // next open completes the swap (the output is complete and synced).
                self.go_offline(&e, Failure::Fatal);
            } else {
                // Not committed: the old segments stay the log.
                cleaner::swap::discard(&self.dir, base);
            }
            return Err(e);
        }
        // Committed on disk: from here the new segment is the log, whatever happens.
        let result = (|| -> Result<Segment> {
            let others: Vec<i64> = group[1..].iter().map(|s| s.base_offset()).collect();
            cleaner::swap::complete(&self.dir, base, &others)?;
            let config = self.config().clone();
            let rule = TailRule {
                cut_from: None,
                next_base: segments.get(at + group.len()).map(|s| s.base_offset()),
            };
            let (segment, _) = Segment::load(&self.dir, base, false, &layout_of(&config), rule)?;
            if segment.next_offset() != end {
                return Err(StorageError::Unavailable {
                    path: self.dir.clone(),
                    reason: format!(
                        "cleaned segment {base} ends at offset {}, expected {end}",
                        segment.next_offset()
                    ),
                });
            }
            Ok(segment)
        })();
        match result {
            Ok(segment) => {
                let mut list = Vec::with_capacity(segments.len() - group.len() + 1);
                list.extend_from_slice(&segments[..at]);
                list.push(Arc::new(segment));
                list.extend_from_slice(&segments[at + group.len()..]);
                self.replace_segments(list)?;
                Ok(true)
            }
            Err(e) => {
                tracing::error!(dir = %self.dir.display(), base_offset = base, error = %e, "swapping in a cleaned segment failed; the log is offline until reopened");
                self.go_offline(&e, Failure::Fatal);
                Err(e)
            }
        }
    }

    fn config(&self) -> std::sync::RwLockReadGuard<'_, LogConfig> {
        // Config updates are whole-value assignments; a poisoned lock is still consistent.
        self.config.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Gaps between segment files (see `damage`); a plain list, rarely non-empty.
    fn gaps(&self) -> std::sync::RwLockReadGuard<'_, Vec<DamagedRange>> {
        self.gaps.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The gap holding `offset`. The read path of a log without gaps (the normal case)
    /// checks an atomic flag and takes no lock.
    fn gap_at(&self, offset: i64) -> Option<DamagedRange> {
        if !self.has_gaps.load(Ordering::Acquire) {
            return None;
        }
        self.gaps()
            .iter()
            .find(|g| g.contains_offset(offset))
            .cloned()
    }

    fn snapshot(&self) -> Arc<Vec<Arc<Segment>>> {
        self.segments
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn active(&self) -> Arc<Segment> {
        let segments = self.snapshot();
        // The list is never empty: open creates a segment and nothing removes the last.
        segments[segments.len() - 1].clone()
    }

    fn replace_segments(&self, segments: Vec<Arc<Segment>>) -> Result<()> {
        if segments.is_empty() {
            return Err(StorageError::InvalidArgument(
                "a log needs at least one segment".into(),
            ));
        }
        *self.segments.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(segments);
        Ok(())
    }

    /// Cuts the segments at `offset` (see `truncate_to`); returns the new log end.
    fn truncate_segments(&self, offset: i64) -> Result<i64> {
        let config = self.config().clone();
        let segments = self.snapshot();
        let keep = segments
            .partition_point(|s| s.base_offset() < offset)
            .max(1);
        let kept: Vec<Arc<Segment>> = segments[..keep].to_vec();
        let dropped: Vec<Arc<Segment>> = segments[keep..].to_vec();
        let last = kept.last().cloned().ok_or(StorageError::Closed)?;
        // The recovery point and the cleaner checkpoint come down first: were a file cut
        // first, a crash (or a failed checkpoint write) in between would leave a
        // checkpoint above the log end, and offsets appended again below it would pass
        // for synced (recovery point) or already cleaned (cleaner checkpoint: a deleted
        // key would come back).
        let new_end = last.next_offset_after_truncate_to(offset)?;
        self.lower_recovery_point(new_end)?;
        // Later segments go first, durably: were the kept segment cut first, a crash in
        // between would leave a gap that recovery cannot tell from a valid log.
        self.replace_segments(kept)?;
        // Newest first: a crash part-way leaves a shorter log, never one with a hole.
        for segment in dropped.iter().rev() {
            segment.delete_files()?;
        }
        fsutil::sync_dir(&self.dir)?;
        let cut_end = last.truncate_to(offset)?;
        if cut_end != new_end {
            return Err(StorageError::InvalidArgument(format!(
                "truncation to {offset} ended the log at {cut_end}, expected {new_end}"
            )));
        }
        if !dropped.is_empty() {
            last.unseal(config.segment_bytes, config.segment_index_bytes)?;
        }
        self.drop_pending_snapshot_above(new_end);
        self.log_end.store(new_end, Ordering::Release);
        self.durable.truncate(new_end);
        Ok(new_end)
    }

    /// Replaces every segment by one empty segment at `offset`, which becomes both the log
    /// start and the log end.
    fn restart_at(&self, offset: i64) -> Result<()> {
        let config = self.config().clone();
        // Checkpoints first, as in `truncate_segments`.
        self.lower_recovery_point(offset)?;
        // Old files go first: the new segment may have the same base offset (name).
        for segment in self.snapshot().iter() {
            segment.delete_files()?;
        }
        for (_, path) in producer_state::list_snapshots(&self.dir)? {
            fsutil::remove_if_exists(&path)?;
        }
        let fresh = Segment::create(
            &self.dir,
            offset,
            config.segment_bytes,
            config.segment_index_bytes,
        )?;
        self.replace_segments(vec![Arc::new(fresh)])?;
        fsutil::write_atomically(
            &self.dir.join(LOG_START_FILE),
            offset.to_string().as_bytes(),
        )?;
        self.drop_pending_snapshot_above(offset);
        self.pending_recovery_point.store(offset, Ordering::Release);
        fsutil::sync_dir(&self.dir)?;
        self.log_end.store(offset, Ordering::Release);
        self.log_start.store(offset, Ordering::Release);
        self.durable.truncate(offset);
        Ok(())
    }

    /// Keeps the recovery point and the cleaner checkpoint at or below `log_end`, the log
    /// end a truncation is about to leave (called before any file is cut), so that
    /// segments written later are not mistaken for synced ones after a crash, nor their
    /// offsets for cleaned ones. Caller holds `sync_lock`.
    fn lower_recovery_point(&self, log_end: i64) -> Result<()> {
        if self.recovery_point.load(Ordering::Acquire) > log_end {
            self.write_recovery_point(log_end)?;
        }
        if self.pending_recovery_point.load(Ordering::Acquire) > log_end {
            self.pending_recovery_point
                .store(log_end, Ordering::Release);
        }
        self.sealed_point.fetch_min(log_end, Ordering::AcqRel);
        // The cleaner checkpoint too: offsets appended again after the cut are dirty.
        cleaner::clamp_checkpoint(&self.dir, log_end)
    }

    /// Moves the recovery point up to `synced` (an offset below which every byte was
    /// synced) inside the active segment, when the last such checkpoint is at least
    /// [`RECOVERY_POINT_CHECKPOINT_MS`] old. Skipped while a roll's point is pending: the
    /// segments it seals must be synced with their trimmed indexes first (`sync_locked`).
    /// Caller holds `sync_lock`.
    fn checkpoint_durable(&self, synced: i64, now_ms: i64, interval_ms: i64) -> Result<()> {
        let point = self.recovery_point.load(Ordering::Acquire);
        if synced <= point
            || self.pending_recovery_point.load(Ordering::Acquire)
                > self.sealed_point.load(Ordering::Acquire)
            || now_ms.saturating_sub(self.last_checkpoint_ms.load(Ordering::Acquire)) < interval_ms
        {
            return Ok(());
        }
        self.write_recovery_point(synced)?;
        self.last_checkpoint_ms.store(now_ms, Ordering::Release);
        Ok(())
    }

    /// Called by the flusher on every tick (with [`RECOVERY_POINT_CHECKPOINT_MS`]):
    /// checkpoints the recovery point to the durable offset once `interval_ms` has passed,
    /// for a log whose appends stopped after a sync that the rate limit did not checkpoint
    /// (no later sync would). A failure takes the log offline.
    pub(crate) fn checkpoint_if_due(&self, now_ms: i64, interval_ms: i64) {
        if self.closed.load(Ordering::Acquire)
            || self.offline.load(Ordering::Acquire)
            || self.durable.get() <= self.recovery_point.load(Ordering::Acquire)
            || now_ms.saturating_sub(self.last_checkpoint_ms.load(Ordering::Acquire)) < interval_ms
        {
            return;
        }
        let _sync = self.sync_lock.lock().unwrap_or_else(|p| p.into_inner());
        // Re-checked under the lock: `abandon` and a failed sync take it too.
        if self.closed.load(Ordering::Acquire) || self.offline.load(Ordering::Acquire) {
            return;
        }
        if let Err(e) = self.checkpoint_durable(self.durable.get(), now_ms, interval_ms) {
            self.go_offline(&e, Failure::Write);
            tracing::error!(dir = %self.dir.display(), error = %e, "recovery point checkpoint failed");
        }
    }

    /// Persists the recovery point. Callers hold `sync_lock`, which orders every writer
    /// of the file.
    fn write_recovery_point(&self, offset: i64) -> Result<()> {
        fsutil::write_atomically(
            &self.dir.join(RECOVERY_POINT_FILE),
            offset.to_string().as_bytes(),
        )?;
        self.recovery_point.store(offset, Ordering::Release);
        Ok(())
    }

    fn lock_hw(&self) -> MutexGuard<'_, ()> {
        // Guards no data, only orders updates of the atomic: never meaningfully poisoned.
        self.hw_lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Brings the high watermark back within [log start, log end] after either moved.
    fn clamp_high_watermark(&self) {
        let _hw = self.lock_hw();
        let current = self.high_watermark.load(Ordering::Acquire);
        let clamped = current
            .min(self.log_end.load(Ordering::Acquire))
            .max(self.log_start.load(Ordering::Acquire));
        if clamped != current {
            self.high_watermark.store(clamped, Ordering::Release);
        }
    }

    /// The log start moved to `start` (retention, DeleteRecords): the epoch cache forgets
    /// what lies before it and the high watermark is at least the log start.
    fn after_log_start_moved(&self, start: i64) {
        self.clamp_high_watermark();
        self.change_epochs(|cache| cache.truncate_from_start(start));
    }

    /// Writes `offset` to the high-watermark file. Callers hold `sync_lock`.
    fn write_high_watermark(&self, offset: i64, now_ms: i64) -> Result<()> {
        fsutil::write_atomically(
            &self.dir.join(HIGH_WATERMARK_FILE),
            offset.to_string().as_bytes(),
        )?;
        self.hw_checkpointed.store(offset, Ordering::Release);
        self.last_hw_checkpoint_ms.store(now_ms, Ordering::Release);
        Ok(())
    }

    /// Called by the flusher on every tick (with [`HIGH_WATERMARK_CHECKPOINT_MS`]):
    /// checkpoints the high watermark if it changed and the last checkpoint is at least
    /// `interval_ms` old. A failure is logged and retried on a later tick: a stale file
    /// costs only visibility after an unclean stop, never correctness.
    pub(crate) fn checkpoint_high_watermark_if_due(&self, now_ms: i64, interval_ms: i64) {
        if self.closed.load(Ordering::Acquire)
            || self.offline.load(Ordering::Acquire)
            || self.high_watermark.load(Ordering::Acquire)
                == self.hw_checkpointed.load(Ordering::Acquire)
            || now_ms.saturating_sub(self.last_hw_checkpoint_ms.load(Ordering::Acquire))
                < interval_ms
        {
            return;
        }
        let _sync = self.sync_lock.lock().unwrap_or_else(|p| p.into_inner());
        if self.closed.load(Ordering::Acquire) || self.offline.load(Ordering::Acquire) {
            return;
        }
        let offset = self.high_watermark.load(Ordering::Acquire);
        if let Err(e) = self.write_high_watermark(offset, now_ms) {
            // Not retried before the interval passes again.
            self.last_hw_checkpoint_ms.store(now_ms, Ordering::Release);
            tracing::warn!(dir = %self.dir.display(), error = %e, "high watermark checkpoint failed; will retry");
        }
    }

    fn read_epochs(&self) -> std::sync::RwLockReadGuard<'_, EpochCache> {
        // Replaced whole under the append lock: a poisoned lock still holds a valid cache.
        self.epochs.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Installs `cache` as the leader-epoch cache. Caller holds the append lock.
    fn install_epochs(&self, cache: EpochCache) {
        let latest = cache.latest().map_or(NO_EPOCH, |e| e.epoch);
        *self.epochs.write().unwrap_or_else(|p| p.into_inner()) = cache;
        self.latest_epoch.store(latest, Ordering::Release);
    }

    /// Checkpoints `cache` and then installs it; on a failed write nothing changes (the
    /// append that needed it fails before writing anything). Caller holds the append lock.
    fn install_epochs_persisted(&self, cache: EpochCache) -> Result<()> {
        cache.write(&self.dir)?;
        self.install_epochs(cache);
        self.epochs_dirty.store(false, Ordering::Release);
        Ok(())
    }

    /// [`LogInner::install_epochs_persisted`] of the cache as `change` leaves it, if it
    /// says it changed anything.
    fn change_epochs_persisted(&self, change: impl FnOnce(&mut EpochCache) -> bool) -> Result<()> {
        let mut cache = self.read_epochs().clone();
        if !change(&mut cache) {
            return Ok(());
        }
        self.install_epochs_persisted(cache)
    }

    /// Applies `change` to the cache for a change the log already made (a truncation, a
    /// new log start): installed whatever happens, then checkpointed; a failed write is
    /// retried by the flusher (and an older file is cut to the log at the next open).
    /// Caller holds the append lock.
    fn change_epochs(&self, change: impl FnOnce(&mut EpochCache) -> bool) {
        let mut cache = self.read_epochs().clone();
        if !change(&mut cache) {
            return;
        }
        let written = cache.write(&self.dir);
        self.install_epochs(cache);
        match written {
            Ok(()) => self.epochs_dirty.store(false, Ordering::Release),
            Err(e) => {
                self.epochs_dirty.store(true, Ordering::Release);
                tracing::warn!(dir = %self.dir.display(), error = %e, "leader epoch checkpoint failed; will retry");
            }
        }
    }

    /// Writes the epoch checkpoint again if an earlier write failed. Caller holds the
    /// append lock (or is the flusher, which takes it here).
    fn retry_epoch_checkpoint(&self) {
        if !self.epochs_dirty.load(Ordering::Acquire) {
            return;
        }
        let cache = self.read_epochs().clone();
        match cache.write(&self.dir) {
            Ok(()) => self.epochs_dirty.store(false, Ordering::Release),
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "leader epoch checkpoint failed again; will retry");
            }
        }
    }

    /// Called by the flusher on every tick: retries a failed epoch checkpoint.
    pub(crate) fn epoch_checkpoint_if_dirty(&self) {
        if !self.epochs_dirty.load(Ordering::Acquire)
            || self.closed.load(Ordering::Acquire)
            || self.offline.load(Ordering::Acquire)
        {
            return;
        }
        let Ok(_guard) = self.lock_append() else {
            return;
        };
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        self.retry_epoch_checkpoint();
    }

    fn lock_append(&self) -> Result<MutexGuard<'_, AppendState>> {
        Ok(self.append_lock.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StorageError::Closed);
        }
        Ok(())
    }

    /// Fails for a log that could not be loaded (see [`PartitionLog::unavailable`]).
    fn check_loaded(&self) -> Result<()> {
        match &self.load_error {
            Some(reason) => Err(StorageError::Unavailable {
                path: self.dir.clone(),
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    fn check_writable(&self) -> Result<()> {
        self.check_loaded()?;
        self.check_open()?;
        if self.offline.load(Ordering::Acquire) {
            return Err(StorageError::Offline {
                path: self.dir.clone(),
            });
        }
        Ok(())
    }

    /// Latches the log offline after a failed write or sync: nothing more is written,
    /// nothing more is reported durable, and durable waiters are released with an error.
    /// The flusher then probes the disk with backoff and heals the log (see `heal`).
    fn go_offline(&self, error: &StorageError, during: Failure) {
        let kind = Failure::of(error, during);
        // The most demanding failure seen wins (a sync failure after a write failure
        // still needs the rewrite).
        self.offline_kind.fetch_max(kind as u8, Ordering::AcqRel);
        if !self.offline.swap(true, Ordering::AcqRel) {
            let mut schedule = self.lock_heal();
            schedule.backoff_ms = HEAL_BACKOFF_MIN_MS;
            schedule.next_ms = now_ms() + HEAL_BACKOFF_MIN_MS;
            drop(schedule);
            tracing::error!(dir = %self.dir.display(), %error, ?kind, "log taken offline after an I/O failure");
        }
        self.durable.fail(false);
    }

    fn lock_heal(&self) -> MutexGuard<'_, HealSchedule> {
        // Two plain integers: a poisoned lock still holds a usable schedule.
        self.heal.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_pending_snapshot(&self) -> MutexGuard<'_, Option<(i64, Vec<u8>)>> {
        // Replaced whole or taken: a poisoned lock still holds a usable value.
        self.pending_snapshot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Writes the snapshot a roll left for the flusher. A failure costs only recovery
    /// time (an older snapshot and more headers are replayed), so it is logged and the
    /// write is tried again at the next sync rather than taking the log offline.
    fn write_pending_snapshot(&self) {
        let Some((offset, encoded)) = self.lock_pending_snapshot().take() else {
            return;
        };
        if let Err(e) = producer_state::write_encoded_snapshot(&self.dir, offset, &encoded) {
            tracing::warn!(dir = %self.dir.display(), offset, error = %e, "cannot write the producer-state snapshot; will retry");
            let mut pending = self.lock_pending_snapshot();
            if pending.is_none() {
                *pending = Some((offset, encoded));
            }
        }
    }

    /// Forgets a snapshot not yet written for an offset a truncation removed.
    fn drop_pending_snapshot_above(&self, log_end: i64) {
        let mut pending = self.lock_pending_snapshot();
        if pending
            .as_ref()
            .is_some_and(|(offset, _)| *offset > log_end)
        {
            *pending = None;
        }
    }

    /// Called by the flusher on every tick: probes an offline log whose backoff has
    /// passed and heals it if the disk takes writes again.
    pub(crate) fn heal_if_due(&self, now_ms: i64) {
        if !self.offline.load(Ordering::Acquire) || self.closed.load(Ordering::Acquire) {
            return;
        }
        {
            let mut schedule = self.lock_heal();
            if now_ms < schedule.next_ms {
                return;
            }
            // Pessimistic: pushed back before trying, so a slow failing probe is not
            // retried at once.
            schedule.next_ms = now_ms + schedule.backoff_ms;
            schedule.backoff_ms = (schedule.backoff_ms * 2).min(HEAL_BACKOFF_MAX_MS);
        }
        let Ok(guard) = self.lock_append() else {
            return;
        };
        match self.heal(&guard) {
            Ok(true) => {
                let mut schedule = self.lock_heal();
                schedule.backoff_ms = HEAL_BACKOFF_MIN_MS;
            }
            Ok(false) => {}
            Err(e) => {
                tracing::debug!(dir = %self.dir.display(), error = %e, "offline log not healed yet");
            }
        }
    }

    /// Brings an offline log back once its directory takes writes and syncs again.
    /// Caller holds the append lock. Returns whether the log is online afterwards.
    ///
    /// What is redone depends on the failure (see [`Failure`]): the bytes a failed write
    /// left after the last published batch are cut; after a failed sync, the batches
    /// from the durable offset on are CRC-checked and written again; then every segment
    /// and the directory are synced. Only then is the log end reported durable. If the
    /// re-check finds damaged bytes, the log stays offline for restart recovery.
    fn heal(&self, _guard: &MutexGuard<'_, AppendState>) -> Result<bool> {
        let _sync = self.sync_lock.lock().unwrap_or_else(|p| p.into_inner());
        if !self.offline.load(Ordering::Acquire) {
            return Ok(true);
        }
        if self.closed.load(Ordering::Acquire) {
            return Ok(false);
        }
        let kind = Failure::from_u8(self.offline_kind.load(Ordering::Acquire));
        if kind == Failure::Fatal {
            return Ok(false);
        }
        // The probe: a small file written, synced, renamed and removed.
        let probe = self.dir.join(PROBE_FILE);
        let probed = fsutil::write_atomically(&probe, &[0u8; PROBE_BYTES]);
        fsutil::remove_if_exists(&probe)?;
        probed?;

        let config = self.config().clone();
        let segments = self.snapshot();
        let active = self.active();
        let cut = active.discard_unpublished()?;
        let log_end = self.log_end.load(Ordering::Acquire);
        if active.base_offset() != log_end {
            // Files of a segment a failed roll began to create at the log end.
            for suffix in [LOG_SUFFIX, fsutil::INDEX_SUFFIX, fsutil::TIME_INDEX_SUFFIX] {
                fsutil::remove_if_exists(&fsutil::segment_file(&self.dir, log_end, suffix))?;
            }
        }
        // A failed roll may have trimmed the active segment's indexes: make room again.
        active.unseal(config.segment_bytes, config.segment_index_bytes)?;
        let durable = self.durable.get();
        if kind == Failure::Sync {
            for segment in segments.iter().filter(|s| s.next_offset() > durable) {
                if let Err(e) = segment.rewrite_from(durable.max(segment.base_offset())) {
                    if !matches!(e, StorageError::Io { .. }) {
                        self.offline_kind
                            .store(Failure::Fatal as u8, Ordering::Release);
                        tracing::error!(dir = %self.dir.display(), error = %e, "the log's tail is damaged after a failed sync; it stays offline until a restart recovers it");
                    }
                    return Err(e);
                }
            }
        }
        let synced = (|| -> Result<()> {
            for segment in segments
                .iter()
                .filter(|s| s.next_offset() > durable || s.base_offset() >= durable)
            {
                segment.sync_all()?;
            }
            fsutil::sync_dir(&self.dir)
        })();
        if let Err(e) = synced {
            // Another failed sync: the next heal must rewrite the range again.
            self.offline_kind
                .fetch_max(Failure::of(&e, Failure::Sync) as u8, Ordering::AcqRel);
            return Err(e);
        }
        self.dir_dirty.store(false, Ordering::Release);
        self.write_pending_snapshot();
        self.offline_kind
            .store(Failure::None as u8, Ordering::Release);
        self.durable.resume();
        self.durable.advance(log_end);
        self.offline.store(false, Ordering::Release);
        tracing::warn!(dir = %self.dir.display(), ?kind, bytes_cut = cut, log_end, "log back online: its directory takes writes again and its tail was re-checked and synced");
        Ok(true)
    }

    /// Rolls to a new segment when the append of `incoming` bytes should not go into the
    /// active one. Caller holds the append lock.
    fn maybe_roll(
        &self,
        guard: &MutexGuard<'_, AppendState>,
        config: &LogConfig,
        incoming: u64,
        now_ms: i64,
    ) -> Result<()> {
        let active = self.active();
        if active.is_empty() {
            return Ok(());
        }
        let log_end = self.log_end.load(Ordering::Acquire);
        let too_big = active.size() + incoming > config.segment_bytes;
        let first_append = active.first_append_ms();
        let too_old = config.segment_ms.is_some_and(|ms| {
            first_append != NO_TIMESTAMP && now_ms.saturating_sub(first_append) > ms
        });
        // Relative offsets in the indexes are u32.
        let offsets_overflow = log_end - active.base_offset() > i32::MAX as i64;
        if !(too_big || too_old || offsets_overflow || active.indexes_full()) {
            return Ok(());
        }
        self.roll(guard, config, log_end)
    }

    /// Seals the active segment and starts a new one at `log_end`, snapshotting the
    /// producer state there so that recovery never replays more than one segment.
    fn roll(&self, state: &AppendState, config: &LogConfig, log_end: i64) -> Result<()> {
        let active = self.active();
        let result = (|| -> Result<Arc<Segment>> {
            active.seal()?;
            let fresh = Segment::create(
                &self.dir,
                log_end,
                config.segment_bytes,
                config.segment_index_bytes,
            )?;
            Ok(Arc::new(fresh))
        })();
        let fresh = match result {
            Ok(segment) => segment,
            Err(e) => {
                self.go_offline(&e, Failure::Write);
                return Err(e);
            }
        };
        // Encoding is cheap; writing it takes two fsyncs, which the flusher does (see
        // `sync_locked`), so mass rolls do not stall appenders (and their threads).
        *self.lock_pending_snapshot() = Some((log_end, state.producers.encode(log_end)));
        let mut segments: Vec<Arc<Segment>> = self.snapshot().as_ref().clone();
        segments.push(fresh);
        self.replace_segments(segments)?;
        self.dir_dirty.store(true, Ordering::Release);
        self.pending_recovery_point
            .store(log_end, Ordering::Release);
        self.flusher
            .stats()
            .segment_rolls
            .fetch_add(1, Ordering::Relaxed);
        tracing::debug!(dir = %self.dir.display(), base_offset = log_end, "rolled segment");
        Ok(())
    }

    /// Deletes the `count` oldest segments, rolling first if that includes the active one.
    fn delete_oldest(
        &self,
        guard: &MutexGuard<'_, AppendState>,
        count: usize,
        _now_ms: i64,
    ) -> Result<RetentionOutcome> {
        let mut outcome = RetentionOutcome::default();
        if count == 0 {
            return Ok(outcome);
        }
        let mut segments = self.snapshot();
        if count >= segments.len() {
            let config = self.config().clone();
            let log_end = self.log_end.load(Ordering::Acquire);
            if !self.active().is_empty() {
                self.roll(guard, &config, log_end)?;
            }
            segments = self.snapshot();
        }
        let count = count.min(segments.len() - 1);
        let (doomed, kept) = segments.split_at(count);
        let kept = kept.to_vec();
        let new_start = kept.first().map_or(0, |s| s.base_offset());
        self.replace_segments(kept)?;
        let start = self.log_start.load(Ordering::Acquire).max(new_start);
        self.log_start.store(start, Ordering::Release);
        self.after_log_start_moved(start);
        for segment in doomed {
            outcome.segments_deleted += 1;
            outcome.bytes_deleted += segment.size();
            segment.delete_files()?;
        }
        if outcome.segments_deleted > 0 {
            self.dir_dirty.store(true, Ordering::Release);
            tracing::info!(
                dir = %self.dir.display(),
                segments = outcome.segments_deleted,
                bytes = outcome.bytes_deleted,
                log_start = start,
                "deleted old segments"
            );
        }
        Ok(outcome)
    }

    fn after_append(self: &Arc<Self>, config: &LogConfig, records: u64) {
        match config.flush {
            FlushPolicy::Always => self.flusher.request(self, &self.flush_pending),
            FlushPolicy::Interval {
                messages: Some(limit),
                ..
            } => {
                let unflushed =
                    self.unflushed_messages.fetch_add(records, Ordering::AcqRel) + records;
                if unflushed >= limit {
                    self.flusher.request(self, &self.flush_pending);
                }
            }
            FlushPolicy::Interval { .. } | FlushPolicy::Os => {
                if self.pending_recovery_point.load(Ordering::Acquire)
                    > self.sealed_point.load(Ordering::Acquire)
                {
                    self.flusher.request(self, &self.flush_pending);
                }
            }
        }
    }

    /// Called by the flusher for a log that asked for a sync.
    pub(crate) fn flush_requested(&self) {
        self.flush_pending.store(false, Ordering::Release);
        if self.closed.load(Ordering::Acquire) || self.offline.load(Ordering::Acquire) {
            return;
        }
        if let Err(e) = self.background_sync() {
            tracing::error!(dir = %self.dir.display(), error = %e, "flush failed");
        }
    }

    /// Called by the flusher on every tick: syncs logs whose flush interval has passed.
    pub(crate) fn flush_if_due(&self, now_ms: i64) {
        let FlushPolicy::Interval {
            ms: Some(interval), ..
        } = self.config().flush
        else {
            return;
        };
        if self.closed.load(Ordering::Acquire) || self.offline.load(Ordering::Acquire) {
            return;
        }
        let last = self.last_flush_ms.load(Ordering::Acquire);
        let behind = self.durable.get() < self.log_end.load(Ordering::Acquire);
        if behind && now_ms.saturating_sub(last) >= interval as i64 {
            if let Err(e) = self.background_sync() {
                tracing::error!(dir = %self.dir.display(), error = %e, "interval flush failed");
            }
        }
    }

    /// Syncs every segment with unsynced bytes, then advances the durable watermark to the
    /// log end seen before syncing, and checkpoints the recovery point after a roll.
    fn sync_to_end(&self) -> Result<()> {
        let _sync = self.sync_lock.lock().unwrap_or_else(|p| p.into_inner());
        self.sync_locked()
    }

    /// A sync started by the flusher: skipped once the log is closed or abandoned (checked
    /// under the sync lock, so it cannot race with `abandon`).
    fn background_sync(&self) -> Result<()> {
        let _sync = self.sync_lock.lock().unwrap_or_else(|p| p.into_inner());
        if self.closed.load(Ordering::Acquire) {
            return Ok(());
        }
        self.sync_locked()
    }

    /// The body of a sync; caller holds `sync_lock`.
    fn sync_locked(&self) -> Result<()> {
        // Never retry a sync after one failed: what reached the disk is unknown.
        if self.offline.load(Ordering::Acquire) {
            return Err(StorageError::Offline {
                path: self.dir.clone(),
            });
        }
        // Everything below `target` was written before `log_end` was published, and its
        // segment was marked dirty before that, so the syncs below cover it.
        let target = self.log_end.load(Ordering::Acquire);
        let pending_point = self.pending_recovery_point.load(Ordering::Acquire);
        let segments = self.snapshot();
        let started = std::time::Instant::now();
        self.write_pending_snapshot();
        let result = (|| -> Result<()> {
            for segment in segments.iter() {
                segment.sync_if_dirty()?;
            }
            if self.dir_dirty.swap(false, Ordering::AcqRel) {
                fsutil::sync_dir(&self.dir)?;
            }
            if pending_point > self.sealed_point.load(Ordering::Acquire) {
                // Sealed segments below the new point: their trimmed indexes must be on
                // disk too, since recovery will trust them.
                let old_point = self.sealed_point.load(Ordering::Acquire);
                for segment in segments
                    .iter()
                    .filter(|s| s.base_offset() < pending_point && s.next_offset() > old_point)
                {
                    segment.sync_all()?;
                }
                // A checkpoint may already have moved the point to the roll's offset.
                let point = pending_point.max(self.recovery_point.load(Ordering::Acquire));
                self.write_recovery_point(point)?;
                self.sealed_point.store(pending_point, Ordering::Release);
            }
            self.checkpoint_durable(target, now_ms(), RECOVERY_POINT_CHECKPOINT_MS)
        })();
        let stats = self.flusher.stats();
        if let Err(e) = result {
            stats.sync_failures.fetch_add(1, Ordering::Relaxed);
            self.go_offline(&e, Failure::Sync);
            return Err(e);
        }
        stats.sync_latency.record_duration(started.elapsed());
        let made_durable = target.saturating_sub(self.durable.get()).max(0);
        if made_durable > 0 {
            stats.sync_records.record(made_durable as u64);
        }
        self.unflushed_messages.store(0, Ordering::Release);
        self.last_flush_ms.store(now_ms(), Ordering::Release);
        self.durable.advance(target);
        Ok(())
    }
}

/// KIP-101/KIP-279: the offset a follower must truncate its log to, given the leader's
/// answer for the follower's latest epoch (`leader`: the leader's
/// [`PartitionLog::end_offset_for_epoch`] of it, or a Fetch response's diverging epoch),
/// as Kafka's fetcher decides it (`AbstractFetcherThread.getOffsetTruncationState`):
/// - no answer (the leader knows no such epoch, Kafka's UNDEFINED_EPOCH_OFFSET): the
///   follower's high watermark;
/// - the follower has the epoch the leader answered: the smaller of the two end offsets
///   of that epoch;
/// - the follower has only smaller epochs: the end of its largest epoch below the
///   leader's (then the follower asks again with its new latest epoch), or, with no such
///   epoch (it did not track epochs then), the leader's end offset.
///
/// Never above the follower's log end. Calling it again with the answer for the
/// follower's (new) latest epoch after truncating converges: once the logs agree, it
/// returns the follower's log end.
pub fn truncation_offset(follower: &PartitionLog, leader: Option<EpochEndOffset>) -> i64 {
    let log_end = follower.log_end_offset();
    let Some(leader) = leader.filter(|l| l.end_offset >= 0) else {
        return follower.high_watermark().min(log_end);
    };
    if leader.leader_epoch < 0 {
        // A leader without epoch information (Kafka: pre-KIP-101): its end offset.
        return leader.end_offset.min(log_end);
    }
    match follower.end_offset_for_epoch(leader.leader_epoch) {
        Some(mine) if mine.leader_epoch == leader.leader_epoch => {
            mine.end_offset.min(leader.end_offset).min(log_end)
        }
        // The follower never saw the leader's epoch: cut back to where its own largest
        // epoch below it ended, and ask again.
        Some(mine) => mine.end_offset.min(log_end),
        None => leader.end_offset.min(log_end),
    }
}

/// The high watermark at open: the checkpoint cut to [log start, log end]; with no
/// checkpoint (a directory of a release before replication, where every appended record
/// was visible) the log end, written at once so that from now on records appended but
/// not yet committed stay hidden after an unclean stop.
fn load_high_watermark(dir: &Path, log_start: i64, log_end: i64) -> Result<i64> {
    match read_offset_file(&dir.join(HIGH_WATERMARK_FILE))? {
        Some(stored) => Ok(stored.min(log_end).max(log_start)),
        None => {
            fsutil::write_atomically(
                &dir.join(HIGH_WATERMARK_FILE),
                log_end.to_string().as_bytes(),
            )?;
            Ok(log_end)
        }
    }
}

/// The leader-epoch cache at open: the checkpoint, cut to the log's start and end
/// (recovery may have cut the tail a crash tore). Rebuilt from the batches' partition
/// leader epochs when the checkpoint is missing (a directory of an earlier release: once),
/// damaged (with a warning), or misses the epoch of the log's last batch (its write
/// failed before a crash). Written back when it changed.
fn load_epoch_cache(
    dir: &Path,
    segments: &[Arc<Segment>],
    log_start: i64,
    log_end: i64,
) -> Result<EpochCache> {
    let mut missing = false;
    let stored = match epoch_cache::load(dir)? {
        Loaded::Cache(cache) => {
            let last = last_batch_epoch(segments, log_start, log_end);
            let latest = cache.latest().map_or(NO_EPOCH, |e| e.epoch);
            if last.is_some_and(|epoch| epoch > latest) {
                tracing::warn!(dir = %dir.display(), latest, last_batch_epoch = ?last, "leader epoch checkpoint is behind the log; rebuilding it from the batches");
                None
            } else {
                Some(cache)
            }
        }
        Loaded::Missing => {
            tracing::debug!(dir = %dir.display(), "no leader epoch checkpoint; building it from the batches");
            missing = true;
            None
        }
        Loaded::Damaged(reason) => {
            tracing::warn!(dir = %dir.display(), %reason, "damaged leader epoch checkpoint; rebuilding it from the batches");
            None
        }
    };
    let mut changed = stored.is_none();
    let mut cache = stored.unwrap_or_else(|| epochs_from_batches(dir, segments, log_start));
    changed |= cache.truncate_from_end(log_end);
    changed |= cache.truncate_from_start(log_start);
    // A new, empty log needs no file yet (there is nothing to scan at the next open);
    // its first epoch writes it.
    let new_log = missing && log_end <= log_start;
    if changed && !new_log {
        cache.write(dir)?;
    }
    Ok(cache)
}

/// The leader-epoch cache the batches' headers describe. Unreadable bytes end the scan
/// of their segment with a warning (the cache is then as good as what was read).
fn epochs_from_batches(dir: &Path, segments: &[Arc<Segment>], log_start: i64) -> EpochCache {
    let mut cache = EpochCache::default();
    for segment in segments.iter().filter(|s| s.next_offset() > log_start) {
        let scanned = segment.for_each_header(segment.base_offset().max(log_start), |header| {
            cache.assign(header.partition_leader_epoch(), header.base_offset());
        });
        if let Err(e) = scanned {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot read every batch header while rebuilding the leader epoch cache");
        }
    }
    cache
}

/// The partition leader epoch of the log's last batch, if it can be read.
fn last_batch_epoch(segments: &[Arc<Segment>], log_start: i64, log_end: i64) -> Option<i32> {
    if log_end <= log_start {
        return None;
    }
    let segment = segments.iter().rev().find(|s| !s.is_empty())?;
    let mut last = None;
    segment
        .for_each_header((log_end - 1).max(segment.base_offset()), |header| {
            last = Some(header.partition_leader_epoch());
        })
        .ok()?;
    last
}

fn layout_of(config: &LogConfig) -> Layout {
    Layout {
        capacity: config.segment_bytes,
        index_bytes: config.segment_index_bytes,
        index_interval: config.index_interval_bytes,
    }
}

/// Producer state at `log_end`: the newest snapshot at or below it plus the headers of
/// the batches after it.
fn rebuild_producer_states(
    dir: &Path,
    segments: &[Arc<Segment>],
    log_end: i64,
) -> Result<ProducerStates> {
    let (from, mut states) = match producer_state::load_snapshot(dir, log_end)? {
        Some((offset, states)) => (offset, states),
        None => (i64::MIN, ProducerStates::default()),
    };
    for segment in segments.iter().filter(|s| s.next_offset() > from) {
        segment.for_each_header(from.max(segment.base_offset()), |header| {
            if header.base_offset() >= from {
                states.replay(header);
            }
        })?;
    }
    Ok(states)
}

/// Splits a produce payload into validated batches, each with the largest timestamp of
/// its records. Nothing is written on any error.
fn parse_produced<'a>(
    records: &'a [u8],
    max_message_bytes: usize,
    checks: &RecordChecks,
    compression: Option<TargetCompression>,
) -> Result<Vec<(Cow<'a, [u8]>, i64)>> {
    if records.is_empty() {
        return Err(BatchError::Truncated {
            needed: HEADER_SIZE,
            available: 0,
        }
        .into());
    }
    let mut batches = Vec::new();
    let mut rest = records;
    while !rest.is_empty() {
        // Kafka compares the whole batch, with its 12-byte log overhead, to
        // max.message.bytes.
        let size = BatchHeader::new(rest)?.total_size();
        if size > max_message_bytes as i64 {
            return Err(StorageError::MessageTooLarge {
                size: size as usize,
                max: max_message_bytes,
            });
        }
        let size = batch::check_framing(rest, usize::MAX)?;
        let (one, tail) = rest.split_at(size);
        let checked = batch::validate_produced_batch_with(one, checks)?;
        let stored = match compression {
            Some(target) => {
                match batch::recompress(one, target, checks.max_decompressed_bytes)? {
                    // Kafka checks the converted batch against the limit too.
                    Some(converted) if converted.len() > max_message_bytes => {
                        return Err(StorageError::MessageTooLarge {
                            size: converted.len(),
                            max: max_message_bytes,
                        });
                    }
                    Some(converted) => Cow::Owned(converted),
                    None => Cow::Borrowed(one),
                }
            }
            None => Cow::Borrowed(one),
        };
        batches.push((stored, checked.max_timestamp));
        rest = tail;
    }
    Ok(batches)
}

/// Writes CreateTime and the records' `max_timestamp` into a prepared header, recomputing
/// the CRC over the new header fields and the unchanged body.
fn patch_create_time(head: &mut [u8; HEADER_SIZE], body: &[u8], max_timestamp: i64) {
    batch::patch_create_time(head, max_timestamp);
    let crc = crc32c::crc32c_append(crc32c::crc32c(&head[21..]), body);
    head[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// Sets LogAppendTime on a prepared header, recomputing the CRC over the new header
/// fields and the unchanged body (the record bytes are read, not copied).
fn patch_log_append_time(head: &mut [u8; HEADER_SIZE], body: &[u8], now_ms: i64) {
    batch::patch_log_append_time(head, now_ms);
    let crc = crc32c::crc32c_append(crc32c::crc32c(&head[21..]), body);
    head[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// The first record of `batch` with timestamp >= `timestamp` and offset in the log.
fn first_record_at_or_after(
    batch: &Bytes,
    timestamp: i64,
    log_start: i64,
    log_end: i64,
) -> Result<Option<TimestampOffset>> {
    for record in Records::decode(batch.clone())? {
        let record = record?;
        if record.offset >= log_end {
            break;
        }
        if record.timestamp >= timestamp && record.offset >= log_start {
            return Ok(Some(TimestampOffset {
                timestamp: record.timestamp,
                offset: record.offset,
            }));
        }
    }
    Ok(None)
}

/// The record with the largest timestamp in `[log_start, log_end)` (the first of equals),
/// by a scan of `segments`; only batches whose max timestamp could beat the best so far
/// are decoded. A segment whose batches stop framing (damage) is scanned up to there.
fn max_record_timestamp(
    segments: &[Arc<Segment>],
    log_start: i64,
    log_end: i64,
) -> Result<Option<TimestampOffset>> {
    let mut best: Option<TimestampOffset> = None;
    for segment in segments.iter().filter(|s| s.next_offset() > log_start) {
        let data = segment.bytes()?;
        let mut position = 0;
        for batch in batch::batches(&data) {
            let Ok(batch) = batch else {
                tracing::warn!(segment = %segment.log_path().display(), position, "max timestamp scan stops at a batch that does not frame");
                break;
            };
            let start = position;
            position += batch.len();
            let header = BatchHeader::new(batch)?;
            if header.records_count() == 0
                || header.next_offset() <= log_start
                || header.base_offset() >= log_end
                || best.is_some_and(|b| header.max_timestamp() <= b.timestamp)
            {
                continue;
            }
            for record in Records::decode(data.slice(start..position))? {
                let record = record?;
                if record.offset < log_start || record.offset >= log_end {
                    continue;
                }
                if best.is_none_or(|b| record.timestamp > b.timestamp) {
                    best = Some(TimestampOffset {
                        timestamp: record.timestamp,
                        offset: record.offset,
                    });
                }
            }
        }
    }
    Ok(best)
}

/// Base offsets of the segments in `dir`, sorted; removes index files without a log.
/// (A temp file left by a crash during an atomic write is harmless: the next write of
/// the same file reuses its name.)
fn list_segments(dir: &Path) -> Result<Vec<i64>> {
    let mut logs = Vec::new();
    let mut others = Vec::new();
    let entries =
        fs::read_dir(dir).map_err(|e| StorageError::io(format!("list {}", dir.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StorageError::io(format!("list {}", dir.display()), e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        match parse_segment_file_name(name) {
            Some((base, LOG_SUFFIX)) => logs.push(base),
            Some((base, _)) => others.push((base, entry.path())),
            None => {}
        }
    }
    logs.sort_unstable();
    for (base, path) in others {
        let is_index = path
            .extension()
            .is_some_and(|e| e == fsutil::INDEX_SUFFIX || e == fsutil::TIME_INDEX_SUFFIX);
        if is_index && logs.binary_search(&base).is_err() {
            tracing::info!(file = %path.display(), "removing index file without a segment");
            fsutil::remove_if_exists(&path)?;
        }
    }
    Ok(logs)
}

pub(crate) fn read_offset_file(path: &Path) -> Result<Option<i64>> {
    let Some(bytes) = fsutil::read_optional(path)? else {
        return Ok(None);
    };
    let parsed = std::str::from_utf8(&bytes)
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok());
    if parsed.is_none() {
        tracing::warn!(file = %path.display(), "ignoring unreadable checkpoint file");
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{BatchBuilder, Compression};

    fn one_record() -> Vec<u8> {
        let mut builder = BatchBuilder::new(Compression::None);
        builder.push(1_000, None, Some(b"v"), &[]);
        builder.build().unwrap().to_vec()
    }

    fn stored_point(dir: &Path) -> String {
        fs::read_to_string(dir.join(RECOVERY_POINT_FILE)).unwrap()
    }

    fn wait_durable(log: &PartitionLog, offset: i64) {
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        while log.durable_offset() < offset {
            assert!(Instant::now() < deadline, "offset {offset} never durable");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    #[test]
    fn the_recovery_point_follows_the_durable_offset_at_most_once_per_interval() {
        let dir = tempfile::tempdir().unwrap();
        let flusher = Flusher::start("t").unwrap();
        let config = LogConfig {
            flush: FlushPolicy::Always,
            ..LogConfig::default()
        };
        let (log, _) = PartitionLog::open(dir.path(), config, &flusher, false).unwrap();
        log.append(&one_record(), 0, 0).unwrap();
        wait_durable(&log, 1);
        // The first sync after open checkpoints at once (before it reports durable).
        assert_eq!(stored_point(dir.path()), "1");
        for _ in 0..5 {
            log.append(&one_record(), 0, 0).unwrap();
        }
        wait_durable(&log, 6);
        assert_eq!(stored_point(dir.path()), "1", "rate-limited");
        // With no sync coming, the flusher's tick catches up once the interval passed.
        let due =
            log.inner.last_checkpoint_ms.load(Ordering::Acquire) + RECOVERY_POINT_CHECKPOINT_MS;
        log.inner
            .checkpoint_if_due(due - 1, RECOVERY_POINT_CHECKPOINT_MS);
        assert_eq!(stored_point(dir.path()), "1", "not before the interval");
        log.inner
            .checkpoint_if_due(due, RECOVERY_POINT_CHECKPOINT_MS);
        assert_eq!(stored_point(dir.path()), "6");
        log.abandon();
    }
}
