//! The registry as a cluster broker uses it: the local replicas the metadata assigns to
//! this broker, created, deleted and set aside one partition at a time (see `cluster::
//! reconcile`, which decides what to call from the metadata image).
//!
//! A cluster broker's data directory holds any subset of a topic's partitions
//! ([`Layout::Replicas`](super::Layout)); every directory carries the topic id in its
//! `partition.metadata`, which is how a replica is matched with the metadata (a topic
//! deleted and recreated under the same name is a new topic with a new id).
//!
//! Crash safety, partition by partition:
//! - create: directory + `partition.metadata` (atomic) + log files; a crash part-way leaves
//!   a directory that the next load opens (missing log files are made) and the next
//!   reconciliation keeps or deletes as the metadata says.
//! - delete: the log is closed, the directory renamed to `<dir>.<id>-delete` (and the data
//!   directory fsynced), then removed; the next load removes a leftover `-delete`.
//! - stray: a replica the metadata does not know at all (its topic was deleted while this
//!   broker was away, or the directory came from elsewhere) is renamed to
//!   `<dir>.<id>-stray` and left for an operator, never deleted automatically: a broker
//!   must not destroy data on the word of metadata it may have misread (Kafka 3.7+ does
//!   the same).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use kafka_protocol::error::ResponseError;
use sluice_storage::{fsutil, StorageError};
use uuid::Uuid;

use super::{remove_dir, AdminError, Partition, Topic, TopicRegistry, DELETE_SUFFIX};
use crate::datadir;

/// Suffix of a replica directory set aside because the metadata does not know it.
pub const STRAY_SUFFIX: &str = "-stray";

impl TopicRegistry {
    /// Makes sure this broker hosts partition `index` of the topic `id` named `name`,
    /// creating the topic entry and the partition's directory and log if missing
    /// (blocking: creates files and fsyncs). The topic's config overrides are set to
    /// `overrides` when the topic entry is new. Returns whether a log was created.
    ///
    /// A different topic registered under `name` (an older topic of the same name,
    /// deleted while this broker was not looking) must be removed first: this refuses.
    pub fn ensure_replica(
        &self,
        name: &str,
        id: Uuid,
        index: i32,
        overrides: &BTreeMap<String, String>,
    ) -> Result<bool, AdminError> {
        let _admin = self.lock_admin();
        let topic = match self.get_by_id(id) {
            Some(topic) => topic,
            None => {
                if let Some(other) = self.get(name) {
                    return Err(AdminError::new(
                        ResponseError::TopicAlreadyExists,
                        format!(
                            "a replica of an older topic {name} (id {}) is still here",
                            datadir::uuid_to_base64(other.id)
                        ),
                    ));
                }
                let defaults = self.defaults();
                let config = defaults
                    .with_overrides(overrides)
                    .unwrap_or_else(|e| {
                        // Validated by the controller's broker before it was written; an
                        // override this build does not know must not keep the replica away.
                        tracing::warn!(topic = %name, error = %e, "ignoring topic configs this broker cannot apply");
                        (*defaults).clone()
                    });
                let topic = Arc::new(Topic {
                    name: Arc::from(name),
                    id,
                    overrides: RwLock::new(overrides.clone()),
                    config: RwLock::new(config),
                    partitions: RwLock::new(Arc::new(Vec::new())),
                    retired: Default::default(),
                });
                let mut maps = self.write_maps();
                maps.by_id.insert(id, topic.clone());
                maps.by_name.insert(topic.name.clone(), topic.clone());
                topic
            }
        };
        if topic.partition(index).is_some() {
            return Ok(false);
        }
        let dir = datadir::partition_dir(&self.data_dir, &topic.name, index);
        let existed = dir.exists();
        let partition = match self.open_new_partition(&topic.name, id, index, &topic.config()) {
            Ok(partition) => partition,
            Err(e) => {
                // A create that failed part-way (e.g. out of file descriptors) leaves no
                // half-made directory behind; one that was there before is not ours.
                if !existed {
                    if let Err(cleanup) = remove_dir(&dir) {
                        // Out of descriptors (the usual reason the create failed), the
                        // removal may find none free for a moment: tried again at the
                        // next pass, once other replicas were closed.
                        tracing::debug!(dir = %dir.display(), error = %cleanup, "cannot remove a half-created replica yet");
                        self.half_created
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push((topic.name.clone(), index, dir.clone()));
                    }
                }
                return Err(e);
            }
        };
        let mut partitions = topic.partitions().as_ref().clone();
        let at = partitions.partition_point(|p| p.index < index);
        partitions.insert(at, Arc::new(partition));
        *topic.partitions.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(partitions);
        fsutil::sync_dir(&self.data_dir)?;
        Ok(true)
    }

    /// Removes the directories of replicas whose creation failed part-way and whose first
    /// removal failed (blocking; `cluster::reconcile` calls it at the start of every pass).
    /// A directory that became a served replica meanwhile (created again by a later pass)
    /// is kept. One that still cannot be removed is tried at the next call; a warning says
    /// so when the error is not a lack of descriptors.
    pub fn remove_half_created(&self) {
        let _admin = self.lock_admin();
        let pending =
            std::mem::take(&mut *self.half_created.lock().unwrap_or_else(|p| p.into_inner()));
        let mut left = Vec::new();
        for (topic, index, dir) in pending {
            if self
                .get(&topic)
                .is_some_and(|t| t.partition(index).is_some())
            {
                continue;
            }
            if let Err(e) = remove_dir(&dir) {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot remove a half-created replica; trying again at the next pass");
                left.push((topic, index, dir));
            }
        }
        self.half_created
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(left);
    }

    /// Deletes this broker's replica `index` of topic `id` and its files (blocking). The
    /// topic entry goes with its last local replica. Unknown replicas are no error.
    pub fn remove_replica(&self, id: Uuid, index: i32) -> Result<(), AdminError> {
        self.set_replica_aside(id, index, DELETE_SUFFIX)
    }

    /// Renames this broker's replica `index` of topic `id` to `<dir>.<id>-stray` and stops
    /// serving it (blocking). Its files stay for an operator (module docs).
    pub fn mark_stray(&self, id: Uuid, index: i32) -> Result<(), AdminError> {
        self.set_replica_aside(id, index, STRAY_SUFFIX)
    }

    fn set_replica_aside(&self, id: Uuid, index: i32, suffix: &str) -> Result<(), AdminError> {
        let _admin = self.lock_admin();
        let Some(topic) = self.get_by_id(id) else {
            return Ok(());
        };
        let Some(partition) = topic.partition(index) else {
            return Ok(());
        };
        let remaining: Vec<Arc<Partition>> = topic
            .partitions()
            .iter()
            .filter(|p| p.index != index)
            .cloned()
            .collect();
        let last = remaining.is_empty();
        topic.retired.absorb(&partition.traffic);
        *topic.partitions.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(remaining);
        if last {
            let mut maps = self.write_maps();
            if maps
                .by_id
                .get(&id)
                .is_some_and(|current| Arc::ptr_eq(current, &topic))
            {
                maps.by_id.remove(&id);
                maps.by_name.remove(&topic.name);
            }
        }
        if suffix == DELETE_SUFFIX {
            // Its files go next: flushing them first would only cost fsyncs (a topic of
            // hundreds of partitions deleted one replica at a time).
            partition.log.discard();
        } else if let Err(e) = partition.log.close() {
            tracing::warn!(topic = %topic.name, partition = index, error = %e, "closing a removed replica failed");
        }
        // Wake long polls so they answer now instead of at their deadline.
        partition.notify_appended();
        let dir = datadir::partition_dir(&self.data_dir, &topic.name, index);
        let target = self.data_dir.join(datadir::renamed_partition_dir(
            &topic.name,
            index,
            id,
            suffix,
        ));
        std::fs::rename(&dir, &target).map_err(|e| {
            AdminError::from(StorageError::io(format!("rename {}", dir.display()), e))
        })?;
        fsutil::sync_dir(&self.data_dir)?;
        if suffix == DELETE_SUFFIX {
            // Not synced: a `-delete` directory a crash leaves is removed at the next start.
            remove_dir(&target)?;
        }
        Ok(())
    }

    /// Replaces a topic's config overrides with the metadata's, if they differ (blocking).
    pub fn sync_overrides(
        &self,
        id: Uuid,
        overrides: &BTreeMap<String, String>,
    ) -> Result<(), AdminError> {
        let Some(topic) = self.get_by_id(id) else {
            return Ok(());
        };
        if topic.overrides() == *overrides {
            return Ok(());
        }
        self.set_overrides(&topic, overrides.clone())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use sluice_storage::Flusher;

    use super::*;
    use crate::topic_config::{FlushMode, TopicConfig};
    use crate::topics::Layout;

    fn registry(dir: &Path) -> TopicRegistry {
        let flusher = Flusher::start("test").unwrap();
        TopicRegistry::load(
            dir,
            flusher,
            TopicConfig::default(),
            FlushMode::Os,
            true,
            Layout::Replicas,
        )
        .unwrap()
        .0
    }

    #[test]
    fn a_subset_of_partitions_is_created_reloaded_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let id = Uuid::new_v4();
        let reg = registry(dir.path());
        let none = BTreeMap::new();
        assert!(reg.ensure_replica("orders", id, 5, &none).unwrap());
        assert!(reg.ensure_replica("orders", id, 2, &none).unwrap());
        assert!(
            !reg.ensure_replica("orders", id, 2, &none).unwrap(),
            "already there"
        );
        let topic = reg.get("orders").unwrap();
        let indexes: Vec<i32> = topic.partitions().iter().map(|p| p.index).collect();
        assert_eq!(indexes, vec![2, 5]);
        assert!(topic.partition(5).is_some());
        assert!(topic.partition(0).is_none());
        assert!(topic.partition(1).is_none());
        reg.close_all();
        drop(reg);

        // No partition 0, yet the topic is not a half-deleted one in this layout.
        let reg = registry(dir.path());
        let topic = reg.get("orders").unwrap();
        assert_eq!(topic.id, id);
        let indexes: Vec<i32> = topic.partitions().iter().map(|p| p.index).collect();
        assert_eq!(indexes, vec![2, 5]);

        reg.remove_replica(id, 2).unwrap();
        assert!(!dir.path().join("orders-2").exists());
        assert!(reg.get("orders").is_some());
        reg.mark_stray(id, 5).unwrap();
        assert!(
            reg.get("orders").is_none(),
            "the last replica takes the topic"
        );
        let stray = dir.path().join(datadir::renamed_partition_dir(
            "orders",
            5,
            id,
            STRAY_SUFFIX,
        ));
        assert!(stray.join(datadir::PARTITION_METADATA).exists(), "kept");
        reg.close_all();
        drop(reg);
        assert!(
            registry(dir.path()).get("orders").is_none(),
            "strays are not loaded"
        );
    }

    #[test]
    fn a_recreated_topic_waits_for_the_old_replica_to_go() {
        let dir = tempfile::tempdir().unwrap();
        let reg = registry(dir.path());
        let (old, new) = (Uuid::new_v4(), Uuid::new_v4());
        let none = BTreeMap::new();
        reg.ensure_replica("t", old, 0, &none).unwrap();
        let e = reg.ensure_replica("t", new, 0, &none).unwrap_err();
        assert_eq!(e.code, ResponseError::TopicAlreadyExists);
        reg.remove_replica(old, 0).unwrap();
        assert!(reg.ensure_replica("t", new, 0, &none).unwrap());
        assert_eq!(reg.get("t").unwrap().id, new);
    }
}
