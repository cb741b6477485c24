//! `sluice-bench`: a load generator for any Kafka-API broker, built on `sluice-client`.
//!
//! - [`cli`]: the arguments of `produce`, `consume` and `e2e`.
//! - [`run`]: each subcommand end to end: topic, connections, the timed load, the report.
//! - [`produce`]: producer send loops, closed loop or on an open-loop schedule, and the
//!   send-to-ack latency of every record.
//! - [`consume`]: consumer poll loops (assigned partitions or a group), the shared stop
//!   condition, and the e2e stamps (intended send time in the value) they check.
//! - [`rate`]: the open-loop schedule: intended send times that never slip, which is what
//!   makes a stall show up as latency (coordinated-omission correction).
//! - [`stats`]: per-worker meters (counters + HdrHistogram), per-second intervals, the
//!   run summary.
//! - [`procstat`]: CPU time and RSS of the broker (`--broker-pid`) and of this process.
//! - [`report`]: the live per-second lines, the final table and the JSON document.
//! - [`topic`]: connecting; creating the topic when missing and deleting it afterwards.
//!
//! The numbers this tool prints are only comparable between brokers measured with the
//! same settings on the same machine in the same session; `scripts/bench.sh` runs such a
//! comparison and `docs/benchmarks.md` explains what limits each figure.

mod cli;
mod consume;
mod procstat;
mod produce;
mod rate;
mod report;
mod run;
mod stats;
mod topic;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(threads) = cli.threads {
        builder.worker_threads(threads.max(1));
    }
    let runtime = match builder.build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("sluice-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Stamps of e2e runs count from here.
    produce::epoch();
    let common = match &cli.command {
        Command::Produce(args) => &args.common,
        Command::Consume(args) => &args.common,
        Command::E2e(args) => &args.common,
    };
    if let Err(e) = topic::set_properties(&common.properties) {
        eprintln!("sluice-bench: {e:#}");
        return ExitCode::from(2);
    }
    let (json, result) = match cli.command {
        Command::Produce(args) => (args.common.json, runtime.block_on(run::produce(args))),
        Command::Consume(args) => (args.common.json, runtime.block_on(run::consume(args))),
        Command::E2e(args) => (args.common.json, runtime.block_on(run::e2e(args))),
    };
    // Producer threads of an open-loop run may still be finishing; do not wait for them.
    runtime.shutdown_background();
    let report = match result {
        Ok(report) => report,
        Err(e) => {
            eprintln!("sluice-bench: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let text = if json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => text + "\n",
            Err(e) => {
                eprintln!("sluice-bench: cannot encode the report: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        report.table()
    };
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        eprintln!("sluice-bench: cannot write the report: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
