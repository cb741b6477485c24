//! One followed partition's fetch state and what the fetcher does with the leader's
//! answer for it (Kafka's `PartitionFetchState` and `AbstractFetcherThread.processFetchRequest`
//! for one partition, with `ReplicaFetcherThread.processPartitionData`).
//!
//! The decisions are pure functions ([`decide`], [`offset_reset`]), tested without logs or
//! sockets; [`FollowedPartition::handle`] and [`FollowedPartition::reset_offset`] carry
//! them out on the local log (blocking I/O: the fetcher calls them on a blocking thread).
//!
//! Per partition in a Fetch response:
//! - no error, no diverging epoch: the records are appended as they are
//!   (`append_replicated`: same offsets, same bytes), then the high watermark becomes
//!   min(leader's high watermark, local log end), and a leader log start above ours moves
//!   ours up (never past our high watermark);
//! - a diverging epoch (KIP-320: the leader found that our last fetched epoch ends earlier
//!   in its log than our log does): truncation to `truncation_offset` (KIP-101/KIP-279),
//!   then fetching goes on from the new log end;
//! - OFFSET_OUT_OF_RANGE: the leader's log start and end are asked (ListOffsets) and
//!   [`offset_reset`] says what to do: truncate to the leader's end when ours is past it
//!   (an unclean election happened), or start the log afresh at the leader's log start
//!   when ours ended before it (retention ran while we were away: Kafka's
//!   `truncateFullyAndStartAt`, storage's `truncate_fully_and_start_at`);
//! - NOT_LEADER_OR_FOLLOWER, FENCED_LEADER_EPOCH, UNKNOWN_LEADER_EPOCH, UNKNOWN_TOPIC_ID,
//!   UNKNOWN_TOPIC_OR_PARTITION, INCONSISTENT_TOPIC_ID: the leader and we disagree on the
//!   metadata; the partition pauses for `replica.fetch.backoff.ms` (the manager resets it
//!   sooner when the image changes its leader or epoch);
//! - anything else (KAFKA_STORAGE_ERROR...) and local storage errors (the log end moved,
//!   the disk is full, the log is offline): the partition backs off; the fetcher and the
//!   other partitions go on.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{self, PartitionData};
use sluice_storage::{truncation_offset, EpochEndOffset, FlushPolicy};
use uuid::Uuid;

use crate::topics::Partition;

/// A partition by topic id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartitionKey {
    pub topic_id: Uuid,
    pub partition: i32,
}

/// What to do with a partition's answer; see the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Append the records (if any), follow the leader's high watermark and log start.
    Append,
    /// Truncate where the logs diverge (the leader's epoch and its end offset).
    Truncate(EpochEndOffset),
    /// Ask the leader's log start and end, then reset (see [`offset_reset`]).
    OutOfRange,
    /// The leader and this broker disagree on the metadata: pause until it changes.
    WaitForMetadata(ResponseError),
    /// Try again after the backoff.
    Backoff(String),
}

/// The decision for a partition's error code and diverging epoch.
pub fn decide(error_code: i16, diverging: &fetch_response::EpochEndOffset) -> Decision {
    if error_code == 0 {
        // Kafka's leader never sends records with a diverging epoch; the truncation comes
        // first either way.
        if diverging.epoch >= 0 && diverging.end_offset >= 0 {
            return Decision::Truncate(EpochEndOffset {
                leader_epoch: diverging.epoch,
                end_offset: diverging.end_offset,
            });
        }
        return Decision::Append;
    }
    match ResponseError::try_from_code(error_code) {
        Some(ResponseError::OffsetOutOfRange) => Decision::OutOfRange,
        Some(
            e @ (ResponseError::NotLeaderOrFollower
            | ResponseError::FencedLeaderEpoch
            | ResponseError::UnknownLeaderEpoch
            | ResponseError::UnknownTopicId
            | ResponseError::UnknownTopicOrPartition
            | ResponseError::InconsistentTopicId),
        ) => Decision::WaitForMetadata(e),
        Some(e) => Decision::Backoff(format!("{e:?}")),
        None => Decision::Backoff(format!("error code {error_code}")),
    }
}

/// After OFFSET_OUT_OF_RANGE: what to do given our log end and the leader's log start and
/// end (Kafka's `AbstractFetcherThread.fetchOffsetAndTruncate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reset {
    /// Our log is past the leader's end: truncate to it.
    TruncateTo(i64),
    /// Our log ends before the leader's start: empty it and start at the leader's start.
    StartAt(i64),
    /// The leader's log covers our end now: fetch again from it.
    Resume,
}

/// See [`Reset`].
pub fn offset_reset(my_end: i64, leader_start: i64, leader_end: i64) -> Reset {
    if leader_end < my_end {
        Reset::TruncateTo(leader_end.max(0))
    } else if leader_start > my_end {
        Reset::StartAt(leader_start)
    } else {
        Reset::Resume
    }
}

/// A partition this broker follows, in one fetcher; see the module docs.
pub struct FollowedPartition {
    pub key: PartitionKey,
    pub topic: Arc<str>,
    /// The leader and its epoch, from the image (sent as `current_leader_epoch`).
    pub leader: i32,
    pub leader_epoch: i32,
    /// The local replica.
    pub replica: Arc<Partition>,
    /// Set anew whenever the manager (re)assigns the partition: an answer to a request
    /// sent for an earlier assignment is ignored.
    pub generation: u64,
    /// Not fetched before this instant (after an error).
    pub delayed_until: Option<Instant>,
    /// OFFSET_OUT_OF_RANGE came: ask the leader's log start and end before fetching again.
    pub needs_reset: bool,
}

/// What handling an answer did, for the fetcher's bookkeeping and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Records appended (how many bytes); possibly 0 with the HW or log start followed.
    Appended(usize),
    /// Truncated to this offset.
    Truncated(i64),
    /// Waiting for the leader's log start and end.
    NeedsReset,
    /// Paused or backed off.
    Delayed,
    /// The answer was for an older state of the log (it moved meanwhile): ignored.
    Stale,
}

impl FollowedPartition {
    /// Whether the partition goes into the next fetch.
    pub fn is_ready(&self, now: Instant) -> bool {
        !self.needs_reset && self.delayed_until.is_none_or(|t| t <= now)
    }

    /// Whether the local log must be durable before its end is reported to the leader
    /// (`log.flush.policy=always` or `flush.messages=1`).
    pub fn needs_durable_end(&self) -> bool {
        self.replica.log.config().flush == FlushPolicy::Always
    }

    fn delay(&mut self, now: Instant, backoff: Duration) {
        self.delayed_until = Some(now + backoff);
    }

    /// Handles the leader's answer for this partition to a fetch from `requested_offset`.
    /// Blocking (log I/O).
    pub fn handle(
        &mut self,
        data: &PartitionData,
        requested_offset: i64,
        now: Instant,
        backoff: Duration,
        now_ms: i64,
    ) -> Outcome {
        let log = &self.replica.log;
        match decide(data.error_code, &data.diverging_epoch) {
            Decision::Append => {
                if log.log_end_offset() != requested_offset {
                    // Truncated (or restarted) since the request went out: these records
                    // belong to the old log end.
                    return Outcome::Stale;
                }
                let mut appended = 0;
                if let Some(records) = data.records.as_ref().filter(|r| !r.is_empty()) {
                    if let Err(e) = log.append_replicated(records, now_ms) {
                        tracing::warn!(
                            topic = %self.topic,
                            partition = self.key.partition,
                            leader = self.leader,
                            fetch_offset = requested_offset,
                            error = %e,
                            "cannot append the leader's records; retrying after the backoff"
                        );
                        self.delay(now, backoff);
                        return Outcome::Delayed;
                    }
                    appended = records.len();
                }
                self.follow_leader(data.high_watermark, data.log_start_offset);
                if appended > 0 {
                    self.replica.notify_appended();
                }
                Outcome::Appended(appended)
            }
            Decision::Truncate(diverging) => {
                let to = truncation_offset(log, Some(diverging));
                let high_watermark = log.high_watermark();
                match log.truncate_to(to) {
                    Ok(()) => {
                        tracing::info!(
                            topic = %self.topic,
                            partition = self.key.partition,
                            leader = self.leader,
                            log_end = log.log_end_offset(),
                            "truncated to {to} after diverging epoch {} at leader {}",
                            diverging.leader_epoch,
                            self.leader
                        );
                        if to < high_watermark {
                            tracing::warn!(
                                topic = %self.topic,
                                partition = self.key.partition,
                                high_watermark,
                                "truncated below the high watermark: records this replica saw committed are gone"
                            );
                        }
                        Outcome::Truncated(to)
                    }
                    Err(e) => {
                        tracing::warn!(
                            topic = %self.topic,
                            partition = self.key.partition,
                            offset = to,
                            error = %e,
                            "cannot truncate; retrying after the backoff"
                        );
                        self.delay(now, backoff);
                        Outcome::Delayed
                    }
                }
            }
            Decision::OutOfRange => {
                self.needs_reset = true;
                Outcome::NeedsReset
            }
            Decision::WaitForMetadata(error) => {
                tracing::debug!(
                    topic = %self.topic,
                    partition = self.key.partition,
                    leader = self.leader,
                    leader_epoch = self.leader_epoch,
                    ?error,
                    "the leader refused the fetch; waiting for the metadata to change"
                );
                self.delay(now, backoff);
                Outcome::Delayed
            }
            Decision::Backoff(error) => {
                tracing::debug!(
                    topic = %self.topic,
                    partition = self.key.partition,
                    leader = self.leader,
                    error,
                    "fetch failed at the leader; retrying after the backoff"
                );
                self.delay(now, backoff);
                Outcome::Delayed
            }
        }
    }

    /// The leader's high watermark and log start, applied to the local log.
    fn follow_leader(&self, leader_high_watermark: i64, leader_log_start: i64) {
        let log = &self.replica.log;
        let high_watermark = if leader_high_watermark >= 0 {
            self.replica
                .note_leader_high_watermark(leader_high_watermark);
            log.set_high_watermark(leader_high_watermark.min(log.log_end_offset()))
        } else {
            log.high_watermark()
        };
        let new_start = leader_log_start.min(high_watermark);
        if new_start > log.log_start_offset() {
            if let Err(e) = log.delete_records_before(new_start) {
                tracing::warn!(
                    topic = %self.topic,
                    partition = self.key.partition,
                    offset = new_start,
                    error = %e,
                    "cannot follow the leader's log start"
                );
            }
        }
    }

    /// Applies the leader's log start and end after OFFSET_OUT_OF_RANGE (see
    /// [`offset_reset`]). Blocking (log I/O).
    pub fn reset_offset(
        &mut self,
        leader_start: i64,
        leader_end: i64,
        now: Instant,
        backoff: Duration,
    ) -> Outcome {
        let log = &self.replica.log;
        let my_end = log.log_end_offset();
        let reset = offset_reset(my_end, leader_start, leader_end);
        let result = match reset {
            Reset::Resume => Ok(()),
            Reset::TruncateTo(to) => {
                tracing::warn!(
                    topic = %self.topic,
                    partition = self.key.partition,
                    leader = self.leader,
                    log_end = my_end,
                    high_watermark = log.high_watermark(),
                    "the leader's log ends at {to}, before ours: truncating to it (an unclean leader election?)"
                );
                log.truncate_to(to)
            }
            Reset::StartAt(start) => {
                tracing::info!(
                    topic = %self.topic,
                    partition = self.key.partition,
                    leader = self.leader,
                    log_end = my_end,
                    "the leader's log starts at {start}, after our end: starting the log afresh there"
                );
                log.truncate_fully_and_start_at(start)
            }
        };
        match result {
            Ok(()) => {
                self.needs_reset = false;
                match reset {
                    Reset::Resume => {
                        // The leader refused our offset but its range covers it: its
                        // epochs cannot place ours. Fetching again at once could repeat
                        // that forever; wait the backoff first.
                        self.delay(now, backoff);
                        Outcome::Delayed
                    }
                    Reset::TruncateTo(to) | Reset::StartAt(to) => Outcome::Truncated(to),
                }
            }
            Err(e) => {
                tracing::warn!(
                    topic = %self.topic,
                    partition = self.key.partition,
                    error = %e,
                    "cannot reset the log to the leader's range; retrying after the backoff"
                );
                self.delay(now, backoff);
                Outcome::Delayed
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diverging(epoch: i32, end_offset: i64) -> fetch_response::EpochEndOffset {
        fetch_response::EpochEndOffset::default()
            .with_epoch(epoch)
            .with_end_offset(end_offset)
    }

    #[test]
    fn decisions_follow_kafkas_error_handling() {
        let none = diverging(-1, -1);
        assert_eq!(decide(0, &none), Decision::Append);
        assert_eq!(
            decide(0, &diverging(3, 120)),
            Decision::Truncate(EpochEndOffset {
                leader_epoch: 3,
                end_offset: 120
            })
        );
        assert_eq!(
            decide(ResponseError::OffsetOutOfRange.code(), &none),
            Decision::OutOfRange
        );
        for e in [
            ResponseError::NotLeaderOrFollower,
            ResponseError::FencedLeaderEpoch,
            ResponseError::UnknownLeaderEpoch,
            ResponseError::UnknownTopicId,
        ] {
            assert_eq!(decide(e.code(), &none), Decision::WaitForMetadata(e));
        }
        assert!(matches!(
            decide(ResponseError::KafkaStorageError.code(), &none),
            Decision::Backoff(_)
        ));
        assert!(matches!(decide(-12345, &none), Decision::Backoff(_)));
        // An error wins over a diverging epoch sent with it.
        assert_eq!(
            decide(ResponseError::FencedLeaderEpoch.code(), &diverging(2, 5)),
            Decision::WaitForMetadata(ResponseError::FencedLeaderEpoch)
        );
    }

    #[test]
    fn out_of_range_resets_like_kafka() {
        // Our log is past the leader's end (an unclean election): truncate to its end.
        assert_eq!(offset_reset(100, 0, 80), Reset::TruncateTo(80));
        // Retention at the leader passed our end: start afresh at its log start.
        assert_eq!(offset_reset(100, 150, 300), Reset::StartAt(150));
        // Both moved meanwhile and cover our end again: just fetch.
        assert_eq!(offset_reset(100, 50, 300), Reset::Resume);
        assert_eq!(offset_reset(100, 100, 100), Reset::Resume);
    }

    // ---- the state machine on real logs (a leader log and a follower replica) ----

    use std::collections::BTreeMap;

    use bytes::Bytes;
    use sluice_storage::batch::{BatchBuilder, Compression};
    use sluice_storage::{Flusher, ReadBound};

    use crate::config::BrokerConfig;
    use crate::topics::{Layout, TopicRegistry};

    const BACKOFF: Duration = Duration::from_millis(100);
    /// The batches' timestamp, as "now" for appends.
    const NOW: i64 = 1_700_000_000_000;

    fn registry(dir: &std::path::Path) -> TopicRegistry {
        let props: BTreeMap<String, String> =
            [("log.dirs".to_owned(), dir.to_string_lossy().into_owned())].into();
        let config = BrokerConfig::from_properties(&props).unwrap();
        TopicRegistry::load(
            dir,
            Flusher::start("test").unwrap(),
            config.topic_defaults.clone(),
            config.flush_mode,
            true,
            Layout::Replicas,
        )
        .unwrap()
        .0
    }

    /// A local replica of topic "t" partition 0 in its own data directory.
    fn replica(dir: &std::path::Path) -> (TopicRegistry, Arc<Partition>) {
        let registry = registry(dir);
        registry
            .ensure_replica("t", Uuid::from_u128(9), 0, &BTreeMap::new())
            .unwrap();
        let p = registry.get("t").unwrap().partition(0).unwrap();
        (registry, p)
    }

    fn batch(values: &[&str]) -> Bytes {
        let mut builder = BatchBuilder::new(Compression::None);
        for v in values {
            builder.push(1_700_000_000_000, None, Some(v.as_bytes()), &[]);
        }
        builder.build().unwrap()
    }

    fn followed(replica: Arc<Partition>, leader_epoch: i32) -> FollowedPartition {
        FollowedPartition {
            key: PartitionKey {
                topic_id: Uuid::from_u128(9),
                partition: 0,
            },
            topic: Arc::from("t"),
            leader: 1,
            leader_epoch,
            replica,
            generation: 1,
            delayed_until: None,
            needs_reset: false,
        }
    }

    /// What the leader answers a follower at `offset` with `last_fetched_epoch` (as
    /// Kafka's leader: a diverging epoch when that epoch ends earlier in its log).
    fn leader_answer(leader: &Partition, offset: i64, last_fetched_epoch: i32) -> PartitionData {
        let log = &leader.log;
        let mut data = PartitionData::default()
            .with_high_watermark(log.high_watermark())
            .with_log_start_offset(log.log_start_offset());
        if last_fetched_epoch >= 0 {
            if let Some(end) = log.end_offset_for_epoch(last_fetched_epoch) {
                if end.leader_epoch < last_fetched_epoch || end.end_offset < offset {
                    data.diverging_epoch = fetch_response::EpochEndOffset::default()
                        .with_epoch(end.leader_epoch)
                        .with_end_offset(end.end_offset);
                    return data;
                }
            }
        }
        let read = log
            .read_bounded(offset, 1 << 20, true, ReadBound::LogEnd)
            .unwrap();
        data.with_records(Some(read.records))
    }

    fn all_bytes(p: &Partition) -> Vec<u8> {
        let log = &p.log;
        log.read_bounded(log.log_start_offset(), 1 << 24, true, ReadBound::LogEnd)
            .unwrap()
            .records
            .to_vec()
    }

    /// One fetch round: the follower's request, the leader's answer, its handling.
    fn round(f: &mut FollowedPartition, leader: &Partition) -> Outcome {
        let offset = f.replica.log.log_end_offset();
        let epoch = f.replica.log.latest_epoch().unwrap_or(-1);
        let data = leader_answer(leader, offset, epoch);
        f.handle(&data, offset, Instant::now(), BACKOFF, NOW)
    }

    #[test]
    fn a_follower_behind_the_leaders_high_watermark_reports_its_lag() {
        let (ld, fd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (_lr, leader) = replica(ld.path());
        let (_fr, follower) = replica(fd.path());
        leader.log.append(&batch(&["a", "b"]), 0, NOW).unwrap();
        leader.log.advance_high_watermark(2);
        let mut f = followed(follower.clone(), 0);
        round(&mut f, &leader);
        assert_eq!(follower.replica_lag(), 0);
        // The leader moved on without this copy (other followers carried its high
        // watermark), and the answer it got held none of the new records.
        leader.log.append(&batch(&["c", "d", "e"]), 0, NOW).unwrap();
        leader.log.advance_high_watermark(5);
        let data = leader_answer(&leader, 2, 0).with_records(Some(Bytes::new()));
        assert_eq!(
            f.handle(&data, 2, Instant::now(), BACKOFF, NOW),
            Outcome::Appended(0)
        );
        assert_eq!(follower.log.high_watermark(), 2, "clamped to the local end");
        assert_eq!(
            follower.replica_lag(),
            3,
            "the leader's high watermark minus ours"
        );
        round(&mut f, &leader);
        assert_eq!(follower.replica_lag(), 0, "caught up");
    }

    #[test]
    fn a_follower_copies_the_leader_and_follows_its_high_watermark() {
        let (ld, fd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (_lr, leader) = replica(ld.path());
        let (_fr, follower) = replica(fd.path());
        for _ in 0..3 {
            leader.log.append(&batch(&["a", "b"]), 0, NOW).unwrap();
        }
        leader.log.advance_high_watermark(4);
        let mut f = followed(follower.clone(), 0);
        assert_eq!(
            round(&mut f, &leader),
            Outcome::Appended(all_bytes(&leader).len())
        );
        assert_eq!(follower.log.log_end_offset(), 6);
        assert_eq!(all_bytes(&follower), all_bytes(&leader), "byte for byte");
        assert_eq!(
            follower.log.high_watermark(),
            4,
            "the leader's, below our end"
        );
        assert_eq!(follower.replica_lag(), 0, "at the leader's high watermark");
        assert_eq!(follower.log.latest_epoch(), Some(0));
        // Nothing new: an empty answer still moves the high watermark.
        leader.log.advance_high_watermark(6);
        assert_eq!(round(&mut f, &leader), Outcome::Appended(0));
        assert_eq!(follower.log.high_watermark(), 6);
        // An answer to a fetch from an offset the log has left is ignored.
        let data = leader_answer(&leader, 0, -1);
        assert_eq!(
            f.handle(&data, 0, Instant::now(), BACKOFF, NOW),
            Outcome::Stale
        );
        assert_eq!(follower.log.log_end_offset(), 6);
    }

    /// KIP-101's scenario: the follower has a tail at epoch 0 that the leader (elected at
    /// epoch 1) never had; it truncates to where epoch 0 ends at the leader and copies
    /// epoch 1's records.
    #[test]
    fn a_divergent_tail_is_truncated_and_the_logs_converge() {
        let (ld, fd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (_lr, leader) = replica(ld.path());
        let (_fr, follower) = replica(fd.path());
        let mut f = followed(follower.clone(), 0);
        leader.log.append(&batch(&["a", "b"]), 0, NOW).unwrap();
        assert!(matches!(round(&mut f, &leader), Outcome::Appended(_)));
        // The follower led for a moment at epoch 0 and took a batch nobody copied.
        follower.log.append(&batch(&["lost"]), 0, NOW).unwrap();
        // The leader at epoch 1 took other records.
        leader.log.append(&batch(&["c", "d", "e"]), 1, NOW).unwrap();
        let mut f = followed(follower.clone(), 1);
        assert_eq!(round(&mut f, &leader), Outcome::Truncated(2));
        assert_eq!(follower.log.log_end_offset(), 2);
        assert!(f.is_ready(Instant::now()), "fetching goes on at once");
        assert!(matches!(round(&mut f, &leader), Outcome::Appended(n) if n > 0));
        assert_eq!(all_bytes(&follower), all_bytes(&leader));
        assert_eq!(follower.log.latest_epoch(), Some(1));
        assert_eq!(
            follower.log.end_offset_for_epoch(0).map(|e| e.end_offset),
            Some(2)
        );
    }

    #[test]
    fn errors_pause_the_partition_for_the_backoff() {
        let fd = tempfile::tempdir().unwrap();
        let (_fr, follower) = replica(fd.path());
        let mut f = followed(follower.clone(), 0);
        let now = Instant::now();
        for code in [
            ResponseError::NotLeaderOrFollower,
            ResponseError::FencedLeaderEpoch,
            ResponseError::KafkaStorageError,
        ] {
            f.delayed_until = None;
            let data = PartitionData::default().with_error_code(code.code());
            assert_eq!(f.handle(&data, 0, now, BACKOFF, NOW), Outcome::Delayed);
            assert!(!f.is_ready(now));
            assert!(f.is_ready(now + BACKOFF));
        }
        // Records that do not start at our log end: refused by the log, backed off.
        f.delayed_until = None;
        let mut bad = batch(&["x"]).to_vec();
        bad[..8].copy_from_slice(&5i64.to_be_bytes());
        let data = PartitionData::default().with_records(Some(Bytes::from(bad)));
        assert_eq!(f.handle(&data, 0, now, BACKOFF, NOW), Outcome::Delayed);
        assert_eq!(follower.log.log_end_offset(), 0);
        // OFFSET_OUT_OF_RANGE: the partition waits for the leader's range.
        f.delayed_until = None;
        let data = PartitionData::default().with_error_code(ResponseError::OffsetOutOfRange.code());
        assert_eq!(f.handle(&data, 0, now, BACKOFF, NOW), Outcome::NeedsReset);
        assert!(!f.is_ready(now + BACKOFF));
        // The leader's log ends before ours (an unclean election): truncate to its end.
        follower
            .log
            .append(&batch(&["a", "b", "c"]), 0, NOW)
            .unwrap();
        assert_eq!(f.reset_offset(0, 1, now, BACKOFF), Outcome::Truncated(1));
        assert!(!f.needs_reset);
        assert_eq!(
            follower.log.log_end_offset(),
            0,
            "the whole batch holding offset 1 goes"
        );
    }
}
