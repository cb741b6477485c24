"""Compat: the `sluice` command-line client (docs/cli.md) interoperates with kcat and
confluent-kafka through a real broker (issue 6).

- `sluice produce --file F --key-separator : --header ... --compression C` (C = each codec)
  into a 3-partition topic, read back with `kcat -C -e -J`: the same multiset of (key,
  value, headers) as the input lines, every line exactly once, each key on one partition
  with its lines in input order, each partition's offsets dense from 0. The lines include
  values that contain the separator (split at the first one), an empty key, an empty value,
  lines without a key, JSON-special characters and non-ASCII text; one header has a
  non-ASCII value.
- kcat (`-P -K : -H h=v -z C`) and confluent-kafka (`compression.type=C`, headers, some
  with a null value, keyless records, tombstones, binary keys/values) produce, `sluice
  consume TOPIC --format json` (whole log, stops at its end) reads: the same records, with
  the JSON fields docs/cli.md describes (null for absent, base64 with `*_encoding` for
  bytes that are not UTF-8), each partition read in offset order.
- Partitioner: the same keys produced with `sluice produce` and with confluent-kafka
  `partitioner=murmur2_random` to two 7-partition topics land on the same partition, and
  on the one Java's client picks (`toPositive(murmur2(key)) % 7`, computed here).

Compression is not taken on trust: every batch of the topic is fetched raw (Fetch v4,
see :func:`fetch_batch_codecs`) and must carry the codec the producer was asked for, so a
producer that silently sent uncompressed batches cannot make a codec test pass.

The CLI binary is ``target/release/sluice`` (under ``$CARGO_TARGET_DIR`` if set), or
``$SLUICE_CLI_BIN``; build it with ``cargo build --release --bin sluice``. A missing
binary fails the tests (it is what they test). Tests that need kcat are skipped without
it, as in test_kcat.py (scripts/deps.sh installs it).
"""

from __future__ import annotations

import base64
import json
import os
import random
import shutil
import socket
import struct
import subprocess
from collections import Counter, defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import pytest

from conftest import COMPAT_TARGET

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CLI_BIN = Path(os.environ.get("CARGO_TARGET_DIR", REPO_ROOT / "target")) / "release" / "sluice"
KCAT = shutil.which("kcat")
def needs_kcat(test):
    """kcat is installed by scripts/deps.sh; a missing kcat fails the test, never skips it."""
    def check():
        assert KCAT is not None, "kcat not installed: run scripts/deps.sh"
    import functools
    @functools.wraps(test)
    def wrapper(*args, **kwargs):
        check()
        return test(*args, **kwargs)
    return wrapper

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
# Record batch attributes, bits 0-2 (Kafka protocol): the codec of the batch.
CODEC_IDS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}

# A record as compared across tools: key, value, headers (name, value) in record order.
# Keys, values and header values are bytes, or None when absent (null).
Rec = tuple[Optional[bytes], Optional[bytes], tuple[tuple[str, Optional[bytes]], ...]]


# -- running the tools ------------------------------------------------------------------------


@pytest.fixture
def sluice_cli() -> Path:
    """The `sluice` binary; fails (never skips) the test when it is not there."""
    path = Path(os.environ.get("SLUICE_CLI_BIN", str(DEFAULT_CLI_BIN)))
    if not path.is_file() or not os.access(path, os.X_OK):
        pytest.fail(
            f"sluice CLI binary not found or not executable: {path}\n"
            "build it with `cargo build --release --bin sluice`, or point SLUICE_CLI_BIN at one",
            pytrace=False,
        )
    return path


def run(
    argv: list[Any], what: str, stdin: Optional[bytes] = None, timeout: float = 60.0
) -> subprocess.CompletedProcess:
    """Runs a command, failing with its exit code and stderr when it exits non-zero."""
    done = subprocess.run(
        [str(a) for a in argv],
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise AssertionError(
            f"{what} exited with {done.returncode}: {' '.join(map(str, argv))}\n"
            f"stderr: {done.stderr.decode(errors='replace')[-4000:]}"
        )
    return done


def kcat_read_all(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    """Every record of ``topic`` (all partitions, from the beginning to the end) as kcat's
    JSON envelopes: topic, partition, offset, key, payload, headers [k1, v1, k2, v2, ...]."""
    assert KCAT is not None
    out = run(
        [KCAT, "-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-q", "-J"],
        "kcat -C",
    ).stdout.decode()
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def sluice_consume_all(cli: Path, bootstrap: str, topic: str) -> list[dict[str, Any]]:
    """`sluice consume TOPIC --format json`: the whole log, one JSON object per line."""
    out = run([cli, "--bootstrap", bootstrap, "consume", topic, "--format", "json"], "sluice consume").stdout
    return [json.loads(line) for line in out.decode().splitlines() if line.strip()]


def from_sluice_json(obj: dict[str, Any]) -> Rec:
    """A `sluice consume --format json` object as a :data:`Rec` (checks its documented shape)."""

    def field(text: Optional[str], encoding: Optional[str], where: str) -> Optional[bytes]:
        if text is None:
            assert encoding is None, f"{where}: null with an encoding: {obj}"
            return None
        if encoding is None:
            return text.encode()
        assert encoding == "base64", f"{where}: unknown encoding {encoding!r}: {obj}"
        raw = base64.b64decode(text, validate=True)
        # base64 is only for bytes that are not UTF-8 (docs/cli.md).
        try:
            raw.decode()
        except UnicodeDecodeError:
            return raw
        raise AssertionError(f"{where}: valid UTF-8 {raw!r} given as base64: {obj}")

    expected_fields = {"topic", "partition", "offset", "timestamp", "timestamp_ms", "key", "value", "headers"}
    extra = set(obj) - expected_fields - {"key_encoding", "value_encoding"}
    assert expected_fields <= set(obj) and not extra, f"unexpected JSON fields: {obj}"
    ms = obj["timestamp_ms"]
    rfc3339 = datetime.fromtimestamp(ms // 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}Z"
    assert obj["timestamp"] == rfc3339, f"timestamp {obj['timestamp']!r} is not timestamp_ms {ms}: {obj}"
    headers = []
    for h in obj["headers"]:
        assert set(h) <= {"key", "value", "value_encoding"}, f"header fields: {h} in {obj}"
        headers.append((h["key"], field(h["value"], h.get("value_encoding"), "header value")))
    return (
        field(obj["key"], obj.get("key_encoding"), "key"),
        field(obj["value"], obj.get("value_encoding"), "value"),
        tuple(headers),
    )


def from_kcat_json(obj: dict[str, Any]) -> Rec:
    """A kcat ``-J`` envelope as a :data:`Rec` (kcat writes text as is: UTF-8 data only)."""
    flat = obj.get("headers") or []
    assert len(flat) % 2 == 0, f"kcat headers are name, value pairs: {obj}"
    headers = tuple(
        (flat[i], None if flat[i + 1] is None else flat[i + 1].encode()) for i in range(0, len(flat), 2)
    )
    key = obj.get("key")
    payload = obj.get("payload")
    return (None if key is None else key.encode(), None if payload is None else payload.encode(), headers)


# -- checks shared by the tests ----------------------------------------------------------------


def assert_same_records(got: list[Rec], expected: list[Rec], who: str) -> None:
    """Same multiset: nothing missing, nothing extra, nothing twice."""
    got_c, exp_c = Counter(got), Counter(expected)
    missing = exp_c - got_c
    extra = got_c - exp_c
    assert not missing and not extra, (
        f"{who}: {len(got)} records read, {len(expected)} produced; "
        f"{sum(missing.values())} missing, e.g. {list(missing)[:3]}; "
        f"{sum(extra.values())} unexpected, e.g. {list(extra)[:3]}"
    )


def assert_log_shape(placed: list[tuple[int, int, Rec]], partitions: int, who: str) -> dict[bytes, int]:
    """``placed`` = (partition, offset, record) in the order a reader printed them. Checks
    that each partition was printed in offset order, dense from 0, that each key is on one
    partition, and that a key's records are in the order produced (values end with
    ``#SEQ``, SEQ increasing per key). Returns key -> partition."""
    by_partition: dict[int, list[int]] = defaultdict(list)
    for p, o, _ in placed:
        assert 0 <= p < partitions, f"{who}: partition {p} of a {partitions}-partition topic"
        by_partition[p].append(o)
    for p, offsets in by_partition.items():
        assert offsets == list(range(len(offsets))), (
            f"{who}: partition {p} offsets are not 0, 1, 2, ... in the order read: {offsets[:20]}..."
        )
    key_partition: dict[bytes, int] = {}
    last_seq: dict[bytes, int] = {}
    for p, _, (key, value, _) in sorted(placed, key=lambda t: (t[0], t[1])):
        if key is None:
            continue
        assert key_partition.setdefault(key, p) == p, (
            f"{who}: key {key!r} on partitions {key_partition[key]} and {p}"
        )
        if value is not None and b"#" in value:
            seq = int(value.rsplit(b"#", 1)[1])
            assert seq > last_seq.get(key, -1), f"{who}: key {key!r}: #{seq} after #{last_seq[key]}"
            last_seq[key] = seq
    return key_partition


# -- raw Fetch, to see each batch's codec ------------------------------------------------------


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        buf += chunk
    return bytes(buf)


def fetch_batch_codecs(bootstrap: str, topic: str, partitions: int) -> Counter:
    """Reads every record batch of ``topic`` with raw Fetch v4 requests (single broker:
    it leads every partition) and counts the codecs (attributes & 7) of the batches.
    Fetch v4 is the oldest version Kafka 4 accepts, and the one without tagged fields."""
    host, port = bootstrap.rsplit(":", 1)
    codecs: Counter = Counter()
    name_by_id = {v: k for k, v in CODEC_IDS.items()}
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        correlation = 0
        for partition in range(partitions):
            offset, high_watermark = 0, None
            while high_watermark is None or offset < high_watermark:
                correlation += 1
                t = topic.encode()
                client_id = b"cli-interop"
                body = (
                    struct.pack(">hhih", 1, 4, correlation, len(client_id)) + client_id
                    + struct.pack(">iiiib", -1, 100, 1, 16 << 20, 0)
                    + struct.pack(">ih", 1, len(t)) + t
                    + struct.pack(">iiqi", 1, partition, offset, 16 << 20)
                )
                sock.sendall(struct.pack(">i", len(body)) + body)
                (size,) = struct.unpack(">i", _recv_exact(sock, 4))
                resp = _recv_exact(sock, size)
                corr, _throttle, n_topics = struct.unpack_from(">iii", resp, 0)
                assert corr == correlation and n_topics == 1, (corr, n_topics)
                pos = 12
                (tlen,) = struct.unpack_from(">h", resp, pos)
                pos += 2 + tlen
                (n_parts,) = struct.unpack_from(">i", resp, pos)
                assert n_parts == 1
                pidx, error, high_watermark, _lso, n_aborted = struct.unpack_from(">ihqqi", resp, pos + 4)
                pos += 4 + 4 + 2 + 8 + 8 + 4 + max(n_aborted, 0) * 16
                assert pidx == partition and error == 0, f"Fetch {topic}/{partition}@{offset}: error {error}"
                (rlen,) = struct.unpack_from(">i", resp, pos)
                records = resp[pos + 4 : pos + 4 + max(rlen, 0)]
                progressed = False
                i = 0
                while i + 12 <= len(records):  # a partial batch may end the data: stop there
                    base, blen = struct.unpack_from(">qi", records, i)
                    if i + 12 + blen > len(records):
                        break
                    magic = records[i + 16]
                    assert magic == 2, f"{topic}/{partition}: batch at {base} has magic {magic}"
                    (attributes,) = struct.unpack_from(">h", records, i + 21)
                    (last_delta,) = struct.unpack_from(">i", records, i + 23)
                    codecs[name_by_id.get(attributes & 7, f"unknown-{attributes & 7}")] += 1
                    offset = max(offset, base + last_delta + 1)
                    progressed = True
                    i += 12 + blen
                assert progressed or offset >= high_watermark, (
                    f"Fetch {topic}/{partition}@{offset} returned no whole batch (hw {high_watermark})"
                )
    return codecs


class CodecNotApplied(AssertionError):
    """The batches stored are not compressed with the codec the producer was given."""


def assert_codec(bootstrap: str, topic: str, partitions: int, codec: str) -> None:
    codecs = fetch_batch_codecs(bootstrap, topic, partitions)
    if not codecs or set(codecs) != {codec}:
        raise CodecNotApplied(f"{topic}: batches by codec {dict(codecs)}, expected all {codec}")


# -- Java's partitioner, for the partitioner test --------------------------------------------


def murmur2(data: bytes) -> int:
    """Kafka's ``Utils.murmur2`` (signed 32-bit result, as Java returns it)."""
    m, mask = 0x5BD1E995, 0xFFFFFFFF
    length = len(data)
    h = (0x9747B28C ^ length) & mask
    for i in range(0, length - length % 4, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * m) & mask
        k ^= k >> 24
        k = (k * m) & mask
        h = ((h * m) & mask) ^ k
    tail = length & ~3
    extra = length % 4
    if extra == 3:
        h ^= data[tail + 2] << 16
    if extra >= 2:
        h ^= data[tail + 1] << 8
    if extra >= 1:
        h ^= data[tail]
        h = (h * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def java_partition(key: bytes, partitions: int) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % partitions


# -- 1. sluice produce -> kcat ------------------------------------------------------------------

CLI_HEADERS = [("source", "sluice-cli"), ("note", "naïve café ☕ 日本語 — ünï")]


def cli_input_lines() -> list[tuple[Optional[str], str]]:
    """~500 (key, value) lines for `sluice produce --key-separator :`; key None = no ':'.
    Values end with #SEQ (per key) so that the order per key can be checked."""
    keys = [f"user-{i}" for i in range(30)] + ["ünïcödé", "ключ", "键", "emoji-🚀", "a b c", ""]
    rng = random.Random(6)
    lines: list[tuple[Optional[str], str]] = []
    seq: Counter = Counter()
    for i in range(492):
        key = keys[i] if i < len(keys) else rng.choice(keys)  # every key at least once
        kind = i % 6
        body = [
            f"plain value {i}",
            f"has:colons:in:value {i}",  # split at the first ':' only
            'json {"q": "quoted \\"x\\"", "path": "C:\\\\dir"} ' + str(i),
            f"ünïcödé välüe 日本 {i}",
            f"tab\tseparated {i}",
            "",
        ][kind]
        lines.append((key, f"{body}#{seq[key]}"))
        seq[key] += 1
    lines += [(None, "no separator here"), (None, "")]  # sent without a key
    lines += [("empty-value", ""), ("only-key-x", "")]  # key, empty value
    lines += [(None, "no key #x"), ("after", "last line#0")]
    return lines


@needs_kcat
@pytest.mark.parametrize("codec", CODECS)
def test_sluice_produce_is_read_by_kcat(broker, create_topic, sluice_cli, tmp_path, codec):
    topic = f"cli-to-kcat-{codec}"
    create_topic(broker.bootstrap, topic, partitions=3)
    lines = cli_input_lines()
    input_file = tmp_path / "input.txt"
    input_file.write_bytes(b"".join((v if k is None else f"{k}:{v}").encode() + b"\n" for k, v in lines))

    argv = [sluice_cli, "--bootstrap", broker.bootstrap, "produce", topic, "--file", input_file,
            "--key-separator", ":", "--compression", codec]
    for name, value in CLI_HEADERS:
        argv += ["--header", f"{name}={value}"]
    done = run(argv, "sluice produce")
    summary = done.stderr.decode(errors="replace")
    assert f"produced {len(lines)} record(s)" in summary, summary

    headers = tuple((n, v.encode()) for n, v in CLI_HEADERS)
    expected = [(None if k is None else k.encode(), v.encode(), headers) for k, v in lines]
    envelopes = kcat_read_all(broker.bootstrap, topic)
    assert all(e["topic"] == topic for e in envelopes)
    got = [from_kcat_json(e) for e in envelopes]
    assert_same_records(got, expected, f"kcat reading sluice produce --compression {codec}")
    key_partition = assert_log_shape(
        [(e["partition"], e["offset"], r) for e, r in zip(envelopes, got)], 3, "kcat -J"
    )
    assert len(set(key_partition.values())) > 1, f"all keys on one partition: {key_partition}"
    assert_codec(broker.bootstrap, topic, 3, codec)


# -- 2. kcat / confluent-kafka produce -> sluice consume --------------------------------------

PRODUCER_HEADERS = [("h", "v"), ("trace", "ïd-☃")]


def keyed_lines(n: int) -> list[tuple[str, str]]:
    """(key, value) text pairs, compressible values ending with #SEQ per key."""
    keys = [f"k{i}" for i in range(13)] + ["ключ", "clé"]
    seq: Counter = Counter()
    out = []
    for i in range(n):
        key = keys[i % len(keys)]
        out.append((key, f"value {i} with:colon " + "abcdefgh" * (i % 40) + f"#{seq[key]}"))
        seq[key] += 1
    return out


# kcat's librdkafka 2.0.2 compresses with gzip/snappy/lz4 only if the broker lists Produce
# v0 (librdkafka#4956); Sluice lists it as Kafka 4.x does (KAFKA-18659), so the stored
# batches must carry the codec.


@needs_kcat
@pytest.mark.parametrize(
    "codec", CODECS
)
def test_kcat_produce_is_read_by_sluice_consume(broker, create_topic, sluice_cli, codec):
    assert KCAT is not None
    topic = f"kcat-to-cli-{codec}"
    create_topic(broker.bootstrap, topic, partitions=3)
    lines = keyed_lines(400)
    argv = [KCAT, "-P", "-b", broker.bootstrap, "-t", topic, "-K", ":", "-z", codec,
            "-X", "acks=all", "-X", "linger.ms=20"]
    for name, value in PRODUCER_HEADERS:
        argv += ["-H", f"{name}={value}"]
    run(argv, "kcat -P", stdin="".join(f"{k}:{v}\n" for k, v in lines).encode())

    headers = tuple((n, v.encode()) for n, v in PRODUCER_HEADERS)
    expected = [(k.encode(), v.encode(), headers) for k, v in lines]
    objs = sluice_consume_all(sluice_cli, broker.bootstrap, topic)
    assert all(o["topic"] == topic for o in objs)
    got = [from_sluice_json(o) for o in objs]
    assert_same_records(got, expected, f"sluice consume reading kcat -z {codec}")
    assert_log_shape([(o["partition"], o["offset"], r) for o, r in zip(objs, got)], 3, "sluice consume")
    assert_codec(broker.bootstrap, topic, 3, codec)


def confluent_records() -> list[Rec]:
    """Keyed text records plus the edges: no key, null value, null / binary header values,
    binary (non-UTF-8) keys and values, an empty key and an empty value."""
    recs: list[Rec] = []
    for k, v in keyed_lines(300):
        recs.append((k.encode(), v.encode(), (("h", b"v"), ("trace", "ïd-☃".encode()))))
    recs += [
        (None, b"keyless#0", (("h", b"v"),)),
        (b"tomb", None, (("h", b"v"),)),  # tombstone
        (b"null-header", b"x#0", (("h", None), ("h", b"again"))),  # repeated name, null value
        (b"\xff\xfebin", b"\x00\x01\x02\xff", (("bin", b"\xc3\x28"),)),
        (b"", b"", ()),
        (b"no-headers", b"plain#0", ()),
    ]
    return recs


@pytest.mark.parametrize("codec", CODECS)
def test_confluent_produce_is_read_by_sluice_consume(broker, create_topic, sluice_cli, codec):
    from confluent_kafka import Producer

    topic = f"confluent-to-cli-{codec}"
    create_topic(broker.bootstrap, topic, partitions=3)
    expected = confluent_records()
    producer = Producer({
        "bootstrap.servers": broker.bootstrap,
        "compression.type": codec,
        "acks": "all",
        "linger.ms": 20,
    })
    errors: list[Any] = []
    delivered: dict[tuple[int, int], Rec] = {}

    def report(record: Rec):
        def on_delivery(err, msg) -> None:
            if err:
                errors.append(err)
            else:
                delivered[(msg.partition(), msg.offset())] = record

        return on_delivery

    for record in expected:
        key, value, headers = record
        producer.produce(topic, key=key, value=value, headers=list(headers), on_delivery=report(record))
    assert producer.flush(30) == 0, "confluent-kafka: records still undelivered after 30 s"
    assert not errors, f"delivery errors: {errors[:5]}"
    assert len(delivered) == len(expected), "two delivery reports with the same partition and offset"

    objs = sluice_consume_all(sluice_cli, broker.bootstrap, topic)
    assert all(o["topic"] == topic for o in objs)
    got = [from_sluice_json(o) for o in objs]
    assert_same_records(got, expected, f"sluice consume reading confluent-kafka compression.type={codec}")
    assert_log_shape([(o["partition"], o["offset"], r) for o, r in zip(objs, got)], 3, "sluice consume")
    # Each record printed with the partition and offset the broker acknowledged for it.
    printed = {(o["partition"], o["offset"]): r for o, r in zip(objs, got)}
    wrong = {po: (printed.get(po), rec) for po, rec in delivered.items() if printed.get(po) != rec}
    assert not wrong, f"{len(wrong)} records printed at another partition/offset, e.g. {list(wrong.items())[:3]}"
    assert_codec(broker.bootstrap, topic, 3, codec)


# -- 3. partitioner agreement -------------------------------------------------------------------


def test_sluice_and_confluent_murmur2_random_pick_the_same_partitions(
    broker, create_topic, sluice_cli, tmp_path
):
    from confluent_kafka import Producer

    # The oracle against values Kafka's Java client computed (client/src/producer/partitioner.rs).
    for key, java_hash in [("", 275646681), ("a", -1563381124), ("hello", 2132663229),
                           ("ünïcödé", 201421315), ("abcd", -1323649548), ("order:12345", -408361232)]:
        assert murmur2(key.encode()) == java_hash, key

    partitions = 7
    # Lengths 1..40 cover every murmur2 tail length; plus non-ASCII keys and the empty key
    # (hashed like any other: it is not a missing key).
    keys = [f"key-{i}" for i in range(200)] + ["x" * n for n in range(1, 41)]
    keys += ["ünïcödé", "ключ-1", "键-2", "emoji-🚀", "a b c", "UPPER", "0", "1", "42", ""]
    cli_topic, ck_topic = "partitioner-sluice-cli", "partitioner-confluent"
    create_topic(broker.bootstrap, cli_topic, partitions=partitions)
    create_topic(broker.bootstrap, ck_topic, partitions=partitions)

    input_file = tmp_path / "keys.txt"
    input_file.write_text("".join(f"{k}:v-{k}\n" for k in keys), encoding="utf-8")
    run([sluice_cli, "--bootstrap", broker.bootstrap, "produce", cli_topic, "--file", input_file,
         "--key-separator", ":"], "sluice produce")

    producer = Producer({"bootstrap.servers": broker.bootstrap, "partitioner": "murmur2_random",
                         "acks": "all", "linger.ms": 20})
    errors: list[Any] = []
    for k in keys:
        producer.produce(ck_topic, key=k.encode(), value=f"v-{k}".encode(),
                         on_delivery=lambda err, msg: err and errors.append(err))
    assert producer.flush(30) == 0 and not errors, f"confluent-kafka delivery: {errors[:5]}"

    def placement(topic: str, read) -> dict[str, int]:
        where: dict[str, int] = {}
        for key, partition in read(topic):
            assert where.setdefault(key, partition) == partition, f"{topic}: {key!r} on two partitions"
        assert sorted(where) == sorted(keys), f"{topic}: keys read differ from keys produced"
        return where

    def read_with_confluent(topic: str):
        from confluent_kafka import Consumer, KafkaError, TopicPartition

        consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "interop-reader",
                             "enable.auto.commit": False, "enable.partition.eof": True})
        try:
            consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
            out, at_eof = [], set()
            while len(at_eof) < partitions:
                msg = consumer.poll(10)
                assert msg is not None, f"{topic}: nothing from the consumer for 10 s"
                if msg.error():
                    assert msg.error().code() == KafkaError._PARTITION_EOF, msg.error()
                    at_eof.add(msg.partition())
                    continue
                assert msg.key() is not None, f"{topic}: no key at {msg.partition()}/{msg.offset()}"
                out.append((msg.key().decode(), msg.partition()))
            return out
        finally:
            consumer.close()

    by_cli = placement(cli_topic, read_with_confluent)
    by_confluent = placement(ck_topic, read_with_confluent)
    java = {k: java_partition(k.encode(), partitions) for k in keys}
    differ = {
        k: (by_cli[k], by_confluent[k], java[k]) for k in keys if not by_cli[k] == by_confluent[k] == java[k]
    }
    assert not differ, (
        f"{len(differ)} of {len(keys)} keys placed differently (sluice produce, confluent murmur2_random, "
        f"Java formula): {dict(list(differ.items())[:10])}"
    )
    assert len(set(java.values())) == partitions
