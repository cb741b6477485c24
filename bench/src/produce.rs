//! The producers of a run: one [`Producer`] per `--producers`, each on its own client (so
//! its own TCP connection), each running a send loop.
//!
//! - Closed loop (no `--rate`): send as fast as `send` accepts records (it waits when
//!   `buffer.memory` is full), until `--records` or `--duration`. Loops are tokio tasks.
//! - Open loop (`--rate`): follow the [`Schedule`]; each loop is a thread of its own
//!   that sleeps with the OS timer (tens of µs of slack rather than tokio's 1 ms ticks)
//!   and drives the async producer with `Handle::block_on`. A record's latency counts
//!   from its intended send time, so falling behind shows up as latency.
//!
//! Latency is send-to-ack: each delivery future goes, with the instant the record was
//! meant to be sent, to a collector task that awaits the futures in send order. Records
//! of one batch complete together and one connection answers in order, so awaiting in
//! order observes completions as they happen except when a later partition's batch is
//! answered before an earlier one's (then by at most that batch's own wait).

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use bytes::{BufMut, Bytes, BytesMut};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use sluice_client::{DeliveryFuture, Producer, ProducerConfig, ProducerRecord};
use tokio::sync::mpsc;

use crate::cli::ProducerArgs;
use crate::rate::{split, Schedule};
use crate::stats::Meter;
use crate::topic;

/// Bytes at the start of an e2e record's value: run id, sequence number, intended send
/// time (nanoseconds after [`epoch`]), each a little-endian u64.
pub const STAMP_LEN: usize = 24;

/// The instant e2e stamps count from (the first call in this process). Producers and
/// consumers of an e2e run share the process, so no clocks need to agree.
pub fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// When the send loops stop.
#[derive(Debug, Clone, Copy)]
pub enum Stop {
    /// After this many records over all producers.
    Records(u64),
    /// No record is sent (or, open loop, intended) at or after this long after the start.
    After(Duration),
}

/// What every loop of a run shares.
#[derive(Debug, Clone)]
pub struct Plan {
    pub topic: Arc<str>,
    pub stop: Stop,
    pub rate: Option<f64>,
    /// Stamp values for an e2e run with this run id.
    pub stamp: Option<u64>,
}

/// Checks the producer settings this client can honour.
pub fn validate(args: &ProducerArgs, stamped: bool) -> Result<()> {
    if args.idempotence && !matches!(args.acks, crate::cli::AcksArg::All) {
        bail!("--idempotence true needs --acks all (as in Kafka's clients)");
    }
    if stamped && args.record_size < STAMP_LEN {
        bail!("--record-size must be at least {STAMP_LEN} bytes for e2e (the stamp)");
    }
    Ok(())
}

fn producer_config(args: &ProducerArgs) -> ProducerConfig {
    ProducerConfig {
        acks: args.acks.into(),
        compression: args.compression.into(),
        linger: Duration::from_millis(args.linger_ms),
        batch_size: args.batch_size,
        buffer_memory: args.buffer_memory,
        max_in_flight: args.max_in_flight,
        allow_auto_create_topics: false,
        // Explicit either way: the client's default (idempotent with acks=all) would
        // otherwise decide for the benchmark.
        enable_idempotence: Some(args.idempotence),
        ..ProducerConfig::default()
    }
}

/// Connects `--producers` producers, each with the topic's metadata loaded, so that the
/// timed part of the run starts with everything connected.
pub async fn connect(
    bootstrap: &str,
    args: &ProducerArgs,
    topic: &str,
) -> Result<Vec<Arc<Producer>>> {
    let config = producer_config(args);
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..args.producers {
        let bootstrap = bootstrap.to_owned();
        let topic = topic.to_owned();
        let config = config.clone();
        set.spawn(async move {
            let client = topic::connect(&bootstrap, "producer").await?;
            client
                .wait_for_topic(&topic, false, Duration::from_secs(60))
                .await?;
            anyhow::Ok(Arc::new(Producer::new(client, config)?))
        });
    }
    let mut producers = Vec::new();
    while let Some(joined) = set.join_next().await {
        producers.push(joined??);
    }
    Ok(producers)
}

/// Starts one send loop per producer at `start`. Each sends the instant its last record
/// was acknowledged (or failed) on `done` when it is over.
pub fn start(
    producers: Vec<Arc<Producer>>,
    args: &ProducerArgs,
    plan: &Plan,
    start: Instant,
    meters: Vec<Arc<Meter>>,
    done: mpsc::UnboundedSender<Instant>,
) {
    let count = producers.len();
    let handle = tokio::runtime::Handle::current();
    for (index, (producer, meter)) in producers.into_iter().zip(meters).enumerate() {
        let worker = Worker {
            producer,
            plan: plan.clone(),
            start,
            index,
            count,
            keys: keys(args.keys),
            payload: payload(args.record_size, index as u64),
            meter,
            rng: SmallRng::seed_from_u64(0x5eed ^ index as u64),
        };
        let done = done.clone();
        if plan.rate.is_some() {
            let handle = handle.clone();
            std::thread::Builder::new()
                .name(format!("producer-{index}"))
                .spawn(move || {
                    let end = handle.block_on(worker.run(Pace::Thread));
                    let _ = done.send(end); // the run may have given up waiting
                })
                .expect("cannot start a producer thread");
        } else {
            tokio::spawn(async move {
                let end = worker.run(Pace::Tokio).await;
                let _ = done.send(end);
            });
        }
    }
}

/// The keys records draw from (empty: no keys).
fn keys(count: u64) -> Arc<Vec<Bytes>> {
    Arc::new(
        (0..count)
            .map(|k| Bytes::from(format!("key-{k}")))
            .collect(),
    )
}

/// A value of `size` random capital letters (compressible about as much as text, like
/// Kafka's ProducerPerformance payloads).
fn payload(size: usize, seed: u64) -> Bytes {
    let mut rng = SmallRng::seed_from_u64(seed);
    (0..size)
        .map(|_| rng.gen_range(b'A'..=b'Z'))
        .collect::<Vec<u8>>()
        .into()
}

#[derive(Debug, Clone, Copy)]
enum Pace {
    /// Closed loop on the runtime: never waits for a schedule.
    Tokio,
    /// Open loop on a thread of its own: sleeps with the OS timer.
    Thread,
}

struct Worker {
    producer: Arc<Producer>,
    plan: Plan,
    start: Instant,
    index: usize,
    count: usize,
    keys: Arc<Vec<Bytes>>,
    payload: Bytes,
    meter: Arc<Meter>,
    rng: SmallRng,
}

impl Worker {
    /// Sends this producer's share, then waits for every acknowledgement. Returns when
    /// the last one came.
    async fn run(mut self, pace: Pace) -> Instant {
        // Deliveries go to the collector in chunks: a channel operation (and possibly a
        // wake-up) per record was a tenth of the client's CPU. Paced loops hand their
        // chunk over before sleeping, so their latencies are not delayed by it; a closed
        // loop's chunk waits at most the time to send CHUNK records (tens of µs).
        let (tx, rx) = mpsc::channel::<Vec<Delivery>>(8192 / CHUNK);
        let acks = tokio::spawn(collect_acks(rx, self.meter.clone()));
        let schedule = self
            .plan
            .rate
            .map(|rate| Schedule::new(self.start, rate, self.index as u64, self.count as u64));
        let limit = match (self.plan.stop, &schedule) {
            (Stop::Records(total), _) => split(total, self.count, self.index),
            (Stop::After(d), Some(s)) => s.count_before(self.start + d),
            (Stop::After(_), None) => u64::MAX,
        };
        let deadline = match self.plan.stop {
            Stop::After(d) => Some(self.start + d),
            Stop::Records(_) => None,
        };
        if let Pace::Thread = pace {
            sleep_until(self.start);
        }
        let mut n = 0u64;
        let mut chunk = Vec::with_capacity(CHUNK);
        while n < limit {
            let intended = match &schedule {
                Some(s) => {
                    let t = s.intended(n);
                    if !chunk.is_empty() && t > Instant::now() {
                        let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
                        if tx.send(full).await.is_err() {
                            break; // the collector is gone: nothing more can be counted
                        }
                    }
                    sleep_until(t);
                    t
                }
                None => {
                    let now = Instant::now();
                    if deadline.is_some_and(|d| now >= d) {
                        break;
                    }
                    now
                }
            };
            let seq = schedule.as_ref().map_or(n, |s| s.global_index(n));
            let record = self.record(seq, intended);
            let size = record.key.as_ref().map_or(0, Bytes::len) as u64
                + record.value.as_ref().map_or(0, Bytes::len) as u64;
            match self.producer.send(record).await {
                Ok(delivery) => {
                    chunk.push((delivery, intended, size));
                    if chunk.len() == CHUNK {
                        let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
                        if tx.send(full).await.is_err() {
                            break; // the collector is gone: nothing more can be counted
                        }
                    }
                }
                Err(e) => self.meter.error(1, &e),
            }
            n += 1;
        }
        if !chunk.is_empty() {
            let _ = tx.send(chunk).await; // a collector that is gone has reported why
        }
        // Send what lingers now rather than after linger.ms.
        let (_, flushed) = tokio::join!(self.producer.flush(), async {
            drop(tx);
            acks.await
        });
        if let Err(e) = flushed {
            self.meter.error(0, &format!("ack collector failed: {e}"));
        }
        Instant::now()
    }

    fn record(&mut self, seq: u64, intended: Instant) -> ProducerRecord {
        let value = match self.plan.stamp {
            None => self.payload.clone(),
            Some(run_id) => {
                let mut v = BytesMut::with_capacity(self.payload.len());
                v.put_u64_le(run_id);
                v.put_u64_le(seq);
                v.put_u64_le(intended.saturating_duration_since(epoch()).as_nanos() as u64);
                v.put_slice(&self.payload[STAMP_LEN..]);
                v.freeze()
            }
        };
        let key = if self.keys.is_empty() {
            None
        } else {
            Some(self.keys[self.rng.gen_range(0..self.keys.len())].clone())
        };
        ProducerRecord {
            topic: self.plan.topic.clone(),
            partition: None,
            key,
            value: Some(value),
            headers: Vec::new(),
            timestamp: None,
        }
    }
}

/// A record handed to the producer: its delivery, intended send time and payload bytes.
type Delivery = (DeliveryFuture, Instant, u64);

/// Deliveries per hand-over to the acknowledgement collector.
const CHUNK: usize = 64;

/// Blocks the thread until `t` (open loop only: these loops own their thread).
fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

/// Awaits delivery futures in send order and records each outcome. Records of one batch
/// complete together, so after one wait the next futures are usually ready: they share the
/// instant taken after that wait (a clock read per batch, not per record).
async fn collect_acks(mut rx: mpsc::Receiver<Vec<Delivery>>, meter: Arc<Meter>) {
    let mut latencies = Vec::with_capacity(1024);
    while let Some(chunk) = rx.recv().await {
        let mut now = Instant::now();
        let (mut records, mut bytes) = (0, 0);
        for (delivery, intended, size) in chunk {
            let result = match delivery.try_result() {
                Some(result) => result,
                None => {
                    let result = delivery.wait().await;
                    now = Instant::now();
                    result
                }
            };
            match result {
                Ok(_) => {
                    records += 1;
                    bytes += size;
                    latencies.push(now.saturating_duration_since(intended));
                }
                Err(e) => meter.error(1, &e),
            }
        }
        meter.add(records, bytes);
        meter.latencies(latencies.drain(..));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_letters_of_the_asked_size() {
        let p = payload(100, 1);
        assert_eq!(p.len(), 100);
        assert!(p.iter().all(u8::is_ascii_uppercase));
        assert_ne!(payload(100, 1), payload(100, 2));
    }

    #[test]
    fn idempotence_needs_acks_all_and_stamped_records_a_minimum_size() {
        use clap::Parser;
        let cli = crate::cli::Cli::try_parse_from([
            "sluice-bench",
            "produce",
            "--idempotence",
            "true",
            "--acks",
            "1",
            "--record-size",
            "10",
        ])
        .unwrap();
        let crate::cli::Command::Produce(p) = cli.command else {
            panic!()
        };
        assert!(validate(&p.producer, false).is_err());
        let mut args = p.producer.clone();
        args.idempotence = false;
        assert!(validate(&args, false).is_ok());
        assert!(validate(&args, true).is_err());
    }
}
