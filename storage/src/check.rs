//! Offline, read-only verification of a partition directory (`sluice-broker check`), in
//! the spirit of Kafka's DumpLogSegments: every batch of every segment is CRC-checked
//! and its offsets checked against the previous batch's, segments are checked for
//! continuity, and each damaged range is reported the way the broker would report it.
//!
//! Nothing is written: files are only read (never mapped for writing, never truncated,
//! no index rebuilt), so it is safe on a directory a broker is using or one being
//! inspected after a failure. The active segment of a running broker may end in a batch
//! being written; that shows up as a torn tail.

use std::fs;
use std::path::{Path, PathBuf};

use crate::batch::{self, BatchHeader};
use crate::damage::{self, DamagedRange};
use crate::error::{Result, StorageError};
use crate::fsutil::{parse_segment_file_name, LOG_SUFFIX};

/// What the check found in one segment file.
#[derive(Debug, Clone)]
pub struct SegmentCheck {
    pub file: PathBuf,
    pub base_offset: i64,
    pub bytes: u64,
    /// Valid batches and the records they hold.
    pub batches: u64,
    pub records: u64,
    /// Offset after the last valid batch (or after the damage that ends the file).
    pub next_offset: i64,
    /// Byte ranges that hold no valid batch.
    pub damaged: Vec<DamagedRange>,
}

/// What the check found in one partition directory.
#[derive(Debug, Clone, Default)]
pub struct PartitionCheck {
    pub segments: Vec<SegmentCheck>,
    /// Offsets no segment file holds, between two files.
    pub gaps: Vec<DamagedRange>,
    /// Files that could not be read, with the error.
    pub unreadable: Vec<(PathBuf, String)>,
}

impl PartitionCheck {
    /// Whether nothing is wrong.
    pub fn is_clean(&self) -> bool {
        self.gaps.is_empty()
            && self.unreadable.is_empty()
            && self.segments.iter().all(|s| s.damaged.is_empty())
    }
}

/// Verifies every segment in `dir` (see the module doc).
pub fn check_partition_dir(dir: &Path) -> Result<PartitionCheck> {
    let mut bases = Vec::new();
    let entries =
        fs::read_dir(dir).map_err(|e| StorageError::io(format!("list {}", dir.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StorageError::io(format!("list {}", dir.display()), e))?;
        if let Some((base, LOG_SUFFIX)) =
            entry.file_name().to_str().and_then(parse_segment_file_name)
        {
            bases.push((base, entry.path()));
        }
    }
    bases.sort();
    let mut report = PartitionCheck::default();
    for (i, (base, path)) in bases.iter().enumerate() {
        let bytes = match fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) => {
                report.unreadable.push((path.clone(), e.to_string()));
                continue;
            }
        };
        let next_base = bases.get(i + 1).map(|(b, _)| *b);
        let segment = check_segment(path, *base, &bytes, next_base);
        if let Some(prev) = report.segments.last() {
            if *base > prev.next_offset {
                report.gaps.push(DamagedRange {
                    file: prev.file.clone(),
                    first_offset: prev.next_offset,
                    end_offset: *base,
                    position: prev.bytes,
                    len: 0,
                    reason: format!(
                        "no segment file holds these offsets; the next file is {}",
                        path.display()
                    ),
                });
            } else if *base < prev.next_offset {
                report.unreadable.push((
                    path.clone(),
                    format!(
                        "starts at offset {base}, inside the offsets of {} (overlapping segments)",
                        prev.file.display()
                    ),
                ));
            }
        }
        report.segments.push(segment);
    }
    Ok(report)
}

/// Walks the batches of one segment file's bytes, resyncing after damage.
fn check_segment(path: &Path, base: i64, data: &[u8], next_base: Option<i64>) -> SegmentCheck {
    let max_base = next_base.unwrap_or(i64::MAX);
    let mut check = SegmentCheck {
        file: path.to_path_buf(),
        base_offset: base,
        bytes: data.len() as u64,
        batches: 0,
        records: 0,
        next_offset: base,
        damaged: Vec::new(),
    };
    let mut position = 0usize;
    while position < data.len() {
        let rest = &data[position..];
        let problem = match batch::check_framing(rest, rest.len()) {
            Err(e) => Err(e.to_string()),
            Ok(size) => match batch::validate_stored_batch(&rest[..size]) {
                Err(e) => Err(e.to_string()),
                Ok(header) if !follows(&header, check.next_offset, max_base) => Err(format!(
                    "batch offsets {}..={} do not follow offset {}",
                    header.base_offset(),
                    header.last_offset(),
                    check.next_offset
                )),
                Ok(header) => Ok((size, header.next_offset(), header.records_count())),
            },
        };
        match problem {
            Ok((size, next, records)) => {
                check.batches += 1;
                check.records += records.max(0) as u64;
                check.next_offset = next;
                position += size;
            }
            Err(reason) => {
                let (end, end_offset) =
                    match damage::resync(data, position + 1, check.next_offset, max_base) {
                        Some(found) => found,
                        None => (data.len(), next_base.unwrap_or(check.next_offset)),
                    };
                let reason = if end == data.len() && next_base.is_none() {
                    format!("{reason} (torn tail of the last segment: the broker cuts it at start if it is past the recovery point)")
                } else {
                    reason
                };
                check.damaged.push(DamagedRange {
                    file: path.to_path_buf(),
                    first_offset: check.next_offset,
                    end_offset: end_offset.max(check.next_offset),
                    position: position as u64,
                    len: (end - position) as u64,
                    reason,
                });
                check.next_offset = end_offset.max(check.next_offset);
                position = end;
            }
        }
    }
    check
}

fn follows(header: &BatchHeader<'_>, expected: i64, max_base: i64) -> bool {
    header.base_offset() == expected
        && header.last_offset() >= header.base_offset()
        && header.last_offset() < max_base
}
