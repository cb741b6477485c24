//! The state machine side of openraft ([`RaftStateMachine`]): feeds committed entries to the
//! [`Applier`], and keeps the snapshot file.
//!
//! `<dir>/snapshot` holds the latest snapshot, in the state-file envelope of
//! `files.rs` (written to `snapshot.tmp`, fsynced, renamed, directory fsynced);
//! its body is the CBOR of `SnapshotFile`: openraft's snapshot meta (last included log id,
//! last membership, snapshot id) and the applier's bytes. At open, the applier is rebuilt from
//! it, and openraft re-applies the committed log after it.
//!
//! A snapshot is built from a copy of the applier's bytes taken in `get_snapshot_builder`,
//! under the same lock as `apply`, so its bytes and its last log id always match even though
//! openraft builds it in a separate task while entries keep being applied. A snapshot is only
//! ever replaced by a newer one (an older build finishing after an install is dropped).

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{AnyError, EntryPayload, RaftSnapshotBuilder, StorageIOError};
use serde::{Deserialize, Serialize};

use crate::applier::Applier;
use crate::error::QuorumError;
use crate::files;
use crate::types::{
    from_cbor, to_cbor, Entry, LogId, Payload, SnapshotMeta, StorageError, StoredMembership,
    TypeConfig,
};

/// The body of the `snapshot` file.
#[derive(Serialize, Deserialize)]
pub(crate) struct SnapshotFile {
    pub meta: SnapshotMeta,
    pub data: Payload,
}

/// The state machine handed to openraft.
pub struct StateMachineStore<A: Applier> {
    shared: Arc<Shared<A>>,
}

struct Shared<A> {
    dir: PathBuf,
    state: Mutex<State<A>>,
    /// The latest snapshot (also on disk); replaced only by a newer one.
    current: Mutex<Option<SnapshotFile>>,
}

struct State<A> {
    applier: A,
    last_applied: Option<LogId>,
    membership: StoredMembership,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn sm_err(e: impl Into<String>) -> StorageError {
    StorageIOError::write_state_machine(AnyError::error(e.into())).into()
}

impl<A: Applier> StateMachineStore<A> {
    /// Opens the state machine in `dir`: installs the snapshot on disk, if any, into `applier`.
    pub fn open(dir: &Path, mut applier: A) -> Result<Self, QuorumError> {
        let path = files::path(dir, "snapshot");
        let stored: Option<SnapshotFile> = match files::read(dir, "snapshot") {
            Ok(None) => None,
            Ok(Some(body)) => Some(from_cbor(&body).map_err(|reason| QuorumError::Corrupt {
                path: path.clone(),
                reason,
            })?),
            Err(files::ReadError::Io(e)) => return Err(QuorumError::io("read", path, e)),
            Err(files::ReadError::Corrupt(reason)) => {
                return Err(QuorumError::Corrupt { path, reason })
            }
        };
        let (last_applied, membership) = match &stored {
            None => (None, StoredMembership::default()),
            Some(s) => {
                let last_index = s.meta.last_log_id.map_or(0, |l| l.index);
                applier
                    .install_snapshot(last_index, &s.data.0)
                    .map_err(|reason| QuorumError::Corrupt {
                        path: path.clone(),
                        reason: format!("the applier refused the snapshot: {reason}"),
                    })?;
                tracing::debug!(last = ?s.meta.last_log_id, bytes = s.data.0.len(), "metadata snapshot loaded");
                (s.meta.last_log_id, s.meta.last_membership.clone())
            }
        };
        let state = State {
            applier,
            last_applied,
            membership,
        };
        Ok(StateMachineStore {
            shared: Arc::new(Shared {
                dir: dir.to_path_buf(),
                state: Mutex::new(state),
                current: Mutex::new(stored),
            }),
        })
    }
}

impl<A: Applier> Shared<A> {
    /// Makes `snap` the current snapshot, on disk first, unless a newer one is already there.
    /// Returns whether it was stored.
    fn store(&self, snap: SnapshotFile) -> std::io::Result<bool> {
        let mut current = lock(&self.current);
        if let Some(cur) = current.as_ref() {
            if cur.meta.last_log_id > snap.meta.last_log_id {
                return Ok(false);
            }
        }
        let body = to_cbor(&snap).map_err(std::io::Error::other)?;
        files::write_atomic(&self.dir, "snapshot", &body)?;
        *current = Some(snap);
        Ok(true)
    }

    /// [`Shared::store`] in a blocking thread.
    async fn store_async(self: Arc<Self>, snap: SnapshotFile) -> Result<bool, StorageError> {
        let signature = snap.meta.signature();
        tokio::task::spawn_blocking(move || self.store(snap))
            .await
            .unwrap_or_else(|e| {
                Err(std::io::Error::other(format!(
                    "snapshot write task failed: {e}"
                )))
            })
            .map_err(|e| StorageIOError::write_snapshot(Some(signature), AnyError::new(&e)).into())
    }
}

/// Builds a snapshot from bytes captured when the builder was made.
pub struct SnapshotBuilder<A: Applier> {
    shared: Arc<Shared<A>>,
    meta: SnapshotMeta,
    data: Vec<u8>,
}

impl<A: Applier> RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder<A> {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let snap = SnapshotFile {
            meta: self.meta.clone(),
            data: Payload(std::mem::take(&mut self.data)),
        };
        let shared = self.shared.clone();
        let meta = snap.meta.clone();
        let data = snap.data.0.clone();
        shared.store_async(snap).await?;
        tracing::debug!(last = ?meta.last_log_id, bytes = data.len(), "metadata snapshot built");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl<A: Applier> RaftStateMachine<TypeConfig> for StateMachineStore<A> {
    type SnapshotBuilder = SnapshotBuilder<A>;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let state = lock(&self.shared.state);
        Ok((state.last_applied, state.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Payload>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut state = lock(&self.shared.state);
        let mut responses = Vec::new();
        for entry in entries {
            state.last_applied = Some(entry.log_id);
            let response = match entry.payload {
                EntryPayload::Blank => Payload::default(),
                EntryPayload::Normal(payload) => Payload(state.applier.apply(
                    entry.log_id.index,
                    entry.log_id.leader_id.term,
                    &payload.0,
                )),
                EntryPayload::Membership(m) => {
                    state.membership = StoredMembership::new(Some(entry.log_id), m);
                    Payload::default()
                }
            };
            responses.push(response);
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder<A> {
        let state = lock(&self.shared.state);
        let last = state.last_applied;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let snapshot_id = match last {
            Some(l) => format!("{}-{}-{nanos}", l.leader_id.term, l.index),
            None => format!("0-0-{nanos}"),
        };
        SnapshotBuilder {
            shared: self.shared.clone(),
            meta: SnapshotMeta {
                last_log_id: last,
                last_membership: state.membership.clone(),
                snapshot_id,
            },
            data: state.applier.snapshot(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        // Decoding a large snapshot may take a while: off the runtime's workers, so the
        // node keeps answering heartbeats meanwhile.
        let shared = self.shared.clone();
        let installed = meta.clone();
        let data = tokio::task::spawn_blocking(move || {
            let mut state = lock(&shared.state);
            let last_index = installed.last_log_id.map_or(0, |l| l.index);
            state
                .applier
                .install_snapshot(last_index, &data)
                .map_err(|e| format!("the applier refused the snapshot: {e}"))?;
            state.last_applied = installed.last_log_id;
            state.membership = installed.last_membership.clone();
            Ok::<_, String>(data)
        })
        .await
        .map_err(|e| sm_err(format!("snapshot install task failed: {e}")))?
        .map_err(sm_err)?;
        tracing::debug!(last = ?meta.last_log_id, bytes = data.len(), "metadata snapshot installed");
        let shared = self.shared.clone();
        let snap = SnapshotFile {
            meta: meta.clone(),
            data: Payload(data),
        };
        shared.store_async(snap).await?;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let current = lock(&self.shared.current);
        Ok(current.as_ref().map(|s| Snapshot {
            meta: s.meta.clone(),
            snapshot: Box::new(Cursor::new(s.data.0.clone())),
        }))
    }
}
