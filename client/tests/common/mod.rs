//! Test harness: a real broker for the integration tests.
//!
//! [`Broker::start`] runs the `sluice-broker` binary as a child process on
//! `127.0.0.1:0` with a fresh temporary data directory, and waits (with a deadline) for
//! the `listening on IP:PORT` line it prints. The binary is `$SLUICE_BROKER_BIN`, else
//! the newest of `target/release/sluice-broker` and `target/debug/sluice-broker`; the
//! tests do not build it (`cargo build --bin sluice-broker` does).
//!
//! To run the same tests against another Kafka-compatible broker that is already
//! running (Apache Kafka from `scripts/peers/kafka.sh`, for instance), set
//! `SLUICE_TEST_BOOTSTRAP=host:port`. Every test uses its own uniquely named topics and
//! groups, so they can share one broker. (Tests that restart the broker then only check
//! what they can without a restart.)
//!
//! The broker's log goes to `broker.log` in its temporary directory and is printed when
//! a test fails.

#![allow(dead_code)] // each test binary uses a different part of the harness

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

/// A running broker, stopped (and its data removed) on drop.
pub struct Broker {
    pub addr: String,
    child: Option<Child>,
    /// Data directory and `broker.log` (the broker's stderr), kept for restarts.
    dir: Option<tempfile::TempDir>,
}

const START_DEADLINE: Duration = Duration::from_secs(60);

impl Broker {
    pub fn start() -> Broker {
        if let Ok(addr) = std::env::var("SLUICE_TEST_BOOTSTRAP") {
            return Broker {
                addr,
                child: None,
                dir: None,
            };
        }
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let (child, addr) = spawn(&dir, "127.0.0.1:0");
        Broker {
            addr,
            child: Some(child),
            dir: Some(dir),
        }
    }

    /// Whether this is a broker started by the harness (not an external one).
    pub fn is_local(&self) -> bool {
        self.child.is_some()
    }

    /// Kills the broker (SIGKILL) and starts it again on the same address and data.
    /// Only for local brokers.
    pub fn restart(&mut self) {
        let (Some(mut child), Some(dir)) = (self.child.take(), self.dir.as_ref()) else {
            panic!("only a broker started by the harness can be restarted");
        };
        let _ = child.kill();
        let _ = child.wait();
        let (child, addr) = spawn(dir, &self.addr);
        assert_eq!(addr, self.addr, "the restarted broker listens elsewhere");
        self.child = Some(child);
    }
}

/// Starts the broker with data in `dir/data` and stderr appended to `dir/broker.log`;
/// returns it with the address it printed.
fn spawn(dir: &tempfile::TempDir, listen: &str) -> (Child, String) {
    let bin = broker_binary();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.path().join("broker.log"))
        .expect("open broker.log");
    let mut child = Command::new(&bin)
        .arg("--listen")
        .arg(listen)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if !sent {
                if let Some(addr) = line.split("listening on ").nth(1) {
                    let _ = tx.send(addr.trim().to_owned());
                    sent = true;
                }
            }
            // Keep draining so the broker never blocks on a full pipe.
        }
    });
    match rx.recv_timeout(START_DEADLINE) {
        Ok(addr) => (child, addr),
        Err(_) => {
            let _ = child.kill();
            let status = child.wait().ok();
            panic!(
                "{} did not print `listening on ADDR` within {START_DEADLINE:?} (exit status: \
                 {status:?}); its log:\n{}",
                bin.display(),
                log_tail(dir)
            );
        }
    }
}

/// The last lines of the broker's log.
fn log_tail(dir: &tempfile::TempDir) -> String {
    let text = std::fs::read_to_string(dir.path().join("broker.log")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // A failing test gets the broker's side of the story.
        if std::thread::panicking() {
            if let Some(dir) = &self.dir {
                eprintln!("--- broker log (last lines) ---\n{}", log_tail(dir));
            }
        }
    }
}

/// The broker binary to run; panics with instructions when there is none.
pub fn broker_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("SLUICE_BROKER_BIN") {
        let bin = PathBuf::from(bin);
        assert!(
            bin.is_file(),
            "SLUICE_BROKER_BIN={} is not a file",
            bin.display()
        );
        return bin;
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let newest = ["release", "debug"]
        .iter()
        .map(|profile| target.join(profile).join("sluice-broker"))
        .filter_map(|path| {
            let modified = path.metadata().ok()?.modified().ok()?;
            Some((modified, path))
        })
        .max_by_key(|(modified, _): &(SystemTime, PathBuf)| *modified);
    match newest {
        Some((_, path)) => path,
        None => panic!(
            "no sluice-broker binary: looked for {}/{{release,debug}}/sluice-broker. Build it \
             first (`cargo build --release --bin sluice-broker`), point SLUICE_BROKER_BIN at \
             one, or set SLUICE_TEST_BOOTSTRAP=host:port to test against a running broker",
            target.display()
        ),
    }
}

/// A name unique to this test run, for topics and groups.
pub fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{prefix}-{}-{:x}",
        std::process::id(),
        nanos & 0xff_ffff_ffff
    )
}
