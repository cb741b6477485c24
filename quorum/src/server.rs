//! Incoming controller RPCs: reads frames from a peer's connection and hands them to openraft.
//!
//! Requests on one connection are answered one by one, in order. At most
//! `max_incoming_connections` connections are served at once (one more is closed at once),
//! and one with no request for `idle_timeout` is closed (a leader sends a heartbeat every
//! `heartbeat_interval`, so a live peer's connection is never idle that long). Anything that is not a
//! well-formed request of a known version and kind (garbage, an oversized or truncated frame,
//! an undecodable body, a response where a request belongs) closes that connection with a
//! debug log; nothing else is affected.
//!
//! A Probe (a voter with empty storage asking whether the cluster exists) is answered here
//! from the node's metrics, without openraft.
//!
//! A ControllerRequest goes to the application's [`RequestHandler`], from any sender (see
//! `requests.rs`: such requests come from brokers that are not members yet); without a
//! handler it is answered with an error. Its body is never read here.
//!
//! Before a request reaches openraft it is checked here, because openraft trusts its peers:
//! - The sender (the node named by the request's vote, or a Probe's node id) must be a
//!   configured voter or a member (voter or learner) of the current membership; otherwise the connection is closed. So a
//!   stranger on the controller port cannot raise the term or pose as a leader.
//! - An InstallSnapshot chunk must start at 0 (a new transfer) or at most at the bytes already
//!   received for that snapshot, and must end within `max_snapshot_bytes`. openraft seeks its
//!   in-memory buffer to the chunk's offset and fills the gap with zeros, so one frame with a
//!   huge offset would otherwise allocate that much. A chunk that does not continue the
//!   transfer is answered with openraft's own `SnapshotMismatch`, which makes the leader start
//!   the transfer again from offset 0; a chunk past the size limit closes the connection.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use openraft::error::{InstallSnapshotError, RaftError, SnapshotMismatch};
use openraft::raft::{
    AppendEntriesRequest, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
};
use openraft::SnapshotSegmentId;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::requests::RequestHandler;
use crate::types::{from_cbor, to_cbor, NodeId, Payload, Raft, TypeConfig, Vote};
use crate::wire::{self, Kind};

/// Once a request frame has started, the rest of it must arrive within this.
const FRAME_TIMEOUT: Duration = Duration::from_secs(10);

/// What every incoming connection of one node shares: Raft, the limits, and the progress of
/// the snapshot being received (a transfer may move to a new connection midway).
pub(crate) struct Inbound {
    pub raft: Raft,
    pub max_frame_bytes: usize,
    pub max_snapshot_bytes: u64,
    /// `controller.quorum.voters`: always allowed to send (the first leader reaches pristine
    /// voters before they know any membership).
    pub configured_voters: BTreeSet<NodeId>,
    /// The snapshot being received: its id and how many bytes of it openraft has accepted.
    pub snapshot: Mutex<Option<(String, u64)>>,
    /// A connection with no request for this long is closed.
    pub idle_timeout: Duration,
    /// One permit per incoming connection being served (`max_incoming_connections`).
    pub connections: Arc<Semaphore>,
    /// The application's handler of ControllerRequests, once installed.
    pub handler: RwLock<Option<Arc<dyn RequestHandler>>>,
}

impl Inbound {
    /// A permit to serve one more connection, held while it is served; `None` when
    /// `max_incoming_connections` are served already (the caller then closes it at once).
    pub fn admit(&self, peer: &str) -> Option<OwnedSemaphorePermit> {
        let permit = self.connections.clone().try_acquire_owned().ok();
        if permit.is_none() {
            tracing::debug!(%peer, "closing controller connection: too many connections");
        }
        permit
    }

    /// Whether `vote`'s node may send requests to this node.
    fn is_member(&self, vote: &Vote) -> bool {
        vote.leader_id()
            .voted_for()
            .is_some_and(|sender| self.is_known(sender))
    }

    /// Whether `sender` is a configured voter or a member of the current membership.
    fn is_known(&self, sender: NodeId) -> bool {
        if self.configured_voters.contains(&sender) {
            return true;
        }
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        m.membership_config.membership().get_node(&sender).is_some()
    }

    /// Checks a snapshot chunk against the transfer in progress: `Ok(None)` to pass it on,
    /// `Ok(Some(answer))` to answer without openraft, `Err` to close the connection.
    fn check_chunk(
        &self,
        req: &InstallSnapshotRequest<TypeConfig>,
    ) -> Result<Option<SnapshotAnswer>, String> {
        let end = req.offset.checked_add(req.data.len() as u64);
        if end.is_none_or(|end| end > self.max_snapshot_bytes) {
            return Err(format!(
                "snapshot chunk at offset {} of {} bytes goes past max_snapshot_bytes {}",
                req.offset,
                req.data.len(),
                self.max_snapshot_bytes
            ));
        }
        if req.offset == 0 {
            return Ok(None);
        }
        let progress = self.snapshot.lock().unwrap_or_else(|e| e.into_inner());
        let received = match &*progress {
            Some((id, received)) if *id == req.meta.snapshot_id => *received,
            _ => 0,
        };
        if req.offset <= received {
            return Ok(None);
        }
        tracing::debug!(
            snapshot_id = %req.meta.snapshot_id,
            offset = req.offset,
            received,
            "snapshot chunk does not continue the transfer; asking for a restart"
        );
        Ok(Some(Err(RaftError::APIError(
            InstallSnapshotError::SnapshotMismatch(SnapshotMismatch {
                expect: SnapshotSegmentId {
                    id: req.meta.snapshot_id.clone(),
                    offset: received,
                },
                got: SnapshotSegmentId {
                    id: req.meta.snapshot_id.clone(),
                    offset: req.offset,
                },
            }),
        ))))
    }

    /// Records openraft's answer to a chunk it was given.
    fn chunk_done(
        &self,
        id: String,
        offset: u64,
        len: u64,
        done: bool,
        req_vote: &Vote,
        answer: &SnapshotAnswer,
    ) {
        let mut progress = self.snapshot.lock().unwrap_or_else(|e| e.into_inner());
        // openraft takes a chunk when the request's vote is at least its own, and answers with
        // its own vote (as it was before the chunk).
        let accepted = matches!(answer, Ok(resp) if *req_vote >= resp.vote);
        if !accepted || done {
            *progress = None;
            return;
        }
        let end = offset + len;
        *progress = match progress.take() {
            Some((cur, received)) if cur == id && offset <= received => {
                Some((cur, received.max(end)))
            }
            _ if offset == 0 => Some((id, end)),
            _ => None,
        };
    }
}

type SnapshotAnswer =
    Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>;

/// Serves one connection until the peer closes it or sends something invalid.
pub(crate) async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    inbound: &Inbound,
    stream: &mut S,
    peer: &str,
) {
    let raft = &inbound.raft;
    loop {
        let frame = match wire::read_frame(
            stream,
            inbound.max_frame_bytes,
            inbound.idle_timeout,
            FRAME_TIMEOUT,
        )
        .await
        {
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
            Kind::Probe => match from_cbor::<wire::ProbeRequest>(&frame.body) {
                Ok(req) if !inbound.is_known(req.node_id) => Err(format!(
                    "probe from node {} that is neither a configured voter nor a member",
                    req.node_id
                )),
                Ok(_) => {
                    let answer = {
                        let m = inbound.raft.metrics();
                        let m = m.borrow();
                        wire::ProbeResponse {
                            term: m.current_term,
                            last_log_index: m.last_log_index,
                        }
                    };
                    encode(&answer)
                }
                Err(e) => Err(e),
            },
            Kind::ControllerRequest => {
                let handler = inbound
                    .handler
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                let answer: wire::ControllerAnswer = match handler {
                    Some(h) => h.handle(frame.body).await.map(Payload),
                    None => Err("this node has no handler for controller requests".into()),
                };
                encode(&answer)
            }
            Kind::Vote => match from_cbor::<VoteRequest<NodeId>>(&frame.body) {
                Ok(req) if !inbound.is_member(&req.vote) => Err(not_member(&req.vote)),
                Ok(req) => encode(&raft.vote(req).await),
                Err(e) => Err(e),
            },
            Kind::AppendEntries => match from_cbor::<AppendEntriesRequest<TypeConfig>>(&frame.body)
            {
                Ok(req) if !inbound.is_member(&req.vote) => Err(not_member(&req.vote)),
                Ok(req) => encode(&raft.append_entries(req).await),
                Err(e) => Err(e),
            },
            Kind::InstallSnapshot => {
                match from_cbor::<wire::SnapshotChunk>(&frame.body)
                    .map(InstallSnapshotRequest::<TypeConfig>::from)
                {
                    Ok(req) if !inbound.is_member(&req.vote) => Err(not_member(&req.vote)),
                    Ok(req) => match inbound.check_chunk(&req) {
                        Err(e) => Err(e),
                        Ok(Some(answer)) => encode(&answer),
                        Ok(None) => {
                            let (id, offset, len, done, vote) = (
                                req.meta.snapshot_id.clone(),
                                req.offset,
                                req.data.len() as u64,
                                req.done,
                                req.vote,
                            );
                            let answer = raft.install_snapshot(req).await;
                            inbound.chunk_done(id, offset, len, done, &vote, &answer);
                            encode(&answer)
                        }
                    },
                    Err(e) => Err(e),
                }
            }
        };
        let body = match body {
            Ok(b) => b,
            Err(e) => {
                tracing::debug!(%peer, ?kind, "closing controller connection: bad request: {e}");
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

fn not_member(vote: &Vote) -> String {
    format!(
        "sender {:?} is neither a configured voter nor a member of the quorum",
        vote.leader_id().voted_for()
    )
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, String> {
    to_cbor(value)
}
