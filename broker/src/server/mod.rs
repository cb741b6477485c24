//! The network side: the listener, connection tasks and their limits.
//!
//! - `frame`: request framing and the fixed header prefix (size-checked, allocation-free).
//! - `dispatch`: header and version rules, decoding, handler calls, encoding.
//! - `groups`: dispatch of the group APIs to the coordinator (see `crate::groups`).
//! - `wire`: response framing with record bytes spliced, not copied.
//! - `connection`: one task per connection, pipelined and ordered.
//!
//! [`accept_loop`] caps concurrent connections with a semaphore (`max.connections`): at
//! the cap it stops accepting until a connection ends, so the kernel's backlog holds the
//! rest. Shutdown follows mini-redis: a watch channel tells every task to stop, and each
//! connection holds a clone of a `done` sender, so the receiver sees `None` once the
//! last connection has finished.

pub mod connection;
pub mod dispatch;
pub mod frame;
pub mod groups;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Semaphore};
use tracing::Instrument;

use crate::state::BrokerState;

/// Accepts connections until `shutdown` turns true; each connection task holds a clone
/// of `done` and stops at once when `kill` turns true.
pub async fn accept_loop(
    listener: TcpListener,
    state: Arc<BrokerState>,
    mut shutdown: watch::Receiver<bool>,
    kill: watch::Receiver<bool>,
    done: mpsc::Sender<()>,
) {
    let limit = Arc::new(Semaphore::new(state.config.max_connections));
    loop {
        if *shutdown.borrow() {
            break;
        }
        let permit = tokio::select! {
            permit = limit.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            _ = shutdown.changed() => break,
        };
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
        let ctx = dispatch::Context {
            state: state.clone(),
            shutdown: shutdown.clone(),
            peer,
        };
        let mut kill = kill.clone();
        let done = done.clone();
        let span = tracing::info_span!("conn", %peer);
        tokio::spawn(
            async move {
                tokio::select! {
                    () = connection::serve(stream, peer, ctx) => {}
                    _ = kill.wait_for(|k| *k) => {}
                }
                drop(permit);
                drop(done);
            }
            .instrument(span),
        );
    }
    tracing::debug!("stopped accepting connections");
}
