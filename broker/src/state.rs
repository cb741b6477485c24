//! The state every handler reads: configuration, identity and the topic registry.
//!
//! Shared as `Arc<BrokerState>` by the connection tasks, the retention task and the
//! blocking admin threads. Nothing here is behind a broker-wide lock; the registry
//! has its own fine-grained locking (see `topics`).

use crate::config::BrokerConfig;
use crate::datadir::DataDirLock;
use crate::topics::TopicRegistry;

/// See the module docs.
pub struct BrokerState {
    pub config: BrokerConfig,
    pub topics: TopicRegistry,
    pub cluster_id: String,
    pub node_id: i32,
    /// Host and port put in Metadata responses.
    pub advertised_host: String,
    pub advertised_port: i32,
    /// Held for the broker's lifetime (released when the state is dropped).
    pub(crate) _lock: Option<DataDirLock>,
}

impl BrokerState {
    /// A state over an existing registry, for handler unit tests.
    pub fn for_tests(config: BrokerConfig, topics: TopicRegistry) -> BrokerState {
        BrokerState {
            node_id: config.node_id,
            config,
            topics,
            cluster_id: "test-cluster".to_owned(),
            advertised_host: "127.0.0.1".to_owned(),
            advertised_port: 9092,
            _lock: None,
        }
    }
}
