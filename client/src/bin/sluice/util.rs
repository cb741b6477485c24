//! Helpers shared by the commands: connecting, parsing and printing times, tables, and
//! turning errors into one readable line.

use std::process::ExitCode;

use anyhow::Result;
use chrono::{DateTime, SecondsFormat};
use sluice_client::Error;

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
            eprintln!("{}", usage_line(&error));
            ExitCode::from(2)
        }
    }
}

/// A usage error as one line: clap's first paragraph, its tips ("a similar argument
/// exists: '--format'"), and a hint for a habit from Kafka's or kcat's tools.
fn usage_line(error: &clap::Error) -> String {
    use clap::error::{ContextKind, ContextValue};
    let text = error.to_string();
    let paragraph: Vec<&str> = text
        .lines()
        .map(str::trim)
        .take_while(|l| !l.is_empty())
        .collect();
    let message = paragraph.join(" ");
    let mut line = message
        .strip_prefix("error: ")
        .unwrap_or(&message)
        .to_owned();
    let invalid = match error.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(arg)) => Some(arg.as_str()),
        _ => None,
    };
    // kcat's `-f FORMAT` reads here as --follow and a stray template.
    let kcat_format = invalid.is_some_and(|arg| arg.contains('%'));
    let hint = if kcat_format {
        Some("kcat's -f FORMAT is --format FORMAT here (-f is --follow)")
    } else {
        invalid.and_then(habit_hint)
    };
    match hint {
        // The habit's own hint says more than a look-alike flag (`--from-beginning` is
        // not `--from-time`).
        Some(hint) => line.push_str(&format!("; {hint}")),
        None => {
            for tip in text.lines().filter_map(|l| l.trim().strip_prefix("tip: ")) {
                line.push_str(&format!("; {tip}"));
            }
        }
    }
    format!("error: {line} (see --help)")
}

/// What to use instead of a flag of Kafka's console tools or kcat.
fn habit_hint(arg: &str) -> Option<&'static str> {
    let flag = arg.split_once('=').map_or(arg, |(flag, _)| flag);
    Some(match flag {
        "--from-beginning" => {
            "sluice consume reads from the earliest offset unless told otherwise (--offset earliest)"
        }
        "--topic" => "the topic is the first argument: sluice consume TOPIC, sluice produce TOPIC",
        "--bootstrap-server" | "--broker-list" | "--bootstrap-servers" => {
            "use --bootstrap HOST:PORT (or -b, or $SLUICE_BOOTSTRAP)"
        }
        "-e" => "sluice consume stops at the end by default; --follow keeps waiting for more",
        "-c" | "--max-messages" => "use --count N (or -n N) to stop after N records",
        "-C" => "use sluice consume TOPIC",
        "-P" => "use sluice produce TOPIC",
        "-L" => "use sluice cluster describe, or sluice topic describe TOPIC",
        _ => return None,
    })
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
    // Something answered, so "is a broker running there?" would mislead: it said what it
    // looked like, refused the TLS handshake, or refused the login.
    let not_kafka = error.chain().any(|cause| {
        matches!(
            client_error(cause),
            Some(Error::NotKafka { .. } | Error::Tls { .. } | Error::Authentication { .. })
        )
    });
    let hint = error.chain().find_map(|cause| match client_error(cause)? {
        Error::NoBrokerAvailable { .. } | Error::Connect { .. } => {
            Some("is a broker running there? set the address with --bootstrap or SLUICE_BOOTSTRAP")
        }
        Error::UnknownTopic { .. } => Some("`sluice topic list` shows the topics"),
        _ => None,
    });
    if let Some(hint) = hint.filter(|_| !not_kafka) {
        line.push_str(&format!(" ({hint})"));
    }
    line.replace('\n', " ")
}

/// A cause of an error chain as the client library's error (a cause may be boxed, as
/// NoBrokerAvailable's is).
fn client_error<'a>(cause: &'a (dyn std::error::Error + 'static)) -> Option<&'a Error> {
    cause
        .downcast_ref::<Error>()
        .or_else(|| cause.downcast_ref::<Box<Error>>().map(|b| &**b))
}

/// Numbers below this are seconds since the epoch, not milliseconds: as milliseconds they
/// would be before 1973-03-04, as seconds they reach the year 5138.
const SECONDS_BELOW: i64 = 100_000_000_000;

/// Parses a time (milliseconds since the epoch) given as:
/// - RFC 3339: `2024-05-01T12:00:00Z`, `2024-05-01T14:00:00+02:00`;
/// - a number since the Unix epoch: milliseconds, or seconds when below 10^11 (a common
///   slip; said on stderr);
/// - a time before now, as rpk takes it: `-15m`, `-1h`, `-2d` (units ms, s, m, h, d).
pub fn parse_time(text: &str) -> Result<i64, String> {
    parse_time_at(text, now_ms())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// [`parse_time`] with "now" given.
fn parse_time_at(text: &str, now_ms: i64) -> Result<i64, String> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        let n = text
            .parse::<i64>()
            .map_err(|_| format!("{text} is too large for milliseconds since the epoch"))?;
        if n > 0 && n < SECONDS_BELOW {
            let ms = n.saturating_mul(1000);
            eprintln!(
                "note: reading {n} as seconds since the epoch ({}); give milliseconds or RFC 3339 to be exact",
                format_time(ms)
            );
            return Ok(ms);
        }
        return Ok(n);
    }
    if let Some(ago) = text.strip_prefix('-') {
        let ms = parse_duration_ms(ago).ok_or_else(|| {
            format!("{text:?} is not a time before now; use e.g. -30s, -15m, -1h or -2d")
        })?;
        return Ok(now_ms.saturating_sub(ms));
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .map_err(|e| {
            format!(
                "{text:?} is not a time ({e}); use RFC 3339 like 2024-05-01T12:00:00Z, \
                 milliseconds since the epoch like 1714564800000, or a time before now like -1h"
            )
        })
}

/// `500ms`, `30s`, `15m`, `1h`, `2d` in milliseconds.
fn parse_duration_ms(text: &str) -> Option<i64> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let n: i64 = number.parse().ok()?;
    let unit_ms = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    n.checked_mul(unit_ms)
}

/// RFC 3339 in UTC with milliseconds, e.g. `2024-05-01T12:00:00.000Z`.
pub fn format_time(ms: i64) -> String {
    match DateTime::from_timestamp_millis(ms) {
        Some(t) => t.to_rfc3339_opts(SecondsFormat::Millis, true),
        None => ms.to_string(),
    }
}

/// Parses a client property `NAME=VALUE`. Only the form is checked here: the name and
/// value are checked with the other settings (`Settings::new`), whose errors never show a
/// value, while clap's would print the whole argument (a mistyped `sasl.pasword=...`
/// would put the password on the screen and in logs).
pub fn parse_property(text: &str) -> Result<(String, String), String> {
    parse_key_value(text)
}

/// Parses `KEY=VALUE` (the error does not repeat the text: it may be a secret).
pub fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        Some(_) => Err("the name before '=' is empty (expected NAME=VALUE)".to_owned()),
        None => Err("no '=' in it (expected NAME=VALUE)".to_owned()),
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
    fn seconds_and_times_before_now() {
        // Seconds since the epoch (a common slip) by magnitude; milliseconds stay.
        assert_eq!(parse_time("1714564800"), Ok(1_714_564_800_000));
        assert_eq!(parse_time("99999999999"), Ok(99_999_999_999_000));
        assert_eq!(parse_time("100000000000"), Ok(100_000_000_000));
        assert_eq!(parse_time("0"), Ok(0));
        let now = 1_714_564_800_000;
        assert_eq!(parse_time_at("-15m", now), Ok(now - 900_000));
        assert_eq!(parse_time_at("-1h", now), Ok(now - 3_600_000));
        assert_eq!(parse_time_at("-2d", now), Ok(now - 172_800_000));
        assert_eq!(parse_time_at("-30s", now), Ok(now - 30_000));
        assert_eq!(parse_time_at("-500ms", now), Ok(now - 500));
        for bad in ["-", "-h", "-1w", "-1.5h", "--1h"] {
            assert!(parse_time_at(bad, now).is_err(), "{bad}");
        }
    }

    #[test]
    fn usage_errors_keep_tips_and_map_habits() {
        use clap::Parser;
        #[derive(Debug, clap::Parser)]
        struct Args {
            #[arg(long)]
            format: Option<String>,
        }
        let typo = Args::try_parse_from(["sluice", "--foramt", "json"]).unwrap_err();
        let line = usage_line(&typo);
        assert!(
            line.contains("'--foramt'") && line.contains("'--format'"),
            "{line}"
        );
        assert_eq!(line.lines().count(), 1, "{line}");
        let habit = Args::try_parse_from(["sluice", "--bootstrap-server", "x"]).unwrap_err();
        assert!(
            usage_line(&habit).contains("use --bootstrap"),
            "{}",
            usage_line(&habit)
        );
        assert!(habit_hint("--from-beginning").is_some());
        assert_eq!(habit_hint("--format"), None);
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
