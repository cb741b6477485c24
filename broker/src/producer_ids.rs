//! Producer ids for idempotent producers, never handed out twice, even across kill -9.
//!
//! A producer id names one producer's sequence numbers in every partition's producer
//! state (see `sluice_storage::producer_state`). Were an id reused after a restart, the
//! new producer's batches would be checked against the old producer's sequences: its
//! first batch would be refused as out of order, or worse, acknowledged as a "duplicate"
//! of a batch it never sent. So ids must only ever grow, whatever happened before.
//!
//! Ids come from blocks of [`BLOCK_SIZE`] (Kafka's `ProducerIdsBlock.PRODUCER_ID_BLOCK_SIZE`).
//! Before the first id of a block is handed out, the end of the block is persisted to
//! `<data-dir>/producer-id-block` with `fsutil::write_atomically` (temp file, fsync,
//! rename, fsync of the directory). A start resumes at the stored end. Every id a client
//! can hold is therefore below the stored value, and a crash at any moment can only skip
//! the unused rest of a block, as Kafka does. One file write per thousand producers keeps
//! the fsync off the common path.
//!
//! File format (text, like `meta.properties`):
//!
//! ```text
//! # comment lines
//! version=1
//! next.block.start=3000
//! ```
//!
//! A file that does not parse stops the broker from starting: guessing a value could
//! reuse ids, and the file is only ever replaced atomically, so damage means something
//! else wrote it and an operator should look.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use sluice_storage::fsutil;

use crate::errors::BrokerError;

/// Name of the file in the data directory.
pub const BLOCK_FILE: &str = "producer-id-block";
/// Ids reserved by one write of [`BLOCK_FILE`].
pub const BLOCK_SIZE: i64 = 1000;
const VERSION: &str = "1";

/// Why no producer id could be handed out.
#[derive(Debug, thiserror::Error)]
pub enum AllocateError {
    /// Every id up to `i64::MAX` was used (Kafka: "Exhausted all producerIds").
    #[error("exhausted all producer ids")]
    Exhausted,
    /// The next block could not be persisted; no id of it was handed out.
    #[error(transparent)]
    Persist(#[from] BrokerError),
}

/// The ids of the current block still to hand out: `next..end`.
#[derive(Debug, Clone, Copy)]
struct Block {
    next: i64,
    end: i64,
}

/// See the module docs.
#[derive(Debug)]
pub struct ProducerIdAllocator {
    path: PathBuf,
    /// `None` until the file was read (at start, or by the first allocation).
    block: Mutex<Option<Block>>,
}

impl ProducerIdAllocator {
    /// An allocator over `data_dir`'s block file; reads nothing yet.
    pub fn new(data_dir: &Path) -> Self {
        ProducerIdAllocator {
            path: data_dir.join(BLOCK_FILE),
            block: Mutex::new(None),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<Block>> {
        // Updates are single assignments made after the file write succeeded: a poisoned
        // lock still holds a consistent value.
        self.block.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads the block file (a no-op once read). Returns the first id the next block
    /// will hand out. Called at start so that a damaged file stops the broker at once.
    pub fn load(&self) -> Result<i64, BrokerError> {
        let mut guard = self.lock();
        Ok(loaded(&mut guard, &self.path)?.next)
    }

    /// Hands out a new producer id. Blocking: may write and fsync the block file.
    pub fn allocate(&self) -> Result<i64, AllocateError> {
        let mut guard = self.lock();
        let block = loaded(&mut guard, &self.path)?;
        if block.next >= block.end {
            let end = block
                .end
                .checked_add(BLOCK_SIZE)
                .ok_or(AllocateError::Exhausted)?;
            // Persisted before any id of the new block leaves this function. A failed
            // write leaves the block as it was and the next call writes a whole new file:
            // that is not an fsync retry over pages the kernel may have dropped, and an
            // earlier attempt that did reach the disk only stored the same value.
            write_block_file(&self.path, end)?;
            tracing::debug!(
                first = block.end,
                end,
                file = %self.path.display(),
                "reserved a block of producer ids"
            );
            *block = Block {
                next: block.end,
                end,
            };
        }
        let id = block.next;
        block.next += 1;
        Ok(id)
    }
}

/// The block in `slot`, read from the file first if it was not yet.
fn loaded<'a>(slot: &'a mut Option<Block>, path: &Path) -> Result<&'a mut Block, BrokerError> {
    let block = match *slot {
        Some(block) => block,
        None => {
            let start = read_block_file(path)?;
            // Nothing of this block is persisted yet: the first allocation writes it.
            Block {
                next: start,
                end: start,
            }
        }
    };
    Ok(slot.insert(block))
}

fn read_block_file(path: &Path) -> Result<i64, BrokerError> {
    let Some(bytes) = fsutil::read_optional(path)? else {
        return Ok(0);
    };
    let bad = |reason: &str| BrokerError::BadMetadata {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    let text = std::str::from_utf8(&bytes).map_err(|_| bad("not UTF-8"))?;
    let mut version = None;
    let mut start = None;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once('=') {
            Some(("version", v)) => version = Some(v.trim()),
            Some(("next.block.start", v)) => {
                start = Some(
                    v.trim()
                        .parse::<i64>()
                        .ok()
                        .filter(|s| *s >= 0)
                        .ok_or_else(|| bad("next.block.start is not a non-negative number"))?,
                );
            }
            _ => return Err(bad(&format!("unexpected line {line:?}"))),
        }
    }
    if version != Some(VERSION) {
        return Err(bad("unsupported version (expected version=1)"));
    }
    start.ok_or_else(|| bad("no next.block.start"))
}

fn write_block_file(path: &Path, next_block_start: i64) -> Result<(), BrokerError> {
    let text = format!(
        "# Producer ids below next.block.start may have been handed out: never reuse them.\n\
         # Written by sluice-broker; do not edit or delete.\n\
         version={VERSION}\nnext.block.start={next_block_start}\n"
    );
    fsutil::write_atomically(path, text.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_never_reused_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let ids = ProducerIdAllocator::new(dir.path());
        assert_eq!(ids.load().unwrap(), 0);
        assert!(
            !dir.path().join(BLOCK_FILE).exists(),
            "nothing is written before an id is needed"
        );
        let first: Vec<i64> = (0..3).map(|_| ids.allocate().unwrap()).collect();
        assert_eq!(first, vec![0, 1, 2]);
        let text = std::fs::read_to_string(dir.path().join(BLOCK_FILE)).unwrap();
        assert!(text.contains("next.block.start=1000"), "{text}");

        // A restart (or a crash: the file is all there is) skips the rest of the block.
        let again = ProducerIdAllocator::new(dir.path());
        assert_eq!(again.allocate().unwrap(), 1000);
        for expected in 1001..2000 {
            assert_eq!(again.allocate().unwrap(), expected);
        }
        assert_eq!(again.allocate().unwrap(), 2000, "the next block");
        let text = std::fs::read_to_string(dir.path().join(BLOCK_FILE)).unwrap();
        assert!(text.contains("next.block.start=3000"), "{text}");
    }

    #[test]
    fn a_damaged_file_is_refused_and_exhaustion_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(BLOCK_FILE);
        for bad in [
            "version=2\nnext.block.start=5\n",
            "version=1\n",
            "version=1\nnext.block.start=-5\n",
            "version=1\nnext.block.start=x\n",
            "garbage",
        ] {
            std::fs::write(&path, bad).unwrap();
            assert!(
                matches!(
                    ProducerIdAllocator::new(dir.path()).load(),
                    Err(BrokerError::BadMetadata { .. })
                ),
                "{bad:?}"
            );
        }
        std::fs::write(&path, format!("version=1\nnext.block.start={}\n", i64::MAX)).unwrap();
        assert!(matches!(
            ProducerIdAllocator::new(dir.path()).allocate(),
            Err(AllocateError::Exhausted)
        ));
    }

    #[test]
    fn concurrent_allocations_are_distinct() {
        let dir = tempfile::tempdir().unwrap();
        let ids = std::sync::Arc::new(ProducerIdAllocator::new(dir.path()));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let ids = ids.clone();
                std::thread::spawn(move || {
                    (0..600)
                        .map(|_| ids.allocate().unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<i64> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 2400);
    }
}
