//! Test harness: a real broker for the integration tests.
//!
//! [`Broker::start`] runs the `sluice-broker` binary as a child process on
//! `127.0.0.1:0` with a fresh temporary data directory, and waits (with a deadline) for
//! the `listening on IP:PORT` line it prints. The binary is `$SLUICE_BROKER_BIN`, else
//! the newest of `target/release/sluice-broker` and `target/debug/sluice-broker`; the
//! tests do not build it (`cargo build --bin sluice-broker` does).
//!
//! To run the same tests against another Kafka-compatible broker that is already
//! running (Apache Kafka from `scripts/peers/kafka.sh`, for instance), set
//! `SLUICE_TEST_BOOTSTRAP=host:port`. Every test uses its own uniquely named topics and
//! groups, so they can share one broker. (Tests that restart the broker then only check
//! what they can without a restart.)
//!
//! The broker's log goes to `broker.log` in its temporary directory and is printed when
//! a test fails.
//!
//! [`LossyProxy`] sits between clients and a local broker (which then advertises the
//! proxy's address) and can lose the broker's answers on demand, the way a broker that
//! dies between writing a batch and answering does.

#![allow(dead_code)] // each test binary uses a different part of the harness

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, SystemTime};

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use sluice_storage::batch::{self, BatchHeader};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A running broker, stopped (and its data removed) on drop.
pub struct Broker {
    pub addr: String,
    child: Option<Child>,
    /// Data directory and `broker.log` (the broker's stderr), kept for restarts.
    dir: Option<tempfile::TempDir>,
    /// Extra command-line arguments, kept for restarts.
    args: Vec<String>,
}

const START_DEADLINE: Duration = Duration::from_secs(60);

impl Broker {
    pub fn start() -> Broker {
        Broker::start_with(&[])
    }

    /// [`Broker::start`] with extra command-line arguments for a local broker.
    pub fn start_with(args: &[&str]) -> Broker {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        if let Ok(addr) = std::env::var("SLUICE_TEST_BOOTSTRAP") {
            return Broker {
                addr,
                child: None,
                dir: None,
                args,
            };
        }
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let (child, addr) = spawn(&dir, "127.0.0.1:0", &args);
        Broker {
            addr,
            child: Some(child),
            dir: Some(dir),
            args,
        }
    }

    /// Whether this is a broker started by the harness (not an external one).
    pub fn is_local(&self) -> bool {
        self.child.is_some()
    }

    /// Kills the broker (SIGKILL) and starts it again on the same address and data.
    /// Only for local brokers.
    pub fn restart(&mut self) {
        self.kill();
        self.start_again();
    }

    /// Kills the broker (SIGKILL); [`Broker::start_again`] brings it back. Only for
    /// local brokers.
    pub fn kill(&mut self) {
        let Some(mut child) = self.child.take() else {
            panic!("only a running broker started by the harness can be killed");
        };
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts a killed broker again on the same address and data.
    pub fn start_again(&mut self) {
        let (None, Some(dir)) = (self.child.as_ref(), self.dir.as_ref()) else {
            panic!("only a killed broker started by the harness can be started again");
        };
        let (child, addr) = spawn(dir, &self.addr, &self.args);
        assert_eq!(addr, self.addr, "the restarted broker listens elsewhere");
        self.child = Some(child);
    }
}

/// Several local brokers forming one cluster: every node is a broker and a voter of the
/// metadata quorum, on 127.0.0.1 with free ports. For tests of what only a cluster
/// shows (replicas on several brokers, a broker going down).
pub struct Cluster {
    /// Node `i + 1` at index `i`.
    pub nodes: Vec<Broker>,
}

/// `n` different ports free on 127.0.0.1 right now: all are held until the last is
/// picked (picked one after the other, the kernel may hand out the same port twice).
fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<_> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("a free port"))
        .collect();
    held.iter()
        .map(|l| l.local_addr().expect("bound").port())
        .collect()
}

impl Cluster {
    /// Starts `n` nodes with `properties` (Kafka names, passed as SLUICE_* variables) and
    /// waits until each prints its address. `None` with SLUICE_TEST_BOOTSTRAP (an
    /// external broker cannot be made a cluster of several here).
    pub fn start(n: usize, properties: &[(&str, &str)]) -> Option<Cluster> {
        if std::env::var_os("SLUICE_TEST_BOOTSTRAP").is_some() {
            return None;
        }
        let free = free_ports(2 * n);
        let ports: Vec<(u16, u16)> = free.chunks(2).map(|p| (p[0], p[1])).collect();
        let voters = ports
            .iter()
            .enumerate()
            .map(|(i, (_, controller))| format!("{}@127.0.0.1:{controller}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let env: Vec<(String, String)> = properties
            .iter()
            .map(|(k, v)| {
                let name = format!("SLUICE_{}", k.to_ascii_uppercase().replace(['.', '-'], "_"));
                (name, (*v).to_owned())
            })
            .collect();
        let mut launched = Vec::new();
        for (i, (client, controller)) in ports.iter().enumerate() {
            let dir = tempfile::tempdir().expect("create a temporary directory");
            let listen =
                format!("PLAINTEXT://127.0.0.1:{client},CONTROLLER://127.0.0.1:{controller}");
            let args = vec![
                "--node-id".to_owned(),
                (i + 1).to_string(),
                "--controller-quorum-voters".to_owned(),
                voters.clone(),
            ];
            let (child, rx) = launch(&dir, &listen, &args, &env);
            launched.push((dir, child, rx, args));
        }
        // Every node must run before any can finish starting (they elect a leader).
        let nodes = launched
            .into_iter()
            .map(|(dir, child, rx, args)| {
                let (child, addr) = wait_listening(&dir, child, rx);
                Broker {
                    addr,
                    child: Some(child),
                    dir: Some(dir),
                    args,
                }
            })
            .collect();
        Some(Cluster { nodes })
    }

    /// Kills node `node` (SIGKILL), keeping its data.
    pub fn kill(&mut self, node: usize) {
        if let Some(mut child) = self.nodes[node - 1].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts the broker with data in `dir/data` and stderr appended to `dir/broker.log`;
/// returns it with the address it printed.
fn spawn(dir: &tempfile::TempDir, listen: &str, args: &[String]) -> (Child, String) {
    let (child, rx) = launch(dir, listen, args, &[]);
    wait_listening(dir, child, rx)
}

/// Starts the broker (see [`spawn`]); the receiver gets the address it prints.
fn launch(
    dir: &tempfile::TempDir,
    listen: &str,
    args: &[String],
    env: &[(String, String)],
) -> (Child, mpsc::Receiver<String>) {
    let bin = broker_binary();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.path().join("broker.log"))
        .expect("open broker.log");
    let mut child = Command::new(&bin)
        .arg("--listen")
        .arg(listen)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if !sent {
                if let Some(addr) = line.split("listening on ").nth(1) {
                    let _ = tx.send(addr.trim().to_owned());
                    sent = true;
                }
            }
            // Keep draining so the broker never blocks on a full pipe.
        }
    });
    (child, rx)
}

/// Waits (with a deadline) for the address a launched broker prints.
fn wait_listening(
    dir: &tempfile::TempDir,
    mut child: Child,
    rx: mpsc::Receiver<String>,
) -> (Child, String) {
    let bin = broker_binary();
    match rx.recv_timeout(START_DEADLINE) {
        Ok(addr) => (child, addr),
        Err(_) => {
            let _ = child.kill();
            let status = child.wait().ok();
            panic!(
                "{} did not print `listening on ADDR` within {START_DEADLINE:?} (exit status: \
                 {status:?}); its log:\n{}",
                bin.display(),
                log_tail(dir)
            );
        }
    }
}

/// The last lines of the broker's log.
fn log_tail(dir: &tempfile::TempDir) -> String {
    let text = std::fs::read_to_string(dir.path().join("broker.log")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // A failing test gets the broker's side of the story.
        if std::thread::panicking() {
            if let Some(dir) = &self.dir {
                eprintln!("--- broker log (last lines) ---\n{}", log_tail(dir));
            }
        }
    }
}

/// The broker binary to run; panics with instructions when there is none.
pub fn broker_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("SLUICE_BROKER_BIN") {
        let bin = PathBuf::from(bin);
        assert!(
            bin.is_file(),
            "SLUICE_BROKER_BIN={} is not a file",
            bin.display()
        );
        return bin;
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let newest = ["release", "debug"]
        .iter()
        .map(|profile| target.join(profile).join("sluice-broker"))
        .filter_map(|path| {
            let modified = path.metadata().ok()?.modified().ok()?;
            Some((modified, path))
        })
        .max_by_key(|(modified, _): &(SystemTime, PathBuf)| *modified);
    match newest {
        Some((_, path)) => path,
        None => panic!(
            "no sluice-broker binary: looked for {}/{{release,debug}}/sluice-broker. Build it \
             first (`cargo build --release --bin sluice-broker`), point SLUICE_BROKER_BIN at \
             one, or set SLUICE_TEST_BOOTSTRAP=host:port to test against a running broker",
            target.display()
        ),
    }
}

/// A name unique to this test run, for topics and groups.
pub fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{prefix}-{}-{:x}",
        std::process::id(),
        nanos & 0xff_ffff_ffff
    )
}

/// A TCP proxy in front of a broker that loses answers on demand: after
/// [`LossyProxy::cut_answers`], every connection open at that moment discards the next
/// bytes the broker sends on it and closes, so the client sees its requests fail after
/// the broker has handled them. Start the broker with `--advertised-listener
/// <proxy addr>` so that every connection goes through the proxy, then tell the proxy
/// where the broker is ([`LossyProxy::forward_to`]).
pub struct LossyProxy {
    pub addr: String,
    target: Arc<Mutex<String>>,
    cuts: Arc<AtomicU64>,
    /// Answers lost so far.
    pub lost: Arc<AtomicU64>,
}

impl LossyProxy {
    pub async fn start() -> LossyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = LossyProxy {
            addr: listener.local_addr().unwrap().to_string(),
            target: Arc::default(),
            cuts: Arc::default(),
            lost: Arc::default(),
        };
        let (target, cuts, lost) = (proxy.target.clone(), proxy.cuts.clone(), proxy.lost.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let target = target.lock().unwrap().clone();
                tokio::spawn(relay(client, target, cuts.clone(), lost.clone()));
            }
        });
        proxy
    }

    pub fn forward_to(&self, broker: &str) {
        *self.target.lock().unwrap() = broker.to_owned();
    }

    /// Makes every open connection lose the broker's next answer and close.
    pub fn cut_answers(&self) {
        self.cuts.fetch_add(1, Ordering::SeqCst);
    }
}

async fn relay(client: TcpStream, target: String, cuts: Arc<AtomicU64>, lost: Arc<AtomicU64>) {
    let Ok(broker) = TcpStream::connect(&target).await else {
        return; // the client sees the connection close
    };
    let seen = cuts.load(Ordering::SeqCst);
    let (mut client_read, mut client_write) = client.into_split();
    let (mut broker_read, mut broker_write) = broker.into_split();
    let upstream = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut client_read, &mut broker_write).await;
    });
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = match broker_read.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if cuts.load(Ordering::SeqCst) > seen {
            lost.fetch_add(1, Ordering::SeqCst);
            break; // the answer is lost with the connection
        }
        if client_write.write_all(&buffer[..n]).await.is_err() {
            break;
        }
    }
    upstream.abort();
}

/// Producer id, epoch, base sequence and record count of every batch stored in a
/// partition, read with a raw Fetch from offset 0 (the consumer API does not show batch
/// headers).
pub async fn stored_batches(
    client: &sluice_client::Client,
    topic: &str,
    partition: i32,
) -> Vec<(i64, i16, i32, i32)> {
    let (_, connection) = client.leader(topic, partition).await.unwrap();
    // v12 names topics by name (v13+ by id).
    let version = connection.version_capped::<FetchRequest>(12).unwrap();
    let request = FetchRequest::default()
        .with_replica_id((-1).into())
        .with_max_wait_ms(0)
        .with_max_bytes(64 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.to_owned())))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(0)
                .with_current_leader_epoch(-1)
                .with_log_start_offset(-1)
                .with_partition_max_bytes(64 << 20)])]);
    let response = connection.send(&request, version).await.unwrap();
    let data = &response.responses[0].partitions[0];
    assert_eq!(data.error_code, 0, "fetch {topic}-{partition}");
    let records = data.records.clone().unwrap_or_default();
    batch::batches(&records)
        .map(|b| {
            let header = BatchHeader::new(b.unwrap()).unwrap();
            (
                header.producer_id(),
                header.producer_epoch(),
                header.base_sequence(),
                header.records_count(),
            )
        })
        .collect()
}
