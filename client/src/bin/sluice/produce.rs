//! `sluice produce TOPIC`: one record per input line, from stdin or a file.
//!
//! Lines are bytes (any encoding); the trailing `\n` (and a `\r` before it) is removed.
//! Delivery results are checked in order by a second task while reading goes on, so
//! memory stays bounded however large the input.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use sluice_client::metadata::TopicInfo;
use sluice_client::properties::Scope;
use sluice_client::{
    Acks, Client, Compression, DeliveryFuture, Error, Header, Producer, ProducerConfig,
    ProducerRecord,
};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use crate::settings::Settings;
use crate::util;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum AcksArg {
    /// Do not wait for the broker (fastest; failures go unnoticed; not idempotent).
    #[value(name = "0")]
    Zero,
    /// The partition leader has written the record (not idempotent).
    #[value(name = "1")]
    One,
    /// All in-sync replicas have the record (safest; idempotent).
    All,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CompressionArg {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

/// Write records to a topic, one per line of input
///
/// Examples:
///
///   echo "hello" | sluice produce greetings
///   sluice produce orders --file orders.txt
///   sluice produce users --key-separator : < users.txt     # "alice:{...}" -> key alice
///   sluice produce logs --compression zstd --header source=web < access.log
///
/// A topic that does not exist is created with the broker's defaults when the broker
/// allows it (auto.create.topics.enable, on by default), with a note on stderr.
/// Records over 1 MiB need a larger producer limit: -X max.request.size=BYTES (and a
/// topic whose max.message.bytes allows them).
///
/// A summary (records, bytes, time, rate) is printed to stderr. The exit status is
/// non-zero if any record could not be written.
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct ProduceArgs {
    /// Topic to write to (created with the broker's defaults if it does not exist and
    /// the broker allows that; `sluice topic create` chooses partitions and settings).
    pub topic: String,
    /// Split each line at the first SEP: the part before is the record's key, the part
    /// after its value. Records with the same key go to the same partition, in order.
    /// Lines without SEP are sent without a key.
    #[arg(long, short = 'K', value_name = "SEP", value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub key_separator: Option<String>,
    /// Send every record to this partition (default: chosen by key; records without a
    /// key are spread over the partitions).
    #[arg(long, short = 'p', value_name = "P", value_parser = clap::value_parser!(i32).range(0..))]
    pub partition: Option<i32>,
    /// When the broker confirms a record. With `all` (the default) the producer is
    /// idempotent: a batch retried after a lost answer or a broker restart is written
    /// once, in order. `0` and `1` turn idempotence off (as the Java client does when
    /// acks is not all), so a retry may write records twice. [default: all, or the
    /// acks property]
    #[arg(long, value_enum)]
    pub acks: Option<AcksArg>,
    /// Compress batches of records with this codec. [default: none, or the
    /// compression.type property]
    #[arg(long, short = 'z', value_enum)]
    pub compression: Option<CompressionArg>,
    /// A header added to every record, KEY=VALUE. Repeat for several.
    #[arg(long = "header", short = 'H', value_name = "K=V", value_parser = util::parse_key_value)]
    pub headers: Vec<(String, String)>,
    /// Read lines from this file instead of stdin.
    #[arg(long, short = 'f', value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// How long to wait for more records to fill a batch, in milliseconds. [default: 5,
    /// or the linger.ms property]
    #[arg(long, value_name = "MS")]
    pub linger_ms: Option<u64>,
    /// A producer property, NAME=VALUE, as Kafka's console producer takes it (the same
    /// as -X, checked to be a producer or common property). Repeat for several.
    #[arg(long = "producer-property", value_name = "NAME=VALUE", value_parser = util::parse_property)]
    pub producer_properties: Vec<(String, String)>,
}

/// Inputs larger than this get a progress bar (on a terminal).
const PROGRESS_THRESHOLD: u64 = 4 * 1024 * 1024;

pub async fn run(settings: &Settings, args: ProduceArgs) -> Result<ExitCode> {
    let configured = settings
        .with_own(Scope::Producer, &args.producer_properties)
        .and_then(|settings| {
            let config = producer_config(&settings, &args)?;
            Ok((settings, config))
        });
    let (settings, config) = match configured {
        Ok(both) => both,
        Err(e) => {
            eprintln!("error: {e} (see --help)");
            return Ok(ExitCode::from(2));
        }
    };
    let client = settings.connect().await?;
    let topic = topic_or_create(&client, &args.topic).await?;
    if let Some(p) = args.partition {
        if topic.partition(p).is_none() {
            anyhow::bail!(
                "topic {:?} has no partition {p} (it has {}: 0 to {})",
                args.topic,
                topic.partitions.len(),
                topic.partitions.len().saturating_sub(1)
            );
        }
    }
    let (input, size): (Box<dyn AsyncRead + Unpin + Send>, Option<u64>) = match &args.file {
        Some(path) => {
            let file = tokio::fs::File::open(path)
                .await
                .with_context(|| format!("cannot open {}", path.display()))?;
            let size = file.metadata().await.ok().map(|m| m.len());
            (Box::new(file), size)
        }
        None => (Box::new(tokio::io::stdin()), None),
    };
    let progress = size
        .filter(|&s| s > PROGRESS_THRESHOLD && std::io::stderr().is_terminal())
        .map(|s| {
            let bar = ProgressBar::new(s);
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar
        });

    let unconfirmed = config.acks == Acks::None;
    let producer = Producer::new(client, config)?;
    let headers: Vec<Header> = args
        .headers
        .iter()
        .map(|(k, v)| Header {
            key: k.clone(),
            value: Some(Bytes::from(v.clone().into_bytes())),
        })
        .collect();

    // Delivery results, checked in order while reading continues.
    let (deliveries, mut pending) = tokio::sync::mpsc::channel::<DeliveryFuture>(100_000);
    let checker = tokio::spawn(async move {
        let mut failed = 0u64;
        let mut first_error: Option<Error> = None;
        while let Some(delivery) = pending.recv().await {
            if let Err(e) = delivery.wait().await {
                failed += 1;
                first_error.get_or_insert(e);
            }
        }
        (failed, first_error)
    });

    let started = Instant::now();
    let topic_name: std::sync::Arc<str> = args.topic.as_str().into();
    let mut reader = BufReader::with_capacity(1 << 20, input);
    let separator = args.key_separator.as_deref().map(str::as_bytes);
    let (mut records, mut bytes, mut rejected) = (0u64, 0u64, 0u64);
    let mut first_rejection: Option<Error> = None;
    loop {
        let mut line = Vec::new();
        let read = reader
            .read_until(b'\n', &mut line)
            .await
            .context("cannot read the input")?;
        if read == 0 {
            break;
        }
        if let Some(bar) = &progress {
            bar.inc(read as u64);
        }
        if line.last() == Some(&b'\n') {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
        }
        let line = Bytes::from(line);
        let (key, value) = match separator.and_then(|sep| find(&line, sep).map(|i| (i, sep.len())))
        {
            Some((i, len)) => (Some(line.slice(..i)), line.slice(i + len..)),
            None => (None, line),
        };
        let size = (key.as_ref().map_or(0, Bytes::len) + value.len()) as u64;
        bytes += size;
        let record = ProducerRecord {
            topic: topic_name.clone(),
            partition: args.partition,
            key,
            value: Some(value),
            headers: headers.clone(),
            timestamp: None,
        };
        records += 1;
        match producer.send(record).await {
            Ok(delivery) => {
                if deliveries.send(delivery).await.is_err() {
                    anyhow::bail!("internal error: the delivery checker stopped");
                }
            }
            // A record the producer refuses by itself (too large): count it, go on.
            Err(e @ Error::InvalidArgument(_)) => {
                rejected += 1;
                // Never sent: not in the rates.
                bytes -= size;
                first_rejection.get_or_insert(e);
            }
            Err(e) => return Err(e.into()),
        }
    }
    producer.close().await?;
    drop(deliveries);
    let (failed, first_error) = checker.await.context("the delivery checker failed")?;
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    let elapsed = started.elapsed().as_secs_f64().max(1e-6);
    let sent = records - rejected;
    let failed = failed + rejected;
    eprintln!(
        "produced {} record(s), {} in {elapsed:.2} s{} to {}{}",
        records - failed,
        util::human_bytes(bytes as f64),
        rates(sent, bytes, elapsed),
        args.topic,
        if unconfirmed {
            " (acks=0: not confirmed)"
        } else {
            ""
        },
    );
    if failed > 0 {
        let too_large = first_rejection.is_some();
        let error = first_rejection.or(first_error);
        let mut reason = error.map_or_else(String::new, |e| {
            format!(": {}", util::error_line(&anyhow::Error::new(e)))
        });
        if too_large {
            reason.push_str(" (raise the limit with -X max.request.size=BYTES)");
        }
        eprintln!("error: {failed} of {records} record(s) failed{reason}");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// The producer's configuration: the CLI's defaults, then the properties, then the
/// dedicated flags; checked before anything is sent (or a topic created).
fn producer_config(settings: &Settings, args: &ProduceArgs) -> Result<ProducerConfig, String> {
    let mut config = ProducerConfig {
        // Unknown topics are created (or not) before producing, with a note.
        allow_auto_create_topics: false,
        // Not set: on with acks=all, off with acks 0 or 1 (see `--acks`).
        enable_idempotence: None,
        ..ProducerConfig::default()
    };
    settings.properties.apply_to_producer(&mut config);
    if let Some(acks) = args.acks {
        config.acks = match acks {
            AcksArg::Zero => Acks::None,
            AcksArg::One => Acks::Leader,
            AcksArg::All => Acks::All,
        };
    }
    if let Some(codec) = args.compression {
        config.compression = match codec {
            CompressionArg::None => Compression::None,
            CompressionArg::Gzip => Compression::Gzip,
            CompressionArg::Snappy => Compression::Snappy,
            CompressionArg::Lz4 => Compression::Lz4,
            CompressionArg::Zstd => Compression::Zstd,
        };
    }
    if let Some(ms) = args.linger_ms {
        config.linger = Duration::from_millis(ms);
    }
    match config.validate() {
        Ok(_) => Ok(config),
        Err(Error::InvalidArgument(why)) => Err(why),
        Err(other) => Err(other.to_string()),
    }
}

/// The topic's metadata. A topic that does not exist is created with the broker's
/// defaults if the broker allows it (as kcat and Kafka's console producer do), with a
/// note on stderr; otherwise the error says how to create it.
async fn topic_or_create(client: &Client, name: &str) -> Result<TopicInfo> {
    match client.fetch_topic(name, false).await {
        Err(Error::UnknownTopic { .. }) if !is_valid_topic_name(name) => anyhow::bail!(
            "topic {name:?} does not exist, and is not a valid topic name (at most 249 of \
             letters, digits, '.', '_' and '-')"
        ),
        Err(Error::UnknownTopic { .. }) => {}
        other => return Ok(other?),
    }
    let created = match client.fetch_topic(name, true).await {
        Ok(topic) if !topic.partitions.is_empty() => topic,
        // Created, leaders not elected yet: wait for them as a producer would.
        Ok(_) => {
            client
                .wait_for_topic(name, true, TOPIC_READY_TIMEOUT)
                .await?
        }
        Err(e) if e.is_retriable() => {
            client
                .wait_for_topic(name, true, TOPIC_READY_TIMEOUT)
                .await?
        }
        Err(Error::UnknownTopic { .. }) => {
            anyhow::bail!(
                "topic {name:?} does not exist and the broker does not create topics on \
                 produce (auto.create.topics.enable=false): create it with `sluice topic \
                 create {name}`"
            )
        }
        Err(other) => return Err(other.into()),
    };
    eprintln!(
        "note: created topic {name} with {} partition(s), the broker's defaults (it did \
         not exist; `sluice topic create` chooses partitions and settings)",
        created.partitions.len()
    );
    Ok(created)
}

/// How long a topic created on produce may take to get its partition leaders.
const TOPIC_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Kafka's rule for topic names, so a hint never suggests creating one the broker refuses.
fn is_valid_topic_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The summary's rates of what was sent, " (N records/s, B/s)"; nothing for a run too
/// short or too small for a rate to mean anything.
fn rates(sent: u64, bytes: u64, elapsed_s: f64) -> String {
    if sent < 100 || elapsed_s < 0.1 {
        return String::new();
    }
    format!(
        " ({:.0} records/s, {}/s)",
        sent as f64 / elapsed_s,
        util::human_bytes(bytes as f64 / elapsed_s)
    )
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    #[test]
    fn separator_search() {
        assert_eq!(super::find(b"a::b::c", b"::"), Some(1));
        assert_eq!(super::find(b"abc", b"x"), None);
        assert_eq!(super::find(b"", b":"), None);
    }

    #[test]
    fn topic_names_follow_kafkas_rule() {
        for ok in ["orders", "a.b_c-1", &"x".repeat(249)] {
            assert!(super::is_valid_topic_name(ok), "{ok}");
        }
        for bad in ["", ".", "..", "bad name", "ünï", "a/b", &"x".repeat(250)] {
            assert!(!super::is_valid_topic_name(bad), "{bad}");
        }
    }

    #[test]
    fn rates_only_for_runs_worth_a_rate() {
        // A few records in a few milliseconds: no "(0 records/s, 2 B/s)".
        assert_eq!(super::rates(1, 2, 0.003), "");
        assert_eq!(super::rates(5_000, 50_000, 0.05), "");
        assert_eq!(
            super::rates(1_000, 1_048_576, 0.5),
            " (2000 records/s, 2.0 MiB/s)"
        );
    }
}
