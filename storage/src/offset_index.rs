//! The sparse offset index of one segment (`<base offset>.index`).
//!
//! Each 8-byte entry is `(relative offset: u32 BE, position: u32 BE)`: the batch
//! containing offset `base + relative offset` starts at byte `position` of the `.log`
//! file. An entry is added every `index.interval.bytes` of log, for the batch appended
//! then. Entries increase strictly in both fields.
//!
//! Lookup rule: for a target offset, the largest entry with relative offset <= target
//! gives a position at or before the target's batch; the reader scans batch headers from
//! there (at most about one interval of bytes). No checksum: rebuilt after a crash.

use std::path::Path;

use crate::error::Result;
use crate::index_file::IndexFile;

const ENTRY_SIZE: usize = 8;

pub(crate) struct OffsetIndex {
    file: IndexFile,
    base_offset: i64,
}

/// One index entry, with the offset made absolute again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OffsetPosition {
    pub offset: i64,
    pub position: u64,
}

impl OffsetIndex {
    pub(crate) fn open(path: &Path, base_offset: i64, preallocate: Option<u64>) -> Result<Self> {
        Ok(OffsetIndex {
            file: IndexFile::open(path, ENTRY_SIZE, preallocate)?,
            base_offset,
        })
    }

    pub(crate) fn create(path: &Path, base_offset: i64, max_bytes: u64) -> Result<Self> {
        Ok(OffsetIndex {
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

    pub(crate) fn entry(&self, i: usize) -> OffsetPosition {
        decode(self.file.entry(i), self.base_offset)
    }

    pub(crate) fn last(&self) -> Option<OffsetPosition> {
        self.len().checked_sub(1).map(|i| self.entry(i))
    }

    /// Adds an entry unless it would not increase both fields (then it is skipped: the
    /// index is sparse, a missing entry only costs a longer scan). Returns false when full,
    /// an error when the entry's page cannot get disk blocks (a full disk).
    pub(crate) fn append(&mut self, offset: i64, position: u64) -> Result<bool> {
        let relative = offset - self.base_offset;
        if relative < 0 || relative > u32::MAX as i64 || position > u32::MAX as u64 {
            return Ok(true);
        }
        if let Some(last) = self.last() {
            if offset <= last.offset || position <= last.position {
                return Ok(true);
            }
        }
        let mut entry = [0u8; ENTRY_SIZE];
        entry[..4].copy_from_slice(&(relative as u32).to_be_bytes());
        entry[4..].copy_from_slice(&(position as u32).to_be_bytes());
        self.file.push(&entry)
    }

    /// The largest entry at or before `offset`, or the segment start.
    pub(crate) fn lookup(&self, offset: i64) -> OffsetPosition {
        let base = self.base_offset;
        self.file
            .largest_at_most(offset, |e| decode(e, base).offset)
            .map(|i| self.entry(i))
            .unwrap_or(OffsetPosition {
                offset: base,
                position: 0,
            })
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

    /// Checks the entries of a trimmed index against its log: strictly increasing and
    /// within the log's size. A failing index is rebuilt by the caller.
    pub(crate) fn is_sane(&self, log_size: u64) -> bool {
        let mut previous: Option<OffsetPosition> = None;
        for i in 0..self.len() {
            let entry = self.entry(i);
            if entry.position >= log_size {
                return false;
            }
            if let Some(p) = previous {
                if entry.offset <= p.offset || entry.position <= p.position {
                    return false;
                }
            }
            previous = Some(entry);
        }
        true
    }
}

fn decode(bytes: &[u8], base_offset: i64) -> OffsetPosition {
    let mut rel = [0u8; 4];
    let mut pos = [0u8; 4];
    if bytes.len() == ENTRY_SIZE {
        rel.copy_from_slice(&bytes[..4]);
        pos.copy_from_slice(&bytes[4..]);
    }
    OffsetPosition {
        offset: base_offset + u32::from_be_bytes(rel) as i64,
        position: u32::from_be_bytes(pos) as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_finds_largest_entry_at_or_before() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.index");
        let mut index = OffsetIndex::create(&path, 100, 80).unwrap();
        assert_eq!(
            index.lookup(150),
            OffsetPosition {
                offset: 100,
                position: 0
            }
        );
        assert!(index.append(110, 4096).unwrap());
        assert!(index.append(120, 8192).unwrap());
        assert!(
            index.append(120, 9000).unwrap(),
            "non-increasing offset is skipped"
        );
        assert_eq!(index.len(), 2);
        assert_eq!(index.lookup(105).position, 0);
        assert_eq!(index.lookup(110).position, 4096);
        assert_eq!(index.lookup(119).position, 4096);
        assert_eq!(index.lookup(10_000).position, 8192);
        index.truncate_to_offset(120);
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn trim_then_reopen_keeps_entries_and_can_extend() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.index");
        let mut index = OffsetIndex::create(&path, 0, 8 * 4).unwrap();
        for i in 1..=4 {
            assert!(index.append(i * 10, i as u64 * 100).unwrap());
        }
        assert!(index.is_full());
        assert!(!index.append(50, 500).unwrap());
        index.file_mut().trim().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 32);
        drop(index);
        let mut reopened = OffsetIndex::open(&path, 0, Some(8 * 10)).unwrap();
        assert_eq!(reopened.len(), 4);
        assert!(reopened.is_sane(1000));
        assert!(!reopened.is_sane(300));
        assert!(reopened.append(50, 500).unwrap());
        assert_eq!(reopened.lookup(55).position, 500);
    }
}
