//! Small state files written atomically, with a checksum: `vote`, `committed`, `purged` and
//! `snapshot` all use this envelope.
//!
//! Layout (big-endian):
//! ```text
//! magic   4 bytes  "SLQF"
//! version u16      1
//! length  u32      body length
//! crc     u32      CRC-32C of the body
//! body    length bytes (CBOR, meaning given by the file's name)
//! ```
//! Writes go to `<name>.tmp`, which is fsynced, renamed over `<name>`, and then the directory
//! is fsynced: after a crash the file is either the old or the new version, never a mix.
//! A `.tmp` left over by a crash is ignored and overwritten by the next write.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 4] = b"SLQF";
const VERSION: u16 = 1;
const HEADER: usize = 14;

/// Why a state file could not be read.
#[derive(Debug)]
pub(crate) enum ReadError {
    Io(io::Error),
    Corrupt(String),
}

/// Writes `body` to `dir/name` atomically and durably.
pub(crate) fn write_atomic(dir: &Path, name: &str, body: &[u8]) -> io::Result<()> {
    write_atomic_with(dir, name, body, true)
}

/// As [`write_atomic`], but with `durable == false` skips both fsyncs: for hints whose loss
/// or staleness after a crash is harmless (the committed index).
pub(crate) fn write_atomic_with(
    dir: &Path,
    name: &str,
    body: &[u8],
    durable: bool,
) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    let len = u32::try_from(body.len()).map_err(|_| io::Error::other("state file too large"))?;
    let mut bytes = Vec::with_capacity(HEADER + body.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&VERSION.to_be_bytes());
    bytes.extend_from_slice(&len.to_be_bytes());
    bytes.extend_from_slice(&crc32c::crc32c(body).to_be_bytes());
    bytes.extend_from_slice(body);
    file.write_all(&bytes)?;
    if durable {
        file.sync_all()?;
    }
    drop(file);
    fs::rename(&tmp, dir.join(name))?;
    if durable {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Reads `dir/name`: `Ok(None)` if it does not exist, the body if it is whole and its
/// checksum matches.
pub(crate) fn read(dir: &Path, name: &str) -> Result<Option<Vec<u8>>, ReadError> {
    let path = dir.join(name);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ReadError::Io(e)),
    };
    if bytes.len() < HEADER || &bytes[..4] != MAGIC {
        return Err(ReadError::Corrupt("no state file header".into()));
    }
    let version = u16::from_be_bytes([bytes[4], bytes[5]]);
    if version != VERSION {
        return Err(ReadError::Corrupt(format!(
            "unknown state file version {version}"
        )));
    }
    let len = u32::from_be_bytes([bytes[6], bytes[7], bytes[8], bytes[9]]) as usize;
    let crc = u32::from_be_bytes([bytes[10], bytes[11], bytes[12], bytes[13]]);
    let body = &bytes[HEADER..];
    if body.len() != len {
        return Err(ReadError::Corrupt(format!(
            "body is {} bytes, header says {len}",
            body.len()
        )));
    }
    if crc32c::crc32c(body) != crc {
        return Err(ReadError::Corrupt("checksum mismatch".into()));
    }
    Ok(Some(body.to_vec()))
}

/// fsyncs a directory, so that creations, renames and removals in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// `dir/name` as a path, for error messages.
pub(crate) fn path(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage_detected() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(read(dir.path(), "vote"), Ok(None)));
        write_atomic(dir.path(), "vote", b"hello").unwrap();
        assert_eq!(read(dir.path(), "vote").unwrap().unwrap(), b"hello");
        assert!(!dir.path().join("vote.tmp").exists());

        let p = dir.path().join("vote");
        let mut bytes = fs::read(&p).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&p, &bytes).unwrap();
        assert!(matches!(
            read(dir.path(), "vote"),
            Err(ReadError::Corrupt(_))
        ));

        fs::write(&p, &bytes[..5]).unwrap();
        assert!(matches!(
            read(dir.path(), "vote"),
            Err(ReadError::Corrupt(_))
        ));
    }
}
