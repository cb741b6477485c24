//! Runs each `sluice-bench` subcommand briefly against a real Sluice broker and checks
//! the JSON report: counts add up, nothing failed, the topic handling works.
//!
//! The broker is `$SLUICE_BROKER_BIN`, else the newest of `sluice-broker` in this
//! build's target directory (debug or release; `cargo test --workspace` builds it). It
//! runs as a child process on 127.0.0.1:0 with a temporary data directory; the test
//! waits for its `listening on IP:PORT` line with a deadline and kills it at the end.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use serde_json::Value;

const START_DEADLINE: Duration = Duration::from_secs(60);

struct Broker {
    addr: String,
    pid: u32,
    child: Child,
    _data: tempfile::TempDir,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn broker_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("SLUICE_BROKER_BIN") {
        return PathBuf::from(bin);
    }
    // target/<profile>/sluice-bench -> target/
    let bench = Path::new(env!("CARGO_BIN_EXE_sluice-bench"));
    let target = bench
        .parent()
        .and_then(Path::parent)
        .expect("the bench binary lives in target/<profile>/");
    ["debug", "release"]
        .iter()
        .map(|profile| target.join(profile).join("sluice-broker"))
        .filter_map(|p| {
            let modified = p.metadata().and_then(|m| m.modified()).ok()?;
            Some((modified, p))
        })
        .max_by_key(|(modified, _): &(SystemTime, PathBuf)| *modified)
        .map(|(_, p)| p)
        .unwrap_or_else(|| {
            panic!(
                "no sluice-broker binary under {}: run `cargo build --bin sluice-broker` \
                 or set SLUICE_BROKER_BIN",
                target.display()
            )
        })
}

fn start_broker() -> Broker {
    let bin = broker_binary();
    let data = tempfile::tempdir().expect("a temporary data directory");
    let mut child = Command::new(&bin)
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(addr) = line.strip_prefix("listening on ") {
                let _ = tx.send(addr.trim().to_owned());
            }
            // Keep reading so the broker never blocks on a full pipe.
        }
    });
    let addr = match rx.recv_timeout(START_DEADLINE) {
        Ok(addr) => addr,
        Err(_) => {
            let _ = child.kill();
            let status = child.wait().ok();
            panic!(
                "{} did not print `listening on ADDR` within {START_DEADLINE:?} ({status:?})",
                bin.display()
            );
        }
    };
    Broker {
        addr,
        pid: child.id(),
        child,
        _data: data,
    }
}

/// Runs `sluice-bench ARGS --json --quiet` and returns its report.
fn bench(broker: &Broker, args: &[&str]) -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_sluice-bench"))
        .args(args)
        .args(["--bootstrap", &broker.addr, "--json", "--quiet"])
        .args(["--broker-pid", &broker.pid.to_string()])
        .stdin(Stdio::null())
        .output()
        .expect("run sluice-bench");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "sluice-bench {args:?} failed: {stderr}"
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "sluice-bench {args:?} printed no JSON ({e}): {}\n{stderr}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

fn stream<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["streams"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == name))
        .unwrap_or_else(|| panic!("no {name} stream in {report:#}"))
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

/// The per-second intervals add up to the stream's total.
fn intervals_add_up(s: &Value) {
    let intervals = s["intervals"].as_array().expect("intervals");
    assert!(!intervals.is_empty());
    let records: u64 = intervals.iter().map(|i| u(&i["records"])).sum();
    let bytes: u64 = intervals.iter().map(|i| u(&i["bytes"])).sum();
    assert_eq!(records, u(&s["records"]), "{s:#}");
    assert_eq!(bytes, u(&s["bytes"]), "{s:#}");
}

#[test]
fn every_subcommand_runs_against_the_sluice_broker() {
    let broker = start_broker();

    // Produce: a fixed count over three partitions, keyed, acks=all.
    let produced = bench(
        &broker,
        &[
            "produce",
            "--topic",
            "it-replay",
            "--partitions",
            "3",
            "--producers",
            "2",
            "--records",
            "20000",
            "--record-size",
            "100",
            "--keys",
            "50",
            "--acks",
            "all",
            "--label",
            "it",
        ],
    );
    assert_eq!(produced["command"], "produce");
    assert_eq!(produced["label"], "it");
    assert_eq!(u(&produced["partitions"]), 3);
    assert_eq!(u(&produced["errors"]), 0, "{produced:#}");
    let p = stream(&produced, "produce");
    assert_eq!(u(&p["records"]), 20_000);
    // Keys are `key-0`..`key-49` (5 or 6 bytes), values 100 bytes.
    let bytes = u(&p["bytes"]);
    assert!((20_000 * 105..=20_000 * 106).contains(&bytes), "{bytes}");
    assert_eq!(u(&p["latency"]["count"]), 20_000);
    assert!(u(&p["latency"]["p50_us"]) <= u(&p["latency"]["max_us"]));
    intervals_add_up(p);
    assert!(produced["broker"]["rss_end_kib"]
        .as_u64()
        .is_some_and(|k| k > 0));
    assert!(produced["broker_cpu_s_per_gb"].is_number());
    assert_eq!(produced["topic_deleted"], false);

    // Replay it, assigned partitions, two consumers.
    let replayed = bench(
        &broker,
        &["consume", "--topic", "it-replay", "--consumers", "2"],
    );
    assert_eq!(u(&replayed["errors"]), 0, "{replayed:#}");
    let c = stream(&replayed, "consume");
    assert_eq!(u(&c["records"]), 20_000);
    assert_eq!(u(&c["bytes"]), bytes);
    assert_eq!(u(&replayed["checks"]["expected"]), 20_000);
    assert_eq!(replayed["checks"]["stopped_by"], "end of the log");
    intervals_add_up(c);

    // Replay it again through a consumer group, then delete the topic.
    let grouped = bench(
        &broker,
        &[
            "consume",
            "--topic",
            "it-replay",
            "--consumers",
            "2",
            "--group",
            "it-group",
            "--delete-topic",
        ],
    );
    assert_eq!(u(&grouped["errors"]), 0, "{grouped:#}");
    assert_eq!(u(&stream(&grouped, "consume")["records"]), 20_000);
    assert_eq!(grouped["topic_deleted"], true);

    // Open-loop produce: the schedule decides the count.
    let paced = bench(
        &broker,
        &[
            "produce",
            "--topic",
            "it-paced",
            "--rate",
            "4000",
            "--duration",
            "1s",
            "--acks",
            "1",
            "--delete-topic",
        ],
    );
    assert_eq!(u(&paced["errors"]), 0, "{paced:#}");
    assert_eq!(u(&stream(&paced, "produce")["records"]), 4_000);

    // End to end at a fixed rate: everything sent arrives once, with a latency each.
    let e2e = bench(
        &broker,
        &[
            "e2e",
            "--topic",
            "it-e2e",
            "--partitions",
            "2",
            "--rate",
            "2000",
            "--duration",
            "2s",
            "--acks",
            "1",
            "--delete-topic",
        ],
    );
    assert_eq!(u(&e2e["errors"]), 0, "{e2e:#}");
    let checks = &e2e["checks"];
    assert_eq!(u(&checks["acknowledged"]), 4_000, "{e2e:#}");
    assert_eq!(u(&checks["received"]), 4_000, "{e2e:#}");
    assert_eq!(u(&checks["missing"]), 0);
    assert_eq!(u(&checks["duplicates"]), 0);
    assert_eq!(u(&checks["foreign"]), 0);
    let consumed = stream(&e2e, "consume");
    assert_eq!(u(&consumed["records"]), 4_000);
    assert_eq!(u(&consumed["latency"]["count"]), 4_000);
    assert!(u(&consumed["latency"]["p50_us"]) > 0);
    assert_eq!(u(&stream(&e2e, "produce")["records"]), 4_000);
    assert_eq!(e2e["topic_deleted"], true);
}

#[test]
fn consuming_a_missing_topic_is_one_clear_error() {
    let broker = start_broker();
    let output = Command::new(env!("CARGO_BIN_EXE_sluice-bench"))
        .args(["consume", "--topic", "nope", "--bootstrap", &broker.addr])
        .stdin(Stdio::null())
        .output()
        .expect("run sluice-bench");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("topic nope does not exist"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}
