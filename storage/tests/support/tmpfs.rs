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

/// Writes `path` until the filesystem is full (bounded by the tmpfs' size).
#[allow(dead_code)] // not every test that mounts a tmpfs fills it this way
pub fn fill(path: &std::path::Path) {
    use std::io::Write;
    let mut file = std::fs::File::create(path).expect("filler");
    let chunk = vec![0xAB; 64 << 10];
    for _ in 0..10_000 {
        if let Err(e) = file.write_all(&chunk) {
            assert_eq!(e.raw_os_error(), Some(28), "{e}");
            break;
        }
    }
    // Whatever is left below a chunk goes too.
    for _ in 0..100_000 {
        if file.write_all(&[0xAB; 64]).is_err() {
            break;
        }
    }
}
