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

use sluice_storage::batch::{Compression, TargetCompression, TimestampType};
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
#[derive(Debug, Clone, PartialEq)]
pub struct TopicConfig {
    /// `cleanup.policy`: normalized comma-separated list of `delete` / `compact`, or
    /// empty (neither: segments are kept forever, as Kafka 4.4 allows).
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
    pub compression_gzip_level: i64,
    pub compression_lz4_level: i64,
    pub compression_zstd_level: i64,
    /// The log cleaner's, for compacted topics (see `cleaner`).
    pub delete_retention_ms: i64,
    pub min_cleanable_dirty_ratio: f64,
    pub min_compaction_lag_ms: i64,
    pub max_compaction_lag_ms: i64,
    /// Configs Sluice accepts and shows, as Kafka does, but does not act on yet; each
    /// key's [`TopicConfigKey::inert`] says why.
    pub file_delete_delay_ms: i64,
    pub preallocate: bool,
    pub segment_jitter_ms: i64,
    pub leader_replication_throttled_replicas: String,
    pub follower_replication_throttled_replicas: String,
    pub local_retention_ms: i64,
    pub local_retention_bytes: i64,
    pub remote_storage_enable: bool,
    pub remote_copy_lag_ms: i64,
    pub remote_copy_lag_bytes: i64,
    pub remote_log_copy_disable: bool,
    pub remote_log_delete_on_disable: bool,
    pub errors_deadletterqueue_group_enable: bool,
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
            compression_gzip_level: -1,
            compression_lz4_level: 9,
            compression_zstd_level: 3,
            delete_retention_ms: 86_400_000,
            min_cleanable_dirty_ratio: 0.5,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            file_delete_delay_ms: 60_000,
            preallocate: false,
            segment_jitter_ms: 0,
            leader_replication_throttled_replicas: String::new(),
            follower_replication_throttled_replicas: String::new(),
            local_retention_ms: -2,
            local_retention_bytes: -2,
            remote_storage_enable: false,
            remote_copy_lag_ms: 0,
            remote_copy_lag_bytes: -1,
            remote_log_copy_disable: false,
            remote_log_delete_on_disable: false,
            errors_deadletterqueue_group_enable: false,
        }
    }
}

impl TopicConfig {
    /// These defaults with `overrides` (topic config name -> value) applied.
    pub fn with_overrides(&self, overrides: &BTreeMap<String, String>) -> Result<Self, String> {
        let mut config = self.clone();
        for (name, value) in overrides {
            let key = find(name).ok_or_else(|| format!("Unknown topic config name: {name}"))?;
            (key.set)(&mut config, value).map_err(|e| {
                // Kafka prints a list as it parsed it: `[a, b]`.
                let shown = if key.config_type == ConfigType::List {
                    let items: Vec<&str> = value.split(',').map(str::trim).collect();
                    format!("[{}]", items.join(", "))
                } else {
                    value.clone()
                };
                format!("Invalid value {shown} for configuration {name}: {e}")
            })?;
        }
        Ok(config)
    }

    /// Whether retention may delete segments (`cleanup.policy` contains `delete`).
    pub fn deletes(&self) -> bool {
        self.cleanup_policy.split(',').any(|p| p == "delete")
    }

    /// Whether the topic is compacted (`cleanup.policy` contains `compact`).
    pub fn compacts(&self) -> bool {
        self.cleanup_policy.split(',').any(|p| p == "compact")
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
            compact: self.compacts(),
            compression: self.target_compression(),
        }
    }

    /// The codec and level batches are stored in (`compression.type`), or `None` for
    /// `producer`: stored as produced.
    fn target_compression(&self) -> Option<TargetCompression> {
        let level = |level: i64| i32::try_from(level).ok();
        let (codec, level) = match self.compression_type.as_str() {
            "uncompressed" => (Compression::None, None),
            // -1 is gzip's "the codec's default"; for zstd it is a real (fast) level.
            "gzip" => (
                Compression::Gzip,
                level(self.compression_gzip_level).filter(|&l| l != -1),
            ),
            "snappy" => (Compression::Snappy, None),
            "lz4" => (Compression::Lz4, None),
            "zstd" => (Compression::Zstd, level(self.compression_zstd_level)),
            _ => return None,
        };
        Some(TargetCompression { codec, level })
    }
}

/// Kafka's `ConfigType` as DescribeConfigs v3+ reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    Boolean = 1,
    String = 2,
    Int = 3,
    Long = 5,
    Double = 6,
    List = 7,
}

/// One topic config key; see the module docs.
pub struct TopicConfigKey {
    /// The topic config name (`retention.ms`).
    pub name: &'static str,
    /// The broker property that gives its default (`log.retention.ms`), if Kafka has one.
    pub broker_name: Option<&'static str>,
    pub config_type: ConfigType,
    pub doc: &'static str,
    /// Why Sluice accepts this key, validates and shows it, but does not act on it yet;
    /// `None` for keys that take effect.
    pub inert: Option<&'static str>,
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

    /// The documentation DescribeConfigs returns: the doc, and for an inert key why it
    /// has no effect.
    pub fn documentation(&self) -> String {
        match self.inert {
            Some(reason) => format!("{} (accepted, no effect in Sluice yet: {reason})", self.doc),
            None => self.doc.to_owned(),
        }
    }
}

/// A long in `[min, max]`, refused in Kafka's words (`ConfigDef.Range`).
fn parse_long_in(value: &str, min: i64, max: i64) -> Result<i64, String> {
    let parsed: i64 = value
        .trim()
        .parse()
        .map_err(|_| "Not a number of type LONG".to_owned())?;
    check_range(parsed, min, max)
}

fn parse_long(value: &str, min: i64) -> Result<i64, String> {
    parse_long_in(value, min, i64::MAX)
}

/// An int in `[min, max]`.
fn parse_int_in(value: &str, min: i64, max: i64) -> Result<i64, String> {
    let parsed: i32 = value
        .trim()
        .parse()
        .map_err(|_| "Not a number of type INT".to_owned())?;
    check_range(i64::from(parsed), min, max)
}

fn parse_int(value: &str, min: i64) -> Result<i64, String> {
    parse_int_in(value, min, i64::from(i32::MAX))
}

fn check_range(parsed: i64, min: i64, max: i64) -> Result<i64, String> {
    if parsed < min {
        return Err(format!("Value must be at least {min}"));
    }
    if parsed > max {
        return Err(format!("Value must be no more than {max}"));
    }
    Ok(parsed)
}

fn parse_bool(value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err("Expected value to be either true or false".to_owned()),
    }
}

/// `min.cleanable.dirty.ratio`: a double in `[0, 1]`.
fn parse_ratio(value: &str) -> Result<f64, String> {
    let parsed: f64 = value
        .trim()
        .parse()
        .map_err(|_| "Not a number of type DOUBLE".to_owned())?;
    if parsed.is_nan() || parsed < 0.0 {
        return Err("Value must be at least 0".to_owned());
    }
    if parsed > 1.0 {
        return Err("Value must be no more than 1".to_owned());
    }
    Ok(parsed)
}

/// Kafka's `compression.type` values.
const COMPRESSION_TYPES: [&str; 6] = ["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"];

fn parse_compression_type(value: &str) -> Result<String, String> {
    let value = value.trim();
    if COMPRESSION_TYPES.contains(&value) {
        Ok(value.to_owned())
    } else {
        Err(format!(
            "String must be one of: {}",
            COMPRESSION_TYPES.join(", ")
        ))
    }
}

/// `leader/follower.replication.throttled.replicas`: empty, `*`, or
/// `partition:broker,...` (Kafka's `ThrottledReplicaListValidator`).
fn parse_throttled_replicas(name: &str, value: &str) -> Result<String, String> {
    let items: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect();
    let pair = |item: &str| {
        item.split_once(':').is_some_and(|(p, b)| {
            p.trim().parse::<i32>().is_ok() && b.trim().parse::<i32>().is_ok()
        })
    };
    if items == ["*"] || items.iter().all(|item| pair(item)) {
        Ok(items.join(","))
    } else {
        Err(format!(
            "{name} must be the literal '*' or a list of replicas in the following format: \
             [partitionId]:[brokerId],[partitionId]:[brokerId],..."
        ))
    }
}

fn parse_cleanup_policy(value: &str) -> Result<String, String> {
    let mut delete = false;
    let mut compact = false;
    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part {
            "delete" => delete = true,
            "compact" => compact = true,
            _ => return Err("String must be one of: compact, delete".to_owned()),
        }
    }
    Ok(match (compact, delete) {
        (true, true) => "compact,delete",
        (true, false) => "compact",
        (false, true) => "delete",
        // Kafka 4.4 accepts an empty list: neither deleted nor compacted.
        (false, false) => "",
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

/// Every topic config Sluice understands: every topic config of Kafka 4.4, in its order.
pub static KEYS: &[TopicConfigKey] = &[
    TopicConfigKey {
        name: "cleanup.policy",
        broker_name: Some("log.cleanup.policy"),
        config_type: ConfigType::List,
        doc: "delete: retention deletes old segments; compact: every record needs a key and retention keeps the segments (the cleaner that keeps only each key's latest record is not implemented yet)",
        inert: None,
        set: |c, v| {
            c.cleanup_policy = parse_cleanup_policy(v)?;
            Ok(())
        },
        get: |c| c.cleanup_policy.clone(),
    },
    TopicConfigKey {
        name: "compression.gzip.level",
        broker_name: Some("compression.gzip.level"),
        config_type: ConfigType::Int,
        doc: "gzip level when the broker recompresses to gzip: 1 to 9, or -1 for the codec's default",
        inert: None,
        set: |c, v| {
            let level = parse_int(v, i64::from(i32::MIN))?;
            if level != -1 && !(1..=9).contains(&level) {
                return Err("Value must be between 1 and 9 or equal to -1".to_owned());
            }
            c.compression_gzip_level = level;
            Ok(())
        },
        get: |c| c.compression_gzip_level.to_string(),
    },
    TopicConfigKey {
        name: "compression.lz4.level",
        broker_name: Some("compression.lz4.level"),
        config_type: ConfigType::Int,
        doc: "lz4 level when the broker recompresses to lz4 (1 to 17)",
        inert: Some("Sluice writes lz4 at its one speed (lz4_flex has no high-compression mode)"),
        set: |c, v| {
            c.compression_lz4_level = parse_int_in(v, 1, 17)?;
            Ok(())
        },
        get: |c| c.compression_lz4_level.to_string(),
    },
    TopicConfigKey {
        name: "compression.type",
        broker_name: Some("compression.type"),
        config_type: ConfigType::String,
        doc: "producer: batches are stored as the producer compressed them (zero-copy); uncompressed, gzip, snappy, lz4 or zstd: the broker recompresses batches that use another codec",
        inert: None,
        set: |c, v| {
            c.compression_type = parse_compression_type(v)?;
            Ok(())
        },
        get: |c| c.compression_type.clone(),
    },
    TopicConfigKey {
        name: "compression.zstd.level",
        broker_name: Some("compression.zstd.level"),
        config_type: ConfigType::Int,
        doc: "zstd level when the broker recompresses to zstd (-131072 to 22)",
        inert: None,
        set: |c, v| {
            c.compression_zstd_level = parse_int_in(v, -131_072, 22)?;
            Ok(())
        },
        get: |c| c.compression_zstd_level.to_string(),
    },
    TopicConfigKey {
        name: "delete.retention.ms",
        broker_name: Some("log.cleaner.delete.retention.ms"),
        config_type: ConfigType::Long,
        doc: "how long the cleaner keeps tombstones of a compacted topic",
        inert: None,
        set: |c, v| {
            c.delete_retention_ms = parse_long(v, 0)?;
            Ok(())
        },
        get: |c| c.delete_retention_ms.to_string(),
    },
    TopicConfigKey {
        name: "errors.deadletterqueue.group.enable",
        broker_name: None,
        config_type: ConfigType::Boolean,
        doc: "share groups may write undeliverable records to a dead-letter queue topic",
        inert: Some("Sluice has no share groups yet"),
        set: |c, v| {
            c.errors_deadletterqueue_group_enable = parse_bool(v)?;
            Ok(())
        },
        get: |c| c.errors_deadletterqueue_group_enable.to_string(),
    },
    TopicConfigKey {
        name: "file.delete.delay.ms",
        broker_name: Some("log.segment.delete.delay.ms"),
        config_type: ConfigType::Long,
        doc: "how long a deleted segment's files stay before they are removed",
        inert: Some("Sluice unlinks a deleted segment at once; readers that still map it keep reading it, so no delay is needed"),
        set: |c, v| {
            c.file_delete_delay_ms = parse_long(v, 0)?;
            Ok(())
        },
        get: |c| c.file_delete_delay_ms.to_string(),
    },
    TopicConfigKey {
        name: "flush.messages",
        broker_name: Some("log.flush.interval.messages"),
        config_type: ConfigType::Long,
        doc: "fsync after this many messages (9223372036854775807: never by count); 1 makes acks=all produces wait until their records are fsynced, like log.flush.policy=always for this topic",
        inert: None,
        set: |c, v| {
            c.flush_messages = parse_long(v, 1)?;
            Ok(())
        },
        get: |c| c.flush_messages.to_string(),
    },
    TopicConfigKey {
        name: "flush.ms",
        broker_name: Some("log.flush.interval.ms"),
        config_type: ConfigType::Long,
        doc: "fsync when the oldest unflushed message is this old (9223372036854775807: never by time)",
        inert: None,
        set: |c, v| {
            c.flush_ms = parse_long(v, 0)?;
            Ok(())
        },
        get: |c| c.flush_ms.to_string(),
    },
    TopicConfigKey {
        name: "follower.replication.throttled.replicas",
        broker_name: None,
        config_type: ConfigType::List,
        doc: "replicas whose follower fetches are throttled ('*' or partition:broker,...)",
        inert: Some("replication throttling is not implemented yet"),
        set: |c, v| {
            c.follower_replication_throttled_replicas = parse_throttled_replicas("follower.replication.throttled.replicas", v)?;
            Ok(())
        },
        get: |c| c.follower_replication_throttled_replicas.clone(),
    },
    TopicConfigKey {
        name: "index.interval.bytes",
        broker_name: Some("log.index.interval.bytes"),
        config_type: ConfigType::Int,
        doc: "bytes of log between two offset index entries",
        inert: None,
        set: |c, v| {
            c.index_interval_bytes = parse_int(v, 0)?;
            Ok(())
        },
        get: |c| c.index_interval_bytes.to_string(),
    },
    TopicConfigKey {
        name: "leader.replication.throttled.replicas",
        broker_name: None,
        config_type: ConfigType::List,
        doc: "replicas whose leader-side replication is throttled ('*' or partition:broker,...)",
        inert: Some("replication throttling is not implemented yet"),
        set: |c, v| {
            c.leader_replication_throttled_replicas = parse_throttled_replicas("leader.replication.throttled.replicas", v)?;
            Ok(())
        },
        get: |c| c.leader_replication_throttled_replicas.clone(),
    },
    TopicConfigKey {
        name: "local.retention.bytes",
        broker_name: Some("log.local.retention.bytes"),
        config_type: ConfigType::Long,
        doc: "local bytes kept when tiered storage holds the rest (-2: retention.bytes)",
        inert: Some("Sluice has no tiered storage"),
        set: |c, v| {
            c.local_retention_bytes = parse_long(v, -2)?;
            Ok(())
        },
        get: |c| c.local_retention_bytes.to_string(),
    },
    TopicConfigKey {
        name: "local.retention.ms",
        broker_name: Some("log.local.retention.ms"),
        config_type: ConfigType::Long,
        doc: "local retention when tiered storage holds the rest (-2: retention.ms)",
        inert: Some("Sluice has no tiered storage"),
        set: |c, v| {
            c.local_retention_ms = parse_long(v, -2)?;
            Ok(())
        },
        get: |c| c.local_retention_ms.to_string(),
    },
    TopicConfigKey {
        name: "max.compaction.lag.ms",
        broker_name: Some("log.cleaner.max.compaction.lag.ms"),
        config_type: ConfigType::Long,
        doc: "longest a record may stay uncompacted",
        inert: None,
        set: |c, v| {
            c.max_compaction_lag_ms = parse_long(v, 1)?;
            Ok(())
        },
        get: |c| c.max_compaction_lag_ms.to_string(),
    },
    TopicConfigKey {
        name: "max.decompressed.message.bytes",
        broker_name: Some("max.decompressed.message.bytes"),
        config_type: ConfigType::Int,
        doc: "most bytes the records of one produced compressed batch may decompress to: every produced batch is decompressed to check its records, and one that expands past this fails with INVALID_RECORD (Sluice's default is 64 MiB, Kafka's 2147483639)",
        inert: None,
        set: |c, v| {
            c.max_decompressed_bytes = parse_int_in(v, 1, 2_147_483_639)?;
            Ok(())
        },
        get: |c| c.max_decompressed_bytes.to_string(),
    },
    TopicConfigKey {
        name: "max.message.bytes",
        broker_name: Some("message.max.bytes"),
        config_type: ConfigType::Int,
        doc: "largest record batch accepted, in bytes",
        inert: None,
        set: |c, v| {
            c.max_message_bytes = parse_int(v, 0)?;
            Ok(())
        },
        get: |c| c.max_message_bytes.to_string(),
    },
    TopicConfigKey {
        name: "message.timestamp.after.max.ms",
        broker_name: Some("log.message.timestamp.after.max.ms"),
        config_type: ConfigType::Long,
        doc: "with CreateTime, produces with a record timestamp more than this far ahead of the broker's clock fail with INVALID_TIMESTAMP (KIP-937)",
        inert: None,
        set: |c, v| {
            c.timestamp_after_max_ms = parse_long(v, 0)?;
            Ok(())
        },
        get: |c| c.timestamp_after_max_ms.to_string(),
    },
    TopicConfigKey {
        name: "message.timestamp.before.max.ms",
        broker_name: Some("log.message.timestamp.before.max.ms"),
        config_type: ConfigType::Long,
        doc: "with CreateTime, produces with a record timestamp more than this far behind the broker's clock fail with INVALID_TIMESTAMP (KIP-937; 9223372036854775807: no bound)",
        inert: None,
        set: |c, v| {
            c.timestamp_before_max_ms = parse_long(v, 0)?;
            Ok(())
        },
        get: |c| c.timestamp_before_max_ms.to_string(),
    },
    TopicConfigKey {
        name: "message.timestamp.type",
        broker_name: Some("log.message.timestamp.type"),
        config_type: ConfigType::String,
        doc: "CreateTime (producer's timestamps) or LogAppendTime (broker's clock)",
        inert: None,
        set: |c, v| {
            c.timestamp_type = parse_timestamp_type(v)?;
            Ok(())
        },
        get: |c| timestamp_type_name(c.timestamp_type).to_owned(),
    },
    TopicConfigKey {
        name: "min.cleanable.dirty.ratio",
        broker_name: Some("log.cleaner.min.cleanable.ratio"),
        config_type: ConfigType::Double,
        doc: "the cleaner compacts a log when at least this share of it is uncleaned",
        inert: None,
        set: |c, v| {
            c.min_cleanable_dirty_ratio = parse_ratio(v)?;
            Ok(())
        },
        get: |c| format!("{:?}", c.min_cleanable_dirty_ratio),
    },
    TopicConfigKey {
        name: "min.compaction.lag.ms",
        broker_name: Some("log.cleaner.min.compaction.lag.ms"),
        config_type: ConfigType::Long,
        doc: "shortest time a record stays uncompacted",
        inert: None,
        set: |c, v| {
            c.min_compaction_lag_ms = parse_long(v, 0)?;
            Ok(())
        },
        get: |c| c.min_compaction_lag_ms.to_string(),
    },
    TopicConfigKey {
        name: "min.insync.replicas",
        broker_name: Some("min.insync.replicas"),
        config_type: ConfigType::Int,
        doc: "acks=all produces fail with NOT_ENOUGH_REPLICAS when fewer replicas (the leader included) are in sync; at least 1",
        inert: None,
        set: |c, v| {
            c.min_insync_replicas = parse_int(v, 1)?;
            Ok(())
        },
        get: |c| c.min_insync_replicas.to_string(),
    },
    TopicConfigKey {
        name: "preallocate",
        broker_name: Some("log.preallocate"),
        config_type: ConfigType::Boolean,
        doc: "preallocate a new segment file's full size",
        inert: Some("segments grow as they are appended to; preallocation would only matter on file systems that fragment"),
        set: |c, v| {
            c.preallocate = parse_bool(v)?;
            Ok(())
        },
        get: |c| c.preallocate.to_string(),
    },
    TopicConfigKey {
        name: "remote.copy.lag.bytes",
        broker_name: Some("log.remote.copy.lag.bytes"),
        config_type: ConfigType::Long,
        doc: "bytes a segment may wait before it is copied to remote storage (-1: no bound)",
        inert: Some("Sluice has no tiered storage"),
        set: |c, v| {
            c.remote_copy_lag_bytes = parse_long(v, -1)?;
            Ok(())
        },
        get: |c| c.remote_copy_lag_bytes.to_string(),
    },
    TopicConfigKey {
        name: "remote.copy.lag.ms",
        broker_name: Some("log.remote.copy.lag.ms"),
        config_type: ConfigType::Long,
        doc: "time a segment may wait before it is copied to remote storage",
        inert: Some("Sluice has no tiered storage"),
        set: |c, v| {
            c.remote_copy_lag_ms = parse_long(v, i64::MIN)?;
            Ok(())
        },
        get: |c| c.remote_copy_lag_ms.to_string(),
    },
    TopicConfigKey {
        name: "remote.log.copy.disable",
        broker_name: None,
        config_type: ConfigType::Boolean,
        doc: "stop copying segments to remote storage",
        inert: Some("Sluice has no tiered storage"),
        set: |c, v| {
            c.remote_log_copy_disable = parse_bool(v)?;
            Ok(())
        },
        get: |c| c.remote_log_copy_disable.to_string(),
    },
    TopicConfigKey {
        name: "remote.log.delete.on.disable",
        broker_name: None,
        config_type: ConfigType::Boolean,
        doc: "delete remote segments when remote storage is turned off for the topic",
        inert: Some("Sluice has no tiered storage"),
        set: |c, v| {
            c.remote_log_delete_on_disable = parse_bool(v)?;
            Ok(())
        },
        get: |c| c.remote_log_delete_on_disable.to_string(),
    },
    TopicConfigKey {
        name: "remote.storage.enable",
        broker_name: None,
        config_type: ConfigType::Boolean,
        doc: "tiered storage for this topic; only false, as on a Kafka broker without remote.log.storage.system.enable",
        inert: None,
        set: |c, v| {
            // As a Kafka broker without remote.log.storage.system.enable answers.
            if parse_bool(v)? {
                return Err("Tiered Storage functionality is disabled in the broker. \
                            Topic cannot be configured with remote log storage."
                    .to_owned());
            }
            c.remote_storage_enable = false;
            Ok(())
        },
        get: |c| c.remote_storage_enable.to_string(),
    },
    TopicConfigKey {
        name: "retention.bytes",
        broker_name: Some("log.retention.bytes"),
        config_type: ConfigType::Long,
        doc: "delete the oldest segments while a partition is larger than this (-1: no limit)",
        inert: None,
        set: |c, v| {
            c.retention_bytes = parse_long(v, i64::MIN)?;
            Ok(())
        },
        get: |c| c.retention_bytes.to_string(),
    },
    TopicConfigKey {
        name: "retention.ms",
        broker_name: Some("log.retention.ms"),
        config_type: ConfigType::Long,
        doc: "delete segments whose newest record is older than this (-1: keep forever)",
        inert: None,
        set: |c, v| {
            c.retention_ms = parse_long(v, -1)?;
            Ok(())
        },
        get: |c| c.retention_ms.to_string(),
    },
    TopicConfigKey {
        name: "segment.bytes",
        broker_name: Some("log.segment.bytes"),
        config_type: ConfigType::Int,
        doc: "roll to a new segment file when the active one reaches this size",
        inert: None,
        set: |c, v| {
            c.segment_bytes = parse_int(v, 14)?;
            Ok(())
        },
        get: |c| c.segment_bytes.to_string(),
    },
    TopicConfigKey {
        name: "segment.index.bytes",
        broker_name: Some("log.index.size.max.bytes"),
        config_type: ConfigType::Int,
        doc: "maximum size of a segment's offset and time index files",
        inert: None,
        set: |c, v| {
            c.segment_index_bytes = parse_int(v, 4)?;
            Ok(())
        },
        get: |c| c.segment_index_bytes.to_string(),
    },
    TopicConfigKey {
        name: "segment.jitter.ms",
        broker_name: Some("log.roll.jitter.ms"),
        config_type: ConfigType::Long,
        doc: "random reduction of segment.ms per segment, so partitions do not roll together",
        inert: Some("segments roll by segment.ms alone; the jitter is not applied yet"),
        set: |c, v| {
            c.segment_jitter_ms = parse_long(v, 0)?;
            Ok(())
        },
        get: |c| c.segment_jitter_ms.to_string(),
    },
    TopicConfigKey {
        name: "segment.ms",
        broker_name: Some("log.roll.ms"),
        config_type: ConfigType::Long,
        doc: "roll to a new segment when the active one's first record is older than this",
        inert: None,
        set: |c, v| {
            c.segment_ms = parse_long(v, 1)?;
            Ok(())
        },
        get: |c| c.segment_ms.to_string(),
    },
    TopicConfigKey {
        name: "unclean.leader.election.enable",
        broker_name: Some("unclean.leader.election.enable"),
        config_type: ConfigType::Boolean,
        doc: "when no in-sync replica of a partition is available, the controller makes an out-of-sync one leader \
              (availability over durability: acknowledged records may be lost, and a warning says so); \
              false keeps the partition offline until an in-sync replica returns",
        inert: None,
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
    KEYS.iter().find(|k| k.broker_name == Some(broker_name))
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
            .with_overrides(&overrides(&[("compression.type", "none")]))
            .is_err());
    }

    /// Kafka 4.4's answers to `IncrementalAlterConfigs` with validate_only, asked of a
    /// real broker (kafka-python): which values each key takes and the words of a refusal.
    #[test]
    fn values_are_validated_as_kafka_validates_them() {
        let base = TopicConfig::default();
        let check = |name: &str, value: &str| {
            base.with_overrides(&overrides(&[(name, value)]))
                .map(|_| ())
                .map_err(|e| {
                    e.split_once(&format!(" for configuration {name}: "))
                        .map_or(e.as_str(), |(_, reason)| reason)
                        .to_owned()
                })
        };
        let accepted = [
            ("compression.gzip.level", "-1"),
            ("compression.gzip.level", "9"),
            ("compression.lz4.level", "17"),
            ("compression.zstd.level", "-131072"),
            ("compression.type", "gzip"),
            ("compression.type", "uncompressed"),
            ("follower.replication.throttled.replicas", ""),
            ("follower.replication.throttled.replicas", "*"),
            ("leader.replication.throttled.replicas", "0:1,1:2"),
            ("local.retention.bytes", "-2"),
            ("max.decompressed.message.bytes", "1"),
            ("min.cleanable.dirty.ratio", "0"),
            ("min.cleanable.dirty.ratio", "1"),
            ("remote.copy.lag.ms", "-1"),
            ("remote.storage.enable", "false"),
            ("cleanup.policy", ""),
            ("cleanup.policy", "delete,delete"),
            ("retention.bytes", "-2"),
        ];
        for (name, value) in accepted {
            assert_eq!(check(name, value), Ok(()), "{name}={value}");
        }
        let refused = [
            (
                "compression.gzip.level",
                "0",
                "Value must be between 1 and 9 or equal to -1",
            ),
            ("compression.gzip.level", "x", "Not a number of type INT"),
            (
                "compression.lz4.level",
                "18",
                "Value must be no more than 17",
            ),
            (
                "compression.zstd.level",
                "-131073",
                "Value must be at least -131072",
            ),
            (
                "compression.type",
                "GZIP",
                "String must be one of: uncompressed, zstd, lz4, snappy, gzip, producer",
            ),
            ("delete.retention.ms", "-1", "Value must be at least 0"),
            (
                "errors.deadletterqueue.group.enable",
                "yes",
                "Expected value to be either true or false",
            ),
            ("max.compaction.lag.ms", "0", "Value must be at least 1"),
            (
                "max.decompressed.message.bytes",
                "2147483647",
                "Value must be no more than 2147483639",
            ),
            (
                "max.decompressed.message.bytes",
                "2147483648",
                "Not a number of type INT",
            ),
            (
                "min.cleanable.dirty.ratio",
                "1.1",
                "Value must be no more than 1",
            ),
            (
                "min.cleanable.dirty.ratio",
                "x",
                "Not a number of type DOUBLE",
            ),
            ("local.retention.ms", "-3", "Value must be at least -2"),
            ("remote.copy.lag.bytes", "-2", "Value must be at least -1"),
            ("segment.jitter.ms", "-1", "Value must be at least 0"),
            (
                "cleanup.policy",
                "none",
                "String must be one of: compact, delete",
            ),
            ("retention.ms", "-2", "Value must be at least -1"),
            ("flush.messages", "0", "Value must be at least 1"),
        ];
        for (name, value, reason) in refused {
            assert_eq!(check(name, value), Err(reason.to_owned()), "{name}={value}");
        }
        assert!(check("follower.replication.throttled.replicas", "0:")
            .unwrap_err()
            .contains("must be the literal '*'"));
        assert!(check("remote.storage.enable", "true")
            .unwrap_err()
            .contains("Tiered Storage functionality is disabled"));
        // Removed from Kafka 4.x: unknown, as there.
        assert!(check("message.downconversion.enable", "true")
            .unwrap_err()
            .contains("Unknown topic config name"));
    }

    /// Every topic config Kafka 4.4 describes (DescribeConfigs of a topic on a real
    /// broker), no more, no less.
    #[test]
    fn the_keys_are_kafkas() {
        let kafka = [
            "cleanup.policy",
            "compression.gzip.level",
            "compression.lz4.level",
            "compression.type",
            "compression.zstd.level",
            "delete.retention.ms",
            "errors.deadletterqueue.group.enable",
            "file.delete.delay.ms",
            "flush.messages",
            "flush.ms",
            "follower.replication.throttled.replicas",
            "index.interval.bytes",
            "leader.replication.throttled.replicas",
            "local.retention.bytes",
            "local.retention.ms",
            "max.compaction.lag.ms",
            "max.decompressed.message.bytes",
            "max.message.bytes",
            "message.timestamp.after.max.ms",
            "message.timestamp.before.max.ms",
            "message.timestamp.type",
            "min.cleanable.dirty.ratio",
            "min.compaction.lag.ms",
            "min.insync.replicas",
            "preallocate",
            "remote.copy.lag.bytes",
            "remote.copy.lag.ms",
            "remote.log.copy.disable",
            "remote.log.delete.on.disable",
            "remote.storage.enable",
            "retention.bytes",
            "retention.ms",
            "segment.bytes",
            "segment.index.bytes",
            "segment.jitter.ms",
            "segment.ms",
            "unclean.leader.election.enable",
        ];
        let ours: Vec<&str> = KEYS.iter().map(|k| k.name).collect();
        assert_eq!(ours, kafka);
        for key in KEYS.iter().filter(|k| k.inert.is_some()) {
            assert!(
                key.documentation().contains("no effect in Sluice yet"),
                "{}",
                key.name
            );
        }
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
