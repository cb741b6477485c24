//! Background retention: every `log.retention.check.interval.ms`, delete old segments by
//! each topic's `retention.ms` / `retention.bytes` (when its `cleanup.policy` includes
//! `delete`) and roll segments whose `segment.ms` has passed.
//!
//! A pass deletes files, so it runs on a blocking thread; one pass at a time (the next
//! tick waits for it). The first pass runs one interval after start, not at start, so a
//! restart does not stall on it, and only once the broker serves (caught up with the
//! metadata, so its topic configs and dynamic defaults are the cluster's).

use std::sync::Arc;
use std::time::Duration;

use sluice_storage::StorageError;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use crate::state::BrokerState;

/// Runs retention passes until shutdown.
pub async fn run(state: Arc<BrokerState>, mut shutdown: watch::Receiver<bool>) {
    let period = Duration::from_millis(state.config.retention_check_interval_ms.max(1));
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
        if state.lifecycle.phase() != crate::admin::Phase::Serving {
            // A cluster node catching up with the metadata does not know its topics'
            // configs or the dynamic broker defaults yet (a retention.ms raised at runtime
            // would otherwise not protect the data at the first pass).
            continue;
        }
        let pass_state = state.clone();
        let pass =
            tokio::task::spawn_blocking(move || pass_once(&pass_state, sluice_storage::now_ms()));
        if let Err(e) = pass.await {
            tracing::error!(error = %e, "retention pass panicked");
        }
    }
}

/// One retention pass over every partition.
pub fn pass_once(state: &BrokerState, now_ms: i64) {
    for topic in state.topics.list() {
        let config = topic.config();
        for partition in topic.partitions().iter() {
            let log = &partition.log;
            let result = (|| -> Result<(), StorageError> {
                if config.deletes() {
                    let outcome = log.apply_retention(now_ms)?;
                    if outcome.segments_deleted > 0 {
                        let metrics = &state.metrics;
                        metrics.retention_segments_deleted.fetch_add(
                            outcome.segments_deleted as u64,
                            std::sync::atomic::Ordering::Relaxed,
                        );
                        metrics
                            .retention_bytes_deleted
                            .fetch_add(outcome.bytes_deleted, std::sync::atomic::Ordering::Relaxed);
                        tracing::info!(
                            topic = %topic.name,
                            partition = partition.index,
                            segments = outcome.segments_deleted,
                            bytes = outcome.bytes_deleted,
                            log_start_offset = log.log_start_offset(),
                            "retention deleted segments"
                        );
                    }
                }
                log.roll_if_due(now_ms)
            })();
            match result {
                Ok(()) => {}
                // Deleted or shutting down meanwhile; offline logs were reported already.
                Err(StorageError::Closed)
                | Err(StorageError::Offline { .. })
                | Err(StorageError::Unavailable { .. }) => {}
                Err(e) => {
                    tracing::warn!(topic = %topic.name, partition = partition.index, error = %e, "retention failed")
                }
            }
        }
    }
}
