//! The HTTP admin listener (`admin.listeners`, default 127.0.0.1:9644 as Redpanda's admin
//! API): what operators and their tools read, never what clients produce or consume
//! through.
//!
//! - `GET /metrics`: every metric in Prometheus's text format (see `crate::metrics`);
//! - `GET /v1/health`: 200 while the broker runs, 503 once it shuts down;
//! - `GET /v1/ready`: 200 once it serves clients (data directory loaded, listeners
//!   bound, caught up with the cluster's metadata), 503 before and during shutdown;
//! - `GET /v1/status`: version, uptime, node, listeners, data directory usage, counts;
//! - `GET /v1/groups`, `GET /v1/groups/{group}`: consumer lag and estimated delay;
//! - `GET /`: the dashboard, one static page whose script reads `/metrics` every second.
//!
//! It is bound before the data directory is opened, so that health and readiness can
//! be watched through a long recovery: until the broker state exists, the state-backed
//! routes answer 503. Served on its own task with axum; a slow scrape never delays a
//! Kafka request (scrapes read atomics and take the group coordinator's lock once).

pub mod status;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::net::TcpListener;

use crate::state::BrokerState;

/// Where the broker is in its life, as health and readiness report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Opening the data directory (recovery) and binding listeners.
    Starting = 0,
    /// A cluster member waiting to catch up with the metadata before serving.
    CatchingUp = 1,
    /// Serving clients.
    Serving = 2,
    /// Shutting down (answering what was read, closing logs).
    ShuttingDown = 3,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::CatchingUp => "catching_up",
            Phase::Serving => "serving",
            Phase::ShuttingDown => "shutting_down",
        }
    }
}

/// The broker's phase, shared by the broker's tasks and the admin listener.
#[derive(Debug)]
pub struct Lifecycle {
    phase: AtomicU8,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle {
            phase: AtomicU8::new(Phase::Starting as u8),
        }
    }
}

impl Lifecycle {
    pub fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Acquire) {
            0 => Phase::Starting,
            1 => Phase::CatchingUp,
            2 => Phase::Serving,
            _ => Phase::ShuttingDown,
        }
    }

    /// Moves to `phase`; shutting down is final.
    pub fn set(&self, phase: Phase) {
        let _ = self
            .phase
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |current| {
                (current != Phase::ShuttingDown as u8).then_some(phase as u8)
            });
    }
}

/// What the routes read: the phase from the start, the state once it exists. The state
/// is held weakly: the broker's shutdown waits for the last strong reference to its
/// state (and data directory lock), which an HTTP connection must not keep alive.
#[derive(Default)]
pub struct Shared {
    pub lifecycle: Arc<Lifecycle>,
    state: OnceLock<Weak<BrokerState>>,
}

impl Shared {
    pub fn new(lifecycle: Arc<Lifecycle>) -> Shared {
        Shared {
            lifecycle,
            state: OnceLock::new(),
        }
    }

    /// Called once the broker state exists.
    pub fn set_state(&self, state: &Arc<BrokerState>) {
        let _ = self.state.set(Arc::downgrade(state));
    }

    /// The state, while the broker has one.
    pub fn state(&self) -> Option<Arc<BrokerState>> {
        self.state.get().and_then(Weak::upgrade)
    }
}

/// Binds `address`; a default address already taken is only a warning (a second broker
/// on one machine for a test, say), a configured one is an error.
pub async fn bind(address: &str, explicit: bool) -> Result<Option<TcpListener>, std::io::Error> {
    match TcpListener::bind(address).await {
        Ok(listener) => Ok(Some(listener)),
        Err(e) if !explicit => {
            tracing::warn!(
                %address,
                error = %e,
                "admin listener not started (set admin.listeners to another address, or none)"
            );
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Serves the routes on `listener` until the task is aborted.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let app = Router::new()
        .route("/", get(dashboard))
        .route("/metrics", get(metrics))
        .route("/v1/health", get(health))
        .route("/v1/ready", get(ready))
        .route("/v1/status", get(status::status))
        .route("/v1/groups", get(status::groups))
        .route("/v1/groups/{group}", get(group))
        .with_state(shared);
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "admin listener stopped");
    }
}

/// The address a bound listener took (port 0 becomes the real port).
pub fn local_addr(listener: &TcpListener) -> Option<SocketAddr> {
    listener.local_addr().ok()
}

type Shared_ = State<Arc<Shared>>;

fn unavailable(phase: Phase) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "status": phase.name(), "error": "the broker is not serving yet" })),
    )
        .into_response()
}

/// `/v1/health`: alive until shutdown begins.
pub fn health_of(shared: &Shared) -> (StatusCode, serde_json::Value) {
    let phase = shared.lifecycle.phase();
    let alive = phase != Phase::ShuttingDown;
    let code = if alive {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, json!({ "alive": alive, "status": phase.name() }))
}

/// `/v1/ready`: ready while serving clients.
pub fn readiness_of(shared: &Shared) -> (StatusCode, serde_json::Value) {
    let phase = shared.lifecycle.phase();
    let ready = phase == Phase::Serving && shared.state().is_some();
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let reason = match phase {
        Phase::Starting => Some("opening the data directory"),
        Phase::CatchingUp => Some("catching up with the cluster's metadata"),
        Phase::ShuttingDown => Some("shutting down"),
        Phase::Serving => None,
    };
    (
        code,
        json!({ "ready": ready, "status": phase.name(), "reason": reason }),
    )
}

async fn health(State(shared): Shared_) -> Response {
    let (code, body) = health_of(&shared);
    (code, Json(body)).into_response()
}

async fn ready(State(shared): Shared_) -> Response {
    let (code, body) = readiness_of(&shared);
    (code, Json(body)).into_response()
}

async fn metrics(State(shared): Shared_) -> Response {
    let Some(state) = shared.state() else {
        return unavailable(shared.lifecycle.phase());
    };
    let body = crate::metrics::export::render(&state).await;
    (
        [(header::CONTENT_TYPE, crate::metrics::export::CONTENT_TYPE)],
        body,
    )
        .into_response()
}

async fn group(State(shared): Shared_, Path(group): Path<String>) -> Response {
    status::group(State(shared), group).await
}

/// The dashboard page: HTML, CSS and script in one file, compiled in.
const DASHBOARD: &str = include_str!("dashboard.html");

async fn dashboard() -> Html<&'static str> {
    Html(DASHBOARD)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_and_readiness_follow_the_phases() {
        let shared = Shared::new(Arc::default());
        // Starting, no state yet: alive, not ready.
        assert_eq!(health_of(&shared).0, StatusCode::OK);
        let (code, body) = readiness_of(&shared);
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["status"], "starting");
        // Serving but the state is gone (or not set): still not ready.
        shared.lifecycle.set(Phase::Serving);
        assert_eq!(readiness_of(&shared).0, StatusCode::SERVICE_UNAVAILABLE);
        let dir = tempfile::tempdir().unwrap();
        let props = [("log.dirs".to_owned(), dir.path().display().to_string())].into();
        let config = crate::config::BrokerConfig::from_properties(&props).unwrap();
        let (registry, _) = crate::topics::TopicRegistry::load(
            dir.path(),
            sluice_storage::Flusher::start("test").unwrap(),
            config.topic_defaults.clone(),
            config.flush_mode,
            true,
            crate::topics::Layout::WholeTopics,
        )
        .unwrap();
        let state = Arc::new(BrokerState::for_tests(config, registry));
        shared.set_state(&state);
        assert_eq!(readiness_of(&shared).0, StatusCode::OK);
        // Shutting down is final: neither alive nor ready, whatever comes after.
        shared.lifecycle.set(Phase::ShuttingDown);
        shared.lifecycle.set(Phase::Serving);
        assert_eq!(health_of(&shared).0, StatusCode::SERVICE_UNAVAILABLE);
        let (code, body) = readiness_of(&shared);
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["reason"], "shutting down");
        // The admin listener does not keep the state alive.
        drop(state);
        assert!(shared.state().is_none());
    }
}
