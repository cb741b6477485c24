//! Dispatch of the group APIs (FindCoordinator, JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup, OffsetCommit, OffsetFetch, OffsetDelete, ListGroups, DescribeGroups,
//! DeleteGroups) to `coordinator::handlers`, through the broker's [`Groups`] I/O layer.
//!
//! The coordinator call itself happens here, while the connection's reader dispatches the
//! request, so a connection's group requests take effect in arrival order. What may come
//! later is only the answer: after the call's records are durable (flush policy
//! `always`), or, for a parked JoinGroup/SyncGroup, when another call (or a timer)
//! completes it. Such an answer is a [`Reply::Later`]; the connection sends it in order,
//! so a parked JoinGroup holds back the answers of later requests on the same connection,
//! as Kafka's muted channel does (Kafka also stops reading them; Sluice reads and
//! executes them but still answers in order).
//!
//! At shutdown a parked request is answered NOT_COORDINATOR, the answer Kafka gives when
//! a coordinator unloads its groups, so clients look for the coordinator again instead
//! of holding the connection open until the shutdown grace period ends.
//!
//! [`Groups`]: crate::groups::Groups

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind};
use kafka_protocol::protocol::Encodable;
use tokio::sync::{oneshot, watch};
use tracing::Instrument;

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{
    HeartbeatResponse, LeaveGroupResponse, OffsetCommitResponse, OffsetDeleteResponse,
};

use super::authorize;
use super::dispatch::{Context, DispatchError, Reply};
use super::wire::{self, Frame};
use crate::coordinator::handlers::{self, ClientInfo, CompletedResponse};
use crate::coordinator::{self, Completion, JoinResponse, SyncResponse};
use crate::groups::Settled;
use crate::metrics::errors::ResponseErrors;
use crate::security::acl::{Access, Operation};
use crate::state::BrokerState;

/// The answer of a request whose group the principal may not use.
const GROUP_DENIED: ResponseError = ResponseError::GroupAuthorizationFailed;

/// Whether `api` is a group API (served here).
pub fn is_group_api(api: ApiKey) -> bool {
    handlers::SUPPORTED.iter().any(|(key, _, _)| *key == api)
}

/// Whether a partition exists, for OffsetCommit and OffsetDelete: in a cluster the
/// metadata says (the partition may live on another broker), on a single node the registry.
fn partition_exists(state: &BrokerState) -> impl Fn(&str, i32) -> bool + '_ {
    let image = state.cluster.as_ref().map(|node| node.image());
    move |topic, partition| match &image {
        Some(image) => image.partition_by_name(topic, partition).is_some(),
        None => state
            .topics
            .get(topic)
            .is_some_and(|t| t.partition(partition).is_some()),
    }
}

/// Handles a decoded group request (one for which [`is_group_api`] holds).
pub async fn dispatch(
    ctx: &Context,
    header: &RequestHeader,
    request: RequestKind,
    api: ApiKey,
    version: i16,
    access: &mut Access<'_>,
) -> Result<Reply, DispatchError> {
    let state = &ctx.state;
    let groups = &state.groups;
    let correlation_id = header.correlation_id;
    let respond = |body: &dyn ErasedEncodable| -> Result<Reply, DispatchError> {
        Ok(Reply::Now(body.encode_frame(
            api,
            version,
            correlation_id,
        )?))
    };
    let client_id = header.client_id.as_ref().map_or("", |c| c.as_str());
    let client_host = handlers::client_host(ctx.peer.ip());
    let client = ClientInfo {
        client_id,
        client_host: &client_host,
    };
    let reply = Answer {
        api,
        version,
        correlation_id,
        shutdown: ctx.shutdown.clone(),
    };
    match request {
        RequestKind::FindCoordinator(mut req) => {
            let denied = authorize::find_coordinator(access, &mut req, version);
            if let Some(refused) = denied.whole {
                return respond(&refused);
            }
            let mut resp = handlers::find_coordinator(&req, version, |key| {
                groups.coordinator_node(state, key)
            });
            resp.coordinators.extend(denied.keys);
            respond(&resp)
        }
        RequestKind::JoinGroup(req)
            if authorize::group_denial(access, Operation::Read, &req.group_id) =>
        {
            respond(&handlers::join_response(
                // Kafka answers an unknown member id, whatever the request said.
                &JoinResponse::error("", ResponseError::GroupAuthorizationFailed),
                version,
            ))
        }
        RequestKind::SyncGroup(req)
            if authorize::group_denial(access, Operation::Read, &req.group_id) =>
        {
            respond(&handlers::sync_response(
                &SyncResponse::error(ResponseError::GroupAuthorizationFailed),
                version,
            ))
        }
        RequestKind::Heartbeat(req)
            if authorize::group_denial(access, Operation::Read, &req.group_id) =>
        {
            respond(&HeartbeatResponse::default().with_error_code(GROUP_DENIED.code()))
        }
        RequestKind::LeaveGroup(req)
            if authorize::group_denial(access, Operation::Read, &req.group_id) =>
        {
            respond(&LeaveGroupResponse::default().with_error_code(GROUP_DENIED.code()))
        }
        RequestKind::OffsetCommit(req)
            if authorize::group_denial(access, Operation::Read, &req.group_id) =>
        {
            respond(
                &OffsetCommitResponse::default().with_topics(
                    req.topics
                        .iter()
                        .map(|t| {
                            OffsetCommitResponseTopic::default()
                                .with_name(t.name.clone())
                                .with_topic_id(t.topic_id)
                                .with_partitions(
                                    t.partitions
                                        .iter()
                                        .map(|p| {
                                            OffsetCommitResponsePartition::default()
                                                .with_partition_index(p.partition_index)
                                                .with_error_code(GROUP_DENIED.code())
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                ),
            )
        }
        RequestKind::OffsetDelete(req)
            if authorize::group_denial(access, Operation::Delete, &req.group_id) =>
        {
            respond(&OffsetDeleteResponse::default().with_error_code(GROUP_DENIED.code()))
        }
        RequestKind::JoinGroup(req) => {
            let (settled, parked) = groups
                .call_parking(|c, now| handlers::join_group(c, &req, version, client, now))
                .await;
            let member_id = req.member_id.as_str().to_owned();
            reply.parked(settled, parked, move |completed| match completed {
                Some(CompletedResponse::Join(r)) => r,
                // Unparked by shutdown (or a mismatched completion, which the coordinator
                // never sends): look for the coordinator again.
                _ => handlers::join_response(
                    &JoinResponse::error(&member_id, ResponseError::NotCoordinator),
                    version,
                ),
            })
        }
        RequestKind::SyncGroup(req) => {
            let (settled, parked) = groups
                .call_parking(|c, now| handlers::sync_group(c, &req, version, now))
                .await;
            reply.parked(settled, parked, move |completed| match completed {
                Some(CompletedResponse::Sync(r)) => r,
                _ => handlers::sync_response(
                    &SyncResponse::error(ResponseError::NotCoordinator),
                    version,
                ),
            })
        }
        RequestKind::Heartbeat(req) => reply.settled(
            groups
                .call(|c, now| handlers::heartbeat(c, &req, version, now))
                .await,
        ),
        RequestKind::LeaveGroup(req) => reply.settled(
            groups
                .call(|c, now| handlers::leave_group(c, &req, version, now))
                .await,
        ),
        RequestKind::OffsetCommit(mut req) => {
            let denied = authorize::offset_commit_topics(access, &mut req);
            reply.settled_then(
                groups
                    .call(|c, now| {
                        handlers::offset_commit(c, &req, version, partition_exists(state), now)
                    })
                    .await,
                move |resp| resp.topics.extend(denied),
            )
        }
        RequestKind::OffsetDelete(mut req) => {
            let denied = authorize::offset_delete_topics(access, &mut req);
            reply.settled_then(
                groups
                    .call(|c, now| handlers::offset_delete(c, &req, partition_exists(state), now))
                    .await,
                move |resp| {
                    if resp.error_code == 0 {
                        resp.topics.extend(denied);
                    }
                },
            )
        }
        RequestKind::DeleteGroups(mut req) => {
            let denied = authorize::delete_groups(access, &mut req);
            reply.settled_then(
                groups
                    .call(|c, now| handlers::delete_groups(c, &req, now))
                    .await,
                move |resp| resp.results.extend(denied),
            )
        }
        RequestKind::OffsetFetch(req) => {
            let asks = handlers::offset_fetch_asks(&req, version);
            let filter = authorize::OffsetFetchFilter::new(access, state, &asks);
            reply.settled(
                groups
                    .fetch_offsets(asks, move |asks, mut fetched| {
                        if let Some(filter) = &filter {
                            filter.apply(asks, &mut fetched);
                        }
                        handlers::offset_fetch_response(asks, fetched, version)
                    })
                    .await,
            )
        }
        RequestKind::ListGroups(req) => {
            let mut resp = groups
                .read(|c| handlers::list_groups(c, &req, version))
                .await;
            authorize::post_list_groups(access, &mut resp);
            respond(&resp)
        }
        RequestKind::DescribeGroups(req) => {
            let mut resp = groups
                .read(|c| handlers::describe_groups(c, &req, version))
                .await;
            authorize::post_describe_groups(access, &mut resp);
            respond(&resp)
        }
        _ => Err(DispatchError::UnsupportedApi { api }),
    }
}

/// How to answer one request.
struct Answer {
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    shutdown: watch::Receiver<bool>,
}

impl Answer {
    fn encode<T: Encodable + ResponseErrors>(
        api: ApiKey,
        version: i16,
        correlation_id: i32,
        body: &T,
    ) -> Result<Frame, DispatchError> {
        Ok(wire::encode_response(
            api,
            version,
            correlation_id,
            body,
            [],
        )?)
    }

    /// The answer of a call that never parks.
    fn settled<T>(self, settled: Settled<T>) -> Result<Reply, DispatchError>
    where
        T: Encodable + ResponseErrors + Send + 'static,
    {
        self.settled_then(settled, |_| {})
    }

    /// The answer of a call that never parks, completed by `finish` (the answers of
    /// what authorization took out of the request) before it is sent.
    fn settled_then<T>(
        self,
        settled: Settled<T>,
        finish: impl FnOnce(&mut T) + Send + 'static,
    ) -> Result<Reply, DispatchError>
    where
        T: Encodable + ResponseErrors + Send + 'static,
    {
        let Answer {
            api,
            version,
            correlation_id,
            ..
        } = self;
        match settled {
            Settled::Now(mut body) => {
                finish(&mut body);
                Ok(Reply::Now(Self::encode(
                    api,
                    version,
                    correlation_id,
                    &body,
                )?))
            }
            later => {
                let span = tracing::Span::current();
                Ok(Reply::Later(Box::pin(
                    async move {
                        let mut body = later
                            .wait()
                            .await
                            .map_err(|e| DispatchError::Internal(e.to_string()))?;
                        finish(&mut body);
                        Ok(Some(Self::encode(api, version, correlation_id, &body)?))
                    }
                    .instrument(span),
                )))
            }
        }
    }

    /// The answer of a JoinGroup or SyncGroup: now, or once a completion arrives on
    /// `parked`. `finish` builds the wire answer from the completion (None: unparked by
    /// shutdown).
    fn parked<T>(
        self,
        settled: Settled<coordinator::Reply<T>>,
        parked: Option<oneshot::Receiver<Completion>>,
        finish: impl FnOnce(Option<CompletedResponse>) -> T + Send + 'static,
    ) -> Result<Reply, DispatchError>
    where
        T: Encodable + ResponseErrors + Send + 'static,
    {
        let Answer {
            api,
            version,
            correlation_id,
            mut shutdown,
        } = self;
        if let Settled::Now(coordinator::Reply::Now(body)) = &settled {
            return Ok(Reply::Now(Self::encode(
                api,
                version,
                correlation_id,
                body,
            )?));
        }
        let span = tracing::Span::current();
        Ok(Reply::Later(Box::pin(
            async move {
                let reply = settled
                    .wait()
                    .await
                    .map_err(|e| DispatchError::Internal(e.to_string()))?;
                let body = match (reply, parked) {
                    (coordinator::Reply::Now(body), _) => body,
                    (coordinator::Reply::Pending(_), Some(parked)) => {
                        let completion = tokio::select! {
                            completion = parked => completion.ok(),
                            _ = shutdown.wait_for(|stop| *stop) => None,
                        };
                        finish(completion.map(|c| handlers::completion_response(&c, version)))
                    }
                    (coordinator::Reply::Pending(_), None) => finish(None),
                };
                Ok(Some(Self::encode(api, version, correlation_id, &body)?))
            }
            .instrument(span),
        )))
    }
}

/// Object-safe encoding of any response body into a frame.
trait ErasedEncodable {
    fn encode_frame(
        &self,
        api: ApiKey,
        version: i16,
        correlation_id: i32,
    ) -> Result<Frame, wire::EncodeError>;
}

impl<T: Encodable + ResponseErrors> ErasedEncodable for T {
    fn encode_frame(
        &self,
        api: ApiKey,
        version: i16,
        correlation_id: i32,
    ) -> Result<Frame, wire::EncodeError> {
        wire::encode_response(api, version, correlation_id, self, [])
    }
}
