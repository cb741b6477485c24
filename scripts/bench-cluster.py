#!/usr/bin/env python3
"""Cluster numbers of issue 16, in one run on this machine: a 3-broker Sluice cluster against
1 Sluice broker and against a 3-broker Apache Kafka 4.4 cluster (docs/benchmarks.md,
"Cluster (issue 16)").

    scripts/bench-cluster.py [--runs 3] [--out DIR] [--no-fill-memory] [--only PHASES]

The three systems are started side by side by tests/cluster/launcher.py (the same launcher
as the cluster tests: node N on 127.0.0.N, its own data dir under --dir; Kafka nodes are
combined broker + controller JVMs), and every phase alternates them, rotating which goes
first each round (A B C, B C A, C A B, ...), so that background noise lands on all alike.
Every figure is kept per run in --out/results.json; the summary printed at the end gives
the median (min-max) of each.

Phases (--only produce,replay,create,failover picks some):
  produce     after an unrecorded warm-up, sluice-bench produce to a fresh 12-partition RF=1
              topic (1 producer 100 B, and 4 producers 1 KiB; acks=1, 10 s); broker CPU is
              summed over every node's process.
  replay      a preloaded 12-partition topic (10 M x 100 B) read by 1 and by 3 consumers
              (read once unrecorded first, so it comes from the page cache).
  create      one CreateTopics of 1 topic x 1,000 partitions, and 100 CreateTopics of
              10 partitions each, sent one after the other to node 1: time to the (last)
              answer, until every node's Metadata lists every partition with a leader, and
              until every partition's leader answers ListOffsets for it (its log exists:
              in a cluster brokers create logs after the controller commits, not before
              the answer); the topics are deleted again before the next run.
  failover    kill -9 of the active controller (Sluice: Metadata's controller id; Kafka: the
              quorum-state files, since Kafka's Metadata names a random broker): time until
              the survivors agree on a new one, and until a CreateTopics sent to a survivor
              succeeds; the node is restarted before the next run.

Needs: a release sluice-broker (SLUICE_BROKER_BIN, default $CARGO_TARGET_DIR/release or
target/release) and sluice-bench (SLUICE_BENCH_BIN, same default), Java + Kafka's jars
(scripts/deps.sh --kafka). Every process it starts is stopped at the end, also on errors
and on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Three JVMs of 1 GiB, the heap of scripts/bench.sh's single Kafka (the launcher's default,
# 384m, is sized for the fault bench).
os.environ.setdefault("SLUICE_CLUSTER_KAFKA_HEAP", "1g")
sys.path.insert(0, str(ROOT / "tests" / "cluster"))
import kafka_wire  # noqa: E402
import launcher  # noqa: E402

TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release"
BENCH = Path(os.environ.get("SLUICE_BENCH_BIN", TARGET / "sluice-bench"))
SYSTEMS = {
    # name: (launcher kind, nodes)
    "sluice-3": ("sluice", 3),
    "sluice-1": ("sluice", 1),
    "kafka-3": ("kafka", 3),
}
LIST_OFFSETS = 2
DELETE_TOPICS = 20
CLK_TCK = os.sysconf("SC_CLK_TCK")
NONE = 0
# CreateTopics errors worth retrying while a controller is being elected.
RETRIABLE = {7, 41, 15, 51}  # REQUEST_TIMED_OUT, NOT_CONTROLLER, COORDINATOR_NOT_AVAILABLE, CONCURRENT_TRANSACTIONS


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def load() -> str:
    return " ".join(open("/proc/loadavg").read().split()[:3])


def wait_for(what: str, check, timeout: float, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


# --- memory -----------------------------------------------------------------------------


def fill_free_memory(ballast: Path) -> None:
    """As scripts/bench.sh: reads holes of a sparse file until free memory is down to 512 MiB,
    so that brokers write into page cache the VM holds rather than memory it handed back to
    its host (first touch ~10 us a page on these VMs; docs/benchmarks.md)."""
    reserve = 512 << 20
    if not ballast.exists():
        with open(ballast, "wb") as f:
            f.truncate(1 << 40)

    def free_bytes() -> int:
        meminfo = dict(line.split(":", 1) for line in open("/proc/meminfo"))
        return int(meminfo["MemFree"].split()[0]) * 1024

    cursor = ballast.with_suffix(".at")
    at = int(cursor.read_text()) if cursor.exists() else 0
    fd = os.open(ballast, os.O_RDONLY)
    try:
        for _ in range(4):
            want = free_bytes() - reserve
            if want < 256 << 20:
                break
            while want > 0:
                chunk = os.pread(fd, 1 << 20, at)
                at = (at + len(chunk)) % (1 << 40)
                want -= len(chunk)
    finally:
        os.close(fd)
    cursor.write_text(str(at))


# --- the systems ------------------------------------------------------------------------


def cpu_seconds(cluster: launcher.Cluster) -> float:
    """utime + stime of every live node's process (/proc/PID/stat)."""
    total = 0.0
    for node in cluster.nodes:
        pid = node.pid()
        if pid is None or not node.alive():
            continue
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


def rss_mib(cluster: launcher.Cluster) -> float:
    total = 0
    for node in cluster.nodes:
        pid = node.pid()
        if pid is None or not node.alive():
            continue
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


def delete_topics(node: launcher.Node, names: list[str], timeout_ms: int = 60000):
    """DeleteTopics v1 sent to this node: {name: error_code}, or None without an answer."""
    body = struct.pack(">i", len(names))
    for name in names:
        raw = name.encode()
        body += struct.pack(">h", len(raw)) + raw
    body += struct.pack(">i", timeout_ms)
    answer = kafka_wire.request(node.host, node.port, DELETE_TOPICS, 1, body, timeout=timeout_ms / 1000 + 5)
    if answer is None:
        return None
    try:
        (_throttle, count) = struct.unpack_from(">ii", answer)
        at, out = 8, {}
        for _ in range(count):
            (n,) = struct.unpack_from(">h", answer, at)
            name = answer[at + 2 : at + 2 + n].decode()
            (code,) = struct.unpack_from(">h", answer, at + 2 + n)
            at += 4 + n
            out[name] = code
        return out
    except struct.error:
        return None


def list_offsets_errors(node: launcher.Node, partitions: dict[str, list[int]]):
    """ListOffsets v1 (latest offset) for these partitions, sent to this node: the number of
    partitions answered with an error (a broker that has not created the log yet answers
    UNKNOWN_TOPIC_OR_PARTITION or NOT_LEADER_OR_FOLLOWER), or None without an answer."""
    body = struct.pack(">ii", -1, len(partitions))
    for name, indexes in partitions.items():
        raw = name.encode()
        body += struct.pack(">h", len(raw)) + raw + struct.pack(">i", len(indexes))
        for index in indexes:
            body += struct.pack(">iq", index, -1)
    answer = kafka_wire.request(node.host, node.port, LIST_OFFSETS, 1, body, timeout=10)
    if answer is None:
        return None
    try:
        (count,) = struct.unpack_from(">i", answer)
        at, errors, seen = 4, 0, 0
        for _ in range(count):
            (n,) = struct.unpack_from(">h", answer, at)
            at += 2 + n
            (parts,) = struct.unpack_from(">i", answer, at)
            at += 4
            for _ in range(parts):
                (_index, code) = struct.unpack_from(">ih", answer, at)
                at += 4 + 2 + 8 + 8
                seen += 1
                errors += code != NONE
        return errors + (sum(len(v) for v in partitions.values()) - seen)
    except struct.error:
        return None


def all_writable(cluster: launcher.Cluster, topics: dict[str, int]) -> bool:
    """Every partition's leader (as node 1's Metadata names it) answers ListOffsets for it
    without an error: the log exists on the broker that leads it."""
    view = kafka_wire.metadata(cluster.nodes[0].host, cluster.nodes[0].port, timeout=10)
    if view is None:
        return False
    by_leader: dict[int, dict[str, list[int]]] = {}
    for name in topics:
        for index, leader in view.leaders(name).items():
            if leader < 0:
                return False
            by_leader.setdefault(leader, {}).setdefault(name, []).append(index)
    for leader, partitions in by_leader.items():
        if list_offsets_errors(cluster.node(leader), partitions) != 0:
            return False
    return True


def fully_led(cluster: launcher.Cluster, topics: dict[str, int], nodes=None) -> bool:
    """Every node (of nodes) lists every topic with its partition count, each with a leader."""
    for node in nodes or cluster.nodes:
        view = kafka_wire.metadata(node.host, node.port, timeout=10)
        if view is None:
            return False
        for name, partitions in topics.items():
            t = view.topics.get(name)
            if t is None or t.error_code != NONE or len(t.partitions) != partitions:
                return False
            if any(p.leader < 0 for p in t.partitions.values()):
                return False
    return True


def none_listed(cluster: launcher.Cluster, names: list[str]) -> bool:
    for node in cluster.nodes:
        view = kafka_wire.metadata(node.host, node.port, timeout=10)
        if view is None or any(n in view.topics for n in names):
            return False
    return True


def leaders(cluster: launcher.Cluster, topic: str) -> dict[int, int]:
    """{broker: partitions it leads} as node 1 sees it."""
    node = cluster.nodes[0]
    view = kafka_wire.metadata(node.host, node.port)
    counts: dict[int, int] = {}
    for leader in (view.leaders(topic) if view else {}).values():
        counts[leader] = counts.get(leader, 0) + 1
    return dict(sorted(counts.items()))


# --- the bench --------------------------------------------------------------------------


class Bench:
    def __init__(self, args):
        self.args = args
        self.base = Path(args.dir)
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.clusters: dict[str, launcher.Cluster] = {}
        self.results: list[dict] = []
        self.notes: list[str] = []

    def save(self) -> None:
        (self.out / "results.json").write_text(
            json.dumps({"notes": self.notes, "runs": self.results}, indent=1) + "\n"
        )

    def record(self, system: str, scenario: str, run: int, **values) -> None:
        row = {"system": system, "scenario": scenario, "run": run, "load": load(), **values}
        self.results.append(row)
        self.save()
        shown = {k: v for k, v in values.items() if not isinstance(v, (dict, list))}
        log(f"  {system:<9} {scenario:<22} r{run} {shown}")

    def note(self, text: str) -> None:
        self.notes.append(text)
        log(f"NOTE {text}")
        self.save()

    def start(self) -> None:
        for name, (kind, n) in SYSTEMS.items():
            started = time.monotonic()
            self.clusters[name] = launcher.start_cluster(kind, self.base / name, n, timeout=180)
            log(f"{name}: {n} {kind} node(s) ready in {time.monotonic() - started:.1f}s: {self.clusters[name].bootstrap}")

    def stop(self) -> None:
        for name, cluster in self.clusters.items():
            try:
                cluster.stop()
                log(f"{name}: stopped")
            except Exception as e:  # keep stopping the others
                log(f"{name}: stop failed: {e}")

    def order(self, rnd: int, systems: list[str]) -> list[str]:
        k = rnd % len(systems)
        return systems[k:] + systems[:k]

    def fill(self) -> None:
        if self.args.fill_memory:
            fill_free_memory(self.base / "ballast")

    def sluice_bench(self, system: str, *argv: str) -> dict:
        cluster = self.clusters[system]
        cmd = [str(BENCH), *argv, "--bootstrap", cluster.bootstrap, "--json", "--quiet", "--label", system]
        cpu0, t0 = cpu_seconds(cluster), time.monotonic()
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        cpu = cpu_seconds(cluster) - cpu0
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr[-2000:]}")
        d = json.loads(p.stdout)
        d["_broker_cpu_s"] = cpu
        d["_wall_s"] = time.monotonic() - t0
        return d

    # --- throughput ---

    def produce(self) -> None:
        names = list(SYSTEMS)
        produce = [
            ("produce-100b-p12", ["--producers", "1", "--record-size", "100"]),
            ("produce-1k-p12-x4", ["--producers", "4", "--record-size", "1024"]),
        ]
        common = ["--partitions", "12", "--replication-factor", "1", "--acks", "1"]
        log("warm-up: 10 s of produce and a replay per system, unrecorded (JIT, connections)")
        for system in names:
            self.sluice_bench(system, "produce", "--topic", "warmup", *common, "--duration", "10s")
            self.sluice_bench(system, "consume", "--topic", "warmup")
            delete_topics(self.clusters[system].nodes[0], ["warmup"])
        for rnd in range(self.args.runs):
            for scenario, extra in produce:
                log(f"{scenario} round {rnd + 1} (load {load()})")
                for system in self.order(rnd, names):
                    self.fill()
                    topic = f"{scenario}-r{rnd + 1}"
                    d = self.sluice_bench(system, "produce", "--topic", topic, *common, *extra,
                                          "--duration", f"{self.args.duration}s", "--delete-topic")
                    s = d["streams"][0]
                    self.record(system, scenario, rnd + 1, records_per_s=s["records_per_s"], mib_per_s=s["mib_per_s"],
                                p99_ms=s["latency"]["p99_us"] / 1000, errors=s["errors"],
                                broker_cpu_s_per_gb=d["_broker_cpu_s"] / (s["bytes"] / 1e9),
                                rss_mib=rss_mib(self.clusters[system]))

    def replay(self) -> None:
        names = list(SYSTEMS)
        common = ["--partitions", "12", "--replication-factor", "1", "--acks", "1"]
        # One preloaded topic per system, read once unrecorded (page cache).
        topic = "replay-100b-p12"
        for system in names:
            self.fill()
            log(f"{system}: loading {self.args.replay_records:,} x 100 B into {topic}")
            self.sluice_bench(system, "produce", "--topic", topic, *common, "--records", str(self.args.replay_records))
            self.sluice_bench(system, "consume", "--topic", topic)
            spread = leaders(self.clusters[system], topic)
            self.record(system, "replay-leaders", 0, leaders=spread)
        for rnd in range(self.args.runs):
            for consumers in (1, 3):
                scenario = f"replay-100b-c{consumers}"
                log(f"{scenario} round {rnd + 1} (load {load()})")
                for system in self.order(rnd, names):
                    d = self.sluice_bench(system, "consume", "--topic", topic, "--consumers", str(consumers))
                    s = d["streams"][0]
                    self.record(system, scenario, rnd + 1, records_per_s=s["records_per_s"], mib_per_s=s["mib_per_s"],
                                missing=d["checks"]["missing"], elapsed_s=d["elapsed_s"],
                                client_cpu_s=d["client"]["cpu_s"], broker_cpu_s=d["_broker_cpu_s"],
                                broker_cpu_s_per_gb=d["_broker_cpu_s"] / (s["bytes"] / 1e9))

    # --- creating partitions ---

    def create(self) -> None:
        names = list(SYSTEMS)
        for rnd in range(self.args.runs):
            log(f"create 1 x 1,000 partitions, round {rnd + 1} (load {load()})")
            for system in self.order(rnd, names):
                self.create_many(system, rnd + 1, {f"big-r{rnd + 1}": 1000}, "create-1x1000")
            log(f"create 100 x 10 partitions, round {rnd + 1} (load {load()})")
            for system in self.order(rnd, names):
                topics = {f"t{i:03d}-r{rnd + 1}": 10 for i in range(100)}
                self.create_many(system, rnd + 1, topics, "create-100x10")

    def create_many(self, system: str, rnd: int, topics: dict[str, int], scenario: str) -> None:
        cluster = self.clusters[system]
        node = cluster.nodes[0]
        started = time.monotonic()
        for name, partitions in topics.items():
            answer = kafka_wire.create_topic(node.host, node.port, name, partitions, 1, timeout_ms=120000)
            if answer is None or answer[0] != NONE:
                raise RuntimeError(f"{system}: CreateTopics {name} x {partitions}: {answer}")
        answered = time.monotonic() - started
        wait_for(f"{system}: {len(topics)} topics fully led on every node", lambda: fully_led(cluster, topics), 300, 0.05)
        visible = time.monotonic() - started
        wait_for(f"{system}: every partition's log on its leader", lambda: all_writable(cluster, topics), 300, 0.05)
        writable = time.monotonic() - started
        # Where node 1 put the partitions' leaders.
        view = kafka_wire.metadata(node.host, node.port)
        spread: dict[int, int] = {}
        for name in topics:
            for leader in view.leaders(name).values():
                spread[leader] = spread.get(leader, 0) + 1
        self.record(system, scenario, rnd, answered_s=answered, all_led_everywhere_s=visible,
                    logs_on_leaders_s=writable,
                    leaders=dict(sorted(spread.items())))
        # Deleted again, so that every run (and the failover runs) starts from the same state.
        deleted = delete_topics(node, list(topics), timeout_ms=120000)
        if deleted is None or any(code != NONE for code in deleted.values()):
            self.note(f"{system}: DeleteTopics after {scenario} r{rnd}: {deleted}")
        wait_for(f"{system}: topics gone", lambda: none_listed(cluster, list(topics)), 300, 0.2)

    # --- controller failover ---

    def controller(self, system: str, exclude=()) -> tuple[int, int] | None:
        """(controller id, epoch or -1) that the live nodes but exclude agree on."""
        cluster = self.clusters[system]
        if cluster.kind == "sluice":
            cid = cluster.controller_id(exclude=exclude)
            return (cid, -1) if cid is not None else None
        seen = set()
        for node in cluster.nodes:
            if node.node_id in exclude or not node.alive():
                continue
            try:
                state = json.loads((node.data_dir / "__cluster_metadata-0" / "quorum-state").read_text())
            except (FileNotFoundError, ValueError):
                return None
            seen.add((state.get("leaderId", -1), state.get("leaderEpoch", -1)))
        if len(seen) != 1:
            return None
        (leader, epoch) = seen.pop()
        return (leader, epoch) if leader is not None and leader >= 0 else None

    def failover(self) -> None:
        names = [s for s in SYSTEMS if SYSTEMS[s][1] == 3]
        for rnd in range(self.args.runs):
            log(f"controller failover, round {rnd + 1} (load {load()})")
            for system in self.order(rnd, names):
                self.failover_once(system, rnd + 1)

    def failover_once(self, system: str, rnd: int) -> None:
        cluster = self.clusters[system]
        old, old_epoch = wait_for(f"{system}: one controller", lambda: self.controller(system), 60)
        victim = cluster.node(old)
        survivors = [n for n in cluster.nodes if n.node_id != old]
        killed = time.monotonic()
        victim.kill()

        def new():
            c = self.controller(system, exclude=(old,))
            return c if c and c[0] != old and (cluster.kind == "sluice" or c[1] > old_epoch) else None

        new_id, _ = wait_for(f"{system}: a new controller", new, 60, 0.01)
        elected = time.monotonic() - killed
        # An admin request through a survivor that is not the new controller (forwarded).
        through = next(n for n in survivors if n.node_id != new_id)
        topic = f"after-failover-r{rnd}"
        attempts = 0
        while True:
            attempts += 1
            answer = kafka_wire.create_topic(through.host, through.port, topic, 3, 1, timeout_ms=10000)
            if answer is not None and answer[0] == NONE:
                break
            if answer is not None and answer[0] not in RETRIABLE:
                raise RuntimeError(f"{system}: CreateTopics after failover: {answer}")
            if time.monotonic() - killed > 60:
                raise RuntimeError(f"{system}: no CreateTopics success 60 s after the kill: {answer}")
            time.sleep(0.02)
        created = time.monotonic() - killed
        self.record(system, "failover", rnd, killed=old, new_controller=new_id, elected_s=elected,
                    create_ok_s=created, create_attempts=attempts)
        started = time.monotonic()
        cluster.restart(victim, timeout=180)
        wait_for(f"{system}: one controller again", lambda: self.controller(system), 60)
        log(f"  {system}: node {old} back in {time.monotonic() - started:.1f}s")
        delete_topics(through, [topic])


def summary(results: list[dict]) -> str:
    keys = ("records_per_s", "mib_per_s", "p99_ms", "broker_cpu_s_per_gb", "answered_s", "all_led_everywhere_s",
            "logs_on_leaders_s", "elected_s", "create_ok_s")
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in results:
        groups.setdefault((row["scenario"], row["system"]), []).append(row)
    lines = []
    for (scenario, system), rows in sorted(groups.items()):
        parts = []
        for k in keys:
            vals = [r[k] for r in rows if k in r]
            if vals:
                parts.append(f"{k}={statistics.median(vals):,.3f} ({min(vals):,.3f}-{max(vals):,.3f})")
        extra = [str(r.get("leaders")) for r in rows if "leaders" in r]
        lines.append(f"{scenario:<22} {system:<9} n={len(rows)} " + " ".join(parts) + (f" leaders={extra}" if extra else ""))
    return "\n".join(lines)


def markdown(results: list[dict]) -> str:
    """The tables of docs/benchmarks.md "Cluster (issue 16)": median (min-max) per system."""
    systems = [s for s in SYSTEMS]
    titles = {"sluice-3": "Sluice, 3 nodes", "sluice-1": "Sluice, 1 node", "kafka-3": "Kafka, 3 nodes"}

    def cell(scenario: str, system: str, key: str, fmt) -> str:
        vals = [r[key] for r in results if r["scenario"] == scenario and r["system"] == system and key in r]
        if not vals:
            return "n/a"
        return f"{fmt(statistics.median(vals))} ({fmt(min(vals))}–{fmt(max(vals))})"

    def median(scenario: str, system: str, key: str):
        vals = [r[key] for r in results if r["scenario"] == scenario and r["system"] == system and key in r]
        return statistics.median(vals) if vals else None

    def ratio(scenario: str, a: str, b: str, key: str) -> str:
        x, y = median(scenario, a, key), median(scenario, b, key)
        return f"{x / y:.2f}×" if x and y else "n/a"

    n0 = lambda v: f"{v:,.0f}"  # noqa: E731
    n2 = lambda v: f"{v:.2f}"  # noqa: E731
    lines = ["| scenario | " + " | ".join(titles[s] for s in systems) + " | 3 nodes / 1 node | Sluice 3 / Kafka 3 |",
             "|---|" + "---|" * (len(systems) + 2)]
    rows = [
        ("produce-100b-p12", "records_per_s", n0, "produce 100 B, 1 producer: records/s"),
        ("produce-100b-p12", "p99_ms", n2, "produce 100 B, 1 producer: p99 ms"),
        ("produce-100b-p12", "broker_cpu_s_per_gb", n2, "produce 100 B, 1 producer: broker CPU s/GB"),
        ("produce-1k-p12-x4", "mib_per_s", n0, "produce 1 KiB, 4 producers: MiB/s"),
        ("produce-1k-p12-x4", "broker_cpu_s_per_gb", n2, "produce 1 KiB, 4 producers: broker CPU s/GB"),
        ("replay-100b-c1", "records_per_s", n0, "replay 100 B, 1 consumer: records/s"),
        ("replay-100b-c3", "records_per_s", n0, "replay 100 B, 3 consumers: records/s"),
        ("replay-100b-c1", "broker_cpu_s_per_gb", n2, "replay 100 B, 1 consumer: broker CPU s/GB"),
        ("create-1x1000", "answered_s", n2, "1 × 1,000 partitions: CreateTopics answered, s"),
        ("create-1x1000", "all_led_everywhere_s", n2, "1 × 1,000: every node's Metadata has all leaders, s"),
        ("create-1x1000", "logs_on_leaders_s", n2, "1 × 1,000: every log on its leader (ListOffsets), s"),
        ("create-100x10", "answered_s", n2, "100 × 10 partitions: last CreateTopics answered, s"),
        ("create-100x10", "all_led_everywhere_s", n2, "100 × 10: every node's Metadata has all leaders, s"),
        ("create-100x10", "logs_on_leaders_s", n2, "100 × 10: every log on its leader (ListOffsets), s"),
        ("failover", "elected_s", n2, "controller kill -9: survivors agree on a new one, s"),
        ("failover", "create_ok_s", n2, "controller kill -9: CreateTopics through a survivor succeeds, s"),
    ]
    for scenario, key, fmt, label in rows:
        cells = [cell(scenario, s, key, fmt) for s in systems]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {ratio(scenario, 'sluice-3', 'sluice-1', key)} | "
                     f"{ratio(scenario, 'sluice-3', 'kafka-3', key)} |")
    loads = [float(r["load"].split()[0]) for r in results]
    lines.append("")
    lines.append(f"{len(results)} rows; 1-minute load average during the runs {min(loads):.2f}–{max(loads):.2f} "
                 f"(median {statistics.median(loads):.2f}).")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10, help="seconds per produce run")
    parser.add_argument("--replay-records", type=int, default=10_000_000)
    parser.add_argument("--dir", default=None, help="where the clusters live (default: a new temp dir)")
    parser.add_argument("--out", default=None, help="results.json goes here (default: --dir)")
    parser.add_argument("--only", default="produce,replay,create,failover")
    parser.add_argument("--fill-memory", dest="fill_memory", action="store_true", default=True)
    parser.add_argument("--no-fill-memory", dest="fill_memory", action="store_false")
    parser.add_argument("--report", metavar="RESULTS_JSON", help="only print the markdown tables of a finished run")
    args = parser.parse_args()
    if args.report:
        print(markdown(json.loads(Path(args.report).read_text())["runs"]))
        return 0
    args.dir = args.dir or tempfile.mkdtemp(prefix="sluice-bench-cluster.")
    args.out = args.out or args.dir
    for binary in (BENCH, launcher.SLUICE_BROKER_BIN):
        if not Path(binary).exists():
            print(f"bench-cluster: {binary} not found (cargo build --release, or SLUICE_BROKER_BIN / SLUICE_BENCH_BIN)",
                  file=sys.stderr)
            return 1
    # SIGTERM stops the clusters as Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    bench = Bench(args)
    log(f"dir {args.dir}; broker {launcher.SLUICE_BROKER_BIN}; bench {BENCH}; Kafka heap "
        f"{launcher.KAFKA_HEAP}; load {load()}")
    try:
        bench.start()
        phases = args.only.split(",")
        for phase in ("produce", "replay", "create", "failover"):
            if phase in phases:
                getattr(bench, phase)()
    finally:
        bench.stop()
        bench.save()
    print(summary(bench.results))
    print()
    print(markdown(bench.results))
    log(f"results: {bench.out / 'results.json'}; load {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
