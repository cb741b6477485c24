"""Compat: kcat (Debian package kcat, librdkafka inside) against the broker.

- ``-L`` (and ``-L -J``) lists the broker at the address we bootstrapped from and a topic
  created through CreateTopics with its 6 partitions, each led by that broker.
- 100,000 keyed messages produced with ``kcat -P -K : -l FILE`` to a 6-partition topic and
  consumed back with ``kcat -C -e`` from every partition: every message exactly once, each
  key on one partition with its per-key sequence numbers strictly increasing in offset
  order, and each partition's offsets 0, 1, 2, ... without gaps.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from collections import Counter, defaultdict
from pathlib import Path

import pytest

KCAT = shutil.which("kcat")


@pytest.fixture(autouse=True)
def _kcat_installed():
    """kcat is installed by scripts/deps.sh; a missing kcat fails the tests, never skips them."""
    assert KCAT is not None, "kcat not installed: run scripts/deps.sh"


def kcat(*args: str, timeout: float = 120.0, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    """Runs kcat, failing with its stderr when it exits non-zero."""
    done = subprocess.run(
        [KCAT, *args],
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise AssertionError(
            f"kcat {' '.join(args)} exited with {done.returncode}\n"
            f"stderr: {done.stderr.decode(errors='replace')[-4000:]}"
        )
    return done


def test_kcat_metadata_lists_broker_and_topics(broker, create_topic, wait_until):
    topic = "kcat-metadata"
    create_topic(broker.bootstrap, topic, partitions=6)
    host, port = broker.bootstrap.rsplit(":", 1)

    def metadata() -> dict:
        meta = json.loads(kcat("-b", broker.bootstrap, "-L", "-J", timeout=30).stdout)
        topics = {t["topic"]: t for t in meta["topics"]}
        return meta if topic in topics and len(topics[topic]["partitions"]) == 6 else {}

    meta = wait_until(metadata, timeout=30, interval=0.2, message=f"kcat -L -J listing {topic}")
    assert len(meta["brokers"]) == 1, meta["brokers"]
    (b,) = meta["brokers"]
    assert b["name"] == f"{host}:{port}", b
    topics = {t["topic"]: t for t in meta["topics"]}
    listed = topics[topic]
    assert "error" not in listed, listed
    assert sorted(p["partition"] for p in listed["partitions"]) == list(range(6))
    for p in listed["partitions"]:
        assert "error" not in p, p
        assert p["leader"] == b["id"], p
        assert [r["id"] for r in p["replicas"]] == [b["id"]], p
        assert [r["id"] for r in p["isrs"]] == [b["id"]], p

    # The human-readable listing, as people use it.
    text = kcat("-b", broker.bootstrap, "-L", timeout=30).stdout.decode()
    assert " 1 brokers:" in text, text
    assert f"broker {b['id']} at {host}:{port}" in text, text
    assert f'topic "{topic}" with 6 partitions:' in text, text
    for p in range(6):
        assert f"partition {p}, leader {b['id']}, replicas: {b['id']}, isrs: {b['id']}" in text, text

    # -L -t lists just that topic.
    one = json.loads(kcat("-b", broker.bootstrap, "-L", "-J", "-t", topic, timeout=30).stdout)
    assert [t["topic"] for t in one["topics"]] == [topic]
    assert len(one["topics"][0]["partitions"]) == 6


N_MESSAGES = 100_000
N_KEYS = 1000
PARTITIONS = 6


def test_kcat_100k_keyed_messages_exactly_once_in_key_order(broker, create_topic, tmp_path: Path):
    topic = "kcat-keyed"
    create_topic(broker.bootstrap, topic, partitions=PARTITIONS)

    # key-NNNN:key-NNNN#SEQ, keys drawn at random (fixed seed), SEQ counting per key from 0.
    rng = random.Random(20240601)
    keys = [f"key-{k:04d}" for k in range(N_KEYS)]
    next_seq: Counter[str] = Counter()
    produced: list[tuple[str, str]] = []
    for _ in range(N_MESSAGES):
        key = rng.choice(keys)
        produced.append((key, f"{key}#{next_seq[key]}"))
        next_seq[key] += 1
    input_file = tmp_path / "kcat-input.txt"
    input_file.write_text("".join(f"{k}:{v}\n" for k, v in produced))

    kcat(
        "-P", "-b", broker.bootstrap, "-t", topic, "-K", ":", "-l", str(input_file),
        "-X", "acks=all", "-X", "linger.ms=5",
        timeout=180,
    )

    out = kcat(
        "-C", "-b", broker.bootstrap, "-t", topic, "-o", "beginning", "-e", "-q",
        "-f", r"%k:%s:%p:%o\n",
        timeout=180,
    ).stdout.decode()
    lines = out.splitlines()

    consumed: list[tuple[str, str, int, int]] = []
    for line in lines:
        key, value, partition, offset = line.split(":")
        consumed.append((key, value, int(partition), int(offset)))

    # Exactly once: the same multiset of (key, value), no duplicate, nothing missing.
    pairs = Counter((k, v) for k, v, _, _ in consumed)
    duplicates = [kv for kv, n in pairs.items() if n > 1]
    missing = set(produced) - set(pairs)
    unexpected = set(pairs) - set(produced)
    assert not duplicates, f"{len(duplicates)} messages consumed more than once, e.g. {duplicates[:5]}"
    assert not missing, f"{len(missing)} of {N_MESSAGES} messages never consumed, e.g. {sorted(missing)[:5]}"
    assert not unexpected, f"{len(unexpected)} messages nobody produced, e.g. {sorted(unexpected)[:5]}"
    assert len(consumed) == N_MESSAGES

    # Offsets: each (partition, offset) once, every partition dense from 0.
    by_partition: dict[int, list[int]] = defaultdict(list)
    for _, _, p, o in consumed:
        by_partition[p].append(o)
    assert set(by_partition) == set(range(PARTITIONS)), f"partitions used: {sorted(by_partition)}"
    for p, offsets in by_partition.items():
        assert sorted(offsets) == list(range(len(offsets))), (
            f"partition {p}: offsets are not 0..{len(offsets) - 1} each once"
        )

    # Per key: one partition, and sequence numbers strictly increasing in offset order.
    per_key: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
    for k, v, p, o in consumed:
        per_key[k].append((o, int(v.rsplit("#", 1)[1]), p))
    assert set(per_key) == set(next_seq)
    for k, entries in per_key.items():
        partitions = {p for _, _, p in entries}
        assert len(partitions) == 1, f"key {k} spread over partitions {sorted(partitions)}"
        seqs = [seq for _, seq, _ in sorted(entries)]
        assert seqs == list(range(next_seq[k])), (
            f"key {k}: sequence numbers in offset order are not 0..{next_seq[k] - 1}: "
            f"first out of order at index {next(i for i, s in enumerate(seqs) if s != i)}"
        )
