//! Idempotent-producer state of one partition: for each producer id, its epoch and the
//! sequence numbers and offsets of its last five batches, as Kafka keeps them.
//!
//! Rules applied to a produced batch with a producer id (Kafka's `ProducerAppendInfo`):
//! - a batch whose epoch and sequence range match one of the cached five is a duplicate
//!   (a client retry): it is acknowledged with the original offsets and not appended;
//! - an epoch older than the producer's current one is fenced: `InvalidProducerEpoch`;
//! - a newer epoch must start at sequence 0 (the producer was re-initialised);
//! - within an epoch, the batch must continue the last sequence (wrapping at `i32::MAX`),
//!   or it is `OutOfOrderSequence` (a gap: an earlier batch was lost or is still in flight);
//! - a producer with no state here may start at any sequence, as Kafka does since
//!   KIP-360 (Kafka also forgets producers after `producer.id.expiration.ms`; Sluice
//!   keeps every producer's state for now, a few dozen bytes each).
//!
//! State is rebuilt when a log opens from the newest snapshot at or below the log end
//! (`<20-digit offset>.snapshot`, written at every segment roll and at close) plus the
//! batch headers after it, so it survives kill -9 without trusting anything unsynced.
//!
//! Snapshot layout (big-endian): magic `SLPS`, version u16 = 1, offset i64, count u32,
//! then per producer: producer id i64, epoch i16, batch count u8, and per batch
//! first_seq i32, last_seq i32, first_offset i64, last_offset i64, max_timestamp i64;
//! then a CRC-32C of everything before it. A snapshot failing any check is ignored.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};

use crate::batch::{BatchHeader, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE};
use crate::error::{Result, StorageError};
use crate::fsutil;

/// Batches remembered per producer for duplicate detection (Kafka's
/// `NUM_BATCHES_TO_RETAIN`; it is also the client's `max.in.flight.requests` limit).
pub const BATCHES_RETAINED: usize = 5;
const SNAPSHOT_SUFFIX: &str = "snapshot";
const MAGIC: &[u8; 4] = b"SLPS";
const VERSION: u16 = 1;
const SNAPSHOTS_KEPT: usize = 2;

/// Sequence range and offsets of one appended batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMetadata {
    pub first_seq: i32,
    pub last_seq: i32,
    pub first_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<BatchMetadata>,
}

impl ProducerEntry {
    fn push(&mut self, batch: BatchMetadata) {
        if self.batches.len() == BATCHES_RETAINED {
            self.batches.pop_front();
        }
        self.batches.push_back(batch);
    }

    fn last_seq(&self) -> Option<i32> {
        self.batches.back().map(|b| b.last_seq)
    }
}

/// An idempotent producer as the partition knows it (DescribeProducers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveProducer {
    pub producer_id: i64,
    pub epoch: i16,
    /// Sequence of the last record of its last batch.
    pub last_sequence: i32,
    /// Largest timestamp of its last batch.
    pub last_timestamp: i64,
}

/// What the producer rules say about a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Not idempotent (no producer id) or valid: append it.
    Append,
    /// A retry of a batch already in the log, at these offsets.
    Duplicate(BatchMetadata),
}

/// The producer states of one partition.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct ProducerStates {
    producers: HashMap<i64, ProducerEntry>,
}

/// Changes validated for one append, applied only once the append is written.
#[derive(Default)]
pub(crate) struct PendingUpdates {
    entries: HashMap<i64, ProducerEntry>,
}

fn in_sequence(last: i32, next: i32) -> bool {
    next == last.wrapping_add(1) && last != i32::MAX || (last == i32::MAX && next == 0)
}

impl ProducerStates {
    /// Number of producers with state.
    pub(crate) fn len(&self) -> usize {
        self.producers.len()
    }

    /// Every producer with a batch remembered, by producer id.
    pub(crate) fn active(&self) -> Vec<ActiveProducer> {
        let mut active: Vec<ActiveProducer> = self
            .producers
            .iter()
            .filter_map(|(id, entry)| {
                let last = entry.batches.back()?;
                Some(ActiveProducer {
                    producer_id: *id,
                    epoch: entry.epoch,
                    last_sequence: last.last_seq,
                    last_timestamp: last.max_timestamp,
                })
            })
            .collect();
        active.sort_by_key(|p| p.producer_id);
        active
    }

    fn entry<'a>(
        &'a self,
        pending: &'a PendingUpdates,
        producer_id: i64,
    ) -> Option<&'a ProducerEntry> {
        pending
            .entries
            .get(&producer_id)
            .or_else(|| self.producers.get(&producer_id))
    }

    /// Checks `header` against the state plus the updates of earlier batches of the same
    /// append. Does not change anything.
    pub(crate) fn check(
        &self,
        pending: &PendingUpdates,
        header: &BatchHeader<'_>,
    ) -> Result<Verdict> {
        let producer_id = header.producer_id();
        if producer_id == NO_PRODUCER_ID
            || header.base_sequence() == NO_SEQUENCE
            || header.is_control()
        {
            return Ok(Verdict::Append);
        }
        let epoch = header.producer_epoch();
        let first_seq = header.base_sequence();
        let last_seq = header.last_sequence();
        let Some(entry) = self.entry(pending, producer_id) else {
            return Ok(Verdict::Append);
        };
        if epoch == entry.epoch {
            if let Some(original) = entry
                .batches
                .iter()
                .find(|b| b.first_seq == first_seq && b.last_seq == last_seq)
            {
                return Ok(Verdict::Duplicate(*original));
            }
        }
        if epoch < entry.epoch {
            return Err(StorageError::InvalidProducerEpoch {
                producer_id,
                epoch,
                current: entry.epoch,
            });
        }
        if epoch > entry.epoch {
            if first_seq != 0 && entry.epoch != NO_PRODUCER_EPOCH {
                return Err(StorageError::OutOfOrderSequence {
                    producer_id,
                    expected: 0,
                    found: first_seq,
                });
            }
            return Ok(Verdict::Append);
        }
        match entry.last_seq() {
            Some(last) if !in_sequence(last, first_seq) => Err(StorageError::OutOfOrderSequence {
                producer_id,
                expected: last.wrapping_add(1).max(0),
                found: first_seq,
            }),
            _ => Ok(Verdict::Append),
        }
    }

    /// Records an accepted batch in `pending` (after `check` said Append).
    pub(crate) fn stage(
        &self,
        pending: &mut PendingUpdates,
        header: &BatchHeader<'_>,
        first_offset: i64,
        max_timestamp: i64,
    ) {
        let producer_id = header.producer_id();
        if producer_id == NO_PRODUCER_ID || header.is_control() {
            return;
        }
        let entry = pending.entries.entry(producer_id).or_insert_with(|| {
            self.producers
                .get(&producer_id)
                .cloned()
                .unwrap_or(ProducerEntry {
                    epoch: NO_PRODUCER_EPOCH,
                    batches: VecDeque::new(),
                })
        });
        apply(entry, header, first_offset, max_timestamp);
    }

    /// Makes staged updates part of the state (after the batches were written).
    pub(crate) fn commit(&mut self, pending: PendingUpdates) {
        self.producers.extend(pending.entries);
    }

    /// Replays one stored batch (rebuilding state from the log; no validation).
    pub(crate) fn replay(&mut self, header: &BatchHeader<'_>) {
        let producer_id = header.producer_id();
        if producer_id == NO_PRODUCER_ID || header.is_control() {
            return;
        }
        let entry = self.producers.entry(producer_id).or_insert(ProducerEntry {
            epoch: NO_PRODUCER_EPOCH,
            batches: VecDeque::new(),
        });
        apply(entry, header, header.base_offset(), header.max_timestamp());
    }

    /// Serialises the state as of log offset `offset` (see the module doc).
    pub(crate) fn encode(&self, offset: i64) -> Vec<u8> {
        let mut out = Vec::with_capacity(22 + self.producers.len() * 60);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_be_bytes());
        out.extend_from_slice(&offset.to_be_bytes());
        out.extend_from_slice(&(self.producers.len() as u32).to_be_bytes());
        let mut ids: Vec<&i64> = self.producers.keys().collect();
        ids.sort_unstable();
        for id in ids {
            let entry = &self.producers[id];
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&entry.epoch.to_be_bytes());
            out.push(entry.batches.len() as u8);
            for b in &entry.batches {
                out.extend_from_slice(&b.first_seq.to_be_bytes());
                out.extend_from_slice(&b.last_seq.to_be_bytes());
                out.extend_from_slice(&b.first_offset.to_be_bytes());
                out.extend_from_slice(&b.last_offset.to_be_bytes());
                out.extend_from_slice(&b.max_timestamp.to_be_bytes());
            }
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    /// Parses a snapshot; None if it is damaged in any way.
    pub(crate) fn decode(bytes: &[u8]) -> Option<(i64, ProducerStates)> {
        let (body, crc) = bytes.split_at(bytes.len().checked_sub(4)?);
        if crc32c::crc32c(body).to_be_bytes() != crc {
            return None;
        }
        let mut r = Reader { rest: body };
        if r.take(4)? != MAGIC || u16::from_be_bytes(r.array()?) != VERSION {
            return None;
        }
        let offset = i64::from_be_bytes(r.array()?);
        let count = u32::from_be_bytes(r.array()?);
        let mut producers = HashMap::new();
        for _ in 0..count {
            let id = i64::from_be_bytes(r.array()?);
            let epoch = i16::from_be_bytes(r.array()?);
            let batches = r.take(1)?[0] as usize;
            if batches > BATCHES_RETAINED {
                return None;
            }
            let mut entry = ProducerEntry {
                epoch,
                batches: VecDeque::with_capacity(batches),
            };
            for _ in 0..batches {
                entry.batches.push_back(BatchMetadata {
                    first_seq: i32::from_be_bytes(r.array()?),
                    last_seq: i32::from_be_bytes(r.array()?),
                    first_offset: i64::from_be_bytes(r.array()?),
                    last_offset: i64::from_be_bytes(r.array()?),
                    max_timestamp: i64::from_be_bytes(r.array()?),
                });
            }
            producers.insert(id, entry);
        }
        r.rest
            .is_empty()
            .then_some((offset, ProducerStates { producers }))
    }
}

fn apply(
    entry: &mut ProducerEntry,
    header: &BatchHeader<'_>,
    first_offset: i64,
    max_timestamp: i64,
) {
    let epoch = header.producer_epoch();
    if epoch != entry.epoch {
        entry.epoch = epoch;
        entry.batches.clear();
    }
    if header.base_sequence() != NO_SEQUENCE {
        entry.push(BatchMetadata {
            first_seq: header.base_sequence(),
            last_seq: header.last_sequence(),
            first_offset,
            last_offset: first_offset + header.last_offset_delta() as i64,
            max_timestamp,
        });
    }
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.rest.len() < n {
            return None;
        }
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
}

/// Snapshot files of a partition directory, sorted by offset.
pub(crate) fn list_snapshots(dir: &Path) -> Result<Vec<(i64, PathBuf)>> {
    let mut found = Vec::new();
    let entries = std::fs::read_dir(dir)
        .map_err(|e| StorageError::io(format!("list {}", dir.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StorageError::io(format!("list {}", dir.display()), e))?;
        let name = entry.file_name();
        if let Some((offset, SNAPSHOT_SUFFIX)) =
            name.to_str().and_then(fsutil::parse_segment_file_name)
        {
            found.push((offset, entry.path()));
        }
    }
    found.sort_unstable();
    Ok(found)
}

/// Loads the newest readable snapshot at or below `max_offset`; deletes the ones above it
/// (they describe a log that was truncated).
pub(crate) fn load_snapshot(dir: &Path, max_offset: i64) -> Result<Option<(i64, ProducerStates)>> {
    let mut best = None;
    for (offset, path) in list_snapshots(dir)?.into_iter().rev() {
        if offset > max_offset {
            fsutil::remove_if_exists(&path)?;
            continue;
        }
        if best.is_some() {
            continue;
        }
        match fsutil::read_optional(&path)?
            .as_deref()
            .and_then(ProducerStates::decode)
        {
            Some((stored, states)) if stored == offset => best = Some((offset, states)),
            _ => {
                tracing::warn!(file = %path.display(), "ignoring unreadable producer state snapshot")
            }
        }
    }
    Ok(best)
}

/// Writes the snapshot for `offset` and keeps only the newest few.
pub(crate) fn write_snapshot(dir: &Path, offset: i64, states: &ProducerStates) -> Result<()> {
    write_encoded_snapshot(dir, offset, &states.encode(offset))
}

/// Writes a snapshot encoded earlier (a roll encodes it under the append lock and the
/// flusher writes it, so the fsyncs stay off the append path), keeping the newest few.
pub(crate) fn write_encoded_snapshot(dir: &Path, offset: i64, encoded: &[u8]) -> Result<()> {
    let path = fsutil::segment_file(dir, offset, SNAPSHOT_SUFFIX);
    fsutil::write_atomically(&path, encoded)?;
    let snapshots = list_snapshots(dir)?;
    if snapshots.len() > SNAPSHOTS_KEPT {
        for (_, path) in &snapshots[..snapshots.len() - SNAPSHOTS_KEPT] {
            fsutil::remove_if_exists(path)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{BatchBuilder, Compression};

    fn batch(producer_id: i64, epoch: i16, seq: i32, records: usize) -> bytes::Bytes {
        let mut builder = BatchBuilder::new(Compression::None).producer(producer_id, epoch, seq);
        for _ in 0..records {
            builder.push(0, None, Some(b"v"), &[]);
        }
        builder.build().unwrap()
    }

    fn append(states: &mut ProducerStates, bytes: &[u8], offset: i64) -> Result<Verdict> {
        let header = BatchHeader::new(bytes).unwrap();
        let mut pending = PendingUpdates::default();
        let verdict = states.check(&pending, &header)?;
        if verdict == Verdict::Append {
            states.stage(&mut pending, &header, offset, 0);
            states.commit(pending);
        }
        Ok(verdict)
    }

    #[test]
    fn active_producers_are_listed_with_their_last_batch() {
        let mut states = ProducerStates::default();
        append(&mut states, &batch(9, 0, 0, 3), 0).unwrap();
        append(&mut states, &batch(4, 2, 0, 1), 3).unwrap();
        append(&mut states, &batch(9, 0, 3, 2), 4).unwrap();
        let active = states.active();
        assert_eq!(
            active.iter().map(|p| p.producer_id).collect::<Vec<_>>(),
            vec![4, 9]
        );
        assert_eq!((active[0].epoch, active[0].last_sequence), (2, 0));
        assert_eq!((active[1].epoch, active[1].last_sequence), (0, 4));
    }

    #[test]
    fn sequences_duplicates_gaps_and_epochs() {
        let mut states = ProducerStates::default();
        assert_eq!(
            append(&mut states, &batch(7, 0, 0, 3), 0).unwrap(),
            Verdict::Append
        );
        assert_eq!(
            append(&mut states, &batch(7, 0, 3, 2), 3).unwrap(),
            Verdict::Append
        );
        // A retry of the first batch is a duplicate with its original offsets.
        match append(&mut states, &batch(7, 0, 0, 3), 99).unwrap() {
            Verdict::Duplicate(meta) => assert_eq!((meta.first_offset, meta.last_offset), (0, 2)),
            other => panic!("{other:?}"),
        }
        // A gap.
        assert!(matches!(
            append(&mut states, &batch(7, 0, 9, 1), 5),
            Err(StorageError::OutOfOrderSequence {
                expected: 5,
                found: 9,
                ..
            })
        ));
        // A new epoch must start at 0; then the old epoch is fenced.
        assert!(matches!(
            append(&mut states, &batch(7, 1, 5, 1), 5),
            Err(StorageError::OutOfOrderSequence { .. })
        ));
        assert_eq!(
            append(&mut states, &batch(7, 1, 0, 1), 5).unwrap(),
            Verdict::Append
        );
        assert!(matches!(
            append(&mut states, &batch(7, 0, 5, 1), 6),
            Err(StorageError::InvalidProducerEpoch { current: 1, .. })
        ));
        // An unknown producer may start anywhere (its state may have been retained away).
        assert_eq!(
            append(&mut states, &batch(8, 3, 42, 1), 6).unwrap(),
            Verdict::Append
        );
        // Non-idempotent batches are never checked.
        assert_eq!(
            append(&mut states, &batch(-1, -1, -1, 1), 7).unwrap(),
            Verdict::Append
        );
    }

    #[test]
    fn only_the_last_five_batches_are_deduplicated() {
        let mut states = ProducerStates::default();
        for i in 0..7 {
            append(&mut states, &batch(1, 0, i, 1), i as i64).unwrap();
        }
        assert!(matches!(
            append(&mut states, &batch(1, 0, 2, 1), 9).unwrap(),
            Verdict::Duplicate(_)
        ));
        assert!(
            append(&mut states, &batch(1, 0, 1, 1), 9).is_err(),
            "too old to be recognised"
        );
    }

    #[test]
    fn sequence_wraps_at_i32_max() {
        assert!(in_sequence(i32::MAX, 0));
        assert!(in_sequence(4, 5));
        assert!(!in_sequence(4, 4));
        assert!(!in_sequence(i32::MAX, i32::MIN));
    }

    #[test]
    fn snapshots_round_trip_and_reject_damage() {
        let mut states = ProducerStates::default();
        for i in 0..7 {
            append(&mut states, &batch(1, 2, i * 2, 2), i as i64 * 2).unwrap();
        }
        append(&mut states, &batch(5, 0, 0, 1), 20).unwrap();
        let bytes = states.encode(21);
        assert_eq!(ProducerStates::decode(&bytes), Some((21, states.clone())));
        for i in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[i] ^= 0x10;
            assert_eq!(ProducerStates::decode(&damaged), None, "flip at {i}");
        }
        assert_eq!(ProducerStates::decode(&bytes[..bytes.len() - 1]), None);
        assert_eq!(ProducerStates::decode(&[]), None);
    }
}
