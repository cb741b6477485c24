//! Topic-level configuration: the Kafka topic configs Sluice understands, their broker-level
//! defaults, validation, and the conversion to the storage crate's [`LogConfig`].
//!
//! One table ([`KEYS`]) names every topic config with the broker property that supplies
//! its default (`retention.ms` <- `log.retention.ms`, ...), its type as DescribeConfigs
//! reports it, and a parser and printer. CreateTopics, IncrementalAlterConfigs,
//! DescribeConfigs and the broker's own config all go through that table, so a key is
//! known everywhere or nowhere.
//!
//! A topic stores only its overrides (name -> string value, as the client sent them);
//! the effective [`TopicConfig`] is the broker defaults with the overrides applied.

use std::collections::BTreeMap;

use sluice_storage::batch::TimestampType;
use sluice_storage::{FlushPolicy, LogConfig};

/// Default of the broker's `message.max.decompressed.bytes`: 64 MiB, generous for any
/// legitimate batch (Kafka's default `message.max.bytes` is 1 MiB compressed).
pub const DEFAULT_MAX_DECOMPRESSED_BYTES: i64 = 64 << 20;

/// How a broker flushes appended data to disk (`log.flush.policy`, Sluice-specific).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushMode {
    /// Leave write-back to the OS unless `flush.messages` / `flush.ms` ask for more
    /// (Kafka's behaviour).
    Os,
    /// Every append is fsynced (group commit) before acks=all is answered.
    Always,
    /// Flush by `log.flush.interval.messages` / `log.flush.interval.ms`.
    Interval,
}

impl FlushMode {
    pub fn parse(value: &str) -> Result<FlushMode, String> {
        match value.trim().to_ascii_lowercase().as_str() {
            "os" => Ok(FlushMode::Os),
            "always" => Ok(FlushMode::Always),
            "interval" => Ok(FlushMode::Interval),
            other => Err(format!(
                "unknown flush policy {other:?} (expected os, always or interval)"
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FlushMode::Os => "os",
            FlushMode::Always => "always",
            FlushMode::Interval => "interval",
        }
    }
}

/// The effective configuration of one topic. Values use Kafka's conventions: `-1` means
/// "no limit" for retention, `i64::MAX` means "never" for flush intervals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicConfig {
    /// `cleanup.policy`: normalized comma-separated list of `delete` / `compact`.
    pub cleanup_policy: String,
    pub retention_ms: i64,
    pub retention_bytes: i64,
    pub segment_bytes: i64,
    pub segment_ms: i64,
    pub segment_index_bytes: i64,
    pub index_interval_bytes: i64,
    pub max_message_bytes: i64,
    pub timestamp_type: TimestampType,
    /// `message.timestamp.before.max.ms` (KIP-937).
    pub timestamp_before_max_ms: i64,
    /// `message.timestamp.after.max.ms` (KIP-937).
    pub timestamp_after_max_ms: i64,
    /// The broker's `message.max.decompressed.bytes` (Sluice-specific, not a topic
    /// config): most bytes a produced compressed batch may decompress to for its check.
    pub max_decompressed_bytes: i64,
    pub flush_messages: i64,
    pub flush_ms: i64,
    /// The fewest in-sync replicas (leader included) with which an acks=all produce is
    /// accepted and the high watermark advances. At least 1.
    pub min_insync_replicas: i64,
    /// `unclean.leader.election.enable`: the controller may elect an out-of-sync replica
    /// when no in-sync one is available (read by the controller from the topic's
    /// override, else from its own broker default).
    pub unclean_leader_election_enable: bool,
    pub compression_type: String,
}

impl Default for TopicConfig {
    /// Kafka's defaults.
    fn default() -> Self {
        TopicConfig {
            cleanup_policy: "delete".to_owned(),
            retention_ms: 7 * 24 * 60 * 60 * 1000,
            retention_bytes: -1,
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 60 * 60 * 1000,
            segment_index_bytes: 10 * 1024 * 1024,
            index_interval_bytes: 4096,
            max_message_bytes: 1_048_588,
            timestamp_type: TimestampType::CreateTime,
            // Kafka 4.x's defaults: no bound in the past, one hour in the future.
            timestamp_before_max_ms: i64::MAX,
            timestamp_after_max_ms: 3_600_000,
            max_decompressed_bytes: DEFAULT_MAX_DECOMPRESSED_BYTES,
            flush_messages: i64::MAX,
            flush_ms: i64::MAX,
            min_insync_replicas: 1,
            unclean_leader_election_enable: false,
            compression_type: "producer".to_owned(),
        }
    }
}

impl TopicConfig {
    /// These defaults with `overrides` (topic config name -> value) applied.
    pub fn with_overrides(&self, overrides: &BTreeMap<String, String>) -> Result<Self, String> {
        let mut config = self.clone();
        for (name, value) in overrides {
            let key = find(name).ok_or_else(|| format!("Unknown topic config name: {name}"))?;
            (key.set)(&mut config, value)
                .map_err(|e| format!("Invalid value {value} for configuration {name}: {e}"))?;
        }
        Ok(config)
    }

    /// Whether retention may delete segments (`cleanup.policy` contains `delete`).
    pub fn deletes(&self) -> bool {
        self.cleanup_policy.split(',').any(|p| p == "delete")
    }

    /// The storage configuration for a partition of this topic.
    ///
    /// The flush policy: `always` when the broker's `log.flush.policy` is `always` or the
    /// topic's `flush.messages` is 1. Kafka with `flush.messages=1` fsyncs inside every
    /// append, before the produce is answered; Sluice's `always` gives the same guarantee
    /// for acks=all (the answer waits for the fsync) with group commit instead of one
    /// fsync per batch. Otherwise `flush.messages` / `flush.ms` make the flusher sync in
    /// the background, and with neither set write-back is left to the OS.
    pub fn to_log_config(&self, flush: FlushMode) -> LogConfig {
        let flush_messages =
            (self.flush_messages != i64::MAX).then_some(self.flush_messages as u64);
        let flush_ms = (self.flush_ms != i64::MAX).then_some(self.flush_ms as u64);
        let flush = match flush {
            FlushMode::Always => FlushPolicy::Always,
            _ if flush_messages == Some(1) => FlushPolicy::Always,
            // Kafka's `flush.messages` / `flush.ms` apply whatever the mode; with neither
            // set an interval policy degenerates to leaving write-back to the OS.
            FlushMode::Os | FlushMode::Interval => {
                if flush_messages.is_none() && flush_ms.is_none() {
                    FlushPolicy::Os
                } else {
                    FlushPolicy::Interval {
                        messages: flush_messages,
                        ms: flush_ms,
                    }
                }
            }
        };
        LogConfig {
            segment_bytes: self.segment_bytes.max(1) as u64,
            segment_ms: Some(self.segment_ms),
            index_interval_bytes: self.index_interval_bytes.max(0) as u64,
            segment_index_bytes: self.segment_index_bytes.max(1) as u64,
            retention_ms: (self.retention_ms >= 0).then_some(self.retention_ms),
            retention_bytes: (self.retention_bytes >= 0).then_some(self.retention_bytes as u64),
            max_message_bytes: usize::try_from(self.max_message_bytes.max(0)).unwrap_or(usize::MAX),
            timestamp_type: self.timestamp_type,
            timestamp_before_max_ms: self.timestamp_before_max_ms,
            timestamp_after_max_ms: self.timestamp_after_max_ms,
            max_decompressed_bytes: usize::try_from(self.max_decompressed_bytes.max(0))
                .unwrap_or(usize::MAX),
            flush,
        }
    }
}

/// Kafka's `ConfigType` as DescribeConfigs v3+ reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    Boolean = 1,
    String = 2,
    Int = 3,
    Long = 5,
    List = 7,
}

/// One topic config key; see the module docs.
pub struct TopicConfigKey {
    /// The topic config name (`retention.ms`).
    pub name: &'static str,
    /// The broker property that gives its default (`log.retention.ms`).
    pub broker_name: &'static str,
    pub config_type: ConfigType,
    pub doc: &'static str,
    set: fn(&mut TopicConfig, &str) -> Result<(), String>,
    get: fn(&TopicConfig) -> String,
}

impl TopicConfigKey {
    /// Parses `value` into `config`.
    pub fn apply(&self, config: &mut TopicConfig, value: &str) -> Result<(), String> {
        (self.set)(config, value)
    }

    /// The value of this key in `config`, as Kafka prints it.
    pub fn value(&self, config: &TopicConfig) -> String {
        (self.get)(config)
    }
}

fn parse_long(value: &str, min: i64) -> Result<i64, String> {
    let parsed: i64 = value
        .trim()
        .parse()
        .map_err(|_| "not a valid long".to_owned())?;
    if parsed < min {
        return Err(format!("value must be at least {min}"));
    }
    Ok(parsed)
}

fn parse_int(value: &str, min: i64) -> Result<i64, String> {
    let parsed = parse_long(value, min)?;
    if parsed > i32::MAX as i64 {
        return Err("value must fit in an int".to_owned());
    }
    Ok(parsed)
}

fn parse_bool(value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err("expected true or false".to_owned()),
    }
}

fn parse_cleanup_policy(value: &str) -> Result<String, String> {
    let mut delete = false;
    let mut compact = false;
    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part {
            "delete" => delete = true,
            "compact" => compact = true,
            other => return Err(format!("unknown cleanup policy {other}")),
        }
    }
    Ok(match (compact, delete) {
        (true, true) => "compact,delete",
        (true, false) => "compact",
        (false, true) => "delete",
        (false, false) => return Err("cleanup.policy must not be empty".to_owned()),
    }
    .to_owned())
}

fn parse_timestamp_type(value: &str) -> Result<TimestampType, String> {
    match value.trim() {
        "CreateTime" => Ok(TimestampType::CreateTime),
        "LogAppendTime" => Ok(TimestampType::LogAppendTime),
        _ => Err("must be CreateTime or LogAppendTime".to_owned()),
    }
}

fn timestamp_type_name(t: TimestampType) -> &'static str {
    match t {
        TimestampType::CreateTime => "CreateTime",
        TimestampType::LogAppendTime => "LogAppendTime",
    }
}

/// Every topic config Sluice understands.
pub static KEYS: &[TopicConfigKey] = &[
    TopicConfigKey {
        name: "cleanup.policy",
        broker_name: "log.cleanup.policy",
        config_type: ConfigType::List,
        doc: "delete: retention deletes old segments; compact: keep them (compaction itself is not implemented yet)",
        set: |c, v| {
            c.cleanup_policy = parse_cleanup_policy(v)?;
            Ok(())
        },
        get: |c| c.cleanup_policy.clone(),
    },
    TopicConfigKey {
        name: "compression.type",
        broker_name: "compression.type",
        config_type: ConfigType::String,
        doc: "only 'producer' (batches are stored as the producer compressed them; Sluice never recompresses)",
        set: |c, v| {
            if v.trim() != "producer" {
                return Err("Sluice stores batches as produced; only 'producer' is supported".into());
            }
            c.compression_type = "producer".to_owned();
            Ok(())
        },
        get: |c| c.compression_type.clone(),
    },
    TopicConfigKey {
        name: "flush.messages",
        broker_name: "log.flush.interval.messages",
        config_type: ConfigType::Long,
        doc: "fsync after this many messages (9223372036854775807: never by count); 1 makes acks=all produces wait until their records are fsynced, like log.flush.policy=always for this topic",
        set: |c, v| {
            c.flush_messages = parse_long(v, 1)?;
            Ok(())
        },
        get: |c| c.flush_messages.to_string(),
    },
    TopicConfigKey {
        name: "flush.ms",
        broker_name: "log.flush.interval.ms",
        config_type: ConfigType::Long,
        doc: "fsync when the oldest unflushed message is this old (9223372036854775807: never by time)",
        set: |c, v| {
            c.flush_ms = parse_long(v, 0)?;
            Ok(())
        },
        get: |c| c.flush_ms.to_string(),
    },
    TopicConfigKey {
        name: "index.interval.bytes",
        broker_name: "log.index.interval.bytes",
        config_type: ConfigType::Int,
        doc: "bytes of log between two offset index entries",
        set: |c, v| {
            c.index_interval_bytes = parse_int(v, 0)?;
            Ok(())
        },
        get: |c| c.index_interval_bytes.to_string(),
    },
    TopicConfigKey {
        name: "max.message.bytes",
        broker_name: "message.max.bytes",
        config_type: ConfigType::Int,
        doc: "largest record batch accepted, in bytes",
        set: |c, v| {
            c.max_message_bytes = parse_int(v, 0)?;
            Ok(())
        },
        get: |c| c.max_message_bytes.to_string(),
    },
    TopicConfigKey {
        name: "message.timestamp.type",
        broker_name: "log.message.timestamp.type",
        config_type: ConfigType::String,
        doc: "CreateTime (producer's timestamps) or LogAppendTime (broker's clock)",
        set: |c, v| {
            c.timestamp_type = parse_timestamp_type(v)?;
            Ok(())
        },
        get: |c| timestamp_type_name(c.timestamp_type).to_owned(),
    },
    TopicConfigKey {
        name: "message.timestamp.after.max.ms",
        broker_name: "log.message.timestamp.after.max.ms",
        config_type: ConfigType::Long,
        doc: "with CreateTime, produces with a record timestamp more than this far ahead of the broker's clock fail with INVALID_TIMESTAMP (KIP-937)",
        set: |c, v| {
            c.timestamp_after_max_ms = parse_long(v, 0)?;
            Ok(())
        },
        get: |c| c.timestamp_after_max_ms.to_string(),
    },
    TopicConfigKey {
        name: "message.timestamp.before.max.ms",
        broker_name: "log.message.timestamp.before.max.ms",
        config_type: ConfigType::Long,
        doc: "with CreateTime, produces with a record timestamp more than this far behind the broker's clock fail with INVALID_TIMESTAMP (KIP-937; 9223372036854775807: no bound)",
        set: |c, v| {
            c.timestamp_before_max_ms = parse_long(v, 0)?;
            Ok(())
        },
        get: |c| c.timestamp_before_max_ms.to_string(),
    },
    TopicConfigKey {
        name: "min.insync.replicas",
        broker_name: "min.insync.replicas",
        config_type: ConfigType::Int,
        doc: "acks=all produces fail with NOT_ENOUGH_REPLICAS when fewer replicas (the leader included) are in sync; at least 1",
        set: |c, v| {
            c.min_insync_replicas = parse_int(v, 1)?;
            Ok(())
        },
        get: |c| c.min_insync_replicas.to_string(),
    },
    TopicConfigKey {
        name: "retention.bytes",
        broker_name: "log.retention.bytes",
        config_type: ConfigType::Long,
        doc: "delete the oldest segments while a partition is larger than this (-1: no limit)",
        set: |c, v| {
            c.retention_bytes = parse_long(v, i64::MIN)?;
            Ok(())
        },
        get: |c| c.retention_bytes.to_string(),
    },
    TopicConfigKey {
        name: "retention.ms",
        broker_name: "log.retention.ms",
        config_type: ConfigType::Long,
        doc: "delete segments whose newest record is older than this (-1: keep forever)",
        set: |c, v| {
            c.retention_ms = parse_long(v, -1)?;
            Ok(())
        },
        get: |c| c.retention_ms.to_string(),
    },
    TopicConfigKey {
        name: "segment.bytes",
        broker_name: "log.segment.bytes",
        config_type: ConfigType::Int,
        doc: "roll to a new segment file when the active one reaches this size",
        set: |c, v| {
            c.segment_bytes = parse_int(v, 14)?;
            Ok(())
        },
        get: |c| c.segment_bytes.to_string(),
    },
    TopicConfigKey {
        name: "segment.index.bytes",
        broker_name: "log.index.size.max.bytes",
        config_type: ConfigType::Int,
        doc: "maximum size of a segment's offset and time index files",
        set: |c, v| {
            c.segment_index_bytes = parse_int(v, 4)?;
            Ok(())
        },
        get: |c| c.segment_index_bytes.to_string(),
    },
    TopicConfigKey {
        name: "segment.ms",
        broker_name: "log.roll.ms",
        config_type: ConfigType::Long,
        doc: "roll to a new segment when the active one's first record is older than this",
        set: |c, v| {
            c.segment_ms = parse_long(v, 1)?;
            Ok(())
        },
        get: |c| c.segment_ms.to_string(),
    },
    TopicConfigKey {
        name: "unclean.leader.election.enable",
        broker_name: "unclean.leader.election.enable",
        config_type: ConfigType::Boolean,
        doc: "when no in-sync replica of a partition is available, the controller makes an out-of-sync one leader \
              (availability over durability: acknowledged records may be lost, and a warning says so); \
              false keeps the partition offline until an in-sync replica returns",
        set: |c, v| {
            c.unclean_leader_election_enable = parse_bool(v)?;
            Ok(())
        },
        get: |c| c.unclean_leader_election_enable.to_string(),
    },
];

/// The key named `name`, if it is a topic config Sluice knows.
pub fn find(name: &str) -> Option<&'static TopicConfigKey> {
    KEYS.iter().find(|k| k.name == name)
}

/// The key whose broker-level default property is `broker_name`.
pub fn find_by_broker_name(broker_name: &str) -> Option<&'static TopicConfigKey> {
    KEYS.iter().find(|k| k.broker_name == broker_name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overrides(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn overrides_apply_and_validate() {
        let base = TopicConfig::default();
        let c = base
            .with_overrides(&overrides(&[
                ("retention.ms", "1000"),
                ("cleanup.policy", "delete,compact"),
                ("message.timestamp.type", "LogAppendTime"),
            ]))
            .unwrap();
        assert_eq!(c.retention_ms, 1000);
        assert_eq!(c.cleanup_policy, "compact,delete");
        assert_eq!(c.timestamp_type, TimestampType::LogAppendTime);
        assert!(base
            .with_overrides(&overrides(&[("retention.msx", "1")]))
            .unwrap_err()
            .contains("Unknown topic config name"));
        assert!(base
            .with_overrides(&overrides(&[("segment.bytes", "abc")]))
            .is_err());
        assert!(base
            .with_overrides(&overrides(&[("retention.ms", "-2")]))
            .is_err());
        assert!(base
            .with_overrides(&overrides(&[("compression.type", "zstd")]))
            .is_err());
    }

    #[test]
    fn log_config_follows_flush_mode() {
        let mut c = TopicConfig::default();
        assert_eq!(c.to_log_config(FlushMode::Os).flush, FlushPolicy::Os);
        assert_eq!(
            c.to_log_config(FlushMode::Always).flush,
            FlushPolicy::Always
        );
        c.flush_messages = 2;
        assert_eq!(
            c.to_log_config(FlushMode::Os).flush,
            FlushPolicy::Interval {
                messages: Some(2),
                ms: None
            }
        );
        // flush.messages=1 is Kafka's "fsync every append": acks=all waits for the fsync.
        c.flush_messages = 1;
        for mode in [FlushMode::Os, FlushMode::Interval, FlushMode::Always] {
            assert_eq!(c.to_log_config(mode).flush, FlushPolicy::Always, "{mode:?}");
        }
        c.retention_ms = -1;
        c.retention_bytes = -1;
        let log = c.to_log_config(FlushMode::Os);
        assert_eq!(log.retention_ms, None);
        assert_eq!(log.retention_bytes, None);
    }

    #[test]
    fn every_key_round_trips_its_default() {
        let base = TopicConfig::default();
        for key in KEYS {
            let mut c = base.clone();
            key.apply(&mut c, &key.value(&base)).unwrap();
            assert_eq!(c, base, "{}", key.name);
        }
    }
}
