//! Restarts: data, topic ids and configs survive a clean shutdown (which leaves the
//! clean-shutdown marker) and a crash (no marker: recovery), and a torn tail written
//! before a crash is cut by recovery. A broker restarted after a crash serves at once: it
//! does not wait for its previous process's controller session to expire.

mod common;

use std::io::Write;

use common::{batch, Client};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_survives_clean_shutdown_and_crash() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::start(dir.path(), &[]).await;
    let mut client = Client::connect(broker.local_addr()).await;
    let id = client
        .create_topic("keep", 3, &[("retention.ms", "123456789")])
        .await
        .topics[0]
        .topic_id;
    for p in 0..3 {
        for i in 0..5 {
            assert_eq!(
                client
                    .produce("keep", p, batch(&[(None, &format!("{p}-{i}"))]))
                    .await,
                (0, i)
            );
        }
    }
    let before = client.fetch("keep", 1, 0).await.records.unwrap();
    drop(client);
    broker.shutdown().await.unwrap();
    assert!(
        dir.path().join(".clean-shutdown").exists(),
        "clean shutdown leaves the marker"
    );

    let broker = common::start(dir.path(), &[]).await;
    assert!(
        !dir.path().join(".clean-shutdown").exists(),
        "the marker is consumed at start"
    );
    let mut client = Client::connect(broker.local_addr()).await;
    let topic = broker.state().topics.get("keep").unwrap();
    assert_eq!(topic.id, id);
    assert_eq!(topic.partition_count(), 3);
    assert_eq!(topic.config().retention_ms, 123456789);
    assert_eq!(client.fetch("keep", 1, 0).await.records.unwrap(), before);
    assert_eq!(
        client.produce("keep", 1, batch(&[(None, "after")])).await,
        (0, 5)
    );
    drop(client);
    // A crash: no flush, no close, no marker.
    broker.kill().await;
    assert!(!dir.path().join(".clean-shutdown").exists());

    let broker = common::start(dir.path(), &[]).await;
    let mut client = Client::connect(broker.local_addr()).await;
    let data = client.fetch("keep", 1, 0).await;
    assert_eq!(
        data.high_watermark, 6,
        "the page cache kept everything appended"
    );
    assert_eq!(
        client.produce("keep", 1, batch(&[(None, "again")])).await,
        (0, 6)
    );
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restarted_after_a_crash_does_not_wait_out_its_old_session() {
    // A session far longer than the deadline below: a restart that waited for the old
    // process's session to expire (its registration "alive") would fail this test.
    let extra = [("broker.session.timeout.ms", "120000")];
    let dir = tempfile::tempdir().unwrap();
    let broker = common::start(dir.path(), &extra).await;
    let mut client = Client::connect(broker.local_addr()).await;
    client.create_topic("crash", 1, &[]).await;
    assert_eq!(
        client.produce("crash", 0, batch(&[(None, "a")])).await,
        (0, 0)
    );
    drop(client);
    broker.kill().await;

    let started = std::time::Instant::now();
    let broker = common::start(dir.path(), &extra).await;
    let mut client = Client::connect(broker.local_addr()).await;
    let deadline = started + std::time::Duration::from_secs(30);
    let mut answer = client.produce("crash", 0, batch(&[(None, "b")])).await;
    while answer.0 != 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        answer = client.produce("crash", 0, batch(&[(None, "b")])).await;
    }
    assert_eq!(
        answer,
        (0, 1),
        "the restarted broker takes writes well before its old session (120 s) expires"
    );
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_cuts_a_torn_tail_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::start(dir.path(), &[]).await;
    let mut client = Client::connect(broker.local_addr()).await;
    client.create_topic("torn", 1, &[]).await;
    for i in 0..3 {
        assert_eq!(
            client.produce("torn", 0, batch(&[(None, "x")])).await,
            (0, i)
        );
    }
    drop(client);
    broker.kill().await;
    // Half a batch at the end of the segment, as a crash mid-write leaves it.
    let segment = dir.path().join("torn-0/00000000000000000000.log");
    let len = {
        let log = std::fs::read(&segment).unwrap();
        // The segment may be preallocated: find the end of the valid data.
        let mut at = 0;
        while at + 12 <= log.len() {
            let size = i32::from_be_bytes(log[at + 8..at + 12].try_into().unwrap());
            if size <= 0 {
                break;
            }
            at += 12 + size as usize;
        }
        at
    };
    let half = batch(&[(None, "torn write")]);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap();
    std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(len as u64)).unwrap();
    file.write_all(&half[..half.len() / 2]).unwrap();
    drop(file);

    let broker = common::start(dir.path(), &[]).await;
    let mut client = Client::connect(broker.local_addr()).await;
    assert_eq!(client.fetch("torn", 0, 0).await.high_watermark, 3);
    assert_eq!(
        client.produce("torn", 0, batch(&[(None, "y")])).await,
        (0, 3)
    );
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_serves_one_broker_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::start(dir.path(), &[]).await;
    let second = sluice_broker::Broker::start(common::config(dir.path(), &[])).await;
    assert!(matches!(
        second,
        Err(sluice_broker::BrokerError::DataDirLocked { .. })
    ));
    broker.shutdown().await.unwrap();
    let again = common::start(dir.path(), &[]).await;
    again.shutdown().await.unwrap();
}

/// IncrementalAlterConfigs of a BROKER resource (`""`: the cluster default; `"1"`: this
/// broker) with SET operations.
async fn set_broker_configs(client: &mut Client, resource: &str, configs: &[(&str, &str)]) {
    use kafka_protocol::messages::incremental_alter_configs_request::{
        AlterConfigsResource, AlterableConfig,
    };
    use kafka_protocol::messages::IncrementalAlterConfigsRequest;
    use kafka_protocol::protocol::StrBytes;
    let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(4)
            .with_resource_name(StrBytes::from_string(resource.to_owned()))
            .with_configs(
                configs
                    .iter()
                    .map(|(name, value)| {
                        AlterableConfig::default()
                            .with_name(StrBytes::from_string(name.to_string()))
                            .with_config_operation(0)
                            .with_value(Some(StrBytes::from_string(value.to_string())))
                    })
                    .collect(),
            ),
    ]);
    let response = client.send(1, &request).await;
    assert_eq!(
        response.responses[0].error_code, 0,
        "{:?}",
        response.responses[0].error_message
    );
}

/// Dynamic broker configs are kept by the metadata (a cluster node) or the data directory
/// (the single node of earlier releases): a topic without an override takes the new
/// default at once and again after a restart, and the connection caps change too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_broker_configs_apply_at_once_and_after_a_restart() {
    for legacy in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let start = |dir: std::path::PathBuf| async move {
            if legacy {
                common::start_legacy(&dir, &[]).await
            } else {
                common::start(&dir, &[]).await
            }
        };
        let broker = start(dir.path().to_owned()).await;
        let mut client = Client::connect(broker.local_addr()).await;
        client.create_topic("plain", 1, &[]).await;
        client
            .create_topic("own", 1, &[("retention.ms", "5555")])
            .await;
        set_broker_configs(&mut client, "", &[("log.retention.ms", "1234000")]).await;
        set_broker_configs(
            &mut client,
            "1",
            &[
                ("max.connections.per.ip", "7"),
                ("sasl.kerberos.min.time.before.relogin", "58000"),
            ],
        )
        .await;
        let applied = |broker: &sluice_broker::BrokerHandle| {
            let state = broker.state();
            state.topics.get("plain").unwrap().config().retention_ms == 1234000
                && state.topics.get("own").unwrap().config().retention_ms == 5555
                && state.limits.cap_for("127.0.0.1".parse().unwrap()) == 7
        };
        common::wait_until("the dynamic configs apply", || applied(&broker)).await;
        drop(client);
        broker.shutdown().await.unwrap();

        let broker = start(dir.path().to_owned()).await;
        common::wait_until("the dynamic configs apply after a restart", || {
            applied(&broker)
        })
        .await;
        broker.shutdown().await.unwrap();
    }
}
