//! Compaction through the broker: a topic with `cleanup.policy=compact` is cleaned by the
//! broker's cleaner (scheduled by dirty ratio), so reading it from the start gives each
//! key's latest value, offsets ascending and the latest records untouched; the cleaner's
//! metrics say what it did.

mod common;

use std::collections::BTreeMap;

use common::{batch, Client};
use sluice_storage::batch::{BatchHeader, Records};

/// Every (offset, key, value) of partition 0, read from offset 0 (empty batches the
/// cleaner kept are stepped over by their header).
async fn read_all(client: &mut Client, topic: &str) -> Vec<(i64, String, Option<String>)> {
    let mut records = Vec::new();
    let mut offset = 0;
    for _ in 0..10_000 {
        let data = client.fetch(topic, 0, offset).await;
        assert_eq!(data.error_code, 0, "fetch at {offset}");
        let bytes = data.records.unwrap_or_default();
        if bytes.is_empty() {
            break;
        }
        for batch in sluice_storage::batch::batches(&bytes) {
            let batch = batch.expect("whole batches");
            sluice_storage::batch::validate_stored_batch(batch).expect("valid batch");
            let header = BatchHeader::new(batch).unwrap();
            for record in Records::decode(bytes::Bytes::copy_from_slice(batch)).unwrap() {
                let record = record.unwrap();
                assert!(record.offset >= offset, "offsets ascend");
                let text =
                    |b: Option<bytes::Bytes>| b.map(|b| String::from_utf8(b.to_vec()).unwrap());
                records.push((record.offset, text(record.key).unwrap(), text(record.value)));
            }
            offset = header.next_offset();
        }
    }
    records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cleaner_keeps_each_keys_latest_value() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::start(dir.path(), &[("log.cleaner.backoff.ms", "100")]).await;
    let mut client = Client::connect(broker.local_addr()).await;
    client
        .create_topic(
            "latest",
            1,
            &[
                ("cleanup.policy", "compact"),
                ("segment.bytes", "4096"),
                ("min.cleanable.dirty.ratio", "0.1"),
                ("delete.retention.ms", "0"),
            ],
        )
        .await;
    // 20 keys, each written 30 times; key 3 ends with a tombstone.
    let mut latest = BTreeMap::new();
    for round in 0..30 {
        for key in 0..20 {
            let (k, v) = (format!("k{key}"), format!("v{key}-{round}"));
            let (code, _) = client.produce("latest", 0, batch(&[(Some(&k), &v)])).await;
            assert_eq!(code, 0);
            latest.insert(k, Some(v));
        }
    }
    let tombstone = {
        let mut b =
            sluice_storage::batch::BatchBuilder::new(sluice_storage::batch::Compression::None);
        b.push(1_700_000_000_000, Some(b"k3"), None, &[]);
        b.build().unwrap()
    };
    assert_eq!(client.produce("latest", 0, tombstone).await.0, 0);
    latest.insert("k3".to_owned(), None);
    let end = 30 * 20 + 1;

    common::wait_until("the cleaner removes most superseded values", || {
        broker
            .state()
            .cleaner
            .totals
            .records_removed
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 400
    })
    .await;
    let records = read_all(&mut client, "latest").await;
    assert!(
        records.len() < end / 2,
        "{} records left of {end}",
        records.len()
    );
    // Each key's latest value is there, and is the last record of its key.
    let mut last: BTreeMap<String, Option<String>> = BTreeMap::new();
    for (_, k, v) in &records {
        last.insert(k.clone(), v.clone());
    }
    for (k, v) in &latest {
        if k == "k3" {
            // The tombstone, or nothing once its delete horizon passed.
            assert!(
                last.get(k).is_none_or(|v| v.is_none()),
                "k3: {:?}",
                last.get(k)
            );
        } else {
            assert_eq!(last.get(k), Some(v), "{k}");
        }
    }
    // The newest records (the active segment's) are untouched.
    assert_eq!(records.last().unwrap().0, end as i64 - 1);
    let data = client.fetch("latest", 0, 0).await;
    assert_eq!(data.high_watermark, end as i64, "offsets are kept");
    let statuses = broker.state().cleaner.statuses();
    assert!(
        statuses
            .iter()
            .any(|((t, p), s)| &**t == "latest" && *p == 0 && s.last_clean_ms.is_some()),
        "{statuses:?}"
    );
    broker.shutdown().await.unwrap();
}
