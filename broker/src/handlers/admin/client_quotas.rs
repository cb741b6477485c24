//! DescribeClientQuotas (48) and AlterClientQuotas (49): read and change the client quotas
//! of `quotas::store`, as `kafka-configs --entity-type users|clients|ips` does.
//!
//! Describe filters by components, Kafka's way: per entity type, EXACT (that name),
//! DEFAULT (the type's default) or SPECIFIED (any, the default included, as Kafka 4.4
//! answers); with `strict`,
//! an entity must have no other types. Alter checks every
//! entry first (entity, keys, values, as `store` says) and answers each with its own error;
//! the valid entries are stored together, in one write, unless `validate_only`.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    alter_client_quotas_response, describe_client_quotas_response, AlterClientQuotasRequest,
    AlterClientQuotasResponse, DescribeClientQuotasRequest, DescribeClientQuotasResponse,
};
use kafka_protocol::protocol::StrBytes;

use crate::quotas::store::{self, Change, Entity};
use crate::state::BrokerState;

const MATCH_EXACT: i8 = 0;
const MATCH_DEFAULT: i8 = 1;
const MATCH_SPECIFIED: i8 = 2;

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_owned())
}

/// Whether `entity` passes the request's filter.
fn selected(entity: &Entity, request: &DescribeClientQuotasRequest) -> bool {
    let every = request.components.iter().all(|c| {
        let wanted = c.entity_type.as_str();
        match (c.match_type, entity.get(wanted)) {
            (_, None) => false,
            (MATCH_EXACT, Some(name)) => name.as_deref() == c._match.as_deref(),
            (MATCH_DEFAULT, Some(name)) => name.is_none(),
            // Kafka's "any specified name" matches the default as well (what Kafka 4.4
            // answers: `kafka-configs --describe --entity-type clients` lists it).
            (MATCH_SPECIFIED, Some(_)) => true,
            _ => false,
        }
    });
    let no_others = !request.strict
        || entity.keys().all(|k| {
            request
                .components
                .iter()
                .any(|c| c.entity_type.as_str() == k)
        });
    every && no_others
}

/// Answers DescribeClientQuotas.
pub fn describe(
    state: &BrokerState,
    request: &DescribeClientQuotasRequest,
) -> DescribeClientQuotasResponse {
    let mut seen = std::collections::HashSet::new();
    for c in &request.components {
        let known = [store::USER, store::CLIENT_ID, store::IP].contains(&c.entity_type.as_str());
        let problem = if !known {
            Some(format!(
                "Custom entity type '{}' not supported",
                c.entity_type.as_str()
            ))
        } else if !seen.insert(c.entity_type.as_str()) {
            Some(format!(
                "Duplicate entity type in filter: {}",
                c.entity_type.as_str()
            ))
        } else if c.match_type == MATCH_EXACT && c._match.is_none() {
            Some("Exact match requires a name".to_owned())
        } else if !(MATCH_EXACT..=MATCH_SPECIFIED).contains(&c.match_type) {
            Some(format!("Unknown match type {}", c.match_type))
        } else {
            None
        };
        if let Some(message) = problem {
            return DescribeClientQuotasResponse::default()
                .with_error_code(ResponseError::InvalidRequest.code())
                .with_error_message(Some(StrBytes::from_string(message)));
        }
    }
    let set = state.quotas.store.snapshot();
    let entries = set
        .quotas
        .iter()
        .filter(|(entity, _)| selected(entity, request))
        .map(|(entity, values)| {
            describe_client_quotas_response::EntryData::default()
                .with_entity(
                    entity
                        .iter()
                        .map(|(kind, name)| {
                            describe_client_quotas_response::EntityData::default()
                                .with_entity_type(s(kind))
                                .with_entity_name(name.as_deref().map(s))
                        })
                        .collect(),
                )
                .with_values(
                    values
                        .iter()
                        .map(|(key, value)| {
                            describe_client_quotas_response::ValueData::default()
                                .with_key(s(key))
                                .with_value(*value)
                        })
                        .collect(),
                )
        })
        .collect();
    DescribeClientQuotasResponse::default().with_entries(Some(entries))
}

/// One entry of an AlterClientQuotas request, checked.
fn check_entry(
    entry: &kafka_protocol::messages::alter_client_quotas_request::EntryData,
) -> Result<(Entity, Vec<Change>), store::QuotaError> {
    let mut entity = Entity::new();
    for e in &entry.entity {
        let kind = e.entity_type.to_string();
        if entity
            .insert(kind.clone(), e.entity_name.as_ref().map(|n| n.to_string()))
            .is_some()
        {
            return Err(store::QuotaError {
                code: ResponseError::InvalidRequest,
                message: format!("Duplicate entity type: {kind}"),
            });
        }
    }
    store::check_entity(&entity)?;
    let mut keys = std::collections::HashSet::new();
    let mut changes = Vec::with_capacity(entry.ops.len());
    for op in &entry.ops {
        let key = op.key.as_str();
        if !keys.insert(key) {
            return Err(store::QuotaError {
                code: ResponseError::InvalidRequest,
                message: format!("Duplicate quota key: {key}"),
            });
        }
        let value = (!op.remove).then_some(op.value);
        store::check_value(&entity, key, value)?;
        changes.push((key.to_owned(), value));
    }
    Ok((entity, changes))
}

/// Answers AlterClientQuotas. When the store cannot be written, every valid entry gets
/// UNKNOWN_SERVER_ERROR and nothing changed.
pub fn alter(state: &BrokerState, request: &AlterClientQuotasRequest) -> AlterClientQuotasResponse {
    let checked: Vec<_> = request.entries.iter().map(check_entry).collect();
    let valid: Vec<(Entity, Vec<Change>)> = checked
        .iter()
        .filter_map(|c| c.as_ref().ok().cloned())
        .collect();
    let stored = if request.validate_only || valid.is_empty() {
        Ok(())
    } else {
        state.quotas.store.alter(&valid)
    };
    if let Err(e) = &stored {
        tracing::error!(error = %e, "client quotas not stored");
    }
    let entries = request
        .entries
        .iter()
        .zip(checked)
        .map(|(entry, outcome)| {
            let (code, message) = match (outcome, &stored) {
                (Err(e), _) => (e.code.code(), Some(e.message)),
                (Ok(_), Err(e)) => (ResponseError::UnknownServerError.code(), Some(e.clone())),
                (Ok(_), Ok(())) => (0, None),
            };
            alter_client_quotas_response::EntryData::default()
                .with_error_code(code)
                .with_error_message(message.map(StrBytes::from_string))
                .with_entity(entity_echo(entry))
        })
        .collect();
    AlterClientQuotasResponse::default().with_entries(entries)
}

/// The answers when the caller may not describe or alter the cluster's configs.
pub fn refused_describe() -> DescribeClientQuotasResponse {
    DescribeClientQuotasResponse::default()
        .with_error_code(ResponseError::ClusterAuthorizationFailed.code())
        .with_error_message(Some(s("Cluster authorization failed.")))
}

pub fn refused_alter(request: &AlterClientQuotasRequest) -> AlterClientQuotasResponse {
    let entries = request
        .entries
        .iter()
        .map(|entry| {
            alter_client_quotas_response::EntryData::default()
                .with_error_code(ResponseError::ClusterAuthorizationFailed.code())
                .with_entity(entity_echo(entry))
        })
        .collect();
    AlterClientQuotasResponse::default().with_entries(entries)
}

/// The entity of a request entry, as its answer names it.
fn entity_echo(
    entry: &kafka_protocol::messages::alter_client_quotas_request::EntryData,
) -> Vec<alter_client_quotas_response::EntityData> {
    entry
        .entity
        .iter()
        .map(|e| {
            alter_client_quotas_response::EntityData::default()
                .with_entity_type(e.entity_type.clone())
                .with_entity_name(e.entity_name.clone())
        })
        .collect()
}
