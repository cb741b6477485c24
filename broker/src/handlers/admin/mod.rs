//! Admin APIs: topics (CreateTopics, DeleteTopics, CreatePartitions), configs
//! (DescribeConfigs, IncrementalAlterConfigs), the data directory (DescribeLogDirs) and
//! SCRAM users (Describe/AlterUserScramCredentials), ACLs (Create/Describe/DeleteAcls) and
//! the partitions' idempotent producers (DescribeProducers), and preferred leader election
//! (ElectLeaders), client quotas (Describe/AlterClientQuotas) and partition reassignments
//! (Alter/ListPartitionReassignments).
//!
//! Everything here that changes files runs on a blocking thread (the server decides);
//! the handlers themselves are plain functions of the state and the request.

pub mod acls;
pub mod client_quotas;
pub mod configs;
pub mod elect_leaders;
pub mod log_dirs;
pub mod producers;
pub mod reassignments;
pub mod scram;
pub mod topics;
