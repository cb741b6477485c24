//! Decoding the records inside one RecordBatch v2, for every codec.
//!
//! The record area (after the 61-byte header, decompressed if the codec says so) is
//! `records_count` records laid end to end, each:
//!
//! ```text
//! length            varint    bytes of the fields below
//! attributes        i8        unused, 0
//! timestampDelta    varlong   relative to the batch's base timestamp
//! offsetDelta       varint    relative to the batch's base offset
//! keyLength         varint    -1 = null key
//! key               bytes
//! valueLength       varint    -1 = null value
//! value             bytes
//! headerCount       varint
//! headers           headerCount x [keyLength varint, key (UTF-8), valueLength varint
//!                                  (-1 = null), value]
//! ```
//!
//! [`Records`] yields them one at a time. Keys, values and header values are `Bytes`
//! slices of the batch (uncompressed) or of the one decompressed buffer, never copies.
//! Decoding never panics on any input: every length is checked before it is used, and
//! the first malformed byte ends the iteration with one error.
//!
//! [`count_uncompressed_records`] only walks the length prefixes, allocating nothing. The
//! produce path's full check of every record is [`super::validate`].

use std::ops::Range;

use bytes::Bytes;

use super::header::{check_framing, BatchHeader, TimestampType, HEADER_SIZE};
use super::varint::{decode_varint, decode_varlong, MAX_VARINT_LEN, MAX_VARLONG_LEN};
use super::Compression;
use crate::error::BatchError;

/// Largest decompressed record area [`Records::decode`] accepts: generous for any
/// legitimate batch (Kafka's default `message.max.bytes` is 1 MiB compressed), small
/// enough that a decompression bomb cannot exhaust memory.
pub const DEFAULT_DECOMPRESSION_LIMIT: usize = 64 * 1024 * 1024;

/// One record header. Kafka requires the key to be UTF-8; the value is opaque.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub key: String,
    pub value: Option<Bytes>,
}

/// One decoded record, with its absolute offset and timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The record's own attributes byte (unused by Kafka so far).
    pub attributes: i8,
    /// Batch base offset + offset delta.
    pub offset: i64,
    /// Base timestamp + timestamp delta, or the batch's max timestamp for LogAppendTime.
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
}

/// Iterator over the records of one batch; see [`Records::decode`].
///
/// Yields exactly `records_count` records. If the record area then has bytes left over,
/// or ends (or breaks) before that many records, it yields one `Err` and then `None`.
#[derive(Debug, Clone)]
pub struct Records {
    /// The record area: a slice of the batch, or the decompressed buffer.
    area: Bytes,
    /// Where the next record starts in `area`.
    position: usize,
    /// Records yielded so far.
    index: usize,
    /// Records the header announces.
    count: usize,
    base_offset: i64,
    base_timestamp: i64,
    /// `Some(max timestamp)` for LogAppendTime batches, whose records all carry it.
    log_append_time: Option<i64>,
    /// Set after the last item (the end, or the one error).
    finished: bool,
}

impl Records {
    /// Decodes the records of `batch`, which must be exactly one batch.
    ///
    /// Checks the framing (not the CRC: callers validate that where they need it) and
    /// decompresses with [`DEFAULT_DECOMPRESSION_LIMIT`].
    pub fn decode(batch: Bytes) -> Result<Records, BatchError> {
        Records::decode_with_limit(batch, DEFAULT_DECOMPRESSION_LIMIT)
    }

    /// Like [`Records::decode`], with `limit` as the most decompressed bytes accepted.
    pub fn decode_with_limit(batch: Bytes, limit: usize) -> Result<Records, BatchError> {
        // No size limit here: a short batch is `Truncated`, extra bytes `InvalidLength`.
        let size = check_framing(&batch, usize::MAX)?;
        let header = BatchHeader::new(&batch)?;
        if size != batch.len() {
            return Err(BatchError::InvalidLength {
                length: i64::from(header.batch_length()),
            });
        }
        let compression = header.compression()?;
        let count =
            usize::try_from(header.records_count()).map_err(|_| BatchError::CountMismatch {
                reason: format!("negative record count {}", header.records_count()),
            })?;
        let base_offset = header.base_offset();
        let base_timestamp = header.base_timestamp();
        let log_append_time = match header.timestamp_type() {
            TimestampType::LogAppendTime => Some(header.max_timestamp()),
            TimestampType::CreateTime => None,
        };
        let raw = batch.slice(HEADER_SIZE..size);
        let area = match compression {
            Compression::None => raw,
            // The log cleaner keeps emptied batches (for producer state) as a bare header
            // that still names the codec; there is nothing to decompress.
            _ if raw.is_empty() => raw,
            codec => Bytes::from(codec.decompress(&raw, limit)?),
        };
        Ok(Records {
            area,
            position: 0,
            index: 0,
            count,
            base_offset,
            base_timestamp,
            log_append_time,
            finished: false,
        })
    }

    /// Records not yet yielded, as the header announces them.
    pub fn remaining(&self) -> usize {
        self.count.saturating_sub(self.index)
    }

    /// The record area: the batch's bytes after the header, decompressed. With
    /// [`Records::area_position`] it lets the log cleaner keep a record's exact bytes.
    pub(crate) fn area(&self) -> &Bytes {
        &self.area
    }

    /// Where the next record starts in [`Records::area`].
    pub(crate) fn area_position(&self) -> usize {
        self.position
    }

    /// Decodes the record at `self.position`; returns it and where the next one starts.
    fn read_record(&self) -> Result<(Record, usize), BatchError> {
        match self.read_plain_record() {
            Some(decoded) => Ok(decoded),
            None => self.read_record_checked(),
        }
    }

    /// The common case, quickly: a well-formed record without headers whose varints are
    /// short (at most 4 bytes, varlongs at most 9, so no value needs truncating). `None`
    /// for anything else, which [`Records::read_record_checked`] then decodes or reports;
    /// every record this accepts decodes the same way there.
    #[inline]
    fn read_plain_record(&self) -> Option<(Record, usize)> {
        let area: &[u8] = &self.area;
        let (length, body_start) = short_varint(area, self.position, 4)?;
        let body_end = body_start
            .checked_add(usize::try_from(length).ok()?)
            .filter(|&end| end <= area.len())?;
        let body = area.get(..body_end)?;
        let attributes = *body.get(body_start)? as i8;
        let (timestamp_delta, at) = short_varint(body, body_start + 1, 9)?;
        let (offset_delta, mut at) = short_varint(body, at, 4)?;
        let key = short_bytes(body, &mut at)?;
        let value = short_bytes(body, &mut at)?;
        let (header_count, at) = short_varint(body, at, 4)?;
        if header_count != 0 || at != body_end {
            return None;
        }
        let timestamp = match self.log_append_time {
            Some(max_timestamp) => max_timestamp,
            None => self.base_timestamp.wrapping_add(timestamp_delta),
        };
        let record = Record {
            attributes,
            offset: self.base_offset.wrapping_add(offset_delta),
            timestamp,
            key: key.map(|r| self.area.slice(r)),
            value: value.map(|r| self.area.slice(r)),
            headers: Vec::new(),
        };
        Some((record, body_end))
    }

    /// Decodes the record at `self.position` with every check and a precise error.
    fn read_record_checked(&self) -> Result<(Record, usize), BatchError> {
        let index = self.index;
        let start = self.position;
        let area: &[u8] = &self.area;
        let rest = area.get(start..).unwrap_or(&[]);
        if rest.is_empty() {
            return Err(BatchError::CountMismatch {
                reason: format!(
                    "header says {} records, the batch ends after {index}",
                    self.count
                ),
            });
        }
        let (length, prefix) = decode_varint(rest).map_err(|e| record_error(index, start, e))?;
        let body_len = usize::try_from(length)
            .map_err(|_| invalid(index, start, format!("negative length prefix {length}")))?;
        let body_start = start + prefix;
        let body_end = body_start
            .checked_add(body_len)
            .filter(|&end| end <= area.len())
            .ok_or_else(|| {
                invalid(
                    index,
                    start,
                    format!(
                        "length prefix says {body_len} bytes, only {} remain",
                        area.len() - body_start
                    ),
                )
            })?;
        let mut fields = Cursor {
            bytes: area.get(body_start..body_end).unwrap_or(&[]),
            position: 0,
            index,
            record_start: start,
        };
        let attributes = fields.i8("attributes")?;
        let timestamp_delta = fields.varlong("timestamp delta")?;
        let offset_delta = fields.varint("offset delta")?;
        let key = fields.nullable_bytes("key")?;
        let value = fields.nullable_bytes("value")?;
        let header_count = fields.varint("header count")?;
        let header_count = usize::try_from(header_count).map_err(|_| {
            invalid(
                index,
                start,
                format!("negative header count {header_count}"),
            )
        })?;
        // Each header takes at least two bytes; reserve no more than the bytes left could
        // hold (and not much at all up front), so a lying count cannot make us allocate.
        let mut headers = Vec::with_capacity(header_count.min(fields.rest().len() / 2).min(64));
        for _ in 0..header_count {
            let key_range = fields.bytes("header key")?;
            let key = std::str::from_utf8(fields.slice(key_range))
                .map_err(|e| invalid(index, start, format!("header key is not UTF-8: {e}")))?
                .to_owned();
            let value = fields.nullable_bytes("header value")?;
            headers.push(Header {
                key,
                value: value.map(|r| self.area.slice(shift(r, body_start))),
            });
        }
        if fields.position != body_len {
            return Err(invalid(
                index,
                start,
                format!(
                    "length prefix says {body_len} bytes, the fields use {}",
                    fields.position
                ),
            ));
        }
        let timestamp = match self.log_append_time {
            Some(max_timestamp) => max_timestamp,
            // Wrapping, as Java's long arithmetic does; no input may panic the decoder.
            None => self.base_timestamp.wrapping_add(timestamp_delta),
        };
        let record = Record {
            attributes,
            offset: self.base_offset.wrapping_add(i64::from(offset_delta)),
            timestamp,
            key: key.map(|r| self.area.slice(shift(r, body_start))),
            value: value.map(|r| self.area.slice(shift(r, body_start))),
            headers,
        };
        Ok((record, body_end))
    }
}

impl Iterator for Records {
    type Item = Result<Record, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        if self.index >= self.count {
            self.finished = true;
            let left = self.area.len().saturating_sub(self.position);
            if left > 0 {
                return Some(Err(BatchError::CountMismatch {
                    reason: format!(
                        "header says {} records, but {left} bytes follow the last one",
                        self.count
                    ),
                }));
            }
            return None;
        }
        match self.read_record() {
            Ok((record, next)) => {
                self.position = next;
                self.index += 1;
                Some(Ok(record))
            }
            Err(e) => {
                self.finished = true;
                Some(Err(e))
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.finished {
            return (0, Some(0));
        }
        // Plus one for a possible trailing error.
        let remaining = self.remaining();
        (0, remaining.checked_add(1))
    }
}

impl std::iter::FusedIterator for Records {}

/// Counts the records of an uncompressed record area by walking their length prefixes.
///
/// Each prefix must be a valid non-negative varint and its record must fit; the records
/// must tile `area` exactly. The records' fields are not decoded. Allocates nothing
/// unless it fails.
pub fn count_uncompressed_records(area: &[u8]) -> Result<usize, BatchError> {
    let mut position = 0;
    let mut count = 0;
    while let Some(rest) = area.get(position..).filter(|rest| !rest.is_empty()) {
        let (length, prefix) = decode_varint(rest).map_err(|e| record_error(count, position, e))?;
        let body_len = usize::try_from(length)
            .map_err(|_| invalid(count, position, format!("negative length prefix {length}")))?;
        let end = prefix
            .checked_add(body_len)
            .filter(|&end| end <= rest.len())
            .ok_or_else(|| {
                invalid(
                    count,
                    position,
                    format!(
                        "length prefix says {body_len} bytes, only {} remain",
                        rest.len() - prefix
                    ),
                )
            })?;
        position += end;
        count += 1;
    }
    Ok(count)
}

/// Reads the fields of one record's body, which is exactly what its length prefix says.
struct Cursor<'a> {
    bytes: &'a [u8],
    position: usize,
    /// For error messages: which record, starting where in the record area.
    index: usize,
    record_start: usize,
}

impl<'a> Cursor<'a> {
    fn rest(&self) -> &'a [u8] {
        self.bytes.get(self.position..).unwrap_or(&[])
    }

    fn i8(&mut self, field: &str) -> Result<i8, BatchError> {
        let byte = *self.rest().first().ok_or_else(|| self.past_end(field))?;
        self.position += 1;
        Ok(byte as i8)
    }

    fn varint(&mut self, field: &str) -> Result<i32, BatchError> {
        let (value, used) =
            decode_varint(self.rest()).map_err(|e| self.varint_error(field, MAX_VARINT_LEN, e))?;
        self.position += used;
        Ok(value)
    }

    fn varlong(&mut self, field: &str) -> Result<i64, BatchError> {
        let (value, used) = decode_varlong(self.rest())
            .map_err(|e| self.varint_error(field, MAX_VARLONG_LEN, e))?;
        self.position += used;
        Ok(value)
    }

    /// A varint length (must be >= 0) and that many bytes: their range in the body.
    fn bytes(&mut self, field: &str) -> Result<Range<usize>, BatchError> {
        match self.nullable_bytes(field)? {
            Some(range) => Ok(range),
            None => Err(invalid(
                self.index,
                self.record_start,
                format!("{field} must not be null"),
            )),
        }
    }

    /// A varint length (-1 = null) and that many bytes: their range in the body.
    fn nullable_bytes(&mut self, field: &str) -> Result<Option<Range<usize>>, BatchError> {
        let length = self.varint(field)?;
        if length == -1 {
            return Ok(None);
        }
        let length = usize::try_from(length).map_err(|_| {
            invalid(
                self.index,
                self.record_start,
                format!("{field} has invalid length {length}"),
            )
        })?;
        let start = self.position;
        let end = start
            .checked_add(length)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| self.past_end(field))?;
        self.position = end;
        Ok(Some(start..end))
    }

    fn slice(&self, range: Range<usize>) -> &'a [u8] {
        self.bytes.get(range).unwrap_or(&[])
    }

    fn past_end(&self, field: &str) -> BatchError {
        invalid(
            self.index,
            self.record_start,
            format!("{field} runs past the record's length prefix"),
        )
    }

    /// A varint that failed to decode: cut off by the end of the body means the length
    /// prefix is too small; otherwise the varint itself is malformed.
    fn varint_error(&self, field: &str, max_len: usize, error: BatchError) -> BatchError {
        let rest = self.rest();
        if rest.len() < max_len && rest.iter().all(|b| b & 0x80 != 0) {
            return self.past_end(field);
        }
        let reason = match error {
            BatchError::InvalidRecord { reason } => reason,
            other => other.to_string(),
        };
        invalid(self.index, self.record_start, format!("{field}: {reason}"))
    }
}

/// A zig-zag varint of at most `max_len` bytes (at most 9) at `bytes[at..]`: the value and
/// where it ends. `None` if it is longer or cut off.
#[inline]
fn short_varint(bytes: &[u8], at: usize, max_len: usize) -> Option<(i64, usize)> {
    let mut raw: u64 = 0;
    for i in 0..max_len {
        let byte = *bytes.get(at + i)?;
        raw |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((((raw >> 1) as i64) ^ -((raw & 1) as i64), at + i + 1));
        }
    }
    None
}

/// A short varint length (-1 = null) at `*at` and that many bytes of `bytes`: their
/// range, with `*at` moved past them. `None` for anything unusual.
#[inline]
fn short_bytes(bytes: &[u8], at: &mut usize) -> Option<Option<Range<usize>>> {
    let (length, start) = short_varint(bytes, *at, 4)?;
    if length == -1 {
        *at = start;
        return Some(None);
    }
    let end = start
        .checked_add(usize::try_from(length).ok()?)
        .filter(|&end| end <= bytes.len())?;
    *at = end;
    Some(Some(start..end))
}

/// Moves a range within a record body to the same bytes within the record area.
fn shift(range: Range<usize>, by: usize) -> Range<usize> {
    range.start + by..range.end + by
}

fn invalid(index: usize, position: usize, reason: String) -> BatchError {
    BatchError::InvalidRecord {
        reason: format!("record {index} at byte {position} of the record area: {reason}"),
    }
}

fn record_error(index: usize, position: usize, error: BatchError) -> BatchError {
    match error {
        BatchError::InvalidRecord { reason } => {
            invalid(index, position, format!("length prefix: {reason}"))
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::header::{
        patch_base_offset, patch_log_append_time, validate_produced_batch, CRC_AT, RECORDS_COUNT_AT,
    };
    use crate::batch::varint::{encode_varint, encode_varlong};
    use crate::batch::BatchBuilder;
    use proptest::prelude::*;

    const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    /// What a test pushes: timestamp, key, value, headers.
    type Input = (
        i64,
        Option<Vec<u8>>,
        Option<Vec<u8>>,
        Vec<(String, Option<Vec<u8>>)>,
    );

    fn build(codec: Compression, inputs: &[Input]) -> Bytes {
        let mut builder = BatchBuilder::new(codec);
        for (timestamp, key, value, headers) in inputs {
            let headers: Vec<(&str, Option<&[u8]>)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_deref()))
                .collect();
            builder.push(*timestamp, key.as_deref(), value.as_deref(), &headers);
        }
        builder.build().unwrap()
    }

    fn expected(base_offset: i64, inputs: &[Input]) -> Vec<Record> {
        inputs
            .iter()
            .enumerate()
            .map(|(i, (timestamp, key, value, headers))| Record {
                attributes: 0,
                offset: base_offset + i as i64,
                timestamp: *timestamp,
                key: key.clone().map(Bytes::from),
                value: value.clone().map(Bytes::from),
                headers: headers
                    .iter()
                    .map(|(k, v)| Header {
                        key: k.clone(),
                        value: v.clone().map(Bytes::from),
                    })
                    .collect(),
            })
            .collect()
    }

    fn sample_inputs() -> Vec<Input> {
        vec![
            (
                1_700_000_000_000,
                Some(b"key-0".to_vec()),
                Some(b"value-0".to_vec()),
                vec![("trace".to_owned(), Some(b"abc".to_vec()))],
            ),
            // Timestamps need not increase; null key; empty value.
            (1_699_999_999_000, None, Some(Vec::new()), Vec::new()),
            // Null value (a tombstone), headers with null and empty values.
            (
                1_700_000_005_000,
                Some(b"key-2".to_vec()),
                None,
                vec![
                    ("a".to_owned(), None),
                    ("".to_owned(), Some(Vec::new())),
                    ("ünïcode".to_owned(), Some(vec![0xff; 300])),
                ],
            ),
            (
                1_700_000_001_000,
                Some(vec![7; 1000]),
                Some(vec![9; 70_000]),
                Vec::new(),
            ),
        ]
    }

    /// A batch around `area` with the given count and attributes and a correct CRC.
    fn raw_batch(area: &[u8], count: i32, attributes: i16) -> Bytes {
        let mut batch = Vec::new();
        batch.extend_from_slice(&100i64.to_be_bytes()); // base offset
        batch.extend_from_slice(&((49 + area.len()) as i32).to_be_bytes());
        batch.extend_from_slice(&(-1i32).to_be_bytes()); // leader epoch
        batch.push(2); // magic
        batch.extend_from_slice(&[0; 4]); // crc
        batch.extend_from_slice(&attributes.to_be_bytes());
        batch.extend_from_slice(&(count - 1).to_be_bytes()); // last offset delta
        batch.extend_from_slice(&1000i64.to_be_bytes()); // base timestamp
        batch.extend_from_slice(&2000i64.to_be_bytes()); // max timestamp
        batch.extend_from_slice(&(-1i64).to_be_bytes());
        batch.extend_from_slice(&(-1i16).to_be_bytes());
        batch.extend_from_slice(&(-1i32).to_be_bytes());
        batch.extend_from_slice(&count.to_be_bytes());
        assert_eq!(batch.len(), HEADER_SIZE);
        batch.extend_from_slice(area);
        let crc = crc32c::crc32c(&batch[21..]);
        batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        Bytes::from(batch)
    }

    /// One record encoded field by field; `length` overrides the true length prefix.
    fn raw_record(offset_delta: i32, key: &[u8], value: &[u8], length: Option<i32>) -> Vec<u8> {
        let mut body = vec![0u8];
        encode_varlong(5, &mut body);
        encode_varint(offset_delta, &mut body);
        encode_varint(key.len() as i32, &mut body);
        body.extend_from_slice(key);
        encode_varint(value.len() as i32, &mut body);
        body.extend_from_slice(value);
        encode_varint(0, &mut body);
        let mut record = Vec::new();
        encode_varint(length.unwrap_or(body.len() as i32), &mut record);
        record.extend_from_slice(&body);
        record
    }

    fn invalid_reason(result: Option<Result<Record, BatchError>>) -> String {
        match result {
            Some(Err(BatchError::InvalidRecord { reason })) => reason,
            other => panic!("expected InvalidRecord, got {other:?}"),
        }
    }

    #[test]
    fn every_codec_round_trips_through_validation_and_decoding() {
        let inputs = sample_inputs();
        for codec in ALL {
            let batch = build(codec, &inputs);
            let header = validate_produced_batch(&batch).unwrap();
            assert_eq!(header.compression(), Ok(codec));
            assert_eq!(header.records_count(), 4);
            assert_eq!(header.base_timestamp(), 1_700_000_000_000);
            assert_eq!(header.max_timestamp(), 1_700_000_005_000);
            let records: Vec<Record> = Records::decode(batch)
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert_eq!(records, expected(0, &inputs), "{}", codec.name());
        }
    }

    #[test]
    fn uncompressed_keys_and_values_are_slices_of_the_batch() {
        let batch = build(Compression::None, &sample_inputs());
        let range = batch.as_ptr() as usize..batch.as_ptr() as usize + batch.len();
        for record in Records::decode(batch.clone()).unwrap() {
            let record = record.unwrap();
            for part in [&record.key, &record.value]
                .into_iter()
                .flatten()
                .chain(record.headers.iter().filter_map(|h| h.value.as_ref()))
                .filter(|b| !b.is_empty())
            {
                assert!(range.contains(&(part.as_ptr() as usize)));
            }
        }
    }

    #[test]
    fn compressed_records_share_one_decompressed_buffer() {
        let batch = build(Compression::Zstd, &sample_inputs());
        let records: Vec<Record> = Records::decode(batch)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let first = records[0].key.as_ref().unwrap().as_ptr() as usize;
        let last = records[3].value.as_ref().unwrap().as_ptr() as usize;
        // Both point into one buffer of about 72 KB, not into separate allocations.
        assert!(last > first && last - first < 80_000);
    }

    #[test]
    fn offsets_follow_the_patched_base_offset() {
        let inputs = sample_inputs();
        let mut batch = build(Compression::Lz4, &inputs).to_vec();
        patch_base_offset(&mut batch, 1234);
        let records: Vec<Record> = Records::decode(Bytes::from(batch))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(records, expected(1234, &inputs));
    }

    #[test]
    fn log_append_time_gives_every_record_the_max_timestamp() {
        let mut batch = build(Compression::None, &sample_inputs()).to_vec();
        patch_log_append_time(&mut batch, 42_000);
        validate_produced_batch(&batch).unwrap();
        for record in Records::decode(Bytes::from(batch)).unwrap() {
            assert_eq!(record.unwrap().timestamp, 42_000);
        }
    }

    #[test]
    fn yields_exactly_the_announced_records() {
        let area = [
            raw_record(0, b"a", b"1", None),
            raw_record(1, b"b", b"2", None),
        ]
        .concat();
        let records = Records::decode(raw_batch(&area, 2, 0)).unwrap();
        assert_eq!(records.remaining(), 2);
        let records: Vec<Record> = records.map(Result::unwrap).collect();
        assert_eq!(records.len(), 2);
        assert_eq!(records[1].offset, 101);
        assert_eq!(records[1].timestamp, 1005);
        assert_eq!(records[1].key.as_deref(), Some(&b"b"[..]));
    }

    #[test]
    fn fewer_records_than_announced_is_one_error() {
        let area = raw_record(0, b"a", b"1", None);
        let mut records = Records::decode(raw_batch(&area, 2, 0)).unwrap();
        assert!(records.next().unwrap().is_ok());
        assert!(matches!(
            records.next(),
            Some(Err(BatchError::CountMismatch { .. }))
        ));
        assert!(records.next().is_none());
        assert!(records.next().is_none());
    }

    #[test]
    fn trailing_bytes_after_the_last_record_are_one_error() {
        // Two records present, header says one.
        let area = [
            raw_record(0, b"a", b"1", None),
            raw_record(1, b"b", b"2", None),
        ]
        .concat();
        let mut records = Records::decode(raw_batch(&area, 1, 0)).unwrap();
        assert!(records.next().unwrap().is_ok());
        assert!(matches!(
            records.next(),
            Some(Err(BatchError::CountMismatch { reason })) if reason.contains("follow")
        ));
        assert!(records.next().is_none());

        // A single stray byte.
        let mut area = raw_record(0, b"a", b"1", None);
        area.push(0);
        let results: Vec<_> = Records::decode(raw_batch(&area, 1, 0)).unwrap().collect();
        assert_eq!(results.len(), 2);
        assert!(results[1].is_err());
    }

    #[test]
    fn truncated_record_is_an_error() {
        let mut area = raw_record(0, b"key", b"value", None);
        area.truncate(area.len() - 2);
        let mut records = Records::decode(raw_batch(&area, 1, 0)).unwrap();
        assert!(invalid_reason(records.next()).contains("only"));
        assert!(records.next().is_none());

        // Cut inside the length prefix itself.
        let area = [0x80];
        let mut records = Records::decode(raw_batch(&area, 1, 0)).unwrap();
        assert!(invalid_reason(records.next()).contains("truncated"));
    }

    #[test]
    fn length_prefix_that_lies_is_an_error() {
        // Too small: the value runs past the record's end, into the next bytes.
        let true_len = raw_record(0, b"key", b"value", None).len() as i32 - 1;
        let mut area = raw_record(0, b"key", b"value", Some(true_len - 2));
        area.extend_from_slice(&[0, 0]);
        let reason = invalid_reason(Records::decode(raw_batch(&area, 1, 0)).unwrap().next());
        assert!(reason.contains("runs past"), "{reason}");

        // Too large: the fields end before the length prefix does.
        let mut area = raw_record(0, b"key", b"value", Some(true_len + 3));
        area.extend_from_slice(&[0, 0, 0]);
        let reason = invalid_reason(Records::decode(raw_batch(&area, 1, 0)).unwrap().next());
        assert!(reason.contains("fields use"), "{reason}");

        // Negative.
        let area = raw_record(0, b"key", b"value", Some(-3));
        let reason = invalid_reason(Records::decode(raw_batch(&area, 1, 0)).unwrap().next());
        assert!(reason.contains("negative"), "{reason}");
    }

    #[test]
    fn bad_field_lengths_and_header_keys_are_errors() {
        let record = |body: &[u8]| {
            let mut area = Vec::new();
            encode_varint(body.len() as i32, &mut area);
            area.extend_from_slice(body);
            Records::decode(raw_batch(&area, 1, 0)).unwrap().next()
        };
        // attributes, ts delta, offset delta, key length -2
        assert!(invalid_reason(record(&[0, 0, 0, 0x03])).contains("invalid length -2"));
        // key null, value null, header count -1
        assert!(invalid_reason(record(&[0, 0, 0, 0x01, 0x01, 0x01])).contains("header count"));
        // one header whose key is not UTF-8
        assert!(
            invalid_reason(record(&[0, 0, 0, 0x01, 0x01, 0x02, 0x02, 0xc3, 0x01]))
                .contains("UTF-8")
        );
        // one header with a null key
        assert!(
            invalid_reason(record(&[0, 0, 0, 0x01, 0x01, 0x02, 0x01, 0x01]))
                .contains("must not be null")
        );
        // header count says 2, only one header present
        assert!(
            invalid_reason(record(&[0, 0, 0, 0x01, 0x01, 0x04, 0x02, b'h', 0x01]))
                .contains("runs past")
        );
        // empty body: no attributes byte
        assert!(invalid_reason(record(&[])).contains("attributes"));
        // an absurd header count in a tiny record fails without allocating for it
        assert!(
            invalid_reason(record(&[0, 0, 0, 0x01, 0x01, 0xfe, 0xff, 0xff, 0xff, 0x07]))
                .contains("runs past")
        );
    }

    #[test]
    fn decode_checks_framing_but_not_crc() {
        let batch = build(Compression::None, &sample_inputs());
        // Wrong CRC: decoding still works (callers validate the CRC).
        let mut bad_crc = batch.to_vec();
        bad_crc[CRC_AT] ^= 0xff;
        assert!(Records::decode(Bytes::from(bad_crc)).is_ok());
        // More than one batch's bytes.
        let mut two = batch.to_vec();
        two.extend_from_slice(&batch);
        assert!(matches!(
            Records::decode(Bytes::from(two)),
            Err(BatchError::InvalidLength { .. })
        ));
        // Truncated, and too short for a header.
        assert!(matches!(
            Records::decode(batch.slice(..batch.len() - 1)),
            Err(BatchError::Truncated { .. })
        ));
        assert!(matches!(
            Records::decode(batch.slice(..20)),
            Err(BatchError::Truncated { .. })
        ));
        // Negative record count.
        let mut negative = batch.to_vec();
        negative[RECORDS_COUNT_AT..RECORDS_COUNT_AT + 4].copy_from_slice(&(-1i32).to_be_bytes());
        assert!(matches!(
            Records::decode(Bytes::from(negative)),
            Err(BatchError::CountMismatch { .. })
        ));
        // Unknown codec 5.
        assert!(matches!(
            Records::decode(raw_batch(&[], 1, 5)),
            Err(BatchError::UnknownCompression { codec: 5 })
        ));
    }

    #[test]
    fn empty_compressed_batch_has_no_records() {
        // What Kafka's cleaner writes for a batch whose records were all removed.
        for codec in 1..5 {
            let mut records = Records::decode(raw_batch(&[], 0, codec)).unwrap();
            assert_eq!(records.remaining(), 0);
            assert!(records.next().is_none());
        }
    }

    #[test]
    fn decompression_limit_applies() {
        let batch = build(Compression::Gzip, &sample_inputs());
        assert!(matches!(
            Records::decode_with_limit(batch.clone(), 1000),
            Err(BatchError::Decompression { codec: "gzip", .. })
        ));
        assert!(Records::decode_with_limit(batch, 100_000).is_ok());
    }

    #[test]
    fn count_uncompressed_records_walks_length_prefixes() {
        let one = raw_record(0, b"a", b"1", None);
        let area = [one.clone(), raw_record(1, b"bb", b"22", None), one.clone()].concat();
        assert_eq!(count_uncompressed_records(&area), Ok(3));
        assert_eq!(count_uncompressed_records(&[]), Ok(0));
        // Zero-length records are counted (their fields are not checked here).
        assert_eq!(count_uncompressed_records(&[0, 0]), Ok(2));
        // The last record is cut short.
        assert!(matches!(
            count_uncompressed_records(&area[..area.len() - 1]),
            Err(BatchError::InvalidRecord { .. })
        ));
        // A negative prefix, and a prefix that is itself truncated.
        assert!(matches!(
            count_uncompressed_records(&[0x01]),
            Err(BatchError::InvalidRecord { .. })
        ));
        assert!(matches!(
            count_uncompressed_records(&[0x80, 0x80]),
            Err(BatchError::InvalidRecord { .. })
        ));
    }

    #[test]
    fn produced_batch_with_wrong_count_is_rejected() {
        let area = [
            raw_record(0, b"a", b"1", None),
            raw_record(1, b"b", b"2", None),
        ]
        .concat();
        assert!(validate_produced_batch(&raw_batch(&area, 2, 0)).is_ok());
        assert!(matches!(
            validate_produced_batch(&raw_batch(&area, 3, 0)),
            Err(BatchError::CountMismatch { .. })
        ));
        assert!(matches!(
            validate_produced_batch(&raw_batch(&area[..area.len() - 1], 2, 0)),
            Err(BatchError::InvalidRecord { .. })
        ));
    }

    fn arb_bytes(max: usize) -> impl Strategy<Value = Option<Vec<u8>>> {
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..max))
    }

    fn arb_input() -> impl Strategy<Value = Input> {
        (
            any::<i64>(),
            arb_bytes(40),
            arb_bytes(200),
            proptest::collection::vec((".{0,8}", arb_bytes(20)), 0..4),
        )
    }

    /// Runs every decoder entry point over `bytes`; they must return, not panic.
    fn exercise(bytes: &[u8]) {
        let _ = count_uncompressed_records(bytes);
        let _ = validate_produced_batch(bytes);
        if let Ok(records) = Records::decode_with_limit(Bytes::copy_from_slice(bytes), 1 << 20) {
            let announced = records.remaining();
            let mut yielded = 0;
            let mut errors = 0;
            for result in records {
                match result {
                    Ok(_) => yielded += 1,
                    Err(_) => errors += 1,
                }
            }
            assert!(errors <= 1);
            assert!(yielded <= announced);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn arbitrary_records_round_trip(
            inputs in proptest::collection::vec(arb_input(), 1..20),
            codec_id in 0u8..5,
        ) {
            let codec = Compression::from_id(codec_id).unwrap();
            let batch = build(codec, &inputs);
            validate_produced_batch(&batch).unwrap();
            let records: Vec<Record> = Records::decode(batch)
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            prop_assert_eq!(records, expected(0, &inputs));
        }
    }

    /// Wherever the quick path decodes a record, the checked path decodes the same.
    fn quick_path_agrees(area: &[u8], log_append_time: Option<i64>) {
        let mut records = Records {
            area: Bytes::copy_from_slice(area),
            position: 0,
            index: 0,
            count: usize::MAX,
            base_offset: 1 << 40,
            base_timestamp: 1_700_000_000_000,
            log_append_time,
            finished: false,
        };
        while let Some((quick, next)) = records.read_plain_record() {
            let (checked, checked_next) = records.read_record_checked().unwrap();
            assert_eq!(quick, checked);
            assert_eq!(next, checked_next);
            records.position = next;
            records.index += 1;
        }
    }

    #[test]
    fn quick_path_takes_plain_records_and_leaves_the_rest() {
        let inputs: Vec<Input> = vec![
            (1000, Some(b"k".to_vec()), Some(vec![7; 100]), vec![]),
            (999, None, None, vec![]),
            (1_000_000_000_000, None, Some(vec![1; 3000]), vec![]),
            (5, None, Some(b"v".to_vec()), vec![("h".into(), None)]),
        ];
        let batch = build(Compression::None, &inputs);
        let records = Records::decode(batch.clone()).unwrap();
        let mut quick = records.clone();
        let mut taken = 0;
        while let Some((_, next)) = quick.read_plain_record() {
            quick.position = next;
            taken += 1;
        }
        // The fourth record has a header: left to the checked path.
        assert_eq!(taken, 3);
        quick_path_agrees(&batch[HEADER_SIZE..], None);
        let decoded: Vec<Record> = records.collect::<Result<_, _>>().unwrap();
        assert_eq!(decoded, expected(0, &inputs));

        // A timestamp delta of 10 varlong bytes is left to the checked path too.
        let inputs: Vec<Input> = vec![(0, None, None, vec![]), (i64::MIN, None, None, vec![])];
        let records = Records::decode(build(Compression::None, &inputs)).unwrap();
        let mut quick = records.clone();
        let (_, next) = quick.read_plain_record().unwrap();
        quick.position = next;
        assert!(quick.read_plain_record().is_none());
        let decoded: Vec<Record> = records.collect::<Result<_, _>>().unwrap();
        assert_eq!(decoded, expected(0, &inputs));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn quick_path_agrees_on_arbitrary_areas(
            area in proptest::collection::vec(any::<u8>(), 0..300),
            log_append in any::<bool>(),
        ) {
            quick_path_agrees(&area, log_append.then_some(42));
        }

        #[test]
        fn quick_path_agrees_on_corrupted_records(
            inputs in proptest::collection::vec(arb_input(), 1..6),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        ) {
            let batch = build(Compression::None, &inputs);
            let mut area = batch[HEADER_SIZE..].to_vec();
            for (at, byte) in edits {
                if !area.is_empty() {
                    let at = at.index(area.len());
                    area[at] = byte;
                }
            }
            quick_path_agrees(&area, None);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            exercise(&bytes);
        }

        /// Arbitrary record areas behind a valid header, so decoding gets past the framing.
        #[test]
        fn arbitrary_record_areas_never_panic(
            area in proptest::collection::vec(any::<u8>(), 0..300),
            count in -2i32..8,
            codec_id in 0i16..6,
        ) {
            exercise(&raw_batch(&area, count, codec_id));
        }

        /// Valid batches with a few bytes overwritten (CRC fixed up, so validation runs on).
        #[test]
        fn corrupted_batches_never_panic(
            inputs in proptest::collection::vec(arb_input(), 1..4),
            codec_id in 0u8..5,
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
            cut in any::<prop::sample::Index>(),
            truncate in any::<bool>(),
        ) {
            let codec = Compression::from_id(codec_id).unwrap();
            let mut batch = build(codec, &inputs).to_vec();
            for (at, byte) in edits {
                // Keep the framing fields (length, magic) so the records get decoded.
                let at = HEADER_SIZE - 4 + at.index(batch.len() - HEADER_SIZE + 4);
                batch[at] = byte;
            }
            if truncate {
                batch.truncate(cut.index(batch.len() + 1));
            }
            if batch.len() >= HEADER_SIZE {
                let crc = crc32c::crc32c(&batch[21..]);
                batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
            }
            exercise(&batch);
        }
    }
}
