//! Damaged ranges: stored offsets that can no longer be read, and how reads get past them.
//!
//! Recovery never deletes intact data to get rid of damage (issue 14, section 4). Only
//! the active (tail) segment may be cut, and only from the recovery point on, where a
//! torn write after a crash is expected. Anything else that does not hold valid batches
//! (bytes flipped or cut in a sealed segment, a segment file missing between two others)
//! becomes a [`DamagedRange`]: reported once with `tracing::error!`, listed by
//! `PartitionLog::damaged_ranges`, refused on read with CORRUPT_MESSAGE, while the whole
//! batches before it and after it stay readable.
//!
//! Where damage is found:
//! - at open, by the full CRC scan of every segment rescanned after an unclean shutdown
//!   (from the recovery point on) and of any segment whose indexes or tail do not match
//!   its file after a clean one;
//! - at open, by the continuity check between segment files (a gap in offsets);
//! - when served: every batch is CRC-checked before it is first returned, so flipped
//!   bytes in a segment that recovery trusted are found by the first read that meets them.
//!
//! How the next good batch after damage is found: [`resync`] scans the bytes after the
//! damaged position one by one for a place where a whole batch starts. A candidate must
//! have magic 2, a length that fits in the file, a base offset in the only range it can
//! have (at or after the first lost offset and before the offset the segment is known to
//! end at), and a CRC-32C that matches its bytes. Random bytes pass all four with a
//! probability far below 2^-60 per position, and the scan needs no index, so it works
//! even when the damage hit the offset index too (which has no checksum). Each position
//! costs a few comparisons; only candidates that pass them are CRC-checked.

use std::path::PathBuf;

use crate::batch::{self, BatchHeader, HEADER_SIZE};

/// A run of offsets that cannot be read, and where it lies on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamagedRange {
    /// The segment file holding the damaged bytes (for a missing segment: the file before
    /// the gap).
    pub file: PathBuf,
    /// First offset that cannot be read.
    pub first_offset: i64,
    /// First offset after the damage that can be read again (exclusive end).
    pub end_offset: i64,
    /// Byte position of the damage in `file`, and its length (0 for a missing segment).
    pub position: u64,
    pub len: u64,
    /// What was wrong with the bytes.
    pub reason: String,
}

impl DamagedRange {
    /// Whether `offset` lies in the damaged offsets.
    pub fn contains_offset(&self, offset: i64) -> bool {
        self.first_offset <= offset && offset < self.end_offset
    }

    pub(crate) fn contains_position(&self, position: u64) -> bool {
        self.position <= position && position < self.position + self.len
    }

    /// Reports the damage once, with everything an operator needs to find it.
    pub(crate) fn log(&self, when: &'static str) {
        tracing::error!(
            file = %self.file.display(),
            position = self.position,
            bytes = self.len,
            first_offset = self.first_offset,
            end_offset = self.end_offset,
            reason = %self.reason,
            when,
            "damaged log range: these offsets are refused with CORRUPT_MESSAGE; data before and after stays readable"
        );
    }
}

/// The first position at or after `from` in `data` where a whole, CRC-valid batch starts
/// with a base offset in `[min_base, max_base)`, with that base offset. See the module
/// doc for why this finds the next good batch and not a false one.
pub(crate) fn resync(
    data: &[u8],
    from: usize,
    min_base: i64,
    max_base: i64,
) -> Option<(usize, i64)> {
    let mut position = from;
    while position + HEADER_SIZE <= data.len() {
        let rest = &data[position..];
        // Cheap checks first: magic byte, then the base offset range, then the length.
        if rest[16] == 2 {
            if let Ok(header) = BatchHeader::new(rest) {
                let base = header.base_offset();
                if base >= min_base && base < max_base && header.last_offset() < max_base {
                    if let Ok(size) = batch::check_framing(rest, rest.len()) {
                        if batch::validate_stored_batch(&rest[..size]).is_ok() {
                            return Some((position, base));
                        }
                    }
                }
            }
        }
        position += 1;
    }
    None
}
