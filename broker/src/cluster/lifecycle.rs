//! A broker's life in the cluster (KRaft's `BrokerLifecycleManager`): learn the cluster id,
//! register with the active controller, heartbeat every `broker.heartbeat.interval.ms`,
//! and follow what the answers say (fenced, unfenced). A broker the controller no longer
//! knows at this epoch (its session expired and it was unregistered, or the metadata was
//! restored) registers again with a new epoch.
//!
//! Registration of a restarted broker can be refused for up to `broker.session.timeout.ms`
//! with DUPLICATE_BROKER_REGISTRATION while its previous incarnation's session runs out,
//! as in Kafka; it is retried until it succeeds.
//!
//! The calls go to the active controller wherever it is (the metadata service forwards
//! them), so this task does not care which node leads the quorum.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_controller::ControllerError;
use sluice_metadata::controller::{BrokerHeartbeatRequest, BrokerRegistrationRequest};
use tokio::sync::watch;

use super::ClusterNode;
use crate::datadir;
use crate::state::BrokerState;

/// The first registration failures are expected (the quorum is electing its first
/// leader, a previous incarnation's session is running out); after this long they are
/// worth a warning.
const QUIET_REGISTRATION: Duration = Duration::from_secs(15);

/// Heartbeat period while fenced (Kafka's broker also heartbeats faster until unfenced).
const FENCED_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(100);

/// How often a stopping broker asks whether it may stop (it leads nothing any more once
/// the controller has applied its request, usually at the next ask).
const CONTROLLED_SHUTDOWN_POLL: Duration = Duration::from_millis(100);

/// Runs until shutdown.
pub async fn run(
    state: Arc<BrokerState>,
    node: Arc<ClusterNode>,
    mut shutdown: watch::Receiver<bool>,
) {
    let Some(cluster_id) = adopt_cluster_id(&state, &node, &mut shutdown).await else {
        return;
    };
    loop {
        let Some(epoch) = register(&node, &cluster_id, &mut shutdown).await else {
            return;
        };
        if !heartbeat_until_lost(&state, &node, epoch, &mut shutdown).await {
            controlled_shutdown(&node, epoch).await;
            return;
        }
        node.set_fenced(true);
        tracing::warn!(
            broker_epoch = epoch,
            "the controller no longer knows this registration; registering again"
        );
    }
}

/// Waits for the metadata log's cluster id and checks it against `meta.properties`: a data
/// directory that has not joined a cluster yet (new, or written by a single node) takes the
/// cluster's id and is marked `cluster.joined=true`; one that joined another cluster is
/// refused, as Kafka's INCONSISTENT_CLUSTER_ID. `None` at shutdown or on a mismatch (then
/// the broker never registers and stays fenced).
async fn adopt_cluster_id(
    state: &Arc<BrokerState>,
    node: &ClusterNode,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<String> {
    let mut offsets = node.service.subscribe();
    let cluster_id = loop {
        if let Some(id) = node.image().cluster_id() {
            break id.to_owned();
        }
        tokio::select! {
            changed = offsets.changed() => if changed.is_err() { return None },
            _ = shutdown.wait_for(|s| *s) => return None,
        }
    };
    if cluster_id == state.cluster_id && state.data_dir_joined {
        return Some(cluster_id);
    }
    if state.data_dir_joined {
        tracing::error!(
            cluster_id = %cluster_id,
            data_dir_cluster_id = %state.cluster_id,
            "this data directory belongs to another cluster (INCONSISTENT_CLUSTER_ID); \
             the broker will not register. Use an empty data directory to join this cluster."
        );
        return None;
    }
    let dir = state.config.data_dir.clone();
    let (node_id, id) = (node.node_id, cluster_id.clone());
    match tokio::task::spawn_blocking(move || datadir::write_meta(&dir, node_id, &id, true)).await {
        Ok(Ok(())) => {
            tracing::info!(cluster_id = %cluster_id, "this data directory joined the cluster");
            Some(cluster_id)
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot record the cluster id in meta.properties; not registering");
            None
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot record the cluster id in meta.properties; not registering");
            None
        }
    }
}

/// Registers until it succeeds; the broker epoch, or `None` at shutdown.
async fn register(
    node: &ClusterNode,
    cluster_id: &str,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<i64> {
    let started = Instant::now();
    let mut warned = false;
    loop {
        let request = BrokerRegistrationRequest {
            broker_id: node.node_id,
            cluster_id: cluster_id.to_owned(),
            incarnation_id: node.incarnation_id,
            previous_incarnation_id: node.previous_incarnation_id,
            endpoints: node.endpoints.clone(),
            rack: node.rack.clone(),
        };
        let outcome = tokio::select! {
            outcome = node.service.register_broker(request) => outcome,
            _ = shutdown.wait_for(|s| *s) => return None,
        };
        match outcome {
            Ok(committed) => {
                let epoch = committed.value;
                node.set_broker_epoch(epoch);
                tracing::info!(broker_epoch = epoch, "registered with the controller");
                return Some(epoch);
            }
            Err(e) => {
                if !warned && started.elapsed() > QUIET_REGISTRATION {
                    warned = true;
                    tracing::warn!(error = %e, "still cannot register with the controller; retrying");
                } else {
                    tracing::debug!(error = %e, "registration failed; retrying");
                }
            }
        }
        if sleep_or_shutdown(node.heartbeat_interval, shutdown).await {
            return None;
        }
    }
}

/// Heartbeats at `epoch` until the controller says the registration is gone (`true`) or
/// the broker shuts down (`false`).
async fn heartbeat_until_lost(
    state: &Arc<BrokerState>,
    node: &Arc<ClusterNode>,
    epoch: i64,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    // Held only to be dropped with this loop (see `AbortOnDrop`).
    let mut _adoption: Option<AbortOnDrop> = None;
    let mut failing_since: Option<Instant> = None;
    let mut warned = false;
    loop {
        let request = BrokerHeartbeatRequest {
            broker_id: node.node_id,
            broker_epoch: epoch,
            current_metadata_offset: node.image().metadata_offset(),
            want_fence: false,
            want_shut_down: false,
            // A full disk: the controller moves this broker's leaderships to replicas
            // that can still write (see `BrokerRegistration::storage_unavailable`).
            storage_unavailable: state.disk.is_below_floor_now(),
        };
        let outcome = tokio::select! {
            outcome = node.service.broker_heartbeat(request) => outcome,
            _ = shutdown.wait_for(|s| *s) => return false,
        };
        match outcome {
            Ok(committed) => {
                if failing_since.take().is_some() && std::mem::take(&mut warned) {
                    tracing::info!("heartbeats reach the controller again");
                }
                let fenced = committed.value.is_fenced;
                // Adopt a single-node data directory's topics once this broker may lead
                // them (see `upgrade`), in a task of its own: an attempt may take seconds,
                // and heartbeats must go on meanwhile or the broker is fenced.
                if !fenced
                    && node.upgrading
                    && !node.is_settled()
                    && !node.adopting.swap(true, Ordering::AcqRel)
                {
                    let (state, node) = (state.clone(), node.clone());
                    // Dropped with this loop: a stopping (or killed) broker adopts no more.
                    _adoption = Some(AbortOnDrop(tokio::spawn(async move {
                        if super::upgrade::adopt(&state, &node).await {
                            node.set_settled();
                        }
                        node.adopting.store(false, Ordering::Release);
                    })));
                }
                if fenced != node.is_fenced() {
                    node.set_fenced(fenced);
                    if fenced {
                        tracing::warn!(broker_epoch = epoch, "fenced by the controller");
                    } else {
                        tracing::info!(broker_epoch = epoch, "unfenced: serving as a live broker");
                    }
                }
            }
            Err(ControllerError::Request(e))
                if matches!(
                    e.kafka_error_name(),
                    "STALE_BROKER_EPOCH" | "BROKER_ID_NOT_REGISTERED"
                ) =>
            {
                return true;
            }
            Err(e) => {
                let since = *failing_since.get_or_insert_with(Instant::now);
                let failing = since.elapsed();
                // Once per outage: long enough that the controller has fenced this broker.
                if failing >= node.session_timeout && !warned {
                    warned = true;
                    tracing::warn!(error = %e, failing_ms = failing.as_millis() as u64, "heartbeats have not reached the controller for a session timeout: this broker is fenced");
                } else {
                    tracing::debug!(error = %e, failing_ms = failing.as_millis() as u64, "heartbeat failed");
                }
            }
        }
        // While fenced (catching up after registering), ask again soon: unfencing waits
        // for the next heartbeat, and a full interval would delay it for nothing.
        let pause = if node.is_fenced() {
            node.heartbeat_interval.min(FENCED_HEARTBEAT_INTERVAL)
        } else {
            node.heartbeat_interval
        };
        if sleep_or_shutdown(pause, shutdown).await {
            return false;
        }
    }
}

/// Kafka's controlled shutdown: tells the controller this broker is stopping and waits
/// until the controller says it may stop (`should_shut_down`): by then every partition
/// it led has moved to another usable in-sync replica (or has no leader when none is
/// left), it is out of every ISR where it was not the last member, and the other active
/// brokers have applied those moves, so clients find the new leaders at once. It is then
/// fenced, and its next start may register at once. Bounded, as Kafka's broker: it stops
/// anyway after `broker.session.timeout.ms` (the controller then fences it when its
/// session expires), or at once when no controller is reachable.
async fn controlled_shutdown(node: &ClusterNode, epoch: i64) {
    if node.service.controller_leader().is_none() {
        // No quorum to tell (the whole cluster is stopping, or a majority is gone).
        tracing::info!("no active controller: stopping without a controlled shutdown");
        return;
    }
    let timeout = node.session_timeout;
    let deadline = Instant::now() + timeout;
    tracing::info!("controlled shutdown: asking the controller to move this broker's leaderships");
    while Instant::now() < deadline {
        if node.service.controller_leader().is_none() {
            tracing::info!(
                "the controller is gone: stopping without finishing the controlled shutdown"
            );
            return;
        }
        let request = BrokerHeartbeatRequest {
            broker_id: node.node_id,
            broker_epoch: epoch,
            current_metadata_offset: node.image().metadata_offset(),
            want_fence: false,
            want_shut_down: true,
            storage_unavailable: false,
        };
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, node.service.broker_heartbeat(request)).await {
            Ok(Ok(committed)) if committed.value.should_shut_down => {
                node.set_fenced(true);
                tracing::info!(broker_epoch = epoch, "controlled shutdown complete");
                return;
            }
            Ok(Ok(_)) => {}
            Ok(Err(ControllerError::Request(e)))
                if matches!(
                    e.kafka_error_name(),
                    "STALE_BROKER_EPOCH" | "BROKER_ID_NOT_REGISTERED"
                ) =>
            {
                // This registration is gone already: it leads nothing.
                tracing::info!(error = %e, "controlled shutdown: this registration is gone");
                return;
            }
            Ok(Err(e)) => tracing::debug!(error = %e, "controlled shutdown heartbeat failed"),
            Err(_) => break,
        }
        tokio::time::sleep(CONTROLLED_SHUTDOWN_POLL.min(left)).await;
    }
    tracing::warn!(
        "controlled shutdown did not finish in {timeout:?} (broker.session.timeout.ms); stopping \
         anyway (the controller fences this broker when its session expires)"
    );
}

/// A task aborted when this is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Sleeps `d`; `true` if the broker began to shut down meanwhile.
async fn sleep_or_shutdown(d: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    let stopping = tokio::select! {
        () = tokio::time::sleep(d) => false,
        _ = shutdown.wait_for(|s| *s) => true,
    };
    stopping || *shutdown.borrow()
}
