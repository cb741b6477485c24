"""Compat: kcat's high-level (balanced) consumer, ``kcat -G``, against the group coordinator.

``kcat -G GROUP -e TOPIC`` joins the group, reads every partition to its end, and on exit
commits its position (librdkafka's auto-commit, final commit at close). Afterwards:

- the group's committed offsets are the log end offsets, as seen by confluent-kafka's
  AdminClient (``list_consumer_group_offsets``) and kafka-python's ``committed()``;
- the group is listed (ListGroups) and described Empty, with no members;
- lag (committed offset vs. high watermark, the way tools compute it from OffsetFetch and
  ListOffsets) is 0, and grows by exactly the records produced afterwards;
- a second ``kcat -G`` run reads exactly those new records, not the old ones again.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid

import pytest
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient
from kafka import KafkaConsumer
from kafka import TopicPartition as KpTopicPartition

KCAT = shutil.which("kcat")
pytestmark = pytest.mark.skipif(KCAT is None, reason="kcat not installed (scripts/deps.sh installs it)")
PARTITIONS = 3
BROKER_ENV = {"SLUICE_GROUP_INITIAL_REBALANCE_DELAY_MS": "0"}


def kcat(*args: str, stdin: bytes | None = None, timeout: float = 60.0) -> str:
    done = subprocess.run([KCAT, *args], input=stdin, capture_output=True, timeout=timeout)
    assert done.returncode == 0, f"kcat {' '.join(args)} exited with {done.returncode}\n{done.stderr.decode()[-3000:]}"
    return done.stdout.decode()


def kcat_group_read(bootstrap: str, group: str, topic: str) -> list[tuple[int, int, str, str]]:
    out = kcat(
        "-b", bootstrap, "-G", group, "-X", "auto.offset.reset=earliest", "-e", "-q",
        "-f", "%p %o %k %s\n", topic,
    )
    rows = []
    for line in out.splitlines():
        p, o, k, v = line.split(" ")
        rows.append((int(p), int(o), k, v))
    return rows


def group_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    request = [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in range(PARTITIONS)])]
    result = admin.list_consumer_group_offsets(request)[group].result(timeout=30)
    return {tp.partition: tp.offset for tp in result.topic_partitions}


def high_watermarks(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "watermarks"})
    try:
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(PARTITIONS)}
    finally:
        consumer.close()


def test_kcat_balanced_consumer_commits_offsets_visible_to_other_clients(broker_factory, create_topic):
    broker = broker_factory(env=BROKER_ENV)
    topic = f"kcat-groups-{uuid.uuid4().hex[:6]}"
    group = f"kcat-group-{uuid.uuid4().hex[:6]}"
    create_topic(broker.bootstrap, topic, PARTITIONS)
    lines = "".join(f"k{i % 13}:v{i}\n" for i in range(600)).encode()
    kcat("-b", broker.bootstrap, "-P", "-t", topic, "-K", ":", stdin=lines)
    ends = high_watermarks(broker.bootstrap, topic)
    assert sum(ends.values()) == 600

    rows = kcat_group_read(broker.bootstrap, group, topic)
    assert sorted(v for _, _, _, v in rows) == sorted(f"v{i}" for i in range(600))
    assert len({(p, o) for p, o, _, _ in rows}) == 600

    # Committed offsets = log end offsets, seen by two other clients.
    assert group_offsets(broker.bootstrap, group, topic) == ends
    kp = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=group, enable_auto_commit=False)
    try:
        assert {p: kp.committed(KpTopicPartition(topic, p)) for p in range(PARTITIONS)} == ends
    finally:
        kp.close()
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    listed = admin.list_consumer_groups().result(timeout=30)
    assert group in {g.group_id for g in listed.valid}
    described = admin.describe_consumer_groups([group])[group].result(timeout=30)
    assert str(described.state).endswith("EMPTY"), described.state
    assert not described.members

    # Lag as tools compute it: high watermark - committed.
    kcat("-b", broker.bootstrap, "-P", "-t", topic, "-K", ":",
         stdin="".join(f"k{i % 13}:w{i}\n" for i in range(50)).encode())
    new_ends = high_watermarks(broker.bootstrap, topic)
    committed = group_offsets(broker.bootstrap, group, topic)
    assert sum(new_ends[p] - committed[p] for p in range(PARTITIONS)) == 50

    # The next run resumes at the committed offsets: only the new records.
    rows = kcat_group_read(broker.bootstrap, group, topic)
    assert sorted(v for _, _, _, v in rows) == sorted(f"w{i}" for i in range(50))
    assert all(o >= ends[p] for p, o, _, _ in rows)
    assert group_offsets(broker.bootstrap, group, topic) == new_ends
