//! Admin APIs: topics (CreateTopics, DeleteTopics, CreatePartitions), configs
//! (DescribeConfigs, IncrementalAlterConfigs) and the data directory (DescribeLogDirs).
//!
//! Everything here that changes files runs on a blocking thread (the server decides);
//! the handlers themselves are plain functions of the state and the request.

pub mod configs;
pub mod log_dirs;
pub mod topics;
