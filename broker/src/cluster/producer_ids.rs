//! Producer ids in a cluster: each broker hands out ids from blocks the active controller
//! gives it (Kafka's AllocateProducerIds, KIP-730), so ids are unique cluster-wide. The
//! blocks are recorded in the metadata log, so an id is never given out twice, even after
//! a crash: a restarted broker takes a new block.

use tokio::sync::Mutex;

use super::ClusterNode;
use crate::errors::BrokerError;
use crate::producer_ids::AllocateError;

/// The ids of the current block still to hand out: `next..end`.
#[derive(Debug, Default)]
pub struct ProducerIdBlocks {
    block: Mutex<Option<(i64, i64)>>,
}

impl ProducerIdBlocks {
    /// Hands out a new producer id, asking the controller for a block when the current
    /// one is used up (one request at a time; others wait for it).
    pub async fn allocate(&self, node: &ClusterNode) -> Result<i64, AllocateError> {
        let mut block = self.block.lock().await;
        if let Some((next, end)) = block.as_mut() {
            if *next < *end {
                let id = *next;
                *next += 1;
                return Ok(id);
            }
        }
        let epoch = node.broker_epoch();
        if epoch < 0 {
            return Err(AllocateError::Persist(BrokerError::Cluster(
                "this broker is not registered yet".to_owned(),
            )));
        }
        let granted = node
            .service
            .allocate_producer_ids(node.node_id, epoch)
            .await
            .map_err(|e| AllocateError::Persist(BrokerError::Cluster(e.to_string())))?
            .value;
        tracing::debug!(
            first = granted.first_id,
            size = granted.size,
            "got a block of producer ids"
        );
        let id = granted.first_id;
        *block = Some((id + 1, granted.first_id + granted.size));
        Ok(id)
    }
}
