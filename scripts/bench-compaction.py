#!/usr/bin/env python3
"""The log cleaner beside Apache Kafka 4.4's: how fast each cleans a compacted log, and
what a clean does to produce latency meanwhile.

Per run and broker (fresh data directory): a topic with 8 MiB segments and
cleanup.policy=delete (so nothing is cleaned yet) gets --mib MiB of 1 KiB records over
--keys keys (confluent-kafka, acks=1). A probe producer then sends one 1 KiB record every
5 ms, acks=all, to another topic, and records each delivery's latency: for --idle seconds
with no clean (the baseline), then the topic is switched to cleanup.policy=compact
(IncrementalAlterConfigs) and the probe runs until the broker logs the end of the clean.
Cleaner throughput is MiB of log cleaned per second of the clean, as each broker logs
it: Kafka's "Log cleaner thread 0 cleaned log ... N MB of log processed in S seconds",
Sluice's "cleaned log" line (read_bytes / 2: this first clean reads the all-dirty log
twice, for the offset map and for the rewrite; elapsed_ms). Brokers alternate, --runs times; the table gives
medians. Both cleaners run one thread with their default dedupe buffer (128 MiB, enough
for every key: one pass) and no I/O limit; log.cleaner.backoff.ms is 1000 on both.

    scripts/bench-compaction.py [--runs N] [--mib M] [--keys K] [--idle S]

Builds nothing: run `cargo build --release` and `scripts/peers/kafka.sh install` first.
Everything runs on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KAFKA_SH = ROOT / "scripts" / "peers" / "kafka.sh"


def start_sluice(work: Path) -> tuple[str, Path, subprocess.Popen]:
    log = work / "sluice.out"
    out = open(log, "w+")
    env = dict(os.environ, SLUICE_ADMIN_LISTENERS="none", RUST_LOG="info",
               SLUICE_LOG_CLEANER_BACKOFF_MS="1000")
    proc = subprocess.Popen([str(ROOT / "target/release/sluice-broker"), "--listen", "127.0.0.1:0",
                             "--data-dir", str(work / "sluice-data")], stdout=out, stderr=subprocess.STDOUT,
                            env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        out.seek(0)
        match = re.search(r"^listening on (\S+)", out.read(), re.M)
        if match:
            return match.group(1), log, proc
        if proc.poll() is not None:
            sys.exit("sluice exited at start")
        time.sleep(0.1)
    sys.exit("sluice did not start")


def start_kafka(work: Path) -> tuple[str, Path]:
    env = dict(os.environ, SLUICE_KAFKA_EXTRA_PROPERTIES="log.cleaner.backoff.ms=1000")
    done = subprocess.run([str(KAFKA_SH), "start", str(work / "kafka"), "0"], check=True,
                          capture_output=True, text=True, env=env)
    return re.search(r"kafka listening on (\S+)", done.stdout).group(1), work / "kafka" / "kafka.log"


# What each broker logs when a clean ends. Sluice: bytes read (the dirty section twice,
# for the offset map and for the rewrite) and milliseconds. Kafka: "N MB of log processed
# in S seconds", N being the log section cleaned once.
SLUICE_DONE = re.compile(r"cleaned log.*?read_bytes=(\d+).*?elapsed_ms=(\d+)")
KAFKA_DONE = re.compile(r"Log cleaner thread 0 cleaned log .*\n\s*([\d,.]+) MB of log processed in "
                        r"([\d,.]+) seconds")


def clean_stats(target: str, log: Path) -> tuple[float, float] | None:
    """(MiB of log cleaned, seconds) of the first clean logged, if done."""
    text = log.read_text(errors="replace")
    if target == "sluice":
        m = SLUICE_DONE.search(text)
        # The first clean of an all-dirty log reads it twice.
        return (int(m.group(1)) / 2 / 2**20, int(m.group(2)) / 1000) if m else None
    m = KAFKA_DONE.search(text)
    return (float(m.group(1).replace(",", "")), float(m.group(2).replace(",", ""))) if m else None


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] if len(values) >= 100 else max(values)


def run(target: str, bootstrap: str, log: Path, args) -> dict:
    from confluent_kafka import Producer
    from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,
                                       NewTopic, ResourceType)

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for topic, config in (("dirty", {"segment.bytes": str(8 << 20), "cleanup.policy": "delete",
                                     "retention.ms": "-1"}), ("probe", {})):
        admin.create_topics([NewTopic(topic, 1, 1, config=config)])[topic].result(60)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "acks": 1,
                         "queue.buffering.max.kbytes": 65536})
    value = b"v" * 1000
    for i in range(args.mib * 1024):
        while True:
            try:
                producer.produce("dirty", key=f"key-{i % args.keys:08d}", value=value)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    producer.flush(120)

    latencies: dict[str, list[float]] = {"idle": [], "cleaning": []}
    phase = ["idle"]
    stop = threading.Event()

    def probe() -> None:
        p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0})
        payload = b"p" * 1000
        next_at = time.monotonic()
        while not stop.is_set():
            sent_at = time.monotonic()
            bucket = latencies[phase[0]]
            p.produce("probe", value=payload,
                      on_delivery=lambda err, msg, t=sent_at, b=bucket: err or b.append(time.monotonic() - t))
            p.poll(0)
            next_at += 0.005
            time.sleep(max(0.0, next_at - time.monotonic()))
        p.flush(30)

    thread = threading.Thread(target=probe)
    thread.start()
    time.sleep(args.idle)
    phase[0] = "cleaning"
    resource = ConfigResource(ResourceType.TOPIC, "dirty", incremental_configs=[
        ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.SET)])
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(30)
    switched = time.monotonic()
    stats = None
    while time.monotonic() - switched < 300:
        stats = clean_stats(target, log)
        if stats:
            break
        time.sleep(0.2)
    stop.set()
    thread.join()
    if not stats:
        sys.exit(f"{target}: no clean logged within 300 s ({log})")
    mib, seconds = stats
    return {"mib_per_s": mib / seconds, "mib": mib, "seconds": seconds,
            "idle_p99_ms": p99(latencies["idle"]) * 1000,
            "cleaning_p99_ms": p99(latencies["cleaning"]) * 1000,
            "cleaning_samples": len(latencies["cleaning"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--keys", type=int, default=20000)
    parser.add_argument("--idle", type=float, default=10.0)
    args = parser.parse_args()
    results: dict[str, list[dict]] = {"sluice": [], "kafka": []}
    for i in range(args.runs):
        for target in ("sluice", "kafka"):
            with tempfile.TemporaryDirectory(prefix=f"bench-compaction-{target}-") as tmp:
                work = Path(tmp)
                if target == "sluice":
                    bootstrap, log, proc = start_sluice(work)
                else:
                    bootstrap, log = start_kafka(work)
                try:
                    result = run(target, bootstrap, log, args)
                finally:
                    if target == "sluice":
                        proc.terminate()
                        proc.wait(60)
                    else:
                        subprocess.run([str(KAFKA_SH), "stop", str(work / "kafka")], check=False,
                                       capture_output=True)
                print(f"run {i + 1} {target}: {result}", flush=True)
                results[target].append(result)
    print(f"\n{args.mib} MiB of 1 KiB records over {args.keys} keys, medians of {args.runs} runs")
    print(f"{'broker':8} {'cleaner MiB/s':>14} {'clean s':>8} {'p99 idle ms':>12} {'p99 cleaning ms':>16}")
    for target, rows in results.items():
        med = lambda k: statistics.median(r[k] for r in rows)  # noqa: E731
        print(f"{target:8} {med('mib_per_s'):14.1f} {med('seconds'):8.2f} {med('idle_p99_ms'):12.2f} "
              f"{med('cleaning_p99_ms'):16.2f}")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
