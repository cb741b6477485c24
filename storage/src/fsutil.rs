//! Small file-system helpers with the durability rules the log relies on.
//!
//! - [`write_atomically`]: metadata files (topic id, checkpoints, configs) are written to a
//!   temp file, fsynced, renamed over the target, and the directory is fsynced, so a crash
//!   leaves either the old or the new content, never a torn file.
//! - [`sync_dir`]: fsync a directory so a created, renamed or removed entry survives a crash.
//! - File names of segments: the base offset as 20 zero-padded digits, as Kafka names them.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Result, StorageError};
use crate::faults;

/// Suffix of segment data files.
pub const LOG_SUFFIX: &str = "log";
/// Suffix of sparse offset index files.
pub const INDEX_SUFFIX: &str = "index";
/// Suffix of sparse time index files.
pub const TIME_INDEX_SUFFIX: &str = "timeindex";

/// `dir/<20-digit base offset>.<suffix>`.
pub fn segment_file(dir: &Path, base_offset: i64, suffix: &str) -> PathBuf {
    dir.join(format!("{base_offset:020}.{suffix}"))
}

/// Parses a segment file name (`00000000000000000042.log`) into its base offset and suffix.
pub fn parse_segment_file_name(name: &str) -> Option<(i64, &str)> {
    let (stem, suffix) = name.split_once('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let base = stem.parse::<i64>().ok()?;
    Some((base, suffix))
}

/// Fsyncs a directory, making entries created, renamed or removed in it durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    let handle = File::open(dir)
        .map_err(|e| StorageError::io(format!("open directory {}", dir.display()), e))?;
    faults::guard(faults::Op::Sync, dir, || handle.sync_all())
        .map_err(|e| StorageError::io(format!("fsync directory {}", dir.display()), e))
}

/// Replaces `path` with `contents` so that a crash leaves either the old or the new file.
pub fn write_atomically(path: &Path, contents: &[u8]) -> Result<()> {
    let dir = path.parent().ok_or_else(|| {
        StorageError::InvalidArgument(format!("{} has no parent", path.display()))
    })?;
    let file_name = path.file_name().ok_or_else(|| {
        StorageError::InvalidArgument(format!("{} has no file name", path.display()))
    })?;
    let tmp = dir.join(format!(".{}.tmp", file_name.to_string_lossy()));
    {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| StorageError::io(format!("create {}", tmp.display()), e))?;
        file.write_all(contents)
            .map_err(|e| StorageError::io(format!("write {}", tmp.display()), e))?;
        faults::guard(faults::Op::Sync, &tmp, || file.sync_all())
            .map_err(|e| StorageError::io(format!("fsync {}", tmp.display()), e))?;
    }
    faults::guard(faults::Op::Rename, path, || fs::rename(&tmp, path)).map_err(|e| {
        StorageError::io(format!("rename {} to {}", tmp.display(), path.display()), e)
    })?;
    sync_dir(dir)
}

/// Reads a small metadata file; `Ok(None)` when it does not exist.
pub fn read_optional(path: &Path) -> Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StorageError::io(format!("read {}", path.display()), e)),
    }
}

/// Removes a file, treating "already gone" as success.
pub fn remove_if_exists(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StorageError::io(format!("remove {}", path.display()), e)),
    }
}

/// Name of the marker file an orderly shutdown leaves in a data directory.
pub const CLEAN_SHUTDOWN_MARKER: &str = ".clean-shutdown";

/// Consumes the clean-shutdown marker of `data_dir`: returns whether it was present and
/// removes it durably, so a crash from now on is seen as unclean at the next start.
pub fn take_clean_shutdown_marker(data_dir: &Path) -> Result<bool> {
    let marker = data_dir.join(CLEAN_SHUTDOWN_MARKER);
    let present = marker.exists();
    if present {
        remove_if_exists(&marker)?;
        sync_dir(data_dir)?;
    }
    Ok(present)
}

/// Writes the clean-shutdown marker; call only after every log was closed.
pub fn write_clean_shutdown_marker(data_dir: &Path) -> Result<()> {
    write_atomically(&data_dir.join(CLEAN_SHUTDOWN_MARKER), b"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_round_trip() {
        let dir = Path::new("/x");
        let path = segment_file(dir, 12345678, LOG_SUFFIX);
        assert_eq!(path, Path::new("/x/00000000000012345678.log"));
        let name = path.file_name().unwrap().to_str().unwrap();
        assert_eq!(parse_segment_file_name(name), Some((12345678, "log")));
        assert_eq!(parse_segment_file_name("123.log"), None);
        assert_eq!(parse_segment_file_name("0000000000000000000x.log"), None);
        assert_eq!(
            parse_segment_file_name("00000000000000000000.timeindex"),
            Some((0, "timeindex"))
        );
    }

    #[test]
    fn atomic_write_replaces_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta");
        write_atomically(&path, b"one").unwrap();
        write_atomically(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }

    #[test]
    fn clean_shutdown_marker_is_consumed() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!take_clean_shutdown_marker(dir.path()).unwrap());
        write_clean_shutdown_marker(dir.path()).unwrap();
        assert!(take_clean_shutdown_marker(dir.path()).unwrap());
        assert!(!take_clean_shutdown_marker(dir.path()).unwrap());
    }
}
