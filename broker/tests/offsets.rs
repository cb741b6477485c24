//! ListOffsets (earliest, latest, max timestamp, by time), DeleteRecords, retention.

mod common;

use std::time::Duration;

use common::{batch_with, name, Client};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{DeleteRecordsRequest, ListOffsetsRequest, ListOffsetsResponse};
use sluice_storage::batch::Compression;

fn list(topic: &str, partition: i32, timestamp: i64) -> ListOffsetsRequest {
    ListOffsetsRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(name(topic))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(partition)
                .with_timestamp(timestamp)])])
}

async fn offset_of(
    client: &mut Client,
    version: i16,
    topic: &str,
    timestamp: i64,
) -> (i16, i64, i64) {
    let r: ListOffsetsResponse = client.send(version, &list(topic, 0, timestamp)).await;
    let p = &r.topics[0].partitions[0];
    (p.error_code, p.timestamp, p.offset)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_offsets_by_special_and_real_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::start(dir.path(), &[]).await;
    let mut client = Client::connect(broker.local_addr()).await;
    client.create_topic("times", 1, &[]).await;
    // Empty log.
    assert_eq!(offset_of(&mut client, 7, "times", -2).await, (0, -1, 0));
    assert_eq!(offset_of(&mut client, 7, "times", -1).await, (0, -1, 0));
    assert_eq!(offset_of(&mut client, 7, "times", -3).await, (0, -1, -1));

    // Offsets 0-2 at t=1000.., 3-4 at t=5000.., 5 at t=3000 (timestamps need not grow).
    client
        .produce(
            "times",
            0,
            batch_with(
                Compression::None,
                1000,
                &[(None, "a"), (None, "b"), (None, "c")],
            ),
        )
        .await;
    client
        .produce(
            "times",
            0,
            batch_with(Compression::Lz4, 5000, &[(None, "d"), (None, "e")]),
        )
        .await;
    client
        .produce(
            "times",
            0,
            batch_with(Compression::None, 3000, &[(None, "f")]),
        )
        .await;
    for version in 1..=10 {
        assert_eq!(
            offset_of(&mut client, version, "times", -2).await,
            (0, -1, 0),
            "v{version}"
        );
        assert_eq!(
            offset_of(&mut client, version, "times", -1).await,
            (0, -1, 6),
            "v{version}"
        );
    }
    assert_eq!(offset_of(&mut client, 7, "times", -3).await, (0, 5001, 4));
    assert_eq!(offset_of(&mut client, 7, "times", 0).await, (0, 1000, 0));
    assert_eq!(offset_of(&mut client, 7, "times", 1001).await, (0, 1001, 1));
    assert_eq!(offset_of(&mut client, 7, "times", 1003).await, (0, 5000, 3));
    assert_eq!(offset_of(&mut client, 7, "times", 5001).await, (0, 5001, 4));
    // Nothing at or after: offset -1, timestamp -1, as Kafka.
    assert_eq!(offset_of(&mut client, 7, "times", 9999).await, (0, -1, -1));
    let r: ListOffsetsResponse = client.send(7, &list("times", 4, -1)).await;
    assert_eq!(
        r.topics[0].partitions[0].error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );
    assert_eq!(
        offset_of(&mut client, 7, "missing", -1).await.0,
        ResponseError::UnknownTopicOrPartition.code()
    );
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_records_moves_the_log_start() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::start(dir.path(), &[]).await;
    let mut client = Client::connect(broker.local_addr()).await;
    client
        .create_topic("trim", 1, &[("segment.bytes", "200")])
        .await;
    for i in 0..10 {
        let value = format!("value-{i}-{}", "p".repeat(100));
        assert_eq!(
            client
                .produce("trim", 0, common::batch(&[(None, &value)]))
                .await
                .0,
            0
        );
    }
    let delete = |offset: i64| {
        DeleteRecordsRequest::default()
            .with_topics(vec![DeleteRecordsTopic::default()
                .with_name(name("trim"))
                .with_partitions(vec![DeleteRecordsPartition::default()
                    .with_partition_index(0)
                    .with_offset(offset)])])
            .with_timeout_ms(5000)
    };
    let r = client.send(2, &delete(4)).await;
    let p = &r.topics[0].partitions[0];
    assert_eq!((p.error_code, p.low_watermark), (0, 4));
    assert_eq!(offset_of(&mut client, 7, "trim", -2).await, (0, -1, 4));
    assert_eq!(
        client.fetch("trim", 0, 2).await.error_code,
        ResponseError::OffsetOutOfRange.code()
    );
    assert_eq!(client.fetch("trim", 0, 4).await.error_code, 0);
    // Beyond the high watermark: OFFSET_OUT_OF_RANGE; -1 means "up to the high watermark".
    let r = client.send(0, &delete(99)).await;
    assert_eq!(
        r.topics[0].partitions[0].error_code,
        ResponseError::OffsetOutOfRange.code()
    );
    let r = client.send(1, &delete(-1)).await;
    assert_eq!(r.topics[0].partitions[0].low_watermark, 10);
    assert_eq!(offset_of(&mut client, 7, "trim", -2).await, (0, -1, 10));
    broker.shutdown().await.unwrap();

    // The new log start survives a restart.
    let broker = common::start(dir.path(), &[]).await;
    let mut client = Client::connect(broker.local_addr()).await;
    assert_eq!(offset_of(&mut client, 7, "trim", -2).await, (0, -1, 10));
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_runs_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::start(dir.path(), &[("log.retention.check.interval.ms", "50")]).await;
    let mut client = Client::connect(broker.local_addr()).await;
    client
        .create_topic(
            "short",
            1,
            &[("segment.bytes", "300"), ("retention.bytes", "700")],
        )
        .await;
    client
        .create_topic(
            "kept",
            1,
            &[
                ("segment.bytes", "300"),
                ("retention.bytes", "700"),
                ("cleanup.policy", "compact"),
            ],
        )
        .await;
    for topic in ["short", "kept"] {
        for _ in 0..12 {
            let value = "r".repeat(150);
            // Keyed: a compacted topic refuses records without a key.
            assert_eq!(
                client
                    .produce(topic, 0, common::batch(&[(Some("k"), &value)]))
                    .await
                    .0,
                0
            );
        }
    }
    // Retention deletes segment by segment: wait until it has brought the log within a
    // segment of retention.bytes.
    let log = broker
        .state()
        .topics
        .get("short")
        .unwrap()
        .partition(0)
        .unwrap()
        .log
        .clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, _, start) = offset_of(&mut client, 7, "short", -2).await;
        if start > 0 && log.size_bytes() <= 700 + 300 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "retention left {} bytes (log start {start})",
            log.size_bytes()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // cleanup.policy=compact: retention does not delete.
    assert_eq!(offset_of(&mut client, 7, "kept", -2).await, (0, -1, 0));
    broker.shutdown().await.unwrap();
}
