//! `sluice topic create | list | describe | delete`.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;
use serde_json::json;
use sluice_client::admin::{
    AlterConfigOp, ConfigEntry, ConfigResource, ConfigSource, NewTopic, PartitionDescription,
    TopicDescription,
};
use sluice_client::Admin;

use crate::settings::Settings;
use crate::util::{self, or_dash, print_table, OutputFormat};

#[derive(Debug, Subcommand)]
pub enum TopicCommand {
    /// Create a topic.
    ///
    /// Example: sluice topic create orders --partitions 3 --config retention.ms=86400000
    Create {
        /// Topic name (letters, digits, '.', '_' and '-').
        name: String,
        /// Number of partitions. Records with the same key always go to the same
        /// partition, and order is kept within a partition. Default: the broker's
        /// num.partitions.
        #[arg(long, short = 'p', value_name = "N", value_parser = clap::value_parser!(i32).range(1..))]
        partitions: Option<i32>,
        /// Copies of each partition kept on different brokers. Default: the broker's
        /// default.replication.factor.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(i16).range(1..))]
        replication_factor: Option<i16>,
        /// A topic setting, e.g. retention.ms=86400000 (keep records one day) or
        /// cleanup.policy=compact. Repeat for several.
        #[arg(long = "config", short = 'c', value_name = "KEY=VALUE", value_parser = util::parse_key_value)]
        configs: Vec<(String, String)>,
    },
    /// List topics with their partition counts.
    ///
    /// Example: sluice topic list --internal
    List {
        /// Include internal topics such as __consumer_offsets.
        #[arg(long)]
        internal: bool,
    },
    /// Show a topic's partitions (leader, replicas, offsets, size on disk) and settings.
    ///
    /// LEADER is the broker that takes writes and reads for the partition (- while it has
    /// none: the partition is offline), EPOCH its leader epoch (bumped at every change of
    /// leader), REPLICAS the brokers holding a copy, ISR the in-sync replicas (caught up
    /// with the leader), OFFLINE the replicas on a broker that is down or a failed disk.
    /// STATUS says "under-replicated" when the ISR is smaller than REPLICAS (a copy is
    /// behind or down) and "offline" without a leader. START is the oldest offset still
    /// stored, END the offset the next record will get; END - START records are readable.
    ///
    /// Examples:
    ///
    ///   sluice topic describe orders
    ///   sluice topic describe orders --all-configs
    ///   sluice topic describe orders --under-replicated
    ///   sluice topic describe orders --format json | jq '.partitions[].end_offset'
    #[command(verbatim_doc_comment)]
    Describe {
        name: String,
        /// Show every setting, not only those set on the topic.
        #[arg(long)]
        all_configs: bool,
        /// Only the partitions whose ISR is smaller than their replica set
        /// (kafka-topics.sh --under-replicated-partitions).
        #[arg(long)]
        under_replicated: bool,
        /// Output format: tables, or one JSON document.
        #[arg(long, value_enum, default_value = "text")]
        format: OutputFormat,
    },
    /// Delete a topic and all its records.
    ///
    /// Example: sluice topic delete scratch
    Delete { name: String },
    /// Change a topic's settings (IncrementalAlterConfigs): set some, return others to the
    /// broker's default.
    ///
    /// Example: sluice topic alter-config orders --set retention.ms=3600000 --delete cleanup.policy
    #[command(group(clap::ArgGroup::new("change").required(true).multiple(true).args(["set", "delete"])))]
    AlterConfig {
        name: String,
        /// A setting to change, KEY=VALUE. Repeat for several.
        #[arg(long, value_name = "KEY=VALUE", value_parser = util::parse_key_value)]
        set: Vec<(String, String)>,
        /// A setting to return to the broker's default. Repeat for several.
        #[arg(long, value_name = "KEY")]
        delete: Vec<String>,
    },
    /// Grow a topic to N partitions (partitions are never removed; keys may map to other
    /// partitions afterwards, as in Kafka).
    ///
    /// Example: sluice topic add-partitions orders --to 6
    AddPartitions {
        name: String,
        /// The total number of partitions afterwards.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(i32).range(1..))]
        to: i32,
    },
}

pub async fn run(settings: &Settings, command: TopicCommand) -> Result<ExitCode> {
    let admin = Admin::new(settings.connect().await?);
    match command {
        TopicCommand::Create {
            name,
            partitions,
            replication_factor,
            configs,
        } => {
            admin
                .create_topics(&[NewTopic {
                    name: name.clone(),
                    partitions,
                    replication_factor,
                    configs,
                }])
                .await?;
            let shape = admin.client().with_metadata(|m| {
                m.topic(&name).map(|t| {
                    let rf = t.partitions.first().map_or(0, |p| p.replicas.len());
                    (t.partitions.len(), rf)
                })
            });
            match shape {
                Some((n, rf)) if rf > 0 => {
                    outln!("created topic {name} with {n} partition(s), replication factor {rf}")
                }
                Some((n, _)) => outln!("created topic {name} with {n} partition(s)"),
                None => outln!("created topic {name}"),
            }
        }
        TopicCommand::List { internal } => {
            let topics = admin.list_topics(internal).await?;
            let rows: Vec<Vec<String>> = topics
                .iter()
                .map(|t| vec![t.name.clone(), t.partitions.to_string()])
                .collect();
            print_table(&["TOPIC", "PARTITIONS"], &rows);
        }
        TopicCommand::Describe {
            name,
            all_configs,
            under_replicated,
            format,
        } => {
            let mut topic = admin
                .describe_topic(&name)
                .await
                .with_context(|| format!("cannot describe topic {name:?}"))?;
            let total = topic.partitions.len();
            let under = topic
                .partitions
                .iter()
                .filter(|p| p.is_under_replicated())
                .count();
            if under_replicated {
                topic.partitions.retain(|p| p.is_under_replicated());
            }
            if format == OutputFormat::Json {
                let document = describe_json(&topic, all_configs);
                outln!("{}", serde_json::to_string_pretty(&document)?);
                return Ok(ExitCode::SUCCESS);
            }
            outln!("Topic:      {}", topic.name);
            if !topic.id.is_nil() {
                outln!("Topic id:   {}", topic.id);
            }
            outln!("Partitions: {total}");
            outln!("Under-replicated: {under}");
            let records: i64 = topic
                .partitions
                .iter()
                .map(|p| (p.end_offset - p.start_offset).max(0))
                .sum();
            outln!("Records:    {records}");
            if topic.sizes_known {
                let bytes: i64 = topic.partitions.iter().filter_map(|p| p.size_bytes).sum();
                outln!(
                    "Size:       {} ({bytes} bytes)",
                    util::human_bytes(bytes as f64)
                );
            }
            outln!();
            let mut header = vec![
                "PARTITION",
                "LEADER",
                "EPOCH",
                "REPLICAS",
                "ISR",
                "OFFLINE",
                "STATUS",
                "START",
                "END",
            ];
            if topic.sizes_known {
                header.push("SIZE");
            }
            let join = |ids: &[i32]| {
                if ids.is_empty() {
                    "-".to_owned()
                } else {
                    ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
                }
            };
            let rows: Vec<Vec<String>> = topic
                .partitions
                .iter()
                .map(|p| {
                    let mut row = vec![
                        p.partition.to_string(),
                        or_dash(p.leader),
                        or_dash(p.leader_epoch),
                        join(&p.replicas),
                        join(&p.isr),
                        join(&p.offline_replicas),
                        status(p).to_owned(),
                        p.start_offset.to_string(),
                        p.end_offset.to_string(),
                    ];
                    if topic.sizes_known {
                        row.push(or_dash(p.size_bytes));
                    }
                    row
                })
                .collect();
            if under_replicated && rows.is_empty() {
                outln!("(no under-replicated partition)");
            } else {
                print_table(&header, &rows);
            }
            if !topic.sizes_known {
                outln!("(size on disk not shown: the broker does not support DescribeLogDirs)");
            }
            outln!();
            let shown = shown_configs(&topic, all_configs);
            if shown.is_empty() {
                outln!("Configs: none set on the topic (--all-configs shows the defaults)");
            } else {
                outln!("Configs:");
                let rows: Vec<Vec<String>> = shown
                    .iter()
                    .map(|c| {
                        let value = if c.sensitive {
                            "(sensitive)".to_owned()
                        } else {
                            c.value.clone().unwrap_or_else(|| "-".into())
                        };
                        let source = source_text(c.source);
                        vec![format!("  {}", c.name), value, source]
                    })
                    .collect();
                print_table(&["  NAME", "VALUE", "SOURCE"], &rows);
            }
        }
        TopicCommand::Delete { name } => {
            // Kafka's brokers refuse it as a malformed request; say what it is instead.
            if let Some(what) = internal_topic(&name) {
                anyhow::bail!("{name} is an internal topic ({what}) and cannot be deleted");
            }
            admin.delete_topics(std::slice::from_ref(&name)).await?;
            outln!("deleted topic {name}");
        }
        TopicCommand::AlterConfig { name, set, delete } => {
            let ops: Vec<AlterConfigOp> = set
                .iter()
                .map(|(k, v)| AlterConfigOp::Set(k.clone(), v.clone()))
                .chain(delete.iter().map(|k| AlterConfigOp::Delete(k.clone())))
                .collect();
            admin
                .alter_configs(&ConfigResource::Topic(name.clone()), &ops)
                .await?;
            for (k, v) in &set {
                outln!("{name}: {k}={v}");
            }
            for k in &delete {
                outln!("{name}: {k} back to the default");
            }
        }
        TopicCommand::AddPartitions { name, to } => {
            admin.create_partitions(&name, to).await?;
            outln!("topic {name} now has {to} partitions");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What an internal topic holds, for the topics Kafka and Sluice keep for themselves.
fn internal_topic(name: &str) -> Option<&'static str> {
    match name {
        "__consumer_offsets" => Some("the consumer groups' committed offsets"),
        "__transaction_state" => Some("the transaction coordinators' state"),
        "__cluster_metadata" => Some("the cluster's metadata log"),
        _ => None,
    }
}

/// A partition's state in words: offline (no leader), under-replicated (ISR smaller than
/// the replicas) or ok.
fn status(p: &PartitionDescription) -> &'static str {
    if p.leader.is_none() {
        "offline"
    } else if p.is_under_replicated() {
        "under-replicated"
    } else {
        "ok"
    }
}

/// The configs `topic describe` shows: those set on the topic, or all.
fn shown_configs(topic: &TopicDescription, all: bool) -> Vec<&ConfigEntry> {
    topic
        .configs
        .iter()
        .filter(|c| all || c.source == ConfigSource::Topic)
        .collect()
}

/// Where a config value comes from, in words.
fn source_text(source: ConfigSource) -> String {
    match source {
        ConfigSource::Topic => "topic".to_owned(),
        ConfigSource::Default => "default".to_owned(),
        ConfigSource::StaticBroker => "broker config".to_owned(),
        ConfigSource::DynamicBroker | ConfigSource::DynamicDefaultBroker => {
            "broker (dynamic)".to_owned()
        }
        ConfigSource::Other(n) => format!("source {n}"),
    }
}

/// `topic describe --format json`: the topic, its partitions and the configs shown.
fn describe_json(topic: &TopicDescription, all_configs: bool) -> serde_json::Value {
    json!({
        "name": topic.name,
        "id": (!topic.id.is_nil()).then(|| topic.id.to_string()),
        "internal": topic.internal,
        "under_replicated_partitions": topic.partitions.iter().filter(|p| p.is_under_replicated()).count(),
        "partitions": topic.partitions.iter().map(|p| json!({
            "partition": p.partition,
            "leader": p.leader,
            "leader_epoch": p.leader_epoch,
            "replicas": p.replicas,
            "isr": p.isr,
            "offline_replicas": p.offline_replicas,
            "under_replicated": p.is_under_replicated(),
            "status": status(p),
            "start_offset": p.start_offset,
            "end_offset": p.end_offset,
            "size_bytes": p.size_bytes,
        })).collect::<Vec<_>>(),
        "configs": shown_configs(topic, all_configs).iter().map(|c| json!({
            "name": c.name,
            "value": if c.sensitive { None } else { c.value.clone() },
            "source": source_text(c.source),
            "read_only": c.read_only,
            "sensitive": c.sensitive,
        })).collect::<Vec<_>>(),
    })
}
