"""Client quotas (DescribeClientQuotas 48, AlterClientQuotas 49, and their enforcement by
throttling, KIP-219), with Kafka 4.4's own kafka-configs and real clients. Each test runs
against Apache Kafka 4.4 too (SLUICE_COMPAT_TARGET=kafka), with the same assertions.
"""

from __future__ import annotations

import subprocess
import threading
import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition

from conftest import KAFKA_SH, create_topic


def configs(bootstrap: str, *args: str, check: bool = True) -> str:
    done = subprocess.run([str(KAFKA_SH), "run", "org.apache.kafka.tools.ConfigCommand", "--bootstrap-server",
                           bootstrap, *args], capture_output=True, timeout=120)
    output = (done.stdout + done.stderr).decode(errors="replace")
    if check:
        assert done.returncode == 0, output
    return output


def test_kafka_configs_sets_describes_and_removes_client_quotas(broker):
    b = broker.bootstrap
    out = configs(b, "--alter", "--entity-type", "clients", "--entity-name", "c1",
                  "--add-config", "producer_byte_rate=1024,consumer_byte_rate=2048")
    assert "Completed updating config for client c1." in out, out
    out = configs(b, "--alter", "--entity-type", "users", "--entity-name", "alice", "--entity-type", "clients",
                  "--entity-default", "--add-config", "request_percentage=50")
    assert "Completed updating config for user alice." in out, out
    out = configs(b, "--describe", "--entity-type", "clients", "--entity-name", "c1")
    assert "Quota configs for client-id 'c1' are consumer_byte_rate=2048.0, producer_byte_rate=1024.0" in out, out
    out = configs(b, "--describe", "--entity-type", "users", "--entity-name", "alice", "--entity-type", "clients")
    assert "request_percentage=50.0" in out, out
    # Kafka's refusals, in its words.
    out = configs(b, "--alter", "--entity-type", "clients", "--entity-name", "c2",
                  "--add-config", "producer_byte_rate=-5", check=False)
    assert "Quota producer_byte_rate must be greater than 0" in out, out
    out = configs(b, "--alter", "--entity-type", "clients", "--entity-name", "c2",
                  "--add-config", "producer_byte_rate=1.5", check=False)
    assert "producer_byte_rate cannot be a fractional value." in out, out
    # Removed: nothing left to describe for c1.
    configs(b, "--alter", "--entity-type", "clients", "--entity-name", "c1",
            "--delete-config", "producer_byte_rate,consumer_byte_rate")
    out = configs(b, "--describe", "--entity-type", "clients", "--entity-name", "c1")
    assert "producer_byte_rate" not in out and "consumer_byte_rate" not in out, out


def _produce_for(bootstrap: str, topic: str, client_id: str, seconds: float, counted_from: float,
                 delivered: dict) -> None:
    """Produces 10 KB records as fast as the client may for ``seconds``; counts the bytes
    delivered after ``counted_from`` seconds."""
    producer = Producer({"bootstrap.servers": bootstrap, "client.id": client_id, "linger.ms": 5,
                         "queue.buffering.max.kbytes": 4096})
    value = b"q" * 10_000
    start = time.monotonic()

    def report(err, msg) -> None:
        # Only what is acknowledged inside the measured span: the final flush may deliver
        # more, later, which is not the rate.
        if err is None and counted_from <= time.monotonic() - start < seconds:
            delivered[client_id] = delivered.get(client_id, 0) + len(msg.value())

    while time.monotonic() - start < seconds:
        try:
            producer.produce(topic, value=value, on_delivery=report)
        except BufferError:
            producer.poll(0.05)
        producer.poll(0)
    producer.flush(30)


# Rates are measured over quota.window.num samples of a second: 3 instead of 11 lets a
# short test see the steady state (a new client may burst for about one window first).
SHORT_WINDOW = {"SLUICE_QUOTA_WINDOW_NUM": "3"}


def test_a_producer_over_its_quota_is_held_near_it_and_others_are_not(broker_factory):
    """Two producers at full speed, one with producer_byte_rate=500 KB/s: measured after a
    warm-up, the throttled one stays near its quota while the other runs many times
    faster."""
    broker = broker_factory(env=SHORT_WINDOW)
    topic = f"quota-{uuid.uuid4().hex[:8]}"
    create_topic(broker.bootstrap, topic, partitions=2)
    quota = 500_000
    configs(broker.bootstrap, "--alter", "--entity-type", "clients", "--entity-name", "throttled",
            "--add-config", f"producer_byte_rate={quota}")
    seconds, warm_up = 12.0, 4.0
    delivered: dict[str, int] = {}
    threads = [threading.Thread(target=_produce_for, args=(broker.bootstrap, topic, cid, seconds, warm_up, delivered))
               for cid in ("throttled", "free")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    measured = seconds - warm_up
    throttled = delivered.get("throttled", 0) / measured
    free = delivered.get("free", 0) / measured
    assert 0.3 * quota <= throttled <= 1.5 * quota, (throttled, free)
    assert free >= 5 * quota, (throttled, free)


def test_a_consumer_over_its_quota_is_held_near_it(broker_factory):
    broker = broker_factory(env=SHORT_WINDOW)
    topic = f"consumed-{uuid.uuid4().hex[:8]}"
    create_topic(broker.bootstrap, topic, partitions=1)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
    for _ in range(2000):
        producer.produce(topic, value=b"c" * 10_000, partition=0)
        producer.poll(0)
    assert producer.flush(60) == 0
    quota = 1_000_000
    configs(broker.bootstrap, "--alter", "--entity-type", "clients", "--entity-name", "slow-reader",
            "--add-config", f"consumer_byte_rate={quota}")
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "quota-readers",
                         "client.id": "slow-reader", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    got, counted = 0, 0
    start = time.monotonic()
    seconds, warm_up = 12.0, 4.0
    try:
        while time.monotonic() - start < seconds:
            message = consumer.poll(0.2)
            if message is not None and message.error() is None:
                got += 1
                if time.monotonic() - start >= warm_up:
                    counted += len(message.value())
    finally:
        consumer.close()
    rate = counted / (seconds - warm_up)
    assert got < 2000, "the quota did not hold the consumer back at all"
    assert 0.3 * quota <= rate <= 1.5 * quota, rate
