//! The network side: the listener, connection tasks and their limits.
//!
//! - `frame`: request framing and the fixed header prefix (size-checked, allocation-free).
//! - `dispatch`: header and version rules, decoding, handler calls, encoding.
//! - `groups`: dispatch of the group APIs to the coordinator (see `crate::groups`).
//! - `wire`: response framing with record bytes spliced, not copied.
//! - `connection`: one task per connection, pipelined and ordered.
//!
//! - `limits`: connection admission (per address, total, longest-idle eviction), idle
//!   tracking, the request byte budget and rate-limited warnings.
//!
//! [`accept_loop`] accepts a connection, then asks `limits` whether to serve it: over
//! its address's cap it is closed at once; at `max.connections` the connection idle the
//! longest is closed to make room, and when none is idle the loop waits for a slot
//! before accepting more (the kernel's backlog holds the rest). Shutdown follows
//! mini-redis: a watch channel tells every task to stop, and each connection holds a
//! clone of a `done` sender, so the receiver sees `None` once the last connection has
//! finished.

pub mod connection;
pub mod dispatch;
pub mod frame;
pub mod groups;
pub mod limits;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tracing::Instrument;

use crate::state::BrokerState;
use limits::{Admission, ConnectionGuard, Limits};

/// How often a full broker with no idle connection looks again for one to close (a
/// freed slot wakes it at once).
const FULL_RECHECK: Duration = Duration::from_millis(100);

/// Accepts connections until `shutdown` turns true; each connection task holds a clone
/// of `done` and stops at once when `kill` turns true.
pub async fn accept_loop(
    listener: TcpListener,
    state: Arc<BrokerState>,
    mut shutdown: watch::Receiver<bool>,
    kill: watch::Receiver<bool>,
    done: mpsc::Sender<()>,
) {
    let limits = state.limits.clone();
    loop {
        if *shutdown.borrow() {
            break;
        }
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning; the error is
                    // about this accept, not the listener.
                    tracing::error!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let Some(guard) = admit(&limits, &stream, peer, &mut shutdown).await else {
            continue;
        };
        let ctx = dispatch::Context {
            state: state.clone(),
            shutdown: shutdown.clone(),
            peer,
        };
        let mut kill = kill.clone();
        let done = done.clone();
        let limits = limits.clone();
        let span = tracing::info_span!("conn", %peer);
        tokio::spawn(
            async move {
                let activity = guard.activity().clone();
                let limited = connection::Limited {
                    limits: &limits,
                    activity: &activity,
                };
                tokio::select! {
                    () = connection::serve(stream, peer, ctx, limited) => {}
                    () = activity.evicted() => {
                        tracing::debug!("closed to admit a new connection (max.connections)");
                    }
                    _ = kill.wait_for(|k| *k) => {}
                }
                drop(guard);
                drop(done);
            }
            .instrument(span),
        );
    }
    tracing::debug!("stopped accepting connections");
}

/// A slot for a just-accepted connection, or `None` when it is refused (dropped, which
/// closes it) or the broker is shutting down.
async fn admit(
    limits: &Arc<Limits>,
    stream: &TcpStream,
    peer: std::net::SocketAddr,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<ConnectionGuard> {
    loop {
        match limits.admit(peer.ip()) {
            Admission::Admitted(guard) => return Some(guard),
            Admission::TooManyFromAddress { cap } => {
                let now = std::time::Instant::now();
                match limits.refused_warnings.admit(peer.ip(), now) {
                    Some(suppressed) => tracing::warn!(
                        %peer, cap, suppressed,
                        "connection refused: max.connections.per.ip reached for this address"
                    ),
                    None => {
                        tracing::debug!(%peer, cap, "connection refused: max.connections.per.ip")
                    }
                }
                return None;
            }
            Admission::Full => {
                // Every connection is busy: wait for one to end or go idle. The
                // accepted socket waits with us; later ones wait in the backlog.
                tokio::select! {
                    () = limits.slot_freed() => {}
                    () = tokio::time::sleep(FULL_RECHECK) => {}
                    _ = shutdown.changed() => return None,
                }
                if *shutdown.borrow() {
                    return None;
                }
                // The client may have given up meanwhile; nothing to admit then.
                if stream.peer_addr().is_err() {
                    return None;
                }
            }
        }
    }
}
