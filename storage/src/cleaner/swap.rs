//! Swapping cleaned segments in, crash-safely, and finishing an interrupted swap at open
//! (Kafka's `LocalLog.replaceSegments` and the swap-file handling of `LogLoader`).
//!
//! A clean writes one output segment per group of input segments, named after the
//! group's first base offset `B`, as `B.log.cleaned`, `B.index.cleaned`,
//! `B.timeindex.cleaned`, and fsyncs them. Then, under the log's append lock:
//!
//! 1. rename the `.cleaned` files to `.swap`, the `.log` last, and fsync the directory.
//!    `B.log.swap` existing (durably) is the commit point of the group;
//! 2. remove the other input segments' files (bases in `(B, end)`, where `end` is the
//!    offset after the last batch of `B.log.swap`, equal to the group's end since every
//!    batch header is kept);
//! 3. rename `B.index.swap` and `B.timeindex.swap` over `B.index`/`B.timeindex`, then
//!    `B.log.swap` over `B.log` (a rename replaces the old file atomically), and fsync
//!    the directory.
//!
//! What a crash leaves, and what [`recover`] (run before a log's segments are listed)
//! does with it:
//! - before step 1 commits: `.cleaned` files, maybe some index `.swap` files, and no
//!   `B.log.swap`: they are deleted; the old segments are intact and untouched;
//! - after step 1: `B.log.swap` exists, so the swap is completed: the segments it covers
//!   are removed and the `.swap` files renamed into place. Only segments whose base lies
//!   inside the swap file's offset range `[B, E)` are removed, so a segment no completed
//!   swap covers is never deleted. `E` is trusted only when every batch of the file
//!   validates (CRC), the batches follow each other from `B`, and `E` is the base of an
//!   existing segment (a group never holds the active segment, so the one after it is
//!   always there). Otherwise nothing is removed or renamed: the log does not open
//!   ([`StorageError::Unavailable`], naming the file) until an operator looks;
//! - after step 3: nothing is left to do.
//!
//! Either way each group is wholly old or wholly new. Groups are committed in offset
//! order, and any mix of old and new groups keeps every key's latest record: a record
//! is only dropped for a later record of its key, which every version of its own group
//! keeps. An index renamed into place before a crash and one never written are both
//! handled by the segment's own load, which rebuilds an index that is missing or does
//! not match the log.

use std::fs;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::batch::{validate_stored_batch, BatchHeader, HEADER_SIZE, MAGIC_V2};
use crate::error::{Result, StorageError};
use crate::faults;
use crate::fsutil::{self, parse_segment_file_name, INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX};

/// Tail of an output file being written.
pub(crate) const CLEANED: &str = ".cleaned";
/// Tail of an output file whose swap is committed.
pub(crate) const SWAP: &str = ".swap";
/// A segment's files, the log last: its rename is the one that commits.
const SUFFIXES: [&str; 3] = [INDEX_SUFFIX, TIME_INDEX_SUFFIX, LOG_SUFFIX];

/// `dir/<base>.<suffix><tail>`.
pub(crate) fn file(dir: &Path, base: i64, suffix: &str, tail: &str) -> PathBuf {
    dir.join(format!("{base:020}.{suffix}{tail}"))
}

fn rename(from: &Path, to: &Path) -> Result<()> {
    faults::guard(faults::Op::Rename, to, || fs::rename(from, to))
        .map_err(|e| StorageError::io(format!("rename {} to {}", from.display(), to.display()), e))
}

/// Step 1: `.cleaned` -> `.swap` for the group at `base`, then a directory fsync.
pub(crate) fn commit(dir: &Path, base: i64) -> Result<()> {
    for suffix in SUFFIXES {
        rename(
            &file(dir, base, suffix, CLEANED),
            &file(dir, base, suffix, SWAP),
        )?;
    }
    fsutil::sync_dir(dir)
}

/// Steps 2 and 3: removes the segments at `others` (the group's bases after `base`) and
/// renames the `.swap` files of `base` into place, then fsyncs the directory.
pub(crate) fn complete(dir: &Path, base: i64, others: &[i64]) -> Result<()> {
    for &other in others {
        for suffix in SUFFIXES.iter().rev() {
            remove(&fsutil::segment_file(dir, other, suffix))?;
        }
    }
    for suffix in SUFFIXES {
        let swap = file(dir, base, suffix, SWAP);
        if suffix == LOG_SUFFIX || swap.exists() {
            rename(&swap, &fsutil::segment_file(dir, base, suffix))?;
        }
    }
    fsutil::sync_dir(dir)
}

/// Best-effort removal of the group's `.cleaned` and `.swap` files after a clean that
/// did not commit (a failure before step 1 finished). Errors are logged: the files are
/// removed at the next open anyway.
pub(crate) fn discard(dir: &Path, base: i64) {
    for tail in [CLEANED, SWAP] {
        for suffix in SUFFIXES {
            let path = file(dir, base, suffix, tail);
            if let Err(e) = fsutil::remove_if_exists(&path) {
                tracing::warn!(file = %path.display(), error = %e, "cannot remove a cleaner file");
            }
        }
    }
}

fn remove(path: &Path) -> Result<()> {
    faults::guard(faults::Op::Remove, path, || match fs::remove_file(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    })
    .map_err(|e| StorageError::io(format!("remove {}", path.display()), e))
}

/// Finishes what a crash interrupted (module doc): deletes uncommitted cleaner files
/// and completes committed swaps. Run at open, before the segments are listed. Returns
/// the number of swaps completed.
pub(crate) fn recover(dir: &Path) -> Result<usize> {
    let entries =
        fs::read_dir(dir).map_err(|e| StorageError::io(format!("list {}", dir.display()), e))?;
    let mut logs = Vec::new();
    let mut swaps = Vec::new();
    let mut loose = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| StorageError::io(format!("list {}", dir.display()), e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some((base, suffix)) = parse_segment_file_name(name) else {
            continue;
        };
        if suffix == LOG_SUFFIX {
            logs.push(base);
        } else if suffix == format!("{LOG_SUFFIX}{SWAP}") {
            swaps.push(base);
        } else if suffix.ends_with(CLEANED) || suffix.ends_with(SWAP) {
            loose.push((base, entry.path()));
        }
    }
    swaps.sort_unstable();
    let mut changed = false;
    for (base, path) in loose {
        // An index `.swap` belongs to a committed swap only with its `.log.swap`.
        if path.to_string_lossy().ends_with(CLEANED) || swaps.binary_search(&base).is_err() {
            tracing::info!(file = %path.display(), "removing a file of an unfinished clean");
            fsutil::remove_if_exists(&path)?;
            changed = true;
        }
    }
    logs.sort_unstable();
    for &base in &swaps {
        let swap = file(dir, base, LOG_SUFFIX, SWAP);
        let end = end_offset(&swap, base)
            .and_then(|end| {
                // A group never holds the active segment, so the segment after it is
                // still there: anything else means the file does not say where the
                // group ends, and removing segments on its word could lose intact ones.
                if logs.binary_search(&end).is_ok() {
                    Ok(end)
                } else {
                    Err(format!("it ends at offset {end}, where no segment starts"))
                }
            })
            .map_err(|reason| StorageError::Unavailable {
                path: dir.to_path_buf(),
                reason: format!(
                    "cleaned segment {} cannot be swapped in ({reason}); no segment file was \
                     removed: remove the .swap file to open the log with its old segments",
                    swap.display()
                ),
            })?;
        let others: Vec<i64> = logs
            .iter()
            .copied()
            .filter(|&b| b > base && b < end)
            .collect();
        tracing::warn!(
            dir = %dir.display(),
            base_offset = base,
            end_offset = end,
            replaced = others.len() + 1,
            "completing a cleaned-segment swap interrupted by a crash"
        );
        complete(dir, base, &others)?;
        changed = true;
    }
    if changed {
        fsutil::sync_dir(dir)?;
    }
    Ok(swaps.len())
}

/// The offset after the last batch of the swap file of the group at `base`. Every batch
/// is checked (framing, magic, CRC), the first must start at `base` and each next one
/// where the previous one ended: base offsets are not covered by the CRC, and this offset
/// decides which segments are removed. Fails (with a reason) on anything else.
fn end_offset(path: &Path, base: i64) -> std::result::Result<i64, String> {
    let file = fs::File::open(path).map_err(|e| e.to_string())?;
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    let mut position = 0u64;
    let mut expected = base;
    let mut head = [0u8; HEADER_SIZE];
    let mut batch = Vec::new();
    while position < len {
        file.read_exact_at(&mut head, position)
            .map_err(|e| format!("header at byte {position}: {e}"))?;
        let header = BatchHeader::new(&head).map_err(|e| e.to_string())?;
        let size = header.total_size();
        if header.magic() != MAGIC_V2 || size < HEADER_SIZE as i64 {
            return Err(format!("no valid batch at byte {position}"));
        }
        if size as u64 > len - position {
            return Err(format!(
                "the batch at byte {position} runs past the end ({len} bytes)"
            ));
        }
        batch.resize(size as usize, 0);
        file.read_exact_at(&mut batch, position)
            .map_err(|e| format!("batch at byte {position}: {e}"))?;
        let header =
            validate_stored_batch(&batch).map_err(|e| format!("batch at byte {position}: {e}"))?;
        if header.base_offset() != expected {
            return Err(format!(
                "the batch at byte {position} starts at offset {}, expected {expected}",
                header.base_offset()
            ));
        }
        expected = u32::try_from(header.last_offset_delta())
            .ok()
            .and_then(|delta| expected.checked_add(i64::from(delta) + 1))
            .ok_or_else(|| format!("the batch at byte {position} has a bad last offset delta"))?;
        position += size as u64;
    }
    if position == 0 {
        return Err("empty file".to_string());
    }
    Ok(expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_follow_kafka() {
        let dir = Path::new("/d");
        assert_eq!(
            file(dir, 42, LOG_SUFFIX, CLEANED),
            Path::new("/d/00000000000000000042.log.cleaned")
        );
        assert_eq!(
            file(dir, 42, INDEX_SUFFIX, SWAP),
            Path::new("/d/00000000000000000042.index.swap")
        );
    }

    #[test]
    fn an_unreadable_swap_file_removes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let old = fsutil::segment_file(dir.path(), 0, LOG_SUFFIX);
        fs::write(&old, b"old").unwrap();
        fs::write(file(dir.path(), 0, LOG_SUFFIX, SWAP), b"garbage").unwrap();
        fs::write(file(dir.path(), 5, LOG_SUFFIX, CLEANED), b"x").unwrap();
        assert!(matches!(
            recover(dir.path()),
            Err(StorageError::Unavailable { .. })
        ));
        assert_eq!(fs::read(&old).unwrap(), b"old");
    }
}
