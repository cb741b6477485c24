"""Compat: consumer groups with confluent-kafka (librdkafka) consumers as child processes.

Three consumers (``group_consumer.py``: subscribe, write each record to a file, commit
after each batch) share a 6-partition topic in one group while a producer writes 60,000
keyed records (600 keys, a per-key sequence number in each value). Once every consumer
owns partitions and part of the data is produced, one consumer is killed with SIGKILL.
After its session timeout (6 s) the coordinator removes it and its partitions move to the
two others. In the end:

- every consumer owned partitions while all three were in the group;
- after the kill, the survivors are assigned the dead consumer's partitions and process
  records from them;
- every produced record was processed at least once (by anyone), none was skipped, and
  each processed record is exactly the one produced at its (partition, offset);
- per-key order held within each consumer's processing: between two assignments of a
  partition a consumer sees its records in offset order, and so each key's sequence
  numbers in increasing order;
- the group's committed offsets are the log end offsets, and the group is Empty once the
  survivors have closed.

Run with the classic eager ``range`` assignor and with ``cooperative-sticky`` (incremental
rebalancing: consumers keep their partitions across the rebalance).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Optional

import pytest
from confluent_kafka import ConsumerGroupTopicPartitions, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from conftest import wait_until

PARTITIONS = 6
RECORDS = 60_000
KEYS = 600
SESSION_TIMEOUT_MS = 6000
CONSUMER = Path(__file__).resolve().parent / "group_consumer.py"
# The broker's first rebalance of a new group does not wait for more members (Kafka's
# reference broker, scripts/peers/kafka.sh, runs with the same setting).
BROKER_ENV = {"SLUICE_GROUP_INITIAL_REBALANCE_DELAY_MS": "0"}


class ConsumerProcess:
    """One ``group_consumer.py`` child and the event file it writes."""

    def __init__(self, name: str, bootstrap: str, topic: str, group: str, strategy: str, tmp_path: Path):
        self.name = name
        self.out = tmp_path / f"{name}.events"
        self.out.touch()
        self.stderr_path = tmp_path / f"{name}.stderr"
        with open(self.stderr_path, "wb") as stderr:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    str(CONSUMER),
                    "--bootstrap", bootstrap,
                    "--topic", topic,
                    "--group", group,
                    "--out", str(self.out),
                    "--strategy", strategy,
                    "--session-timeout-ms", str(SESSION_TIMEOUT_MS),
                    "--client-id", name,
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )

    def lines(self, start: int = 0) -> list[str]:
        """Complete lines from byte ``start`` on (a line without its newline is still being written)."""
        data = self.out.read_bytes()[start:]
        return data.decode().split("\n")[:-1]

    def size(self) -> int:
        return self.out.stat().st_size

    def owned(self) -> set[int]:
        """The partitions this consumer owns now, by its assign/revoke events."""
        owned: set[int] = set()
        for line in self.lines():
            kind, _, rest = line.partition(" ")
            parts = {int(p) for p in rest.split(",") if p} if kind in ("A", "V") else set()
            if kind == "A":
                owned |= parts
            elif kind == "V":
                owned -= parts
        return owned

    def records(self) -> int:
        return sum(1 for line in self.lines() if line.startswith("R "))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=60)
        assert code == 0, f"{self.name} exited with {code}: {self.stderr_path.read_text()[-2000:]}"

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=30)

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


def check_processing_order(
    consumer: ConsumerProcess, produced: dict[tuple[int, int], tuple[str, str]], key_partition: dict[str, int]
) -> int:
    """Checks one consumer's records against the produced ones and its per-key order;
    returns how many records it processed."""
    last_offset: dict[int, int] = {}
    last_seq: dict[str, int] = {}
    count = 0
    for line in consumer.lines():
        kind, _, rest = line.partition(" ")
        if kind == "A":
            # A (re)assigned partition restarts from its committed offset: earlier records
            # of it may come again.
            for p in (int(x) for x in rest.split(",") if x):
                last_offset.pop(p, None)
                for key in [k for k in last_seq if key_partition[k] == p]:
                    del last_seq[key]
            continue
        if kind != "R":
            continue
        partition, offset, key, value = rest.split(" ")
        partition, offset = int(partition), int(offset)
        assert produced.get((partition, offset)) == (key, value), (
            f"{consumer.name}: {partition}/{offset} is {key} {value}, produced {produced.get((partition, offset))}"
        )
        assert offset > last_offset.get(partition, -1), (
            f"{consumer.name}: partition {partition} went back from {last_offset[partition]} to {offset} "
            "without being reassigned"
        )
        last_offset[partition] = offset
        seq = int(value.split(":")[1])
        assert seq > last_seq.get(key, -1), f"{consumer.name}: key {key} seq {seq} after {last_seq[key]}"
        last_seq[key] = seq
        count += 1
    return count


def produce_throttled(bootstrap: str, topic: str, delivered: list, errors: list, progress: list) -> None:
    """Produces RECORDS keyed records in chunks (so consumers are mid-stream for a few
    seconds), recording every delivery report."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})

    def report(err, msg) -> None:  # noqa: ANN001 - librdkafka callback
        if err is not None:
            errors.append(err)
        else:
            delivered.append((msg.partition(), msg.offset(), msg.key().decode(), msg.value().decode()))

    chunk = 2000
    for start in range(0, RECORDS, chunk):
        for i in range(start, start + chunk):
            key = f"k{i % KEYS:03d}"
            producer.produce(topic, key=key, value=f"{key}:{i // KEYS}", on_delivery=report)
            producer.poll(0)
        producer.flush(60)
        progress.append(len(delivered))
        time.sleep(0.15)
    assert producer.flush(60) == 0


def run_failover(broker_factory, create_topic, tmp_path: Path, strategy: str) -> None:
    broker = broker_factory(env=BROKER_ENV)
    topic = f"groups-{strategy}-{uuid.uuid4().hex[:6]}"
    group = f"group-{strategy}-{uuid.uuid4().hex[:6]}"
    create_topic(broker.bootstrap, topic, PARTITIONS)
    consumers = [ConsumerProcess(f"c{i}", broker.bootstrap, topic, group, strategy, tmp_path) for i in range(3)]
    producer_thread: Optional[threading.Thread] = None
    try:
        def balanced() -> bool:
            owned = [c.owned() for c in consumers]
            union = set().union(*owned)
            return all(owned) and union == set(range(PARTITIONS)) and sum(map(len, owned)) == PARTITIONS

        wait_until(balanced, timeout=60, interval=0.1, message="three consumers sharing the 6 partitions")
        for c in consumers:
            assert c.proc.poll() is None, f"{c.name} died: {c.stderr_path.read_text()[-2000:]}"

        delivered: list[tuple[int, int, str, str]] = []
        errors: list = []
        progress: list[int] = []
        producer_thread = threading.Thread(
            target=produce_throttled, args=(broker.bootstrap, topic, delivered, errors, progress), daemon=True
        )
        producer_thread.start()

        victim, survivors = consumers[0], consumers[1:]
        wait_until(
            lambda: (progress and progress[-1] >= RECORDS // 4) and victim.records() > 0,
            timeout=60,
            interval=0.05,
            message="a quarter of the records produced and some consumed by the victim",
        )
        victim.kill()
        victim_partitions = victim.owned()
        assert victim_partitions, "the victim owned partitions when killed"
        marks = {c.name: c.size() for c in survivors}

        producer_thread.join(timeout=120)
        assert not producer_thread.is_alive(), "producer finished"
        assert not errors, f"delivery errors: {errors[:5]}"
        assert len(delivered) == RECORDS

        produced = {(p, o): (k, v) for p, o, k, v in delivered}
        assert len(produced) == RECORDS, "every record has its own (partition, offset)"
        key_partition: dict[str, int] = {}
        by_key: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
        for p, o, k, v in delivered:
            by_key[k].append((int(v.split(":")[1]), p, o))
        for k, rows in by_key.items():
            assert len({p for _, p, _ in rows}) == 1, f"key {k} on one partition"
            key_partition[k] = rows[0][1]
            assert [o for _, _, o in sorted(rows)] == sorted(o for _, _, o in rows), f"key {k} in order"

        def processed() -> set[tuple[int, int]]:
            seen: set[tuple[int, int]] = set()
            for c in consumers:
                for line in c.lines():
                    if line.startswith("R "):
                        _, p, o, _, _ = line.split(" ")
                        seen.add((int(p), int(o)))
            return seen

        missing: set = set()

        def all_processed() -> bool:
            nonlocal missing
            missing = set(produced) - processed()
            return not missing

        try:
            wait_until(all_processed, timeout=90, interval=0.25, message="every record processed")
        except TimeoutError:
            raise AssertionError(
                f"{len(missing)} records never processed, e.g. {sorted(missing)[:10]}; "
                f"survivors own {[sorted(c.owned()) for c in survivors]}"
            ) from None
        for c in survivors:
            assert c.proc.poll() is None, f"{c.name} died: {c.stderr_path.read_text()[-2000:]}"
            c.stop()

        # Each consumer owned partitions while the three were in the group (checked above
        # by `balanced`); after the kill, the victim's partitions went to the survivors.
        taken_over: set[int] = set()
        for c in survivors:
            for line in c.lines(marks[c.name]):
                kind, _, rest = line.partition(" ")
                if kind == "R":
                    taken_over.add(int(rest.split(" ")[0]))
        assert victim_partitions <= taken_over, (
            f"the victim's partitions {sorted(victim_partitions)} were processed by survivors after the kill "
            f"(they processed {sorted(taken_over)})"
        )
        total = sum(check_processing_order(c, produced, key_partition) for c in consumers)
        assert total >= RECORDS

        # Everything was committed, and the group is empty now.
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        request = [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in range(PARTITIONS)])]
        committed = admin.list_consumer_group_offsets(request)[group].result(timeout=30)
        ends = defaultdict(int)
        for p, o, _, _ in delivered:
            ends[p] = max(ends[p], o + 1)
        assert {tp.partition: tp.offset for tp in committed.topic_partitions} == dict(ends)
        described = admin.describe_consumer_groups([group])[group].result(timeout=30)
        assert str(described.state).endswith("EMPTY"), described.state
        assert not described.members
    finally:
        for c in consumers:
            c.cleanup()
        if producer_thread is not None:
            producer_thread.join(timeout=60)


@pytest.mark.parametrize("strategy", ["range", "cooperative-sticky"])
def test_group_consumers_take_over_a_killed_members_partitions(broker_factory, create_topic, tmp_path, strategy):
    run_failover(broker_factory, create_topic, tmp_path, strategy)
