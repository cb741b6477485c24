//! Property test of the log cleaner: random sequences of produce (keys from a small set,
//! some tombstones, random codecs, an idempotent producer), roll, clean (random clock,
//! delete retention, compaction lag, a rising high watermark as the bound, and tiny
//! offset maps that force partial cleans), a crash at a random step of a clean (a
//! failed write, set_len, sync, rename or removal, then the process "dies"), truncation
//! above the high watermark, and close/crash-reopen. After every step:
//! - every stored record is the record produced at its offset, offsets only increase,
//!   and the log end is the model's (a clean never moves it);
//! - for every key, the last stored record is its latest produced one; only a tombstone
//!   may be missing, and then only after a clean ran `delete.retention.ms` after one that
//!   could have stamped it, and with no older record of its key left behind;
//! - every record (tombstones aside) at or after the first dirty offset of the last
//!   complete clean is stored (no clean crashed since, or it counts from where that one
//!   might have reached);
//! - every produced batch is still there as a header at its offsets, and a read at each
//!   of its offsets (through the offset index) starts at it;
//! - a retry of the producer's last batch is recognised as a duplicate.

mod common;

use std::collections::BTreeMap;

use bytes::Bytes;
use common::*;
use proptest::prelude::*;
use sluice_storage::batch::{BatchBuilder, BatchHeader, Compression, Records};
use sluice_storage::faults::{self, Fault, Op as FaultOp};
use sluice_storage::{CleanOptions, LogConfig, PartitionLog};

const CODECS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];
const FAULTS: [FaultOp; 5] = [
    FaultOp::Write,
    FaultOp::SetLen,
    FaultOp::Sync,
    FaultOp::Rename,
    FaultOp::Remove,
];

#[derive(Debug, Clone)]
enum Step {
    /// Records as (key index, tombstone), one batch.
    Produce {
        records: Vec<(u8, bool)>,
        codec: usize,
    },
    Roll,
    Clean {
        advance_ms: i64,
        retention_ms: i64,
        lag_ms: i64,
        bound: f64,
        map_slots: usize,
        /// Fail the n-th call of this kind during the clean, then crash (or go on).
        fault: Option<(usize, u64, bool)>,
    },
    /// Truncate to this fraction of the way from the high watermark to the log end (the
    /// batch holding it goes too). As in Kafka, only uncommitted offsets are truncated,
    /// and only committed ones cleaned: a truncation below a record that superseded
    /// cleaned-away ones would lose its key.
    Truncate(f64),
    CloseReopen,
    CrashReopen,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => (proptest::collection::vec((0u8..6, proptest::bool::weighted(0.15)), 1..5), 0usize..5)
            .prop_map(|(records, codec)| Step::Produce { records, codec }),
        2 => Just(Step::Roll),
        4 => (
            0i64..3000,
            prop_oneof![Just(0i64), Just(100), Just(2000)],
            prop_oneof![3 => Just(0i64), 1 => Just(50)],
            prop_oneof![3 => Just(1.0f64), 1 => 0.0f64..1.0],
            prop_oneof![Just(1usize), Just(3), Just(6), Just(100)],
            proptest::option::weighted(0.4, (0usize..5, 0u64..12, proptest::bool::ANY)),
        )
            .prop_map(|(advance_ms, retention_ms, lag_ms, bound, map_slots, fault)| Step::Clean {
                advance_ms, retention_ms, lag_ms, bound, map_slots, fault,
            }),
        1 => (0.0f64..1.0).prop_map(Step::Truncate),
        1 => Just(Step::CloseReopen),
        1 => Just(Step::CrashReopen),
    ]
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 1024,
        index_interval_bytes: 128,
        segment_index_bytes: 512,
        retention_ms: None,
        segment_ms: None,
        compact: true,
        ..LogConfig::default()
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Rec {
    key: String,
    value: Option<String>,
    timestamp: i64,
}

#[derive(Default)]
struct Model {
    records: BTreeMap<i64, Rec>,
    /// (base, next) of every batch.
    batches: Vec<(i64, i64)>,
    log_end: i64,
    /// Non-tombstone records at or after this must all be stored.
    protected_from: i64,
    /// The earliest delete horizon each tombstone may have, by offset: over every clean
    /// since it was produced (any may have stamped it), the least `now +
    /// delete.retention.ms`, and at least `now + 1` (the clean that stamps it does not
    /// remove it, only a later one can). The latest clean's clock.
    earliest_horizon: BTreeMap<i64, i64>,
    last_clean_ms: i64,
    /// The producer's last batch, for the retry check.
    last_batch: Option<(Bytes, i64)>,
    seq: i32,
    /// A truncation may cut the producer's last batches: a fresh producer id follows it.
    producer_id: i64,
    /// The high watermark: cleans stop there, truncations start there.
    hw: i64,
}

/// A stored batch's bytes and its records by offset.
type StoredBatch = (Vec<u8>, Vec<(i64, Rec)>);

fn stored(log: &PartitionLog) -> Vec<StoredBatch> {
    read_all(log, 0)
        .into_iter()
        .map(|batch| {
            let records = Records::decode(Bytes::from(batch.clone()))
                .unwrap()
                .map(|r| {
                    let r = r.unwrap();
                    let text = |b: &Bytes| String::from_utf8(b.to_vec()).unwrap();
                    (
                        r.offset,
                        Rec {
                            key: text(r.key.as_ref().unwrap()),
                            value: r.value.as_ref().map(text),
                            timestamp: r.timestamp,
                        },
                    )
                })
                .collect();
            (batch, records)
        })
        .collect()
}

fn check(log: &PartitionLog, model: &Model) -> Result<(), TestCaseError> {
    prop_assert_eq!(log.log_end_offset(), model.log_end);
    let batches = stored(log);
    prop_assert_eq!(
        batches.len(),
        model.batches.len(),
        "every batch header is kept"
    );
    let mut present: BTreeMap<i64, Rec> = BTreeMap::new();
    let mut last = -1;
    for ((bytes, records), &(base, next)) in batches.iter().zip(&model.batches) {
        let header = BatchHeader::new(bytes).unwrap();
        prop_assert_eq!((header.base_offset(), header.next_offset()), (base, next));
        for (offset, rec) in records {
            prop_assert!(*offset > last, "offsets increase");
            prop_assert!(*offset >= base && *offset < next);
            last = *offset;
            prop_assert_eq!(Some(rec), model.records.get(offset), "record at {}", offset);
            present.insert(*offset, rec.clone());
        }
        for offset in [base, next - 1, (base + next) / 2] {
            let read = read_to_end(log, offset, 1, true).unwrap();
            prop_assert_eq!(base_offset(&read.records), base, "read at {}", offset);
        }
    }
    // Latest per key.
    let mut latest: BTreeMap<&str, (i64, &Rec)> = BTreeMap::new();
    for (offset, rec) in &model.records {
        latest.insert(&rec.key, (*offset, rec));
    }
    for (key, (offset, rec)) in latest {
        let last_stored = present.iter().rev().find(|(_, r)| r.key == key);
        match last_stored {
            Some((at, _)) if *at == offset => {}
            Some((at, _)) => {
                prop_assert!(false, "key {} ends at {} instead of {}", key, at, offset)
            }
            None => {
                prop_assert!(
                    rec.value.is_none(),
                    "key {}'s latest value at {} is gone",
                    key,
                    offset
                );
                let horizon = model.earliest_horizon.get(&offset).copied();
                prop_assert!(
                    horizon.is_some_and(|h| model.last_clean_ms >= h),
                    "tombstone {} of {} went before its delete horizon {:?} (last clean at {})",
                    offset,
                    key,
                    horizon,
                    model.last_clean_ms
                );
            }
        }
    }
    for (offset, rec) in model.records.range(model.protected_from..) {
        if rec.value.is_some() {
            prop_assert!(
                present.contains_key(offset),
                "dirty record at {} is gone",
                offset
            );
        }
    }
    if let Some((batch, base)) = &model.last_batch {
        let retry = log.append(batch, 0, 0).unwrap();
        prop_assert!(retry.duplicate, "retry of the last batch");
        prop_assert_eq!(retry.base_offset, *base);
    }
    Ok(())
}

fn roll(log: &PartitionLog) {
    let mut c = config();
    c.segment_ms = Some(0);
    log.set_config(c);
    log.roll_if_due(i64::MAX / 2).unwrap();
    log.set_config(config());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    #[test]
    fn compacted_log_matches_model(steps in proptest::collection::vec(step(), 1..50)) {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path(), config(), true).0;
        let mut model = Model::default();
        let mut now = 1_000_000i64;
        for step in steps {
            now += 10;
            match step {
                Step::Produce { records, codec } => {
                    let mut builder = BatchBuilder::new(CODECS[codec]).producer(7 + model.producer_id, 0, model.seq);
                    let mut recs = Vec::new();
                    for (i, (key, tombstone)) in records.iter().enumerate() {
                        let key = format!("k{key}");
                        let value = (!tombstone).then(|| format!("v{}-{i}", model.log_end));
                        builder.push(now, Some(key.as_bytes()), value.as_deref().map(str::as_bytes), &[]);
                        recs.push(Rec { key, value, timestamp: now });
                    }
                    let batch = builder.build().unwrap();
                    let info = log.append(&batch, 0, now).unwrap();
                    prop_assert_eq!(info.base_offset, model.log_end);
                    for (i, rec) in recs.into_iter().enumerate() {
                        model.records.insert(info.base_offset + i as i64, rec);
                    }
                    model.batches.push((info.base_offset, info.last_offset + 1));
                    model.log_end = info.last_offset + 1;
                    model.seq += records.len() as i32;
                    model.last_batch = Some((batch, info.base_offset));
                }
                Step::Roll => roll(&log),
                Step::Clean { advance_ms, retention_ms, lag_ms, bound, map_slots, fault } => {
                    now += advance_ms;
                    model.hw += ((model.log_end - model.hw) as f64 * bound) as i64;
                    let opts = CleanOptions {
                        dedupe_buffer_bytes: map_slots * 24,
                        delete_retention_ms: retention_ms,
                        min_compaction_lag_ms: lag_ms,
                        now_ms: now,
                        io_max_bytes_per_sec: None,
                        max_offset: model.hw,
                    };
                    // Tombstones this clean may stamp are those produced so far.
                    let horizon = now.saturating_add(retention_ms).max(now + 1);
                    for (offset, rec) in &model.records {
                        if rec.value.is_none() {
                            model
                                .earliest_horizon
                                .entry(*offset)
                                .and_modify(|h| *h = (*h).min(horizon))
                                .or_insert(horizon);
                        }
                    }
                    model.last_clean_ms = now;
                    // A clean stops at the durable offset too: make the log durable (an
                    // offline log fails the clean below either way).
                    let _ = log.flush();
                    let guard = fault.map(|(kind, skip, _)| {
                        faults::arm(Fault { skip, times: 1, ..Fault::always(dir.path(), FAULTS[kind], 5) }.on_this_thread())
                    });
                    log.advance_high_watermark(model.hw);
                    let result = log.clean(&opts);
                    drop(guard);
                    match result {
                        Ok(outcome) => {
                            if !outcome.interrupted {
                                model.protected_from = model.protected_from.max(outcome.first_dirty_offset);
                            }
                        }
                        Err(_) => {
                            // The clean may have swapped some groups in: nothing produced so
                            // far is protected until a clean completes.
                            model.protected_from = model.log_end;
                            let crash = fault.is_none_or(|(_, _, crash)| crash) || log.is_offline();
                            if crash {
                                log.abandon();
                                log = open(dir.path(), config(), false).0;
                            }
                        }
                    }
                }
                Step::Truncate(fraction) => {
                    let target = model.hw + ((model.log_end - model.hw) as f64 * fraction) as i64;
                    log.truncate_to(target).unwrap();
                    model.batches.retain(|&(_, next)| next <= target);
                    let end = model.batches.last().map_or(0, |&(_, next)| next);
                    model.records.retain(|&offset, _| offset < end);
                    model.earliest_horizon.retain(|&offset, _| offset < end);
                    model.log_end = end;
                    model.hw = model.hw.min(end);
                    model.protected_from = model.protected_from.min(end);
                    model.producer_id += 1;
                    model.seq = 0;
                    model.last_batch = None;
                }
                Step::CloseReopen => {
                    log.close().unwrap();
                    log = open(dir.path(), config(), true).0;
                }
                Step::CrashReopen => {
                    log.abandon();
                    log = open(dir.path(), config(), false).0;
                }
            }
            check(&log, &model)?;
        }
    }
}
