//! The leader's bookkeeping of its followers as pure rules, without sockets, logs or
//! clocks (every time is a `now_ms` parameter): Kafka's `Partition` leader state and
//! `Replica.updateFetchStateOrThrow`, `isCaughtUp`, `maybeIncrementLeaderHW`,
//! `getOutOfSyncReplicas` and `isFollowerInSync`, with KIP-966's rule that the high
//! watermark does not advance while the ISR is smaller than `min.insync.replicas`.
//!
//! - A follower's log end offset is the offset of its last fetch (it has every record
//!   before it). Unknown (-1) until its first fetch to this leader.
//! - Caught-up time: a fetch at or past the leader's log end at the time of the fetch
//!   marks the follower caught up now; a fetch at or past the leader's log end at its
//!   previous fetch marks it caught up as of that previous fetch.
//! - High watermark candidate: the smallest log end offset of the "maximal" ISR (the
//!   committed ISR plus the members an AlterPartition in flight would add, Kafka's
//!   `maximalIsr`), the leader's own included; none while the committed ISR is smaller
//!   than `min.insync.replicas`.
//! - Shrink: an ISR follower not at the leader's log end whose last caught-up time is
//!   more than `replica.lag.time.max.ms` ago. Expand: a follower outside the ISR whose log
//!   end reached the high watermark and the start offset of this leader's epoch.
//! - One ISR change in flight at a time (Kafka's pending ISR state).

use std::collections::BTreeMap;

use sluice_metadata::image::PartitionRegistration;
use uuid::Uuid;

/// An offset not known yet (Kafka's `UnifiedLog.UnknownOffset`).
pub const UNKNOWN_OFFSET: i64 = -1;

/// What the leader knows of one follower, from its fetches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerState {
    /// The follower's log end offset: the offset of its last fetch.
    pub log_end_offset: i64,
    /// When it last fetched (0: never).
    pub last_fetch_ms: i64,
    /// When it was last caught up with the leader's log end (0: never).
    pub last_caught_up_ms: i64,
    /// The leader's log end offset at the follower's last fetch.
    pub leader_end_at_last_fetch: i64,
    /// The broker epoch the follower sent with its fetches (Fetch v15+), -1 unknown.
    pub broker_epoch: i64,
}

impl FollowerState {
    /// A follower as a new leader first sees it: in the ISR it counts as caught up now,
    /// otherwise never (Kafka's `resetReplicaState` for a new leader).
    fn new(in_isr: bool, now_ms: i64) -> FollowerState {
        FollowerState {
            log_end_offset: UNKNOWN_OFFSET,
            last_fetch_ms: 0,
            last_caught_up_ms: if in_isr { now_ms } else { 0 },
            leader_end_at_last_fetch: UNKNOWN_OFFSET,
            broker_epoch: -1,
        }
    }

    /// Kafka's `isCaughtUp`: at the leader's log end, or caught up recently enough.
    pub fn is_caught_up(&self, leader_end: i64, now_ms: i64, max_lag_ms: i64) -> bool {
        self.log_end_offset == leader_end
            || now_ms.saturating_sub(self.last_caught_up_ms) <= max_lag_ms
    }
}

/// An AlterPartition sent and not answered yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingIsr {
    /// The ISR asked for.
    pub isr: Vec<i32>,
    /// When it was sent.
    pub sent_ms: i64,
    /// Set when the request's outcome is unknown (a timeout, the controller moving): the
    /// change may have been committed, so it stays pending (the high watermark keeps
    /// counting its members) and is sent again from this time on. A resend of a change
    /// already committed is refused (its partition epoch is old) and the image then
    /// settles it.
    pub retry_at_ms: Option<i64>,
}

/// This broker's leadership of one partition at one leader epoch.
#[derive(Debug, Clone)]
pub struct LeaderState {
    /// This broker.
    pub me: i32,
    pub topic_id: Uuid,
    pub leader_epoch: i32,
    /// The partition epoch of the registration the ISR is from (AlterPartition's
    /// compare-and-set version).
    pub partition_epoch: i32,
    pub replicas: Vec<i32>,
    /// The committed ISR (the metadata image's, or the controller's answer).
    pub isr: Vec<i32>,
    pub pending: Option<PendingIsr>,
    /// The leader's log end offset when it became leader: the first offset of its epoch.
    pub epoch_start_offset: i64,
    /// Every replica but this broker.
    pub followers: BTreeMap<i32, FollowerState>,
}

impl LeaderState {
    /// Becoming leader of `registration` with the local log ending at `leader_end`.
    pub fn new(
        me: i32,
        topic_id: Uuid,
        registration: &PartitionRegistration,
        leader_end: i64,
        now_ms: i64,
    ) -> LeaderState {
        let mut state = LeaderState {
            me,
            topic_id,
            leader_epoch: registration.leader_epoch,
            partition_epoch: registration.partition_epoch,
            replicas: Vec::new(),
            isr: Vec::new(),
            pending: None,
            epoch_start_offset: leader_end,
            followers: BTreeMap::new(),
        };
        state.apply_registration(registration, now_ms);
        state
    }

    /// A new registration at the same leader epoch (an ISR change, a reassignment):
    /// takes its replicas, ISR and partition epoch; a newer partition epoch settles the
    /// pending change (committed, or overtaken). Older registrations are ignored.
    pub fn apply_registration(&mut self, registration: &PartitionRegistration, now_ms: i64) {
        if registration.leader_epoch != self.leader_epoch
            || (registration.partition_epoch < self.partition_epoch && !self.replicas.is_empty())
        {
            return;
        }
        if registration.partition_epoch != self.partition_epoch {
            self.pending = None;
        }
        self.partition_epoch = registration.partition_epoch;
        self.replicas = registration.replicas.clone();
        self.isr = registration.isr.clone();
        let me = self.me;
        self.followers
            .retain(|id, _| registration.replicas.contains(id));
        for &id in registration.replicas.iter().filter(|&&id| id != me) {
            self.followers
                .entry(id)
                .or_insert_with(|| FollowerState::new(registration.isr.contains(&id), now_ms));
        }
    }

    /// The committed ISR plus what a pending change adds (Kafka's `maximalIsr`).
    pub fn maximal_isr(&self) -> Vec<i32> {
        let mut isr = self.isr.clone();
        if let Some(pending) = &self.pending {
            for &id in &pending.isr {
                if !isr.contains(&id) {
                    isr.push(id);
                }
            }
        }
        isr
    }

    /// Records a follower's fetch at `fetch_offset` while the leader's log ends at
    /// `leader_end` (Kafka's `updateFetchStateOrThrow`). False if `follower` is no
    /// replica of the partition.
    pub fn record_fetch(
        &mut self,
        follower: i32,
        fetch_offset: i64,
        broker_epoch: i64,
        leader_end: i64,
        now_ms: i64,
    ) -> bool {
        let Some(f) = self.followers.get_mut(&follower) else {
            return false;
        };
        if fetch_offset >= leader_end {
            f.last_caught_up_ms = f.last_caught_up_ms.max(now_ms);
        } else if f.leader_end_at_last_fetch >= 0 && fetch_offset >= f.leader_end_at_last_fetch {
            f.last_caught_up_ms = f.last_caught_up_ms.max(f.last_fetch_ms);
        }
        f.log_end_offset = fetch_offset;
        f.leader_end_at_last_fetch = leader_end;
        f.last_fetch_ms = now_ms;
        if broker_epoch >= 0 {
            f.broker_epoch = broker_epoch;
        }
        true
    }

    /// The high watermark the ISR allows (see the module docs), `None` while the
    /// committed ISR is smaller than `min_insync`.
    pub fn high_watermark(&self, leader_end: i64, min_insync: usize) -> Option<i64> {
        if self.isr.len() < min_insync {
            return None;
        }
        let mut hw = leader_end;
        for id in self.maximal_isr() {
            if id == self.me {
                continue;
            }
            let end = self
                .followers
                .get(&id)
                .map_or(UNKNOWN_OFFSET, |f| f.log_end_offset);
            hw = hw.min(end);
        }
        Some(hw)
    }

    /// ISR followers that fell behind (Kafka's `getOutOfSyncReplicas`).
    pub fn out_of_sync(&self, leader_end: i64, now_ms: i64, max_lag_ms: i64) -> Vec<i32> {
        self.isr
            .iter()
            .copied()
            .filter(|&id| id != self.me)
            .filter(|id| {
                self.followers
                    .get(id)
                    .is_none_or(|f| !f.is_caught_up(leader_end, now_ms, max_lag_ms))
            })
            .collect()
    }

    /// Followers outside the ISR that may join it (Kafka's `isFollowerInSync`): log end
    /// at or past the high watermark and this epoch's start.
    pub fn ready_to_join(&self, high_watermark: i64) -> Vec<i32> {
        self.followers
            .iter()
            .filter(|(id, f)| {
                !self.isr.contains(id)
                    && f.log_end_offset >= high_watermark
                    && f.log_end_offset >= self.epoch_start_offset
            })
            .map(|(&id, _)| id)
            .collect()
    }

    /// The ISR to ask the controller for, if it should change: shrinks first, else
    /// expands by the followers ready to join that `eligible` accepts (a usable broker
    /// whose registration is the one that fetched). None while a change is pending.
    pub fn next_isr(
        &self,
        leader_end: i64,
        high_watermark: i64,
        now_ms: i64,
        max_lag_ms: i64,
        eligible: impl Fn(i32) -> bool,
    ) -> Option<Vec<i32>> {
        if self.pending.is_some() {
            return None;
        }
        let out = self.out_of_sync(leader_end, now_ms, max_lag_ms);
        let mut isr: Vec<i32> = if out.is_empty() {
            let join: Vec<i32> = self
                .ready_to_join(high_watermark)
                .into_iter()
                .filter(|&id| eligible(id))
                .collect();
            if join.is_empty() {
                return None;
            }
            self.isr.iter().copied().chain(join).collect()
        } else {
            self.isr
                .iter()
                .copied()
                .filter(|id| !out.contains(id))
                .collect()
        };
        if !isr.contains(&self.me) {
            isr.insert(0, self.me);
        }
        (isr != self.isr).then_some(isr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAG: i64 = 30_000;

    fn registration(
        replicas: &[i32],
        isr: &[i32],
        epoch: i32,
        partition_epoch: i32,
    ) -> PartitionRegistration {
        PartitionRegistration {
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            leader: 1,
            leader_epoch: epoch,
            partition_epoch,
            adding_replicas: Vec::new(),
            removing_replicas: Vec::new(),
        }
    }

    fn leader(isr: &[i32], leader_end: i64, now_ms: i64) -> LeaderState {
        LeaderState::new(
            1,
            Uuid::nil(),
            &registration(&[1, 2, 3], isr, 5, 7),
            leader_end,
            now_ms,
        )
    }

    #[test]
    fn high_watermark_is_the_smallest_isr_log_end() {
        let mut s = leader(&[1, 2, 3], 10, 1_000);
        // Followers not heard from yet hold the HW at "unknown".
        assert_eq!(s.high_watermark(10, 2), Some(UNKNOWN_OFFSET));
        assert!(s.record_fetch(2, 10, -1, 10, 1_100));
        assert_eq!(s.high_watermark(10, 2), Some(UNKNOWN_OFFSET));
        assert!(s.record_fetch(3, 7, -1, 10, 1_100));
        assert_eq!(s.high_watermark(10, 2), Some(7));
        // The leader's own log end bounds it too.
        assert_eq!(s.high_watermark(6, 2), Some(6));
        // A replica outside the ISR does not hold it back.
        let mut s = leader(&[1, 2], 10, 1_000);
        s.record_fetch(2, 9, -1, 10, 1_100);
        s.record_fetch(3, 0, -1, 10, 1_100);
        assert_eq!(s.high_watermark(10, 1), Some(9));
        // Not a replica.
        assert!(!s.record_fetch(4, 10, -1, 10, 1_100));
    }

    #[test]
    fn no_high_watermark_below_min_insync() {
        let mut s = leader(&[1, 2], 10, 1_000);
        s.record_fetch(2, 10, -1, 10, 1_100);
        assert_eq!(s.high_watermark(10, 2), Some(10));
        assert_eq!(s.high_watermark(10, 3), None);
        let alone = leader(&[1], 10, 1_000);
        assert_eq!(alone.high_watermark(10, 1), Some(10));
        assert_eq!(alone.high_watermark(10, 2), None);
    }

    #[test]
    fn pending_expansion_counts_in_the_high_watermark() {
        let mut s = leader(&[1, 2], 10, 1_000);
        s.record_fetch(2, 10, -1, 10, 1_100);
        s.record_fetch(3, 4, -1, 10, 1_100);
        assert_eq!(s.high_watermark(10, 1), Some(10));
        s.pending = Some(PendingIsr {
            isr: vec![1, 2, 3],
            sent_ms: 1_100,
            retry_at_ms: None,
        });
        assert_eq!(s.maximal_isr(), vec![1, 2, 3]);
        assert_eq!(s.high_watermark(10, 1), Some(4));
        // A pending shrink keeps the removed member until it is committed.
        let mut s = leader(&[1, 2, 3], 10, 1_000);
        s.record_fetch(2, 10, -1, 10, 1_100);
        s.record_fetch(3, 3, -1, 10, 1_100);
        s.pending = Some(PendingIsr {
            isr: vec![1, 2],
            sent_ms: 1_100,
            retry_at_ms: None,
        });
        assert_eq!(s.high_watermark(10, 2), Some(3));
        // The committed registration settles the pending change.
        s.apply_registration(&registration(&[1, 2, 3], &[1, 2], 5, 8), 1_200);
        assert!(s.pending.is_none());
        assert_eq!(s.isr, vec![1, 2]);
        assert_eq!(s.high_watermark(10, 2), Some(10));
        // An older registration changes nothing.
        s.apply_registration(&registration(&[1, 2, 3], &[1, 2, 3], 5, 7), 1_300);
        assert_eq!(s.isr, vec![1, 2]);
    }

    #[test]
    fn caught_up_time_follows_kafkas_rule() {
        let mut s = leader(&[1, 2], 10, 1_000);
        // Behind the leader's end at the first fetch: not caught up (still the initial
        // ISR time).
        s.record_fetch(2, 5, -1, 10, 2_000);
        assert_eq!(s.followers[&2].last_caught_up_ms, 1_000);
        // Reaches the leader's end as of the previous fetch (10), though the leader
        // has moved on to 15: caught up as of that previous fetch.
        s.record_fetch(2, 10, -1, 15, 3_000);
        assert_eq!(s.followers[&2].last_caught_up_ms, 2_000);
        // At the leader's end now: caught up now.
        s.record_fetch(2, 15, -1, 15, 4_000);
        assert_eq!(s.followers[&2].last_caught_up_ms, 4_000);
        // Falling behind never moves it back.
        s.record_fetch(2, 12, -1, 20, 5_000);
        assert_eq!(s.followers[&2].last_caught_up_ms, 4_000);
        assert_eq!(s.followers[&2].log_end_offset, 12);
        // A follower outside the ISR at a new leader was never caught up.
        let s = leader(&[1], 10, 1_000);
        assert_eq!(s.followers[&2].last_caught_up_ms, 0);
    }

    #[test]
    fn shrink_after_the_lag_time() {
        let mut s = leader(&[1, 2, 3], 10, 1_000);
        s.record_fetch(2, 10, -1, 10, 1_000);
        s.record_fetch(3, 4, -1, 10, 1_000);
        let eligible = |_| true;
        // Within the lag time nothing changes.
        assert_eq!(s.next_isr(10, 4, 1_000 + LAG, LAG, eligible), None);
        // Past it, the follower behind leaves; the one at the log end stays although it
        // has not fetched since.
        assert_eq!(s.out_of_sync(10, 1_001 + LAG, LAG), vec![3]);
        assert_eq!(
            s.next_isr(10, 4, 1_001 + LAG, LAG, eligible),
            Some(vec![1, 2])
        );
        // Once the leader appended, follower 2 is behind too and lags as well.
        assert_eq!(s.out_of_sync(12, 1_001 + LAG, LAG), vec![2, 3]);
        // One change at a time.
        s.pending = Some(PendingIsr {
            isr: vec![1, 2],
            sent_ms: 1_001 + LAG,
            retry_at_ms: None,
        });
        assert_eq!(s.next_isr(10, 4, 2_000 + LAG, LAG, eligible), None);
    }

    #[test]
    fn expand_when_the_follower_reaches_the_high_watermark() {
        // Leader since offset 8.
        let mut s = leader(&[1, 2], 8, 1_000);
        s.record_fetch(2, 12, -1, 12, 1_000);
        s.record_fetch(3, 9, -1, 12, 1_000);
        let hw = s.high_watermark(12, 1).unwrap();
        assert_eq!(hw, 12);
        // Behind the HW: stays out.
        assert_eq!(s.next_isr(12, hw, 1_000, LAG, |_| true), None);
        s.record_fetch(3, 12, 77, 12, 1_100);
        assert_eq!(s.followers[&3].broker_epoch, 77);
        assert_eq!(
            s.next_isr(12, hw, 1_100, LAG, |_| true),
            Some(vec![1, 2, 3])
        );
        // Not eligible (fenced, or another registration): stays out.
        assert_eq!(s.next_isr(12, hw, 1_100, LAG, |id| id != 3), None);
        // The HW alone is not enough: the follower must also reach the epoch's start.
        let mut s = leader(&[1], 20, 1_000);
        s.record_fetch(2, 15, -1, 20, 1_000);
        assert_eq!(s.ready_to_join(15), Vec::<i32>::new());
        s.record_fetch(2, 20, -1, 20, 1_100);
        assert_eq!(s.ready_to_join(15), vec![2]);
    }
}
