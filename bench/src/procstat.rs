//! CPU time and memory of a process, from Linux's `/proc/PID/stat` and `/proc/PID/status`.
//!
//! `--broker-pid` makes a run sample the broker at its start, every tick and at its end,
//! so the report can give the broker's CPU seconds per GB moved and its resident memory
//! under load. The benchmark's own CPU time is reported the same way (`/proc/self`), since
//! on a small machine the load generator competes with the broker for the same cores.

use std::time::Duration;

use serde::Serialize;

/// One reading of a process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// User + system CPU time so far.
    pub cpu: Duration,
    /// Resident set size, KiB.
    pub rss_kib: u64,
    /// The anonymous part of it (heap, stacks), KiB: RSS minus mapped files, whose pages
    /// are the page cache's and can be dropped at any time.
    pub anon_kib: u64,
}

/// Reads `/proc/<pid>` (`None` = this process). `None` when the process is gone or this
/// is not Linux.
pub fn sample(pid: Option<u32>) -> Option<Sample> {
    let dir = match pid {
        Some(pid) => format!("/proc/{pid}"),
        None => "/proc/self".to_owned(),
    };
    let stat = std::fs::read_to_string(format!("{dir}/stat")).ok()?;
    let status = std::fs::read_to_string(format!("{dir}/status")).ok()?;
    Some(Sample {
        cpu: cpu_time(&stat, clock_ticks_per_second())?,
        rss_kib: status_kib(&status, "VmRSS:")?,
        anon_kib: status_kib(&status, "RssAnon:").unwrap_or(0),
    })
}

fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf only reads a constant of the running system.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as u64
    } else {
        100
    }
}

/// utime + stime (fields 14 and 15) of a `/proc/PID/stat` line. The command name (field
/// 2) is in parentheses and may itself contain spaces and parentheses, so fields are
/// counted from the last `)`.
fn cpu_time(stat: &str, ticks_per_second: u64) -> Option<Duration> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14 -> index 11, stime index 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let ticks = utime + stime;
    Some(Duration::from_nanos(
        ticks * 1_000_000_000 / ticks_per_second,
    ))
}

/// The KiB value of a `Key:   123 kB` line of `/proc/PID/status`.
fn status_kib(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// A process's resources over a run, as the JSON report gives them.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessUsage {
    pub pid: Option<u32>,
    /// CPU seconds (user + system) spent during the run.
    pub cpu_s: f64,
    pub rss_start_kib: u64,
    pub rss_end_kib: u64,
    /// Largest RSS seen at the start, once a second, and at the end.
    pub rss_max_kib: u64,
    /// Anonymous memory (RssAnon) at the end and its largest sample.
    pub anon_end_kib: u64,
    pub anon_max_kib: u64,
}

/// Samples one process over a run; see the module docs.
#[derive(Debug)]
pub struct Watch {
    pid: Option<u32>,
    start: Sample,
    last: Sample,
    rss_max_kib: u64,
    anon_max_kib: u64,
}

impl Watch {
    /// Starts watching `pid` (`None` = this process); `None` if it cannot be read.
    pub fn start(pid: Option<u32>) -> Option<Watch> {
        let start = sample(pid)?;
        Some(Watch {
            pid,
            start,
            last: start,
            rss_max_kib: start.rss_kib,
            anon_max_kib: start.anon_kib,
        })
    }

    /// Takes a sample (the process may have exited: then the last one stays).
    pub fn tick(&mut self) {
        if let Some(s) = sample(self.pid) {
            self.last = s;
            self.rss_max_kib = self.rss_max_kib.max(s.rss_kib);
            self.anon_max_kib = self.anon_max_kib.max(s.anon_kib);
        }
    }

    /// Usage from the start to the last sample.
    pub fn usage(&self) -> ProcessUsage {
        ProcessUsage {
            pid: self.pid,
            cpu_s: (self.last.cpu.saturating_sub(self.start.cpu).as_secs_f64() * 1000.0).round()
                / 1000.0,
            rss_start_kib: self.start.rss_kib,
            rss_end_kib: self.last.rss_kib,
            rss_max_kib: self.rss_max_kib,
            anon_end_kib: self.last.anon_kib,
            anon_max_kib: self.anon_max_kib,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let stat = "1234 (my (odd) cmd) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 \
                    8 0 100 1000000 500 18446744073709551615";
        assert_eq!(cpu_time(stat, 100), Some(Duration::from_secs(3)));
        assert_eq!(cpu_time("garbage", 100), None);
    }

    #[test]
    fn status_values_are_read_in_kib() {
        let status = "Name:\tjava\nVmPeak:\t  999 kB\nVmRSS:\t  123456 kB\nThreads:\t9\n";
        assert_eq!(status_kib(status, "VmRSS:"), Some(123_456));
        assert_eq!(status_kib(status, "VmHWM:"), None);
    }

    #[test]
    fn this_process_can_be_watched() {
        let mut watch = Watch::start(None).expect("/proc/self is readable on Linux");
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        watch.tick();
        let usage = watch.usage();
        assert!(usage.rss_end_kib > 0);
        assert!(usage.cpu_s >= 0.0);
        assert!(usage.rss_max_kib >= usage.rss_end_kib);
    }
}
