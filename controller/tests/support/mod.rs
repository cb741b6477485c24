//! Shared by the integration tests: controllers on 127.0.0.1 with free ports and temp dirs,
//! simulated brokers that register and heartbeat through a node that is not the active
//! controller (forwarded), and polling with deadlines.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use sluice_controller::{ControllerError, MetadataService, MetadataServiceConfig};
use sluice_metadata::controller::{BrokerHeartbeatRequest, BrokerRegistrationRequest};
use sluice_metadata::records::{Endpoint, SecurityProtocol};
use sluice_metadata::MetadataImage;
use sluice_quorum::QuorumConfig;
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub const WAIT: Duration = Duration::from_secs(20);

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Polls `cond` every 20 ms until it holds; fails the test after `timeout`.
pub async fn eventually<F: FnMut() -> bool>(timeout: Duration, what: &str, mut cond: F) {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The running services, by node id, as weak handles: a simulated broker never keeps a
/// stopped or dropped controller alive.
pub type Directory = Arc<Mutex<BTreeMap<u64, Weak<MetadataService>>>>;

/// A running node that is not the active controller (the first, by id), else any running
/// node.
pub fn follower_in(dir: &Directory) -> Option<Arc<MetadataService>> {
    let services: Vec<Arc<MetadataService>> = dir
        .lock()
        .unwrap()
        .values()
        .filter_map(Weak::upgrade)
        .collect();
    let follower = services.iter().find(|s| !s.is_active_controller()).cloned();
    follower.or_else(|| services.into_iter().next())
}

/// The active controller among `dir`, if one is active now.
pub fn active_in(dir: &Directory) -> Option<Arc<MetadataService>> {
    let services: Vec<Arc<MetadataService>> = dir
        .lock()
        .unwrap()
        .values()
        .filter_map(Weak::upgrade)
        .collect();
    services.into_iter().find(|s| s.is_active_controller())
}

pub struct Node {
    pub id: u64,
    pub addr: SocketAddr,
    pub dir: PathBuf,
    pub service: Option<Arc<MetadataService>>,
}

pub struct Cluster {
    pub tmp: TempDir,
    pub voters: BTreeMap<u64, SocketAddr>,
    pub nodes: BTreeMap<u64, Node>,
    pub directory: Directory,
    pub tune: fn(&mut MetadataServiceConfig),
}

impl Cluster {
    /// Binds one listener per voter on 127.0.0.1:0, then starts every node.
    pub async fn start(n: u64, tune: fn(&mut MetadataServiceConfig)) -> Cluster {
        Cluster::start_with_dirs(n, tune, |tmp, id| tmp.join(format!("node-{id}"))).await
    }

    /// [`Cluster::start`] with node `id`'s directory at `dir(the cluster's temp dir, id)`.
    pub async fn start_with_dirs(
        n: u64,
        tune: fn(&mut MetadataServiceConfig),
        dir: impl Fn(&std::path::Path, u64) -> PathBuf,
    ) -> Cluster {
        init_tracing();
        let tmp = tempfile::tempdir().unwrap();
        let mut listeners = BTreeMap::new();
        for id in 1..=n {
            listeners.insert(id, TcpListener::bind("127.0.0.1:0").await.unwrap());
        }
        let voters: BTreeMap<u64, SocketAddr> = listeners
            .iter()
            .map(|(id, l)| (*id, l.local_addr().unwrap()))
            .collect();
        let mut cluster = Cluster {
            voters: voters.clone(),
            nodes: BTreeMap::new(),
            directory: Directory::default(),
            tmp,
            tune,
        };
        for (id, listener) in listeners {
            let dir = dir(cluster.tmp.path(), id);
            cluster.nodes.insert(
                id,
                Node {
                    id,
                    addr: voters[&id],
                    dir,
                    service: None,
                },
            );
            cluster.boot(id, listener).await;
        }
        cluster
    }

    pub fn config(&self, id: u64) -> MetadataServiceConfig {
        let quorum = QuorumConfig::new(id, self.voters.clone(), &self.nodes[&id].dir);
        let mut config = MetadataServiceConfig::new(quorum);
        (self.tune)(&mut config);
        config
    }

    async fn boot(&mut self, id: u64, listener: TcpListener) {
        let service = Arc::new(MetadataService::start(self.config(id)).await.unwrap());
        service.serve(listener);
        self.directory
            .lock()
            .unwrap()
            .insert(id, Arc::downgrade(&service));
        self.nodes.get_mut(&id).unwrap().service = Some(service);
    }

    /// Restarts a stopped node from its directory, on its old port.
    pub async fn restart(&mut self, id: u64) {
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
        self.boot(id, listener).await;
    }

    /// Shuts a node down cleanly.
    pub async fn stop(&mut self, id: u64) {
        let service = self.take(id);
        service.shutdown().await.unwrap();
        assert_eq!(
            Arc::strong_count(&service),
            1,
            "the test holds the only handle"
        );
    }

    /// Drops a node's service without shutting it down (a controller that goes away).
    pub fn kill(&mut self, id: u64) {
        let service = self.take(id);
        assert_eq!(
            Arc::strong_count(&service),
            1,
            "the test holds the only handle"
        );
        drop(service);
    }

    fn take(&mut self, id: u64) -> Arc<MetadataService> {
        self.directory.lock().unwrap().remove(&id);
        self.nodes
            .get_mut(&id)
            .unwrap()
            .service
            .take()
            .expect("running")
    }

    pub fn svc(&self, id: u64) -> &Arc<MetadataService> {
        self.nodes[&id].service.as_ref().expect("running")
    }

    pub fn running(&self) -> impl Iterator<Item = &Arc<MetadataService>> {
        self.nodes.values().filter_map(|n| n.service.as_ref())
    }

    /// Waits until one running node is the active controller and every running node names
    /// it as the leader.
    pub async fn active(&self) -> u64 {
        let deadline = Instant::now() + WAIT;
        loop {
            let active: Vec<u64> = self
                .running()
                .filter(|s| s.is_active_controller())
                .map(|s| s.node_id())
                .collect();
            if let [leader] = active[..] {
                if self
                    .running()
                    .all(|s| s.controller_leader() == Some(leader))
                {
                    return leader;
                }
            }
            let leaders: Vec<_> = self.running().map(|s| s.controller_leader()).collect();
            assert!(
                Instant::now() < deadline,
                "no agreed active controller: active {active:?}, leaders {leaders:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until every running node's image is at the same offset, at or past `at_least`;
    /// returns each node's snapshot bytes of it.
    pub async fn converged(&self, at_least: i64) -> BTreeMap<u64, Vec<u8>> {
        let deadline = Instant::now() + WAIT;
        loop {
            let images: BTreeMap<u64, Arc<MetadataImage>> =
                self.running().map(|s| (s.node_id(), s.image())).collect();
            let offsets: Vec<i64> = images.values().map(|i| i.metadata_offset()).collect();
            if offsets[0] >= at_least && offsets.iter().all(|o| *o == offsets[0]) {
                return images
                    .into_iter()
                    .map(|(id, i)| (id, i.to_snapshot_bytes().unwrap()))
                    .collect();
            }
            assert!(
                Instant::now() < deadline,
                "images did not converge at or past {at_least}: {offsets:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// The image as JSON without its position: equal for equal metadata whatever entries (a
/// barrier) moved the offset since.
pub fn content(snapshot: &[u8]) -> serde_json::Value {
    let mut json: serde_json::Value = serde_json::from_slice(&snapshot[1..]).unwrap();
    json.as_object_mut().unwrap().remove("last_applied");
    json
}

/// A simulated broker: registers, then heartbeats every `interval` (unless paused), through
/// a node that is *not* the active controller when there is one (so every call is
/// forwarded, as a broker-only node's would be), reporting the active controller's image
/// offset as its own applied offset.
pub struct Broker {
    pub id: i32,
    pub epoch: i64,
    pub paused: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn registration(id: i32, cluster_id: &str) -> BrokerRegistrationRequest {
    BrokerRegistrationRequest {
        broker_id: id,
        cluster_id: cluster_id.to_owned(),
        incarnation_id: uuid::Uuid::new_v4(),
        previous_incarnation_id: None,
        endpoints: vec![Endpoint {
            listener: "PLAINTEXT".into(),
            host: "127.0.0.1".into(),
            port: 9092 + id as u16,
            security_protocol: SecurityProtocol::Plaintext,
        }],
        rack: None,
    }
}

pub fn heartbeat(id: i32, epoch: i64, offset: i64) -> BrokerHeartbeatRequest {
    BrokerHeartbeatRequest {
        broker_id: id,
        broker_epoch: epoch,
        current_metadata_offset: offset,
        want_fence: false,
        want_shut_down: false,
        storage_unavailable: false,
    }
}

impl Broker {
    /// Registers broker `id` through a follower (retrying while no controller is active),
    /// then starts its heartbeats.
    pub async fn start(directory: &Directory, id: i32, interval: Duration) -> Broker {
        let deadline = Instant::now() + WAIT;
        let epoch = loop {
            if let (Some(active), Some(via)) = (active_in(directory), follower_in(directory)) {
                let cluster_id = active.image().cluster_id().unwrap().to_owned();
                match via.register_broker(registration(id, &cluster_id)).await {
                    Ok(c) => break c.value,
                    Err(ControllerError::NotController { .. }) => {}
                    Err(e) => panic!("registering broker {id}: {e}"),
                }
            }
            assert!(Instant::now() < deadline, "broker {id} cannot register");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let paused = Arc::new(AtomicBool::new(false));
        let task = {
            let directory = directory.clone();
            let paused = paused.clone();
            tokio::spawn(async move {
                loop {
                    if !paused.load(Ordering::Acquire) {
                        let offset = active_in(&directory).map(|a| a.image().metadata_offset());
                        if let (Some(offset), Some(via)) = (offset, follower_in(&directory)) {
                            // Errors (a node that just stopped) are retried next round.
                            let _ = via.broker_heartbeat(heartbeat(id, epoch, offset)).await;
                        }
                    }
                    tokio::time::sleep(interval).await;
                }
            })
        };
        Broker {
            id,
            epoch,
            paused,
            task,
        }
    }
}
