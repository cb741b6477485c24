//! The `sluice` binary against a real broker (see `common/mod.rs` for which one).

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{stored_batches, unique, Broker, Cluster};
use sluice_client::producer::partitioner::partition_for_key;
use sluice_client::{Client, ClientConfig, Producer, ProducerConfig, ProducerRecord};

/// Milliseconds since the epoch now.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Runs `sluice ARGS` against `broker`, with `stdin` as input.
fn sluice(broker: &Broker, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .env("SLUICE_BOOTSTRAP", &broker.addr)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sluice");
    let mut input = child.stdin.take().expect("piped stdin");
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data); // the command may not read stdin at all
    });
    let output = child.wait_with_output().expect("wait for sluice");
    let _ = writer.join();
    output
}

/// Runs `sluice ARGS` and returns stdout, failing the test with stderr if it fails.
fn ok(broker: &Broker, args: &[&str], stdin: &[u8]) -> String {
    let output = sluice(broker, args, stdin);
    assert!(
        output.status.success(),
        "sluice {args:?} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// Runs `sluice ARGS`, expects failure with `code`, returns the single stderr line.
fn fails(broker: &Broker, args: &[&str], code: i32) -> String {
    let output = sluice(broker, args, b"");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(
        output.status.code(),
        Some(code),
        "sluice {args:?}: {stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "one line expected: {stderr:?}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Error {"),
        "{stderr}"
    );
    stderr
}

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

#[test]
fn file_round_trip_with_keys_and_headers_as_json() {
    let broker = Broker::start();
    let topic = unique("cli-round-trip");
    let created = ok(
        &broker,
        &["topic", "create", &topic, "--partitions", "3"],
        b"",
    );
    assert!(created.contains("3 partition"), "{created}");
    assert!(ok(&broker, &["topic", "list"], b"")
        .lines()
        .any(|l| l.starts_with(&topic)));

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("input.txt");
    let lines: Vec<String> = (0..500)
        .map(|i| format!("user-{}\tevent {i} {{\"n\": {i}}}", i % 13))
        .collect();
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let output = sluice(
        &broker,
        &[
            "produce",
            &topic,
            "--file",
            path.to_str().unwrap(),
            "--key-separator",
            "\t",
            "--header",
            "source=cli-test",
            "--header",
            "n=1",
            "--compression",
            "snappy",
        ],
        b"",
    );
    let summary = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{summary}");
    assert!(summary.contains("produced 500 record(s)"), "{summary}");
    assert!(summary.contains(&format!(" to {topic}")), "{summary}");
    // Rates only when the run was long enough for one (never "0 records/s").
    assert!(!summary.contains(" 0 records/s"), "{summary}");

    let out = ok(&broker, &["consume", &topic, "--format", "json"], b"");
    let records = json_lines(&out);
    assert_eq!(records.len(), 500);
    let mut seen = std::collections::BTreeMap::<String, Vec<i64>>::new();
    for r in &records {
        let key = r["key"].as_str().unwrap();
        assert_eq!(r["topic"], topic.as_str());
        assert_eq!(
            r["partition"].as_i64().unwrap(),
            i64::from(partition_for_key(key.as_bytes(), 3)),
            "Kafka's partitioner"
        );
        assert!(r["timestamp"].as_str().unwrap().ends_with('Z'));
        assert!(r["timestamp_ms"].as_i64().unwrap() > 0);
        assert_eq!(r["headers"][0]["key"], "source");
        assert_eq!(r["headers"][0]["value"], "cli-test");
        assert_eq!(r["headers"][1]["key"], "n");
        let value = r["value"].as_str().unwrap();
        let n: i64 = value.split(' ').nth(1).unwrap().parse().unwrap();
        assert_eq!(value, format!("event {n} {{\"n\": {n}}}"));
        assert!(r.get("value_encoding").is_none());
        seen.entry(key.to_owned()).or_default().push(n);
    }
    for (key, ns) in seen {
        let mut sorted = ns.clone();
        sorted.sort();
        assert_eq!(ns, sorted, "records of key {key} keep their order");
    }

    // Text format: values, or key<SEP>value.
    let text = ok(
        &broker,
        &["consume", &topic, "--partition", "0", "-K", "="],
        b"",
    );
    assert!(text
        .lines()
        .all(|l| l.starts_with("user-") && l.contains("=event ")));
    let describe = ok(&broker, &["topic", "describe", &topic], b"");
    assert!(describe.contains("Records:    500"), "{describe}");
    assert!(describe.contains("PARTITION"), "{describe}");
    assert!(ok(&broker, &["topic", "delete", &topic], b"").contains("deleted"));
}

/// The cells of the table row whose first cell is `first` (cells are separated by two or
/// more spaces; leading indentation is ignored).
fn row<'a>(text: &'a str, first: &str) -> Vec<&'a str> {
    text.lines()
        .map(|l| {
            l.trim()
                .split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect::<Vec<_>>()
        })
        .find(|cells| cells.first() == Some(&first))
        .unwrap_or_else(|| panic!("no row starting with {first:?} in:\n{text}"))
}

#[test]
fn cluster_describe_shows_the_node_and_topic_describe_its_replicas() {
    let broker = Broker::start();
    let (host, port) = broker.addr.rsplit_once(':').unwrap();

    let text = ok(&broker, &["cluster", "describe"], b"");
    assert!(text.contains("Controller id:     1\n"), "{text}");
    assert!(text.contains("Brokers:           1\n"), "{text}");
    let header = row(&text, "BROKER");
    assert_eq!(
        header,
        [
            "BROKER",
            "HOST",
            "PORT",
            "RACK",
            "STATE",
            "LEADS",
            "FOLLOWS",
            "OUT OF SYNC",
            "BEHIND"
        ],
        "{text}"
    );
    let broker_row = row(&text, "1");
    assert_eq!(
        broker_row[..5],
        ["1", host, port, "-", "unfenced"],
        "{text}"
    );
    // A cluster of one leads every partition it holds and follows none.
    assert!(broker_row[5].parse::<u32>().is_ok(), "{text}");
    assert_eq!(broker_row[6..], ["0", "0", "0"], "{text}");
    // The quorum: node 1 leads alone, or the broker cannot say (a one-line note).
    if let Some((_, quorum)) = text.split_once("Metadata quorum (__cluster_metadata-0):") {
        assert!(text.contains("Active controller: 1 (epoch "), "{text}");
        let voter = row(quorum, "1");
        assert_eq!(voter[..2], ["1", "leader"], "{text}");
    } else {
        assert!(
            text.contains(
                "Metadata quorum: not shown (the broker does not support DescribeQuorum)"
            ),
            "{text}"
        );
    }

    let json: serde_json::Value = serde_json::from_str(&ok(
        &broker,
        &["cluster", "describe", "--format", "json"],
        b"",
    ))
    .unwrap();
    assert_eq!(json["controller_id"], 1, "{json}");
    let brokers = json["brokers"].as_array().unwrap();
    assert_eq!(brokers.len(), 1, "{json}");
    let b = &brokers[0];
    assert_eq!(
        (&b["id"], &b["host"], &b["port"], &b["rack"], &b["fenced"]),
        (
            &serde_json::json!(1),
            &serde_json::json!(host),
            &serde_json::json!(port.parse::<i32>().unwrap()),
            &serde_json::Value::Null,
            &serde_json::json!(false)
        ),
        "{json}"
    );
    assert!(b["leader_partitions"].is_u64(), "{json}");
    assert_eq!(b["follower_partitions"], 0, "{json}");
    assert_eq!(b["out_of_sync_partitions"], 0, "{json}");
    assert_eq!(b["follower_lag_records"], 0, "{json}");
    assert!(json["quorum_error"].is_null(), "{json}");
    if !json["quorum"].is_null() {
        assert_eq!(json["quorum"]["leader_id"], 1, "{json}");
        assert_eq!(json["quorum"]["voters"][0]["lag"], 0, "{json}");
    }

    let topic = unique("cli-replicas");
    ok(
        &broker,
        &["topic", "create", &topic, "--partitions", "2"],
        b"",
    );
    let text = ok(&broker, &["topic", "describe", &topic], b"");
    let header = row(&text, "PARTITION");
    assert_eq!(
        header[..6],
        ["PARTITION", "LEADER", "EPOCH", "REPLICAS", "ISR", "OFFLINE"],
        "{text}"
    );
    for partition in ["0", "1"] {
        let cells = row(&text, partition);
        assert_eq!(
            [cells[1], cells[3], cells[4], cells[5]],
            ["1", "1", "1", "-"],
            "{text}"
        );
        assert!(cells[2].parse::<u32>().is_ok(), "epoch: {text}");
    }
    let json: serde_json::Value = serde_json::from_str(&ok(
        &broker,
        &["topic", "describe", &topic, "--format", "json"],
        b"",
    ))
    .unwrap();
    let partitions = json["partitions"].as_array().unwrap();
    assert_eq!(partitions.len(), 2, "{json}");
    for p in partitions {
        assert_eq!(p["leader"], 1, "{json}");
        assert_eq!(p["replicas"], serde_json::json!([1]), "{json}");
        assert_eq!(p["isr"], serde_json::json!([1]), "{json}");
        assert_eq!(p["offline_replicas"], serde_json::json!([]), "{json}");
    }
}

/// Runs `sluice ARGS` until `done` accepts its output (bounded by a deadline).
fn ok_eventually(
    broker: &Broker,
    args: &[&str],
    what: &str,
    done: impl Fn(&str) -> bool,
) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        // A command may fail while the cluster changes (a leader just died): try again.
        let output = sluice(broker, args, b"");
        let out = String::from_utf8_lossy(&output.stdout).into_owned();
        if output.status.success() && done(&out) {
            return out;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}; last output:\n{out}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_three_broker_cluster_shows_replicas_and_under_replicated_partitions() {
    let Some(mut cluster) = Cluster::start(
        3,
        &[
            // A killed broker is fenced (and leaves the ISRs) within 2 s.
            ("broker.session.timeout.ms", "2000"),
            ("broker.heartbeat.interval.ms", "200"),
        ],
    ) else {
        return; // an external broker: not a cluster this test can shape
    };
    let node1 = &cluster.nodes[0];
    // The nodes print their address before they have joined: wait for three live brokers.
    ok_eventually(
        node1,
        &["cluster", "describe"],
        "three unfenced brokers",
        |out| out.matches(" unfenced ").count() == 3,
    );
    let topic = unique("cli-rf3");
    let created = ok(
        node1,
        &[
            "topic",
            "create",
            &topic,
            "--partitions",
            "3",
            "--replication-factor",
            "3",
            "--config",
            "min.insync.replicas=2",
        ],
        b"",
    );
    assert!(
        created.contains("3 partition(s), replication factor 3"),
        "{created}"
    );
    // More replicas than brokers: Kafka's error, one line.
    let line = fails(
        node1,
        &[
            "topic",
            "create",
            &unique("cli-rf4"),
            "--replication-factor",
            "4",
        ],
        1,
    );
    assert!(line.contains("INVALID_REPLICATION_FACTOR"), "{line}");

    let text = ok(node1, &["topic", "describe", &topic], b"");
    assert!(text.contains("Under-replicated: 0\n"), "{text}");
    for partition in ["0", "1", "2"] {
        let cells = row(&text, partition);
        assert_eq!(cells[3].split(',').count(), 3, "replicas: {text}");
        assert_eq!(cells[4].split(',').count(), 3, "ISR: {text}");
        assert_eq!((cells[5], cells[6]), ("-", "ok"), "{text}");
    }
    assert_eq!(row(&text, "min.insync.replicas")[1], "2", "{text}");
    let none = ok(
        node1,
        &["topic", "describe", &topic, "--under-replicated"],
        b"",
    );
    assert!(none.contains("(no under-replicated partition)"), "{none}");

    // Three partitions, three replicas each, spread evenly: every broker leads one and
    // follows two (only this topic exists: no group has asked for __consumer_offsets).
    let text = ok(node1, &["cluster", "describe"], b"");
    for node in ["1", "2", "3"] {
        let cells = row(&text, node);
        assert_eq!(cells[4..], ["unfenced", "1", "2", "0", "0"], "{text}");
    }

    // Node 3 dies: once it is fenced, every partition is under-replicated (its copy is
    // out of the ISR) and the ones it led have another leader.
    cluster.kill(3);
    let node1 = &cluster.nodes[0];
    let text = ok_eventually(
        node1,
        &["topic", "describe", &topic, "--under-replicated"],
        "node 3 to leave the ISRs",
        |out| out.contains("Under-replicated: 3\n"),
    );
    for partition in ["0", "1", "2"] {
        let cells = row(&text, partition);
        assert_ne!(cells[1], "3", "a dead leader: {text}");
        assert_eq!(cells[4].split(',').count(), 2, "ISR: {text}");
        assert!(!cells[4].split(',').any(|b| b == "3"), "{text}");
        assert_eq!((cells[5], cells[6]), ("3", "under-replicated"), "{text}");
    }
    let json: serde_json::Value = serde_json::from_str(&ok(
        node1,
        &["topic", "describe", &topic, "--format", "json"],
        b"",
    ))
    .unwrap();
    assert_eq!(json["under_replicated_partitions"], 3, "{json}");
    let text = ok(node1, &["cluster", "describe"], b"");
    // The dead broker cannot be asked how far behind it is.
    assert_eq!(
        row(&text, "3")[4..],
        ["fenced", "0", "3", "3", "-"],
        "{text}"
    );
    let leads: u32 = ["1", "2"]
        .iter()
        .map(|n| row(&text, n)[5].parse::<u32>().unwrap())
        .sum();
    assert_eq!(leads, 3, "{text}");
}

#[test]
fn binary_values_are_base64_in_json_and_raw_in_text() {
    let broker = Broker::start();
    let topic = unique("cli-binary");
    ok(
        &broker,
        &["topic", "create", &topic, "--partitions", "1"],
        b"",
    );
    let input: &[u8] = b"plain\n\xff\xfe\x00binary\n\nlast line without newline";
    let output = sluice(&broker, &["produce", &topic], input);
    assert!(output.status.success());
    let records = json_lines(&ok(&broker, &["consume", &topic, "--format", "json"], b""));
    assert_eq!(records.len(), 4);
    assert_eq!(records[0]["value"], "plain");
    assert_eq!(records[0]["key"], serde_json::Value::Null);
    assert_eq!(records[1]["value"], "//4AYmluYXJ5"); // base64 of ff fe 00 "binary"
    assert_eq!(records[1]["value_encoding"], "base64");
    assert_eq!(records[2]["value"], "");
    assert_eq!(records[3]["value"], "last line without newline");
    let output = sluice(&broker, &["consume", &topic], b"");
    assert_eq!(
        output.stdout,
        b"plain\n\xff\xfe\x00binary\n\nlast line without newline\n"
    );
}

#[test]
fn replay_from_an_offset_and_from_a_time() {
    let broker = Broker::start();
    let topic = unique("cli-replay");
    ok(
        &broker,
        &["topic", "create", &topic, "--partitions", "2"],
        b"",
    );
    // Records with known timestamps: one per second from 2024-05-01T12:00:00Z.
    let base = 1_714_564_800_000i64;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = Client::connect(ClientConfig::new(&broker.addr))
            .await
            .unwrap();
        let producer = Producer::new(client, ProducerConfig::default()).unwrap();
        for p in 0..2 {
            for i in 0..20i64 {
                producer
                    .send(
                        ProducerRecord::new(topic.as_str())
                            .partition(p)
                            .value(format!("p{p}-{i}"))
                            .timestamp(base + i * 1000),
                    )
                    .await
                    .unwrap();
            }
        }
        producer.close().await.unwrap();
    });

    let out = ok(
        &broker,
        &["consume", &topic, "--partition", "1", "--offset", "15"],
        b"",
    );
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["p1-15", "p1-16", "p1-17", "p1-18", "p1-19"]
    );
    let out = ok(
        &broker,
        &["consume", &topic, "-p", "0", "-o", "18", "--format", "json"],
        b"",
    );
    let records = json_lines(&out);
    assert_eq!(records[0]["offset"], 18);
    assert_eq!(records[0]["timestamp"], "2024-05-01T12:00:18.000Z");
    assert_eq!(records[0]["timestamp_ms"], base + 18_000);
    assert_eq!(
        ok(
            &broker,
            &["consume", &topic, "-p", "0", "-o", "latest"],
            b""
        ),
        ""
    );

    // Relative offsets, as kcat's -o: the last N, or after the first N, per partition.
    assert_eq!(
        ok(&broker, &["consume", &topic, "-p", "0", "-o", "-3"], b""),
        "p0-17\np0-18\np0-19\n"
    );
    assert_eq!(
        ok(
            &broker,
            &["consume", &topic, "-p", "0", "--offset", "+18"],
            b""
        ),
        "p0-18\np0-19\n"
    );
    let out = ok(&broker, &["consume", &topic, "-o", "-1"], b"");
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort();
    assert_eq!(lines, ["p0-19", "p1-19"]);
    // More than the partition holds: from its start, or nothing after its end.
    assert_eq!(
        ok(&broker, &["consume", &topic, "-p", "1", "-o", "-500"], b"")
            .lines()
            .count(),
        20
    );
    assert_eq!(
        ok(&broker, &["consume", &topic, "-p", "1", "-o", "+500"], b""),
        ""
    );

    // From a time, as RFC 3339 or epoch milliseconds, across both partitions.
    let out = ok(
        &broker,
        &["consume", &topic, "--from-time", "2024-05-01T12:00:17Z"],
        b"",
    );
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        ["p0-17", "p0-18", "p0-19", "p1-17", "p1-18", "p1-19"]
    );
    let ms = (base + 18_500).to_string();
    let out = ok(
        &broker,
        &["consume", &topic, "-p", "1", "--from-time", &ms],
        b"",
    );
    assert_eq!(out, "p1-19\n");
    // Seconds since the epoch (a common slip) are read as seconds, with a note.
    let seconds = ((base + 19_000) / 1000).to_string();
    let output = sluice(
        &broker,
        &["consume", &topic, "-p", "0", "--from-time", &seconds],
        b"",
    );
    assert!(output.status.success(), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "p0-19\n");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("note: reading") && stderr.contains("seconds"),
        "{stderr}"
    );
    // A time before now: the records (from 2024) are older than an hour ago, and all
    // newer than enough days ago.
    assert_eq!(
        ok(
            &broker,
            &["consume", &topic, "-p", "0", "--from-time", "-1h"],
            b""
        ),
        ""
    );
    let days = ((now_ms() - base) / 86_400_000 + 1).to_string();
    let out = ok(
        &broker,
        &[
            "consume",
            &topic,
            "-p",
            "0",
            "--from-time",
            &format!("-{days}d"),
        ],
        b"",
    );
    assert_eq!(out.lines().count(), 20, "{out}");
    // --count stops early.
    let out = ok(
        &broker,
        &["consume", &topic, "-p", "0", "--count", "3"],
        b"",
    );
    assert_eq!(out, "p0-0\np0-1\np0-2\n");
}

#[test]
fn follow_prints_new_records_until_count() {
    let broker = Broker::start();
    let topic = unique("cli-follow");
    ok(
        &broker,
        &["topic", "create", &topic, "--partitions", "1"],
        b"",
    );
    ok(&broker, &["produce", &topic], b"old\n");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "consume", &topic, "--offset", "latest", "--follow", "--count", "2",
        ])
        .env("SLUICE_BOOTSTRAP", &broker.addr)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Keep producing until the follower has seen two records (it may start late).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        ok(&broker, &["produce", &topic], b"new\n");
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success());
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "follower did not finish"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let output = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8(output.stdout).unwrap(), "new\nnew\n");
}

/// Needs consumer groups on the broker.
#[test]
fn group_consume_resumes_after_restart_and_reset_offsets_replays() {
    let broker = Broker::start();
    let topic = unique("cli-group");
    let group = unique("cli-g");
    ok(
        &broker,
        &["topic", "create", &topic, "--partitions", "1"],
        b"",
    );
    let input: String = (0..10).map(|i| format!("r{i}\n")).collect();
    ok(&broker, &["produce", &topic], input.as_bytes());

    // Each run is a new process: it resumes after what the previous one printed.
    let first = ok(
        &broker,
        &["consume", &topic, "--group", &group, "--count", "4"],
        b"",
    );
    assert_eq!(first, "r0\nr1\nr2\nr3\n");
    let second = ok(
        &broker,
        &["consume", &topic, "--group", &group, "--count", "3"],
        b"",
    );
    assert_eq!(second, "r4\nr5\nr6\n");
    let rest = ok(&broker, &["consume", &topic, "--group", &group], b"");
    assert_eq!(rest, "r7\nr8\nr9\n");
    assert_eq!(
        ok(&broker, &["consume", &topic, "--group", &group], b""),
        ""
    );

    let describe = ok(&broker, &["group", "describe", &group], b"");
    let row = describe.lines().find(|l| l.starts_with(&topic)).unwrap();
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[1..5], ["0", "10", "10", "0"], "{describe}");
    assert!(ok(&broker, &["group", "list"], b"").contains(&group));

    // Without --execute, reset-offsets prints the plan (old, new, lag after) and changes
    // nothing, as Kafka's tool.
    let plan = sluice(
        &broker,
        &[
            "group",
            "reset-offsets",
            &group,
            "--topic",
            &topic,
            "--to-offset",
            "8",
        ],
        b"",
    );
    assert!(plan.status.success(), "{plan:?}");
    let table = String::from_utf8_lossy(&plan.stdout);
    assert!(
        table
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == [topic.as_str(), "0", "10", "8", "2"]),
        "{table}"
    );
    assert!(
        String::from_utf8_lossy(&plan.stderr).contains("--execute"),
        "{plan:?}"
    );
    assert_eq!(
        ok(&broker, &["consume", &topic, "--group", &group], b""),
        ""
    );
    // A group that does not exist yet is named in a warning.
    let fresh = sluice(
        &broker,
        &[
            "group",
            "reset-offsets",
            &unique("cli-new-group"),
            "--topic",
            &topic,
            "--to-earliest",
            "--dry-run",
        ],
        b"",
    );
    assert!(
        String::from_utf8_lossy(&fresh.stderr).contains("does not exist yet"),
        "{fresh:?}"
    );
    fails(
        &broker,
        &[
            "group",
            "reset-offsets",
            &group,
            "--topic",
            &topic,
            "--to-earliest",
            "--execute",
            "--dry-run",
        ],
        2,
    );

    // Reset: to an offset, to the beginning, to a time, to the end.
    let reset = ok(
        &broker,
        &[
            "group",
            "reset-offsets",
            &group,
            "--topic",
            &topic,
            "--to-offset",
            "8",
            "--execute",
        ],
        b"",
    );
    assert!(
        reset
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == [topic.as_str(), "0", "10", "8", "2"]),
        "{reset}"
    );
    assert_eq!(
        ok(&broker, &["consume", &topic, "--group", &group], b""),
        "r8\nr9\n"
    );
    ok(
        &broker,
        &[
            "group",
            "reset-offsets",
            &group,
            "--topic",
            &topic,
            "--to-earliest",
            "--execute",
        ],
        b"",
    );
    assert_eq!(
        ok(&broker, &["consume", &topic, "-g", &group, "-n", "2"], b""),
        "r0\nr1\n"
    );
    ok(
        &broker,
        &[
            "group",
            "reset-offsets",
            &group,
            "--topic",
            &topic,
            "--to-time",
            "0",
            "--execute",
        ],
        b"",
    );
    assert_eq!(
        ok(&broker, &["consume", &topic, "-g", &group, "-n", "1"], b""),
        "r0\n"
    );
    ok(
        &broker,
        &[
            "group",
            "reset-offsets",
            &group,
            "--topic",
            &topic,
            "--to-latest",
            "--execute",
        ],
        b"",
    );
    assert_eq!(ok(&broker, &["consume", &topic, "-g", &group], b""), "");

    // Delete the group's offsets for the topic: it starts from the earliest again.
    let out = ok(
        &broker,
        &["group", "delete-offsets", &group, "--topic", &topic],
        b"",
    );
    assert!(out.contains("deleted the committed offsets"), "{out}");
    assert_eq!(
        ok(&broker, &["consume", &topic, "-g", &group, "-n", "2"], b""),
        "r0\nr1\n"
    );
    // Delete the group; then it is unknown.
    assert!(ok(&broker, &["group", "delete", &group], b"").contains("deleted group"));
    let line = fails(&broker, &["group", "delete", &group], 1);
    assert!(line.contains("GROUP_ID_NOT_FOUND"), "{line}");
}

#[test]
fn errors_are_one_line_with_a_non_zero_exit() {
    let broker = Broker::start();
    let missing = unique("cli-missing");
    let line = fails(&broker, &["consume", &missing], 1);
    assert!(line.contains("unknown topic"), "{line}");
    // (Producing to a missing topic creates it: see
    // produce_creates_a_missing_topic_when_the_broker_allows_it.)
    let line = fails(&broker, &["produce", "no such/topic"], 1);
    // The broker refuses the name itself (INVALID_TOPIC_EXCEPTION) or the CLI says it is
    // not valid; either way no hint to create it.
    assert!(
        line.contains("invalid") || line.contains("not a valid topic name"),
        "{line}"
    );
    assert!(!line.contains("sluice topic create"), "{line}");
    let line = fails(&broker, &["topic", "describe", &missing], 1);
    assert!(line.contains("unknown topic"), "{line}");
    let line = fails(&broker, &["topic", "delete", &missing], 1);
    assert!(line.contains("unknown topic"), "{line}");
    let line = fails(&broker, &["topic", "delete", "__consumer_offsets"], 1);
    assert!(
        line.contains("internal topic") && line.contains("committed offsets"),
        "{line}"
    );

    let topic = unique("cli-errors");
    ok(
        &broker,
        &["topic", "create", &topic, "--partitions", "1"],
        b"",
    );
    let line = fails(&broker, &["topic", "create", &topic], 1);
    assert!(line.contains("TOPIC_ALREADY_EXISTS"), "{line}");
    let line = fails(&broker, &["consume", &topic, "--partition", "3"], 1);
    assert!(line.contains("no partition 3"), "{line}");
    let line = fails(
        &broker,
        &["consume", &topic, "-p", "0", "--offset", "99"],
        1,
    );
    assert!(line.contains("outside partition 0"), "{line}");

    // Invalid flag combinations and values: usage errors, exit status 2.
    let line = fails(
        &broker,
        &["consume", &topic, "--group", "g", "--offset", "3"],
        2,
    );
    assert!(line.contains("cannot be used with"), "{line}");
    fails(
        &broker,
        &["consume", &topic, "--offset", "1", "--from-time", "0"],
        2,
    );
    fails(
        &broker,
        &["consume", &topic, "--group", "g", "--partition", "0"],
        2,
    );
    fails(
        &broker,
        &["group", "reset-offsets", "g", "--topic", &topic],
        2,
    );
    fails(
        &broker,
        &[
            "group",
            "reset-offsets",
            "g",
            "--topic",
            &topic,
            "--to-earliest",
            "--to-latest",
        ],
        2,
    );
    let line = fails(&broker, &["consume", &topic, "--from-time", "yesterday"], 2);
    assert!(line.contains("RFC 3339"), "{line}");
    fails(&broker, &["produce", &topic, "--acks", "2"], 2);
    // Out-of-range values are usage errors too (exit 2), before anything is sent.
    let line = fails(
        &broker,
        &["topic", "create", "cli-p0", "--partitions", "0"],
        2,
    );
    assert!(line.contains("--partitions"), "{line}");
    let t = topic.as_str();
    for args in [
        &["topic", "create", "cli-rf0", "--replication-factor", "0"][..],
        &["consume", t, "--partition", "-1"],
        &["produce", t, "--key-separator", ""],
        &[
            "group",
            "reset-offsets",
            "g",
            "--topic",
            t,
            "--to-offset",
            "-1",
        ],
    ] {
        fails(&broker, args, 2);
    }
    // Typos get clap's suggestion; habits from Kafka's tools and kcat get a hint.
    let line = fails(&broker, &["consume", &topic, "--foramt", "json"], 2);
    assert!(line.contains("'--format'"), "{line}");
    let line = fails(&broker, &["topic", "craete", "x"], 2);
    assert!(line.contains("'create'"), "{line}");
    let line = fails(&broker, &["consume", &topic, "--from-beginning"], 2);
    assert!(line.contains("earliest"), "{line}");
    let line = fails(&broker, &["consume", "--topic", &topic], 2);
    assert!(line.contains("first argument"), "{line}");
    let line = fails(
        &broker,
        &["--bootstrap-server", &broker.addr, "topic", "list"],
        2,
    );
    assert!(line.contains("--bootstrap"), "{line}");
    let line = fails(&broker, &["consume", &topic, "-c", "5"], 2);
    assert!(line.contains("--count"), "{line}");
    fails(&broker, &["produce", &topic, "--compression", "brotli"], 2);

    // A reader that goes away (`| head`) is not an error.
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["topic", "list"])
        .env("SLUICE_BOOTSTRAP", &broker.addr)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(output.stderr.is_empty(), "{output:?}");

    // Unreachable broker: fails at once.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap().to_string();
    drop(closed);
    let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["--bootstrap", &addr, "topic", "list"])
        .output()
        .unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("cannot reach any broker") && stderr.contains(&addr),
        "{stderr}"
    );
}

/// A loopback server that answers every connection with `reply` (after reading what the
/// client sent) and closes it, until dropped. Not a Kafka broker.
struct NotKafka {
    addr: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl NotKafka {
    fn start(reply: &'static [u8]) -> NotKafka {
        use std::io::Read;
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            // Bounded: a minute at most, whatever the test does.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while !stopping.load(Ordering::Acquire) && std::time::Instant::now() < deadline {
                match listener.accept() {
                    Ok((mut conn, _)) => {
                        conn.set_nonblocking(false).unwrap();
                        conn.set_read_timeout(Some(std::time::Duration::from_secs(5)))
                            .unwrap();
                        let mut request = [0u8; 512];
                        let _ = conn.read(&mut request);
                        let _ = conn.write_all(reply);
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
                }
            }
        });
        NotKafka {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for NotKafka {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[test]
fn a_server_that_is_not_a_kafka_broker_is_named_as_such() {
    let cases: [(&[u8], &str); 3] = [
        (
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
            "HTTP server",
        ),
        // A TLS alert record (handshake failure), as a TLS listener sends to plaintext.
        (&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28], "TLS"),
        (b"SSH-2.0-OpenSSH_9.2\r\n", "frame size"),
    ];
    for (reply, expected) in cases {
        let server = NotKafka::start(reply);
        let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["--bootstrap", &server.addr, "topic", "list"])
            .output()
            .unwrap();
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains("is not a Kafka broker") && stderr.contains(expected),
            "{expected}: {stderr}"
        );
        assert!(!stderr.contains("is a broker running there"), "{stderr}");
    }
}

#[test]
fn topic_settings_change_and_partitions_grow() {
    let broker = Broker::start();
    let topic = unique("cli-alter");
    ok(
        &broker,
        &["topic", "create", &topic, "--partitions", "1"],
        b"",
    );
    let describe = |broker: &Broker| -> serde_json::Value {
        serde_json::from_str(&ok(
            broker,
            &["topic", "describe", &topic, "--format", "json"],
            b"",
        ))
        .unwrap()
    };
    let config = |doc: &serde_json::Value, name: &str| -> Option<String> {
        doc["configs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .and_then(|c| c["value"].as_str().map(str::to_owned))
    };

    let out = ok(
        &broker,
        &[
            "topic",
            "alter-config",
            &topic,
            "--set",
            "retention.ms=3600000",
            "--set",
            "max.message.bytes=2000000",
        ],
        b"",
    );
    assert!(out.contains("retention.ms=3600000"), "{out}");
    let doc = describe(&broker);
    assert_eq!(config(&doc, "retention.ms").as_deref(), Some("3600000"));
    assert_eq!(
        config(&doc, "max.message.bytes").as_deref(),
        Some("2000000")
    );
    ok(
        &broker,
        &["topic", "alter-config", &topic, "--delete", "retention.ms"],
        b"",
    );
    let doc = describe(&broker);
    assert_eq!(config(&doc, "retention.ms"), None, "back to the default");
    assert_eq!(
        config(&doc, "max.message.bytes").as_deref(),
        Some("2000000")
    );
    // Nothing to change is a usage error; an unknown setting is the broker's refusal.
    fails(&broker, &["topic", "alter-config", &topic], 2);
    let line = fails(
        &broker,
        &["topic", "alter-config", &topic, "--set", "no.such.config=1"],
        1,
    );
    assert!(
        line.contains("no.such.config") || line.contains("INVALID_CONFIG"),
        "{line}"
    );

    let out = ok(
        &broker,
        &["topic", "add-partitions", &topic, "--to", "3"],
        b"",
    );
    assert!(out.contains("3 partitions"), "{out}");
    assert_eq!(describe(&broker)["partitions"].as_array().unwrap().len(), 3);
    // Fewer than it has: the broker's INVALID_PARTITIONS, exit 1; zero: a usage error.
    let line = fails(
        &broker,
        &["topic", "add-partitions", &topic, "--to", "2"],
        1,
    );
    assert!(line.contains("INVALID_PARTITIONS"), "{line}");
    fails(
        &broker,
        &["topic", "add-partitions", &topic, "--to", "0"],
        2,
    );
}

#[test]
fn group_describe_lists_every_partition_of_the_topics_it_reads_with_a_total() {
    use sluice_client::admin::{OffsetReset, OffsetResetPlan};
    use sluice_client::{Admin, TopicPartition};
    let broker = Broker::start();
    let topic = unique("cli-lag");
    let group = unique("cli-lag-group");
    ok(
        &broker,
        &["topic", "create", &topic, "--partitions", "2"],
        b"",
    );
    ok(&broker, &["produce", &topic, "-p", "0"], b"a\nb\nc\nd\ne\n");
    ok(&broker, &["produce", &topic, "-p", "1"], b"x\ny\nz\n");
    // The group committed partition 0 only (offset 2), as a consumer that never got to
    // partition 1 would have.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let admin = Admin::new(
            Client::connect(ClientConfig::new(&broker.addr))
                .await
                .unwrap(),
        );
        admin
            .apply_group_offset_reset(&OffsetResetPlan {
                group: group.clone(),
                group_exists: false,
                changes: vec![OffsetReset {
                    partition: TopicPartition::new(&topic, 0),
                    previous: None,
                    new: 2,
                    log_end: 5,
                }],
            })
            .await
            .unwrap();
    });
    let describe = ok(&broker, &["group", "describe", &group], b"");
    let cells = |partition: &str| -> Vec<String> {
        describe
            .lines()
            .map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
            .find(|c| c.first() == Some(&topic) && c.get(1).map(String::as_str) == Some(partition))
            .unwrap_or_else(|| panic!("no row for partition {partition}:\n{describe}"))
    };
    assert_eq!(cells("0")[2..5], ["2", "5", "3"], "{describe}");
    // Nothing committed: the lag is what a consumer from the earliest offset would read.
    assert_eq!(cells("1")[2..5], ["-", "3", "3"], "{describe}");
    assert!(describe.contains("Total lag: 6 record(s)"), "{describe}");
}

#[test]
fn produce_exits_non_zero_when_a_record_fails() {
    let broker = Broker::start();
    let topic = unique("cli-too-large");
    ok(
        &broker,
        &["topic", "create", &topic, "--partitions", "1"],
        b"",
    );
    let mut input = b"small\n".to_vec();
    input.extend(vec![b'x'; 2 * 1024 * 1024]); // larger than any default request limit
    input.extend(b"\nsmall again\n");
    let output = sluice(&broker, &["produce", &topic], &input);
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("1 of 3 record(s) failed"), "{stderr}");
    assert_eq!(
        ok(&broker, &["consume", &topic], b""),
        "small\nsmall again\n"
    );
}

/// `sluice produce` is idempotent with the default `--acks all`, and not with
/// `--acks 1` (which turns idempotence off rather than failing).
#[test]
fn produce_is_idempotent_unless_acks_is_0_or_1() {
    let broker = Broker::start();
    let topic = unique("cli-idempotent");
    ok(
        &broker,
        &["topic", "create", &topic, "--partitions", "1"],
        b"",
    );
    ok(&broker, &["produce", &topic], b"a\nb\nc\n");
    ok(&broker, &["produce", &topic, "--acks", "1"], b"d\n");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let batches = runtime.block_on(async {
        let client = Client::connect(ClientConfig::new(&broker.addr))
            .await
            .unwrap();
        stored_batches(&client, &topic, 0).await
    });
    let (last, idempotent) = batches.split_last().unwrap();
    assert!(!idempotent.is_empty());
    let mut next = 0;
    for &(id, epoch, sequence, count) in idempotent {
        assert!(id >= 0 && epoch == 0 && sequence == next, "{batches:?}");
        next += count;
    }
    assert_eq!(next, 3);
    assert_eq!((last.0, last.1, last.2), (-1, -1, -1), "{batches:?}");
    assert_eq!(ok(&broker, &["consume", &topic], b""), "a\nb\nc\nd\n");
}

#[test]
fn help_explains_the_basics() {
    let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for word in [
        "topic create",
        "produce",
        "consume",
        "--offset",
        "--from-time",
        "SLUICE_BOOTSTRAP",
    ] {
        assert!(help.contains(word), "--help lacks {word:?}:\n{help}");
    }
    // -h starts with what the CLI is, not the library crate's description.
    let short = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("-h")
        .output()
        .unwrap();
    let short = String::from_utf8(short.stdout).unwrap();
    assert!(
        short.starts_with("Sluice command-line client"),
        "-h begins: {:?}",
        short.lines().next()
    );
    for command in [
        vec!["topic", "create", "--help"],
        vec!["produce", "--help"],
        vec!["consume", "--help"],
        vec!["group", "reset-offsets", "--help"],
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(&command)
            .output()
            .unwrap();
        assert!(output.status.success(), "{command:?}");
        assert!(
            String::from_utf8(output.stdout)
                .unwrap()
                .contains("Example"),
            "{command:?}"
        );
    }
}

/// A running `sluice` whose stdout and stderr lines arrive on channels as they are
/// printed, for commands that keep running (`consume --follow`).
struct Running {
    child: std::process::Child,
    stdout: std::sync::mpsc::Receiver<String>,
    stderr: std::sync::mpsc::Receiver<String>,
}

impl Running {
    fn start(broker: &Broker, args: &[&str]) -> Running {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(args)
            .env("SLUICE_BOOTSTRAP", &broker.addr)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run sluice");
        let lines = |pipe: Box<dyn std::io::Read + Send>| {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            rx
        };
        let stdout = lines(Box::new(child.stdout.take().unwrap()));
        let stderr = lines(Box::new(child.stderr.take().unwrap()));
        Running {
            child,
            stdout,
            stderr,
        }
    }

    /// Waits (at most 30 s) for a line of `pipe` that contains `text`; returns it.
    fn expect(
        pipe: &std::sync::mpsc::Receiver<String>,
        text: &str,
        seen: &mut Vec<String>,
    ) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match pipe.recv_timeout(left) {
                Ok(line) if line.contains(text) => return line,
                Ok(line) => seen.push(line),
                Err(_) => panic!("no line with {text:?} within 30 s; saw {seen:?}"),
            }
        }
    }

    fn stdout_line(&mut self, text: &str) -> String {
        Self::expect(&self.stdout, text, &mut Vec::new())
    }

    fn stderr_line(&mut self, text: &str) -> String {
        Self::expect(&self.stderr, text, &mut Vec::new())
    }

    /// Waits (at most 30 s) for the process to exit; its status code.
    fn exit_code(&mut self) -> Option<i32> {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(std::time::Instant::now() < deadline, "sluice did not exit");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn follow_says_when_the_broker_is_lost_and_back_and_when_the_topic_is_deleted() {
    let mut broker = Broker::start();
    if !broker.is_local() {
        return; // needs to stop and start the broker
    }
    let topic = unique("cli-follow-notes");
    ok(&broker, &["topic", "create", &topic], b"");
    ok(&broker, &["produce", &topic], b"first\n");
    let mut follow = Running::start(
        &broker,
        &["consume", &topic, "--follow", "--format", "%o %v\\n"],
    );
    assert_eq!(follow.stdout_line("first"), "0 first");

    broker.kill();
    let lost = follow.stderr_line("lost connection");
    assert_eq!(
        lost,
        format!("lost connection to {}, retrying…", broker.addr)
    );
    broker.start_again();
    assert_eq!(
        follow.stderr_line("reconnected"),
        format!("reconnected to {}", broker.addr)
    );
    ok(&broker, &["produce", &topic], b"second\n");
    assert_eq!(follow.stdout_line("second"), "1 second");

    ok(&broker, &["topic", "delete", &topic], b"");
    let deleted = follow.stderr_line("was deleted");
    assert!(
        deleted.starts_with(&format!("error: topic {topic:?} was deleted")),
        "{deleted}"
    );
    assert_eq!(follow.exit_code(), Some(1));
}

#[test]
fn follow_in_a_group_says_it_is_joining_and_waits_for_a_deleted_topic() {
    // A new group's first join waits group.initial.rebalance.delay.ms: 3 s is long
    // enough for the note (set here, as an external broker may have it at 0).
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("broker.properties");
    std::fs::write(&config, "group.initial.rebalance.delay.ms=3000\n").unwrap();
    let broker = Broker::start_with(&["--config", config.to_str().unwrap()]);
    let topic = unique("cli-follow-wait");
    let group = unique("cli-follow-wait-g");
    ok(&broker, &["topic", "create", &topic], b"");
    ok(&broker, &["produce", &topic], b"old\n");
    let mut follow = Running::start(
        &broker,
        &[
            "consume",
            &topic,
            "--group",
            &group,
            "--follow",
            "--wait-for-topic",
        ],
    );
    if broker.is_local() {
        assert_eq!(
            follow.stderr_line("joining"),
            format!("joining group {group}…")
        );
    }
    assert_eq!(
        follow.stderr_line("joined"),
        format!("joined group {group}: reading partition(s) 0")
    );
    assert_eq!(follow.stdout_line("old"), "old");

    ok(&broker, &["topic", "delete", &topic], b"");
    assert_eq!(
        follow.stderr_line("was deleted"),
        format!("topic {topic} was deleted; waiting for it to be created again…")
    );
    ok(&broker, &["topic", "create", &topic], b"");
    follow.stderr_line("exists again");
    ok(&broker, &["produce", &topic], b"new-1\nnew-2\n");
    // The new topic is read from its start, not from the group's commit in the old one
    // (offset 1, which would skip new-1).
    assert_eq!(follow.stdout_line("new"), "new-1");
    assert_eq!(follow.stdout_line("new"), "new-2");
}

#[test]
fn follow_waits_for_a_deleted_topic_and_reads_all_partitions_of_the_new_one() {
    let broker = Broker::start();
    let topic = unique("cli-follow-regrow");
    ok(
        &broker,
        &["topic", "create", &topic, "--partitions", "1"],
        b"",
    );
    ok(&broker, &["produce", &topic], b"old\n");
    let mut follow = Running::start(
        &broker,
        &[
            "consume",
            &topic,
            "--follow",
            "--wait-for-topic",
            "--format",
            "%p %v\\n",
        ],
    );
    assert_eq!(follow.stdout_line("old"), "0 old");
    ok(&broker, &["topic", "delete", &topic], b"");
    follow.stderr_line("was deleted");
    ok(
        &broker,
        &["topic", "create", &topic, "--partitions", "3"],
        b"",
    );
    follow.stderr_line("exists again");
    for p in ["0", "1", "2"] {
        ok(
            &broker,
            &["produce", &topic, "--partition", p],
            format!("new-{p}\n").as_bytes(),
        );
    }
    let mut got: Vec<String> = (0..3).map(|_| follow.stdout_line("new")).collect();
    got.sort();
    assert_eq!(got, ["0 new-0", "1 new-1", "2 new-2"]);
}

#[test]
fn client_properties_raise_the_record_limit_and_unknown_ones_are_refused() {
    let broker = Broker::start();
    let topic = unique("cli-props");
    ok(
        &broker,
        &[
            "topic",
            "create",
            &topic,
            "--config",
            "max.message.bytes=4194304",
        ],
        b"",
    );
    let big = format!("{}\n", "x".repeat(2 * 1024 * 1024));

    // The default limit (1 MiB) refuses it, says how to raise it, and reports no rate.
    let output = sluice(&broker, &["produce", &topic], big.as_bytes());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("produced 0 record(s), 0 B"), "{stderr}");
    assert!(stderr.contains("max.request.size"), "{stderr}");
    assert!(stderr.contains("-X max.request.size="), "{stderr}");
    assert!(!stderr.contains("max_request_size"), "{stderr}");

    // -X, --producer-property and a -F file each raise it.
    ok(
        &broker,
        &["-X", "max.request.size=3000000", "produce", &topic],
        big.as_bytes(),
    );
    ok(
        &broker,
        &[
            "produce",
            &topic,
            "--producer-property",
            "max.request.size=3000000",
        ],
        big.as_bytes(),
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("client.properties");
    std::fs::write(
        &file,
        "# a producer\nmax.request.size = 3000000\nlinger.ms=0\n",
    )
    .unwrap();
    ok(
        &broker,
        &["-F", file.to_str().unwrap(), "produce", &topic],
        big.as_bytes(),
    );
    // Consumer properties apply to consume (and producer ones are left alone there).
    let values = ok(
        &broker,
        &[
            "-F",
            file.to_str().unwrap(),
            "consume",
            &topic,
            "--format",
            "%S\\n",
            "--consumer-property",
            "max.partition.fetch.bytes=5000000",
            "--consumer-property",
            "isolation.level=read_committed",
        ],
        b"",
    );
    assert_eq!(values, "2097152\n".repeat(3));

    // bootstrap.servers from the file, when neither -b nor $SLUICE_BOOTSTRAP is given.
    std::fs::write(&file, format!("bootstrap.servers={}\n", broker.addr)).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["-F", file.to_str().unwrap(), "topic", "list"])
        .env_remove("SLUICE_BOOTSTRAP")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains(&topic));

    // Precedence: the file < -X < --producer-property < the command's own flags (acks=0
    // shows in the summary).
    let acks_zero = |args: &[&str]| {
        let output = sluice(&broker, args, b"x\n");
        assert!(output.status.success());
        String::from_utf8_lossy(&output.stderr).contains("acks=0")
    };
    std::fs::write(&file, "acks=0\n").unwrap();
    let f = file.to_str().unwrap();
    assert!(acks_zero(&["-F", f, "produce", &topic]));
    assert!(!acks_zero(&["-F", f, "-X", "acks=all", "produce", &topic]));
    assert!(acks_zero(&[
        "-X",
        "acks=all",
        "produce",
        &topic,
        "--producer-property",
        "acks=0"
    ]));
    assert!(!acks_zero(&[
        "-X", "acks=0", "produce", &topic, "--acks", "all"
    ]));
    // bootstrap.servers beats $SLUICE_BOOTSTRAP, and -b beats both (127.0.0.1:1 is a
    // closed port).
    let closed = "127.0.0.1:1";
    let listed = |args: &[&str], env: &str| {
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(args)
            .env("SLUICE_BOOTSTRAP", env)
            .output()
            .unwrap()
            .status
            .success()
    };
    let good = format!("bootstrap.servers={}", broker.addr);
    assert!(listed(&["-X", &good, "topic", "list"], closed));
    assert!(!listed(
        &["-X", "bootstrap.servers=127.0.0.1:1", "topic", "list"],
        &broker.addr
    ));
    assert!(listed(
        &[
            "-b",
            &broker.addr,
            "-X",
            "bootstrap.servers=127.0.0.1:1",
            "topic",
            "list"
        ],
        closed
    ));
    assert!(listed(
        &["consume", &topic, "-n", "1", "--consumer-property", &good],
        closed
    ));

    // Mistakes are usage errors (exit 2), one line, with the closest name.
    let line = fails(&broker, &["-X", "max.requst.size=5", "topic", "list"], 2);
    assert!(line.contains("did you mean \"max.request.size\""), "{line}");
    let line = fails(&broker, &["-X", "linger.ms=soon", "topic", "list"], 2);
    assert!(line.contains("linger.ms"), "{line}");
    let line = fails(
        &broker,
        &["consume", &topic, "--consumer-property", "linger.ms=5"],
        2,
    );
    assert!(line.contains("linger.ms is a producer property"), "{line}");
    let line = fails(
        &broker,
        &[
            "-X",
            "max.in.flight.requests.per.connection=9",
            "produce",
            &topic,
        ],
        2,
    );
    assert!(
        line.contains("max.in.flight.requests.per.connection must be 1 to 5"),
        "{line}"
    );
    let line = fails(
        &broker,
        &[
            "-X",
            "enable.idempotence=true",
            "produce",
            &topic,
            "--acks",
            "1",
        ],
        2,
    );
    assert!(
        line.contains("enable.idempotence=true conflicts with acks=1"),
        "{line}"
    );
    let line = fails(
        &broker,
        &["-X", "batch.size=18446744073709551615", "produce", &topic],
        2,
    );
    assert!(line.contains("batch.size"), "{line}");
    std::fs::write(&file, "acks=all\nthis line is wrong\n").unwrap();
    let line = fails(&broker, &["-F", file.to_str().unwrap(), "topic", "list"], 2);
    assert!(line.contains("line 2"), "{line}");
}

#[test]
fn produce_creates_a_missing_topic_when_the_broker_allows_it() {
    let broker = Broker::start();
    let topic = unique("cli-auto-create");
    let output = sluice(&broker, &["produce", &topic], b"hello\n");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("note: created topic {topic} with ")),
        "{stderr}"
    );
    assert_eq!(ok(&broker, &["consume", &topic], b""), "hello\n");
    // The second time, no note.
    let output = sluice(&broker, &["produce", &topic], b"again\n");
    assert!(!String::from_utf8_lossy(&output.stderr).contains("note:"));

    if !broker.is_local() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("broker.properties");
    std::fs::write(&config, "auto.create.topics.enable=false\n").unwrap();
    let strict = Broker::start_with(&["--config", config.to_str().unwrap()]);
    let line = fails(&strict, &["produce", &topic], 1);
    assert!(line.contains("auto.create.topics.enable=false"), "{line}");
    assert!(
        line.contains(&format!("sluice topic create {topic}")),
        "{line}"
    );
}

#[test]
fn templates_print_the_fields_asked_for() {
    let broker = Broker::start();
    let topic = unique("cli-template");
    ok(
        &broker,
        &["topic", "create", &topic, "--partitions", "1"],
        b"",
    );
    ok(
        &broker,
        &["produce", &topic, "-K", ":", "-H", "h=1"],
        b"k1:v1\nnokey\n",
    );
    let text = ok(
        &broker,
        &[
            "consume",
            &topic,
            "--format",
            "%t|%p|%o|%k|%v|%K|%S|%h\\n",
            "-Z",
        ],
        b"",
    );
    assert_eq!(
        text,
        format!("{topic}|0|0|k1|v1|2|2|h=1\n{topic}|0|1|NULL|nokey|-1|5|h=1\n")
    );
    let line = fails(&broker, &["consume", &topic, "--format", "%q"], 2);
    assert!(line.contains("%q is not a format code"), "{line}");
    let line = fails(&broker, &["consume", &topic, "--format", "yaml"], 2);
    assert!(line.contains("not a format"), "{line}");
}

#[test]
fn completions_and_manual_pages_come_from_the_binary() {
    let run = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(args)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };
    for shell in ["bash", "zsh", "fish"] {
        let script = run(&["completion", shell]);
        assert!(
            script.contains("consume") && script.contains("--follow"),
            "{shell}"
        );
    }
    let page = run(&["man"]);
    assert!(
        page.contains(".TH sluice") && page.contains(".SH NAME"),
        "{page}"
    );
    let dir = tempfile::tempdir().unwrap();
    run(&["man", "--dir", dir.path().to_str().unwrap()]);
    for name in [
        "sluice.1",
        "sluice-consume.1",
        "sluice-topic-create.1",
        "sluice-group-reset-offsets.1",
    ] {
        let page = std::fs::read_to_string(dir.path().join(name)).unwrap();
        // Every page has the global flags.
        assert!(
            page.contains(".SH NAME") && page.contains("bootstrap"),
            "{name}"
        );
    }
}

#[test]
fn deleting_a_topic_removes_its_committed_offsets() {
    let broker = Broker::start();
    let topic = unique("cli-forget");
    let group = unique("cli-forget-g");
    ok(&broker, &["topic", "create", &topic], b"");
    ok(&broker, &["produce", &topic], b"a\nb\n");
    assert_eq!(
        ok(&broker, &["consume", &topic, "--group", &group], b""),
        "a\nb\n"
    );
    let described = ok(&broker, &["group", "describe", &group], b"");
    assert!(described.contains(&topic), "{described}");

    // As in Kafka: the offsets of a deleted topic go with it, so a topic created again
    // under the name is read from its start, not from the old topic's positions.
    ok(&broker, &["topic", "delete", &topic], b"");
    ok_eventually(
        &broker,
        &["group", "describe", &group],
        "the deleted topic's offsets to go",
        |out| !out.contains(&topic),
    );
    ok(&broker, &["topic", "create", &topic], b"");
    // (An old commit at offset 2 would skip c and d.)
    ok(&broker, &["produce", &topic], b"c\nd\ne\n");
    assert_eq!(
        ok(&broker, &["consume", &topic, "--group", &group], b""),
        "c\nd\ne\n"
    );
}
