"""Tests of the cluster launcher (launcher.py) and of its probes (kafka_wire.py).

This file owns the proof that:
- kafka_wire's ApiVersions, Metadata and CreateTopics work against a real Sluice node, and that
  a peer answering nonsense (closing, a bad size, a wrong correlation id, truncated bytes, an
  absurd array count) is "no answer" (None), never an exception;
- a single Sluice node starts, is ready, names itself controller and stops;
- a 3-node Sluice cluster either starts (every node sees all three and they agree on a
  controller), or, while the broker refuses clusters, fails with ClusterNotWired carrying the
  node's own words and log tail, with every node stopped; its configuration always passes the
  broker's cluster rules (a rule error would be a ClusterError of another kind);
- only the last start's log decides that a node was refused as "not wired";
- sizes outside 1..9 are refused before anything starts.

    .venv/bin/python -m pytest tests/cluster/test_launcher.py
"""

from __future__ import annotations

import socket
import struct
import threading
from pathlib import Path
from typing import Callable, Iterator

import pytest

import kafka_wire
from launcher import NOT_WIRED, Cluster, ClusterError, ClusterNotWired, start_cluster


@pytest.fixture
def sluice_node(tmp_path: Path) -> Iterator[Cluster]:
    try:
        cluster = start_cluster("sluice", tmp_path / "one", 1)
    except ClusterError as e:
        pytest.fail(str(e))
    try:
        yield cluster
    finally:
        cluster.stop()


def test_kafka_wire_against_a_sluice_node(sluice_node: Cluster) -> None:
    node = sluice_node.nodes[0]
    versions = kafka_wire.api_versions(node.host, node.port)
    assert versions is not None and kafka_wire.METADATA in versions and kafka_wire.CREATE_TOPICS in versions
    assert kafka_wire.create_topic(node.host, node.port, "wire", 4) == (0, "")
    error, message = kafka_wire.create_topic(node.host, node.port, "wire", 4)
    assert error == 36, message  # TOPIC_ALREADY_EXISTS
    view = kafka_wire.metadata(node.host, node.port)
    assert view is not None
    assert view.brokers == {1: (node.host, node.port)} and view.controller_id == 1
    assert view.leaders("wire") == {0: 1, 1: 1, 2: 1, 3: 1}
    assert view.topics["wire"].partitions[2].replicas == [1]
    assert kafka_wire.metadata(node.host, node.port, all_topics=False).topics == {}


def test_single_sluice_node_is_ready_names_itself_controller_and_stops(sluice_node: Cluster) -> None:
    rows = sluice_node.status()
    assert [(r["node"], r["state"], r["sees"]) for r in rows] == [(1, "ready", [1])]
    assert sluice_node.controller() is sluice_node.nodes[0]
    assert sluice_node.controller_id() == 1
    sluice_node.stop()
    assert not sluice_node.nodes[0].alive()
    assert sluice_node.status()[0]["state"] == "down"


def test_three_sluice_nodes_start_or_are_refused_clearly(tmp_path: Path) -> None:
    base = tmp_path / "three"
    try:
        cluster = start_cluster("sluice", base, 3, timeout=120)
    except ClusterNotWired as e:
        message = str(e)
        assert NOT_WIRED in message and "its log ends" in message and "===== start" in message, message
        cluster = Cluster.load(base)
        assert not any(n.alive() for n in cluster.nodes), "a refused start left nodes running"
        voters = ",".join(f"{n.node_id}@{n.host}:{n.controller_port}" for n in cluster.nodes)
        for node in cluster.nodes:
            config = (node.dir / "sluice.toml").read_text()
            assert f'"controller.quorum.voters" = "{voters}"' in config
            assert f"PLAINTEXT://{node.host}:{node.port},CONTROLLER://{node.host}:{node.controller_port}" in config
        return
    try:
        assert all(r["state"] == "ready" and r["sees"] == [1, 2, 3] for r in cluster.status()), cluster.status()
        assert cluster.controller_id() in (1, 2, 3)
    finally:
        cluster.stop()
    assert not any(n.alive() for n in cluster.nodes)


def test_only_the_last_start_decides_not_wired(tmp_path: Path) -> None:
    """node.log keeps every start: an old refusal must not turn a new, different failure into
    a skip."""
    cluster = Cluster.create("sluice", tmp_path / "three", 3)
    node = cluster.nodes[0]
    node.dir.mkdir(parents=True)
    node.log_path.write_text(
        f"===== start earlier\nsluice-broker: {NOT_WIRED}: controller.quorum.voters=...\n"
        "===== start now\nsluice-broker: cannot lock the data directory\n"
    )
    with pytest.raises(ClusterError) as refused:
        cluster.wait_node_ready(node, 1)
    assert not isinstance(refused.value, ClusterNotWired) and "cannot lock" in str(refused.value)
    node.log_path.write_text(f"===== start now\nsluice-broker: {NOT_WIRED}: process.roles=broker\n")
    with pytest.raises(ClusterNotWired):
        cluster.wait_node_ready(node, 1)


@pytest.mark.parametrize("n", [0, 10])
def test_sizes_outside_one_to_nine_are_refused(tmp_path: Path, n: int) -> None:
    with pytest.raises(ClusterError, match="1 to 9 nodes"):
        Cluster.create("sluice", tmp_path / "bad", n)
    assert not (tmp_path / "bad" / "cluster.json").exists()


@pytest.mark.parametrize(
    "n, broker_only, controller_only",
    [(3, 2, 0), (2, 1, 0), (3, 0, 3), (3, 3, 1), (3, -1, 0)],
)
def test_role_shapes_that_cannot_run_are_refused(tmp_path: Path, n: int, broker_only: int, controller_only: int) -> None:
    # Broker-only nodes need a quorum to follow (2 voters, or a controller-only one); a
    # cluster needs a broker; controller-only nodes are voters.
    with pytest.raises(ClusterError):
        Cluster.create("sluice", tmp_path / "bad", n, broker_only=broker_only, controller_only=controller_only)
    assert not (tmp_path / "bad" / "cluster.json").exists()


def test_role_shapes_give_each_node_its_listeners(tmp_path: Path) -> None:
    cluster = Cluster.create("sluice", tmp_path / "split", 4, broker_only=2, controller_only=1)
    again = Cluster.load(tmp_path / "split")
    assert (again.broker_only, again.controller_only) == (2, 1)
    assert [n.node_id for n in again.voters] == [1, 2]
    assert [n.node_id for n in again.brokers] == [2, 3, 4]
    assert again.bootstrap == ",".join(n.address for n in cluster.nodes[1:])
    texts = {}
    for node in cluster.nodes:
        node.dir.mkdir(parents=True)
        texts[node.node_id] = cluster._write_sluice_config(node).read_text()
    voters = f'"controller.quorum.voters" = "1@127.0.0.1:{cluster.nodes[0].controller_port},2@127.0.0.2:{cluster.nodes[1].controller_port}"'
    assert all(voters in t for t in texts.values()), texts
    assert '"process.roles" = "controller"' in texts[1] and "PLAINTEXT://" not in texts[1]
    assert '"process.roles" = "broker,controller"' in texts[2]
    for broker_only in (3, 4):
        assert '"process.roles" = "broker"' in texts[broker_only]
        assert "CONTROLLER://" not in texts[broker_only], texts[broker_only]
    assert cluster.nodes[0].port == 0 and cluster.nodes[3].controller_port == 0


# --- a peer that answers nonsense ------------------------------------------------------------


def _serve_once(answer: Callable[[int], bytes]) -> tuple[int, threading.Thread]:
    """A listener on 127.0.0.1 that reads one request and writes answer(correlation id)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(10)

    def run() -> None:
        with server:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                size = struct.unpack(">i", conn.recv(4, socket.MSG_WAITALL))[0]
                request = conn.recv(size, socket.MSG_WAITALL)
                correlation = struct.unpack_from(">i", request, 4)[0]
                try:
                    conn.sendall(answer(correlation))
                except OSError:
                    pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return server.getsockname()[1], thread


def _framed(correlation: int, body: bytes) -> bytes:
    payload = struct.pack(">i", correlation) + body
    return struct.pack(">i", len(payload)) + payload


NONSENSE = {
    "closes": lambda c: b"",
    "negative size": lambda c: struct.pack(">i", -5),
    "huge size": lambda c: struct.pack(">i", 1 << 30),
    "wrong correlation": lambda c: _framed(c + 1, struct.pack(">i", 0) + struct.pack(">i", 1) + struct.pack(">i", 0)),
    "truncated": lambda c: _framed(c, struct.pack(">i", 1) + struct.pack(">i", 1)),
    "absurd array": lambda c: _framed(c, struct.pack(">i", 0x7FFFFFFF)),
    "bad string length": lambda c: _framed(c, struct.pack(">ii", 1, 1) + struct.pack(">h", 3000) + b"x"),
}


@pytest.mark.parametrize("case", list(NONSENSE))
def test_nonsense_is_no_answer(case: str) -> None:
    for probe in (
        lambda port: kafka_wire.metadata("127.0.0.1", port, timeout=5),
        lambda port: kafka_wire.api_versions("127.0.0.1", port, timeout=5),
        lambda port: kafka_wire.create_topic("127.0.0.1", port, "t", 1, timeout_ms=100),
    ):
        port, thread = _serve_once(NONSENSE[case])
        assert probe(port) is None
        thread.join(10)


def test_nobody_listening_is_no_answer() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections are refused
        assert kafka_wire.metadata("127.0.0.1", port) is None
        assert kafka_wire.api_versions("127.0.0.1", port) is None
