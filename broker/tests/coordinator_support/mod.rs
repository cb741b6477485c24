//! Test support for the group coordinator: a simulated clock, a simulated
//! `__consumer_offsets` log that follows the I/O contract (append every write), the same
//! log as the real log cleaner leaves it, and builders for consumer-protocol metadata.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedPartition;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use sluice_broker::coordinator::*;
use sluice_storage::batch::{batches, BatchHeader};
use sluice_storage::{CleanOptions, Flusher, LogConfig, PartitionLog, ReadBound};

/// Test settings: no initial rebalance delay, few offsets partitions.
pub fn config() -> CoordinatorConfig {
    CoordinatorConfig {
        group_initial_rebalance_delay_ms: 0,
        offsets_topic_num_partitions: 4,
        ..CoordinatorConfig::default()
    }
}

/// A consumer-protocol subscription (version 0) to `topics`.
pub fn subscription(topics: &[&str]) -> Bytes {
    let sub = ConsumerProtocolSubscription::default().with_topics(
        topics
            .iter()
            .map(|t| StrBytes::from_string((*t).to_owned()))
            .collect(),
    );
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&0i16.to_be_bytes());
    sub.encode(&mut buf, 0).unwrap();
    buf.freeze()
}

/// A consumer-protocol assignment (version 0).
pub fn assignment(parts: &[(&str, &[i32])]) -> Bytes {
    let a = ConsumerProtocolAssignment::default().with_assigned_partitions(
        parts
            .iter()
            .map(|(t, ps)| {
                AssignedPartition::default()
                    .with_topic(TopicName(StrBytes::from_string((*t).to_owned())))
                    .with_partitions(ps.to_vec())
            })
            .collect(),
    );
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&0i16.to_be_bytes());
    a.encode(&mut buf, 0).unwrap();
    buf.freeze()
}

/// A JoinGroup from `client` for `group`: consumer protocol, "range" over topic "t",
/// session 10 s, rebalance 30 s.
pub fn join_req(group: &str, member_id: &str, client: &str) -> JoinRequest {
    JoinRequest {
        group_id: group.to_owned(),
        member_id: member_id.to_owned(),
        group_instance_id: None,
        client_id: client.to_owned(),
        client_host: "/127.0.0.1".to_owned(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 30_000,
        protocol_type: CONSUMER_PROTOCOL_TYPE.to_owned(),
        protocols: vec![Protocol::new("range", subscription(&["t"]))],
        require_known_member_id: false,
        supports_skip_assignment: false,
        reason: None,
    }
}

pub fn sync_req(group: &str, generation: i32, member_id: &str) -> SyncRequest {
    SyncRequest {
        group_id: group.to_owned(),
        generation_id: generation,
        member_id: member_id.to_owned(),
        group_instance_id: None,
        protocol_type: None,
        protocol_name: None,
        assignments: Vec::new(),
    }
}

pub fn hb_req(group: &str, generation: i32, member_id: &str) -> MemberHeartbeat {
    MemberHeartbeat {
        group_id: group.to_owned(),
        generation_id: generation,
        member_id: member_id.to_owned(),
        group_instance_id: None,
    }
}

pub fn commit_req(
    group: &str,
    generation: i32,
    member_id: &str,
    offsets: &[(&str, i32, i64)],
) -> CommitRequest {
    let mut topics: Vec<CommitTopic> = Vec::new();
    for (topic, partition, offset) in offsets {
        let p = CommitPartition {
            partition: *partition,
            offset: *offset,
            leader_epoch: -1,
            metadata: None,
        };
        match topics.iter_mut().find(|t| t.name == *topic) {
            Some(t) => t.partitions.push(p),
            None => topics.push(CommitTopic {
                name: (*topic).to_owned(),
                partitions: vec![p],
            }),
        }
    }
    CommitRequest {
        group_id: group.to_owned(),
        generation_id: generation,
        member_id: member_id.to_owned(),
        group_instance_id: None,
        retention_time_ms: -1,
        topics,
        api_version: 9,
    }
}

/// The errors of a commit answer, flattened.
pub fn commit_errors(r: &CommitResponse) -> Vec<Option<kafka_protocol::error::ResponseError>> {
    r.topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| p.1))
        .collect()
}

/// A `__consumer_offsets` partition as the storage engine would keep it.
#[derive(Debug, Default, Clone)]
pub struct SimPartition {
    /// (base offset, batch bytes)
    pub batches: Vec<(i64, Bytes)>,
    pub log_start: i64,
    pub log_end: i64,
}

/// The simulated topic.
#[derive(Debug, Default, Clone)]
pub struct SimLog {
    pub partitions: BTreeMap<i32, SimPartition>,
}

impl SimLog {
    /// Appends a write as `PartitionLog::append` would (assigning offsets).
    pub fn append(&mut self, write: &LogWrite) {
        self.append_records(write.partition, &write.records);
    }

    /// Appends record batches to `partition`, assigning offsets.
    pub fn append_records(&mut self, partition: i32, records: &[u8]) {
        let p = self.partitions.entry(partition).or_default();
        for batch in batches(records) {
            let batch = batch.unwrap();
            let header = sluice_storage::batch::BatchHeader::new(batch).unwrap();
            let count = i64::from(header.records_count());
            let mut owned = batch.to_vec();
            owned[..8].copy_from_slice(&p.log_end.to_be_bytes());
            p.batches.push((p.log_end, Bytes::from(owned)));
            p.log_end += count;
        }
    }

    /// Deletes the records of `partition` before `offset`, as `delete_records_before`.
    pub fn delete_before(&mut self, partition: i32, offset: i64) {
        let p = self.partitions.get_mut(&partition).unwrap();
        p.log_start = p.log_start.max(offset);
        let start = p.log_start;
        p.batches.retain(|(base, batch)| {
            base + i64::from(BatchHeader::new(batch).unwrap().records_count()) > start
        });
    }

    /// This log as the broker's log cleaner leaves it: every partition is written to a real
    /// compacted `PartitionLog` with small segments in three parts; after each part the
    /// log is rolled, made durable and committed, and cleaned with `delete.retention.ms` =
    /// `tombstone_retention_ms`, the clock moving 1 ms between cleans (so with a retention
    /// of 0 a tombstone seen by one clean is dropped by the next). Then it is read back.
    /// Returns the cleaned log and the records the cleans removed.
    pub fn cleaned(&self, tombstone_retention_ms: i64, now_ms: i64) -> (SimLog, u64) {
        const PARTS: usize = 3;
        let dir = tempfile::tempdir().unwrap();
        let flusher = Flusher::start("sim-cleaner").unwrap();
        let config = LogConfig {
            segment_bytes: 1024,
            index_interval_bytes: 256,
            retention_ms: None,
            segment_ms: None,
            compact: true,
            ..LogConfig::default()
        };
        let mut out = SimLog::default();
        let mut removed = 0;
        for (partition, p) in &self.partitions {
            let path = dir.path().join(partition.to_string());
            let (log, _) = PartitionLog::open(&path, config.clone(), &flusher, false).unwrap();
            if p.log_start > 0 {
                log.truncate_fully_and_start_at(p.log_start).unwrap();
            }
            let part_len = p.batches.len().div_ceil(PARTS).max(1);
            for (clock, part) in (now_ms..).zip(p.batches.chunks(part_len)) {
                for (base, batch) in part {
                    let info = log.append(batch, 0, clock).unwrap();
                    assert_eq!(
                        info.base_offset, *base,
                        "the real log assigns the same offsets"
                    );
                }
                // Seal the last segment too, so every record can be cleaned.
                log.set_config(LogConfig {
                    segment_ms: Some(0),
                    ..config.clone()
                });
                log.roll_if_due(i64::MAX / 2).unwrap();
                log.set_config(config.clone());
                log.flush().unwrap();
                log.advance_high_watermark(log.log_end_offset());
                let outcome = log
                    .clean(&CleanOptions {
                        now_ms: clock,
                        delete_retention_ms: tombstone_retention_ms,
                        ..CleanOptions::default()
                    })
                    .unwrap();
                assert!(!outcome.interrupted);
                removed += outcome.records_removed;
            }
            let cleaned = out.partitions.entry(*partition).or_default();
            cleaned.log_start = log.log_start_offset();
            cleaned.log_end = log.log_end_offset();
            let mut offset = cleaned.log_start;
            while offset < cleaned.log_end {
                let read = log
                    .read_bounded(offset, usize::MAX, false, ReadBound::LogEnd)
                    .unwrap();
                let before = offset;
                for batch in batches(&read.records) {
                    let batch = batch.unwrap();
                    let header = BatchHeader::new(batch).unwrap();
                    cleaned
                        .batches
                        .push((header.base_offset(), Bytes::copy_from_slice(batch)));
                    offset = header.next_offset();
                }
                assert!(offset > before, "read at {before} returned nothing");
            }
            log.close().unwrap();
        }
        (out, removed)
    }

    /// Records kept in a partition.
    pub fn records(&self, partition: i32) -> i64 {
        self.partitions
            .get(&partition)
            .map_or(0, |p| p.log_end - p.log_start)
    }

    /// A coordinator rebuilt from this log, as at broker start.
    pub fn replay(
        &self,
        config: CoordinatorConfig,
        now_ms: i64,
    ) -> (GroupCoordinator, Vec<LogWrite>) {
        let mut coordinator = GroupCoordinator::new_loading(config);
        for (partition, p) in &self.partitions {
            for (_, batch) in &p.batches {
                coordinator
                    .replay_batch(*partition, batch.clone(), p.log_start)
                    .unwrap();
            }
        }
        let out = coordinator.finish_load(now_ms);
        assert!(out.completions.is_empty());
        (coordinator, out.writes)
    }
}

/// A coordinator driven with a simulated clock and log.
pub struct Sim {
    pub coord: GroupCoordinator,
    pub config: CoordinatorConfig,
    pub now: i64,
    pub log: SimLog,
    /// Completions not yet claimed by the test.
    pub done: HashMap<Ticket, Completion>,
}

impl Sim {
    pub fn new(config: CoordinatorConfig) -> Sim {
        Sim {
            coord: GroupCoordinator::new(config.clone()),
            config,
            now: 1_000_000,
            log: SimLog::default(),
            done: HashMap::new(),
        }
    }

    /// Does what the I/O layer does with an output: append its writes, keep the
    /// completions; returns the reply.
    pub fn apply<R>(&mut self, out: Output<R>) -> R {
        for w in &out.writes {
            self.log.append(w);
        }
        for c in out.completions {
            let ticket = c.ticket();
            assert!(
                self.done.insert(ticket, c).is_none(),
                "ticket {ticket:?} completed twice"
            );
        }
        out.reply
    }

    pub fn join(&mut self, req: &JoinRequest) -> Reply<JoinResponse> {
        let out = self.coord.join_group(req, self.now);
        self.apply(out)
    }

    /// The JoinGroup answer, now or from its completion (which must exist).
    pub fn joined(&mut self, reply: Reply<JoinResponse>) -> JoinResponse {
        match reply {
            Reply::Now(r) => r,
            Reply::Pending(t) => self
                .take_join(t)
                .unwrap_or_else(|| panic!("JoinGroup {t:?} still parked")),
        }
    }

    pub fn take_join(&mut self, ticket: Ticket) -> Option<JoinResponse> {
        match self.done.remove(&ticket)? {
            Completion::Join { response, .. } => Some(response),
            other => panic!("expected a JoinGroup completion, got {other:?}"),
        }
    }

    pub fn take_sync(&mut self, ticket: Ticket) -> Option<SyncResponse> {
        match self.done.remove(&ticket)? {
            Completion::Sync { response, .. } => Some(response),
            other => panic!("expected a SyncGroup completion, got {other:?}"),
        }
    }

    pub fn sync(&mut self, req: &SyncRequest) -> Reply<SyncResponse> {
        let out = self.coord.sync_group(req, self.now);
        self.apply(out)
    }

    pub fn synced(&mut self, reply: Reply<SyncResponse>) -> SyncResponse {
        match reply {
            Reply::Now(r) => r,
            Reply::Pending(t) => self
                .take_sync(t)
                .unwrap_or_else(|| panic!("SyncGroup {t:?} still parked")),
        }
    }

    pub fn heartbeat(
        &mut self,
        req: &MemberHeartbeat,
    ) -> Option<kafka_protocol::error::ResponseError> {
        let out = self.coord.heartbeat(req, self.now);
        self.apply(out).error
    }

    pub fn leave(&mut self, group: &str, members: &[LeaveMember]) -> LeaveResponse {
        let out = self.coord.leave_group(group, members, self.now);
        self.apply(out)
    }

    pub fn commit(&mut self, req: &CommitRequest) -> CommitResponse {
        let out = self.coord.commit_offsets(req, self.now);
        self.apply(out)
    }

    /// Moves the clock by `ms` and runs the timers.
    pub fn advance(&mut self, ms: i64) {
        self.now += ms;
        let out = self.coord.tick(self.now);
        self.apply(out);
    }

    /// Joins `clients` (dynamic members, no KIP-394) at once, completes the rebalance and
    /// syncs with the leader assigning `assign(member_id)`. Returns the member ids in
    /// `clients` order and the generation.
    pub fn form_group(
        &mut self,
        group: &str,
        requests: &[JoinRequest],
        assign: impl Fn(usize) -> Bytes,
    ) -> (Vec<String>, i32) {
        let replies: Vec<Reply<JoinResponse>> = requests.iter().map(|r| self.join(r)).collect();
        self.advance(0);
        let responses: Vec<JoinResponse> = replies.into_iter().map(|r| self.joined(r)).collect();
        let generation = responses[0].generation_id;
        let ids: Vec<String> = responses.iter().map(|r| r.member_id.clone()).collect();
        for r in &responses {
            assert_eq!(r.error, None);
            assert_eq!(r.generation_id, generation);
        }
        let leader = responses[0].leader.clone();
        let mut pending = Vec::new();
        for id in &ids {
            if *id != leader {
                pending.push(self.sync(&sync_req(group, generation, id)));
            }
        }
        let mut leader_sync = sync_req(group, generation, &leader);
        leader_sync.assignments = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.clone(), assign(i)))
            .collect();
        let leader_reply = self.sync(&leader_sync);
        let leader_answer = self.synced(leader_reply);
        assert_eq!(leader_answer.error, None);
        for reply in pending {
            let answer = self.synced(reply);
            assert_eq!(answer.error, None);
        }
        assert_eq!(self.coord.group(group).unwrap().state(), GroupState::Stable);
        (ids, generation)
    }

    /// Replays the log into a fresh coordinator and checks it rebuilds exactly the
    /// persisted image of the live one.
    pub fn assert_replay_matches(&self) -> GroupCoordinator {
        let (replayed, _) = self.log.replay(self.config.clone(), self.now);
        assert_eq!(replayed.persisted_state(), self.coord.persisted_state());
        replayed
    }
}
