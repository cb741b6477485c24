"""Replicated throughput and latency: a 3-node Sluice cluster beside a 3-node Apache Kafka 4.4
cluster on this machine, in one run (issue 17's "throughput" figures).

``scripts/cluster.sh throughput [--runs N] [--duration 20s] [--out DIR]``: for each run, for
each kind (alternating which goes first, so background noise hits both alike):

1. start a fresh 3-node cluster (launcher.py; every node a broker and a controller);
2. ``sluice-bench produce``: 12 partitions, replication factor 3, ``min.insync.replicas=2``,
   acks=all, 100-byte records, for --duration: records/s and send-to-ack latency;
3. ``sluice-bench e2e`` at half of Kafka's median produce rate of this run (the same rate for
   both: latency at the same load), on another topic with the same settings: the consumer's
   p99 from intended send time to receipt;
4. the CPU seconds of the three broker processes over step 2 (from /proc/PID/stat), per GB
   of records produced: replication's cost includes the followers' fetches;
5. stop the cluster.

Prints one JSON line per measurement and a final markdown table of medians with the ratios
Sluice / Kafka. Everything runs on 127.0.0.1..3.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from launcher import Cluster, start_cluster  # noqa: E402

REPO = HERE.parent.parent
PARTITIONS = 12
RECORD_SIZE = 100
TOPIC_CONFIGS = ["min.insync.replicas=2"]
CLK_TCK = os.sysconf("SC_CLK_TCK")


def _bench_bin() -> Path:
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    return target / "release" / "sluice-bench"


def _cpu_s(pids: list[int]) -> float:
    """utime + stime of the processes, in seconds (a process that is gone counts 0)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def _broker_pids(cluster: Cluster) -> list[int]:
    return [pid for pid in (n.pid() for n in cluster.nodes) if pid is not None]


def _bench(args: list[str], timeout: float) -> dict:
    out = subprocess.run(
        [str(_bench_bin()), *args, "--json", "--quiet"], capture_output=True, text=True, timeout=timeout
    )
    if out.returncode != 0:
        raise RuntimeError(f"sluice-bench {' '.join(args)} failed ({out.returncode}): {out.stderr[-2000:]}")
    return json.loads(out.stdout)


def _topic_args(cluster: Cluster, topic: str) -> list[str]:
    args = ["--bootstrap", cluster.bootstrap, "--topic", topic, "--partitions", str(PARTITIONS), "--replication-factor", "3"]
    for c in TOPIC_CONFIGS:
        args += ["--topic-config", c]
    return args


def _stream(report: dict, name: str) -> dict:
    return next(s for s in report["streams"] if s["name"] == name)


def produce(kind: str, run: int, duration: str, base: Path) -> dict:
    cluster = start_cluster(kind, base, 3)
    try:
        pids = _broker_pids(cluster)
        before = _cpu_s(pids)
        report = _bench(
            ["produce", *_topic_args(cluster, f"tput-{run}"), "--acks", "all", "--record-size", str(RECORD_SIZE), "--duration", duration],
            timeout=600,
        )
        cpu = _cpu_s(pids) - before
        s = _stream(report, "produce")
        gb = s["bytes"] / 1e9
        return {
            "kind": kind,
            "run": run,
            "records_per_s": s["records_per_s"],
            "produce_p99_us": s["latency"]["p99_us"],
            "errors": report["errors"],
            "broker_cpu_s": round(cpu, 2),
            "broker_cpu_s_per_gb": round(cpu / gb, 2) if gb > 0 else None,
        }
    finally:
        cluster.stop()


def e2e(kind: str, run: int, rate: float, duration: str, base: Path) -> dict:
    cluster = start_cluster(kind, base, 3)
    try:
        report = _bench(
            [
                "e2e",
                *_topic_args(cluster, f"e2e-{run}"),
                "--acks",
                "all",
                "--record-size",
                str(RECORD_SIZE),
                "--rate",
                str(int(rate)),
                "--duration",
                duration,
            ],
            timeout=600,
        )
        s = _stream(report, "consume")
        return {
            "kind": kind,
            "run": run,
            "rate": int(rate),
            "e2e_p50_us": s["latency"]["p50_us"],
            "e2e_p99_us": s["latency"]["p99_us"],
            "missing": report["checks"].get("missing") if isinstance(report["checks"], dict) else None,
        }
    finally:
        cluster.stop()


def _median(rows: list[dict], kind: str, key: str) -> Optional[float]:
    values = [r[key] for r in rows if r["kind"] == kind and r.get(key) is not None]
    return statistics.median(values) if values else None


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scripts/cluster.sh throughput", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", default="20s")
    parser.add_argument("--kinds", default="sluice,kafka")
    parser.add_argument("--out", type=Path, default=None, help="also write every measurement as JSON lines here")
    args = parser.parse_args(argv)
    if not 1 <= args.runs <= 20:
        parser.error("--runs must be 1..20")
    kinds = args.kinds.split(",")
    if not _bench_bin().exists():
        parser.error(f"{_bench_bin()} missing: cargo build --release -p sluice-bench")
    produced: list[dict] = []
    latencies: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="cluster-throughput-") as tmp:
        for run in range(args.runs):
            order = kinds if run % 2 == 0 else list(reversed(kinds))
            for kind in order:
                row = produce(kind, run, args.duration, Path(tmp) / f"{kind}-p{run}")
                print(json.dumps(row), flush=True)
                produced.append(row)
            # The same load for both: half of Kafka's produce rate of this run (or of the
            # first kind's when Kafka is not measured).
            reference = next((r for r in produced[::-1] if r["kind"] == "kafka"), produced[-1])
            rate = reference["records_per_s"] / 2
            for kind in order:
                row = e2e(kind, run, rate, args.duration, Path(tmp) / f"{kind}-e{run}")
                print(json.dumps(row), flush=True)
                latencies.append(row)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("".join(json.dumps(r) + "\n" for r in produced + latencies))
    print()
    print(f"medians of {args.runs} run(s); 3 nodes, {PARTITIONS} partitions, RF 3, min.insync.replicas 2, acks=all, {RECORD_SIZE} B records")
    print("| kind | produce records/s | produce p99 | e2e p99 at the same rate | broker CPU s per GB |")
    print("|---|---|---|---|---|")
    for kind in kinds:
        rps = _median(produced, kind, "records_per_s")
        p99 = _median(produced, kind, "produce_p99_us")
        e2e99 = _median(latencies, kind, "e2e_p99_us")
        cpu = _median(produced, kind, "broker_cpu_s_per_gb")
        fmt = lambda v, unit="": "-" if v is None else f"{v:,.0f}{unit}"  # noqa: E731
        print(f"| {kind} | {fmt(rps)} | {fmt(p99 and p99 / 1000, ' ms')} | {fmt(e2e99 and e2e99 / 1000, ' ms')} | {'-' if cpu is None else f'{cpu:.1f}'} |")
    if set(kinds) == {"sluice", "kafka"}:
        s, k = _median(produced, "sluice", "records_per_s"), _median(produced, "kafka", "records_per_s")
        s99, k99 = _median(latencies, "sluice", "e2e_p99_us"), _median(latencies, "kafka", "e2e_p99_us")
        if s and k:
            print(f"throughput Sluice / Kafka: {s / k:.2f}x (target >= 1.5x)")
        if s99 and k99:
            print(f"e2e p99 Sluice / Kafka: {s99 / k99:.2f}x (target <= 0.5x)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
