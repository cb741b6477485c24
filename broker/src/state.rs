//! The state every handler reads: configuration, identity, the topic registry, the
//! producer id allocator, the group coordinator and the connection limits.
//!
//! Shared as `Arc<BrokerState>` by the connection tasks, the retention task and the
//! blocking admin threads. Nothing here is behind a broker-wide lock; the registry
//! has its own fine-grained locking (see `topics`), the allocator its own mutex, the
//! group coordinator its own (see `groups`; only group APIs take it).

use std::sync::Arc;

use crate::cluster::ClusterNode;
use crate::config::BrokerConfig;
use crate::datadir::DataDirLock;
use crate::disk_space::DiskSpace;
use crate::groups::Groups;
use crate::producer_ids::ProducerIdAllocator;
use crate::security::{ClientListener, Security};
use crate::server::limits::Limits;
use crate::topics::TopicRegistry;

/// See the module docs.
pub struct BrokerState {
    pub config: BrokerConfig,
    pub topics: TopicRegistry,
    /// Ids for InitProducerId, persisted in blocks (see `producer_ids`).
    pub producer_ids: ProducerIdAllocator,
    /// The consumer-group coordinator and its I/O (its own lock; see `groups`).
    pub groups: Groups,
    pub cluster_id: String,
    pub node_id: i32,
    /// Host and port of the primary client listener (the inter-broker one, else the
    /// first); answers on a connection use that connection's listener (see
    /// [`BrokerState::advertised`]).
    pub advertised_host: String,
    pub advertised_port: i32,
    /// The client listeners, in `listeners` order.
    pub listeners: Vec<Arc<ClientListener>>,
    /// Credentials, SASL and failed-login tracking (see `security`).
    pub security: Arc<Security>,
    /// Connection admission, idle tracking and the request byte budget (see
    /// `server::limits`).
    pub limits: Arc<Limits>,
    /// The free-space floor of the data directory (`log.dir.min.free.bytes`).
    pub disk: DiskSpace,
    /// Consumers' fetch sessions (KIP-227; see `fetch_session`).
    pub fetch_sessions: crate::fetch_session::FetchSessions,
    /// Client quotas and the rates measured against them (see `quotas`).
    pub quotas: crate::quotas::Quotas,
    /// The log cleaner's settings and what it did (see `cleaner`).
    pub cleaner: crate::cleaner::LogCleaner,
    /// Broker configs changed at runtime (see `dynamic_config`).
    pub dynamic: crate::dynamic_config::DynamicBrokerConfigs,
    /// Group configs on the single node of earlier releases (a cluster keeps them in its
    /// metadata; see `group_configs`).
    pub group_configs: Option<crate::group_configs::GroupConfigStore>,
    /// This broker's membership of a multi-node cluster (`None`: a single node, whose
    /// metadata is its data directory's).
    pub cluster: Option<Arc<ClusterNode>>,
    /// Whether the data directory has joined a multi-node cluster already (otherwise it
    /// takes the cluster's id when it joins; see `cluster::lifecycle`).
    pub data_dir_joined: bool,
    /// Counters that belong to no partition or listener, and the groups' consume rates.
    pub metrics: crate::metrics::BrokerMetrics,
    /// Starting, serving or shutting down (health and readiness; see `admin`).
    pub lifecycle: Arc<crate::admin::Lifecycle>,
    /// Held for the broker's lifetime (released when the state is dropped).
    pub(crate) _lock: Option<DataDirLock>,
}

impl BrokerState {
    /// A state over an existing registry, for handler unit tests.
    pub fn for_tests(config: BrokerConfig, topics: TopicRegistry) -> BrokerState {
        let security = Arc::new(
            Security::open(topics.data_dir(), &config.security)
                .unwrap_or_else(|e| panic!("security state for tests: {e}")),
        );
        BrokerState {
            node_id: config.node_id,
            groups: Groups::new(config.group_coordinator.clone()),
            limits: Arc::new(Limits::new(&config)),
            disk: DiskSpace::new(topics.data_dir(), config.min_free_bytes),
            fetch_sessions: crate::fetch_session::FetchSessions::from_config(&config),
            cleaner: crate::cleaner::LogCleaner::new(&config.cleaner),
            dynamic: crate::dynamic_config::DynamicBrokerConfigs::in_metadata(),
            group_configs: Some(
                crate::group_configs::GroupConfigStore::open(topics.data_dir())
                    .unwrap_or_else(|e| panic!("group configs for tests: {e}")),
            ),
            quotas: crate::quotas::Quotas::open(&config)
                .unwrap_or_else(|e| panic!("client quotas for tests: {e}")),
            config,
            producer_ids: ProducerIdAllocator::new(topics.data_dir()),
            topics,
            cluster_id: "test-cluster".to_owned(),
            advertised_host: "127.0.0.1".to_owned(),
            advertised_port: 9092,
            listeners: Vec::new(),
            security,
            cluster: None,
            data_dir_joined: false,
            metrics: Default::default(),
            lifecycle: Default::default(),
            _lock: None,
        }
    }

    /// The host and port this broker gives for itself on the listener the current request
    /// came in on (the primary listener outside a connection).
    pub fn advertised(&self) -> (String, i32) {
        match crate::server::current_listener() {
            Some(l) => (l.advertised_host.clone(), l.advertised_port),
            None => (self.advertised_host.clone(), self.advertised_port),
        }
    }
}
