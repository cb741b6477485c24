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

/// Per-topic sticky partition choice for records without a key.
#[derive(Debug, Default)]
pub(crate) struct StickyPartitioner {
    topics: HashMap<String, Sticky>,
}

#[derive(Debug)]
struct Sticky {
    partition: i32,
    bytes: usize,
}

impl StickyPartitioner {
    /// The partition for the next unkeyed record of `topic`. `available` lists the
    /// partitions that have a leader (all partitions if none has one), `count` is the
    /// topic's partition count.
    pub(crate) fn partition(&mut self, topic: &str, count: i32, available: &[i32]) -> i32 {
        if let Some(sticky) = self.topics.get(topic) {
            if sticky.partition < count {
                return sticky.partition;
            }
        }
        let partition = pick(count, available, None);
        self.topics.insert(
            topic.to_owned(),
            Sticky {
                partition,
                bytes: 0,
            },
        );
        partition
    }

    /// Records that `bytes` went to `partition`; after `batch_size` bytes the topic moves
    /// on to another partition.
    pub(crate) fn record_sent(
        &mut self,
        topic: &str,
        partition: i32,
        bytes: usize,
        batch_size: usize,
        count: i32,
        available: &[i32],
    ) {
        let Some(sticky) = self.topics.get_mut(topic) else {
            return;
        };
        if sticky.partition != partition {
            return;
        }
        sticky.bytes += bytes;
        if sticky.bytes >= batch_size {
            sticky.partition = pick(count, available, Some(partition));
            sticky.bytes = 0;
        }
    }
}

/// A random partition among `available` (or 0..count), other than `not` when possible.
fn pick(count: i32, available: &[i32], not: Option<i32>) -> i32 {
    let mut rng = rand::thread_rng();
    let candidates: Vec<i32> = if available.is_empty() {
        (0..count.max(1)).collect()
    } else {
        available.to_vec()
    };
    let others: Vec<i32> = candidates
        .iter()
        .copied()
        .filter(|&p| Some(p) != not)
        .collect();
    let from = if others.is_empty() {
        &candidates
    } else {
        &others
    };
    from[rng.gen_range(0..from.len())]
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

    #[test]
    fn sticky_partition_moves_after_a_batch_worth_of_bytes() {
        let mut sticky = StickyPartitioner::default();
        let available = [0, 1, 2, 3];
        let first = sticky.partition("t", 4, &available);
        for _ in 0..9 {
            sticky.record_sent("t", first, 100, 1000, 4, &available);
            assert_eq!(sticky.partition("t", 4, &available), first);
        }
        sticky.record_sent("t", first, 100, 1000, 4, &available);
        let second = sticky.partition("t", 4, &available);
        assert_ne!(second, first);
        // Only partitions with a leader are chosen.
        let mut sticky = StickyPartitioner::default();
        for _ in 0..50 {
            let p = sticky.partition("u", 4, &[2]);
            assert_eq!(p, 2);
            sticky.record_sent("u", p, 10, 1, 4, &[2]);
        }
    }
}
