//! Who leads: the records that move partition leadership and ISR membership when a
//! broker goes away (fenced, controlled shutdown, new incarnation, unregistered) or comes
//! back (unfenced). Kafka's `ReplicationControlManager.generateLeaderAndIsrUpdates`, in
//! short:
//! - the broker leaves every ISR, unless it is the last member (the ISR never becomes
//!   empty, so the last replica known in sync stays known);
//! - a partition it led gets the first replica, in replica order, that is in the
//!   remaining ISR and usable (unfenced, not shutting down), or no leader (offline);
//! - a broker being unfenced takes the leaderless partitions whose ISR holds it.
//!
//! A record's `leader` is set only when the leader changes (apply would not bump the
//! leader epoch for the current leader anyway).

use std::collections::BTreeSet;

use crate::image::{LogPosition, MetadataImage, PartitionRef};
use crate::records::*;

pub(super) fn change(
    p: &PartitionRef<'_>,
    leader: Option<BrokerId>,
    isr: Option<Vec<BrokerId>>,
) -> MetadataRecord {
    MetadataRecord::PartitionChange(PartitionChangeRecord {
        topic_id: p.topic_id,
        partition_id: p.partition,
        leader,
        isr,
        replicas: None,
        expected_partition_epoch: Some(p.registration.partition_epoch),
    })
}

/// Records that take `broker` out of every ISR (keeping it if it is the last member) and
/// move its leaderships to the first usable ISR member in replica order, or to no leader.
/// `unusable` are brokers that may not lead (besides fenced / shutting-down ones).
fn leave_partitions_except(
    image: &MetadataImage,
    broker: BrokerId,
    unusable: &BTreeSet<BrokerId>,
) -> Vec<MetadataRecord> {
    let usable =
        |b: BrokerId| !unusable.contains(&b) && image.broker(b).is_some_and(|b| b.is_usable());
    image
        .all_partitions()
        .filter_map(|p| {
            let reg = p.registration;
            if !reg.isr.contains(&broker) && reg.leader != broker {
                return None;
            }
            let mut isr: Vec<BrokerId> = reg.isr.iter().copied().filter(|&r| r != broker).collect();
            if isr.is_empty() {
                isr = reg.isr.clone();
            }
            let leader = if reg.leader == broker {
                let next = reg
                    .replicas
                    .iter()
                    .copied()
                    .find(|&r| r != broker && isr.contains(&r) && usable(r))
                    .unwrap_or(NO_LEADER);
                Some(next)
            } else {
                None
            };
            let isr = (isr != reg.isr).then_some(isr);
            if leader.is_none() && isr.is_none() {
                return None;
            }
            Some(change(&p, leader, isr))
        })
        .collect()
}

pub(super) fn leave_partitions(image: &MetadataImage, broker: BrokerId) -> Vec<MetadataRecord> {
    leave_partitions_except(image, broker, &BTreeSet::from([broker]))
}

/// Fences several brokers in one batch. Each broker's records are computed on the image
/// with the previous brokers' records applied (a scratch copy), so two changes of one
/// partition build on each other; a leadership never moves to a broker the batch fences.
pub(super) fn fence_brokers(image: &MetadataImage, brokers: &[BrokerId]) -> Vec<MetadataRecord> {
    let fenced: BTreeSet<BrokerId> = brokers.iter().copied().collect();
    let mut records = Vec::new();
    let mut scratch: Option<MetadataImage> = None;
    for (i, &id) in brokers.iter().enumerate() {
        let view = scratch.as_ref().unwrap_or(image);
        let Some(broker) = view.broker(id) else {
            continue;
        };
        let mut step = leave_partitions_except(view, id, &fenced);
        step.push(MetadataRecord::BrokerRegistrationChange(
            BrokerRegistrationChangeRecord {
                broker_id: id,
                broker_epoch: broker.epoch,
                fenced: Some(true),
                in_controlled_shutdown: None,
            },
        ));
        if i + 1 < brokers.len() {
            let mut next = view.clone();
            let position = LogPosition {
                offset: next.metadata_offset() + 1,
                epoch: next.last_applied().map_or(0, |p| p.epoch),
            };
            // The records were computed from `view`, so they apply; were they not, the
            // next broker's records are computed on the older view, which is still safe.
            if next.apply(position, &step).is_ok() {
                scratch = Some(next);
            }
        }
        records.extend(step);
    }
    records
}

/// Records that give the leaderless partitions whose ISR holds `broker` to it (it is
/// being unfenced).
pub(super) fn take_offline_partitions(
    image: &MetadataImage,
    broker: BrokerId,
) -> Vec<MetadataRecord> {
    image
        .all_partitions()
        .filter(|p| !p.registration.has_leader() && p.registration.isr.contains(&broker))
        .map(|p| change(&p, Some(broker), None))
        .collect()
}
