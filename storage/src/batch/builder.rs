//! Encoding records into a brand-new RecordBatch v2, as Kafka's `MemoryRecordsBuilder` does.
//!
//! The builder keeps the uncompressed record area in one buffer that starts with room for
//! the 61-byte header, so an uncompressed batch is finished in place, without copying
//! the records. The finished batch has base offset 0 (the log assigns the real one),
//! partition leader epoch -1, CreateTime timestamps with the first record's timestamp as
//! the base and the largest as the max, offset deltas 0..n, and a CRC-32C over
//! attributes..end.
//!
//! `push` cannot fail, so a record that cannot be encoded (a key over 2 GiB, more than
//! `i32::MAX` records) is remembered and reported by `build`.

use bytes::{BufMut, Bytes};

use super::header::{
    compute_crc, CRC_AT, HEADER_SIZE, LOG_OVERHEAD, MAGIC_V2, NO_PARTITION_LEADER_EPOCH,
    NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE, TRANSACTIONAL_BIT,
};
use super::varint::{encode_varint, encode_varlong, varint_size, varlong_size};
use super::Compression;
use crate::error::BatchError;

/// Builds one record batch; see the module docs.
#[derive(Debug, Clone)]
pub struct BatchBuilder {
    compression: Compression,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    transactional: bool,
    /// `HEADER_SIZE` placeholder bytes, then the encoded records.
    buffer: Vec<u8>,
    count: usize,
    base_timestamp: i64,
    max_timestamp: i64,
    /// The first record that could not be encoded; `build` returns it.
    error: Option<BatchError>,
}

impl BatchBuilder {
    /// An empty builder for a batch compressed with `compression`, not idempotent.
    pub fn new(compression: Compression) -> Self {
        Self::with_capacity(compression, HEADER_SIZE)
    }

    /// Like [`BatchBuilder::new`], with room for `capacity` bytes (header included) before
    /// the buffer grows: a producer that knows its batch size avoids a reallocation and
    /// copy at every doubling.
    pub fn with_capacity(compression: Compression, capacity: usize) -> Self {
        let mut buffer = Vec::with_capacity(capacity.max(HEADER_SIZE));
        buffer.resize(HEADER_SIZE, 0);
        BatchBuilder {
            compression,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            base_sequence: NO_SEQUENCE,
            transactional: false,
            buffer,
            count: 0,
            base_timestamp: 0,
            max_timestamp: 0,
            error: None,
        }
    }

    /// Sets the idempotent producer's id, epoch and the first record's sequence number.
    pub fn producer(mut self, producer_id: i64, producer_epoch: i16, base_sequence: i32) -> Self {
        self.producer_id = producer_id;
        self.producer_epoch = producer_epoch;
        self.base_sequence = base_sequence;
        self
    }

    /// Marks the batch as part of a transaction (attributes bit 4).
    pub fn transactional(mut self, transactional: bool) -> Self {
        self.transactional = transactional;
        self
    }

    /// Appends a record. Offsets are assigned in push order; timestamps may go in any
    /// order (Kafka allows it), the delta to the first one is stored.
    pub fn push(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&str, Option<&[u8]>)],
    ) {
        if self.error.is_some() {
            return;
        }
        if let Err(e) = self.encode_record(timestamp, key, value, headers) {
            self.error = Some(e);
        }
    }

    /// Records pushed so far.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether no record has been pushed.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Size of the batch if it were built uncompressed now: header plus encoded records.
    /// Producers compare it with `batch.size`; a compressed batch ends up smaller.
    pub fn estimated_size(&self) -> usize {
        self.buffer.len()
    }

    /// Finishes the batch. Fails on an empty builder (`CountMismatch`: Kafka has no empty
    /// batches from producers), on a record `push` could not encode, or if compression or
    /// the batch's size fails.
    pub fn build(self) -> Result<Bytes, BatchError> {
        if let Some(error) = self.error {
            return Err(error);
        }
        if self.count == 0 {
            return Err(BatchError::CountMismatch {
                reason: "cannot build a batch without records".to_owned(),
            });
        }
        let count = i32::try_from(self.count).map_err(|_| too_many(self.count))?;
        let mut batch = match self.compression {
            Compression::None => self.buffer,
            codec => {
                let records = self.buffer.get(HEADER_SIZE..).unwrap_or(&[]);
                let compressed = codec.compress(records)?;
                let mut batch = Vec::with_capacity(HEADER_SIZE + compressed.len());
                batch.resize(HEADER_SIZE, 0);
                batch.extend_from_slice(&compressed);
                batch
            }
        };
        let batch_length =
            i32::try_from(batch.len() - LOG_OVERHEAD).map_err(|_| BatchError::InvalidLength {
                length: (batch.len() - LOG_OVERHEAD) as i64,
            })?;
        let mut attributes = i16::from(self.compression.id());
        if self.transactional {
            attributes |= TRANSACTIONAL_BIT;
        }
        let mut header = [0u8; HEADER_SIZE];
        {
            // Field order is the header layout in `header.rs`; the CRC is filled in last.
            let mut out = &mut header[..];
            out.put_i64(0); // base offset: assigned by the log
            out.put_i32(batch_length);
            out.put_i32(NO_PARTITION_LEADER_EPOCH);
            out.put_i8(MAGIC_V2);
            out.put_u32(0); // CRC placeholder
            out.put_i16(attributes);
            out.put_i32(count - 1); // last offset delta
            out.put_i64(self.base_timestamp);
            out.put_i64(self.max_timestamp);
            out.put_i64(self.producer_id);
            out.put_i16(self.producer_epoch);
            out.put_i32(self.base_sequence);
            out.put_i32(count);
        }
        batch[..HEADER_SIZE].copy_from_slice(&header);
        let crc = compute_crc(&batch);
        batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        Ok(Bytes::from(batch))
    }

    fn encode_record(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&str, Option<&[u8]>)],
    ) -> Result<(), BatchError> {
        let offset_delta = i32::try_from(self.count).map_err(|_| too_many(self.count))?;
        let (base_timestamp, max_timestamp) = if self.count == 0 {
            (timestamp, timestamp)
        } else {
            (self.base_timestamp, self.max_timestamp.max(timestamp))
        };
        // Wrapping like Java's long subtraction; the decoder's wrapping add undoes it.
        let timestamp_delta = timestamp.wrapping_sub(base_timestamp);
        let key_length = nullable_length(key, "key")?;
        let value_length = nullable_length(value, "value")?;
        let header_count = length(headers.len(), "header count")?;

        // Size the body first: the length prefix comes before it.
        let mut body = 1 // attributes
            + varlong_size(timestamp_delta)
            + varint_size(offset_delta)
            + varint_size(key_length)
            + key.map_or(0, <[u8]>::len)
            + varint_size(value_length)
            + value.map_or(0, <[u8]>::len)
            + varint_size(header_count);
        for (header_key, header_value) in headers {
            let key_length = length(header_key.len(), "header key")?;
            let value_length = nullable_length(*header_value, "header value")?;
            body = body
                .checked_add(
                    varint_size(key_length)
                        + header_key.len()
                        + varint_size(value_length)
                        + header_value.map_or(0, <[u8]>::len),
                )
                .ok_or_else(|| record_too_large(usize::MAX))?;
        }
        let body_length = i32::try_from(body).map_err(|_| record_too_large(body))?;

        let out = &mut self.buffer;
        out.reserve(varint_size(body_length) + body);
        encode_varint(body_length, out);
        out.put_i8(0); // record attributes: unused
        encode_varlong(timestamp_delta, out);
        encode_varint(offset_delta, out);
        encode_varint(key_length, out);
        out.extend_from_slice(key.unwrap_or_default());
        encode_varint(value_length, out);
        out.extend_from_slice(value.unwrap_or_default());
        encode_varint(header_count, out);
        for (header_key, header_value) in headers {
            // Both lengths were checked above.
            encode_varint(header_key.len() as i32, out);
            out.extend_from_slice(header_key.as_bytes());
            encode_varint(header_value.map_or(-1, |v| v.len() as i32), out);
            out.extend_from_slice(header_value.unwrap_or_default());
        }

        self.base_timestamp = base_timestamp;
        self.max_timestamp = max_timestamp;
        self.count += 1;
        Ok(())
    }
}

/// A field length as the varint the record format stores.
fn length(len: usize, field: &str) -> Result<i32, BatchError> {
    i32::try_from(len).map_err(|_| BatchError::InvalidRecord {
        reason: format!("{field} of {len} does not fit the record format"),
    })
}

/// A nullable field's length: -1 for null.
fn nullable_length(bytes: Option<&[u8]>, field: &str) -> Result<i32, BatchError> {
    bytes.map_or(Ok(-1), |b| length(b.len(), field))
}

fn too_many(count: usize) -> BatchError {
    BatchError::CountMismatch {
        reason: format!("{count} records do not fit one batch"),
    }
}

fn record_too_large(size: usize) -> BatchError {
    BatchError::InvalidRecord {
        reason: format!("record of {size} bytes does not fit the record format"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::header::{validate_produced_batch, BatchHeader, TimestampType};
    use crate::batch::{batches, Records};

    /// The batch Kafka's spec gives for one record (key "k", value "v", header h=x) at
    /// timestamp 1_700_000_000_000 = 0x0000_018b_cfe5_6800, assembled field by field.
    #[test]
    fn one_record_batch_matches_the_spec_byte_for_byte() {
        #[rustfmt::skip]
        let mut expected: Vec<u8> = vec![
            0, 0, 0, 0, 0, 0, 0, 0,             // base offset 0
            0, 0, 0, 62,                        // batch length: 49 header bytes + 13 record bytes
            0xff, 0xff, 0xff, 0xff,             // partition leader epoch -1
            2,                                  // magic
            0, 0, 0, 0,                         // CRC, filled in below
            0, 0,                               // attributes: no compression, CreateTime
            0, 0, 0, 0,                         // last offset delta 0
            0, 0, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x00, // base timestamp
            0, 0, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x00, // max timestamp
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // producer id -1
            0xff, 0xff,                         // producer epoch -1
            0xff, 0xff, 0xff, 0xff,             // base sequence -1
            0, 0, 0, 1,                         // records count 1
            // the record
            0x18,                               // length 12 (zig-zag 24)
            0x00,                               // attributes
            0x00,                               // timestamp delta 0
            0x00,                               // offset delta 0
            0x02, b'k',                         // key length 1, key
            0x02, b'v',                         // value length 1, value
            0x02,                               // header count 1
            0x02, b'h',                         // header key length 1, key
            0x02, b'x',                         // header value length 1, value
        ];
        assert_eq!(expected.len(), 74);
        let crc = crc32c::crc32c(&expected[21..]);
        expected[17..21].copy_from_slice(&crc.to_be_bytes());

        let mut builder = BatchBuilder::new(Compression::None);
        builder.push(
            1_700_000_000_000,
            Some(b"k"),
            Some(b"v"),
            &[("h", Some(b"x"))],
        );
        assert_eq!(builder.estimated_size(), 74);
        let batch = builder.build().unwrap();
        assert_eq!(&batch[..], &expected[..]);
        validate_produced_batch(&batch).unwrap();
    }

    #[test]
    fn null_key_and_value_are_minus_one() {
        let mut builder = BatchBuilder::new(Compression::None);
        builder.push(5, None, None, &[("n", None)]);
        let batch = builder.build().unwrap();
        // length 9 (zig-zag 18), attrs, ts delta, offset delta, key -1, value -1,
        // 1 header: key "n", value -1.
        assert_eq!(
            &batch[HEADER_SIZE..],
            &[0x12, 0, 0, 0, 0x01, 0x01, 0x02, 0x02, b'n', 0x01]
        );
    }

    #[test]
    fn empty_builder_is_an_error() {
        let builder = BatchBuilder::new(Compression::Zstd);
        assert!(builder.is_empty());
        assert_eq!(builder.len(), 0);
        assert_eq!(builder.estimated_size(), HEADER_SIZE);
        assert!(matches!(
            builder.build(),
            Err(BatchError::CountMismatch { .. })
        ));
    }

    #[test]
    fn header_fields_are_filled_in() {
        let mut builder = BatchBuilder::new(Compression::Zstd)
            .producer(77, 3, 1000)
            .transactional(true);
        builder.push(500, Some(b"a"), Some(b"1"), &[]);
        builder.push(400, Some(b"b"), Some(b"2"), &[]);
        builder.push(900, Some(b"c"), Some(b"3"), &[]);
        builder.push(700, Some(b"d"), Some(b"4"), &[]);
        assert_eq!(builder.len(), 4);
        assert!(!builder.is_empty());
        let batch = builder.build().unwrap();
        let header = validate_produced_batch(&batch).unwrap();
        assert_eq!(header.base_offset(), 0);
        assert_eq!(header.partition_leader_epoch(), -1);
        assert_eq!(header.total_size(), batch.len() as i64);
        assert_eq!(header.compression(), Ok(Compression::Zstd));
        assert!(header.is_transactional());
        assert!(!header.is_control());
        assert_eq!(header.timestamp_type(), TimestampType::CreateTime);
        assert_eq!(header.last_offset_delta(), 3);
        assert_eq!(header.records_count(), 4);
        // Base is the first record's timestamp, max the largest (Kafka's builder).
        assert_eq!(header.base_timestamp(), 500);
        assert_eq!(header.max_timestamp(), 900);
        assert_eq!(header.producer_id(), 77);
        assert_eq!(header.producer_epoch(), 3);
        assert_eq!(header.base_sequence(), 1000);
        assert_eq!(header.last_sequence(), 1003);
        let timestamps: Vec<i64> = Records::decode(batch)
            .unwrap()
            .map(|r| r.unwrap().timestamp)
            .collect();
        assert_eq!(timestamps, [500, 400, 900, 700]);
    }

    #[test]
    fn estimated_size_is_the_uncompressed_batch_size() {
        for codec in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let mut builder = BatchBuilder::new(codec);
            for i in 0..100u32 {
                let value = format!("value number {i} of a compressible batch");
                builder.push(i64::from(i), None, Some(value.as_bytes()), &[]);
            }
            let estimate = builder.estimated_size();
            let batch = builder.build().unwrap();
            if codec == Compression::None {
                assert_eq!(batch.len(), estimate);
            } else {
                assert!(batch.len() < estimate);
            }
        }
    }

    #[test]
    fn extreme_timestamps_round_trip() {
        let mut builder = BatchBuilder::new(Compression::None);
        builder.push(i64::MAX, None, Some(b"a"), &[]);
        builder.push(i64::MIN, None, Some(b"b"), &[]);
        builder.push(-1, None, Some(b"c"), &[]);
        let batch = builder.build().unwrap();
        let timestamps: Vec<i64> = Records::decode(batch)
            .unwrap()
            .map(|r| r.unwrap().timestamp)
            .collect();
        assert_eq!(timestamps, [i64::MAX, i64::MIN, -1]);
    }

    #[test]
    fn built_batches_iterate_back_to_back() {
        let mut bytes = Vec::new();
        for codec in [Compression::None, Compression::Snappy] {
            let mut builder = BatchBuilder::new(codec);
            builder.push(1, Some(b"k"), Some(b"v"), &[]);
            bytes.extend_from_slice(&builder.build().unwrap());
        }
        let sizes: Vec<usize> = batches(&bytes).map(|b| b.unwrap().len()).collect();
        assert_eq!(sizes.len(), 2);
        assert_eq!(sizes.iter().sum::<usize>(), bytes.len());
        for batch in batches(&bytes) {
            let header = BatchHeader::new(batch.unwrap()).unwrap();
            assert_eq!(header.records_count(), 1);
        }
    }
}
