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

impl ResponseErrors for ListOffsetsResponse {
    fn for_each_error(&self, f: &mut dyn FnMut(i16)) {
        for topic in &self.topics {
            for partition in &topic.partitions {
                f(partition.error_code);
            }
        }
    }
}

impl ResponseErrors for OffsetForLeaderEpochResponse {
    fn for_each_error(&self, f: &mut dyn FnMut(i16)) {
        for topic in &self.topics {
            for partition in &topic.partitions {
                f(partition.error_code);
            }
        }
    }
}

impl ResponseErrors for DeleteRecordsResponse {
    fn for_each_error(&self, f: &mut dyn FnMut(i16)) {
        for topic in &self.topics {
            for partition in &topic.partitions {
                f(partition.error_code);
            }
        }
    }
}

impl ResponseErrors for OffsetCommitResponse {
    fn for_each_error(&self, f: &mut dyn FnMut(i16)) {
        for topic in &self.topics {
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

impl ResponseErrors for DescribeGroupsResponse {
    fn for_each_error(&self, f: &mut dyn FnMut(i16)) {
        for group in &self.groups {
            f(group.error_code);
        }
    }
}

impl ResponseErrors for DeleteGroupsResponse {
    fn for_each_error(&self, f: &mut dyn FnMut(i16)) {
        for result in &self.results {
            f(result.error_code);
        }
    }
}

impl ResponseErrors for CreateTopicsResponse {
    fn for_each_error(&self, f: &mut dyn FnMut(i16)) {
        for topic in &self.topics {
            f(topic.error_code);
        }
    }
}

impl ResponseErrors for DeleteTopicsResponse {
    fn for_each_error(&self, f: &mut dyn FnMut(i16)) {
        for topic in &self.responses {
            f(topic.error_code);
        }
    }
}

impl ResponseErrors for CreatePartitionsResponse {
    fn for_each_error(&self, f: &mut dyn FnMut(i16)) {
        for result in &self.results {
            f(result.error_code);
        }
    }
}

impl ResponseErrors for DescribeConfigsResponse {
    fn for_each_error(&self, f: &mut dyn FnMut(i16)) {
        for result in &self.results {
            f(result.error_code);
        }
    }
}

impl ResponseErrors for IncrementalAlterConfigsResponse {
    fn for_each_error(&self, f: &mut dyn FnMut(i16)) {
        for response in &self.responses {
            f(response.error_code);
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

impl ResponseErrors for CreateAclsResponse {
    fn for_each_error(&self, f: &mut dyn FnMut(i16)) {
        for result in &self.results {
            f(result.error_code);
        }
    }
}

impl ResponseErrors for DeleteAclsResponse {
    fn for_each_error(&self, f: &mut dyn FnMut(i16)) {
        for result in &self.filter_results {
            f(result.error_code);
        }
    }
}

impl ResponseErrors for AlterUserScramCredentialsResponse {
    fn for_each_error(&self, f: &mut dyn FnMut(i16)) {
        for result in &self.results {
            f(result.error_code);
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

impl ResponseErrors for AlterConfigsResponse {
    fn for_each_error(&self, f: &mut dyn FnMut(i16)) {
        for response in &self.responses {
            f(response.error_code);
        }
    }
}

impl ResponseErrors for DescribeProducersResponse {
    fn for_each_error(&self, f: &mut dyn FnMut(i16)) {
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
