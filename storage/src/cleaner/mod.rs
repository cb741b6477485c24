//! The log cleaner: Kafka's log compaction (`cleanup.policy=compact`) for one partition
//! log, as [`PartitionLog::clean`](crate::PartitionLog::clean).
//!
//! Owns: choosing the cleanable range of a log, the offset map of the dirty section,
//! rewriting sealed segments keeping each key's latest record, swapping the rewritten
//! segments in crash-safely, finishing a swap a crash interrupted, and the cleaner
//! checkpoint. Not here (the broker's job): which log to clean when (compare
//! [`Cleanable::dirty_ratio`] with `min.cleanable.dirty.ratio`, `max.compaction.lag.ms`),
//! cleaner threads, topic configs and metrics.
//!
//! - `offset_map`: key hash -> latest offset, bounded by the dedupe buffer.
//! - `filter`: which records of a batch stay, and the batch that holds them.
//! - `swap`: `.cleaned` -> `.swap` -> segment renames, and their recovery at open.
//! - `checkpoint`: the `cleaner-offset-checkpoint` file (first dirty offset).
//! - `throttle`: the I/O rate limit.
//!
//! One clean, as Kafka's `Cleaner.doClean`:
//! 1. The cleanable range: from the log start, the sealed segments that end at or below
//!    the caller's bound (last stable offset) and the high watermark (always applied by
//!    `PartitionLog`), whose largest timestamp
//!    is at least `min.compaction.lag.ms` old, without damage or a gap before them; it
//!    stops at the first that is not. The active segment is never cleanable. The dirty
//!    section is the part of that range at or after the checkpoint.
//! 2. The offset map is built over the dirty section. When it is full (a new key does not
//!    fit), the clean goes only up to that record: it becomes the next first dirty offset.
//! 3. Every segment from the log start up to that offset is rewritten (filter rules in
//!    `filter`), grouped into outputs no bigger than `segment.bytes` whose offsets fit the
//!    index's relative offsets (Kafka's `groupSegmentsBySize`), with rebuilt indexes.
//! 4. Each group is swapped in under the append lock (`swap`), in offset order; then the
//!    checkpoint moves to the end of the cleaned range.
//!
//! Appends, reads and retention run while a clean reads and writes; only the swap of
//! each group takes the append lock (renames and two directory fsyncs). A group whose
//! segments changed meanwhile (retention removed one) is not swapped: the clean stops
//! there, reports `interrupted` and leaves the checkpoint. A truncation shrinks a
//! segment file (`truncate_fully_and_start_at` deletes them all), which must not happen
//! under the cleaner's reads of its mapping: it
//! asks the running clean to stop (checked before every batch; the clean then reports
//! `interrupted`) and waits for it, as Kafka aborts cleaning before truncating. Readers holding a replaced segment keep its mapping, which stays valid
//! after the file is unlinked (as with retention); new reads see the new segment.
//!
//! Memory: the offset map (the dedupe buffer), one batch's decompressed records, and up
//! to [`WRITE_CHUNK`] bytes of output batches. Input segments are read through their
//! read-only mappings. Nothing read from disk can panic the cleaner: a batch that fails
//! validation stops the clean of that log with [`StorageError::CorruptSegment`] before
//! anything is swapped (groups already swapped stay swapped; they are complete).

mod checkpoint;
pub(crate) mod filter;
mod offset_map;
pub(crate) mod swap;
mod throttle;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

pub use checkpoint::FILE as CHECKPOINT_FILE;
pub use offset_map::{BYTES_PER_ENTRY, LOAD_FACTOR};
pub use throttle::MAX_SLEEP;

pub(crate) use checkpoint::{
    clamp as clamp_checkpoint, read as read_checkpoint, reset_above as reset_checkpoint_above,
};

use crate::batch::{self, BatchHeader, Records, HEADER_SIZE};
use crate::error::{Result, StorageError};
use crate::log::LogInner;
use crate::segment::{PreparedBatch, Segment};
use filter::{Filtered, Policy};
use offset_map::OffsetMap;
use throttle::Throttle;

/// Output bytes gathered before one write to the cleaned segment.
pub const WRITE_CHUNK: usize = 1 << 20;

/// What one clean may do; the broker fills it from the topic and broker configs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanOptions {
    /// `log.cleaner.dedupe.buffer.size` (per cleaner thread): bytes of the offset map,
    /// [`BYTES_PER_ENTRY`] per key, filled to [`LOAD_FACTOR`].
    pub dedupe_buffer_bytes: usize,
    /// `delete.retention.ms`: how long a tombstone stays after the first clean saw it.
    pub delete_retention_ms: i64,
    /// `min.compaction.lag.ms`: a segment whose largest timestamp is newer than
    /// `now_ms - min_compaction_lag_ms` is not cleaned (nor anything after it).
    pub min_compaction_lag_ms: i64,
    /// The cleaner's clock (ms since the epoch).
    pub now_ms: i64,
    /// `log.cleaner.io.max.bytes.per.second` (read plus written); `None`: unlimited.
    pub io_max_bytes_per_sec: Option<u64>,
    /// Only segments ending at or below this offset are cleaned: the last stable offset,
    /// say. The log's high watermark bounds it in any case (`PartitionLog::clean`).
    pub max_offset: i64,
}

impl Default for CleanOptions {
    /// Kafka's defaults, unbounded offset, clock at 0.
    fn default() -> Self {
        CleanOptions {
            dedupe_buffer_bytes: 128 << 20,
            delete_retention_ms: 86_400_000,
            min_compaction_lag_ms: 0,
            now_ms: 0,
            io_max_bytes_per_sec: None,
            max_offset: i64::MAX,
        }
    }
}

/// What a log holds for the cleaner (Kafka's `LogToClean`), cheap to compute: segment
/// sizes only, no file is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cleanable {
    /// The first offset not yet cleaned (checkpoint, at least the log start).
    pub first_dirty_offset: i64,
    /// The end of the cleanable range (a segment boundary, never past the active
    /// segment's base or the caller's bound).
    pub end_offset: i64,
    /// Bytes of the cleanable segments wholly below the first dirty offset.
    pub clean_bytes: u64,
    /// Bytes of the cleanable segments at or after it.
    pub dirty_bytes: u64,
}

impl Cleanable {
    /// `dirty / (clean + dirty)`, 0 for nothing cleanable: compare it with
    /// `min.cleanable.dirty.ratio`.
    pub fn dirty_ratio(&self) -> f64 {
        let total = self.clean_bytes + self.dirty_bytes;
        if total == 0 {
            0.0
        } else {
            self.dirty_bytes as f64 / total as f64
        }
    }
}

/// What a clean did.
#[derive(Debug, Clone, PartialEq)]
pub struct CleanOutcome {
    /// Bytes of input segments read (map building and rewriting).
    pub bytes_read: u64,
    /// Bytes of cleaned segments written.
    pub bytes_written: u64,
    /// Records dropped (superseded values and expired tombstones).
    pub records_removed: u64,
    /// Of those, tombstones past their delete horizon.
    pub tombstones_removed: u64,
    /// Input segments replaced, and the output segments that replaced them.
    pub segments_replaced: usize,
    pub segments_written: usize,
    /// The first dirty offset after the clean (the checkpoint).
    pub first_dirty_offset: i64,
    /// [`Cleanable::dirty_ratio`] before and after.
    pub dirty_ratio_before: f64,
    pub dirty_ratio_after: f64,
    /// The log changed under the clean (retention, truncation): it stopped early and left
    /// the checkpoint where it was.
    pub interrupted: bool,
    pub elapsed: Duration,
    /// Time slept by the I/O throttle.
    pub throttled: Duration,
}

/// The cleanable range of `segments` (module doc, step 1).
pub(crate) fn cleanable(
    segments: &[Arc<Segment>],
    log_start: i64,
    checkpoint: Option<i64>,
    opts: &CleanOptions,
) -> (Cleanable, usize) {
    let first_base = segments.first().map_or(log_start, |s| s.base_offset());
    let mut count = 0;
    let mut end = first_base;
    let sealed = segments.len().saturating_sub(1);
    for (i, segment) in segments[..sealed].iter().enumerate() {
        let too_new = opts.min_compaction_lag_ms > 0
            && segment.max_timestamp() > opts.now_ms.saturating_sub(opts.min_compaction_lag_ms);
        let gap = i > 0 && segment.base_offset() != segments[i - 1].next_offset();
        if segment.next_offset() > opts.max_offset
            || too_new
            || gap
            || !segment.damaged_ranges().is_empty()
        {
            break;
        }
        count = i + 1;
        end = segment.next_offset();
    }
    // A checkpoint above the log end is stale (see `checkpoint::reset_above`): the
    // whole log is dirty, as Kafka resets it to the log start.
    let log_end = segments.last().map_or(log_start, |s| s.next_offset());
    let first_dirty = checkpoint
        .filter(|&c| c <= log_end)
        .unwrap_or(log_start)
        .max(log_start)
        .max(first_base);
    let (mut clean_bytes, mut dirty_bytes) = (0, 0);
    for segment in &segments[..count] {
        if segment.next_offset() <= first_dirty {
            clean_bytes += segment.size();
        } else {
            dirty_bytes += segment.size();
        }
    }
    let range = Cleanable {
        first_dirty_offset: first_dirty,
        end_offset: end,
        clean_bytes,
        dirty_bytes,
    };
    (range, count)
}

/// Runs one clean of `log` (module doc). The caller holds the log's clean lock.
pub(crate) fn run(log: &LogInner, opts: &CleanOptions) -> Result<CleanOutcome> {
    let started = Instant::now();
    let dir = log.dir().to_path_buf();
    let config = log.config_snapshot();
    let segments = log.segments_snapshot();
    let (range, count) = cleanable(&segments, log.log_start(), checkpoint::read(&dir)?, opts);
    let mut outcome = CleanOutcome {
        bytes_read: 0,
        bytes_written: 0,
        records_removed: 0,
        tombstones_removed: 0,
        segments_replaced: 0,
        segments_written: 0,
        first_dirty_offset: range.first_dirty_offset,
        dirty_ratio_before: range.dirty_ratio(),
        dirty_ratio_after: range.dirty_ratio(),
        interrupted: false,
        elapsed: Duration::ZERO,
        throttled: Duration::ZERO,
    };
    if range.first_dirty_offset >= range.end_offset {
        outcome.elapsed = started.elapsed();
        return Ok(outcome);
    }
    let span = tracing::info_span!("clean", dir = %dir.display());
    let _span = span.enter();
    let mut throttle = Throttle::new(opts.io_max_bytes_per_sec);
    let limit = config
        .max_decompressed_bytes
        .max(batch::records::DEFAULT_DECOMPRESSION_LIMIT);

    // Step 2: the offset map over the dirty section.
    let mut map = OffsetMap::with_buffer(opts.dedupe_buffer_bytes);
    let end = build_map(
        log,
        &segments[..count],
        range.first_dirty_offset..range.end_offset,
        &mut map,
        limit,
        &mut throttle,
        &mut outcome,
    )?;
    let Ok(end) = end else {
        return Ok(aborted(outcome, &throttle, started));
    };
    tracing::debug!(
        keys = map.len(),
        capacity = map.capacity(),
        first_dirty = range.first_dirty_offset,
        end,
        "offset map built"
    );
    if end <= range.first_dirty_offset {
        // Cannot happen with a map of at least one slot (its first key always fits);
        // kept so that no clean can loop without progress.
        return Err(StorageError::InvalidArgument(format!(
            "dedupe buffer of {} bytes holds no key",
            opts.dedupe_buffer_bytes
        )));
    }

    // Step 3 and 4: rewrite and swap, group by group.
    let upto = segments[..count]
        .iter()
        .take_while(|s| s.base_offset() < end)
        .count();
    let policy = Policy {
        map: &map,
        now_ms: opts.now_ms,
        delete_retention_ms: opts.delete_retention_ms,
        map_end: end,
        decompress_limit: limit,
    };
    for group in group_by_size(
        &segments[..upto],
        config.segment_bytes,
        config.segment_index_bytes,
    ) {
        let base = group[0].base_offset();
        match write_group(log, group, &policy, &mut throttle, &mut outcome) {
            Ok(Ok(())) => {}
            Ok(Err(Aborted)) => {
                swap::discard(&dir, base);
                return Ok(aborted(outcome, &throttle, started));
            }
            Err(e) => {
                swap::discard(&dir, base);
                return Err(e);
            }
        }
        if !log.swap_cleaned(group)? {
            tracing::info!(base_offset = base, "log changed during the clean; stopping");
            swap::discard(&dir, base);
            outcome.interrupted = true;
            break;
        }
        outcome.segments_replaced += group.len();
        outcome.segments_written += 1;
    }
    if !outcome.interrupted {
        checkpoint::write(&dir, end)?;
        outcome.first_dirty_offset = end;
    }
    let after = log.segments_snapshot();
    outcome.dirty_ratio_after = cleanable(
        &after,
        log.log_start(),
        Some(outcome.first_dirty_offset),
        opts,
    )
    .0
    .dirty_ratio();
    outcome.throttled = throttle.slept();
    outcome.elapsed = started.elapsed();
    tracing::info!(
        read = outcome.bytes_read,
        written = outcome.bytes_written,
        removed = outcome.records_removed,
        segments = outcome.segments_replaced,
        first_dirty = outcome.first_dirty_offset,
        ratio_before = outcome.dirty_ratio_before,
        ratio_after = outcome.dirty_ratio_after,
        elapsed_ms = outcome.elapsed.as_millis() as u64,
        "cleaned log"
    );
    Ok(outcome)
}

/// A truncation asked the clean to stop (see `LogInner::clean_aborted`).
struct Aborted;

/// The outcome of a clean a truncation stopped: whatever was swapped in stays, the
/// checkpoint does not move.
fn aborted(mut outcome: CleanOutcome, throttle: &Throttle, started: Instant) -> CleanOutcome {
    tracing::info!("clean stopped for a truncation");
    outcome.interrupted = true;
    outcome.throttled = throttle.slept();
    outcome.elapsed = started.elapsed();
    outcome
}

/// The whole batches of `segment`, from its mapping. A batch whose framing is broken ends
/// the walk with an error; a truncation waiting for the clean ends it with `Err(Aborted)`
/// inside `Ok`, before the next batch is touched.
fn for_each_batch(
    log: &LogInner,
    segment: &Segment,
    mut f: impl FnMut(Bytes, BatchHeader<'_>) -> Result<()>,
) -> Result<Result<(), Aborted>> {
    let data = segment.bytes()?;
    let mut position = 0;
    while position < data.len() {
        if log.clean_aborted() {
            return Ok(Err(Aborted));
        }
        let corrupt = |source| StorageError::CorruptSegment {
            path: segment.log_path().to_path_buf(),
            position: position as u64,
            source,
        };
        let rest = &data[position..];
        let size = batch::check_framing(rest, rest.len()).map_err(corrupt)?;
        let one = data.slice(position..position + size);
        let header = BatchHeader::new(rest).map_err(corrupt)?;
        f(one, header).map_err(|e| match e {
            StorageError::InvalidBatch(source) => corrupt(source),
            other => other,
        })?;
        position += size;
    }
    Ok(Ok(()))
}

/// Puts every keyed record of the dirty section `from..end` into `map`. Returns the
/// offset the map covers up to: `end`, or the first record whose key did not fit.
fn build_map(
    log: &LogInner,
    segments: &[Arc<Segment>],
    std::ops::Range { start: from, end }: std::ops::Range<i64>,
    map: &mut OffsetMap,
    limit: usize,
    throttle: &mut Throttle,
    outcome: &mut CleanOutcome,
) -> Result<Result<i64, Aborted>> {
    let mut full_at = None;
    for segment in segments.iter().filter(|s| s.next_offset() > from) {
        let walked = for_each_batch(log, segment, |bytes, header| {
            if full_at.is_some() || header.next_offset() <= from || header.is_control() {
                return Ok(());
            }
            outcome.bytes_read += bytes.len() as u64;
            throttle.spend(bytes.len() as u64);
            batch::validate_stored_batch(&bytes)?;
            for record in Records::decode_with_limit(bytes.clone(), limit)? {
                let record = record?;
                if record.offset < from || record.offset >= end {
                    continue;
                }
                let Some(key) = &record.key else { continue };
                if !map.put(key, record.offset) {
                    full_at = Some(record.offset);
                    break;
                }
            }
            Ok(())
        })?;
        if let Err(aborted) = walked {
            return Ok(Err(aborted));
        }
        if full_at.is_some() {
            break;
        }
    }
    Ok(Ok(full_at.unwrap_or(end)))
}

/// Kafka's `groupSegmentsBySize`: consecutive segments whose sizes add up to at most
/// `max_bytes`, whose index files together fit `max_index_bytes`, and whose offsets fit
/// the index's u32 relative offsets.
fn group_by_size(
    segments: &[Arc<Segment>],
    max_bytes: u64,
    max_index_bytes: u64,
) -> Vec<&[Arc<Segment>]> {
    let mut groups = Vec::new();
    let mut start = 0;
    while start < segments.len() {
        let base = segments[start].base_offset();
        let mut bytes = segments[start].size();
        let mut index_bytes = segments[start].index_bytes();
        let mut end = start + 1;
        while end < segments.len() {
            let next = &segments[end];
            if bytes + next.size() > max_bytes
                || index_bytes + next.index_bytes() > max_index_bytes
                || next.next_offset() - 1 - base > i32::MAX as i64
            {
                break;
            }
            bytes += next.size();
            index_bytes += next.index_bytes();
            end += 1;
        }
        groups.push(&segments[start..end]);
        start = end;
    }
    groups
}

/// Writes the cleaned copy of `group` as `<base>.*.cleaned`, sealed and fsynced.
fn write_group(
    log: &LogInner,
    group: &[Arc<Segment>],
    policy: &Policy<'_>,
    throttle: &mut Throttle,
    outcome: &mut CleanOutcome,
) -> Result<Result<(), Aborted>> {
    let config = log.config_snapshot();
    let base = group[0].base_offset();
    let capacity: u64 = group.iter().map(|s| s.size()).sum();
    let out = Segment::create_named(
        log.dir(),
        base,
        capacity.max(1),
        config.segment_index_bytes,
        swap::CLEANED,
    )?;
    // (batch bytes, header replaced or not) waiting for the next write.
    let mut pending: Vec<(Bytes, Option<Vec<u8>>)> = Vec::new();
    let mut pending_bytes = 0;
    let flush = |pending: &mut Vec<(Bytes, Option<Vec<u8>>)>,
                 outcome: &mut CleanOutcome,
                 throttle: &mut Throttle|
     -> Result<()> {
        let prepared = pending
            .iter()
            .map(|(input, rewritten)| {
                let bytes: &[u8] = rewritten.as_deref().unwrap_or(input);
                let header = BatchHeader::new(bytes)?;
                let mut head = [0u8; HEADER_SIZE];
                head.copy_from_slice(&bytes[..HEADER_SIZE]);
                Ok(PreparedBatch {
                    header: head,
                    body: &bytes[HEADER_SIZE..],
                    base_offset: header.base_offset(),
                    next_offset: header.next_offset(),
                    max_timestamp: header.max_timestamp(),
                })
            })
            .collect::<Result<Vec<PreparedBatch<'_>>>>()?;
        let size: u64 = prepared.iter().map(|b| b.size() as u64).sum();
        if !prepared.is_empty() {
            out.append(&prepared, config.index_interval_bytes)?;
        }
        outcome.bytes_written += size;
        throttle.spend(size);
        pending.clear();
        Ok(())
    };
    for segment in group {
        let walked = for_each_batch(log, segment, |bytes, _header| {
            outcome.bytes_read += bytes.len() as u64;
            throttle.spend(bytes.len() as u64);
            let result = filter::filter_batch(&bytes, policy)?;
            outcome.records_removed += result.records_removed;
            outcome.tombstones_removed += result.tombstones_removed;
            let rewritten = match result.batch {
                Filtered::Unchanged => None,
                Filtered::Rewritten(new) => Some(new),
            };
            // A bare header following another one it can merge with joins it.
            if let Some((last_input, last_rewritten)) = pending.last_mut() {
                let last: &[u8] = last_rewritten.as_deref().unwrap_or(last_input);
                let this: &[u8] = rewritten.as_deref().unwrap_or(&bytes);
                if let Some(merged) = filter::merge_empty(last, this) {
                    *last_rewritten = Some(merged);
                    return Ok(());
                }
            }
            pending_bytes += rewritten.as_ref().map_or(bytes.len(), Vec::len);
            pending.push((bytes, rewritten));
            if pending_bytes >= WRITE_CHUNK {
                pending_bytes = 0;
                flush(&mut pending, outcome, throttle)?;
            }
            Ok(())
        })?;
        if let Err(aborted) = walked {
            return Ok(Err(aborted));
        }
    }
    flush(&mut pending, outcome, throttle)?;
    out.seal()?;
    out.sync_all()?;
    let expected = group.last().map_or(base, |s| s.next_offset());
    if out.next_offset() != expected {
        return Err(StorageError::InvalidArgument(format!(
            "cleaned segment {base} ends at offset {}, the segments it replaces at {expected}",
            out.next_offset()
        )));
    }
    Ok(Ok(()))
}
