//! The client quotas set with AlterClientQuotas (API 49) and read with
//! DescribeClientQuotas (48): per entity (a user, a client id, both, their defaults, or an
//! IP), values for Kafka's quota keys. Kept in `<data>/quotas.json`, rewritten atomically
//! (temporary file, fsync, rename) on every change before the change is answered, and
//! checked at start (a damaged file stops the start: starting without quotas would let
//! every client run unbounded).
//!
//! Validation is Kafka's (`ClientQuotaControlManager`, asked of Kafka 4.4): entity types
//! `user`, `client-id` (together or alone) or `ip` (alone), each at most once; known keys
//! only; values greater than 0, and whole numbers for the byte rates.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};

pub const USER: &str = "user";
pub const CLIENT_ID: &str = "client-id";
pub const IP: &str = "ip";

pub const PRODUCER_BYTE_RATE: &str = "producer_byte_rate";
pub const CONSUMER_BYTE_RATE: &str = "consumer_byte_rate";
pub const REQUEST_PERCENTAGE: &str = "request_percentage";
pub const CONTROLLER_MUTATION_RATE: &str = "controller_mutation_rate";
pub const CONNECTION_CREATION_RATE: &str = "connection_creation_rate";

/// Who a quota applies to: entity type -> name, `None` naming the type's default.
pub type Entity = BTreeMap<String, Option<String>>;

/// A refused change or filter: Kafka's error and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaError {
    pub code: kafka_protocol::error::ResponseError,
    pub message: String,
}

fn invalid(message: impl Into<String>) -> QuotaError {
    QuotaError {
        code: kafka_protocol::error::ResponseError::InvalidRequest,
        message: message.into(),
    }
}

/// Checks an entity as Kafka does.
pub fn check_entity(entity: &Entity) -> Result<(), QuotaError> {
    if entity.is_empty() {
        return Err(invalid("Invalid empty client quota entity"));
    }
    for kind in entity.keys() {
        if ![USER, CLIENT_ID, IP].contains(&kind.as_str()) {
            return Err(invalid(format!(
                "Unhandled client quota entity type: {kind}"
            )));
        }
    }
    if entity.contains_key(IP) && entity.len() > 1 {
        return Err(invalid(
            "Invalid quota entity combination: ip cannot be combined with other entity types",
        ));
    }
    if let Some(Some(ip)) = entity.get(IP) {
        if ip.parse::<std::net::IpAddr>().is_err() {
            return Err(invalid(format!(
                "{ip} is not a valid IP or resolvable host."
            )));
        }
    }
    Ok(())
}

/// Checks one `key = value` for `entity`; a value of `None` is a removal.
pub fn check_value(entity: &Entity, key: &str, value: Option<f64>) -> Result<(), QuotaError> {
    let is_ip = entity.contains_key(IP);
    let (known, whole) = match key {
        PRODUCER_BYTE_RATE | CONSUMER_BYTE_RATE => (!is_ip, true),
        REQUEST_PERCENTAGE | CONTROLLER_MUTATION_RATE => (!is_ip, false),
        CONNECTION_CREATION_RATE => (is_ip, true),
        _ => (false, false),
    };
    if !known {
        return Err(invalid(format!("Invalid configuration key {key}")));
    }
    if let Some(value) = value {
        if value.is_nan() || value <= 0.0 {
            return Err(invalid(format!("Quota {key} must be greater than 0")));
        }
        if whole && value.fract() != 0.0 {
            return Err(invalid(format!("{key} cannot be a fractional value.")));
        }
    }
    Ok(())
}

/// Every entity's quotas.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QuotaSet {
    /// Entity -> key -> value; entities with no key are dropped.
    #[serde(with = "entries")]
    pub quotas: BTreeMap<Entity, BTreeMap<String, f64>>,
}

/// JSON has no maps keyed by maps: the set is stored as a list of entries.
mod entries {
    use super::*;

    #[derive(Serialize, Deserialize)]
    struct Entry {
        entity: Entity,
        values: BTreeMap<String, f64>,
    }

    pub fn serialize<S: serde::Serializer>(
        quotas: &BTreeMap<Entity, BTreeMap<String, f64>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let list: Vec<Entry> = quotas
            .iter()
            .map(|(entity, values)| Entry {
                entity: entity.clone(),
                values: values.clone(),
            })
            .collect();
        list.serialize(s)
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<Entity, BTreeMap<String, f64>>, D::Error> {
        let list = Vec::<Entry>::deserialize(d)?;
        Ok(list.into_iter().map(|e| (e.entity, e.values)).collect())
    }
}

/// One change of an AlterClientQuotas entry: set (`Some`) or remove (`None`) a key.
pub type Change = (String, Option<f64>);

/// The quota store; see the module docs.
#[derive(Debug)]
pub struct QuotaStore {
    path: PathBuf,
    current: RwLock<Arc<QuotaSet>>,
    writer: Mutex<()>,
}

impl QuotaStore {
    pub fn open(data_dir: &Path) -> Result<QuotaStore, String> {
        let path = data_dir.join("quotas.json");
        let set = match sluice_storage::fsutil::read_optional(&path)
            .map_err(|e| format!("read {}: {e}", path.display()))?
        {
            None => QuotaSet::default(),
            Some(bytes) => {
                let set: QuotaSet = serde_json::from_slice(&bytes)
                    .map_err(|e| format!("{} is damaged: {e}", path.display()))?;
                for (entity, values) in &set.quotas {
                    check_entity(entity)
                        .and_then(|()| {
                            values
                                .iter()
                                .try_for_each(|(k, v)| check_value(entity, k, Some(*v)))
                        })
                        .map_err(|e| format!("{}: {}", path.display(), e.message))?;
                }
                set
            }
        };
        Ok(QuotaStore {
            path,
            current: RwLock::new(Arc::new(set)),
            writer: Mutex::new(()),
        })
    }

    pub fn snapshot(&self) -> Arc<QuotaSet> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Applies every entry's changes (all already checked) and writes the file once.
    pub fn alter(&self, entries: &[(Entity, Vec<Change>)]) -> Result<(), String> {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = (*self.snapshot()).clone();
        for (entity, changes) in entries {
            let values = next.quotas.entry(entity.clone()).or_default();
            for (key, value) in changes {
                match value {
                    Some(v) => {
                        values.insert(key.clone(), *v);
                    }
                    None => {
                        values.remove(key);
                    }
                }
            }
            if values.is_empty() {
                next.quotas.remove(entity);
            }
        }
        if next == *self.snapshot() {
            return Ok(());
        }
        let bytes = serde_json::to_vec_pretty(&next).map_err(|e| format!("encode: {e}"))?;
        sluice_storage::fsutil::write_atomically(&self.path, &bytes)
            .map_err(|e| format!("write {}: {e}", self.path.display()))?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(next);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entity(pairs: &[(&str, Option<&str>)]) -> Entity {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.map(str::to_owned)))
            .collect()
    }

    #[test]
    fn values_and_entities_are_checked_as_kafka_checks_them() {
        let client = entity(&[(CLIENT_ID, Some("c1"))]);
        assert!(check_value(&client, PRODUCER_BYTE_RATE, Some(1024.0)).is_ok());
        assert_eq!(
            check_value(&client, PRODUCER_BYTE_RATE, Some(-5.0))
                .unwrap_err()
                .message,
            "Quota producer_byte_rate must be greater than 0"
        );
        assert_eq!(
            check_value(&client, PRODUCER_BYTE_RATE, Some(1.5))
                .unwrap_err()
                .message,
            "producer_byte_rate cannot be a fractional value."
        );
        assert!(check_value(&client, REQUEST_PERCENTAGE, Some(12.5)).is_ok());
        assert!(check_value(&client, "foo", Some(1.0)).is_err());
        assert!(check_value(&client, CONNECTION_CREATION_RATE, Some(1.0)).is_err());
        let ip = entity(&[(IP, Some("127.0.0.1"))]);
        assert!(check_value(&ip, CONNECTION_CREATION_RATE, Some(3.0)).is_ok());
        assert!(check_entity(&entity(&[(IP, None), (USER, None)])).is_err());
        assert!(check_entity(&entity(&[(IP, Some("not an ip"))])).is_err());
        assert!(check_entity(&entity(&[("group", Some("g"))])).is_err());
        assert!(check_entity(&entity(&[(USER, Some("alice")), (CLIENT_ID, None)])).is_ok());
    }

    #[test]
    fn quotas_survive_reopen_and_empty_entities_go() {
        let dir = tempfile::tempdir().unwrap();
        let store = QuotaStore::open(dir.path()).unwrap();
        let alice = entity(&[(USER, Some("alice")), (CLIENT_ID, None)]);
        store
            .alter(&[(
                alice.clone(),
                vec![(PRODUCER_BYTE_RATE.into(), Some(1024.0))],
            )])
            .unwrap();
        let reopened = QuotaStore::open(dir.path()).unwrap();
        assert_eq!(
            reopened.snapshot().quotas[&alice][PRODUCER_BYTE_RATE],
            1024.0
        );
        reopened
            .alter(&[(alice.clone(), vec![(PRODUCER_BYTE_RATE.into(), None)])])
            .unwrap();
        assert!(QuotaStore::open(dir.path())
            .unwrap()
            .snapshot()
            .quotas
            .is_empty());
        std::fs::write(dir.path().join("quotas.json"), b"{not json").unwrap();
        assert!(QuotaStore::open(dir.path())
            .unwrap_err()
            .contains("damaged"));
    }
}
