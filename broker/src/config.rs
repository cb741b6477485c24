//! Broker configuration, with Kafka's broker property names.
//!
//! Sources, lowest precedence first: built-in defaults (Kafka's), a TOML file
//! (`--config`), `SLUICE_*` environment variables (property name upper-cased, dots to
//! underscores: `num.partitions` -> `SLUICE_NUM_PARTITIONS`), then command-line flags.
//! Every source is first turned into a flat property map (`"log.segment.bytes" ->
//! "1048576"`), the maps are layered, and [`BrokerConfig::from_properties`] parses the
//! result once, so a value means the same thing whichever source gave it.
//!
//! In TOML, Kafka's dotted names must be quoted (`"num.partitions" = 3`); unquoted dotted
//! keys are TOML tables, which are flattened back to the same names, so both work.
//! Unknown keys in the file are an error (a typo should not pass silently); unknown
//! `SLUICE_*` variables are ignored, since other Sluice tools use that prefix too.
//!
//! The cluster properties (roles, quorum voters, named listeners, KRaft timeouts) and their
//! cross-property rules live in [`cluster`].

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use crate::coordinator::CoordinatorConfig;
use crate::topic_config::{self, FlushMode, TopicConfig};

pub mod cleaner;
pub mod cluster;
pub mod observability;
pub mod replica_fetch;
pub mod security;

pub use cleaner::CleanerConfig;
pub use cluster::{
    ClusterConfig, HostPort, Listener, ProcessRoles, RaftTimeouts, SecurityProtocol,
};
pub use observability::{LogFormat, ObservabilityConfig};
pub use replica_fetch::ReplicaFetchConfig;
pub use security::{ClientAuth, SaslMechanism, SecurityConfig, TlsSettings, TlsVersion};

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {source}")]
    Toml {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("unknown property {name:?} in {origin}")]
    UnknownProperty { name: String, origin: String },
    #[error("invalid value {value:?} for {name}: {reason}")]
    InvalidValue {
        name: String,
        value: String,
        reason: String,
    },
    /// Properties that are valid alone but break a rule together (the message names them,
    /// in Kafka's words where Kafka has the rule).
    #[error("{0}")]
    Inconsistent(String),
    /// A valid Kafka setting that Sluice does not serve (a security protocol other than
    /// PLAINTEXT).
    #[error("not supported yet: {0}")]
    NotSupported(String),
    /// A valid cluster configuration that the broker cannot run yet (it runs as a single
    /// node until the cluster is wired in).
    #[error("cluster mode is not wired yet: {0}")]
    ClusterNotWired(String),
}

/// A broker property that is not also a topic config default.
struct BrokerKey {
    name: &'static str,
    default: &'static str,
    doc: &'static str,
}

impl BrokerKey {
    /// The default of `name` among `keys` ("" for a name not listed).
    fn default_of(keys: &[BrokerKey], name: &str) -> &'static str {
        keys.iter()
            .find(|k| k.name == name)
            .map_or("", |k| k.default)
    }
}

const BROKER_KEYS: &[BrokerKey] = &[
    BrokerKey {
        name: "node.id",
        default: "1",
        doc: "this broker's id, reported in Metadata (also --node-id)",
    },
    BrokerKey {
        name: "process.roles",
        default: "broker,controller",
        doc: "broker, controller, or broker,controller (also --process-roles). A broker-only node follows the \
              metadata of the controller.quorum.voters (it is not one of them); a controller-only node listens on its \
              controller listener only and serves no clients",
    },
    BrokerKey {
        name: "controller.quorum.voters",
        default: "",
        doc: "the metadata quorum's voters, {id}@{host}:{port},... at their controller listeners (also \
              --controller-quorum-voters). Unset: this node alone (it then needs no controller listener)",
    },
    BrokerKey {
        name: "listeners",
        default: "PLAINTEXT://127.0.0.1:9092",
        doc: "NAME://HOST:PORT,... to listen on (a bare HOST:PORT is a PLAINTEXT listener); port 0 picks a free port; \
              an empty host is every interface (also --listen)",
    },
    BrokerKey {
        name: "advertised.listeners",
        default: "",
        doc: "NAME://HOST:PORT,... clients are told to connect to, per listener name (a bare HOST:PORT is PLAINTEXT); \
              default: the bound address (also --advertised-listener)",
    },
    BrokerKey {
        name: "listener.security.protocol.map",
        default: "PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL",
        doc: "NAME:PROTOCOL,... the security protocol of each listener name; unset, the controller listener names \
              are PLAINTEXT too. Client listeners may use any of PLAINTEXT, SSL, SASL_PLAINTEXT and SASL_SSL \
              (see ssl.* and sasl.*); controller listeners, and the inter-broker one of a cluster, PLAINTEXT only",
    },
    BrokerKey {
        name: "controller.listener.names",
        default: "CONTROLLER",
        doc: "the listener names used by the metadata quorum (the first one on a broker-only node)",
    },
    BrokerKey {
        name: "inter.broker.listener.name",
        default: "PLAINTEXT",
        doc: "the listener other brokers connect to; must be advertised",
    },
    BrokerKey {
        name: "broker.rack",
        default: "",
        doc: "this broker's rack, for rack-aware replica placement (also --broker-rack)",
    },
    BrokerKey {
        name: "broker.session.timeout.ms",
        default: "9000",
        doc: "heartbeat silence after which the controller fences a broker",
    },
    BrokerKey {
        name: "broker.heartbeat.interval.ms",
        default: "2000",
        doc: "how often a broker heartbeats the controller; at most half of broker.session.timeout.ms",
    },
    BrokerKey {
        name: "controller.quorum.election.timeout.ms",
        default: "400",
        doc: "Raft's minimum election timeout: the random wait before and between elections is in \
              [this, controller.quorum.fetch.timeout.ms). Kafka's default is 1000 (see docs/cluster.md)",
    },
    BrokerKey {
        name: "controller.quorum.fetch.timeout.ms",
        default: "600",
        doc: "how long a controller trusts a silent leader before it may start an election (Raft's leader lease, \
              the maximum election timeout). Kafka's default is 2000 (see docs/cluster.md)",
    },
    BrokerKey {
        name: "log.dirs",
        default: "./sluice-data",
        doc: "the data directory (one directory; also log.dir, --data-dir)",
    },
    BrokerKey {
        name: "num.partitions",
        default: "1",
        doc: "partitions of auto-created topics and of CreateTopics requests with num_partitions = -1",
    },
    BrokerKey {
        name: "default.replication.factor",
        default: "1",
        doc: "replicas of auto-created topics and of CreateTopics requests with replication_factor = -1",
    },
    BrokerKey {
        name: "auto.leader.rebalance.enable",
        default: "true",
        doc: "the active controller moves leadership back to each partition's preferred replica (the first) \
              when it is in sync and usable, every leader.imbalance.check.interval.seconds",
    },
    BrokerKey {
        name: "leader.imbalance.check.interval.seconds",
        default: "300",
        doc: "how often the active controller restores preferred leaders (with auto.leader.rebalance.enable)",
    },
    BrokerKey {
        name: "leader.imbalance.check.interval.ms",
        default: "",
        doc: "Sluice-specific. the same interval in milliseconds, for tests; when set it wins over \
              leader.imbalance.check.interval.seconds",
    },
    BrokerKey {
        name: "auto.create.topics.enable",
        default: "true",
        doc: "create unknown topics named in Metadata requests that allow it",
    },
    BrokerKey {
        name: "socket.request.max.bytes",
        default: "104857600",
        doc: "largest request frame accepted; a larger one closes the connection",
    },
    BrokerKey {
        name: "max.connections",
        default: "10000",
        doc: "connections served at once; at the cap, the connection idle the longest is closed to admit a new one \
              (with none idle, new ones wait to be accepted)",
    },
    BrokerKey {
        name: "max.connections.per.ip",
        default: "1000",
        doc: "connections from one IP address; a further one is closed at once (Kafka's default is unlimited; \
              Sluice's keeps one address from taking every connection)",
    },
    BrokerKey {
        name: "max.connections.per.ip.overrides",
        default: "",
        doc: "per-address exceptions to max.connections.per.ip, as in Kafka: \"host:count,host:count\" \
              (IP addresses, or host names resolved once at start)",
    },
    BrokerKey {
        name: "connections.max.idle.ms",
        default: "600000",
        doc: "close a connection that has had no request in progress for this long",
    },
    BrokerKey {
        name: "queued.max.request.bytes",
        default: "536870912",
        doc: "bytes of requests larger than 16 KiB being read or waiting to be handled, over all connections; \
              when spent, the broker stops reading those requests until some are handled (backpressure); \
              one address may hold at most half of it (or socket.request.max.bytes if more); \
              must be >= socket.request.max.bytes (Kafka's default is unlimited)",
    },
    BrokerKey {
        name: "request.read.timeout.ms",
        default: "30000",
        doc: "Sluice-specific. close a connection whose request is incomplete and has received no bytes for this long \
              (a progress timeout; time spent waiting for queued.max.request.bytes does not count)",
    },
    BrokerKey {
        name: "quota.window.num",
        default: "11",
        doc: "samples a client quota's rate is measured over",
    },
    BrokerKey {
        name: "quota.window.size.seconds",
        default: "1",
        doc: "length of one client quota sample",
    },
    BrokerKey {
        name: "max.incremental.fetch.session.cache.slots",
        default: "1000",
        doc: "fetch sessions (KIP-227) the broker keeps; 0 creates none, so every consumer sends full fetches",
    },
    BrokerKey {
        name: "min.incremental.fetch.session.eviction.ms",
        default: "120000",
        doc: "a fetch session idle this long may be evicted to make room for a new one",
    },
    BrokerKey {
        name: "fetch.max.wait.ms",
        default: "300000",
        doc: "Sluice-specific. longest a Fetch waits for min_bytes, whatever its max_wait_ms asks \
              (the broker-side cap, as fetch.max.bytes caps max_bytes)",
    },
    BrokerKey {
        name: "replica.lag.time.max.ms",
        default: "30000",
        doc: "a follower that has not caught up with the leader's log end for this long leaves the ISR \
              (Kafka's rule: caught up = fetched at or past the leader's log end of its previous fetch)",
    },
    BrokerKey {
        name: "max.broker.partitions",
        default: "",
        doc: "most partitions this broker holds (KIP-578's name); CreateTopics, CreatePartitions and auto-creation \
              past it are refused with POLICY_VIOLATION. Unset: derived at start from the open-file limit and \
              vm.max_map_count (see docs/operations.md)",
    },
    BrokerKey {
        name: "message.max.decompressed.bytes",
        default: "67108864",
        doc: "Sluice's older name of max.decompressed.message.bytes (Kafka 4.4's), which wins when both are set",
    },
    BrokerKey {
        name: "log.retention.check.interval.ms",
        default: "300000",
        doc: "how often retention (retention.ms/.bytes) and segment.ms rolls are applied",
    },
    BrokerKey {
        name: "log.flush.policy",
        default: "os",
        doc: "Sluice-specific. os: leave write-back to the OS unless log.flush.interval.* say otherwise (Kafka's default; \
              acknowledged records survive a process crash, not a power loss); \
              always: fsync every append (batched into group commits) and answer acks=all produces only once their records are on disk \
              (they survive a power loss too); a topic chooses the same with flush.messages=1; \
              interval: fsync by log.flush.interval.messages / log.flush.interval.ms (see docs/durability.md)",
    },
    BrokerKey {
        name: "log.dir.min.free.bytes",
        default: "",
        doc: "Sluice-specific (like Redpanda's storage_min_free_bytes). Below this many free bytes on the data directory's \
              filesystem, Produce is refused with the retriable NOT_ENOUGH_REPLICAS (and a message saying why) before the disk is full, \
              so offset commits, checkpoints and metadata can still be written; 0 turns the floor off. \
              Default: 5% of the filesystem, at most 1 GiB (1073741824)",
    },
    BrokerKey {
        name: "log.retention.hours",
        default: "168",
        doc: "retention in hours, used when log.retention.ms and log.retention.minutes are unset",
    },
    BrokerKey {
        name: "log.retention.minutes",
        default: "",
        doc: "retention in minutes, used when log.retention.ms is unset",
    },
    BrokerKey {
        name: "log.roll.hours",
        default: "168",
        doc: "segment.ms default in hours, used when log.roll.ms is unset",
    },
    BrokerKey {
        name: "log.dir",
        default: "",
        doc: "alias of log.dirs",
    },
    BrokerKey {
        name: "group.initial.rebalance.delay.ms",
        default: "3000",
        doc: "how long the first rebalance of an empty consumer group waits for more members",
    },
    BrokerKey {
        name: "group.min.session.timeout.ms",
        default: "6000",
        doc: "smallest session.timeout.ms a group member may ask for",
    },
    BrokerKey {
        name: "group.max.session.timeout.ms",
        default: "1800000",
        doc: "largest session.timeout.ms a group member may ask for",
    },
    BrokerKey {
        name: "offsets.topic.num.partitions",
        default: "50",
        doc: "partitions of __consumer_offsets when it is created (an existing topic keeps its count)",
    },
    BrokerKey {
        name: "offsets.topic.replication.factor",
        default: "3",
        doc: "replicas of each __consumer_offsets partition when it is created, at most the cluster's \
              nodes (registered brokers, or the voters on combined nodes); it is created once that many brokers are live \
              (an existing topic keeps its replicas)",
    },
];

/// Every property name the broker accepts.
pub fn property_names() -> impl Iterator<Item = &'static str> {
    BROKER_KEYS
        .iter()
        .chain(replica_fetch::KEYS)
        .chain(cleaner::KEYS)
        .chain(observability::KEYS)
        .chain(security::KEYS)
        .map(|k| k.name)
        .chain(topic_config::KEYS.iter().filter_map(|k| k.broker_name))
}

/// Whether `name` is a property the broker accepts: one of [`property_names`] or a
/// per-listener override (`listener.name.<name>.ssl.*`; see `security`).
pub fn is_known_property(name: &str) -> bool {
    property_names().any(|known| known == name) || security::is_listener_property(name)
}

/// The environment variable that sets `property`.
pub fn env_var_name(property: &str) -> String {
    format!(
        "SLUICE_{}",
        property.to_ascii_uppercase().replace(['.', '-'], "_")
    )
}

/// Help text listing every property with its default, for `--help`.
pub fn properties_help() -> String {
    let defaults = TopicConfig::default();
    let mut out = String::from(
        "Properties (TOML file keys, quoted: \"num.partitions\" = 3; env SLUICE_NUM_PARTITIONS=3; flags win over env, env over the file):\n",
    );
    for key in BROKER_KEYS
        .iter()
        .chain(replica_fetch::KEYS)
        .chain(cleaner::KEYS)
        .chain(observability::KEYS)
        .chain(security::KEYS)
    {
        let default = if key.default.is_empty() {
            "unset"
        } else {
            key.default
        };
        out.push_str(&format!(
            "  {} (default {default})\n      {}\n",
            key.name, key.doc
        ));
    }
    for key in topic_config::KEYS {
        let Some(broker_name) = key.broker_name else {
            continue;
        };
        out.push_str(&format!(
            "  {broker_name} (default {}; topic config {})\n      {}\n",
            key.value(&defaults),
            key.name,
            key.documentation()
        ));
    }
    out
}

/// The broker's configuration.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Runs the single-node broker of releases before the cluster (no metadata quorum,
    /// topics and configs kept in the data directory), whose data directories a cluster
    /// node upgrades in place. No property sets it: tests use it to write such a
    /// directory. It goes with that code once upgrades from those releases end.
    #[doc(hidden)]
    pub legacy_single_node: bool,
    pub node_id: i32,
    /// Roles, quorum voters, listeners (`listeners`, `advertised.listeners`) and the other
    /// cluster properties.
    pub cluster: ClusterConfig,
    pub data_dir: PathBuf,
    pub num_partitions: i32,
    /// `default.replication.factor`.
    pub default_replication_factor: i16,
    /// `offsets.topic.replication.factor`.
    pub offsets_topic_replication_factor: i16,
    /// `auto.leader.rebalance.enable`.
    pub auto_leader_rebalance_enable: bool,
    /// `leader.imbalance.check.interval.seconds` (or `.ms`), in milliseconds.
    pub leader_imbalance_check_interval_ms: u64,
    pub auto_create_topics: bool,
    pub socket_request_max_bytes: usize,
    pub max_connections: usize,
    /// `max.broker.partitions`; `None`: derived from the process's limits at start, which
    /// then sets it to the derived value (so that DescribeConfigs shows what applies).
    pub max_broker_partitions: Option<usize>,
    /// `max.connections.per.ip`.
    pub max_connections_per_ip: usize,
    /// `max.connections.per.ip.overrides`, by address.
    pub max_connections_per_ip_overrides: HashMap<IpAddr, usize>,
    /// `connections.max.idle.ms`.
    pub connections_max_idle_ms: u64,
    /// `queued.max.request.bytes`.
    pub queued_max_request_bytes: usize,
    /// `request.read.timeout.ms`.
    pub request_read_timeout_ms: u64,
    /// `fetch.max.wait.ms`: the cap on a Fetch's `max_wait_ms`.
    pub fetch_max_wait_ms: u64,
    /// `quota.window.num`.
    pub quota_window_num: usize,
    /// `quota.window.size.seconds`.
    pub quota_window_size_seconds: u64,
    /// `max.incremental.fetch.session.cache.slots`.
    pub fetch_session_slots: usize,
    /// `min.incremental.fetch.session.eviction.ms`.
    pub fetch_session_eviction_ms: u64,
    /// `replica.lag.time.max.ms`: how long a follower may lag before it leaves the ISR.
    pub replica_lag_time_max_ms: u64,
    pub retention_check_interval_ms: u64,
    pub flush_mode: FlushMode,
    /// `log.dir.min.free.bytes`; `None`: 5% of the filesystem, at most 1 GiB.
    pub min_free_bytes: Option<u64>,
    /// The consumer-group coordinator's settings (`group.*`, `offsets.topic.*`).
    pub group_coordinator: CoordinatorConfig,
    /// The follower fetcher's settings (`replica.fetch.*`, `num.replica.fetchers`).
    pub replica_fetch: ReplicaFetchConfig,
    /// The log cleaner (`log.cleaner.*`; see `cleaner`).
    pub cleaner: CleanerConfig,
    /// The admin listener, metric series, log format and slow-request log.
    pub observability: ObservabilityConfig,
    /// Defaults of every topic config (from the `log.*` broker properties).
    pub topic_defaults: TopicConfig,
    /// TLS and SASL settings of the client listeners (`ssl.*`, `sasl.*`).
    pub security: SecurityConfig,
    /// Properties set explicitly (by file, env or flag), reported by DescribeConfigs as
    /// static broker configs.
    pub explicit: BTreeMap<String, String>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        // Cannot fail: every default parses.
        BrokerConfig::from_properties(&BTreeMap::new()).unwrap_or_else(|e| {
            unreachable!("built-in defaults must parse: {e}");
        })
    }
}

fn invalid(name: &str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::InvalidValue {
        name: name.to_owned(),
        value: value.to_owned(),
        reason: reason.into(),
    }
}

fn parse_num<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, ConfigError> {
    value
        .trim()
        .parse()
        .map_err(|_| invalid(name, value, "not a valid number"))
}

fn parse_bool(name: &str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(invalid(name, value, "expected true or false")),
    }
}

impl BrokerConfig {
    /// Parses a flat property map (Kafka names). Missing properties take their defaults.
    pub fn from_properties(props: &BTreeMap<String, String>) -> Result<BrokerConfig, ConfigError> {
        for name in props.keys() {
            if !is_known_property(name) {
                return Err(ConfigError::UnknownProperty {
                    name: name.clone(),
                    origin: "configuration".to_owned(),
                });
            }
        }
        let get = |name: &str| -> Option<&str> {
            props
                .get(name)
                .map(String::as_str)
                .filter(|v| !v.trim().is_empty())
        };
        let default_of = |name: &str| {
            BROKER_KEYS
                .iter()
                .find(|k| k.name == name)
                .map_or("", |k| k.default)
        };
        let value = |name: &'static str| get(name).unwrap_or_else(|| default_of(name));

        let node_id: i32 = parse_num("node.id", value("node.id"))?;
        if node_id < 0 {
            return Err(invalid("node.id", value("node.id"), "must be >= 0"));
        }
        let cluster = ClusterConfig::parse(node_id, &get, &value)?;
        let security = SecurityConfig::parse(&cluster, &get)?;
        let data_dir = PathBuf::from(
            get("log.dirs")
                .or_else(|| get("log.dir"))
                .unwrap_or_else(|| default_of("log.dirs")),
        );
        if data_dir.to_string_lossy().contains(',') {
            return Err(invalid(
                "log.dirs",
                &data_dir.to_string_lossy(),
                "Sluice uses one data directory",
            ));
        }
        let num_partitions: i32 = parse_num("num.partitions", value("num.partitions"))?;
        if num_partitions < 1 {
            return Err(invalid(
                "num.partitions",
                value("num.partitions"),
                "must be >= 1",
            ));
        }
        let at_least_one_i16 = |name: &'static str| -> Result<i16, ConfigError> {
            let n: i16 = parse_num(name, value(name))?;
            if n < 1 {
                return Err(invalid(name, value(name), "must be >= 1"));
            }
            Ok(n)
        };
        let default_replication_factor = at_least_one_i16("default.replication.factor")?;
        let offsets_topic_replication_factor =
            at_least_one_i16("offsets.topic.replication.factor")?;
        let auto_leader_rebalance_enable = parse_bool(
            "auto.leader.rebalance.enable",
            value("auto.leader.rebalance.enable"),
        )?;
        let leader_imbalance_check_interval_ms = match get("leader.imbalance.check.interval.ms") {
            Some(v) => parse_num::<u64>("leader.imbalance.check.interval.ms", v)?,
            None => parse_num::<u64>(
                "leader.imbalance.check.interval.seconds",
                value("leader.imbalance.check.interval.seconds"),
            )?
            .saturating_mul(1000),
        };
        if leader_imbalance_check_interval_ms == 0 {
            return Err(invalid(
                "leader.imbalance.check.interval.seconds",
                value("leader.imbalance.check.interval.seconds"),
                "must be >= 1",
            ));
        }
        let auto_create_topics = parse_bool(
            "auto.create.topics.enable",
            value("auto.create.topics.enable"),
        )?;
        let socket_request_max_bytes: usize = parse_num(
            "socket.request.max.bytes",
            value("socket.request.max.bytes"),
        )?;
        if socket_request_max_bytes < 8 || socket_request_max_bytes > i32::MAX as usize {
            return Err(invalid(
                "socket.request.max.bytes",
                value("socket.request.max.bytes"),
                "must be between 8 and 2147483647",
            ));
        }
        let max_connections: usize = parse_num("max.connections", value("max.connections"))?;
        if max_connections == 0 {
            return Err(invalid(
                "max.connections",
                value("max.connections"),
                "must be >= 1",
            ));
        }
        let max_broker_partitions = match get("max.broker.partitions") {
            Some(v) => {
                let max: usize = parse_num("max.broker.partitions", v)?;
                if max == 0 {
                    return Err(invalid("max.broker.partitions", v, "must be >= 1"));
                }
                Some(max)
            }
            None => None,
        };
        let max_connections_per_ip: usize =
            parse_num("max.connections.per.ip", value("max.connections.per.ip"))?;
        if max_connections_per_ip == 0 {
            return Err(invalid(
                "max.connections.per.ip",
                value("max.connections.per.ip"),
                "must be >= 1",
            ));
        }
        let max_connections_per_ip_overrides =
            parse_ip_overrides(value("max.connections.per.ip.overrides"))?;
        let positive_ms = |name: &'static str| -> Result<u64, ConfigError> {
            let ms: u64 = parse_num(name, value(name))?;
            if ms == 0 {
                return Err(invalid(name, value(name), "must be >= 1"));
            }
            Ok(ms)
        };
        let connections_max_idle_ms = positive_ms("connections.max.idle.ms")?;
        let request_read_timeout_ms = positive_ms("request.read.timeout.ms")?;
        // At 0 every long poll would return at once and consumers would spin.
        let fetch_max_wait_ms = positive_ms("fetch.max.wait.ms")?;
        let quota_window_num: usize = parse_num("quota.window.num", value("quota.window.num"))?;
        let quota_window_size_seconds: u64 = parse_num(
            "quota.window.size.seconds",
            value("quota.window.size.seconds"),
        )?;
        for (name, v) in [
            ("quota.window.num", quota_window_num as u64),
            ("quota.window.size.seconds", quota_window_size_seconds),
        ] {
            if v < 1 {
                return Err(invalid(name, value(name), "must be >= 1"));
            }
        }
        let fetch_session_slots: usize = parse_num(
            "max.incremental.fetch.session.cache.slots",
            value("max.incremental.fetch.session.cache.slots"),
        )?;
        let fetch_session_eviction_ms: u64 = parse_num(
            "min.incremental.fetch.session.eviction.ms",
            value("min.incremental.fetch.session.eviction.ms"),
        )?;
        let replica_lag_time_max_ms = positive_ms("replica.lag.time.max.ms")?;
        let queued_max_request_bytes: usize = parse_num(
            "queued.max.request.bytes",
            value("queued.max.request.bytes"),
        )?;
        // A smaller budget could never admit a request of the largest allowed size.
        if queued_max_request_bytes < socket_request_max_bytes {
            return Err(invalid(
                "queued.max.request.bytes",
                value("queued.max.request.bytes"),
                format!("must be >= socket.request.max.bytes ({socket_request_max_bytes})"),
            ));
        }
        // tokio's semaphore holds at most usize::MAX >> 3 permits.
        if queued_max_request_bytes > (usize::MAX >> 3) {
            return Err(invalid(
                "queued.max.request.bytes",
                value("queued.max.request.bytes"),
                "too large",
            ));
        }
        let retention_check_interval_ms: u64 = parse_num(
            "log.retention.check.interval.ms",
            value("log.retention.check.interval.ms"),
        )?;
        if retention_check_interval_ms == 0 {
            return Err(invalid(
                "log.retention.check.interval.ms",
                "0",
                "must be >= 1",
            ));
        }
        let flush_mode = FlushMode::parse(value("log.flush.policy"))
            .map_err(|e| invalid("log.flush.policy", value("log.flush.policy"), e))?;
        let min_free_bytes = get("log.dir.min.free.bytes")
            .map(|v| parse_num::<u64>("log.dir.min.free.bytes", v))
            .transpose()?;

        let max_decompressed_bytes: i64 = parse_num(
            "message.max.decompressed.bytes",
            value("message.max.decompressed.bytes"),
        )?;
        if max_decompressed_bytes < 1 {
            return Err(invalid(
                "message.max.decompressed.bytes",
                value("message.max.decompressed.bytes"),
                "must be >= 1",
            ));
        }
        let mut topic_defaults = TopicConfig {
            max_decompressed_bytes,
            ..TopicConfig::default()
        };
        // Kafka's fallbacks: log.retention.ms > .minutes > .hours, log.roll.ms > .hours.
        if get("log.retention.ms").is_none() {
            if let Some(minutes) = get("log.retention.minutes") {
                let m: i64 = parse_num("log.retention.minutes", minutes)?;
                topic_defaults.retention_ms = if m < 0 { -1 } else { m.saturating_mul(60_000) };
            } else {
                let h: i64 = parse_num("log.retention.hours", value("log.retention.hours"))?;
                topic_defaults.retention_ms = if h < 0 {
                    -1
                } else {
                    h.saturating_mul(3_600_000)
                };
            }
        }
        if get("log.roll.ms").is_none() {
            let h: i64 = parse_num("log.roll.hours", value("log.roll.hours"))?;
            if h < 1 {
                return Err(invalid(
                    "log.roll.hours",
                    value("log.roll.hours"),
                    "must be >= 1",
                ));
            }
            topic_defaults.segment_ms = h.saturating_mul(3_600_000);
        }
        for key in topic_config::KEYS {
            let Some(broker_name) = key.broker_name else {
                continue;
            };
            if let Some(v) = get(broker_name) {
                key.apply(&mut topic_defaults, v)
                    .map_err(|reason| invalid(broker_name, v, reason))?;
            }
        }

        Ok(BrokerConfig {
            legacy_single_node: false,
            node_id,
            cluster,
            data_dir,
            num_partitions,
            default_replication_factor,
            offsets_topic_replication_factor,
            auto_leader_rebalance_enable,
            leader_imbalance_check_interval_ms,
            auto_create_topics,
            socket_request_max_bytes,
            max_connections,
            max_broker_partitions,
            max_connections_per_ip,
            max_connections_per_ip_overrides,
            connections_max_idle_ms,
            queued_max_request_bytes,
            request_read_timeout_ms,
            fetch_max_wait_ms,
            fetch_session_slots,
            fetch_session_eviction_ms,
            quota_window_num,
            quota_window_size_seconds,
            replica_lag_time_max_ms,
            retention_check_interval_ms,
            flush_mode,
            min_free_bytes,
            group_coordinator: parse_group_coordinator(&value)?,
            replica_fetch: ReplicaFetchConfig::parse(&get)?,
            cleaner: CleanerConfig::parse(&get)?,
            observability: ObservabilityConfig::parse(&get)?,
            security,
            topic_defaults,
            explicit: props
                .iter()
                .filter(|(_, v)| !v.trim().is_empty())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        })
    }

    /// Every broker property with its effective value, for DescribeConfigs.
    pub fn describe(&self) -> Vec<(String, String)> {
        let mut out = vec![
            ("node.id".to_owned(), self.node_id.to_string()),
            (
                "log.dirs".to_owned(),
                self.data_dir.to_string_lossy().into_owned(),
            ),
            ("num.partitions".to_owned(), self.num_partitions.to_string()),
            (
                "default.replication.factor".to_owned(),
                self.default_replication_factor.to_string(),
            ),
            (
                "offsets.topic.replication.factor".to_owned(),
                self.offsets_topic_replication_factor.to_string(),
            ),
            (
                "auto.leader.rebalance.enable".to_owned(),
                self.auto_leader_rebalance_enable.to_string(),
            ),
            (
                "leader.imbalance.check.interval.seconds".to_owned(),
                (self.leader_imbalance_check_interval_ms / 1000).to_string(),
            ),
            (
                "leader.imbalance.check.interval.ms".to_owned(),
                self.leader_imbalance_check_interval_ms.to_string(),
            ),
            (
                "auto.create.topics.enable".to_owned(),
                self.auto_create_topics.to_string(),
            ),
            (
                "socket.request.max.bytes".to_owned(),
                self.socket_request_max_bytes.to_string(),
            ),
            (
                "max.connections".to_owned(),
                self.max_connections.to_string(),
            ),
            (
                "max.broker.partitions".to_owned(),
                self.max_broker_partitions
                    .map(|m| m.to_string())
                    .unwrap_or_default(),
            ),
            (
                "max.connections.per.ip".to_owned(),
                self.max_connections_per_ip.to_string(),
            ),
            (
                "max.connections.per.ip.overrides".to_owned(),
                self.explicit
                    .get("max.connections.per.ip.overrides")
                    .cloned()
                    .unwrap_or_default(),
            ),
            (
                "connections.max.idle.ms".to_owned(),
                self.connections_max_idle_ms.to_string(),
            ),
            (
                "queued.max.request.bytes".to_owned(),
                self.queued_max_request_bytes.to_string(),
            ),
            (
                "request.read.timeout.ms".to_owned(),
                self.request_read_timeout_ms.to_string(),
            ),
            (
                "fetch.max.wait.ms".to_owned(),
                self.fetch_max_wait_ms.to_string(),
            ),
            (
                "quota.window.num".to_owned(),
                self.quota_window_num.to_string(),
            ),
            (
                "quota.window.size.seconds".to_owned(),
                self.quota_window_size_seconds.to_string(),
            ),
            (
                "max.incremental.fetch.session.cache.slots".to_owned(),
                self.fetch_session_slots.to_string(),
            ),
            (
                "min.incremental.fetch.session.eviction.ms".to_owned(),
                self.fetch_session_eviction_ms.to_string(),
            ),
            (
                "replica.lag.time.max.ms".to_owned(),
                self.replica_lag_time_max_ms.to_string(),
            ),
            (
                "message.max.decompressed.bytes".to_owned(),
                self.topic_defaults.max_decompressed_bytes.to_string(),
            ),
            (
                "log.retention.check.interval.ms".to_owned(),
                self.retention_check_interval_ms.to_string(),
            ),
            (
                "log.flush.policy".to_owned(),
                self.flush_mode.as_str().to_owned(),
            ),
            (
                "log.dir.min.free.bytes".to_owned(),
                self.min_free_bytes
                    .map(|b| b.to_string())
                    .unwrap_or_default(),
            ),
            (
                "group.initial.rebalance.delay.ms".to_owned(),
                self.group_coordinator
                    .group_initial_rebalance_delay_ms
                    .to_string(),
            ),
            (
                "group.min.session.timeout.ms".to_owned(),
                self.group_coordinator
                    .group_min_session_timeout_ms
                    .to_string(),
            ),
            (
                "group.max.session.timeout.ms".to_owned(),
                self.group_coordinator
                    .group_max_session_timeout_ms
                    .to_string(),
            ),
            (
                "offsets.topic.num.partitions".to_owned(),
                self.group_coordinator
                    .offsets_topic_num_partitions
                    .to_string(),
            ),
        ];
        out.extend(self.cluster.describe());
        out.extend(self.replica_fetch.describe());
        out.extend(self.cleaner.describe());
        out.extend(self.observability.describe());
        out.extend(self.security.describe());
        for key in topic_config::KEYS {
            if let Some(broker_name) = key.broker_name {
                out.push((broker_name.to_owned(), key.value(&self.topic_defaults)));
            }
        }
        out
    }
}

/// Kafka's `max.connections.per.ip.overrides` format: `host:count,host:count`. A host is
/// an IP address (IPv6 in brackets or bare) or a name, resolved now to all its addresses.
fn parse_ip_overrides(text: &str) -> Result<HashMap<IpAddr, usize>, ConfigError> {
    const NAME: &str = "max.connections.per.ip.overrides";
    let mut out = HashMap::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (host, count) = entry
            .rsplit_once(':')
            .ok_or_else(|| invalid(NAME, entry, "expected host:count"))?;
        let count: usize = count
            .trim()
            .parse()
            .map_err(|_| invalid(NAME, entry, "the count is not a number"))?;
        let host = host.trim().trim_start_matches('[').trim_end_matches(']');
        let addresses: Vec<IpAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![ip.to_canonical()],
            Err(_) => (host, 0)
                .to_socket_addrs()
                .map_err(|e| invalid(NAME, entry, format!("cannot resolve {host}: {e}")))?
                .map(|a| a.ip().to_canonical())
                .collect(),
        };
        if addresses.is_empty() {
            return Err(invalid(NAME, entry, format!("{host} has no address")));
        }
        for ip in addresses {
            out.insert(ip, count);
        }
    }
    Ok(out)
}

/// The group coordinator's properties; `value` gives a property's value or default.
fn parse_group_coordinator<'a>(
    value: &dyn Fn(&'static str) -> &'a str,
) -> Result<CoordinatorConfig, ConfigError> {
    let at_least = |name: &'static str, min: i32| -> Result<i32, ConfigError> {
        let parsed: i32 = parse_num(name, value(name))?;
        if parsed < min {
            return Err(invalid(name, value(name), format!("must be >= {min}")));
        }
        Ok(parsed)
    };
    let config = CoordinatorConfig {
        group_initial_rebalance_delay_ms: at_least("group.initial.rebalance.delay.ms", 0)?,
        group_min_session_timeout_ms: at_least("group.min.session.timeout.ms", 0)?,
        group_max_session_timeout_ms: at_least("group.max.session.timeout.ms", 0)?,
        offsets_topic_num_partitions: at_least("offsets.topic.num.partitions", 1)?,
        ..CoordinatorConfig::default()
    };
    if config.group_max_session_timeout_ms < config.group_min_session_timeout_ms {
        return Err(invalid(
            "group.max.session.timeout.ms",
            value("group.max.session.timeout.ms"),
            "must be >= group.min.session.timeout.ms",
        ));
    }
    Ok(config)
}

/// Reads a TOML config file into a flat property map.
pub fn read_toml_file(path: &Path) -> Result<BTreeMap<String, String>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let table: toml::Table = toml::from_str(&text).map_err(|source| ConfigError::Toml {
        path: path.to_owned(),
        source,
    })?;
    let mut out = BTreeMap::new();
    flatten_toml("", &table, &mut out)?;
    for name in out.keys() {
        if !is_known_property(name) {
            return Err(ConfigError::UnknownProperty {
                name: name.clone(),
                origin: path.display().to_string(),
            });
        }
    }
    Ok(out)
}

fn flatten_toml(
    prefix: &str,
    table: &toml::Table,
    out: &mut BTreeMap<String, String>,
) -> Result<(), ConfigError> {
    for (key, value) in table {
        let name = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        let text = match value {
            toml::Value::Table(inner) => {
                flatten_toml(&name, inner, out)?;
                continue;
            }
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Array(items) => {
                let mut parts = Vec::with_capacity(items.len());
                for item in items {
                    match item {
                        toml::Value::String(s) => parts.push(s.clone()),
                        toml::Value::Integer(i) => parts.push(i.to_string()),
                        other => {
                            return Err(invalid(&name, &other.to_string(), "unsupported list item"))
                        }
                    }
                }
                parts.join(",")
            }
            toml::Value::Datetime(d) => {
                return Err(invalid(
                    &name,
                    &d.to_string(),
                    "dates are not a valid value",
                ))
            }
        };
        out.insert(name, text);
    }
    Ok(())
}

/// The `SLUICE_*` variables among `vars` that name a known property, as a property map.
pub fn env_properties(
    vars: impl IntoIterator<Item = (String, String)>,
) -> BTreeMap<String, String> {
    let vars: BTreeMap<String, String> = vars.into_iter().collect();
    property_names()
        .filter_map(|name| {
            vars.get(&env_var_name(name))
                .map(|v| (name.to_owned(), v.clone()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_kafkas() {
        let c = BrokerConfig::default();
        assert_eq!(
            c.cluster.served_listeners().unwrap().clients[0].bind_address(),
            "127.0.0.1:9092"
        );
        assert_eq!(c.data_dir, PathBuf::from("./sluice-data"));
        assert_eq!(c.num_partitions, 1);
        assert!(c.auto_create_topics);
        assert_eq!(c.socket_request_max_bytes, 100 * 1024 * 1024);
        assert_eq!(c.topic_defaults.retention_ms, 168 * 3_600_000);
        assert_eq!(c.flush_mode, FlushMode::Os);
    }

    #[test]
    fn replication_properties_have_kafkas_defaults_and_bounds() {
        let c = BrokerConfig::from_properties(&props(&[])).unwrap();
        assert_eq!(c.default_replication_factor, 1);
        assert_eq!(c.offsets_topic_replication_factor, 3);
        assert!(c.auto_leader_rebalance_enable);
        assert_eq!(c.leader_imbalance_check_interval_ms, 300_000);
        assert_eq!(c.topic_defaults.min_insync_replicas, 1);
        assert!(!c.topic_defaults.unclean_leader_election_enable);
        let c = BrokerConfig::from_properties(&props(&[
            ("default.replication.factor", "3"),
            ("offsets.topic.replication.factor", "1"),
            ("auto.leader.rebalance.enable", "false"),
            ("leader.imbalance.check.interval.seconds", "5"),
            ("min.insync.replicas", "2"),
            ("unclean.leader.election.enable", "true"),
        ]))
        .unwrap();
        assert_eq!(
            (
                c.default_replication_factor,
                c.offsets_topic_replication_factor
            ),
            (3, 1)
        );
        assert!(!c.auto_leader_rebalance_enable);
        assert_eq!(c.leader_imbalance_check_interval_ms, 5_000);
        assert_eq!(c.topic_defaults.min_insync_replicas, 2);
        assert!(c.topic_defaults.unclean_leader_election_enable);
        // The Sluice-specific millisecond form wins (for tests).
        let c = BrokerConfig::from_properties(&props(&[
            ("leader.imbalance.check.interval.seconds", "5"),
            ("leader.imbalance.check.interval.ms", "250"),
        ]))
        .unwrap();
        assert_eq!(c.leader_imbalance_check_interval_ms, 250);
        let described: BTreeMap<String, String> = c.describe().into_iter().collect();
        assert_eq!(described["leader.imbalance.check.interval.ms"], "250");
        assert_eq!(described["default.replication.factor"], "1");
        assert_eq!(described["unclean.leader.election.enable"], "false");
        for bad in [
            ("default.replication.factor", "0"),
            ("offsets.topic.replication.factor", "-1"),
            ("leader.imbalance.check.interval.seconds", "0"),
            ("min.insync.replicas", "0"),
            ("unclean.leader.election.enable", "yes"),
            ("auto.leader.rebalance.enable", "1"),
        ] {
            assert!(
                BrokerConfig::from_properties(&props(&[bad])).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn kafka_fallbacks_and_overrides() {
        let c = BrokerConfig::from_properties(&props(&[
            ("log.retention.hours", "1"),
            ("log.segment.bytes", "1048576"),
            ("listeners", "PLAINTEXT://0.0.0.0:0"),
            ("log.flush.policy", "always"),
        ]))
        .unwrap();
        assert_eq!(c.topic_defaults.retention_ms, 3_600_000);
        assert_eq!(c.topic_defaults.segment_bytes, 1_048_576);
        assert_eq!(c.cluster.listeners[0].bind_address(), "0.0.0.0:0");
        assert_eq!(c.flush_mode, FlushMode::Always);
        let c = BrokerConfig::from_properties(&props(&[
            ("log.retention.hours", "1"),
            ("log.retention.ms", "5"),
        ]))
        .unwrap();
        assert_eq!(c.topic_defaults.retention_ms, 5);
    }

    #[test]
    fn bad_values_and_names_are_errors() {
        assert!(BrokerConfig::from_properties(&props(&[("num.partition", "3")])).is_err());
        assert!(BrokerConfig::from_properties(&props(&[("num.partitions", "x")])).is_err());
        assert!(BrokerConfig::from_properties(&props(&[("num.partitions", "0")])).is_err());
        assert!(BrokerConfig::from_properties(&props(&[("listeners", "nope")])).is_err());
        assert!(BrokerConfig::from_properties(&props(&[("log.flush.policy", "x")])).is_err());
    }

    #[test]
    fn connection_limits_parse_like_kafka() {
        let c = BrokerConfig::default();
        assert_eq!(c.connections_max_idle_ms, 600_000);
        assert!(
            c.max_connections_per_ip < c.max_connections,
            "one address cannot take every connection by default"
        );
        assert!(c.queued_max_request_bytes >= c.socket_request_max_bytes);
        let c = BrokerConfig::from_properties(&props(&[(
            "max.connections.per.ip.overrides",
            "127.0.0.2:5, [::1]:7,localhost:9",
        )]))
        .unwrap();
        let o = &c.max_connections_per_ip_overrides;
        assert_eq!(o[&"127.0.0.2".parse::<IpAddr>().unwrap()], 5);
        assert_eq!(
            o[&"127.0.0.1".parse::<IpAddr>().unwrap()],
            9,
            "localhost resolved"
        );
        assert!(BrokerConfig::from_properties(&props(&[(
            "max.connections.per.ip.overrides",
            "127.0.0.2"
        )]))
        .is_err());
        assert!(BrokerConfig::from_properties(&props(&[(
            "max.connections.per.ip.overrides",
            "127.0.0.2:x"
        )]))
        .is_err());
        assert!(
            BrokerConfig::from_properties(&props(&[("queued.max.request.bytes", "1000")])).is_err()
        );
        assert!(
            BrokerConfig::from_properties(&props(&[("connections.max.idle.ms", "0")])).is_err()
        );
        for name in ["request.read.timeout.ms", "fetch.max.wait.ms"] {
            assert!(
                BrokerConfig::from_properties(&props(&[(name, "0")])).is_err(),
                "{name}=0"
            );
            BrokerConfig::from_properties(&props(&[(name, "1")])).unwrap();
        }
    }

    #[test]
    fn toml_quoted_and_nested_keys_flatten_alike() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broker.toml");
        std::fs::write(
            &path,
            "\"num.partitions\" = 3\nlog.segment.bytes = 2048\n\"auto.create.topics.enable\" = false\n",
        )
        .unwrap();
        let map = read_toml_file(&path).unwrap();
        assert_eq!(map["num.partitions"], "3");
        assert_eq!(map["log.segment.bytes"], "2048");
        let c = BrokerConfig::from_properties(&map).unwrap();
        assert_eq!(c.num_partitions, 3);
        assert!(!c.auto_create_topics);
        std::fs::write(&path, "\"num.partitionz\" = 3\n").unwrap();
        assert!(matches!(
            read_toml_file(&path),
            Err(ConfigError::UnknownProperty { .. })
        ));
    }

    #[test]
    fn env_names_follow_the_property_names() {
        assert_eq!(env_var_name("num.partitions"), "SLUICE_NUM_PARTITIONS");
        let env = env_properties(vec![
            ("SLUICE_LOG_SEGMENT_BYTES".to_owned(), "4096".to_owned()),
            ("SLUICE_BOOTSTRAP".to_owned(), "x".to_owned()),
        ]);
        assert_eq!(env, props(&[("log.segment.bytes", "4096")]));
    }
}
