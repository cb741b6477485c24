//! Access control lists with Kafka's model and rules.
//!
//! - `model` (`sluice_metadata::acl`, shared with the client and, later, the replicated
//!   metadata): resource types, pattern types, operations, permissions, bindings and
//!   filters, with Kafka's wire codes and validation.
//! - `store`: the bindings, durable in the data directory.
//! - `authorizer`: decisions (`StandardAuthorizer`'s rules) and the per-connection cache.
//!
//! Which operation each API checks lives with the dispatcher (`server::authorize`), and
//! the CreateAcls / DescribeAcls / DeleteAcls handlers in `handlers::admin::acls`.

pub mod authorizer;
pub mod store;

pub use sluice_metadata::acl as model;

pub use authorizer::{Access, AccessCache, Authorizer};
pub use model::{AclBinding, AclFilter, Operation, PatternType, Permission, ResourceType};
