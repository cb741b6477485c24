//! One client must not lock everyone else out or pin the broker's memory: per-address
//! connection caps, idle connections closed, half-sent requests closed at their
//! deadline with their memory returned, the request byte budget, and rate-limited
//! warnings. The memory tests run the real `sluice-broker` binary as a child process and
//! read its resident set size from /proc, so they see what an operator would.

mod common;

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use common::{Client, TIMEOUT};
use kafka_protocol::messages::MetadataRequest;
use sluice_broker::BrokerHandle;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MIB: usize = 1024 * 1024;

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_over_its_cap_does_not_lock_out_another() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::start(
        dir.path(),
        &[
            ("max.connections.per.ip", "3"),
            ("max.connections.per.ip.overrides", "127.0.0.3:1"),
        ],
    )
    .await;
    let addr = broker.local_addr();
    let mut hog = Vec::new();
    for _ in 0..3 {
        let mut c = Client::connect_from(ip("127.0.0.1"), addr).await;
        c.send(1, &MetadataRequest::default()).await;
        hog.push(c);
    }
    // Over the cap: closed at once, without an answer.
    for _ in 0..2 {
        let mut extra = Client::connect_from(ip("127.0.0.1"), addr).await;
        let (_, request) = extra.encode(1, &MetadataRequest::default());
        // The write may already fail if the close came first; either way it must close.
        let _ = extra.stream.write_all(&request).await;
        assert!(extra.closed_by_broker().await, "the address is at its cap");
    }
    // Another address is served.
    let mut other = Client::connect_from(ip("127.0.0.2"), addr).await;
    assert_eq!(
        other
            .send(1, &MetadataRequest::default())
            .await
            .brokers
            .len(),
        1
    );
    // The override gives 127.0.0.3 one connection.
    let mut third = Client::connect_from(ip("127.0.0.3"), addr).await;
    third.send(1, &MetadataRequest::default()).await;
    let mut over = Client::connect_from(ip("127.0.0.3"), addr).await;
    assert!(over.closed_by_broker().await);
    // The first address gets a slot back when one of its connections closes.
    drop(hog.pop());
    let limits = broker.state().limits.clone();
    common::wait_until("the closed connection's slot is freed", || {
        limits.connection_count() == 4
    })
    .await;
    let mut again = Client::connect_from(ip("127.0.0.1"), addr).await;
    again.send(1, &MetadataRequest::default()).await;
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_one_address_cannot_take_every_connection() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::start(dir.path(), &[]).await;
    let addr = broker.local_addr();
    let cap = broker.state().config.max_connections_per_ip;
    assert!(cap < broker.state().config.max_connections);
    // One address opens connections and sends nothing, as the probe did.
    let mut hog = Vec::with_capacity(cap);
    for _ in 0..cap {
        hog.push(TcpStream::connect(addr).await.unwrap());
    }
    let limits = broker.state().limits.clone();
    common::wait_until("the hog's connections are admitted", || {
        limits.connection_count() == cap
    })
    .await;
    let mut refused = TcpStream::connect(addr).await.unwrap();
    assert!(closed_within(&mut refused, TIMEOUT).await);
    let mut other = Client::connect_from(ip("127.0.0.2"), addr).await;
    assert_eq!(
        other
            .send(1, &MetadataRequest::default())
            .await
            .brokers
            .len(),
        1
    );
    drop(hog);
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_after_connections_max_idle_ms() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::start(dir.path(), &[("connections.max.idle.ms", "300")]).await;
    let addr = broker.local_addr();
    let mut producer = Client::connect(addr).await;
    producer.create_topic("idle", 1, &[]).await;

    // A connection that never sends anything, and one idle after a request.
    let mut silent = Client::connect(addr).await;
    let mut used = Client::connect(addr).await;
    // Taken before the request: the broker's last activity on it comes after, so
    // this bound holds however late the test sees the reply.
    let idle_since = Instant::now();
    used.send(1, &MetadataRequest::default()).await;
    assert!(silent.closed_by_broker().await);
    assert!(used.closed_by_broker().await);
    assert!(idle_since.elapsed() >= Duration::from_millis(295));

    // A connection waiting for its long poll is not idle: it gets its answer.
    let mut polling = Client::connect(addr).await;
    let started = Instant::now();
    let response = polling
        .send(12, &Client::fetch_request("idle", 0, 0, 1200, 1))
        .await;
    assert!(started.elapsed() >= Duration::from_millis(1150));
    assert_eq!(response.responses[0].partitions[0].error_code, 0);
    // ...and it is closed once idle.
    assert!(polling.closed_by_broker().await);
    // The producer connection was idle too.
    assert!(producer.closed_by_broker().await);
    broker.shutdown().await.unwrap();
}

/// Starts a broker with `props`, stores about 3.6 MB in topic "big", and opens a
/// connection from 127.0.0.5 that pipelines 400 Fetches of it (about 1 MB of answer
/// each) and never reads a reply. Returns once the broker has stopped reading from it
/// (the socket's buffers are full both ways), with the writing task.
async fn client_that_reads_no_replies(
    dir: &Path,
    props: &[(&str, &str)],
) -> (BrokerHandle, tokio::task::JoinHandle<()>) {
    let broker = common::start(dir, props).await;
    let addr = broker.local_addr();
    let mut setup = Client::connect(addr).await;
    setup.create_topic("big", 1, &[]).await;
    let value = "x".repeat(900 * 1024);
    for _ in 0..4 {
        let (code, _) = setup
            .produce("big", 0, common::batch(&[(None, &value)]))
            .await;
        assert_eq!(code, 0);
    }
    drop(setup);
    let limits = broker.state().limits.clone();
    common::wait_until("the setup connection is gone", || {
        limits.connection_count() == 0
    })
    .await;
    let mut stuck = Client::connect_from(ip("127.0.0.5"), addr).await;
    let mut all = Vec::new();
    for _ in 0..400 {
        let (_, frame) = stuck.encode(12, &Client::fetch_request("big", 0, 0, 0, 1));
        all.extend_from_slice(&frame);
    }
    // Writes until the broker stops reading (or closes); never reads.
    let writer = tokio::spawn(async move {
        let _ = stuck.stream.write_all(&all).await;
        std::future::pending::<()>().await;
    });
    common::wait_until("the stuck connection is busy", || limits.busy_count() == 1).await;
    (broker, writer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reads_no_replies_is_closed_after_connections_max_idle_ms() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, writer) = client_that_reads_no_replies(
        dir.path(),
        &[("connections.max.idle.ms", "300"), ("max.connections", "1")],
    )
    .await;
    let limits = broker.state().limits.clone();
    let started = Instant::now();
    // Its replies stop moving; 300 ms later it is closed and its slot freed.
    common::wait_until("the connection that reads nothing is closed", || {
        limits.connection_count() == 0
    })
    .await;
    eprintln!(
        "closed {:?} after the broker stopped reading from it",
        started.elapsed()
    );
    let mut next = Client::connect_from(ip("127.0.0.6"), addr_of(&broker)).await;
    let response = tokio::time::timeout(TIMEOUT, next.send(1, &MetadataRequest::default()))
        .await
        .expect("a new client gets the freed slot");
    assert_eq!(response.brokers.len(), 1);
    writer.abort();
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reads_no_replies_is_evicted_at_max_connections() {
    let dir = tempfile::tempdir().unwrap();
    // Idle expiry far away: only eviction can make room.
    let (broker, writer) = client_that_reads_no_replies(
        dir.path(),
        &[
            ("connections.max.idle.ms", "600000"),
            ("max.connections", "1"),
        ],
    )
    .await;
    let limits = broker.state().limits.clone();
    assert_eq!(limits.connection_count(), 1);
    let started = Instant::now();
    let mut next = Client::connect_from(ip("127.0.0.6"), addr_of(&broker)).await;
    let response = tokio::time::timeout(TIMEOUT, next.send(1, &MetadataRequest::default()))
        .await
        .expect("the connection that reads nothing is closed to admit a new one");
    assert_eq!(response.brokers.len(), 1);
    eprintln!("admitted after {:?}", started.elapsed());
    assert_eq!(limits.connection_count(), 1);
    writer.abort();
    broker.shutdown().await.unwrap();
}

fn addr_of(broker: &BrokerHandle) -> SocketAddr {
    broker.local_addr()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_large_and_small_requests_pass_through_a_tight_budget_in_order() {
    // The smallest budget allowed: one request of the largest size at a time.
    let dir = tempfile::tempdir().unwrap();
    let broker = common::start(
        dir.path(),
        &[
            ("socket.request.max.bytes", "1048576"),
            ("queued.max.request.bytes", "1048576"),
        ],
    )
    .await;
    let mut client = Client::connect(broker.local_addr()).await;
    client.create_topic("pipe", 1, &[]).await;
    // Large (over the 16 KiB window), small and just-over-the-window requests, 10 MiB
    // in one write: each large one must wait for the one before to be handled.
    let sizes = [700 * 1024, 10, 17 * 1024, 900 * 1024, 20, 16 * 1024 - 200];
    let mut all = Vec::new();
    let mut ids = Vec::new();
    for i in 0..48 {
        let value = "v".repeat(sizes[i % sizes.len()]);
        let (id, frame) = client.encode(
            9,
            &Client::produce_request("pipe", 0, 1, common::batch(&[(None, &value)])),
        );
        all.extend_from_slice(&frame);
        ids.push(id);
    }
    assert!(all.len() > 10 * MIB);
    client.write(&all).await;
    for (offset, id) in ids.into_iter().enumerate() {
        let frame = client.read_frame().await.unwrap();
        let r = Client::decode::<kafka_protocol::messages::ProduceRequest>(9, id, frame);
        let p = &r.responses[0].partition_responses[0];
        assert_eq!((p.error_code, p.base_offset), (0, offset as i64));
    }
    let limits = broker.state().limits.clone();
    common::wait_until("every reservation is returned", || {
        limits.budget_available() == 1048576
    })
    .await;
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_stalling_large_requests_holds_at_most_half_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::start(
        dir.path(),
        &[
            ("queued.max.request.bytes", &(64 * MIB).to_string()),
            ("socket.request.max.bytes", &(16 * MIB).to_string()),
            ("request.read.timeout.ms", "60000"),
        ],
    )
    .await;
    let addr = broker.local_addr();
    // Eight connections from one address announce 16 MiB requests (128 MiB in all, twice
    // the budget) and send nothing more.
    let mut stalled = Vec::new();
    for _ in 0..8 {
        let mut c = Client::connect_from(ip("127.0.0.1"), addr).await;
        c.write(&frame_header(16 * MIB - 100)).await;
        stalled.push(c);
    }
    // Two requests' worth (32 MiB less the bytes already read) is reserved; the six
    // others wait for the address's share, not for the shared budget.
    let limits = broker.state().limits.clone();
    common::wait_until("the address holds its half of the budget", || {
        limits.budget_available() < 33 * MIB
    })
    .await;
    let available = limits.budget_available();
    assert!(available >= 32 * MIB, "{available}");
    // Another address's large request is read and answered at once.
    let mut other = Client::connect_from(ip("127.0.0.2"), addr).await;
    let records = bytes::Bytes::from(vec![7u8; 5 * MIB]);
    let response = tokio::time::timeout(
        Duration::from_secs(10),
        other.send(9, &Client::produce_request("t", 0, 1, records)),
    )
    .await
    .expect("a large request from another address is not held up");
    assert_eq!(response.responses.len(), 1);
    assert_eq!(
        limits.budget_available(),
        available,
        "its reservation returned"
    );
    drop(stalled);
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_request_waiting_for_the_budget_does_not_hold_up_smaller_ones() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::start(
        dir.path(),
        &[
            ("queued.max.request.bytes", &(64 * MIB).to_string()),
            ("socket.request.max.bytes", &(32 * MIB).to_string()),
            ("request.read.timeout.ms", "60000"),
        ],
    )
    .await;
    let addr = broker.local_addr();
    let mut setup = Client::connect(addr).await;
    setup.create_topic("t", 1, &[]).await;
    // 48 MiB held by stalled 16 MiB announcements from two addresses.
    let mut stalled = Vec::new();
    for (from, count) in [("127.0.0.1", 2), ("127.0.0.2", 1)] {
        for _ in 0..count {
            let mut c = Client::connect_from(ip(from), addr).await;
            c.write(&frame_header(16 * MIB)).await;
            stalled.push(c);
        }
    }
    let limits = broker.state().limits.clone();
    common::wait_until("48 MiB of the budget is held", || {
        limits.budget_available() < 17 * MIB
    })
    .await;
    // A 30 MiB announcement from a third address waits for the budget and takes what
    // is freed as it waits.
    let mut large = Client::connect_from(ip("127.0.0.3"), addr).await;
    large.write(&frame_header(30 * MIB)).await;
    common::wait_until("the large request waits for the budget", || {
        limits.budget_available() < 9 * MIB
    })
    .await;
    // A 20 KiB produce (over the 16 KiB window) from a fourth address is answered.
    let mut medium = Client::connect_from(ip("127.0.0.4"), addr).await;
    let value = "v".repeat(20 * 1024);
    let started = Instant::now();
    let response = tokio::time::timeout(
        Duration::from_secs(10),
        medium.send(
            9,
            &Client::produce_request("t", 0, 1, common::batch(&[(None, &value)])),
        ),
    )
    .await
    .expect("a 20 KiB request is not held up by a large one waiting for the budget");
    assert_eq!(response.responses[0].partition_responses[0].error_code, 0);
    eprintln!("20 KiB produce answered in {:?}", started.elapsed());
    drop(stalled);
    drop(large);
    broker.shutdown().await.unwrap();
}

/// The real broker binary as a child process over its own temp dir.
struct ChildBroker {
    child: Child,
    addr: SocketAddr,
    stderr: PathBuf,
    _dir: tempfile::TempDir,
}

impl ChildBroker {
    fn start(props: &[(&str, &str)]) -> ChildBroker {
        let dir = tempfile::tempdir().unwrap();
        let stderr = dir.path().join("broker.stderr");
        let data = dir.path().join("data");
        let mut command = Command::new(env!("CARGO_BIN_EXE_sluice-broker"));
        command
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(&data)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap());
        for (name, value) in props {
            command.env(sluice_broker::config::env_var_name(name), value);
        }
        let mut child = command.spawn().expect("start sluice-broker");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.strip_prefix("listening on ") {
                    let _ = tx.send(addr.parse::<SocketAddr>().unwrap());
                }
            }
        });
        let addr = match rx.recv_timeout(TIMEOUT) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "broker did not start: {}",
                    std::fs::read_to_string(&stderr).unwrap_or_default()
                );
            }
        };
        ChildBroker {
            child,
            addr,
            stderr,
            _dir: dir,
        }
    }

    /// Resident set size in MiB, from /proc/<pid>/status.
    fn rss_mib(&self) -> f64 {
        rss_mib_of(format!("/proc/{}/status", self.child.id()))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap()
    }
}

fn rss_mib_of(status: impl AsRef<Path>) -> f64 {
    let text = std::fs::read_to_string(status).unwrap();
    let kib: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc status");
    kib / 1024.0
}

impl Drop for ChildBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The start of a Produce request frame announcing `size` bytes (header only).
fn frame_header(size: usize) -> BytesMut {
    let mut b = BytesMut::new();
    b.put_i32(size as i32);
    b.put_i16(0); // Produce
    b.put_i16(9);
    b.put_i32(1);
    b
}

/// Polls the child's RSS until `done` holds for it; returns the last value.
async fn wait_for_rss(broker: &ChildBroker, what: &str, done: impl Fn(f64) -> bool) -> f64 {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let rss = broker.rss_mib();
        if done(rss) {
            return rss;
        }
        assert!(Instant::now() < deadline, "{what}: RSS {rss:.1} MiB");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether the broker closed `stream` (EOF or reset) within `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(limit, stream.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_large_request_is_closed_at_its_deadline_and_its_memory_returned() {
    let broker = ChildBroker::start(&[("request.read.timeout.ms", "3000")]);
    let mut probe = Client::connect(broker.addr).await;
    probe.send(1, &MetadataRequest::default()).await;
    let baseline = broker.rss_mib();

    // Announce 99 MiB, send 64 MiB of it, stall.
    let mut stream = TcpStream::connect(broker.addr).await.unwrap();
    let mut sent = frame_header(99 * MIB);
    sent.resize(64 * MIB, 7);
    // The timeout runs from the last byte that arrived, so at least this long after
    // the first one.
    let first_byte = Instant::now();
    stream.write_all(&sent).await.unwrap();
    let held = wait_for_rss(&broker, "the sent bytes are held", |rss| {
        rss >= baseline + 56.0
    })
    .await;

    assert!(
        closed_within(&mut stream, Duration::from_secs(10)).await,
        "the half-sent request is closed at its deadline"
    );
    let closed_after = first_byte.elapsed();
    assert!(
        closed_after >= Duration::from_millis(2900),
        "{closed_after:?}"
    );
    let after = wait_for_rss(&broker, "the memory is returned", |rss| {
        rss <= baseline + 16.0
    })
    .await;
    eprintln!(
        "RSS: baseline {baseline:.1} MiB, holding the stalled request {held:.1} MiB, \
         after the close {after:.1} MiB (closed after {closed_after:?})"
    );
    // Others were served all along.
    probe.send(1, &MetadataRequest::default()).await;
    assert!(broker
        .log()
        .contains("request incomplete: no bytes for request.read.timeout.ms"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_keeps_arriving_is_not_cut_by_request_read_timeout_ms() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::start(dir.path(), &[("request.read.timeout.ms", "1000")]).await;
    let mut client = Client::connect(broker.local_addr()).await;
    client.create_topic("slow", 1, &[]).await;
    // A 40 KiB produce sent in ten pieces 250 ms apart: 2.25 s in all, more than the
    // timeout, but never 1 s without bytes.
    let value = "s".repeat(40 * 1024);
    let (id, frame) = client.encode(
        9,
        &Client::produce_request("slow", 0, 1, common::batch(&[(None, &value)])),
    );
    let started = Instant::now();
    let piece = frame.len().div_ceil(10);
    for (i, chunk) in frame.chunks(piece).enumerate() {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        client.write(chunk).await;
    }
    assert!(started.elapsed() >= Duration::from_millis(2000));
    let frame = client.read_frame().await.expect("answered, not closed");
    let r = Client::decode::<kafka_protocol::messages::ProduceRequest>(9, id, frame);
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handled_large_request_leaves_no_memory_on_its_open_connection() {
    let broker = ChildBroker::start(&[]);
    let mut client = Client::connect(broker.addr).await;
    client.send(1, &MetadataRequest::default()).await;
    let baseline = broker.rss_mib();
    // A 60 MiB produce (refused: no such topic, and too large), then a small request
    // pipelined right behind it, so bytes of the next request follow the large one.
    let records = bytes::Bytes::from(vec![7u8; 60 * MIB]);
    let (big_id, big) = client.encode(9, &Client::produce_request("nowhere", 0, 1, records));
    let (small_id, small) = client.encode(1, &MetadataRequest::default());
    let mut both = big.to_vec();
    both.extend_from_slice(&small);
    client.write(&both).await;
    let frame = client.read_frame().await.unwrap();
    let r = Client::decode::<kafka_protocol::messages::ProduceRequest>(9, big_id, frame);
    assert_ne!(r.responses[0].partition_responses[0].error_code, 0);
    let frame = client.read_frame().await.unwrap();
    Client::decode::<MetadataRequest>(1, small_id, frame);
    // The connection stays open and idle; the request's memory must not stay with it.
    let after = wait_for_rss(&broker, "the large request's memory is returned", |rss| {
        rss <= baseline + 16.0
    })
    .await;
    eprintln!("RSS: baseline {baseline:.1} MiB, after a 60 MiB request {after:.1} MiB");
    client.send(1, &MetadataRequest::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_requests_never_take_the_broker_past_the_budget() {
    const BUDGET_MIB: usize = 64;
    let budget = (BUDGET_MIB * MIB).to_string();
    let max_request = (32 * MIB).to_string();
    let broker = ChildBroker::start(&[
        ("queued.max.request.bytes", &budget),
        ("socket.request.max.bytes", &max_request),
        ("request.read.timeout.ms", "60000"),
    ]);
    let mut probe = Client::connect(broker.addr).await;
    probe.send(1, &MetadataRequest::default()).await;
    let baseline = broker.rss_mib();

    // Eight clients, from eight addresses (one address may hold only half the budget),
    // each try to send all but the last byte of a 25 MiB request: 200 MiB in all,
    // over three budgets (two of them fit in the budget less its reserved part).
    let mut writers = Vec::new();
    for i in 1..=8 {
        let from = ip(&format!("127.0.0.{i}"));
        let mut stream = Client::connect_from(from, broker.addr).await.stream;
        writers.push(tokio::spawn(async move {
            let mut sent = frame_header(25 * MIB);
            sent.resize(25 * MIB + 4 - 1, 7);
            let _ = stream.write_all(&sent).await;
            // Stall with the connection open.
            std::future::pending::<()>().await;
        }));
    }
    // The broker reads as much as the budget lets it (two requests' worth)...
    let rose = wait_for_rss(&broker, "the budget's worth is read", |rss| {
        rss >= baseline + 40.0
    })
    .await;
    // ...and no more, however long the clients push.
    let mut peak = rose;
    let watch_until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < watch_until {
        peak = peak.max(broker.rss_mib());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Small requests are still answered while the budget is spent.
    let started = Instant::now();
    probe.send(1, &MetadataRequest::default()).await;
    let small_latency = started.elapsed();
    peak = peak.max(broker.rss_mib());
    eprintln!(
        "RSS: baseline {baseline:.1} MiB, peak {peak:.1} MiB with 200 MiB pushed at a \
         {BUDGET_MIB} MiB budget; a metadata request took {small_latency:?}"
    );
    assert!(
        peak <= baseline + BUDGET_MIB as f64 + 16.0,
        "peak RSS {peak:.1} MiB over baseline {baseline:.1} + budget {BUDGET_MIB} MiB"
    );
    for w in writers {
        w.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_request_warnings_are_rate_limited_per_peer() {
    let broker = ChildBroker::start(&[]);
    let started = Instant::now();
    for _ in 0..40 {
        let mut stream = TcpStream::connect(broker.addr).await.unwrap();
        // api key 9999 does not exist: the broker closes the connection and says why.
        let mut frame = BytesMut::new();
        frame.put_i32(8);
        frame.put_i16(9999);
        frame.put_i16(0);
        frame.put_i32(1);
        stream.write_all(&frame).await.unwrap();
        assert!(closed_within(&mut stream, TIMEOUT).await);
    }
    // Still serving, and the log has one line for the forty.
    let mut probe = Client::connect(broker.addr).await;
    probe.send(1, &MetadataRequest::default()).await;
    let log = broker.log();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("closing connection"))
        .collect();
    // One line per 10 s interval: one, unless a loaded machine took that long.
    let intervals = 1 + started.elapsed().as_secs() as usize / 10;
    assert!(
        !warnings.is_empty() && warnings.len() <= intervals,
        "{warnings:#?}"
    );
    assert!(
        warnings[0].contains("unknown api key 9999"),
        "{}",
        warnings[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_one_address_can_take_most_of_is_warned_about_at_start() {
    const WARNING: &str = "one address may hold more than half of the queued.max.request.bytes";
    let size = MIB.to_string();
    let budget = (2 * MIB - 1).to_string();
    let tight = ChildBroker::start(&[
        ("socket.request.max.bytes", &size),
        ("queued.max.request.bytes", &budget),
    ]);
    let budget = (2 * MIB).to_string();
    let enough = ChildBroker::start(&[
        ("socket.request.max.bytes", &size),
        ("queued.max.request.bytes", &budget),
    ]);
    // Both are serving, so their start-up lines are written.
    for broker in [&tight, &enough] {
        let mut probe = Client::connect(broker.addr).await;
        probe.send(1, &MetadataRequest::default()).await;
    }
    assert!(tight.log().contains(WARNING), "{}", tight.log());
    assert!(!enough.log().contains(WARNING), "{}", enough.log());
}
