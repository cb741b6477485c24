//! `sluice group list | describe | reset-offsets | delete | delete-offsets`.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Result;
use clap::{ArgGroup, Subcommand};
use sluice_client::admin::ResetTo;
use sluice_client::Admin;

use crate::admin_api::AdminApi;
use crate::settings::Settings;
use crate::util::{self, or_dash, print_table};

#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// List consumer groups, with their state and type.
    ///
    /// Example: sluice group list
    List,
    /// Show a group's members, their partitions, and per partition the committed
    /// offset, the log end, the lag (records not yet consumed) and the estimated delay
    /// (lag over the group's recent consume rate, from the broker's admin API; "-" when
    /// it cannot be reached, see --admin-url).
    ///
    /// Example: sluice group describe billing
    Describe {
        /// Group id.
        group: String,
    },
    /// Per partition: committed offset, log end, lag, consume rate and estimated delay;
    /// with --watch, refreshed like top until interrupted.
    ///
    /// Example: sluice group lag billing --watch
    Lag {
        /// Group id.
        group: String,
        /// Refresh every --interval seconds.
        #[arg(long, short = 'w')]
        watch: bool,
        /// Seconds between refreshes.
        #[arg(long, default_value_t = 2.0, value_parser = parse_interval)]
        interval: f64,
        /// Stop after this many refreshes (default: until interrupted).
        #[arg(long, value_name = "N")]
        count: Option<u64>,
    },
    /// Move a group's committed offsets for one topic, so its consumers replay or skip
    /// records. The group's consumers must be stopped first. Prints the plan (old and new
    /// offset, lag after) and changes nothing unless --execute is given, as Kafka's tool.
    ///
    /// Examples:
    ///
    ///   sluice group reset-offsets billing --topic orders --to-earliest            # the plan
    ///   sluice group reset-offsets billing --topic orders --to-earliest --execute  # apply it
    ///   sluice group reset-offsets billing --topic orders --to-offset 1000 --execute
    ///   sluice group reset-offsets billing --topic orders --to-time -1h --execute
    #[command(
        verbatim_doc_comment,
        group(ArgGroup::new("target").required(true).args(["to_earliest", "to_latest", "to_offset", "to_time"]))
    )]
    ResetOffsets {
        /// Group id.
        group: String,
        /// Topic whose partitions are reset (all of them).
        #[arg(long, short = 't')]
        topic: String,
        /// To the first offset still stored (replay everything).
        #[arg(long)]
        to_earliest: bool,
        /// To the end of the log (skip everything not yet consumed).
        #[arg(long)]
        to_latest: bool,
        /// To this offset in every partition (clamped to each partition's log).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(i64).range(0..))]
        to_offset: Option<i64>,
        /// To the first record at or after this time: RFC 3339, epoch milliseconds (or
        /// seconds), or a time before now such as -1h.
        #[arg(long, value_name = "TIME", value_parser = util::parse_time, allow_hyphen_values = true)]
        to_time: Option<i64>,
        /// Commit the new offsets (without it, only the plan is printed).
        #[arg(long, conflicts_with = "dry_run")]
        execute: bool,
        /// Only print the plan (the default; Kafka's flag, for scripts that say so).
        #[arg(long)]
        dry_run: bool,
    },
    /// Delete a group and all its committed offsets (it must have no active members).
    ///
    /// Example: sluice group delete billing
    Delete {
        /// Group id.
        group: String,
    },
    /// Delete a group's committed offsets for one topic (refused while a member is
    /// subscribed to it).
    ///
    /// Example: sluice group delete-offsets billing --topic orders
    DeleteOffsets {
        /// Group id.
        group: String,
        /// Topic whose committed offsets go (all its partitions).
        #[arg(long, short = 't')]
        topic: String,
    },
}

pub async fn run(settings: &Settings, command: GroupCommand) -> Result<ExitCode> {
    let admin = Admin::new(settings.connect().await?);
    match command {
        GroupCommand::List => {
            let groups = admin.list_groups().await?;
            let rows: Vec<Vec<String>> = groups
                .iter()
                .map(|g| {
                    vec![
                        g.group_id.clone(),
                        or_dash(g.state.clone()),
                        or_dash(Some(g.protocol_type.clone()).filter(|t| !t.is_empty())),
                    ]
                })
                .collect();
            print_table(&["GROUP", "STATE", "TYPE"], &rows);
        }
        GroupCommand::Lag {
            group,
            watch,
            interval,
            count,
        } => {
            let api = AdminApi::new(settings);
            let terminal = std::io::stdout().is_terminal();
            let rounds = if watch { count.unwrap_or(u64::MAX) } else { 1 };
            for round in 0..rounds {
                if round > 0 {
                    tokio::time::sleep(std::time::Duration::from_secs_f64(interval)).await;
                }
                let description = admin.describe_group(&group).await?;
                let rates = delays(&api, &group).await;
                if watch {
                    // On a terminal, clear the screen and go home first, as top does.
                    outln!(
                        "{}Group {} ({}), {}",
                        if terminal { "\x1b[2J\x1b[H" } else { "" },
                        description.group_id,
                        description.state,
                        util::format_time(now_ms())
                    );
                }
                print_lag(&description.offsets, &rates);
                if let Err(e) = &rates {
                    outln!("Delay: not available ({e})");
                }
                if watch && !terminal {
                    outln!();
                }
            }
        }
        GroupCommand::Describe { group } => {
            let description = admin.describe_group(&group).await?;
            let rates = delays(&AdminApi::new(settings), &group).await;
            outln!("Group:    {}", description.group_id);
            outln!("State:    {}", description.state);
            if !description.protocol.is_empty() {
                outln!("Assignor: {}", description.protocol);
            }
            outln!("Members:  {}", description.members.len());
            if !description.members.is_empty() {
                outln!();
                let rows: Vec<Vec<String>> = description
                    .members
                    .iter()
                    .map(|m| {
                        let partitions = m
                            .assignment
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(",");
                        vec![
                            m.member_id.clone(),
                            m.client_id.clone(),
                            m.client_host.clone(),
                            if partitions.is_empty() {
                                "-".into()
                            } else {
                                partitions
                            },
                        ]
                    })
                    .collect();
                print_table(&["MEMBER", "CLIENT ID", "HOST", "PARTITIONS"], &rows);
            }
            outln!();
            print_lag(&description.offsets, &rates);
            if let Err(e) = &rates {
                outln!("Delay: not available ({e})");
            }
        }
        GroupCommand::ResetOffsets {
            group,
            topic,
            to_earliest,
            to_latest,
            to_offset,
            to_time,
            execute,
            dry_run: _,
        } => {
            let to = match (to_earliest, to_latest, to_offset, to_time) {
                (true, _, _, _) => ResetTo::Earliest,
                (_, true, _, _) => ResetTo::Latest,
                (_, _, Some(n), _) => ResetTo::Offset(n),
                (_, _, _, Some(ms)) => ResetTo::Timestamp(ms),
                _ => {
                    anyhow::bail!("give one of --to-earliest, --to-latest, --to-offset, --to-time")
                }
            };
            let plan = admin.plan_group_offset_reset(&group, &topic, to).await?;
            if !plan.group_exists {
                eprintln!(
                    "warning: group {group:?} does not exist yet: applying creates its committed offsets"
                );
            }
            if execute {
                admin.apply_group_offset_reset(&plan).await?;
            }
            let rows: Vec<Vec<String>> = plan
                .changes
                .iter()
                .map(|c| {
                    vec![
                        c.partition.topic.clone(),
                        c.partition.partition.to_string(),
                        or_dash(c.previous),
                        c.new.to_string(),
                        (c.log_end - c.new).max(0).to_string(),
                    ]
                })
                .collect();
            print_table(&["TOPIC", "PARTITION", "OLD", "NEW", "LAG-AFTER"], &rows);
            if !execute {
                eprintln!("nothing changed (a plan only): add --execute to commit these offsets");
            }
        }
        GroupCommand::Delete { group } => {
            admin.delete_group(&group).await?;
            outln!("deleted group {group}");
        }
        GroupCommand::DeleteOffsets { group, topic } => {
            let partitions = admin.delete_group_offsets(&group, &topic).await?;
            outln!("deleted the committed offsets of group {group} for {topic} ({partitions} partition(s))");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn parse_interval(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(seconds) if (0.1..=3600.0).contains(&seconds) => Ok(seconds),
        _ => Err("must be a number of seconds between 0.1 and 3600".to_owned()),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Consume rate and estimated delay per (topic, partition), from the coordinator's
/// admin API (None: the broker has no estimate, e.g. no replica of the partition).
type Rates = BTreeMap<(String, i32), (Option<f64>, Option<f64>)>;

async fn delays(api: &AdminApi, group: &str) -> anyhow::Result<Rates> {
    let answer = api
        .get(&format!("/v1/groups/{}", percent_encode(group)))
        .await?;
    let mut rates = Rates::new();
    for p in answer["partitions"].as_array().into_iter().flatten() {
        let (Some(topic), Some(partition)) = (p["topic"].as_str(), p["partition"].as_i64()) else {
            continue;
        };
        rates.insert(
            (topic.to_owned(), partition as i32),
            (p["consume_rate"].as_f64(), p["delay_seconds"].as_f64()),
        );
    }
    Ok(rates)
}

/// A path segment with everything but unreserved characters percent-encoded.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Seconds as a short duration: 850ms, 12.5s, 3m20s, 2h05m.
fn human_seconds(seconds: f64) -> String {
    if seconds < 1.0 {
        format!("{:.0}ms", seconds * 1000.0)
    } else if seconds < 60.0 {
        format!("{seconds:.1}s")
    } else if seconds < 3600.0 {
        format!("{}m{:02}s", seconds as u64 / 60, seconds as u64 % 60)
    } else {
        format!("{}h{:02}m", seconds as u64 / 3600, seconds as u64 / 60 % 60)
    }
}

fn print_lag(offsets: &[sluice_client::admin::GroupOffset], rates: &anyhow::Result<Rates>) {
    if offsets.is_empty() {
        outln!("No committed offsets.");
        return;
    }
    let rates = rates.as_ref().ok();
    let rows: Vec<Vec<String>> = offsets
        .iter()
        .map(|o| {
            let rate =
                rates.and_then(|r| r.get(&(o.partition.topic.clone(), o.partition.partition)));
            vec![
                o.partition.topic.clone(),
                o.partition.partition.to_string(),
                or_dash(o.committed),
                or_dash(o.end_offset),
                or_dash(o.lag),
                or_dash(rate.and_then(|(r, _)| r.map(|r| format!("{r:.1}/s")))),
                or_dash(rate.and_then(|(_, d)| d.map(human_seconds))),
                or_dash(o.member.clone()),
            ]
        })
        .collect();
    print_table(
        &[
            "TOPIC",
            "PARTITION",
            "COMMITTED",
            "END",
            "LAG",
            "RATE",
            "DELAY",
            "MEMBER",
        ],
        &rows,
    );
    let total: i64 = offsets.iter().filter_map(|o| o.lag).sum();
    outln!();
    outln!("Total lag: {total} record(s)");
}
