//! The follower fetcher's properties (Kafka's `replica.fetch.*` and `num.replica.fetchers`,
//! with Kafka's names and defaults); see `replication::fetcher`.

use super::{invalid, parse_num, BrokerKey, ConfigError};

/// The properties, with their defaults and help.
pub(super) const KEYS: &[BrokerKey] = &[
    BrokerKey {
        name: "replica.fetch.max.bytes",
        default: "1048576",
        doc: "bytes a follower asks for per partition in each fetch (the first batch comes whole even if larger)",
    },
    BrokerKey {
        name: "replica.fetch.response.max.bytes",
        default: "10485760",
        doc: "bytes a follower asks for in all in each fetch (the first batch comes whole even if larger)",
    },
    BrokerKey {
        name: "replica.fetch.wait.max.ms",
        default: "500",
        doc: "how long the leader may hold a follower's fetch waiting for replica.fetch.min.bytes",
    },
    BrokerKey {
        name: "replica.fetch.min.bytes",
        default: "1",
        doc: "bytes the leader waits for before it answers a follower's fetch",
    },
    BrokerKey {
        name: "replica.fetch.backoff.ms",
        default: "1000",
        doc: "how long a follower waits after a failed fetch (or connection) before it tries again",
    },
    BrokerKey {
        name: "num.replica.fetchers",
        default: "1",
        doc: "fetcher connections per leader broker; a partition's fetcher is chosen by hashing it",
    },
];

/// The follower fetcher's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaFetchConfig {
    /// `replica.fetch.max.bytes`: a fetch's `partition_max_bytes`.
    pub max_bytes: i32,
    /// `replica.fetch.response.max.bytes`: a fetch's `max_bytes`.
    pub response_max_bytes: i32,
    /// `replica.fetch.wait.max.ms`: a fetch's `max_wait_ms`.
    pub wait_max_ms: i32,
    /// `replica.fetch.min.bytes`: a fetch's `min_bytes`.
    pub min_bytes: i32,
    /// `replica.fetch.backoff.ms`.
    pub backoff_ms: u64,
    /// `num.replica.fetchers`: fetchers (connections) per leader broker.
    pub num_fetchers: u32,
}

impl Default for ReplicaFetchConfig {
    fn default() -> Self {
        ReplicaFetchConfig {
            max_bytes: 1024 * 1024,
            response_max_bytes: 10 * 1024 * 1024,
            wait_max_ms: 500,
            min_bytes: 1,
            backoff_ms: 1000,
            num_fetchers: 1,
        }
    }
}

impl ReplicaFetchConfig {
    /// Parses the properties; `get` gives a property's value if set.
    pub(super) fn parse<'a>(
        get: &dyn Fn(&str) -> Option<&'a str>,
    ) -> Result<ReplicaFetchConfig, ConfigError> {
        let value = |name: &str| get(name).unwrap_or_else(|| BrokerKey::default_of(KEYS, name));
        let int = |name: &str, min: i64, max: i64| -> Result<i64, ConfigError> {
            let parsed: i64 = parse_num(name, value(name))?;
            if parsed < min || parsed > max {
                return Err(invalid(
                    name,
                    value(name),
                    format!("must be between {min} and {max}"),
                ));
            }
            Ok(parsed)
        };
        let i32_max = i64::from(i32::MAX);
        // In range by the checks above.
        let to_i32 = |v: i64| i32::try_from(v).unwrap_or(i32::MAX);
        Ok(ReplicaFetchConfig {
            max_bytes: to_i32(int("replica.fetch.max.bytes", 1, i32_max)?),
            response_max_bytes: to_i32(int("replica.fetch.response.max.bytes", 1, i32_max)?),
            // 0 would answer every fetch at once: the follower would poll in a tight loop.
            wait_max_ms: to_i32(int("replica.fetch.wait.max.ms", 1, i32_max)?),
            min_bytes: to_i32(int("replica.fetch.min.bytes", 0, i32_max)?),
            backoff_ms: int("replica.fetch.backoff.ms", 1, i32_max)? as u64,
            num_fetchers: int("num.replica.fetchers", 1, 64)? as u32,
        })
    }

    /// The properties with their effective values, for DescribeConfigs.
    pub fn describe(&self) -> Vec<(String, String)> {
        [
            ("replica.fetch.max.bytes", self.max_bytes.to_string()),
            (
                "replica.fetch.response.max.bytes",
                self.response_max_bytes.to_string(),
            ),
            ("replica.fetch.wait.max.ms", self.wait_max_ms.to_string()),
            ("replica.fetch.min.bytes", self.min_bytes.to_string()),
            ("replica.fetch.backoff.ms", self.backoff_ms.to_string()),
            ("num.replica.fetchers", self.num_fetchers.to_string()),
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

    fn parse(pairs: &[(&str, &str)]) -> Result<ReplicaFetchConfig, ConfigError> {
        let props: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        BrokerConfig::from_properties(&props).map(|c| c.replica_fetch)
    }

    #[test]
    fn defaults_are_kafkas_and_values_are_checked() {
        assert_eq!(parse(&[]).unwrap(), ReplicaFetchConfig::default());
        let set = parse(&[
            ("replica.fetch.max.bytes", "2048"),
            ("replica.fetch.response.max.bytes", "4096"),
            ("replica.fetch.wait.max.ms", "100"),
            ("replica.fetch.min.bytes", "0"),
            ("replica.fetch.backoff.ms", "50"),
            ("num.replica.fetchers", "3"),
        ])
        .unwrap();
        assert_eq!(
            set,
            ReplicaFetchConfig {
                max_bytes: 2048,
                response_max_bytes: 4096,
                wait_max_ms: 100,
                min_bytes: 0,
                backoff_ms: 50,
                num_fetchers: 3,
            }
        );
        for (name, bad) in [
            ("replica.fetch.max.bytes", "0"),
            ("replica.fetch.wait.max.ms", "0"),
            ("replica.fetch.backoff.ms", "-1"),
            ("num.replica.fetchers", "0"),
            ("replica.fetch.response.max.bytes", "3000000000"),
            ("replica.fetch.min.bytes", "x"),
        ] {
            assert!(parse(&[(name, bad)]).is_err(), "{name}={bad}");
        }
        let described = ReplicaFetchConfig::default().describe();
        assert!(described.contains(&("num.replica.fetchers".to_owned(), "1".to_owned())));
        assert_eq!(described.len(), KEYS.len());
    }
}
