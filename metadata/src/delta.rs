//! What changed for one broker between two images (Kafka's `TopicsDelta.localChanges`).
//!
//! A broker applies committed metadata in two steps: the image moves forward, then the
//! broker makes its local state match: create the logs of replicas it was given, delete
//! the logs of replicas it lost (topic deleted or replica moved), and become leader or
//! follower where leadership changed. [`LocalChanges::between`] computes that list from
//! the image before and after, so the broker never has to interpret records itself, and a
//! broker that restarts from a snapshot gets the same answer as one that followed every
//! batch (compare the empty image with the loaded one).

use uuid::Uuid;

use crate::image::{MetadataImage, PartitionRef, PartitionRegistration};
use crate::records::BrokerId;

/// A partition as a broker's local state knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalPartition {
    /// The topic id (also written in the partition directory's `partition.metadata`).
    pub topic_id: Uuid,
    /// The topic name (the directory is `<name>-<partition>`).
    pub topic_name: String,
    /// The partition index.
    pub partition: i32,
    /// Its state in the newer image (for deletions: in the older one).
    pub registration: PartitionRegistration,
}

impl From<&PartitionRef<'_>> for LocalPartition {
    fn from(p: &PartitionRef<'_>) -> Self {
        LocalPartition {
            topic_id: p.topic_id,
            topic_name: p.topic_name.to_owned(),
            partition: p.partition,
            registration: p.registration.clone(),
        }
    }
}

/// What a broker must do after moving from one image to a newer one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalChanges {
    /// Replicas the broker holds now and did not before: create their logs.
    pub created: Vec<LocalPartition>,
    /// Replicas the broker held and does not now: delete their logs (their topic is gone,
    /// or the replica moved). A topic deleted and recreated under the same name shows up
    /// here with the old id and in `created` with the new one.
    pub deleted: Vec<LocalPartition>,
    /// Partitions the broker leads in a new leader epoch (became leader, or leads again
    /// after a change).
    pub leaders: Vec<LocalPartition>,
    /// Partitions whose replica the broker holds and does not lead, whose leader or leader
    /// epoch changed (or that are new): follow the new leader, or wait when it is none.
    pub followers: Vec<LocalPartition>,
}

impl LocalChanges {
    /// The changes for `broker` from `old` to `new`, each list in (topic name,
    /// partition) order.
    pub fn between(old: &MetadataImage, new: &MetadataImage, broker: BrokerId) -> Self {
        let mut changes = LocalChanges::default();
        for p in new.partitions_on_broker(broker) {
            let before = old
                .partition(p.topic_id, p.partition)
                .filter(|o| o.replicas.contains(&broker));
            let entry = LocalPartition::from(&p);
            let leadership_changed = before.is_none_or(|o| {
                o.leader != p.registration.leader || o.leader_epoch != p.registration.leader_epoch
            });
            if before.is_none() {
                changes.created.push(entry.clone());
            }
            if leadership_changed {
                if p.registration.leader == broker {
                    changes.leaders.push(entry);
                } else {
                    changes.followers.push(entry);
                }
            }
        }
        for p in old.partitions_on_broker(broker) {
            let still_here = new
                .partition(p.topic_id, p.partition)
                .is_some_and(|n| n.replicas.contains(&broker));
            if !still_here {
                changes.deleted.push(LocalPartition::from(&p));
            }
        }
        changes
    }

    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.created.is_empty()
            && self.deleted.is_empty()
            && self.leaders.is_empty()
            && self.followers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::TopicRef;
    use crate::testkit::Harness;

    fn names(list: &[LocalPartition]) -> Vec<(String, i32)> {
        list.iter()
            .map(|p| (p.topic_name.clone(), p.partition))
            .collect()
    }

    #[test]
    fn a_broker_learns_what_to_create_delete_lead_and_follow() {
        let mut h = Harness::new();
        for id in 1..=2 {
            h.add_broker(id, None);
        }
        let empty = h.image.clone();
        h.create_topic("t", 4, 2);
        let created = h.image.clone();
        let c = LocalChanges::between(&empty, &created, 1);
        assert_eq!(
            names(&c.created).len(),
            4,
            "RF2 on 2 brokers: every replica"
        );
        assert!(c.deleted.is_empty());
        assert_eq!(c.leaders.len(), 2);
        assert_eq!(c.followers.len(), 2);
        assert!(c.leaders.iter().all(|p| p.registration.leader == 1));
        assert!(LocalChanges::between(&created, &created, 1).is_empty());

        // Broker 2 is fenced: broker 1 leads everything; only the moved ones are listed.
        h.expire(&[2]);
        let fenced = h.image.clone();
        let c = LocalChanges::between(&created, &fenced, 1);
        assert!(c.created.is_empty() && c.deleted.is_empty() && c.followers.is_empty());
        assert_eq!(c.leaders.len(), 2);
        assert!(c.leaders.iter().all(|p| p.registration.leader_epoch == 1));
        let c2 = LocalChanges::between(&created, &fenced, 2);
        assert!(c2.leaders.is_empty() && c2.followers.len() == 2);

        // Delete and recreate under the same name: old id deleted, new id created.
        let old_id = fenced.topic("t").unwrap().id;
        let records = h
            .controller
            .delete_topics(&h.image, &[TopicRef::Name("t".into())])
            .records;
        h.commit(records).unwrap();
        h.create_topic("t", 1, 1);
        let c = LocalChanges::between(&fenced, &h.image, 1);
        assert_eq!(c.deleted.len(), 4);
        assert!(c.deleted.iter().all(|p| p.topic_id == old_id));
        assert_eq!(names(&c.created), vec![("t".to_owned(), 0)]);
        assert_ne!(c.created[0].topic_id, old_id);
        // A restart from a snapshot: the same local state as following every batch.
        let from_scratch = LocalChanges::between(&MetadataImage::new(), &h.image, 1);
        assert_eq!(from_scratch.created, c.created);
    }
}
