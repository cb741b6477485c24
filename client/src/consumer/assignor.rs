//! Partition assignment for consumer groups, computed by the group leader on the client
//! side, as Kafka's classic group protocol does.
//!
//! - [`Assignor::Range`] (`"range"`): per topic, members subscribed to it sorted by
//!   member id; each gets `partitions / members` consecutive partitions and the first
//!   `partitions % members` one more. Kafka's `RangeAssignor`.
//! - [`Assignor::CooperativeSticky`] (`"cooperative-sticky"`): balanced (counts differ by
//!   at most one among members with the same subscription), keeps every partition with
//!   its previous owner where balance allows, and never moves a partition directly from
//!   one member to another in one rebalance: a partition that must move is left
//!   unassigned this round, its old owner revokes it, and the follow-up rebalance gives
//!   it to the new owner (KIP-429).
//!
//! Also here: the `consumer` protocol's embedded formats, [`Subscription`] and the
//! assignment, encoded with kafka-protocol's `ConsumerProtocolSubscription` /
//! `ConsumerProtocolAssignment` behind the 2-byte version prefix.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTopic;
use kafka_protocol::messages::consumer_protocol_subscription::TopicPartition as OwnedTopic;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::types::TopicPartition;

/// The assignment strategies this client implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignor {
    Range,
    CooperativeSticky,
}

impl Assignor {
    /// The protocol name used in JoinGroup (the same as Kafka's).
    pub fn name(self) -> &'static str {
        match self {
            Assignor::Range => "range",
            Assignor::CooperativeSticky => "cooperative-sticky",
        }
    }

    pub fn from_name(name: &str) -> Option<Assignor> {
        match name {
            "range" => Some(Assignor::Range),
            "cooperative-sticky" => Some(Assignor::CooperativeSticky),
            _ => None,
        }
    }

    /// Whether members keep their partitions during a rebalance (KIP-429) instead of
    /// revoking everything before rejoining.
    pub fn is_cooperative(self) -> bool {
        matches!(self, Assignor::CooperativeSticky)
    }

    /// Computes the assignment. `partition_counts` has every subscribed topic that
    /// exists; topics missing from it are skipped.
    pub fn assign(
        self,
        members: &[Subscription],
        partition_counts: &HashMap<String, i32>,
    ) -> BTreeMap<String, Vec<TopicPartition>> {
        match self {
            Assignor::Range => range(members, partition_counts),
            Assignor::CooperativeSticky => cooperative_sticky(members, partition_counts),
        }
    }
}

/// One member's subscription, as it sent it in JoinGroup.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Subscription {
    pub member_id: String,
    pub topics: Vec<String>,
    /// Partitions the member owns now (cooperative protocol).
    pub owned: Vec<TopicPartition>,
    /// The generation in which it owned them (-1: unknown).
    pub generation: i32,
}

/// Version of the subscription format written (3 adds the rack; 2 the generation).
const SUBSCRIPTION_VERSION: i16 = 3;
const ASSIGNMENT_VERSION: i16 = 3;

impl Subscription {
    /// The JoinGroup protocol metadata: version prefix + ConsumerProtocolSubscription.
    pub fn encode(&self) -> Bytes {
        let mut owned: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for tp in &self.owned {
            owned
                .entry(tp.topic.as_str())
                .or_default()
                .push(tp.partition);
        }
        let message = ConsumerProtocolSubscription::default()
            .with_topics(
                self.topics
                    .iter()
                    .map(|t| StrBytes::from_string(t.clone()))
                    .collect(),
            )
            .with_owned_partitions(
                owned
                    .into_iter()
                    .map(|(topic, partitions)| {
                        OwnedTopic::default()
                            .with_topic(TopicName(StrBytes::from_string(topic.to_owned())))
                            .with_partitions(partitions)
                    })
                    .collect(),
            )
            .with_generation_id(self.generation);
        let mut out = BytesMut::new();
        out.put_i16(SUBSCRIPTION_VERSION);
        // Encoding a well-formed message into memory cannot fail; an empty subscription
        // (which the coordinator rejects) would be the fallback.
        if message.encode(&mut out, SUBSCRIPTION_VERSION).is_err() {
            out.truncate(2);
        }
        out.freeze()
    }

    /// Decodes another member's metadata. Newer versions than we know are read as our
    /// newest (the format only ever appends fields, as Kafka's own decoder assumes).
    pub fn decode(member_id: &str, mut bytes: Bytes) -> Option<Subscription> {
        if bytes.len() < 2 {
            return None;
        }
        let version = bytes.get_i16().clamp(0, SUBSCRIPTION_VERSION);
        let message = std::panic::catch_unwind(move || {
            ConsumerProtocolSubscription::decode(&mut bytes, version).ok()
        })
        .ok()
        .flatten()?;
        Some(Subscription {
            member_id: member_id.to_owned(),
            topics: message
                .topics
                .iter()
                .map(|t| t.as_str().to_owned())
                .collect(),
            owned: message
                .owned_partitions
                .iter()
                .flat_map(|t| {
                    t.partitions
                        .iter()
                        .map(|&p| TopicPartition::new(t.topic.0.as_str(), p))
                })
                .collect(),
            generation: if version >= 2 {
                message.generation_id
            } else {
                -1
            },
        })
    }
}

/// Encodes an assignment for SyncGroup.
pub fn encode_assignment(partitions: &[TopicPartition]) -> Bytes {
    let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for tp in partitions {
        topics
            .entry(tp.topic.as_str())
            .or_default()
            .push(tp.partition);
    }
    let message = ConsumerProtocolAssignment::default().with_assigned_partitions(
        topics
            .into_iter()
            .map(|(topic, partitions)| {
                AssignedTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(topic.to_owned())))
                    .with_partitions(partitions)
            })
            .collect(),
    );
    let mut out = BytesMut::new();
    out.put_i16(ASSIGNMENT_VERSION);
    if message.encode(&mut out, ASSIGNMENT_VERSION).is_err() {
        out.truncate(2);
    }
    out.freeze()
}

/// Decodes the assignment SyncGroup returned. Empty bytes mean no partitions.
pub fn decode_assignment(mut bytes: Bytes) -> Option<Vec<TopicPartition>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    if bytes.len() < 2 {
        return None;
    }
    let version = bytes.get_i16().clamp(0, ASSIGNMENT_VERSION);
    let message = std::panic::catch_unwind(move || {
        ConsumerProtocolAssignment::decode(&mut bytes, version).ok()
    })
    .ok()
    .flatten()?;
    let mut out: Vec<TopicPartition> = message
        .assigned_partitions
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|&p| TopicPartition::new(t.topic.0.as_str(), p))
        })
        .collect();
    out.sort();
    out.dedup();
    Some(out)
}

fn range(
    members: &[Subscription],
    partition_counts: &HashMap<String, i32>,
) -> BTreeMap<String, Vec<TopicPartition>> {
    let mut out: BTreeMap<String, Vec<TopicPartition>> = members
        .iter()
        .map(|m| (m.member_id.clone(), Vec::new()))
        .collect();
    let mut subscribers: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for member in members {
        for topic in &member.topics {
            subscribers
                .entry(topic.as_str())
                .or_default()
                .push(&member.member_id);
        }
    }
    for (topic, mut consumers) in subscribers {
        let Some(&count) = partition_counts.get(topic) else {
            continue;
        };
        consumers.sort_unstable();
        consumers.dedup();
        let n = consumers.len() as i32;
        let per = count / n;
        let extra = count % n;
        for (i, member) in consumers.iter().enumerate() {
            let i = i as i32;
            let start = per * i + i.min(extra);
            let len = per + i32::from(i < extra);
            if let Some(list) = out.get_mut(*member) {
                list.extend((start..start + len).map(|p| TopicPartition::new(topic, p)));
            }
        }
    }
    out
}

fn cooperative_sticky(
    members: &[Subscription],
    partition_counts: &HashMap<String, i32>,
) -> BTreeMap<String, Vec<TopicPartition>> {
    // Every partition of every subscribed topic, and who may have it.
    let subscribed: HashMap<&str, BTreeSet<&str>> = members
        .iter()
        .map(|m| {
            (
                m.member_id.as_str(),
                m.topics.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    let mut all: BTreeSet<TopicPartition> = BTreeSet::new();
    for member in members {
        for topic in &member.topics {
            if let Some(&count) = partition_counts.get(topic) {
                all.extend((0..count).map(|p| TopicPartition::new(topic.clone(), p)));
            }
        }
    }
    // Previous owners: a partition claimed by several members goes to the claim with the
    // highest generation (the others are stale).
    let mut previous: HashMap<TopicPartition, (&str, i32)> = HashMap::new();
    for member in members {
        for tp in &member.owned {
            let valid = all.contains(tp)
                && subscribed
                    .get(member.member_id.as_str())
                    .is_some_and(|t| t.contains(tp.topic.as_str()));
            if !valid {
                continue;
            }
            let claim = (member.member_id.as_str(), member.generation);
            match previous.get(tp) {
                Some(&(_, generation)) if generation >= member.generation => {}
                _ => {
                    previous.insert(tp.clone(), claim);
                }
            }
        }
    }
    let mut ids: Vec<&str> = members.iter().map(|m| m.member_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return BTreeMap::new();
    }
    let mut assignment: BTreeMap<&str, BTreeSet<TopicPartition>> =
        ids.iter().map(|&id| (id, BTreeSet::new())).collect();

    // Quota per member: partitions it can take divided evenly. With identical
    // subscriptions this is floor/ceil of total/members; otherwise it is a target that
    // the greedy fill below respects as well as it can.
    let total = all.len();
    let max_quota = total.div_ceil(ids.len());
    let min_quota = total / ids.len();
    let mut ceil_slots = total - min_quota * ids.len(); // members that may hold max_quota

    // 1. Keep previous ownership, up to the quota (sorted for determinism).
    let mut kept: Vec<(&str, TopicPartition)> = previous
        .iter()
        .map(|(tp, &(owner, _))| (owner, tp.clone()))
        .collect();
    kept.sort();
    let mut by_owner: BTreeMap<&str, Vec<TopicPartition>> = BTreeMap::new();
    for (owner, tp) in kept {
        by_owner.entry(owner).or_default().push(tp);
    }
    for (owner, owned) in by_owner {
        let Some(set) = assignment.get_mut(owner) else {
            continue;
        };
        let limit = if owned.len() > min_quota && ceil_slots > 0 {
            ceil_slots -= 1;
            max_quota
        } else {
            min_quota
        };
        set.extend(owned.into_iter().take(limit));
    }

    // 2. Give every unassigned partition to the least loaded member subscribed to it.
    let assigned: BTreeSet<TopicPartition> = assignment.values().flatten().cloned().collect();
    for tp in all.iter().filter(|tp| !assigned.contains(*tp)) {
        let target = ids
            .iter()
            .filter(|id| {
                subscribed
                    .get(*id)
                    .is_some_and(|t| t.contains(tp.topic.as_str()))
            })
            .min_by_key(|id| (assignment.get(*id).map_or(0, BTreeSet::len), **id));
        if let Some(&id) = target {
            if let Some(set) = assignment.get_mut(id) {
                set.insert(tp.clone());
            }
        }
    }

    // 3. Cooperative rule: a partition that changes owner is withheld this round; its
    //    old owner revokes it and the next rebalance assigns it.
    let mut out = BTreeMap::new();
    for (id, set) in assignment {
        let partitions = set
            .into_iter()
            .filter(|tp| previous.get(tp).is_none_or(|&(owner, _)| owner == id))
            .collect();
        out.insert(id.to_owned(), partitions);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, topics: &[&str], owned: &[(&str, i32)], generation: i32) -> Subscription {
        Subscription {
            member_id: id.into(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            owned: owned
                .iter()
                .map(|&(t, p)| TopicPartition::new(t, p))
                .collect(),
            generation,
        }
    }

    fn counts(list: &[(&str, i32)]) -> HashMap<String, i32> {
        list.iter().map(|&(t, n)| (t.to_owned(), n)).collect()
    }

    fn names(list: &[TopicPartition]) -> Vec<String> {
        list.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn range_matches_kafkas_range_assignor() {
        // Kafka's RangeAssignor javadoc example: t0, t1 with 3 partitions, C0 and C1.
        let members = [
            member("C0", &["t0", "t1"], &[], -1),
            member("C1", &["t0", "t1"], &[], -1),
        ];
        let out = Assignor::Range.assign(&members, &counts(&[("t0", 3), ("t1", 3)]));
        assert_eq!(names(&out["C0"]), ["t0-0", "t0-1", "t1-0", "t1-1"]);
        assert_eq!(names(&out["C1"]), ["t0-2", "t1-2"]);

        // Only subscribers of a topic share it; more members than partitions.
        let members = [
            member("a", &["x"], &[], -1),
            member("b", &["x", "y"], &[], -1),
            member("c", &["y"], &[], -1),
        ];
        let out = Assignor::Range.assign(&members, &counts(&[("x", 1), ("y", 5)]));
        assert_eq!(names(&out["a"]), ["x-0"]);
        assert_eq!(names(&out["b"]), ["y-0", "y-1", "y-2"]);
        assert_eq!(names(&out["c"]), ["y-3", "y-4"]);
    }

    #[test]
    fn cooperative_sticky_balances_a_fresh_group() {
        let members = [
            member("m1", &["t"], &[], -1),
            member("m2", &["t"], &[], -1),
            member("m3", &["t"], &[], -1),
        ];
        let out = Assignor::CooperativeSticky.assign(&members, &counts(&[("t", 7)]));
        let mut sizes: Vec<usize> = out.values().map(Vec::len).collect();
        sizes.sort();
        assert_eq!(sizes, [2, 2, 3]);
        let all: BTreeSet<TopicPartition> = out.values().flatten().cloned().collect();
        assert_eq!(all.len(), 7);
    }

    #[test]
    fn cooperative_sticky_keeps_owners_and_withholds_moves() {
        // m1 owned all 4 partitions; m2 joins. Balance needs 2 each, but the two that
        // move are withheld this round.
        let owned = [("t", 0), ("t", 1), ("t", 2), ("t", 3)];
        let members = [
            member("m1", &["t"], &owned, 5),
            member("m2", &["t"], &[], -1),
        ];
        let first = Assignor::CooperativeSticky.assign(&members, &counts(&[("t", 4)]));
        assert_eq!(names(&first["m1"]), ["t-0", "t-1"]);
        assert!(first["m2"].is_empty());

        // Next round: m1 has revoked t-2 and t-3; they go to m2, m1 keeps its two.
        let members = [
            member("m1", &["t"], &[("t", 0), ("t", 1)], 6),
            member("m2", &["t"], &[], 6),
        ];
        let second = Assignor::CooperativeSticky.assign(&members, &counts(&[("t", 4)]));
        assert_eq!(names(&second["m1"]), ["t-0", "t-1"]);
        assert_eq!(names(&second["m2"]), ["t-2", "t-3"]);
    }

    #[test]
    fn cooperative_sticky_resolves_stale_claims_and_departures() {
        // Both claim t-0; the higher generation wins. m3 left: its partitions are free.
        let members = [
            member("m1", &["t"], &[("t", 0)], 3),
            member("m2", &["t"], &[("t", 0), ("t", 1)], 4),
        ];
        let out = Assignor::CooperativeSticky.assign(&members, &counts(&[("t", 4)]));
        assert_eq!(names(&out["m2"]), ["t-0", "t-1"]);
        assert_eq!(names(&out["m1"]), ["t-2", "t-3"]);
        // A deleted topic's owned partitions are ignored.
        let members = [member("m1", &["t"], &[("gone", 0)], 1)];
        let out = Assignor::CooperativeSticky.assign(&members, &counts(&[("t", 1)]));
        assert_eq!(names(&out["m1"]), ["t-0"]);
    }

    #[test]
    fn subscription_and_assignment_round_trip() {
        let sub = member("m", &["a", "b"], &[("a", 1), ("a", 0), ("b", 3)], 7);
        let back = Subscription::decode("m", sub.encode()).unwrap();
        assert_eq!(back.topics, sub.topics);
        assert_eq!(back.generation, 7);
        let mut owned = back.owned.clone();
        owned.sort();
        assert_eq!(names(&owned), ["a-0", "a-1", "b-3"]);

        let list = vec![TopicPartition::new("b", 2), TopicPartition::new("a", 0)];
        let back = decode_assignment(encode_assignment(&list)).unwrap();
        assert_eq!(names(&back), ["a-0", "b-2"]);
        assert_eq!(decode_assignment(Bytes::new()).unwrap(), Vec::new());
        assert!(decode_assignment(Bytes::from_static(&[0])).is_none());
        assert!(Subscription::decode("m", Bytes::from_static(&[0, 0, 0xff, 0xff, 0xff])).is_none());
    }

    /// Version 0 subscriptions (topics + user data), as old clients send them.
    #[test]
    fn v0_subscription_decodes() {
        let mut bytes = BytesMut::new();
        bytes.put_i16(0);
        ConsumerProtocolSubscription::default()
            .with_topics(vec![StrBytes::from_static_str("t")])
            .encode(&mut bytes, 0)
            .unwrap();
        let sub = Subscription::decode("x", bytes.freeze()).unwrap();
        assert_eq!(sub.topics, ["t"]);
        assert!(sub.owned.is_empty());
        assert_eq!(sub.generation, -1);
    }
}
