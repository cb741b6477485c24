//! SCRAM users (DescribeUserScramCredentials, AlterUserScramCredentials) and ACLs
//! (CreateAcls, DescribeAcls, DeleteAcls), as Kafka's AdminClient manages them.
//!
//! A password never leaves the client: AlterUserScramCredentials carries a random salt and
//! the salted password Hi(password, salt, iterations), from which the broker derives the
//! keys it stores.
//!
//! Sluice's brokers keep users and ACLs each in its own data directory for now (they are
//! not in the replicated metadata yet), so a change is sent to every live broker, and
//! fails if any broker refuses it; reads ask one broker.

use std::collections::BTreeMap;

use bytes::Bytes;
use kafka_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest,
    DescribeUserScramCredentialsRequest,
};
use kafka_protocol::protocol::StrBytes;
use rand::RngCore;
use sluice_metadata::acl::{
    AclBinding, AclFilter, Operation, PatternType, Permission, RawBinding, ResourceType,
};

use super::Admin;
use crate::error::{Error, Result};
use crate::security::SaslMechanism;

/// Kafka's wire ids of the SCRAM mechanisms (`ScramMechanism`).
fn mechanism_id(mechanism: SaslMechanism) -> i8 {
    match mechanism {
        SaslMechanism::ScramSha512 => 2,
        _ => 1,
    }
}

fn mechanism_of(id: i8) -> Option<SaslMechanism> {
    match id {
        1 => Some(SaslMechanism::ScramSha256),
        2 => Some(SaslMechanism::ScramSha512),
        _ => None,
    }
}

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_owned())
}

/// Iterations of credentials made here (Kafka's tools default to 4096; more costs an
/// attacker more per guess).
pub const DEFAULT_ITERATIONS: i32 = 8192;

impl Admin {
    /// Every SCRAM user with its mechanisms and iteration counts, by name.
    pub async fn describe_scram_users(
        &self,
    ) -> Result<BTreeMap<String, Vec<(SaslMechanism, i32)>>> {
        self.client
            .retry("describe SCRAM users", || async {
                let connection = self.client.any_broker().await?;
                let version = connection.version::<DescribeUserScramCredentialsRequest>()?;
                let request = DescribeUserScramCredentialsRequest::default().with_users(None);
                let response = connection.send(&request, version).await?;
                Error::check(
                    response.error_code,
                    || "describe SCRAM users".to_owned(),
                    response.error_message.as_ref(),
                )?;
                let mut users = BTreeMap::new();
                for result in &response.results {
                    Error::check(
                        result.error_code,
                        || format!("describe SCRAM user {:?}", result.user.as_str()),
                        result.error_message.as_ref(),
                    )?;
                    let credentials = result
                        .credential_infos
                        .iter()
                        .filter_map(|c| Some((mechanism_of(c.mechanism)?, c.iterations)))
                        .collect();
                    users.insert(result.user.as_str().to_owned(), credentials);
                }
                Ok(users)
            })
            .await
    }

    /// Creates `user` (or sets a new password) for each of `mechanisms`.
    pub async fn upsert_scram_user(
        &self,
        user: &str,
        password: &str,
        mechanisms: &[SaslMechanism],
        iterations: i32,
    ) -> Result<()> {
        let iterations_u32 = u32::try_from(iterations)
            .map_err(|_| Error::InvalidArgument(format!("{iterations} iterations")))?;
        let upsertions = mechanisms
            .iter()
            .map(|&mechanism| {
                let mut salt = vec![0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut salt);
                let salted =
                    crate::sasl::salted_password(mechanism, password, &salt, iterations_u32);
                ScramCredentialUpsertion::default()
                    .with_name(text(user))
                    .with_mechanism(mechanism_id(mechanism))
                    .with_iterations(iterations)
                    .with_salt(Bytes::from(salt))
                    .with_salted_password(Bytes::from(salted))
            })
            .collect();
        self.alter_scram(
            AlterUserScramCredentialsRequest::default().with_upsertions(upsertions),
            &format!("set the SCRAM credentials of {user:?}"),
        )
        .await
    }

    /// Deletes `user`'s credentials for each of `mechanisms`.
    pub async fn delete_scram_user(&self, user: &str, mechanisms: &[SaslMechanism]) -> Result<()> {
        let deletions = mechanisms
            .iter()
            .map(|&mechanism| {
                ScramCredentialDeletion::default()
                    .with_name(text(user))
                    .with_mechanism(mechanism_id(mechanism))
            })
            .collect();
        self.alter_scram(
            AlterUserScramCredentialsRequest::default().with_deletions(deletions),
            &format!("delete the SCRAM credentials of {user:?}"),
        )
        .await
    }

    async fn alter_scram(
        &self,
        request: AlterUserScramCredentialsRequest,
        what: &str,
    ) -> Result<()> {
        // Not retried: a change that reached a broker before a timeout would be applied
        // twice (harmless for an upsert, an error for a delete).
        for connection in self.every_broker().await? {
            let version = connection.version::<AlterUserScramCredentialsRequest>()?;
            let response = connection.send(&request, version).await?;
            for result in &response.results {
                Error::check(
                    result.error_code,
                    || format!("{what} on {}", connection.addr()),
                    result.error_message.as_ref(),
                )?;
            }
        }
        Ok(())
    }

    /// A connection to every live broker (see the module docs).
    async fn every_broker(&self) -> Result<Vec<std::sync::Arc<crate::connection::Connection>>> {
        self.client.refresh_metadata(Some(&[]), false).await?;
        let ids: Vec<i32> = self
            .client
            .with_metadata(|m| m.brokers.keys().copied().collect());
        let mut connections = Vec::with_capacity(ids.len());
        for id in ids {
            connections.push(self.client.broker(id).await?);
        }
        Ok(connections)
    }

    /// Creates the ACL `bindings` (each checked by the broker).
    pub async fn create_acls(&self, bindings: &[AclBinding]) -> Result<()> {
        let creations = bindings
            .iter()
            .map(|b| {
                AclCreation::default()
                    .with_resource_type(b.resource_type.code())
                    .with_resource_name(text(&b.resource_name))
                    .with_resource_pattern_type(b.pattern_type.code())
                    .with_principal(text(&b.principal))
                    .with_host(text(&b.host))
                    .with_operation(b.operation.code())
                    .with_permission_type(b.permission.code())
            })
            .collect();
        let request = CreateAclsRequest::default().with_creations(creations);
        for connection in self.every_broker().await? {
            let version = connection.version::<CreateAclsRequest>()?;
            let response = connection.send(&request, version).await?;
            for (result, binding) in response.results.iter().zip(bindings) {
                Error::check(
                    result.error_code,
                    || format!("create ACL ({binding}) on {}", connection.addr()),
                    result.error_message.as_ref().filter(|m| !m.is_empty()),
                )?;
            }
        }
        Ok(())
    }

    /// The ACLs `filter` selects.
    pub async fn describe_acls(&self, filter: &AclFilter) -> Result<Vec<AclBinding>> {
        self.client
            .retry("describe ACLs", || async {
                let connection = self.client.any_broker().await?;
                let version = connection.version::<DescribeAclsRequest>()?;
                let request = DescribeAclsRequest::default()
                    .with_resource_type_filter(filter.resource_type.code())
                    .with_resource_name_filter(filter.resource_name.as_deref().map(text))
                    .with_pattern_type_filter(filter.pattern_type.code())
                    .with_principal_filter(filter.principal.as_deref().map(text))
                    .with_host_filter(filter.host.as_deref().map(text))
                    .with_operation(filter.operation.code())
                    .with_permission_type(filter.permission.code());
                let response = connection.send(&request, version).await?;
                Error::check(
                    response.error_code,
                    || "describe ACLs".to_owned(),
                    response.error_message.as_ref().filter(|m| !m.is_empty()),
                )?;
                let mut bindings = Vec::new();
                for resource in &response.resources {
                    for acl in &resource.acls {
                        bindings.push(binding_from_wire(
                            connection.addr(),
                            &RawBinding {
                                resource_type: resource.resource_type,
                                resource_name: &resource.resource_name,
                                pattern_type: resource.pattern_type,
                                principal: &acl.principal,
                                host: &acl.host,
                                operation: acl.operation,
                                permission: acl.permission_type,
                            },
                        )?);
                    }
                }
                Ok(bindings)
            })
            .await
    }

    /// Deletes the ACLs `filter` selects, on every broker; the ones deleted (each once).
    pub async fn delete_acls(&self, filter: &AclFilter) -> Result<Vec<AclBinding>> {
        let mut deleted = Vec::new();
        for connection in self.every_broker().await? {
            deleted.extend(self.delete_acls_on(&connection, filter).await?);
        }
        deleted.sort();
        deleted.dedup();
        Ok(deleted)
    }

    async fn delete_acls_on(
        &self,
        connection: &crate::connection::Connection,
        filter: &AclFilter,
    ) -> Result<Vec<AclBinding>> {
        let version = connection.version::<DeleteAclsRequest>()?;
        let request = DeleteAclsRequest::default().with_filters(vec![DeleteAclsFilter::default()
            .with_resource_type_filter(filter.resource_type.code())
            .with_resource_name_filter(filter.resource_name.as_deref().map(text))
            .with_pattern_type_filter(filter.pattern_type.code())
            .with_principal_filter(filter.principal.as_deref().map(text))
            .with_host_filter(filter.host.as_deref().map(text))
            .with_operation(filter.operation.code())
            .with_permission_type(filter.permission.code())]);
        let response = connection.send(&request, version).await?;
        let result = response
            .filter_results
            .first()
            .ok_or_else(|| Error::protocol("DeleteAcls", connection.addr(), "empty answer"))?;
        Error::check(
            result.error_code,
            || "delete ACLs".to_owned(),
            result.error_message.as_ref().filter(|m| !m.is_empty()),
        )?;
        let mut deleted = Vec::new();
        for acl in &result.matching_acls {
            Error::check(
                acl.error_code,
                || "delete ACLs".to_owned(),
                acl.error_message.as_ref().filter(|m| !m.is_empty()),
            )?;
            deleted.push(binding_from_wire(
                connection.addr(),
                &RawBinding {
                    resource_type: acl.resource_type,
                    resource_name: &acl.resource_name,
                    pattern_type: acl.pattern_type,
                    principal: &acl.principal,
                    host: &acl.host,
                    operation: acl.operation,
                    permission: acl.permission_type,
                },
            )?);
        }
        Ok(deleted)
    }
}

/// A binding a broker described, kept as it said even where Kafka is laxer than Sluice's
/// checks of new bindings (a host that is not an IP address, say): only unknown codes are
/// an error.
fn binding_from_wire(addr: &str, raw: &RawBinding<'_>) -> Result<AclBinding> {
    let bad = |what: &str, code: i8| {
        Error::protocol("DescribeAcls", addr, format!("unknown {what} {code}"))
    };
    Ok(AclBinding {
        resource_type: ResourceType::from_code(raw.resource_type)
            .ok_or_else(|| bad("resource type", raw.resource_type))?,
        resource_name: raw.resource_name.to_owned(),
        pattern_type: PatternType::from_code(raw.pattern_type)
            .ok_or_else(|| bad("pattern type", raw.pattern_type))?,
        principal: raw.principal.to_owned(),
        host: raw.host.to_owned(),
        operation: Operation::from_code(raw.operation)
            .ok_or_else(|| bad("operation", raw.operation))?,
        permission: Permission::from_code(raw.permission)
            .ok_or_else(|| bad("permission", raw.permission))?,
    })
}
