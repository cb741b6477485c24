//! A scripted fake broker for unit tests: answers ApiVersions, Metadata and
//! InitProducerId itself and hands every other request to the test's handler, so client
//! behaviour on specific broker answers (errors, retries) is tested without a real
//! broker.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, InitProducerIdResponse, MetadataResponse, ProducerId,
    RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request as the fake broker received it: header, and the body still encoded.
pub struct Received {
    pub api: ApiKey,
    pub version: i16,
    pub body: Bytes,
}

/// What the handler answers: an encoded response body, or nothing (acks=0). It also
/// sees the APIs of all requests received so far.
pub type Handler = dyn Fn(&Received, &[ApiKey]) -> Option<BytesMut> + Send + Sync;

pub struct FakeBroker {
    pub addr: String,
    /// Every request received, in order (ApiVersions and Metadata included).
    pub log: Arc<Mutex<Vec<ApiKey>>>,
}

/// APIs the fake broker claims to support, with the versions it uses.
const VERSIONS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::Produce, 3, 12),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::InitProducerId, 0, 5),
];

/// The first producer id the fake broker hands out; each InitProducerId gets the next.
pub const FIRST_PRODUCER_ID: i64 = 1000;

impl FakeBroker {
    /// Starts a broker (node 1) that leads every partition of `topics` (name,
    /// partition count).
    pub async fn start(topics: &[(&str, i32)], handler: Arc<Handler>) -> FakeBroker {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metadata = MetadataResponse::default()
            .with_controller_id(1.into())
            .with_brokers(vec![MetadataResponseBroker::default()
                .with_node_id(1.into())
                .with_host(StrBytes::from_string(addr.ip().to_string()))
                .with_port(i32::from(addr.port()))])
            .with_topics(
                topics
                    .iter()
                    .map(|&(name, count)| {
                        MetadataResponseTopic::default()
                            .with_name(Some(TopicName(StrBytes::from_string(name.to_owned()))))
                            .with_partitions(
                                (0..count)
                                    .map(|p| {
                                        MetadataResponsePartition::default()
                                            .with_partition_index(p)
                                            .with_leader_id(1.into())
                                            .with_replica_nodes(vec![1.into()])
                                            .with_isr_nodes(vec![1.into()])
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            );
        let log = Arc::new(Mutex::new(Vec::new()));
        let broker_log = log.clone();
        let producer_ids = Arc::new(AtomicI64::new(FIRST_PRODUCER_ID));
        tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(serve(
                    socket,
                    metadata.clone(),
                    handler.clone(),
                    broker_log.clone(),
                    producer_ids.clone(),
                ));
            }
        });
        FakeBroker {
            addr: addr.to_string(),
            log,
        }
    }

    pub fn count(&self, api: ApiKey) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|&&a| a == api)
            .count()
    }
}

async fn serve(
    mut socket: TcpStream,
    metadata: MetadataResponse,
    handler: Arc<Handler>,
    log: Arc<Mutex<Vec<ApiKey>>>,
    producer_ids: Arc<AtomicI64>,
) {
    loop {
        let Ok(size) = socket.read_i32().await else {
            return;
        };
        let mut frame = vec![0; size as usize];
        if socket.read_exact(&mut frame).await.is_err() {
            return;
        }
        let mut frame = Bytes::from(frame);
        let api = ApiKey::try_from(i16::from_be_bytes([frame[0], frame[1]])).unwrap();
        let version = i16::from_be_bytes([frame[2], frame[3]]);
        let header =
            RequestHeader::decode(&mut frame, api.request_header_version(version)).unwrap();
        log.lock().unwrap().push(api);
        let body = match api {
            ApiKey::ApiVersions => {
                let mut out = BytesMut::new();
                ApiVersionsResponse::default()
                    .with_api_keys(
                        VERSIONS
                            .iter()
                            .map(|&(key, min, max)| {
                                ApiVersion::default()
                                    .with_api_key(key as i16)
                                    .with_min_version(min)
                                    .with_max_version(max)
                            })
                            .collect(),
                    )
                    .encode(&mut out, version)
                    .unwrap();
                Some(out)
            }
            ApiKey::Metadata => {
                let mut out = BytesMut::new();
                metadata.encode(&mut out, version).unwrap();
                Some(out)
            }
            ApiKey::InitProducerId => {
                let id = producer_ids.fetch_add(1, Ordering::Relaxed);
                let mut out = BytesMut::new();
                InitProducerIdResponse::default()
                    .with_producer_id(ProducerId(id))
                    .with_producer_epoch(0)
                    .encode(&mut out, version)
                    .unwrap();
                Some(out)
            }
            _ => {
                let seen = log.lock().unwrap().clone();
                let received = Received {
                    api,
                    version,
                    body: frame,
                };
                handler(&received, &seen)
            }
        };
        let Some(body) = body else {
            continue;
        };
        let mut response = BytesMut::new();
        response.put_i32(0);
        let header_version = match api {
            ApiKey::ApiVersions => 0,
            _ => api.response_header_version(version),
        };
        ResponseHeader::default()
            .with_correlation_id(header.correlation_id)
            .encode(&mut response, header_version)
            .unwrap();
        response.extend_from_slice(&body);
        let len = (response.len() - 4) as i32;
        response[..4].copy_from_slice(&len.to_be_bytes());
        if socket.write_all(&response).await.is_err() {
            return;
        }
    }
}

/// Decodes a request body.
pub fn decode<R: Decodable + HeaderVersion>(received: &Received) -> R {
    R::decode(&mut received.body.clone(), received.version).unwrap()
}

/// Encodes a response body.
pub fn encode<M: Encodable>(message: &M, version: i16) -> Option<BytesMut> {
    let mut out = BytesMut::new();
    message.encode(&mut out, version).unwrap();
    Some(out)
}
