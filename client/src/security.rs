//! How a connection proves who it is and protects what it sends: Kafka's
//! `security.protocol` (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL), TLS with rustls, and the
//! SASL login (`sasl`).
//!
//! [`SecurityConfig`] is what a user sets (librdkafka's names: `security.protocol`,
//! `ssl.ca.location`, `ssl.certificate.location`, `ssl.key.location`, `sasl.mechanism`,
//! `sasl.username`, `sasl.password`). [`Security`] is what connections use: the rustls
//! configuration is built once from the files, not per connection.
//!
//! Without `ssl.ca.location` the system's CA bundle is read (Debian's, Red Hat's or
//! Alpine's path), as librdkafka's `probe`; the broker's certificate must name the host
//! (or IP address) the client connects to.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::error::{Error, Result};

/// Kafka's `security.protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SecurityProtocol {
    #[default]
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub fn parse(text: &str) -> Option<SecurityProtocol> {
        Some(match text.to_ascii_uppercase().as_str() {
            "PLAINTEXT" => SecurityProtocol::Plaintext,
            "SSL" => SecurityProtocol::Ssl,
            "SASL_PLAINTEXT" => SecurityProtocol::SaslPlaintext,
            "SASL_SSL" => SecurityProtocol::SaslSsl,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    pub fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    pub fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

/// Kafka's `sasl.mechanism`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslMechanism {
    Plain,
    ScramSha256,
    ScramSha512,
}

impl SaslMechanism {
    pub fn parse(text: &str) -> Option<SaslMechanism> {
        Some(match text.to_ascii_uppercase().as_str() {
            "PLAIN" => SaslMechanism::Plain,
            "SCRAM-SHA-256" => SaslMechanism::ScramSha256,
            "SCRAM-SHA-512" => SaslMechanism::ScramSha512,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// What a user sets; see the module docs.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecurityConfig {
    pub protocol: SecurityProtocol,
    /// `ssl.ca.location`: PEM file of the CAs the broker's certificate must chain to.
    pub ca_file: Option<PathBuf>,
    /// `ssl.certificate.location` and `ssl.key.location`: a client certificate (for
    /// brokers with `ssl.client.auth=required`).
    pub certificate_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// `sasl.mechanism`; see [`SecurityConfig::mechanism`] for the default.
    pub mechanism: Option<SaslMechanism>,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl std::fmt::Debug for SecurityConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password.
        f.debug_struct("SecurityConfig")
            .field("protocol", &self.protocol)
            .field("ca_file", &self.ca_file)
            .field("certificate_file", &self.certificate_file)
            .field("key_file", &self.key_file)
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl SecurityConfig {
    /// The SASL mechanism: as set, else SCRAM-SHA-512 (Kafka's clients default to
    /// GSSAPI, which this client does not speak; SCRAM-SHA-512 is what Kafka recommends).
    pub fn mechanism(&self) -> SaslMechanism {
        self.mechanism.unwrap_or(SaslMechanism::ScramSha512)
    }
}

/// System CA bundles, tried in order without `ssl.ca.location`.
const SYSTEM_CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// What connections use; see the module docs.
#[derive(Clone)]
pub struct Security {
    pub protocol: SecurityProtocol,
    tls: Option<TlsConnector>,
    /// Mechanism, user, password (SASL protocols only).
    pub sasl: Option<(SaslMechanism, String, String)>,
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Security")
            .field("protocol", &self.protocol)
            .field("tls", &self.tls.is_some())
            .field("sasl", &self.sasl.as_ref().map(|(m, user, _)| (m, user)))
            .finish()
    }
}

impl Default for Security {
    fn default() -> Self {
        Security {
            protocol: SecurityProtocol::Plaintext,
            tls: None,
            sasl: None,
        }
    }
}

fn config_error(message: String) -> Error {
    Error::InvalidArgument(message)
}

impl Security {
    /// Reads the files `config` names and checks that what the protocol needs is there.
    pub fn new(config: &SecurityConfig) -> Result<Security> {
        let protocol = config.protocol;
        let tls = if protocol.uses_tls() {
            Some(TlsConnector::from(Arc::new(tls_config(config)?)))
        } else {
            None
        };
        // SASL settings without a SASL protocol would be ignored: almost always a
        // forgotten --security-protocol, which would then connect without logging in.
        let sasl_settings = [
            ("sasl.username", config.username.is_some()),
            ("sasl.password", config.password.is_some()),
            ("sasl.mechanism", config.mechanism.is_some()),
        ];
        if let Some((name, _)) = sasl_settings
            .iter()
            .find(|(_, set)| *set && !protocol.uses_sasl())
        {
            return Err(config_error(format!(
                "{name} is set but security.protocol={}: use SASL_SSL or SASL_PLAINTEXT \
                 (--security-protocol)",
                protocol.as_str()
            )));
        }
        let sasl = if protocol.uses_sasl() {
            let username = config.username.clone().ok_or_else(|| {
                config_error(format!(
                    "security.protocol={} needs sasl.username (--user)",
                    protocol.as_str()
                ))
            })?;
            let password = config.password.clone().ok_or_else(|| {
                config_error(format!(
                    "security.protocol={} needs sasl.password (--password or $SLUICE_PASSWORD)",
                    protocol.as_str()
                ))
            })?;
            Some((config.mechanism(), username, password))
        } else {
            None
        };
        Ok(Security {
            protocol,
            tls,
            sasl,
        })
    }

    /// Wraps a connected socket in TLS when the protocol asks for it.
    pub async fn wrap(&self, addr: &str, tcp: TcpStream) -> Result<Stream> {
        let Some(connector) = &self.tls else {
            return Ok(Stream::Plain(tcp));
        };
        let host = addr
            .rsplit_once(':')
            .map_or(addr, |(host, _)| host)
            .trim_start_matches('[')
            .trim_end_matches(']');
        let name = ServerName::try_from(host.to_owned()).map_err(|e| Error::Tls {
            addr: addr.to_owned(),
            reason: format!("{host:?} is not a host name or IP address: {e}"),
        })?;
        match connector.connect(name, tcp).await {
            Ok(stream) => Ok(Stream::Tls(Box::new(stream))),
            Err(e) => Err(Error::Tls {
                addr: addr.to_owned(),
                reason: e.to_string(),
            }),
        }
    }
}

fn tls_config(config: &SecurityConfig) -> Result<rustls::ClientConfig> {
    let read_error = |path: &std::path::Path, e: &dyn std::fmt::Display| {
        config_error(format!("{}: {e}", path.display()))
    };
    let ca_file = match &config.ca_file {
        Some(path) => path.clone(),
        None => SYSTEM_CA_BUNDLES
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .ok_or_else(|| {
                config_error(
                    "TLS needs the CA that signed the broker's certificate: set ssl.ca.location \
                     (--ca-file); no system CA bundle was found"
                        .to_owned(),
                )
            })?,
    };
    let mut roots = rustls::RootCertStore::empty();
    let cas: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&ca_file)
        .map_err(|e| read_error(&ca_file, &e))?
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| read_error(&ca_file, &e))?;
    let (added, _ignored) = roots.add_parsable_certificates(cas);
    if added == 0 {
        return Err(config_error(format!(
            "{}: no CA certificate in it",
            ca_file.display()
        )));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| config_error(format!("TLS: {e}")))?
        .with_root_certificates(roots);
    match (&config.certificate_file, &config.key_file) {
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(cert), Some(key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .map_err(|e| read_error(cert, &e))?
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| read_error(cert, &e))?;
            let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| read_error(key, &e))?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| config_error(format!("client certificate: {e}")))
        }
        _ => Err(config_error(
            "a client certificate needs both ssl.certificate.location and ssl.key.location"
                .to_owned(),
        )),
    }
}

/// A connection's byte stream: plain TCP or TLS over it.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}
