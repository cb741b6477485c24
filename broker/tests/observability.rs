//! The admin listener over HTTP: /metrics counts what the broker did (bytes and records
//! per topic and partition, requests and errors per API, connections), and /v1/health,
//! /v1/ready and /v1/status answer while it serves.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use common::{batch, Client};

/// GETs `path` from the admin listener: (status, body).
async fn get(admin: SocketAddr, path: &str) -> (u16, String) {
    let url = format!("http://{admin}{path}");
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .http_status_as_error(false)
            .build()
            .into();
        let mut response = agent.get(&url).call().expect("admin listener answers");
        let status = response.status().as_u16();
        (status, response.body_mut().read_to_string().expect("body"))
    })
    .await
    .expect("request task")
}

/// The samples of a Prometheus text answer: "name{labels}" -> value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

fn value(samples: &BTreeMap<String, f64>, series: &str) -> f64 {
    *samples
        .get(series)
        .unwrap_or_else(|| panic!("no {series} in the metrics"))
}

#[tokio::test]
async fn metrics_count_what_the_broker_did() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::start(dir.path(), &[]).await;
    let admin = broker.admin_addr().expect("the admin listener runs");
    let mut client = Client::connect(broker.local_addr()).await;
    client.create_topic("observed", 2, &[]).await;
    let mut bytes_in = 0usize;
    for i in 0..3 {
        let records = batch(&[
            (None, "one"),
            (Some("k"), &format!("value {i}")),
            (None, "three"),
        ]);
        bytes_in += records.len();
        let (code, _) = client.produce("observed", 0, records).await;
        assert_eq!(code, 0);
    }
    // A refused produce: its error is counted under its Kafka name.
    let (code, _) = client.produce("observed", 7, batch(&[(None, "x")])).await;
    assert_ne!(code, 0);
    let data = client.fetch("observed", 0, 0).await;
    let fetched = data.records.as_ref().map_or(0, |r| r.len());
    assert_eq!(fetched, bytes_in);

    let (status, text) = get(admin, "/metrics").await;
    assert_eq!(status, 200);
    let m = samples(&text);
    let topic = r#"{topic="observed"}"#;
    let p0 = r#"{topic="observed",partition="0"}"#;
    let p1 = r#"{topic="observed",partition="1"}"#;
    assert_eq!(
        value(&m, &format!("sluice_topic_records_in_total{topic}")),
        9.0
    );
    assert_eq!(
        value(&m, &format!("sluice_topic_batches_in_total{topic}")),
        3.0
    );
    assert_eq!(
        value(&m, &format!("sluice_topic_bytes_in_total{topic}")),
        bytes_in as f64
    );
    assert_eq!(
        value(&m, &format!("sluice_topic_bytes_out_total{topic}")),
        fetched as f64
    );
    assert_eq!(
        value(&m, &format!("sluice_topic_records_out_total{topic}")),
        9.0
    );
    assert_eq!(value(&m, &format!("sluice_topic_partitions{topic}")), 2.0);
    assert_eq!(
        value(&m, &format!("sluice_partition_log_end_offset{p0}")),
        9.0
    );
    assert_eq!(
        value(&m, &format!("sluice_partition_high_watermark{p0}")),
        9.0
    );
    assert_eq!(
        value(&m, &format!("sluice_partition_log_end_offset{p1}")),
        0.0
    );
    assert_eq!(value(&m, &format!("sluice_partition_segments{p0}")), 1.0);
    assert!(value(&m, &format!("sluice_partition_size_bytes{p0}")) >= bytes_in as f64);
    // Requests are counted process-wide (other tests' brokers share the counts).
    assert!(value(&m, r#"sluice_requests_total{api="Produce",version="9"}"#) >= 4.0);
    assert!(
        value(
            &m,
            r#"sluice_request_duration_seconds_count{api="Produce",stage="total"}"#
        ) >= 4.0
    );
    assert!(
        value(
            &m,
            r#"sluice_request_duration_seconds_bucket{api="Produce",stage="local",le="+Inf"}"#
        ) >= 4.0
    );
    assert!(
        value(
            &m,
            r#"sluice_request_errors_total{api="Produce",error="UNKNOWN_TOPIC_OR_PARTITION"}"#
        ) >= 1.0
    );
    assert_eq!(
        value(&m, r#"sluice_connections_open{listener="PLAINTEXT"}"#),
        1.0
    );
    assert!(
        value(
            &m,
            r#"sluice_connections_accepted_total{listener="PLAINTEXT"}"#
        ) >= 1.0
    );
    assert!(value(&m, "process_resident_memory_bytes") > 0.0);
    assert!(value(&m, "process_open_fds") > 0.0);
    assert!(value(&m, "sluice_topics") >= 1.0);

    drop(client);
    broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn health_ready_and_status_answer_while_serving() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::start(dir.path(), &[]).await;
    let admin = broker.admin_addr().expect("the admin listener runs");
    let (status, body) = get(admin, "/v1/health").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = get(admin, "/v1/ready").await;
    assert_eq!(status, 200, "{body}");
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["ready"], true);
    let (status, body) = get(admin, "/v1/status").await;
    assert_eq!(status, 200, "{body}");
    let s: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(s["node_id"], 1);
    assert_eq!(s["status"], "serving");
    assert_eq!(
        s["listeners"][0]["address"],
        broker.local_addr().to_string()
    );
    assert!(s["data_dir"]["filesystem_total_bytes"].as_u64().unwrap() > 0);
    let (status, body) = get(admin, "/").await;
    assert_eq!(status, 200);
    assert!(body.contains("<canvas id=\"chart-throughput\""));
    let (status, _) = get(admin, "/v1/groups/nobody").await;
    assert_eq!(status, 404);
    broker.shutdown().await.unwrap();
    // Stopped with its broker.
    assert!(std::net::TcpStream::connect(admin).is_err());
}
