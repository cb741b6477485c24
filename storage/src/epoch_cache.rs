//! The leader-epoch cache of one partition (Kafka's `LeaderEpochFileCache`): for every
//! leader epoch that wrote to the log, the offset of its first record, oldest first.
//!
//! It answers `OffsetsForLeaderEpoch` (where did epoch e end?), which followers use to
//! find where their log diverges from the leader's (KIP-101, KIP-279) instead of trusting
//! the high watermark. Entries are strictly increasing in both epoch and start offset.
//!
//! Persisted in the partition directory as `leader-epoch-checkpoint`, in Kafka's
//! checkpoint text format, written atomically (temp file, fsync, rename, directory fsync)
//! on every change:
//!
//! ```text
//! 0            <- format version
//! 2            <- number of entries
//! 0 0          <- "epoch start_offset", oldest first
//! 3 1500
//! ```
//!
//! The cache changes rarely (a leader change, a truncation, retention moving the log
//! start), so the two fsyncs of a write do not matter. This module is plain data plus
//! the file format; `log` decides when to change and persist it, under its append lock.

use std::path::Path;

use crate::error::Result;
use crate::fsutil;

/// File name of the checkpoint in a partition directory.
pub(crate) const EPOCH_CHECKPOINT_FILE: &str = "leader-epoch-checkpoint";
/// Version line of Kafka's checkpoint files.
const CHECKPOINT_VERSION: i32 = 0;

/// One epoch and the offset of its first record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EpochEntry {
    pub epoch: i32,
    pub start_offset: i64,
}

/// Kafka's EpochEndOffset: the largest epoch at or below the one asked, and the offset
/// where it ended (the start of the next epoch, or the log end for the latest epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EpochEndOffset {
    pub leader_epoch: i32,
    pub end_offset: i64,
}

/// The entries of a cache, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct EpochCache {
    entries: Vec<EpochEntry>,
}

impl EpochCache {
    #[cfg(test)]
    pub(crate) fn from_entries(entries: Vec<EpochEntry>) -> EpochCache {
        EpochCache { entries }
    }

    pub(crate) fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    pub(crate) fn latest(&self) -> Option<EpochEntry> {
        self.entries.last().copied()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Records that `epoch` starts at `start_offset` (Kafka's `assign`). Returns whether
    /// the cache changed. Same epoch as the latest: nothing to do (its later batches do
    /// not move its start). An epoch or start offset not above the latest entry's means
    /// the log and the cache disagree (a follower appending what an older leader wrote
    /// after a truncation the cache did not see): as Kafka does, the entries it
    /// contradicts (epoch >= `epoch` or start >= `start_offset`) go first, with a warning.
    pub(crate) fn assign(&mut self, epoch: i32, start_offset: i64) -> bool {
        if epoch < 0 || start_offset < 0 {
            return false;
        }
        if let Some(last) = self.latest() {
            if last.epoch == epoch && start_offset >= last.start_offset {
                return false;
            }
        }
        let before = self.entries.len();
        let removed: Vec<EpochEntry> = self
            .entries
            .iter()
            .filter(|e| e.epoch >= epoch || e.start_offset >= start_offset)
            .copied()
            .collect();
        self.entries
            .retain(|e| e.epoch < epoch && e.start_offset < start_offset);
        // One removed entry at the same start offset is an epoch in which nothing was
        // written (a leader that changed again before any append, as at every restart
        // that finds no new data): expected, as Kafka says, and not worth a warning.
        let expected = matches!(removed.as_slice(), [only] if only.start_offset == start_offset && only.epoch < epoch);
        if self.entries.len() != before && !expected {
            tracing::warn!(
                epoch,
                start_offset,
                removed = before - self.entries.len(),
                "leader epoch cache: a new entry contradicts later entries, which were removed"
            );
        }
        self.entries.push(EpochEntry {
            epoch,
            start_offset,
        });
        true
    }

    /// Removes the entries starting at or after `end_offset` (the log was truncated
    /// there; Kafka's `truncateFromEnd`). Returns whether the cache changed.
    pub(crate) fn truncate_from_end(&mut self, end_offset: i64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| e.start_offset < end_offset);
        self.entries.len() != before
    }

    /// The log now starts at `start_offset` (retention, DeleteRecords; Kafka's
    /// `truncateFromStart`): entries wholly before it go, and the last entry starting at
    /// or before it is kept, moved to start at `start_offset` (its epoch still wrote the
    /// first records of the log). Returns whether the cache changed.
    pub(crate) fn truncate_from_start(&mut self, start_offset: i64) -> bool {
        let at_or_below = self
            .entries
            .partition_point(|e| e.start_offset <= start_offset);
        if at_or_below == 0 {
            return false;
        }
        let keep_from = at_or_below - 1;
        let moved = self.entries[keep_from].start_offset != start_offset;
        if keep_from == 0 && !moved {
            return false;
        }
        self.entries.drain(..keep_from);
        self.entries[0].start_offset = start_offset;
        true
    }

    /// Kafka's `endOffsetFor`: see [`crate::PartitionLog::end_offset_for_epoch`].
    pub(crate) fn end_offset_for(&self, epoch: i32, log_end: i64) -> Option<EpochEndOffset> {
        let latest = self.latest()?;
        if epoch < 0 {
            return None;
        }
        if epoch == latest.epoch {
            return Some(EpochEndOffset {
                leader_epoch: epoch,
                end_offset: log_end,
            });
        }
        // The first entry with a larger epoch; none: the epoch is beyond the latest.
        let higher = self.entries.partition_point(|e| e.epoch <= epoch);
        let next = self.entries.get(higher)?;
        // The largest epoch <= the one asked. None: the epoch is below the first cached
        // one (retention removed it): as Kafka, the asked epoch ends where the first
        // cached one starts, so a follower that last fetched at it truncates there.
        let floor_epoch = match higher.checked_sub(1).and_then(|i| self.entries.get(i)) {
            Some(floor) => floor.epoch,
            None => epoch,
        };
        Some(EpochEndOffset {
            leader_epoch: floor_epoch,
            end_offset: next.start_offset,
        })
    }

    /// The checkpoint file's bytes (see the module doc).
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = format!("{CHECKPOINT_VERSION}\n{}\n", self.entries.len());
        for entry in &self.entries {
            out.push_str(&format!("{} {}\n", entry.epoch, entry.start_offset));
        }
        out.into_bytes()
    }

    /// Parses a checkpoint file; the reason when it is not a valid one (wrong version,
    /// wrong count, unparsable or non-increasing entries).
    pub(crate) fn decode(bytes: &[u8]) -> std::result::Result<EpochCache, String> {
        let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
        let mut lines = text.lines();
        let version = lines
            .next()
            .and_then(|l| l.trim().parse::<i32>().ok())
            .ok_or("no version line")?;
        if version != CHECKPOINT_VERSION {
            return Err(format!("unsupported version {version}"));
        }
        let count = lines
            .next()
            .and_then(|l| l.trim().parse::<usize>().ok())
            .ok_or("no entry count line")?;
        let mut entries: Vec<EpochEntry> = Vec::with_capacity(count.min(1024));
        for (i, line) in lines.by_ref().take(count).enumerate() {
            let mut fields = line.split_whitespace();
            let (Some(epoch), Some(start), None) = (fields.next(), fields.next(), fields.next())
            else {
                return Err(format!("entry {i} is not \"epoch offset\": {line:?}"));
            };
            let (Ok(epoch), Ok(start_offset)) = (epoch.parse::<i32>(), start.parse::<i64>()) else {
                return Err(format!("entry {i} is not two numbers: {line:?}"));
            };
            if epoch < 0 || start_offset < 0 {
                return Err(format!("entry {i} is negative: {line:?}"));
            }
            if let Some(prev) = entries.last() {
                if epoch <= prev.epoch || start_offset <= prev.start_offset {
                    return Err(format!(
                        "entry {i} does not follow the previous one: {line:?}"
                    ));
                }
            }
            entries.push(EpochEntry {
                epoch,
                start_offset,
            });
        }
        if entries.len() != count {
            return Err(format!(
                "{count} entries announced, {} present",
                entries.len()
            ));
        }
        if lines.any(|l| !l.trim().is_empty()) {
            return Err("text after the last entry".into());
        }
        Ok(EpochCache { entries })
    }

    /// Writes the checkpoint atomically into `dir`.
    pub(crate) fn write(&self, dir: &Path) -> Result<()> {
        fsutil::write_atomically(&dir.join(EPOCH_CHECKPOINT_FILE), &self.encode())
    }
}

/// What reading the checkpoint found.
#[derive(Debug)]
pub(crate) enum Loaded {
    /// A valid checkpoint.
    Cache(EpochCache),
    /// No file (a new log, or a directory of a release without the cache).
    Missing,
    /// A file that is not a valid checkpoint, and why.
    Damaged(String),
}

/// Reads the checkpoint in `dir`. I/O errors other than "not found" are errors.
pub(crate) fn load(dir: &Path) -> Result<Loaded> {
    let path = dir.join(EPOCH_CHECKPOINT_FILE);
    let Some(bytes) = fsutil::read_optional(&path)? else {
        return Ok(Loaded::Missing);
    };
    Ok(match EpochCache::decode(&bytes) {
        Ok(cache) => Loaded::Cache(cache),
        Err(reason) => Loaded::Damaged(reason),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(entries: &[(i32, i64)]) -> EpochCache {
        EpochCache::from_entries(
            entries
                .iter()
                .map(|&(epoch, start_offset)| EpochEntry {
                    epoch,
                    start_offset,
                })
                .collect(),
        )
    }

    fn pairs(cache: &EpochCache) -> Vec<(i32, i64)> {
        cache
            .entries()
            .iter()
            .map(|e| (e.epoch, e.start_offset))
            .collect()
    }

    #[test]
    fn assign_appends_new_epochs_and_ignores_the_current_one() {
        let mut c = EpochCache::default();
        assert!(c.assign(1, 0));
        assert!(!c.assign(1, 5), "same epoch, later offset: no change");
        assert!(c.assign(3, 10));
        assert!(!c.assign(-1, 20), "undefined epoch is never recorded");
        assert_eq!(pairs(&c), vec![(1, 0), (3, 10)]);
        // A contradicting entry removes what it contradicts.
        assert!(c.assign(2, 8));
        assert_eq!(pairs(&c), vec![(1, 0), (2, 8)]);
    }

    #[test]
    fn end_offsets_for_latest_older_below_first_above_latest_and_empty() {
        let c = cache(&[(2, 0), (4, 100), (7, 250)]);
        let eo = |leader_epoch, end_offset| {
            Some(EpochEndOffset {
                leader_epoch,
                end_offset,
            })
        };
        assert_eq!(c.end_offset_for(7, 300), eo(7, 300));
        assert_eq!(c.end_offset_for(4, 300), eo(4, 250));
        assert_eq!(c.end_offset_for(5, 300), eo(4, 250), "floor epoch");
        assert_eq!(c.end_offset_for(2, 300), eo(2, 100));
        assert_eq!(
            c.end_offset_for(1, 300),
            eo(1, 0),
            "below the first epoch: ends where it starts"
        );
        assert_eq!(c.end_offset_for(8, 300), None, "above the latest epoch");
        assert_eq!(c.end_offset_for(-1, 300), None);
        assert_eq!(EpochCache::default().end_offset_for(0, 0), None);
    }

    #[test]
    fn truncation_from_end_and_start() {
        let mut c = cache(&[(2, 0), (4, 100), (7, 250)]);
        assert!(!c.truncate_from_end(300));
        assert!(c.truncate_from_end(250));
        assert_eq!(pairs(&c), vec![(2, 0), (4, 100)]);
        assert!(c.truncate_from_end(50));
        assert_eq!(pairs(&c), vec![(2, 0)]);

        let mut c = cache(&[(2, 0), (4, 100), (7, 250)]);
        assert!(!c.truncate_from_start(0));
        assert!(c.truncate_from_start(120));
        assert_eq!(pairs(&c), vec![(4, 120), (7, 250)]);
        assert!(c.truncate_from_start(250));
        assert_eq!(pairs(&c), vec![(7, 250)]);
        assert!(!c.truncate_from_start(250));
        assert!(c.truncate_from_start(400));
        assert_eq!(pairs(&c), vec![(7, 400)]);
        let mut c = cache(&[(3, 10)]);
        assert!(!c.truncate_from_start(5), "start before the first entry");
    }

    #[test]
    fn checkpoint_text_round_trips_in_kafkas_format() {
        let c = cache(&[(0, 0), (3, 1500)]);
        let text = c.encode();
        assert_eq!(std::str::from_utf8(&text).unwrap(), "0\n2\n0 0\n3 1500\n");
        assert_eq!(EpochCache::decode(&text).unwrap(), c);
        assert_eq!(
            EpochCache::decode(b"0\n0\n").unwrap(),
            EpochCache::default()
        );
        for bad in [
            &b""[..],
            b"1\n0\n",
            b"0\n2\n0 0\n",
            b"0\n1\n0\n",
            b"0\n1\n0 x\n",
            b"0\n2\n3 10\n2 20\n",
            b"0\n2\n3 10\n4 10\n",
            b"0\n1\n-1 0\n",
            b"0\n1\n1 0\ngarbage\n",
            b"\xff\xfe",
        ] {
            assert!(EpochCache::decode(bad).is_err(), "{bad:?} accepted");
        }
    }
}
