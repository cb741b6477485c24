//! Who a connection is: TLS, SASL and the principal of each connection.
//!
//! - `tls`: the rustls configuration of SSL and SASL_SSL listeners, reloaded without a
//!   restart, and the principal of a client certificate.
//! - `credentials`: SCRAM users (salted, hashed) in the data directory.
//! - `sasl`: the SaslHandshake / SaslAuthenticate exchange (PLAIN, SCRAM-SHA-256/512).
//! - `session`: one connection's authentication state and which requests it may send.
//! - `acl`: the ACLs and the authorizer (who may do what once authenticated).
//!
//! [`Security`] is the broker-wide part (the credential store, the SASL configuration,
//! the failed-login tracker); a connection's [`session::Session`] lives in its reader.

pub mod acl;
pub mod credentials;
pub mod sasl;
pub mod session;
pub mod tls;

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::{SaslMechanism, SecurityConfig, SecurityProtocol};
use credentials::CredentialStore;

/// Why security could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error("TLS: {0}")]
    Tls(String),
    #[error("SCRAM credentials: {0}")]
    Credentials(String),
    #[error("ACLs: {0}")]
    Acls(String),
    #[error("no authorizer is configured (authorizer.class.name)")]
    AuthorizerDisabled,
}

/// Who a request comes from, as Kafka names it (`User:alice`, `User:ANONYMOUS`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Principal {
    pub kind: String,
    pub name: String,
}

impl Principal {
    pub const ANONYMOUS: &'static str = "ANONYMOUS";

    pub fn user(name: impl Into<String>) -> Principal {
        Principal {
            kind: "User".to_owned(),
            name: name.into(),
        }
    }

    pub fn anonymous() -> Principal {
        Principal::user(Principal::ANONYMOUS)
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.name)
    }
}

/// One client listener the broker serves.
pub struct ClientListener {
    /// The listener name (`PLAINTEXT`, `SASL_SSL`, `EXTERNAL`...).
    pub name: String,
    pub protocol: SecurityProtocol,
    /// The TLS configuration of an SSL or SASL_SSL listener.
    pub tls: Option<Arc<tls::TlsContext>>,
    /// The mechanisms of a SASL listener (empty otherwise).
    pub mechanisms: Vec<SaslMechanism>,
    /// The address bound.
    pub local_addr: std::net::SocketAddr,
    /// What Metadata and FindCoordinator answers on this listener name.
    pub advertised_host: String,
    pub advertised_port: i32,
    /// Its connections, counted (metrics).
    pub stats: crate::metrics::ListenerStats,
}

impl ClientListener {
    pub fn uses_sasl(&self) -> bool {
        matches!(
            self.protocol,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

/// Longest wait before a failed login's answer.
const MAX_FAILURE_DELAY: Duration = Duration::from_secs(5);
/// Failures further apart than this from one address do not add up.
const FAILURE_MEMORY: Duration = Duration::from_secs(60);
/// Addresses remembered at most (the oldest are forgotten first).
const MAX_TRACKED_ADDRESSES: usize = 10_000;

/// Recent failed logins per address, to slow down password guessing.
#[derive(Default)]
pub struct FailedLogins {
    by_address: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl FailedLogins {
    /// Notes a failure from `ip` and returns how long its answer waits: `base`, doubled
    /// for each earlier failure within [`FAILURE_MEMORY`], at most [`MAX_FAILURE_DELAY`].
    pub fn failed(&self, ip: IpAddr, base: Duration, now: Instant) -> Duration {
        let mut map = self.by_address.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_TRACKED_ADDRESSES {
            map.retain(|_, (_, last)| now.duration_since(*last) < FAILURE_MEMORY);
            if map.len() >= MAX_TRACKED_ADDRESSES {
                map.clear();
            }
        }
        let entry = map.entry(ip).or_insert((0, now));
        if now.duration_since(entry.1) >= FAILURE_MEMORY {
            entry.0 = 0;
        }
        entry.0 = entry.0.saturating_add(1);
        entry.1 = now;
        let doublings = (entry.0 - 1).min(16);
        base.saturating_mul(1 << doublings).min(MAX_FAILURE_DELAY)
    }

    /// A successful login from `ip` forgets its failures.
    pub fn succeeded(&self, ip: IpAddr) {
        self.by_address
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&ip);
    }
}

/// Writes `bytes` to `path` atomically (temporary file, fsync, rename), creating its
/// directory (`<data>/security`) readable only by the broker's user: the SCRAM keys and
/// the ACLs are nobody else's business.
pub(crate) fn write_private_file(path: &Path, bytes: &[u8]) -> sluice_storage::Result<()> {
    use sluice_storage::StorageError;
    if let Some(dir) = path.parent() {
        if !dir.exists() {
            use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
            let context = || format!("create {}", dir.display());
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(dir)
                .map_err(|e| StorageError::io(context(), e))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| StorageError::io(context(), e))?;
            if let Some(parent) = dir.parent() {
                sluice_storage::fsutil::sync_dir(parent)?;
            }
        }
    }
    sluice_storage::fsutil::write_atomically(path, bytes)
}

/// The broker-wide security state; see the module docs.
pub struct Security {
    pub credentials: Arc<CredentialStore>,
    pub sasl: sasl::SaslServer,
    pub failed_logins: FailedLogins,
    /// `connections.max.reauth.ms` (0: sessions never expire).
    pub max_reauth: Option<Duration>,
    /// `connection.failed.authentication.delay.ms`.
    pub failure_delay: Duration,
    /// Who may do what (allows everything when no authorizer is configured).
    pub authorizer: acl::Authorizer,
}

impl Security {
    /// Opens the credential store of `data_dir` and creates the bootstrap users that do
    /// not exist yet.
    pub fn open(data_dir: &Path, config: &SecurityConfig) -> Result<Security, SecurityError> {
        let credentials = Arc::new(CredentialStore::open(data_dir)?);
        // Only on a data directory that never had users (as Kafka's `kafka-storage format
        // --add-scram`): once users are managed through the APIs, a user deleted on
        // purpose must not come back at the next start.
        if credentials.is_fresh() {
            for (user, password) in &config.bootstrap_users {
                if credentials.create_if_absent(user, password)? {
                    tracing::info!(%user, "created SCRAM user from sasl.bootstrap.users");
                }
            }
        } else if !config.bootstrap_users.is_empty() {
            tracing::info!(
                "sasl.bootstrap.users ignored: this data directory has its SCRAM users already \
                 (manage them with AlterUserScramCredentials)"
            );
        }
        Ok(Security {
            sasl: sasl::SaslServer::new(credentials.clone()),
            credentials,
            failed_logins: FailedLogins::default(),
            max_reauth: (config.max_reauth_ms > 0)
                .then(|| Duration::from_millis(config.max_reauth_ms)),
            failure_delay: Duration::from_millis(config.failed_authentication_delay_ms),
            authorizer: acl::Authorizer::open(data_dir, config)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_failures_from_one_address_wait_longer() {
        let logins = FailedLogins::default();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let other: IpAddr = "127.0.0.2".parse().unwrap();
        let base = Duration::from_millis(100);
        let now = Instant::now();
        assert_eq!(logins.failed(ip, base, now), base);
        assert_eq!(logins.failed(ip, base, now), base * 2);
        assert_eq!(logins.failed(ip, base, now), base * 4);
        assert_eq!(logins.failed(other, base, now), base);
        for _ in 0..20 {
            logins.failed(ip, base, now);
        }
        assert_eq!(logins.failed(ip, base, now), MAX_FAILURE_DELAY);
        assert_eq!(logins.failed(ip, base, now + FAILURE_MEMORY), base);
        logins.succeeded(ip);
        assert_eq!(logins.failed(ip, base, now), base);
    }
}
