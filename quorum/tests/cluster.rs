//! Three quorum nodes on 127.0.0.1 with free ports and temp dirs: election, replication in
//! order, NotLeader on followers, leader failover (timed), restart from disk, snapshot
//! catch-up, garbage on the RPC port, application requests (ControllerRequest).

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use sluice_quorum::{Quorum, QuorumConfig, QuorumError};
use support::{eventually, init_tracing, Probe, Recorder};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const WAIT: Duration = Duration::from_secs(15);

struct Node {
    id: u64,
    addr: SocketAddr,
    dir: PathBuf,
    quorum: Option<Quorum>,
    probe: Probe,
}

struct Cluster {
    _tmp: TempDir,
    voters: BTreeMap<u64, SocketAddr>,
    nodes: BTreeMap<u64, Node>,
    tune: fn(&mut QuorumConfig),
    /// Nodes whose applier takes this long to install a snapshot.
    slow_install: BTreeMap<u64, Duration>,
}

impl Cluster {
    /// Binds one listener per voter on 127.0.0.1:0, then starts every node.
    async fn start(n: u64, tune: fn(&mut QuorumConfig)) -> Cluster {
        init_tracing();
        let tmp = tempfile::tempdir().unwrap();
        let mut listeners = BTreeMap::new();
        for id in 1..=n {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            listeners.insert(id, l);
        }
        let voters: BTreeMap<u64, SocketAddr> = listeners
            .iter()
            .map(|(id, l)| (*id, l.local_addr().unwrap()))
            .collect();
        let mut cluster = Cluster {
            voters: voters.clone(),
            nodes: BTreeMap::new(),
            _tmp: tmp,
            tune,
            slow_install: BTreeMap::new(),
        };
        for (id, listener) in listeners {
            let dir = cluster._tmp.path().join(format!("node-{id}"));
            let node = Node {
                id,
                addr: voters[&id],
                dir,
                quorum: None,
                probe: Probe::default(),
            };
            cluster.nodes.insert(id, node);
            cluster.boot(id, listener).await;
        }
        cluster
    }

    async fn boot(&mut self, id: u64, listener: TcpListener) {
        self.try_boot(id, listener).await.unwrap();
    }

    async fn try_boot(&mut self, id: u64, listener: TcpListener) -> Result<(), QuorumError> {
        let node = self.nodes.get_mut(&id).unwrap();
        let mut config = QuorumConfig::new(id, self.voters.clone(), &node.dir);
        (self.tune)(&mut config);
        let (mut applier, probe) = Recorder::probed();
        applier.install_delay = self.slow_install.get(&id).copied().unwrap_or_default();
        let quorum = Quorum::start(config, applier).await?;
        quorum.serve(listener);
        node.quorum = Some(quorum);
        node.probe = probe;
        Ok(())
    }

    /// Restarts a stopped node from its directory, on its old port.
    async fn restart(&mut self, id: u64) {
        self.try_restart(id).await.unwrap();
    }

    async fn try_restart(&mut self, id: u64) -> Result<(), QuorumError> {
        let addr = self.nodes[&id].addr;
        let deadline = Instant::now() + WAIT;
        let listener = loop {
            match TcpListener::bind(addr).await {
                Ok(l) => break l,
                Err(e) => {
                    assert!(Instant::now() < deadline, "rebinding {addr}: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        self.try_boot(id, listener).await
    }

    async fn stop(&mut self, id: u64) {
        let q = self
            .nodes
            .get_mut(&id)
            .unwrap()
            .quorum
            .take()
            .expect("running");
        q.shutdown().await.unwrap();
        drop(q);
    }

    /// Drops a node's Quorum without calling shutdown (as a broker that just goes away).
    fn drop_node(&mut self, id: u64) {
        let q = self
            .nodes
            .get_mut(&id)
            .unwrap()
            .quorum
            .take()
            .expect("running");
        drop(q);
    }

    fn q(&self, id: u64) -> &Quorum {
        self.nodes[&id].quorum.as_ref().expect("running")
    }

    fn running(&self) -> impl Iterator<Item = &Node> {
        self.nodes.values().filter(|n| n.quorum.is_some())
    }

    /// Waits until every running node agrees on one leader among the running nodes.
    async fn agreed_leader(&self) -> u64 {
        let deadline = Instant::now() + WAIT;
        loop {
            let leaders: Vec<Option<u64>> = self
                .running()
                .map(|n| n.quorum.as_ref().unwrap().leader())
                .collect();
            if let Some(Some(l)) = leaders.first() {
                if leaders.iter().all(|x| *x == Some(*l))
                    && self.nodes[l].quorum.is_some()
                    && self.q(*l).is_leader()
                {
                    return *l;
                }
            }
            assert!(Instant::now() < deadline, "no agreed leader: {leaders:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn propose_all(&self, leader: u64, range: std::ops::Range<u32>) -> Vec<u64> {
        let mut indexes = Vec::new();
        for i in range {
            let payload = format!("record-{i}").into_bytes();
            let proposed = self.q(leader).propose(payload.clone()).await.unwrap();
            let reversed: Vec<u8> = payload.iter().rev().copied().collect();
            assert_eq!(
                proposed.response, reversed,
                "the applier's response comes back"
            );
            // The term the entry was written in is the leader's current term, and the one the
            // applier saw for that index.
            let term = self.q(leader).subscribe().borrow().term;
            assert_eq!(proposed.term, term, "the entry carries the leader's term");
            let applied_term = self.nodes[&leader]
                .probe
                .terms()
                .into_iter()
                .find(|(i, _)| *i == proposed.index)
                .map(|(_, t)| t);
            assert_eq!(applied_term, Some(proposed.term));
            indexes.push(proposed.index);
        }
        indexes
    }

    /// Waits until every running node has applied exactly `expected` payloads, in order.
    async fn all_applied(&self, expected: &[Vec<u8>]) {
        for node in self.running() {
            let probe = node.probe.clone();
            eventually(
                WAIT,
                &format!("node {} applies {} entries", node.id, expected.len()),
                || probe.payloads() == expected,
            )
            .await;
        }
    }
}

fn records(range: std::ops::Range<u32>) -> Vec<Vec<u8>> {
    range.map(|i| format!("record-{i}").into_bytes()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_voters_elect_replicate_and_fail_over() {
    let mut c = Cluster::start(3, |_| {}).await;
    let leader = c.agreed_leader().await;
    for id in [1, 2, 3] {
        assert_eq!(c.q(id).wait_for_leader(WAIT).await.unwrap(), leader);
    }
    // Oversized proposals are refused before they reach the log.
    assert!(matches!(
        c.q(leader).propose(vec![0; (1 << 20) + 1]).await,
        Err(QuorumError::PayloadTooLarge { .. })
    ));

    // Proposals on the leader: consecutive-ish increasing indexes, applied everywhere in order.
    let indexes = c.propose_all(leader, 0..50).await;
    assert!(indexes.windows(2).all(|w| w[0] < w[1]), "{indexes:?}");
    c.all_applied(&records(0..50)).await;
    for node in c.running() {
        let got: Vec<u64> = node.probe.entries().iter().map(|(i, _)| *i).collect();
        assert_eq!(got, indexes, "node {} saw the leader's indexes", node.id);
    }

    // A follower refuses, naming the leader.
    let follower = *c.voters.keys().find(|id| **id != leader).unwrap();
    match c.q(follower).propose(b"nope".to_vec()).await {
        Err(QuorumError::NotLeader { leader: Some(l) }) => assert_eq!(l, leader),
        other => panic!("expected NotLeader, got {other:?}"),
    }

    // DescribeQuorum on the leader: three voters caught up, high watermark at the last entry.
    let last = *indexes.last().unwrap();
    let leader_q = c.q(leader);
    let deadline = Instant::now() + WAIT;
    let description = loop {
        let d = leader_q.describe().await.unwrap();
        if d.voters.iter().all(|v| v.lag == Some(0)) && d.high_watermark >= Some(last) {
            break d;
        }
        assert!(Instant::now() < deadline, "replicas never caught up: {d:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(description.leader, Some(leader));
    assert_eq!(description.voters.len(), 3);
    assert!(description.learners.is_empty());
    assert!(description
        .voters
        .iter()
        .all(|v| v.matched_index >= Some(last)));

    // Failover: stop the leader; time until the others agree on a new one.
    let mut status = c.q(follower).subscribe();
    let term_before = status.borrow().term;
    let started = Instant::now();
    c.drop_node(leader);
    let stopped = started.elapsed();
    let new_leader = c.agreed_leader().await;
    let failover = started.elapsed();
    println!("metadata quorum failover: new leader {new_leader} after {failover:?} (dropping the old leader took {stopped:?})");
    assert_ne!(new_leader, leader);
    assert!(
        failover < Duration::from_secs(10),
        "failover took {failover:?}"
    );
    // The watch saw the change and a new term.
    let s = status.borrow_and_update().clone();
    assert_eq!(s.leader, Some(new_leader));
    assert!(s.term > term_before);

    // Proposals work again, and the remaining follower applies them.
    c.propose_all(new_leader, 50..60).await;
    c.all_applied(&records(0..60)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_node_restores_its_state_and_catches_up() {
    let mut c = Cluster::start(3, |cfg| cfg.snapshot_after_entries = 20).await;
    let leader = c.agreed_leader().await;
    c.propose_all(leader, 0..50).await;
    c.all_applied(&records(0..50)).await;

    let victim = *c.voters.keys().find(|id| **id != leader).unwrap();
    c.stop(victim).await;
    let dir = c.nodes[&victim].dir.clone();
    assert!(
        dir.join("snapshot").exists(),
        "a snapshot was built after 20 entries"
    );

    // Meanwhile the others go on.
    c.propose_all(leader, 50..80).await;

    // A crash mid-append: garbage at the end of the victim's last segment.
    let mut segs: Vec<PathBuf> = std::fs::read_dir(dir.join("log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    segs.sort();
    let last = segs.last().unwrap();
    let mut f = std::fs::OpenOptions::new().append(true).open(last).unwrap();
    std::io::Write::write_all(&mut f, &[0x00, 0x00, 0x01, 0x00, 0xde, 0xad]).unwrap();
    drop(f);

    c.restart(victim).await;
    // Restored from its own files before hearing from anyone: the snapshot and the
    // committed log after it (the state it had, up to its committed hint).
    let restored = c.nodes[&victim].probe.payloads();
    assert!(
        restored.len() >= 20,
        "restored {} entries at start",
        restored.len()
    );
    assert_eq!(restored, records(0..restored.len() as u32));
    // Then it catches up with what it missed.
    c.all_applied(&records(0..80)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_far_behind_gets_a_snapshot() {
    let mut c = Cluster::start(3, |cfg| {
        cfg.snapshot_after_entries = 10;
        cfg.log_entries_kept_after_snapshot = 0;
    })
    .await;
    let leader = c.agreed_leader().await;
    let first = c.propose_all(leader, 0..5).await;
    c.all_applied(&records(0..5)).await;

    let victim = *c.voters.keys().find(|id| **id != leader).unwrap();
    c.stop(victim).await;
    let indexes = c.propose_all(leader, 5..100).await;
    let last = *indexes.last().unwrap();

    c.restart(victim).await;
    c.all_applied(&records(0..100)).await;
    // The leader purged its log past where the victim stopped: it caught up from a snapshot.
    let installs = c.nodes[&victim].probe.installs();
    assert!(
        installs.iter().any(|i| *i > first[4] && *i <= last),
        "the victim installed a snapshot from the leader: {installs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 6)]
async fn a_slow_snapshot_install_causes_no_election() {
    let mut c = Cluster::start(3, |cfg| {
        cfg.snapshot_after_entries = 10;
        cfg.log_entries_kept_after_snapshot = 0;
    })
    .await;
    let leader = c.agreed_leader().await;
    c.propose_all(leader, 0..5).await;
    c.all_applied(&records(0..5)).await;
    let victim = *c.voters.keys().find(|id| **id != leader).unwrap();
    c.stop(victim).await;
    c.propose_all(leader, 5..60).await;
    let term = c.q(leader).subscribe().borrow().term;

    // The victim comes back behind the leader's purged log and gets a snapshot, which its
    // applier takes 700 ms to install: longer than openraft's default snapshot timeout
    // (200 ms), shorter than the time after which a follower that hears no heartbeat starts
    // an election (openraft sends none to a follower while a snapshot to it is in flight).
    c.slow_install.insert(victim, Duration::from_millis(700));
    c.restart(victim).await;
    let probe = c.nodes[&victim].probe.clone();
    let deadline = Instant::now() + WAIT;
    while probe.installs().is_empty() {
        for node in c.running() {
            let s = node.quorum.as_ref().unwrap().subscribe().borrow().clone();
            // (The victim starts at term 0 until it hears from the leader.)
            assert!(
                s.term <= term,
                "node {} moved to term {} (from {term}) while the snapshot was installed",
                node.id,
                s.term
            );
            assert!(s.leader.is_none() || s.leader == Some(leader), "{s:?}");
        }
        assert!(
            Instant::now() < deadline,
            "the snapshot was never installed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(c.q(leader).subscribe().borrow().term, term);
    assert!(c.q(leader).is_leader());
    // And the victim catches up with the same leader.
    c.propose_all(leader, 60..65).await;
    c.all_applied(&records(0..65)).await;
    assert_eq!(c.q(victim).subscribe().borrow().term, term);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_lowest_voter_that_lost_its_disk_does_not_form_a_new_cluster() {
    let mut c = Cluster::start(3, |_| {}).await;
    let leader = c.agreed_leader().await;
    c.propose_all(leader, 0..5).await;
    c.all_applied(&records(0..5)).await;

    // Node 1 (the one that formed the cluster) loses its disk.
    c.stop(1).await;
    std::fs::remove_dir_all(&c.nodes[&1].dir).unwrap();
    let leader = c.agreed_leader().await;
    let term = c.q(leader).subscribe().borrow().term;

    match c.try_restart(1).await {
        Err(QuorumError::StateLost(reason)) => {
            assert!(reason.contains("lost its disk"), "{reason}");
            assert!(reason.contains("docs/cluster.md"), "{reason}");
        }
        Err(e) => panic!("expected StateLost, got {e}"),
        Ok(()) => panic!("node 1 started a new cluster on an empty directory"),
    }
    // Nothing on disk says a cluster was formed there.
    assert!(c.nodes[&1].quorum.is_none());

    // The other two keep their leader and term, and keep committing.
    let deadline = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < deadline {
        for node in c.running() {
            let s = node.quorum.as_ref().unwrap().subscribe().borrow().clone();
            assert_eq!((s.leader, s.term), (Some(leader), term), "node {}", node.id);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    c.propose_all(leader, 5..10).await;
    c.all_applied(&records(0..10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_snapshot_larger_than_a_frame_reaches_a_small_frame_follower() {
    // 256 KiB frames: snapshot chunks of 128 KiB must fit one frame each, encoded.
    let mut c = Cluster::start(3, |cfg| {
        cfg.max_frame_bytes = 256 << 10;
        cfg.max_payload_bytes = 64 << 10;
        cfg.snapshot_after_entries = 10;
        cfg.log_entries_kept_after_snapshot = 0;
    })
    .await;
    let leader = c.agreed_leader().await;
    let victim = *c.voters.keys().find(|id| **id != leader).unwrap();
    c.stop(victim).await;
    // 40 entries of 16 KiB (bytes >= 24, which CBOR arrays store in two bytes each): a
    // snapshot of about 640 KiB.
    let payload = |i: u8| {
        let mut p = vec![0xa5u8; 16 << 10];
        p[0] = i;
        p
    };
    let expected: Vec<Vec<u8>> = (0..40).map(payload).collect();
    for p in &expected {
        c.q(leader).propose(p.clone()).await.unwrap();
    }
    c.restart(victim).await;
    let probe = c.nodes[&victim].probe.clone();
    eventually(WAIT, "the lagging follower catches up", || {
        probe.payloads() == expected
    })
    .await;
    assert!(!probe.installs().is_empty(), "it caught up from a snapshot");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn garbage_on_the_rpc_port_harms_nothing() {
    let c = Cluster::start(3, |_| {}).await;
    let leader = c.agreed_leader().await;
    c.propose_all(leader, 0..5).await;

    let target = c.nodes[&leader].addr;
    let version = 1u16.to_be_bytes();
    let mut frames: Vec<Vec<u8>> = vec![
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        // A 2 GiB length.
        vec![0x7f, 0xff, 0xff, 0xff, 0, 1, 0, 1],
        // Shorter than a header.
        vec![0, 0, 0, 2, 0, 1],
    ];
    // Unknown version.
    frames.push(
        [
            &12u32.to_be_bytes()[..],
            &[0, 9],
            &[0, 1],
            &[0, 0, 0, 1],
            b"abcd",
        ]
        .concat(),
    );
    // Unknown kind.
    frames.push(
        [
            &12u32.to_be_bytes()[..],
            &version,
            &[0, 77],
            &[0, 0, 0, 1],
            b"abcd",
        ]
        .concat(),
    );
    // A known kind with a body that is not CBOR of the request.
    frames.push(
        [
            &12u32.to_be_bytes()[..],
            &version,
            &[0, 2],
            &[0, 0, 0, 1],
            &[0xff, 0xff, 0xff, 0xff],
        ]
        .concat(),
    );
    // A response kind where a request belongs.
    frames.push(
        [
            &12u32.to_be_bytes()[..],
            &version,
            &[0x80, 1],
            &[0, 0, 0, 1],
            b"abcd",
        ]
        .concat(),
    );
    for (i, frame) in frames.iter().enumerate() {
        let mut s = TcpStream::connect(target).await.unwrap();
        s.write_all(frame).await.unwrap();
        let mut buf = [0u8; 64];
        // The node closes the connection without answering.
        let read = tokio::time::timeout(WAIT, s.read(&mut buf))
            .await
            .expect("closed in time");
        assert!(matches!(read, Ok(0) | Err(_)), "frame {i}: got {read:?}");
    }
    // A truncated frame, then the sender goes away.
    let mut s = TcpStream::connect(target).await.unwrap();
    s.write_all(&[0, 0, 1, 0, 0, 1, 0, 1, 0, 0]).await.unwrap();
    drop(s);

    // The cluster still works, with the same leader.
    assert_eq!(c.agreed_leader().await, leader);
    c.propose_all(leader, 5..10).await;
    c.all_applied(&records(0..10)).await;
}

/// A request frame of `kind` carrying `req` as CBOR, as a peer would send it.
fn request_frame<T: serde::Serialize>(kind: u16, correlation_id: u32, req: &T) -> Vec<u8> {
    let mut body = Vec::new();
    ciborium::into_writer(req, &mut body).unwrap();
    [
        &((8 + body.len()) as u32).to_be_bytes()[..],
        &1u16.to_be_bytes(),
        &kind.to_be_bytes(),
        &correlation_id.to_be_bytes(),
        &body,
    ]
    .concat()
}

/// Reads one response frame's header; `None` when the node closed the connection instead.
async fn read_response(s: &mut TcpStream) -> Option<(u16, u32, Vec<u8>)> {
    let mut len = [0u8; 4];
    match tokio::time::timeout(WAIT, s.read_exact(&mut len))
        .await
        .expect("an answer or a close in time")
    {
        Ok(_) => {}
        Err(_) => return None,
    }
    let mut rest = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut rest).await.unwrap();
    let kind = u16::from_be_bytes([rest[2], rest[3]]);
    let correlation_id = u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]);
    Some((kind, correlation_id, rest[8..].to_vec()))
}

fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS");
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

fn snapshot_chunk(
    term: u64,
    leader: u64,
    offset: u64,
    data: Vec<u8>,
) -> openraft::raft::InstallSnapshotRequest<sluice_quorum::types::TypeConfig> {
    openraft::raft::InstallSnapshotRequest {
        vote: openraft::Vote::new_committed(term, leader),
        meta: openraft::SnapshotMeta {
            last_log_id: Some(openraft::LogId::new(
                openraft::CommittedLeaderId::new(term, leader),
                1_000_000,
            )),
            last_membership: Default::default(),
            snapshot_id: "crafted".into(),
        },
        offset,
        data,
        done: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crafted_snapshot_offset_harms_nothing() {
    let c = Cluster::start(3, |cfg| cfg.max_snapshot_bytes = 64 << 10).await;
    let leader = c.agreed_leader().await;
    c.propose_all(leader, 0..5).await;
    let term = c.q(leader).describe().await.unwrap().term;
    let follower = *c.voters.keys().find(|id| **id != leader).unwrap();
    let rss_before = resident_bytes();

    // Posing as the leader (its id and vote), a transfer starts at 0, then skips ahead.
    let mut s = TcpStream::connect(c.nodes[&follower].addr).await.unwrap();
    let first = snapshot_chunk(term, leader, 0, b"x".to_vec());
    s.write_all(&request_frame(3, 1, &first)).await.unwrap();
    let (kind, id, _) = read_response(&mut s)
        .await
        .expect("the first chunk is answered");
    assert_eq!((kind, id), (0x8003, 1));
    let skip = snapshot_chunk(term, leader, 1000, b"y".to_vec());
    s.write_all(&request_frame(3, 2, &skip)).await.unwrap();
    // Answered with openraft's SnapshotMismatch (the leader would restart at 0).
    let (kind, id, body) = read_response(&mut s).await.expect("a mismatch answer");
    assert_eq!((kind, id), (0x8003, 2));
    let answer: Result<
        openraft::raft::InstallSnapshotResponse<u64>,
        openraft::error::RaftError<u64, openraft::error::InstallSnapshotError>,
    > = ciborium::from_reader(&body[..]).unwrap();
    assert!(
        matches!(
            answer,
            Err(openraft::error::RaftError::APIError(
                openraft::error::InstallSnapshotError::SnapshotMismatch(ref m)
            )) if m.expect.offset == 1 && m.got.offset == 1000
        ),
        "{answer:?}"
    );
    // A jump to 1 TiB (openraft would zero-fill its buffer up to there) closes the connection.
    let jump = snapshot_chunk(term, leader, 1 << 40, b"z".to_vec());
    s.write_all(&request_frame(3, 3, &jump)).await.unwrap();
    assert!(
        read_response(&mut s).await.is_none(),
        "closed after the jump"
    );
    // So does a chunk that continues the transfer but ends past max_snapshot_bytes.
    let mut s = TcpStream::connect(c.nodes[&follower].addr).await.unwrap();
    let big = snapshot_chunk(term, leader, 1, vec![0; 64 << 10]);
    s.write_all(&request_frame(3, 1, &big)).await.unwrap();
    assert!(
        read_response(&mut s).await.is_none(),
        "closed after the big chunk"
    );

    // The node is alive, small, and the cluster works.
    let rss_after = resident_bytes();
    assert!(
        rss_after < rss_before + (256 << 20),
        "resident memory grew from {rss_before} to {rss_after}"
    );
    assert_eq!(c.agreed_leader().await, leader);
    c.propose_all(leader, 5..10).await;
    c.all_applied(&records(0..10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stranger_cannot_raise_the_term() {
    let c = Cluster::start(3, |_| {}).await;
    let leader = c.agreed_leader().await;
    c.propose_all(leader, 0..5).await;
    let term = c.q(leader).describe().await.unwrap().term;
    let follower = *c.voters.keys().find(|id| **id != leader).unwrap();
    let addr = c.nodes[&follower].addr;
    let far = openraft::LogId::new(openraft::CommittedLeaderId::new(1000, 99), 1_000_000);

    // Node 99 is in no membership: its vote request and its heartbeat as a "leader" of term
    // 1000 are dropped without an answer.
    let vote = openraft::raft::VoteRequest::new(openraft::Vote::new(1000, 99), Some(far));
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&request_frame(1, 1, &vote)).await.unwrap();
    assert!(
        read_response(&mut s).await.is_none(),
        "vote request dropped"
    );
    let heartbeat = openraft::raft::AppendEntriesRequest::<sluice_quorum::types::TypeConfig> {
        vote: openraft::Vote::new_committed(1000, 99),
        prev_log_id: None,
        entries: vec![],
        leader_commit: None,
    };
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&request_frame(2, 1, &heartbeat)).await.unwrap();
    assert!(
        read_response(&mut s).await.is_none(),
        "append entries dropped"
    );
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut chunk = snapshot_chunk(1000, 99, 0, b"x".to_vec());
    chunk.meta.snapshot_id = "stranger".into();
    s.write_all(&request_frame(3, 1, &chunk)).await.unwrap();
    assert!(read_response(&mut s).await.is_none(), "snapshot dropped");

    assert_eq!(c.agreed_leader().await, leader);
    for node in c.running() {
        let t = node.quorum.as_ref().unwrap().subscribe().borrow().term;
        assert!(t < 1000, "node {} is at term {t}", node.id);
    }
    assert_eq!(c.q(leader).describe().await.unwrap().term, term);
    c.propose_all(leader, 5..10).await;
    c.all_applied(&records(0..10)).await;
}

/// Whether the node closed `s` within `within` (reading nothing); `false` when it stays open.
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 16];
    match tokio::time::timeout(within, s.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(n)) => panic!("unexpected {n} bytes"),
        Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_connections_are_closed() {
    let c = Cluster::start(3, |cfg| cfg.idle_timeout = Duration::from_millis(600)).await;
    let leader = c.agreed_leader().await;
    let follower = *c.voters.keys().find(|id| **id != leader).unwrap();
    let addr = c.nodes[&follower].addr;

    // Silent from the start.
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).await.unwrap();
    assert!(closed_within(&mut s, WAIT).await);
    let idle = started.elapsed();
    assert!(idle >= Duration::from_millis(500), "closed after {idle:?}");

    // Silent after an answered request (a stale vote request from a voter: refused).
    let vote = openraft::raft::VoteRequest::<u64>::new(openraft::Vote::new(0, leader), None);
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&request_frame(1, 7, &vote)).await.unwrap();
    let (kind, id, _) = read_response(&mut s).await.expect("answered");
    assert_eq!((kind, id), (0x8001, 7));
    let answered = Instant::now();
    assert!(closed_within(&mut s, WAIT).await);
    let idle = answered.elapsed();
    assert!(idle >= Duration::from_millis(500), "closed after {idle:?}");

    // The peers' connections carry heartbeats: over more than two idle timeouts the cluster
    // is undisturbed (same leader, same term).
    let term = c.q(leader).describe().await.unwrap().term;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(c.agreed_leader().await, leader);
    assert_eq!(c.q(leader).describe().await.unwrap().term, term);
    c.propose_all(leader, 0..5).await;
    c.all_applied(&records(0..5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connections_over_the_cap_are_closed_at_once() {
    let c = Cluster::start(3, |cfg| cfg.max_incoming_connections = 4).await;
    let leader = c.agreed_leader().await;
    c.propose_all(leader, 0..5).await;
    let addr = c.nodes[&leader].addr;

    // Up to two of the four are the followers' connections (from the election).
    let mut streams = Vec::new();
    for _ in 0..8 {
        streams.push(TcpStream::connect(addr).await.unwrap());
    }
    let mut open = 0;
    for s in &mut streams {
        if !closed_within(s, Duration::from_millis(300)).await {
            open += 1;
        }
    }
    assert!((2..=4).contains(&open), "{open} of 8 stayed open");

    // The node's own outgoing connections are not counted: the cluster works.
    c.propose_all(leader, 5..10).await;
    c.all_applied(&records(0..10)).await;

    // Closed connections give their place back.
    drop(streams);
    let deadline = Instant::now() + WAIT;
    loop {
        let mut s = TcpStream::connect(addr).await.unwrap();
        if !closed_within(&mut s, Duration::from_millis(300)).await {
            break;
        }
        assert!(Instant::now() < deadline, "no connection admitted again");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_learner_follows_the_log() {
    let mut c = Cluster::start(3, |_| {}).await;
    let leader = c.agreed_leader().await;
    c.propose_all(leader, 0..10).await;

    // Node 4: not a voter; it waits to be added.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let dir = c._tmp.path().join("node-4");
    let (applier, probe) = Recorder::probed();
    let learner = std::sync::Arc::new(
        Quorum::start(QuorumConfig::new(4, c.voters.clone(), &dir), applier)
            .await
            .unwrap(),
    );
    // The broker's way: its own accept loop hands each connection to serve_connection.
    let accept = {
        let learner = learner.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let learner = learner.clone();
                tokio::spawn(async move { learner.serve_connection(stream).await });
            }
        })
    };

    match c
        .q(*c.voters.keys().find(|id| **id != leader).unwrap())
        .add_learner(4, addr)
        .await
    {
        Err(QuorumError::NotLeader { leader: Some(l) }) => assert_eq!(l, leader),
        other => panic!("expected NotLeader, got {other:?}"),
    }
    c.q(leader).add_learner(4, addr).await.unwrap();
    c.propose_all(leader, 10..20).await;
    eventually(WAIT, "the learner applies every entry", || {
        probe.payloads() == records(0..20)
    })
    .await;
    assert_eq!(learner.leader(), Some(leader));
    assert!(matches!(
        learner.propose(b"x".to_vec()).await,
        Err(QuorumError::NotLeader { leader: Some(_) })
    ));
    let d = c.q(leader).describe().await.unwrap();
    assert_eq!(
        d.learners.iter().map(|l| l.node_id).collect::<Vec<_>>(),
        vec![4]
    );
    assert_eq!(d.voters.len(), 3);
    learner.shutdown().await.unwrap();
    accept.abort();
    c.stop(leader).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_whole_cluster_restarts_with_its_state() {
    let mut c = Cluster::start(3, |cfg| cfg.snapshot_after_entries = 15).await;
    let leader = c.agreed_leader().await;
    let before = c.propose_all(leader, 0..40).await;
    c.all_applied(&records(0..40)).await;
    let term_before = c.q(leader).describe().await.unwrap().term;
    for id in [1, 2, 3] {
        c.stop(id).await;
    }
    for id in [1, 2, 3] {
        c.restart(id).await;
    }
    let leader = c.agreed_leader().await;
    // Nothing was re-initialized: the log goes on where it was. (The term may be the same:
    // openraft lets a leader whose own vote was committed resume its term after a restart.)
    let after = c.propose_all(leader, 40..45).await;
    assert!(
        after[0] > *before.last().unwrap(),
        "{after:?} after {before:?}"
    );
    let d = c.q(leader).describe().await.unwrap();
    assert!(
        d.term >= term_before,
        "term {} after {term_before}: {d:?}",
        d.term
    );
    c.all_applied(&records(0..45)).await;
}

/// A test handler: echoes the body reversed after `delay`; `hang` never answers.
struct Echo {
    delay: Duration,
    hang: bool,
}

impl sluice_quorum::RequestHandler for Echo {
    fn handle(&self, body: Vec<u8>) -> sluice_quorum::BoxFuture<Result<Vec<u8>, String>> {
        let (delay, hang) = (self.delay, self.hang);
        Box::pin(async move {
            if hang {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(delay).await;
            if body == b"fail" {
                return Err("the handler refuses".into());
            }
            Ok(body.into_iter().rev().collect())
        })
    }
}

/// The body of a ControllerRequest answer: `Ok(bytes)` or `Err(text)`.
fn controller_answer(body: &[u8]) -> Result<Vec<u8>, String> {
    let value: ciborium::Value = ciborium::from_reader(body).expect("CBOR");
    let map = value.into_map().expect("a map");
    assert_eq!(map.len(), 1, "one key");
    let (key, value) = map.into_iter().next().unwrap();
    match key.as_text() {
        Some("Ok") => Ok(value.into_bytes().expect("a byte string")),
        Some("Err") => Err(value.into_text().expect("a text")),
        other => panic!("unexpected key {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn controller_requests_reach_the_handler_and_harm_nothing_else() {
    let c = Cluster::start(3, |_| {}).await;
    let leader = c.agreed_leader().await;
    c.propose_all(leader, 0..3).await;
    let others: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    let (a, b) = (others[0], others[1]);
    let t = Duration::from_secs(5);

    // --- no handler: an error answer, from a member or a stranger, and the connection stays ---
    match c.q(a).request(b, b"hello", t).await {
        Err(QuorumError::Remote { node, message }) => {
            assert_eq!(node, b);
            assert!(message.contains("no handler"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let mut s = TcpStream::connect(c.nodes[&b].addr).await.unwrap();
    for id in 1..=2u32 {
        let frame = [
            &(8u32 + 7).to_be_bytes()[..],
            &1u16.to_be_bytes(),
            &5u16.to_be_bytes(),
            &id.to_be_bytes(),
            b"garbage",
        ]
        .concat();
        s.write_all(&frame).await.unwrap();
        let (kind, correlation_id, body) = read_response(&mut s).await.expect("an answer");
        assert_eq!((kind, correlation_id), (0x8005, id));
        assert!(controller_answer(&body).unwrap_err().contains("no handler"));
    }

    // --- with a handler: the answer comes back; the handler's own error too ---
    c.q(b).set_request_handler(std::sync::Arc::new(Echo {
        delay: Duration::ZERO,
        hang: false,
    }));
    assert_eq!(c.q(a).request(b, b"abc", t).await.unwrap(), b"cba");
    assert!(matches!(
        c.q(a).request(b, b"fail", t).await,
        Err(QuorumError::Remote { message, .. }) if message == "the handler refuses"
    ));
    // A stranger's bytes reach the handler as they are (it must treat them as untrusted).
    let frame = [
        &(8u32 + 3).to_be_bytes()[..],
        &1u16.to_be_bytes(),
        &5u16.to_be_bytes(),
        &9u32.to_be_bytes(),
        &[0xff, 0x00, 0x01],
    ]
    .concat();
    s.write_all(&frame).await.unwrap();
    let (_, _, body) = read_response(&mut s).await.expect("an answer");
    assert_eq!(controller_answer(&body).unwrap(), vec![0x01, 0x00, 0xff]);
    // The frame checks still hold: an oversized length closes the connection.
    s.write_all(&[0x7f, 0xff, 0xff, 0xff, 0, 1, 0, 5])
        .await
        .unwrap();
    assert!(closed_within(&mut s, WAIT).await);

    // --- unknown node, no answer in time ---
    assert!(matches!(
        c.q(a).request(99, b"x", t).await,
        Err(QuorumError::Unreachable { node: 99, .. })
    ));
    c.q(leader).set_request_handler(std::sync::Arc::new(Echo {
        delay: Duration::ZERO,
        hang: true,
    }));
    let started = Instant::now();
    let r = c
        .q(a)
        .request(leader, b"x", Duration::from_millis(300))
        .await;
    assert!(matches!(r, Err(QuorumError::Timeout(_))), "{r:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // --- slow requests run side by side, and never hold up Raft ---
    c.q(b).set_request_handler(std::sync::Arc::new(Echo {
        delay: Duration::from_millis(400),
        hang: false,
    }));
    let started = Instant::now();
    let q = c.q(a);
    let slow = async {
        let bodies: Vec<[u8; 1]> = (0..8u8).map(|i| [i]).collect();
        let calls = bodies.iter().map(|body| q.request(b, body, t));
        let answers: Vec<_> = futures_join_all(calls).await;
        for (i, answer) in answers.into_iter().enumerate() {
            assert_eq!(answer.unwrap(), vec![i as u8]);
        }
    };
    let raft = async {
        // Meanwhile the leader proposes (AppendEntries to every follower) as usual.
        c.propose_all(leader, 3..8).await;
    };
    tokio::join!(slow, raft);
    let elapsed = started.elapsed();
    // Four at a time: two rounds of 400 ms, not eight (3.2 s) as on one connection.
    assert!(
        elapsed < Duration::from_millis(5 * 400),
        "8 slow requests took {elapsed:?}"
    );
    assert_eq!(c.agreed_leader().await, leader);
    c.all_applied(&records(0..8)).await;
}

/// Runs futures concurrently and returns their outputs in order (no `futures` dependency).
async fn futures_join_all<F: std::future::Future>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output> {
    let mut set: Vec<std::pin::Pin<Box<F>>> = futures.map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = set.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(|v| v.unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_restarted_with_other_voters_refuses_to_start() {
    let mut c = Cluster::start(3, |_| {}).await;
    let leader = c.agreed_leader().await;
    c.propose_all(leader, 0..3).await;
    c.stop(1).await;
    // Node 1 again, told of only two voters: its log says three.
    let all = c.voters.clone();
    c.voters.remove(&3);
    let refused = c.try_restart(1).await;
    assert!(
        matches!(&refused, Err(QuorumError::VotersChanged(m)) if m.contains("{1, 2, 3}")),
        "{:?}",
        refused.err()
    );
    // With the voters its log has, it starts and catches up.
    c.voters = all;
    c.restart(1).await;
    c.all_applied(&records(0..3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_single_voter_grows_into_three_and_survives_its_own_loss() {
    let mut c = Cluster::start(1, |_| {}).await;
    let leader = c.agreed_leader().await;
    assert_eq!(leader, 1);
    c.propose_all(1, 0..5).await;
    c.stop(1).await;

    // Two new voters join the configuration; node 1 restarts with all three and adds them.
    let mut listeners = Vec::new();
    for id in [2, 3] {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        c.voters.insert(id, l.local_addr().unwrap());
        listeners.push((id, l));
    }
    for (id, listener) in listeners {
        let dir = c._tmp.path().join(format!("node-{id}"));
        let node = Node {
            id,
            addr: c.voters[&id],
            dir,
            quorum: None,
            probe: Probe::default(),
        };
        c.nodes.insert(id, node);
        c.boot(id, listener).await;
    }
    c.restart(1).await;
    // Nodes 2 and 3 get the log only once node 1 made them members.
    c.all_applied(&records(0..5)).await;
    let leader = c.agreed_leader().await;
    c.propose_all(leader, 5..8).await;
    c.all_applied(&records(0..8)).await;
    let d = c.q(leader).describe().await.unwrap();
    let mut voters: Vec<u64> = d.voters.iter().map(|v| v.node_id).collect();
    voters.sort();
    assert_eq!(voters, vec![1, 2, 3], "{d:?}");

    // The former single node goes: the two others elect a leader and go on, so both the
    // voters and node 1's address were committed.
    c.stop(1).await;
    let leader = c.agreed_leader().await;
    assert_ne!(leader, 1);
    c.propose_all(leader, 8..10).await;
    c.restart(1).await;
    c.all_applied(&records(0..10)).await;
}
