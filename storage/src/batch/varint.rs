//! Zig-zag varints and varlongs, exactly as Kafka's record format (`ByteUtils.writeVarint`,
//! `readVarint`, `writeVarlong`, `readVarlong`, `sizeOfVarint`, `sizeOfVarlong`) uses them.
//!
//! A signed value is first zig-zag mapped to an unsigned one (0, -1, 1, -2, ... become
//! 0, 1, 2, 3, ...) so that small magnitudes of either sign stay short, then written as
//! base-128 groups, least significant first, with the high bit of each byte meaning "more
//! bytes follow". An `i32` takes at most 5 bytes and an `i64` at most 10.
//!
//! Decoding works on `&[u8]` and returns the value and the bytes consumed. It never panics:
//! truncated input and encodings longer than 5 (varint) or 10 (varlong) bytes are
//! `BatchError::InvalidRecord`. Like Kafka, bits of the last allowed byte that do not fit
//! the type are dropped rather than rejected, so anything the Java client accepts decodes
//! here to the same value.

use bytes::BufMut;

use crate::error::BatchError;

/// Longest encoding of an `i32`.
pub const MAX_VARINT_LEN: usize = 5;
/// Longest encoding of an `i64`.
pub const MAX_VARLONG_LEN: usize = 10;

/// Zig-zag maps an `i32` so small negative values get short encodings.
fn zigzag32(value: i32) -> u32 {
    ((value << 1) ^ (value >> 31)) as u32
}

/// Zig-zag maps an `i64` so small negative values get short encodings.
fn zigzag64(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn unzigzag32(raw: u32) -> i32 {
    ((raw >> 1) as i32) ^ -((raw & 1) as i32)
}

fn unzigzag64(raw: u64) -> i64 {
    ((raw >> 1) as i64) ^ -((raw & 1) as i64)
}

fn put_unsigned(out: &mut impl BufMut, mut raw: u64) {
    while raw >= 0x80 {
        out.put_u8((raw as u8) | 0x80);
        raw >>= 7;
    }
    out.put_u8(raw as u8);
}

fn unsigned_size(raw: u64) -> usize {
    // One byte per started group of 7 significant bits, and at least one byte for 0.
    let bits = 64 - (raw | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Appends the zig-zag varint encoding of `value` (1 to 5 bytes).
pub fn encode_varint(value: i32, out: &mut impl BufMut) {
    put_unsigned(out, u64::from(zigzag32(value)));
}

/// Appends the zig-zag varlong encoding of `value` (1 to 10 bytes).
pub fn encode_varlong(value: i64, out: &mut impl BufMut) {
    put_unsigned(out, zigzag64(value));
}

/// Bytes [`encode_varint`] writes for `value`.
pub fn varint_size(value: i32) -> usize {
    unsigned_size(u64::from(zigzag32(value)))
}

/// Bytes [`encode_varlong`] writes for `value`.
pub fn varlong_size(value: i64) -> usize {
    unsigned_size(zigzag64(value))
}

/// Reads base-128 groups from the start of `bytes`, at most `max_len` of them.
fn decode_unsigned(bytes: &[u8], max_len: usize, what: &str) -> Result<(u64, usize), BatchError> {
    let mut raw: u64 = 0;
    for (i, &byte) in bytes.iter().take(max_len).enumerate() {
        // 7 * i <= 63, so the shift is in range; bits pushed past 64 are dropped, which is
        // what Kafka's `b << i` on an int/long does with the last byte too.
        raw |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((raw, i + 1));
        }
    }
    let reason = if bytes.len() < max_len {
        format!("{what} truncated after {} bytes", bytes.len())
    } else {
        format!("{what} longer than {max_len} bytes")
    };
    Err(BatchError::InvalidRecord { reason })
}

/// Decodes a zig-zag varint from the start of `bytes`: the value and the bytes it used.
pub fn decode_varint(bytes: &[u8]) -> Result<(i32, usize), BatchError> {
    let (raw, used) = decode_unsigned(bytes, MAX_VARINT_LEN, "varint")?;
    // Truncation to 32 bits drops the excess bits of the 5th byte, as Kafka does.
    Ok((unzigzag32(raw as u32), used))
}

/// Decodes a zig-zag varlong from the start of `bytes`: the value and the bytes it used.
pub fn decode_varlong(bytes: &[u8]) -> Result<(i64, usize), BatchError> {
    let (raw, used) = decode_unsigned(bytes, MAX_VARLONG_LEN, "varlong")?;
    Ok((unzigzag64(raw), used))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn varint(value: i32) -> Vec<u8> {
        let mut out = Vec::new();
        encode_varint(value, &mut out);
        out
    }

    fn varlong(value: i64) -> Vec<u8> {
        let mut out = Vec::new();
        encode_varlong(value, &mut out);
        out
    }

    /// Encodings worked out by hand from Kafka's zig-zag + base-128 rules.
    #[test]
    fn varint_matches_kafka_encodings() {
        let cases: &[(i32, &[u8])] = &[
            (0, &[0x00]),
            (-1, &[0x01]),
            (1, &[0x02]),
            (-2, &[0x03]),
            (63, &[0x7e]),
            (-64, &[0x7f]),
            (64, &[0x80, 0x01]),
            // 300 -> zig-zag 600 = 0b100_1011000 -> 0xd8 0x04
            (300, &[0xd8, 0x04]),
            (-300, &[0xd7, 0x04]),
            // i32::MAX -> 0xffff_fffe, i32::MIN -> 0xffff_ffff: five bytes, last 0x0f
            (i32::MAX, &[0xfe, 0xff, 0xff, 0xff, 0x0f]),
            (i32::MIN, &[0xff, 0xff, 0xff, 0xff, 0x0f]),
        ];
        for &(value, expected) in cases {
            assert_eq!(varint(value), expected, "encoding {value}");
            assert_eq!(varint_size(value), expected.len(), "size of {value}");
            assert_eq!(
                decode_varint(expected),
                Ok((value, expected.len())),
                "decoding {value}"
            );
        }
    }

    #[test]
    fn varlong_matches_kafka_encodings() {
        let cases: &[(i64, &[u8])] = &[
            (0, &[0x00]),
            (-1, &[0x01]),
            (1, &[0x02]),
            (300, &[0xd8, 0x04]),
            (
                i64::MAX,
                &[0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
            (
                i64::MIN,
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
            (i64::from(i32::MAX) + 1, &[0x80, 0x80, 0x80, 0x80, 0x10]),
        ];
        for &(value, expected) in cases {
            assert_eq!(varlong(value), expected, "encoding {value}");
            assert_eq!(varlong_size(value), expected.len(), "size of {value}");
            assert_eq!(
                decode_varlong(expected),
                Ok((value, expected.len())),
                "decoding {value}"
            );
        }
    }

    #[test]
    fn decoding_reports_bytes_used_and_ignores_what_follows() {
        assert_eq!(decode_varint(&[0xd8, 0x04, 0xff, 0xff]), Ok((300, 2)));
        assert_eq!(decode_varlong(&[0x02, 0x80]), Ok((1, 1)));
    }

    #[test]
    fn truncated_input_is_an_error() {
        for bytes in [&[][..], &[0x80], &[0xff, 0xff, 0xff, 0xff]] {
            assert!(matches!(
                decode_varint(bytes),
                Err(BatchError::InvalidRecord { .. })
            ));
            assert!(matches!(
                decode_varlong(bytes),
                Err(BatchError::InvalidRecord { .. })
            ));
        }
    }

    #[test]
    fn overlong_encodings_are_errors() {
        // Six bytes for a varint, eleven for a varlong, even if the value would be small.
        let six = [0x80, 0x80, 0x80, 0x80, 0x80, 0x00];
        assert!(matches!(
            decode_varint(&six),
            Err(BatchError::InvalidRecord { reason }) if reason.contains("longer")
        ));
        let eleven = [0x80; 11];
        assert!(matches!(
            decode_varlong(&eleven),
            Err(BatchError::InvalidRecord { reason }) if reason.contains("longer")
        ));
        // A padded but in-range encoding (5 bytes for a varint) is accepted, as in Kafka.
        assert_eq!(decode_varint(&[0x82, 0x80, 0x80, 0x80, 0x00]), Ok((1, 5)));
    }

    proptest! {
        #[test]
        fn varint_round_trips(value in any::<i32>()) {
            let bytes = varint(value);
            prop_assert_eq!(bytes.len(), varint_size(value));
            prop_assert!(bytes.len() <= MAX_VARINT_LEN);
            prop_assert_eq!(decode_varint(&bytes), Ok((value, bytes.len())));
            // A varint is also a valid varlong with the same value.
            prop_assert_eq!(decode_varlong(&bytes), Ok((i64::from(value), bytes.len())));
        }

        #[test]
        fn varlong_round_trips(value in any::<i64>()) {
            let bytes = varlong(value);
            prop_assert_eq!(bytes.len(), varlong_size(value));
            prop_assert!(bytes.len() <= MAX_VARLONG_LEN);
            prop_assert_eq!(decode_varlong(&bytes), Ok((value, bytes.len())));
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(
            bytes in proptest::collection::vec(any::<u8>(), 0..16),
        ) {
            if let Ok((_, used)) = decode_varint(&bytes) {
                prop_assert!((1..=MAX_VARINT_LEN).contains(&used) && used <= bytes.len());
            }
            if let Ok((_, used)) = decode_varlong(&bytes) {
                prop_assert!((1..=MAX_VARLONG_LEN).contains(&used) && used <= bytes.len());
            }
        }
    }
}
