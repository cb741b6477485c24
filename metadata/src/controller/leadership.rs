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
//! A broker whose storage cannot be written (`storage_unavailable`, a full disk) goes
//! away only where someone can take over ([`leave_partitions_for_storage`]): it leaves
//! the ISRs that have other members and hands each partition it leads to a usable ISR
//! member, but a partition with no such member keeps it as leader (readable, its writes
//! refused) rather than going offline. Kafka halts a broker whose only log dir failed,
//! which takes those partitions offline too; Sluice keeps them readable and resumes by
//! itself once space is freed.
//!
//! Unclean leader election (`unclean.leader.election.enable`, off by default): when a
//! partition's leader goes away and no ISR member is usable, the first usable replica in
//! replica order leads with ISR = [it]; when a broker is unfenced and a leaderless
//! partition it holds has no usable ISR member, it leads with ISR = [it]. Either loses
//! the records acknowledged by the old ISR that the new leader lacks, so each is logged
//! as a warning. Off, such a partition stays offline until an ISR member returns. The
//! setting is the topic's override in the image, else the cluster-wide default in the
//! image (`ConfigResource::ClusterDefault`), else the controller's own default
//! ([`ControllerConfig::unclean_leader_election_enable`]).
//!
//! A replica a reassignment is adding is never elected uncleanly: it may hold nothing yet.
//!
//! A record's `leader` is set only when the leader changes (apply would not bump the
//! leader epoch for the current leader anyway).

use std::collections::BTreeSet;

use tracing::warn;

use super::ControllerConfig;
use crate::image::{LogPosition, MetadataImage, PartitionRef};
use crate::records::*;

/// The topic config (and broker property) that allows unclean leader election.
pub const UNCLEAN_LEADER_ELECTION_ENABLE: &str = "unclean.leader.election.enable";

/// Whether unclean leader election is enabled for `topic`: its override, else the
/// cluster-wide default in the image, else `config`'s. A value that is not a boolean
/// counts as unset (the broker validates values before they are committed).
pub fn unclean_election_enabled(
    image: &MetadataImage,
    config: &ControllerConfig,
    topic: &str,
) -> bool {
    let parse = |v: &str| match v.trim().to_ascii_lowercase().as_str() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    };
    image
        .config(
            &ConfigResource::Topic(topic.to_owned()),
            UNCLEAN_LEADER_ELECTION_ENABLE,
        )
        .and_then(parse)
        .or_else(|| {
            image
                .config(
                    &ConfigResource::ClusterDefault,
                    UNCLEAN_LEADER_ELECTION_ENABLE,
                )
                .and_then(parse)
        })
        .unwrap_or(config.unclean_leader_election_enable)
}

fn warn_unclean(p: &PartitionRef<'_>, leader: BrokerId) {
    warn!(
        topic = p.topic_name,
        partition = p.partition,
        old_isr = ?p.registration.isr,
        old_leader_epoch = p.registration.leader_epoch,
        new_leader = leader,
        "unclean leader election: no in-sync replica is available, so an out-of-sync replica \
         leads; records acknowledged by the old ISR that it lacks may be lost"
    );
}

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
        adding_replicas: None,
        removing_replicas: None,
    })
}

/// Records that take `broker` out of every ISR (keeping it if it is the last member) and
/// move its leaderships to the first usable ISR member in replica order, or to no leader.
/// `unusable` are brokers that may not lead (besides fenced / shutting-down ones).
fn leave_partitions_except(
    image: &MetadataImage,
    config: &ControllerConfig,
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
                let clean = reg
                    .replicas
                    .iter()
                    .copied()
                    .find(|&r| r != broker && isr.contains(&r) && usable(r));
                let unclean = || {
                    if !unclean_election_enabled(image, config, p.topic_name) {
                        return None;
                    }
                    reg.replicas
                        .iter()
                        .copied()
                        .find(|&r| r != broker && usable(r) && !reg.adding_replicas.contains(&r))
                };
                match clean {
                    Some(next) => Some(next),
                    None => match unclean() {
                        Some(next) => {
                            warn_unclean(&p, next);
                            isr = vec![next];
                            Some(next)
                        }
                        None => Some(NO_LEADER),
                    },
                }
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

pub(super) fn leave_partitions(
    image: &MetadataImage,
    config: &ControllerConfig,
    broker: BrokerId,
) -> Vec<MetadataRecord> {
    leave_partitions_except(image, config, broker, &BTreeSet::from([broker]))
}

/// Records for a broker that reports its storage unavailable (see the module docs): its
/// leaderships move to the first usable ISR member in replica order, and it leaves every
/// ISR that has another member; partitions where no one else can take over are left as
/// they are.
pub(super) fn leave_partitions_for_storage(
    image: &MetadataImage,
    broker: BrokerId,
) -> Vec<MetadataRecord> {
    let usable = |b: BrokerId| image.broker(b).is_some_and(|b| b.is_usable());
    image
        .all_partitions()
        .filter_map(|p| {
            let reg = p.registration;
            if !reg.isr.contains(&broker) && reg.leader != broker {
                return None;
            }
            let others: Vec<BrokerId> = reg.isr.iter().copied().filter(|&r| r != broker).collect();
            if reg.leader == broker {
                let next = reg
                    .replicas
                    .iter()
                    .copied()
                    .find(|&r| r != broker && others.contains(&r) && usable(r))?;
                Some(change(&p, Some(next), Some(others)))
            } else if others.is_empty() {
                None
            } else {
                Some(change(&p, None, Some(others)))
            }
        })
        .collect()
}

/// Fences several brokers in one batch. Each broker's records are computed on the image
/// with the previous brokers' records applied (a scratch copy), so two changes of one
/// partition build on each other; a leadership never moves to a broker the batch fences.
pub(super) fn fence_brokers(
    image: &MetadataImage,
    config: &ControllerConfig,
    brokers: &[BrokerId],
) -> Vec<MetadataRecord> {
    let fenced: BTreeSet<BrokerId> = brokers.iter().copied().collect();
    let mut records = Vec::new();
    let mut scratch: Option<MetadataImage> = None;
    for (i, &id) in brokers.iter().enumerate() {
        let view = scratch.as_ref().unwrap_or(image);
        let Some(broker) = view.broker(id) else {
            continue;
        };
        let mut step = leave_partitions_except(view, config, id, &fenced);
        step.push(MetadataRecord::BrokerRegistrationChange(
            BrokerRegistrationChangeRecord {
                broker_id: id,
                broker_epoch: broker.epoch,
                fenced: Some(true),
                in_controlled_shutdown: None,
                storage_unavailable: None,
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
/// being unfenced); with unclean election enabled, also those it holds a replica of whose
/// ISR has no usable member, with ISR = [it].
pub(super) fn take_offline_partitions(
    image: &MetadataImage,
    config: &ControllerConfig,
    broker: BrokerId,
) -> Vec<MetadataRecord> {
    let usable = |b: BrokerId| image.broker(b).is_some_and(|b| b.is_usable());
    image
        .all_partitions()
        .filter(|p| !p.registration.has_leader())
        .filter_map(|p| {
            let reg = p.registration;
            if reg.isr.contains(&broker) {
                return Some(change(&p, Some(broker), None));
            }
            let unclean = reg.replicas.contains(&broker)
                && !reg.adding_replicas.contains(&broker)
                && !reg.isr.iter().any(|&r| usable(r))
                && unclean_election_enabled(image, config, p.topic_name);
            unclean.then(|| {
                warn_unclean(&p, broker);
                change(&p, Some(broker), Some(vec![broker]))
            })
        })
        .collect()
}

/// Records that give a leader to leaderless partitions that can have one now: the first
/// usable ISR member in replica order (a clean election; normally the unfencing of that
/// member already did it), else, where unclean election is enabled, the first usable
/// replica with ISR = [it]. For a partition that went offline while unclean election was
/// off and has since been enabled for it. At most `limit` records.
pub(super) fn elect_offline_leaders(
    image: &MetadataImage,
    config: &ControllerConfig,
    limit: usize,
) -> Vec<MetadataRecord> {
    let usable = |b: BrokerId| image.broker(b).is_some_and(|b| b.is_usable());
    image
        .all_partitions()
        .filter(|p| !p.registration.has_leader())
        .filter_map(|p| {
            let reg = p.registration;
            let clean = reg
                .replicas
                .iter()
                .copied()
                .find(|&r| reg.isr.contains(&r) && usable(r));
            if let Some(leader) = clean {
                return Some(change(&p, Some(leader), None));
            }
            let leader = reg
                .replicas
                .iter()
                .copied()
                .find(|&r| usable(r) && !reg.adding_replicas.contains(&r))?;
            if !unclean_election_enabled(image, config, p.topic_name) {
                return None;
            }
            warn_unclean(&p, leader);
            Some(change(&p, Some(leader), Some(vec![leader])))
        })
        .take(limit)
        .collect()
}
