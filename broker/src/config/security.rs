//! The security properties, with Kafka's names: TLS (`ssl.*`), SASL
//! (`sasl.enabled.mechanisms`), re-authentication and the failed-login delay, and
//! Sluice's bootstrap list of SCRAM users (`sasl.bootstrap.users`).
//!
//! As in Kafka, a listener may override any of the `ssl.*` properties and
//! `sasl.enabled.mechanisms` with `listener.name.<name>.<property>` (the listener name in
//! lower case): `listener.name.sasl_ssl.ssl.keystore.location=/etc/sluice/sasl.pem`.
//!
//! Only PEM key and trust stores are read (`ssl.keystore.type=PEM`, Kafka's default
//! being JKS): the key store is one file holding the private key and the certificate
//! chain, as Kafka's PEM key store; the trust store a file of CA certificates. Encrypted
//! private keys (`ssl.key.password`) are refused with a clear error.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::{invalid, parse_num, BrokerKey, ConfigError};
use crate::config::cluster::{ClusterConfig, SecurityProtocol};

/// The properties a listener may override (`listener.name.<name>.<property>`).
const PER_LISTENER: &[&str] = &[
    "ssl.keystore.type",
    "ssl.keystore.location",
    "ssl.key.password",
    "ssl.keystore.password",
    "ssl.truststore.type",
    "ssl.truststore.location",
    "ssl.truststore.password",
    "ssl.client.auth",
    "ssl.enabled.protocols",
    "ssl.protocol",
    "ssl.endpoint.identification.algorithm",
    "sasl.enabled.mechanisms",
];

/// The properties, with their defaults and help.
pub(super) const KEYS: &[BrokerKey] = &[
    BrokerKey {
        name: "ssl.keystore.type",
        default: "PEM",
        doc: "the key store's format; only PEM is read (Kafka's default, JKS, is not)",
    },
    BrokerKey {
        name: "ssl.keystore.location",
        default: "",
        doc: "PEM file with the listener's private key and certificate chain (needed by SSL and SASL_SSL \
              listeners); re-read on SIGHUP and when the file changes",
    },
    BrokerKey {
        name: "ssl.key.password",
        default: "",
        doc: "not supported: decrypt the private key first (openssl pkey -in enc.pem -out key.pem)",
    },
    BrokerKey {
        name: "ssl.keystore.password",
        default: "",
        doc: "ignored for PEM key stores (Kafka ignores it too)",
    },
    BrokerKey {
        name: "ssl.truststore.type",
        default: "PEM",
        doc: "the trust store's format; only PEM is read",
    },
    BrokerKey {
        name: "ssl.truststore.location",
        default: "",
        doc: "PEM file of the CA certificates client certificates must chain to (needed when \
              ssl.client.auth is required or requested)",
    },
    BrokerKey {
        name: "ssl.truststore.password",
        default: "",
        doc: "ignored for PEM trust stores",
    },
    BrokerKey {
        name: "ssl.client.auth",
        default: "none",
        doc: "required, requested or none: whether clients present certificates; the principal of a client \
              with a certificate is its subject (User:CN=...,O=...)",
    },
    BrokerKey {
        name: "ssl.enabled.protocols",
        default: "TLSv1.2,TLSv1.3",
        doc: "the TLS versions offered: TLSv1.2, TLSv1.3 or both",
    },
    BrokerKey {
        name: "ssl.protocol",
        default: "TLSv1.3",
        doc: "accepted for Kafka's configurations; ssl.enabled.protocols decides",
    },
    BrokerKey {
        name: "ssl.endpoint.identification.algorithm",
        default: "https",
        doc: "accepted for Kafka's configurations; a broker does not check its clients' host names",
    },
    BrokerKey {
        name: "sasl.enabled.mechanisms",
        default: "SCRAM-SHA-256,SCRAM-SHA-512",
        doc: "the SASL mechanisms of SASL_PLAINTEXT and SASL_SSL listeners: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512. \
              PLAIN checks the password against the user's SCRAM credentials",
    },
    BrokerKey {
        name: "sasl.bootstrap.users",
        default: "",
        doc: "NAME:PASSWORD,... SCRAM users (SHA-256 and SHA-512) created at start on a data directory that has no \
              SCRAM users yet, for the first administrator; ignored once users exist",
    },
    BrokerKey {
        name: "super.users",
        default: "",
        doc: "User:NAME;User:NAME... principals the authorizer allows every operation",
    },
    BrokerKey {
        name: "authorizer.class.name",
        default: "",
        doc: "empty: no authorization (every client may do everything); \
              org.apache.kafka.metadata.authorizer.StandardAuthorizer (or kafka.security.authorizer.AclAuthorizer): \
              ACLs decide, managed with CreateAcls/DescribeAcls/DeleteAcls and kept in <data>/security/acls.json",
    },
    BrokerKey {
        name: "allow.everyone.if.no.acl.found",
        default: "false",
        doc: "with the authorizer on, whether a resource that no ACL covers is open to everyone",
    },
    BrokerKey {
        name: "connections.max.reauth.ms",
        default: "0",
        doc: "when > 0, a SASL session lasts this long; the client re-authenticates (KIP-368) or its connection \
              is closed at its next request",
    },
    BrokerKey {
        name: "connection.failed.authentication.delay.ms",
        default: "100",
        doc: "how long a failed login waits before its answer; doubled for each further failure from the same \
              address within a minute, up to 5 s",
    },
];

/// Whether `name` is a per-listener override (`listener.name.<name>.<property>`).
pub fn is_listener_property(name: &str) -> bool {
    split_listener_property(name).is_some()
}

fn split_listener_property(name: &str) -> Option<(&str, &str)> {
    let rest = name.strip_prefix("listener.name.")?;
    let (listener, property) = rest.split_once('.')?;
    (!listener.is_empty() && PER_LISTENER.contains(&property)).then_some((listener, property))
}

/// `ssl.client.auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    Required,
    Requested,
    None,
}

impl ClientAuth {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientAuth::Required => "required",
            ClientAuth::Requested => "requested",
            ClientAuth::None => "none",
        }
    }
}

/// A TLS version of `ssl.enabled.protocols`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

/// The TLS settings of one SSL or SASL_SSL listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM: the private key and the certificate chain.
    pub keystore: PathBuf,
    /// PEM: the CAs client certificates must chain to.
    pub truststore: Option<PathBuf>,
    pub client_auth: ClientAuth,
    pub versions: Vec<TlsVersion>,
}

/// A SASL mechanism the broker serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SaslMechanism {
    Plain,
    ScramSha256,
    ScramSha512,
}

impl SaslMechanism {
    pub const ALL: [SaslMechanism; 3] = [
        SaslMechanism::Plain,
        SaslMechanism::ScramSha256,
        SaslMechanism::ScramSha512,
    ];

    /// The IANA name, as in `sasl.mechanism`.
    pub fn as_str(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }

    pub fn parse(name: &str) -> Option<SaslMechanism> {
        SaslMechanism::ALL
            .into_iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(name.trim()))
    }

    /// The SCRAM mechanisms, whose credentials the broker stores.
    pub fn is_scram(self) -> bool {
        self != SaslMechanism::Plain
    }
}

/// The security settings of every client listener.
#[derive(Debug, Clone, Default)]
pub struct SecurityConfig {
    /// By listener name: the TLS settings of SSL and SASL_SSL listeners.
    pub tls: BTreeMap<String, TlsSettings>,
    /// By listener name: the mechanisms of SASL_PLAINTEXT and SASL_SSL listeners.
    pub sasl_mechanisms: BTreeMap<String, Vec<SaslMechanism>>,
    /// `sasl.bootstrap.users`: (name, password).
    pub bootstrap_users: Vec<(String, String)>,
    /// `super.users`: principals as `User:name`.
    pub super_users: Vec<String>,
    /// `connections.max.reauth.ms`; 0: a session never expires.
    pub max_reauth_ms: u64,
    /// `connection.failed.authentication.delay.ms`.
    pub failed_authentication_delay_ms: u64,
    /// `authorizer.class.name` names Kafka's ACL authorizer: ACLs decide.
    pub authorizer: bool,
    /// `allow.everyone.if.no.acl.found`.
    pub allow_everyone_if_no_acl_found: bool,
}

/// The `authorizer.class.name` values that turn ACLs on: Kafka's KRaft authorizer and
/// its ZooKeeper-era predecessor, so either broker configuration works unchanged.
const AUTHORIZERS: &[&str] = &[
    "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
    "kafka.security.authorizer.AclAuthorizer",
];

impl SecurityConfig {
    /// Parses the properties for the listeners of `cluster`. `get` gives a property's
    /// value if set.
    pub(super) fn parse<'a>(
        cluster: &ClusterConfig,
        get: &dyn Fn(&str) -> Option<&'a str>,
    ) -> Result<SecurityConfig, ConfigError> {
        let default = |name: &str| BrokerKey::default_of(KEYS, name);
        // A listener's own value, else the broker-wide one, else the default.
        let for_listener = |listener: &str, name: &str| -> (String, &'a str) {
            let prefixed = format!("listener.name.{}.{name}", listener.to_ascii_lowercase());
            match get(&prefixed) {
                Some(v) => (prefixed, v),
                None => (name.to_owned(), get(name).unwrap_or_else(|| default(name))),
            }
        };
        let mut config = SecurityConfig::default();
        for listener in cluster.client_listeners() {
            let name = listener.name.as_str();
            let protocol = listener.security_protocol;
            if matches!(protocol, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl) {
                config
                    .tls
                    .insert(name.to_owned(), parse_tls(name, &for_listener)?);
            }
            if matches!(
                protocol,
                SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
            ) {
                let (key, text) = for_listener(name, "sasl.enabled.mechanisms");
                config
                    .sasl_mechanisms
                    .insert(name.to_owned(), parse_mechanisms(&key, text)?);
            }
        }
        if let Some(text) = get("sasl.bootstrap.users") {
            config.bootstrap_users = parse_users(text)?;
        }
        let number = |name: &str| -> Result<u64, ConfigError> {
            parse_num(name, get(name).unwrap_or_else(|| default(name)))
        };
        if let Some(text) = get("super.users") {
            for entry in text.split(';').map(str::trim).filter(|e| !e.is_empty()) {
                match entry.split_once(':') {
                    Some((kind, name)) if !kind.is_empty() && !name.is_empty() => {
                        config.super_users.push(entry.to_owned())
                    }
                    _ => {
                        return Err(invalid(
                            "super.users",
                            text,
                            "expected principals separated by ';', e.g. User:admin;User:ops",
                        ))
                    }
                }
            }
        }
        config.max_reauth_ms = number("connections.max.reauth.ms")?;
        // At most a year: a session that long is as good as endless, and the deadline
        // arithmetic stays far from overflowing.
        const YEAR_MS: u64 = 365 * 24 * 3600 * 1000;
        if config.max_reauth_ms > YEAR_MS {
            return Err(invalid(
                "connections.max.reauth.ms",
                &config.max_reauth_ms.to_string(),
                format!("at most {YEAR_MS} (a year)"),
            ));
        }
        config.failed_authentication_delay_ms =
            number("connection.failed.authentication.delay.ms")?;
        let authorizer = get("authorizer.class.name").unwrap_or("").trim();
        config.authorizer = match authorizer {
            "" => false,
            name if AUTHORIZERS.contains(&name) => true,
            name => {
                return Err(ConfigError::NotSupported(format!(
                "authorizer.class.name={name}: Sluice's authorizer follows Kafka's ACLs; use {}",
                AUTHORIZERS[0]
            )))
            }
        };
        let allow_everyone = get("allow.everyone.if.no.acl.found").unwrap_or("false");
        config.allow_everyone_if_no_acl_found = match allow_everyone.trim() {
            "true" => true,
            "false" => false,
            other => {
                return Err(invalid(
                    "allow.everyone.if.no.acl.found",
                    other,
                    "true or false",
                ))
            }
        };
        Ok(config)
    }

    /// The properties with their effective values, for DescribeConfigs (the bootstrap
    /// users' passwords are not shown).
    pub fn describe(&self) -> Vec<(String, String)> {
        vec![
            (
                "connections.max.reauth.ms".to_owned(),
                self.max_reauth_ms.to_string(),
            ),
            (
                "connection.failed.authentication.delay.ms".to_owned(),
                self.failed_authentication_delay_ms.to_string(),
            ),
            ("super.users".to_owned(), self.super_users.join(";")),
            (
                "authorizer.class.name".to_owned(),
                if self.authorizer { AUTHORIZERS[0] } else { "" }.to_owned(),
            ),
            (
                "allow.everyone.if.no.acl.found".to_owned(),
                self.allow_everyone_if_no_acl_found.to_string(),
            ),
        ]
    }
}

fn parse_tls<'a>(
    listener: &str,
    for_listener: &dyn Fn(&str, &str) -> (String, &'a str),
) -> Result<TlsSettings, ConfigError> {
    for store in ["ssl.keystore.type", "ssl.truststore.type"] {
        let (key, value) = for_listener(listener, store);
        if !value.trim().eq_ignore_ascii_case("PEM") {
            return Err(ConfigError::NotSupported(format!(
                "{key}={value}: only PEM files are read (convert a JKS or PKCS12 store with keytool \
                 and openssl, see docs/security.md)"
            )));
        }
    }
    let (key, password) = for_listener(listener, "ssl.key.password");
    if !password.is_empty() {
        return Err(ConfigError::NotSupported(format!(
            "{key}: encrypted private keys are not read; decrypt the key first (openssl pkey -in \
             encrypted.pem -out key.pem) and protect the file instead"
        )));
    }
    let (key, keystore) = for_listener(listener, "ssl.keystore.location");
    if keystore.trim().is_empty() {
        return Err(ConfigError::Inconsistent(format!(
            "listener {listener} uses TLS but {key} is not set (a PEM file with the private key \
             and the certificate chain)"
        )));
    }
    let (_, truststore) = for_listener(listener, "ssl.truststore.location");
    let truststore = (!truststore.trim().is_empty()).then(|| PathBuf::from(truststore.trim()));
    let (key, auth) = for_listener(listener, "ssl.client.auth");
    let client_auth = match auth.trim().to_ascii_lowercase().as_str() {
        "required" => ClientAuth::Required,
        "requested" => ClientAuth::Requested,
        "none" | "" => ClientAuth::None,
        _ => return Err(invalid(&key, auth, "expected required, requested or none")),
    };
    if client_auth != ClientAuth::None && truststore.is_none() {
        return Err(ConfigError::Inconsistent(format!(
            "{key}={} on listener {listener} needs ssl.truststore.location (the CAs client \
             certificates must chain to)",
            client_auth.as_str()
        )));
    }
    let (key, protocols) = for_listener(listener, "ssl.enabled.protocols");
    let mut versions = Vec::new();
    for name in protocols
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let version = match name {
            "TLSv1.2" => TlsVersion::Tls12,
            "TLSv1.3" => TlsVersion::Tls13,
            _ => {
                return Err(invalid(
                    &key,
                    protocols,
                    format!("{name} is not offered (TLSv1.2 and TLSv1.3 are)"),
                ))
            }
        };
        if !versions.contains(&version) {
            versions.push(version);
        }
    }
    if versions.is_empty() {
        return Err(invalid(&key, protocols, "no TLS version left"));
    }
    versions.sort();
    Ok(TlsSettings {
        keystore: PathBuf::from(keystore.trim()),
        truststore,
        client_auth,
        versions,
    })
}

fn parse_mechanisms(key: &str, text: &str) -> Result<Vec<SaslMechanism>, ConfigError> {
    let mut out = Vec::new();
    for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let Some(mechanism) = SaslMechanism::parse(name) else {
            return Err(ConfigError::NotSupported(format!(
                "{key}: SASL mechanism {name} (PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 are served)"
            )));
        };
        if !out.contains(&mechanism) {
            out.push(mechanism);
        }
    }
    if out.is_empty() {
        return Err(invalid(
            key,
            text,
            "a SASL listener needs at least one mechanism",
        ));
    }
    Ok(out)
}

fn parse_users(text: &str) -> Result<Vec<(String, String)>, ConfigError> {
    const NAME: &str = "sasl.bootstrap.users";
    let mut out: Vec<(String, String)> = Vec::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        // Not echoed: the entry holds a password.
        let Some((user, password)) = entry.split_once(':') else {
            return Err(invalid(NAME, "(hidden)", "expected NAME:PASSWORD,..."));
        };
        if user.is_empty() || password.is_empty() {
            return Err(invalid(
                NAME,
                "(hidden)",
                "a user needs a name and a password",
            ));
        }
        if out.iter().any(|(u, _)| u == user) {
            return Err(invalid(
                NAME,
                "(hidden)",
                format!("user {user} is listed twice"),
            ));
        }
        out.push((user.to_owned(), password.to_owned()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listener_overrides_are_recognised() {
        assert!(is_listener_property(
            "listener.name.sasl_ssl.ssl.keystore.location"
        ));
        assert!(is_listener_property(
            "listener.name.internal.sasl.enabled.mechanisms"
        ));
        assert!(!is_listener_property("listener.name.x.num.partitions"));
        assert!(!is_listener_property("listener.name..ssl.client.auth"));
    }

    #[test]
    fn mechanisms_and_users_parse() {
        assert_eq!(
            parse_mechanisms("k", "scram-sha-512, PLAIN,PLAIN").unwrap(),
            vec![SaslMechanism::ScramSha512, SaslMechanism::Plain]
        );
        assert!(parse_mechanisms("k", "GSSAPI").is_err());
        assert!(parse_mechanisms("k", " ").is_err());
        assert_eq!(
            parse_users("admin:s3cr:et, bob:pw").unwrap(),
            vec![
                ("admin".to_owned(), "s3cr:et".to_owned()),
                ("bob".to_owned(), "pw".to_owned())
            ]
        );
        let error = parse_users("admin").unwrap_err().to_string();
        assert!(!error.contains("admin:"), "{error}");
        assert!(parse_users("a:x,a:y").is_err());
    }
}
