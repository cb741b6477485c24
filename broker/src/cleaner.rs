//! The log cleaner's scheduling (Kafka's `LogCleaner` and `LogCleanerManager`): which
//! compacted partition logs to clean, when, with which options, and what the cleans did.
//! The cleaning itself is the storage's (`sluice_storage::PartitionLog::clean`).
//!
//! A pass, on a blocking thread, looks at every local log of a topic whose
//! `cleanup.policy` includes `compact` (leaders and followers alike: each replica cleans
//! its own log, as in Kafka) and cleans, dirtiest first, those whose dirty ratio reached
//! the topic's `min.cleanable.dirty.ratio`, and those with dirty bytes not cleaned for
//! `max.compaction.lag.ms`. Up to `log.cleaner.threads` logs are cleaned at once, the
//! dedupe buffer shared between them and the I/O rate split between them. A clean stops
//! at the high watermark (a follower's copy never holds what it might truncate). After a
//! pass in which a clean made progress the next starts at once; otherwise (nothing due, or
//! every clean failed or could not advance) the cleaner sleeps `log.cleaner.backoff.ms`. It runs only while the broker serves (its topic configs are
//! then the cluster's).
//!
//! The `log.cleaner.*` settings are dynamic broker configs: a pass reads the ones in
//! force (see `dynamic_config`). `log.cleaner.enable=false` runs no cleaner at all.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use sluice_storage::{CleanOptions, PartitionLog};
use tokio::sync::watch;

use crate::config::CleanerConfig;
use crate::state::BrokerState;
use crate::topic_config::TopicConfig;

/// What the cleaner knows of one partition log, for metrics and status.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PartitionStatus {
    /// Dirty bytes over cleanable bytes, as of the last pass.
    pub dirty_ratio: f64,
    /// When its last clean finished (ms since the epoch).
    pub last_clean_ms: Option<i64>,
    /// The error of its last clean, if it failed.
    pub last_error: Option<String>,
}

/// Totals since start, for metrics.
#[derive(Debug, Default)]
pub struct CleanerTotals {
    pub cleans: AtomicU64,
    pub failures: AtomicU64,
    pub bytes_read: AtomicU64,
    pub bytes_written: AtomicU64,
    pub records_removed: AtomicU64,
    /// Cleaning time, microseconds.
    pub busy_micros: AtomicU64,
}

/// See the module docs.
pub struct LogCleaner {
    config: RwLock<CleanerConfig>,
    /// When this process started (the lag of a log never cleaned counts from there).
    started_ms: i64,
    status: Mutex<HashMap<(Arc<str>, i32), PartitionStatus>>,
    pub totals: CleanerTotals,
}

/// A log the pass will clean.
struct Candidate {
    topic: Arc<str>,
    partition: i32,
    log: PartitionLog,
    config: TopicConfig,
    dirty_ratio: f64,
    /// Where the clean starts: a clean that moves it on made progress.
    first_dirty_offset: i64,
}

impl LogCleaner {
    pub fn new(config: &CleanerConfig) -> LogCleaner {
        LogCleaner {
            config: RwLock::new(config.clone()),
            started_ms: sluice_storage::now_ms(),
            status: Mutex::new(HashMap::new()),
            totals: CleanerTotals::default(),
        }
    }

    /// Takes new settings (a dynamic broker config changed); the next pass uses them.
    pub fn set_config(&self, config: CleanerConfig) {
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = config;
    }

    pub fn config(&self) -> CleanerConfig {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Every cleaned or examined partition's status.
    pub fn statuses(&self) -> Vec<((Arc<str>, i32), PartitionStatus)> {
        let status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<_> = status.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    fn update(&self, topic: &Arc<str>, partition: i32, f: impl FnOnce(&mut PartitionStatus)) {
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        f(status.entry((topic.clone(), partition)).or_default());
    }

    /// Forgets the partitions no longer here (deleted topics, moved replicas).
    fn retain(&self, present: &std::collections::HashSet<(Arc<str>, i32)>) {
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        status.retain(|k, _| present.contains(k));
    }
}

/// The options of one clean of `log` by one of `threads` threads.
fn options(
    cleaner: &CleanerConfig,
    threads: usize,
    topic: &TopicConfig,
    log: &PartitionLog,
    now_ms: i64,
) -> CleanOptions {
    let threads = threads.max(1);
    CleanOptions {
        dedupe_buffer_bytes: cleaner.dedupe_buffer_bytes / threads,
        delete_retention_ms: topic.delete_retention_ms,
        min_compaction_lag_ms: topic.min_compaction_lag_ms,
        now_ms,
        io_max_bytes_per_sec: cleaner
            .io_max_bytes_per_sec
            .map(|rate| (rate / threads as u64).max(1)),
        max_offset: log.high_watermark(),
    }
}

/// Runs cleaner passes until shutdown (see the module docs).
pub async fn run(state: Arc<BrokerState>, mut shutdown: watch::Receiver<bool>) {
    if !state.cleaner.config().enable {
        // Kafka warns likewise: the offsets topic relies on the cleaner to stay small.
        tracing::warn!(
            "log cleaner disabled (log.cleaner.enable=false): compacted topics, \
             __consumer_offsets among them, are not cleaned and grow without bound"
        );
        return;
    }
    loop {
        let config = state.cleaner.config();
        let serving = state.lifecycle.phase() == crate::admin::Phase::Serving;
        let cleaned = if serving && config.threads > 0 {
            let pass_state = state.clone();
            match tokio::task::spawn_blocking(move || pass(&pass_state, sluice_storage::now_ms()))
                .await
            {
                Ok(cleaned) => cleaned,
                Err(e) => {
                    tracing::error!(error = %e, "log cleaner pass panicked");
                    0
                }
            }
        } else {
            0
        };
        if *shutdown.borrow() {
            return;
        }
        if cleaned > 0 {
            // More may be dirty (a clean stops where its offset map filled).
            continue;
        }
        let backoff = Duration::from_millis(config.backoff_ms.max(100));
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// One pass: looks at every compacted log and cleans those due. Returns how many cleans
/// made progress (moved their log's first dirty offset on): only then does the next pass
/// start at once, so a clean that fails or cannot advance waits for the backoff
/// (blocking).
pub fn pass(state: &BrokerState, now_ms: i64) -> usize {
    let cleaner = &state.cleaner;
    let config = cleaner.config();
    let threads = config.threads.max(1);
    let mut due = Vec::new();
    let mut present = std::collections::HashSet::new();
    for topic in state.topics.list() {
        let topic_config = topic.config();
        if !topic_config.compacts() {
            continue;
        }
        for partition in topic.partitions().iter() {
            let log = partition.log.clone();
            if log.is_offline() || log.load_error().is_some() {
                continue;
            }
            present.insert((topic.name.clone(), partition.index));
            let opts = options(&config, threads, &topic_config, &log, now_ms);
            let cleanable = match log.cleanable(&opts) {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!(topic = %topic.name, partition = partition.index, error = %e, "cannot size the dirty part of a log");
                    continue;
                }
            };
            let ratio = cleanable.dirty_ratio();
            let mut last_clean = None;
            cleaner.update(&topic.name, partition.index, |s| {
                s.dirty_ratio = ratio;
                last_clean = s.last_clean_ms;
            });
            if cleanable.dirty_bytes == 0 {
                continue;
            }
            // max.compaction.lag.ms: dirty bytes wait at most that long (counted from the
            // last clean, or from start for a log never cleaned here).
            let overdue = topic_config.max_compaction_lag_ms < i64::MAX
                && now_ms.saturating_sub(last_clean.unwrap_or(cleaner.started_ms))
                    >= topic_config.max_compaction_lag_ms;
            if ratio >= topic_config.min_cleanable_dirty_ratio || overdue {
                due.push(Candidate {
                    topic: topic.name.clone(),
                    partition: partition.index,
                    log,
                    config: topic_config.clone(),
                    dirty_ratio: ratio,
                    first_dirty_offset: cleanable.first_dirty_offset,
                });
            }
        }
    }
    cleaner.retain(&present);
    // The dirtiest first, as Kafka's LogCleanerManager picks them.
    due.sort_by(|a, b| b.dirty_ratio.total_cmp(&a.dirty_ratio));
    let count = due.len();
    if count == 0 {
        return 0;
    }
    let queue = Mutex::new(due.into_iter());
    let progressed = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for _ in 0..threads.min(count) {
            scope.spawn(|| loop {
                let next = queue.lock().unwrap_or_else(|p| p.into_inner()).next();
                let Some(candidate) = next else {
                    return;
                };
                if clean_one(state, &config, threads, candidate) {
                    progressed.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    progressed.load(Ordering::Relaxed) as usize
}

/// Cleans one log; whether its first dirty offset moved on.
fn clean_one(state: &BrokerState, config: &CleanerConfig, threads: usize, c: Candidate) -> bool {
    let cleaner = &state.cleaner;
    let now = sluice_storage::now_ms();
    let opts = options(config, threads, &c.config, &c.log, now);
    match c.log.clean(&opts) {
        Ok(outcome) => {
            let t = &cleaner.totals;
            t.cleans.fetch_add(1, Ordering::Relaxed);
            t.bytes_read
                .fetch_add(outcome.bytes_read, Ordering::Relaxed);
            t.bytes_written
                .fetch_add(outcome.bytes_written, Ordering::Relaxed);
            t.records_removed
                .fetch_add(outcome.records_removed, Ordering::Relaxed);
            t.busy_micros
                .fetch_add(outcome.elapsed.as_micros() as u64, Ordering::Relaxed);
            cleaner.update(&c.topic, c.partition, |s| {
                s.dirty_ratio = outcome.dirty_ratio_after;
                s.last_clean_ms = Some(sluice_storage::now_ms());
                s.last_error = None;
            });
            tracing::info!(
                topic = %c.topic,
                partition = c.partition,
                read_bytes = outcome.bytes_read,
                written_bytes = outcome.bytes_written,
                records_removed = outcome.records_removed,
                segments_replaced = outcome.segments_replaced,
                dirty_ratio_before = outcome.dirty_ratio_before,
                dirty_ratio_after = outcome.dirty_ratio_after,
                elapsed_ms = outcome.elapsed.as_millis() as u64,
                interrupted = outcome.interrupted,
                "cleaned log"
            );
            outcome.first_dirty_offset > c.first_dirty_offset
        }
        Err(e) => {
            cleaner.totals.failures.fetch_add(1, Ordering::Relaxed);
            let message = e.to_string();
            let mut first = true;
            cleaner.update(&c.topic, c.partition, |s| {
                first = s.last_error.as_deref() != Some(message.as_str());
                s.last_error = Some(message.clone());
            });
            // Once per distinct error: a damaged log fails every pass the same way.
            if first {
                tracing::warn!(topic = %c.topic, partition = c.partition, error = %message, "cleaning a log failed; retried at every pass, logged again if the error changes");
            }
            false
        }
    }
}
