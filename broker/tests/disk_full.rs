//! A full disk, for real: the broker runs as a child process over a small tmpfs the
//! test mounts, the test fills the filesystem with a file of its own, and then frees it.
//!
//! - Without a free-space floor, the partition that hits ENOSPC answers
//!   KAFKA_STORAGE_ERROR, then takes produces again by itself once space is freed (no
//!   restart); every acknowledged record is still there, nothing else is; SIGTERM then
//!   exits 0 and leaves the clean-shutdown marker.
//! - An index entry that needs a new page of its sparse index file on a full disk is an
//!   error (KAFKA_STORAGE_ERROR, then healing), not SIGBUS.
//! - With `log.dir.min.free.bytes`, produce is refused with the retriable
//!   NOT_ENOUGH_REPLICAS before the disk is full, the broker's own writes (a new topic)
//!   still succeed, and produce works again once space is freed.
//!
//! - A failed fsync (injected through storage's fault seam, in an in-process broker):
//!   the acks=all produce waiting for it gets KAFKA_STORAGE_ERROR, not an
//!   acknowledgement, the partition refuses produces, and it comes back once syncs work.
//!
//! Mounting needs root (CI runs as root); elsewhere the tmpfs tests say why and return.

mod common;

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{batch, Client, TIMEOUT};
use kafka_protocol::error::ResponseError;
use sluice_storage::batch::Records;

#[path = "../../storage/tests/support/tmpfs.rs"]
mod tmpfs;
use tmpfs::Tmpfs;

/// The broker binary as a child process, killed if the test ends early.
struct BrokerProcess {
    child: Child,
    addr: std::net::SocketAddr,
}

impl BrokerProcess {
    fn start(data_dir: &Path, env: &[(&str, &str)]) -> BrokerProcess {
        let mut command = Command::new(env!("CARGO_BIN_EXE_sluice-broker"));
        command
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("spawn sluice-broker");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.strip_prefix("listening on ") {
                    let _ = tx.send(addr.to_owned());
                }
            }
        });
        let addr = match rx.recv_timeout(TIMEOUT) {
            Ok(addr) => addr.parse().expect("address"),
            Err(_) => {
                let _ = child.kill();
                panic!("broker did not start within {TIMEOUT:?}");
            }
        };
        BrokerProcess { child, addr }
    }

    /// Sends SIGTERM and returns the exit code (waits with a deadline).
    fn terminate(mut self) -> Option<i32> {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "broker did not stop after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Writes to `path` until the filesystem is full; returns the bytes written.
fn fill(path: &Path) -> u64 {
    let mut file = File::create(path).expect("filler");
    let chunk = vec![0x5au8; 64 * 1024];
    let mut written = 0u64;
    // Bounded: far more chunks than any test filesystem holds.
    for _ in 0..100_000 {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling the disk failed: {e}"),
        }
    }
    // Whatever is left is smaller than a chunk: take it too, byte runs at a time.
    for size in [4096usize, 512, 1] {
        while let Ok(n) = file.write(&chunk[..size]) {
            if n == 0 {
                break;
            }
            written += n as u64;
        }
    }
    written
}

/// The (offset, value) of every record of the partition, read from offset 0.
async fn read_partition(client: &mut Client, topic: &str) -> Vec<(i64, String)> {
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
            for record in Records::decode(bytes::Bytes::copy_from_slice(batch)).unwrap() {
                let record = record.unwrap();
                assert_eq!(record.offset, offset, "offsets follow each other");
                let value = String::from_utf8(record.value.unwrap().to_vec()).unwrap();
                records.push((record.offset, value));
                offset += 1;
            }
        }
    }
    records
}

/// Produces the next record (acks=1); remembers it if acknowledged; returns the code.
async fn produce(client: &mut Client, sent: &mut usize, acked: &mut Vec<(i64, String)>) -> i16 {
    produce_to(client, "full", sent, acked).await
}

async fn produce_to(
    client: &mut Client,
    topic: &str,
    sent: &mut usize,
    acked: &mut Vec<(i64, String)>,
) -> i16 {
    let v = value(*sent);
    *sent += 1;
    let (code, base) = client.produce(topic, 0, batch(&[(None, &v)])).await;
    if code == 0 {
        acked.push((base, v));
    }
    code
}

fn value(i: usize) -> String {
    format!("record-{i:06}-{}", "x".repeat(900))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_offline_on_a_full_disk_heals_once_space_is_freed() {
    let Some(fs) = Tmpfs::mount(24 << 20) else {
        return;
    };
    let data_dir = fs.path.join("data");
    // No floor: the disk must really fill up under the log.
    let broker = BrokerProcess::start(&data_dir, &[("SLUICE_LOG_DIR_MIN_FREE_BYTES", "0")]);
    let mut client = Client::connect(broker.addr).await;
    let created = client.create_topic("full", 1, &[]).await;
    assert_eq!(created.topics[0].error_code, 0);

    let mut acked: Vec<(i64, String)> = Vec::new();
    let mut sent = 0usize;
    for _ in 0..20 {
        assert_eq!(produce(&mut client, &mut sent, &mut acked).await, 0);
    }
    let filler = fs.path.join("filler");
    fill(&filler);
    // The next produces hit ENOSPC: KAFKA_STORAGE_ERROR, and the broker stays up.
    let mut code = 0;
    for _ in 0..200 {
        code = produce(&mut client, &mut sent, &mut acked).await;
        if code != 0 {
            break;
        }
    }
    assert_eq!(code, ResponseError::KafkaStorageError.code());
    assert_eq!(
        produce(&mut client, &mut sent, &mut acked).await,
        ResponseError::KafkaStorageError.code(),
        "the partition is offline"
    );

    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if produce(&mut client, &mut sent, &mut acked).await == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the partition did not come back after space was freed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..5 {
        assert_eq!(produce(&mut client, &mut sent, &mut acked).await, 0);
    }

    // Exactly the acknowledged records, at their offsets, in whole valid batches.
    let stored = read_partition(&mut client, "full").await;
    assert_eq!(stored, acked);

    drop(client);
    assert_eq!(broker.terminate(), Some(0), "a clean stop exits 0");
    assert!(
        data_dir.join(".clean-shutdown").exists(),
        "the clean-shutdown marker is written"
    );

    // And the next start is a clean one that serves the same records.
    let broker = BrokerProcess::start(&data_dir, &[("SLUICE_LOG_DIR_MIN_FREE_BYTES", "0")]);
    let mut client = Client::connect(broker.addr).await;
    assert_eq!(read_partition(&mut client, "full").await, acked);
    drop(client);
    assert_eq!(broker.terminate(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_entry_on_a_full_disk_is_an_error_not_a_crash() {
    let Some(fs) = Tmpfs::mount(16 << 20) else {
        return;
    };
    let data_dir = fs.path.join("data");
    let broker = BrokerProcess::start(&data_dir, &[("SLUICE_LOG_DIR_MIN_FREE_BYTES", "0")]);
    let mut client = Client::connect(broker.addr).await;
    // An index entry after every batch: the next append after the fill writes one into a
    // page of the (sparse) index that has no disk block yet.
    let created = client
        .create_topic("indexed", 1, &[("index.interval.bytes", "1")])
        .await;
    assert_eq!(created.topics[0].error_code, 0);
    let (mut sent, mut acked) = (0usize, Vec::new());
    assert_eq!(
        produce_to(&mut client, "indexed", &mut sent, &mut acked).await,
        0
    );
    let filler = fs.path.join("filler");
    fill(&filler);
    let mut codes = Vec::new();
    for _ in 0..50 {
        codes.push(produce_to(&mut client, "indexed", &mut sent, &mut acked).await);
        if *codes.last().unwrap() != 0 {
            break;
        }
    }
    assert_eq!(
        codes.last(),
        Some(&ResponseError::KafkaStorageError.code()),
        "{codes:?}"
    );
    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + TIMEOUT;
    while produce_to(&mut client, "indexed", &mut sent, &mut acked).await != 0 {
        assert!(Instant::now() < deadline, "the partition did not come back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(read_partition(&mut client, "indexed").await, acked);
    drop(client);
    assert_eq!(
        broker.terminate(),
        Some(0),
        "the broker survived and stops cleanly"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_is_refused_with_a_retriable_error_below_the_free_space_floor() {
    let Some(fs) = Tmpfs::mount(24 << 20) else {
        return;
    };
    let data_dir = fs.path.join("data");
    let floor = 8 << 20;
    let broker = BrokerProcess::start(
        &data_dir,
        &[("SLUICE_LOG_DIR_MIN_FREE_BYTES", &floor.to_string())],
    );
    let mut client = Client::connect(broker.addr).await;
    assert_eq!(
        client.create_topic("floor", 1, &[]).await.topics[0].error_code,
        0
    );
    let (code, _) = client.produce("floor", 0, batch(&[(None, "before")])).await;
    assert_eq!(code, 0);

    // Leave 4 MiB free: below the floor, far from full.
    let filler = fs.path.join("filler");
    let filled = fill(&filler);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&filler)
        .unwrap();
    file.set_len(filled.saturating_sub(4 << 20)).unwrap();
    drop(file);

    let deadline = Instant::now() + TIMEOUT;
    let refused = loop {
        let request = Client::produce_request("floor", 0, 1, batch(&[(None, "probe")]));
        let response: kafka_protocol::messages::ProduceResponse = client.send(9, &request).await;
        let answer = response.responses[0].partition_responses[0].clone();
        if answer.error_code != 0 {
            break answer;
        }
        // Accepted only while the broker's reading of free space is older than the fill.
        assert!(
            Instant::now() < deadline,
            "produce never refused below the floor"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(refused.error_code, ResponseError::NotEnoughReplicas.code());
    assert!(ResponseError::NotEnoughReplicas.is_retriable());
    let message = refused
        .error_message
        .map(|m| m.to_string())
        .unwrap_or_default();
    assert!(
        message.contains("log.dir.min.free.bytes"),
        "the message says why: {message}"
    );
    for _ in 0..3 {
        let (code, _) = client
            .produce("floor", 0, batch(&[(None, "refused")]))
            .await;
        assert_eq!(code, ResponseError::NotEnoughReplicas.code());
    }
    // The broker's own writes still fit: a topic can be created (metadata files,
    // directories, segments).
    assert_eq!(
        client.create_topic("still-works", 1, &[]).await.topics[0].error_code,
        0
    );

    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let (code, _) = client.produce("floor", 0, batch(&[(None, "after")])).await;
        if code == 0 {
            break;
        }
        assert_eq!(code, ResponseError::NotEnoughReplicas.code());
        assert!(
            Instant::now() < deadline,
            "produce not accepted after space was freed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let values: Vec<String> = read_partition(&mut client, "floor")
        .await
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    assert_eq!(values.first().map(String::as_str), Some("before"));
    assert!(
        !values.iter().any(|v| v == "refused"),
        "nothing refused was stored"
    );
    drop(client);
    assert_eq!(broker.terminate(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fsync_is_never_acknowledged_and_the_partition_heals_after() {
    use sluice_storage::faults::{self, Fault, Op};
    let dir = tempfile::tempdir().unwrap();
    let broker = common::start(dir.path(), &[("log.flush.policy", "always")]).await;
    let mut client = Client::connect(broker.local_addr()).await;
    assert_eq!(
        client.create_topic("sync", 1, &[]).await.topics[0].error_code,
        0
    );
    let acks_all = |v: &str| Client::produce_request("sync", 0, -1, batch(&[(None, v)]));
    let answer = |r: kafka_protocol::messages::ProduceResponse| {
        let p = &r.responses[0].partition_responses[0];
        (p.error_code, p.base_offset)
    };
    assert_eq!(answer(client.send(9, &acks_all("synced")).await), (0, 0));
    let partition_dir = dir.path().join("sync-0");
    let log = broker
        .state()
        .topics
        .get("sync")
        .unwrap()
        .partition(0)
        .unwrap()
        .log
        .clone();
    assert_eq!(log.durable_offset(), 1);

    let fault = faults::arm(Fault::always(&partition_dir, Op::Sync, libc::EIO));
    let (code, _) = answer(client.send(9, &acks_all("not-synced")).await);
    assert_eq!(
        code,
        ResponseError::KafkaStorageError.code(),
        "an acks=all produce whose fsync failed is not acknowledged"
    );
    assert_eq!(
        log.durable_offset(),
        1,
        "nothing unsynced is reported durable"
    );
    let (code, _) = client.produce("sync", 0, batch(&[(None, "offline")])).await;
    assert_eq!(
        code,
        ResponseError::KafkaStorageError.code(),
        "the partition is offline"
    );

    fault.clear();
    let deadline = Instant::now() + TIMEOUT;
    let offset = loop {
        let (code, offset) = answer(client.send(9, &acks_all("after")).await);
        if code == 0 {
            break offset;
        }
        assert_eq!(code, ResponseError::KafkaStorageError.code());
        assert!(Instant::now() < deadline, "the partition did not heal");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // The record whose sync failed was kept (re-checked, rewritten and synced by the
    // heal), so the next one follows it.
    assert_eq!(offset, 2);
    assert_eq!(log.durable_offset(), 3);
    let values: Vec<String> = read_partition(&mut client, "sync")
        .await
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    assert_eq!(values, ["synced", "not-synced", "after"]);
    drop(client);
    broker.shutdown().await.expect("clean shutdown");
    assert!(dir.path().join(".clean-shutdown").exists());
}
