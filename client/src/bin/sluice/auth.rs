//! The connection flags every command shares: `--security-protocol`, `--sasl-mechanism`,
//! `--user`, `--password`, `--ca-file`, `--cert-file`, `--key-file`. Each is a shorthand
//! for a Kafka client property (`security.protocol`, `sasl.mechanism`, `sasl.username`,
//! `sasl.password`, `ssl.ca.location`, `ssl.certificate.location`, `ssl.key.location`).
//! A flag on the command line is applied after `-F` and `-X`, so it wins; a value from the
//! environment (`SLUICE_USER`, `SLUICE_PASSWORD`, `SLUICE_SECURITY_PROTOCOL`) before them,
//! so an explicit file or `-X` wins over the ambient environment, as for the bootstrap
//! address.

use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args};

#[derive(Debug, Args)]
pub struct SecurityArgs {
    /// How to connect: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL (security.protocol).
    #[arg(
        long,
        global = true,
        value_name = "PROTOCOL",
        env = "SLUICE_SECURITY_PROTOCOL"
    )]
    security_protocol: Option<String>,

    /// SASL mechanism: SCRAM-SHA-512 (the default), SCRAM-SHA-256 or PLAIN (sasl.mechanism).
    #[arg(long, global = true, value_name = "MECHANISM")]
    sasl_mechanism: Option<String>,

    /// User to log in as over SASL (sasl.username).
    #[arg(long, global = true, value_name = "NAME", env = "SLUICE_USER")]
    user: Option<String>,

    /// Password of --user (sasl.password); better given in $SLUICE_PASSWORD or a -F file,
    /// since command lines are visible to other users of the machine.
    #[arg(
        long,
        global = true,
        value_name = "PASSWORD",
        env = "SLUICE_PASSWORD",
        hide_env_values = true
    )]
    password: Option<String>,

    /// PEM file of the CA that signed the broker's certificate (ssl.ca.location); without
    /// it, the system's CA bundle.
    #[arg(long, global = true, value_name = "PATH")]
    ca_file: Option<PathBuf>,

    /// Client certificate (PEM) for brokers that require one (ssl.certificate.location).
    #[arg(long, global = true, value_name = "PATH", requires = "key_file")]
    cert_file: Option<PathBuf>,

    /// Private key (PEM) of --cert-file (ssl.key.location).
    #[arg(long, global = true, value_name = "PATH", requires = "cert_file")]
    key_file: Option<PathBuf>,
}

/// Connection settings as Kafka client properties, by where they came from.
#[derive(Debug, Default)]
pub struct SecurityProperties {
    /// From environment variables: applied before `-F` and `-X`.
    pub environment: Vec<(String, String)>,
    /// From flags: applied after them.
    pub command_line: Vec<(String, String)>,
}

impl SecurityArgs {
    /// The settings given, as Kafka client properties, split by source (`matches` says
    /// which came from the environment).
    pub fn properties(&self, matches: &ArgMatches) -> SecurityProperties {
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        let mut split = SecurityProperties::default();
        for (id, name, value) in [
            (
                "security_protocol",
                "security.protocol",
                self.security_protocol.clone(),
            ),
            (
                "sasl_mechanism",
                "sasl.mechanism",
                self.sasl_mechanism.clone(),
            ),
            ("user", "sasl.username", self.user.clone()),
            ("password", "sasl.password", self.password.clone()),
            ("ca_file", "ssl.ca.location", path(&self.ca_file)),
            (
                "cert_file",
                "ssl.certificate.location",
                path(&self.cert_file),
            ),
            ("key_file", "ssl.key.location", path(&self.key_file)),
        ] {
            let Some(value) = value else { continue };
            let into = match matches.value_source(id) {
                Some(ValueSource::EnvVariable) => &mut split.environment,
                _ => &mut split.command_line,
            };
            into.push((name.to_owned(), value));
        }
        split
    }
}
