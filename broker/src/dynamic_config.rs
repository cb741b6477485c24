//! Dynamic broker configs: Kafka's `BROKER` config resource changed while the broker runs
//! (IncrementalAlterConfigs / AlterConfigs), with Kafka's two levels:
//! - the cluster-wide default (resource name `""`, source `DYNAMIC_DEFAULT_BROKER_CONFIG`),
//! - one broker (resource name = its `node.id`, source `DYNAMIC_BROKER_CONFIG`),
//!
//! the broker's level winning over the default, and both over the static configuration
//! (file, `SLUICE_*` variables, flags).
//!
//! Where they live: in a cluster (every node, a single one included) in the metadata log
//! as Kafka keeps them (`ConfigRecord`s of `ConfigResource::ClusterDefault` and
//! `ConfigResource::Broker(id)`), so they survive restarts and every broker sees the
//! cluster default; the reconciler hands each new image to [`DynamicBrokerConfigs::sync`].
//! The single-node broker of earlier releases (tests only) keeps them in
//! `<data>/dynamic-broker-configs.json`, rewritten atomically before a change is answered.
//!
//! Which names are accepted is Kafka 4.4's answer (`DynamicBrokerConfig.ALL_DYNAMIC_CONFIGS`
//! and `PER_BROKER_CONFIGS`, read from its jars), and each is one of:
//! - applied: the topic-config defaults (`log.retention.ms`, `log.segment.bytes`,
//!   `message.max.bytes`, `log.flush.*`, ...: every topic without its own override takes the
//!   new value at once), the connection caps (`max.connections`,
//!   `max.connections.per.ip`, `max.connections.per.ip.overrides`) and the cleaner's
//!   `log.cleaner.threads`, `.dedupe.buffer.size`, `.io.max.bytes.per.second`,
//!   `.backoff.ms` (taken at its next pass);
//! - inert: Kafka's dynamic settings of things Sluice does not have or sets otherwise
//!   (Kerberos and SASL login tuning, thread pools, tiered storage, the cleaner's I/O
//!   buffers...): stored, described and documented as having no effect, so Kafka's tools and
//!   clients that set them get Kafka's answer;
//! - refused: Sluice settings that only take effect at start (`listeners`, TLS files: those
//!   reload from their files), with Kafka's "Cannot update these configs dynamically".
//!
//! A name neither Kafka nor Sluice knows is stored as a custom config, as Kafka does (and
//! described as sensitive, with no value, as Kafka does).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::RwLock;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig;
use serde::{Deserialize, Serialize};

use crate::config::{self, BrokerConfig, ConfigError};
use crate::topics::AdminError;

/// Kafka 4.4's dynamically updatable broker configs.
const KAFKA_DYNAMIC: &[&str] = &[
    "background.threads",
    "compression.gzip.level",
    "compression.lz4.level",
    "compression.type",
    "compression.zstd.level",
    "config.providers",
    "cordoned.log.dirs",
    "errors.deadletterqueue.auto.create.topics.enable",
    "errors.deadletterqueue.topic.name.prefix",
    "follower.fetch.last.tiered.offset.enable",
    "follower.replication.throttled.rate",
    "group.consumer.assignment.interval.ms",
    "group.consumer.assignor.offload.enable",
    "group.coordinator.cached.buffer.max.bytes",
    "group.share.assignment.interval.ms",
    "group.share.assignor.offload.enable",
    "group.streams.assignment.interval.ms",
    "group.streams.assignor.offload.enable",
    "leader.replication.throttled.rate",
    "listener.security.protocol.map",
    "listeners",
    "log.cleaner.backoff.ms",
    "log.cleaner.dedupe.buffer.size",
    "log.cleaner.delete.retention.ms",
    "log.cleaner.io.buffer.load.factor",
    "log.cleaner.io.buffer.size",
    "log.cleaner.io.max.bytes.per.second",
    "log.cleaner.max.compaction.lag.ms",
    "log.cleaner.min.cleanable.ratio",
    "log.cleaner.min.compaction.lag.ms",
    "log.cleaner.threads",
    "log.cleanup.policy",
    "log.flush.interval.messages",
    "log.flush.interval.ms",
    "log.index.interval.bytes",
    "log.index.size.max.bytes",
    "log.local.retention.bytes",
    "log.local.retention.ms",
    "log.message.timestamp.after.max.ms",
    "log.message.timestamp.before.max.ms",
    "log.message.timestamp.type",
    "log.preallocate",
    "log.remote.copy.lag.bytes",
    "log.remote.copy.lag.ms",
    "log.retention.bytes",
    "log.retention.ms",
    "log.roll.jitter.ms",
    "log.roll.ms",
    "log.segment.bytes",
    "log.segment.delete.delay.ms",
    "max.connection.creation.rate",
    "max.connections",
    "max.connections.per.ip",
    "max.connections.per.ip.overrides",
    "max.decompressed.message.bytes",
    "message.max.bytes",
    "metric.reporters",
    "min.insync.replicas",
    "num.io.threads",
    "num.network.threads",
    "num.recovery.threads.per.data.dir",
    "num.replica.fetchers",
    "principal.builder.class",
    "producer.id.expiration.ms",
    "remote.fetch.max.wait.ms",
    "remote.list.offsets.request.timeout.ms",
    "remote.log.index.file.cache.total.size.bytes",
    "remote.log.manager.copier.thread.pool.size",
    "remote.log.manager.copy.max.bytes.per.second",
    "remote.log.manager.expiration.thread.pool.size",
    "remote.log.manager.fetch.max.bytes.per.second",
    "remote.log.manager.follower.thread.pool.size",
    "remote.log.reader.threads",
    "replica.alter.log.dirs.io.max.bytes.per.second",
    "sasl.enabled.mechanisms",
    "sasl.jaas.config",
    "sasl.kerberos.kinit.cmd",
    "sasl.kerberos.min.time.before.relogin",
    "sasl.kerberos.principal.to.local.rules",
    "sasl.kerberos.service.name",
    "sasl.kerberos.ticket.renew.jitter",
    "sasl.kerberos.ticket.renew.window.factor",
    "sasl.login.refresh.buffer.seconds",
    "sasl.login.refresh.min.period.seconds",
    "sasl.login.refresh.window.factor",
    "sasl.login.refresh.window.jitter",
    "sasl.mechanism.inter.broker.protocol",
    "share.coordinator.cached.buffer.max.bytes",
    "ssl.cipher.suites",
    "ssl.client.auth",
    "ssl.enabled.protocols",
    "ssl.endpoint.identification.algorithm",
    "ssl.engine.factory.class",
    "ssl.key.password",
    "ssl.keymanager.algorithm",
    "ssl.keystore.certificate.chain",
    "ssl.keystore.key",
    "ssl.keystore.location",
    "ssl.keystore.password",
    "ssl.keystore.type",
    "ssl.protocol",
    "ssl.provider",
    "ssl.secure.random.implementation",
    "ssl.trustmanager.algorithm",
    "ssl.truststore.certificates",
    "ssl.truststore.location",
    "ssl.truststore.password",
    "ssl.truststore.type",
    "transaction.partition.verification.enable",
    "unclean.leader.election.enable",
];

/// Of [`KAFKA_DYNAMIC`], those Kafka 4.4 allows per broker only (not as the cluster
/// default).
const KAFKA_PER_BROKER_ONLY: &[&str] = &[
    "cordoned.log.dirs",
    "listener.security.protocol.map",
    "listeners",
    "principal.builder.class",
    "sasl.enabled.mechanisms",
    "sasl.jaas.config",
    "sasl.kerberos.kinit.cmd",
    "sasl.kerberos.min.time.before.relogin",
    "sasl.kerberos.principal.to.local.rules",
    "sasl.kerberos.service.name",
    "sasl.kerberos.ticket.renew.jitter",
    "sasl.kerberos.ticket.renew.window.factor",
    "sasl.login.refresh.buffer.seconds",
    "sasl.login.refresh.min.period.seconds",
    "sasl.login.refresh.window.factor",
    "sasl.login.refresh.window.jitter",
    "sasl.mechanism.inter.broker.protocol",
    "ssl.cipher.suites",
    "ssl.client.auth",
    "ssl.enabled.protocols",
    "ssl.endpoint.identification.algorithm",
    "ssl.engine.factory.class",
    "ssl.key.password",
    "ssl.keymanager.algorithm",
    "ssl.keystore.certificate.chain",
    "ssl.keystore.key",
    "ssl.keystore.location",
    "ssl.keystore.password",
    "ssl.keystore.type",
    "ssl.protocol",
    "ssl.provider",
    "ssl.secure.random.implementation",
    "ssl.trustmanager.algorithm",
    "ssl.truststore.certificates",
    "ssl.truststore.location",
    "ssl.truststore.password",
    "ssl.truststore.type",
];

/// The connection caps Sluice changes at runtime.
const CONNECTION_CAPS: &[&str] = &[
    "max.connections",
    "max.connections.per.ip",
    "max.connections.per.ip.overrides",
];

/// Kafka's ConfigSource codes of the dynamic levels.
pub const SOURCE_DYNAMIC_BROKER: i8 = 2;
pub const SOURCE_DYNAMIC_DEFAULT_BROKER: i8 = 3;

/// What a dynamic broker config name does in Sluice (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Taken at once by the running broker.
    Applied,
    /// Stored and described; no effect in Sluice (the reason says why).
    Inert(&'static str),
    /// A Sluice or Kafka setting that only takes effect at start: refused.
    StaticOnly,
    /// A name neither Kafka nor Sluice knows: stored, as Kafka stores it.
    Custom,
}

/// What setting `name` dynamically does.
pub fn effect(name: &str) -> Effect {
    let kafka_dynamic = KAFKA_DYNAMIC.contains(&name);
    let topic_default = crate::topic_config::find_by_broker_name(name).is_some();
    let cleaner = name.starts_with("log.cleaner.") && config::is_known_property(name);
    if kafka_dynamic && (topic_default || cleaner || CONNECTION_CAPS.contains(&name)) {
        return Effect::Applied;
    }
    if config::is_known_property(name) {
        // Read once at start (listeners, TLS files, thread counts Sluice has...).
        return Effect::StaticOnly;
    }
    if kafka_dynamic {
        return Effect::Inert(inert_reason(name));
    }
    Effect::Custom
}

/// Why a Kafka dynamic config Sluice does not know has no effect here.
fn inert_reason(name: &str) -> &'static str {
    if name.starts_with("sasl.kerberos") || name.starts_with("sasl.login") {
        "Sluice has no Kerberos (GSSAPI) or OAUTHBEARER login to tune"
    } else if name.starts_with("sasl.")
        || name.starts_with("ssl.")
        || name.starts_with("principal.")
    {
        "Sluice's security settings are static (TLS files reload on change or SIGHUP)"
    } else if name.starts_with("log.cleaner.io.buffer") {
        "Sluice's cleaner reads segments through their mappings: it has no I/O buffers to size"
    } else if name.contains("remote") || name.contains("tiered") || name.starts_with("log.local.") {
        "Sluice has no tiered storage"
    } else if name.contains("threads") || name.contains("thread.pool") {
        "Sluice's work runs on the async runtime's workers, not sized pools"
    } else {
        "Sluice has no such setting"
    }
}

/// Whether Kafka refuses `name` at the cluster-default level.
fn per_broker_only(name: &str) -> bool {
    KAFKA_PER_BROKER_ONLY.contains(&name)
}

/// Whether Kafka describes `name` as sensitive (its value hidden): passwords, keys and
/// JAAS, and custom names (Kafka cannot know).
pub fn is_sensitive(name: &str) -> bool {
    matches!(effect(name), Effect::Custom)
        || name.ends_with(".password")
        || name == "ssl.keystore.key"
        || name == "sasl.jaas.config"
}

/// The two dynamic levels' values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layers {
    /// The cluster-wide default (resource name `""`).
    #[serde(default)]
    pub cluster_default: BTreeMap<String, String>,
    /// This broker's own (resource name = its id).
    #[serde(default)]
    pub broker: BTreeMap<String, String>,
}

/// Which level a BROKER resource names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    ClusterDefault,
    Broker,
}

impl Level {
    /// The level a BROKER resource name means on broker `node_id`, or Kafka's refusal.
    pub fn of(resource_name: &str, node_id: i32) -> Result<Level, AdminError> {
        if resource_name.is_empty() {
            Ok(Level::ClusterDefault)
        } else if resource_name == node_id.to_string() {
            Ok(Level::Broker)
        } else {
            Err(AdminError::new(
                ResponseError::InvalidRequest,
                format!(
                    "Unexpected broker id, expected {node_id} or empty string, but received {resource_name}"
                ),
            ))
        }
    }
}

impl Layers {
    pub fn level(&self, level: Level) -> &BTreeMap<String, String> {
        match level {
            Level::ClusterDefault => &self.cluster_default,
            Level::Broker => &self.broker,
        }
    }

    fn level_mut(&mut self, level: Level) -> &mut BTreeMap<String, String> {
        match level {
            Level::ClusterDefault => &mut self.cluster_default,
            Level::Broker => &mut self.broker,
        }
    }

    /// The value `name` takes from the dynamic levels, with its source.
    pub fn get(&self, name: &str) -> Option<(&str, i8)> {
        if let Some(v) = self.broker.get(name) {
            return Some((v, SOURCE_DYNAMIC_BROKER));
        }
        self.cluster_default
            .get(name)
            .map(|v| (v.as_str(), SOURCE_DYNAMIC_DEFAULT_BROKER))
    }

    /// The static properties with the applied dynamic values on top (default, then
    /// broker). Values that do not parse (written by another build) are left out, one by
    /// one, with a warning, so one bad value cannot undo the others.
    pub fn effective_properties(
        &self,
        static_config: &BrokerConfig,
    ) -> (BTreeMap<String, String>, BrokerConfig) {
        let mut props = static_config.explicit.clone();
        let mut config = static_config.clone();
        for layer in [&self.cluster_default, &self.broker] {
            for (name, value) in layer {
                if effect(name) != Effect::Applied {
                    continue;
                }
                let mut candidate = props.clone();
                candidate.insert(name.clone(), value.clone());
                match BrokerConfig::from_properties(&candidate) {
                    Ok(parsed) => {
                        props = candidate;
                        config = parsed;
                    }
                    Err(e) => {
                        tracing::warn!(config = %name, error = %e, "ignoring a dynamic broker config this broker cannot apply")
                    }
                }
            }
        }
        (props, config)
    }
}

/// The refusal of a value, in Kafka's words.
fn invalid_value(e: ConfigError) -> AdminError {
    let message = match e {
        ConfigError::InvalidValue {
            name,
            value,
            reason,
        } => format!("Invalid value {value} for configuration {name}: {reason}"),
        other => other.to_string(),
    };
    AdminError::new(ResponseError::InvalidRequest, message)
}

/// Applies IncrementalAlterConfigs operations to one level of `current`, with Kafka's
/// refusals; returns the new layers. The result is validated whole: a change that makes
/// the effective configuration invalid (alone or with the other level) is refused.
pub fn altered(
    static_config: &BrokerConfig,
    current: &Layers,
    level: Level,
    changes: &[AlterableConfig],
) -> Result<Layers, AdminError> {
    const OP_SET: i8 = 0;
    const OP_DELETE: i8 = 1;
    let mut layers = current.clone();
    let mut seen = std::collections::HashSet::new();
    let mut static_only = Vec::new();
    let mut not_at_default = Vec::new();
    for change in changes {
        let name = change.name.as_str();
        if !seen.insert(name) {
            return Err(AdminError::new(
                ResponseError::InvalidRequest,
                format!("Error due to duplicate config keys: {name}"),
            ));
        }
        if effect(name) == Effect::StaticOnly {
            static_only.push(name);
        }
        if level == Level::ClusterDefault && per_broker_only(name) {
            not_at_default.push(name);
        }
        let entries = layers.level_mut(level);
        match change.config_operation {
            OP_SET => {
                let value = change.value.as_ref().ok_or_else(|| {
                    AdminError::new(
                        ResponseError::InvalidRequest,
                        format!("Null value not supported for : {name}"),
                    )
                })?;
                entries.insert(name.to_owned(), value.to_string());
            }
            OP_DELETE => {
                entries.remove(name);
            }
            _ => {
                return Err(AdminError::new(
                    ResponseError::InvalidRequest,
                    format!("Config value append is not allowed for config key: {name}"),
                ))
            }
        }
    }
    if !not_at_default.is_empty() {
        return Err(AdminError::new(
            ResponseError::InvalidRequest,
            format!(
                "Cannot update these configs at default cluster level, broker id must be specified: [{}]",
                not_at_default.join(", ")
            ),
        ));
    }
    if !static_only.is_empty() {
        return Err(AdminError::new(
            ResponseError::InvalidRequest,
            format!(
                "Cannot update these configs dynamically: [{}]",
                static_only.join(", ")
            ),
        ));
    }
    // Every applied value must parse on top of what it overrides, in the order the
    // levels apply.
    let mut props = static_config.explicit.clone();
    for layer in [&layers.cluster_default, &layers.broker] {
        for (name, value) in layer {
            if effect(name) == Effect::Applied {
                props.insert(name.clone(), value.clone());
            }
        }
    }
    BrokerConfig::from_properties(&props).map_err(invalid_value)?;
    Ok(layers)
}

/// See the module docs.
pub struct DynamicBrokerConfigs {
    /// The legacy single node's file; `None` in a cluster (the metadata keeps them).
    file: Option<PathBuf>,
    layers: RwLock<Layers>,
    /// Serializes the legacy single node's read-modify-store-apply of the file.
    local_alter: std::sync::Mutex<()>,
}

/// Why the dynamic configs file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DynamicConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: sluice_storage::StorageError,
    },
    #[error("{path} is damaged (not the dynamic broker configs JSON): {source}")]
    Damaged {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// The file of the legacy single node.
pub const FILE_NAME: &str = "dynamic-broker-configs.json";

impl DynamicBrokerConfigs {
    /// For a cluster node: the layers come from the metadata image.
    pub fn in_metadata() -> DynamicBrokerConfigs {
        DynamicBrokerConfigs {
            file: None,
            layers: RwLock::new(Layers::default()),
            local_alter: std::sync::Mutex::new(()),
        }
    }

    /// For the legacy single node: reads `<data>/dynamic-broker-configs.json` (a damaged
    /// file stops the start: starting without them would silently undo an operator's
    /// changes).
    pub fn open_file(
        data_dir: &std::path::Path,
    ) -> Result<DynamicBrokerConfigs, DynamicConfigError> {
        let path = data_dir.join(FILE_NAME);
        let layers = match sluice_storage::fsutil::read_optional(&path).map_err(|source| {
            DynamicConfigError::Read {
                path: path.clone(),
                source,
            }
        })? {
            None => Layers::default(),
            Some(bytes) => {
                serde_json::from_slice(&bytes).map_err(|source| DynamicConfigError::Damaged {
                    path: path.clone(),
                    source,
                })?
            }
        };
        Ok(DynamicBrokerConfigs {
            file: Some(path),
            layers: RwLock::new(layers),
            local_alter: std::sync::Mutex::new(()),
        })
    }

    /// Held by an alteration on the legacy single node from reading the layers to
    /// applying them (a cluster's reconciler is the only writer there).
    pub fn lock_local_alter(&self) -> std::sync::MutexGuard<'_, ()> {
        self.local_alter.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the layers live in a file here (the legacy single node).
    pub fn is_local(&self) -> bool {
        self.file.is_some()
    }

    pub fn layers(&self) -> Layers {
        self.layers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Stores new layers (the legacy single node: in its file first; blocking).
    pub fn store(&self, layers: Layers) -> Result<(), AdminError> {
        if let Some(path) = &self.file {
            let bytes = serde_json::to_vec_pretty(&layers)
                .map_err(|e| AdminError::new(ResponseError::UnknownServerError, e.to_string()))?;
            sluice_storage::fsutil::write_atomically(path, &bytes).map_err(|e| {
                AdminError::new(
                    ResponseError::KafkaStorageError,
                    format!("cannot write {}: {e}", path.display()),
                )
            })?;
        }
        *self.layers.write().unwrap_or_else(|p| p.into_inner()) = layers;
        Ok(())
    }

    /// Takes the levels a metadata image holds; whether they changed.
    pub fn sync(
        &self,
        cluster_default: Option<&BTreeMap<String, String>>,
        broker: Option<&BTreeMap<String, String>>,
    ) -> bool {
        let layers = Layers {
            cluster_default: cluster_default.cloned().unwrap_or_default(),
            broker: broker.cloned().unwrap_or_default(),
        };
        let mut current = self.layers.write().unwrap_or_else(|p| p.into_inner());
        if *current == layers {
            return false;
        }
        *current = layers;
        true
    }
}

/// Makes the running broker take the current layers: the topic defaults of every topic
/// and the connection caps (blocking: altering topic configs takes the registry's admin
/// lock).
pub fn apply(state: &crate::state::BrokerState) {
    let layers = state.dynamic.layers();
    let (_, effective) = layers.effective_properties(&state.config);
    let topics = state.topics.set_defaults(effective.topic_defaults.clone());
    let mut caps = crate::server::limits::ConnectionCaps::of(&effective);
    // The open-file limit bounds connections as it did at start (see `limits`).
    if let Ok((soft, _)) = crate::limits::open_file_limit() {
        let partitions = state
            .topics
            .partition_limit()
            .max
            .max(state.topics.partition_total());
        caps.max_connections = caps
            .max_connections
            .min(crate::limits::connection_cap(soft, partitions));
    }
    state.limits.set_caps(caps);
    state.cleaner.set_config(effective.cleaner.clone());
    tracing::info!(
        topics_changed = topics,
        cluster_default = layers.cluster_default.len(),
        broker = layers.broker.len(),
        "applied dynamic broker configs"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(name: &str, value: &str) -> AlterableConfig {
        AlterableConfig::default()
            .with_name(name.to_owned().into())
            .with_config_operation(0)
            .with_value(Some(value.to_owned().into()))
    }

    fn delete(name: &str) -> AlterableConfig {
        AlterableConfig::default()
            .with_name(name.to_owned().into())
            .with_config_operation(1)
    }

    #[test]
    fn names_are_classified_as_kafka_and_sluice_treat_them() {
        assert_eq!(effect("log.retention.ms"), Effect::Applied);
        assert_eq!(effect("message.max.bytes"), Effect::Applied);
        assert_eq!(effect("max.connections.per.ip"), Effect::Applied);
        assert!(matches!(
            effect("sasl.kerberos.min.time.before.relogin"),
            Effect::Inert(_)
        ));
        assert_eq!(effect("log.cleaner.threads"), Effect::Applied);
        assert!(matches!(
            effect("log.cleaner.io.buffer.size"),
            Effect::Inert(_)
        ));
        assert_eq!(effect("num.partitions"), Effect::StaticOnly);
        assert_eq!(effect("listeners"), Effect::StaticOnly);
        assert_eq!(effect("foo.bar"), Effect::Custom);
        assert!(is_sensitive("foo.bar"));
        assert!(is_sensitive("ssl.key.password"));
        assert!(!is_sensitive("log.retention.ms"));
    }

    #[test]
    fn changes_are_refused_in_kafkas_words() {
        let config = BrokerConfig::default();
        let none = Layers::default();
        let refusal = |level, changes: &[AlterableConfig]| {
            altered(&config, &none, level, changes).unwrap_err().message
        };
        assert_eq!(
            refusal(
                Level::ClusterDefault,
                &[set("sasl.kerberos.min.time.before.relogin", "58000")]
            ),
            "Cannot update these configs at default cluster level, broker id must be specified: [sasl.kerberos.min.time.before.relogin]"
        );
        assert_eq!(
            refusal(Level::Broker, &[set("num.partitions", "3")]),
            "Cannot update these configs dynamically: [num.partitions]"
        );
        assert!(refusal(Level::Broker, &[set("log.retention.ms", "abc")])
            .starts_with("Invalid value abc for configuration log.retention.ms"));
        assert_eq!(
            refusal(
                Level::Broker,
                &[set("log.retention.ms", "1"), set("log.retention.ms", "2")]
            ),
            "Error due to duplicate config keys: log.retention.ms"
        );
        assert!(Level::of("7", 1).is_err());
    }

    #[test]
    fn the_broker_level_wins_over_the_default_and_both_over_static() {
        let mut props = BTreeMap::new();
        props.insert("log.retention.ms".to_owned(), "1000".to_owned());
        props.insert("log.segment.bytes".to_owned(), "4096".to_owned());
        let config = BrokerConfig::from_properties(&props).unwrap();
        let layers = altered(
            &config,
            &Layers::default(),
            Level::ClusterDefault,
            &[set("log.retention.ms", "2000"), set("foo.bar", "x")],
        )
        .unwrap();
        let layers = altered(
            &config,
            &layers,
            Level::Broker,
            &[
                set("log.retention.ms", "3000"),
                set("sasl.kerberos.min.time.before.relogin", "58000"),
            ],
        )
        .unwrap();
        let (_, effective) = layers.effective_properties(&config);
        assert_eq!(effective.topic_defaults.retention_ms, 3000);
        assert_eq!(effective.topic_defaults.segment_bytes, 4096);
        assert_eq!(
            layers.get("log.retention.ms"),
            Some(("3000", SOURCE_DYNAMIC_BROKER))
        );
        let layers = altered(
            &config,
            &layers,
            Level::Broker,
            &[delete("log.retention.ms")],
        )
        .unwrap();
        let (_, effective) = layers.effective_properties(&config);
        assert_eq!(effective.topic_defaults.retention_ms, 2000);
        assert_eq!(
            layers.get("log.retention.ms"),
            Some(("2000", SOURCE_DYNAMIC_DEFAULT_BROKER))
        );
        assert_eq!(layers.cluster_default.get("foo.bar").unwrap(), "x");
    }

    #[test]
    fn a_value_another_build_wrote_is_skipped_alone() {
        let config = BrokerConfig::default();
        let mut layers = Layers::default();
        layers
            .cluster_default
            .insert("log.retention.ms".to_owned(), "not a number".to_owned());
        layers
            .broker
            .insert("log.segment.bytes".to_owned(), "8192".to_owned());
        let (_, effective) = layers.effective_properties(&config);
        assert_eq!(effective.topic_defaults.segment_bytes, 8192);
        assert_eq!(
            effective.topic_defaults.retention_ms,
            config.topic_defaults.retention_ms
        );
    }
}
