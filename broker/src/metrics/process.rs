//! The broker process's resident memory and open file descriptors, read from
//! `/proc/self` at scrape time (Linux; elsewhere they are simply not exported).

/// Resident set size in bytes (`VmRSS` of `/proc/self/status`).
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Open file descriptors (entries of `/proc/self/fd`, less the one reading it).
pub fn open_fds() -> Option<u64> {
    let entries = std::fs::read_dir("/proc/self/fd").ok()?;
    Some((entries.count() as u64).saturating_sub(1))
}

/// The soft `RLIMIT_NOFILE`.
pub fn max_fds() -> Option<u64> {
    crate::limits::open_file_limit().ok().map(|(soft, _)| soft)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        assert!(resident_bytes().unwrap() > 1024 * 1024);
        // Other tests open and close files meanwhile: only a floor is certain.
        assert!(open_fds().unwrap() >= 3);
        assert!(max_fds().unwrap() >= 3);
    }
}
