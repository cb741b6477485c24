//! Idempotent producers through the wire protocol: InitProducerId hands out ids that are
//! never reused (not after a clean restart, not after a crash), and Produce applies
//! Kafka's sequence rules (duplicate -> original offsets, gap -> OUT_OF_ORDER_SEQUENCE_NUMBER,
//! stale epoch -> INVALID_PRODUCER_EPOCH) with producer state that survives restarts, so a
//! retry sent after the broker came back is still recognised.

mod common;

use bytes::Bytes;
use common::Client;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{
    DescribeConfigsRequest, IncrementalAlterConfigsRequest, InitProducerIdRequest, ProduceResponse,
    ProducerId, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use sluice_broker::BrokerHandle;
use sluice_storage::batch::{BatchBuilder, Compression};

/// A batch of `count` records from producer (`id`, `epoch`) starting at `sequence`.
fn batch(id: i64, epoch: i16, sequence: i32, count: usize) -> Bytes {
    let mut builder = BatchBuilder::new(Compression::None).producer(id, epoch, sequence);
    for i in 0..count {
        let value = format!("{id}/{epoch}/{}", i64::from(sequence) + i as i64);
        builder.push(1_700_000_000_000, None, Some(value.as_bytes()), &[]);
    }
    builder.build().expect("batch builds")
}

/// InitProducerId for an idempotent (non-transactional) producer at `version`.
async fn init_producer_id(client: &mut Client, version: i16) -> (i16, i64, i16) {
    // The codec's default transactional id is "", which Kafka refuses: null is idempotent.
    let request = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(-1);
    let response = client.send(version, &request).await;
    (
        response.error_code,
        response.producer_id.0,
        response.producer_epoch,
    )
}

/// Produces with acks=all at Produce v9 and returns (error code, base offset).
async fn produce(client: &mut Client, topic: &str, records: Bytes) -> (i16, i64) {
    let response: ProduceResponse = client
        .send(9, &Client::produce_request(topic, 0, -1, records))
        .await;
    let p = &response.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

fn log_end(broker: &BrokerHandle, topic: &str) -> i64 {
    broker
        .state()
        .topics
        .get(topic)
        .expect("topic exists")
        .partition(0)
        .expect("partition 0")
        .log
        .log_end_offset()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_ids_are_distinct_and_never_reused_after_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut seen = Vec::new();
    let broker = common::start(dir.path(), &[]).await;
    let mut client = Client::connect(broker.local_addr()).await;
    for version in 0..=5 {
        let (error, id, epoch) = init_producer_id(&mut client, version).await;
        assert_eq!((error, epoch), (0, 0), "v{version}");
        seen.push(id);
    }
    drop(client);
    broker.shutdown().await.unwrap();

    let broker = common::start(dir.path(), &[]).await;
    let mut client = Client::connect(broker.local_addr()).await;
    let (error, after_clean, _) = init_producer_id(&mut client, 4).await;
    assert_eq!(error, 0);
    seen.push(after_clean);
    drop(client);
    broker.kill().await;

    let broker = common::start(dir.path(), &[]).await;
    let mut client = Client::connect(broker.local_addr()).await;
    let (error, after_crash, _) = init_producer_id(&mut client, 4).await;
    assert_eq!(error, 0);
    seen.push(after_crash);
    broker.shutdown().await.unwrap();

    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "ids only grow, across a clean restart and a crash: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactional_and_malformed_init_producer_id_requests_fail_fast() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::start(dir.path(), &[]).await;
    let mut client = Client::connect(broker.local_addr()).await;
    let transactional = InitProducerIdRequest::default()
        .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str("tx"))))
        .with_transaction_timeout_ms(60_000);
    let response = client.send(4, &transactional).await;
    assert_eq!(
        response.error_code,
        ResponseError::TransactionalIdAuthorizationFailed.code()
    );
    assert_eq!(response.producer_id.0, -1);
    let half = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_producer_id(ProducerId(3));
    let response = client.send(3, &half).await;
    assert_eq!(response.error_code, ResponseError::InvalidRequest.code());
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequence_rules_duplicate_gap_and_epochs() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::start(dir.path(), &[]).await;
    let mut client = Client::connect(broker.local_addr()).await;
    client.create_topic("idem", 1, &[]).await;
    let (_, pid, epoch) = init_producer_id(&mut client, 4).await;

    assert_eq!(
        produce(&mut client, "idem", batch(pid, epoch, 0, 3)).await,
        (0, 0)
    );
    assert_eq!(
        produce(&mut client, "idem", batch(pid, epoch, 3, 2)).await,
        (0, 3)
    );
    // A retry of either batch (the answer was lost): original offsets, nothing appended.
    assert_eq!(
        produce(&mut client, "idem", batch(pid, epoch, 3, 2)).await,
        (0, 3)
    );
    assert_eq!(
        produce(&mut client, "idem", batch(pid, epoch, 0, 3)).await,
        (0, 0)
    );
    assert_eq!(log_end(&broker, "idem"), 5);
    let fetched = client.fetch("idem", 0, 0).await;
    assert_eq!(fetched.high_watermark, 5);

    // A gap: sequence 7 when 5 is next.
    assert_eq!(
        produce(&mut client, "idem", batch(pid, epoch, 7, 1)).await,
        (ResponseError::OutOfOrderSequenceNumber.code(), -1)
    );
    // The expected sequence is still accepted after the refused gap.
    assert_eq!(
        produce(&mut client, "idem", batch(pid, epoch, 5, 1)).await,
        (0, 5)
    );

    // An epoch bump must start at sequence 0.
    assert_eq!(
        produce(&mut client, "idem", batch(pid, epoch + 1, 6, 1)).await,
        (ResponseError::OutOfOrderSequenceNumber.code(), -1)
    );
    assert_eq!(
        produce(&mut client, "idem", batch(pid, epoch + 1, 0, 2)).await,
        (0, 6)
    );
    // The old epoch is fenced, even for what would be its next sequence or a retry.
    assert_eq!(
        produce(&mut client, "idem", batch(pid, epoch, 6, 1)).await,
        (ResponseError::InvalidProducerEpoch.code(), -1)
    );
    assert_eq!(
        produce(&mut client, "idem", batch(pid, epoch, 5, 1)).await,
        (ResponseError::InvalidProducerEpoch.code(), -1)
    );
    assert_eq!(log_end(&broker, "idem"), 8);

    // Another producer is independent; a producer the partition never saw may start
    // at any sequence (Kafka since KIP-360: its state may have gone with retention).
    let (_, other, _) = init_producer_id(&mut client, 4).await;
    assert_ne!(other, pid);
    assert_eq!(
        produce(&mut client, "idem", batch(other, 0, 0, 1)).await,
        (0, 8)
    );
    assert_eq!(
        produce(&mut client, "idem", batch(pid + 1000, 0, 42, 1)).await,
        (0, 9)
    );

    // Only the last five batches are remembered: an older retry is out of order.
    for seq in 1..=6 {
        assert_eq!(
            produce(&mut client, "idem", batch(other, 0, seq, 1))
                .await
                .0,
            0
        );
    }
    assert_eq!(
        produce(&mut client, "idem", batch(other, 0, 1, 1)).await,
        (ResponseError::OutOfOrderSequenceNumber.code(), -1)
    );
    assert_eq!(
        produce(&mut client, "idem", batch(other, 0, 2, 1)).await,
        (0, 11),
        "the oldest of the last five is still a duplicate"
    );
    broker.shutdown().await.unwrap();
}

/// Produces `batches` single-record batches for (`pid`, 0) from sequence 0; returns the
/// offset each got.
async fn produce_run(client: &mut Client, topic: &str, pid: i64, batches: i32) -> Vec<i64> {
    let mut offsets = Vec::new();
    for seq in 0..batches {
        let (error, offset) = produce(client, topic, batch(pid, 0, seq, 1)).await;
        assert_eq!(error, 0, "sequence {seq}");
        offsets.push(offset);
    }
    offsets
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_state_survives_clean_restart_and_crash() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::start(dir.path(), &[]).await;
    let mut client = Client::connect(broker.local_addr()).await;
    // Small segments: rolls write producer-state snapshots, so recovery starts from a
    // snapshot and replays the log after it.
    client
        .create_topic("keep", 1, &[("segment.bytes", "1024")])
        .await;
    let (_, pid, _) = init_producer_id(&mut client, 4).await;
    let offsets = produce_run(&mut client, "keep", pid, 40).await;
    let segments = broker
        .state()
        .topics
        .get("keep")
        .unwrap()
        .partition(0)
        .unwrap()
        .log
        .segment_count();
    assert!(
        segments > 2,
        "the test needs rolls, got {segments} segments"
    );
    drop(client);
    broker.shutdown().await.unwrap();

    // Clean restart: the state comes from the snapshot written at close.
    let broker = common::start(dir.path(), &[]).await;
    let mut client = Client::connect(broker.local_addr()).await;
    for seq in 35..40 {
        assert_eq!(
            produce(&mut client, "keep", batch(pid, 0, seq, 1)).await,
            (0, offsets[seq as usize]),
            "retry of sequence {seq} after a clean restart"
        );
    }
    assert_eq!(log_end(&broker, "keep"), 40);
    assert_eq!(
        produce(&mut client, "keep", batch(pid, 0, 40, 1)).await,
        (0, 40)
    );
    assert_eq!(
        produce(&mut client, "keep", batch(pid, 0, 41, 1)).await,
        (0, 41)
    );
    drop(client);
    // A crash: no close, no snapshot at the end; the state is rebuilt from the last
    // snapshot plus the batches after it.
    broker.kill().await;

    let broker = common::start(dir.path(), &[]).await;
    let mut client = Client::connect(broker.local_addr()).await;
    assert_eq!(
        produce(&mut client, "keep", batch(pid, 0, 41, 1)).await,
        (0, 41),
        "retry after a crash is a duplicate"
    );
    assert_eq!(
        produce(&mut client, "keep", batch(pid, 0, 40, 1)).await,
        (0, 40)
    );
    assert_eq!(
        produce(&mut client, "keep", batch(pid, 0, 43, 1)).await,
        (ResponseError::OutOfOrderSequenceNumber.code(), -1),
        "the sequence is still known after a crash"
    );
    assert_eq!(
        produce(&mut client, "keep", batch(pid, 0, 42, 1)).await,
        (0, 42)
    );
    assert_eq!(log_end(&broker, "keep"), 43);
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_messages_one_makes_acks_all_wait_for_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::start(dir.path(), &[]).await;
    let mut client = Client::connect(broker.local_addr()).await;
    let created = client
        .create_topic("synced", 1, &[("flush.messages", "1")])
        .await;
    assert_eq!(created.topics[0].error_code, 0);
    client.create_topic("later", 1, &[]).await;
    let durable = |topic: &str| {
        let partition = broker
            .state()
            .topics
            .get(topic)
            .unwrap()
            .partition(0)
            .unwrap();
        assert_eq!(
            partition.log.config().flush,
            sluice_storage::FlushPolicy::Always,
            "{topic}"
        );
        partition.log.durable_offset()
    };
    for i in 0..5 {
        let (error, offset) = produce(&mut client, "synced", batch(-1, -1, -1, 3)).await;
        assert_eq!((error, offset), (0, i * 3));
        assert_eq!(durable("synced"), offset + 3, "answered only once fsynced");
    }

    // The same through IncrementalAlterConfigs, and DescribeConfigs reports it.
    let alter = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_static_str("later"))
            .with_configs(vec![AlterableConfig::default()
                .with_name(StrBytes::from_static_str("flush.messages"))
                .with_config_operation(0)
                .with_value(Some(StrBytes::from_static_str("1")))]),
    ]);
    let altered = client.send(1, &alter).await;
    assert_eq!(altered.responses[0].error_code, 0);
    let (error, offset) = produce(&mut client, "later", batch(-1, -1, -1, 2)).await;
    assert_eq!(error, 0);
    assert_eq!(durable("later"), offset + 2);
    let describe =
        DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_static_str("later"))
            .with_configuration_keys(Some(vec![StrBytes::from_static_str("flush.messages")]))]);
    let described = client.send(4, &describe).await;
    let config = &described.results[0].configs[0];
    assert_eq!(config.name.as_str(), "flush.messages");
    assert_eq!(config.value.as_deref(), Some("1"));
    broker.shutdown().await.unwrap();
}
