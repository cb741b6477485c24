//! The three subcommands: set up (topic, connections), run the load while printing a
//! line per second, then build the [`Report`].
//!
//! Setup (creating the topic, connecting every producer and consumer, positioning the
//! consumers) happens before the clock starts; each stream's rates are taken over its
//! own span: the produce side from the start to its last acknowledgement, the consume
//! side from the start to its last record.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rand::Rng;
use sluice_client::{Admin, OffsetSpec, TopicPartition};
use tokio::sync::mpsc;
use tokio::time::{interval_at, MissedTickBehavior};

use crate::cli::{CommonArgs, ConsumeArgs, E2eArgs, ProduceArgs};
use crate::consume::{self, Stamps, StartAt};
use crate::procstat::Watch;
use crate::produce::{self, Plan, Stop};
use crate::report::{Progress, Report};
use crate::stats::{Collector, StreamSummary};
use crate::topic;

const TICK: Duration = Duration::from_secs(1);

/// The broker (with `--broker-pid`) and this process, sampled over the run.
struct Watches {
    broker: Option<Watch>,
    me: Option<Watch>,
}

impl Watches {
    fn start(common: &CommonArgs) -> Result<Watches> {
        let broker = match common.broker_pid {
            Some(pid) => Some(
                Watch::start(Some(pid))
                    .with_context(|| format!("cannot read /proc/{pid} (--broker-pid)"))?,
            ),
            None => None,
        };
        Ok(Watches {
            broker,
            me: Watch::start(None),
        })
    }

    fn tick(&mut self) {
        self.broker
            .iter_mut()
            .chain(self.me.iter_mut())
            .for_each(Watch::tick);
    }
}

/// The parts of a report every subcommand fills the same way.
struct Finish<'a> {
    command: &'a str,
    common: &'a CommonArgs,
    settings: serde_json::Value,
    partitions: usize,
    elapsed: Duration,
    streams: Vec<StreamSummary>,
    checks: serde_json::Value,
    lost: u64,
    watches: Watches,
    topic_deleted: bool,
}

impl Finish<'_> {
    fn report(self) -> Report {
        let mut report = Report {
            tool: "sluice-bench",
            version: env!("CARGO_PKG_VERSION"),
            command: self.command.to_owned(),
            label: self.common.label.clone(),
            bootstrap: self.common.bootstrap.clone(),
            topic: self.common.topic.clone(),
            partitions: self.partitions,
            settings: self.settings,
            elapsed_s: (self.elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
            streams: self.streams,
            errors: 0,
            checks: self.checks,
            broker: self.watches.broker.as_ref().map(Watch::usage),
            broker_cpu_s_per_gb: None,
            client: self.watches.me.as_ref().map(Watch::usage),
            topic_deleted: self.topic_deleted,
        };
        report.finish(self.lost);
        report
    }
}

/// Closes an interval of every stream and shows it (unless it is the last, partial one:
/// its records count, but a rate over a few milliseconds means nothing to look at).
fn tick_all(collectors: &mut [&mut Collector], start: Instant, display: Option<&Progress>) {
    let at = start.elapsed();
    let intervals: Vec<_> = collectors.iter_mut().map(|c| c.tick(at)).collect();
    let Some(display) = display else {
        return;
    };
    let named: Vec<(&str, &crate::stats::Interval)> = collectors
        .iter()
        .map(|c| c.name())
        .zip(intervals.iter())
        .collect();
    display.update(&named);
}

fn ticker(start: Instant) -> tokio::time::Interval {
    let mut ticker = interval_at((start + TICK).into(), TICK);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticker
}

pub async fn produce(args: ProduceArgs) -> Result<Report> {
    let common = &args.common;
    produce::validate(&args.producer, false)?;
    let client = topic::connect(&common.bootstrap, "admin").await?;
    let partitions = topic::ensure(&client, common, true).await?;
    let producers = produce::connect(&common.bootstrap, &args.producer, &common.topic).await?;
    let latency_from = if args.rate.is_some() {
        "send to acknowledgement, from the intended send time (open loop)"
    } else {
        "send to acknowledgement (closed loop)"
    };
    let mut collector = Collector::new("produce", latency_from);
    let meters = producers.iter().map(|_| collector.meter()).collect();
    let stop = match (args.records, args.duration) {
        (Some(n), _) => Stop::Records(n),
        (None, Some(d)) => Stop::After(d.0),
        (None, None) => Stop::After(Duration::from_secs(10)),
    };
    let plan = Plan {
        topic: Arc::from(common.topic.as_str()),
        stop,
        rate: args.rate,
        stamp: None,
    };
    let mut watches = Watches::start(common)?;
    let display = Progress::new(1, common.quiet);
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let workers = producers.len();
    let start = Instant::now();
    produce::start(producers, &args.producer, &plan, start, meters, done_tx);
    let mut ticker = ticker(start);
    let mut last_end = start;
    let mut finished = 0;
    while finished < workers {
        tokio::select! {
            _ = ticker.tick() => {
                tick_all(&mut [&mut collector], start, Some(&display));
                watches.tick();
            }
            end = done_rx.recv() => match end {
                Some(end) => {
                    last_end = last_end.max(end);
                    finished += 1;
                }
                None => break,
            },
        }
    }
    let elapsed = last_end - start;
    tick_all(&mut [&mut collector], start, None);
    watches.tick();
    display.finish();
    let summary = collector.summary(elapsed);
    let topic_deleted = topic::delete(&client, common).await?;
    Ok(Finish {
        command: "produce",
        common,
        settings: serde_json::to_value(&args)?,
        partitions,
        elapsed,
        streams: vec![summary],
        checks: serde_json::Value::Null,
        lost: 0,
        watches,
        topic_deleted,
    }
    .report())
}

pub async fn consume(args: ConsumeArgs) -> Result<Report> {
    let common = &args.common;
    let client = topic::connect(&common.bootstrap, "admin").await?;
    let partitions = topic::ensure(&client, common, false).await?;
    let tps: Vec<TopicPartition> = (0..partitions)
        .map(|p| TopicPartition::new(common.topic.as_str(), p as i32))
        .collect();
    let admin = Admin::new(client.clone());
    let starts = admin.list_offsets(&tps, OffsetSpec::Earliest).await?;
    let ends = admin.list_offsets(&tps, OffsetSpec::Latest).await?;
    let expected: u64 = tps
        .iter()
        .map(|tp| {
            let start = starts.get(tp).map_or(0, |o| o.offset.max(0));
            let end = ends.get(tp).map_or(0, |o| o.offset.max(0));
            end.saturating_sub(start) as u64
        })
        .sum();
    let target = args.records.unwrap_or(u64::MAX).min(expected);
    if target == 0 {
        bail!("topic {} is empty: nothing to replay", common.topic);
    }
    let consumers = consume::connect(
        &common.bootstrap,
        &args.consumer,
        &common.topic,
        partitions,
        StartAt::Earliest,
    )
    .await?;
    let mut collector = Collector::new("consume", "none (replay)");
    let meters = consumers.iter().map(|_| collector.meter()).collect();
    let workers = consumers.len();
    let progress = consume::Progress::new(workers);
    progress.set_target(target);
    let mut watches = Watches::start(common)?;
    let display = Progress::new(1, common.quiet);
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let start = Instant::now();
    let deadline = args.duration.map(|d| start + d.0);
    consume::start(consumers, progress.clone(), meters, None, done_tx);
    let mut ticker = ticker(start);
    let mut last_record = start;
    let mut finished = 0;
    let mut stopped_by = "end of the log";
    while finished < workers {
        tokio::select! {
            _ = ticker.tick() => {
                tick_all(&mut [&mut collector], start, Some(&display));
                watches.tick();
                if !progress.stopped() {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        stopped_by = "--duration";
                        progress.stop();
                    } else if progress.idle_for() >= args.consumer.idle_timeout.0 {
                        stopped_by = "--idle-timeout";
                        progress.stop();
                    }
                }
            }
            end = done_rx.recv() => match end {
                Some(end) => {
                    last_record = last_record.max(end);
                    finished += 1;
                }
                None => break,
            },
        }
    }
    if args.records.is_some_and(|n| n <= expected) && stopped_by == "end of the log" {
        stopped_by = "--records";
    }
    let elapsed = last_record - start;
    tick_all(&mut [&mut collector], start, None);
    watches.tick();
    display.finish();
    let summary = collector.summary(elapsed);
    let counted = progress.counted();
    let lost = if stopped_by == "--idle-timeout" {
        target.saturating_sub(counted)
    } else {
        0
    };
    let topic_deleted = topic::delete(&client, common).await?;
    Ok(Finish {
        command: "consume",
        common,
        settings: serde_json::to_value(&args)?,
        partitions,
        elapsed,
        streams: vec![summary],
        checks: serde_json::json!({
            "expected": expected,
            "target": target,
            "consumed": counted,
            "stopped_by": stopped_by,
            "missing": lost,
        }),
        lost,
        watches,
        topic_deleted,
    }
    .report())
}

pub async fn e2e(args: E2eArgs) -> Result<Report> {
    let common = &args.common;
    produce::validate(&args.producer, true)?;
    let client = topic::connect(&common.bootstrap, "admin").await?;
    let partitions = topic::ensure(&client, common, true).await?;
    let run_id: u64 = rand::thread_rng().gen();
    let capacity =
        (args.rate * args.duration.0.as_secs_f64()).ceil() as u64 + args.producer.producers;
    let stamps = Stamps::new(run_id, capacity);

    // Consumers first, positioned at the log end, so they see every record of the run.
    let consumers = consume::connect(
        &common.bootstrap,
        &args.consumer,
        &common.topic,
        partitions,
        StartAt::Latest,
    )
    .await?;
    let mut consume_side = Collector::new(
        "consume",
        "intended send time (open-loop schedule) to receipt by the consumer",
    );
    let consumer_meters = consumers.iter().map(|_| consume_side.meter()).collect();
    let consumer_count = consumers.len();
    let progress = consume::Progress::new(consumer_count);
    let (consumed_tx, mut consumed_rx) = mpsc::unbounded_channel();
    consume::start(
        consumers,
        progress.clone(),
        consumer_meters,
        Some(stamps.clone()),
        consumed_tx,
    );
    let ready_by = Instant::now() + Duration::from_secs(60);
    while progress.ready_partitions() < partitions {
        if Instant::now() >= ready_by {
            progress.stop();
            bail!(
                "the consumers have positions for {} of {partitions} partitions after 60 s",
                progress.ready_partitions()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let producers = produce::connect(&common.bootstrap, &args.producer, &common.topic).await?;
    let mut produce_side = Collector::new(
        "produce",
        "send to acknowledgement, from the intended send time (open loop)",
    );
    let producer_meters = producers.iter().map(|_| produce_side.meter()).collect();
    let producer_count = producers.len();
    let plan = Plan {
        topic: Arc::from(common.topic.as_str()),
        stop: Stop::After(args.duration.0),
        rate: Some(args.rate),
        stamp: Some(run_id),
    };
    let mut watches = Watches::start(common)?;
    let display = Progress::new(2, common.quiet);
    let (produced_tx, mut produced_rx) = mpsc::unbounded_channel();
    let start = Instant::now();
    produce::start(
        producers,
        &args.producer,
        &plan,
        start,
        producer_meters,
        produced_tx,
    );
    let mut ticker = ticker(start);
    let (mut produced, mut consumed) = (0, 0);
    let (mut last_ack, mut last_record) = (start, start);
    let mut drain_until = None;
    while consumed < consumer_count {
        tokio::select! {
            _ = ticker.tick() => {
                tick_all(&mut [&mut produce_side, &mut consume_side], start, Some(&display));
                watches.tick();
                if drain_until.is_some_and(|d| Instant::now() >= d) {
                    progress.stop();
                }
            }
            end = produced_rx.recv(), if produced < producer_count => match end {
                Some(end) => {
                    last_ack = last_ack.max(end);
                    produced += 1;
                    if produced == producer_count {
                        progress.set_target(produce_side.records());
                        drain_until = Some(Instant::now() + args.drain_timeout.0);
                    }
                }
                None => produced = producer_count,
            },
            end = consumed_rx.recv() => match end {
                Some(end) => {
                    last_record = last_record.max(end);
                    consumed += 1;
                }
                None => break,
            },
        }
    }
    let elapsed = last_ack.max(last_record) - start;
    tick_all(&mut [&mut produce_side, &mut consume_side], start, None);
    watches.tick();
    display.finish();
    let sent = produce_side.records();
    let received = progress.counted();
    let lost = sent.saturating_sub(received);
    let streams = vec![
        produce_side.summary(last_ack - start),
        consume_side.summary(last_record - start),
    ];
    let topic_deleted = topic::delete(&client, common).await?;
    Ok(Finish {
        command: "e2e",
        common,
        settings: serde_json::to_value(&args)?,
        partitions,
        elapsed,
        streams,
        checks: serde_json::json!({
            "run_id": run_id,
            "acknowledged": sent,
            "received": received,
            "missing": lost,
            "duplicates": stamps.duplicates(),
            "foreign": stamps.foreign(),
        }),
        lost,
        watches,
        topic_deleted,
    }
    .report())
}
