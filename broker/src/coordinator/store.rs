//! The records the group coordinator keeps in the internal topic `__consumer_offsets`.
//!
//! The log is the database: every committed offset and every persisted group state is a
//! record in partition [`partition_for`]`(group)` of `__consumer_offsets`, and the broker
//! rebuilds the coordinator's memory by replaying those partitions at start. Nothing here
//! does I/O: encoding returns record batches to append, decoding takes batches read back.
//!
//! # Record format (version 1, all integers big-endian)
//!
//! Every record has a key; a record with a null value is a tombstone for its key.
//!
//! ```text
//! string   = length i32, UTF-8 bytes            (nullable string: length -1 = null)
//! bytes    = length i32, bytes                  (never null)
//!
//! key      = key_type i16, then by type:
//!   0 restatement marker:  (nothing)                 (legacy, see below)
//!   1 offset commit:       group string, topic string, partition i32
//!   2 group metadata:      group string
//!
//! value    = value_version i16 (= 1), then by key type:
//!   0 restatement marker:  records i64            records of the restatement that follow
//!   1 offset commit:       offset i64, leader_epoch i32 (-1 = none), metadata string,
//!                          commit_timestamp_ms i64, expire_timestamp_ms i64 (-1 = none)
//!   2 group metadata:      protocol_type nullable string, generation_id i32,
//!                          protocol_name nullable string, leader nullable string,
//!                          state_timestamp_ms i64, member_count i32, members:
//!     member             = member_id string, group_instance_id nullable string,
//!                          client_id string, client_host string, rebalance_timeout_ms i32,
//!                          session_timeout_ms i32, protocol_count i32,
//!                          protocols (name string, metadata bytes)..., assignment bytes
//! ```
//!
//! Replay applies records in log order: an offset value sets the committed offset of
//! (group, topic, partition), a group value replaces the group's persisted membership, a
//! tombstone deletes. A key type this version does not know is skipped (a newer broker may
//! add record types); a value version it does not know is an error, since skipping it
//! could silently lose committed offsets.
//!
//! # Bounded growth: compaction
//!
//! `__consumer_offsets` has `cleanup.policy=compact`: an old record is never needed once a
//! newer record with the same key exists, so the broker's log cleaner keeps only each key's
//! latest record, and drops a tombstone `delete.retention.ms` after it was first cleaned
//! (by then every older record of its key is gone). Replay is latest-record-per-key: a log
//! replays to the same state before and after any clean, which the coordinator's random
//! walks check against the real cleaner.
//!
//! Releases before compaction bounded the topic by *restating* a partition: a marker (key
//! type 0) followed by a copy of every live record, then deleting what came before the
//! marker. Such logs still replay correctly (a restatement restates the live state, and
//! the marker carries no group), so an existing data directory needs no conversion: the
//! marker is skipped, and the cleaner drops all but the last one (they share one key).

use bytes::{Buf, BufMut, Bytes};
use sluice_storage::batch::{BatchBuilder, Compression, Records};
use sluice_storage::BatchError;

/// Name of the internal topic.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

const KEY_RESTATEMENT: i16 = 0;
const KEY_OFFSET: i16 = 1;
const KEY_GROUP: i16 = 2;
const VALUE_VERSION: i16 = 1;

/// Java's `String.hashCode()`: `h = 31 * h + c` over the UTF-16 code units, wrapping.
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |h, unit| {
        h.wrapping_mul(31).wrapping_add(i32::from(unit))
    })
}

/// Kafka's `Utils.abs`: the absolute value, with `i32::MIN` mapped to 0 (not to itself).
pub fn kafka_abs(n: i32) -> i32 {
    if n == i32::MIN {
        0
    } else {
        n.abs()
    }
}

/// The `__consumer_offsets` partition that holds `group_id`, as Kafka computes it:
/// `abs(group_id.hashCode()) % partitions`.
pub fn partition_for(group_id: &str, partitions: i32) -> i32 {
    kafka_abs(java_string_hash(group_id)) % partitions.max(1)
}

/// A committed offset as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    pub offset: i64,
    /// -1 when the client gave none.
    pub leader_epoch: i32,
    /// The client's metadata string ("" when the client sent null, as Kafka stores it).
    pub metadata: String,
    pub commit_timestamp_ms: i64,
    /// Only set by OffsetCommit v2-v4 with an explicit retention time.
    pub expire_timestamp_ms: Option<i64>,
}

/// One member of a persisted group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberValue {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    /// Every protocol the member supports, in its order of preference (Kafka keeps only
    /// the selected one; keeping all of them lets a member rejoin after a restart without
    /// looking like it changed its metadata).
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
}

/// A group's persisted state: written when a rebalance completes (Stable with its
/// assignment, or Empty), when a static member is replaced without a rebalance, and
/// restated by compaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupValue {
    pub protocol_type: Option<String>,
    pub generation_id: i32,
    pub protocol_name: Option<String>,
    pub leader: Option<String>,
    /// When the group entered its current state (offsets of an Empty group expire
    /// relative to it).
    pub state_timestamp_ms: i64,
    pub members: Vec<MemberValue>,
}

/// One record of `__consumer_offsets`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Offset {
        group: String,
        topic: String,
        partition: i32,
        /// None: tombstone.
        value: Option<OffsetValue>,
    },
    Group {
        group: String,
        /// None: tombstone.
        value: Option<GroupValue>,
    },
    /// A restatement marker, written before `__consumer_offsets` was compacted (it counted
    /// the `records` restated after it); read from old logs and skipped, never written.
    Restatement { records: u64 },
}

impl Record {
    /// The group the record belongs to (None for the restatement marker).
    pub fn group_id(&self) -> Option<&str> {
        match self {
            Record::Offset { group, .. } | Record::Group { group, .. } => Some(group),
            Record::Restatement { .. } => None,
        }
    }

    pub fn encode_key(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        match self {
            Record::Restatement { .. } => out.put_i16(KEY_RESTATEMENT),
            Record::Offset {
                group,
                topic,
                partition,
                ..
            } => {
                out.put_i16(KEY_OFFSET);
                put_string(&mut out, group);
                put_string(&mut out, topic);
                out.put_i32(*partition);
            }
            Record::Group { group, .. } => {
                out.put_i16(KEY_GROUP);
                put_string(&mut out, group);
            }
        }
        out
    }

    /// The encoded value, None for a tombstone.
    pub fn encode_value(&self) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(64);
        out.put_i16(VALUE_VERSION);
        match self {
            Record::Restatement { records } => out.put_i64(*records as i64),
            Record::Offset { value, .. } => {
                let v = value.as_ref()?;
                out.put_i64(v.offset);
                out.put_i32(v.leader_epoch);
                put_string(&mut out, &v.metadata);
                out.put_i64(v.commit_timestamp_ms);
                out.put_i64(v.expire_timestamp_ms.unwrap_or(-1));
            }
            Record::Group { value, .. } => {
                let v = value.as_ref()?;
                put_nullable_string(&mut out, v.protocol_type.as_deref());
                out.put_i32(v.generation_id);
                put_nullable_string(&mut out, v.protocol_name.as_deref());
                put_nullable_string(&mut out, v.leader.as_deref());
                out.put_i64(v.state_timestamp_ms);
                put_len(&mut out, v.members.len());
                for m in &v.members {
                    put_string(&mut out, &m.member_id);
                    put_nullable_string(&mut out, m.group_instance_id.as_deref());
                    put_string(&mut out, &m.client_id);
                    put_string(&mut out, &m.client_host);
                    out.put_i32(m.rebalance_timeout_ms);
                    out.put_i32(m.session_timeout_ms);
                    put_len(&mut out, m.protocols.len());
                    for (name, metadata) in &m.protocols {
                        put_string(&mut out, name);
                        put_bytes(&mut out, metadata);
                    }
                    put_bytes(&mut out, &m.assignment);
                }
            }
        }
        Some(out)
    }

    /// Decodes one record. `Ok(None)` for a key type this version does not know.
    pub fn decode(key: &[u8], value: Option<&[u8]>) -> Result<Option<Record>, String> {
        let mut k = Reader(key);
        let key_type = k.i16()?;
        let record = match key_type {
            KEY_RESTATEMENT => {
                k.finish("key")?;
                let Some(value) = value else {
                    return Err("restatement marker without a value".to_owned());
                };
                let mut v = Reader(value);
                v.version()?;
                let records = v.i64()?;
                v.finish("value")?;
                let records =
                    u64::try_from(records).map_err(|_| format!("negative count {records}"))?;
                Record::Restatement { records }
            }
            KEY_OFFSET => {
                let group = k.string()?;
                let topic = k.string()?;
                let partition = k.i32()?;
                k.finish("key")?;
                let value = match value {
                    None => None,
                    Some(value) => {
                        let mut v = Reader(value);
                        v.version()?;
                        let offset = v.i64()?;
                        let leader_epoch = v.i32()?;
                        let metadata = v.string()?;
                        let commit_timestamp_ms = v.i64()?;
                        let expire = v.i64()?;
                        v.finish("value")?;
                        Some(OffsetValue {
                            offset,
                            leader_epoch,
                            metadata,
                            commit_timestamp_ms,
                            expire_timestamp_ms: (expire >= 0).then_some(expire),
                        })
                    }
                };
                Record::Offset {
                    group,
                    topic,
                    partition,
                    value,
                }
            }
            KEY_GROUP => {
                let group = k.string()?;
                k.finish("key")?;
                let value = match value {
                    None => None,
                    Some(value) => Some(decode_group_value(value)?),
                };
                Record::Group { group, value }
            }
            _ => return Ok(None),
        };
        Ok(Some(record))
    }
}

fn decode_group_value(value: &[u8]) -> Result<GroupValue, String> {
    let mut v = Reader(value);
    v.version()?;
    let protocol_type = v.nullable_string()?;
    let generation_id = v.i32()?;
    let protocol_name = v.nullable_string()?;
    let leader = v.nullable_string()?;
    let state_timestamp_ms = v.i64()?;
    let count = v.count()?;
    let mut members = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        let member_id = v.string()?;
        let group_instance_id = v.nullable_string()?;
        let client_id = v.string()?;
        let client_host = v.string()?;
        let rebalance_timeout_ms = v.i32()?;
        let session_timeout_ms = v.i32()?;
        let protocol_count = v.count()?;
        let mut protocols = Vec::with_capacity(protocol_count.min(64));
        for _ in 0..protocol_count {
            let name = v.string()?;
            let metadata = v.bytes()?;
            protocols.push((name, metadata));
        }
        let assignment = v.bytes()?;
        members.push(MemberValue {
            member_id,
            group_instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms,
            session_timeout_ms,
            protocols,
            assignment,
        });
    }
    v.finish("value")?;
    Ok(GroupValue {
        protocol_type,
        generation_id,
        protocol_name,
        leader,
        state_timestamp_ms,
        members,
    })
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    // Lengths come from Kafka wire strings and arrays (i16/i32 lengths), so they fit.
    out.put_i32(i32::try_from(len).unwrap_or(i32::MAX));
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    put_len(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

fn put_nullable_string(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => put_string(out, s),
        None => out.put_i32(-1),
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_len(out, b.len());
    out.extend_from_slice(b);
}

/// A bounds-checked cursor: every read fails cleanly on short or malformed input.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        if self.0.len() < n {
            return Err(format!("needs {n} more bytes, {} left", self.0.len()));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn i16(&mut self) -> Result<i16, String> {
        Ok(self.take(2)?.get_i16())
    }

    fn i32(&mut self) -> Result<i32, String> {
        Ok(self.take(4)?.get_i32())
    }

    fn i64(&mut self) -> Result<i64, String> {
        Ok(self.take(8)?.get_i64())
    }

    fn version(&mut self) -> Result<(), String> {
        match self.i16()? {
            VALUE_VERSION => Ok(()),
            other => Err(format!("unknown value version {other}")),
        }
    }

    fn count(&mut self) -> Result<usize, String> {
        let n = self.i32()?;
        usize::try_from(n).map_err(|_| format!("negative count {n}"))
    }

    fn nullable_len(&mut self) -> Result<Option<usize>, String> {
        match self.i32()? {
            -1 => Ok(None),
            n => usize::try_from(n)
                .map(Some)
                .map_err(|_| format!("negative length {n}")),
        }
    }

    fn nullable_string(&mut self) -> Result<Option<String>, String> {
        let Some(len) = self.nullable_len()? else {
            return Ok(None);
        };
        let raw = self.take(len)?;
        String::from_utf8(raw.to_vec())
            .map(Some)
            .map_err(|_| "string is not UTF-8".to_owned())
    }

    fn string(&mut self) -> Result<String, String> {
        self.nullable_string()?
            .ok_or_else(|| "null where a string is required".to_owned())
    }

    fn bytes(&mut self) -> Result<Bytes, String> {
        let len = self
            .nullable_len()?
            .ok_or_else(|| "null where bytes are required".to_owned())?;
        Ok(Bytes::copy_from_slice(self.take(len)?))
    }

    fn finish(&self, what: &str) -> Result<(), String> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(format!("{} trailing bytes after the {what}", self.0.len()))
        }
    }
}

/// What can go wrong reading or writing `__consumer_offsets` records.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("__consumer_offsets-{partition}: unreadable batch: {source}")]
    Batch {
        partition: i32,
        #[source]
        source: BatchError,
    },
    #[error("__consumer_offsets-{partition}: corrupt record at offset {offset}: {reason}")]
    Corrupt {
        partition: i32,
        offset: i64,
        reason: String,
    },
    #[error("cannot encode __consumer_offsets records: {0}")]
    Encode(#[source] BatchError),
}

/// Encodes `records` as uncompressed record batches laid end to end, each at most about
/// `max_batch_bytes` (a single larger record gets a batch of its own). Empty input gives
/// empty bytes.
pub fn encode_batches(
    records: &[Record],
    timestamp_ms: i64,
    max_batch_bytes: usize,
) -> Result<Bytes, StoreError> {
    let mut out = Vec::new();
    let mut builder = BatchBuilder::new(Compression::None);
    for record in records {
        let key = record.encode_key();
        let value = record.encode_value();
        let size = key.len() + value.as_ref().map_or(0, Vec::len) + 32;
        if !builder.is_empty() && builder.estimated_size() + size > max_batch_bytes {
            let full = std::mem::replace(&mut builder, BatchBuilder::new(Compression::None));
            out.extend_from_slice(&full.build().map_err(StoreError::Encode)?);
        }
        builder.push(timestamp_ms, Some(&key), value.as_deref(), &[]);
    }
    if !builder.is_empty() {
        out.extend_from_slice(&builder.build().map_err(StoreError::Encode)?);
    }
    Ok(Bytes::from(out))
}

/// Decodes the records of one batch read from `__consumer_offsets-{partition}`, with
/// their offsets, skipping records below `from_offset` (the log start offset) and
/// records of unknown key types.
pub fn decode_batch(
    partition: i32,
    batch: Bytes,
    from_offset: i64,
) -> Result<Vec<(i64, Record)>, StoreError> {
    let records =
        Records::decode(batch).map_err(|source| StoreError::Batch { partition, source })?;
    let mut out = Vec::new();
    for record in records {
        let record = record.map_err(|source| StoreError::Batch { partition, source })?;
        if record.offset < from_offset {
            continue;
        }
        let corrupt = |reason: String| StoreError::Corrupt {
            partition,
            offset: record.offset,
            reason,
        };
        let key = record
            .key
            .as_ref()
            .ok_or_else(|| corrupt("record without a key".to_owned()))?;
        match Record::decode(key, record.value.as_deref()).map_err(corrupt)? {
            Some(decoded) => out.push((record.offset, decoded)),
            None => tracing::warn!(
                partition,
                offset = record.offset,
                "skipping __consumer_offsets record of an unknown type"
            ),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_storage::batch::batches;

    fn sample_group() -> GroupValue {
        GroupValue {
            protocol_type: Some("consumer".to_owned()),
            generation_id: 7,
            protocol_name: Some("range".to_owned()),
            leader: Some("c-1".to_owned()),
            state_timestamp_ms: 1_700_000_000_000,
            members: vec![MemberValue {
                member_id: "c-1".to_owned(),
                group_instance_id: Some("instance-a".to_owned()),
                client_id: "c".to_owned(),
                client_host: "/127.0.0.1".to_owned(),
                rebalance_timeout_ms: 300_000,
                session_timeout_ms: 45_000,
                protocols: vec![
                    ("range".to_owned(), Bytes::from_static(b"\x00\x01sub")),
                    ("roundrobin".to_owned(), Bytes::new()),
                ],
                assignment: Bytes::from_static(b"assigned"),
            }],
        }
    }

    fn all_kinds() -> Vec<Record> {
        vec![
            Record::Restatement { records: 3 },
            Record::Offset {
                group: "g".to_owned(),
                topic: "t".to_owned(),
                partition: 4,
                value: Some(OffsetValue {
                    offset: 42,
                    leader_epoch: -1,
                    metadata: "meta ✓".to_owned(),
                    commit_timestamp_ms: 5,
                    expire_timestamp_ms: Some(99),
                }),
            },
            Record::Offset {
                group: "g".to_owned(),
                topic: "t".to_owned(),
                partition: 5,
                value: None,
            },
            Record::Group {
                group: "g".to_owned(),
                value: Some(sample_group()),
            },
            Record::Group {
                group: "g".to_owned(),
                value: None,
            },
        ]
    }

    #[test]
    fn java_hash_code_matches_java() {
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("a"), 97);
        assert_eq!(java_string_hash("abc"), 96354);
        assert_eq!(java_string_hash("hello"), 99162322);
        // A character outside the BMP counts as two UTF-16 code units (a surrogate pair).
        assert_eq!(java_string_hash("😀"), 0xD83D * 31 + 0xDE00);
        // The classic string whose hashCode is Integer.MIN_VALUE.
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
    }

    #[test]
    fn partition_uses_kafka_abs() {
        assert_eq!(kafka_abs(-5), 5);
        assert_eq!(kafka_abs(i32::MIN), 0);
        assert_eq!(partition_for("polygenelubricants", 50), 0);
        assert_eq!(partition_for("abc", 50), 96354 % 50);
        // Negative hash codes: abs first, then modulo.
        let h = java_string_hash("my-consumer-group");
        assert_eq!(partition_for("my-consumer-group", 50), h.abs() % 50);
        for id in ["", "x", "group-1", "ünïcødé"] {
            assert!((0..50).contains(&partition_for(id, 50)));
        }
    }

    #[test]
    fn records_round_trip() {
        for record in all_kinds() {
            let key = record.encode_key();
            let value = record.encode_value();
            let back = Record::decode(&key, value.as_deref()).unwrap().unwrap();
            assert_eq!(back, record);
        }
    }

    #[test]
    fn key_layout_is_as_documented() {
        let key = Record::Offset {
            group: "g".to_owned(),
            topic: "tp".to_owned(),
            partition: 258,
            value: None,
        }
        .encode_key();
        assert_eq!(
            key,
            [0, 1, 0, 0, 0, 1, b'g', 0, 0, 0, 2, b't', b'p', 0, 0, 1, 2]
        );
    }

    #[test]
    fn unknown_key_types_are_skipped_and_bad_values_rejected() {
        assert_eq!(Record::decode(&[0, 9, 1, 2], Some(&[1])).unwrap(), None);
        let record = &all_kinds()[1];
        let key = record.encode_key();
        let mut value = record.encode_value().unwrap();
        // Truncated, trailing bytes, unknown version, trailing key bytes.
        assert!(Record::decode(&key, Some(&value[..value.len() - 1])).is_err());
        value.push(0);
        assert!(Record::decode(&key, Some(&value)).is_err());
        value.pop();
        value[1] = 9;
        assert!(Record::decode(&key, Some(&value)).is_err());
        let mut long_key = key.clone();
        long_key.push(1);
        assert!(Record::decode(&long_key, None).is_err());
        assert!(Record::decode(&[], None).is_err());
    }

    #[test]
    fn batches_split_and_decode_back_with_offsets() {
        let mut records = Vec::new();
        for i in 0..500 {
            records.push(Record::Offset {
                group: "group".to_owned(),
                topic: format!("topic-{i}"),
                partition: i,
                value: Some(OffsetValue {
                    offset: i64::from(i),
                    leader_epoch: 0,
                    metadata: "x".repeat(50),
                    commit_timestamp_ms: 1,
                    expire_timestamp_ms: None,
                }),
            });
        }
        let bytes = encode_batches(&records, 1, 4096).unwrap();
        let mut decoded = Vec::new();
        let mut base = 0i64;
        for batch in batches(&bytes) {
            let mut batch = batch.unwrap().to_vec();
            // Assign offsets as the log would.
            batch[..8].copy_from_slice(&base.to_be_bytes());
            let records = decode_batch(3, Bytes::from(batch), 0).unwrap();
            base += records.len() as i64;
            decoded.extend(records);
        }
        assert!(batches(&bytes).count() > 5);
        assert_eq!(decoded.len(), 500);
        for (i, (offset, record)) in decoded.into_iter().enumerate() {
            assert_eq!(offset, i as i64);
            assert_eq!(record, records[i]);
        }
        assert!(encode_batches(&[], 1, 4096).unwrap().is_empty());
    }

    #[test]
    fn records_below_the_start_offset_are_skipped() {
        let bytes = encode_batches(&all_kinds(), 1, 1 << 20).unwrap();
        let decoded = decode_batch(0, bytes, 2).unwrap();
        assert_eq!(decoded.len(), 3);
        assert_eq!(decoded[0].0, 2);
    }

    #[test]
    fn corrupt_batches_are_errors() {
        let bytes = encode_batches(&all_kinds(), 1, 1 << 20).unwrap();
        let short = bytes.slice(..bytes.len() - 3);
        assert!(matches!(
            decode_batch(0, short, 0),
            Err(StoreError::Batch { .. })
        ));
        let mut builder = BatchBuilder::new(Compression::None);
        builder.push(1, None, Some(b"v"), &[]);
        assert!(matches!(
            decode_batch(0, builder.build().unwrap(), 0),
            Err(StoreError::Corrupt { .. })
        ));
    }
}
