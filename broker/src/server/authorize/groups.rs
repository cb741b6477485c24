//! The group APIs' checks (see the parent module for the rules): a group-level denial
//! answers the whole request; OffsetCommit and OffsetDelete take out the topics the
//! principal may not read; OffsetFetch, DescribeGroups and ListGroups filter answers.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, DeleteGroupsRequest, DescribeGroupsResponse, FindCoordinatorRequest,
    FindCoordinatorResponse, ListGroupsResponse, OffsetCommitRequest, OffsetDeleteRequest,
};
use kafka_protocol::protocol::StrBytes;

use crate::coordinator::handlers::{FetchAsk, KEY_TYPE_TRANSACTION};
use crate::coordinator::offsets::FetchResponse;
use crate::security::acl::{Access, Operation, ResourceType};
use crate::state::BrokerState;

const GROUP: ResourceType = ResourceType::Group;
const TOPIC: ResourceType = ResourceType::Topic;

/// The operation a group API needs on its group, when it names one group.
pub fn group_denial(access: &mut Access<'_>, operation: Operation, group: &str) -> bool {
    !access.allows(operation, GROUP, group)
}

/// What [`find_coordinator`] refused: the whole answer (before v4, one key per request)
/// or the answers of the keys taken out (v4+).
pub struct CoordinatorDenied {
    pub whole: Option<FindCoordinatorResponse>,
    pub keys: Vec<Coordinator>,
}

/// FindCoordinator: Describe on the group, or on the transactional id.
pub fn find_coordinator(
    access: &mut Access<'_>,
    request: &mut FindCoordinatorRequest,
    version: i16,
) -> CoordinatorDenied {
    let mut denied = CoordinatorDenied {
        whole: None,
        keys: Vec::new(),
    };
    if !access.is_enabled() {
        return denied;
    }
    let (resource, error) = if request.key_type == KEY_TYPE_TRANSACTION {
        (
            ResourceType::TransactionalId,
            ResponseError::TransactionalIdAuthorizationFailed,
        )
    } else {
        (GROUP, ResponseError::GroupAuthorizationFailed)
    };
    let message = || Some(StrBytes::from_static_str(super::error_message(error)));
    if version < 4 {
        if !access.allows(Operation::Describe, resource, &request.key) {
            denied.whole = Some(
                FindCoordinatorResponse::default()
                    .with_error_code(error.code())
                    .with_error_message(message())
                    .with_node_id(BrokerId(-1))
                    .with_host(StrBytes::default())
                    .with_port(-1),
            );
        }
        return denied;
    }
    denied.keys = super::take_denied(&mut request.coordinator_keys, |key| {
        access.allows(Operation::Describe, resource, key)
    })
    .into_iter()
    .map(|key| {
        Coordinator::default()
            .with_key(key)
            .with_node_id(BrokerId(-1))
            .with_host(StrBytes::default())
            .with_port(-1)
            .with_error_code(error.code())
            .with_error_message(message())
    })
    .collect();
    denied
}

/// DeleteGroups: Delete on each group.
pub fn delete_groups(
    access: &mut Access<'_>,
    request: &mut DeleteGroupsRequest,
) -> Vec<DeletableGroupResult> {
    if !access.is_enabled() {
        return Vec::new();
    }
    super::take_denied(&mut request.groups_names, |g| {
        access.allows(Operation::Delete, GROUP, g)
    })
    .into_iter()
    .map(|g| {
        DeletableGroupResult::default()
            .with_group_id(g)
            .with_error_code(ResponseError::GroupAuthorizationFailed.code())
    })
    .collect()
}

/// OffsetCommit: Read on each topic (the group was checked before). Takes out the topics
/// denied; returns their answers.
pub fn offset_commit_topics(
    access: &mut Access<'_>,
    request: &mut OffsetCommitRequest,
) -> Vec<OffsetCommitResponseTopic> {
    if !access.is_enabled() {
        return Vec::new();
    }
    super::take_denied(&mut request.topics, |t| {
        access.allows(Operation::Read, TOPIC, &t.name)
    })
    .into_iter()
    .map(|t| {
        OffsetCommitResponseTopic::default()
            .with_name(t.name)
            .with_topic_id(t.topic_id)
            .with_partitions(
                t.partitions
                    .iter()
                    .map(|p| {
                        OffsetCommitResponsePartition::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(ResponseError::TopicAuthorizationFailed.code())
                    })
                    .collect(),
            )
    })
    .collect()
}

/// OffsetDelete: Read on each topic (Delete on the group was checked before).
pub fn offset_delete_topics(
    access: &mut Access<'_>,
    request: &mut OffsetDeleteRequest,
) -> Vec<OffsetDeleteResponseTopic> {
    if !access.is_enabled() {
        return Vec::new();
    }
    super::take_denied(&mut request.topics, |t| {
        access.allows(Operation::Read, TOPIC, &t.name)
    })
    .into_iter()
    .map(|t| {
        OffsetDeleteResponseTopic::default()
            .with_name(t.name)
            .with_partitions(
                t.partitions
                    .iter()
                    .map(|p| {
                        OffsetDeleteResponsePartition::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(ResponseError::TopicAuthorizationFailed.code())
                    })
                    .collect(),
            )
    })
    .collect()
}

/// DescribeGroups: a group the principal may not describe is answered
/// GROUP_AUTHORIZATION_FAILED and nothing else; the others get the authorized-operations
/// bit field when asked for.
pub fn post_describe_groups(access: &mut Access<'_>, response: &mut DescribeGroupsResponse) {
    if !access.is_enabled() {
        return;
    }
    for group in &mut response.groups {
        if !access.allows(Operation::Describe, GROUP, &group.group_id) {
            *group = DescribedGroup::default()
                .with_group_id(group.group_id.clone())
                .with_error_code(ResponseError::GroupAuthorizationFailed.code())
                .with_authorized_operations(i32::MIN);
        } else if group.authorized_operations != i32::MIN {
            group.authorized_operations = access.authorized_operations(GROUP, &group.group_id);
        }
    }
}

/// ListGroups: every group with Describe on the cluster, else those the principal may
/// describe.
pub fn post_list_groups(access: &mut Access<'_>, response: &mut ListGroupsResponse) {
    if !access.is_enabled() || access.allows_cluster(Operation::Describe) {
        return;
    }
    response
        .groups
        .retain(|g| access.allows(Operation::Describe, GROUP, &g.group_id));
}

/// OffsetFetch's checks, applied to the offsets read before they become an answer (the
/// answer may be built later, once the offsets are replicated, so the filter owns what
/// it needs): Describe on each group, Describe on each topic.
pub struct OffsetFetchFilter {
    state: Arc<BrokerState>,
    principal: String,
    host: IpAddr,
    denied_groups: HashSet<String>,
}

impl OffsetFetchFilter {
    /// The filter for `asks`; `None` without an authorizer.
    pub fn new(
        access: &mut Access<'_>,
        state: &Arc<BrokerState>,
        asks: &[FetchAsk],
    ) -> Option<OffsetFetchFilter> {
        if !access.is_enabled() {
            return None;
        }
        let denied_groups = asks
            .iter()
            .filter(|a| !access.allows(Operation::Describe, GROUP, &a.group_id))
            .map(|a| a.group_id.clone())
            .collect();
        Some(OffsetFetchFilter {
            state: state.clone(),
            principal: access.principal().to_string(),
            host: access.host(),
            denied_groups,
        })
    }

    /// Applies the checks to the offsets read for `asks` (one [`FetchResponse`] each).
    pub fn apply(&self, asks: &[FetchAsk], fetched: &mut [FetchResponse]) {
        let authorizer = &self.state.security.authorizer;
        let describes = |topic: &str| {
            authorizer.decide(
                &self.principal,
                self.host,
                Operation::Describe,
                TOPIC,
                topic,
            )
        };
        for (ask, offsets) in asks.iter().zip(fetched.iter_mut()) {
            if self.denied_groups.contains(&ask.group_id) {
                offsets.error = Some(ResponseError::GroupAuthorizationFailed);
                offsets.topics.clear();
                continue;
            }
            if ask.topics.is_none() {
                // All of the group's topics: the ones the principal may not describe
                // are left out.
                offsets.topics.retain(|t| describes(&t.name));
                continue;
            }
            for topic in &mut offsets.topics {
                if !describes(&topic.name) {
                    for p in &mut topic.partitions {
                        *p = crate::coordinator::offsets::no_offset(p.partition);
                        p.error = Some(ResponseError::TopicAuthorizationFailed);
                    }
                }
            }
        }
    }
}
