//! Response encoding: Kafka framing around kafka-protocol's encoders, with record bytes
//! spliced in instead of copied.
//!
//! A response is encoded into a [`SpliceBuf`], a `BufMut` that keeps a list of chunks.
//! Before encoding, the caller registers the `Bytes` values that the response carries
//! as records (a Fetch response's batches, borrowed from the mapped segments). The
//! generated encoders write a `records` field as a length prefix followed by one
//! `put_slice` of the whole `Bytes`; when that slice is exactly a registered `Bytes`
//! (same address and length), the buffer ends its current chunk and keeps a clone of the
//! `Bytes` (a reference count, not a copy) as the next chunk. Everything else is copied
//! into the current chunk as usual.
//!
//! The result is a [`Frame`]: the 4-byte size, the header and the body as a few owned
//! chunks around the record `Bytes`. The connection writes a frame with vectored writes
//! (`write_all_buf`), so record bytes go from the page cache mapping to the socket
//! without an intermediate copy, and without hand-written codecs: the crate's own
//! encoder produced every byte around them.
//!
//! If the encoder ever wrote records through another path (or in another order than
//! registered), the bytes would simply be copied: correctness never depends on the
//! splice happening.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::ops::Range;

use bytes::buf::UninitSlice;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ResponseHeader};
use kafka_protocol::protocol::buf::ByteBufMut;
use kafka_protocol::protocol::Encodable;

use crate::metrics::errors::ResponseErrors;
use crate::metrics::requests::REQUESTS;

/// Chunk size for the copied parts of a response.
const INITIAL_CAPACITY: usize = 256;

/// See the module docs.
pub struct SpliceBuf {
    chunks: Vec<Bytes>,
    current: BytesMut,
    /// Bytes already moved out of `current` into `chunks`.
    done: usize,
    /// Record values to splice, in the order the encoder will write them.
    splices: VecDeque<Bytes>,
    spliced_bytes: usize,
}

impl SpliceBuf {
    pub fn new(splices: impl IntoIterator<Item = Bytes>) -> Self {
        SpliceBuf {
            chunks: Vec::new(),
            current: BytesMut::with_capacity(INITIAL_CAPACITY),
            done: 0,
            splices: splices.into_iter().filter(|b| !b.is_empty()).collect(),
            spliced_bytes: 0,
        }
    }

    /// Bytes that were spliced rather than copied.
    pub fn spliced_bytes(&self) -> usize {
        self.spliced_bytes
    }

    fn into_chunks(mut self) -> Vec<Bytes> {
        if !self.current.is_empty() {
            self.chunks.push(self.current.freeze());
        }
        self.chunks
    }
}

// SAFETY: every method delegates to `current`, a `BytesMut`, whose own implementation
// upholds the `BufMut` contract; `put_slice` only ever appends whole initialized chunks.
unsafe impl BufMut for SpliceBuf {
    fn remaining_mut(&self) -> usize {
        self.current.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: forwarded unchanged; the caller's guarantee is about `chunk_mut`, which
        // is `current`'s.
        unsafe { self.current.advance_mut(cnt) }
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.current.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        let matches = self
            .splices
            .front()
            .is_some_and(|b| b.as_ptr() == src.as_ptr() && b.len() == src.len());
        if !matches {
            self.current.put_slice(src);
            return;
        }
        if let Some(records) = self.splices.pop_front() {
            self.done += self.current.len();
            if !self.current.is_empty() {
                let head = self.current.split();
                self.chunks.push(head.freeze());
            }
            self.done += records.len();
            self.spliced_bytes += records.len();
            self.chunks.push(records);
        }
    }
}

// kafka-protocol's message encoders only append; `seek`/`range` (used for gaps by its
// record encoder, never by message encoders) work within the current chunk.
impl ByteBufMut for SpliceBuf {
    fn offset(&self) -> usize {
        self.done + self.current.len()
    }

    fn seek(&mut self, offset: usize) {
        self.current.resize(offset.saturating_sub(self.done), 0);
    }

    fn range(&mut self, r: Range<usize>) -> &mut [u8] {
        let start = r.start.saturating_sub(self.done);
        let end = r.end.saturating_sub(self.done);
        &mut self.current[start..end]
    }
}

/// One response on the wire: size prefix, header and body, as chunks.
#[derive(Debug, Default)]
pub struct Frame {
    chunks: VecDeque<Bytes>,
    remaining: usize,
}

impl Frame {
    fn from_chunks(chunks: Vec<Bytes>) -> Frame {
        let remaining = chunks.iter().map(Bytes::len).sum();
        Frame {
            chunks: chunks.into(),
            remaining,
        }
    }

    /// Appends another frame (to write several responses with one syscall).
    pub fn append(&mut self, other: Frame) {
        self.remaining += other.remaining;
        self.chunks.extend(other.chunks);
    }

    pub fn is_empty(&self) -> bool {
        self.remaining == 0
    }

    /// The whole frame as one buffer (copies; for tests).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.remaining);
        for chunk in &self.chunks {
            out.extend_from_slice(chunk);
        }
        out
    }

    /// Number of chunks (for tests of the splice).
    pub fn chunk_count(&self) -> usize {
        self.chunks.len()
    }
}

impl Buf for Frame {
    fn remaining(&self) -> usize {
        self.remaining
    }

    fn chunk(&self) -> &[u8] {
        self.chunks.front().map_or(&[], |c| c.as_ref())
    }

    fn advance(&mut self, mut cnt: usize) {
        self.remaining = self.remaining.saturating_sub(cnt);
        while cnt > 0 {
            let Some(front) = self.chunks.front_mut() else {
                return;
            };
            if cnt < front.len() {
                front.advance(cnt);
                return;
            }
            cnt -= front.len();
            self.chunks.pop_front();
        }
    }

    fn chunks_vectored<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (slot, chunk) in dst.iter_mut().zip(self.chunks.iter()) {
            *slot = IoSlice::new(chunk);
            n += 1;
        }
        n
    }
}

/// Encoding a response failed (a handler set a field the version cannot carry).
#[derive(Debug, thiserror::Error)]
#[error("cannot encode {api:?} v{version} response: {reason}")]
pub struct EncodeError {
    pub api: ApiKey,
    pub version: i16,
    pub reason: String,
}

/// Encodes a response frame for `api` at `version`, splicing `records` (see module docs).
pub fn encode_response<R: Encodable + ResponseErrors>(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &R,
    records: impl IntoIterator<Item = Bytes>,
) -> Result<Frame, EncodeError> {
    let header_version = api.response_header_version(version);
    encode_with_header_version(api, version, header_version, correlation_id, body, records)
}

/// Like [`encode_response`] with an explicit header version (ApiVersions at an unknown
/// version answers in the v0 format).
pub fn encode_with_header_version<R: Encodable + ResponseErrors>(
    api: ApiKey,
    version: i16,
    header_version: i16,
    correlation_id: i32,
    body: &R,
    records: impl IntoIterator<Item = Bytes>,
) -> Result<Frame, EncodeError> {
    let err = |e: anyhow::Error| EncodeError {
        api,
        version,
        reason: e.to_string(),
    };
    let mut buf = SpliceBuf::new(records);
    buf.put_i32(0); // size, patched below
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut buf, header_version)
        .map_err(err)?;
    body.encode(&mut buf, version).map_err(err)?;
    body.for_each_error(&mut |code| REQUESTS.record_error(api, code));
    let size = buf.offset() - 4;
    let size = i32::try_from(size).map_err(|_| EncodeError {
        api,
        version,
        reason: format!("response of {size} bytes is too large for a frame"),
    })?;
    let mut chunks = buf.into_chunks();
    // The first chunk always starts with the 4 placeholder bytes: it is never a splice.
    if let Some(first) = chunks.first_mut() {
        let mut head = BytesMut::from(first.as_ref());
        head[..4].copy_from_slice(&size.to_be_bytes());
        *first = head.freeze();
    }
    Ok(Frame::from_chunks(chunks))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::{FetchResponse, ResponseHeader, TopicName};
    use kafka_protocol::protocol::{Decodable, StrBytes};

    fn fetch_response(records: &[Bytes]) -> FetchResponse {
        let partitions = records
            .iter()
            .enumerate()
            .map(|(i, r)| {
                PartitionData::default()
                    .with_partition_index(i as i32)
                    .with_records(Some(r.clone()))
            })
            .collect();
        FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
            .with_topic(TopicName(StrBytes::from_static_str("t")))
            .with_partitions(partitions)])
    }

    #[test]
    fn records_are_spliced_not_copied_and_bytes_are_identical() {
        let records = vec![
            Bytes::from(vec![7u8; 1000]),
            Bytes::new(),
            Bytes::from(vec![9u8; 3000]),
        ];
        let response = fetch_response(&records);
        for version in [4, 11, 12, 16] {
            let frame =
                encode_response(ApiKey::Fetch, version, 42, &response, records.clone()).unwrap();
            // Reference: the crate's own encoding into one buffer.
            let mut plain = BytesMut::new();
            plain.put_i32(0);
            ResponseHeader::default()
                .with_correlation_id(42)
                .encode(&mut plain, ApiKey::Fetch.response_header_version(version))
                .unwrap();
            response.encode(&mut plain, version).unwrap();
            let size = (plain.len() - 4) as i32;
            plain[..4].copy_from_slice(&size.to_be_bytes());
            assert_eq!(frame.to_vec(), plain.to_vec(), "v{version}");
            // The two non-empty record sets are chunks of their own, the very `Bytes`.
            let chunks: Vec<_> = frame.chunks.iter().collect();
            assert_eq!(chunks[1].as_ptr(), records[0].as_ptr(), "v{version}");
            assert_eq!(chunks[1].len(), records[0].len());
            assert_eq!(chunks[3].as_ptr(), records[2].as_ptr(), "v{version}");
            assert_eq!(chunks[3].len(), records[2].len());
            // Before v12 the records are the last field; later, tagged fields follow.
            assert_eq!(frame.chunk_count(), if version >= 12 { 5 } else { 4 });

            let mut body = Bytes::from(frame.to_vec()).slice(4..);
            ResponseHeader::decode(&mut body, ApiKey::Fetch.response_header_version(version))
                .unwrap();
            let decoded = FetchResponse::decode(&mut body, version).unwrap();
            assert_eq!(
                decoded.responses[0].partitions[2].records,
                Some(records[2].clone())
            );
        }
    }

    #[test]
    fn frame_buf_advances_across_chunks() {
        let mut frame = Frame::from_chunks(vec![
            Bytes::from_static(b"abc"),
            Bytes::from_static(b"defg"),
        ]);
        let mut slices = [IoSlice::new(&[]); 4];
        assert_eq!(frame.chunks_vectored(&mut slices), 2);
        frame.advance(4);
        assert_eq!(frame.remaining(), 3);
        assert_eq!(frame.chunk(), b"efg");
        frame.advance(3);
        assert!(!frame.has_remaining());
    }
}
