//! The cleaner's offset map: key hash -> offset of the key's latest record in the dirty
//! section, in a fixed-size open-addressing table (Kafka's `SkimpyOffsetMap`).
//!
//! Each slot is 24 bytes: the key's 128-bit xxh3 hash (two u64) and the offset + 1 (0
//! marks a free slot). The table is sized once from the dedupe buffer
//! (`buffer / 24` slots) and never grows; it refuses new keys once `load_factor` of
//! the slots are used (0.9, as Kafka), so linear probing stays short. A refused key is
//! how the cleaner learns the map is full: it then cleans only up to that record.
//!
//! Two different keys with the same 128-bit hash would make the older record of one
//! look superseded by the other; at 2^-128 per pair this is ignored, as Kafka ignores
//! MD5 collisions.

use twox_hash::XxHash3_128;

/// Bytes per slot: 16 bytes of hash and 8 of offset, as Kafka counts them.
pub const BYTES_PER_ENTRY: usize = 24;
/// Share of the slots that may be used before new keys are refused.
pub const LOAD_FACTOR: f64 = 0.9;

/// A bounded map from key (by hash) to the latest offset seen for it.
pub(crate) struct OffsetMap {
    /// `[hash high, hash low, offset + 1]`; offset + 1 == 0 is a free slot.
    slots: Vec<[u64; 3]>,
    used: usize,
    max_entries: usize,
}

impl OffsetMap {
    /// A map using at most `buffer_bytes` for its slots (at least one slot).
    pub(crate) fn with_buffer(buffer_bytes: usize) -> OffsetMap {
        let slots = (buffer_bytes / BYTES_PER_ENTRY).max(1);
        let max_entries = ((slots as f64 * LOAD_FACTOR) as usize).max(1).min(slots);
        OffsetMap {
            slots: vec![[0; 3]; slots],
            used: 0,
            max_entries,
        }
    }

    /// Keys the map holds.
    pub(crate) fn len(&self) -> usize {
        self.used
    }

    /// Most keys the map accepts.
    pub(crate) fn capacity(&self) -> usize {
        self.max_entries
    }

    fn hash(key: &[u8]) -> (u64, u64) {
        let h = XxHash3_128::oneshot(key);
        ((h >> 64) as u64, h as u64)
    }

    /// The slot holding `hash`, or the free slot where it would go.
    fn find(&self, (hi, lo): (u64, u64)) -> usize {
        let n = self.slots.len();
        let mut i = (lo % n as u64) as usize;
        // The table is never full (max_entries <= slots, and a full table only happens
        // with one slot, which the probe below still ends on), so this ends within n steps.
        for _ in 0..n {
            let slot = &self.slots[i];
            if slot[2] == 0 || (slot[0] == hi && slot[1] == lo) {
                return i;
            }
            i = (i + 1) % n;
        }
        i
    }

    /// Records `offset` as the latest for `key`. Returns false (and changes nothing)
    /// when `key` is new and the map is full.
    pub(crate) fn put(&mut self, key: &[u8], offset: i64) -> bool {
        let hash = Self::hash(key);
        let i = self.find(hash);
        let slot = &mut self.slots[i];
        let present = slot[2] != 0 && slot[0] == hash.0 && slot[1] == hash.1;
        if !present {
            if self.used >= self.max_entries {
                return false;
            }
            self.used += 1;
            slot[0] = hash.0;
            slot[1] = hash.1;
        }
        slot[2] = (offset as u64).wrapping_add(1);
        true
    }

    /// The latest offset recorded for `key`.
    pub(crate) fn get(&self, key: &[u8]) -> Option<i64> {
        let hash = Self::hash(key);
        let slot = &self.slots[self.find(hash)];
        (slot[2] != 0 && slot[0] == hash.0 && slot[1] == hash.1)
            .then(|| slot[2].wrapping_sub(1) as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_latest_offset_per_key() {
        let mut map = OffsetMap::with_buffer(24 * 100);
        assert!(map.put(b"a", 1));
        assert!(map.put(b"b", 2));
        assert!(map.put(b"a", 7));
        assert_eq!(map.get(b"a"), Some(7));
        assert_eq!(map.get(b"b"), Some(2));
        assert_eq!(map.get(b"c"), None);
        assert_eq!(map.len(), 2);
        assert!(map.put(b"", 0), "an empty key is a key");
        assert_eq!(map.get(b""), Some(0));
    }

    #[test]
    fn is_bounded_by_its_buffer_and_refuses_only_new_keys_when_full() {
        let map = OffsetMap::with_buffer(24 * 1000);
        assert_eq!(map.capacity(), 900, "load factor 0.9 of 1000 slots");
        assert_eq!(map.slots.len() * BYTES_PER_ENTRY, 24_000);

        let mut map = OffsetMap::with_buffer(24 * 10);
        assert_eq!(map.capacity(), 9);
        for i in 0..9 {
            assert!(map.put(format!("k{i}").as_bytes(), i));
        }
        assert!(!map.put(b"new", 100), "full: a new key is refused");
        assert_eq!(map.get(b"new"), None);
        assert!(map.put(b"k3", 50), "a known key is still updated");
        assert_eq!(map.get(b"k3"), Some(50));
        for i in 0..9 {
            if i != 3 {
                assert_eq!(map.get(format!("k{i}").as_bytes()), Some(i));
            }
        }
    }

    #[test]
    fn a_tiny_buffer_still_holds_one_key() {
        let mut map = OffsetMap::with_buffer(0);
        assert!(map.put(b"x", 5));
        assert!(!map.put(b"y", 6));
        assert_eq!(map.get(b"x"), Some(5));
        assert_eq!(map.get(b"y"), None);
    }
}
