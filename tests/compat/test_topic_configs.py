"""Topic configs and what the broker does with them, checked with real clients against the
broker, and against Apache Kafka 4.4 with SLUICE_COMPAT_TARGET=kafka (same assertions):

- every Kafka 4.4 topic config is described, and values are accepted or refused as Kafka
  accepts or refuses them (IncrementalAlterConfigs with validate_only);
- records refused one by one (KIP-467): keyless records on a compacted topic and
  timestamps out of bounds are named in ``record_errors``, so clients fail exactly those
  records (kafka-python and librdkafka report the others as failed by their batch);
- ``compression.type`` naming a codec: batches in another codec are recompressed, and
  every client reads the records back unchanged.
"""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

from conftest import create_topic

# DescribeConfigs of a new topic on Apache Kafka 4.4.
KAFKA_TOPIC_CONFIGS = {
    "cleanup.policy", "compression.gzip.level", "compression.lz4.level", "compression.type",
    "compression.zstd.level", "delete.retention.ms", "errors.deadletterqueue.group.enable",
    "file.delete.delay.ms", "flush.messages", "flush.ms", "follower.replication.throttled.replicas",
    "index.interval.bytes", "leader.replication.throttled.replicas", "local.retention.bytes",
    "local.retention.ms", "max.compaction.lag.ms", "max.decompressed.message.bytes",
    "max.message.bytes", "message.timestamp.after.max.ms", "message.timestamp.before.max.ms",
    "message.timestamp.type", "min.cleanable.dirty.ratio", "min.compaction.lag.ms",
    "min.insync.replicas", "preallocate", "remote.copy.lag.bytes", "remote.copy.lag.ms",
    "remote.log.copy.disable", "remote.log.delete.on.disable", "remote.storage.enable",
    "retention.bytes", "retention.ms", "segment.bytes", "segment.index.bytes", "segment.jitter.ms",
    "segment.ms", "unclean.leader.election.enable",
}


def _validate(admin: AdminClient, topic: str, name: str, value: str) -> str:
    """"OK", or the broker's refusal, for setting ``name=value`` with validate_only."""
    resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)])
    try:
        for future in admin.incremental_alter_configs([resource], validate_only=True).values():
            future.result(30)
        return "OK"
    except Exception as e:  # the KafkaException carries the broker's error message
        error = e.args[0]
        return f"{error.name()}: {error.str()}"


def test_every_kafka_topic_config_is_described_and_validated_as_kafka(broker):
    topic = f"configs-{uuid.uuid4().hex[:8]}"
    create_topic(broker.bootstrap, topic)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    resource = ConfigResource(ResourceType.TOPIC, topic)
    [entries] = [f.result(30) for f in admin.describe_configs([resource]).values()]
    assert set(entries) == KAFKA_TOPIC_CONFIGS
    assert entries["compression.type"].value == "producer"
    assert entries["min.cleanable.dirty.ratio"].value == "0.5"
    assert entries["delete.retention.ms"].value == "86400000"
    # Kafka 4.4's answers, asked of it with the same calls.
    accepted = [
        ("compression.type", "zstd"), ("compression.type", "uncompressed"),
        ("compression.gzip.level", "-1"), ("compression.zstd.level", "-131072"),
        ("min.cleanable.dirty.ratio", "1"), ("local.retention.ms", "-2"),
        ("follower.replication.throttled.replicas", "0:1,1:2"), ("cleanup.policy", ""),
        ("remote.storage.enable", "false"), ("segment.jitter.ms", "100"),
    ]
    for name, value in accepted:
        assert _validate(admin, topic, name, value) == "OK", (name, value)
    refused = {
        ("compression.type", "none"): "String must be one of: uncompressed, zstd, lz4, snappy, gzip, producer",
        ("compression.gzip.level", "0"): "Value must be between 1 and 9 or equal to -1",
        ("compression.lz4.level", "18"): "Value must be no more than 17",
        ("delete.retention.ms", "-1"): "Value must be at least 0",
        ("min.cleanable.dirty.ratio", "1.1"): "Value must be no more than 1",
        ("max.decompressed.message.bytes", "2147483647"): "Value must be no more than 2147483639",
        ("preallocate", "1"): "Expected value to be either true or false",
        ("follower.replication.throttled.replicas", "x"): "must be the literal '*'",
        ("cleanup.policy", "none"): "String must be one of: compact, delete",
        ("remote.storage.enable", "true"): "Tiered Storage functionality is disabled in the broker",
        ("message.downconversion.enable", "true"): "Unknown topic config name: message.downconversion.enable",
    }
    for (name, value), reason in refused.items():
        answer = _validate(admin, topic, name, value)
        assert answer.startswith("INVALID_CONFIG: ") and reason in answer, (name, value, answer)


def _kafka_python_send(bootstrap: str, topic: str, records: list[tuple]) -> list[str]:
    """Sends ``(key, timestamp_ms)`` records in one batch with kafka-python; per record
    "ok" or the exception's class and message."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=500, retries=0, acks="all")
    try:
        futures = [producer.send(topic, key=key, value=b"v", partition=0, timestamp_ms=ts)
                   for key, ts in records]
        producer.flush(30)
        outcomes = []
        for future in futures:
            try:
                future.get(30)
                outcomes.append("ok")
            except Exception as e:
                outcomes.append(f"{type(e).__name__}: {e}")
        return outcomes
    finally:
        producer.close(10)


def test_records_are_refused_one_by_one(broker):
    """KIP-467 as Kafka 4.4 answers it: the records named fail with their own message, the
    others of the batch with the client's 'part of a batch' error; nothing is stored."""
    topic = f"latest-{uuid.uuid4().hex[:8]}"
    create_topic(broker.bootstrap, topic, config={"cleanup.policy": "compact",
                                                  "message.timestamp.after.max.ms": "60000"})
    now = int(time.time() * 1000)
    outcomes = _kafka_python_send(broker.bootstrap, topic, [
        (b"a", now), (None, now), (b"c", now), (None, now), (b"", now)])
    missing = f"Compacted topic cannot accept message without key in topic partition {topic}-0"
    by_batch = "part of a batch which had one more more invalid records"
    assert [o.startswith("InvalidRecordError") and missing in o for o in outcomes] == [
        False, True, False, True, False], outcomes
    assert all(by_batch in outcomes[i] for i in (0, 2, 4)), outcomes
    # One record an hour ahead: only it is named (kafka-python raises the top-level class
    # for a single named record).
    outcomes = _kafka_python_send(broker.bootstrap, topic, [(b"a", now), (b"b", now + 3_600_000)])
    assert by_batch in outcomes[0], outcomes
    assert outcomes[1].startswith("InvalidTimestampError") and "is out of range" in outcomes[1], outcomes

    # librdkafka (confluent-kafka): 100 records, every tenth without a key, in batches.
    errors: dict[str, int] = {}

    def report(err, _msg) -> None:
        name = err.name() if err else "OK"
        errors[name] = errors.get(name, 0) + 1

    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 500, "acks": "all"})
    for i in range(100):
        producer.produce(topic, key=None if i % 10 == 3 else b"k%d" % i, value=b"v", partition=0,
                         on_delivery=report)
    assert producer.flush(30) == 0
    assert errors.get("INVALID_RECORD") == 10, errors
    assert errors.get("INVALID_RECORD", 0) + errors.get("_INVALID_DIFFERENT_RECORD", 0) == 100, errors
    # Nothing of any refused batch was stored; keyed records alone are.
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    delivered = []
    producer.produce(topic, key=b"k", value=b"v", partition=0,
                     on_delivery=lambda err, msg: delivered.append((err, msg.offset())))
    producer.flush(30)
    assert delivered == [(None, 0)], delivered


def _consume_all(bootstrap: str, topic: str, count: int) -> list[tuple]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{uuid.uuid4().hex[:6]}",
                         "enable.auto.commit": False, "enable.partition.eof": True})
    consumer.assign([TopicPartition(topic, 0, 0)])
    got = []
    deadline = time.monotonic() + 30
    try:
        while len(got) < count and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error() is not None:
                continue
            got.append((message.offset(), message.key(), message.value(), message.headers()))
    finally:
        consumer.close()
    return got


def test_topic_codec_recompresses_and_every_client_reads_it(broker):
    """compression.type=gzip: records produced uncompressed, lz4 and zstd (librdkafka) and
    snappy (kafka-python) are stored in gzip; librdkafka and kafka-python read them back
    exactly, and the idempotent producer's batches are accepted once."""
    topic = f"gzipped-{uuid.uuid4().hex[:8]}"
    create_topic(broker.bootstrap, topic, config={"compression.type": "gzip",
                                                  "compression.gzip.level": "1"})
    expected = []
    for codec in ("none", "lz4", "zstd"):
        producer = Producer({"bootstrap.servers": broker.bootstrap, "compression.type": codec,
                             "enable.idempotence": True, "linger.ms": 50})
        for i in range(20):
            key, value = f"{codec}-{i}".encode(), f"{codec} value {i} ".encode() * 10
            producer.produce(topic, key=key, value=value, partition=0, headers=[("h", codec.encode())])
            expected.append((key, value, [("h", codec.encode())]))
        assert producer.flush(30) == 0
    from kafka import KafkaConsumer, KafkaProducer

    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, compression_type="snappy", linger_ms=50)
    for i in range(20):
        key, value = f"snappy-{i}".encode(), f"snappy value {i} ".encode() * 10
        producer.send(topic, key=key, value=value, partition=0, headers=[("h", b"snappy")])
        expected.append((key, value, [("h", b"snappy")]))
    producer.flush(30)
    producer.close(10)

    got = _consume_all(broker.bootstrap, topic, len(expected))
    assert [offset for offset, *_ in got] == list(range(len(expected)))
    assert [(k, v, h) for _, k, v, h in got] == expected

    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=5000)
    from kafka import TopicPartition as KTopicPartition

    consumer.assign([KTopicPartition(topic, 0)])
    read = [(m.key, m.value) for m in consumer][: len(expected)]
    consumer.close()
    assert read == [(k, v) for k, v, _ in expected]
