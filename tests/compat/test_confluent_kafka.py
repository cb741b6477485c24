"""Compat: confluent-kafka (PyPI; librdkafka 2.x inside) against the broker.

Every test produces with ``acks=all`` and a delivery report per message, and requires a
report without error for every one: (partition, offset) unique, each partition's offsets
dense from 0 in produce order, each key on one partition. Messages carry keys (a few have
none), headers (some with a null value), explicit CreateTime timestamps, and a few null
values (tombstones).

Consumers use ``group.id`` (librdkafka requires one) but ``assign()``, never ``subscribe()``,
and ``enable.auto.commit=false``: no consumer group protocol is needed. They read until
librdkafka reports the end of every assigned partition (``enable.partition.eof``) and must
see exactly the expected records: same partition, offset, key, value, headers, timestamp
(CreateTime), nothing twice.

- from a given offset: ``assign([TopicPartition(t, p, offset)])`` reads exactly the records
  at and after ``offset``; watermarks (ListOffsets) are (0, records in partition).
- replay from a timestamp: ``offsets_for_times`` answers, per partition, the first offset
  whose timestamp is >= the target (0 for a target before everything, -1 = end for one after
  everything); assigning those offsets replays exactly the records from that time on.
- SIGTERM between produce and consume: the broker exits 0; after a restart on the same data
  dir every record is there at its offset, and new records continue at the old end offsets.
- SIGKILL right after the last delivery report: after a restart every acknowledged record is
  there at its acknowledged offset, and new records continue after them.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from typing import Any, Optional

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    TIMESTAMP_CREATE_TIME,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)

PARTITIONS = 3

# (key, value, timestamp_ms, headers); value None = tombstone, key None = keyless
Message = tuple[Optional[bytes], Optional[bytes], int, list[tuple[str, Optional[bytes]]]]
# (partition, offset) -> (key, value, timestamp_ms, headers)
Records = dict[tuple[int, int], tuple[Optional[bytes], Optional[bytes], int, list[tuple[str, Optional[bytes]]]]]


def make_messages(n: int, base_ts: int, tag: str = "m") -> list[tuple[Optional[int], Message]]:
    """``n`` messages as (explicit partition or None, message); timestamps base_ts + i."""
    out = []
    for i in range(n):
        headers: list[tuple[str, Optional[bytes]]] = [("i", str(i).encode()), ("tag", tag.encode())]
        if i % 10 == 0:
            headers.append(("null-header", None))
        value = None if i % 997 == 5 else f"{tag}-value-{i:06d}-".encode() * (1 + i % 4)
        if i % 250 == 3:  # keyless: partition chosen here, so per-partition order is known
            out.append((i % PARTITIONS, (None, value, base_ts + i, headers)))
        else:
            out.append((None, (f"{tag}-key-{i % 50:02d}".encode(), value, base_ts + i, headers)))
    return out


def produce_acked(bootstrap: str, topic: str, messages: list[tuple[Optional[int], Message]]) -> Records:
    """Produces with acks=all; returns every record by its acknowledged (partition, offset).

    Fails unless every message got a delivery report without error."""
    reports: list[tuple[int, Any, Any]] = []
    client_errors: list[KafkaError] = []
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "linger.ms": 5,
            "message.timeout.ms": 60000,
            "error_cb": client_errors.append,
        }
    )
    for i, (partition, (key, value, ts, headers)) in enumerate(messages):
        kwargs: dict[str, Any] = {}
        if partition is not None:
            kwargs["partition"] = partition
        producer.produce(
            topic,
            value=value,
            key=key,
            timestamp=ts,
            headers=headers,
            on_delivery=lambda err, msg, i=i: reports.append((i, err, msg)),
            **kwargs,
        )
        producer.poll(0)
    remaining = producer.flush(90)
    producer.close()
    assert remaining == 0, f"{remaining} messages still undelivered after flush; client errors {client_errors[:5]}"
    failed = [(i, err) for i, err, _ in reports if err is not None]
    assert not failed, f"{len(failed)} delivery reports with errors, e.g. {failed[:5]}; client errors {client_errors[:5]}"
    assert sorted(i for i, _, _ in reports) == list(range(len(messages))), "not one delivery report per message"

    records: Records = {}
    send_order: dict[int, list[tuple[int, int]]] = defaultdict(list)  # partition -> [(i, offset)]
    key_partitions: dict[bytes, set[int]] = defaultdict(set)
    for i, _, msg in reports:
        key, value, ts, headers = messages[i][1]
        po = (msg.partition(), msg.offset())
        assert msg.topic() == topic
        assert po not in records, f"offset {po} acknowledged twice"
        records[po] = (key, value, ts, headers)
        send_order[msg.partition()].append((i, msg.offset()))
        if key is not None:
            key_partitions[key].add(msg.partition())
    for p, pairs in send_order.items():
        offsets = [o for _, o in sorted(pairs)]
        assert offsets == list(range(len(offsets))), f"partition {p}: acknowledged offsets not 0..n-1 in produce order"
    spread = {k: ps for k, ps in key_partitions.items() if len(ps) > 1}
    assert not spread, f"keys on more than one partition: {list(spread.items())[:3]}"
    return records


def new_consumer(bootstrap: str, errors: list) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            # librdkafka requires a group.id; assign() below uses no group protocol.
            "group.id": f"compat-{uuid.uuid4().hex[:12]}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "error",  # an out-of-range start is an error, not a silent reset
            "fetch.wait.max.ms": 100,
            "error_cb": errors.append,
        }
    )


def consume_to_end(bootstrap: str, topic: str, starts: dict[int, int], timeout: float = 60.0) -> Records:
    """Assigns ``partition -> start offset`` and reads until every partition reported its end."""
    client_errors: list[KafkaError] = []
    consumer = new_consumer(bootstrap, client_errors)
    got: Records = {}
    duplicates: list[tuple[int, int]] = []
    partition_errors: list[KafkaError] = []
    at_end: set[int] = set()
    try:
        consumer.assign([TopicPartition(topic, p, o) for p, o in starts.items()])
        deadline = time.monotonic() + timeout
        while at_end != set(starts) and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    at_end.add(msg.partition())
                else:
                    partition_errors.append(msg.error())
                continue
            po = (msg.partition(), msg.offset())
            if po in got:
                duplicates.append(po)
            ts_type, ts = msg.timestamp()
            assert ts_type == TIMESTAMP_CREATE_TIME, f"record {po}: timestamp type {ts_type}, want CreateTime"
            got[po] = (msg.key(), msg.value(), ts, list(msg.headers() or []))
    finally:
        consumer.close()
    assert at_end == set(starts), (
        f"end of partitions {sorted(set(starts) - at_end)} not reached within {timeout}s "
        f"({len(got)} records read); partition errors {partition_errors[:5]}; client errors {client_errors[:5]}"
    )
    assert not partition_errors, f"partition errors while consuming: {partition_errors[:5]}"
    assert not duplicates, f"records delivered twice: {duplicates[:5]}"
    return got


def assert_same_records(got: Records, expected: Records) -> None:
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    assert not missing, f"{len(missing)} of {len(expected)} expected records not consumed, e.g. {missing[:5]}"
    assert not extra, f"{len(extra)} records beyond those expected, e.g. {extra[:5]}"
    differing = [po for po in expected if got[po] != expected[po]]
    assert not differing, (
        f"{len(differing)} records differ, e.g. at {differing[0]}: got {got[differing[0]]!r}, "
        f"want {expected[differing[0]]!r}"
    )


def partition_counts(records: Records) -> dict[int, int]:
    counts = {p: 0 for p in range(PARTITIONS)}
    for p, _ in records:
        counts[p] += 1
    return counts


def watermarks(bootstrap: str, topic: str) -> dict[int, tuple[int, int]]:
    errors: list = []
    consumer = new_consumer(bootstrap, errors)
    try:
        return {
            p: tuple(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False))
            for p in range(PARTITIONS)
        }
    finally:
        consumer.close()


def test_confluent_acks_all_then_consume_from_offset(broker, create_topic):
    topic = "confluent-from-offset"
    create_topic(broker.bootstrap, topic, partitions=PARTITIONS)
    base_ts = int(time.time() * 1000) - 600_000
    records = produce_acked(broker.bootstrap, topic, make_messages(3000, base_ts))
    counts = partition_counts(records)
    assert all(counts.values()), f"some partition got nothing: {counts}"

    assert watermarks(broker.bootstrap, topic) == {p: (0, n) for p, n in counts.items()}

    # From the beginning, and from an offset in the middle of each partition.
    assert_same_records(consume_to_end(broker.bootstrap, topic, {p: OFFSET_BEGINNING for p in counts}), records)
    starts = {p: n // 3 + p for p, n in counts.items()}
    got = consume_to_end(broker.bootstrap, topic, starts)
    assert_same_records(got, {(p, o): r for (p, o), r in records.items() if o >= starts[p]})
    # From the last record, and from the end offset itself (nothing to read).
    assert_same_records(
        consume_to_end(broker.bootstrap, topic, {0: counts[0] - 1, 1: counts[1]}),
        {(0, counts[0] - 1): records[(0, counts[0] - 1)]},
    )


def test_confluent_replay_from_timestamp(broker, create_topic):
    topic = "confluent-from-time"
    create_topic(broker.bootstrap, topic, partitions=PARTITIONS)
    base_ts = int(time.time() * 1000) - 600_000
    n = 3000
    records = produce_acked(broker.bootstrap, topic, make_messages(n, base_ts))
    counts = partition_counts(records)

    def first_offset_at_or_after(p: int, target: int) -> int:
        return min((o for (q, o), r in records.items() if q == p and r[2] >= target), default=-1)

    errors: list = []
    consumer = new_consumer(broker.bootstrap, errors)
    try:
        targets = {"before all": base_ts - 5000, "middle": base_ts + n // 2, "last": base_ts + n - 1,
                   "after all": base_ts + n + 5000}
        answers = {}
        for name, target in targets.items():
            found = consumer.offsets_for_times([TopicPartition(topic, p, target) for p in range(PARTITIONS)], timeout=10)
            answers[name] = {tp.partition: tp.offset for tp in found}
            for tp in found:
                assert tp.error is None, f"offsets_for_times({name}) partition {tp.partition}: {tp.error}"
    finally:
        consumer.close()

    assert answers["before all"] == {p: 0 for p in range(PARTITIONS)}
    assert answers["after all"] == {p: OFFSET_END for p in range(PARTITIONS)}, "no record at/after target: -1 (end)"
    for name in ("middle", "last"):
        want = {p: first_offset_at_or_after(p, targets[name]) for p in range(PARTITIONS)}
        assert answers[name] == want, f"offsets_for_times({name}={targets[name]})"

    # Replay: assign the offsets found for the middle timestamp, read to the end.
    mid = targets["middle"]
    starts = {p: (o if o >= 0 else counts[p]) for p, o in answers["middle"].items()}
    got = consume_to_end(broker.bootstrap, topic, starts)
    assert_same_records(got, {po: r for po, r in records.items() if r[2] >= mid})


def produce_one_per_partition(bootstrap: str, topic: str) -> Records:
    """One record per partition after a restart; returns them by (partition, offset)."""
    reports: list = []
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "message.timeout.ms": 60000})
    ts = int(time.time() * 1000)
    for p in range(PARTITIONS):
        producer.produce(topic, key=b"after-restart", value=b"v%d" % p, partition=p, timestamp=ts,
                         on_delivery=lambda err, msg: reports.append((err, msg)))
    assert producer.flush(90) == 0, "records produced after the restart not delivered"
    producer.close()
    assert all(err is None for err, _ in reports), f"delivery errors after restart: {[e for e, _ in reports if e]}"
    return {(m.partition(), m.offset()): (b"after-restart", b"v%d" % m.partition(), ts, []) for _, m in reports}


def restart_roundtrip(broker, create_topic, wait_for_topic, topic: str, stop_how: str) -> None:
    create_topic(broker.bootstrap, topic, partitions=PARTITIONS)
    base_ts = int(time.time() * 1000) - 600_000
    records = produce_acked(broker.bootstrap, topic, make_messages(5000, base_ts, tag=stop_how))
    # produce_acked returned: every message has its delivery report, the producer is closed.
    if stop_how == "sigterm":
        broker.stop()  # SIGTERM; fails unless the broker exits 0 (Kafka: without needing SIGKILL)
    else:
        broker.kill()  # SIGKILL
    broker.restart()
    wait_for_topic(broker.bootstrap, topic, PARTITIONS)  # Kafka loads its logs after it starts answering

    counts = partition_counts(records)
    assert watermarks(broker.bootstrap, topic) == {p: (0, n) for p, n in counts.items()}, "watermarks after restart"
    assert_same_records(consume_to_end(broker.bootstrap, topic, {p: OFFSET_BEGINNING for p in counts}), records)

    more = produce_one_per_partition(broker.bootstrap, topic)
    assert sorted(more) == [(p, counts[p]) for p in range(PARTITIONS)], (
        f"records produced after the restart landed at {sorted(more)}, want the old end offsets {counts}"
    )
    assert_same_records(
        consume_to_end(broker.bootstrap, topic, {p: OFFSET_BEGINNING for p in counts}), {**records, **more}
    )


def test_confluent_sigterm_between_produce_and_consume_loses_nothing(broker, create_topic, wait_for_topic):
    restart_roundtrip(broker, create_topic, wait_for_topic, "confluent-sigterm", "sigterm")


def test_confluent_sigkill_after_acks_all_loses_nothing_acknowledged(broker, create_topic, wait_for_topic):
    restart_roundtrip(broker, create_topic, wait_for_topic, "confluent-sigkill", "sigkill")


def test_alter_configs_replaces_a_topics_dynamic_configs(broker):
    """librdkafka's AlterConfigs (API 33, confluent-kafka's ``alter_configs``) replaces
    all of a topic's dynamic configs: what it names is set, every other override goes
    back to its default; a value the config refuses changes nothing (as Kafka: run with
    SLUICE_COMPAT_TARGET=kafka to compare)."""
    import warnings

    from confluent_kafka.admin import AdminClient, ConfigResource, ConfigSource, NewTopic

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic("replaced", 1, 1, config={
        "retention.ms": "3600000", "max.message.bytes": "200000"})])["replaced"].result(30)
    resource = ConfigResource("topic", "replaced")

    def overrides() -> dict[str, str]:
        [entries] = [f.result(30) for f in admin.describe_configs([resource]).values()]
        return {name: e.value for name, e in entries.items()
                if e.source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value}

    deadline = time.monotonic() + 20
    while overrides().get("retention.ms") != "3600000" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert overrides() == {"retention.ms": "3600000", "max.message.bytes": "200000"}

    def alter(configs: dict[str, str]) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # alter_configs is the legacy call
            futures = admin.alter_configs([ConfigResource("topic", "replaced", set_config=configs)])
        for future in futures.values():
            future.result(30)

    alter({"segment.bytes": "1048576"})
    deadline = time.monotonic() + 20
    while overrides() != {"segment.bytes": "1048576"} and time.monotonic() < deadline:
        time.sleep(0.1)
    assert overrides() == {"segment.bytes": "1048576"}
    with pytest.raises(KafkaException) as refused:
        alter({"retention.ms": "forever"})
    assert refused.value.args[0].code() == KafkaError.INVALID_CONFIG, refused.value
    assert overrides() == {"segment.bytes": "1048576"}


def test_kafka_transactions_describe_producers(broker):
    """Apache Kafka's `kafka-transactions describe-producers` (DescribeProducers, API 61)
    lists the idempotent producer that wrote to a partition, with its last sequence."""
    import re
    import subprocess

    from conftest import KAFKA_SH

    producer = Producer({"bootstrap.servers": broker.bootstrap, "enable.idempotence": True})
    for i in range(10):
        producer.produce("described", value=f"{i}".encode(), partition=0)
    producer.flush(30)
    done = subprocess.run(
        [str(KAFKA_SH), "run", "org.apache.kafka.tools.TransactionsCommand", "--bootstrap-server",
         broker.bootstrap, "describe-producers", "--topic", "described", "--partition", "0"],
        capture_output=True, timeout=120,
    )
    output = (done.stdout + done.stderr).decode(errors="replace")
    assert done.returncode == 0, output
    header, *rows = [line.split() for line in output.splitlines() if line.strip() and not line.startswith("[")]
    assert header[:4] == ["ProducerId", "ProducerEpoch", "LatestCoordinatorEpoch", "LastSequence"], output
    assert len(rows) == 1, output
    producer_id, epoch, _coordinator_epoch, last_sequence = rows[0][:4]
    assert int(producer_id) >= 0 and int(epoch) >= 0 and last_sequence == "9", output
    assert re.fullmatch(r"\d+", rows[0][4]), output  # LastTimestamp
