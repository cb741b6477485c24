//! `sluice broker status`: what the broker's admin API says about itself.

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use serde_json::Value;

use crate::admin_api::AdminApi;
use crate::settings::Settings;

#[derive(Debug, Subcommand)]
pub enum BrokerCommand {
    /// Version, uptime, listeners, data directory usage, topic, partition and group
    /// counts, from the broker's admin API (/v1/status; see --admin-url).
    ///
    /// Example: sluice broker status --admin-url http://127.0.0.1:9644
    Status {
        /// Print the JSON answer as it came.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(settings: &Settings, command: BrokerCommand) -> Result<ExitCode> {
    let api = AdminApi::new(settings);
    match command {
        BrokerCommand::Status { json } => {
            let status = api.get("/v1/status").await?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&status)?);
                return Ok(ExitCode::SUCCESS);
            }
            print_status(&status);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_status(s: &Value) {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    };
    let bytes = |v: &Value| v.as_f64().map_or("-".to_owned(), crate::util::human_bytes);
    outln!(
        "Node:       {} (cluster {})",
        text(&s["node_id"]),
        text(&s["cluster_id"])
    );
    outln!("Version:    {}", text(&s["version"]));
    outln!("Status:     {}", text(&s["status"]));
    let uptime = s["uptime_seconds"].as_f64().unwrap_or(0.0) as u64;
    outln!(
        "Uptime:     {}h {:02}m {:02}s",
        uptime / 3600,
        uptime / 60 % 60,
        uptime % 60
    );
    outln!("Roles:      {}", text(&s["process_roles"]));
    for l in s["listeners"].as_array().into_iter().flatten() {
        outln!(
            "Listener:   {} {} on {} (advertised {}), {} connection(s)",
            text(&l["name"]),
            text(&l["security_protocol"]),
            text(&l["address"]),
            text(&l["advertised"]),
            text(&l["connections_open"])
        );
    }
    let dir = &s["data_dir"];
    outln!(
        "Data dir:   {}: {} of logs, {} free of {}",
        text(&dir["path"]),
        bytes(&dir["log_bytes"]),
        bytes(&dir["filesystem_free_bytes"]),
        bytes(&dir["filesystem_total_bytes"])
    );
    outln!(
        "Topics:     {} ({} internal), {} partition(s)",
        text(&s["topics"]),
        text(&s["internal_topics"]),
        text(&s["partitions"])
    );
    outln!("Groups:     {} coordinated here", text(&s["groups"]));
    let process = &s["process"];
    outln!(
        "Process:    {} resident, {} open file(s)",
        bytes(&process["resident_memory_bytes"]),
        text(&process["open_fds"])
    );
}
