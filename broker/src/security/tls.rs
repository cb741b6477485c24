//! TLS for SSL and SASL_SSL listeners: the rustls server configuration built from a
//! listener's PEM files, re-read without a restart, and the principal of a client
//! certificate.
//!
//! [`TlsContext`] holds the configuration new connections get. [`TlsContext::reload`]
//! reads the files again and swaps the configuration only when they make a valid one:
//! a half-written or wrong file logs an error and keeps the old certificate serving.
//! The broker calls it on SIGHUP and when the files' modification times or sizes change
//! (polled, see `lib.rs`); connections already open keep the session they have.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

use super::SecurityError;
use crate::config::{ClientAuth, TlsSettings, TlsVersion};

/// What identifies a file's contents cheaply: modification time and length.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// One TLS listener's server configuration; see the module docs.
pub struct TlsContext {
    listener: String,
    settings: TlsSettings,
    current: RwLock<Arc<ServerConfig>>,
    stamps: Mutex<Vec<Stamp>>,
}

impl TlsContext {
    /// Reads the listener's files; an error names the file and what is wrong with it.
    pub fn load(listener: &str, settings: &TlsSettings) -> Result<TlsContext, SecurityError> {
        let stamps = files(settings).iter().map(|p| stamp(p)).collect();
        let config = build(settings)?;
        Ok(TlsContext {
            listener: listener.to_owned(),
            settings: settings.clone(),
            current: RwLock::new(Arc::new(config)),
            stamps: Mutex::new(stamps),
        })
    }

    /// An acceptor with the current configuration.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let config = self
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        tokio_rustls::TlsAcceptor::from(config)
    }

    /// Re-reads the files if they changed since the last read (`force`: even if not).
    /// Returns whether a new configuration took effect; a failure keeps the old one.
    pub fn reload(&self, force: bool) -> bool {
        let now: Vec<Stamp> = files(&self.settings).iter().map(|p| stamp(p)).collect();
        {
            let mut stamps = self.stamps.lock().unwrap_or_else(|p| p.into_inner());
            if !force && *stamps == now {
                return false;
            }
            // Noted even when the files turn out bad, so that one bad write is reported
            // once, not at every poll; the next change is read again.
            *stamps = now;
        }
        match build(&self.settings) {
            Ok(config) => {
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(config);
                tracing::info!(listener = %self.listener, "TLS certificates reloaded");
                true
            }
            Err(e) => {
                tracing::error!(
                    listener = %self.listener,
                    error = %e,
                    "TLS certificates not reloaded: still serving the previous ones"
                );
                false
            }
        }
    }
}

fn files(settings: &TlsSettings) -> Vec<PathBuf> {
    let mut out = vec![settings.keystore.clone()];
    out.extend(settings.truststore.clone());
    out
}

fn build(settings: &TlsSettings) -> Result<ServerConfig, SecurityError> {
    let bad = |path: &Path, what: String| SecurityError::Tls(format!("{}: {what}", path.display()));
    let keystore = &settings.keystore;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(keystore)
        .map_err(|e| bad(keystore, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(keystore, e.to_string()))?;
    if chain.is_empty() {
        return Err(bad(
            keystore,
            "no certificate (the key store holds the private key and the certificate chain)"
                .to_owned(),
        ));
    }
    let key = PrivateKeyDer::from_pem_file(keystore).map_err(|e| {
        bad(
            keystore,
            format!("no unencrypted private key ({e}); the key store holds the private key and the certificate chain"),
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = settings
        .versions
        .iter()
        .map(|v| match v {
            TlsVersion::Tls12 => &rustls::version::TLS12,
            TlsVersion::Tls13 => &rustls::version::TLS13,
        })
        .collect();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| SecurityError::Tls(e.to_string()))?;
    let builder = match (&settings.truststore, settings.client_auth) {
        (Some(truststore), auth) if auth != ClientAuth::None => {
            let mut roots = RootCertStore::empty();
            let cas: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(truststore)
                .map_err(|e| bad(truststore, e.to_string()))?
                .collect::<Result<_, _>>()
                .map_err(|e| bad(truststore, e.to_string()))?;
            let (added, _ignored) = roots.add_parsable_certificates(cas);
            if added == 0 {
                return Err(bad(truststore, "no CA certificate".to_owned()));
            }
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            let verifier = if auth == ClientAuth::Requested {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier
                .build()
                .map_err(|e| bad(truststore, e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        _ => builder.with_no_client_auth(),
    };
    builder.with_single_cert(chain, key).map_err(|e| {
        bad(
            keystore,
            format!("the key does not fit the certificate: {e}"),
        )
    })
}

/// The principal of a client certificate: its subject as an RFC 2253 distinguished name
/// (`CN=alice,OU=eng,O=Acme`), what Kafka's default principal builder gives.
pub fn certificate_principal(certificate: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(certificate.as_ref()).ok()?;
    let mut parts = Vec::new();
    // RFC 2253 writes the most specific part first: the reverse of the encoded order.
    for rdn in parsed
        .subject()
        .iter()
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
    {
        let attributes: Vec<String> = rdn
            .iter()
            .map(|attr| {
                let oid = attr.attr_type().to_id_string();
                // The keywords RFC 2253 (and Java's X500Principal) use; others by OID.
                let name = match oid.as_str() {
                    "2.5.4.3" => "CN",
                    "2.5.4.11" => "OU",
                    "2.5.4.10" => "O",
                    "2.5.4.7" => "L",
                    "2.5.4.8" => "ST",
                    "2.5.4.6" => "C",
                    "2.5.4.9" => "STREET",
                    "0.9.2342.19200300.100.1.25" => "DC",
                    "0.9.2342.19200300.100.1.1" => "UID",
                    other => other,
                };
                let value = attr.as_str().map(escape).unwrap_or_default();
                format!("{name}={value}")
            })
            .collect();
        parts.push(attributes.join("+"));
    }
    Some(parts.join(","))
}

/// RFC 2253 escaping of an attribute value.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(
        dir: &Path,
        name: &str,
        cn: &str,
    ) -> (PathBuf, rcgen::CertifiedKey<rcgen::KeyPair>) {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Acme, Inc");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, format!("{}{}", key.serialize_pem(), cert.pem())).unwrap();
        (
            path,
            rcgen::CertifiedKey {
                cert,
                signing_key: key,
            },
        )
    }

    fn settings(keystore: PathBuf) -> TlsSettings {
        TlsSettings {
            keystore,
            truststore: None,
            client_auth: ClientAuth::None,
            versions: vec![TlsVersion::Tls12, TlsVersion::Tls13],
        }
    }

    /// A certificate made with `openssl req -x509 -subj "/C=NL/O=Acme, Inc/OU=eng/CN=alice"`
    /// (its key was thrown away); `openssl x509 -nameopt RFC2253` prints its subject as
    /// `CN=alice,OU=eng,O=Acme\, Inc,C=NL`.
    const ALICE: &str = "-----BEGIN CERTIFICATE-----
MIIB0zCCAXmgAwIBAgIUDai8QFZs6yTKUQvsh9HZNFXVcVQwCgYIKoZIzj0EAwIw
PzELMAkGA1UEBhMCTkwxEjAQBgNVBAoMCUFjbWUsIEluYzEMMAoGA1UECwwDZW5n
MQ4wDAYDVQQDDAVhbGljZTAeFw0yNjEyMDMyMDU4MDZaFw0zNjExMzAyMDU4MDZa
MD8xCzAJBgNVBAYTAk5MMRIwEAYDVQQKDAlBY21lLCBJbmMxDDAKBgNVBAsMA2Vu
ZzEOMAwGA1UEAwwFYWxpY2UwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAQ1fn3f
UugVfPqT1p1xOynCvVhnkXDL3W5hJUllmY/QkQ7kNC+8J0PE7zBuD/g984+kuybd
hP0rKpezX5Br6rAFo1MwUTAdBgNVHQ4EFgQUEzyZhJGB/T7FtDfxyFP57I0IJuww
HwYDVR0jBBgwFoAUEzyZhJGB/T7FtDfxyFP57I0IJuwwDwYDVR0TAQH/BAUwAwEB
/zAKBggqhkjOPQQDAgNIADBFAiBeMxcO34PuqrrB8JFGFjQkCM+DtQqKWLxRrpY8
q8/GKAIhAKFLF5i+Yu04LvL+fvgaA3xMND8nLTXNlvAYuAL5usIj
-----END CERTIFICATE-----
";

    #[test]
    fn principal_is_the_subject_as_openssl_prints_it_in_rfc2253() {
        let cert = CertificateDer::from_pem_slice(ALICE.as_bytes()).unwrap();
        assert_eq!(
            certificate_principal(&cert).unwrap(),
            "CN=alice,OU=eng,O=Acme\\, Inc,C=NL"
        );
    }

    #[test]
    fn a_bad_reload_keeps_the_old_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = write_pair(dir.path(), "server.pem", "broker");
        let context = TlsContext::load("SSL", &settings(path.clone())).unwrap();
        assert!(!context.reload(false), "unchanged files are not read again");
        std::fs::write(&path, b"garbage").unwrap();
        assert!(!context.reload(true));
        let before = Arc::as_ptr(&context.current.read().unwrap());
        write_pair(dir.path(), "server.pem", "broker2");
        assert!(context.reload(true));
        assert_ne!(before, Arc::as_ptr(&context.current.read().unwrap()));
    }

    #[test]
    fn missing_or_keyless_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        let error = TlsContext::load("SSL", &settings(missing.clone()))
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("nope.pem"), "{error}");
        let (path, pair) = write_pair(dir.path(), "cert-only.pem", "x");
        std::fs::write(&path, pair.cert.pem()).unwrap();
        let error = TlsContext::load("SSL", &settings(path))
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("private key"), "{error}");
    }
}
