//! `sluice-broker`: parse flags, layer the configuration (file < env < flags), raise the
//! open-file soft limit to the hard one, start the broker, print `listening on IP:PORT`
//! once it accepts connections, and shut down cleanly on SIGINT/SIGTERM (a second signal
//! exits at once).
//!
//! `sluice-broker check DATA_DIR` instead verifies every batch of every partition offline
//! (read-only) and prints a report; it exits 1 when anything is damaged.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches, Parser};
use sluice_broker::config::{self, BrokerConfig, LogFormat};
use sluice_broker::{loggers, Broker};
use tokio::signal::unix::{signal, SignalKind};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Keeps a request that claims a huge array from aborting the process (see the module).
#[global_allocator]
static ALLOCATOR: sluice_broker::alloc::LazyHugeAlloc = sluice_broker::alloc::LazyHugeAlloc;

/// Sluice broker: a Kafka-compatible streaming engine.
///
/// Serves the Kafka wire protocol on --listen and keeps its data in --data-dir. Every
/// property below can be set in the --config file, overridden by its SLUICE_* variable,
/// and the flags override both.
#[derive(Debug, Parser)]
#[command(name = "sluice-broker", version)]
struct Args {
    /// Address to listen on, HOST:PORT or NAME://HOST:PORT,... (property `listeners`); port 0 picks a free port [default: 127.0.0.1:9092]
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Option<String>,
    /// HOST:PORT (or NAME://HOST:PORT,...) that clients are told to connect to (property `advertised.listeners`) [default: the bound address]
    #[arg(long, value_name = "HOST:PORT")]
    advertised_listener: Option<String>,
    /// broker, controller or broker,controller (property `process.roles`) [default: broker,controller]
    #[arg(long, value_name = "ROLES")]
    process_roles: Option<String>,
    /// The metadata quorum's voters, ID@HOST:PORT,... (property `controller.quorum.voters`) [default: this node alone]
    #[arg(long, value_name = "ID@HOST:PORT,...")]
    controller_quorum_voters: Option<String>,
    /// This broker's rack, for rack-aware placement (property `broker.rack`)
    #[arg(long, value_name = "RACK")]
    broker_rack: Option<String>,
    /// Data directory (property `log.dirs`) [default: ./sluice-data]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// TOML file of broker properties, with Kafka's names quoted: "num.partitions" = 3
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// This broker's id (property `node.id`) [default: 1]
    #[arg(long, value_name = "ID")]
    node_id: Option<i32>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Verify every record batch (CRC-32C, offsets) and the segment continuity of every
    /// partition in DATA_DIR, without changing anything, and print a report. Exits 0 when
    /// everything is intact, 1 when something is damaged, 2 when the check cannot run.
    Check {
        /// The data directory (log.dirs) to verify
        data_dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let matches = Args::command()
        .after_long_help(config::properties_help())
        .after_help(
            "Run with --help for every broker property, its default and its SLUICE_* variable.",
        )
        .get_matches();
    let args = match Args::from_arg_matches(&matches) {
        Ok(args) => args,
        Err(e) => e.exit(),
    };
    if let Some(Command::Check { data_dir }) = &args.command {
        return match check(data_dir) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(e) => {
                eprintln!("sluice-broker check: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    let config = match load_config(&args) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("sluice-broker: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    // The directives the filter starts from; the broker-loggers config resource adds
    // levels on top at runtime (see sluice_broker::loggers).
    let directives = std::env::var("RUST_LOG")
        .ok()
        .filter(|d| tracing_subscriber::EnvFilter::try_new(d).is_ok())
        .unwrap_or_else(|| loggers::DEFAULT_DIRECTIVES.to_owned());
    // The filter can be swapped at runtime; the recorder, outermost, sees every callsite
    // the filter turns away too, so that the loggers described are the ones that exist.
    let (filter, filter_handle) =
        tracing_subscriber::reload::Layer::new(tracing_subscriber::EnvFilter::new(&directives));
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(filter);
    match config.observability.log_format {
        // One JSON object per line, with the event's fields and its spans' (the
        // connection's peer, the request's api and correlation id).
        LogFormat::Json => registry
            .with(logs.json().with_current_span(false))
            .with(loggers::TargetRecorder)
            .init(),
        LogFormat::Text => registry
            .with(logs.with_ansi(std::io::stderr().is_terminal()))
            .with(loggers::TargetRecorder)
            .init(),
    }
    loggers::install(
        &directives,
        Box::new(move |directives: &str| {
            let filter = tracing_subscriber::EnvFilter::try_new(directives)
                .map_err(|e| format!("invalid log directives {directives:?}: {e}"))?;
            filter_handle.reload(filter).map_err(|e| e.to_string())
        }),
    );
    // Before anything opens files: every partition holds one (see sluice_broker::limits).
    match sluice_broker::limits::raise_open_file_limit() {
        Ok(limit) => tracing::info!(
            soft_before = limit.soft_before,
            soft = limit.soft,
            hard = limit.hard,
            "open-file limit (RLIMIT_NOFILE): soft {} -> {}, hard {}",
            limit.soft_before,
            limit.soft,
            limit.hard
        ),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit (RLIMIT_NOFILE)"),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("sluice-broker: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("sluice-broker: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(args: &Args) -> anyhow::Result<BrokerConfig> {
    let mut props = BTreeMap::new();
    if let Some(file) = &args.config {
        props.extend(config::read_toml_file(file)?);
    }
    // Variables that are not valid UTF-8 cannot name a property; skip them.
    let env = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
    props.extend(config::env_properties(env));
    if let Some(listen) = &args.listen {
        props.insert("listeners".to_owned(), listen.clone());
    }
    if let Some(advertised) = &args.advertised_listener {
        props.insert("advertised.listeners".to_owned(), advertised.clone());
    }
    if let Some(dir) = &args.data_dir {
        props.insert("log.dirs".to_owned(), dir.to_string_lossy().into_owned());
    }
    if let Some(id) = args.node_id {
        props.insert("node.id".to_owned(), id.to_string());
    }
    for (flag, name) in [
        (&args.process_roles, "process.roles"),
        (&args.controller_quorum_voters, "controller.quorum.voters"),
        (&args.broker_rack, "broker.rack"),
    ] {
        if let Some(value) = flag {
            props.insert(name.to_owned(), value.clone());
        }
    }
    Ok(BrokerConfig::from_properties(&props)?)
}

async fn run(config: BrokerConfig) -> anyhow::Result<()> {
    let mut terminate = signal(SignalKind::terminate()).context("install SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("install SIGINT handler")?;
    let broker = Broker::start(config).await?;
    {
        // Scripts wait for the `listening on` line (the first client listener's address),
        // printed last; with several listeners, one `listener` line each comes first.
        let mut stdout = std::io::stdout().lock();
        let listeners = &broker.state().listeners;
        if listeners.len() > 1 {
            for l in listeners {
                writeln!(
                    stdout,
                    "listener {} ({}) on {}",
                    l.name, l.protocol, l.local_addr
                )
                .context("write to stdout")?;
            }
        }
        if let Some(admin) = broker.admin_addr() {
            writeln!(stdout, "admin listener on {admin}").context("write to stdout")?;
        }
        writeln!(stdout, "listening on {}", broker.local_addr()).context("write to stdout")?;
        stdout.flush().context("flush stdout")?;
    }
    let quorum_failure = broker.metadata_quorum_failure();
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
        reason = quorum_failure => {
            tracing::error!(
                %reason,
                "this node's metadata quorum stopped after a failed write: exiting; restart \
                 the broker once the cause (a full disk, a failing device) is fixed, its \
                 files are intact up to the failed write"
            );
            broker.begin_shutdown();
            // The orderly part is best effort: the controller may be unreachable.
            let stopped =
                tokio::time::timeout(std::time::Duration::from_secs(10), broker.wait()).await;
            tracing::info!(clean = matches!(stopped, Ok(Ok(()))), "exiting after the metadata quorum failure");
            std::process::exit(1);
        }
    }
    tracing::info!("signal received: shutting down (a second signal exits at once)");
    broker.begin_shutdown();
    tokio::spawn(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
        tracing::warn!("second signal: exiting without a clean shutdown");
        std::process::exit(1);
    });
    broker.wait().await?;
    Ok(())
}

/// `sluice-broker check DATA_DIR`: one line per partition, one more per problem; returns
/// whether everything was intact.
fn check(data_dir: &std::path::Path) -> anyhow::Result<bool> {
    use sluice_broker::datadir::parse_partition_dir;
    use sluice_storage::check::check_partition_dir;
    let mut dirs = Vec::new();
    for entry in
        std::fs::read_dir(data_dir).with_context(|| format!("list {}", data_dir.display()))?
    {
        let entry = entry.with_context(|| format!("list {}", data_dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.path().is_dir() && parse_partition_dir(&name).is_some() {
            dirs.push((name, entry.path()));
        }
    }
    dirs.sort();
    let mut stdout = std::io::stdout().lock();
    let (mut damaged, mut batches, mut records) = (0usize, 0u64, 0u64);
    for (name, dir) in &dirs {
        let report = match check_partition_dir(dir) {
            Ok(report) => report,
            Err(e) => {
                damaged += 1;
                writeln!(stdout, "{name}: UNREADABLE: {e}")?;
                continue;
            }
        };
        let partition_batches: u64 = report.segments.iter().map(|s| s.batches).sum();
        let partition_records: u64 = report.segments.iter().map(|s| s.records).sum();
        batches += partition_batches;
        records += partition_records;
        let start = report.segments.first().map_or(0, |s| s.base_offset);
        let end = report.segments.last().map_or(0, |s| s.next_offset);
        writeln!(
            stdout,
            "{name}: {} ({} segments, offsets {start}..{end}, {partition_batches} batches, {partition_records} records)",
            if report.is_clean() { "ok" } else { "DAMAGED" },
            report.segments.len(),
        )?;
        for range in report
            .segments
            .iter()
            .flat_map(|s| &s.damaged)
            .chain(&report.gaps)
        {
            writeln!(
                stdout,
                "  damaged: offsets {}..{} in {} at byte {} ({} bytes): {}",
                range.first_offset,
                range.end_offset,
                range.file.display(),
                range.position,
                range.len,
                range.reason
            )?;
        }
        for (file, error) in &report.unreadable {
            writeln!(stdout, "  unreadable: {}: {error}", file.display())?;
        }
        if !report.is_clean() {
            damaged += 1;
        }
    }
    writeln!(
        stdout,
        "checked {} partitions, {batches} batches, {records} records: {}",
        dirs.len(),
        if damaged == 0 {
            "all intact".to_owned()
        } else {
            format!("{damaged} damaged")
        }
    )?;
    Ok(damaged == 0)
}
