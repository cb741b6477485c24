//! DescribeTopicPartitions (API 75, KIP-966): topics and their partitions, paginated,
//! as newer admin clients (`kafka-topics --describe`) ask for them.
//!
//! The answer is the Metadata answer for the same topics (its authorization included:
//! unknown topics get UNKNOWN_TOPIC_OR_PARTITION, undescribable ones
//! TOPIC_AUTHORIZATION_FAILED, and asking for every topic lists only the describable
//! ones), reshaped and cut as Kafka's handler cuts it: topics by name, from the cursor's
//! topic and partition, at most `response_partition_limit` partitions (capped at
//! [`MAX_PARTITIONS`], Kafka's `max.request.partition.size.limit` default); when the
//! limit stops the answer early, `next_cursor` names the first partition left out.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse, MetadataRequest,
    MetadataResponse,
};

/// Kafka's `max.request.partition.size.limit` default.
pub const MAX_PARTITIONS: i32 = 2000;

/// The Metadata request (v12: topic ids and authorized operations) whose answer this
/// API reshapes; never creates a topic.
pub fn as_metadata(request: &DescribeTopicPartitionsRequest) -> MetadataRequest {
    let topics = (!request.topics.is_empty()).then(|| {
        request
            .topics
            .iter()
            .map(|t| MetadataRequestTopic::default().with_name(Some(t.name.clone())))
            .collect()
    });
    MetadataRequest::default()
        .with_topics(topics)
        .with_allow_auto_topic_creation(false)
        .with_include_topic_authorized_operations(true)
}

/// The metadata version [`as_metadata`]'s request is handled at.
pub const METADATA_VERSION: i16 = 12;

/// Reshapes and paginates the Metadata answer; Err for a cursor naming a topic not asked
/// for (Kafka's INVALID_REQUEST, which closes nothing: the client gets the error).
pub fn answer(
    request: &DescribeTopicPartitionsRequest,
    metadata: MetadataResponse,
) -> Result<DescribeTopicPartitionsResponse, ResponseError> {
    let mut topics = metadata.topics;
    topics.sort_by(|a, b| {
        a.name
            .as_ref()
            .map(|n| &n.0)
            .cmp(&b.name.as_ref().map(|n| &n.0))
    });
    if let Some(cursor) = &request.cursor {
        let asked =
            request.topics.is_empty() || request.topics.iter().any(|t| t.name == cursor.topic_name);
        if !asked || cursor.partition_index < 0 {
            return Err(ResponseError::InvalidRequest);
        }
        topics.retain(|t| t.name.as_ref().is_some_and(|n| n.0 >= cursor.topic_name.0));
    }
    let mut budget = request.response_partition_limit.clamp(1, MAX_PARTITIONS) as usize;
    let mut answered = Vec::new();
    let mut next_cursor = None;
    for mut topic in topics {
        let name = topic.name.clone().unwrap_or_default();
        if budget == 0 {
            next_cursor = Some(
                Cursor::default()
                    .with_topic_name(name)
                    .with_partition_index(0),
            );
            break;
        }
        topic.partitions.sort_by_key(|p| p.partition_index);
        if let Some(cursor) = request.cursor.as_ref().filter(|c| c.topic_name == name) {
            topic
                .partitions
                .retain(|p| p.partition_index >= cursor.partition_index);
        }
        if topic.partitions.len() > budget {
            let rest = topic.partitions.split_off(budget);
            next_cursor = Some(
                Cursor::default()
                    .with_topic_name(name)
                    .with_partition_index(rest[0].partition_index),
            );
            budget = 0;
        } else {
            budget -= topic.partitions.len();
        }
        let partitions = topic
            .partitions
            .into_iter()
            .map(|p| {
                DescribeTopicPartitionsResponsePartition::default()
                    .with_error_code(p.error_code)
                    .with_partition_index(p.partition_index)
                    .with_leader_id(p.leader_id)
                    .with_leader_epoch(p.leader_epoch)
                    .with_replica_nodes(p.replica_nodes)
                    .with_isr_nodes(p.isr_nodes)
                    // No eligible leader replicas (KIP-966) yet: empty lists, as Kafka
                    // answers with ELR off.
                    .with_eligible_leader_replicas(Some(Vec::new()))
                    .with_last_known_elr(Some(Vec::new()))
                    .with_offline_replicas(p.offline_replicas)
            })
            .collect();
        answered.push(
            DescribeTopicPartitionsResponseTopic::default()
                .with_error_code(topic.error_code)
                .with_name(topic.name)
                .with_topic_id(topic.topic_id)
                .with_is_internal(topic.is_internal)
                .with_partitions(partitions)
                .with_topic_authorized_operations(topic.topic_authorized_operations),
        );
        if next_cursor.is_some() {
            break;
        }
    }
    Ok(DescribeTopicPartitionsResponse::default()
        .with_topics(answered)
        .with_next_cursor(next_cursor))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::describe_topic_partitions_request::{self, TopicRequest};
    use kafka_protocol::messages::metadata_response::{
        MetadataResponsePartition, MetadataResponseTopic,
    };
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::protocol::StrBytes;

    fn name(n: &str) -> TopicName {
        TopicName(StrBytes::from_string(n.to_owned()))
    }

    fn metadata(topics: &[(&str, i32)]) -> MetadataResponse {
        MetadataResponse::default().with_topics(
            topics
                .iter()
                .map(|(n, count)| {
                    MetadataResponseTopic::default()
                        .with_name(Some(name(n)))
                        .with_partitions(
                            (0..*count)
                                .rev()
                                .map(|i| {
                                    MetadataResponsePartition::default().with_partition_index(i)
                                })
                                .collect(),
                        )
                })
                .collect(),
        )
    }

    fn request(limit: i32, cursor: Option<(&str, i32)>) -> DescribeTopicPartitionsRequest {
        DescribeTopicPartitionsRequest::default()
            .with_response_partition_limit(limit)
            .with_cursor(cursor.map(|(t, p)| {
                describe_topic_partitions_request::Cursor::default()
                    .with_topic_name(name(t))
                    .with_partition_index(p)
            }))
    }

    /// (topic, partitions) answered, and the next cursor.
    type Shape = (Vec<(String, Vec<i32>)>, Option<(String, i32)>);

    fn shape(r: &DescribeTopicPartitionsResponse) -> Shape {
        (
            r.topics
                .iter()
                .map(|t| {
                    (
                        t.name.as_ref().unwrap().0.to_string(),
                        t.partitions.iter().map(|p| p.partition_index).collect(),
                    )
                })
                .collect(),
            r.next_cursor
                .as_ref()
                .map(|c| (c.topic_name.0.to_string(), c.partition_index)),
        )
    }

    #[test]
    fn pages_follow_the_cursor_through_topics_in_name_order() {
        let all = || metadata(&[("b", 3), ("a", 2), ("c", 1)]);
        let first = answer(&request(4, None), all()).unwrap();
        assert_eq!(
            shape(&first),
            (
                vec![("a".into(), vec![0, 1]), ("b".into(), vec![0, 1])],
                Some(("b".into(), 2))
            )
        );
        let second = answer(&request(4, Some(("b", 2))), all()).unwrap();
        assert_eq!(
            shape(&second),
            (vec![("b".into(), vec![2]), ("c".into(), vec![0])], None)
        );
        // A limit reached exactly at a topic's end points at the next topic.
        let exact = answer(&request(2, None), all()).unwrap();
        assert_eq!(
            shape(&exact),
            (vec![("a".into(), vec![0, 1])], Some(("b".into(), 0)))
        );
    }

    #[test]
    fn a_cursor_must_name_a_topic_asked_for() {
        let asked = request(10, Some(("z", 0)))
            .with_topics(vec![TopicRequest::default().with_name(name("a"))]);
        assert_eq!(
            answer(&asked, metadata(&[("a", 1)])).unwrap_err(),
            ResponseError::InvalidRequest
        );
    }
}
