//! From a request frame to a reply: header checks, decoding, the handler call, encoding.
//!
//! The rules for what a request that cannot be served gets follow Kafka:
//! - unknown api key, or a known API this broker does not serve: close the connection
//!   (Kafka cannot parse such a request, logs it and closes);
//! - ApiVersions at a version this broker does not know: a v0-format answer with
//!   UNSUPPORTED_VERSION and the supported list (KIP-511), so clients can downgrade;
//! - any other API at a version outside the advertised range: close (Kafka fails to
//!   parse it and closes the connection);
//! - a header or body that does not decode: close.
//!
//! Authentication comes first (see `security::session`): on a SASL listener, a request
//! other than ApiVersions and the SASL ones before the login closes the connection, as
//! does any request after the session expired.
//!
//! Decoding runs inside `catch_unwind`: the codec crate returns errors for bad input,
//! and a panic there would still only close this one connection.
//!
//! Handlers that write files (topic admin, auto-creating Metadata, DeleteRecords,
//! InitProducerId) run on tokio's blocking pool; the reply is awaited before the next
//! request on the connection is dispatched, so requests take effect in arrival order.
//! Produce appends and fetch reads run inline. Waits (acks=all durability, fetch long
//! polls) become [`Reply::Later`] futures that the connection's writer awaits in order.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use bytes::Bytes;
use kafka_protocol::messages::describe_topic_partitions_response::DescribeTopicPartitionsResponseTopic;
use kafka_protocol::messages::fetch_response::FetchableTopicResponse;
use kafka_protocol::messages::DescribeTopicPartitionsResponse;
use kafka_protocol::messages::{ApiKey, FetchResponse, RequestHeader, RequestKind};
use kafka_protocol::protocol::{Decodable, Encodable};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::Instrument;

use super::authorize::{self, TopicNames};
use super::frame::RequestPrefix;
use super::wire::{self, EncodeError, Frame};
use crate::cluster;
use crate::fetch_session::FetchContext;
use crate::handlers::admin::{
    acls, client_quotas, configs, elect_leaders, log_dirs, producers, reassignments, scram, topics,
};
use crate::handlers::fetch::{self, FetchOutcome};
use crate::handlers::{
    api_versions, init_producer_id, metadata, offset_for_leader_epoch, offsets, produce,
    topic_partitions,
};
use crate::metrics::errors::ResponseErrors;
use crate::metrics::WaitEnd;
use crate::quotas::QuotaKind;
use crate::security::acl::Operation;
use crate::security::session::{Gate, Session};
use crate::state::BrokerState;
use crate::topics::Partition;
use kafka_protocol::error::ResponseError;

/// A reply that completes later; `Ok(None)` sends nothing.
pub type LaterReply = Pin<Box<dyn Future<Output = Result<Option<Frame>, DispatchError>> + Send>>;

/// What the connection does for one request, in arrival order.
pub enum Reply {
    /// Send this frame.
    Now(Frame),
    /// Send what this future yields.
    Later(LaterReply),
    /// No response (acks=0 produce).
    Nothing,
    /// Close the connection once the earlier replies are sent.
    Close,
}

/// Why a request closes its connection.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("request shorter than a request header")]
    Truncated,
    #[error("unknown api key {0}")]
    UnknownApiKey(i16),
    #[error("{api:?} is not served by this broker")]
    UnsupportedApi { api: ApiKey },
    #[error("{api:?} version {version} is not supported (supported: {min}-{max})")]
    UnsupportedVersion {
        api: ApiKey,
        version: i16,
        min: i16,
        max: i16,
    },
    #[error("malformed {api:?} v{version} request: {reason}")]
    Malformed {
        api: ApiKey,
        version: i16,
        reason: String,
    },
    #[error(transparent)]
    Encode(#[from] EncodeError),
    #[error("handler failed: {0}")]
    Internal(String),
    #[error("{api:?} refused: {reason}")]
    Unauthenticated { api: ApiKey, reason: &'static str },
}

/// What dispatching needs besides the request.
#[derive(Clone)]
pub struct Context {
    pub state: Arc<BrokerState>,
    pub shutdown: watch::Receiver<bool>,
    /// The client's address (group members are described with it).
    pub peer: std::net::SocketAddr,
}

fn decode<T>(
    api: ApiKey,
    version: i16,
    f: impl FnOnce() -> anyhow::Result<T>,
) -> Result<T, DispatchError> {
    match std::panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(DispatchError::Malformed {
            api,
            version,
            reason: e.to_string(),
        }),
        Err(_) => Err(DispatchError::Malformed {
            api,
            version,
            reason: "decoder panicked".to_owned(),
        }),
    }
}

async fn blocking<T: Send + 'static>(
    state: &Arc<BrokerState>,
    f: impl FnOnce(&BrokerState) -> T + Send + 'static,
) -> Result<T, DispatchError> {
    let state = state.clone();
    tokio::task::spawn_blocking(move || f(&state))
        .await
        .map_err(|e| DispatchError::Internal(e.to_string()))
}

/// Handles one request frame (payload after the size prefix).
pub async fn dispatch(
    ctx: &Context,
    session: &mut Session,
    frame: Bytes,
) -> Result<Reply, DispatchError> {
    let prefix = RequestPrefix::read(&frame).ok_or(DispatchError::Truncated)?;
    let api = ApiKey::try_from(prefix.api_key)
        .map_err(|()| DispatchError::UnknownApiKey(prefix.api_key))?;
    let version = prefix.api_version;
    let span = tracing::debug_span!("request", api = ?api, version, correlation_id = prefix.correlation_id);
    if let Gate::Close(reason) = session.gate(api, Instant::now()) {
        return Err(DispatchError::Unauthenticated { api, reason });
    }
    dispatch_known(ctx, session, frame, api, version, prefix.correlation_id)
        .instrument(span)
        .await
}

async fn dispatch_known(
    ctx: &Context,
    session: &mut Session,
    frame: Bytes,
    api: ApiKey,
    version: i16,
    correlation_id: i32,
) -> Result<Reply, DispatchError> {
    let cluster = ctx.state.cluster.is_some();
    let Some((min, max)) = api_versions::supported_range_on(api, cluster) else {
        return Err(DispatchError::UnsupportedApi { api });
    };
    if !(min..=max).contains(&version) {
        if api == ApiKey::ApiVersions {
            tracing::debug!("ApiVersions at an unknown version: answering with v0 (KIP-511)");
            let frame = wire::encode_with_header_version(
                api,
                0,
                0,
                correlation_id,
                &api_versions::unsupported_version(cluster),
                [],
            )?;
            return Ok(Reply::Now(frame));
        }
        return Err(DispatchError::UnsupportedVersion {
            api,
            version,
            min,
            max,
        });
    }
    let mut body = frame;
    let header_version = api.request_header_version(version);
    let header = decode(api, version, || {
        RequestHeader::decode(&mut body, header_version)
    })?;
    tracing::trace!(client_id = ?header.client_id, "request");
    let request = decode(api, version, || {
        RequestKind::decode(api, &mut body, version)
    })?;
    let state = &ctx.state;
    let authorizer = &state.security.authorizer;
    // The group APIs go to the coordinator (see `server::groups`).
    if super::groups::is_group_api(api) {
        let mut access = session.access(authorizer);
        return super::groups::dispatch(ctx, &header, request, api, version, &mut access).await;
    }
    let respond = |body: &dyn ErasedEncodable| -> Result<Reply, DispatchError> {
        Ok(Reply::Now(body.encode_frame(
            api,
            version,
            correlation_id,
        )?))
    };
    match request {
        RequestKind::ApiVersions(req) => respond(&api_versions::handle(&req, version, cluster)),
        RequestKind::SaslHandshake(req) => {
            let (response, close) = session.handshake(&req);
            session.close_after_reply |= close;
            respond(&response)
        }
        RequestKind::SaslAuthenticate(req) => {
            let outcome = session
                .authenticate(&state.security, &req, Instant::now())
                .await;
            session.close_after_reply |= outcome.close;
            if outcome.response.error_code != 0 {
                session
                    .listener
                    .stats
                    .authentication_failures
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            match outcome.delay {
                None => respond(&outcome.response),
                Some(delay) => Ok(Reply::Later(Box::pin(async move {
                    tokio::time::sleep(delay).await;
                    Ok(Some(wire::encode_response(
                        api,
                        version,
                        correlation_id,
                        &outcome.response,
                        [],
                    )?))
                }))),
            }
        }
        RequestKind::DescribeUserScramCredentials(req) => {
            let allowed =
                authorize::manage_users(&mut session.access(authorizer), Operation::Describe);
            respond(&scram::describe(state, allowed, &req))
        }
        RequestKind::AlterUserScramCredentials(req) => {
            let allowed =
                authorize::manage_users(&mut session.access(authorizer), Operation::Alter);
            let principal = session.principal().clone();
            let resp = blocking(state, move |s| scram::alter(s, &principal, allowed, &req)).await?;
            respond(&resp)
        }
        RequestKind::CreateAcls(req) => {
            let allowed = authorize::cluster(&mut session.access(authorizer), Operation::Alter);
            let resp = blocking(state, move |s| acls::create(s, allowed, &req)).await?;
            respond(&resp)
        }
        RequestKind::DescribeAcls(req) => {
            let allowed = authorize::cluster(&mut session.access(authorizer), Operation::Describe);
            respond(&acls::describe(state, allowed, &req))
        }
        RequestKind::DeleteAcls(req) => {
            let allowed = authorize::cluster(&mut session.access(authorizer), Operation::Alter);
            let resp = blocking(state, move |s| acls::delete(s, allowed, &req)).await?;
            respond(&resp)
        }
        RequestKind::Metadata(req) => {
            respond(&metadata_answer(state, session, req, version).await?)
        }
        RequestKind::DescribeTopicPartitions(req) => {
            let metadata = metadata_answer(
                state,
                session,
                topic_partitions::as_metadata(&req),
                topic_partitions::METADATA_VERSION,
            )
            .await?;
            match topic_partitions::answer(&req, metadata) {
                Ok(resp) => respond(&resp),
                // Kafka's error answer: the code on every topic asked for.
                Err(error) => respond(
                    &DescribeTopicPartitionsResponse::default().with_topics(
                        req.topics
                            .iter()
                            .map(|t| {
                                DescribeTopicPartitionsResponseTopic::default()
                                    .with_error_code(error.code())
                                    .with_name(Some(t.name.clone()))
                            })
                            .collect(),
                    ),
                ),
            }
        }
        RequestKind::Produce(mut req) => {
            let denied = authorize::produce(
                &mut session.access(authorizer),
                &TopicNames::new(state),
                &mut req,
                version,
            );
            let mut outcome = produce::handle(state, &req, version, sluice_storage::now_ms());
            if !denied.is_empty() {
                outcome.failed = true;
                outcome.response.responses.extend(denied);
            }
            if state.quotas.any() {
                let bytes: usize = req
                    .topic_data
                    .iter()
                    .flat_map(|t| &t.partition_data)
                    .filter_map(|p| p.records.as_ref().map(|r| r.len()))
                    .sum();
                let client = header.client_id.as_deref().unwrap_or("");
                let throttle = state.quotas.record(
                    QuotaKind::Produce,
                    &session.principal().name,
                    client,
                    bytes as f64,
                );
                // KIP-219: answered at once with the throttle time, then muted for it.
                outcome.response.throttle_time_ms = throttle_ms(throttle);
                session.mute.extend(throttle);
            }
            if req.acks == 0 {
                // No response to carry an error: Kafka closes the connection instead.
                return Ok(if outcome.failed {
                    Reply::Close
                } else {
                    Reply::Nothing
                });
            }
            if outcome.is_ready() {
                return respond(&outcome.response);
            }
            let span = tracing::Span::current();
            Ok(Reply::Later(Box::pin(
                async move {
                    let resp = produce::finish(outcome).await;
                    Ok(Some(wire::encode_response(
                        api,
                        version,
                        correlation_id,
                        &resp,
                        [],
                    )?))
                }
                .instrument(span),
            )))
        }
        RequestKind::Fetch(req) => {
            // An incremental fetch stands for every partition of its session (KIP-227):
            // authorization and the fetch see that full request, and the answer is cut
            // back to the session's news at the end.
            let mut context =
                match state
                    .fetch_sessions
                    .open(req, version, std::time::Instant::now())
                {
                    Ok(context) => context,
                    Err(code) => {
                        let resp = FetchResponse::default().with_error_code(code.code());
                        return Ok(Reply::Now(encode_fetch(version, correlation_id, &resp)?));
                    }
                };
            let denied = authorize::fetch(
                &mut session.access(authorizer),
                &TopicNames::new(state),
                &mut context.request,
                version,
            );
            let quota =
                FetchQuota::for_consumer(state, session, &header, &context.request, version);
            // Refused partitions join whatever answer the others get, now or after the
            // long poll (which only ever sees the partitions allowed).
            match fetch::handle(state, &context.request, version, false) {
                FetchOutcome::Ready(mut resp) => {
                    resp.responses.extend(denied);
                    finish_fetch(state, &context, quota.as_ref(), &mut resp);
                    Ok(Reply::Now(encode_fetch(version, correlation_id, &resp)?))
                }
                FetchOutcome::Wait(watched) => {
                    // Capped by `fetch.max.wait.ms`: a client may not park a request (and
                    // its connection's replies behind it) for days.
                    let wait_ms = u64::try_from(context.request.max_wait_ms)
                        .unwrap_or(0)
                        .min(state.config.fetch_max_wait_ms);
                    let deadline = Instant::now() + std::time::Duration::from_millis(wait_ms);
                    let span = tracing::Span::current();
                    Ok(Reply::Later(Box::pin(
                        long_poll(
                            state.clone(),
                            context,
                            version,
                            correlation_id,
                            watched,
                            deadline,
                            ctx.shutdown.clone(),
                            denied,
                            quota,
                        )
                        .instrument(span),
                    )))
                }
            }
        }
        RequestKind::ListOffsets(mut req) => {
            let denied = authorize::list_offsets(&mut session.access(authorizer), &mut req);
            let mut resp = offsets::list_offsets(state, &req, version);
            resp.topics.extend(denied);
            respond(&resp)
        }
        RequestKind::OffsetForLeaderEpoch(mut req) => {
            let denied =
                authorize::offset_for_leader_epoch(&mut session.access(authorizer), &mut req);
            let mut resp = offset_for_leader_epoch::handle(state, &req);
            resp.topics.extend(denied);
            respond(&resp)
        }
        RequestKind::DeleteRecords(mut req) => {
            let denied = authorize::delete_records(&mut session.access(authorizer), &mut req);
            let mut resp = blocking(state, move |s| offsets::delete_records(s, &req)).await?;
            resp.topics.extend(denied);
            respond(&resp)
        }
        RequestKind::CreateTopics(mut req) => {
            let mut access = session.access(authorizer);
            let denied = authorize::create_topics(&mut access, &mut req);
            let mut resp = match &state.cluster {
                Some(node) => cluster::admin::create_topics(state, node, &req, version).await,
                None => blocking(state, move |s| topics::create_topics(s, &req, version)).await?,
            };
            authorize::post_create_topics(&mut access, denied, &mut resp);
            respond(&resp)
        }
        RequestKind::DeleteTopics(mut req) => {
            let denied = authorize::delete_topics(
                &mut session.access(authorizer),
                &TopicNames::new(state),
                &mut req,
                version,
            );
            let mut resp = match &state.cluster {
                Some(node) => cluster::admin::delete_topics(node, &req, version).await,
                None => blocking(state, move |s| topics::delete_topics(s, &req, version)).await?,
            };
            resp.responses.extend(denied);
            respond(&resp)
        }
        RequestKind::CreatePartitions(mut req) => {
            let denied = authorize::create_partitions(&mut session.access(authorizer), &mut req);
            let mut resp = match &state.cluster {
                Some(node) => cluster::admin::create_partitions(state, node, &req).await,
                None => blocking(state, move |s| topics::create_partitions(s, &req)).await?,
            };
            resp.results.extend(denied);
            respond(&resp)
        }
        RequestKind::DescribeConfigs(mut req) => {
            let denied = authorize::describe_configs(&mut session.access(authorizer), &mut req);
            let mut resp = configs::describe_configs(state, &req);
            resp.results.extend(denied);
            respond(&resp)
        }
        RequestKind::DescribeLogDirs(req) => {
            if authorize::cluster(&mut session.access(authorizer), Operation::Describe) {
                respond(&log_dirs::describe_log_dirs(state, &req))
            } else {
                respond(&log_dirs::refused(
                    ResponseError::ClusterAuthorizationFailed,
                ))
            }
        }
        RequestKind::DescribeClientQuotas(req) => {
            if authorize::cluster(&mut session.access(authorizer), Operation::DescribeConfigs) {
                respond(&client_quotas::describe(state, &req))
            } else {
                respond(&client_quotas::refused_describe())
            }
        }
        RequestKind::AlterClientQuotas(req) => {
            if authorize::cluster(&mut session.access(authorizer), Operation::AlterConfigs) {
                // The store writes a file: off the connection task.
                respond(&blocking(state, move |s| client_quotas::alter(s, &req)).await?)
            } else {
                respond(&client_quotas::refused_alter(&req))
            }
        }
        RequestKind::AlterPartitionReassignments(req) => {
            if authorize::cluster(&mut session.access(authorizer), Operation::Alter) {
                respond(&reassignments::alter(state, &req).await)
            } else {
                respond(&reassignments::refused_alter(&req))
            }
        }
        RequestKind::ListPartitionReassignments(req) => {
            if authorize::cluster(&mut session.access(authorizer), Operation::Describe) {
                respond(&reassignments::list(state, &req))
            } else {
                respond(&reassignments::refused_list())
            }
        }
        RequestKind::ElectLeaders(req) => {
            if authorize::cluster(&mut session.access(authorizer), Operation::Alter) {
                respond(&elect_leaders::elect_leaders(state, &req, version).await)
            } else {
                respond(&elect_leaders::refused(&req, version))
            }
        }
        RequestKind::DescribeProducers(mut req) => {
            let denied = authorize::describe_producers(&mut session.access(authorizer), &mut req);
            let mut resp = producers::describe_producers(state, &req);
            resp.topics.extend(denied);
            respond(&resp)
        }
        RequestKind::AlterConfigs(req) => {
            let mut incremental = configs::alter_as_incremental(state, &req);
            let denied = authorize::incremental_alter_configs(
                &mut session.access(authorizer),
                &mut incremental,
            );
            let mut resp = match &state.cluster {
                Some(node) => {
                    cluster::admin::incremental_alter_configs(state, node, &incremental).await
                }
                None => {
                    blocking(state, move |s| {
                        configs::incremental_alter_configs(s, &incremental)
                    })
                    .await?
                }
            };
            resp.responses.extend(denied);
            respond(&configs::alter_response(resp))
        }
        RequestKind::IncrementalAlterConfigs(mut req) => {
            let denied =
                authorize::incremental_alter_configs(&mut session.access(authorizer), &mut req);
            let mut resp = match &state.cluster {
                Some(node) => cluster::admin::incremental_alter_configs(state, node, &req).await,
                None => {
                    blocking(state, move |s| configs::incremental_alter_configs(s, &req)).await?
                }
            };
            resp.responses.extend(denied);
            respond(&resp)
        }
        RequestKind::InitProducerId(req) => {
            if let Some(refused) =
                authorize::init_producer_id(&mut session.access(authorizer), &req)
            {
                return respond(&refused);
            }
            match &state.cluster {
                Some(node) => {
                    let resp = match init_producer_id::check(&req) {
                        Err(refused) => refused,
                        Ok(()) => {
                            init_producer_id::answer(&req, node.producer_ids.allocate(node).await)
                        }
                    };
                    respond(&resp)
                }
                None => {
                    // May write and fsync the producer id block file.
                    let resp = blocking(state, move |s| init_producer_id::handle(s, &req)).await?;
                    respond(&resp)
                }
            }
        }
        RequestKind::DescribeCluster(req) => {
            let mut resp = cluster::describe::describe_cluster(state, &req, version);
            if req.include_cluster_authorized_operations {
                resp.cluster_authorized_operations =
                    authorize::cluster_operations(&mut session.access(authorizer));
            }
            respond(&resp)
        }
        RequestKind::DescribeQuorum(req) => {
            if authorize::cluster(&mut session.access(authorizer), Operation::Describe) {
                respond(&cluster::describe::describe_quorum(state, &req, version).await)
            } else {
                respond(&cluster::describe::quorum_refused(
                    ResponseError::ClusterAuthorizationFailed,
                ))
            }
        }
        // `supported_range` lists exactly the variants above.
        _ => Err(DispatchError::UnsupportedApi { api }),
    }
}

/// Encodes a Fetch response, splicing every partition's records (see `wire`).
fn encode_fetch(
    version: i16,
    correlation_id: i32,
    response: &kafka_protocol::messages::FetchResponse,
) -> Result<Frame, EncodeError> {
    let records = response
        .responses
        .iter()
        .flat_map(|t| t.partitions.iter())
        .filter_map(|p| p.records.clone());
    wire::encode_response(ApiKey::Fetch, version, correlation_id, response, records)
}

/// A consumer's fetch under a client quota: who it is and its connection's mute.
pub(crate) struct FetchQuota {
    user: String,
    client_id: String,
    mute: Arc<crate::quotas::Mute>,
}

impl FetchQuota {
    /// Set for a consumer's fetch while some client quota exists; followers are never
    /// throttled.
    fn for_consumer(
        state: &BrokerState,
        session: &Session,
        header: &RequestHeader,
        request: &kafka_protocol::messages::FetchRequest,
        version: i16,
    ) -> Option<FetchQuota> {
        let replica = if version >= 15 {
            request.replica_state.replica_id.0
        } else {
            request.replica_id.0
        };
        (replica < 0 && state.quotas.any()).then(|| FetchQuota {
            user: session.principal().name.clone(),
            client_id: header.client_id.as_deref().unwrap_or("").to_owned(),
            mute: session.mute.clone(),
        })
    }
}

/// Whole milliseconds of a throttle, as `throttle_time_ms` carries them.
fn throttle_ms(throttle: std::time::Duration) -> i32 {
    i32::try_from(throttle.as_millis()).unwrap_or(i32::MAX)
}

/// The last step of every fetch answer: the consumer's byte quota, then the session.
/// A consumer past its quota gets an empty answer with `throttle_time_ms`, its bytes
/// taken back (its records come after the throttle, as in Kafka), and its connection
/// muted; a session it fetches through stays as it was.
fn finish_fetch(
    state: &BrokerState,
    context: &FetchContext,
    quota: Option<&FetchQuota>,
    response: &mut FetchResponse,
) {
    if let Some(quota) = quota {
        let bytes: usize = response
            .responses
            .iter()
            .flat_map(|t| &t.partitions)
            .filter_map(|p| p.records.as_ref().map(|r| r.len()))
            .sum();
        let (user, client) = (&quota.user, &quota.client_id);
        let throttle = state
            .quotas
            .record(QuotaKind::Fetch, user, client, bytes as f64);
        if !throttle.is_zero() {
            state
                .quotas
                .unrecord(QuotaKind::Fetch, user, client, bytes as f64);
            quota.mute.extend(throttle);
            response.responses.clear();
            response.throttle_time_ms = throttle_ms(throttle);
            state.fetch_sessions.close_throttled(context, response);
            return;
        }
    }
    state
        .fetch_sessions
        .close(context, response, std::time::Instant::now());
}

/// Waits for appends to any watched partition (or the deadline, or shutdown) and
/// retries the fetch until it has enough data; see `handlers::fetch`. `refused` are the
/// answers of the partitions authorization took out of `request`, sent with the rest.
#[allow(clippy::too_many_arguments)]
async fn long_poll(
    state: Arc<BrokerState>,
    context: FetchContext,
    version: i16,
    correlation_id: i32,
    mut watched: Vec<Arc<Partition>>,
    deadline: Instant,
    mut shutdown: watch::Receiver<bool>,
    refused: Vec<FetchableTopicResponse>,
    quota: Option<FetchQuota>,
) -> Result<Option<Frame>, DispatchError> {
    let request = &context.request;
    let mut refused = Some(refused);
    let mut stopping = *shutdown.borrow();
    let waiting_since = Instant::now();
    let consumer = if version >= 15 {
        request.replica_state.replica_id.0 < 0
    } else {
        request.replica_id.0 < 0
    };
    loop {
        let next = {
            // Registered before the data is checked again, so an append between the
            // check and the wait still wakes this poll.
            let mut waits: Vec<_> = watched.iter().map(|p| Box::pin(p.appended())).collect();
            for wait in &mut waits {
                wait.as_mut().enable();
            }
            let final_attempt = stopping || Instant::now() >= deadline;
            match fetch::handle(&state, request, version, final_attempt) {
                FetchOutcome::Ready(mut resp) => {
                    if consumer {
                        let end = if stopping {
                            WaitEnd::Shutdown
                        } else if final_attempt {
                            WaitEnd::Expired
                        } else {
                            WaitEnd::Satisfied
                        };
                        state.metrics.fetch_waited(waiting_since.elapsed(), end);
                    }
                    resp.responses.extend(refused.take().unwrap_or_default());
                    finish_fetch(&state, &context, quota.as_ref(), &mut resp);
                    return Ok(Some(encode_fetch(version, correlation_id, &resp)?));
                }
                FetchOutcome::Wait(next) => {
                    let any_append = std::future::poll_fn(|cx| {
                        for wait in waits.iter_mut() {
                            if wait.as_mut().poll(cx).is_ready() {
                                return Poll::Ready(());
                            }
                        }
                        Poll::Pending
                    });
                    tokio::select! {
                        () = any_append => {}
                        () = tokio::time::sleep_until(deadline) => {}
                        changed = shutdown.changed() => {
                            // A dropped sender means the broker is going away too.
                            if changed.is_err() || *shutdown.borrow() {
                                stopping = true;
                            }
                        }
                    }
                    next
                }
            }
        };
        watched = next;
    }
}

/// The Metadata answer to `req`, as the session's principal may see it (Metadata, and
/// DescribeTopicPartitions which reshapes it).
async fn metadata_answer(
    state: &Arc<BrokerState>,
    session: &mut Session,
    mut req: kafka_protocol::messages::MetadataRequest,
    version: i16,
) -> Result<kafka_protocol::messages::MetadataResponse, DispatchError> {
    let mut access = session.access(&state.security.authorizer);
    let asked = authorize::MetadataAsked::of(&req, version);
    let denied = authorize::metadata(
        &mut access,
        &TopicNames::new(state),
        &mut req,
        state.config.auto_create_topics,
    );
    let mut resp = match &state.cluster {
        Some(node) => cluster::metadata::handle(state, node, &req, version).await,
        None => blocking(state, move |s| metadata::handle(s, &req, version)).await?,
    };
    authorize::post_metadata(&mut access, denied, asked, &mut resp);
    Ok(resp)
}

/// Object-safe encoding of any response body into a frame.
trait ErasedEncodable {
    fn encode_frame(
        &self,
        api: ApiKey,
        version: i16,
        correlation_id: i32,
    ) -> Result<Frame, EncodeError>;
}

impl<T: Encodable + ResponseErrors> ErasedEncodable for T {
    fn encode_frame(
        &self,
        api: ApiKey,
        version: i16,
        correlation_id: i32,
    ) -> Result<Frame, EncodeError> {
        wire::encode_response(api, version, correlation_id, self, [])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::FetchResponse;

    #[test]
    fn fetch_responses_splice_every_partitions_records() {
        let records: Vec<Bytes> = (0..3).map(|i| Bytes::from(vec![i as u8; 500])).collect();
        let response = FetchResponse::default().with_responses(vec![
            FetchableTopicResponse::default().with_partitions(vec![
                PartitionData::default().with_records(Some(records[0].clone())),
                PartitionData::default().with_records(Some(Bytes::new())),
            ]),
            FetchableTopicResponse::default().with_partitions(vec![
                PartitionData::default().with_records(Some(records[1].clone())),
                PartitionData::default().with_records(Some(records[2].clone())),
            ]),
        ]);
        let mut frame = encode_fetch(16, 1, &response).unwrap();
        let mut chunks = Vec::new();
        while bytes::Buf::has_remaining(&frame) {
            let chunk = bytes::Buf::chunk(&frame);
            chunks.push((chunk.as_ptr(), chunk.len()));
            let len = chunk.len();
            bytes::Buf::advance(&mut frame, len);
        }
        for r in &records {
            assert!(
                chunks.contains(&(r.as_ptr(), r.len())),
                "records written from their own buffer"
            );
        }
    }
}
