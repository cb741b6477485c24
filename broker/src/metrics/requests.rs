//! Per-API request metrics: how many requests of each API and version, how long each
//! stage took, and which error codes the responses carried.
//!
//! Process-wide, like Kafka's request metrics (a static registry): the connection tasks
//! record into [`REQUESTS`] without any handle to pass around, and brokers that share a
//! process (some tests) share the counts. Everything is a fixed array of atomics indexed
//! by API key, version and error code, so recording is a few relaxed adds and never
//! allocates or locks.
//!
//! A request's stages, as Kafka splits `TotalTimeMs`:
//! - `queue`: from its last bytes read until its handling starts (behind the earlier
//!   requests of its connection);
//! - `local`: its handler (decoding, the append or the read, encoding);
//! - `response_queue`: its reply waiting behind the earlier replies of its connection;
//! - `remote`: its reply waiting for something else (acks=all durability or
//!   replication, a fetch long poll, a delayed failed login);
//! - `send`: writing the reply to the socket;
//! - `total`: all of it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;
use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use sluice_storage::stats::{Histogram, HistogramSnapshot, LATENCY_BOUNDS_MICROS};

/// API keys below this are counted (Kafka's are all below 100).
const API_SLOTS: usize = 128;
/// Versions below this are counted per version; later ones share the last slot.
const VERSION_SLOTS: usize = 24;
/// Error codes from -1 (UNKNOWN_SERVER_ERROR) up to `ERROR_SLOTS - 2`.
const ERROR_SLOTS: usize = 200;

/// The stages of a request (see the module docs), in export order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Total,
    Queue,
    Local,
    ResponseQueue,
    Remote,
    Send,
}

impl Stage {
    pub const ALL: [Stage; 6] = [
        Stage::Total,
        Stage::Queue,
        Stage::Local,
        Stage::ResponseQueue,
        Stage::Remote,
        Stage::Send,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Stage::Total => "total",
            Stage::Queue => "queue",
            Stage::Local => "local",
            Stage::ResponseQueue => "response_queue",
            Stage::Remote => "remote",
            Stage::Send => "send",
        }
    }
}

/// One API's counters.
struct ApiMetrics {
    per_version: [AtomicU64; VERSION_SLOTS],
    stages: [Histogram; Stage::ALL.len()],
    errors: Box<[AtomicU64]>,
}

impl ApiMetrics {
    fn new() -> ApiMetrics {
        ApiMetrics {
            per_version: std::array::from_fn(|_| AtomicU64::new(0)),
            stages: std::array::from_fn(|_| Histogram::new(LATENCY_BOUNDS_MICROS)),
            errors: (0..ERROR_SLOTS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

/// See the module docs.
pub struct RequestMetrics {
    apis: Box<[ApiMetrics]>,
}

/// The process's request metrics.
pub static REQUESTS: LazyLock<RequestMetrics> = LazyLock::new(|| RequestMetrics {
    apis: (0..API_SLOTS).map(|_| ApiMetrics::new()).collect(),
});

/// How long each stage of one request took.
#[derive(Debug, Clone, Copy, Default)]
pub struct StageTimes {
    pub queue: Duration,
    pub local: Duration,
    pub response_queue: Duration,
    pub remote: Duration,
    pub send: Duration,
}

impl StageTimes {
    pub fn total(&self) -> Duration {
        self.queue + self.local + self.response_queue + self.remote + self.send
    }

    fn of(&self, stage: Stage) -> Duration {
        match stage {
            Stage::Total => self.total(),
            Stage::Queue => self.queue,
            Stage::Local => self.local,
            Stage::ResponseQueue => self.response_queue,
            Stage::Remote => self.remote,
            Stage::Send => self.send,
        }
    }
}

/// What one API did, read at scrape time.
pub struct ApiSnapshot {
    pub api: ApiKey,
    /// (version, requests), versions that had any.
    pub versions: Vec<(i16, u64)>,
    pub stages: Vec<(Stage, HistogramSnapshot)>,
    /// (error code, responses' count of it), codes that occurred.
    pub errors: Vec<(i16, u64)>,
}

impl RequestMetrics {
    fn slot(&self, api: ApiKey) -> Option<&ApiMetrics> {
        self.apis.get(usize::try_from(api as i16).ok()?)
    }

    /// Counts a request whose reply went out, with its stages.
    pub fn record(&self, api: ApiKey, version: i16, times: &StageTimes) {
        let Some(metrics) = self.slot(api) else {
            return;
        };
        let version = usize::try_from(version).unwrap_or(0).min(VERSION_SLOTS - 1);
        metrics.per_version[version].fetch_add(1, Ordering::Relaxed);
        for (histogram, stage) in metrics.stages.iter().zip(Stage::ALL) {
            histogram.record_duration(times.of(stage));
        }
    }

    /// Counts one occurrence of a non-zero error code in a response of `api`.
    pub fn record_error(&self, api: ApiKey, code: i16) {
        if code == 0 {
            return;
        }
        let Some(metrics) = self.slot(api) else {
            return;
        };
        let slot = usize::try_from(i32::from(code) + 1)
            .ok()
            .filter(|s| *s < ERROR_SLOTS);
        if let Some(slot) = slot {
            metrics.errors[slot].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The APIs that saw requests or errors.
    pub fn snapshot(&self) -> Vec<ApiSnapshot> {
        ApiKey::iter()
            .filter_map(|api| {
                let metrics = self.slot(api)?;
                let versions: Vec<(i16, u64)> = metrics
                    .per_version
                    .iter()
                    .enumerate()
                    .map(|(v, c)| (v as i16, c.load(Ordering::Relaxed)))
                    .filter(|(_, c)| *c > 0)
                    .collect();
                let errors: Vec<(i16, u64)> = metrics
                    .errors
                    .iter()
                    .enumerate()
                    .map(|(slot, c)| (slot as i16 - 1, c.load(Ordering::Relaxed)))
                    .filter(|(_, c)| *c > 0)
                    .collect();
                if versions.is_empty() && errors.is_empty() {
                    return None;
                }
                let stages = Stage::ALL
                    .iter()
                    .zip(metrics.stages.iter())
                    .map(|(stage, h)| (*stage, h.snapshot()))
                    .collect();
                Some(ApiSnapshot {
                    api,
                    versions,
                    stages,
                    errors,
                })
            })
            .collect()
    }
}

/// Kafka's name of an error code (`NOT_LEADER_OR_FOLLOWER`), as its error metrics label
/// them.
pub fn error_name(code: i16) -> String {
    use kafka_protocol::error::ResponseError;
    match ResponseError::try_from_code(code) {
        Some(ResponseError::Unknown(_)) | None => format!("UNKNOWN_CODE_{code}"),
        Some(error) => screaming_snake(&format!("{error:?}")),
    }
}

/// `NotLeaderOrFollower` -> `NOT_LEADER_OR_FOLLOWER`.
fn screaming_snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names_are_kafkas() {
        assert_eq!(error_name(6), "NOT_LEADER_OR_FOLLOWER");
        assert_eq!(error_name(-1), "UNKNOWN_SERVER_ERROR");
        assert_eq!(error_name(29), "TOPIC_AUTHORIZATION_FAILED");
        assert_eq!(error_name(32000), "UNKNOWN_CODE_32000");
    }

    #[test]
    fn requests_and_errors_are_counted_per_api() {
        let metrics = RequestMetrics {
            apis: (0..API_SLOTS).map(|_| ApiMetrics::new()).collect(),
        };
        let times = StageTimes {
            local: Duration::from_micros(300),
            send: Duration::from_micros(40),
            ..StageTimes::default()
        };
        metrics.record(ApiKey::Produce, 9, &times);
        metrics.record(ApiKey::Produce, 9, &times);
        metrics.record(ApiKey::Produce, 99, &times);
        metrics.record_error(ApiKey::Produce, 2);
        metrics.record_error(ApiKey::Produce, 0);
        metrics.record_error(ApiKey::Produce, -1);
        let snapshot = metrics.snapshot();
        assert_eq!(snapshot.len(), 1);
        let produce = &snapshot[0];
        assert_eq!(produce.api, ApiKey::Produce);
        assert_eq!(
            produce.versions,
            vec![(9, 2), (VERSION_SLOTS as i16 - 1, 1)]
        );
        assert_eq!(produce.errors, vec![(-1, 1), (2, 1)]);
        let (stage, total) = &produce.stages[0];
        assert_eq!(*stage, Stage::Total);
        assert_eq!(total.count, 3);
        assert_eq!(total.sum, 3 * 340);
    }
}
