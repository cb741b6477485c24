//! [`MetadataObserver`]: the metadata layer of a broker-only node, which follows the
//! metadata without being a member of the quorum, as a Kafka broker fetches
//! `__cluster_metadata` from the controllers.
//!
//! ```text
//!   broker request handlers
//!     │ image() / subscribe() / wait_for_offset()     controller requests (register, ...)
//!     ▼                                                 │ to the active controller,
//!  MetadataObserver ◄── fetch task ── FetchMetadata ──► │ following NotController hints
//!     (its own MetadataStateMachine,   long poll, any voter, the active one preferred
//!      in memory only)
//! ```
//!
//! - **Following.** One task sends `FetchMetadata { after_offset, max_wait_ms }` (see `rpc`)
//!   to the active controller it knows of, else to the configured voters in turn, and
//!   applies the answer to its own [`MetadataStateMachine`]: batches exactly as a voter
//!   applies them (a batch a voter skipped is skipped here the same way), a snapshot by
//!   replacing the image. Nothing is written to disk: a restarted observer has nothing
//!   (offset -1), and the first answer is a snapshot. A voter answers at once when it has
//!   something newer and otherwise waits up to `max_wait` (a long poll), so a quiet cluster
//!   costs one request per `max_wait`. A failed fetch (unreachable voter, an error answer,
//!   undecodable bytes) moves to the next voter after a backoff of 50 ms doubling to 1 s,
//!   and an empty answer that came back early also waits for the backoff: the task never
//!   spins. A snapshot older than the image is never installed (the image never goes back).
//! - **The active controller.** Every answer names the voter's quorum leader; the last one
//!   named is [`MetadataObserver::controller_leader`]. Each fetch names this node, so the
//!   leader lists it as an observer in DescribeQuorum (`forward.rs`).
//! - **Connections.** Fetches and controller requests use separate connections (each a
//!   pool per voter, see `sluice_quorum::ControllerClient`), so a long poll never delays a
//!   heartbeat.
//! - **Controller requests** go to that leader (they are not forwarded by the voter that
//!   gets them: a voter that is not the active controller answers `NotController` with the
//!   leader, which is tried next), with the retry rules of `forward.rs`: again after a
//!   `NotController`, a voter that is stopping or a failed connection, within the request
//!   timeout.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sluice_metadata::MetadataImage;
use sluice_quorum::{Applier, ControllerClient, NodeId, QuorumError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::{ControllerError, Result};
use crate::rpc::{
    self, Answered, ControllerAnswer, ControllerRequest, FetchedMetadata, MetadataFetch, WireError,
};
use crate::state_machine::{ImageReader, MetadataStateMachine};

/// The first wait after a failed attempt.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
/// The longest wait between two failed attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// How a [`MetadataObserver`] reaches the voters.
#[derive(Debug, Clone)]
pub struct ObserverConfig {
    /// This broker's `node.id` (not a voter).
    pub node_id: NodeId,
    /// `controller.quorum.voters`: id → controller listener address (`host:port`).
    pub voters: BTreeMap<NodeId, String>,
    /// The longest a controller request waits for its answer, retries included. Default
    /// 10 s (as `MetadataServiceConfig::request_timeout`).
    pub request_timeout: Duration,
    /// How long a voter holds a FetchMetadata that has nothing new. Default 500 ms.
    pub fetch_max_wait: Duration,
    /// Timeout of one connect to a voter. Default 500 ms.
    pub connect_timeout: Duration,
    /// Largest frame sent or accepted (a snapshot must fit one). Default 16 MiB.
    pub max_frame_bytes: usize,
    /// The voters' idle timeout (`QuorumConfig::idle_timeout`). Default 30 s.
    pub voter_idle_timeout: Duration,
}

impl ObserverConfig {
    /// A config with the defaults documented on each field.
    pub fn new(node_id: NodeId, voters: BTreeMap<NodeId, String>) -> ObserverConfig {
        ObserverConfig {
            node_id,
            voters,
            request_timeout: Duration::from_secs(10),
            fetch_max_wait: Duration::from_millis(500),
            connect_timeout: Duration::from_millis(500),
            max_frame_bytes: 16 << 20,
            voter_idle_timeout: Duration::from_secs(30),
        }
    }
}

/// What the fetch task and the request senders share.
struct Inner {
    node_id: NodeId,
    voters: BTreeMap<NodeId, String>,
    /// Controller requests' connections.
    client: ControllerClient,
    /// FetchMetadata's connections, apart: a long poll never holds up a heartbeat.
    fetch_client: ControllerClient,
    request_timeout: Duration,
    /// The quorum leader the last answer named.
    leader: watch::Sender<Option<NodeId>>,
}

/// A broker-only node's metadata layer. See the module docs.
pub struct MetadataObserver {
    inner: Arc<Inner>,
    images: ImageReader,
    stop: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl MetadataObserver {
    /// Starts following the voters. Returns at once; the image fills in with the first
    /// answer.
    pub fn start(config: ObserverConfig) -> Result<MetadataObserver> {
        if config.voters.is_empty() {
            return Err(ControllerError::Config(
                "an observer needs at least one voter".into(),
            ));
        }
        if config.voters.contains_key(&config.node_id) {
            return Err(ControllerError::Config(format!(
                "node {} is a voter: it runs the quorum, not an observer",
                config.node_id
            )));
        }
        // No window: nobody fetches from an observer.
        let (state_machine, images) = MetadataStateMachine::with_window(0);
        let inner = Arc::new(Inner {
            node_id: config.node_id,
            voters: config.voters,
            client: ControllerClient::new(
                config.connect_timeout,
                config.max_frame_bytes,
                config.voter_idle_timeout,
            ),
            fetch_client: ControllerClient::new(
                config.connect_timeout,
                config.max_frame_bytes,
                config.voter_idle_timeout,
            ),
            request_timeout: config.request_timeout,
            leader: watch::channel(None).0,
        });
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(follow(
            inner.clone(),
            state_machine,
            config.fetch_max_wait,
            stop_rx,
        ));
        Ok(MetadataObserver {
            inner,
            images,
            stop,
            task: Mutex::new(Some(task)),
        })
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.inner.node_id
    }

    /// The latest applied image (see [`ImageReader::image`]).
    pub fn image(&self) -> Arc<MetadataImage> {
        self.images.image()
    }

    /// A watch of the image's metadata offset (see [`ImageReader::subscribe`]).
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.images.subscribe()
    }

    /// Waits until the image has applied `offset`, at most `timeout`.
    pub async fn wait_for_offset(
        &self,
        offset: i64,
        timeout: Duration,
    ) -> Result<Arc<MetadataImage>> {
        self.images.wait_for_offset(offset, timeout).await
    }

    /// The active controller as the last FetchMetadata answer named it.
    pub fn controller_leader(&self) -> Option<NodeId> {
        *self.inner.leader.borrow()
    }

    /// Runs a controller request on the active controller (see the module docs).
    pub(crate) async fn request(&self, request: ControllerRequest) -> Result<Answered> {
        self.inner.request(request).await
    }

    /// Stops following and waits for the fetch task to end. Calling it again is harmless.
    pub async fn shutdown(&self) -> Result<()> {
        let _ = self.stop.send(true);
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
        Ok(())
    }
}

impl Drop for MetadataObserver {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Waits `d`, or less if stopped; `true` when stopped.
async fn sleep_or_stop(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    let stopped = tokio::select! {
        () = tokio::time::sleep(d) => false,
        r = stop.wait_for(|s| *s) => r.is_ok(),
    };
    stopped || *stop.borrow()
}

/// The fetch task (see the module docs).
async fn follow(
    inner: Arc<Inner>,
    mut state_machine: MetadataStateMachine,
    max_wait: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let voters: Vec<NodeId> = inner.voters.keys().copied().collect();
    let mut next_voter = 0usize;
    let mut backoff = BACKOFF_MIN;
    let mut target: Option<NodeId> = None;
    let mut announced_leader = None;
    loop {
        if *stop.borrow() {
            return;
        }
        let to = match target {
            Some(t) => t,
            None => {
                let t = voters[next_voter % voters.len()];
                next_voter += 1;
                t
            }
        };
        let after_offset = state_machine.offset();
        let request = ControllerRequest::FetchMetadata {
            after_offset,
            max_wait_ms: max_wait.as_millis() as u64,
            node_id: Some(inner.node_id),
        };
        let sent = Instant::now();
        // The voter holds the request up to `max_wait`; the answer gets the request timeout
        // on top (a snapshot may take a while).
        let answer = tokio::select! {
            a = inner.send(&inner.fetch_client, to, &request, max_wait + inner.request_timeout) => a,
            _ = stop.wait_for(|s| *s) => return,
        };
        let progressed = match answer {
            Ok(Answered {
                value: ControllerAnswer::FetchMetadata(MetadataFetch { leader, content }),
                offset,
            }) => match apply_fetched(&mut state_machine, content, offset) {
                Ok(progressed) => {
                    if leader != announced_leader {
                        tracing::info!(
                            node = inner.node_id,
                            leader = ?leader,
                            "active controller as the voters see it"
                        );
                        announced_leader = leader;
                    }
                    inner.leader.send_replace(leader);
                    // Fetch from the active controller when one is known (and configured).
                    target = leader.filter(|l| inner.voters.contains_key(l)).or(Some(to));
                    Some(progressed)
                }
                Err(e) => {
                    tracing::warn!(voter = to, "metadata from the voter not applied: {e}");
                    None
                }
            },
            Ok(other) => {
                tracing::warn!(voter = to, "unexpected answer to FetchMetadata: {other:?}");
                None
            }
            Err(e) => {
                tracing::debug!(voter = to, "FetchMetadata failed: {e}");
                None
            }
        };
        match progressed {
            Some(true) => backoff = BACKOFF_MIN,
            Some(false) => {
                // Nothing new: fine after a long poll, but an answer that came back early
                // (a voter stopping, or one that cannot wait) must not make this spin.
                if sent.elapsed() < max_wait / 2 && sleep_or_stop(backoff, &mut stop).await {
                    return;
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
            None => {
                // Another voter next time.
                target = None;
                if sleep_or_stop(backoff, &mut stop).await {
                    return;
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

/// Applies a FetchMetadata answer at `offset` to `state_machine`; whether the image moved.
/// Batches the image has are ignored; a snapshot is installed only when it is ahead of the
/// image. An error leaves the image as it was (a batch this build cannot read halts
/// applying, as on a voter).
pub(crate) fn apply_fetched(
    state_machine: &mut MetadataStateMachine,
    content: FetchedMetadata,
    offset: i64,
) -> std::result::Result<bool, String> {
    let before = state_machine.offset();
    match content {
        FetchedMetadata::Batches(batches) => {
            for batch in batches {
                if batch.offset <= state_machine.offset() {
                    continue;
                }
                let (Ok(index), Ok(term)) =
                    (u64::try_from(batch.offset), u64::try_from(batch.epoch))
                else {
                    return Err(format!(
                        "batch at offset {} epoch {} is out of range",
                        batch.offset, batch.epoch
                    ));
                };
                // A skipped batch is skipped here as on the voters; a halt shows in the
                // reader (`halted`) and stops the image.
                state_machine.apply(index, term, &batch.records.0);
                if let Some(reason) = state_machine.halted() {
                    return Err(reason);
                }
            }
        }
        FetchedMetadata::Snapshot(bytes) => {
            if offset <= before {
                return Ok(false);
            }
            let last_index = u64::try_from(offset).map_err(|_| "negative offset".to_owned())?;
            state_machine.install_snapshot(last_index, &bytes.0)?;
            tracing::info!(offset, "metadata image loaded from a voter's snapshot");
        }
    }
    Ok(state_machine.offset() > before)
}

impl Inner {
    /// Runs `request` on the active controller, retrying as the module docs say.
    async fn request(&self, request: ControllerRequest) -> Result<Answered> {
        let deadline = Instant::now() + self.request_timeout;
        let voters: Vec<NodeId> = self.voters.keys().copied().collect();
        let mut next_voter = 0usize;
        let mut hint: Option<NodeId> = None;
        let mut avoid: Option<NodeId> = None;
        let mut backoff = BACKOFF_MIN;
        let mut last = ControllerError::NotController { leader: None };
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(match last {
                    e @ ControllerError::NotController { .. } => e,
                    _ => ControllerError::Timeout(self.request_timeout),
                });
            }
            let known = hint
                .take()
                .or(*self.leader.borrow())
                .filter(|l| Some(*l) != avoid && self.voters.contains_key(l));
            let target = known.unwrap_or_else(|| {
                let v = voters[next_voter % voters.len()];
                next_voter += 1;
                v
            });
            match self.send(&self.client, target, &request, remaining).await {
                Ok(answer) => return Ok(answer),
                Err(e) => {
                    let retry = match &e {
                        ControllerError::NotController { leader } => {
                            hint = *leader;
                            avoid = None;
                            true
                        }
                        ControllerError::Quorum(QuorumError::Unreachable { .. }) => {
                            avoid = Some(target);
                            true
                        }
                        ControllerError::Stopped => {
                            avoid = Some(target);
                            true
                        }
                        _ => false,
                    };
                    if !retry {
                        return Err(e);
                    }
                    tracing::debug!(
                        node = self.node_id,
                        request = request.name(),
                        "controller request not answered, retrying: {e}"
                    );
                    last = e;
                }
            }
            let wait = backoff.min(deadline.saturating_duration_since(Instant::now()));
            tokio::time::sleep(wait).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// One attempt: `request` to voter `target`. Errors that mean "try again elsewhere"
    /// are `NotController`, `Stopped` (the voter is stopping) and `Unreachable`.
    async fn send(
        &self,
        client: &ControllerClient,
        target: NodeId,
        request: &ControllerRequest,
        timeout: Duration,
    ) -> Result<Answered> {
        let Some(addr) = self.voters.get(&target) else {
            return Err(ControllerError::NotController { leader: None });
        };
        let body = rpc::encode_request(request, timeout.as_millis() as u64)
            .map_err(|e| ControllerError::Quorum(QuorumError::Raft(e)))?;
        let bytes = match client.call(target, addr, &body, timeout).await {
            Ok(bytes) => bytes,
            // A voter of a build that does not know the request, or that failed to read it.
            Err(e @ QuorumError::Remote { .. }) => {
                tracing::debug!(voter = target, "controller request refused: {e}");
                return Err(ControllerError::Quorum(QuorumError::Unreachable {
                    node: target,
                    reason: e.to_string(),
                }));
            }
            Err(e) => return Err(e.into()),
        };
        match rpc::decode_answer(&bytes) {
            Ok(Ok(answered)) => Ok(answered),
            Ok(Err(WireError::Unavailable(_))) => Err(ControllerError::Stopped),
            Ok(Err(e)) => Err(e.into_error(target)),
            Err(message) => Err(ControllerError::Quorum(QuorumError::Remote {
                node: target,
                message: format!("undecodable answer: {message}"),
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_metadata::encode_batch;
    use sluice_metadata::records::{ClusterIdRecord, MetadataRecord, RemoveTopicRecord};
    use sluice_quorum::types::Payload;

    use crate::rpc::FetchedBatch;

    fn cluster_id(id: &str) -> Vec<u8> {
        encode_batch(&[MetadataRecord::ClusterId(ClusterIdRecord {
            cluster_id: id.into(),
        })])
        .unwrap()
    }

    fn batch(offset: i64, records: Vec<u8>) -> FetchedBatch {
        FetchedBatch {
            offset,
            epoch: 1,
            records: Payload(records),
        }
    }

    /// A voter's state machine with a window of `window` entries, `entries` applied (the
    /// cluster id at 1, then empty batches and one rejected batch at 3).
    fn voter(window: usize, entries: u64) -> (MetadataStateMachine, ImageReader) {
        let (mut sm, reader) = MetadataStateMachine::with_window(window);
        sm.apply(1, 1, &cluster_id("c1"));
        for index in 2..=entries {
            let payload = if index == 3 {
                encode_batch(&[MetadataRecord::RemoveTopic(RemoveTopicRecord {
                    topic_id: uuid::Uuid::new_v4(),
                })])
                .unwrap()
            } else {
                encode_batch(&[]).unwrap()
            };
            sm.apply(index, 1, &payload);
        }
        (sm, reader)
    }

    #[test]
    fn an_observer_follows_a_voter_by_batches_and_snapshots() {
        let (mut v, voter_reader) = voter(4, 3);
        let (mut observer, observer_reader) = MetadataStateMachine::with_window(0);

        // Nothing yet: a snapshot.
        let (content, offset) = voter_reader.fetch_after(-1, 1 << 20).unwrap();
        assert!(matches!(content, FetchedMetadata::Snapshot(_)));
        assert_eq!(offset, 3);
        assert!(apply_fetched(&mut observer, content, offset).unwrap());
        assert_eq!(*observer_reader.image(), *voter_reader.image());
        assert!(voter_reader.fetch_after(3, 1 << 20).is_none(), "up to date");

        // New entries: the batches, including one the voter skipped, skipped here too.
        for index in 4..=6 {
            v.apply(index, 2, &encode_batch(&[]).unwrap());
        }
        let (content, offset) = voter_reader.fetch_after(3, 1 << 20).unwrap();
        let FetchedMetadata::Batches(batches) = &content else {
            panic!("{content:?}")
        };
        assert_eq!(
            batches.iter().map(|b| b.offset).collect::<Vec<_>>(),
            vec![4, 5, 6]
        );
        assert_eq!(offset, 6);
        assert!(apply_fetched(&mut observer, content.clone(), offset).unwrap());
        assert_eq!(*observer_reader.image(), *voter_reader.image());
        // The same answer again changes nothing.
        assert!(!apply_fetched(&mut observer, content, offset).unwrap());

        // A byte limit cuts the list, never below one batch.
        let (content, offset) = voter_reader.fetch_after(3, 0).unwrap();
        let FetchedMetadata::Batches(batches) = content else {
            panic!()
        };
        assert_eq!((batches.len(), offset), (1, 4));

        // Fallen behind the window (4 entries: 3..=6 kept, base 2): a snapshot.
        let (content, _) = voter_reader.fetch_after(1, 1 << 20).unwrap();
        assert!(matches!(content, FetchedMetadata::Snapshot(_)));
        let (content, _) = voter_reader.fetch_after(2, 1 << 20).unwrap();
        let FetchedMetadata::Batches(batches) = content else {
            panic!()
        };
        assert_eq!(batches.len(), 4);
        // The skipped batch is in the window, so an observer from 2 skips it as well.
        let (mut other, other_reader) = MetadataStateMachine::with_window(0);
        other.apply(1, 1, &cluster_id("c1"));
        other.apply(2, 1, &encode_batch(&[]).unwrap());
        let (content, offset) = voter_reader.fetch_after(2, 1 << 20).unwrap();
        apply_fetched(&mut other, content, offset).unwrap();
        assert_eq!(*other_reader.image(), *voter_reader.image());
    }

    #[test]
    fn a_snapshot_installed_on_the_voter_resets_its_window() {
        let (mut v, reader) = voter(100, 5);
        let snapshot = v.snapshot();
        v.install_snapshot(5, &snapshot).unwrap();
        // Observers below the snapshot's offset can only get a snapshot now.
        assert!(matches!(
            reader.fetch_after(4, 1 << 20).unwrap().0,
            FetchedMetadata::Snapshot(_)
        ));
        v.apply(6, 1, &encode_batch(&[]).unwrap());
        assert!(matches!(
            reader.fetch_after(5, 1 << 20).unwrap().0,
            FetchedMetadata::Batches(b) if b.len() == 1
        ));
    }

    #[test]
    fn an_old_snapshot_or_bad_bytes_never_move_the_image_back() {
        let (_, reader) = voter(10, 4);
        let (mut observer, observer_reader) = MetadataStateMachine::with_window(0);
        let (snapshot, at) = reader.fetch_after(-1, 1 << 20).unwrap();
        apply_fetched(&mut observer, snapshot.clone(), at).unwrap();
        observer.apply(9, 2, &encode_batch(&[]).unwrap());
        // A snapshot at or below the image: ignored.
        assert!(!apply_fetched(&mut observer, snapshot, at).unwrap());
        assert_eq!(observer_reader.image().metadata_offset(), 9);
        // Garbage as a snapshot: an error, the image unchanged.
        let garbage = FetchedMetadata::Snapshot(Payload(b"\x01{garbage".to_vec()));
        assert!(apply_fetched(&mut observer, garbage, 20).is_err());
        assert_eq!(observer_reader.image().metadata_offset(), 9);
        // Out-of-range positions: an error.
        let bad = FetchedMetadata::Batches(vec![FetchedBatch {
            offset: 10,
            epoch: -1,
            records: Payload(encode_batch(&[]).unwrap()),
        }]);
        assert!(apply_fetched(&mut observer, bad, 10).is_err());
        // A batch this build cannot read halts applying, as on a voter.
        let unreadable = FetchedMetadata::Batches(vec![batch(10, b"\x02[]".to_vec())]);
        assert!(apply_fetched(&mut observer, unreadable, 10).is_err());
        assert_eq!(observer_reader.image().metadata_offset(), 9);
    }

    #[tokio::test]
    async fn a_fetch_waits_for_news_then_answers_nothing() {
        let (mut v, reader) = voter(10, 2);
        let started = Instant::now();
        let (content, offset) = reader
            .fetch_metadata(2, Duration::from_millis(100), 1 << 20)
            .await;
        assert!(started.elapsed() >= Duration::from_millis(100));
        assert_eq!((content, offset), (FetchedMetadata::Batches(Vec::new()), 2));
        // News during the wait answers at once.
        let waiter = {
            let reader = reader.clone();
            tokio::spawn(async move {
                reader
                    .fetch_metadata(2, Duration::from_secs(10), 1 << 20)
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        v.apply(3, 1, &encode_batch(&[]).unwrap());
        let (content, offset) = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("answered before its wait ran out")
            .unwrap();
        assert!(matches!(content, FetchedMetadata::Batches(b) if b.len() == 1));
        assert_eq!(offset, 3);
    }
}
