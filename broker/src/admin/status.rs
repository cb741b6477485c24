//! `/v1/status` and `/v1/groups`: the broker and its groups in JSON, for `sluice broker
//! status`, `sluice group describe` and scripts.

use std::path::Path;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::Shared;
use crate::metrics::groups;

/// The data directory's filesystem.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    pub free: u64,
    pub total: u64,
}

/// Free and total bytes of the filesystem holding `dir` (None if it cannot be read).
pub fn data_dir_usage(dir: &Path) -> Option<Usage> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs fills the zeroed struct it is given; `path` is a valid C string
    // that outlives the call.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
        return None;
    }
    let block = stat.f_frsize as u64;
    Some(Usage {
        free: stat.f_bavail as u64 * block,
        total: stat.f_blocks as u64 * block,
    })
}

pub async fn status(State(shared): State<Arc<Shared>>) -> Response {
    let phase = shared.lifecycle.phase();
    let Some(state) = shared.state() else {
        return super::unavailable(phase);
    };
    let topics = state.topics.list();
    let partitions: usize = topics.iter().map(|t| t.partition_count()).sum();
    let size: u64 = topics
        .iter()
        .flat_map(|t| {
            t.partitions()
                .iter()
                .map(|p| p.log.size_bytes())
                .collect::<Vec<_>>()
        })
        .sum();
    let usage = data_dir_usage(&state.config.data_dir);
    let listeners: Vec<_> = state
        .listeners
        .iter()
        .map(|l| {
            json!({
                "name": l.name,
                "security_protocol": l.protocol.to_string(),
                "address": l.local_addr.to_string(),
                "advertised": format!("{}:{}", l.advertised_host, l.advertised_port),
                "connections_open": l.stats.open(),
            })
        })
        .collect();
    let groups = state.groups.read(|c| c.groups().count()).await;
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "status": phase.name(),
        "node_id": state.node_id,
        "cluster_id": state.cluster_id,
        "uptime_seconds": state.metrics.started.elapsed().as_secs_f64(),
        "process_roles": state.config.cluster.roles.to_string(),
        "listeners": listeners,
        "data_dir": {
            "path": state.config.data_dir.display().to_string(),
            "log_bytes": size,
            "filesystem_free_bytes": usage.map(|u| u.free),
            "filesystem_total_bytes": usage.map(|u| u.total),
        },
        "topics": topics.iter().filter(|t| !t.is_internal()).count(),
        "internal_topics": topics.iter().filter(|t| t.is_internal()).count(),
        "partitions": partitions,
        "groups": groups,
        "process": {
            "resident_memory_bytes": crate::metrics::process::resident_bytes(),
            "open_fds": crate::metrics::process::open_fds(),
        },
    }))
    .into_response()
}

pub async fn groups(State(shared): State<Arc<Shared>>) -> Response {
    let Some(state) = shared.state() else {
        return super::unavailable(shared.lifecycle.phase());
    };
    let (groups, now) = groups::sample_and_observe(&state).await;
    let rows: Vec<_> = groups
        .iter()
        .map(|g| {
            let lags = state.metrics.consume_rates.lag_of(&state, g, now);
            json!({
                "group": g.group,
                "state": g.state,
                "members": g.members,
                "generation": g.generation,
                "lag": lags.iter().filter_map(|l| l.lag).sum::<i64>(),
                "consume_rate": lags.iter().filter_map(|l| l.consume_rate).sum::<f64>(),
                "delay_seconds": lags.iter().filter_map(|l| l.delay_seconds).reduce(f64::max),
            })
        })
        .collect();
    Json(json!({ "groups": rows })).into_response()
}

pub async fn group(State(shared): State<Arc<Shared>>, group: String) -> Response {
    let Some(state) = shared.state() else {
        return super::unavailable(shared.lifecycle.phase());
    };
    let (groups, now) = groups::sample_and_observe(&state).await;
    let Some(found) = groups.iter().find(|g| g.group == group) else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": format!("group {group:?} is not coordinated by this broker") })),
        )
            .into_response();
    };
    let partitions = state.metrics.consume_rates.lag_of(&state, found, now);
    Json(json!({
        "group": found.group,
        "state": found.state,
        "members": found.members,
        "generation": found.generation,
        "rate_window_seconds": groups::RATE_WINDOW.as_secs(),
        "partitions": partitions,
    }))
    .into_response()
}
