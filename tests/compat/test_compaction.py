"""Log compaction checked with real clients, against the broker and against Apache Kafka
4.4 with SLUICE_COMPAT_TARGET=kafka (same assertions):

- the same keyed sequence, with tombstones, produced to a compacted topic whose segments
  roll every 100 ms, is cleaned until reading it from the beginning gives one record per
  live key, and the set of (key, latest value) is exactly the model's;
- kill -9 while the cleaner runs, many times, loses no key's latest acknowledged value.
"""

from __future__ import annotations

import os
import random
import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition

from conftest import create_topic, wait_until

KEYS = 40
ROUNDS = 8
# Deleted by a tombstone in the last round.
DELETED = {f"key-{k}" for k in range(0, KEYS, 7)}


def _read_all(bootstrap: str, topic: str) -> list[tuple[str, bytes | None]]:
    """Every record from the beginning to the end, as (key, value)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"read-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False, "enable.partition.eof": True})
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        records = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            if msg.error():
                if msg.error().name() == "_PARTITION_EOF":
                    return records
                raise AssertionError(msg.error())
            records.append((msg.key().decode(), msg.value()))
        raise AssertionError(f"no end of partition within 30 s ({len(records)} records read)")
    finally:
        consumer.close()


def test_a_compacted_topic_keeps_each_keys_latest_value(broker_factory):
    broker = broker_factory(env={"SLUICE_LOG_CLEANER_BACKOFF_MS": "200"})
    topic = f"compacted-{uuid.uuid4().hex[:8]}"
    create_topic(broker.bootstrap, topic, 1, {
        "cleanup.policy": "compact", "segment.ms": "100", "min.cleanable.dirty.ratio": "0.01",
        "delete.retention.ms": "100", "min.compaction.lag.ms": "0",
    })
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
    model: dict[str, bytes] = {}
    for round_ in range(ROUNDS):
        for k in range(KEYS):
            key, value = f"key-{k}", f"value-{k}-{round_}".encode()
            producer.produce(topic, key=key, value=value)
            model[key] = value
        producer.flush(30)
        time.sleep(0.15)  # past segment.ms: the next append rolls the segment
    for key in DELETED:
        producer.produce(topic, key=key, value=None)
        model.pop(key)
    producer.flush(30)

    def compacted():
        # One more record now and then rolls the segment before it (segment.ms has
        # passed), so that what the model holds is all in sealed, cleanable segments.
        producer.produce(topic, key="marker", value=b"m")
        producer.flush(30)
        records = [(k, v) for k, v in _read_all(broker.bootstrap, topic) if k != "marker"]
        keys = [k for k, _ in records]
        live = {k: v for k, v in records if v is not None}
        done = len(keys) == len(set(keys)) and not set(keys) & DELETED
        return (records, live) if done else None

    records, live = wait_until(compacted, timeout=90, interval=1.0,
                               message="one record per live key, tombstones gone")
    assert live == model
    assert len(records) == KEYS - len(DELETED)


def test_kill_9_while_the_cleaner_runs_loses_no_latest_value(broker_factory, compat_target):
    """kill -9 at random moments while compacted segments are cleaned (they roll every
    100 ms and the cleaner looks every 100 ms), many times: after each restart, every
    key's last record is its last acknowledged value or one sent after it (sent, not yet
    acknowledged when the broker died), offsets ascend, and nothing was lost to a torn
    clean. Bounded: 12 kills on Sluice, 3 on Kafka (its restarts take seconds)."""
    rng = random.Random(int(os.environ.get("COMPACTION_CRASH_SEED", time.time_ns() % 1_000_000)))
    broker = broker_factory(env={"SLUICE_LOG_CLEANER_BACKOFF_MS": "100"})
    topic = f"crashed-{uuid.uuid4().hex[:8]}"
    create_topic(broker.bootstrap, topic, 1, {
        "cleanup.policy": "compact", "segment.ms": "100", "min.cleanable.dirty.ratio": "0.01",
        "delete.retention.ms": "86400000",
    })
    sent: dict[str, list[bytes]] = {}        # every value sent, per key, in order
    acked: dict[str, int] = {}               # index in sent[key] of the last acknowledged
    cycles = 12 if compat_target == "sluice" else 3
    for cycle in range(cycles):
        producer = Producer({"bootstrap.servers": broker.bootstrap, "enable.idempotence": True,
                             "linger.ms": 5, "message.timeout.ms": 20000})

        def delivered(err, msg, key=None, index=None):
            if err is None:
                acked[key] = max(acked.get(key, -1), index)

        deadline = time.monotonic() + rng.uniform(0.5, 2.5)
        seq = 0
        while time.monotonic() < deadline and seq < 5000:
            key = f"key-{rng.randrange(30)}"
            values = sent.setdefault(key, [])
            value = f"{cycle}-{seq}".encode()
            values.append(value)
            producer.produce(topic, key=key, value=value,
                             on_delivery=lambda err, msg, k=key, i=len(values) - 1: delivered(err, msg, k, i))
            seq += 1
            # A few hundred in flight at most: the rest of the time the broker appends,
            # rolls and cleans.
            while len(producer) > 500:
                producer.poll(0.01)
            producer.poll(0)
        producer.poll(0.2)
        broker.kill()
        producer.flush(1)  # fails what was in flight: it stays "sent, not acknowledged"
        broker.restart()
        wait_until(lambda: _read_all(broker.bootstrap, topic) is not None, timeout=60, interval=0.5,
                   message="the restarted broker serves the topic")
        last: dict[str, bytes] = {}
        for key, value in _read_all(broker.bootstrap, topic):
            last[key] = value
        for key, index in acked.items():
            assert key in last, f"cycle {cycle}: {key} lost (last acknowledged {sent[key][index]!r})"
            position = sent[key].index(last[key]) if last[key] in sent[key] else -1
            assert position >= index, (
                f"cycle {cycle}: {key} reads {last[key]!r}, older than its last acknowledged "
                f"{sent[key][index]!r}")
    assert acked, "nothing was acknowledged"
    # And the cleaner still gets through the log: one record per key in the end.
    producer = Producer({"bootstrap.servers": broker.bootstrap})

    def compacted():
        producer.produce(topic, key="marker", value=b"m")  # rolls the segment before it
        producer.flush(30)
        records = [(k, v) for k, v in _read_all(broker.bootstrap, topic) if k != "marker"]
        keys = [k for k, _ in records]
        return dict(records) if len(keys) == len(set(keys)) else None

    last = wait_until(compacted, timeout=90, interval=1.0, message="one record per key")
    for key, index in acked.items():
        assert sent[key].index(last[key]) >= index, key
