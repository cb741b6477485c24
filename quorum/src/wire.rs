//! The controller RPC wire format: frames shaped like Kafka's, carrying openraft's messages.
//!
//! Every message, request or response, is one frame (big-endian):
//! ```text
//! length          u32   bytes after this field (8 ..= max frame size)
//! version         u16   format version, 1
//! kind            u16   1 = Vote, 2 = AppendEntries, 3 = InstallSnapshot, 4 = Probe,
//!                       5 = ControllerRequest;
//!                       a response carries its request's kind | 0x8000
//! correlation id  u32   chosen by the sender of a request, echoed by its response
//! body                  CBOR (RFC 8949)
//! ```
//! Probe ([`ProbeRequest`] / [`ProbeResponse`], answered from the node's state without
//! openraft) asks a peer whether it has any Raft state; other request bodies are openraft's
//! `VoteRequest`, `AppendEntriesRequest` and `InstallSnapshotRequest` ([`SnapshotChunk`]: the same fields, but the chunk's bytes are a
//! CBOR byte string where openraft's `Vec<u8>` would be an array of integers, up to twice the
//! size); a response body is `Result<response, RaftError>` (CBOR map with
//! one key, `"Ok"` or `"Err"`), all with openraft 0.9's serde field names. Entry payloads and
//! responses are CBOR byte strings. A change of openraft that changes these shapes needs a
//! new version number; a peer answers a frame of an unknown version by closing the
//! connection.
//!
//! A ControllerRequest carries an application payload the quorum does not interpret: the
//! request body is those bytes as they are (not CBOR-wrapped), handed to the application's
//! [`RequestHandler`](crate::RequestHandler); the response body is the CBOR of
//! `Result<bytes, text>` (a map with one key: `"Ok"` and the handler's answer as a byte
//! string, or `"Err"` and a message, e.g. when no handler is installed).
//!
//! A connection carries one request at a time (the sender waits for the response before the
//! next request), so responses come back in order; the correlation id catches a mix-up.

use std::time::Duration;

use openraft::raft::InstallSnapshotRequest;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::types::{Payload, SnapshotMeta, TypeConfig, Vote};

/// The format version written and accepted.
pub const VERSION: u16 = 1;
/// Bytes of a frame after its length field that are not body.
pub const HEADER_LEN: usize = 8;
/// The response bit of `kind`.
pub const RESPONSE: u16 = 0x8000;

/// The RPC a frame belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Vote = 1,
    AppendEntries = 2,
    InstallSnapshot = 3,
    Probe = 4,
    ControllerRequest = 5,
}

impl Kind {
    pub fn from_u16(v: u16) -> Option<Kind> {
        match v {
            1 => Some(Kind::Vote),
            2 => Some(Kind::AppendEntries),
            3 => Some(Kind::InstallSnapshot),
            4 => Some(Kind::Probe),
            5 => Some(Kind::ControllerRequest),
            _ => None,
        }
    }
}

/// A Probe request: sent by a voter about to form a new cluster (its storage is empty) to
/// learn whether the cluster exists already.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProbeRequest {
    /// The sender; it must be a configured voter or a member, as for every request.
    pub node_id: u64,
}

/// The answer to a [`ProbeRequest`]: the peer's Raft state, as its metrics show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeResponse {
    /// The peer's current term (0 on a node that never voted nor heard of a leader).
    pub term: u64,
    /// The peer's last log index (a snapshot's last index counts), if any.
    pub last_log_index: Option<u64>,
}

impl ProbeResponse {
    /// Whether the peer belongs to a cluster that has started.
    pub fn has_state(&self) -> bool {
        self.term > 0 || self.last_log_index.is_some()
    }
}

/// The body of an InstallSnapshot request: openraft's `InstallSnapshotRequest` with its field
/// names, the data as a byte string (an array of integers is also accepted when decoding).
#[derive(Debug, Serialize, Deserialize)]
pub struct SnapshotChunk {
    pub vote: Vote,
    pub meta: SnapshotMeta,
    pub offset: u64,
    pub data: Payload,
    pub done: bool,
}

impl From<InstallSnapshotRequest<TypeConfig>> for SnapshotChunk {
    fn from(r: InstallSnapshotRequest<TypeConfig>) -> SnapshotChunk {
        SnapshotChunk {
            vote: r.vote,
            meta: r.meta,
            offset: r.offset,
            data: Payload(r.data),
            done: r.done,
        }
    }
}

impl From<SnapshotChunk> for InstallSnapshotRequest<TypeConfig> {
    fn from(c: SnapshotChunk) -> InstallSnapshotRequest<TypeConfig> {
        InstallSnapshotRequest {
            vote: c.vote,
            meta: c.meta,
            offset: c.offset,
            data: c.data.0,
            done: c.done,
        }
    }
}

/// The body of a ControllerRequest response: the handler's answer, or why there is none.
pub type ControllerAnswer = Result<Payload, String>;

/// A decoded frame header and its body.
#[derive(Debug)]
pub struct Frame {
    pub version: u16,
    pub kind: u16,
    pub correlation_id: u32,
    pub body: Vec<u8>,
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("frame length {0} is below the header size")]
    TooShort(u32),
    #[error("frame length {len} exceeds the limit {max}")]
    TooLong { len: u32, max: usize },
    #[error("no frame for {0:?}")]
    Idle(Duration),
}

/// Encodes a frame.
pub fn encode(kind: u16, correlation_id: u32, body: &[u8]) -> Vec<u8> {
    let len = (HEADER_LEN + body.len()) as u32;
    let mut out = Vec::with_capacity(4 + HEADER_LEN + body.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&VERSION.to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&correlation_id.to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Reads one frame. `Ok(None)` is a clean end of stream between frames. The length is
/// checked before anything is allocated for the body. The frame must start within
/// `idle_timeout` (so a silent peer does not hold a connection forever); once its first byte
/// is in, the rest must arrive within `rest_timeout` (so a peer that stalls mid-frame cannot
/// hold the connection's buffer forever). `Duration::MAX` means no limit.
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    max_frame: usize,
    idle_timeout: Duration,
    rest_timeout: Duration,
) -> Result<Option<Frame>, FrameError> {
    let mut first = [0u8; 1];
    // A clean close shows as EOF on the first byte of a frame.
    let n = match tokio::time::timeout(idle_timeout, r.read(&mut first)).await {
        Ok(n) => n?,
        Err(_) => return Err(FrameError::Idle(idle_timeout)),
    };
    if n == 0 {
        return Ok(None);
    }
    match tokio::time::timeout(rest_timeout, read_rest(r, first[0], max_frame)).await {
        Ok(result) => result.map(Some),
        Err(_) => Err(FrameError::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("frame not complete after {rest_timeout:?}"),
        ))),
    }
}

async fn read_rest<R: AsyncRead + Unpin>(
    r: &mut R,
    first: u8,
    max_frame: usize,
) -> Result<Frame, FrameError> {
    let mut len = [first, 0, 0, 0];
    r.read_exact(&mut len[1..]).await?;
    let len = u32::from_be_bytes(len);
    if (len as usize) < HEADER_LEN {
        return Err(FrameError::TooShort(len));
    }
    if len as usize > max_frame {
        return Err(FrameError::TooLong {
            len,
            max: max_frame,
        });
    }
    let mut buf = vec![0u8; len as usize];
    r.read_exact(&mut buf).await?;
    let version = u16::from_be_bytes([buf[0], buf[1]]);
    let kind = u16::from_be_bytes([buf[2], buf[3]]);
    let correlation_id = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
    buf.drain(..HEADER_LEN);
    Ok(Frame {
        version,
        kind,
        correlation_id,
        body: buf,
    })
}

/// Writes one frame and flushes.
pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, frame: &[u8]) -> std::io::Result<()> {
    w.write_all(frame).await?;
    w.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn round_trip() {
        let bytes = encode(Kind::AppendEntries as u16 | RESPONSE, 42, b"body");
        assert_eq!(&bytes[..4], &12u32.to_be_bytes());
        let frame = read_frame(&mut &bytes[..], 1024, T, T)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(frame.version, VERSION);
        assert_eq!(frame.kind, 0x8002);
        assert_eq!(frame.correlation_id, 42);
        assert_eq!(frame.body, b"body");
        assert!(read_frame(&mut &[][..], 1024, T, T)
            .await
            .unwrap()
            .is_none());
    }

    #[tokio::test]
    async fn bad_lengths_are_refused_before_allocating() {
        let huge = u32::MAX.to_be_bytes();
        assert!(matches!(
            read_frame(&mut &huge[..], 1 << 20, T, T).await,
            Err(FrameError::TooLong { .. })
        ));
        let short = 3u32.to_be_bytes();
        assert!(matches!(
            read_frame(&mut &short[..], 1 << 20, T, T).await,
            Err(FrameError::TooShort(3))
        ));
        // A frame cut short is an I/O error (unexpected EOF), not a panic.
        let mut cut = encode(1, 1, b"abcdef");
        cut.truncate(cut.len() - 2);
        assert!(matches!(
            read_frame(&mut &cut[..], 1 << 20, T, T).await,
            Err(FrameError::Io(_))
        ));
    }

    #[test]
    fn snapshot_chunk_bytes_are_a_byte_string() {
        use crate::types::{from_cbor, to_cbor};
        let req = InstallSnapshotRequest::<TypeConfig> {
            vote: Vote::new_committed(3, 1),
            meta: SnapshotMeta::default(),
            offset: 7,
            data: vec![0xa5; 1000],
            done: true,
        };
        let openraft_encoding = to_cbor(&req).unwrap();
        let ours = to_cbor(&SnapshotChunk::from(req.clone())).unwrap();
        // Each byte >= 24 costs two bytes as an array item; a byte string adds 3 bytes in all.
        assert!(
            openraft_encoding.len() > 2000,
            "{}",
            openraft_encoding.len()
        );
        assert!(ours.len() < 1000 + 200, "{}", ours.len());
        let back: InstallSnapshotRequest<TypeConfig> =
            from_cbor::<SnapshotChunk>(&ours).unwrap().into();
        assert_eq!(back, req);
        // openraft's own encoding still decodes.
        let old: InstallSnapshotRequest<TypeConfig> =
            from_cbor::<SnapshotChunk>(&openraft_encoding)
                .unwrap()
                .into();
        assert_eq!(old, req);
    }

    #[tokio::test]
    async fn a_silent_peer_times_out() {
        let (client, mut server) = tokio::io::duplex(64);
        let read = read_frame(&mut server, 1024, Duration::from_millis(100), T).await;
        assert!(matches!(read, Err(FrameError::Idle(_))), "{read:?}");
        drop(client);
    }

    #[tokio::test]
    async fn a_stalled_frame_times_out() {
        let (mut client, mut server) = tokio::io::duplex(64);
        client.write_all(&[0, 0, 0, 20, 0, 1]).await.unwrap();
        let read = read_frame(&mut server, 1024, T, Duration::from_millis(100)).await;
        assert!(matches!(read, Err(FrameError::Io(e)) if e.kind() == std::io::ErrorKind::TimedOut));
        drop(client);
    }
}
