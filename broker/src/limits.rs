//! What the process may hold open, and the partition count the broker accepts from it.
//!
//! Each partition costs the broker one open file (its active segment's `.log`; sealed
//! segments and every index are reached through memory mappings and hold no descriptor,
//! see `sluice_storage`'s segment docs) and about three memory mappings per segment
//! (the `.log` and its two indexes), which `vm.max_map_count` bounds. Running out of
//! either fails the partition's next segment roll or creation, and running out of
//! descriptors also refuses connections. So the broker:
//!
//! - raises its soft `RLIMIT_NOFILE` to the hard limit at start (the JVM does the same
//!   for Kafka) and logs both ([`raise_open_file_limit`]);
//! - derives a partition limit from the descriptors and mappings it may use, unless
//!   `max.broker.partitions` sets one ([`PartitionLimit::compute`]), and refuses a
//!   CreateTopics, CreatePartitions or auto-create that would pass it, before any file
//!   is created (see `topics`).
//!
//! The derived limit leaves room for the rest: a fixed reserve for the runtime and the
//! broker's own files, and half of what remains for client connections; a partition is
//! counted at two descriptors, since a rolled segment keeps its descriptor until the
//! flusher has synced it. The other way round, connections are capped so that they
//! cannot take the descriptors the partitions need ([`connection_cap`]): at the cap the
//! broker stops accepting (the kernel's backlog holds the rest) rather than fail a
//! segment roll with EMFILE, which would take a partition offline.

use std::io;

/// Descriptors kept for everything that is not a partition or a connection: stdio, the
/// listener, the runtime's epoll and wakers, the data directory lock, atomic metadata
/// writes, producer-state snapshots, an index opened for a resize or a sync.
const RESERVED_FDS: u64 = 64;
/// A partition's active `.log`, plus the previous one's until it is synced after a roll.
const FDS_PER_PARTITION: u64 = 2;
/// Mappings kept for the rest of the process: thread stacks, allocator arenas, libraries.
const RESERVED_MAPS: u64 = 1024;
/// A segment's `.log` mapping and its two index mappings.
const MAPS_PER_SEGMENT: u64 = 3;
/// Linux's `vm.max_map_count` default, assumed when /proc cannot be read.
const DEFAULT_MAX_MAP_COUNT: u64 = 65_530;

/// The open-file limit of the process before and after [`raise_open_file_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFileLimit {
    /// Soft limit found at start.
    pub soft_before: u64,
    /// Soft limit now in force.
    pub soft: u64,
    /// Hard limit (the ceiling an unprivileged process may raise the soft limit to).
    pub hard: u64,
}

/// The current `RLIMIT_NOFILE` as (soft, hard).
pub fn open_file_limit() -> io::Result<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given and nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((limit.rlim_cur, limit.rlim_max))
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (capped by `fs.nr_open`, the most
/// Linux lets any process have, when the hard limit is unlimited).
pub fn raise_open_file_limit() -> io::Result<OpenFileLimit> {
    let (soft, hard) = open_file_limit()?;
    let mut target = hard;
    if hard == libc::RLIM_INFINITY {
        target = read_proc_number("/proc/sys/fs/nr_open").unwrap_or(1 << 20);
    }
    if target > soft {
        let limit = libc::rlimit {
            rlim_cur: target,
            rlim_max: hard,
        };
        // SAFETY: setrlimit reads the struct it is given and nothing else.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    let (now, hard) = open_file_limit()?;
    Ok(OpenFileLimit {
        soft_before: soft,
        soft: now,
        hard,
    })
}

/// The most connections the descriptors left by `partitions` partitions can serve (at
/// least a handful, so that an operator can still connect to delete topics). The broker
/// lowers `max.connections` to it at start.
pub fn connection_cap(open_files: u64, partitions: usize) -> usize {
    const MIN_CONNECTIONS: u64 = 16;
    let for_partitions = (partitions as u64).saturating_mul(FDS_PER_PARTITION);
    open_files
        .saturating_sub(RESERVED_FDS)
        .saturating_sub(for_partitions)
        .max(MIN_CONNECTIONS) as usize
}

/// `vm.max_map_count`, if readable.
pub fn max_map_count() -> Option<u64> {
    read_proc_number("/proc/sys/vm/max_map_count")
}

fn read_proc_number(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The most partitions this broker accepts, and where that number comes from (put in
/// the error message of a refused request, so the operator knows what to raise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLimit {
    pub max: usize,
    pub source: String,
}

impl PartitionLimit {
    /// No limit (handler unit tests; an explicit limit is set by [`Self::compute`]).
    pub fn unlimited() -> Self {
        PartitionLimit {
            max: usize::MAX,
            source: "no limit".to_owned(),
        }
    }

    /// The configured `max.broker.partitions`, or else the limit derived from the
    /// open-file soft limit and `vm.max_map_count` (module docs).
    pub fn compute(configured: Option<usize>, open_files: u64, max_map_count: Option<u64>) -> Self {
        if let Some(max) = configured {
            return PartitionLimit {
                max,
                source: "max.broker.partitions".to_owned(),
            };
        }
        let by_files = open_files.saturating_sub(RESERVED_FDS) / 2 / FDS_PER_PARTITION;
        let maps = max_map_count.unwrap_or(DEFAULT_MAX_MAP_COUNT);
        // Half of the mappings for active segments, half for the sealed ones behind them.
        let by_maps = maps.saturating_sub(RESERVED_MAPS) / 2 / MAPS_PER_SEGMENT;
        let max = by_files.min(by_maps) as usize;
        let source = if by_files <= by_maps {
            format!(
                "derived from the open-file limit of {open_files}; raise `ulimit -n` \
                 or set max.broker.partitions"
            )
        } else {
            format!(
                "derived from vm.max_map_count {maps}; raise it with sysctl or set \
                 max.broker.partitions"
            )
        };
        PartitionLimit { max, source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_limit_leaves_room_for_connections_and_mappings() {
        let small = PartitionLimit::compute(None, 1024, Some(65_530));
        assert_eq!(small.max, (1024 - 64) / 4);
        assert!(
            small.source.contains("open-file limit of 1024"),
            "{small:?}"
        );
        let large = PartitionLimit::compute(None, 1 << 20, Some(65_530));
        assert_eq!(large.max, (65_530 - 1024) / 6);
        assert!(large.source.contains("vm.max_map_count"), "{large:?}");
        assert_eq!(PartitionLimit::compute(None, 10, None).max, 0);
        assert_eq!(connection_cap(1024, small.max), (1024 - 64) / 2);
        assert_eq!(connection_cap(1024, 100_000), 16, "never below a handful");
        let set = PartitionLimit::compute(Some(7), 1024, None);
        assert_eq!(set.max, 7);
        assert_eq!(set.source, "max.broker.partitions");
    }

    #[test]
    fn raising_the_soft_limit_reaches_the_hard_one() {
        // The test process's own limit: raising is idempotent and never lowers it.
        let (soft, hard) = open_file_limit().unwrap();
        let raised = raise_open_file_limit().unwrap();
        assert_eq!(raised.soft_before, soft);
        assert_eq!(raised.hard, hard);
        assert!(raised.soft >= soft);
        if hard != libc::RLIM_INFINITY {
            assert_eq!(raised.soft, hard);
        }
    }
}
