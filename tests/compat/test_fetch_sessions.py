"""Fetch sessions (KIP-227) with the clients that use them: kafka-python and the Java
consumer (Kafka 4.4's console consumer) read a many-partition topic while records arrive,
through incremental fetches, and get every record once, in order per partition. Each test
runs against Apache Kafka 4.4 too (SLUICE_COMPAT_TARGET=kafka).
"""

from __future__ import annotations

import subprocess
import time
import urllib.request
import uuid

from confluent_kafka import Producer

from conftest import COMPAT_TARGET, KAFKA_SH, create_topic

PARTITIONS = 24


def _produce(bootstrap: str, topic: str, start: int, count: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    for i in range(start, start + count):
        producer.produce(topic, key=str(i).encode(), value=f"record {i}".encode(), partition=i % PARTITIONS)
    assert producer.flush(30) == 0


def _open_sessions(broker) -> float:
    with urllib.request.urlopen(f"{broker.admin_url}/metrics", timeout=10) as response:
        text = response.read().decode()
    [value] = [float(line.split()[-1]) for line in text.splitlines() if line.startswith("sluice_fetch_sessions ")]
    return value


def test_kafka_python_consumes_through_an_incremental_session(broker):
    from kafka import KafkaConsumer, TopicPartition

    topic = f"sessions-{uuid.uuid4().hex[:8]}"
    create_topic(broker.bootstrap, topic, partitions=PARTITIONS)
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False,
                             auto_offset_reset="earliest", fetch_max_wait_ms=200)
    consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
    seen: dict[int, list[int]] = {}
    total = 0
    # Records arrive in rounds while the consumer polls: every round after the first is
    # read through incremental fetches naming only the partitions that moved.
    for round_number in range(5):
        _produce(broker.bootstrap, topic, round_number * 100, 100)
        deadline = time.monotonic() + 30
        while total < (round_number + 1) * 100 and time.monotonic() < deadline:
            for tp, records in consumer.poll(timeout_ms=200).items():
                for record in records:
                    seen.setdefault(tp.partition, []).append(int(record.key))
                    total += 1
        if COMPAT_TARGET == "sluice" and round_number == 0:
            assert _open_sessions(broker) >= 1, "kafka-python fetched without a session"
    consumer.close()
    assert total == 500
    for partition, keys in seen.items():
        assert keys == sorted(keys) and all(k % PARTITIONS == partition for k in keys), (partition, keys)
    assert sorted(k for keys in seen.values() for k in keys) == list(range(500))


def test_java_console_consumer_reads_through_a_session(broker):
    """The Java consumer opens a session for its 24 partitions; records produced after it
    started reach it through incremental fetches."""
    topic = f"java-sessions-{uuid.uuid4().hex[:8]}"
    create_topic(broker.bootstrap, topic, partitions=PARTITIONS)
    _produce(broker.bootstrap, topic, 0, 100)
    consumer = subprocess.Popen(
        [str(KAFKA_SH), "run", "org.apache.kafka.tools.consumer.ConsoleConsumer", "--bootstrap-server",
         broker.bootstrap, "--topic", topic, "--from-beginning", "--max-messages", "300",
         "--timeout-ms", "60000", "--property", "print.key=true"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Once it fetches through a session, more records arrive in two rounds.
        deadline = time.monotonic() + 60
        if COMPAT_TARGET == "sluice":
            while _open_sessions(broker) < 1 and time.monotonic() < deadline and consumer.poll() is None:
                time.sleep(0.2)
            assert _open_sessions(broker) >= 1, "the Java consumer fetched without a session"
        _produce(broker.bootstrap, topic, 100, 100)
        _produce(broker.bootstrap, topic, 200, 100)
        out, err = consumer.communicate(timeout=120)
    finally:
        if consumer.poll() is None:
            consumer.kill()
            consumer.wait()
    keys = [int(line.split("\t")[0]) for line in out.splitlines() if "\t" in line]
    assert sorted(keys) == list(range(300)), err[-2000:]
