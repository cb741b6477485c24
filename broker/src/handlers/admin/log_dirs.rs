//! DescribeLogDirs (kafka-log-dirs.sh, AdminClient `describeLogDirs`, the sizes of
//! `sluice topic describe`): this broker's one data directory (`log.dirs`), with the size
//! of every partition replica it holds, leader or follower.
//!
//! - `topics` null asks for every replica; otherwise only the named partitions held here
//!   are listed (others are left out, as Kafka does).
//! - `offset_lag` is how far a current (not future) replica's log end is below the
//!   partition's high watermark, at least 0 (`Partition::replica_lag`): 0 on the leader;
//!   on a follower, below the high watermark its leader last reported. (Kafka compares
//!   with the follower's own high watermark, which never passes its log end, so its
//!   followers always show 0; the leader's is what says how far behind a copy is.)
//! - `total_bytes` / `usable_bytes` (v4) come from `statvfs` of the directory, -1 when it
//!   cannot be read (Kafka's UNKNOWN_VOLUME_BYTES).

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::state::BrokerState;

/// The answer to a principal that may not describe the cluster: no directories, and the
/// error (carried from v3; before, the empty list is all a client sees, as with Kafka).
pub fn refused(error: kafka_protocol::error::ResponseError) -> DescribeLogDirsResponse {
    DescribeLogDirsResponse::default().with_error_code(error.code())
}

/// Answers DescribeLogDirs (reads sizes and offsets only; no file is opened).
pub fn describe_log_dirs(
    state: &BrokerState,
    request: &DescribeLogDirsRequest,
) -> DescribeLogDirsResponse {
    // None: every replica; Some: topic -> the partitions asked for.
    let wanted: Option<BTreeMap<&str, BTreeSet<i32>>> = request.topics.as_ref().map(|topics| {
        let mut wanted: BTreeMap<&str, BTreeSet<i32>> = BTreeMap::new();
        for t in topics {
            wanted
                .entry(t.topic.0.as_str())
                .or_default()
                .extend(t.partitions.iter().copied());
        }
        wanted
    });
    let mut topics: Vec<DescribeLogDirsTopic> = Vec::new();
    let mut held = state.topics.list();
    held.sort_by(|a, b| a.name.cmp(&b.name));
    for topic in held {
        let asked = match &wanted {
            None => None,
            Some(w) => match w.get(&*topic.name) {
                Some(partitions) => Some(partitions),
                None => continue,
            },
        };
        let partitions: Vec<DescribeLogDirsPartition> = topic
            .partitions()
            .iter()
            .filter(|p| asked.is_none_or(|a| a.contains(&p.index)))
            .map(|p| {
                let size = i64::try_from(p.log.size_bytes()).unwrap_or(i64::MAX);
                let lag = p.replica_lag();
                DescribeLogDirsPartition::default()
                    .with_partition_index(p.index)
                    .with_partition_size(size)
                    .with_offset_lag(lag)
                    .with_is_future_key(false)
            })
            .collect();
        if !partitions.is_empty() {
            topics.push(
                DescribeLogDirsTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic.name.to_string())))
                    .with_partitions(partitions),
            );
        }
    }
    let dir = &state.config.data_dir;
    let (usable, total) = match crate::disk_space::statvfs(dir) {
        Ok((free, total)) => (
            i64::try_from(free).unwrap_or(i64::MAX),
            i64::try_from(total).unwrap_or(i64::MAX),
        ),
        Err(_) => (-1, -1),
    };
    let result = DescribeLogDirsResult::default()
        .with_log_dir(StrBytes::from_string(dir.to_string_lossy().into_owned()))
        .with_topics(topics)
        .with_total_bytes(total)
        .with_usable_bytes(usable);
    DescribeLogDirsResponse::default().with_results(vec![result])
}
