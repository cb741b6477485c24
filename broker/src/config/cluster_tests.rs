//! Tests of the cluster properties: every rule with a configuration it accepts and one it
//! refuses (and the message), the single-node default, and the bare `HOST:PORT` listeners
//! of earlier Sluice releases. The refused cases mirror what Apache Kafka 4.4's KafkaConfig
//! answers for the same properties, except where cluster.rs says Sluice differs.

use std::collections::BTreeMap;
use std::time::Duration;

use super::*;
use crate::config::{env_properties, read_toml_file, BrokerConfig};

fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn parse(pairs: &[(&str, &str)]) -> Result<ClusterConfig, ConfigError> {
    BrokerConfig::from_properties(&props(pairs)).map(|c| c.cluster)
}

fn accepted(pairs: &[(&str, &str)]) -> ClusterConfig {
    parse(pairs).unwrap_or_else(|e| panic!("{pairs:?} refused: {e}"))
}

/// Asserts that `pairs` is refused with a message containing `needle`; returns the message.
fn refused(pairs: &[(&str, &str)], needle: &str) -> String {
    match parse(pairs) {
        Ok(c) => panic!("{pairs:?} accepted: {c:?}"),
        Err(e) => {
            let message = e.to_string();
            assert!(
                message.contains(needle),
                "{pairs:?}: message {message:?} lacks {needle:?}"
            );
            message
        }
    }
}

fn listener(name: &str, host: &str, port: u16) -> Listener {
    Listener {
        name: name.to_owned(),
        host: host.to_owned(),
        port,
        security_protocol: SecurityProtocol::Plaintext,
    }
}

/// A three-controller combined cluster, seen from node 1.
const THREE_VOTERS: &str = "1@127.0.0.1:9093,2@127.0.0.2:9093,3@127.0.0.3:9093";
const WITH_CONTROLLER: &str = "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093";

#[test]
fn the_zero_config_node_is_a_complete_single_node_cluster() {
    let c = BrokerConfig::default().cluster;
    assert_eq!(c.roles, ProcessRoles::COMBINED);
    assert!(c.is_broker() && c.is_controller());
    assert_eq!(c.node_id, 1);
    assert_eq!(
        c.voters,
        BTreeMap::from([(1, None)]),
        "sole voter, no address"
    );
    assert!(c.single_node());
    assert_eq!(c.listeners, vec![listener("PLAINTEXT", "127.0.0.1", 9092)]);
    assert!(c.advertised_listeners.is_empty());
    assert_eq!(c.controller_listener_names, vec!["CONTROLLER"]);
    assert_eq!(c.inter_broker_listener_name, "PLAINTEXT");
    assert_eq!(c.rack, None);
    assert_eq!(c.broker_session_timeout_ms, 9000);
    assert_eq!(c.broker_heartbeat_interval_ms, 2000);
    assert_eq!(
        c.security_protocol_map,
        BTreeMap::from([
            ("CONTROLLER".to_owned(), SecurityProtocol::Plaintext),
            ("PLAINTEXT".to_owned(), SecurityProtocol::Plaintext),
            ("SASL_PLAINTEXT".to_owned(), SecurityProtocol::SaslPlaintext),
            ("SASL_SSL".to_owned(), SecurityProtocol::SaslSsl),
            ("SSL".to_owned(), SecurityProtocol::Ssl),
        ])
    );
    // No controller listener: one port is bound, as before roles existed.
    assert_eq!(c.controller_listener(), None);
    assert_eq!(c.client_listeners().count(), 1);
    assert_eq!(c.inter_broker_listener(), Some(&c.listeners[0]));
    assert_eq!(
        c.served_listeners().unwrap().clients[0].bind_address(),
        "127.0.0.1:9092"
    );
    // The quorum crate's tested timings.
    assert_eq!(
        c.raft_timeouts(),
        RaftTimeouts {
            heartbeat_interval: Duration::from_millis(150),
            election_timeout_min: Duration::from_millis(400),
            election_timeout_max: Duration::from_millis(600),
        }
    );
    // Another node.id is still its own sole voter.
    let c = accepted(&[("node.id", "7")]);
    assert_eq!(c.voters, BTreeMap::from([(7, None)]));
    assert!(c.single_node());
}

#[test]
fn bare_host_port_is_still_one_plaintext_listener() {
    for (text, host, port, bind) in [
        ("127.0.0.1:0", "127.0.0.1", 0, "127.0.0.1:0"),
        ("0.0.0.0:9092", "0.0.0.0", 9092, "0.0.0.0:9092"),
        ("localhost:9092", "localhost", 9092, "localhost:9092"),
        ("[::1]:9092", "::1", 9092, "[::1]:9092"),
        ("PLAINTEXT://[::1]:0", "::1", 0, "[::1]:0"),
        // Kafka's default form: an empty host is every interface.
        ("PLAINTEXT://:9092", "", 9092, "0.0.0.0:9092"),
    ] {
        let c = accepted(&[("listeners", text)]);
        assert_eq!(
            c.listeners,
            vec![listener("PLAINTEXT", host, port)],
            "{text}"
        );
        assert_eq!(
            c.served_listeners().unwrap().clients[0].bind_address(),
            bind
        );
    }
    let c = accepted(&[("advertised.listeners", "broker.example:19092")]);
    assert_eq!(
        c.advertised_listener("PLAINTEXT"),
        Some(&listener("PLAINTEXT", "broker.example", 19092))
    );
    for bad in [
        "nope",
        "127.0.0.1",
        "127.0.0.1:70000",
        "127.0.0.1:x",
        "::1:9092",
        "[nothost]:9092",
        "my host:9092",
        "PLAINTEXT://a/b:9092",
    ] {
        refused(&[("listeners", bad)], "invalid value");
    }
}

#[test]
fn process_roles_take_kafkas_two_names() {
    for (text, broker, controller) in [
        ("broker", true, false),
        ("controller", false, true),
        ("broker,controller", true, true),
        ("controller, broker", true, true),
        // A set, as in Kafka.
        ("broker,broker", true, false),
    ] {
        let roles = ProcessRoles::parse(text).unwrap();
        assert_eq!(
            (roles.broker, roles.controller),
            (broker, controller),
            "{text}"
        );
        assert_eq!(ProcessRoles::parse(&roles.to_string()).unwrap(), roles);
    }
    refused(
        &[("process.roles", "Broker")],
        "Unknown process role 'Broker' (only 'broker' and 'controller' are allowed roles)",
    );
    refused(&[("process.roles", "zookeeper")], "Unknown process role");
    refused(&[("process.roles", ",")], "must not be empty");
}

#[test]
fn voters_are_id_at_host_port() {
    let c = accepted(&[
        (
            "controller.quorum.voters",
            "1@127.0.0.1:9093, 2@[::1]:9093,3@ctrl-3.example:9093",
        ),
        ("listeners", WITH_CONTROLLER),
    ]);
    let addr = |host: &str| {
        Some(HostPort {
            host: host.to_owned(),
            port: 9093,
        })
    };
    assert_eq!(
        c.voters,
        BTreeMap::from([
            (1, addr("127.0.0.1")),
            (2, addr("::1")),
            (3, addr("ctrl-3.example"))
        ])
    );
    assert!(!c.single_node());
    assert_eq!(
        c.voters_text(),
        "1@127.0.0.1:9093,2@[::1]:9093,3@ctrl-3.example:9093"
    );
    let voters = |v: &'static str| {
        [
            ("controller.quorum.voters", v),
            ("listeners", WITH_CONTROLLER),
        ]
    };
    refused(
        &voters("1@127.0.0.1"),
        "Each entry should be in the form `{id}@{host}:{port}`",
    );
    refused(
        &voters("127.0.0.1:9093"),
        "Each entry should be in the form",
    );
    refused(
        &voters("x@127.0.0.1:9093"),
        "Failed to parse voter ID as an integer from x",
    );
    refused(
        &voters("-1@127.0.0.1:9093"),
        "a voter id is a node.id, >= 0",
    );
    refused(&voters("1@:9093"), "the host is missing");
    refused(&voters("1@127.0.0.1:0"), "port 0");
    refused(&voters("1@0.0.0.0:9093"), "wildcard");
    refused(
        &voters("1@127.0.0.1:9093,1@127.0.0.2:9093"),
        "voter 1 is listed twice",
    );
    refused(
        &voters("1@127.0.0.1:9093,2@127.0.0.1:9093"),
        "voters 1 and 2 have the same address 127.0.0.1:9093",
    );
}

#[test]
fn a_controller_is_one_of_the_voters() {
    refused(
        &[
            ("node.id", "4"),
            ("controller.quorum.voters", THREE_VOTERS),
            ("listeners", WITH_CONTROLLER),
        ],
        "If process.roles contains the 'controller' role, the node id 4 must be included in the set \
         of voters controller.quorum.voters=[1, 2, 3]",
    );
    let c = accepted(&[
        ("node.id", "3"),
        ("controller.quorum.voters", THREE_VOTERS),
        ("listeners", WITH_CONTROLLER),
    ]);
    assert!(c.is_controller() && !c.single_node());
    assert_eq!(
        c.controller_listener(),
        Some(&listener("CONTROLLER", "127.0.0.1", 9093))
    );
    assert_eq!(
        c.client_listeners().collect::<Vec<_>>(),
        vec![&listener("PLAINTEXT", "127.0.0.1", 9092)]
    );
}

#[test]
fn a_broker_only_node_follows_the_voters_without_being_one() {
    let broker = |extra: &[(&'static str, &'static str)]| {
        let mut pairs = vec![
            ("process.roles", "broker"),
            ("node.id", "4"),
            ("controller.quorum.voters", THREE_VOTERS),
            ("listeners", "PLAINTEXT://127.0.0.4:9092"),
        ];
        for (k, v) in extra {
            pairs.retain(|(key, _)| key != k);
            pairs.push((k, v));
        }
        pairs
    };
    let c = accepted(&broker(&[]));
    assert!(c.is_broker() && !c.is_controller());
    assert_eq!(c.controller_listener(), None);
    assert_eq!(
        c.controller_security_protocol(),
        Some(SecurityProtocol::Plaintext)
    );
    assert_eq!(c.voters.len(), 3);

    refused(
        &broker(&[("controller.quorum.voters", "")]),
        "process.roles=broker needs controller.quorum.voters",
    );
    refused(
        &broker(&[("controller.quorum.voters", "4@127.0.0.4:9093")]),
        "If process.roles contains just the 'broker' role, the node id 4 must not be included in \
         the set of voters controller.quorum.voters=[4]",
    );
    refused(
        &broker(&[(
            "listeners",
            "PLAINTEXT://127.0.0.4:9092,CONTROLLER://127.0.0.4:9093",
        )]),
        "controller.listener.names must not contain a value appearing in the 'listeners' \
         configuration when running KRaft with just the broker role",
    );
    refused(
        &broker(&[("controller.listener.names", ",")]),
        "controller.listener.names must contain at least one value when running KRaft with just \
         the broker role",
    );
    // An explicit map must name the controller listener (Kafka adds it only to the default).
    refused(
        &broker(&[("listener.security.protocol.map", "PLAINTEXT:PLAINTEXT")]),
        "Controller listener with name CONTROLLER defined in controller.listener.names not found \
         in listener.security.protocol.map",
    );
    refused(
        &broker(&[
            ("controller.listener.names", "CONTROLLER,RAFT"),
            (
                "listener.security.protocol.map",
                "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            ),
        ]),
        "Controller listener with name RAFT defined in controller.listener.names not found",
    );
    let c = accepted(&broker(&[(
        "listener.security.protocol.map",
        "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
    )]));
    assert_eq!(c.security_protocol_map.len(), 2);
    let message = refused(
        &broker(&[(
            "listener.security.protocol.map",
            "PLAINTEXT:PLAINTEXT,CONTROLLER:SSL",
        )]),
        "not supported yet",
    );
    assert!(message.contains("controller listener CONTROLLER uses security protocol SSL"));
}

#[test]
fn a_controller_listens_on_a_controller_listener_unless_it_is_the_only_voter() {
    let multi = |listeners: &'static str| {
        [
            ("controller.quorum.voters", THREE_VOTERS),
            ("listeners", listeners),
        ]
    };
    refused(
        &multi("PLAINTEXT://127.0.0.1:9092"),
        "controller.listener.names must contain at least one value appearing in the 'listeners' \
         configuration when running the KRaft controller role",
    );
    accepted(&multi(WITH_CONTROLLER));
    refused(
        &[
            ("controller.quorum.voters", THREE_VOTERS),
            ("listeners", WITH_CONTROLLER),
            ("controller.listener.names", "CONTROLLER,RAFT"),
        ],
        "controller.listener.names must only contain values appearing in the 'listeners' \
         configuration when running the KRaft controller role",
    );
    // The sole-voter exemption, explicit or implied, for a combined node only.
    for voters in ["", "1@127.0.0.1:9093"] {
        let c = accepted(&[
            ("controller.quorum.voters", voters),
            ("listeners", "PLAINTEXT://127.0.0.1:9092"),
        ]);
        assert!(c.single_node(), "{voters:?}");
        assert_eq!(c.controller_listener(), None);
    }
    // A sole voter may still listen, for broker-only nodes that follow it.
    let c = accepted(&[("listeners", WITH_CONTROLLER)]);
    assert!(c.single_node());
    assert_eq!(c.controller_listener().map(|l| l.port), Some(9093));
    refused(
        &[
            ("process.roles", "controller"),
            (
                "listeners",
                "CONTROLLER://127.0.0.1:9092,CONTROLLER2://127.0.0.1:9093",
            ),
            (
                "listener.security.protocol.map",
                "CONTROLLER:PLAINTEXT,CONTROLLER2:PLAINTEXT",
            ),
            ("controller.listener.names", "CONTROLLER2"),
        ],
        "The listeners config must only contain KRaft controller listeners",
    );
}

#[test]
fn a_controller_only_node_listens_only_as_a_controller() {
    refused(
        &[
            ("process.roles", "controller"),
            ("listeners", WITH_CONTROLLER),
        ],
        "The listeners config must only contain KRaft controller listeners from \
         controller.listener.names when process.roles=controller",
    );
    // The implied sole voter still needs its controller listener: nothing else could
    // reach a controller-only node.
    refused(
        &[
            ("process.roles", "controller"),
            ("listeners", "PLAINTEXT://127.0.0.1:9092"),
        ],
        "must only contain KRaft controller listeners",
    );
    let c = accepted(&[
        ("process.roles", "controller"),
        ("controller.quorum.voters", THREE_VOTERS),
        ("listeners", "CONTROLLER://127.0.0.1:9093"),
    ]);
    assert!(!c.is_broker() && c.is_controller());
    assert_eq!(c.client_listeners().count(), 0);
    assert_eq!(c.inter_broker_listener(), None);
    assert_eq!(c.controller_listener().map(|l| l.port), Some(9093));
    refused(
        &[
            ("process.roles", "controller"),
            ("listeners", "CONTROLLER://127.0.0.1:9093"),
            ("inter.broker.listener.name", "CONTROLLER"),
        ],
        "controller.listener.names must not contain an explicitly set inter.broker.listener.name \
         configuration value when process.roles=controller",
    );
}

#[test]
fn a_broker_needs_a_listener_that_is_not_the_controllers() {
    refused(
        &[
            ("controller.quorum.voters", THREE_VOTERS),
            ("listeners", "CONTROLLER://127.0.0.1:9093"),
        ],
        "There must be at least one broker advertised listener. Perhaps all listeners appear in \
         controller.listener.names?",
    );
}

#[test]
fn advertised_listeners_name_reachable_broker_listeners() {
    let with = |advertised: &'static str| {
        [
            ("controller.quorum.voters", THREE_VOTERS),
            ("listeners", WITH_CONTROLLER),
            ("advertised.listeners", advertised),
        ]
    };
    let c = accepted(&with("PLAINTEXT://broker-1.example:9092"));
    assert_eq!(
        c.advertised_listener("PLAINTEXT"),
        Some(&listener("PLAINTEXT", "broker-1.example", 9092))
    );
    assert_eq!(c.advertised_listener("CONTROLLER"), None);
    refused(
        &with("PLAINTEXT://broker-1.example:9092,CONTROLLER://broker-1.example:9093"),
        "advertised.listeners must not contain KRaft controller listeners from \
         controller.listener.names (CONTROLLER)",
    );
    refused(
        &with("PLAINTEXT://0.0.0.0:9092"),
        "advertised.listeners cannot use the nonroutable meta-address 0.0.0.0. Use a routable IP \
         address.",
    );
    refused(
        &with("PLAINTEXT://[::]:9092"),
        "nonroutable meta-address ::",
    );
    refused(
        &with("PLAINTEXT://:9092"),
        "needs a host clients can resolve",
    );
    refused(&with("PLAINTEXT://broker-1.example:0"), "port 0");
    refused(
        &with("PLAINTEXT://a.example:9092,PLAINTEXT://b.example:9092"),
        "Each listener must have a different name (PLAINTEXT twice)",
    );
    refused(
        &[
            ("listeners", "PLAINTEXT://127.0.0.1:9092"),
            (
                "listener.security.protocol.map",
                "PLAINTEXT:PLAINTEXT,EXTERNAL:PLAINTEXT",
            ),
            ("advertised.listeners", "EXTERNAL://broker.example:9092"),
        ],
        "advertised.listeners listener names must be equal to or a subset of the ones defined in \
         listeners. Found EXTERNAL. The valid options based on the current configuration are \
         PLAINTEXT",
    );
    // Two listeners may advertise one address (Kafka allows it: a load balancer).
    accepted(&[
        (
            "listeners",
            "PLAINTEXT://127.0.0.1:9092,INTERNAL://127.0.0.1:9094",
        ),
        (
            "listener.security.protocol.map",
            "PLAINTEXT:PLAINTEXT,INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT",
        ),
        (
            "advertised.listeners",
            "PLAINTEXT://lb.example:9092,INTERNAL://lb.example:9092",
        ),
    ]);
}

#[test]
fn listener_names_and_ports_are_distinct() {
    refused(
        &[(
            "listeners",
            "PLAINTEXT://127.0.0.1:9092,PLAINTEXT://127.0.0.1:9094",
        )],
        "Each listener must have a different name (PLAINTEXT twice)",
    );
    // A bare entry is PLAINTEXT too.
    refused(
        &[("listeners", "127.0.0.1:9092,PLAINTEXT://127.0.0.1:9094")],
        "Each listener must have a different name",
    );
    refused(
        &[(
            "listeners",
            "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9092",
        )],
        "Each listener must have a different port unless exactly one listener has an IPv4 address \
         and the other IPv6 address (port 9092)",
    );
    refused(
        &[(
            "listeners",
            "PLAINTEXT://127.0.0.1:9092,CONTROLLER://localhost:9092",
        )],
        "different port",
    );
    // Port 0 picks a free port for each; an IPv4 and an IPv6 listener may share a port.
    accepted(&[(
        "listeners",
        "PLAINTEXT://127.0.0.1:0,CONTROLLER://127.0.0.1:0",
    )]);
    accepted(&[(
        "listeners",
        "PLAINTEXT://127.0.0.1:9092,CONTROLLER://[::1]:9092",
    )]);
}

#[test]
fn security_protocols_are_mapped_and_checked() {
    refused(
        &[("listeners", "CLIENT://127.0.0.1:9092")],
        "No security protocol defined for listener CLIENT",
    );
    // An explicit map replaces Kafka's default, CONTROLLER included.
    refused(
        &[
            ("controller.quorum.voters", THREE_VOTERS),
            (
                "listeners",
                "CLIENT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093",
            ),
            ("listener.security.protocol.map", "CLIENT:PLAINTEXT"),
            ("inter.broker.listener.name", "CLIENT"),
        ],
        "No security protocol defined for listener CONTROLLER",
    );
    let c = accepted(&[
        ("controller.quorum.voters", THREE_VOTERS),
        (
            "listeners",
            "CLIENT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093",
        ),
        (
            "listener.security.protocol.map",
            "CLIENT:plaintext, CONTROLLER:PLAINTEXT",
        ),
        ("inter.broker.listener.name", "CLIENT"),
    ]);
    assert_eq!(c.security_protocol_map.len(), 2);
    assert_eq!(c.inter_broker_listener().map(|l| l.port), Some(9092));
    let map = |m: &'static str| [("listener.security.protocol.map", m)];
    refused(
        &map("PLAINTEXT:FOO"),
        "Invalid security protocol `FOO` (PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL)",
    );
    refused(
        &map("PLAINTEXT"),
        "expected LISTENER_NAME:SECURITY_PROTOCOL",
    );
    refused(
        &map("PLAINTEXT:PLAINTEXT,PLAINTEXT:SSL"),
        "PLAINTEXT is mapped twice",
    );
    // Client listeners may use any protocol; TLS ones need their key store.
    for (listeners, inter) in [
        ("SSL://127.0.0.1:9093", "SSL"),
        ("SASL_SSL://127.0.0.1:9093", "SASL_SSL"),
        (
            "PLAINTEXT://127.0.0.1:9092,SASL_SSL://127.0.0.1:9093",
            "PLAINTEXT",
        ),
    ] {
        refused(
            &[
                ("listeners", listeners),
                ("inter.broker.listener.name", inter),
            ],
            "ssl.keystore.location is not set",
        );
    }
    let c = accepted(&[
        (
            "listeners",
            "PLAINTEXT://127.0.0.1:9092,SASL_PLAINTEXT://127.0.0.1:9095",
        ),
        ("sasl.enabled.mechanisms", "PLAIN"),
    ]);
    assert_eq!(c.served_listeners().unwrap().clients.len(), 2);
    refused(
        &[
            ("listeners", "SASL_PLAINTEXT://127.0.0.1:9095"),
            ("inter.broker.listener.name", "SASL_PLAINTEXT"),
            ("sasl.enabled.mechanisms", "GSSAPI"),
        ],
        "SASL mechanism GSSAPI",
    );
    // Controller listeners, and the inter-broker listener of a cluster, stay PLAINTEXT.
    let c = accepted(&[
        ("controller.quorum.voters", THREE_VOTERS),
        (
            "listeners",
            "SASL_PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093",
        ),
        ("inter.broker.listener.name", "SASL_PLAINTEXT"),
    ]);
    let message = c.served_listeners().unwrap_err().to_string();
    assert!(
        message.contains("brokers reach each other over PLAINTEXT only"),
        "{message}"
    );
}

#[test]
fn listener_names_are_case_insensitive() {
    // Kafka upper-cases the names in `listeners` but not in controller.listener.names, so it
    // refuses this; Sluice normalises every property alike.
    let c = accepted(&[
        ("controller.quorum.voters", THREE_VOTERS),
        (
            "listeners",
            "plaintext://127.0.0.1:9092,controller://127.0.0.1:9093",
        ),
        ("controller.listener.names", "controller"),
        ("inter.broker.listener.name", "Plaintext"),
    ]);
    assert_eq!(
        c.controller_listener().map(|l| l.name.as_str()),
        Some("CONTROLLER")
    );
    assert_eq!(c.inter_broker_listener_name, "PLAINTEXT");
    refused(
        &[("controller.listener.names", "CON TROLLER")],
        "a listener name is",
    );
    refused(&[("controller.listener.names", "A,a")], "A is listed twice");
}

#[test]
fn the_inter_broker_listener_is_an_advertised_broker_listener() {
    let named = [
        ("controller.quorum.voters", THREE_VOTERS),
        (
            "listeners",
            "CLIENT://127.0.0.1:9092,INTERNAL://127.0.0.1:9094,CONTROLLER://127.0.0.1:9093",
        ),
        (
            "listener.security.protocol.map",
            "CLIENT:PLAINTEXT,INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT",
        ),
    ];
    refused(
        &named,
        "inter.broker.listener.name must be a listener name defined in advertised.listeners. The \
         valid options based on currently configured listeners are CLIENT,INTERNAL",
    );
    let mut with_inter = named.to_vec();
    with_inter.push(("inter.broker.listener.name", "INTERNAL"));
    let c = accepted(&with_inter);
    assert_eq!(c.inter_broker_listener().map(|l| l.port), Some(9094));
    assert_eq!(c.client_listeners().count(), 2);
    // Advertising only CLIENT hides INTERNAL from the other brokers.
    with_inter.push(("advertised.listeners", "CLIENT://broker.example:9092"));
    refused(
        &with_inter,
        "The valid options based on currently configured listeners are CLIENT",
    );
    refused(
        &[("inter.broker.listener.name", "CONTROLLER")],
        "inter.broker.listener.name must be a listener name defined in advertised.listeners",
    );
}

#[test]
fn session_heartbeat_and_quorum_timeouts() {
    refused(
        &[("broker.heartbeat.interval.ms", "4501")],
        "broker.heartbeat.interval.ms (4501 ms) must be less than or equal to half of the \
         broker.session.timeout.ms (9000 ms)",
    );
    let c = accepted(&[("broker.heartbeat.interval.ms", "4500")]);
    assert_eq!(c.broker_heartbeat_interval_ms, 4500);
    let c = accepted(&[
        ("broker.session.timeout.ms", "20000"),
        ("broker.heartbeat.interval.ms", "10000"),
    ]);
    assert_eq!(c.broker_session_timeout_ms, 20000);
    for name in [
        "broker.session.timeout.ms",
        "broker.heartbeat.interval.ms",
        "controller.quorum.election.timeout.ms",
        "controller.quorum.fetch.timeout.ms",
    ] {
        refused(&[(name, "0")], "must be >= 1");
        refused(&[(name, "-5")], "not a valid number");
    }
    // Kafka's own values map onto the Raft range.
    let c = accepted(&[
        ("controller.quorum.election.timeout.ms", "1000"),
        ("controller.quorum.fetch.timeout.ms", "2000"),
    ]);
    assert_eq!(
        c.raft_timeouts(),
        RaftTimeouts {
            heartbeat_interval: Duration::from_millis(375),
            election_timeout_min: Duration::from_millis(1000),
            election_timeout_max: Duration::from_millis(2000),
        }
    );
    refused(
        &[("controller.quorum.election.timeout.ms", "600")],
        "controller.quorum.election.timeout.ms (600 ms) must be less than \
         controller.quorum.fetch.timeout.ms (600 ms)",
    );
    refused(
        &[("controller.quorum.election.timeout.ms", "9")],
        "must be >= 10",
    );
    // The smallest accepted range still has a heartbeat below its minimum.
    let t = accepted(&[
        ("controller.quorum.election.timeout.ms", "10"),
        ("controller.quorum.fetch.timeout.ms", "11"),
    ])
    .raft_timeouts();
    assert!(t.heartbeat_interval < t.election_timeout_min);
    assert!(t.heartbeat_interval > Duration::ZERO);
}

#[test]
fn broker_rack_is_optional() {
    assert_eq!(accepted(&[]).rack, None);
    assert_eq!(
        accepted(&[("broker.rack", " rack-a ")]).rack.as_deref(),
        Some("rack-a")
    );
}

#[test]
fn every_role_with_its_client_listeners_is_served() {
    let not_wired = |pairs: &[(&str, &str)], needle: &str| {
        let c = accepted(pairs);
        let message = c.served_listeners().unwrap_err().to_string();
        assert!(
            message.starts_with("cluster mode is not wired yet: "),
            "{message}"
        );
        assert!(message.contains(needle), "{message}");
    };
    not_wired(
        &[("listeners", WITH_CONTROLLER)],
        "listeners=PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093",
    );
    // Several client listeners are served, in `listeners` order.
    let c = accepted(&[
        ("process.roles", "broker"),
        ("node.id", "4"),
        ("controller.quorum.voters", THREE_VOTERS),
        ("listeners", "A://127.0.0.1:9092,B://127.0.0.1:9094"),
        (
            "listener.security.protocol.map",
            "A:PLAINTEXT,B:PLAINTEXT,CONTROLLER:PLAINTEXT",
        ),
        ("inter.broker.listener.name", "A"),
    ]);
    let names: Vec<&str> = c
        .served_listeners()
        .unwrap()
        .clients
        .iter()
        .map(|l| l.name.as_str())
        .collect();
    assert_eq!(names, ["A", "B"]);
    let c = accepted(&[("controller.quorum.voters", "1@127.0.0.1:9093")]);
    let served = c.served_listeners().unwrap();
    assert_eq!(served.clients[0].name, "PLAINTEXT");
    assert!(!served.is_cluster());

    let c = accepted(&[
        ("controller.quorum.voters", THREE_VOTERS),
        ("listeners", WITH_CONTROLLER),
    ]);
    let served = c.served_listeners().unwrap();
    assert_eq!(served.clients[0].name, "PLAINTEXT");
    assert_eq!(served.controller.unwrap().name, "CONTROLLER");
    assert!(served.is_cluster());

    // A broker-only node: its client listener, no controller listener of its own.
    let c = accepted(&[
        ("process.roles", "broker"),
        ("node.id", "4"),
        ("controller.quorum.voters", THREE_VOTERS),
    ]);
    let served = c.served_listeners().unwrap();
    assert_eq!(served.clients[0].name, "PLAINTEXT");
    assert!(served.controller.is_none());
    assert!(served.is_cluster());

    // A controller-only node: its controller listener only, even as the sole voter.
    for voters in [THREE_VOTERS, "1@127.0.0.1:9093"] {
        let c = accepted(&[
            ("process.roles", "controller"),
            ("controller.quorum.voters", voters),
            ("listeners", "CONTROLLER://127.0.0.1:9093"),
        ]);
        let served = c.served_listeners().unwrap();
        assert!(served.clients.is_empty());
        assert_eq!(served.controller.unwrap().name, "CONTROLLER");
        assert!(served.is_cluster());
    }
}

#[tokio::test]
async fn the_broker_refuses_a_cluster_before_touching_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let config = BrokerConfig::from_properties(&props(&[
        ("log.dirs", data_dir.to_str().unwrap()),
        (
            "listeners",
            "PLAINTEXT://127.0.0.1:0,CONTROLLER://127.0.0.1:0",
        ),
    ]))
    .unwrap();
    let error = match crate::Broker::start(config).await {
        Ok(_) => panic!("a broker with a controller listener started"),
        Err(e) => e.to_string(),
    };
    assert!(
        error.starts_with("cluster mode is not wired yet: listeners="),
        "{error}"
    );
    assert!(!data_dir.exists(), "the data directory was created");
}

#[test]
fn described_values_parse_back_to_the_same_config() {
    for pairs in [
        vec![],
        vec![("node.id", "3"), ("broker.rack", "r1")],
        vec![
            ("node.id", "2"),
            ("controller.quorum.voters", THREE_VOTERS),
            (
                "listeners",
                "CLIENT://:9092,INTERNAL://127.0.0.2:9094,CONTROLLER://127.0.0.2:9093",
            ),
            (
                "listener.security.protocol.map",
                "CLIENT:PLAINTEXT,INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT",
            ),
            (
                "advertised.listeners",
                "CLIENT://b2.example:9092,INTERNAL://b2.internal:9094",
            ),
            ("inter.broker.listener.name", "INTERNAL"),
            ("controller.quorum.election.timeout.ms", "1000"),
            ("controller.quorum.fetch.timeout.ms", "2000"),
        ],
        vec![
            ("process.roles", "broker"),
            ("node.id", "9"),
            ("controller.quorum.voters", "1@[::1]:9093"),
        ],
    ] {
        let config = BrokerConfig::from_properties(&props(&pairs)).unwrap();
        let mut described: BTreeMap<String, String> =
            config.cluster.describe().into_iter().collect();
        described.insert("node.id".to_owned(), config.node_id.to_string());
        let again = BrokerConfig::from_properties(&described).unwrap();
        assert_eq!(again.cluster, config.cluster, "{pairs:?} -> {described:?}");
    }
}

#[test]
fn cluster_properties_come_from_env_and_toml_too() {
    let env = env_properties(vec![
        ("SLUICE_PROCESS_ROLES".to_owned(), "broker".to_owned()),
        (
            "SLUICE_CONTROLLER_QUORUM_VOTERS".to_owned(),
            THREE_VOTERS.to_owned(),
        ),
        ("SLUICE_BROKER_RACK".to_owned(), "r2".to_owned()),
        ("SLUICE_NODE_ID".to_owned(), "5".to_owned()),
    ]);
    let c = BrokerConfig::from_properties(&env).unwrap().cluster;
    assert_eq!((c.roles.broker, c.roles.controller), (true, false));
    assert_eq!(c.rack.as_deref(), Some("r2"));
    assert_eq!(c.voters.len(), 3);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.toml");
    std::fs::write(
        &path,
        r#""node.id" = 2
process.roles = "broker,controller"
controller.quorum.voters = ["1@127.0.0.1:9093", "2@127.0.0.2:9093", "3@127.0.0.3:9093"]
listeners = ["PLAINTEXT://127.0.0.2:9092", "CONTROLLER://127.0.0.2:9093"]
"controller.quorum.fetch.timeout.ms" = 2000
"#,
    )
    .unwrap();
    let c = BrokerConfig::from_properties(&read_toml_file(&path).unwrap())
        .unwrap()
        .cluster;
    assert_eq!(c.node_id, 2);
    assert_eq!(c.voters.len(), 3);
    assert_eq!(
        c.controller_listener().map(|l| l.host.as_str()),
        Some("127.0.0.2")
    );
    assert_eq!(c.quorum_fetch_timeout_ms, 2000);
}
