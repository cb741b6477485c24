//! The cleaner checkpoint: `cleaner-offset-checkpoint` in the partition directory, the
//! decimal first dirty offset (everything below it was cleaned at least once). Kafka
//! keeps one such file per log directory for all its partitions; one per partition keeps
//! it with the data it describes and needs no shared lock.
//!
//! Written atomically (temp file, fsync, rename, directory fsync) after a clean has
//! swapped in all its segments. A crash before that only makes the next clean redo
//! work; a missing or unreadable file means "nothing cleaned yet" (the log start).

use std::path::Path;

use crate::error::Result;
use crate::fsutil;

/// The file's name inside the partition directory.
pub const FILE: &str = "cleaner-offset-checkpoint";

/// The stored first dirty offset, if any.
pub(crate) fn read(dir: &Path) -> Result<Option<i64>> {
    crate::log::read_offset_file(&dir.join(FILE))
}

/// Stores `offset` as the first dirty offset.
pub(crate) fn write(dir: &Path, offset: i64) -> Result<()> {
    fsutil::write_atomically(&dir.join(FILE), format!("{offset}\n").as_bytes())
}

/// At open: a checkpoint above the log end cannot describe this log (a truncation
/// cut below it and a crash stopped the checkpoint from following): it is reset to the
/// log start, as Kafka's cleaner manager resets an out-of-range checkpoint.
pub(crate) fn reset_above(dir: &Path, log_start: i64, log_end: i64) -> Result<()> {
    match read(dir)? {
        Some(offset) if offset > log_end => {
            tracing::warn!(dir = %dir.display(), checkpoint = offset, log_end, "cleaner checkpoint above the log end; resetting it to the log start");
            write(dir, log_start)
        }
        _ => Ok(()),
    }
}

/// Before a truncation to `log_end`: a checkpoint past the new end would call offsets
/// appended later "clean" although no clean saw them, so it is lowered.
pub(crate) fn clamp(dir: &Path, log_end: i64) -> Result<()> {
    match read(dir)? {
        Some(offset) if offset > log_end => write(dir, log_end),
        _ => Ok(()),
    }
}
