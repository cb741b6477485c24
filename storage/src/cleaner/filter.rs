//! Filtering one stored record batch against the offset map: which records a clean
//! keeps, and the batch that holds them.
//!
//! Rules (Kafka's `LogCleaner.shouldRetainRecord`, with KIP-534's delete horizon):
//! - a record without a key is kept (it can only predate `cleanup.policy=compact`, since
//!   a compacted log refuses keyless records; Kafka's cleaner drops them instead);
//! - a keyed record is dropped when the map holds a later offset for its key;
//! - a tombstone (null value) that is its key's latest is kept until its batch's delete
//!   horizon has passed; a tombstone at or after the end of the offset map's range is
//!   not considered at all (kept, not stamped). The first clean that keeps a tombstone in a batch without a
//!   horizon stamps one (`now + delete.retention.ms`) into the batch: the base timestamp
//!   becomes the horizon, the attributes get the has-delete-horizon bit, and every kept
//!   record's timestamp delta is re-encoded against it so record timestamps do not move
//!   (as Kafka 2.8+ writes such batches);
//! - control batches are copied unchanged and are not in the map.
//!
//! The output keeps the batch's header fields: base offset, last offset delta (so the
//! batch still spans the same offsets and the next batch still follows it), partition
//! leader epoch, producer id/epoch/base sequence, codec, timestamp type. Kept records
//! keep their exact bytes (offset and timestamp deltas, headers); only the length, the
//! record count, the CRC, the max timestamp (CreateTime: the largest of the records
//! kept, as Kafka's `filterTo` computes it, so that ListOffsets -3, the time index and
//! retention.ms do not go by a removed record) and, when stamping, the base timestamp
//! and the attribute bit change.
//! A compressed batch is decompressed, filtered and compressed again with its codec (at
//! the codec's default level; the producer's level is not recorded). A batch whose every
//! record is kept and that needs no stamp is not rewritten at all.
//!
//! A batch whose every record goes is kept as a bare 61-byte header with a record count
//! of 0 and codec none (Kafka's `writeEmptyHeader` for a producer's last batch): segment
//! scans here check that each batch starts where the previous one ended, and producer
//! state is rebuilt from batch headers, so keeping every header keeps both intact. Its
//! max timestamp stays what it was, as in Kafka: no read returns a record of it, and a
//! segment holding only such batches still ages out by retention.ms from its old
//! timestamps (a fresh value, or none, which falls back to the file's modification time,
//! would keep it forever under frequent cleans). ListOffsets -3 therefore does not trust
//! a segment's max timestamp alone (see `PartitionLog::max_timestamp_offset`).
//!
//! Consecutive bare headers of batches without a producer id, with the same leader epoch
//! and attributes, are merged into one spanning their offsets ([`merge_empty`]): they
//! carry no producer state, so nothing needs them apart, and a log of many small plain
//! batches superseded by later ones (the group coordinator writes one batch per offset
//! commit to `__consumer_offsets`) would otherwise keep a header per batch forever, and
//! grow with every commit however often it is cleaned. Kafka drops such batches outright;
//! merging keeps the segment's batches contiguous for the scans above.

use bytes::Bytes;

use super::offset_map::OffsetMap;
use crate::batch::header::{
    ATTRIBUTES_AT, BASE_TIMESTAMP_AT, CRC_AT, DELETE_HORIZON_BIT, LAST_OFFSET_DELTA_AT, LENGTH_AT,
    MAX_TIMESTAMP_AT, NO_PRODUCER_ID, RECORDS_COUNT_AT,
};
use crate::batch::varint::{decode_varint, decode_varlong, encode_varint, encode_varlong};
use crate::batch::{
    compute_crc, validate_stored_batch, BatchHeader, Compression, Records, TimestampType,
    HEADER_SIZE, LOG_OVERHEAD, NO_TIMESTAMP,
};
use crate::error::BatchError;

/// The attribute bits naming the compression codec.
const CODEC_MASK: i16 = 0x07;

/// What decides a record's fate.
pub(crate) struct Policy<'a> {
    pub map: &'a OffsetMap,
    pub now_ms: i64,
    pub delete_retention_ms: i64,
    /// The end of the range the map covers (Kafka's upper bound offset of the cleaning
    /// round). A tombstone at or after it is left alone, neither stamped nor removed: the
    /// map has not seen it, so the older values of its key were not removed with it,
    /// and removing it later would bring them back.
    pub map_end: i64,
    /// Most bytes one batch's records may decompress to.
    pub decompress_limit: usize,
}

/// The batch a clean writes in place of the input.
#[derive(Debug)]
pub(crate) enum Filtered {
    /// Every record kept, nothing to stamp: copy the input byte for byte.
    Unchanged,
    /// The new batch bytes.
    Rewritten(Vec<u8>),
}

/// The result of filtering one batch.
#[derive(Debug)]
pub(crate) struct FilterResult {
    pub batch: Filtered,
    pub records_removed: u64,
    pub tombstones_removed: u64,
}

/// One bare header (no records, codec none) spanning `first` and `second`, if both are
/// bare headers of batches without a producer id, with the same leader epoch and
/// attributes, `second` starting where `first` ends and the span fitting a batch's
/// offset delta; `None` otherwise. The merged header keeps `first`'s base offset and base
/// timestamp and the larger max timestamp (see the module docs).
pub(crate) fn merge_empty(first: &[u8], second: &[u8]) -> Option<Vec<u8>> {
    let (a, b) = (bare(first)?, bare(second)?);
    if a.next_offset() != b.base_offset()
        || a.partition_leader_epoch() != b.partition_leader_epoch()
        || a.attributes() != b.attributes()
    {
        return None;
    }
    let delta = i32::try_from(b.next_offset() - 1 - a.base_offset()).ok()?;
    let mut out = first.to_vec();
    out[LAST_OFFSET_DELTA_AT..LAST_OFFSET_DELTA_AT + 4].copy_from_slice(&delta.to_be_bytes());
    let max = a.max_timestamp().max(b.max_timestamp());
    out[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&max.to_be_bytes());
    let crc = compute_crc(&out);
    out[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    Some(out)
}

/// `bytes`' header if it is a bare header (no records, codec none) of a batch without a
/// producer id: one [`merge_empty`] may merge, or [`rebase_bare`] re-base.
fn bare(bytes: &[u8]) -> Option<BatchHeader<'_>> {
    let header = BatchHeader::new(bytes).ok()?;
    (bytes.len() == HEADER_SIZE
        && header.records_count() == 0
        && header.producer_id() == NO_PRODUCER_ID
        && !header.is_control()
        && !header.is_transactional()
        && header.attributes() & CODEC_MASK == 0)
        .then_some(header)
}

/// The part of a bare header without a producer id (see [`bare`]) from `base` on, if
/// `base` lies strictly inside the offsets it spans; `None` otherwise.
///
/// Replicas clean their own copies, so a leader may have merged headers where a follower
/// that was behind still ends inside the merged span: its next fetch returns the merged
/// header, which starts below its log end. Nothing in the header is needed below the
/// follower's end (no records, no producer), so the follower appends the header's tail
/// instead (`PartitionLog::append_replicated`).
pub(crate) fn rebase_bare(batch: &[u8], base: i64) -> Option<Vec<u8>> {
    let header = bare(batch)?;
    if base <= header.base_offset() || base >= header.next_offset() {
        return None;
    }
    let delta = i32::try_from(header.next_offset() - 1 - base).ok()?;
    let mut out = batch.to_vec();
    crate::batch::patch_base_offset(&mut out, base);
    out[LAST_OFFSET_DELTA_AT..LAST_OFFSET_DELTA_AT + 4].copy_from_slice(&delta.to_be_bytes());
    let crc = compute_crc(&out);
    out[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    Some(out)
}

/// Filters one stored batch (exactly one batch's bytes). Fails on a batch that does not
/// validate (CRC, framing, records): the caller stops the clean.
pub(crate) fn filter_batch(batch: &Bytes, policy: &Policy<'_>) -> Result<FilterResult, BatchError> {
    let header = validate_stored_batch(batch)?;
    let unchanged = FilterResult {
        batch: Filtered::Unchanged,
        records_removed: 0,
        tombstones_removed: 0,
    };
    if header.is_control() || header.records_count() == 0 {
        return Ok(unchanged);
    }
    let codec = header.compression()?;
    let horizon = header.has_delete_horizon().then(|| header.base_timestamp());
    let log_append_time = header.timestamp_type() == TimestampType::LogAppendTime;
    let mut records = Records::decode_with_limit(batch.clone(), policy.decompress_limit)?;
    // (start, end, timestamp) of each kept record in the record area.
    let mut kept: Vec<(usize, usize, i64)> = Vec::new();
    let mut removed = 0u64;
    let mut tombstones_removed = 0u64;
    let mut keeps_tombstone = false;
    loop {
        let start = records.area_position();
        let Some(record) = records.next() else { break };
        let record = record?;
        let end = records.area_position();
        let keep = match &record.key {
            None => true,
            Some(key) => {
                let latest = policy.map.get(key).is_none_or(|at| record.offset >= at);
                if !latest {
                    false
                } else if record.value.is_some() || record.offset >= policy.map_end {
                    true
                } else {
                    let keep = horizon.is_none_or(|h| policy.now_ms < h);
                    if keep {
                        keeps_tombstone = true;
                    } else {
                        tombstones_removed += 1;
                    }
                    keep
                }
            }
        };
        if keep {
            kept.push((start, end, record.timestamp));
        } else {
            removed += 1;
        }
    }
    let stamp = (horizon.is_none() && keeps_tombstone)
        .then(|| policy.now_ms.saturating_add(policy.delete_retention_ms));
    if removed == 0 && stamp.is_none() {
        return Ok(unchanged);
    }

    let area = records.area();
    let mut plain = Vec::with_capacity(kept.iter().map(|(s, e, _)| e - s).sum::<usize>() + 16);
    for &(start, end, timestamp) in &kept {
        let raw = &area[start..end];
        match stamp {
            // LogAppendTime records all read as the batch's max timestamp: their deltas
            // mean nothing and stay as they are.
            Some(new_base) if !log_append_time => {
                rebase_timestamp(raw, timestamp.wrapping_sub(new_base), &mut plain)?
            }
            _ => plain.extend_from_slice(raw),
        }
    }
    let body = if codec == Compression::None || kept.is_empty() {
        plain
    } else {
        codec.compress(&plain)?
    };
    let mut out = Vec::with_capacity(HEADER_SIZE + body.len());
    out.extend_from_slice(&batch[..HEADER_SIZE]);
    out.extend_from_slice(&body);
    let length =
        i32::try_from(out.len() - LOG_OVERHEAD).map_err(|_| BatchError::InvalidLength {
            length: out.len() as i64,
        })?;
    out[LENGTH_AT..LENGTH_AT + 4].copy_from_slice(&length.to_be_bytes());
    let count = i32::try_from(kept.len()).map_err(|_| BatchError::CountMismatch {
        reason: format!("{} records kept", kept.len()),
    })?;
    out[RECORDS_COUNT_AT..RECORDS_COUNT_AT + 4].copy_from_slice(&count.to_be_bytes());
    let mut attributes = header.attributes();
    if let Some(new_base) = stamp {
        attributes |= DELETE_HORIZON_BIT;
        out[BASE_TIMESTAMP_AT..BASE_TIMESTAMP_AT + 8].copy_from_slice(&new_base.to_be_bytes());
    }
    if kept.is_empty() {
        // No body to decompress: an emptied batch says so (Kafka's `writeEmptyHeader`
        // writes codec none too), or a reader would try to decompress nothing.
        attributes &= !CODEC_MASK;
    } else if !log_append_time {
        // The largest timestamp of the records kept, not of the ones removed: ListOffsets
        // -3, the time index and retention.ms go by it (Kafka's `filterTo` rebuilds a
        // kept batch's max timestamp the same way). LogAppendTime records all carry the
        // header's max timestamp, which stays.
        let max = kept
            .iter()
            .map(|&(_, _, ts)| ts)
            .max()
            .unwrap_or(NO_TIMESTAMP);
        out[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&max.to_be_bytes());
    }
    out[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
    let crc = compute_crc(&out);
    out[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(FilterResult {
        batch: Filtered::Rewritten(out),
        records_removed: removed,
        tombstones_removed,
    })
}

/// Appends `raw` (one encoded record) to `out` with its timestamp delta replaced by
/// `delta`; every other byte of the record is kept.
fn rebase_timestamp(raw: &[u8], delta: i64, out: &mut Vec<u8>) -> Result<(), BatchError> {
    let (_, prefix) = decode_varint(raw)?;
    let body = raw.get(prefix..).unwrap_or(&[]);
    let attributes = *body.first().ok_or(BatchError::InvalidRecord {
        reason: "record without attributes".into(),
    })?;
    let (_, delta_len) = decode_varlong(body.get(1..).unwrap_or(&[]))?;
    let rest = body.get(1 + delta_len..).unwrap_or(&[]);
    let mut new_body = Vec::with_capacity(body.len() + 10);
    new_body.push(attributes);
    encode_varlong(delta, &mut new_body);
    new_body.extend_from_slice(rest);
    let len = i32::try_from(new_body.len()).map_err(|_| BatchError::InvalidRecord {
        reason: "record too long".into(),
    })?;
    encode_varint(len, out);
    out.extend_from_slice(&new_body);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{BatchBuilder, BatchHeader, Record};

    const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    /// Records (key, value) at offsets base.. with timestamps 1000 + i, from producer 9.
    fn batch(codec: Compression, base: i64, records: &[(&str, Option<&str>)]) -> Bytes {
        let mut builder = BatchBuilder::new(codec).producer(9, 3, 17);
        for (i, (key, value)) in records.iter().enumerate() {
            let key = (!key.is_empty()).then_some(key.as_bytes());
            builder.push(
                1000 + i as i64,
                key,
                value.map(str::as_bytes),
                &[("h", Some(b"v"))],
            );
        }
        let mut bytes = builder.build().unwrap().to_vec();
        crate::batch::patch_base_offset(&mut bytes, base);
        crate::batch::patch_leader_epoch(&mut bytes, 4);
        Bytes::from(bytes)
    }

    fn records(batch: &[u8]) -> Vec<Record> {
        Records::decode(Bytes::copy_from_slice(batch))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    fn policy(map: &OffsetMap, now_ms: i64) -> Policy<'_> {
        Policy {
            map,
            now_ms,
            delete_retention_ms: 500,
            map_end: i64::MAX,
            decompress_limit: 1 << 20,
        }
    }

    fn rewritten(result: &FilterResult) -> &[u8] {
        match &result.batch {
            Filtered::Rewritten(bytes) => bytes,
            Filtered::Unchanged => panic!("expected a rewrite"),
        }
    }

    fn assert_same_header(a: &[u8], b: &[u8]) {
        let (a, b) = (BatchHeader::new(a).unwrap(), BatchHeader::new(b).unwrap());
        assert_eq!(a.base_offset(), b.base_offset());
        assert_eq!(a.last_offset_delta(), b.last_offset_delta());
        assert_eq!(a.partition_leader_epoch(), b.partition_leader_epoch());
        assert_eq!(a.producer_id(), b.producer_id());
        assert_eq!(a.producer_epoch(), b.producer_epoch());
        assert_eq!(a.base_sequence(), b.base_sequence());
        assert_eq!(a.timestamp_type(), b.timestamp_type());
        assert_eq!(a.is_transactional(), b.is_transactional());
    }

    /// The largest timestamp of `batch`'s records.
    fn max_record_timestamp(batch: &[u8]) -> i64 {
        records(batch).iter().map(|r| r.timestamp).max().unwrap()
    }

    #[test]
    fn superseded_records_go_in_every_codec_and_the_rest_keep_their_bytes() {
        for codec in ALL {
            let input = batch(
                codec,
                100,
                &[
                    ("a", Some("1")),
                    ("b", Some("2")),
                    ("a", Some("3")),
                    ("", Some("nokey")),
                ],
            );
            let mut map = OffsetMap::with_buffer(1 << 12);
            map.put(b"a", 102);
            map.put(b"b", 250);
            let result = filter_batch(&input, &policy(&map, 0)).unwrap();
            assert_eq!(result.records_removed, 2, "{codec:?}");
            let out = rewritten(&result);
            validate_stored_batch(out).expect("valid CRC and framing");
            assert_same_header(&input, out);
            let header = BatchHeader::new(out).unwrap();
            assert_eq!(header.compression().unwrap(), codec);
            assert_eq!(header.records_count(), 2);
            assert_eq!(header.max_timestamp(), 1003);
            let before = records(&input);
            let after = records(out);
            assert_eq!(
                after,
                vec![before[2].clone(), before[3].clone()],
                "{codec:?}"
            );
        }
    }

    #[test]
    fn a_batch_with_every_record_kept_is_not_rewritten() {
        let input = batch(Compression::Zstd, 0, &[("a", Some("1")), ("b", Some("2"))]);
        let mut map = OffsetMap::with_buffer(1 << 12);
        map.put(b"a", 0);
        let result = filter_batch(&input, &policy(&map, 0)).unwrap();
        assert!(matches!(result.batch, Filtered::Unchanged));
    }

    #[test]
    fn an_emptied_batch_keeps_its_header_for_producer_state_and_offsets() {
        for codec in ALL {
            let input = batch(codec, 40, &[("a", Some("1")), ("a", Some("2"))]);
            let mut map = OffsetMap::with_buffer(1 << 12);
            map.put(b"a", 99);
            let result = filter_batch(&input, &policy(&map, 0)).unwrap();
            assert_eq!(result.records_removed, 2);
            let out = rewritten(&result);
            assert_eq!(out.len(), HEADER_SIZE, "{codec:?}");
            validate_stored_batch(out).unwrap();
            assert_same_header(&input, out);
            let header = BatchHeader::new(out).unwrap();
            assert_eq!(header.records_count(), 0);
            assert_eq!(header.compression().unwrap(), Compression::None, "no body");
            assert_eq!(
                header.max_timestamp(),
                BatchHeader::new(&input).unwrap().max_timestamp(),
                "kept, as Kafka's writeEmptyHeader"
            );
            assert_eq!(
                header.last_sequence(),
                BatchHeader::new(&input).unwrap().last_sequence()
            );
            assert!(records(out).is_empty(), "{codec:?} decodes as no records");
        }
    }

    /// The bare header `records` at `base` (leader epoch 4) leave when all are superseded,
    /// with `producer` (`None`: a plain batch).
    fn emptied(base: i64, records: usize, producer: Option<i64>) -> Vec<u8> {
        let mut builder = BatchBuilder::new(Compression::None);
        if let Some(id) = producer {
            builder = builder.producer(id, 0, 0);
        }
        for i in 0..records {
            builder.push(1000 + base + i as i64, Some(b"k"), Some(b"v"), &[]);
        }
        let mut bytes = builder.build().unwrap().to_vec();
        crate::batch::patch_base_offset(&mut bytes, base);
        crate::batch::patch_leader_epoch(&mut bytes, 4);
        let mut map = OffsetMap::with_buffer(1 << 12);
        map.put(b"k", 1 << 40);
        let result = filter_batch(&Bytes::from(bytes), &policy(&map, 0)).unwrap();
        rewritten(&result).to_vec()
    }

    #[test]
    fn bare_headers_of_plain_batches_merge_into_one_spanning_them() {
        let (a, b) = (emptied(10, 3, None), emptied(13, 2, None));
        let merged = merge_empty(&a, &b).expect("contiguous plain bare headers merge");
        validate_stored_batch(&merged).unwrap();
        let header = BatchHeader::new(&merged).unwrap();
        assert_eq!(header.base_offset(), 10);
        assert_eq!(header.next_offset(), 15);
        assert_eq!(header.records_count(), 0);
        assert_eq!(header.partition_leader_epoch(), 4);
        assert_eq!(
            header.base_timestamp(),
            BatchHeader::new(&a).unwrap().base_timestamp()
        );
        assert_eq!(
            header.max_timestamp(),
            BatchHeader::new(&b).unwrap().max_timestamp()
        );
        // And again with the next one: runs of any length become one header.
        let c = emptied(15, 1, None);
        let longer = merge_empty(&merged, &c).unwrap();
        assert_eq!(BatchHeader::new(&longer).unwrap().next_offset(), 16);

        // Not merged: a gap, an idempotent producer's header (its producer state), a
        // batch that still has records, another leader epoch.
        assert!(merge_empty(&a, &emptied(14, 1, None)).is_none());
        assert!(merge_empty(&a, &emptied(13, 1, Some(7))).is_none());
        assert!(merge_empty(&emptied(10, 3, Some(7)), &emptied(13, 1, Some(7))).is_none());
        assert!(merge_empty(&a, &batch(Compression::None, 13, &[("x", Some("1"))])).is_none());
        let mut other_epoch = emptied(13, 2, None);
        crate::batch::patch_leader_epoch(&mut other_epoch, 5);
        assert!(merge_empty(&a, &other_epoch).is_none());
    }

    #[test]
    fn a_bare_plain_header_is_rebased_only_from_inside_its_span() {
        let merged = merge_empty(&emptied(10, 3, None), &emptied(13, 2, None)).unwrap();
        let tail = rebase_bare(&merged, 12).expect("12 is inside 10..15");
        validate_stored_batch(&tail).unwrap();
        let header = BatchHeader::new(&tail).unwrap();
        assert_eq!((header.base_offset(), header.next_offset()), (12, 15));
        assert_eq!(header.records_count(), 0);
        for outside in [9, 10, 15, 16] {
            assert!(rebase_bare(&merged, outside).is_none(), "{outside}");
        }
        assert!(
            rebase_bare(&emptied(10, 3, Some(7)), 11).is_none(),
            "producer state"
        );
        let with_records = batch(Compression::None, 10, &[("a", Some("1")), ("b", None)]);
        assert!(rebase_bare(&with_records, 11).is_none());
    }

    #[test]
    fn tombstones_get_a_delete_horizon_then_go_once_it_passes() {
        for codec in ALL {
            let input = batch(codec, 0, &[("a", None), ("b", Some("x")), ("c", None)]);
            let mut map = OffsetMap::with_buffer(1 << 12);
            map.put(b"c", 10);
            // First clean at now = 5000: "a" is kept and stamped, "c" is superseded.
            let first = filter_batch(&input, &policy(&map, 5000)).unwrap();
            let stamped = rewritten(&first).to_vec();
            validate_stored_batch(&stamped).unwrap();
            assert_same_header(&input, &stamped);
            let header = BatchHeader::new(&stamped).unwrap();
            assert_eq!(header.max_timestamp(), 1001, "the kept records' largest");
            assert!(header.has_delete_horizon());
            assert_eq!(header.base_timestamp(), 5500);
            let kept = records(&stamped);
            let before = records(&input);
            assert_eq!(
                kept,
                vec![before[0].clone(), before[1].clone()],
                "timestamps kept"
            );
            // Before the horizon, nothing more changes.
            let again = filter_batch(&Bytes::from(stamped.clone()), &policy(&map, 5499)).unwrap();
            assert!(matches!(again.batch, Filtered::Unchanged), "{codec:?}");
            // At the horizon the tombstone goes, the value stays.
            let late = filter_batch(&Bytes::from(stamped.clone()), &policy(&map, 5500)).unwrap();
            assert_eq!(late.tombstones_removed, 1);
            let out = rewritten(&late);
            validate_stored_batch(out).unwrap();
            assert_eq!(records(out), vec![before[1].clone()]);
        }
    }

    #[test]
    fn a_rewritten_batch_carries_the_max_timestamp_of_the_records_it_keeps() {
        for codec in ALL {
            // Timestamps 1000, 1001, 1002: the newest record goes.
            let input = batch(codec, 0, &[("a", Some("1")), ("b", Some("2")), ("c", None)]);
            let mut map = OffsetMap::with_buffer(1 << 12);
            map.put(b"c", 9);
            let out = filter_batch(&input, &policy(&map, 0)).unwrap();
            let out = rewritten(&out);
            validate_stored_batch(out).unwrap();
            assert_eq!(BatchHeader::new(out).unwrap().max_timestamp(), 1001);
            assert_eq!(max_record_timestamp(out), 1001, "{codec:?}");
        }
        // LogAppendTime: every record reads as the header's max timestamp, which stays.
        let mut input = batch(Compression::None, 0, &[("a", Some("1")), ("c", Some("2"))]).to_vec();
        crate::batch::patch_log_append_time(&mut input, 7777);
        let mut map = OffsetMap::with_buffer(1 << 12);
        map.put(b"c", 9);
        let out = filter_batch(&Bytes::from(input), &policy(&map, 0)).unwrap();
        let out = rewritten(&out);
        validate_stored_batch(out).unwrap();
        assert_eq!(BatchHeader::new(out).unwrap().max_timestamp(), 7777);
        assert_eq!(max_record_timestamp(out), 7777);
    }

    #[test]
    fn a_tombstone_past_the_map_is_neither_stamped_nor_removed() {
        let input = batch(Compression::None, 10, &[("a", None), ("b", None)]);
        let map = OffsetMap::with_buffer(1 << 12);
        let past = Policy {
            map_end: 11,
            ..policy(&map, 5000)
        };
        let result = filter_batch(&input, &past).unwrap();
        // "a" (offset 10) is inside the map's range and gets a horizon; "b" does not count.
        let out = rewritten(&result).to_vec();
        assert!(BatchHeader::new(&out).unwrap().has_delete_horizon());
        let late = Policy {
            map_end: 11,
            ..policy(&map, 10_000)
        };
        let result = filter_batch(&Bytes::from(out), &late).unwrap();
        assert_eq!(result.tombstones_removed, 1);
        let kept = records(rewritten(&result));
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].offset, 11);
    }

    #[test]
    fn control_batches_and_corrupt_batches() {
        let input = batch(Compression::None, 0, &[("a", Some("1"))]);
        let mut corrupt = input.to_vec();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 1;
        let map = OffsetMap::with_buffer(1 << 12);
        assert!(matches!(
            filter_batch(&Bytes::from(corrupt), &policy(&map, 0)),
            Err(BatchError::CrcMismatch { .. })
        ));
        let mut control = input.to_vec();
        control[ATTRIBUTES_AT + 1] |= 0x20;
        let crc = compute_crc(&control);
        control[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        let mut map = OffsetMap::with_buffer(1 << 12);
        map.put(b"a", 5);
        let result = filter_batch(&Bytes::from(control), &policy(&map, 0)).unwrap();
        assert!(matches!(result.batch, Filtered::Unchanged));
    }
}
