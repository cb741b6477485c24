//! The data directory's broker-level files, in Kafka's formats where Kafka has one.
//!
//! - `.lock`: held with `flock` while a broker runs, so two brokers never share a
//!   directory (Kafka does the same).
//! - `meta.properties`: `version=1`, `cluster.id=<base64 uuid>`, `node.id=N`, written
//!   once at the first start. A later start with another `node.id` is refused, as Kafka
//!   refuses it.
//! - `broker.incarnation`: the incarnation id (random per start) of the last broker process
//!   that ran on this directory, so that the next one can say which registration it
//!   replaces (see [`swap_incarnation`]).
//! - `<topic>-<partition>/partition.metadata`: `version: 0\ntopic_id: <base64 uuid>\n`,
//!   exactly Kafka's `PartitionMetadataFile`.
//!
//! Topic ids are printed as Kafka prints `Uuid`: URL-safe base64 without padding
//! (22 characters).

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use sluice_storage::fsutil;
use uuid::Uuid;

use crate::errors::BrokerError;

/// Name of the per-partition topic id file.
pub const PARTITION_METADATA: &str = "partition.metadata";
const META_PROPERTIES: &str = "meta.properties";
const LOCK_FILE: &str = ".lock";
const INCARNATION_FILE: &str = "broker.incarnation";

/// An exclusive lock on a data directory, released when dropped.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

/// Creates `dir` if needed and locks it.
pub fn lock(dir: &Path) -> Result<DataDirLock, BrokerError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| BrokerError::io(format!("create data directory {}", dir.display()), e))?;
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| BrokerError::io(format!("open {}", path.display()), e))?;
    // SAFETY: flock only reads the descriptor, which `file` keeps open for the call.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Err(BrokerError::DataDirLocked {
                path: dir.to_owned(),
            });
        }
        return Err(BrokerError::io(format!("lock {}", path.display()), err));
    }
    Ok(DataDirLock { _file: file })
}

/// What `meta.properties` records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaProperties {
    pub cluster_id: String,
    pub node_id: i32,
    /// Whether this start wrote the file (a new data directory).
    pub fresh: bool,
    /// Whether the directory has joined a multi-node cluster (`cluster.joined=true`): its
    /// cluster id is then that cluster's, and another cluster's brokers refuse it.
    pub joined: bool,
}

/// Reads `meta.properties`, or writes a new one with a fresh cluster id. Refuses a
/// directory that belongs to another node id.
pub fn load_or_init_meta(dir: &Path, node_id: i32) -> Result<MetaProperties, BrokerError> {
    let path = dir.join(META_PROPERTIES);
    if let Some(bytes) = fsutil::read_optional(&path)? {
        let text = String::from_utf8_lossy(&bytes);
        let mut cluster_id = None;
        let mut stored_node = None;
        let mut joined = false;
        for line in text.lines().map(str::trim) {
            if let Some(v) = line.strip_prefix("cluster.id=") {
                cluster_id = Some(v.trim().to_owned());
            } else if let Some(v) = line.strip_prefix("node.id=") {
                stored_node = v.trim().parse::<i32>().ok();
            } else if let Some(v) = line.strip_prefix("cluster.joined=") {
                joined = v.trim() == "true";
            }
        }
        let bad = |reason: &str| BrokerError::BadMetadata {
            path: path.clone(),
            reason: reason.to_owned(),
        };
        let cluster_id = cluster_id.ok_or_else(|| bad("no cluster.id"))?;
        let stored_node = stored_node.ok_or_else(|| bad("no valid node.id"))?;
        if stored_node != node_id {
            return Err(bad(&format!(
                "stored node.id {stored_node} does not match the configured node.id {node_id}"
            )));
        }
        return Ok(MetaProperties {
            cluster_id,
            node_id,
            fresh: false,
            joined,
        });
    }
    let meta = MetaProperties {
        cluster_id: uuid_to_base64(Uuid::new_v4()),
        node_id,
        fresh: true,
        joined: false,
    };
    write_meta(dir, meta.node_id, &meta.cluster_id, false)?;
    Ok(meta)
}

/// Writes `meta.properties` (atomically): at first start, and when a node joins a
/// multi-node cluster and takes its id (`joined`).
pub fn write_meta(
    dir: &Path,
    node_id: i32,
    cluster_id: &str,
    joined: bool,
) -> Result<(), BrokerError> {
    let joined = if joined { "cluster.joined=true\n" } else { "" };
    let text = format!(
        "#\n# Written by sluice-broker.\nversion=1\ncluster.id={cluster_id}\nnode.id={node_id}\n{joined}"
    );
    fsutil::write_atomically(&dir.join(META_PROPERTIES), text.as_bytes())?;
    Ok(())
}

/// Records `new` as this directory's broker incarnation and returns the one it replaces
/// (`None` on a first start, or if the file is unreadable or damaged). Call it only while
/// holding the directory's [`lock`]: the process that wrote the old id then no longer runs,
/// which is what lets the controller replace that process's registration at once instead
/// of waiting for its session to expire (a broker restarted after kill -9). Not fsynced,
/// and a failed write (a full disk) is only logged: the file then still names an older
/// incarnation than the registered one, so the next start waits out the session, as
/// without the file; nothing else depends on it.
pub fn swap_incarnation(dir: &Path, new: Uuid) -> Option<Uuid> {
    let path = dir.join(INCARNATION_FILE);
    let previous = match std::fs::read(&path) {
        Ok(bytes) => std::str::from_utf8(&bytes)
            .ok()
            .and_then(|text| Uuid::parse_str(text.trim()).ok()),
        Err(_) => None,
    };
    let tmp = dir.join(format!("{INCARNATION_FILE}.tmp"));
    if let Err(e) =
        std::fs::write(&tmp, format!("{new}\n")).and_then(|()| std::fs::rename(&tmp, &path))
    {
        let _ = std::fs::remove_file(&tmp);
        tracing::warn!(path = %path.display(), error = %e, "cannot record this broker's incarnation; a restart after a crash will wait out the old session");
    }
    previous
}

/// `<data-dir>/<topic>-<partition>`.
pub fn partition_dir(data_dir: &Path, topic: &str, partition: i32) -> PathBuf {
    data_dir.join(format!("{topic}-{partition}"))
}

/// Longest file name Linux file systems take (ext4, xfs, btrfs, tmpfs: `NAME_MAX`).
pub const MAX_FILE_NAME: usize = 255;

/// The name a partition directory is renamed to before it is removed:
/// `<topic>-<partition>.<topic id, 32 hex digits><suffix>`, with the topic part cut so
/// the whole name fits [`MAX_FILE_NAME`] bytes, as Kafka does for its `-delete`
/// directories. A legal topic name has up to 249 characters, so the full form can reach
/// 249 + 1 + 10 + 1 + 32 + 7 bytes; cut, it still ends with `suffix`, which is all the
/// start-up cleanup looks at, and still starts with a recognisable prefix of the topic.
pub fn renamed_partition_dir(topic: &str, partition: i32, topic_id: Uuid, suffix: &str) -> String {
    let tail = format!("-{partition}.{}{suffix}", topic_id.simple());
    let mut keep = topic.len().min(MAX_FILE_NAME.saturating_sub(tail.len()));
    // Topic names are ASCII (validate_topic_name); stay on a char boundary regardless.
    while !topic.is_char_boundary(keep) {
        keep -= 1;
    }
    format!("{}{tail}", &topic[..keep])
}

/// Splits a partition directory name into topic and partition (`a-b-3` -> `a-b`, 3).
pub fn parse_partition_dir(name: &str) -> Option<(&str, i32)> {
    let (topic, partition) = name.rsplit_once('-')?;
    if topic.is_empty() || partition.is_empty() || !partition.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((topic, partition.parse().ok()?))
}

/// Writes `partition.metadata` into a partition directory (created if missing).
pub fn write_partition_metadata(dir: &Path, topic_id: Uuid) -> Result<(), BrokerError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| BrokerError::io(format!("create {}", dir.display()), e))?;
    let text = format!("version: 0\ntopic_id: {}\n", uuid_to_base64(topic_id));
    fsutil::write_atomically(&dir.join(PARTITION_METADATA), text.as_bytes())?;
    Ok(())
}

/// Reads the topic id from a partition directory; `Ok(None)` when the file is absent.
pub fn read_partition_metadata(dir: &Path) -> Result<Option<Uuid>, BrokerError> {
    let path = dir.join(PARTITION_METADATA);
    let Some(bytes) = fsutil::read_optional(&path)? else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&bytes);
    let bad = |reason: &str| BrokerError::BadMetadata {
        path: path.clone(),
        reason: reason.to_owned(),
    };
    let mut version = None;
    let mut id = None;
    for line in text.lines() {
        if let Some((key, value)) = line.split_once(':') {
            match key.trim() {
                "version" => version = Some(value.trim().to_owned()),
                "topic_id" => id = Some(value.trim().to_owned()),
                _ => {}
            }
        }
    }
    if version.as_deref() != Some("0") {
        return Err(bad("unsupported version (expected 0)"));
    }
    let id = id.ok_or_else(|| bad("no topic_id"))?;
    uuid_from_base64(&id)
        .map(Some)
        .ok_or_else(|| bad("topic_id is not a base64 UUID"))
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// A UUID as Kafka prints it: URL-safe base64, no padding.
pub fn uuid_to_base64(id: Uuid) -> String {
    let bytes = id.as_bytes();
    let mut out = String::with_capacity(22);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            let index = ((n >> (18 - 6 * i)) & 63) as usize;
            out.push(char::from(ALPHABET[index]));
        }
    }
    out
}

/// Parses Kafka's printed form of a UUID (also accepts standard base64 and padding).
pub fn uuid_from_base64(text: &str) -> Option<Uuid> {
    let text = text.trim_end_matches('=');
    if text.len() != 22 {
        return None;
    }
    let mut bits: u32 = 0;
    let mut nbits = 0;
    let mut out = Vec::with_capacity(16);
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ => return None,
        };
        bits = (bits << 6) | u32::from(v);
        nbits += 6;
        if nbits >= 8 {
            nbits -= 8;
            out.push((bits >> nbits) as u8);
            bits &= (1 << nbits) - 1;
        }
    }
    let bytes: [u8; 16] = out.try_into().ok()?;
    Some(Uuid::from_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_start_names_the_incarnation_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let (first, second) = (Uuid::new_v4(), Uuid::new_v4());
        assert_eq!(swap_incarnation(dir.path(), first), None);
        assert_eq!(swap_incarnation(dir.path(), second), Some(first));
        // A damaged file names nobody (the controller then waits out the old session).
        std::fs::write(dir.path().join(INCARNATION_FILE), b"not a uuid").unwrap();
        assert_eq!(swap_incarnation(dir.path(), first), None);
        assert_eq!(swap_incarnation(dir.path(), second), Some(first));
    }

    #[test]
    fn base64_matches_kafka() {
        // Kafka: Uuid(0x0102030405060708L, 0x090a0b0c0d0e0f10L).toString()
        let id = Uuid::from_bytes([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]);
        assert_eq!(uuid_to_base64(id), "AQIDBAUGBwgJCgsMDQ4PEA");
        for _ in 0..100 {
            let id = Uuid::new_v4();
            assert_eq!(uuid_from_base64(&uuid_to_base64(id)), Some(id));
        }
        assert_eq!(uuid_from_base64("short"), None);
        assert_eq!(uuid_from_base64("AQIDBAUGBwgJCgsMDQ4P!A"), None);
    }

    #[test]
    fn partition_dir_names() {
        assert_eq!(parse_partition_dir("a-b-3"), Some(("a-b", 3)));
        assert_eq!(parse_partition_dir("topic-0"), Some(("topic", 0)));
        assert_eq!(parse_partition_dir("topic-"), None);
        assert_eq!(parse_partition_dir("-1"), None);
        assert_eq!(parse_partition_dir("topic-x"), None);
        assert_eq!(parse_partition_dir("t-0.abc-delete"), None);
    }

    #[test]
    fn renamed_dirs_fit_a_file_name() {
        let id = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        assert_eq!(
            renamed_partition_dir("t", 3, id, "-delete"),
            "t-3.0123456789abcdef0123456789abcdef-delete"
        );
        let longest = "x".repeat(249);
        for partition in [0, 99_999, i32::MAX] {
            let name = renamed_partition_dir(&longest, partition, id, "-delete");
            assert_eq!(name.len(), MAX_FILE_NAME, "{name}");
            assert!(name.starts_with("xxxx"));
            assert!(name.ends_with(&format!("-{partition}.{}-delete", id.simple())));
        }
    }

    #[test]
    fn partition_metadata_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let id = Uuid::new_v4();
        let p = dir.path().join("t-0");
        write_partition_metadata(&p, id).unwrap();
        let text = std::fs::read_to_string(p.join(PARTITION_METADATA)).unwrap();
        assert!(text.starts_with("version: 0\ntopic_id: "));
        assert_eq!(read_partition_metadata(&p).unwrap(), Some(id));
        assert_eq!(read_partition_metadata(dir.path()).unwrap(), None);
    }

    #[test]
    fn meta_properties_pin_the_node_id() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_init_meta(dir.path(), 1).unwrap();
        assert!(first.fresh);
        let again = load_or_init_meta(dir.path(), 1).unwrap();
        assert!(!again.fresh);
        assert_eq!(again.cluster_id, first.cluster_id);
        assert!(load_or_init_meta(dir.path(), 2).is_err());
    }

    #[test]
    fn lock_is_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let held = lock(dir.path()).unwrap();
        assert!(matches!(
            lock(dir.path()),
            Err(BrokerError::DataDirLocked { .. })
        ));
        drop(held);
        lock(dir.path()).unwrap();
    }
}
