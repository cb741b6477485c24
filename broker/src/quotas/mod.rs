//! Client quotas: produce and fetch byte rates and request-time percentages per user and
//! client id, enforced as Kafka enforces them (`ClientQuotaManager`, KIP-219), so that one
//! heavy client cannot starve the others.
//!
//! - The quota that applies to a request is the most specific one set, in Kafka's order:
//!   `/users/U/clients/C`, `/users/U/clients/<default>`, `/users/U`,
//!   `/users/<default>/clients/C`, `/users/<default>/clients/<default>`,
//!   `/users/<default>`, `/clients/C`, `/clients/<default>`. Its rate is measured per
//!   user and/or client id as that entity names them (a `/users/U` quota is shared by
//!   every client of U; a `/clients/<default>` quota is each client id's own).
//! - A rate is measured over `quota.window.num` samples of `quota.window.size.seconds`
//!   (11 of 1 s), over at least all but one of them, as Kafka's `Rate`. Past the quota a
//!   request is throttled for `(rate - quota) / quota * window`, at most 25 s.
//! - Produce: the records are appended, the answer carries `throttle_time_ms`, and the
//!   connection is muted (nothing more is read from it) for that long. Fetch: a throttled
//!   consumer's bytes are taken back and it gets an empty answer with `throttle_time_ms`
//!   (its records come after the throttle), and the connection is muted. Request time:
//!   the time handlers spend on a client's requests (`request_percentage`, percent of one
//!   thread) mutes its connection past the quota.
//! - The user is the connection's principal name (`ANONYMOUS` without authentication);
//!   follower fetches are never throttled.
//!
//! Quotas are kept per broker for now (`store`), like users and ACLs: in a cluster each
//! broker enforces what it was told.

pub mod store;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use store::{
    Entity, QuotaSet, QuotaStore, CLIENT_ID, CONSUMER_BYTE_RATE, PRODUCER_BYTE_RATE,
    REQUEST_PERCENTAGE, USER,
};

/// The longest throttle. Not the measuring window: one request larger than the quota
/// allows over a whole window (a 2 MB produce against 500 KB/s over 3 s) must still cost
/// its full time, or the rate would settle at request size / window instead of the quota.
/// Under a client's default `request.timeout.ms` (30 s), so throttled requests do not time
/// out.
const MAX_THROTTLE: Duration = Duration::from_secs(25);

/// What is measured against a quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuotaKind {
    /// Bytes of produced records (`producer_byte_rate`).
    Produce,
    /// Bytes of fetched records (`consumer_byte_rate`).
    Fetch,
    /// Handler time, in percent of one thread (`request_percentage`).
    Request,
}

impl QuotaKind {
    fn key(self) -> &'static str {
        match self {
            QuotaKind::Produce => PRODUCER_BYTE_RATE,
            QuotaKind::Fetch => CONSUMER_BYTE_RATE,
            QuotaKind::Request => REQUEST_PERCENTAGE,
        }
    }
}

/// One entity type of a quota candidate: absent, its default (`Some(None)`), or a name.
type Part = Option<Option<String>>;

/// Who is measured: the user and client id a matched quota names (empty when it names
/// no such type).
type SensorKey = (QuotaKind, String, String);

/// A rate over the last samples; see the module docs.
#[derive(Debug, Default)]
struct Sensor {
    /// (sample start, total), oldest first.
    samples: std::collections::VecDeque<(Instant, f64)>,
}

impl Sensor {
    fn roll(&mut self, now: Instant, sample: Duration, count: usize) {
        let span = sample * count as u32;
        while self
            .samples
            .front()
            .is_some_and(|(start, _)| now.saturating_duration_since(*start) >= span)
        {
            self.samples.pop_front();
        }
        let current = self
            .samples
            .back()
            .is_some_and(|(start, _)| now.saturating_duration_since(*start) < sample);
        if !current {
            self.samples.push_back((now, 0.0));
        }
    }

    fn add(&mut self, amount: f64) {
        if let Some((_, total)) = self.samples.back_mut() {
            *total += amount;
        }
    }

    /// Per second, and the window it was measured over.
    fn rate(&self, now: Instant, sample: Duration, count: usize) -> (f64, Duration) {
        let oldest = self.samples.front().map_or(now, |(start, _)| *start);
        let window = now
            .saturating_duration_since(oldest)
            .max(sample * count.saturating_sub(1).max(1) as u32);
        let total: f64 = self.samples.iter().map(|(_, t)| t).sum();
        (total / window.as_secs_f64(), window)
    }
}

/// A connection's mute: no request is read from it before this deadline (KIP-219).
#[derive(Debug, Default)]
pub struct Mute(AtomicU64);

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl Mute {
    /// Mutes until `throttle` from now (a longer mute already set stays).
    pub fn extend(&self, throttle: Duration) {
        if throttle.is_zero() {
            return;
        }
        let until = (Instant::now() + throttle).saturating_duration_since(epoch());
        self.0.fetch_max(
            u64::try_from(until.as_millis()).unwrap_or(u64::MAX),
            Ordering::AcqRel,
        );
    }

    /// When the mute ends, if it is still on.
    pub fn until(&self) -> Option<Instant> {
        let until = epoch() + Duration::from_millis(self.0.load(Ordering::Acquire));
        (until > Instant::now()).then_some(until)
    }
}

/// The broker's quotas: what is set, and the rates measured against it.
#[derive(Debug)]
pub struct Quotas {
    pub store: QuotaStore,
    sample: Duration,
    samples: usize,
    sensors: Mutex<HashMap<SensorKey, Sensor>>,
}

impl Quotas {
    pub fn new(store: QuotaStore, sample: Duration, samples: usize) -> Quotas {
        Quotas {
            store,
            sample: sample.max(Duration::from_millis(1)),
            samples: samples.max(1),
            sensors: Mutex::new(HashMap::new()),
        }
    }

    /// The quotas of the data directory, measured as `quota.window.num` and
    /// `quota.window.size.seconds` say.
    pub fn open(config: &crate::config::BrokerConfig) -> Result<Quotas, String> {
        Ok(Quotas::new(
            QuotaStore::open(&config.data_dir)?,
            Duration::from_secs(config.quota_window_size_seconds),
            config.quota_window_num,
        ))
    }

    /// The most specific quota on `kind` for `user` and `client_id`, and who shares it.
    fn quota(
        set: &QuotaSet,
        kind: QuotaKind,
        user: &str,
        client_id: &str,
    ) -> Option<(f64, SensorKey)> {
        if set.quotas.is_empty() {
            return None;
        }
        let named = |v: &str| Some(v.to_owned());
        let candidates: [(Part, Part); 8] = [
            (Some(named(user)), Some(named(client_id))),
            (Some(named(user)), Some(None)),
            (Some(named(user)), None),
            (Some(None), Some(named(client_id))),
            (Some(None), Some(None)),
            (Some(None), None),
            (None, Some(named(client_id))),
            (None, Some(None)),
        ];
        candidates.into_iter().find_map(|(u, c)| {
            let mut entity = Entity::new();
            if let Some(u) = &u {
                entity.insert(USER.to_owned(), u.clone());
            }
            if let Some(c) = &c {
                entity.insert(CLIENT_ID.to_owned(), c.clone());
            }
            let value = *set.quotas.get(&entity)?.get(kind.key())?;
            let user_tag = if u.is_some() {
                user.to_owned()
            } else {
                String::new()
            };
            let client_tag = if c.is_some() {
                client_id.to_owned()
            } else {
                String::new()
            };
            Some((value, (kind, user_tag, client_tag)))
        })
    }

    /// Counts `amount` against the quota that applies, if any; how long to throttle.
    pub fn record(&self, kind: QuotaKind, user: &str, client_id: &str, amount: f64) -> Duration {
        let set = self.store.snapshot();
        let Some((bound, key)) = Self::quota(&set, kind, user, client_id) else {
            return Duration::ZERO;
        };
        let now = Instant::now();
        let mut sensors = self.sensors.lock().unwrap_or_else(|p| p.into_inner());
        let sensor = sensors.entry(key).or_default();
        sensor.roll(now, self.sample, self.samples);
        sensor.add(amount);
        let (rate, window) = sensor.rate(now, self.sample, self.samples);
        if rate <= bound {
            return Duration::ZERO;
        }
        let throttle = window.mul_f64(((rate - bound) / bound).min(f64::from(u32::MAX)));
        throttle.min(MAX_THROTTLE)
    }

    /// Takes back what [`Quotas::record`] counted (a throttled fetch sends nothing).
    pub fn unrecord(&self, kind: QuotaKind, user: &str, client_id: &str, amount: f64) {
        let set = self.store.snapshot();
        if let Some((_, key)) = Self::quota(&set, kind, user, client_id) {
            let mut sensors = self.sensors.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(sensor) = sensors.get_mut(&key) {
                sensor.add(-amount);
            }
        }
    }

    /// Whether any quota is set (the hot paths skip all of this otherwise).
    pub fn any(&self) -> bool {
        !self.store.snapshot().quotas.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::Change;

    /// An entity as (type, name or default) pairs.
    type Pairs<'a> = &'a [(&'a str, Option<&'a str>)];

    fn quotas(entries: &[(Pairs<'_>, &str, f64)]) -> (tempfile::TempDir, Quotas) {
        let dir = tempfile::tempdir().unwrap();
        let store = QuotaStore::open(dir.path()).unwrap();
        let changes: Vec<(Entity, Vec<Change>)> = entries
            .iter()
            .map(|(entity, key, value)| {
                (
                    entity
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.map(str::to_owned)))
                        .collect(),
                    vec![(key.to_string(), Some(*value))],
                )
            })
            .collect();
        store.alter(&changes).unwrap();
        (dir, Quotas::new(store, Duration::from_secs(1), 11))
    }

    #[test]
    fn the_most_specific_quota_applies_and_who_shares_it() {
        let (_dir, q) = quotas(&[
            (&[(CLIENT_ID, None)], PRODUCER_BYTE_RATE, 1.0),
            (&[(USER, Some("alice"))], PRODUCER_BYTE_RATE, 2.0),
            (
                &[(USER, Some("alice")), (CLIENT_ID, Some("c1"))],
                PRODUCER_BYTE_RATE,
                3.0,
            ),
        ]);
        let set = q.store.snapshot();
        let found = |user, client| Quotas::quota(&set, QuotaKind::Produce, user, client).unwrap();
        assert_eq!(found("alice", "c1").0, 3.0);
        // Alice's other clients share her user quota.
        assert_eq!(
            found("alice", "c2"),
            (2.0, (QuotaKind::Produce, "alice".into(), String::new()))
        );
        // Anyone else: the default client quota, per client id.
        assert_eq!(
            found("bob", "c9"),
            (1.0, (QuotaKind::Produce, String::new(), "c9".into()))
        );
        assert!(Quotas::quota(&set, QuotaKind::Fetch, "bob", "c9").is_none());
    }

    #[test]
    fn past_the_quota_the_throttle_grows_with_the_excess() {
        let (_dir, q) = quotas(&[(&[(CLIENT_ID, Some("c"))], PRODUCER_BYTE_RATE, 1000.0)]);
        // 10 s of window at least: 10,000 bytes are within the quota.
        assert_eq!(
            q.record(QuotaKind::Produce, "u", "c", 10_000.0),
            Duration::ZERO
        );
        // Twice the quota over the window: throttled about as long as the window.
        let throttle = q.record(QuotaKind::Produce, "u", "c", 10_000.0);
        assert!(
            throttle >= Duration::from_secs(9) && throttle <= Duration::from_secs(11),
            "{throttle:?}"
        );
        // Never more than MAX_THROTTLE.
        assert_eq!(q.record(QuotaKind::Produce, "u", "c", 1e12), MAX_THROTTLE);
        // Other clients are not affected.
        assert_eq!(
            q.record(QuotaKind::Produce, "u", "other", 1e9),
            Duration::ZERO
        );
        // Taken back, the rate falls again.
        q.unrecord(QuotaKind::Produce, "u", "c", 1e12 + 20_000.0);
        assert_eq!(q.record(QuotaKind::Produce, "u", "c", 1.0), Duration::ZERO);
    }

    #[test]
    fn a_mute_only_grows() {
        let mute = Mute::default();
        assert!(mute.until().is_none());
        mute.extend(Duration::from_secs(5));
        let first = mute.until().unwrap();
        mute.extend(Duration::from_millis(10));
        assert_eq!(mute.until().unwrap(), first);
    }
}
