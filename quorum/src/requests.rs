//! Application requests on the controller listener (frame kind 5, `ControllerRequest`): the
//! [`RequestHandler`] an application installs to answer them, and `RequestClient`, which
//! sends them to a node and waits for the answer.
//!
//! The quorum carries these requests and does not read them: the body is the application's
//! bytes, the answer is the handler's bytes or an error text (see [`crate::wire`]). The
//! metadata service uses them to forward controller requests (BrokerRegistration,
//! CreateTopics, ...) from any node to the active controller, as Kafka's KIP-590.
//!
//! **Who may send.** Unlike Raft's RPCs, a ControllerRequest is accepted from anyone who can
//! reach the port, member of the quorum or not: a broker registering for the first time is
//! not a member yet. The controller listener has no authentication (until the security
//! issue): it must only be reachable from the cluster's own hosts.
//!
//! **Connections.** Separate from Raft's (`network.rs`), so a slow admin request never
//! delays a vote or an AppendEntries. Each peer gets a small pool: up to
//! [`MAX_CONNECTIONS_PER_PEER`] requests in flight at once, each on its own connection
//! (one request at a time per connection, as for every kind); a connection that answered
//! goes back to the pool, one that failed or timed out mid-request is dropped (its state is
//! unknown), and one idle for half of the peer's `idle_timeout` is not reused (the peer may
//! be closing it right now). A heartbeat is therefore never queued behind a slow CreateTopics
//! on the same connection. There is no backoff here: the caller decides when to retry.
//!
//! **Nodes outside the quorum.** [`ControllerClient`] is the same client for a process
//! that runs no quorum node (a broker-only node following the metadata with
//! `FetchMetadata`, see sluice-controller's `observer`): it sends ControllerRequests to
//! addresses the caller names.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::error::QuorumError;
use crate::network::NetSettings;
use crate::types::{from_cbor, NodeId, Payload};
use crate::wire::{self, Kind};

/// A boxed, sendable future (what [`RequestHandler::handle`] returns).
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Answers the ControllerRequests that reach this node; installed with
/// [`Quorum::set_request_handler`](crate::Quorum::set_request_handler).
///
/// `body` is the sender's bytes, unchecked: the handler must treat them as untrusted (decode
/// with limits, answer `Err` for anything it cannot read). `Ok` bytes go back as the
/// answer; `Err` text goes back as an error answer. The future should end within the
/// application's request timeout: the connection it came on waits for it.
pub trait RequestHandler: Send + Sync + 'static {
    fn handle(&self, body: Vec<u8>) -> BoxFuture<Result<Vec<u8>, String>>;
}

/// Most requests in flight to one peer (and so connections to it) at once; more wait.
pub const MAX_CONNECTIONS_PER_PEER: usize = 4;

/// Sends ControllerRequests from a process that is not a quorum node (see the module
/// docs): a pool of connections per target, nothing else.
pub struct ControllerClient {
    inner: RequestClient,
}

impl ControllerClient {
    /// A client whose connects give up after `connect_timeout`, which sends and accepts
    /// frames up to `max_frame_bytes`, and which does not reuse a connection idle for half
    /// of `peer_idle_timeout` (the peers' `QuorumConfig::idle_timeout`).
    pub fn new(
        connect_timeout: Duration,
        max_frame_bytes: usize,
        peer_idle_timeout: Duration,
    ) -> ControllerClient {
        ControllerClient {
            inner: RequestClient::new(NetSettings {
                connect_timeout,
                // Not used by the request client: the caller backs off.
                reconnect_backoff_min: connect_timeout,
                reconnect_backoff_max: connect_timeout,
                max_frame_bytes,
                idle_timeout: peer_idle_timeout,
            }),
        }
    }

    /// Sends `body` to node `target` at `addr` and waits for the answer, all within
    /// `timeout`; the errors of [`Quorum::request`](crate::Quorum::request).
    pub async fn call(
        &self,
        target: NodeId,
        addr: &str,
        body: &[u8],
        timeout: Duration,
    ) -> Result<Vec<u8>, QuorumError> {
        self.inner.call(target, addr, body, timeout).await
    }
}

/// Sends ControllerRequests; see the module docs.
pub(crate) struct RequestClient {
    settings: NetSettings,
    peers: Mutex<HashMap<NodeId, Arc<PeerPool>>>,
    next_correlation_id: AtomicU32,
}

struct PeerPool {
    addr: String,
    /// Connections that answered their last request, with when they did.
    idle: Mutex<Vec<(TcpStream, Instant)>>,
    /// One permit per request in flight.
    in_flight: Semaphore,
}

impl RequestClient {
    pub fn new(settings: NetSettings) -> RequestClient {
        RequestClient {
            settings,
            peers: Mutex::default(),
            next_correlation_id: AtomicU32::new(0),
        }
    }

    fn pool(&self, target: NodeId, addr: &str) -> Arc<PeerPool> {
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        match peers.get(&target) {
            Some(p) if p.addr == addr => p.clone(),
            // New, or the node moved: its old connections go with the old pool.
            _ => {
                let p = Arc::new(PeerPool {
                    addr: addr.to_owned(),
                    idle: Mutex::default(),
                    in_flight: Semaphore::new(MAX_CONNECTIONS_PER_PEER),
                });
                peers.insert(target, p.clone());
                p
            }
        }
    }

    /// Sends `body` to node `target` at `addr` and waits for the answer, all within
    /// `timeout` (the connect within the connect timeout as well).
    ///
    /// Errors: [`QuorumError::Unreachable`] when no connection could be made or it failed
    /// (if it failed after the request was written, the peer may have executed it);
    /// [`QuorumError::Timeout`] when no answer came in time (same caveat);
    /// [`QuorumError::Remote`] when the peer answered with an error (no handler, or the
    /// handler's own error); [`QuorumError::PayloadTooLarge`] for a body over the frame limit.
    pub async fn call(
        &self,
        target: NodeId,
        addr: &str,
        body: &[u8],
        timeout: Duration,
    ) -> Result<Vec<u8>, QuorumError> {
        let max = self.settings.max_frame_bytes;
        if body.len() + wire::HEADER_LEN > max {
            return Err(QuorumError::PayloadTooLarge {
                size: body.len(),
                max: max - wire::HEADER_LEN,
            });
        }
        let pool = self.pool(target, addr);
        match tokio::time::timeout(timeout, self.call_inner(target, &pool, body)).await {
            Ok(result) => result,
            Err(_) => Err(QuorumError::Timeout(timeout)),
        }
    }

    async fn call_inner(
        &self,
        target: NodeId,
        pool: &PeerPool,
        body: &[u8],
    ) -> Result<Vec<u8>, QuorumError> {
        let unreachable = |reason: String| QuorumError::Unreachable {
            node: target,
            reason,
        };
        let _permit = pool
            .in_flight
            .acquire()
            .await
            .map_err(|_| unreachable("client closed".into()))?;
        let reused = {
            let mut idle = pool.idle.lock().unwrap_or_else(|e| e.into_inner());
            let max_idle = self.settings.idle_timeout / 2;
            idle.retain(|(_, at)| at.elapsed() < max_idle);
            idle.pop().map(|(s, _)| s)
        };
        let mut stream = match reused {
            Some(s) => s,
            None => {
                let dial = tokio::time::timeout(
                    self.settings.connect_timeout,
                    TcpStream::connect(&pool.addr),
                )
                .await;
                let stream = match dial {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => return Err(unreachable(format!("connect {}: {e}", pool.addr))),
                    Err(_) => {
                        return Err(unreachable(format!(
                            "connect {}: timed out after {:?}",
                            pool.addr, self.settings.connect_timeout
                        )))
                    }
                };
                let _ = stream
                    .set_nodelay(true)
                    .map_err(|e| tracing::debug!("set_nodelay: {e}"));
                stream
            }
        };
        let correlation_id = self.next_correlation_id.fetch_add(1, Ordering::Relaxed);
        let frame = wire::encode(Kind::ControllerRequest as u16, correlation_id, body);
        let max = self.settings.max_frame_bytes;
        let exchange = async {
            wire::write_frame(&mut stream, &frame).await?;
            // The whole call is under the caller's timeout already.
            let resp = wire::read_frame(&mut stream, max, Duration::MAX, Duration::MAX)
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))?
                .ok_or_else(|| {
                    std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "peer closed")
                })?;
            if resp.version != wire::VERSION
                || resp.kind != Kind::ControllerRequest as u16 | wire::RESPONSE
                || resp.correlation_id != correlation_id
            {
                return Err(std::io::Error::other(format!(
                    "unexpected response header (version {}, kind {:#x}, correlation id {})",
                    resp.version, resp.kind, resp.correlation_id
                )));
            }
            from_cbor::<wire::ControllerAnswer>(&resp.body).map_err(std::io::Error::other)
        };
        let answer = match exchange.await {
            Ok(answer) => answer,
            Err(e) => {
                tracing::debug!(target_node = target, addr = %pool.addr, "controller request failed: {e}");
                return Err(unreachable(format!(
                    "{}: {e} (the request may have been executed)",
                    pool.addr
                )));
            }
        };
        // A complete answer leaves the connection in step: keep it for the next request.
        pool.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((stream, Instant::now()));
        answer
            .map(|Payload(bytes)| bytes)
            .map_err(|message| QuorumError::Remote {
                node: target,
                message,
            })
    }
}
