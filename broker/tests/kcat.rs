//! End-to-end smoke test with kcat (librdkafka), a client nobody here wrote: metadata,
//! keyed produce with every codec to a 6-partition topic, and consume back.
//!
//! kcat must be installed (scripts/deps.sh installs it); without it this test fails
//! with a message saying so rather than passing silently.

mod common;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};

use common::Client;

fn kcat(args: &[String], input: Option<&str>) -> String {
    let mut child = Command::new("kcat")
        .args(args)
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("kcat is required for this test and could not be run ({e}); install it with `apt-get install -y kcat` (scripts/deps.sh does)")
        });
    if let Some(input) = input {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kcat {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcat_produces_and_consumes_with_every_codec() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::start(dir.path(), &[]).await;
    let bootstrap = broker.local_addr().to_string();
    let mut client = Client::connect(broker.local_addr()).await;
    assert_eq!(
        client.create_topic("kcat-six", 6, &[]).await.topics[0].error_code,
        0
    );

    let b = bootstrap.clone();
    let result = tokio::task::spawn_blocking(move || {
        let args = |extra: &[&str]| -> Vec<String> {
            let mut v = vec!["-b".to_owned(), b.clone()];
            v.extend(extra.iter().map(|s| s.to_string()));
            v
        };
        let listing = kcat(&args(&["-L", "-t", "kcat-six"]), None);
        assert!(
            listing.contains("topic \"kcat-six\" with 6 partitions"),
            "{listing}"
        );

        let mut expected = BTreeSet::new();
        for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
            let mut input = String::new();
            for i in 0..50 {
                let line = format!("key{i}:{codec}-value-{i}");
                expected.insert(format!("key{i}={codec}-value-{i}"));
                input.push_str(&line);
                input.push('\n');
            }
            kcat(
                &args(&["-P", "-t", "kcat-six", "-K:", "-z", codec, "-X", "acks=all"]),
                Some(&input),
            );
        }
        let consumed = kcat(
            &args(&["-C", "-t", "kcat-six", "-e", "-q", "-f", "%k=%s %p\n"]),
            None,
        );
        let mut got = BTreeSet::new();
        let mut partition_of = std::collections::HashMap::new();
        for line in consumed.lines() {
            let (record, partition) = line.rsplit_once(' ').unwrap();
            got.insert(record.to_owned());
            // Same key, same partition.
            let key = record.split('=').next().unwrap().to_owned();
            let p = partition_of
                .entry(key)
                .or_insert_with(|| partition.to_owned());
            assert_eq!(p, partition, "{record}");
        }
        assert_eq!(got, expected);
        assert!(
            partition_of.values().collect::<BTreeSet<_>>().len() > 1,
            "keys spread over partitions"
        );
        // Auto-creation by the producer's metadata request.
        kcat(&args(&["-P", "-t", "kcat-auto"]), Some("hello\n"));
        let consumed = kcat(&args(&["-C", "-t", "kcat-auto", "-e", "-q"]), None);
        assert_eq!(consumed.trim(), "hello");
    })
    .await;
    broker.shutdown().await.unwrap();
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}
