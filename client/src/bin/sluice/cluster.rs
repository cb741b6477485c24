//! `sluice cluster describe`: the brokers and the metadata quorum.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use clap::Subcommand;
use serde_json::{json, Value};
use sluice_client::admin::{
    BrokerReplicaCounts, ClusterDescription, ClusterSource, FollowerLag, QuorumDescription,
    QuorumReplica,
};
use sluice_client::Admin;

use crate::settings::Settings;
use crate::util::{or_dash, print_table, OutputFormat};

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Show the cluster: its id, the brokers (endpoint, rack, fenced or not, and how many
    /// partitions each leads and follows), and the metadata quorum (the active
    /// controller, and how far each voter and observer lags behind it).
    ///
    /// LEADS is the number of partitions a broker leads, FOLLOWS the number it holds a
    /// follower replica of, OUT OF SYNC how many of those are not in the ISR (the copy
    /// is behind its leader, or the broker is down): under-replicated partitions.
    /// BEHIND is how many records its follower replicas are below their partitions' high
    /// watermarks, summed (DescribeLogDirs' offset lag; "-" when the broker could not be
    /// asked; Kafka's brokers always report 0 there).
    ///
    /// LAG is the active controller's metadata log end minus the node's: 0 means it has
    /// every change. LAST FETCH and LAST CAUGHT UP say when the controller last heard
    /// from the node and when the node last had everything.
    ///
    /// Example: sluice cluster describe --format json | jq .quorum.leader_id
    #[command(verbatim_doc_comment)]
    Describe {
        /// Output format: a table, or one JSON document.
        #[arg(long, value_enum, default_value = "text")]
        format: OutputFormat,
    },
}

pub async fn run(settings: &Settings, command: ClusterCommand) -> Result<ExitCode> {
    let admin = Admin::new(settings.connect().await?);
    match command {
        ClusterCommand::Describe { format } => describe(&admin, format).await,
    }
}

async fn describe(admin: &Admin, format: OutputFormat) -> Result<ExitCode> {
    let cluster = admin
        .describe_cluster()
        .await
        .context("cannot describe the cluster")?;
    // A cluster that cannot answer DescribeQuorum (no KRaft quorum, an older broker) is
    // still described; any other failure is reported after what could be shown.
    let counts = admin
        .broker_replica_counts()
        .await
        .context("cannot count the brokers' partitions")?;
    let lags = admin
        .follower_lags()
        .await
        .context("cannot ask the brokers how far behind their replicas are")?;
    let (quorum, quorum_error) = match admin.describe_quorum().await {
        Ok(quorum) => (Some(quorum), None),
        Err(e) if e.is_unsupported() => (None, None),
        Err(e) => (None, Some(e)),
    };
    match format {
        OutputFormat::Text => print_text(
            &cluster,
            &counts,
            &lags,
            quorum.as_ref(),
            quorum_error.is_some(),
        ),
        OutputFormat::Json => {
            let document = to_json(
                &cluster,
                &counts,
                &lags,
                quorum.as_ref(),
                quorum_error.as_ref().map(|e| e.to_string()),
            );
            outln!("{}", serde_json::to_string_pretty(&document)?);
        }
    }
    match quorum_error {
        Some(e) => Err(anyhow::Error::new(e).context("cannot describe the metadata quorum")),
        None => Ok(ExitCode::SUCCESS),
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// `-`, or how long ago `ms` was on this machine's clock (never negative: the leader's
/// clock may be a little ahead).
fn ago(ms: Option<i64>, now: i64) -> String {
    ms.map_or_else(
        || "-".to_owned(),
        |ms| format!("{} ms ago", now.saturating_sub(ms).max(0)),
    )
}

fn source_text(source: ClusterSource) -> String {
    match source {
        ClusterSource::DescribeCluster { version } => format!("DescribeCluster v{version}"),
        ClusterSource::Metadata => "Metadata".to_owned(),
    }
}

fn print_text(
    cluster: &ClusterDescription,
    counts: &BTreeMap<i32, BrokerReplicaCounts>,
    lags: &BTreeMap<i32, Option<FollowerLag>>,
    quorum: Option<&QuorumDescription>,
    failed: bool,
) {
    outln!("Cluster id:        {}", or_dash(cluster.cluster_id.clone()));
    outln!("Controller id:     {}", or_dash(cluster.controller_id));
    if let Some(q) = quorum {
        let leader = q.leader_id.map_or_else(
            || "none (election in progress)".to_owned(),
            |id| format!("{id} (epoch {})", q.leader_epoch),
        );
        outln!("Active controller: {leader}");
    }
    outln!("Brokers:           {}", cluster.brokers.len());
    outln!();
    let rows: Vec<Vec<String>> = cluster
        .brokers
        .iter()
        .map(|b| {
            let c = counts.get(&b.id).copied().unwrap_or_default();
            vec![
                b.id.to_string(),
                b.host.clone(),
                b.port.to_string(),
                or_dash(b.rack.clone()),
                if b.fenced { "fenced" } else { "unfenced" }.to_owned(),
                c.leader.to_string(),
                c.follower.to_string(),
                c.out_of_sync.to_string(),
                or_dash(lags.get(&b.id).copied().flatten().map(|l| l.total)),
            ]
        })
        .collect();
    print_table(
        &[
            "BROKER",
            "HOST",
            "PORT",
            "RACK",
            "STATE",
            "LEADS",
            "FOLLOWS",
            "OUT OF SYNC",
            "BEHIND",
        ],
        &rows,
    );
    // Replicas on brokers the list does not show (fenced, with an older broker).
    let unlisted: Vec<String> = counts
        .iter()
        .filter(|(id, _)| !cluster.brokers.iter().any(|b| b.id == **id))
        .map(|(id, c)| {
            format!(
                "{id} (follows {}, {} out of sync)",
                c.follower, c.out_of_sync
            )
        })
        .collect();
    if !unlisted.is_empty() {
        outln!("Replicas on brokers not listed: {}", unlisted.join(", "));
    }
    if !cluster.includes_fenced {
        outln!(
            "(fenced brokers, if any, are not listed: the broker answered with {}, not \
             DescribeCluster v2)",
            source_text(cluster.source)
        );
    }
    outln!();
    let Some(q) = quorum else {
        if failed {
            outln!("Metadata quorum: unavailable");
        } else {
            outln!("Metadata quorum: not shown (the broker does not support DescribeQuorum)");
        }
        return;
    };
    outln!("Metadata quorum (__cluster_metadata-0):");
    outln!("  High watermark:  {}", q.high_watermark);
    outln!("  Max lag:         {}", or_dash(q.max_lag()));
    outln!();
    let now = now_ms();
    let row = |r: &QuorumReplica, role: &str| {
        let endpoints = q
            .endpoints_of(r.id)
            .iter()
            .map(|e| format!("{}://{}:{}", e.listener, e.host, e.port))
            .collect::<Vec<_>>()
            .join(",");
        vec![
            format!("  {}", r.id),
            role.to_owned(),
            if endpoints.is_empty() {
                "-".to_owned()
            } else {
                endpoints
            },
            or_dash(r.log_end_offset),
            or_dash(r.lag),
            ago(r.last_fetch_timestamp, now),
            ago(r.last_caught_up_timestamp, now),
        ]
    };
    let mut rows: Vec<Vec<String>> = q
        .voters
        .iter()
        .map(|r| {
            let role = if Some(r.id) == q.leader_id {
                "leader"
            } else {
                "follower"
            };
            row(r, role)
        })
        .collect();
    rows.extend(q.observers.iter().map(|r| row(r, "observer")));
    print_table(
        &[
            "  NODE",
            "ROLE",
            "ENDPOINT",
            "LOG END",
            "LAG",
            "LAST FETCH",
            "LAST CAUGHT UP",
        ],
        &rows,
    );
}

fn replica_json(r: &QuorumReplica) -> Value {
    json!({
        "id": r.id,
        "directory_id": r.directory_id.map(|d| d.to_string()),
        "log_end_offset": r.log_end_offset,
        "lag": r.lag,
        "last_fetch_timestamp_ms": r.last_fetch_timestamp,
        "last_caught_up_timestamp_ms": r.last_caught_up_timestamp,
    })
}

fn to_json(
    cluster: &ClusterDescription,
    counts: &BTreeMap<i32, BrokerReplicaCounts>,
    lags: &BTreeMap<i32, Option<FollowerLag>>,
    quorum: Option<&QuorumDescription>,
    quorum_error: Option<String>,
) -> Value {
    let quorum = quorum.map(|q| {
        json!({
            "leader_id": q.leader_id,
            "leader_epoch": q.leader_epoch,
            "high_watermark": q.high_watermark,
            "max_lag": q.max_lag(),
            "voters": q.voters.iter().map(|r| {
                let mut v = replica_json(r);
                v["endpoints"] = q.endpoints_of(r.id).iter().map(|e| json!({
                    "listener": e.listener, "host": e.host, "port": e.port,
                })).collect();
                v
            }).collect::<Vec<_>>(),
            "observers": q.observers.iter().map(replica_json).collect::<Vec<_>>(),
        })
    });
    json!({
        "cluster_id": cluster.cluster_id,
        "controller_id": cluster.controller_id,
        "source": source_text(cluster.source),
        "includes_fenced_brokers": cluster.includes_fenced,
        "brokers": cluster.brokers.iter().map(|b| {
            let c = counts.get(&b.id).copied().unwrap_or_default();
            let lag = lags.get(&b.id).copied().flatten();
            json!({
                "id": b.id,
                "host": b.host,
                "port": b.port,
                "rack": b.rack,
                "fenced": b.fenced,
                "leader_partitions": c.leader,
                "follower_partitions": c.follower,
                "out_of_sync_partitions": c.out_of_sync,
                "follower_lag_records": lag.map(|l| l.total),
                "max_follower_lag_records": lag.map(|l| l.max),
            })
        }).collect::<Vec<_>>(),
        "quorum": quorum,
        "quorum_error": quorum_error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_are_relative_and_never_negative() {
        assert_eq!(ago(None, 1000), "-");
        assert_eq!(ago(Some(900), 1000), "100 ms ago");
        assert_eq!(ago(Some(1200), 1000), "0 ms ago");
    }
}
