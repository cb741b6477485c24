//! openraft's own storage test suite (`openraft::testing::Suite`) against the quorum's log
//! store and state machine, each built on a fresh temp dir.

mod support;

use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;
use sluice_quorum::log_store::LogStore;
use sluice_quorum::state_machine::StateMachineStore;
use sluice_quorum::types::TypeConfig;
use support::Recorder;
use tempfile::TempDir;

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore<Recorder>, TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(TempDir, LogStore, StateMachineStore<Recorder>), StorageError<u64>> {
        let dir = tempfile::tempdir().expect("temp dir");
        // Small segments, so the suite's truncations and purges cross segment boundaries.
        let (log, _) = LogStore::open(dir.path(), 256).expect("open log");
        let (applier, _) = Recorder::new();
        let sm = StateMachineStore::open(dir.path(), applier).expect("open state machine");
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    Suite::test_all(Builder).expect("storage suite");
}
