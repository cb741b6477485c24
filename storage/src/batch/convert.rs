//! Rewriting a produced batch in the topic's codec (`compression.type` other than
//! `producer`), as Kafka's `LogValidator` does when the producer's codec differs.
//!
//! Only the record area changes: it is decompressed and compressed again with the
//! target codec and level. The records' bytes inside are the producer's, so every
//! offset delta, timestamp, key, value and header is kept; in the header only the codec
//! bits of the attributes, the length and the CRC change. Producer id, epoch, base
//! sequence, timestamps and the record count stay as they were, so idempotent
//! deduplication sees the batch the producer sent.
//!
//! A batch already in the target codec is never rewritten: the common path stays the
//! producer's bytes, stored without a copy.

use super::header::{
    compute_crc, BatchHeader, ATTRIBUTES_AT, CRC_AT, HEADER_SIZE, LENGTH_AT, LOG_OVERHEAD,
};
use super::Compression;
use crate::error::BatchError;

/// The codec bits of the attributes.
const CODEC_MASK: i16 = 0x07;

/// `compression.type` when it names a codec: what every stored batch is compressed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetCompression {
    pub codec: Compression,
    /// `compression.gzip.level` / `compression.zstd.level` (`None`: the codec's default).
    pub level: Option<i32>,
}

/// `batch` (one whole, validated batch) with its record area in `target`'s codec, or
/// `None` when it already uses that codec. `max_decompressed_bytes` bounds the
/// decompression as the record check does.
pub fn recompress(
    batch: &[u8],
    target: TargetCompression,
    max_decompressed_bytes: usize,
) -> Result<Option<Vec<u8>>, BatchError> {
    let header = BatchHeader::new(batch)?;
    let source = header.compression()?;
    if source == target.codec {
        return Ok(None);
    }
    let area = batch.get(HEADER_SIZE..).unwrap_or(&[]);
    let records = source.decompress(area, max_decompressed_bytes)?;
    let compressed = target.codec.compress_at(&records, target.level)?;
    let mut out = Vec::with_capacity(HEADER_SIZE + compressed.len());
    out.extend_from_slice(&batch[..HEADER_SIZE]);
    out.extend_from_slice(&compressed);
    let length =
        i32::try_from(out.len() - LOG_OVERHEAD).map_err(|_| BatchError::InvalidLength {
            length: out.len() as i64,
        })?;
    out[LENGTH_AT..LENGTH_AT + 4].copy_from_slice(&length.to_be_bytes());
    let attributes = i16::from_be_bytes([out[ATTRIBUTES_AT], out[ATTRIBUTES_AT + 1]]);
    let attributes = (attributes & !CODEC_MASK) | i16::from(target.codec.id());
    out[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
    let crc = compute_crc(&out);
    out[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{validate_stored_batch, BatchBuilder, Records};
    use bytes::Bytes;

    const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    fn idempotent_batch(codec: Compression) -> Vec<u8> {
        let mut builder = BatchBuilder::new(codec).producer(7, 2, 40);
        for i in 0..50 {
            let value = format!("value {i} ").repeat(20);
            builder.push(
                1_700_000_000_000 + i,
                Some(format!("k{}", i % 5).as_bytes()),
                Some(value.as_bytes()),
                &[],
            );
        }
        builder.push(1_700_000_000_100, None, None, &[]);
        builder.build().unwrap().to_vec()
    }

    #[test]
    fn every_codec_converts_to_every_other_keeping_the_records() {
        for from in ALL {
            let original = idempotent_batch(from);
            let before = BatchHeader::new(&original).unwrap();
            let expected: Vec<_> = Records::decode(Bytes::from(original.clone()))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            for to in ALL {
                let target = TargetCompression {
                    codec: to,
                    level: None,
                };
                let converted = recompress(&original, target, 1 << 20).unwrap();
                if from == to {
                    assert!(converted.is_none(), "{from:?} is left alone");
                    continue;
                }
                let converted = converted.unwrap();
                let header = validate_stored_batch(&converted).unwrap();
                assert_eq!(header.compression().unwrap(), to, "{from:?} -> {to:?}");
                assert_eq!(header.producer_id(), before.producer_id());
                assert_eq!(header.producer_epoch(), before.producer_epoch());
                assert_eq!(header.base_sequence(), before.base_sequence());
                assert_eq!(header.records_count(), before.records_count());
                assert_eq!(header.base_timestamp(), before.base_timestamp());
                assert_eq!(header.max_timestamp(), before.max_timestamp());
                let records: Vec<_> = Records::decode(Bytes::from(converted))
                    .unwrap()
                    .map(Result::unwrap)
                    .collect();
                assert_eq!(records, expected, "{from:?} -> {to:?}");
            }
        }
    }

    #[test]
    fn levels_change_the_output_and_bombs_stop_at_the_limit() {
        let original = idempotent_batch(Compression::None);
        let at = |level| {
            recompress(
                &original,
                TargetCompression {
                    codec: Compression::Zstd,
                    level: Some(level),
                },
                1 << 20,
            )
            .unwrap()
            .unwrap()
        };
        assert_ne!(at(1), at(19));
        let gzip = TargetCompression {
            codec: Compression::Gzip,
            level: Some(1),
        };
        assert!(recompress(&original, gzip, 1 << 20).unwrap().is_some());
        // Decompression is bounded as in the record check.
        let compressed = idempotent_batch(Compression::Zstd);
        assert!(matches!(
            recompress(&compressed, gzip, 100),
            Err(BatchError::Decompression { .. })
        ));
    }
}
