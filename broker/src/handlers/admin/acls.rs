//! CreateAcls, DescribeAcls and DeleteAcls: the authorizer's bindings, managed with
//! Kafka's APIs (so `kafka-acls --add/--list/--remove` and the AdminClient work), with
//! Kafka's checks and answers.
//!
//! - Without an authorizer (`authorizer.class.name` unset) every call answers
//!   SECURITY_DISABLED, as Kafka does.
//! - Who may call was decided before (`server::authorize`: Alter on the cluster to create
//!   and delete, Describe to list); others get CLUSTER_AUTHORIZATION_FAILED.
//! - CreateAcls checks each binding on its own (INVALID_REQUEST with Kafka's message for
//!   a bad one) and stores the valid ones with one write; DeleteAcls answers, per filter,
//!   the bindings it removed.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse,
};
use kafka_protocol::protocol::StrBytes;

use crate::security::acl::model::{RawBinding, RawFilter};
use crate::security::acl::{AclBinding, AclFilter};
use crate::state::BrokerState;

/// Kafka's messages: DescribeAcls says "on the broker", the others do not.
const DISABLED_DESCRIBE: &str = "No Authorizer is configured on the broker";
const DISABLED: &str = "No Authorizer is configured.";
const NOT_ALLOWED: &str = "Cluster authorization failed.";

fn text(s: impl Into<String>) -> Option<StrBytes> {
    Some(StrBytes::from_string(s.into()))
}

/// Why a whole call is refused before looking at it, if it is.
fn refusal(
    state: &BrokerState,
    allowed: bool,
    disabled: &'static str,
) -> Option<(ResponseError, &'static str)> {
    if !state.security.authorizer.is_enabled() {
        Some((ResponseError::SecurityDisabled, disabled))
    } else if !allowed {
        Some((ResponseError::ClusterAuthorizationFailed, NOT_ALLOWED))
    } else {
        None
    }
}

/// CreateAcls; writes the ACL file (call it on a blocking thread).
pub fn create(
    state: &BrokerState,
    allowed: bool,
    request: &CreateAclsRequest,
) -> CreateAclsResponse {
    let failed = |error: ResponseError, message: String| {
        AclCreationResult::default()
            .with_error_code(error.code())
            .with_error_message(text(message))
    };
    if let Some((error, message)) = refusal(state, allowed, DISABLED) {
        let results = request
            .creations
            .iter()
            .map(|_| failed(error, message.to_owned()))
            .collect();
        return CreateAclsResponse::default().with_results(results);
    }
    let checked: Vec<Result<AclBinding, String>> = request
        .creations
        .iter()
        .map(|c| {
            AclBinding::new(&RawBinding {
                resource_type: c.resource_type,
                resource_name: &c.resource_name,
                pattern_type: c.resource_pattern_type,
                principal: &c.principal,
                host: &c.host,
                operation: c.operation,
                permission: c.permission_type,
            })
            .map_err(|e| e.0)
        })
        .collect();
    let valid: Vec<AclBinding> = checked
        .iter()
        .filter_map(|c| c.as_ref().ok())
        .cloned()
        .collect();
    let stored = if valid.is_empty() {
        Ok(())
    } else {
        state.security.authorizer.create(&valid)
    };
    if let Err(e) = &stored {
        tracing::error!(error = %e, "CreateAcls: the ACL file could not be written");
    } else {
        for binding in &valid {
            tracing::info!(acl = %binding, "ACL created");
        }
    }
    let results = checked
        .into_iter()
        .map(|c| match (c, &stored) {
            (Err(message), _) => failed(ResponseError::InvalidRequest, message),
            (Ok(_), Err(e)) => failed(ResponseError::UnknownServerError, e.to_string()),
            // Kafka answers an empty message, not a null one.
            (Ok(_), Ok(())) => AclCreationResult::default().with_error_message(text("")),
        })
        .collect();
    CreateAclsResponse::default().with_results(results)
}

/// DescribeAcls: the bindings the filter selects, grouped by resource pattern.
pub fn describe(
    state: &BrokerState,
    allowed: bool,
    request: &DescribeAclsRequest,
) -> DescribeAclsResponse {
    if let Some((error, message)) = refusal(state, allowed, DISABLED_DESCRIBE) {
        return DescribeAclsResponse::default()
            .with_error_code(error.code())
            .with_error_message(text(message));
    }
    let filter = match AclFilter::new(&RawFilter {
        resource_type: request.resource_type_filter,
        resource_name: request.resource_name_filter.as_deref(),
        pattern_type: request.pattern_type_filter,
        principal: request.principal_filter.as_deref(),
        host: request.host_filter.as_deref(),
        operation: request.operation,
        permission: request.permission_type,
    }) {
        Ok(filter) => filter,
        Err(e) => {
            return DescribeAclsResponse::default()
                .with_error_code(ResponseError::InvalidRequest.code())
                .with_error_message(text(e.0))
        }
    };
    let Some(store) = state.security.authorizer.store() else {
        return DescribeAclsResponse::default();
    };
    let snapshot = store.snapshot();
    // The set is sorted by resource first, so each resource's bindings are adjacent.
    let mut resources: Vec<DescribeAclsResource> = Vec::new();
    for b in snapshot.select(&filter) {
        let same = resources.last().is_some_and(|r| {
            r.resource_type == b.resource_type.code()
                && r.pattern_type == b.pattern_type.code()
                && r.resource_name.as_str() == b.resource_name
        });
        if !same {
            resources.push(
                DescribeAclsResource::default()
                    .with_resource_type(b.resource_type.code())
                    .with_resource_name(StrBytes::from_string(b.resource_name.clone()))
                    .with_pattern_type(b.pattern_type.code()),
            );
        }
        if let Some(r) = resources.last_mut() {
            r.acls.push(
                AclDescription::default()
                    .with_principal(StrBytes::from_string(b.principal.clone()))
                    .with_host(StrBytes::from_string(b.host.clone()))
                    .with_operation(b.operation.code())
                    .with_permission_type(b.permission.code()),
            );
        }
    }
    DescribeAclsResponse::default()
        .with_error_message(text(""))
        .with_resources(resources)
}

/// DeleteAcls; writes the ACL file (call it on a blocking thread).
pub fn delete(
    state: &BrokerState,
    allowed: bool,
    request: &DeleteAclsRequest,
) -> DeleteAclsResponse {
    let failed = |error: ResponseError, message: String| {
        DeleteAclsFilterResult::default()
            .with_error_code(error.code())
            .with_error_message(text(message))
    };
    if let Some((error, message)) = refusal(state, allowed, DISABLED) {
        let results = request
            .filters
            .iter()
            .map(|_| failed(error, message.to_owned()))
            .collect();
        return DeleteAclsResponse::default().with_filter_results(results);
    }
    let parsed: Vec<Result<AclFilter, String>> = request
        .filters
        .iter()
        .map(|f| {
            AclFilter::new(&RawFilter {
                resource_type: f.resource_type_filter,
                resource_name: f.resource_name_filter.as_deref(),
                pattern_type: f.pattern_type_filter,
                principal: f.principal_filter.as_deref(),
                host: f.host_filter.as_deref(),
                operation: f.operation,
                permission: f.permission_type,
            })
            .map_err(|e| e.0)
        })
        .collect();
    let valid: Vec<AclFilter> = parsed
        .iter()
        .filter_map(|f| f.as_ref().ok())
        .cloned()
        .collect();
    let removed = state.security.authorizer.delete(&valid);
    let mut removed = match removed {
        Ok(removed) => removed.into_iter(),
        Err(e) => {
            tracing::error!(error = %e, "DeleteAcls: the ACL file could not be written");
            let results = parsed
                .iter()
                .map(|_| failed(ResponseError::UnknownServerError, e.to_string()))
                .collect();
            return DeleteAclsResponse::default().with_filter_results(results);
        }
    };
    let results = parsed
        .into_iter()
        .map(|f| match f {
            Err(message) => failed(ResponseError::InvalidRequest, message),
            Ok(_) => {
                let bindings = removed.next().unwrap_or_default();
                for binding in &bindings {
                    tracing::info!(acl = %binding, "ACL deleted");
                }
                DeleteAclsFilterResult::default().with_matching_acls(
                    bindings
                        .iter()
                        .map(|b| {
                            DeleteAclsMatchingAcl::default()
                                .with_resource_type(b.resource_type.code())
                                .with_resource_name(StrBytes::from_string(b.resource_name.clone()))
                                .with_pattern_type(b.pattern_type.code())
                                .with_principal(StrBytes::from_string(b.principal.clone()))
                                .with_host(StrBytes::from_string(b.host.clone()))
                                .with_operation(b.operation.code())
                                .with_permission_type(b.permission.code())
                        })
                        .collect(),
                )
            }
        })
        .collect();
    DeleteAclsResponse::default().with_filter_results(results)
}
