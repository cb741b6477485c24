//! A memory-mapped file of fixed-size entries: the shared mechanics of the offset and time
//! indexes (Kafka's `AbstractIndex`).
//!
//! An index of the active segment is preallocated to `segment.index.bytes` (a sparse file)
//! and mapped read-write; entries are appended in place. When its segment is rolled or
//! closed the file is trimmed to the entries in use, so `file length / entry size` is the
//! entry count of every index that is not the active one. Indexes carry no checksum: after
//! an unclean shutdown the indexes of the recovered segments are rebuilt from the log.
//!
//! Holds no file descriptor: the file is opened only to size and map it (open, create,
//! trim, extend) and to fsync it, and closed again at once; the mapping needs no open
//! descriptor. So an index costs its mapping (one entry of `vm.max_map_count`, and none
//! while it is empty), never one of the process's descriptors, however many segments a
//! broker holds.
//!
//! Not thread-safe by itself: the segment keeps each index behind an `RwLock`.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use memmap2::{MmapMut, MmapOptions};

use crate::error::{Result, StorageError};
use crate::faults;

pub(crate) struct IndexFile {
    path: PathBuf,
    map: Option<MmapMut>,
    entry_size: usize,
    entries: usize,
    /// Entries that fit in the mapping (the preallocated size, or `entries` once trimmed).
    capacity: usize,
    /// Bytes from the start of the file known to have disk blocks (see `reserve_next`).
    backed: usize,
}

impl IndexFile {
    /// Opens (creating if missing) an index whose valid entries fill the whole file, as a
    /// trimmed index does. With `preallocate = Some(max_bytes)` the file is then extended
    /// to `max_bytes` so that more entries can be appended.
    pub(crate) fn open(path: &Path, entry_size: usize, preallocate: Option<u64>) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| StorageError::io(format!("open index {}", path.display()), e))?;
        let len = file
            .metadata()
            .map_err(|e| StorageError::io(format!("stat index {}", path.display()), e))?
            .len();
        let entries = (len / entry_size as u64) as usize;
        let mut index = IndexFile {
            path: path.to_path_buf(),
            map: None,
            entry_size,
            entries,
            capacity: 0,
            backed: 0,
        };
        if len % entry_size as u64 != 0 {
            // A torn trim; the whole entries before it are kept, the rest is dropped.
            index.set_file_len(&file, entries as u64 * entry_size as u64)?;
        }
        match preallocate {
            Some(max_bytes) => index.extend_with(&file, max_bytes)?,
            None => index.remap(&file, entries)?,
        }
        // `file` is closed here: the mapping keeps the bytes reachable (module docs).
        Ok(index)
    }

    /// Creates a new, empty index preallocated to `max_bytes` (any old file is replaced).
    pub(crate) fn create(path: &Path, entry_size: usize, max_bytes: u64) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(|e| StorageError::io(format!("create index {}", path.display()), e))?;
        let mut index = IndexFile {
            path: path.to_path_buf(),
            map: None,
            entry_size,
            entries: 0,
            capacity: 0,
            backed: 0,
        };
        index.extend_with(&file, max_bytes)?;
        Ok(index)
    }

    pub(crate) fn len(&self) -> usize {
        self.entries
    }

    pub(crate) fn is_full(&self) -> bool {
        self.entries >= self.capacity
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The bytes of entry `i` (`i < len()`).
    pub(crate) fn entry(&self, i: usize) -> &[u8] {
        match &self.map {
            Some(map) if i < self.entries => &map[i * self.entry_size..(i + 1) * self.entry_size],
            _ => &[],
        }
    }

    /// Appends one entry; returns false (and writes nothing) when the index is full.
    /// The entry's page gets disk blocks first (`reserve_next`): this is the only store
    /// into the mapping that can meet a page without blocks, so no caller (append, seal,
    /// recovery) can write an entry without its reservation. On a full disk this returns
    /// the ENOSPC error and writes nothing.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Result<bool> {
        debug_assert_eq!(bytes.len(), self.entry_size);
        if self.is_full() {
            return Ok(false);
        }
        self.reserve_next()?;
        let at = self.entries * self.entry_size;
        match &mut self.map {
            Some(map) => {
                map[at..at + self.entry_size].copy_from_slice(bytes);
                self.entries += 1;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Gives the page(s) the next entry goes to disk blocks before it is written through
    /// the mapping. A preallocated index is sparse: on a full disk the kernel answers the
    /// first store into a page without blocks with SIGBUS, which kills the process;
    /// `fallocate` answers ENOSPC instead, which the log turns into an offline partition
    /// that heals. One call per page of entries (512 offset entries, about 2 MiB of log
    /// at the default `index.interval.bytes`).
    pub(crate) fn reserve_next(&mut self) -> Result<()> {
        let at = self.entries * self.entry_size;
        let end = at + self.entry_size;
        if end <= self.backed || self.is_full() {
            return Ok(());
        }
        const PAGE: usize = 4096;
        let start = at / PAGE * PAGE;
        let len = (end - start).div_ceil(PAGE) * PAGE;
        // The index holds no descriptor (see the module docs): one open per page.
        let file = self.reopen()?;
        let allocated = faults::guard(faults::Op::Write, &self.path, || {
            use std::os::fd::AsRawFd;
            // SAFETY: a plain system call on a descriptor this struct owns. KEEP_SIZE:
            // blocks only; the file's length (the preallocated size) does not change.
            let rc = unsafe {
                libc::fallocate(
                    file.as_raw_fd(),
                    libc::FALLOC_FL_KEEP_SIZE,
                    start as libc::off_t,
                    len as libc::off_t,
                )
            };
            if rc == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
        match allocated {
            Ok(()) => self.backed = start + len,
            // A filesystem without fallocate: nothing better to do than write as before.
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => self.backed = usize::MAX,
            Err(e) => {
                return Err(StorageError::io(
                    format!("allocate index {}", self.path.display()),
                    e,
                ))
            }
        }
        Ok(())
    }

    /// Forgets every entry from `n` on.
    pub(crate) fn truncate_entries(&mut self, n: usize) {
        self.entries = self.entries.min(n);
    }

    /// Largest `i` with `key(entry(i)) <= target`, by binary search; None if every entry's
    /// key is greater (or the index is empty). `key` must be non-decreasing in `i`.
    pub(crate) fn largest_at_most(&self, target: i64, key: impl Fn(&[u8]) -> i64) -> Option<usize> {
        let (mut lo, mut hi) = (0usize, self.entries);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if key(self.entry(mid)) <= target {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo.checked_sub(1)
    }

    /// Writes the mapped entries and the file (its length included) to disk.
    pub(crate) fn sync(&self) -> Result<()> {
        if let Some(map) = &self.map {
            map.flush()
                .map_err(|e| StorageError::io(format!("msync index {}", self.path.display()), e))?;
        }
        // fsync acts on the file, not on the descriptor: a descriptor opened for it
        // syncs what was written through the mapping and the length set by a trim.
        let file = match self.reopen_raw() {
            Ok(file) => file,
            // Retention or a truncation removed the segment while a flush was about to
            // sync it: a deleted index has nothing left to make durable.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(StorageError::io(
                    format!("open index {}", self.path.display()),
                    e,
                ))
            }
        };
        faults::guard(faults::Op::Sync, &self.path, || file.sync_data())
            .map_err(|e| StorageError::io(format!("fsync index {}", self.path.display()), e))
    }

    /// Marks every page holding entries dirty again, so the next sync writes them. After a
    /// failed sync the kernel may have marked pages clean that never reached the disk; a
    /// later msync would then skip them.
    pub(crate) fn redirty(&mut self) {
        let used = self.entries * self.entry_size;
        if let Some(map) = &mut self.map {
            let page = 4096;
            let mut at = 0;
            while at < used.min(map.len()) {
                let byte = map[at];
                // SAFETY: `at` is inside the mapping; a volatile store of the same value
                // is not optimised away, so the page takes a write fault and is dirtied.
                unsafe { std::ptr::write_volatile(map.as_mut_ptr().add(at), byte) };
                at += page;
            }
        }
    }

    /// Shrinks the file to the entries in use; no entry can be appended afterwards.
    pub(crate) fn trim(&mut self) -> Result<()> {
        if let Some(map) = &self.map {
            map.flush()
                .map_err(|e| StorageError::io(format!("msync index {}", self.path.display()), e))?;
        }
        let file = self.reopen()?;
        // The mapping must go before the file shrinks under it.
        self.map = None;
        let len = self.entries * self.entry_size;
        self.backed = self.backed.min(len);
        self.set_file_len(&file, len as u64)?;
        self.remap(&file, self.entries)
    }

    /// Makes room for appends again after a trim (a reopened active segment).
    pub(crate) fn extend_to(&mut self, max_bytes: u64) -> Result<()> {
        let file = self.reopen()?;
        self.extend_with(&file, max_bytes)
    }

    fn extend_with(&mut self, file: &File, max_bytes: u64) -> Result<()> {
        let used = (self.entries * self.entry_size) as u64;
        let target = max_bytes.max(used) / self.entry_size as u64 * self.entry_size as u64;
        self.map = None;
        self.backed = self.backed.min(target as usize);
        self.set_file_len(file, target)?;
        self.remap(file, (target / self.entry_size as u64) as usize)
    }

    /// Opens the existing file for a resize or a sync; the caller drops it right after.
    fn reopen(&self) -> Result<File> {
        self.reopen_raw()
            .map_err(|e| StorageError::io(format!("open index {}", self.path.display()), e))
    }

    fn reopen_raw(&self) -> std::io::Result<File> {
        OpenOptions::new().read(true).write(true).open(&self.path)
    }

    /// Resizes the file. Callers that shrink it lower `backed` (see `reserve_next`).
    fn set_file_len(&self, file: &File, len: u64) -> Result<()> {
        faults::guard(faults::Op::SetLen, &self.path, || file.set_len(len))
            .map_err(|e| StorageError::io(format!("resize index {}", self.path.display()), e))
    }

    fn remap(&mut self, file: &File, capacity: usize) -> Result<()> {
        self.capacity = capacity;
        self.map = if capacity == 0 {
            None
        } else {
            // SAFETY: the file is private to this log (one process owns the data directory)
            // and is only resized by this struct after the mapping is dropped.
            let map = unsafe {
                MmapOptions::new()
                    .len(capacity * self.entry_size)
                    .map_mut(file)
            }
            .map_err(|e| StorageError::io(format!("mmap index {}", self.path.display()), e))?;
            // Index accesses are binary searches and appends, never sequential scans:
            // without this, the first touch of a fresh sparse index faults in a whole
            // readahead window (8 MiB on some disks) of zeros, which dominated the
            // broker's CPU with 1,000 partitions. Advice is only a hint; ignore failure.
            if let Err(e) = map.advise(memmap2::Advice::Random) {
                tracing::debug!(index = %self.path.display(), error = %e, "madvise(RANDOM) failed");
            }
            Some(map)
        };
        Ok(())
    }
}
