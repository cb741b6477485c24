//! The connection flags every command shares: `--security-protocol`, `--sasl-mechanism`,
//! `--user`, `--password`, `--ca-file`, `--cert-file`, `--key-file`. Each is a shorthand
//! for a Kafka client property (`security.protocol`, `sasl.mechanism`, `sasl.username`,
//! `sasl.password`, `ssl.ca.location`, `ssl.certificate.location`, `ssl.key.location`),
//! applied after `-F` and `-X`, so a flag wins.

use std::path::PathBuf;

use clap::Args;

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

impl SecurityArgs {
    /// The flags given, as Kafka client properties.
    pub fn properties(&self) -> Vec<(String, String)> {
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        [
            ("security.protocol", self.security_protocol.clone()),
            ("sasl.mechanism", self.sasl_mechanism.clone()),
            ("sasl.username", self.user.clone()),
            ("sasl.password", self.password.clone()),
            ("ssl.ca.location", path(&self.ca_file)),
            ("ssl.certificate.location", path(&self.cert_file)),
            ("ssl.key.location", path(&self.key_file)),
        ]
        .into_iter()
        .filter_map(|(name, value)| Some((name.to_owned(), value?)))
        .collect()
    }
}
