//! Authorization decisions with the rules of Kafka's `StandardAuthorizer`, and the
//! per-connection cache that keeps them off the hot path.
//!
//! For a principal, a client address, an operation and a resource:
//! 1. a super user (`super.users`) may do everything;
//! 2. the bindings that cover the resource are its literal ones, the literal `*` and
//!    the prefixed ones whose prefix starts the name;
//! 3. among them, a binding applies to the request when its principal is the request's
//!    (or `User:*`) and its host the client's address (or `*`);
//! 4. an applying DENY for the operation (or ALL) denies, whatever allows it;
//! 5. an applying ALLOW for the operation, ALL, or an operation that implies it (Read,
//!    Write, Delete and Alter imply Describe; AlterConfigs implies DescribeConfigs)
//!    allows;
//! 6. otherwise, when no binding at all covers the resource (for any principal),
//!    `allow.everyone.if.no.acl.found` decides; else the answer is no.
//!
//! A connection asks the same questions over and over (Write on its topic for every
//! produce), so [`Access`] keeps its answers until the ACLs change: a change bumps the
//! authorizer's generation, and a cache that sees a new generation starts empty.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use super::model::{
    AclBinding, AclFilter, Operation, PatternType, Permission, ResourceType, WILDCARD,
};
use super::store::AclStore;
use crate::config::SecurityConfig;
use crate::security::{Principal, SecurityError};

/// The principal every `User:*` binding applies to.
const WILDCARD_PRINCIPAL: &str = "User:*";
/// Cached answers per connection and (resource type, operation) at most.
const MAX_CACHED: usize = 4096;

/// See the module docs.
pub struct Authorizer {
    /// `None`: no authorizer is configured; everything is allowed and the ACL APIs
    /// answer SECURITY_DISABLED.
    store: Option<AclStore>,
    super_users: HashSet<String>,
    allow_if_no_acl: bool,
    /// Bumped by every change of the ACLs.
    generation: AtomicU64,
}

impl Authorizer {
    /// The authorizer `config` asks for, with the ACLs of `data_dir`.
    pub fn open(data_dir: &Path, config: &SecurityConfig) -> Result<Authorizer, SecurityError> {
        let store = if config.authorizer {
            let store = AclStore::open(data_dir)?;
            tracing::info!(acls = store.snapshot().len(), "authorizer on");
            Some(store)
        } else {
            None
        };
        Ok(Authorizer {
            store,
            super_users: config.super_users.iter().cloned().collect(),
            allow_if_no_acl: config.allow_everyone_if_no_acl_found,
            generation: AtomicU64::new(0),
        })
    }

    pub fn is_enabled(&self) -> bool {
        self.store.is_some()
    }

    pub fn is_super_user(&self, principal: &Principal) -> bool {
        self.super_users.contains(&principal.to_string())
    }

    /// The ACL store, when the authorizer is on.
    pub fn store(&self) -> Option<&AclStore> {
        self.store.as_ref()
    }

    /// Stores `bindings` (see [`AclStore::create`]).
    pub fn create(&self, bindings: &[AclBinding]) -> Result<(), SecurityError> {
        let store = self
            .store
            .as_ref()
            .ok_or(SecurityError::AuthorizerDisabled)?;
        let result = store.create(bindings);
        self.generation.fetch_add(1, Ordering::AcqRel);
        result
    }

    /// Removes what `filters` select (see [`AclStore::delete`]).
    pub fn delete(&self, filters: &[AclFilter]) -> Result<Vec<Vec<AclBinding>>, SecurityError> {
        let store = self
            .store
            .as_ref()
            .ok_or(SecurityError::AuthorizerDisabled)?;
        let result = store.delete(filters);
        self.generation.fetch_add(1, Ordering::AcqRel);
        result
    }

    /// The decision for one request, uncached; see the module docs.
    pub fn decide(
        &self,
        principal: &str,
        host: IpAddr,
        operation: Operation,
        resource: ResourceType,
        name: &str,
    ) -> bool {
        let Some(store) = &self.store else {
            return true;
        };
        if self.super_users.contains(principal) {
            return true;
        }
        let acls = store.snapshot();
        let mut covered = false;
        let mut allowed = false;
        for entry in acls.covering(resource, name) {
            covered = true;
            let applies = (entry.principal == principal || entry.principal == WILDCARD_PRINCIPAL)
                && entry.host.is_none_or(|h| h == host);
            if !applies {
                continue;
            }
            let names_operation = entry.operation == operation || entry.operation == Operation::All;
            match entry.permission {
                Permission::Deny if names_operation => return false,
                Permission::Allow
                    if names_operation || operation.implied_by().contains(&entry.operation) =>
                {
                    allowed = true
                }
                _ => {}
            }
        }
        allowed || (!covered && self.allow_if_no_acl)
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

/// A connection's cached decisions; see the module docs.
#[derive(Default)]
pub struct AccessCache {
    generation: u64,
    decisions: HashMap<(ResourceType, Operation), HashMap<String, bool>>,
}

/// The questions one connection asks, answered through its cache.
pub struct Access<'a> {
    authorizer: &'a Authorizer,
    principal: &'a Principal,
    host: IpAddr,
    cache: &'a mut AccessCache,
}

impl<'a> Access<'a> {
    pub fn new(
        authorizer: &'a Authorizer,
        principal: &'a Principal,
        host: IpAddr,
        cache: &'a mut AccessCache,
    ) -> Access<'a> {
        Access {
            authorizer,
            principal,
            host: host.to_canonical(),
            cache,
        }
    }

    pub fn principal(&self) -> &Principal {
        self.principal
    }

    /// Whether the principal is one of the `super.users`.
    pub fn is_super_user(&self) -> bool {
        self.authorizer.is_super_user(self.principal)
    }

    /// Whether `super.users` names anyone.
    pub fn has_super_users(&self) -> bool {
        !self.authorizer.super_users.is_empty()
    }

    /// The client's address, as ACL host filters see it.
    pub fn host(&self) -> IpAddr {
        self.host
    }

    /// Whether authorization is on at all (when off, every check allows).
    pub fn is_enabled(&self) -> bool {
        self.authorizer.is_enabled()
    }

    /// Whether the connection's principal may do `operation` on `name` of `resource`.
    pub fn allows(&mut self, operation: Operation, resource: ResourceType, name: &str) -> bool {
        if !self.authorizer.is_enabled() {
            return true;
        }
        let generation = self.authorizer.generation();
        if generation != self.cache.generation {
            self.cache.decisions.clear();
            self.cache.generation = generation;
        }
        let by_name = self
            .cache
            .decisions
            .entry((resource, operation))
            .or_default();
        if let Some(&decision) = by_name.get(name) {
            return decision;
        }
        // Bounded per question, so a sweep over every topic for one operation (Metadata's
        // authorized operations) does not drop the answers the hot path keeps asking.
        if by_name.len() >= MAX_CACHED {
            by_name.clear();
        }
        let decision = self.authorizer.decide(
            &self.principal.to_string(),
            self.host,
            operation,
            resource,
            name,
        );
        by_name.insert(name.to_owned(), decision);
        decision
    }

    /// Whether the principal may do `operation` on the cluster.
    pub fn allows_cluster(&mut self, operation: Operation) -> bool {
        self.allows(operation, ResourceType::Cluster, super::model::CLUSTER_NAME)
    }

    /// Kafka's "authorized operations" bit field for `name` of `resource`: bit `code`
    /// for each operation of the resource type the principal may do.
    pub fn authorized_operations(&mut self, resource: ResourceType, name: &str) -> i32 {
        Operation::of_resource(resource)
            .iter()
            .filter(|&&op| self.allows(op, resource, name))
            .fold(0, |bits, op| bits | (1 << op.code()))
    }

    /// Whether the principal may do `operation` on at least one resource of `resource`'s
    /// type (Kafka's `authorizeByResourceType`: an ALLOW that applies and is not undone by
    /// a DENY on the same or a wider pattern), used by the idempotent-producer rule.
    pub fn allows_any(&mut self, operation: Operation, resource: ResourceType) -> bool {
        if !self.authorizer.is_enabled() || self.authorizer.is_super_user(self.principal) {
            return true;
        }
        let Some(store) = self.authorizer.store() else {
            return true;
        };
        // Kafka first asks about a made-up resource: a wildcard ALLOW, or no ACL that
        // could cover it with `allow.everyone.if.no.acl.found`, answers yes.
        if self.allows(operation, resource, "hardcode") {
            return true;
        }
        let principal = self.principal.to_string();
        let acls = store.snapshot();
        let any_filter = AclFilter {
            resource_type: resource,
            ..AclFilter::any()
        };
        let applies = |b: &AclBinding| {
            (b.principal == principal || b.principal == WILDCARD_PRINCIPAL)
                && (b.host == WILDCARD
                    || b.host
                        .parse::<IpAddr>()
                        .is_ok_and(|h| h.to_canonical() == self.host))
                && (b.operation == operation || b.operation == Operation::All)
        };
        // Kafka's `authorizeByResourceType`: a DENY of every name wins; else an ALLOW of
        // every name allows; else some ALLOW that no DENY dominates does: a literal ALLOW
        // is dominated by a literal DENY of the same name or a prefixed DENY of a prefix
        // of it, a prefixed ALLOW by a prefixed DENY of a prefix of it.
        let mut deny_literals = HashSet::new();
        let mut deny_prefixes = Vec::new();
        let mut allow_literals = Vec::new();
        let mut allow_prefixes = Vec::new();
        let mut wildcard_allow = false;
        for b in acls.select(&any_filter).filter(|b| applies(b)) {
            let name = b.resource_name.as_str();
            match (b.permission, b.pattern_type) {
                (Permission::Deny, PatternType::Literal) if name == WILDCARD => return false,
                (Permission::Deny, PatternType::Literal) => {
                    deny_literals.insert(name);
                }
                (Permission::Deny, PatternType::Prefixed) => deny_prefixes.push(name),
                (Permission::Allow, PatternType::Literal) if name == WILDCARD => {
                    wildcard_allow = true
                }
                (Permission::Allow, PatternType::Literal) => allow_literals.push(name),
                (Permission::Allow, PatternType::Prefixed) => allow_prefixes.push(name),
                _ => {}
            }
        }
        if wildcard_allow {
            return true;
        }
        let dominated = |name: &str| deny_prefixes.iter().any(|p| name.starts_with(p));
        allow_prefixes.iter().any(|p| !dominated(p))
            || allow_literals
                .iter()
                .any(|l| !deny_literals.contains(l) && !dominated(l))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::acl::model::PatternType;

    fn binding(
        name: &str,
        pattern: PatternType,
        principal: &str,
        host: &str,
        operation: Operation,
        permission: Permission,
    ) -> AclBinding {
        AclBinding {
            resource_type: ResourceType::Topic,
            resource_name: name.to_owned(),
            pattern_type: pattern,
            principal: principal.to_owned(),
            host: host.to_owned(),
            operation,
            permission,
        }
    }

    fn authorizer(dir: &Path, allow_if_no_acl: bool) -> Authorizer {
        let config = SecurityConfig {
            authorizer: true,
            super_users: vec!["User:admin".to_owned()],
            allow_everyone_if_no_acl_found: allow_if_no_acl,
            ..SecurityConfig::default()
        };
        Authorizer::open(dir, &config).unwrap()
    }

    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    const OTHER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

    #[test]
    fn decisions_follow_kafkas_rules() {
        use Operation::*;
        use Permission::*;
        let dir = tempfile::tempdir().unwrap();
        let auth = authorizer(dir.path(), false);
        auth.create(&[
            binding(
                "orders",
                PatternType::Literal,
                "User:alice",
                "*",
                Read,
                Allow,
            ),
            binding(
                "pay",
                PatternType::Prefixed,
                "User:bob",
                "127.0.0.1",
                Write,
                Allow,
            ),
            binding(
                "payments-secret",
                PatternType::Literal,
                "User:*",
                "*",
                All,
                Deny,
            ),
            binding("*", PatternType::Literal, "User:carol", "*", All, Allow),
            binding(
                "orders",
                PatternType::Literal,
                "User:carol",
                "*",
                Delete,
                Deny,
            ),
        ])
        .unwrap();
        let topic = ResourceType::Topic;
        let ok = |p: &str, host: IpAddr, op: Operation, name: &str| {
            auth.decide(p, host, op, topic, name)
        };
        assert!(ok("User:alice", LOCAL, Read, "orders"));
        assert!(
            ok("User:alice", LOCAL, Describe, "orders"),
            "Read implies Describe"
        );
        assert!(!ok("User:alice", LOCAL, Write, "orders"));
        assert!(
            !ok("User:alice", LOCAL, Read, "other"),
            "no ACL: default deny"
        );
        assert!(ok("User:bob", LOCAL, Write, "payments"));
        assert!(!ok("User:bob", OTHER, Write, "payments"), "host filter");
        assert!(
            !ok("User:bob", LOCAL, Write, "payments-secret"),
            "deny wins"
        );
        assert!(ok("User:carol", LOCAL, Alter, "anything"), "wildcard ALL");
        assert!(
            !ok("User:carol", LOCAL, Delete, "orders"),
            "deny on the literal"
        );
        assert!(!ok("User:carol", LOCAL, Read, "payments-secret"));
        assert!(
            ok("User:admin", LOCAL, Delete, "payments-secret"),
            "super user"
        );
        assert!(!ok("User:alice", LOCAL, Read, "orders-2"));
        // DENY of one operation does not deny what it would imply.
        assert!(ok("User:carol", LOCAL, Describe, "orders"));
    }

    #[test]
    fn allow_everyone_applies_only_to_resources_without_acls() {
        let dir = tempfile::tempdir().unwrap();
        let auth = authorizer(dir.path(), true);
        auth.create(&[binding(
            "orders",
            PatternType::Literal,
            "User:alice",
            "*",
            Operation::Read,
            Permission::Allow,
        )])
        .unwrap();
        let topic = ResourceType::Topic;
        assert!(auth.decide("User:bob", LOCAL, Operation::Read, topic, "free"));
        assert!(!auth.decide("User:bob", LOCAL, Operation::Read, topic, "orders"));
    }

    #[test]
    fn cached_decisions_follow_acl_changes() {
        let dir = tempfile::tempdir().unwrap();
        let auth = authorizer(dir.path(), false);
        let alice = Principal::user("alice");
        let mut cache = AccessCache::default();
        let read = binding(
            "orders",
            PatternType::Literal,
            "User:alice",
            "*",
            Operation::Read,
            Permission::Allow,
        );
        let mut access = Access::new(&auth, &alice, LOCAL, &mut cache);
        assert!(!access.allows(Operation::Read, ResourceType::Topic, "orders"));
        auth.create(std::slice::from_ref(&read)).unwrap();
        assert!(access.allows(Operation::Read, ResourceType::Topic, "orders"));
        auth.delete(&[AclFilter::any()]).unwrap();
        assert!(!access.allows(Operation::Read, ResourceType::Topic, "orders"));
        let bits = access.authorized_operations(ResourceType::Topic, "orders");
        assert_eq!(bits, 0);
        auth.create(&[read]).unwrap();
        let bits = access.authorized_operations(ResourceType::Topic, "orders");
        assert_eq!(
            bits,
            (1 << Operation::Read.code()) | (1 << Operation::Describe.code())
        );
    }

    #[test]
    fn idempotent_rule_needs_an_undenied_write_somewhere() {
        let dir = tempfile::tempdir().unwrap();
        let auth = authorizer(dir.path(), false);
        let alice = Principal::user("alice");
        let mut cache = AccessCache::default();
        let write = |name: &str, pattern, permission| {
            binding(
                name,
                pattern,
                "User:alice",
                "*",
                Operation::Write,
                permission,
            )
        };
        auth.create(&[write("logs", PatternType::Prefixed, Permission::Allow)])
            .unwrap();
        let mut access = Access::new(&auth, &alice, LOCAL, &mut cache);
        assert!(access.allows_any(Operation::Write, ResourceType::Topic));
        auth.create(&[write("lo", PatternType::Prefixed, Permission::Deny)])
            .unwrap();
        assert!(!access.allows_any(Operation::Write, ResourceType::Topic));
        // As Kafka: a literal DENY does not dominate a prefixed ALLOW of the same name,
        // and an ALLOW of every name wins unless every name is denied.
        auth.delete(&[AclFilter::any()]).unwrap();
        auth.create(&[
            write("metrics", PatternType::Prefixed, Permission::Allow),
            write("metrics", PatternType::Literal, Permission::Deny),
        ])
        .unwrap();
        assert!(access.allows_any(Operation::Write, ResourceType::Topic));
        auth.delete(&[AclFilter::any()]).unwrap();
        auth.create(&[
            write("*", PatternType::Literal, Permission::Allow),
            write("a", PatternType::Prefixed, Permission::Deny),
        ])
        .unwrap();
        assert!(access.allows_any(Operation::Write, ResourceType::Topic));
        auth.create(&[write("*", PatternType::Literal, Permission::Deny)])
            .unwrap();
        assert!(!access.allows_any(Operation::Write, ResourceType::Topic));
    }
}
