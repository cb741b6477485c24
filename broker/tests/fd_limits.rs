//! Running out of file descriptors: the broker runs as a child process under a low
//! `RLIMIT_NOFILE` (set in `pre_exec`), raises its soft limit to the hard one, refuses
//! partitions past the limit it derives (POLICY_VIOLATION, nothing created), keeps
//! accepting connections, cleans up a create that runs out of descriptors part-way,
//! and restarts cleanly (after SIGTERM and after SIGKILL) serving every partition.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{batch, name, Client, TIMEOUT};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiVersionsRequest, CreatePartitionsRequest, MetadataRequest, MetadataResponse,
};

/// Partitions of `__consumer_offsets`, made at start (`offsets.topic.num.partitions`).
const OFFSETS_PARTITIONS: usize = 10;

/// A `sluice-broker` child process over `dir/data`, stderr in `dir/broker.log`.
struct BrokerProcess {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl BrokerProcess {
    fn spawn(dir: &Path, soft: u64, hard: u64, extra: &[&str]) -> BrokerProcess {
        let log = dir.join("broker.log");
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_sluice-broker"));
        command
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(dir.join("data"))
            .env(
                "SLUICE_OFFSETS_TOPIC_NUM_PARTITIONS",
                OFFSETS_PARTITIONS.to_string(),
            )
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        for pair in extra.chunks(2) {
            command.env(pair[0], pair[1]);
        }
        // SAFETY: only setrlimit, which is async-signal-safe, runs between fork and exec.
        unsafe {
            command.pre_exec(move || {
                let limit = libc::rlimit {
                    rlim_cur: soft,
                    rlim_max: hard,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command.spawn().expect("start sluice-broker");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.strip_prefix("listening on ") {
                    let _ = tx.send(addr.trim().to_owned());
                }
            }
        });
        match rx.recv_timeout(TIMEOUT) {
            Ok(addr) => BrokerProcess {
                child,
                addr: addr.parse().unwrap(),
                log,
            },
            Err(_) => {
                let _ = child.kill();
                let status = child.wait();
                panic!(
                    "broker did not start ({status:?}); its log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        }
    }

    /// Runs the broker where it cannot start; returns its exit code and stderr.
    fn fail_to_start(dir: &Path, nofile: u64) -> (Option<i32>, String) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_sluice-broker"));
        command
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(dir.join("data"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // SAFETY: only setrlimit, which is async-signal-safe, runs between fork and exec.
        unsafe {
            command.pre_exec(move || {
                let limit = libc::rlimit {
                    rlim_cur: nofile,
                    rlim_max: nofile,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command.spawn().expect("start sluice-broker");
        let deadline = Instant::now() + TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the broker started (or hung) with {nofile} open files allowed");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        (status.code(), stderr)
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn open_files(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .unwrap()
            .count()
    }

    /// The "Max open files" soft and hard limits of the running broker.
    fn open_file_limits(&self) -> (u64, u64) {
        let limits = std::fs::read_to_string(format!("/proc/{}/limits", self.pid())).unwrap();
        let line = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .unwrap();
        let numbers: Vec<u64> = line
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        (numbers[0], numbers[1])
    }

    /// Sends `signal` and waits (bounded) for the exit; returns the exit code.
    fn stop(mut self, signal: i32) -> Option<i32> {
        // SAFETY: kill on our own child's pid.
        unsafe { libc::kill(self.pid(), signal) };
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(Instant::now() < deadline, "broker did not exit in time");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- broker log ---\n{}", self.log_text());
        }
    }
}

/// Names of the partition directories of `topic` in the data directory.
fn partition_dirs(dir: &Path, topic: &str) -> Vec<String> {
    std::fs::read_dir(dir.join("data"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| {
            n.strip_prefix(topic)
                .and_then(|rest| rest.strip_prefix('-'))
                .is_some_and(|rest| rest.bytes().next().is_some_and(|b| b.is_ascii_digit()))
        })
        .collect()
}

fn auto_create(topic: &str) -> MetadataRequest {
    MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(name(topic)))
        ]))
        .with_allow_auto_topic_creation(true)
}

fn grow(topic: &str, count: i32) -> CreatePartitionsRequest {
    CreatePartitionsRequest::default()
        .with_topics(vec![CreatePartitionsTopic::default()
            .with_name(name(topic))
            .with_count(count)])
        .with_timeout_ms(5000)
}

/// Every topic `t<i>` has the one record produced into it.
async fn check_served(addr: SocketAddr, topics: usize) {
    let mut client = Client::connect(addr).await;
    for i in 0..topics {
        let data = client.fetch(&format!("t{i}"), 0, 0).await;
        assert_eq!(data.error_code, 0, "t{i}");
        assert_eq!(data.high_watermark, 1, "t{i}");
        assert!(data.records.is_some_and(|r| !r.is_empty()), "t{i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_past_the_descriptor_limit_are_refused_and_restarts_are_clean() {
    let dir = tempfile::tempdir().unwrap();
    // Soft 128 could not even hold the start (the JVM would raise it too): the broker
    // must raise it to the hard 256.
    let broker = BrokerProcess::spawn(dir.path(), 128, 256, &[]);
    assert_eq!(broker.open_file_limits(), (256, 256));
    // The documented derivation: (256 - 64 reserved) / 2 for connections / 2 per partition.
    let limit = (256 - 64) / 4;
    let log = broker.log_text();
    assert!(
        log.contains("soft 128 -> 256, hard 256"),
        "the raise is logged"
    );
    // The other half of the descriptors: connections cannot starve the partitions.
    assert!(
        log.contains(&format!("max.connections lowered to {}", (256 - 64) / 2)),
        "{log}"
    );

    let mut client = Client::connect(broker.addr).await;
    let huge = client.create_topic("huge", 1000, &[]).await;
    assert_eq!(
        huge.topics[0].error_code,
        ResponseError::PolicyViolation.code()
    );
    let message = huge.topics[0].error_message.as_deref().unwrap_or_default();
    assert!(
        message.contains(&format!("limit of {limit}")) && message.contains("open-file limit"),
        "{message}"
    );
    assert!(partition_dirs(dir.path(), "huge").is_empty());

    // Topics up to the limit work; the next partition is refused, by every route.
    let room = limit - OFFSETS_PARTITIONS;
    for i in 0..room {
        let topic = format!("t{i}");
        let created = client.create_topic(&topic, 1, &[]).await;
        assert_eq!(created.topics[0].error_code, 0, "{topic}");
        assert_eq!(client.produce(&topic, 0, batch(&[(None, "x")])).await.0, 0);
    }
    let over = client.create_topic("over", 1, &[]).await;
    assert_eq!(
        over.topics[0].error_code,
        ResponseError::PolicyViolation.code()
    );
    let m: MetadataResponse = client.send(9, &auto_create("auto")).await;
    assert_eq!(
        m.topics[0].error_code,
        ResponseError::PolicyViolation.code()
    );
    let grown = client.send(3, &grow("t0", 2)).await;
    assert_eq!(
        grown.results[0].error_code,
        ResponseError::PolicyViolation.code()
    );
    for topic in ["over", "auto"] {
        assert!(partition_dirs(dir.path(), topic).is_empty(), "{topic}");
    }
    assert_eq!(partition_dirs(dir.path(), "t0"), vec!["t0-0".to_owned()]);

    // A partition costs one descriptor, so there is room left for clients.
    let files = broker.open_files();
    assert!(
        files < 256 - 60,
        "{files} files open at the partition limit"
    );
    let mut clients = Vec::new();
    for _ in 0..60 {
        let mut c = Client::connect(broker.addr).await;
        c.send(3, &ApiVersionsRequest::default()).await;
        clients.push(c);
    }
    drop(clients);
    drop(client);

    // Restart after a clean stop, then after a crash: everything is served.
    assert_eq!(broker.stop(libc::SIGTERM), Some(0));
    let broker = BrokerProcess::spawn(dir.path(), 256, 256, &[]);
    check_served(broker.addr, room).await;
    assert!(broker.stop(libc::SIGKILL).is_none());
    let broker = BrokerProcess::spawn(dir.path(), 256, 256, &[]);
    check_served(broker.addr, room).await;
    let mut client = Client::connect(broker.addr).await;
    assert_eq!(
        client.create_topic("over", 1, &[]).await.topics[0].error_code,
        ResponseError::PolicyViolation.code(),
        "the limit holds after restarts"
    );
    drop(client);
    assert_eq!(broker.stop(libc::SIGTERM), Some(0));

    // An operator who lowers the limit below one descriptor per partition is told so,
    // and nothing is harmed: the next start with enough descriptors serves everything.
    let (code, stderr) = BrokerProcess::fail_to_start(dir.path(), 40);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("needs one open file per partition: raise the open-file limit"),
        "{stderr}"
    );
    let broker = BrokerProcess::spawn(dir.path(), 256, 256, &[]);
    check_served(broker.addr, room).await;
    assert_eq!(broker.stop(libc::SIGTERM), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_that_runs_out_of_descriptors_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    // A configured limit far above what 256 descriptors hold: the create fails part-way.
    let broker = BrokerProcess::spawn(
        dir.path(),
        256,
        256,
        &["SLUICE_MAX_BROKER_PARTITIONS", "100000"],
    );
    let mut client = Client::connect(broker.addr).await;
    let failed = client
        .create_topic("huge", 1000, &[("retention.ms", "1234")])
        .await;
    assert_ne!(failed.topics[0].error_code, 0);
    let message = failed.topics[0]
        .error_message
        .as_deref()
        .unwrap_or_default();
    assert!(message.contains("Too many open files"), "{message}");
    // The answer comes once the controller has dropped the topic; the replicas already
    // made are then removed by the broker's reconciler, a moment later: wait for it.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = partition_dirs(dir.path(), "huge");
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "replicas of the failed create left behind: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let configs =
        std::fs::read_to_string(dir.path().join("data/topic-configs.toml")).unwrap_or_default();
    assert!(!configs.contains("huge"), "{configs}");

    // The descriptors came back: the broker still serves new clients and new topics.
    for i in 0..3 {
        let mut c = Client::connect(broker.addr).await;
        let topic = format!("t{i}");
        assert_eq!(c.create_topic(&topic, 1, &[]).await.topics[0].error_code, 0);
        assert_eq!(c.produce(&topic, 0, batch(&[(None, "x")])).await.0, 0);
    }
    drop(client);
    assert!(broker.stop(libc::SIGKILL).is_none());
    let broker = BrokerProcess::spawn(dir.path(), 256, 256, &[]);
    check_served(broker.addr, 3).await;
    let mut client = Client::connect(broker.addr).await;
    let m: MetadataResponse = client.send(9, &auto_create("huge")).await;
    assert_eq!(m.topics[0].error_code, 0);
    assert_eq!(
        m.topics[0].partitions.len(),
        1,
        "a fresh topic, no leftovers"
    );
    assert_eq!(broker.stop(libc::SIGTERM), Some(0));
}
