//! Per-partition queues of record batches waiting to be sent.
//!
//! Each partition has a queue of batches; only the last one is open for appends. A batch
//! is *ready* when it is full (`batch_size`, or a newer batch exists behind it), when it
//! has waited `linger`, when a flush or close is under way, or when it is a retry.
//! [`Accumulator::drain`] takes at most one ready batch per partition per call, honouring
//! the partition's in-flight limit and retry backoff, and groups them by leader broker.
//!
//! For the idempotent producer the queues also hold the sequence state (see
//! [`super::idempotence`] for the rules): `drain` numbers a batch when it first leaves,
//! renumbers a partition whose sequence broke under a bumped epoch once nothing of it is
//! in flight, and moves a partition to a new epoch only when none of its numbered
//! batches is left. `Accumulator::sequence_error` decides whether an
//! OUT_OF_ORDER_SEQUENCE_NUMBER answer broke the sequence.
//!
//! This module does no I/O and takes `now` as an argument, so its rules are unit tested
//! without a broker. The sender task owns the calls to `drain` and `complete`; `send`
//! only appends.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_storage::batch::{BatchBuilder, Compression};

use super::idempotence::{increment_sequence, renumber, ProducerId, Sequence};
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
    /// The wall clock at `created` (ms since the epoch): the base of the timestamps of
    /// records appended without one.
    created_wall_ms: i64,
    /// Send attempts so far.
    pub attempts: u32,
    /// Closed to appends and ready at once: the sticky partitioner moved on from its
    /// partition, so waiting for linger would only delay it.
    sealed: bool,
    /// Idempotent producer: producer id, epoch and first sequence, from the first drain.
    pub sequence: Option<Sequence>,
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
        self.builder.is_some() && self.attempts == 0 && self.sequence.is_none() && !self.sealed
    }

    /// Numbers the batch: in the builder if not built yet, else by patching the bytes.
    fn set_sequence(&mut self, sequence: Sequence) -> Result<()> {
        if let Some(builder) = self.builder.take() {
            self.builder = Some(builder.producer(
                sequence.producer.id,
                sequence.producer.epoch,
                sequence.base,
            ));
        } else if let Some(bytes) = &self.built {
            self.built = Some(renumber(bytes, sequence)?);
        }
        self.sequence = Some(sequence);
        Ok(())
    }
}

/// The queue of one partition.
#[derive(Debug, Default)]
pub struct PartitionQueue {
    pub batches: VecDeque<ProducerBatch>,
    /// Ids of the batches sent and not yet answered.
    pub in_flight: BTreeSet<u64>,
    /// No batch goes out before this (retry backoff).
    pub retry_after: Option<Instant>,
    /// A batch is being retried: hold newer batches until the in-flight ones are back,
    /// so the retry goes out before them.
    pub hold_for_retry: bool,
    /// Idempotent producer: the sequence state of the partition.
    pub sequences: PartitionSequences,
}

/// The idempotent producer's sequence state of one partition.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PartitionSequences {
    /// The identity the partition's batches are numbered under; `None` before the first.
    pub producer: Option<ProducerId>,
    /// The sequence of the next batch to number.
    pub next: i32,
    /// The broker's sequence and ours disagree for good: renumber the queued batches
    /// under a new epoch once nothing is in flight.
    pub broken: bool,
}

/// What `drain` may do with a partition of the idempotent producer.
enum SequencePlan {
    /// Send the front batch (numbering it if it has no sequence yet).
    Send,
    /// Wait for the batches in flight.
    Wait,
    /// Wait for a producer id.
    NeedProducerId,
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
    /// Batches that fail without being sent, with their error: the producer's fatal
    /// error (see [`Accumulator::fail_fatally`]), or a batch that could not be numbered.
    pub failed: Vec<(ProducerBatch, Error)>,
    /// The idempotent producer has batches to send but no producer id.
    pub needs_producer_id: bool,
}

impl Drained {
    pub fn is_empty(&self) -> bool {
        self.by_broker.is_empty() && self.expired.is_empty() && self.failed.is_empty()
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
    /// hashbrown's map: looked up per record by [`PartitionRef`], without building a
    /// `TopicPartition` (an allocation) each time.
    queues: hashbrown::HashMap<TopicPartition, PartitionQueue>,
    next_id: u64,
    /// Every batch appended and not yet completed, for `flush`.
    incomplete: HashMap<u64, Arc<BatchShared>>,
    /// Flushes under way: while positive, every batch is ready.
    pub flushes: usize,
    /// Set by `close` (or dropping the producer): everything is ready, nothing new comes.
    pub closed: bool,
    /// Batches carry producer id, epoch and sequence.
    idempotent: bool,
    /// The idempotent producer's current identity; `None` until InitProducerId answered
    /// (and again after the epoch ran out).
    producer_id: Option<ProducerId>,
    /// The error that ended the producer: every batch fails with it, `send` too.
    fatal: Option<Error>,
}

impl Accumulator {
    /// An empty accumulator; `idempotent` numbers batches (see the module docs).
    pub fn new(config: &ProducerConfig, idempotent: bool) -> Self {
        Accumulator {
            compression: config.compression,
            // A batch never outgrows one request, however large batch.size is.
            batch_size: config.batch_size.min(config.max_request_size),
            linger: config.linger,
            delivery_timeout: config.delivery_timeout,
            max_in_flight: config.max_in_flight,
            queues: hashbrown::HashMap::new(),
            next_id: 0,
            incomplete: HashMap::new(),
            flushes: 0,
            closed: false,
            idempotent,
            producer_id: None,
            fatal: None,
        }
    }

    /// The idempotent producer's current identity.
    pub fn producer_id(&self) -> Option<ProducerId> {
        self.producer_id
    }

    /// The answer to InitProducerId. Ignored unless an id is wanted.
    pub fn set_producer_id(&mut self, producer_id: ProducerId) {
        if self.idempotent && self.producer_id.is_none() && self.fatal.is_none() {
            self.producer_id = Some(producer_id);
        }
    }

    /// The error that ended the producer, if one did.
    pub fn fatal(&self) -> Option<&Error> {
        self.fatal.as_ref()
    }

    /// Ends the producer: the next `drain` hands every queued batch back in
    /// [`Drained::failed`], and nothing is sent any more. The first error is kept.
    pub fn fail_fatally(&mut self, error: Error) {
        if self.fatal.is_none() {
            self.fatal = Some(error);
        }
    }

    /// An idempotent batch came back with OUT_OF_ORDER_SEQUENCE_NUMBER (or
    /// UNKNOWN_PRODUCER_ID). If it is the partition's first unresolved batch (no batch
    /// before it is in flight or waiting to be retried), the partition's sequence is
    /// broken: it is marked for renumbering and `true` is returned. Otherwise an earlier
    /// batch is being retried and this one simply goes again after it. Call before
    /// `requeue` or `complete`.
    pub(crate) fn sequence_error(&mut self, batch: &ProducerBatch) -> bool {
        let Some(queue) = self.queues.get_mut(&batch.tp) else {
            return false;
        };
        let earlier_in_flight = queue.in_flight.range(..batch.id).next().is_some();
        let earlier_queued = queue
            .batches
            .iter()
            .any(|b| b.id < batch.id && b.sequence.is_some());
        if earlier_in_flight || earlier_queued || batch.sequence.is_none() {
            return false;
        }
        queue.sequences.broken = true;
        true
    }

    /// Appends a record to partition `partition` of its topic: to its open batch, or a
    /// new one. A record without a timestamp gets the batch's wall-clock time of creation
    /// plus the monotonic time since (`now`), so that appending costs no clock read of
    /// its own. `seal` closes the batch after this record (the sticky partitioner moves
    /// on). Returns the record's future and whether the sender should look (a batch
    /// became full or sealed, or a new one needs its linger deadline known).
    pub(crate) fn append(
        &mut self,
        partition: i32,
        record: &ProducerRecord,
        reserved: usize,
        now: Instant,
        seal: bool,
    ) -> (DeliveryFuture, bool) {
        let topic = &record.topic;
        let size = record.encoded_size_bound();
        let key = PartitionRef(topic, partition);
        let queue = match self.queues.get_mut(&key) {
            Some(queue) => queue,
            None => self
                .queues
                .entry(TopicPartition::new(&**topic, partition))
                .or_default(),
        };
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
            let shared = BatchShared::new(topic.clone(), partition);
            self.incomplete.insert(id, shared.clone());
            queue.batches.push_back(ProducerBatch {
                id,
                tp: TopicPartition::new(&**topic, partition),
                // Room for a full batch (or this one record) up front, as Java's
                // producer takes a batch.size buffer from its pool; no more than one
                // request can carry (see `new`).
                builder: Some(BatchBuilder::with_capacity(
                    self.compression,
                    self.batch_size
                        .max(size + sluice_storage::batch::HEADER_SIZE),
                )),
                built: None,
                records: 0,
                reserved: 0,
                created: now,
                created_wall_ms: sluice_storage::now_ms(),
                attempts: 0,
                sealed: false,
                sequence: None,
                shared,
            });
        }
        let Some(batch) = queue.batches.back_mut() else {
            // Cannot happen (a batch was just ensured); fail the record, not the process.
            let shared = BatchShared::new(topic.clone(), partition);
            shared.complete(Err(Error::InvalidArgument("no open batch".into())));
            let future = DeliveryFuture {
                shared,
                index: 0,
                timestamp: record.timestamp.unwrap_or(-1),
            };
            return (future, false);
        };
        let timestamp = record.timestamp.unwrap_or_else(|| {
            let since = now.saturating_duration_since(batch.created).as_millis();
            batch
                .created_wall_ms
                .saturating_add(i64::try_from(since).unwrap_or(i64::MAX))
        });
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
        batch.sealed |= seal;
        if batch.sealed || batch.estimated_size() >= self.batch_size || self.linger.is_zero() {
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
            if let Some(fatal) = &self.fatal {
                let failed = queue.batches.drain(..).map(|b| (b, fatal.clone()));
                drained.failed.extend(failed);
                continue;
            }
            // Batches that waited past their delivery timeout fail here (a retried one
            // too: it is not in flight).
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
            if self.idempotent && self.producer_id.is_none() {
                drained.needs_producer_id = true;
                continue;
            }
            if let Some(after) = queue.retry_after {
                if after > now {
                    drained.next_ready = earliest(drained.next_ready, after);
                    continue;
                }
                queue.retry_after = None;
            }
            if queue.in_flight.len() >= self.max_in_flight
                || (queue.hold_for_retry && !queue.in_flight.is_empty())
            {
                continue; // a completion will wake the sender
            }
            let ready = everything_ready
                || front.attempts > 0
                || front.sequence.is_some()
                || queue.batches.len() > 1
                || front.sealed
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
            if self.idempotent {
                match plan_sequences(queue, &mut self.producer_id) {
                    SequencePlan::Send => {}
                    SequencePlan::Wait => continue,
                    SequencePlan::NeedProducerId => {
                        drained.needs_producer_id = true;
                        continue;
                    }
                }
            }
            let Some(mut batch) = queue.batches.pop_front() else {
                continue;
            };
            if self.idempotent && batch.sequence.is_none() {
                let sequences = &mut queue.sequences;
                let Some(producer) = sequences.producer else {
                    // `plan_sequences` said Send, so the partition has an identity.
                    queue.batches.push_front(batch);
                    continue;
                };
                let sequence = Sequence {
                    producer,
                    base: sequences.next,
                };
                if let Err(e) = batch.set_sequence(sequence) {
                    // Cannot happen for a batch this accumulator built; fail it alone.
                    drained.failed.push((batch, e));
                    continue;
                }
                sequences.next = increment_sequence(sequences.next, batch.records);
            }
            queue.in_flight.insert(batch.id);
            queue.hold_for_retry = false;
            drained.by_broker.entry(broker).or_default().push(batch);
        }
        drained
    }

    /// A drained batch will not be sent after all (e.g. the request could not be built
    /// for this broker yet): put it back at the front of its queue.
    pub fn requeue(&mut self, mut batch: ProducerBatch, retry_after: Option<Instant>) {
        let queue = self.queues.entry(batch.tp.clone()).or_default();
        queue.in_flight.remove(&batch.id);
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
                queue.in_flight.remove(&batch.id);
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
    /// producers that touch many partitions over time). Queues with sequence state stay:
    /// numbering a partition from 0 again under the same epoch would make the broker
    /// take new batches for retries of old ones.
    pub fn prune(&mut self) {
        self.queues.retain(|_, q| {
            !q.batches.is_empty()
                || !q.in_flight.is_empty()
                || q.retry_after.is_some()
                || q.sequences.producer.is_some()
        });
    }
}

/// Decides whether the front batch of an idempotent partition can go, switching the
/// partition to the producer's current identity when the rules allow (module docs of
/// [`super::idempotence`]). May bump the producer's epoch for a broken partition.
fn plan_sequences(queue: &mut PartitionQueue, current: &mut Option<ProducerId>) -> SequencePlan {
    let Some(mut producer) = *current else {
        return SequencePlan::NeedProducerId;
    };
    if queue.sequences.broken {
        if !queue.in_flight.is_empty() {
            return SequencePlan::Wait;
        }
        if queue.sequences.producer == Some(producer) {
            // Still numbered under the current identity: a new epoch is needed.
            match producer.bumped() {
                Some(bumped) => {
                    tracing::info!(
                        producer_id = bumped.id,
                        epoch = bumped.epoch,
                        "sequence broken: bumped the producer epoch"
                    );
                    *current = Some(bumped);
                    producer = bumped;
                }
                None => {
                    *current = None;
                    return SequencePlan::NeedProducerId;
                }
            }
        }
        for batch in &mut queue.batches {
            batch.sequence = None; // renumbered as they leave
        }
        queue.sequences = PartitionSequences {
            producer: Some(producer),
            next: 0,
            broken: false,
        };
        return SequencePlan::Send;
    }
    if queue.sequences.producer == Some(producer) {
        return SequencePlan::Send;
    }
    // Numbered under an older identity (or not at all yet).
    if queue.batches.front().is_some_and(|b| b.sequence.is_some()) {
        // A retry under the old identity: it goes as it is.
        return SequencePlan::Send;
    }
    if !queue.in_flight.is_empty() {
        return SequencePlan::Wait;
    }
    queue.sequences = PartitionSequences {
        producer: Some(producer),
        next: 0,
        broken: false,
    };
    SequencePlan::Send
}

/// A borrowed [`TopicPartition`] for lookups: hashes exactly as the owned one does (its
/// derived `Hash` hashes the topic string, then the partition).
#[derive(Hash)]
struct PartitionRef<'a>(&'a str, i32);

impl hashbrown::Equivalent<TopicPartition> for PartitionRef<'_> {
    fn equivalent(&self, key: &TopicPartition) -> bool {
        self.1 == key.partition && self.0 == key.topic
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

    /// Appends `record` with `timestamp` to partition `p` of topic "t".
    fn put(
        acc: &mut Accumulator,
        p: i32,
        record: ProducerRecord,
        timestamp: i64,
        reserved: usize,
        now: Instant,
    ) -> (DeliveryFuture, bool) {
        let record = record.timestamp(timestamp);
        acc.append(p, &record, reserved, now, false)
    }

    fn tp(p: i32) -> TopicPartition {
        TopicPartition::new("t", p)
    }

    #[test]
    fn a_sealed_batch_is_ready_at_once_and_takes_no_more_records() {
        let mut acc = Accumulator::new(&config(), false);
        let t0 = Instant::now();
        let record = record("v").timestamp(1);
        let (_, wake) = acc.append(0, &record, 10, t0, true);
        assert!(wake, "a sealed batch wakes the sender");
        put(&mut acc, 0, ProducerRecord::new("t").value("w"), 1, 10, t0);
        assert_eq!(
            acc.queues[&tp(0)].batches.len(),
            2,
            "the next record opened a batch"
        );
        let drained = acc.drain(t0, |_| Some(1));
        assert_eq!(drained.by_broker[&1].len(), 1, "sent before linger");
        assert_eq!(drained.by_broker[&1][0].records, 1);
    }

    #[test]
    fn batches_fill_up_to_batch_size_then_wait_for_linger() {
        let mut acc = Accumulator::new(&config(), false);
        let t0 = Instant::now();
        let mut wakes = 0;
        for i in 0..10 {
            let (_, wake) = put(
                &mut acc,
                0,
                record(&format!("value {i:02} ........")),
                1,
                40,
                t0,
            );
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
        let mut acc = Accumulator::new(&config(), false);
        let t0 = Instant::now();
        acc.flushes = 1;
        // Four batches of one partition (each record fills a batch).
        let big = "x".repeat(190);
        for _ in 0..4 {
            put(&mut acc, 0, record(&big), 1, 200, t0);
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
        let mut acc = Accumulator::new(&config(), false);
        let t0 = Instant::now();
        let (future, _) = put(&mut acc, 3, record("a"), 1, 10, t0);
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
        let mut acc = Accumulator::new(&config(), false);
        let t0 = Instant::now();
        let futures: Vec<_> = (0..3)
            .map(|i| put(&mut acc, 0, record("v"), 1000 + i, 1, t0).0)
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

    /// The base sequence, producer id and epoch in a batch's bytes.
    fn numbered(batch: &mut ProducerBatch) -> (i64, i16, i32) {
        let bytes = batch.bytes().unwrap();
        let header = sluice_storage::batch::validate_stored_batch(&bytes).unwrap();
        (
            header.producer_id(),
            header.producer_epoch(),
            header.base_sequence(),
        )
    }

    fn take_one(acc: &mut Accumulator, now: Instant) -> Option<ProducerBatch> {
        let mut drained = acc.drain(now, |_| Some(1));
        assert!(drained.failed.is_empty() && drained.expired.is_empty());
        let mut batches = drained.by_broker.remove(&1)?;
        assert_eq!(batches.len(), 1, "one partition at a time in these tests");
        batches.pop()
    }

    fn ack() -> Result<BatchAck> {
        Ok(BatchAck {
            base_offset: 0,
            log_append_time: -1,
        })
    }

    #[test]
    fn idempotent_batches_are_numbered_when_they_leave_and_keep_their_sequence() {
        let mut acc = Accumulator::new(&config(), true);
        let t0 = Instant::now();
        acc.flushes = 1;
        // Three one-record batches and one of two records (each record fills a batch).
        let big = "x".repeat(190);
        for _ in 0..3 {
            put(&mut acc, 0, record(&big), 1, 200, t0);
        }
        let drained = acc.drain(t0, |_| Some(1));
        assert!(drained.needs_producer_id && drained.by_broker.is_empty());
        acc.set_producer_id(ProducerId { id: 7, epoch: 0 });

        let mut b0 = take_one(&mut acc, t0).unwrap();
        let mut b1 = take_one(&mut acc, t0).unwrap();
        assert!(take_one(&mut acc, t0).is_none(), "max_in_flight = 2");
        assert_eq!(numbered(&mut b0), (7, 0, 0));
        assert_eq!(numbered(&mut b1), (7, 0, 1));

        // b0 fails retriably; b1 then gets OUT_OF_ORDER: not the first unresolved
        // batch (b0 waits to be retried), so it is retried with its sequence.
        let backoff = t0 + Duration::from_millis(100);
        acc.requeue(b0, Some(backoff));
        assert!(!acc.sequence_error(&b1));
        acc.requeue(b1, Some(backoff));
        let mut b0 = take_one(&mut acc, backoff).unwrap();
        let mut b1 = take_one(&mut acc, backoff).unwrap();
        assert_eq!(
            (numbered(&mut b0), numbered(&mut b1)),
            ((7, 0, 0), (7, 0, 1))
        );

        // b0 is acknowledged, and the broker answers OUT_OF_ORDER for b1, the next one:
        // the sequence is broken. Once nothing is in flight the epoch is bumped and b1
        // (and b2 after it) are renumbered from 0.
        acc.complete(b0, ack(), true);
        assert!(acc.sequence_error(&b1));
        acc.requeue(b1, Some(backoff));
        let mut b1 = take_one(&mut acc, backoff).unwrap();
        assert_eq!(numbered(&mut b1), (7, 1, 0));
        assert_eq!(acc.producer_id(), Some(ProducerId { id: 7, epoch: 1 }));
        let mut b2 = take_one(&mut acc, backoff).unwrap();
        assert_eq!(numbered(&mut b2), (7, 1, 1));
    }

    #[test]
    fn other_partitions_move_to_a_new_epoch_only_when_their_numbered_batches_are_done() {
        let mut acc = Accumulator::new(&config(), true);
        let t0 = Instant::now();
        acc.flushes = 1;
        acc.set_producer_id(ProducerId { id: 3, epoch: 0 });
        let big = "x".repeat(190);
        put(&mut acc, 0, record(&big), 1, 200, t0);
        put(&mut acc, 1, record(&big), 1, 200, t0);
        let mut drained = acc.drain(t0, |_| Some(1));
        let mut batches = drained.by_broker.remove(&1).unwrap();
        batches.sort_by_key(|b| b.tp.partition);
        let (p0, mut p1) = {
            let mut it = batches.into_iter();
            (it.next().unwrap(), it.next().unwrap())
        };
        assert_eq!(numbered(&mut p1), (3, 0, 0));
        // Partition 0's sequence breaks and the epoch is bumped while partition 1 still
        // has its epoch-0 batch in flight.
        assert!(acc.sequence_error(&p0));
        acc.requeue(p0, None);
        let mut p0 = take_one(&mut acc, t0).unwrap();
        assert_eq!((p0.tp.partition, numbered(&mut p0)), (0, (3, 1, 0)));
        put(&mut acc, 1, record(&big), 1, 200, t0);
        assert!(
            take_one(&mut acc, t0).is_none(),
            "partition 1 waits for its epoch-0 batch"
        );
        // Partition 1's retry still goes out under epoch 0, with its sequence ...
        acc.requeue(p1, None);
        let mut p1 = take_one(&mut acc, t0).unwrap();
        assert_eq!((p1.tp.partition, numbered(&mut p1)), (1, (3, 0, 0)));
        // ... and once it is acknowledged, the next batch starts epoch 1 at 0.
        acc.complete(p1, ack(), true);
        let mut next = take_one(&mut acc, t0).unwrap();
        assert_eq!((next.tp.partition, numbered(&mut next)), (1, (3, 1, 0)));
        acc.complete(p0, ack(), true);
        acc.complete(next, ack(), true);
        acc.flushes = 0;
        acc.prune();
        assert_eq!(acc.queues.len(), 2, "sequence state is never pruned");
    }

    #[test]
    fn an_exhausted_epoch_asks_for_a_new_producer_id_and_fatal_errors_fail_everything() {
        let mut acc = Accumulator::new(&config(), true);
        let t0 = Instant::now();
        acc.flushes = 1;
        let last = ProducerId {
            id: 9,
            epoch: i16::MAX,
        };
        acc.set_producer_id(last);
        put(&mut acc, 0, record("a"), 1, 10, t0);
        let b = take_one(&mut acc, t0).unwrap();
        assert!(acc.sequence_error(&b));
        acc.requeue(b, None);
        let drained = acc.drain(t0, |_| Some(1));
        assert!(drained.needs_producer_id && drained.by_broker.is_empty());
        assert_eq!(acc.producer_id(), None);
        acc.set_producer_id(ProducerId { id: 10, epoch: 0 });
        let mut b = take_one(&mut acc, t0).unwrap();
        assert_eq!(numbered(&mut b), (10, 0, 0));

        put(&mut acc, 0, record("b"), 1, 10, t0);
        acc.fail_fatally(Error::Closed("test"));
        let drained = acc.drain(t0, |_| Some(1));
        assert_eq!(drained.failed.len(), 1);
        assert!(matches!(drained.failed[0].1, Error::Closed("test")));
        assert!(drained.by_broker.is_empty());
    }
}
