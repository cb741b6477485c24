//! Record batches captured from real clients (kcat/librdkafka with every codec, the Java
//! client with zstd; see fixtures/README.md) are validated, decoded, stored in a log and
//! read back byte-identical.

mod common;

use bytes::Bytes;
use common::*;
use sluice_storage::batch::{self, Compression, Records};
use sluice_storage::{BatchError, LogConfig, StorageError};

const FIXTURES: [(&str, Compression); 6] = [
    ("kcat-none", Compression::None),
    ("kcat-gzip", Compression::Gzip),
    ("kcat-snappy", Compression::Snappy),
    ("kcat-lz4", Compression::Lz4),
    ("kcat-zstd", Compression::Zstd),
    ("java-zstd", Compression::Zstd),
];

fn fixture(name: &str) -> Bytes {
    let path = format!("{}/tests/fixtures/{name}.batch", env!("CARGO_MANIFEST_DIR"));
    Bytes::from(std::fs::read(&path).unwrap_or_else(|e| panic!("read {path}: {e}")))
}

#[test]
fn captured_batches_validate_and_decode() {
    for (name, codec) in FIXTURES {
        let bytes = fixture(name);
        let header =
            batch::validate_produced_batch(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(header.compression().unwrap(), codec, "{name}");
        assert_eq!(header.records_count(), 3, "{name}");
        let records: Vec<_> = Records::decode(bytes.clone())
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(records.len(), 3);
        for (i, record) in records.iter().enumerate() {
            let n = i + 1;
            assert_eq!(record.offset, i as i64, "{name}");
            assert_eq!(
                record.key.as_deref(),
                Some(format!("key{n}").as_bytes()),
                "{name}"
            );
            let value = format!("value{n}{}", "-".repeat(58));
            assert_eq!(record.value.as_deref(), Some(value.as_bytes()), "{name}");
            assert_eq!(record.headers.len(), 1, "{name}");
            assert_eq!(record.headers[0].key, "hk");
            assert_eq!(record.headers[0].value.as_deref(), Some(&b"hv"[..]));
        }
        if name == "java-zstd" {
            let stamps: Vec<i64> = records.iter().map(|r| r.timestamp).collect();
            assert_eq!(stamps, vec![1735689600000, 1735689600100, 1735689600200]);
            assert_eq!(header.max_timestamp(), 1735689600200);
        }
    }
}

#[test]
fn captured_batches_are_stored_and_read_back_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), LogConfig::default(), true);
    let mut expected = Vec::new();
    // The broker's clock: the captures are from the past, which the default
    // message.timestamp.before.max.ms (unbounded) accepts.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    for (name, _) in FIXTURES {
        let bytes = fixture(name);
        // Seen from 1970, the same records are decades in the future: past the default
        // message.timestamp.after.max.ms (1 hour), refused, and nothing is stored.
        assert!(
            matches!(
                log.append(&bytes, 0, 0),
                Err(StorageError::InvalidBatch(
                    BatchError::RejectedRecords { .. }
                ))
            ),
            "{name}"
        );
        let info = log.append(&bytes, 0, now_ms).unwrap();
        let mut stored = bytes.to_vec();
        batch::patch_base_offset(&mut stored, info.base_offset);
        expected.push(stored);
    }
    assert_eq!(log.log_end_offset(), 18);
    assert_eq!(read_all(&log, 0), expected);
    log.close().unwrap();
    let (log, _) = open(dir.path(), LogConfig::default(), true);
    assert_eq!(read_all(&log, 0), expected);
    // Search by timestamp works on compressed batches too.
    let found = log.offset_for_timestamp(1735689600100).unwrap().unwrap();
    assert!(found.timestamp >= 1735689600100);
}
