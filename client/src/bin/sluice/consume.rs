//! `sluice consume TOPIC`: print records as text or JSON lines.
//!
//! Without `--follow` the command stops at the end of the log as it was when it
//! started (each partition's high watermark then). With `--group` it reads as a member
//! of that consumer group, starts at the group's committed offsets and commits what it
//! has printed after every batch, so the next run continues where this one stopped.

use std::collections::HashMap;
use std::io::{ErrorKind, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use base64::Engine;
use clap::Args;
use serde::Serialize;
use sluice_client::consumer::{AutoOffsetReset, ConsumerRecord};
use sluice_client::metadata::TopicInfo;
use sluice_client::properties::Scope;
use sluice_client::{Consumer, ConsumerConfig, Error, OffsetSpec, TopicPartition};

use crate::settings::Settings;
use crate::template::Template;
use crate::util;
use crate::watch::{Verdict, Watch};

/// How records are printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// The value of each record, one per line (key, SEP, value with --key-separator).
    Text,
    /// One JSON object per record and line, with all fields.
    Json,
    /// A kcat-style template (`%k %v\n`); see [`Template`].
    Template(Template),
}

fn parse_format(text: &str) -> Result<Format, String> {
    match text {
        "text" => Ok(Format::Text),
        "json" => Ok(Format::Json),
        template if template.contains('%') => Template::parse(template).map(Format::Template),
        _ => Err(format!(
            "{text:?} is not a format: use text, json, or a template with % codes such as \
             '%t %p %o %T %k %v\\n'"
        )),
    }
}

/// Where to start reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartOffset {
    Earliest,
    Latest,
    At(i64),
    /// `-N`: N records before the end of each partition (kcat's `-o -N`).
    BeforeEnd(i64),
    /// `+N`: N records after the start of each partition (its log start offset).
    AfterStart(i64),
}

fn parse_offset(text: &str) -> Result<StartOffset, String> {
    let count = |n: &str| n.parse::<i64>().ok().filter(|&n| n >= 0);
    let parsed = match text {
        "earliest" | "beginning" => Some(StartOffset::Earliest),
        "latest" | "end" => Some(StartOffset::Latest),
        n => match (n.strip_prefix('-'), n.strip_prefix('+')) {
            (Some(back), _) => count(back).map(StartOffset::BeforeEnd),
            (_, Some(ahead)) => count(ahead).map(StartOffset::AfterStart),
            _ => count(n).map(StartOffset::At),
        },
    };
    parsed.ok_or_else(|| {
        format!(
            "{text:?} is not an offset: use a number >= 0, -N (N before the end), +N (N after \
             the start), earliest or latest"
        )
    })
}

/// Read records from a topic and print them to stdout
///
/// By default every partition is read from its first record to the current end, and
/// the command exits. Examples:
///
///   sluice consume orders                               # everything, then exit
///   sluice consume orders --follow                      # ... and keep waiting for more
///   sluice consume orders --partition 0 --offset 42     # replay partition 0 from 42
///   sluice consume orders --from-time 2024-05-01T12:00:00Z
///   sluice consume orders --count 10 --format json      # first 10 records as JSON
///   sluice consume orders --group billing               # resume where "billing" stopped
///   sluice consume orders --format '%p %o %k=%v\n'       # a template, as kcat's -f
///
/// Template codes: %t topic, %p partition, %o offset, %T timestamp (ms), %d timestamp
/// (RFC 3339), %k key, %K key length, %v (or %s) value, %S value length, %h headers
/// (k=v,...), %% a percent sign; \n \t \r are escapes, and nothing is added after the
/// template (end it with \n).
///
/// With --follow the command keeps reading; it says on stderr when the connection to a
/// broker is lost and regained, when a group join takes time, and when the topic is
/// deleted (it then exits with status 1, unless --wait-for-topic). On a terminal, a
/// status line shows records/s and the lag behind the log end.
///
/// JSON lines have: topic, partition, offset, timestamp (RFC 3339), timestamp_ms, key,
/// value, headers. Keys and values that are not UTF-8 text are base64-encoded and
/// marked with "key_encoding"/"value_encoding": "base64".
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct ConsumeArgs {
    /// Topic to read.
    pub topic: String,
    /// Read as a member of this consumer group: start at the group's committed offsets
    /// (or the beginning) and commit progress, so the next run resumes after the last
    /// record printed. Group members share the topic's partitions.
    #[arg(long, short = 'g', value_name = "GROUP", conflicts_with = "partition")]
    pub group: Option<String>,
    /// Read only this partition.
    #[arg(long, short = 'p', value_name = "P", value_parser = clap::value_parser!(i32).range(0..))]
    pub partition: Option<i32>,
    /// Start at this offset in each partition read: a number, -N (the last N records),
    /// +N (after the first N), earliest (the default; also "beginning") or latest (only
    /// records produced from now on; also "end").
    #[arg(long, short = 'o', value_name = "N|-N|+N|earliest|latest", value_parser = parse_offset,
          allow_hyphen_values = true, conflicts_with_all = ["from_time", "group"])]
    pub offset: Option<StartOffset>,
    /// Start at the first record at or after this time: RFC 3339
    /// (2024-05-01T12:00:00Z), milliseconds since the epoch (a number below 10^11 is
    /// read as seconds, with a note), or a time before now: -30s, -15m, -1h, -2d.
    #[arg(long, short = 't', value_name = "TIME", value_parser = util::parse_time,
          allow_hyphen_values = true, conflicts_with = "group")]
    pub from_time: Option<i64>,
    /// Stop after this many records.
    #[arg(long, short = 'n', value_name = "N")]
    pub count: Option<u64>,
    /// Keep waiting for new records instead of stopping at the end (Ctrl-C to stop).
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// With --follow, when the topic is deleted, wait for it to be created again (and
    /// read the new topic) instead of exiting with status 1.
    #[arg(long, requires = "follow")]
    pub wait_for_topic: bool,
    /// Output format: text, json, or a template such as '%p %o %k %v\n' (codes above).
    #[arg(long, value_name = "text|json|TEMPLATE", default_value = "text",
          value_parser = parse_format)]
    pub format: Format,
    /// In text format, print the key, then SEP, then the value (instead of only the value).
    #[arg(long, short = 'K', value_name = "SEP")]
    pub key_separator: Option<String>,
    /// In text format, print a null key or value (a tombstone) as NULL, so it differs from
    /// an empty one (kcat's -Z).
    #[arg(long = "show-null", short = 'Z')]
    pub show_null: bool,
    /// A consumer property, NAME=VALUE, as Kafka's console consumer takes it (the same
    /// as -X, checked to be a consumer or common property). Repeat for several.
    #[arg(long = "consumer-property", value_name = "NAME=VALUE", value_parser = util::parse_property)]
    pub consumer_properties: Vec<(String, String)>,
}

pub async fn run(settings: &Settings, args: ConsumeArgs) -> Result<ExitCode> {
    let settings = settings.with_own(Scope::Consumer, &args.consumer_properties);
    let (settings, config) = match settings.and_then(|s| {
        let config = consumer_config(&s, &args)?;
        Ok((s, config))
    }) {
        Ok(both) => both,
        Err(e) => {
            eprintln!("error: {e} (see --help)");
            return Ok(ExitCode::from(2));
        }
    };
    let group = config.group_id.clone();
    let client = settings.connect().await?;
    let topic = client.fetch_topic(&args.topic, false).await?;
    let partitions: Vec<TopicPartition> = match args.partition {
        Some(p) if topic.partition(p).is_some() => vec![TopicPartition::new(&args.topic, p)],
        Some(p) => anyhow::bail!(
            "topic {:?} has no partition {p} (it has {}: 0 to {})",
            args.topic,
            topic.partitions.len(),
            topic.partitions.len().saturating_sub(1)
        ),
        None => topic
            .partitions
            .iter()
            .map(|p| TopicPartition::new(&args.topic, p.partition))
            .collect(),
    };
    let mut consumer = Consumer::new(client.clone(), config)?;

    // The end of the log as of now: without --follow, stop there.
    let ends: HashMap<TopicPartition, i64> = consumer
        .offsets_for(&partitions, OffsetSpec::Latest)
        .await?
        .into_iter()
        .map(|(tp, o)| (tp, o.offset))
        .collect();

    if group.is_some() {
        consumer.subscribe(vec![args.topic.clone()])?;
    } else {
        consumer.assign(partitions.clone()).await?;
        match (args.offset, args.from_time) {
            (
                Some(
                    start @ (StartOffset::At(_)
                    | StartOffset::BeforeEnd(_)
                    | StartOffset::AfterStart(_)),
                ),
                _,
            ) => {
                for (tp, offset) in start_offsets(&consumer, &partitions, start).await? {
                    consumer.seek(&tp, offset)?;
                }
            }
            (Some(StartOffset::Latest), _) => {
                consumer.seek_to(&partitions, OffsetSpec::Latest).await?
            }
            (_, Some(ms)) => {
                consumer
                    .seek_to(&partitions, OffsetSpec::Timestamp(ms))
                    .await?
            }
            _ => consumer.seek_to(&partitions, OffsetSpec::Earliest).await?,
        }
    }

    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut printed = 0u64;
    let mut to_commit: HashMap<TopicPartition, i64> = HashMap::new();
    let mut interrupted = std::pin::pin!(tokio::signal::ctrl_c());
    let mut watch = Watch::new(
        &args.topic,
        group.as_deref(),
        args.wait_for_topic,
        args.follow,
    );
    let result = async {
        loop {
            if !args.follow && at_end(&consumer, &ends) {
                break;
            }
            if args.count.is_some_and(|n| printed >= n) {
                break;
            }
            // Ctrl-C ends a --follow gracefully: commits are made, the group is left.
            let was_joined = joined(&consumer);
            let records = tokio::select! {
                records = watch.poll(was_joined, consumer.poll(Duration::from_millis(500))) => records?,
                _ = &mut interrupted => break,
            };
            let written = watch.printing(records.len(), || {
                for record in &records {
                    if args.count.is_some_and(|n| printed >= n) {
                        break;
                    }
                    write_record(&mut out, record, &args)?;
                    printed += 1;
                    to_commit.insert(record.topic_partition(), record.offset + 1);
                }
                out.flush()
            });
            match written {
                Err(e) if e.kind() == ErrorKind::BrokenPipe => return Ok(false),
                other => other.context("cannot write to stdout")?,
            }
            let of_topic: Vec<TopicPartition> = consumer
                .assignment()
                .into_iter()
                .filter(|tp| tp.topic == args.topic)
                .collect();
            let is_joined = joined(&consumer);
            let verdict = tokio::select! {
                verdict = watch.check(&consumer, is_joined, printed) => verdict,
                _ = &mut interrupted => break,
            };
            match verdict {
                Verdict::Reading => {}
                Verdict::TopicDeleted if args.follow => anyhow::bail!(
                    "topic {:?} was deleted (--wait-for-topic waits for it to be created again)",
                    args.topic
                ),
                Verdict::TopicDeleted => anyhow::bail!("topic {:?} was deleted", args.topic),
                Verdict::WaitingForTopic => consumer.pause(&of_topic),
                Verdict::TopicRecreated(topic) => {
                    to_commit.clear(); // offsets in the deleted topic
                    read_recreated(&mut consumer, &topic, args.partition, &of_topic).await?;
                }
            }
            if group.is_some() && !to_commit.is_empty() {
                let offsets: Vec<(TopicPartition, i64)> = to_commit.drain().collect();
                commit(&mut consumer, &offsets).await?;
            }
        }
        Ok::<bool, anyhow::Error>(true)
    }
    .await;
    watch.finish();
    drop(out);
    consumer.close().await?;
    result?;
    Ok(ExitCode::SUCCESS)
}

/// The consumer's configuration: the CLI's defaults, then the properties, then the
/// dedicated flags. Properties that contradict how the command works are errors.
fn consumer_config(settings: &Settings, args: &ConsumeArgs) -> Result<ConsumerConfig, String> {
    let mut config = ConsumerConfig {
        auto_offset_reset: AutoOffsetReset::Earliest,
        fetch_max_wait: Duration::from_millis(250),
        ..ConsumerConfig::default()
    };
    config.group.heartbeat_interval = Duration::from_secs(1);
    config.group.session_timeout = Duration::from_secs(10);
    config.group.rebalance_timeout = Duration::from_secs(30);
    settings.properties.apply_to_consumer(&mut config);
    if settings.properties.contains("enable.auto.commit") {
        // Not an error: a properties file shared with other consumers may set it.
        eprintln!(
            "note: enable.auto.commit is ignored: sluice consume commits what it has \
             printed, after every batch, when reading with a group"
        );
    }
    // Commits are made explicitly, right after records are printed.
    config.enable_auto_commit = false;
    if args.group.is_some() {
        config.group_id = args.group.clone();
    } else if config.group_id.is_some()
        && (args.partition.is_some() || args.offset.is_some() || args.from_time.is_some())
    {
        return Err(
            "group.id reads as a group member, which cannot be combined with --partition, \
             --offset or --from-time"
                .into(),
        );
    }
    config.validate().map_err(|e| match e {
        Error::InvalidArgument(why) => why,
        other => other.to_string(),
    })?;
    Ok(config)
}

/// Whether the consumer knows its assignment: always outside a group, after a
/// completed join in one.
fn joined(consumer: &Consumer) -> bool {
    consumer
        .group()
        .is_none_or(|g| !g.needs_rejoin() && g.generation() >= 0)
}

/// Starts reading a topic created again after its deletion, from its beginning: the
/// positions and commits of the deleted topic mean nothing in the new one. `old` are the
/// partitions read before (paused since the deletion).
async fn read_recreated(
    consumer: &mut Consumer,
    topic: &TopicInfo,
    only: Option<i32>,
    old: &[TopicPartition],
) -> Result<()> {
    consumer.client().invalidate_topic(&topic.name);
    let partitions: Vec<TopicPartition> = match only {
        Some(p) if topic.partition(p).is_some() => vec![TopicPartition::new(&topic.name, p)],
        Some(p) => anyhow::bail!(
            "topic {:?} was created again without partition {p} (it has {})",
            topic.name,
            topic.partitions.len()
        ),
        None => topic
            .partitions
            .iter()
            .map(|p| TopicPartition::new(&topic.name, p.partition))
            .collect(),
    };
    consumer.resume(old);
    if consumer.group().is_none() {
        consumer.assign(partitions.clone()).await?;
        return Ok(consumer.seek_to(&partitions, OffsetSpec::Earliest).await?);
    }
    // In a group, the new topic's partitions come with a rebalance and start at the
    // group's committed offsets: commit each partition's start first, so the members
    // (this one, or others) begin there rather than at an old topic's offset.
    let starts = consumer
        .offsets_for(&partitions, OffsetSpec::Earliest)
        .await?;
    let offsets: Vec<(TopicPartition, i64)> = starts
        .into_iter()
        .map(|(tp, listed)| (tp, listed.offset))
        .collect();
    commit(consumer, &offsets).await?;
    let kept: Vec<TopicPartition> = old
        .iter()
        .filter(|tp| partitions.contains(tp))
        .cloned()
        .collect();
    consumer.seek_to(&kept, OffsetSpec::Earliest).await?;
    if let Some(group) = consumer.group() {
        group.request_rejoin();
    }
    Ok(())
}

/// Commits after printing; a rebalance that took partitions away is not an error (the
/// new owner continues from the last successful commit).
async fn commit(consumer: &mut Consumer, offsets: &[(TopicPartition, i64)]) -> Result<()> {
    match consumer.commit_offsets(offsets).await {
        Ok(()) | Err(Error::CommitFailed { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Whether every partition being read has reached the end recorded at the start.
fn at_end(consumer: &Consumer, ends: &HashMap<TopicPartition, i64>) -> bool {
    let assignment = consumer.assignment();
    if !joined(consumer) {
        return false; // not (re)joined yet: the assignment is not known
    }
    assignment.iter().all(|tp| {
        let end = ends.get(tp).copied().unwrap_or(0);
        consumer.position(tp).is_some_and(|p| p >= end)
    })
}

/// Where `--offset N` starts in each partition. For one partition, an offset outside
/// its log is an error (not a silent reset); across all partitions, it is clamped to
/// each partition's log (partitions shorter than N have nothing to print).
/// Where each partition starts for a numeric `start` (an offset, or one relative to the
/// start or end of each partition's log).
async fn start_offsets(
    consumer: &Consumer,
    partitions: &[TopicPartition],
    start_at: StartOffset,
) -> Result<Vec<(TopicPartition, i64)>> {
    let starts = consumer
        .offsets_for(partitions, OffsetSpec::Earliest)
        .await?;
    let ends = consumer.offsets_for(partitions, OffsetSpec::Latest).await?;
    let mut out = Vec::new();
    for tp in partitions {
        let start = starts.get(tp).map_or(0, |o| o.offset);
        let end = ends.get(tp).map_or(0, |o| o.offset).max(start);
        let offset = match start_at {
            StartOffset::BeforeEnd(n) => {
                out.push((tp.clone(), end.saturating_sub(n).max(start)));
                continue;
            }
            StartOffset::AfterStart(n) => {
                out.push((tp.clone(), start.saturating_add(n).min(end)));
                continue;
            }
            StartOffset::At(offset) => offset,
            StartOffset::Earliest => start,
            StartOffset::Latest => end,
        };
        if partitions.len() == 1 && !(start..=end).contains(&offset) {
            let holds = if end > start {
                format!("offsets {start} to {}", end - 1)
            } else {
                format!("no records (next offset {end})")
            };
            anyhow::bail!(
                "offset {offset} is outside partition {} of {:?}, which holds {holds}",
                tp.partition,
                tp.topic,
            );
        }
        out.push((tp.clone(), offset.clamp(start, end)));
    }
    Ok(out)
}

#[derive(Serialize)]
struct JsonHeader<'a> {
    key: &'a str,
    value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value_encoding: Option<&'static str>,
}

#[derive(Serialize)]
struct JsonRecord<'a> {
    topic: &'a str,
    partition: i32,
    offset: i64,
    timestamp: String,
    timestamp_ms: i64,
    key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_encoding: Option<&'static str>,
    value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value_encoding: Option<&'static str>,
    headers: Vec<JsonHeader<'a>>,
}

/// UTF-8 text as is; anything else base64-encoded, with the encoding to mark it.
fn text_or_base64(bytes: Option<&[u8]>) -> (Option<String>, Option<&'static str>) {
    match bytes {
        None => (None, None),
        Some(b) => match std::str::from_utf8(b) {
            Ok(s) => (Some(s.to_owned()), None),
            Err(_) => (
                Some(base64::engine::general_purpose::STANDARD.encode(b)),
                Some("base64"),
            ),
        },
    }
}

fn write_record(
    out: &mut impl Write,
    record: &ConsumerRecord,
    args: &ConsumeArgs,
) -> std::io::Result<()> {
    match &args.format {
        Format::Text => {
            let null: &[u8] = if args.show_null { b"NULL" } else { b"" };
            if let Some(sep) = &args.key_separator {
                out.write_all(record.key.as_deref().unwrap_or(null))?;
                out.write_all(sep.as_bytes())?;
            }
            out.write_all(record.value.as_deref().unwrap_or(null))?;
            out.write_all(b"\n")
        }
        Format::Template(template) => {
            let null: &[u8] = if args.show_null { b"NULL" } else { b"" };
            template.write(out, record, null)
        }
        Format::Json => {
            let (key, key_encoding) = text_or_base64(record.key.as_deref());
            let (value, value_encoding) = text_or_base64(record.value.as_deref());
            let json = JsonRecord {
                topic: &record.topic,
                partition: record.partition,
                offset: record.offset,
                timestamp: util::format_time(record.timestamp),
                timestamp_ms: record.timestamp,
                key,
                key_encoding,
                value,
                value_encoding,
                headers: record
                    .headers
                    .iter()
                    .map(|h| {
                        let (value, value_encoding) = text_or_base64(h.value.as_deref());
                        JsonHeader {
                            key: &h.key,
                            value,
                            value_encoding,
                        }
                    })
                    .collect(),
            };
            serde_json::to_writer(&mut *out, &json)?;
            out.write_all(b"\n")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use sluice_client::consumer::TimestampType;
    use sluice_client::Header;

    #[test]
    fn offsets_parse() {
        assert_eq!(parse_offset("earliest"), Ok(StartOffset::Earliest));
        assert_eq!(parse_offset("latest"), Ok(StartOffset::Latest));
        assert_eq!(parse_offset("42"), Ok(StartOffset::At(42)));
        assert_eq!(parse_offset("beginning"), Ok(StartOffset::Earliest));
        assert_eq!(parse_offset("end"), Ok(StartOffset::Latest));
        assert_eq!(parse_offset("-10"), Ok(StartOffset::BeforeEnd(10)));
        assert_eq!(parse_offset("+3"), Ok(StartOffset::AfterStart(3)));
        for bad in ["x", "-", "+", "--1", "+-1", "-x", "1.5"] {
            assert!(parse_offset(bad).is_err(), "{bad}");
        }
    }

    /// Arguments that only choose how records are printed.
    fn printing(format: Format, key_separator: Option<&str>, show_null: bool) -> ConsumeArgs {
        ConsumeArgs {
            topic: "t".into(),
            group: None,
            partition: None,
            offset: None,
            from_time: None,
            count: None,
            follow: false,
            wait_for_topic: false,
            format,
            key_separator: key_separator.map(str::to_owned),
            show_null,
            consumer_properties: Vec::new(),
        }
    }

    #[test]
    fn show_null_tells_a_null_key_or_value_from_an_empty_one() {
        let record = |key: Option<&'static [u8]>, value: Option<&'static [u8]>| ConsumerRecord {
            topic: "t".into(),
            partition: 0,
            offset: 0,
            timestamp: 0,
            timestamp_type: TimestampType::CreateTime,
            key: key.map(bytes::Bytes::from_static),
            value: value.map(bytes::Bytes::from_static),
            headers: Vec::new(),
        };
        let text = |show_null: bool, r: &ConsumerRecord| {
            let args = printing(Format::Text, Some(":"), show_null);
            let mut out = Vec::new();
            write_record(&mut out, r, &args).unwrap();
            String::from_utf8(out).unwrap()
        };
        assert_eq!(text(true, &record(None, Some(b"v"))), "NULL:v\n");
        assert_eq!(text(true, &record(Some(b""), Some(b"v"))), ":v\n");
        assert_eq!(text(true, &record(Some(b"k"), None)), "k:NULL\n");
        assert_eq!(text(false, &record(None, None)), ":\n");
    }

    #[test]
    fn json_marks_binary_as_base64() {
        let record = ConsumerRecord {
            topic: "t".into(),
            partition: 1,
            offset: 5,
            timestamp: 1_714_564_800_000,
            timestamp_type: TimestampType::CreateTime,
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from_static(&[0xff, 0x00])),
            headers: vec![Header {
                key: "h".into(),
                value: Some(Bytes::from_static(b"v")),
            }],
        };
        let args = printing(Format::Json, None, false);
        let mut out = Vec::new();
        write_record(&mut out, &record, &args).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"topic\":\"t\",\"partition\":1,\"offset\":5,\"timestamp\":\"2024-05-01T12:00:00.000Z\",\
             \"timestamp_ms\":1714564800000,\"key\":\"k\",\"value\":\"/wA=\",\"value_encoding\":\"base64\",\
             \"headers\":[{\"key\":\"h\",\"value\":\"v\"}]}\n"
        );
    }
}
