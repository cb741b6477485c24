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
//! Each client listener runs its own [`accept_loop`]; the connection limits are shared by
//! all of them. A TLS listener completes the TLS handshake (bounded by
//! `request.read.timeout.ms`) before the connection is served, and takes the client
//! certificate's subject as the connection's principal. [`reload_certificates`] re-reads
//! the listeners' certificates on SIGHUP and when their files change.
//!
//! [`accept_loop`] accepts a connection, then asks `limits` whether to serve it: over
//! its address's cap it is closed at once; at `max.connections` the connection idle the
//! longest is closed to make room, and when none is idle the loop waits for a slot
//! before accepting more (the kernel's backlog holds the rest). Shutdown follows
//! mini-redis: a watch channel tells every task to stop, and each connection holds a
//! clone of a `done` sender, so the receiver sees `None` once the last connection has
//! finished.

mod authorize;
pub mod connection;
pub mod dispatch;
pub mod frame;
pub mod groups;
pub mod limits;
pub mod wire;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tracing::Instrument;

use crate::security::session::Session;
use crate::security::tls::{certificate_principal, TlsContext};
use crate::security::ClientListener;
use crate::state::BrokerState;
use limits::{Admission, ConnectionGuard, Limits};

/// How often the certificate files are looked at for changes.
const CERTIFICATE_POLL: Duration = Duration::from_secs(2);

tokio::task_local! {
    /// The listener of the connection whose task runs now. Answers that name brokers
    /// (Metadata, FindCoordinator, leader hints) give their addresses on this listener,
    /// as Kafka does, so a client that came in over SASL_SSL is sent to SASL_SSL ports.
    static LISTENER: Arc<ClientListener>;
}

/// The name of the listener the current request came in on, if it runs in a
/// connection's task (handlers called from elsewhere, and tests, get `None`).
pub fn current_listener() -> Option<Arc<ClientListener>> {
    LISTENER.try_with(Arc::clone).ok()
}

/// How often a full broker with no idle connection looks again for one to close (a
/// freed slot wakes it at once).
const FULL_RECHECK: Duration = Duration::from_millis(100);

/// Accepts connections until `shutdown` turns true; each connection task holds a clone
/// of `done` and stops at once when `kill` turns true.
pub async fn accept_loop(
    socket: TcpListener,
    listener: Arc<ClientListener>,
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
            accepted = socket.accept() => match accepted {
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
        listener.stats.accepted.fetch_add(1, Ordering::Relaxed);
        let Some(guard) = admit(&limits, &stream, peer, &mut shutdown).await else {
            listener.stats.rejected.fetch_add(1, Ordering::Relaxed);
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
        let listener = listener.clone();
        let stats_listener = listener.clone();
        let span = tracing::info_span!("conn", %peer);
        tokio::spawn(
            async move {
                let activity = guard.activity().clone();
                let limited = connection::Limited {
                    limits: &limits,
                    activity: &activity,
                };
                let serve = serve(stream, peer, ctx, limited, listener.clone());
                tokio::select! {
                    () = LISTENER.scope(listener, serve) => {}
                                        () = activity.evicted() => {
                        tracing::debug!("closed to admit a new connection (max.connections)");
                        stats_listener.stats.evicted.fetch_add(1, Ordering::Relaxed);
                    }
                    _ = kill.wait_for(|k| *k) => {}
                }
                stats_listener.stats.closed.fetch_add(1, Ordering::Relaxed);
                drop(guard);
                drop(done);
            }
            .instrument(span),
        );
    }
    tracing::debug!("stopped accepting connections");
}

/// Serves one accepted connection: plain, or after its TLS handshake.
async fn serve(
    stream: TcpStream,
    peer: std::net::SocketAddr,
    ctx: dispatch::Context,
    limited: connection::Limited<'_>,
    listener: Arc<ClientListener>,
) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
    }
    let Some(tls) = &listener.tls else {
        let session = Session::new(listener.clone(), peer, None);
        let (reader, writer) = stream.into_split();
        return connection::serve(reader, writer, session, ctx, limited).await;
    };
    let handshake =
        tokio::time::timeout(limited.limits.read_timeout, tls.acceptor().accept(stream));
    let stream = match handshake.await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            tracing::info!(%peer, listener = %listener.name, error = %e, "TLS handshake failed");
            listener
                .stats
                .authentication_failures
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        Err(_) => {
            tracing::info!(%peer, listener = %listener.name, "TLS handshake timed out (request.read.timeout.ms)");
            return;
        }
    };
    let principal = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(certificate_principal);
    let session = Session::new(listener.clone(), peer, principal);
    let (reader, writer) = tokio::io::split(stream);
    connection::serve(reader, writer, session, ctx, limited).await
}

/// Re-reads the certificates of `contexts` on SIGHUP (all of them) and when their files
/// change (polled), until shutdown.
pub async fn reload_certificates(
    contexts: Vec<Arc<TlsContext>>,
    mut shutdown: watch::Receiver<bool>,
) {
    if contexts.is_empty() {
        return;
    }
    let mut hangup = match signal(SignalKind::hangup()) {
        Ok(hangup) => Some(hangup),
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGHUP: certificates reload on file changes only");
            None
        }
    };
    loop {
        let forced = tokio::select! {
            Some(()) = async {
                match hangup.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            } => true,
            () = tokio::time::sleep(CERTIFICATE_POLL) => false,
            _ = shutdown.changed() => return,
        };
        for context in &contexts {
            let context = context.clone();
            // File reads and key parsing: off the runtime's threads.
            let _ = tokio::task::spawn_blocking(move || context.reload(forced)).await;
        }
    }
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
