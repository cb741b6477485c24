//! `sluice`: the command-line client for Sluice (and any Kafka-compatible broker).
//!
//! One module per command: [`topic`], [`produce`], [`consume`], [`group`], [`cluster`],
//! [`user`], [`acl`]; [`auth`] holds the connection flags (TLS, SASL), [`util`] what the
//! commands share (connecting, time parsing and printing, tables, error text). Every
//! failure ends as one line on stderr and a non-zero exit status.

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

mod acl;
mod admin_api;
mod auth;
mod broker;
mod cluster;
mod consume;
mod group;
mod man;
mod produce;
mod settings;
mod template;
mod topic;
mod user;
mod util;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

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
    /// Broker address(es) to connect to, as HOST:PORT[,HOST:PORT...]. Without it:
    /// bootstrap.servers if set with -X or -F, else $SLUICE_BOOTSTRAP, else
    /// 127.0.0.1:9092.
    #[arg(
        long,
        short = 'b',
        env = "SLUICE_BOOTSTRAP",
        global = true,
        value_name = "HOST:PORT"
    )]
    bootstrap: Option<String>,

    /// A Kafka client property, as kcat's and rpk's -X: max.request.size=31457280,
    /// linger.ms=20, enable.idempotence=false, fetch.max.bytes=..., client.id=...
    /// Repeat for several. Producer properties apply to produce, consumer properties to
    /// consume; an unknown name is an error. See docs/cli.md for the list.
    #[arg(short = 'X', long = "property", global = true, value_name = "NAME=VALUE",
          value_parser = util::parse_property)]
    properties: Vec<(String, String)>,

    /// Read client properties from a Java .properties file (NAME=VALUE per line, # for
    /// comments), as kcat's -F; -X and the commands' own flags override it.
    #[arg(short = 'F', long = "config-file", global = true, value_name = "PATH")]
    config_file: Option<PathBuf>,

    #[command(flatten)]
    security: auth::SecurityArgs,

    /// The broker's HTTP admin API, for `broker status` and the delay of `group
    /// describe`/`group lag` [default: http://<first bootstrap host>:9644]
    #[arg(long, env = "SLUICE_ADMIN_URL", global = true, value_name = "URL")]
    admin_url: Option<String>,

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
    /// Ask a broker's admin API about the broker itself.
    #[command(subcommand)]
    Broker(broker::BrokerCommand),
    /// Create, list and delete SCRAM users (SASL logins).
    #[command(subcommand)]
    User(user::UserCommand),
    /// Add, list and remove ACLs (who may do what, with the broker's authorizer on).
    #[command(subcommand)]
    Acl(acl::AclCommand),
    /// Print a shell completion script: `source <(sluice completion bash)`.
    ///
    /// Install it for good with, for instance:
    ///   sluice completion bash > ~/.local/share/bash-completion/completions/sluice
    ///   sluice completion zsh > "${fpath[1]}/_sluice"
    ///   sluice completion fish > ~/.config/fish/completions/sluice.fish
    #[command(verbatim_doc_comment)]
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), or write one per command into a directory.
    ///
    ///   sluice man | man -l -
    ///   sluice man --dir ~/.local/share/man/man1
    #[command(verbatim_doc_comment)]
    Man {
        /// Write sluice.1, sluice-topic.1, sluice-topic-create.1 ... into this directory.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
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
    let matches = match Cli::command().try_get_matches() {
        Ok(matches) => matches,
        Err(e) => return util::usage_error(e),
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => return util::usage_error(e),
    };
    // -b on the command line beats bootstrap.servers, which beats $SLUICE_BOOTSTRAP.
    let (command_line_bootstrap, environment_bootstrap) = match matches.value_source("bootstrap") {
        Some(ValueSource::CommandLine) => (cli.bootstrap.clone(), None),
        _ => (None, cli.bootstrap.clone()),
    };
    match &cli.command {
        Command::Completion { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "sluice", &mut script);
            util::write_line(format_args!(
                "{}",
                String::from_utf8_lossy(&script).trim_end()
            ));
            return ExitCode::SUCCESS;
        }
        Command::Man { dir } => return man::write(Cli::command(), dir.as_deref()),
        _ => {}
    }
    // The connection flags are properties too: from the environment before -F and -X,
    // from the command line after them.
    let security = cli.security.properties(&matches);
    let mut properties = cli.properties.clone();
    properties.extend(security.command_line);
    let mut settings = match settings::Settings::new(
        command_line_bootstrap,
        environment_bootstrap,
        &security.environment,
        cli.config_file.as_deref(),
        &properties,
    ) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("error: {e} (see --help)");
            return ExitCode::from(2);
        }
    };
    settings.admin_url = cli.admin_url.clone();
    for (name, why) in settings.properties.ignored() {
        eprintln!("note: {name} is ignored: {why}");
    }
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
            Command::Topic(command) => topic::run(&settings, command).await,
            Command::Produce(args) => produce::run(&settings, args).await,
            Command::Consume(args) => consume::run(&settings, args).await,
            Command::Group(command) => group::run(&settings, command).await,
            Command::Cluster(command) => cluster::run(&settings, command).await,
            Command::Broker(command) => broker::run(&settings, command).await,
            Command::User(command) => user::run(&settings, command).await,
            Command::Acl(command) => acl::run(&settings, command).await,
            Command::Completion { .. } | Command::Man { .. } => Ok(ExitCode::SUCCESS),
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
