#!/usr/bin/env python3
"""What fetch sessions (KIP-227) save: one consumer of many partitions at low throughput,
with and without incremental fetch sessions, on Sluice and on Apache Kafka 4.4 beside it.

A producer (confluent-kafka) sends --rate records/s of 100 B, round robin over
--partitions partitions of a fresh topic; a kafka-python consumer assigned every partition
(from the end) reads them with ``enable_incremental_fetch_sessions`` on or off. After a
warm-up, for --seconds, we measure the consumer's fetches per second, the bytes it sends
and receives per second (its own network metrics, windows of --seconds: the rate spans the
measurement and part of the warm-up, in steady state alike), and the broker's CPU
(utime + stime from /proc over the same window). Modes and brokers alternate, --runs
times; the table gives medians.

    scripts/bench-fetch-sessions.py [--runs N] [--seconds S] [--partitions P] [--rate R]

Builds the release broker, installs Kafka's jars if missing (scripts/peers/kafka.sh), and
uses the project's virtualenv (.venv, from scripts/deps.sh). Everything runs on 127.0.0.1.
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


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_sluice(work: Path) -> tuple[str, subprocess.Popen]:
    out = open(work / "sluice.out", "w+")
    env = dict(os.environ, SLUICE_ADMIN_LISTENERS="none", RUST_LOG="warn")
    proc = subprocess.Popen([str(ROOT / "target/release/sluice-broker"), "--listen", "127.0.0.1:0",
                             "--data-dir", str(work / "sluice-data")], stdout=out, stderr=subprocess.STDOUT,
                            env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        out.seek(0)
        match = re.search(r"^listening on (\S+)", out.read(), re.M)
        if match:
            return match.group(1), proc
        if proc.poll() is not None:
            sys.exit("sluice exited at start")
        time.sleep(0.1)
    sys.exit("sluice did not start")


def start_kafka(work: Path) -> tuple[str, int]:
    done = subprocess.run([str(KAFKA_SH), "start", str(work / "kafka"), "0"], check=True,
                          capture_output=True, text=True)
    address = re.search(r"kafka listening on (\S+)", done.stdout).group(1)
    return address, int((work / "kafka" / "kafka.pid").read_text())


def run(bootstrap: str, pid: int, sessions: bool, topic: str, args) -> dict:
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic
    from kafka import KafkaConsumer, TopicPartition

    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, args.partitions, 1)])[topic].result(60)
    stop = threading.Event()
    sent = [0]

    def produce() -> None:
        producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
        value = b"x" * 100
        next_at = time.monotonic()
        while not stop.is_set():
            producer.produce(topic, value=value, partition=sent[0] % args.partitions)
            sent[0] += 1
            producer.poll(0)
            next_at += 1 / args.rate
            time.sleep(max(0.0, next_at - time.monotonic()))
        producer.flush(30)

    window_ms = args.seconds * 1000
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             enable_incremental_fetch_sessions=sessions,
                             metrics_sample_window_ms=window_ms, metrics_num_samples=2)
    partitions = [TopicPartition(topic, p) for p in range(args.partitions)]
    consumer.assign(partitions)
    consumer.seek_to_end()
    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    received = 0
    warm_until = time.monotonic() + args.warmup
    while time.monotonic() < warm_until:
        received += sum(len(v) for v in consumer.poll(timeout_ms=200).values())
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    measure_until = t0 + args.seconds
    while time.monotonic() < measure_until:
        received += sum(len(v) for v in consumer.poll(timeout_ms=200).values())
    cpu1, t1 = cpu_seconds(pid), time.monotonic()
    metrics = consumer.metrics()
    stop.set()
    producer.join(30)
    consumer.close()
    admin.delete_topics([topic])[topic].result(60)
    fetch = metrics.get("consumer-fetch-manager-metrics", {})
    network = metrics.get("consumer-metrics", {})
    return {
        "fetches_per_s": fetch.get("fetch-rate", 0.0),
        "out_bytes_per_s": network.get("outgoing-byte-rate", 0.0),
        "in_bytes_per_s": network.get("incoming-byte-rate", 0.0),
        "broker_cpu": (cpu1 - cpu0) / (t1 - t0),
        "received": received,
        "sent": sent[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--partitions", type=int, default=1000)
    parser.add_argument("--rate", type=int, default=200)
    args = parser.parse_args()
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "sluice-broker"], cwd=ROOT, check=True)
    subprocess.run([str(KAFKA_SH), "install"], check=True, stdout=subprocess.DEVNULL)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sluice_address, sluice = start_sluice(work)
        try:
            kafka_address, kafka_pid = start_kafka(work)
            brokers = {"sluice": (sluice_address, sluice.pid), "kafka": (kafka_address, kafka_pid)}
            results: dict[tuple[str, bool], list[dict]] = {}
            for n in range(args.runs):
                order = ["sluice", "kafka"] if n % 2 == 0 else ["kafka", "sluice"]
                for name in order:
                    for sessions in ((True, False) if n % 2 == 0 else (False, True)):
                        address, pid = brokers[name]
                        r = run(address, pid, sessions, f"sessions-{name}-{sessions}-{n}", args)
                        results.setdefault((name, sessions), []).append(r)
                        print(f"  {name} sessions={sessions} run {n + 1}: "
                              + ", ".join(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}"
                                          for k, v in r.items()), file=sys.stderr)
        finally:
            sluice.terminate()
            sluice.wait(30)
            subprocess.run([str(KAFKA_SH), "stop", str(work / "kafka")], capture_output=True)
    med = statistics.median
    print(f"| broker | fetch sessions | fetches/s | request KB/s | response KB/s | bytes/fetch (req + resp) "
          f"| broker CPU % | broker CPU ms per 100 fetches |")
    print("|---|---|---|---|---|---|---|---|")
    for name in ("sluice", "kafka"):
        for sessions in (False, True):
            rs = results[(name, sessions)]
            fetches = med([r["fetches_per_s"] for r in rs])
            out = med([r["out_bytes_per_s"] for r in rs])
            inc = med([r["in_bytes_per_s"] for r in rs])
            cpu = med([r["broker_cpu"] for r in rs])
            per_fetch = med([(r["out_bytes_per_s"] + r["in_bytes_per_s"]) / r["fetches_per_s"]
                             for r in rs if r["fetches_per_s"]])
            cpu_per = med([r["broker_cpu"] * 1000 * 100 / r["fetches_per_s"] for r in rs if r["fetches_per_s"]])
            print(f"| {name} | {'on' if sessions else 'off'} | {fetches:.1f} | {out / 1000:.1f} | {inc / 1000:.1f} "
                  f"| {per_fetch / 1000:.1f} KB | {cpu * 100:.1f} | {cpu_per:.1f} |")


if __name__ == "__main__":
    main()
