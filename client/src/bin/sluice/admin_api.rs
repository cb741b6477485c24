//! The broker's HTTP admin API (`admin.listeners`, default port 9644): status and group
//! lag with the estimated delay, which the Kafka protocol does not carry.
//!
//! Its address is `--admin-url` (or `$SLUICE_ADMIN_URL`); without one, the first
//! bootstrap server's host on port 9644. Group figures come from the group's
//! coordinator: in a cluster, point `--admin-url` at it. Plain HTTP, one GET per call, with a short
//! timeout: an unreachable API (a Kafka broker, a firewalled port) is an error the
//! caller may treat as "not available".

use std::time::Duration;

use anyhow::{anyhow, Context, Result};

use crate::settings::Settings;

/// The admin listener's default port (Redpanda's admin API uses it too).
const DEFAULT_PORT: u16 = 9644;
const TIMEOUT: Duration = Duration::from_secs(5);
/// A port that drops packets (a firewall) costs at most this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Where the admin API is.
#[derive(Debug, Clone)]
pub struct AdminApi {
    base: String,
}

impl AdminApi {
    pub fn new(settings: &Settings) -> AdminApi {
        let base = match &settings.admin_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => {
                let first = settings.bootstrap().split(',').next().unwrap_or("").trim();
                let host = match first.rsplit_once(':') {
                    Some((host, _)) => host,
                    None => first,
                };
                format!("http://{host}:{DEFAULT_PORT}")
            }
        };
        AdminApi { base }
    }

    /// GETs `path` and parses the JSON answer; an HTTP error status is an error with the
    /// answer's `error` field when it has one.
    pub async fn get(&self, path: &str) -> Result<serde_json::Value> {
        let url = format!("{}{path}", self.base);
        let shown = url.clone();
        let value = tokio::task::spawn_blocking(move || -> Result<serde_json::Value> {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .timeout_global(Some(TIMEOUT))
                .timeout_connect(Some(CONNECT_TIMEOUT))
                .http_status_as_error(false)
                .build()
                .into();
            let mut response = agent.get(&url).call()?;
            let status = response.status();
            let body: serde_json::Value = response
                .body_mut()
                .read_json()
                .context("the answer is not JSON")?;
            if !status.is_success() {
                let message = body
                    .get("error")
                    .and_then(|e| e.as_str())
                    .map(str::to_owned)
                    .unwrap_or_else(|| body.to_string());
                return Err(anyhow!("HTTP {status}: {message}"));
            }
            Ok(body)
        })
        .await
        .context("admin API call")?;
        value.with_context(|| format!("admin API at {shown}"))
    }
}
