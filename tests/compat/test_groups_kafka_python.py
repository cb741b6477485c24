"""Compat: kafka-python group consumers with manual commits resume exactly after the last
commit: across consumer restarts, across a graceful broker restart, and across a broker
killed with SIGKILL.

One group on a 3-partition topic (records produced with kafka-python's default producer:
idempotent, acks=all). Each leg starts a new ``KafkaConsumer`` (subscribe, no auto-commit),
processes a number of records, commits exactly what it processed
(``commit({tp: OffsetAndMetadata(last + 1, ...)})``, not what it fetched), and closes.
The next consumer's first record on every partition must be the committed offset, and it
must then see every later record once, in offset order. ``committed()`` and the admin
client's ``list_group_offsets`` show the same offsets.

At the end the admin client removes one partition's offset (OffsetDelete) and then the
group (DeleteGroups): the group's other offsets go with it.
"""

from __future__ import annotations

import time
import uuid

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata

PARTITIONS = 3
BROKER_ENV = {"SLUICE_GROUP_INITIAL_REBALANCE_DELAY_MS": "0"}


def produce(bootstrap: str, topic: str, start: int, count: int) -> dict[tuple[int, int], str]:
    """Produces ``count`` keyed records with kafka-python's defaults; returns value by (partition, offset)."""
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    futures = [
        (producer.send(topic, key=f"k{i % 7}".encode(), value=f"v{i}".encode()), f"v{i}")
        for i in range(start, start + count)
    ]
    producer.flush(timeout=30)
    out = {}
    for future, value in futures:
        meta = future.get(timeout=30)
        out[(meta.partition, meta.offset)] = value
    producer.close(timeout=10)
    return out


def consume(bootstrap: str, topic: str, group: str, count: int, timeout: float = 60.0) -> list[tuple[int, int, str]]:
    """Processes exactly ``count`` records as a group member, commits what it processed, closes."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=10000,
    )
    consumer.subscribe([topic])
    processed: list[tuple[int, int, str]] = []
    last: dict[int, int] = {}
    deadline = time.monotonic() + timeout
    try:
        while len(processed) < count:
            assert time.monotonic() < deadline, f"only {len(processed)} of {count} records in {timeout}s"
            batches = consumer.poll(timeout_ms=500)
            for tp, records in sorted(batches.items(), key=lambda item: item[0].partition):
                for record in records:
                    if len(processed) == count:
                        break
                    processed.append((tp.partition, record.offset, record.value.decode()))
                    last[tp.partition] = record.offset
        if last:
            consumer.commit({TopicPartition(topic, p): OffsetAndMetadata(o + 1, "", -1) for p, o in last.items()})
    finally:
        consumer.close()
    return processed


def committed(bootstrap: str, topic: str, group: str) -> dict[int, int]:
    """The group's committed offsets, as ``committed()`` and the admin client both report them."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        by_consumer = {p: consumer.committed(TopicPartition(topic, p)) for p in range(PARTITIONS)}
    finally:
        consumer.close()
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        by_admin = {tp.partition: meta.offset for tp, meta in admin.list_group_offsets({group: None})[group].items()}
    finally:
        admin.close()
    by_consumer = {p: o for p, o in by_consumer.items() if o is not None}
    assert by_consumer == by_admin
    return by_consumer


def check_resume(processed: list[tuple[int, int, str]], resume_at: dict[int, int],
                 produced: dict[tuple[int, int], str]) -> dict[int, int]:
    """Each partition's records start at its committed offset (0 if none) and follow in
    order without gaps; returns the offsets to resume at after them."""
    following = dict(resume_at)
    for partition, offset, value in processed:
        expected = following.get(partition, 0)
        assert offset == expected, f"partition {partition}: got offset {offset}, expected {expected}"
        assert produced[(partition, offset)] == value
        following[partition] = offset + 1
    return following


def test_kafka_python_manual_commits_resume_across_consumer_and_broker_restarts(
    broker_factory, create_topic, wait_for_topic
):
    broker = broker_factory(env=BROKER_ENV)
    topic = f"kp-groups-{uuid.uuid4().hex[:6]}"
    group = f"kp-group-{uuid.uuid4().hex[:6]}"
    create_topic(broker.bootstrap, topic, PARTITIONS)
    produced = produce(broker.bootstrap, topic, 0, 300)

    # Two consumers one after the other: the second resumes after the first's commit.
    first = consume(broker.bootstrap, topic, group, 100)
    position = check_resume(first, {}, produced)
    assert committed(broker.bootstrap, topic, group) == position
    second = consume(broker.bootstrap, topic, group, 80)
    position = check_resume(second, position, produced)
    assert committed(broker.bootstrap, topic, group) == position

    # A graceful broker restart: the commits are still there, and consumption resumes.
    broker.restart()
    wait_for_topic(broker.bootstrap, topic, PARTITIONS)
    assert committed(broker.bootstrap, topic, group) == position
    third = consume(broker.bootstrap, topic, group, 300 - 180)
    position = check_resume(third, position, produced)
    ends = {p: 1 + max(o for (q, o) in produced if q == p) for p in range(PARTITIONS)}
    assert position == ends
    assert committed(broker.bootstrap, topic, group) == ends

    # A crash (SIGKILL) right after the commits: still there after recovery.
    produced.update(produce(broker.bootstrap, topic, 300, 30))
    fourth = consume(broker.bootstrap, topic, group, 10)
    position = check_resume(fourth, position, produced)
    broker.kill()
    broker.start()
    wait_for_topic(broker.bootstrap, topic, PARTITIONS)
    assert committed(broker.bootstrap, topic, group) == position
    fifth = consume(broker.bootstrap, topic, group, 20)
    position = check_resume(fifth, position, produced)
    ends = {p: 1 + max(o for (q, o) in produced if q == p) for p in range(PARTITIONS)}
    assert position == ends

    # Admin: delete one partition's offset, describe, then delete the (empty) group.
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        deleted = admin.delete_group_offsets(group, [TopicPartition(topic, 0)])
        assert [e.errno for e in deleted.values()] == [0], deleted
        left = {p: o for p, o in ends.items() if p != 0}
        assert committed(broker.bootstrap, topic, group) == left
        described = admin.describe_groups([group])[group]
        assert described["group_state"] == "Empty", described
        assert described["members"] == []
        assert group in {g["group_id"] for g in admin.list_groups()}
        assert admin.delete_groups([group]) == {group: "OK"}
        assert committed(broker.bootstrap, topic, group) == {}
        assert group not in {g["group_id"] for g in admin.list_groups()}
    finally:
        admin.close()
