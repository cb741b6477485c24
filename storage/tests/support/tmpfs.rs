//! A tmpfs mounted for one test, shared by the full-disk tests of the storage crate
//! (`storage/tests/full_disk.rs`) and the broker (`broker/tests/disk_full.rs`, which
//! includes this file by path). Mounting needs root; elsewhere `mount` says why and the
//! test returns.

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// A tmpfs mounted for one test, unmounted when dropped.
pub struct Tmpfs {
    /// Where it is mounted.
    pub path: PathBuf,
    _parent: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` bytes, or says why not and returns None.
    pub fn mount(size: u64) -> Option<Tmpfs> {
        let parent = tempfile::tempdir().expect("temp dir");
        let path = parent.path().join("mnt");
        std::fs::create_dir(&path).expect("mount point");
        let result = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .stderr(Stdio::piped())
            .output();
        match result {
            Ok(out) if out.status.success() => Some(Tmpfs {
                path,
                _parent: parent,
            }),
            Ok(out) => {
                eprintln!(
                    "SKIPPED: cannot mount a tmpfs (needs root): {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("SKIPPED: cannot run mount: {e}");
                None
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.path)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // Something still holds it (a broker that did not stop): detach it anyway.
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}
