//! The encoding of controller requests forwarded to the active controller: the body of the
//! quorum's ControllerRequest frame (kind 5, see `sluice_quorum::wire`) and of its answer.
//!
//! Both are CBOR (RFC 8949), like every other controller RPC body:
//! ```text
//! request  { "version": 1, "timeout_ms": u64, "request": ControllerRequest }
//! answer   { "version": 1, "result": {"Ok": {"value": ControllerAnswer, "offset": i64}}
//!                                  | {"Err": WireError} }
//! ```
//! `ControllerRequest` and `ControllerAnswer` are externally tagged enums (a map with one key,
//! the variant's name; a unit variant is its name as a text string) whose payloads are
//! sluice-metadata's request and result types with their field names. `timeout_ms` is the
//! time the sender still waits: the receiver gives up on the request after it (or after its
//! own request timeout, whichever is sooner). Per-item and whole-request errors travel as
//! [`WireMetadataError`]: one variant per `MetadataError` variant with its fields, so the
//! sender gets back the very error (Kafka name and message) the controller decided.
//!
//! **FetchMetadata** (a broker-only node following the metadata, see `observer`) is the one
//! request any voter answers itself, from its applied state, never forwarding it:
//! ```text
//! request  "FetchMetadata": { "after_offset": i64, "max_wait_ms": u64, "node_id": u64 | null }
//! answer   "FetchMetadata": { "leader": u64 | null,
//!                             "content": {"Batches": [{"offset": i64, "epoch": i64,
//!                                                      "records": bytes}, ...]}
//!                                      | {"Snapshot": bytes} }
//! ```
//! `after_offset` is the metadata offset the observer has applied (-1: none). The voter
//! answers the committed batches after it, in log order, as the metadata log holds them
//! (`sluice_metadata::encode_batch` bytes, with their Raft index and term), when it still
//! has them all in its window of recent batches; otherwise (and always for -1) a snapshot
//! of its image (`MetadataImage::to_snapshot_bytes`), whose offset is the answer's
//! `offset`. With nothing newer it waits up to `max_wait_ms` (long poll) and then answers an
//! empty list. `leader` is the quorum leader the voter knows of (the active controller), so
//! the observer sends its controller requests there. `node_id` is the observer's id (absent:
//! unnamed): the quorum leader lists the observers that fetched from it lately in
//! DescribeQuorum, with the offset they had. A voter of a build without this request
//! refuses it as undecodable (an unknown variant): the observer tries another voter.
//!
//! A body of another version, or one that does not decode (bad CBOR, unknown variant, trailing
//! bytes), is refused with an error answer; nothing is executed. A change to any of these
//! shapes needs a new version number.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sluice_metadata::controller::{
    AlterConfigs, AlterPartitionRequest, BrokerHeartbeatRequest, BrokerRegistrationRequest,
    CreatePartitions, CreateTopic, CreatedTopic, DeletedTopic, ProducerIdBlock, Reassignment,
    TopicRef,
};
use sluice_metadata::image::PartitionRegistration;
use sluice_metadata::records::BrokerId;
use sluice_metadata::MetadataError;
use sluice_quorum::types::Payload;
use sluice_quorum::{NodeId, QuorumDescription, QuorumError};
use uuid::Uuid;

use crate::error::ControllerError;
use crate::service::{HeartbeatResult, ItemResults};

/// The encoding version written and accepted.
pub const RPC_VERSION: u16 = 1;

/// One controller request, as a [`MetadataService`](crate::MetadataService) method takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControllerRequest {
    RegisterBroker(BrokerRegistrationRequest),
    BrokerHeartbeat(BrokerHeartbeatRequest),
    UnregisterBroker(BrokerId),
    CreateTopics(Vec<CreateTopic>),
    DeleteTopics(Vec<TopicRef>),
    CreatePartitions(Vec<CreatePartitions>),
    AlterConfigs(Vec<AlterConfigs>),
    AllocateProducerIds {
        broker_id: BrokerId,
        broker_epoch: i64,
        /// The block starts at this id or above (0: at the next free id). Absent in
        /// requests of builds before it: 0.
        #[serde(default)]
        at_least: i64,
    },
    AlterPartition(AlterPartitionRequest),
    ElectPreferredLeaders,
    /// Partition reassignments (a builder before it refuses the variant as undecodable).
    AlterPartitionReassignments {
        items: Vec<Reassignment>,
        allow_replication_factor_change: bool,
    },
    DescribeQuorum,
    /// The committed metadata after `after_offset`, answered by any voter (see the module
    /// docs); never forwarded.
    FetchMetadata {
        after_offset: i64,
        max_wait_ms: u64,
        /// The observer's node id, for DescribeQuorum. Absent: unnamed.
        #[serde(default)]
        node_id: Option<NodeId>,
    },
}

impl ControllerRequest {
    /// The request's name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            ControllerRequest::RegisterBroker(_) => "RegisterBroker",
            ControllerRequest::BrokerHeartbeat(_) => "BrokerHeartbeat",
            ControllerRequest::UnregisterBroker(_) => "UnregisterBroker",
            ControllerRequest::CreateTopics(_) => "CreateTopics",
            ControllerRequest::DeleteTopics(_) => "DeleteTopics",
            ControllerRequest::CreatePartitions(_) => "CreatePartitions",
            ControllerRequest::AlterConfigs(_) => "AlterConfigs",
            ControllerRequest::AllocateProducerIds { .. } => "AllocateProducerIds",
            ControllerRequest::AlterPartition(_) => "AlterPartition",
            ControllerRequest::ElectPreferredLeaders => "ElectPreferredLeaders",
            ControllerRequest::AlterPartitionReassignments { .. } => "AlterPartitionReassignments",
            ControllerRequest::DescribeQuorum => "DescribeQuorum",
            ControllerRequest::FetchMetadata { .. } => "FetchMetadata",
        }
    }
}

/// The value of a successful answer, one variant per request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControllerAnswer {
    RegisterBroker(i64),
    BrokerHeartbeat(HeartbeatResult),
    UnregisterBroker,
    CreateTopics(Vec<Result<CreatedTopic, WireMetadataError>>),
    DeleteTopics(Vec<Result<DeletedTopic, WireMetadataError>>),
    CreatePartitions(Vec<Result<(), WireMetadataError>>),
    AlterConfigs(Vec<Result<(), WireMetadataError>>),
    AllocateProducerIds(ProducerIdBlock),
    AlterPartition(PartitionRegistration),
    ElectPreferredLeaders(u64),
    AlterPartitionReassignments(Vec<Result<(), WireMetadataError>>),
    DescribeQuorum(QuorumDescription),
    FetchMetadata(MetadataFetch),
}

/// A voter's answer to FetchMetadata (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataFetch {
    /// The quorum leader the voter knows of.
    pub leader: Option<NodeId>,
    pub content: FetchedMetadata,
}

/// What a FetchMetadata answer carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FetchedMetadata {
    /// The committed batches after the observer's offset, in log order (empty: nothing
    /// new within the wait).
    Batches(Vec<FetchedBatch>),
    /// The voter's whole image, at the answer's offset.
    Snapshot(Payload),
}

/// One committed metadata batch: its position in the log and its bytes as proposed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchedBatch {
    pub offset: i64,
    pub epoch: i64,
    pub records: Payload,
}

/// A [`ControllerError`] on the wire. Errors of the answering node itself (its quorum, a
/// stop, a halt, its config) travel as text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireError {
    NotController {
        leader: Option<NodeId>,
    },
    Request(WireMetadataError),
    Rejected {
        offset: i64,
        reason: String,
    },
    Timeout {
        ms: u64,
    },
    /// The node could not take the request at all (it is stopping, or halted): nothing was
    /// executed, so the sender may try again (elsewhere).
    Unavailable(String),
    /// Any other failure of the answering node (its quorum failed, ...).
    Failed(String),
}

#[derive(Debug, Serialize, Deserialize)]
struct RequestEnvelope {
    version: u16,
    timeout_ms: u64,
    request: ControllerRequest,
}

#[derive(Debug, Serialize, Deserialize)]
struct AnswerEnvelope {
    version: u16,
    result: Result<Answered, WireError>,
}

/// A successful answer: the value and the controller's metadata offset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answered {
    pub value: ControllerAnswer,
    pub offset: i64,
}

/// Encodes a request and the time its sender still waits.
pub fn encode_request(request: &ControllerRequest, timeout_ms: u64) -> Result<Vec<u8>, String> {
    to_cbor(&RequestEnvelope {
        version: RPC_VERSION,
        timeout_ms,
        request: request.clone(),
    })
}

/// Decodes a request: the request and the time its sender still waits, in ms.
pub fn decode_request(bytes: &[u8]) -> Result<(ControllerRequest, u64), String> {
    check_version(bytes)?;
    let envelope: RequestEnvelope = from_cbor(bytes)?;
    Ok((envelope.request, envelope.timeout_ms))
}

/// Encodes an answer.
pub fn encode_answer(result: Result<Answered, WireError>) -> Result<Vec<u8>, String> {
    to_cbor(&AnswerEnvelope {
        version: RPC_VERSION,
        result,
    })
}

/// Decodes an answer.
pub fn decode_answer(bytes: &[u8]) -> Result<Result<Answered, WireError>, String> {
    check_version(bytes)?;
    Ok(from_cbor::<AnswerEnvelope>(bytes)?.result)
}

/// Reads only the `version` of an envelope, so a body of a newer version is refused as such
/// (not as "does not decode").
fn check_version(bytes: &[u8]) -> Result<(), String> {
    #[derive(Deserialize)]
    struct Version {
        version: u16,
    }
    let v: Version = ciborium::from_reader(bytes).map_err(|e| format!("bad body: {e}"))?;
    if v.version != RPC_VERSION {
        return Err(format!(
            "unsupported controller request version {} (this node reads {RPC_VERSION})",
            v.version
        ));
    }
    Ok(())
}

fn to_cbor<T: Serialize>(value: &T) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

/// Decodes CBOR; bad bytes give an error, never a panic (ciborium bounds recursion, serde
/// preallocates cautiously); trailing bytes are refused.
fn from_cbor<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let mut reader = bytes;
    let value = ciborium::from_reader(&mut reader).map_err(|e| format!("bad body: {e}"))?;
    if !reader.is_empty() {
        return Err(format!("bad body: {} trailing bytes", reader.len()));
    }
    Ok(value)
}

impl From<ControllerError> for WireError {
    fn from(e: ControllerError) -> WireError {
        match e {
            ControllerError::NotController { leader } => WireError::NotController { leader },
            ControllerError::Request(e) => WireError::Request(e.into()),
            ControllerError::Rejected { offset, reason } => WireError::Rejected { offset, reason },
            ControllerError::Timeout(d) => WireError::Timeout {
                ms: d.as_millis() as u64,
            },
            e @ (ControllerError::Stopped | ControllerError::Halted(_)) => {
                WireError::Unavailable(e.to_string())
            }
            e @ (ControllerError::Quorum(_) | ControllerError::Config(_)) => {
                WireError::Failed(e.to_string())
            }
        }
    }
}

impl WireError {
    /// The error as the forwarding node answers it; `node` is the node that answered.
    pub fn into_error(self, node: NodeId) -> ControllerError {
        match self {
            WireError::NotController { leader } => ControllerError::NotController { leader },
            WireError::Request(e) => ControllerError::Request(e.into()),
            WireError::Rejected { offset, reason } => ControllerError::Rejected { offset, reason },
            WireError::Timeout { ms } => {
                ControllerError::Timeout(std::time::Duration::from_millis(ms))
            }
            WireError::Unavailable(message) | WireError::Failed(message) => {
                ControllerError::Quorum(QuorumError::Remote { node, message })
            }
        }
    }
}

/// [`MetadataError`] on the wire: the same variants with the same fields. The `what` of the
/// codec errors ("record batch" / "snapshot") travels as text, and `Encode`'s source as its
/// message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireMetadataError {
    InvalidTopic(String),
    TopicAlreadyExists(String),
    UnknownTopicOrPartition(String),
    UnknownTopicId(Uuid),
    InvalidPartitions(String),
    InvalidReplicationFactor(String),
    InvalidReplicaAssignment(String),
    NoReassignmentInProgress(String),
    InvalidRequest(String),
    InvalidConfig(String),
    PolicyViolation(String),
    InconsistentClusterId {
        expected: String,
        got: String,
    },
    DuplicateBrokerRegistration {
        broker_id: i32,
        registered: Uuid,
    },
    BrokerIdNotRegistered(i32),
    StaleBrokerEpoch {
        broker_id: i32,
        got: i64,
        current: i64,
    },
    InvalidUpdateVersion {
        got: i32,
        current: i32,
    },
    NotLeader {
        broker_id: i32,
        leader_epoch: i32,
    },
    IneligibleReplica(String),
    ProducerIdsExhausted,
    InconsistentRecord {
        offset: i64,
        index: usize,
        reason: String,
    },
    OffsetNotIncreasing {
        offset: i64,
        last: i64,
    },
    UnsupportedMetadataVersion {
        level: u16,
        supported: u16,
    },
    MetadataVersionTooLow {
        needed: u16,
        level: u16,
    },
    UnsupportedVersion {
        what: String,
        version: Option<u8>,
    },
    Decode {
        what: String,
        reason: String,
    },
    Encode {
        what: String,
        message: String,
    },
    /// The controller's image is behind the request (Kafka: NOT_CONTROLLER).
    ControllerBehind(String),
}

/// The `&'static str` a codec error names: the crate's two, or a generic one.
fn what(s: &str) -> &'static str {
    match s {
        "record batch" => "record batch",
        "snapshot" => "snapshot",
        _ => "metadata",
    }
}

impl From<MetadataError> for WireMetadataError {
    fn from(e: MetadataError) -> Self {
        use MetadataError as M;
        use WireMetadataError as W;
        // Exhaustive, no wildcard: a new MetadataError variant needs a wire form.
        match e {
            M::InvalidTopic(s) => W::InvalidTopic(s),
            M::TopicAlreadyExists(s) => W::TopicAlreadyExists(s),
            M::UnknownTopicOrPartition(s) => W::UnknownTopicOrPartition(s),
            M::UnknownTopicId(id) => W::UnknownTopicId(id),
            M::InvalidPartitions(s) => W::InvalidPartitions(s),
            M::InvalidReplicationFactor(s) => W::InvalidReplicationFactor(s),
            M::InvalidReplicaAssignment(s) => W::InvalidReplicaAssignment(s),
            M::NoReassignmentInProgress(s) => W::NoReassignmentInProgress(s),
            M::InvalidRequest(s) => W::InvalidRequest(s),
            M::InvalidConfig(s) => W::InvalidConfig(s),
            M::PolicyViolation(s) => W::PolicyViolation(s),
            M::InconsistentClusterId { expected, got } => {
                W::InconsistentClusterId { expected, got }
            }
            M::DuplicateBrokerRegistration {
                broker_id,
                registered,
            } => W::DuplicateBrokerRegistration {
                broker_id,
                registered,
            },
            M::BrokerIdNotRegistered(id) => W::BrokerIdNotRegistered(id),
            M::StaleBrokerEpoch {
                broker_id,
                got,
                current,
            } => W::StaleBrokerEpoch {
                broker_id,
                got,
                current,
            },
            M::InvalidUpdateVersion { got, current } => W::InvalidUpdateVersion { got, current },
            M::NotLeader {
                broker_id,
                leader_epoch,
            } => W::NotLeader {
                broker_id,
                leader_epoch,
            },
            M::IneligibleReplica(s) => W::IneligibleReplica(s),
            M::ControllerBehind(s) => W::ControllerBehind(s),
            M::ProducerIdsExhausted => W::ProducerIdsExhausted,
            M::InconsistentRecord {
                offset,
                index,
                reason,
            } => W::InconsistentRecord {
                offset,
                index,
                reason,
            },
            M::OffsetNotIncreasing { offset, last } => W::OffsetNotIncreasing { offset, last },
            M::UnsupportedMetadataVersion { level, supported } => {
                W::UnsupportedMetadataVersion { level, supported }
            }
            M::MetadataVersionTooLow { needed, level } => {
                W::MetadataVersionTooLow { needed, level }
            }
            M::UnsupportedVersion { what, version } => W::UnsupportedVersion {
                what: what.into(),
                version,
            },
            M::Decode { what, reason } => W::Decode {
                what: what.into(),
                reason,
            },
            M::Encode { what, source } => W::Encode {
                what: what.into(),
                message: source.to_string(),
            },
        }
    }
}

impl From<WireMetadataError> for MetadataError {
    fn from(e: WireMetadataError) -> Self {
        use MetadataError as M;
        use WireMetadataError as W;
        match e {
            W::InvalidTopic(s) => M::InvalidTopic(s),
            W::TopicAlreadyExists(s) => M::TopicAlreadyExists(s),
            W::UnknownTopicOrPartition(s) => M::UnknownTopicOrPartition(s),
            W::UnknownTopicId(id) => M::UnknownTopicId(id),
            W::InvalidPartitions(s) => M::InvalidPartitions(s),
            W::InvalidReplicationFactor(s) => M::InvalidReplicationFactor(s),
            W::InvalidReplicaAssignment(s) => M::InvalidReplicaAssignment(s),
            W::NoReassignmentInProgress(s) => M::NoReassignmentInProgress(s),
            W::InvalidRequest(s) => M::InvalidRequest(s),
            W::InvalidConfig(s) => M::InvalidConfig(s),
            W::PolicyViolation(s) => M::PolicyViolation(s),
            W::InconsistentClusterId { expected, got } => {
                M::InconsistentClusterId { expected, got }
            }
            W::DuplicateBrokerRegistration {
                broker_id,
                registered,
            } => M::DuplicateBrokerRegistration {
                broker_id,
                registered,
            },
            W::BrokerIdNotRegistered(id) => M::BrokerIdNotRegistered(id),
            W::StaleBrokerEpoch {
                broker_id,
                got,
                current,
            } => M::StaleBrokerEpoch {
                broker_id,
                got,
                current,
            },
            W::InvalidUpdateVersion { got, current } => M::InvalidUpdateVersion { got, current },
            W::NotLeader {
                broker_id,
                leader_epoch,
            } => M::NotLeader {
                broker_id,
                leader_epoch,
            },
            W::IneligibleReplica(s) => M::IneligibleReplica(s),
            W::ControllerBehind(s) => M::ControllerBehind(s),
            W::ProducerIdsExhausted => M::ProducerIdsExhausted,
            W::InconsistentRecord {
                offset,
                index,
                reason,
            } => M::InconsistentRecord {
                offset,
                index,
                reason,
            },
            W::OffsetNotIncreasing { offset, last } => M::OffsetNotIncreasing { offset, last },
            W::UnsupportedMetadataVersion { level, supported } => {
                M::UnsupportedMetadataVersion { level, supported }
            }
            W::MetadataVersionTooLow { needed, level } => {
                M::MetadataVersionTooLow { needed, level }
            }
            W::UnsupportedVersion { what: w, version } => M::UnsupportedVersion {
                what: what(&w),
                version,
            },
            W::Decode { what: w, reason } => M::Decode {
                what: what(&w),
                reason,
            },
            W::Encode { what: w, message } => M::Encode {
                what: what(&w),
                source: <serde_json::Error as serde::de::Error>::custom(message),
            },
        }
    }
}

/// Per-item results on the wire.
pub(crate) fn items_to_wire<T>(items: ItemResults<T>) -> Vec<Result<T, WireMetadataError>> {
    items
        .into_iter()
        .map(|r| r.map_err(WireMetadataError::from))
        .collect()
}

/// Per-item results from the wire.
pub(crate) fn items_from_wire<T>(items: Vec<Result<T, WireMetadataError>>) -> ItemResults<T> {
    items
        .into_iter()
        .map(|r| r.map_err(MetadataError::from))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn requests() -> Vec<ControllerRequest> {
        use sluice_metadata::controller::{IsrMember, ReplicaAssignment};
        use sluice_metadata::records::{ConfigResource, Endpoint, SecurityProtocol};
        vec![
            ControllerRequest::RegisterBroker(BrokerRegistrationRequest {
                broker_id: 4,
                cluster_id: "abc".into(),
                incarnation_id: Uuid::new_v4(),
                previous_incarnation_id: None,
                endpoints: vec![Endpoint {
                    listener: "PLAINTEXT".into(),
                    host: "127.0.0.1".into(),
                    port: 9092,
                    security_protocol: SecurityProtocol::Plaintext,
                }],
                rack: Some("r1".into()),
            }),
            ControllerRequest::BrokerHeartbeat(BrokerHeartbeatRequest {
                broker_id: 4,
                broker_epoch: 17,
                current_metadata_offset: 30,
                want_fence: false,
                want_shut_down: true,
                storage_unavailable: false,
            }),
            ControllerRequest::UnregisterBroker(3),
            ControllerRequest::CreateTopics(vec![CreateTopic {
                name: "t".into(),
                num_partitions: -1,
                replication_factor: -1,
                assignments: vec![ReplicaAssignment {
                    partition: 0,
                    replicas: vec![1, 2],
                }],
                configs: BTreeMap::from([("cleanup.policy".into(), "compact".into())]),
                topic_id: None,
            }]),
            ControllerRequest::DeleteTopics(vec![
                TopicRef::Name("t".into()),
                TopicRef::Id(Uuid::new_v4()),
            ]),
            ControllerRequest::CreatePartitions(vec![CreatePartitions {
                name: "t".into(),
                count: 3,
                assignments: Some(vec![vec![1], vec![2]]),
            }]),
            ControllerRequest::AlterConfigs(vec![AlterConfigs {
                resource: ConfigResource::Broker(1),
                changes: vec![("a".into(), Some("1".into())), ("b".into(), None)],
            }]),
            ControllerRequest::AllocateProducerIds {
                broker_id: 1,
                broker_epoch: 9,
                at_least: 5_000,
            },
            ControllerRequest::AlterPartition(AlterPartitionRequest {
                broker_id: 1,
                broker_epoch: 9,
                topic_id: Uuid::new_v4(),
                partition: 2,
                leader_epoch: 3,
                partition_epoch: 4,
                new_isr: vec![IsrMember {
                    broker_id: 2,
                    broker_epoch: 11,
                }],
            }),
            ControllerRequest::ElectPreferredLeaders,
            ControllerRequest::AlterPartitionReassignments {
                items: vec![
                    Reassignment {
                        topic: "t".into(),
                        partition: 0,
                        target: Some(vec![2, 3]),
                    },
                    Reassignment {
                        topic: "t".into(),
                        partition: 1,
                        target: None,
                    },
                ],
                allow_replication_factor_change: false,
            },
            ControllerRequest::DescribeQuorum,
            ControllerRequest::FetchMetadata {
                after_offset: -1,
                max_wait_ms: 500,
                node_id: Some(4),
            },
        ]
    }

    #[test]
    fn every_request_round_trips() {
        for request in requests() {
            let bytes = encode_request(&request, 1234).unwrap();
            let (back, timeout_ms) = decode_request(&bytes).unwrap();
            assert_eq!(back, request, "{}", request.name());
            assert_eq!(timeout_ms, 1234);
        }
    }

    #[test]
    fn answers_and_errors_round_trip_with_their_kafka_names() {
        let errors = vec![
            MetadataError::TopicAlreadyExists("t".into()),
            MetadataError::StaleBrokerEpoch {
                broker_id: 1,
                got: 2,
                current: 3,
            },
            MetadataError::ProducerIdsExhausted,
            MetadataError::Decode {
                what: "snapshot",
                reason: "x".into(),
            },
            MetadataError::Encode {
                what: "record batch",
                source: <serde_json::Error as serde::de::Error>::custom("boom"),
            },
        ];
        let names: Vec<_> = errors.iter().map(|e| e.kafka_error_name()).collect();
        let messages: Vec<_> = errors.iter().map(|e| e.to_string()).collect();
        let items: ItemResults<()> = errors.into_iter().map(Err).chain([Ok(())]).collect();
        let answer = Answered {
            value: ControllerAnswer::AlterConfigs(items_to_wire(items)),
            offset: 42,
        };
        let bytes = encode_answer(Ok(answer.clone())).unwrap();
        let back = decode_answer(&bytes).unwrap().unwrap();
        assert_eq!(back, answer);
        let ControllerAnswer::AlterConfigs(items) = back.value else {
            panic!("{back:?}")
        };
        let items = items_from_wire(items);
        assert!(items[5].is_ok());
        for (i, item) in items[..5].iter().enumerate() {
            let e = item.as_ref().unwrap_err();
            assert_eq!(e.kafka_error_name(), names[i]);
            assert_eq!(e.to_string(), messages[i]);
        }

        for e in [
            ControllerError::NotController { leader: Some(2) },
            ControllerError::Request(MetadataError::BrokerIdNotRegistered(7)),
            ControllerError::Timeout(std::time::Duration::from_millis(1500)),
            ControllerError::Stopped,
        ] {
            let name = e.kafka_error_name();
            let bytes = encode_answer(Err(e.into())).unwrap();
            let back = decode_answer(&bytes).unwrap().unwrap_err().into_error(3);
            assert_eq!(back.kafka_error_name(), name, "{back}");
        }
    }

    #[test]
    fn bad_bytes_are_refused() {
        let good = encode_request(&ControllerRequest::ElectPreferredLeaders, 10).unwrap();
        // Empty, garbage, every truncation, and a trailing byte: errors, never a panic.
        assert!(decode_request(&[]).is_err());
        assert!(decode_request(b"\xff\x00garbage").is_err());
        for cut in 0..good.len() {
            assert!(decode_request(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(decode_request(&trailing).is_err());
        // Random bytes: errors or (rarely) a valid request, never a panic.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2000 {
            let len = (seed % 64) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            let _ = decode_request(&bytes);
            let _ = decode_answer(&bytes);
        }
        // A huge declared array length allocates nothing up front.
        let mut huge = to_cbor(&RequestEnvelope {
            version: RPC_VERSION,
            timeout_ms: 1,
            request: ControllerRequest::CreateTopics(Vec::new()),
        })
        .unwrap();
        let at = huge.len() - 1;
        assert_eq!(huge[at], 0x80, "an empty array ends the body");
        huge.truncate(at);
        huge.extend_from_slice(&[0x9b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        assert!(decode_request(&huge).is_err());
    }

    /// Removes the map entry `field` wherever it occurs in a CBOR value.
    fn without_field(value: ciborium::Value, field: &str) -> ciborium::Value {
        use ciborium::Value;
        match value {
            Value::Map(entries) => Value::Map(
                entries
                    .into_iter()
                    .filter(|(k, _)| k.as_text() != Some(field))
                    .map(|(k, v)| (k, without_field(v, field)))
                    .collect(),
            ),
            Value::Array(items) => {
                Value::Array(items.into_iter().map(|v| without_field(v, field)).collect())
            }
            other => other,
        }
    }

    #[test]
    fn requests_of_builds_without_the_newer_fields_still_decode() {
        let requests = [
            ControllerRequest::AllocateProducerIds {
                broker_id: 1,
                broker_epoch: 9,
                at_least: 0,
            },
            ControllerRequest::CreateTopics(vec![CreateTopic {
                name: "t".into(),
                num_partitions: 1,
                replication_factor: 1,
                assignments: Vec::new(),
                configs: BTreeMap::new(),
                topic_id: None,
            }]),
        ];
        let requests = requests
            .into_iter()
            .chain([ControllerRequest::FetchMetadata {
                after_offset: 3,
                max_wait_ms: 100,
                node_id: None,
            }]);
        for (request, field) in requests.zip(["at_least", "topic_id", "node_id"]) {
            let bytes = encode_request(&request, 5).unwrap();
            let value: ciborium::Value = ciborium::from_reader(&bytes[..]).unwrap();
            let old = to_cbor(&without_field(value, field)).unwrap();
            assert_ne!(old, bytes, "{field} was in the encoding");
            assert_eq!(decode_request(&old).unwrap(), (request, 5));
        }
    }

    #[test]
    fn fetch_metadata_answers_round_trip_and_garbage_is_refused() {
        let answers = [
            MetadataFetch {
                leader: Some(2),
                content: FetchedMetadata::Batches(vec![
                    FetchedBatch {
                        offset: 7,
                        epoch: 1,
                        records: Payload(vec![1, 2, 3]),
                    },
                    FetchedBatch {
                        offset: 9,
                        epoch: 2,
                        records: Payload(Vec::new()),
                    },
                ]),
            },
            MetadataFetch {
                leader: None,
                content: FetchedMetadata::Snapshot(Payload(vec![0xa5; 300])),
            },
            MetadataFetch {
                leader: Some(1),
                content: FetchedMetadata::Batches(Vec::new()),
            },
        ];
        for fetch in answers {
            let answer = Answered {
                value: ControllerAnswer::FetchMetadata(fetch),
                offset: 9,
            };
            let bytes = encode_answer(Ok(answer.clone())).unwrap();
            assert_eq!(decode_answer(&bytes).unwrap().unwrap(), answer);
            // The records are a byte string, not an array of integers.
            if let ControllerAnswer::FetchMetadata(MetadataFetch {
                content: FetchedMetadata::Snapshot(p),
                ..
            }) = &answer.value
            {
                assert!(bytes.len() < p.0.len() + 100, "{}", bytes.len());
            }
            for cut in 0..bytes.len() {
                assert!(decode_answer(&bytes[..cut]).is_err(), "cut at {cut}");
            }
            // Every single-byte corruption: an error or another answer, never a panic.
            for at in 0..bytes.len() {
                let mut bad = bytes.clone();
                bad[at] ^= 0xff;
                let _ = decode_answer(&bad);
            }
        }
        // A declared byte string far longer than the body allocates nothing up front.
        let mut huge = encode_answer(Ok(Answered {
            value: ControllerAnswer::FetchMetadata(MetadataFetch {
                leader: None,
                content: FetchedMetadata::Snapshot(Payload(Vec::new())),
            }),
            offset: 1,
        }))
        .unwrap();
        let at = huge
            .iter()
            .rposition(|&b| b == 0x40)
            .expect("the empty byte string");
        huge.splice(
            at..=at,
            [0x5b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        );
        assert!(decode_answer(&huge).is_err());
    }

    #[test]
    fn another_version_is_refused_as_such() {
        let bytes = to_cbor(&RequestEnvelope {
            version: 2,
            timeout_ms: 1,
            request: ControllerRequest::ElectPreferredLeaders,
        })
        .unwrap();
        let err = decode_request(&bytes).unwrap_err();
        assert!(err.contains("version 2"), "{err}");
    }
}
