//! [`Quorum`]: one node of the metadata quorum. Starts openraft on the durable stores and the
//! TCP network, forms the cluster on first start, and offers the small API the broker uses.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use openraft::error::{ClientWriteError, Fatal, InitializeError, RaftError};
use openraft::{BasicNode, Config, SnapshotPolicy};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

use crate::applier::Applier;
use crate::error::{QuorumError, Result};
use crate::log_store::LogStore;
use crate::network::{NetSettings, Network};
use crate::requests::{RequestClient, RequestHandler};
use crate::server::Inbound;
use crate::state_machine::StateMachineStore;
use crate::types::{NodeId, Payload, Raft};

/// How a node of the quorum is set up. [`QuorumConfig::new`] fills in the defaults.
#[derive(Debug, Clone)]
pub struct QuorumConfig {
    /// This node's id (`node.id`).
    pub node_id: NodeId,
    /// The voters and their controller listener addresses (`controller.quorum.voters`). A
    /// node not in this map starts as a learner candidate: it waits to be added with
    /// [`Quorum::add_learner`] by the leader.
    pub voters: BTreeMap<NodeId, SocketAddr>,
    /// The directory of the quorum's files (log, vote, snapshot).
    pub dir: PathBuf,
    /// The leader's heartbeat period. Default 150 ms. Also openraft's timeout for one
    /// AppendEntries RPC.
    pub heartbeat_interval: Duration,
    /// A follower that hears no leader starts an election after openraft's leader lease
    /// (`election_timeout_max`) plus a random time in `[election_timeout_min,
    /// election_timeout_max)`, checked on a tick of 1.5 × `heartbeat_interval`. Defaults
    /// 400 ms and 600 ms: a new leader 1.0–1.5 s after the old one stops.
    pub election_timeout_min: Duration,
    pub election_timeout_max: Duration,
    /// Build a snapshot once this many entries were committed since the last one. Default 1000.
    pub snapshot_after_entries: u64,
    /// Entries kept in the log below the last snapshot (so slightly lagging followers catch up
    /// from the log, not a snapshot). Default 100.
    pub log_entries_kept_after_snapshot: u64,
    /// Largest payload [`Quorum::propose`] accepts. Default 1 MiB.
    pub max_payload_bytes: usize,
    /// Largest RPC frame sent or accepted. Default 16 MiB.
    pub max_frame_bytes: usize,
    /// Largest snapshot accepted from a leader (it is received in memory). A chunk that would
    /// end past this closes the connection. Default 1 GiB.
    pub max_snapshot_bytes: u64,
    /// Timeout of one snapshot chunk sent to a follower, including, for the last chunk, the
    /// follower installing the snapshot. Snapshots go on their own connection, so a slow
    /// transfer does not delay heartbeats. Default 5 s.
    pub install_snapshot_timeout: Duration,
    /// Size at which a new log segment is started. Default 8 MiB.
    pub segment_bytes: u64,
    /// An incoming connection on which no request starts for this long is closed. Default
    /// 30 s (a leader sends heartbeats every `heartbeat_interval`; an idle peer reconnects).
    pub idle_timeout: Duration,
    /// Most incoming connections served at once (on [`Quorum::serve`]'s listener and through
    /// [`Quorum::serve_connection`] together); one more is closed at once. Default 64 (each
    /// peer keeps up to three connections to this node: votes, appends, snapshots; plus up
    /// to [`MAX_CONNECTIONS_PER_PEER`](crate::requests::MAX_CONNECTIONS_PER_PEER) for
    /// controller requests, which any node may send).
    pub max_incoming_connections: usize,
    /// Timeout of one outgoing connect. Default 500 ms.
    pub connect_timeout: Duration,
    /// Backoff after a failed connect, doubling from min to max. Defaults 50 ms and 1 s.
    pub reconnect_backoff_min: Duration,
    pub reconnect_backoff_max: Duration,
}

impl QuorumConfig {
    /// A config with the defaults documented on each field.
    pub fn new(
        node_id: NodeId,
        voters: BTreeMap<NodeId, SocketAddr>,
        dir: impl Into<PathBuf>,
    ) -> QuorumConfig {
        QuorumConfig {
            node_id,
            voters,
            dir: dir.into(),
            heartbeat_interval: Duration::from_millis(150),
            election_timeout_min: Duration::from_millis(400),
            election_timeout_max: Duration::from_millis(600),
            snapshot_after_entries: 1000,
            log_entries_kept_after_snapshot: 100,
            max_payload_bytes: 1 << 20,
            max_frame_bytes: 16 << 20,
            max_snapshot_bytes: 1 << 30,
            install_snapshot_timeout: Duration::from_secs(5),
            segment_bytes: 8 << 20,
            idle_timeout: Duration::from_secs(30),
            max_incoming_connections: 64,
            connect_timeout: Duration::from_millis(500),
            reconnect_backoff_min: Duration::from_millis(50),
            reconnect_backoff_max: Duration::from_secs(1),
        }
    }

    fn raft_config(&self) -> Result<Config> {
        if self.voters.is_empty() {
            return Err(QuorumError::Config("no voters".into()));
        }
        if self.max_payload_bytes + (64 << 10) > self.max_frame_bytes {
            return Err(QuorumError::Config(
                "max_frame_bytes must exceed max_payload_bytes by at least 64 KiB".into(),
            ));
        }
        // The leader's connection carries a heartbeat each interval: it must never look idle.
        if self.idle_timeout < self.heartbeat_interval * 4 {
            return Err(QuorumError::Config(
                "idle_timeout must be at least 4 x heartbeat_interval".into(),
            ));
        }
        if self.max_incoming_connections == 0 {
            return Err(QuorumError::Config(
                "max_incoming_connections must be at least 1".into(),
            ));
        }
        let ms = |d: Duration| d.as_millis() as u64;
        let config = Config {
            cluster_name: "sluice-metadata".into(),
            heartbeat_interval: ms(self.heartbeat_interval),
            election_timeout_min: ms(self.election_timeout_min),
            election_timeout_max: ms(self.election_timeout_max),
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_after_entries.max(1)),
            max_in_snapshot_log_to_keep: self.log_entries_kept_after_snapshot,
            install_snapshot_timeout: ms(self.install_snapshot_timeout),
            // Chunks well under the frame limit, whatever it is set to: the chunk goes as a CBOR
            // byte string (wire::SnapshotChunk), so its frame is the chunk plus the snapshot's
            // meta (membership with addresses) and a few bytes.
            snapshot_max_chunk_size: (self.max_frame_bytes as u64 / 2).min(4 << 20),
            ..Config::default()
        };
        config
            .validate()
            .map_err(|e| QuorumError::Config(e.to_string()))
    }
}

/// What the broker watches: leadership and progress of this node's view of the quorum.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuorumStatus {
    /// The current leader, if known.
    pub leader: Option<NodeId>,
    /// Whether this node is the leader.
    pub is_leader: bool,
    /// The current Raft term (Kafka's controller epoch).
    pub term: u64,
    /// The index of the last entry applied to this node's applier (including Raft's own
    /// entries, which the applier does not see).
    pub applied_index: Option<u64>,
}

/// A committed and applied proposal: what [`Quorum::propose`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposed {
    /// The entry's log index (its offset in the metadata log).
    pub index: u64,
    /// The term of the leader that wrote the entry. A caller acting on its own leadership
    /// (the active controller) checks that this is its term: an entry of another term was
    /// not written under its leadership.
    pub term: u64,
    /// The applier's response to the entry.
    pub response: Vec<u8>,
}

/// One voter or learner in [`QuorumDescription`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReplicaDescription {
    pub node_id: NodeId,
    pub addr: String,
    /// The last log index known to match the leader's (leader's view; `None` elsewhere, or
    /// when not yet known).
    pub matched_index: Option<u64>,
    /// How many entries this replica is behind the leader's last log index (leader only).
    pub lag: Option<u64>,
}

/// The quorum as this node sees it (for DescribeQuorum; accurate on the leader).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QuorumDescription {
    pub leader: Option<NodeId>,
    pub term: u64,
    /// The committed index (Kafka's high watermark of `__cluster_metadata`).
    pub high_watermark: Option<u64>,
    pub last_log_index: Option<u64>,
    pub voters: Vec<ReplicaDescription>,
    pub learners: Vec<ReplicaDescription>,
}

/// One running node of the metadata quorum.
///
/// Dropping it stops its listeners and Raft (in the background); [`Quorum::shutdown`] stops
/// them and waits until Raft has finished.
pub struct Quorum {
    id: NodeId,
    raft: Raft,
    status: watch::Receiver<QuorumStatus>,
    /// Set once, with the reason, when Raft stops itself (not on a requested shutdown).
    fatal: watch::Receiver<Option<String>>,
    stop: Arc<watch::Sender<bool>>,
    /// A handle on the log Raft writes, to end a wait for disk space at shutdown.
    log: LogStore,
    max_payload_bytes: usize,
    inbound: Arc<Inbound>,
    /// `controller.quorum.voters`: where to send a ControllerRequest to a voter that is not
    /// (or not yet) in the membership this node knows.
    configured_voters: BTreeMap<NodeId, SocketAddr>,
    requests: RequestClient,
}

impl Quorum {
    /// Opens the stores in `config.dir`, starts Raft and, on the very first start of a
    /// cluster, forms it: the lowest voter id initializes the full voter set when its own
    /// storage is pristine (no vote, no log, no snapshot). A restart finds its vote and log
    /// and never initializes again; the other voters never initialize, they learn the
    /// membership from the first leader. So three nodes started with the same voter list form
    /// one cluster with no separate format step.
    ///
    /// Incoming RPCs are not accepted until the caller runs [`Quorum::serve`] on a listener or
    /// passes accepted connections to [`Quorum::serve_connection`].
    pub async fn start<A: Applier>(config: QuorumConfig, applier: A) -> Result<Quorum> {
        let raft_config = Arc::new(config.raft_config()?);
        std::fs::create_dir_all(&config.dir)
            .map_err(|e| QuorumError::io("create", &config.dir, e))?;
        let (log, _recovery) = LogStore::open(&config.dir, config.segment_bytes)?;
        let sm = StateMachineStore::open(&config.dir, applier)?;
        let settings = NetSettings {
            connect_timeout: config.connect_timeout,
            reconnect_backoff_min: config.reconnect_backoff_min,
            reconnect_backoff_max: config.reconnect_backoff_max,
            max_frame_bytes: config.max_frame_bytes,
            idle_timeout: config.idle_timeout,
        };
        let requests = RequestClient::new(settings.clone());
        let network = Network::new(config.node_id, settings);
        let log_handle = log.clone();
        let raft = Raft::new(config.node_id, raft_config, network, log, sm)
            .await
            .map_err(|e| QuorumError::Stopped(e.to_string()))?;

        let growth = match check_voters(&raft, &config).await {
            Ok(growth) => growth,
            Err(e) => {
                let _ = raft.shutdown().await;
                return Err(e);
            }
        };
        if let Some(growth) = growth {
            tokio::spawn(change_voters(raft.clone(), config.node_id, growth));
        }

        let lowest = config.voters.keys().next().copied();
        if lowest == Some(config.node_id) {
            let initialized = raft
                .is_initialized()
                .await
                .map_err(|e| QuorumError::Stopped(e.to_string()))?;
            if !initialized {
                if let Err(e) = refuse_if_the_cluster_exists(&config).await {
                    let _ = raft.shutdown().await;
                    return Err(e);
                }
                let members: BTreeMap<NodeId, BasicNode> = config
                    .voters
                    .iter()
                    .map(|(id, addr)| (*id, BasicNode::new(addr.to_string())))
                    .collect();
                match raft.initialize(members).await {
                    Ok(()) => {
                        tracing::info!(voters = ?config.voters.keys().collect::<Vec<_>>(), "metadata quorum initialized")
                    }
                    Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                    Err(e) => return Err(QuorumError::Raft(e.to_string())),
                }
            }
        }

        let (status_tx, status_rx) = watch::channel(QuorumStatus::default());
        let (fatal_tx, fatal_rx) = watch::channel(None);
        let mut metrics = raft.metrics();
        let id = config.node_id;
        tokio::spawn(async move {
            loop {
                let status = {
                    let m = metrics.borrow_and_update();
                    match &m.running_state {
                        Ok(()) | Err(Fatal::Stopped) => {}
                        Err(e) => {
                            if fatal_tx.borrow().is_none() {
                                tracing::error!(node = id, "metadata quorum stopped: {e}");
                                let _ = fatal_tx.send(Some(e.to_string()));
                            }
                        }
                    }
                    QuorumStatus {
                        leader: m.current_leader,
                        is_leader: m.current_leader == Some(id),
                        term: m.current_term,
                        applied_index: m.last_applied.map(|l| l.index),
                    }
                };
                let became_leader = status.is_leader && !status_tx.borrow().is_leader;
                if became_leader {
                    tracing::info!(
                        node = id,
                        term = status.term,
                        "became metadata quorum leader"
                    );
                }
                status_tx.send_if_modified(|s| {
                    let changed = *s != status;
                    *s = status;
                    changed
                });
                if metrics.changed().await.is_err() {
                    return;
                }
            }
        });

        let (stop, _) = watch::channel(false);
        Ok(Quorum {
            id,
            status: status_rx,
            fatal: fatal_rx,
            stop: Arc::new(stop),
            log: log_handle,
            max_payload_bytes: config.max_payload_bytes,
            inbound: Arc::new(Inbound {
                raft: raft.clone(),
                max_frame_bytes: config.max_frame_bytes,
                max_snapshot_bytes: config.max_snapshot_bytes,
                configured_voters: config.voters.keys().copied().collect(),
                snapshot: Mutex::new(None),
                idle_timeout: config.idle_timeout,
                connections: Arc::new(Semaphore::new(config.max_incoming_connections)),
                handler: RwLock::new(None),
            }),
            configured_voters: config.voters.clone(),
            requests,
            raft,
        })
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.id
    }

    /// Appends `payload` to the replicated log and waits until it is committed and applied
    /// here; returns its log index, the term it was written in and the applier's response.
    /// Only the leader accepts proposals: elsewhere the answer is [`QuorumError::NotLeader`]
    /// with the leader it knows.
    pub async fn propose(&self, payload: Vec<u8>) -> Result<Proposed> {
        if payload.len() > self.max_payload_bytes {
            return Err(QuorumError::PayloadTooLarge {
                size: payload.len(),
                max: self.max_payload_bytes,
            });
        }
        match self.raft.client_write(Payload(payload)).await {
            Ok(resp) => Ok(Proposed {
                index: resp.log_id.index,
                term: resp.log_id.leader_id.term,
                response: resp.data.0,
            }),
            Err(e) => Err(write_error(e)),
        }
    }

    /// Resolves with [`QuorumError::Fatal`] once the quorum on this node stops itself: a
    /// write to its log, vote or snapshot file failed, after which Raft accepts nothing more
    /// (it never retries a write whose outcome on disk is unknown) and every call answers
    /// [`QuorumError::Stopped`] or [`QuorumError::Fatal`]. The broker should then exit and be
    /// restarted: the files are intact up to the failure. Never resolves if the quorum is shut
    /// down normally. The future does not borrow the quorum.
    pub fn fatal(&self) -> impl Future<Output = QuorumError> + Send + 'static {
        let mut rx = self.fatal.clone();
        async move {
            loop {
                if let Some(reason) = rx.borrow_and_update().clone() {
                    return QuorumError::Fatal(reason);
                }
                if rx.changed().await.is_err() {
                    // Stopped without a failure.
                    std::future::pending::<()>().await;
                }
            }
        }
    }

    /// The leader this node knows of.
    pub fn leader(&self) -> Option<NodeId> {
        self.status.borrow().leader
    }

    /// A watch of whether this node's metadata log is waiting for space on a full disk
    /// (see [`LogStore::waiting_for_space`]): while it is, this node's Raft is stuck in
    /// the write, so its last known role (even "leader") is stale.
    pub fn waiting_for_space(&self) -> watch::Receiver<bool> {
        self.log.waiting_for_space()
    }

    /// Whether this node's metadata log is waiting for space now.
    pub fn is_waiting_for_space(&self) -> bool {
        self.log.is_waiting_for_space()
    }

    /// Whether this node is the leader (as far as it knows).
    pub fn is_leader(&self) -> bool {
        self.status.borrow().is_leader
    }

    /// Waits until a leader is known; returns its id.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<NodeId> {
        let mut rx = self.status.clone();
        let wait = async {
            loop {
                if let Some(l) = rx.borrow_and_update().leader {
                    return Ok(l);
                }
                if rx.changed().await.is_err() {
                    return Err(QuorumError::Stopped("raft stopped".into()));
                }
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| QuorumError::Timeout(timeout))?
    }

    /// A watch of this node's [`QuorumStatus`]: it changes on leadership changes, new terms
    /// and every applied entry.
    pub fn subscribe(&self) -> watch::Receiver<QuorumStatus> {
        self.status.clone()
    }

    /// Voters and learners with their replication progress, the term, the leader and the
    /// committed index.
    pub async fn describe(&self) -> Result<QuorumDescription> {
        let high_watermark = self
            .raft
            .with_raft_state(|st| st.committed.map(|l| l.index))
            .await
            .map_err(|e| QuorumError::Stopped(e.to_string()))?;
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voter_ids: BTreeSet<NodeId> = membership.voter_ids().collect();
        let is_leader = m.current_leader == Some(self.id);
        let last = m.last_log_index;
        let describe = |(id, node): (&NodeId, &BasicNode)| {
            let matched = if !is_leader {
                None
            } else if *id == self.id {
                last
            } else {
                m.replication
                    .as_ref()
                    .and_then(|r| r.get(id).cloned().flatten())
                    .map(|l| l.index)
            };
            ReplicaDescription {
                node_id: *id,
                addr: node.addr.clone(),
                matched_index: matched,
                lag: match (is_leader, last) {
                    (true, Some(last)) => {
                        Some(matched.map_or(last + 1, |m| last.saturating_sub(m)))
                    }
                    _ => None,
                },
            }
        };
        let (voters, learners): (Vec<_>, Vec<_>) = membership
            .nodes()
            .map(describe)
            .partition(|r| voter_ids.contains(&r.node_id));
        Ok(QuorumDescription {
            leader: m.current_leader,
            term: m.current_term,
            high_watermark,
            last_log_index: last,
            voters,
            learners,
        })
    }

    /// Adds a learner (a broker-only node that follows the metadata log) at `addr`, its
    /// controller listener; returns once the membership change is committed. Leader only.
    pub async fn add_learner(&self, node_id: NodeId, addr: SocketAddr) -> Result<()> {
        self.raft
            .add_learner(node_id, BasicNode::new(addr.to_string()), false)
            .await
            .map(|_| ())
            .map_err(write_error)
    }

    /// Installs (or replaces) the handler of ControllerRequests arriving at this node (frame
    /// kind 5, see [`crate::wire`]). Until one is installed they are answered with an error.
    /// The handler is kept until the quorum is dropped; it should not hold the `Quorum`
    /// itself (a cycle), only a weak handle.
    pub fn set_request_handler(&self, handler: Arc<dyn RequestHandler>) {
        *self
            .inbound
            .handler
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(handler);
    }

    /// Sends a ControllerRequest with `body` to node `target` and waits for its handler's
    /// answer, within `timeout` (connect included). The address is the node's in the
    /// membership this node knows, else its entry in `controller.quorum.voters`; a node in
    /// neither is [`QuorumError::Unreachable`]. Works on any node, member or not. Other
    /// errors: see `requests::RequestClient::call` — `Unreachable` (no connection, or it
    /// failed mid-request), [`QuorumError::Timeout`], [`QuorumError::Remote`] (the peer
    /// answered with an error), [`QuorumError::PayloadTooLarge`].
    pub async fn request(&self, target: NodeId, body: &[u8], timeout: Duration) -> Result<Vec<u8>> {
        let addr = self.address_of(target).ok_or(QuorumError::Unreachable {
            node: target,
            reason: "no address known (not in the membership nor a configured voter)".into(),
        })?;
        self.requests.call(target, &addr, body, timeout).await
    }

    /// The configured voters (`controller.quorum.voters`), by id.
    pub fn configured_voters(&self) -> Vec<NodeId> {
        self.configured_voters.keys().copied().collect()
    }

    /// The controller listener address of `node`: from the membership, else the config.
    fn address_of(&self, node: NodeId) -> Option<String> {
        let from_membership = {
            let metrics = self.raft.metrics();
            let m = metrics.borrow();
            m.membership_config
                .membership()
                .get_node(&node)
                .map(|n| n.addr.clone())
        };
        from_membership.or_else(|| self.configured_voters.get(&node).map(|a| a.to_string()))
    }

    /// Serves one accepted connection of a peer's controller RPCs until it closes, sends
    /// something invalid, or the quorum stops.
    pub async fn serve_connection(&self, mut stream: TcpStream) {
        let peer = stream
            .peer_addr()
            .map_or_else(|_| "?".to_string(), |a| a.to_string());
        let Some(_permit) = self.inbound.admit(&peer) else {
            return;
        };
        let _ = stream.set_nodelay(true);
        let mut stop = self.stop.subscribe();
        if *stop.borrow_and_update() {
            return;
        }
        tokio::select! {
            _ = crate::server::serve(&self.inbound, &mut stream, &peer) => {}
            _ = stop.changed() => {}
        }
    }

    /// Accepts controller connections on `listener` and serves each in its own task, until
    /// the quorum is shut down or dropped. Spawns the loop and returns at once.
    pub fn serve(&self, listener: TcpListener) {
        let inbound = self.inbound.clone();
        let mut stop = self.stop.subscribe();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    _ = stop.changed() => return,
                };
                let (mut stream, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::debug!("controller listener accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let peer = peer.to_string();
                let Some(permit) = inbound.admit(&peer) else {
                    drop(stream);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let inbound = inbound.clone();
                let mut stop = stop.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    tokio::select! {
                        _ = crate::server::serve(&inbound, &mut stream, &peer) => {}
                        _ = stop.changed() => {}
                    }
                });
            }
        });
    }

    /// Stops listeners and Raft, and waits for Raft to finish its current work.
    pub async fn shutdown(&self) -> Result<()> {
        let _ = self.stop.send(true);
        self.log.stop_waiting();
        self.raft
            .shutdown()
            .await
            .map_err(|e| QuorumError::Stopped(format!("raft task failed: {e}")))
    }
}

impl Drop for Quorum {
    fn drop(&mut self) {
        // `stop` is set by `shutdown`: Raft is stopped already (asking again only makes
        // openraft warn about a double call).
        if self.stop.send_replace(true) {
            return;
        }
        self.log.stop_waiting();
        // Raft also stops once its last handle is gone; asking it directly is quicker.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let raft = self.raft.clone();
            runtime.spawn(async move {
                let _ = raft.shutdown().await;
            });
        }
    }
}

/// A change of the voters this node carries out once it leads (see [`check_voters`]).
#[derive(Debug)]
enum Growth {
    /// A sole voter configured with more voters: set its own address (a sole voter may
    /// have been written without one), then add the others.
    AddVoters {
        me: BasicNode,
        others: BTreeMap<NodeId, BasicNode>,
    },
    /// The log stopped in a joint configuration (a leader crashed between the two steps
    /// of a change): finish it with the configured voters.
    FinishJoint(BTreeSet<NodeId>),
}

/// Compares the voters in this node's metadata log with the configured ones. A log without
/// membership (a new node) or with the same voters passes. A single node growing into a
/// cluster passes with the change to make: its log has only itself as voter, it is the
/// lowest configured voter (so no other node initializes a quorum of its own) and the
/// configuration names more voters. Anything else is refused (see
/// [`QuorumError::VotersChanged`]).
async fn check_voters(raft: &Raft, config: &QuorumConfig) -> Result<Option<Growth>> {
    let (stored, joint): (BTreeSet<NodeId>, bool) = raft
        .with_raft_state(|st| {
            let membership = st.membership_state.effective().membership();
            (
                membership.voter_ids().collect(),
                membership.get_joint_config().len() > 1,
            )
        })
        .await
        .map_err(|e| QuorumError::Stopped(e.to_string()))?;
    let configured: BTreeSet<NodeId> = config.voters.keys().copied().collect();
    let me = config.node_id;
    if stored.is_empty() {
        return Ok(None);
    }
    if stored == configured {
        return Ok(joint.then_some(Growth::FinishJoint(configured)));
    }
    let lowest = configured.first() == Some(&me);
    if stored == BTreeSet::from([me]) && configured.contains(&me) && lowest {
        let node = |id: &NodeId| BasicNode::new(config.voters[id].to_string());
        return Ok(Some(Growth::AddVoters {
            me: node(&me),
            others: configured
                .iter()
                .filter(|&&id| id != me)
                .map(|id| (*id, node(id)))
                .collect(),
        }));
    }
    Err(QuorumError::VotersChanged(format!(
        "the metadata log in {} has voters {stored:?}, but the configuration names {configured:?} \
         (controller.quorum.voters). Only a single node may add voters, as the lowest of the \
         new voters; other changes are not supported yet: start this node with the voters its \
         log has (see docs/cluster.md, \"Changing the voters\")",
        config.dir.display()
    )))
}

/// Carries out `growth` once this node leads; retries every second while it fails (e.g.
/// the new voters are not up yet). Ends when done, or when the quorum stops.
async fn change_voters(raft: Raft, me: NodeId, growth: Growth) {
    use openraft::ChangeMembers;
    let mut metrics = raft.metrics();
    tracing::info!(
        ?growth,
        "changing the metadata quorum's voters once this node leads"
    );
    let target: BTreeSet<NodeId> = match &growth {
        Growth::AddVoters { others, .. } => others.keys().copied().chain([me]).collect(),
        Growth::FinishJoint(voters) => voters.clone(),
    };
    loop {
        let Ok(m) = metrics
            .wait_for(|m| m.current_leader == Some(me))
            .await
            .map(|m| m.clone())
        else {
            return;
        };
        // Done already (by an earlier attempt whose answer was lost)?
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        if membership.get_joint_config().len() == 1 && voters == target {
            tracing::info!(voters = ?target, "metadata quorum voters changed");
            return;
        }
        let result = match &growth {
            Growth::AddVoters { me: node, others } => {
                match raft
                    .change_membership(
                        ChangeMembers::SetNodes(BTreeMap::from([(me, node.clone())])),
                        false,
                    )
                    .await
                {
                    Ok(_) => {
                        raft.change_membership(ChangeMembers::AddVoters(others.clone()), false)
                            .await
                    }
                    Err(e) => Err(e),
                }
            }
            Growth::FinishJoint(voters) => {
                raft.change_membership(ChangeMembers::ReplaceAllVoters(voters.clone()), false)
                    .await
            }
        };
        match result {
            Ok(done) => {
                tracing::info!(membership = ?done.membership, "metadata quorum voters changed");
                return;
            }
            Err(RaftError::Fatal(_)) => return,
            Err(e) => {
                tracing::warn!(error = %e, "changing the metadata quorum's voters failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Before the lowest voter forms a cluster from empty storage: asks every other configured
/// voter whether it has Raft state. One that has means the cluster exists and this node lost
/// its disk: initializing again would let it vote a second time in a term it voted in
/// already, and start a log whose membership may differ. Peers that cannot be reached count
/// as pristine (on a first start they may not be up yet).
async fn refuse_if_the_cluster_exists(config: &QuorumConfig) -> Result<()> {
    let timeout = config.connect_timeout + Duration::from_secs(1);
    let probes: Vec<_> = config
        .voters
        .iter()
        .filter(|(id, _)| **id != config.node_id)
        .map(|(id, addr)| {
            let (me, target, addr, max) = (
                config.node_id,
                *id,
                addr.to_string(),
                config.max_frame_bytes,
            );
            (
                target,
                tokio::spawn(async move {
                    crate::network::probe(me, target, &addr, max, timeout).await
                }),
            )
        })
        .collect();
    for (target, probe) in probes {
        let Ok(Some(answer)) = probe.await else {
            continue;
        };
        if answer.has_state() {
            let reason = format!(
                "node {} has an empty metadata quorum directory ({}), but voter {target} \
                 already has state (term {}, last log index {:?}): this node lost its disk. \
                 It will not form a new cluster. Recover it as docs/cluster.md describes \
                 (\"Recovering a voter that lost its disk\"): remove it from the voters on the \
                 running quorum and add it back as a new learner with an empty directory, or \
                 restore its directory from a backup.",
                config.node_id,
                config.dir.display(),
                answer.term,
                answer.last_log_index
            );
            tracing::error!("{reason}");
            return Err(QuorumError::StateLost(reason));
        }
    }
    Ok(())
}

fn write_error(e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>) -> QuorumError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => QuorumError::NotLeader {
            leader: f.leader_id,
        },
        RaftError::APIError(other) => QuorumError::Raft(other.to_string()),
        RaftError::Fatal(Fatal::Stopped) => QuorumError::Stopped("raft stopped".into()),
        RaftError::Fatal(f) => QuorumError::Fatal(f.to_string()),
    }
}
