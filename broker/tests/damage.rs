//! A damaged data directory (issue 14, section 4), end to end over Kafka requests: the
//! broker starts even when one partition's files cannot be opened, that partition alone
//! answers KAFKA_STORAGE_ERROR (56), and a partition with flipped bytes in a sealed
//! segment serves every whole batch before and after the damage while the damaged
//! offsets get CORRUPT_MESSAGE (2). `sluice-broker check` reports both offline.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::{batch, name, Client};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ListOffsetsRequest, ListOffsetsResponse, MetadataRequest, MetadataResponse,
};
use sluice_storage::batch::{self as sbatch, BatchHeader};

/// Runs `sluice-broker check DIR`; returns the exit code and stdout.
fn check(dir: &Path) -> (i32, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_sluice-broker"))
        .arg("check")
        .arg(dir)
        .output()
        .expect("run sluice-broker check");
    (
        output.status.code().expect("exit code"),
        String::from_utf8(output.stdout).unwrap(),
    )
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut logs: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs
}

/// (position, base offset, next offset) of each batch in a segment file's bytes.
fn batch_layout(bytes: &[u8]) -> Vec<(usize, i64, i64)> {
    let mut layout = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let size = sbatch::check_framing(&bytes[at..], usize::MAX).unwrap();
        let header = BatchHeader::new(&bytes[at..]).unwrap();
        layout.push((at, header.base_offset(), header.next_offset()));
        at += size;
    }
    layout
}

/// (base offset, next offset) of every batch in a fetch answer's records.
fn offsets(records: &[u8]) -> Vec<(i64, i64)> {
    sbatch::batches(records)
        .map(|b| {
            let h = BatchHeader::new(b.unwrap()).unwrap();
            (h.base_offset(), h.next_offset())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_partition_goes_offline_and_damage_is_served_around() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::start(dir.path(), &[]).await;
    let mut client = Client::connect(broker.local_addr()).await;
    let created = client
        .create_topic("hurt", 2, &[("segment.bytes", "2048")])
        .await;
    assert_eq!(created.topics[0].error_code, 0);
    for i in 0..60 {
        let records: Vec<String> = (0..3)
            .map(|r| format!("record {i}-{r} {}", "v".repeat(40)))
            .collect();
        let records: Vec<(Option<&str>, &str)> =
            records.iter().map(|r| (None, r.as_str())).collect();
        for partition in 0..2 {
            let (code, _) = client.produce("hurt", partition, batch(&records)).await;
            assert_eq!(code, 0);
        }
    }
    drop(client);
    broker.shutdown().await.unwrap();
    let (code, out) = check(dir.path());
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("hurt-0: ok") && out.ends_with("all intact\n"),
        "{out}"
    );

    // Partition 1: a directory where its first segment file should be (the open fails
    // for root too, who is not stopped by file modes).
    let p1 = dir.path().join("hurt-1");
    let victim = &segment_files(&p1)[0];
    fs::remove_file(victim).unwrap();
    fs::create_dir(victim).unwrap();
    // Partition 0: 16 flipped bytes in the middle of its second (sealed) segment.
    let logs = segment_files(&dir.path().join("hurt-0"));
    assert!(logs.len() >= 4, "{} segments", logs.len());
    let sealed = &logs[1];
    let mut bytes = fs::read(sealed).unwrap();
    let layout = batch_layout(&bytes);
    let from = bytes.len() / 2;
    for b in &mut bytes[from..from + 16] {
        *b ^= 0xff;
    }
    fs::write(sealed, &bytes).unwrap();
    let hit: Vec<_> = layout
        .iter()
        .enumerate()
        .filter(|(i, (at, _, _))| {
            let stop = layout.get(i + 1).map_or(bytes.len(), |n| n.0);
            *at < from + 16 && from < stop
        })
        .map(|(_, l)| *l)
        .collect();
    let (damage_first, damage_end) = (hit[0].1, hit.last().unwrap().2);
    let segment_base = layout[0].1;

    // The offline check finds both, without changing anything.
    let (code, out) = check(dir.path());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("hurt-0: DAMAGED"), "{out}");
    assert!(
        out.contains(&format!(
            "damaged: offsets {damage_first}..{damage_end} in {}",
            sealed.display()
        )),
        "{out}"
    );
    assert!(
        out.contains("hurt-1: DAMAGED") && out.contains("unreadable"),
        "{out}"
    );
    assert_eq!(fs::read(sealed).unwrap(), bytes, "check changed nothing");

    // The broker starts all the same.
    let broker = common::start(dir.path(), &[]).await;
    let mut client = Client::connect(broker.local_addr()).await;
    let metadata: MetadataResponse = client
        .send(
            12,
            &MetadataRequest::default().with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(name("hurt")))
            ])),
        )
        .await;
    let partitions = &metadata.topics[0].partitions;
    let code_of = |p: i32| {
        partitions
            .iter()
            .find(|x| x.partition_index == p)
            .unwrap()
            .error_code
    };
    assert_eq!(code_of(0), 0);
    assert_eq!(code_of(1), ResponseError::KafkaStorageError.code());

    // The offline partition refuses fetch, produce and list-offsets with 56.
    let storage_error = ResponseError::KafkaStorageError.code();
    assert_eq!(client.fetch("hurt", 1, 0).await.error_code, storage_error);
    assert_eq!(
        client.produce("hurt", 1, batch(&[(None, "x")])).await.0,
        storage_error
    );
    let listed: ListOffsetsResponse = client
        .send(
            5,
            &ListOffsetsRequest::default()
                .with_replica_id(kafka_protocol::messages::BrokerId(-1))
                .with_topics(vec![ListOffsetsTopic::default()
                    .with_name(name("hurt"))
                    .with_partitions(vec![ListOffsetsPartition::default()
                        .with_partition_index(1)
                        .with_timestamp(-1)])]),
        )
        .await;
    assert_eq!(listed.topics[0].partitions[0].error_code, storage_error);

    // The damaged partition: a fetch from the segment start gets the whole batches up to
    // the damage, not an error.
    let data = client.fetch("hurt", 0, segment_base).await;
    assert_eq!(data.error_code, 0);
    let got = offsets(data.records.as_ref().unwrap());
    assert_eq!(got.first().unwrap().0, segment_base);
    assert_eq!(
        got.last().unwrap().1,
        damage_first,
        "served up to the damage"
    );
    // Inside the damage: CORRUPT_MESSAGE.
    for offset in [damage_first, damage_end - 1] {
        let data = client.fetch("hurt", 0, offset).await;
        assert_eq!(
            data.error_code,
            ResponseError::CorruptMessage.code(),
            "at {offset}"
        );
    }
    // A consumer that seeks past it reads on, to the end of the log.
    let mut offset = damage_end;
    let mut read = 0;
    for _ in 0..1000 {
        let data = client.fetch("hurt", 0, offset).await;
        assert_eq!(data.error_code, 0);
        if offset == data.high_watermark {
            break;
        }
        let got = offsets(data.records.as_ref().unwrap());
        assert_eq!(got[0].0, offset);
        offset = got.last().unwrap().1;
        read += got.len();
    }
    assert_eq!(offset, 180);
    assert!(read > 0);
    // And it still takes writes.
    assert_eq!(
        client.produce("hurt", 0, batch(&[(None, "after")])).await,
        (0, 180)
    );
    drop(client);
    broker.shutdown().await.unwrap();
    // An orderly stop, but hurt-1 was never loaded: the data directory must not be marked
    // clean, or a start after its repair would trust its files without recovering them.
    assert!(
        !dir.path().join(".clean-shutdown").exists(),
        "no clean-shutdown marker while a partition was never loaded"
    );
}

/// A partition whose `partition.metadata` is unreadable, or names another topic id, goes
/// offline alone: the broker starts and the topic's other partitions serve. Before, one such
/// file stopped the whole broker from starting.
#[tokio::test]
async fn bad_partition_metadata_takes_only_that_partition_offline() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::start(dir.path(), &[]).await;
    let mut client = Client::connect(broker.local_addr()).await;
    let created = client.create_topic("meta", 3, &[]).await;
    assert_eq!(created.topics[0].error_code, 0);
    for partition in 0..3 {
        let (code, _) = client
            .produce("meta", partition, batch(&[(None, "before")]))
            .await;
        assert_eq!(code, 0);
    }
    drop(client);
    broker.shutdown().await.unwrap();

    let metadata_of = |p: i32| {
        dir.path()
            .join(format!("meta-{p}"))
            .join("partition.metadata")
    };
    // Partition 1: garbage. Partition 2: a well-formed file naming another topic id.
    fs::write(metadata_of(1), b"\xff\x00 not a metadata file").unwrap();
    let good = fs::read_to_string(metadata_of(0)).unwrap();
    let other_id = "topic_id: AAAAAAAAAAAAAAAAAAAAAQ";
    let foreign: String = good
        .lines()
        .map(|l| {
            if l.starts_with("topic_id") {
                other_id
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert_ne!(foreign, good);
    fs::write(metadata_of(2), foreign.as_bytes()).unwrap();

    let broker = common::start(dir.path(), &[]).await;
    let mut client = Client::connect(broker.local_addr()).await;
    let storage_error = ResponseError::KafkaStorageError.code();
    assert_eq!(
        client.produce("meta", 0, batch(&[(None, "after")])).await,
        (0, 1),
        "partition 0 serves"
    );
    for partition in [1, 2] {
        assert_eq!(
            client
                .produce("meta", partition, batch(&[(None, "after")]))
                .await
                .0,
            storage_error,
            "partition {partition} is offline"
        );
        assert_eq!(
            client.fetch("meta", partition, 0).await.error_code,
            storage_error
        );
    }
    drop(client);
    broker.shutdown().await.unwrap();
    // Nothing was rewritten: the operator's evidence is left as it was.
    assert_eq!(
        fs::read(metadata_of(1)).unwrap(),
        b"\xff\x00 not a metadata file"
    );
    assert_eq!(fs::read_to_string(metadata_of(2)).unwrap(), foreign);
}
