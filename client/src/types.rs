//! Small value types shared by the producer, consumer and admin APIs.

use std::fmt;

pub use sluice_storage::batch::Header;

/// A partition of a topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    /// `topic-partition`, as Kafka prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// Where to start reading a partition, or what offset to look up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start offset (oldest record still stored).
    Earliest,
    /// The log end offset (high watermark): the offset of the next record produced.
    Latest,
    /// The first offset whose record timestamp is at or after this many milliseconds
    /// since the Unix epoch; the log end offset if there is none.
    Timestamp(i64),
}

impl OffsetSpec {
    /// The special timestamp ListOffsets uses for this spec.
    pub(crate) fn list_offsets_timestamp(self) -> i64 {
        match self {
            OffsetSpec::Earliest => -2,
            OffsetSpec::Latest => -1,
            OffsetSpec::Timestamp(ms) => ms,
        }
    }
}
