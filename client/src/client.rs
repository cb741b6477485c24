//! [`Client`]: what producers, consumers and admins share.
//!
//! - Bootstrap: any of several `host:port` addresses; after the first Metadata answer the
//!   cluster's advertised brokers are used.
//! - Connections: at most one per broker address, opened on first use and replaced after
//!   a failure. Requests on one connection are pipelined (see [`crate::connection`]).
//! - Metadata: a cache ([`Metadata`]) refreshed on demand, on errors that say it is stale
//!   and when older than `metadata_max_age`.
//! - Retries: [`Client::retry`] repeats an operation on retriable errors with exponential
//!   backoff (`retry_backoff` doubling up to `retry_backoff_max`, with jitter) until
//!   `api_timeout` has passed.
//!
//! `Client` is a cheap handle (`Arc` inside); clone it freely.

use crate::security::{Security, SecurityConfig};
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_request::FindCoordinatorRequest;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{MetadataRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use rand::Rng;

use crate::connection::{Connection, ConnectionConfig};
use crate::error::{Error, Result};
use crate::metadata::{Metadata, TopicInfo, TopicProblem};

/// Settings shared by everything built on one [`Client`].
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Brokers to ask for the cluster's metadata first (`host:port`).
    pub bootstrap: Vec<String>,
    /// Sent with every request; shows up in broker logs and group descriptions.
    pub client_id: String,
    /// Limit for opening one TCP connection.
    pub connect_timeout: Duration,
    /// Limit for one request's answer.
    pub request_timeout: Duration,
    /// First pause before a retry; doubles per attempt.
    pub retry_backoff: Duration,
    /// Longest pause between retries.
    pub retry_backoff_max: Duration,
    /// How long [`Client::retry`] keeps retrying one operation.
    pub api_timeout: Duration,
    /// Cached topic metadata older than this is refreshed before use.
    pub metadata_max_age: Duration,
    /// `security.protocol`, TLS files and SASL credentials.
    pub security: SecurityConfig,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            bootstrap: vec!["127.0.0.1:9092".to_owned()],
            client_id: "sluice".to_owned(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_secs(1),
            api_timeout: Duration::from_secs(60),
            metadata_max_age: Duration::from_secs(300),
            security: SecurityConfig::default(),
        }
    }
}

impl ClientConfig {
    /// Defaults with the given bootstrap list: `host:port[,host:port...]`.
    pub fn new(bootstrap: &str) -> Self {
        ClientConfig {
            bootstrap: bootstrap
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            ..ClientConfig::default()
        }
    }
}

type Slot = Arc<tokio::sync::Mutex<Option<Arc<Connection>>>>;

struct Inner {
    config: ClientConfig,
    connection_config: ConnectionConfig,
    metadata: Mutex<Metadata>,
    /// Bumped on every change of `metadata`, so that caches of it (the producer's
    /// routes) know when to look again without taking the lock per record.
    metadata_generation: AtomicU64,
    /// One slot per address; the async lock makes concurrent callers share one connect.
    slots: Mutex<HashMap<String, Slot>>,
    /// Group id -> coordinator broker id and address.
    coordinators: Mutex<HashMap<String, (i32, String)>>,
}

/// A handle on a Kafka cluster; see the module docs.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("bootstrap", &self.inner.config.bootstrap)
            .finish()
    }
}

impl Client {
    /// A client that connects lazily, on its first request.
    pub fn new(config: ClientConfig) -> Result<Client> {
        if config.bootstrap.is_empty() {
            return Err(Error::InvalidArgument(
                "no bootstrap address given (expected host:port)".into(),
            ));
        }
        for addr in &config.bootstrap {
            if !addr.contains(':') {
                return Err(Error::InvalidArgument(format!(
                    "bootstrap address {addr:?} has no port (expected host:port)"
                )));
            }
        }
        let connection_config = ConnectionConfig {
            security: Security::new(&config.security)?,
            client_id: config.client_id.clone(),
            connect_timeout: config.connect_timeout,
            request_timeout: config.request_timeout,
        };
        Ok(Client {
            inner: Arc::new(Inner {
                config,
                connection_config,
                metadata: Mutex::new(Metadata::default()),
                metadata_generation: AtomicU64::new(0),
                slots: Mutex::new(HashMap::new()),
                coordinators: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// A client that has fetched the cluster's broker list once, so an unreachable
    /// cluster is reported here, at once, rather than on first use.
    pub async fn connect(config: ClientConfig) -> Result<Client> {
        let client = Client::new(config)?;
        client.refresh_metadata(Some(&[]), false).await?;
        Ok(client)
    }

    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// Runs `f` on the cached metadata (no I/O).
    pub fn with_metadata<T>(&self, f: impl FnOnce(&Metadata) -> T) -> T {
        f(&self
            .inner
            .metadata
            .lock()
            .unwrap_or_else(|p| p.into_inner()))
    }

    /// Changes whenever the cached metadata changes (see [`Client::with_metadata`]).
    pub fn metadata_generation(&self) -> u64 {
        self.inner.metadata_generation.load(Ordering::Acquire)
    }

    fn metadata_mut<T>(&self, f: impl FnOnce(&mut Metadata) -> T) -> T {
        let mut metadata = self
            .inner
            .metadata
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let result = f(&mut metadata);
        // Bumped under the lock: a reader that sees the new generation and then takes
        // the lock sees the new metadata.
        self.inner
            .metadata_generation
            .fetch_add(1, Ordering::AcqRel);
        result
    }

    /// The connection to `addr`, opening it if needed.
    pub async fn connection_to(&self, addr: &str) -> Result<Arc<Connection>> {
        self.connection_on(addr, "").await
    }

    /// A name for a private set of connections (see [`Client::connection_on`]).
    pub fn new_channel(&self, purpose: &str) -> String {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        format!("{purpose}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
    }

    /// The connection to `addr` on `channel`: `""` is the shared default; any other name
    /// gets its own connections. Kafka brokers handle one request per connection at a
    /// time, so requests that wait on the broker (JoinGroup, long-poll Fetch) go on a
    /// private channel, where they do not hold up everyone else's requests.
    pub async fn connection_on(&self, addr: &str, channel: &str) -> Result<Arc<Connection>> {
        let key = if channel.is_empty() {
            addr.to_owned()
        } else {
            format!("{addr}#{channel}")
        };
        let slot = {
            let mut slots = self.inner.slots.lock().unwrap_or_else(|p| p.into_inner());
            slots.entry(key).or_default().clone()
        };
        let mut guard = slot.lock().await;
        if let Some(connection) = guard.as_ref().filter(|c| c.is_alive()) {
            return Ok(connection.clone());
        }
        let connection = Arc::new(Connection::connect(addr, &self.inner.connection_config).await?);
        *guard = Some(connection.clone());
        Ok(connection)
    }

    /// Closes the connections of a private channel.
    pub fn close_channel(&self, channel: &str) {
        let suffix = format!("#{channel}");
        let slots: Vec<Slot> = {
            let mut slots = self.inner.slots.lock().unwrap_or_else(|p| p.into_inner());
            let keys: Vec<String> = slots
                .keys()
                .filter(|k| k.ends_with(&suffix))
                .cloned()
                .collect();
            keys.iter().filter_map(|k| slots.remove(k)).collect()
        };
        for slot in slots {
            if let Ok(guard) = slot.try_lock() {
                if let Some(connection) = guard.as_ref() {
                    connection.close();
                }
            }
        }
    }

    /// The connection to broker `id`, refreshing metadata if the broker is unknown.
    pub async fn broker(&self, id: i32) -> Result<Arc<Connection>> {
        self.broker_on(id, "").await
    }

    /// [`Client::broker`] on a private channel.
    pub async fn broker_on(&self, id: i32, channel: &str) -> Result<Arc<Connection>> {
        let mut addr = self.with_metadata(|m| m.brokers.get(&id).map(|b| b.addr()));
        if addr.is_none() {
            self.refresh_metadata(Some(&[]), false).await?;
            addr = self.with_metadata(|m| m.brokers.get(&id).map(|b| b.addr()));
        }
        let addr = addr.ok_or_else(|| {
            Error::protocol(
                "Metadata",
                "cluster",
                format!("broker {id} is not in the cluster"),
            )
        })?;
        self.connection_on(&addr, channel).await
    }

    /// A connection to some broker: an open one if there is one, else the known brokers,
    /// then the bootstrap addresses, in order.
    pub async fn any_broker(&self) -> Result<Arc<Connection>> {
        let mut candidates: Vec<String> =
            self.with_metadata(|m| m.brokers.values().map(|b| b.addr()).collect());
        for addr in &self.inner.config.bootstrap {
            if !candidates.contains(addr) {
                candidates.push(addr.clone());
            }
        }
        {
            let slots = self.inner.slots.lock().unwrap_or_else(|p| p.into_inner());
            for addr in &candidates {
                if let Some(Some(connection)) =
                    slots.get(addr).and_then(|s| s.try_lock().ok()).as_deref()
                {
                    if connection.is_alive() {
                        return Ok(connection.clone());
                    }
                }
            }
        }
        let mut last_error = None;
        for addr in &candidates {
            match self.connection_to(addr).await {
                Ok(connection) => return Ok(connection),
                Err(e) => {
                    tracing::debug!(addr, error = %e, "broker unreachable");
                    last_error = Some(e);
                }
            }
        }
        Err(Error::NoBrokerAvailable {
            tried: candidates.join(", "),
            source: Box::new(
                last_error.unwrap_or(Error::InvalidArgument("no broker address".into())),
            ),
        })
    }

    /// Fetches metadata for `topics` (`None`: every topic; `Some(&[])`: brokers only) and
    /// merges it into the cache. Returns per-topic problems (unknown topics, topics
    /// without leaders yet); fails only when no answer could be had.
    pub async fn refresh_metadata(
        &self,
        topics: Option<&[String]>,
        allow_auto_create: bool,
    ) -> Result<Vec<TopicProblem>> {
        let connection = self.any_broker().await?;
        let version = connection.version::<MetadataRequest>()?;
        let request = MetadataRequest::default()
            .with_topics(topics.map(|names| {
                names
                    .iter()
                    .map(|name| {
                        MetadataRequestTopic::default()
                            .with_name(Some(TopicName(StrBytes::from_string(name.clone()))))
                    })
                    .collect()
            }))
            .with_allow_auto_topic_creation(allow_auto_create);
        let response = match connection.send(&request, version).await {
            Ok(response) => response,
            Err(e) => {
                connection.close();
                return Err(e);
            }
        };
        Error::check(
            response.error_code,
            || format!("metadata from {}", connection.addr()),
            None,
        )?;
        Ok(self.metadata_mut(|m| m.apply(&response, topics, Instant::now())))
    }

    /// The cached metadata of `topic`, refreshed first if missing or stale. Fails with
    /// [`Error::UnknownTopic`] if the topic does not exist.
    pub async fn topic(&self, topic: &str) -> Result<TopicInfo> {
        let max_age = self.inner.config.metadata_max_age;
        let cached = self.with_metadata(|m| {
            let fresh = m.refreshed_at(topic).is_some_and(|t| t.elapsed() < max_age);
            m.topic(topic).filter(|_| fresh).cloned()
        });
        if let Some(info) = cached {
            return Ok(info);
        }
        self.fetch_topic(topic, false).await
    }

    /// Fresh metadata of `topic` from the cluster.
    pub async fn fetch_topic(&self, topic: &str, allow_auto_create: bool) -> Result<TopicInfo> {
        let problems = self
            .refresh_metadata(Some(&[topic.to_owned()]), allow_auto_create)
            .await?;
        if let Some(problem) = problems.into_iter().find(|p| p.topic == topic) {
            return Err(problem.error);
        }
        self.with_metadata(|m| m.topic(topic).cloned())
            .ok_or_else(|| Error::UnknownTopic {
                topic: topic.to_owned(),
            })
    }

    /// Waits (retrying with backoff, at most `timeout`) until `topic` exists with at least
    /// one partition, as a producer must before sending. Unknown topics fail at once
    /// unless `allow_auto_create` asks the broker to create them.
    pub async fn wait_for_topic(
        &self,
        topic: &str,
        allow_auto_create: bool,
        timeout: Duration,
    ) -> Result<TopicInfo> {
        let deadline = Instant::now() + timeout;
        let mut attempt = 0;
        loop {
            let result = match self.topic(topic).await {
                Err(Error::UnknownTopic { .. }) if allow_auto_create => {
                    self.fetch_topic(topic, true).await
                }
                other => other,
            };
            let error = match result {
                Ok(info) if !info.partitions.is_empty() => return Ok(info),
                Ok(_) => Error::broker(
                    format!("metadata of topic {topic:?}"),
                    ResponseError::LeaderNotAvailable,
                    None,
                ),
                Err(Error::UnknownTopic { .. }) if allow_auto_create => Error::broker(
                    format!("metadata of topic {topic:?}"),
                    ResponseError::UnknownTopicOrPartition,
                    None,
                ),
                Err(e) => e,
            };
            if !error.is_retriable() {
                return Err(error);
            }
            let pause = self.backoff(attempt);
            if Instant::now() + pause >= deadline {
                return Err(Error::Timeout {
                    what: format!("waiting for metadata of topic {topic:?} (last error: {error})"),
                    after: timeout,
                });
            }
            self.metadata_mut(|m| m.invalidate(topic));
            tokio::time::sleep(pause).await;
            attempt += 1;
        }
    }

    /// Marks `topic` stale so the next lookup asks the cluster.
    pub fn invalidate_topic(&self, topic: &str) {
        self.metadata_mut(|m| m.invalidate(topic));
    }

    /// The connection to the leader of a partition (broker id and connection).
    pub async fn leader(&self, topic: &str, partition: i32) -> Result<(i32, Arc<Connection>)> {
        let info = self.topic(topic).await?;
        let Some(p) = info.partition(partition) else {
            return Err(Error::UnknownPartition {
                topic: topic.to_owned(),
                partition,
                count: info.partitions.len(),
            });
        };
        let Some(leader) = p.leader else {
            self.invalidate_topic(topic);
            return Err(Error::broker(
                format!("partition {topic}-{partition}"),
                ResponseError::LeaderNotAvailable,
                None,
            ));
        };
        Ok((leader, self.broker(leader).await?))
    }

    /// The connection to the cluster's controller (for topic creation and deletion),
    /// or any broker when the controller is not known (KRaft brokers forward).
    pub async fn controller(&self) -> Result<Arc<Connection>> {
        let controller = self.with_metadata(|m| m.controller_id);
        if let Some(id) = controller {
            if let Ok(connection) = self.broker(id).await {
                return Ok(connection);
            }
        }
        self.any_broker().await
    }

    /// The coordinator of consumer group `group`: broker id and connection.
    pub async fn group_coordinator(&self, group: &str) -> Result<(i32, Arc<Connection>)> {
        self.group_coordinator_on(group, "").await
    }

    /// [`Client::group_coordinator`] on a private channel.
    pub async fn group_coordinator_on(
        &self,
        group: &str,
        channel: &str,
    ) -> Result<(i32, Arc<Connection>)> {
        let cached = self
            .inner
            .coordinators
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(group)
            .cloned();
        if let Some((id, addr)) = cached {
            if let Ok(connection) = self.connection_on(&addr, channel).await {
                return Ok((id, connection));
            }
        }
        let connection = self.any_broker().await?;
        let version = connection.version::<FindCoordinatorRequest>()?;
        let key = StrBytes::from_string(group.to_owned());
        let mut request = FindCoordinatorRequest::default().with_key_type(0);
        if version >= 4 {
            request.coordinator_keys = vec![key];
        } else {
            request.key = key;
        }
        let response = connection.send(&request, version).await?;
        let context = || format!("find coordinator of group {group:?}");
        let (id, host, port) = if version >= 4 {
            let Some(c) = response.coordinators.first() else {
                return Err(Error::protocol(
                    "FindCoordinator",
                    connection.addr(),
                    "answer lists no coordinator",
                ));
            };
            Error::check(c.error_code, context, c.error_message.as_ref())?;
            (c.node_id.0, c.host.as_str().to_owned(), c.port)
        } else {
            Error::check(
                response.error_code,
                context,
                response.error_message.as_ref(),
            )?;
            (
                response.node_id.0,
                response.host.as_str().to_owned(),
                response.port,
            )
        };
        let addr = crate::metadata::BrokerInfo {
            id,
            host,
            port,
            rack: None,
        }
        .addr();
        let connection = self.connection_on(&addr, channel).await?;
        self.inner
            .coordinators
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(group.to_owned(), (id, addr));
        Ok((id, connection))
    }

    /// Forgets the cached coordinator of `group` (after NOT_COORDINATOR and the like).
    pub fn invalidate_coordinator(&self, group: &str) {
        self.inner
            .coordinators
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(group);
    }

    /// The pause before retry number `attempt` (0-based): exponential, capped, with
    /// +-20% jitter so that clients do not retry in lockstep.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let base = self.inner.config.retry_backoff;
        let max = self.inner.config.retry_backoff_max.max(base);
        let exp = base.saturating_mul(1u32 << attempt.min(16)).min(max);
        let jitter = rand::thread_rng().gen_range(0.8..1.2);
        exp.mul_f64(jitter).min(max)
    }

    /// Runs `op` until it succeeds, fails with a non-retriable error, or `api_timeout`
    /// passes. Stale metadata is refreshed between attempts when the error says so.
    pub async fn retry<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let deadline = Instant::now() + self.inner.config.api_timeout;
        let mut attempt = 0;
        loop {
            let error = match op().await {
                Ok(value) => return Ok(value),
                Err(e) => e,
            };
            let pause = self.backoff(attempt);
            if !error.is_retriable() || Instant::now() + pause >= deadline {
                return Err(error);
            }
            tracing::debug!(what, attempt, error = %error, "retrying");
            if error.needs_metadata_refresh() {
                self.metadata_mut(|m| {
                    let topics: Vec<String> = m.topics.keys().cloned().collect();
                    for topic in topics {
                        m.invalidate(&topic);
                    }
                });
            }
            tokio::time::sleep(pause).await;
            attempt += 1;
        }
    }

    /// Closes every open connection. Clones of this client reconnect on next use.
    pub fn close(&self) {
        let slots: Vec<Slot> = self
            .inner
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .map(|(_, slot)| slot)
            .collect();
        for slot in slots {
            if let Ok(guard) = slot.try_lock() {
                if let Some(connection) = guard.as_ref() {
                    connection.close();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_lists_are_split_and_checked() {
        let config = ClientConfig::new(" a:1, b:2 ,,");
        assert_eq!(config.bootstrap, ["a:1", "b:2"]);
        assert!(Client::new(ClientConfig::new("")).is_err());
        assert!(Client::new(ClientConfig::new("nohost")).is_err());
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let client = Client::new(ClientConfig::default()).unwrap();
        let first = client.backoff(0);
        assert!(first >= Duration::from_millis(80) && first <= Duration::from_millis(120));
        assert!(client.backoff(3) >= Duration::from_millis(640));
        assert!(client.backoff(30) <= Duration::from_secs(1));
    }

    #[tokio::test]
    async fn unreachable_bootstrap_fails_fast_with_the_addresses() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let err = Client::connect(ClientConfig::new(&addr)).await.unwrap_err();
        match err {
            Error::NoBrokerAvailable { tried, .. } => assert_eq!(tried, addr),
            other => panic!("{other:?}"),
        }
    }
}
