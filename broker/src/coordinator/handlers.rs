//! Group APIs on the wire: kafka-protocol requests in, kafka-protocol responses out, for
//! every version listed in [`SUPPORTED`].
//!
//! Each handler decodes nothing and does no I/O: it turns a decoded request into the
//! coordinator's domain call and the domain answer into the response struct for the
//! request's version (fields a version lacks are left at their defaults, so encoding
//! never refuses them). Mutating handlers return an [`Output`] whose writes the I/O layer
//! appends before sending anything (see the [`super`] module docs). Parked JoinGroup and
//! SyncGroup requests come back as [`Completion`]s; [`completion_response`] turns one into
//! the response for the version the request was parked with.
//!
//! Version-specific rules kept here, as Kafka's request/response classes keep them:
//! JoinGroup v0 has no rebalance timeout (the session timeout is used); v4+ requires a
//! known member id (KIP-394); v9+ lets a static leader skip the assignment; protocol name
//! is "" instead of null before v7. SyncGroup v5+ must name the protocol type and name.
//! LeaveGroup v0-v2 carry one member and report its error at the top level. OffsetFetch
//! v8+ batches groups; before v2 a group-level error is reported per partition.
//! DescribeGroups v6 reports an unknown group as GROUP_ID_NOT_FOUND (Dead, no error
//! before). FindCoordinator v4+ batches keys.

use std::net::IpAddr;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId, DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest,
    DescribeGroupsResponse, FindCoordinatorRequest, FindCoordinatorResponse, GroupId,
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse, OffsetCommitRequest,
    OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse, OffsetFetchRequest,
    OffsetFetchResponse, SyncGroupRequest, SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::{
    group, CommitPartition, CommitRequest, CommitTopic, Completion, Failable, FetchResponse,
    FetchTopic, FetchedTopic, GroupCoordinator, JoinResponse, LeaveMember, Output, Protocol, Reply,
    SyncResponse, TopicErrors,
};

/// The group APIs and the versions handled here, for the ApiVersions answer. Minimums
/// are the oldest versions the codec crate decodes (Kafka 4.x accepts the same), maximums
/// the newest it knows.
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::FindCoordinator, 0, 6),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::DescribeGroups, 0, 6),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
];

/// FindCoordinator key types.
pub const KEY_TYPE_GROUP: i8 = 0;
pub const KEY_TYPE_TRANSACTION: i8 = 1;
pub const KEY_TYPE_SHARE: i8 = 2;

/// DescribeGroups' authorized operations for a group without an authorizer: every
/// operation a group supports (READ, DELETE, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS).
pub const GROUP_AUTHORIZED_OPERATIONS: i32 = (1 << 3) | (1 << 6) | (1 << 8) | (1 << 10) | (1 << 11);

/// Who sent a request.
#[derive(Debug, Clone, Copy)]
pub struct ClientInfo<'a> {
    /// The request header's client id ("" if null).
    pub client_id: &'a str,
    /// The client's address as Kafka shows it; see [`client_host`].
    pub client_host: &'a str,
}

/// A client address as Kafka prints it in DescribeGroups (`InetAddress.toString()`).
pub fn client_host(ip: IpAddr) -> String {
    format!("/{ip}")
}

/// The broker answering FindCoordinator for groups (this one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoordinatorNode {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
}

/// A completion as the wire response of the request that was parked.
#[derive(Debug, Clone, PartialEq)]
pub enum CompletedResponse {
    Join(JoinGroupResponse),
    Sync(SyncGroupResponse),
}

/// The response to send for `completion`; `version` is the parked request's version.
pub fn completion_response(completion: &Completion, version: i16) -> CompletedResponse {
    match completion {
        Completion::Join { response, .. } => {
            CompletedResponse::Join(join_response(response, version))
        }
        Completion::Sync { response, .. } => {
            CompletedResponse::Sync(sync_response(response, version))
        }
    }
}

fn code(error: Option<ResponseError>) -> i16 {
    error.map_or(0, |e| e.code())
}

fn s(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_owned())
}

fn opt(value: Option<&str>) -> Option<StrBytes> {
    value.map(s)
}

fn owned(value: &StrBytes) -> String {
    value.as_str().to_owned()
}

fn owned_opt(value: &Option<StrBytes>) -> Option<String> {
    value.as_ref().map(owned)
}

fn immediate<R>(reply: R) -> Output<R> {
    Output {
        reply,
        completions: Vec::new(),
        writes: Vec::new(),
    }
}

// ---- FindCoordinator -------------------------------------------------------------------

fn error_message(error: ResponseError) -> String {
    match error {
        ResponseError::CoordinatorNotAvailable => "The coordinator is not available.".to_owned(),
        ResponseError::InvalidRequest => {
            "This most likely occurs because of a request being malformed by the client library \
             or the message was sent to an incompatible broker. See the broker logs for more \
             details."
                .to_owned()
        }
        other => other.to_string(),
    }
}

/// FindCoordinator: `coordinator(key)` names the coordinator of a group (or
/// transactional id: their coordinator is the group's until transactions have their own
/// topic): this broker on a single node, the leader of the key's `__consumer_offsets`
/// partition in a cluster. None while it is not known or not ready, which clients retry
/// on (COORDINATOR_NOT_AVAILABLE). Share-group keys are refused (INVALID_REQUEST): share
/// groups are not served.
pub fn find_coordinator(
    req: &FindCoordinatorRequest,
    version: i16,
    coordinator: impl Fn(&str) -> Option<CoordinatorNode>,
) -> FindCoordinatorResponse {
    let key_type = if version >= 1 {
        req.key_type
    } else {
        KEY_TYPE_GROUP
    };
    let resolve = |key: &str| -> Result<CoordinatorNode, ResponseError> {
        match key_type {
            KEY_TYPE_GROUP | KEY_TYPE_TRANSACTION => {
                coordinator(key).ok_or(ResponseError::CoordinatorNotAvailable)
            }
            _ => Err(ResponseError::InvalidRequest),
        }
    };
    let response = FindCoordinatorResponse::default();
    if version >= 4 {
        let coordinators = req
            .coordinator_keys
            .iter()
            .map(|key| {
                let c = Coordinator::default().with_key(key.clone());
                match resolve(key.as_str()) {
                    Ok(n) => c
                        .with_node_id(BrokerId(n.node_id))
                        .with_host(s(&n.host))
                        .with_port(n.port),
                    Err(e) => c
                        .with_error_code(e.code())
                        .with_error_message(Some(s(&error_message(e))))
                        .with_node_id(BrokerId(-1))
                        .with_host(StrBytes::default())
                        .with_port(-1),
                }
            })
            .collect();
        return response.with_coordinators(coordinators);
    }
    let (error, node_id, host, port) = match resolve(req.key.as_str()) {
        Ok(n) => (None, n.node_id, s(&n.host), n.port),
        Err(e) => (Some(e), -1, StrBytes::default(), -1),
    };
    let message = match error {
        // Kafka puts Errors.NONE.message(), "NONE", in successful v1-v3 answers.
        None => "NONE".to_owned(),
        Some(e) => error_message(e),
    };
    response
        .with_error_code(code(error))
        .with_error_message(if version >= 1 {
            Some(s(&message))
        } else {
            None
        })
        .with_node_id(BrokerId(node_id))
        .with_host(host)
        .with_port(port)
}

// ---- JoinGroup -------------------------------------------------------------------------

/// JoinGroup. A [`Reply::Pending`] answer arrives later as a completion.
pub fn join_group(
    coordinator: &mut GroupCoordinator,
    req: &JoinGroupRequest,
    version: i16,
    client: ClientInfo<'_>,
    now_ms: i64,
) -> Output<Reply<JoinGroupResponse>> {
    let domain = group::JoinRequest {
        group_id: owned(&req.group_id.0),
        member_id: owned(&req.member_id),
        group_instance_id: if version >= 5 {
            owned_opt(&req.group_instance_id)
        } else {
            None
        },
        client_id: client.client_id.to_owned(),
        client_host: client.client_host.to_owned(),
        session_timeout_ms: req.session_timeout_ms,
        rebalance_timeout_ms: if version >= 1 {
            req.rebalance_timeout_ms
        } else {
            req.session_timeout_ms
        },
        protocol_type: owned(&req.protocol_type),
        protocols: req
            .protocols
            .iter()
            .map(|p| Protocol::new(owned(&p.name), p.metadata.clone()))
            .collect(),
        require_known_member_id: version >= 4,
        supports_skip_assignment: version >= 9,
        reason: if version >= 8 {
            owned_opt(&req.reason)
        } else {
            None
        },
    };
    coordinator
        .join_group(&domain, now_ms)
        .map(|reply| reply.map(|r| join_response(&r, version)))
}

/// A JoinGroup answer for `version`.
pub fn join_response(resp: &JoinResponse, version: i16) -> JoinGroupResponse {
    let protocol_name = match resp.protocol_name.as_deref() {
        Some("") | None if version >= 7 => None,
        Some(name) => Some(s(name)),
        None => Some(StrBytes::default()),
    };
    let members = resp
        .members
        .iter()
        .map(|m| {
            JoinGroupResponseMember::default()
                .with_member_id(s(&m.member_id))
                .with_group_instance_id(if version >= 5 {
                    opt(m.group_instance_id.as_deref())
                } else {
                    None
                })
                .with_metadata(m.metadata.clone())
        })
        .collect();
    JoinGroupResponse::default()
        .with_error_code(code(resp.error))
        .with_generation_id(resp.generation_id)
        .with_protocol_type(if version >= 7 {
            opt(resp.protocol_type.as_deref())
        } else {
            None
        })
        .with_protocol_name(protocol_name)
        .with_leader(s(&resp.leader))
        .with_skip_assignment(version >= 9 && resp.skip_assignment)
        .with_member_id(s(&resp.member_id))
        .with_members(members)
}

// ---- SyncGroup -------------------------------------------------------------------------

/// SyncGroup. A [`Reply::Pending`] answer arrives later as a completion.
pub fn sync_group(
    coordinator: &mut GroupCoordinator,
    req: &SyncGroupRequest,
    version: i16,
    now_ms: i64,
) -> Output<Reply<SyncGroupResponse>> {
    if version >= 5 && (req.protocol_type.is_none() || req.protocol_name.is_none()) {
        let error = SyncResponse::error(ResponseError::InconsistentGroupProtocol);
        return immediate(Reply::Now(sync_response(&error, version)));
    }
    let domain = group::SyncRequest {
        group_id: owned(&req.group_id.0),
        generation_id: req.generation_id,
        member_id: owned(&req.member_id),
        group_instance_id: if version >= 3 {
            owned_opt(&req.group_instance_id)
        } else {
            None
        },
        protocol_type: if version >= 5 {
            owned_opt(&req.protocol_type)
        } else {
            None
        },
        protocol_name: if version >= 5 {
            owned_opt(&req.protocol_name)
        } else {
            None
        },
        assignments: req
            .assignments
            .iter()
            .map(|a| (owned(&a.member_id), a.assignment.clone()))
            .collect(),
    };
    coordinator
        .sync_group(&domain, now_ms)
        .map(|reply| reply.map(|r| sync_response(&r, version)))
}

/// A SyncGroup answer for `version`.
pub fn sync_response(resp: &SyncResponse, version: i16) -> SyncGroupResponse {
    let v5 = version >= 5;
    SyncGroupResponse::default()
        .with_error_code(code(resp.error))
        .with_protocol_type(if v5 {
            opt(resp.protocol_type.as_deref())
        } else {
            None
        })
        .with_protocol_name(if v5 {
            opt(resp.protocol_name.as_deref())
        } else {
            None
        })
        .with_assignment(resp.assignment.clone())
}

// ---- Heartbeat, LeaveGroup -------------------------------------------------------------

/// Heartbeat.
pub fn heartbeat(
    coordinator: &mut GroupCoordinator,
    req: &HeartbeatRequest,
    version: i16,
    now_ms: i64,
) -> Output<HeartbeatResponse> {
    let domain = group::MemberHeartbeat {
        group_id: owned(&req.group_id.0),
        generation_id: req.generation_id,
        member_id: owned(&req.member_id),
        group_instance_id: if version >= 3 {
            owned_opt(&req.group_instance_id)
        } else {
            None
        },
    };
    coordinator
        .heartbeat(&domain, now_ms)
        .map(|r| HeartbeatResponse::default().with_error_code(code(r.error)))
}

/// LeaveGroup.
pub fn leave_group(
    coordinator: &mut GroupCoordinator,
    req: &LeaveGroupRequest,
    version: i16,
    now_ms: i64,
) -> Output<LeaveGroupResponse> {
    let members: Vec<LeaveMember> = if version >= 3 {
        req.members
            .iter()
            .map(|m| LeaveMember {
                member_id: owned(&m.member_id),
                group_instance_id: owned_opt(&m.group_instance_id),
                reason: if version >= 5 {
                    owned_opt(&m.reason)
                } else {
                    None
                },
            })
            .collect()
    } else {
        vec![LeaveMember {
            member_id: owned(&req.member_id),
            group_instance_id: None,
            reason: None,
        }]
    };
    coordinator
        .leave_group(req.group_id.0.as_str(), &members, now_ms)
        .map(|r| {
            if version >= 3 {
                LeaveGroupResponse::default()
                    .with_error_code(code(r.error))
                    .with_members(
                        r.members
                            .iter()
                            .map(|m| {
                                MemberResponse::default()
                                    .with_member_id(s(&m.member_id))
                                    .with_group_instance_id(opt(m.group_instance_id.as_deref()))
                                    .with_error_code(code(m.error))
                            })
                            .collect(),
                    )
            } else {
                // Old clients read one error: the request's, else the member's.
                let error = r.error.or_else(|| r.members.first().and_then(|m| m.error));
                LeaveGroupResponse::default().with_error_code(code(error))
            }
        })
}

// ---- OffsetCommit, OffsetFetch, OffsetDelete -------------------------------------------

/// Adds `partitions` with their errors under `topic`, merging with an existing entry.
fn add_commit_partitions(
    out: &mut Vec<OffsetCommitResponseTopic>,
    topic: &str,
    partitions: impl IntoIterator<Item = (i32, Option<ResponseError>)>,
) {
    let index = match out.iter().position(|t| t.name.0.as_str() == topic) {
        Some(i) => i,
        None => {
            out.push(OffsetCommitResponseTopic::default().with_name(TopicName(s(topic))));
            out.len() - 1
        }
    };
    out[index]
        .partitions
        .extend(partitions.into_iter().map(|(p, e)| {
            OffsetCommitResponsePartition::default()
                .with_partition_index(p)
                .with_error_code(code(e))
        }));
}

/// OffsetCommit. `partition_exists` tells whether a topic partition exists; commits to
/// others are refused with UNKNOWN_TOPIC_OR_PARTITION, as Kafka does before calling its
/// coordinator.
pub fn offset_commit(
    coordinator: &mut GroupCoordinator,
    req: &OffsetCommitRequest,
    version: i16,
    partition_exists: impl Fn(&str, i32) -> bool,
    now_ms: i64,
) -> Output<OffsetCommitResponse> {
    let mut topics: Vec<OffsetCommitResponseTopic> = Vec::new();
    let mut valid: Vec<CommitTopic> = Vec::new();
    for topic in &req.topics {
        let name = topic.name.0.as_str();
        let mut partitions = Vec::new();
        let mut unknown = Vec::new();
        for p in &topic.partitions {
            if partition_exists(name, p.partition_index) {
                partitions.push(CommitPartition {
                    partition: p.partition_index,
                    offset: p.committed_offset,
                    leader_epoch: if version >= 6 {
                        p.committed_leader_epoch
                    } else {
                        -1
                    },
                    metadata: owned_opt(&p.committed_metadata),
                });
            } else {
                unknown.push((
                    p.partition_index,
                    Some(ResponseError::UnknownTopicOrPartition),
                ));
            }
        }
        if !unknown.is_empty() {
            add_commit_partitions(&mut topics, name, unknown);
        }
        if !partitions.is_empty() {
            valid.push(CommitTopic {
                name: name.to_owned(),
                partitions,
            });
        }
    }
    let response = |topics| OffsetCommitResponse::default().with_topics(topics);
    if valid.is_empty() {
        return immediate(response(topics));
    }
    let domain = CommitRequest {
        group_id: owned(&req.group_id.0),
        generation_id: req.generation_id_or_member_epoch,
        member_id: owned(&req.member_id),
        group_instance_id: if version >= 7 {
            owned_opt(&req.group_instance_id)
        } else {
            None
        },
        retention_time_ms: if (2..=4).contains(&version) {
            req.retention_time_ms
        } else {
            -1
        },
        topics: valid,
        api_version: version,
    };
    coordinator.commit_offsets(&domain, now_ms).map(|r| {
        for t in r.topics {
            add_commit_partitions(&mut topics, &t.name, t.partitions);
        }
        response(topics)
    })
}

/// One group of an OffsetFetch: its id and the partitions asked for (None: all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchAsk {
    pub group_id: String,
    pub topics: Option<Vec<FetchTopic>>,
}

/// The groups an OffsetFetch asks about (v8+: several; before: one).
pub fn offset_fetch_asks(req: &OffsetFetchRequest, version: i16) -> Vec<FetchAsk> {
    // The request's topic types differ by version; both are (name, partitions).
    fn topics<'a>(asked: impl Iterator<Item = (&'a StrBytes, &'a [i32])>) -> Vec<FetchTopic> {
        asked
            .map(|(name, partitions)| FetchTopic {
                name: owned(name),
                partitions: partitions.to_vec(),
            })
            .collect()
    }
    if version >= 8 {
        return req
            .groups
            .iter()
            .map(|g| FetchAsk {
                group_id: owned(&g.group_id.0),
                topics: g.topics.as_ref().map(|asked| {
                    topics(asked.iter().map(|t| (&t.name.0, &t.partition_indexes[..])))
                }),
            })
            .collect();
    }
    vec![FetchAsk {
        group_id: owned(&req.group_id.0),
        topics: req
            .topics
            .as_ref()
            .map(|asked| topics(asked.iter().map(|t| (&t.name.0, &t.partition_indexes[..])))),
    }]
}

/// OffsetFetch (v8+: several groups in one request), answered from the coordinator's
/// state at once: [`offset_fetch_asks`], `fetch_offsets` per group, then
/// [`offset_fetch_response`]. The broker splits these steps to hold the answer until the
/// state it shows is replicated (see `groups::Groups::fetch_offsets`).
pub fn offset_fetch(
    coordinator: &GroupCoordinator,
    req: &OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    let asks = offset_fetch_asks(req, version);
    let fetched = asks
        .iter()
        .map(|a| coordinator.fetch_offsets(&a.group_id, a.topics.as_deref()))
        .collect();
    offset_fetch_response(&asks, fetched, version)
}

/// The OffsetFetch answer from one [`FetchResponse`] per ask (in the order of `asks`).
pub fn offset_fetch_response(
    asks: &[FetchAsk],
    fetched: Vec<FetchResponse>,
    version: i16,
) -> OffsetFetchResponse {
    if version >= 8 {
        let groups = asks
            .iter()
            .zip(fetched)
            .map(|(ask, fetched)| {
                OffsetFetchResponseGroup::default()
                    .with_group_id(GroupId(s(&ask.group_id)))
                    .with_error_code(code(fetched.error))
                    .with_topics(
                        fetched
                            .topics
                            .iter()
                            .map(|t| {
                                OffsetFetchResponseTopics::default()
                                    .with_name(TopicName(s(&t.name)))
                                    .with_partitions(
                                        t.partitions
                                            .iter()
                                            .map(|p| {
                                                OffsetFetchResponsePartitions::default()
                                                    .with_partition_index(p.partition)
                                                    .with_committed_offset(p.offset)
                                                    .with_committed_leader_epoch(p.leader_epoch)
                                                    .with_metadata(Some(s(&p.metadata)))
                                                    .with_error_code(code(p.error))
                                            })
                                            .collect(),
                                    )
                            })
                            .collect(),
                    )
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }

    let (Some(ask), Some(fetched)) = (asks.first(), fetched.into_iter().next()) else {
        return OffsetFetchResponse::default();
    };
    let to_wire =
        |topics: &[FetchedTopic], error: Option<ResponseError>| -> Vec<OffsetFetchResponseTopic> {
            topics
                .iter()
                .map(|t| {
                    OffsetFetchResponseTopic::default()
                        .with_name(TopicName(s(&t.name)))
                        .with_partitions(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    OffsetFetchResponsePartition::default()
                                        .with_partition_index(p.partition)
                                        .with_committed_offset(if error.is_some() {
                                            -1
                                        } else {
                                            p.offset
                                        })
                                        .with_committed_leader_epoch(
                                            if version >= 5 && error.is_none() {
                                                p.leader_epoch
                                            } else {
                                                -1
                                            },
                                        )
                                        .with_metadata(Some(s(if error.is_some() {
                                            ""
                                        } else {
                                            &p.metadata
                                        })))
                                        .with_error_code(code(error.or(p.error)))
                                })
                                .collect(),
                        )
                })
                .collect()
        };
    match fetched.error {
        // Before v2 there is no top-level error: each partition asked for carries it.
        Some(error) if version < 2 => {
            let asked: Vec<FetchedTopic> = ask
                .topics
                .as_deref()
                .unwrap_or_default()
                .iter()
                .map(|t| FetchedTopic {
                    name: t.name.clone(),
                    partitions: t
                        .partitions
                        .iter()
                        .map(|&p| super::offsets::no_offset(p))
                        .collect(),
                })
                .collect();
            OffsetFetchResponse::default().with_topics(to_wire(&asked, Some(error)))
        }
        Some(error) => OffsetFetchResponse::default().with_error_code(error.code()),
        None => OffsetFetchResponse::default().with_topics(to_wire(&fetched.topics, None)),
    }
}

/// OffsetDelete. `partition_exists` as for [`offset_commit`].
pub fn offset_delete(
    coordinator: &mut GroupCoordinator,
    req: &OffsetDeleteRequest,
    partition_exists: impl Fn(&str, i32) -> bool,
    now_ms: i64,
) -> Output<OffsetDeleteResponse> {
    let mut unknown: Vec<TopicErrors> = Vec::new();
    let mut valid: Vec<FetchTopic> = Vec::new();
    for topic in &req.topics {
        let name = topic.name.0.as_str();
        let (ok, missing): (Vec<i32>, Vec<i32>) = topic
            .partitions
            .iter()
            .map(|p| p.partition_index)
            .partition(|&p| partition_exists(name, p));
        if !missing.is_empty() {
            unknown.push(TopicErrors {
                name: name.to_owned(),
                partitions: missing
                    .into_iter()
                    .map(|p| (p, Some(ResponseError::UnknownTopicOrPartition)))
                    .collect(),
            });
        }
        if !ok.is_empty() {
            valid.push(FetchTopic {
                name: name.to_owned(),
                partitions: ok,
            });
        }
    }
    coordinator
        .delete_offsets(req.group_id.0.as_str(), &valid, now_ms)
        .map(|r| {
            if let Some(error) = r.error {
                return OffsetDeleteResponse::default().with_error_code(error.code());
            }
            let mut topics: Vec<OffsetDeleteResponseTopic> = Vec::new();
            for t in unknown.iter().chain(r.topics.iter()) {
                let partitions = t.partitions.iter().map(|(p, e)| {
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(*p)
                        .with_error_code(code(*e))
                });
                match topics.iter_mut().find(|x| x.name.0.as_str() == t.name) {
                    Some(existing) => existing.partitions.extend(partitions),
                    None => topics.push(
                        OffsetDeleteResponseTopic::default()
                            .with_name(TopicName(s(&t.name)))
                            .with_partitions(partitions.collect()),
                    ),
                }
            }
            OffsetDeleteResponse::default().with_topics(topics)
        })
}

// ---- ListGroups, DescribeGroups, DeleteGroups -------------------------------------------

/// ListGroups.
pub fn list_groups(
    coordinator: &GroupCoordinator,
    req: &ListGroupsRequest,
    version: i16,
) -> ListGroupsResponse {
    let states: Vec<String> = if version >= 4 {
        req.states_filter.iter().map(owned).collect()
    } else {
        Vec::new()
    };
    let types: Vec<String> = if version >= 5 {
        req.types_filter.iter().map(owned).collect()
    } else {
        Vec::new()
    };
    let listed = coordinator.list_groups(&states, &types);
    ListGroupsResponse::default()
        .with_error_code(code(listed.error))
        .with_groups(
            listed
                .groups
                .iter()
                .map(|g| {
                    let mut out = ListedGroup::default()
                        .with_group_id(GroupId(s(&g.group_id)))
                        .with_protocol_type(s(&g.protocol_type));
                    if version >= 4 {
                        out = out.with_group_state(s(g.state.as_str()));
                    }
                    if version >= 5 {
                        out = out.with_group_type(StrBytes::from_static_str("classic"));
                    }
                    out
                })
                .collect(),
        )
}

/// DescribeGroups.
pub fn describe_groups(
    coordinator: &GroupCoordinator,
    req: &DescribeGroupsRequest,
    version: i16,
) -> DescribeGroupsResponse {
    let ids: Vec<String> = req.groups.iter().map(|g| owned(&g.0)).collect();
    let groups = coordinator
        .describe_groups(&ids)
        .into_iter()
        .map(|g| {
            let mut error = g.error;
            let mut message = None;
            if error == Some(ResponseError::GroupIdNotFound) {
                if version >= 6 {
                    message = Some(s(&format!("Group {} not found.", g.group_id)));
                } else {
                    error = None;
                }
            }
            let authorized = if version >= 3 && req.include_authorized_operations && error.is_none()
            {
                GROUP_AUTHORIZED_OPERATIONS
            } else {
                i32::MIN
            };
            DescribedGroup::default()
                .with_error_code(code(error))
                .with_error_message(if version >= 6 { message } else { None })
                .with_group_id(GroupId(s(&g.group_id)))
                .with_group_state(s(g.state.as_str()))
                .with_protocol_type(s(&g.protocol_type))
                .with_protocol_data(s(&g.protocol_data))
                .with_authorized_operations(authorized)
                .with_members(
                    g.members
                        .iter()
                        .map(|m| {
                            DescribedGroupMember::default()
                                .with_member_id(s(&m.member_id))
                                .with_group_instance_id(if version >= 4 {
                                    opt(m.group_instance_id.as_deref())
                                } else {
                                    None
                                })
                                .with_client_id(s(&m.client_id))
                                .with_client_host(s(&m.client_host))
                                .with_member_metadata(m.metadata.clone())
                                .with_member_assignment(m.assignment.clone())
                        })
                        .collect(),
                )
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}

/// DeleteGroups.
pub fn delete_groups(
    coordinator: &mut GroupCoordinator,
    req: &DeleteGroupsRequest,
    now_ms: i64,
) -> Output<DeleteGroupsResponse> {
    let ids: Vec<String> = req.groups_names.iter().map(|g| owned(&g.0)).collect();
    coordinator.delete_groups(&ids, now_ms).map(|r| {
        DeleteGroupsResponse::default().with_results(
            r.results
                .iter()
                .map(|d| {
                    DeletableGroupResult::default()
                        .with_group_id(GroupId(s(&d.group_id)))
                        .with_error_code(code(d.error))
                })
                .collect(),
        )
    })
}

// ---- failing wire answers after a failed append -----------------------------------------

impl Failable for JoinGroupResponse {
    fn fail(&mut self, error: ResponseError) {
        self.error_code = error.code();
        self.generation_id = -1;
        self.members.clear();
        self.skip_assignment = false;
        self.leader = StrBytes::default();
    }
}

impl Failable for SyncGroupResponse {
    fn fail(&mut self, error: ResponseError) {
        self.error_code = error.code();
        self.assignment = Bytes::new();
    }
}

impl Failable for HeartbeatResponse {
    fn fail(&mut self, error: ResponseError) {
        self.error_code = error.code();
    }
}

impl Failable for LeaveGroupResponse {
    fn fail(&mut self, error: ResponseError) {
        self.error_code = error.code();
        self.members.clear();
    }
}

impl Failable for OffsetCommitResponse {
    fn fail(&mut self, error: ResponseError) {
        for t in &mut self.topics {
            for p in &mut t.partitions {
                p.error_code = error.code();
            }
        }
    }
}

impl Failable for OffsetDeleteResponse {
    fn fail(&mut self, error: ResponseError) {
        self.error_code = error.code();
        self.topics.clear();
    }
}

impl Failable for DeleteGroupsResponse {
    fn fail(&mut self, error: ResponseError) {
        for r in &mut self.results {
            r.error_code = error.code();
        }
    }
}
