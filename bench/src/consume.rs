//! The consumers of a run: one [`Consumer`] per `--consumers`, each on its own client.
//!
//! - Assigned (default): the topic's partitions are dealt round-robin to the consumers,
//!   which start at the earliest offset (replay) or the log end (e2e).
//! - Group (`--group G`): the consumers subscribe to the topic in group `G` and the
//!   group's assignor splits the partitions; without a committed offset they start at
//!   the same place as above. Auto-commit is off: a benchmark leaves no offsets behind.
//!
//! Every loop adds what it counts to one [`Progress`]; the run stops all loops once the
//! target count is reached (or on a deadline or stall the orchestrator notices).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use sluice_client::consumer::AutoOffsetReset;
use sluice_client::{Consumer, ConsumerConfig, ConsumerRecord, OffsetSpec, TopicPartition};
use tokio::sync::mpsc;

use crate::cli::ConsumerArgs;
use crate::produce::{epoch, STAMP_LEN};
use crate::stats::Meter;
use crate::topic;

/// Where consumers without a committed offset start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    Earliest,
    Latest,
}

/// The count all consumer loops share, and the stop signal.
#[derive(Debug)]
pub struct Progress {
    counted: AtomicU64,
    /// Stop once `counted` reaches this (u64::MAX: not known yet).
    target: AtomicU64,
    stop: AtomicBool,
    /// Nanoseconds after [`epoch`] of the last record any loop counted.
    last_record_ns: AtomicU64,
    /// Per consumer: assigned partitions that have a position (for e2e readiness).
    ready: Vec<AtomicUsize>,
}

impl Progress {
    pub fn new(consumers: usize) -> Arc<Progress> {
        Arc::new(Progress {
            counted: AtomicU64::new(0),
            target: AtomicU64::new(u64::MAX),
            stop: AtomicBool::new(false),
            last_record_ns: AtomicU64::new(since_epoch_ns(Instant::now())),
            ready: (0..consumers).map(|_| AtomicUsize::new(0)).collect(),
        })
    }

    pub fn counted(&self) -> u64 {
        self.counted.load(Ordering::Relaxed)
    }

    /// Loops stop once `target` records are counted (immediately if already).
    pub fn set_target(&self, target: u64) {
        self.target.store(target, Ordering::Relaxed);
        if self.counted() >= target {
            self.stop();
        }
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// How long ago the last record was counted.
    pub fn idle_for(&self) -> Duration {
        let last = self.last_record_ns.load(Ordering::Relaxed);
        Duration::from_nanos(since_epoch_ns(Instant::now()).saturating_sub(last))
    }

    /// Partitions with a position, over all consumers.
    pub fn ready_partitions(&self) -> usize {
        self.ready.iter().map(|r| r.load(Ordering::Relaxed)).sum()
    }

    fn count(&self, n: u64, now: Instant) {
        self.last_record_ns
            .store(since_epoch_ns(now), Ordering::Relaxed);
        let counted = self.counted.fetch_add(n, Ordering::Relaxed) + n;
        if counted >= self.target.load(Ordering::Relaxed) {
            self.stop();
        }
    }
}

fn since_epoch_ns(t: Instant) -> u64 {
    t.saturating_duration_since(epoch()).as_nanos() as u64
}

/// What an e2e run's consumers check in every record: the stamp the producer wrote.
#[derive(Debug)]
pub struct Stamps {
    run_id: u64,
    /// Bit `seq` set once record `seq` arrived.
    seen: Mutex<Vec<u64>>,
    duplicates: AtomicU64,
    foreign: AtomicU64,
}

impl Stamps {
    /// For a run with id `run_id` that sends at most `capacity` records.
    pub fn new(run_id: u64, capacity: u64) -> Arc<Stamps> {
        Arc::new(Stamps {
            run_id,
            seen: Mutex::new(vec![0; capacity.div_ceil(64) as usize]),
            duplicates: AtomicU64::new(0),
            foreign: AtomicU64::new(0),
        })
    }

    /// Records read twice.
    pub fn duplicates(&self) -> u64 {
        self.duplicates.load(Ordering::Relaxed)
    }

    /// Records not written by this run (other data in the topic).
    pub fn foreign(&self) -> u64 {
        self.foreign.load(Ordering::Relaxed)
    }

    /// Records latency from each record's intended send time to `now` and returns how
    /// many records were new ones of this run.
    fn observe(&self, records: &[ConsumerRecord], now: Instant, meter: &Meter) -> u64 {
        let base = epoch();
        let mut fresh = 0;
        let mut latencies = Vec::with_capacity(records.len());
        {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            for r in records {
                let Some((run_id, seq, intended_ns)) = r.value.as_deref().and_then(parse_stamp)
                else {
                    self.foreign.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let (word, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
                if run_id != self.run_id || word >= seen.len() {
                    self.foreign.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                if seen[word] & bit != 0 {
                    self.duplicates.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                seen[word] |= bit;
                fresh += 1;
                let intended = base + Duration::from_nanos(intended_ns);
                latencies.push(now.saturating_duration_since(intended));
            }
        }
        meter.latencies(latencies);
        fresh
    }
}

/// Run id, sequence number and intended send time from an e2e value.
pub fn parse_stamp(value: &[u8]) -> Option<(u64, u64, u64)> {
    if value.len() < STAMP_LEN {
        return None;
    }
    let word = |i: usize| u64::from_le_bytes(value[i..i + 8].try_into().expect("8 bytes"));
    Some((word(0), word(8), word(16)))
}

fn consumer_config(args: &ConsumerArgs, from: StartAt) -> ConsumerConfig {
    ConsumerConfig {
        group_id: args.group.clone(),
        auto_offset_reset: match from {
            StartAt::Earliest => AutoOffsetReset::Earliest,
            StartAt::Latest => AutoOffsetReset::Latest,
        },
        enable_auto_commit: false,
        max_partition_fetch_bytes: args.max_partition_fetch_bytes,
        fetch_max_bytes: args.fetch_max_bytes,
        max_poll_records: args.max_poll_records,
        ..ConsumerConfig::default()
    }
}

/// Connects the consumers: assigned and positioned, or subscribed to the group.
pub async fn connect(
    bootstrap: &str,
    args: &ConsumerArgs,
    topic: &str,
    partitions: usize,
    from: StartAt,
) -> Result<Vec<Consumer>> {
    let count = args.consumers as usize;
    let mut consumers = Vec::with_capacity(count);
    for index in 0..count {
        let client = topic::connect(bootstrap, "consumer").await?;
        let mut consumer = Consumer::new(client, consumer_config(args, from))?;
        if args.group.is_some() {
            consumer.subscribe(vec![topic.to_owned()])?;
        } else {
            let mine: Vec<TopicPartition> = (index..partitions)
                .step_by(count)
                .map(|p| TopicPartition::new(topic, p as i32))
                .collect();
            if !mine.is_empty() {
                consumer.assign(mine.clone()).await?;
                let spec = match from {
                    StartAt::Earliest => OffsetSpec::Earliest,
                    StartAt::Latest => OffsetSpec::Latest,
                };
                consumer
                    .seek_to(&mine, spec)
                    .await
                    .context("cannot look up the start offsets")?;
            }
        }
        consumers.push(consumer);
    }
    Ok(consumers)
}

/// Starts one poll loop per consumer. Each sends the instant of its last record on
/// `done` when it stops.
pub fn start(
    consumers: Vec<Consumer>,
    progress: Arc<Progress>,
    meters: Vec<Arc<Meter>>,
    stamps: Option<Arc<Stamps>>,
    done: mpsc::UnboundedSender<Instant>,
) {
    for (index, (consumer, meter)) in consumers.into_iter().zip(meters).enumerate() {
        let progress = progress.clone();
        let stamps = stamps.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let last = poll_loop(consumer, index, &progress, &meter, stamps.as_deref()).await;
            let _ = done.send(last); // the run may have given up waiting
        });
    }
}

fn payload_bytes(records: &[ConsumerRecord]) -> u64 {
    records
        .iter()
        .map(|r| {
            (r.key.as_ref().map_or(0, Bytes::len) + r.value.as_ref().map_or(0, Bytes::len)) as u64
        })
        .sum()
}

async fn poll_loop(
    mut consumer: Consumer,
    index: usize,
    progress: &Progress,
    meter: &Meter,
    stamps: Option<&Stamps>,
) -> Instant {
    let mut last = Instant::now();
    let mut failures = 0u32;
    let mut polls = 0u64;
    while !progress.stopped() {
        polls += 1;
        // Readiness (partitions with a position) matters before records flow; looking it
        // up copies the assignment, so while they flow every 64th poll is enough.
        let mut check_ready = polls % 64 == 1;
        match consumer.poll(Duration::from_millis(100)).await {
            Ok(records) => {
                failures = 0;
                check_ready |= records.is_empty();
                if !records.is_empty() {
                    let now = Instant::now();
                    let counted = match stamps {
                        Some(stamps) => stamps.observe(&records, now, meter),
                        None => records.len() as u64,
                    };
                    meter.add(records.len() as u64, payload_bytes(&records));
                    progress.count(counted, now);
                    last = now;
                }
            }
            Err(e) => {
                meter.error(1, &e);
                failures += 1;
                if failures >= 50 {
                    break; // a broken consumer: the run reports the error
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        if check_ready {
            let assignment = consumer.assignment();
            let positioned = assignment
                .iter()
                .filter(|tp| consumer.position(tp).is_some())
                .count();
            progress.ready[index].store(positioned, Ordering::Relaxed);
        }
    }
    if let Err(e) = consumer.close().await {
        eprintln!("sluice-bench: closing a consumer: {e}");
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    fn stamped(run_id: u64, seq: u64, intended: Instant) -> ConsumerRecord {
        let mut v = bytes::BytesMut::new();
        v.put_u64_le(run_id);
        v.put_u64_le(seq);
        v.put_u64_le(intended.duration_since(epoch()).as_nanos() as u64);
        v.put_slice(b"payload");
        ConsumerRecord {
            topic: "t".into(),
            partition: 0,
            offset: seq as i64,
            timestamp: 0,
            timestamp_type: sluice_client::consumer::TimestampType::CreateTime,
            key: None,
            value: Some(v.freeze()),
            headers: Vec::new(),
        }
    }

    #[test]
    fn stamps_give_latency_and_catch_duplicates_and_strangers() {
        let t0 = epoch() + Duration::from_millis(1);
        let stamps = Stamps::new(7, 100);
        let mut c = crate::stats::Collector::new("consume", "test");
        let meter = c.meter();
        let now = t0 + Duration::from_millis(3);
        let records = vec![
            stamped(7, 0, t0),
            stamped(7, 1, t0 + Duration::from_millis(1)),
            stamped(7, 1, t0 + Duration::from_millis(1)),
            stamped(8, 2, t0),
            stamped(7, 1000, t0),
        ];
        assert_eq!(stamps.observe(&records, now, &meter), 2);
        assert_eq!(stamps.duplicates(), 1);
        assert_eq!(stamps.foreign(), 2);
        c.tick(Duration::from_secs(1));
        let s = c.summary(Duration::from_secs(1));
        assert_eq!(s.latency.count, 2);
        assert!(
            s.latency.max_us >= 2990 && s.latency.max_us <= 3010,
            "{:?}",
            s.latency
        );
        assert!(
            s.latency.min_us >= 1990 && s.latency.min_us <= 2010,
            "{:?}",
            s.latency
        );
    }

    #[test]
    fn progress_stops_at_the_target() {
        let p = Progress::new(1);
        p.count(5, Instant::now());
        assert!(!p.stopped());
        p.set_target(6);
        assert!(!p.stopped());
        p.count(1, Instant::now());
        assert!(p.stopped());
        let q = Progress::new(1);
        q.count(10, Instant::now());
        q.set_target(3);
        assert!(q.stopped());
    }

    #[test]
    fn short_values_have_no_stamp() {
        assert_eq!(parse_stamp(b"short"), None);
        let mut v = Vec::new();
        v.extend_from_slice(&1u64.to_le_bytes());
        v.extend_from_slice(&2u64.to_le_bytes());
        v.extend_from_slice(&3u64.to_le_bytes());
        assert_eq!(parse_stamp(&v), Some((1, 2, 3)));
    }
}
