//! The cluster part of the broker configuration: the node's roles, the metadata quorum's
//! voters, the named listeners and their security protocols, the rack and the KRaft
//! timeouts, with Kafka's property names and Kafka's cross-property rules.
//!
//! Where the rules come from (Apache Kafka 4.4, checked against its `KafkaConfig` with the
//! same inputs): `KafkaConfig.validateValues` (roles, voters, controller listeners,
//! advertised listeners, inter-broker listener), `SocketServerConfigs.listenerListToEndPoints`
//! (listener syntax, unique names and ports), `QuorumConfig.parseVoterConnections`
//! (`{id}@{host}:{port}`). The messages keep Kafka's wording where Kafka has one, so an
//! operator who knows Kafka recognises them. Where Sluice is stricter or differs, the
//! rule says so in a comment (and docs/cluster.md lists it).
//!
//! This module only parses and validates. What the broker serves is decided at start:
//! [`ClusterConfig::served_listeners`] is the one gate (one client listener on a broker,
//! the controller listener on a voter of a multi-node quorum).
//!
//! Two decisions a reader will ask about:
//! - **The single-node default needs no controller listener.** With `controller.quorum.voters`
//!   unset, the node is the only voter of its quorum. A sole voter elects itself and never
//!   receives a Raft RPC (sluice-quorum runs a single voter without peers), so, unlike
//!   Kafka, a combined node that is the only voter may leave the controller listener out of
//!   `listeners`; zero-config Sluice keeps binding exactly one port. Every other controller
//!   must listen on a controller listener, as in Kafka.
//! - **Raft timeouts.** openraft has an election timeout range `[min, max)` whose `max` is
//!   also the leader lease. `controller.quorum.fetch.timeout.ms` (how long a follower
//!   trusts a silent leader) is `max`; `controller.quorum.election.timeout.ms` (the random
//!   wait before, and between, elections) is `min`. Sluice's defaults (400 / 600 ms) are
//!   the quorum's tested ones, not Kafka's 1000 / 2000 ms: with openraft's lease plus a
//!   random wait, Kafka's values would take 3-4 s to replace a failed controller leader,
//!   against the 2 s the cluster issue sets.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use super::{invalid, parse_num, ConfigError};

/// The two names of `process.roles`.
const BROKER_ROLE: &str = "broker";
const CONTROLLER_ROLE: &str = "controller";

/// What [`ClusterConfig::served_listeners`] found.
#[derive(Debug, Clone)]
pub struct ServedListeners<'a> {
    /// The listeners clients (and other brokers) connect to, in `listeners` order; none
    /// on a controller-only node.
    pub clients: Vec<&'a Listener>,
    /// The controller listener this node binds, on a voter of a multi-node quorum (Raft and
    /// controller requests); `None` on a single node, whose sole voter needs none, and on a
    /// broker-only node, which only dials the voters.
    pub controller: Option<&'a Listener>,
    /// `process.roles`.
    pub roles: ProcessRoles,
}

impl ServedListeners<'_> {
    /// Whether this node is part of a multi-node cluster (a voter of a multi-node quorum,
    /// a broker-only node following one, or a controller-only node), rather than a cluster
    /// of one. Both run the cluster layer.
    pub fn is_cluster(&self) -> bool {
        self.controller.is_some() || self.roles != ProcessRoles::COMBINED
    }
}

/// `process.roles`: what this node does. At least one role is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessRoles {
    /// Serves clients and hosts partitions.
    pub broker: bool,
    /// Votes in the metadata quorum (and may lead it, as the active controller).
    pub controller: bool,
}

impl ProcessRoles {
    /// Both roles: the default, and what a single node runs.
    pub const COMBINED: ProcessRoles = ProcessRoles {
        broker: true,
        controller: true,
    };

    /// Kafka's syntax: a comma-separated list of `broker` and `controller` (lower case, as
    /// Kafka's validator wants; a repeated role counts once, as in Kafka's set).
    fn parse(text: &str) -> Result<ProcessRoles, ConfigError> {
        const NAME: &str = "process.roles";
        let mut roles = ProcessRoles {
            broker: false,
            controller: false,
        };
        for role in csv(text) {
            match role {
                BROKER_ROLE => roles.broker = true,
                CONTROLLER_ROLE => roles.controller = true,
                other => {
                    return Err(invalid(
                        NAME,
                        text,
                        format!(
                            "Unknown process role '{other}' (only 'broker' and 'controller' are allowed roles)"
                        ),
                    ))
                }
            }
        }
        if !roles.broker && !roles.controller {
            return Err(invalid(
                NAME,
                text,
                "must not be empty; valid values: broker, controller",
            ));
        }
        Ok(roles)
    }
}

impl fmt::Display for ProcessRoles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.broker, self.controller) {
            (true, true) => f.write_str("broker,controller"),
            (true, false) => f.write_str(BROKER_ROLE),
            (false, true) => f.write_str(CONTROLLER_ROLE),
            (false, false) => Ok(()),
        }
    }
}

/// Kafka's security protocols. Only [`SecurityProtocol::Plaintext`] is served; a listener
/// that uses another one is refused when the configuration is parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    const ALL: [SecurityProtocol; 4] = [
        SecurityProtocol::Plaintext,
        SecurityProtocol::Ssl,
        SecurityProtocol::SaslPlaintext,
        SecurityProtocol::SaslSsl,
    ];

    /// Kafka's name (`SecurityProtocol.name`).
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    /// Case-insensitive, as Kafka's map parser upper-cases the protocol.
    fn parse(text: &str) -> Option<SecurityProtocol> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(text.trim()))
    }
}

impl fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A host and a port. The host is a name, an IPv4 address, or an IPv6 address (kept
/// without brackets; [`fmt::Display`] adds them).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

impl HostPort {
    /// `host:port` or `[ipv6]:port`. The host may be empty (Kafka: bind every interface);
    /// callers that need one check. Host characters are Kafka's (`[0-9a-zA-Z-%._:]`).
    fn parse(text: &str) -> Result<HostPort, String> {
        const FORM: &str = "expected HOST:PORT (IPv6 addresses in brackets: [::1]:9092)";
        let text = text.trim();
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (host, after) = rest.split_once(']').ok_or(FORM)?;
            let port = after.strip_prefix(':').ok_or(FORM)?;
            if host.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(format!("{host} in brackets is not an IPv6 address"));
            }
            (host, port)
        } else {
            let (host, port) = text.rsplit_once(':').ok_or(FORM)?;
            if host.contains(':') {
                return Err(FORM.to_owned());
            }
            (host, port)
        };
        if let Some(bad) = host
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '%' | '.' | '_' | ':')))
        {
            return Err(format!("{bad:?} cannot be part of a host"));
        }
        let port = port
            .parse::<u16>()
            .map_err(|_| format!("port {port:?} is not a number from 0 to 65535"))?;
        Ok(HostPort {
            host: host.to_owned(),
            port,
        })
    }

    fn is_ipv6(&self) -> bool {
        self.host.contains(':')
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_ipv6() {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// One entry of `listeners` or `advertised.listeners`: `NAME://HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// The listener name, upper-cased (Kafka's `ListenerName.normalised`).
    pub name: String,
    /// Empty in `listeners` means every interface, as in Kafka.
    pub host: String,
    /// 0 in `listeners` picks a free port.
    pub port: u16,
    /// From `listener.security.protocol.map`.
    pub security_protocol: SecurityProtocol,
}

impl Listener {
    pub fn address(&self) -> HostPort {
        HostPort {
            host: self.host.clone(),
            port: self.port,
        }
    }

    /// What to bind: `HOST:PORT`, with `0.0.0.0` for an empty host (every interface).
    pub fn bind_address(&self) -> String {
        if self.host.is_empty() {
            format!("0.0.0.0:{}", self.port)
        } else {
            self.address().to_string()
        }
    }
}

impl fmt::Display for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.name, self.address())
    }
}

/// The timeouts of the metadata quorum's Raft, derived from Kafka's two quorum properties
/// (see the module doc): what sluice-quorum's `QuorumConfig` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaftTimeouts {
    /// The leader's heartbeat period: 3/8 of `election_timeout_min` (150 ms by default),
    /// so several heartbeats fit in a lease and it stays below the minimum, as openraft
    /// requires.
    pub heartbeat_interval: Duration,
    /// `controller.quorum.election.timeout.ms`.
    pub election_timeout_min: Duration,
    /// `controller.quorum.fetch.timeout.ms` (also the leader lease).
    pub election_timeout_max: Duration,
}

/// The node's place in a cluster. Parsed by [`super::BrokerConfig::from_properties`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// `process.roles`.
    pub roles: ProcessRoles,
    /// `node.id` (the same as [`super::BrokerConfig::node_id`]).
    pub node_id: i32,
    /// `controller.quorum.voters`: voter id -> controller address. Never empty. Unset, it
    /// is this node alone, with no address (`None`): a sole voter is never contacted by
    /// another voter, and a broker-only node that follows it names the address in its own
    /// `controller.quorum.voters`. Explicit entries always have an address.
    pub voters: BTreeMap<i32, Option<HostPort>>,
    /// `listeners`, in the configured order. Never empty.
    pub listeners: Vec<Listener>,
    /// `advertised.listeners` as configured; empty when unset (the broker then advertises
    /// the address it bound).
    pub advertised_listeners: Vec<Listener>,
    /// `listener.security.protocol.map`, keys upper-cased; when not set explicitly, Kafka's
    /// default plus `NAME:PLAINTEXT` for every controller listener name.
    pub security_protocol_map: BTreeMap<String, SecurityProtocol>,
    /// `controller.listener.names`, upper-cased. A broker-only node uses the first to reach
    /// the controllers (as Kafka does).
    pub controller_listener_names: Vec<String>,
    /// `inter.broker.listener.name`, upper-cased.
    pub inter_broker_listener_name: String,
    /// `broker.rack`.
    pub rack: Option<String>,
    /// `broker.session.timeout.ms`: heartbeat silence after which the controller fences a
    /// broker.
    pub broker_session_timeout_ms: u64,
    /// `broker.heartbeat.interval.ms`: how often a broker heartbeats the controller.
    pub broker_heartbeat_interval_ms: u64,
    /// `controller.quorum.election.timeout.ms`.
    pub quorum_election_timeout_ms: u64,
    /// `controller.quorum.fetch.timeout.ms`.
    pub quorum_fetch_timeout_ms: u64,
    /// Whether `controller.quorum.voters` was set (for DescribeConfigs).
    voters_explicit: bool,
}

impl ClusterConfig {
    /// Whether this node has the broker role.
    pub fn is_broker(&self) -> bool {
        self.roles.broker
    }

    /// Whether this node has the controller role (is a voter of the metadata quorum).
    pub fn is_controller(&self) -> bool {
        self.roles.controller
    }

    /// Whether this node is the only voter of its quorum: it forms the quorum alone and
    /// needs no other controller. (Broker-only nodes may still follow it.)
    pub fn single_node(&self) -> bool {
        self.voters.len() == 1 && self.voters.contains_key(&self.node_id)
    }

    /// Whether `name` is one of `controller.listener.names`.
    pub fn is_controller_listener(&self, name: &str) -> bool {
        self.controller_listener_names.iter().any(|n| n == name)
    }

    /// The listeners that serve clients and other brokers: `listeners` without the
    /// controller listeners.
    pub fn client_listeners(&self) -> impl Iterator<Item = &Listener> {
        self.listeners
            .iter()
            .filter(|l| !self.is_controller_listener(&l.name))
    }

    /// The controller listener this node binds for Raft RPCs: the first listener named in
    /// `controller.listener.names`. `None` on a broker-only node and on a sole voter that
    /// configured none.
    pub fn controller_listener(&self) -> Option<&Listener> {
        self.controller_listener_names
            .iter()
            .find_map(|name| self.listeners.iter().find(|l| &l.name == name))
    }

    /// The listener other brokers connect to (replication, forwarding): the
    /// `inter.broker.listener.name` one. `None` on a controller-only node.
    pub fn inter_broker_listener(&self) -> Option<&Listener> {
        if !self.is_broker() {
            return None;
        }
        self.listeners
            .iter()
            .find(|l| l.name == self.inter_broker_listener_name)
    }

    /// The configured advertised address of the listener `name`; `None` when not
    /// configured (the broker then advertises what it bound).
    pub fn advertised_listener(&self, name: &str) -> Option<&Listener> {
        self.advertised_listeners.iter().find(|l| l.name == name)
    }

    /// The security protocol a broker-only node uses to reach the controllers: that of
    /// the first controller listener name.
    pub fn controller_security_protocol(&self) -> Option<SecurityProtocol> {
        let name = self.controller_listener_names.first()?;
        self.security_protocol_map.get(name).copied()
    }

    /// The metadata quorum's Raft timeouts.
    pub fn raft_timeouts(&self) -> RaftTimeouts {
        let min = self.quorum_election_timeout_ms;
        RaftTimeouts {
            heartbeat_interval: Duration::from_millis((min * 3 / 8).max(1)),
            election_timeout_min: Duration::from_millis(min),
            election_timeout_max: Duration::from_millis(self.quorum_fetch_timeout_ms),
        }
    }

    /// The listeners this build serves for this configuration, or why it cannot serve it
    /// yet:
    /// - a combined node (both roles): its client listeners, plus, when other voters are
    ///   named, its controller listener (a single node, its own sole voter, binds none);
    /// - a broker-only node: its client listeners; it binds no controller listener and
    ///   reaches the voters at their `controller.quorum.voters` addresses;
    /// - a controller-only node: its controller listener only.
    ///
    /// Other brokers reach this one on `inter.broker.listener.name`, which must be a
    /// PLAINTEXT listener in a multi-node cluster: the follower fetcher does not speak
    /// TLS or SASL yet.
    pub fn served_listeners(&self) -> Result<ServedListeners<'_>, ConfigError> {
        let not_wired = |reason: String| Err(ConfigError::ClusterNotWired(reason));
        if !self.is_broker() {
            // Validation made sure it listens on controller listeners only, and on one.
            let Some(controller) = self.controller_listener() else {
                return not_wired("a controller-only node needs a controller listener".to_owned());
            };
            return Ok(ServedListeners {
                clients: Vec::new(),
                controller: Some(controller),
                roles: self.roles,
            });
        }
        let clients: Vec<&Listener> = self.client_listeners().collect();
        if clients.is_empty() {
            return not_wired(format!(
                "listeners={} has no client listener",
                join(&self.listeners)
            ));
        }
        let multi_node = !self.single_node() || !self.is_controller();
        if multi_node {
            if let Some(inter) = self
                .inter_broker_listener()
                .filter(|l| l.security_protocol != SecurityProtocol::Plaintext)
            {
                return Err(ConfigError::NotSupported(format!(
                    "inter.broker.listener.name={} uses security protocol {}; brokers reach each \
                     other over PLAINTEXT only (name a PLAINTEXT listener for them)",
                    inter.name, inter.security_protocol
                )));
            }
        }
        if !self.is_controller() {
            return Ok(ServedListeners {
                clients,
                controller: None,
                roles: self.roles,
            });
        }
        if self.single_node() {
            if clients.len() < self.listeners.len() {
                return not_wired(format!(
                    "listeners={} (a single node, its own sole voter, binds no controller listener)",
                    join(&self.listeners)
                ));
            }
            return Ok(ServedListeners {
                clients,
                controller: None,
                roles: self.roles,
            });
        }
        let Some(controller) = self.controller_listener() else {
            return not_wired(
                "a controller of a multi-node quorum needs a controller listener".to_owned(),
            );
        };
        Ok(ServedListeners {
            clients,
            controller: Some(controller),
            roles: self.roles,
        })
    }

    /// `controller.quorum.voters` as Kafka writes it; empty when unset.
    pub fn voters_text(&self) -> String {
        if !self.voters_explicit {
            return String::new();
        }
        self.voters
            .iter()
            .filter_map(|(id, addr)| addr.as_ref().map(|a| format!("{id}@{a}")))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Every cluster property with its effective value, for DescribeConfigs.
    pub fn describe(&self) -> Vec<(String, String)> {
        let map = self
            .security_protocol_map
            .iter()
            .map(|(name, p)| format!("{name}:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        vec![
            ("process.roles".to_owned(), self.roles.to_string()),
            ("controller.quorum.voters".to_owned(), self.voters_text()),
            ("listeners".to_owned(), join(&self.listeners)),
            (
                "advertised.listeners".to_owned(),
                join(&self.advertised_listeners),
            ),
            ("listener.security.protocol.map".to_owned(), map),
            (
                "controller.listener.names".to_owned(),
                self.controller_listener_names.join(","),
            ),
            (
                "inter.broker.listener.name".to_owned(),
                self.inter_broker_listener_name.clone(),
            ),
            (
                "broker.rack".to_owned(),
                self.rack.clone().unwrap_or_default(),
            ),
            (
                "broker.session.timeout.ms".to_owned(),
                self.broker_session_timeout_ms.to_string(),
            ),
            (
                "broker.heartbeat.interval.ms".to_owned(),
                self.broker_heartbeat_interval_ms.to_string(),
            ),
            (
                "controller.quorum.election.timeout.ms".to_owned(),
                self.quorum_election_timeout_ms.to_string(),
            ),
            (
                "controller.quorum.fetch.timeout.ms".to_owned(),
                self.quorum_fetch_timeout_ms.to_string(),
            ),
        ]
    }

    /// Parses and validates the cluster properties. `get` gives a property set explicitly
    /// (non-empty), `value` its value or default.
    pub(super) fn parse<'a>(
        node_id: i32,
        get: &dyn Fn(&str) -> Option<&'a str>,
        value: &dyn Fn(&'static str) -> &'a str,
    ) -> Result<ClusterConfig, ConfigError> {
        let roles = ProcessRoles::parse(value("process.roles"))?;

        let controller_listener_names = parse_names(
            "controller.listener.names",
            value("controller.listener.names"),
        )?;
        let map_explicit = get("listener.security.protocol.map").is_some();
        let mut security_protocol_map =
            parse_protocol_map(value("listener.security.protocol.map"))?;
        if !map_explicit {
            // Kafka (KafkaConfig.effectiveListenerSecurityProtocolMap): with the default map,
            // controller listeners are PLAINTEXT unless named otherwise.
            for name in &controller_listener_names {
                security_protocol_map
                    .entry(name.clone())
                    .or_insert(SecurityProtocol::Plaintext);
            }
        }

        let listeners = parse_listeners("listeners", value("listeners"), &security_protocol_map)?;
        if listeners.is_empty() {
            return Err(invalid(
                "listeners",
                value("listeners"),
                "at least one listener is needed",
            ));
        }
        check_distinct(
            "listeners",
            value("listeners"),
            &listeners,
            DistinctPorts::Yes,
        )?;
        let advertised_listeners = match get("advertised.listeners") {
            Some(text) => {
                let advertised =
                    parse_listeners("advertised.listeners", text, &security_protocol_map)?;
                // Ports may repeat here (Kafka: one listener may advertise another's address).
                check_distinct("advertised.listeners", text, &advertised, DistinctPorts::No)?;
                for l in &advertised {
                    check_advertisable(text, l)?;
                }
                advertised
            }
            None => Vec::new(),
        };

        let inter_broker_explicit = get("inter.broker.listener.name").is_some();
        let inter_broker_listener_name = normalise_name(
            "inter.broker.listener.name",
            value("inter.broker.listener.name"),
        )?;

        let (voters, voters_explicit) = match get("controller.quorum.voters") {
            Some(text) => (parse_voters(text)?, true),
            None => (BTreeMap::from([(node_id, None)]), false),
        };

        let rack = get("broker.rack").map(|r| r.trim().to_owned());

        let positive_ms = |name: &'static str| -> Result<u64, ConfigError> {
            let ms: u64 = parse_num(name, value(name))?;
            if ms == 0 {
                return Err(invalid(name, value(name), "must be >= 1"));
            }
            Ok(ms)
        };
        let broker_session_timeout_ms = positive_ms("broker.session.timeout.ms")?;
        let broker_heartbeat_interval_ms = positive_ms("broker.heartbeat.interval.ms")?;
        let quorum_election_timeout_ms = positive_ms("controller.quorum.election.timeout.ms")?;
        let quorum_fetch_timeout_ms = positive_ms("controller.quorum.fetch.timeout.ms")?;

        let config = ClusterConfig {
            roles,
            node_id,
            voters,
            listeners,
            advertised_listeners,
            security_protocol_map,
            controller_listener_names,
            inter_broker_listener_name,
            rack,
            broker_session_timeout_ms,
            broker_heartbeat_interval_ms,
            quorum_election_timeout_ms,
            quorum_fetch_timeout_ms,
            voters_explicit,
        };
        config.check_roles_and_voters()?;
        config.check_controller_listeners(inter_broker_explicit)?;
        config.check_broker_listeners()?;
        config.check_timeouts()?;
        Ok(config)
    }

    fn voter_ids(&self) -> String {
        let ids: Vec<String> = self.voters.keys().map(i32::to_string).collect();
        format!("[{}]", ids.join(", "))
    }

    /// Kafka: a controller is a voter; a broker-only node is not, and needs voters to follow.
    fn check_roles_and_voters(&self) -> Result<(), ConfigError> {
        let id = self.node_id;
        if self.is_controller() && !self.voters.contains_key(&id) {
            return Err(inconsistent(format!(
                "If process.roles contains the 'controller' role, the node id {id} must be \
                 included in the set of voters controller.quorum.voters={}",
                self.voter_ids()
            )));
        }
        if !self.is_controller() {
            if !self.voters_explicit {
                // Kafka: "either controller.quorum.bootstrap.servers ... or
                // controller.quorum.voters must contain a parseable set of controllers";
                // Sluice has no bootstrap servers (dynamic quorums), so voters it is.
                return Err(inconsistent(
                    "process.roles=broker needs controller.quorum.voters: the controllers this \
                     broker follows, as {id}@{host}:{port},..."
                        .to_owned(),
                ));
            }
            if self.voters.contains_key(&id) {
                return Err(inconsistent(format!(
                    "If process.roles contains just the 'broker' role, the node id {id} must not \
                     be included in the set of voters controller.quorum.voters={}",
                    self.voter_ids()
                )));
            }
        }
        Ok(())
    }

    /// Kafka's rules on `controller.listener.names` for each role, with one exemption: a
    /// combined node that is the only voter needs no controller listener (module doc).
    fn check_controller_listeners(&self, inter_broker_explicit: bool) -> Result<(), ConfigError> {
        let in_listeners: Vec<&Listener> = self
            .listeners
            .iter()
            .filter(|l| self.is_controller_listener(&l.name))
            .collect();
        let all_named_listen = self
            .controller_listener_names
            .iter()
            .all(|name| self.listeners.iter().any(|l| &l.name == name));
        if !self.is_controller() {
            if self.controller_listener_names.is_empty() {
                return Err(inconsistent(
                    "controller.listener.names must contain at least one value when running \
                     KRaft with just the broker role"
                        .to_owned(),
                ));
            }
            if !in_listeners.is_empty() {
                return Err(inconsistent(format!(
                    "controller.listener.names must not contain a value appearing in the \
                     'listeners' configuration when running KRaft with just the broker role \
                     ({} is a controller listener; only controllers listen on it)",
                    in_listeners[0].name
                )));
            }
            if let Some(name) = self
                .controller_listener_names
                .iter()
                .find(|name| !self.security_protocol_map.contains_key(*name))
            {
                return Err(inconsistent(format!(
                    "Controller listener with name {name} defined in controller.listener.names \
                     not found in listener.security.protocol.map (an explicit security mapping \
                     for each controller listener is required if listener.security.protocol.map \
                     is set)"
                )));
            }
            // Only the first is used to reach the controllers (as in Kafka).
            let first = &self.controller_listener_names[0];
            if let Some(&other) = self
                .security_protocol_map
                .get(first)
                .filter(|p| **p != SecurityProtocol::Plaintext)
            {
                return Err(ConfigError::NotSupported(format!(
                    "controller listener {first} uses security protocol {other}; only PLAINTEXT \
                     is served"
                )));
            }
            return Ok(());
        }
        if !self.is_broker() {
            if in_listeners.len() != self.listeners.len() {
                return Err(inconsistent(
                    "The listeners config must only contain KRaft controller listeners from \
                     controller.listener.names when process.roles=controller"
                        .to_owned(),
                ));
            }
            if inter_broker_explicit
                && self.is_controller_listener(&self.inter_broker_listener_name)
            {
                return Err(inconsistent(
                    "controller.listener.names must not contain an explicitly set \
                     inter.broker.listener.name configuration value when process.roles=controller"
                        .to_owned(),
                ));
            }
        }
        if in_listeners.is_empty() {
            // Sluice's exemption: a combined sole voter talks to no other voter.
            if self.is_broker() && self.single_node() {
                return Ok(());
            }
            return Err(inconsistent(
                "controller.listener.names must contain at least one value appearing in the \
                 'listeners' configuration when running the KRaft controller role (the other \
                 voters reach this one there)"
                    .to_owned(),
            ));
        }
        if !all_named_listen {
            return Err(inconsistent(
                "controller.listener.names must only contain values appearing in the 'listeners' \
                 configuration when running the KRaft controller role"
                    .to_owned(),
            ));
        }
        Ok(())
    }

    /// Advertised listeners and the inter-broker listener.
    fn check_broker_listeners(&self) -> Result<(), ConfigError> {
        let listener_names: BTreeSet<&str> =
            self.listeners.iter().map(|l| l.name.as_str()).collect();
        // Kafka 3.x refused this; Kafka 4 accepts it (controllers may advertise their
        // endpoint for dynamic quorums, KIP-853), which Sluice does not have: clients only
        // ever talk to brokers, so advertising a controller listener is a mistake.
        if let Some(l) = self
            .advertised_listeners
            .iter()
            .find(|l| self.is_controller_listener(&l.name))
        {
            return Err(inconsistent(format!(
                "advertised.listeners must not contain KRaft controller listeners from \
                 controller.listener.names ({}): clients send requests only to brokers",
                l.name
            )));
        }
        let advertised_names: BTreeSet<&str> = self
            .advertised_listeners
            .iter()
            .map(|l| l.name.as_str())
            .collect();
        if !advertised_names.is_subset(&listener_names) {
            return Err(inconsistent(format!(
                "advertised.listeners listener names must be equal to or a subset of the ones \
                 defined in listeners. Found {}. The valid options based on the current \
                 configuration are {}",
                names(&advertised_names),
                names(&listener_names)
            )));
        }
        if !self.is_broker() {
            return Ok(());
        }
        // Kafka's effective advertised broker listeners: the advertised ones if set, else
        // the listeners without the controller listeners.
        let effective: BTreeSet<&str> = if self.advertised_listeners.is_empty() {
            self.client_listeners().map(|l| l.name.as_str()).collect()
        } else {
            advertised_names
        };
        if effective.is_empty() {
            return Err(inconsistent(
                "There must be at least one broker advertised listener. Perhaps all listeners \
                 appear in controller.listener.names?"
                    .to_owned(),
            ));
        }
        if !effective.contains(self.inter_broker_listener_name.as_str()) {
            return Err(inconsistent(format!(
                "inter.broker.listener.name must be a listener name defined in \
                 advertised.listeners. The valid options based on currently configured \
                 listeners are {}",
                names(&effective)
            )));
        }
        Ok(())
    }

    fn check_timeouts(&self) -> Result<(), ConfigError> {
        // Kafka 4.4 only logs this at ERROR level; a broker that heartbeats less than twice
        // per session would be fenced by a single late heartbeat, so Sluice refuses it.
        if self.broker_heartbeat_interval_ms > self.broker_session_timeout_ms / 2 {
            return Err(inconsistent(format!(
                "broker.heartbeat.interval.ms ({} ms) must be less than or equal to half of the \
                 broker.session.timeout.ms ({} ms)",
                self.broker_heartbeat_interval_ms, self.broker_session_timeout_ms
            )));
        }
        // Raft needs a heartbeat (3/8 of it, at least 1 ms) below the minimum.
        if self.quorum_election_timeout_ms < 10 {
            return Err(invalid(
                "controller.quorum.election.timeout.ms",
                &self.quorum_election_timeout_ms.to_string(),
                "must be >= 10",
            ));
        }
        // Not a Kafka rule (Kafka's two timeouts are independent); here they are the two
        // ends of Raft's election timeout range.
        if self.quorum_election_timeout_ms >= self.quorum_fetch_timeout_ms {
            return Err(inconsistent(format!(
                "controller.quorum.election.timeout.ms ({} ms) must be less than \
                 controller.quorum.fetch.timeout.ms ({} ms): they are the two ends of the Raft \
                 election timeout range",
                self.quorum_election_timeout_ms, self.quorum_fetch_timeout_ms
            )));
        }
        Ok(())
    }
}

fn inconsistent(message: String) -> ConfigError {
    ConfigError::Inconsistent(message)
}

/// Kafka's `Csv.parseCsvList`: trimmed, empty entries dropped.
fn csv(text: &str) -> impl Iterator<Item = &str> {
    text.split(',').map(str::trim).filter(|s| !s.is_empty())
}

fn join<T: fmt::Display>(items: &[T]) -> String {
    items.iter().map(T::to_string).collect::<Vec<_>>().join(",")
}

fn names(set: &BTreeSet<&str>) -> String {
    set.iter().copied().collect::<Vec<_>>().join(",")
}

/// A listener name, upper-cased as Kafka's `ListenerName.normalised`, so `controller` and
/// `CONTROLLER` are one name in every property (Kafka normalises only some of them).
fn normalise_name(property: &str, name: &str) -> Result<String, ConfigError> {
    let name = name.trim();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(invalid(
            property,
            name,
            "a listener name is letters, digits, '_' and '-'",
        ));
    }
    Ok(name.to_ascii_uppercase())
}

/// A comma-separated list of listener names, each at most once.
fn parse_names(property: &str, text: &str) -> Result<Vec<String>, ConfigError> {
    let mut out: Vec<String> = Vec::new();
    for name in csv(text) {
        let name = normalise_name(property, name)?;
        if out.contains(&name) {
            return Err(invalid(property, text, format!("{name} is listed twice")));
        }
        out.push(name);
    }
    Ok(out)
}

/// `listener.security.protocol.map`: `NAME:PROTOCOL,...`.
fn parse_protocol_map(text: &str) -> Result<BTreeMap<String, SecurityProtocol>, ConfigError> {
    const NAME: &str = "listener.security.protocol.map";
    let mut map = BTreeMap::new();
    for entry in csv(text) {
        let (name, protocol) = entry
            .split_once(':')
            .ok_or_else(|| invalid(NAME, entry, "expected LISTENER_NAME:SECURITY_PROTOCOL"))?;
        let name = normalise_name(NAME, name)?;
        let protocol = SecurityProtocol::parse(protocol).ok_or_else(|| {
            invalid(
                NAME,
                entry,
                format!(
                    "Invalid security protocol `{}` (PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL)",
                    protocol.trim()
                ),
            )
        })?;
        // Kafka keeps the last of two entries for one name; two are a mistake.
        if map.insert(name.clone(), protocol).is_some() {
            return Err(invalid(NAME, text, format!("{name} is mapped twice")));
        }
    }
    Ok(map)
}

/// `listeners` / `advertised.listeners`: `NAME://HOST:PORT,...`. Sluice also accepts a
/// bare `HOST:PORT` (what `listeners` meant before it had names) as a PLAINTEXT listener.
fn parse_listeners(
    property: &str,
    text: &str,
    map: &BTreeMap<String, SecurityProtocol>,
) -> Result<Vec<Listener>, ConfigError> {
    let mut out = Vec::new();
    for entry in csv(text) {
        let (name, address) = match entry.split_once("://") {
            Some((name, address)) => (normalise_name(property, name)?, address),
            None => (SecurityProtocol::Plaintext.as_str().to_owned(), entry),
        };
        let address =
            HostPort::parse(address).map_err(|reason| invalid(property, entry, reason))?;
        let security_protocol = *map.get(&name).ok_or_else(|| {
            invalid(
                property,
                entry,
                format!(
                    "No security protocol defined for listener {name} (name it in \
                     listener.security.protocol.map)"
                ),
            )
        })?;
        out.push(Listener {
            name,
            host: address.host,
            port: address.port,
            security_protocol,
        });
    }
    Ok(out)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum DistinctPorts {
    Yes,
    No,
}

/// Kafka's `SocketServerConfigs.validate`: unique names; in `listeners` also unique ports,
/// except port 0 (a free port each) and one IPv4 plus one IPv6 listener on a port.
fn check_distinct(
    property: &str,
    text: &str,
    listeners: &[Listener],
    ports: DistinctPorts,
) -> Result<(), ConfigError> {
    let mut seen = BTreeSet::new();
    for l in listeners {
        if !seen.insert(l.name.as_str()) {
            return Err(invalid(
                property,
                text,
                format!(
                    "Each listener must have a different name ({} twice)",
                    l.name
                ),
            ));
        }
    }
    if ports == DistinctPorts::No {
        return Ok(());
    }
    let mut by_port: BTreeMap<u16, Vec<&Listener>> = BTreeMap::new();
    for l in listeners.iter().filter(|l| l.port != 0) {
        by_port.entry(l.port).or_default().push(l);
    }
    for (port, on_port) in by_port {
        let ipv4_and_ipv6 = on_port.len() == 2 && {
            let v6 = |l: &Listener| l.host.parse::<IpAddr>().ok().map(|ip| ip.is_ipv6());
            matches!(
                (v6(on_port[0]), v6(on_port[1])),
                (Some(true), Some(false)) | (Some(false), Some(true))
            )
        };
        if on_port.len() > 1 && !ipv4_and_ipv6 {
            return Err(invalid(
                property,
                text,
                format!(
                    "Each listener must have a different port unless exactly one listener has an \
                     IPv4 address and the other IPv6 address (port {port})"
                ),
            ));
        }
    }
    Ok(())
}

/// An advertised address is one a client can connect to.
fn check_advertisable(text: &str, l: &Listener) -> Result<(), ConfigError> {
    const NAME: &str = "advertised.listeners";
    if l.host.parse::<IpAddr>().is_ok_and(|ip| ip.is_unspecified()) {
        return Err(invalid(
            NAME,
            text,
            format!(
                "advertised.listeners cannot use the nonroutable meta-address {}. Use a routable IP address.",
                l.host
            ),
        ));
    }
    // Kafka advertises the machine's canonical host name for an empty host; Sluice asks
    // for the name, which is what clients will resolve.
    if l.host.is_empty() {
        return Err(invalid(
            NAME,
            text,
            format!("listener {} needs a host clients can resolve", l.name),
        ));
    }
    if l.port == 0 {
        return Err(invalid(
            NAME,
            text,
            format!("listener {}: clients cannot connect to port 0", l.name),
        ));
    }
    Ok(())
}

/// `controller.quorum.voters`: `{id}@{host}:{port},...`, distinct ids and addresses.
fn parse_voters(text: &str) -> Result<BTreeMap<i32, Option<HostPort>>, ConfigError> {
    const NAME: &str = "controller.quorum.voters";
    const FORM: &str = "Each entry should be in the form `{id}@{host}:{port}`";
    let mut voters = BTreeMap::new();
    let mut addresses: BTreeMap<HostPort, i32> = BTreeMap::new();
    for entry in csv(text) {
        let (id, address) = entry
            .split_once('@')
            .ok_or_else(|| invalid(NAME, entry, FORM))?;
        let id: i32 = id.trim().parse().map_err(|_| {
            invalid(
                NAME,
                entry,
                format!("Failed to parse voter ID as an integer from {}", id.trim()),
            )
        })?;
        if id < 0 {
            return Err(invalid(NAME, entry, "a voter id is a node.id, >= 0"));
        }
        let address =
            HostPort::parse(address).map_err(|r| invalid(NAME, entry, format!("{r}; {FORM}")))?;
        if address.host.is_empty() {
            return Err(invalid(NAME, entry, format!("the host is missing; {FORM}")));
        }
        // Kafka accepts these; the other voters dial the address, so it must be one.
        if address.port == 0 {
            return Err(invalid(NAME, entry, "voters cannot be reached on port 0"));
        }
        if address
            .host
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_unspecified())
        {
            return Err(invalid(
                NAME,
                entry,
                "the other voters cannot connect to a wildcard address",
            ));
        }
        if let Some(other) = addresses.insert(address.clone(), id) {
            if other != id {
                return Err(invalid(
                    NAME,
                    text,
                    format!("voters {other} and {id} have the same address {address}"),
                ));
            }
        }
        // Kafka keeps the last of two entries for one id; two are a mistake.
        if voters.insert(id, Some(address)).is_some() {
            return Err(invalid(NAME, text, format!("voter {id} is listed twice")));
        }
    }
    if voters.is_empty() {
        return Err(invalid(NAME, text, FORM));
    }
    Ok(voters)
}

// Each rule is tested with an accepted and a refused configuration, through the whole
// parser (BrokerConfig::from_properties), so defaults and layering take part too.
#[cfg(test)]
#[path = "cluster_tests.rs"]
mod tests;
