//! Partition reassignment (Kafka's AlterPartitionReassignments, KIP-455): moving a
//! partition's replicas to other brokers without stopping its traffic.
//!
//! A reassignment from replicas `current` to `target` runs in three steps, each a
//! [`PartitionChangeRecord`]:
//! 1. **Start**: replicas become `target` followed by the replicas leaving (`current` minus
//!    `target`, in their order), `adding_replicas` = `target` minus `current`,
//!    `removing_replicas` = `current` minus `target`. The ISR and leader stay. The brokers
//!    added create their replica and follow the leader (every broker follows the
//!    partitions whose `replicas` name it); the leader adds them to the ISR through
//!    AlterPartition once they caught up, as any follower.
//! 2. **Completion**, in the same record as the ISR change that brings the last adding
//!    replica into the ISR (or at start, when nothing is added; or at the controller's
//!    periodic pass, when the change that could complete it found no usable leader):
//!    replicas = `target`, ISR = ISR minus the removed, `adding`/`removing` emptied, and a
//!    new leader (the first usable in-sync replica in target order) when the leader is
//!    removed. Dropping replicas bumps the leader epoch, which fences the removed ones;
//!    their brokers delete their replica (`cluster::reconcile` on the broker).
//! 3. Or **cancellation** (a target of null): replicas go back to `current` (the replicas
//!    minus the adding ones), the adding ones leave the ISR, and a leader among the adding
//!    ones (moved there by a preferred election) hands over to the first usable in-sync
//!    original replica.
//!
//! As in Kafka, a new target for a partition being reassigned starts from its replicas
//! as they are (the adding replicas included): those not in the new target are removed.
//! Unlike Kafka, an adding replica the new target keeps is still an adding one (Kafka
//! makes it an ordinary replica at once, though it may hold nothing yet).
//! Completion never leaves the ISR empty: with no in-sync replica left in the target, the
//! reassignment waits. A cancellation that would leave no in-sync replica is refused
//! (Kafka would make the original replicas the ISR: an unclean choice Sluice does not
//! make for an operator).

use std::collections::BTreeSet;

use super::{too_large, Controller, Outcome, Reassignment, MAX_RECORDS_PER_OPERATION};
use crate::error::{MetadataError, Result};
use crate::image::{MetadataImage, PartitionRegistration};
use crate::records::*;

impl Controller {
    /// AlterPartitionReassignments: starts, replaces or cancels the reassignment of each
    /// partition (one result per item, in order). `allow_replication_factor_change: false`
    /// (KIP-860) refuses a target whose length differs from the original replica count.
    /// A partition named twice gets INVALID_REQUEST for its second entry.
    pub fn alter_partition_reassignments(
        &self,
        image: &MetadataImage,
        items: &[Reassignment],
        allow_replication_factor_change: bool,
    ) -> Outcome<()> {
        let mut records = Vec::new();
        let mut seen = BTreeSet::new();
        let results = items
            .iter()
            .map(|item| {
                if !seen.insert((item.topic.as_str(), item.partition)) {
                    return Err(MetadataError::InvalidRequest(format!(
                        "Partition {}-{} is listed more than once.",
                        item.topic, item.partition
                    )));
                }
                if records.len() >= MAX_RECORDS_PER_OPERATION {
                    return Err(too_large());
                }
                if let Some(record) = reassign(image, item, allow_replication_factor_change)? {
                    records.push(record);
                }
                Ok(())
            })
            .collect();
        Outcome::all_or_too_large(records, results)
    }

    /// Completes the reassignments that can complete now but were not completed by the
    /// change that made them ready (no usable leader then). The active controller runs it
    /// with its periodic liveness check; it finds nothing in the common case.
    pub fn complete_reassignments(&self, image: &MetadataImage) -> Vec<MetadataRecord> {
        image
            .all_partitions()
            .filter(|p| p.registration.is_reassigning())
            .filter_map(|p| {
                let done = completion(image, p.registration, &p.registration.isr)?;
                Some(done.into_record(p.topic_id, p.partition, p.registration))
            })
            .take(MAX_RECORDS_PER_OPERATION)
            .collect()
    }
}

/// The record (if any) for one item; `Err` is the item's answer.
fn reassign(
    image: &MetadataImage,
    item: &Reassignment,
    allow_replication_factor_change: bool,
) -> Result<Option<MetadataRecord>> {
    let level = image.metadata_version();
    if level < REASSIGNMENT_METADATA_VERSION {
        return Err(MetadataError::MetadataVersionTooLow {
            needed: REASSIGNMENT_METADATA_VERSION,
            level,
        });
    }
    let topic = image.topic(&item.topic).ok_or_else(|| {
        MetadataError::UnknownTopicOrPartition(format!(
            "Unable to find a topic named {}.",
            item.topic
        ))
    })?;
    let current = topic.partition(item.partition).ok_or_else(|| {
        MetadataError::UnknownTopicOrPartition(format!(
            "Unable to find partition {}:{}.",
            item.topic, item.partition
        ))
    })?;
    let next = match &item.target {
        None => cancel(image, current)?,
        Some(target) => {
            check_target(image, current, target, allow_replication_factor_change)?;
            start(image, current, target)
        }
    };
    Ok(next.map(|n| n.into_record(topic.id, item.partition, current)))
}

/// Kafka's refusals of a target, in its words.
fn check_target(
    image: &MetadataImage,
    current: &PartitionRegistration,
    target: &[BrokerId],
    allow_replication_factor_change: bool,
) -> Result<()> {
    let invalid = |m: String| Err(MetadataError::InvalidReplicaAssignment(m));
    if target.is_empty() {
        return invalid("The manual partition assignment includes an empty replica list.".into());
    }
    let mut seen = BTreeSet::new();
    if let Some(twice) = target.iter().find(|b| !seen.insert(**b)) {
        return invalid(format!(
            "The manual partition assignment includes the broker {twice} more than once."
        ));
    }
    if let Some(unknown) = target.iter().find(|&&b| image.broker(b).is_none()) {
        return invalid(format!(
            "The manual partition assignment includes broker {unknown}, but no such broker is registered."
        ));
    }
    let original = current.original_replicas().len();
    if !allow_replication_factor_change && target.len() != original {
        return Err(MetadataError::InvalidReplicationFactor(format!(
            "The replication factor is changed from {original} to {} but allowReplicationFactorChange is false",
            target.len()
        )));
    }
    Ok(())
}

/// A partition's state after a step, before it becomes a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Next {
    pub(super) replicas: Vec<BrokerId>,
    isr: Vec<BrokerId>,
    leader: BrokerId,
    adding: Vec<BrokerId>,
    removing: Vec<BrokerId>,
}

impl Next {
    /// The change from `current` to `self`: only the fields that differ are set (an
    /// emptied adding/removing list is set, so the record ends the reassignment).
    pub(super) fn into_record(
        self,
        topic_id: uuid::Uuid,
        partition_id: i32,
        current: &PartitionRegistration,
    ) -> MetadataRecord {
        let differs = |new: Vec<BrokerId>, old: &Vec<BrokerId>| (new != *old).then_some(new);
        MetadataRecord::PartitionChange(PartitionChangeRecord {
            topic_id,
            partition_id,
            leader: (self.leader != current.leader).then_some(self.leader),
            isr: differs(self.isr, &current.isr),
            replicas: differs(self.replicas, &current.replicas),
            expected_partition_epoch: Some(current.partition_epoch),
            adding_replicas: differs(self.adding, &current.adding_replicas),
            removing_replicas: differs(self.removing, &current.removing_replicas),
        })
    }
}

/// Step 1 (and 2 at once when nothing needs to catch up); `None`: nothing to change.
fn start(
    image: &MetadataImage,
    current: &PartitionRegistration,
    target: &[BrokerId],
) -> Option<Next> {
    // The reassignment in progress, or the replicas as they are without one.
    if current.target_replicas() == target {
        return None;
    }
    let removing: Vec<BrokerId> = current
        .replicas
        .iter()
        .copied()
        .filter(|r| !target.contains(r))
        .collect();
    // A replica still being added stays an adding one: it may hold nothing yet.
    let adding: Vec<BrokerId> = target
        .iter()
        .copied()
        .filter(|r| !current.replicas.contains(r) || current.adding_replicas.contains(r))
        .collect();
    let started = PartitionRegistration {
        replicas: target.iter().chain(&removing).copied().collect(),
        adding_replicas: adding,
        removing_replicas: removing,
        ..current.clone()
    };
    match completion(image, &started, &started.isr) {
        Some(done) => Some(done),
        None => Some(Next {
            replicas: started.replicas,
            isr: started.isr,
            leader: started.leader,
            adding: started.adding_replicas,
            removing: started.removing_replicas,
        }),
    }
}

/// Step 2: the completed state of a reassigning partition whose ISR would be `isr`, or
/// `None` while an adding replica is out of it, no in-sync replica would remain, or no
/// usable in-sync replica could lead.
pub(super) fn completion(
    image: &MetadataImage,
    p: &PartitionRegistration,
    isr: &[BrokerId],
) -> Option<Next> {
    if !p.is_reassigning() {
        return None;
    }
    let isr: Vec<BrokerId> = isr
        .iter()
        .copied()
        .filter(|r| !p.removing_replicas.contains(r))
        .collect();
    if isr.is_empty() || p.adding_replicas.iter().any(|r| !isr.contains(r)) {
        return None;
    }
    let replicas = p.target_replicas();
    let leader = if isr.contains(&p.leader) {
        p.leader
    } else {
        first_usable_in(image, &replicas, &isr)?
    };
    Some(Next {
        replicas,
        isr,
        leader,
        adding: Vec::new(),
        removing: Vec::new(),
    })
}

/// Step 3; `Err` when no reassignment is in progress or no original replica is in sync.
fn cancel(image: &MetadataImage, current: &PartitionRegistration) -> Result<Option<Next>> {
    if !current.is_reassigning() {
        return Err(MetadataError::NoReassignmentInProgress(
            "No partition reassignment is in progress.".into(),
        ));
    }
    let replicas = current.original_replicas();
    let isr: Vec<BrokerId> = current
        .isr
        .iter()
        .copied()
        .filter(|r| replicas.contains(r))
        .collect();
    if isr.is_empty() {
        return Err(MetadataError::InvalidReplicaAssignment(format!(
            "Cannot cancel the reassignment: none of the original replicas {replicas:?} is in sync (ISR {:?}); \
             start a reassignment to replicas that are in sync instead.",
            current.isr
        )));
    }
    let leader = if isr.contains(&current.leader) {
        current.leader
    } else {
        first_usable_in(image, &replicas, &isr).unwrap_or(NO_LEADER)
    };
    Ok(Some(Next {
        replicas,
        isr,
        leader,
        adding: Vec::new(),
        removing: Vec::new(),
    }))
}

/// The first replica in `order` that is in `isr` and on a usable broker.
fn first_usable_in(
    image: &MetadataImage,
    order: &[BrokerId],
    isr: &[BrokerId],
) -> Option<BrokerId> {
    order
        .iter()
        .copied()
        .find(|r| isr.contains(r) && image.broker(*r).is_some_and(|b| b.is_usable()))
}

#[cfg(test)]
mod tests;
