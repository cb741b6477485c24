//! Kafka's ACL model: resource types, pattern types, operations, permissions, and the
//! bindings and filters made of them, with Kafka's wire codes and names. The broker's
//! authorizer decides with it, and the client builds CreateAcls / DescribeAcls /
//! DeleteAcls requests with it.
//!
//! A binding says: `principal` from `host` is allowed (or denied) `operation` on the
//! resources that `pattern` matches. A filter selects bindings for DescribeAcls and
//! DeleteAcls, with Kafka's `ResourcePatternFilter` / `AccessControlEntryFilter` rules.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The name of the one cluster resource (Kafka's `kafka-cluster`).
pub const CLUSTER_NAME: &str = "kafka-cluster";
/// A literal resource name, principal or host that matches every one.
pub const WILDCARD: &str = "*";

/// Defines a Kafka ACL enum with its wire code and its name (as `kafka-acls` prints it).
macro_rules! kafka_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $code:literal, $text:literal;)* }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
        pub enum $name {
            $($variant,)*
        }

        impl $name {
            pub fn from_code(code: i8) -> Option<$name> {
                match code {
                    $($code => Some($name::$variant),)*
                    _ => None,
                }
            }

            pub fn code(self) -> i8 {
                match self {
                    $($name::$variant => $code,)*
                }
            }

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

kafka_enum! {
    /// What kind of thing an ACL is about. `Any` only appears in filters.
    ResourceType {
        Any = 1, "ANY";
        Topic = 2, "TOPIC";
        Group = 3, "GROUP";
        Cluster = 4, "CLUSTER";
        TransactionalId = 5, "TRANSACTIONAL_ID";
        DelegationToken = 6, "DELEGATION_TOKEN";
        User = 7, "USER";
    }
}

kafka_enum! {
    /// How a binding's resource name matches. `Any` and `Match` only appear in filters.
    PatternType {
        Any = 1, "ANY";
        Match = 2, "MATCH";
        Literal = 3, "LITERAL";
        Prefixed = 4, "PREFIXED";
    }
}

kafka_enum! {
    /// What a principal does to a resource. `Any` only appears in filters.
    Operation {
        Any = 1, "ANY";
        All = 2, "ALL";
        Read = 3, "READ";
        Write = 4, "WRITE";
        Create = 5, "CREATE";
        Delete = 6, "DELETE";
        Alter = 7, "ALTER";
        Describe = 8, "DESCRIBE";
        ClusterAction = 9, "CLUSTER_ACTION";
        DescribeConfigs = 10, "DESCRIBE_CONFIGS";
        AlterConfigs = 11, "ALTER_CONFIGS";
        IdempotentWrite = 12, "IDEMPOTENT_WRITE";
        CreateTokens = 13, "CREATE_TOKENS";
        DescribeTokens = 14, "DESCRIBE_TOKENS";
        TwoPhaseCommit = 15, "TWO_PHASE_COMMIT";
    }
}

kafka_enum! {
    /// Allow or deny. `Any` only appears in filters.
    Permission {
        Any = 1, "ANY";
        Deny = 2, "DENY";
        Allow = 3, "ALLOW";
    }
}

impl Operation {
    /// The operations an ALLOW binding for `self` also allows (Kafka's implied
    /// operations): Describe with Read, Write, Delete or Alter; DescribeConfigs with
    /// AlterConfigs.
    pub fn implied_by(self) -> &'static [Operation] {
        match self {
            Operation::Describe => &[
                Operation::Read,
                Operation::Write,
                Operation::Delete,
                Operation::Alter,
            ],
            Operation::DescribeConfigs => &[Operation::AlterConfigs],
            _ => &[],
        }
    }

    /// The operations that apply to `resource`, in Kafka's order: the bits of an
    /// "authorized operations" answer and what `All` stands for.
    pub fn of_resource(resource: ResourceType) -> &'static [Operation] {
        use Operation::*;
        match resource {
            ResourceType::Topic => &[
                Read,
                Write,
                Create,
                Describe,
                Delete,
                Alter,
                DescribeConfigs,
                AlterConfigs,
            ],
            ResourceType::Group => &[Read, Describe, Delete, DescribeConfigs, AlterConfigs],
            ResourceType::Cluster => &[
                Create,
                ClusterAction,
                DescribeConfigs,
                AlterConfigs,
                IdempotentWrite,
                Alter,
                Describe,
            ],
            ResourceType::TransactionalId => &[Describe, Write, TwoPhaseCommit],
            ResourceType::DelegationToken => &[Describe],
            ResourceType::User => &[CreateTokens, DescribeTokens],
            ResourceType::Any => &[],
        }
    }
}

/// One ACL: principal from host may (or may not) do operation on the resources of
/// (resource type, name, pattern type).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AclBinding {
    pub resource_type: ResourceType,
    pub resource_name: String,
    pub pattern_type: PatternType,
    pub principal: String,
    pub host: String,
    pub operation: Operation,
    pub permission: Permission,
}

/// Why a binding cannot be created (Kafka answers INVALID_REQUEST with this message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidAcl(pub String);

/// A binding's fields as they come off the wire, before [`AclBinding::new`] checks them.
pub struct RawBinding<'a> {
    pub resource_type: i8,
    pub resource_name: &'a str,
    pub pattern_type: i8,
    pub principal: &'a str,
    pub host: &'a str,
    pub operation: i8,
    pub permission: i8,
}

impl AclBinding {
    /// A binding from its wire fields, checked as Kafka checks a new ACL.
    pub fn new(raw: &RawBinding<'_>) -> Result<AclBinding, InvalidAcl> {
        let bad = |what: String| Err(InvalidAcl(what));
        let resource_type = match ResourceType::from_code(raw.resource_type) {
            Some(ResourceType::Any) | None => {
                return bad(format!("Invalid resource type {}", raw.resource_type))
            }
            Some(t) => t,
        };
        let pattern_type = match PatternType::from_code(raw.pattern_type) {
            Some(p @ (PatternType::Literal | PatternType::Prefixed)) => p,
            _ => return bad(format!("Invalid pattern type {}", raw.pattern_type)),
        };
        let operation = match Operation::from_code(raw.operation) {
            Some(Operation::Any) | None => {
                return bad(format!("Invalid operation {}", raw.operation))
            }
            Some(o) => o,
        };
        let permission = match Permission::from_code(raw.permission) {
            Some(Permission::Any) | None => {
                return bad(format!("Invalid permission type {}", raw.permission))
            }
            Some(p) => p,
        };
        if raw.resource_name.is_empty() {
            return bad("Invalid empty resource name".to_owned());
        }
        if resource_type == ResourceType::Cluster && raw.resource_name != CLUSTER_NAME {
            return bad(format!(
                "The only valid name for the CLUSTER resource is {CLUSTER_NAME}"
            ));
        }
        if operation != Operation::All
            && !Operation::of_resource(resource_type).contains(&operation)
        {
            return bad(format!(
                "{operation} is not a valid operation for the {resource_type} resource"
            ));
        }
        match raw.principal.split_once(':') {
            Some((kind, name)) if !kind.is_empty() && !name.is_empty() => {}
            _ => {
                return bad(format!(
                    "Could not parse principal from `{}` (no colon is present separating the \
                     principal type from the principal name)",
                    raw.principal
                ))
            }
        }
        if raw.host.is_empty() {
            return bad("Host pattern cannot be null or empty".to_owned());
        }
        if raw.host != WILDCARD && raw.host.parse::<std::net::IpAddr>().is_err() {
            return bad(format!("Invalid host {} (an IP address or *)", raw.host));
        }
        Ok(AclBinding {
            resource_type,
            resource_name: raw.resource_name.to_owned(),
            pattern_type,
            principal: raw.principal.to_owned(),
            host: raw.host.to_owned(),
            operation,
            permission,
        })
    }

    /// Whether this binding's pattern covers the resource `name` of its type.
    pub fn covers(&self, name: &str) -> bool {
        match self.pattern_type {
            PatternType::Literal => self.resource_name == name || self.resource_name == WILDCARD,
            PatternType::Prefixed => name.starts_with(&self.resource_name),
            PatternType::Any | PatternType::Match => false,
        }
    }
}

impl fmt::Display for AclBinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} from {} on {}:{}:{}",
            self.permission,
            self.principal,
            self.operation,
            self.host,
            self.resource_type,
            self.pattern_type,
            self.resource_name,
        )
    }
}

/// Selects bindings for DescribeAcls and DeleteAcls (Kafka's `AclBindingFilter`): `None`
/// fields and the `Any` values match everything.
#[derive(Debug, Clone)]
pub struct AclFilter {
    pub resource_type: ResourceType,
    pub resource_name: Option<String>,
    pub pattern_type: PatternType,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: Operation,
    pub permission: Permission,
}

/// A filter's fields as they come off the wire, before [`AclFilter::new`] checks them.
pub struct RawFilter<'a> {
    pub resource_type: i8,
    pub resource_name: Option<&'a str>,
    pub pattern_type: i8,
    pub principal: Option<&'a str>,
    pub host: Option<&'a str>,
    pub operation: i8,
    pub permission: i8,
}

impl AclFilter {
    /// A filter from its wire fields; unknown codes are refused.
    pub fn new(raw: &RawFilter<'_>) -> Result<AclFilter, InvalidAcl> {
        let bad = |what: &str, code: i8| InvalidAcl(format!("Invalid {what} {code} in filter"));
        Ok(AclFilter {
            resource_type: ResourceType::from_code(raw.resource_type)
                .ok_or_else(|| bad("resource type", raw.resource_type))?,
            resource_name: raw.resource_name.map(str::to_owned),
            pattern_type: PatternType::from_code(raw.pattern_type)
                .ok_or_else(|| bad("pattern type", raw.pattern_type))?,
            principal: raw.principal.map(str::to_owned),
            host: raw.host.map(str::to_owned),
            operation: Operation::from_code(raw.operation)
                .ok_or_else(|| bad("operation", raw.operation))?,
            permission: Permission::from_code(raw.permission)
                .ok_or_else(|| bad("permission type", raw.permission))?,
        })
    }

    /// A filter that matches every binding.
    pub fn any() -> AclFilter {
        AclFilter {
            resource_type: ResourceType::Any,
            resource_name: None,
            pattern_type: PatternType::Any,
            principal: None,
            host: None,
            operation: Operation::Any,
            permission: Permission::Any,
        }
    }

    /// Whether `binding` is selected. The resource part follows Kafka's
    /// `ResourcePatternFilter.matches`: with pattern type MATCH, a name selects the
    /// bindings that would apply to a resource of that name (its literal binding, the
    /// literal `*` and the prefixes of the name); with ANY or a concrete pattern type, the
    /// name must be the binding's name exactly.
    pub fn matches(&self, binding: &AclBinding) -> bool {
        if self.resource_type != ResourceType::Any && self.resource_type != binding.resource_type {
            return false;
        }
        if !matches!(self.pattern_type, PatternType::Any | PatternType::Match)
            && self.pattern_type != binding.pattern_type
        {
            return false;
        }
        let name_matches = match &self.resource_name {
            None => true,
            Some(name) if self.pattern_type == PatternType::Match => binding.covers(name),
            Some(name) => *name == binding.resource_name,
        };
        name_matches
            && self
                .principal
                .as_ref()
                .is_none_or(|p| *p == binding.principal)
            && self.host.as_ref().is_none_or(|h| *h == binding.host)
            && (self.operation == Operation::Any || self.operation == binding.operation)
            && (self.permission == Permission::Any || self.permission == binding.permission)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw<'a>(name: &'a str, principal: &'a str, host: &'a str) -> RawBinding<'a> {
        RawBinding {
            resource_type: ResourceType::Topic.code(),
            resource_name: name,
            pattern_type: PatternType::Literal.code(),
            principal,
            host,
            operation: Operation::Read.code(),
            permission: Permission::Allow.code(),
        }
    }

    #[test]
    fn new_bindings_are_checked_as_kafka_checks_them() {
        assert!(AclBinding::new(&raw("orders", "User:alice", "*")).is_ok());
        assert!(AclBinding::new(&raw("orders", "User:alice", "127.0.0.1")).is_ok());
        assert!(AclBinding::new(&raw("", "User:alice", "*")).is_err());
        assert!(AclBinding::new(&raw("orders", "alice", "*")).is_err());
        assert!(AclBinding::new(&raw("orders", "User:", "*")).is_err());
        assert!(AclBinding::new(&raw("orders", "User:alice", "")).is_err());
        assert!(AclBinding::new(&raw("orders", "User:alice", "not-an-ip")).is_err());
        let mut any_type = raw("orders", "User:alice", "*");
        any_type.resource_type = ResourceType::Any.code();
        assert!(AclBinding::new(&any_type).is_err());
        let mut match_pattern = raw("orders", "User:alice", "*");
        match_pattern.pattern_type = PatternType::Match.code();
        assert!(AclBinding::new(&match_pattern).is_err());
        let mut unknown_op = raw("orders", "User:alice", "*");
        unknown_op.operation = 0;
        assert!(AclBinding::new(&unknown_op).is_err());
        let mut cluster = raw("other", "User:alice", "*");
        cluster.resource_type = ResourceType::Cluster.code();
        cluster.operation = Operation::Create.code();
        assert!(AclBinding::new(&cluster).is_err());
        cluster.resource_name = CLUSTER_NAME;
        assert!(AclBinding::new(&cluster).is_ok());
        let mut group_write = raw("g", "User:alice", "*");
        group_write.resource_type = ResourceType::Group.code();
        group_write.operation = Operation::Write.code();
        assert!(AclBinding::new(&group_write).is_err());
    }

    #[test]
    fn filters_follow_kafkas_resource_pattern_rules() {
        let literal = AclBinding::new(&raw("orders", "User:alice", "*")).unwrap();
        let wildcard = AclBinding::new(&raw("*", "User:alice", "*")).unwrap();
        let mut prefixed = literal.clone();
        prefixed.pattern_type = PatternType::Prefixed;
        prefixed.resource_name = "ord".to_owned();
        let filter = |pattern: PatternType, name: &str| AclFilter {
            pattern_type: pattern,
            resource_name: Some(name.to_owned()),
            ..AclFilter::any()
        };
        let selected = |f: &AclFilter| {
            [&literal, &wildcard, &prefixed]
                .iter()
                .filter(|b| f.matches(b))
                .count()
        };
        assert_eq!(selected(&AclFilter::any()), 3);
        assert_eq!(selected(&filter(PatternType::Match, "orders")), 3);
        assert_eq!(selected(&filter(PatternType::Match, "other")), 1);
        assert_eq!(selected(&filter(PatternType::Any, "orders")), 1);
        assert_eq!(selected(&filter(PatternType::Literal, "ord")), 0);
        assert_eq!(selected(&filter(PatternType::Prefixed, "ord")), 1);
        let by_principal = AclFilter {
            principal: Some("User:bob".to_owned()),
            ..AclFilter::any()
        };
        assert_eq!(selected(&by_principal), 0);
    }
}
