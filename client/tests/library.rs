//! The client library against a real broker (see `common/mod.rs` for which one).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use common::{stored_batches, unique, Broker, LossyProxy};
use sluice_client::admin::{AlterConfigOp, ConfigResource, NewTopic, ResetTo};
use sluice_client::consumer::{Assignor, AutoOffsetReset, ConsumerRecord};
use sluice_client::producer::partitioner::partition_for_key;
use sluice_client::{
    Acks, Admin, Client, ClientConfig, Compression, Consumer, ConsumerConfig, Error, OffsetSpec,
    Producer, ProducerConfig, ProducerRecord, TopicPartition,
};

async fn client(broker: &Broker) -> Client {
    Client::connect(ClientConfig::new(&broker.addr))
        .await
        .expect("connect to the test broker")
}

async fn create_topic(client: &Client, name: &str, partitions: i32) {
    Admin::new(client.clone())
        .create_topics(&[NewTopic {
            partitions: Some(partitions),
            ..NewTopic::new(name)
        }])
        .await
        .expect("create topic");
}

fn producer(client: &Client, acks: Acks, compression: Compression) -> Producer {
    Producer::new(
        client.clone(),
        ProducerConfig {
            acks,
            compression,
            allow_auto_create_topics: false,
            ..ProducerConfig::default()
        },
    )
    .unwrap()
}

fn earliest_consumer(client: &Client, group: Option<String>) -> Consumer {
    Consumer::new(
        client.clone(),
        ConsumerConfig {
            group_id: group,
            auto_offset_reset: AutoOffsetReset::Earliest,
            fetch_max_wait: Duration::from_millis(100),
            ..ConsumerConfig::default()
        },
    )
    .unwrap()
}

/// Polls until `count` records arrived (or panics after 30 s).
async fn poll_count(consumer: &mut Consumer, count: usize) -> Vec<ConsumerRecord> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while out.len() < count {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {count} records arrived",
            out.len()
        );
        out.extend(consumer.poll(Duration::from_millis(500)).await.unwrap());
    }
    out
}

fn all_partitions(topic: &str, count: i32) -> Vec<TopicPartition> {
    (0..count).map(|p| TopicPartition::new(topic, p)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_codec_round_trips_with_keys_headers_and_order() {
    let broker = Broker::start();
    let client = client(&broker).await;
    let topic = unique("codecs");
    create_topic(&client, &topic, 3).await;
    let codecs = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];
    let mut sent = Vec::new();
    for codec in codecs {
        let producer = producer(&client, Acks::All, codec);
        let mut futures = Vec::new();
        for i in 0..200 {
            let key = format!("key-{}", i % 17);
            let value = format!("{} value {i} {}", codec.name(), "x".repeat(i % 50));
            let record = ProducerRecord::new(topic.as_str())
                .key(key.clone())
                .value(value.clone())
                .header("codec", codec.name())
                .header("i", i.to_string());
            futures.push(producer.send(record).await.unwrap());
            sent.push((key, value));
        }
        producer.flush().await.unwrap();
        let mut last: HashMap<i32, i64> = HashMap::new();
        for future in futures {
            let meta = future.await.unwrap();
            assert!(meta.offset >= 0);
            if let Some(previous) = last.insert(meta.partition, meta.offset) {
                assert!(meta.offset > previous, "offsets grow per partition");
            }
        }
        producer.close().await.unwrap();
    }

    let mut consumer = earliest_consumer(&client, None);
    consumer.assign(all_partitions(&topic, 3)).await.unwrap();
    let records = poll_count(&mut consumer, sent.len()).await;
    assert_eq!(records.len(), sent.len());
    // Keyed records land where Kafka's partitioner puts them, in send order per key.
    let mut per_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in &records {
        let key = String::from_utf8(r.key.as_deref().unwrap().to_vec()).unwrap();
        assert_eq!(r.partition, partition_for_key(key.as_bytes(), 3));
        assert_eq!(r.headers.len(), 2);
        assert_eq!(r.headers[0].key, "codec");
        per_key
            .entry(key)
            .or_default()
            .push(String::from_utf8(r.value.as_deref().unwrap().to_vec()).unwrap());
    }
    let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (key, value) in sent {
        expected.entry(key).or_default().push(value);
    }
    assert_eq!(per_key, expected);
    consumer.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_none_one_and_all() {
    let broker = Broker::start();
    let client = client(&broker).await;
    let topic = unique("acks");
    create_topic(&client, &topic, 1).await;
    for (acks, expect_offsets) in [(Acks::None, false), (Acks::Leader, true), (Acks::All, true)] {
        let producer = producer(&client, acks, Compression::None);
        let mut futures = Vec::new();
        for i in 0..50 {
            let record = ProducerRecord::new(topic.as_str()).value(format!("{acks:?} {i}"));
            futures.push(producer.send(record).await.unwrap());
        }
        for future in futures {
            let meta = future.await.unwrap();
            assert_eq!(meta.offset >= 0, expect_offsets, "{acks:?}");
            assert_eq!(meta.partition, 0);
        }
        producer.close().await.unwrap();
    }
    let mut consumer = earliest_consumer(&client, None);
    consumer.assign(all_partitions(&topic, 1)).await.unwrap();
    let records = poll_count(&mut consumer, 150).await;
    let offsets: Vec<i64> = records.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, (0..150).collect::<Vec<i64>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unkeyed_records_stick_to_a_partition_per_batch() {
    let broker = Broker::start();
    let client = client(&broker).await;
    let topic = unique("sticky");
    create_topic(&client, &topic, 4).await;
    let producer = Producer::new(
        client.clone(),
        ProducerConfig {
            batch_size: 1000,
            linger: Duration::from_millis(50),
            ..ProducerConfig::default()
        },
    )
    .unwrap();
    let mut partitions = Vec::new();
    for i in 0..400 {
        let future = producer
            .send(ProducerRecord::new(topic.as_str()).value(format!("{i:040}")))
            .await
            .unwrap();
        partitions.push(future.partition());
    }
    producer.close().await.unwrap();
    // ~60 bytes per record: the partition changes every ~16 records, not every record.
    let switches = partitions.windows(2).filter(|w| w[0] != w[1]).count();
    assert!(
        (5..=60).contains(&switches),
        "{switches} partition switches"
    );
    let used: std::collections::BTreeSet<i32> = partitions.iter().copied().collect();
    assert!(used.len() >= 2, "spread over partitions: {used:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seek_by_offset_time_and_pause_resume() {
    let broker = Broker::start();
    let client = client(&broker).await;
    let topic = unique("seek");
    create_topic(&client, &topic, 2).await;
    let producer = producer(&client, Acks::All, Compression::Lz4);
    let base = 1_700_000_000_000i64;
    for p in 0..2 {
        for i in 0..100i64 {
            producer
                .send(
                    ProducerRecord::new(topic.as_str())
                        .partition(p)
                        .value(format!("p{p} r{i}"))
                        .timestamp(base + i * 1000),
                )
                .await
                .unwrap();
        }
    }
    producer.close().await.unwrap();

    let tp0 = TopicPartition::new(&topic, 0);
    let tp1 = TopicPartition::new(&topic, 1);
    let mut consumer = earliest_consumer(&client, None);
    consumer.assign(vec![tp0.clone()]).await.unwrap();
    consumer
        .seek_to(
            std::slice::from_ref(&tp0),
            OffsetSpec::Timestamp(base + 42_500),
        )
        .await
        .unwrap();
    assert_eq!(consumer.position(&tp0), Some(43));
    let first = poll_count(&mut consumer, 1).await;
    assert_eq!(first[0].offset, 43);
    assert_eq!(first[0].timestamp, base + 43_000);

    consumer.seek(&tp0, 7).unwrap();
    let records = poll_count(&mut consumer, 1).await;
    assert_eq!(records[0].offset, 7);
    assert_eq!(records[0].value.as_deref(), Some(&b"p0 r7"[..]));

    // A time after the last record means the end of the log.
    consumer
        .seek_to(
            std::slice::from_ref(&tp0),
            OffsetSpec::Timestamp(base + 10_000_000),
        )
        .await
        .unwrap();
    assert_eq!(consumer.position(&tp0), Some(100));
    consumer
        .seek_to(std::slice::from_ref(&tp0), OffsetSpec::Latest)
        .await
        .unwrap();
    assert!(consumer
        .poll(Duration::from_millis(300))
        .await
        .unwrap()
        .is_empty());

    // Pause one of two partitions: only the other one's records come.
    consumer
        .assign(vec![tp0.clone(), tp1.clone()])
        .await
        .unwrap();
    consumer
        .seek_to(&[tp0.clone(), tp1.clone()], OffsetSpec::Earliest)
        .await
        .unwrap();
    consumer.pause(std::slice::from_ref(&tp0));
    assert_eq!(consumer.paused(), vec![tp0.clone()]);
    let records = poll_count(&mut consumer, 100).await;
    assert!(records.iter().all(|r| r.partition == 1));
    consumer.resume(std::slice::from_ref(&tp0));
    let records = poll_count(&mut consumer, 100).await;
    assert!(records.iter().all(|r| r.partition == 0));
    let offsets: Vec<i64> = records.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, (0..100).collect::<Vec<i64>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_records_stream_through_in_order() {
    let broker = Broker::start();
    let client = client(&broker).await;
    let topic = unique("volume");
    create_topic(&client, &topic, 2).await;
    let producer = producer(&client, Acks::Leader, Compression::Zstd);
    let count = 30_000;
    let mut last = None;
    for i in 0..count {
        let f = producer
            .send(
                ProducerRecord::new(topic.as_str())
                    .partition(i % 2)
                    .value(format!("{i}")),
            )
            .await
            .unwrap();
        last = Some(f);
    }
    producer.flush().await.unwrap();
    assert!(last.unwrap().await.unwrap().offset >= 0);
    producer.close().await.unwrap();
    let mut consumer = Consumer::new(
        client.clone(),
        ConsumerConfig {
            auto_offset_reset: AutoOffsetReset::Earliest,
            max_partition_fetch_bytes: 64 * 1024,
            ..ConsumerConfig::default()
        },
    )
    .unwrap();
    consumer.assign(all_partitions(&topic, 2)).await.unwrap();
    let records = poll_count(&mut consumer, count as usize).await;
    for p in 0..2 {
        let values: Vec<i32> = records
            .iter()
            .filter(|r| r.partition == p)
            .map(|r| {
                std::str::from_utf8(r.value.as_deref().unwrap())
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect();
        let expected: Vec<i32> = (0..count).filter(|i| i % 2 == p).collect();
        assert_eq!(values, expected);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_topic_lifecycle_and_errors() {
    let broker = Broker::start();
    let client = client(&broker).await;
    let admin = Admin::new(client.clone());
    let topic = unique("admin");
    admin
        .create_topics(&[NewTopic {
            partitions: Some(2),
            configs: vec![("retention.ms".into(), "3600000".into())],
            ..NewTopic::new(&topic)
        }])
        .await
        .unwrap();
    let err = admin
        .create_topics(&[NewTopic::new(&topic)])
        .await
        .unwrap_err();
    assert_eq!(
        err.kafka_error(),
        Some(kafka_protocol::error::ResponseError::TopicAlreadyExists),
        "{err}"
    );
    assert!(admin
        .list_topics(false)
        .await
        .unwrap()
        .iter()
        .any(|t| t.name == topic && t.partitions == 2));

    let producer = producer(&client, Acks::All, Compression::None);
    for i in 0..10 {
        producer
            .send(
                ProducerRecord::new(topic.as_str())
                    .partition(i % 2)
                    .value("0123456789"),
            )
            .await
            .unwrap();
    }
    producer.close().await.unwrap();
    let description = admin.describe_topic(&topic).await.unwrap();
    assert_eq!(description.partitions.len(), 2);
    for p in &description.partitions {
        assert_eq!((p.start_offset, p.end_offset), (0, 5));
        assert!(p.leader.is_some());
        if description.sizes_known {
            assert!(p.size_bytes.unwrap() > 0);
        }
    }
    let retention = description
        .configs
        .iter()
        .find(|c| c.name == "retention.ms")
        .unwrap();
    assert_eq!(retention.value.as_deref(), Some("3600000"));

    admin.create_partitions(&topic, 3).await.unwrap();
    admin
        .alter_configs(
            &ConfigResource::Topic(topic.clone()),
            &[AlterConfigOp::Set("retention.ms".into(), "7200000".into())],
        )
        .await
        .unwrap();
    let description = admin.describe_topic(&topic).await.unwrap();
    assert_eq!(description.partitions.len(), 3);
    let retention = description
        .configs
        .iter()
        .find(|c| c.name == "retention.ms")
        .unwrap();
    assert_eq!(retention.value.as_deref(), Some("7200000"));

    admin
        .delete_topics(std::slice::from_ref(&topic))
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match admin.describe_topic(&topic).await {
            Err(Error::UnknownTopic { .. }) => break,
            other if std::time::Instant::now() > deadline => panic!("still there: {other:?}"),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    assert!(matches!(
        admin.delete_topics(std::slice::from_ref(&topic)).await,
        Err(Error::UnknownTopic { .. })
    ));
}

/// The single test broker (node 1) describes itself: one unfenced broker at the address
/// the test connected to, controller 1; the metadata quorum is node 1 alone, or the broker
/// says it has none (until Sluice answers DescribeQuorum). Its partitions are led by node
/// 1 with replicas and ISR `[1]`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_describes_the_cluster_quorum_and_replicas() {
    use kafka_protocol::messages::ApiKey;
    use sluice_client::admin::ClusterSource;

    let broker = Broker::start();
    let client = client(&broker).await;
    let admin = Admin::new(client.clone());
    let (host, port) = broker.addr.rsplit_once(':').unwrap();

    let cluster = admin.describe_cluster().await.unwrap();
    assert_eq!(cluster.brokers.len(), 1, "{cluster:?}");
    let node = &cluster.brokers[0];
    assert_eq!(
        (node.id, node.host.as_str(), node.port.to_string().as_str()),
        (1, host, port),
        "{cluster:?}"
    );
    assert!(!node.fenced);
    assert_eq!(cluster.controller_id, Some(1), "{cluster:?}");
    assert!(cluster.cluster_id.is_some(), "{cluster:?}");
    // DescribeCluster when the broker has it, Metadata otherwise: never a silent mix.
    let connection = client.any_broker().await.unwrap();
    match connection.broker_versions(ApiKey::DescribeCluster) {
        Some((_, max)) => {
            let version = max.min(2);
            assert_eq!(cluster.source, ClusterSource::DescribeCluster { version });
            assert_eq!(cluster.includes_fenced, version >= 2);
        }
        None => {
            assert_eq!(cluster.source, ClusterSource::Metadata);
            assert!(!cluster.includes_fenced);
        }
    }

    match admin.describe_quorum().await {
        Ok(quorum) => {
            assert_eq!(quorum.leader_id, Some(1), "{quorum:?}");
            let voters: Vec<(i32, Option<i64>)> =
                quorum.voters.iter().map(|v| (v.id, v.lag)).collect();
            assert_eq!(voters, [(1, Some(0))], "{quorum:?}");
            assert!(quorum.high_watermark >= 0, "{quorum:?}");
        }
        Err(e) => {
            assert!(e.is_unsupported(), "{e}");
            assert!(connection.broker_versions(ApiKey::DescribeQuorum).is_none());
        }
    }

    let topic = unique("replicas");
    create_topic(&client, &topic, 2).await;
    let description = admin.describe_topic(&topic).await.unwrap();
    assert_eq!(description.partitions.len(), 2);
    for p in &description.partitions {
        assert_eq!(p.leader, Some(1), "{p:?}");
        assert_eq!(p.replicas, [1], "{p:?}");
        assert_eq!(p.isr, [1], "{p:?}");
        assert!(p.offline_replicas.is_empty(), "{p:?}");
        assert!(p.leader_epoch.is_some_and(|e| e >= 0), "{p:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_topics_and_partitions_are_errors() {
    let broker = Broker::start();
    let client = client(&broker).await;
    let missing = unique("missing");
    let producer = producer(&client, Acks::All, Compression::None);
    let err = producer
        .send(ProducerRecord::new(missing.as_str()).value("x"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::UnknownTopic { .. }), "{err:?}");
    let mut consumer = earliest_consumer(&client, None);
    let err = consumer
        .assign(vec![TopicPartition::new(&missing, 0)])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::UnknownTopic { .. }), "{err:?}");

    let topic = unique("one-partition");
    create_topic(&client, &topic, 1).await;
    let err = producer
        .send(ProducerRecord::new(topic.as_str()).partition(5).value("x"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::UnknownPartition { count: 1, .. }),
        "{err:?}"
    );
    let err = consumer
        .assign(vec![TopicPartition::new(&topic, 1)])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::UnknownPartition { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_producer_is_idempotent_by_default() {
    let broker = Broker::start();
    let client = client(&broker).await;
    let topic = unique("idempotent");
    create_topic(&client, &topic, 2).await;
    let producer = Producer::new(
        client.clone(),
        ProducerConfig {
            batch_size: 200, // many batches
            ..ProducerConfig::default()
        },
    )
    .unwrap();
    assert!(producer.is_idempotent());
    let mut futures = Vec::new();
    for i in 0..300 {
        let record = ProducerRecord::new(topic.as_str())
            .partition(i % 2)
            .value(format!("idempotent {i}"));
        futures.push(producer.send(record).await.unwrap());
    }
    for future in futures {
        future.await.unwrap();
    }
    let identity = producer.producer_id().expect("a producer id after sending");
    producer.close().await.unwrap();
    // acks=1 turns idempotence off when it is not asked for explicitly.
    let plain = producer_with(&client, Acks::Leader, None);
    assert!(!plain.is_idempotent());
    plain
        .send(
            ProducerRecord::new(topic.as_str())
                .partition(0)
                .value("plain"),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    plain.close().await.unwrap();

    for partition in 0..2 {
        let batches = stored_batches(&client, &topic, partition).await;
        let (idempotent, rest) = batches.split_at(batches.len() - usize::from(partition == 0));
        assert!(idempotent.len() > 1, "{batches:?}");
        // Sequences start at 0 and each batch continues the one before.
        let mut next = 0;
        for &(id, epoch, sequence, count) in idempotent {
            assert_eq!((id, epoch, sequence), (identity.id, identity.epoch, next));
            next += count;
        }
        assert_eq!(next, 150);
        for &(id, epoch, sequence, _) in rest {
            assert_eq!(
                (id, epoch, sequence),
                (-1, -1, -1),
                "acks=1: not idempotent"
            );
        }
    }
}

fn producer_with(client: &Client, acks: Acks, enable_idempotence: Option<bool>) -> Producer {
    Producer::new(
        client.clone(),
        ProducerConfig {
            acks,
            enable_idempotence,
            allow_auto_create_topics: false,
            ..ProducerConfig::default()
        },
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_and_consumer_ride_out_a_broker_restart() {
    // Clients reach the broker through a proxy that can lose its answers.
    let proxy = LossyProxy::start().await;
    let mut broker = Broker::start_with(&["--advertised-listener", &proxy.addr]);
    proxy.forward_to(&broker.addr);
    let bootstrap = if broker.is_local() {
        &proxy.addr
    } else {
        &broker.addr
    };
    let client = Client::connect(ClientConfig::new(bootstrap)).await.unwrap();
    let topic = unique("restart");
    create_topic(&client, &topic, 2).await;
    let producer = Arc::new(producer(&client, Acks::All, Compression::Gzip));
    assert!(producer.is_idempotent());
    let mut consumer = earliest_consumer(&client, None);
    consumer.assign(all_partitions(&topic, 2)).await.unwrap();

    let send = |from: usize, to: usize| {
        let producer = producer.clone();
        let topic = topic.clone();
        async move {
            let mut futures = Vec::new();
            for i in from..to {
                let record = ProducerRecord::new(topic.as_str())
                    .key(format!("k{}", i % 10))
                    .value(format!("{i}"));
                futures.push(producer.send(record).await.unwrap());
                if i % 50 == 0 {
                    // A steady stream rather than one burst, so that a kill lands
                    // while batches are in flight.
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
            for future in futures {
                future.await.unwrap();
            }
        }
    };
    // Between sends: everything acknowledged, then SIGKILL and restart.
    send(0, 500).await;
    let mut records = poll_count(&mut consumer, 500).await;
    if broker.is_local() {
        // SIGKILL: every connection drops; producer and consumer reconnect and retry.
        tokio::task::block_in_place(|| broker.restart());
    }
    send(500, 1000).await;
    records.extend(poll_count(&mut consumer, 500).await);
    // Mid-stream, while records are being sent and acknowledged: SIGKILL twice, and
    // several times lose the broker's answers (every connection drops the next answer
    // and closes). Batches the broker wrote but could not answer are retried with their
    // sequence numbers and recognised as duplicates; batches behind a lost one are
    // refused as out of order and retried after it.
    let total = 20_000;
    let stream = tokio::spawn(send(1000, total));
    if broker.is_local() {
        for step in 0..10 {
            tokio::time::sleep(Duration::from_millis(40)).await;
            if step == 3 || step == 7 {
                tokio::task::block_in_place(|| broker.restart());
            } else {
                proxy.cut_answers();
            }
        }
    }
    stream.await.unwrap();
    records.extend(poll_count(&mut consumer, total - 1000).await);
    let extra = consumer.poll(Duration::from_millis(500)).await.unwrap();
    assert!(extra.is_empty(), "{} records more than sent", extra.len());

    let mut per_key: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for r in &records {
        let key = String::from_utf8(r.key.as_deref().unwrap().to_vec()).unwrap();
        let value: usize = std::str::from_utf8(r.value.as_deref().unwrap())
            .unwrap()
            .parse()
            .unwrap();
        per_key.entry(key).or_default().push(value);
    }
    for (key, values) in per_key {
        let n: usize = key[1..].parse().unwrap();
        let expected: Vec<usize> = (0..total).filter(|i| i % 10 == n).collect();
        assert_eq!(values, expected, "key {key}: all records, in order, once");
    }
    // The broker kept the producer's state across the kills: no sequence broke, so
    // nothing was renumbered under a new epoch.
    assert_eq!(producer.producer_id().map(|p| p.epoch), Some(0));
    producer.close().await.unwrap();
    if broker.is_local() {
        let lost = proxy.lost.load(std::sync::atomic::Ordering::SeqCst);
        assert!(lost > 0, "the proxy lost no answer");
    }
}

// ---- Consumer groups -------------------------------------------------------------

fn group_consumer(client: &Client, group: &str, assignor: Assignor) -> Consumer {
    let mut config = ConsumerConfig {
        group_id: Some(group.to_owned()),
        auto_offset_reset: AutoOffsetReset::Earliest,
        fetch_max_wait: Duration::from_millis(100),
        auto_commit_interval: Duration::from_millis(200),
        ..ConsumerConfig::default()
    };
    config.group.assignors = vec![assignor];
    config.group.heartbeat_interval = Duration::from_millis(300);
    config.group.session_timeout = Duration::from_secs(10);
    config.group.rebalance_timeout = Duration::from_secs(20);
    Consumer::new(client.clone(), config).unwrap()
}

async fn produce_values(client: &Client, topic: &str, partitions: i32, per_partition: i32) {
    let producer = producer(client, Acks::All, Compression::None);
    for p in 0..partitions {
        for i in 0..per_partition {
            producer
                .send(
                    ProducerRecord::new(topic)
                        .partition(p)
                        .value(format!("{p}:{i}")),
                )
                .await
                .unwrap();
        }
    }
    producer.close().await.unwrap();
}

/// Needs consumer groups on the broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_consumer_commits_and_resumes() {
    let broker = Broker::start();
    let client = client(&broker).await;
    let topic = unique("group-resume");
    let group = unique("g-resume");
    create_topic(&client, &topic, 3).await;
    produce_values(&client, &topic, 3, 20).await;

    let mut consumer = group_consumer(&client, &group, Assignor::Range);
    consumer.subscribe(vec![topic.clone()]).unwrap();
    let records = poll_count(&mut consumer, 60).await;
    assert_eq!(records.len(), 60);
    assert_eq!(consumer.assignment().len(), 3);
    consumer.commit().await.unwrap();
    consumer.close().await.unwrap();

    produce_values(&client, &topic, 3, 5).await;
    let mut consumer = group_consumer(&client, &group, Assignor::Range);
    consumer.subscribe(vec![topic.clone()]).unwrap();
    let records = poll_count(&mut consumer, 15).await;
    assert!(
        records.iter().all(|r| r.offset >= 20),
        "resumed after the commit"
    );
    // The committed offsets are visible to the admin API, with no lag once closed.
    consumer.close().await.unwrap();
    let description = Admin::new(client.clone())
        .describe_group(&group)
        .await
        .unwrap();
    assert_eq!(description.offsets.len(), 3);
    for offset in &description.offsets {
        assert_eq!(offset.committed, Some(25));
        assert_eq!(offset.lag, Some(0));
    }
}

/// A group member polling in its own task (as every consumer must: a member that is not
/// polled cannot rejoin), publishing its assignment after each poll.
struct Member {
    task: tokio::task::JoinHandle<Consumer>,
    state: tokio::sync::watch::Receiver<(Vec<TopicPartition>, bool)>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Member {
    fn spawn(mut consumer: Consumer) -> Member {
        let (tx, state) = tokio::sync::watch::channel((Vec::new(), true));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            while !stopped.load(std::sync::atomic::Ordering::SeqCst) {
                consumer.poll(Duration::from_millis(100)).await.unwrap();
                let rejoin = consumer.group().is_none_or(|g| g.needs_rejoin());
                let _ = tx.send((consumer.assignment(), rejoin));
            }
            consumer
        });
        Member { task, state, stop }
    }

    fn assignment(&self) -> (Vec<TopicPartition>, bool) {
        self.state.borrow().clone()
    }

    async fn stop(self) -> Consumer {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.task.await.unwrap()
    }
}

/// Needs consumer groups on the broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_members_split_partitions_with_each_assignor() {
    let broker = Broker::start();
    let client = client(&broker).await;
    for assignor in [Assignor::Range, Assignor::CooperativeSticky] {
        let topic = unique("group-split");
        let group = unique("g-split");
        create_topic(&client, &topic, 4).await;
        produce_values(&client, &topic, 4, 10).await;
        let mut a = group_consumer(&client, &group, assignor);
        a.subscribe(vec![topic.clone()]).unwrap();
        poll_count(&mut a, 1).await;
        assert_eq!(
            a.assignment().len(),
            4,
            "{assignor:?}: alone, a has everything"
        );
        let a = Member::spawn(a);
        let mut b = group_consumer(&client, &group, assignor);
        b.subscribe(vec![topic.clone()]).unwrap();
        let b = Member::spawn(b);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let ((pa, rejoin_a), (pb, rejoin_b)) = (a.assignment(), b.assignment());
            if pa.len() == 2 && pb.len() == 2 && !rejoin_a && !rejoin_b {
                let mut all = pa;
                all.extend(pb);
                all.sort();
                assert_eq!(all, all_partitions(&topic, 4), "{assignor:?}");
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{assignor:?}: assignments {pa:?} + {pb:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let description = Admin::new(client.clone())
            .describe_group(&group)
            .await
            .unwrap();
        assert_eq!(description.members.len(), 2);
        assert_eq!(description.protocol, assignor.name());
        assert_eq!(description.state, "Stable");
        let b = b.stop().await;
        assert_eq!(b.group().unwrap().protocol(), Some(assignor));
        b.close().await.unwrap();
        // a gets everything back once b has left.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while a.assignment().0.len() != 4 || a.assignment().1 {
            assert!(
                std::time::Instant::now() < deadline,
                "{assignor:?}: a did not take over"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        a.stop().await.close().await.unwrap();
    }
}

/// Needs consumer groups on the broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_group_offsets_moves_an_idle_group() {
    let broker = Broker::start();
    let client = client(&broker).await;
    let admin = Admin::new(client.clone());
    let topic = unique("reset");
    let group = unique("g-reset");
    create_topic(&client, &topic, 2).await;
    produce_values(&client, &topic, 2, 10).await;

    let changes = admin
        .reset_group_offsets(&group, &topic, ResetTo::Latest)
        .await
        .unwrap();
    assert_eq!(changes.len(), 2);
    assert!(changes.iter().all(|c| c.previous.is_none() && c.new == 10));
    let changes = admin
        .reset_group_offsets(&group, &topic, ResetTo::Offset(4))
        .await
        .unwrap();
    assert!(changes.iter().all(|c| c.previous == Some(10) && c.new == 4));
    let changes = admin
        .reset_group_offsets(&group, &topic, ResetTo::Offset(1000))
        .await
        .unwrap();
    assert!(changes.iter().all(|c| c.new == 10), "clamped to the end");
    let changes = admin
        .reset_group_offsets(&group, &topic, ResetTo::Earliest)
        .await
        .unwrap();
    assert!(changes.iter().all(|c| c.new == 0));

    // A consumer of the group starts where the reset put it.
    admin
        .reset_group_offsets(&group, &topic, ResetTo::Offset(8))
        .await
        .unwrap();
    let mut consumer = group_consumer(&client, &group, Assignor::Range);
    consumer.subscribe(vec![topic.clone()]).unwrap();
    let records = poll_count(&mut consumer, 4).await;
    assert!(records.iter().all(|r| r.offset >= 8));
    // While it is a member, resets are refused.
    let err = admin
        .reset_group_offsets(&group, &topic, ResetTo::Earliest)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("active member"), "{err}");
    consumer.close().await.unwrap();
    assert!(admin
        .list_groups()
        .await
        .unwrap()
        .iter()
        .any(|g| g.group_id == group));
}

/// On a runtime with one worker the sender task shares the only thread with the caller's
/// send loop. `send` is ready at once when there is buffer memory, so unless it yields
/// now and then, no batch leaves (and no record is acknowledged) until the loop ends or
/// the memory runs out.
#[test]
fn a_send_loop_on_a_one_thread_runtime_lets_batches_go() {
    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    current.block_on(send_loop_lets_batches_go());
    let one_worker = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    one_worker.block_on(async { tokio::spawn(send_loop_lets_batches_go()).await.unwrap() });
}

async fn send_loop_lets_batches_go() {
    let broker = Broker::start();
    let client = client(&broker).await;
    let topic = unique("coop");
    create_topic(&client, &topic, 1).await;
    let producer = Producer::new(
        client.clone(),
        ProducerConfig {
            acks: Acks::Leader,
            buffer_memory: 512 << 20,
            allow_auto_create_topics: false,
            ..ProducerConfig::default()
        },
    )
    .unwrap();
    // Far less than the buffer holds: without yields, memory never runs short.
    const LIMIT: usize = 500_000;
    let value = vec![b'x'; 100];
    let first = producer
        .send(ProducerRecord::new(topic.as_str()).value(value.clone()))
        .await
        .unwrap();
    let mut sent = 1;
    while sent < LIMIT && first.try_result().is_none() {
        producer
            .send(ProducerRecord::new(topic.as_str()).value(value.clone()))
            .await
            .unwrap();
        sent += 1;
    }
    let acked = first.try_result();
    assert!(
        acked.is_some(),
        "the first record was not acknowledged while {LIMIT} more were sent"
    );
    assert_eq!(acked.unwrap().unwrap().offset, 0);
    producer.close().await.unwrap();
}

/// Needs consumer groups on the broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_member_reads_partitions_added_to_its_topic() {
    let broker = Broker::start();
    // Subscribed topics are checked every metadata.max.age.ms (5 minutes by default).
    let client = Client::connect(ClientConfig {
        metadata_max_age: Duration::from_millis(500),
        ..ClientConfig::new(&broker.addr)
    })
    .await
    .unwrap();
    let topic = unique("group-grow");
    let group = unique("g-grow");
    create_topic(&client, &topic, 1).await;
    produce_values(&client, &topic, 1, 3).await;

    let mut consumer = group_consumer(&client, &group, Assignor::CooperativeSticky);
    consumer.subscribe(vec![topic.clone()]).unwrap();
    assert_eq!(poll_count(&mut consumer, 3).await.len(), 3);
    assert_eq!(consumer.assignment(), all_partitions(&topic, 1));

    Admin::new(client.clone())
        .create_partitions(&topic, 2)
        .await
        .unwrap();
    let producer = producer(&client, Acks::All, Compression::None);
    producer
        .send(
            ProducerRecord::new(topic.as_str())
                .partition(1)
                .value("new"),
        )
        .await
        .unwrap()
        .wait()
        .await
        .unwrap();
    producer.close().await.unwrap();
    let records = poll_count(&mut consumer, 1).await;
    assert_eq!((records[0].partition, records[0].offset), (1, 0));
    let mut assigned = consumer.assignment();
    assigned.sort();
    assert_eq!(assigned, all_partitions(&topic, 2));
    consumer.close().await.unwrap();
}
