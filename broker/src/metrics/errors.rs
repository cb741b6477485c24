//! The error codes a response carries, for the per-API error counts (Kafka's
//! `ErrorsPerSec`, from each response's `errorCounts()`): one count per partition,
//! topic or group that failed, plus the top-level code.
//!
//! Every response the broker encodes implements [`ResponseErrors`] (the encoder requires
//! it), so a new API cannot be served without deciding what its errors are.

use kafka_protocol::messages::*;

/// Calls `f` with every error code in the response (zeros included; the counter skips
/// them).
pub trait ResponseErrors {
    fn for_each_error(&self, f: &mut dyn FnMut(i16));
}

/// Responses with only a top-level `error_code`.
macro_rules! top_level {
    ($($t:ty),* $(,)?) => {$(
        impl ResponseErrors for $t {
            fn for_each_error(&self, f: &mut dyn FnMut(i16)) {
                f(self.error_code);
            }
        }
    )*};
}

top_level!(
    ApiVersionsResponse,
    SaslHandshakeResponse,
    SaslAuthenticateResponse,
    JoinGroupResponse,
    SyncGroupResponse,
    HeartbeatResponse,
    InitProducerIdResponse,
    DescribeClusterResponse,
    DescribeUserScramCredentialsResponse,
    DescribeAclsResponse,
    OffsetDeleteResponse,
    ListGroupsResponse,
);

/// Responses whose errors are per partition, under `topics`.
macro_rules! per_partition {
    ($($t:ty),* $(,)?) => {$(
        impl ResponseErrors for $t {
            fn for_each_error(&self, f: &mut dyn FnMut(i16)) {
                for topic in &self.topics {
                    for partition in &topic.partitions {
                        f(partition.error_code);
                    }
                }
            }
        }
    )*};
}

/// Responses whose errors are one per entry of a list (topics, groups, results).
macro_rules! per_entry {
    ($($t:ty => $list:ident),* $(,)?) => {$(
        impl ResponseErrors for $t {
            fn for_each_error(&self, f: &mut dyn FnMut(i16)) {
                for entry in &self.$list {
                    f(entry.error_code);
                }
            }
        }
    )*};
}

per_partition!(
    ListOffsetsResponse,
    OffsetForLeaderEpochResponse,
    DeleteRecordsResponse,
    OffsetCommitResponse,
    DescribeProducersResponse
);

per_entry!(
    DescribeGroupsResponse => groups,
    DeleteGroupsResponse => results,
    CreateTopicsResponse => topics,
    DeleteTopicsResponse => responses,
    CreatePartitionsResponse => results,
    DescribeConfigsResponse => results,
    IncrementalAlterConfigsResponse => responses,
    CreateAclsResponse => results,
    DeleteAclsResponse => filter_results,
    AlterUserScramCredentialsResponse => results,
    AlterConfigsResponse => responses,
    AlterClientQuotasResponse => entries,
);

impl ResponseErrors for DescribeClientQuotasResponse {
    fn for_each_error(&self, f: &mut dyn FnMut(i16)) {
        f(self.error_code);
    }
}

impl ResponseErrors for ProduceResponse {
    fn for_each_error(&self, f: &mut dyn FnMut(i16)) {
        for topic in &self.responses {
            for partition in &topic.partition_responses {
                f(partition.error_code);
            }
        }
    }
}

impl ResponseErrors for FetchResponse {
    fn for_each_error(&self, f: &mut dyn FnMut(i16)) {
        f(self.error_code);
        for topic in &self.responses {
            for partition in &topic.partitions {
                f(partition.error_code);
            }
        }
    }
}

impl ResponseErrors for kafka_protocol::messages::AlterPartitionReassignmentsResponse {
    fn for_each_error(&self, f: &mut dyn FnMut(i16)) {
        f(self.error_code);
        for topic in &self.responses {
            for partition in &topic.partitions {
                f(partition.error_code);
            }
        }
    }
}

impl ResponseErrors for kafka_protocol::messages::ListPartitionReassignmentsResponse {
    fn for_each_error(&self, f: &mut dyn FnMut(i16)) {
        f(self.error_code);
    }
}

impl ResponseErrors for ElectLeadersResponse {
    fn for_each_error(&self, f: &mut dyn FnMut(i16)) {
        f(self.error_code);
        for topic in &self.replica_election_results {
            for partition in &topic.partition_result {
                f(partition.error_code);
            }
        }
    }
}

impl ResponseErrors for MetadataResponse {
    fn for_each_error(&self, f: &mut dyn FnMut(i16)) {
        for topic in &self.topics {
            f(topic.error_code);
            for partition in &topic.partitions {
                f(partition.error_code);
            }
        }
    }
}

impl ResponseErrors for OffsetFetchResponse {
    fn for_each_error(&self, f: &mut dyn FnMut(i16)) {
        f(self.error_code);
        for topic in &self.topics {
            for partition in &topic.partitions {
                f(partition.error_code);
            }
        }
        for group in &self.groups {
            f(group.error_code);
            for topic in &group.topics {
                for partition in &topic.partitions {
                    f(partition.error_code);
                }
            }
        }
    }
}

impl ResponseErrors for FindCoordinatorResponse {
    fn for_each_error(&self, f: &mut dyn FnMut(i16)) {
        f(self.error_code);
        for coordinator in &self.coordinators {
            f(coordinator.error_code);
        }
    }
}

impl ResponseErrors for LeaveGroupResponse {
    fn for_each_error(&self, f: &mut dyn FnMut(i16)) {
        f(self.error_code);
        for member in &self.members {
            f(member.error_code);
        }
    }
}

impl ResponseErrors for DescribeLogDirsResponse {
    fn for_each_error(&self, f: &mut dyn FnMut(i16)) {
        f(self.error_code);
        for dir in &self.results {
            f(dir.error_code);
        }
    }
}

impl ResponseErrors for DescribeQuorumResponse {
    fn for_each_error(&self, f: &mut dyn FnMut(i16)) {
        f(self.error_code);
        for topic in &self.topics {
            for partition in &topic.partitions {
                f(partition.error_code);
            }
        }
    }
}

impl ResponseErrors for DescribeTopicPartitionsResponse {
    fn for_each_error(&self, f: &mut dyn FnMut(i16)) {
        for topic in &self.topics {
            f(topic.error_code);
            for partition in &topic.partitions {
                f(partition.error_code);
            }
        }
    }
}
