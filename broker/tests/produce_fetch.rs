//! Produce and Fetch over the wire: acks 0/1/all, byte-identical round trips for every
//! codec, long polls, KIP-74 limits, topic ids, and the refusals Kafka gives.

mod common;

use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use common::{batch, batch_with, name, Client};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiVersionsRequest, DescribeConfigsRequest, FetchRequest, FetchResponse,
    IncrementalAlterConfigsRequest, MetadataRequest, ProduceRequest,
};
use kafka_protocol::protocol::StrBytes;
use sluice_storage::batch::{BatchBuilder, Compression, Records};

/// A fetched batch equals the produced one except the base offset and leader epoch the
/// broker assigns.
fn assert_same_batch(fetched: &[u8], produced: &[u8], base_offset: i64) {
    assert_eq!(fetched.len(), produced.len());
    assert_eq!(&fetched[..8], &base_offset.to_be_bytes(), "base offset");
    assert_eq!(&fetched[8..12], &produced[8..12], "length");
    assert_eq!(&fetched[12..16], &0i32.to_be_bytes(), "leader epoch 0");
    assert_eq!(
        &fetched[16..],
        &produced[16..],
        "everything else byte for byte"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_and_fetch_round_trip_every_codec() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::start(dir.path(), &[]).await;
    let mut client = Client::connect(broker.local_addr()).await;
    assert_eq!(
        client.create_topic("codecs", 1, &[]).await.topics[0].error_code,
        0
    );
    let mut produced = Vec::new();
    let mut offset = 0;
    for codec in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let records = batch_with(
            codec,
            1_700_000_000_000,
            &[
                (Some("k1"), "v1"),
                (None, "v2"),
                (Some("k3"), &"x".repeat(2000)),
            ],
        );
        let (error, base) = client.produce("codecs", 0, records.clone()).await;
        assert_eq!(error, 0, "{codec:?}");
        assert_eq!(base, offset);
        produced.push((records, base));
        offset += 3;
    }
    let data = client.fetch("codecs", 0, 0).await;
    assert_eq!(data.error_code, 0);
    assert_eq!(data.high_watermark, 15);
    assert_eq!(data.last_stable_offset, 15);
    assert_eq!(data.log_start_offset, 0);
    let fetched = data.records.unwrap();
    let mut at = 0;
    for (records, base) in &produced {
        assert_same_batch(&fetched[at..at + records.len()], records, *base);
        let decoded: Vec<_> = Records::decode(fetched.slice(at..at + records.len()))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(decoded.len(), 3);
        assert_eq!(decoded[0].offset, *base);
        assert_eq!(decoded[0].key.as_deref(), Some(&b"k1"[..]));
        assert_eq!(decoded[2].value.as_deref().map(|v| v.len()), Some(2000));
        at += records.len();
    }
    assert_eq!(at, fetched.len());
    broker.shutdown().await.unwrap();
}

/// The first batch a fetch from `offset` returns, as stored.
async fn first_stored_batch(client: &mut Client, topic: &str, offset: i64) -> Bytes {
    let data = client.fetch(topic, 0, offset).await;
    let bytes = data.records.unwrap();
    let first = sluice_storage::batch::batches(&bytes)
        .next()
        .unwrap()
        .unwrap();
    Bytes::copy_from_slice(first)
}

/// compression.type naming a codec: batches in another codec are stored recompressed,
/// records unchanged; an idempotent retry of a recompressed batch is still a duplicate.
/// A batch already in the codec is stored byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_with_a_codec_store_batches_recompressed() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::start(dir.path(), &[]).await;
    let mut client = Client::connect(broker.local_addr()).await;
    client
        .create_topic(
            "zstd",
            1,
            &[
                ("compression.type", "zstd"),
                ("compression.zstd.level", "9"),
            ],
        )
        .await;
    client
        .create_topic("plain", 1, &[("compression.type", "uncompressed")])
        .await;
    let value = "abcdefgh".repeat(500);
    let records = |codec, sequence| {
        let mut builder = BatchBuilder::new(codec).producer(5, 0, sequence);
        builder.push(1_700_000_000_000, Some(b"k1"), Some(value.as_bytes()), &[]);
        builder.push(
            1_700_000_000_001,
            None,
            Some(b"v2"),
            &[("h", Some(&b"x"[..]))],
        );
        builder.build().unwrap()
    };
    let mut sequence = 0;
    for (codec, base) in [
        (Compression::None, 0),
        (Compression::Gzip, 2),
        (Compression::Zstd, 4),
    ] {
        let sent = records(codec, sequence);
        assert_eq!(client.produce("zstd", 0, sent.clone()).await, (0, base));
        let batch = first_stored_batch(&mut client, "zstd", base).await;
        let header = sluice_storage::batch::validate_stored_batch(&batch).unwrap();
        assert_eq!(
            header.compression().unwrap(),
            Compression::Zstd,
            "{codec:?}"
        );
        assert_eq!(
            (header.producer_id(), header.base_sequence()),
            (5, sequence)
        );
        let decoded: Vec<_> = Records::decode(batch.clone())
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let original: Vec<_> = Records::decode(sent.clone())
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(decoded.len(), 2);
        for (stored, sent) in decoded.iter().zip(&original) {
            assert_eq!(
                (&stored.key, &stored.value, &stored.headers),
                (&sent.key, &sent.value, &sent.headers)
            );
            assert_eq!(stored.timestamp, sent.timestamp);
            assert_eq!(stored.offset, base + sent.offset);
        }
        if codec == Compression::Zstd {
            assert_same_batch(&batch, &sent, base);
        } else {
            // The retry of a converted batch is recognised: the first offsets, nothing added.
            assert_eq!(client.produce("zstd", 0, sent).await, (0, base));
        }
        sequence += 2;
    }
    assert_eq!(client.fetch("zstd", 0, 0).await.high_watermark, 6);
    // To uncompressed: the records are stored plain, so the batch grows.
    let sent = records(Compression::Lz4, 0);
    assert_eq!(client.produce("plain", 0, sent.clone()).await, (0, 0));
    let batch = first_stored_batch(&mut client, "plain", 0).await;
    let header = sluice_storage::batch::validate_stored_batch(&batch).unwrap();
    assert_eq!(header.compression().unwrap(), Compression::None);
    assert!(batch.len() > sent.len());
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_zero_sends_no_response_and_closes_on_error() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::start(dir.path(), &[]).await;
    let mut client = Client::connect(broker.local_addr()).await;
    client.create_topic("t", 1, &[]).await;
    // acks=0 then ApiVersions: the next frame answers the ApiVersions request.
    let (_, produce) = client.encode(
        9,
        &Client::produce_request("t", 0, 0, batch(&[(None, "a")])),
    );
    let (id, versions) = client.encode(2, &ApiVersionsRequest::default());
    let mut both = produce.to_vec();
    both.extend_from_slice(&versions);
    client.write(&both).await;
    let frame = client.read_frame().await.unwrap();
    let response = Client::decode::<ApiVersionsRequest>(2, id, frame);
    assert_eq!(response.error_code, 0);
    assert_eq!(client.fetch("t", 0, 0).await.high_watermark, 1);

    // acks=0 to an unknown topic: no response can carry the error, so Kafka closes.
    let (_, bad) = client.encode(
        9,
        &Client::produce_request("nope", 0, 0, batch(&[(None, "a")])),
    );
    client.write(&bad).await;
    assert!(client.closed_by_broker().await);
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_all_with_flush_policy_always_answers_after_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::start(dir.path(), &[("log.flush.policy", "always")]).await;
    let mut client = Client::connect(broker.local_addr()).await;
    client.create_topic("durable", 1, &[]).await;
    for i in 0..5 {
        let response = client
            .send(
                9,
                &Client::produce_request("durable", 0, -1, batch(&[(None, "a"), (None, "b")])),
            )
            .await;
        let p = &response.responses[0].partition_responses[0];
        assert_eq!(p.error_code, 0);
        assert_eq!(p.base_offset, i * 2);
        let log = &broker
            .state()
            .topics
            .get("durable")
            .unwrap()
            .partition(0)
            .unwrap()
            .log;
        assert!(
            log.durable_offset() >= (i + 1) * 2,
            "answered only once durable"
        );
    }
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_is_woken_by_a_produce_and_otherwise_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::start(dir.path(), &[]).await;
    let addr = broker.local_addr();
    let mut producer = Client::connect(addr).await;
    producer.create_topic("poll", 1, &[]).await;

    let mut consumer = Client::connect(addr).await;
    let started = Instant::now();
    let waiting = tokio::spawn(async move {
        let response = consumer
            .send(12, &Client::fetch_request("poll", 0, 0, 15_000, 1))
            .await;
        (response, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "the fetch waits for data");
    let (error, _) = producer
        .produce("poll", 0, batch(&[(None, "wake up")]))
        .await;
    assert_eq!(error, 0);
    let (response, elapsed) = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .unwrap()
        .unwrap();
    assert!(
        elapsed < Duration::from_secs(5),
        "woken by the append, not the deadline"
    );
    let data = &response.responses[0].partitions[0];
    assert_eq!(data.high_watermark, 1);
    assert!(!data.records.as_ref().unwrap().is_empty());

    // No data: answered empty at the deadline.
    let mut consumer = Client::connect(addr).await;
    let started = Instant::now();
    let response = consumer
        .send(12, &Client::fetch_request("poll", 0, 1, 400, 1))
        .await;
    assert!(started.elapsed() >= Duration::from_millis(390));
    assert!(response.responses[0].partitions[0]
        .records
        .as_ref()
        .unwrap()
        .is_empty());
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_polls_are_capped_by_fetch_max_wait_ms() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::start(dir.path(), &[("fetch.max.wait.ms", "600")]).await;
    let mut client = Client::connect(broker.local_addr()).await;
    client.create_topic("capped", 1, &[]).await;
    // The wait the probe sent: 8,389,108 ms (2.3 hours), with no data to come.
    let started = Instant::now();
    let response = tokio::time::timeout(
        Duration::from_secs(10),
        client.send(12, &Client::fetch_request("capped", 0, 0, 8_389_108, 1)),
    )
    .await
    .expect("answered at the cap, not after the asked wait");
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(590), "{elapsed:?}");
    let data = &response.responses[0].partitions[0];
    assert_eq!(data.error_code, 0);
    assert!(data.records.as_ref().unwrap().is_empty());
    // A shorter wait than the cap is honoured as asked.
    let started = Instant::now();
    client
        .send(12, &Client::fetch_request("capped", 0, 0, 100, 1))
        .await;
    assert!(started.elapsed() < Duration::from_millis(590));
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_limits_follow_kip_74() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::start(dir.path(), &[]).await;
    let mut client = Client::connect(broker.local_addr()).await;
    client.create_topic("big", 2, &[]).await;
    let value = "v".repeat(10_000);
    let mut sizes = Vec::new();
    for p in 0..2 {
        for _ in 0..3 {
            let records = batch(&[(None, &value)]);
            sizes.push(records.len());
            assert_eq!(client.produce("big", p, records).await.0, 0);
        }
    }
    let one = sizes[0];
    let fetch = |partition_max: i32, max_bytes: i32| {
        FetchRequest::default()
            .with_max_bytes(max_bytes)
            .with_session_epoch(-1)
            .with_topics(vec![FetchTopic::default()
                .with_topic(name("big"))
                .with_partitions(
                    (0..2)
                        .map(|p| {
                            FetchPartition::default()
                                .with_partition(p)
                                .with_fetch_offset(0)
                                .with_partition_max_bytes(partition_max)
                        })
                        .collect(),
                )])
    };
    let lens = |r: &kafka_protocol::messages::FetchResponse| -> Vec<usize> {
        r.responses[0]
            .partitions
            .iter()
            .map(|p| p.records.as_ref().unwrap().len())
            .collect()
    };
    // partition_max_bytes below one batch: the first partition still gets its first
    // batch whole; the second gets nothing (it is not the first non-empty one).
    let r = client.send(12, &fetch(100, 50_000_000)).await;
    assert_eq!(lens(&r), vec![one, 0]);
    // Room for two batches per partition.
    let r = client
        .send(12, &fetch((2 * one + 10) as i32, 50_000_000))
        .await;
    assert_eq!(lens(&r), vec![2 * one, 2 * one]);
    // Response max_bytes caps the total: one batch overall, whole.
    let r = client.send(12, &fetch(1_000_000, 10)).await;
    assert_eq!(lens(&r), vec![one, 0]);
    // max_bytes for 3 batches: partition 0 takes 2 (its limit), partition 1 one.
    let r = client
        .send(12, &fetch((2 * one + 10) as i32, (3 * one + 10) as i32))
        .await;
    assert_eq!(lens(&r), vec![2 * one, one]);
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_by_topic_id_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::start(dir.path(), &[]).await;
    let mut client = Client::connect(broker.local_addr()).await;
    let created = client.create_topic("ids", 1, &[]).await;
    let id = created.topics[0].topic_id;
    assert!(!id.is_nil());
    let metadata = client
        .send(
            12,
            &MetadataRequest::default().with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(name("ids")))
            ])),
        )
        .await;
    assert_eq!(metadata.topics[0].topic_id, id);
    client.produce("ids", 0, batch(&[(None, "a")])).await;

    for version in [13, 15, 16, 17, 18] {
        let request = |topic_id| {
            FetchRequest::default()
                .with_max_bytes(1 << 20)
                .with_session_epoch(-1)
                .with_topics(vec![FetchTopic::default()
                    .with_topic_id(topic_id)
                    .with_partitions(vec![FetchPartition::default()
                        .with_partition(0)
                        .with_partition_max_bytes(1 << 20)])])
        };
        let r = client.send(version, &request(id)).await;
        assert_eq!(r.responses[0].topic_id, id);
        assert_eq!(r.responses[0].partitions[0].error_code, 0, "v{version}");
        assert_eq!(r.responses[0].partitions[0].high_watermark, 1);
        let r = client.send(version, &request(uuid::Uuid::new_v4())).await;
        assert_eq!(
            r.responses[0].partitions[0].error_code,
            ResponseError::UnknownTopicId.code()
        );
    }
    // By name: unknown topic, unknown partition, offset out of range.
    let data = client.fetch("nope", 0, 0).await;
    assert_eq!(
        data.error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );
    let data = client.fetch("ids", 7, 0).await;
    assert_eq!(
        data.error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );
    let data = client.fetch("ids", 0, 99).await;
    assert_eq!(data.error_code, ResponseError::OffsetOutOfRange.code());
    assert_eq!(data.high_watermark, -1);
    // Every Fetch version decodes.
    for version in 4..=18 {
        let mut request = Client::fetch_request("ids", 0, 0, 0, 0);
        if version >= 13 {
            request.topics[0].topic_id = id;
        }
        let r = client.send(version, &request).await;
        assert_eq!(r.responses[0].partitions[0].error_code, 0, "v{version}");
    }
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_batches_are_refused_and_nothing_is_appended() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::start(dir.path(), &[]).await;
    let mut client = Client::connect(broker.local_addr()).await;
    client
        .create_topic("strict", 1, &[("max.message.bytes", "5000")])
        .await;
    assert_eq!(
        client.produce("strict", 0, batch(&[(None, "ok")])).await,
        (0, 0)
    );

    let produce_error = |response: kafka_protocol::messages::ProduceResponse| {
        let p = &response.responses[0].partition_responses[0];
        (p.error_code, p.base_offset)
    };
    // CRC flipped: CORRUPT_MESSAGE.
    let mut corrupt = BytesMut::from(&batch(&[(None, "hello")])[..]);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    let (error, base) = client.produce("strict", 0, corrupt.freeze()).await;
    assert_eq!(error, ResponseError::CorruptMessage.code());
    assert_eq!(base, -1);
    // Truncated batch.
    let truncated = batch(&[(None, "hello")]).slice(..30);
    assert_eq!(
        client.produce("strict", 0, truncated).await.0,
        ResponseError::CorruptMessage.code()
    );
    // Magic 1 (old message format): INVALID_RECORD, as Kafka 4.x.
    let mut old = BytesMut::from(&batch(&[(None, "hello")])[..]);
    old[16] = 1;
    assert_eq!(
        client.produce("strict", 0, old.freeze()).await.0,
        ResponseError::InvalidRecord.code()
    );
    // Two batches in one partition: INVALID_RECORD.
    let mut two = BytesMut::new();
    two.put_slice(&batch(&[(None, "a")]));
    two.put_slice(&batch(&[(None, "b")]));
    assert_eq!(
        client.produce("strict", 0, two.freeze()).await.0,
        ResponseError::InvalidRecord.code()
    );
    // Too large for the topic's max.message.bytes.
    let big = batch(&[(None, &"x".repeat(6000))]);
    assert_eq!(
        client.produce("strict", 0, big).await.0,
        ResponseError::MessageTooLarge.code()
    );
    // zstd before produce v7.
    let zstd = batch_with(Compression::Zstd, 1, &[(None, "z")]);
    let r = client
        .send(6, &Client::produce_request("strict", 0, 1, zstd))
        .await;
    assert_eq!(
        produce_error(r).0,
        ResponseError::UnsupportedCompressionType.code()
    );
    // Empty records, unknown topic / partition, bad acks.
    let r = client
        .send(9, &Client::produce_request("strict", 0, 1, Bytes::new()))
        .await;
    assert_eq!(produce_error(r).0, ResponseError::InvalidRecord.code());
    assert_eq!(
        client.produce("missing", 0, batch(&[(None, "a")])).await.0,
        ResponseError::UnknownTopicOrPartition.code()
    );
    assert_eq!(
        client.produce("strict", 3, batch(&[(None, "a")])).await.0,
        ResponseError::UnknownTopicOrPartition.code()
    );
    let r = client
        .send(
            9,
            &Client::produce_request("strict", 0, 2, batch(&[(None, "a")])),
        )
        .await;
    assert_eq!(
        produce_error(r).0,
        ResponseError::InvalidRequiredAcks.code()
    );

    // Nothing of the refused batches was appended.
    let data = client.fetch("strict", 0, 0).await;
    assert_eq!(data.high_watermark, 1);
    assert_eq!(
        client.produce("strict", 0, batch(&[(None, "next")])).await,
        (0, 1)
    );
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::start(dir.path(), &[]).await;
    let mut client = Client::connect(broker.local_addr()).await;
    client.create_topic("pipe", 1, &[]).await;
    let mut all = Vec::new();
    let mut ids = Vec::new();
    for i in 0..200 {
        let (id, frame) = if i % 3 == 2 {
            client.encode(12, &Client::fetch_request("pipe", 0, 0, 0, 0))
        } else {
            client.encode(
                9,
                &Client::produce_request("pipe", 0, 1, batch(&[(None, "p")])),
            )
        };
        all.extend_from_slice(&frame);
        ids.push((i, id));
    }
    client.write(&all).await;
    let mut expected_offset = 0;
    for (i, id) in ids {
        let frame = client.read_frame().await.unwrap();
        if i % 3 == 2 {
            let r = Client::decode::<FetchRequest>(12, id, frame);
            assert_eq!(
                r.responses[0].partitions[0].high_watermark, expected_offset,
                "fetch {i} sees every earlier produce"
            );
        } else {
            let r = Client::decode::<ProduceRequest>(9, id, frame);
            assert_eq!(
                r.responses[0].partition_responses[0].base_offset,
                expected_offset
            );
            expected_offset += 1;
        }
    }
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_every_version_including_topic_ids() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::start(dir.path(), &[]).await;
    let mut client = Client::connect(broker.local_addr()).await;
    let id = client.create_topic("versions", 1, &[]).await.topics[0].topic_id;
    for (next, version) in (3..=13).enumerate() {
        let next = next as i64;
        let mut request = Client::produce_request("versions", 0, 1, batch(&[(None, "v")]));
        if version >= 13 {
            request.topic_data[0].topic_id = id;
            request.topic_data[0].name = Default::default();
        }
        let r = client.send(version, &request).await;
        let p = &r.responses[0].partition_responses[0];
        assert_eq!((p.error_code, p.base_offset), (0, next), "v{version}");
    }
    let mut request = Client::produce_request("versions", 0, 1, batch(&[(None, "v")]));
    request.topic_data[0].topic_id = uuid::Uuid::new_v4();
    let r = client.send(13, &request).await;
    assert_eq!(
        r.responses[0].partition_responses[0].error_code,
        ResponseError::UnknownTopicId.code()
    );
    broker.shutdown().await.unwrap();
}

/// One record with a null key: `value_length` is written as the value's length prefix
/// (the true length, or a lie) and `offset_delta` as its offset delta.
fn raw_record(offset_delta: i32, value: &[u8], value_length: i32) -> Vec<u8> {
    use sluice_storage::batch::varint::{encode_varint, encode_varlong};
    let mut body = vec![0u8];
    encode_varlong(offset_delta as i64, &mut body);
    encode_varint(offset_delta, &mut body);
    encode_varint(-1, &mut body);
    encode_varint(value_length, &mut body);
    body.extend_from_slice(value);
    encode_varint(0, &mut body);
    let mut record = Vec::new();
    encode_varint(body.len() as i32, &mut record);
    record.extend_from_slice(&body);
    record
}

/// A batch header announcing `count` records before `payload`, with a valid CRC-32C.
fn raw_batch(payload: &[u8], count: i32, attributes: i16) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i64(0); // base offset
    b.put_i32((49 + payload.len()) as i32); // length
    b.put_i32(-1); // partition leader epoch
    b.put_i8(2); // magic
    b.put_u32(0); // crc, below
    b.put_i16(attributes);
    b.put_i32(count - 1); // last offset delta
    b.put_i64(1_700_000_000_000); // base timestamp
    b.put_i64(1_700_000_000_000 + count as i64 - 1); // max timestamp
    b.put_i64(-1); // producer id
    b.put_i16(-1); // producer epoch
    b.put_i32(-1); // base sequence
    b.put_i32(count);
    b.put_slice(payload);
    let crc = sluice_storage::batch::compute_crc(&b);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b.freeze()
}

/// Issue 14, item 1: batches A-D, each with a valid CRC, were answered 0 and stored,
/// breaking the partition for every consumer. Each is refused with INVALID_RECORD and a
/// message saying what is wrong; nothing is stored, and good produces go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_with_broken_records_are_refused_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::start(dir.path(), &[]).await;
    let mut client = Client::connect(broker.local_addr()).await;
    client.create_topic("records", 1, &[]).await;
    let good = [
        raw_record(0, b"v0", 2),
        raw_record(1, b"v1", 2),
        raw_record(2, b"v2", 2),
    ]
    .concat();
    assert_eq!(
        client.produce("records", 0, raw_batch(&good, 3, 0)).await,
        (0, 0)
    );

    // A: the middle record's value length runs past the end of its record.
    let a = [
        raw_record(0, b"v0", 2),
        raw_record(1, b"v1", 9),
        raw_record(2, b"v2", 2),
    ]
    .concat();
    // B: the attributes say gzip, the payload is random bytes.
    let b: Vec<u8> = (0u32..300)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    // C: every record's offset delta is 0.
    let c = [
        raw_record(0, b"v0", 2),
        raw_record(0, b"v1", 2),
        raw_record(0, b"v2", 2),
    ]
    .concat();
    // D: the header says 3 records, the payload holds 1.
    let d = raw_record(0, b"v0", 2);
    let cases = [
        ("A", raw_batch(&a, 3, 0), "record 1"),
        ("B", raw_batch(&b, 3, 1), "gzip"),
        ("C", raw_batch(&c, 3, 0), "offset delta"),
        ("D", raw_batch(&d, 3, 0), "header says 3 records"),
    ];
    for (name, bytes, says) in cases {
        // Each of them passes the CRC check: it is the records that are wrong.
        sluice_storage::batch::validate_stored_batch(&bytes).unwrap();
        let response = client
            .send(9, &Client::produce_request("records", 0, 1, bytes))
            .await;
        let p = &response.responses[0].partition_responses[0];
        assert_eq!(p.error_code, ResponseError::InvalidRecord.code(), "{name}");
        assert_eq!(p.base_offset, -1, "{name}");
        let message = p.error_message.as_ref().map(|m| m.to_string());
        assert!(
            message.as_deref().is_some_and(|m| m.contains(says)),
            "{name}: {message:?}"
        );
    }
    // The same broken records inside every codec are refused too.
    for codec in [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        for area in [&a, &c] {
            let bytes = raw_batch(&codec.compress(area).unwrap(), 3, codec.id() as i16);
            assert_eq!(
                client.produce("records", 0, bytes).await,
                (ResponseError::InvalidRecord.code(), -1),
                "{codec:?}"
            );
        }
    }

    // Nothing was stored: the next good batch gets offset 3, and a consumer reads all six
    // records in order.
    assert_eq!(
        client.produce("records", 0, raw_batch(&good, 3, 0)).await,
        (0, 3)
    );
    let data = client.fetch("records", 0, 0).await;
    assert_eq!(data.high_watermark, 6);
    let mut offsets = Vec::new();
    for one in sluice_storage::batch::batches(data.records.as_deref().unwrap()) {
        for record in Records::decode(Bytes::copy_from_slice(one.unwrap())).unwrap() {
            offsets.push(record.unwrap().offset);
        }
    }
    assert_eq!(offsets, [0, 1, 2, 3, 4, 5]);
    broker.shutdown().await.unwrap();
}

/// KIP-937: CreateTime timestamps further from the broker's clock than
/// message.timestamp.before/after.max.ms are refused with INVALID_TIMESTAMP, settable per
/// topic and shown by DescribeConfigs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamps_out_of_bounds_are_refused_with_invalid_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::start(dir.path(), &[]).await;
    let mut client = Client::connect(broker.local_addr()).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let hour = 3_600_000;
    // Defaults (Kafka 4.x): up to one hour ahead, any age.
    client.create_topic("defaults", 1, &[]).await;
    let at = |t: i64| batch_with(Compression::Lz4, t, &[(None, "a"), (None, "b")]);
    assert_eq!(client.produce("defaults", 0, at(now)).await, (0, 0));
    assert_eq!(client.produce("defaults", 0, at(0)).await, (0, 2));
    let response = client
        .send(
            9,
            &Client::produce_request("defaults", 0, 1, at(now + 2 * hour)),
        )
        .await;
    let p = &response.responses[0].partition_responses[0];
    assert_eq!(p.error_code, ResponseError::InvalidTimestamp.code());
    let message = p.record_errors[0]
        .batch_index_error_message
        .as_ref()
        .unwrap();
    assert!(message.contains("out of range"), "{message}");
    // A topic bound to the last day, and LogAppendTime topics are not bound at all.
    client
        .create_topic(
            "day",
            1,
            &[
                ("message.timestamp.before.max.ms", "86400000"),
                ("message.timestamp.after.max.ms", "0"),
            ],
        )
        .await;
    assert_eq!(
        client.produce("day", 0, at(now - 2 * 86_400_000)).await.0,
        ResponseError::InvalidTimestamp.code()
    );
    assert_eq!(
        client.produce("day", 0, at(now + hour)).await.0,
        ResponseError::InvalidTimestamp.code()
    );
    assert_eq!(client.produce("day", 0, at(now - hour)).await, (0, 0));
    // Shown by DescribeConfigs like every topic config: the override, and Kafka's default.
    let describe = |topic: &str| {
        DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_string(topic.to_owned()))
            .with_configuration_keys(None)])
    };
    let value_of = |r: &kafka_protocol::messages::DescribeConfigsResponse, key: &str| {
        let c = r.results[0]
            .configs
            .iter()
            .find(|c| c.name.as_str() == key)
            .unwrap_or_else(|| panic!("{key} not described"));
        (c.value.as_ref().unwrap().to_string(), c.config_source)
    };
    let r = client.send(4, &describe("day")).await;
    assert_eq!(
        value_of(&r, "message.timestamp.before.max.ms"),
        ("86400000".to_owned(), 1)
    );
    let r = client.send(4, &describe("defaults")).await;
    assert_eq!(
        value_of(&r, "message.timestamp.after.max.ms"),
        ("3600000".to_owned(), 5)
    );
    assert_eq!(
        value_of(&r, "message.timestamp.before.max.ms"),
        ("9223372036854775807".to_owned(), 5)
    );
    // Altered: three hours ahead are now accepted.
    let alter = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_string("defaults".to_owned()))
            .with_configs(vec![AlterableConfig::default()
                .with_name(StrBytes::from_string(
                    "message.timestamp.after.max.ms".to_owned(),
                ))
                .with_config_operation(0)
                .with_value(Some(StrBytes::from_string("10800000".to_owned())))]),
    ]);
    let r = client.send(1, &alter).await;
    assert_eq!(r.responses[0].error_code, 0);
    assert_eq!(
        client.produce("defaults", 0, at(now + 2 * hour)).await,
        (0, 4)
    );
    client
        .create_topic(
            "appended",
            1,
            &[
                ("message.timestamp.type", "LogAppendTime"),
                ("message.timestamp.after.max.ms", "0"),
            ],
        )
        .await;
    assert_eq!(
        client.produce("appended", 0, at(now + 100 * hour)).await,
        (0, 0)
    );
    broker.shutdown().await.unwrap();
}

/// KIP-467, as Kafka 4.4 answers (asked with kafka-python): records refused for what they
/// hold are named one by one in `record_errors`, with Kafka's messages, so the client
/// fails those records and reports the others as failed by their batch. Nothing of the
/// batch is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_records_are_named_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::start(dir.path(), &[]).await;
    let mut client = Client::connect(broker.local_addr()).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    client
        .create_topic(
            "latest",
            1,
            &[
                ("cleanup.policy", "compact"),
                ("message.timestamp.after.max.ms", "1000"),
            ],
        )
        .await;
    let keyless = |compression| {
        batch_with(
            compression,
            now,
            &[(Some("a"), "1"), (None, "2"), (Some(""), "3"), (None, "4")],
        )
    };
    let missing = "Compacted topic cannot accept message without key in topic partition latest-0";
    for compression in [Compression::None, Compression::Zstd] {
        let response = client
            .send(
                9,
                &Client::produce_request("latest", 0, 1, keyless(compression)),
            )
            .await;
        let p = &response.responses[0].partition_responses[0];
        assert_eq!(p.error_code, ResponseError::InvalidRecord.code());
        assert_eq!((p.base_offset, p.log_start_offset), (-1, 0));
        let named: Vec<_> = p
            .record_errors
            .iter()
            .map(|e| {
                (
                    e.batch_index,
                    e.batch_index_error_message.as_ref().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(named, [(1, missing.to_owned()), (3, missing.to_owned())]);
        assert_eq!(
            p.error_message.as_ref().unwrap().as_str(),
            format!(
                "One or more records have been rejected due to 2 record errors in total, and only \
                 showing the first three errors at most: [RecordError(batchIndex=1, message='{missing}'), \
                 RecordError(batchIndex=3, message='{missing}')]"
            )
        );
    }
    // A keyless record and one too new: INVALID_TIMESTAMP, both named.
    let mut mixed = BatchBuilder::new(Compression::Lz4);
    mixed.push(now, Some(b"a"), Some(b"1"), &[]);
    mixed.push(now, None, Some(b"2"), &[]);
    mixed.push(now + 3_600_000, Some(b"c"), Some(b"3"), &[]);
    let mixed = mixed.build().unwrap();
    let response = client
        .send(9, &Client::produce_request("latest", 0, 1, mixed))
        .await;
    let p = &response.responses[0].partition_responses[0];
    assert_eq!(p.error_code, ResponseError::InvalidTimestamp.code());
    assert_eq!(
        p.error_message.as_ref().unwrap().as_str(),
        "One or more records have been rejected due to invalid timestamp"
    );
    let indexes: Vec<_> = p.record_errors.iter().map(|e| e.batch_index).collect();
    assert_eq!(indexes, [1, 2]);
    let late = p.record_errors[1]
        .batch_index_error_message
        .as_ref()
        .unwrap();
    assert!(
        late.starts_with(&format!(
            "Timestamp {} of message with offset 2 is out of range",
            now + 3_600_000
        )),
        "{late}"
    );
    // Produce v7 has no record_errors: the code alone.
    let response = client
        .send(
            7,
            &Client::produce_request("latest", 0, 1, keyless(Compression::None)),
        )
        .await;
    let p = &response.responses[0].partition_responses[0];
    assert_eq!(p.error_code, ResponseError::InvalidRecord.code());
    // Nothing was stored: the first good batch gets offset 0.
    let good = batch_with(
        Compression::None,
        now,
        &[(Some("a"), "1"), (Some("b"), "2")],
    );
    assert_eq!(client.produce("latest", 0, good).await, (0, 0));
    // A topic that is not compacted takes records without keys.
    client.create_topic("plain", 1, &[]).await;
    assert_eq!(
        client.produce("plain", 0, keyless(Compression::None)).await,
        (0, 0)
    );
    broker.shutdown().await.unwrap();
}

/// A consumer's fetch session (KIP-227) over real sockets: the full fetch opens it, an
/// incremental fetch names nothing and gets only the partition that has news, a long
/// poll with no news ends empty, and a wrong epoch or unknown session gets Kafka's error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_sessions_answer_only_the_news() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::start(dir.path(), &[]).await;
    let mut client = Client::connect(broker.local_addr()).await;
    client.create_topic("many", 4, &[]).await;
    let partitions = |offsets: &[(i32, i64)]| {
        offsets
            .iter()
            .map(|&(p, offset)| {
                FetchPartition::default()
                    .with_partition(p)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(1 << 20)
            })
            .collect::<Vec<_>>()
    };
    let fetch = move |session_id: i32, epoch: i32, offsets: &[(i32, i64)], max_wait_ms: i32| {
        let topics = if offsets.is_empty() {
            vec![]
        } else {
            vec![FetchTopic::default()
                .with_topic(name("many"))
                .with_partitions(partitions(offsets))]
        };
        FetchRequest::default()
            .with_max_wait_ms(max_wait_ms)
            .with_min_bytes(1)
            .with_max_bytes(50 << 20)
            .with_session_id(session_id)
            .with_session_epoch(epoch)
            .with_topics(topics)
    };
    let answered = |r: &FetchResponse| -> Vec<(i32, usize)> {
        r.responses
            .iter()
            .flat_map(|t| t.partitions.iter())
            .map(|p| (p.partition_index, p.records.as_ref().map_or(0, |r| r.len())))
            .collect()
    };
    let all = [(0, 0), (1, 0), (2, 0), (3, 0)];
    let full: FetchResponse = client.send(12, &fetch(0, 0, &all, 0)).await;
    assert_eq!(full.error_code, 0);
    let id = full.session_id;
    assert_ne!(id, 0, "a session was created");
    assert_eq!(answered(&full).len(), 4);
    // A record on partition 2: the incremental fetch, naming nothing, gets only it.
    assert_eq!(
        client.produce("many", 2, batch(&[(None, "x")])).await,
        (0, 0)
    );
    let news: FetchResponse = client.send(12, &fetch(id, 1, &[], 1000)).await;
    assert_eq!(news.session_id, id);
    let got = answered(&news);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].0 == 2 && got[0].1 > 0, "{got:?}");
    // Moved on past it: nothing new anywhere, so the long poll ends empty.
    let started = Instant::now();
    let quiet: FetchResponse = client.send(12, &fetch(id, 2, &[(2, 1)], 300)).await;
    assert!(answered(&quiet).is_empty(), "{:?}", answered(&quiet));
    assert!(started.elapsed() >= Duration::from_millis(250));
    // An append during the poll wakes it, with that partition alone.
    let mut producer = Client::connect(broker.local_addr()).await;
    let poll = tokio::spawn(async move {
        let r: FetchResponse = client.send(12, &fetch(id, 3, &[], 5000)).await;
        (client, r)
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        producer.produce("many", 0, batch(&[(None, "y")])).await,
        (0, 0)
    );
    let (mut client, woken) = poll.await.unwrap();
    assert_eq!(
        answered(&woken).iter().map(|p| p.0).collect::<Vec<_>>(),
        [0]
    );
    // Kafka's session errors.
    let stale: FetchResponse = client.send(12, &fetch(id, 3, &[], 0)).await;
    assert_eq!(
        stale.error_code,
        ResponseError::InvalidFetchSessionEpoch.code()
    );
    let unknown: FetchResponse = client.send(12, &fetch(id ^ 1, 1, &[], 0)).await;
    assert_eq!(
        unknown.error_code,
        ResponseError::FetchSessionIdNotFound.code()
    );
    // Epoch -1 closes it: the next incremental fetch finds no session.
    let last: FetchResponse = client.send(12, &fetch(id, -1, &all, 0)).await;
    assert_eq!((last.error_code, last.session_id), (0, 0));
    let gone: FetchResponse = client.send(12, &fetch(id, 4, &[], 0)).await;
    assert_eq!(
        gone.error_code,
        ResponseError::FetchSessionIdNotFound.code()
    );
    broker.shutdown().await.unwrap();
}
