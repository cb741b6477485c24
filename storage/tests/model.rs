//! Property test: random sequences of append / roll / truncate / retention / record
//! deletion / close / crash-reopen, checked after every step against a model (the list of
//! batches the log should hold):
//! - offsets are contiguous and increasing, and the log end matches the model;
//! - every batch reads back byte-identical (up to the patched base offset and epoch);
//! - a read at any offset starts at the batch containing it (index lookup == linear scan);
//! - the log start offset never goes back, and every batch from it on is served.

mod common;

use common::*;
use proptest::prelude::*;
use sluice_storage::batch::BatchHeader;
use sluice_storage::{LogConfig, PartitionLog};

#[derive(Debug, Clone)]
enum Op {
    Append { records: usize, value: usize },
    RollByTime,
    Truncate { fraction: f64 },
    RetainBytes { fraction: f64 },
    RetainAllByTime,
    DeleteRecords { fraction: f64 },
    CloseReopen,
    CrashReopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => (1usize..8, 0usize..300).prop_map(|(records, value)| Op::Append { records, value }),
        1 => Just(Op::RollByTime),
        1 => (0.0f64..1.0).prop_map(|fraction| Op::Truncate { fraction }),
        1 => (0.0f64..1.0).prop_map(|fraction| Op::RetainBytes { fraction }),
        1 => Just(Op::RetainAllByTime),
        1 => (0.0f64..1.0).prop_map(|fraction| Op::DeleteRecords { fraction }),
        1 => Just(Op::CloseReopen),
        1 => Just(Op::CrashReopen),
    ]
}

/// One batch as the model knows it: offsets and the bytes the producer sent.
#[derive(Debug, Clone)]
struct Entry {
    base: i64,
    next: i64,
    produced: Vec<u8>,
}

struct Model {
    entries: Vec<Entry>,
    log_end: i64,
    log_start: i64,
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 200,
        segment_index_bytes: 256,
        retention_ms: None,
        segment_ms: None,
        ..LogConfig::default()
    }
}

fn check(log: &PartitionLog, model: &Model) -> Result<(), TestCaseError> {
    prop_assert_eq!(log.log_end_offset(), model.log_end);
    prop_assert_eq!(log.log_start_offset(), model.log_start);
    let visible: Vec<&Entry> = model
        .entries
        .iter()
        .filter(|e| e.next > model.log_start)
        .collect();
    let stored = read_all(log, model.log_start);
    prop_assert_eq!(stored.len(), visible.len());
    for (bytes, entry) in stored.iter().zip(&visible) {
        let header = BatchHeader::new(bytes).unwrap();
        prop_assert_eq!(header.base_offset(), entry.base);
        prop_assert_eq!(header.next_offset(), entry.next);
        prop_assert!(
            unpatch(bytes) == entry.produced,
            "batch at {} differs",
            entry.base
        );
    }
    for entry in &visible {
        for offset in [entry.base, entry.next - 1, (entry.base + entry.next) / 2] {
            if offset < model.log_start {
                continue;
            }
            let read = read_to_end(log, offset, 1, true).unwrap();
            let header = BatchHeader::new(&read.records).unwrap();
            prop_assert_eq!(header.base_offset(), entry.base, "read at {}", offset);
        }
    }
    Ok(())
}

fn reopen(dir: &std::path::Path, clean: bool) -> PartitionLog {
    open(dir, config(), clean).0
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    #[test]
    fn log_matches_model(ops in proptest::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let mut log = reopen(dir.path(), true);
        let mut model = Model { entries: Vec::new(), log_end: 0, log_start: 0 };
        let mut now = 1_000_000i64;
        for op in ops {
            now += 10;
            match op {
                Op::Append { records, value } => {
                    let batch = make_batch(records, value, now);
                    let info = log.append(&batch, 0, now).unwrap();
                    prop_assert_eq!(info.base_offset, model.log_end);
                    model.entries.push(Entry { base: info.base_offset, next: info.last_offset + 1, produced: batch.to_vec() });
                    model.log_end = info.last_offset + 1;
                }
                Op::RollByTime => {
                    let mut c = config();
                    c.segment_ms = Some(0);
                    log.set_config(c);
                    log.roll_if_due(now + 1).unwrap();
                    log.set_config(config());
                }
                Op::Truncate { fraction } => {
                    let target = model.log_start + ((model.log_end - model.log_start) as f64 * fraction) as i64;
                    log.truncate_to(target).unwrap();
                    // The batch containing `target` goes too; if that leaves nothing
                    // readable, the log restarts empty at its start offset.
                    model.entries.retain(|e| e.next <= target);
                    let end = model.entries.last().map_or(0, |e| e.next);
                    if end < model.log_start {
                        model.entries.clear();
                        model.log_end = model.log_start;
                    } else {
                        model.log_end = end;
                    }
                }
                Op::RetainBytes { fraction } => {
                    let mut c = config();
                    c.retention_bytes = Some((log.size_bytes() as f64 * fraction) as u64);
                    log.set_config(c);
                    log.apply_retention(now).unwrap();
                    log.set_config(config());
                    let start = log.log_start_offset();
                    prop_assert!(start >= model.log_start, "log start went back");
                    model.log_start = start;
                }
                Op::RetainAllByTime => {
                    let mut c = config();
                    c.retention_ms = Some(0);
                    log.set_config(c);
                    log.apply_retention(now + 1_000_000).unwrap();
                    log.set_config(config());
                    prop_assert_eq!(log.log_start_offset(), model.log_end);
                    model.log_start = model.log_end;
                }
                Op::DeleteRecords { fraction } => {
                    let target = model.log_start + ((model.log_end - model.log_start) as f64 * fraction) as i64;
                    log.advance_high_watermark(model.log_end);
                    let start = log.delete_records_before(target).unwrap();
                    prop_assert_eq!(start, target.max(model.log_start));
                    model.log_start = start;
                }
                Op::CloseReopen => {
                    log.close().unwrap();
                    log = reopen(dir.path(), true);
                }
                Op::CrashReopen => {
                    log.abandon();
                    log = reopen(dir.path(), false);
                }
            }
            check(&log, &model)?;
        }
    }
}
