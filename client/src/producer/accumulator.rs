//! Per-partition queues of record batches waiting to be sent.
//!
//! Each partition has a queue of batches; only the last one is open for appends. A batch
//! is *ready* when it is full (`batch_size`, or a newer batch exists behind it), when it
//! has waited `linger`, when a flush or close is under way, or when it is a retry.
//! [`Accumulator::drain`] takes at most one ready batch per partition per call, honouring
//! the partition's in-flight limit and retry backoff, and groups them by leader broker.
//!
//! This module does no I/O and takes `now` as an argument, so its rules are unit tested
//! without a broker. The sender task owns the calls to `drain` and `complete`; `send`
//! only appends.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_storage::batch::{BatchBuilder, Compression};

use super::{BatchAck, BatchShared, DeliveryFuture, ProducerConfig, ProducerRecord};
use crate::error::{Error, Result};
use crate::types::TopicPartition;

/// One batch of records for one partition.
#[derive(Debug)]
pub struct ProducerBatch {
    /// Creation order across the producer; retried batches are re-queued in this order.
    pub id: u64,
    pub tp: TopicPartition,
    /// Open batch: the records so far. `None` once built.
    builder: Option<BatchBuilder>,
    /// The encoded (and compressed) batch, built when first drained, kept for retries.
    built: Option<Bytes>,
    pub records: usize,
    /// Bytes of `buffer_memory` held until the batch completes.
    pub reserved: usize,
    pub created: Instant,
    /// Send attempts so far.
    pub attempts: u32,
    pub(crate) shared: Arc<BatchShared>,
}

impl ProducerBatch {
    /// The wire bytes, building (and compressing) them on first use.
    pub fn bytes(&mut self) -> Result<Bytes> {
        if let Some(bytes) = &self.built {
            return Ok(bytes.clone());
        }
        let builder = self
            .builder
            .take()
            .ok_or_else(|| Error::InvalidArgument("batch has neither records nor bytes".into()))?;
        let bytes = builder.build()?;
        self.built = Some(bytes.clone());
        Ok(bytes)
    }

    fn estimated_size(&self) -> usize {
        match (&self.builder, &self.built) {
            (Some(builder), _) => builder.estimated_size(),
            (None, Some(bytes)) => bytes.len(),
            (None, None) => 0,
        }
    }

    fn is_open(&self) -> bool {
        self.builder.is_some() && self.attempts == 0
    }
}

/// The queue of one partition.
#[derive(Debug, Default)]
pub struct PartitionQueue {
    pub batches: VecDeque<ProducerBatch>,
    /// Batches sent and not yet answered.
    pub in_flight: usize,
    /// No batch goes out before this (retry backoff).
    pub retry_after: Option<Instant>,
    /// A batch is being retried: hold newer batches until the in-flight ones are back,
    /// so the retry goes out before them. (With the idempotent producer, the next
    /// sequence number for the partition will live here too.)
    pub hold_for_retry: bool,
}

/// Batches to send, grouped by leader broker id, plus what the sender needs to know.
#[derive(Debug, Default)]
pub struct Drained {
    pub by_broker: HashMap<i32, Vec<ProducerBatch>>,
    /// Partitions with ready batches but no known leader: refresh their metadata.
    pub unknown_leaders: Vec<TopicPartition>,
    /// Batches that waited longer than `delivery_timeout` without being sent: failed.
    pub expired: Vec<ProducerBatch>,
    /// When the next batch becomes ready by time (linger or backoff).
    pub next_ready: Option<Instant>,
}

impl Drained {
    pub fn is_empty(&self) -> bool {
        self.by_broker.is_empty() && self.expired.is_empty()
    }
}

/// All partitions' queues; see the module docs.
#[derive(Debug)]
pub struct Accumulator {
    compression: Compression,
    batch_size: usize,
    linger: Duration,
    delivery_timeout: Duration,
    max_in_flight: usize,
    queues: HashMap<TopicPartition, PartitionQueue>,
    next_id: u64,
    /// Every batch appended and not yet completed, for `flush`.
    incomplete: HashMap<u64, Arc<BatchShared>>,
    /// Flushes under way: while positive, every batch is ready.
    pub flushes: usize,
    /// Set by `close` (or dropping the producer): everything is ready, nothing new comes.
    pub closed: bool,
}

impl Accumulator {
    pub fn new(config: &ProducerConfig) -> Self {
        Accumulator {
            compression: config.compression,
            batch_size: config.batch_size,
            linger: config.linger,
            delivery_timeout: config.delivery_timeout,
            max_in_flight: config.max_in_flight,
            queues: HashMap::new(),
            next_id: 0,
            incomplete: HashMap::new(),
            flushes: 0,
            closed: false,
        }
    }

    /// Appends a record to its partition's open batch (or a new one). Returns the
    /// record's future and whether the sender should look (a batch became full).
    pub(crate) fn append(
        &mut self,
        tp: TopicPartition,
        record: ProducerRecord,
        timestamp: i64,
        reserved: usize,
        now: Instant,
    ) -> (DeliveryFuture, bool) {
        let size = record.encoded_size_bound();
        let queue = self.queues.entry(tp.clone()).or_default();
        let fits = queue.batches.back().is_some_and(|b| {
            b.is_open() && (b.records == 0 || b.estimated_size() + size <= self.batch_size)
        });
        let mut wake = false;
        if !fits {
            // Either the previous open batch is now full (ready), or the sender must
            // learn the new batch's linger deadline: wake it.
            wake = true;
            let id = self.next_id;
            self.next_id += 1;
            let shared = BatchShared::new(tp.clone());
            self.incomplete.insert(id, shared.clone());
            queue.batches.push_back(ProducerBatch {
                id,
                tp: tp.clone(),
                builder: Some(BatchBuilder::new(self.compression)),
                built: None,
                records: 0,
                reserved: 0,
                created: now,
                attempts: 0,
                shared,
            });
        }
        let Some(batch) = queue.batches.back_mut() else {
            // Cannot happen (a batch was just ensured); fail the record, not the process.
            let shared = BatchShared::new(tp);
            shared.complete(Err(Error::InvalidArgument("no open batch".into())));
            let future = DeliveryFuture {
                shared,
                index: 0,
                timestamp,
            };
            return (future, false);
        };
        let headers: Vec<(&str, Option<&[u8]>)> = record
            .headers
            .iter()
            .map(|h| (h.key.as_str(), h.value.as_deref()))
            .collect();
        if let Some(builder) = batch.builder.as_mut() {
            builder.push(
                timestamp,
                record.key.as_deref(),
                record.value.as_deref(),
                &headers,
            );
        }
        let index = batch.records;
        batch.records += 1;
        batch.reserved += reserved;
        if batch.estimated_size() >= self.batch_size || self.linger.is_zero() {
            wake = true;
        }
        let future = DeliveryFuture {
            shared: batch.shared.clone(),
            index,
            timestamp,
        };
        (future, wake)
    }

    /// Takes the batches that can be sent now; see the module docs. `leader` maps a
    /// partition to its leader's broker id (`None`: unknown).
    pub fn drain(
        &mut self,
        now: Instant,
        leader: impl Fn(&TopicPartition) -> Option<i32>,
    ) -> Drained {
        let mut drained = Drained::default();
        let everything_ready = self.flushes > 0 || self.closed;
        for (tp, queue) in &mut self.queues {
            // Batches that never left and are past their delivery timeout fail here.
            while queue
                .batches
                .front()
                .is_some_and(|b| now.saturating_duration_since(b.created) >= self.delivery_timeout)
            {
                if let Some(batch) = queue.batches.pop_front() {
                    drained.expired.push(batch);
                }
            }
            let Some(front) = queue.batches.front() else {
                continue;
            };
            if let Some(after) = queue.retry_after {
                if after > now {
                    drained.next_ready = earliest(drained.next_ready, after);
                    continue;
                }
                queue.retry_after = None;
            }
            if queue.in_flight >= self.max_in_flight
                || (queue.hold_for_retry && queue.in_flight > 0)
            {
                continue; // a completion will wake the sender
            }
            let ready = everything_ready
                || front.attempts > 0
                || queue.batches.len() > 1
                || front.estimated_size() >= self.batch_size
                || now >= front.created + self.linger;
            if !ready {
                drained.next_ready = earliest(drained.next_ready, front.created + self.linger);
                continue;
            }
            let Some(broker) = leader(tp) else {
                drained.unknown_leaders.push(tp.clone());
                continue;
            };
            if let Some(batch) = queue.batches.pop_front() {
                queue.in_flight += 1;
                queue.hold_for_retry = false;
                drained.by_broker.entry(broker).or_default().push(batch);
            }
        }
        drained
    }

    /// A drained batch will not be sent after all (e.g. the request could not be built
    /// for this broker yet): put it back at the front of its queue.
    pub fn requeue(&mut self, mut batch: ProducerBatch, retry_after: Option<Instant>) {
        let queue = self.queues.entry(batch.tp.clone()).or_default();
        queue.in_flight = queue.in_flight.saturating_sub(1);
        // Keep the queue in creation order: retries go before newer batches, and
        // several retries of one partition keep their original order.
        let position = queue
            .batches
            .iter()
            .position(|b| b.id > batch.id)
            .unwrap_or(queue.batches.len());
        if batch.attempts == 0 {
            batch.attempts = 1; // never appended to again
        }
        queue.batches.insert(position, batch);
        if let Some(after) = retry_after {
            queue.retry_after = Some(queue.retry_after.map_or(after, |a| a.max(after)));
            queue.hold_for_retry = true;
        }
    }

    /// A sent batch came back: acknowledged or failed for good. Returns the bytes of
    /// `buffer_memory` to give back.
    pub(crate) fn complete(
        &mut self,
        batch: ProducerBatch,
        result: Result<BatchAck>,
        sent: bool,
    ) -> usize {
        if sent {
            if let Some(queue) = self.queues.get_mut(&batch.tp) {
                queue.in_flight = queue.in_flight.saturating_sub(1);
            }
        }
        self.incomplete.remove(&batch.id);
        batch.shared.complete(result);
        batch.reserved
    }

    /// Handles of every batch not yet completed.
    pub(crate) fn incomplete(&self) -> Vec<Arc<BatchShared>> {
        self.incomplete.values().cloned().collect()
    }

    /// Whether nothing is queued or in flight.
    pub fn is_idle(&self) -> bool {
        self.incomplete.is_empty()
    }

    /// Drops empty queues of partitions with nothing in flight (keeps the map small for
    /// producers that touch many partitions over time).
    pub fn prune(&mut self) {
        self.queues
            .retain(|_, q| !q.batches.is_empty() || q.in_flight > 0 || q.retry_after.is_some());
    }
}

fn earliest(a: Option<Instant>, b: Instant) -> Option<Instant> {
    Some(a.map_or(b, |a| a.min(b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ProducerConfig {
        ProducerConfig {
            batch_size: 200,
            linger: Duration::from_millis(10),
            max_in_flight: 2,
            delivery_timeout: Duration::from_secs(5),
            ..ProducerConfig::default()
        }
    }

    fn record(value: &str) -> ProducerRecord {
        ProducerRecord::new("t").value(value.to_owned())
    }

    fn tp(p: i32) -> TopicPartition {
        TopicPartition::new("t", p)
    }

    #[test]
    fn batches_fill_up_to_batch_size_then_wait_for_linger() {
        let mut acc = Accumulator::new(&config());
        let t0 = Instant::now();
        let mut wakes = 0;
        for i in 0..10 {
            let (_, wake) = acc.append(tp(0), record(&format!("value {i:02} ........")), 1, 40, t0);
            wakes += usize::from(wake);
        }
        assert!(wakes >= 1, "a full batch wakes the sender");
        let queue = &acc.queues[&tp(0)];
        assert!(queue.batches.len() >= 2);
        let total: usize = queue.batches.iter().map(|b| b.records).sum();
        assert_eq!(total, 10);

        // Full batches are ready at once; the last one waits for linger.
        let full = queue.batches.len() - 1;
        let mut sent = 0;
        loop {
            let drained = acc.drain(t0, |_| Some(1));
            if drained.is_empty() {
                assert_eq!(drained.next_ready, Some(t0 + Duration::from_millis(10)));
                break;
            }
            sent += drained.by_broker[&1].len();
            for b in drained.by_broker.into_values().flatten() {
                let ack = BatchAck {
                    base_offset: 0,
                    log_append_time: -1,
                };
                acc.complete(b, Ok(ack), true);
            }
        }
        assert_eq!(sent, full);
        let drained = acc.drain(t0 + Duration::from_millis(10), |_| Some(1));
        assert_eq!(drained.by_broker[&1].len(), 1);
    }

    #[test]
    fn in_flight_limit_and_retry_order() {
        let mut acc = Accumulator::new(&config());
        let t0 = Instant::now();
        acc.flushes = 1;
        // Four batches of one partition (each record fills a batch).
        let big = "x".repeat(190);
        for _ in 0..4 {
            acc.append(tp(0), record(&big), 1, 200, t0);
        }
        let first = acc.drain(t0, |_| Some(1)).by_broker.remove(&1).unwrap();
        let second = acc.drain(t0, |_| Some(1)).by_broker.remove(&1).unwrap();
        assert!(acc.drain(t0, |_| Some(1)).is_empty(), "max_in_flight = 2");
        let (b0, b1) = (
            first.into_iter().next().unwrap(),
            second.into_iter().next().unwrap(),
        );
        assert_eq!((b0.id, b1.id), (0, 1));

        // Batch 0 fails retriably: it goes back in front, and nothing is sent while
        // batch 1 is still in flight.
        let backoff = t0 + Duration::from_millis(100);
        acc.requeue(b0, Some(backoff));
        assert!(acc.drain(backoff, |_| Some(1)).is_empty());
        // Batch 1 fails too; both are queued in their original order.
        acc.requeue(b1, Some(backoff));
        let drained = acc.drain(t0, |_| Some(1));
        assert_eq!(drained.next_ready, Some(backoff));
        let order: Vec<u64> = acc.queues[&tp(0)].batches.iter().map(|b| b.id).collect();
        assert_eq!(order, [0, 1, 2, 3]);
        let retry = acc
            .drain(backoff, |_| Some(1))
            .by_broker
            .remove(&1)
            .unwrap();
        assert_eq!(retry[0].id, 0);
        let next = acc
            .drain(backoff, |_| Some(1))
            .by_broker
            .remove(&1)
            .unwrap();
        assert_eq!(next[0].id, 1);
    }

    #[test]
    fn unknown_leaders_are_reported_and_old_batches_expire() {
        let mut acc = Accumulator::new(&config());
        let t0 = Instant::now();
        let (future, _) = acc.append(tp(3), record("a"), 1, 10, t0);
        let drained = acc.drain(t0 + Duration::from_millis(20), |_| None);
        assert_eq!(drained.unknown_leaders, [tp(3)]);
        let mut drained = acc.drain(t0 + Duration::from_secs(6), |_| None);
        assert_eq!(drained.expired.len(), 1);
        let batch = drained.expired.pop().unwrap();
        let reserved = acc.complete(
            batch,
            Err(Error::Timeout {
                what: "delivery".into(),
                after: Duration::from_secs(5),
            }),
            false,
        );
        assert_eq!(reserved, 10);
        assert!(matches!(
            future.try_result(),
            Some(Err(Error::Timeout { .. }))
        ));
        assert!(acc.is_idle());
    }

    #[test]
    fn delivery_offsets_are_base_plus_index() {
        let mut acc = Accumulator::new(&config());
        let t0 = Instant::now();
        let futures: Vec<_> = (0..3)
            .map(|i| acc.append(tp(0), record("v"), 1000 + i, 1, t0).0)
            .collect();
        acc.flushes = 1;
        let mut batches = acc.drain(t0, |_| Some(7)).by_broker.remove(&7).unwrap();
        let mut batch = batches.pop().unwrap();
        let bytes = batch.bytes().unwrap();
        assert_eq!(
            sluice_storage::batch::Records::decode(bytes)
                .unwrap()
                .count(),
            3
        );
        acc.complete(
            batch,
            Ok(BatchAck {
                base_offset: 40,
                log_append_time: -1,
            }),
            true,
        );
        let offsets: Vec<(i64, i64)> = futures
            .iter()
            .map(|f| {
                let m = f.try_result().unwrap().unwrap();
                (m.offset, m.timestamp)
            })
            .collect();
        assert_eq!(offsets, [(40, 1000), (41, 1001), (42, 1002)]);
    }
}
