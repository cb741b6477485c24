//! One TCP connection to one broker, with pipelined requests.
//!
//! A [`Connection`] owns two tasks: a writer that sends request frames in the order they
//! were queued, and a reader that matches each response to its request by correlation id
//! and hands it to the waiting caller. Any number of requests may be outstanding at once
//! (Kafka answers them in order on one connection, which is what keeps produce order).
//!
//! Frames are `[size: i32][header][body]`. The correlation id sits at bytes 8..12 of every
//! request frame, whatever the header version, so a frame is encoded outside the lock and
//! only numbered under it.
//!
//! On connect the client sends ApiVersions and keeps the broker's version ranges; each
//! request then uses the highest version both sides support ([`Connection::version`]). A
//! broker that does not know our ApiVersions version answers with a v0 body listing what
//! it supports, and the request is repeated at that version, as Kafka's clients do.
//!
//! Failure is final: the first I/O error, malformed response frame or request timeout
//! closes the connection and fails every outstanding request with the same error. The
//! [`crate::Client`] opens a new one on the next request.

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Message, Request, StrBytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;

use crate::buffer_pool::BufferPool;
use crate::error::{Error, Result};
use crate::security::{Security, Stream};

/// Largest response frame accepted. Fetch responses are capped by `fetch.max.bytes`
/// (50 MiB by default); anything far beyond that is a corrupt length prefix.
pub const MAX_RESPONSE_SIZE: usize = 512 * 1024 * 1024;

/// The largest first answer on a connection (ApiVersions') taken as a Kafka frame.
const FIRST_RESPONSE_MAX: usize = 1024 * 1024;

/// The ApiVersions version sent first (3 is the first with client software names and
/// flexible encoding; Kafka 2.4+ supports it).
const API_VERSIONS_FIRST_TRY: i16 = 3;

/// Settings of one connection.
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    /// TLS and the SASL login (plaintext without either by default).
    pub security: Security,
    /// Sent in every request header; brokers log it.
    pub client_id: String,
    /// Limit for opening the TCP connection.
    pub connect_timeout: Duration,
    /// Default limit for a request's answer; requests may pass their own.
    pub request_timeout: Duration,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            security: Security::default(),
            client_id: "sluice".to_owned(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
        }
    }
}

type Reply = oneshot::Sender<Result<Bytes>>;

struct State {
    next_correlation_id: i32,
    pending: HashMap<i32, Reply>,
    /// Set once, on the first failure; every later request gets a clone.
    failed: Option<Error>,
    tasks: Vec<AbortHandle>,
}

struct Shared {
    addr: String,
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave it inconsistent (every critical
        // section is a few map operations), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Closes the connection: fails every outstanding request with `error`, stops both
    /// tasks. Only the first failure is kept.
    fn fail(&self, error: Error) {
        let (pending, tasks) = {
            let mut state = self.lock();
            if state.failed.is_none() {
                state.failed = Some(error.clone());
            }
            (
                std::mem::take(&mut state.pending),
                std::mem::take(&mut state.tasks),
            )
        };
        for (_, reply) in pending {
            let _ = reply.send(Err(error.clone())); // the caller may have gone: fine
        }
        for task in tasks {
            task.abort();
        }
    }
}

/// A connection to one broker; see the module docs. Cheap to share behind an `Arc`.
pub struct Connection {
    shared: Arc<Shared>,
    frames: mpsc::UnboundedSender<Bytes>,
    client_id: StrBytes,
    request_timeout: Duration,
    /// The broker's supported versions per API key, from ApiVersions.
    versions: HashMap<i16, (i16, i16)>,
    /// When to stop using the connection, if its SASL session expires.
    retire_at: std::sync::OnceLock<std::time::Instant>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("addr", &self.shared.addr)
            .field("alive", &self.is_alive())
            .finish()
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.shared.fail(Error::Disconnected {
            addr: self.shared.addr.clone(),
        });
    }
}

impl Connection {
    /// Opens a connection to `addr` (`host:port`) and negotiates API versions.
    pub async fn connect(addr: &str, config: &ConnectionConfig) -> Result<Connection> {
        let connect_error = |source: std::io::Error| Error::Connect {
            addr: addr.to_owned(),
            source: Arc::new(source),
        };
        let stream =
            match tokio::time::timeout(config.connect_timeout, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => return Err(connect_error(e)),
                Err(_) => {
                    return Err(Error::Timeout {
                        what: format!("connecting to {addr}"),
                        after: config.connect_timeout,
                    })
                }
            };
        stream.set_nodelay(true).map_err(connect_error)?;
        let handshake = async {
            let stream = config.security.wrap(addr, stream).await?;
            let mut connection = match stream {
                Stream::Plain(tcp) => {
                    let (reader, writer) = tcp.into_split();
                    Connection::start(addr, reader, writer, config)
                }
                Stream::Tls(tls) => {
                    let (reader, writer) = tokio::io::split(*tls);
                    Connection::start(addr, reader, writer, config)
                }
            };
            connection.versions = connection.negotiate_versions().await?;
            if let Some((mechanism, user, password)) = &config.security.sasl {
                crate::sasl::authenticate(&connection, *mechanism, user, password).await?;
            }
            Ok::<_, Error>(connection)
        };
        // The TLS handshake and the login may not hang forever on a silent server.
        let connection = tokio::time::timeout(config.request_timeout, handshake)
            .await
            .map_err(|_| Error::Timeout {
                what: format!(
                    "connecting to {addr} ({})",
                    config.security.protocol.as_str()
                ),
                after: config.request_timeout,
            })??;
        tracing::debug!(addr, apis = connection.versions.len(), "connected");
        Ok(connection)
    }

    fn start<R, W>(addr: &str, reader: R, writer: W, config: &ConnectionConfig) -> Connection
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let shared = Arc::new(Shared {
            addr: addr.to_owned(),
            state: Mutex::new(State {
                next_correlation_id: 1,
                pending: HashMap::new(),
                failed: None,
                tasks: Vec::new(),
            }),
        });
        let (frames, frames_rx) = mpsc::unbounded_channel();
        let write_task = tokio::spawn(write_loop(shared.clone(), writer, frames_rx));
        let read_task = tokio::spawn(read_loop(shared.clone(), reader));
        shared.lock().tasks = vec![write_task.abort_handle(), read_task.abort_handle()];
        Connection {
            shared,
            frames,
            client_id: StrBytes::from_string(config.client_id.clone()),
            request_timeout: config.request_timeout,
            versions: HashMap::new(),
            retire_at: std::sync::OnceLock::new(),
        }
    }

    /// The `host:port` this connection goes to.
    pub fn addr(&self) -> &str {
        &self.shared.addr
    }

    /// Whether the connection is still usable: no failure so far, and its SASL session
    /// (if the broker limits it, KIP-368) not near its end.
    pub fn is_alive(&self) -> bool {
        self.shared.lock().failed.is_none()
            && self
                .retire_at
                .get()
                .is_none_or(|at| std::time::Instant::now() < *at)
    }

    /// Retires the connection before its SASL session ends: the broker closes a
    /// connection at its first request after the session's end (KIP-368), so the client
    /// stops starting requests on it at 90% of the lifetime and opens a new, freshly
    /// logged-in one; requests already sent finish on this one.
    pub(crate) fn retire_after(&self, session_lifetime: Duration) {
        let at = std::time::Instant::now() + session_lifetime.mul_f64(0.9);
        let _ = self.retire_at.set(at);
    }

    /// Closes the connection, failing outstanding requests.
    pub fn close(&self) {
        self.shared.fail(Error::Disconnected {
            addr: self.shared.addr.clone(),
        });
    }

    /// The broker's version range for `api`, if it supports the API at all.
    pub fn broker_versions(&self, api: ApiKey) -> Option<(i16, i16)> {
        self.versions.get(&(api as i16)).copied()
    }

    /// The highest version of `R` that both this client and the broker support.
    pub fn version<R: Request>(&self) -> Result<i16> {
        self.version_capped::<R>(i16::MAX)
    }

    /// Like [`Connection::version`], but at most `cap` (for requests whose newer
    /// versions need something the caller does not have, e.g. topic ids).
    pub fn version_capped<R: Request>(&self, cap: i16) -> Result<i16> {
        let ours = (R::VERSIONS.min, R::VERSIONS.max.min(cap));
        let unsupported = || Error::UnsupportedApi {
            addr: self.shared.addr.clone(),
            api: api_name(R::KEY),
            ours: format!("{}..={}", ours.0, ours.1),
        };
        let &(min, max) = self.versions.get(&R::KEY).ok_or_else(unsupported)?;
        let version = ours.1.min(max);
        if version < ours.0.max(min) {
            return Err(unsupported());
        }
        Ok(version)
    }

    /// Whether the broker supports some version of `R` this client can use.
    pub fn supports<R: Request>(&self) -> bool {
        self.version::<R>().is_ok()
    }

    /// Sends `request` at `version` and waits for the answer, with the connection's
    /// request timeout.
    pub async fn send<R: Request>(&self, request: &R, version: i16) -> Result<R::Response> {
        self.send_with_timeout(request, version, self.request_timeout)
            .await
    }

    /// Sends `request` at the highest common version and waits for the answer.
    pub async fn call<R: Request>(&self, request: &R) -> Result<R::Response> {
        let version = self.version::<R>()?;
        self.send(request, version).await
    }

    /// Sends `request` and waits at most `timeout` for the answer. A timeout closes the
    /// connection (the answer may still come, and would be out of step).
    pub async fn send_with_timeout<R: Request>(
        &self,
        request: &R,
        version: i16,
        timeout: Duration,
    ) -> Result<R::Response> {
        self.queue(request, version, timeout)?.await
    }

    /// Queues `request` for sending now, and returns a future for its answer. Requests
    /// queued by successive calls go out on the wire in call order, whenever their
    /// futures are awaited (the producer relies on this to keep a partition's batches
    /// in order). `timeout` counts from this call; a timeout closes the connection, as
    /// with [`Connection::send_with_timeout`]. Dropping the future abandons the answer.
    pub fn queue<R: Request>(
        &self,
        request: &R,
        version: i16,
        timeout: Duration,
    ) -> Result<impl Future<Output = Result<R::Response>> + Send + 'static> {
        let frame = self.encode(request, version)?;
        let (reply, answer) = oneshot::channel();
        let correlation_id = self.enqueue(frame, Some(reply))?;
        let deadline = tokio::time::Instant::now() + timeout;
        let shared = self.shared.clone();
        Ok(async move {
            let body = match tokio::time::timeout_at(deadline, answer).await {
                Ok(Ok(result)) => result?,
                Ok(Err(_)) => {
                    return Err(Error::Disconnected {
                        addr: shared.addr.clone(),
                    })
                }
                Err(_) => {
                    let error = Error::Timeout {
                        what: format!("{} request to {}", api_name(R::KEY), shared.addr),
                        after: timeout,
                    };
                    shared.fail(error.clone());
                    return Err(error);
                }
            };
            decode::<R>(&shared.addr, body, version, correlation_id)
        })
    }

    /// Sends a request the broker does not answer (Produce with acks=0). Returns once the
    /// frame is queued for writing.
    pub fn send_without_response<R: Request>(&self, request: &R, version: i16) -> Result<()> {
        let frame = self.encode(request, version)?;
        self.enqueue(frame, None).map(|_| ())
    }

    fn encode<R: Request>(&self, request: &R, version: i16) -> Result<BytesMut> {
        let api = api_name(R::KEY);
        let encode_error = |e: &dyn std::fmt::Display| Error::Encode {
            api,
            reason: format!("{e:#}"),
        };
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(0)
            .with_client_id(Some(self.client_id.clone()));
        let header_version = R::header_version(version);
        let size = header
            .compute_size(header_version)
            .and_then(|h| Ok(h + request.compute_size(version)?))
            .map_err(|e| encode_error(&e))?;
        let size = i32::try_from(size).map_err(|_| Error::Encode {
            api,
            reason: format!("request of {size} bytes is too large"),
        })?;
        let mut frame = BytesMut::with_capacity(4 + size as usize);
        frame.put_i32(size);
        header
            .encode(&mut frame, header_version)
            .map_err(|e| encode_error(&e))?;
        request
            .encode(&mut frame, version)
            .map_err(|e| encode_error(&e))?;
        Ok(frame)
    }

    /// Numbers the frame, registers the reply slot and queues the frame for writing.
    fn enqueue(&self, mut frame: BytesMut, reply: Option<Reply>) -> Result<i32> {
        let mut state = self.shared.lock();
        if let Some(error) = &state.failed {
            return Err(error.clone());
        }
        let correlation_id = state.next_correlation_id;
        state.next_correlation_id = correlation_id.wrapping_add(1).max(1);
        frame[8..12].copy_from_slice(&correlation_id.to_be_bytes());
        if let Some(reply) = reply {
            state.pending.insert(correlation_id, reply);
        }
        // Sending under the lock keeps frames in correlation-id order.
        if self.frames.send(frame.freeze()).is_err() {
            state.pending.remove(&correlation_id);
            return Err(Error::Disconnected {
                addr: self.shared.addr.clone(),
            });
        }
        Ok(correlation_id)
    }

    /// ApiVersions: try v3, fall back to what the broker says it supports.
    async fn negotiate_versions(&self) -> Result<HashMap<i16, (i16, i16)>> {
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("sluice-client"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let mut version = API_VERSIONS_FIRST_TRY;
        for _ in 0..2 {
            let frame = self.encode(&request, version)?;
            let (reply, answer) = oneshot::channel();
            let correlation_id = self.enqueue(frame, Some(reply))?;
            let body = match tokio::time::timeout(self.request_timeout, answer).await {
                Ok(Ok(result)) => result?,
                Ok(Err(_)) => {
                    return Err(Error::Disconnected {
                        addr: self.shared.addr.clone(),
                    })
                }
                Err(_) => {
                    let error = Error::Timeout {
                        what: format!("ApiVersions request to {}", self.shared.addr),
                        after: self.request_timeout,
                    };
                    self.shared.fail(error.clone());
                    return Err(error);
                }
            };
            let response = match decode::<ApiVersionsRequest>(
                &self.shared.addr,
                body.clone(),
                version,
                correlation_id,
            ) {
                Ok(response) if response.error_code == 0 => {
                    return Ok(version_table(&response));
                }
                Ok(response) => Some(response),
                Err(_) => None,
            };
            // An unsupported version is answered in v0 format (Kafka's rule), so decode
            // again as v0 when the first attempt failed or reported an error.
            let v0 = match response {
                Some(r) if r.error_code != 35 => {
                    return Err(Error::broker(
                        format!("ApiVersions to {}", self.shared.addr),
                        kafka_protocol::error::ResponseError::try_from_code(r.error_code)
                            .unwrap_or(kafka_protocol::error::ResponseError::UnknownServerError),
                        None,
                    ))
                }
                _ => decode::<ApiVersionsRequest>(&self.shared.addr, body, 0, correlation_id)?,
            };
            let table = version_table(&v0);
            let Some(&(min, max)) = table.get(&(ApiKey::ApiVersions as i16)) else {
                return Err(Error::protocol(
                    "ApiVersions",
                    &self.shared.addr,
                    "the broker rejected our version and listed no ApiVersions range",
                ));
            };
            let next = max.min(<ApiVersionsRequest as Message>::VERSIONS.max);
            if next < min || next == version {
                return Err(Error::UnsupportedApi {
                    addr: self.shared.addr.clone(),
                    api: "ApiVersions",
                    ours: format!("0..={}", <ApiVersionsRequest as Message>::VERSIONS.max),
                });
            }
            version = next;
        }
        Err(Error::protocol(
            "ApiVersions",
            &self.shared.addr,
            "version negotiation did not converge",
        ))
    }
}

/// Decodes a response body: its header (which must carry `correlation_id`), then the
/// message.
fn decode<R: Request>(
    addr: &str,
    mut body: Bytes,
    version: i16,
    correlation_id: i32,
) -> Result<R::Response> {
    let api = api_name(R::KEY);
    let header_version = <R::Response as HeaderVersion>::header_version(version);
    // kafka-protocol reports short input as errors; the catch is a second line of
    // defence so that no broker answer, however wrong, can panic the caller.
    let decoded = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let header =
            ResponseHeader::decode(&mut body, header_version).map_err(|e| format!("{e:#}"))?;
        let response = R::Response::decode(&mut body, version).map_err(|e| format!("{e:#}"))?;
        Ok::<_, String>((header, response, body.len()))
    }));
    match decoded {
        Ok(Ok((header, response, _trailing))) => {
            if header.correlation_id != correlation_id {
                return Err(Error::protocol(
                    api,
                    addr,
                    format!(
                        "answer has correlation id {}, expected {correlation_id}",
                        header.correlation_id
                    ),
                ));
            }
            Ok(response)
        }
        Ok(Err(e)) => Err(Error::protocol(
            api,
            addr,
            format!("cannot decode version {version}: {e}"),
        )),
        Err(_) => Err(Error::protocol(
            api,
            addr,
            format!("decoding version {version} failed"),
        )),
    }
}

fn version_table(response: &ApiVersionsResponse) -> HashMap<i16, (i16, i16)> {
    response
        .api_keys
        .iter()
        .map(|k| (k.api_key, (k.min_version, k.max_version)))
        .collect()
}

async fn write_loop<W: AsyncWrite + Unpin>(
    shared: Arc<Shared>,
    writer: W,
    mut frames: mpsc::UnboundedReceiver<Bytes>,
) {
    let mut writer = BufWriter::with_capacity(64 * 1024, writer);
    while let Some(frame) = frames.recv().await {
        let mut result = writer.write_all(&frame).await;
        // Coalesce whatever else is queued into the same flush.
        while result.is_ok() {
            match frames.try_recv() {
                Ok(frame) => result = writer.write_all(&frame).await,
                Err(_) => break,
            }
        }
        if result.is_ok() {
            result = writer.flush().await;
        }
        if let Err(e) = result {
            shared.fail(Error::Io {
                addr: shared.addr.clone(),
                source: Arc::new(e),
            });
            return;
        }
    }
}

async fn read_loop<R: AsyncRead + Unpin>(shared: Arc<Shared>, reader: R) {
    let error = match read_responses(&shared, reader).await {
        Ok(()) => Error::Disconnected {
            addr: shared.addr.clone(),
        },
        Err(e) => e,
    };
    tracing::debug!(addr = %shared.addr, error = %error, "connection closed");
    shared.fail(error);
}

/// Why the first four bytes of an answer (read as a Kafka frame size that no broker
/// sends) show the server is something else, in words for the user.
fn not_a_kafka_frame(first: [u8; 4]) -> String {
    let text = String::from_utf8_lossy(&first).to_ascii_lowercase();
    if text.starts_with("http") || text.starts_with("<!do") || text.starts_with("<htm") {
        return "it answered like an HTTP server (is this the broker's Kafka port?)".to_owned();
    }
    // A TLS record: content type 0x14-0x17 (alert 0x15, handshake 0x16), version 3.x.
    if (0x14..=0x17).contains(&first[0]) && first[1] == 3 {
        return "it answered with TLS (a TLS listener: connect with --security-protocol SSL or SASL_SSL)"
            .to_owned();
    }
    format!(
        "its answer starts with a frame size of {} bytes, which no Kafka broker sends (is this the broker's Kafka port?)",
        i32::from_be_bytes(first)
    )
}

/// Reads frames until EOF (Ok) or a failure, delivering each to its waiting request.
async fn read_responses<R: AsyncRead + Unpin>(shared: &Shared, reader: R) -> Result<()> {
    let mut reader = tokio::io::BufReader::with_capacity(64 * 1024, reader);
    let buffers = BufferPool::new();
    let io_error = |e: std::io::Error| Error::Io {
        addr: shared.addr.clone(),
        source: Arc::new(e),
    };
    // The first answer on a connection is ApiVersions', a few KiB at most: a larger size
    // there is another protocol's first bytes (an HTTP status line, a TLS record). A bad
    // size later is a broker's fault.
    let mut first = true;
    loop {
        let size = match reader.read_i32().await {
            Ok(size) => size,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(io_error(e)),
        };
        let largest = if first {
            FIRST_RESPONSE_MAX
        } else {
            MAX_RESPONSE_SIZE
        };
        let size = match usize::try_from(size)
            .ok()
            .filter(|&s| (4..=largest).contains(&s))
        {
            Some(size) => size,
            None if first => {
                return Err(Error::NotKafka {
                    addr: shared.addr.clone(),
                    evidence: not_a_kafka_frame(size.to_be_bytes()),
                })
            }
            None => {
                return Err(Error::protocol(
                    "response",
                    &shared.addr,
                    format!("frame size {size} is invalid"),
                ))
            }
        };
        first = false;
        // Read into uninitialised capacity: zeroing a large fetch answer first costs
        // about as much as decoding it. The buffer is a recycled one when a previous
        // answer's has been let go (see `buffer_pool`).
        let mut body = buffers.take(size);
        while body.len() < size {
            let want = (size - body.len()) as u64;
            let read = (&mut reader)
                .take(want)
                .read_buf(&mut body)
                .await
                .map_err(io_error)?;
            if read == 0 {
                return Err(io_error(std::io::ErrorKind::UnexpectedEof.into()));
            }
        }
        let correlation_id = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
        let reply = shared.lock().pending.remove(&correlation_id);
        match reply {
            Some(reply) => {
                let _ = reply.send(Ok(buffers.freeze(body))); // the caller may have timed out
            }
            None => {
                return Err(Error::protocol(
                    "response",
                    &shared.addr,
                    format!("answer to unknown correlation id {correlation_id}"),
                ))
            }
        }
    }
}

/// The API's name as Kafka spells it, for messages.
pub fn api_name(key: i16) -> &'static str {
    match ApiKey::try_from(key) {
        Ok(ApiKey::Produce) => "Produce",
        Ok(ApiKey::Fetch) => "Fetch",
        Ok(ApiKey::ListOffsets) => "ListOffsets",
        Ok(ApiKey::Metadata) => "Metadata",
        Ok(ApiKey::OffsetCommit) => "OffsetCommit",
        Ok(ApiKey::OffsetFetch) => "OffsetFetch",
        Ok(ApiKey::FindCoordinator) => "FindCoordinator",
        Ok(ApiKey::JoinGroup) => "JoinGroup",
        Ok(ApiKey::Heartbeat) => "Heartbeat",
        Ok(ApiKey::LeaveGroup) => "LeaveGroup",
        Ok(ApiKey::SyncGroup) => "SyncGroup",
        Ok(ApiKey::DescribeGroups) => "DescribeGroups",
        Ok(ApiKey::ListGroups) => "ListGroups",
        Ok(ApiKey::ApiVersions) => "ApiVersions",
        Ok(ApiKey::CreateTopics) => "CreateTopics",
        Ok(ApiKey::DeleteTopics) => "DeleteTopics",
        Ok(ApiKey::InitProducerId) => "InitProducerId",
        Ok(ApiKey::DescribeConfigs) => "DescribeConfigs",
        Ok(ApiKey::AlterConfigs) => "AlterConfigs",
        Ok(ApiKey::DescribeLogDirs) => "DescribeLogDirs",
        Ok(ApiKey::CreatePartitions) => "CreatePartitions",
        Ok(ApiKey::DeleteGroups) => "DeleteGroups",
        Ok(ApiKey::IncrementalAlterConfigs) => "IncrementalAlterConfigs",
        Ok(ApiKey::OffsetDelete) => "OffsetDelete",
        Ok(ApiKey::DescribeQuorum) => "DescribeQuorum",
        Ok(ApiKey::DescribeCluster) => "DescribeCluster",
        _ => "request",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::api_versions_response::ApiVersion;
    use kafka_protocol::messages::{MetadataRequest, MetadataResponse};
    use tokio::net::TcpListener;

    /// Reads one request frame from a fake broker's socket: (api key, version, correlation id).
    async fn read_request(socket: &mut TcpStream) -> Option<(i16, i16, i32, Bytes)> {
        let size = socket.read_i32().await.ok()?;
        let mut body = vec![0; size as usize];
        socket.read_exact(&mut body).await.ok()?;
        let key = i16::from_be_bytes([body[0], body[1]]);
        let version = i16::from_be_bytes([body[2], body[3]]);
        let correlation_id = i32::from_be_bytes([body[4], body[5], body[6], body[7]]);
        Some((key, version, correlation_id, Bytes::from(body)))
    }

    async fn write_response<M: Encodable>(
        socket: &mut TcpStream,
        correlation_id: i32,
        header_version: i16,
        message: &M,
        version: i16,
    ) {
        let mut frame = BytesMut::new();
        frame.put_i32(0);
        ResponseHeader::default()
            .with_correlation_id(correlation_id)
            .encode(&mut frame, header_version)
            .unwrap();
        message.encode(&mut frame, version).unwrap();
        let size = (frame.len() - 4) as i32;
        frame[..4].copy_from_slice(&size.to_be_bytes());
        socket.write_all(&frame).await.unwrap();
    }

    fn api_versions(ranges: &[(ApiKey, i16, i16)]) -> ApiVersionsResponse {
        ApiVersionsResponse::default().with_api_keys(
            ranges
                .iter()
                .map(|&(key, min, max)| {
                    ApiVersion::default()
                        .with_api_key(key as i16)
                        .with_min_version(min)
                        .with_max_version(max)
                })
                .collect(),
        )
    }

    /// A broker that only knows ApiVersions v0..=2 gets the v3 request, answers
    /// UNSUPPORTED_VERSION in v0 format, and the client retries with v2.
    #[tokio::test]
    async fn api_versions_falls_back_and_versions_are_intersected() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let broker = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let (key, version, id, _) = read_request(&mut socket).await.unwrap();
            assert_eq!((key, version), (ApiKey::ApiVersions as i16, 3));
            let refusal = api_versions(&[(ApiKey::ApiVersions, 0, 2)]).with_error_code(35);
            write_response(&mut socket, id, 0, &refusal, 0).await;
            let (key, version, id, _) = read_request(&mut socket).await.unwrap();
            assert_eq!((key, version), (ApiKey::ApiVersions as i16, 2));
            let ok = api_versions(&[(ApiKey::ApiVersions, 0, 2), (ApiKey::Metadata, 1, 9)]);
            write_response(&mut socket, id, 0, &ok, 2).await;
            // Two pipelined Metadata requests, answered in order.
            let (_, v1, id1, _) = read_request(&mut socket).await.unwrap();
            let (_, v2, id2, _) = read_request(&mut socket).await.unwrap();
            assert_eq!((v1, v2), (9, 9));
            for (id, n) in [(id1, 1), (id2, 2)] {
                let answer = MetadataResponse::default().with_controller_id(n.into());
                write_response(&mut socket, id, 1, &answer, 9).await;
            }
            socket
        });
        let connection = Connection::connect(&addr, &ConnectionConfig::default())
            .await
            .unwrap();
        assert_eq!(connection.version::<MetadataRequest>().unwrap(), 9);
        assert_eq!(connection.version_capped::<MetadataRequest>(4).unwrap(), 4);
        assert!(connection.version_capped::<MetadataRequest>(0).is_err());
        assert!(matches!(
            connection.version::<kafka_protocol::messages::ProduceRequest>(),
            Err(Error::UnsupportedApi { .. })
        ));
        let request = MetadataRequest::default();
        let (a, b) = tokio::join!(connection.send(&request, 9), connection.send(&request, 9));
        assert_eq!(a.unwrap().controller_id.0, 1);
        assert_eq!(b.unwrap().controller_id.0, 2);
        let _socket = broker.await.unwrap();
    }

    #[tokio::test]
    async fn garbage_and_disconnects_fail_requests_without_panicking() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let broker = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let (_, _, id, _) = read_request(&mut socket).await.unwrap();
            let ok = api_versions(&[(ApiKey::ApiVersions, 0, 3), (ApiKey::Metadata, 0, 12)]);
            write_response(&mut socket, id, 0, &ok, 3).await;
            // A Metadata answer that stops in the middle of the body.
            let (_, _, id, _) = read_request(&mut socket).await.unwrap();
            let mut frame = BytesMut::new();
            frame.put_i32(9);
            frame.put_i32(id);
            frame.put_u8(0); // tagged fields of header v1
            frame.put_i32(0x7fff_0000); // throttle, then nothing
            socket.write_all(&frame).await.unwrap();
            // Then a frame with an absurd size: the connection must close.
            let (_, _, _, _) = read_request(&mut socket).await.unwrap();
            socket.write_all(&(-5i32).to_be_bytes()).await.unwrap();
            socket
        });
        let connection = Connection::connect(&addr, &ConnectionConfig::default())
            .await
            .unwrap();
        let request = MetadataRequest::default();
        let err = connection.send(&request, 12).await.unwrap_err();
        assert!(matches!(err, Error::Protocol { .. }), "{err:?}");
        assert!(connection.is_alive());
        let err = connection.send(&request, 12).await.unwrap_err();
        assert!(matches!(err, Error::Protocol { .. }), "{err:?}");
        assert!(!connection.is_alive());
        let err = connection.send(&request, 12).await.unwrap_err();
        assert!(matches!(err, Error::Protocol { .. }), "{err:?}");
        drop(broker.await.unwrap());
    }

    #[tokio::test]
    async fn refused_connection_is_a_connect_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let err = Connection::connect(&addr, &ConnectionConfig::default())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn request_timeout_closes_the_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let broker = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let (_, _, id, _) = read_request(&mut socket).await.unwrap();
            let ok = api_versions(&[(ApiKey::ApiVersions, 0, 3), (ApiKey::Metadata, 0, 12)]);
            write_response(&mut socket, id, 0, &ok, 3).await;
            let _ = read_request(&mut socket).await; // never answered
            socket
        });
        let connection = Connection::connect(&addr, &ConnectionConfig::default())
            .await
            .unwrap();
        let err = connection
            .send_with_timeout(&MetadataRequest::default(), 12, Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
        assert!(!connection.is_alive());
        drop(broker.await.unwrap());
    }
}
