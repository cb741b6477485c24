//! DescribeConfigs and IncrementalAlterConfigs.
//!
//! Topic configs are the keys of `topic_config::KEYS`; each is reported with its source
//! (a topic override, a broker property set explicitly, or the built-in default) and,
//! when asked, its synonyms in that order, as Kafka reports them. Broker configs are
//! read-only: they come from the file, the environment and the flags at start-up.

use std::collections::{BTreeMap, HashSet};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_response::CreatableTopicConfigs;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{
    DescribeConfigsRequest, DescribeConfigsResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;

use crate::state::BrokerState;
use crate::topic_config::{self, ConfigType, TopicConfig, TopicConfigKey};
use crate::topics::AdminError;

/// Kafka's ConfigResource types.
pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;

/// Kafka's ConfigSource codes.
const SOURCE_DYNAMIC_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

/// IncrementalAlterConfigs operations.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

fn s(text: impl Into<String>) -> StrBytes {
    StrBytes::from_string(text.into())
}

/// A topic config's value, source and synonyms (most specific first).
struct Described {
    value: String,
    source: i8,
    synonyms: Vec<(String, String, i8)>,
}

fn describe_key(
    state: &BrokerState,
    key: &TopicConfigKey,
    config: &TopicConfig,
    overrides: &BTreeMap<String, String>,
) -> Described {
    let defaults = state.topics.defaults();
    let mut synonyms = Vec::new();
    if let Some(v) = overrides.get(key.name) {
        synonyms.push((key.name.to_owned(), v.clone(), SOURCE_DYNAMIC_TOPIC));
    }
    let explicit = key
        .broker_name
        .and_then(|name| state.config.explicit.get(name).map(|v| (name, v)));
    if let Some((name, v)) = explicit {
        synonyms.push((name.to_owned(), v.clone(), SOURCE_STATIC_BROKER));
    }
    if let Some(name) = key.broker_name {
        synonyms.push((
            name.to_owned(),
            key.value(&TopicConfig::default()),
            SOURCE_DEFAULT,
        ));
    }
    let source = if overrides.contains_key(key.name) {
        SOURCE_DYNAMIC_TOPIC
    } else if key.value(defaults) != key.value(&TopicConfig::default()) || explicit.is_some() {
        SOURCE_STATIC_BROKER
    } else {
        SOURCE_DEFAULT
    };
    Described {
        value: key.value(config),
        source,
        synonyms,
    }
}

/// The configs of a topic as CreateTopics v5+ reports them.
pub fn creatable_configs(
    state: &BrokerState,
    config: &TopicConfig,
    overrides: &BTreeMap<String, String>,
) -> Vec<CreatableTopicConfigs> {
    topic_config::KEYS
        .iter()
        .map(|key| {
            let d = describe_key(state, key, config, overrides);
            CreatableTopicConfigs::default()
                .with_name(s(key.name))
                .with_value(Some(s(d.value)))
                .with_read_only(false)
                .with_config_source(d.source)
                .with_is_sensitive(false)
        })
        .collect()
}

fn entry(
    name: &str,
    value: String,
    read_only: bool,
    source: i8,
    config_type: ConfigType,
    doc: Option<&str>,
) -> DescribeConfigsResourceResult {
    DescribeConfigsResourceResult::default()
        .with_name(s(name))
        .with_value(Some(s(value)))
        .with_read_only(read_only)
        .with_config_source(source)
        .with_is_sensitive(false)
        .with_config_type(config_type as i8)
        .with_documentation(doc.map(s))
}

/// A topic's config overrides, if it exists: the metadata's in a cluster (the topic may
/// have no replica here), the registry's on a single node.
pub(crate) fn topic_overrides(state: &BrokerState, name: &str) -> Option<BTreeMap<String, String>> {
    match &state.cluster {
        Some(node) => {
            let image = node.image();
            image.topic(name)?;
            Some(image.topic_configs(name).cloned().unwrap_or_default())
        }
        None => state.topics.get(name).map(|t| t.overrides()),
    }
}

/// Answers DescribeConfigs for topics and this broker.
pub fn describe_configs(
    state: &BrokerState,
    request: &DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let results = request
        .resources
        .iter()
        .map(|resource| {
            let wanted: Option<HashSet<&str>> = resource
                .configuration_keys
                .as_ref()
                .map(|keys| keys.iter().map(|k| k.as_str()).collect());
            let included = |name: &str| wanted.as_ref().is_none_or(|w| w.contains(name));
            let doc = |key: &TopicConfigKey| {
                request
                    .include_documentation
                    .then(|| key.documentation())
            };
            let result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            let error = |code: ResponseError, message: String| {
                result
                    .clone()
                    .with_error_code(code.code())
                    .with_error_message(Some(s(message)))
            };
            match resource.resource_type {
                RESOURCE_TOPIC => {
                    let Some(overrides) = topic_overrides(state, &resource.resource_name) else {
                        return error(
                            ResponseError::UnknownTopicOrPartition,
                            format!("Topic {} does not exist.", resource.resource_name.as_str()),
                        );
                    };
                    let config = state
                        .topics
                        .defaults()
                        .with_overrides(&overrides)
                        .unwrap_or_else(|_| state.topics.defaults().clone());
                    let configs = topic_config::KEYS
                        .iter()
                        .filter(|k| included(k.name))
                        .map(|key| {
                            let d = describe_key(state, key, &config, &overrides);
                            let mut e = entry(key.name, d.value, false, d.source, key.config_type, doc(key).as_deref());
                            if request.include_synonyms {
                                e.synonyms = d
                                    .synonyms
                                    .into_iter()
                                    .map(|(name, value, source)| {
                                        DescribeConfigsSynonym::default()
                                            .with_name(s(name))
                                            .with_value(Some(s(value)))
                                            .with_source(source)
                                    })
                                    .collect();
                            }
                            e
                        })
                        .collect();
                    result.with_configs(configs)
                }
                RESOURCE_BROKER => {
                    let name = resource.resource_name.as_str();
                    if !name.is_empty() && name != state.node_id.to_string() {
                        return error(
                            ResponseError::InvalidRequest,
                            format!("Unexpected broker id, expected {} or empty string, but received {name}", state.node_id),
                        );
                    }
                    let configs = state
                        .config
                        .describe()
                        .into_iter()
                        .filter(|(k, _)| included(k))
                        .map(|(k, v)| {
                            let source = if state.config.explicit.contains_key(&k) {
                                SOURCE_STATIC_BROKER
                            } else {
                                SOURCE_DEFAULT
                            };
                            let key = topic_config::find_by_broker_name(&k);
                            let config_type = key.map_or(ConfigType::String, |key| key.config_type);
                            entry(&k, v, true, source, config_type, key.and_then(doc).as_deref())
                        })
                        .collect();
                    result.with_configs(configs)
                }
                other => error(
                    ResponseError::InvalidRequest,
                    format!("Unsupported resource type {other}"),
                ),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

/// Applies the operations of one topic resource to its overrides.
pub(crate) fn altered_overrides(
    state: &BrokerState,
    current: &BTreeMap<String, String>,
    configs: &[kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig],
) -> Result<BTreeMap<String, String>, AdminError> {
    let mut seen = HashSet::new();
    let mut overrides = current.clone();
    let effective = state
        .topics
        .defaults()
        .with_overrides(current)
        .map_err(|m| AdminError::new(ResponseError::InvalidConfig, m))?;
    for config in configs {
        let name = config.name.as_str();
        if !seen.insert(name) {
            return Err(AdminError::new(
                ResponseError::InvalidRequest,
                format!("Error due to duplicate config keys: {name}"),
            ));
        }
        let key = topic_config::find(name).ok_or_else(|| {
            AdminError::new(
                ResponseError::InvalidConfig,
                format!("Unknown topic config name: {name}"),
            )
        })?;
        match config.config_operation {
            OP_SET => {
                let value = config.value.as_ref().ok_or_else(|| {
                    AdminError::new(
                        ResponseError::InvalidRequest,
                        format!("Null value not supported for : {name}"),
                    )
                })?;
                overrides.insert(name.to_owned(), value.to_string());
            }
            OP_DELETE => {
                overrides.remove(name);
            }
            OP_APPEND | OP_SUBTRACT => {
                if key.config_type != ConfigType::List {
                    return Err(AdminError::new(
                        ResponseError::InvalidConfig,
                        format!("Config value append is not allowed for config key: {name}"),
                    ));
                }
                let mut items: Vec<String> = key
                    .value(&effective)
                    .split(',')
                    .filter(|v| !v.is_empty())
                    .map(str::to_owned)
                    .collect();
                let change: Vec<String> = config
                    .value
                    .as_deref()
                    .unwrap_or("")
                    .split(',')
                    .map(|v| v.trim().to_owned())
                    .filter(|v| !v.is_empty())
                    .collect();
                if config.config_operation == OP_APPEND {
                    for v in change {
                        if !items.contains(&v) {
                            items.push(v);
                        }
                    }
                } else {
                    items.retain(|v| !change.contains(v));
                }
                overrides.insert(name.to_owned(), items.join(","));
            }
            op => {
                return Err(AdminError::new(
                    ResponseError::InvalidRequest,
                    format!("Unknown config operation {op}"),
                ))
            }
        }
    }
    // Validate the result as a whole.
    state
        .topics
        .defaults()
        .with_overrides(&overrides)
        .map_err(|m| AdminError::new(ResponseError::InvalidConfig, m))?;
    Ok(overrides)
}

/// Answers IncrementalAlterConfigs (blocking: persists topic configs).
pub fn incremental_alter_configs(
    state: &BrokerState,
    request: &IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut counts: BTreeMap<(i8, &str), usize> = BTreeMap::new();
    for r in &request.resources {
        *counts
            .entry((r.resource_type, r.resource_name.as_str()))
            .or_default() += 1;
    }
    let responses = request
        .resources
        .iter()
        .map(|resource| {
            let name = resource.resource_name.as_str();
            let result = if counts.get(&(resource.resource_type, name)).copied().unwrap_or(0) > 1 {
                Err(AdminError::new(
                    ResponseError::InvalidRequest,
                    "Duplicate resource in request.",
                ))
            } else {
                match resource.resource_type {
                    RESOURCE_TOPIC => match state.topics.get(name) {
                        None => Err(AdminError::new(
                            ResponseError::UnknownTopicOrPartition,
                            format!("Topic {name} does not exist."),
                        )),
                        Some(topic) => altered_overrides(state, &topic.overrides(), &resource.configs)
                            .and_then(|overrides| {
                                if request.validate_only {
                                    Ok(())
                                } else {
                                    state.topics.set_overrides(&topic, overrides)
                                }
                            }),
                    },
                    RESOURCE_BROKER => Err(AdminError::new(
                        ResponseError::InvalidRequest,
                        "Sluice broker configs are read-only: set them in the config file, SLUICE_* variables or flags.",
                    )),
                    other => Err(AdminError::new(
                        ResponseError::InvalidRequest,
                        format!("Unsupported resource type {other}"),
                    )),
                }
            };
            let answer = AlterConfigsResourceResponse::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            match result {
                Ok(()) => answer,
                Err(e) => answer
                    .with_error_code(e.code.code())
                    .with_error_message(Some(s(e.message))),
            }
        })
        .collect();
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

/// AlterConfigs (33), Kafka's older call that replaces all of a resource's dynamic
/// configs with the ones it names, as the incremental call that does the same: SET of
/// every config named, DELETE of every current override it leaves out. (A config
/// another client adds between the read and the change survives, as it would had it
/// come just after.) Both the single node and the cluster then run the incremental path,
/// with its validation, authorization and persistence.
pub fn alter_as_incremental(
    state: &BrokerState,
    request: &kafka_protocol::messages::AlterConfigsRequest,
) -> IncrementalAlterConfigsRequest {
    use kafka_protocol::messages::incremental_alter_configs_request::{
        AlterConfigsResource, AlterableConfig,
    };
    let resources = request
        .resources
        .iter()
        .map(|resource| {
            let named: HashSet<&str> = resource.configs.iter().map(|c| c.name.as_str()).collect();
            let mut configs: Vec<AlterableConfig> = resource
                .configs
                .iter()
                .map(|c| {
                    AlterableConfig::default()
                        .with_name(c.name.clone())
                        .with_config_operation(OP_SET)
                        .with_value(c.value.clone())
                })
                .collect();
            if resource.resource_type == RESOURCE_TOPIC {
                let current = topic_overrides(state, resource.resource_name.as_str());
                for name in current.unwrap_or_default().into_keys() {
                    if !named.contains(name.as_str()) {
                        configs.push(
                            AlterableConfig::default()
                                .with_name(s(name))
                                .with_config_operation(OP_DELETE),
                        );
                    }
                }
            }
            AlterConfigsResource::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone())
                .with_configs(configs)
        })
        .collect();
    IncrementalAlterConfigsRequest::default()
        .with_resources(resources)
        .with_validate_only(request.validate_only)
}

/// The AlterConfigs answer for the incremental call's answer.
pub fn alter_response(
    incremental: IncrementalAlterConfigsResponse,
) -> kafka_protocol::messages::AlterConfigsResponse {
    use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse as Legacy;
    kafka_protocol::messages::AlterConfigsResponse::default()
        .with_throttle_time_ms(incremental.throttle_time_ms)
        .with_responses(
            incremental
                .responses
                .into_iter()
                .map(|r| {
                    Legacy::default()
                        .with_error_code(r.error_code)
                        .with_error_message(r.error_message)
                        .with_resource_type(r.resource_type)
                        .with_resource_name(r.resource_name)
                })
                .collect(),
        )
}
