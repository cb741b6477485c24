//! Group configs: Kafka 4.0's `GROUP` config resource (type 32), per consumer group id,
//! described and altered with DescribeConfigs / IncrementalAlterConfigs as
//! `kafka-configs --entity-type groups` and librdkafka do.
//!
//! The 21 names, defaults, broker-level synonyms and checks are Kafka 4.4's (`GroupConfig`,
//! asked of Kafka 4.4 value by value). Sluice stores and describes them all; none changes
//! what its groups do yet: they configure the consumer protocol (KIP-848), share groups
//! and Streams groups, and Sluice's groups run the classic protocol, whose session timeout
//! each member sends in its JoinGroup. The documentation of each says so.
//!
//! Where they live: the metadata log in a cluster (`ConfigResource::Group`), a file in the
//! data directory on the single node of earlier releases (`<data>/group-configs.json`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig;

use crate::topics::AdminError;

/// How a group config's value is checked.
#[derive(Debug, Clone, Copy)]
enum Check {
    /// An int at least `min`.
    AtLeast(i64),
    /// An int within Kafka's broker-level bounds (`<name> must be in the range ...`).
    Range(i64, i64),
    /// An int at least 0 and at most `max` (`<name> must be less than or equal to`).
    AtMost(i64),
    Bool,
    /// One of these strings.
    OneOf(&'static [&'static str]),
    /// `earliest`, `latest` or `by_duration:<ISO-8601 duration>`.
    OffsetReset,
    /// A registered Streams assignor.
    Assignor,
    /// Any string (a list or a name).
    Text,
}

/// One group config.
pub struct GroupConfigKey {
    pub name: &'static str,
    pub default: &'static str,
    /// The broker config that gives the default, when there is one.
    pub broker_name: Option<&'static str>,
    check: Check,
    /// Kafka's type name for DescribeConfigs (`ConfigType`).
    pub config_type: crate::topic_config::ConfigType,
}

const fn key(
    name: &'static str,
    default: &'static str,
    broker_name: Option<&'static str>,
    check: Check,
    config_type: crate::topic_config::ConfigType,
) -> GroupConfigKey {
    GroupConfigKey {
        name,
        default,
        broker_name,
        check,
        config_type,
    }
}

use crate::topic_config::ConfigType::{Boolean, Int, List, String as Str};

/// Kafka 4.4's group configs.
pub const KEYS: &[GroupConfigKey] = &[
    key(
        "consumer.assignment.interval.ms",
        "1000",
        Some("group.consumer.assignment.interval.ms"),
        Check::AtLeast(0),
        Int,
    ),
    key(
        "consumer.heartbeat.interval.ms",
        "5000",
        Some("group.consumer.heartbeat.interval.ms"),
        Check::Range(5000, 15000),
        Int,
    ),
    key(
        "consumer.session.timeout.ms",
        "45000",
        Some("group.consumer.session.timeout.ms"),
        Check::Range(45000, 60000),
        Int,
    ),
    key(
        "errors.deadletterqueue.copy.record.enable",
        "false",
        Some("errors.deadletterqueue.copy.record.enable"),
        Check::Bool,
        Boolean,
    ),
    key(
        "errors.deadletterqueue.topic.name",
        "",
        Some("errors.deadletterqueue.topic.name"),
        Check::Text,
        Str,
    ),
    key(
        "share.assignment.interval.ms",
        "1000",
        Some("group.share.assignment.interval.ms"),
        Check::AtLeast(0),
        Int,
    ),
    key(
        "share.auto.offset.reset",
        "latest",
        Some("share.auto.offset.reset"),
        Check::OffsetReset,
        Str,
    ),
    key(
        "share.delivery.count.limit",
        "5",
        Some("group.share.delivery.count.limit"),
        Check::AtLeast(2),
        Int,
    ),
    key(
        "share.heartbeat.interval.ms",
        "5000",
        Some("group.share.heartbeat.interval.ms"),
        Check::Range(5000, 15000),
        Int,
    ),
    key(
        "share.isolation.level",
        "read_uncommitted",
        Some("share.isolation.level"),
        Check::OneOf(&["read_committed", "read_uncommitted"]),
        Str,
    ),
    key(
        "share.partition.max.record.locks",
        "2000",
        Some("group.share.partition.max.record.locks"),
        Check::AtLeast(100),
        Int,
    ),
    key(
        "share.record.lock.duration.ms",
        "30000",
        Some("group.share.record.lock.duration.ms"),
        Check::AtLeast(1000),
        Int,
    ),
    key(
        "share.renew.acknowledge.enable",
        "true",
        Some("share.renew.acknowledge.enable"),
        Check::Bool,
        Boolean,
    ),
    key(
        "share.session.timeout.ms",
        "45000",
        Some("group.share.session.timeout.ms"),
        Check::Range(45000, 60000),
        Int,
    ),
    key(
        "streams.assignment.interval.ms",
        "1000",
        Some("group.streams.assignment.interval.ms"),
        Check::AtLeast(0),
        Int,
    ),
    key(
        "streams.assignor.name",
        "sticky",
        Some("group.streams.assignors"),
        Check::Assignor,
        Str,
    ),
    key(
        "streams.heartbeat.interval.ms",
        "5000",
        Some("group.streams.heartbeat.interval.ms"),
        Check::Range(5000, 15000),
        Int,
    ),
    key(
        "streams.initial.rebalance.delay.ms",
        "3000",
        Some("group.streams.initial.rebalance.delay.ms"),
        Check::AtLeast(0),
        Int,
    ),
    key(
        "streams.num.standby.replicas",
        "0",
        Some("group.streams.num.standby.replicas"),
        Check::AtMost(2),
        Int,
    ),
    key(
        "streams.rack.aware.assignment.tags",
        "",
        Some("group.streams.rack.aware.assignment.tags"),
        Check::Text,
        List,
    ),
    key(
        "streams.session.timeout.ms",
        "45000",
        Some("group.streams.session.timeout.ms"),
        Check::Range(45000, 60000),
        Int,
    ),
];

pub fn find(name: &str) -> Option<&'static GroupConfigKey> {
    KEYS.iter().find(|k| k.name == name)
}

impl GroupConfigKey {
    /// What DescribeConfigs documents for it: what it does in Kafka does not happen here.
    pub fn documentation(&self) -> String {
        let what = if self.name.starts_with("consumer.") {
            "Sluice's groups run the classic protocol (KIP-848's consumer protocol is not implemented)"
        } else if self.name.starts_with("share.") {
            "Sluice has no share groups yet"
        } else if self.name.starts_with("streams.") {
            "Sluice has no Streams groups (KIP-1071); Kafka Streams runs on classic groups"
        } else {
            "Sluice has no dead-letter queue for groups"
        };
        format!("Kafka's group config; stored and described, no effect in Sluice: {what}.")
    }

    /// Checks a value as Kafka does; the refusal's message in Kafka's words.
    fn check(&self, value: &str) -> Result<(), String> {
        let name = self.name;
        let int = || -> Result<i64, String> {
            value.trim().parse::<i32>().map(i64::from).map_err(|_| {
                format!("Invalid value {value} for configuration {name}: Not a number of type INT")
            })
        };
        match self.check {
            Check::AtLeast(min) => {
                if int()? < min {
                    return Err(format!(
                        "Invalid value {value} for configuration {name}: Value must be at least {min}"
                    ));
                }
            }
            Check::Range(min, max) => {
                let v = int()?;
                if v < min || v > max {
                    return Err(format!(
                        "{name} must be in the range {min} to {max} inclusive."
                    ));
                }
            }
            Check::AtMost(max) => {
                let v = int()?;
                if v < 0 {
                    return Err(format!(
                        "Invalid value {value} for configuration {name}: Value must be at least 0"
                    ));
                }
                if v > max {
                    return Err(format!("{name} must be less than or equal to {max}"));
                }
            }
            Check::Bool => {
                if !matches!(value.trim().to_ascii_lowercase().as_str(), "true" | "false") {
                    return Err(format!(
                        "Invalid value {value} for configuration {name}: Expected value to be either true or false"
                    ));
                }
            }
            Check::OneOf(allowed) => {
                if !allowed.contains(&value) {
                    return Err(format!(
                        "Invalid value {value} for configuration {name}: String must be one of: {}",
                        allowed.join(", ")
                    ));
                }
            }
            Check::OffsetReset => {
                let by_duration = value
                    .strip_prefix("by_duration:")
                    .is_some_and(|d| d.starts_with('P') && d.len() > 1);
                if !(value == "earliest" || value == "latest" || by_duration) {
                    return Err(format!(
                        "Invalid value {value} for configuration {name}: Invalid value `{value}` for configuration {name}. The value must be either 'earliest', 'latest' or of the format 'by_duration:<PnDTnHnMn.nS>'."
                    ));
                }
            }
            Check::Assignor => {
                if value != "sticky" {
                    return Err(format!(
                        "{name} '{value}' is not a registered task assignor. Registered assignors are: [sticky]."
                    ));
                }
            }
            Check::Text => {}
        }
        Ok(())
    }
}

/// Applies IncrementalAlterConfigs operations to a group's configs, with Kafka's
/// refusals (INVALID_CONFIG for names and values, as Kafka answers).
pub fn altered(
    current: &BTreeMap<String, String>,
    changes: &[AlterableConfig],
) -> Result<BTreeMap<String, String>, AdminError> {
    const OP_SET: i8 = 0;
    const OP_DELETE: i8 = 1;
    let invalid = |message: String| AdminError::new(ResponseError::InvalidConfig, message);
    let mut configs = current.clone();
    let mut seen = std::collections::HashSet::new();
    for change in changes {
        let name = change.name.as_str();
        if !seen.insert(name) {
            return Err(AdminError::new(
                ResponseError::InvalidRequest,
                format!("Error due to duplicate config keys: {name}"),
            ));
        }
        let key =
            find(name).ok_or_else(|| invalid(format!("Unknown group config name: {name}")))?;
        match change.config_operation {
            OP_SET => {
                let value = change.value.as_deref().ok_or_else(|| {
                    AdminError::new(
                        ResponseError::InvalidRequest,
                        format!("Null value not supported for : {name}"),
                    )
                })?;
                key.check(value).map_err(invalid)?;
                configs.insert(name.to_owned(), value.to_owned());
            }
            OP_DELETE => {
                configs.remove(name);
            }
            _ => {
                return Err(invalid(format!(
                    "Config value append is not allowed for config key: {name}"
                )))
            }
        }
    }
    Ok(configs)
}

/// The single node's group configs file (a cluster keeps them in the metadata).
pub struct GroupConfigStore {
    path: PathBuf,
    groups: RwLock<BTreeMap<String, BTreeMap<String, String>>>,
}

impl GroupConfigStore {
    /// Reads `<data>/group-configs.json` (a damaged file stops the start).
    pub fn open(data_dir: &Path) -> Result<GroupConfigStore, String> {
        let path = data_dir.join("group-configs.json");
        let groups = match sluice_storage::fsutil::read_optional(&path)
            .map_err(|e| format!("read {}: {e}", path.display()))?
        {
            None => BTreeMap::new(),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| format!("{} is damaged: {e}", path.display()))?,
        };
        Ok(GroupConfigStore {
            path,
            groups: RwLock::new(groups),
        })
    }

    pub fn get(&self, group: &str) -> BTreeMap<String, String> {
        self.groups
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(group)
            .cloned()
            .unwrap_or_default()
    }

    /// Replaces one group's configs with what `alter` makes of the current ones, in the
    /// file first (blocking). The lock is held from reading to storing, so two concurrent
    /// alterations of one group both take effect.
    pub fn update(
        &self,
        group: &str,
        alter: impl FnOnce(&BTreeMap<String, String>) -> Result<BTreeMap<String, String>, AdminError>,
    ) -> Result<(), AdminError> {
        let mut groups = self.groups.write().unwrap_or_else(|p| p.into_inner());
        let configs = alter(groups.get(group).unwrap_or(&BTreeMap::new()))?;
        let mut next = groups.clone();
        if configs.is_empty() {
            next.remove(group);
        } else {
            next.insert(group.to_owned(), configs);
        }
        let bytes = serde_json::to_vec_pretty(&next)
            .map_err(|e| AdminError::new(ResponseError::UnknownServerError, e.to_string()))?;
        sluice_storage::fsutil::write_atomically(&self.path, &bytes).map_err(|e| {
            AdminError::new(
                ResponseError::KafkaStorageError,
                format!("cannot write {}: {e}", self.path.display()),
            )
        })?;
        *groups = next;
        Ok(())
    }
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

    /// Kafka 4.4's answers, asked with kafka-configs.
    #[test]
    fn values_are_refused_in_kafkas_words() {
        let refusal = |name: &str, value: &str| {
            altered(&BTreeMap::new(), &[set(name, value)])
                .unwrap_err()
                .message
        };
        for (name, value, message) in [
            ("consumer.session.timeout.ms", "5", "consumer.session.timeout.ms must be in the range 45000 to 60000 inclusive."),
            ("consumer.session.timeout.ms", "abc", "Invalid value abc for configuration consumer.session.timeout.ms: Not a number of type INT"),
            ("consumer.heartbeat.interval.ms", "50000", "consumer.heartbeat.interval.ms must be in the range 5000 to 15000 inclusive."),
            ("consumer.assignment.interval.ms", "-5", "Invalid value -5 for configuration consumer.assignment.interval.ms: Value must be at least 0"),
            ("errors.deadletterqueue.copy.record.enable", "maybe", "Invalid value maybe for configuration errors.deadletterqueue.copy.record.enable: Expected value to be either true or false"),
            ("share.delivery.count.limit", "1", "Invalid value 1 for configuration share.delivery.count.limit: Value must be at least 2"),
            ("share.isolation.level", "x", "Invalid value x for configuration share.isolation.level: String must be one of: read_committed, read_uncommitted"),
            ("streams.assignor.name", "foo", "streams.assignor.name 'foo' is not a registered task assignor. Registered assignors are: [sticky]."),
            ("streams.num.standby.replicas", "100", "streams.num.standby.replicas must be less than or equal to 2"),
            ("foo", "5", "Unknown group config name: foo"),
        ] {
            assert_eq!(refusal(name, value), message, "{name}={value}");
        }
        let ok = altered(
            &BTreeMap::new(),
            &[
                set("consumer.session.timeout.ms", "50000"),
                set("share.auto.offset.reset", "by_duration:PT1H"),
            ],
        )
        .unwrap();
        assert_eq!(ok["consumer.session.timeout.ms"], "50000");
    }

    #[test]
    fn the_store_keeps_configs_across_opens() {
        let dir = tempfile::tempdir().unwrap();
        let store = GroupConfigStore::open(dir.path()).unwrap();
        let mut configs = BTreeMap::new();
        configs.insert("consumer.session.timeout.ms".to_owned(), "50000".to_owned());
        store.update("g", |_| Ok(configs.clone())).unwrap();
        let reopened = GroupConfigStore::open(dir.path()).unwrap();
        assert_eq!(reopened.get("g"), configs);
        reopened.update("g", |_| Ok(BTreeMap::new())).unwrap();
        assert!(GroupConfigStore::open(dir.path())
            .unwrap()
            .get("g")
            .is_empty());
    }
}
