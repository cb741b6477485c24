//! An active controller that loses its majority: requests end within the request timeout
//! (never hang), and work again once the majority is back.

mod support;

use std::time::{Duration, Instant};

use sluice_controller::{ControllerError, MetadataServiceConfig};
use sluice_metadata::controller::AlterConfigs;
use sluice_metadata::records::ConfigResource;
use support::{Cluster, WAIT};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);

fn tune(config: &mut MetadataServiceConfig) {
    config.request_timeout = REQUEST_TIMEOUT;
}

/// A change that commits a record (a broker config needs no registered broker).
fn set(value: &str) -> Vec<AlterConfigs> {
    vec![AlterConfigs {
        resource: ConfigResource::Broker(1),
        changes: vec![("log.retention.ms".into(), Some(value.into()))],
    }]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_time_out_without_a_majority_and_recover_with_it() {
    let mut c = Cluster::start(3, tune).await;
    let leader = c.active().await;
    let followers: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    for id in &followers {
        c.stop(*id).await;
    }

    // Nothing can commit: the answer is a timeout (or NOT_CONTROLLER, should the leader
    // step down), well within twice the request timeout.
    let started = Instant::now();
    let result = c.svc(leader).alter_configs(set("1")).await;
    let elapsed = started.elapsed();
    assert!(
        matches!(
            result,
            Err(ControllerError::Timeout(_)) | Err(ControllerError::NotController { .. })
        ),
        "{result:?}"
    );
    assert!(elapsed < 2 * REQUEST_TIMEOUT, "took {elapsed:?}");

    // The majority comes back: requests work again, and nothing was created twice.
    for id in &followers {
        c.restart(*id).await;
    }
    let deadline = Instant::now() + WAIT;
    let created = loop {
        let leader = c.active().await;
        match c.svc(leader).alter_configs(set("2")).await {
            Ok(created) => break created,
            Err(e) => {
                assert!(Instant::now() < deadline, "no recovery: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    assert!(created.value[0].is_ok());
    let snapshots = c.converged(created.offset).await;
    let first = snapshots.values().next().unwrap();
    assert!(snapshots.values().all(|s| s == first), "images differ");
    let leader = c.active().await;
    assert_eq!(
        c.svc(leader)
            .image()
            .config(&ConfigResource::Broker(1), "log.retention.ms"),
        Some("2")
    );
    for id in 1..=3 {
        c.stop(id).await;
    }
}
