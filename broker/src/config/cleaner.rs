//! The log cleaner's broker properties (Kafka's `log.cleaner.*`, with Kafka's names,
//! defaults and bounds); see `cleaner`. All but `log.cleaner.enable` are dynamic broker
//! configs (Kafka's too): the cleaner reads them at every pass.

use super::{invalid, parse_bool, parse_num, BrokerKey, ConfigError};

/// The properties, with their defaults and help.
pub(super) const KEYS: &[BrokerKey] = &[
    BrokerKey {
        name: "log.cleaner.enable",
        default: "true",
        doc: "run the log cleaner, which compacts topics whose cleanup.policy includes compact",
    },
    BrokerKey {
        name: "log.cleaner.threads",
        default: "1",
        doc: "logs cleaned at the same time",
    },
    BrokerKey {
        name: "log.cleaner.dedupe.buffer.size",
        default: "134217728",
        doc: "bytes of the offset map (24 per key) shared by the cleaner threads: a clean covers \
              at most as many keys as fit, the next clean goes on from there",
    },
    BrokerKey {
        name: "log.cleaner.io.max.bytes.per.second",
        default: "1.7976931348623157E308",
        doc: "bytes a second all cleaner threads together read and write at most (default: unlimited)",
    },
    BrokerKey {
        name: "log.cleaner.backoff.ms",
        default: "15000",
        doc: "how long the cleaner sleeps when no log needs cleaning",
    },
];

/// The cleaner's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct CleanerConfig {
    /// `log.cleaner.enable`.
    pub enable: bool,
    /// `log.cleaner.threads`.
    pub threads: usize,
    /// `log.cleaner.dedupe.buffer.size`: for all threads together.
    pub dedupe_buffer_bytes: usize,
    /// `log.cleaner.io.max.bytes.per.second`; `None`: unlimited.
    pub io_max_bytes_per_sec: Option<u64>,
    /// `log.cleaner.backoff.ms`.
    pub backoff_ms: u64,
}

impl Default for CleanerConfig {
    fn default() -> Self {
        CleanerConfig {
            enable: true,
            threads: 1,
            dedupe_buffer_bytes: 128 << 20,
            io_max_bytes_per_sec: None,
            backoff_ms: 15_000,
        }
    }
}

impl CleanerConfig {
    /// Parses the properties; `get` gives a property's value if set.
    pub(super) fn parse<'a>(
        get: &dyn Fn(&str) -> Option<&'a str>,
    ) -> Result<CleanerConfig, ConfigError> {
        let value = |name: &str| get(name).unwrap_or_else(|| BrokerKey::default_of(KEYS, name));
        let int = |name: &str, min: i64, max: i64| -> Result<i64, ConfigError> {
            let parsed: i64 = parse_num(name, value(name))?;
            if parsed < min || parsed > max {
                return Err(invalid(
                    name,
                    value(name),
                    format!("Value must be between {min} and {max}"),
                ));
            }
            Ok(parsed)
        };
        let rate_name = "log.cleaner.io.max.bytes.per.second";
        let rate: f64 = parse_num(rate_name, value(rate_name))?;
        if rate.is_nan() || rate <= 0.0 {
            return Err(invalid(
                rate_name,
                value(rate_name),
                "Value must be above 0",
            ));
        }
        Ok(CleanerConfig {
            enable: parse_bool("log.cleaner.enable", value("log.cleaner.enable"))?,
            // Kafka: at least 0 threads (0 runs none); Sluice runs at least one when
            // enabled and caps them at the cores a machine plausibly has.
            threads: int("log.cleaner.threads", 0, 64)? as usize,
            // Kafka's lower bound: one entry per thread at least; enough for 1,000 keys.
            dedupe_buffer_bytes: int(
                "log.cleaner.dedupe.buffer.size",
                24 * 1024,
                i64::from(i32::MAX),
            )? as usize,
            io_max_bytes_per_sec: (rate < u64::MAX as f64)
                .then_some(rate as u64)
                .filter(|r| *r > 0),
            backoff_ms: int("log.cleaner.backoff.ms", 0, i64::from(i32::MAX))? as u64,
        })
    }

    /// The properties with their effective values, for DescribeConfigs.
    pub fn describe(&self) -> Vec<(String, String)> {
        vec![
            ("log.cleaner.enable".to_owned(), self.enable.to_string()),
            ("log.cleaner.threads".to_owned(), self.threads.to_string()),
            (
                "log.cleaner.dedupe.buffer.size".to_owned(),
                self.dedupe_buffer_bytes.to_string(),
            ),
            (
                "log.cleaner.io.max.bytes.per.second".to_owned(),
                match self.io_max_bytes_per_sec {
                    Some(rate) => rate.to_string(),
                    None => "1.7976931348623157E308".to_owned(),
                },
            ),
            (
                "log.cleaner.backoff.ms".to_owned(),
                self.backoff_ms.to_string(),
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(props: &[(&str, &str)]) -> Result<CleanerConfig, ConfigError> {
        CleanerConfig::parse(&|name| props.iter().find(|(k, _)| *k == name).map(|(_, v)| *v))
    }

    #[test]
    fn kafkas_defaults_and_bounds() {
        assert_eq!(parse(&[]).unwrap(), CleanerConfig::default());
        let set = parse(&[
            ("log.cleaner.io.max.bytes.per.second", "1048576"),
            ("log.cleaner.threads", "2"),
        ])
        .unwrap();
        assert_eq!(set.io_max_bytes_per_sec, Some(1 << 20));
        assert_eq!(set.threads, 2);
        assert!(parse(&[("log.cleaner.io.max.bytes.per.second", "0")]).is_err());
        assert!(parse(&[("log.cleaner.dedupe.buffer.size", "10")]).is_err());
        assert!(parse(&[("log.cleaner.threads", "-1")]).is_err());
    }
}
