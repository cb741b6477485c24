//! Connecting, and the benchmark topic: create it when missing, delete it afterwards.

use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use sluice_client::admin::NewTopic;
use sluice_client::properties::{scope_of, Properties, Scope};
use sluice_client::{Admin, Client, ClientConfig, Error};

use crate::cli::CommonArgs;

/// The `-X` properties of this run, set once at start (one run per process).
static PROPERTIES: OnceLock<Properties> = OnceLock::new();

/// Checks and keeps the run's `-X` properties (client-wide ones only: a producer or
/// consumer property would be ignored, so it is refused).
pub fn set_properties(pairs: &[(String, String)]) -> Result<()> {
    let mut properties = Properties::new();
    for (name, value) in pairs {
        if scope_of(name).is_some_and(|scope| scope != Scope::Common) {
            bail!("-X {name}: only client-wide properties are taken here (use the flags)");
        }
        properties
            .set(name, value)
            .map_err(|e| anyhow::anyhow!("-X {name}: {e}"))?;
    }
    let _ = PROPERTIES.set(properties);
    Ok(())
}

/// The client settings every connection of a run uses.
pub fn client_config(bootstrap: &str, role: &str) -> ClientConfig {
    let mut config = ClientConfig {
        client_id: format!("sluice-bench-{role}"),
        ..ClientConfig::new(bootstrap)
    };
    if let Some(properties) = PROPERTIES.get() {
        properties.apply_to_client(&mut config);
        config.bootstrap = ClientConfig::new(bootstrap).bootstrap;
    }
    config
}

/// A connected client (fails at once when no broker answers).
pub async fn connect(bootstrap: &str, role: &str) -> Result<Client> {
    Client::connect(client_config(bootstrap, role))
        .await
        .with_context(|| format!("cannot reach the cluster at {bootstrap}"))
}

/// The topic's partition count, creating the topic first when it is missing and
/// `create` is set. An existing topic is used as it is (a differing `--partitions` is
/// reported on stderr).
pub async fn ensure(client: &Client, common: &CommonArgs, create: bool) -> Result<usize> {
    let name = &common.topic;
    match client.fetch_topic(name, false).await {
        Ok(info) => {
            let count = info.partitions.len();
            if create && count != common.partitions as usize {
                eprintln!(
                    "sluice-bench: topic {name} exists with {count} partitions (not --partitions {}); using it as it is",
                    common.partitions
                );
            }
            return Ok(count);
        }
        Err(Error::UnknownTopic { .. }) if create => {}
        Err(Error::UnknownTopic { .. }) => {
            bail!("topic {name} does not exist (produce to it first)")
        }
        Err(e) => return Err(e).with_context(|| format!("metadata of topic {name}")),
    }
    let topic = NewTopic {
        name: name.clone(),
        partitions: Some(common.partitions),
        replication_factor: common.replication_factor,
        configs: common.topic_configs.clone(),
    };
    let admin = Admin::new(client.clone());
    if let Err(e) = admin.create_topics(&[topic]).await {
        // Someone else may have created it meanwhile; only fail if it is still missing.
        if client.fetch_topic(name, false).await.is_err() {
            return Err(e).with_context(|| format!("cannot create topic {name}"));
        }
    }
    let info = client
        .wait_for_topic(name, false, Duration::from_secs(60))
        .await
        .with_context(|| format!("topic {name} was created but has no metadata"))?;
    Ok(info.partitions.len())
}

/// Deletes the topic (with `--delete-topic`); returns whether it is gone. Cleaning up
/// never costs the run its figures: a failure is reported on stderr and the report says
/// the topic was not deleted. "Unknown topic" counts as deleted: it is what a retried
/// delete hears when its first attempt worked but the answer came too late.
pub async fn delete(client: &Client, common: &CommonArgs) -> Result<bool> {
    if !common.delete_topic {
        return Ok(false);
    }
    match Admin::new(client.clone())
        .delete_topics(std::slice::from_ref(&common.topic))
        .await
    {
        Ok(()) | Err(Error::UnknownTopic { .. }) => Ok(true),
        Err(e) => {
            eprintln!("sluice-bench: cannot delete topic {}: {e}", common.topic);
            Ok(false)
        }
    }
}
