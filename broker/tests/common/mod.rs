//! Shared helpers for the broker's integration tests: start a broker in-process on
//! 127.0.0.1:0 over a temp dir, and a minimal Kafka client built on kafka-protocol's
//! encoders that speaks to it over a real TcpStream.
#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    CreateTopicsRequest, CreateTopicsResponse, FetchRequest, FetchResponse, ProduceRequest,
    ProduceResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use sluice_broker::{Broker, BrokerConfig, BrokerHandle};
use sluice_storage::batch::{BatchBuilder, Compression};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a test waits for anything before failing.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// A config for a test broker on a free port over `dir`, with `extra` properties.
pub fn config(dir: &Path, extra: &[(&str, &str)]) -> BrokerConfig {
    let mut props: std::collections::BTreeMap<String, String> = extra
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    props.insert("listeners".into(), "127.0.0.1:0".into());
    props.insert("log.dirs".into(), dir.to_string_lossy().into_owned());
    // A free port, not the default 9644 that parallel tests would contend for.
    props
        .entry("admin.listeners".into())
        .or_insert_with(|| "127.0.0.1:0".into());
    BrokerConfig::from_properties(&props).expect("test config")
}

/// Starts a broker over `dir`.
pub async fn start(dir: &Path, extra: &[(&str, &str)]) -> BrokerHandle {
    init_tracing();
    Broker::start(config(dir, extra))
        .await
        .expect("broker starts")
}

/// Starts the single-node broker of releases before the cluster over `dir`, to write a
/// data directory as they did (see `BrokerConfig::legacy_single_node`).
pub async fn start_legacy(dir: &Path, extra: &[(&str, &str)]) -> BrokerHandle {
    init_tracing();
    let mut config = config(dir, extra);
    config.legacy_single_node = true;
    Broker::start(config).await.expect("broker starts")
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

/// Polls `done` every few milliseconds until it holds; fails the test after [`TIMEOUT`].
pub async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + TIMEOUT;
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A record batch with these (key, value) records, as a producer would send it.
pub fn batch(records: &[(Option<&str>, &str)]) -> Bytes {
    batch_with(Compression::None, 1_700_000_000_000, records)
}

/// A record batch with a codec and a first timestamp (later records +1 ms each).
pub fn batch_with(
    compression: Compression,
    timestamp: i64,
    records: &[(Option<&str>, &str)],
) -> Bytes {
    let mut builder = BatchBuilder::new(compression);
    for (i, (key, value)) in records.iter().enumerate() {
        builder.push(
            timestamp + i as i64,
            key.map(str::as_bytes),
            Some(value.as_bytes()),
            &[],
        );
    }
    builder.build().expect("batch builds")
}

pub fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_owned()))
}

/// A raw Kafka connection.
pub struct Client {
    pub stream: TcpStream,
    correlation_id: i32,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        let stream = tokio::time::timeout(TIMEOUT, TcpStream::connect(addr))
            .await
            .expect("connect in time")
            .expect("connect");
        Client {
            stream,
            correlation_id: 0,
        }
    }

    /// Connects from a chosen local address (any of 127.0.0.0/8 is this host's loopback),
    /// so a test can be two clients with different addresses.
    pub async fn connect_from(local: std::net::IpAddr, addr: SocketAddr) -> Client {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(SocketAddr::new(local, 0))
            .expect("bind the local address");
        let stream = tokio::time::timeout(TIMEOUT, socket.connect(addr))
            .await
            .expect("connect in time")
            .expect("connect");
        Client {
            stream,
            correlation_id: 0,
        }
    }

    /// Encodes a request frame (size + header + body).
    pub fn encode<R: Request>(&mut self, version: i16, request: &R) -> (i32, Bytes) {
        self.correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("sluice-test")));
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        header
            .encode(&mut buf, R::header_version(version))
            .expect("encode header");
        request.encode(&mut buf, version).expect("encode request");
        let size = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&size.to_be_bytes());
        (self.correlation_id, buf.freeze())
    }

    pub async fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// Reads one response frame's payload; `None` when the broker closed the connection.
    pub async fn read_frame(&mut self) -> Option<Bytes> {
        let read = async {
            let size = match self.stream.read_i32().await {
                Ok(size) => size,
                Err(_) => return None,
            };
            let mut payload = vec![0u8; size as usize];
            self.stream.read_exact(&mut payload).await.ok()?;
            Some(Bytes::from(payload))
        };
        tokio::time::timeout(TIMEOUT, read)
            .await
            .expect("response in time")
    }

    /// Decodes a response frame to `R`'s response at `version`, checking the correlation id.
    pub fn decode<R: Request>(version: i16, correlation_id: i32, frame: Bytes) -> R::Response {
        let mut frame = frame;
        let header = ResponseHeader::decode(&mut frame, R::Response::header_version(version))
            .expect("decode response header");
        assert_eq!(header.correlation_id, correlation_id, "responses in order");
        let response = R::Response::decode(&mut frame, version).expect("decode response");
        assert!(!frame.has_remaining(), "no trailing bytes in the response");
        response
    }

    /// Sends a request and reads its response.
    pub async fn send<R: Request>(&mut self, version: i16, request: &R) -> R::Response {
        let (correlation_id, frame) = self.encode(version, request);
        self.write(&frame).await;
        let response = self.read_frame().await.expect("broker answered");
        Self::decode::<R>(version, correlation_id, response)
    }

    /// Whether the broker closed the connection (reads until EOF, failing on a response).
    pub async fn closed_by_broker(&mut self) -> bool {
        let mut buf = [0u8; 64];
        match tokio::time::timeout(TIMEOUT, self.stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => true,
            Ok(Ok(_)) => false,
            Err(_) => panic!("connection neither answered nor closed"),
        }
    }

    // ---- conveniences ----

    pub async fn create_topic(
        &mut self,
        topic: &str,
        partitions: i32,
        configs: &[(&str, &str)],
    ) -> CreateTopicsResponse {
        let request = CreateTopicsRequest::default()
            .with_topics(vec![CreatableTopic::default()
                .with_name(name(topic))
                .with_num_partitions(partitions)
                .with_replication_factor(-1)
                .with_configs(
                    configs
                        .iter()
                        .map(|(k, v)| {
                            CreatableTopicConfig::default()
                                .with_name(StrBytes::from_string(k.to_string()))
                                .with_value(Some(StrBytes::from_string(v.to_string())))
                        })
                        .collect(),
                )])
            .with_timeout_ms(5000);
        let response = self.send(7, &request).await;
        response
    }

    pub fn produce_request(
        topic: &str,
        partition: i32,
        acks: i16,
        records: Bytes,
    ) -> ProduceRequest {
        ProduceRequest::default()
            .with_acks(acks)
            .with_timeout_ms(5000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(name(topic))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(records))])])
    }

    /// Produces one batch with acks=1 (v9) and returns (error code, base offset).
    pub async fn produce(&mut self, topic: &str, partition: i32, records: Bytes) -> (i16, i64) {
        let response: ProduceResponse = self
            .send(9, &Self::produce_request(topic, partition, 1, records))
            .await;
        let p = &response.responses[0].partition_responses[0];
        (p.error_code, p.base_offset)
    }

    pub fn fetch_request(
        topic: &str,
        partition: i32,
        offset: i64,
        max_wait_ms: i32,
        min_bytes: i32,
    ) -> FetchRequest {
        FetchRequest::default()
            .with_max_wait_ms(max_wait_ms)
            .with_min_bytes(min_bytes)
            .with_max_bytes(50 * 1024 * 1024)
            .with_session_epoch(-1)
            .with_topics(vec![FetchTopic::default()
                .with_topic(name(topic))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(partition)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(1024 * 1024)])])
    }

    /// Fetches (v12, no waiting) and returns the partition's data.
    pub async fn fetch(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> kafka_protocol::messages::fetch_response::PartitionData {
        let response: FetchResponse = self
            .send(12, &Self::fetch_request(topic, partition, offset, 0, 0))
            .await;
        assert_eq!(response.error_code, 0);
        response.responses[0].partitions[0].clone()
    }
}

/// A port free on `ip` now (the broker binds it a moment later).
pub fn free_port(ip: Ipv4Addr) -> u16 {
    TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Two different ports free on `ip` now. Both are held while the second is picked:
/// picked one after the other, the kernel may hand out the same port twice (a node's
/// client and controller listeners then collide).
pub fn two_free_ports(ip: Ipv4Addr) -> (u16, u16) {
    let bind = || TcpListener::bind((ip, 0)).expect("a free port");
    let (first, second) = (bind(), bind());
    let port = |l: &TcpListener| l.local_addr().expect("bound").port();
    (port(&first), port(&second))
}
