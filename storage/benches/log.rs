//! Storage micro-benchmarks (criterion): append throughput with flush policy OS and
//! `always` (8 concurrent appenders, exercising group commit), a follower's
//! `append_replicated` of the same batches, sequential reads of cached
//! data, offset lookup in a log of 10 million records, and the produce path's record
//! check (`validate`) per codec.
//!
//! Batches are ~16 KiB: 160 records of 100-byte values, as a producer with the default
//! batch.size would send. Run with `cargo bench -p sluice-storage`; set
//! `SLUICE_BENCH_DIR` to put the logs on a specific file system (default: the system temp
//! dir). Compare with `fio --rw=write --bs=16k --size=2G --end_fsync=1` on the same file
//! system (scripts/storage-bench.sh runs both).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sluice_storage::batch::{BatchBuilder, Compression};
use sluice_storage::{FlushPolicy, Flusher, LogConfig, PartitionLog};

fn bench_dir() -> tempfile::TempDir {
    match std::env::var_os("SLUICE_BENCH_DIR") {
        Some(dir) => tempfile::tempdir_in(PathBuf::from(dir)).expect("temp dir"),
        None => tempfile::tempdir().expect("temp dir"),
    }
}

fn batch(records: usize, value_size: usize) -> Bytes {
    batch_at(records, value_size, 1_700_000_000_000)
}

fn batch_at(records: usize, value_size: usize, timestamp: i64) -> Bytes {
    let mut builder = BatchBuilder::new(Compression::None);
    let value = vec![b'x'; value_size];
    for i in 0..records {
        let key = format!("key-{i}");
        builder.push(
            timestamp + i as i64,
            Some(key.as_bytes()),
            Some(&value),
            &[],
        );
    }
    builder.build().expect("batch")
}

fn open(dir: &std::path::Path, flush: FlushPolicy) -> PartitionLog {
    let config = LogConfig {
        flush,
        retention_ms: None,
        ..LogConfig::default()
    };
    let flusher = Flusher::start("bench").expect("flusher");
    PartitionLog::open(dir, config, &flusher, true)
        .expect("open")
        .0
}

fn append(c: &mut Criterion) {
    let batch = batch(160, 100);
    let mut group = c.benchmark_group("append");
    group.throughput(Throughput::Bytes(batch.len() as u64));
    group.measurement_time(Duration::from_secs(8));

    group.bench_function("policy_os_16KiB_batches", |b| {
        let dir = bench_dir();
        let log = open(dir.path(), FlushPolicy::Os);
        b.iter(|| {
            log.append(&batch, 0, sluice_storage::now_ms())
                .expect("append")
        });
        log.close().expect("close");
    });

    // A follower storing the same batches as the leader stored them (offsets and epoch
    // already set: no re-stamping, CRC checked): the cost of `append_replicated` next to
    // the leader's `append` above.
    group.bench_function("policy_os_16KiB_batches_replicated", |b| {
        let dir = bench_dir();
        let log = open(dir.path(), FlushPolicy::Os);
        let mut stored = batch.to_vec();
        sluice_storage::batch::patch_leader_epoch(&mut stored, 0);
        b.iter(|| {
            // The base offset is outside the CRC: patching it in place is what a leader's
            // stored batch at this offset would hold.
            sluice_storage::batch::patch_base_offset(&mut stored, log.log_end_offset());
            log.append_replicated(&stored, sluice_storage::now_ms())
                .expect("append_replicated")
        });
        log.close().expect("close");
    });

    // 8 appenders, each waiting for its batch to be durable before sending the next:
    // the flusher's fdatasync covers every batch appended while the previous one ran.
    for appenders in [1usize, 8] {
        group.bench_with_input(
            BenchmarkId::new("policy_always_appenders", appenders),
            &appenders,
            |b, &appenders| {
                let dir = bench_dir();
                let log = Arc::new(open(dir.path(), FlushPolicy::Always));
                b.iter_custom(|iters| {
                    // `iters` batches in total, shared by the appenders.
                    let per_thread = (iters as usize).div_ceil(appenders);
                    let started = Instant::now();
                    let threads: Vec<_> = (0..appenders)
                        .map(|_| {
                            let log = log.clone();
                            let batch = batch.clone();
                            std::thread::spawn(move || {
                                for _ in 0..per_thread {
                                    let info = log
                                        .append(&batch, 0, sluice_storage::now_ms())
                                        .expect("append");
                                    log.wait_durable(info.last_offset + 1)
                                        .wait()
                                        .expect("durable");
                                }
                            })
                        })
                        .collect();
                    for t in threads {
                        t.join().expect("appender");
                    }
                    started
                        .elapsed()
                        .mul_f64(iters as f64 / (per_thread * appenders) as f64)
                });
                log.close().expect("close");
            },
        );
    }
    // The same 8 appenders, each keeping up to 5 batches waiting for durability, as a
    // Kafka producer does with max.in.flight.requests.per.connection = 5.
    group.bench_function("policy_always_8_appenders_5_in_flight", |b| {
        let dir = bench_dir();
        let log = Arc::new(open(dir.path(), FlushPolicy::Always));
        let appenders = 8usize;
        b.iter_custom(|iters| {
            let per_thread = (iters as usize).div_ceil(appenders);
            let started = Instant::now();
            let threads: Vec<_> = (0..appenders)
                .map(|_| {
                    let log = log.clone();
                    let batch = batch.clone();
                    std::thread::spawn(move || {
                        let mut waiting = std::collections::VecDeque::new();
                        for _ in 0..per_thread {
                            let info = log
                                .append(&batch, 0, sluice_storage::now_ms())
                                .expect("append");
                            waiting.push_back(log.wait_durable(info.last_offset + 1));
                            if waiting.len() == 5 {
                                if let Some(oldest) = waiting.pop_front() {
                                    oldest.wait().expect("durable");
                                }
                            }
                        }
                        for w in waiting {
                            w.wait().expect("durable");
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().expect("appender");
            }
            started
                .elapsed()
                .mul_f64(iters as f64 / (per_thread * appenders) as f64)
        });
        log.close().expect("close");
    });
    group.finish();
}

fn read(c: &mut Criterion) {
    let batch = batch(160, 100);
    let dir = bench_dir();
    let log = open(dir.path(), FlushPolicy::Os);
    let total_bytes: usize = 256 << 20;
    for _ in 0..total_bytes / batch.len() {
        log.append(&batch, 0, sluice_storage::now_ms())
            .expect("append");
    }
    let end = log.log_end_offset();
    // Consumers read up to the high watermark: everything is committed here.
    log.advance_high_watermark(end);
    let mut group = c.benchmark_group("read");
    group.throughput(Throughput::Bytes(log.size_bytes()));
    group.measurement_time(Duration::from_secs(8));
    // A consumer replaying the whole (cached) log in 1 MiB fetches. The returned bytes
    // are summed 8 bytes at a time so every page is really touched, as a socket write
    // would touch it.
    group.bench_function("sequential_1MiB_fetches_256MiB_log", |b| {
        b.iter(|| {
            let mut offset = 0;
            let mut checksum = 0u64;
            while offset < end {
                let read = log.read(offset, 1 << 20, true).expect("read");
                checksum = read.records.chunks_exact(8).fold(checksum, |acc, w| {
                    acc.wrapping_add(u64::from_le_bytes(w.try_into().unwrap_or([0; 8])))
                });
                let last = sluice_storage::batch::batches(&read.records)
                    .last()
                    .and_then(|b| b.ok())
                    .and_then(|b| sluice_storage::batch::BatchHeader::new(b).ok())
                    .map(|h| h.next_offset())
                    .expect("progress");
                offset = last;
            }
            checksum
        })
    });
    group.finish();
}

fn lookup(c: &mut Criterion) {
    // 10 million records: 100,000 batches of 100 records with 10-byte values.
    let dir = bench_dir();
    let log = open(dir.path(), FlushPolicy::Os);
    // Batch i holds timestamps 1000 * i .. 1000 * i + 99.
    for i in 0..100_000i64 {
        log.append(&batch_at(100, 10, 1000 * i), 0, sluice_storage::now_ms())
            .expect("append");
    }
    let end = log.log_end_offset();
    // Consumers read up to the high watermark: everything is committed here.
    log.advance_high_watermark(end);
    assert_eq!(end, 10_000_000);
    let mut group = c.benchmark_group("lookup");
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    group.bench_function("offset_in_10M_records", |b| {
        b.iter(|| {
            // xorshift: a different random offset every iteration.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let offset = (x % end as u64) as i64;
            log.read(offset, 1, true).expect("read").first_offset
        })
    });
    group.bench_function("timestamp_in_10M_records", |b| {
        b.iter(|| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let timestamp = (x % 100_000_000) as i64;
            log.offset_for_timestamp(timestamp).expect("lookup")
        })
    });
    group.finish();
}

/// The produce path's check of every record of a ~16 KiB batch (160 records of 100 bytes
/// of capital letters, compressible like sluice-bench's payloads), per codec.
fn validate(c: &mut Criterion) {
    let mut group = c.benchmark_group("validate");
    group.throughput(Throughput::Elements(160));
    let checks = sluice_storage::batch::RecordChecks::default();
    for codec in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let mut builder = BatchBuilder::new(codec);
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for i in 0..160 {
            let value: Vec<u8> = (0..100)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    b'A' + (seed % 26) as u8
                })
                .collect();
            builder.push(1_700_000_000_000 + i, None, Some(&value), &[]);
        }
        let batch = builder.build().expect("batch");
        group.bench_function(BenchmarkId::from_parameter(codec.name()), |b| {
            b.iter(|| {
                sluice_storage::batch::validate_produced_batch_with(&batch, &checks).expect("valid")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, append, read, lookup, validate);
criterion_main!(benches);
