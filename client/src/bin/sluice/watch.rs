//! What `sluice consume` tells its user on stderr while it reads, so that it is never
//! silent when something is wrong: a lost and regained connection, a deleted topic, a
//! group join that takes time, and on a terminal a live status line (records/s and lag
//! behind the log end). Nothing of this goes to stdout, and the status line only
//! appears when stderr is a terminal.

use std::collections::BTreeSet;
use std::future::Future;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sluice_client::metadata::TopicInfo;
use sluice_client::{Consumer, Error};

/// Fetches failing for less than this are a blip (a leader moving), not worth a line.
const GRACE: Duration = Duration::from_secs(1);

/// How often a member with no partitions of its topic checks that the topic exists.
const PROBE_EVERY: Duration = Duration::from_secs(2);

/// A group join slower than this gets a "joining group" line.
const SLOW_JOIN: Duration = Duration::from_secs(1);

/// How a read stands after the latest poll.
#[derive(Debug)]
pub enum Verdict {
    /// Go on reading.
    Reading,
    /// The topic was deleted and the user did not ask to wait for it.
    TopicDeleted,
    /// The topic was deleted and we wait: stop fetching it.
    WaitingForTopic,
    /// The topic exists again: read the new one from its beginning (positions in the
    /// deleted topic mean nothing there).
    TopicRecreated(TopicInfo),
}

/// What the metadata says about the topic.
enum TopicState {
    Gone,
    Exists(TopicInfo),
    /// No answer (a broker down), or the topic has no partition leaders yet.
    Unknown(Error),
}

/// The stderr reporter of one `sluice consume`.
pub struct Watch {
    topic: String,
    group: Option<String>,
    wait_for_topic: bool,
    /// The brokers announced as lost, until fetches from them succeed again.
    lost: BTreeSet<String>,
    /// Whether "topic was deleted" was said (and we wait for it to come back).
    deleted: bool,
    /// Whether "joining group" was said, and "joined" is still to be said.
    joining: bool,
    /// When the metadata was last asked whether the topic exists.
    last_probe: Instant,
    status: Option<Status>,
}

/// The live status line and what its rate is computed from.
struct Status {
    bar: ProgressBar,
    /// Records printed, and when, at the start of the current rate window.
    window: (Instant, u64),
    rate: f64,
}

impl Watch {
    /// `live` asks for the status line (with `--follow`); it is only drawn when stderr
    /// is a terminal.
    pub fn new(topic: &str, group: Option<&str>, wait_for_topic: bool, live: bool) -> Watch {
        let status = (live && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(4));
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            Status {
                bar,
                window: (Instant::now(), 0),
                rate: 0.0,
            }
        });
        Watch {
            topic: topic.to_owned(),
            group: group.map(str::to_owned),
            wait_for_topic,
            lost: BTreeSet::new(),
            deleted: false,
            joining: false,
            last_probe: Instant::now(),
            status,
        }
    }

    /// One line on stderr, above the status line if there is one.
    fn say(&self, line: &str) {
        match &self.status {
            Some(status) => status.bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    /// Runs `write` (printing `count` records to stdout) without the status line in the
    /// way. Only a stdout on the terminal needs the line cleared first; a piped one
    /// leaves it alone (clearing forces a redraw: not once per poll for nothing).
    pub fn printing<T>(&self, count: usize, write: impl FnOnce() -> T) -> T {
        match &self.status {
            Some(status) if count > 0 && std::io::stdout().is_terminal() => {
                status.bar.suspend(write)
            }
            _ => write(),
        }
    }

    /// Awaits `poll`; if the consumer has not joined its group yet and this takes a
    /// while, says "joining group G…" (once).
    pub async fn poll<F: Future>(&mut self, consumer_joined: bool, poll: F) -> F::Output {
        let Some(group) = self
            .group
            .clone()
            .filter(|_| !consumer_joined && !self.joining)
        else {
            return poll.await;
        };
        let mut poll = std::pin::pin!(poll);
        tokio::select! {
            output = &mut poll => return output,
            _ = tokio::time::sleep(SLOW_JOIN) => {}
        }
        self.say(&format!("joining group {group}…"));
        self.joining = true;
        poll.await
    }

    /// Looks at the consumer after a poll: reports a lost or regained connection, a
    /// deleted topic, a finished join, and updates the status line.
    pub async fn check(&mut self, consumer: &Consumer, joined: bool, printed: u64) -> Verdict {
        if self.joining && joined {
            self.joining = false;
            let mut partitions: Vec<i32> = consumer
                .assignment()
                .iter()
                .filter(|tp| tp.topic == self.topic)
                .map(|tp| tp.partition)
                .collect();
            partitions.sort_unstable();
            let group = self.group.as_deref().unwrap_or_default();
            if partitions.is_empty() {
                self.say(&format!(
                    "joined group {group}: no partitions assigned to this member (other \
                     members read them all, or the topic has none yet)"
                ));
            } else {
                let list: Vec<String> = partitions.iter().map(i32::to_string).collect();
                self.say(&format!(
                    "joined group {group}: reading partition(s) {}",
                    list.join(", ")
                ));
            }
        }
        let verdict = self.check_failures(consumer, joined).await;
        self.update_status(consumer, printed);
        verdict
    }

    async fn check_failures(&mut self, consumer: &Consumer, joined: bool) -> Verdict {
        if self.deleted {
            // Fetches are paused meanwhile: ask the metadata.
            return match self.topic_state(consumer).await {
                TopicState::Gone => Verdict::Reading,
                TopicState::Unknown(error) => {
                    if let Some(addr) = unreachable(&error) {
                        self.lost_connection(addr);
                    }
                    Verdict::Reading
                }
                TopicState::Exists(topic) => {
                    self.deleted = false;
                    for addr in std::mem::take(&mut self.lost) {
                        self.say(&format!("reconnected to {addr}"));
                    }
                    self.say(&format!(
                        "topic {} exists again; reading it from the beginning",
                        self.topic
                    ));
                    Verdict::TopicRecreated(topic)
                }
            };
        }
        let now = Instant::now();
        // A group member whose topic was deleted may have no partitions left to fail
        // on (a rebalance took them away): look at the metadata now and then.
        let nothing_assigned = joined
            && !consumer
                .assignment()
                .iter()
                .any(|tp| tp.topic == self.topic);
        if nothing_assigned && now.duration_since(self.last_probe) >= PROBE_EVERY {
            self.last_probe = now;
            if matches!(self.topic_state(consumer).await, TopicState::Gone) {
                return self.topic_deleted();
            }
        }
        let failures = consumer.fetch_failures();
        let mut failing_brokers = BTreeSet::new();
        let mut unknown_topic = false;
        for (_, since, error) in &failures {
            if let Some(addr) = unreachable(error) {
                failing_brokers.insert(addr.to_owned());
                if now.duration_since(*since) >= GRACE {
                    self.lost_connection(addr);
                }
            } else if is_unknown_topic(error) && now.duration_since(*since) >= GRACE {
                unknown_topic = true;
            }
        }
        // A broker is back once no partition fails on it and some are being read (an
        // empty assignment, as during a rebalance, proves nothing).
        if !consumer.assignment().is_empty() {
            let back: Vec<String> = self.lost.difference(&failing_brokers).cloned().collect();
            for addr in back {
                self.lost.remove(&addr);
                self.say(&format!("reconnected to {addr}"));
            }
        }
        if unknown_topic && matches!(self.topic_state(consumer).await, TopicState::Gone) {
            return self.topic_deleted();
        }
        Verdict::Reading
    }

    fn lost_connection(&mut self, addr: &str) {
        if self.lost.insert(addr.to_owned()) {
            self.say(&format!("lost connection to {addr}, retrying…"));
        }
    }

    fn topic_deleted(&mut self) -> Verdict {
        if !self.wait_for_topic {
            return Verdict::TopicDeleted;
        }
        self.deleted = true;
        self.say(&format!(
            "topic {} was deleted; waiting for it to be created again…",
            self.topic
        ));
        Verdict::WaitingForTopic
    }

    /// Asks the cluster whether the topic exists (a fetch error alone could be a broker
    /// that has not caught up with a new topic yet).
    async fn topic_state(&self, consumer: &Consumer) -> TopicState {
        match consumer.client().fetch_topic(&self.topic, false).await {
            Ok(topic) if !topic.partitions.is_empty() => TopicState::Exists(topic),
            Ok(_) => TopicState::Unknown(Error::UnknownTopic {
                topic: self.topic.clone(),
            }),
            Err(Error::UnknownTopic { .. }) => TopicState::Gone,
            Err(error) => TopicState::Unknown(error),
        }
    }

    fn update_status(&mut self, consumer: &Consumer, printed: u64) {
        let Some(status) = &mut self.status else {
            return;
        };
        let now = Instant::now();
        let (since, base) = status.window;
        let elapsed = now.duration_since(since).as_secs_f64();
        if elapsed >= 1.0 {
            status.rate = (printed - base) as f64 / elapsed;
            status.window = (now, printed);
        }
        let lag: i64 = consumer
            .assignment()
            .iter()
            .filter_map(|tp| Some((consumer.high_watermark(tp)? - consumer.position(tp)?).max(0)))
            .sum();
        let state = if !self.lost.is_empty() {
            " · reconnecting"
        } else if self.deleted {
            " · topic deleted, waiting"
        } else {
            ""
        };
        status.bar.set_message(format!(
            "{printed} record(s) · {:.0}/s · lag {lag}{state}",
            status.rate
        ));
        status.bar.tick();
    }

    /// Removes the status line (at the end of the read).
    pub fn finish(&self) {
        if let Some(status) = &self.status {
            status.bar.finish_and_clear();
        }
    }
}

/// The broker address an error says could not be reached.
fn unreachable(error: &Error) -> Option<&str> {
    match error {
        Error::Connect { addr, .. } | Error::Io { addr, .. } | Error::Disconnected { addr } => {
            Some(addr)
        }
        Error::NoBrokerAvailable { tried, .. } => Some(tried),
        _ => None,
    }
}

fn is_unknown_topic(error: &Error) -> bool {
    use kafka_protocol::error::ResponseError;
    matches!(error, Error::UnknownTopic { .. })
        || matches!(
            error.kafka_error(),
            Some(ResponseError::UnknownTopicOrPartition | ResponseError::UnknownTopicId)
        )
}
