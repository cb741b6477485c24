//! `sluice topic create | list | describe | delete`.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;
use sluice_client::admin::{ConfigSource, NewTopic};
use sluice_client::Admin;

use crate::util::{self, or_dash, print_table};

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
        #[arg(long, short = 'p', value_name = "N")]
        partitions: Option<i32>,
        /// Copies of each partition kept on different brokers. Default: the broker's
        /// default.replication.factor.
        #[arg(long, value_name = "N")]
        replication_factor: Option<i16>,
        /// A topic setting, e.g. retention.ms=86400000 (keep records one day) or
        /// cleanup.policy=compact. Repeat for several.
        #[arg(long = "config", short = 'c', value_name = "KEY=VALUE", value_parser = util::parse_key_value)]
        configs: Vec<(String, String)>,
    },
    /// List topics with their partition counts.
    List {
        /// Include internal topics such as __consumer_offsets.
        #[arg(long)]
        internal: bool,
    },
    /// Show a topic's partitions (leader, offsets, size on disk) and settings.
    ///
    /// START is the oldest offset still stored, END the offset the next record will
    /// get; END - START records are readable.
    Describe {
        name: String,
        /// Show every setting, not only those set on the topic.
        #[arg(long)]
        all_configs: bool,
    },
    /// Delete a topic and all its records.
    Delete { name: String },
}

pub async fn run(bootstrap: &str, command: TopicCommand) -> Result<ExitCode> {
    let admin = Admin::new(util::connect(bootstrap).await?);
    match command {
        TopicCommand::Create {
            name,
            partitions,
            replication_factor,
            configs,
        } => {
            if partitions.is_some_and(|p| p < 1) {
                anyhow::bail!("--partitions must be at least 1");
            }
            admin
                .create_topics(&[NewTopic {
                    name: name.clone(),
                    partitions,
                    replication_factor,
                    configs,
                }])
                .await?;
            let count = admin
                .client()
                .with_metadata(|m| m.topic(&name).map(|t| t.partitions.len()));
            match count {
                Some(n) => outln!("created topic {name} with {n} partition(s)"),
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
        TopicCommand::Describe { name, all_configs } => {
            let topic = admin
                .describe_topic(&name)
                .await
                .with_context(|| format!("cannot describe topic {name:?}"))?;
            outln!("Topic:      {}", topic.name);
            if !topic.id.is_nil() {
                outln!("Topic id:   {}", topic.id);
            }
            outln!("Partitions: {}", topic.partitions.len());
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
            let mut header = vec!["PARTITION", "LEADER", "REPLICAS", "ISR", "START", "END"];
            if topic.sizes_known {
                header.push("SIZE");
            }
            let join = |ids: &[i32]| ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
            let rows: Vec<Vec<String>> = topic
                .partitions
                .iter()
                .map(|p| {
                    let mut row = vec![
                        p.partition.to_string(),
                        or_dash(p.leader),
                        join(&p.replicas),
                        join(&p.isr),
                        p.start_offset.to_string(),
                        p.end_offset.to_string(),
                    ];
                    if topic.sizes_known {
                        row.push(or_dash(p.size_bytes));
                    }
                    row
                })
                .collect();
            print_table(&header, &rows);
            if !topic.sizes_known {
                outln!("(size on disk not shown: the broker does not support DescribeLogDirs)");
            }
            outln!();
            let shown: Vec<_> = topic
                .configs
                .iter()
                .filter(|c| all_configs || c.source == ConfigSource::Topic)
                .collect();
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
                        let source = match c.source {
                            ConfigSource::Topic => "topic".to_owned(),
                            ConfigSource::Default => "default".to_owned(),
                            ConfigSource::StaticBroker => "broker config".to_owned(),
                            ConfigSource::DynamicBroker | ConfigSource::DynamicDefaultBroker => {
                                "broker (dynamic)".to_owned()
                            }
                            ConfigSource::Other(n) => format!("source {n}"),
                        };
                        vec![format!("  {}", c.name), value, source]
                    })
                    .collect();
                print_table(&["  NAME", "VALUE", "SOURCE"], &rows);
            }
        }
        TopicCommand::Delete { name } => {
            admin.delete_topics(std::slice::from_ref(&name)).await?;
            outln!("deleted topic {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
