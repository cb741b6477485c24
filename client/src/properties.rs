//! Kafka's client property names (`max.request.size=2097152`, `linger.ms=20`) applied
//! to this library's configurations, for tools that take settings from a user: kcat's
//! and rpk's `-X key=value`, the Java tools' `--producer-property`, a `.properties` file.
//!
//! [`Properties`] checks every name and value when it is set, so a typo is reported at
//! once (with the closest known name), not silently ignored. Each property belongs to
//! the common client settings, the producer, or the consumer; applying a set to a
//! producer leaves the consumer's properties alone and the other way round, as the Java
//! client and librdkafka do with a shared configuration file.

use std::time::Duration;

use crate::consumer::{Assignor, AutoOffsetReset, IsolationLevel};
use crate::error::{Error, Result};
use crate::producer::{Acks, ProducerConfig};
use crate::security::{SaslMechanism, SecurityProtocol};
use crate::{ClientConfig, Compression, ConsumerConfig};

/// Which configuration a property belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every client: addresses, timeouts, retries.
    Common,
    Producer,
    Consumer,
}

/// A typed value of one property, parsed when it is set.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Text(String),
    Millis(Duration),
    Bytes(usize),
    Count(u32),
    Flag(bool),
    Acks(Acks),
    Compression(Compression),
    Reset(AutoOffsetReset),
    Isolation(IsolationLevel),
    Assignors(Vec<Assignor>),
    Protocol(SecurityProtocol),
    Mechanism(SaslMechanism),
    Path(std::path::PathBuf),
    Secret(Secret),
}

/// A password: kept, never printed (`{:?}` of a [`Properties`] shows `***`).
#[derive(Clone, PartialEq)]
struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// How a property's value is written and checked.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Text,
    /// A whole number of milliseconds.
    Millis,
    /// A positive number of bytes.
    Bytes,
    /// A number of bytes, 0 allowed.
    ByteCount,
    /// A whole number >= 0.
    Count,
    /// `true` or `false`.
    Flag,
    Acks,
    Compression,
    Reset,
    Isolation,
    Assignors,
    /// `security.protocol`: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.
    SecurityProtocol,
    /// `sasl.mechanism`: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
    SaslMechanism,
    /// A path to a file that must exist.
    File,
    /// Text never shown (a password).
    Secret,
}

/// Every property this library understands: name, scope, kind.
const KNOWN: &[(&str, Scope, Kind)] = &[
    ("bootstrap.servers", Scope::Common, Kind::Text),
    ("client.id", Scope::Common, Kind::Text),
    (
        "socket.connection.setup.timeout.ms",
        Scope::Common,
        Kind::Millis,
    ),
    ("request.timeout.ms", Scope::Common, Kind::Millis),
    ("retry.backoff.ms", Scope::Common, Kind::Millis),
    ("retry.backoff.max.ms", Scope::Common, Kind::Millis),
    ("default.api.timeout.ms", Scope::Common, Kind::Millis),
    ("metadata.max.age.ms", Scope::Common, Kind::Millis),
    ("security.protocol", Scope::Common, Kind::SecurityProtocol),
    ("sasl.mechanism", Scope::Common, Kind::SaslMechanism),
    // librdkafka's (and kcat's) spelling of the same.
    ("sasl.mechanisms", Scope::Common, Kind::SaslMechanism),
    ("sasl.username", Scope::Common, Kind::Text),
    ("sasl.password", Scope::Common, Kind::Secret),
    ("ssl.ca.location", Scope::Common, Kind::File),
    ("ssl.certificate.location", Scope::Common, Kind::File),
    ("ssl.key.location", Scope::Common, Kind::File),
    ("acks", Scope::Producer, Kind::Acks),
    ("compression.type", Scope::Producer, Kind::Compression),
    ("linger.ms", Scope::Producer, Kind::Millis),
    ("batch.size", Scope::Producer, Kind::Bytes),
    ("max.request.size", Scope::Producer, Kind::Bytes),
    ("buffer.memory", Scope::Producer, Kind::Bytes),
    ("retries", Scope::Producer, Kind::Count),
    ("delivery.timeout.ms", Scope::Producer, Kind::Millis),
    (
        "max.in.flight.requests.per.connection",
        Scope::Producer,
        Kind::Count,
    ),
    ("max.block.ms", Scope::Producer, Kind::Millis),
    ("enable.idempotence", Scope::Producer, Kind::Flag),
    ("group.id", Scope::Consumer, Kind::Text),
    ("group.instance.id", Scope::Consumer, Kind::Text),
    ("auto.offset.reset", Scope::Consumer, Kind::Reset),
    ("enable.auto.commit", Scope::Consumer, Kind::Flag),
    ("auto.commit.interval.ms", Scope::Consumer, Kind::Millis),
    ("fetch.min.bytes", Scope::Consumer, Kind::ByteCount),
    ("fetch.max.bytes", Scope::Consumer, Kind::Bytes),
    ("max.partition.fetch.bytes", Scope::Consumer, Kind::Bytes),
    ("fetch.max.wait.ms", Scope::Consumer, Kind::Millis),
    ("max.poll.records", Scope::Consumer, Kind::Count),
    ("check.crcs", Scope::Consumer, Kind::Flag),
    ("isolation.level", Scope::Consumer, Kind::Isolation),
    ("session.timeout.ms", Scope::Consumer, Kind::Millis),
    ("heartbeat.interval.ms", Scope::Consumer, Kind::Millis),
    ("max.poll.interval.ms", Scope::Consumer, Kind::Millis),
    (
        "partition.assignment.strategy",
        Scope::Consumer,
        Kind::Assignors,
    ),
];

/// Kafka client properties that mean nothing to this client, accepted so that a
/// properties file written for the Java client works, and why they are ignored.
const IGNORED: &[(&str, &str)] = &[
    ("key.serializer", "keys are bytes here"),
    ("value.serializer", "values are bytes here"),
    ("key.deserializer", "keys are bytes here"),
    ("value.deserializer", "values are bytes here"),
];

/// The scope of a known property name.
pub fn scope_of(name: &str) -> Option<Scope> {
    KNOWN
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, s, _)| *s)
}

/// A set of client properties, checked as they are set; a later setting of a name
/// replaces an earlier one.
#[derive(Debug, Clone, Default)]
pub struct Properties {
    entries: Vec<(&'static str, Value)>,
    /// Names of [`IGNORED`] properties that were set, with the reason.
    ignored: Vec<(&'static str, &'static str)>,
}

impl Properties {
    pub fn new() -> Properties {
        Properties::default()
    }

    /// Sets `name` to `value` (Kafka's spelling of both: `acks=all`, `linger.ms=5`).
    /// Fails on an unknown name (naming the closest known one) or an invalid value.
    pub fn set(&mut self, name: &str, value: &str) -> Result<()> {
        if let Some(&(ignored, why)) = IGNORED.iter().find(|(n, _)| *n == name) {
            if !self.ignored.iter().any(|(n, _)| *n == ignored) {
                self.ignored.push((ignored, why));
            }
            return Ok(());
        }
        let Some(&(known, _, kind)) = KNOWN.iter().find(|(n, _, _)| *n == name) else {
            return Err(Error::InvalidArgument(unknown_name(name)));
        };
        // A password is taken as given: spaces may be part of it.
        let value = if matches!(kind, Kind::Secret) {
            value
        } else {
            value.trim()
        };
        let parsed = parse(kind, value)
            .map_err(|why| Error::InvalidArgument(format!("{name}={value:?}: {why}")))?;
        self.entries.retain(|(n, _)| *n != known);
        self.entries.push((known, parsed));
        Ok(())
    }

    /// Reads a Java `.properties` file's text: `name=value` (or `name: value`, or
    /// `name value`) per line, `#` and `!` start comments, blank lines are skipped.
    /// Errors name the line.
    pub fn read(&mut self, text: &str) -> Result<()> {
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                continue;
            }
            let not_a_property = || {
                Error::InvalidArgument(format!("line {}: {line:?} is not name=value", number + 1))
            };
            // As Java reads them: the name ends at '=', ':' or white space; then one
            // '=' or ':' may follow, with white space around it.
            let end = line
                .find(['=', ':', ' ', '\t'])
                .ok_or_else(not_a_property)?;
            let name = &line[..end];
            let rest = line[end..].trim_start();
            let value = rest.strip_prefix(['=', ':']).unwrap_or(rest).trim();
            if value.is_empty() {
                return Err(not_a_property());
            }
            self.set(name, value).map_err(|e| match e {
                Error::InvalidArgument(why) => {
                    Error::InvalidArgument(format!("line {}: {why}", number + 1))
                }
                other => other,
            })?;
        }
        Ok(())
    }

    /// Whether `name` was set.
    pub fn contains(&self, name: &str) -> bool {
        self.entries.iter().any(|(n, _)| *n == name)
    }

    /// The value of a text property (`bootstrap.servers`, `group.id`...), if set.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.entries.iter().find_map(|(n, v)| match v {
            Value::Text(text) if *n == name => Some(text.as_str()),
            _ => None,
        })
    }

    /// The properties that were set but mean nothing to this client, with the reason
    /// (`key.serializer`...), for a note to the user.
    pub fn ignored(&self) -> impl Iterator<Item = (&'static str, &'static str)> + '_ {
        self.ignored.iter().copied()
    }

    /// The names set, in the order they were set.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.entries.iter().map(|(n, _)| *n)
    }

    /// Applies the common properties (addresses, timeouts, retries).
    pub fn apply_to_client(&self, config: &mut ClientConfig) {
        for (name, value) in &self.entries {
            match (*name, value) {
                ("bootstrap.servers", Value::Text(list)) => {
                    config.bootstrap = ClientConfig::new(list).bootstrap;
                }
                ("client.id", Value::Text(id)) => config.client_id = id.clone(),
                ("socket.connection.setup.timeout.ms", Value::Millis(d)) => {
                    config.connect_timeout = *d;
                }
                ("request.timeout.ms", Value::Millis(d)) => config.request_timeout = *d,
                ("retry.backoff.ms", Value::Millis(d)) => config.retry_backoff = *d,
                ("retry.backoff.max.ms", Value::Millis(d)) => config.retry_backoff_max = *d,
                ("default.api.timeout.ms", Value::Millis(d)) => config.api_timeout = *d,
                ("metadata.max.age.ms", Value::Millis(d)) => config.metadata_max_age = *d,
                ("security.protocol", Value::Protocol(p)) => config.security.protocol = *p,
                ("sasl.mechanism" | "sasl.mechanisms", Value::Mechanism(m)) => {
                    config.security.mechanism = Some(*m);
                }
                ("sasl.username", Value::Text(user)) => {
                    config.security.username = Some(user.clone());
                }
                ("sasl.password", Value::Secret(password)) => {
                    config.security.password = Some(password.0.clone());
                }
                ("ssl.ca.location", Value::Path(path)) => {
                    config.security.ca_file = Some(path.clone());
                }
                ("ssl.certificate.location", Value::Path(path)) => {
                    config.security.certificate_file = Some(path.clone());
                }
                ("ssl.key.location", Value::Path(path)) => {
                    config.security.key_file = Some(path.clone());
                }
                _ => {}
            }
        }
    }

    /// Applies the producer's properties.
    pub fn apply_to_producer(&self, config: &mut ProducerConfig) {
        for (name, value) in &self.entries {
            match (*name, value) {
                ("acks", Value::Acks(acks)) => config.acks = *acks,
                ("compression.type", Value::Compression(c)) => config.compression = *c,
                ("linger.ms", Value::Millis(d)) => config.linger = *d,
                ("batch.size", Value::Bytes(n)) => config.batch_size = *n,
                ("max.request.size", Value::Bytes(n)) => config.max_request_size = *n,
                ("buffer.memory", Value::Bytes(n)) => config.buffer_memory = *n,
                ("retries", Value::Count(n)) => config.retries = *n,
                ("delivery.timeout.ms", Value::Millis(d)) => config.delivery_timeout = *d,
                ("max.in.flight.requests.per.connection", Value::Count(n)) => {
                    config.max_in_flight = *n as usize;
                }
                ("max.block.ms", Value::Millis(d)) => config.max_block = *d,
                ("enable.idempotence", Value::Flag(on)) => config.enable_idempotence = Some(*on),
                _ => {}
            }
        }
    }

    /// Applies the consumer's properties.
    pub fn apply_to_consumer(&self, config: &mut ConsumerConfig) {
        let clamp = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
        for (name, value) in &self.entries {
            match (*name, value) {
                ("group.id", Value::Text(id)) => config.group_id = Some(id.clone()),
                ("group.instance.id", Value::Text(id)) => {
                    config.group.group_instance_id = Some(id.clone());
                }
                ("auto.offset.reset", Value::Reset(reset)) => config.auto_offset_reset = *reset,
                ("enable.auto.commit", Value::Flag(on)) => config.enable_auto_commit = *on,
                ("auto.commit.interval.ms", Value::Millis(d)) => {
                    config.auto_commit_interval = *d;
                }
                ("fetch.min.bytes", Value::Bytes(n)) => config.fetch_min_bytes = clamp(*n),
                ("fetch.max.bytes", Value::Bytes(n)) => config.fetch_max_bytes = clamp(*n),
                ("max.partition.fetch.bytes", Value::Bytes(n)) => {
                    config.max_partition_fetch_bytes = clamp(*n);
                }
                ("fetch.max.wait.ms", Value::Millis(d)) => config.fetch_max_wait = *d,
                ("max.poll.records", Value::Count(n)) => config.max_poll_records = *n as usize,
                ("check.crcs", Value::Flag(on)) => config.check_crcs = *on,
                ("isolation.level", Value::Isolation(level)) => config.isolation_level = *level,
                ("session.timeout.ms", Value::Millis(d)) => config.group.session_timeout = *d,
                ("heartbeat.interval.ms", Value::Millis(d)) => {
                    config.group.heartbeat_interval = *d;
                }
                ("max.poll.interval.ms", Value::Millis(d)) => {
                    config.group.rebalance_timeout = *d;
                }
                ("partition.assignment.strategy", Value::Assignors(list)) => {
                    config.group.assignors = list.clone();
                }
                _ => {}
            }
        }
    }
}

/// Checks and converts one value.
fn parse(kind: Kind, text: &str) -> std::result::Result<Value, String> {
    let number = |text: &str| {
        text.parse::<u64>()
            .map_err(|_| "not a whole number >= 0".to_owned())
    };
    Ok(match kind {
        Kind::Text if text.is_empty() => return Err("empty".into()),
        Kind::Text => Value::Text(text.to_owned()),
        Kind::Millis => Value::Millis(Duration::from_millis(number(text)?)),
        // Kafka's byte sizes are Java ints.
        Kind::Bytes | Kind::ByteCount => match number(text)? {
            0 if matches!(kind, Kind::Bytes) => return Err("must be at least 1 byte".into()),
            n if n > i32::MAX as u64 => return Err(format!("must be at most {}", i32::MAX)),
            n => Value::Bytes(n as usize),
        },
        Kind::Count => Value::Count(u32::try_from(number(text)?).unwrap_or(u32::MAX)),
        Kind::Flag => match text.to_ascii_lowercase().as_str() {
            "true" => Value::Flag(true),
            "false" => Value::Flag(false),
            _ => return Err("use true or false".into()),
        },
        Kind::Acks => match text {
            "0" => Value::Acks(Acks::None),
            "1" => Value::Acks(Acks::Leader),
            "all" | "-1" => Value::Acks(Acks::All),
            _ => return Err("use 0, 1, all or -1".into()),
        },
        Kind::Compression => Value::Compression(match text {
            "none" => Compression::None,
            "gzip" => Compression::Gzip,
            "snappy" => Compression::Snappy,
            "lz4" => Compression::Lz4,
            "zstd" => Compression::Zstd,
            _ => return Err("use none, gzip, snappy, lz4 or zstd".into()),
        }),
        Kind::Reset => Value::Reset(match text {
            "earliest" => AutoOffsetReset::Earliest,
            "latest" => AutoOffsetReset::Latest,
            "none" => AutoOffsetReset::None,
            _ => return Err("use earliest, latest or none".into()),
        }),
        Kind::Isolation => Value::Isolation(match text {
            "read_uncommitted" => IsolationLevel::ReadUncommitted,
            "read_committed" => IsolationLevel::ReadCommitted,
            _ => return Err("use read_uncommitted or read_committed".into()),
        }),
        Kind::Assignors => {
            let mut list = Vec::new();
            for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                // The Java client's class names work too.
                let short = match name.rsplit('.').next().unwrap_or(name) {
                    "RangeAssignor" => "range",
                    "CooperativeStickyAssignor" => "cooperative-sticky",
                    other => other,
                };
                list.push(Assignor::from_name(short).ok_or_else(|| {
                    format!(
                        "unknown assignor {name:?} (this client has range and cooperative-sticky)"
                    )
                })?);
            }
            if list.is_empty() {
                return Err("name at least one assignor".into());
            }
            Value::Assignors(list)
        }
        Kind::SecurityProtocol => match SecurityProtocol::parse(text) {
            Some(protocol) => Value::Protocol(protocol),
            None => return Err("use PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL".into()),
        },
        Kind::SaslMechanism => match SaslMechanism::parse(text) {
            Some(mechanism) => Value::Mechanism(mechanism),
            None => return Err("use PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512".into()),
        },
        Kind::Secret => Value::Secret(Secret(text.to_owned())),
        Kind::File => {
            let path = std::path::PathBuf::from(text);
            if !path.is_file() {
                return Err(format!("{text} is not a readable file"));
            }
            Value::Path(path)
        }
    })
}

/// The error text for a name no property has, with the closest known name.
fn unknown_name(name: &str) -> String {
    let closest = KNOWN
        .iter()
        .map(|(known, _, _)| (strsim::damerau_levenshtein(name, known), *known))
        .min();
    match closest {
        Some((distance, known)) if distance <= 3 => {
            format!("unknown client property {name:?} (did you mean {known:?}?)")
        }
        _ => format!("unknown client property {name:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_checked_and_applied_to_their_config() {
        let mut props = Properties::new();
        props.set("max.request.size", "31457280").unwrap();
        props.set("linger.ms", "20").unwrap();
        props.set("acks", "1").unwrap();
        props.set("fetch.max.bytes", "1048576").unwrap();
        props.set("isolation.level", "read_committed").unwrap();
        props.set("client.id", "tool").unwrap();
        props
            .set(
                "partition.assignment.strategy",
                "org.apache.kafka.clients.consumer.CooperativeStickyAssignor, range",
            )
            .unwrap();

        let mut producer = ProducerConfig::default();
        props.apply_to_producer(&mut producer);
        assert_eq!(producer.max_request_size, 31_457_280);
        assert_eq!(producer.linger, Duration::from_millis(20));
        assert_eq!(producer.acks, Acks::Leader);

        let mut consumer = ConsumerConfig::default();
        props.apply_to_consumer(&mut consumer);
        assert_eq!(consumer.fetch_max_bytes, 1_048_576);
        assert_eq!(consumer.isolation_level, IsolationLevel::ReadCommitted);
        assert_eq!(
            consumer.group.assignors,
            vec![Assignor::CooperativeSticky, Assignor::Range]
        );
        // A producer property leaves the consumer's config alone and the other way round.
        assert_eq!(consumer.max_poll_records, 500);

        let mut client = ClientConfig::default();
        props.apply_to_client(&mut client);
        assert_eq!(client.client_id, "tool");
    }

    #[test]
    fn a_later_setting_replaces_an_earlier_one() {
        let mut props = Properties::new();
        props.set("linger.ms", "20").unwrap();
        props.set("linger.ms", "0").unwrap();
        let mut producer = ProducerConfig::default();
        props.apply_to_producer(&mut producer);
        assert_eq!(producer.linger, Duration::ZERO);
        assert_eq!(props.names().count(), 1);
    }

    #[test]
    fn unknown_names_and_bad_values_are_errors_with_the_reason() {
        let mut props = Properties::new();
        let error = props.set("max.requst.size", "1").unwrap_err().to_string();
        assert!(
            error.contains("did you mean \"max.request.size\""),
            "{error}"
        );
        let error = props
            .set("no.such.thing.at.all", "1")
            .unwrap_err()
            .to_string();
        assert!(!error.contains("did you mean"), "{error}");
        for (name, value) in [
            ("linger.ms", "-1"),
            ("linger.ms", "5s"),
            ("max.request.size", "0"),
            ("acks", "2"),
            ("enable.idempotence", "yes"),
            ("compression.type", "brotli"),
            ("partition.assignment.strategy", "sticky"),
            ("security.protocol", "TLS"),
            ("sasl.mechanism", "GSSAPI"),
            ("ssl.ca.location", "/no/such/ca.pem"),
            ("client.id", ""),
        ] {
            assert!(props.set(name, value).is_err(), "{name}={value}");
        }
        assert_eq!(props.names().count(), 0, "nothing invalid was kept");
        props.set("security.protocol", "plaintext").unwrap();
        props.set("security.protocol", "sasl_ssl").unwrap();
        props.set("sasl.mechanisms", "SCRAM-SHA-256").unwrap();
        props.set("sasl.username", "alice").unwrap();
        let mut config = ClientConfig::default();
        props.apply_to_client(&mut config);
        assert_eq!(config.security.protocol, SecurityProtocol::SaslSsl);
        assert_eq!(config.security.mechanism, Some(SaslMechanism::ScramSha256));
        assert_eq!(config.security.username.as_deref(), Some("alice"));
    }

    #[test]
    fn a_properties_file_reads_like_javas() {
        let mut props = Properties::new();
        props
            .read(
                "# producer settings\n\
                 ! also a comment\n\
                 \n\
                 bootstrap.servers = 127.0.0.1:9092,127.0.0.1:9093\n\
                 linger.ms: 7\n\
                 client.id  tool-1\n\
                 value.serializer=org.apache.kafka.common.serialization.StringSerializer\n",
            )
            .unwrap();
        assert_eq!(
            props.text("bootstrap.servers"),
            Some("127.0.0.1:9092,127.0.0.1:9093")
        );
        assert!(props.contains("linger.ms"));
        assert_eq!(props.text("client.id"), Some("tool-1"));
        assert_eq!(
            props.ignored().collect::<Vec<_>>(),
            [("value.serializer", "values are bytes here")]
        );
        let error = props.read("acks=all\nnot a property\n").unwrap_err();
        assert!(error.to_string().contains("line 2"), "{error}");
        let error = props.read("lingr.ms=1\n").unwrap_err();
        assert!(error.to_string().contains("line 1"), "{error}");
    }

    #[test]
    fn every_known_name_has_a_scope() {
        for (name, scope, _) in KNOWN {
            assert_eq!(scope_of(name), Some(*scope));
        }
        assert_eq!(scope_of("linger.ms"), Some(Scope::Producer));
        assert_eq!(scope_of("nope"), None);
    }
}
