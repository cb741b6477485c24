//! Replication between three brokers in one process over loopback (127.0.0.1-3), with real
//! sockets: followers copy their leader's log byte for byte at the same offsets through
//! the Fetch API; after the leader dies a new one is elected and takes writes; the old
//! leader comes back with a tail the new leader never had, truncates it (KIP-320's
//! diverging epoch) and converges on the new leader's log.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use common::{batch, name, Client};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
use kafka_protocol::messages::{
    CreateTopicsRequest, CreateTopicsResponse, ElectLeadersRequest, ElectLeadersResponse,
    MetadataRequest, MetadataResponse,
};
use sluice_broker::{Broker, BrokerConfig, BrokerHandle};
use sluice_storage::{Flusher, LogConfig, PartitionLog, ReadBound};

const DEADLINE: Duration = Duration::from_secs(30);
const TOPIC: &str = "replicated";

/// Evaluates `$body` (an expression giving an `Option`) until it is `Some`, failing the
/// test after [`DEADLINE`].
macro_rules! eventually {
    ($what:expr, $body:expr) => {{
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(v) = $body {
                break v;
            }
            assert!(Instant::now() < deadline, "timed out waiting: {}", $what);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }};
}

/// Three nodes, each a broker and a controller, on 127.0.0.1-3 (as in `cluster.rs`).
struct Layout {
    nodes: Vec<(SocketAddr, SocketAddr)>,
    voters: String,
}

impl Layout {
    fn new() -> Layout {
        let nodes: Vec<(SocketAddr, SocketAddr)> = (1..=3u8)
            .map(|n| {
                let ip = Ipv4Addr::new(127, 0, 0, n);
                let (client, controller) = common::two_free_ports(ip);
                (
                    SocketAddr::from((ip, client)),
                    SocketAddr::from((ip, controller)),
                )
            })
            .collect();
        let voters = nodes
            .iter()
            .enumerate()
            .map(|(i, (_, c))| format!("{}@{c}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        Layout { nodes, voters }
    }

    fn config(&self, node: usize, dir: &Path) -> BrokerConfig {
        self.config_with(node, dir, &[])
    }

    /// [`Layout::config`] with more broker properties.
    fn config_with(&self, node: usize, dir: &Path, extra: &[(&str, &str)]) -> BrokerConfig {
        let (client, controller) = self.nodes[node - 1];
        let mut props: std::collections::BTreeMap<String, String> = [
            ("node.id", node.to_string()),
            ("log.dirs", dir.to_string_lossy().into_owned()),
            (
                "listeners",
                format!("PLAINTEXT://{client},CONTROLLER://{controller}"),
            ),
            ("controller.listener.names", "CONTROLLER".to_owned()),
            ("controller.quorum.voters", self.voters.clone()),
            ("admin.listeners", "127.0.0.1:0".to_owned()),
            // A dead broker is fenced (its partitions get a new leader) within 2 s.
            ("broker.session.timeout.ms", "2000".to_owned()),
            ("broker.heartbeat.interval.ms", "200".to_owned()),
            // Quick reconnects to a restarted leader; short long-polls.
            ("replica.fetch.backoff.ms", "100".to_owned()),
            ("replica.fetch.wait.max.ms", "200".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        props.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        BrokerConfig::from_properties(&props).expect("cluster config")
    }

    fn client_addr(&self, node: usize) -> SocketAddr {
        self.nodes[node - 1].0
    }
}

async fn metadata(addr: SocketAddr) -> MetadataResponse {
    let mut client = Client::connect(addr).await;
    let request = MetadataRequest::default()
        .with_allow_auto_topic_creation(false)
        .with_topics(Some(vec![
            kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                .with_name(Some(name(TOPIC))),
        ]));
    client.send(12, &request).await
}

/// The partition's leader and leader epoch as `addr` sees them, once it has a leader.
async fn leader(addr: SocketAddr) -> Option<(i32, i32)> {
    let m = metadata(addr).await;
    let p = m.topics.first()?.partitions.first()?;
    (p.error_code == 0 && p.leader_id.0 >= 0).then_some((p.leader_id.0, p.leader_epoch))
}

/// The local log of partition 0 on a broker, if it has it.
fn local_log(handle: &BrokerHandle) -> Option<std::sync::Arc<sluice_broker::topics::Partition>> {
    handle.state().topics.get(TOPIC)?.partition(0)
}

/// Every byte of a log from its start to its end (not only below the high watermark), and
/// its (log start, log end).
fn contents(log: &PartitionLog) -> (i64, i64, Vec<u8>) {
    let (start, end) = (log.log_start_offset(), log.log_end_offset());
    let mut bytes = Vec::new();
    let mut offset = start;
    // Bounded: every read returns at least one batch while offset < end.
    for _ in 0..100_000 {
        if offset >= end {
            break;
        }
        let read = log
            .read_bounded(offset, 1 << 20, true, ReadBound::LogEnd)
            .expect("read the log");
        if read.records.is_empty() {
            break;
        }
        bytes.extend_from_slice(&read.records);
        offset = next_offset(&read.records).expect("whole batches");
    }
    (start, end, bytes)
}

/// The offset after the last batch in `records` (base offset + last offset delta + 1).
fn next_offset(records: &[u8]) -> Option<i64> {
    let mut at = 0usize;
    let mut next = None;
    while at + 61 <= records.len() {
        let base = i64::from_be_bytes(records[at..at + 8].try_into().ok()?);
        let length = i32::from_be_bytes(records[at + 8..at + 12].try_into().ok()?);
        let delta = i32::from_be_bytes(records[at + 23..at + 27].try_into().ok()?);
        next = Some(base + i64::from(delta) + 1);
        at += 12 + usize::try_from(length).ok()?;
    }
    next
}

/// Waits until every running broker's log equals `reference`'s byte for byte, with the
/// same log end; returns that end.
async fn converged(handles: &[(usize, BrokerHandle)], reference: usize, what: &str) -> i64 {
    eventually!(what, {
        let expected = handles
            .iter()
            .find(|(n, _)| *n == reference)
            .and_then(|(_, h)| local_log(h))
            .map(|p| contents(&p.log));
        let all_equal = expected.as_ref().is_some_and(|(_, end, bytes)| {
            handles.iter().all(|(_, h)| {
                local_log(h).is_some_and(|p| {
                    let (_, e, b) = contents(&p.log);
                    e == *end && b == *bytes
                })
            })
        });
        if all_equal {
            expected.map(|(_, end, _)| end)
        } else {
            None
        }
    })
}

/// Produces `values` one record per batch to the broker at `addr`; `None` when it refuses
/// the first one (it does not lead yet: the caller retries), a failure after that panics.
async fn produce(addr: SocketAddr, values: &[&str]) -> Option<Vec<i64>> {
    let mut client = Client::connect(addr).await;
    let mut offsets = Vec::new();
    for value in values {
        let (code, offset) = client.produce(TOPIC, 0, batch(&[(None, value)])).await;
        if code != 0 && offsets.is_empty() {
            return None;
        }
        assert_eq!(code, 0, "produce {value}");
        offsets.push(offset);
    }
    Some(offsets)
}

/// Starts the three nodes of `layout` (node n in `dirs[n - 1]`, with `extra` properties),
/// waits until all are live brokers, and creates the test topic: one partition, three
/// replicas. Returns the handles, in node order.
async fn start_with_topic(
    layout: &Layout,
    dirs: &[tempfile::TempDir],
    extra: &[(&str, &str)],
) -> Vec<(usize, BrokerHandle)> {
    let mut handles: Vec<(usize, BrokerHandle)> = Vec::new();
    for node in 1..=3 {
        let config = layout.config_with(node, dirs[node - 1].path(), extra);
        handles.push((node, Broker::start(config).await.expect("broker starts")));
    }
    eventually!(
        "three live brokers",
        (metadata(layout.client_addr(1)).await.brokers.len() == 3).then_some(())
    );
    let mut admin = Client::connect(layout.client_addr(1)).await;
    let create = CreateTopicsRequest::default()
        .with_topics(vec![CreatableTopic::default()
            .with_name(name(TOPIC))
            .with_num_partitions(1)
            .with_replication_factor(3)])
        .with_timeout_ms(5000);
    let created: CreateTopicsResponse = admin.send(7, &create).await;
    assert_eq!(created.topics[0].error_code, 0, "{:?}", created.topics[0]);
    handles
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_copy_the_leader_and_a_returning_leader_truncates_its_divergent_tail() {
    common::init_tracing();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let layout = Layout::new();
    // A topic with three replicas.
    let mut handles = start_with_topic(&layout, &dirs, &[]).await;
    let (first_leader, first_epoch) = eventually!("a leader", leader(layout.client_addr(1)).await);
    let m = metadata(layout.client_addr(2)).await;
    assert_eq!(m.topics[0].partitions[0].replica_nodes.len(), 3);
    eventually!(
        "every broker has its replica",
        handles
            .iter()
            .all(|(_, h)| local_log(h).is_some())
            .then_some(())
    );

    // Records produced to the leader reach both followers, byte for byte.
    let values: Vec<String> = (0..20).map(|i| format!("first-{i}")).collect();
    let refs: Vec<&str> = values.iter().map(String::as_str).collect();
    let offsets = eventually!(
        "the leader takes records",
        produce(layout.client_addr(first_leader as usize), &refs).await
    );
    assert_eq!(offsets, (0..20).collect::<Vec<i64>>());
    let end = converged(&handles, first_leader as usize, "followers copy the leader").await;
    assert_eq!(end, 20);

    // The leader dies.
    let position = handles
        .iter()
        .position(|(n, _)| *n == first_leader as usize)
        .expect("the leader's handle");
    let (old, old_handle) = handles.remove(position);
    old_handle.kill().await;
    // It had taken one more batch that no follower fetched (written while it was down,
    // so no fetch can race it): a tail at its epoch the next leader never sees.
    let old_dir = dirs[old - 1].path().join(format!("{TOPIC}-0"));
    {
        let flusher = Flusher::start("test").expect("flusher");
        let (log, _) =
            PartitionLog::open(&old_dir, LogConfig::default(), &flusher, false).expect("open");
        log.append(
            &batch(&[(None, "lost-1"), (None, "lost-2")]),
            first_epoch,
            sluice_storage::now_ms(),
        )
        .expect("append the unreplicated tail");
        assert_eq!(log.log_end_offset(), 22);
        log.close().expect("close");
    }

    // A surviving broker leads at a newer epoch and takes more records.
    let survivor = handles[0].0;
    let (new_leader, new_epoch) = eventually!("a new leader", {
        match leader(layout.client_addr(survivor)).await {
            Some((l, e)) if l != first_leader => Some((l, e)),
            _ => None,
        }
    });
    assert!(new_epoch > first_epoch, "{new_epoch} > {first_epoch}");
    let more: Vec<String> = (0..5).map(|i| format!("second-{i}")).collect();
    let refs: Vec<&str> = more.iter().map(String::as_str).collect();
    let offsets = eventually!(
        "the new leader takes records",
        produce(layout.client_addr(new_leader as usize), &refs).await
    );
    assert_eq!(
        offsets,
        (20..25).collect::<Vec<i64>>(),
        "after the replicated records"
    );
    let end = converged(
        &handles,
        new_leader as usize,
        "the other follower follows the new leader",
    )
    .await;
    assert_eq!(end, 25);

    // The old leader returns: it truncates its tail and copies the new leader's records.
    let restarted = Broker::start(layout.config(old, dirs[old - 1].path()))
        .await
        .expect("the old leader restarts");
    handles.push((old, restarted));
    let end = converged(&handles, new_leader as usize, "the old leader converges").await;
    assert_eq!(
        end, 25,
        "the unreplicated tail is gone, the new records are there"
    );
    let log = local_log(&handles.last().expect("restarted").1).expect("its replica");
    let (_, _, bytes) = contents(&log.log);
    let text = String::from_utf8_lossy(&bytes);
    assert!(!text.contains("lost-1"), "the divergent tail was truncated");
    assert!(text.contains("second-4"));

    for (_, handle) in handles {
        handle.shutdown().await.expect("clean shutdown");
    }
}

/// With `log.flush.policy=always`, a follower reports a new log end only once it is
/// fsynced: when an acks=all produce is answered, every in-sync follower has the batch on
/// disk (its durable offset is past it), not only in its page cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_flush_always_an_acks_all_answer_means_every_follower_fsynced() {
    common::init_tracing();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let layout = Layout::new();
    let handles = start_with_topic(&layout, &dirs, &[("log.flush.policy", "always")]).await;
    let (leader_id, _) = eventually!("a leader", leader(layout.client_addr(1)).await);
    eventually!(
        "every broker has its replica",
        handles
            .iter()
            .all(|(_, h)| local_log(h).is_some())
            .then_some(())
    );
    let mut producer = Client::connect(layout.client_addr(leader_id as usize)).await;
    for i in 0..5i64 {
        let request = Client::produce_request(TOPIC, 0, -1, batch(&[(None, "durable")]));
        let answer: kafka_protocol::messages::ProduceResponse = producer.send(9, &request).await;
        let p = &answer.responses[0].partition_responses[0];
        assert_eq!(
            (p.error_code, p.base_offset),
            (0, i),
            "acks=all produce {i}"
        );
        // Read at once after the answer: no waiting may hide a follower behind.
        for (node, handle) in &handles {
            let log = &local_log(handle).expect("replica").log;
            assert!(log.log_end_offset() > i, "broker {node} has offset {i}");
            assert!(
                log.durable_offset() > i,
                "broker {node} fsynced offset {i} (durable offset {})",
                log.durable_offset()
            );
        }
    }
    converged(&handles, leader_id as usize, "the replicas are equal").await;
    for (_, handle) in handles {
        handle.shutdown().await.expect("clean shutdown");
    }
}

/// A broker whose free space is below `log.dir.min.free.bytes` reports its storage
/// unavailable: the controller keeps its leaderships on replicas that can write and its
/// copy out of the ISR (it copies nothing meanwhile, keeping the space left for its own
/// writes), and gives them back once it has space again. A floor larger than any disk
/// stands for the full disk here; the fault bench's `disk-full` fills a real one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_below_the_free_space_floor_hands_over_its_leaderships() {
    common::init_tracing();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let layout = Layout::new();
    // Preferred leaders are restored within half a second.
    let quick_rebalance = ("leader.imbalance.check.interval.ms", "500");
    let mut handles = start_with_topic(&layout, &dirs, &[quick_rebalance]).await;
    // The first leader is the preferred one (first in the replica list).
    let (preferred, _) = eventually!("a leader", leader(layout.client_addr(1)).await);
    let preferred = preferred as usize;
    let values: Vec<String> = (0..10).map(|i| format!("before-{i}")).collect();
    let refs: Vec<&str> = values.iter().map(String::as_str).collect();
    eventually!(
        "the leader takes records",
        produce(layout.client_addr(preferred), &refs).await
    );
    assert_eq!(converged(&handles, preferred, "replicated").await, 10);

    // The preferred leader restarts with a full disk.
    let position = handles.iter().position(|(n, _)| *n == preferred).unwrap();
    let (_, handle) = handles.remove(position);
    handle.shutdown().await.expect("clean shutdown");
    let full = layout.config_with(
        preferred,
        dirs[preferred - 1].path(),
        &[
            quick_rebalance,
            ("log.dir.min.free.bytes", "9223372036854775807"),
        ],
    );
    handles.push((preferred, Broker::start(full).await.expect("restarts")));
    let other = handles[0].0;
    let image_of_other = || {
        handles[0]
            .1
            .state()
            .cluster
            .as_ref()
            .expect("a cluster node")
            .image()
    };
    eventually!("the controller to know its storage is unavailable", {
        let image = image_of_other();
        image
            .broker(preferred as i32)
            .is_some_and(|b| !b.fenced && b.storage_unavailable)
            .then_some(())
    });
    // Another replica leads and takes records; the full broker copies none of them and
    // stays out of the ISR, whatever the preferred-leader checks do meanwhile.
    let (acting, _) = eventually!("a leader", leader(layout.client_addr(other)).await);
    assert_ne!(acting as usize, preferred);
    let more: Vec<String> = (0..5).map(|i| format!("during-{i}")).collect();
    let refs: Vec<&str> = more.iter().map(String::as_str).collect();
    eventually!(
        "the acting leader takes records",
        produce(layout.client_addr(acting as usize), &refs).await
    );
    eventually!("the writable replicas copy them", {
        handles
            .iter()
            .filter(|(n, _)| *n != preferred)
            .all(|(_, h)| local_log(h).is_some_and(|p| p.log.log_end_offset() == 15))
            .then_some(())
    });
    let full_copy = local_log(&handles.last().unwrap().1).expect("its replica");
    assert_eq!(
        full_copy.log.log_end_offset(),
        10,
        "nothing copied below the floor"
    );
    let m = metadata(layout.client_addr(other)).await;
    let p = &m.topics[0].partitions[0];
    assert_ne!(p.leader_id.0 as usize, preferred);
    assert!(
        !p.isr_nodes.iter().any(|b| b.0 as usize == preferred),
        "out of the ISR: {:?}",
        p.isr_nodes
    );

    // Space again (a restart with the usual floor): it catches up, rejoins the ISR and,
    // as the preferred replica, leads again.
    let (_, handle) = handles.pop().unwrap();
    handle.shutdown().await.expect("clean shutdown");
    let config = layout.config_with(preferred, dirs[preferred - 1].path(), &[quick_rebalance]);
    handles.push((preferred, Broker::start(config).await.expect("restarts")));
    assert_eq!(
        converged(&handles, acting as usize, "it catches up").await,
        15
    );
    eventually!("the preferred replica leads again", {
        leader(layout.client_addr(other))
            .await
            .and_then(|(l, _)| (l as usize == preferred).then_some(()))
    });

    for (_, handle) in handles {
        handle.shutdown().await.expect("clean shutdown");
    }
}

/// ElectLeaders (preferred) in a cluster: a preferred leader that was away and is back in
/// sync gets its leadership back on request (auto rebalance off, so only the request
/// moves it), and a second request finds nothing to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elect_leaders_returns_leadership_to_the_preferred_replica() {
    common::init_tracing();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let layout = Layout::new();
    let extra = [("auto.leader.rebalance.enable", "false")];
    let mut handles = start_with_topic(&layout, &dirs, &extra).await;
    let m = metadata(layout.client_addr(1)).await;
    let preferred = m.topics[0].partitions[0].replica_nodes[0].0;
    let (first, _) = eventually!("a leader", leader(layout.client_addr(1)).await);
    assert_eq!(
        first, preferred,
        "a new partition is led by its preferred replica"
    );
    eventually!(
        "every broker has its replica",
        handles
            .iter()
            .all(|(_, h)| local_log(h).is_some())
            .then_some(())
    );

    // The preferred leader goes away: another replica leads.
    let position = handles
        .iter()
        .position(|(n, _)| *n == preferred as usize)
        .expect("its handle");
    let (away, handle) = handles.remove(position);
    handle.shutdown().await.expect("clean shutdown");
    let survivor = handles[0].0;
    let (other, _) = eventually!("another leader", {
        match leader(layout.client_addr(survivor)).await {
            Some((l, e)) if l != preferred => Some((l, e)),
            _ => None,
        }
    });
    // It returns and catches up into the ISR; the leader stays where it is.
    let restarted = Broker::start(layout.config_with(away, dirs[away - 1].path(), &extra))
        .await
        .expect("restarts");
    handles.push((away, restarted));
    eventually!("the preferred replica is back in sync", {
        let m = metadata(layout.client_addr(survivor)).await;
        let p = &m.topics[0].partitions[0];
        (p.isr_nodes.len() == 3 && p.leader_id.0 == other).then_some(())
    });

    let elect = |partitions: Option<Vec<i32>>| {
        ElectLeadersRequest::default()
            .with_election_type(0)
            .with_timeout_ms(10_000)
            .with_topic_partitions(partitions.map(|p| {
                vec![TopicPartitions::default()
                    .with_topic(name(TOPIC))
                    .with_partitions(p)]
            }))
    };
    let code = |r: &ElectLeadersResponse| {
        r.replica_election_results
            .iter()
            .flat_map(|t| {
                t.partition_result
                    .iter()
                    .map(|p| (p.partition_id, p.error_code))
            })
            .collect::<Vec<_>>()
    };
    let mut admin = Client::connect(layout.client_addr(survivor)).await;
    let answer: ElectLeadersResponse = admin.send(2, &elect(Some(vec![0]))).await;
    assert_eq!(answer.error_code, 0);
    assert_eq!(code(&answer), [(0, 0)], "elected");
    eventually!("the preferred replica leads again", {
        (leader(layout.client_addr(survivor)).await.map(|(l, _)| l) == Some(preferred))
            .then_some(())
    });
    let again: ElectLeadersResponse = admin.send(2, &elect(Some(vec![0, 5]))).await;
    assert_eq!(
        code(&again),
        [
            (0, ResponseError::ElectionNotNeeded.code()),
            (5, ResponseError::UnknownTopicOrPartition.code())
        ]
    );
    // Over every partition: nothing to do, nothing listed.
    let all: ElectLeadersResponse = admin.send(2, &elect(None)).await;
    assert!(code(&all).is_empty(), "{:?}", code(&all));
    for (_, handle) in handles {
        handle.shutdown().await.expect("clean shutdown");
    }
}

/// Acknowledged by every in-sync replica (acks=all) to whichever broker leads partition 0
/// as `asked` says: the record's offset, or `None` when no leader took it (moving).
async fn produce_acks_all(asked: SocketAddr, layout: &Layout, value: &str) -> Option<i64> {
    let (leader, _) = leader(asked).await?;
    let mut client = Client::connect(layout.client_addr(leader as usize)).await;
    let request = Client::produce_request(TOPIC, 0, -1, batch(&[(None, value)]));
    let response: kafka_protocol::messages::ProduceResponse = client.send(9, &request).await;
    let p = &response.responses[0].partition_responses[0];
    (p.error_code == 0).then_some(p.base_offset)
}

/// AlterPartitionReassignments of partition 0 to `target` (`None`: cancel), sent to
/// `addr`; fails the test unless accepted.
async fn reassign(addr: SocketAddr, target: Option<&[i32]>) {
    use kafka_protocol::messages::alter_partition_reassignments_request::{
        ReassignablePartition, ReassignableTopic,
    };
    use kafka_protocol::messages::{
        AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
    };
    let request = AlterPartitionReassignmentsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![ReassignableTopic::default()
            .with_name(name(TOPIC))
            .with_partitions(vec![ReassignablePartition::default()
                .with_partition_index(0)
                .with_replicas(
                    target.map(|t| t.iter().map(|&b| BrokerId(b)).collect()),
                )])]);
    let mut client = Client::connect(addr).await;
    let response: AlterPartitionReassignmentsResponse = client.send(0, &request).await;
    assert_eq!(response.error_code, 0);
    let p = &response.responses[0].partitions[0];
    assert_eq!(p.error_code, 0, "reassign to {target:?}: {p:?}");
}

/// ListPartitionReassignments (all partitions) at `addr`: (replicas, adding, removing) of
/// partition 0 while it is being reassigned.
async fn listed(addr: SocketAddr) -> Option<(Vec<i32>, Vec<i32>, Vec<i32>)> {
    use kafka_protocol::messages::{
        ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse,
    };
    let mut client = Client::connect(addr).await;
    let response: ListPartitionReassignmentsResponse = client
        .send(
            0,
            &ListPartitionReassignmentsRequest::default().with_timeout_ms(10_000),
        )
        .await;
    assert_eq!(response.error_code, 0);
    let p = response.topics.first()?.partitions.first()?;
    let ids = |v: &[kafka_protocol::messages::BrokerId]| v.iter().map(|b| b.0).collect();
    Some((
        ids(&p.replicas),
        ids(&p.adding_replicas),
        ids(&p.removing_replicas),
    ))
}

/// The partition's (replicas, sorted ISR, leader) as `addr` sees them.
async fn assignment(addr: SocketAddr) -> (Vec<i32>, Vec<i32>, i32) {
    let m = metadata(addr).await;
    let p = &m.topics[0].partitions[0];
    let mut isr: Vec<i32> = p.isr_nodes.iter().map(|b| b.0).collect();
    isr.sort_unstable();
    (
        p.replica_nodes.iter().map(|b| b.0).collect(),
        isr,
        p.leader_id.0,
    )
}

/// AlterPartitionReassignments moves a partition while acks=all writes go on: from its
/// three replicas down to [1] (done at once), then from [1] to [2, 3] (new replicas copy
/// the log, join the ISR, take over the leadership; broker 1 deletes its replica). A
/// cancelled reassignment puts the replicas back. No acknowledged write is lost, and the
/// new replicas hold the old log byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reassignment_moves_the_replicas_without_losing_acknowledged_writes() {
    common::init_tracing();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let layout = Layout::new();
    let extra = [("auto.leader.rebalance.enable", "false")];
    let handles = start_with_topic(&layout, &dirs, &extra).await;
    let admin = layout.client_addr(2);
    let all_three = vec![1, 2, 3];
    eventually!("in sync on all three", {
        let (_, isr, l) = assignment(admin).await;
        (isr == all_three && l >= 0).then_some(())
    });

    // Shrink to broker 1 alone: nothing to copy, done in one step.
    reassign(admin, Some(&[1])).await;
    eventually!("replicas [1] led by 1", {
        (assignment(admin).await == (vec![1], vec![1], 1)).then_some(())
    });
    assert_eq!(listed(admin).await, None, "nothing in progress");
    let node = |n: usize| &handles[n - 1].1;
    eventually!(
        "brokers 2 and 3 deleted their replicas",
        (local_log(node(2)).is_none() && local_log(node(3)).is_none()).then_some(())
    );

    let mut acked = Vec::new();
    for i in 0..100 {
        let value = format!("before-{i}");
        acked.push(eventually!("a write to broker 1", {
            produce_acks_all(admin, &layout, &value).await
        }));
    }
    let (_, end_before, prefix) = contents(&local_log(node(1)).unwrap().log);
    assert_eq!(end_before, 100);

    // Move to [2, 3] while writing.
    reassign(admin, Some(&[2, 3])).await;
    let writing = Instant::now();
    let mut i = 0;
    let completed = loop {
        let (replicas, isr, leader) = assignment(admin).await;
        if replicas == [2, 3] && leader != 1 {
            break (replicas, isr, leader);
        }
        assert!(
            writing.elapsed() < DEADLINE,
            "reassignment not completed: {replicas:?} {isr:?}"
        );
        if i < 2_000 {
            if let Some(offset) = produce_acks_all(admin, &layout, &format!("during-{i}")).await {
                acked.push(offset);
            }
            i += 1;
        } else {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    assert!(
        completed.1.iter().all(|b| [2, 3].contains(b)),
        "{completed:?}"
    );
    assert!([2, 3].contains(&completed.2));
    assert_eq!(listed(admin).await, None, "nothing in progress");
    eventually!(
        "broker 1 deleted its replica",
        local_log(node(1)).is_none().then_some(())
    );
    for i in 0..20 {
        let value = format!("after-{i}");
        acked.push(eventually!("a write to the new leader", {
            produce_acks_all(admin, &layout, &value).await
        }));
    }
    let end = eventually!("brokers 2 and 3 hold the same log", {
        let two = local_log(node(2)).map(|p| contents(&p.log));
        let three = local_log(node(3)).map(|p| contents(&p.log));
        match (two, three) {
            (Some(a), Some(b)) if a == b && a.1 > *acked.iter().max().unwrap() => Some(a),
            _ => None,
        }
    });
    assert_eq!(end.0, 0, "the whole log was copied");
    assert!(
        end.2.starts_with(&prefix),
        "the new replicas hold the old log byte for byte"
    );
    let distinct: std::collections::BTreeSet<i64> = acked.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        acked.len(),
        "every acknowledged write has its own offset: {acked:?}"
    );
    println!(
        "moved with {} writes acknowledged during the move; log end {}",
        i, end.1
    );

    // A reassignment that cannot complete (broker 1 is stopped, so it never catches up),
    // listed while in progress, then cancelled: back to [2, 3].
    let mut handles = handles;
    let (_, one) = handles.remove(0);
    one.shutdown().await.expect("clean shutdown");
    reassign(admin, Some(&[2, 3, 1])).await;
    let in_progress = listed(admin).await.expect("listed while in progress");
    assert_eq!(in_progress, (vec![2, 3, 1], vec![1], vec![]));
    reassign(admin, None).await;
    assert_eq!(listed(admin).await, None);
    let (replicas, _, _) = assignment(admin).await;
    assert_eq!(replicas, [2, 3]);
    for (_, handle) in handles {
        handle.shutdown().await.expect("clean shutdown");
    }
}
