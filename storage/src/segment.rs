//! One segment of a partition log: `<base offset>.log` with its `.index` and `.timeindex`.
//!
//! The `.log` file is record batches laid end to end, exactly as producers sent them
//! (Kafka RecordBatch v2) with the base offset and partition leader epoch patched in.
//! It is opened with `O_APPEND` and written only at its end; it is mapped read-only with a
//! mapping larger than the file (the segment's capacity) so that readers can hand out
//! `Bytes` that borrow the page cache: no record byte is copied inside the process.
//!
//! Threading: `append`, `recover`, `seal` and `truncate_to` are called only by the
//! owning log under its append lock. Readers (`read`, `find_*`) never take that lock: they
//! read the published `size`/`next_offset` atomics and only touch bytes below `size`,
//! which were fully written before `size` was advanced (Release/Acquire).
//!
//! Descriptors: only a segment that can be written holds its `.log` file open (the
//! active one, and a sealed one until its bytes are synced). Reads go through the
//! mapping, which needs no descriptor, so once a sealed segment is synced its file is
//! closed, and the rare operations on it that need the file (a rebuild, a truncation,
//! a resize of its mapping) open it for that call only. The indexes hold none at all
//! (see `index_file`). Open files thus grow with the partitions, not with the segments;
//! mappings still do (up to three per segment, counted by `vm.max_map_count`).
//!
//! A hazard kept out of the way by the log: the file must not shrink (`truncate_to`,
//! `recover`) while a reader may still hold a `Bytes` past the new end, or that reader
//! would fault. Recovery runs before a log is shared; explicit truncation is documented
//! as requiring no concurrent readers of the truncated range.

use std::fs::{File, OpenOptions};
use std::io::{IoSlice, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use memmap2::{Mmap, MmapOptions};

use crate::batch::{self, BatchHeader, HEADER_SIZE};
use crate::damage::{self, DamagedRange};
use crate::error::{BatchError, Result, StorageError};
use crate::faults;
use crate::fsutil::{segment_file, INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX};
use crate::offset_index::OffsetIndex;
use crate::time_index::TimeIndex;

/// Sentinel for "no timestamp yet".
pub(crate) const NO_TIMESTAMP: i64 = -1;

/// Sizes a segment is created or reopened with (from the log's config).
pub(crate) struct Layout {
    /// Read-mapping capacity of an active segment: `segment.bytes`.
    pub capacity: u64,
    /// `segment.index.bytes`.
    pub index_bytes: u64,
    /// `index.interval.bytes`.
    pub index_interval: u64,
}

/// What recovery may do with bytes of a segment that are not valid batches. Only the
/// active segment may be cut, and only from the recovery point on (a torn write); any
/// other damage is kept on disk and recorded as a [`DamagedRange`] (see `damage`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct TailRule {
    /// Offsets at or after this may be cut. `None` for a sealed segment: nothing may.
    pub cut_from: Option<i64>,
    /// Base offset of the next segment, if any: no batch of this one may reach it.
    pub next_base: Option<i64>,
}

/// How many new damaged ranges one read may discover before it gives up (each discovery
/// rescans the read; a bound keeps a pathological file from looping).
const MAX_DAMAGE_DISCOVERIES: usize = 16;

/// A batch ready to be written: its bytes in the producer's buffer plus the patched header.
pub(crate) struct PreparedBatch<'a> {
    pub header: [u8; HEADER_SIZE],
    pub body: &'a [u8],
    pub base_offset: i64,
    pub next_offset: i64,
    pub max_timestamp: i64,
}

impl PreparedBatch<'_> {
    pub(crate) fn size(&self) -> usize {
        HEADER_SIZE + self.body.len()
    }
}

/// A read-only mapping of (a prefix of) the log file, shared with the `Bytes` handed out.
struct MapSlice {
    map: Arc<Mmap>,
    start: usize,
    end: usize,
}

impl AsRef<[u8]> for MapSlice {
    fn as_ref(&self) -> &[u8] {
        &self.map[self.start..self.end]
    }
}

struct Mapping {
    map: Option<Arc<Mmap>>,
    capacity: u64,
}

/// What a read found in one segment.
pub(crate) struct SegmentRead {
    /// Whole batches, contiguous in the file.
    pub records: Bytes,
    /// Base offset of the first batch returned (None when the first batch did not fit).
    pub first_offset: Option<i64>,
}

pub(crate) struct Segment {
    base_offset: i64,
    log_path: PathBuf,
    /// The `.log` descriptor while the segment may be written (module docs); `None` once
    /// a sealed segment is synced. Appends and syncs take the read lock, so the file is
    /// never closed under them.
    file: RwLock<Option<File>>,
    /// Set by `seal`, cleared by `unseal`: a sealed segment gives its descriptor up once
    /// it is synced.
    sealed: AtomicBool,
    mapping: RwLock<Mapping>,
    /// Bytes of whole, valid batches: readers never look past it.
    size: AtomicU64,
    /// Offset after the last batch (== base offset while empty).
    next_offset: AtomicI64,
    /// Largest batch max timestamp, and the base offset of the first batch reaching it.
    max_timestamp: AtomicI64,
    offset_of_max_timestamp: AtomicI64,
    /// Wall-clock time of the first append since the segment was created or opened, for
    /// `segment.ms`. Kafka uses the first batch's timestamp instead; a producer replaying
    /// old timestamps would then roll a segment per append, which this avoids.
    first_append_ms: AtomicI64,
    /// Byte ranges known to hold valid batches (CRC-checked on append, recovery or an
    /// earlier read), so each stored byte is checked at most once per process.
    verified: VerifiedRanges,
    /// Byte ranges that hold no valid batch, sorted by position: reads stop before them
    /// and header scans jump over them. Found by recovery or by a read (CRC mismatch).
    damage: RwLock<Vec<DamagedRange>>,
    /// Whether `damage` is non-empty, so the read path of a healthy segment takes no lock.
    has_damage: AtomicBool,
    /// Set by appends, cleared by the flusher just before it syncs.
    dirty: AtomicBool,
    bytes_since_index_entry: AtomicU64,
    offset_index: RwLock<OffsetIndex>,
    time_index: RwLock<TimeIndex>,
}

fn open_log_file(path: &Path, create_new: bool) -> Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).append(true);
    if create_new {
        options.create(true).truncate(false);
    }
    options
        .open(path)
        .map_err(|e| StorageError::io(format!("open segment {}", path.display()), e))
}

fn lock_poisoned() -> StorageError {
    StorageError::Poisoned
}

impl Segment {
    /// Creates a new, empty segment (replacing any files left with the same base offset).
    pub(crate) fn create(
        dir: &Path,
        base_offset: i64,
        capacity: u64,
        index_bytes: u64,
    ) -> Result<Self> {
        Segment::create_named(dir, base_offset, capacity, index_bytes, "")
    }

    /// [`Segment::create`] with `tail` after each file name (`.cleaned`: the cleaner's
    /// output, renamed into place by its swap and then opened with [`Segment::load`]).
    pub(crate) fn create_named(
        dir: &Path,
        base_offset: i64,
        capacity: u64,
        index_bytes: u64,
        tail: &str,
    ) -> Result<Self> {
        let named = |suffix: &str| {
            let mut path = segment_file(dir, base_offset, suffix).into_os_string();
            path.push(tail);
            PathBuf::from(path)
        };
        let log_path = named(LOG_SUFFIX);
        let file = open_log_file(&log_path, true)?;
        faults::guard(faults::Op::SetLen, &log_path, || file.set_len(0))
            .map_err(|e| StorageError::io(format!("truncate {}", log_path.display()), e))?;
        let offset_index = OffsetIndex::create(&named(INDEX_SUFFIX), base_offset, index_bytes)?;
        let time_index = TimeIndex::create(&named(TIME_INDEX_SUFFIX), base_offset, index_bytes)?;
        let segment = Segment::assemble(base_offset, log_path, file, offset_index, time_index);
        segment.remap(capacity)?;
        Ok(segment)
    }

    /// Opens an existing segment whose indexes are trusted (clean shutdown, or a sealed
    /// segment before the recovery point). An active segment's indexes are preallocated
    /// for appends. Falls back to a rebuild (scan) when an index file is missing or looks
    /// wrong; returns the bytes truncated by that rebuild (normally 0).
    pub(crate) fn load(
        dir: &Path,
        base_offset: i64,
        active: bool,
        layout: &Layout,
        rule: TailRule,
    ) -> Result<(Self, u64)> {
        let log_path = segment_file(dir, base_offset, LOG_SUFFIX);
        let index_path = segment_file(dir, base_offset, INDEX_SUFFIX);
        let time_path = segment_file(dir, base_offset, TIME_INDEX_SUFFIX);
        let indexes_exist = index_path.exists() && time_path.exists();
        let file = open_log_file(&log_path, false)?;
        let file_len = file_len(&file, &log_path)?;
        let preallocate = active.then_some(layout.index_bytes);
        let offset_index = OffsetIndex::open(&index_path, base_offset, preallocate)?;
        let time_index = TimeIndex::open(&time_path, base_offset, preallocate)?;
        let segment = Segment::assemble(base_offset, log_path, file, offset_index, time_index);
        let capacity = if active {
            layout.capacity.max(file_len)
        } else {
            file_len
        };
        segment.remap(capacity)?;
        segment.size.store(file_len, Ordering::Release);
        let problem = if indexes_exist {
            segment.load_tail(file_len).err()
        } else {
            Some("an index file is missing".to_string())
        };
        match problem {
            None => {
                if !active {
                    // Trusted and untouched: nothing to sync, the descriptor can go.
                    segment.sealed.store(true, Ordering::Release);
                    segment.release_file_if_synced()?;
                }
                Ok((segment, 0))
            }
            Some(reason) => {
                tracing::warn!(
                    segment = %segment.log_path.display(),
                    %reason,
                    "segment indexes or tail inconsistent after a clean shutdown; rebuilding"
                );
                let cut = segment.rebuild(active, layout, rule)?;
                Ok((segment, cut))
            }
        }
    }

    /// Opens an existing segment and rebuilds it from its bytes (crash recovery): every
    /// batch is validated, invalid bytes are cut or recorded as damage as `rule` allows,
    /// the indexes are rebuilt, and the result is fsynced (what survived may have been
    /// only in the page cache). Returns the segment and the bytes cut.
    pub(crate) fn open_and_recover(
        dir: &Path,
        base_offset: i64,
        active: bool,
        layout: &Layout,
        rule: TailRule,
    ) -> Result<(Self, u64)> {
        let log_path = segment_file(dir, base_offset, LOG_SUFFIX);
        let file = open_log_file(&log_path, false)?;
        let file_len = file_len(&file, &log_path)?;
        let offset_index = OffsetIndex::create(
            &segment_file(dir, base_offset, INDEX_SUFFIX),
            base_offset,
            layout.index_bytes,
        )?;
        let time_index = TimeIndex::create(
            &segment_file(dir, base_offset, TIME_INDEX_SUFFIX),
            base_offset,
            layout.index_bytes,
        )?;
        let segment = Segment::assemble(base_offset, log_path, file, offset_index, time_index);
        let capacity = if active {
            layout.capacity.max(file_len)
        } else {
            file_len
        };
        segment.remap(capacity)?;
        segment.size.store(file_len, Ordering::Release);
        let cut = segment.rebuild(active, layout, rule)?;
        Ok((segment, cut))
    }

    /// Recovers the segment in place, seals it unless it is the active one, and syncs it.
    fn rebuild(&self, active: bool, layout: &Layout, rule: TailRule) -> Result<u64> {
        self.offset_index
            .write()
            .map_err(|_| lock_poisoned())?
            .file_mut()
            .extend_to(layout.index_bytes)?;
        self.time_index
            .write()
            .map_err(|_| lock_poisoned())?
            .file_mut()
            .extend_to(layout.index_bytes)?;
        let cut = self.recover(layout.index_interval, rule)?;
        if !active {
            self.seal()?;
        }
        self.sync_all()?;
        Ok(cut)
    }

    fn assemble(
        base_offset: i64,
        log_path: PathBuf,
        file: File,
        offset_index: OffsetIndex,
        time_index: TimeIndex,
    ) -> Self {
        Segment {
            base_offset,
            log_path,
            file: RwLock::new(Some(file)),
            sealed: AtomicBool::new(false),
            mapping: RwLock::new(Mapping {
                map: None,
                capacity: 0,
            }),
            size: AtomicU64::new(0),
            next_offset: AtomicI64::new(base_offset),
            max_timestamp: AtomicI64::new(NO_TIMESTAMP),
            offset_of_max_timestamp: AtomicI64::new(base_offset),
            first_append_ms: AtomicI64::new(NO_TIMESTAMP),
            verified: VerifiedRanges::default(),
            damage: RwLock::new(Vec::new()),
            has_damage: AtomicBool::new(false),
            dirty: AtomicBool::new(false),
            bytes_since_index_entry: AtomicU64::new(0),
            offset_index: RwLock::new(offset_index),
            time_index: RwLock::new(time_index),
        }
    }

    pub(crate) fn base_offset(&self) -> i64 {
        self.base_offset
    }
    pub(crate) fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }
    pub(crate) fn next_offset(&self) -> i64 {
        self.next_offset.load(Ordering::Acquire)
    }
    pub(crate) fn is_empty(&self) -> bool {
        self.size() == 0
    }
    /// The segment's published bytes, borrowed from its read mapping (the cleaner reads
    /// sealed segments this way; no byte is copied).
    pub(crate) fn bytes(&self) -> Result<Bytes> {
        let size = self.size();
        let Some(map) = self.current_map()? else {
            return Ok(Bytes::new());
        };
        let end = size.min(map.len() as u64) as usize;
        Ok(Bytes::from_owner(MapSlice { map, start: 0, end }))
    }

    /// Bytes the two index files hold (used entries), for grouping cleaned segments.
    pub(crate) fn index_bytes(&self) -> u64 {
        let offsets = self.offset_index.read().map_or(0, |i| i.len() as u64 * 8);
        let times = self.time_index.read().map_or(0, |i| i.len() as u64 * 12);
        offsets.max(times)
    }

    pub(crate) fn max_timestamp(&self) -> i64 {
        self.max_timestamp.load(Ordering::Acquire)
    }
    pub(crate) fn first_append_ms(&self) -> i64 {
        self.first_append_ms.load(Ordering::Acquire)
    }

    /// Records the time of an append (only the first one counts, see `first_append_ms`).
    pub(crate) fn note_append_time(&self, now_ms: i64) {
        if self.first_append_ms.load(Ordering::Relaxed) == NO_TIMESTAMP {
            self.first_append_ms.store(now_ms, Ordering::Release);
        }
    }
    /// The time retention.ms is measured from: the newest batch timestamp, or the file's
    /// modification time when batches carry no timestamp (-1), as Kafka does.
    pub(crate) fn retention_timestamp(&self) -> i64 {
        let max = self.max_timestamp();
        if max >= 0 {
            return max;
        }
        std::fs::metadata(&self.log_path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(i64::MAX, |d| d.as_millis() as i64)
    }

    pub(crate) fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// True when one of the indexes has no room left: the log must roll.
    pub(crate) fn indexes_full(&self) -> bool {
        let offsets_full = self
            .offset_index
            .read()
            .map(|i| i.is_full())
            .unwrap_or(true);
        let times_full = self.time_index.read().map(|i| i.is_full()).unwrap_or(true);
        offsets_full || times_full
    }

    /// Writes prepared batches at the end of the file and indexes them. Caller holds the
    /// log's append lock. On error nothing is published; the caller latches the log offline.
    pub(crate) fn append(&self, batches: &[PreparedBatch<'_>], index_interval: u64) -> Result<()> {
        let start = self.size();
        let total: u64 = batches.iter().map(|b| b.size() as u64).sum();
        self.ensure_capacity(start + total)?;

        let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(batches.len() * 2);
        for batch in batches {
            slices.push(IoSlice::new(&batch.header));
            if !batch.body.is_empty() {
                slices.push(IoSlice::new(batch.body));
            }
        }
        self.with_file(|file| {
            let written = match faults::check(faults::Op::Write, &self.log_path) {
                Some(injected) => torn_write(file, &slices, injected),
                None => write_all_vectored(file, &mut slices),
            };
            written.map_err(|e| StorageError::io(format!("write {}", self.log_path.display()), e))
        })?;
        self.dirty.store(true, Ordering::Release);

        // `index_batch` moves the max timestamp before an index page is reserved; if a
        // reservation fails, the batches are never published, so the max they set must
        // go too (else retention, ListOffsets MAX_TIMESTAMP and the seal's time entry
        // would name a batch that is not in the log). The append lock excludes writers.
        let max_before = (
            self.max_timestamp.load(Ordering::Acquire),
            self.offset_of_max_timestamp.load(Ordering::Acquire),
        );
        let mut position = start;
        for batch in batches {
            let indexed = self.index_batch(
                batch.base_offset,
                batch.max_timestamp,
                position,
                batch.size() as u64,
                index_interval,
            );
            if let Err(e) = indexed {
                self.max_timestamp.store(max_before.0, Ordering::Release);
                self.offset_of_max_timestamp
                    .store(max_before.1, Ordering::Release);
                return Err(e);
            }
            position += batch.size() as u64;
        }
        if let Some(last) = batches.last() {
            // Appended bytes were CRC-checked before they were prepared.
            self.verified.add(start, position);
            self.size.store(position, Ordering::Release);
            self.next_offset.store(last.next_offset, Ordering::Release);
        }
        Ok(())
    }

    /// Updates the in-memory timestamps and maybe adds index entries for one batch at
    /// `position`. Shared by append and recovery so both build identical indexes.
    fn index_batch(
        &self,
        base_offset: i64,
        max_timestamp: i64,
        position: u64,
        size: u64,
        index_interval: u64,
    ) -> Result<()> {
        if max_timestamp > self.max_timestamp.load(Ordering::Relaxed) {
            self.max_timestamp.store(max_timestamp, Ordering::Release);
            self.offset_of_max_timestamp
                .store(base_offset, Ordering::Release);
        }
        if self.bytes_since_index_entry.load(Ordering::Relaxed) > index_interval {
            let mut offsets = self.offset_index.write().map_err(|_| lock_poisoned())?;
            let mut times = self.time_index.write().map_err(|_| lock_poisoned())?;
            // Both first, so a full disk fails here, before either index changes.
            offsets.file_mut().reserve_next()?;
            times.file_mut().reserve_next()?;
            offsets.append(base_offset, position)?;
            times.maybe_append(
                self.max_timestamp.load(Ordering::Relaxed),
                self.offset_of_max_timestamp.load(Ordering::Relaxed),
            )?;
            self.bytes_since_index_entry.store(0, Ordering::Relaxed);
        }
        self.bytes_since_index_entry
            .fetch_add(size, Ordering::Relaxed);
        Ok(())
    }

    /// Grows the read mapping when an append would pass its end.
    fn ensure_capacity(&self, needed: u64) -> Result<()> {
        let capacity = self.mapping.read().map_err(|_| lock_poisoned())?.capacity;
        if needed <= capacity {
            return Ok(());
        }
        self.remap(needed.max(capacity.saturating_mul(2)))
    }

    /// Replaces the read mapping with one of `capacity` bytes. Readers holding `Bytes` of
    /// the old mapping keep it alive until they drop them.
    fn remap(&self, capacity: u64) -> Result<()> {
        let map = if capacity == 0 {
            None
        } else {
            // SAFETY: the file belongs to this log alone; bytes past the published size
            // are never read, and the file only shrinks when no reader holds them.
            let map = self.with_file(|file| {
                unsafe { MmapOptions::new().len(capacity as usize).map(file) }
                    .map_err(|e| StorageError::io(format!("mmap {}", self.log_path.display()), e))
            })?;
            Some(Arc::new(map))
        };
        let mut mapping = self.mapping.write().map_err(|_| lock_poisoned())?;
        *mapping = Mapping { map, capacity };
        Ok(())
    }

    /// Runs `f` with the `.log` file: the descriptor the segment holds, or, for a synced
    /// sealed segment, one opened for this call and closed after it.
    fn with_file<T>(&self, f: impl FnOnce(&File) -> Result<T>) -> Result<T> {
        {
            let held = self.file.read().map_err(|_| lock_poisoned())?;
            if let Some(file) = held.as_ref() {
                return f(file);
            }
        }
        let file = open_log_file(&self.log_path, false)?;
        f(&file)
    }

    /// Makes the segment hold its descriptor again (it is about to be written).
    fn hold_file(&self) -> Result<()> {
        let mut held = self.file.write().map_err(|_| lock_poisoned())?;
        if held.is_none() {
            *held = Some(open_log_file(&self.log_path, false)?);
        }
        Ok(())
    }

    /// Closes the descriptor of a sealed segment with nothing left to sync: the mapping
    /// serves every read. The descriptor stays until the sync, rather than being
    /// reopened for it, so that a write-back error is reported to the descriptor that
    /// wrote.
    fn release_file_if_synced(&self) -> Result<()> {
        if self.sealed.load(Ordering::Acquire) && !self.dirty.load(Ordering::Acquire) {
            *self.file.write().map_err(|_| lock_poisoned())? = None;
        }
        Ok(())
    }

    fn current_map(&self) -> Result<Option<Arc<Mmap>>> {
        Ok(self
            .mapping
            .read()
            .map_err(|_| lock_poisoned())?
            .map
            .clone())
    }

    /// Reads whole batches starting with the one containing `offset`, up to `max_bytes`
    /// (or exactly one batch if the first is larger and `min_one`), stopping before any
    /// batch reaching past `max_offset` (its last offset >= it) and before damaged bytes. Every returned batch has
    /// passed its CRC check. `Ok(None)` when the segment holds no batch containing or
    /// following `offset`. An `offset` in a damaged range is refused with
    /// [`StorageError::Damaged`]; damage met on the way is recorded first (see `damage`).
    pub(crate) fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
        max_offset: i64,
    ) -> Result<Option<SegmentRead>> {
        self.retry_on_damage(|| {
            if let Some(range) = self.damage_at_offset(offset) {
                return Err(StorageError::Damaged { range });
            }
            self.read_once(offset, max_bytes, min_one, max_offset)
        })
    }

    fn read_once(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
        max_offset: i64,
    ) -> Result<Option<SegmentRead>> {
        let size = self.size();
        let Some(map) = self.current_map()? else {
            return Ok(None);
        };
        let data = &map[..size.min(map.len() as u64) as usize];
        let Some(start) = self.find_batch_position(data, offset)? else {
            return Ok(None);
        };
        let mut position = start;
        let mut first_offset = None;
        let mut expected = None;
        while position < data.len() {
            if self.damage_at_position(position as u64).is_some() {
                // Whole batches before the damage are served; the damage is not.
                break;
            }
            let rest = &data[position..];
            let batch_size =
                batch::check_framing(rest, rest.len()).map_err(|e| self.corrupt(position, e))?;
            let header = BatchHeader::new(rest).map_err(|e| self.corrupt(position, e))?;
            // The first batch was checked by `find_batch_position`.
            if let Some(expected) = expected {
                self.check_follows(&header, expected, position)?;
            }
            expected = Some(header.next_offset());
            // A batch reaching past the bound (the high watermark) is not served yet.
            if header.next_offset() > max_offset {
                break;
            }
            let taken = position - start;
            if taken + batch_size > max_bytes && !(taken == 0 && min_one) {
                break;
            }
            self.verify(data, position, batch_size)?;
            first_offset.get_or_insert(header.base_offset());
            position += batch_size;
        }
        // The batch holding `offset` is here: even when none fits, the read ends in this
        // segment (moving on would skip that batch).
        let records = if position > start {
            Bytes::from_owner(MapSlice {
                map,
                start,
                end: position,
            })
        } else {
            Bytes::new()
        };
        Ok(Some(SegmentRead {
            records,
            first_offset,
        }))
    }

    /// CRC-checks the batch at `position` unless it lies in a verified range.
    fn verify(&self, data: &[u8], position: usize, batch_size: usize) -> Result<()> {
        let (start, end) = (position as u64, (position + batch_size) as u64);
        if self.verified.contains(start, end) {
            return Ok(());
        }
        batch::validate_stored_batch(&data[position..position + batch_size])
            .map_err(|e| self.corrupt(position, e))?;
        self.verified.add(start, end);
        Ok(())
    }

    fn corrupt(&self, position: usize, source: BatchError) -> StorageError {
        StorageError::CorruptSegment {
            path: self.log_path.clone(),
            position: position as u64,
            source,
        }
    }

    /// Position of the first batch whose last offset is >= `offset`, scanning headers
    /// from the offset index's entry and jumping over known damage.
    ///
    /// Batches in a segment are contiguous (each starts at the previous one's next
    /// offset), so the scan checks every base offset against that: the base offset is
    /// not covered by the CRC, and a flipped one would otherwise make a read skip or
    /// repeat records silently.
    fn find_batch_position(&self, data: &[u8], offset: i64) -> Result<Option<usize>> {
        let entry = {
            let index = self.offset_index.read().map_err(|_| lock_poisoned())?;
            index.lookup(offset)
        };
        let mut position = entry.position as usize;
        let mut expected = entry.offset;
        while position < data.len() {
            if let Some(range) = self.damage_at_position(position as u64) {
                position = (range.position + range.len) as usize;
                expected = range.end_offset;
                continue;
            }
            let rest = &data[position..];
            let batch_size =
                batch::check_framing(rest, rest.len()).map_err(|e| self.corrupt(position, e))?;
            let header = BatchHeader::new(rest).map_err(|e| self.corrupt(position, e))?;
            self.check_follows(&header, expected, position)?;
            if header.last_offset() >= offset {
                return Ok(Some(position));
            }
            expected = header.next_offset();
            position += batch_size;
        }
        Ok(None)
    }

    /// Fails unless the batch at `position` starts at `expected` (see
    /// `find_batch_position`).
    fn check_follows(
        &self,
        header: &BatchHeader<'_>,
        expected: i64,
        position: usize,
    ) -> Result<()> {
        if header.base_offset() != expected || header.last_offset() < header.base_offset() {
            return Err(self.corrupt(
                position,
                BatchError::InvalidRecord {
                    reason: format!(
                        "batch offsets {}..={} do not follow offset {expected}",
                        header.base_offset(),
                        header.last_offset()
                    ),
                },
            ));
        }
        Ok(())
    }

    /// The first batch (base offset, bytes) whose max timestamp is >= `target`.
    /// Only batches ending at or after `min_offset` are considered.
    pub(crate) fn find_batch_by_timestamp(
        &self,
        target: i64,
        min_offset: i64,
    ) -> Result<Option<Bytes>> {
        self.retry_on_damage(|| self.find_batch_by_timestamp_once(target, min_offset))
    }

    fn find_batch_by_timestamp_once(&self, target: i64, min_offset: i64) -> Result<Option<Bytes>> {
        let start_offset = {
            let index = self.time_index.read().map_err(|_| lock_poisoned())?;
            index.lookup(target).max(min_offset)
        };
        let size = self.size();
        let Some(map) = self.current_map()? else {
            return Ok(None);
        };
        let data = &map[..size.min(map.len() as u64) as usize];
        let Some(mut position) = self.find_batch_position(data, start_offset)? else {
            return Ok(None);
        };
        // The first batch was checked by `find_batch_position`.
        let mut expected = None;
        while position < data.len() {
            if let Some(range) = self.damage_at_position(position as u64) {
                position = (range.position + range.len) as usize;
                expected = Some(range.end_offset);
                continue;
            }
            let rest = &data[position..];
            let batch_size =
                batch::check_framing(rest, rest.len()).map_err(|e| self.corrupt(position, e))?;
            let header = BatchHeader::new(rest).map_err(|e| self.corrupt(position, e))?;
            if let Some(expected) = expected {
                self.check_follows(&header, expected, position)?;
            }
            expected = Some(header.next_offset());
            if header.max_timestamp() >= target {
                self.verify(data, position, batch_size)?;
                return Ok(Some(Bytes::from_owner(MapSlice {
                    map: map.clone(),
                    start: position,
                    end: position + batch_size,
                })));
            }
            position += batch_size;
        }
        Ok(None)
    }

    /// Calls `f` with the header of every batch from the one containing `offset` to the
    /// end of the segment (used to rebuild producer state; headers only, no CRC check:
    /// the batches were validated when appended or recovered).
    pub(crate) fn for_each_header(
        &self,
        offset: i64,
        mut f: impl FnMut(&BatchHeader<'_>),
    ) -> Result<()> {
        let size = self.size();
        let Some(map) = self.current_map()? else {
            return Ok(());
        };
        let data = &map[..size.min(map.len() as u64) as usize];
        // Damage met on the way is recorded and skipped: a damaged batch's header cannot
        // be trusted anyway, and the headers after it still count.
        let mut discoveries = 0;
        let mut position = loop {
            match self.find_batch_position(data, offset) {
                Ok(Some(position)) => break position,
                Ok(None) => return Ok(()),
                Err(StorageError::CorruptSegment { position, .. })
                    if discoveries < MAX_DAMAGE_DISCOVERIES
                        && self.mark_damaged(data, position as usize) =>
                {
                    discoveries += 1;
                }
                Err(e) => return Err(e),
            }
        };
        while position < data.len() {
            if let Some(range) = self.damage_at_position(position as u64) {
                position = (range.position + range.len) as usize;
                continue;
            }
            let rest = &data[position..];
            match batch::check_framing(rest, rest.len()) {
                Ok(batch_size) => {
                    f(&BatchHeader::new(rest).map_err(|e| self.corrupt(position, e))?);
                    position += batch_size;
                }
                Err(e) => {
                    if discoveries >= MAX_DAMAGE_DISCOVERIES || !self.mark_damaged(data, position) {
                        return Err(self.corrupt(position, e));
                    }
                    discoveries += 1;
                }
            }
        }
        Ok(())
    }

    /// Runs a read, and when it meets stored bytes that fail validation, records them as
    /// damage and runs it again (bounded), so the read stops before the damage (or skips
    /// it) instead of failing. A read that starts inside the damage gets `Damaged`.
    fn retry_on_damage<T>(&self, mut read: impl FnMut() -> Result<T>) -> Result<T> {
        let mut discoveries = 0;
        loop {
            match read() {
                Err(StorageError::CorruptSegment {
                    position, source, ..
                }) if discoveries < MAX_DAMAGE_DISCOVERIES => {
                    let Some(map) = self.current_map()? else {
                        return Err(self.corrupt(position as usize, source));
                    };
                    let size = self.size().min(map.len() as u64) as usize;
                    // Recorded now, or by a concurrent reader a moment ago: read again.
                    let recorded = self.mark_damaged(&map[..size], position as usize)
                        || self.damage_at_position(position).is_some();
                    if !recorded {
                        return Err(self.corrupt(position as usize, source));
                    }
                    discoveries += 1;
                }
                other => return other,
            }
        }
    }

    /// The damaged range holding byte `position`, if any (no lock on a healthy segment).
    fn damage_at_position(&self, position: u64) -> Option<DamagedRange> {
        if !self.has_damage.load(Ordering::Acquire) {
            return None;
        }
        let damage = self.damage.read().unwrap_or_else(|p| p.into_inner());
        damage
            .iter()
            .find(|d| d.contains_position(position))
            .cloned()
    }

    /// The damaged range holding `offset`, if any.
    pub(crate) fn damage_at_offset(&self, offset: i64) -> Option<DamagedRange> {
        if !self.has_damage.load(Ordering::Acquire) {
            return None;
        }
        let damage = self.damage.read().unwrap_or_else(|p| p.into_inner());
        damage.iter().find(|d| d.contains_offset(offset)).cloned()
    }

    /// Every damaged range of this segment, by position.
    pub(crate) fn damaged_ranges(&self) -> Vec<DamagedRange> {
        if !self.has_damage.load(Ordering::Acquire) {
            return Vec::new();
        }
        self.damage
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn add_damage(&self, range: DamagedRange, when: &'static str) -> bool {
        let mut damage = self.damage.write().unwrap_or_else(|p| p.into_inner());
        if damage
            .iter()
            .any(|d| d.contains_position(range.position) || d.position == range.position)
        {
            // Another reader recorded it first.
            return false;
        }
        range.log(when);
        let at = damage.partition_point(|d| d.position < range.position);
        damage.insert(at, range);
        self.has_damage.store(true, Ordering::Release);
        true
    }

    /// Records the bytes from `position` (where a batch fails validation while serving)
    /// to the next good batch as damage. The first lost offset is the end of the last
    /// whole batch before `position`, found by walking the batch chain from the start of
    /// the file; the end is the next good batch's base offset (see `damage::resync`), or
    /// the segment's next offset when none follows. Returns false when nothing new was
    /// recorded (the position is already known to be damaged).
    fn mark_damaged(&self, data: &[u8], position: usize) -> bool {
        if position >= data.len() || self.damage_at_position(position as u64).is_some() {
            return false;
        }
        let mut at = 0usize;
        let mut first_offset = self.base_offset;
        let mut damaged_at = position;
        while at < position {
            if let Some(range) = self.damage_at_position(at as u64) {
                at = (range.position + range.len) as usize;
                first_offset = range.end_offset;
                continue;
            }
            let rest = &data[at..];
            match batch::check_framing(rest, rest.len()) {
                Ok(size) if at + size <= position => {
                    first_offset = BatchHeader::new(rest).map_or(first_offset, |h| h.next_offset());
                    at += size;
                }
                // The chain breaks before `position`: the damage starts there.
                Err(_) => {
                    damaged_at = at;
                    break;
                }
                // `position` is inside a batch whose framing holds: a stale index entry
                // sent the scan mid-batch. If that batch is valid, nothing is damaged
                // (the read fails, see "Trusted indexes" in docs/storage.md); if not,
                // the damage starts with it.
                Ok(size) => {
                    if batch::validate_stored_batch(&rest[..size]).is_ok() {
                        return false;
                    }
                    damaged_at = at;
                    break;
                }
            }
        }
        let reason = match batch::check_framing(&data[damaged_at..], data.len() - damaged_at)
            .and_then(|size| batch::validate_stored_batch(&data[damaged_at..damaged_at + size]))
        {
            Err(e) => e.to_string(),
            // A whole, valid batch right where the chain expects it: not damage (the
            // caller was misled, e.g. by a stale index entry).
            Ok(header) if header.base_offset() == first_offset => return false,
            Ok(header) => format!(
                "batch offsets {}..={} do not follow offset {first_offset}",
                header.base_offset(),
                header.last_offset()
            ),
        };
        let segment_end = self.next_offset();
        let (end, end_offset) = match damage::resync(
            data,
            damaged_at + 1,
            first_offset,
            segment_end.max(first_offset + 1),
        ) {
            Some((next, base)) => (next, base),
            None => (data.len(), segment_end.max(first_offset)),
        };
        self.add_damage(
            DamagedRange {
                file: self.log_path.clone(),
                first_offset,
                end_offset,
                position: damaged_at as u64,
                len: (end - damaged_at) as u64,
                reason,
            },
            "read",
        )
    }

    /// The batch that first reached this segment's max timestamp.
    pub(crate) fn max_timestamp_batch(&self) -> Result<Option<Bytes>> {
        let offset = self.offset_of_max_timestamp.load(Ordering::Acquire);
        Ok(self
            .read(offset, 0, true, i64::MAX)?
            .map(|r| r.records)
            .filter(|r| !r.is_empty()))
    }

    /// Rebuilds indexes and in-memory state by validating every batch from the start.
    /// At the first invalid batch: when `rule` allows a cut there (active segment, past
    /// the recovery point) the file is truncated; otherwise the bytes up to the next good
    /// batch are recorded as damage and the scan goes on after them, so no intact batch
    /// is lost. Returns the bytes cut.
    pub(crate) fn recover(&self, index_interval: u64, rule: TailRule) -> Result<u64> {
        let file_len = self.with_file(|file| file_len(file, &self.log_path))?;
        {
            self.offset_index
                .write()
                .map_err(|_| lock_poisoned())?
                .truncate_to_offset(self.base_offset);
            self.time_index
                .write()
                .map_err(|_| lock_poisoned())?
                .truncate_to_offset(self.base_offset);
        }
        self.max_timestamp.store(NO_TIMESTAMP, Ordering::Release);
        self.offset_of_max_timestamp
            .store(self.base_offset, Ordering::Release);
        self.bytes_since_index_entry.store(0, Ordering::Release);
        self.damage
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.has_damage.store(false, Ordering::Release);
        let map = self.map_at_least(file_len)?;
        let data: &[u8] = match &map {
            Some(map) => &map[..file_len as usize],
            None => &[],
        };
        let mut position = 0usize;
        let mut next_offset = self.base_offset;
        // No batch of this segment may reach the next segment's base offset.
        let max_base = rule.next_base.unwrap_or(i64::MAX);
        let mut cut_at = None;
        while position < data.len() {
            let rest = &data[position..];
            let problem = match batch::check_framing(rest, rest.len()) {
                Err(reason) => Err(reason.to_string()),
                Ok(size) => match batch::validate_stored_batch(&rest[..size]) {
                    Err(reason) => Err(reason.to_string()),
                    Ok(header)
                        if header.base_offset() != next_offset
                            || header.last_offset() < header.base_offset()
                            || header.last_offset() >= max_base =>
                    {
                        Err(format!(
                            "batch offsets {}..={} do not follow offset {next_offset}",
                            header.base_offset(),
                            header.last_offset()
                        ))
                    }
                    Ok(header) => Ok(header),
                },
            };
            let header = match problem {
                Ok(header) => header,
                Err(reason) => {
                    if rule.cut_from.is_some_and(|from| next_offset >= from) {
                        // A torn write at the tail, past the recovery point: cut it.
                        self.log_cut(position, data.len(), &reason);
                        cut_at = Some(position);
                        break;
                    }
                    // Damage in data that was synced (or in a sealed segment): keep the
                    // bytes, record the damage, and go on at the next good batch.
                    let (end, end_offset) =
                        match damage::resync(data, position + 1, next_offset, max_base) {
                            Some(found) => found,
                            None => {
                                // Nothing good follows: the damage runs to the end of the
                                // file, and the offsets it held up to where the next
                                // segment (or the recovery point) says the log went on.
                                let known_end =
                                    rule.next_base.or(rule.cut_from).unwrap_or(next_offset);
                                (data.len(), known_end.max(next_offset))
                            }
                        };
                    self.add_damage(
                        DamagedRange {
                            file: self.log_path.clone(),
                            first_offset: next_offset,
                            end_offset,
                            position: position as u64,
                            len: (end - position) as u64,
                            reason,
                        },
                        "recovery",
                    );
                    next_offset = end_offset;
                    position = end;
                    // Index the first batch after the damage, so lookups past it start
                    // there and never scan across the damaged bytes.
                    self.bytes_since_index_entry
                        .store(index_interval.saturating_add(1), Ordering::Release);
                    continue;
                }
            };
            let batch = &rest[..header.total_size() as usize];
            self.index_batch(
                header.base_offset(),
                header.max_timestamp(),
                position as u64,
                batch.len() as u64,
                index_interval,
            )?;
            next_offset = header.next_offset();
            position += batch.len();
        }
        let valid = cut_at.map_or(file_len, |at| at as u64);
        let cut = file_len - valid;
        if cut > 0 {
            self.with_file(|file| {
                file.set_len(valid).map_err(|e| {
                    StorageError::io(format!("truncate {}", self.log_path.display()), e)
                })?;
                file.sync_data()
                    .map_err(|e| StorageError::io(format!("fsync {}", self.log_path.display()), e))
            })?;
        }
        self.size.store(valid, Ordering::Release);
        // Every byte below `valid` was CRC-checked, except the damage.
        self.verified.reset(0);
        let mut from = 0;
        for range in self.damaged_ranges() {
            self.verified.add(from, range.position);
            from = range.position + range.len;
        }
        self.verified.add(from, valid);
        self.next_offset.store(next_offset, Ordering::Release);
        Ok(cut)
    }

    fn log_cut(&self, position: usize, len: usize, reason: &str) {
        tracing::warn!(
            segment = %self.log_path.display(),
            position,
            bytes_cut = len - position,
            %reason,
            "truncating segment at first invalid batch"
        );
    }

    fn map_at_least(&self, len: u64) -> Result<Option<Arc<Mmap>>> {
        let capacity = self.mapping.read().map_err(|_| lock_poisoned())?.capacity;
        if capacity < len {
            self.remap(len)?;
        }
        self.current_map()
    }

    /// Loads in-memory state of a segment with trusted indexes: the tail after the last
    /// offset index entry is scanned (about one index interval), nothing else.
    fn load_tail(&self, file_len: u64) -> std::result::Result<(), String> {
        let (start, time_last) = {
            let offsets = self
                .offset_index
                .read()
                .map_err(|_| "poisoned".to_string())?;
            let times = self.time_index.read().map_err(|_| "poisoned".to_string())?;
            if !offsets.is_sane(file_len) {
                return Err("offset index entries are not increasing or point past the log".into());
            }
            (offsets.last().map_or(0, |e| e.position), times.last())
        };
        let map = self.current_map().map_err(|e| e.to_string())?;
        let data: &[u8] = match &map {
            Some(map) => &map[..file_len as usize],
            None => &[],
        };
        if let Some(t) = time_last {
            self.max_timestamp.store(t.timestamp, Ordering::Release);
            self.offset_of_max_timestamp
                .store(t.offset, Ordering::Release);
        }
        let mut position = start as usize;
        let mut next_offset = self.base_offset;
        let mut bytes_since_entry = 0u64;
        while position < data.len() {
            let rest = &data[position..];
            let size = batch::check_framing(rest, rest.len())
                .map_err(|e| format!("at byte {position}: {e}"))?;
            let header = BatchHeader::new(rest).map_err(|e| e.to_string())?;
            if header.max_timestamp() > self.max_timestamp.load(Ordering::Relaxed) {
                self.max_timestamp
                    .store(header.max_timestamp(), Ordering::Release);
                self.offset_of_max_timestamp
                    .store(header.base_offset(), Ordering::Release);
            }
            next_offset = header.next_offset();
            bytes_since_entry += size as u64;
            position += size;
        }
        let times_sane = self
            .time_index
            .read()
            .map(|t| t.is_sane(next_offset.max(self.base_offset + 1)))
            .unwrap_or(false);
        if !times_sane {
            return Err("time index entries are not increasing or point past the log".into());
        }
        self.bytes_since_index_entry
            .store(bytes_since_entry, Ordering::Release);
        self.next_offset.store(next_offset, Ordering::Release);
        Ok(())
    }

    /// Seals the segment after a roll or at close: records the final max timestamp in the
    /// time index, trims both indexes, and shrinks the read mapping to the file.
    pub(crate) fn seal(&self) -> Result<()> {
        {
            let mut times = self.time_index.write().map_err(|_| lock_poisoned())?;
            let max = self.max_timestamp();
            if max != NO_TIMESTAMP && !times.is_full() {
                // May need a new page of the sparse index: on a full disk this fails with
                // ENOSPC (the caller takes the log offline) instead of a SIGBUS.
                times.maybe_append(max, self.offset_of_max_timestamp.load(Ordering::Acquire))?;
            }
            times.file_mut().trim()?;
        }
        self.offset_index
            .write()
            .map_err(|_| lock_poisoned())?
            .file_mut()
            .trim()?;
        self.remap(self.size())?;
        // The descriptor goes at the next `sync_all`, once the appended bytes are synced.
        self.sealed.store(true, Ordering::Release);
        Ok(())
    }

    /// Reopens the indexes for appends (a sealed segment becoming active again).
    pub(crate) fn unseal(&self, capacity: u64, index_bytes: u64) -> Result<()> {
        self.hold_file()?;
        self.sealed.store(false, Ordering::Release);
        self.offset_index
            .write()
            .map_err(|_| lock_poisoned())?
            .file_mut()
            .extend_to(index_bytes)?;
        self.time_index
            .write()
            .map_err(|_| lock_poisoned())?
            .file_mut()
            .extend_to(index_bytes)?;
        self.remap(capacity.max(self.size()))
    }

    /// Cuts bytes a failed write left past the published end (a torn batch nobody was
    /// told about) and index entries past it, so the next append, which goes to the end of the file (`O_APPEND`),
    /// follows the last whole batch. Returns the bytes cut.
    pub(crate) fn discard_unpublished(&self) -> Result<u64> {
        self.hold_file()?;
        // Index entries the failed append added for its earlier batches point past the
        // published end too.
        let next = self.next_offset();
        self.offset_index
            .write()
            .map_err(|_| lock_poisoned())?
            .truncate_to_offset(next);
        self.time_index
            .write()
            .map_err(|_| lock_poisoned())?
            .truncate_to_offset(next);
        let size = self.size();
        let len = self.with_file(|file| file_len(file, &self.log_path))?;
        if len <= size {
            return Ok(0);
        }
        self.with_file(|file| {
            faults::guard(faults::Op::SetLen, &self.log_path, || file.set_len(size))
                .map_err(|e| StorageError::io(format!("truncate {}", self.log_path.display()), e))
        })?;
        self.dirty.store(true, Ordering::Release);
        Ok(len - size)
    }

    /// After a failed sync: re-validates every batch from the one containing `offset` to
    /// the published end, and writes those bytes (and the index pages) again so that the
    /// next sync really writes them. What a failed writeback left in the page cache is
    /// either what was written (the CRCs say so) or unknown; in the unknown case this
    /// returns `CorruptSegment` and nothing is rewritten. Reads of the range check CRCs
    /// again from now on.
    pub(crate) fn rewrite_from(&self, offset: i64) -> Result<()> {
        if self.file.read().map_err(|_| lock_poisoned())?.is_none() {
            // Sealed and synced since its last write (`release_file_if_synced`): what the
            // failed sync left unknown does not include it.
            return Ok(());
        }
        let size = self.size();
        let Some(map) = self.current_map()? else {
            return Ok(());
        };
        let data = &map[..size.min(map.len() as u64) as usize];
        let Some(start) = self.find_batch_position(data, offset)? else {
            return Ok(());
        };
        self.verified.truncate(start as u64);
        let mut position = start;
        while position < data.len() {
            let rest = &data[position..];
            let batch_size =
                batch::check_framing(rest, rest.len()).map_err(|e| self.corrupt(position, e))?;
            batch::validate_stored_batch(&rest[..batch_size])
                .map_err(|e| self.corrupt(position, e))?;
            position += batch_size;
        }
        self.verified.add(start as u64, position as u64);
        // The segment's own descriptor appends (`O_APPEND` ignores the position of a
        // positioned write on Linux), so the rewrite uses a second one.
        let writer = OpenOptions::new()
            .write(true)
            .open(&self.log_path)
            .map_err(|e| StorageError::io(format!("open {}", self.log_path.display()), e))?;
        let mut buffer = vec![0u8; (1 << 20).min(position - start)];
        let mut at = start;
        while at < position {
            let n = buffer.len().min(position - at);
            buffer[..n].copy_from_slice(&data[at..at + n]);
            faults::guard(faults::Op::Write, &self.log_path, || {
                std::os::unix::fs::FileExt::write_all_at(&writer, &buffer[..n], at as u64)
            })
            .map_err(|e| StorageError::io(format!("rewrite {}", self.log_path.display()), e))?;
            at += n;
        }
        self.offset_index
            .write()
            .map_err(|_| lock_poisoned())?
            .file_mut()
            .redirty();
        self.time_index
            .write()
            .map_err(|_| lock_poisoned())?
            .file_mut()
            .redirty();
        self.dirty.store(true, Ordering::Release);
        Ok(())
    }

    /// Syncs the log file (data only) if anything was appended since the last sync.
    pub(crate) fn sync_if_dirty(&self) -> Result<()> {
        // Checked first so that a synced sealed segment is not reopened for nothing.
        if !self.dirty.load(Ordering::Acquire) {
            return Ok(());
        }
        self.with_file(|file| {
            if self.dirty.swap(false, Ordering::AcqRel) {
                if let Err(e) = faults::guard(faults::Op::Sync, &self.log_path, || file.sync_data())
                {
                    self.dirty.store(true, Ordering::Release);
                    return Err(StorageError::io(
                        format!("fdatasync {}", self.log_path.display()),
                        e,
                    ));
                }
            }
            Ok(())
        })
    }

    /// Syncs the log file and both indexes; a sealed segment then closes its descriptor.
    pub(crate) fn sync_all(&self) -> Result<()> {
        if self.file.read().map_err(|_| lock_poisoned())?.is_none() {
            // A segment gives its descriptor up only once sealed and synced, indexes
            // included (`release_file_if_synced`); nothing has changed since.
            return Ok(());
        }
        self.with_file(|file| {
            self.dirty.store(false, Ordering::Release);
            faults::guard(faults::Op::Sync, &self.log_path, || file.sync_data())
                .map_err(|e| StorageError::io(format!("fdatasync {}", self.log_path.display()), e))
        })?;
        self.offset_index
            .read()
            .map_err(|_| lock_poisoned())?
            .file()
            .sync()?;
        self.time_index
            .read()
            .map_err(|_| lock_poisoned())?
            .file()
            .sync()?;
        self.release_file_if_synced()
    }

    /// The next offset `truncate_to(offset)` would leave, without changing anything: the
    /// base of the batch containing `offset`, or the current next offset when no batch
    /// reaches it. Lets the log lower its checkpoints before it cuts any file.
    pub(crate) fn next_offset_after_truncate_to(&self, offset: i64) -> Result<i64> {
        let size = self.size();
        let Some(map) = self.current_map()? else {
            return Ok(self.base_offset);
        };
        let data = &map[..size.min(map.len() as u64) as usize];
        let Some(position) = self.find_batch_position(data, offset)? else {
            return Ok(self.next_offset());
        };
        BatchHeader::new(&data[position..])
            .map(|h| h.base_offset())
            .map_err(|e| self.corrupt(position, e))
    }

    /// Drops every batch whose last offset is >= `offset` (the batch containing `offset`
    /// goes too). Returns the new next offset. Callers guarantee no reader holds bytes
    /// past the cut (see the module doc).
    pub(crate) fn truncate_to(&self, offset: i64) -> Result<i64> {
        let size = self.size();
        let Some(map) = self.current_map()? else {
            return Ok(self.base_offset);
        };
        let data = &map[..size.min(map.len() as u64) as usize];
        let Some(position) = self.find_batch_position(data, offset)? else {
            return Ok(self.next_offset());
        };
        // The new next offset is the base of the first dropped batch.
        let new_next = BatchHeader::new(&data[position..])
            .map(|h| h.base_offset())
            .map_err(|e| self.corrupt(position, e))?;
        self.size.store(position as u64, Ordering::Release);
        self.next_offset.store(new_next, Ordering::Release);
        self.verified.truncate(position as u64);
        {
            let mut damage = self.damage.write().unwrap_or_else(|p| p.into_inner());
            damage.retain(|d| d.position < position as u64);
            self.has_damage.store(!damage.is_empty(), Ordering::Release);
        }
        self.with_file(|file| {
            faults::guard(faults::Op::SetLen, &self.log_path, || {
                file.set_len(position as u64)
            })
            .map_err(|e| StorageError::io(format!("truncate {}", self.log_path.display()), e))?;
            // Without this sync a power loss could bring the cut batches back, and
            // recovery would keep them: they are valid.
            faults::guard(faults::Op::Sync, &self.log_path, || file.sync_data())
                .map_err(|e| StorageError::io(format!("fsync {}", self.log_path.display()), e))
        })?;
        self.offset_index
            .write()
            .map_err(|_| lock_poisoned())?
            .truncate_to_offset(new_next);
        self.time_index
            .write()
            .map_err(|_| lock_poisoned())?
            .truncate_to_offset(new_next);
        // Recompute timestamps and the index cadence from what is left.
        let file_len = position as u64;
        if let Err(reason) = self.reload_after_truncate(file_len) {
            return Err(self.corrupt(
                position,
                BatchError::InvalidRecord {
                    reason: format!("rescan after truncation failed: {reason}"),
                },
            ));
        }
        Ok(new_next)
    }

    fn reload_after_truncate(&self, file_len: u64) -> std::result::Result<(), String> {
        self.max_timestamp.store(NO_TIMESTAMP, Ordering::Release);
        self.load_tail(file_len)?;
        // The time index may name a max that was cut: recompute it by a scan of what is
        // left, which truncation (rare, never on the hot path) can afford.
        let map = self.current_map().map_err(|e| e.to_string())?;
        let data: &[u8] = match &map {
            Some(map) => &map[..file_len as usize],
            None => &[],
        };
        let mut max = NO_TIMESTAMP;
        let mut max_offset = self.base_offset;
        for (position, batch) in batch::batches(data).enumerate() {
            let batch = batch.map_err(|e| format!("batch {position}: {e}"))?;
            let header = BatchHeader::new(batch).map_err(|e| e.to_string())?;
            if header.max_timestamp() > max {
                max = header.max_timestamp();
                max_offset = header.base_offset();
            }
        }
        self.max_timestamp.store(max, Ordering::Release);
        self.offset_of_max_timestamp
            .store(max_offset, Ordering::Release);
        Ok(())
    }

    /// Removes the segment's three files (the mapping stays valid for readers holding it).
    pub(crate) fn delete_files(&self) -> Result<()> {
        let paths = [
            self.log_path.clone(),
            self.offset_index
                .read()
                .map_err(|_| lock_poisoned())?
                .file()
                .path()
                .to_path_buf(),
            self.time_index
                .read()
                .map_err(|_| lock_poisoned())?
                .file()
                .path()
                .to_path_buf(),
        ];
        for path in paths {
            crate::fsutil::remove_if_exists(&path)?;
        }
        Ok(())
    }
}

fn file_len(file: &File, path: &Path) -> Result<u64> {
    Ok(file
        .metadata()
        .map_err(|e| StorageError::io(format!("stat {}", path.display()), e))?
        .len())
}

/// An injected write failure (see `faults`): the first `injected.torn` bytes reach the
/// file, then the call fails, as a short write followed by ENOSPC does.
fn torn_write(
    mut file: &File,
    slices: &[IoSlice<'_>],
    injected: faults::Injected,
) -> std::io::Result<()> {
    let mut left = injected.torn;
    for slice in slices {
        if left == 0 {
            break;
        }
        let n = left.min(slice.len());
        file.write_all(&slice[..n])?;
        left -= n;
    }
    Err(injected.error)
}

/// `write_all` for vectored writes: loops over short writes, retries on EINTR.
fn write_all_vectored(mut file: &File, mut slices: &mut [IoSlice<'_>]) -> std::io::Result<()> {
    IoSlice::advance_slices(&mut slices, 0);
    while !slices.is_empty() {
        match file.write_vectored(slices) {
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::WriteZero,
                    "failed to write whole batches",
                ))
            }
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Merged, sorted byte ranges `[start, end)` of a segment known to hold valid batches.
/// Sequential appends and reads keep it at one or two ranges.
#[derive(Default)]
struct VerifiedRanges {
    ranges: std::sync::Mutex<Vec<(u64, u64)>>,
}

impl VerifiedRanges {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(u64, u64)>> {
        // Updates keep the vector sorted and merged at every step; poison is harmless.
        self.ranges.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn contains(&self, start: u64, end: u64) -> bool {
        self.lock().iter().any(|&(s, e)| s <= start && end <= e)
    }

    fn add(&self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let mut ranges = self.lock();
        // The common case, an append or a sequential read continuing the last range,
        // extends it in place: no allocation on the append path.
        if let Some(last) = ranges.last_mut() {
            if last.0 <= start && start <= last.1 {
                last.1 = last.1.max(end);
                return;
            }
        }
        ranges.push((start, end));
        ranges.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
        for &(s, e) in ranges.iter() {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        *ranges = merged;
    }

    fn truncate(&self, len: u64) {
        let mut ranges = self.lock();
        ranges.retain(|&(s, _)| s < len);
        if let Some(last) = ranges.last_mut() {
            last.1 = last.1.min(len);
        }
    }

    fn reset(&self, valid: u64) {
        let mut ranges = self.lock();
        ranges.clear();
        if valid > 0 {
            ranges.push((0, valid));
        }
    }
}
