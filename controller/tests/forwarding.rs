//! Controller requests made on any node (Kafka's KIP-590 forwarding): three controllers on
//! 127.0.0.1, requests called on followers and on a node outside the quorum, answers and
//! errors carried back intact, a request made during an election (timed), no hang without a
//! majority, and garbage on the controller port.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_controller::rpc::{self, ControllerRequest};
use sluice_controller::{ControllerError, MetadataService, MetadataServiceConfig};
use sluice_metadata::controller::CreateTopic;
use sluice_metadata::MetadataError;
use sluice_quorum::QuorumConfig;
use support::{heartbeat, registration, Cluster, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn topic(name: &str, partitions: i32) -> CreateTopic {
    CreateTopic {
        topic_id: None,
        name: name.into(),
        num_partitions: partitions,
        replication_factor: 1,
        assignments: Vec::new(),
        configs: BTreeMap::new(),
    }
}

/// Sends one ControllerRequest frame with `body` and reads the answer's body.
async fn raw_request(s: &mut TcpStream, correlation_id: u32, body: &[u8]) -> Vec<u8> {
    let frame = [
        &((8 + body.len()) as u32).to_be_bytes()[..],
        &1u16.to_be_bytes(),
        &5u16.to_be_bytes(),
        &correlation_id.to_be_bytes(),
        body,
    ]
    .concat();
    s.write_all(&frame).await.unwrap();
    let mut len = [0u8; 4];
    tokio::time::timeout(WAIT, s.read_exact(&mut len))
        .await
        .expect("an answer in time")
        .expect("an answer, not a close");
    let mut rest = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut rest).await.unwrap();
    assert_eq!(u16::from_be_bytes([rest[2], rest[3]]), 0x8005);
    assert_eq!(
        u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]),
        correlation_id
    );
    rest[8..].to_vec()
}

/// A ControllerRequest answer's body: `Ok(handler's bytes)` or `Err(text)`.
fn answer(body: &[u8]) -> Result<Vec<u8>, String> {
    let value: ciborium::Value = ciborium::from_reader(body).expect("CBOR");
    let map = value.into_map().expect("a map");
    let (key, value) = map.into_iter().next().expect("one key");
    match key.as_text() {
        Some("Ok") => Ok(value.into_bytes().expect("bytes")),
        Some("Err") => Err(value.into_text().expect("a text")),
        other => panic!("{other:?}"),
    }
}

/// The error text of a ControllerRequest answer that is an error.
fn error_text(body: &[u8]) -> String {
    answer(body).expect_err("an error answer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_on_any_node_reach_the_active_controller() {
    let c = Cluster::start(3, |_| {}).await;
    let leader = c.active().await;
    c.converged(0).await;
    let followers: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    let (f1, f2) = (c.svc(followers[0]).clone(), c.svc(followers[1]).clone());
    let cluster_id = c.svc(leader).image().cluster_id().unwrap().to_owned();
    for s in c.running() {
        assert_eq!(s.active_controller_id(), Some(leader));
    }

    // --- a broker registers through one follower and heartbeats through the other ---
    let epoch = f1
        .register_broker(registration(1, &cluster_id))
        .await
        .unwrap();
    let hb = f2
        .broker_heartbeat(heartbeat(1, epoch.value, epoch.value))
        .await
        .unwrap();
    assert!(hb.value.is_caught_up && !hb.value.is_fenced, "{hb:?}");
    for s in c.running() {
        let image = s.wait_for_offset(hb.offset, WAIT).await.unwrap();
        let broker = image.broker(1).expect("registered everywhere");
        assert_eq!(broker.epoch, epoch.value);
        assert!(!broker.fenced, "node {}", s.node_id());
    }

    // --- a topic created through a follower, visible on every node ---
    let created = f1
        .create_topics(vec![topic("via-follower", 4)])
        .await
        .unwrap();
    let topic_id = created.value[0].as_ref().unwrap().topic_id;
    for s in c.running() {
        let image = s.wait_for_offset(created.offset, WAIT).await.unwrap();
        let t = image.topic("via-follower").expect("the topic everywhere");
        assert_eq!(t.id, topic_id);
        assert_eq!(t.partitions.len(), 4);
        assert!(t.partitions.iter().all(|p| p.leader == 1));
    }

    // --- errors come back as the controller decided them ---
    let again = f2
        .create_topics(vec![topic("via-follower", 1)])
        .await
        .unwrap();
    let e = again.value[0].as_ref().unwrap_err();
    assert!(matches!(e, MetadataError::TopicAlreadyExists(n) if n == "via-follower"));
    assert_eq!(e.to_string(), "Topic 'via-follower' already exists.");
    match f1
        .broker_heartbeat(heartbeat(1, epoch.value + 1000, 0))
        .await
    {
        Err(e @ ControllerError::Request(MetadataError::StaleBrokerEpoch { .. })) => {
            assert_eq!(e.kafka_error_name(), "STALE_BROKER_EPOCH")
        }
        other => panic!("{other:?}"),
    }

    // --- producer id blocks from every node are disjoint ---
    let mut blocks = Vec::new();
    for s in [&f1, &f2, c.svc(leader), &f1] {
        blocks.push(s.allocate_producer_ids(1, epoch.value).await.unwrap().value);
    }
    blocks.sort_by_key(|b| b.first_id);
    for pair in blocks.windows(2) {
        assert!(
            pair[0].first_id + pair[0].size <= pair[1].first_id,
            "{blocks:?}"
        );
    }

    // --- DescribeQuorum on a follower is the leader's view (lags known) ---
    let quorum = f2.describe_quorum().await.unwrap();
    assert_eq!(quorum.leader, Some(leader));
    assert_eq!(quorum.voters.len(), 3);
    assert!(quorum.voters.iter().all(|v| v.lag.is_some()), "{quorum:?}");

    // --- a node outside the quorum (a broker before it is added) finds the controller ---
    let outsider_dir = c.tmp.path().join("node-4");
    let outsider = Arc::new(
        MetadataService::start(MetadataServiceConfig::new(QuorumConfig::new(
            4,
            c.voters.clone(),
            &outsider_dir,
        )))
        .await
        .unwrap(),
    );
    assert_eq!(outsider.active_controller_id(), None);
    let registered = outsider
        .register_broker(registration(4, &cluster_id))
        .await
        .unwrap();
    let image = c
        .svc(leader)
        .wait_for_offset(registered.offset, WAIT)
        .await
        .unwrap();
    assert_eq!(image.broker(4).unwrap().epoch, registered.value);
    outsider.shutdown().await.unwrap();

    // --- garbage on the controller port: error answers, nothing executed, nothing harmed ---
    let before = c.svc(leader).image().metadata_offset();
    let mut s = TcpStream::connect(c.voters[&followers[0]]).await.unwrap();
    let text = error_text(&raw_request(&mut s, 1, b"\xff\xfe garbage").await);
    assert!(text.contains("bad body"), "{text}");
    let good =
        rpc::encode_request(&ControllerRequest::CreateTopics(vec![topic("x", 1)]), 1000).unwrap();
    let text = error_text(&raw_request(&mut s, 2, &good[..good.len() - 3]).await);
    assert!(text.contains("bad body"), "{text}");
    let mut future = Vec::new();
    ciborium::into_writer(
        &ciborium::Value::Map(vec![
            ("version".into(), 9.into()),
            ("timeout_ms".into(), 1000.into()),
            ("request".into(), "ElectPreferredLeaders".into()),
        ]),
        &mut future,
    )
    .unwrap();
    let text = error_text(&raw_request(&mut s, 3, &future).await);
    assert!(text.contains("version 9"), "{text}");
    // An empty body too; then the connection still serves a real request, sent to a
    // follower directly: the follower does not forward it, it names the leader.
    let text = error_text(&raw_request(&mut s, 4, b"").await);
    assert!(text.contains("bad body"), "{text}");
    let bytes = answer(&raw_request(&mut s, 5, &good).await).unwrap();
    match rpc::decode_answer(&bytes).unwrap() {
        Err(rpc::WireError::NotController { leader: l }) => assert_eq!(l, Some(leader)),
        other => panic!("{other:?}"),
    }
    drop(s);
    assert!(c.svc(leader).image().topic("x").is_none());
    assert_eq!(c.active().await, leader);
    let after = f2
        .create_topics(vec![topic("after-garbage", 1)])
        .await
        .unwrap();
    assert!(after.value[0].is_ok());
    assert!(after.offset > before);
    let snapshots = c.converged(after.offset).await;
    let first = snapshots.values().next().unwrap();
    assert!(snapshots.values().all(|s| s == first), "images differ");
}

const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_on_a_follower_waits_out_an_election() {
    let mut c = Cluster::start(3, |config| config.request_timeout = REQUEST_TIMEOUT).await;
    let leader = c.active().await;
    let follower = *c.voters.keys().find(|id| **id != leader).unwrap();
    let warm = c
        .svc(follower)
        .create_topics(vec![topic("before", 1)])
        .await
        .unwrap();
    assert_eq!(
        warm.value[0].as_ref().unwrap_err().kafka_error_name(),
        "INVALID_REPLICATION_FACTOR",
        "no broker registered: the decision is the controller's"
    );

    let cluster_id = c.svc(leader).image().cluster_id().unwrap().to_owned();

    // The leader stops; the follower is asked right away, before any new election.
    let stopped_at = Instant::now();
    c.stop(leader).await;
    let asked_at = Instant::now();
    let registered = c
        .svc(follower)
        .register_broker(registration(7, &cluster_id))
        .await
        .expect("answered after the election");
    let answered = asked_at.elapsed();
    println!(
        "request on follower {follower}: answered {answered:?} after it was made, {:?} after \
         leader {leader} began to stop (its shutdown took {:?})",
        stopped_at.elapsed(),
        asked_at - stopped_at
    );
    assert!(answered < REQUEST_TIMEOUT, "{answered:?}");
    let new_leader = c.active().await;
    assert_ne!(new_leader, leader);
    for s in c.running() {
        let image = s.wait_for_offset(registered.offset, WAIT).await.unwrap();
        assert_eq!(image.broker(7).unwrap().epoch, registered.value);
    }

    // No majority left: a request on the last node ends within the timeout, never hangs.
    c.stop(new_leader).await;
    let last = *c
        .voters
        .keys()
        .find(|id| c.nodes[id].service.is_some())
        .unwrap();
    let started = Instant::now();
    let r = c.svc(last).elect_preferred_leaders().await;
    let took = started.elapsed();
    assert!(
        matches!(
            r,
            Err(ControllerError::Timeout(_)) | Err(ControllerError::NotController { .. })
        ),
        "{r:?}"
    );
    assert!(took < REQUEST_TIMEOUT + Duration::from_secs(1), "{took:?}");
    println!("without a majority the request answered {r:?} after {took:?}");
    c.stop(last).await;
}
