//! The sparse time index of one segment (`<base offset>.timeindex`).
//!
//! Each 12-byte entry is `(timestamp: i64 BE, relative offset: u32 BE)`: `timestamp` is the
//! largest timestamp of the segment up to and including the batch that holds offset
//! `base + relative offset`, and that batch is the first to reach it. Entries are added
//! with the offset index entries, only when the max timestamp grew, so both fields
//! increase strictly. When a segment is sealed a final entry records its max timestamp,
//! so the last entry of a sealed segment is the segment's largest timestamp.
//!
//! Lookup rule: the largest entry with timestamp < target names a batch before which no
//! batch reaches the target; the reader scans from that batch. No checksum: rebuilt after
//! a crash.

use std::path::Path;

use crate::error::Result;
use crate::index_file::IndexFile;

const ENTRY_SIZE: usize = 12;

pub(crate) struct TimeIndex {
    file: IndexFile,
    base_offset: i64,
}

/// One time index entry, with the offset made absolute again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimestampOffset {
    pub timestamp: i64,
    pub offset: i64,
}

impl TimeIndex {
    pub(crate) fn open(path: &Path, base_offset: i64, preallocate: Option<u64>) -> Result<Self> {
        Ok(TimeIndex {
            file: IndexFile::open(path, ENTRY_SIZE, preallocate)?,
            base_offset,
        })
    }

    pub(crate) fn create(path: &Path, base_offset: i64, max_bytes: u64) -> Result<Self> {
        Ok(TimeIndex {
            file: IndexFile::create(path, ENTRY_SIZE, max_bytes)?,
            base_offset,
        })
    }

    pub(crate) fn file(&self) -> &IndexFile {
        &self.file
    }
    pub(crate) fn file_mut(&mut self) -> &mut IndexFile {
        &mut self.file
    }

    pub(crate) fn len(&self) -> usize {
        self.file.len()
    }

    pub(crate) fn is_full(&self) -> bool {
        self.file.is_full()
    }

    pub(crate) fn entry(&self, i: usize) -> TimestampOffset {
        decode(self.file.entry(i), self.base_offset)
    }

    pub(crate) fn last(&self) -> Option<TimestampOffset> {
        self.len().checked_sub(1).map(|i| self.entry(i))
    }

    /// Adds an entry if it increases both the timestamp and the offset. Returns false
    /// when the index is full, an error when the entry's page cannot get disk blocks.
    pub(crate) fn maybe_append(&mut self, timestamp: i64, offset: i64) -> Result<bool> {
        let relative = offset - self.base_offset;
        if relative < 0 || relative > u32::MAX as i64 {
            return Ok(true);
        }
        if let Some(last) = self.last() {
            if timestamp <= last.timestamp || offset <= last.offset {
                return Ok(true);
            }
        }
        let mut entry = [0u8; ENTRY_SIZE];
        entry[..8].copy_from_slice(&timestamp.to_be_bytes());
        entry[8..].copy_from_slice(&(relative as u32).to_be_bytes());
        self.file.push(&entry)
    }

    /// The offset from which to scan for the first batch with max timestamp >= `target`.
    pub(crate) fn lookup(&self, target: i64) -> i64 {
        self.file
            .largest_at_most(target.saturating_sub(1), |e| decode(e, 0).timestamp)
            .map_or(self.base_offset, |i| self.entry(i).offset)
    }

    /// Drops every entry for offsets >= `offset`.
    pub(crate) fn truncate_to_offset(&mut self, offset: i64) {
        let base = self.base_offset;
        let keep = self
            .file
            .largest_at_most(offset - 1, |e| decode(e, base).offset)
            .map_or(0, |i| i + 1);
        self.file.truncate_entries(keep);
    }

    /// Entries strictly increasing in both fields and below `next_offset`.
    pub(crate) fn is_sane(&self, next_offset: i64) -> bool {
        let mut previous: Option<TimestampOffset> = None;
        for i in 0..self.len() {
            let entry = self.entry(i);
            if entry.offset >= next_offset {
                return false;
            }
            if let Some(p) = previous {
                if entry.timestamp <= p.timestamp || entry.offset <= p.offset {
                    return false;
                }
            }
            previous = Some(entry);
        }
        true
    }
}

fn decode(bytes: &[u8], base_offset: i64) -> TimestampOffset {
    let mut ts = [0u8; 8];
    let mut rel = [0u8; 4];
    if bytes.len() == ENTRY_SIZE {
        ts.copy_from_slice(&bytes[..8]);
        rel.copy_from_slice(&bytes[8..]);
    }
    TimestampOffset {
        timestamp: i64::from_be_bytes(ts),
        offset: base_offset + u32::from_be_bytes(rel) as i64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_returns_scan_start() {
        let dir = tempfile::tempdir().unwrap();
        let mut index = TimeIndex::create(&dir.path().join("0.timeindex"), 0, 120).unwrap();
        assert_eq!(index.lookup(1000), 0);
        assert!(index.maybe_append(1000, 10).unwrap());
        assert!(
            index.maybe_append(1000, 20).unwrap(),
            "same timestamp is skipped"
        );
        assert!(index.maybe_append(2000, 30).unwrap());
        assert_eq!(index.len(), 2);
        assert_eq!(index.lookup(500), 0);
        assert_eq!(
            index.lookup(1000),
            0,
            "an entry equal to the target is not used"
        );
        assert_eq!(index.lookup(1001), 10);
        assert_eq!(index.lookup(5000), 30);
        assert!(index.is_sane(31));
        assert!(!index.is_sane(30));
        index.truncate_to_offset(30);
        assert_eq!(index.len(), 1);
    }
}
