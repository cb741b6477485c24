//! The checks against a real state over a temp dir: alice may do everything on every
//! topic except `secret`, which a DENY closes to her. Each test runs a request through
//! the check and the handler, as the dispatcher does, and looks at what comes out.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use sluice_storage::Flusher;
use uuid::Uuid;

use super::*;
use crate::config::BrokerConfig;
use crate::handlers::admin::topics;
use crate::handlers::metadata as metadata_handler;
use crate::security::acl::{AccessCache, AclBinding, PatternType, Permission};
use crate::security::Principal;
use crate::topics::TopicRegistry;

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_owned()))
}

/// A broker with the authorizer on, topics `public` and `secret`, and alice's ACLs.
fn state(dir: &std::path::Path) -> BrokerState {
    let props: BTreeMap<String, String> = [
        (
            "authorizer.class.name",
            "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        ),
        ("super.users", "User:admin"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let config = BrokerConfig::from_properties(&props).unwrap();
    let (registry, _) = TopicRegistry::load(
        dir,
        Flusher::start("test").unwrap(),
        config.topic_defaults.clone(),
        config.flush_mode,
        true,
        crate::topics::Layout::WholeTopics,
    )
    .unwrap();
    let state = BrokerState::for_tests(config, registry);
    let create = CreateTopicsRequest::default().with_topics(
        ["public", "secret"]
            .iter()
            .map(|t| {
                CreatableTopic::default()
                    .with_name(name(t))
                    .with_num_partitions(1)
                    .with_replication_factor(1)
            })
            .collect(),
    );
    let created = topics::create_topics(&state, &create, 7);
    assert!(created.topics.iter().all(|t| t.error_code == 0));
    let acl = |resource: &str, permission| AclBinding {
        resource_type: ResourceType::Topic,
        resource_name: resource.to_owned(),
        pattern_type: PatternType::Literal,
        principal: "User:alice".to_owned(),
        host: "*".to_owned(),
        operation: Operation::All,
        permission,
    };
    state
        .security
        .authorizer
        .create(&[acl("*", Permission::Allow), acl("secret", Permission::Deny)])
        .unwrap();
    state
}

fn secret_id(state: &BrokerState) -> Uuid {
    state.topics.get("secret").unwrap().id
}

/// Runs `f` with alice's access.
fn as_alice<T>(state: &BrokerState, f: impl FnOnce(&mut Access<'_>) -> T) -> T {
    let alice = Principal::user("alice");
    let mut cache = AccessCache::default();
    let mut access = Access::new(&state.security.authorizer, &alice, LOCAL, &mut cache);
    f(&mut access)
}

fn metadata(state: &BrokerState, mut request: MetadataRequest, version: i16) -> MetadataResponse {
    as_alice(state, |access| {
        let asked = MetadataAsked::of(&request, version);
        let denied = super::metadata(access, &TopicNames::new(state), &mut request, false);
        let mut response = metadata_handler::handle(state, &request, version);
        post_metadata(access, denied, asked, &mut response);
        response
    })
}

fn names_in(response: &MetadataResponse) -> Vec<Option<String>> {
    response
        .topics
        .iter()
        .map(|t| t.name.as_ref().map(|n| n.0.to_string()))
        .collect()
}

#[test]
fn metadata_by_id_is_checked_as_the_handler_resolves_it() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path());
    // An empty name and the secret topic's id: the handler answers by id, so the check
    // must be on the topic the id names, not on the name "".
    for topic_name in [None, Some(name(""))] {
        let request =
            MetadataRequest::default().with_topics(Some(vec![MetadataRequestTopic::default()
                .with_name(topic_name)
                .with_topic_id(secret_id(&state))]));
        let response = metadata(&state, request, 12);
        assert_eq!(response.topics.len(), 1);
        let answer = &response.topics[0];
        assert_eq!(
            answer.error_code,
            ResponseError::TopicAuthorizationFailed.code()
        );
        assert_eq!(answer.name, None, "the name is not revealed");
        assert!(answer.partitions.is_empty());
        assert_eq!(answer.topic_id, Uuid::nil());
    }
}

#[test]
fn metadata_lists_only_what_the_principal_may_describe() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path());
    let all = metadata(&state, MetadataRequest::default().with_topics(None), 12);
    assert_eq!(names_in(&all), [Some("public".to_owned())]);
    // v0: an empty list is "all topics", so a list emptied by the check must not become one.
    let named = MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default().with_name(Some(name("secret")))
    ]));
    let response = metadata(&state, named, 0);
    assert_eq!(names_in(&response), [Some("secret".to_owned())]);
    assert_eq!(
        response.topics[0].error_code,
        ResponseError::TopicAuthorizationFailed.code()
    );
}

#[test]
fn produce_and_fetch_lose_what_is_denied() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path());
    let mut produce = ProduceRequest::default().with_acks(1).with_topic_data(
        ["public", "secret"]
            .iter()
            .map(|t| {
                TopicProduceData::default()
                    .with_name(name(t))
                    .with_partition_data(vec![PartitionProduceData::default().with_index(0)])
            })
            .collect(),
    );
    let refused = as_alice(&state, |access| {
        super::produce(access, &TopicNames::new(&state), &mut produce, 9)
    });
    assert_eq!(produce.topic_data.len(), 1);
    assert_eq!(produce.topic_data[0].name, name("public"));
    assert_eq!(refused[0].name, name("secret"));
    assert_eq!(
        refused[0].partition_responses[0].error_code,
        ResponseError::TopicAuthorizationFailed.code()
    );

    // A follower's fetch needs ClusterAction, which alice does not have.
    let fetch = |replica: i32| {
        FetchRequest::default()
            .with_replica_id(BrokerId(replica))
            .with_topics(vec![FetchTopic::default()
                .with_topic(name("public"))
                .with_partitions(vec![FetchPartition::default().with_partition(0)])])
    };
    let mut consumer = fetch(-1);
    let mut follower = fetch(2);
    as_alice(&state, |access| {
        let names = TopicNames::new(&state);
        assert!(super::fetch(access, &names, &mut consumer, 12).is_empty());
        let refused = super::fetch(access, &names, &mut follower, 12);
        assert!(follower.topics.is_empty());
        assert_eq!(
            refused[0].partitions[0].error_code,
            ResponseError::TopicAuthorizationFailed.code()
        );
    });
}

#[test]
fn delete_by_id_without_describe_hides_the_name() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path());
    let mut request = DeleteTopicsRequest::default().with_topics(vec![
        DeleteTopicState::default().with_topic_id(secret_id(&state)),
        DeleteTopicState::default().with_name(Some(name("secret"))),
    ]);
    let refused = as_alice(&state, |access| {
        delete_topics(access, &TopicNames::new(&state), &mut request, 6)
    });
    assert!(request.topics.is_empty());
    assert_eq!(refused[0].name, None);
    assert_eq!(refused[1].name, Some(name("secret")));
    assert!(refused
        .iter()
        .all(|r| r.error_code == ResponseError::TopicAuthorizationFailed.code()));
    assert!(state.topics.get("secret").is_some());
}

#[test]
fn config_checks_follow_the_resource_type() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path());
    let resource = |kind: i8, resource: &str| {
        DescribeConfigsResource::default()
            .with_resource_type(kind)
            .with_resource_name(StrBytes::from_string(resource.to_owned()))
    };
    let mut request = DescribeConfigsRequest::default().with_resources(vec![
        resource(CONFIG_TOPIC, "public"),
        resource(CONFIG_TOPIC, "secret"),
        resource(CONFIG_BROKER, "1"),
        // Unknown to Kafka too: the handler's INVALID_REQUEST, not a cluster refusal.
        resource(99, "x"),
    ]);
    let refused = as_alice(&state, |access| describe_configs(access, &mut request));
    let codes: Vec<i16> = refused.iter().map(|r| r.error_code).collect();
    assert_eq!(
        codes,
        [
            ResponseError::TopicAuthorizationFailed.code(),
            ResponseError::ClusterAuthorizationFailed.code()
        ]
    );
    let kept: Vec<i8> = request.resources.iter().map(|r| r.resource_type).collect();
    assert_eq!(kept, [CONFIG_TOPIC, 99]);
}
