//! Log levels changed while the broker runs: Kafka's `BROKER_LOGGER` config resource
//! (type 8), as `kafka-configs --entity-type broker-loggers` and librdkafka's
//! `DescribeConfigs`/`IncrementalAlterConfigs` use it.
//!
//! A Kafka logger is a log4j name; here it is a `tracing` target: `root` (the default
//! level) or a crate or module path, written with dots as Kafka's names are
//! (`sluice_broker`, `sluice_storage.log` for the target `sluice_storage::log`, `openraft`;
//! `kafka-configs` refuses `:` in a name). `::` is accepted too.
//! The levels at start come from `RUST_LOG` (or the built-in `info,openraft=warn`); a level
//! set here is one more directive on top, and deleting it returns the target to what the
//! start-up directives give it. As in Kafka, the levels are not persisted: a restart starts
//! from the start-up directives again.
//!
//! The binary installs the control ([`install`]) with a function that swaps the filter of
//! its subscriber; a process that did not (in-process tests) answers that its loggers are
//! not controllable.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, OnceLock};

use tracing::subscriber::Interest;
use tracing::Metadata;

/// Swaps the process's log filter for one built from directives (`EnvFilter` syntax).
pub type Reload = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// The targets listed by DescribeConfigs beside those set and seen: every module of the
/// workspace crates the broker runs (listed by `build.rs`), and openraft.
const KNOWN_TARGETS: &[&str] = include!(concat!(env!("OUT_DIR"), "/modules.rs"));

/// Crates outside the workspace whose logs an operator may want.
const OTHER_CRATES: &[&str] = &["openraft"];

/// The logger Kafka calls the default.
pub const ROOT: &str = "root";

/// Kafka's levels, in its order of the refusal message.
const LEVELS: &[&str] = &["DEBUG", "ERROR", "FATAL", "INFO", "TRACE", "WARN"];

struct Control {
    /// The start-up directives, as given.
    base: String,
    /// The default level of `base` and its plain `target=level` directives.
    base_levels: BTreeMap<String, String>,
    /// Levels set at runtime, by target (`root` included), in Kafka's spelling.
    set: Mutex<BTreeMap<String, String>>,
    reload: Reload,
}

static CONTROL: OnceLock<Control> = OnceLock::new();

/// The targets of every callsite reached so far, enabled or not (log4j's loggers exist
/// once created; a tracing target once one of its callsites ran).
static SEEN: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// A layer that only records callsites' targets (it enables everything, so the filter
/// beside it decides). Placed outermost, it sees the callsites the filter turns away.
pub struct TargetRecorder;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for TargetRecorder {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        let target = metadata.target();
        // Events of the `log` crate bridge and spans' own names are targets too; only
        // Rust paths are loggers.
        if is_logger_name(target) {
            let mut seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
            if !seen.contains(target) {
                seen.insert(target.to_owned());
            }
        }
        Interest::always()
    }
}

/// The directives the binary starts with when `RUST_LOG` is unset.
pub const DEFAULT_DIRECTIVES: &str = "info,openraft=warn";

/// Called once by the binary: the directives its filter was built from and how to swap
/// it.
pub fn install(base: &str, reload: Reload) {
    let _ = CONTROL.set(Control {
        base: base.to_owned(),
        base_levels: parse_levels(base),
        set: Mutex::new(BTreeMap::new()),
        reload,
    });
}

/// The levels a directive string gives: `root` for the bare level, then each plain
/// `target=level` (directives with span or field filters are left out).
fn parse_levels(directives: &str) -> BTreeMap<String, String> {
    let mut levels = BTreeMap::new();
    levels.insert(ROOT.to_owned(), "ERROR".to_owned());
    for directive in directives.split(',').map(str::trim) {
        if directive.is_empty() || directive.contains(['[', '{']) {
            continue;
        }
        match directive.split_once('=') {
            None => {
                if let Some(level) = kafka_level(directive) {
                    levels.insert(ROOT.to_owned(), level);
                }
            }
            Some((target, level)) => {
                if let Some(level) = kafka_level(level) {
                    levels.insert(logger_name(target), level);
                }
            }
        }
    }
    levels
}

/// A tracing level in Kafka's spelling (`warn` -> `WARN`, `off` -> `OFF`).
fn kafka_level(level: &str) -> Option<String> {
    let upper = level.trim().to_ascii_uppercase();
    matches!(
        upper.as_str(),
        "TRACE" | "DEBUG" | "INFO" | "WARN" | "ERROR" | "OFF"
    )
    .then_some(upper)
}

/// A Kafka level as a tracing directive level (FATAL is ERROR: tracing has no higher).
fn tracing_level(kafka: &str) -> &'static str {
    match kafka {
        "TRACE" => "trace",
        "DEBUG" => "debug",
        "INFO" => "info",
        "WARN" => "warn",
        "OFF" => "off",
        _ => "error",
    }
}

/// A logger's ancestors, closest first (`a.b.c`: `a.b`, `a`).
fn ancestors(logger: &str) -> impl Iterator<Item = &str> {
    logger
        .char_indices()
        .rev()
        .filter(|(_, c)| *c == '.')
        .map(move |(i, _)| &logger[..i])
}

/// A target's logger name: its path with dots.
fn logger_name(target: &str) -> String {
    target.replace("::", ".")
}

/// A logger's target: its path with `::`.
fn target(logger: &str) -> String {
    logger.replace("::", ".").replace('.', "::")
}

/// Whether `name` can be a logger: `root`, or a Rust path (`crate.module...`).
fn is_logger_name(name: &str) -> bool {
    name == ROOT
        || (!name.is_empty()
            && logger_name(name).split('.').all(|part| {
                !part.is_empty()
                    && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && !part.starts_with(|c: char| c.is_ascii_digit())
            }))
}

/// Why a change is refused, with Kafka's error kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoggerError {
    /// INVALID_CONFIG (a level Kafka does not know).
    InvalidConfig(String),
    /// INVALID_REQUEST (no such logger, root removal, no control).
    InvalidRequest(String),
}

fn control() -> Result<&'static Control, LoggerError> {
    CONTROL.get().ok_or_else(|| {
        LoggerError::InvalidRequest(
            "this process's log levels are not controllable (not the sluice-broker binary)"
                .to_owned(),
        )
    })
}

/// Every logger with its level: the root, the known crates, and any target with a level
/// from the start-up directives or set since.
pub fn describe() -> Result<Vec<(String, String)>, LoggerError> {
    let control = control()?;
    let set = control.set.lock().unwrap_or_else(|p| p.into_inner());
    let mut levels = control.base_levels.clone();
    let root = set
        .get(ROOT)
        .or(levels.get(ROOT))
        .cloned()
        .unwrap_or_else(|| "ERROR".to_owned());
    let seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
    let listed = KNOWN_TARGETS.iter().chain(OTHER_CRATES).copied();
    for target in listed.chain(seen.iter().map(String::as_str)) {
        // A module takes the level of its closest ancestor that has one.
        let logger = logger_name(target);
        let inherited = ancestors(&logger)
            .find_map(|a| set.get(a).or(levels.get(a)))
            .cloned()
            .unwrap_or(root.clone());
        levels.entry(logger).or_insert(inherited);
    }
    levels.extend(set.iter().map(|(k, v)| (k.clone(), v.clone())));
    Ok(levels.into_iter().collect())
}

/// One change: a level to set, or `None` to return the logger to its start-up level.
pub type Change = (String, Option<String>);

/// Checks changes as Kafka does, without applying them.
pub fn check(changes: &[Change]) -> Result<(), LoggerError> {
    let control = control()?;
    let mut unknown = Vec::new();
    for (name, level) in changes {
        // Under a crate this broker logs from (or one its start-up directives name): a
        // typo must not pass silently, as Kafka refuses loggers that do not exist.
        let root_of = |logger: &str| logger_name(logger).split('.').next().map(str::to_owned);
        let known = name == ROOT
            || root_of(name).is_some_and(|crate_name| {
                KNOWN_TARGETS.contains(&crate_name.as_str())
                    || OTHER_CRATES.contains(&crate_name.as_str())
                    || control
                        .base_levels
                        .keys()
                        .any(|k| root_of(k).as_ref() == Some(&crate_name))
            });
        if !is_logger_name(name) || !known {
            unknown.push(name.as_str());
            continue;
        }
        match level {
            None if name == ROOT => {
                return Err(LoggerError::InvalidRequest(
                    "Removing the log level of the root logger is not allowed".to_owned(),
                ))
            }
            Some(level) if !LEVELS.contains(&level.as_str()) => {
                return Err(LoggerError::InvalidConfig(format!(
                    "Cannot set the log level of {name} to {level} as it is not a supported log level. Valid log levels are {}",
                    LEVELS.join(", ")
                )));
            }
            _ => {}
        }
    }
    if !unknown.is_empty() {
        return Err(LoggerError::InvalidRequest(format!(
            "Invalid broker logger(s): {}",
            unknown.join(", ")
        )));
    }
    Ok(())
}

/// Checks and applies changes: the process's filter is rebuilt from the start-up
/// directives with every level set since on top.
pub fn apply(changes: &[Change]) -> Result<(), LoggerError> {
    check(changes)?;
    let control = control()?;
    let mut set = control.set.lock().unwrap_or_else(|p| p.into_inner());
    let mut next = set.clone();
    for (name, level) in changes {
        match level {
            Some(level) => next.insert(logger_name(name), level.clone()),
            None => next.remove(&logger_name(name)),
        };
    }
    let directives = directives(&control.base, &next);
    (control.reload)(&directives).map_err(LoggerError::InvalidRequest)?;
    tracing::info!(%directives, "log levels changed");
    *set = next;
    Ok(())
}

/// The start-up directives with `set` on top (later directives win in `EnvFilter` for
/// the same target; the root's is the bare level).
fn directives(base: &str, set: &BTreeMap<String, String>) -> String {
    let mut parts: Vec<String> = base
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .filter(|d| !(set.contains_key(ROOT) && !d.contains('=') && kafka_level(d).is_some()))
        .map(str::to_owned)
        .collect();
    for (logger, level) in set {
        let level = tracing_level(level);
        if logger == ROOT {
            parts.insert(0, level.to_owned());
        } else {
            parts.push(format!("{}={level}", target(logger)));
        }
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_directives_give_the_levels_described() {
        let levels = parse_levels("info,openraft=warn,sluice_storage::log=debug,[span]=trace");
        assert_eq!(levels[ROOT], "INFO");
        assert_eq!(levels["openraft"], "WARN");
        assert_eq!(levels["sluice_storage.log"], "DEBUG");
        assert_eq!(levels.len(), 3);
    }

    #[test]
    fn levels_set_go_on_top_of_the_startup_directives() {
        let mut set = BTreeMap::new();
        set.insert("sluice_broker.server".to_owned(), "DEBUG".to_owned());
        assert_eq!(
            directives("info,openraft=warn", &set),
            "info,openraft=warn,sluice_broker::server=debug"
        );
        set.insert(ROOT.to_owned(), "FATAL".to_owned());
        assert_eq!(
            directives("info,openraft=warn", &set),
            "error,openraft=warn,sluice_broker::server=debug"
        );
        // Every directive the result names parses as EnvFilter's.
        tracing_subscriber::EnvFilter::try_new(directives("info,openraft=warn", &set)).unwrap();
    }

    #[test]
    fn logger_names_are_rust_paths() {
        assert!(is_logger_name("root"));
        assert!(is_logger_name("sluice_storage::log"));
        assert!(is_logger_name("sluice_storage.log"));
        assert!(is_logger_name("kafka.server.ReplicaManager"));
        assert!(!is_logger_name("kafka.server.Replica$Manager"));
        assert_eq!(target("sluice_storage.log"), "sluice_storage::log");
        assert_eq!(target("sluice_storage::log"), "sluice_storage::log");
        assert!(!is_logger_name("a::::b"));
        assert!(!is_logger_name("a..b"));
        assert!(!is_logger_name(""));
    }
}
