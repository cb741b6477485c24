//! The topic registry: which topics exist, their ids, configs and partition logs.
//!
//! In memory: a map name -> [`Topic`] and id -> [`Topic`] behind one `RwLock`, held only
//! for lookups and pointer swaps. Each topic keeps its partitions as an
//! `Arc<Vec<Arc<Partition>>>` snapshot, so the hot paths (produce, fetch) clone an `Arc`
//! and never hold a lock across I/O. Admin operations that change files (create, delete,
//! add partitions, alter configs) are serialized by one mutex and run on blocking threads
//! (they fsync).
//!
//! On disk (see `datadir` for the formats):
//! - `<topic>-<p>/` with `partition.metadata` (the topic id) and the segment files: a
//!   topic exists exactly when its partition 0 directory does, and has as many partitions
//!   as the highest partition directory + 1.
//! - `topic-configs.toml`: every topic's config overrides, rewritten atomically whenever
//!   one changes. Entries of topics without partition directories are ignored at load.
//!
//! Limits: the broker's partition limit (`limits`, `max.broker.partitions`) is checked
//! before a create or an add touches any file; the internal `__consumer_offsets` is
//! counted but never refused (the broker cannot serve groups without it).
//!
//! Crash safety of the multi-step operations:
//! - create is all or nothing: configs file, then the partitions from the last down to
//!   partition 0, each a directory + `partition.metadata` (atomic) + the log files. The
//!   topic exists only once partition 0 does, so a crash part-way leaves directories
//!   that the next load removes as an interrupted delete (below), never a topic with
//!   some of its partitions. A failure part-way (out of descriptors, disk full) closes
//!   and removes what was made, the failed partition's directory included, and drops
//!   the topic's configs again.
//! - delete: logs closed, then directories renamed to `<dir>.<id>-delete` (the topic part
//!   cut to fit a 255-byte file name, as Kafka does) starting with
//!   partition 0, then removed. At load, `*-delete` directories are removed and a topic
//!   whose partition 0 is gone has its remaining partitions removed (the delete is
//!   finished).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use kafka_protocol::error::ResponseError;
use sluice_storage::{fsutil, Flusher, PartitionLog, StorageError};
use tokio::sync::Notify;
use uuid::Uuid;

mod replicas;

pub use replicas::STRAY_SUFFIX;

use crate::datadir;
use crate::errors::BrokerError;
use crate::limits::PartitionLimit;
use crate::metrics::PartitionTraffic;
use crate::replication::leader::Leadership;
use crate::topic_config::{FlushMode, TopicConfig};

const TOPIC_CONFIGS_FILE: &str = "topic-configs.toml";
const DELETE_SUFFIX: &str = "-delete";

/// Topics Kafka treats as internal.
pub fn is_internal(name: &str) -> bool {
    name == "__consumer_offsets" || name == "__transaction_state"
}

/// Kafka's topic name rule: 1-249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("Topic name is illegal, it can't be empty".to_owned());
    }
    if name == "." || name == ".." {
        return Err("Topic name cannot be \".\" or \"..\"".to_owned());
    }
    if name.len() > 249 {
        return Err(format!(
            "Topic name is illegal, it can't be longer than 249 characters, topic name: {name}"
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return Err(format!(
            "Topic name \"{name}\" is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'"
        ));
    }
    Ok(())
}

/// An admin operation's failure, as the Kafka error and message the client gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminError {
    pub code: ResponseError,
    pub message: String,
}

impl AdminError {
    pub fn new(code: ResponseError, message: impl Into<String>) -> Self {
        AdminError {
            code,
            message: message.into(),
        }
    }
}

impl From<StorageError> for AdminError {
    fn from(e: StorageError) -> Self {
        AdminError::new(crate::errors::storage_error_code(&e), e.to_string())
    }
}

impl From<BrokerError> for AdminError {
    fn from(e: BrokerError) -> Self {
        match e {
            BrokerError::Storage(s) => s.into(),
            other => AdminError::new(ResponseError::KafkaStorageError, other.to_string()),
        }
    }
}

/// One partition: its log, the notification long-polling fetches wait on, and this
/// broker's leadership of it (see `replication::leader`).
pub struct Partition {
    pub topic: Arc<str>,
    pub index: i32,
    pub log: PartitionLog,
    appended: Notify,
    /// The leader's state while this broker leads the partition: followers, ISR, high
    /// watermark rules, acks=all waits.
    pub leadership: Leadership,
    /// While this broker follows the partition: the high watermark its leader reported in
    /// the last fetch answer, unclamped (the local one stops at the local log end), so
    /// that [`Partition::replica_lag`] can say how far behind this copy is. -1 before any.
    leader_high_watermark: AtomicI64,
    /// Bytes and records produced to and consumed from this partition (metrics).
    pub traffic: PartitionTraffic,
}

impl Partition {
    /// `sole_replica`: the partition of a single node of an earlier release (no
    /// metadata, no replicas), whose high watermark is its log end.
    /// `isr_check` wakes the leader task (see `replication::leader`).
    fn new(
        topic: Arc<str>,
        index: i32,
        log: PartitionLog,
        sole_replica: bool,
        isr_check: &Arc<Notify>,
    ) -> Self {
        Partition {
            topic,
            index,
            log,
            appended: Notify::new(),
            leadership: Leadership::new(sole_replica, isr_check.clone()),
            leader_high_watermark: AtomicI64::new(-1),
            traffic: PartitionTraffic::default(),
        }
    }

    /// Records the high watermark the partition's leader reported to this follower.
    pub fn note_leader_high_watermark(&self, high_watermark: i64) {
        self.leader_high_watermark
            .store(high_watermark, Ordering::Relaxed);
    }

    /// How many records this replica's log end is below the partition's high watermark
    /// (DescribeLogDirs' `offset_lag`): 0 on the leader, and on a follower the leader's
    /// last reported high watermark minus the local log end, at least 0. An in-sync
    /// follower is at 0 or close (the high watermark waits for it); an out-of-sync one
    /// shows how far it has to catch up.
    pub fn replica_lag(&self) -> i64 {
        let end = self.log.log_end_offset();
        let mut high_watermark = self.log.high_watermark();
        if self.leadership.leader_epoch().is_none() {
            high_watermark = high_watermark.max(self.leader_high_watermark.load(Ordering::Relaxed));
        }
        (high_watermark - end).max(0)
    }

    /// Wakes every fetch waiting for data on this partition (called after appends).
    pub fn notify_appended(&self) {
        self.appended.notify_waiters();
    }

    /// A future completing at the next [`notify_appended`](Self::notify_appended). Call
    /// `enable()` on it before checking for data, so an append in between is not missed.
    pub fn appended(&self) -> tokio::sync::futures::Notified<'_> {
        self.appended.notified()
    }
}

impl std::fmt::Debug for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.topic, self.index)
    }
}

impl std::fmt::Debug for Topic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topic")
            .field("name", &self.name)
            .field("id", &self.id)
            .field("partitions", &self.partition_count())
            .finish()
    }
}

/// A topic.
pub struct Topic {
    pub name: Arc<str>,
    pub id: Uuid,
    overrides: RwLock<BTreeMap<String, String>>,
    config: RwLock<TopicConfig>,
    partitions: RwLock<Arc<Vec<Arc<Partition>>>>,
    /// The traffic of partitions that left this broker (a replica removed or set
    /// aside), so that the topic's counters never go down while it stays here.
    pub retired: PartitionTraffic,
}

impl Topic {
    /// The partitions, as a snapshot.
    pub fn partitions(&self) -> Arc<Vec<Arc<Partition>>> {
        self.partitions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Partition `index`, if this broker hosts it.
    pub fn partition(&self, index: i32) -> Option<Arc<Partition>> {
        let partitions = self.partitions();
        // Sorted by index: dense (0..n) on a single node, so the position is the index;
        // a cluster broker hosts a subset.
        match usize::try_from(index).ok().and_then(|i| partitions.get(i)) {
            Some(p) if p.index == index => Some(p.clone()),
            _ => partitions
                .binary_search_by_key(&index, |p| p.index)
                .ok()
                .map(|i| partitions[i].clone()),
        }
    }

    /// How many of the topic's partitions this broker hosts (all of them on a single node).
    pub fn partition_count(&self) -> usize {
        self.partitions().len()
    }

    /// The config overrides set on this topic.
    pub fn overrides(&self) -> BTreeMap<String, String> {
        self.overrides
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The effective config.
    pub fn config(&self) -> TopicConfig {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn is_internal(&self) -> bool {
        is_internal(&self.name)
    }
}

#[derive(Default)]
struct Maps {
    by_name: HashMap<Arc<str>, Arc<Topic>>,
    by_id: HashMap<Uuid, Arc<Topic>>,
}

/// What loading the data directory found.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    pub topics: usize,
    pub partitions: usize,
    /// Partitions whose logs recovery truncated: (topic, partition, bytes cut).
    pub truncated: Vec<(String, i32, u64)>,
    /// Partitions whose logs could not be opened and are served offline
    /// (KAFKA_STORAGE_ERROR): (topic, partition, why).
    pub offline: Vec<(String, i32, String)>,
    /// Damaged ranges kept by recovery (each logged as an error): (topic, partition, range).
    pub damaged: Vec<(String, i32, sluice_storage::DamagedRange)>,
    pub segments_recovered: usize,
    pub elapsed: Duration,
}

/// How the partition directories of the data directory make up topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// A single-node broker holds every partition of its topics: a topic exists exactly
    /// when its partition 0 does (module docs).
    WholeTopics,
    /// A cluster broker holds the replicas the metadata assigned to it, any subset of a
    /// topic's partitions; which topics exist is the metadata's to say (see `cluster`).
    Replicas,
}

/// See the module docs.
pub struct TopicRegistry {
    data_dir: PathBuf,
    flusher: Flusher,
    /// The broker-level defaults: static, or changed by a dynamic broker config (see
    /// `dynamic_config` and [`TopicRegistry::set_defaults`]).
    defaults: RwLock<Arc<TopicConfig>>,
    flush_mode: FlushMode,
    maps: RwLock<Maps>,
    admin: Mutex<()>,
    /// Most partitions the broker accepts (see `limits`); set once the broker knows it.
    partition_limit: RwLock<PartitionLimit>,
    /// Whole topics of a single node of an earlier release: every partition's only
    /// replica is here, its high watermark is its log end.
    sole_replica: bool,
    /// Woken when a follower may join an ISR (see `replication::leader::run`).
    isr_check: Arc<Notify>,
    /// Directories of replicas whose creation failed part-way and whose removal failed
    /// too (out of descriptors): removed again by `remove_half_created` (see
    /// `replicas`).
    half_created: Mutex<Vec<(Arc<str>, i32, PathBuf)>>,
}

impl TopicRegistry {
    /// Opens every topic found in `data_dir`. `clean` says whether the last shutdown was
    /// orderly (then logs are not rescanned).
    pub fn load(
        data_dir: &Path,
        flusher: Flusher,
        defaults: TopicConfig,
        flush_mode: FlushMode,
        clean: bool,
        layout: Layout,
    ) -> Result<(TopicRegistry, LoadReport), BrokerError> {
        let started = Instant::now();
        let registry = TopicRegistry {
            data_dir: data_dir.to_owned(),
            flusher,
            defaults: RwLock::new(Arc::new(defaults)),
            flush_mode,
            maps: RwLock::new(Maps::default()),
            admin: Mutex::new(()),
            partition_limit: RwLock::new(PartitionLimit::unlimited()),
            sole_replica: layout == Layout::WholeTopics,
            isr_check: Arc::new(Notify::new()),
            half_created: Mutex::new(Vec::new()),
        };
        let mut report = LoadReport::default();
        let overrides_by_topic = registry.read_configs_file()?;

        // topic -> partition -> dir
        let mut found: BTreeMap<String, BTreeMap<i32, PathBuf>> = BTreeMap::new();
        let entries = std::fs::read_dir(data_dir)
            .map_err(|e| BrokerError::io(format!("list {}", data_dir.display()), e))?;
        for entry in entries {
            let entry =
                entry.map_err(|e| BrokerError::io(format!("list {}", data_dir.display()), e))?;
            let path = entry.path();
            if !path.is_dir() {
                continue;
            }
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if name.ends_with(DELETE_SUFFIX) {
                tracing::info!(dir = %path.display(), "removing the rest of a deleted partition");
                remove_dir(&path)?;
                continue;
            }
            let Some((topic, partition)) = datadir::parse_partition_dir(&name) else {
                continue;
            };
            if validate_topic_name(topic).is_err() || name == crate::cluster::METADATA_DIR {
                continue;
            }
            found
                .entry(topic.to_owned())
                .or_default()
                .insert(partition, path);
        }

        for (name, dirs) in found {
            if layout == Layout::WholeTopics && !dirs.contains_key(&0) {
                tracing::warn!(
                    topic = %name,
                    "partition 0 is missing: finishing an interrupted topic deletion"
                );
                for dir in dirs.values() {
                    remove_dir(dir)?;
                }
                continue;
            }
            // The topic id is the one the partitions agree on. A partition whose
            // `partition.metadata` cannot be read, or names another id, goes offline alone
            // (below), like one whose log files cannot be opened: its files are left as
            // they are for an operator to repair.
            let mut ids: Vec<(i32, Uuid)> = Vec::new();
            let mut bad_metadata: HashMap<i32, String> = HashMap::new();
            for (&index, dir) in &dirs {
                match datadir::read_partition_metadata(dir) {
                    Ok(Some(id)) => ids.push((index, id)),
                    Ok(None) => {}
                    Err(e) => {
                        bad_metadata.insert(index, e.to_string());
                    }
                }
            }
            // Partition 0's id wins (it is written last at create and renamed first at
            // delete); without it, the lowest partition's.
            let Some(topic_id) = ids.first().map(|&(_, id)| id) else {
                if let Some((index, reason)) = bad_metadata.into_iter().min() {
                    // No partition says which topic this is: serving it under a guessed id
                    // could mix it with another topic of the same name.
                    return Err(BrokerError::BadMetadata {
                        path: dirs[&index].join(datadir::PARTITION_METADATA),
                        reason: format!("no partition of {name} has a readable topic id: {reason}"),
                    });
                }
                tracing::warn!(topic = %name, "no partition.metadata in any partition directory; ignoring the topic's directories");
                continue;
            };
            for &(index, id) in &ids {
                if id != topic_id {
                    bad_metadata.insert(
                        index,
                        format!(
                            "{}: topic id {} differs from the id of the other partitions of {name} ({})",
                            dirs[&index].join(datadir::PARTITION_METADATA).display(),
                            datadir::uuid_to_base64(id),
                            datadir::uuid_to_base64(topic_id)
                        ),
                    );
                }
            }
            let overrides = overrides_by_topic.get(&name).cloned().unwrap_or_default();
            let defaults = registry.defaults();
            let config = match defaults.with_overrides(&overrides) {
                Ok(config) => config,
                Err(e) => {
                    tracing::error!(topic = %name, error = %e, "ignoring invalid stored topic config");
                    (*defaults).clone()
                }
            };
            // A whole topic has every partition up to the highest (a missing directory is
            // made again); a cluster broker has the replicas it found.
            let indexes: Vec<i32> = match layout {
                Layout::WholeTopics => (0..dirs.keys().max().map_or(0, |max| max + 1)).collect(),
                Layout::Replicas => dirs.keys().copied().collect(),
            };
            let name: Arc<str> = Arc::from(name.as_str());
            let mut partitions = Vec::with_capacity(indexes.len());
            for index in indexes {
                let dir = datadir::partition_dir(data_dir, &name, index);
                let log_config = config.to_log_config(registry.flush_mode);
                let opened = match bad_metadata.get(&index) {
                    Some(reason) => Err(StorageError::Unavailable {
                        path: dir.clone(),
                        reason: reason.clone(),
                    }),
                    None => {
                        if !dirs.contains_key(&index)
                            || datadir::read_partition_metadata(&dir)?.is_none()
                        {
                            datadir::write_partition_metadata(&dir, topic_id)?;
                        }
                        PartitionLog::open(&dir, log_config.clone(), &registry.flusher, clean)
                    }
                };
                let (log, open) = match opened {
                    Ok(opened) => opened,
                    // Out of descriptors is the process's limit, not this partition's
                    // fault: every partition after it would fail the same way. The start
                    // stops and says to raise the limit (see `limits`), rather than serve
                    // with healthy partitions offline.
                    Err(e) if crate::errors::is_out_of_files(&e) => return Err(e.into()),
                    Err(e) => {
                        // One partition whose files cannot be opened (unreadable, a
                        // directory in place of a file, overlapping segments) goes offline
                        // with KAFKA_STORAGE_ERROR; the broker and every other partition
                        // serve on. Nothing in its directory is touched.
                        tracing::error!(
                            topic = %name,
                            partition = index,
                            dir = %dir.display(),
                            error = %e,
                            "cannot load partition; it is offline until repaired and the broker restarted"
                        );
                        let reason = match e {
                            StorageError::Unavailable { reason, .. } => reason,
                            other => other.to_string(),
                        };
                        report
                            .offline
                            .push((name.to_string(), index, reason.clone()));
                        let log =
                            PartitionLog::unavailable(&dir, log_config, &registry.flusher, reason);
                        partitions.push(Arc::new(Partition::new(
                            name.clone(),
                            index,
                            log,
                            registry.sole_replica,
                            &registry.isr_check,
                        )));
                        continue;
                    }
                };
                report.segments_recovered += open.segments_recovered;
                report.damaged.extend(
                    open.damaged
                        .into_iter()
                        .map(|range| (name.to_string(), index, range)),
                );
                if open.bytes_truncated > 0 {
                    tracing::warn!(
                        topic = %name,
                        partition = index,
                        bytes = open.bytes_truncated,
                        log_end_offset = open.log_end_offset,
                        "recovery truncated partition"
                    );
                    report
                        .truncated
                        .push((name.to_string(), index, open.bytes_truncated));
                }
                partitions.push(Arc::new(Partition::new(
                    name.clone(),
                    index,
                    log,
                    registry.sole_replica,
                    &registry.isr_check,
                )));
            }
            report.topics += 1;
            report.partitions += partitions.len();
            let topic = Arc::new(Topic {
                name: name.clone(),
                id: topic_id,
                overrides: RwLock::new(overrides),
                config: RwLock::new(config),
                partitions: RwLock::new(Arc::new(partitions)),
                retired: Default::default(),
            });
            let mut maps = registry.write_maps();
            maps.by_id.insert(topic_id, topic.clone());
            maps.by_name.insert(name, topic);
        }
        report.elapsed = started.elapsed();
        Ok((registry, report))
    }

    fn read_maps(&self) -> std::sync::RwLockReadGuard<'_, Maps> {
        // Map updates are single inserts/removes; a poisoned lock is still consistent.
        self.maps.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_maps(&self) -> std::sync::RwLockWriteGuard<'_, Maps> {
        self.maps.write().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_admin(&self) -> MutexGuard<'_, ()> {
        self.admin.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets the partition limit that creates and adds are checked against.
    pub fn set_partition_limit(&self, limit: PartitionLimit) {
        *self
            .partition_limit
            .write()
            .unwrap_or_else(|p| p.into_inner()) = limit;
    }

    /// Notified when a follower of a partition led here may join its ISR: the leader task
    /// then asks the controller at once instead of at its next tick.
    pub fn isr_check(&self) -> &Notify {
        &self.isr_check
    }

    pub fn partition_limit(&self) -> PartitionLimit {
        self.partition_limit
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Partitions of every topic, the internal ones included.
    pub fn partition_total(&self) -> usize {
        self.read_maps()
            .by_name
            .values()
            .map(|t| t.partition_count())
            .sum()
    }

    /// Refuses `adding` more partitions for `topic` when the broker would pass its
    /// partition limit. Checked before any file is made, so a refused request leaves
    /// nothing behind (an operation half-done by running out of descriptors would).
    pub(crate) fn check_partition_limit(
        &self,
        topic: &str,
        adding: usize,
    ) -> Result<(), AdminError> {
        if is_internal(topic) {
            return Ok(());
        }
        let limit = self.partition_limit();
        let current = self.partition_total();
        if current.saturating_add(adding) > limit.max {
            return Err(AdminError::new(
                ResponseError::PolicyViolation,
                format!(
                    "Adding {adding} partition(s) for topic '{topic}' would bring this broker to {} \
                     partitions, over its limit of {} ({}).",
                    current.saturating_add(adding),
                    limit.max,
                    limit.source
                ),
            ));
        }
        Ok(())
    }

    /// The broker-level defaults of every topic config.
    pub fn defaults(&self) -> Arc<TopicConfig> {
        self.defaults
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Takes new broker-level defaults (a dynamic broker config changed) and applies
    /// them to every topic: what a topic overrides stays. Returns how many topics'
    /// configs changed. A topic whose overrides no longer validate against the new
    /// defaults keeps its current config (and the refusal is logged).
    pub fn set_defaults(&self, defaults: TopicConfig) -> usize {
        let _admin = self.lock_admin();
        {
            let mut current = self.defaults.write().unwrap_or_else(|p| p.into_inner());
            if **current == defaults {
                return 0;
            }
            *current = Arc::new(defaults.clone());
        }
        let mut changed = 0;
        for topic in self.list() {
            let config = match defaults.with_overrides(&topic.overrides()) {
                Ok(config) => config,
                Err(e) => {
                    tracing::warn!(topic = %topic.name, error = %e, "topic keeps its config: its overrides do not validate against the new broker defaults");
                    continue;
                }
            };
            if topic.config() == config {
                continue;
            }
            let log_config = config.to_log_config(self.flush_mode);
            for p in topic.partitions().iter() {
                p.log.set_config(log_config.clone());
            }
            *topic.config.write().unwrap_or_else(|p| p.into_inner()) = config;
            changed += 1;
        }
        changed
    }

    pub fn flush_mode(&self) -> FlushMode {
        self.flush_mode
    }

    /// The data directory the registry was loaded from.
    /// What this data directory's logs did (syncs, rolls), for metrics.
    pub fn storage_stats(&self) -> &std::sync::Arc<sluice_storage::stats::StorageStats> {
        self.flusher.stats()
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn get(&self, name: &str) -> Option<Arc<Topic>> {
        self.read_maps().by_name.get(name).cloned()
    }

    pub fn get_by_id(&self, id: Uuid) -> Option<Arc<Topic>> {
        self.read_maps().by_id.get(&id).cloned()
    }

    /// Every topic, sorted by name.
    pub fn list(&self) -> Vec<Arc<Topic>> {
        let mut topics: Vec<_> = self.read_maps().by_name.values().cloned().collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        topics
    }

    /// Checks that a topic named `name` could be created now with `partitions` partitions
    /// and these overrides; returns the effective config.
    pub fn validate_new(
        &self,
        name: &str,
        partitions: i32,
        overrides: &BTreeMap<String, String>,
    ) -> Result<TopicConfig, AdminError> {
        validate_topic_name(name)
            .map_err(|m| AdminError::new(ResponseError::InvalidTopicException, m))?;
        if self.get(name).is_some() {
            return Err(AdminError::new(
                ResponseError::TopicAlreadyExists,
                format!("Topic '{name}' already exists."),
            ));
        }
        // Kafka refuses names that differ only in '.' vs '_' (they collide in metrics).
        let collision_key = name.replace('.', "_");
        if let Some(other) = self
            .read_maps()
            .by_name
            .keys()
            .find(|n| n.replace('.', "_") == collision_key)
        {
            return Err(AdminError::new(
                ResponseError::InvalidTopicException,
                format!("Topic '{name}' collides with existing topic: {other}"),
            ));
        }
        if partitions < 1 {
            return Err(AdminError::new(
                ResponseError::InvalidPartitions,
                "Number of partitions must be larger than 0.",
            ));
        }
        if partitions > MAX_PARTITIONS {
            return Err(AdminError::new(
                ResponseError::InvalidPartitions,
                format!("Number of partitions must be at most {MAX_PARTITIONS}."),
            ));
        }
        self.check_partition_limit(name, partitions as usize)?;
        self.defaults()
            .with_overrides(overrides)
            .map_err(|m| AdminError::new(ResponseError::InvalidConfig, m))
    }

    /// Creates a topic (blocking: creates files and fsyncs).
    pub fn create(
        &self,
        name: &str,
        partitions: i32,
        overrides: BTreeMap<String, String>,
    ) -> Result<Arc<Topic>, AdminError> {
        let _admin = self.lock_admin();
        let config = self.validate_new(name, partitions, &overrides)?;
        let id = loop {
            let id = Uuid::new_v4();
            // Kafka reserves the all-zero id and ids starting like the metadata topic's.
            if !id.is_nil() && self.get_by_id(id).is_none() {
                break id;
            }
        };
        let name: Arc<str> = Arc::from(name);
        if !overrides.is_empty() {
            self.write_configs_file(Some((&name, &overrides)), None)?;
        }
        // Partition 0 last: the topic exists on disk only once every partition does
        // (module docs).
        let mut opened = Vec::with_capacity(partitions as usize);
        for index in (0..partitions).rev() {
            match self.open_new_partition(&name, id, index, &config) {
                Ok(p) => opened.push(Arc::new(p)),
                Err(e) => {
                    tracing::warn!(topic = %name, partition = index, error = %e.message, "creating topic failed; removing what was made");
                    self.undo_new_partitions(&name, &opened, index);
                    if !overrides.is_empty() {
                        // Rewritten from the registered topics, which do not include
                        // this one: its configs go.
                        if let Err(e) = self.write_configs_file(None, None) {
                            tracing::error!(topic = %name, error = %e.message, "cannot drop the configs of a failed create");
                        }
                    }
                    return Err(e);
                }
            }
        }
        opened.reverse();
        let topic = Arc::new(Topic {
            name: name.clone(),
            id,
            overrides: RwLock::new(overrides),
            config: RwLock::new(config),
            partitions: RwLock::new(Arc::new(opened)),
            retired: Default::default(),
        });
        {
            let mut maps = self.write_maps();
            maps.by_id.insert(id, topic.clone());
            maps.by_name.insert(name.clone(), topic.clone());
        }
        tracing::info!(topic = %name, partitions, topic_id = %datadir::uuid_to_base64(id), "created topic");
        Ok(topic)
    }

    /// Removes the partitions a failed create or add made: `opened` and the directory of
    /// `failed`, which may hold a `partition.metadata` or some segment files. Logs are
    /// closed before anything is removed, so their descriptors are free again for the
    /// removal itself (a create that ran out of descriptors must still clean up). What
    /// cannot be removed is logged; a failed create never made partition 0, so the next
    /// load removes the rest.
    fn undo_new_partitions(&self, name: &str, opened: &[Arc<Partition>], failed: i32) {
        for p in opened {
            if let Err(e) = p.log.close() {
                tracing::warn!(topic = %name, partition = p.index, error = %e, "closing a partition of a failed create failed");
            }
        }
        let indexes = opened
            .iter()
            .map(|p| p.index)
            .chain(std::iter::once(failed));
        for index in indexes {
            let dir = datadir::partition_dir(&self.data_dir, name, index);
            if let Err(e) = remove_dir(&dir) {
                tracing::error!(topic = %name, partition = index, error = %e, "cannot remove partition directory of a failed create");
            }
        }
        if let Err(e) = fsutil::sync_dir(&self.data_dir) {
            tracing::error!(error = %e, "cannot sync the data directory after a failed create");
        }
    }

    fn open_new_partition(
        &self,
        name: &Arc<str>,
        id: Uuid,
        index: i32,
        config: &TopicConfig,
    ) -> Result<Partition, AdminError> {
        let dir = datadir::partition_dir(&self.data_dir, name, index);
        datadir::write_partition_metadata(&dir, id)?;
        let (log, _) = PartitionLog::open(
            &dir,
            config.to_log_config(self.flush_mode),
            &self.flusher,
            true,
        )?;
        Ok(Partition::new(
            name.clone(),
            index,
            log,
            self.sole_replica,
            &self.isr_check,
        ))
    }

    /// Deletes a topic and its files (blocking).
    pub fn delete(&self, topic: &Arc<Topic>) -> Result<(), AdminError> {
        let _admin = self.lock_admin();
        {
            let mut maps = self.write_maps();
            match maps.by_name.get(&topic.name) {
                Some(current) if Arc::ptr_eq(current, topic) => {}
                _ => {
                    return Err(AdminError::new(
                        ResponseError::UnknownTopicOrPartition,
                        "This server does not host this topic-partition.",
                    ))
                }
            }
            maps.by_name.remove(&topic.name);
            maps.by_id.remove(&topic.id);
        }
        let partitions = topic.partitions();
        for p in partitions.iter() {
            if let Err(e) = p.log.close() {
                tracing::warn!(topic = %topic.name, partition = p.index, error = %e, "closing a deleted partition failed");
            }
            // Wake long polls so they answer now instead of at their deadline.
            p.notify_appended();
        }
        let mut doomed = Vec::with_capacity(partitions.len());
        // Partition 0 first: once it is gone, a restart finishes the delete (module docs).
        for p in partitions.iter() {
            let dir = datadir::partition_dir(&self.data_dir, &topic.name, p.index);
            // Cut to the file-name limit: a 249-character topic name plus the suffix
            // would not fit (the rename failed with ENAMETOOLONG).
            let target = self.data_dir.join(datadir::renamed_partition_dir(
                &topic.name,
                p.index,
                topic.id,
                DELETE_SUFFIX,
            ));
            std::fs::rename(&dir, &target).map_err(|e| {
                tracing::error!(topic = %topic.name, dir = %dir.display(), error = %e, "deleting a topic failed: cannot rename its directory");
                AdminError::from(StorageError::io(format!("rename {}", dir.display()), e))
            })?;
            if p.index == 0 {
                fsutil::sync_dir(&self.data_dir)?;
            }
            doomed.push(target);
        }
        for dir in &doomed {
            remove_dir(dir)?;
        }
        fsutil::sync_dir(&self.data_dir)?;
        if !topic.overrides().is_empty() {
            self.write_configs_file(None, Some(&topic.name))?;
        }
        tracing::info!(topic = %topic.name, topic_id = %datadir::uuid_to_base64(topic.id), "deleted topic");
        Ok(())
    }

    /// Grows a topic to `count` partitions (blocking). With `validate_only`, only checks.
    pub fn add_partitions(
        &self,
        topic: &Arc<Topic>,
        count: i32,
        validate_only: bool,
    ) -> Result<(), AdminError> {
        let _admin = self.lock_admin();
        let current = topic.partition_count() as i32;
        if count < current {
            return Err(AdminError::new(
                ResponseError::InvalidPartitions,
                format!("Topic currently has {current} partitions, which is higher than the requested {count}."),
            ));
        }
        if count == current {
            return Err(AdminError::new(
                ResponseError::InvalidPartitions,
                format!("Topic already has {current} partitions."),
            ));
        }
        if count > MAX_PARTITIONS {
            return Err(AdminError::new(
                ResponseError::InvalidPartitions,
                format!("Number of partitions must be at most {MAX_PARTITIONS}."),
            ));
        }
        self.check_partition_limit(&topic.name, (count - current) as usize)?;
        if validate_only {
            return Ok(());
        }
        let config = topic.config();
        let mut partitions = topic.partitions().as_ref().clone();
        let mut added = Vec::with_capacity((count - current) as usize);
        for index in current..count {
            match self.open_new_partition(&topic.name, topic.id, index, &config) {
                Ok(p) => added.push(Arc::new(p)),
                Err(e) => {
                    tracing::warn!(topic = %topic.name, partition = index, error = %e.message, "adding partitions failed; removing the new ones");
                    self.undo_new_partitions(&topic.name, &added, index);
                    return Err(e);
                }
            }
        }
        partitions.extend(added);
        *topic.partitions.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(partitions);
        tracing::info!(topic = %topic.name, from = current, to = count, "added partitions");
        Ok(())
    }

    /// Replaces a topic's config overrides (blocking: persists them), applying them to
    /// every partition log.
    pub fn set_overrides(
        &self,
        topic: &Arc<Topic>,
        overrides: BTreeMap<String, String>,
    ) -> Result<(), AdminError> {
        let _admin = self.lock_admin();
        let config = self
            .defaults()
            .with_overrides(&overrides)
            .map_err(|m| AdminError::new(ResponseError::InvalidConfig, m))?;
        self.write_configs_file(Some((&topic.name, &overrides)), None)?;
        let log_config = config.to_log_config(self.flush_mode);
        for p in topic.partitions().iter() {
            p.log.set_config(log_config.clone());
        }
        *topic.config.write().unwrap_or_else(|p| p.into_inner()) = config;
        *topic.overrides.write().unwrap_or_else(|p| p.into_inner()) = overrides;
        tracing::info!(topic = %topic.name, "altered topic config");
        Ok(())
    }

    /// Closes every partition log (flushing it) and says how many failed to close and
    /// how many were never loaded (offline since start, see `PartitionLog::unavailable`).
    pub fn close_all(&self) -> CloseOutcome {
        let mut outcome = CloseOutcome::default();
        for topic in self.list() {
            for p in topic.partitions().iter() {
                if p.log.load_error().is_some() {
                    // Its files were never read: nothing to flush, but the next start must
                    // recover it rather than trust it (see `CloseOutcome`).
                    outcome.never_loaded += 1;
                    continue;
                }
                if let Err(e) = p.log.close() {
                    outcome.failed += 1;
                    tracing::error!(topic = %topic.name, partition = p.index, error = %e, "closing partition log failed");
                }
            }
        }
        outcome
    }

    fn read_configs_file(&self) -> Result<BTreeMap<String, BTreeMap<String, String>>, BrokerError> {
        let path = self.data_dir.join(TOPIC_CONFIGS_FILE);
        let Some(bytes) = fsutil::read_optional(&path)? else {
            return Ok(BTreeMap::new());
        };
        let bad = |reason: String| BrokerError::BadMetadata {
            path: path.clone(),
            reason,
        };
        let text = String::from_utf8(bytes).map_err(|_| bad("not UTF-8".to_owned()))?;
        let table: toml::Table = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
        let mut out = BTreeMap::new();
        if let Some(toml::Value::Table(topics)) = table.get("topics") {
            for (name, value) in topics {
                let toml::Value::Table(configs) = value else {
                    return Err(bad(format!("topics.{name} is not a table")));
                };
                let mut map = BTreeMap::new();
                for (k, v) in configs {
                    let toml::Value::String(v) = v else {
                        return Err(bad(format!("topics.{name}.{k} is not a string")));
                    };
                    map.insert(k.clone(), v.clone());
                }
                out.insert(name.clone(), map);
            }
        }
        Ok(out)
    }

    /// Rewrites the configs file from the registered topics, with `set` replacing one
    /// topic's overrides and `remove` dropping one topic.
    fn write_configs_file(
        &self,
        set: Option<(&str, &BTreeMap<String, String>)>,
        remove: Option<&str>,
    ) -> Result<(), AdminError> {
        let mut all: BTreeMap<String, BTreeMap<String, String>> = self
            .list()
            .iter()
            .map(|t| (t.name.to_string(), t.overrides()))
            .collect();
        if let Some((name, overrides)) = set {
            all.insert(name.to_owned(), overrides.clone());
        }
        if let Some(name) = remove {
            all.remove(name);
        }
        let mut topics = toml::Table::new();
        for (name, overrides) in all.into_iter().filter(|(_, o)| !o.is_empty()) {
            let table: toml::Table = overrides
                .into_iter()
                .map(|(k, v)| (k, toml::Value::String(v)))
                .collect();
            topics.insert(name, toml::Value::Table(table));
        }
        let mut root = toml::Table::new();
        root.insert("topics".to_owned(), toml::Value::Table(topics));
        let text = format!(
            "# Topic config overrides, written by sluice-broker. Do not edit while it runs.\n{}",
            toml::to_string(&root).map_err(|e| AdminError::new(
                ResponseError::UnknownServerError,
                format!("cannot encode topic configs: {e}")
            ))?
        );
        fsutil::write_atomically(&self.data_dir.join(TOPIC_CONFIGS_FILE), text.as_bytes())?;
        Ok(())
    }
}

/// Most partitions one topic may have (a guard against a request creating millions of
/// directories by mistake).
pub const MAX_PARTITIONS: i32 = 10_000;

fn remove_dir(dir: &Path) -> Result<(), BrokerError> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(BrokerError::io(format!("remove {}", dir.display()), e)),
    }
}

/// What closing every partition log at shutdown found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CloseOutcome {
    /// Logs whose close (flush, checkpoints) failed: the next start recovers them.
    pub failed: usize,
    /// Logs that could not be loaded at start and stayed offline. Their files were never
    /// read, so the data directory must not be marked clean: once an operator repairs
    /// them, the next start has to rescan them instead of trusting their indexes and tails.
    pub never_loaded: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(dir: &Path, clean: bool) -> TopicRegistry {
        let flusher = Flusher::start("test").unwrap();
        TopicRegistry::load(
            dir,
            flusher,
            TopicConfig::default(),
            FlushMode::Os,
            clean,
            Layout::WholeTopics,
        )
        .unwrap()
        .0
    }

    #[test]
    fn topic_names_follow_kafka() {
        assert!(validate_topic_name("a.b_c-D9").is_ok());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name(".").is_err());
        assert!(validate_topic_name("..").is_err());
        assert!(validate_topic_name("a/b").is_err());
        assert!(validate_topic_name(&"x".repeat(249)).is_ok());
        assert!(validate_topic_name(&"x".repeat(250)).is_err());
    }

    #[test]
    fn create_reload_delete() {
        let dir = tempfile::tempdir().unwrap();
        let reg = registry(dir.path(), true);
        let overrides: BTreeMap<_, _> = [("retention.ms".to_owned(), "1000".to_owned())].into();
        let t = reg.create("orders", 3, overrides.clone()).unwrap();
        assert_eq!(t.partition_count(), 3);
        assert_eq!(
            reg.create("orders", 1, BTreeMap::new()).unwrap_err().code,
            ResponseError::TopicAlreadyExists
        );
        reg.create("my_topic", 1, BTreeMap::new()).unwrap();
        assert_eq!(
            reg.create("my.topic", 1, BTreeMap::new()).unwrap_err().code,
            ResponseError::InvalidTopicException,
            "'.' and '_' collide"
        );
        assert_eq!(
            reg.create("x", 0, BTreeMap::new()).unwrap_err().code,
            ResponseError::InvalidPartitions
        );
        reg.add_partitions(&t, 5, false).unwrap();
        let id = t.id;
        assert_eq!(reg.close_all(), CloseOutcome::default());
        drop(reg);

        let reg = registry(dir.path(), true);
        let t = reg.get("orders").unwrap();
        assert_eq!(t.id, id);
        assert_eq!(t.partition_count(), 5);
        assert_eq!(t.overrides(), overrides);
        assert_eq!(t.config().retention_ms, 1000);
        assert!(reg.get_by_id(id).is_some());
        reg.delete(&t).unwrap();
        assert!(reg.get("orders").is_none());
        assert!(!dir.path().join("orders-0").exists());
        drop(reg);
        let reg = registry(dir.path(), false);
        let names: Vec<_> = reg.list().iter().map(|t| t.name.to_string()).collect();
        assert_eq!(names, vec!["my_topic".to_owned()]);
    }

    #[test]
    fn partition_limit_refuses_before_any_file_is_made() {
        let dir = tempfile::tempdir().unwrap();
        let reg = registry(dir.path(), true);
        reg.set_partition_limit(PartitionLimit {
            max: 5,
            source: "max.broker.partitions".to_owned(),
        });
        let t = reg.create("a", 3, BTreeMap::new()).unwrap();
        let refused = reg.create("b", 3, BTreeMap::new()).unwrap_err();
        assert_eq!(refused.code, ResponseError::PolicyViolation);
        assert!(
            refused
                .message
                .contains("limit of 5 (max.broker.partitions)"),
            "{}",
            refused.message
        );
        assert!(!dir.path().join("b-0").exists() && !dir.path().join("b-2").exists());
        assert_eq!(
            reg.validate_new("b", 3, &BTreeMap::new()).unwrap_err().code,
            ResponseError::PolicyViolation,
            "validate_only answers the same"
        );
        assert_eq!(
            reg.add_partitions(&t, 6, false).unwrap_err().code,
            ResponseError::PolicyViolation
        );
        assert!(!dir.path().join("a-3").exists());
        reg.add_partitions(&t, 5, false).unwrap();
        // The group coordinator's topic is counted, never refused.
        reg.create("__consumer_offsets", 2, BTreeMap::new())
            .unwrap();
        assert_eq!(reg.partition_total(), 7);
    }

    #[test]
    fn failed_create_leaves_no_partition_and_no_configs() {
        let dir = tempfile::tempdir().unwrap();
        let reg = registry(dir.path(), true);
        // A file where partition 1's directory should go makes the create fail there.
        std::fs::write(dir.path().join("t-1"), b"in the way").unwrap();
        let overrides: BTreeMap<_, _> = [("retention.ms".to_owned(), "1000".to_owned())].into();
        reg.create("t", 3, overrides.clone()).unwrap_err();
        assert!(reg.get("t").is_none());
        assert!(!dir.path().join("t-0").exists(), "partition 0 comes last");
        assert!(
            !dir.path().join("t-2").exists(),
            "made partitions are removed"
        );
        let configs = std::fs::read_to_string(dir.path().join(TOPIC_CONFIGS_FILE)).unwrap();
        assert!(!configs.contains("[topics.t]"), "{configs}");
        std::fs::remove_file(dir.path().join("t-1")).unwrap();
        let t = reg.create("t", 3, BTreeMap::new()).unwrap();
        assert_eq!(t.partition_count(), 3);
        assert!(t.overrides().is_empty());
        reg.close_all();
        drop(reg);
        let reg = registry(dir.path(), true);
        assert_eq!(
            reg.get("t").unwrap().config().retention_ms,
            TopicConfig::default().retention_ms
        );
    }

    #[test]
    fn create_interrupted_before_partition_0_is_removed_at_load() {
        let dir = tempfile::tempdir().unwrap();
        // What a crash leaves part-way through a create: the later partitions only.
        for index in [2, 1] {
            datadir::write_partition_metadata(
                &dir.path().join(format!("t-{index}")),
                Uuid::new_v4(),
            )
            .unwrap();
        }
        let reg = registry(dir.path(), false);
        assert!(reg.get("t").is_none());
        assert!(!dir.path().join("t-1").exists() && !dir.path().join("t-2").exists());
    }

    #[test]
    fn interrupted_delete_is_finished_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let reg = registry(dir.path(), true);
        reg.create("t", 2, BTreeMap::new()).unwrap();
        reg.close_all();
        drop(reg);
        // A crash after partition 0 was renamed away.
        std::fs::rename(dir.path().join("t-0"), dir.path().join("t-0.x-delete")).unwrap();
        let reg = registry(dir.path(), false);
        assert!(reg.get("t").is_none());
        assert!(!dir.path().join("t-1").exists());
        assert!(!dir.path().join("t-0.x-delete").exists());
    }
}
