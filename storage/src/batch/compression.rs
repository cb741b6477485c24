//! Compression codecs of the record format: ids 0-4 in the batch attributes, and the
//! (de)compression of a batch's record area in the framing each Kafka client writes.
//!
//! What each codec's records look like as Kafka clients write them, and what we do:
//!
//! - gzip: gzip members (RFC 1952). We write one member at level 6 (java.util.zip's
//!   default) and read any number of concatenated members.
//! - snappy: the Java client and kafka-python write the xerial framing below; librdkafka
//!   writes one raw snappy block. We write xerial with 32 KiB blocks, as the Java client
//!   does, and read both.
//! - lz4: the LZ4 frame format. We write what Kafka's `KafkaLZ4BlockOutputStream` does
//!   (independent 64 KiB blocks, no checksums) and read exactly what Kafka's reader
//!   accepts: one frame of independent blocks, with or without checksums and content
//!   size, and nothing after it (see [`lz4_decompress`]).
//! - zstd: zstd frames. We write one frame at level 3 (Kafka's default) and read any
//!   number of frames, with or without a content size.
//!
//! The xerial framing (snappy-java's `SnappyOutputStream`) is: the 8-byte magic
//! `82 'SNAPPY' 00`, a big-endian i32 version (1) and minimum compatible version (1), then
//! blocks of `[u32 big-endian compressed length][raw snappy block]`, each block covering up
//! to 32 KiB of input. snappy-java also accepts a second header in place of a block (two
//! streams concatenated), and so do we.
//!
//! Decompression takes a limit on the output size and fails once it would be exceeded, so
//! a small hostile batch cannot make the process allocate gigabytes (a decompression bomb).
//! Sizes announced inside compressed data are only trusted after checking them against
//! the limit.

use std::cell::RefCell;
use std::io::{Read, Write};

use crate::error::BatchError;

/// snappy-java's stream magic.
const XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
/// Magic + version + minimum compatible version.
const XERIAL_HEADER_LEN: usize = 16;
/// The version snappy-java (and kafka-python) writes, and the oldest that can read it.
const XERIAL_VERSION: i32 = 1;
const XERIAL_MIN_COMPATIBLE_VERSION: i32 = 1;
/// snappy-java's default block size, which Kafka's producer uses.
const XERIAL_BLOCK_SIZE: usize = 32 * 1024;
/// Kafka's default zstd level (`compression.zstd.level`).
const ZSTD_LEVEL: i32 = 3;

/// A record batch's compression codec (attributes bits 0-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    None = 0,
    Gzip = 1,
    Snappy = 2,
    Lz4 = 3,
    Zstd = 4,
}

impl Compression {
    /// The codec for an attributes id.
    pub fn from_id(id: u8) -> Result<Self, BatchError> {
        Ok(match id {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            codec => return Err(BatchError::UnknownCompression { codec }),
        })
    }

    /// The id stored in the attributes.
    pub fn id(self) -> u8 {
        self as u8
    }

    /// Kafka's name for the codec (`compression.type`).
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }

    /// Compresses a record area with this codec, in the framing the Java client writes,
    /// at the codec's default level.
    ///
    /// `None` returns the bytes unchanged.
    pub fn compress(self, data: &[u8]) -> Result<Vec<u8>, BatchError> {
        self.compress_at(data, None)
    }

    /// Like [`Compression::compress`], at `level` (Kafka's `compression.gzip.level` and
    /// `compression.zstd.level`; `None` or gzip's -1: the default). snappy has no levels,
    /// and lz4 is written at lz4_flex's one speed, so `compression.lz4.level` does not
    /// change its output.
    pub fn compress_at(self, data: &[u8], level: Option<i32>) -> Result<Vec<u8>, BatchError> {
        let fail = |reason: String| BatchError::Compression {
            codec: self.name(),
            reason,
        };
        match self {
            Compression::None => Ok(data.to_vec()),
            Compression::Gzip => {
                // Level 6 is java.util.zip's default, which Kafka uses unless configured.
                let level = match level {
                    Some(level @ 0..=9) => flate2::Compression::new(level as u32),
                    _ => flate2::Compression::default(),
                };
                let mut encoder =
                    flate2::write::GzEncoder::new(Vec::with_capacity(data.len() / 2 + 64), level);
                encoder
                    .write_all(data)
                    .and_then(|()| encoder.finish())
                    .map_err(|e| fail(e.to_string()))
            }
            Compression::Snappy => xerial_compress(data).map_err(|e| fail(e.to_string())),
            Compression::Lz4 => {
                // Kafka's KafkaLZ4BlockOutputStream writes independent 64 KiB blocks with no
                // block or content checksums; match it so every client can read our output.
                let info = lz4_flex::frame::FrameInfo::new()
                    .block_size(lz4_flex::frame::BlockSize::Max64KB)
                    .block_mode(lz4_flex::frame::BlockMode::Independent);
                let mut encoder = lz4_flex::frame::FrameEncoder::with_frame_info(
                    info,
                    Vec::with_capacity(data.len() / 2 + 64),
                );
                encoder.write_all(data).map_err(|e| fail(e.to_string()))?;
                encoder.finish().map_err(|e| fail(e.to_string()))
            }
            Compression::Zstd => zstd::bulk::compress(data, level.unwrap_or(ZSTD_LEVEL))
                .map_err(|e| fail(e.to_string())),
        }
    }

    /// Decompresses a record area written with this codec, producing at most `limit` bytes.
    ///
    /// Output longer than `limit` is an error, checked before it is allocated where the
    /// format announces sizes, and while reading otherwise. `None` returns the bytes
    /// unchanged (subject to the same limit).
    pub fn decompress(self, data: &[u8], limit: usize) -> Result<Vec<u8>, BatchError> {
        let mut out = Vec::new();
        self.decompress_into(data, limit, &mut out)?;
        Ok(out)
    }

    /// Like [`Compression::decompress`], into `out` (cleared first), so that a caller can
    /// reuse one buffer for many batches; the produce path's record check does. On error
    /// `out` holds some prefix of the output, or nothing.
    pub fn decompress_into(
        self,
        data: &[u8],
        limit: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), BatchError> {
        if self == Compression::Lz4 {
            let length = lz4_decompress(data, limit, out)?;
            out.truncate(length);
            return Ok(());
        }
        out.clear();
        match self {
            Compression::None => {
                if data.len() > limit {
                    return Err(self.too_large(limit));
                }
                out.extend_from_slice(data);
                Ok(())
            }
            // Multi-member: gzip streams may legally be concatenated, and Java's
            // GZIPInputStream reads on across members.
            Compression::Gzip => {
                self.read_limited(flate2::read::MultiGzDecoder::new(data), limit, out)
            }
            Compression::Snappy => snappy_decompress(data, limit, out),
            Compression::Lz4 => unreachable_lz4(),
            Compression::Zstd => zstd_decompress(data, limit, out),
        }
    }

    /// Like [`Compression::decompress_into`], but the output is `out[..n]` for the `n`
    /// returned, and `out` may be longer: bytes past `n` are left over from earlier use.
    /// The produce path's check reuses one buffer this way, so that lz4 (which decodes
    /// into initialized memory) does not zero it again for every batch.
    pub(crate) fn decompress_reusing(
        self,
        data: &[u8],
        limit: usize,
        out: &mut Vec<u8>,
    ) -> Result<usize, BatchError> {
        if self == Compression::Lz4 {
            return lz4_decompress(data, limit, out);
        }
        self.decompress_into(data, limit, out)?;
        Ok(out.len())
    }

    /// Reads a streaming decoder to its end into `out`, failing once it yields more than
    /// `limit` bytes.
    fn read_limited(
        self,
        reader: impl Read,
        limit: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), BatchError> {
        // One byte past the limit tells "exactly at the limit" from "over it".
        let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
        reader
            .take(cap)
            .read_to_end(out)
            .map_err(|e| self.decompression_error(e.to_string()))?;
        if out.len() > limit {
            return Err(self.too_large(limit));
        }
        Ok(())
    }

    fn decompression_error(self, reason: String) -> BatchError {
        BatchError::Decompression {
            codec: self.name(),
            reason,
        }
    }

    fn too_large(self, limit: usize) -> BatchError {
        self.decompression_error(format!(
            "decompressed records exceed the limit of {limit} bytes"
        ))
    }
}

/// Compresses `data` in snappy-java's xerial framing, one block per 32 KiB of input.
fn xerial_compress(data: &[u8]) -> Result<Vec<u8>, snap::Error> {
    let blocks = data.len().div_ceil(XERIAL_BLOCK_SIZE);
    let mut out = Vec::with_capacity(
        XERIAL_HEADER_LEN + blocks * 4 + snap::raw::max_compress_len(data.len()),
    );
    out.extend_from_slice(&XERIAL_MAGIC);
    out.extend_from_slice(&XERIAL_VERSION.to_be_bytes());
    out.extend_from_slice(&XERIAL_MIN_COMPATIBLE_VERSION.to_be_bytes());
    let mut encoder = snap::raw::Encoder::new();
    for chunk in data.chunks(XERIAL_BLOCK_SIZE) {
        // Compress straight into `out` after a length placeholder, then fill it in.
        let length_at = out.len();
        let block_at = length_at + 4;
        out.resize(block_at + snap::raw::max_compress_len(chunk.len()), 0);
        let written = encoder.compress(chunk, &mut out[block_at..])?;
        out.truncate(block_at + written);
        // A block of at most 32 KiB input compresses to far less than 4 GiB.
        let length = u32::try_from(written).unwrap_or(u32::MAX);
        out[length_at..block_at].copy_from_slice(&length.to_be_bytes());
    }
    Ok(out)
}

/// Decompresses snappy records: xerial framing if the magic is there, else one raw block
/// (what librdkafka writes).
fn snappy_decompress(data: &[u8], limit: usize, out: &mut Vec<u8>) -> Result<(), BatchError> {
    if data.starts_with(&XERIAL_MAGIC) {
        let mut rest = skip_xerial_header(data)?;
        while !rest.is_empty() {
            // A second stream appended to the first starts with its own header.
            if rest.starts_with(&XERIAL_MAGIC) {
                rest = skip_xerial_header(rest)?;
                continue;
            }
            let (length, after) = rest.split_first_chunk::<4>().ok_or_else(|| {
                snappy_error(format!(
                    "xerial block length truncated ({} bytes left)",
                    rest.len()
                ))
            })?;
            let length = u32::from_be_bytes(*length) as usize;
            let block = after.get(..length).ok_or_else(|| {
                snappy_error(format!(
                    "xerial block of {length} bytes truncated ({} bytes left)",
                    after.len()
                ))
            })?;
            snappy_block_into(block, out, limit)?;
            rest = after.get(length..).unwrap_or(&[]);
        }
    } else {
        snappy_block_into(data, out, limit)?;
    }
    Ok(())
}

/// Skips a xerial header, which must be complete; versions are not checked because every
/// version snappy-java ever wrote uses the same block layout.
fn skip_xerial_header(data: &[u8]) -> Result<&[u8], BatchError> {
    data.get(XERIAL_HEADER_LEN..).ok_or_else(|| {
        snappy_error(format!(
            "xerial header truncated: {} of {XERIAL_HEADER_LEN} bytes",
            data.len()
        ))
    })
}

/// Appends one raw snappy block's output to `out`, keeping `out` within `limit`.
fn snappy_block_into(block: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<(), BatchError> {
    // The block announces its uncompressed size up front: check it before allocating.
    let length = snap::raw::decompress_len(block).map_err(|e| snappy_error(e.to_string()))?;
    let start = out.len();
    let end = start
        .checked_add(length)
        .filter(|&end| end <= limit)
        .ok_or_else(|| Compression::Snappy.too_large(limit))?;
    out.resize(end, 0);
    let target = out.get_mut(start..).unwrap_or(&mut []);
    let written = snap::raw::Decoder::new()
        .decompress(block, target)
        .map_err(|e| snappy_error(e.to_string()))?;
    if written != length {
        return Err(snappy_error(format!(
            "block announced {length} bytes but decoded to {written}"
        )));
    }
    Ok(())
}

fn snappy_error(reason: String) -> BatchError {
    Compression::Snappy.decompression_error(reason)
}

/// The lz4 arm of the codec match, which [`Compression::decompress_into`] handles before
/// it; an error rather than a panic should that ever change.
fn unreachable_lz4() -> Result<(), BatchError> {
    Err(lz4_error("internal: lz4 not dispatched".to_owned()))
}

fn lz4_error(reason: String) -> BatchError {
    Compression::Lz4.decompression_error(reason)
}

/// LZ4 frame magic (little-endian on the wire).
const LZ4_MAGIC: u32 = 0x184D_2204;
/// FLG bits of the frame descriptor (LZ4 frame format 1.6).
const LZ4_FLG_VERSION_SHIFT: u8 = 6;
const LZ4_FLG_INDEPENDENT: u8 = 0x20;
const LZ4_FLG_BLOCK_CHECKSUM: u8 = 0x10;
const LZ4_FLG_CONTENT_SIZE: u8 = 0x08;
const LZ4_FLG_CONTENT_CHECKSUM: u8 = 0x04;
/// Bit 1 is reserved; bit 0 is the dictionary-id flag, which Kafka counts as reserved too.
const LZ4_FLG_RESERVED: u8 = 0x02;
const LZ4_FLG_DICTIONARY_ID: u8 = 0x01;
/// BD bits 7 and 0-3 are reserved; bits 4-6 are the block maximum size id.
const LZ4_BD_RESERVED: u8 = 0x8F;
/// The high bit of a block size word: the block is stored, not compressed.
const LZ4_BLOCK_STORED: u32 = 0x8000_0000;

/// Decodes the record area's one LZ4 frame straight into `out`, and returns the length of
/// the output, `out[..n]`.
///
/// Exactly as strict as Kafka's reader (`Lz4BlockInputStream`, formerly
/// `KafkaLZ4BlockInputStream`), which the broker's validation and every Java consumer
/// use, so that nothing stored here is refused, or read differently, by a Java consumer:
///
/// - the area is one frame, starting with the frame magic. A skippable frame is refused
///   (Kafka: "invalid magic bytes").
/// - FLG: version 01, reserved bits 0 and 1 clear (bit 0 is the dictionary-id flag,
///   which Kafka counts as reserved), independent blocks (Kafka: "Dependent block stream
///   is unsupported"). Block checksums, content size and content checksum may be set.
/// - BD: reserved bits clear, block maximum size id 4-7 (64 KiB to 4 MiB).
/// - The header checksum byte matches (Kafka checks it for v2 batches).
/// - The end mark is any block size word whose low 31 bits are 0: Kafka (and liblz4,
///   and lz4_flex) clear the "stored" bit before testing for 0, so `0x80000000` ends
///   the frame too, it is not an empty block.
/// - No block is larger than the maximum; block checksums (over the block's bytes as
///   stored) match when the frame has them.
/// - After the end mark comes the content checksum if the frame has one, and then
///   nothing. Kafka reads one frame and stops at its end mark, so records in a second
///   frame would never reach a Java consumer; anything after the frame is refused.
///
/// Stricter than Kafka where a consumer using the reference lz4 library (librdkafka,
/// python-lz4) would fail: a content size must equal the decoded length, and a content
/// checksum must match (Kafka 4.0 skips both).
///
/// Hand-written over `lz4_flex`'s block decoder instead of its `FrameDecoder`, which
/// allocates and zeroes 128-192 KiB of buffers per frame and copies its output once
/// more; on the produce path that cost more than the decompression itself. `out` is used
/// as initialized memory: it is grown (zeroed) only past its current length, and its
/// length is left at its high-water mark, so a reused buffer is zeroed once, not per
/// batch.
fn lz4_decompress(data: &[u8], limit: usize, out: &mut Vec<u8>) -> Result<usize, BatchError> {
    use twox_hash::XxHash32;
    let u32_at = |bytes: &[u8], at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(
            bytes.get(at..at.checked_add(4)?)?.try_into().ok()?,
        ))
    };
    let magic = u32_at(data, 0).ok_or_else(|| {
        lz4_error(format!(
            "no lz4 frame: {} bytes, too short for the frame magic",
            data.len()
        ))
    })?;
    if magic != LZ4_MAGIC {
        return Err(lz4_error(format!(
            "bad frame magic {magic:#010x}, expected {LZ4_MAGIC:#010x} \
             (Kafka reads one lz4 frame and nothing else, not even a skippable frame)"
        )));
    }
    let (flg, bd) = match data.get(4..6) {
        Some(&[flg, bd]) => (flg, bd),
        _ => return Err(lz4_error("truncated frame header".into())),
    };
    let version = flg >> LZ4_FLG_VERSION_SHIFT;
    if version != 1 {
        return Err(lz4_error(format!(
            "frame version {version} is not supported (FLG {flg:#04x}; only version 1 exists)"
        )));
    }
    if flg & LZ4_FLG_DICTIONARY_ID != 0 {
        return Err(lz4_error(format!(
            "frames with a dictionary id are not supported (FLG {flg:#04x}; Kafka refuses them)"
        )));
    }
    if flg & LZ4_FLG_RESERVED != 0 {
        return Err(lz4_error(format!(
            "reserved FLG bit 1 is set (FLG {flg:#04x})"
        )));
    }
    if flg & LZ4_FLG_INDEPENDENT == 0 {
        return Err(lz4_error(format!(
            "linked (dependent) blocks are not supported (FLG {flg:#04x}): \
             Kafka's lz4 reader refuses them; write independent blocks"
        )));
    }
    if bd & LZ4_BD_RESERVED != 0 {
        return Err(lz4_error(format!(
            "reserved BD bits are set (BD {bd:#04x})"
        )));
    }
    let max_block = match (bd >> 4) & 0x07 {
        4 => 64 << 10,
        5 => 256 << 10,
        6 => 1 << 20,
        7 => 4 << 20,
        other => {
            return Err(lz4_error(format!(
                "invalid block maximum size id {other} (BD {bd:#04x}; 4-7 are valid)"
            )))
        }
    };
    let block_checksums = flg & LZ4_FLG_BLOCK_CHECKSUM != 0;
    let content_checksum = flg & LZ4_FLG_CONTENT_CHECKSUM != 0;
    let descriptor_end = if flg & LZ4_FLG_CONTENT_SIZE != 0 {
        14
    } else {
        6
    };
    let descriptor = data
        .get(4..descriptor_end)
        .ok_or_else(|| lz4_error("truncated frame header".into()))?;
    let content_size = descriptor
        .get(2..10)
        .and_then(|size| size.try_into().ok())
        .map(u64::from_le_bytes);
    let header_checksum = *data
        .get(descriptor_end)
        .ok_or_else(|| lz4_error("truncated frame header".into()))?;
    if (XxHash32::oneshot(0, descriptor) >> 8) as u8 != header_checksum {
        return Err(lz4_error("frame header checksum mismatch".into()));
    }
    let mut rest = &data[descriptor_end + 1..];
    let mut length = 0usize;
    loop {
        let word = u32_at(rest, 0)
            .ok_or_else(|| lz4_error("truncated block size (the frame has no end mark)".into()))?;
        rest = &rest[4..];
        let size = (word & !LZ4_BLOCK_STORED) as usize;
        if size == 0 {
            // The end mark, whatever the stored bit says (see above).
            break;
        }
        let stored = word & LZ4_BLOCK_STORED != 0;
        if size > max_block {
            return Err(lz4_error(format!(
                "block of {size} bytes exceeds the frame's maximum of {max_block}"
            )));
        }
        let block = rest
            .get(..size)
            .ok_or_else(|| lz4_error(format!("block of {size} bytes truncated")))?;
        rest = &rest[size..];
        if block_checksums {
            let sum =
                u32_at(rest, 0).ok_or_else(|| lz4_error("truncated block checksum".into()))?;
            if XxHash32::oneshot(0, block) != sum {
                return Err(lz4_error("block checksum mismatch".into()));
            }
            rest = &rest[4..];
        }
        // Room for a whole block, but never much past the limit.
        let room = max_block.min(limit.saturating_add(1).saturating_sub(length));
        if room == 0 {
            return Err(Compression::Lz4.too_large(limit));
        }
        let needed = length + room;
        if out.len() < needed {
            out.resize(needed, 0);
        }
        let target = &mut out[length..needed];
        let written = if stored {
            // `size <= max_block`, so only the limit can make the room too small.
            let target = target
                .get_mut(..block.len())
                .ok_or_else(|| Compression::Lz4.too_large(limit))?;
            target.copy_from_slice(block);
            block.len()
        } else {
            lz4_flex::block::decompress_into(block, target).map_err(|e| {
                if room < max_block {
                    Compression::Lz4.too_large(limit)
                } else {
                    lz4_error(e.to_string())
                }
            })?
        };
        length += written;
        if length > limit {
            return Err(Compression::Lz4.too_large(limit));
        }
    }
    let content = &out[..length];
    if let Some(expected) = content_size {
        if content.len() as u64 != expected {
            return Err(lz4_error(format!(
                "frame says {expected} bytes of content, decoded {}",
                content.len()
            )));
        }
    }
    if content_checksum {
        let sum = u32_at(rest, 0).ok_or_else(|| lz4_error("truncated content checksum".into()))?;
        if XxHash32::oneshot(0, content) != sum {
            return Err(lz4_error("content checksum mismatch".into()));
        }
        rest = &rest[4..];
    }
    if !rest.is_empty() {
        return Err(lz4_error(format!(
            "{} bytes after the end of the lz4 frame: Kafka reads one frame and stops at \
             its end mark, so a Java consumer would never see them",
            rest.len()
        )));
    }
    Ok(length)
}

thread_local! {
    /// One zstd decompression context per thread, reused for every batch: creating one
    /// per batch would allocate its tables and window buffer each time.
    static ZSTD_CONTEXT: RefCell<zstd::zstd_safe::DCtx<'static>> =
        RefCell::new(zstd::zstd_safe::DCtx::create());
}

/// Decompresses zstd frames (any number, with or without a content size) into `out`,
/// never growing it much past `limit + 1` bytes.
fn zstd_decompress(data: &[u8], limit: usize, out: &mut Vec<u8>) -> Result<(), BatchError> {
    ZSTD_CONTEXT.with(|context| match context.try_borrow_mut() {
        Ok(mut context) => zstd_stream(&mut context, data, limit, out),
        // Only reachable if a decompression re-entered this one on the same thread, which
        // nothing does; a fresh context keeps that from ever being a panic.
        Err(_) => zstd_stream(&mut zstd::zstd_safe::DCtx::create(), data, limit, out),
    })
}

fn zstd_stream(
    context: &mut zstd::zstd_safe::DCtx<'static>,
    data: &[u8],
    limit: usize,
    out: &mut Vec<u8>,
) -> Result<(), BatchError> {
    use zstd::zstd_safe::{
        find_frame_compressed_size, get_error_name, get_frame_content_size, InBuffer, OutBuffer,
        ResetDirective,
    };
    let fail = |reason: String| Compression::Zstd.decompression_error(reason);
    // One frame that announces its size (what one-shot compressors, our BatchBuilder
    // among them, write): checked against the limit before anything is allocated, then
    // decoded in one call straight into `out`, with no window buffer and no extra copy.
    if let Ok(Some(size)) = get_frame_content_size(data) {
        if find_frame_compressed_size(data) == Ok(data.len()) {
            let size = usize::try_from(size)
                .ok()
                .filter(|&size| size <= limit)
                .ok_or_else(|| Compression::Zstd.too_large(limit))?;
            out.reserve_exact(size);
            let written = context
                .decompress(out, data)
                .map_err(|code| fail(get_error_name(code).to_owned()))?;
            if written != size || out.len() != size {
                return Err(fail(format!(
                    "frame announced {size} bytes, decoded {written}"
                )));
            }
            return Ok(());
        }
    }
    // A previous batch may have failed half-way: start a new session.
    context
        .reset(ResetDirective::SessionOnly)
        .map_err(|code| fail(get_error_name(code).to_owned()))?;
    let mut input = InBuffer::around(data);
    // Grow the output in steps no larger than what the limit still allows (plus the one
    // byte that tells "over the limit"), so a bomb stops at about the limit.
    let stop = limit.saturating_add(1);
    loop {
        if out.len() > limit {
            return Err(Compression::Zstd.too_large(limit));
        }
        if out.len() == out.capacity() {
            let step = (stop - out.len()).min(out.len().max(64 * 1024));
            out.reserve_exact(step);
        }
        let (in_before, out_before) = (input.pos(), out.len());
        // The OutBuffer borrows `out` and sets its length to what was written.
        let hint = context
            .decompress_stream(&mut OutBuffer::around_pos(out, out_before), &mut input)
            .map_err(|code| fail(get_error_name(code).to_owned()))?;
        let input_done = input.pos() == data.len();
        if input_done && hint == 0 {
            break;
        }
        // All input read, room left in the output, and the frame still unfinished: the
        // data ends inside a frame.
        if input_done && out.len() < out.capacity() {
            return Err(fail(format!(
                "zstd frame truncated after {} input bytes",
                data.len()
            )));
        }
        if input.pos() == in_before && out.len() == out_before && out.len() < out.capacity() {
            return Err(fail("zstd decoder made no progress".to_owned()));
        }
    }
    if out.len() > limit {
        return Err(Compression::Zstd.too_large(limit));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    /// Compressible but not trivial: repeated text with a counter in it.
    fn sample(len: usize) -> Vec<u8> {
        let mut data = Vec::with_capacity(len);
        let mut i = 0u64;
        while data.len() < len {
            data.extend_from_slice(format!("record {i} of the sample; ").as_bytes());
            i += 1;
        }
        data.truncate(len);
        data
    }

    #[test]
    fn ids_and_names_round_trip() {
        for codec in ALL {
            assert_eq!(Compression::from_id(codec.id()), Ok(codec));
        }
        assert_eq!(
            Compression::from_id(5),
            Err(BatchError::UnknownCompression { codec: 5 })
        );
    }

    #[test]
    fn every_codec_round_trips() {
        // 0, small, several xerial/lz4 blocks (32 KiB / 64 KiB), and an exact block size.
        for len in [0, 1, 100, 32 * 1024, 200_000] {
            let data = sample(len);
            for codec in ALL {
                let compressed = codec.compress(&data).unwrap();
                let back = codec.decompress(&compressed, data.len()).unwrap();
                assert_eq!(back, data, "{} with {len} bytes", codec.name());
            }
        }
    }

    #[test]
    fn output_over_the_limit_is_an_error() {
        let data = sample(10_000);
        for codec in ALL {
            let compressed = codec.compress(&data).unwrap();
            assert_eq!(codec.decompress(&compressed, 10_000).unwrap(), data);
            let err = codec.decompress(&compressed, 9_999).unwrap_err();
            assert!(
                matches!(
                    &err,
                    BatchError::Decompression { reason, .. } if reason.contains("limit")
                ),
                "{}: {err}",
                codec.name()
            );
        }
    }

    #[test]
    fn decompression_bomb_is_stopped_at_the_limit() {
        // 64 MiB of zeros compresses to a few KiB with every codec.
        let zeros = vec![0u8; 64 << 20];
        for codec in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let bomb = codec.compress(&zeros).unwrap();
            assert!(
                bomb.len() < 4 << 20,
                "{} bomb is {} bytes",
                codec.name(),
                bomb.len()
            );
            assert!(matches!(
                codec.decompress(&bomb, 1 << 20),
                Err(BatchError::Decompression { .. })
            ));
        }
    }

    #[test]
    fn snappy_raw_block_announcing_a_huge_size_fails_before_allocating() {
        // Varint uncompressed length 2^32-1 followed by nothing: must not try to allocate it.
        let block = [0xff, 0xff, 0xff, 0xff, 0x0f];
        assert!(matches!(
            Compression::Snappy.decompress(&block, 1 << 20),
            Err(BatchError::Decompression { .. })
        ));
    }

    #[test]
    fn snappy_writes_xerial_framing_in_32k_blocks() {
        let data = sample(100_000);
        let out = Compression::Snappy.compress(&data).unwrap();
        assert_eq!(
            &out[..16],
            &[0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0, 0, 0, 0, 1, 0, 0, 0, 1]
        );
        // Walk the blocks: ceil(100_000 / 32768) = 4, each a raw block of <= 32 KiB.
        let mut rest = &out[16..];
        let mut sizes = Vec::new();
        while !rest.is_empty() {
            let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
            let block = &rest[4..4 + len];
            sizes.push(snap::raw::decompress_len(block).unwrap());
            rest = &rest[4 + len..];
        }
        assert_eq!(sizes, [32768, 32768, 32768, 100_000 - 3 * 32768]);
    }

    #[test]
    fn snappy_reads_hand_made_xerial_and_raw_blocks() {
        // Raw snappy block for "hello": uncompressed length 5, one literal (tag (5-1)<<2).
        let raw = [0x05, 0x10, b'h', b'e', b'l', b'l', b'o'];
        assert_eq!(Compression::Snappy.decompress(&raw, 100).unwrap(), b"hello");

        // The same block in snappy-java's framing, as Kafka's Java producer writes it.
        let mut xerial = vec![
            0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0, 0, 0, 0, 1, 0, 0, 0, 1,
        ];
        xerial.extend_from_slice(&[0, 0, 0, 7]);
        xerial.extend_from_slice(&raw);
        assert_eq!(
            Compression::Snappy.decompress(&xerial, 100).unwrap(),
            b"hello"
        );

        // Two blocks, then a second stream header (snappy-java accepts concatenation).
        let mut twice = xerial.clone();
        twice.extend_from_slice(&[0, 0, 0, 7]);
        twice.extend_from_slice(&raw);
        twice.extend_from_slice(&xerial);
        assert_eq!(
            Compression::Snappy.decompress(&twice, 100).unwrap(),
            b"hellohellohello"
        );
        // Limits apply across blocks.
        assert!(Compression::Snappy.decompress(&twice, 14).is_err());

        // A header with no blocks is an empty stream.
        assert_eq!(
            Compression::Snappy.decompress(&xerial[..16], 100).unwrap(),
            b""
        );
    }

    #[test]
    fn snappy_reads_librdkafka_style_single_raw_block() {
        let data = sample(100_000);
        let raw = snap::raw::Encoder::new().compress_vec(&data).unwrap();
        assert_eq!(
            Compression::Snappy.decompress(&raw, data.len()).unwrap(),
            data
        );
    }

    #[test]
    fn broken_xerial_streams_are_errors() {
        let raw = [0x05, 0x10, b'h', b'e', b'l', b'l', b'o'];
        let header = [
            0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0, 0, 0, 0, 1, 0, 0, 0, 1,
        ];
        let mut cases: Vec<Vec<u8>> = vec![header[..12].to_vec()];
        let mut short_length = header.to_vec();
        short_length.extend_from_slice(&[0, 0]);
        cases.push(short_length);
        let mut short_block = header.to_vec();
        short_block.extend_from_slice(&[0, 0, 0, 8]);
        short_block.extend_from_slice(&raw);
        cases.push(short_block);
        let mut bad_block = header.to_vec();
        bad_block.extend_from_slice(&[0, 0, 0, 3, 0x05, 0x10, b'h']);
        cases.push(bad_block);
        for case in cases {
            assert!(
                matches!(
                    Compression::Snappy.decompress(&case, 100),
                    Err(BatchError::Decompression {
                        codec: "snappy",
                        ..
                    })
                ),
                "{case:?}"
            );
        }
    }

    #[test]
    fn lz4_writes_a_frame_readable_by_other_lz4_frame_settings() {
        let data = sample(150_000);
        let out = Compression::Lz4.compress(&data).unwrap();
        // Frame magic, then FLG: version 01, independent blocks, no checksums or size;
        // BD: 64 KiB max block — what Kafka's KafkaLZ4BlockOutputStream writes.
        assert_eq!(&out[..6], &[0x04, 0x22, 0x4d, 0x18, 0x60, 0x40]);

        // Other writers (python-lz4, liblz4) may add checksums and the content size.
        let info = lz4_flex::frame::FrameInfo::new()
            .block_mode(lz4_flex::frame::BlockMode::Independent)
            .block_checksums(true)
            .content_checksum(true)
            .content_size(Some(data.len() as u64));
        let mut encoder = lz4_flex::frame::FrameEncoder::with_frame_info(info, Vec::new());
        encoder.write_all(&data).unwrap();
        let other = encoder.finish().unwrap();
        assert_eq!(
            Compression::Lz4.decompress(&other, data.len()).unwrap(),
            data
        );
    }

    /// lz4 frames written with every frame option, read by our frame reader.
    fn lz4_frame(data: &[u8], linked: bool, checksums: bool, size: bool, block: usize) -> Vec<u8> {
        use lz4_flex::frame::{BlockMode, BlockSize, FrameEncoder, FrameInfo};
        let block_size = match block {
            0 => BlockSize::Max64KB,
            1 => BlockSize::Max256KB,
            2 => BlockSize::Max1MB,
            _ => BlockSize::Max4MB,
        };
        let info = FrameInfo::new()
            .block_size(block_size)
            .block_mode(if linked {
                BlockMode::Linked
            } else {
                BlockMode::Independent
            })
            .block_checksums(checksums)
            .content_checksum(checksums)
            .content_size(size.then_some(data.len() as u64));
        let mut encoder = FrameEncoder::with_frame_info(info, Vec::new());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    /// lz4_flex's own frame reader, the reference ours must agree with.
    fn lz4_reference(data: &[u8]) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        lz4_flex::frame::FrameDecoder::new(data)
            .read_to_end(&mut out)
            .ok()?;
        Some(out)
    }

    #[test]
    fn lz4_reads_every_frame_option_kafka_reads_and_checks_checksums() {
        // Repetitive data over several 64 KiB blocks, so linked blocks would refer back.
        let data = sample(300_000);
        for linked in [false, true] {
            for checksums in [false, true] {
                for size in [false, true] {
                    for block in 0..4 {
                        let frame = lz4_frame(&data, linked, checksums, size, block);
                        let case = format!("linked {linked} {checksums} {size} {block}");
                        let result = Compression::Lz4.decompress(&frame, data.len());
                        if linked {
                            // Kafka: "Dependent block stream is unsupported".
                            let reason = lz4_refusal(result);
                            assert!(reason.contains("linked"), "{case}: {reason}");
                            continue;
                        }
                        assert!(result.unwrap() == data, "{case}");
                        assert!(Compression::Lz4.decompress(&frame, data.len() - 1).is_err());
                    }
                }
            }
        }
        // A flipped byte in the data of a frame with checksums is caught.
        let mut frame = lz4_frame(&data, false, true, false, 0);
        let at = frame.len() / 2;
        frame[at] ^= 0x01;
        assert!(Compression::Lz4.decompress(&frame, data.len()).is_err());
        // A wrong header checksum, a wrong content size, a truncated frame.
        let mut frame = lz4_frame(b"hello", false, false, true, 0);
        frame[14] ^= 0xff;
        assert!(Compression::Lz4.decompress(&frame, 100).is_err());
        let mut frame = lz4_frame(b"hello", false, false, true, 0);
        frame[6] = 4;
        assert!(Compression::Lz4.decompress(&frame, 100).is_err());
        let frame = lz4_frame(b"hello hello hello", false, false, false, 0);
        for cut in 0..frame.len() {
            assert!(
                Compression::Lz4.decompress(&frame[..cut], 100).is_err(),
                "{cut}"
            );
        }
    }

    #[test]
    fn lz4_reuses_a_longer_buffer_and_reports_only_its_output() {
        let mut out = vec![7u8; 1000];
        let frame = lz4_frame(b"abc", false, false, false, 0);
        let n = Compression::Lz4
            .decompress_reusing(&frame, 100, &mut out)
            .unwrap();
        assert_eq!(&out[..n], b"abc");
        assert!(out.len() >= 1000, "left at its high-water mark");
        Compression::Lz4
            .decompress_into(&frame, 100, &mut out)
            .unwrap();
        assert_eq!(out, b"abc");
    }

    /// The reason an lz4 read was refused; panics if it was not.
    fn lz4_refusal(result: Result<Vec<u8>, BatchError>) -> String {
        match result {
            Err(BatchError::Decompression {
                codec: "lz4",
                reason,
            }) => reason,
            other => panic!("expected an lz4 refusal, got {other:?}"),
        }
    }

    /// A frame header built by hand: magic, FLG, BD, the content size if given, and the
    /// header checksum (second byte of the descriptor's xxHash32), as the spec computes it.
    fn lz4_header(flg: u8, bd: u8, content_size: Option<u64>) -> Vec<u8> {
        let mut descriptor = vec![flg, bd];
        if let Some(size) = content_size {
            descriptor.extend_from_slice(&size.to_le_bytes());
        }
        let mut header = LZ4_MAGIC.to_le_bytes().to_vec();
        header.extend_from_slice(&descriptor);
        header.push((twox_hash::XxHash32::oneshot(0, &descriptor) >> 8) as u8);
        header
    }

    /// A block stored uncompressed: size word with the high bit set, then the bytes.
    fn lz4_stored_block(data: &[u8]) -> Vec<u8> {
        let mut block = (data.len() as u32 | 0x8000_0000).to_le_bytes().to_vec();
        block.extend_from_slice(data);
        block
    }

    /// A block compressed with lz4_flex's block compressor.
    fn lz4_compressed_block(data: &[u8]) -> Vec<u8> {
        let compressed = lz4_flex::block::compress(data);
        let mut block = (compressed.len() as u32).to_le_bytes().to_vec();
        block.extend_from_slice(&compressed);
        block
    }

    /// What Kafka's producer writes: FLG version 1 + independent blocks, BD 64 KiB.
    const KAFKA_FLG: u8 = 0x60;
    const KAFKA_BD: u8 = 0x40;
    const END_MARK: [u8; 4] = [0; 4];

    #[test]
    fn lz4_hand_made_frames_of_stored_and_compressed_blocks_are_read() {
        let data = sample(1000);
        let mut frame = lz4_header(KAFKA_FLG, KAFKA_BD, None);
        frame.extend(lz4_stored_block(&data[..400]));
        frame.extend(lz4_compressed_block(&data[400..]));
        frame.extend(END_MARK);
        assert_eq!(Compression::Lz4.decompress(&frame, 1000).unwrap(), data);
        // The content size and content checksum, right, are accepted.
        let mut frame = lz4_header(KAFKA_FLG | 0x0C, KAFKA_BD, Some(1000));
        frame.extend(lz4_compressed_block(&data));
        frame.extend(END_MARK);
        frame.extend(twox_hash::XxHash32::oneshot(0, &data).to_le_bytes());
        assert_eq!(Compression::Lz4.decompress(&frame, 1000).unwrap(), data);
        // An empty frame (only the end mark) is empty output.
        let mut frame = lz4_header(KAFKA_FLG, KAFKA_BD, None);
        frame.extend(END_MARK);
        assert_eq!(Compression::Lz4.decompress(&frame, 1000).unwrap(), b"");
    }

    /// Review of issue 14, A: a block size word of 0x80000000 (the "stored" bit over a
    /// size of 0) is the end mark for Kafka, liblz4 and lz4_flex, not an empty block; the
    /// records after it would be invisible to a Java consumer.
    #[test]
    fn lz4_end_mark_with_the_stored_bit_ends_the_frame() {
        let data = sample(200);
        let mut frame = lz4_header(KAFKA_FLG, KAFKA_BD, None);
        frame.extend(lz4_stored_block(&data[..100]));
        frame.extend(0x8000_0000u32.to_le_bytes());
        frame.extend(lz4_stored_block(&data[100..]));
        frame.extend(END_MARK);
        let reason = lz4_refusal(Compression::Lz4.decompress(&frame, 1000));
        assert!(
            reason.contains("after the end of the lz4 frame"),
            "{reason}"
        );
        // Alone at the end of the frame it is a valid end mark, as it is for Kafka.
        let mut frame = lz4_header(KAFKA_FLG, KAFKA_BD, None);
        frame.extend(lz4_stored_block(&data));
        frame.extend(0x8000_0000u32.to_le_bytes());
        assert_eq!(Compression::Lz4.decompress(&frame, 1000).unwrap(), data);
        assert_eq!(lz4_reference(&frame).unwrap(), data, "lz4_flex agrees");
    }

    /// Review of issue 14, B: records split across two frames. Kafka reads only the first
    /// frame, so anything after the first frame's end is refused: a second frame, a
    /// skippable frame, stray bytes.
    #[test]
    fn lz4_only_one_frame_and_nothing_after_it() {
        let first = lz4_frame(b"first ", false, false, false, 0);
        let second = lz4_frame(b"second", false, false, false, 0);
        let skippable = [0x5A, 0x2A, 0x4D, 0x18, 3, 0, 0, 0, 9, 9, 9];
        for tail in [&second[..], &skippable[..], &[0][..], &END_MARK[..]] {
            let mut two = first.clone();
            two.extend_from_slice(tail);
            let reason = lz4_refusal(Compression::Lz4.decompress(&two, 100));
            assert!(
                reason.contains(&format!("{} bytes after the end", tail.len())),
                "{reason}"
            );
        }
        // The same with a content checksum: the bytes after it are still refused.
        let mut frame = lz4_frame(b"first ", false, true, true, 0);
        assert_eq!(Compression::Lz4.decompress(&frame, 100).unwrap(), b"first ");
        frame.push(0);
        let reason = lz4_refusal(Compression::Lz4.decompress(&frame, 100));
        assert!(reason.contains("1 bytes after the end"), "{reason}");
    }

    /// Review of issue 14, C: a skippable frame before the frame. Kafka checks the frame
    /// magic first and refuses anything else ("invalid magic bytes").
    #[test]
    fn lz4_skippable_frame_first_is_refused() {
        for magic in [0x184D_2A50u32, 0x184D_2A5F] {
            let mut data = magic.to_le_bytes().to_vec();
            data.extend(4u32.to_le_bytes());
            data.extend([0u8; 4]);
            data.extend(lz4_frame(b"hello", false, false, false, 0));
            let reason = lz4_refusal(Compression::Lz4.decompress(&data, 100));
            assert!(reason.contains("bad frame magic"), "{reason}");
        }
        // Nothing, or too little for a magic, is refused too.
        for data in [&[][..], &[0x04, 0x22, 0x4d][..]] {
            let reason = lz4_refusal(Compression::Lz4.decompress(data, 100));
            assert!(reason.contains("no lz4 frame"), "{reason}");
        }
    }

    /// Review of issue 14, D: linked blocks (FLG bit 5 clear), even a single block that
    /// refers to nothing: Kafka refuses the header ("Dependent block stream is
    /// unsupported").
    #[test]
    fn lz4_linked_blocks_are_refused() {
        let mut frame = lz4_header(KAFKA_FLG & !0x20, KAFKA_BD, None);
        frame.extend(lz4_stored_block(b"hello"));
        frame.extend(END_MARK);
        let reason = lz4_refusal(Compression::Lz4.decompress(&frame, 100));
        assert!(reason.contains("linked (dependent) blocks"), "{reason}");
    }

    /// Kafka's header rules (`Lz4BlockOutputStream.FLG/BD.validate` and the header
    /// checksum): version 1, reserved bits clear (including the dictionary-id flag), block
    /// maximum size id 4-7. Every FLG and BD value is tried: accepted exactly when Kafka
    /// accepts it.
    #[test]
    fn lz4_frame_header_is_checked_as_kafka_does() {
        for flg in 0..=255u8 {
            for bd in 0..=255u8 {
                let kafka_accepts = flg >> 6 == 1
                    && flg & 0x03 == 0
                    && flg & 0x20 != 0
                    && bd & 0x8F == 0
                    && (4..=7).contains(&(bd >> 4));
                let content_size = (flg & 0x08 != 0).then_some(5);
                let mut frame = lz4_header(flg, bd, content_size);
                let block = lz4_stored_block(b"hello");
                frame.extend_from_slice(&block);
                if flg & 0x10 != 0 {
                    let sum = twox_hash::XxHash32::oneshot(0, &block[4..]);
                    frame.extend(sum.to_le_bytes());
                }
                frame.extend(END_MARK);
                if flg & 0x04 != 0 {
                    frame.extend(twox_hash::XxHash32::oneshot(0, b"hello").to_le_bytes());
                }
                // With the dictionary-id flag, a 4-byte id would follow; Kafka refuses
                // the flag before reading it, and so do we.
                let result = Compression::Lz4.decompress(&frame, 100);
                if kafka_accepts {
                    assert_eq!(result.unwrap(), b"hello", "FLG {flg:#04x} BD {bd:#04x}");
                } else {
                    lz4_refusal(result);
                }
            }
        }
        // A wrong header checksum is refused, as Kafka does for v2 batches.
        let mut frame = lz4_header(KAFKA_FLG, KAFKA_BD, None);
        frame[6] ^= 1;
        frame.extend(lz4_stored_block(b"hello"));
        frame.extend(END_MARK);
        let reason = lz4_refusal(Compression::Lz4.decompress(&frame, 100));
        assert!(reason.contains("header checksum"), "{reason}");
    }

    /// A block larger than the frame's maximum is refused, at every block size id (Kafka:
    /// "Block size ... exceeded max").
    #[test]
    fn lz4_block_over_the_frame_maximum_is_refused() {
        for (id, max) in [
            (4u8, 64usize << 10),
            (5, 256 << 10),
            (6, 1 << 20),
            (7, 4 << 20),
        ] {
            let data = vec![7u8; max + 1];
            let mut frame = lz4_header(KAFKA_FLG, id << 4, None);
            frame.extend(lz4_stored_block(&data[..max]));
            frame.extend(END_MARK);
            assert_eq!(Compression::Lz4.decompress(&frame, max).unwrap().len(), max);
            let mut frame = lz4_header(KAFKA_FLG, id << 4, None);
            frame.extend(lz4_stored_block(&data));
            frame.extend(END_MARK);
            let reason = lz4_refusal(Compression::Lz4.decompress(&frame, 8 << 20));
            assert!(reason.contains("exceeds the frame's maximum"), "{reason}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Our lz4 frame reader agrees with lz4_flex's on valid frames and on corrupted
        /// ones: same output, or both refuse; except that ours refuses every frame of
        /// linked blocks, as Kafka does, where lz4_flex reads them.
        #[test]
        fn lz4_agrees_with_the_reference_reader(
            data in proptest::collection::vec(0u8..4, 0..100_000),
            linked in any::<bool>(),
            checksums in any::<bool>(),
            size in any::<bool>(),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
        ) {
            let mut frame = lz4_frame(&data, linked, checksums, size, 0);
            for (at, byte) in edits {
                let at = at.index(frame.len());
                frame[at] = byte;
            }
            let ours = Compression::Lz4.decompress(&frame, 1 << 20).ok();
            if frame[4] & 0x20 == 0 {
                prop_assert_eq!(ours, None, "linked blocks accepted");
            } else {
                let reference = lz4_reference(&frame).filter(|out| out.len() <= 1 << 20);
                prop_assert_eq!(ours, reference);
            }
        }
    }

    #[test]
    fn gzip_reads_concatenated_members() {
        let mut both = Compression::Gzip.compress(b"first ").unwrap();
        both.extend(Compression::Gzip.compress(b"second").unwrap());
        assert_eq!(
            Compression::Gzip.decompress(&both, 100).unwrap(),
            b"first second"
        );
        assert_eq!(&both[..2], &[0x1f, 0x8b]);
    }

    #[test]
    fn zstd_reads_streaming_frames_without_content_size() {
        // zstd-jni's stream (used by the Java client) omits the content size.
        let data = sample(100_000);
        let streamed = zstd::stream::encode_all(&data[..], 3).unwrap();
        assert_eq!(
            Compression::Zstd.decompress(&streamed, data.len()).unwrap(),
            data
        );
        let ours = Compression::Zstd.compress(&data).unwrap();
        assert_eq!(&ours[..4], &[0x28, 0xb5, 0x2f, 0xfd]);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let garbage = b"definitely not compressed data \x00\xff\x82SNAPPY";
        for codec in ALL {
            if codec != Compression::None {
                assert!(
                    codec.decompress(garbage, 1 << 20).is_err(),
                    "{} accepted garbage",
                    codec.name()
                );
            }
        }
    }

    proptest! {
        #[test]
        fn arbitrary_input_never_panics(
            data in proptest::collection::vec(any::<u8>(), 0..512),
            xerial_prefix in any::<bool>(),
        ) {
            let mut input = data;
            if xerial_prefix {
                let mut framed =
                    vec![0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0, 0, 0, 0, 1, 0, 0, 0, 1];
                framed.extend_from_slice(&input);
                input = framed;
            }
            for codec in ALL {
                if let Ok(out) = codec.decompress(&input, 1 << 16) {
                    prop_assert!(out.len() <= 1 << 16);
                }
            }
        }

        #[test]
        fn arbitrary_data_round_trips(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
            for codec in ALL {
                let compressed = codec.compress(&data).unwrap();
                prop_assert_eq!(codec.decompress(&compressed, data.len()).unwrap(), data.clone());
            }
        }
    }
}
