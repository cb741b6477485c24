//! Incoming controller RPCs: reads frames from a peer's connection and hands them to openraft.
//!
//! Requests on one connection are answered one by one, in order. Anything that is not a
//! well-formed request of a known version and kind (garbage, an oversized or truncated frame,
//! an undecodable body, a response where a request belongs) closes that connection with a
//! debug log; nothing else is affected.

use std::time::Duration;

use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::types::{from_cbor, to_cbor, NodeId, Raft, TypeConfig};
use crate::wire::{self, Kind};

/// Once a request frame has started, the rest of it must arrive within this.
const FRAME_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves one connection until the peer closes it or sends something invalid.
pub(crate) async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    raft: &Raft,
    stream: &mut S,
    max_frame: usize,
    peer: &str,
) {
    loop {
        let frame = match wire::read_frame(stream, max_frame, FRAME_TIMEOUT).await {
            Ok(Some(f)) => f,
            Ok(None) => {
                tracing::trace!(%peer, "controller connection closed by peer");
                return;
            }
            Err(e) => {
                tracing::debug!(%peer, "closing controller connection: {e}");
                return;
            }
        };
        if frame.version != wire::VERSION {
            tracing::debug!(%peer, version = frame.version, "closing controller connection: unknown frame version");
            return;
        }
        let Some(kind) = Kind::from_u16(frame.kind) else {
            tracing::debug!(%peer, kind = frame.kind, "closing controller connection: unknown rpc kind");
            return;
        };
        let body = match kind {
            Kind::Vote => match from_cbor::<VoteRequest<NodeId>>(&frame.body) {
                Ok(req) => encode(&raft.vote(req).await),
                Err(e) => Err(e),
            },
            Kind::AppendEntries => match from_cbor::<AppendEntriesRequest<TypeConfig>>(&frame.body)
            {
                Ok(req) => encode(&raft.append_entries(req).await),
                Err(e) => Err(e),
            },
            Kind::InstallSnapshot => {
                match from_cbor::<InstallSnapshotRequest<TypeConfig>>(&frame.body) {
                    Ok(req) => encode(&raft.install_snapshot(req).await),
                    Err(e) => Err(e),
                }
            }
        };
        let body = match body {
            Ok(b) => b,
            Err(e) => {
                tracing::debug!(%peer, ?kind, "closing controller connection: bad request body: {e}");
                return;
            }
        };
        let out = wire::encode(kind as u16 | wire::RESPONSE, frame.correlation_id, &body);
        if let Err(e) = wire::write_frame(stream, &out).await {
            tracing::debug!(%peer, "closing controller connection: write failed: {e}");
            return;
        }
    }
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, String> {
    to_cbor(value)
}
