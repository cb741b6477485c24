#!/usr/bin/env python3
"""Crash torture: acknowledged records survive kill -9 and torn writes, exactly once, in order.

The broker runs as a child process behind a small TCP proxy (it advertises the proxy's
address, so every client connection goes through it). A loop of CYCLES cycles on one data
directory:
  producers write keyed records with unique ids (confluent-kafka, enable.idempotence=true, and
  the Sluice client's idempotent producer, bench/src/bin/sluice-torture-producer.rs;
  acks=all) and record every acknowledgement -> sometimes the proxy drops the next Produce
  answer on every connection and cuts it (appended batches whose acknowledgement is lost:
  the producers retry them, and the broker must recognise the retries) -> after a random
  moment, SIGKILL the broker and wait until the producers have seen every answer it sent ->
  sometimes damage the tail of a random active segment the way a torn write would (cut
  inside the last batch when none of its records was acknowledged, or append zeros or
  random bytes) -> restart on the same port; the producers reconnect and retry on their own.
At the end every partition is read from the beginning and checked:
  - every acknowledged record is present (lost = 0),
  - no record appears twice (duplicated = 0),
  - within each key, the records of each producer appear in the order they were
    acknowledged (out of order = 0),
  - every batch in every segment file passes its CRC-32C, and nothing follows the last
    whole batch after the clean stop (bad crc = 0),
  - offsets are contiguous from the log start (offset gaps = 0),
  - no delivery failed and no producer hit a fatal error (failed = fatal = 0),
  - every start logged its recovery line, and a start after damage a truncation
    (recovery log = 0).
Prints one summary line and exits non-zero on any non-zero count. docs/durability.md
describes the harness and keeps its last results.

Usage: torture.py [--cycles N] [--seed S] [--producers N] [--rate R] [--max-run S]
                  [--broker PATH] [--work-dir DIR]
Environment: SLUICE_LOG_FLUSH_POLICY (and any SLUICE_*) reaches the broker; RUST_LOG too.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import crc32c as crc32c_lib
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

REPO = Path(__file__).resolve().parents[2]
TOPIC = "torture"
PARTITIONS = 3
KEYS = 40
LISTENING = re.compile(r"listening on (\S+):(\d+)")
RECOVERED = re.compile(r"recovered (\d+) partitions in (\d+) ms \(([a-z ]+)\)")
TRUNCATED = "recovery truncated partition"
DEDUPLICATED = "duplicate batch from an idempotent producer"


# ---------------------------------------------------------------- broker process


class Broker:
    """The broker as a child process; restarts keep the port so producers reconnect."""

    def __init__(self, binary: Path, data_dir: Path, log_dir: Path, advertised: str | None = None):
        self.binary = binary
        self.data_dir = data_dir
        self.log_dir = log_dir
        self.advertised = advertised
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self, timeout: float = 60.0) -> None:
        self.starts += 1
        stderr = open(self.log_dir / f"broker-{self.starts}.stderr.log", "wb")
        command = [str(self.binary), "--listen", f"127.0.0.1:{self.port}", "--data-dir", str(self.data_dir)]
        if self.advertised:
            command += ["--advertised-listener", self.advertised]
        self.proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=stderr,
            # Debug for produce: one line per retried batch the broker recognised.
            env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "info,sluice_broker::handlers::produce=debug")},
        )
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline().decode(errors="replace")
            if not line:
                raise RuntimeError(f"broker exited during start-up (code {self.proc.wait()}); see {stderr.name}")
            match = LISTENING.search(line)
            if match:
                self.port = int(match.group(2))
                return
        raise RuntimeError("broker did not print its listening line in time")

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> int:
        if not self.proc or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)


# ---------------------------------------------------------------- network


class Proxy:
    """A TCP proxy between the clients and the broker that loses produce answers on demand.

    The broker advertises the proxy's address, so every client connection goes through
    it. `lose_answers()` arms every open connection: the next Produce response the broker
    sends on it is dropped and the connection cut, so a batch the broker has appended
    never gets its acknowledgement. The producer retries it, which is exactly the case
    idempotence exists for: the broker must recognise the retry and answer it with the
    original offsets. (Cutting connections at a random moment almost never finds an
    answer on its way: a loopback broker answers in microseconds.)

    The proxy reads the Kafka framing (a 4-byte size before every request and response)
    only to match responses to requests by correlation id; bytes are passed on unchanged.
    """

    PRODUCE = 0  # api key
    # Seconds during which connections (open or newly opened) are armed: long enough for
    # producers that are still reconnecting after a restart to come back and lose one.
    ARMED_FOR = 1.0

    def __init__(self):
        self.upstream_port = 0
        self.lock = threading.Lock()
        self.pairs: list[tuple[socket.socket, socket.socket]] = []
        self.armed: set[tuple[socket.socket, socket.socket]] = set()
        self.armed_until = 0.0  # connections opened before this time are armed too
        self.answers_lost = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self.accept_loop, daemon=True, name="proxy").start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def accept_loop(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=2)
                upstream.settimeout(None)
            except OSError:
                client.close()  # the broker is down: the client sees its connection close
                continue
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            pair = (client, upstream)
            with self.lock:
                self.pairs.append(pair)
                if time.monotonic() < self.armed_until:
                    self.armed.add(pair)
            apis: dict[int, int] = {}  # correlation id -> api key of the requests in flight
            # The second pump to finish closes both sockets: closing one while the other
            # pump may still be inside recv() on it could hand its descriptor to a new
            # connection.
            done = threading.Semaphore(0)
            threading.Thread(target=self.pump, args=(pair, client, upstream, apis, False, done), daemon=True).start()
            threading.Thread(target=self.pump, args=(pair, upstream, client, apis, True, done), daemon=True).start()

    def pump(self, pair, source: socket.socket, sink: socket.socket, apis: dict[int, int], answers: bool,
             done: threading.Semaphore) -> None:
        buffer = bytearray()
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                buffer += data
                whole = 0  # bytes of complete frames at the front of the buffer
                drop = False
                while len(buffer) - whole >= 4:
                    size = int.from_bytes(buffer[whole:whole + 4], "big", signed=True)
                    if len(buffer) - whole < 4 + size:
                        break
                    frame = bytes(buffer[whole + 4:whole + 4 + min(size, 8)])
                    if answers and len(frame) >= 4:
                        # Response header: correlation id.
                        correlation = int.from_bytes(frame[0:4], "big", signed=True)
                        if apis.pop(correlation, None) == self.PRODUCE and pair in self.armed:
                            drop = True
                            break
                    elif len(frame) >= 8:
                        # Request header: api key, api version, correlation id.
                        api_key = int.from_bytes(frame[0:2], "big", signed=True)
                        correlation = int.from_bytes(frame[4:8], "big", signed=True)
                        apis[correlation] = api_key
                    whole += 4 + max(size, 0)
                if whole:
                    sink.sendall(buffer[:whole])
                    del buffer[:whole]
                if drop:
                    with self.lock:
                        self.armed.discard(pair)
                        self.answers_lost += 1
                    break  # the answer and whatever follows it are dropped; cut below
        except OSError:
            pass
        self.cut(pair)
        if done.acquire(blocking=False):
            with self.lock:
                if pair in self.pairs:
                    self.pairs.remove(pair)
                self.armed.discard(pair)
            for sock in pair:
                sock.close()
        else:
            done.release()

    @staticmethod
    def cut(pair) -> None:
        # Either side closing ends both directions, as a dead broker or client would.
        for sock in pair:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def lose_answers(self) -> None:
        """Arms every connection open now or opened in the next ARMED_FOR seconds (see
        the class docs); one that carries no Produce answer by then is left alone."""
        with self.lock:
            self.armed.update(self.pairs)
            self.armed_until = time.monotonic() + self.ARMED_FOR

        def disarm() -> None:
            with self.lock:
                if time.monotonic() >= self.armed_until:
                    self.armed.clear()

        timer = threading.Timer(self.ARMED_FOR, disarm)
        timer.daemon = True
        timer.start()


# ---------------------------------------------------------------- producers


class Acks:
    """Every acknowledgement, shared by the producer threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.acked: dict[str, tuple[int, int]] = {}  # record id -> (partition, offset)
        # (producer, key) -> ids in ack order. Order is only promised per producer: two
        # producers' callbacks run on their own threads, so their interleaving in ack
        # order says nothing about the order their records were appended in.
        self.order: dict[tuple[str, str], list[str]] = defaultdict(list)
        self.failed: list[str] = []
        self.fatal: list[str] = []
        self.cut: set[str] = set()  # records in batches the harness cut (never acknowledged then)

    def callback(self, err, msg) -> None:
        record_id = msg.value().decode()
        with self.lock:
            if err is not None:
                self.failed.append(f"{record_id}: {err}")
                return
            self.acked[record_id] = (msg.partition(), msg.offset())
            producer = record_id.rsplit("-", 1)[0]
            self.order[(producer, msg.key().decode())].append(record_id)


class ProducerThread(threading.Thread):
    """One idempotent producer writing `<name>-<seq>` records until told to stop.

    Delivery reports are served by whichever thread polls (this one, or the main thread
    draining during a crash); `poll_lock` keeps two threads from serving them at once, so
    callbacks run one after the other in librdkafka's order.
    """

    def __init__(self, name: str, bootstrap: str, acks: Acks, rng: random.Random, logger: logging.Logger,
                 rate: float):
        super().__init__(daemon=True, name=name)
        self.acks = acks
        self.rng = rng
        self.rate = rate
        self.stopping = threading.Event()
        self.paused = threading.Event()
        self.poll_lock = threading.Lock()
        self.sent = 0
        self.reports = 0  # delivery reports served
        self.disconnects = 0  # transport errors seen: a dead broker is noticed through them
        self.producer = Producer({
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "compression.type": "none",
            "linger.ms": 5,
            "message.timeout.ms": 600000,
            "retry.backoff.ms": 50,
            "reconnect.backoff.ms": 50,
            "reconnect.backoff.max.ms": 500,
            "socket.connection.setup.timeout.ms": 2000,
            "error_cb": self.on_error,
        }, logger=logger)

    def on_error(self, err) -> None:
        if err.code() in (KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN):
            self.disconnects += 1
        if err.fatal():
            with self.acks.lock:
                self.acks.fatal.append(f"{self.name}: {err}")

    def on_delivery(self, err, msg) -> None:
        self.reports += 1
        self.acks.callback(err, msg)

    def poll(self, timeout: float) -> int:
        with self.poll_lock:
            return self.producer.poll(timeout)

    def run(self) -> None:
        # Paced to `rate` records/s, so a faster machine does not make more work for the
        # verification (and the run time stays predictable).
        due = time.monotonic()
        while not self.stopping.is_set():
            if self.paused.is_set():
                time.sleep(0.01)  # the main thread drains
                due = time.monotonic()
                continue
            key = f"k{self.rng.randrange(KEYS)}"
            record_id = f"{self.name}-{self.sent}"
            try:
                self.producer.produce(TOPIC, key=key, value=record_id, on_delivery=self.on_delivery)
            except BufferError:
                self.poll(0.05)
                continue
            self.sent += 1
            self.poll(0)
            if self.sent % 50 == 0:
                due += 50 / self.rate
                ahead = due - time.monotonic()
                if ahead > 0:
                    self.poll(ahead)
                elif ahead < -0.5:
                    due = time.monotonic()  # fell behind: do not burst to catch up

    def finish(self, timeout: float) -> int:
        """Flushes; returns the records still undelivered."""
        return self.producer.flush(timeout)

    def drain(self, disconnects_before: int, deadline: float) -> bool:
        """Serves every delivery report for answers the dead broker sent.

        librdkafka queues a response's delivery reports before the transport error of the
        connection it came on, so once that error is served, every acknowledgement the
        broker sent before dying has been counted. Returns False if the error did not come
        by `deadline` (then an acknowledgement may still be on its way).
        """
        while self.disconnects <= disconnects_before and time.monotonic() < deadline:
            self.poll(0.05)
        # Until a poll serves no delivery report. (Not "no event": while the broker is
        # down, failed reconnects keep producing error events.)
        while True:
            reports = self.reports
            self.poll(0.1)
            if self.reports == reports:
                break
        return self.disconnects > disconnects_before


class SluiceProducer:
    """The Sluice client's idempotent producer, as a child process.

    `sluice-torture-producer` writes `<name>-<n>` records with key `k<n % KEYS>`
    at `rate` records/s until its stdin closes, and prints one line per outcome:
    `ACK <value> <partition> <offset>`, `FAIL <value> <error>`, `FATAL <error>`, then
    `DONE sent=S acked=A failed=F`. It keeps producing while the broker is down (the
    records wait in its buffer and go out after the restart), so `paused` is not used.
    """

    def __init__(self, name: str, binary: Path, bootstrap: str, acks: Acks, rate: float, log_dir: Path):
        self.name = name
        self.acks = acks
        self.sent = 0
        self.disconnects = 0
        self.paused = threading.Event()
        self.stopping = threading.Event()
        self.last_line = time.monotonic()
        self.done = threading.Event()
        self.proc = subprocess.Popen(
            [str(binary), "--bootstrap", bootstrap, "--topic", TOPIC, "--id", name,
             "--keys", str(KEYS), "--rate", str(int(rate))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=open(log_dir / f"{name}.stderr.log", "wb"),
            text=True,
        )
        self.reader = threading.Thread(target=self.read, daemon=True, name=f"{name}-reader")

    def start(self) -> None:
        self.reader.start()

    def read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.last_line = time.monotonic()
            parts = line.split()
            if not parts:
                continue
            if parts[0] == "ACK" and len(parts) == 4:
                value, partition, offset = parts[1], int(parts[2]), int(parts[3])
                n = int(value.rsplit("-", 1)[1])
                with self.acks.lock:
                    self.acks.acked[value] = (partition, offset)
                    self.acks.order[(self.name, f"k{n % KEYS}")].append(value)
            elif parts[0] == "FAIL":
                with self.acks.lock:
                    self.acks.failed.append(f"{self.name}: {line.strip()}")
            elif parts[0] == "FATAL":
                with self.acks.lock:
                    self.acks.fatal.append(f"{self.name}: {line.strip()}")
            elif parts[0] == "DONE":
                fields = dict(f.split("=", 1) for f in parts[1:] if "=" in f)
                self.sent = int(fields.get("sent", 0))
                self.done.set()

    def drain(self, _disconnects_before: int, deadline: float) -> bool:
        """Waits until no outcome line came for 0.3 s: the dead broker's last answers are
        printed as soon as they are processed."""
        while time.monotonic() < deadline:
            if time.monotonic() - self.last_line > 0.3:
                return True
            time.sleep(0.05)
        return False

    def join(self, timeout: float) -> None:
        pass

    def finish(self, timeout: float) -> int:
        """Closes stdin and waits for every outcome; returns the records never acknowledged."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.reader.join(timeout=10)
        if not self.done.is_set():
            return -1
        with self.acks.lock:
            acked = sum(1 for v in self.acks.acked if v.rsplit("-", 1)[0] == self.name)
        return self.sent - acked


# ---------------------------------------------------------------- segment files


def parse_varint(buf: bytes, pos: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return (value >> 1) ^ -(value & 1), pos
        shift += 7


def batches(data: bytes):
    """(position, size, base_offset, last_offset, crc_ok, values) of each whole batch."""
    pos = 0
    while pos + 61 <= len(data):
        base_offset, length = struct.unpack_from(">qi", data, pos)
        size = 12 + length
        if length < 49 or pos + size > len(data) or data[pos + 16] != 2:
            return
        stored_crc = struct.unpack_from(">I", data, pos + 17)[0]
        crc_ok = crc32c_lib.crc32c(data[pos + 21 : pos + size]) == stored_crc
        attributes, last_delta = struct.unpack_from(">hi", data, pos + 21)
        count = struct.unpack_from(">i", data, pos + 57)[0]
        values = []
        if crc_ok and attributes & 0x7 == 0:
            rpos = pos + 61
            for _ in range(count):
                _, rpos = parse_varint(data, rpos)  # record length
                rpos += 1  # attributes
                _, rpos = parse_varint(data, rpos)  # timestamp delta
                _, rpos = parse_varint(data, rpos)  # offset delta
                key_len, rpos = parse_varint(data, rpos)
                rpos += max(key_len, 0)
                value_len, rpos = parse_varint(data, rpos)
                values.append(data[rpos : rpos + value_len].decode(errors="replace"))
                rpos += max(value_len, 0)
                headers, rpos = parse_varint(data, rpos)
                for _ in range(headers):
                    hk, rpos = parse_varint(data, rpos)
                    rpos += hk
                    hv, rpos = parse_varint(data, rpos)
                    rpos += max(hv, 0)
        yield pos, size, base_offset, base_offset + last_delta, crc_ok, values
        pos += size


def active_segments(data_dir: Path) -> list[Path]:
    found = []
    for p in range(PARTITIONS):
        logs = sorted((data_dir / f"{TOPIC}-{p}").glob("*.log"))
        if logs:
            found.append(logs[-1])
    return found


def damage_tail(data_dir: Path, acks: Acks, rng: random.Random, acks_complete: bool) -> str:
    """Simulates a torn write on a random active segment without touching acknowledged data.

    A cut into the last batch is only made when every acknowledgement the broker sent is
    known (`acks_complete`) and none is for a record of that batch; otherwise bytes are
    appended after the last batch instead, which never touches stored records."""
    segments = active_segments(data_dir)
    if not segments:
        return "none"
    segment = rng.choice(segments)
    data = segment.read_bytes()
    whole = list(batches(data))
    kind = rng.choice(["cut", "zeros", "garbage"])
    if kind == "cut":
        if whole and acks_complete:
            pos, size, _, _, _, values = whole[-1]
            with acks.lock:
                acknowledged = any(v in acks.acked for v in values)
            if not acknowledged and size > 1:
                with open(segment, "r+b") as f:
                    f.truncate(pos + rng.randrange(1, size))
                with acks.lock:
                    acks.cut.update(values)
                return "cut"
        kind = "garbage"
    with open(segment, "ab") as f:
        n = rng.randrange(1, 5000)
        f.write(bytes(n) if kind == "zeros" else rng.randbytes(n))
    return kind


# ---------------------------------------------------------------- verification


def consume_all(bootstrap: str, logger: logging.Logger) -> dict[int, list[tuple[int, str, str]]]:
    """(offset, key, value) of every record of every partition, from the beginning."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "torture-verify",
        "enable.auto.commit": False,
        "check.crcs": True,
        "enable.partition.eof": True,
        "auto.offset.reset": "earliest",
    }, logger=logger)
    consumer.assign([TopicPartition(TOPIC, p, 0) for p in range(PARTITIONS)])
    records: dict[int, list[tuple[int, str, str]]] = defaultdict(list)
    at_eof: set[int] = set()
    deadline = time.monotonic() + 120
    while len(at_eof) < PARTITIONS and time.monotonic() < deadline:
        msg = consumer.poll(1.0)
        if msg is None:
            continue
        if msg.error():
            if msg.error().code() == KafkaError._PARTITION_EOF:
                at_eof.add(msg.partition())
                continue
            raise RuntimeError(f"consume error: {msg.error()}")
        at_eof.discard(msg.partition())
        records[msg.partition()].append((msg.offset(), msg.key().decode(), msg.value().decode()))
    consumer.close()
    if len(at_eof) < PARTITIONS:
        raise RuntimeError("consumer did not reach the end of every partition")
    return records


def verify(records, acks: Acks, data_dir: Path) -> dict[str, int]:
    seen: dict[str, int] = defaultdict(int)
    position: dict[str, tuple[int, int]] = {}
    gaps = 0
    for partition, rows in records.items():
        expected = rows[0][0] if rows else 0
        for offset, _key, value in rows:
            if offset != expected:
                gaps += 1
            expected = offset + 1
            seen[value] += 1
            position[value] = (partition, offset)
    lost = [rid for rid in acks.acked if seen.get(rid, 0) == 0]
    duplicated = [rid for rid, n in seen.items() if n > 1]
    out_of_order = 0
    for _key, ids in acks.order.items():
        stored = [position[i] for i in ids if i in position]
        if any(a[0] != b[0] or a[1] >= b[1] for a, b in zip(stored, stored[1:])):
            out_of_order += 1
    bad_crc = 0
    for p in range(PARTITIONS):
        for segment in sorted((data_dir / f"{TOPIC}-{p}").glob("*.log")):
            data = segment.read_bytes()
            end = 0
            for pos, size, _, _, crc_ok, _ in batches(data):
                bad_crc += 0 if crc_ok else 1
                end = pos + size
            if end != len(data):
                bad_crc += 1  # bytes after the last whole batch after a clean stop
    if lost[:5]:
        print(f"lost (first 5): {lost[:5]}", file=sys.stderr)
    harness_race = [rid for rid in lost if rid in acks.cut]
    if harness_race:
        print(f"{len(harness_race)} lost records were in batches the harness cut before their "
              "acknowledgement was counted: a race in the harness, not (necessarily) the broker",
              file=sys.stderr)
    if duplicated[:5]:
        print(f"duplicated (first 5): {duplicated[:5]}", file=sys.stderr)
    return {
        "lost": len(lost),
        "duplicated": len(duplicated),
        "out_of_order": out_of_order,
        "bad_crc": bad_crc,
        "offset_gaps": gaps,
    }


def check_recovery_logs(log_dir: Path, damaged_starts: set[int]) -> tuple[int, dict[str, int]]:
    """Checks the broker's start-up lines: the first start finds a new data directory,
    every start after a SIGKILL an unclean shutdown, and a start after damage a truncated
    partition. Returns (problems, stats)."""
    problems = 0
    stats = {"unclean_starts": 0, "truncations": 0, "max_recovery_ms": 0, "deduplicated": 0}
    logs = sorted(log_dir.glob("broker-*.stderr.log"), key=lambda p: int(p.stem.split("-")[1].split(".")[0]))
    for path in logs:
        start = int(path.stem.split("-")[1].split(".")[0])
        text = path.read_text(errors="replace")
        stats["deduplicated"] += text.count(DEDUPLICATED)
        match = RECOVERED.search(text)
        expected = "new data directory" if start == 1 else "unclean shutdown"
        if not match or match.group(3) != expected:
            print(f"{path.name}: expected a 'recovered ... ({expected})' line", file=sys.stderr)
            problems += 1
            continue
        stats["unclean_starts"] += match.group(3) == "unclean shutdown"
        stats["max_recovery_ms"] = max(stats["max_recovery_ms"], int(match.group(2)))
        truncations = text.count(TRUNCATED)
        stats["truncations"] += truncations
        if start in damaged_starts and truncations == 0:
            print(f"{path.name}: the data was damaged before this start but no partition was truncated",
                  file=sys.stderr)
            problems += 1
    return problems, stats


# ---------------------------------------------------------------- main loop


def create_topic(bootstrap: str, logger: logging.Logger) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap}, logger=logger)
    futures = admin.create_topics([NewTopic(TOPIC, num_partitions=PARTITIONS, replication_factor=1)])
    futures[TOPIC].result(timeout=30)


def print_broker_log_tail(log_dir: Path) -> None:
    logs = sorted(log_dir.glob("broker-*.stderr.log"), key=lambda p: p.stat().st_mtime)
    if logs:
        print(f"--- {logs[-1].name} (tail)", file=sys.stderr)
        print("\n".join(logs[-1].read_text(errors="replace").splitlines()[-30:]), file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cycles", type=int, default=int(os.environ.get("TORTURE_CYCLES", "30")))
    parser.add_argument("--seed", type=int, default=int(os.environ.get("TORTURE_SEED", str(random.randrange(1 << 30)))))
    parser.add_argument("--producers", type=int, default=3, help="confluent-kafka (librdkafka) producers")
    parser.add_argument("--sluice-producers", type=int, default=1, help="Sluice client producers")
    parser.add_argument("--sluice-producer", type=Path, default=Path(os.environ.get(
        "SLUICE_TORTURE_PRODUCER", REPO / "target" / "release" / "sluice-torture-producer")),
        help="the Sluice client's torture producer (cargo build --release)")
    parser.add_argument("--broker", type=Path, default=Path(os.environ.get(
        "SLUICE_BROKER_BIN", REPO / "target" / "release" / "sluice-broker")))
    parser.add_argument("--max-run", type=float, default=1.5,
                        help="longest run between kills (s); cycles that lose answers run up to 1 s longer")
    parser.add_argument("--rate", type=float, default=10000, help="records per second per producer")
    parser.add_argument("--work-dir", type=Path, help="keep the data directory and logs here (default: a temp dir, removed)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    if args.sluice_producers and not args.sluice_producer.exists():
        parser.error(f"{args.sluice_producer} is missing: cargo build --release")
    print(f"torture: seed {args.seed}, {args.cycles} cycles, {args.producers} librdkafka + "
          f"{args.sluice_producers} Sluice producers, "
          f"log.flush.policy={os.environ.get('SLUICE_LOG_FLUSH_POLICY', 'os')}", flush=True)

    if args.work_dir:
        args.work_dir.mkdir(parents=True, exist_ok=True)
        if any(args.work_dir.iterdir()):
            parser.error(f"--work-dir {args.work_dir} is not empty")
        workspace = contextlib.nullcontext(str(args.work_dir))
    else:
        workspace = tempfile.TemporaryDirectory(prefix="sluice-torture-")
    with workspace as tmp:
        data_dir = Path(tmp) / "data"
        proxy = Proxy()
        broker = Broker(args.broker, data_dir, Path(tmp), advertised=proxy.address)
        broker.start()
        proxy.upstream_port = broker.port
        acks = Acks()
        producers: list[ProducerThread] = []
        damage: dict[str, int] = defaultdict(int)
        damaged_starts: set[int] = set()
        drains_incomplete = 0  # kills after which some producer never reported the disconnect
        timing = defaultdict(float)
        # librdkafka's connection chatter goes to a file, not the test output.
        client_log = logging.getLogger("librdkafka")
        client_log.propagate = False
        client_log.addHandler(logging.FileHandler(Path(tmp) / "librdkafka.log"))
        try:
            create_topic(proxy.address, client_log)
            producers = [ProducerThread(f"p{i}", proxy.address, acks, random.Random(rng.random()), client_log,
                                        args.rate) for i in range(args.producers)]
            producers += [SluiceProducer(f"s{i}", args.sluice_producer, proxy.address, acks, args.rate, Path(tmp))
                          for i in range(args.sluice_producers)]
            for p in producers:
                p.start()
            for _cycle in range(args.cycles):
                if rng.random() < 0.4:
                    # Lose answers first, then crash. The kill comes at least 0.3 s after
                    # the proxy stopped losing answers, so the disconnects that caused
                    # are counted before the kill's (see ProducerThread.drain).
                    run = rng.uniform(Proxy.ARMED_FOR + 0.4, args.max_run + 1.0)
                    at = rng.uniform(0.05, run - Proxy.ARMED_FOR - 0.3)
                    time.sleep(at)
                    proxy.lose_answers()
                    time.sleep(run - at)
                else:
                    time.sleep(rng.uniform(0.05, args.max_run))  # a random moment to crash at
                before = [p.disconnects for p in producers]
                broker.kill()
                for p in producers:
                    p.paused.set()
                # A producer connected to the broker sees the kill within milliseconds;
                # one that was between connections (after lost answers) sees nothing, and
                # had no answer on its way either.
                deadline = time.monotonic() + 2
                t0 = time.monotonic()
                acks_complete = all([p.drain(b, deadline) for p, b in zip(producers, before)])
                timing["drain"] += time.monotonic() - t0
                drains_incomplete += not acks_complete
                if rng.random() < 0.4:
                    damage[damage_tail(data_dir, acks, rng, acks_complete)] += 1
                    damaged_starts.add(broker.starts + 1)
                t0 = time.monotonic()
                broker.start()
                timing["start"] += time.monotonic() - t0
                for p in producers:
                    p.paused.clear()
            t0 = time.monotonic()
            for p in producers:
                p.stopping.set()
            for p in producers:
                p.join(timeout=30)
                remaining = p.finish(120)
                if remaining:
                    acks.failed.append(f"{p.name}: {remaining} records never delivered")
            timing["flush"] += time.monotonic() - t0
            t0 = time.monotonic()
            records = consume_all(proxy.address, client_log)
            timing["consume"] += time.monotonic() - t0
            code = broker.stop()
            if code != 0:
                acks.fatal.append(f"broker exited with {code} on SIGTERM")
            t0 = time.monotonic()
            counts = verify(records, acks, data_dir)
            timing["verify"] += time.monotonic() - t0
            counts["recovery_log"], recovery = check_recovery_logs(Path(tmp), damaged_starts)
        except BaseException:
            broker.kill()
            for p in producers:
                if isinstance(p, SluiceProducer) and p.proc.poll() is None:
                    p.proc.kill()
            print_broker_log_tail(Path(tmp))
            raise
        bad = sum(counts.values()) + len(acks.fatal) + len(acks.failed)
        if bad:
            print_broker_log_tail(Path(tmp))
    sent = sum(p.sent for p in producers)
    print(
        f"torture: cycles={args.cycles} sent={sent} acknowledged={len(acks.acked)} "
        f"lost={counts['lost']} duplicated={counts['duplicated']} out_of_order={counts['out_of_order']} "
        f"bad_crc={counts['bad_crc']} offset_gaps={counts['offset_gaps']} failed={len(acks.failed)} "
        f"fatal={len(acks.fatal)} recovery_log={counts['recovery_log']} damage={dict(damage)} "
        f"answers_lost={proxy.answers_lost} retries_deduplicated={recovery.get('deduplicated', 0)} "
        f"unclean_starts={recovery.get('unclean_starts', 0)} truncations={recovery.get('truncations', 0)} "
        f"max_recovery_ms={recovery.get('max_recovery_ms', 0)} drains_incomplete={drains_incomplete} "
        f"seed={args.seed}",
        flush=True,
    )
    print("torture: seconds spent " + " ".join(f"{k}={v:.1f}" for k, v in timing.items()), flush=True)
    for line in (acks.fatal + acks.failed)[:10]:
        print(f"  {line}", file=sys.stderr)
    if len(acks.acked) == 0:
        print("torture: nothing was acknowledged; the test proved nothing", file=sys.stderr)
        bad += 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
