//! The metadata records and their byte encoding.
//!
//! The records are KRaft's (`org.apache.kafka.common.metadata.*Record`), trimmed to what
//! Sluice uses: the controller decides, writes a batch of records to the Raft log, and
//! every node applies the committed batches to its [`crate::MetadataImage`] in log order.
//! A record describes a change, never a request: whoever applies it needs nothing but
//! the image before it.
//!
//! # Encoding (record batch, version 1)
//!
//! One Raft entry carries one batch, applied all or nothing:
//!
//! ```text
//! byte 0      format version, 1
//! bytes 1..   UTF-8 JSON: an array of records, each an object whose "type" names the
//!             record ("register_broker", "partition_change", ...) and whose other
//!             fields are the record's fields (see the structs below; names as in Rust)
//! ```
//!
//! For example `[{"type":"remove_topic","topic_id":"b0c9…"}]`. JSON keeps the log
//! readable with `jq` when something goes wrong, and metadata is small next to the data it
//! describes. Unknown record types, unknown fields, missing fields, wrong types, trailing
//! bytes and versions other than 1 are errors ([`MetadataError::Decode`],
//! [`MetadataError::UnsupportedVersion`]), never a panic. A later format gets a new
//! version byte; readers keep reading every older one.
//!
//! Decoding checks shape only; whether a record fits the image (a partition's leader is in
//! its ISR, a topic exists) is checked by [`crate::MetadataImage::apply`].

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{MetadataError, Result};

/// A broker's (and controller's) `node.id`.
pub type BrokerId = i32;

/// The `leader` of a partition that has none (offline), as in Kafka.
pub const NO_LEADER: BrokerId = -1;

/// Version byte of [`encode_batch`].
pub const RECORD_BATCH_VERSION: u8 = 1;

/// The feature whose level says which records and fields the log may hold (Kafka's
/// `metadata.version`).
pub const METADATA_VERSION: &str = "metadata.version";

/// The highest `metadata.version` level this build reads and writes. Level 1: the first
/// records and fields. Level 2: configs of consumer groups ([`ConfigResource::Group`]).
/// Level 3: partition reassignments (the `adding_replicas` and `removing_replicas` of
/// [`PartitionChangeRecord`]).
/// A later build that adds a record kind or field raises it; its controller writes the
/// new kind only once the cluster's level (a [`FeatureLevelRecord`] in the log) allows
/// it, so older nodes never meet it unawares. A new cluster starts at this build's level.
pub const LATEST_METADATA_VERSION: u16 = 3;

/// The `metadata.version` level from which partitions can be reassigned.
pub const REASSIGNMENT_METADATA_VERSION: u16 = 3;

/// Kafka's `security.protocol` of a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum SecurityProtocol {
    /// `PLAINTEXT`.
    #[serde(rename = "PLAINTEXT")]
    Plaintext,
    /// `SSL`.
    #[serde(rename = "SSL")]
    Ssl,
    /// `SASL_PLAINTEXT`.
    #[serde(rename = "SASL_PLAINTEXT")]
    SaslPlaintext,
    /// `SASL_SSL`.
    #[serde(rename = "SASL_SSL")]
    SaslSsl,
}

/// One advertised listener of a broker (Kafka's `BrokerEndpoint`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// The listener name (`PLAINTEXT`, `INTERNAL`, ...), as in `listeners`.
    pub listener: String,
    /// Host clients connect to.
    pub host: String,
    /// Port clients connect to.
    pub port: u16,
    /// The listener's security protocol.
    pub security_protocol: SecurityProtocol,
}

/// What a config applies to (Kafka's `ConfigResource`: `TOPIC`, `BROKER`, and `BROKER`
/// with an empty name for the cluster-wide default).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "type", content = "name", rename_all = "snake_case")]
pub enum ConfigResource {
    /// A topic, by name.
    Topic(String),
    /// One broker, by id.
    Broker(BrokerId),
    /// The default for every broker (Kafka: resource type BROKER, name "").
    ClusterDefault,
    /// A consumer group, by id (Kafka 4.0's GROUP config resource; the group need not
    /// exist).
    Group(String),
}

/// Sets the cluster id once, in the first batch a new cluster commits (Sluice's own
/// record: Kafka formats the id into every node's `meta.properties` instead, and Sluice
/// has no format step). Applying it again with the same id is a no-op; with another id it
/// is inconsistent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterIdRecord {
    /// Kafka's 22-character base64 form of a UUID, as in `meta.properties`.
    pub cluster_id: String,
}

/// A broker registers (or re-registers after a restart). Its broker epoch is the offset of
/// the batch that carries this record, as in Kafka; it replaces any earlier registration
/// of the same id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterBrokerRecord {
    /// `node.id`.
    pub broker_id: BrokerId,
    /// Random per broker process start: tells a restart from a retried request.
    pub incarnation_id: Uuid,
    /// The advertised listeners.
    pub endpoints: Vec<Endpoint>,
    /// `broker.rack`, if set.
    pub rack: Option<String>,
    /// Whether the broker starts fenced (always true from the controller: a broker is
    /// unfenced once it has caught up with the metadata).
    pub fenced: bool,
}

/// A registered broker's state changes (Kafka's `BrokerRegistrationChangeRecord`). `None`
/// leaves a flag as it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerRegistrationChangeRecord {
    /// The broker.
    pub broker_id: BrokerId,
    /// The registration this change is for; another epoch is inconsistent.
    pub broker_epoch: i64,
    /// Fence (`Some(true)`) or unfence (`Some(false)`).
    pub fenced: Option<bool>,
    /// Enter (`Some(true)`) or leave controlled shutdown.
    pub in_controlled_shutdown: Option<bool>,
    /// The broker's storage became unwritable (`Some(true)`: its free space fell below
    /// `log.dir.min.free.bytes`) or writable again; Kafka's nearest is a failed log dir
    /// (KIP-858). Left out when `None`, so records without it read as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_unavailable: Option<bool>,
}

/// A broker leaves the cluster for good (Kafka's `UnregisterBrokerRecord`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnregisterBrokerRecord {
    /// The broker.
    pub broker_id: BrokerId,
    /// The registration removed; another epoch is inconsistent.
    pub broker_epoch: i64,
}

/// A topic is created (Kafka's `TopicRecord`). Its partitions follow as
/// [`PartitionRecord`]s and its config overrides as [`ConfigRecord`]s in the same batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicRecord {
    /// The topic name; unique among existing topics.
    pub name: String,
    /// The topic id; never reused, so a recreated topic is a new topic.
    pub topic_id: Uuid,
}

/// A partition is created (Kafka's `PartitionRecord`). Partitions of a topic are created
/// in order: the next one's id is the topic's current partition count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionRecord {
    /// The topic.
    pub topic_id: Uuid,
    /// The partition index.
    pub partition_id: i32,
    /// All replicas, preferred leader first; distinct broker ids.
    pub replicas: Vec<BrokerId>,
    /// The in-sync replicas: a non-empty subset of `replicas`.
    pub isr: Vec<BrokerId>,
    /// The leader, a member of `isr`, or [`NO_LEADER`].
    pub leader: BrokerId,
    /// Starts at 0.
    pub leader_epoch: i32,
    /// Starts at 0.
    pub partition_epoch: i32,
}

/// A partition's leader, ISR or replicas change (Kafka's `PartitionChangeRecord`). `None`
/// leaves a field as it is. Applying it bumps the partition epoch by one. The leader epoch
/// bumps by one when the record starts a new leadership term: a `leader` other than the
/// current one, or a `replicas` list that drops a current replica (the new epoch fences
/// the removed replica, as in Kafka); both at once bump it once. `leader: Some(current
/// leader)` is no leader change and does not bump it (normalized by apply, not rejected).
///
/// `expected_partition_epoch` is the partition epoch of the image the change was decided
/// on (the controller always sets it): applying a record whose expected epoch is not the
/// partition's current one fails the batch, on every node alike, so a decision made on an
/// old image can never undo a change committed after that image (Kafka's controller gets
/// the same from deciding only on its own uncommitted state; Sluice decides on the
/// applied image, so the log checks it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionChangeRecord {
    /// The topic.
    pub topic_id: Uuid,
    /// The partition index.
    pub partition_id: i32,
    /// The new leader ([`NO_LEADER`] for offline).
    pub leader: Option<BrokerId>,
    /// The new ISR.
    pub isr: Option<Vec<BrokerId>>,
    /// The new replica list.
    pub replicas: Option<Vec<BrokerId>>,
    /// The partition epoch the change was decided on; `None` (absent in the JSON): not
    /// checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_partition_epoch: Option<i32>,
    /// The replicas a reassignment in progress adds (members of the new `replicas`, not yet
    /// all in sync); `Some(vec![])` ends the reassignment. Absent in the JSON when `None`,
    /// so records without it read as before; `metadata.version` 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adding_replicas: Option<Vec<BrokerId>>,
    /// The replicas a reassignment in progress removes once the adding ones are in sync
    /// (members of the new `replicas`). As `adding_replicas`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removing_replicas: Option<Vec<BrokerId>>,
}

/// A topic is deleted with its partitions and config overrides (Kafka's `RemoveTopicRecord`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveTopicRecord {
    /// The topic.
    pub topic_id: Uuid,
}

/// A block of producer ids is given to a broker (Kafka's `ProducerIdsRecord`, which stores
/// only the block's end). `first_producer_id` must be at least the image's next producer
/// id (usually equal; past it when ids below were reserved outside the cluster), so blocks
/// never overlap and only grow, cluster-wide.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProducerIdsRecord {
    /// The broker the block is for.
    pub broker_id: BrokerId,
    /// The broker's registration when it asked.
    pub broker_epoch: i64,
    /// The block's first id.
    pub first_producer_id: i64,
    /// The number of ids in the block (1000, as Kafka).
    pub size: i64,
}

/// A dynamic config is set or deleted (Kafka's `ConfigRecord`). Values are opaque strings:
/// the broker validates them before the controller writes them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigRecord {
    /// What the config applies to; a topic must exist.
    pub resource: ConfigResource,
    /// The config key, e.g. `retention.ms`.
    pub name: String,
    /// The new value, or `None` to delete the override.
    pub value: Option<String>,
}

/// A cluster-wide feature's level is set (Kafka's `FeatureLevelRecord`). The only
/// feature is [`METADATA_VERSION`]; the controller writes it in the bootstrap batch. The
/// level never goes down. A node whose build reads a lower level than the one in the log
/// stops applying (its code is too old for the log).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureLevelRecord {
    /// The feature, [`METADATA_VERSION`].
    pub name: String,
    /// Its level, from 1.
    pub feature_level: u16,
}

/// One metadata record. See the module docs for the encoding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MetadataRecord {
    /// See [`ClusterIdRecord`].
    ClusterId(ClusterIdRecord),
    /// See [`RegisterBrokerRecord`].
    RegisterBroker(RegisterBrokerRecord),
    /// See [`BrokerRegistrationChangeRecord`].
    BrokerRegistrationChange(BrokerRegistrationChangeRecord),
    /// See [`UnregisterBrokerRecord`].
    UnregisterBroker(UnregisterBrokerRecord),
    /// See [`TopicRecord`].
    Topic(TopicRecord),
    /// See [`PartitionRecord`].
    Partition(PartitionRecord),
    /// See [`PartitionChangeRecord`].
    PartitionChange(PartitionChangeRecord),
    /// See [`RemoveTopicRecord`].
    RemoveTopic(RemoveTopicRecord),
    /// See [`ProducerIdsRecord`].
    ProducerIds(ProducerIdsRecord),
    /// See [`ConfigRecord`].
    Config(ConfigRecord),
    /// See [`FeatureLevelRecord`].
    FeatureLevel(FeatureLevelRecord),
}

impl MetadataRecord {
    /// The lowest `metadata.version` level at which this record (its kind and the fields
    /// it sets) may be written. No wildcard: a new kind does not compile until it says.
    pub fn min_metadata_version(&self) -> u16 {
        match self {
            MetadataRecord::ClusterId(_)
            | MetadataRecord::RegisterBroker(_)
            | MetadataRecord::BrokerRegistrationChange(_)
            | MetadataRecord::UnregisterBroker(_)
            | MetadataRecord::Topic(_)
            | MetadataRecord::Partition(_)
            | MetadataRecord::RemoveTopic(_)
            | MetadataRecord::ProducerIds(_)
            | MetadataRecord::FeatureLevel(_) => 1,
            MetadataRecord::PartitionChange(c) => {
                if c.adding_replicas.is_some() || c.removing_replicas.is_some() {
                    REASSIGNMENT_METADATA_VERSION
                } else {
                    1
                }
            }
            MetadataRecord::Config(c) => match c.resource {
                ConfigResource::Group(_) => 2,
                _ => 1,
            },
        }
    }
}

/// Refuses a batch that holds a record above the cluster's `metadata.version` `level`
/// (the controller checks every batch before it proposes it).
pub fn check_metadata_version(records: &[MetadataRecord], level: u16) -> Result<()> {
    match records.iter().find(|r| r.min_metadata_version() > level) {
        Some(r) => Err(MetadataError::MetadataVersionTooLow {
            needed: r.min_metadata_version(),
            level,
        }),
        None => Ok(()),
    }
}

const BATCH: &str = "record batch";

/// Encodes one batch (one Raft entry) in the current format (see the module docs).
pub fn encode_batch(records: &[MetadataRecord]) -> Result<Vec<u8>> {
    let mut out = vec![RECORD_BATCH_VERSION];
    serde_json::to_writer(&mut out, records).map_err(|source| MetadataError::Encode {
        what: BATCH,
        source,
    })?;
    Ok(out)
}

/// Decodes bytes written by [`encode_batch`] (of any version this build reads).
pub fn decode_batch(bytes: &[u8]) -> Result<Vec<MetadataRecord>> {
    match bytes.split_first() {
        Some((&RECORD_BATCH_VERSION, json)) => {
            serde_json::from_slice(json).map_err(|e| MetadataError::Decode {
                what: BATCH,
                reason: e.to_string(),
            })
        }
        other => Err(MetadataError::UnsupportedVersion {
            what: BATCH,
            version: other.map(|(v, _)| *v),
        }),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_uuid() -> impl Strategy<Value = Uuid> {
        any::<u128>().prop_map(Uuid::from_u128)
    }

    fn arb_ids() -> impl Strategy<Value = Vec<BrokerId>> {
        proptest::collection::vec(any::<i32>(), 0..5)
    }

    fn arb_endpoint() -> impl Strategy<Value = Endpoint> {
        (
            "[A-Z_]{1,12}",
            "\\PC{0,20}",
            any::<u16>(),
            prop_oneof![
                Just(SecurityProtocol::Plaintext),
                Just(SecurityProtocol::Ssl),
                Just(SecurityProtocol::SaslPlaintext),
                Just(SecurityProtocol::SaslSsl),
            ],
        )
            .prop_map(|(listener, host, port, security_protocol)| Endpoint {
                listener,
                host,
                port,
                security_protocol,
            })
    }

    fn arb_resource() -> impl Strategy<Value = ConfigResource> {
        prop_oneof![
            "\\PC{0,20}".prop_map(ConfigResource::Topic),
            any::<i32>().prop_map(ConfigResource::Broker),
            "\\PC{1,20}".prop_map(ConfigResource::Group),
            Just(ConfigResource::ClusterDefault),
        ]
    }

    pub(crate) fn arb_record() -> impl Strategy<Value = MetadataRecord> {
        prop_oneof![
            "\\PC{0,30}"
                .prop_map(|cluster_id| MetadataRecord::ClusterId(ClusterIdRecord { cluster_id })),
            (
                any::<i32>(),
                arb_uuid(),
                proptest::collection::vec(arb_endpoint(), 0..3),
                proptest::option::of("\\PC{0,10}"),
                any::<bool>()
            )
                .prop_map(|(broker_id, incarnation_id, endpoints, rack, fenced)| {
                    MetadataRecord::RegisterBroker(RegisterBrokerRecord {
                        broker_id,
                        incarnation_id,
                        endpoints,
                        rack,
                        fenced,
                    })
                }),
            (
                any::<i32>(),
                any::<i64>(),
                any::<Option<bool>>(),
                any::<Option<bool>>(),
                any::<Option<bool>>()
            )
                .prop_map(
                    |(
                        broker_id,
                        broker_epoch,
                        fenced,
                        in_controlled_shutdown,
                        storage_unavailable,
                    )| {
                        MetadataRecord::BrokerRegistrationChange(BrokerRegistrationChangeRecord {
                            broker_id,
                            broker_epoch,
                            fenced,
                            in_controlled_shutdown,
                            storage_unavailable,
                        })
                    }
                ),
            (any::<i32>(), any::<i64>()).prop_map(|(broker_id, broker_epoch)| {
                MetadataRecord::UnregisterBroker(UnregisterBrokerRecord {
                    broker_id,
                    broker_epoch,
                })
            }),
            ("\\PC{0,30}", arb_uuid())
                .prop_map(|(name, topic_id)| MetadataRecord::Topic(TopicRecord { name, topic_id })),
            (
                arb_uuid(),
                any::<i32>(),
                arb_ids(),
                arb_ids(),
                any::<i32>(),
                any::<i32>(),
                any::<i32>()
            )
                .prop_map(
                    |(
                        topic_id,
                        partition_id,
                        replicas,
                        isr,
                        leader,
                        leader_epoch,
                        partition_epoch,
                    )| {
                        MetadataRecord::Partition(PartitionRecord {
                            topic_id,
                            partition_id,
                            replicas,
                            isr,
                            leader,
                            leader_epoch,
                            partition_epoch,
                        })
                    }
                ),
            (
                arb_uuid(),
                any::<i32>(),
                any::<Option<i32>>(),
                proptest::option::of(arb_ids()),
                proptest::option::of(arb_ids()),
                any::<Option<i32>>(),
                proptest::option::of(arb_ids()),
                proptest::option::of(arb_ids()),
            )
                .prop_map(
                    |(
                        topic_id,
                        partition_id,
                        leader,
                        isr,
                        replicas,
                        expected,
                        adding,
                        removing,
                    )| {
                        MetadataRecord::PartitionChange(PartitionChangeRecord {
                            topic_id,
                            partition_id,
                            leader,
                            isr,
                            replicas,
                            expected_partition_epoch: expected,
                            adding_replicas: adding,
                            removing_replicas: removing,
                        })
                    }
                ),
            arb_uuid()
                .prop_map(|topic_id| MetadataRecord::RemoveTopic(RemoveTopicRecord { topic_id })),
            (any::<i32>(), any::<i64>(), any::<i64>(), any::<i64>()).prop_map(
                |(broker_id, broker_epoch, first_producer_id, size)| {
                    MetadataRecord::ProducerIds(ProducerIdsRecord {
                        broker_id,
                        broker_epoch,
                        first_producer_id,
                        size,
                    })
                }
            ),
            (
                arb_resource(),
                "\\PC{0,20}",
                proptest::option::of("\\PC{0,20}")
            )
                .prop_map(|(resource, name, value)| MetadataRecord::Config(
                    ConfigRecord {
                        resource,
                        name,
                        value
                    }
                )),
            ("\\PC{0,20}", any::<u16>()).prop_map(|(name, feature_level)| {
                MetadataRecord::FeatureLevel(FeatureLevelRecord {
                    name,
                    feature_level,
                })
            }),
        ]
    }

    proptest! {
        #[test]
        fn batches_round_trip(records in proptest::collection::vec(arb_record(), 0..8)) {
            let bytes = encode_batch(&records).unwrap();
            prop_assert_eq!(bytes[0], RECORD_BATCH_VERSION);
            prop_assert_eq!(decode_batch(&bytes).unwrap(), records);
        }

        #[test]
        fn garbage_is_an_error_not_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            // Whatever it is, decoding returns; a version other than 1 is always refused.
            let result = decode_batch(&bytes);
            if bytes.first() != Some(&RECORD_BATCH_VERSION) {
                let is_unsupported = matches!(result, Err(MetadataError::UnsupportedVersion { .. }));
                prop_assert!(is_unsupported);
            }
        }

        #[test]
        fn damaged_batches_never_panic(
            records in proptest::collection::vec(arb_record(), 1..4),
            cut in any::<prop::sample::Index>(),
            flip in any::<prop::sample::Index>(),
        ) {
            let bytes = encode_batch(&records).unwrap();
            // A cut anywhere after the version byte leaves incomplete JSON: always an error.
            let cut_at = 1 + cut.index(bytes.len() - 1);
            prop_assert!(decode_batch(&bytes[..cut_at]).is_err());
            // A flipped byte may still decode (e.g. inside a string), but must not panic.
            let mut flipped = bytes.clone();
            let i = flip.index(flipped.len());
            flipped[i] ^= 0x5a;
            let _ = decode_batch(&flipped);
        }
    }

    #[test]
    fn unknown_versions_and_empty_input_are_refused() {
        let bytes = encode_batch(&[]).unwrap();
        assert_eq!(bytes, b"\x01[]");
        for version in [0u8, 2, 255] {
            let mut other = bytes.clone();
            other[0] = version;
            let err = decode_batch(&other).unwrap_err();
            assert!(matches!(
                err,
                MetadataError::UnsupportedVersion { version: Some(v), .. } if v == version
            ));
        }
        assert!(matches!(
            decode_batch(&[]),
            Err(MetadataError::UnsupportedVersion { version: None, .. })
        ));
    }

    #[test]
    fn unknown_types_fields_and_trailing_bytes_are_refused() {
        let cases: [&[u8]; 5] = [
            b"\x01[{\"type\":\"no_such_record\"}]",
            b"\x01[{\"type\":\"remove_topic\",\"topic_id\":\"00000000-0000-0000-0000-000000000001\",\"extra\":1}]",
            b"\x01[{\"type\":\"remove_topic\"}]",
            b"\x01[{\"type\":\"remove_topic\",\"topic_id\":7}]",
            b"\x01[] []",
        ];
        for bytes in cases {
            let err = decode_batch(bytes).unwrap_err();
            assert!(
                matches!(err, MetadataError::Decode { .. }),
                "{:?}: {err}",
                String::from_utf8_lossy(bytes)
            );
        }
        let ok = b"\x01[{\"type\":\"remove_topic\",\"topic_id\":\"00000000-0000-0000-0000-000000000001\"}]";
        assert_eq!(
            decode_batch(ok).unwrap(),
            vec![MetadataRecord::RemoveTopic(RemoveTopicRecord {
                topic_id: Uuid::from_u128(1)
            })]
        );
    }

    #[test]
    fn the_example_in_docs_cluster_md_decodes() {
        let example = br#"[{"type":"topic","name":"orders","topic_id":"6f1c2a0e-5d6b-4a53-9a0e-3c2b8f1d9e77"},
 {"type":"partition","topic_id":"6f1c2a0e-5d6b-4a53-9a0e-3c2b8f1d9e77","partition_id":0,
  "replicas":[2,3,1],"isr":[2,3,1],"leader":2,"leader_epoch":0,"partition_epoch":0},
 {"type":"config","resource":{"type":"topic","name":"orders"},"name":"retention.ms","value":"86400000"}]"#;
        let mut bytes = vec![RECORD_BATCH_VERSION];
        bytes.extend_from_slice(example);
        let records = decode_batch(&bytes).unwrap();
        assert_eq!(records.len(), 3);
        assert!(matches!(&records[2], MetadataRecord::Config(c)
            if c.resource == ConfigResource::Topic("orders".into()) && c.value.as_deref() == Some("86400000")));
        // The other config resources, as documented.
        let json =
            serde_json::to_string(&[ConfigResource::Broker(2), ConfigResource::ClusterDefault])
                .unwrap();
        assert_eq!(
            json,
            r#"[{"type":"broker","name":2},{"type":"cluster_default"}]"#
        );
    }

    #[test]
    fn deep_nesting_is_an_error() {
        // serde_json's recursion limit turns a stack-exhausting input into an error.
        let mut bytes = vec![RECORD_BATCH_VERSION];
        bytes.extend(std::iter::repeat_n(b'[', 100_000));
        assert!(decode_batch(&bytes).is_err());
    }
}
