"""The fault bench: one test per nemesis, each a whole Jepsen-style run.

A run: start a cluster (settings in conftest.py: Sluice or Apache Kafka, N nodes), create a
topic (3 partitions, replication factor min(3, N), min.insync.replicas min(2, N), unclean
leader election off, on Kafka and Sluice alike),
start the workload (idempotent acks=all producers in Python and Java,
group and assigned consumers; workload.py), let it run healthy, start the fault, hold it,
undo it, wait until the cluster has recovered, let the workload run on, stop it, read every
partition in full, and give the merged history to the checker. The test fails on any
violation the checker reports; if a client died or exited with an error; if either kind of
producer acknowledged nothing; if some client did not work again after the recovery (within
RESUME_DEADLINE_S); and if a network cut dropped no packet (nemesis.py). The negative control
shows that the bench fails when records are lost (where there is replication: N >= 2).

Every run leaves its files in pytest's tmp dir (cluster node dirs and logs, each client's
history and log, history.jsonl, checker.json) and adds one line to the results table.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Optional

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

import checker
import history
from launcher import Cluster, ClusterError, start_cluster
from nemesis import NEMESES, FaultContext, Nemesis, PartitionLeader, PauseLeader, SmallDisk
from network import Network, private_namespace_reason
from workload import Workload, create_topic

TOPIC = "jepsen"
# How long after the cluster recovered every client must have worked again (a group that
# lost its coordinator rebalances first).
RESUME_DEADLINE_S = 90.0
# The negative control's name in SLUICE_CLUSTER_NEMESES and in the results table.
CONTROL = "control-acks-1"
PARTITIONS = 3
# Enough for the full-disk fault to fill quickly, enough for a run's records.
SMALL_DISK_MB = {"sluice": 192, "kafka": 256}


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _admin(cluster: Cluster) -> AdminClient:
    # Quiet: while nodes are down it would log every refused connection; errors that matter
    # surface as exceptions.
    return AdminClient({"bootstrap.servers": cluster.bootstrap, "socket.timeout.ms": 5000, "log_level": 2})


def _leaders(admin: AdminClient, timeout: float = 5.0) -> Optional[dict[int, int]]:
    """partition -> leader node id, or None when metadata cannot be had right now."""
    try:
        topic = admin.list_topics(TOPIC, timeout=timeout).topics.get(TOPIC)
    except KafkaException:
        return None
    if topic is None or topic.error is not None:
        return None
    return {p.id: p.leader for p in topic.partitions.values()}


def _replication_factor(target: str, nodes: int) -> int:
    """The workload topic's replication factor: min(3, N), on Kafka and Sluice alike."""
    return min(3, nodes)


def _topic_settings(cluster: Cluster) -> tuple[int, dict[str, str]]:
    """Replication factor and configs of the workload's topic on this cluster."""
    replicas = _replication_factor(cluster.kind, len(cluster.nodes))
    config = {"min.insync.replicas": str(min(2, replicas))}
    # The default, stated: the bench must never count on an unclean election.
    config["unclean.leader.election.enable"] = "false"
    return replicas, config


def _in_sync(admin: AdminClient) -> Optional[bool]:
    """Whether every partition of the workload topic has its whole replica set in its ISR
    (None when metadata cannot be had right now)."""
    try:
        topic = admin.list_topics(TOPIC, timeout=5).topics.get(TOPIC)
    except KafkaException:
        return None
    if topic is None or topic.error is not None or not topic.partitions:
        return None
    return all(p.leader >= 0 and set(p.isrs) == set(p.replicas) for p in topic.partitions.values())


def _java_string_hash(text: str) -> int:
    """Java's String.hashCode (for the characters of the BMP), which Kafka hashes a group id
    with to place it on a __consumer_offsets partition."""
    h = 0
    for ch in text:
        h = (31 * h + ord(ch)) & 0xFFFFFFFF
    return h


def _group_coordinator(admin: AdminClient, group: str) -> Optional[int]:
    """The node coordinating group: the leader of its __consumer_offsets partition (Kafka's
    placement, abs(hashCode) % partitions; Sluice puts every partition on one broker, so the
    same rule names it), or None when metadata cannot be had right now."""
    try:
        topic = admin.list_topics("__consumer_offsets", timeout=5).topics.get("__consumer_offsets")
    except KafkaException:
        return None
    if topic is None or topic.error is not None or not topic.partitions:
        return None
    partition = topic.partitions.get((_java_string_hash(group) & 0x7FFFFFFF) % len(topic.partitions))
    return partition.leader if partition is not None and partition.leader >= 0 else None


def _roles(cluster: Cluster, admin: AdminClient, group: str) -> str:
    """Who does what right before the fault, for the run's log: which node a fault hits
    decides what becomes unavailable on a cluster without replication."""
    controller = cluster.controller()
    return (
        f"partition leaders {_leaders(admin)}, controller {controller.node_id if controller else None}, "
        f"group coordinator {_group_coordinator(admin, group)}"
    )


def _wait_leaders(cluster: Cluster, admin: AdminClient, deadline_s: float) -> dict[int, int]:
    ids = {n.node_id for n in cluster.nodes}
    deadline = time.monotonic() + deadline_s
    while True:
        leaders = _leaders(admin)
        if leaders and len(leaders) == PARTITIONS and all(l in ids for l in leaders.values()):
            return leaders
        if time.monotonic() > deadline:
            raise AssertionError(f"topic {TOPIC} has no leader for every partition after {deadline_s:.0f}s: {leaders}")
        time.sleep(0.5)


def _wait_recovered(cluster: Cluster, admin: AdminClient, deadline_s: float = 120) -> float:
    """Waits until every node is up and sees the whole cluster and every partition has a
    leader; returns how long that took."""
    started = time.monotonic()
    cluster.wait_ready(deadline_s)
    _wait_leaders(cluster, admin, max(5.0, deadline_s - (time.monotonic() - started)))
    return time.monotonic() - started


def _longest_ack_gap(path: Path) -> float:
    """The longest time, in seconds, between two consecutive acknowledged sends of the run
    (any producer): how long writes stalled at worst, the fault's cost in availability."""
    acks = sorted(op["mono"] for op in history.read(path) if op.get("f") == "send" and op.get("type") == "ok")
    return max((b - a for a, b in zip(acks, acks[1:])), default=0) / 1e9


def _longest_partition_stall(path: Path) -> tuple[Optional[int], float]:
    """The partition whose writes stalled longest, and for how long (seconds between two
    consecutive acknowledged sends to it). On a cluster without replication (Sluice today)
    a fault only stops the partitions its node leads while the others go on, so the run's
    longest stall over all partitions (_longest_ack_gap) hides it; this is the window in
    which a partition was unavailable for writes."""
    acks: dict[int, list[int]] = {}
    for op in history.read(path):
        if op.get("f") == "send" and op.get("type") == "ok" and op.get("partition") is not None:
            acks.setdefault(op["partition"], []).append(op["mono"])
    worst: tuple[Optional[int], float] = (None, 0.0)
    for partition, monos in sorted(acks.items()):
        monos.sort()
        gap = max((b - a for a, b in zip(monos, monos[1:])), default=0) / 1e9
        if gap > worst[1]:
            worst = (partition, gap)
    return worst


def _cannot_run(reason: str) -> None:
    """A nemesis that cannot run here (no permission, no namespace) is skipped with the
    reason; where the bench must run in full (CI, as root: SLUICE_CLUSTER_STRICT=1) that is
    a failure instead, so that a skip never hides a fault that went untested."""
    if os.environ.get("SLUICE_CLUSTER_STRICT") == "1":
        pytest.fail(f"SLUICE_CLUSTER_STRICT=1 but the nemesis cannot run: {reason}")
    pytest.skip(reason)


def _check_runnable(nemesis_cls: type[Nemesis], name: str, bench) -> None:
    """Skips (or fails, see _cannot_run) a run that cannot or should not happen here."""
    if bench.nodes < nemesis_cls.min_nodes:
        why = " (run SLUICE_CLUSTER_NODES=3 for a Sluice cluster)" if bench.target == "sluice" else ""
        pytest.skip(f"{name} needs {nemesis_cls.min_nodes} nodes, the cluster has {bench.nodes}{why}")
    if bench.nemeses is not None and name not in bench.nemeses:
        pytest.skip(f"not selected (SLUICE_CLUSTER_NEMESES={','.join(bench.nemeses)})")
    if nemesis_cls.needs_network:
        reason = private_namespace_reason()
        if reason:
            _cannot_run(reason)


def _run(
    bench, nemesis: Nemesis, tmp_path: Path, results_table: list[str], label: str, unsafe_acks_1: bool = False
) -> checker.Result:
    """One whole run (see the module docstring); returns the checker's result and adds the
    run's line to the results table."""
    base = tmp_path / "cluster"
    cluster = Cluster.create(bench.target, base, bench.nodes, gids=nemesis.needs_network)
    network: Optional[Network] = None
    disk: Optional[SmallDisk] = None
    workload: Optional[Workload] = None
    started = time.monotonic()
    try:
        if nemesis.needs_network:
            network = Network([n.node_id for n in cluster.nodes])
            network.setup()
        if nemesis.needs_disk:
            disk = SmallDisk(cluster.nodes[0], SMALL_DISK_MB[bench.target])
            try:
                disk.mount()
            except PermissionError as e:
                _cannot_run(str(e))
        cluster = start_cluster(bench.target, base, bench.nodes)
        _log(f"{bench.target} cluster of {bench.nodes} ready: {cluster.bootstrap}")
        admin = _admin(cluster)
        replicas, config = _topic_settings(cluster)
        if unsafe_acks_1:
            config["min.insync.replicas"] = "1"
        create_topic(cluster.bootstrap, TOPIC, PARTITIONS, replicas, config)
        ctx = FaultContext(
            cluster=cluster,
            topic=TOPIC,
            leader_of=lambda p: (_leaders(admin) or {}).get(p),
            network=network,
            disk=disk,
            in_sync=lambda: _in_sync(admin),
        )

        workload = Workload(
            cluster.bootstrap,
            TOPIC,
            tmp_path / "workload",
            java_producers=0 if unsafe_acks_1 else 1,
            unsafe_acks_1=unsafe_acks_1,
        )
        workload.start()
        workload.wait_ready(60)
        _log(f"workload running; healthy for {bench.healthy_s:.0f}s")
        time.sleep(bench.healthy_s)  # a phase of the run, not a wait for readiness

        _assert_clients_alive(workload, "before the fault")

        hold_s = max(bench.fault_s, PauseLeader.min_hold_s) if isinstance(nemesis, PauseLeader) else bench.fault_s
        _log(f"before the fault: {_roles(cluster, admin, workload.group)}")
        try:
            what = nemesis.start(ctx)
            _log(f"nemesis {nemesis.name} started: {what}; held {hold_s:.0f}s")
            time.sleep(hold_s)  # the fault's duration
        finally:
            _log(f"nemesis {nemesis.name} stops: {nemesis.stop(ctx)}")
        took = _wait_recovered(cluster, admin)
        recovered_mono = time.monotonic_ns()
        _log(f"cluster recovered in {took:.1f}s; workload goes on for {bench.recover_s:.0f}s")
        time.sleep(bench.recover_s)  # a phase of the run
        _assert_clients_alive(workload, "after the fault")
        resumed = _wait_worked_after(workload, recovered_mono, RESUME_DEADLINE_S)
        _log(f"every client worked again {resumed:.1f}s after the cluster recovered")

        exits = workload.stop()
        _log(f"workload stopped: {exits}")
        assert all(code == 0 for code in exits.values()), f"clients exited with errors: {exits}"
        workload.final_read()
        path = workload.merge()
    finally:
        if workload is not None:
            workload.kill()
        if network is not None:
            network.teardown()
        try:
            cluster.stop()
        except ClusterError as e:
            _log(f"stopping the cluster: {e}")
        if disk is not None:
            disk.unmount()

    result = checker.check(history.read(path))
    (tmp_path / "checker.json").write_text(json.dumps(result.to_json(), indent=1, default=str))
    elapsed = time.monotonic() - started
    stalled = _longest_partition_stall(path)
    by_client = " ".join(f"{c}={n}" for c, n in sorted(result.acked_by_client.items()))
    results_table.append(
        f"{bench.target:<6} n={bench.nodes} {label:<19} "
        + " ".join(f"{k}={getattr(result, k)}" for k in checker.VIOLATIONS)
        + f" | acked={result.acked} ({by_client}) indeterminate={result.indeterminate}"
        f" unacked_seen={result.unacked_seen} | longest write stall {_longest_ack_gap(path):.1f}s"
        f" (partition {stalled[0]}: {stalled[1]:.1f}s)"
        f" | all clients resumed {resumed:.1f}s after recovery | {elapsed:.0f}s"
    )
    if bench.results_file is not None:
        with open(bench.results_file, "a") as f:
            f.write(results_table[-1] + "\n")
    _log(result.summary())
    for name, count in sorted(result.acked_by_process.items()):
        _log(f"  {name}: acked {count}")
    _assert_worked_after(path, recovered_mono, workload)
    return result


def _assert_clients_alive(workload: Workload, when: str) -> None:
    dead = workload.dead()
    assert not dead, f"clients died {when}: {dead}"


def _wait_worked_after(workload: Workload, recovered_mono: int, deadline_s: float) -> float:
    """Waits (polling the clients' history files, with a deadline) until every producer had
    a write acknowledged and every consumer polled records after the cluster recovered;
    returns how long after the recovery the last one did. Consumers of a group can take
    a while: after a coordinator failover the group rebalances first."""
    producers = {p.name: p for p in workload.processes if p.role == "producer"}
    consumers = {p.name: p for p in workload.processes if p.role != "producer"}
    waiting = {**{n: "send" for n in producers}, **{n: "poll" for n in consumers}}
    last_mono = recovered_mono
    deadline = time.monotonic() + deadline_s
    while waiting:
        for process in [p for p in workload.processes if p.name in waiting]:
            f = waiting[process.name]
            if not process.history.exists():
                continue
            for op in history.read(process.history):
                if op.get("f") == f and op.get("type") == "ok" and op["mono"] > recovered_mono:
                    last_mono = max(last_mono, op["mono"])
                    del waiting[process.name]
                    break
        if not waiting:
            break
        _assert_clients_alive(workload, "while waiting for them to work again")
        assert time.monotonic() < deadline, (
            f"{deadline_s:.0f}s after the cluster recovered, still no "
            + ", ".join(f"{f} by {n}" for n, f in sorted(waiting.items()))
        )
        time.sleep(1.0)
    return (last_mono - recovered_mono) / 1e9


def _assert_worked_after(path: Path, recovered_mono: int, workload: Workload) -> None:
    """The cluster must work again after the fault, not merely answer Metadata: every
    producer had a write acknowledged and every consumer polled records after the cluster
    recovered, and the group committed offsets during the run. (Sends that fail for ever
    after a fault would otherwise only count as "indeterminate", which is allowed.)"""
    acked_after: set[str] = set()
    polled_after: set[str] = set()
    commits_ok = 0
    for op in history.read(path):
        if op.get("type") != "ok":
            continue
        if op["f"] == "send" and op["mono"] > recovered_mono:
            acked_after.add(op["process"])
        elif op["f"] == "poll" and op["mono"] > recovered_mono:
            polled_after.add(op["process"])
        elif op["f"] == "commit":
            commits_ok += 1
    producers = {p.name for p in workload.processes if p.role == "producer"}
    consumers = {p.name for p in workload.processes if p.role != "producer"}
    assert producers <= acked_after, f"no write acknowledged after recovery for {sorted(producers - acked_after)}"
    assert consumers <= polled_after, f"nothing polled after recovery by {sorted(consumers - polled_after)}"
    assert commits_ok > 0, "the consumer group committed nothing during the run"


@pytest.mark.timeout(900)
@pytest.mark.parametrize("nemesis_name", list(NEMESES))
def test_nemesis(nemesis_name: str, bench, results_table, tmp_path: Path) -> None:
    nemesis_cls = NEMESES[nemesis_name]
    _check_runnable(nemesis_cls, nemesis_name, bench)
    result = _run(bench, nemesis_cls(), tmp_path, results_table, nemesis_name)
    assert result.ok, "\n".join([result.summary(), *result.example_lines()])
    assert result.acked_by_client.get("java", 0) > 0, f"the Java producer acknowledged nothing: {result.summary()}"
    assert (
        result.acked_by_client.get("confluent-kafka", 0) > 0
    ), f"the Python producers acknowledged nothing: {result.summary()}"


@pytest.mark.timeout(900)
def test_negative_control_acks_1_loses_writes(bench, results_table, tmp_path: Path) -> None:
    """The bench must be able to fail. With settings known to lose acknowledged records
    (acks=1 without idempotence, min.insync.replicas=1) and the leader of partition 0 cut
    from the other nodes, the isolated leader keeps acknowledging writes alone (nothing
    tells it it was deposed, and the clients still reach it) until the partition heals, and
    then truncates them to follow the new leader: the checker must count them as lost."""
    _check_runnable(PartitionLeader, CONTROL, bench)
    if _replication_factor(bench.target, bench.nodes) < 2:
        # What the control provokes is a deposed leader's acknowledged records truncated
        # when it follows the new leader. With one replica there is no new leader to follow
        # (the cut partition stays offline until its only replica is back), so the setting
        # cannot lose records this way and the control would prove nothing about the bench.
        pytest.skip(
            f"the negative control needs replication (a new leader to truncate to); "
            f"{bench.target} runs the workload topic with replication factor 1"
        )
    result = _run(bench, PartitionLeader(), tmp_path, results_table, CONTROL, unsafe_acks_1=True)
    assert result.lost > 0, f"the negative control lost nothing, so the bench proves nothing: {result.summary()}"


class LostAcknowledged(AssertionError):
    """Records acknowledged with acks=all are missing after a failover."""


@pytest.mark.timeout(300)
def test_replication_factor_3_keeps_acknowledged_records_when_the_leader_dies(bench, tmp_path: Path) -> None:
    """A topic created with replication factor 3 must keep every record acknowledged with
    acks=all when its leader is killed: whichever replica leads next has them, and so does
    the partition once the killed node is back.

    Before replication (issue 17) Sluice accepted the topic, listed all three replicas in
    sync and, on the leader's death, elected a replica whose log was empty, losing every
    acknowledged record (found by this test); it then refused the factor until replication
    landed. Both must pass it now."""
    if bench.nodes < 3:
        pytest.skip(f"needs 3 nodes, the cluster has {bench.nodes}")
    if bench.nemeses is not None and "rf3-failover" not in bench.nemeses:
        pytest.skip(f"not selected (SLUICE_CLUSTER_NEMESES={','.join(bench.nemeses)})")
    from confluent_kafka import Consumer, Producer, TopicPartition

    topic, count = "rf3-failover", 100
    cluster = start_cluster(bench.target, tmp_path / "cluster", bench.nodes)
    try:
        admin = _admin(cluster)
        # Kafka's default min.insync.replicas, stated (the launcher's Kafka brokers default to
        # 2): the weakest setting that still must not lose acks=all records to a clean election.
        create_topic(cluster.bootstrap, topic, 1, 3, {"min.insync.replicas": "1"})
        acked: dict[str, int] = {}

        def delivered(err, msg) -> None:
            if err is None:
                acked[msg.value().decode()] = msg.offset()

        producer = Producer(
            {"bootstrap.servers": cluster.bootstrap, "acks": "all", "enable.idempotence": True, "log_level": 2}
        )
        for i in range(count):
            producer.produce(topic, value=f"r{i}".encode(), partition=0, on_delivery=delivered)
        assert producer.flush(30) == 0, "records still in flight after 30 s"
        assert len(acked) == count, f"only {len(acked)} of {count} records acknowledged"

        leader = admin.list_topics(topic, timeout=10).topics[topic].partitions[0].leader
        cluster.node(leader).kill()
        _log(f"killed node {leader}, the leader of {topic}-0")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                now = admin.list_topics(topic, timeout=3).topics[topic].partitions[0].leader
            except KafkaException:
                now = None
            if now not in (None, -1, leader):
                _log(f"node {now} leads {topic}-0")
                break
            time.sleep(0.5)
        cluster.restart(cluster.node(leader))
        cluster.wait_ready(120)
        deadline = time.monotonic() + 60
        while admin.list_topics(topic, timeout=5).topics[topic].partitions[0].leader < 0:
            assert time.monotonic() < deadline, f"{topic}-0 has no leader 60 s after node {leader} is back"
            time.sleep(0.5)

        consumer = Consumer(
            {"bootstrap.servers": cluster.bootstrap, "group.id": "rf3-reader", "enable.auto.commit": False}
        )
        try:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
            consumer.assign([TopicPartition(topic, 0, low)])
            read: set[str] = set()
            deadline = time.monotonic() + 30
            position = low
            while position < high and time.monotonic() < deadline:
                msg = consumer.poll(1.0)
                if msg is not None and msg.error() is None:
                    read.add(msg.value().decode())
                    position = msg.offset() + 1
        finally:
            consumer.close()
        lost = sorted(set(acked) - read, key=lambda v: int(v[1:]))
        if lost:
            raise LostAcknowledged(
                f"{len(lost)} of {count} acknowledged records lost after node {leader} died "
                f"(partition now {low}..{high}): {lost[:5]}..."
            )
    finally:
        cluster.stop()
