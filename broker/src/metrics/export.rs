//! The scrape: every metric, read from where it is kept and encoded in Prometheus's text
//! format by prometheus-client. Names, units and labels are documented in
//! docs/metrics.md; a name here and there change together.
//!
//! A scrape walks the topic registry (per-topic sums, per-partition series unless
//! `metrics.partition.series.enabled=false`), the listeners, the storage stats, the
//! process and the group coordinator (whose lock it holds once, briefly, to copy the
//! committed offsets). It costs in proportion to partitions and groups, never touches the
//! request path, and allocates only the output.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use sluice_storage::stats::HistogramSnapshot;

use super::groups::{self, GroupSample};
use super::requests::{error_name, REQUESTS};
use crate::state::BrokerState;

/// The `Content-Type` of the answer.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

type Labels = Vec<(&'static str, String)>;

/// Everything a scrape reads that needs an await (the groups), taken before encoding.
struct Scrape {
    state: Arc<BrokerState>,
    groups: Vec<GroupSample>,
    now: Instant,
}

impl std::fmt::Debug for Scrape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scrape")
            .field("groups", &self.groups.len())
            .finish()
    }
}

/// Renders every metric of `state` in the Prometheus text format.
pub async fn render(state: &Arc<BrokerState>) -> String {
    let (groups, now) = groups::sample_and_observe(state).await;
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape {
        state: state.clone(),
        groups,
        now,
    }));
    let mut out = String::with_capacity(64 * 1024);
    if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry) {
        // Writing to a String does not fail; a collector error would be ours.
        let _ = writeln!(out, "# encoding failed: {e}");
    }
    out
}

fn describe<'a>(
    encoder: &'a mut DescriptorEncoder<'_>,
    name: &'a str,
    help: &str,
    kind: MetricType,
) -> Result<prometheus_client::encoding::MetricEncoder<'a>, std::fmt::Error> {
    encoder.encode_descriptor(name, help, None, kind)
}

/// A counter family (the encoder appends `_total`).
fn counters<L: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    rows: Vec<(L, u64)>,
) -> std::fmt::Result {
    if rows.is_empty() {
        return Ok(());
    }
    let mut family = describe(encoder, name, help, MetricType::Counter)?;
    for (labels, value) in &rows {
        family
            .encode_family(labels)?
            .encode_counter::<NoLabelSet, _, u64>(value, None)?;
    }
    Ok(())
}

fn gauges<L: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    rows: Vec<(L, f64)>,
) -> std::fmt::Result {
    if rows.is_empty() {
        return Ok(());
    }
    let mut family = describe(encoder, name, help, MetricType::Gauge)?;
    for (labels, value) in &rows {
        family.encode_family(labels)?.encode_gauge(value)?;
    }
    Ok(())
}

/// A histogram family; dividing by `divisor` turns the recorded unit into the exported
/// one (a division, so that 50 µs is exactly 5e-05 s).
fn histograms<L: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    divisor: f64,
    rows: Vec<(L, HistogramSnapshot)>,
) -> std::fmt::Result {
    if rows.is_empty() {
        return Ok(());
    }
    let mut family = describe(encoder, name, help, MetricType::Histogram)?;
    for (labels, snapshot) in &rows {
        // The encoder takes per-bucket counts and accumulates them itself.
        let mut below = 0;
        let buckets: Vec<(f64, u64)> = snapshot
            .buckets
            .iter()
            .map(|(bound, cumulative)| {
                let own = cumulative - below;
                below = *cumulative;
                (*bound as f64 / divisor, own)
            })
            .collect();
        family
            .encode_family(labels)?
            .encode_histogram::<NoLabelSet>(
                snapshot.sum as f64 / divisor,
                snapshot.count,
                &buckets,
                None,
            )?;
    }
    Ok(())
}

/// Microseconds per second.
const MICROS: f64 = 1e6;

fn one(value: f64) -> Vec<(Labels, f64)> {
    vec![(Labels::new(), value)]
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let e = &mut encoder;
        self.broker(e)?;
        self.requests(e)?;
        self.connections(e)?;
        self.logs(e)?;
        self.storage(e)?;
        self.groups(e)?;
        Ok(())
    }
}

impl Scrape {
    fn broker(&self, e: &mut DescriptorEncoder<'_>) -> std::fmt::Result {
        let state = &self.state;
        gauges(
            e,
            "sluice_build_info",
            "Always 1; the labels say which Sluice runs.",
            vec![(
                vec![
                    ("version", env!("CARGO_PKG_VERSION").to_owned()),
                    ("node_id", state.node_id.to_string()),
                    ("cluster_id", state.cluster_id.clone()),
                ],
                1.0,
            )],
        )?;
        gauges(
            e,
            "sluice_uptime_seconds",
            "Seconds since the broker started.",
            one(state.metrics.started.elapsed().as_secs_f64()),
        )?;
        if let Some(rss) = super::process::resident_bytes() {
            gauges(
                e,
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                one(rss as f64),
            )?;
        }
        if let Some(fds) = super::process::open_fds() {
            gauges(
                e,
                "process_open_fds",
                "Number of open file descriptors.",
                one(fds as f64),
            )?;
        }
        if let Some(max) = super::process::max_fds() {
            gauges(
                e,
                "process_max_fds",
                "Maximum number of open file descriptors.",
                one(max as f64),
            )?;
        }
        gauges(
            e,
            "sluice_request_bytes_queued",
            "Bytes of large requests being read or waiting to be handled (queued.max.request.bytes is the cap).",
            one(state.limits.budget_in_use() as f64),
        )?;
        gauges(
            e,
            "sluice_fetch_sessions",
            "Consumers' fetch sessions open (KIP-227; max.incremental.fetch.session.cache.slots is the cap).",
            one(state.fetch_sessions.len() as f64),
        )?;
        Ok(())
    }

    fn requests(&self, e: &mut DescriptorEncoder<'_>) -> std::fmt::Result {
        let apis = REQUESTS.snapshot();
        let name = |api: kafka_protocol::messages::ApiKey| format!("{api:?}");
        counters(
            e,
            "sluice_requests",
            "Requests answered (or completed without an answer, acks=0), per API and version.",
            apis.iter()
                .flat_map(|a| {
                    a.versions.iter().map(move |(v, n)| {
                        (vec![("api", name(a.api)), ("version", v.to_string())], *n)
                    })
                })
                .collect(),
        )?;
        histograms(
            e,
            "sluice_request_duration_seconds",
            "Time requests spent per stage: queue, local, response_queue, remote, send, and total.",
            MICROS,
            apis.iter()
                .flat_map(|a| {
                    a.stages.iter().map(move |(stage, h)| {
                        (
                            vec![("api", name(a.api)), ("stage", stage.name().to_owned())],
                            h.clone(),
                        )
                    })
                })
                .collect(),
        )?;
        counters(
            e,
            "sluice_request_errors",
            "Error codes in responses, per API and Kafka error name (one per failed partition, topic or group).",
            apis.iter()
                .flat_map(|a| {
                    a.errors.iter().map(move |(code, n)| {
                        (vec![("api", name(a.api)), ("error", error_name(*code))], *n)
                    })
                })
                .collect(),
        )?;
        let m = &self.state.metrics;
        histograms(
            e,
            "sluice_fetch_wait_seconds",
            "How long consumers' fetch long polls waited for data (max_wait_ms, min_bytes).",
            MICROS,
            vec![(Labels::new(), m.fetch_wait.snapshot())],
        )?;
        counters(
            e,
            "sluice_fetch_waits",
            "Fetch long polls, by how they ended: satisfied (data came), expired (max_wait_ms) or shutdown.",
            vec![
                (
                    vec![("outcome", "satisfied".to_owned())],
                    m.fetch_waits_satisfied.load(Ordering::Relaxed),
                ),
                (
                    vec![("outcome", "expired".to_owned())],
                    m.fetch_waits_expired.load(Ordering::Relaxed),
                ),
                (
                    vec![("outcome", "shutdown".to_owned())],
                    m.fetch_waits_shutdown.load(Ordering::Relaxed),
                ),
            ],
        )
    }

    fn connections(&self, e: &mut DescriptorEncoder<'_>) -> std::fmt::Result {
        let listeners = &self.state.listeners;
        let rows = |f: &dyn Fn(&crate::metrics::ListenerStats) -> u64| -> Vec<(Labels, u64)> {
            listeners
                .iter()
                .map(|l| (vec![("listener", l.name.clone())], f(&l.stats)))
                .collect()
        };
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        counters(
            e,
            "sluice_connections_accepted",
            "Connections accepted, per listener.",
            rows(&|s| load(&s.accepted)),
        )?;
        counters(
            e,
            "sluice_connections_rejected",
            "Connections closed without being served (max.connections.per.ip, or at shutdown).",
            rows(&|s| load(&s.rejected)),
        )?;
        counters(
            e,
            "sluice_connections_evicted",
            "Idle connections closed to make room at max.connections.",
            rows(&|s| load(&s.evicted)),
        )?;
        counters(
            e,
            "sluice_connections_closed",
            "Served connections that ended.",
            rows(&|s| load(&s.closed)),
        )?;
        counters(
            e,
            "sluice_authentication_failures",
            "Failed TLS handshakes and SASL logins.",
            rows(&|s| load(&s.authentication_failures)),
        )?;
        gauges(
            e,
            "sluice_connections_open",
            "Connections being served now.",
            rows(&|s| s.open())
                .into_iter()
                .map(|(l, v)| (l, v as f64))
                .collect(),
        )
    }

    fn logs(&self, e: &mut DescriptorEncoder<'_>) -> std::fmt::Result {
        let per_partition = self.state.config.observability.partition_series;
        let topics = self.state.topics.list();
        // Per topic: [bytes in, records in, bytes out, records out, size, batches in,
        // partitions, replication bytes out], counters starting from what partitions that
        // left this broker had counted.
        let mut topic_rows: Vec<(Labels, [u64; 8])> = Vec::new();
        // (labels, [start, end, high watermark, size, segments, bytes in, records in,
        // bytes out, records out])
        let mut partition_rows: Vec<(Labels, [u64; 9])> = Vec::new();
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        for topic in &topics {
            let r = &topic.retired;
            let mut sums = [
                load(&r.bytes_in),
                load(&r.records_in),
                load(&r.bytes_out),
                load(&r.records_out),
                0,
                load(&r.batches_in),
                0,
                load(&r.replication_bytes_out),
            ];
            let partitions = topic.partitions();
            sums[6] = partitions.len() as u64;
            for p in partitions.iter() {
                let t = &p.traffic;
                let traffic = [
                    load(&t.bytes_in),
                    load(&t.records_in),
                    load(&t.bytes_out),
                    load(&t.records_out),
                ];
                let size = p.log.size_bytes();
                for (sum, v) in sums.iter_mut().zip(traffic.iter()) {
                    *sum += v;
                }
                sums[4] += size;
                sums[5] += load(&t.batches_in);
                sums[7] += load(&t.replication_bytes_out);
                if per_partition {
                    let offset = |o: i64| o.max(0) as u64;
                    partition_rows.push((
                        vec![
                            ("topic", topic.name.to_string()),
                            ("partition", p.index.to_string()),
                        ],
                        [
                            offset(p.log.log_start_offset()),
                            offset(p.log.log_end_offset()),
                            offset(p.log.high_watermark()),
                            size,
                            p.log.segment_count() as u64,
                            traffic[0],
                            traffic[1],
                            traffic[2],
                            traffic[3],
                        ],
                    ));
                }
            }
            topic_rows.push((vec![("topic", topic.name.to_string())], sums));
        }
        let topic_column = |i: usize| -> Vec<(Labels, u64)> {
            topic_rows.iter().map(|(l, v)| (l.clone(), v[i])).collect()
        };
        let topic_gauge = |i: usize| -> Vec<(Labels, f64)> {
            topic_rows
                .iter()
                .map(|(l, v)| (l.clone(), v[i] as f64))
                .collect()
        };
        gauges(
            e,
            "sluice_topics",
            "Topics on this broker.",
            one(topics.len() as f64),
        )?;
        gauges(
            e,
            "sluice_partitions",
            "Partition replicas on this broker.",
            one(topic_rows.iter().map(|(_, v)| v[6]).sum::<u64>() as f64),
        )?;
        counters(
            e,
            "sluice_topic_bytes_in",
            "Record batch bytes appended by producers.",
            topic_column(0),
        )?;
        counters(
            e,
            "sluice_topic_records_in",
            "Records appended by producers.",
            topic_column(1),
        )?;
        counters(
            e,
            "sluice_topic_batches_in",
            "Record batches appended by producers.",
            topic_column(5),
        )?;
        counters(
            e,
            "sluice_topic_bytes_out",
            "Record batch bytes sent to consumers.",
            topic_column(2),
        )?;
        counters(
            e,
            "sluice_topic_replication_bytes_out",
            "Record batch bytes sent to followers (replication).",
            topic_column(7),
        )?;
        counters(
            e,
            "sluice_topic_records_out",
            "Records sent to consumers (the offsets the sent batches span).",
            topic_column(3),
        )?;
        gauges(
            e,
            "sluice_topic_size_bytes",
            "Bytes of the topic's segments on disk.",
            topic_gauge(4),
        )?;
        gauges(
            e,
            "sluice_topic_partitions",
            "Partitions of the topic on this broker.",
            topic_gauge(6),
        )?;
        if !per_partition {
            return Ok(());
        }
        let column = |i: usize| -> Vec<(Labels, f64)> {
            partition_rows
                .iter()
                .map(|(l, v)| (l.clone(), v[i] as f64))
                .collect()
        };
        let counter_column = |i: usize| -> Vec<(Labels, u64)> {
            partition_rows
                .iter()
                .map(|(l, v)| (l.clone(), v[i]))
                .collect()
        };
        gauges(
            e,
            "sluice_partition_log_start_offset",
            "First offset still stored.",
            column(0),
        )?;
        gauges(
            e,
            "sluice_partition_log_end_offset",
            "Offset the next record will get.",
            column(1),
        )?;
        gauges(
            e,
            "sluice_partition_high_watermark",
            "Offset below which records are committed (what consumers may read).",
            column(2),
        )?;
        gauges(
            e,
            "sluice_partition_size_bytes",
            "Bytes of the partition's segments on disk.",
            column(3),
        )?;
        gauges(
            e,
            "sluice_partition_segments",
            "Segment files of the partition.",
            column(4),
        )?;
        counters(
            e,
            "sluice_partition_bytes_in",
            "Record batch bytes appended by producers.",
            counter_column(5),
        )?;
        counters(
            e,
            "sluice_partition_records_in",
            "Records appended by producers.",
            counter_column(6),
        )?;
        counters(
            e,
            "sluice_partition_bytes_out",
            "Record batch bytes sent to consumers.",
            counter_column(7),
        )?;
        counters(
            e,
            "sluice_partition_records_out",
            "Records sent to consumers.",
            counter_column(8),
        )
    }

    fn storage(&self, e: &mut DescriptorEncoder<'_>) -> std::fmt::Result {
        let stats = self.state.topics.storage_stats();
        let m = &self.state.metrics;
        histograms(
            e,
            "sluice_log_sync_duration_seconds",
            "Time each log sync (fdatasync of its segments) took.",
            MICROS,
            vec![(Labels::new(), stats.sync_latency.snapshot())],
        )?;
        histograms(
            e,
            "sluice_log_sync_records",
            "Records each log sync made durable (group-commit batch size).",
            1.0,
            vec![(Labels::new(), stats.sync_records.snapshot())],
        )?;
        let load =
            |a: &std::sync::atomic::AtomicU64| vec![(Labels::new(), a.load(Ordering::Relaxed))];
        counters(
            e,
            "sluice_log_sync_failures",
            "Log syncs that failed (each takes its log offline).",
            load(&stats.sync_failures),
        )?;
        counters(
            e,
            "sluice_log_segment_rolls",
            "Active segments rolled into sealed ones.",
            load(&stats.segment_rolls),
        )?;
        counters(
            e,
            "sluice_retention_segments_deleted",
            "Segments deleted by retention.ms / retention.bytes.",
            load(&m.retention_segments_deleted),
        )?;
        counters(
            e,
            "sluice_retention_bytes_deleted",
            "Bytes deleted by retention.",
            load(&m.retention_bytes_deleted),
        )?;
        let cleaner = &self.state.cleaner;
        let t = &cleaner.totals;
        counters(
            e,
            "sluice_log_cleaner_cleans",
            "Logs cleaned (compacted).",
            load(&t.cleans),
        )?;
        counters(
            e,
            "sluice_log_cleaner_failures",
            "Cleans that failed (the log stays as it was).",
            load(&t.failures),
        )?;
        counters(
            e,
            "sluice_log_cleaner_read_bytes",
            "Bytes of segments the cleaner read.",
            load(&t.bytes_read),
        )?;
        counters(
            e,
            "sluice_log_cleaner_written_bytes",
            "Bytes of cleaned segments written.",
            load(&t.bytes_written),
        )?;
        counters(
            e,
            "sluice_log_cleaner_records_removed",
            "Records the cleaner removed (superseded values and expired tombstones).",
            load(&t.records_removed),
        )?;
        gauges(
            e,
            "sluice_log_cleaner_busy_seconds",
            "Time spent cleaning since start.",
            one(t.busy_micros.load(Ordering::Relaxed) as f64 / MICROS),
        )?;
        let statuses = cleaner.statuses();
        let partition_labels = |topic: &str, partition: i32| {
            vec![
                ("topic", topic.to_owned()),
                ("partition", partition.to_string()),
            ]
        };
        gauges(
            e,
            "sluice_log_cleaner_dirty_ratio",
            "Per compacted partition: uncleaned bytes over cleanable bytes, as of the cleaner's last look.",
            statuses
                .iter()
                .map(|((topic, p), s)| (partition_labels(topic, *p), s.dirty_ratio))
                .collect(),
        )?;
        gauges(
            e,
            "sluice_log_cleaner_max_dirty_ratio",
            "The highest dirty ratio of any compacted partition (Kafka's max-dirty-percent / 100).",
            one(statuses
                .iter()
                .map(|(_, s)| s.dirty_ratio)
                .fold(0.0, f64::max)),
        )?;
        gauges(
            e,
            "sluice_log_cleaner_last_clean_timestamp_seconds",
            "Per compacted partition: when its last clean finished (Unix time).",
            statuses
                .iter()
                .filter_map(|((topic, p), s)| {
                    Some((
                        partition_labels(topic, *p),
                        s.last_clean_ms? as f64 / 1000.0,
                    ))
                })
                .collect(),
        )?;
        let usage = crate::admin::status::data_dir_usage(&self.state.config.data_dir);
        if let Some(usage) = usage {
            gauges(
                e,
                "sluice_data_dir_free_bytes",
                "Free bytes on the data directory's filesystem.",
                one(usage.free as f64),
            )?;
            gauges(
                e,
                "sluice_data_dir_total_bytes",
                "Size of the data directory's filesystem.",
                one(usage.total as f64),
            )?;
        }
        Ok(())
    }

    fn groups(&self, e: &mut DescriptorEncoder<'_>) -> std::fmt::Result {
        let per_partition = self.state.config.observability.partition_series;
        let rates = &self.state.metrics.consume_rates;
        let group_label = |g: &GroupSample| vec![("group", g.group.clone())];
        gauges(
            e,
            "sluice_group_members",
            "Members of the consumer groups this broker coordinates.",
            self.groups
                .iter()
                .map(|g| (group_label(g), g.members as f64))
                .collect(),
        )?;
        gauges(
            e,
            "sluice_group_state",
            "1 for the group's current state (Empty, PreparingRebalance, CompletingRebalance, Stable, Dead).",
            self.groups
                .iter()
                .map(|g| (vec![("group", g.group.clone()), ("state", g.state.to_owned())], 1.0))
                .collect(),
        )?;
        gauges(
            e,
            "sluice_group_generation",
            "The group's generation: it grows by one with every rebalance (and when the group empties); rebalances are its increase.",
            self.groups
                .iter()
                .map(|g| (group_label(g), f64::from(g.generation.max(0))))
                .collect(),
        )?;
        // Values are Options: a partition without a replica here has no lag, one seen
        // once has no rate yet; such series are left out, never exported as 0.
        let mut group_rows: Vec<(Labels, [Option<f64>; 3])> = Vec::new();
        let mut partition_rows: Vec<(Labels, [Option<f64>; 4])> = Vec::new();
        for g in &self.groups {
            let lags = rates.lag_of(&self.state, g, self.now);
            let known = |f: &dyn Fn(&groups::PartitionLag) -> Option<f64>| -> Vec<f64> {
                lags.iter().filter_map(f).collect()
            };
            let lag = known(&|l| l.lag.map(|v| v as f64));
            let rate = known(&|l| l.consume_rate);
            let delay = known(&|l| l.delay_seconds);
            let sum = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>());
            let max = |v: &[f64]| v.iter().copied().reduce(f64::max);
            group_rows.push((group_label(g), [sum(&lag), sum(&rate), max(&delay)]));
            if per_partition {
                for l in lags {
                    partition_rows.push((
                        vec![
                            ("group", g.group.clone()),
                            ("topic", l.topic),
                            ("partition", l.partition.to_string()),
                        ],
                        [
                            Some(l.committed_offset as f64),
                            l.lag.map(|v| v as f64),
                            l.consume_rate,
                            l.delay_seconds,
                        ],
                    ));
                }
            }
        }
        let column = |i: usize| {
            group_rows
                .iter()
                .filter_map(|(l, v)| Some((l.clone(), v[i]?)))
                .collect()
        };
        gauges(
            e,
            "sluice_group_lag",
            "Records not yet consumed by the group, summed over its partitions with a replica on this broker.",
            column(0),
        )?;
        gauges(
            e,
            "sluice_group_consume_rate",
            "Offsets the group committed per second recently, summed over its partitions.",
            column(1),
        )?;
        gauges(
            e,
            "sluice_group_delay_seconds",
            "Estimated delay: the largest of its partitions' lag / consume rate (see docs/metrics.md).",
            column(2),
        )?;
        if !per_partition {
            return Ok(());
        }
        let column = |i: usize| {
            partition_rows
                .iter()
                .filter_map(|(l, v)| Some((l.clone(), v[i]?)))
                .collect()
        };
        gauges(
            e,
            "sluice_group_partition_committed_offset",
            "The group's committed offset.",
            column(0),
        )?;
        gauges(
            e,
            "sluice_group_partition_lag",
            "High watermark minus committed offset.",
            column(1),
        )?;
        gauges(
            e,
            "sluice_group_partition_consume_rate",
            "Offsets committed per second over the last minute.",
            column(2),
        )?;
        gauges(
            e,
            "sluice_group_partition_delay_seconds",
            "Estimated delay: lag / consume rate.",
            column(3),
        )
    }
}
