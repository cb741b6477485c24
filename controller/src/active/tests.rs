//! The controller task against a scripted log: proposals can be held (not committed until
//! released, as when followers are unreachable) or refused, so a proposal's outcome can be
//! made unknown on purpose and the task's next decisions checked.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use sluice_metadata::controller::{IsrMember, ReplicaAssignment};
use sluice_metadata::records::{Endpoint, SecurityProtocol, NO_LEADER};
use sluice_metadata::{decode_batch, ControllerConfig};
use sluice_quorum::{Applier, QuorumConfig};
use tokio::task::JoinHandle;

use super::*;
use crate::state_machine::MetadataStateMachine;

const CLUSTER_ID: &str = "q1Sh-9_ISia_zwGINzRvyQ";
const WAIT: Duration = Duration::from_secs(10);

/// A one-node log. Entries get their index when proposed and are applied in index order,
/// at once unless the log is held; then they wait for `release` (a proposer that gave up
/// does not take its entry back, as in Raft).
struct ScriptedLog {
    inner: Mutex<Inner>,
}

struct Inner {
    state_machine: MetadataStateMachine,
    next_index: u64,
    held: bool,
    pending: Vec<(u64, Vec<u8>, oneshot::Sender<Vec<u8>>)>,
    /// Proposals to refuse (with an error that says nothing about the outcome).
    refuse: usize,
    /// Every proposed batch, in log order, with whether it was proposed while held.
    proposed: Vec<(Vec<MetadataRecord>, bool)>,
}

impl ScriptedLog {
    fn new(state_machine: MetadataStateMachine) -> ScriptedLog {
        ScriptedLog {
            inner: Mutex::new(Inner {
                state_machine,
                next_index: 1,
                held: false,
                pending: Vec::new(),
                refuse: 0,
                proposed: Vec::new(),
            }),
        }
    }

    fn hold(&self) {
        self.inner.lock().unwrap().held = true;
    }

    /// Commits every held entry, in order, and stops holding.
    fn release(&self) {
        let mut inner = self.inner.lock().unwrap();
        inner.held = false;
        for (index, payload, done) in std::mem::take(&mut inner.pending) {
            let response = inner.state_machine.apply(index, 1, &payload);
            let _ = done.send(response);
        }
    }

    fn refuse_next(&self, n: usize) {
        self.inner.lock().unwrap().refuse = n;
    }

    fn refusals_left(&self) -> usize {
        self.inner.lock().unwrap().refuse
    }

    /// Every batch proposed so far, in log order.
    fn proposed(&self) -> Vec<Vec<MetadataRecord>> {
        let inner = self.inner.lock().unwrap();
        inner.proposed.iter().map(|(r, _)| r.clone()).collect()
    }

    /// The batches proposed while held that are not empty barriers.
    fn decisions_while_held(&self) -> Vec<Vec<MetadataRecord>> {
        let inner = self.inner.lock().unwrap();
        inner
            .proposed
            .iter()
            .filter(|(records, held)| *held && !records.is_empty())
            .map(|(records, _)| records.clone())
            .collect()
    }
}

impl Log for ScriptedLog {
    fn node_id(&self) -> NodeId {
        1
    }

    async fn propose(&self, payload: Vec<u8>) -> Result<(u64, Vec<u8>), QuorumError> {
        let waiting = {
            let mut inner = self.inner.lock().unwrap();
            if inner.refuse > 0 {
                inner.refuse -= 1;
                return Err(QuorumError::Raft("refused by the test".into()));
            }
            let index = inner.next_index;
            inner.next_index += 1;
            let held = inner.held;
            let records = decode_batch(&payload).unwrap();
            inner.proposed.push((records, held));
            if held {
                let (tx, rx) = oneshot::channel();
                inner.pending.push((index, payload, tx));
                (index, rx)
            } else {
                let response = inner.state_machine.apply(index, 1, &payload);
                return Ok((index, response));
            }
        };
        let (index, rx) = waiting;
        match rx.await {
            Ok(response) => Ok((index, response)),
            Err(_) => Err(QuorumError::Stopped("log dropped".into())),
        }
    }
}

struct Setup {
    log: Arc<ScriptedLog>,
    images: ImageReader,
    requests: mpsc::Sender<Request>,
    timeout: Duration,
    _status: watch::Sender<QuorumStatus>,
    task: JoinHandle<()>,
}

impl Drop for Setup {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An active controller task (this node leads term 1) on a scripted log, with a short
/// session, frequent liveness checks, and `request_timeout`.
async fn start(session_timeout_ms: u64, request_timeout: Duration) -> Setup {
    start_with(session_timeout_ms, request_timeout, None).await
}

/// [`start`] with preferred leader elections every `preferred_interval` (`None`: never,
/// as with `auto.leader.rebalance.enable=false`).
async fn start_with(
    session_timeout_ms: u64,
    request_timeout: Duration,
    preferred_interval: Option<Duration>,
) -> Setup {
    let (state_machine, images) = MetadataStateMachine::new();
    let log = Arc::new(ScriptedLog::new(state_machine));
    let quorum = QuorumConfig::new(
        1,
        BTreeMap::from([(1, "127.0.0.1:1".parse().unwrap())]),
        "unused",
    );
    let mut config = MetadataServiceConfig::new(quorum);
    config.cluster_id = Some(CLUSTER_ID.into());
    config.controller = ControllerConfig {
        session_timeout_ms,
        ..ControllerConfig::default()
    };
    config.request_timeout = request_timeout;
    config.liveness_check_interval = Duration::from_millis(20);
    config.preferred_leader_check_interval = preferred_interval;
    config.placement_seed = Some(7);
    let (status_tx, status) = watch::channel(QuorumStatus {
        leader: Some(1),
        is_leader: true,
        term: 1,
        applied_index: None,
    });
    let (requests, requests_rx) = mpsc::channel(64);
    let is_active = Arc::new(AtomicBool::new(false));
    let task = ControllerTask {
        quorum: log.clone(),
        images: images.clone(),
        config,
        status,
        requests: requests_rx,
        is_active: is_active.clone(),
        clock: Instant::now(),
    };
    let task = tokio::spawn(task.run());
    let deadline = Instant::now() + WAIT;
    while !is_active.load(Ordering::Acquire) {
        assert!(Instant::now() < deadline, "never active");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Setup {
        log,
        images,
        requests,
        timeout: request_timeout,
        _status: status_tx,
        task,
    }
}

impl Setup {
    async fn call<T>(&self, op: impl FnOnce(Reply<T>) -> Op) -> Result<Committed<T>> {
        crate::service::call(&self.requests, self.timeout, op).await
    }

    /// Registers and unfences broker `id`; returns its epoch.
    async fn broker(&self, id: BrokerId) -> i64 {
        let registration = BrokerRegistrationRequest {
            broker_id: id,
            cluster_id: CLUSTER_ID.into(),
            incarnation_id: uuid::Uuid::new_v4(),
            previous_incarnation_id: None,
            endpoints: vec![Endpoint {
                listener: "PLAINTEXT".into(),
                host: "127.0.0.1".into(),
                port: 9092,
                security_protocol: SecurityProtocol::Plaintext,
            }],
            rack: None,
        };
        let epoch = self
            .call(|r| Op::RegisterBroker(registration, r))
            .await
            .unwrap()
            .value;
        let beat = self.heartbeat(id, epoch).await.unwrap();
        assert!(!beat.is_fenced);
        epoch
    }

    async fn heartbeat(&self, id: BrokerId, epoch: i64) -> Result<HeartbeatResult> {
        self.heartbeat_with(id, epoch, false, false).await
    }

    /// A heartbeat from a broker that has applied everything applied here.
    async fn heartbeat_with(
        &self,
        id: BrokerId,
        epoch: i64,
        want_fence: bool,
        want_shut_down: bool,
    ) -> Result<HeartbeatResult> {
        let request = BrokerHeartbeatRequest {
            broker_id: id,
            broker_epoch: epoch,
            current_metadata_offset: self.images.image().metadata_offset(),
            want_fence,
            want_shut_down,
            storage_unavailable: false,
        };
        self.call(|r| Op::Heartbeat(request, r))
            .await
            .map(|c| c.value)
    }

    /// Creates topic `name` with one partition on `replicas`; returns its id.
    async fn topic(&self, name: &str, replicas: Vec<BrokerId>) -> uuid::Uuid {
        let topic = CreateTopic {
            name: name.into(),
            num_partitions: -1,
            replication_factor: -1,
            assignments: vec![ReplicaAssignment {
                partition: 0,
                replicas,
            }],
            configs: BTreeMap::new(),
            topic_id: None,
        };
        let created = self
            .call(|r| Op::CreateTopics(vec![topic], r))
            .await
            .unwrap();
        created.value[0].as_ref().unwrap().topic_id
    }

    async fn eventually(&self, what: &str, cond: impl Fn(&MetadataImage) -> bool) {
        let deadline = Instant::now() + WAIT;
        while !cond(&self.images.image()) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// An ISR change times out (the log is held); the brokers' sessions then expire. The fence
/// must not be decided on the image without the ISR change: it would commit after it and
/// put back in the ISR a replica the leader had just removed.
#[tokio::test]
async fn no_tick_decides_while_a_proposal_outcome_is_unknown() {
    let s = start(400, Duration::from_millis(200)).await;
    let e1 = s.broker(1).await;
    s.broker(2).await;
    let topic_id = s.topic("t", vec![1, 2]).await;
    let p = s.images.image().partition(topic_id, 0).unwrap().clone();
    assert_eq!((p.leader, p.isr.clone()), (1, vec![1, 2]));

    s.log.hold();
    let shrink = AlterPartitionRequest {
        broker_id: 1,
        broker_epoch: e1,
        topic_id,
        partition: 0,
        leader_epoch: p.leader_epoch,
        partition_epoch: p.partition_epoch,
        new_isr: vec![IsrMember {
            broker_id: 1,
            broker_epoch: e1,
        }],
    };
    let outcome = s.call(|r| Op::AlterPartition(shrink, r)).await;
    assert!(
        matches!(outcome, Err(ControllerError::Timeout(_))),
        "{outcome:?}"
    );
    // Both sessions (400 ms) expire while the log is held.
    tokio::time::sleep(Duration::from_millis(600)).await;
    s.log.release();
    s.eventually("both brokers fenced", |image| {
        image.broker(1).unwrap().fenced && image.broker(2).unwrap().fenced
    })
    .await;
    let decided: Vec<_> = s.log.decisions_while_held();
    assert_eq!(decided.len(), 1, "only the ISR change: {decided:?}");
    let p = s.images.image().partition(topic_id, 0).unwrap().clone();
    // Broker 2 left the ISR before the fence: the ISR stays {1}, with no leader.
    assert_eq!((p.leader, p.isr), (NO_LEADER, vec![1]));
}

/// A quorum error other than "not the leader" or "too large" says nothing about whether
/// the entry was appended: the next decision, a tick's as a request's, waits for a barrier.
#[tokio::test]
async fn any_unclear_failure_puts_a_barrier_before_the_next_decision() {
    let s = start(60_000, Duration::from_millis(500)).await;
    s.broker(1).await;
    s.log.refuse_next(1);
    let topic = |name: &str| CreateTopic {
        name: name.into(),
        num_partitions: 1,
        replication_factor: 1,
        assignments: Vec::new(),
        configs: BTreeMap::new(),
        topic_id: None,
    };
    // Refused proposals are not recorded: the next one recorded is the first after the
    // failure (a tick may commit the barrier before the request does).
    let before = s.log.proposed().len();
    let failed = s.call(|r| Op::CreateTopics(vec![topic("a")], r)).await;
    assert!(
        matches!(failed, Err(ControllerError::Quorum(_))),
        "{failed:?}"
    );
    let created = s
        .call(|r| Op::CreateTopics(vec![topic("b")], r))
        .await
        .unwrap();
    assert!(created.value[0].is_ok());
    let proposed = s.log.proposed();
    assert!(
        proposed[before].is_empty(),
        "a barrier first: {:?}",
        &proposed[before..]
    );
    assert!(matches!(proposed[before + 1][0], MetadataRecord::Topic(_)));
}

/// The loop stalls longer than a session (a proposal that times out after 1 s, sessions of
/// 600 ms) while both brokers keep heartbeating into the queue. Once the loop runs again,
/// no broker is fenced: their heartbeats count from when they arrived, are handled before
/// the liveness check, and the stall itself renews every session.
#[tokio::test]
async fn a_stalled_loop_does_not_fence_brokers_that_heartbeated_during_the_stall() {
    let s = start(600, Duration::from_millis(1_000)).await;
    let epochs = [(1, s.broker(1).await), (2, s.broker(2).await)];
    s.log.hold();
    let beating = Arc::new(AtomicBool::new(true));
    let mut beats = Vec::new();
    for (id, epoch) in epochs {
        let (requests, timeout, beating) = (s.requests.clone(), s.timeout, beating.clone());
        let offset = s.images.image().metadata_offset();
        beats.push(tokio::spawn(async move {
            while beating.load(Ordering::Acquire) {
                let request = BrokerHeartbeatRequest {
                    broker_id: id,
                    broker_epoch: epoch,
                    current_metadata_offset: offset,
                    want_fence: false,
                    want_shut_down: false,
                    storage_unavailable: false,
                };
                let requests = requests.clone();
                tokio::spawn(async move {
                    let _ = crate::service::call(&requests, timeout, |r| Op::Heartbeat(request, r))
                        .await;
                });
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }));
    }
    let topic = CreateTopic {
        name: "stalls".into(),
        num_partitions: 1,
        replication_factor: 1,
        assignments: Vec::new(),
        configs: BTreeMap::new(),
        topic_id: None,
    };
    // The loop is stuck in this proposal for the whole request timeout.
    let stalled = s.call(|r| Op::CreateTopics(vec![topic], r)).await;
    assert!(
        matches!(stalled, Err(ControllerError::Timeout(_))),
        "{stalled:?}"
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    s.log.release();
    // Several liveness checks run (every 20 ms) after the queue drains.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fences: Vec<_> = s
        .log
        .proposed()
        .into_iter()
        .flatten()
        .filter(
            |r| matches!(r, MetadataRecord::BrokerRegistrationChange(c) if c.fenced == Some(true)),
        )
        .collect();
    assert!(
        fences.is_empty(),
        "brokers fenced after the stall: {fences:?}"
    );
    // Fencing still works once the heartbeats stop.
    beating.store(false, Ordering::Release);
    for b in beats {
        b.await.unwrap();
    }
    s.eventually("both brokers fenced", |image| {
        image.broker(1).unwrap().fenced && image.broker(2).unwrap().fenced
    })
    .await;
}

/// A request that waited in the queue until its caller gave up is not executed: the
/// caller was told it timed out, and must not find the change made behind its back.
#[tokio::test]
async fn requests_whose_caller_gave_up_are_not_executed() {
    let s = start(60_000, Duration::from_millis(300)).await;
    s.broker(1).await;
    let topic = |name: &str| CreateTopic {
        name: name.into(),
        num_partitions: 1,
        replication_factor: 1,
        assignments: Vec::new(),
        configs: BTreeMap::new(),
        topic_id: None,
    };
    s.log.hold();
    let (requests, timeout) = (s.requests.clone(), s.timeout);
    let late = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        crate::service::call(&requests, timeout, |r| {
            Op::CreateTopics(vec![topic("late")], r)
        })
        .await
    });
    // Holds the loop for the whole request timeout; "late" waits in the queue meanwhile.
    let stalled = s
        .call(|r| Op::CreateTopics(vec![topic("stalled")], r))
        .await;
    assert!(
        matches!(stalled, Err(ControllerError::Timeout(_))),
        "{stalled:?}"
    );
    let late = late.await.unwrap();
    assert!(matches!(late, Err(ControllerError::Timeout(_))), "{late:?}");
    s.log.release();
    let next = s
        .call(|r| Op::CreateTopics(vec![topic("next")], r))
        .await
        .unwrap();
    assert!(next.value[0].is_ok());
    let image = s.images.image();
    assert!(
        image.topic("stalled").is_some(),
        "committed after its timeout"
    );
    assert!(
        image.topic("late").is_none(),
        "executed after its caller gave up"
    );
    let proposed = s.log.proposed().into_iter().flatten();
    assert!(!proposed
        .into_iter()
        .any(|r| matches!(&r, MetadataRecord::Topic(t) if t.name == "late")));
}

/// A fence whose commit failed is decided again at the next liveness check, not a whole
/// session later.
#[tokio::test]
async fn a_fence_that_failed_to_commit_is_retried_at_the_next_check() {
    let s = start(1_000, Duration::from_millis(500)).await;
    s.broker(1).await;
    let registered = Instant::now();
    // The next proposal is the fence, once the session ends; the quorum refuses it.
    s.log.refuse_next(1);
    s.eventually("broker 1 fenced", |image| image.broker(1).unwrap().fenced)
        .await;
    let fenced_after = registered.elapsed();
    assert_eq!(s.log.refusals_left(), 0, "the first fence was refused");
    // The session is 1 s and checks run every 20 ms: a retry at the next check fences it
    // well before a second session would have passed.
    assert!(
        fenced_after < Duration::from_millis(1_600),
        "fenced only after {fenced_after:?}"
    );
}

/// Broker 1, the preferred leader of "t", is fenced and comes back: leadership returns to
/// it only once it is in the ISR again (the leader's AlterPartition), at the next
/// preferred-leader check; with the checks off (`auto.leader.rebalance.enable=false`) it
/// stays with broker 2.
#[tokio::test]
async fn preferred_leaders_return_at_the_next_check_once_in_sync() {
    for rebalance in [true, false] {
        let interval = Duration::from_millis(100);
        let s = start_with(
            60_000,
            Duration::from_secs(5),
            rebalance.then_some(interval),
        )
        .await;
        let e1 = s.broker(1).await;
        let e2 = s.broker(2).await;
        let topic_id = s.topic("t", vec![1, 2]).await;
        let leader = |s: &Setup| s.images.image().partition(topic_id, 0).unwrap().clone();
        assert_eq!(leader(&s).leader, 1);
        // Broker 1 is fenced (it asks to be), then unfenced: out of the ISR meanwhile.
        assert!(
            s.heartbeat_with(1, e1, true, false)
                .await
                .unwrap()
                .is_fenced
        );
        assert_eq!((leader(&s).leader, leader(&s).isr), (2, vec![2]));
        assert!(!s.heartbeat(1, e1).await.unwrap().is_fenced);
        // Several checks pass: broker 1 is not in the ISR, so it does not lead.
        tokio::time::sleep(3 * interval).await;
        assert_eq!(leader(&s).leader, 2, "rebalance {rebalance}");
        // Broker 2 (leading) adds it to the ISR.
        let p = leader(&s);
        let join = AlterPartitionRequest {
            broker_id: 2,
            broker_epoch: e2,
            topic_id,
            partition: 0,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            new_isr: vec![
                IsrMember {
                    broker_id: 2,
                    broker_epoch: e2,
                },
                IsrMember {
                    broker_id: 1,
                    broker_epoch: e1,
                },
            ],
        };
        let answer = s.call(|r| Op::AlterPartition(join, r)).await.unwrap();
        assert_eq!(
            answer.value.isr,
            vec![2, 1],
            "the answer carries the new ISR"
        );
        assert_eq!(answer.value.partition_epoch, p.partition_epoch + 1);
        if rebalance {
            s.eventually("broker 1 leads again", |image| {
                image.partition(topic_id, 0).unwrap().leader == 1
            })
            .await;
            let back = leader(&s);
            assert_eq!(back.leader_epoch, p.leader_epoch + 1);
            assert_eq!(back.isr, vec![2, 1], "the ISR is kept");
        } else {
            tokio::time::sleep(5 * interval).await;
            assert_eq!(leader(&s).leader, 2, "no rebalance when it is off");
        }
    }
}

/// A broker in controlled shutdown: its leadership moves to another in-sync replica at
/// once, it leaves the ISR, and it is told to stop only once the other active brokers
/// have reported applying that change (Kafka's rule); then it is fenced.
#[tokio::test]
async fn controlled_shutdown_moves_leadership_and_waits_for_the_active_brokers() {
    let s = start(60_000, Duration::from_secs(5)).await;
    let e1 = s.broker(1).await;
    let e2 = s.broker(2).await;
    let e3 = s.broker(3).await;
    let topic_id = s.topic("t", vec![1, 2, 3]).await;
    let answer = s.heartbeat_with(1, e1, false, true).await.unwrap();
    assert!(answer.in_controlled_shutdown && !answer.should_shut_down);
    let p = s.images.image().partition(topic_id, 0).unwrap().clone();
    assert_eq!((p.leader, p.isr), (2, vec![2, 3]));
    assert!(s.images.image().partitions_led_by(1).is_empty());
    // Brokers 2 and 3 have not reported the change yet.
    let answer = s.heartbeat_with(1, e1, false, true).await.unwrap();
    assert!(!answer.should_shut_down && !answer.is_fenced);
    s.heartbeat(2, e2).await.unwrap();
    s.heartbeat(3, e3).await.unwrap();
    let answer = s.heartbeat_with(1, e1, false, true).await.unwrap();
    assert!(answer.should_shut_down && answer.is_fenced);
    assert!(s.images.image().broker(1).unwrap().fenced);
    // The partition kept its new leader and ISR.
    let after = s.images.image().partition(topic_id, 0).unwrap().clone();
    assert_eq!((after.leader, after.isr), (2, vec![2, 3]));
}
