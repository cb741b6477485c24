//! Choosing a partition for a record, exactly as Kafka's Java producer does.
//!
//! - Keyed records: `toPositive(murmur2(key)) % numPartitions`, with Kafka's murmur2
//!   (MurmurHash2, seed `0x9747b28c`, little-endian 4-byte blocks) and
//!   `toPositive(x) = x & 0x7fffffff`. The same key always lands in the same partition,
//!   and in the same partition the Java client (and librdkafka's `murmur2_random`) picks.
//! - Records without a key: sticky partitioning (KIP-480, and the built-in partitioner of
//!   Kafka 3.3+): all go to one partition until `batch_size` bytes have been sent to it,
//!   then a random other partition (one with a leader) is chosen. Batches fill up, so
//!   fewer, larger requests are sent than with round-robin.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rand::Rng;

/// Kafka's `Utils.murmur2`: 32-bit MurmurHash2 with seed `0x9747b28c`.
pub fn murmur2(data: &[u8]) -> i32 {
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    const SEED: u32 = 0x9747_b28c;
    // Java's int arithmetic wraps; u32 with wrapping ops gives the same bits.
    let mut h: u32 = SEED ^ (data.len() as u32);
    let mut blocks = data.chunks_exact(4);
    for block in &mut blocks {
        let mut k = u32::from_le_bytes([block[0], block[1], block[2], block[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = blocks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// Kafka's `Utils.toPositive`: clears the sign bit (not `abs`, which overflows).
pub fn to_positive(x: i32) -> i32 {
    x & 0x7fff_ffff
}

/// The partition Kafka's producer picks for `key` among `num_partitions`.
///
/// # Panics
/// Never: `num_partitions` below 1 is treated as 1.
pub fn partition_for_key(key: &[u8], num_partitions: i32) -> i32 {
    to_positive(murmur2(key)) % num_partitions.max(1)
}

/// The producer's per-topic routing state: what it needs of the topic's metadata (copied
/// from the client's cache, so that routing a record costs one hash lookup and no
/// metadata lock or clock read of its own) and the sticky partition of unkeyed records.
#[derive(Debug, Default)]
pub(crate) struct Routes {
    topics: HashMap<String, Route>,
}

/// One topic's route; see [`Routes`].
#[derive(Debug)]
pub(crate) struct Route {
    /// The topic's partition count.
    count: i32,
    /// Partitions with a leader (empty: none has one, any may be chosen).
    available: Vec<i32>,
    /// The client's metadata generation this was copied at; any newer one means the
    /// metadata changed (a refresh, an invalidation) and the route is copied again.
    generation: u64,
    /// When the client refreshed the topic's metadata; past `metadata_max_age` the
    /// producer asks for it again, as it would without this cache.
    refreshed_at: Instant,
    /// Unkeyed records: the partition they go to and the bytes sent to it so far.
    sticky: Option<Sticky>,
}

#[derive(Debug, Clone, Copy)]
struct Sticky {
    partition: i32,
    bytes: usize,
}

impl Routes {
    /// The route of `topic` if it was copied from metadata of `generation` that is not
    /// older than `max_age` at `now`.
    pub(crate) fn current(
        &mut self,
        topic: &str,
        generation: u64,
        now: Instant,
        max_age: Duration,
    ) -> Option<&mut Route> {
        self.topics.get_mut(topic).filter(|r| {
            r.generation == generation && now.saturating_duration_since(r.refreshed_at) < max_age
        })
    }

    /// Stores a fresh copy of the topic's metadata, keeping the sticky partition when it
    /// still exists.
    pub(crate) fn update(
        &mut self,
        topic: &str,
        count: i32,
        available: Vec<i32>,
        generation: u64,
        refreshed_at: Instant,
    ) -> &mut Route {
        let sticky = self
            .topics
            .get(topic)
            .and_then(|r| r.sticky)
            .filter(|s| s.partition < count);
        let route = Route {
            count,
            available,
            generation,
            refreshed_at,
            sticky,
        };
        // An allocation per refresh, not per record.
        self.topics
            .entry(topic.to_owned())
            .insert_entry(route)
            .into_mut()
    }
}

impl Route {
    /// The partition for a record: `fixed` if given (`Err(count)` when the topic has no
    /// such partition), else by `key`, else the sticky partition, which moves on to
    /// another available partition once `batch_size` bytes (`size` per record) went to
    /// it. The flag says the sticky partition moved on after this record: its batch can
    /// go without waiting for linger (the byte count is an upper bound of the encoded
    /// size, so the batch is nearly, not quite, full and would otherwise linger).
    pub(crate) fn partition(
        &mut self,
        fixed: Option<i32>,
        key: Option<&[u8]>,
        size: usize,
        batch_size: usize,
    ) -> std::result::Result<(i32, bool), i32> {
        if let Some(p) = fixed {
            return if (0..self.count).contains(&p) {
                Ok((p, false))
            } else {
                Err(self.count)
            };
        }
        if let Some(key) = key {
            return Ok((partition_for_key(key, self.count), false));
        }
        let sticky = match self.sticky {
            Some(s) if s.partition < self.count => s,
            _ => Sticky {
                partition: pick(self.count, &self.available, None),
                bytes: 0,
            },
        };
        let partition = sticky.partition;
        let bytes = sticky.bytes + size;
        let next = if bytes >= batch_size {
            Sticky {
                partition: pick(self.count, &self.available, Some(partition)),
                bytes: 0,
            }
        } else {
            Sticky { partition, bytes }
        };
        self.sticky = Some(next);
        // With one partition to choose from it "moves on" to itself: keep filling.
        Ok((partition, next.partition != partition))
    }
}

/// A random partition among `available` (or 0..count), other than `not` when possible.
/// No allocation: it runs at every sticky switch, for topics of any size.
fn pick(count: i32, available: &[i32], not: Option<i32>) -> i32 {
    let n = if available.is_empty() {
        count.max(1) as usize
    } else {
        available.len()
    };
    let candidate = |i: usize| available.get(i).copied().unwrap_or(i as i32);
    let mut rng = rand::thread_rng();
    match not.and_then(|p| (0..n).find(|&i| candidate(i) == p)) {
        // Draw among the n - 1 others: indexes from `skip` on shift up by one.
        Some(skip) if n > 1 => {
            let i = rng.gen_range(0..n - 1);
            candidate(if i >= skip { i + 1 } else { i })
        }
        _ => candidate(rng.gen_range(0..n)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kafka's own answers for these keys, produced with the kafka-clients 4.4.0 jar
    /// (`~/.cache/sluice/kafka-4.4.0/libs/kafka-clients-4.4.0.jar`, fetched by
    /// `scripts/peers/kafka.sh install`) by this Java program:
    ///
    /// ```java
    /// for (String k : keys) {
    ///     byte[] b = k.getBytes(StandardCharsets.UTF_8);
    ///     print(k, Utils.murmur2(b));
    ///     for (int n : new int[] {1, 2, 3, 6, 10, 12, 100})
    ///         print(BuiltInPartitioner.partitionForKey(b, n));
    /// }
    /// ```
    ///
    /// Each row: key (UTF-8), `Utils.murmur2(key)`, and the partition for 1, 2, 3, 6,
    /// 10, 12 and 100 partitions.
    const JAVA: &[(&str, i32, [i32; 7])] = &[
        ("", 275646681, [0, 1, 0, 3, 1, 9, 81]),
        ("a", -1563381124, [0, 0, 1, 4, 4, 4, 24]),
        ("b", -1853091852, [0, 0, 2, 2, 6, 8, 96]),
        ("key", -1079937367, [0, 1, 1, 1, 1, 1, 81]),
        ("hello", 2132663229, [0, 1, 0, 3, 9, 9, 29]),
        ("Kafka", 824573139, [0, 1, 0, 3, 9, 3, 39]),
        ("user-1", 1404122828, [0, 0, 2, 2, 8, 8, 28]),
        ("user-2", -324981792, [0, 0, 2, 2, 6, 8, 56]),
        ("user-3", 1141442267, [0, 1, 2, 5, 7, 11, 67]),
        ("user-42", 1459644460, [0, 0, 1, 4, 0, 4, 60]),
        ("order:12345", -408361232, [0, 0, 0, 0, 6, 0, 16]),
        ("ünïcödé", 201421315, [0, 1, 1, 1, 5, 7, 15]),
        (
            "The quick brown fox jumps over the lazy dog",
            495243318,
            [0, 0, 0, 0, 8, 6, 18],
        ),
        ("0", 971027396, [0, 0, 2, 2, 6, 8, 96]),
        ("1", -1993445489, [0, 1, 0, 3, 9, 3, 59]),
        ("2", 648968168, [0, 0, 2, 2, 8, 8, 68]),
        ("abc", 479470107, [0, 1, 0, 3, 7, 3, 7]),
        ("abcd", -1323649548, [0, 0, 2, 2, 0, 8, 0]),
        ("abcde", 461995741, [0, 1, 1, 1, 1, 1, 41]),
        ("abcdefgh", -955427363, [0, 1, 0, 3, 5, 9, 85]),
    ];

    #[test]
    fn murmur2_and_partitions_match_the_java_client() {
        for &(key, hash, partitions) in JAVA {
            assert_eq!(murmur2(key.as_bytes()), hash, "murmur2({key:?})");
            for (count, expected) in [1, 2, 3, 6, 10, 12, 100].into_iter().zip(partitions) {
                assert_eq!(
                    partition_for_key(key.as_bytes(), count),
                    expected,
                    "{key:?} over {count} partitions"
                );
            }
        }
    }

    #[test]
    fn to_positive_clears_only_the_sign_bit() {
        assert_eq!(to_positive(i32::MIN), 0);
        assert_eq!(to_positive(-1), i32::MAX);
        assert_eq!(to_positive(5), 5);
    }

    fn route(routes: &mut Routes, topic: &str, count: i32, available: &[i32]) -> i32 {
        let now = Instant::now();
        routes.update(topic, count, available.to_vec(), 1, now);
        routes
            .current(topic, 1, now, Duration::from_secs(1))
            .unwrap()
            .partition(None, None, 100, 1000)
            .unwrap()
            .0
    }

    #[test]
    fn sticky_partition_moves_after_a_batch_worth_of_bytes() {
        let mut routes = Routes::default();
        let available = [0, 1, 2, 3];
        let first = route(&mut routes, "t", 4, &available);
        for _ in 0..9 {
            assert_eq!(route(&mut routes, "t", 4, &available), first);
        }
        // 10 x 100 bytes = batch_size: the next record goes elsewhere.
        assert_ne!(route(&mut routes, "t", 4, &available), first);
        // Only partitions with a leader are chosen.
        for _ in 0..50 {
            assert_eq!(route(&mut routes, "u", 4, &[2]), 2);
        }
    }

    #[test]
    fn routes_expire_with_the_metadata_generation_and_age() {
        let mut routes = Routes::default();
        let t0 = Instant::now();
        let max_age = Duration::from_secs(60);
        routes.update("t", 3, vec![0, 1, 2], 7, t0);
        assert!(routes.current("t", 7, t0, max_age).is_some());
        assert!(
            routes.current("t", 8, t0, max_age).is_none(),
            "metadata changed"
        );
        assert!(
            routes.current("t", 7, t0 + max_age, max_age).is_none(),
            "too old"
        );
        assert!(routes.current("u", 7, t0, max_age).is_none());
        let route = routes.current("t", 7, t0, max_age).unwrap();
        assert_eq!(route.partition(Some(2), None, 1, 10), Ok((2, false)));
        assert_eq!(route.partition(Some(3), None, 1, 10), Err(3));
        assert_eq!(route.partition(None, Some(b"key"), 1, 10), Ok((1, false)));
        // The record that fills the sticky partition's share says so.
        let first = route.partition(None, None, 6, 10).unwrap();
        assert!(!first.1);
        assert_eq!(route.partition(None, None, 6, 10), Ok((first.0, true)));
        assert_ne!(route.partition(None, None, 6, 10).unwrap().0, first.0);
    }
}
