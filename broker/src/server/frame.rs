//! Request framing: a 4-byte big-endian size, then the request header and body.
//!
//! [`parse_frame`] looks at the buffered bytes without allocating: it checks the size
//! against `socket.request.max.bytes` *before* any buffer is grown for the body, and
//! returns `Ok(None)` while the frame is incomplete (read more), an error for a size no
//! request can have (close the connection), or the complete frame. [`RequestPrefix`] reads
//! the fixed start of every request header (api key, version, correlation id) with
//! checked reads, so a garbage frame is an error value, never a panic.

use bytes::{Buf, Bytes, BytesMut};

/// Smallest possible request: api key (2), api version (2), correlation id (4).
const MIN_REQUEST: usize = 8;

/// Why a frame cannot be served; each closes the connection.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("request of {size} bytes exceeds socket.request.max.bytes ({max})")]
    TooLarge { size: i64, max: usize },
    #[error("request size {size} is too small for a request header")]
    TooSmall { size: i64 },
}

/// How many more bytes the buffered frame needs, once its size is known.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    Frame(Bytes),
    /// Read more; at least this many bytes are still missing (0: the size itself).
    Incomplete(usize),
}

/// Takes one complete frame's payload (without the size) off the front of `buf`.
pub fn parse_frame(buf: &mut BytesMut, max_size: usize) -> Result<Parsed, FrameError> {
    let Some(size_bytes) = buf.get(..4) else {
        return Ok(Parsed::Incomplete(4 - buf.len()));
    };
    let size = i32::from_be_bytes([size_bytes[0], size_bytes[1], size_bytes[2], size_bytes[3]]);
    let size = i64::from(size);
    if size < MIN_REQUEST as i64 {
        return Err(FrameError::TooSmall { size });
    }
    if size > max_size as i64 {
        return Err(FrameError::TooLarge {
            size,
            max: max_size,
        });
    }
    let total = 4 + size as usize;
    if buf.len() < total {
        return Ok(Parsed::Incomplete(total - buf.len()));
    }
    let mut frame = buf.split_to(total);
    frame.advance(4);
    Ok(Parsed::Frame(frame.freeze()))
}

/// The fixed start of every request header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestPrefix {
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
}

impl RequestPrefix {
    /// Reads the prefix of a frame (`None` if it is shorter than a header can be).
    pub fn read(frame: &[u8]) -> Option<RequestPrefix> {
        let mut bytes = frame.get(..MIN_REQUEST)?;
        Some(RequestPrefix {
            api_key: bytes.get_i16(),
            api_version: bytes.get_i16(),
            correlation_id: bytes.get_i32(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    #[test]
    fn incomplete_complete_and_oversized() {
        let mut buf = BytesMut::new();
        assert_eq!(parse_frame(&mut buf, 100), Ok(Parsed::Incomplete(4)));
        buf.put_i32(10);
        buf.put_slice(&[1, 2, 3]);
        assert_eq!(parse_frame(&mut buf, 100), Ok(Parsed::Incomplete(7)));
        buf.put_slice(&[4, 5, 6, 7, 8, 9, 10, 99]);
        assert_eq!(
            parse_frame(&mut buf, 100),
            Ok(Parsed::Frame(Bytes::from_static(&[
                1, 2, 3, 4, 5, 6, 7, 8, 9, 10
            ])))
        );
        assert_eq!(&buf[..], &[99], "the next frame's bytes stay buffered");

        let mut big = BytesMut::new();
        big.put_i32(i32::MAX);
        assert!(matches!(
            parse_frame(&mut big, 100),
            Err(FrameError::TooLarge { .. })
        ));
        assert!(big.capacity() < 1024, "nothing allocated for the body");
        let mut negative = BytesMut::new();
        negative.put_i32(-5);
        assert!(matches!(
            parse_frame(&mut negative, 100),
            Err(FrameError::TooSmall { .. })
        ));
    }

    #[test]
    fn prefix_reads_are_checked() {
        assert_eq!(RequestPrefix::read(&[0, 1, 0]), None);
        assert_eq!(
            RequestPrefix::read(&[0, 18, 0, 3, 0, 0, 0, 7, 0xff]),
            Some(RequestPrefix {
                api_key: 18,
                api_version: 3,
                correlation_id: 7
            })
        );
    }
}
