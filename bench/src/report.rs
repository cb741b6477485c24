//! What a run prints: a line per stream per second while running ([`Progress`]), and at
//! the end a [`Report`], as a human table ([`Report::table`]) or as JSON.
//!
//! On a terminal the live lines are an indicatif display redrawn in place; otherwise
//! (a pipe, a file, CI) they are plain lines on stderr, one per stream per second, so
//! logs of scripted runs keep the whole time series.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::procstat::ProcessUsage;
use crate::stats::{Interval, StreamSummary};

/// Everything a run reports; `--json` prints exactly this.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub tool: &'static str,
    pub version: &'static str,
    /// `produce`, `consume` or `e2e`.
    pub command: String,
    pub label: Option<String>,
    pub bootstrap: String,
    pub topic: String,
    pub partitions: usize,
    /// The command's arguments, defaults filled in.
    pub settings: serde_json::Value,
    /// Seconds from the start of the load to its end (setup excluded).
    pub elapsed_s: f64,
    /// One per side: `produce` and/or `consume`.
    pub streams: Vec<StreamSummary>,
    /// Errors over all streams, plus records an e2e run lost.
    pub errors: u64,
    /// Records expected by a replay, or checks of an e2e run.
    pub checks: serde_json::Value,
    /// The broker process (with `--broker-pid`).
    pub broker: Option<ProcessUsage>,
    /// Broker CPU seconds per 10^9 payload bytes moved (all streams).
    pub broker_cpu_s_per_gb: Option<f64>,
    /// This process.
    pub client: Option<ProcessUsage>,
    pub topic_deleted: bool,
}

impl Report {
    /// Fills in the totals that follow from the streams.
    pub fn finish(&mut self, lost: u64) {
        self.errors = self.streams.iter().map(|s| s.errors).sum::<u64>() + lost;
        let bytes: u64 = self.streams.iter().map(|s| s.bytes).sum();
        self.broker_cpu_s_per_gb = self
            .broker
            .as_ref()
            .filter(|_| bytes > 0)
            .map(|b| (b.cpu_s / (bytes as f64 / 1e9) * 1000.0).round() / 1000.0);
    }

    /// The human summary: a header line and one row per stream.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "sluice-bench {} against {} (topic {}, {} partition{}), {:.1} s",
            self.command,
            self.bootstrap,
            self.topic,
            self.partitions,
            if self.partitions == 1 { "" } else { "s" },
            self.elapsed_s
        );
        let _ = writeln!(
            out,
            "{:<8} {:>12} {:>12} {:>10} {:>9} {:>9} {:>9} {:>9} {:>8}",
            "stream", "records", "records/s", "MiB/s", "p50", "p99", "p99.9", "max", "errors"
        );
        for s in &self.streams {
            let _ = writeln!(
                out,
                "{:<8} {:>12} {:>12} {:>10.2} {:>9} {:>9} {:>9} {:>9} {:>8}",
                s.name,
                group_digits(s.records as f64),
                group_digits(s.records_per_s),
                s.mib_per_s,
                format_us(s.latency.p50_us, s.latency.count),
                format_us(s.latency.p99_us, s.latency.count),
                format_us(s.latency.p999_us, s.latency.count),
                format_us(s.latency.max_us, s.latency.count),
                s.errors
            );
        }
        for s in &self.streams {
            if s.latency.count > 0 {
                let _ = writeln!(out, "{} latency: {}", s.name, s.latency_from);
            }
            if let Some(e) = &s.first_error {
                let _ = writeln!(out, "{} first error: {e}", s.name);
            }
        }
        if !self.checks.is_null() {
            let _ = writeln!(out, "checks: {}", self.checks);
        }
        if let Some(b) = &self.broker {
            let _ = writeln!(
                out,
                "broker pid {}: {:.2} CPU s{}, RSS {} MiB at start, {} MiB at end, {} MiB max \
                 (anonymous: {} MiB at end, {} MiB max)",
                b.pid.unwrap_or(0),
                b.cpu_s,
                self.broker_cpu_s_per_gb
                    .map(|x| format!(" ({x:.2} s per GB)"))
                    .unwrap_or_default(),
                b.rss_start_kib / 1024,
                b.rss_end_kib / 1024,
                b.rss_max_kib / 1024,
                b.anon_end_kib / 1024,
                b.anon_max_kib / 1024
            );
        }
        if let Some(c) = &self.client {
            let _ = writeln!(out, "sluice-bench itself: {:.2} CPU s", c.cpu_s);
        }
        if self.topic_deleted {
            let _ = writeln!(out, "topic {} deleted", self.topic);
        }
        out
    }
}

/// One live line: `  3s produce  123,456 rec/s  11.77 MiB/s  p50 ... errors 0`.
pub fn interval_line(stream: &str, i: &Interval) -> String {
    let n = i.latency.count;
    format!(
        "{:>6.1}s {:<8} {:>11} rec/s {:>9.2} MiB/s  p50 {:>8}  p99 {:>8}  p99.9 {:>8}  max {:>8}  errors {}",
        i.at_s,
        stream,
        group_digits(i.records_per_s),
        i.mib_per_s,
        format_us(i.latency.p50_us, n),
        format_us(i.latency.p99_us, n),
        format_us(i.latency.p999_us, n),
        format_us(i.latency.max_us, n),
        i.errors
    )
}

/// Microseconds for people: `850us`, `1.25ms`, `3.2s`; `-` when nothing was measured.
pub fn format_us(us: u64, count: u64) -> String {
    if count == 0 {
        "-".to_owned()
    } else if us < 1_000 {
        format!("{us}us")
    } else if us < 1_000_000 {
        format!("{:.2}ms", us as f64 / 1e3)
    } else {
        format!("{:.2}s", us as f64 / 1e6)
    }
}

/// `1234567.8` -> `1,234,568`.
pub fn group_digits(x: f64) -> String {
    let digits = format!("{:.0}", x.max(0.0));
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The live per-second display; see the module docs.
pub enum Progress {
    Hidden,
    Lines,
    Bars {
        _multi: MultiProgress,
        bars: Vec<ProgressBar>,
    },
}

impl Progress {
    /// A display for `streams` lines; hidden with `quiet`.
    pub fn new(streams: usize, quiet: bool) -> Progress {
        if quiet {
            return Progress::Hidden;
        }
        if !std::io::stderr().is_terminal() {
            return Progress::Lines;
        }
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(4));
        let style = ProgressStyle::with_template("{spinner} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        let bars = (0..streams)
            .map(|_| {
                let bar = multi.add(ProgressBar::new_spinner());
                bar.set_style(style.clone());
                bar.enable_steady_tick(Duration::from_millis(250));
                bar
            })
            .collect();
        Progress::Bars {
            _multi: multi,
            bars,
        }
    }

    /// Shows the intervals just closed, one per stream.
    pub fn update(&self, intervals: &[(&str, &Interval)]) {
        match self {
            Progress::Hidden => {}
            Progress::Lines => {
                for (name, i) in intervals {
                    eprintln!("{}", interval_line(name, i));
                }
            }
            Progress::Bars { bars, .. } => {
                for (bar, (name, i)) in bars.iter().zip(intervals) {
                    bar.set_message(interval_line(name, i));
                }
            }
        }
    }

    /// Removes the live display (the final table follows).
    pub fn finish(&self) {
        if let Progress::Bars { bars, .. } = self {
            for bar in bars {
                bar.finish_and_clear();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{Collector, Latency};

    #[test]
    fn digits_are_grouped() {
        assert_eq!(group_digits(0.0), "0");
        assert_eq!(group_digits(999.4), "999");
        assert_eq!(group_digits(1000.0), "1,000");
        assert_eq!(group_digits(1234567.8), "1,234,568");
        assert_eq!(group_digits(-5.0), "0");
    }

    #[test]
    fn latencies_get_units() {
        assert_eq!(format_us(0, 0), "-");
        assert_eq!(format_us(850, 1), "850us");
        assert_eq!(format_us(1250, 1), "1.25ms");
        assert_eq!(format_us(3_200_000, 1), "3.20s");
    }

    fn report() -> Report {
        let mut c = Collector::new("produce", "send to ack");
        let m = c.meter();
        m.add(2_000, 200_000);
        m.latencies(std::iter::repeat_n(Duration::from_micros(700), 2_000));
        m.error(1, &"broker went away");
        c.tick(Duration::from_secs(2));
        Report {
            tool: "sluice-bench",
            version: "0",
            command: "produce".into(),
            label: None,
            bootstrap: "127.0.0.1:9092".into(),
            topic: "t".into(),
            partitions: 3,
            settings: serde_json::Value::Null,
            elapsed_s: 2.0,
            streams: vec![c.summary(Duration::from_secs(2))],
            errors: 0,
            checks: serde_json::Value::Null,
            broker: Some(ProcessUsage {
                pid: Some(7),
                cpu_s: 0.1,
                rss_start_kib: 2048,
                rss_end_kib: 4096,
                rss_max_kib: 4096,
                anon_end_kib: 1024,
                anon_max_kib: 1024,
            }),
            broker_cpu_s_per_gb: None,
            client: None,
            topic_deleted: true,
        }
    }

    #[test]
    fn the_table_has_a_row_per_stream_and_the_totals() {
        let mut r = report();
        r.finish(5);
        assert_eq!(r.errors, 6);
        // 0.1 CPU s for 200 kB = 500 s per GB.
        assert_eq!(r.broker_cpu_s_per_gb, Some(500.0));
        let table = r.table();
        assert!(table.contains("3 partitions"), "{table}");
        let row = table.lines().find(|l| l.starts_with("produce ")).unwrap();
        assert!(row.contains("2,000"), "{row}");
        assert!(row.contains("1,000"), "{row}");
        assert!(row.contains("700us"), "{row}");
        assert!(table.contains("first error: broker went away"));
        assert!(table.contains("topic t deleted"));
    }

    #[test]
    fn the_json_has_the_fields_scripts_read() {
        let mut r = report();
        r.finish(0);
        let json = serde_json::to_value(&r).unwrap();
        let s = &json["streams"][0];
        assert_eq!(s["name"], "produce");
        assert_eq!(s["records"], 2_000);
        assert_eq!(s["records_per_s"], 1_000.0);
        assert_eq!(s["latency"]["p50_us"], 700);
        assert_eq!(s["intervals"].as_array().unwrap().len(), 1);
        assert_eq!(json["errors"], 1);
        assert_eq!(json["broker"]["rss_end_kib"], 4096);
    }

    #[test]
    fn interval_lines_show_rates_and_percentiles() {
        let i = Interval {
            at_s: 3.0,
            records: 10,
            bytes: 1000,
            errors: 0,
            records_per_s: 123_456.0,
            mib_per_s: 11.77,
            latency: Latency {
                count: 10,
                p50_us: 900,
                p99_us: 2_000,
                p999_us: 2_000,
                max_us: 2_000,
                ..Latency::default()
            },
        };
        let line = interval_line("consume", &i);
        assert!(line.contains("123,456 rec/s"), "{line}");
        assert!(line.contains("p50    900us"), "{line}");
        assert!(line.contains("max   2.00ms"), "{line}");
    }
}
