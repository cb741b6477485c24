//! The protocol edges: ApiVersions (every API's exact range, KIP-511 for unknown
//! versions) and every kind of bad input, which closes only the offending connection.

mod common;

/// As in the binary: a request claiming billions of array elements must not abort.
#[global_allocator]
static ALLOCATOR: sluice_broker::alloc::LazyHugeAlloc = sluice_broker::alloc::LazyHugeAlloc;

use bytes::{BufMut, BytesMut};
use common::{batch, Client};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use sluice_broker::handlers::api_versions;

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

/// A request header prefix (api key, version, correlation id, null client id).
fn header(api_key: i16, version: i16, correlation_id: i32) -> BytesMut {
    let mut b = BytesMut::new();
    b.put_i16(api_key);
    b.put_i16(version);
    b.put_i32(correlation_id);
    b.put_i16(-1);
    b
}

/// The broker still serves a fresh connection.
async fn still_serving(addr: std::net::SocketAddr) {
    let mut client = Client::connect(addr).await;
    let response = client.send(1, &MetadataRequest::default()).await;
    assert_eq!(response.brokers.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_versions_lists_exact_ranges_at_every_version() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::start(dir.path(), &[]).await;
    let mut client = Client::connect(broker.local_addr()).await;
    for version in 0..=4 {
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("sluice-test"))
            .with_client_software_version(StrBytes::from_static_str("1.0"));
        let response = client.send(version, &request).await;
        assert_eq!(response.error_code, 0, "v{version}");
        let listed: Vec<(i16, i16, i16)> = response
            .api_keys
            .iter()
            .map(|k| (k.api_key, k.min_version, k.max_version))
            .collect();
        // Produce is listed from v0 although only v3+ is served (Kafka 4.x does the same
        // so that old librdkafka enables gzip/snappy/lz4), and SaslHandshake from v0
        // although only v1 is served (librdkafka detects SASL support by v0). A single
        // node is a cluster of one: it lists DescribeQuorum too.
        let expected: Vec<(i16, i16, i16)> = api_versions::all()
            .map(|&(k, min, max)| {
                let min = if matches!(k, ApiKey::Produce | ApiKey::SaslHandshake) {
                    0
                } else {
                    min
                };
                (k as i16, min, max)
            })
            .collect();
        assert_eq!(listed, expected);
    }
    // v3+ checks the client software name like Kafka.
    let bad = ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("bad name"))
        .with_client_software_version(StrBytes::from_static_str("1"));
    assert_eq!(
        client.send(3, &bad).await.error_code,
        ResponseError::InvalidRequest.code()
    );
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_versions_at_an_unknown_version_answers_v0_with_the_list() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::start(dir.path(), &[]).await;
    let mut client = Client::connect(broker.local_addr()).await;
    // ApiVersions v99 with a flexible (v2) header and a body the broker cannot know.
    let mut request = header(ApiKey::ApiVersions as i16, 99, 77);
    request.put_u8(0); // header tagged fields
    request.put_slice(b"\x05future\x021\x00");
    client.write(&frame(&request)).await;
    let mut response = client.read_frame().await.expect("answered");
    let header = ResponseHeader::decode(&mut response, 0).unwrap();
    assert_eq!(header.correlation_id, 77);
    let body = ApiVersionsResponse::decode(&mut response, 0).unwrap();
    assert_eq!(body.error_code, ResponseError::UnsupportedVersion.code());
    assert_eq!(body.api_keys.len(), api_versions::all().count());
    // The connection stays usable: the client retries at a version it now knows.
    assert_eq!(
        client
            .send(0, &ApiVersionsRequest::default())
            .await
            .error_code,
        0
    );
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_api_key_unserved_api_and_bad_version_close_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::start(dir.path(), &[]).await;
    let addr = broker.local_addr();
    for (api_key, version) in [
        (999, 0),                      // no such API
        (ApiKey::JoinGroup as i16, 5), // an API Sluice does not serve yet
        (ApiKey::Fetch as i16, 3),     // below the advertised range
        (ApiKey::Metadata as i16, 40), // above it
    ] {
        let mut client = Client::connect(addr).await;
        client.write(&frame(&header(api_key, version, 1))).await;
        assert!(client.closed_by_broker().await, "api {api_key} v{version}");
    }
    still_serving(addr).await;
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frame_closes_without_allocating_and_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::start(dir.path(), &[("socket.request.max.bytes", "1000")]).await;
    let addr = broker.local_addr();
    let mut other = Client::connect(addr).await;
    let mut client = Client::connect(addr).await;
    // Claims 2 GiB; only the size is sent.
    client.write(&i32::MAX.to_be_bytes()).await;
    assert!(client.closed_by_broker().await);
    // Just over the limit, with the body sent.
    let mut client = Client::connect(addr).await;
    client.write(&frame(&vec![0u8; 1001])).await;
    assert!(client.closed_by_broker().await);
    // Negative and too-small sizes.
    for size in [-1i32, 0, 3] {
        let mut client = Client::connect(addr).await;
        client.write(&size.to_be_bytes()).await;
        assert!(client.closed_by_broker().await, "size {size}");
    }
    // An open connection is unaffected, and so are new ones.
    assert_eq!(
        other
            .send(1, &MetadataRequest::default())
            .await
            .brokers
            .len(),
        1
    );
    still_serving(addr).await;
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_truncated_requests_close_only_their_connection() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::start(dir.path(), &[]).await;
    let addr = broker.local_addr();
    let mut client = Client::connect(addr).await;
    client.create_topic("keep", 1, &[]).await;
    client.produce("keep", 0, batch(&[(None, "safe")])).await;

    let mut garbage: Vec<Vec<u8>> = vec![
        b"\x00\x03\x00\x0c\x00\x00\x00\x01garbage!garbage!".to_vec(), // Metadata v12, junk body
        b"\x00\x00\x00\x09\x00\x00\x00\x01\xff\xff".to_vec(),         // Produce v9, truncated
        b"\x00\x01\x00\x0c\x00\x00\x00\x01\x00\x03abc\x00\xff".to_vec(), // Fetch v12, junk
        vec![0xff; 64],
    ];
    // Produce v3 whose records length claims more than the frame holds.
    let mut p = header(0, 3, 1);
    p.put_i16(-1); // transactional id
    p.put_i16(1); // acks
    p.put_i32(1000); // timeout
    p.put_i32(1); // one topic
    p.put_i16(4);
    p.put_slice(b"keep");
    p.put_i32(1); // one partition
    p.put_i32(0);
    p.put_i32(1_000_000); // records length
    p.put_slice(&[1, 2, 3]);
    garbage.push(p.to_vec());
    // Arrays claiming billions of elements in a tiny frame (Metadata v0 and v9).
    let mut m = header(3, 0, 1);
    m.put_i32(0x7fff_ffff);
    garbage.push(m.to_vec());
    let mut m = header(3, 9, 1);
    m.put_u8(0); // header tags
    m.put_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]); // compact array of u32::MAX - 1 topics
    garbage.push(m.to_vec());

    for (i, payload) in garbage.iter().enumerate() {
        let mut bad = Client::connect(addr).await;
        bad.write(&frame(payload)).await;
        assert!(bad.closed_by_broker().await, "garbage #{i}");
    }
    // The stored data is untouched and the broker serves on.
    assert_eq!(client.fetch("keep", 0, 0).await.high_watermark, 1);
    still_serving(addr).await;
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_closes_the_longest_idle_to_admit_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::start(dir.path(), &[("max.connections", "2")]).await;
    let addr = broker.local_addr();
    // a is idle; b is busy: half of its second request is sent.
    let mut a = Client::connect(addr).await;
    let mut b = Client::connect(addr).await;
    a.send(1, &MetadataRequest::default()).await;
    b.send(1, &MetadataRequest::default()).await;
    // (A reply is counted as done just after it is written: wait for that too.)
    let limits = broker.state().limits.clone();
    common::wait_until("a and b answered", || limits.busy_count() == 0).await;
    let (b_id, b_request) = b.encode(1, &MetadataRequest::default());
    b.write(&b_request[..3]).await;
    common::wait_until("the broker sees b half-sent", || limits.busy_count() == 1).await;

    // At the cap, a new client is served at once: the idle a makes room, the busy b stays.
    let mut c = Client::connect(addr).await;
    c.send(1, &MetadataRequest::default()).await;
    assert!(
        a.closed_by_broker().await,
        "the longest-idle connection was closed"
    );

    // With every connection busy (c half-sends too), a new one waits...
    let (_, c_request) = c.encode(1, &MetadataRequest::default());
    common::wait_until("c answered", || limits.busy_count() == 1).await;
    c.write(&c_request[..5]).await;
    common::wait_until("the broker sees c half-sent", || limits.busy_count() == 2).await;
    let mut d = Client::connect(addr).await;
    let (d_id, d_request) = d.encode(1, &MetadataRequest::default());
    d.write(&d_request).await;
    let waiting = tokio::spawn(async move {
        let frame = d.read_frame().await.unwrap();
        Client::decode::<MetadataRequest>(1, d_id, frame)
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "no idle connection to close: d waits"
    );
    // ...until one goes idle: b finishes its request, is answered, then makes room.
    b.write(&b_request[3..]).await;
    let frame = b
        .read_frame()
        .await
        .expect("b is answered before it is closed");
    Client::decode::<MetadataRequest>(1, b_id, frame);
    let response = waiting.await.unwrap();
    assert_eq!(response.brokers.len(), 1);
    assert!(b.closed_by_broker().await);
    drop(c);
    broker.shutdown().await.unwrap();
}
