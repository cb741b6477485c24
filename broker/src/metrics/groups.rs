//! Consumer-group lag and its estimated delay, for the groups this broker coordinates.
//!
//! Lag is the partition's high watermark minus the group's committed offset (what
//! `kafka-consumer-groups --describe` shows). The delay estimate is the seed's formula:
//! lag divided by the rate at which the group has been consuming the partition
//! recently, i.e. how long the records waiting now will wait at the current pace:
//!
//! - the rate is the committed offset's advance from the oldest sample of the last
//!   [`RATE_WINDOW`] until now (samples every [`SAMPLE_INTERVAL`] and at each scrape);
//!   when the window holds no advance, from the last sample before the offset last moved
//!   until now, so that a consumer that stops sees its rate fall and its delay rise
//!   continuously rather than jump when its last progress leaves the window;
//! - with no lag the delay is 0; with lag and no advance ever seen (a group stuck since
//!   this broker first saw it), the time since then, a lower bound that grows a second
//!   every second; with a single sample there is no rate yet and no estimate.
//!
//! Only partitions this broker has a replica of have a high watermark here; in a cluster
//! the coordinator may host none of a group's partitions, and those have no lag or delay
//! (exported as absent, never as 0). On a topic with records far apart the rate is at
//! most the produce rate, so the delay reads as the gap between records: the formula's
//! nature, said in docs/metrics.md.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::state::BrokerState;

/// How often the broker samples committed offsets.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(5);
/// How far back the consume rate looks.
pub const RATE_WINDOW: Duration = Duration::from_secs(60);
/// Samples closer than this to the previous one are skipped (scrapes add samples).
const MIN_SAMPLE_GAP: Duration = Duration::from_millis(900);

/// One group as the coordinator holds it now.
#[derive(Debug, Clone)]
pub struct GroupSample {
    pub group: String,
    pub state: &'static str,
    pub members: usize,
    pub generation: i32,
    /// (topic, partition, committed offset).
    pub committed: Vec<(String, i32, i64)>,
}

/// Reads every group of the coordinator (under its lock, briefly).
pub async fn sample(state: &BrokerState) -> Vec<GroupSample> {
    state
        .groups
        .read(|c| {
            c.groups()
                .map(|g| GroupSample {
                    group: g.id().to_owned(),
                    state: g.state().as_str(),
                    members: g.members().count(),
                    generation: g.generation_id(),
                    committed: g
                        .committed_offsets()
                        .iter()
                        .map(|((topic, partition), v)| (topic.clone(), *partition, v.offset))
                        .collect(),
                })
                .collect()
        })
        .await
}

#[derive(Debug)]
struct Track {
    /// (when, committed offset), oldest first: the window, the last sample before it,
    /// and flat runs kept as their first and last sample (so a stuck group's history
    /// stays small).
    samples: std::collections::VecDeque<(Instant, i64)>,
    /// When this broker first saw the offset, or when the group was last caught up.
    still_since: Instant,
}

/// Committed-offset history per (group, topic, partition), for the consume rate.
#[derive(Debug, Default)]
pub struct ConsumeRates {
    tracks: Mutex<HashMap<(String, String, i32), Track>>,
}

/// Lag and delay of one partition of a group.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    pub committed_offset: i64,
    /// The high watermark; None when this broker has no replica of the partition.
    pub log_end_offset: Option<i64>,
    pub lag: Option<i64>,
    /// Offsets consumed per second recently; None before two samples.
    pub consume_rate: Option<f64>,
    /// Estimated seconds the waiting records will wait (see the module docs).
    pub delay_seconds: Option<f64>,
}

/// What the history says about one partition of a group.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Pace {
    /// Offsets per second; None when unknown (one sample so far).
    rate: Option<f64>,
    /// Whether the offset ever advanced in the history kept.
    advanced: bool,
    /// Since when nothing was seen to advance (first sight, or last caught up).
    still: Duration,
}

impl ConsumeRates {
    /// Adds a sample of every group's committed offsets; forgets partitions no longer
    /// committed (a deleted group or offsets). `high_watermark` gives a partition's
    /// high watermark: a group caught up with it has nothing waiting, so its stall clock
    /// restarts (an idle topic's consumer is not stalled).
    pub fn observe(
        &self,
        now: Instant,
        groups: &[GroupSample],
        high_watermark: &dyn Fn(&str, i32) -> Option<i64>,
    ) {
        let mut tracks = self.tracks.lock().unwrap_or_else(|p| p.into_inner());
        let mut seen = std::collections::HashSet::new();
        for g in groups {
            for (topic, partition, offset) in &g.committed {
                let key = (g.group.clone(), topic.clone(), *partition);
                let track = tracks.entry(key.clone()).or_insert_with(|| Track {
                    samples: Default::default(),
                    still_since: now,
                });
                track.add(now, *offset);
                if high_watermark(topic, *partition).is_some_and(|end| *offset >= end) {
                    track.still_since = now;
                }
                seen.insert(key);
            }
        }
        tracks.retain(|key, _| seen.contains(key));
    }

    fn pace(&self, group: &str, topic: &str, partition: i32, now: Instant) -> Option<Pace> {
        let tracks = self.tracks.lock().unwrap_or_else(|p| p.into_inner());
        let track = tracks.get(&(group.to_owned(), topic.to_owned(), partition))?;
        Some(track.pace(now))
    }

    /// Lag and delay per partition of `group`, with the high watermarks of `state`.
    pub fn lag_of(
        &self,
        state: &BrokerState,
        group: &GroupSample,
        now: Instant,
    ) -> Vec<PartitionLag> {
        group
            .committed
            .iter()
            .map(|(topic, partition, committed)| {
                let log_end = high_watermark(state, topic, *partition);
                let lag = log_end.map(|end| crate::coordinator::lag(*committed, end));
                let pace = self.pace(&group.group, topic, *partition, now);
                PartitionLag {
                    topic: topic.clone(),
                    partition: *partition,
                    committed_offset: *committed,
                    log_end_offset: log_end,
                    lag,
                    consume_rate: pace.and_then(|p| p.rate),
                    delay_seconds: lag.zip(pace).and_then(|(lag, pace)| delay(lag, pace)),
                }
            })
            .collect()
    }
}

/// The high watermark of a partition this broker has.
pub fn high_watermark(state: &BrokerState, topic: &str, partition: i32) -> Option<i64> {
    let topic = state.topics.get(topic)?;
    Some(topic.partition(partition)?.log.high_watermark())
}

impl Track {
    fn add(&mut self, now: Instant, offset: i64) {
        match self.samples.back().copied() {
            Some((at, _)) if now.saturating_duration_since(at) < MIN_SAMPLE_GAP => return,
            Some((_, last)) if offset < last => {
                // Reset backwards (reset-offsets): the old history says nothing.
                self.samples.clear();
                self.still_since = now;
            }
            Some((_, last)) if offset == last => {
                // A flat run keeps its first and last sample only.
                let len = self.samples.len();
                if len >= 2 && self.samples[len - 2].1 == offset {
                    self.samples.pop_back();
                }
            }
            _ => {}
        }
        self.samples.push_back((now, offset));
        // Keep one sample at or before the window's start; and while nothing advanced
        // inside the window, the last sample before the offset last moved.
        let newest = offset;
        while self.samples.len() > 2
            && self.samples.get(1).is_some_and(|(at, o)| {
                now.saturating_duration_since(*at) >= RATE_WINDOW && *o < newest
            })
        {
            self.samples.pop_front();
        }
    }

    fn pace(&self, now: Instant) -> Pace {
        let still = now.saturating_duration_since(self.still_since);
        let (Some((first_at, first)), Some((_, last))) =
            (self.samples.front(), self.samples.back())
        else {
            return Pace {
                rate: None,
                advanced: false,
                still,
            };
        };
        let span = now.saturating_duration_since(*first_at).as_secs_f64();
        if self.samples.len() < 2 || span < 1.0 {
            return Pace {
                rate: None,
                advanced: false,
                still,
            };
        }
        let advance = last.saturating_sub(*first).max(0) as f64;
        Pace {
            rate: Some(advance / span),
            advanced: advance > 0.0,
            still,
        }
    }
}

/// See the module docs; None when there is no estimate yet.
fn delay(lag: i64, pace: Pace) -> Option<f64> {
    if lag <= 0 {
        return Some(0.0);
    }
    match pace.rate {
        Some(rate) if pace.advanced && rate > 0.0 => Some(lag as f64 / rate),
        Some(_) => Some(pace.still.as_secs_f64()),
        None => None,
    }
}

/// Samples every group and adds the sample to the consume rates (a scrape, an admin
/// API call and the periodic sampler all do this); returns the sample and its time.
pub async fn sample_and_observe(state: &BrokerState) -> (Vec<GroupSample>, Instant) {
    let groups = sample(state).await;
    let now = Instant::now();
    state
        .metrics
        .consume_rates
        .observe(now, &groups, &|t, p| high_watermark(state, t, p));
    (groups, now)
}

/// Samples committed offsets every [`SAMPLE_INTERVAL`] until shutdown.
pub async fn run(
    state: std::sync::Arc<BrokerState>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(SAMPLE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        sample_and_observe(&state).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_end(_: &str, _: i32) -> Option<i64> {
        None
    }

    fn group(offset: i64) -> Vec<GroupSample> {
        vec![GroupSample {
            group: "g".to_owned(),
            state: "Stable",
            members: 1,
            generation: 1,
            committed: vec![("t".to_owned(), 0, offset)],
        }]
    }

    fn pace(rates: &ConsumeRates, at: Instant) -> Pace {
        rates.pace("g", "t", 0, at).expect("tracked")
    }

    #[test]
    fn the_rate_is_the_committed_offsets_advance_until_now() {
        let rates = ConsumeRates::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        rates.observe(t0, &group(100), &no_end);
        // One sample: no rate, no estimate.
        assert_eq!(pace(&rates, at(0)).rate, None);
        assert_eq!(delay(50, pace(&rates, at(0))), None);
        rates.observe(at(5), &group(600), &no_end);
        rates.observe(at(10), &group(1100), &no_end);
        let p = pace(&rates, at(10));
        assert_eq!(p.rate, Some(100.0));
        // 500 records waiting at 100/s: 5 s.
        assert_eq!(delay(500, p), Some(5.0));
        assert_eq!(delay(0, p), Some(0.0));
    }

    #[test]
    fn a_stopped_consumers_delay_rises_without_jumps() {
        let rates = ConsumeRates::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        // 100/s for a minute, then stopped at offset 6000 while 100/s keep arriving.
        for s in (0..=60).step_by(5) {
            rates.observe(at(s), &group(s as i64 * 100), &no_end);
        }
        let mut previous = 0.0;
        for s in (65..=400).step_by(5) {
            rates.observe(at(s), &group(6000), &no_end);
            let lag = (s as i64 - 60) * 100;
            let d = delay(lag, pace(&rates, at(s))).expect("an estimate");
            assert!(d >= previous, "delay fell from {previous} to {d} at {s} s");
            previous = d;
        }
        assert!(previous > 1000.0, "{previous}");
        // The flat run is kept as two samples, not one per observation.
        let tracks = rates.tracks.lock().unwrap();
        assert!(tracks.values().next().unwrap().samples.len() <= 4);
    }

    #[test]
    fn stuck_since_first_sight_counts_the_time_and_caught_up_restarts_it() {
        let rates = ConsumeRates::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        rates.observe(t0, &group(1100), &no_end);
        rates.observe(at(100), &group(1100), &no_end);
        assert_eq!(delay(10, pace(&rates, at(110))), Some(110.0));
        // Caught up with the log end: nothing waits, the stall clock restarts.
        let at_end = |_: &str, _: i32| Some(1100);
        rates.observe(at(120), &group(1100), &at_end);
        assert_eq!(delay(10, pace(&rates, at(121))), Some(1.0));
    }

    #[test]
    fn a_reset_backwards_restarts_the_history_and_vanished_groups_are_forgotten() {
        let rates = ConsumeRates::default();
        let t0 = Instant::now();
        rates.observe(t0, &group(1000), &no_end);
        rates.observe(t0 + Duration::from_secs(5), &group(10), &no_end);
        assert_eq!(pace(&rates, t0 + Duration::from_secs(5)).rate, None);
        rates.observe(t0 + Duration::from_secs(10), &[], &no_end);
        assert!(rates.tracks.lock().unwrap().is_empty());
        // Hostile offsets do not overflow.
        rates.observe(t0, &group(i64::MIN), &no_end);
        rates.observe(t0 + Duration::from_secs(5), &group(i64::MAX), &no_end);
        assert!(pace(&rates, t0 + Duration::from_secs(5))
            .rate
            .unwrap()
            .is_finite());
    }
}
