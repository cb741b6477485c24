//! Helpers shared by the commands: connecting, parsing and printing times, tables, and
//! turning errors into one readable line.

use std::process::ExitCode;

use anyhow::Result;
use chrono::{DateTime, SecondsFormat};
use sluice_client::{Client, ClientConfig, Error};

/// Writes one line to stdout; a closed stdout ends the program quietly (exit status
/// 0, as when `| head` has seen enough), any other write error with status 1.
pub fn write_line(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.write_all(b"\n")) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to stdout: {e}");
        std::process::exit(1);
    }
}

/// How `describe` commands print their answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Aligned tables for people.
    Text,
    /// One pretty-printed JSON document, for scripts (`jq`).
    Json,
}

/// Connects to the cluster (fails at once if no bootstrap address answers).
pub async fn connect(bootstrap: &str) -> Result<Client> {
    let config = ClientConfig {
        client_id: "sluice-cli".to_owned(),
        ..ClientConfig::new(bootstrap)
    };
    Ok(Client::connect(config).await?)
}

/// Prints a command-line usage error as one line (help and version go to stdout as
/// usual) and returns the exit status.
pub fn usage_error(error: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match error.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = error.print(); // stdout closed: nothing more to do
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = error.print();
            ExitCode::from(2)
        }
        _ => {
            // The first paragraph of clap's message, on one line.
            let text = error.to_string();
            let paragraph: Vec<&str> = text
                .lines()
                .map(str::trim)
                .take_while(|l| !l.is_empty())
                .collect();
            let message = paragraph.join(" ");
            let message = message.strip_prefix("error: ").unwrap_or(&message);
            eprintln!("error: {message} (see --help)");
            ExitCode::from(2)
        }
    }
}

/// The error and its causes on one line, plus a hint for the common cases.
pub fn error_line(error: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if parts.last() != Some(&text) && !text.is_empty() {
            parts.push(text);
        }
    }
    let mut line = parts.join(": ");
    let hint = error
        .chain()
        .find_map(|cause| match cause.downcast_ref::<Error>()? {
            Error::NoBrokerAvailable { .. } | Error::Connect { .. } => Some(
                "is a broker running there? set the address with --bootstrap or SLUICE_BOOTSTRAP",
            ),
            Error::UnknownTopic { .. } => Some("`sluice topic list` shows the topics"),
            _ => None,
        });
    if let Some(hint) = hint {
        line.push_str(&format!(" ({hint})"));
    }
    line.replace('\n', " ")
}

/// Parses a time given as RFC 3339 (`2024-05-01T12:00:00Z`, `2024-05-01T14:00:00+02:00`)
/// or as milliseconds since the Unix epoch.
pub fn parse_time(text: &str) -> Result<i64, String> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse::<i64>()
            .map_err(|_| format!("{text} is too large for milliseconds since the epoch"));
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .map_err(|e| {
            format!(
                "{text:?} is not a time ({e}); use RFC 3339 like 2024-05-01T12:00:00Z or \
                 milliseconds since the epoch like 1714564800000"
            )
        })
}

/// RFC 3339 in UTC with milliseconds, e.g. `2024-05-01T12:00:00.000Z`.
pub fn format_time(ms: i64) -> String {
    match DateTime::from_timestamp_millis(ms) {
        Some(t) => t.to_rfc3339_opts(SecondsFormat::Millis, true),
        None => ms.to_string(),
    }
}

/// Parses `KEY=VALUE`.
pub fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

/// Prints rows under a header, columns aligned with two spaces between them.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        let last = cells.len().saturating_sub(1);
        for (i, cell) in cells.iter().enumerate() {
            out.push_str(cell);
            if i < last {
                let pad = widths.get(i).copied().unwrap_or(0) - cell.chars().count();
                out.push_str(&" ".repeat(pad + 2));
            }
        }
        out
    };
    outln!("{}", line(header.to_vec()));
    for row in rows {
        outln!("{}", line(row.iter().map(String::as_str).collect()));
    }
}

/// `-` for a missing value.
pub fn or_dash<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// A byte count in human units (`1.5 MiB`).
pub fn human_bytes(bytes: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_and_print() {
        assert_eq!(parse_time("1714564800000"), Ok(1_714_564_800_000));
        assert_eq!(parse_time("2024-05-01T12:00:00Z"), Ok(1_714_564_800_000));
        assert_eq!(
            parse_time("2024-05-01T14:00:00+02:00"),
            Ok(1_714_564_800_000)
        );
        assert_eq!(
            parse_time("2024-05-01T12:00:00.250Z"),
            Ok(1_714_564_800_250)
        );
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("").is_err());
        assert_eq!(format_time(1_714_564_800_250), "2024-05-01T12:00:00.250Z");
        assert_eq!(format_time(0), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn key_values_and_units() {
        assert_eq!(parse_key_value("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(parse_key_value("a="), Ok(("a".into(), String::new())));
        assert!(parse_key_value("=b").is_err());
        assert!(parse_key_value("ab").is_err());
        assert_eq!(human_bytes(512.0), "512 B");
        assert_eq!(human_bytes(1536.0), "1.5 KiB");
    }

    #[test]
    fn error_lines_include_causes_and_hints() {
        let inner = Error::Connect {
            addr: "127.0.0.1:1".into(),
            source: std::sync::Arc::new(std::io::Error::from(
                std::io::ErrorKind::ConnectionRefused,
            )),
        };
        let error = anyhow::Error::new(Error::NoBrokerAvailable {
            tried: "127.0.0.1:1".into(),
            source: Box::new(inner),
        });
        let line = error_line(&error);
        assert!(
            line.starts_with(
                "cannot reach any broker (tried 127.0.0.1:1): cannot connect to 127.0.0.1:1: "
            ),
            "{line}"
        );
        assert!(line.contains("--bootstrap"), "{line}");
    }
}
