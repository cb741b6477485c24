"""`sluice cluster describe` and `sluice topic describe` (docs/cli.md) against real clusters.

- Sluice, one node (always): the node is broker 1 at its address and the controller; a topic's
  partitions are led by 1 with replicas and ISR [1]; the quorum is node 1 alone, or the broker
  does not answer DescribeQuorum and the command says so in one line and succeeds.
- Apache Kafka 4.4, three brokers (only with ``SLUICE_CLUSTER_KAFKA=1``, as test_workload.py;
  ``scripts/test.sh --cluster-kafka`` sets it): every broker with its address, the cluster id
  the launcher formatted the nodes with, the quorum leader that the nodes' quorum-state files
  name, the three voters on their controller ports; a replication-factor-3 topic with ISR of
  all three. Then one broker that is not the quorum leader is killed (kill -9): within
  Kafka's session timeout it shows as fenced, out of every ISR and offline, with a metadata
  lag above 0; after its restart it is unfenced, back in the ISR, and the lag drops to 0.

The CLI binary is ``target/release/sluice`` (under ``$CARGO_TARGET_DIR`` if set), or
``$SLUICE_CLI_BIN``; a missing binary fails the tests (it is what they test).

    .venv/bin/python -m pytest tests/cluster/test_cli_cluster.py
    SLUICE_CLUSTER_KAFKA=1 .venv/bin/python -m pytest tests/cluster/test_cli_cluster.py -s
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from launcher import REPO_ROOT, Cluster, ClusterError, start_cluster

CLI_BIN = Path(
    os.environ.get(
        "SLUICE_CLI_BIN",
        Path(os.environ.get("CARGO_TARGET_DIR", REPO_ROOT / "target")) / "release" / "sluice",
    )
)
needs_kafka = pytest.mark.skipif(
    os.environ.get("SLUICE_CLUSTER_KAFKA") != "1",
    reason="runs against Apache Kafka only when SLUICE_CLUSTER_KAFKA=1 is set (needs scripts/deps.sh --kafka)",
)


def sluice(bootstrap: str, *args: str, timeout: float = 90) -> str:
    """Runs the CLI; fails the test with its stderr when it exits non-zero."""
    if not CLI_BIN.is_file():
        pytest.fail(f"no sluice CLI at {CLI_BIN}: cargo build --release --bin sluice, or set SLUICE_CLI_BIN")
    done = subprocess.run(
        [str(CLI_BIN), "--bootstrap", bootstrap, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, f"sluice {' '.join(args)} exited {done.returncode}: {done.stderr}"
    return done.stdout


def sluice_json(bootstrap: str, *args: str) -> Any:
    return json.loads(sluice(bootstrap, *args, "--format", "json"))


def poll(what: str, check: Callable[[], Any], timeout: float) -> Any:
    """Calls check() until it returns something truthy or timeout passes; returns it."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.5)
    pytest.fail(f"{what}: not within {timeout}s (last: {last!r})")


def _cluster(kind: str, base: Path, n: int) -> Iterator[Cluster]:
    try:
        cluster = start_cluster(kind, base, n)
    except ClusterError as e:
        pytest.fail(str(e))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def sluice_cluster(tmp_path: Path) -> Iterator[Cluster]:
    yield from _cluster("sluice", tmp_path / "sluice", 1)


@pytest.fixture
def kafka_cluster(tmp_path: Path) -> Iterator[Cluster]:
    yield from _cluster("kafka", tmp_path / "kafka", 3)


IDENTITY = ("id", "host", "port", "rack", "fenced")


def identities(brokers: list[dict]) -> list[dict]:
    """The fields naming a broker; the partition counts beside them are checked apart."""
    return [{k: b[k] for k in IDENTITY} for b in brokers]


def brokers_of(cluster: Cluster) -> list[dict]:
    return [
        {"id": n.node_id, "host": n.host, "port": n.port, "rack": None, "fenced": False}
        for n in cluster.nodes
    ]


def test_sluice_node_describes_itself(sluice_cluster: Cluster):
    bootstrap = sluice_cluster.bootstrap
    described = sluice_json(bootstrap, "cluster", "describe")
    assert identities(described["brokers"]) == brokers_of(sluice_cluster), described
    leading_before = described["brokers"][0]["leader_partitions"]
    assert described["brokers"][0]["follower_partitions"] == 0, described
    assert described["brokers"][0]["out_of_sync_partitions"] == 0, described
    assert described["controller_id"] == 1, described
    assert described["quorum_error"] is None, described
    text = sluice(bootstrap, "cluster", "describe")
    if described["quorum"] is None:
        assert "Metadata quorum: not shown (the broker does not support DescribeQuorum)" in text, text
    else:
        quorum = described["quorum"]
        assert quorum["leader_id"] == 1, quorum
        assert [(v["id"], v["lag"]) for v in quorum["voters"]] == [(1, 0)], quorum

    sluice(bootstrap, "topic", "create", "cli-cluster", "--partitions", "2")
    topic = sluice_json(bootstrap, "topic", "describe", "cli-cluster")
    assert [(p["leader"], p["replicas"], p["isr"]) for p in topic["partitions"]] == [(1, [1], [1])] * 2, topic
    leading_after = sluice_json(bootstrap, "cluster", "describe")["brokers"][0]["leader_partitions"]
    assert leading_after == leading_before + 2, (leading_before, leading_after)


def voter_lag(described: dict, node_id: int) -> int | None:
    for v in described["quorum"]["voters"]:
        if v["id"] == node_id:
            return v["lag"]
    raise AssertionError(f"node {node_id} is not a voter: {described['quorum']}")


@needs_kafka
def test_kafka_cluster_brokers_quorum_and_replicas(kafka_cluster: Cluster):
    cluster = kafka_cluster
    bootstrap = cluster.bootstrap
    described = sluice_json(bootstrap, "cluster", "describe")
    print(sluice(bootstrap, "cluster", "describe"))
    assert described["source"] == "DescribeCluster v2", described
    assert described["includes_fenced_brokers"] is True, described
    assert described["cluster_id"] == cluster.cluster_id, described
    assert identities(described["brokers"]) == brokers_of(cluster), described
    assert described["controller_id"] in {1, 2, 3}, described
    quorum = described["quorum"]
    active = poll("the nodes agree on a quorum leader", cluster.controller, 30)
    assert quorum["leader_id"] == active.node_id, (quorum, active)
    assert [v["id"] for v in quorum["voters"]] == [1, 2, 3], quorum
    for voter, node in zip(quorum["voters"], cluster.nodes):
        assert voter["endpoints"] == [
            {"listener": "CONTROLLER", "host": node.host, "port": node.controller_port}
        ], quorum
        assert voter["lag"] is not None and voter["lag"] >= 0, quorum
    assert voter_lag(described, active.node_id) == 0, quorum
    assert quorum["high_watermark"] > 0, quorum

    sluice(bootstrap, "topic", "create", "cli-cluster", "--partitions", "3", "--replication-factor", "3")

    def fully_replicated():
        topic = sluice_json(bootstrap, "topic", "describe", "cli-cluster")
        ok = all(sorted(p["isr"]) == [1, 2, 3] and p["leader"] in p["replicas"] for p in topic["partitions"])
        return topic if ok else None

    topic = poll("every partition has ISR [1, 2, 3]", fully_replicated, 60)
    assert [sorted(p["replicas"]) for p in topic["partitions"]] == [[1, 2, 3]] * 3, topic
    assert all(p["offline_replicas"] == [] and p["leader_epoch"] >= 0 for p in topic["partitions"]), topic

    # Kill a broker that is not the quorum leader, so the quorum keeps its leader.
    victim = next(n for n in cluster.nodes if n.node_id != active.node_id)
    victim.kill()

    def fenced():
        d = sluice_json(bootstrap, "cluster", "describe")
        states = {b["id"]: b["fenced"] for b in d["brokers"]}
        lag = voter_lag(d, victim.node_id)
        return d if states.get(victim.node_id) is True and lag is not None and lag > 0 else None

    described = poll(f"broker {victim.node_id} fenced, with a metadata lag", fenced, 60)
    assert [b["id"] for b in described["brokers"] if b["fenced"]] == [victim.node_id], described
    text = sluice(bootstrap, "cluster", "describe")
    print(text)
    assert any(line.split()[:1] == [str(victim.node_id)] and line.split()[-1] == "fenced" for line in text.splitlines()), text

    def out_of_isr():
        t = sluice_json(bootstrap, "topic", "describe", "cli-cluster")
        ok = all(
            victim.node_id not in p["isr"] and p["offline_replicas"] == [victim.node_id] and p["leader"] != victim.node_id
            for p in t["partitions"]
        )
        return t if ok else None

    poll(f"broker {victim.node_id} out of every ISR and offline", out_of_isr, 60)
    print(sluice(bootstrap, "topic", "describe", "cli-cluster"))

    cluster.restart(victim)

    def back():
        d = sluice_json(bootstrap, "cluster", "describe")
        t = sluice_json(bootstrap, "topic", "describe", "cli-cluster")
        unfenced = all(not b["fenced"] for b in d["brokers"]) and len(d["brokers"]) == 3
        in_isr = all(sorted(p["isr"]) == [1, 2, 3] and p["offline_replicas"] == [] for p in t["partitions"])
        return d if unfenced and in_isr and voter_lag(d, victim.node_id) == 0 else None

    poll(f"broker {victim.node_id} back: unfenced, in every ISR, caught up", back, 90)


@needs_kafka
def test_kafka_quorum_without_majority_is_reported_after_the_brokers(kafka_cluster: Cluster):
    """Two of three voters killed: no controller can be elected, and Kafka's brokers never
    answer the DescribeQuorum they forward. The command still prints the brokers (from the
    surviving broker's metadata cache), then `Metadata quorum: unavailable`, and fails with
    one line on stderr once the client's time for the request (60 s) has passed."""
    cluster = kafka_cluster
    survivor, *others = cluster.nodes
    for node in others:
        node.kill()
    done = subprocess.run(
        [str(CLI_BIN), "--bootstrap", survivor.address, "cluster", "describe"],
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )
    print(done.stdout, done.stderr)
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    assert f"1       {survivor.host}  {survivor.port}" in done.stdout, done.stdout
    assert done.stdout.rstrip().endswith("Metadata quorum: unavailable"), done.stdout
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot describe the metadata quorum: "), lines
    assert "DescribeQuorum" in lines[0], lines
