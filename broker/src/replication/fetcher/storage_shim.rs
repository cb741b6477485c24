//! TEMPORARY stand-in for the storage API of /work/wt/STORAGE-API-s27.md until the s27-storage
//! branch is merged: same names, placeholder bodies (no replication happens through them).
//! Deleted by the merge commit; nothing else may use it.
use sluice_storage::log::PartitionLog;
use sluice_storage::Result;
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEndOffset {
    pub leader_epoch: i32,
    pub end_offset: i64,
}
pub fn truncation_offset(_f: &PartitionLog, _l: Option<EpochEndOffset>) -> i64 {
    0
}
pub trait FollowerLogExt {
    fn append_replicated(&self, records: &[u8], now_ms: i64) -> Result<()>;
    fn set_high_watermark(&self, offset: i64) -> i64;
    fn latest_epoch(&self) -> Option<i32>;
}
impl FollowerLogExt for PartitionLog {
    fn append_replicated(&self, _records: &[u8], _now_ms: i64) -> Result<()> {
        Ok(())
    }
    fn set_high_watermark(&self, offset: i64) -> i64 {
        offset
    }
    fn latest_epoch(&self) -> Option<i32> {
        None
    }
}
