"""Kafka Streams against the broker: a word count whose state lives in a compacted
changelog topic (tests/compat/java/WordCount.java, compiled here against Kafka Streams
4.4 from `scripts/peers/kafka.sh install-streams`). It counts a first batch of lines, is
killed with SIGKILL once it committed, and a new instance with an empty state directory
(its store is in memory anyway) restores the counts from the changelog and counts a
second batch on top: its output must be the exact totals. Runs against Apache Kafka 4.4
too with SLUICE_COMPAT_TARGET=kafka.
"""

from __future__ import annotations

import queue
import random
import signal
import struct
import subprocess
import threading
import uuid
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from conftest import KAFKA_SH, create_topic, wait_until

JAVA_SOURCE = Path(__file__).resolve().parent / "java" / "WordCount.java"
WORDS = ["log", "segment", "offset", "replica", "leader", "batch", "record", "topic", "key", "value"]


def _streams_classpath() -> str:
    done = subprocess.run([str(KAFKA_SH), "streams-classpath"], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        pytest.fail(f"Kafka Streams is not installed (scripts/peers/kafka.sh install-streams): {done.stderr}")
    return done.stdout.strip()


@pytest.fixture(scope="module")
def word_count(tmp_path_factory) -> str:
    """The classpath of the compiled word count."""
    classes = tmp_path_factory.mktemp("wordcount")
    streams = _streams_classpath()
    subprocess.run(["javac", "-d", str(classes), "-cp", streams, str(JAVA_SOURCE)], check=True, timeout=120)
    return f"{streams}:{classes}"


class App:
    """One word count instance, a child process."""

    def __init__(self, classpath: str, bootstrap: str, app_id: str, state_dir: Path):
        self.proc = subprocess.Popen(
            ["java", "-Xmx256m", "-cp", classpath, "WordCount", bootstrap, app_id, "wc-in", "wc-out", str(state_dir)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: "queue.Queue[str]" = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip())

    def wait_running(self, timeout: float = 60) -> None:
        def running():
            while not self.lines.empty():
                self.seen.append(self.lines.get())
            assert self.proc.poll() is None, "\n".join(self.seen[-40:])
            return "STATE RUNNING" in self.seen
        wait_until(running, timeout=timeout, interval=0.2, message="the streams app runs")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


def _produce_lines(bootstrap: str, rng: random.Random, count: int, totals: Counter) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for i in range(count):
        words = [rng.choice(WORDS) for _ in range(rng.randint(1, 6))]
        totals.update(words)
        producer.produce("wc-in", key=str(i), value=" ".join(words))
    assert producer.flush(30) == 0


def _latest_counts(bootstrap: str) -> dict[str, int]:
    """The output topic's latest count per word."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False, "enable.partition.eof": True})
    try:
        consumer.assign([TopicPartition("wc-out", p, 0) for p in range(1)])
        counts: dict[str, int] = {}
        while True:
            msg = consumer.poll(5.0)
            if msg is None:
                return counts
            if msg.error():
                if msg.error().name() == "_PARTITION_EOF":
                    return counts
                raise AssertionError(msg.error())
            counts[msg.key().decode()] = struct.unpack(">q", msg.value())[0]
    finally:
        consumer.close()


def _committed(bootstrap: str, app_id: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": app_id})
    try:
        [tp] = consumer.committed([TopicPartition("wc-in", 0)], timeout=10)
        return tp.offset
    finally:
        consumer.close()


def test_a_streams_word_count_restores_its_counts_from_the_changelog(broker, word_count, tmp_path):
    rng = random.Random(7)
    create_topic(broker.bootstrap, "wc-in", 1)
    create_topic(broker.bootstrap, "wc-out", 1)
    app_id = f"wordcount-{uuid.uuid4().hex[:6]}"
    totals: Counter = Counter()
    _produce_lines(broker.bootstrap, rng, 300, totals)
    app = App(word_count, broker.bootstrap, app_id, tmp_path / "state-1")
    try:
        app.wait_running()
        wait_until(lambda: _latest_counts(broker.bootstrap) == dict(totals), timeout=90, interval=1.0,
                   message="the first counts")
        wait_until(lambda: _committed(broker.bootstrap, app_id) == 300, timeout=60, interval=0.5,
                   message="the app committed its input")
    finally:
        app.kill()

    changelog = f"{app_id}-counts-changelog"
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    [configs] = [f.result(30) for f in admin.describe_configs([ConfigResource(ResourceType.TOPIC, changelog)]).values()]
    assert configs["cleanup.policy"].value == "compact"

    _produce_lines(broker.bootstrap, rng, 300, totals)
    app = App(word_count, broker.bootstrap, app_id, tmp_path / "state-2")
    try:
        app.wait_running(timeout=90)
        wait_until(lambda: _latest_counts(broker.bootstrap) == dict(totals), timeout=90, interval=1.0,
                   message="the totals after the restore")
    finally:
        app.stop()
