//! `sluice user create | delete | list`: SCRAM users (Kafka's
//! AlterUserScramCredentials / DescribeUserScramCredentials), as `kafka-configs
//! --entity-type users` manages them.

use std::io::BufRead;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use sluice_client::admin::DEFAULT_ITERATIONS;
use sluice_client::{Admin, SaslMechanism};

use crate::settings::Settings;
use crate::util::print_table;

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a SCRAM user, or give an existing one a new password. The password is
    /// salted and hashed here; the broker never sees it.
    ///
    /// Examples:
    ///   sluice user create alice --new-password-stdin < alice.pw
    ///   SLUICE_NEW_PASSWORD=s3cret sluice user create bob --mechanism SCRAM-SHA-256
    #[command(verbatim_doc_comment)]
    Create {
        /// User name.
        name: String,
        /// The user's password, from $SLUICE_NEW_PASSWORD (a command line is visible to
        /// other users of the machine, so there is no flag for it); or --new-password-stdin.
        #[arg(
            long,
            env = "SLUICE_NEW_PASSWORD",
            hide = true,
            hide_env_values = true,
            conflicts_with = "new_password_stdin"
        )]
        new_password: Option<String>,
        /// Read the user's password from the first line of stdin.
        #[arg(long)]
        new_password_stdin: bool,
        /// Mechanisms to create credentials for (repeat; default both SCRAM-SHA-256 and
        /// SCRAM-SHA-512).
        #[arg(long = "mechanism", value_name = "MECHANISM", value_parser = parse_scram)]
        mechanisms: Vec<SaslMechanism>,
        /// SCRAM iterations (4096-16384, Kafka's bounds).
        #[arg(long, default_value_t = DEFAULT_ITERATIONS, value_parser = clap::value_parser!(i32).range(4096..=16384))]
        iterations: i32,
    },
    /// Delete a SCRAM user (all its credentials, or those of --mechanism).
    ///
    /// Example: sluice user delete alice
    Delete {
        /// User name.
        name: String,
        /// Only these mechanisms' credentials (repeat).
        #[arg(long = "mechanism", value_name = "MECHANISM", value_parser = parse_scram)]
        mechanisms: Vec<SaslMechanism>,
    },
    /// List the SCRAM users with their mechanisms and iterations.
    ///
    /// Example: sluice user list
    List,
}

fn parse_scram(text: &str) -> Result<SaslMechanism, String> {
    match SaslMechanism::parse(text) {
        Some(m @ (SaslMechanism::ScramSha256 | SaslMechanism::ScramSha512)) => Ok(m),
        _ => Err("use SCRAM-SHA-256 or SCRAM-SHA-512".to_owned()),
    }
}

const BOTH: [SaslMechanism; 2] = [SaslMechanism::ScramSha256, SaslMechanism::ScramSha512];

pub async fn run(settings: &Settings, command: UserCommand) -> Result<ExitCode> {
    let admin = Admin::new(settings.connect().await?);
    match command {
        UserCommand::Create {
            name,
            new_password,
            new_password_stdin,
            mechanisms,
            iterations,
        } => {
            let password = match (new_password, new_password_stdin) {
                (Some(password), _) => password,
                (None, true) => {
                    let mut line = String::new();
                    std::io::stdin()
                        .lock()
                        .read_line(&mut line)
                        .context("cannot read the password from stdin")?;
                    line.trim_end_matches(['\n', '\r']).to_owned()
                }
                (None, false) => {
                    bail!("give the password with --new-password-stdin or $SLUICE_NEW_PASSWORD")
                }
            };
            if password.is_empty() {
                bail!("the password is empty");
            }
            let mechanisms = if mechanisms.is_empty() {
                BOTH.to_vec()
            } else {
                mechanisms
            };
            admin
                .upsert_scram_user(&name, &password, &mechanisms, iterations)
                .await?;
            let names: Vec<&str> = mechanisms.iter().map(|m| m.as_str()).collect();
            eprintln!("user {name}: {} credentials set", names.join(" and "));
        }
        UserCommand::Delete { name, mechanisms } => {
            let mechanisms = if mechanisms.is_empty() {
                // Only those the user has: deleting one it lacks is an error.
                let users = admin.describe_scram_users().await?;
                let Some(credentials) = users.get(&name) else {
                    bail!("no SCRAM user {name:?}");
                };
                credentials.iter().map(|(m, _)| *m).collect()
            } else {
                mechanisms
            };
            admin.delete_scram_user(&name, &mechanisms).await?;
            eprintln!("user {name}: deleted");
        }
        UserCommand::List => {
            let users = admin.describe_scram_users().await?;
            let rows: Vec<Vec<String>> = users
                .iter()
                .map(|(name, credentials)| {
                    let described: Vec<String> = credentials
                        .iter()
                        .map(|(m, iterations)| format!("{} ({iterations} iterations)", m.as_str()))
                        .collect();
                    vec![name.clone(), described.join(", ")]
                })
                .collect();
            print_table(&["USER", "CREDENTIALS"], &rows);
        }
    }
    Ok(ExitCode::SUCCESS)
}
