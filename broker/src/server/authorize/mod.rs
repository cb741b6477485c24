//! Which operations each API needs, checked before its handler runs: Kafka's rules from
//! `KafkaApis`, with its error codes and answer shapes.
//!
//! Every check has the same form: the parts of a request the principal may not touch are
//! taken out of it before the handler sees it (so nothing is written, read or created for
//! them), and their answers, carrying TOPIC_ / GROUP_ / CLUSTER_ /
//! TRANSACTIONAL_ID_AUTHORIZATION_FAILED, are added to the handler's answer afterwards.
//! Requests for everything (Metadata, ListGroups, OffsetFetch of all topics) have their
//! answers filtered instead. Handlers stay free of authorization, and a broker without an
//! authorizer pays one branch per request.
//!
//! The rules, per resource:
//! - topics: Produce needs Write; Fetch (consumers), OffsetCommit, OffsetDelete and
//!   DescribeProducers Read;
//!   Metadata, ListOffsets, OffsetFetch and OffsetForLeaderEpoch Describe; DeleteTopics
//!   and DeleteRecords Delete; CreatePartitions Alter; CreateTopics Create on the cluster
//!   or the topic (and automatic creation by Metadata the same);
//!   DescribeConfigs/IncrementalAlterConfigs (and AlterConfigs) DescribeConfigs/AlterConfigs;
//! - groups: JoinGroup, SyncGroup, Heartbeat, LeaveGroup and OffsetCommit need Read;
//!   FindCoordinator, DescribeGroups and OffsetFetch Describe (ListGroups lists those);
//!   DeleteGroups and OffsetDelete Delete;
//! - the cluster: follower Fetch and OffsetForLeaderEpoch ClusterAction; DescribeLogDirs,
//!   DescribeQuorum, DescribeAcls and DescribeUserScramCredentials Describe; CreateAcls,
//!   DeleteAcls and AlterUserScramCredentials Alter; broker configs DescribeConfigs /
//!   AlterConfigs;
//! - transactional ids: Produce and InitProducerId with one need Write on it; an
//!   idempotent InitProducerId needs IdempotentWrite on the cluster or Write on some topic
//!   (KIP-679).

mod groups;
#[cfg(test)]
mod tests;

pub use groups::{
    delete_groups, find_coordinator, group_denial, offset_commit_topics, offset_delete_topics,
    post_describe_groups, post_list_groups, OffsetFetchFilter,
};

use std::borrow::Cow;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_configs_response::DescribeConfigsResult;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreateTopicsRequest, CreateTopicsResponse, DeleteRecordsRequest,
    DeleteTopicsRequest, DescribeConfigsRequest, FetchRequest, IncrementalAlterConfigsRequest,
    InitProducerIdRequest, InitProducerIdResponse, ListOffsetsRequest, MetadataRequest,
    MetadataResponse, OffsetForLeaderEpochRequest, ProduceRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use crate::handlers::metadata::{Wanted, OPERATIONS_NOT_REQUESTED};
use crate::security::acl::{Access, Operation, ResourceType};
use crate::state::BrokerState;

const TOPIC: ResourceType = ResourceType::Topic;

/// DescribeConfigs / AlterConfigs resource types (Kafka's `ConfigResource.Type`).
const CONFIG_TOPIC: i8 = 2;
const CONFIG_BROKER: i8 = 4;
const CONFIG_BROKER_LOGGER: i8 = 8;
const CONFIG_CLIENT_METRICS: i8 = 16;
const CONFIG_GROUP: i8 = 32;

fn code(error: ResponseError) -> i16 {
    error.code()
}

/// Removes the items `keep` refuses from `items`, in order, and returns them.
fn take_denied<T>(items: &mut Vec<T>, mut keep: impl FnMut(&T) -> bool) -> Vec<T> {
    refuse(items, |item| (!keep(item)).then_some(()))
        .into_iter()
        .map(|(item, ())| item)
        .collect()
}

/// Removes from `items` those `refusal` answers for (`Some`), in order, and returns
/// them with their answers.
fn refuse<T, A>(items: &mut Vec<T>, mut refusal: impl FnMut(&T) -> Option<A>) -> Vec<(T, A)> {
    let mut refused = Vec::new();
    let mut kept = Vec::with_capacity(items.len());
    for item in items.drain(..) {
        match refusal(&item) {
            Some(answer) => refused.push((item, answer)),
            None => kept.push(item),
        }
    }
    *items = kept;
    refused
}

/// Topic names from ids and whether topics exist: the cluster's metadata image in a
/// cluster, the local registry on a single node.
pub struct TopicNames<'a> {
    state: &'a BrokerState,
    image: Option<std::sync::Arc<sluice_metadata::MetadataImage>>,
}

impl<'a> TopicNames<'a> {
    pub fn new(state: &'a BrokerState) -> TopicNames<'a> {
        TopicNames {
            state,
            image: state.cluster.as_ref().map(|node| node.image()),
        }
    }

    /// The name of the topic with `id`, if it exists.
    pub fn name_of(&self, id: Uuid) -> Option<String> {
        match &self.image {
            Some(image) => image.topic_by_id(id).map(|t| t.name.clone()),
            None => self.state.topics.get_by_id(id).map(|t| t.name.to_string()),
        }
    }

    pub fn exists(&self, name: &str) -> bool {
        match &self.image {
            Some(image) => image.topic(name).is_some(),
            None => self.state.topics.get(name).is_some(),
        }
    }

    /// The topic a request names by name (`by_id` false) or by id; `None` for an unknown
    /// id (the handler answers UNKNOWN_TOPIC_ID). Borrowed when named, so the produce and
    /// fetch path allocates nothing here.
    fn resolve<'n>(&self, by_id: bool, name: &'n TopicName, id: Uuid) -> Option<Cow<'n, str>> {
        if by_id {
            self.name_of(id).map(Cow::Owned)
        } else {
            Some(Cow::Borrowed(name.0.as_str()))
        }
    }
}

// ---- Produce, Fetch, ListOffsets, OffsetForLeaderEpoch, DeleteRecords -------------------

/// Produce: takes out the topics the principal may not write; returns their answers.
/// (Transactional batches are refused whole by the handler, TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
/// as Kafka refuses them without Write on their transactional id: Sluice has no
/// transactions.)
pub fn produce(
    access: &mut Access<'_>,
    names: &TopicNames<'_>,
    request: &mut ProduceRequest,
    version: i16,
) -> Vec<TopicProduceResponse> {
    if !access.is_enabled() {
        return Vec::new();
    }
    let by_id = version >= 13;
    let error = ResponseError::TopicAuthorizationFailed;
    take_denied(&mut request.topic_data, |t| {
        names
            .resolve(by_id, &t.name, t.topic_id)
            .is_none_or(|name| access.allows(Operation::Write, TOPIC, &name))
    })
    .into_iter()
    .map(|t| {
        TopicProduceResponse::default()
            .with_name(t.name)
            .with_topic_id(t.topic_id)
            .with_partition_responses(
                t.partition_data
                    .iter()
                    .map(|p| {
                        PartitionProduceResponse::default()
                            .with_index(p.index)
                            .with_error_code(code(error))
                            .with_base_offset(-1)
                            .with_log_append_time_ms(-1)
                            .with_log_start_offset(-1)
                    })
                    .collect(),
            )
    })
    .collect()
}

/// Fetch: a follower's fetch needs ClusterAction, a consumer's Read on each topic. Takes
/// out what is denied; returns its answers.
pub fn fetch(
    access: &mut Access<'_>,
    names: &TopicNames<'_>,
    request: &mut FetchRequest,
    version: i16,
) -> Vec<FetchableTopicResponse> {
    if !access.is_enabled() {
        return Vec::new();
    }
    let follower = if version >= 15 {
        request.replica_state.replica_id.0 >= 0
    } else {
        request.replica_id.0 >= 0
    };
    let cluster_denied = follower && !access.allows_cluster(Operation::ClusterAction);
    let by_id = version >= 13;
    let denied = take_denied(&mut request.topics, |t| {
        if follower {
            return !cluster_denied;
        }
        match names.resolve(by_id, &t.topic, t.topic_id) {
            Some(name) => access.allows(Operation::Read, TOPIC, &name),
            None => true,
        }
    });
    denied
        .into_iter()
        .map(|t| {
            FetchableTopicResponse::default()
                .with_topic(t.topic)
                .with_topic_id(t.topic_id)
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            PartitionData::default()
                                .with_partition_index(p.partition)
                                .with_error_code(code(ResponseError::TopicAuthorizationFailed))
                                .with_high_watermark(-1)
                                .with_last_stable_offset(-1)
                                .with_log_start_offset(-1)
                                .with_preferred_read_replica(kafka_protocol::messages::BrokerId(-1))
                                .with_records(Some(bytes::Bytes::new()))
                        })
                        .collect(),
                )
        })
        .collect()
}

/// DescribeProducers: Read on each topic (Kafka's rule).
pub fn describe_producers(
    access: &mut Access<'_>,
    request: &mut kafka_protocol::messages::DescribeProducersRequest,
) -> Vec<kafka_protocol::messages::describe_producers_response::TopicResponse> {
    use kafka_protocol::messages::describe_producers_response::{PartitionResponse, TopicResponse};
    if !access.is_enabled() {
        return Vec::new();
    }
    take_denied(&mut request.topics, |t| {
        access.allows(Operation::Read, TOPIC, &t.name)
    })
    .into_iter()
    .map(|t| {
        TopicResponse::default().with_name(t.name).with_partitions(
            t.partition_indexes
                .iter()
                .map(|&index| {
                    PartitionResponse::default()
                        .with_partition_index(index)
                        .with_error_code(code(ResponseError::TopicAuthorizationFailed))
                })
                .collect(),
        )
    })
    .collect()
}

/// ListOffsets: Describe on each topic.
pub fn list_offsets(
    access: &mut Access<'_>,
    request: &mut ListOffsetsRequest,
) -> Vec<ListOffsetsTopicResponse> {
    if !access.is_enabled() {
        return Vec::new();
    }
    take_denied(&mut request.topics, |t| {
        access.allows(Operation::Describe, TOPIC, &t.name)
    })
    .into_iter()
    .map(|t| {
        ListOffsetsTopicResponse::default()
            .with_name(t.name)
            .with_partitions(
                t.partitions
                    .iter()
                    .map(|p| {
                        ListOffsetsPartitionResponse::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(code(ResponseError::TopicAuthorizationFailed))
                            .with_timestamp(-1)
                            .with_offset(-1)
                            .with_leader_epoch(-1)
                    })
                    .collect(),
            )
    })
    .collect()
}

/// OffsetForLeaderEpoch: ClusterAction on the cluster (brokers) allows every topic;
/// otherwise Describe on each.
pub fn offset_for_leader_epoch(
    access: &mut Access<'_>,
    request: &mut OffsetForLeaderEpochRequest,
) -> Vec<OffsetForLeaderTopicResult> {
    if !access.is_enabled() || access.allows_cluster(Operation::ClusterAction) {
        return Vec::new();
    }
    let error = ResponseError::TopicAuthorizationFailed;
    take_denied(&mut request.topics, |t| {
        access.allows(Operation::Describe, TOPIC, &t.topic)
    })
    .into_iter()
    .map(|t| {
        OffsetForLeaderTopicResult::default()
            .with_topic(t.topic)
            .with_partitions(
                t.partitions
                    .iter()
                    .map(|p| {
                        EpochEndOffset::default()
                            .with_partition(p.partition)
                            .with_error_code(code(error))
                            .with_leader_epoch(-1)
                            .with_end_offset(-1)
                    })
                    .collect(),
            )
    })
    .collect()
}

/// DeleteRecords: Delete on each topic.
pub fn delete_records(
    access: &mut Access<'_>,
    request: &mut DeleteRecordsRequest,
) -> Vec<DeleteRecordsTopicResult> {
    if !access.is_enabled() {
        return Vec::new();
    }
    take_denied(&mut request.topics, |t| {
        access.allows(Operation::Delete, TOPIC, &t.name)
    })
    .into_iter()
    .map(|t| {
        DeleteRecordsTopicResult::default()
            .with_name(t.name)
            .with_partitions(
                t.partitions
                    .iter()
                    .map(|p| {
                        DeleteRecordsPartitionResult::default()
                            .with_partition_index(p.partition_index)
                            .with_low_watermark(-1)
                            .with_error_code(code(ResponseError::TopicAuthorizationFailed))
                    })
                    .collect(),
            )
    })
    .collect()
}

/// InitProducerId: the refusal, if the principal may not get a producer id.
pub fn init_producer_id(
    access: &mut Access<'_>,
    request: &InitProducerIdRequest,
) -> Option<InitProducerIdResponse> {
    if !access.is_enabled() {
        return None;
    }
    let error = match &request.transactional_id {
        Some(id) if !access.allows(Operation::Write, ResourceType::TransactionalId, id) => {
            ResponseError::TransactionalIdAuthorizationFailed
        }
        Some(_) => return None,
        None if access.allows_cluster(Operation::IdempotentWrite)
            || access.allows_any(Operation::Write, TOPIC) =>
        {
            return None
        }
        None => ResponseError::ClusterAuthorizationFailed,
    };
    Some(
        InitProducerIdResponse::default()
            .with_error_code(code(error))
            .with_producer_id(kafka_protocol::messages::ProducerId(-1))
            .with_producer_epoch(-1),
    )
}

// ---- Metadata and DescribeCluster ----------------------------------------------------------

/// What [`metadata`] took out of a Metadata request, added back by [`post_metadata`].
#[derive(Default)]
pub struct MetadataDenied {
    topics: Vec<MetadataResponseTopic>,
    /// Every topic named was denied: the handler sees an empty list, which v0 reads as
    /// "all topics", so its topics are dropped.
    emptied: bool,
}

/// Metadata: a named topic needs Describe, and creating a missing one Create on the
/// cluster or the topic. Takes out the topics denied.
pub fn metadata(
    access: &mut Access<'_>,
    names: &TopicNames<'_>,
    request: &mut MetadataRequest,
    auto_create: bool,
) -> MetadataDenied {
    let mut denied = MetadataDenied::default();
    if !access.is_enabled() {
        return denied;
    }
    let Some(wanted) = request.topics.as_mut() else {
        return denied;
    };
    let creates = auto_create && request.allow_auto_topic_creation;
    let cluster_create = creates && access.allows_cluster(Operation::Create);
    let refused = refuse(wanted, |t| {
        // Resolved exactly as the handlers resolve it (`Wanted::of`), so the topic
        // checked is the topic answered.
        let (name, by_id) = match Wanted::of(t) {
            Wanted::Name(name) => (name, false),
            Wanted::Id(id) => (names.name_of(id)?, true),
            // Unknown ids and invalid entries: the handler's errors.
            Wanted::Invalid => return None,
        };
        let refusal = MetadataResponseTopic::default()
            .with_topic_id(Uuid::nil())
            .with_error_code(code(ResponseError::TopicAuthorizationFailed))
            .with_topic_authorized_operations(OPERATIONS_NOT_REQUESTED);
        if !access.allows(Operation::Describe, TOPIC, &name) {
            // Asked by id, the name is not revealed.
            let shown = (!by_id).then(|| TopicName(StrBytes::from_string(name)));
            return Some(refusal.with_name(shown));
        }
        let creates_it = creates && !cluster_create && !names.exists(&name);
        if creates_it && !access.allows(Operation::Create, TOPIC, &name) {
            return Some(refusal.with_name(Some(TopicName(StrBytes::from_string(name)))));
        }
        None
    });
    denied.emptied = !refused.is_empty() && wanted.is_empty();
    denied.topics = refused.into_iter().map(|(_, answer)| answer).collect();
    denied
}

/// Adds the denied topics back, keeps only the topics the principal may describe when the
/// request asked for all, and fills the authorized-operations bit fields asked for.
pub fn post_metadata(
    access: &mut Access<'_>,
    denied: MetadataDenied,
    asked: MetadataAsked,
    response: &mut MetadataResponse,
) {
    let MetadataAsked {
        all_topics,
        cluster_operations: wants_cluster_operations,
    } = asked;
    if access.is_enabled() {
        if all_topics {
            response.topics.retain(|t| {
                t.name
                    .as_ref()
                    .is_none_or(|n| access.allows(Operation::Describe, TOPIC, n))
            });
        }
        for t in &mut response.topics {
            if t.topic_authorized_operations != OPERATIONS_NOT_REQUESTED {
                if let Some(name) = &t.name {
                    t.topic_authorized_operations = access.authorized_operations(TOPIC, name);
                }
            }
        }
        if denied.emptied {
            response.topics.clear();
        }
        response.topics.extend(denied.topics);
    }
    if wants_cluster_operations {
        response.cluster_authorized_operations = cluster_operations(access);
    }
}

/// What a Metadata request asked for, read before [`metadata`] changes it.
#[derive(Clone, Copy)]
pub struct MetadataAsked {
    /// Every topic (null, or v0's empty list).
    pub all_topics: bool,
    /// The cluster's authorized operations (v8-10).
    pub cluster_operations: bool,
}

impl MetadataAsked {
    pub fn of(request: &MetadataRequest, version: i16) -> MetadataAsked {
        MetadataAsked {
            all_topics: match &request.topics {
                None => true,
                Some(list) => version == 0 && list.is_empty(),
            },
            cluster_operations: (8..=10).contains(&version)
                && request.include_cluster_authorized_operations,
        }
    }
}

/// The cluster's authorized-operations bit field (DescribeCluster, Metadata v8-10): 0
/// for a principal that may not describe the cluster, as Kafka answers.
pub fn cluster_operations(access: &mut Access<'_>) -> i32 {
    if !access.allows_cluster(Operation::Describe) {
        return 0;
    }
    access.authorized_operations(
        ResourceType::Cluster,
        crate::security::acl::model::CLUSTER_NAME,
    )
}

// ---- Topic and config administration -------------------------------------------------------

/// CreateTopics: Create on the cluster, or on each topic.
pub fn create_topics(
    access: &mut Access<'_>,
    request: &mut CreateTopicsRequest,
) -> Vec<CreatableTopicResult> {
    if !access.is_enabled() || access.allows_cluster(Operation::Create) {
        return Vec::new();
    }
    take_denied(&mut request.topics, |t| {
        access.allows(Operation::Create, TOPIC, &t.name)
    })
    .into_iter()
    .map(|t| {
        CreatableTopicResult::default()
            .with_name(t.name)
            .with_error_code(code(ResponseError::TopicAuthorizationFailed))
            .with_error_message(Some(StrBytes::from_static_str("Authorization failed.")))
            .with_num_partitions(-1)
            .with_replication_factor(-1)
    })
    .collect()
}

/// Adds the denied topics to a CreateTopics answer, and hides the configs of created
/// topics the principal may not describe the configs of.
pub fn post_create_topics(
    access: &mut Access<'_>,
    denied: Vec<CreatableTopicResult>,
    response: &mut CreateTopicsResponse,
) {
    if !access.is_enabled() {
        return;
    }
    for t in &mut response.topics {
        if t.error_code == 0
            && t.configs.is_some()
            && !access.allows(Operation::DescribeConfigs, TOPIC, &t.name)
        {
            t.topic_config_error_code = code(ResponseError::TopicAuthorizationFailed);
            t.configs = Some(Vec::new());
            t.num_partitions = -1;
            t.replication_factor = -1;
        }
    }
    response.topics.extend(denied);
}

/// DeleteTopics: Delete on the cluster, or on each topic. As Kafka: a name the principal
/// may not describe is refused whether or not the topic exists, a missing topic it may
/// describe is left to the handler (UNKNOWN_TOPIC_OR_PARTITION), and a refusal of a topic
/// named by id carries the name only for a principal that may describe it.
pub fn delete_topics(
    access: &mut Access<'_>,
    names: &TopicNames<'_>,
    request: &mut DeleteTopicsRequest,
    version: i16,
) -> Vec<DeletableTopicResult> {
    if !access.is_enabled() || access.allows_cluster(Operation::Delete) {
        return Vec::new();
    }
    // A refusal of a name (or of an id the principal may describe) names the topic.
    let mut refusal = |name: String, by_id: bool| -> Option<Option<TopicName>> {
        let describes = access.allows(Operation::Describe, TOPIC, &name);
        if access.allows(Operation::Delete, TOPIC, &name) || (describes && !names.exists(&name)) {
            return None;
        }
        Some((!by_id || describes).then(|| TopicName(StrBytes::from_string(name))))
    };
    let answer = |name: Option<TopicName>, id: Uuid| {
        DeletableTopicResult::default()
            .with_name(name)
            .with_topic_id(id)
            .with_error_code(code(ResponseError::TopicAuthorizationFailed))
    };
    if version < 6 {
        refuse(&mut request.topic_names, |name| {
            refusal(name.0.to_string(), false)
        })
        .into_iter()
        .map(|(_, shown)| answer(shown, Uuid::nil()))
        .collect()
    } else {
        refuse(&mut request.topics, |t| match &t.name {
            Some(name) => refusal(name.0.to_string(), false),
            // An unknown id is the handler's UNKNOWN_TOPIC_ID.
            None => refusal(names.name_of(t.topic_id)?, true),
        })
        .into_iter()
        .map(|(t, shown)| answer(shown, t.topic_id))
        .collect()
    }
}

/// CreatePartitions: Alter on each topic.
pub fn create_partitions(
    access: &mut Access<'_>,
    request: &mut CreatePartitionsRequest,
) -> Vec<CreatePartitionsTopicResult> {
    if !access.is_enabled() {
        return Vec::new();
    }
    take_denied(&mut request.topics, |t| {
        access.allows(Operation::Alter, TOPIC, &t.name)
    })
    .into_iter()
    .map(|t| {
        CreatePartitionsTopicResult::default()
            .with_name(t.name)
            .with_error_code(code(ResponseError::TopicAuthorizationFailed))
    })
    .collect()
}

/// Whether the principal may do `operation` (DescribeConfigs or AlterConfigs) on a config
/// resource, and the error when not: topics and groups by name; brokers, broker loggers
/// and client metrics on the cluster. Other resource types are the handler's to refuse.
fn config_refusal(
    access: &mut Access<'_>,
    operation: Operation,
    resource_type: i8,
    name: &str,
) -> Option<ResponseError> {
    let (resource, name, error) = match resource_type {
        CONFIG_TOPIC => (TOPIC, name, ResponseError::TopicAuthorizationFailed),
        CONFIG_GROUP => (
            ResourceType::Group,
            name,
            ResponseError::GroupAuthorizationFailed,
        ),
        CONFIG_BROKER | CONFIG_BROKER_LOGGER | CONFIG_CLIENT_METRICS => (
            ResourceType::Cluster,
            crate::security::acl::model::CLUSTER_NAME,
            ResponseError::ClusterAuthorizationFailed,
        ),
        _ => return None,
    };
    (!access.allows(operation, resource, name)).then_some(error)
}

/// DescribeConfigs: DescribeConfigs on each resource.
pub fn describe_configs(
    access: &mut Access<'_>,
    request: &mut DescribeConfigsRequest,
) -> Vec<DescribeConfigsResult> {
    if !access.is_enabled() {
        return Vec::new();
    }
    refuse(&mut request.resources, |r| {
        config_refusal(
            access,
            Operation::DescribeConfigs,
            r.resource_type,
            &r.resource_name,
        )
    })
    .into_iter()
    .map(|(r, error)| {
        DescribeConfigsResult::default()
            .with_error_code(code(error))
            .with_error_message(Some(StrBytes::from_static_str(error_message(error))))
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name)
    })
    .collect()
}

/// IncrementalAlterConfigs: AlterConfigs on each resource.
pub fn incremental_alter_configs(
    access: &mut Access<'_>,
    request: &mut IncrementalAlterConfigsRequest,
) -> Vec<AlterConfigsResourceResponse> {
    if !access.is_enabled() {
        return Vec::new();
    }
    refuse(&mut request.resources, |r| {
        config_refusal(
            access,
            Operation::AlterConfigs,
            r.resource_type,
            &r.resource_name,
        )
    })
    .into_iter()
    .map(|(r, error)| {
        // Kafka's message for a cluster-level refusal is null.
        let message = (error != ResponseError::ClusterAuthorizationFailed)
            .then(|| StrBytes::from_static_str(error_message(error)));
        AlterConfigsResourceResponse::default()
            .with_error_code(code(error))
            .with_error_message(message)
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name)
    })
    .collect()
}

/// Whether a cluster-wide API (DescribeLogDirs, DescribeQuorum, the ACL and SCRAM APIs)
/// may run: `operation` on the cluster.
pub fn cluster(access: &mut Access<'_>, operation: Operation) -> bool {
    access.allows_cluster(operation)
}

/// Whether the principal may describe (`Describe`) or change (`Alter`) SCRAM users: with
/// the authorizer, that operation on the cluster. Without one Kafka lets everyone; Sluice
/// is stricter, since anyone who can create a user can log in: the `super.users` when
/// set, else any authenticated principal, never ANONYMOUS.
pub fn manage_users(access: &mut Access<'_>, operation: Operation) -> bool {
    if access.is_enabled() {
        return access.allows_cluster(operation);
    }
    if access.has_super_users() {
        access.is_super_user()
    } else {
        access.principal().name != crate::security::Principal::ANONYMOUS
    }
}

/// Kafka's message for an authorization error.
pub fn error_message(error: ResponseError) -> &'static str {
    match error {
        ResponseError::TopicAuthorizationFailed => "Topic authorization failed.",
        ResponseError::GroupAuthorizationFailed => "Group authorization failed.",
        ResponseError::ClusterAuthorizationFailed => "Cluster authorization failed.",
        ResponseError::TransactionalIdAuthorizationFailed => {
            "Transactional Id authorization failed."
        }
        _ => "Authorization failed.",
    }
}
