//! The produce path's check of every record in a batch, before anything is stored.
//!
//! A batch whose header and CRC are fine can still hold records no consumer can decode:
//! a value length running past its record, a payload that does not decompress, offset
//! deltas that repeat, fewer records than the header counts. Stored, such a batch breaks
//! the partition for every consumer at that offset, forever. So, as Kafka's
//! `LogValidator` does, every record of every produced batch is decoded here, for every
//! codec, and the batch is refused on the first fault, with a message saying which record
//! and what is wrong.
//!
//! What [`check_records`] requires of the record area (decompressed first if the
//! attributes name a codec):
//!
//! - exactly `records_count` records, tiling the area with no byte left over;
//! - each record's length prefix is a valid varint >= 0 and its fields use exactly that
//!   many bytes: attributes, timestamp delta (varlong), offset delta (varint), key and
//!   value (length -1 = null, else that many bytes present), header count >= 0, and each
//!   header's key (not null, UTF-8, as consumers decode it) and value;
//! - offset deltas are exactly `0, 1, ..., count - 1`, in order (the header's last offset
//!   delta is checked against the count by the caller).
//!
//! A batch that breaks any of those is refused at its first fault ([`BatchError`]'s
//! decoding variants). Records that decode but may not be stored are collected instead,
//! each with its index in the batch, and refused together
//! ([`BatchError::RejectedRecords`], Kafka's per-record errors of KIP-467), as Kafka's
//! `LogValidator.validateRecord` does, checking in its order:
//!
//! - on a compacted topic ([`RecordChecks::keys_required`]) every record has a key
//!   (an empty key is a key; a null one is not);
//! - each record's timestamp (base timestamp + delta, wrapping as in Java), when
//!   [`TimestampBounds`] are given (topics with CreateTime), lies within them (KIP-937,
//!   `message.timestamp.before.max.ms` / `message.timestamp.after.max.ms`); records
//!   with no timestamp (-1) are not bound, as in Kafka.
//!
//! It returns the largest record timestamp, which the log stores as the batch's max
//! timestamp (Kafka also rewrites a max timestamp that disagrees with the records).
//!
//! Cost: the walk reads each record's few varints and allocates nothing (but the list of
//! refused records, when there are any); an uncompressed
//! batch is read in place, never copied. A compressed batch is decompressed into one
//! buffer per thread that is reused for every batch (kept up to [`RETAINED_SCRATCH`]
//! bytes between batches), and decompression stops at `max_decompressed_bytes`, so a
//! small batch cannot expand into gigabytes.

use std::cell::RefCell;

use super::header::{BatchHeader, HEADER_SIZE};
use super::Compression;
use crate::error::BatchError;

/// The most refused records a batch's answer names one by one; the count of all is kept.
pub const MAX_NAMED_REJECTIONS: usize = 1000;

/// The timestamp of a record that has none (Kafka's `RecordBatch.NO_TIMESTAMP`).
pub const NO_TIMESTAMP: i64 = -1;

/// Capacity of the per-thread decompression buffer kept between batches. A larger batch
/// still decompresses (up to the limit), into a buffer that is freed afterwards, so one
/// big batch does not pin its size in every worker thread.
pub const RETAINED_SCRATCH: usize = 4 << 20;

thread_local! {
    /// The decompressed record area of the batch being checked on this thread.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Kafka's KIP-937 bounds on CreateTime record timestamps, relative to the broker's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampBounds {
    /// The broker's clock when the batch arrived.
    pub now_ms: i64,
    /// `message.timestamp.before.max.ms`: how far in the past a timestamp may be.
    pub before_max_ms: i64,
    /// `message.timestamp.after.max.ms`: how far in the future a timestamp may be.
    pub after_max_ms: i64,
}

impl TimestampBounds {
    /// The oldest and newest timestamps accepted, inclusive.
    pub fn range(&self) -> (i64, i64) {
        (
            self.now_ms.saturating_sub(self.before_max_ms.max(0)),
            self.now_ms.saturating_add(self.after_max_ms.max(0)),
        )
    }
}

/// What a produced batch's records are checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordChecks {
    /// Most bytes a compressed batch's records may decompress to.
    pub max_decompressed_bytes: usize,
    /// Timestamp bounds, or `None` when they do not apply (LogAppendTime topics).
    pub timestamps: Option<TimestampBounds>,
    /// Every record must have a key (`cleanup.policy` includes `compact`: the cleaner
    /// keeps the latest record per key, so a record without one has no place).
    pub keys_required: bool,
}

/// A record refused for what it holds; see the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordRejection {
    /// The record's position in its batch (0-based), as KIP-467's `batch_index`.
    pub batch_index: usize,
    pub reason: Rejection,
}

/// Why a record was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// No key, on a topic that is compacted.
    MissingKey,
    /// A CreateTime timestamp outside `[oldest, newest]`.
    TimestampOutOfRange {
        timestamp: i64,
        oldest: i64,
        newest: i64,
    },
}

impl RecordRejection {
    /// Kafka's message for this record (`LogValidator`'s wording, which clients show to
    /// users); `topic_partition` is `topic-partition`, as Kafka names it there.
    pub fn kafka_message(&self, topic_partition: &str) -> String {
        match self.reason {
            Rejection::MissingKey => format!(
                "Compacted topic cannot accept message without key in topic partition {topic_partition}"
            ),
            // The offset is the record's offset delta: offsets are not assigned yet.
            Rejection::TimestampOutOfRange {
                timestamp,
                oldest,
                newest,
            } => format!(
                "Timestamp {timestamp} of message with offset {} is out of range. \
                 The timestamp should be within [{oldest}, {newest}]",
                self.batch_index
            ),
        }
    }
}

impl std::fmt::Display for RecordRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.reason {
            Rejection::MissingKey => write!(
                f,
                "record {} has no key, which a compacted topic requires",
                self.batch_index
            ),
            Rejection::TimestampOutOfRange {
                timestamp,
                oldest,
                newest,
            } => write!(
                f,
                "record {} has timestamp {timestamp}, outside [{oldest}, {newest}]",
                self.batch_index
            ),
        }
    }
}

impl Default for RecordChecks {
    /// The decompression limit [`super::records::DEFAULT_DECOMPRESSION_LIMIT`], no
    /// timestamp bounds.
    fn default() -> Self {
        RecordChecks {
            max_decompressed_bytes: super::records::DEFAULT_DECOMPRESSION_LIMIT,
            timestamps: None,
            keys_required: false,
        }
    }
}

/// Checks every record of `batch` (one whole batch, header already validated) as the
/// module docs say; returns the largest record timestamp ([`NO_TIMESTAMP`] if none has
/// one).
pub fn check_records(
    batch: &[u8],
    header: &BatchHeader<'_>,
    checks: &RecordChecks,
) -> Result<i64, BatchError> {
    let count = usize::try_from(header.records_count()).map_err(|_| BatchError::CountMismatch {
        reason: format!("negative record count {}", header.records_count()),
    })?;
    let area = batch.get(HEADER_SIZE..).unwrap_or(&[]);
    let walk = |area: &[u8]| walk_records(area, count, header.base_timestamp(), checks);
    match header.compression()? {
        Compression::None => walk(area),
        codec => SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
            Ok(mut buffer) => {
                // The output is `buffer[..length]`; what lies past it is left from earlier
                // batches and stays (initialized) for the next one.
                let result = codec
                    .decompress_reusing(area, checks.max_decompressed_bytes, &mut buffer)
                    .and_then(|length| walk(buffer.get(..length).unwrap_or(&[])));
                if buffer.capacity() > RETAINED_SCRATCH {
                    *buffer = Vec::new();
                }
                result
            }
            // Nothing checks a batch from inside another check; should that ever change,
            // a buffer of its own is slower but still right.
            Err(_) => {
                let mut buffer = Vec::new();
                codec.decompress_into(area, checks.max_decompressed_bytes, &mut buffer)?;
                walk(&buffer)
            }
        }),
    }
}

/// Walks `count` records laid end to end in `area`; see the module docs.
fn walk_records(
    area: &[u8],
    count: usize,
    base_timestamp: i64,
    checks: &RecordChecks,
) -> Result<i64, BatchError> {
    let range = checks.timestamps.map(|b| b.range());
    let mut rejected = Vec::new();
    let mut refused = 0usize;
    let mut position = 0;
    let mut max_timestamp = NO_TIMESTAMP;
    for index in 0..count {
        if position >= area.len() {
            return Err(BatchError::CountMismatch {
                reason: format!("header says {count} records, the batch holds {index}"),
            });
        }
        let fault = |what: String| invalid(index, position, what);
        let mut prefix = Fields {
            bytes: area,
            at: position,
        };
        let length = prefix
            .varint()
            .ok_or_else(|| fault("bad length prefix".into()))?;
        let body_start = prefix.at;
        let body_len = usize::try_from(length)
            .map_err(|_| fault(format!("negative length prefix {length}")))?;
        let body_end = body_start
            .checked_add(body_len)
            .filter(|&end| end <= area.len())
            .ok_or_else(|| {
                fault(format!(
                    "length prefix says {body_len} bytes, only {} remain",
                    area.len() - body_start
                ))
            })?;
        // The record's fields may use only the bytes its length prefix gives it.
        let mut fields = Fields {
            bytes: &area[..body_end],
            at: body_start,
        };
        fields
            .skip(1)
            .ok_or_else(|| fault("attributes run past the record's length prefix".into()))?;
        let timestamp_delta = fields
            .varlong()
            .ok_or_else(|| fault("bad timestamp delta".into()))?;
        let offset_delta = fields
            .varint()
            .ok_or_else(|| fault("bad offset delta".into()))?;
        if offset_delta != index as i64 {
            return Err(fault(format!(
                "offset delta {offset_delta}, expected {index} (offset deltas must be 0, 1, 2, ... in order)"
            )));
        }
        let key = fields
            .nullable_bytes()
            .ok_or_else(|| fault("bad key length, or the key runs past the record".into()))?;
        fields
            .nullable_bytes()
            .ok_or_else(|| fault("bad value length, or the value runs past the record".into()))?;
        let header_count = fields
            .varint()
            .ok_or_else(|| fault("bad header count".into()))?;
        if header_count < 0 {
            return Err(fault(format!("negative header count {header_count}")));
        }
        // Every header uses at least two bytes, so a lying count ends at the record's end.
        for h in 0..header_count {
            let key = fields
                .nullable_bytes()
                .ok_or_else(|| {
                    fault(format!(
                        "header {h}: bad key length, or the key runs past the record"
                    ))
                })?
                .ok_or_else(|| fault(format!("header {h}: key must not be null")))?;
            if std::str::from_utf8(&area[key]).is_err() {
                return Err(fault(format!("header {h}: key is not UTF-8")));
            }
            fields.nullable_bytes().ok_or_else(|| {
                fault(format!(
                    "header {h}: bad value length, or the value runs past the record"
                ))
            })?;
        }
        if fields.at != body_end {
            return Err(fault(format!(
                "length prefix says {body_len} bytes, the fields use {}",
                fields.at - body_start
            )));
        }
        // Wrapping, as Java's long addition in every Kafka client and in the decoder
        // ([`super::Records`]): this is the timestamp consumers will see.
        let timestamp = base_timestamp.wrapping_add(timestamp_delta);
        // One reason per record, the key's first, as Kafka's `validateRecord`.
        let reason = if checks.keys_required && key.is_none() {
            Some(Rejection::MissingKey)
        } else {
            range
                .filter(|(oldest, newest)| {
                    timestamp != NO_TIMESTAMP && !(*oldest..=*newest).contains(&timestamp)
                })
                .map(|(oldest, newest)| Rejection::TimestampOutOfRange {
                    timestamp,
                    oldest,
                    newest,
                })
        };
        if let Some(reason) = reason {
            refused += 1;
            // Named up to a bound: a batch of a million keyless records must not make a
            // million answers (the client fails the rest with the batch anyway).
            if rejected.len() < MAX_NAMED_REJECTIONS {
                rejected.push(RecordRejection {
                    batch_index: index,
                    reason,
                });
            }
        }
        max_timestamp = max_timestamp.max(timestamp);
        position = body_end;
    }
    if position != area.len() {
        return Err(BatchError::CountMismatch {
            reason: format!(
                "header says {count} records, but {} bytes follow the last one",
                area.len() - position
            ),
        });
    }
    if !rejected.is_empty() {
        return Err(BatchError::RejectedRecords {
            named: rejected,
            total: refused,
        });
    }
    Ok(max_timestamp)
}

/// A cursor over a record's bytes; every read is bounds-checked and `None` on a fault.
struct Fields<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Fields<'_> {
    fn skip(&mut self, n: usize) -> Option<()> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())?;
        self.at = end;
        Some(())
    }

    /// A zig-zag varint of at most 5 bytes, as Kafka reads it (excess bits of the fifth
    /// byte dropped), widened to i64.
    #[inline]
    fn varint(&mut self) -> Option<i64> {
        let raw = self.unsigned(5)?;
        let raw = raw as u32;
        Some(i64::from(((raw >> 1) as i32) ^ -((raw & 1) as i32)))
    }

    /// A zig-zag varlong of at most 10 bytes.
    #[inline]
    fn varlong(&mut self) -> Option<i64> {
        let raw = self.unsigned(10)?;
        Some(((raw >> 1) as i64) ^ -((raw & 1) as i64))
    }

    #[inline]
    fn unsigned(&mut self, max_len: usize) -> Option<u64> {
        let mut raw: u64 = 0;
        for i in 0..max_len {
            let byte = *self.bytes.get(self.at + i)?;
            // 7 * i <= 63; bits shifted past 64 are dropped, as Kafka's shifts drop them.
            raw |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                self.at += i + 1;
                return Some(raw);
            }
        }
        None
    }

    /// A varint length (-1 = null, else >= 0) and that many bytes: their range.
    #[inline]
    fn nullable_bytes(&mut self) -> Option<Option<std::ops::Range<usize>>> {
        let length = self.varint()?;
        if length == -1 {
            return Some(None);
        }
        let start = self.at;
        self.skip(usize::try_from(length).ok()?)?;
        Some(Some(start..self.at))
    }
}

fn invalid(index: usize, position: usize, reason: String) -> BatchError {
    BatchError::InvalidRecord {
        reason: format!("record {index} at byte {position} of the record area: {reason}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::header::{
        validate_produced_batch_with, ATTRIBUTES_AT, BASE_TIMESTAMP_AT, CRC_AT, LENGTH_AT,
        MAX_TIMESTAMP_AT, RECORDS_COUNT_AT,
    };
    use crate::batch::varint::{encode_varint, encode_varlong};
    use crate::batch::{BatchBuilder, Records};
    use bytes::Bytes;
    use proptest::prelude::*;

    const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];
    const T0: i64 = 1_700_000_000_000;

    /// A header's key and value, either of which may be null.
    type RawHeader<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

    /// One record's bytes; `length` overrides the true length prefix.
    fn record(
        offset_delta: i32,
        timestamp_delta: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[RawHeader],
        length: Option<i32>,
    ) -> Vec<u8> {
        let mut body = vec![0u8];
        encode_varlong(timestamp_delta, &mut body);
        encode_varint(offset_delta, &mut body);
        for field in [key, value] {
            match field {
                Some(b) => {
                    encode_varint(b.len() as i32, &mut body);
                    body.extend_from_slice(b);
                }
                None => encode_varint(-1, &mut body),
            }
        }
        encode_varint(headers.len() as i32, &mut body);
        for (k, v) in headers {
            for field in [k, v] {
                match field {
                    Some(b) => {
                        encode_varint(b.len() as i32, &mut body);
                        body.extend_from_slice(b);
                    }
                    None => encode_varint(-1, &mut body),
                }
            }
        }
        let mut out = Vec::new();
        encode_varint(length.unwrap_or(body.len() as i32), &mut out);
        out.extend_from_slice(&body);
        out
    }

    fn plain(offset_delta: i32) -> Vec<u8> {
        record(
            offset_delta,
            offset_delta as i64,
            Some(b"key"),
            Some(b"value"),
            &[],
            None,
        )
    }

    /// A batch of `count` records whose (uncompressed) record area is `area`, compressed
    /// with `codec`, with a valid CRC.
    fn batch(area: &[u8], count: i32, codec: Compression) -> Vec<u8> {
        let payload = if codec == Compression::None {
            area.to_vec()
        } else {
            codec.compress(area).unwrap()
        };
        raw(&payload, count, codec.id() as i16)
    }

    /// A batch with `payload` as its record area as is.
    fn raw(payload: &[u8], count: i32, attributes: i16) -> Vec<u8> {
        let mut b = vec![0u8; HEADER_SIZE];
        b.extend_from_slice(payload);
        let length = (b.len() - 12) as i32;
        b[LENGTH_AT..LENGTH_AT + 4].copy_from_slice(&length.to_be_bytes());
        b[16] = 2;
        b[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
        b[23..27].copy_from_slice(&(count - 1).to_be_bytes());
        b[BASE_TIMESTAMP_AT..BASE_TIMESTAMP_AT + 8].copy_from_slice(&T0.to_be_bytes());
        b[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&T0.to_be_bytes());
        b[43..51].copy_from_slice(&(-1i64).to_be_bytes());
        b[51..53].copy_from_slice(&(-1i16).to_be_bytes());
        b[53..57].copy_from_slice(&(-1i32).to_be_bytes());
        b[RECORDS_COUNT_AT..RECORDS_COUNT_AT + 4].copy_from_slice(&count.to_be_bytes());
        let crc = crc32c::crc32c(&b[ATTRIBUTES_AT..]);
        b[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        b
    }

    fn check(batch: &[u8]) -> Result<i64, BatchError> {
        validate_produced_batch_with(batch, &RecordChecks::default()).map(|b| b.max_timestamp)
    }

    fn reason(result: Result<i64, BatchError>) -> String {
        match result {
            Err(BatchError::InvalidRecord { reason }) => reason,
            other => panic!("expected InvalidRecord, got {other:?}"),
        }
    }

    #[test]
    fn valid_batches_pass_with_every_codec() {
        let area = [plain(0), plain(1), plain(2)].concat();
        for codec in ALL {
            assert_eq!(check(&batch(&area, 3, codec)), Ok(T0 + 2), "{codec:?}");
        }
        // Records with headers, null keys and values, empty header values.
        let area = [
            record(0, 5, None, None, &[(Some(b"h"), None)], None),
            record(
                1,
                -3,
                Some(b""),
                Some(b"v"),
                &[(Some(b""), Some(b"x"))],
                None,
            ),
        ]
        .concat();
        for codec in ALL {
            assert_eq!(check(&batch(&area, 2, codec)), Ok(T0 + 5), "{codec:?}");
        }
    }

    /// Issue 14's batch A: one record's value length runs past the end of the record.
    #[test]
    fn value_running_past_its_record_is_refused_with_every_codec() {
        let good = plain(1);
        let mut bad = record(
            1,
            1,
            Some(b"key"),
            Some(b"value"),
            &[],
            Some(good.len() as i32 - 4),
        );
        // The bytes are there (the next record's), but not inside this record's length.
        bad.extend_from_slice(&[0; 3]);
        let area = [plain(0), bad, plain(2)].concat();
        for codec in ALL {
            let r = reason(check(&batch(&area, 3, codec)));
            assert!(
                r.contains("record 1") && r.contains("value"),
                "{codec:?}: {r}"
            );
        }
        // The length prefix itself runs past the area.
        let area = [plain(0), record(1, 0, None, Some(b"v"), &[], Some(100))].concat();
        for codec in ALL {
            assert!(
                reason(check(&batch(&area, 2, codec))).contains("only"),
                "{codec:?}"
            );
        }
    }

    /// Issue 14's batch B: the attributes name a codec, the payload is random bytes.
    #[test]
    fn payload_that_does_not_decompress_is_refused() {
        let garbage: Vec<u8> = (0..200u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for codec in &ALL[1..] {
            assert!(
                matches!(
                    check(&raw(&garbage, 1, codec.id() as i16)),
                    Err(BatchError::Decompression { .. })
                ),
                "{codec:?}"
            );
            // Nothing at all where the compressed records should be.
            assert!(check(&raw(&[], 1, codec.id() as i16)).is_err(), "{codec:?}");
        }
    }

    /// Issue 14's batch C: every offset delta 0; also gaps and swaps.
    #[test]
    fn offset_deltas_must_count_up_from_zero() {
        for deltas in [[0, 0, 0], [0, 2, 1], [1, 2, 3], [0, 1, 1], [0, 1, -1]] {
            let area: Vec<u8> = deltas.iter().flat_map(|&d| plain(d)).collect();
            for codec in ALL {
                let r = reason(check(&batch(&area, 3, codec)));
                assert!(r.contains("offset delta"), "{deltas:?} {codec:?}: {r}");
            }
        }
    }

    /// Issue 14's batch D: the header says 3 records, the payload holds 1; and the reverse.
    #[test]
    fn record_count_must_match_the_records() {
        for codec in ALL {
            assert!(matches!(
                check(&batch(&plain(0), 3, codec)),
                Err(BatchError::CountMismatch { reason }) if reason.contains("holds 1")
            ));
            let three = [plain(0), plain(1), plain(2)].concat();
            assert!(matches!(
                check(&batch(&three, 1, codec)),
                Err(BatchError::CountMismatch { reason }) if reason.contains("follow")
            ));
            // A stray byte after the last record.
            let mut area = plain(0);
            area.push(0);
            assert!(matches!(
                check(&batch(&area, 1, codec)),
                Err(BatchError::CountMismatch { .. })
            ));
        }
    }

    #[test]
    fn malformed_fields_are_refused() {
        let one = |area: Vec<u8>| reason(check(&batch(&area, 1, Compression::None)));
        // The fields end before the length prefix does.
        let short = plain(0);
        let mut long = record(
            0,
            0,
            Some(b"key"),
            Some(b"value"),
            &[],
            Some(short.len() as i32),
        );
        long.push(0);
        let r = one(long);
        assert!(r.contains("fields use"), "{r}");
        // Negative length prefix; length prefix varint longer than 5 bytes.
        assert!(one(record(0, 0, None, None, &[], Some(-2))).contains("negative"));
        assert!(one(vec![0xff; 8]).contains("length prefix"));
        // Key length -2.
        let mut body = vec![0, 0, 0];
        encode_varint(-2, &mut body);
        let mut area = Vec::new();
        encode_varint(body.len() as i32, &mut area);
        area.extend_from_slice(&body);
        assert!(one(area).contains("key"));
        // Header with a null key; a key that is not UTF-8; a negative header count.
        assert!(one(record(0, 0, None, None, &[(None, None)], None)).contains("null"));
        assert!(one(record(
            0,
            0,
            None,
            None,
            &[(Some(&[0xc3, 0x28]), None)],
            None
        ))
        .contains("UTF-8"));
        let mut body = vec![0, 0, 0, 1, 1];
        encode_varint(-1, &mut body);
        let mut area = Vec::new();
        encode_varint(body.len() as i32, &mut area);
        area.extend_from_slice(&body);
        assert!(one(area).contains("header count"));
        // A header count far larger than the record holds ends at the record's end.
        let mut body = vec![0, 0, 0, 1, 1];
        encode_varint(i32::MAX, &mut body);
        body.extend_from_slice(&[2, b'h', 1]);
        let mut area = Vec::new();
        encode_varint(body.len() as i32, &mut area);
        area.extend_from_slice(&body);
        assert!(one(area).contains("header 1"));
        // An empty record (no attributes byte), and a timestamp varlong cut by the length.
        assert!(one(vec![0]).contains("attributes"));
        assert!(one(vec![2, 0, 0x80]).contains("timestamp"));
    }

    #[test]
    fn timestamps_are_bound_for_create_time() {
        let area = [
            record(0, 0, None, Some(b"a"), &[], None),
            record(1, 1000, None, Some(b"b"), &[], None),
        ]
        .concat();
        let bounds = |now_ms, before_max_ms, after_max_ms| RecordChecks {
            timestamps: Some(TimestampBounds {
                now_ms,
                before_max_ms,
                after_max_ms,
            }),
            ..RecordChecks::default()
        };
        for codec in ALL {
            let b = batch(&area, 2, codec);
            let run = |checks: RecordChecks| {
                validate_produced_batch_with(&b, &checks).map(|c| c.max_timestamp)
            };
            // Exactly at both edges: accepted.
            assert_eq!(run(bounds(T0 + 500, 500, 500)), Ok(T0 + 1000));
            // Kafka's defaults, now well after the records.
            assert_eq!(
                run(bounds(T0 + 86_400_000, i64::MAX, 3_600_000)),
                Ok(T0 + 1000)
            );
            // One millisecond too old, one too new.
            let too_old = run(bounds(T0 + 501, 500, 500));
            let Err(BatchError::RejectedRecords {
                named: rejected, ..
            }) = &too_old
            else {
                panic!("{too_old:?}");
            };
            assert_eq!(
                rejected,
                &[RecordRejection {
                    batch_index: 0,
                    reason: Rejection::TimestampOutOfRange {
                        timestamp: T0,
                        oldest: T0 + 1,
                        newest: T0 + 1001
                    }
                }]
            );
            assert_eq!(
                rejected[0].kafka_message("t-0"),
                format!(
                    "Timestamp {T0} of message with offset 0 is out of range. \
                     The timestamp should be within [{}, {}]",
                    T0 + 1,
                    T0 + 1001
                )
            );
            // Too new: the second record only.
            assert!(matches!(
                run(bounds(T0 + 499, 500, 500)),
                Err(BatchError::RejectedRecords { named: r, total: 1 }) if r.len() == 1 && r[0].batch_index == 1
            ));
            // No bounds (LogAppendTime): anything goes.
            assert_eq!(run(RecordChecks::default()), Ok(T0 + 1000));
        }
        // A record without a timestamp (-1) is not bound, as in Kafka.
        let mut b = batch(&plain(0), 1, Compression::None);
        b[BASE_TIMESTAMP_AT..BASE_TIMESTAMP_AT + 8].copy_from_slice(&(-1i64).to_be_bytes());
        let crc = crc32c::crc32c(&b[ATTRIBUTES_AT..]);
        b[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(
            validate_produced_batch_with(&b, &bounds(T0, 0, 0)).map(|c| c.max_timestamp),
            Ok(-1)
        );
    }

    #[test]
    fn compacted_topics_refuse_records_without_a_key_one_by_one() {
        // Records 1 and 3 have no key, record 2 an empty one (a key), and record 3 is
        // also too new: one reason per record, the key's first, as Kafka.
        let area = [
            record(0, 0, Some(b"k"), Some(b"a"), &[], None),
            record(1, 0, None, Some(b"b"), &[], None),
            record(2, 0, Some(b""), Some(b"c"), &[], None),
            record(3, 10_000, None, None, &[], None),
            record(4, 10_000, Some(b"k"), None, &[], None),
        ]
        .concat();
        let checks = RecordChecks {
            keys_required: true,
            timestamps: Some(TimestampBounds {
                now_ms: T0,
                before_max_ms: i64::MAX,
                after_max_ms: 1000,
            }),
            ..RecordChecks::default()
        };
        for codec in ALL {
            let b = batch(&area, 5, codec);
            let Err(BatchError::RejectedRecords {
                named: rejected,
                total: 3,
            }) = validate_produced_batch_with(&b, &checks)
            else {
                panic!("{codec:?}: refused records expected");
            };
            let found: Vec<_> = rejected.iter().map(|r| (r.batch_index, r.reason)).collect();
            assert_eq!(
                found,
                [
                    (1, Rejection::MissingKey),
                    (3, Rejection::MissingKey),
                    (
                        4,
                        Rejection::TimestampOutOfRange {
                            timestamp: T0 + 10_000,
                            oldest: T0.saturating_sub(i64::MAX),
                            newest: T0 + 1000
                        }
                    )
                ],
                "{codec:?}"
            );
            assert_eq!(
                rejected[0].kafka_message("t-3"),
                "Compacted topic cannot accept message without key in topic partition t-3"
            );
            // Without the key rule the keyless records are fine.
            let relaxed = RecordChecks {
                keys_required: false,
                timestamps: None,
                ..checks
            };
            assert!(
                validate_produced_batch_with(&b, &relaxed).is_ok(),
                "{codec:?}"
            );
        }
        // A structural fault wins over refused records: the batch is not decodable.
        let broken = [
            record(0, 0, None, Some(b"a"), &[], None),
            record(1, 0, Some(b"k"), Some(b"b"), &[], Some(1)),
        ]
        .concat();
        assert!(matches!(
            validate_produced_batch_with(&batch(&broken, 2, Compression::None), &checks),
            Err(BatchError::InvalidRecord { .. })
        ));
    }

    #[test]
    fn refused_records_are_named_up_to_a_bound_and_all_counted() {
        let count = MAX_NAMED_REJECTIONS + 500;
        let area: Vec<u8> = (0..count)
            .flat_map(|i| record(i as i32, 0, None, Some(b"v"), &[], None))
            .collect();
        let checks = RecordChecks {
            keys_required: true,
            ..RecordChecks::default()
        };
        let b = batch(&area, count as i32, Compression::Zstd);
        let Err(BatchError::RejectedRecords { named, total }) =
            validate_produced_batch_with(&b, &checks)
        else {
            panic!("refused records expected");
        };
        assert_eq!((named.len(), total), (MAX_NAMED_REJECTIONS, count));
        assert_eq!(named.last().unwrap().batch_index, MAX_NAMED_REJECTIONS - 1);
    }

    #[test]
    fn decompression_bomb_stops_at_the_limit() {
        // One record whose 16 MiB value of zeros compresses to under 1 MiB (Kafka's
        // max.message.bytes) with every codec (snappy's ratio is the lowest, ~21).
        let zeros = vec![0u8; 16 << 20];
        let area = record(0, 0, None, Some(&zeros), &[], None);
        let checks = RecordChecks {
            max_decompressed_bytes: 1 << 20,
            ..RecordChecks::default()
        };
        for codec in &ALL[1..] {
            let bomb = batch(&area, 1, *codec);
            assert!(bomb.len() < 1 << 20, "{codec:?}: {} bytes", bomb.len());
            let result = validate_produced_batch_with(&bomb, &checks);
            assert!(
                matches!(&result, Err(BatchError::Decompression { reason, .. }) if reason.contains("limit")),
                "{codec:?}: {result:?}"
            );
            // The thread's buffer did not keep the bomb's size.
            SCRATCH.with(|s| assert!(s.borrow().capacity() <= RETAINED_SCRATCH));
        }
    }

    #[test]
    fn large_batches_decompress_but_do_not_stay_in_the_buffer() {
        let value = vec![7u8; 8 << 20];
        let area = record(0, 0, None, Some(&value), &[], None);
        for codec in &ALL[1..] {
            assert_eq!(check(&batch(&area, 1, *codec)), Ok(T0), "{codec:?}");
            SCRATCH.with(|s| assert!(s.borrow().capacity() <= RETAINED_SCRATCH));
        }
    }

    type Input = (
        i64,
        Option<Vec<u8>>,
        Option<Vec<u8>>,
        Vec<(String, Option<Vec<u8>>)>,
    );

    fn arb_input() -> impl Strategy<Value = Input> {
        let bytes = |max| proptest::option::of(proptest::collection::vec(any::<u8>(), 0..max));
        (
            -5_000i64..5_000,
            bytes(20),
            bytes(60),
            proptest::collection::vec((".{0,6}", bytes(10)), 0..3),
        )
    }

    fn build(codec: Compression, inputs: &[Input]) -> Bytes {
        let mut builder = BatchBuilder::new(codec);
        for (delta, key, value, headers) in inputs {
            let headers: Vec<(&str, Option<&[u8]>)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_deref()))
                .collect();
            builder.push(T0 + delta, key.as_deref(), value.as_deref(), &headers);
        }
        builder.build().unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Whatever the builder writes passes, with the records' largest timestamp.
        #[test]
        fn built_batches_pass(
            inputs in proptest::collection::vec(arb_input(), 1..12),
            codec_id in 0u8..5,
        ) {
            let codec = Compression::from_id(codec_id).unwrap();
            let b = build(codec, &inputs);
            let max = inputs.iter().map(|i| T0 + i.0).max().unwrap();
            prop_assert_eq!(check(&b), Ok(max));
        }

        /// The invariant the check exists for: a batch it accepts is one every consumer
        /// decodes completely, with offsets 0..count in order. Record areas are corrupted
        /// before compression, so the records (not just the codec) are what is wrong.
        #[test]
        fn accepted_batches_always_decode(
            inputs in proptest::collection::vec(arb_input(), 1..6),
            codec_id in 0u8..5,
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
            count_delta in -1i32..2,
        ) {
            let codec = Compression::from_id(codec_id).unwrap();
            let built = build(Compression::None, &inputs);
            let mut area = built[HEADER_SIZE..].to_vec();
            for (at, byte) in edits {
                let at = at.index(area.len());
                area[at] = byte;
            }
            let count = (inputs.len() as i32 + count_delta).max(1);
            let b = batch(&area, count, codec);
            if check(&b).is_ok() {
                let records: Vec<_> = Records::decode(Bytes::from(b))
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap();
                prop_assert_eq!(records.len(), count as usize);
                for (i, r) in records.iter().enumerate() {
                    prop_assert_eq!(r.offset, i as i64);
                }
            }
        }

        #[test]
        fn arbitrary_record_areas_never_panic(
            area in proptest::collection::vec(any::<u8>(), 0..200),
            count in 1i32..6,
            codec_id in 0u8..5,
        ) {
            let codec = Compression::from_id(codec_id).unwrap();
            let _ = check(&batch(&area, count, codec));
            let _ = check(&raw(&area, count, codec_id as i16));
        }
    }
}
