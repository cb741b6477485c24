//! `sluice-broker`: the network server that speaks the Kafka protocol over `sluice-storage`.
//!
//! - [`server`]: listener, connection tasks, framing, dispatch, zero-copy response
//!   writing, connection limits.
//! - [`handlers`]: one module per API family (api_versions, metadata, produce, fetch,
//!   offsets, admin), plain functions of the broker state and a decoded request, unit
//!   tested without sockets. Waits (acks=all, long polls) come back as values for the
//!   connection to await.
//! - [`topics`]: the topic registry (names, ids, partitions, configs) and its files.
//! - [`topic_config`]: the topic configs Sluice understands and their mapping to storage.
//! - [`config`]: broker configuration with Kafka's property names (TOML, env, flags).
//! - [`disk_space`]: the free-space floor below which Produce is refused
//!   (`log.dir.min.free.bytes`).
//! - [`datadir`]: the data directory lock, `meta.properties`, `partition.metadata`.
//! - [`limits`]: the open-file limit (raised at start by the binary) and the partition
//!   limit derived from it and from `vm.max_map_count` (or `max.broker.partitions`).
//! - [`producer_ids`]: producer ids for InitProducerId, persisted in blocks so that none
//!   is handed out twice across restarts and crashes.
//! - [`retention`]: the background retention and segment-roll task.
//! - [`cleaner`]: the log cleaner's scheduling (compacted topics).
//! - [`coordinator`]: the consumer-group coordinator, a sans-IO state machine; [`groups`]
//!   drives it: `__consumer_offsets` creation and replay, appends, timers, parked replies.
//! - [`errors`]: [`BrokerError`] and the one mapping from storage errors to Kafka codes.
//! - [`metrics`]: what the broker counts (requests, traffic, connections, storage,
//!   group lag) and its Prometheus export; [`admin`]: the HTTP admin listener that
//!   serves it with health, readiness, status and the dashboard.
//! - [`alloc`]: the global allocator that keeps a hostile array length from aborting
//!   the process (installed by the binary).
//!
//! [`Broker::start`] opens the data directory (recovering logs after an unclean stop:
//! one warning per partition whose tail was cut, then one line with the partition count,
//! the time taken and whether the last shutdown was clean), binds the listener and
//! serves until [`BrokerHandle::shutdown`], which stops accepting, answers what was
//! already read, closes every log and writes the clean-shutdown marker.

pub mod admin;
pub mod alloc;
pub mod cleaner;
pub mod cluster;
pub mod config;
pub mod coordinator;
pub mod datadir;
pub mod disk_space;
pub mod dynamic_config;
pub mod errors;
pub mod fetch_session;
pub mod group_configs;
pub mod groups;
pub mod handlers;
pub mod limits;
pub mod loggers;
pub mod metrics;
pub mod producer_ids;
pub mod quotas;
pub mod replication;
pub mod retention;
pub mod security;
pub mod server;
pub mod state;
pub mod topic_config;
pub mod topics;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sluice_storage::{fsutil, Flusher};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub use config::BrokerConfig;
pub use errors::BrokerError;
use producer_ids::ProducerIdAllocator;
use state::BrokerState;
use topics::TopicRegistry;

/// How long shutdown waits for connections to finish their queued replies before
/// dropping them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// The broker; see the crate docs.
pub struct Broker;

/// Aborts its task when dropped (the admin listener stops with its broker, or with a
/// start that failed).
struct AbortOnDrop(JoinHandle<()>);

impl AbortOnDrop {
    /// Aborts the task and waits until it is gone (its sockets closed).
    async fn stop(mut self) {
        self.0.abort();
        let _ = (&mut self.0).await;
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What opening the data directory produced (see [`Broker::start`]).
struct Opened {
    lock: datadir::DataDirLock,
    meta: datadir::MetaProperties,
    registry: TopicRegistry,
    report: topics::LoadReport,
    clean: bool,
    producer_ids: ProducerIdAllocator,
    next_producer_id: i64,
    security: security::Security,
}

/// A running broker.
pub struct BrokerHandle {
    local_addr: SocketAddr,
    /// The admin listener's address, when it runs.
    admin_addr: Option<SocketAddr>,
    /// The admin listener's task: it answers until the broker has stopped.
    admin: Option<AbortOnDrop>,
    state: Arc<BrokerState>,
    shutdown: watch::Sender<bool>,
    kill: watch::Sender<bool>,
    supervisor: Option<JoinHandle<Result<(), BrokerError>>>,
}

/// The partition limit for this run (see `limits`), logged with what it comes from, and
/// `max.connections` lowered to what the descriptors left beside the partitions allow.
/// A data directory already past the limit still loads (a lowered `ulimit -n` must not
/// keep the broker from starting); only new partitions are refused.
fn apply_open_file_limits(
    config: &mut BrokerConfig,
    registry: &TopicRegistry,
) -> limits::PartitionLimit {
    let (open_files, hard) = match limits::open_file_limit() {
        Ok(limit) => limit,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read RLIMIT_NOFILE; assuming 1024");
            (1024, 1024)
        }
    };
    let max_map_count = limits::max_map_count();
    let limit =
        limits::PartitionLimit::compute(config.max_broker_partitions, open_files, max_map_count);
    let partitions = registry.partition_total();
    tracing::info!(
        max_partitions = limit.max,
        source = %limit.source,
        partitions,
        open_files_soft = open_files,
        open_files_hard = hard,
        vm_max_map_count = ?max_map_count,
        "partition limit"
    );
    if partitions > limit.max {
        tracing::warn!(
            partitions,
            max_partitions = limit.max,
            source = %limit.source,
            "the data directory holds more partitions than the limit; no more can be created"
        );
    }
    if let Some(max_maps) = max_map_count {
        // Every segment keeps about three mappings (see `limits`); mmap fails with ENOMEM
        // past vm.max_map_count, which takes the partition that needed one offline.
        let segments: usize = registry
            .list()
            .iter()
            .map(|t| {
                t.partitions()
                    .iter()
                    .map(|p| p.log.segment_count())
                    .sum::<usize>()
            })
            .sum();
        let mappings = segments as u64 * 3;
        if mappings > max_maps / 10 * 8 {
            tracing::warn!(
                segments,
                vm_max_map_count = max_maps,
                "the segments need about {mappings} memory mappings, close to vm.max_map_count; \
                 raise it (sysctl vm.max_map_count) or reduce segments (larger segment.bytes, \
                 shorter retention)"
            );
        }
    }
    let connections = limits::connection_cap(open_files, limit.max.max(partitions));
    if connections < config.max_connections {
        let message = format!(
            "max.connections lowered to {connections}: the open-file limit of {open_files} \
             leaves no more beside {} partitions",
            limit.max.max(partitions)
        );
        // Only a value the operator chose is worth a warning; the default is just big.
        if config.explicit.contains_key("max.connections") {
            tracing::warn!(configured = config.max_connections, "{message}");
        } else {
            tracing::info!(default = config.max_connections, "{message}");
        }
        config.max_connections = connections;
    }
    config.max_broker_partitions = Some(limit.max);
    limit
}

impl Broker {
    /// Opens the data directory, binds the listener and starts serving.
    pub async fn start(config: BrokerConfig) -> Result<BrokerHandle, BrokerError> {
        let started = std::time::Instant::now();
        // First, so that health and readiness can be watched through a long recovery.
        let lifecycle = Arc::new(admin::Lifecycle::default());
        let admin_shared = Arc::new(admin::Shared::new(lifecycle.clone()));
        let mut admin_addr = None;
        let admin_task = match &config.observability.admin_listener {
            Some(address) => {
                let explicit = config.observability.admin_listener_explicit;
                match admin::bind(address, explicit).await.map_err(|e| {
                    BrokerError::io(format!("listen on {address} (admin.listeners)"), e)
                })? {
                    Some(listener) => {
                        admin_addr = admin::local_addr(&listener);
                        Some(AbortOnDrop(tokio::spawn(admin::serve(
                            listener,
                            admin_shared.clone(),
                        ))))
                    }
                    None => None,
                }
            }
            None => None,
        };
        // Before the data directory is touched: a cluster configuration this build cannot
        // run yet is refused whole ("cluster mode is not wired yet").
        let served = config.cluster.served_listeners()?;
        let client_listeners: Vec<config::Listener> =
            served.clients.iter().map(|l| (*l).clone()).collect();
        let controller_listener = served.controller.cloned();
        // Every node runs the cluster layer; a single node is a cluster of one. Only tests
        // run the single-node broker of earlier releases (see `legacy_single_node`).
        let is_cluster = !config.legacy_single_node;
        let layout = if is_cluster {
            topics::Layout::Replicas
        } else {
            topics::Layout::WholeTopics
        };
        let open_config = config.clone();
        let opened = tokio::task::spawn_blocking(move || {
            let config = open_config;
            let lock = datadir::lock(&config.data_dir)?;
            let meta = datadir::load_or_init_meta(&config.data_dir, config.node_id)?;
            // Read now so that a damaged file stops the start instead of the first
            // idempotent producer.
            let producer_ids = ProducerIdAllocator::new(&config.data_dir);
            let next_producer_id = producer_ids.load()?;
            // Before the clean-shutdown marker is taken: a damaged credentials file stops
            // the start and leaves the directory as it was.
            let security = security::Security::open(&config.data_dir, &config.security)?;
            let clean = fsutil::take_clean_shutdown_marker(&config.data_dir)?;
            let flusher = Flusher::start("data")
                .map_err(|e| BrokerError::io("start the flusher thread", e))?;
            let (registry, report) = TopicRegistry::load(
                &config.data_dir,
                flusher,
                config.topic_defaults.clone(),
                config.flush_mode,
                clean,
                layout,
            )
            .map_err(BrokerError::explain_out_of_files)?;
            Ok::<_, BrokerError>(Opened {
                lock,
                meta,
                registry,
                report,
                clean,
                producer_ids,
                next_producer_id,
                security,
            })
        })
        .await
        .map_err(|e| BrokerError::io("open the data directory", std::io::Error::other(e)))??;
        let Opened {
            lock,
            meta,
            registry,
            report,
            clean,
            producer_ids,
            next_producer_id,
            security,
        } = opened;
        // One line per truncated partition was logged by the registry; this one sums up.
        let shutdown_kind = if meta.fresh {
            "new data directory"
        } else if clean {
            "clean shutdown"
        } else {
            "unclean shutdown"
        };
        let elapsed_ms = report.elapsed.as_millis() as u64;
        tracing::info!(
            data_dir = %config.data_dir.display(),
            topics = report.topics,
            partitions = report.partitions,
            segments_recovered = report.segments_recovered,
            partitions_truncated = report.truncated.len(),
            bytes_truncated = report.truncated.iter().map(|t| t.2).sum::<u64>(),
            partitions_offline = report.offline.len(),
            damaged_ranges = report.damaged.len(),
            next_producer_id,
            "recovered {} partitions in {elapsed_ms} ms ({shutdown_kind})",
            report.partitions,
        );

        let mut config = config;
        let partition_limit = apply_open_file_limits(&mut config, &registry);

        // A controller-only node has no client listener: nothing below serves clients.
        let mut bound = Vec::with_capacity(client_listeners.len());
        for client in &client_listeners {
            let bind = client.bind_address();
            let socket = TcpListener::bind(&bind)
                .await
                .map_err(|e| BrokerError::io(format!("listen on {bind} ({})", client.name), e))?;
            let local_addr = socket
                .local_addr()
                .map_err(|e| BrokerError::io("read the bound address", e))?;
            let (advertised_host, advertised_port) =
                match config.cluster.advertised_listener(&client.name) {
                    Some(a) => (a.host.clone(), a.port),
                    None if local_addr.ip().is_unspecified() => {
                        ("localhost".to_owned(), local_addr.port())
                    }
                    None => (local_addr.ip().to_string(), local_addr.port()),
                };
            let tls = match config.security.tls.get(&client.name) {
                Some(settings) => Some(Arc::new(security::tls::TlsContext::load(
                    &client.name,
                    settings,
                )?)),
                None => None,
            };
            if !local_addr.ip().is_loopback()
                && client.security_protocol == config::SecurityProtocol::Plaintext
            {
                tracing::warn!(
                    listener = %client.name,
                    address = %local_addr,
                    "listening beyond this machine without authentication or encryption: anyone \
                     who reaches this port can read, write and delete every topic (use SASL_SSL; \
                     see docs/security.md)"
                );
            }
            let listener = Arc::new(security::ClientListener {
                name: client.name.clone(),
                protocol: client.security_protocol,
                tls,
                mechanisms: config
                    .security
                    .sasl_mechanisms
                    .get(&client.name)
                    .cloned()
                    .unwrap_or_default(),
                local_addr,
                advertised_host,
                advertised_port: i32::from(advertised_port),
                stats: Default::default(),
            });
            bound.push((socket, listener));
        }
        let client_addr = bound.first().map(|(_, l)| l.local_addr);
        if !config.cluster.single_node() && bound.iter().any(|(_, l)| l.uses_sasl()) {
            tracing::warn!(
                "SCRAM users are kept per broker for now: a user created through one broker \
                 logs in only there; create it on every broker (see docs/security.md)"
            );
        }
        if !config.cluster.single_node() && config.security.authorizer {
            tracing::warn!(
                "ACLs are kept per broker for now: an ACL created through one broker applies \
                 only there; create it on every broker, and allow the brokers' ClusterAction \
                 (see docs/security.md)"
            );
        }
        // The listener other brokers use (and the one the cluster layer registers first):
        // the inter-broker listener when it is a client listener, else the first.
        let primary = bound
            .iter()
            .map(|(_, l)| l)
            .find(|l| l.name == config.cluster.inter_broker_listener_name)
            .or_else(|| bound.first().map(|(_, l)| l))
            .cloned();
        let client_name = primary.as_ref().map_or(String::new(), |l| l.name.clone());
        let (advertised_host, advertised_port) = primary.as_ref().map_or((String::new(), 0), |l| {
            (
                l.advertised_host.clone(),
                u16::try_from(l.advertised_port).unwrap_or(0),
            )
        });
        let listeners: Vec<Arc<security::ClientListener>> =
            bound.iter().map(|(_, l)| l.clone()).collect();
        registry.set_partition_limit(partition_limit);
        let mut controller_addr = None;
        let cluster = if !is_cluster {
            None
        } else {
            let upgrading = if config.cluster.is_broker() {
                let (dir, has_topics, joined) = (
                    config.data_dir.clone(),
                    !registry.list().is_empty(),
                    meta.joined,
                );
                tokio::task::spawn_blocking(move || {
                    cluster::upgrade::begin(&dir, has_topics, joined)
                })
                .await
                .map_err(|e| BrokerError::Cluster(e.to_string()))??
            } else {
                false
            };
            let controller = match &controller_listener {
                Some(controller) => {
                    let bind = controller.bind_address();
                    let bound = TcpListener::bind(&bind).await.map_err(|e| {
                        BrokerError::io(format!("listen on {bind} (controller listener)"), e)
                    })?;
                    controller_addr = Some(bound.local_addr().map_err(|e| {
                        BrokerError::io("read the controller listener's address", e)
                    })?);
                    Some(bound)
                }
                None => None,
            };
            let node = cluster::ClusterNode::start(
                &config,
                controller,
                &client_name,
                &listeners,
                // Kept as the cluster's if this node writes the first metadata: a single
                // node's id survives its upgrade (and a new single node's start).
                Some(meta.cluster_id.as_str()),
                upgrading,
            )
            .await?;
            match controller_addr {
                _ if config.cluster.single_node() => {
                    tracing::info!("metadata quorum started (a single node: the sole voter)")
                }
                Some(addr) => tracing::info!(
                    roles = %config.cluster.roles,
                    controller_listener = %addr,
                    voters = %config.cluster.voters_text(),
                    "metadata quorum started"
                ),
                None => tracing::info!(
                    roles = %config.cluster.roles,
                    voters = %config.cluster.voters_text(),
                    "following the metadata quorum (broker-only: fetching from the voters)"
                ),
            }
            Some(Arc::new(node))
        };
        // The address this node listens on: its client listener, or on a controller-only
        // node its controller listener.
        let local_addr = client_addr.or(controller_addr).ok_or_else(|| {
            BrokerError::Cluster("this node serves no listener at all".to_owned())
        })?;
        let state = Arc::new(BrokerState {
            cluster,
            data_dir_joined: meta.joined,
            node_id: meta.node_id,
            cluster_id: meta.cluster_id,
            advertised_host,
            advertised_port: i32::from(advertised_port),
            listeners,
            security: Arc::new(security),
            topics: registry,
            producer_ids,
            groups: groups::Groups::new(config.group_coordinator.clone()),
            limits: Arc::new(server::limits::Limits::new(&config)),
            disk: disk_space::DiskSpace::new(&config.data_dir, config.min_free_bytes),
            fetch_sessions: fetch_session::FetchSessions::from_config(&config),
            quotas: quotas::Quotas::open(&config).map_err(BrokerError::Quotas)?,
            cleaner: cleaner::LogCleaner::new(&config.cleaner),
            dynamic: if is_cluster {
                dynamic_config::DynamicBrokerConfigs::in_metadata()
            } else {
                dynamic_config::DynamicBrokerConfigs::open_file(&config.data_dir)?
            },
            group_configs: if is_cluster {
                None
            } else {
                Some(
                    group_configs::GroupConfigStore::open(&config.data_dir)
                        .map_err(BrokerError::GroupConfigs)?,
                )
            },
            _lock: Some(lock),
            metrics: Default::default(),
            lifecycle,
            config,
        });
        admin_shared.set_state(&state);
        if state.dynamic.is_local() && state.dynamic.layers() != Default::default() {
            // A cluster node takes them from the metadata (see `cluster::reconcile`).
            let applying = state.clone();
            tokio::task::spawn_blocking(move || dynamic_config::apply(&applying))
                .await
                .map_err(|e| {
                    BrokerError::io("apply dynamic broker configs", std::io::Error::other(e))
                })?;
        }
        if state.cluster.is_some() {
            // Set before the supervisor starts (which moves it on to serving), so that
            // from the moment this returns readiness says what the broker waits for.
            state.lifecycle.set(admin::Phase::CatchingUp);
        }
        // Before any connection is accepted, so no client auto-creates it differently. A
        // cluster broker prepares it once the metadata places it (see `cluster::groups`).
        if state.cluster.is_none() {
            groups::prepare(&state).await?;
        }
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let (kill_tx, kill_rx) = watch::channel(false);
        let (serving_tx, mut serving) = watch::channel(false);
        let supervisor = tokio::spawn(supervise(
            bound,
            state.clone(),
            shutdown_rx,
            kill_rx,
            kill_tx.clone(),
            serving_tx,
        ));
        if state.config.cluster.single_node() {
            // A cluster of one needs no peer to get ready: return once it serves, so the
            // caller finds its topics, configs and group coordinator as they will be.
            // (Members of a larger cluster start together and get ready together.)
            if tokio::time::timeout(READY_TIMEOUT, serving.wait_for(|s| *s))
                .await
                .is_err()
            {
                tracing::warn!("not serving clients yet; start goes on");
            }
        }
        if state.config.cluster.is_broker() {
            tracing::info!(
                node_id = state.node_id,
                cluster_id = %state.cluster_id,
                %local_addr,
                advertised = %format!("{}:{}", state.advertised_host, state.advertised_port),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "broker started"
            );
        } else {
            tracing::info!(
                node_id = state.node_id,
                controller_listener = %local_addr,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "controller started (controller-only: no client listener)"
            );
        }
        Ok(BrokerHandle {
            local_addr,
            admin_addr,
            state,
            shutdown: shutdown_tx,
            kill: kill_tx,
            supervisor: Some(supervisor),
            admin: admin_task,
        })
    }
}

/// How long a starting broker waits for its local replicas and, on a single node, its
/// group coordinator before it serves clients anyway (they then retry).
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// After the first unfencing: waits until the local replicas match the metadata (so the
/// first requests find their partitions and configs), and on a single node until the
/// group coordinator runs (a single node creates `__consumer_offsets` at start, so
/// clients need no retries). `false` if shutdown began first.
async fn ready_to_serve(
    state: &BrokerState,
    node: &cluster::ClusterNode,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    let ready = async {
        let offset = node.image().last_applied().map_or(-1, |p| p.offset);
        if let Err(e) = node.wait_applied(offset).await {
            tracing::warn!(error = %e, "serving clients before the local replicas are ready");
        }
        if state.config.cluster.single_node() {
            let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
            // Every partition of `__consumer_offsets` loaded (a cluster of one leads all).
            let serving = || async {
                let loaded = state.groups.loaded_partitions().await.len();
                node.image()
                    .topic(coordinator::store::OFFSETS_TOPIC)
                    .is_some_and(|t| t.partitions.len() == loaded)
            };
            while !serving().await {
                if tokio::time::Instant::now() >= deadline {
                    tracing::warn!("serving clients before the group coordinator is ready");
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    tokio::select! {
        () = ready => true,
        _ = shutdown.wait_for(|s| *s) => false,
    }
}

/// Margin over `broker.session.timeout.ms` (which bounds the controlled shutdown itself)
/// before the rest of the broker stops without waiting for the lifecycle task any longer.
const CONTROLLED_SHUTDOWN_MARGIN: Duration = Duration::from_secs(5);

/// The first step of an orderly stop: waits for `shutdown`, lets the lifecycle task finish
/// (its controlled shutdown, bounded by the session timeout; a node without one finishes at
/// once), then tells every other task to stop through `stop`.
async fn sequence_shutdown(
    mut shutdown: watch::Receiver<bool>,
    lifecycle: Option<JoinHandle<()>>,
    stop: watch::Sender<bool>,
    session_timeout: Option<Duration>,
) {
    let _ = shutdown.wait_for(|s| *s).await;
    if let Some(mut lifecycle) = lifecycle {
        let bound = session_timeout.unwrap_or_default() + CONTROLLED_SHUTDOWN_MARGIN;
        match tokio::time::timeout(bound, &mut lifecycle).await {
            Ok(Err(e)) => tracing::error!(error = %e, "cluster lifecycle task failed"),
            Ok(Ok(())) => {}
            Err(_) => {
                tracing::warn!("the controlled shutdown did not end in {bound:?}; stopping anyway");
                lifecycle.abort();
            }
        }
    }
    stop.send_replace(true);
}

/// Serves until shutdown, then stops everything in order (see [`BrokerHandle::shutdown`]).
async fn supervise(
    listeners: Vec<(TcpListener, Arc<security::ClientListener>)>,
    state: Arc<BrokerState>,
    shutdown: watch::Receiver<bool>,
    mut kill: watch::Receiver<bool>,
    kill_tx: watch::Sender<bool>,
    serving: watch::Sender<bool>,
) -> Result<(), BrokerError> {
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    // Shutdown goes in two steps, in Kafka's order: `shutdown` reaches the lifecycle task
    // first, whose controlled shutdown moves this broker's leaderships away while
    // everything else still serves (clients and followers keep fetching, so the new
    // leaders are in sync and known before this broker stops answering); `stop` then
    // stops the rest (see `sequence_shutdown`).
    let (stop_tx, stop) = watch::channel(false);
    let retention = tokio::spawn(retention::run(state.clone(), stop.clone()));
    let log_cleaner = tokio::spawn(cleaner::run(state.clone(), stop.clone()));
    let groups = tokio::spawn(groups::run(state.clone(), stop.clone()));
    // Aborted at the end: it only samples committed offsets for the consume rates.
    let _rate_sampler = AbortOnDrop(tokio::spawn(metrics::groups::run(
        state.clone(),
        stop.clone(),
    )));
    let lifecycle: Option<JoinHandle<()>> = match &state.cluster {
        Some(node) if node.is_broker => Some(tokio::spawn(cluster::lifecycle::run(
            state.clone(),
            node.clone(),
            shutdown.clone(),
        ))),
        _ => None,
    };
    let lifecycle_abort = lifecycle.as_ref().map(JoinHandle::abort_handle);
    let sequencer = tokio::spawn(sequence_shutdown(
        shutdown.clone(),
        lifecycle,
        stop_tx,
        state.cluster.as_ref().map(|n| n.session_timeout),
    ));
    let shutdown = stop;
    let cluster_tasks: Vec<JoinHandle<()>> = match &state.cluster {
        // A controller-only node registers nothing, hosts nothing, coordinates no group.
        Some(node) if !node.is_broker => Vec::new(),
        None => Vec::new(),
        Some(node) => vec![
            tokio::spawn(cluster::reconcile::run(
                state.clone(),
                node.clone(),
                shutdown.clone(),
            )),
            tokio::spawn(cluster::groups::run(
                state.clone(),
                node.clone(),
                shutdown.clone(),
            )),
            tokio::spawn(replication::leader::run(
                state.clone(),
                node.clone(),
                shutdown.clone(),
            )),
            tokio::spawn(replication::fetcher::run(
                state.clone(),
                node.clone(),
                shutdown.clone(),
            )),
        ],
    };
    let accept = {
        let (state, mut shutdown_rx, kill) = (state.clone(), shutdown.clone(), kill.clone());
        async move {
            if listeners.is_empty() {
                // A controller-only node: no clients; it runs until shut down (and is ready
                // as soon as its quorum member runs, which it does by now).
                state.lifecycle.set(admin::Phase::Serving);
                drop(done_tx);
                let _ = shutdown_rx.wait_for(|s| *s).await;
                return;
            }
            // Before the wait for the cluster, so that SIGHUP (a certificate reload) does
            // not end the process meanwhile; it stops by itself at shutdown.
            let reloader = tokio::spawn(server::reload_certificates(
                listeners
                    .iter()
                    .filter_map(|(_, l)| l.tls.clone())
                    .collect(),
                shutdown_rx.clone(),
            ));
            if let Some(node) = &state.cluster {
                state.lifecycle.set(admin::Phase::CatchingUp);
                tracing::info!(
                    "waiting to catch up with the cluster's metadata before serving clients"
                );
                if !node.wait_caught_up(&mut shutdown_rx).await {
                    return;
                }
                if !ready_to_serve(&state, node, &mut shutdown_rx).await {
                    return;
                }
                tracing::info!("caught up with the cluster's metadata: serving clients");
            }
            state.lifecycle.set(admin::Phase::Serving);
            serving.send_replace(true);
            let mut loops = tokio::task::JoinSet::new();
            for (socket, listener) in listeners {
                loops.spawn(server::accept_loop(
                    socket,
                    listener,
                    state.clone(),
                    shutdown_rx.clone(),
                    kill.clone(),
                    done_tx.clone(),
                ));
            }
            drop(done_tx);
            while loops.join_next().await.is_some() {}
            reloader.abort();
        }
    };
    tokio::select! {
        () = accept => {}
        _ = kill.wait_for(|k| *k) => {}
    }
    if *kill.borrow() {
        // A simulated crash: stop without closing logs or writing the marker.
        sequencer.abort();
        let _ = sequencer.await;
        if let Some(lifecycle) = lifecycle_abort {
            lifecycle.abort();
        }
        retention.abort();
        let _ = retention.await;
        log_cleaner.abort();
        let _ = log_cleaner.await;
        groups.abort();
        let _ = groups.await;
        for task in cluster_tasks {
            task.abort();
            let _ = task.await;
        }
        if let Some(node) = &state.cluster {
            // Stops Raft without a goodbye (it writes nothing more), as a crash would.
            let _ = node.service.shutdown().await;
        }
        while done_rx.recv().await.is_some() {}
        return Ok(());
    }
    tracing::info!("shutting down: answering requests already read");
    if tokio::time::timeout(SHUTDOWN_GRACE, async {
        while done_rx.recv().await.is_some() {}
    })
    .await
    .is_err()
    {
        tracing::warn!("connections still busy after {SHUTDOWN_GRACE:?}; dropping them");
        let _ = kill_tx.send(true);
        while done_rx.recv().await.is_some() {}
    }
    if let Err(e) = sequencer.await {
        tracing::error!(error = %e, "the shutdown sequence failed");
    }
    if let Err(e) = retention.await {
        tracing::error!(error = %e, "retention task failed");
    }
    // Not awaited to its end: a clean in progress on its blocking thread finds its log
    // closed when it swaps and discards what it wrote (the next start cleans again).
    log_cleaner.abort();
    let _ = log_cleaner.await;
    // Stopped before the logs close: a timer firing now could not append any more.
    if let Err(e) = groups.await {
        tracing::error!(error = %e, "group coordinator task failed");
    }
    for task in cluster_tasks {
        if let Err(e) = task.await {
            tracing::error!(error = %e, "cluster task failed");
        }
    }
    if let Some(node) = &state.cluster {
        if let Err(e) = node.service.shutdown().await {
            tracing::warn!(error = %e, "the metadata quorum did not stop cleanly");
        }
    }
    let closing = state.clone();
    let closed = tokio::task::spawn_blocking(move || closing.topics.close_all())
        .await
        .map_err(|e| BrokerError::io("close logs", std::io::Error::other(e)))?;
    let failed = closed.failed;
    if failed > 0 {
        tracing::error!(
            failed,
            "some logs did not close cleanly; the next start recovers them"
        );
        return Err(BrokerError::io(
            "close logs",
            std::io::Error::other(format!("{failed} partition logs failed to close")),
        ));
    }
    if closed.never_loaded > 0 {
        // An orderly stop, but not a clean data directory: the partitions that could not
        // be loaded were never checked, so the next start must recover them.
        tracing::warn!(
            partitions = closed.never_loaded,
            "partitions that could not be loaded stay unchecked; no clean-shutdown marker, so the next start recovers them"
        );
        tracing::info!("shutdown complete");
        return Ok(());
    }
    let data_dir = state.config.data_dir.clone();
    tokio::task::spawn_blocking(move || fsutil::write_clean_shutdown_marker(&data_dir))
        .await
        .map_err(|e| {
            BrokerError::io("write the clean-shutdown marker", std::io::Error::other(e))
        })??;
    tracing::info!("shutdown complete");
    Ok(())
}

impl BrokerHandle {
    /// The address the broker listens on (with the real port when configured with 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The admin listener's address (metrics, health, status), when it runs.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The broker's state (for tests and embedding).
    pub fn state(&self) -> &Arc<BrokerState> {
        &self.state
    }

    /// Stops accepting, answers the requests already read, flushes and closes every log,
    /// and writes the clean-shutdown marker.
    pub async fn shutdown(mut self) -> Result<(), BrokerError> {
        self.state.lifecycle.set(admin::Phase::ShuttingDown);
        let _ = self.shutdown.send(true);
        self.join().await
    }

    /// Resolves with the reason once this node's part of the metadata quorum has stopped
    /// itself after a failed write to its files (a full disk, an I/O error): the node can
    /// then neither follow nor change the cluster's metadata, so it should exit and be
    /// restarted, as Kafka halts a broker whose metadata log dir failed. Never resolves on
    /// a node without a quorum voter (a single node, a broker-only node).
    pub fn metadata_quorum_failure(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = String> + Send>> {
        match self.state.cluster.as_ref().and_then(|c| c.service.voter()) {
            Some(voter) => {
                let fatal = voter.fatal();
                Box::pin(async move { fatal.await.to_string() })
            }
            None => Box::pin(std::future::pending()),
        }
    }

    /// Starts an orderly shutdown without waiting for it (e.g. from a signal handler);
    /// [`wait`](Self::wait) then returns when it is done.
    pub fn begin_shutdown(&self) {
        self.state.lifecycle.set(admin::Phase::ShuttingDown);
        let _ = self.shutdown.send(true);
    }

    /// Waits until the broker has stopped (after [`begin_shutdown`](Self::begin_shutdown)).
    pub async fn wait(mut self) -> Result<(), BrokerError> {
        self.join().await
    }

    /// Stops at once as if the process had crashed: no flush, no close, no marker. The
    /// data directory is unlocked when this returns.
    pub async fn kill(mut self) {
        let _ = self.kill.send(true);
        let _ = self.join().await;
    }

    async fn join(&mut self) -> Result<(), BrokerError> {
        let Some(supervisor) = self.supervisor.take() else {
            return Ok(());
        };
        let result = supervisor
            .await
            .map_err(|e| BrokerError::io("broker task", std::io::Error::other(e)));
        if let Some(admin) = self.admin.take() {
            admin.stop().await;
        }
        let result = result?;
        // The last references to the state (and its data directory lock) go with the
        // tasks; blocking admin calls in flight may still hold one briefly.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while Arc::strong_count(&self.state) > 1 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        result
    }
}

impl Drop for BrokerHandle {
    /// Dropping a handle without [`shutdown`](Self::shutdown) stops the broker like
    /// [`kill`](Self::kill), without waiting.
    fn drop(&mut self) {
        if self.supervisor.is_some() {
            let _ = self.kill.send(true);
        }
    }
}
