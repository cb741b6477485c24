//! Consumer-group lag and its estimated delay, for the groups this broker coordinates.
//!
//! Lag is the partition's high watermark minus the group's committed offset (what
//! `kafka-consumer-groups --describe` shows). The delay estimate is the seed's formula:
//! lag divided by the rate at which the group has been consuming the partition
//! recently, i.e. how long the records waiting now will wait at the current pace:
//!
//! - the rate is the committed offset's advance over the last [`RATE_WINDOW`], from
//!   samples taken every [`SAMPLE_INTERVAL`] by the broker (and at each scrape);
//! - with no lag the delay is 0;
//! - with lag and no progress in the window (a stopped or stuck consumer), the rate
//!   says nothing, and the delay is how long the committed offset has not moved while
//!   records were waiting: a lower bound that grows by a second every second, which is
//!   what an alert on a stuck group wants to see.

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
    /// (when, committed offset), oldest first, within the window.
    samples: std::collections::VecDeque<(Instant, i64)>,
    /// When the committed offset last changed (or was first seen).
    moved_at: Instant,
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
    /// The high watermark; None when this broker does not know the partition.
    pub log_end_offset: Option<i64>,
    pub lag: Option<i64>,
    /// Offsets consumed per second over the recent window.
    pub consume_rate: f64,
    /// Estimated seconds the waiting records will wait (see the module docs).
    pub delay_seconds: Option<f64>,
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
                    moved_at: now,
                });
                match track.samples.back() {
                    Some((at, _)) if now.duration_since(*at) < MIN_SAMPLE_GAP => {}
                    Some((_, last)) if offset < last => {
                        // Reset backwards (reset-offsets): the old history says nothing.
                        track.samples.clear();
                        track.samples.push_back((now, *offset));
                        track.moved_at = now;
                    }
                    last => {
                        if last.is_some_and(|(_, last)| last != offset) {
                            track.moved_at = now;
                        }
                        track.samples.push_back((now, *offset));
                    }
                }
                if high_watermark(topic, *partition).is_some_and(|end| *offset >= end) {
                    track.moved_at = now;
                }
                while track
                    .samples
                    .front()
                    .is_some_and(|(at, _)| now.duration_since(*at) > RATE_WINDOW)
                    && track.samples.len() > 2
                {
                    track.samples.pop_front();
                }
                seen.insert(key);
            }
        }
        tracks.retain(|key, _| seen.contains(key));
    }

    /// The consume rate (offsets per second) and how long the committed offset has not
    /// moved, for one partition of a group.
    fn rate(&self, group: &str, topic: &str, partition: i32, now: Instant) -> (f64, Duration) {
        let tracks = self.tracks.lock().unwrap_or_else(|p| p.into_inner());
        let Some(track) = tracks.get(&(group.to_owned(), topic.to_owned(), partition)) else {
            return (0.0, Duration::ZERO);
        };
        let still = now.saturating_duration_since(track.moved_at);
        let (Some((first_at, first)), Some((last_at, last))) =
            (track.samples.front(), track.samples.back())
        else {
            return (0.0, still);
        };
        let span = last_at.duration_since(*first_at).as_secs_f64();
        if span < 1.0 {
            return (0.0, still);
        }
        (((last - first) as f64 / span).max(0.0), still)
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
                let (consume_rate, still) = self.rate(&group.group, topic, *partition, now);
                PartitionLag {
                    topic: topic.clone(),
                    partition: *partition,
                    committed_offset: *committed,
                    log_end_offset: log_end,
                    lag,
                    consume_rate,
                    delay_seconds: lag.map(|lag| delay(lag, consume_rate, still)),
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

/// See the module docs.
pub fn delay(lag: i64, rate: f64, still: Duration) -> f64 {
    if lag <= 0 {
        0.0
    } else if rate > 0.0 {
        lag as f64 / rate
    } else {
        still.as_secs_f64()
    }
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
        let groups = sample(&state).await;
        state
            .metrics
            .consume_rates
            .observe(Instant::now(), &groups, &|t, p| {
                high_watermark(&state, t, p)
            });
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

    #[test]
    fn the_rate_is_the_committed_offsets_advance_over_the_window() {
        let rates = ConsumeRates::default();
        let t0 = Instant::now();
        rates.observe(t0, &group(100), &no_end);
        rates.observe(t0 + Duration::from_secs(5), &group(600), &no_end);
        rates.observe(t0 + Duration::from_secs(10), &group(1100), &no_end);
        let (rate, still) = rates.rate("g", "t", 0, t0 + Duration::from_secs(10));
        assert_eq!(rate, 100.0);
        assert_eq!(still, Duration::ZERO);
        // 500 records waiting at 100/s: 5 s.
        assert_eq!(delay(500, rate, still), 5.0);
        // Old samples leave the window: only the recent pace counts.
        rates.observe(t0 + Duration::from_secs(100), &group(1100), &no_end);
        rates.observe(t0 + Duration::from_secs(105), &group(1100), &no_end);
        let (rate, still) = rates.rate("g", "t", 0, t0 + Duration::from_secs(110));
        assert_eq!(rate, 0.0);
        assert_eq!(still, Duration::from_secs(100));
        assert_eq!(delay(10, rate, still), 100.0);
        assert_eq!(delay(0, rate, still), 0.0);
        // Caught up with the log end: nothing waits, the stall clock restarts.
        let at_end = |_: &str, _: i32| Some(1100);
        rates.observe(t0 + Duration::from_secs(120), &group(1100), &at_end);
        let (_, still) = rates.rate("g", "t", 0, t0 + Duration::from_secs(121));
        assert_eq!(still, Duration::from_secs(1));
    }

    #[test]
    fn a_reset_backwards_restarts_the_history_and_vanished_groups_are_forgotten() {
        let rates = ConsumeRates::default();
        let t0 = Instant::now();
        rates.observe(t0, &group(1000), &no_end);
        rates.observe(t0 + Duration::from_secs(5), &group(10), &no_end);
        let (rate, _) = rates.rate("g", "t", 0, t0 + Duration::from_secs(5));
        assert_eq!(rate, 0.0);
        rates.observe(t0 + Duration::from_secs(10), &[], &no_end);
        assert!(rates.tracks.lock().unwrap().is_empty());
    }
}
