//! The settings every command shares: where the brokers are, and the Kafka client
//! properties given with `-X key=value`, `--producer-property`/`--consumer-property`
//! and `-F FILE` (a Java `.properties` file, as kcat's `-F` and the Java tools'
//! `--command-config`).
//!
//! Precedence, lowest first: the file, then `-X`, then the command's own
//! `--producer-property`/`--consumer-property`, then the command's dedicated flags
//! (`--acks`, `--group`...). The bootstrap address comes from `--bootstrap` on the
//! command line, else `bootstrap.servers` (given explicitly, so it beats the ambient
//! environment), else `$SLUICE_BOOTSTRAP`, else 127.0.0.1:9092.

use std::path::Path;

use anyhow::Result;
use sluice_client::properties::{scope_of, Properties, Scope};
use sluice_client::{Client, ClientConfig};

/// The broker address when nothing names one.
const DEFAULT_BOOTSTRAP: &str = "127.0.0.1:9092";

/// What a command needs to reach the cluster and configure its client.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `--bootstrap`/`-b` as given on the command line.
    command_line_bootstrap: Option<String>,
    /// `$SLUICE_BOOTSTRAP`.
    environment_bootstrap: Option<String>,
    pub properties: Properties,
    /// `--admin-url`: the broker's HTTP admin API (see `admin_api`).
    pub admin_url: Option<String>,
}

impl Settings {
    /// Applies the properties from the environment, then reads the properties file (if
    /// any), then applies the `-X` pairs in order. Errors are one line, naming the file
    /// and line or the property.
    pub fn new(
        command_line_bootstrap: Option<String>,
        environment_bootstrap: Option<String>,
        environment: &[(String, String)],
        config_file: Option<&Path>,
        pairs: &[(String, String)],
    ) -> Result<Settings, String> {
        let mut properties = Properties::new();
        for (name, value) in environment {
            properties.set(name, value).map_err(|e| plain(&e))?;
        }
        if let Some(path) = config_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
            properties
                .read(&text)
                .map_err(|e| format!("config file {}: {}", path.display(), plain(&e)))?;
        }
        for (name, value) in pairs {
            properties.set(name, value).map_err(|e| plain(&e))?;
        }
        Ok(Settings {
            command_line_bootstrap,
            environment_bootstrap,
            properties,
            admin_url: None,
        })
    }

    /// The brokers to connect to (see the module docs for the order).
    pub fn bootstrap(&self) -> &str {
        self.command_line_bootstrap
            .as_deref()
            .or_else(|| self.properties.text("bootstrap.servers"))
            .or(self.environment_bootstrap.as_deref())
            .unwrap_or(DEFAULT_BOOTSTRAP)
    }

    /// These settings with a command's own `--producer-property`/`--consumer-property`
    /// pairs on top; a property of the other kind of client is an error.
    pub fn with_own(&self, scope: Scope, pairs: &[(String, String)]) -> Result<Settings, String> {
        let mut settings = self.clone();
        for (name, value) in pairs {
            match scope_of(name) {
                Some(other) if other != scope && other != Scope::Common => {
                    return Err(format!(
                        "{name} is a {} property, not a {} one",
                        scope_name(other),
                        scope_name(scope)
                    ));
                }
                _ => settings
                    .properties
                    .set(name, value)
                    .map_err(|e| plain(&e))?,
            }
        }
        Ok(settings)
    }

    /// Connects to the cluster (fails at once if no bootstrap address answers).
    pub async fn connect(&self) -> Result<Client> {
        let mut config = ClientConfig {
            client_id: "sluice-cli".to_owned(),
            ..ClientConfig::default()
        };
        self.properties.apply_to_client(&mut config);
        config.bootstrap = ClientConfig::new(self.bootstrap()).bootstrap;
        Ok(Client::connect(config).await?)
    }
}

fn scope_name(scope: Scope) -> &'static str {
    match scope {
        Scope::Common => "client",
        Scope::Producer => "producer",
        Scope::Consumer => "consumer",
    }
}

/// The library's "invalid argument: ..." without the prefix: on the command line the
/// argument is obvious.
fn plain(error: &sluice_client::Error) -> String {
    match error {
        sluice_client::Error::InvalidArgument(why) => why.clone(),
        other => other.to_string(),
    }
}
