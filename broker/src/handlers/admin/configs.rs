//! DescribeConfigs and IncrementalAlterConfigs.
//!
//! Topic configs are the keys of `topic_config::KEYS`; each is reported with its source
//! (a topic override, a broker property set explicitly, or the built-in default) and,
//! when asked, its synonyms in that order, as Kafka reports them. Broker configs are the
//! static ones (file, environment, flags) with the dynamic ones on top (see
//! `dynamic_config`); the dynamic ones are altered here on the single node of earlier
//! releases and through the controller in a cluster (`cluster::admin`).

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

use crate::config::BrokerConfig;
use crate::dynamic_config::{self, Effect, Layers, Level};
use crate::state::BrokerState;
use crate::topic_config::{self, ConfigType, TopicConfig, TopicConfigKey};
use crate::topics::AdminError;

/// Kafka's ConfigResource types.
pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;
pub const RESOURCE_BROKER_LOGGER: i8 = 8;
pub const RESOURCE_GROUP: i8 = 32;

/// Kafka's ConfigSource codes.
const SOURCE_DYNAMIC_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;
const SOURCE_BROKER_LOGGER: i8 = 6;
const SOURCE_GROUP: i8 = 8;

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
    // The dynamic broker levels the registry's defaults were built from.
    let layers = state.dynamic.layers();
    let mut dynamic_source = None;
    if let Some(name) = key.broker_name {
        for (level, source) in [
            (&layers.broker, dynamic_config::SOURCE_DYNAMIC_BROKER),
            (
                &layers.cluster_default,
                dynamic_config::SOURCE_DYNAMIC_DEFAULT_BROKER,
            ),
        ] {
            if let Some(v) = level.get(name) {
                synonyms.push((name.to_owned(), v.clone(), source));
                dynamic_source.get_or_insert(source);
            }
        }
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
    } else if let Some(source) = dynamic_source {
        source
    } else if key.value(&defaults) != key.value(&TopicConfig::default()) || explicit.is_some() {
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
            let doc =
                |key: &TopicConfigKey| request.include_documentation.then(|| key.documentation());
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
                        .unwrap_or_else(|_| (*state.topics.defaults()).clone());
                    let configs = topic_config::KEYS
                        .iter()
                        .filter(|k| included(k.name))
                        .map(|key| {
                            let d = describe_key(state, key, &config, &overrides);
                            let mut e = entry(
                                key.name,
                                d.value,
                                false,
                                d.source,
                                key.config_type,
                                doc(key).as_deref(),
                            );
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
                    let level = match Level::of(&resource.resource_name, state.node_id) {
                        Ok(level) => level,
                        Err(e) => return error(e.code, e.message),
                    };
                    let configs = describe_broker(state, level, request.include_synonyms)
                        .into_iter()
                        .filter(|e| included(e.name.as_str()))
                        .map(|mut e| {
                            if request.include_documentation {
                                e.documentation = broker_documentation(e.name.as_str()).map(s);
                            }
                            e
                        })
                        .collect();
                    result.with_configs(configs)
                }
                RESOURCE_BROKER_LOGGER => {
                    if let Err(e) = logger_level(&resource.resource_name, state.node_id) {
                        return error(e.code, e.message);
                    }
                    match crate::loggers::describe() {
                        Err(e) => {
                            let e = logger_error(e);
                            error(e.code, e.message)
                        }
                        Ok(levels) => result.with_configs(
                            levels
                                .into_iter()
                                .filter(|(name, _)| included(name))
                                .map(|(name, level)| {
                                    entry(
                                        &name,
                                        level,
                                        false,
                                        SOURCE_BROKER_LOGGER,
                                        ConfigType::String,
                                        None,
                                    )
                                })
                                .collect(),
                        ),
                    }
                }
                RESOURCE_GROUP => {
                    let overrides = group_overrides(state, &resource.resource_name);
                    let configs = crate::group_configs::KEYS
                        .iter()
                        .filter(|k| included(k.name))
                        .map(|key| {
                            let set = overrides.get(key.name);
                            let (value, source) = match set {
                                Some(v) => (v.clone(), SOURCE_GROUP),
                                None => (key.default.to_owned(), SOURCE_DEFAULT),
                            };
                            let documentation =
                                request.include_documentation.then(|| key.documentation());
                            let mut e = entry(
                                key.name,
                                value,
                                false,
                                source,
                                key.config_type,
                                documentation.as_deref(),
                            );
                            if request.include_synonyms {
                                let mut synonyms: Vec<(&str, String, i8)> = Vec::new();
                                if let Some(v) = set {
                                    synonyms.push((key.name, v.clone(), SOURCE_GROUP));
                                }
                                if let Some(broker_name) = key.broker_name {
                                    synonyms.push((
                                        broker_name,
                                        key.default.to_owned(),
                                        SOURCE_DEFAULT,
                                    ));
                                }
                                e.synonyms = synonyms
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
            let result = if counts
                .get(&(resource.resource_type, name))
                .copied()
                .unwrap_or(0)
                > 1
            {
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
                        Some(topic) => {
                            altered_overrides(state, &topic.overrides(), &resource.configs)
                                .and_then(|overrides| {
                                    if request.validate_only {
                                        Ok(())
                                    } else {
                                        state.topics.set_overrides(&topic, overrides)
                                    }
                                })
                        }
                    },
                    RESOURCE_BROKER => {
                        alter_broker_locally(state, name, &resource.configs, request.validate_only)
                    }
                    RESOURCE_BROKER_LOGGER => {
                        alter_loggers(state, name, &resource.configs, request.validate_only)
                    }
                    RESOURCE_GROUP => match (&state.group_configs, request.validate_only) {
                        (_, true) => crate::group_configs::altered(
                            &group_overrides(state, name),
                            &resource.configs,
                        )
                        .map(|_| ()),
                        (Some(store), false) => store.update(name, |current| {
                            crate::group_configs::altered(current, &resource.configs)
                        }),
                        (None, false) => Err(AdminError::new(
                            ResponseError::UnknownServerError,
                            "no group config store",
                        )),
                    },
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
            let current = match resource.resource_type {
                RESOURCE_TOPIC => topic_overrides(state, resource.resource_name.as_str()),
                RESOURCE_BROKER => Level::of(&resource.resource_name, state.node_id)
                    .ok()
                    .map(|level| current_layers(state).level(level).clone()),
                RESOURCE_GROUP => Some(group_overrides(state, resource.resource_name.as_str())),
                _ => None,
            };
            {
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

/// The dynamic broker config levels as they stand: the metadata image's in a cluster,
/// the file's on the single node of earlier releases.
pub(crate) fn current_layers(state: &BrokerState) -> Layers {
    use sluice_metadata::records::ConfigResource;
    match &state.cluster {
        Some(node) => {
            let image = node.image();
            Layers {
                cluster_default: image
                    .configs(&ConfigResource::ClusterDefault)
                    .cloned()
                    .unwrap_or_default(),
                broker: image
                    .configs(&ConfigResource::Broker(state.node_id))
                    .cloned()
                    .unwrap_or_default(),
            }
        }
        None => state.dynamic.layers(),
    }
}

/// DescribeConfigs of a BROKER resource: at the cluster-default level the dynamic
/// defaults only (as Kafka), for this broker every config with its effective value and
/// source.
fn describe_broker(
    state: &BrokerState,
    level: Level,
    include_synonyms: bool,
) -> Vec<DescribeConfigsResourceResult> {
    let layers = current_layers(state);
    let dynamic_entry = |name: &str, value: &str, source: i8| {
        let sensitive = dynamic_config::is_sensitive(name);
        let mut e = entry(
            name,
            value.to_owned(),
            false,
            source,
            broker_config_type(name),
            None,
        )
        .with_is_sensitive(sensitive);
        if sensitive {
            e.value = None;
        }
        e
    };
    if level == Level::ClusterDefault {
        return layers
            .cluster_default
            .iter()
            .map(|(name, value)| {
                dynamic_entry(name, value, dynamic_config::SOURCE_DYNAMIC_DEFAULT_BROKER)
            })
            .collect();
    }
    let (_, effective) = layers.effective_properties(&state.config);
    let built_in: BTreeMap<String, String> =
        BrokerConfig::default().describe().into_iter().collect();
    let mut described = std::collections::BTreeSet::new();
    let mut out: Vec<DescribeConfigsResourceResult> = effective
        .describe()
        .into_iter()
        .map(|(name, value)| {
            described.insert(name.clone());
            let applied = dynamic_config::effect(&name) == Effect::Applied;
            let dynamic = layers.get(&name).filter(|_| applied);
            let explicit = state.config.explicit.get(&name);
            let source = match (dynamic, explicit) {
                (Some((_, source)), _) => source,
                (None, Some(_)) => SOURCE_STATIC_BROKER,
                (None, None) => SOURCE_DEFAULT,
            };
            let mut e = entry(
                &name,
                value,
                !applied,
                source,
                broker_config_type(&name),
                None,
            );
            if include_synonyms {
                let mut synonyms = Vec::new();
                if applied {
                    if let Some(v) = layers.broker.get(&name) {
                        synonyms.push((v.clone(), dynamic_config::SOURCE_DYNAMIC_BROKER));
                    }
                    if let Some(v) = layers.cluster_default.get(&name) {
                        synonyms.push((v.clone(), dynamic_config::SOURCE_DYNAMIC_DEFAULT_BROKER));
                    }
                }
                if let Some(v) = explicit {
                    synonyms.push((v.clone(), SOURCE_STATIC_BROKER));
                }
                if let Some(v) = built_in.get(&name) {
                    synonyms.push((v.clone(), SOURCE_DEFAULT));
                }
                e.synonyms = synonyms
                    .into_iter()
                    .map(|(value, source)| {
                        DescribeConfigsSynonym::default()
                            .with_name(s(name.clone()))
                            .with_value(Some(s(value)))
                            .with_source(source)
                    })
                    .collect();
            }
            e
        })
        .collect();
    // Kafka's dynamic settings Sluice stores without acting on them, and custom names.
    for (name, value) in layers.cluster_default.iter().chain(&layers.broker) {
        if described.insert(name.clone()) {
            let (value, source) = layers.get(name).unwrap_or((value, SOURCE_DEFAULT));
            out.push(dynamic_entry(name, value, source));
        }
    }
    out
}

fn broker_config_type(name: &str) -> ConfigType {
    topic_config::find_by_broker_name(name).map_or(ConfigType::String, |key| key.config_type)
}

/// DescribeConfigs documentation of a broker config: the topic config's for the topic
/// defaults, what Sluice does with it for the dynamic settings it does not act on.
fn broker_documentation(name: &str) -> Option<String> {
    if let Some(key) = topic_config::find_by_broker_name(name) {
        return Some(key.documentation());
    }
    match dynamic_config::effect(name) {
        Effect::Inert(reason) => Some(format!(
            "Kafka's dynamic broker config; accepted and stored, no effect in Sluice: {reason}."
        )),
        Effect::Custom => Some("A custom config: stored, not used by Sluice.".to_owned()),
        Effect::Applied | Effect::StaticOnly => None,
    }
}

/// IncrementalAlterConfigs of a BROKER resource on the single node of earlier releases:
/// stored in the data directory's file, then applied.
fn alter_broker_locally(
    state: &BrokerState,
    name: &str,
    changes: &[kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig],
    validate_only: bool,
) -> Result<(), AdminError> {
    let level = Level::of(name, state.node_id)?;
    // Held from reading the layers to applying them: two concurrent alterations both
    // take effect, and the last applied is the last stored.
    let _altering = state.dynamic.lock_local_alter();
    let layers = dynamic_config::altered(&state.config, &state.dynamic.layers(), level, changes)?;
    if validate_only {
        return Ok(());
    }
    state.dynamic.store(layers)?;
    dynamic_config::apply(state);
    Ok(())
}

/// A group's configs as they stand: the metadata's in a cluster, the file's on the single
/// node of earlier releases.
pub(crate) fn group_overrides(state: &BrokerState, group: &str) -> BTreeMap<String, String> {
    use sluice_metadata::records::ConfigResource;
    match (&state.cluster, &state.group_configs) {
        (Some(node), _) => node
            .image()
            .configs(&ConfigResource::Group(group.to_owned()))
            .cloned()
            .unwrap_or_default(),
        (None, Some(store)) => store.get(group),
        (None, None) => BTreeMap::new(),
    }
}

/// A BROKER_LOGGER resource must name this broker (Kafka refuses the empty name).
fn logger_level(resource_name: &str, node_id: i32) -> Result<(), AdminError> {
    match Level::of(resource_name, node_id)? {
        Level::Broker => Ok(()),
        Level::ClusterDefault => Err(AdminError::new(
            ResponseError::InvalidRequest,
            "Broker id must not be empty",
        )),
    }
}

fn logger_error(e: crate::loggers::LoggerError) -> AdminError {
    match e {
        crate::loggers::LoggerError::InvalidConfig(m) => {
            AdminError::new(ResponseError::InvalidConfig, m)
        }
        crate::loggers::LoggerError::InvalidRequest(m) => {
            AdminError::new(ResponseError::InvalidRequest, m)
        }
    }
}

/// IncrementalAlterConfigs of this broker's loggers (BROKER_LOGGER): applied to this
/// process at once, not persisted (as in Kafka). In a cluster too: a broker's log levels
/// are its own, so the request never goes to the controller.
pub(crate) fn alter_loggers(
    state: &BrokerState,
    name: &str,
    changes: &[kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig],
    validate_only: bool,
) -> Result<(), AdminError> {
    logger_level(name, state.node_id)?;
    let mut parsed = Vec::with_capacity(changes.len());
    for change in changes {
        let level = match change.config_operation {
            OP_SET => Some(change.value.as_deref().unwrap_or("").to_owned()),
            OP_DELETE => None,
            _ => {
                return Err(AdminError::new(
                    ResponseError::InvalidRequest,
                    format!(
                        "{} operation is not allowed for the BROKER_LOGGER resource",
                        if change.config_operation == OP_APPEND {
                            "APPEND"
                        } else {
                            "SUBTRACT"
                        }
                    ),
                ))
            }
        };
        parsed.push((change.name.to_string(), level));
    }
    let result = if validate_only {
        crate::loggers::check(&parsed)
    } else {
        crate::loggers::apply(&parsed)
    };
    result.map_err(logger_error)
}
