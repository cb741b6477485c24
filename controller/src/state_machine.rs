//! [`MetadataStateMachine`]: the quorum's [`Applier`] over a [`MetadataImage`], and
//! [`ImageReader`], the cheap view of the latest image that request handlers use.
//!
//! Every committed entry is one record batch (`sluice_metadata::encode_batch`). `apply`
//! decodes it and applies it to the working image at the entry's log position; a batch
//! that the image rejects (a record that does not fit it) is skipped (the position still
//! advances), the same way on every node, and the proposer gets the reason back.
//!
//! # Entries this build cannot read
//! An entry that does not decode (a batch version or record type this build does not
//! know, or bytes that are no batch) or that raises `metadata.version` above what this
//! build reads is **not** skipped: a newer node reads it, so skipping it would make the
//! nodes' images silently differ. This node **stops applying** instead: the image stays at
//! the entry before, every later entry is refused, [`ImageReader::halted`] gives the
//! reason (logged at error level) and [`ImageReader::wait_for_offset`] fails with
//! [`ControllerError::Halted`]. While halted, [`Applier::snapshot`] returns bytes that no
//! node loads, so no snapshot claims entries this node did not apply. Installing a
//! snapshot (from a node that could read the log) replaces the state and resumes applying;
//! otherwise the node must be upgraded and restarted.
//!
//! # Publishing
//! Readers get the image as an `Arc<MetadataImage>`: a consistent copy they keep for as long
//! as they like. Copies are made **lazily**: `apply` changes the working image and sends only
//! its new offset on a `tokio::sync::watch` channel (it wakes [`ImageReader::wait_for_offset`]
//! and [`ImageReader::subscribe`]rs); the first [`ImageReader::image`] after a change copies
//! the working image once, and every later read until the next change shares that copy.
//! So replaying a long log at start, when nobody reads, costs no copies, and a running node
//! makes at most one copy per change that somebody reads (never more than one per entry).
//!
//! # Positions
//! The image's position is `LogPosition { offset: Raft index, epoch: Raft term }` of the
//! entry last applied: the same on every node, since a committed entry's index and term are.
//! Raft's own entries (a new leader's blank entry,
//! membership changes) never reach the applier, so image offsets have gaps: wait for an
//! offset the image itself reported (a batch's offset), never for the quorum's applied index.
//!
//! # Responses
//! `apply` answers the proposer with one byte: `0` applied, or `1` followed by the UTF-8
//! reason the batch was skipped.
//!
//! # Recent batches (for observers)
//! The state machine also keeps the last applied (or skipped) batches, as the log holds
//! them, in a bounded window ([`DEFAULT_WINDOW_ENTRIES`] entries and
//! [`WINDOW_MAX_BYTES`] bytes at most, the oldest dropped first): a broker-only node
//! following the metadata (`FetchMetadata`, see `observer`) gets the batches after its
//! offset from it, or, when it is behind the window, a snapshot of the image
//! ([`ImageReader::fetch_after`]). The window always holds *every* entry applied after its
//! base offset (`window_base`), so an observer at or above the base misses nothing; a
//! snapshot installed here empties it (its base becomes the snapshot's offset). An entry
//! that halted applying is not in it (the image did not take it either).
//!
//! # Cost
//! A copy costs O(image size): an image of 10,000 partitions clones in about 18 ms in a
//! debug build (`the_largest_operation_fits_one_entry` prints it). The copy is made by the
//! first reader after a change, under the lock `apply` also takes, so an entry applied at
//! that moment waits for it; reads of an unchanged image only clone an `Arc`. A persistent
//! map in the image would remove the cost if clusters grow far beyond that.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use sluice_metadata::{decode_batch, LogPosition, MetadataError, MetadataImage};
use sluice_quorum::types::Payload;
use sluice_quorum::Applier;
use tokio::sync::watch;

use crate::error::{ControllerError, Result};
use crate::rpc::{FetchedBatch, FetchedMetadata};

/// Entries kept in the window of recent batches by default (see the module docs).
pub const DEFAULT_WINDOW_ENTRIES: usize = 4096;
/// The most bytes of batches the window keeps, whatever its entry count.
pub const WINDOW_MAX_BYTES: usize = 16 << 20;

const APPLIED: u8 = 0;
const REJECTED: u8 = 1;

/// How the state machine answered an entry (decoded from the bytes `apply` returned).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ApplyOutcome {
    /// The batch is in the image.
    Applied,
    /// The batch was skipped; why.
    Rejected(String),
}

impl ApplyOutcome {
    fn encode(&self) -> Vec<u8> {
        match self {
            ApplyOutcome::Applied => vec![APPLIED],
            ApplyOutcome::Rejected(reason) => {
                let mut out = Vec::with_capacity(1 + reason.len());
                out.push(REJECTED);
                out.extend_from_slice(reason.as_bytes());
                out
            }
        }
    }

    pub(crate) fn decode(bytes: &[u8]) -> ApplyOutcome {
        match bytes.split_first() {
            Some((&APPLIED, [])) => ApplyOutcome::Applied,
            Some((&REJECTED, reason)) => {
                ApplyOutcome::Rejected(String::from_utf8_lossy(reason).into_owned())
            }
            _ => ApplyOutcome::Rejected(format!("unreadable apply response {bytes:?}")),
        }
    }
}

/// The working image and its latest copy, shared by the state machine and its readers.
#[derive(Debug)]
struct Shared {
    images: Mutex<Images>,
    /// Copies made so far (see the module docs' "Cost").
    built: AtomicU64,
}

#[derive(Debug)]
struct Images {
    /// The working image `apply` changes.
    working: MetadataImage,
    /// The latest copy handed to readers; stale when `changed`.
    latest: Arc<MetadataImage>,
    changed: bool,
    /// The recent batches, oldest first (see the module docs).
    window: VecDeque<FetchedBatch>,
    /// Their bytes.
    window_bytes: usize,
    /// Every entry applied after this offset is in `window`.
    window_base: i64,
    /// The most entries `window` keeps.
    window_entries: usize,
}

impl Images {
    /// Adds an applied (or skipped) batch to the window, dropping the oldest beyond the
    /// bounds.
    fn remember(&mut self, offset: i64, epoch: i64, payload: &[u8]) {
        if self.window_entries == 0 {
            self.window_base = offset;
            return;
        }
        self.window_bytes += payload.len();
        self.window.push_back(FetchedBatch {
            offset,
            epoch,
            records: Payload(payload.to_vec()),
        });
        while self.window.len() > self.window_entries
            || (self.window_bytes > WINDOW_MAX_BYTES && self.window.len() > 1)
        {
            let Some(dropped) = self.window.pop_front() else {
                break;
            };
            self.window_bytes -= dropped.records.0.len();
            self.window_base = dropped.offset;
        }
    }

    /// Forgets the window (the image was replaced): observers below `base` get a snapshot.
    fn reset_window(&mut self, base: i64) {
        self.window.clear();
        self.window_bytes = 0;
        self.window_base = base;
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Images> {
        // Nothing panics while holding the lock with `working` half changed (an image
        // change is all or nothing), so a poisoned lock still guards whole images.
        self.images.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The metadata image driven by the quorum. See the module docs.
pub struct MetadataStateMachine {
    shared: Arc<Shared>,
    /// The working image's offset after each entry (wakes readers).
    offsets: watch::Sender<i64>,
    /// Why applying stopped (see the module docs), shared with the readers.
    halted: watch::Sender<Option<String>>,
}

impl MetadataStateMachine {
    /// An empty state machine (the quorum installs its snapshot and replays its log into it
    /// at start) and the reader of the images it publishes, with a window of
    /// [`DEFAULT_WINDOW_ENTRIES`] recent batches.
    pub fn new() -> (MetadataStateMachine, ImageReader) {
        MetadataStateMachine::with_window(DEFAULT_WINDOW_ENTRIES)
    }

    /// [`new`](Self::new) with a window of `entries` recent batches (0: none; every
    /// observer then gets snapshots).
    pub fn with_window(entries: usize) -> (MetadataStateMachine, ImageReader) {
        let shared = Arc::new(Shared {
            images: Mutex::new(Images {
                working: MetadataImage::new(),
                latest: Arc::new(MetadataImage::new()),
                changed: false,
                window: VecDeque::new(),
                window_bytes: 0,
                window_base: -1,
                window_entries: entries,
            }),
            built: AtomicU64::new(0),
        });
        let (offsets, offsets_rx) = watch::channel(-1);
        let (halted, halted_rx) = watch::channel(None);
        let sm = MetadataStateMachine {
            shared: shared.clone(),
            offsets,
            halted,
        };
        (
            sm,
            ImageReader {
                shared,
                offsets: offsets_rx,
                halted: halted_rx,
            },
        )
    }

    /// The image's metadata offset now (-1: nothing applied).
    pub fn offset(&self) -> i64 {
        *self.offsets.borrow()
    }

    /// Why applying stopped, if it did (see the module docs).
    pub fn halted(&self) -> Option<String> {
        self.halted.borrow().clone()
    }

    /// Stops applying at the entry at `offset`, which this build cannot read.
    fn halt(&mut self, offset: i64, e: &MetadataError) -> ApplyOutcome {
        let reason = format!(
            "the entry at offset {offset} cannot be read by this build ({e}); upgrade this node"
        );
        tracing::error!(offset, "metadata apply stopped: {reason}");
        self.halted.send_replace(Some(reason.clone()));
        ApplyOutcome::Rejected(format!("metadata apply stopped on this node: {reason}"))
    }

    /// Marks the working image changed (the copy is made by the next reader, see the
    /// module docs) and, once the lock is released, tells the readers its offset: never
    /// both locks at once, as a reader may hold the watch while it takes the image lock.
    fn publish(&self, mut images: MutexGuard<'_, Images>) {
        images.changed = true;
        let offset = images.working.metadata_offset();
        drop(images);
        self.offsets.send_replace(offset);
    }

    fn apply_entry(&mut self, index: u64, term: u64, payload: &[u8]) -> ApplyOutcome {
        let (Ok(offset), Ok(epoch)) = (i64::try_from(index), i64::try_from(term)) else {
            return ApplyOutcome::Rejected(format!(
                "log index {index} or term {term} is out of range"
            ));
        };
        if let Some(reason) = self.halted.borrow().as_ref() {
            return ApplyOutcome::Rejected(format!(
                "metadata apply stopped on this node: {reason}"
            ));
        }
        let position = LogPosition { offset, epoch };
        let records = match decode_batch(payload) {
            Ok(records) => records,
            Err(e) => return self.halt(offset, &e),
        };
        let shared = self.shared.clone();
        let mut images = shared.lock();
        let outcome = match images.working.apply(position, &records) {
            Ok(()) => {
                tracing::trace!(offset, records = records.len(), "metadata batch applied");
                images.remember(offset, epoch, payload);
                ApplyOutcome::Applied
            }
            Err(e @ MetadataError::UnsupportedMetadataVersion { .. }) => self.halt(offset, &e),
            Err(e) => {
                // Every node rejects the same batch the same way, so the images stay equal.
                tracing::warn!(offset, "metadata batch rejected, skipped: {e}");
                match images.working.skip(position) {
                    // An observer skips it the same way.
                    Ok(()) => images.remember(offset, epoch, payload),
                    Err(skip) => {
                        tracing::error!(offset, "cannot skip the metadata entry: {skip}")
                    }
                }
                ApplyOutcome::Rejected(e.to_string())
            }
        };
        self.publish(images);
        outcome
    }
}

impl Applier for MetadataStateMachine {
    fn apply(&mut self, index: u64, term: u64, payload: &[u8]) -> Vec<u8> {
        self.apply_entry(index, term, payload).encode()
    }

    fn snapshot(&self) -> Vec<u8> {
        if self.halted.borrow().is_some() {
            // The image misses entries the quorum counts as applied: a snapshot of it
            // would make that permanent. Bytes no node loads instead (see the module docs).
            tracing::error!("metadata apply is stopped: no snapshot of this node's image");
            return Vec::new();
        }
        // Encoding plain maps and strings to JSON cannot fail; should it ever, the empty
        // snapshot is refused when loaded, loudly, rather than taken for an empty cluster.
        self.shared
            .lock()
            .working
            .to_snapshot_bytes()
            .unwrap_or_else(|e| {
                tracing::error!("cannot encode the metadata snapshot: {e}");
                Vec::new()
            })
    }

    fn install_snapshot(&mut self, last_index: u64, bytes: &[u8]) -> Result<(), String> {
        let image = MetadataImage::from_snapshot_bytes(bytes).map_err(|e| e.to_string())?;
        let offset = image.metadata_offset();
        if u64::try_from(offset).is_ok_and(|o| o > last_index) {
            return Err(format!(
                "the snapshot's image is at offset {offset}, past the snapshot's last index {last_index}"
            ));
        }
        tracing::debug!(offset, last_index, "metadata image loaded from a snapshot");
        let shared = self.shared.clone();
        let mut images = shared.lock();
        images.working = image;
        images.reset_window(offset);
        self.publish(images);
        self.halted.send_replace(None);
        Ok(())
    }
}

/// A cheap, cloneable view of the latest applied image. Reading never blocks the state
/// machine and never waits for it.
#[derive(Debug, Clone)]
pub struct ImageReader {
    shared: Arc<Shared>,
    offsets: watch::Receiver<i64>,
    halted: watch::Receiver<Option<String>>,
}

impl ImageReader {
    /// The latest applied image: a consistent snapshot, kept as long as the `Arc` is held.
    pub fn image(&self) -> Arc<MetadataImage> {
        let mut images = self.shared.lock();
        if images.changed {
            images.latest = Arc::new(images.working.clone());
            images.changed = false;
            self.shared.built.fetch_add(1, Ordering::Relaxed);
        }
        images.latest.clone()
    }

    /// How many copies of the image readers have had made (see the module docs' "Cost").
    pub fn images_built(&self) -> u64 {
        self.shared.built.load(Ordering::Relaxed)
    }

    /// A watch of the image's metadata offset: it changes with every applied (or skipped)
    /// entry; read the image itself with [`ImageReader::image`] (a copy is made only
    /// then).
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.offsets.clone()
    }

    /// What a FetchMetadata from an observer at `after_offset` gets now (see the module
    /// docs), with the offset the answer brings it to: the batches after it (at most
    /// `max_bytes` of them, and at least one), or a snapshot of the image when it is below
    /// the window (or has nothing, -1). `None` when this image has nothing after
    /// `after_offset`.
    pub fn fetch_after(
        &self,
        after_offset: i64,
        max_bytes: usize,
    ) -> Option<(FetchedMetadata, i64)> {
        let images = self.shared.lock();
        let current = images.working.metadata_offset();
        if after_offset >= current {
            return None;
        }
        if after_offset < 0 || after_offset < images.window_base {
            // Encoded from a reader's copy, outside the lock, so that apply does not wait
            // for the encoding; a copy is consistent at its own offset, whatever came since.
            drop(images);
            let image = self.image();
            return match image.to_snapshot_bytes() {
                Ok(bytes) => Some((
                    FetchedMetadata::Snapshot(Payload(bytes)),
                    image.metadata_offset(),
                )),
                Err(e) => {
                    // Plain maps and strings: not expected. The observer tries elsewhere.
                    tracing::error!("cannot encode the metadata snapshot: {e}");
                    None
                }
            };
        }
        let mut batches = Vec::new();
        let mut bytes = 0usize;
        let mut last = after_offset;
        // The window is in offset order: skip what the observer has, take the rest.
        let start = images.window.partition_point(|b| b.offset <= after_offset);
        for batch in images.window.iter().skip(start) {
            if !batches.is_empty() && bytes + batch.records.0.len() > max_bytes {
                break;
            }
            bytes += batch.records.0.len();
            last = batch.offset;
            batches.push(batch.clone());
        }
        Some((FetchedMetadata::Batches(batches), last))
    }

    /// [`fetch_after`](Self::fetch_after), waiting up to `max_wait` for something after
    /// `after_offset` (a long poll); then an empty list of batches at `after_offset`.
    pub async fn fetch_metadata(
        &self,
        after_offset: i64,
        max_wait: Duration,
        max_bytes: usize,
    ) -> (FetchedMetadata, i64) {
        let mut offsets = self.offsets.clone();
        let deadline = tokio::time::Instant::now() + max_wait;
        loop {
            // Marked seen before looking, so a change right after is not missed.
            offsets.borrow_and_update();
            if let Some(found) = self.fetch_after(after_offset, max_bytes) {
                return found;
            }
            match tokio::time::timeout_at(deadline, offsets.changed()).await {
                Ok(Ok(())) => {}
                // Timed out, or the state machine is gone: nothing new.
                Ok(Err(_)) | Err(_) => {
                    return (FetchedMetadata::Batches(Vec::new()), after_offset.max(-1))
                }
            }
        }
    }

    /// Why this node stopped applying the log, if it did (see the module docs).
    pub fn halted(&self) -> Option<String> {
        self.halted.borrow().clone()
    }

    /// Waits until the image has applied the entry at `offset` (its metadata offset is at
    /// least `offset`), for at most `timeout`; returns that image. Fails at once with
    /// [`ControllerError::Halted`] if applying stopped before that offset.
    pub async fn wait_for_offset(
        &self,
        offset: i64,
        timeout: Duration,
    ) -> Result<Arc<MetadataImage>> {
        let mut offsets = self.offsets.clone();
        let mut halted = self.halted.clone();
        let reached = tokio::time::timeout(timeout, async {
            tokio::select! {
                biased;
                // The watch's guard is dropped (`map`) before the image lock is taken.
                reached = async {
                    offsets.wait_for(|&applied| applied >= offset).await.map(|_| ())
                } => match reached {
                    // The working image is at `offset` or later: so is a copy made now.
                    Ok(_) => Ok(self.image()),
                    Err(_) => Err(ControllerError::Stopped),
                },
                reason = halted.wait_for(Option::is_some) => match reason {
                    Ok(reason) => Err(ControllerError::Halted(reason.clone().unwrap_or_default())),
                    // Both senders live in the state machine: it is gone.
                    Err(_) => Err(ControllerError::Stopped),
                },
            }
        })
        .await;
        match reached {
            Ok(result) => result,
            Err(_) => Err(ControllerError::Timeout(timeout)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_metadata::encode_batch;
    use sluice_metadata::records::{
        ClusterIdRecord, FeatureLevelRecord, MetadataRecord, RemoveTopicRecord,
        LATEST_METADATA_VERSION, METADATA_VERSION,
    };

    fn cluster_id(id: &str) -> Vec<u8> {
        encode_batch(&[MetadataRecord::ClusterId(ClusterIdRecord {
            cluster_id: id.into(),
        })])
        .unwrap()
    }

    #[test]
    fn applies_batches_and_publishes_each_image() {
        let (mut sm, reader) = MetadataStateMachine::new();
        let watch = reader.subscribe();
        assert_eq!(reader.image().metadata_offset(), -1);
        let response = sm.apply(3, 1, &cluster_id("c1"));
        assert_eq!(ApplyOutcome::decode(&response), ApplyOutcome::Applied);
        assert!(watch.has_changed().unwrap());
        let image = reader.image();
        assert_eq!(image.cluster_id(), Some("c1"));
        assert_eq!(
            image.last_applied(),
            Some(LogPosition {
                offset: 3,
                epoch: 1
            })
        );
        // An empty batch moves the offset only (the active controller's barrier).
        let held = reader.image();
        sm.apply(5, 1, &encode_batch(&[]).unwrap());
        assert_eq!(reader.image().metadata_offset(), 5);
        assert_eq!(held.metadata_offset(), 3, "a held image never changes");
    }

    #[test]
    fn rejected_entries_are_skipped_with_a_reason() {
        let (mut sm, reader) = MetadataStateMachine::new();
        sm.apply(1, 1, &cluster_id("c1"));
        // Another cluster id does not fit the image: rejected, skipped.
        let response = ApplyOutcome::decode(&sm.apply(2, 1, &cluster_id("c2")));
        let ApplyOutcome::Rejected(reason) = response else {
            panic!("{response:?}")
        };
        assert!(reason.contains("cluster id"), "{reason}");
        // A topic that does not exist.
        let remove = encode_batch(&[MetadataRecord::RemoveTopic(RemoveTopicRecord {
            topic_id: uuid::Uuid::new_v4(),
        })])
        .unwrap();
        assert!(matches!(
            ApplyOutcome::decode(&sm.apply(4, 1, &remove)),
            ApplyOutcome::Rejected(_)
        ));
        let image = reader.image();
        assert_eq!(image.cluster_id(), Some("c1"));
        assert_eq!(
            image.metadata_offset(),
            4,
            "skipped entries advance the offset"
        );
        // An index not above the last one is answered, not applied.
        assert!(matches!(
            ApplyOutcome::decode(&sm.apply(4, 1, &encode_batch(&[]).unwrap())),
            ApplyOutcome::Rejected(_)
        ));
        assert!(matches!(
            ApplyOutcome::decode(&sm.apply(u64::MAX, 1, &encode_batch(&[]).unwrap())),
            ApplyOutcome::Rejected(_)
        ));
        assert_eq!(reader.image().metadata_offset(), 4);
        assert_eq!(reader.halted(), None);
    }

    #[tokio::test]
    async fn an_entry_this_build_cannot_read_stops_apply_instead_of_being_skipped() {
        let newer_level = MetadataRecord::FeatureLevel(FeatureLevelRecord {
            name: METADATA_VERSION.into(),
            feature_level: LATEST_METADATA_VERSION + 1,
        });
        let unreadable: [Vec<u8>; 5] = [
            b"\x02[]".to_vec(),
            b"\x01[{\"type\":\"record_from_the_future\"}]".to_vec(),
            b"\x01[{".to_vec(),
            Vec::new(),
            encode_batch(&[newer_level]).unwrap(),
        ];
        for bytes in unreadable {
            let (mut sm, reader) = MetadataStateMachine::new();
            sm.apply(1, 1, &cluster_id("c1"));
            let snapshot_before = sm.snapshot();
            let outcome = ApplyOutcome::decode(&sm.apply(2, 1, &bytes));
            assert!(matches!(outcome, ApplyOutcome::Rejected(_)), "{bytes:?}");
            // Not skipped: the image stays before the entry, and no later entry applies.
            let later = ApplyOutcome::decode(&sm.apply(3, 1, &encode_batch(&[]).unwrap()));
            let ApplyOutcome::Rejected(reason) = later else {
                panic!("{later:?}")
            };
            assert!(reason.contains("stopped"), "{reason}");
            assert_eq!(reader.image().metadata_offset(), 1, "{bytes:?}");
            let halted = reader.halted().expect("halted");
            assert!(!halted.is_empty());
            // Waiting for a later offset fails at once with the reason, not a timeout.
            assert!(matches!(
                reader.wait_for_offset(3, Duration::from_secs(10)).await,
                Err(ControllerError::Halted(_))
            ));
            // No snapshot claims what this node did not apply.
            let snapshot = sm.snapshot();
            assert!(MetadataImage::from_snapshot_bytes(&snapshot).is_err());
            // A snapshot from a node that could read it (here: an earlier one) restarts it.
            sm.install_snapshot(3, &snapshot_before).unwrap();
            assert_eq!(reader.halted(), None);
            assert!(matches!(
                ApplyOutcome::decode(&sm.apply(4, 1, &encode_batch(&[]).unwrap())),
                ApplyOutcome::Applied
            ));
        }
    }

    #[test]
    fn snapshots_round_trip_and_bad_ones_are_refused() {
        let (mut sm, _) = MetadataStateMachine::new();
        sm.apply(2, 1, &cluster_id("c1"));
        let bytes = sm.snapshot();

        let (mut other, reader) = MetadataStateMachine::new();
        other.install_snapshot(4, &bytes).unwrap();
        assert_eq!(*reader.image(), sm.shared.lock().working);
        assert_eq!(other.snapshot(), bytes);

        // Undecodable, or covering more than the snapshot claims: refused, image unchanged.
        assert!(other.install_snapshot(9, b"\x01{").is_err());
        assert!(other.install_snapshot(9, b"").is_err());
        assert!(other.install_snapshot(1, &bytes).is_err());
        assert_eq!(reader.image().cluster_id(), Some("c1"));
    }

    #[test]
    fn replaying_many_entries_copies_the_image_far_fewer_times() {
        let (mut sm, reader) = MetadataStateMachine::new();
        let copies_before = reader.images_built();
        sm.apply(1, 1, &cluster_id("c1"));
        let empty = encode_batch(&[]).unwrap();
        for index in 2..=1_000 {
            sm.apply(index, 1, &empty);
        }
        // Nobody read during the replay: no copy of the image was made for it.
        assert!(
            reader.images_built() - copies_before < 10,
            "{} copies for 1000 entries",
            reader.images_built() - copies_before
        );
        // The first read sees the last entry, and reading again copies nothing more.
        assert_eq!(reader.image().metadata_offset(), 1_000);
        let copies = reader.images_built();
        assert_eq!(reader.image().metadata_offset(), 1_000);
        assert_eq!(reader.images_built(), copies);
    }

    #[tokio::test]
    async fn wait_for_offset_wakes_on_apply_and_times_out() {
        let (mut sm, reader) = MetadataStateMachine::new();
        let waiter = {
            let reader = reader.clone();
            tokio::spawn(async move { reader.wait_for_offset(2, Duration::from_secs(10)).await })
        };
        sm.apply(1, 1, &cluster_id("c1"));
        sm.apply(2, 1, &encode_batch(&[]).unwrap());
        let image = waiter.await.unwrap().unwrap();
        assert_eq!(image.metadata_offset(), 2);
        assert!(matches!(
            reader.wait_for_offset(3, Duration::from_millis(20)).await,
            Err(ControllerError::Timeout(_))
        ));
        drop(sm);
        assert!(matches!(
            reader.wait_for_offset(3, Duration::from_secs(10)).await,
            Err(ControllerError::Stopped)
        ));
    }
}
