//! Replica placement for new topics and partitions.
//!
//! The same goals as Kafka's `StripedReplicaPlacer` (KRaft) and rack-aware
//! `AdminUtils.assignReplicasToBrokers` (ZooKeeper mode), in this crate's own shape:
//!
//! 1. The usable brokers are grouped by rack (brokers without `broker.rack` form one group),
//!    each group and the order of the groups is shuffled, and the groups are interleaved
//!    into one "striped" list `S`: first broker of each rack, then the second of each, ...
//!    Neighbours in `S` are therefore on different racks as long as racks have brokers left.
//! 2. Partition `p`'s leader is `S[(start + p) % n]`: leaders go round-robin, so `P`
//!    partitions on `n` brokers give every broker `P / n` or `P / n + 1` leaderships.
//! 3. Followers start at Kafka's shifted position `leader + 1 + (shift + j) % (n - 1)`,
//!    `shift` growing by one every `n` partitions, so partition `p` and `p + n` do not get
//!    the same replica set; from there the list is walked to the first broker not chosen
//!    yet whose rack holds no replica of the partition yet (any rack once every rack has
//!    one). Without racks every `n` consecutive partitions give each broker exactly
//!    `rf - 1` follower replicas.
//! 4. `start` and the first `shift` are random, drawn from a seeded generator: many
//!    small topics spread over all brokers instead of all leading on the first, and a test
//!    that fixes the seed gets the same placement every run.
//!
//! A replication factor above the number of usable brokers is refused with Kafka's
//! `INVALID_REPLICATION_FACTOR` message.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::{MetadataError, Result};
use crate::records::BrokerId;

/// A broker that may receive replicas, as the placer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacementBroker {
    /// The broker.
    pub id: BrokerId,
    /// `broker.rack`, if set.
    pub rack: Option<String>,
}

/// Places replicas; owns the random generator (see the module docs).
#[derive(Debug, Clone)]
pub struct ReplicaPlacer {
    rng: SplitMix64,
}

impl ReplicaPlacer {
    /// A placer whose choices are a function of `seed` and the calls made.
    pub fn new(seed: u64) -> Self {
        Self {
            rng: SplitMix64(seed),
        }
    }

    /// Replica lists (leader first) for `num_partitions` new partitions with
    /// `replication_factor` replicas each, over `brokers` (duplicate ids count once).
    pub fn place(
        &mut self,
        brokers: &[PlacementBroker],
        num_partitions: i32,
        replication_factor: i16,
    ) -> Result<Vec<Vec<BrokerId>>> {
        if num_partitions < 1 {
            return Err(MetadataError::InvalidPartitions(
                "Number of partitions was set to an invalid non-positive value.".into(),
            ));
        }
        if replication_factor < 1 {
            return Err(MetadataError::InvalidReplicationFactor(
                "Replication factor must be larger than 0, or -1 to use the default value.".into(),
            ));
        }
        let striped = self.striped(brokers);
        let n = striped.len();
        let rf = replication_factor as usize;
        if rf > n {
            return Err(MetadataError::InvalidReplicationFactor(format!(
                "Unable to replicate the partition {rf} time(s): The target replication factor of {rf} cannot be reached because only {n} broker(s) are registered."
            )));
        }
        let rack_count = striped
            .iter()
            .map(|b| b.rack.as_deref())
            .collect::<BTreeSet<_>>()
            .len();
        let start = self.rng.below(n);
        let mut shift = self.rng.below(n);
        let mut placements = Vec::with_capacity(num_partitions as usize);
        for p in 0..num_partitions as usize {
            if p > 0 && p % n == 0 {
                shift += 1;
            }
            let leader = (start + p) % n;
            let mut chosen = vec![leader];
            let mut racks = BTreeSet::from([striped[leader].rack.as_deref()]);
            for j in 0..rf - 1 {
                let first = (leader + 1 + (shift + j) % (n - 1)) % n;
                // rf <= n, so a broker not chosen yet exists; the walk visits all of them.
                let pick = (0..n).map(|k| (first + k) % n).find(|&i| {
                    !chosen.contains(&i)
                        && (racks.len() == rack_count
                            || !racks.contains(&striped[i].rack.as_deref()))
                });
                let Some(pick) = pick else { break };
                racks.insert(striped[pick].rack.as_deref());
                chosen.push(pick);
            }
            placements.push(chosen.into_iter().map(|i| striped[i].id).collect());
        }
        Ok(placements)
    }

    /// The brokers interleaved by rack, after shuffling (step 1 of the module docs).
    fn striped<'a>(&mut self, brokers: &'a [PlacementBroker]) -> Vec<&'a PlacementBroker> {
        let mut by_rack: BTreeMap<Option<&str>, BTreeMap<BrokerId, &PlacementBroker>> =
            BTreeMap::new();
        for b in brokers {
            by_rack
                .entry(b.rack.as_deref())
                .or_default()
                .insert(b.id, b);
        }
        let mut racks: Vec<Vec<&PlacementBroker>> = by_rack
            .into_values()
            .map(|members| members.into_values().collect())
            .collect();
        for members in &mut racks {
            self.rng.shuffle(members);
        }
        self.rng.shuffle(&mut racks);
        let longest = racks.iter().map(Vec::len).max().unwrap_or(0);
        let mut striped = Vec::with_capacity(brokers.len());
        for i in 0..longest {
            striped.extend(racks.iter().filter_map(|members| members.get(i).copied()));
        }
        striped
    }
}

/// SplitMix64: a tiny, well-mixed generator; placement needs spread, not secrecy.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`); the modulo bias is irrelevant for broker counts.
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brokers(n: i32) -> Vec<PlacementBroker> {
        (1..=n)
            .map(|id| PlacementBroker { id, rack: None })
            .collect()
    }

    fn racked(spec: &[(i32, &str)]) -> Vec<PlacementBroker> {
        spec.iter()
            .map(|&(id, rack)| PlacementBroker {
                id,
                rack: Some(rack.to_owned()),
            })
            .collect()
    }

    fn counts(placements: &[Vec<BrokerId>], leaders_only: bool) -> BTreeMap<BrokerId, usize> {
        let mut counts = BTreeMap::new();
        for replicas in placements {
            let take = if leaders_only { 1 } else { replicas.len() };
            for &b in &replicas[..take] {
                *counts.entry(b).or_insert(0) += 1;
            }
        }
        counts
    }

    fn assert_distinct(placements: &[Vec<BrokerId>], rf: usize) {
        for replicas in placements {
            assert_eq!(replicas.len(), rf, "{replicas:?}");
            let set: BTreeSet<_> = replicas.iter().collect();
            assert_eq!(set.len(), rf, "replicas not distinct: {replicas:?}");
        }
    }

    #[test]
    fn twelve_partitions_rf1_on_three_brokers_give_four_leaders_each() {
        for seed in 0..20 {
            let placements = ReplicaPlacer::new(seed).place(&brokers(3), 12, 1).unwrap();
            assert_distinct(&placements, 1);
            let leaders = counts(&placements, true);
            assert_eq!(
                leaders,
                BTreeMap::from([(1, 4), (2, 4), (3, 4)]),
                "seed {seed}"
            );
        }
    }

    #[test]
    fn rf3_on_five_brokers_is_balanced() {
        for seed in 0..20 {
            let placements = ReplicaPlacer::new(seed).place(&brokers(5), 10, 3).unwrap();
            assert_distinct(&placements, 3);
            assert_eq!(
                counts(&placements, true).values().collect::<Vec<_>>(),
                vec![&2; 5],
                "leaders, seed {seed}"
            );
            assert_eq!(
                counts(&placements, false).values().collect::<Vec<_>>(),
                vec![&6; 5],
                "replicas, seed {seed}: {placements:?}"
            );
            // The shift makes partitions p and p + 5 differ in their followers.
            assert!(placements[..5]
                .iter()
                .zip(&placements[5..])
                .any(|(a, b)| a != b));
        }
    }

    #[test]
    fn uneven_counts_differ_by_at_most_one_leader() {
        let placements = ReplicaPlacer::new(7).place(&brokers(4), 7, 2).unwrap();
        assert_distinct(&placements, 2);
        let leaders = counts(&placements, true);
        let (min, max) = (leaders.values().min(), leaders.values().max());
        assert!(max.unwrap() - min.unwrap() <= 1, "{leaders:?}");
    }

    #[test]
    fn replicas_spread_across_racks() {
        let six = racked(&[(1, "a"), (2, "a"), (3, "b"), (4, "b"), (5, "c"), (6, "c")]);
        let rack_of = |id: BrokerId| six.iter().find(|b| b.id == id).unwrap().rack.clone();
        for seed in 0..20 {
            let placements = ReplicaPlacer::new(seed).place(&six, 30, 3).unwrap();
            assert_distinct(&placements, 3);
            for replicas in &placements {
                let racks: BTreeSet<_> = replicas.iter().map(|&b| rack_of(b)).collect();
                assert_eq!(racks.len(), 3, "seed {seed}: {replicas:?}");
            }
            let leaders = counts(&placements, true);
            assert_eq!(leaders.values().collect::<Vec<_>>(), vec![&5; 6]);
            let replicas = counts(&placements, false);
            let (min, max) = (replicas.values().min(), replicas.values().max());
            assert!(
                max.unwrap() - min.unwrap() <= 6,
                "seed {seed}: {replicas:?}"
            );
        }
        // More replicas than racks: every rack first, then any broker, still distinct.
        let four = racked(&[(1, "a"), (2, "a"), (3, "b"), (4, "b")]);
        for seed in 0..20 {
            let placements = ReplicaPlacer::new(seed).place(&four, 8, 3).unwrap();
            assert_distinct(&placements, 3);
            for replicas in &placements {
                let racks: BTreeSet<_> = replicas
                    .iter()
                    .map(|&b| four.iter().find(|x| x.id == b).unwrap().rack.clone())
                    .collect();
                assert_eq!(racks.len(), 2, "{replicas:?}");
            }
        }
    }

    #[test]
    fn many_small_topics_balance_overall() {
        let mut placer = ReplicaPlacer::new(42);
        let mut leaders = BTreeMap::new();
        for _ in 0..300 {
            let p = placer.place(&brokers(3), 1, 1).unwrap();
            *leaders.entry(p[0][0]).or_insert(0) += 1;
        }
        assert_eq!(leaders.len(), 3);
        assert!(
            leaders.values().all(|&n| (70..=130).contains(&n)),
            "{leaders:?}"
        );
    }

    #[test]
    fn same_seed_same_placement() {
        let a = ReplicaPlacer::new(9).place(&brokers(5), 20, 3).unwrap();
        let b = ReplicaPlacer::new(9).place(&brokers(5), 20, 3).unwrap();
        assert_eq!(a, b);
        // Input order does not matter either: brokers are sorted before shuffling.
        let mut reversed = brokers(5);
        reversed.reverse();
        assert_eq!(ReplicaPlacer::new(9).place(&reversed, 20, 3).unwrap(), a);
    }

    #[test]
    fn replication_factor_above_the_brokers_is_refused() {
        let err = ReplicaPlacer::new(1).place(&brokers(3), 1, 4).unwrap_err();
        assert_eq!(err.kafka_error_name(), "INVALID_REPLICATION_FACTOR");
        assert!(err.to_string().contains("only 3 broker(s)"), "{err}");
        let none = ReplicaPlacer::new(1).place(&[], 1, 1).unwrap_err();
        assert_eq!(none.kafka_error_name(), "INVALID_REPLICATION_FACTOR");
        let zero = ReplicaPlacer::new(1).place(&brokers(3), 1, 0).unwrap_err();
        assert_eq!(zero.kafka_error_name(), "INVALID_REPLICATION_FACTOR");
        let partitions = ReplicaPlacer::new(1).place(&brokers(3), 0, 1).unwrap_err();
        assert_eq!(partitions.kafka_error_name(), "INVALID_PARTITIONS");
    }
}
