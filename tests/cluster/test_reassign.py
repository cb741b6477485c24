"""Partition reassignment driven by Apache Kafka's own `kafka-reassign-partitions` (the 4.4
tool, ``org.apache.kafka.tools.reassign.ReassignPartitionsCommand``, run by
scripts/peers/kafka.sh) against three nodes, with the very same checks for Sluice (always)
and for Apache Kafka 4.4 (only with ``SLUICE_CLUSTER_KAFKA=1``, as test_cli_cluster.py):

1. ``kafka-topics --create --replica-assignment 1:2,2:3,3:1`` makes topic ``moves``
   (partitions on [1,2], [2,3], [3,1]; Kafka's syntax: ``,`` between partitions, ``:``
   between replicas) with ``min.insync.replicas=1``, so that partition 2 still takes
   acks=all writes once it is moved to one replica. Every ISR becomes its replica set.
2. A kafka-python producer (acks=all, idempotent) writes "v<i>" with key "k<i>" to
   partition i % 3, 300 a second, for at most 60 s or 20,000 records, and remembers every
   acknowledged (partition, offset, value).
3. While it writes, ``--execute`` moves partition 0 to [2,3], partition 1 to [3,1,2] and
   partition 2 to [1]. The tool prints the current assignment as a rollback plan (with each
   replica's log dir, from DescribeLogDirs) and "Successfully started partition
   reassignments for moves-0,moves-1,moves-2".
4. ``--verify`` is polled until it says "Reassignment of partition moves-N is completed."
   for all three (then it also clears the throttles: "Clearing broker-level throttles on
   brokers 1,2,3", "Clearing topic-level throttles on topic moves").
5. ``kafka-topics --describe`` shows the replicas exactly as asked, in order, an ISR equal
   to them and a leader among them; ``--list`` says "No partition reassignments found.".
   Every partition still took acknowledged writes after the moves.
6. The producer stops: no send failed (leader moves are retriable errors to it). Every
   partition is read from its start: no acknowledged record is missing or different.
7. Each node's data dir holds ``moves-N`` exactly for the partitions it now replicates: the
   removed replicas' dirs are gone (Kafka renames them to ``moves-N.<id>-delete``), the new
   ones exist (node 3 has ``moves-0``, node 1 ``moves-1``). Same layout on both brokers.
8. Cancellation. Node 3 (node 2 if 3 leads the metadata quorum) is killed with kill -9 and,
   at once, ``--execute`` moves partition 2 from [1] to [1,3]: it must run before the
   controller fences the dead broker (broker.session.timeout.ms, 9 s), because the tool
   refuses a plan naming a broker that DescribeCluster does not list ("Unknown broker id
   3"; checked at the end). Once node 3 is fenced and out of every ISR, ``--verify`` says
   "Reassignment of partition moves-2 is still in progress.", ``--list`` says "moves-2:
   replicas: 1,3. adding: 3." and ``kafka-topics`` shows Adding Replicas 3; ``--cancel``
   says "Successfully cancelled partition reassignment for: moves-2", after which the
   replicas are [1] again and nothing is listed. ``--cancel`` runs with
   ``--preserve-throttles``: without it the tool then clears broker throttles on every
   broker of the plan, node 3 included, and Kafka's tool fails after 60 s ("Timed out
   waiting for a node assignment. Call: incrementalAlterConfigs"). Node 3 is restarted and
   rejoins every ISR.

The tool's requests, as Kafka 4.4's admin client sends them: ``--execute``
ListPartitionReassignments v0, DescribeCluster v2 (twice), DescribeTopicPartitions v0,
DescribeLogDirs v5 (to each current replica's broker), AlterPartitionReassignments v1;
``--verify`` ListPartitionReassignments, DescribeCluster + DescribeTopicPartitions for the
partitions it does not list, and once no reassignment is left anywhere DescribeCluster and
IncrementalAlterConfigs v1 (DELETE of leader/follower.replication.throttled.rate and
replica.alter.log.dirs.io.max.bytes.per.second, one request to each broker for its BROKER
resource, and of leader/follower.replication.throttled.replicas for the TOPIC); ``--list``
ListPartitionReassignments; ``--cancel`` ListPartitionReassignments naming the partitions,
AlterPartitionReassignments v1 with null replicas. (With ``log_dirs`` other than "any" in a
plan, as in the rollback plan --execute prints, the tool also sends DescribeLogDirs on
--verify and AlterReplicaLogDirs on --execute.)

The wall time of each run (cluster start to stop) and the record counts are printed and
added to the results table at the end of the pytest output.

    .venv/bin/python -m pytest tests/cluster/test_reassign.py -s
    SLUICE_CLUSTER_KAFKA=1 .venv/bin/python -m pytest tests/cluster/test_reassign.py -k kafka -s

Needs scripts/deps.sh (the venv), scripts/deps.sh --kafka (the Kafka 4.4 jars, whose tools
drive both kinds) and, for Sluice, target/release/sluice-broker. ``scripts/cluster.sh test``
runs it with the rest of tests/cluster (only loopback addresses, no network faults).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import pytest

import kafka_wire
from launcher import KAFKA_HOME, KAFKA_SH, Cluster, ClusterError, Node, start_cluster

TOPIC = "moves"
INITIAL = {0: [1, 2], 1: [2, 3], 2: [3, 1]}
TARGET = {0: [2, 3], 1: [3, 1, 2], 2: [1]}
REASSIGN = "org.apache.kafka.tools.reassign.ReassignPartitionsCommand"
TOPICS = "org.apache.kafka.tools.TopicCommand"

# The background producer: at most this many records, for at most this long, paced.
MAX_RECORDS = 20_000
MAX_PRODUCE_S = 60.0
RECORDS_PER_S = 300

needs_kafka = pytest.mark.skipif(
    os.environ.get("SLUICE_CLUSTER_KAFKA") != "1",
    reason="runs against Apache Kafka only when SLUICE_CLUSTER_KAFKA=1 is set (needs scripts/deps.sh --kafka)",
)


# --- small helpers ------------------------------------------------------------------------


def poll(what: str, check: Callable[[], Any], timeout: float, interval: float = 0.5) -> Any:
    """Calls check() until it returns something truthy or timeout passes; returns it."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"{what}: not within {timeout}s (last: {last!r})")


@dataclass
class Run:
    """One run of a Kafka tool. The tools print their results and errors ("Error: ...") on
    stdout, log warnings on stderr; checks look at stdout only."""

    code: int
    out: str
    err: str
    seconds: float

    @property
    def lines(self) -> list[str]:
        return [line.rstrip() for line in self.out.splitlines()]

    def __str__(self) -> str:
        text = f"exit {self.code} after {self.seconds:.1f}s\n{self.out.rstrip()}"
        return text + (f"\n[stderr]\n{self.err.rstrip()}" if self.err.strip() else "")


def kafka_tool(*args: str, timeout: float = 120) -> Run:
    """Runs a Kafka main class with scripts/peers/kafka.sh."""
    started = time.monotonic()
    done = subprocess.run(
        [str(KAFKA_SH), "run", *args], capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    text = [done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace")]
    return Run(done.returncode, *text, time.monotonic() - started)


def reassign(bootstrap: str, action: str, plan: Optional[Path] = None, *extra: str) -> Run:
    """kafka-reassign-partitions --ACTION [--reassignment-json-file PLAN] [EXTRA...], printed."""
    args = [REASSIGN, "--bootstrap-server", bootstrap, f"--{action}"]
    if plan is not None:
        args += ["--reassignment-json-file", str(plan)]
    run = kafka_tool(*args, *extra)
    print(f"--- kafka-reassign-partitions --{action} {' '.join(extra)}: {run}")
    return run


def write_plan(path: Path, moves: dict[int, list[int]]) -> Path:
    plan = {"version": 1, "partitions": [{"topic": TOPIC, "partition": p, "replicas": r} for p, r in moves.items()]}
    path.write_text(json.dumps(plan))
    return path


@dataclass
class PartitionState:
    leader: int
    replicas: list[int]
    isr: list[int]
    adding: list[int]
    removing: list[int]


def _ids(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def describe(bootstrap: str) -> dict[int, PartitionState]:
    """The partitions of TOPIC as `kafka-topics --describe` prints them (DescribeTopicPartitions);
    empty if the command fails."""
    run = kafka_tool(TOPICS, "--bootstrap-server", bootstrap, "--describe", "--topic", TOPIC)
    if run.code != 0:
        return {}
    states = {}
    for line in run.lines:
        fields = dict(f.split(": ", 1) if ": " in f else (f.rstrip(":"), "") for f in line.strip().split("\t"))
        if "Partition" not in fields:
            continue
        leader = fields["Leader"]
        states[int(fields["Partition"])] = PartitionState(
            leader=int(leader) if leader.lstrip("-").isdigit() else -1,
            replicas=_ids(fields["Replicas"]),
            isr=_ids(fields["Isr"]),
            adding=_ids(fields.get("Adding Replicas", "")),
            removing=_ids(fields.get("Removing Replicas", "")),
        )
    return states


def in_sync(bootstrap: str, want: dict[int, list[int]]) -> Optional[dict[int, PartitionState]]:
    """The partitions, if each has exactly the replicas `want` names, in that order, an ISR
    equal to them (as a set), a leader among them and no reassignment in flight; else None."""
    states = describe(bootstrap)
    ok = sorted(states) == sorted(want) and all(
        s.replicas == want[p] and sorted(s.isr) == sorted(want[p]) and s.leader in want[p]
        and not s.adding and not s.removing
        for p, s in states.items()
    )
    return states if ok else None


def partition_dirs(node: Node) -> set[str]:
    """The TOPIC partition directories in the node's data dir, by exact name."""
    names = {f"{TOPIC}-{p}" for p in INITIAL}
    try:
        return {d.name for d in node.data_dir.iterdir() if d.is_dir() and d.name in names}
    except FileNotFoundError:
        return set()


# --- the background producer ----------------------------------------------------------------


@dataclass
class Ack:
    partition: int
    offset: int
    value: str
    at: float  # time.monotonic() of the acknowledgement


@dataclass
class Producer:
    """kafka-python producer in a thread: acks=all, idempotent, value "v<i>" with key "k<i>"
    to partition i % 3, at most RECORDS_PER_S, until stopped, MAX_RECORDS or MAX_PRODUCE_S."""

    bootstrap: str
    acks: list[Ack] = field(default_factory=list, repr=False)
    failures: list[str] = field(default_factory=list, repr=False)
    sent: int = 0
    error: Optional[BaseException] = None
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: Optional[threading.Thread] = field(default=None, repr=False)

    def start(self) -> "Producer":
        self._thread = threading.Thread(target=self._run, name="reassign-producer", daemon=True)
        self._thread.start()
        return self

    def acked_per_partition(self, since: float = 0.0) -> dict[int, int]:
        counts = {p: 0 for p in INITIAL}
        for ack in list(self.acks):
            if ack.at >= since:
                counts[ack.partition] += 1
        return counts

    def stop(self, timeout: float = 90) -> bool:
        """Stops sending, waits for the outstanding acknowledgements; False if still running."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    def _run(self) -> None:
        from kafka import KafkaProducer

        try:
            producer = KafkaProducer(
                bootstrap_servers=self.bootstrap.split(","),
                acks="all",
                enable_idempotence=True,
                linger_ms=5,
                client_id="reassign-producer",
            )
        except BaseException as e:  # reported by the test
            self.error = e
            return
        started = time.monotonic()
        try:
            for i in range(MAX_RECORDS):
                due = started + i / RECORDS_PER_S
                if due - started > MAX_PRODUCE_S or self._stop.wait(max(0.0, due - time.monotonic())):
                    break
                value = f"v{i}"
                future = producer.send(TOPIC, key=f"k{i}".encode(), value=value.encode(), partition=i % len(INITIAL))
                future.add_callback(self._acked, value).add_errback(self._failed, value)
                self.sent += 1
            producer.flush(timeout=60)
        except BaseException as e:
            self.error = e
        finally:
            producer.close(timeout=30)

    def _acked(self, value: str, metadata: Any) -> None:
        self.acks.append(Ack(metadata.partition, metadata.offset, value, time.monotonic()))

    def _failed(self, value: str, error: BaseException) -> None:
        self.failures.append(f"{value}: {error!r}")


def read_everything(bootstrap: str, timeout: float = 60) -> dict[tuple[int, int], str]:
    """{(partition, offset): value} of every record of TOPIC, read from each partition's start
    up to its end offset as it is when the read begins (kafka-python, partitions assigned)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap.split(","), group_id=None, enable_auto_commit=False, client_id="reassign-reader"
    )
    try:
        tps = [TopicPartition(TOPIC, p) for p in INITIAL]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        seen: dict[tuple[int, int], str] = {}
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            assert time.monotonic() < deadline, (
                f"read not done within {timeout}s: at {[consumer.position(tp) for tp in tps]} of {ends}"
            )
            for tp, records in consumer.poll(timeout_ms=1000, max_records=5000).items():
                for r in records:
                    seen[(tp.partition, r.offset)] = r.value.decode()
        return seen
    finally:
        consumer.close()


# --- the cluster --------------------------------------------------------------------------


@contextlib.contextmanager
def three_nodes(kind: str, base: Path) -> Iterator[Cluster]:
    if not (KAFKA_HOME / "libs" / ".pom.sha256").exists():
        pytest.fail(f"Apache Kafka's tools are not installed in {KAFKA_HOME}: scripts/deps.sh --kafka")
    try:
        cluster = start_cluster(kind, base, 3)
    except ClusterError as e:
        pytest.fail(str(e))
    try:
        yield cluster
    finally:
        cluster.stop()


# --- the test -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [pytest.param("sluice"), pytest.param("kafka", marks=needs_kafka)])
def test_reassign_under_load_then_cancel(kind: str, tmp_path: Path, results_table: list[str]):
    wall_start = time.monotonic()
    with three_nodes(kind, tmp_path / kind) as cluster:
        producer = Producer(cluster.bootstrap)
        try:
            summary = _moves_under_load(cluster, producer, tmp_path)
            summary += _cancel_with_a_dead_broker(cluster, tmp_path)
        finally:
            producer.stop()  # before the nodes stop, if a check failed while it was writing
    wall = time.monotonic() - wall_start
    line = f"reassign {kind}: {summary}; wall time {wall:.1f}s"
    print(line)
    results_table.append(line)


def _moves_under_load(cluster: Cluster, producer: Producer, tmp_path: Path) -> str:
    """Steps 1-7 of the module docstring, with the producer not started yet; returns a summary."""
    bootstrap = cluster.bootstrap
    assignment = ",".join(":".join(map(str, r)) for r in INITIAL.values())
    run = kafka_tool(
        TOPICS, "--bootstrap-server", bootstrap, "--create", "--topic", TOPIC,
        "--replica-assignment", assignment, "--config", "min.insync.replicas=1",
    )
    assert run.code == 0 and f"Created topic {TOPIC}." in run.lines, str(run)
    poll(f"{TOPIC} on {INITIAL}, every ISR full", lambda: in_sync(bootstrap, INITIAL), 60)

    producer.start()
    poll(
        "the producer acknowledged on every partition",
        lambda: producer.error or min(producer.acked_per_partition().values()) >= 50,
        60,
    )
    assert producer.error is None, f"producer failed: {producer.error!r}"

    plan = write_plan(tmp_path / "moves.json", TARGET)
    moves_start = time.monotonic()  # to the first --verify that says completed (JVM starts included)
    run = reassign(bootstrap, "execute", plan)
    assert run.code == 0, str(run)
    assert "Successfully started partition reassignments for moves-0,moves-1,moves-2" in run.lines, str(run)
    # The rollback plan it prints first: the current replicas, each with its broker's log dir.
    (rollback,) = [json.loads(line) for line in run.lines if line.startswith('{"version"')]
    assert {p["partition"]: p["replicas"] for p in rollback["partitions"]} == INITIAL, rollback
    for p in rollback["partitions"]:
        assert p["log_dirs"] == [str(cluster.node(r).data_dir) for r in p["replicas"]], rollback

    done = [f"Reassignment of partition {TOPIC}-{p} is completed." for p in TARGET]
    going = [f"Reassignment of partition {TOPIC}-{p} is still in progress." for p in TARGET]

    def verified() -> Optional[Run]:
        run = reassign(bootstrap, "verify", plan)
        assert run.code == 0, str(run)
        status = [line for line in run.lines if line.startswith("Reassignment of partition")]
        assert len(status) == 3 and all(line in done + going for line in status), str(run)
        return run if status == done else None

    run = poll("--verify says every move is completed", verified, 90, interval=1)
    moves_s = time.monotonic() - moves_start
    moved_at = time.monotonic()
    assert run.lines == [
        "Status of partition reassignment:",
        *done,
        "",
        "Clearing broker-level throttles on brokers 1,2,3",
        f"Clearing topic-level throttles on topic {TOPIC}",
    ], str(run)

    states = poll(f"{TOPIC} on {TARGET}, every ISR full", lambda: in_sync(bootstrap, TARGET), 60, interval=1)
    print(f"after the moves: {states}")
    run = reassign(bootstrap, "list")
    assert run.code == 0 and run.lines == ["No partition reassignments found."], str(run)
    poll(
        "acknowledged writes on every partition after the moves",
        lambda: producer.error or min(producer.acked_per_partition(since=moved_at).values()) >= 10,
        30,
    )

    assert producer.stop(), "the producer did not stop within 90 s"
    assert producer.error is None, f"producer failed: {producer.error!r}"
    acked = list(producer.acks)
    seen = read_everything(bootstrap)
    lost = [a for a in acked if seen.get((a.partition, a.offset)) != a.value]
    duplicates = len(seen) - len(set(seen.values()))
    print(
        f"produced {producer.sent}, acknowledged {len(acked)} {producer.acked_per_partition()}, "
        f"failed {len(producer.failures)} {producer.failures[:5]}, read {len(seen)} "
        f"({duplicates} duplicate values), lost {len(lost)}; --execute to a completed --verify: {moves_s:.1f}s"
    )
    # Leader moves are retriable errors to an idempotent producer: Kafka fails no send.
    assert not producer.failures, f"{len(producer.failures)} sends failed, e.g. {producer.failures[:5]}"
    assert not lost, (
        f"{len(lost)} of {len(acked)} acknowledged records missing or different, e.g. "
        f"{[(a, seen.get((a.partition, a.offset))) for a in lost[:10]]}"
    )

    def dirs_match() -> Optional[dict[int, set[str]]]:
        have = {n.node_id: partition_dirs(n) for n in cluster.nodes}
        want = {n.node_id: {f"{TOPIC}-{p}" for p, r in TARGET.items() if n.node_id in r} for n in cluster.nodes}
        return have if have == want else None

    poll("each data dir holds exactly the partitions its node replicates", dirs_match, 60)
    return (
        f"3 partitions moved under load, --execute to a completed --verify {moves_s:.1f}s (tool JVMs "
        f"included); {len(acked)} records acknowledged (none failed), all read back, {duplicates} duplicates"
    )


def _cancel_with_a_dead_broker(cluster: Cluster, tmp_path: Path) -> str:
    """Step 8 of the module docstring; returns a summary."""
    active = cluster.controller()
    victim = cluster.node(3 if active is None or active.node_id != 3 else 2)
    live = [n for n in cluster.brokers if n is not victim]
    bootstrap = ",".join(n.address for n in live)  # the tool must not pick the dead node
    stuck = [1, victim.node_id]
    plan = write_plan(tmp_path / "stuck.json", {2: stuck})

    # kill -9, then the plan at once: the tool checks its brokers against DescribeCluster,
    # which lists a dead broker only until the controller fences it (9 s without heartbeat).
    victim.kill()
    killed_at = time.monotonic()
    run = reassign(bootstrap, "execute", plan)
    print(f"--execute done {time.monotonic() - killed_at:.1f}s after the kill")
    assert run.code == 0, f"(it must be done before node {victim.node_id} is fenced) {run}"
    assert "Successfully started partition reassignment for moves-2" in run.lines, str(run)

    def fenced() -> bool:
        view = kafka_wire.metadata(live[0].host, live[0].port, all_topics=False)
        return view is not None and victim.node_id not in view.broker_ids

    poll(f"node {victim.node_id} fenced (gone from Metadata's brokers)", fenced, 60)

    def out_of_isrs() -> Optional[dict[int, PartitionState]]:
        states = describe(bootstrap)
        return states if states and all(victim.node_id not in s.isr for s in states.values()) else None

    states = poll(f"node {victim.node_id} out of every ISR", out_of_isrs, 60, interval=1)
    p2 = states[2]
    want = (stuck, [victim.node_id], [], [1], 1)
    assert (p2.replicas, p2.adding, p2.removing, p2.isr, p2.leader) == want, states

    run = reassign(bootstrap, "verify", plan)
    assert run.code == 0, str(run)
    assert run.lines == [
        "Status of partition reassignment:",
        "Reassignment of partition moves-2 is still in progress.",
        "",
    ], str(run)
    run = reassign(bootstrap, "list")
    assert run.code == 0, str(run)
    assert run.lines == [
        "Current partition reassignments:",
        f"moves-2: replicas: 1,{victim.node_id}. adding: {victim.node_id}.",
    ], str(run)

    run = reassign(bootstrap, "cancel", plan, "--preserve-throttles")
    assert run.code == 0, str(run)
    assert run.lines == [
        "Successfully cancelled partition reassignment for: moves-2",
        "None of the specified partition moves are active.",
    ], str(run)
    after = {**TARGET, 2: [1]}

    def cancelled() -> Optional[dict[int, PartitionState]]:
        states = describe(bootstrap)
        ok = sorted(states) == sorted(after) and all(s.replicas == after[p] for p, s in states.items())
        return states if ok and not states[2].adding and states[2].isr == [1] else None

    poll("partition 2 back on [1] alone", cancelled, 60, interval=1)
    run = reassign(bootstrap, "list")
    assert run.code == 0 and run.lines == ["No partition reassignments found."], str(run)

    # A fenced broker is no broker to the tool: the same plan is refused now.
    run = reassign(bootstrap, "execute", plan)
    assert run.code == 1 and f"Error: Unknown broker id {victim.node_id}" in run.lines, str(run)

    cluster.restart(victim)
    poll(f"node {victim.node_id} back in every ISR", lambda: in_sync(cluster.bootstrap, after), 90, interval=1)
    return f"; [1] -> [1,{victim.node_id}] with node {victim.node_id} dead: in progress, cancelled"
