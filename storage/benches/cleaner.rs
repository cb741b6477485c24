//! Log cleaner throughput (criterion): MB/s of log cleaned, for 64 MiB of 1 KiB records
//! over 10,000 keys (16 records per batch, 8 MiB segments), uncompressed and lz4. Each
//! iteration cleans a freshly written dirty log (the writing is not timed): the map is
//! built over all of it and every sealed segment is rewritten, keeping about 1/6.5 of
//! the records. Run with `cargo bench -p sluice-storage --bench cleaner`; set
//! `SLUICE_BENCH_DIR` to choose the file system (default: the system temp dir).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sluice_storage::batch::{BatchBuilder, Compression};
use sluice_storage::{CleanOptions, Flusher, LogConfig, PartitionLog};

const TOTAL_BYTES: usize = 64 << 20;
const RECORD_BYTES: usize = 1024;
const KEYS: usize = 10_000;
const PER_BATCH: usize = 16;

fn bench_dir() -> tempfile::TempDir {
    match std::env::var_os("SLUICE_BENCH_DIR") {
        Some(dir) => tempfile::tempdir_in(PathBuf::from(dir)).expect("temp dir"),
        None => tempfile::tempdir().expect("temp dir"),
    }
}

/// A log of ~64 MiB of keyed records, all sealed but an empty active segment.
fn dirty_log(dir: &std::path::Path, codec: Compression, flusher: &Flusher) -> PartitionLog {
    let config = LogConfig {
        segment_bytes: 8 << 20,
        retention_ms: None,
        segment_ms: None,
        compact: true,
        ..LogConfig::default()
    };
    let (log, _) = PartitionLog::open(dir, config.clone(), flusher, true).expect("open");
    let records = TOTAL_BYTES / RECORD_BYTES;
    let mut value = vec![0u8; RECORD_BYTES - 16];
    for first in (0..records).step_by(PER_BATCH) {
        let mut builder = BatchBuilder::new(codec);
        for i in first..first + PER_BATCH {
            // Values differ per record so compression does not make the log trivial.
            for (j, b) in value.iter_mut().enumerate().step_by(61) {
                *b = (i.wrapping_mul(31) + j) as u8;
            }
            let key = format!("key-{:05}", (i * 7919) % KEYS);
            builder.push(1_700_000_000_000, Some(key.as_bytes()), Some(&value), &[]);
        }
        log.append(&builder.build().expect("batch"), 0, 1_700_000_000_000)
            .expect("append");
    }
    let mut rolling = config;
    rolling.segment_ms = Some(0);
    log.set_config(rolling);
    log.roll_if_due(i64::MAX / 2).expect("roll");
    // A clean stops at the durable offset.
    log.flush().expect("flush");
    log
}

fn clean(c: &mut Criterion) {
    let mut group = c.benchmark_group("clean");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Bytes(TOTAL_BYTES as u64));
    let flusher = Flusher::start("bench").expect("flusher");
    for codec in [Compression::None, Compression::Lz4] {
        group.bench_function(BenchmarkId::from_parameter(codec.name()), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let dir = bench_dir();
                    let log = dirty_log(dir.path(), codec, &flusher);
                    let opts = CleanOptions {
                        dedupe_buffer_bytes: 16 << 20,
                        now_ms: 1_700_000_100_000,
                        ..CleanOptions::default()
                    };
                    let started = Instant::now();
                    let outcome = log.clean(&opts).expect("clean");
                    total += started.elapsed();
                    assert!(outcome.records_removed > 0);
                    log.close().expect("close");
                }
                total
            })
        });
    }
    group.finish();
}

criterion_group!(benches, clean);
criterion_main!(benches);
