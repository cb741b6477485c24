"""Compat: kafka-python (pure-Python client, PyPI) against the broker.

For each codec (gzip, snappy, lz4, zstd): a ``KafkaProducer(compression_type=codec,
acks="all")`` (otherwise kafka-python 3's defaults: idempotent, so InitProducerId too)
sends keyed messages with headers (some without key, some with an empty value) to a
3-partition topic; every send is acknowledged with a (partition, offset), offsets dense
from 0 in send order; a ``KafkaConsumer`` without a group (``group_id=None``, ``assign``
+ ``seek_to_beginning``) then reads back exactly those messages: same partition, offset,
key, value, headers, nothing twice, and its position ends at the end offset. The batches
in the partition logs on disk carry the codec in their attributes: the broker kept the
producer's compression (Kafka's default ``compression.type=producer``), it did not store
the records uncompressed.
"""

from __future__ import annotations

import struct
import time
import warnings
from pathlib import Path

import pytest

with warnings.catch_warnings():
    # kafka-python 3.0.12 loads its protocol schemas with importlib.resources' legacy API.
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

CODECS = {"gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}  # RecordBatch attributes & 0x7
N_MESSAGES = 2000
PARTITIONS = 3


def batch_codecs(data_dir: Path, topic: str, partition: int) -> list[int]:
    """Compression codec of each record batch in the partition's log segments on disk.

    Sluice keeps partition dirs in its data dir, Kafka (kafka.sh) in DATA_DIR/logs.
    """
    dirs = [d / f"{topic}-{partition}" for d in (data_dir, data_dir / "logs")]
    part_dir = next((d for d in dirs if d.is_dir()), None)
    assert part_dir is not None, f"no partition dir among {dirs}"
    codecs = []
    for segment in sorted(part_dir.glob("*.log")):
        data = segment.read_bytes()
        pos = 0
        # baseOffset i64, batchLength i32, partitionLeaderEpoch i32, magic i8, crc u32, attributes i16
        while pos + 23 <= len(data):
            _base, length = struct.unpack_from(">qi", data, pos)
            magic = data[pos + 16]
            if length <= 0 or magic != 2:  # preallocated / zero-filled tail
                break
            (attributes,) = struct.unpack_from(">h", data, pos + 21)
            codecs.append(attributes & 0x7)
            pos += 12 + length
    return codecs


@pytest.mark.parametrize("codec", list(CODECS))
def test_kafka_python_compressed_roundtrip(broker, create_topic, wait_until, codec):
    topic = f"kafka-python-{codec}"
    create_topic(broker.bootstrap, topic, partitions=PARTITIONS)

    producer = KafkaProducer(
        bootstrap_servers=broker.bootstrap,
        compression_type=codec,
        acks="all",
        linger_ms=20,
        batch_size=64 * 1024,
        # Otherwise kafka-python 3's defaults: idempotent producer (InitProducerId), retries.
    )
    try:
        sent = []  # (key, value, headers) in send order
        futures = []
        for i in range(N_MESSAGES):
            key = None if i % 500 == 7 else f"key-{i % 37:02d}".encode()
            value = b"" if i % 500 == 8 else (f"{codec} message {i:05d} ".encode() * (1 + i % 5)) + bytes([i % 256])
            headers = [("seq", str(i).encode()), ("codec", codec.encode())]
            if i % 3 == 0:
                headers.append(("empty", b""))
            sent.append((key, value, headers))
            if key is None:  # keyless: choose the partition, so order within it is known
                futures.append(producer.send(topic, value=value, headers=headers, partition=i % PARTITIONS))
            else:
                futures.append(producer.send(topic, key=key, value=value, headers=headers))
        producer.flush(timeout=60)
        metas = [f.get(timeout=60) for f in futures]
    finally:
        producer.close(timeout=10)

    expected = {}  # (partition, offset) -> (key, value, headers)
    for (key, value, headers), meta in zip(sent, metas):
        assert meta.topic == topic
        assert (meta.partition, meta.offset) not in expected, f"offset handed out twice: {meta}"
        expected[(meta.partition, meta.offset)] = (key, value, headers)
    for p in range(PARTITIONS):
        offsets = sorted(o for (q, o) in expected if q == p)
        assert offsets == list(range(len(offsets))), f"partition {p}: acknowledged offsets not dense from 0"
    # Per-partition produce order == offset order.
    for p in range(PARTITIONS):
        seqs = [int(dict(expected[(p, o)][2])["seq"]) for o in sorted(o for (q, o) in expected if q == p)]
        assert seqs == sorted(seqs), f"partition {p}: offsets not in send order"

    consumer = KafkaConsumer(
        bootstrap_servers=broker.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=200,
    )
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        got = {}
        duplicates = []
        deadline = time.monotonic() + 60
        while len(got) < len(expected) and time.monotonic() < deadline:
            for tp, records in consumer.poll(timeout_ms=500).items():
                for r in records:
                    if (r.partition, r.offset) in got:
                        duplicates.append((r.partition, r.offset))
                    got[(r.partition, r.offset)] = (r.key, r.value, list(r.headers))
        # Nothing beyond what was produced: positions end exactly at the end offsets.
        end_offsets = consumer.end_offsets(tps)
        positions = {tp: consumer.position(tp) for tp in tps}
    finally:
        consumer.close()

    assert not duplicates, f"records delivered twice: {duplicates[:5]}"
    missing = sorted(set(expected) - set(got))
    assert not missing, f"{len(missing)} of {len(expected)} records not consumed within 60s, e.g. {missing[:5]}"
    assert set(got) == set(expected)
    for po, (key, value, headers) in expected.items():
        assert got[po] == (key, value, headers), f"record at partition/offset {po} differs"
    for tp in tps:
        n = sum(1 for (p, _) in expected if p == tp.partition)
        assert end_offsets[tp] == n, f"{tp}: end offset {end_offsets[tp]}, produced {n}"
        assert positions[tp] == n, f"{tp}: consumer position {positions[tp]}, produced {n}"

    # The broker stored the batches compressed with the producer's codec.
    for p in range(PARTITIONS):
        codecs = wait_until(
            lambda: batch_codecs(broker.data_dir, topic, p), timeout=10, message=f"batches of {topic}-{p} on disk"
        )
        assert set(codecs) == {CODECS[codec]}, (
            f"{topic}-{p}: batch codecs on disk {sorted(set(codecs))}, want {CODECS[codec]}"
        )
