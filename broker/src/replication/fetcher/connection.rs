//! A fetcher's connection to a leader broker: a small Kafka request/response codec over
//! one `TcpStream`, one request in flight at a time (Kafka's `BrokerBlockingSender`).
//!
//! Frames are `[size: i32][header][body]`, encoded and decoded by kafka-protocol. A
//! response frame is read whole into one buffer, and the records fields of the decoded
//! Fetch response are slices of that buffer (no copy before the log's append). On connect,
//! ApiVersions (v3) says which versions the leader serves; the fetcher uses the highest
//! Fetch version in [`FETCH_VERSIONS`] and ListOffsets version in [`LIST_OFFSETS_VERSIONS`].
//!
//! Every failure is an error value that closes the connection (the caller reconnects
//! after `replica.fetch.backoff.ms`): a connect or read timeout, an I/O error, a response
//! frame of an impossible size, or one that does not decode. Decoding runs under
//! `catch_unwind` as a second line of defence, so no bytes from the network can panic the
//! fetcher.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, FetchRequest, ListOffsetsRequest, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Fetch versions the fetcher speaks: 13 is the first with topic ids (12 brought the
/// diverging epoch), 15 the first with `replica_state` (KIP-903's broker epoch); 17 is the
/// newest this fetcher fills every field of (18 adds the follower's high watermark for
/// KRaft's own fetches).
pub const FETCH_VERSIONS: (i16, i16) = (13, 17);

/// ListOffsets versions used to find the leader's log start and end after
/// OFFSET_OUT_OF_RANGE: 4 is the first with `current_leader_epoch`.
pub const LIST_OFFSETS_VERSIONS: (i16, i16) = (4, 7);

/// The ApiVersions version asked (the first flexible one; every Sluice broker serves it).
const API_VERSIONS_VERSION: i16 = 3;

/// Why a connection failed; each closes it.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} timed out after {after:?}")]
    Timeout { what: String, after: Duration },
    #[error("I/O error on the connection to {addr}: {source}")]
    Io {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the leader {addr} sent a response frame of {size} bytes (at most {max} accepted)")]
    FrameSize { addr: String, size: i64, max: usize },
    #[error("cannot decode the {api} response from {addr}: {reason}")]
    Decode {
        api: &'static str,
        addr: String,
        reason: String,
    },
    #[error("cannot encode a {api} request: {reason}")]
    Encode { api: &'static str, reason: String },
    #[error("the leader {addr} serves no {api} version in {ours:?}")]
    Unsupported {
        api: &'static str,
        addr: String,
        ours: (i16, i16),
    },
    #[error("the leader {addr} answered ApiVersions with error code {code}")]
    ApiVersions { addr: String, code: i16 },
}

/// An open connection to a leader; see the module docs.
pub struct LeaderConnection {
    addr: String,
    stream: TcpStream,
    next_correlation_id: i32,
    client_id: StrBytes,
    max_frame: usize,
    /// The Fetch version used on this connection.
    pub fetch_version: i16,
    /// The ListOffsets version used on this connection, if the leader serves one we use.
    pub list_offsets_version: Option<i16>,
}

impl LeaderConnection {
    /// Connects to `addr` within `connect_timeout` and asks which versions the leader
    /// serves. `max_frame` bounds response frames (a bigger size prefix is corrupt).
    pub async fn connect(
        addr: &str,
        client_id: String,
        connect_timeout: Duration,
        max_frame: usize,
    ) -> Result<LeaderConnection, ConnectionError> {
        let stream = match tokio::time::timeout(connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(source)) => {
                return Err(ConnectionError::Connect {
                    addr: addr.to_owned(),
                    source,
                })
            }
            Err(_) => {
                return Err(ConnectionError::Timeout {
                    what: format!("connecting to {addr}"),
                    after: connect_timeout,
                })
            }
        };
        stream
            .set_nodelay(true)
            .map_err(|source| ConnectionError::Connect {
                addr: addr.to_owned(),
                source,
            })?;
        let mut connection = LeaderConnection {
            addr: addr.to_owned(),
            stream,
            next_correlation_id: 1,
            client_id: StrBytes::from_string(client_id),
            max_frame,
            fetch_version: FETCH_VERSIONS.1,
            list_offsets_version: None,
        };
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("sluice-broker"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let versions = connection
            .send(&request, API_VERSIONS_VERSION, connect_timeout)
            .await?;
        if versions.error_code != 0 {
            return Err(ConnectionError::ApiVersions {
                addr: addr.to_owned(),
                code: versions.error_code,
            });
        }
        let table: HashMap<i16, (i16, i16)> = versions
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        connection.fetch_version =
            pick(&table, ApiKey::Fetch, FETCH_VERSIONS).ok_or_else(|| {
                ConnectionError::Unsupported {
                    api: "Fetch",
                    addr: addr.to_owned(),
                    ours: FETCH_VERSIONS,
                }
            })?;
        connection.list_offsets_version = pick(&table, ApiKey::ListOffsets, LIST_OFFSETS_VERSIONS);
        Ok(connection)
    }

    /// The `host:port` this connection goes to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends a Fetch at the connection's version and waits at most `timeout` for the answer.
    pub async fn fetch(
        &mut self,
        request: &FetchRequest,
        timeout: Duration,
    ) -> Result<<FetchRequest as Request>::Response, ConnectionError> {
        let version = self.fetch_version;
        self.send(request, version, timeout).await
    }

    /// Sends a ListOffsets at the connection's version (`None` if the leader serves none
    /// we use).
    pub async fn list_offsets(
        &mut self,
        request: &ListOffsetsRequest,
        timeout: Duration,
    ) -> Option<Result<<ListOffsetsRequest as Request>::Response, ConnectionError>> {
        let version = self.list_offsets_version?;
        Some(self.send(request, version, timeout).await)
    }

    /// Sends `request` at `version` and reads its response within `timeout`.
    pub async fn send<R: Request>(
        &mut self,
        request: &R,
        version: i16,
        timeout: Duration,
    ) -> Result<R::Response, ConnectionError> {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = correlation_id.wrapping_add(1).max(1);
        let frame = encode(request, version, correlation_id, &self.client_id)?;
        let addr = self.addr.clone();
        let max_frame = self.max_frame;
        let stream = &mut self.stream;
        let exchange = async {
            stream
                .write_all(&frame)
                .await
                .map_err(|source| ConnectionError::Io {
                    addr: addr.clone(),
                    source,
                })?;
            read_frame(stream, &addr, max_frame).await
        };
        let body = match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(ConnectionError::Timeout {
                    what: format!("{} request to {}", api_name(R::KEY), self.addr),
                    after: timeout,
                })
            }
        };
        decode::<R>(&self.addr, body, version, correlation_id)
    }
}

/// The highest version of `api` in `ours` that the leader serves.
fn pick(table: &HashMap<i16, (i16, i16)>, api: ApiKey, ours: (i16, i16)) -> Option<i16> {
    let &(min, max) = table.get(&(api as i16))?;
    let version = ours.1.min(max);
    (version >= ours.0.max(min)).then_some(version)
}

fn api_name(key: i16) -> &'static str {
    match ApiKey::try_from(key) {
        Ok(ApiKey::Fetch) => "Fetch",
        Ok(ApiKey::ListOffsets) => "ListOffsets",
        Ok(ApiKey::ApiVersions) => "ApiVersions",
        _ => "request",
    }
}

/// One request frame: size, header, body.
pub fn encode<R: Request>(
    request: &R,
    version: i16,
    correlation_id: i32,
    client_id: &StrBytes,
) -> Result<Bytes, ConnectionError> {
    let api = api_name(R::KEY);
    let error = |e: &dyn std::fmt::Display| ConnectionError::Encode {
        api,
        reason: format!("{e:#}"),
    };
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(client_id.clone()));
    let header_version = R::header_version(version);
    let size = header
        .compute_size(header_version)
        .and_then(|h| Ok(h + request.compute_size(version)?))
        .map_err(|e| error(&e))?;
    let size = i32::try_from(size).map_err(|_| ConnectionError::Encode {
        api,
        reason: format!("request of {size} bytes is too large"),
    })?;
    let mut frame = BytesMut::with_capacity(4 + size as usize);
    frame.put_i32(size);
    header
        .encode(&mut frame, header_version)
        .map_err(|e| error(&e))?;
    request.encode(&mut frame, version).map_err(|e| error(&e))?;
    Ok(frame.freeze())
}

/// Reads one response frame's payload (header and body) into one buffer.
async fn read_frame(
    stream: &mut TcpStream,
    addr: &str,
    max_frame: usize,
) -> Result<Bytes, ConnectionError> {
    let io = |source| ConnectionError::Io {
        addr: addr.to_owned(),
        source,
    };
    let size = i64::from(stream.read_i32().await.map_err(io)?);
    // A response header is at least the correlation id.
    if size < 4 || size > max_frame as i64 {
        return Err(ConnectionError::FrameSize {
            addr: addr.to_owned(),
            size,
            max: max_frame,
        });
    }
    let size = size as usize;
    let mut buf = BytesMut::with_capacity(size);
    while buf.len() < size {
        let mut limited = (&mut *stream).take((size - buf.len()) as u64);
        let read = limited.read_buf(&mut buf).await.map_err(io)?;
        if read == 0 {
            return Err(io(std::io::Error::from(std::io::ErrorKind::UnexpectedEof)));
        }
    }
    Ok(buf.freeze())
}

/// Decodes a response frame's payload to `R`'s response at `version`, checking the
/// correlation id.
pub fn decode<R: Request>(
    addr: &str,
    mut body: Bytes,
    version: i16,
    correlation_id: i32,
) -> Result<R::Response, ConnectionError> {
    let api = api_name(R::KEY);
    let error = |reason: String| ConnectionError::Decode {
        api,
        addr: addr.to_owned(),
        reason,
    };
    let header_version = <R::Response as HeaderVersion>::header_version(version);
    let decoded = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let header =
            ResponseHeader::decode(&mut body, header_version).map_err(|e| format!("{e:#}"))?;
        let response = R::Response::decode(&mut body, version).map_err(|e| format!("{e:#}"))?;
        Ok::<_, String>((header, response))
    }));
    match decoded {
        Ok(Ok((header, response))) if header.correlation_id == correlation_id => Ok(response),
        Ok(Ok((header, _))) => Err(error(format!(
            "correlation id {}, expected {correlation_id}",
            header.correlation_id
        ))),
        Ok(Err(reason)) => Err(error(format!("version {version}: {reason}"))),
        Err(_) => Err(error(format!("version {version}: the decoder panicked"))),
    }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::{FetchResponse, ResponseHeader};

    use super::*;

    fn response_frame(correlation_id: i32, response: &FetchResponse, version: i16) -> Bytes {
        let mut buf = BytesMut::new();
        let header_version = <FetchResponse as HeaderVersion>::header_version(version);
        ResponseHeader::default()
            .with_correlation_id(correlation_id)
            .encode(&mut buf, header_version)
            .unwrap();
        response.encode(&mut buf, version).unwrap();
        buf.freeze()
    }

    #[test]
    fn garbage_and_mismatched_frames_are_errors_not_panics() {
        let good = response_frame(7, &FetchResponse::default(), 17);
        assert!(decode::<FetchRequest>("leader", good.clone(), 17, 7).is_ok());
        assert!(matches!(
            decode::<FetchRequest>("leader", good.clone(), 17, 8),
            Err(ConnectionError::Decode { .. })
        ));
        // Every truncation of a valid frame, and bytes that are no frame at all.
        for cut in 0..good.len() {
            let _ = decode::<FetchRequest>("leader", good.slice(..cut), 17, 7);
        }
        let noise = Bytes::from_static(&[0, 0, 0, 7, 0xff, 0xff, 0xff, 0xff, 0x7f, 1, 2, 3]);
        assert!(decode::<FetchRequest>("leader", noise, 17, 7).is_err());
    }

    #[test]
    fn versions_are_the_highest_both_sides_serve() {
        let table = HashMap::from([(ApiKey::Fetch as i16, (4, 18))]);
        assert_eq!(pick(&table, ApiKey::Fetch, FETCH_VERSIONS), Some(17));
        let old = HashMap::from([(ApiKey::Fetch as i16, (4, 14))]);
        assert_eq!(pick(&old, ApiKey::Fetch, FETCH_VERSIONS), Some(14));
        let older = HashMap::from([(ApiKey::Fetch as i16, (4, 12))]);
        assert_eq!(pick(&older, ApiKey::Fetch, FETCH_VERSIONS), None);
        assert_eq!(
            pick(&table, ApiKey::ListOffsets, LIST_OFFSETS_VERSIONS),
            None
        );
    }

    #[tokio::test]
    async fn an_impossible_frame_size_drops_the_connection() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut size = [0u8; 4];
            socket.read_exact(&mut size).await.unwrap();
            let mut request = vec![0u8; i32::from_be_bytes(size) as usize];
            socket.read_exact(&mut request).await.unwrap();
            // A size prefix far beyond the limit: no buffer may be grown for it.
            socket.write_all(&i32::MAX.to_be_bytes()).await.unwrap();
            socket
        });
        let result = LeaderConnection::connect(
            &addr,
            "test".to_owned(),
            Duration::from_secs(5),
            1024 * 1024,
        )
        .await;
        assert!(
            matches!(result, Err(ConnectionError::FrameSize { size, .. }) if size == i64::from(i32::MAX)),
            "{:?}",
            result.err()
        );
        drop(server.await.unwrap());
    }
}
