//! The monitoring properties: the HTTP admin listener (metrics, health, status and the
//! dashboard; see `crate::admin`), per-partition metric series, the log format and the
//! slow-request log.

use super::{invalid, parse_bool, parse_num, BrokerKey, ConfigError};

/// The properties, with their defaults and help.
pub(super) const KEYS: &[BrokerKey] = &[
    BrokerKey {
        name: "admin.listeners",
        default: "127.0.0.1:9644",
        doc: "HOST:PORT (or http://HOST:PORT) of the HTTP admin listener: /metrics (Prometheus), /v1/health, \
              /v1/ready, /v1/status, /v1/groups and the dashboard at /; port 0 picks a free port; `none` turns it off. \
              Left at its default, a port already taken only logs a warning",
    },
    BrokerKey {
        name: "metrics.partition.series.enabled",
        default: "true",
        doc: "Sluice-specific. export per-partition series (log offsets, sizes, traffic, group lag); false keeps \
              only per-topic and per-group sums, for brokers with very many partitions",
    },
    BrokerKey {
        name: "log.format",
        default: "text",
        doc: "Sluice-specific. text (human-readable) or json (one JSON object per line) for the broker's logs on \
              stderr; RUST_LOG picks what is logged",
    },
    BrokerKey {
        name: "slow.request.threshold.ms",
        default: "0",
        doc: "Sluice-specific. log a warning for every request that takes longer than this from its last byte \
              read to its last byte written, with its API, client id, peer and the time of each stage; 0: off",
    },
];

/// How the broker writes its logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// See the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservabilityConfig {
    /// Where the admin listener binds (`None`: off).
    pub admin_listener: Option<String>,
    /// Whether `admin.listeners` was set (a default that cannot bind only warns).
    pub admin_listener_explicit: bool,
    pub partition_series: bool,
    pub log_format: LogFormat,
    /// 0: off.
    pub slow_request_threshold_ms: u64,
}

impl ObservabilityConfig {
    /// Parses the properties; `get` gives a property's value if set.
    pub(super) fn parse<'a>(
        get: &dyn Fn(&str) -> Option<&'a str>,
    ) -> Result<ObservabilityConfig, ConfigError> {
        let value = |name: &str| get(name).unwrap_or_else(|| BrokerKey::default_of(KEYS, name));
        let admin = value("admin.listeners").trim();
        let admin_listener = if admin.eq_ignore_ascii_case("none") {
            None
        } else {
            let address = admin.strip_prefix("http://").unwrap_or(admin);
            let valid = address
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !valid || address.contains(',') {
                return Err(invalid(
                    "admin.listeners",
                    admin,
                    "must be one HOST:PORT (or http://HOST:PORT), or none",
                ));
            }
            Some(address.to_owned())
        };
        let log_format = match value("log.format").trim().to_ascii_lowercase().as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            _ => {
                return Err(invalid(
                    "log.format",
                    value("log.format"),
                    "must be text or json",
                ))
            }
        };
        Ok(ObservabilityConfig {
            admin_listener,
            admin_listener_explicit: get("admin.listeners").is_some(),
            partition_series: parse_bool(
                "metrics.partition.series.enabled",
                value("metrics.partition.series.enabled"),
            )?,
            log_format,
            slow_request_threshold_ms: parse_num(
                "slow.request.threshold.ms",
                value("slow.request.threshold.ms"),
            )?,
        })
    }

    /// The properties with their effective values, for DescribeConfigs.
    pub fn describe(&self) -> Vec<(String, String)> {
        [
            (
                "admin.listeners",
                self.admin_listener
                    .clone()
                    .unwrap_or_else(|| "none".to_owned()),
            ),
            (
                "metrics.partition.series.enabled",
                self.partition_series.to_string(),
            ),
            (
                "log.format",
                match self.log_format {
                    LogFormat::Text => "text",
                    LogFormat::Json => "json",
                }
                .to_owned(),
            ),
            (
                "slow.request.threshold.ms",
                self.slow_request_threshold_ms.to_string(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::config::BrokerConfig;

    fn parse(pairs: &[(&str, &str)]) -> Result<ObservabilityConfig, ConfigError> {
        let props: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        BrokerConfig::from_properties(&props).map(|c| c.observability)
    }

    #[test]
    fn defaults_serve_the_admin_listener_on_loopback() {
        let config = parse(&[]).unwrap();
        assert_eq!(config.admin_listener.as_deref(), Some("127.0.0.1:9644"));
        assert!(!config.admin_listener_explicit);
        assert!(config.partition_series);
        assert_eq!(config.log_format, LogFormat::Text);
        assert_eq!(config.slow_request_threshold_ms, 0);
    }

    #[test]
    fn the_admin_listener_can_move_or_be_turned_off() {
        let moved = parse(&[("admin.listeners", "http://127.0.0.1:0")]).unwrap();
        assert_eq!(moved.admin_listener.as_deref(), Some("127.0.0.1:0"));
        assert!(moved.admin_listener_explicit);
        assert_eq!(
            parse(&[("admin.listeners", "none")])
                .unwrap()
                .admin_listener,
            None
        );
        for bad in ["9644", "127.0.0.1:x", "a:1,b:2", ":9644"] {
            assert!(parse(&[("admin.listeners", bad)]).is_err(), "{bad}");
        }
    }

    #[test]
    fn log_format_is_text_or_json() {
        assert_eq!(
            parse(&[("log.format", "JSON")]).unwrap().log_format,
            LogFormat::Json
        );
        assert!(parse(&[("log.format", "xml")]).is_err());
    }
}
