//! Outgoing controller RPCs: openraft's [`RaftNetworkFactory`] / [`RaftNetwork`] over TCP.
//!
//! One connection per (peer, RPC kind): votes, AppendEntries (entries and heartbeats) and
//! snapshot chunks each have their own, one request at a time on each. So a large snapshot
//! chunk, or a follower busy installing a snapshot before it answers the last chunk, never
//! holds up the heartbeats to that follower (which would make it start a needless election).
//! Every openraft client of a peer (its replication stream, its snapshot task, vote requests)
//! shares these connections.
//!
//! A connection that fails or times out mid-request is dropped (its state is unknown) and a
//! new one is dialed by the next request. One left unused for half of `idle_timeout` is
//! dropped too before it is used again: the peer closes connections idle for `idle_timeout`,
//! and a request must not be the one that finds out. A failed dial starts a backoff
//! (doubling from `reconnect_backoff_min` to `reconnect_backoff_max`): until it passes,
//! requests of that kind to that peer fail fast as `Unreachable`, which makes openraft back
//! off too instead of spinning.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError, Timeout,
    Unreachable,
};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, RPCTypes, RaftNetwork, RaftNetworkFactory};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::types::{from_cbor, to_cbor, NodeId, TypeConfig};
use crate::wire::{self, Kind};

/// Timeouts and limits of outgoing connections.
#[derive(Debug, Clone)]
pub(crate) struct NetSettings {
    pub connect_timeout: Duration,
    pub reconnect_backoff_min: Duration,
    pub reconnect_backoff_max: Duration,
    pub max_frame_bytes: usize,
    /// The peers' `idle_timeout`: a connection unused for half of it is redialed.
    pub idle_timeout: Duration,
}

/// Makes a [`PeerClient`] per target, all sharing the connections of that peer.
#[derive(Clone)]
pub(crate) struct Network {
    id: NodeId,
    settings: Arc<NetSettings>,
    peers: Arc<Mutex<HashMap<NodeId, Arc<Peer>>>>,
}

impl Network {
    pub fn new(id: NodeId, settings: NetSettings) -> Network {
        Network {
            id,
            settings: Arc::new(settings),
            peers: Arc::default(),
        }
    }
}

struct Peer {
    target: NodeId,
    addr: String,
    /// One connection per RPC kind, indexed by [`conn_slot`].
    conns: [tokio::sync::Mutex<Conn>; 3],
}

/// Which of a peer's connections carries `kind`.
fn conn_slot(kind: Kind) -> usize {
    match kind {
        Kind::Vote => 0,
        Kind::AppendEntries => 1,
        Kind::InstallSnapshot => 2,
        // Probes and controller requests go on connections of their own (`probe`,
        // `requests::RequestClient`).
        Kind::Probe | Kind::ControllerRequest => 0,
    }
}

/// Asks the voter at `addr` whether it has Raft state, on a connection of its own, within
/// `timeout`; `None` if it cannot be reached or does not answer in time.
pub(crate) async fn probe(
    id: NodeId,
    target: NodeId,
    addr: &str,
    max_frame_bytes: usize,
    timeout: Duration,
) -> Option<wire::ProbeResponse> {
    let call = async {
        let mut stream = TcpStream::connect(addr).await?;
        let body = to_cbor(&wire::ProbeRequest { node_id: id }).map_err(std::io::Error::other)?;
        wire::write_frame(&mut stream, &wire::encode(Kind::Probe as u16, 1, &body)).await?;
        let resp = wire::read_frame(&mut stream, max_frame_bytes, Duration::MAX, Duration::MAX)
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "peer closed"))?;
        if resp.kind != Kind::Probe as u16 | wire::RESPONSE || resp.correlation_id != 1 {
            return Err(std::io::Error::other("unexpected response header"));
        }
        from_cbor::<wire::ProbeResponse>(&resp.body).map_err(std::io::Error::other)
    };
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(answer)) => Some(answer),
        Ok(Err(e)) => {
            tracing::debug!(target_node = target, %addr, "probe failed: {e}");
            None
        }
        Err(_) => {
            tracing::debug!(target_node = target, %addr, "probe timed out");
            None
        }
    }
}

#[derive(Default)]
struct Conn {
    stream: Option<TcpStream>,
    /// When the stream last finished a request (or was dialed).
    last_used: Option<Instant>,
    next_correlation_id: u32,
    backoff: Option<Duration>,
    retry_at: Option<Instant>,
    /// Set while a request is between its write and its response: still set at the next call
    /// means that call was abandoned (timed out, cancelled) and the stream is out of step.
    in_flight: bool,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        let peer = match peers.get(&target) {
            // Reuse the connection unless the membership now gives the node another address.
            Some(p) if p.addr == node.addr => p.clone(),
            _ => {
                let p = Arc::new(Peer {
                    target,
                    addr: node.addr.clone(),
                    conns: Default::default(),
                });
                peers.insert(target, p.clone());
                p
            }
        };
        PeerClient {
            id: self.id,
            settings: self.settings.clone(),
            peer,
        }
    }
}

/// openraft's client for one peer.
pub(crate) struct PeerClient {
    id: NodeId,
    settings: Arc<NetSettings>,
    peer: Arc<Peer>,
}

/// How one call failed, before it is shaped into openraft's error for that RPC.
enum CallError {
    Unreachable(std::io::Error),
    Network(std::io::Error),
    Timeout(Duration),
    TooLarge,
}

impl CallError {
    fn into_rpc<E: std::error::Error>(
        self,
        id: NodeId,
        target: NodeId,
        action: RPCTypes,
        entries: usize,
    ) -> RPCError<NodeId, BasicNode, E> {
        match self {
            CallError::Unreachable(e) => RPCError::Unreachable(Unreachable::new(&e)),
            CallError::Network(e) => RPCError::Network(NetworkError::new(&e)),
            CallError::Timeout(timeout) => RPCError::Timeout(Timeout {
                action,
                id,
                target,
                timeout,
            }),
            CallError::TooLarge => match action {
                // openraft retries with fewer entries.
                RPCTypes::AppendEntries => RPCError::PayloadTooLarge(
                    PayloadTooLarge::new_entries_hint((entries as u64 / 2).max(1)),
                ),
                _ => RPCError::Network(NetworkError::new(&std::io::Error::other(
                    "request exceeds the frame limit",
                ))),
            },
        }
    }
}

impl PeerClient {
    /// Sends one request and reads its response, within `ttl`.
    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        kind: Kind,
        req: &Req,
        ttl: Duration,
    ) -> Result<Resp, CallError> {
        let body = to_cbor(req).map_err(|e| CallError::Network(std::io::Error::other(e)))?;
        if body.len() + wire::HEADER_LEN > self.settings.max_frame_bytes {
            return Err(CallError::TooLarge);
        }
        // openraft puts the same deadline around this call; ours fires first, so the error is
        // a clean Timeout rather than a cancelled future.
        let deadline = ttl.mul_f64(0.9);
        match tokio::time::timeout(deadline, self.call_inner(kind, &body)).await {
            Ok(r) => r,
            Err(_) => Err(CallError::Timeout(ttl)),
        }
    }

    async fn call_inner<Resp: DeserializeOwned>(
        &self,
        kind: Kind,
        body: &[u8],
    ) -> Result<Resp, CallError> {
        let mut conn = self.peer.conns[conn_slot(kind)].lock().await;
        if conn.in_flight {
            // The previous call was abandoned midway: its response may still be coming.
            conn.stream = None;
            conn.in_flight = false;
        }
        if conn
            .last_used
            .is_some_and(|t| t.elapsed() > self.settings.idle_timeout / 2)
        {
            // The peer may be closing it as idle right now.
            conn.stream = None;
        }
        if conn.stream.is_none() {
            if let Some(at) = conn.retry_at {
                if Instant::now() < at {
                    return Err(CallError::Unreachable(std::io::Error::other(format!(
                        "node {} at {}: backing off after a failed connect",
                        self.peer.target, self.peer.addr
                    ))));
                }
            }
            let dial = tokio::time::timeout(
                self.settings.connect_timeout,
                TcpStream::connect(&self.peer.addr),
            )
            .await;
            match dial {
                Ok(Ok(stream)) => {
                    let _ = stream
                        .set_nodelay(true)
                        .map_err(|e| tracing::debug!("set_nodelay: {e}"));
                    tracing::debug!(target_node = self.peer.target, addr = %self.peer.addr, ?kind, "controller connection open");
                    conn.stream = Some(stream);
                    conn.backoff = None;
                    conn.retry_at = None;
                }
                Ok(Err(e)) => {
                    self.start_backoff(&mut conn);
                    return Err(CallError::Unreachable(e));
                }
                Err(_) => {
                    self.start_backoff(&mut conn);
                    return Err(CallError::Unreachable(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "connect timed out",
                    )));
                }
            }
        }
        conn.next_correlation_id = conn.next_correlation_id.wrapping_add(1);
        let correlation_id = conn.next_correlation_id;
        let frame = wire::encode(kind as u16, correlation_id, body);
        let max = self.settings.max_frame_bytes;
        conn.in_flight = true;
        let Some(stream) = conn.stream.as_mut() else {
            return Err(CallError::Network(std::io::Error::other("no connection")));
        };
        let result = async {
            wire::write_frame(stream, &frame).await?;
            // The whole call is under the RPC deadline already.
            let resp = wire::read_frame(stream, max, Duration::MAX, Duration::MAX)
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))?
                .ok_or_else(|| {
                    std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "peer closed")
                })?;
            if resp.version != wire::VERSION
                || resp.kind != kind as u16 | wire::RESPONSE
                || resp.correlation_id != correlation_id
            {
                return Err(std::io::Error::other(format!(
                    "unexpected response header (version {}, kind {:#x}, correlation id {})",
                    resp.version, resp.kind, resp.correlation_id
                )));
            }
            from_cbor::<Resp>(&resp.body).map_err(std::io::Error::other)
        }
        .await;
        conn.in_flight = false;
        conn.last_used = Some(Instant::now());
        if result.is_err() {
            conn.stream = None;
        }
        result.map_err(CallError::Network)
    }

    fn start_backoff(&self, conn: &mut Conn) {
        let next = match conn.backoff {
            None => self.settings.reconnect_backoff_min,
            Some(b) => (b * 2).min(self.settings.reconnect_backoff_max),
        };
        conn.backoff = Some(next);
        conn.retry_at = Some(Instant::now() + next);
    }

    // Returns openraft's RPCError, as the trait methods it serves must.
    #[allow(clippy::result_large_err)]
    fn shape<Resp, E: std::error::Error>(
        &self,
        action: RPCTypes,
        entries: usize,
        result: Result<Result<Resp, RaftError<NodeId, E>>, CallError>,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>> {
        match result {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(remote)) => Err(RPCError::RemoteError(RemoteError::new(
                self.peer.target,
                remote,
            ))),
            Err(e) => {
                tracing::trace!(
                    target_node = self.peer.target,
                    ?action,
                    "controller rpc failed"
                );
                Err(e.into_rpc(self.id, self.peer.target, action, entries))
            }
        }
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let entries = rpc.entries.len();
        let result = self
            .call(Kind::AppendEntries, &rpc, option.hard_ttl())
            .await;
        self.shape(RPCTypes::AppendEntries, entries, result)
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        let chunk = wire::SnapshotChunk::from(rpc);
        let result = self
            .call(Kind::InstallSnapshot, &chunk, option.hard_ttl())
            .await;
        self.shape(RPCTypes::InstallSnapshot, 0, result)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let result = self.call(Kind::Vote, &rpc, option.hard_ttl()).await;
        self.shape(RPCTypes::Vote, 0, result)
    }
}
