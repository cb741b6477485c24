//! What keeps one client from locking everyone else out or pinning the broker's memory:
//! connection admission, idle tracking, the request byte budget and rate-limited warnings.
//!
//! - Admission ([`Limits::admit`]): at most `max.connections.per.ip` connections from one
//!   address (or its `max.connections.per.ip.overrides` entry); a further one is closed
//!   at once, as Kafka does. At `max.connections`, the connection idle the longest is
//!   closed to admit the new one; when none is idle, the accept loop waits for a slot.
//! - Idle tracking ([`Activity`]): each connection counts the requests it has read but
//!   not yet answered and whether a request is half-read, in one atomic word with an
//!   "evicted" bit; it is idle when the word is zero, and its idle time runs from its
//!   last read or write. The evictor moves a connection from idle to evicted, and the
//!   connection from idle to busy when a request's first bytes arrive, both by
//!   compare-and-swap, so a connection is never closed with a request it has started to
//!   handle. The connection task closes itself after `connections.max.idle.ms` of
//!   idleness, or when its client has read no reply bytes for that long (see
//!   `connection`). A connection whose writer has waited for the socket for
//!   [`STALLED_WRITE_EVICTABLE`] is evictable even though it is busy.
//! - The budget ([`Limits::reserve`]): a semaphore of `queued.max.request.bytes` permits,
//!   one per byte. A request larger than [`SMALL_FRAME`] reserves its remaining size
//!   before its body is read and gives it back once it has been handled, so when the
//!   budget is spent, connections stop reading large requests (TCP backpressure) instead
//!   of allocating. One address may hold at most half of the budget (or one request of
//!   `socket.request.max.bytes`, if that is more): it first reserves from its own
//!   semaphore of that size, then from the shared one, so requests announced and never
//!   sent from one address cannot hold back everyone else's. A quarter of the shared
//!   budget (at most 8 MiB) is reserved for requests of up to [`MEDIUM_FRAME`], so a
//!   large request waiting at the head of the (fair, FIFO) queue cannot hold them up
//!   (see [`Limits::reserve`]). Smaller requests are read
//!   into each connection's own [`SMALL_FRAME`]-byte window without touching the
//!   budget, so small requests (metadata, fetches, heartbeats) keep flowing while large
//!   ones wait.
//! - Warnings ([`WarnLimiter`]): one line per peer address per [`WARN_INTERVAL`], with
//!   the count of the lines held back since the last one.
//!
//! One mutex guards the registry; it is taken when a connection opens or closes and
//! for the eviction scan at the cap, never per request. Per-request bookkeeping is a
//! few atomics on the connection's own [`Activity`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::config::BrokerConfig;

/// Requests up to this size (with their 4-byte size) are read into the connection's own
/// window without drawing on the budget; larger ones reserve their size from it.
pub const SMALL_FRAME: usize = 16 * 1024;

/// Requests up to this size (or the reserved part of the budget, if smaller) may draw
/// on the reserved part, which large requests waiting for the budget cannot hold.
pub const MEDIUM_FRAME: usize = 1024 * 1024;

/// The reserved part of the budget: a quarter of it, at most this much.
const RESERVED_MAX: usize = 8 * 1024 * 1024;

/// At most one warning line per peer address and kind in this interval.
pub const WARN_INTERVAL: Duration = Duration::from_secs(10);

/// Longest timeout taken from the config (u32::MAX ms, ~49 days).
const MAX_TIMEOUT_MS: u64 = u32::MAX as u64;

/// Peers remembered by a [`WarnLimiter`] before the ones quiet for an interval are
/// forgotten (bounds its memory under a flood from many addresses).
const WARN_PEERS: usize = 4096;

/// [`Activity::state`]: the connection was chosen to close to admit another.
const EVICTED: u64 = 1 << 63;
/// [`Activity::state`]: a request is half-read (bytes buffered, frame incomplete).
const PARTIAL: u64 = 1 << 62;
/// [`Activity::write_waiting_ms`]: the writer has nothing pending.
const NOT_WAITING: u64 = u64::MAX;

/// A connection whose writer has made no progress for this long (its client does not
/// read its replies) may be closed to admit another, like an idle one.
pub const STALLED_WRITE_EVICTABLE: Duration = Duration::from_secs(1);

/// One connection's activity, shared by its reader, its writer and the registry.
#[derive(Debug)]
pub struct Activity {
    id: u64,
    ip: IpAddr,
    /// Milliseconds since [`Limits`] was created, at the last read or write.
    last_active_ms: AtomicU64,
    /// Idle (0), busy (a request half-read, [`PARTIAL`], or unanswered, counted in the low bits) or
    /// [`EVICTED`], in one word so that the connection and the evictor decide by
    /// compare-and-swap: the evictor closes only a connection it moves from 0 to
    /// [`EVICTED`], and a connection that finds [`EVICTED`] when it starts reading a
    /// request drops it instead of handling it. One of them loses and backs off.
    state: AtomicU64,
    /// Since when (ms, as `last_active_ms`) the writer has had bytes pending without
    /// progress, or [`NOT_WAITING`].
    write_waiting_ms: AtomicU64,
    evict: Notify,
    /// This address's share of the budget (see the module docs).
    address_budget: Arc<Semaphore>,
}

impl Activity {
    /// Bytes of a request arrived: busy from now on. `false` if the connection was
    /// evicted first; the request must then be dropped unhandled.
    #[must_use]
    pub fn begin_request(&self) -> bool {
        self.state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                (s & EVICTED == 0).then_some(s | PARTIAL)
            })
            .is_ok()
    }

    /// A request was read completely; it stays pending until its reply is written.
    /// `more_buffered`: bytes of the next request are already buffered (it stays busy).
    pub fn request_read(&self, more_buffered: bool) {
        // One update, so the state never reads idle between the two changes.
        let _ = self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                let s = s + 1;
                Some(if more_buffered { s } else { s & !PARTIAL })
            });
    }

    /// `n` replies were written (or needed none).
    pub fn replies_done(&self, n: u32, limits: &Limits) {
        self.state.fetch_sub(u64::from(n), Ordering::AcqRel);
        self.touch(limits);
    }

    /// Bytes were read or written just now.
    pub fn touch(&self, limits: &Limits) {
        self.last_active_ms
            .store(limits.now_ms(), Ordering::Relaxed);
    }

    /// The writer has bytes pending and waits for the socket (`true`), or wrote them
    /// or made progress (`false`).
    pub fn set_write_waiting(&self, waiting: bool, limits: &Limits) {
        let since = if waiting {
            limits.now_ms()
        } else {
            NOT_WAITING
        };
        self.write_waiting_ms.store(since, Ordering::Relaxed);
    }

    /// No request half-read and none waiting for its reply.
    pub fn is_idle(&self) -> bool {
        self.state.load(Ordering::Acquire) == 0
    }

    /// Whether the writer has waited with no progress for [`STALLED_WRITE_EVICTABLE`].
    fn write_stalled(&self, limits: &Limits) -> bool {
        let since = self.write_waiting_ms.load(Ordering::Relaxed);
        since != NOT_WAITING
            && limits.now_ms().saturating_sub(since) >= STALLED_WRITE_EVICTABLE.as_millis() as u64
    }

    /// How long since the last read or write.
    pub fn quiet_for(&self, limits: &Limits) -> Duration {
        let last = self.last_active_ms.load(Ordering::Relaxed);
        Duration::from_millis(limits.now_ms().saturating_sub(last))
    }

    /// Completes when the registry closes this connection to admit another.
    pub async fn evicted(&self) {
        self.evict.notified().await;
    }
}

/// What [`Limits::admit`] decided for a new connection.
pub enum Admission {
    /// Serve it; dropping the guard frees its slot.
    Admitted(ConnectionGuard),
    /// Its address already has this many connections (its cap).
    TooManyFromAddress { cap: usize },
    /// `max.connections` reached and no connection is idle: wait for a slot.
    Full,
}

/// A connection's slot; dropping it frees the slot.
pub struct ConnectionGuard {
    limits: Arc<Limits>,
    activity: Arc<Activity>,
}

impl ConnectionGuard {
    pub fn activity(&self) -> &Arc<Activity> {
        &self.activity
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let mut registry = self.limits.registry();
        // An evicted connection's slot was freed when it was chosen.
        if registry.live.remove(&self.activity.id).is_some() {
            registry.release(self.activity.ip);
        }
        drop(registry);
        self.limits.slot_freed.notify_one();
    }
}

#[derive(Default)]
struct Registry {
    total: usize,
    per_ip: HashMap<IpAddr, Address>,
    live: HashMap<u64, Arc<Activity>>,
    next_id: u64,
}

/// An address with connections.
struct Address {
    connections: usize,
    budget: Arc<Semaphore>,
}

impl Registry {
    fn release(&mut self, ip: IpAddr) {
        self.total -= 1;
        if let Some(address) = self.per_ip.get_mut(&ip) {
            address.connections -= 1;
            if address.connections == 0 {
                self.per_ip.remove(&ip);
            }
        }
    }
}

/// Budget reserved for one request: its address's share and the shared budget (from
/// its main part, its reserved part or both).
pub struct Reservation {
    _address: OwnedSemaphorePermit,
    _main: Option<OwnedSemaphorePermit>,
    _reserved: Option<OwnedSemaphorePermit>,
}

/// `max.connections`, `max.connections.per.ip` and its overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionCaps {
    pub max_connections: usize,
    pub max_per_ip: usize,
    pub per_ip_overrides: HashMap<IpAddr, usize>,
}

impl ConnectionCaps {
    pub fn of(config: &BrokerConfig) -> ConnectionCaps {
        ConnectionCaps {
            max_connections: config.max_connections,
            max_per_ip: config.max_connections_per_ip,
            per_ip_overrides: config.max_connections_per_ip_overrides.clone(),
        }
    }
}

/// See the module docs.
pub struct Limits {
    /// `max.connections` and the per-address caps: dynamic broker configs (see
    /// `dynamic_config`), so changed while the broker runs.
    caps: std::sync::RwLock<ConnectionCaps>,
    /// `connections.max.idle.ms`.
    pub idle_timeout: Duration,
    /// `request.read.timeout.ms`.
    pub read_timeout: Duration,
    /// The budget less its reserved part.
    budget: Arc<Semaphore>,
    /// The reserved part of the budget (see [`Limits::reserve`]).
    reserved: Arc<Semaphore>,
    /// `budget`'s size.
    main_size: usize,
    /// `reserved`'s size.
    reserved_size: usize,
    /// Requests up to this size may draw on `reserved`.
    medium_max: usize,
    /// The most of the budget one address may hold.
    address_budget: usize,
    registry: Mutex<Registry>,
    slot_freed: Notify,
    epoch: Instant,
    /// Malformed requests and incomplete ones closed at their deadline.
    pub malformed_warnings: WarnLimiter,
    /// Connections refused by `max.connections.per.ip`.
    pub refused_warnings: WarnLimiter,
}

impl Limits {
    /// Bytes of the request budget held now (requests being read or handled), for
    /// metrics.
    pub fn budget_in_use(&self) -> usize {
        (self.main_size - self.budget.available_permits().min(self.main_size))
            + (self.reserved_size - self.reserved.available_permits().min(self.reserved_size))
    }

    pub fn new(config: &BrokerConfig) -> Limits {
        // The config caps queued.max.request.bytes below Semaphore::MAX_PERMITS.
        let total = config.queued_max_request_bytes.min(Semaphore::MAX_PERMITS);
        let reserved = (total / 4).min(RESERVED_MAX);
        let address_budget = (config.queued_max_request_bytes / 2)
            .max(config.socket_request_max_bytes)
            .min(Semaphore::MAX_PERMITS);
        if address_budget > total / 2 {
            // Allowed (one request of the largest size must fit), but the per-address
            // share then protects less than intended (nothing, at equality): say so
            // once, at start.
            tracing::warn!(
                queued_max_request_bytes = config.queued_max_request_bytes,
                socket_request_max_bytes = config.socket_request_max_bytes,
                address_share = address_budget,
                "one address may hold more than half of the queued.max.request.bytes budget: \
                 set it to at least twice socket.request.max.bytes to keep the rest for others"
            );
        }
        Limits {
            caps: std::sync::RwLock::new(ConnectionCaps::of(config)),
            // Capped (at ~49 days) so that deadlines computed from them cannot overflow.
            idle_timeout: Duration::from_millis(config.connections_max_idle_ms.min(MAX_TIMEOUT_MS)),
            read_timeout: Duration::from_millis(config.request_read_timeout_ms.min(MAX_TIMEOUT_MS)),
            budget: Arc::new(Semaphore::new(total - reserved)),
            reserved: Arc::new(Semaphore::new(reserved)),
            reserved_size: reserved,
            main_size: total - reserved,
            medium_max: reserved.min(MEDIUM_FRAME),
            address_budget,
            registry: Mutex::new(Registry::default()),
            slot_freed: Notify::new(),
            epoch: Instant::now(),
            malformed_warnings: WarnLimiter::default(),
            refused_warnings: WarnLimiter::default(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        // The registry's invariants hold between statements; a panic elsewhere while
        // it was held leaves nothing half-updated.
        self.registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Reserves `bytes` of the budget for a request read on `activity`'s connection:
    /// first from its address's share, then from the shared budget. Waits while either
    /// is spent.
    ///
    /// tokio's semaphore is fair: a request waiting at the head of its queue takes the
    /// permits returned until it has all it asked for, and everyone behind it waits,
    /// even those that would fit in what is free. So a quarter of the shared budget (at
    /// most [`RESERVED_MAX`]) is kept apart from the main part: a request of up to
    /// [`MEDIUM_FRAME`] takes whichever of the two parts serves it first, while a larger
    /// one waits in the main part's queue only. A large request waiting for the budget
    /// can therefore hold up other large ones (as before, in arrival order) but never
    /// the medium ones. A request larger than the main part (possible only when
    /// `queued.max.request.bytes` is under 4/3 of `socket.request.max.bytes`) takes the
    /// rest from the reserved part, after the main part.
    ///
    /// The order is always the address's share, then the main part, then the reserved
    /// part, and a connection holds one reservation at a time, so waiters cannot hold
    /// each other up in a cycle.
    pub async fn reserve(&self, activity: &Activity, bytes: u32) -> Option<Reservation> {
        let address = activity
            .address_budget
            .clone()
            .acquire_many_owned(bytes)
            .await
            .ok()?;
        let size = bytes as usize;
        if size <= self.medium_max {
            // Dropping the acquire that loses gives back what it had been assigned.
            return tokio::select! {
                biased;
                reserved = self.reserved.clone().acquire_many_owned(bytes) => Some(Reservation {
                    _address: address,
                    _main: None,
                    _reserved: Some(reserved.ok()?),
                }),
                main = self.budget.clone().acquire_many_owned(bytes) => Some(Reservation {
                    _address: address,
                    _main: Some(main.ok()?),
                    _reserved: None,
                }),
            };
        }
        let from_main = size.min(self.main_size);
        // Both fit in u32: they are at most `bytes`.
        let main = self
            .budget
            .clone()
            .acquire_many_owned(from_main as u32)
            .await
            .ok()?;
        let reserved = if size > from_main {
            Some(
                self.reserved
                    .clone()
                    .acquire_many_owned((size - from_main) as u32)
                    .await
                    .ok()?,
            )
        } else {
            None
        };
        Some(Reservation {
            _address: address,
            _main: Some(main),
            _reserved: reserved,
        })
    }

    fn caps(&self) -> std::sync::RwLockReadGuard<'_, ConnectionCaps> {
        self.caps
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes new connection caps (a dynamic broker config changed). Connections over a
    /// lowered cap stay; new ones are refused until the count is under it, as in Kafka.
    pub fn set_caps(&self, caps: ConnectionCaps) {
        *self
            .caps
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = caps;
    }

    /// The connection cap for one address.
    pub fn cap_for(&self, ip: IpAddr) -> usize {
        let caps = self.caps();
        caps.per_ip_overrides
            .get(&ip)
            .copied()
            .unwrap_or(caps.max_per_ip)
    }

    /// Decides whether a connection from `ip` is served (see the module docs).
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Admission {
        let ip = ip.to_canonical();
        let cap = self.cap_for(ip);
        let mut registry = self.registry();
        if registry.per_ip.get(&ip).map_or(0, |a| a.connections) >= cap {
            return Admission::TooManyFromAddress { cap };
        }
        if registry.total >= self.caps().max_connections {
            let Some(victim) = self.choose_victim(&registry) else {
                return Admission::Full;
            };
            registry.live.remove(&victim.id);
            registry.release(victim.ip);
            // notify_one keeps the wake-up if the task is not waiting at this moment.
            victim.evict.notify_one();
            tracing::debug!(
                peer = %victim.ip,
                idle_ms = victim.quiet_for(self).as_millis() as u64,
                "max.connections reached: closing the connection idle the longest"
            );
        }
        registry.next_id += 1;
        let address = registry.per_ip.entry(ip).or_insert_with(|| Address {
            connections: 0,
            budget: Arc::new(Semaphore::new(self.address_budget)),
        });
        address.connections += 1;
        let address_budget = address.budget.clone();
        let activity = Arc::new(Activity {
            id: registry.next_id,
            ip,
            last_active_ms: AtomicU64::new(self.now_ms()),
            state: AtomicU64::new(0),
            write_waiting_ms: AtomicU64::new(NOT_WAITING),
            evict: Notify::new(),
            address_budget,
        });
        registry.live.insert(activity.id, activity.clone());
        registry.total += 1;
        Admission::Admitted(ConnectionGuard {
            limits: self.clone(),
            activity,
        })
    }

    /// Picks the connection to close at `max.connections` and marks it [`EVICTED`]:
    /// the idle one quiet the longest, else one whose client has not read its replies
    /// for [`STALLED_WRITE_EVICTABLE`] (its requests are lost either way: it will not
    /// read their answers). A connection that turns busy while it is being looked at
    /// wins the compare-and-swap, and the next candidate is tried.
    fn choose_victim(&self, registry: &Registry) -> Option<Arc<Activity>> {
        let evict = |a: &Arc<Activity>| {
            a.state
                .compare_exchange(0, EVICTED, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        };
        let longest_idle = registry
            .live
            .values()
            .filter(|a| a.is_idle())
            .min_by_key(|a| a.last_active_ms.load(Ordering::Relaxed));
        if let Some(candidate) = longest_idle {
            if evict(candidate) {
                return Some(candidate.clone());
            }
            // It turned busy just now (rare): try the others, longest idle first.
            let mut idle: Vec<&Arc<Activity>> =
                registry.live.values().filter(|a| a.is_idle()).collect();
            idle.sort_by_key(|a| a.last_active_ms.load(Ordering::Relaxed));
            if let Some(candidate) = idle.into_iter().find(|a| evict(a)) {
                return Some(candidate.clone());
            }
        }
        let stalled = registry
            .live
            .values()
            .filter(|a| a.write_stalled(self))
            .min_by_key(|a| a.write_waiting_ms.load(Ordering::Relaxed))?;
        stalled.state.fetch_or(EVICTED, Ordering::AcqRel);
        Some(stalled.clone())
    }

    /// Completes when a connection slot may have been freed (or one stored wake-up).
    pub async fn slot_freed(&self) {
        self.slot_freed.notified().await;
    }

    /// Connections currently counted (for tests and logs).
    pub fn connection_count(&self) -> usize {
        self.registry().total
    }

    /// Connections with a request half-read or unanswered (for tests and logs).
    pub fn busy_count(&self) -> usize {
        self.registry()
            .live
            .values()
            .filter(|a| !a.is_idle())
            .count()
    }

    /// Budget bytes not reserved by requests being read (for tests and logs).
    pub fn budget_available(&self) -> usize {
        self.budget.available_permits() + self.reserved.available_permits()
    }
}

/// Lets through one line per peer address per [`WARN_INTERVAL`] and counts the rest.
#[derive(Default)]
pub struct WarnLimiter {
    peers: Mutex<HashMap<IpAddr, Quiet>>,
}

#[derive(Debug, Clone, Copy)]
struct Quiet {
    last_logged: Instant,
    suppressed: u64,
}

impl WarnLimiter {
    /// `Some(n)`: log now, saying that `n` lines were held back since the last one from
    /// this peer; `None`: hold this one back (it is counted).
    pub fn admit(&self, peer: IpAddr, now: Instant) -> Option<u64> {
        let mut peers = self
            .peers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(quiet) = peers.get_mut(&peer) {
            if now.saturating_duration_since(quiet.last_logged) < WARN_INTERVAL {
                quiet.suppressed += 1;
                return None;
            }
            let suppressed = quiet.suppressed;
            *quiet = Quiet {
                last_logged: now,
                suppressed: 0,
            };
            return Some(suppressed);
        }
        if peers.len() >= WARN_PEERS {
            // Forget peers quiet for a whole interval; their held-back counts are
            // dropped with them (they were never going to be logged anyway).
            peers.retain(|_, q| now.saturating_duration_since(q.last_logged) < WARN_INTERVAL);
            if peers.len() >= WARN_PEERS {
                peers.clear();
            }
        }
        peers.insert(
            peer,
            Quiet {
                last_logged: now,
                suppressed: 0,
            },
        );
        Some(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn limits(pairs: &[(&str, &str)]) -> Arc<Limits> {
        let props: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Arc::new(Limits::new(&BrokerConfig::from_properties(&props).unwrap()))
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn admitted(a: Admission) -> ConnectionGuard {
        match a {
            Admission::Admitted(guard) => guard,
            Admission::TooManyFromAddress { cap } => panic!("refused at cap {cap}"),
            Admission::Full => panic!("full"),
        }
    }

    #[test]
    fn per_address_caps_and_overrides() {
        let l = limits(&[
            ("max.connections.per.ip", "2"),
            ("max.connections.per.ip.overrides", "127.0.0.19:1"),
        ]);
        let a = admitted(l.admit(ip("127.0.0.11")));
        let _b = admitted(l.admit(ip("127.0.0.11")));
        assert!(matches!(
            l.admit(ip("127.0.0.11")),
            Admission::TooManyFromAddress { cap: 2 }
        ));
        // IPv4-mapped IPv6 is the same address.
        assert!(matches!(
            l.admit(ip("::ffff:127.0.0.11")),
            Admission::TooManyFromAddress { .. }
        ));
        let _c = admitted(l.admit(ip("127.0.0.12")));
        let _d = admitted(l.admit(ip("127.0.0.19")));
        assert!(matches!(
            l.admit(ip("127.0.0.19")),
            Admission::TooManyFromAddress { cap: 1 }
        ));
        drop(a);
        let _e = admitted(l.admit(ip("127.0.0.11")));
        assert_eq!(l.connection_count(), 4);
    }

    #[test]
    fn at_the_cap_the_longest_idle_connection_makes_room() {
        let l = limits(&[("max.connections", "3")]);
        let a = admitted(l.admit(ip("127.0.0.11")));
        let b = admitted(l.admit(ip("127.0.0.12")));
        let c = admitted(l.admit(ip("127.0.0.13")));
        // b is the oldest idle; a is busy (a request in flight), c half-reads one.
        b.activity().last_active_ms.store(1, Ordering::Relaxed);
        a.activity().last_active_ms.store(0, Ordering::Relaxed);
        a.activity().request_read(false);
        c.activity().last_active_ms.store(2, Ordering::Relaxed);
        let d = admitted(l.admit(ip("127.0.0.14")));
        d.activity().request_read(false);
        assert_eq!(l.connection_count(), 3);
        // b was told to close; dropping its guard later does not free a second slot.
        let evicted = b.activity().clone();
        let notified = evicted.evict.notified();
        tokio::pin!(notified);
        assert!(
            futures_now(notified.as_mut()),
            "the evicted connection is woken"
        );
        drop(b);
        assert_eq!(l.connection_count(), 3);
        assert!(c.activity().begin_request());
        assert!(matches!(l.admit(ip("127.0.0.15")), Admission::Full));
        a.activity().replies_done(1, &l);
        // a is idle again, so a slot can be made.
        assert!(matches!(l.admit(ip("127.0.0.15")), Admission::Admitted(_)));
    }

    #[test]
    fn eviction_and_a_starting_request_cannot_both_win() {
        let l = limits(&[("max.connections", "1")]);
        let a = admitted(l.admit(ip("127.0.0.11")));
        // a starts reading a request first: the evictor finds no victim.
        assert!(a.activity().begin_request());
        assert!(matches!(l.admit(ip("127.0.0.12")), Admission::Full));
        // Read completely with the next request's bytes behind it: still busy after
        // the first reply is written.
        a.activity().request_read(true);
        a.activity().replies_done(1, &l);
        assert!(matches!(l.admit(ip("127.0.0.12")), Admission::Full));
        a.activity().request_read(false);
        a.activity().replies_done(1, &l);
        // Idle again: the evictor wins, and a request starting after that is refused.
        let _b = admitted(l.admit(ip("127.0.0.12")));
        assert!(!a.activity().begin_request());
        assert!(!a.activity().is_idle());
    }

    #[test]
    fn a_connection_whose_client_reads_no_replies_is_evictable() {
        let mut l = Limits::new(
            &BrokerConfig::from_properties(
                &[("max.connections".to_owned(), "1".to_owned())].into(),
            )
            .unwrap(),
        );
        // Let the clock read past STALLED_WRITE_EVICTABLE without sleeping.
        l.epoch = Instant::now()
            .checked_sub(STALLED_WRITE_EVICTABLE * 2)
            .unwrap_or(l.epoch);
        let l = Arc::new(l);
        let a = admitted(l.admit(ip("127.0.0.11")));
        assert!(a.activity().begin_request());
        a.activity().request_read(false);
        // Waiting on the socket only just now: not yet.
        a.activity().set_write_waiting(true, &l);
        assert!(matches!(l.admit(ip("127.0.0.12")), Admission::Full));
        // No progress for longer than STALLED_WRITE_EVICTABLE.
        a.activity().write_waiting_ms.store(0, Ordering::Relaxed);
        let _b = admitted(l.admit(ip("127.0.0.12")));
        assert!(!a.activity().begin_request(), "a was evicted");
    }

    /// Polls a future once.
    fn futures_now<F: std::future::Future>(f: std::pin::Pin<&mut F>) -> bool {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        f.poll(&mut cx).is_ready()
    }

    #[test]
    fn warnings_are_one_per_peer_per_interval_with_a_count() {
        let w = WarnLimiter::default();
        let t0 = Instant::now();
        let peer = ip("127.0.0.11");
        assert_eq!(w.admit(peer, t0), Some(0));
        for i in 1..=5 {
            assert_eq!(w.admit(peer, t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(
            w.admit(ip("127.0.0.12"), t0),
            Some(0),
            "other peers have their own"
        );
        assert_eq!(w.admit(peer, t0 + WARN_INTERVAL), Some(5));
        assert_eq!(w.admit(peer, t0 + WARN_INTERVAL), None);
        // Many peers: memory stays bounded.
        for i in 0..(WARN_PEERS as u32 * 3) {
            w.admit(IpAddr::from(i.to_be_bytes()), t0 + WARN_INTERVAL * 3);
        }
        assert!(w.peers.lock().unwrap().len() <= WARN_PEERS);
    }
}
