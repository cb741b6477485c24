//! Fetch sessions (KIP-227): the broker remembers what a consumer fetches, so that each
//! following Fetch names only the partitions whose position changed, and each answer
//! carries only the partitions with news.
//!
//! Kafka's `FetchManager` rules, by the request's session id and epoch:
//!
//! - epoch 0 (INITIAL) or -1 (FINAL) is a full fetch, listing every partition. A session
//!   id it names is closed first. With epoch 0 the broker creates a session after
//!   answering, if a slot is free (or one can be evicted), and returns its id; with -1 it
//!   creates none (session id 0 in the answer).
//! - epoch > 0 continues session `session_id`: unknown ids get FETCH_SESSION_ID_NOT_FOUND,
//!   an epoch other than the one expected INVALID_FETCH_SESSION_EPOCH, a session of topic
//!   ids continued with names (or the reverse, across version 13) FETCH_SESSION_TOPIC_ID_ERROR.
//!   Otherwise the request's partitions are added or updated in the session (offset,
//!   limits, epochs), its `forgotten_topics_data` removed, and the fetch runs over every
//!   partition of the session. The answer keeps a partition only when it has records, an
//!   error, a diverging epoch or leader news, or a high watermark, last stable offset or
//!   log start offset other than the session last sent. Partitions that returned records
//!   move to the end of the session's order, so the response limits rotate fairly over
//!   them. A session left empty is closed, and that fetch answered without one.
//!
//! Sessions live in a cache of `max.incremental.fetch.session.cache.slots` (0: none are
//! created). When it is full, a new session evicts the least recently used one idle for
//! `min.incremental.fetch.session.eviction.ms`, or else the smallest session if the new
//! one has more partitions (Kafka favours large sessions, which save the most); otherwise
//! it gets none and the client goes on with full fetches.
//!
//! The fetch itself (`handlers::fetch`) never sees a session: [`FetchSessions::open`]
//! turns an incremental request into the full one it stands for, and
//! [`FetchSessions::close`] turns the full answer into the session's answer. A session is
//! not tied to a connection, as in Kafka.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

/// The epoch of a full fetch that asks for a new session.
const INITIAL_EPOCH: i32 = 0;
/// The epoch of a full fetch that wants no session (and closes the one it names).
const FINAL_EPOCH: i32 = -1;
/// The session id that names no session.
const NO_SESSION: i32 = 0;
/// The most partitions one session keeps (a session costs about 250 bytes a partition):
/// a request naming more gets no session, or leaves its session, and is answered in full.
pub const MAX_SESSION_PARTITIONS: usize = 100_000;

/// A partition of a session: by topic id from Fetch v13, by name before.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    topic_id: Uuid,
    topic: StrBytes,
    partition: i32,
}

impl Key {
    fn new(uses_topic_ids: bool, topic_id: Uuid, topic: &TopicName, partition: i32) -> Key {
        if uses_topic_ids {
            Key {
                topic_id,
                topic: StrBytes::default(),
                partition,
            }
        } else {
            Key {
                topic_id: Uuid::nil(),
                topic: topic.0.clone(),
                partition,
            }
        }
    }
}

/// One partition of a session: what the client asked last, and what it was told last.
#[derive(Debug, Clone)]
struct Cached {
    key: Key,
    request: FetchPartition,
    high_watermark: i64,
    last_stable_offset: i64,
    log_start_offset: i64,
}

impl Cached {
    fn new(key: Key, request: FetchPartition) -> Cached {
        // -1 differs from anything a partition reports: the first answer includes it.
        Cached {
            key,
            request,
            high_watermark: -1,
            last_stable_offset: -1,
            log_start_offset: -1,
        }
    }
}

impl Cached {
    /// Records what `data` tells the client; whether it is news the answer must carry
    /// (Kafka's `CachedPartition.maybeUpdateResponseData`).
    fn observe(&mut self, data: &PartitionData) -> bool {
        let news = data.records.as_ref().is_some_and(|r| !r.is_empty())
            || data.error_code != 0
            || data.high_watermark != self.high_watermark
            || data.last_stable_offset != self.last_stable_offset
            || data.log_start_offset != self.log_start_offset
            || data.diverging_epoch.epoch >= 0
            || data.current_leader.leader_id.0 >= 0
            || data.preferred_read_replica.0 >= 0;
        // After an error the partition is sent again once it recovers, whatever its
        // offsets then (Kafka resets the cached high watermark the same way).
        if data.error_code == 0 {
            self.high_watermark = data.high_watermark;
            self.last_stable_offset = data.last_stable_offset;
            self.log_start_offset = data.log_start_offset;
        } else {
            self.high_watermark = -1;
        }
        news
    }
}

#[derive(Debug)]
struct Session {
    /// The epoch the next request must carry.
    epoch: i32,
    uses_topic_ids: bool,
    /// In fetch order.
    partitions: Vec<Cached>,
    /// Position of each key in `partitions`.
    index: HashMap<Key, usize>,
    last_used: Instant,
    created: Instant,
}

impl Session {
    fn reindex(&mut self) {
        self.index = self
            .partitions
            .iter()
            .enumerate()
            .map(|(i, c)| (c.key.clone(), i))
            .collect();
    }

    /// Adds or updates every partition of `topics`; `false` when the session is full.
    fn upsert_all(&mut self, topics: &[FetchTopic]) -> bool {
        topics.iter().all(|topic| {
            topic.partitions.iter().all(|partition| {
                let key = Key::new(
                    self.uses_topic_ids,
                    topic.topic_id,
                    &topic.topic,
                    partition.partition,
                );
                self.upsert(key, partition)
            })
        })
    }

    /// Adds or updates a partition; `false` when the session is full.
    fn upsert(&mut self, key: Key, request: &FetchPartition) -> bool {
        // Owned copies: what the request's frame holds (names, tagged fields) would keep
        // the whole read buffer alive for as long as the session lives.
        let mut request = request.clone();
        request.unknown_tagged_fields.clear();
        match self.index.get(&key) {
            Some(&i) => self.partitions[i].request = request,
            None => {
                if self.partitions.len() >= MAX_SESSION_PARTITIONS {
                    return false;
                }
                let key = Key {
                    topic: StrBytes::from_string(key.topic.to_string()),
                    ..key
                };
                self.index.insert(key.clone(), self.partitions.len());
                self.partitions.push(Cached::new(key, request));
            }
        }
        true
    }
}

/// Kafka's `FetchMetadata.nextEpoch`.
fn next_epoch(epoch: i32) -> i32 {
    if epoch == i32::MAX {
        1
    } else {
        epoch + 1
    }
}

/// What kind of answer a fetch gets; see [`FetchSessions::close`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKind {
    /// No session: answered with session id 0.
    Sessionless,
    /// A full fetch asking for a session (epoch 0).
    New,
    /// A fetch continuing session `id` at `epoch`.
    Incremental { id: i32, epoch: i32 },
}

/// A fetch request as the fetch handler must serve it, and how its answer is shaped.
#[derive(Debug)]
pub struct FetchContext {
    /// The full request: every partition of the session for an incremental fetch.
    /// Authorization takes refused partitions out of it.
    pub request: FetchRequest,
    pub kind: SessionKind,
    version: i16,
    /// For a new session, every partition the request named, refused ones included:
    /// they belong to the session as in Kafka, answered with their error each time.
    named: Vec<FetchTopic>,
}

/// The broker's fetch session cache; see the module docs.
#[derive(Debug)]
pub struct FetchSessions {
    slots: usize,
    eviction: Duration,
    sessions: Mutex<HashMap<i32, Session>>,
}

impl FetchSessions {
    pub fn new(slots: usize, eviction: Duration) -> FetchSessions {
        FetchSessions {
            slots,
            eviction,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    /// The cache `max.incremental.fetch.session.cache.slots` and
    /// `min.incremental.fetch.session.eviction.ms` ask for.
    pub fn from_config(config: &crate::config::BrokerConfig) -> FetchSessions {
        FetchSessions::new(
            config.fetch_session_slots,
            Duration::from_millis(config.fetch_session_eviction_ms),
        )
    }

    /// How many sessions are open.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i32, Session>> {
        // A panic while holding the lock leaves plain data behind; go on with it.
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The context of `request`, or the session error its answer must carry.
    pub fn open(
        &self,
        mut request: FetchRequest,
        version: i16,
        now: Instant,
    ) -> Result<FetchContext, ResponseError> {
        // Sessions exist from Fetch v7.
        if version < 7 {
            return Ok(FetchContext {
                request,
                kind: SessionKind::Sessionless,
                version,
                named: Vec::new(),
            });
        }
        let epoch = request.session_epoch;
        if epoch == INITIAL_EPOCH || epoch == FINAL_EPOCH {
            if request.session_id != NO_SESSION {
                self.lock().remove(&request.session_id);
            }
            if epoch == INITIAL_EPOCH && self.slots > 0 {
                return Ok(FetchContext {
                    named: request.topics.clone(),
                    request,
                    kind: SessionKind::New,
                    version,
                });
            }
            return Ok(FetchContext {
                request,
                kind: SessionKind::Sessionless,
                version,
                named: Vec::new(),
            });
        }
        let uses_topic_ids = version >= 13;
        let mut sessions = self.lock();
        let id = request.session_id;
        let session = sessions
            .get_mut(&id)
            .ok_or(ResponseError::FetchSessionIdNotFound)?;
        if session.epoch != epoch {
            return Err(ResponseError::InvalidFetchSessionEpoch);
        }
        if session.uses_topic_ids != uses_topic_ids {
            return Err(ResponseError::FetchSessionTopicIdError);
        }
        if !session.upsert_all(&request.topics) {
            // Past MAX_SESSION_PARTITIONS: the session ends; the client's next full fetch
            // gets none and goes on without.
            sessions.remove(&id);
            return Err(ResponseError::FetchSessionIdNotFound);
        }
        let mut forgot = false;
        for topic in &request.forgotten_topics_data {
            for &partition in &topic.partitions {
                let key = Key::new(uses_topic_ids, topic.topic_id, &topic.topic, partition);
                forgot |= session.index.remove(&key).is_some();
            }
        }
        if forgot {
            session
                .partitions
                .retain(|c| session.index.contains_key(&c.key));
            session.reindex();
        }
        if session.partitions.is_empty() {
            sessions.remove(&id);
            request.topics.clear();
            return Ok(FetchContext {
                request,
                kind: SessionKind::Sessionless,
                version,
                named: Vec::new(),
            });
        }
        session.epoch = next_epoch(epoch);
        session.last_used = now;
        request.topics = full_topics(&session.partitions);
        request.forgotten_topics_data.clear();
        Ok(FetchContext {
            request,
            kind: SessionKind::Incremental { id, epoch },
            version,
            named: Vec::new(),
        })
    }

    /// Shapes `response`, the full answer to `context.request`, as the session's answer
    /// (see the module docs) and records what it told the client.
    pub fn close(&self, context: &FetchContext, response: &mut FetchResponse, now: Instant) {
        if context.version < 7 {
            return;
        }
        response.session_id = NO_SESSION;
        match context.kind {
            SessionKind::Sessionless => {}
            SessionKind::New => {
                if let Some(id) = self.create(context, response, now) {
                    response.session_id = id;
                }
            }
            SessionKind::Incremental { id, epoch } => {
                let mut sessions = self.lock();
                // Evicted while the fetch waited: the client learns it at its next fetch.
                let Some(session) = sessions.get_mut(&id) else {
                    return;
                };
                if session.epoch != next_epoch(epoch) {
                    // A newer request of the session ran meanwhile (this one waited in a
                    // long poll): its answer would overwrite what the session last said.
                    // Kafka answers such a late duplicate this way and leaves the cache.
                    response.responses.clear();
                    response.error_code = ResponseError::InvalidFetchSessionEpoch.code();
                    return;
                }
                response.session_id = id;
                filter_incremental(session, context.version >= 13, response);
            }
        }
    }

    /// Shapes the empty answer of a throttled fetch (client quotas): an incremental
    /// fetch keeps its session, unchanged but for the epoch it used; a full fetch gets
    /// no new session.
    pub fn close_throttled(&self, context: &FetchContext, response: &mut FetchResponse) {
        if context.version < 7 {
            return;
        }
        response.session_id = match context.kind {
            SessionKind::Incremental { id, .. } => id,
            SessionKind::New | SessionKind::Sessionless => NO_SESSION,
        };
    }

    /// A new session for a full fetch's partitions, remembering what `response` says of
    /// each; `None` when there is no slot for it.
    fn create(
        &self,
        context: &FetchContext,
        response: &FetchResponse,
        now: Instant,
    ) -> Option<i32> {
        let uses_topic_ids = context.version >= 13;
        let mut session = Session {
            epoch: 1,
            uses_topic_ids,
            partitions: Vec::new(),
            index: HashMap::new(),
            last_used: now,
            created: now,
        };
        if !session.upsert_all(&context.named) {
            return None;
        }
        if session.partitions.is_empty() {
            return None;
        }
        for topic in &response.responses {
            for data in &topic.partitions {
                let key = Key::new(
                    uses_topic_ids,
                    topic.topic_id,
                    &topic.topic,
                    data.partition_index,
                );
                if let Some(&i) = session.index.get(&key) {
                    session.partitions[i].observe(data);
                }
            }
        }
        let mut sessions = self.lock();
        if sessions.len() >= self.slots
            && !self.evict_one(&mut sessions, session.partitions.len(), now)
        {
            return None;
        }
        let id = loop {
            let id = rand::random::<i32>().saturating_abs();
            if id != NO_SESSION && !sessions.contains_key(&id) {
                break id;
            }
        };
        sessions.insert(id, session);
        Some(id)
    }

    /// Makes room for a session of `size` partitions; whether it could.
    fn evict_one(&self, sessions: &mut HashMap<i32, Session>, size: usize, now: Instant) -> bool {
        let stale = sessions
            .iter()
            .filter(|(_, s)| now.saturating_duration_since(s.last_used) >= self.eviction)
            .min_by_key(|(_, s)| s.last_used)
            .map(|(&id, _)| id);
        // A larger session may take the place of a smaller one that has had its time
        // (Kafka: created more than the eviction time ago), so new sessions do not push
        // each other out in turn.
        let smaller = || {
            sessions
                .iter()
                .filter(|(_, s)| now.saturating_duration_since(s.created) >= self.eviction)
                .filter(|(_, s)| s.partitions.len() < size)
                .min_by_key(|(_, s)| (s.partitions.len(), s.last_used))
                .map(|(&id, _)| id)
        };
        match stale.or_else(smaller) {
            Some(id) => {
                sessions.remove(&id);
                true
            }
            None => false,
        }
    }
}

/// The request topics for `partitions`, in order (consecutive partitions of a topic
/// share one entry).
fn full_topics(partitions: &[Cached]) -> Vec<FetchTopic> {
    let mut topics: Vec<FetchTopic> = Vec::new();
    for cached in partitions {
        let same = topics
            .last()
            .is_some_and(|t| t.topic_id == cached.key.topic_id && t.topic.0 == cached.key.topic);
        if !same {
            topics.push(
                FetchTopic::default()
                    .with_topic(TopicName(cached.key.topic.clone()))
                    .with_topic_id(cached.key.topic_id),
            );
        }
        if let Some(topic) = topics.last_mut() {
            topic.partitions.push(cached.request.clone());
        }
    }
    topics
}

/// Keeps in `response` the partitions the client must hear about, records what they
/// say in `session`, and moves those that returned records to the end of its order.
fn filter_incremental(session: &mut Session, uses_topic_ids: bool, response: &mut FetchResponse) {
    let mut moved = Vec::new();
    for topic in &mut response.responses {
        let (topic_id, name) = (topic.topic_id, topic.topic.clone());
        topic.partitions.retain(|data| {
            let key = Key::new(uses_topic_ids, topic_id, &name, data.partition_index);
            let Some(&i) = session.index.get(&key) else {
                // Not a session partition (cannot happen): tell the client anyway.
                return true;
            };
            let has_records = data.records.as_ref().is_some_and(|r| !r.is_empty());
            if has_records {
                moved.push(i);
            }
            session.partitions[i].observe(data)
        });
    }
    response.responses.retain(|t| !t.partitions.is_empty());
    if !moved.is_empty() {
        let mut at_end = vec![false; session.partitions.len()];
        for i in moved {
            at_end[i] = true;
        }
        let (tail, head): (Vec<_>, Vec<_>) = std::mem::take(&mut session.partitions)
            .into_iter()
            .enumerate()
            .partition(|(i, _)| at_end[*i]);
        session.partitions = head.into_iter().chain(tail).map(|(_, c)| c).collect();
        session.reindex();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_request::ForgottenTopic;
    use kafka_protocol::messages::fetch_response::FetchableTopicResponse;

    fn name(s: &str) -> TopicName {
        TopicName(StrBytes::from_string(s.to_owned()))
    }

    /// A Fetch v12 (topics by name) for `partitions` of topic "t" at `offset`.
    fn request(session_id: i32, epoch: i32, partitions: &[i32], offset: i64) -> FetchRequest {
        FetchRequest::default()
            .with_session_id(session_id)
            .with_session_epoch(epoch)
            .with_topics(if partitions.is_empty() {
                vec![]
            } else {
                vec![FetchTopic::default().with_topic(name("t")).with_partitions(
                    partitions
                        .iter()
                        .map(|&p| {
                            FetchPartition::default()
                                .with_partition(p)
                                .with_fetch_offset(offset)
                        })
                        .collect(),
                )]
            })
    }

    /// The full answer to `request`: each partition at high watermark `hw`, with records
    /// for those in `with_records`.
    fn answer(request: &FetchRequest, hw: i64, with_records: &[i32]) -> FetchResponse {
        FetchResponse::default().with_responses(
            request
                .topics
                .iter()
                .map(|t| {
                    FetchableTopicResponse::default()
                        .with_topic(t.topic.clone())
                        .with_partitions(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    let records = if with_records.contains(&p.partition) {
                                        bytes::Bytes::from_static(b"batch")
                                    } else {
                                        bytes::Bytes::new()
                                    };
                                    PartitionData::default()
                                        .with_partition_index(p.partition)
                                        .with_high_watermark(hw)
                                        .with_last_stable_offset(hw)
                                        .with_log_start_offset(0)
                                        .with_records(Some(records))
                                })
                                .collect(),
                        )
                })
                .collect(),
        )
    }

    fn partitions(response: &FetchResponse) -> Vec<i32> {
        response
            .responses
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.partition_index))
            .collect()
    }

    fn fetched(context: &FetchContext) -> Vec<(i32, i64)> {
        context
            .request
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| (p.partition, p.fetch_offset)))
            .collect()
    }

    /// Runs one fetch through the cache: the partitions answered and the session id.
    fn round(
        cache: &FetchSessions,
        request: FetchRequest,
        hw: i64,
        with_records: &[i32],
        now: Instant,
    ) -> Result<(Vec<i32>, i32, FetchContext), ResponseError> {
        let context = cache.open(request, 12, now)?;
        let mut response = answer(&context.request, hw, with_records);
        cache.close(&context, &mut response, now);
        Ok((partitions(&response), response.session_id, context))
    }

    #[test]
    fn a_session_answers_only_the_news_and_remembers_the_rest() {
        let cache = FetchSessions::new(10, Duration::from_secs(120));
        let now = Instant::now();
        // Full fetch with epoch 0: everything answered, a session created.
        let (answered, id, _) = round(&cache, request(0, 0, &[0, 1, 2], 5), 5, &[], now).unwrap();
        assert_eq!(answered, [0, 1, 2]);
        assert_ne!(id, 0);
        assert_eq!(cache.len(), 1);
        // Nothing new: an empty answer, over the whole session.
        let (answered, same, context) = round(&cache, request(id, 1, &[], 0), 5, &[], now).unwrap();
        assert_eq!((answered.len(), same), (0, id));
        assert_eq!(fetched(&context), [(0, 5), (1, 5), (2, 5)]);
        // Records on partition 1 and a new high watermark everywhere.
        let (answered, _, _) = round(&cache, request(id, 2, &[], 0), 7, &[1], now).unwrap();
        assert_eq!(answered, [0, 1, 2]);
        // Partition 1 moved on: only it is named; it went to the end of the order.
        let (answered, _, context) = round(&cache, request(id, 3, &[1], 7), 7, &[], now).unwrap();
        assert!(answered.is_empty());
        assert_eq!(fetched(&context), [(0, 5), (2, 5), (1, 7)]);
        // A new partition joins, an old one is forgotten.
        let mut req = request(id, 4, &[3], 0);
        req.forgotten_topics_data = vec![ForgottenTopic::default()
            .with_topic(name("t"))
            .with_partitions(vec![0])];
        let (answered, _, context) = round(&cache, req, 7, &[], now).unwrap();
        assert_eq!(
            answered,
            [3],
            "a partition new to the session is always answered"
        );
        assert_eq!(fetched(&context), [(2, 5), (1, 7), (3, 0)]);
    }

    #[test]
    fn session_errors_are_kafkas() {
        let cache = FetchSessions::new(10, Duration::from_secs(120));
        let now = Instant::now();
        let (_, id, _) = round(&cache, request(0, 0, &[0], 0), 1, &[], now).unwrap();
        assert_eq!(
            round(&cache, request(id + 1, 1, &[], 0), 1, &[], now).unwrap_err(),
            ResponseError::FetchSessionIdNotFound
        );
        assert_eq!(
            round(&cache, request(id, 2, &[], 0), 1, &[], now).unwrap_err(),
            ResponseError::InvalidFetchSessionEpoch
        );
        // The failed attempts did not move the epoch.
        assert!(round(&cache, request(id, 1, &[], 0), 1, &[], now).is_ok());
        // Continued at Fetch v13 (topic ids) after starting by name.
        assert_eq!(
            cache.open(request(id, 2, &[], 0), 13, now).unwrap_err(),
            ResponseError::FetchSessionTopicIdError
        );
        // A full fetch naming the session with epoch -1 closes it and creates none.
        let (answered, none, _) = round(&cache, request(id, -1, &[0], 0), 1, &[], now).unwrap();
        assert_eq!((answered, none, cache.len()), (vec![0], 0, 0));
    }

    #[test]
    fn a_late_answer_leaves_a_newer_session_state_alone() {
        let cache = FetchSessions::new(10, Duration::from_secs(120));
        let now = Instant::now();
        let (_, id, _) = round(&cache, request(0, 0, &[0], 0), 1, &[], now).unwrap();
        // Epoch 1 waits in a long poll while the client (after a timeout) sends epoch 2.
        let waiting = cache.open(request(id, 1, &[], 0), 12, now).unwrap();
        let (news, _, _) = round(&cache, request(id, 2, &[], 0), 9, &[], now).unwrap();
        assert_eq!(news, [0]);
        let mut late = answer(&waiting.request, 5, &[]);
        cache.close(&waiting, &mut late, now);
        assert_eq!(
            late.error_code,
            ResponseError::InvalidFetchSessionEpoch.code()
        );
        assert!(late.responses.is_empty());
        // The session still knows the newer high watermark: nothing to say at 9.
        let (quiet, _, _) = round(&cache, request(id, 3, &[], 0), 9, &[], now).unwrap();
        assert!(quiet.is_empty());
    }

    #[test]
    fn forgetting_everything_closes_the_session() {
        let cache = FetchSessions::new(10, Duration::from_secs(120));
        let now = Instant::now();
        let (_, id, _) = round(&cache, request(0, 0, &[0], 0), 1, &[], now).unwrap();
        let mut req = request(id, 1, &[], 0);
        req.forgotten_topics_data = vec![ForgottenTopic::default()
            .with_topic(name("t"))
            .with_partitions(vec![0])];
        let (_, none, context) = round(&cache, req, 1, &[], now).unwrap();
        assert_eq!(
            (none, context.kind, cache.len()),
            (0, SessionKind::Sessionless, 0)
        );
    }

    #[test]
    fn a_full_cache_evicts_idle_then_smaller_sessions() {
        let cache = FetchSessions::new(2, Duration::from_secs(120));
        let t0 = Instant::now();
        let (_, small, _) = round(&cache, request(0, 0, &[0], 0), 1, &[], t0).unwrap();
        let (_, big, _) = round(&cache, request(0, 0, &[0, 1, 2], 0), 1, &[], t0).unwrap();
        // Full, and both too new to give way: no session.
        let (_, none, _) = round(&cache, request(0, 0, &[0, 1], 0), 1, &[], t0).unwrap();
        assert_eq!(none, 0);
        // Both in use, but old enough: a larger session takes the smaller one's place.
        let later = t0 + Duration::from_secs(121);
        assert!(round(&cache, request(small, 1, &[], 0), 1, &[], later).is_ok());
        assert!(round(&cache, request(big, 1, &[], 0), 1, &[], later).is_ok());
        let (_, second, _) = round(&cache, request(0, 0, &[0, 1], 0), 1, &[], later).unwrap();
        assert_ne!(second, 0);
        assert_eq!(
            round(&cache, request(small, 2, &[], 0), 1, &[], later).unwrap_err(),
            ResponseError::FetchSessionIdNotFound
        );
        // Idle long enough, the least recently used goes first, whatever its size.
        let mid = later + Duration::from_secs(60);
        assert!(round(&cache, request(second, 1, &[], 0), 1, &[], mid).is_ok());
        let last = later + Duration::from_secs(125);
        let (_, third, _) = round(&cache, request(0, 0, &[5], 0), 1, &[], last).unwrap();
        assert_ne!(third, 0);
        assert_eq!(
            round(&cache, request(big, 2, &[], 0), 1, &[], last).unwrap_err(),
            ResponseError::FetchSessionIdNotFound
        );
        // No slots: never a session.
        let none = FetchSessions::new(0, Duration::from_secs(120));
        let (_, id, _) = round(&none, request(0, 0, &[0], 0), 1, &[], t0).unwrap();
        assert_eq!((id, none.len()), (0, 0));
    }
}
