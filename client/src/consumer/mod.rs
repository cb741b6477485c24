//! The consumer: reads records from assigned partitions, or from the partitions a
//! consumer group gives it.
//!
//! - [`Consumer::assign`]: read exactly these partitions. Starting positions come from
//!   the group's committed offsets when a `group_id` is set, else `auto_offset_reset`.
//! - [`Consumer::subscribe`]: join the group `group_id` for these topics; partitions are
//!   spread over the members ([`assignor`]) and move when members come and go
//!   ([`group`]). Rebalances happen inside [`Consumer::poll`].
//! - [`Consumer::poll`]: returns buffered records or waits for the next fetch answer
//!   (`fetcher`: pipelined fetches, every compression codec decoded).
//! - Positions: [`Consumer::seek`] (an offset), [`Consumer::seek_to`] (earliest, latest,
//!   a timestamp), [`Consumer::pause`] / [`Consumer::resume`].
//! - Commits: automatic every `auto_commit_interval` (at the start of `poll`, covering
//!   the records returned by earlier polls: at-least-once), before partitions are
//!   revoked and on [`Consumer::close`]; or manual with [`Consumer::commit`].
//!
//! Reads are `read_uncommitted`: records of aborted transactions are returned, control
//! batches are skipped.

pub mod assignor;
pub(crate) mod fetcher;
pub mod group;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
pub use sluice_storage::batch::TimestampType;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::offsets::{self, CommitIdentity, ListedOffset};
use crate::types::{Header, OffsetSpec, TopicPartition};
pub use assignor::Assignor;
use fetcher::{FetchConfig, Fetcher};
pub use group::GroupConfig;
use group::GroupMember;

/// Where to start when a partition has no committed offset (`auto.offset.reset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoOffsetReset {
    Earliest,
    Latest,
    /// Fail with [`Error::NoOffset`] / [`Error::OffsetOutOfRange`].
    None,
}

impl AutoOffsetReset {
    fn spec(self) -> Option<OffsetSpec> {
        match self {
            AutoOffsetReset::Earliest => Some(OffsetSpec::Earliest),
            AutoOffsetReset::Latest => Some(OffsetSpec::Latest),
            AutoOffsetReset::None => None,
        }
    }
}

/// Which records a fetch may return (`isolation.level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IsolationLevel {
    /// Everything up to the high watermark (the default, as in Kafka).
    #[default]
    ReadUncommitted,
    /// Only records of committed transactions, up to the last stable offset. Without
    /// transactional producers (Sluice has none yet) this is the same data.
    ReadCommitted,
}

impl IsolationLevel {
    /// The value of the Fetch request's `isolation_level` field.
    pub(crate) fn wire(self) -> i8 {
        match self {
            IsolationLevel::ReadUncommitted => 0,
            IsolationLevel::ReadCommitted => 1,
        }
    }
}

/// Consumer settings, named after Kafka's consumer configs.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// `group.id`: needed for `subscribe` and for commits.
    pub group_id: Option<String>,
    /// `auto.offset.reset` (default latest, as in Kafka).
    pub auto_offset_reset: AutoOffsetReset,
    /// `enable.auto.commit` (default true; only with a group id).
    pub enable_auto_commit: bool,
    /// `auto.commit.interval.ms` (default 5 s).
    pub auto_commit_interval: Duration,
    /// `fetch.min.bytes` (default 1).
    pub fetch_min_bytes: i32,
    /// `fetch.max.bytes` (default 50 MiB).
    pub fetch_max_bytes: i32,
    /// `max.partition.fetch.bytes` (default 1 MiB).
    pub max_partition_fetch_bytes: i32,
    /// `fetch.max.wait.ms` (default 500 ms).
    pub fetch_max_wait: Duration,
    /// `max.poll.records` (default 500).
    pub max_poll_records: usize,
    /// `check.crcs` (default true).
    pub check_crcs: bool,
    /// `isolation.level` (default read_uncommitted).
    pub isolation_level: IsolationLevel,
    /// Group membership settings (session timeout, assignors...).
    pub group: GroupConfig,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            group_id: None,
            auto_offset_reset: AutoOffsetReset::Latest,
            enable_auto_commit: true,
            auto_commit_interval: Duration::from_secs(5),
            fetch_min_bytes: 1,
            fetch_max_bytes: 50 * 1024 * 1024,
            max_partition_fetch_bytes: 1024 * 1024,
            fetch_max_wait: Duration::from_millis(500),
            max_poll_records: 500,
            check_crcs: true,
            isolation_level: IsolationLevel::ReadUncommitted,
            group: GroupConfig::default(),
        }
    }
}

impl ConsumerConfig {
    /// Checks the settings, as [`Consumer::new`] does, without a client. Messages use
    /// Kafka's property names.
    pub fn validate(&self) -> Result<()> {
        if self.max_poll_records == 0 {
            return Err(Error::InvalidArgument(
                "max.poll.records must be positive".into(),
            ));
        }
        if self.group.heartbeat_interval.is_zero()
            || self.group.heartbeat_interval >= self.group.session_timeout
        {
            return Err(Error::InvalidArgument(format!(
                "heartbeat.interval.ms must be positive and below session.timeout.ms ({} ms)",
                self.group.session_timeout.as_millis()
            )));
        }
        Ok(())
    }
}

/// One record read from a partition.
///
/// The topic name is shared by all records of a partition (cloning it is a reference
/// count); key, value and header values are slices of the fetch response, not copies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
    pub timestamp_type: TimestampType,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
}

impl ConsumerRecord {
    pub fn topic_partition(&self) -> TopicPartition {
        TopicPartition::new(&*self.topic, self.partition)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    None,
    Assigned,
    Subscribed,
}

/// A consumer; see the module docs. Not shared between tasks (`&mut self` methods).
pub struct Consumer {
    client: Client,
    config: ConsumerConfig,
    fetcher: Fetcher,
    mode: Mode,
    group: Option<GroupMember>,
    subscription: Vec<String>,
    last_auto_commit: Instant,
    /// What was last committed per partition, to skip unchanged commits.
    committed: HashMap<TopicPartition, i64>,
    /// The partition counts of the subscribed topics when the group last rebalanced.
    /// A change (partitions added, a topic deleted or created again) needs a new
    /// rebalance before its partitions are read, as in Kafka's consumer.
    subscribed_counts: BTreeMap<String, usize>,
    /// When those counts were last compared with fresh metadata.
    counts_checked: Instant,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("group_id", &self.config.group_id)
            .field("assignment", &self.fetcher.assignment())
            .finish()
    }
}

impl Consumer {
    pub fn new(client: Client, config: ConsumerConfig) -> Result<Consumer> {
        config.validate()?;
        let fetcher = Fetcher::new(
            client.clone(),
            FetchConfig {
                min_bytes: config.fetch_min_bytes,
                max_bytes: config.fetch_max_bytes,
                partition_max_bytes: config.max_partition_fetch_bytes,
                max_wait: config.fetch_max_wait,
                check_crcs: config.check_crcs,
                isolation_level: config.isolation_level,
            },
        );
        Ok(Consumer {
            client,
            config,
            fetcher,
            mode: Mode::None,
            group: None,
            subscription: Vec::new(),
            last_auto_commit: Instant::now(),
            committed: HashMap::new(),
            subscribed_counts: BTreeMap::new(),
            counts_checked: Instant::now(),
        })
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Reads exactly `partitions` (replacing any earlier assignment). Checks that they
    /// exist.
    pub async fn assign(&mut self, partitions: Vec<TopicPartition>) -> Result<()> {
        if self.mode == Mode::Subscribed {
            return Err(Error::InvalidArgument(
                "assign() cannot be used after subscribe()".into(),
            ));
        }
        for tp in &partitions {
            let info = self.client.topic(&tp.topic).await?;
            if info.partition(tp.partition).is_none() {
                return Err(Error::UnknownPartition {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                    count: info.partitions.len(),
                });
            }
        }
        let keep: Vec<TopicPartition> = partitions.clone();
        let drop: Vec<TopicPartition> = self
            .fetcher
            .assignment()
            .into_iter()
            .filter(|tp| !keep.contains(tp))
            .collect();
        self.fetcher.remove(&drop);
        self.fetcher.add(&partitions);
        self.mode = Mode::Assigned;
        Ok(())
    }

    /// Joins the consumer group for `topics`; partitions are assigned on the next
    /// [`Consumer::poll`]. Needs `group_id`.
    pub fn subscribe(&mut self, topics: Vec<String>) -> Result<()> {
        if self.mode == Mode::Assigned {
            return Err(Error::InvalidArgument(
                "subscribe() cannot be used after assign()".into(),
            ));
        }
        let Some(group) = self.config.group_id.clone() else {
            return Err(Error::InvalidArgument(
                "subscribe() needs a group id".into(),
            ));
        };
        if topics.is_empty() {
            return Err(Error::InvalidArgument(
                "subscribe() needs at least one topic".into(),
            ));
        }
        if self.group.is_none() {
            self.group = Some(GroupMember::new(
                self.client.clone(),
                group,
                self.config.group.clone(),
            )?);
        }
        self.subscription = topics;
        if let Some(group) = &self.group {
            group.request_rejoin();
        }
        self.mode = Mode::Subscribed;
        Ok(())
    }

    /// The partitions currently assigned.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.fetcher.assignment()
    }

    /// The group membership, when subscribed.
    pub fn group(&self) -> Option<&GroupMember> {
        self.group.as_ref()
    }

    /// The next offset `poll` returns for `tp`, once known.
    pub fn position(&self, tp: &TopicPartition) -> Option<i64> {
        self.fetcher.state(tp).and_then(|s| s.position)
    }

    /// The high watermark last seen for `tp` in a fetch answer.
    pub fn high_watermark(&self, tp: &TopicPartition) -> Option<i64> {
        self.fetcher.state(tp).and_then(|s| s.high_watermark)
    }

    /// The partitions whose fetches keep failing with errors the consumer retries by
    /// itself (a broker that cannot be reached, a topic that is gone, a leader that
    /// moved): since when, and the latest error. Empty while fetches succeed. For
    /// applications that want to tell their user why no records come.
    pub fn fetch_failures(&self) -> Vec<(TopicPartition, std::time::Instant, Error)> {
        self.fetcher
            .assignment()
            .into_iter()
            .filter_map(|tp| {
                let state = self.fetcher.state(&tp)?;
                if state.paused {
                    return None; // not fetched: an old failure says nothing
                }
                let (since, error) = state.failing.clone()?;
                Some((tp, since, error))
            })
            .collect()
    }

    /// Continues reading `tp` at `offset`.
    pub fn seek(&mut self, tp: &TopicPartition, offset: i64) -> Result<()> {
        if !self.fetcher.seek(tp, offset) {
            return Err(not_assigned(tp));
        }
        Ok(())
    }

    /// Continues reading each partition at the offset `spec` gives (looked up now).
    pub async fn seek_to(&mut self, partitions: &[TopicPartition], spec: OffsetSpec) -> Result<()> {
        for tp in partitions {
            if !self.fetcher.seek_to(tp, spec) {
                return Err(not_assigned(tp));
            }
        }
        self.resolve_resets().await
    }

    /// Stops returning (and fetching) records of these partitions until resumed.
    pub fn pause(&mut self, partitions: &[TopicPartition]) {
        for tp in partitions {
            if let Some(state) = self.fetcher.state_mut(tp) {
                state.paused = true;
            }
        }
    }

    pub fn resume(&mut self, partitions: &[TopicPartition]) {
        for tp in partitions {
            if let Some(state) = self.fetcher.state_mut(tp) {
                state.paused = false;
            }
        }
    }

    pub fn paused(&self) -> Vec<TopicPartition> {
        self.fetcher
            .assignment()
            .into_iter()
            .filter(|tp| self.fetcher.state(tp).is_some_and(|s| s.paused))
            .collect()
    }

    /// Returns the next records, waiting at most `timeout` for some to arrive. An empty
    /// vector means none arrived in time.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>> {
        let deadline = Instant::now() + timeout;
        loop {
            self.maybe_auto_commit().await?;
            self.check_subscribed_topics().await;
            self.maybe_rebalance().await?;
            self.resolve_positions().await?;
            // Answers that arrived meanwhile join the buffer, so that records keep
            // flowing from one fetch into the next without a wait in between.
            self.fetcher
                .apply_arrived(self.config.auto_offset_reset.spec())?;
            let records = self.fetcher.take(self.config.max_poll_records)?;
            // Pipelining: the next fetches go out before the caller gets these records.
            if self.fetcher.send_fetches() {
                // Let the fetch tasks start now. A task spawned on a busy tokio worker
                // waits in that worker's LIFO slot, where idle workers cannot take it,
                // until the spawning task yields; an application that keeps polling
                // while records are buffered would otherwise only send the request once
                // it runs out and waits, and every fetch's round trip would be lost.
                tokio::task::yield_now().await;
            }
            if !records.is_empty() {
                return Ok(records);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(records);
            }
            // In a group, wake up regularly to notice rebalances.
            let wait_until = if self.group.is_some() {
                deadline.min(now + Duration::from_millis(200))
            } else {
                deadline
            };
            self.fetcher
                .wait(wait_until, self.config.auto_offset_reset.spec())
                .await?;
        }
    }

    /// Commits the current positions of all assigned partitions to the group.
    pub async fn commit(&mut self) -> Result<()> {
        let positions = self.fetcher.positions();
        self.commit_offsets(&positions).await
    }

    /// Commits the given offsets (the next offset to read, per partition).
    pub async fn commit_offsets(&mut self, offsets: &[(TopicPartition, i64)]) -> Result<()> {
        let Some(group) = self.config.group_id.clone() else {
            return Err(Error::InvalidArgument("committing needs a group id".into()));
        };
        let identity = self
            .group
            .as_ref()
            .map_or_else(CommitIdentity::outside_group, GroupMember::identity);
        offsets::commit(&self.client, &group, &identity, offsets).await?;
        for (tp, offset) in offsets {
            self.committed.insert(tp.clone(), *offset);
        }
        Ok(())
    }

    /// The group's committed offsets for `partitions` (`None`: no commit yet).
    pub async fn committed(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, Option<i64>>> {
        let Some(group) = &self.config.group_id else {
            return Err(Error::InvalidArgument(
                "committed offsets need a group id".into(),
            ));
        };
        offsets::fetch_committed(&self.client, group, Some(partitions)).await
    }

    /// Looks up offsets (earliest, latest, by time) for any partitions.
    pub async fn offsets_for(
        &self,
        partitions: &[TopicPartition],
        spec: OffsetSpec,
    ) -> Result<HashMap<TopicPartition, ListedOffset>> {
        let specs: Vec<(TopicPartition, OffsetSpec)> =
            partitions.iter().map(|tp| (tp.clone(), spec)).collect();
        offsets::list_offsets(&self.client, &specs).await
    }

    /// Commits (with auto-commit on), leaves the group, and drops the assignment.
    pub async fn close(mut self) -> Result<()> {
        let mut result = Ok(());
        if self.auto_commits() {
            result = self.commit_changed().await;
        }
        if let Some(group) = self.group.as_mut() {
            if let Err(e) = group.leave().await {
                tracing::debug!(error = %e, "leaving the group failed");
            }
        }
        self.fetcher.clear();
        result
    }

    fn auto_commits(&self) -> bool {
        self.config.enable_auto_commit && self.config.group_id.is_some()
    }

    /// Commits positions that changed since the last commit.
    async fn commit_changed(&mut self) -> Result<()> {
        let changed: Vec<(TopicPartition, i64)> = self
            .fetcher
            .positions()
            .into_iter()
            .filter(|(tp, p)| self.committed.get(tp) != Some(p))
            .collect();
        if changed.is_empty() {
            return Ok(());
        }
        self.commit_offsets(&changed).await
    }

    async fn maybe_auto_commit(&mut self) -> Result<()> {
        if !self.auto_commits()
            || self.last_auto_commit.elapsed() < self.config.auto_commit_interval
        {
            return Ok(());
        }
        self.last_auto_commit = Instant::now();
        match self.commit_changed().await {
            // A rebalance will sort the assignment out; the next commit covers it.
            Err(Error::CommitFailed { .. }) => {
                if let Some(group) = &self.group {
                    group.request_rejoin();
                }
                Ok(())
            }
            other => other,
        }
    }

    async fn maybe_rebalance(&mut self) -> Result<()> {
        let Some(group) = self.group.as_ref() else {
            return Ok(());
        };
        if let Some(error) = group.take_error() {
            return Err(error);
        }
        if !group.needs_rejoin() {
            return Ok(());
        }
        let eager = group.is_eager();
        if eager {
            let owned = group.owned().to_vec();
            if !owned.is_empty() {
                self.commit_before_revoke(&owned).await;
                self.fetcher.remove(&owned);
            }
            if let Some(group) = self.group.as_mut() {
                group.revoke_all();
            }
        }
        let topics = self.subscription.clone();
        let Some(group) = self.group.as_mut() else {
            return Ok(());
        };
        let outcome = group.rebalance(&topics).await?;
        if !outcome.revoked.is_empty() {
            self.commit_before_revoke(&outcome.revoked).await;
            self.fetcher.remove(&outcome.revoked);
        }
        self.fetcher.add(&outcome.added);
        tracing::debug!(assigned = ?outcome.assigned, revoked = ?outcome.revoked, "rebalanced");
        self.subscribed_counts = self.partition_counts();
        self.counts_checked = Instant::now();
        Ok(())
    }

    /// Every `metadata.max.age.ms`, asks the cluster for the subscribed topics and
    /// requests a rebalance if their partition counts changed since the last one (Kafka's
    /// consumer does the same, so partitions added to a topic get read).
    async fn check_subscribed_topics(&mut self) {
        let Some(group) = self.group.as_ref() else {
            return;
        };
        if group.needs_rejoin()
            || self.counts_checked.elapsed() < self.client.config().metadata_max_age
        {
            return;
        }
        self.counts_checked = Instant::now();
        if let Err(error) = self
            .client
            .refresh_metadata(Some(&self.subscription), false)
            .await
        {
            tracing::debug!(%error, "metadata refresh of the subscribed topics failed");
            return;
        }
        let counts = self.partition_counts();
        if counts != self.subscribed_counts {
            tracing::debug!(before = ?self.subscribed_counts, now = ?counts,
                "the subscribed topics' partitions changed; rejoining the group");
            group.request_rejoin();
        }
    }

    /// The partition count of each subscribed topic in the client's metadata (topics it
    /// does not know are left out).
    fn partition_counts(&self) -> BTreeMap<String, usize> {
        self.client.with_metadata(|m| {
            self.subscription
                .iter()
                .filter_map(|t| Some((t.clone(), m.topic(t)?.partitions.len())))
                .collect()
        })
    }

    /// Commits the positions of partitions about to be given up (auto-commit only).
    async fn commit_before_revoke(&mut self, partitions: &[TopicPartition]) {
        if !self.auto_commits() {
            return;
        }
        let offsets: Vec<(TopicPartition, i64)> = self
            .fetcher
            .positions()
            .into_iter()
            .filter(|(tp, p)| partitions.contains(tp) && self.committed.get(tp) != Some(p))
            .collect();
        if let Err(e) = self.commit_offsets(&offsets).await {
            tracing::warn!(error = %e, "committing before a rebalance failed");
        }
    }

    /// Gives every assigned partition a position: committed offset, else the reset
    /// policy; then runs pending lookups.
    async fn resolve_positions(&mut self) -> Result<()> {
        let missing = self.fetcher.without_position();
        if !missing.is_empty() {
            let committed = match &self.config.group_id {
                Some(group) => {
                    offsets::fetch_committed(&self.client, group, Some(&missing)).await?
                }
                None => BTreeMap::new(),
            };
            for tp in missing {
                match committed.get(&tp).copied().flatten() {
                    Some(offset) => {
                        self.committed.insert(tp.clone(), offset);
                        self.fetcher.seek(&tp, offset);
                    }
                    None => match self.config.auto_offset_reset.spec() {
                        Some(spec) => {
                            self.fetcher.seek_to(&tp, spec);
                        }
                        None => {
                            return Err(Error::NoOffset {
                                topic: tp.topic,
                                partition: tp.partition,
                            })
                        }
                    },
                }
            }
        }
        self.resolve_resets().await
    }

    async fn resolve_resets(&mut self) -> Result<()> {
        let pending = self.fetcher.pending_resets();
        if pending.is_empty() {
            return Ok(());
        }
        let found = offsets::list_offsets(&self.client, &pending).await?;
        // A time with no record at or after it means: the end of the log.
        let past_end: Vec<(TopicPartition, OffsetSpec)> = pending
            .iter()
            .filter(|(tp, _)| found.get(tp).is_none_or(|o| o.offset < 0))
            .map(|(tp, _)| (tp.clone(), OffsetSpec::Latest))
            .collect();
        let ends = if past_end.is_empty() {
            HashMap::new()
        } else {
            offsets::list_offsets(&self.client, &past_end).await?
        };
        for (tp, _) in pending {
            let offset = found
                .get(&tp)
                .filter(|o| o.offset >= 0)
                .or_else(|| ends.get(&tp))
                .map(|o| o.offset);
            if let Some(offset) = offset {
                self.fetcher.seek(&tp, offset);
            }
        }
        Ok(())
    }
}

fn not_assigned(tp: &TopicPartition) -> Error {
    Error::InvalidArgument(format!("partition {tp} is not assigned to this consumer"))
}
