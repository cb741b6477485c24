//! Command-line arguments of `sluice-bench`. Every setting also appears in the `--json`
//! output (`settings`), so a result file says exactly what produced it.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::{Serialize, Serializer};
use sluice_client::{Acks, Compression};

/// Load generator for any Kafka-API broker (Sluice, Apache Kafka, Redpanda...).
///
/// Prints a line per second while running and a summary table at the end (records/s,
/// MiB/s, latency percentiles, errors); `--json` prints the summary as JSON instead.
#[derive(Debug, Parser)]
#[command(name = "sluice-bench", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Tokio worker threads [default: one per CPU]
    #[arg(long, global = true, value_name = "N")]
    pub threads: Option<usize>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Produce records as fast as possible or at a --rate; latency is send to ack.
    Produce(ProduceArgs),
    /// Replay a topic from the earliest offset; measures how fast a log is read back.
    Consume(ConsumeArgs),
    /// Produce at a fixed --rate while consuming; latency is the record's intended send
    /// time to its receipt by the consumer.
    E2e(E2eArgs),
}

/// What every subcommand takes.
#[derive(Debug, Clone, Args, Serialize)]
pub struct CommonArgs {
    /// Broker(s) to bootstrap from, HOST:PORT[,HOST:PORT...]
    #[arg(long, env = "SLUICE_BOOTSTRAP", default_value = "127.0.0.1:9092")]
    pub bootstrap: String,
    /// Topic to use; created when missing (produce, e2e)
    #[arg(long, default_value = "sluice-bench")]
    pub topic: String,
    /// Partitions of the topic when it is created
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..))]
    pub partitions: i32,
    /// Replication factor when the topic is created [default: the broker's]
    #[arg(long)]
    pub replication_factor: Option<i16>,
    /// Topic config for a created topic, KEY=VALUE (repeatable)
    #[arg(long = "topic-config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub topic_configs: Vec<(String, String)>,
    /// Delete the topic when the run is over
    #[arg(long)]
    pub delete_topic: bool,
    /// Print the summary as one JSON object on stdout (progress still goes to stderr)
    #[arg(long)]
    pub json: bool,
    /// No per-second progress on stderr
    #[arg(long, short)]
    pub quiet: bool,
    /// Also measure this process (the broker): CPU seconds and resident memory
    #[arg(long, value_name = "PID")]
    pub broker_pid: Option<u32>,
    /// Free text copied into the JSON output (e.g. the broker's name)
    #[arg(long)]
    pub label: Option<String>,
    /// A Kafka client property for every connection, as `sluice -X`:
    /// security.protocol=SASL_SSL, sasl.mechanism=SCRAM-SHA-512, sasl.username=...,
    /// sasl.password=..., ssl.ca.location=... (repeatable; client-wide properties only)
    #[arg(short = 'X', long = "property", value_name = "NAME=VALUE", value_parser = parse_key_value)]
    #[serde(serialize_with = "without_secrets")]
    pub properties: Vec<(String, String)>,
}

/// The properties for the JSON output, with the password left out.
fn without_secrets<S: Serializer>(
    properties: &[(String, String)],
    s: S,
) -> Result<S::Ok, S::Error> {
    let shown: Vec<(String, String)> = properties
        .iter()
        .map(|(name, value)| {
            let value = if name.contains("password") {
                "***"
            } else {
                value
            };
            (name.clone(), value.to_owned())
        })
        .collect();
    shown.serialize(s)
}

/// How the producers behave.
#[derive(Debug, Clone, Args, Serialize)]
pub struct ProducerArgs {
    /// Producers, each with its own connection
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub producers: u64,
    /// Value size in bytes
    #[arg(long, default_value_t = 100)]
    pub record_size: usize,
    /// Keys: 0 = no key (sticky partitioning); K = a key drawn uniformly from K keys
    #[arg(long, default_value_t = 0)]
    pub keys: u64,
    /// Acknowledgements: 0, 1 or all
    #[arg(long, value_enum, default_value_t = AcksArg::All)]
    pub acks: AcksArg,
    /// Compression codec
    #[arg(long, value_enum, default_value_t = CompressionArg::None)]
    pub compression: CompressionArg,
    /// batch.size in bytes
    #[arg(long, default_value_t = 16 * 1024)]
    pub batch_size: usize,
    /// linger.ms
    #[arg(long, default_value_t = 5)]
    pub linger_ms: u64,
    /// max.in.flight.requests.per.connection (1 to 5)
    #[arg(long, default_value_t = 5)]
    pub max_in_flight: usize,
    /// buffer.memory in bytes, per producer
    #[arg(long, default_value_t = 32 * 1024 * 1024)]
    pub buffer_memory: usize,
    /// enable.idempotence (true needs --acks all)
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub idempotence: bool,
}

#[derive(Debug, Clone, Args, Serialize)]
pub struct ProduceArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub producer: ProducerArgs,
    /// Stop after this many records in total
    #[arg(long, conflicts_with = "duration")]
    pub records: Option<u64>,
    /// Stop sending after this long, e.g. 10s, 500ms, 2m [default: 10s]
    #[arg(long)]
    pub duration: Option<HumanDuration>,
    /// Target records/s over all producers, open loop (latency from intended send times)
    #[arg(long, value_parser = parse_rate)]
    pub rate: Option<f64>,
}

/// How the consumers behave.
#[derive(Debug, Clone, Args, Serialize)]
pub struct ConsumerArgs {
    /// Consumers, each with its own connection
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1_000))]
    pub consumers: u64,
    /// Join this consumer group (subscribe) instead of assigning partitions
    #[arg(long)]
    pub group: Option<String>,
    /// max.partition.fetch.bytes
    #[arg(long, default_value_t = 1024 * 1024)]
    pub max_partition_fetch_bytes: i32,
    /// fetch.max.bytes
    #[arg(long, default_value_t = 50 * 1024 * 1024)]
    pub fetch_max_bytes: i32,
    /// max.poll.records
    #[arg(long, default_value_t = 500)]
    pub max_poll_records: usize,
    /// Give up when no record arrives for this long
    #[arg(long, default_value = "30s")]
    pub idle_timeout: HumanDuration,
}

#[derive(Debug, Clone, Args, Serialize)]
pub struct ConsumeArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub consumer: ConsumerArgs,
    /// Stop after this many records [default: everything up to the end offsets at start]
    #[arg(long)]
    pub records: Option<u64>,
    /// Stop after this long even if the end was not reached
    #[arg(long)]
    pub duration: Option<HumanDuration>,
}

#[derive(Debug, Clone, Args, Serialize)]
pub struct E2eArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub producer: ProducerArgs,
    #[command(flatten)]
    pub consumer: ConsumerArgs,
    /// Records/s over all producers, open loop
    #[arg(long, value_parser = parse_rate)]
    pub rate: f64,
    /// How long to produce
    #[arg(long, default_value = "10s")]
    pub duration: HumanDuration,
    /// After producing stops, how long to wait for the last records to arrive
    #[arg(long, default_value = "10s")]
    pub drain_timeout: HumanDuration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
pub enum AcksArg {
    #[value(name = "0")]
    #[serde(rename = "0")]
    Zero,
    #[value(name = "1")]
    #[serde(rename = "1")]
    One,
    #[value(name = "all", alias = "-1")]
    #[serde(rename = "all")]
    All,
}

impl From<AcksArg> for Acks {
    fn from(a: AcksArg) -> Acks {
        match a {
            AcksArg::Zero => Acks::None,
            AcksArg::One => Acks::Leader,
            AcksArg::All => Acks::All,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CompressionArg {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl From<CompressionArg> for Compression {
    fn from(c: CompressionArg) -> Compression {
        match c {
            CompressionArg::None => Compression::None,
            CompressionArg::Gzip => Compression::Gzip,
            CompressionArg::Snappy => Compression::Snappy,
            CompressionArg::Lz4 => Compression::Lz4,
            CompressionArg::Zstd => Compression::Zstd,
        }
    }
}

/// A duration written as `10s`, `500ms`, `2m`, `1h` or plain seconds (`1.5`). Shows up
/// in JSON as seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl FromStr for HumanDuration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (number, unit) = s.split_at(split);
        let value: f64 = number
            .parse()
            .map_err(|_| format!("{s:?} is not a duration (e.g. 10s, 500ms, 2m)"))?;
        let seconds = match unit.trim() {
            "" | "s" => value,
            "ms" => value / 1e3,
            "us" | "µs" => value / 1e6,
            "m" | "min" => value * 60.0,
            "h" => value * 3600.0,
            other => return Err(format!("unknown duration unit {other:?} in {s:?}")),
        };
        if !seconds.is_finite() || !(0.0..=1e9).contains(&seconds) {
            return Err(format!("duration {s:?} is out of range"));
        }
        Ok(HumanDuration(Duration::from_secs_f64(seconds)))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}s", self.0.as_secs_f64())
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(self.0.as_secs_f64())
    }
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!(
            "{s:?} is not a positive number of records per second"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations_parse_with_units() {
        let d = |s: &str| s.parse::<HumanDuration>().map(|d| d.0);
        assert_eq!(d("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(d("10"), Ok(Duration::from_secs(10)));
        assert_eq!(d("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(d("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(d("2m"), Ok(Duration::from_secs(120)));
        assert!(d("ten").is_err());
        assert!(d("5 parsecs").is_err());
    }

    #[test]
    fn produce_arguments_parse() {
        let cli = Cli::try_parse_from([
            "sluice-bench",
            "produce",
            "--bootstrap",
            "127.0.0.1:1",
            "--acks",
            "1",
            "--compression",
            "lz4",
            "--rate",
            "1000",
            "--duration",
            "3s",
            "--topic-config",
            "retention.ms=1000",
        ])
        .unwrap();
        let Command::Produce(p) = cli.command else {
            panic!("not produce")
        };
        assert_eq!(p.producer.acks, AcksArg::One);
        assert_eq!(p.producer.compression, CompressionArg::Lz4);
        assert_eq!(p.rate, Some(1000.0));
        assert_eq!(p.duration, Some(HumanDuration(Duration::from_secs(3))));
        assert_eq!(
            p.common.topic_configs,
            [("retention.ms".into(), "1000".into())]
        );
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["producer"]["acks"], "1");
        assert_eq!(json["duration"], 3.0);
    }

    #[test]
    fn records_and_duration_exclude_each_other() {
        assert!(Cli::try_parse_from([
            "sluice-bench",
            "produce",
            "--records",
            "5",
            "--duration",
            "1s"
        ])
        .is_err());
        assert!(Cli::try_parse_from(["sluice-bench", "e2e", "--rate", "0"]).is_err());
    }
}
