//! The durable Raft log and vote: openraft's [`RaftLogStorage`] over segment files of our own.
//!
//! Files, under `<dir>/`:
//! - `vote`: the last vote (CBOR `Vote`), in the atomic state-file envelope of
//!   `files.rs`; written and fsynced before `save_vote` returns.
//! - `committed`: the last committed log id, a hint (written without fsync: a stale or missing
//!   value only means fewer entries are re-applied at start before the leader speaks).
//! - `purged`: the last purged log id; fsynced before any segment is deleted.
//! - `log/<first index, 20 digits>.seg`: the entries, in index order, across segments.
//!
//! A segment is a sequence of records (big-endian):
//! ```text
//! length u32   body length (at most MAX_ENTRY_BYTES)
//! crc    u32   CRC-32C of the body
//! body         CBOR of openraft's Entry: log id (term, leader node, index) and payload
//! ```
//! Invariants: indexes are consecutive inside a segment and across segments (openraft appends
//! consecutive indexes; recovery accepts nothing else); a segment's name is the index of its
//! first record. An append at or
//! below the last index first truncates from there (openraft truncates explicitly before, so
//! this is a safety net, not a path it takes). Appends write the records and `fdatasync` the segment
//! before the flush callback fires. A new segment is started when the active one reaches
//! `segment_bytes`; its creation is made durable with a directory fsync.
//!
//! Truncation deletes the later segments and fsyncs the directory before it cuts the segment
//! holding the first truncated entry (`set_len` + fsync).
//!
//! Recovery at open reads every segment in order and stops at the first record that is short,
//! too long, fails its CRC, does not decode, or is not the next index, and at a segment whose
//! first index is not the next one: the segment is cut there (`set_len` + fsync) and later
//! segments are deleted. Such a tail is only ever a crash
//! in the middle of an append, which was never reported flushed, so nothing acknowledged is
//! lost.
//!
//! A full disk is waited out, not fatal: an append that fails with ENOSPC or EDQUOT (in a
//! write or in the fsync after it) is rolled back (the active segment cut back to its
//! length before the append, a segment the append had rolled to deleted) and tried again
//! with backoff, up to [`NO_SPACE_WAIT_MAX`]; the bytes it rewrites are fsynced anew, so
//! no fsync failure is ever trusted. The vote is retried the same way, and the `committed`
//! hint is simply not written while the disk is full. Meanwhile openraft waits for the
//! write: this node stops taking part (the others elect a leader if it was one) and
//! resumes once space is freed. Any other write error, or a full disk for longer than
//! that, is fatal as before.
//!
//! The unpurged entries are also held in memory (a `BTreeMap` by index): the metadata log is
//! small by design, snapshots bound it, and readers (replication streams) then never touch
//! the disk. All file I/O runs in `spawn_blocking`, one operation at a time (openraft
//! serializes log writes; a mutex makes it a rule).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, ErrorSubject, ErrorVerb, RaftLogReader, StorageIOError};
use tokio::sync::watch;

use crate::error::QuorumError;
use crate::files;
use crate::types::{from_cbor, to_cbor, Entry, LogId, StorageError, TypeConfig, Vote};

/// How long a write waits for space on a full disk before it fails (fatally) after all.
pub const NO_SPACE_WAIT_MAX: Duration = Duration::from_secs(600);
const NO_SPACE_BACKOFF_MIN: Duration = Duration::from_millis(50);
const NO_SPACE_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Whether `e` says the filesystem (or the user's quota) is full.
fn is_no_space(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(code) if code == ENOSPC || code == EDQUOT)
}
const ENOSPC: i32 = 28;
const EDQUOT: i32 = 122;

/// Runs `attempt` until it succeeds, fails with something other than a full disk, the
/// disk has been full for [`NO_SPACE_WAIT_MAX`], or `space.give_up` is set (at shutdown);
/// `undo` runs after each failed attempt that will be retried (an error from it ends the
/// wait). `space.waiting` says true while it waits. Blocking (sleeps the thread).
fn while_no_space<T>(
    what: &str,
    space: &SpaceWait,
    mut attempt: impl FnMut() -> io::Result<T>,
    mut undo: impl FnMut() -> io::Result<()>,
) -> io::Result<T> {
    struct Waiting<'a>(&'a watch::Sender<bool>);
    impl Drop for Waiting<'_> {
        fn drop(&mut self) {
            self.0.send_if_modified(|w| std::mem::replace(w, false));
        }
    }
    let mut _waiting: Option<Waiting<'_>> = None;
    let give_up = &space.give_up;
    let started = Instant::now();
    let mut backoff = NO_SPACE_BACKOFF_MIN;
    let mut warned = false;
    loop {
        match attempt() {
            Ok(value) => {
                if warned {
                    tracing::info!(
                        waited_ms = started.elapsed().as_millis() as u64,
                        "metadata log: space again, {what} done"
                    );
                }
                return Ok(value);
            }
            Err(e)
                if is_no_space(&e)
                    && started.elapsed() < NO_SPACE_WAIT_MAX
                    && !give_up.load(Ordering::Relaxed) =>
            {
                undo()?;
                if !warned {
                    warned = true;
                    space.waiting.send_replace(true);
                    _waiting = Some(Waiting(&space.waiting));
                    tracing::warn!(error = %e, "metadata log: the disk is full; {what} waits for space (this node takes no part in the metadata quorum meanwhile)");
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(NO_SPACE_BACKOFF_MAX);
            }
            Err(e) => return Err(e),
        }
    }
}

/// Records longer than this are treated as damage on read (and refused on write).
pub const MAX_ENTRY_BYTES: usize = 64 << 20;
const RECORD_HEADER: usize = 8;
const SEGMENT_SUFFIX: &str = ".seg";

/// The log store handed to openraft. Cheap to clone: all clones share one log.
#[derive(Clone)]
pub struct LogStore {
    shared: Arc<Shared>,
}

struct Shared {
    dir: PathBuf,
    /// Unpurged entries, for readers. Written only while `files` is held.
    entries: RwLock<Entries>,
    /// Everything on disk; one writer at a time.
    files: Mutex<Files>,
    /// The same as `Files::space`, reachable while a write holds `files`.
    space: Arc<SpaceWait>,
}

#[derive(Default)]
struct Entries {
    map: BTreeMap<u64, Entry>,
    purged: Option<LogId>,
}

struct Files {
    dir: PathBuf,
    log_dir: PathBuf,
    segment_bytes: u64,
    /// Segment first index -> location of each entry (for truncation): index -> byte position.
    segments: BTreeMap<u64, Vec<(u64, u64)>>,
    active: Option<Active>,
    vote: Option<Vote>,
    committed: Option<LogId>,
    /// Set by the first failed write: the log then refuses every write (it never retries an
    /// fsync whose failure may have dropped dirty pages).
    failed: bool,
    /// A write waiting for space: whether it is, and whether it must stop.
    space: Arc<SpaceWait>,
}

/// The state of a write that waits for space on a full disk.
struct SpaceWait {
    /// Set at shutdown: a write waiting for space fails instead (see
    /// [`LogStore::stop_waiting`]).
    give_up: AtomicBool,
    /// True while a write waits for space (see [`LogStore::waiting_for_space`]).
    waiting: watch::Sender<bool>,
}

struct Active {
    base: u64,
    file: File,
    len: u64,
}

/// See [`Files::mark`]: the active segment (base, length, entries) and every segment.
struct Mark {
    active: Option<(u64, u64, usize)>,
    segments: std::collections::BTreeSet<u64>,
}

/// What recovery cut from the log at open (for logs and tests).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Bytes cut from the segment with the first bad record.
    pub bytes_cut: u64,
    /// Whole segments deleted after it.
    pub segments_deleted: usize,
}

impl LogStore {
    /// Opens (or creates) the log in `dir`, cutting a damaged tail; see the module doc.
    pub fn open(dir: &Path, segment_bytes: u64) -> Result<(LogStore, Recovery), QuorumError> {
        let log_dir = dir.join("log");
        fs::create_dir_all(&log_dir).map_err(|e| QuorumError::io("create", &log_dir, e))?;
        let vote: Option<Vote> = read_state(dir, "vote")?;
        let purged: Option<LogId> = read_state(dir, "purged")?;
        // The committed hint is written without fsync: damage there is not an error.
        let committed: Option<LogId> = read_state(dir, "committed").unwrap_or_else(|e| {
            tracing::warn!("ignoring committed hint: {e}");
            None
        });

        let mut files = Files {
            dir: dir.to_path_buf(),
            log_dir: log_dir.clone(),
            segment_bytes: segment_bytes.max(1),
            segments: BTreeMap::new(),
            active: None,
            vote,
            committed,
            failed: false,
            space: Arc::new(SpaceWait {
                give_up: AtomicBool::new(false),
                waiting: watch::Sender::new(false),
            }),
        };
        let space = files.space.clone();
        let mut entries = Entries {
            map: BTreeMap::new(),
            purged,
        };
        let recovery = files.recover(&mut entries)?;
        if recovery != Recovery::default() {
            tracing::warn!(
                bytes_cut = recovery.bytes_cut,
                segments_deleted = recovery.segments_deleted,
                "metadata log: cut a torn or damaged tail at open"
            );
        }
        Ok((
            LogStore {
                shared: Arc::new(Shared {
                    dir: dir.to_path_buf(),
                    entries: RwLock::new(entries),
                    files: Mutex::new(files),
                    space,
                }),
            },
            recovery,
        ))
    }

    /// Makes a write that waits for space on a full disk fail now, and every later one fail
    /// at once (for shutdown: openraft waits for the write before it stops, and a stopping
    /// node must not wait minutes for an operator to free space). What was written before
    /// stays intact: the failed write was rolled back.
    pub fn stop_waiting(&self) {
        self.shared.space.give_up.store(true, Ordering::Relaxed);
    }

    /// A watch of whether a write is waiting for space on a full disk now: while it is, this
    /// node takes no part in the quorum (openraft waits for the write), whatever its last
    /// known role was. The controller uses it to send requests to the other voters instead
    /// of its own stuck Raft.
    pub fn waiting_for_space(&self) -> watch::Receiver<bool> {
        self.shared.space.waiting.subscribe()
    }

    /// Whether a write is waiting for space on a full disk now (see
    /// [`LogStore::waiting_for_space`]).
    pub fn is_waiting_for_space(&self) -> bool {
        *self.shared.space.waiting.borrow()
    }

    /// The directory this log lives in.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Runs a write operation on the files in a blocking thread, one at a time; its I/O error
    /// becomes openraft's error for `subject` and `verb`.
    async fn with_files<T, F>(
        &self,
        subject: ErrorSubject<u64>,
        verb: ErrorVerb,
        op: F,
    ) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Files, &RwLock<Entries>) -> io::Result<T> + Send + 'static,
    {
        let shared = self.shared.clone();
        let result = tokio::task::spawn_blocking(move || {
            let mut files = lock(&shared.files);
            if files.failed {
                return Err(io::Error::other(
                    "the metadata log failed an earlier write and accepts no more",
                ));
            }
            let result = op(&mut files, &shared.entries);
            if result.is_err() {
                files.failed = true;
            }
            // Fatal from here on: the operator's one line must say where (the kind stays).
            result.map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("{e} (metadata log in {})", shared.dir.display()),
                )
            })
        })
        .await
        .unwrap_or_else(|e| Err(io::Error::other(format!("log write task failed: {e}"))));
        result.map_err(|e| StorageIOError::new(subject, verb, AnyError::new(&e)).into())
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the files half-changed in a way the
    // `failed` latch does not cover, so a poisoned lock is still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn read_state<T: serde::de::DeserializeOwned>(
    dir: &Path,
    name: &str,
) -> Result<Option<T>, QuorumError> {
    let path = files::path(dir, name);
    match files::read(dir, name) {
        Ok(None) => Ok(None),
        Ok(Some(body)) => from_cbor(&body)
            .map(Some)
            .map_err(|reason| QuorumError::Corrupt { path, reason }),
        Err(files::ReadError::Io(e)) => Err(QuorumError::io("read", path, e)),
        Err(files::ReadError::Corrupt(reason)) => Err(QuorumError::Corrupt { path, reason }),
    }
}

fn segment_name(base: u64) -> String {
    format!("{base:020}{SEGMENT_SUFFIX}")
}

/// Encodes one record: header and CBOR body.
fn encode_record(entry: &Entry) -> Result<Vec<u8>, String> {
    let body = to_cbor(entry)?;
    if body.len() > MAX_ENTRY_BYTES {
        return Err(format!(
            "entry of {} bytes exceeds {MAX_ENTRY_BYTES}",
            body.len()
        ));
    }
    let mut out = Vec::with_capacity(RECORD_HEADER + body.len());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decodes the record at the start of `bytes`: the entry and the record's length, or `None`
/// when the bytes there are not a whole, valid record.
fn decode_record(bytes: &[u8]) -> Option<(Entry, usize)> {
    if bytes.len() < RECORD_HEADER {
        return None;
    }
    let len = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    let crc = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    if len > MAX_ENTRY_BYTES || bytes.len() - RECORD_HEADER < len {
        return None;
    }
    let body = &bytes[RECORD_HEADER..RECORD_HEADER + len];
    if crc32c::crc32c(body) != crc {
        return None;
    }
    let entry: Entry = from_cbor(body).ok()?;
    Some((entry, RECORD_HEADER + len))
}

impl Files {
    /// Loads the segments, cutting at the first bad record; fills `entries`.
    fn recover(&mut self, entries: &mut Entries) -> Result<Recovery, QuorumError> {
        let mut bases = Vec::new();
        let listing =
            fs::read_dir(&self.log_dir).map_err(|e| QuorumError::io("list", &self.log_dir, e))?;
        for item in listing {
            let item = item.map_err(|e| QuorumError::io("list", &self.log_dir, e))?;
            let name = item.file_name();
            let name = name.to_string_lossy();
            if let Some(stem) = name.strip_suffix(SEGMENT_SUFFIX) {
                match stem.parse::<u64>() {
                    Ok(base) if stem.len() == 20 => bases.push(base),
                    _ => tracing::warn!("ignoring unexpected file {name} in the metadata log"),
                }
            }
        }
        bases.sort_unstable();

        let purged_index = entries.purged.map(|l| l.index);
        let mut recovery = Recovery::default();
        let mut expected: Option<u64> = None;
        let mut cut = false;
        for base in bases {
            let path = self.log_dir.join(segment_name(base));
            if cut {
                fs::remove_file(&path).map_err(|e| QuorumError::io("remove", &path, e))?;
                recovery.segments_deleted += 1;
                continue;
            }
            // A segment must continue the previous one exactly: its first index is the next
            // index. Anything else (a segment a crash brought back after a truncation, or one
            // after a lost segment) would make a log with a hole or stale entries.
            if expected.is_some_and(|next| base != next) {
                tracing::warn!(
                    base,
                    ?expected,
                    "metadata log: segment does not continue the log"
                );
                fs::remove_file(&path).map_err(|e| QuorumError::io("remove", &path, e))?;
                recovery.segments_deleted += 1;
                cut = true;
                continue;
            }
            let bytes = fs::read(&path).map_err(|e| QuorumError::io("read", &path, e))?;
            let mut pos = 0usize;
            let mut index_positions = Vec::new();
            let mut next = base;
            while pos < bytes.len() {
                match decode_record(&bytes[pos..]) {
                    // Each record holds the next index: the first one the segment's base.
                    Some((entry, len)) if entry.log_id.index == next => {
                        let index = entry.log_id.index;
                        index_positions.push((index, pos as u64));
                        if purged_index.is_none_or(|p| index > p) {
                            entries.map.insert(index, entry);
                        }
                        pos += len;
                        next = index + 1;
                    }
                    _ => break,
                }
            }
            if pos < bytes.len() {
                tracing::warn!(
                    segment = %path.display(),
                    at = pos,
                    len = bytes.len(),
                    "metadata log: bad record, cutting the log here"
                );
                recovery.bytes_cut += (bytes.len() - pos) as u64;
                let file = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|e| QuorumError::io("open", &path, e))?;
                file.set_len(pos as u64)
                    .and_then(|_| file.sync_all())
                    .map_err(|e| QuorumError::io("truncate", &path, e))?;
                cut = true;
            }
            if index_positions.is_empty() {
                // Nothing valid in it: drop the file, so names keep meaning "first index".
                fs::remove_file(&path).map_err(|e| QuorumError::io("remove", &path, e))?;
                if !cut {
                    recovery.segments_deleted += 1;
                }
                continue;
            }
            self.segments.insert(base, index_positions);
            self.active = Some(Active {
                base,
                file: OpenOptions::new()
                    .append(true)
                    .open(&path)
                    .map_err(|e| QuorumError::io("open", &path, e))?,
                len: pos as u64,
            });
            expected = Some(next);
        }
        if recovery != Recovery::default() {
            files::sync_dir(&self.log_dir)
                .map_err(|e| QuorumError::io("sync", &self.log_dir, e))?;
        }
        // Entries at or below the purge point can still be in the first segment (a crash between
        // writing `purged` and deleting files); they were skipped above.
        Ok(recovery)
    }

    /// Appends `new` (see the module doc for a full disk).
    fn append(&mut self, entries: &RwLock<Entries>, new: Vec<Entry>) -> io::Result<()> {
        let last = {
            let e = entries.read().unwrap_or_else(|e| e.into_inner());
            e.map.last_key_value().map(|(k, _)| *k)
        };
        // An append over existing entries truncates first, which a rollback cannot undo:
        // that path (never taken by openraft) is not retried.
        let overwrites = new
            .first()
            .is_some_and(|e| last.is_some_and(|l| e.log_id.index <= l));
        if overwrites {
            return self.append_once(entries, new);
        }
        let mark = self.mark();
        let space = self.space.clone();
        let files = std::cell::RefCell::new(self);
        while_no_space(
            "an append",
            &space,
            || files.borrow_mut().append_once(entries, new.clone()),
            || files.borrow_mut().roll_back(&mark),
        )
    }

    /// Where the files stand before an append, for [`Files::roll_back`].
    fn mark(&self) -> Mark {
        let active = self.active.as_ref().map(|a| {
            let positions = self.segments.get(&a.base).map_or(0, Vec::len);
            (a.base, a.len, positions)
        });
        Mark {
            active,
            segments: self.segments.keys().copied().collect(),
        }
    }

    /// Undoes a failed append: deletes the segments it started and cuts the one that was
    /// active back to its length before it (nothing of the append is in `entries` yet).
    fn roll_back(&mut self, mark: &Mark) -> io::Result<()> {
        let started: Vec<u64> = self
            .segments
            .keys()
            .copied()
            .filter(|b| !mark.segments.contains(b))
            .collect();
        self.active = None;
        for base in &started {
            self.segments.remove(base);
            match fs::remove_file(self.log_dir.join(segment_name(*base))) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        if !started.is_empty() {
            files::sync_dir(&self.log_dir)?;
        }
        if let Some((base, len, positions)) = mark.active {
            let path = self.log_dir.join(segment_name(base));
            let file = OpenOptions::new().append(true).open(&path)?;
            file.set_len(len)?;
            if let Some(p) = self.segments.get_mut(&base) {
                p.truncate(positions);
            }
            self.active = Some(Active { base, file, len });
        }
        Ok(())
    }

    fn append_once(&mut self, entries: &RwLock<Entries>, new: Vec<Entry>) -> io::Result<()> {
        let mut last = {
            let e = entries.read().unwrap_or_else(|e| e.into_inner());
            e.map.last_key_value().map(|(k, _)| *k)
        };
        let mut written = Vec::with_capacity(new.len());
        for entry in new {
            let index = entry.log_id.index;
            // openraft truncates a conflicting suffix before appending over it; should an
            // append still land at or below the last index, it replaces that suffix rather
            // than leave two entries with one index.
            if last.is_some_and(|l| index <= l) {
                self.truncate(entries, index)?;
                written.retain(|e: &Entry| e.log_id.index < index);
            }
            let record = encode_record(&entry).map_err(io::Error::other)?;
            let roll = match &self.active {
                None => true,
                Some(a) => a.len >= self.segment_bytes,
            };
            if roll {
                self.roll(index)?;
            }
            let Some(active) = self.active.as_mut() else {
                return Err(io::Error::other("no active segment"));
            };
            active.file.write_all(&record)?;
            if let Some(positions) = self.segments.get_mut(&active.base) {
                positions.push((index, active.len));
            }
            active.len += record.len() as u64;
            last = Some(index);
            written.push(entry);
        }
        if let Some(active) = &self.active {
            active.file.sync_data()?;
        }
        let mut e = entries.write().unwrap_or_else(|e| e.into_inner());
        for entry in written {
            e.map.insert(entry.log_id.index, entry);
        }
        Ok(())
    }

    /// Starts a new segment whose first entry is `base`.
    fn roll(&mut self, base: u64) -> io::Result<()> {
        if let Some(old) = &self.active {
            old.file.sync_data()?;
        }
        let path = self.log_dir.join(segment_name(base));
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)?;
        let file_for_append = OpenOptions::new().append(true).open(&path)?;
        drop(file);
        files::sync_dir(&self.log_dir)?;
        self.segments.insert(base, Vec::new());
        self.active = Some(Active {
            base,
            file: file_for_append,
            len: 0,
        });
        Ok(())
    }

    /// Deletes every entry with index >= `since`.
    fn truncate(&mut self, entries: &RwLock<Entries>, since: u64) -> io::Result<()> {
        // Whole segments starting at or after `since` go, and their deletion is made durable
        // before the segment holding `since` is cut: were it the other way round, a crash
        // could bring the deleted segments back behind the cut one, a log with a hole.
        // (Recovery would cut them again, but it must not have to be the only defence.)
        let later: Vec<u64> = self.segments.range(since..).map(|(b, _)| *b).collect();
        for base in &later {
            self.segments.remove(base);
            fs::remove_file(self.log_dir.join(segment_name(*base)))?;
        }
        if !later.is_empty() {
            files::sync_dir(&self.log_dir)?;
        }
        // The segment holding `since`, if any, is cut at its position.
        let holder = self.segments.range_mut(..since).next_back();
        if let Some((&base, positions)) = holder {
            if let Some(i) = positions.iter().position(|(idx, _)| *idx >= since) {
                let pos = positions[i].1;
                positions.truncate(i);
                let path = self.log_dir.join(segment_name(base));
                let file = OpenOptions::new().write(true).open(&path)?;
                file.set_len(pos)?;
                file.sync_all()?;
            }
        }
        // The active segment is now the last one left.
        self.active = None;
        if let Some((&base, _)) = self.segments.last_key_value() {
            let path = self.log_dir.join(segment_name(base));
            let file = OpenOptions::new().append(true).open(&path)?;
            let len = file.metadata()?.len();
            self.active = Some(Active { base, file, len });
        }
        let mut e = entries.write().unwrap_or_else(|e| e.into_inner());
        e.map.split_off(&since);
        Ok(())
    }

    /// Deletes every entry with index <= `upto.index` and records `upto` as purged.
    fn purge(&mut self, entries: &RwLock<Entries>, upto: LogId) -> io::Result<()> {
        // The purge point is durable before any file goes, so a crash in between only leaves
        // entries that recovery skips.
        let body = to_cbor(&upto).map_err(io::Error::other)?;
        files::write_atomic(&self.dir, "purged", &body)?;
        {
            let mut e = entries.write().unwrap_or_else(|e| e.into_inner());
            e.map = e.map.split_off(&(upto.index + 1));
            e.purged = Some(upto);
        }
        // A segment goes when the next one starts at or before the first kept index (so all
        // of it is purged); the last segment goes only if its last entry is purged.
        let bases: Vec<u64> = self.segments.keys().copied().collect();
        let mut removed = false;
        for (i, base) in bases.iter().enumerate() {
            let all_purged = match bases.get(i + 1) {
                Some(next) => *next <= upto.index + 1,
                None => self.segments[base]
                    .last()
                    .is_none_or(|(idx, _)| *idx <= upto.index),
            };
            if !all_purged {
                break;
            }
            self.segments.remove(base);
            if self.active.as_ref().is_some_and(|a| a.base == *base) {
                self.active = None;
            }
            fs::remove_file(self.log_dir.join(segment_name(*base)))?;
            removed = true;
        }
        if removed {
            files::sync_dir(&self.log_dir)?;
        }
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let e = self
            .shared
            .entries
            .read()
            .unwrap_or_else(|e| e.into_inner());
        Ok(e.map.range(range).map(|(_, v)| v.clone()).collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let e = self
            .shared
            .entries
            .read()
            .unwrap_or_else(|e| e.into_inner());
        let last = e.map.last_key_value().map(|(_, v)| v.log_id).or(e.purged);
        Ok(LogState {
            last_purged_log_id: e.purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> LogStore {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let vote = *vote;
        self.with_files(ErrorSubject::Vote, ErrorVerb::Write, move |files, _| {
            let body = to_cbor(&vote).map_err(io::Error::other)?;
            let dir = files.dir.clone();
            while_no_space(
                "the vote",
                &files.space,
                || files::write_atomic(&dir, "vote", &body),
                // The old vote file is intact (the new one is renamed over it only once
                // written and fsynced); the temporary file goes.
                || match fs::remove_file(files::path(&dir, "vote.tmp")) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                    _ => Ok(()),
                },
            )?;
            files.vote = Some(vote);
            Ok(())
        })
        .await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(lock(&self.shared.files).vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.with_files(ErrorSubject::Logs, ErrorVerb::Write, move |files, _| {
            if files.committed == committed {
                return Ok(());
            }
            let body = to_cbor(&committed).map_err(io::Error::other)?;
            // A hint: no fsync (see the module doc), and not written while the disk is full.
            match files::write_atomic_with(&files.dir, "committed", &body, false) {
                Ok(()) => files.committed = committed,
                Err(e) if is_no_space(&e) => {
                    let _ = fs::remove_file(files::path(&files.dir, "committed.tmp"));
                    tracing::debug!(error = %e, "metadata log: committed hint not written (disk full)");
                }
                Err(e) => return Err(e),
            }
            Ok(())
        })
        .await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        let committed = lock(&self.shared.files).committed;
        // Never claim more than the log (or the purge point) can back.
        let e = self
            .shared
            .entries
            .read()
            .unwrap_or_else(|e| e.into_inner());
        let last = e.map.last_key_value().map(|(_, v)| v.log_id).or(e.purged);
        Ok(match (committed, last) {
            (Some(c), Some(l)) if c.index <= l.index => Some(c),
            _ => None,
        })
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let result = self
            .with_files(ErrorSubject::Logs, ErrorVerb::Write, move |files, map| {
                files.append(map, entries)
            })
            .await;
        match &result {
            Ok(()) => callback.log_io_completed(Ok(())),
            Err(e) => callback.log_io_completed(Err(io::Error::other(e.to_string()))),
        }
        result
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        tracing::debug!(%log_id, "metadata log: truncate");
        self.with_files(ErrorSubject::Logs, ErrorVerb::Delete, move |files, map| {
            files.truncate(map, log_id.index)
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        tracing::debug!(%log_id, "metadata log: purge");
        self.with_files(ErrorSubject::Logs, ErrorVerb::Delete, move |files, map| {
            files.purge(map, log_id)
        })
        .await
    }
}
