//! A producer for crash tests (`tests/torture/torture.py`): the Sluice client's
//! idempotent producer writing keyed records until told to stop, reporting every
//! acknowledgement on stdout.
//!
//! ```text
//! cargo build --release
//! target/release/sluice-torture-producer --bootstrap HOST:PORT --topic TOPIC --id p3 \
//!     [--keys 40] [--rate 10000] [--linger-ms 5] [--delivery-timeout-ms 600000]
//! ```
//!
//! Record `N` (N = 0, 1, 2, ...) has the value `<id>-<N>` and the key `k<N mod keys>`, so
//! the records of one key are in the order they were sent. Production is paced to `rate`
//! records per second and goes on until stdin reaches end of file or SIGTERM/SIGINT
//! arrives; then the producer is closed, which waits for the outcome of every record
//! sent (at most the delivery timeout; a second signal exits at once, status 2).
//!
//! Stdout, one line per event, flushed as it is written:
//!
//! ```text
//! ACK <value> <partition> <offset>     the record is acknowledged (acks=all)
//! FAIL <value> <error>                 the record failed for good (delivery timeout...)
//! FATAL <error>                        the producer cannot go on (fenced, no producer id)
//! DONE sent=<n> acked=<n> failed=<n>   last line, once every outcome is known
//! ```
//!
//! An ACK is printed as soon as the producer has processed the broker's answer. The
//! lines of one partition come in offset order; partitions interleave. There is no
//! event for a lost connection: after killing the broker, a harness that needs every
//! acknowledgement the dead broker sent should wait until no new line has come for a
//! moment (answers are processed within milliseconds of arriving).
//!
//! Exit status: 0 if every record sent was acknowledged, 1 otherwise. Client logs go to
//! stderr, filtered by `RUST_LOG` (default `warn`).

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use sluice_client::{
    Client, ClientConfig, DeliveryFuture, Producer, ProducerConfig, ProducerRecord,
};
use tokio::io::AsyncReadExt;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

#[derive(Debug, Parser)]
struct Args {
    /// Broker(s) to bootstrap from, HOST:PORT[,HOST:PORT...].
    #[arg(long)]
    bootstrap: String,
    /// Topic to write to (it must exist).
    #[arg(long)]
    topic: String,
    /// Prefix of the record values: `<id>-<n>`.
    #[arg(long)]
    id: String,
    /// Number of distinct keys (`k0`...).
    #[arg(long, default_value_t = 40)]
    keys: u64,
    /// Records per second.
    #[arg(long, default_value_t = 10_000.0)]
    rate: f64,
    /// How long a batch waits for more records.
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,
    /// How long a record may take to be acknowledged before it fails.
    #[arg(long, default_value_t = 600_000)]
    delivery_timeout_ms: u64,
}

/// Counts, shared by the printers.
#[derive(Default)]
struct Counts {
    acked: AtomicU64,
    failed: AtomicU64,
}

fn line(text: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    // A closed stdout leaves nobody to report to: stop.
    if out
        .write_fmt(text)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush())
        .is_err()
    {
        std::process::exit(1);
    }
}

/// The error and its sources on one line.
fn one_line(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text.replace('\n', " ")
}

/// The queue of one partition's printer (value and delivery of each record sent), and
/// its task.
type Printer = (
    mpsc::UnboundedSender<(String, DeliveryFuture)>,
    tokio::task::JoinHandle<()>,
);

/// Prints the outcomes of one partition's records, in the order they were sent.
fn printer(counts: Arc<Counts>) -> Printer {
    let (tx, mut rx) = mpsc::unbounded_channel::<(String, DeliveryFuture)>();
    let task = tokio::spawn(async move {
        while let Some((value, delivery)) = rx.recv().await {
            match delivery.await {
                Ok(meta) => {
                    counts.acked.fetch_add(1, Ordering::Relaxed);
                    line(format_args!(
                        "ACK {value} {} {}",
                        meta.partition, meta.offset
                    ));
                }
                Err(e) => {
                    counts.failed.fetch_add(1, Ordering::Relaxed);
                    line(format_args!("FAIL {value} {}", one_line(&e)));
                }
            }
        }
    });
    (tx, task)
}

#[tokio::main]
async fn main() -> anyhow::Result<std::process::ExitCode> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    anyhow::ensure!(args.keys > 0, "--keys must be positive");
    anyhow::ensure!(args.rate > 0.0, "--rate must be positive");
    let delivery_timeout = Duration::from_millis(args.delivery_timeout_ms);
    // Like the harness's librdkafka producers: quick reconnects, patient deliveries.
    let client = Client::new(ClientConfig {
        client_id: format!("torture-{}", args.id),
        connect_timeout: Duration::from_secs(2),
        retry_backoff: Duration::from_millis(50),
        retry_backoff_max: Duration::from_millis(500),
        ..ClientConfig::new(&args.bootstrap)
    })?;
    let producer = Producer::new(
        client,
        ProducerConfig {
            linger: Duration::from_millis(args.linger_ms),
            delivery_timeout,
            // The broker may be down for a while: keep waiting for metadata and room.
            max_block: delivery_timeout,
            allow_auto_create_topics: false,
            enable_idempotence: Some(true),
            ..ProducerConfig::default()
        },
    )?;

    // Stop on end of stdin, SIGTERM or SIGINT; a second signal exits at once.
    let (stop_tx, mut stop) = mpsc::unbounded_channel::<()>();
    let mut terminate = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let on_eof = stop_tx.clone();
    tokio::spawn(async move {
        let mut stdin = tokio::io::stdin();
        let mut buffer = [0u8; 1024];
        while matches!(stdin.read(&mut buffer).await, Ok(n) if n > 0) {}
        let _ = on_eof.send(()); // the producing loop may be done already
    });
    let signals = tokio::spawn(async move {
        for n in 0.. {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = interrupt.recv() => {}
            }
            if n > 0 {
                std::process::exit(2);
            }
            let _ = stop_tx.send(());
        }
    });

    let counts = Arc::new(Counts::default());
    let mut printers: HashMap<i32, Printer> = HashMap::new();
    let mut sent = 0u64;
    let mut fatal = false;
    let started = tokio::time::Instant::now();
    loop {
        let value = format!("{}-{sent}", args.id);
        let record = ProducerRecord::new(args.topic.as_str())
            .key(format!("k{}", sent % args.keys))
            .value(value.clone());
        let delivery = tokio::select! {
            biased;
            _ = stop.recv() => break,
            result = producer.send(record) => result,
        };
        match delivery {
            Ok(delivery) => {
                let partition = delivery.partition();
                let (queue, _) = printers
                    .entry(partition)
                    .or_insert_with(|| printer(counts.clone()));
                // The printer ends only when its sender is dropped.
                let _ = queue.send((value, delivery));
                sent += 1;
            }
            Err(e) => {
                line(format_args!("FATAL {}", one_line(&e)));
                fatal = true;
                break;
            }
        }
        // Pace: record `sent` is due at `sent / rate` seconds after the start.
        let due = started + Duration::from_secs_f64(sent as f64 / args.rate);
        if due > tokio::time::Instant::now() {
            tokio::select! {
                biased;
                _ = stop.recv() => break,
                _ = tokio::time::sleep_until(due) => {}
            }
        }
    }
    // Waits for the outcome of every record sent (each fails at the latest at its
    // delivery timeout).
    producer.close().await?;
    for (queue, task) in printers.into_values() {
        drop(queue);
        task.await.context("a printer failed")?;
    }
    let (acked, failed) = (
        counts.acked.load(Ordering::Relaxed),
        counts.failed.load(Ordering::Relaxed),
    );
    line(format_args!(
        "DONE sent={sent} acked={acked} failed={failed}"
    ));
    signals.abort();
    Ok(if fatal || failed > 0 || acked != sent {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    })
}
