//! `sluice`: the command-line client for Sluice (and any Kafka-compatible broker).
//!
//! One module per command: [`topic`], [`produce`], [`consume`], [`group`], [`cluster`];
//! [`util`] holds what they share (connecting, time parsing and printing, tables, error
//! text). Every failure ends as one line on stderr and a non-zero exit status.

/// `println!` that ends the program quietly when stdout is closed (`sluice ... | head`)
/// instead of panicking.
macro_rules! outln {
    () => {
        $crate::util::write_line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::util::write_line(format_args!($($arg)*))
    };
}

mod cluster;
mod consume;
mod group;
mod produce;
mod topic;
mod util;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Sluice command-line client: create topics, write records into them, read them back.
///
/// A topic is a named, append-only log of records, split into partitions. Every record
/// gets an offset (its position in its partition: 0, 1, 2, ...) and a timestamp, and
/// stays readable by offset or by time until retention removes it.
///
/// Quick start:
///
///   sluice topic create orders --partitions 3
///   sluice produce orders --file orders.txt          # one record per line
///   sluice consume orders                            # everything, then exit
///   sluice consume orders --partition 0 --offset 42  # replay from offset 42
///   sluice consume orders --from-time 2024-05-01T12:00:00Z
///
/// Every command talks to the broker given by --bootstrap (or $SLUICE_BOOTSTRAP).
#[derive(Debug, Parser)]
#[command(name = "sluice", version, verbatim_doc_comment)]
struct Cli {
    /// Broker address(es) to connect to, as HOST:PORT[,HOST:PORT...].
    #[arg(
        long,
        short = 'b',
        env = "SLUICE_BOOTSTRAP",
        default_value = "127.0.0.1:9092",
        global = true,
        value_name = "HOST:PORT"
    )]
    bootstrap: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create, list, describe and delete topics.
    #[command(subcommand)]
    Topic(topic::TopicCommand),
    Produce(produce::ProduceArgs),
    Consume(consume::ConsumeArgs),
    /// Inspect consumer groups and move their committed offsets.
    #[command(subcommand)]
    Group(group::GroupCommand),
    /// Show the brokers and the metadata quorum.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
}

fn main() -> ExitCode {
    // A bug must still end as one line, not a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_owned());
        let location = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!(
            "error: internal error: {}{location} (please report this)",
            message.replace('\n', " ")
        );
    }));
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return util::usage_error(e),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Topic(command) => topic::run(&cli.bootstrap, command).await,
            Command::Produce(args) => produce::run(&cli.bootstrap, args).await,
            Command::Consume(args) => consume::run(&cli.bootstrap, args).await,
            Command::Group(command) => group::run(&cli.bootstrap, command).await,
            Command::Cluster(command) => cluster::run(&cli.bootstrap, command).await,
        }
    });
    // Background tasks (heartbeats, fetches) must not keep the process alive.
    runtime.shutdown_background();
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", util::error_line(&e));
            ExitCode::FAILURE
        }
    }
}
