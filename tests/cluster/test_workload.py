"""Tests of the workload (workload.py, clients.py, the Java producer) without faults.

This file owns the proof that the workload's clients work and write a usable history: against
one real single-node Sluice broker, and (with ``SLUICE_CLUSTER_KAFKA=1``) against a single-node
Apache Kafka 4.4, both started by launcher.py. Each test creates a 3-partition topic, runs the
whole workload (2 confluent-kafka producers, 1 Java producer, 2 group consumers, 1 assigned
consumer) for about 5 s, stops it, does the final read, merges the history and checks that:

- both the Python and the Java producers had sends acknowledged;
- group and assigned consumers polled records, and the group consumers committed offsets;
- every acknowledged value appears in the final read, at the partition and offset of its ack.

    .venv/bin/python -m pytest tests/cluster/test_workload.py            # Sluice (~20 s)
    SLUICE_CLUSTER_KAFKA=1 .venv/bin/python -m pytest tests/cluster/test_workload.py
"""

from __future__ import annotations

import os
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Iterator

import pytest

import history
from launcher import ClusterError, start_cluster
from workload import Workload, create_topic

TOPIC = "jepsen"
PARTITIONS = 3
RUN_SECONDS = 5.0
needs_kafka = pytest.mark.skipif(
    os.environ.get("SLUICE_CLUSTER_KAFKA") != "1",
    reason="runs against Apache Kafka only when SLUICE_CLUSTER_KAFKA=1 is set (needs scripts/peers/kafka.sh install)",
)


def _single_node(kind: str, base: Path) -> Iterator[str]:
    """One node of `kind` started by the bench's own launcher in a temp dir, stopped at the
    end; yields its bootstrap address."""
    try:
        cluster = start_cluster(kind, base, 1)
    except ClusterError as e:
        pytest.fail(str(e))
    try:
        yield cluster.bootstrap
    finally:
        cluster.stop()


@pytest.fixture
def sluice_bootstrap(tmp_path: Path) -> Iterator[str]:
    """One single-node Sluice broker (launcher.py), stopped at the end."""
    yield from _single_node("sluice", tmp_path / "sluice")


@pytest.fixture
def kafka_bootstrap(tmp_path: Path) -> Iterator[str]:
    """One single-node Apache Kafka 4.4 (launcher.py, scripts/peers/kafka.sh's jars), stopped
    at the end."""
    yield from _single_node("kafka", tmp_path / "kafka")


def run_and_check(bootstrap: str, out_dir: Path) -> None:
    create_topic(bootstrap, TOPIC, PARTITIONS, replication_factor=1)
    with Workload(bootstrap, TOPIC, out_dir, rate=50, drain_timeout=20) as workload:
        workload.start()
        started = time.monotonic()
        workload.wait_ready(timeout=60)
        print(f"all clients working after {time.monotonic() - started:.1f}s")
        # Run for a while; fail early, with its log, if a client died.
        deadline = time.monotonic() + RUN_SECONDS
        while time.monotonic() < deadline:
            assert not workload.dead(), f"clients exited early: {workload.dead()}"
            time.sleep(0.25)
        exit_codes = workload.stop(drain_timeout=20)
        assert exit_codes == {name: 0 for name in exit_codes}, (
            f"exit codes {exit_codes}; logs: " + str({p.name: p.log_tail() for p in workload.processes})
        )
        workload.final_read(timeout=30)
        path = workload.merge()
        print(workload.report())
        assert workload.final_read_code == 0, (out_dir / "final-read.log").read_text()
        acked_by_client = workload.acked_by_client()
        acked_by_process = workload.acked_by_process()
    ops = list(history.read(path))

    # Both client libraries produced, and every producer had acks.
    assert acked_by_client.get("confluent-kafka", 0) > 0 and acked_by_client.get("java", 0) > 0, acked_by_client
    assert all(count > 0 for count in acked_by_process.values()), acked_by_process

    # Every completion follows its own invoke, once; values are unique.
    invoked: dict[str, str] = {}
    completed: Counter[str] = Counter()
    acked: dict[str, tuple[int, int]] = {}
    for op in ops:
        if op["f"] != "send":
            continue
        if op["type"] == "invoke":
            assert op["value"] not in invoked, f"value sent twice: {op}"
            assert op["value"].startswith(op["process"] + "-"), op
            invoked[op["value"]] = op["process"]
        else:
            assert invoked.get(op["value"]) == op["process"], f"completion without invoke: {op}"
            completed[op["value"]] += 1
            if op["type"] == "ok":
                acked[op["value"]] = (op["partition"], op["offset"])
    assert all(n == 1 for n in completed.values()), [v for v, n in completed.items() if n > 1]
    clients_with_sends = {op["client"] for op in ops if op["f"] == "send"}
    assert clients_with_sends == {"confluent-kafka", "java"}

    # Consumers: polls from group and assigned consumers, commits from the group.
    polls = defaultdict(int)
    for op in ops:
        if op["f"] == "poll" and op["type"] == "ok":
            polls[op["process"].rsplit("-", 1)[0]] += len(op["records"])
    assert polls["group-consumer"] > 0 and polls["assigned-consumer"] > 0, dict(polls)
    assigns = [op for op in ops if op["f"] == "assign"]
    assert any(op["group"] is None and op["positions"] == {str(p): 0 for p in range(PARTITIONS)} for op in assigns)
    assert any(op["group"] == "jepsen-group" and op["partitions"] for op in assigns)
    commits_ok = [op for op in ops if op["f"] == "commit" and op["type"] == "ok"]
    assert commits_ok, "no successful commit"

    # The final read saw every acknowledged value, where its ack said it was.
    final_reads = [op for op in ops if op["f"] == "final-read"]
    assert len(final_reads) == 1 and final_reads[0]["complete"], final_reads
    read_at = {value: (p, o) for p, o, value in final_reads[0]["records"]}
    missing = sorted(set(acked) - set(read_at))
    assert not missing, f"{len(missing)} acknowledged values not in the final read, e.g. {missing[:5]}"
    moved = {v: (acked[v], read_at[v]) for v in acked if acked[v] != read_at[v]}
    assert not moved, f"acknowledged at one offset, read at another: {list(moved.items())[:5]}"
    ends = final_reads[0]["end_offsets"]
    assert sum(ends.values()) == len(final_reads[0]["records"]), "final read is not every offset below the end"


@pytest.mark.timeout(120)
def test_workload_against_sluice(sluice_bootstrap: str, tmp_path: Path) -> None:
    run_and_check(sluice_bootstrap, tmp_path / "run")


@needs_kafka
@pytest.mark.timeout(300)
def test_workload_against_kafka(kafka_bootstrap: str, tmp_path: Path) -> None:
    run_and_check(kafka_bootstrap, tmp_path / "run")
