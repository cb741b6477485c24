//! Shared by the integration tests: a recording applier, free ports, polling with deadlines.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sluice_quorum::Applier;

/// Applied entries, shared with the test so it can look at them while the quorum runs.
pub type Log = Arc<Mutex<Vec<(u64, Vec<u8>)>>>;

/// An applier that records every entry; its state is the list of (index, payload) applied.
/// The response to an entry is its payload reversed, so the test can check responses.
pub struct Recorder {
    pub log: Log,
    /// The `last_index` of every snapshot installed.
    pub installs: Arc<Mutex<Vec<u64>>>,
    /// (index, term) of every entry applied.
    pub terms: Arc<Mutex<Vec<(u64, u64)>>>,
    /// How long `install_snapshot` blocks before it installs (a slow follower).
    pub install_delay: Duration,
}

/// What a test keeps of a [`Recorder`] it handed to a quorum.
#[derive(Clone, Default)]
pub struct Probe {
    pub log: Log,
    pub installs: Arc<Mutex<Vec<u64>>>,
    pub terms: Arc<Mutex<Vec<(u64, u64)>>>,
}

impl Probe {
    pub fn payloads(&self) -> Vec<Vec<u8>> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .map(|(_, p)| p.clone())
            .collect()
    }
    pub fn entries(&self) -> Vec<(u64, Vec<u8>)> {
        self.log.lock().unwrap().clone()
    }
    pub fn terms(&self) -> Vec<(u64, u64)> {
        self.terms.lock().unwrap().clone()
    }
    pub fn installs(&self) -> Vec<u64> {
        self.installs.lock().unwrap().clone()
    }
}

impl Recorder {
    pub fn new() -> (Recorder, Log) {
        let (r, p) = Recorder::probed();
        (r, p.log)
    }

    pub fn probed() -> (Recorder, Probe) {
        let probe = Probe::default();
        (
            Recorder {
                log: probe.log.clone(),
                installs: probe.installs.clone(),
                terms: probe.terms.clone(),
                install_delay: Duration::ZERO,
            },
            probe,
        )
    }
}

impl Applier for Recorder {
    fn apply(&mut self, index: u64, term: u64, payload: &[u8]) -> Vec<u8> {
        self.terms.lock().unwrap().push((index, term));
        self.log.lock().unwrap().push((index, payload.to_vec()));
        payload.iter().rev().copied().collect()
    }

    fn snapshot(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (index, payload) in self.log.lock().unwrap().iter() {
            out.extend_from_slice(&index.to_be_bytes());
            out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
            out.extend_from_slice(payload);
        }
        out
    }

    fn install_snapshot(&mut self, last_index: u64, mut bytes: &[u8]) -> Result<(), String> {
        // Blocks its thread, as a slow applier would (the test runtimes have spare workers).
        std::thread::sleep(self.install_delay);
        let mut entries = Vec::new();
        while !bytes.is_empty() {
            if bytes.len() < 12 {
                return Err("truncated snapshot".into());
            }
            let index = u64::from_be_bytes(bytes[..8].try_into().unwrap());
            let len = u32::from_be_bytes(bytes[8..12].try_into().unwrap()) as usize;
            if bytes.len() < 12 + len {
                return Err("truncated snapshot".into());
            }
            entries.push((index, bytes[12..12 + len].to_vec()));
            bytes = &bytes[12 + len..];
        }
        *self.log.lock().unwrap() = entries;
        self.installs.lock().unwrap().push(last_index);
        Ok(())
    }
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes; panics with `what` then.
pub async fn eventually<F: FnMut() -> bool>(timeout: Duration, what: &str, mut cond: F) {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}
