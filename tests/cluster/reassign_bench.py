"""How fast a replica moves: partition reassignment of one full partition from one broker to
another, a 3-node Sluice cluster beside a 3-node Apache Kafka 4.4 cluster on this machine, in
one run.

``scripts/cluster.sh reassign-bench [--runs N] [--size-mib M] [--kinds sluice,kafka] [--out DIR]``:
for each run, for each kind (alternating which goes first, so background noise hits both
alike):

1. start a fresh 3-node cluster (launcher.py; every node a broker and a controller);
2. create topic ``move-bench``: one partition, the explicit replica assignment [1] (only
   node 1 holds it), ``min.insync.replicas=1`` (kafka-python's KafkaAdminClient);
3. fill it with --size-mib MiB (default 1024) of 1 KiB records, ``sluice-bench produce
   --acks 1`` (no compression), and check that the partition's log starts at 0 and ends at
   the number of records written;
4. move it: AlterPartitionReassignments [1] -> [2]. A monotonic timer starts right before
   the request; every 100 ms ListPartitionReassignments and a fresh Metadata request are
   sent, until the first lists nothing for the partition and the second shows replicas [2]
   and ISR [2] (bounded by --timeout). Node 2 then copies the whole log from node 1 (its
   replica fetcher, Fetch from a follower) and joins the ISR, which completes the move.
   The move time, the MiB/s (--size-mib / move time) and the CPU seconds of nodes 1 and 2
   over the move (from /proc/PID/stat) are recorded; node 2's end offset is checked;
5. stop the cluster (also on errors, Ctrl-C or SIGTERM).

Prints one JSON line per measurement and a final markdown table of medians (min-max) with the
ratio of the move times Sluice / Kafka. Everything runs on 127.0.0.1..3. Both kinds run
with their defaults for the follower fetcher: one fetcher per leader
(``num.replica.fetchers=1``, which launcher.py also writes for Kafka), at most 1 MiB per
partition per fetch (``replica.fetch.max.bytes``), one fetch in flight, no throttle; the
records are in the page cache (just written).
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from launcher import Cluster, start_cluster  # noqa: E402
from throughput import _bench, _bench_bin, _cpu_s, _stream  # noqa: E402  (the same sluice-bench and /proc helpers)

REPO = HERE.parent.parent
TOPIC = "move-bench"
SOURCE, TARGET = [1], [2]
RECORD_SIZE = 1024
TOPIC_CONFIGS = {"min.insync.replicas": "1"}
POLL_S = 0.1
MIB = 1024 * 1024


def _log_bytes(cluster: Cluster, node_id: int) -> int:
    """Bytes of the partition's segment files (*.log) in the node's data dir."""
    part = cluster.node(node_id).data_dir / f"{TOPIC}-0"
    try:
        return sum(f.stat().st_size for f in part.iterdir() if f.name.endswith(".log"))
    except FileNotFoundError:
        return 0


def _poll(what: str, check: Callable[[], Any], timeout: float, interval: float = 0.2) -> Any:
    """Calls check() until it returns something truthy; RuntimeError after timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {timeout:.0f}s (last: {last!r})")
        time.sleep(interval)


# --- kafka-python -------------------------------------------------------------------------


def _admin(cluster: Cluster):
    from kafka import KafkaAdminClient

    return KafkaAdminClient(
        bootstrap_servers=cluster.bootstrap.split(","), client_id="reassign-bench", request_timeout_ms=30000
    )


def _partition(admin) -> Optional[dict]:
    """The partition as a fresh Metadata answer has it: {leader, replicas, isr}, or None."""
    try:
        topics = admin.describe_topics([TOPIC])
    except Exception:  # noqa: BLE001 (a broker in the middle of a change: not yet)
        return None
    for t in topics:
        if t.get("name") == TOPIC and t.get("error_code", 0) == 0:
            for p in t["partitions"]:
                if p["partition_index"] == 0:
                    return {"leader": p["leader_id"], "replicas": list(p["replica_nodes"]), "isr": list(p["isr_nodes"])}
    return None


def _offsets(admin) -> tuple[int, int]:
    """(log start, log end) of the partition, asked of its leader."""
    from kafka import TopicPartition
    from kafka.admin import OffsetSpec

    tp = TopicPartition(TOPIC, 0)
    start = admin.list_partition_offsets({tp: OffsetSpec.EARLIEST})[tp].offset
    end = admin.list_partition_offsets({tp: OffsetSpec.LATEST})[tp].offset
    return start, end


def _create_topic(admin) -> None:
    admin.create_topics({TOPIC: {"assignments": {0: SOURCE}, "configs": TOPIC_CONFIGS}})
    _poll(
        f"{TOPIC} on {SOURCE} with a leader",
        lambda: (p := _partition(admin)) and p["replicas"] == SOURCE and p["isr"] == SOURCE and p["leader"] == SOURCE[0],
        60,
    )


# --- one measurement ------------------------------------------------------------------------


def measure(kind: str, run: int, size_mib: int, timeout: float, base: Path) -> dict:
    from kafka import TopicPartition

    records = size_mib * MIB // RECORD_SIZE
    row: dict[str, Any] = {"kind": kind, "run": run, "size_mib": size_mib, "records": records}
    cluster = start_cluster(kind, base, 3)
    admin = None
    try:
        admin = _admin(cluster)
        _create_topic(admin)

        # Fill node 1's replica. The topic exists: sluice-bench uses it as it is.
        report = _bench(
            [
                "produce", "--bootstrap", cluster.bootstrap, "--topic", TOPIC, "--partitions", "1",
                "--record-size", str(RECORD_SIZE), "--records", str(records), "--acks", "1",
            ],
            timeout=max(600.0, size_mib * 2.0),
        )
        s = _stream(report, "produce")
        row["fill_mib_per_s"] = round(s["mib_per_s"], 1)
        if report["errors"] or s["records"] != records:
            raise RuntimeError(f"fill: {s['records']} of {records} records acknowledged, {report['errors']} errors: {s.get('first_error')}")
        start, end = _offsets(admin)
        if (start, end) != (0, records):
            raise RuntimeError(f"fill: the partition holds offsets {start}..{end}, not 0..{records}")
        row["log_mib"] = round(_log_bytes(cluster, SOURCE[0]) / MIB, 1)

        # The move.
        tp = TopicPartition(TOPIC, 0)
        # Lists of pids, as throughput's _cpu_s takes them (a node that is gone counts 0).
        src, dst = ([p for p in (cluster.node(n).pid(),) if p is not None] for n in (SOURCE[0], TARGET[0]))
        cpu_src, cpu_dst = _cpu_s(src), _cpu_s(dst)
        t0 = time.monotonic()
        answer = admin.alter_partition_reassignments({tp: TARGET})
        if answer.get(tp) is not None:
            raise RuntimeError(f"AlterPartitionReassignments {SOURCE} -> {TARGET}: {answer}")
        deadline = t0 + timeout
        polls, last, pending_at = 0, None, 0.0
        while True:
            polls += 1
            checked_at = time.monotonic()
            listed = admin.list_partition_reassignments([tp])
            last = (listed.get(tp), _partition(admin))
            if tp not in listed and last[1] and last[1]["replicas"] == TARGET and last[1]["isr"] == TARGET:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"move {SOURCE} -> {TARGET} not done within {timeout:.0f}s (last: {last})")
            pending_at = checked_at
            time.sleep(POLL_S)
        elapsed = time.monotonic() - t0
        row["move_s"] = round(elapsed, 3)
        row["mib_per_s"] = round(size_mib / elapsed, 1)
        row["src_cpu_s"] = round(_cpu_s(src) - cpu_src, 2)
        row["dst_cpu_s"] = round(_cpu_s(dst) - cpu_dst, 2)
        # The move was still pending when the last check before this one began: the move
        # time is at most move_s and more than this (the poll's resolution).
        row["pending_at_s"] = round(pending_at - t0, 3) if polls > 1 else 0.0
        row["polls"] = polls
        row["leader"] = last[1]["leader"]

        # Node 2 has it all.
        start, end = _offsets(admin)
        if end != records:
            raise RuntimeError(f"after the move the partition ends at {end}, not {records}")
        row["moved_log_mib"] = round(_log_bytes(cluster, TARGET[0]) / MIB, 1)
        return row
    finally:
        if admin is not None:
            try:
                admin.close()
            except Exception:  # noqa: BLE001
                pass
        cluster.stop()


# --- the table ------------------------------------------------------------------------------


def _values(rows: list[dict], kind: str, key: str) -> list[float]:
    return [r[key] for r in rows if r["kind"] == kind and r.get(key) is not None]


def _median(rows: list[dict], kind: str, key: str) -> Optional[float]:
    values = _values(rows, kind, key)
    return statistics.median(values) if values else None


def _cell(rows: list[dict], kind: str, key: str, fmt: str) -> str:
    values = _values(rows, kind, key)
    if not values:
        return "-"
    med = format(statistics.median(values), fmt)
    return med if len(values) == 1 else f"{med} ({format(min(values), fmt)}-{format(max(values), fmt)})"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scripts/cluster.sh reassign-bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size-mib", type=int, default=1024, help="MiB written to the partition before it moves")
    parser.add_argument("--kinds", default="sluice,kafka")
    parser.add_argument("--timeout", type=float, default=600, help="seconds a move may take before it counts as failed")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR", help="also write every measurement as JSON lines to DIR/reassign-bench.jsonl")
    args = parser.parse_args(argv)
    if not 1 <= args.runs <= 20:
        parser.error("--runs must be 1..20")
    if not 1 <= args.size_mib <= 64 * 1024:
        parser.error("--size-mib must be 1..65536")
    kinds = args.kinds.split(",")
    if any(k not in ("sluice", "kafka") for k in kinds):
        parser.error("--kinds: sluice and/or kafka")
    if not _bench_bin().exists():
        parser.error(f"{_bench_bin()} missing: cargo build --release -p sluice-bench")
    # SIGTERM as Ctrl-C: unwind, so that every cluster started is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="cluster-reassign-") as tmp:
        for run in range(args.runs):
            order = kinds if run % 2 == 0 else list(reversed(kinds))
            for kind in order:
                try:
                    row = measure(kind, run, args.size_mib, args.timeout, Path(tmp) / f"{kind}-{run}")
                except Exception as e:  # noqa: BLE001 (recorded; Ctrl-C still stops the bench)
                    row = {"kind": kind, "run": run, "size_mib": args.size_mib, "error": f"{type(e).__name__}: {e}"[-2000:]}
                print(json.dumps(row), flush=True)
                rows.append(row)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "reassign-bench.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    print()
    print(
        f"medians (min-max) of {args.runs} run(s); 3 nodes, 1 partition of {args.size_mib} MiB "
        f"({RECORD_SIZE} B records) moved from node 1 to node 2 (replicas {SOURCE} -> {TARGET})"
    )
    print("| kind | moves ok | move time s | MiB/s | CPU s node 1 (source) | CPU s node 2 (target) |")
    print("|---|---|---|---|---|---|")
    for kind in kinds:
        done = len(_values(rows, kind, "move_s"))
        total = sum(1 for r in rows if r["kind"] == kind)
        print(
            f"| {kind} | {done}/{total} | {_cell(rows, kind, 'move_s', '.2f')} | {_cell(rows, kind, 'mib_per_s', '.0f')} "
            f"| {_cell(rows, kind, 'src_cpu_s', '.2f')} | {_cell(rows, kind, 'dst_cpu_s', '.2f')} |"
        )
    if set(kinds) == {"sluice", "kafka"}:
        s, k = _median(rows, "sluice", "move_s"), _median(rows, "kafka", "move_s")
        if s and k:
            print(f"move time Sluice / Kafka: {s / k:.2f}x (below 1: Sluice moves faster)")
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
